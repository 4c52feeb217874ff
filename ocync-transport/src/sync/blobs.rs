//! Getting blobs to targets: one writer per (target repository, digest), one upload per
//! (target registry, digest) with the other repositories mounting it, and one source `GET` per
//! job teed to every target that needs the bytes, staged on disk (when a staging directory is
//! set) so that a failed transfer starts again without reading the source again.
//!
//! Locks are taken per target in one global order (site, repository) and transfer permits
//! only after all locks are held, so a task that waits for a lock never holds a permit and two
//! jobs with overlapping targets cannot wait on each other.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::OwnedMutexGuard;

use ocync_core::{Descriptor, Digest};

use crate::error::Error;
use crate::repository::Repository;
use crate::stream::BlobStream;
use crate::upload::{Mount, UploadSession};

use super::cache::Cache;
use super::progress::Progress;
use super::stage::{Spool, Stage};

/// Times a failed blob transfer is started again.
const TRANSFER_RETRIES: u32 = 2;

/// Chunks buffered per target when one source stream feeds several uploads: the slowest target
/// sets the pace, memory stays at a few chunks per target.
const TEE_DEPTH: usize = 8;

/// Per-key async locks holding a "done" flag.
#[derive(Debug)]
pub(crate) struct KeyedLocks<K> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<bool>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub(crate) async fn lock(&self, key: &K) -> OwnedMutexGuard<bool> {
        let slot = self
            .slots
            .lock()
            .expect("keyed locks")
            .entry(key.clone())
            .or_default()
            .clone();
        slot.lock_owned().await
    }
}

/// Counters of one image at one target.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) bytes_uploaded: AtomicU64,
    /// Bytes of blobs that were already there or mounted: uploads avoided.
    pub(crate) bytes_avoided: AtomicU64,
    pub(crate) blobs_uploaded: AtomicU64,
    pub(crate) blobs_mounted: AtomicU64,
    pub(crate) blobs_skipped: AtomicU64,
    pub(crate) manifests_pushed: AtomicU64,
    pub(crate) referrers_copied: AtomicU64,
}

impl Tally {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A target repository as the blob machinery sees it.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The target registry endpoint (one per layout directory for layouts: no mounts there).
    pub(crate) site: String,
    /// The repository path within the site.
    pub(crate) name: String,
    /// The repository.
    pub(crate) repository: Repository,
}

impl Place {
    pub(crate) fn new(repository: Repository) -> Place {
        let (site, name) = match &repository {
            Repository::Registry { client, name } => (client.site_key(), client.path(name)),
            Repository::Layout(l) => (format!("oci:{}", l.path().display()), String::new()),
        };
        Place {
            site,
            name,
            repository,
        }
    }
}

/// Blob state of a run.
#[derive(Debug)]
pub(crate) struct Blobs {
    cache: Arc<Cache>,
    repositories: KeyedLocks<(String, String, Digest)>,
    sites: KeyedLocks<(String, Digest)>,
    transfers: Transfers,
    stage: Option<Arc<Stage>>,
    progress: Arc<Progress>,
}

struct Slot<'a> {
    place: &'a Place,
    tally: &'a Tally,
    guard: OwnedMutexGuard<bool>,
    _site: Option<OwnedMutexGuard<bool>>,
    session: Option<UploadSession>,
}

impl Blobs {
    pub(crate) fn new(
        cache: Arc<Cache>,
        progress: Arc<Progress>,
        transfers: usize,
        stage: Option<Stage>,
    ) -> Blobs {
        Blobs {
            progress,
            cache,
            repositories: KeyedLocks::default(),
            sites: KeyedLocks::default(),
            transfers: Transfers::new(transfers.max(1)),
            stage: stage.map(Arc::new),
        }
    }

    /// Forget that `place` holds `digest` (a registry refused a manifest for it).
    pub(crate) async fn forget(&self, place: &Place, digest: &Digest) {
        self.cache.remove_blob(&place.site, digest, &place.name);
        let mut guard = self
            .repositories
            .lock(&(place.site.clone(), place.name.clone(), digest.clone()))
            .await;
        *guard = false;
    }

