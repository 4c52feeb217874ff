//! The registry client over the OCI Distribution API, OCI image layouts, and the copy engine
//! built on them.
//!
//! Principal types:
//! - [`Client`] (built by [`ClientBuilder`]): one registry. Challenge-driven auth (anonymous,
//!   Basic, Bearer tokens cached per scope set, one retry after a 401), manifests with their
//!   raw bytes, streaming blob reads verified against their digest, monolithic, chunked and
//!   mounted uploads, paginated tag lists, and referrers (API or fallback tag).
//! - [`Layout`]: an OCI image layout directory, read and written like a repository.
//! - [`Repository`]: either of the two, behind the operations the engine needs.
//! - [`copy_image`], [`Copy`](struct@Copy) and [`copy`]: copy one image (an index with all its children,
//!   and its referrers) from one repository to another.
//! - [`Registries`]: one client per registry from per-registry settings and one credential
//!   provider.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ocync_transport::Error> {
//! // A build script's view: copy one image, credentials from docker's config.json.
//! let report = ocync_transport::copy("cgr.dev/chainguard/static:latest", "localhost:5000/static:latest").await?;
//! println!("{} ({} blobs uploaded)", report.digest, report.blobs_uploaded);
//! # Ok(()) }
//! ```

mod api;
mod blob;
mod client;
mod copy;
mod error;
mod filter;
mod layout;
mod location;
mod manifest;
mod rate_limit;
mod referrers;
mod registries;
mod repository;
mod retry;
mod stream;
mod sync;
mod tag;
mod upload;

pub use api::RegistryApi;
pub use client::{Client, ClientBuilder, ClientStats, RequestKind, Scheme, UploadMode};
pub use copy::{Copy, CopyOptions, CopyReport, copy, copy_image};
pub use error::{Error, ErrorKind};
pub use filter::{DropReason, Selection, TagFilter, TagRules, TagSort, cosign_subject};
pub use layout::Layout;
pub use location::Location;
pub use manifest::PushedManifest;
pub use rate_limit::{ActionGroup, DEFAULT_MAX_CONCURRENT, LaneStats, Limits, Rate, RegistryKind};
pub use referrers::Referrers;
pub use registries::Registries;
pub use repository::Repository;
pub use stream::BlobStream;
pub use sync::{
    Endpoint, ImageReport, Mapping, MappingError, Progress, ProgressSnapshot, ReferrerPolicy,
    RegistryStats, Shard, Status, SyncOptions, SyncPlan, SyncReport, Target, filter_index, sync,
};
pub use upload::{Mount, UploadSession};

#[cfg(feature = "test-support")]
pub mod testing;
