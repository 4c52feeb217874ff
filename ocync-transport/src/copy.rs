//! Copying one image: the sync engine's job for one source image and one target.
//!
//! Everything the engine guarantees holds here: blobs before manifests, children before their
//! index, a subject before its referrers, one writer per digest, present blobs skipped and
//! blobs mounted from the source repository when it is on the same registry, bytes verified
//! while they stream.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use ocync_core::Digest;

use crate::error::{Error, ErrorKind};
use crate::location::Location;
use crate::registries::Registries;
use crate::repository::Repository;
use crate::sync::{Cache, Job, Lane, ReferrerPolicy, Shared, Status, SyncOptions, SyncPlan};

/// What to copy and how hard to push.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Copy referrers (signatures, SBOMs, attestations) of the image and of each child,
    /// recursively (default true).
    pub referrers: bool,
    /// Blob transfers in flight at once (default 6).
    pub blob_concurrency: usize,
    /// Where blobs in transfer are staged (see [`SyncOptions::staging_dir`]; default none).
    pub staging_dir: Option<std::path::PathBuf>,
    /// Counters a display reads while the copy goes on.
    pub progress: Option<Arc<crate::sync::Progress>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            referrers: true,
            blob_concurrency: 6,
            staging_dir: None,
            progress: None,
        }
    }
}

impl CopyOptions {
    /// Whether to copy referrers.
    pub fn referrers(mut self, on: bool) -> Self {
        self.referrers = on;
        self
    }

    /// Blob transfers in flight at once (at least 1).
    pub fn blob_concurrency(mut self, n: usize) -> Self {
        self.blob_concurrency = n.max(1);
        self
    }

    /// Count what the copy does in `progress`, for a display.
    pub fn progress(mut self, progress: Arc<crate::sync::Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stage blobs in transfer under `dir`, so a failed transfer need not read its source
    /// again.
    pub fn staging(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.staging_dir = Some(dir.into());
        self
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Source, as given.
    pub source: String,
    /// Target, with the tag written.
    pub target: String,
    /// `synced` when something was written, `skipped` when the target already had the image
    /// and its referrers.
    pub status: Status,
    /// Digest of the copied root manifest (identical at source and target).
    pub digest: Digest,
    /// Manifests written (root, children, referrers, referrers indexes).
    pub manifests_pushed: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blob bytes uploaded.
    pub bytes_uploaded: u64,
    /// Referrer manifests copied.
    pub referrers_copied: u64,
}

/// Copy `reference` (tag or digest) from `source` to `target`, under `tag` (or by digest only
/// when `tag` is `None`).
pub async fn copy_image(
    source: &Repository,
    reference: &str,
    target: &Repository,
    tag: Option<&str>,
    options: &CopyOptions,
) -> Result<CopyReport, Error> {
    let started = Instant::now();
    let mut sync_options = SyncOptions::default().blob_concurrency(options.blob_concurrency);
    sync_options.staging_dir = options.staging_dir.clone();
    sync_options.progress = options.progress.clone();
    let shared = Shared::new(
        SyncPlan::default(),
        &sync_options,
        Arc::new(Cache::disabled()),
    );
    let policy = ReferrerPolicy {
        enabled: options.referrers,
        ..ReferrerPolicy::default()
    };
    let job = Job {
        shared: &shared,
        source,
        platforms: None,
        referrers: &policy,
        immutable: false,
        repo_tags: None,
        priority: 0,
    };
    let label = format!(
        "{}{}",
        target.display_name(),
        tag.map(|t| format!(":{t}")).unwrap_or_default()
    );
    let mut lanes = [Lane::new(label, String::new(), target.clone())];
    if let Some(progress) = &options.progress {
        progress.found(1);
    }
    let written = job.run(reference, tag, &mut lanes).await;
    if let Some(progress) = &options.progress {
        progress.settled(written.is_err() || lanes[0].failure().is_some());
    }
    let written = written?;
    if let Some(e) = lanes[0].failure() {
        return Err(e.clone());
    }
    let image = lanes[0].report(
        0,
        &format!("{}:{reference}", source.display_name()),
        started,
        Some(&written),
    );
    let digest = written.target;
    Ok(CopyReport {
        source: image.source,
        target: image.target,
        status: if image.status == Status::Synced {
            Status::Synced
        } else {
            Status::Skipped
        },
        digest,
        manifests_pushed: image.manifests_pushed,
        blobs_uploaded: image.blobs_uploaded,
        blobs_mounted: image.blobs_mounted,
        blobs_skipped: image.blobs_skipped,
        bytes_uploaded: image.bytes_uploaded,
        referrers_copied: image.referrers_copied,
    })
}

/// Copy one image between two locations given as strings (`registry/repo:tag`,
/// `oci:<dir>[:tag]`), with credentials from docker's `config.json`.
///
/// ```no_run
/// # async fn demo() -> Result<(), ocync_transport::Error> {
/// let report = ocync_transport::copy("cgr.dev/chainguard/static:latest", "oci:./static:latest").await?;
/// println!("copied {}", report.digest);
/// # Ok(()) }
/// ```
pub async fn copy(source: &str, target: &str) -> Result<CopyReport, Error> {
    Copy::new(source, target).run().await
}

/// A configurable copy between two locations.
#[derive(Debug)]
pub struct Copy<'r> {
    source: String,
    target: String,
    options: CopyOptions,
    registries: Option<&'r Registries>,
}

impl<'r> Copy<'r> {
    /// Copy `source` to `target` (registry references or `oci:<dir>[:tag]`). The target's tag
    /// defaults to the source's tag.
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Copy<'r> {
        Copy {
            source: source.into(),
            target: target.into(),
            options: CopyOptions::default(),
            registries: None,
        }
    }

