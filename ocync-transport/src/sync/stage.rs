//! Staging: the bytes of a blob in transfer, written to local disk as they pass, so that a
//! transfer that fails part way starts again from disk and asks the source only for what it
//! never delivered (`Range: bytes=<n>-`).
//!
//! A spool file lives as long as its transfer, unless the transfer succeeded with the whole
//! blob in it: then it is kept for the rest of the run (within a limit, least recently used
//! out first), so that another job needing the same source blob for another registry (a second
//! mapping) reads it from disk. Everything goes when the run ends. Replayed and kept bytes are
//! verified again end to end against the descriptor, so a bad disk or a registry that resumes
//! at the wrong place yields a clear error, never a wrong blob.
//!
//! Writes are batched and go through `spawn_blocking` under a lock that also holds the length
//! written: a recording abandoned mid-write (its upload failed) finishes that write before a
//! replay reads the length, and a write is only made at the offset the file has reached, so a
//! late write from an abandoned recording can never interleave with a new one.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use ocync_core::Descriptor;

use crate::error::Error;
use crate::layout::read_file;
use crate::repository::Repository;
use crate::stream::BlobStream;

/// Spool files older than this are left over from a run that was killed; a live transfer
/// writes to its file continuously or removes it within seconds.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Kept blobs end with this (and are removed with the run).
const KEPT_SUFFIX: &str = ".blob";

/// The most bytes of completed blobs kept for the rest of a run when `staging_size_limit` is
/// not set (with it, kept blobs and spools share that limit): modest, because the cache volume
/// of a pod is often small.
const KEEP_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Bytes collected before one blocking write.
const WRITE_BATCH: usize = 512 * 1024;

/// Spool files end with this; nothing else in the directory is touched.
const SUFFIX: &str = ".part";

/// The staging directory of a run and the bytes it may hold.
#[derive(Debug)]
pub(crate) struct Stage {
    dir: PathBuf,
    limit: u64,
    /// The most bytes of completed blobs kept for other jobs of the run.
    keep_limit: u64,
    /// Bytes of live spools and kept blobs.
    used: AtomicU64,
    seq: AtomicU64,
    warned: AtomicBool,
    /// Completed blobs kept for the rest of the run.
    kept: Mutex<KeptBlobs>,
}

/// Completed, uploaded blobs kept on disk for other jobs of the run.
#[derive(Debug, Default)]
struct KeptBlobs {
    blobs: std::collections::HashMap<ocync_core::Digest, Kept>,
    bytes: u64,
    /// A clock of uses: the smallest `used` is the least recently used.
    ticks: u64,
}

#[derive(Debug)]
struct Kept {
    path: PathBuf,
    size: u64,
    used: u64,
}

impl KeptBlobs {
    /// Take out the least recently used blob.
    fn pop_oldest(&mut self) -> Option<Kept> {
        let oldest = self
            .blobs
            .iter()
            .min_by_key(|(_, k)| k.used)
            .map(|(d, _)| d.clone())?;
        let kept = self.blobs.remove(&oldest)?;
        self.bytes -= kept.size;
        Some(kept)
    }
}

impl Stage {
    /// Stage under `dir`, holding at most `limit` bytes at once (`None`: as many as the
    /// transfers in flight need), and keeping completed blobs for later jobs when `keep` (a
    /// run with targets in more than one registry: within one registry, mounts already serve
    /// a second repository). Spool files a killed run left behind are removed.
    pub(crate) fn new(dir: PathBuf, limit: Option<u64>, keep: bool) -> Stage {
        sweep(&dir);
        Stage {
            dir,
            limit: limit.unwrap_or(u64::MAX),
            keep_limit: if keep {
                limit.unwrap_or(KEEP_DEFAULT)
            } else {
                0
            },
            used: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            kept: Mutex::new(KeptBlobs::default()),
        }
    }

    /// A kept copy of `descriptor`'s blob, verified as it is read, if the run has one.
    pub(crate) async fn kept(&self, descriptor: &Descriptor) -> Option<BlobStream> {
        let path = {
            let mut kept = self.kept.lock().expect("kept blobs");
            kept.ticks += 1;
            let tick = kept.ticks;
            let entry = kept.blobs.get_mut(&descriptor.digest)?;
            // Used again: the last to be evicted.
            entry.used = tick;
            entry.path.clone()
        };
        // Evicted in the meantime (unlinked): the caller reads the source instead.
        let file = tokio::fs::File::open(&path).await.ok()?;
        tracing::debug!(blob = %descriptor.digest, "reading a blob kept from an earlier job");
        Some(
            read_file(file, path.clone())
                .verified(descriptor, format!("a copy kept in {}", path.display())),
        )
    }

