//! [`Client`]: one registry, its settings, its authentication state, and request execution.
//!
//! Authentication is challenge driven. A request goes out with whatever the client already
//! knows (nothing, Basic, or a cached Bearer token for the request's scopes); a 401 teaches the
//! client the registry's scheme from `WWW-Authenticate`, and the request is retried once with
//! fresh credentials. There is no `/v2/` ping except to learn whether a loopback registry speaks
//! TLS, so an unchanged image costs no more than the requests that look at it.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use ocync_auth::{
    AnonymousProvider, BearerChallenge, Challenge, Credential, CredentialProvider, Scope, Scopes,
    TokenCache, TokenKey, TokenRequest,
};
use ocync_core::{DOCKER_HUB, DOCKER_HUB_API_HOST};

use crate::api::RegistryApi;
use crate::error::{Error, ErrorKind, host_of, is_plaintext_server};
use crate::rate_limit::{ActionGroup, LaneStats, Limiter, Limits, RegistryKind};
use crate::retry;
use crate::stream::BlobStream;

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scheme {
    /// HTTPS; a loopback registry (`localhost`, `127.0.0.0/8`, `::1`) that does not speak TLS is
    /// reached over plain HTTP instead, as docker does.
    #[default]
    Auto,
    /// HTTPS only.
    Https,
    /// Plain HTTP (test and air-gapped registries).
    Http,
}

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UploadMode {
    /// `POST` then one streamed `PUT` with the whole blob (fewest requests).
    #[default]
    Monolithic,
    /// `POST`, one `PATCH` per chunk of at most `chunk_size` bytes (each with `Content-Length`
    /// and `Content-Range`), then an empty `PUT`: for registries that cap request bodies.
    Chunked {
        /// Largest chunk in bytes.
        chunk_size: u64,
    },
}

