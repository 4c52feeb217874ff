//! Tag lists, following `Link: <…>; rel="next"` pagination (RFC 8288).

use std::collections::HashSet;

use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::client::{Access, Client, Request, RequestKind};
use crate::error::{Error, ErrorKind};

/// Pages followed at most: a registry whose `Link` never ends must not keep us forever.
const MAX_PAGES: usize = 10_000;

/// Tags asked for per page; registries cap it as they like (distribution 2.8 ignores it).
const PAGE_SIZE: u32 = 1000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of a repository, in the registry's order.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let mut url = self.url(repository, "tags/list").await?;
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.clone()) {
                return Err(Error::protocol(
                    &self.inner.api_host,
                    format!(
                        "tag list pagination loops at {}",
                        crate::error::redact(&url)
                    ),
                ));
            }
            let request = Request::new(
                Method::GET,
                url.clone(),
                RequestKind::TagList,
                &self.path(repository),
                Access::Pull,
            );
            let response = self.send(request).await?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    return Err(ErrorKind::ManifestNotFound {
                        location: self.display_name(repository),
                        reference: "(tag list: repository not found)".to_owned(),
                    }
                    .into());
                }
                _ => return Err(self.unexpected(&Method::GET, response).await),
            }
            let next = next_link(
                response.url(),
                response
                    .headers()
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let page: TagList = response.json().await.map_err(|e| {
                Error::protocol(
                    &self.inner.api_host,
                    format!("tag list of '{repository}' is not JSON: {e}"),
                )
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Err(Error::protocol(
            &self.inner.api_host,
            format!("tag list of '{repository}' has more than {MAX_PAGES} pages"),
        ))
    }
}

/// The `rel="next"` target among `Link` header values, resolved against the response URL.
pub(crate) fn next_link<'a>(base: &Url, values: impl Iterator<Item = &'a str>) -> Option<Url> {
    for value in values {
        for link in value.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| {
                        r.trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                return base.join(target).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let base = Url::parse("https://reg.example/v2/app/tags/list?n=2").unwrap();
        let cases = [
            (
                vec![r#"</v2/app/tags/list?last=b&n=2>; rel="next""#],
                Some("https://reg.example/v2/app/tags/list?last=b&n=2"),
            ),
            (
                vec![r#"<https://other.example/x?y=1>; rel=next"#],
                Some("https://other.example/x?y=1"),
            ),
            (
                vec![r#"</prev>; rel="prev", </next>; rel="next""#],
                Some("https://reg.example/next"),
            ),
            (vec![r#"</prev>; rel="prev""#], None),
            (vec!["garbage"], None),
            (vec![], None),
        ];
        for (values, expected) in cases {
            let got = next_link(&base, values.iter().copied()).map(|u| u.to_string());
            assert_eq!(got.as_deref(), expected, "{values:?}");
        }
    }
}
