//! The one error type of `ocync-core`.

use crate::{Digest, MediaType};

/// Errors from parsing and validating OCI data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference string is not `[registry/]repository[:tag][@digest]`.
    #[error("invalid reference '{input}': {reason}")]
    InvalidReference {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "invalid tag '{input}': a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'"
    )]
    InvalidTag {
        /// The tag as given.
        input: String,
    },

    /// A digest string is not `algorithm:hex` with a supported algorithm.
    #[error("invalid digest '{input}': {reason}")]
    InvalidDigest {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Content does not hash to the digest it was addressed by.
    #[error("content does not match digest {expected}: it hashes to {actual}")]
    DigestMismatch {
        /// The digest the content was expected to have.
        expected: Digest,
        /// The digest the content actually has.
        actual: Digest,
    },

    /// A platform string is not `os/architecture[/variant]`.
    #[error("invalid platform '{input}': expected os/architecture[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform {
        /// The string as given.
        input: String,
    },

    /// A manifest is larger than registries accept.
    #[error("manifest of {size} bytes exceeds the {limit}-byte limit registries accept")]
    ManifestTooLarge {
        /// Size of the manifest (at least this many bytes when it was cut short).
        size: u64,
        /// The limit, [`crate::MAX_MANIFEST_SIZE`].
        limit: u64,
    },

    /// Manifest bytes are not valid JSON for the declared media type.
    #[error("cannot parse {media_type} manifest")]
    ManifestJson {
        /// The media type the bytes were parsed as.
        media_type: MediaType,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A manifest media type that ocync cannot copy (Docker schema 1, or not a manifest at all).
    #[error(
        "unsupported manifest media type '{media_type}': ocync copies OCI image manifests and indexes and Docker v2 schema 2 manifests and manifest lists"
    )]
    UnsupportedMediaType {
        /// The media type that was found.
        media_type: String,
    },
}
