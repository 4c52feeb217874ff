//! Fakes of Azure Container Registry's login server and of the Entra ID (AAD) token endpoint,
//! faithful at the wire level (protocol facts §2.1, §2.3, §2.4) and backed by a real
//! `docker-registry`, so the whole ACR dance can run on loopback:
//!
//! 1. [`FakeAad`]: `POST /{tenant}/oauth2/v2.0/token` (client secret or federated assertion)
//!    answers the configured Entra access token.
//! 2. [`FakeAcr`] `POST /oauth2/exchange` trades it for an ACR refresh token (a JWT that
//!    expires in 3 hours).
//! 3. [`FakeAcr`] `POST /oauth2/token` trades that for an access token for some scopes: an
//!    RS256 JWT that the backing registry trusts, answered without `expires_in`, as ACR does.
//!    `GET /oauth2/token` with Basic (admin user, or the null-GUID user with a refresh token)
//!    does the same for Docker-style clients.
//! 4. Everything else (`/v2/…`) is reverse-proxied, streamed both ways, to the backing
//!    token-auth [`TestRegistry`], which advertises `https://<login server>/oauth2/token` as its
//!    realm and `<login server>` as its service, and whose upload `Location`s are rewritten to
//!    point at the login server.
//!
//! The login server speaks HTTPS with a certificate for its name; clients reach it through a
//! [`ConnectProxy`](super::proxy::ConnectProxy) routing `<login server>:443` to
//! [`FakeAcr::addr`] ([`FakeAcr::route`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::base64;
use super::registry::{RegistryAuth, RegistryOptions, TestRegistry};
use super::tls::{TestCa, serve, serve_tls};
use super::token_server::{Minter, random_hex, unix_now};

/// The Entra scope for ACR tokens that [`FakeAad`] requires (public cloud ACR audience).
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// `client_assertion_type` of a federated (workload identity) client assertion.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The Basic user name that goes with an ACR refresh token as password (`docker login` with an
/// identity token).
pub const NULL_GUID_USER: &str = "00000000-0000-0000-0000-000000000000";

/// Lifetime of the refresh tokens [`FakeAcr`] issues, in seconds (the 3 hours ACR documents).
pub const REFRESH_TOKEN_LIFETIME: u64 = 3 * 60 * 60;

/// `expires_in` (and `ext_expires_in`) of [`FakeAad`] answers, in seconds.
pub const AAD_EXPIRES_IN: u64 = 3599;

/// Subject of the tokens minted for Entra-authenticated callers.
const ENTRA_SUBJECT: &str = "entra-principal";

/// One request to an OAuth2 endpoint of [`FakeAcr`] or [`FakeAad`], secrets included, for
/// assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormRequest {
    /// `POST` or `GET`.
    pub method: String,
    /// The request path (`/oauth2/exchange`, `/oauth2/token`, `/<tenant>/oauth2/v2.0/token`).
    pub path: String,
    /// The form fields of a POST, or the query parameters of a GET, in order.
    pub fields: Vec<(String, String)>,
    /// The decoded HTTP Basic credentials, if any.
    pub basic: Option<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl FormRequest {
    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        first(&self.fields, name)
    }

    /// Every value of field `name` (`scope` may repeat).
    pub fn fields_named(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The requested scopes: every `scope` value split on whitespace.
    pub fn scopes(&self) -> Vec<String> {
        scopes(&self.fields)
    }
}

/// An unsigned-looking JWT (`header.claims.signature`, base64url without padding) with
/// `claims` and a random signature: enough for clients that only read the claims (`exp`).
pub fn unsigned_jwt(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "ocync-test"});
    format!(
        "{}.{}.{}",
        base64::encode_url(header.to_string().as_bytes()),
        base64::encode_url(claims.to_string().as_bytes()),
        base64::encode_url(random_hex(32).as_bytes())
    )
}

/// A fake ACR login server (`<name>.azurecr.io`) over HTTPS on a random `127.0.0.1` port, in
/// front of a real token-auth `docker-registry`. Stops when dropped.
pub struct FakeAcr {
    addr: SocketAddr,
    ca: TestCa,
    ca_file: PathBuf,
    state: Arc<AcrState>,
    handle: JoinHandle<()>,
    // Dropped after the front stops serving.
    registry: TestRegistry,
    _dir: TempDir,
}

