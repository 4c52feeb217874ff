//! Manifest requests: `HEAD`, `GET` (with the full `Accept` list and the 4 MiB limit) and
//! byte-for-byte `PUT`.

use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};

use ocync_core::{Descriptor, Digest, MAX_MANIFEST_SIZE, Manifest, MediaType};

use crate::client::{Access, Body, Client, Request, RequestKind};
use crate::error::{Error, ErrorKind};

/// The `Accept` header of manifest requests: every manifest type ocync copies.
pub(crate) fn accept_header() -> HeaderValue {
    let list: Vec<&str> = MediaType::MANIFEST_TYPES
        .iter()
        .map(MediaType::as_str)
        .collect();
    HeaderValue::from_str(&list.join(", ")).expect("media types are valid header text")
}

/// What a registry said when a manifest was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushedManifest {
    /// `Docker-Content-Digest` of the response, if sent.
    pub digest: Option<Digest>,
    /// Whether the registry answered with `OCI-Subject` (it maintains the referrers API for
    /// the subject itself).
    pub subject_acknowledged: bool,
}

impl Client {
    /// `HEAD` a manifest by tag or digest: its descriptor, or `None` when absent.
    ///
    /// Registries that omit `Docker-Content-Digest` on `HEAD` are answered with a `GET`.
    pub async fn manifest_head(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, Error> {
        let url = self
            .url(repository, &format!("manifests/{reference}"))
            .await?;
        let request = Request::new(
            Method::HEAD,
            url,
            RequestKind::ManifestHead,
            &self.path(repository),
            Access::Pull,
        )
        .header(ACCEPT, accept_header());
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.unexpected(&Method::HEAD, response).await),
        }
        let headers = response.headers();
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(MediaType::from);
        let size = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) if media_type.is_manifest() => {
                Ok(Some(Descriptor::new(media_type, digest, size)))
            }
            _ => match self.manifest(repository, reference).await {
                Ok(m) => Ok(Some(m.descriptor())),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// `GET` a manifest by tag or digest, keeping its raw bytes. A manifest fetched by digest
    /// is checked against it; one fetched by tag is checked against `Docker-Content-Digest`.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, Error> {
        let url = self
            .url(repository, &format!("manifests/{reference}"))
            .await?;
        let request = Request::new(
            Method::GET,
            url,
            RequestKind::ManifestGet,
            &self.path(repository),
            Access::Pull,
        )
        .header(ACCEPT, accept_header());
        let response = self.send(request).await?;
        let location = self.display_name(repository);
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(ErrorKind::ManifestNotFound {
                    location,
                    reference: reference.to_owned(),
                }
                .into());
            }
            _ => return Err(self.unexpected(&Method::GET, response).await),
        }
        let too_large = |size: u64| -> Error {
            ErrorKind::ManifestTooLarge {
                location: location.clone(),
                reference: reference.to_owned(),
                size,
                limit: MAX_MANIFEST_SIZE,
            }
            .into()
        };
        if let Some(len) = response.content_length()
            && len > MAX_MANIFEST_SIZE
        {
            return Err(too_large(len));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        // Read with a cap: a registry that omits Content-Length cannot make us buffer more.
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::transport(&self.inner.api_host, e))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(too_large(body.len() as u64));
            }
        }
        let body = Bytes::from(body);
        let context = format!("manifest {location}:{reference}");
        let expected = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => header_digest,
        };
        match expected {
            Some(d) => Manifest::with_digest(body, content_type.as_deref(), &d),
            None => Manifest::from_bytes(body, content_type.as_deref()),
        }
        .map_err(|e| Error::oci(context, e))
    }

    /// `PUT` a manifest under a tag or its digest, sending its exact bytes and media type.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<PushedManifest, Error> {
        if manifest.size() > MAX_MANIFEST_SIZE {
            return Err(ErrorKind::ManifestTooLarge {
                location: self.display_name(repository),
                reference: reference.to_owned(),
                size: manifest.size(),
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        let url = self
            .url(repository, &format!("manifests/{reference}"))
            .await?;
        let content_type = HeaderValue::from_str(manifest.media_type().as_str()).map_err(|_| {
            Error::protocol(
                &self.inner.api_host,
                "manifest media type is not valid header text",
            )
        })?;
        let request = Request::new(
            Method::PUT,
            url,
            RequestKind::ManifestPut,
            &self.path(repository),
            Access::Push,
        )
        .header(CONTENT_TYPE, content_type)
        .body(Body::Bytes(manifest.bytes().clone()));
        let response = self.send(request).await?;
        if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
            return Err(self.unexpected(&Method::PUT, response).await);
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(d) = &digest
            && d.algorithm() == manifest.digest().algorithm()
            && d != manifest.digest()
        {
            return Err(Error::protocol(
                &self.inner.api_host,
                format!(
                    "stored manifest {} as {d}: the registry changed its bytes",
                    manifest.digest()
                ),
            ));
        }
        let subject_acknowledged = response.headers().contains_key("oci-subject");
        if subject_acknowledged {
            self.set_referrers_api(true);
        }
        Ok(PushedManifest {
            digest,
            subject_acknowledged,
        })
    }
}
