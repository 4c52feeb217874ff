//! The sync engine: many mappings, many tags, many targets, each byte uploaded once.
//!
//! A run is a pipeline, not a sequence of phases. Each mapping's discovery (catalog, tag list,
//! filter) feeds tag jobs as soon as it has them; a tag job checks the source and targets and,
//! when something changed, transfers the image. Shared state makes the run cheap and safe:
//!
//! - one source `GET` per manifest digest per run (alias tags and shared children are
//!   memoised);
//! - one writer per (target repository, digest), and per target registry one upload of a blob,
//!   which other repositories then mount; one source `GET` per blob per job, teed to every
//!   target that needs it;
//! - children before parents: blobs, child manifests, the index, then tags (alias tags wait for
//!   the manifest; tag pushes of one digest are serialised), a subject before its referrers;
//! - a persistent [`cache`](SyncOptions::cache_path) so an unchanged tag costs one source and
//!   one target `HEAD`; entries are verified, and a target that lost a blob heals in the same
//!   run;
//! - bytes in transfer [staged](SyncOptions::staging_dir) on disk, so a failed upload or a cut
//!   download starts again from disk and reads from the source only what never arrived, and a
//!   blob sent to one registry is read from disk for another mapping's registry;
//! - failures stay with the image or mapping they belong to; the rest of the run completes.

mod blobs;
mod cache;
mod engine;
mod platform;
mod progress;
mod report;
mod stage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ocync_core::PlatformFilter;

use crate::client::Client;
use crate::error::Error;
use crate::filter::TagFilter;
use crate::layout::Layout;
use crate::repository::Repository;

pub(crate) use cache::Cache;
pub use engine::sync;
pub(crate) use engine::{Job, Lane, Shared};
pub use platform::filter_index;
pub use progress::{Progress, ProgressSnapshot};
pub use report::{ImageReport, MappingError, RegistryStats, Status, SyncReport};

/// What a run syncs.
#[derive(Debug, Clone, Default)]
pub struct SyncPlan {
    /// The mappings, in configuration order.
    pub mappings: Vec<Mapping>,
}

/// One mapping: a source repository (or repository glob) copied to one or more targets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Mapping {
    /// How reports name the mapping (`from -> to`).
    pub label: String,
    /// Where images are read.
    pub source: Endpoint,
    /// The source repository, or a glob over the source's repositories when `glob` is set.
    pub from: String,
    /// Whether `from` is a glob (the source's catalog is listed).
    pub glob: bool,
    /// Where images are written.
    pub targets: Vec<Target>,
    /// Which tags are copied.
    pub filter: Arc<TagFilter>,
    /// Only these platforms of multi-platform images (`None`: all, bytes unchanged).
    pub platforms: Option<Vec<PlatformFilter>>,
    /// Which referrers are copied.
    pub referrers: ReferrerPolicy,
}

impl Mapping {
    /// A mapping of one repository to targets, every tag the filter selects.
    pub fn new(
        source: Endpoint,
        from: impl Into<String>,
        targets: Vec<Target>,
        filter: TagFilter,
    ) -> Mapping {
        let from = from.into();
        let label = format!(
            "{from} -> {}",
            targets
                .first()
                .map(|t| t.to.as_str())
                .unwrap_or(from.as_str())
        );
        Mapping {
            label,
            source,
            from,
            glob: false,
            targets,
            filter: Arc::new(filter),
            platforms: None,
            referrers: ReferrerPolicy::default(),
        }
    }

    /// Treat `from` as a glob over the source's repositories.
    pub fn glob(mut self, glob: bool) -> Self {
        self.glob = glob;
        self
    }

    /// How reports name the mapping.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Keep only these platforms of multi-platform images.
    pub fn platforms(mut self, platforms: Option<Vec<PlatformFilter>>) -> Self {
        self.platforms = platforms;
        self
    }

    /// Which referrers to copy.
    pub fn referrers(mut self, policy: ReferrerPolicy) -> Self {
        self.referrers = policy;
        self
    }

    /// The target repository for source repository `repository` (glob mappings keep the part
    /// after `from`'s literal prefix under `to`).
    pub(crate) fn target_repository(&self, target: &Target, repository: &str) -> String {
        if !self.glob {
            return target.to.clone();
        }
        let literal = glob_literal_prefix(&self.from);
        let rest = repository.strip_prefix(&literal).unwrap_or(repository);
        let prefix = target.to.trim_end_matches('/');
        if target.to == self.from || prefix.is_empty() || target.to.contains(['*', '?', '[']) {
            repository.to_owned()
        } else {
            format!("{prefix}/{}", rest.trim_start_matches('/'))
        }
    }
}

