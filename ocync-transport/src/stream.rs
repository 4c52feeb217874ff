//! [`BlobStream`]: blob bytes in flight, and the verifying wrapper every download goes through.
//!
//! The verifier holds back the most recent chunk until the source is exhausted and the digest
//! and size are proven. A corrupt or truncated blob therefore never delivers its last bytes: an
//! upload fed from it stays incomplete and the registry never commits it, and a layout write
//! never renames its temporary file into place.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use ocync_core::{Descriptor, Verifier};

use crate::error::{Error, ErrorKind};

/// A stream of blob bytes. Streams from [`crate::Client::blob`] and layouts are verified
/// against their descriptor.
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
}

impl BlobStream {
    /// Wrap any stream of byte chunks.
    pub fn new(stream: impl Stream<Item = Result<Bytes, Error>> + Send + 'static) -> BlobStream {
        BlobStream {
            inner: Box::pin(stream),
        }
    }

    /// A stream of one in-memory chunk.
    pub fn from_bytes(bytes: Bytes) -> BlobStream {
        BlobStream::new(futures::stream::iter([Ok(bytes)]))
    }

    /// A stream with no bytes.
    pub fn empty() -> BlobStream {
        BlobStream::new(futures::stream::empty())
    }

    /// Check the bytes against `descriptor` (size and digest) as they pass; `location` names
    /// the source in errors.
    pub(crate) fn verified(self, descriptor: &Descriptor, location: String) -> BlobStream {
        BlobStream::new(Verify {
            inner: self,
            verifier: Some(descriptor.digest.verifier()),
            expected_size: descriptor.size,
            held: None,
            location,
            done: false,
        })
    }

    /// Read the whole stream into memory (small blobs and manifests only).
    pub async fn collect(mut self, limit: u64) -> Result<Bytes, Error> {
        use futures::StreamExt as _;
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() as u64 > limit {
                return Err(Error::protocol(
                    "(memory)",
                    format!("content exceeds {limit} bytes"),
                ));
            }
        }
        Ok(Bytes::from(out))
    }
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream").finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Verify {
    inner: BlobStream,
    verifier: Option<Verifier>,
    expected_size: u64,
    held: Option<Bytes>,
    location: String,
    done: bool,
}

impl Verify {
    fn size_error(&self, actual: u64, hint: &'static str, interrupted: bool) -> Error {
        let digest = self
            .verifier
            .as_ref()
            .map(|v| v.expected().clone())
            .expect("verifier present until finished");
        ErrorKind::BlobSize {
            location: self.location.clone(),
            digest,
            expected: self.expected_size,
            actual,
            hint,
            interrupted,
        }
        .into()
    }
}

impl Stream for Verify {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let verifier = this
                        .verifier
                        .as_mut()
                        .expect("verifier present until finished");
                    verifier.update(&chunk);
                    let len = verifier.len();
                    if len > this.expected_size {
                        this.done = true;
                        this.held = None;
                        return Poll::Ready(Some(Err(this.size_error(
                            len,
                            ": more bytes than the descriptor says",
                            false,
                        ))));
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.held = None;
                    let received = this.verifier.as_ref().map_or(0, Verifier::len);
                    let err = match e.kind() {
                        ErrorKind::Request { .. } if received < this.expected_size => this
                            .size_error(received, ": the connection closed before the end", true),
                        _ => e,
                    };
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let verifier = this
                        .verifier
                        .take()
                        .expect("verifier present until finished");
                    let received = verifier.len();
                    if received != this.expected_size {
                        this.verifier = Some(verifier);
                        this.held = None;
                        return Poll::Ready(Some(Err(this.size_error(
                            received,
                            ": the download was cut short",
                            false,
                        ))));
                    }
                    if let Err(ocync_core::Error::DigestMismatch { expected, actual }) =
                        verifier.finish()
                    {
                        this.held = None;
                        return Poll::Ready(Some(Err(ErrorKind::BlobDigest {
                            location: this.location.clone(),
                            expected,
                            actual,
                        }
                        .into())));
                    }
                    // Verified: release the held-back chunk, then end.
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use ocync_core::{Digest, MediaType};

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor::new(
            MediaType::OciLayerGzip,
            Digest::sha256(bytes),
            bytes.len() as u64,
        )
    }

    fn chunks(data: &[u8], size: usize) -> BlobStream {
        let parts: Vec<Result<Bytes, Error>> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        BlobStream::new(futures::stream::iter(parts))
    }

    async fn drain(mut s: BlobStream) -> (Vec<u8>, Option<Error>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn good_bytes_pass_through_unchanged() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (out, err) =
            drain(chunks(&data, 4096).verified(&descriptor(&data), "src".into())).await;
        assert!(err.is_none());
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn corrupt_bytes_never_deliver_the_last_chunk() {
        let data = vec![1u8; 10_000];
        let mut corrupt = data.clone();
        corrupt[9_999] = 2;
        let (out, err) =
            drain(chunks(&corrupt, 1000).verified(&descriptor(&data), "reg/app".into())).await;
        let err = err.expect("mismatch is an error");
        assert!(matches!(err.kind(), ErrorKind::BlobDigest { .. }));
        assert!(err.to_string().contains("reg/app"), "{err}");
        assert!(out.len() < corrupt.len(), "the final chunk was held back");
    }

    #[tokio::test]
    async fn short_and_long_streams_are_size_errors() {
        let data = vec![3u8; 5000];
        let (_, err) =
            drain(chunks(&data[..4000], 1000).verified(&descriptor(&data), "x".into())).await;
        let err = err.unwrap();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::BlobSize {
                    actual: 4000,
                    expected: 5000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("cut short"));

        let mut long = data.clone();
        long.push(0);
        let (_, err) = drain(chunks(&long, 1000).verified(&descriptor(&data), "x".into())).await;
        assert!(matches!(err.unwrap().kind(), ErrorKind::BlobSize { .. }));
    }

    #[tokio::test]
    async fn empty_blob_verifies() {
        let (out, err) = drain(BlobStream::empty().verified(&descriptor(b""), "x".into())).await;
        assert!(out.is_empty() && err.is_none());
    }
}