/// Per-registry settings; builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    name: String,
    scheme: Scheme,
    ca_files: Vec<PathBuf>,
    skip_verify: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: String,
    credentials: Option<Arc<dyn CredentialProvider>>,
    upload: UploadMode,
    resolve: Vec<(String, std::net::SocketAddr)>,
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    api: Option<Arc<dyn RegistryApi>>,
    create_repositories: bool,
    limits: Option<Limits>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("ca_files", &self.ca_files)
            .field("skip_verify", &self.skip_verify)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("credentials", &self.credentials.as_ref().map(|c| c.name()))
            .field("upload", &self.upload)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ClientBuilder {
    /// Settings for `registry`: `host[:port]`, optionally with a path under which every
    /// repository lives (`localhost:5000/myregistry`) and an `http://` or `https://` prefix that
    /// fixes the scheme.
    pub fn new(registry: &str) -> ClientBuilder {
        let (scheme, rest) = if let Some(r) = registry.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = registry.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            (Scheme::Auto, registry)
        };
        ClientBuilder {
            name: rest.trim_end_matches('/').to_owned(),
            scheme,
            ca_files: Vec::new(),
            skip_verify: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            user_agent: concat!("ocync/", env!("CARGO_PKG_VERSION")).to_owned(),
            credentials: None,
            upload: UploadMode::default(),
            resolve: Vec::new(),
            resolver: None,
            api: None,
            create_repositories: false,
            limits: None,
        }
    }

    /// How to pace requests (per action group windows and token buckets, `max_concurrent`).
    /// By default, [`Limits::for_kind`] of the kind [`RegistryKind::detect`] finds for the host.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// How to reach the registry.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Trust the CA certificates in this PEM file, in addition to the system's
    /// (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured as well).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Accept any certificate. Only for test registries: it removes all protection TLS gives.
    pub fn danger_accept_invalid_certs(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Time allowed to establish a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest silence allowed while waiting for response bytes (default 60 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Where credentials come from (default: none, anonymous).
    pub fn credentials(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.credentials = Some(provider);
        self
    }

    pub(crate) fn credentials_if_unset(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        if self.credentials.is_none() {
            self.credentials = Some(provider);
        }
        self
    }

    /// How blobs are uploaded (default monolithic).
    pub fn upload_mode(mut self, mode: UploadMode) -> Self {
        self.upload = mode;
        self
    }

    /// Send requests for `host` to `address` instead of resolving it, like curl's `--resolve`
    /// (a private endpoint, a test server). TLS still verifies the certificate for `host`.
    pub fn resolve(mut self, host: impl Into<String>, address: std::net::SocketAddr) -> Self {
        self.resolve.push((host.into(), address));
        self
    }

    /// Resolve host names with this resolver instead of the system's.
    pub fn dns_resolver(mut self, resolver: Arc<dyn reqwest::dns::Resolve>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Registry control-plane calls the engine may use (ECR's batch layer check).
    pub fn api(mut self, api: Arc<dyn RegistryApi>) -> Self {
        self.api = Some(api);
        self
    }

    /// Create missing target repositories through the [`RegistryApi`] before pushing (off by
    /// default: creating repositories is a permission a sync should not need).
    pub fn create_repositories(mut self, create: bool) -> Self {
        self.create_repositories = create;
        self
    }

    /// The `User-Agent` header (default `ocync/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Build the client. Fails on settings that cannot work (a missing or empty CA file, a
    /// malformed registry name), naming the registry.
    pub fn build(self) -> Result<Client, Error> {
        let settings_error = |reason: String| -> Error {
            ErrorKind::Settings {
                registry: self.name.clone(),
                reason,
            }
            .into()
        };
        let (authority, prefix) = match self.name.split_once('/') {
            Some((a, p)) => (
                a.to_owned(),
                Some(p.trim_matches('/').to_owned()).filter(|p| !p.is_empty()),
            ),
            None => (self.name.clone(), None),
        };
        if authority.is_empty() {
            return Err(settings_error("the registry name is empty".into()));
        }
        if let Some(p) = &prefix {
            ocync_core::validate_repository(p).map_err(|e| {
                settings_error(format!("path prefix '{p}' is not a repository path: {e}"))
            })?;
        }
        let registry = authority.to_ascii_lowercase();
        let api_host = if registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST.to_owned()
        } else {
            registry.clone()
        };
        Url::parse(&format!("https://{api_host}/"))
            .map_err(|e| settings_error(format!("'{api_host}' is not a valid host[:port]: {e}")))?;

        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90));
        for path in &self.ca_files {
            let pem = std::fs::read(path).map_err(|e| {
                settings_error(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                settings_error(format!("CA file {} is not PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(settings_error(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            http = http.tls_certs_merge(certs);
        }
        if self.skip_verify {
            http = http.tls_danger_accept_invalid_certs(true);
        }
        for (host, address) in &self.resolve {
            http = http.resolve(host, *address);
        }
        if let Some(resolver) = &self.resolver {
            http = http.dns_resolver(resolver.clone());
        }
        let http = http.build().map_err(|e| {
            settings_error(format!(
                "cannot build an HTTPS client ({e}); install CA certificates or set SSL_CERT_FILE"
            ))
        })?;
        let undecided = self.scheme == Scheme::Auto && is_loopback(&api_host);
        let scheme = if self.scheme == Scheme::Http {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{api_host}/"))
            .map_err(|e| settings_error(format!("'{api_host}' is not a valid host[:port]: {e}")))?;
        let kind = RegistryKind::detect(&api_host);
        let limits = self.limits.unwrap_or_else(|| Limits::for_kind(kind));
        Ok(Client {
            inner: Arc::new(Inner {
                kind,
                limiter: Limiter::new(&limits),
                registry,
                api_host,
                prefix,
                scheme: self.scheme,
                http,
                api: self.api.clone(),
                create_repositories: self.create_repositories,
                base: std::sync::RwLock::new(base),
                undecided: std::sync::atomic::AtomicBool::new(undecided),
                credentials: self
                    .credentials
                    .unwrap_or_else(|| Arc::new(AnonymousProvider)),
                auth: Mutex::new(AuthState::Unknown),
                tokens: TokenCache::default(),
                upload: self.upload,
                stats: Stats::default(),
                retry_budget: retry::Budget::default(),
                auto_chunk: AtomicU64::new(0),
                referrers_api: AtomicU8::new(REFERRERS_UNKNOWN),
            }),
        })
    }
}

/// Redirects followed per request, as browsers and reqwest's default do.
const MAX_REDIRECTS: usize = 10;

pub(crate) const REFERRERS_UNKNOWN: u8 = 0;
pub(crate) const REFERRERS_SUPPORTED: u8 = 1;
pub(crate) const REFERRERS_UNSUPPORTED: u8 = 2;

/// A client for one registry. Cheap to clone; clones share connections, tokens and counters.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Which registry this is, for its quotas and quirks (ACR's body cap).
    pub(crate) kind: RegistryKind,
    limiter: Limiter,
    /// The registry's name as users write it (`docker.io`, `127.0.0.1:5000`).
    pub(crate) registry: String,
    /// The host requests go to (`registry-1.docker.io` for Docker Hub).
    pub(crate) api_host: String,
    prefix: Option<String>,
    scheme: Scheme,
    pub(crate) http: reqwest::Client,
    /// Control-plane calls, when the registry has them.
    pub(crate) api: Option<Arc<dyn RegistryApi>>,
    /// Create missing repositories through `api` before pushing.
    pub(crate) create_repositories: bool,
    /// The registry's base URL (`https://host/` unless plain HTTP was configured or found).
    base: std::sync::RwLock<Url>,
    /// Auto scheme on a loopback host, before the first answer: plain HTTP is still possible.
    undecided: std::sync::atomic::AtomicBool,
    credentials: Arc<dyn CredentialProvider>,
    auth: Mutex<AuthState>,
    tokens: TokenCache,
    pub(crate) upload: UploadMode,
    pub(crate) stats: Stats,
    retry_budget: retry::Budget,
    /// Set when the registry refused a whole blob in one request: upload in chunks of this
    /// many bytes (halved when the registry refuses those too); 0 until then.
    pub(crate) auto_chunk: AtomicU64,
    pub(crate) referrers_api: AtomicU8,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.inner.registry)
            .field("prefix", &self.inner.prefix)
            .field("scheme", &self.inner.scheme)
            .field("credentials", &self.inner.credentials.name())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum AuthState {
    /// No 401 seen yet.
    Unknown,
    /// The registry wants Basic credentials on every request.
    Basic,
    /// The registry wants Bearer tokens from this realm.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// What a request needs from the registry's authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Pull,
    Push,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "push",
        }
    }
}

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// A one-shot stream with its length: not replayable, so it is sent only once the
    /// credentials are settled.
    Stream(BlobStream, u64),
}

/// One request to the registry.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) kind: RequestKind,
    pub(crate) repository: String,
    pub(crate) access: Access,
    /// Other repositories the token must cover (the `from` of a mount).
    pub(crate) also_pull: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
}

impl Request {
    pub(crate) fn new(
        method: Method,
        url: Url,
        kind: RequestKind,
        repository: &str,
        access: Access,
    ) -> Request {
        Request {
            method,
            url,
            kind,
            repository: repository.to_owned(),
            access,
            also_pull: None,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub(crate) fn header(
        mut self,
        name: reqwest::header::HeaderName,
        value: HeaderValue,
    ) -> Request {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    /// Whether the request can be sent again as it is, and is safe to repeat.
    fn repeatable(&self) -> bool {
        !matches!(self.body, Body::Stream(..))
            && !matches!(
                self.kind,
                RequestKind::UploadChunk | RequestKind::UploadComplete
            )
    }

    fn scopes(&self) -> Scopes {
        if self.repository.is_empty() {
            if self.url.path().ends_with("/_catalog") {
                return Scopes::from_iter(["registry:catalog:*"
                    .parse::<Scope>()
                    .expect("valid scope")]);
            }
            return Scopes::new();
        }
        let actions: &[&str] = match self.access {
            Access::Pull => &["pull"],
            Access::Push => &["pull", "push"],
        };
        let mut scopes = Scopes::from_iter([Scope::repository(&self.repository, actions)]);
        if let Some(from) = &self.also_pull {
            scopes = scopes.union(&Scopes::from_iter([Scope::repository(from, &["pull"])]));
        }
        scopes
    }
}

/// The kinds of registry request, for counters and rate-limit groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RequestKind {
    /// `GET /v2/` (scheme discovery only).
    Ping,
    /// Token endpoint requests.
    Token,
    /// `HEAD` a manifest.
    ManifestHead,
    /// `GET` a manifest.
    ManifestGet,
    /// `PUT` a manifest.
    ManifestPut,
    /// `HEAD` a blob.
    BlobHead,
    /// `GET` a blob.
    BlobGet,
    /// `POST` to start an upload.
    UploadStart,
    /// `POST` with `mount=`.
    Mount,
    /// `PATCH` a chunk.
    UploadChunk,
    /// `PUT` to finish an upload.
    UploadComplete,
    /// `DELETE` an abandoned upload session.
    UploadCancel,
    /// `GET` a tag list page.
    TagList,
    /// `GET` a referrers list.
    Referrers,
}

impl RequestKind {
    /// Every kind, in counter order.
    pub const ALL: [RequestKind; 14] = [
        RequestKind::Ping,
        RequestKind::Token,
        RequestKind::ManifestHead,
        RequestKind::ManifestGet,
        RequestKind::ManifestPut,
        RequestKind::BlobHead,
        RequestKind::BlobGet,
        RequestKind::UploadStart,
        RequestKind::Mount,
        RequestKind::UploadChunk,
        RequestKind::UploadComplete,
        RequestKind::UploadCancel,
        RequestKind::TagList,
        RequestKind::Referrers,
    ];

    /// A stable snake_case name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Ping => "ping",
            RequestKind::Token => "token",
            RequestKind::ManifestHead => "manifest_head",
            RequestKind::ManifestGet => "manifest_get",
            RequestKind::ManifestPut => "manifest_put",
            RequestKind::BlobHead => "blob_head",
            RequestKind::BlobGet => "blob_get",
            RequestKind::UploadStart => "upload_start",
            RequestKind::Mount => "mount",
            RequestKind::UploadChunk => "upload_chunk",
            RequestKind::UploadComplete => "upload_complete",
            RequestKind::UploadCancel => "upload_cancel",
            RequestKind::TagList => "tag_list",
            RequestKind::Referrers => "referrers",
        }
    }
}

tokio::task_local! {
    /// Requests made by the current engine job (any registry), when the job counts them.
    pub(crate) static JOB_REQUESTS: Arc<AtomicU64>;
}

/// Request and byte counters of one client.
#[derive(Debug)]
pub(crate) struct Stats {
    requests: [AtomicU64; RequestKind::ALL.len()],
    pub(crate) bytes_uploaded: AtomicU64,
    pub(crate) bytes_downloaded: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) throttled: AtomicU64,
    /// Last `ratelimit-remaining` seen (Docker Hub, GHCR), `u64::MAX` when none was.
    pub(crate) ratelimit_remaining: AtomicU64,
    /// Responses that came over HTTP/2.
    pub(crate) http2: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: Default::default(),
            bytes_uploaded: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            ratelimit_remaining: AtomicU64::new(u64::MAX),
            http2: AtomicU64::new(0),
        }
    }
}