/// The literal part of a repository glob before its first glob character, cut back to the
/// last `/` (`team/app-*` -> `team/`).
pub(crate) fn glob_literal_prefix(glob: &str) -> String {
    let first = glob.find(['*', '?', '[', '{']).unwrap_or(glob.len());
    match glob[..first].rfind('/') {
        Some(i) => glob[..=i].to_owned(),
        None => String::new(),
    }
}

/// A target of a mapping.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Target {
    /// How reports name it (the registry alias).
    pub label: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// The target repository (a prefix for glob mappings).
    pub to: String,
}

impl Target {
    /// A target repository on an endpoint.
    pub fn new(label: impl Into<String>, endpoint: Endpoint, to: impl Into<String>) -> Target {
        Target {
            label: label.into(),
            endpoint,
            to: to.into(),
        }
    }
}

/// A registry, or a directory holding one OCI layout per repository (`<dir>/<repository>`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Endpoint {
    /// A registry.
    Registry(Client),
    /// A directory of OCI image layouts.
    Layouts(PathBuf),
}

impl Endpoint {
    /// `host` or `oci:<dir>`, for messages.
    pub fn name(&self) -> String {
        match self {
            Endpoint::Registry(c) => c.registry().to_owned(),
            Endpoint::Layouts(p) => format!("oci:{}", p.display()),
        }
    }

    /// A stable key for caches: one per registry endpoint or layout directory.
    pub(crate) fn key(&self) -> String {
        match self {
            Endpoint::Registry(c) => c.site_key(),
            Endpoint::Layouts(p) => format!("oci:{}", p.display()),
        }
    }

    /// The repository `name` on this endpoint; layouts are opened (sources) or created (targets).
    pub(crate) async fn repository(&self, name: &str, create: bool) -> Result<Repository, Error> {
        match self {
            Endpoint::Registry(c) => Ok(Repository::registry(c.clone(), name)),
            Endpoint::Layouts(root) => {
                let path = root.join(name);
                let layout = if create {
                    Layout::create(path).await?
                } else {
                    Layout::open(path).await?
                };
                Ok(Repository::layout(layout))
            }
        }
    }

    /// Repositories of the endpoint (the registry catalog, or the layouts under the directory).
    pub(crate) async fn repositories(&self) -> Result<Vec<String>, Error> {
        match self {
            Endpoint::Registry(c) => c.catalog().await,
            Endpoint::Layouts(root) => {
                let mut found = Vec::new();
                let mut pending = vec![root.clone()];
                while let Some(dir) = pending.pop() {
                    if dir.join("oci-layout").is_file() {
                        if let Ok(rel) = dir.strip_prefix(root) {
                            found.push(rel.to_string_lossy().replace('\\', "/"));
                        }
                        continue;
                    }
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for entry in entries.flatten() {
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            pending.push(entry.path());
                        }
                    }
                }
                found.sort();
                Ok(found)
            }
        }
    }
}

/// Which referrers (signatures, SBOMs, attestations) a mapping copies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReferrerPolicy {
    /// Copy referrers at all (default true).
    pub enabled: bool,
    /// Only these artifact types (empty: all).
    pub include: Vec<String>,
    /// Not these artifact types.
    pub exclude: Vec<String>,
    /// Fail an image whose source has no matching referrer.
    pub required: bool,
}

impl Default for ReferrerPolicy {
    fn default() -> Self {
        ReferrerPolicy {
            enabled: true,
            include: Vec::new(),
            exclude: Vec::new(),
            required: false,
        }
    }
}

impl ReferrerPolicy {
    /// Whether a referrer of `artifact_type` is copied.
    pub fn admits(&self, artifact_type: Option<&str>) -> bool {
        let t = artifact_type.unwrap_or_default();
        self.enabled
            && (self.include.is_empty() || self.include.iter().any(|i| i == t))
            && !self.exclude.iter().any(|e| e == t)
    }
}

