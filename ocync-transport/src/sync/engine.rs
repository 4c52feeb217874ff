//! The run: discovery feeds tag jobs through a channel as soon as it finds them; each job
//! checks, transfers and reports one source tag for every target of its mapping. `copy_image`
//! is the same job with one target.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::{Notify, OnceCell, Semaphore, mpsc};
use tokio::task::JoinSet;

use ocync_core::{Descriptor, Digest, ImageIndex, Manifest, PlatformFilter};

use crate::error::{Error, ErrorKind};
use crate::filter::cosign_subject;
use crate::referrers::Referrers;
use crate::repository::Repository;

use super::blobs::{Blobs, KeyedLocks, Place, Tally};
use super::cache::{Cache, TagEntry};
use super::platform::{filter_index, platform_key};
use super::progress::Progress;
use super::report::{ImageReport, MappingError, RegistryStats, Status, SyncReport};
use super::stage::Stage;
use super::{Endpoint, ReferrerPolicy, Shard, SyncOptions, SyncPlan};

/// Run a plan. Never fails as a whole: every error is reported with the image or mapping it
/// belongs to.
pub async fn sync(plan: SyncPlan, options: SyncOptions) -> SyncReport {
    let started = Instant::now();
    let cache = Arc::new(match &options.cache_path {
        Some(path) if !options.dry_run => Cache::load(path, options.cache_ttl),
        _ => Cache::disabled(),
    });
    let shared = Arc::new(Shared::new(plan, &options, cache.clone()));
    for client in shared.clients() {
        if let Some(supported) = cache.referrers_api(&client.site_key()) {
            client.set_referrers_api(supported);
        }
    }
    let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<TagJob>();
    let mut discovery = JoinSet::new();
    for index in 0..shared.plan.mappings.len() {
        discovery.spawn(discover(shared.clone(), index, jobs_tx.clone()));
    }
    drop(jobs_tx);

    let mut shutdown = options.shutdown.clone();
    let mut jobs = JoinSet::new();
    let mut receiving = true;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let stop_signal = async {
            match shutdown.as_mut() {
                Some(rx) if !*rx.borrow() => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        };
        let drain = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            job = jobs_rx.recv(), if receiving => match job {
                Some(job) if shared.stopping.load(Ordering::SeqCst) => shared.interrupted(&job),
                Some(job) => {
                    let id = shared.track(&job);
                    let requests = Arc::new(AtomicU64::new(0));
                    jobs.spawn(crate::client::JOB_REQUESTS.scope(requests.clone(), run_job(shared.clone(), job, id, requests)));
                }
                None => receiving = false,
            },
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            Some(_) = discovery.join_next(), if !discovery.is_empty() => {}
            () = stop_signal, if deadline.is_none() => {
                tracing::warn!(drain = ?options.drain_timeout, "stopping: no new work starts, running transfers get time to finish");
                shared.stopping.store(true, Ordering::SeqCst);
                deadline = Some(tokio::time::Instant::now() + options.drain_timeout);
            },
            () = drain => {
                tracing::warn!("drain deadline reached, abandoning unfinished work");
                jobs.abort_all();
                discovery.abort_all();
                break;
            },
            else => break,
        }
        if !receiving && jobs.is_empty() && discovery.is_empty() {
            break;
        }
    }
    while jobs.join_next().await.is_some() {}
    while discovery.join_next().await.is_some() {}
    // Jobs still queued in the channel, and jobs aborted at the deadline, did not finish.
    while let Ok(job) = jobs_rx.try_recv() {
        shared.interrupted(&job);
    }
    shared.abandon_inflight();

    for client in shared.clients() {
        if let Some(supported) = client.supports_referrers_api() {
            cache.set_referrers_api(&client.site_key(), supported);
        }
    }
    if let Err(e) = cache.save() {
        tracing::warn!(error = %e, "cannot save the cache; the next run starts cold");
    }
    let mut report = shared.report();
    report.dry_run = options.dry_run;
    report.interrupted = shared.stopping.load(Ordering::SeqCst);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// One source tag (or digest) of one mapping, for all of its targets.
#[derive(Debug)]
struct TagJob {
    mapping: usize,
    repository: String,
    reference: String,
    /// Every tag of the source repository, when discovery listed them: tells for free whether
    /// a referrers fallback tag exists.
    repo_tags: Option<Arc<HashSet<String>>>,
    /// Signals this job's completion to cosign-tag jobs waiting for their subject.
    done: Option<Arc<Countdown>>,
}

/// A countdown: cosign tags of a repository wait for its other jobs.
#[derive(Debug)]
struct Countdown {
    left: AtomicUsize,
    zero: Notify,
}

impl Countdown {
    fn finish(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.zero.notify_waiters();
        }
    }

    async fn wait(&self, stopping: &AtomicBool) {
        loop {
            let notified = self.zero.notified();
            if self.left.load(Ordering::SeqCst) == 0 || stopping.load(Ordering::SeqCst) {
                return;
            }
            // Re-check the stop flag now and then: a stop does not notify countdowns.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), notified).await;
        }
    }
}

/// State shared by every job of a run.
pub(crate) struct Shared {
    plan: SyncPlan,
    dry_run: bool,
    cache: Arc<Cache>,
    blobs: Blobs,
    images: Semaphore,
    manifests: Mutex<HashMap<String, Arc<OnceCell<Arc<Manifest>>>>>,
    referrers: Mutex<HashMap<String, Arc<OnceCell<Arc<Referrers>>>>>,
    pushes: KeyedLocks<(String, String, Digest)>,
    subjects: KeyedLocks<(String, String, Digest)>,
    rechecks: KeyedLocks<String>,
    repositories: KeyedLocks<(String, String)>,
    results: Mutex<Vec<ImageReport>>,
    mapping_errors: Mutex<Vec<MappingError>>,
    inflight: Mutex<BTreeMap<u64, (usize, String, String)>>,
    next_id: AtomicU64,
    stopping: AtomicBool,
    shard: Option<Shard>,
    progress: Arc<Progress>,
    /// Each client's counters when the run started: a plan reused across runs (`ocync watch`)
    /// keeps its clients, and a report covers its own run only.
    baseline: HashMap<String, crate::client::ClientStats>,
}

