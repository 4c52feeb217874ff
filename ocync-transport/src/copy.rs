//! The copy engine: one image (a manifest, or an index with all its children) and its
//! referrers, from one [`Repository`] to another.
//!
//! Order is what keeps a target consistent: blobs land before the manifest that references
//! them, children before their index, the index before its tag, a subject before its
//! referrers, and referrers before the fallback-tag index that lists them. Each blob and
//! manifest is written by one task at a time ([`OnceMap`]), blobs already present are skipped
//! (or mounted from the source repository on the same registry), and bytes stream from source
//! to target without being held in memory.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tokio::sync::Semaphore;

use ocync_core::{Descriptor, Digest, ImageIndex, Manifest};

use crate::error::{Error, ErrorKind};
use crate::location::Location;
use crate::once::OnceMap;
use crate::referrers::Referrers;
use crate::registries::Registries;
use crate::repository::Repository;
use crate::upload::Mount;

/// What to copy and how hard to push.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Copy referrers (signatures, SBOMs, attestations) of the image and of each child,
    /// recursively (default true).
    pub referrers: bool,
    /// Blob transfers in flight at once (default 6).
    pub blob_concurrency: usize,
    /// Child manifests and referrers worked on at once (default 4).
    pub manifest_concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            referrers: true,
            blob_concurrency: 6,
            manifest_concurrency: 4,
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
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// Source, as given.
    pub source: String,
    /// Target, as given.
    pub target: String,
    /// Digest of the copied root manifest (identical at source and target).
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Manifests written (root, children, referrers, referrers indexes).
    pub manifests_pushed: u64,
    /// Manifests already present.
    pub manifests_skipped: u64,
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

#[derive(Debug, Default)]
struct Tally {
    manifests_pushed: AtomicU64,
    manifests_skipped: AtomicU64,
    blobs_uploaded: AtomicU64,
    blobs_mounted: AtomicU64,
    blobs_skipped: AtomicU64,
    bytes_uploaded: AtomicU64,
    referrers_copied: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
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
    let root = source.manifest(reference).await?;
    let job = Job {
        source,
        target,
        options,
        blobs: OnceMap::default(),
        manifests: OnceMap::default(),
        subjects: Mutex::new(HashSet::new()),
        transfers: Semaphore::new(options.blob_concurrency.max(1)),
        tally: Tally::default(),
    };
    let present = target
        .manifest_head(tag.unwrap_or(&root.digest().to_string()))
        .await?
        .is_some_and(|d| d.digest == *root.digest());
    if present {
        add(&job.tally.manifests_skipped, 1);
        tracing::debug!(target = %target.display_name(), digest = %root.digest(), "already present");
    } else {
        job.copy_contents(&root).await?;
        target.push_manifest(&root, tag).await?;
        add(&job.tally.manifests_pushed, 1);
        if tag.is_none() {
            target.list_untagged(&root).await?;
        }
    }
    if options.referrers {
        let subjects: Vec<Descriptor> = std::iter::once(root.descriptor())
            .chain(root.children().iter().cloned())
            .collect();
        futures::stream::iter(subjects)
            .map(|s| job.copy_referrers(s))
            .buffer_unordered(options.manifest_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
    }
    let t = &job.tally;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(CopyReport {
        source: format!("{}:{reference}", source.display_name()),
        target: format!(
            "{}{}",
            target.display_name(),
            tag.map(|t| format!(":{t}")).unwrap_or_default()
        ),
        digest: root.digest().clone(),
        media_type: root.media_type().to_string(),
        manifests_pushed: n(&t.manifests_pushed),
        manifests_skipped: n(&t.manifests_skipped),
        blobs_uploaded: n(&t.blobs_uploaded),
        blobs_mounted: n(&t.blobs_mounted),
        blobs_skipped: n(&t.blobs_skipped),
        bytes_uploaded: n(&t.bytes_uploaded),
        referrers_copied: n(&t.referrers_copied),
    })
}

struct Job<'a> {
    source: &'a Repository,
    target: &'a Repository,
    options: &'a CopyOptions,
    blobs: OnceMap<Digest>,
    manifests: OnceMap<Digest>,
    subjects: Mutex<HashSet<Digest>>,
    transfers: Semaphore,
    tally: Tally,
}