    /// Make `descriptor` present at every place, reading it from `source` at most once.
    /// `tallies[i]` counts what happened at `places[i]`. Transfers of a lower `priority` (an
    /// earlier job) go first.
    pub(crate) async fn ensure(
        &self,
        source: &Repository,
        descriptor: &Descriptor,
        places: &[Place],
        tallies: &[&Tally],
        priority: u64,
    ) -> Result<(), Error> {
        let digest = &descriptor.digest;
        let mut order: Vec<usize> = (0..places.len()).collect();
        order.sort_by(|&a, &b| {
            (&places[a].site, &places[a].name).cmp(&(&places[b].site, &places[b].name))
        });
        // A source on the same registry as a target is a mount candidate too.
        let source_place = Place::new(source.clone());
        let mut slots = Vec::new();
        for i in order {
            let from_source = (source_place.site == places[i].site
                && matches!(source, Repository::Registry { .. }))
            .then_some(source_place.name.as_str());
            match self
                .prepare(&places[i], tallies[i], digest, from_source)
                .await?
            {
                Some(slot) => slots.push(slot),
                None => Tally::add(&tallies[i].bytes_avoided, descriptor.size),
            }
        }
        if slots.is_empty() {
            return Ok(());
        }
        let _permit = self.transfers.acquire(priority).await;
        let _transfer = self.progress.transfer();
        // Bytes from a registry are staged so that a failed transfer need not read them again,
        // and kept for other jobs of the run (another mapping sending the blob to another
        // registry); a layout is already on local disk.
        let from_registry = matches!(source, Repository::Registry { .. });
        let stage = self.stage.as_ref().filter(|_| from_registry);
        let kept = match stage {
            Some(stage) => stage.kept(descriptor).await,
            None => None,
        };
        let spool = match stage {
            Some(stage) if kept.is_none() => stage.spool(descriptor).await,
            _ => None,
        };
        let read = match kept {
            Some(stream) => Ok(stream),
            None => source.blob(descriptor).await.map(|stream| match &spool {
                Some(spool) => spool.record(stream, 0),
                None => stream,
            }),
        };
        let results = match read {
            Err(e) => vec![Err(e); slots.len()],
            Ok(stream) if slots.len() == 1 => {
                let slot = &mut slots[0];
                vec![
                    slot.place
                        .repository
                        .push_blob(descriptor, stream, slot.session.take())
                        .await,
                ]
            }
            Ok(stream) => tee(stream, descriptor, &mut slots, &source.display_name()).await,
        };
        let mut first_error = None;
        for (mut slot, mut result) in slots.into_iter().zip(results) {
            // A transfer that failed for a passing reason (a reset, a 5xx, a 429, a body too
            // large for one request) starts again, for this target only: from the staged
            // bytes (and the source for what never arrived), else from the source.
            let mut attempt = 0;
            while let Err(e) = &result
                && attempt < TRANSFER_RETRIES
                && (e.is_retryable() || e.status() == Some(reqwest::StatusCode::PAYLOAD_TOO_LARGE))
            {
                attempt += 1;
                let wait = crate::retry::delay(
                    attempt,
                    e.retry_after().map(std::time::Duration::from_secs),
                );
                tracing::warn!(blob = %digest, target = %slot.place.repository.display_name(), error = %e, attempt, "blob transfer failed; starting it again");
                tokio::time::sleep(wait).await;
                result = match reread(source, descriptor, stage, spool.as_ref()).await {
                    Ok(stream) => {
                        slot.place
                            .repository
                            .push_blob(descriptor, stream, None)
                            .await
                    }
                    Err(e) => Err(e),
                };
            }
            match result {
                Ok(()) => {
                    *slot.guard = true;
                    self.cache
                        .add_blob(&slot.place.site, digest, &slot.place.name);
                    Tally::add(&slot.tally.blobs_uploaded, 1);
                    Tally::add(&slot.tally.bytes_uploaded, descriptor.size);
                    self.progress.uploaded(descriptor.size);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let (Some(stage), Some(spool), None) = (stage, spool, &first_error) {
            stage.keep(spool);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Settle one place: `None` when the blob is there (known, found or mounted), else a slot
    /// holding the locks (and maybe an open session) for the upload.
    async fn prepare<'a>(
        &self,
        place: &'a Place,
        tally: &'a Tally,
        digest: &Digest,
        from_source: Option<&str>,
    ) -> Result<Option<Slot<'a>>, Error> {
        let mut guard = self
            .repositories
            .lock(&(place.site.clone(), place.name.clone(), digest.clone()))
            .await;
        if *guard {
            Tally::add(&tally.blobs_skipped, 1);
            return Ok(None);
        }
        let homes = self.cache.blob_repositories(&place.site, digest);
        if homes.contains(&place.name) {
            // Known from this run or an earlier one; a refused manifest push will correct it.
            *guard = true;
            Tally::add(&tally.blobs_skipped, 1);
            return Ok(None);
        }
        let mut tried = BTreeSet::new();
        let mut session = None;
        let mut site_guard = None;
        loop {
            if let Repository::Registry { client, name } = &place.repository {
                let candidates = from_source
                    .map(str::to_owned)
                    .into_iter()
                    .chain(self.cache.blob_repositories(&place.site, digest));
                for home in candidates {
                    if home == place.name || !tried.insert(home.clone()) {
                        continue;
                    }
                    let from = home
                        .strip_prefix(&client.path(""))
                        .unwrap_or(&home)
                        .to_owned();
                    match client.mount_blob(name, digest, &from).await? {
                        Mount::Mounted => {
                            *guard = true;
                            self.cache.add_blob(&place.site, digest, &place.name);
                            Tally::add(&tally.blobs_mounted, 1);
                            return Ok(None);
                        }
                        Mount::Session(s) => {
                            // The home no longer has it (or mounting is off): stop believing it.
                            self.cache.remove_blob(&place.site, digest, &home);
                            session = Some(s);
                            break;
                        }
                    }
                }
            }
            if site_guard.is_some() {
                break;
            }
            // Become the site's one uploader of this digest, then look again: another
            // repository may have finished uploading it while we waited.
            site_guard = Some(self.sites.lock(&(place.site.clone(), digest.clone())).await);
        }
        if session.is_none() && place.repository.blob_exists(digest).await? {
            *guard = true;
            self.cache.add_blob(&place.site, digest, &place.name);
            Tally::add(&tally.blobs_skipped, 1);
            return Ok(None);
        }
        Ok(Some(Slot {
            place,
            tally,
            guard,
            _site: site_guard,
            session,
        }))
    }
}

/// Transfer slots handed out earliest job first, not first come first served. With many images
/// in flight, a FIFO spreads the slots over all of them and they all finish near the end; earliest
/// first finishes images one after another, so a run stopped part way (a signal, a deadline)
/// leaves whole images behind rather than many half-copied ones, and manifest pushes spread over
/// the run instead of bunching up (seen on the bench's access log under a 10/s manifest-PUT
/// limit; the run time itself moved within noise).
#[derive(Debug)]
struct Transfers {
    state: Mutex<TransferState>,
}

#[derive(Debug)]
struct TransferState {
    free: usize,
    /// Waiters by (priority, arrival): the smallest is served first.
    waiting: std::collections::BTreeMap<(u64, u64), tokio::sync::oneshot::Sender<()>>,
    arrivals: u64,
}

/// A place in the queue. Dropped while waiting (its transfer was abandoned), it leaves the
/// queue, or gives back the slot it was handed and never used.
struct Waiter<'a> {
    transfers: &'a Transfers,
    key: (u64, u64),
    rx: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let queued = self
            .transfers
            .state
            .lock()
            .expect("transfer slots")
            .waiting
            .remove(&self.key)
            .is_some();
        if !queued && rx.try_recv().is_ok() {
            self.transfers.release();
        }
    }
}

/// A transfer slot, given back (to the best waiter) when dropped.
struct TransferPermit<'a>(&'a Transfers);

