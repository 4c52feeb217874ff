//! Blob reads: `HEAD` for existence and a streaming, verified `GET`.
//!
//! Blob `GET`s follow redirects (ACR, ECR and GHCR serve blobs from storage or CDN hosts);
//! reqwest drops `Authorization` when the host, port or scheme changes, so credentials never
//! reach the storage host, and errors name the host that was actually contacted.

use std::sync::atomic::Ordering;

use futures::TryStreamExt as _;
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
        let url = self
            .url(repository, &format!("blobs/{}", descriptor.digest))
            .await?;
        let request = Request::new(
            Method::GET,
            url,
            RequestKind::BlobGet,
            &self.path(repository),
            Access::Pull,
        );
        let response = self.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.unexpected(&Method::GET, response).await);
        }
        let host = crate::error::host_of(response.url());
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
        Ok(BlobStream::new(stream).verified(descriptor, location))
    }
}