struct AcrState {
    login_server: String,
    tenant: String,
    entra_token: String,
    admin: Mutex<(String, String)>,
    refresh_lifetime: AtomicU64,
    /// Refresh tokens with their `exp`, in the order issued.
    refresh_tokens: Mutex<Vec<(String, u64)>>,
    log: Mutex<Vec<FormRequest>>,
    minter: Minter,
    upstream: String,
    client: reqwest::Client,
}

impl FakeAcr {
    /// Start a login server named `login_server` (e.g. `myreg.azurecr.io`) that exchanges the
    /// Entra token `entra_token` of tenant `tenant`, and its backing registry.
    ///
    /// The admin user is the registry name (the first label of `login_server`) with a random
    /// password ([`FakeAcr::set_admin_user`] changes it).
    pub async fn start(login_server: &str, tenant: &str, entra_token: &str) -> FakeAcr {
        let registry = TestRegistry::start(
            RegistryOptions::new()
                .with_auth(RegistryAuth::Token)
                .with_token_realm(format!("https://{login_server}/oauth2/token"))
                .with_token_service(login_server),
        )
        .await;
        let minter = registry
            .token_server()
            .expect("a token-auth registry has a token server")
            .minter();
        let ca = TestCa::with_names(&[login_server]);
        let dir = tempfile::Builder::new()
            .prefix("ocync-fake-acr-")
            .tempdir()
            .expect("create the fake acr's temporary directory");
        let ca_file = ca.write_ca(dir.path());
        let registry_name = login_server.split('.').next().unwrap_or(login_server);
        let client = reqwest::Client::builder()
            .tls_certs_only(Vec::<reqwest::Certificate>::new())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the fake acr's upstream client");
        let state = Arc::new(AcrState {
            login_server: login_server.to_owned(),
            tenant: tenant.to_owned(),
            entra_token: entra_token.to_owned(),
            admin: Mutex::new((registry_name.to_owned(), random_hex(16))),
            refresh_lifetime: AtomicU64::new(REFRESH_TOKEN_LIFETIME),
            refresh_tokens: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            minter,
            upstream: registry.url(),
            client,
        });
        let router = axum::Router::new()
            .route("/oauth2/exchange", post(exchange))
            .route("/oauth2/token", get(basic_token).post(refresh_token_grant))
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let (addr, handle) = serve_tls(router, &ca).await;
        FakeAcr {
            addr,
            ca,
            ca_file,
            state,
            handle,
            registry,
            _dir: dir,
        }
    }

    /// The login server name, e.g. `myreg.azurecr.io`.
    pub fn login_server(&self) -> &str {
        &self.state.login_server
    }

    /// `https://<login server>`, the URL clients use (through the proxy).
    pub fn url(&self) -> String {
        format!("https://{}", self.state.login_server)
    }

    /// The loopback address the login server really listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The [`ConnectProxy`](super::proxy::ConnectProxy) route for it:
    /// (`<login server>:443`, [`FakeAcr::addr`]).
    pub fn route(&self) -> (String, SocketAddr) {
        (format!("{}:443", self.state.login_server), self.addr)
    }

    /// The CA that signed the login server's certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A file holding the CA certificate, PEM (for `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The backing registry, to check its storage and the requests it received.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// The tenant `/oauth2/exchange` requires.
    pub fn tenant(&self) -> &str {
        &self.state.tenant
    }

    /// The Entra access token `/oauth2/exchange` accepts.
    pub fn entra_token(&self) -> &str {
        &self.state.entra_token
    }

    /// The admin user name accepted by `GET /oauth2/token` with Basic.
    pub fn admin_username(&self) -> String {
        lock(&self.state.admin).0.clone()
    }

    /// The admin user's password.
    pub fn admin_password(&self) -> String {
        lock(&self.state.admin).1.clone()
    }

