//! Blob uploads: monolithic (`POST` + streamed `PUT`), chunked (`POST` + `PATCH`… + `PUT`) and
//! cross-repository mount (`POST ?mount=&from=`, 201 mounted or 202 with a session to use).
//!
//! Every upload is fed from a verified stream, so the registry sees the final bytes only when
//! they match the digest; a failed upload's session is deleted so it does not linger.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use ocync_core::{Descriptor, Digest};

use crate::client::{Access, Body, Client, Request, RequestKind, UploadMode};
use crate::error::Error;
use crate::rate_limit::RegistryKind;
use crate::stream::BlobStream;

/// An open upload session on a registry.
#[derive(Debug, Clone)]
pub struct UploadSession {
    location: Url,
    repository: String,
    min_chunk: Option<u64>,
}

/// The result of a mount attempt.
#[derive(Debug)]
#[non_exhaustive]
pub enum Mount {
    /// The registry linked the blob from the other repository (201).
    Mounted,
    /// The registry could not mount and opened an upload session instead (202): upload the
    /// bytes into it.
    Session(UploadSession),
}

/// ACR answers 413 (or resets the connection) for request bodies above about 20 MB
/// (goharbor/harbor#23015); blobs above this go in chunks there from the start.
const ACR_MONOLITHIC_LIMIT: u64 = 16 * 1024 * 1024;

/// The chunk size when chunks are chosen automatically: under every known cap (ACR ~20 MB per
/// request; GHCR reported 4 MiB per request is handled by its own setting) and large enough
/// that ECR's 5 MiB minimum part size holds.
const FALLBACK_CHUNK: u64 = 8 * 1024 * 1024;

/// The smallest automatic chunk: a registry refusing 1 MiB requests is misconfigured, and
/// smaller chunks would multiply requests for nothing.
const MIN_FALLBACK_CHUNK: u64 = 1024 * 1024;

fn octet_stream() -> HeaderValue {
    HeaderValue::from_static("application/octet-stream")
}