impl Shared {
    pub(crate) fn new(plan: SyncPlan, options: &SyncOptions, cache: Arc<Cache>) -> Shared {
        let progress = options.progress.clone().unwrap_or_default();
        let target_registries = plan
            .mappings
            .iter()
            .flat_map(|m| m.targets.iter().map(|t| t.endpoint.key()))
            .collect::<HashSet<String>>()
            .len();
        let mut shared = Shared {
            plan,
            dry_run: options.dry_run,
            blobs: Blobs::new(
                cache.clone(),
                progress.clone(),
                options.blob_concurrency,
                options
                    .staging_dir
                    .clone()
                    .filter(|_| !options.dry_run)
                    .map(|dir| Stage::new(dir, options.staging_limit, target_registries > 1)),
            ),
            cache,
            images: Semaphore::new(options.image_concurrency.max(1)),
            manifests: Mutex::new(HashMap::new()),
            referrers: Mutex::new(HashMap::new()),
            pushes: KeyedLocks::default(),
            subjects: KeyedLocks::default(),
            rechecks: KeyedLocks::default(),
            repositories: KeyedLocks::default(),
            results: Mutex::new(Vec::new()),
            mapping_errors: Mutex::new(Vec::new()),
            inflight: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            shard: options.shard,
            progress,
            baseline: HashMap::new(),
        };
        shared.baseline = shared
            .clients()
            .into_iter()
            .map(|c| (c.site_key(), c.stats()))
            .collect();
        shared
    }