    /// Keep `spool`'s complete blob for other jobs of the run (another mapping sending the
    /// same source blob to another registry reads it from disk), within the keep limit,
    /// evicting the least recently used. Its bytes are the ones a target just accepted under
    /// their digest, and they are verified again whenever they are read.
    pub(crate) fn keep(&self, mut spool: Spool) {
        if !spool.complete() {
            return;
        }
        let digest = spool.digest.clone();
        let mut kept = self.kept.lock().expect("kept blobs");
        if spool.size > self.keep_limit || kept.blobs.contains_key(&digest) {
            return;
        }
        let path = self.dir.join(format!(
            "{}-{}{KEPT_SUFFIX}",
            digest.algorithm(),
            digest.encoded()
        ));
        spool.state.lock().expect("spool state").file = None;
        if std::fs::rename(&spool.path, &path).is_err() {
            return;
        }
        // The reservation passes from the spool to the kept blob.
        spool.kept = true;
        kept.ticks += 1;
        let used = kept.ticks;
        kept.bytes += spool.size;
        kept.blobs.insert(
            digest,
            Kept {
                path,
                size: spool.size,
                used,
            },
        );
        while kept.bytes > self.keep_limit {
            let Some(old) = kept.pop_oldest() else { break };
            self.forget(old);
        }
    }

    /// Make room for `size` more bytes by evicting kept blobs, oldest first, as far as they go.
    fn make_room(&self, size: u64) {
        let mut kept = self.kept.lock().expect("kept blobs");
        while self
            .used
            .load(Ordering::Acquire)
            .checked_add(size)
            .is_none_or(|total| total > self.limit)
        {
            let Some(old) = kept.pop_oldest() else {
                return;
            };
            self.forget(old);
        }
    }

    fn forget(&self, kept: Kept) {
        let _ = std::fs::remove_file(&kept.path);
        self.used.fetch_sub(kept.size, Ordering::AcqRel);
    }

    /// A spool for one transfer of `descriptor`, or `None` when the blob does not fit in what
    /// is left of the limit or the directory cannot be written (the transfer then streams
    /// unstaged, as it would without staging).
    pub(crate) async fn spool(self: &Arc<Self>, descriptor: &Descriptor) -> Option<Spool> {
        let size = descriptor.size;
        self.make_room(size);
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(size).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if !reserved {
            tracing::debug!(blob = %descriptor.digest, size, limit = self.limit, "not staged: the staging limit is reached");
            return None;
        }
        let name = format!(
            "{}-{}-{}{SUFFIX}",
            descriptor.digest.encoded(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let dir = self.dir.clone();
        let create_path = path.clone();
        let created = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&create_path)
        })
        .await
        .expect("spool creation does not panic");
        match created {
            Ok(file) => Some(Spool {
                path,
                size,
                digest: descriptor.digest.clone(),
                kept: false,
                state: Arc::new(Mutex::new(Written {
                    file: Some(file),
                    len: 0,
                })),
                stage: self.clone(),
            }),
            Err(e) => {
                self.used.fetch_sub(size, Ordering::AcqRel);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot stage blobs; transfers that fail will read their source again");
                }
                None
            }
        }
    }

    /// Bytes reserved by live spools and kept blobs.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Stage {
    /// Kept blobs serve one run: the next starts from its sources (and its cache).
    fn drop(&mut self) {
        let kept = std::mem::take(&mut *self.kept.lock().expect("kept blobs"));
        for k in kept.blobs.into_values() {
            let _ = std::fs::remove_file(&k.path);
        }
    }
}

/// Remove spool files of killed runs under `dir`.
fn sweep(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = (name.ends_with(SUFFIX) || name.ends_with(KEPT_SUFFIX))
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > ABANDONED_AFTER);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a spool file holds.
#[derive(Debug)]
struct Written {
    /// `None` after a write failed: the spool is given up.
    file: Option<std::fs::File>,
    /// Bytes written from the start of the blob.
    len: u64,
}