impl Stats {
    fn count(&self, kind: RequestKind) {
        let i = RequestKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        let _ = JOB_REQUESTS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
    }
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ClientStats {
    /// Requests sent, by kind (kinds with zero requests are omitted).
    pub requests: std::collections::BTreeMap<&'static str, u64>,
    /// Blob bytes sent to the registry.
    pub bytes_uploaded: u64,
    /// Blob bytes received from the registry.
    pub bytes_downloaded: u64,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// Responses that were 429 Too Many Requests.
    pub throttled: u64,
    /// The registry's last `ratelimit-remaining` (Docker Hub pulls left), if it sent one.
    pub ratelimit_remaining: Option<u64>,
    /// Responses received over HTTP/2 (negotiated by ALPN where the registry offers it).
    pub http2_responses: u64,
    /// How the registry's requests were paced: one entry per lane.
    pub pacing: Vec<LaneStats>,
}

impl ClientStats {
    /// Requests of one kind.
    pub fn get(&self, kind: RequestKind) -> u64 {
        self.requests.get(kind.as_str()).copied().unwrap_or(0)
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// What happened after `earlier` (a snapshot of the same client): counters are
    /// differences, `ratelimit_remaining` and the lanes' windows and rates are the latest.
    /// A client kept across runs (`ocync watch`) reports each run on its own this way.
    pub fn since(&self, earlier: &ClientStats) -> ClientStats {
        let minus = |now: u64, then: u64| now.saturating_sub(then);
        ClientStats {
            requests: self
                .requests
                .iter()
                .map(|(kind, n)| {
                    (
                        *kind,
                        minus(*n, earlier.requests.get(kind).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            bytes_uploaded: minus(self.bytes_uploaded, earlier.bytes_uploaded),
            bytes_downloaded: minus(self.bytes_downloaded, earlier.bytes_downloaded),
            retries: minus(self.retries, earlier.retries),
            throttled: minus(self.throttled, earlier.throttled),
            ratelimit_remaining: self.ratelimit_remaining,
            http2_responses: minus(self.http2_responses, earlier.http2_responses),
            pacing: self
                .pacing
                .iter()
                .map(|lane| {
                    let mut lane = lane.clone();
                    if let Some(old) = earlier.pacing.iter().find(|l| l.groups == lane.groups) {
                        lane.throttle_events = minus(lane.throttle_events, old.throttle_events);
                        lane.waited_ms = minus(lane.waited_ms, old.waited_ms);
                    }
                    lane
                })
                .collect(),
        }
    }
}

impl Client {
    /// A client for `registry` with default settings.
    pub fn new(registry: &str) -> Result<Client, Error> {
        ClientBuilder::new(registry).build()
    }

    /// The registry's name (`docker.io`, `127.0.0.1:5000`), without any path prefix.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// Counters of every request this client (and its clones) sent.
    pub fn stats(&self) -> ClientStats {
        let s = &self.inner.stats;
        ClientStats {
            requests: RequestKind::ALL
                .iter()
                .zip(&s.requests)
                .map(|(k, c)| (k.as_str(), c.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            bytes_uploaded: s.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: s.bytes_downloaded.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
            ratelimit_remaining: Some(s.ratelimit_remaining.load(Ordering::Relaxed))
                .filter(|n| *n != u64::MAX),
            http2_responses: s.http2.load(Ordering::Relaxed),
            pacing: self.inner.limiter.stats(),
        }
    }

    /// `GET /v2/`: the registry is reachable, speaks the distribution API, and accepts the
    /// credentials (a 401 is answered with them once).
    pub async fn ping(&self) -> Result<(), Error> {
        let url = self.base().await?.join("v2/").expect("static path");
        let response = self
            .send(Request::new(
                Method::GET,
                url,
                RequestKind::Ping,
                "",
                Access::Pull,
            ))
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.unexpected(&Method::GET, response).await)
        }
    }

    /// Prove the credentials for `repository` without changing it: `push` opens an upload
    /// session and deletes it at once (only a push-scoped request proves push access); `pull`
    /// asks for a manifest. A missing repository or tag still proves the credentials, so only
    /// 401/403 and transport failures are errors.
    pub async fn check_access(&self, repository: &str, push: bool) -> Result<(), Error> {
        let path = self.path(repository);
        let (method, kind, rest, access) = if push {
            (
                Method::POST,
                RequestKind::UploadStart,
                "blobs/uploads/",
                Access::Push,
            )
        } else {
            (
                Method::HEAD,
                RequestKind::ManifestHead,
                "manifests/latest",
                Access::Pull,
            )
        };
        let url = self.url(repository, rest).await?;
        let mut request = Request::new(method.clone(), url, kind, &path, access);
        if push {
            request = request.header(reqwest::header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        let response = self.send(request).await?;
        if response.status().is_server_error() {
            return Err(self.unexpected(&method, response).await);
        }
        if push
            && response.status() == StatusCode::ACCEPTED
            && let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
            && let Ok(session) = response.url().join(location)
        {
            let cancel = Request::new(
                Method::DELETE,
                session,
                RequestKind::UploadCancel,
                &path,
                Access::Push,
            );
            if let Err(e) = self.send(cancel).await {
                tracing::debug!(error = %e, "could not delete the access-check upload session");
            }
        }
        Ok(())
    }

    /// A key naming the registry endpoint: clients with equal keys can mount between each
    /// other's repositories.
    pub(crate) fn site_key(&self) -> String {
        self.inner.api_host.clone()
    }

    /// Whether two clients talk to the same registry endpoint (so blobs can be mounted
    /// between their repositories).
    pub fn same_registry(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.api_host == other.inner.api_host
                && self.inner.scheme == other.inner.scheme)
    }

    /// The repository path on the registry: the client's path prefix, then `repository`.
    pub(crate) fn path(&self, repository: &str) -> String {
        match &self.inner.prefix {
            Some(p) => format!("{p}/{repository}"),
            None => repository.to_owned(),
        }
    }

    /// `registry[/prefix]/repository`, for messages.
    pub fn display_name(&self, repository: &str) -> String {
        format!("{}/{}", self.inner.registry, self.path(repository))
    }

    /// A URL under `/v2/<path>/`.
    pub(crate) async fn url(&self, repository: &str, rest: &str) -> Result<Url, Error> {
        let base = self.base().await?;
        base.join(&format!("v2/{}/{rest}", self.path(repository)))
            .map_err(|e| {
                Error::protocol(
                    &self.inner.api_host,
                    format!("cannot build a URL for '{repository}': {e}"),
                )
            })
    }

    /// The base URL, with the scheme settled. Loopback registries in [`Scheme::Auto`] are
    /// probed once: a server that answers a TLS ClientHello with plain HTTP is spoken to in HTTP.
    pub(crate) async fn base(&self) -> Result<Url, Error> {
        Ok(self.inner.base.read().expect("base lock").clone())
    }

    /// A loopback registry in [`Scheme::Auto`] answered the first request's TLS handshake in
    /// plain HTTP: switch the client to HTTP (once, as docker does) and say whether to retry.
    fn fall_back_to_http(&self, url: &mut Url, error: &reqwest::Error) -> bool {
        if url.scheme() != "https" || !is_plaintext_server(error) {
            return false;
        }
        let mut base = self.inner.base.write().expect("base lock");
        // The first request to find out switches the client; requests already in flight
        // with https (concurrent first requests) follow the switch.
        let switched = base.scheme() == "http";
        if !switched && !self.inner.undecided.swap(false, Ordering::SeqCst) {
            return false;
        }
        if !switched {
            tracing::debug!(registry = %self.inner.api_host, "loopback registry does not speak TLS, using plain http");
            let _ = base.set_scheme("http");
        }
        let _ = url.set_scheme("http");
        true
    }

    /// Send a request, authenticating as the registry asks, retrying once after a 401.
    /// Returns the response whatever its status, except 401/403 which become [`ErrorKind::Denied`].
    pub(crate) async fn send(&self, mut request: Request) -> Result<Response, Error> {
        let scopes = request.scopes();
        let mut url = request.url.clone();
        let mut same_host = host_of(&url) == self.inner.api_host;
        let mut authorization = if same_host {
            self.authorization(&scopes).await?
        } else {
            None
        };
        let mut retried = false;
        let mut hops = 0;
        let mut attempt = 0;
        // A streamed body that fails (a corrupt or truncated source) aborts the request; its
        // error is kept here so the caller sees it rather than hyper's generic body error.
        let body_error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        loop {
            let body = match &mut request.body {
                Body::Empty => None,
                Body::Bytes(b) => Some(reqwest::Body::from(b.clone())),
                Body::Stream(stream, len) => {
                    let stream = std::mem::replace(stream, BlobStream::empty());
                    request
                        .headers
                        .insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(*len));
                    let slot = body_error.clone();
                    let stream = futures::StreamExt::map(stream, move |item| {
                        item.map_err(|e| {
                            let message = e.to_string();
                            *slot.lock().expect("body error lock") = Some(e);
                            std::io::Error::other(message)
                        })
                    });
                    Some(reqwest::Body::wrap_stream(stream))
                }
            };
            let mut builder = self
                .inner
                .http
                .request(request.method.clone(), url.clone())
                .headers(request.headers.clone());
            if let Some(value) = &authorization {
                builder = builder.header(AUTHORIZATION, value.clone());
            }
            if let Some(body) = body {
                builder = builder.body(body);
            }
            // Requests to the registry itself are paced; a redirect's target (a CDN, S3)
            // meters nothing of the registry's.
            let permit = match ActionGroup::of(request.kind) {
                Some(group) if same_host => Some(self.inner.limiter.acquire(group).await),
                _ => None,
            };
            self.inner.stats.count(request.kind);
            let response = match builder.send().await {
                Ok(r) => {
                    self.inner.undecided.store(false, Ordering::SeqCst);
                    if r.version() == reqwest::Version::HTTP_2 {
                        self.inner.stats.http2.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                }
                Err(e) => {
                    // A transport failure says nothing about the registry's limits: free the
                    // slot now rather than through the backoff below.
                    drop(permit);
                    if let Some(source_error) = body_error.lock().expect("body error lock").take() {
                        return Err(source_error);
                    }
                    if same_host && self.fall_back_to_http(&mut url, &e) {
                        continue;
                    }
                    let error = Error::transport(&host_of(&url), e);
                    let facts = (
                        request.repeatable(),
                        &request.method.clone(),
                        &request.url.clone(),
                    );
                    if self
                        .should_retry(facts, &mut attempt, None, &error.to_string(), false)
                        .await?
                    {
                        continue;
                    }
                    return Err(error);
                }
            };
            let status = response.status();
            let remaining = self.note_rate_limit(response.headers());
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
            if let Some(permit) = permit {
                match status {
                    StatusCode::TOO_MANY_REQUESTS => permit.throttled(retry_after),
                    StatusCode::SERVICE_UNAVAILABLE => permit.unavailable(retry_after),
                    _ => permit.success(),
                }
            }
            if is_transient(status) {
                let throttled = status == StatusCode::TOO_MANY_REQUESTS;
                if throttled {
                    self.inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
                }
                // Docker Hub's pull allowance is counted per 6 hours: once it is spent, waiting
                // seconds will not help, and the error should say so at once.
                if throttled && remaining == Some(0) {
                    return Err(self.unexpected(&request.method.clone(), response).await);
                }
                let what = format!("{status}");
                let facts = (
                    request.repeatable(),
                    &request.method.clone(),
                    &request.url.clone(),
                );
                if self
                    .should_retry(facts, &mut attempt, retry_after, &what, throttled)
                    .await?
                {
                    continue;
                }
            }
            // Redirects are followed here rather than by reqwest, so that an error or a hang
            // names the host actually contacted (ACR data endpoints, S3, CDNs), and credentials
            // go only to the registry's own host.
            if status.is_redirection()
                && (request.method == Method::GET || request.method == Method::HEAD)
                && let Some(location) = response.headers().get(reqwest::header::LOCATION)
            {
                let host = host_of(&url);
                if hops == MAX_REDIRECTS {
                    return Err(Error::protocol(
                        &host,
                        format!("more than {MAX_REDIRECTS} redirects"),
                    ));
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| Error::protocol(&host, "a redirect has an invalid Location"))?;
                hops += 1;
                url = next;
                same_host =
                    host_of(&url) == self.inner.api_host && url.scheme() == request.url.scheme();
                if !same_host {
                    authorization = None;
                }
                continue;
            }
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(response);
            }
            let replayable = !matches!(request.body, Body::Stream(..));
            if status == StatusCode::UNAUTHORIZED && !retried && replayable && same_host {
                let challenges: Vec<String> = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                if let Some(next) = self
                    .learn(&challenges, &scopes, authorization.is_some())
                    .await?
                {
                    authorization = Some(next);
                    retried = true;
                    continue;
                }
            }
            let (method, repository, access) = (
                request.method.clone(),
                request.repository.clone(),
                request.access,
            );
            return Err(self.denied(&method, repository, access, response).await);
        }
    }

    /// Docker Hub (`ratelimit-remaining: 95;w=21600`) and GHCR (`x-ratelimit-remaining`) say
    /// how many requests are left: keep the figure for the report, and warn once it drops
    /// under a tenth of the limit, before the registry starts answering 429. Returns the
    /// figure, if the registry sent one.
    fn note_rate_limit(&self, headers: &HeaderMap) -> Option<u64> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let remaining =
            number("ratelimit-remaining").or_else(|| number("x-ratelimit-remaining"))?;
        let limit = number("ratelimit-limit").or_else(|| number("x-ratelimit-limit"));
        let before = self
            .inner
            .stats
            .ratelimit_remaining
            .swap(remaining, Ordering::Relaxed);
        if let Some(limit) = limit
            && remaining < limit / 10
            && (before == u64::MAX || before >= limit / 10)
        {
            tracing::warn!(registry = %self.inner.registry, remaining, limit, "the registry's request allowance is nearly spent");
        }
        Some(remaining)
    }

    /// Whether to try `request` again after a transient failure (`what`), waiting first. Only
    /// requests that can be replayed and are safe to repeat are retried: not streamed bodies,
    /// and not the chunk and completion requests of an upload (whose session state is unknown
    /// after a failure; the engine restarts such an upload instead). Retries of failures come
    /// out of the registry's budget; when it is spent the registry is reported as failing.
    /// A 429 is not a failure but the registry pacing us: its retries are not charged to the
    /// budget, and a request may be throttled more times than it may fail, since the limiter
    /// slows the lane down meanwhile.
    async fn should_retry(
        &self,
        (repeatable, method, url): (bool, &Method, &Url),
        attempt: &mut u32,
        retry_after: Option<std::time::Duration>,
        what: &str,
        throttled: bool,
    ) -> Result<bool, Error> {
        let attempts = if throttled {
            retry::MAX_THROTTLED_ATTEMPTS
        } else {
            retry::MAX_ATTEMPTS
        };
        if !repeatable || *attempt + 1 >= attempts {
            return Ok(false);
        }
        if !throttled && !self.inner.retry_budget.take() {
            let (retries, window) = retry::Budget::size();
            return Err(ErrorKind::RetryBudget {
                registry: self.inner.registry.clone(),
                retries,
                window_secs: window.as_secs(),
                last: what.to_owned(),
            }
            .into());
        }
        *attempt += 1;
        self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
        let wait = retry::delay(*attempt, retry_after);
        tracing::warn!(
            registry = %self.inner.registry,
            method = %method,
            url = %crate::error::redact(url),
            attempt = *attempt,
            wait_ms = wait.as_millis() as u64,
            "{what}; retrying"
        );
        tokio::time::sleep(wait).await;
        Ok(true)
    }

    /// The registry's answer to a denied request, as an error naming registry, repository and
    /// action.
    async fn denied(
        &self,
        method: &Method,
        repository: String,
        access: Access,
        response: Response,
    ) -> Error {
        let status = response.status();
        let url = response.url().clone();
        let body = response.bytes().await.unwrap_or_default();
        let detail = match Error::from_response(method, &url, status, &body, None).kind() {
            ErrorKind::Status { detail, .. } => detail.clone(),
            _ => String::new(),
        };
        let detail = if detail.is_empty() && status == StatusCode::UNAUTHORIZED {
            ": no valid credentials".to_owned()
        } else {
            detail
        };
        let provider = match self.credential().await {
            Ok(Some(_)) => self.inner.credentials.answered_by(&self.inner.registry),
            _ => None,
        };
        let registry = &self.inner.registry;
        let hint = match (provider, status) {
            (Some(p), StatusCode::FORBIDDEN) => {
                format!("the credentials from {p} are valid but lack this permission on {registry}")
            }
            (Some(p), _) => {
                format!("{registry} refused the credentials from {p}; check or renew them")
            }
            (None, _) => format!(
                "no credentials were found for {registry}: run `docker login {registry}`, or set auth_type and credentials for it in the configuration"
            ),
        };
        ErrorKind::Denied {
            registry: registry.clone(),
            repository,
            action: access.as_str(),
            status,
            detail,
            provider,
            hint,
        }
        .into()
    }

    /// Learn from a 401's challenges; return the `Authorization` to retry with, if any.
    async fn learn(
        &self,
        challenges: &[String],
        scopes: &Scopes,
        sent_something: bool,
    ) -> Result<Option<HeaderValue>, Error> {
        let parsed = ocync_auth::parse_challenges(challenges.iter().map(String::as_str));
        let bearer = parsed.iter().find_map(|c| match c {
            Challenge::Bearer(b) => Some(b.clone()),
            _ => None,
        });
        if let Some(challenge) = bearer {
            let previous = {
                let mut state = self.inner.auth.lock().expect("auth state lock");
                let previous = state.clone();
                *state = AuthState::Bearer {
                    realm: challenge.realm.clone(),
                    service: challenge.service.clone(),
                };
                previous
            };
            // The registry may ask for more than we thought (insufficient_scope names it).
            let wanted = match challenge.scope.as_deref().map(str::parse::<Scopes>) {
                Some(Ok(advertised)) => scopes.union(&advertised),
                _ => scopes.clone(),
            };
            let key = token_key(&challenge.realm, challenge.service.as_deref(), &wanted);
            if sent_something || matches!(previous, AuthState::Bearer { .. }) {
                self.inner.tokens.invalidate(&key);
            }
            return self.bearer(&challenge, &wanted).await.map(Some);
        }
        if parsed.iter().any(|c| matches!(c, Challenge::Basic { .. })) {
            *self.inner.auth.lock().expect("auth state lock") = AuthState::Basic;
            if sent_something {
                return Ok(None);
            }
            return self.basic().await;
        }
        Ok(None)
    }

    /// The `Authorization` header for `scopes` from what the client already knows.
    async fn authorization(&self, scopes: &Scopes) -> Result<Option<HeaderValue>, Error> {
        let state = self.inner.auth.lock().expect("auth state lock").clone();
        match state {
            AuthState::Unknown => Ok(None),
            AuthState::Basic => self.basic().await,
            AuthState::Bearer { realm, service } => {
                let challenge = BearerChallenge {
                    realm,
                    service,
                    scope: None,
                    error: None,
                };
                self.bearer(&challenge, scopes).await.map(Some)
            }
        }
    }

    async fn credential(&self) -> Result<Option<Credential>, Error> {
        self.inner
            .credentials
            .credential(&self.inner.registry)
            .await
            .map_err(|source| {
                ErrorKind::Auth {
                    registry: self.inner.registry.clone(),
                    provider: None,
                    source,
                }
                .into()
            })
    }

    async fn basic(&self) -> Result<Option<HeaderValue>, Error> {
        match self.credential().await? {
            Some(Credential::Basic { username, password }) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                let mut value =
                    HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
                        Error::protocol(
                            &self.inner.registry,
                            "credentials contain characters not allowed in a header",
                        )
                    })?;
                value.set_sensitive(true);
                Ok(Some(value))
            }
            _ => Ok(None),
        }
    }

    async fn bearer(
        &self,
        challenge: &BearerChallenge,
        scopes: &Scopes,
    ) -> Result<HeaderValue, Error> {
        let key = token_key(&challenge.realm, challenge.service.as_deref(), scopes);
        let token = self
            .inner
            .tokens
            .get_or_fetch(&key, || async {
                let credential = self
                    .inner
                    .credentials
                    .credential(&self.inner.registry)
                    .await?;
                self.inner.stats.count(RequestKind::Token);
                let request = TokenRequest {
                    registry: &self.inner.registry,
                    challenge,
                    scopes,
                    credential: credential.as_ref(),
                    registry_is_https: self
                        .base()
                        .await
                        .map(|b| b.scheme() == "https")
                        .unwrap_or(true),
                };
                ocync_auth::fetch_token(&self.inner.http, &request).await
            })
            .await
            .map_err(|source| -> Error {
                ErrorKind::Auth {
                    registry: self.inner.registry.clone(),
                    provider: if source.is_auth_failure() {
                        self.inner.credentials.answered_by(&self.inner.registry)
                    } else {
                        None
                    },
                    source,
                }
                .into()
            })?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.value().expose()))
            .map_err(|_| {
                Error::protocol(
                    &self.inner.registry,
                    "the token server returned a token that is not a valid header value",
                )
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Read an unexpected response into an error.
    pub(crate) async fn unexpected(&self, method: &Method, response: Response) -> Error {
        let status = response.status();
        let url = response.url().clone();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.bytes().await.unwrap_or_default();
        Error::from_response(method, &url, status, &body, retry_after)
    }
}

/// Statuses worth another attempt: timeouts, throttling and server errors (RFC 9110; 501 and
/// 505 say the request will never work).
fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

fn token_key(realm: &str, service: Option<&str>, scopes: &Scopes) -> TokenKey {
    TokenKey {
        realm: realm.to_owned(),
        service: service.map(str::to_owned),
        scopes: scopes.clone(),
    }
}

fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: &[(&'static str, u64)], throttled: u64, waited_ms: u64) -> ClientStats {
        ClientStats {
            requests: requests.iter().copied().collect(),
            bytes_uploaded: 1000 * throttled,
            bytes_downloaded: 10,
            retries: throttled,
            throttled,
            ratelimit_remaining: Some(99),
            http2_responses: 7,
            pacing: vec![LaneStats {
                groups: vec!["manifest_read"],
                window: 4.0,
                rate_per_second: None,
                throttle_events: throttled,
                waited_ms,
            }],
        }
    }

    /// A client kept across runs counts from its creation; `since` gives one run's share.
    #[test]
    fn stats_since_an_earlier_snapshot_are_differences() {
        let before = stats(&[("manifest_head", 10), ("token", 2)], 3, 500);
        let after = stats(
            &[("manifest_head", 14), ("token", 2), ("blob_head", 1)],
            5,
            800,
        );
        let run = after.since(&before);
        assert_eq!(
            run.requests,
            std::collections::BTreeMap::from([("blob_head", 1), ("manifest_head", 4)])
        );
        assert_eq!(run.total(), 5);
        assert_eq!((run.retries, run.throttled), (2, 2));
        assert_eq!((run.bytes_uploaded, run.bytes_downloaded), (2000, 0));
        assert_eq!(run.http2_responses, 0);
        assert_eq!(
            run.ratelimit_remaining,
            Some(99),
            "a reading, not a counter"
        );
        assert_eq!(
            (run.pacing[0].throttle_events, run.pacing[0].waited_ms),
            (2, 300)
        );
        assert_eq!(run.pacing[0].window, 4.0, "the window now");
    }

    #[test]
    fn loopback_detection() {
        for (host, expected) in [
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.3.4.5", true),
            ("[::1]:5000", true),
            ("registry.local:5000", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(is_loopback(host), expected, "{host}");
        }
    }

    #[test]
    fn builder_parses_scheme_and_prefix() {
        let c = ClientBuilder::new("http://localhost:5000/myregistry/")
            .build()
            .unwrap();
        assert_eq!(c.registry(), "localhost:5000");
        assert_eq!(c.path("app"), "myregistry/app");
        assert_eq!(c.inner.scheme, Scheme::Http);
        assert_eq!(c.display_name("app"), "localhost:5000/myregistry/app");
        let hub = Client::new("docker.io").unwrap();
        assert_eq!(hub.inner.api_host, "registry-1.docker.io");
        assert_eq!(hub.registry(), "docker.io");
    }

    #[test]
    fn bad_settings_name_the_registry() {
        let err = ClientBuilder::new("localhost:5000/Bad")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("'localhost:5000/Bad'"), "{err}");
        let err = ClientBuilder::new("reg.example:5000")
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("reg.example:5000") && msg.contains("/nonexistent/ca.pem"),
            "{msg}"
        );
    }
}
