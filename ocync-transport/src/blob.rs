//! Blob reads: `HEAD` for existence, a streaming, verified `GET`, and a ranged `GET` that
//! resumes a read cut part way.
//!
//! Blob `GET`s follow redirects (ACR, ECR and GHCR serve blobs from storage or CDN hosts);
//! reqwest drops `Authorization` when the host, port or scheme changes, so credentials never
//! reach the storage host, and errors name the host that was actually contacted.

use std::sync::atomic::Ordering;

use futures::TryStreamExt as _;
use reqwest::header::{CONTENT_RANGE, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};

use ocync_core::{Descriptor, Digest};

use crate::client::{Access, Client, Request, RequestKind};
use crate::error::Error;
use crate::stream::BlobStream;

impl Client {
    /// Whether the repository has the blob (`HEAD`).
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, Error> {
        let url = self.url(repository, &format!("blobs/{digest}")).await?;
        let request = Request::new(
            Method::HEAD,
            url,
            RequestKind::BlobHead,
            &self.path(repository),
            Access::Pull,
        );
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&Method::HEAD, response).await),
        }
    }

    /// Stream a blob, verified against `descriptor` (digest and size) as it arrives.
    pub async fn blob(
        &self,
        repository: &str,
        descriptor: &Descriptor,
    ) -> Result<BlobStream, Error> {
        let read = self.blob_from(repository, descriptor, 0).await?;
        Ok(read.stream.verified(descriptor, read.location))
    }

    /// Stream a blob from byte `offset` on (`Range: bytes=<offset>-`), unverified: the caller
    /// joins it to the bytes it already has and verifies the whole. A registry or storage host
    /// that ignores the range answers with the whole blob, which [`BlobRead::start`] says.
    pub(crate) async fn blob_from(
        &self,
        repository: &str,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<BlobRead, Error> {
        let url = self
            .url(repository, &format!("blobs/{}", descriptor.digest))
            .await?;
        let mut request = Request::new(
            Method::GET,
            url,
            RequestKind::BlobGet,
            &self.path(repository),
            Access::Pull,
        );
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .expect("a number is a header value");
            request = request.header(RANGE, range);
        }
        let response = self.send(request).await?;
        let host = crate::error::host_of(response.url());
        let start = match response.status() {
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                // Only `bytes <offset>-<last>/<size>` continues what the caller has.
                let expected = format!("bytes {offset}-");
                let served = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !served.starts_with(&expected) {
                    return Err(Error::protocol(
                        &host,
                        format!("asked for bytes from {offset} on, got range '{served}'"),
                    ));
                }
                offset
            }
            _ => return Err(self.unexpected(&Method::GET, response).await),
        };
        let location = format!("{} (served by {host})", self.display_name(repository));
        let client = self.clone();
        let stream = response
            .bytes_stream()
            .map_err(move |e| Error::transport(&host, e))
            .inspect_ok(move |chunk| {
                client
                    .inner
                    .stats
                    .bytes_downloaded
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            });
        Ok(BlobRead {
            start,
            stream: BlobStream::new(stream),
            location,
        })
    }
}

/// A blob read that may start past the first byte.
pub(crate) struct BlobRead {
    /// The offset of the stream's first byte in the blob.
    pub(crate) start: u64,
    /// The bytes, not yet verified.
    pub(crate) stream: BlobStream,
    /// The repository and the host that served it, for errors.
    pub(crate) location: String,
}