    fn track(&self, job: &TagJob) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.inflight.lock().expect("inflight").insert(
            id,
            (job.mapping, job.repository.clone(), job.reference.clone()),
        );
        id
    }

    fn untrack(&self, id: u64) {
        self.inflight.lock().expect("inflight").remove(&id);
    }

    /// Report every target of a job as interrupted.
    fn interrupted(&self, job: &TagJob) {
        self.record_interrupted(job.mapping, &job.repository, &job.reference);
        if let Some(done) = &job.done {
            done.finish();
        }
    }

    fn record_interrupted(&self, mapping: usize, repository: &str, reference: &str) {
        let m = &self.plan.mappings[mapping];
        for target in &m.targets {
            let to = m.target_repository(target, repository);
            let mut report = blank_report(
                mapping,
                reference_name(&m.source, repository, reference),
                reference_name(&target.endpoint, &to, reference),
            );
            report.status = Status::Interrupted;
            report.error = Some("the run was stopped before this image was done".into());
            self.record(report);
        }
    }

    fn abandon_inflight(&self) {
        let left: Vec<_> = std::mem::take(&mut *self.inflight.lock().expect("inflight"))
            .into_values()
            .collect();
        for (mapping, repository, reference) in left {
            self.record_interrupted(mapping, &repository, &reference);
        }
    }

    fn record(&self, report: ImageReport) {
        self.progress.settled(report.status == Status::Failed);
        match report.status {
            Status::Failed => tracing::error!(
                source = %report.source,
                target = %report.target,
                error = report.error.as_deref().unwrap_or_default(),
                "failed"
            ),
            Status::Synced => {
                tracing::info!(source = %report.source, target = %report.target, bytes = report.bytes_uploaded, "synced")
            }
            _ => {
                tracing::debug!(source = %report.source, target = %report.target, status = ?report.status, "done")
            }
        }
        self.results.lock().expect("results").push(report);
    }

    fn mapping_error(&self, mapping: usize, error: &Error) {
        tracing::error!(mapping = %self.plan.mappings[mapping].label, error = %error_chain(error), "mapping failed");
        self.mapping_errors
            .lock()
            .expect("mapping errors")
            .push(MappingError {
                mapping,
                label: self.plan.mappings[mapping].label.clone(),
                error: error_chain(error),
                auth_failure: error.is_unauthorized(),
            });
    }

    /// Every registry client of the plan.
    fn clients(&self) -> Vec<crate::client::Client> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in &self.plan.mappings {
            for endpoint in std::iter::once(&m.source).chain(m.targets.iter().map(|t| &t.endpoint))
            {
                if let Endpoint::Registry(client) = endpoint
                    && seen.insert(client.site_key())
                {
                    out.push(client.clone());
                }
            }
        }
        out
    }

    fn report(&self) -> SyncReport {
        let mut images = std::mem::take(&mut *self.results.lock().expect("results"));
        images.sort_by(|a, b| {
            (a.mapping, &a.source, &a.target).cmp(&(b.mapping, &b.source, &b.target))
        });
        let mut registries = BTreeMap::new();
        for client in self.clients() {
            let stats = match self.baseline.get(&client.site_key()) {
                Some(earlier) => client.stats().since(earlier),
                None => client.stats(),
            };
            registries.insert(
                client.registry().to_owned(),
                RegistryStats {
                    total_requests: stats.total(),
                    requests: stats.requests,
                    bytes_uploaded: stats.bytes_uploaded,
                    bytes_downloaded: stats.bytes_downloaded,
                    retries: stats.retries,
                    throttled: stats.throttled,
                    ratelimit_remaining: stats.ratelimit_remaining,
                    pacing: stats
                        .pacing
                        .into_iter()
                        .filter(|lane| lane.throttle_events > 0 || lane.waited_ms > 0)
                        .collect(),
                },
            );
        }
        SyncReport {
            images,
            mapping_errors: std::mem::take(
                &mut *self.mapping_errors.lock().expect("mapping errors"),
            ),
            registries,
            ..SyncReport::default()
        }
    }

    /// A source manifest by digest, fetched once per run.
    async fn manifest(&self, source: &Repository, digest: &Digest) -> Result<Arc<Manifest>, Error> {
        let cell = self.manifest_cell(source, digest);
        cell.get_or_try_init(|| async { source.manifest(&digest.to_string()).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// Remember a manifest fetched by tag, so its digest is not fetched again.
    fn remember(&self, source: &Repository, manifest: Manifest) -> Arc<Manifest> {
        let cell = self.manifest_cell(source, manifest.digest());
        let manifest = Arc::new(manifest);
        let _ = cell.set(manifest.clone());
        cell.get().cloned().unwrap_or(manifest)
    }

    /// The run's slot for the source manifest `digest`.
    fn manifest_cell(&self, source: &Repository, digest: &Digest) -> Arc<OnceCell<Arc<Manifest>>> {
        self.manifests
            .lock()
            .expect("manifests")
            .entry(format!("{}@{digest}", source_id(source)))
            .or_default()
            .clone()
    }

    /// A source subject's referrers, looked up once per run.
    async fn source_referrers(
        &self,
        source: &Repository,
        subject: &Digest,
    ) -> Result<Arc<Referrers>, Error> {
        let key = format!("{}@{subject}", source_id(source));
        let cell = self
            .referrers
            .lock()
            .expect("referrers")
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async { source.referrers(subject).await.map(Arc::new) })
            .await
            .cloned()
    }
}

/// A mapping's discovery: its repositories, their tags, the filter; jobs go out as found.
async fn discover(shared: Arc<Shared>, index: usize, jobs: mpsc::UnboundedSender<TagJob>) {
    let mapping = &shared.plan.mappings[index];
    let repositories = if mapping.glob {
        let matcher = match globset::Glob::new(&mapping.from) {
            Ok(glob) => glob.compile_matcher(),
            Err(e) => {
                let err: Error = ErrorKind::InvalidFilter {
                    field: "from",
                    input: mapping.from.clone(),
                    reason: e.to_string(),
                }
                .into();
                shared.mapping_error(index, &err);
                return;
            }
        };
        match mapping.source.repositories().await {
            Ok(all) => {
                let matched: Vec<String> =
                    all.into_iter().filter(|r| matcher.is_match(r)).collect();
                if matched.is_empty() {
                    tracing::warn!(mapping = %mapping.label, "no source repository matches");
                }
                matched
            }
            Err(e) => {
                shared.mapping_error(index, &e);
                return;
            }
        }
    } else {
        vec![mapping.from.clone()]
    };
    let repositories: Vec<String> = match shared.shard {
        Some(shard) => {
            let total = repositories.len();
            let mine: Vec<String> = repositories.into_iter().filter(|r| shard.owns(r)).collect();
            tracing::debug!(mapping = %mapping.label, shard = shard.index(), of = shard.count(), repositories = mine.len(), total, "repositories of this shard");
            mine
        }
        None => repositories,
    };
    futures::stream::iter(repositories.into_iter().map(|repository| {
        let shared = shared.clone();
        let jobs = jobs.clone();
        async move { discover_repository(&shared, index, repository, &jobs).await }
    }))
    .buffer_unordered(4)
    .collect::<Vec<()>>()
    .await;
}

async fn discover_repository(
    shared: &Shared,
    index: usize,
    repository: String,
    jobs: &mpsc::UnboundedSender<TagJob>,
) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let mapping = &shared.plan.mappings[index];
    let (tags, repo_tags) = match mapping.filter.exact_tags() {
        Some(exact) => (exact.to_vec(), None),
        None => {
            let listed = match mapping.source.repository(&repository, false).await {
                Ok(source) => source.tags().await,
                Err(e) => Err(e),
            };
            let listed = match listed {
                Ok(l) => l,
                Err(e) => {
                    shared.mapping_error(index, &e);
                    return;
                }
            };
            let selection = mapping.filter.select(&listed);
            let name = format!("{}/{repository}", mapping.source.name());
            if let Err(e) = mapping.filter.check_min_tags(&name, &selection) {
                shared.mapping_error(index, &e);
                return;
            }
            if selection.kept.is_empty() {
                tracing::warn!(
                    mapping = %mapping.label,
                    repository = %repository,
                    tags = listed.len(),
                    filter = %mapping.filter.describe(),
                    "the filter selects no tag"
                );
            }
            (
                selection.kept,
                Some(Arc::new(listed.into_iter().collect::<HashSet<_>>())),
            )
        }
    };
    // Cosign signature tags name their subject; they go after the repository's other tags.
    let (later, now): (Vec<String>, Vec<String>) =
        tags.into_iter().partition(|t| cosign_subject(t).is_some());
    let countdown = (!later.is_empty() && !now.is_empty()).then(|| {
        Arc::new(Countdown {
            left: AtomicUsize::new(now.len()),
            zero: Notify::new(),
        })
    });
    let targets = mapping.targets.len().max(1) as u64;
    let send = |reference: String, done: Option<Arc<Countdown>>| {
        shared.progress.found(targets);
        let _ = jobs.send(TagJob {
            mapping: index,
            repository: repository.clone(),
            reference,
            repo_tags: repo_tags.clone(),
            done,
        });
    };
    for reference in now {
        send(reference, countdown.clone());
    }
    if let Some(countdown) = &countdown {
        countdown.wait(&shared.stopping).await;
    }
    for reference in later {
        send(reference, None);
    }
}

