//! Live counters of a run, for progress displays and heartbeats: the engine adds, a display
//! reads a [`ProgressSnapshot`] whenever it likes. Counters only grow (but `transfers`), and
//! each is read on its own, so a snapshot is approximate and never blocks the engine.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared between a running sync and whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    images_total: AtomicU64,
    images_done: AtomicU64,
    images_failed: AtomicU64,
    bytes_uploaded: AtomicU64,
    blobs_uploaded: AtomicU64,
    transfers: AtomicU64,
}

/// What a run has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// Images (tag and target) found so far; grows while discovery runs.
    pub images_total: u64,
    /// Images settled (copied, up to date, failed or interrupted).
    pub images_done: u64,
    /// Of those, failed.
    pub images_failed: u64,
    /// Blob bytes uploaded.
    pub bytes_uploaded: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blob transfers running now.
    pub transfers: u64,
}

impl Progress {
    /// New counters at zero.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            images_total: self.images_total.load(Ordering::Relaxed),
            images_done: self.images_done.load(Ordering::Relaxed),
            images_failed: self.images_failed.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            blobs_uploaded: self.blobs_uploaded.load(Ordering::Relaxed),
            transfers: self.transfers.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn found(&self, images: u64) {
        self.images_total.fetch_add(images, Ordering::Relaxed);
    }

    pub(crate) fn settled(&self, failed: bool) {
        self.images_done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.images_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
        self.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a transfer as running until the guard drops.
    pub(crate) fn transfer(&self) -> Transfer<'_> {
        self.transfers.fetch_add(1, Ordering::Relaxed);
        Transfer(self)
    }
}

/// A running transfer, counted until dropped.
pub(crate) struct Transfer<'a>(&'a Progress);

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        self.0.transfers.fetch_sub(1, Ordering::Relaxed);
    }
}