/// How a run behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Tag jobs (images) in flight at once (default 50).
    pub image_concurrency: usize,
    /// Blob transfers in flight at once (default 8).
    pub blob_concurrency: usize,
    /// Look, report what would be done, write nothing.
    pub dry_run: bool,
    /// The persistent cache file; `None`: no cache.
    pub cache_path: Option<PathBuf>,
    /// Ignore a cache file older than this (`None`: never).
    pub cache_ttl: Option<Duration>,
    /// Set to `true` to stop: no new work starts; running work gets `drain_timeout`.
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
    /// How long running work may take to finish after a shutdown (default 25 s).
    pub drain_timeout: Duration,
    /// Where blobs read from registries are staged while in transfer, so that a failed upload
    /// or a cut download starts again without reading the source again, and kept for the rest
    /// of the run for other jobs needing them when the targets span several registries
    /// (`None`: no staging).
    pub staging_dir: Option<PathBuf>,
    /// The most bytes staged and kept at once; a blob that would exceed it streams unstaged
    /// (`None`: no limit on blobs in flight, 1 GiB of kept blobs).
    pub staging_limit: Option<u64>,
    /// Run only this part of the repositories (`None`: all).
    pub shard: Option<Shard>,
    /// Counters a display reads while the run goes on (`None`: the run keeps its own).
    pub progress: Option<Arc<Progress>>,
}

/// One of N disjoint parts of a run's source repositories, so that N processes (the pods of a
/// Kubernetes Indexed Job) split one large mirror with no overlap. A repository belongs to
/// shard `hash(name) mod N`, with a fixed hash (FNV-1a) of its name within its source: the
/// split is the same on every machine and every run, and does not move when other
/// repositories are added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Part `index` (from 0) of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// This part's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The number of parts.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether `repository` (a source repository name, `library/nginx`) is in this part.
    pub fn owns(&self, repository: &str) -> bool {
        let hash = repository.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        hash % u64::from(self.count) == u64::from(self.index)
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            image_concurrency: 50,
            blob_concurrency: 8,
            dry_run: false,
            cache_path: None,
            cache_ttl: None,
            shutdown: None,
            drain_timeout: Duration::from_secs(25),
            staging_dir: None,
            staging_limit: None,
            shard: None,
            progress: None,
        }
    }
}

impl SyncOptions {
    /// Use a persistent cache file.
    pub fn cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_path = Some(path.into());
        self
    }

    /// Report only, write nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Tag jobs in flight at once (at least 1).
    pub fn image_concurrency(mut self, n: usize) -> Self {
        self.image_concurrency = n.max(1);
        self
    }

    /// Blob transfers in flight at once (at least 1).
    pub fn blob_concurrency(mut self, n: usize) -> Self {
        self.blob_concurrency = n.max(1);
        self
    }

    /// Stage blobs in transfer under `dir`, at most `limit` bytes at once.
    pub fn staging(mut self, dir: impl Into<PathBuf>, limit: Option<u64>) -> Self {
        self.staging_dir = Some(dir.into());
        self.staging_limit = limit;
        self
    }

    /// Count what the run does in `progress`, for a display.
    pub fn progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stop when the receiver turns `true`.
    pub fn shutdown(mut self, signal: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = Some(signal);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_prefixes() {
        for (glob, prefix) in [
            ("team/*", "team/"),
            ("team/app-*", "team/"),
            ("*", ""),
            ("a/b/c?", "a/b/"),
            ("plain", ""),
        ] {
            assert_eq!(glob_literal_prefix(glob), prefix, "{glob}");
        }
    }

    #[test]
    fn shards_are_disjoint_cover_everything_and_stay_put() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("team{}/app-{i}", i % 7))
            .collect();
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for name in &names {
            let owners: Vec<u32> = shards
                .iter()
                .filter(|s| s.owns(name))
                .map(Shard::index)
                .collect();
            assert_eq!(owners.len(), 1, "{name}: {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&n| (200..300).contains(&n)), "{sizes:?}");
        // Fixed values: a change of hash would move every repository between pods.
        // FNV-1a("library/nginx") = 0xc7b295326a71de67, which is 3 mod 4.
        assert!(Shard::new(3, 4).unwrap().owns("library/nginx"));
        assert!(Shard::new(0, 1).unwrap().owns("anything"));
        assert_eq!(Shard::new(4, 4), None);
        assert_eq!(Shard::new(0, 0), None);
    }

    #[test]
    fn referrer_policy() {
        let p = ReferrerPolicy {
            include: vec!["a".into()],
            exclude: vec!["b".into()],
            ..ReferrerPolicy::default()
        };
        assert!(p.admits(Some("a")));
        assert!(!p.admits(Some("b")) && !p.admits(Some("c")) && !p.admits(None));
        assert!(ReferrerPolicy::default().admits(None));
    }
}