    /// Accept `username` with `password` (an admin user or a repository-scoped token) on
    /// `GET /oauth2/token` instead of the previous admin user.
    pub fn set_admin_user(&self, username: &str, password: &str) {
        *lock(&self.state.admin) = (username.to_owned(), password.to_owned());
    }

    /// Lifetime (JWT `exp - iat`) of access tokens issued from now on, in seconds.
    pub fn set_access_token_lifetime(&self, seconds: u64) {
        if let Some(server) = self.registry.token_server() {
            server.set_expires_in(seconds);
        }
    }

    /// Lifetime of refresh tokens issued from now on, in seconds ([`REFRESH_TOKEN_LIFETIME`]
    /// by default). Expired refresh tokens are refused by `/oauth2/token`.
    pub fn set_refresh_token_lifetime(&self, seconds: u64) {
        self.state.refresh_lifetime.store(seconds, Ordering::SeqCst);
    }

    /// Every refresh token issued so far, oldest first.
    pub fn refresh_tokens(&self) -> Vec<String> {
        lock(&self.state.refresh_tokens)
            .iter()
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Number of `/oauth2/exchange` requests (any outcome).
    pub fn exchanges(&self) -> usize {
        self.count(|r| r.path == "/oauth2/exchange")
    }

    /// Number of `/oauth2/token` requests, GET and POST (any outcome).
    pub fn token_requests(&self) -> usize {
        self.count(|r| r.path == "/oauth2/token")
    }

    /// Number of `/oauth2/token` requests that asked for exactly `scope` among their scopes.
    pub fn token_requests_with_scope(&self, scope: &str) -> usize {
        self.count(|r| r.path == "/oauth2/token" && r.scopes().iter().any(|s| s == scope))
    }

    /// Every request to `/oauth2/exchange` and `/oauth2/token`, oldest first, secrets
    /// included.
    pub fn log(&self) -> Vec<FormRequest> {
        lock(&self.state.log).clone()
    }

    /// Forget the logged requests (the counters restart at zero).
    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
    }

    fn count(&self, filter: impl Fn(&FormRequest) -> bool) -> usize {
        lock(&self.state.log).iter().filter(|r| filter(r)).count()
    }
}

impl Drop for FakeAcr {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for FakeAcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAcr")
            .field("login_server", &self.state.login_server)
            .field("addr", &self.addr)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl AcrState {
    fn record(
        &self,
        method: &str,
        path: &str,
        fields: &[(String, String)],
        basic: Option<(String, String)>,
        status: StatusCode,
    ) {
        lock(&self.log).push(FormRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            fields: fields.to_vec(),
            basic,
            status: status.as_u16(),
        });
    }

    fn new_refresh_token(&self) -> String {
        let now = unix_now();
        let exp = now + self.refresh_lifetime.load(Ordering::SeqCst);
        let token = unsigned_jwt(&json!({
            "jti": random_hex(16),
            "sub": ENTRA_SUBJECT,
            "nbf": now,
            "exp": exp,
            "iat": now,
            "iss": "Azure Container Registry",
            "aud": self.login_server,
            "version": "1.0",
            "rid": random_hex(16),
            "grant_type": "refresh_token",
            "tenant": self.tenant,
            "permissions": {"actions": ["*"], "notActions": []},
            "roles": [],
        }));
        lock(&self.refresh_tokens).push((token.clone(), exp));
        token
    }

    fn refresh_token_valid(&self, token: &str) -> bool {
        let now = unix_now();
        lock(&self.refresh_tokens)
            .iter()
            .any(|(issued, exp)| issued == token && *exp > now)
    }
}

/// An ACR-style error answer: `{"errors":[{"code":…,"message":…}]}`.
fn acr_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    acr_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

