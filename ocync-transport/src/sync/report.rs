//! What a run did: one entry per (tag, target), mapping-level errors, and per-registry counters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use ocync_core::Digest;

/// The outcome of one image at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Copied (something was written).
    Synced,
    /// Already there; nothing written.
    Skipped,
    /// Would be copied (dry run).
    Planned,
    /// Failed; see the error.
    Failed,
    /// Not finished because the run was stopped.
    Interrupted,
}

/// One image (source tag) at one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageReport {
    /// Index of the mapping in the plan.
    pub mapping: usize,
    /// `registry/repository:tag` at the source.
    pub source: String,
    /// `registry/repository:tag` at the target.
    pub target: String,
    /// The outcome.
    pub status: Status,
    /// Why it was skipped or planned (`unchanged`, `digest_match`, `immutable_tag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The digest the source tag points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// The digest written (the source's, or the platform-filtered index's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Blob bytes uploaded for this image.
    pub bytes_uploaded: u64,
    /// Blob bytes not uploaded because the target had them or got them by mount.
    pub bytes_avoided: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Manifests written (children, the image, referrers, referrers indexes).
    pub manifests_pushed: u64,
    /// Referrer manifests copied.
    pub referrers_copied: u64,
    /// Bytes a dry run would upload at most (blobs the target lacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_planned: Option<u64>,
    /// Requests the job made for this tag, all its targets together (the source's and the
    /// targets'; token requests included).
    pub requests: u64,
    /// Milliseconds spent.
    pub duration_ms: u64,
    /// The error, for failed images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the failure was an authentication or authorization error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_failure: bool,
}

/// A mapping that failed before any of its images could be tried (a missing source
/// repository, a tag list error, too few tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MappingError {
    /// Index of the mapping in the plan.
    pub mapping: usize,
    /// The mapping's label.
    pub label: String,
    /// The error.
    pub error: String,
    /// Whether it was an authentication or authorization error.
    pub auth_failure: bool,
}

/// Requests and bytes of one registry during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Requests by kind.
    pub requests: BTreeMap<&'static str, u64>,
    /// All requests.
    pub total_requests: u64,
    /// Blob bytes uploaded.
    pub bytes_uploaded: u64,
    /// Blob bytes downloaded.
    pub bytes_downloaded: u64,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// 429 responses.
    pub throttled: u64,
    /// The registry's last `ratelimit-remaining` (Docker Hub pulls left), if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit_remaining: Option<u64>,
    /// Lanes of the registry's rate limiter that were throttled or made requests wait.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pacing: Vec<crate::LaneStats>,
}

/// Everything a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// One entry per (tag, target).
    pub images: Vec<ImageReport>,
    /// Mappings that failed as a whole.
    pub mapping_errors: Vec<MappingError>,
    /// Per-registry counters, by registry name.
    pub registries: BTreeMap<String, RegistryStats>,
    /// Whether a shutdown stopped the run before everything was done.
    pub interrupted: bool,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

impl SyncReport {
    /// Images with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.images.iter().filter(|i| i.status == status).count()
    }

    /// Whether nothing failed and nothing was left undone.
    pub fn is_success(&self) -> bool {
        !self.interrupted
            && self.mapping_errors.is_empty()
            && self.count(Status::Failed) == 0
            && self.count(Status::Interrupted) == 0
    }

    /// Whether every failure was an authentication or authorization error.
    pub fn only_auth_failures(&self) -> bool {
        let failures: Vec<bool> = self
            .images
            .iter()
            .filter(|i| i.status == Status::Failed)
            .map(|i| i.auth_failure)
            .chain(self.mapping_errors.iter().map(|m| m.auth_failure))
            .collect();
        !failures.is_empty() && failures.iter().all(|a| *a)
    }

    /// Blob bytes uploaded across every image.
    pub fn bytes_uploaded(&self) -> u64 {
        self.images.iter().map(|i| i.bytes_uploaded).sum()
    }

    /// Blob bytes whose upload was avoided (already there, or mounted) across every image.
    pub fn bytes_avoided(&self) -> u64 {
        self.images.iter().map(|i| i.bytes_avoided).sum()
    }

    /// The run's wall time.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}