impl Job<'_> {
    /// Everything a manifest references: its blobs, or its children (recursively).
    fn copy_contents<'s>(&'s self, manifest: &'s Manifest) -> BoxFuture<'s, Result<(), Error>> {
        Box::pin(async move {
            let concurrency = self.options.manifest_concurrency.max(1);
            if manifest.is_index() {
                let children: Vec<_> = manifest
                    .children()
                    .iter()
                    .map(|child| self.copy_child(child))
                    .collect();
                futures::stream::iter(children)
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<()>>()
                    .await?;
            } else {
                let blobs: Vec<_> = manifest
                    .blobs()
                    .into_iter()
                    .map(|blob| self.copy_blob(blob))
                    .collect();
                futures::stream::iter(blobs)
                    .buffer_unordered(self.options.blob_concurrency.max(1))
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            Ok(())
        })
    }

    /// A manifest referenced by digest (an index child or a referrer), unless the target has it.
    async fn copy_child(&self, descriptor: &Descriptor) -> Result<(), Error> {
        self.manifests
            .run(&descriptor.digest, || async {
                if self
                    .target
                    .manifest_head(&descriptor.digest.to_string())
                    .await?
                    .is_some()
                {
                    add(&self.tally.manifests_skipped, 1);
                    return Ok(());
                }
                let manifest = self.source.manifest(&descriptor.digest.to_string()).await?;
                self.copy_contents(&manifest).await?;
                self.target.push_manifest(&manifest, None).await?;
                add(&self.tally.manifests_pushed, 1);
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn copy_blob(&self, descriptor: &Descriptor) -> Result<(), Error> {
        self.blobs
            .run(&descriptor.digest, || async {
                let _permit = self
                    .transfers
                    .acquire()
                    .await
                    .expect("semaphore is never closed");
                let mut session = None;
                if let Some((client, from)) = self.target.mount_from(self.source) {
                    let Repository::Registry { name, .. } = self.target else {
                        unreachable!("mount_from only answers for registries")
                    };
                    match client.mount_blob(name, &descriptor.digest, from).await? {
                        Mount::Mounted => {
                            add(&self.tally.blobs_mounted, 1);
                            return Ok(());
                        }
                        Mount::Session(s) => session = Some(s),
                    }
                } else if self.target.blob_exists(&descriptor.digest).await? {
                    add(&self.tally.blobs_skipped, 1);
                    return Ok(());
                }
                let stream = self.source.blob(descriptor).await?;
                self.target.push_blob(descriptor, stream, session).await?;
                add(&self.tally.blobs_uploaded, 1);
                add(&self.tally.bytes_uploaded, descriptor.size);
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The referrers of `subject` (and theirs, recursively), then the fallback-tag index for
    /// targets that do not keep referrers themselves.
    fn copy_referrers(&self, subject: Descriptor) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if !self
                .subjects
                .lock()
                .expect("subjects lock")
                .insert(subject.digest.clone())
            {
                return Ok(());
            }
            let found = self.source.referrers(&subject.digest).await?;
            if found.descriptors.is_empty() {
                return Ok(());
            }
            let acknowledged: Vec<bool> = futures::stream::iter(found.descriptors.clone())
                .map(|referrer| async move {
                    let acknowledged = self.copy_referrer(&referrer).await?;
                    self.copy_referrers(referrer).await?;
                    Ok::<_, Error>(acknowledged)
                })
                .buffer_unordered(self.options.manifest_concurrency.max(1))
                .try_collect()
                .await?;
            if acknowledged.iter().any(|a| *a) {
                return Ok(());
            }
            self.update_fallback_index(&subject.digest, &found).await
        })
    }

    /// Copy one referrer manifest. `true` when the target acknowledged its subject.
    async fn copy_referrer(&self, referrer: &Descriptor) -> Result<bool, Error> {
        let mut acknowledged = false;
        self.manifests
            .run(&referrer.digest, || async {
                if self
                    .target
                    .manifest_head(&referrer.digest.to_string())
                    .await?
                    .is_some()
                {
                    add(&self.tally.manifests_skipped, 1);
                    return Ok(());
                }
                let manifest = self.source.manifest(&referrer.digest.to_string()).await?;
                self.copy_contents(&manifest).await?;
                acknowledged = self
                    .target
                    .push_manifest(&manifest, None)
                    .await?
                    .subject_acknowledged;
                add(&self.tally.manifests_pushed, 1);
                add(&self.tally.referrers_copied, 1);
                Ok::<(), Error>(())
            })
            .await?;
        Ok(acknowledged)
    }

    /// On a target without the referrers API, make the `<alg>-<hex>` tag list every referrer
    /// it has plus the source's. When the result lists exactly what the source's own fallback
    /// index lists, that index is copied byte-for-byte, so its digest matches the source.
    async fn update_fallback_index(
        &self,
        subject: &Digest,
        found: &Referrers,
    ) -> Result<(), Error> {
        if self.target.keeps_referrers() == Some(true) {
            return Ok(());
        }
        let existing = self.target.referrers(subject).await?;
        if self.target.keeps_referrers() == Some(true) {
            return Ok(());
        }
        let mut merged = existing.descriptors.clone();
        for d in &found.descriptors {
            if !merged.iter().any(|m| m.digest == d.digest) {
                merged.push(d.clone());
            }
        }
        if merged.len() == existing.descriptors.len() && existing.fallback_index.is_some() {
            return Ok(());
        }
        let digests = |list: &[Descriptor]| {
            list.iter()
                .map(|d| d.digest.clone())
                .collect::<HashSet<_>>()
        };
        let index = match &found.fallback_index {
            Some(source_index) if digests(source_index.children()) == digests(&merged) => {
                source_index.clone()
            }
            _ => ImageIndex::new(merged).to_manifest(),
        };
        self.target
            .push_manifest(&index, Some(&subject.referrers_tag()))
            .await?;
        add(&self.tally.manifests_pushed, 1);
        Ok(())
    }
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
