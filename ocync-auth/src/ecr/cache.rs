//! Single-flight cache of ECR credentials, refreshed before their `expiresAt`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::Error;

/// Tokens are renewed this long before `expiresAt` (AWS documents a 12 hour lifetime; renewing
/// half an hour early keeps long syncs from sending a token that expires in flight).
const REFRESH_MARGIN: Duration = Duration::from_secs(30 * 60);

/// ECR's documented token lifetime, assumed when an answer has no `expiresAt`.
pub(super) const DOCUMENTED_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// A fetched value and until when it may be reused; `None` means "use once": the value serves the
/// callers already waiting for it, and the next caller fetches again.
#[derive(Clone, Debug)]
pub(super) struct Fetched<V> {
    pub(super) value: V,
    pub(super) reuse_until: Option<Instant>,
}

/// Until when a token that expires at `expires_at` (wall clock) may be reused, measured on the
/// monotonic clock from `now`. `None` when it has already expired: emulators such as moto answer
/// with a fixed `expiresAt` in 2015.
pub(super) fn reuse_until(
    expires_at: SystemTime,
    wall_now: SystemTime,
    now: Instant,
) -> Option<Instant> {
    let remaining = expires_at
        .duration_since(wall_now)
        .ok()
        .filter(|d| !d.is_zero())?;
    // A token that arrives with less than twice the margin left is reused for half its time
    // rather than fetched on every call.
    let margin = REFRESH_MARGIN.min(remaining / 2);
    Some(now + (remaining - margin))
}

/// Values per key; one fetch per key at a time.
pub(super) struct Cache<K, V> {
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

struct Slot<V> {
    /// Completed fetches, read before waiting for the lock: a fetch that completed while a caller
    /// waited serves that caller even when it is "use once".
    completed: AtomicU64,
    value: tokio::sync::Mutex<Option<Fetched<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    pub(super) fn new() -> Cache<K, V> {
        Cache {
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The cached value for `key` while reusable, else the result of `fetch`. Concurrent callers
    /// for one key wait for a single fetch. Failures are not cached.
    pub(super) async fn get_or_fetch<F, Fut>(&self, key: &K, fetch: F) -> Result<V, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched<V>, Error>>,
    {
        let slot = self
            .lock()
            .entry(key.clone())
            .or_insert_with(Slot::new)
            .clone();
        let completed_before = slot.completed.load(Ordering::Acquire);
        let mut value = slot.value.lock().await;
        if let Some(cached) = value.as_ref() {
            let reusable = cached
                .reuse_until
                .is_some_and(|until| Instant::now() < until);
            if reusable || slot.completed.load(Ordering::Acquire) != completed_before {
                return Ok(cached.value.clone());
            }
        }
        let fetched = fetch().await?;
        let result = fetched.value.clone();
        *value = Some(fetched);
        slot.completed.fetch_add(1, Ordering::Release);
        Ok(result)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Slot<V>>>> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V> Slot<V> {
    fn new() -> Arc<Slot<V>> {
        Arc::new(Slot {
            completed: AtomicU64::new(0),
            value: tokio::sync::Mutex::new(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn reuse_until_table() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = Instant::now();
        // (expires in, reused for)
        let cases = [
            (12 * HOUR, 12 * HOUR - REFRESH_MARGIN),
            (HOUR, HOUR - REFRESH_MARGIN),
            (Duration::from_secs(40 * 60), Duration::from_secs(20 * 60)),
            (Duration::from_secs(10), Duration::from_secs(5)),
        ];
        for (expires_in, reused_for) in cases {
            assert_eq!(
                reuse_until(wall + expires_in, wall, now),
                Some(now + reused_for),
                "{expires_in:?}"
            );
        }
        // Expired on arrival, or expiring right now: use once.
        for expires_at in [
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400),
            wall - Duration::from_secs(1),
            wall,
        ] {
            assert_eq!(reuse_until(expires_at, wall, now), None);
        }
    }

    fn fetched(value: usize, reuse_for: Option<Duration>) -> Fetched<usize> {
        Fetched {
            value,
            reuse_until: reuse_for.map(|d| Instant::now() + d),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reused_until_the_deadline_then_fetched_again() {
        let cache = Cache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(fetched(n, Some(HOUR)))
        };
        assert_eq!(cache.get_or_fetch(&"k", fetch).await.unwrap(), 1);
        assert_eq!(cache.get_or_fetch(&"k", fetch).await.unwrap(), 1);
        tokio::time::advance(HOUR - Duration::from_secs(1)).await;
        assert_eq!(cache.get_or_fetch(&"k", fetch).await.unwrap(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get_or_fetch(&"k", fetch).await.unwrap(), 2);
        assert_eq!(cache.get_or_fetch(&"other", fetch).await.unwrap(), 3);
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn use_once_values_serve_waiters_but_not_later_callers() {
        let cache = Arc::new(Cache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(&"k", || async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(fetched(fetches.fetch_add(1, Ordering::SeqCst) + 1, None))
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), 1);
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "one fetch for the waiters"
        );
        let again = cache
            .get_or_fetch(&"k", || async { Ok(fetched(2, None)) })
            .await
            .unwrap();
        assert_eq!(again, 2, "a later caller fetches again");
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache: Cache<&str, usize> = Cache::new();
        let failed = cache
            .get_or_fetch(&"k", || async {
                Err(Error::InvalidScope {
                    input: "x".into(),
                    reason: "test",
                })
            })
            .await;
        assert!(failed.is_err());
        let value = cache
            .get_or_fetch(&"k", || async { Ok(fetched(7, Some(HOUR))) })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }
}