impl Transfers {
    fn new(slots: usize) -> Transfers {
        Transfers {
            state: Mutex::new(TransferState {
                free: slots,
                waiting: std::collections::BTreeMap::new(),
                arrivals: 0,
            }),
        }
    }

    async fn acquire(&self, priority: u64) -> TransferPermit<'_> {
        let mut waiter = {
            let mut state = self.state.lock().expect("transfer slots");
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return TransferPermit(self);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            state.arrivals += 1;
            let key = (priority, state.arrivals);
            state.waiting.insert(key, tx);
            Waiter {
                transfers: self,
                key,
                rx: Some(rx),
            }
        };
        let rx = waiter.rx.as_mut().expect("set above");
        // The sender is only dropped unsent with the whole `Transfers`, which `self` outlives.
        let _ = rx.await;
        waiter.rx = None;
        TransferPermit(self)
    }

    fn release(&self) {
        let mut state = self.state.lock().expect("transfer slots");
        // A waiter leaves the queue when dropped, so its receiver is there; should a send fail
        // anyway, the slot goes to the next, or back to the pool, never lost.
        while let Some((_, tx)) = state.waiting.pop_first() {
            if tx.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

impl Drop for TransferPermit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The blob once more, for another attempt.
async fn reread(
    source: &Repository,
    descriptor: &Descriptor,
    stage: Option<&Arc<Stage>>,
    spool: Option<&Spool>,
) -> Result<BlobStream, Error> {
    if let Some(spool) = spool {
        return spool.replay(source, descriptor).await;
    }
    if let Some(stage) = stage
        && let Some(kept) = stage.kept(descriptor).await
    {
        return Ok(kept);
    }
    source.blob(descriptor).await
}

/// Feed one source stream to several uploads. Each upload gets its own bounded channel; an
/// upload that fails stops receiving and the others continue. A source failure fails all.
async fn tee(
    source: BlobStream,
    descriptor: &Descriptor,
    slots: &mut [Slot<'_>],
    origin: &str,
) -> Vec<Result<(), Error>> {
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for slot in slots.iter_mut() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Error>>(TEE_DEPTH);
        senders.push(Some(tx));
        let stream = BlobStream::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let session = slot.session.take();
        let repository = slot.place.repository.clone();
        uploads.push(async move { repository.push_blob(descriptor, stream, session).await });
    }
    let pump = async move {
        let mut source = source;
        while let Some(item) = source.next().await {
            match item {
                Ok(chunk) => {
                    for sender in senders.iter_mut() {
                        if let Some(tx) = sender
                            && tx.send(Ok(chunk.clone())).await.is_err()
                        {
                            *sender = None;
                        }
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for tx in senders.iter().flatten() {
                        let _ = tx
                            .send(Err(Error::protocol(
                                origin,
                                format!("source stream failed: {message}"),
                            )))
                            .await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    let (pumped, results) = futures::join!(pump, futures::future::join_all(uploads));
    match pumped {
        Ok(()) => results,
        // The source's own error explains every target's failure best.
        Err(e) => {
            let message = e.to_string();
            let mut out = vec![Err(e)];
            out.extend((1..results.len()).map(|_| Err(Error::protocol(origin, message.clone()))));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Slots go to the lowest priority waiting, whatever the arrival order; an abandoned wait
    /// neither holds a slot nor loses one.
    #[tokio::test]
    async fn transfer_slots_go_to_the_earliest_job_and_are_never_lost() {
        let transfers = Arc::new(Transfers::new(1));
        let held = transfers.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for priority in [5u64, 3, 9, 1] {
            let (transfers, order) = (transfers.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = transfers.acquire(priority).await;
                order.lock().unwrap().push(priority);
                tokio::task::yield_now().await;
            }));
            tokio::task::yield_now().await;
        }
        // A waiter that gives up leaves the queue.
        let abandoned = tokio::time::timeout(Duration::from_millis(1), transfers.acquire(0)).await;
        assert!(abandoned.is_err());
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 3, 5, 9]);
        // All slots came back: one can be taken at once.
        let again = tokio::time::timeout(Duration::from_millis(100), transfers.acquire(7)).await;
        assert!(again.is_ok());
    }

    /// One writer per key: concurrent holders of a key run one after another and see the
    /// flag the previous one set.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_locks_serialise_one_key_and_keep_its_flag() {
        let locks = Arc::new(KeyedLocks::<u32>::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let work = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, work) = (locks.clone(), inside.clone(), work.clone());
                tokio::spawn(async move {
                    let mut done = locks.lock(&7).await;
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    if !*done {
                        work.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        *done = true;
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(work.load(Ordering::SeqCst), 1);
        assert!(!*locks.lock(&8).await, "other keys are independent");
    }
}
