//! Referrers (OCI 1.1): the referrers API, and the `sha256-<hex>` tag schema for registries
//! without it.
//!
//! A registry that answers the API with 404 (distribution 2.8's router has no such route) is
//! remembered as not supporting it, so later lookups go straight to the fallback tag: one
//! request per subject instead of two.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use reqwest::header::{ACCEPT, HeaderValue, LINK};
use reqwest::{Method, StatusCode};

use ocync_core::{Descriptor, Digest, Manifest, MediaType};

use crate::client::{
    Access, Client, REFERRERS_SUPPORTED, REFERRERS_UNSUPPORTED, Request, RequestKind,
};
use crate::error::Error;
use crate::tag::next_link;

/// The manifests that refer to a subject.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Referrers {
    /// One descriptor per referrer manifest (with `artifactType` and annotations).
    pub descriptors: Vec<Descriptor>,
    /// The fallback-tag index they came from, when the source has no referrers API: copied
    /// byte-for-byte when the target needs the same index, so its digest stays identical.
    pub fallback_index: Option<Manifest>,
}

impl Referrers {
    /// Build from a list, dropping duplicates (same digest) and keeping the first.
    pub fn from_descriptors(descriptors: impl IntoIterator<Item = Descriptor>) -> Referrers {
        let mut seen = HashSet::new();
        Referrers {
            descriptors: descriptors
                .into_iter()
                .filter(|d| seen.insert(d.digest.clone()))
                .collect(),
            fallback_index: None,
        }
    }
}

impl Client {
    /// Whether the registry has been seen to serve the referrers API (`None`: not asked yet).
    pub fn supports_referrers_api(&self) -> Option<bool> {
        match self.inner.referrers_api.load(Ordering::Relaxed) {
            REFERRERS_SUPPORTED => Some(true),
            REFERRERS_UNSUPPORTED => Some(false),
            _ => None,
        }
    }

    pub(crate) fn set_referrers_api(&self, supported: bool) {
        let value = if supported {
            REFERRERS_SUPPORTED
        } else {
            REFERRERS_UNSUPPORTED
        };
        self.inner.referrers_api.store(value, Ordering::Relaxed);
    }

    /// The referrers of `subject` in `repository`, from the API when the registry has it, else
    /// from the fallback tag; none when neither exists.
    pub async fn referrers(&self, repository: &str, subject: &Digest) -> Result<Referrers, Error> {
        if self.supports_referrers_api() != Some(false)
            && let Some(found) = self.referrers_api(repository, subject).await?
        {
            return Ok(found);
        }
        match self.manifest(repository, &subject.referrers_tag()).await {
            Ok(index) if index.is_index() => {
                let mut found = Referrers::from_descriptors(index.children().iter().cloned());
                found.fallback_index = Some(index);
                Ok(found)
            }
            Ok(_) => Ok(Referrers::default()),
            Err(e) if e.is_not_found() => Ok(Referrers::default()),
            Err(e) => Err(e),
        }
    }

    /// `None` when the registry has no referrers API.
    async fn referrers_api(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Option<Referrers>, Error> {
        let mut url = self
            .url(repository, &format!("referrers/{subject}"))
            .await?;
        let mut descriptors = Vec::new();
        let mut pages = HashSet::new();
        loop {
            if !pages.insert(url.clone()) {
                break;
            }
            let request = Request::new(
                Method::GET,
                url.clone(),
                RequestKind::Referrers,
                &self.path(repository),
                Access::Pull,
            )
            .header(
                ACCEPT,
                HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
            );
            let response = self.send(request).await?;
            match response.status() {
                StatusCode::OK => {}
                // No such route: distribution 2.8 (404 "page not found"), others 405/501.
                StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_IMPLEMENTED => {
                    self.set_referrers_api(false);
                    return Ok(None);
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
            let body = response
                .bytes()
                .await
                .map_err(|e| Error::transport(&self.inner.api_host, e))?;
            let index =
                Manifest::from_bytes(body, Some(MediaType::OciIndex.as_str())).map_err(|e| {
                    Error::oci(
                        format!(
                            "referrers list of {subject} in {}",
                            self.display_name(repository)
                        ),
                        e,
                    )
                })?;
            descriptors.extend(index.children().iter().cloned());
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        self.set_referrers_api(true);
        Ok(Some(Referrers::from_descriptors(descriptors)))
    }
}