    /// Copy options.
    pub fn options(mut self, options: CopyOptions) -> Self {
        self.options = options;
        self
    }

    /// Registry settings and credentials (default: docker's `config.json`).
    pub fn registries(mut self, registries: &'r Registries) -> Self {
        self.registries = Some(registries);
        self
    }

    /// Run the copy.
    pub async fn run(self) -> Result<CopyReport, Error> {
        let source: Location = self.source.parse()?;
        let target: Location = self.target.parse()?;
        let owned;
        let registries = match self.registries {
            Some(r) => r,
            None => {
                owned = Registries::from_docker_config()?;
                &owned
            }
        };
        let from = registries.open(&source, false).await?;
        let reference = match source.reference() {
            Some(r) => r,
            None => only_tag(&from, &source).await?,
        };
        let to = registries.open(&target, true).await?;
        let explicit = has_explicit_reference(&self.target);
        let pinned = match &target {
            Location::Registry(r) if explicit => r.digest().cloned(),
            Location::Layout {
                reference: Some(r), ..
            } => r.parse::<Digest>().ok(),
            _ => None,
        };
        let tag = if pinned.is_some() {
            None
        } else if explicit {
            target.tag().map(str::to_owned)
        } else {
            source
                .tag()
                .map(str::to_owned)
                .or_else(|| (reference.parse::<Digest>().is_err()).then(|| reference.clone()))
        };
        let report = copy_image(&from, &reference, &to, tag.as_deref(), &self.options).await?;
        if let Some(pinned) = pinned
            && pinned != report.digest
        {
            return Err(ErrorKind::InvalidLocation {
                input: self.target,
                reason: format!(
                    "the target names digest {pinned} but the source is {}",
                    report.digest
                ),
            }
            .into());
        }
        Ok(CopyReport {
            source: source.to_string(),
            ..report
        })
    }
}

/// Whether a location string names a tag or digest itself (so a target without one inherits
/// the source's tag, as `docker tag` users expect).
fn has_explicit_reference(input: &str) -> bool {
    let rest = input.strip_prefix("oci:").unwrap_or(input);
    let last = rest.rsplit('/').next().unwrap_or(rest);
    last.contains(':') || last.contains('@')
}

/// The reference of a layout given without one: its only tag.
async fn only_tag(repository: &Repository, location: &Location) -> Result<String, Error> {
    let tags = repository.tags().await?;
    match tags.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ErrorKind::InvalidLocation {
            input: location.to_string(),
            reason: "the layout has no tagged image; name one by digest: oci:<dir>@sha256:…".into(),
        }
        .into()),
        many => Err(ErrorKind::InvalidLocation {
            input: location.to_string(),
            reason: format!(
                "the layout has several tags ({}); name one, e.g. {location}:{}",
                many.join(", "),
                many[0]
            ),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_references() {
        for (input, expected) in [
            ("ghcr.io/a/b", false),
            ("ghcr.io/a/b:v1", true),
            ("localhost:5000/app", false),
            ("localhost:5000/app@sha256:abc", true),
            ("oci:/tmp/x", false),
            ("oci:/tmp/x:v1", true),
            ("oci:dir:with/colon", false),
        ] {
            assert_eq!(has_explicit_reference(input), expected, "{input}");
        }
    }
}