/// The staged bytes of one transfer.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    size: u64,
    digest: ocync_core::Digest,
    /// Renamed into the kept blobs: not removed on drop.
    kept: bool,
    state: Arc<Mutex<Written>>,
    stage: Arc<Stage>,
}

impl Spool {
    /// Pass `stream` through, appending its chunks to the spool. `stream` must start where
    /// the spool ends (at 0 for a first read). Chunks are written in batches of `WRITE_BATCH`
    /// bytes (one blocking write each, not one per network chunk) and at the end of the stream;
    /// a batch lost with an abandoned recording is read again with the rest.
    pub(crate) fn record(&self, stream: BlobStream, start: u64) -> BlobStream {
        let recorder = Recorder {
            state: self.state.clone(),
            path: self.path.clone(),
            at: start,
            pending: Vec::new(),
            pending_len: 0,
        };
        BlobStream::new(futures::stream::unfold(
            (stream, Some(recorder)),
            |(mut stream, mut recorder)| async move {
                let item = stream.next().await;
                match (&item, recorder.as_mut()) {
                    (Some(Ok(chunk)), Some(r)) => {
                        r.pending_len += chunk.len();
                        r.pending.push(chunk.clone());
                        if r.pending_len >= WRITE_BATCH {
                            r.flush().await;
                        }
                    }
                    (None, Some(r)) => r.flush().await,
                    // A failed read: what was received is still good for a resume.
                    (Some(Err(_)), Some(r)) => {
                        r.flush().await;
                        recorder = None;
                    }
                    (_, None) => {}
                }
                item.map(|item| (item, (stream, recorder)))
            },
        ))
    }

    /// The blob again for another attempt: from the spool when it holds all of it, else the
    /// staged prefix followed by the rest from `source` (recorded in turn), else (a registry
    /// that ignores `Range`, a spool that failed) the whole blob from `source` again. The
    /// result is verified against `descriptor` from its first byte.
    pub(crate) async fn replay(
        &self,
        source: &Repository,
        descriptor: &Descriptor,
    ) -> Result<BlobStream, Error> {
        let state = self.state.clone();
        let (have, healthy) = tokio::task::spawn_blocking(move || {
            let state = state.lock().expect("spool state");
            (state.len, state.file.is_some())
        })
        .await
        .expect("reading the spool length does not panic");
        let Repository::Registry { client, name } = source else {
            return source.blob(descriptor).await;
        };
        let staged_at = format!("staged in {}", self.path.display());
        if healthy && have == self.size {
            tracing::debug!(blob = %descriptor.digest, bytes = have, "replaying a staged blob");
            return Ok(self.prefix(have).await?.verified(descriptor, staged_at));
        }
        let from = if healthy { have } else { 0 };
        let read = client.blob_from(name, descriptor, from).await?;
        if read.start == 0 {
            // Nothing usable staged, or a source that ignored Range: the whole blob again.
            self.reset().await;
            return Ok(self
                .record(read.stream, 0)
                .verified(descriptor, read.location));
        }
        tracing::debug!(blob = %descriptor.digest, staged = have, "resuming a blob read from the staged bytes");
        let prefix = self.prefix(have).await?;
        let rest = self.record(read.stream, have);
        Ok(BlobStream::new(prefix.chain(rest))
            .verified(descriptor, format!("{} ({staged_at})", read.location)))
    }

    /// Whether the spool holds the whole blob.
    fn complete(&self) -> bool {
        let state = self.state.lock().expect("spool state");
        state.file.is_some() && state.len == self.size
    }

    /// The first `len` staged bytes.
    async fn prefix(&self, len: u64) -> Result<BlobStream, Error> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| crate::layout::io_error(&self.path, "open a staged blob", e))?;
        Ok(read_file(file.take(len), self.path.clone()))
    }

    /// Empty the spool for a read from the first byte.
    async fn reset(&self) {
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut state = state.lock().expect("spool state");
            if let Some(file) = &state.file
                && file.set_len(0).is_err()
            {
                state.file = None;
            }
            state.len = 0;
        })
        .await;
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Closing the file first lets the removal succeed on every platform.
        self.state.lock().expect("spool state").file = None;
        let _ = std::fs::remove_file(&self.path);
        self.stage.used.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// A recording's unwritten chunks and where they go.
