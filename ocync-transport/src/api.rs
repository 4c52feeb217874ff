//! [`RegistryApi`]: calls beside the distribution API that make a registry cheaper or friendlier
//! to sync into, such as ECR's `BatchCheckLayerAvailability` (one call for up to 100 blobs
//! instead of a `HEAD` each) and `CreateRepository` (ECR has no create-on-push by default).
//!
//! The trait lives here so the engine can use it; implementations live with the cloud SDKs
//! (the CLI adapts `ocync-auth`'s ECR API), keeping this crate free of them.

use std::collections::HashSet;
use std::fmt;

use ocync_auth::BoxFuture;
use ocync_core::Digest;

use crate::error::{Error, ErrorKind};

/// Registry-specific control-plane calls the engine uses when a client has them.
pub trait RegistryApi: Send + Sync + fmt::Debug {
    /// A stable name for logs and errors (`ecr`).
    fn name(&self) -> &'static str;

    /// Which of `digests` `repository` already holds. The engine skips the `HEAD` of each one
    /// reported present and checks the others as usual; an error falls back to `HEAD`s.
    fn blobs_present<'a>(
        &'a self,
        repository: &'a str,
        digests: &'a [Digest],
    ) -> BoxFuture<'a, Result<HashSet<Digest>, Error>>;

    /// Create `repository` if it does not exist. `Ok(true)`: created; `Ok(false)`: it existed.
    fn create_repository<'a>(&'a self, repository: &'a str) -> BoxFuture<'a, Result<bool, Error>>;
}

impl Error {
    /// An error from a [`RegistryApi`] call, for implementations outside this crate.
    pub fn api(
        registry: impl Into<String>,
        operation: &'static str,
        reason: impl Into<String>,
    ) -> Error {
        ErrorKind::Api {
            registry: registry.into(),
            operation,
            reason: reason.into(),
        }
        .into()
    }
}
