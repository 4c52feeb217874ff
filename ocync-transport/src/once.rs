//! [`OnceMap`]: at most one task works on a key at a time, and a key done once is not done again.
//!
//! This is how the engine keeps one writer per (repository, digest): two manifests sharing a
//! layer, or two children of an index, wait for one upload instead of racing two into the same
//! repository (distribution 2.8 rewrites link files in place, and a concurrent reader can see
//! the blob missing).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Keys being or already worked on.
pub(crate) struct OnceMap<K> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<bool>>>>,
}

impl<K> Default for OnceMap<K> {
    fn default() -> Self {
        OnceMap {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> fmt::Debug for OnceMap<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceMap").finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone> OnceMap<K> {
    /// Run `work` for `key` unless it already succeeded; concurrent callers for one key wait
    /// for the running one. `Ok(true)`: this call did the work; `Ok(false)`: it was done. A
    /// failure leaves the key undone, so a later caller tries again.
    pub(crate) async fn run<F, Fut, E>(&self, key: &K, work: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().expect("once map lock");
            slots.entry(key.clone()).or_default().clone()
        };
        let mut done = slot.lock().await;
        if *done {
            return Ok(false);
        }
        work().await?;
        *done = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_success() {
        let map = Arc::new(OnceMap::<u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (map, calls) = (map.clone(), calls.clone());
                tokio::spawn(async move {
                    map.run(&7, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<(), ()>(())
                    })
                    .await
                })
            })
            .collect();
        let mut did = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                did += 1;
            }
        }
        assert_eq!((did, calls.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test]
    async fn a_failure_is_retried_by_the_next_caller() {
        let map = OnceMap::<&str>::default();
        assert!(
            map.run(&"k", || async { Err::<(), _>("boom") })
                .await
                .is_err()
        );
        assert_eq!(map.run(&"k", || async { Ok::<(), ()>(()) }).await, Ok(true));
        assert_eq!(
            map.run(&"k", || async { Ok::<(), ()>(()) }).await,
            Ok(false)
        );
    }
}
