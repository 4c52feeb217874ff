//! Registry tokens, their expiry, and a single-flight cache of them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Scopes, Secret};

/// Tokens are renewed at least this long before they expire, so a request never leaves with a
/// token that expires in flight (distribution's default token lifetime is 5 minutes, Docker
/// Hub's 5 minutes, ECR's 12 hours).
const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// A bearer token for a registry.
#[derive(Clone, Debug)]
pub struct Token {
    value: Secret,
    expires_at: Instant,
    lifetime: Duration,
    refresh_token: Option<Secret>,
}

impl Token {
    /// A token received at `received_at` that is valid for `lifetime`.
    pub fn new(value: Secret, received_at: Instant, lifetime: Duration) -> Token {
        Token {
            value,
            expires_at: received_at + lifetime,
            lifetime,
            refresh_token: None,
        }
    }

    /// The same token with the refresh token the server returned alongside it.
    pub fn with_refresh_token(self, refresh_token: Secret) -> Token {
        Token {
            refresh_token: Some(refresh_token),
            ..self
        }
    }

    /// The value to send as `Authorization: Bearer <value>`.
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// How long the token was valid for when it was received.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// An OAuth2 refresh token the server returned alongside the token, if any.
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }

    /// Whether the token is still good to use at `now`: more than the refresh margin before its
    /// expiry. The margin is the larger of 30 s and a tenth of the lifetime, but at most half the
    /// lifetime, so a token shorter than a minute is used for its first half instead of never.
    pub fn is_fresh(&self, now: Instant) -> bool {
        let margin = MIN_REFRESH_MARGIN
            .max(self.lifetime / 10)
            .min(self.lifetime / 2);
        self.expires_at.saturating_duration_since(now) > margin
    }
}

/// What a token is for: the realm and service that issue it and the normalised scopes it covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The token endpoint.
    pub realm: String,
    /// The `service` of the challenge.
    pub service: Option<String>,
    /// The scopes the token was requested for.
    pub scopes: Scopes,
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Tokens by [`TokenKey`], shared by clones.
///
/// Concurrent callers for the same key wait for one fetch instead of each asking the token
/// server (many blob tasks hit a 401 at the same moment when a token expires).
#[derive(Clone, Default)]
pub struct TokenCache {
    slots: Arc<Mutex<HashMap<TokenKey, Slot>>>,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The cached token for `key` while it is fresh, else the result of `fetch`, which is cached
    /// on success. Only one `fetch` per key runs at a time; the others wait for its token. A
    /// failed fetch is not cached: the next caller tries again.
    pub async fn get_or_fetch<F, Fut>(&self, key: &TokenKey, fetch: F) -> Result<Token, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Error>> + Send,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(Instant::now())) {
            return Ok(token.clone());
        }
        let token = fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets the token for `key`, so the next [`TokenCache::get_or_fetch`] fetches (after the
    /// registry rejected it with `invalid_token`, say).
    pub fn invalidate(&self, key: &TokenKey) {
        self.lock().remove(key);
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        self.lock().entry(key.clone()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Slot>> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("keys", &self.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key(scope: &str) -> TokenKey {
        TokenKey {
            realm: "https://auth.example.com/token".into(),
            service: Some("registry.example.com".into()),
            scopes: scope.parse().unwrap(),
        }
    }

    fn token(value: &str, lifetime: Duration) -> Token {
        Token::new(Secret::new(value), Instant::now(), lifetime)
    }

    #[tokio::test(start_paused = true)]
    async fn freshness_margin_table() {
        let secs = Duration::from_secs;
        // (lifetime, age, fresh): margin is max(30 s, 10%), at most half the lifetime.
        let cases = [
            (secs(300), secs(0), true),
            (secs(300), secs(269), true),
            (secs(300), secs(270), false),
            (secs(60), secs(29), true),
            (secs(60), secs(30), false),
            (secs(3600), secs(3239), true),
            (secs(3600), secs(3240), false),
            (secs(10), secs(4), true),
            (secs(10), secs(5), false),
            (secs(0), secs(0), false),
            (secs(300), secs(400), false),
        ];
        let received = Instant::now();
        for (lifetime, age, fresh) in cases {
            let token = Token::new(Secret::new("t"), received, lifetime);
            assert_eq!(token.lifetime(), lifetime);
            assert_eq!(token.expires_at(), received + lifetime);
            assert_eq!(
                token.is_fresh(received + age),
                fresh,
                "lifetime {lifetime:?} at age {age:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cached_while_fresh_then_refetched() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(token(&format!("t{n}"), Duration::from_secs(300)))
        };
        let k = key("repository:a:pull");
        assert_eq!(
            cache
                .get_or_fetch(&k, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t0"
        );
        tokio::time::advance(Duration::from_secs(269)).await;
        assert_eq!(
            cache
                .get_or_fetch(&k, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t0"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "fresh token reused");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            cache
                .get_or_fetch(&k, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t1"
        );
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "refreshed inside the margin"
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(
            cache
                .get_or_fetch(&k, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t2"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 3, "refreshed after expiry");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_with_equal_normalised_scopes_share_a_token() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(token("t", Duration::from_secs(300)))
        };
        cache
            .get_or_fetch(&key("repository:a:push,pull"), fetch)
            .await
            .unwrap();
        cache
            .get_or_fetch(&key("repository:a:pull,push"), fetch)
            .await
            .unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache
            .get_or_fetch(&key("repository:a:pull"), fetch)
            .await
            .unwrap();
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "other scopes, other token"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = TokenCache::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let k = key("repository:a:pull");
        let callers = (0..10).map(|_| {
            let cache = cache.clone();
            let fetches = fetches.clone();
            let k = k.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&k, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(token("shared", Duration::from_secs(300)))
                    })
                    .await
            })
        });
        for result in futures::future::join_all(callers).await {
            assert_eq!(result.unwrap().unwrap().value().expose(), "shared");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_forces_a_refetch() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(token(&format!("t{n}"), Duration::from_secs(300)))
        };
        let k = key("repository:a:pull");
        let other = key("repository:b:pull");
        cache.get_or_fetch(&k, fetch).await.unwrap();
        cache.get_or_fetch(&other, fetch).await.unwrap();
        cache.invalidate(&k);
        assert_eq!(
            cache
                .get_or_fetch(&k, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t2"
        );
        assert_eq!(
            cache
                .get_or_fetch(&other, fetch)
                .await
                .unwrap()
                .value()
                .expose(),
            "t1",
            "other keys keep their token"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_not_cached() {
        let cache = TokenCache::new();
        let k = key("repository:a:pull");
        let error = cache
            .get_or_fetch(&k, || async {
                Err(Error::TokenResponse {
                    registry: "r".into(),
                    realm: "https://a/t".into(),
                    reason: "no token".into(),
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(error, Error::TokenResponse { .. }), "{error:?}");
        let fetches = AtomicUsize::new(0);
        let token = cache
            .get_or_fetch(&k, || async {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok(token("t", Duration::from_secs(300)))
            })
            .await
            .unwrap();
        assert_eq!(token.value().expose(), "t");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn debug_shows_no_token() {
        let t = token("s3cr3t-token", Duration::from_secs(60))
            .with_refresh_token(Secret::new("s3cr3t-refresh"));
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(t.refresh_token().unwrap().expose(), "s3cr3t-refresh");
        let cache = TokenCache::new();
        assert_eq!(format!("{cache:?}"), "TokenCache { keys: 0 }");
    }
}
