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

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Client {
    /// Every tag of a repository, in the registry's order.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let url = self.url(repository, "tags/list").await?;
        let path = self.path(repository);
        let pages = self.pages(url, RequestKind::TagList, &path, |status| {
            (status == StatusCode::NOT_FOUND).then(|| {
                ErrorKind::ManifestNotFound {
                    location: self.display_name(repository),
                    reference: "(tag list: repository not found)".to_owned(),
                }
                .into()
            })
        });
        let mut tags = Vec::new();
        for page in pages.await? {
            let page: TagList = serde_json::from_slice(&page).map_err(|e| {
                Error::protocol(
                    &self.inner.api_host,
                    format!("tag list of '{repository}' is not JSON: {e}"),
                )
            })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// Every repository of the registry (`/v2/_catalog`), under the client's path prefix when
    /// it has one (returned without the prefix). Needs a token with `registry:catalog:*`.
    pub async fn catalog(&self) -> Result<Vec<String>, Error> {
        let url = self.base().await?.join("v2/_catalog").expect("static path");
        let pages = self.pages(url, RequestKind::TagList, "", |_| None);
        let prefix = self.path("");
        let mut repositories = Vec::new();
        for page in pages.await? {
            let page: Catalog = serde_json::from_slice(&page).map_err(|e| {
                Error::protocol(
                    &self.inner.api_host,
                    format!("the catalog is not JSON: {e}"),
                )
            })?;
            repositories.extend(
                page.repositories
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.strip_prefix(&prefix).map(str::to_owned)),
            );
        }
        Ok(repositories)
    }

    /// The bodies of a paginated listing, following `Link: <…>; rel="next"`. `absent` turns a
    /// status into a specific error (e.g. a missing repository).
    async fn pages(
        &self,
        mut url: Url,
        kind: RequestKind,
        repository: &str,
        absent: impl Fn(StatusCode) -> Option<Error>,
    ) -> Result<Vec<bytes::Bytes>, Error> {
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let mut seen = HashSet::new();
        let mut bodies = Vec::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.clone()) {
                return Err(Error::protocol(
                    &self.inner.api_host,
                    format!("pagination loops at {}", crate::error::redact(&url)),
                ));
            }
            let request = Request::new(Method::GET, url.clone(), kind, repository, Access::Pull);
            let response = self.send(request).await?;
            if response.status() != StatusCode::OK {
                if let Some(err) = absent(response.status()) {
                    return Err(err);
                }
                return Err(self.unexpected(&Method::GET, response).await);
            }
            let next = next_link(
                response.url(),
                response
                    .headers()
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            bodies.push(
                response
                    .bytes()
                    .await
                    .map_err(|e| Error::transport(&self.inner.api_host, e))?,
            );
            match next {
                Some(n) => url = n,
                None => return Ok(bodies),
            }
        }
        Err(Error::protocol(
            &self.inner.api_host,
            format!("a listing has more than {MAX_PAGES} pages"),
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