/// A target of a job, with what happened there.
pub(crate) struct Lane {
    label: String,
    key: String,
    /// `None` in a dry run when the target layout does not exist yet.
    place: Option<Place>,
    pub(crate) tally: Tally,
    outcome: Option<(Status, Option<String>)>,
    failure: Option<Error>,
    planned: Option<u64>,
}

impl Lane {
    pub(crate) fn new(label: String, key: String, repository: Repository) -> Lane {
        Lane {
            place: Some(Place::new(repository)),
            ..Lane::unplaced(label, key)
        }
    }

    /// A lane whose target cannot be opened (or, in a dry run, does not exist yet).
    fn unplaced(label: String, key: String) -> Lane {
        Lane {
            label,
            key,
            place: None,
            tally: Tally::default(),
            outcome: None,
            failure: None,
            planned: None,
        }
    }

    fn open(&self) -> bool {
        self.outcome.is_none() && self.failure.is_none()
    }

    pub(crate) fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    pub(crate) fn report(
        &self,
        mapping: usize,
        source: &str,
        started: Instant,
        written: Option<&Written>,
    ) -> ImageReport {
        let t = &self.tally;
        let (status, reason) = match (&self.failure, &self.outcome) {
            (Some(_), _) => (Status::Failed, None),
            (None, Some((s, r))) => (*s, r.clone()),
            (None, None) => (Status::Synced, None),
        };
        let mut report = blank_report(mapping, source.to_owned(), self.label.clone());
        report.status = status;
        report.reason = reason;
        report.source_digest = written.map(|w| w.source.clone());
        report.digest = written.map(|w| w.target.clone());
        report.bytes_uploaded = Tally::get(&t.bytes_uploaded);
        report.bytes_avoided = Tally::get(&t.bytes_avoided);
        report.blobs_uploaded = Tally::get(&t.blobs_uploaded);
        report.blobs_mounted = Tally::get(&t.blobs_mounted);
        report.blobs_skipped = Tally::get(&t.blobs_skipped);
        report.manifests_pushed = Tally::get(&t.manifests_pushed);
        report.referrers_copied = Tally::get(&t.referrers_copied);
        report.bytes_planned = self.planned;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.auth_failure = self.failure.as_ref().is_some_and(Error::is_unauthorized);
        report.error = self.failure.as_ref().map(error_chain);
        report
    }
}

async fn run_job(shared: Arc<Shared>, job: TagJob, id: u64, requests: Arc<AtomicU64>) {
    let permit = shared
        .images
        .acquire()
        .await
        .expect("semaphore is never closed");
    if shared.stopping.load(Ordering::SeqCst) {
        shared.untrack(id);
        shared.interrupted(&job);
        return;
    }
    let started = Instant::now();
    let mapping = &shared.plan.mappings[job.mapping];
    let source_label = reference_name(&mapping.source, &job.repository, &job.reference);
    let mut lanes = Vec::new();
    for target in &mapping.targets {
        let to = mapping.target_repository(target, &job.repository);
        let label = reference_name(&target.endpoint, &to, &job.reference);
        let key = format!("{}|{to}", target.endpoint.key());
        match target.endpoint.repository(&to, !shared.dry_run).await {
            Ok(repository) => lanes.push(Lane::new(label, key, repository)),
            Err(_) if shared.dry_run && matches!(target.endpoint, Endpoint::Layouts(_)) => {
                lanes.push(Lane::unplaced(label, key))
            }
            Err(e) => lanes.push(Lane {
                failure: Some(e),
                ..Lane::unplaced(label, key)
            }),
        }
    }
    let mut written = None;
    match mapping.source.repository(&job.repository, false).await {
        Ok(source) => {
            let job_state = Job {
                shared: &shared,
                source: &source,
                platforms: mapping.platforms.as_deref(),
                referrers: &mapping.referrers,
                immutable: mapping.filter.is_immutable(&job.reference),
                repo_tags: job.repo_tags.as_deref(),
                priority: id,
            };
            let tag = job
                .reference
                .parse::<Digest>()
                .is_err()
                .then_some(job.reference.as_str());
            match job_state.run(&job.reference, tag, &mut lanes).await {
                Ok(w) => written = Some(w),
                Err(e) => {
                    for lane in lanes.iter_mut().filter(|l| l.open()) {
                        lane.failure = Some(e.clone());
                    }
                }
            }
        }
        Err(e) => {
            for lane in &mut lanes {
                lane.failure.get_or_insert(e.clone());
            }
        }
    }
    for lane in &lanes {
        let mut report = lane.report(job.mapping, &source_label, started, written.as_ref());
        report.requests = requests.load(Ordering::Relaxed);
        shared.record(report);
    }
    drop(permit);
    shared.untrack(id);
    if let Some(done) = &job.done {
        done.finish();
    }
}

/// The digests of a job: what the source tag points at, and what was written (they differ when
/// platforms were filtered).
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) source: Digest,
    pub(crate) target: Digest,
}

/// One source image and what to do with it.
pub(crate) struct Job<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) source: &'a Repository,
    pub(crate) platforms: Option<&'a [PlatformFilter]>,
    pub(crate) referrers: &'a ReferrerPolicy,
    /// The tag matches `immutable_tags`: an existing target tag is left alone.
    pub(crate) immutable: bool,
    pub(crate) repo_tags: Option<&'a HashSet<String>>,
    /// The job's place in the run (its start order): its blob transfers go before those of
    /// jobs started later.
    pub(crate) priority: u64,
}