/// `POST /oauth2/exchange`: an Entra access token for an ACR refresh token.
async fn exchange(State(state): State<Arc<AcrState>>, body: Bytes) -> Response {
    let fields = form(&body);
    let problem = if first(&fields, "grant_type") != Some("access_token") {
        Some("grant_type must be 'access_token'".to_owned())
    } else if first(&fields, "service") != Some(state.login_server.as_str()) {
        Some(format!(
            "service must be '{}', got '{}'",
            state.login_server,
            first(&fields, "service").unwrap_or_default()
        ))
    } else if first(&fields, "tenant") != Some(state.tenant.as_str()) {
        Some(format!(
            "unknown tenant '{}'",
            first(&fields, "tenant").unwrap_or_default()
        ))
    } else if first(&fields, "access_token") != Some(state.entra_token.as_str()) {
        Some("the access token is not valid for this registry".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        state.record(
            "POST",
            "/oauth2/exchange",
            &fields,
            None,
            StatusCode::UNAUTHORIZED,
        );
        return unauthorized(&format!(
            "{problem}; visit https://aka.ms/acr/authorization"
        ));
    }
    let refresh_token = state.new_refresh_token();
    state.record("POST", "/oauth2/exchange", &fields, None, StatusCode::OK);
    Json(json!({ "refresh_token": refresh_token })).into_response()
}

/// `POST /oauth2/token`: an ACR refresh token for an access token (no `expires_in`).
async fn refresh_token_grant(State(state): State<Arc<AcrState>>, body: Bytes) -> Response {
    let fields = form(&body);
    let requested = scopes(&fields);
    let problem = if first(&fields, "grant_type") != Some("refresh_token") {
        Some("grant_type must be 'refresh_token'".to_owned())
    } else if first(&fields, "service") != Some(state.login_server.as_str()) {
        Some(format!(
            "service must be '{}', got '{}'",
            state.login_server,
            first(&fields, "service").unwrap_or_default()
        ))
    } else if !state.refresh_token_valid(first(&fields, "refresh_token").unwrap_or_default()) {
        Some("the refresh token is not valid or has expired".to_owned())
    } else if requested.is_empty() {
        Some("scope is required".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        state.record(
            "POST",
            "/oauth2/token",
            &fields,
            None,
            StatusCode::UNAUTHORIZED,
        );
        return unauthorized(&problem);
    }
    let access_token = state.minter.issue_token(Some(ENTRA_SUBJECT), &requested);
    state.record("POST", "/oauth2/token", &fields, None, StatusCode::OK);
    Json(json!({ "access_token": access_token })).into_response()
}

/// `GET /oauth2/token?service=…&scope=…` with Basic: the admin user (or a repository-scoped
/// token), or the null-GUID user with an ACR refresh token.
async fn basic_token(
    State(state): State<Arc<AcrState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let fields = form(query.unwrap_or_default().as_bytes());
    let requested = scopes(&fields);
    let basic = basic_credentials(&headers);
    let admin = lock(&state.admin).clone();
    let problem = match &basic {
        None => Some("basic credentials are required".to_owned()),
        Some((user, password)) if *user == admin.0 && *password == admin.1 => None,
        Some((user, password)) if user == NULL_GUID_USER && state.refresh_token_valid(password) => {
            None
        }
        Some((user, _)) => Some(format!("invalid credentials for '{user}'")),
    };
    let problem = problem.or_else(|| {
        (first(&fields, "service") != Some(state.login_server.as_str())).then(|| {
            format!(
                "service must be '{}', got '{}'",
                state.login_server,
                first(&fields, "service").unwrap_or_default()
            )
        })
    });
    if let Some(problem) = problem {
        state.record(
            "GET",
            "/oauth2/token",
            &fields,
            basic,
            StatusCode::UNAUTHORIZED,
        );
        return unauthorized(&problem);
    }
    let subject = match &basic {
        Some((user, _)) if user != NULL_GUID_USER => user.clone(),
        _ => ENTRA_SUBJECT.to_owned(),
    };
    let access_token = state.minter.issue_token(Some(&subject), &requested);
    state.record("GET", "/oauth2/token", &fields, basic, StatusCode::OK);
    Json(json!({ "access_token": access_token })).into_response()
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones
/// that would make the registry build URLs for another host.
fn skip_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
    )
}

/// Everything but the OAuth2 endpoints: forwarded to the backing registry over plain HTTP,
/// bodies streamed both ways.
async fn forward(State(state): State<Arc<AcrState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut upstream = state
        .client
        .request(parts.method, format!("{}{path_and_query}", state.upstream));
    for (name, value) in &parts.headers {
        if !skip_header(name) {
            upstream = upstream.header(name, value);
        }
    }
    // A known-empty body must stay absent: a streamed empty body would go out chunked, which
    // is wrong for GET and HEAD. A non-empty one streams with the client's Content-Length
    // (forwarded above, and honoured by hyper) or chunked.
    if body.size_hint().exact() != Some(0) {
        upstream = upstream.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => {
            return acr_error(
                StatusCode::BAD_GATEWAY,
                "UNAVAILABLE",
                &format!("backing registry unreachable: {e}"),
            );
        }
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if skip_header(name) {
            continue;
        }
        let value = if name == header::LOCATION {
            rewrite_location(value, &state.upstream, &state.login_server)
        } else {
            value.clone()
        };
        headers.append(name.clone(), value);
    }
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `Location` pointing at the backing registry (`http://127.0.0.1:PORT/v2/…`), rewritten to
/// `https://<login server>/v2/…`; relative and foreign locations pass unchanged.
fn rewrite_location(value: &HeaderValue, upstream: &str, login_server: &str) -> HeaderValue {
    let Some(rest) = value.to_str().ok().and_then(|v| v.strip_prefix(upstream)) else {
        return value.clone();
    };
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return value.clone();
    }
    HeaderValue::from_str(&format!("https://{login_server}{rest}"))
        .unwrap_or_else(|_| value.clone())
}

/// A fake Entra ID (AAD) v2 token endpoint, `POST /{tenant}/oauth2/v2.0/token`, on a random
/// `127.0.0.1` port (HTTP, or HTTPS with [`FakeAad::start_tls`]). Stops when dropped.
pub struct FakeAad {
    addr: SocketAddr,
    tls: bool,
    state: Arc<AadState>,
    handle: JoinHandle<()>,
}

struct AadState {
    tenant: String,
    client_id: String,
    credential: String,
    entra_token: String,
    log: Mutex<Vec<FormRequest>>,
}

impl FakeAad {
    /// Start an Entra token endpoint for `tenant` that knows one application, `client_id`,
    /// authenticated by `credential` sent either as `client_secret` or as a federated
    /// `client_assertion`, and answers `entra_token` for the [`ACR_SCOPE`].
    pub async fn start(
        tenant: &str,
        client_id: &str,
        credential: &str,
        entra_token: &str,
    ) -> FakeAad {
        let (state, router) = FakeAad::router(tenant, client_id, credential, entra_token);
        let (addr, handle) = serve(router).await;
        FakeAad {
            addr,
            tls: false,
            state,
            handle,
        }
    }

    /// Like [`FakeAad::start`], over HTTPS with `ca`'s leaf certificate (valid for
    /// `127.0.0.1`), for clients that insist on an `https` authority host.
    pub async fn start_tls(
        tenant: &str,
        client_id: &str,
        credential: &str,
        entra_token: &str,
        ca: &TestCa,
    ) -> FakeAad {
        let (state, router) = FakeAad::router(tenant, client_id, credential, entra_token);
        let (addr, handle) = serve_tls(router, ca).await;
        FakeAad {
            addr,
            tls: true,
            state,
            handle,
        }
    }

    fn router(
        tenant: &str,
        client_id: &str,
        credential: &str,
        entra_token: &str,
    ) -> (Arc<AadState>, axum::Router) {
        let state = Arc::new(AadState {
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            credential: credential.to_owned(),
            entra_token: entra_token.to_owned(),
            log: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(aad_token))
            .with_state(Arc::clone(&state));
        (state, router)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://`): the `AZURE_AUTHORITY_HOST` value.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The token endpoint, `<url>/<tenant>/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url(), self.state.tenant)
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.state.tenant
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        &self.state.client_id
    }

    /// The Entra access token it hands out.
    pub fn entra_token(&self) -> &str {
        &self.state.entra_token
    }

    /// Number of token requests (any outcome).
    pub fn requests(&self) -> usize {
        lock(&self.state.log).len()
    }

    /// Every token request, oldest first, secrets included.
    pub fn log(&self) -> Vec<FormRequest> {
        lock(&self.state.log).clone()
    }

    /// Forget the logged requests.
    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
    }
}

impl Drop for FakeAad {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for FakeAad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAad")
            .field("url", &self.url())
            .field("tenant", &self.state.tenant)
            .field("client_id", &self.state.client_id)
            .finish_non_exhaustive()
    }
}