impl Client {
    /// Open an upload session (`POST /v2/<name>/blobs/uploads/`).
    pub async fn start_upload(&self, repository: &str) -> Result<UploadSession, Error> {
        let url = self.url(repository, "blobs/uploads/").await?;
        let request = Request::new(
            Method::POST,
            url,
            RequestKind::UploadStart,
            &self.path(repository),
            Access::Push,
        )
        .header(CONTENT_LENGTH, HeaderValue::from(0));
        let response = self.send(request).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.unexpected(&Method::POST, response).await);
        }
        self.session(repository, &response)
    }

    /// Ask the registry to link `digest` from repository `from` of the same registry.
    pub async fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, Error> {
        let mut url = self.url(repository, "blobs/uploads/").await?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &self.path(from));
        let mut request = Request::new(
            Method::POST,
            url,
            RequestKind::Mount,
            &self.path(repository),
            Access::Push,
        )
        .header(CONTENT_LENGTH, HeaderValue::from(0));
        request.also_pull = Some(self.path(from));
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Session(self.session(repository, &response)?)),
            _ => Err(self.unexpected(&Method::POST, response).await),
        }
    }

    fn session(&self, repository: &str, response: &Response) -> Result<UploadSession, Error> {
        let host = crate::error::host_of(response.url());
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::protocol(&host, "upload session response has no Location header")
            })?;
        let location = response
            .url()
            .join(location)
            .map_err(|e| Error::protocol(&host, format!("upload Location is not a URL: {e}")))?;
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(UploadSession {
            location,
            repository: repository.to_owned(),
            min_chunk,
        })
    }

    /// Upload a blob from a stream into `repository`, opening a session unless one is given
    /// (e.g. from a [`Mount::Session`]). Uses the client's [`UploadMode`].
    pub async fn push_blob(
        &self,
        repository: &str,
        descriptor: &Descriptor,
        stream: BlobStream,
        session: Option<UploadSession>,
    ) -> Result<(), Error> {
        let session = match session {
            Some(s) => s,
            None => self.start_upload(repository).await?,
        };
        let cancel = session.clone();
        let mode = self.upload_mode(descriptor.size);
        let result = match mode {
            UploadMode::Monolithic => self.put_whole(session, descriptor, stream).await,
            UploadMode::Chunked { chunk_size } => {
                self.put_chunks(session, descriptor, stream, chunk_size)
                    .await
            }
        };
        if let Err(e) = &result {
            // A registry that refuses a whole blob in one request (413, or a reset mid-body,
            // as ACR does above ~20 MB) gets chunks from now on; the caller retries.
            let too_large = e.status() == Some(StatusCode::PAYLOAD_TOO_LARGE);
            let refused = too_large
                || (matches!(e.kind(), crate::ErrorKind::Request { .. })
                    && descriptor.size > FALLBACK_CHUNK);
            match mode {
                UploadMode::Monolithic
                    if refused
                        && self
                            .inner
                            .auto_chunk
                            .compare_exchange(
                                0,
                                FALLBACK_CHUNK,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            )
                            .is_ok() =>
                {
                    tracing::warn!(registry = %self.inner.registry, error = %e, "the registry refused a whole blob in one request; uploading in chunks from now on");
                }
                // Automatic chunks the registry still finds too large (a cap under 8 MiB):
                // halve them for the rest of the run, down to 1 MiB.
                UploadMode::Chunked { chunk_size }
                    if too_large
                        && self.inner.upload == UploadMode::Monolithic
                        && self.shrink_auto_chunk(chunk_size) =>
                {
                    tracing::warn!(registry = %self.inner.registry, error = %e, chunk_size = chunk_size / 2, "the registry refused a chunk as too large; using smaller chunks from now on");
                }
                _ => {}
            }
            self.cancel_upload(cancel).await;
        }
        result
    }

    /// Halve the automatic chunk size after a chunk of `from` bytes was refused (down to 1 MiB);
    /// whether this call changed it (concurrent refusals of the same size halve it once).
    fn shrink_auto_chunk(&self, from: u64) -> bool {
        from > MIN_FALLBACK_CHUNK
            && self
                .inner
                .auto_chunk
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                    (current == 0 || current == from).then_some((from / 2).max(MIN_FALLBACK_CHUNK))
                })
                .is_ok()
    }

    /// How to upload a blob of `size` bytes: the configured mode, except that blobs above
    /// ACR's monolithic limit go in chunks from the start, and that a registry which refused a
    /// whole blob gets chunks for the rest of the run.
    fn upload_mode(&self, size: u64) -> UploadMode {
        match self.inner.upload {
            UploadMode::Monolithic
                if self.inner.auto_chunk.load(Ordering::Relaxed) != 0
                    || (self.inner.kind == RegistryKind::Acr && size > ACR_MONOLITHIC_LIMIT) =>
            {
                UploadMode::Chunked {
                    chunk_size: match self.inner.auto_chunk.load(Ordering::Relaxed) {
                        0 => FALLBACK_CHUNK,
                        n => n,
                    },
                }
            }
            mode => mode,
        }
    }

    async fn put_whole(
        &self,
        session: UploadSession,
        descriptor: &Descriptor,
        stream: BlobStream,
    ) -> Result<(), Error> {
        let client = self.clone();
        let counted = stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                client
                    .inner
                    .stats
                    .bytes_uploaded
                    .fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        });
        let body = Body::Stream(BlobStream::new(counted), descriptor.size);
        self.complete(session, &descriptor.digest, body).await
    }

    async fn put_chunks(
        &self,
        mut session: UploadSession,
        descriptor: &Descriptor,
        mut stream: BlobStream,
        chunk_size: u64,
    ) -> Result<(), Error> {
        let chunk_size = chunk_size.max(session.min_chunk.unwrap_or(0)).max(1) as usize;
        let mut buffer = BytesMut::with_capacity(chunk_size.min(16 * 1024 * 1024));
        let mut offset = 0u64;
        while let Some(chunk) = stream.next().await {
            buffer.extend_from_slice(&chunk?);
            while buffer.len() >= chunk_size {
                let part = buffer.split_to(chunk_size).freeze();
                session = self.patch(session, part, &mut offset).await?;
            }
        }
        if !buffer.is_empty() {
            session = self.patch(session, buffer.freeze(), &mut offset).await?;
        }
        self.complete(session, &descriptor.digest, Body::Bytes(Bytes::new()))
            .await
    }

    async fn patch(
        &self,
        session: UploadSession,
        part: Bytes,
        offset: &mut u64,
    ) -> Result<UploadSession, Error> {
        let len = part.len() as u64;
        let end = *offset + len - 1;
        let range =
            HeaderValue::from_str(&format!("{}-{end}", *offset)).expect("digits are header text");
        let request = Request::new(
            Method::PATCH,
            session.location.clone(),
            RequestKind::UploadChunk,
            &self.path(&session.repository),
            Access::Push,
        )
        .header(CONTENT_TYPE, octet_stream())
        .header(reqwest::header::CONTENT_RANGE, range)
        .header(CONTENT_LENGTH, HeaderValue::from(len))
        .body(Body::Bytes(part));
        let response = self.send(request).await?;
        // ECR answers a chunk with 201 rather than 202.
        if response.status() != StatusCode::ACCEPTED && response.status() != StatusCode::CREATED {
            return Err(self.unexpected(&Method::PATCH, response).await);
        }
        // Registries have been seen to drop chunks silently: the Range must cover what we sent.
        if let Some(range) = response
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
        {
            let stored_end = range
                .rsplit('-')
                .next()
                .and_then(|e| e.trim().parse::<u64>().ok());
            if stored_end != Some(end) {
                return Err(Error::protocol(
                    &crate::error::host_of(response.url()),
                    format!(
                        "upload chunk ending at byte {end} was acknowledged with Range '{range}'"
                    ),
                ));
            }
        }
        self.inner
            .stats
            .bytes_uploaded
            .fetch_add(len, Ordering::Relaxed);
        *offset += len;
        let next = self
            .session(&session.repository, &response)
            .unwrap_or(session);
        Ok(next)
    }

    async fn complete(
        &self,
        session: UploadSession,
        digest: &Digest,
        body: Body,
    ) -> Result<(), Error> {
        let mut url = session.location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut request = Request::new(
            Method::PUT,
            url,
            RequestKind::UploadComplete,
            &self.path(&session.repository),
            Access::Push,
        )
        .header(CONTENT_TYPE, octet_stream());
        if matches!(body, Body::Bytes(ref b) if b.is_empty()) {
            request = request.header(CONTENT_LENGTH, HeaderValue::from(0));
        }
        let response = self.send(request.body(body)).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.unexpected(&Method::PUT, response).await);
        }
        if let Some(stored) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && stored.algorithm() == digest.algorithm()
            && &stored != digest
        {
            return Err(Error::protocol(
                &crate::error::host_of(response.url()),
                format!("blob {digest} was stored as {stored}"),
            ));
        }
        Ok(())
    }

    /// Delete an upload session, best effort: a failure here must not hide the error that
    /// made us abandon it.
    async fn cancel_upload(&self, session: UploadSession) {
        let request = Request::new(
            Method::DELETE,
            session.location,
            RequestKind::UploadCancel,
            &self.path(&session.repository),
            Access::Push,
        );
        if let Err(e) = self.send(request).await {
            tracing::debug!(error = %e, "could not delete an abandoned upload session");
        }
    }
}