impl Job<'_> {
    /// Bring every lane up to date with source `reference` (tag or digest), written under
    /// `tag` (or by digest). Returns the digest written. Per-lane problems are recorded in the
    /// lanes; an error here concerns the source and applies to every lane not yet settled.
    pub(crate) async fn run(
        &self,
        reference: &str,
        tag: Option<&str>,
        lanes: &mut [Lane],
    ) -> Result<Written, Error> {
        let shared = self.shared;
        let by_tag = reference.parse::<Digest>().is_err() && tag == Some(reference);
        let cache_key = format!(
            "{}|{reference}|{}",
            source_id(self.source),
            platform_key(self.platforms)
        );
        let cached = if by_tag {
            shared.cache.tag(&cache_key)
        } else {
            None
        };

        // The source digest: a HEAD when the cache may let us stop there, else the GET we need.
        let (source_digest, fetched) = if cached.is_some() {
            match self.source.manifest_head(reference).await? {
                Some(d) => (d.digest, None),
                None => {
                    return Err(ErrorKind::ManifestNotFound {
                        location: self.source.display_name(),
                        reference: reference.to_owned(),
                    }
                    .into());
                }
            }
        } else {
            let m = shared.remember(self.source, self.source.manifest(reference).await?);
            (m.digest().clone(), Some(m))
        };

        // Warm path: the source still has what was pushed, and every target still has it.
        if let Some(entry) = cached.filter(|c| c.source == source_digest)
            && self.all_current(reference, &entry, lanes).await
        {
            for lane in lanes.iter_mut() {
                lane.outcome = Some((Status::Skipped, Some("unchanged".into())));
            }
            if !shared.dry_run && self.referrers.enabled && entry.pushed == source_digest {
                self.recheck_referrers(&source_digest, lanes).await;
            }
            return Ok(Written {
                source: source_digest,
                target: entry.pushed,
            });
        }

        let manifest = match fetched {
            Some(m) => m,
            None => shared.manifest(self.source, &source_digest).await?,
        };
        let effective = match self.platforms {
            Some(p) if manifest.is_index() => Arc::new(filter_index(
                &manifest,
                p,
                &format!("{}:{reference}", self.source.display_name()),
            )?),
            _ => manifest.clone(),
        };

        // Which targets need the image.
        let wanted = tag.map_or_else(|| effective.digest().to_string(), str::to_owned);
        let mut todo = Vec::new();
        for (i, lane) in lanes.iter_mut().enumerate() {
            if !lane.open() {
                continue;
            }
            let Some(place) = &lane.place else {
                lane.planned = Some(self.blob_bytes(&effective).await?);
                lane.outcome = Some((Status::Planned, Some("target does not exist yet".into())));
                continue;
            };
            match place.repository.manifest_head(&wanted).await {
                Ok(Some(d)) if d.digest == *effective.digest() => {
                    lane.outcome = Some((Status::Skipped, Some("digest_match".into())));
                }
                Ok(Some(_)) if self.immutable => {
                    lane.outcome = Some((Status::Skipped, Some("immutable_tag".into())));
                }
                Ok(_) => todo.push(i),
                Err(e) => lane.failure = Some(e),
            }
        }

        if shared.dry_run {
            for i in todo {
                let lane = &mut lanes[i];
                match self.missing_bytes(&effective, lane).await {
                    Ok(bytes) => {
                        lane.planned = Some(bytes);
                        lane.outcome = Some((Status::Planned, None));
                    }
                    Err(e) => lane.failure = Some(e),
                }
            }
            return Ok(Written {
                source: source_digest,
                target: effective.digest().clone(),
            });
        }

        if !todo.is_empty() {
            self.push_image(&effective, lanes, &todo, tag).await;
        }

        // Referrers of what was pushed: the image (when its bytes are the source's) and each child.
        if self.referrers.enabled {
            self.sync_referrers(&manifest, &effective, lanes).await;
        }

        if by_tag
            && lanes
                .iter()
                .all(|l| l.failure.is_none() && l.place.is_some())
        {
            shared.cache.set_tag(
                cache_key,
                TagEntry {
                    source: source_digest.clone(),
                    pushed: effective.digest().clone(),
                    targets: lanes
                        .iter()
                        .map(|l| (l.key.clone(), effective.digest().clone()))
                        .collect(),
                },
            );
        }
        Ok(Written {
            source: source_digest,
            target: effective.digest().clone(),
        })
    }

    /// Whether every lane's tag still points at what the cache says was pushed there.
    async fn all_current(&self, tag: &str, entry: &TagEntry, lanes: &[Lane]) -> bool {
        let checks = futures::future::join_all(lanes.iter().map(|lane| async move {
            match (entry.targets.get(&lane.key), &lane.place) {
                (Some(pushed), Some(place)) => place
                    .repository
                    .manifest_head(tag)
                    .await
                    .is_ok_and(|d| d.is_some_and(|d| d.digest == *pushed)),
                _ => false,
            }
        }))
        .await;
        checks.into_iter().all(|ok| ok)
    }

    /// Every blob of an image (children included), each digest once.
    async fn blobs_of(&self, manifest: &Manifest) -> Result<BTreeMap<Digest, Descriptor>, Error> {
        let mut blobs: BTreeMap<Digest, Descriptor> = manifest
            .blobs()
            .into_iter()
            .map(|d| (d.digest.clone(), d.clone()))
            .collect();
        for child in manifest.children() {
            let child = self.shared.manifest(self.source, &child.digest).await?;
            blobs.extend(
                child
                    .blobs()
                    .into_iter()
                    .map(|d| (d.digest.clone(), d.clone())),
            );
        }
        Ok(blobs)
    }

    async fn blob_bytes(&self, manifest: &Manifest) -> Result<u64, Error> {
        Ok(self
            .blobs_of(manifest)
            .await?
            .values()
            .map(|d| d.size)
            .sum())
    }

    /// Bytes a dry run would upload to one target: the image's blobs the target lacks.
    async fn missing_bytes(&self, manifest: &Manifest, lane: &Lane) -> Result<u64, Error> {
        let Some(place) = &lane.place else {
            return self.blob_bytes(manifest).await;
        };
        let mut missing = 0;
        for (digest, d) in self.blobs_of(manifest).await? {
            if !place.repository.blob_exists(&digest).await? {
                missing += d.size;
            }
        }
        Ok(missing)
    }

    /// Push one image to the lanes `todo`: content once per place (one source read teed to all),
    /// then the manifest under `tag` (or by digest). A place that fails does not stop the others.
    async fn push_image(
        &self,
        manifest: &Arc<Manifest>,
        lanes: &mut [Lane],
        todo: &[usize],
        tag: Option<&str>,
    ) {
        for &i in todo {
            if let Some(place) = &lanes[i].place
                && let Err(e) = self.prepare_place(manifest, place).await
            {
                lanes[i].failure = Some(e);
            }
        }
        let todo: Vec<usize> = todo
            .iter()
            .copied()
            .filter(|&i| lanes[i].place.is_some() && lanes[i].failure.is_none())
            .collect();
        let places: Vec<Place> = todo
            .iter()
            .filter_map(|&i| lanes[i].place.clone())
            .collect();
        let tallies: Vec<&Tally> = todo.iter().map(|&i| &lanes[i].tally).collect();
        let results: Vec<Result<(), Error>> =
            match self.push_content(manifest, &places, &tallies).await {
                Ok(()) => {
                    let roots = places
                        .iter()
                        .zip(&tallies)
                        .map(|(place, tally)| self.push_root(manifest, place, tally, tag));
                    futures::future::join_all(roots).await
                }
                Err(e) if places.len() == 1 => vec![Err(e)],
                // Find which place failed: each on its own (what succeeded is not redone).
                Err(_) => {
                    let each = places
                        .iter()
                        .zip(&tallies)
                        .map(|(place, tally)| async move {
                            self.push_content(manifest, std::slice::from_ref(place), &[*tally])
                                .await?;
                            self.push_root(manifest, place, tally, tag).await
                        });
                    futures::future::join_all(each).await
                }
            };
        for (&i, result) in todo.iter().zip(results) {
            match result {
                Ok(()) => {}
                // ECR with immutable tags keeps the tag it has: a skip, as with `immutable_tags`.
                Err(e) if e.is_immutable_tag() => {
                    tracing::debug!(target = %lanes[i].label, "the registry keeps its immutable tag");
                    lanes[i].outcome = Some((Status::Skipped, Some("immutable_tag".into())));
                }
                Err(e) => lanes[i].failure = Some(e),
            }
        }
    }

    /// Control-plane help before a push, when the target's client has a [`crate::RegistryApi`]:
    /// create the repository (opt-in, once per run) and ask in one call which of the image's
    /// blobs the repository already holds, so they need no `HEAD`.
    async fn prepare_place(&self, manifest: &Manifest, place: &Place) -> Result<(), Error> {
        let Repository::Registry { client, name } = &place.repository else {
            return Ok(());
        };
        let Some(api) = &client.inner.api else {
            return Ok(());
        };
        let repository = client.path(name);
        if client.inner.create_repositories {
            let mut ready = self
                .shared
                .repositories
                .lock(&(place.site.clone(), place.name.clone()))
                .await;
            if !*ready {
                if api.create_repository(&repository).await? {
                    tracing::info!(repository = %place.repository.display_name(), "created the repository");
                }
                *ready = true;
            }
        }
        let known = self
            .shared
            .cache
            .blob_repositories_for(&place.site, &place.name);
        let unknown: Vec<Digest> = self
            .blobs_of(manifest)
            .await?
            .into_keys()
            .filter(|d| !known.contains(d))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        match api.blobs_present(&repository, &unknown).await {
            Ok(present) => {
                for digest in present {
                    self.shared
                        .cache
                        .add_blob(&place.site, &digest, &place.name);
                }
            }
            Err(e) => {
                tracing::debug!(api = api.name(), error = %e, "batch blob check failed; checking each blob instead")
            }
        }
        Ok(())
    }

    /// Push the root manifest to one place; a refusal for a missing blob makes the run forget
    /// what it believed about this image's blobs there, verify them again, and push once more.
    async fn push_root(
        &self,
        manifest: &Arc<Manifest>,
        place: &Place,
        tally: &Tally,
        tag: Option<&str>,
    ) -> Result<(), Error> {
        let result = match self.push_manifest(manifest, place, tally, tag).await {
            Err(e) if e.codes().iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN") => {
                tracing::warn!(target = %place.repository.display_name(), error = %e, "target is missing a blob; checking this image's blobs again");
                for blob in self.blobs_of(manifest).await?.keys() {
                    self.shared.blobs.forget(place, blob).await;
                }
                self.push_content(manifest, std::slice::from_ref(place), &[tally])
                    .await?;
                self.push_manifest(manifest, place, tally, tag).await
            }
            other => other,
        };
        if result.is_ok() && tag.is_none() {
            place.repository.list_untagged(manifest).await?;
        }
        result
    }

    /// Blobs and child manifests of `manifest` at every place (not the manifest itself).
    fn push_content<'s>(
        &'s self,
        manifest: &'s Arc<Manifest>,
        places: &'s [Place],
        tallies: &'s [&'s Tally],
    ) -> BoxFuture<'s, Result<(), Error>> {
        Box::pin(async move {
            if manifest.is_index() {
                let children: Vec<_> = manifest
                    .children()
                    .iter()
                    .map(|child| async move {
                        let child = self.shared.manifest(self.source, &child.digest).await?;
                        self.push_content(&child, places, tallies).await?;
                        for (place, tally) in places.iter().zip(tallies) {
                            self.push_manifest(&child, place, tally, None).await?;
                        }
                        Ok::<(), Error>(())
                    })
                    .collect();
                futures::stream::iter(children)
                    .buffer_unordered(4)
                    .try_collect::<Vec<()>>()
                    .await?;
            } else {
                let blobs: Vec<_> = manifest
                    .blobs()
                    .into_iter()
                    .map(|blob| {
                        self.shared
                            .blobs
                            .ensure(self.source, blob, places, tallies, self.priority)
                    })
                    .collect();
                futures::stream::iter(blobs)
                    .buffer_unordered(6)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            Ok(())
        })
    }

    /// Push a manifest to one place: by digest at most once per run, or under a tag with the
    /// pushes of one digest serialised (distribution rewrites link files in place).
    async fn push_manifest(
        &self,
        manifest: &Manifest,
        place: &Place,
        tally: &Tally,
        tag: Option<&str>,
    ) -> Result<(), Error> {
        let mut pushed = self
            .shared
            .pushes
            .lock(&(
                place.site.clone(),
                place.name.clone(),
                manifest.digest().clone(),
            ))
            .await;
        if tag.is_none() && *pushed {
            return Ok(());
        }
        if tag.is_none()
            && place
                .repository
                .manifest_head(&manifest.digest().to_string())
                .await?
                .is_some()
        {
            *pushed = true;
            return Ok(());
        }
        place.repository.push_manifest(manifest, tag).await?;
        *pushed = true;
        Tally::add(&tally.manifests_pushed, 1);
        Ok(())
    }

    /// Copy the referrers of the pushed image (and of its children) to every lane that has it.
    async fn sync_referrers(
        &self,
        source_manifest: &Manifest,
        pushed: &Manifest,
        lanes: &mut [Lane],
    ) {
        let mut subjects: Vec<Descriptor> = Vec::new();
        // Referrers of a filtered-out index refer to bytes the target does not have.
        if source_manifest.digest() == pushed.digest() {
            subjects.push(pushed.descriptor());
        }
        subjects.extend(pushed.children().iter().cloned());
        let has_image = |l: &Lane| {
            l.failure.is_none()
                && l.place.is_some()
                && !matches!(&l.outcome, Some((_, Some(r))) if r == "immutable_tag")
        };
        let ok: Vec<usize> = (0..lanes.len()).filter(|&i| has_image(&lanes[i])).collect();
        if ok.is_empty() {
            return;
        }
        let places: Vec<Place> = ok.iter().filter_map(|&i| lanes[i].place.clone()).collect();
        let tallies: Vec<&Tally> = ok.iter().map(|&i| &lanes[i].tally).collect();
        let mut found_any = false;
        let mut failure = None;
        for subject in &subjects {
            match self.copy_referrers(subject, &places, &tallies).await {
                Ok(found) => found_any |= found,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && self.referrers.required && !found_any {
            failure = Some(Error::protocol(
                &self.source.display_name(),
                format!(
                    "required referrers missing: {} has no referrer of the configured artifact types",
                    pushed.digest()
                ),
            ));
        }
        let fingerprint = if failure.is_none() {
            self.fingerprint(pushed.digest()).await.ok()
        } else {
            None
        };
        match failure {
            Some(f) => {
                for &i in &ok {
                    lanes[i].failure = Some(f.clone());
                }
            }
            None => {
                if let Some(fp) = fingerprint {
                    self.shared
                        .cache
                        .set_referrers(self.referrers_key(pushed.digest()), fp);
                }
            }
        }
    }

    fn referrers_key(&self, subject: &Digest) -> String {
        format!("{}@{subject}", source_id(self.source))
    }

    /// A cheap fingerprint of a subject's referrers at the source. On a registry without the
    /// referrers API the tag list (already fetched) says whether a fallback tag exists, so an
    /// image without referrers costs no request at all.
    async fn fingerprint(&self, subject: &Digest) -> Result<String, Error> {
        if self.source.keeps_referrers() == Some(false) {
            let fallback = subject.referrers_tag();
            if self.repo_tags.is_some_and(|tags| !tags.contains(&fallback)) {
                return Ok("none".into());
            }
            return Ok(match self.source.manifest_head(&fallback).await? {
                Some(d) => d.digest.to_string(),
                None => "none".into(),
            });
        }
        let found = self.source.referrers(subject).await?;
        if found.fallback_index.is_some() || self.source.keeps_referrers() == Some(false) {
            return Ok(found
                .fallback_index
                .map_or_else(|| "none".into(), |i| i.digest().to_string()));
        }
        let mut digests: Vec<String> = found
            .descriptors
            .iter()
            .map(|d| d.digest.to_string())
            .collect();
        digests.sort();
        Ok(if digests.is_empty() {
            "none".into()
        } else {
            Digest::sha256(digests.join(",").as_bytes()).to_string()
        })
    }

    /// On a warm run: look again at the source's referrers (cheaply) and copy them when they
    /// changed since the last run.
    async fn recheck_referrers(&self, subject: &Digest, lanes: &mut [Lane]) {
        // Alias tags of one image share the recheck.
        let mut done = self
            .shared
            .rechecks
            .lock(&self.referrers_key(subject))
            .await;
        if *done {
            return;
        }
        *done = true;
        let current = match self.fingerprint(subject).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(subject = %subject, error = %e, "cannot check referrers");
                return;
            }
        };
        if self
            .shared
            .cache
            .referrers(&self.referrers_key(subject))
            .as_deref()
            == Some(current.as_str())
        {
            return;
        }
        let manifest = match self.shared.manifest(self.source, subject).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(subject = %subject, error = %e, "cannot read the image to copy its referrers");
                return;
            }
        };
        self.sync_referrers(&manifest, &manifest, lanes).await;
        for lane in lanes.iter_mut().filter(|l| l.failure.is_none()) {
            if Tally::get(&lane.tally.manifests_pushed) > 0 {
                lane.outcome = Some((Status::Synced, Some("referrers".into())));
            }
        }
    }

    /// Copy `subject`'s referrers (recursively) to every place; `Ok(true)` when the source has
    /// at least one the policy admits.
    fn copy_referrers<'s>(
        &'s self,
        subject: &'s Descriptor,
        places: &'s [Place],
        tallies: &'s [&'s Tally],
    ) -> BoxFuture<'s, Result<bool, Error>> {
        Box::pin(async move {
            // A source without the referrers API keeps them under a fallback tag: when the tag
            // list (already fetched) lacks it, there are none, and no request is needed.
            if self.source.keeps_referrers() == Some(false)
                && self
                    .repo_tags
                    .is_some_and(|tags| !tags.contains(&subject.digest.referrers_tag()))
            {
                return Ok(false);
            }
            let found = self
                .shared
                .source_referrers(self.source, &subject.digest)
                .await?;
            let admitted: Vec<Descriptor> = found
                .descriptors
                .iter()
                .filter(|d| self.referrers.admits(d.artifact_type.as_deref()))
                .cloned()
                .collect();
            if admitted.is_empty() {
                return Ok(false);
            }
            for (place, tally) in places.iter().zip(tallies) {
                // One task per (target repository, subject): alias tags do not redo this.
                let mut done = self
                    .shared
                    .subjects
                    .lock(&(
                        place.site.clone(),
                        place.name.clone(),
                        subject.digest.clone(),
                    ))
                    .await;
                if *done {
                    continue;
                }
                let mut acknowledged = false;
                for referrer in &admitted {
                    if place
                        .repository
                        .manifest_head(&referrer.digest.to_string())
                        .await?
                        .is_some()
                    {
                        continue;
                    }
                    let manifest = self.shared.manifest(self.source, &referrer.digest).await?;
                    self.push_content(&manifest, std::slice::from_ref(place), &[*tally])
                        .await?;
                    acknowledged |= place
                        .repository
                        .push_manifest(&manifest, None)
                        .await?
                        .subject_acknowledged;
                    Tally::add(&tally.manifests_pushed, 1);
                    Tally::add(&tally.referrers_copied, 1);
                }
                if !acknowledged {
                    update_fallback_index(
                        &place.repository,
                        &subject.digest,
                        &admitted,
                        found.fallback_index.as_ref(),
                        tally,
                    )
                    .await?;
                }
                *done = true;
            }
            for referrer in &admitted {
                self.copy_referrers(referrer, places, tallies).await?;
            }
            Ok(true)
        })
    }
}