async fn aad_token(
    State(state): State<Arc<AadState>>,
    UrlPath(tenant): UrlPath<String>,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    let field = |name: &str| first(&fields, name);
    let credential_ok = match (field("client_secret"), field("client_assertion")) {
        (Some(secret), None) => secret == state.credential,
        (None, Some(assertion)) => {
            assertion == state.credential
                && field("client_assertion_type") == Some(JWT_BEARER_ASSERTION_TYPE)
        }
        _ => false,
    };
    let problem = if tenant != state.tenant {
        Some(format!("AADSTS90002: Tenant '{tenant}' not found."))
    } else if field("grant_type") != Some("client_credentials") {
        Some("AADSTS70003: The app requested an unsupported grant type.".to_owned())
    } else if field("client_id") != Some(state.client_id.as_str()) {
        Some(format!(
            "AADSTS700016: Application with identifier '{}' was not found in the directory.",
            field("client_id").unwrap_or_default()
        ))
    } else if field("scope") != Some(ACR_SCOPE) {
        Some(format!(
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid: '{}'.",
            field("scope").unwrap_or_default()
        ))
    } else if !credential_ok {
        Some("AADSTS7000215: Invalid client secret or assertion provided.".to_owned())
    } else {
        None
    };
    let path = format!("/{tenant}/oauth2/v2.0/token");
    let record = |status: StatusCode| {
        lock(&state.log).push(FormRequest {
            method: "POST".to_owned(),
            path: path.clone(),
            fields: fields.clone(),
            basic: None,
            status: status.as_u16(),
        });
    };
    if let Some(problem) = problem {
        record(StatusCode::UNAUTHORIZED);
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": problem})),
        )
            .into_response();
    }
    record(StatusCode::OK);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": AAD_EXPIRES_IN,
        "ext_expires_in": AAD_EXPIRES_IN,
        "access_token": state.entra_token,
    }))
    .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64::decode(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn form(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

fn first<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn scopes(fields: &[(String, String)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_pointing_at_the_registry_are_rewritten() {
        let upstream = "http://127.0.0.1:5000";
        let cases = [
            (
                "http://127.0.0.1:5000/v2/app/blobs/uploads/u?_state=x",
                "https://myreg.azurecr.io/v2/app/blobs/uploads/u?_state=x",
            ),
            ("/v2/app/blobs/uploads/u", "/v2/app/blobs/uploads/u"),
            ("http://127.0.0.1:50001/v2/", "http://127.0.0.1:50001/v2/"),
            (
                "https://storage.example/blob?sig=1",
                "https://storage.example/blob?sig=1",
            ),
        ];
        for (from, to) in cases {
            let rewritten = rewrite_location(
                &HeaderValue::from_static(from),
                upstream,
                "myreg.azurecr.io",
            );
            assert_eq!(rewritten, to, "{from}");
        }
    }

    #[test]
    fn unsigned_jwt_carries_the_claims() {
        let token = unsigned_jwt(&json!({"exp": 42, "aud": "myreg.azurecr.io"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&base64::decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["exp"], 42);
        assert_eq!(claims["aud"], "myreg.azurecr.io");
        assert!(!token.contains('='));
    }

    #[test]
    fn basic_credentials_and_scopes_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("basic {}", base64::encode(b"me:p:w"))).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("me".to_owned(), "p:w".to_owned()))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&headers), None);
        let fields =
            form(b"scope=repository%3Aa%3Apull+repository%3Ab%3Apush&scope=registry%3Acatalog%3A*");
        assert_eq!(
            scopes(&fields),
            [
                "repository:a:pull",
                "repository:b:push",
                "registry:catalog:*"
            ]
        );
    }
}