struct Recorder {
    state: Arc<Mutex<Written>>,
    path: PathBuf,
    at: u64,
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl Recorder {
    /// Write the pending chunks (a write still running when the recording is dropped
    /// completes on its own, under the lock).
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunks = std::mem::take(&mut self.pending);
        let offset = self.at;
        self.at += std::mem::take(&mut self.pending_len) as u64;
        let (state, path) = (self.state.clone(), self.path.clone());
        let _ = tokio::task::spawn_blocking(move || append(&state, &path, offset, &chunks)).await;
    }
}

impl Drop for Recorder {
    /// A recording dropped part way (its upload failed) keeps what it received: the pending
    /// batch is written here, on the error path only and at most `WRITE_BATCH` bytes to the
    /// page cache, so that it is on disk before the failed upload returns and its replay reads
    /// the length.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            append(&self.state, &self.path, self.at, &self.pending);
        }
    }
}

/// Write `chunks` at `offset` if the spool has reached exactly that offset (chunks of an
/// abandoned recording arriving late have not).
fn append(state: &Mutex<Written>, path: &std::path::Path, offset: u64, chunks: &[Bytes]) {
    let mut state = state.lock().expect("spool state");
    if state.len != offset {
        return;
    }
    let Some(file) = state.file.as_mut() else {
        return;
    };
    let written = file.seek(SeekFrom::Start(offset)).and_then(|_| {
        chunks
            .iter()
            .try_for_each(|chunk| file.write_all(chunk))
            .map(|()| chunks.iter().map(|c| c.len() as u64).sum::<u64>())
    });
    match written {
        Ok(n) => state.len += n,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot stage blob bytes; a failed transfer will read its source again");
            state.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocync_core::{Digest, MediaType};

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor::new(
            MediaType::Other("application/octet-stream".into()),
            Digest::sha256(bytes),
            bytes.len() as u64,
        )
    }

    fn chunks(bytes: &'static [u8], size: usize) -> BlobStream {
        BlobStream::new(futures::stream::iter(
            bytes
                .chunks(size)
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn drain(stream: BlobStream) -> Vec<u8> {
        stream.collect(u64::MAX).await.unwrap().to_vec()
    }

    const BLOB: &[u8] = b"the quick brown fox jumps over the lazy dog, twice over";

    #[tokio::test]
    async fn a_recorded_stream_is_replayed_from_disk_and_the_file_goes_with_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Arc::new(Stage::new(dir.path().join("staging"), None, true));
        let d = descriptor(BLOB);
        let spool = stage.spool(&d).await.unwrap();
        assert_eq!(stage.used(), BLOB.len() as u64);
        assert_eq!(drain(spool.record(chunks(BLOB, 7), 0)).await, BLOB);
        // A layout source is never staged, but a complete spool never asks its source.
        let nowhere = Repository::registry(crate::Client::new("127.0.0.1:9").unwrap(), "x");
        assert_eq!(drain(spool.replay(&nowhere, &d).await.unwrap()).await, BLOB);
        let path = spool.path.clone();
        assert!(path.exists());
        drop(spool);
        assert!(!path.exists());
        assert_eq!(stage.used(), 0);
    }

    #[tokio::test]
    async fn a_failed_read_keeps_its_prefix_and_late_writes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Arc::new(Stage::new(dir.path().to_owned(), None, true));
        let spool = stage.spool(&descriptor(BLOB)).await.unwrap();
        let cut = BlobStream::new(futures::stream::iter([
            Ok(Bytes::from_static(&BLOB[..10])),
            Ok(Bytes::from_static(&BLOB[10..20])),
            Err(Error::protocol("source", "connection reset")),
        ]));
        assert!(spool.record(cut, 0).collect(u64::MAX).await.is_err());
        assert_eq!(spool.state.lock().unwrap().len, 20);
        // A write for an offset the spool has not reached is not made.
        append(
            &spool.state,
            &spool.path,
            30,
            &[Bytes::from_static(b"late")],
        );
        assert_eq!(spool.state.lock().unwrap().len, 20);
        assert_eq!(drain(spool.prefix(20).await.unwrap()).await, &BLOB[..20]);
        // The rest, recorded from where the spool ends, completes it.
        let rest = BlobStream::from_bytes(Bytes::from_static(&BLOB[20..]));
        drain(spool.record(rest, 20)).await;
        assert_eq!(std::fs::read(&spool.path).unwrap(), BLOB);
    }

    #[tokio::test]
    async fn an_abandoned_recording_keeps_what_it_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        let big: &'static [u8] = Box::leak(vec![7u8; WRITE_BATCH * 2 + 10].into_boxed_slice());
        let stage = Arc::new(Stage::new(dir.path().to_owned(), None, true));
        let spool = stage.spool(&descriptor(big)).await.unwrap();
        let mut recording = spool.record(chunks(big, WRITE_BATCH / 4), 0);
        for _ in 0..6 {
            recording.next().await.unwrap().unwrap();
        }
        drop(recording);
        assert_eq!(
            spool.state.lock().unwrap().len,
            6 * (WRITE_BATCH / 4) as u64
        );
    }

    /// A completed spool is kept for later jobs and read back verified; the least recently used
    /// go first when the limit needs room; the run's end removes them all.
    #[tokio::test]
    async fn completed_blobs_are_kept_evicted_oldest_first_and_removed_with_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100]).collect();
        let descriptors: Vec<Descriptor> = blobs.iter().map(|b| descriptor(b)).collect();
        // Room for two kept blobs and nothing else.
        let stage = Arc::new(Stage::new(dir.path().to_owned(), Some(200), true));
        for (bytes, d) in blobs.iter().zip(&descriptors).take(2) {
            let spool = stage.spool(d).await.unwrap();
            drain(spool.record(BlobStream::from_bytes(Bytes::from(bytes.clone())), 0)).await;
            stage.keep(spool);
        }
        assert_eq!(stage.used(), 200);
        assert_eq!(
            drain(stage.kept(&descriptors[0]).await.unwrap()).await,
            blobs[0]
        );
        // A third needs room: the least recently used (the second) goes.
        let spool = stage.spool(&descriptors[2]).await.unwrap();
        assert!(stage.kept(&descriptors[1]).await.is_none());
        drain(spool.record(BlobStream::from_bytes(Bytes::from(blobs[2].clone())), 0)).await;
        stage.keep(spool);
        assert!(stage.kept(&descriptors[0]).await.is_some());
        assert!(stage.kept(&descriptors[2]).await.is_some());
        // A transfer in flight comes before kept blobs: the least recently used (the first)
        // goes; an incomplete spool is not kept.
        let spool = stage.spool(&descriptors[1]).await.unwrap();
        assert!(stage.kept(&descriptors[0]).await.is_none());
        stage.keep(spool);
        assert!(stage.kept(&descriptors[1]).await.is_none());
        assert_eq!(stage.used(), 100, "only the third is kept");
        drop(stage);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "kept blobs go with the run"
        );
    }

    /// With one target registry nothing is kept: mounts serve its other repositories.
    #[tokio::test]
    async fn nothing_is_kept_for_a_single_target_registry() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Arc::new(Stage::new(dir.path().to_owned(), None, false));
        let d = descriptor(BLOB);
        let spool = stage.spool(&d).await.unwrap();
        drain(spool.record(chunks(BLOB, 7), 0)).await;
        stage.keep(spool);
        assert!(stage.kept(&d).await.is_none());
        assert_eq!(stage.used(), 0);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn the_limit_counts_blobs_in_flight_and_leftovers_of_killed_runs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(format!("abc-1-0{SUFFIX}"));
        let other = dir.path().join("notes.txt");
        for path in [&old, &other] {
            let file = std::fs::File::create(path).unwrap();
            file.set_modified(SystemTime::now() - 2 * ABANDONED_AFTER)
                .unwrap();
        }
        let stage = Arc::new(Stage::new(
            dir.path().to_owned(),
            Some(BLOB.len() as u64 + 5),
            true,
        ));
        assert!(!old.exists(), "a spool file of a killed run is removed");
        assert!(other.exists(), "nothing else is touched");
        let d = descriptor(BLOB);
        let first = stage.spool(&d).await.unwrap();
        assert!(
            stage.spool(&d).await.is_none(),
            "over the limit: not staged"
        );
        assert!(stage.spool(&descriptor(b"tiny")).await.is_some());
        drop(first);
        assert!(stage.spool(&d).await.is_some(), "room again");
    }
}