/// On a target without the referrers API, make the `<alg>-<hex>` tag list every referrer it
/// has plus `wanted`. When the result lists exactly what the source's own fallback index lists,
/// that index is copied byte-for-byte, so its digest matches the source.
async fn update_fallback_index(
    target: &Repository,
    subject: &Digest,
    wanted: &[Descriptor],
    source_index: Option<&Manifest>,
    tally: &Tally,
) -> Result<(), Error> {
    if target.keeps_referrers() == Some(true) {
        return Ok(());
    }
    let existing = target.referrers(subject).await?;
    if target.keeps_referrers() == Some(true) {
        return Ok(());
    }
    let mut merged = existing.descriptors.clone();
    for d in wanted {
        if !merged.iter().any(|m| m.digest == d.digest) {
            merged.push(d.clone());
        }
    }
    let digests = |list: &[Descriptor]| {
        list.iter()
            .map(|d| d.digest.clone())
            .collect::<HashSet<_>>()
    };
    let index = match source_index {
        Some(source_index) if digests(source_index.children()) == digests(&merged) => {
            source_index.clone()
        }
        _ => ImageIndex::new(merged).to_manifest(),
    };
    if existing
        .fallback_index
        .as_ref()
        .is_some_and(|e| e.digest() == index.digest())
    {
        return Ok(());
    }
    target
        .push_manifest(&index, Some(&subject.referrers_tag()))
        .await?;
    Tally::add(&tally.manifests_pushed, 1);
    Ok(())
}

