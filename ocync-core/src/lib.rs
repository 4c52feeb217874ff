//! The OCI data model shared by every ocync crate: no I/O, no async, no HTTP.
//!
//! Principal types:
//! - [`Reference`]: `[registry/]repository[:tag][@digest]`, with Docker Hub normalisation
//!   (`nginx` is `docker.io/library/nginx:latest`).
//! - [`Digest`] and [`Verifier`]: content addresses (sha256, sha512) and a streaming check of
//!   bytes against one.
//! - [`MediaType`], [`Descriptor`] and [`Platform`]: the image-spec's building blocks.
//! - [`Manifest`]: a pulled manifest. It keeps its **raw bytes** next to the parsed view
//!   ([`ImageManifest`] or [`ImageIndex`]), so a push is byte-for-byte and a digest never
//!   changes. Docker v2 schema 2 manifests and manifest lists are read through the same types.
//!
//! Why not oci-spec's types for manifests: they keep annotations in a `HashMap` (the JSON key
//! order, and so the digest of anything we build, would change from run to run) and they reject
//! manifests that real registries serve. We parse leniently for traversal and never re-serialise
//! a pulled manifest; the tests cross-check our parse against oci-spec's on the same bytes.
//!
//! ```
//! use ocync_core::{Digest, Manifest, Reference};
//!
//! let reference: Reference = "nginx".parse()?;
//! assert_eq!(reference.to_string(), "docker.io/library/nginx:latest");
//!
//! let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
//! let manifest = Manifest::from_bytes(bytes.to_vec().into(), None)?;
//! assert!(manifest.is_index());
//! assert_eq!(manifest.digest(), &Digest::sha256(bytes));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod descriptor;
mod digest;
mod error;
mod manifest;
mod media_type;
mod platform;
mod reference;

pub use descriptor::{Annotations, Descriptor};
pub use digest::{Algorithm, Digest, Verifier};
pub use error::Error;
pub use manifest::{ImageIndex, ImageManifest, MAX_MANIFEST_SIZE, Manifest, ManifestKind};
pub use media_type::MediaType;
pub use platform::{Platform, PlatformFilter};
pub use reference::{
    DOCKER_HUB, DOCKER_HUB_API_HOST, Reference, validate_repository, validate_tag,
};

/// Annotation naming a manifest in an OCI image layout's `index.json` (image-spec
/// `annotations.md`): the tag of that manifest.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