fn source_id(repository: &Repository) -> String {
    match repository {
        Repository::Registry { client, name } => {
            format!("{}/{}", client.site_key(), client.path(name))
        }
        Repository::Layout(l) => format!("oci:{}", l.path().display()),
    }
}

fn reference_name(endpoint: &Endpoint, repository: &str, reference: &str) -> String {
    let separator = if reference.parse::<Digest>().is_ok() {
        "@"
    } else {
        ":"
    };
    match endpoint {
        Endpoint::Registry(client) => {
            format!("{}{separator}{reference}", client.display_name(repository))
        }
        Endpoint::Layouts(root) => format!(
            "oci:{}{separator}{reference}",
            root.join(repository).display()
        ),
    }
}

fn blank_report(mapping: usize, source: String, target: String) -> ImageReport {
    ImageReport {
        mapping,
        source,
        target,
        status: Status::Failed,
        reason: None,
        source_digest: None,
        digest: None,
        bytes_uploaded: 0,
        bytes_avoided: 0,
        blobs_uploaded: 0,
        blobs_mounted: 0,
        blobs_skipped: 0,
        manifests_pushed: 0,
        referrers_copied: 0,
        bytes_planned: None,
        requests: 0,
        duration_ms: 0,
        error: None,
        auth_failure: false,
    }
}

/// An error and its causes on one line, each fact once.
pub(crate) fn error_chain(error: &Error) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
