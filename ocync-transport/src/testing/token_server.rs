//! An in-process Docker token server (distribution `docs/spec/auth/token.md` and `oauth.md`)
//! for a registry configured with `auth.token`.
//!
//! It signs RS256 JWTs whose header carries the signing certificate in `x5c`; the registry
//! trusts them because the same self-signed certificate is its `rootcertbundle`
//! ([`TokenServer::cert_pem`]). One user (normally `alice`) is granted every action it asks
//! for; anonymous requests get only `pull` on repositories. Every request is logged so tests
//! can count token fetches per scope.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::base64;

/// The default `service` the token server and the registry agree on (`auth.token.service`,
/// the JWT `aud`); [`TokenServer::start_for`] picks another.
pub const SERVICE: &str = "test-registry";

/// The JWT `iss` the registry expects (`auth.token.issuer`).
pub const ISSUER: &str = "test-issuer";

/// Default token lifetime in seconds (`expires_in` and `exp - iat`).
pub const DEFAULT_EXPIRES_IN: u64 = 300;

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` (Docker token) or `POST` (OAuth2 form).
    pub method: String,
    /// The requested scopes, one entry per resource scope (`repository:src/app:pull,push`).
    pub scopes: Vec<String>,
    /// The user the request authenticated as (or tried to); `None` for anonymous.
    pub user: Option<String>,
    /// The OAuth2 `grant_type` of a POST.
    pub grant_type: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// A running token server on a random `127.0.0.1` port. Stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    handle: JoinHandle<()>,
}

struct Inner {
    key: &'static SigningKey,
    service: String,
    username: String,
    password: String,
    expires_in: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
    refresh_tokens: Mutex<HashMap<String, String>>,
}

struct SigningKey {
    pair: RsaKeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
}

/// The RSA key is generated once per test process: 2048-bit generation is the slow part of
/// starting a token server, and nothing depends on keys differing between servers.
fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("generate the token signing key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("token cert params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ocync test token signer");
        let cert = params
            .self_signed(&key)
            .expect("self-sign the token certificate");
        let pair = RsaKeyPair::from_pkcs8(key.serialized_der()).expect("rcgen rsa key is pkcs8");
        SigningKey {
            pair,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
        }
    })
}

impl TokenServer {
    /// Start a token server for [`SERVICE`] that knows one user, `username` with `password`.
    pub async fn start(username: &str, password: &str) -> TokenServer {
        TokenServer::start_for(SERVICE, username, password).await
    }

    /// Start a token server for `service` (the JWT `aud`, and the only `service` parameter
    /// its endpoints accept), e.g. `myreg.azurecr.io` for a registry configured with that
    /// `auth.token.service`. It knows one user, `username` with `password`.
    pub async fn start_for(service: &str, username: &str, password: &str) -> TokenServer {
        let inner = Arc::new(Inner {
            key: signing_key(),
            service: service.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            expires_in: AtomicU64::new(DEFAULT_EXPIRES_IN),
            log: Mutex::new(Vec::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
        });
        let router = axum::Router::new()
            .route("/token", get(get_token).post(post_token))
            .with_state(Arc::clone(&inner));
        let (addr, handle) = super::tls::serve(router).await;
        TokenServer {
            addr,
            inner,
            handle,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token` (the registry's `auth.token.realm`).
    pub fn realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The service name: [`SERVICE`] unless started with [`TokenServer::start_for`].
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The issuer ([`ISSUER`]).
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The user this server authenticates.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.inner.password
    }

    /// The self-signed certificate that signs tokens, PEM: the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &str {
        &self.inner.key.cert_pem
    }

    /// Lifetime of tokens issued from now on, in seconds.
    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Current token lifetime in seconds.
    pub fn expires_in(&self) -> u64 {
        self.inner.expires_in.load(Ordering::SeqCst)
    }

    /// Number of token requests answered (any method, any outcome).
    pub fn requests(&self) -> usize {
        self.inner.log().len()
    }

    /// Number of token requests that asked for exactly `scope` among their scopes.
    pub fn requests_with_scope(&self, scope: &str) -> usize {
        self.inner
            .log()
            .iter()
            .filter(|r| r.scopes.iter().any(|s| s == scope))
            .count()
    }

    /// Every request answered so far, oldest first.
    pub fn log(&self) -> Vec<TokenRequest> {
        self.inner.log().clone()
    }

    /// Forget the logged requests (counters restart at zero).
    pub fn clear_log(&self) {
        self.inner.log().clear();
    }

    /// Mint a token directly, with the same grant rules as the endpoint: `user` `None` is
    /// anonymous. Not logged.
    pub fn issue_token(&self, user: Option<&str>, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.inner.jwt(user, &scopes)
    }

    /// A cheap handle that mints tokens like [`TokenServer::issue_token`], for in-process
    /// fakes (the ACR login server) that hand out this server's tokens from their own
    /// endpoints.
    pub(crate) fn minter(&self) -> Minter {
        Minter(Arc::clone(&self.inner))
    }
}

/// See [`TokenServer::minter`].
#[derive(Clone)]
pub(crate) struct Minter(Arc<Inner>);

impl Minter {
    /// A signed token granting `user` (`None`: anonymous) what it may have of `scopes`.
    pub(crate) fn issue_token(&self, user: Option<&str>, scopes: &[String]) -> String {
        self.0.jwt(user, scopes)
    }
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("service", &self.0.service)
            .finish_non_exhaustive()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .field("service", &self.inner.service)
            .field("username", &self.inner.username)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn log(&self) -> std::sync::MutexGuard<'_, Vec<TokenRequest>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        method: &str,
        scopes: &[String],
        user: Option<&str>,
        grant: Option<&str>,
        status: StatusCode,
    ) {
        self.log().push(TokenRequest {
            method: method.to_owned(),
            scopes: scopes.to_vec(),
            user: user.map(str::to_owned),
            grant_type: grant.map(str::to_owned),
            status: status.as_u16(),
        });
    }

    fn check_password(&self, username: &str, password: &str) -> bool {
        username == self.username && password == self.password
    }

    fn new_refresh_token(&self, username: &str) -> String {
        let token = random_hex(24);
        self.refresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), username.to_owned());
        token
    }

    fn refresh_token_user(&self, token: &str) -> Option<String> {
        self.refresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// A signed RS256 JWT granting `user` (None: anonymous) what it may have of `scopes`.
    fn jwt(&self, user: Option<&str>, scopes: &[String]) -> String {
        let now = unix_now();
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|s| grant(user.is_some(), s))
            .collect();
        let header = json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64::encode(&self.key.cert_der)],
        });
        let claims = json!({
            "iss": ISSUER,
            "sub": user.unwrap_or(""),
            "aud": self.service,
            "exp": now + self.expires_in.load(Ordering::SeqCst),
            "nbf": now,
            "iat": now,
            "jti": random_hex(16),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64::encode_url(header.to_string().as_bytes()),
            base64::encode_url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.pair.public_modulus_len()];
        self.key
            .pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("rs256 signing");
        format!("{signing_input}.{}", base64::encode_url(&signature))
    }
}

/// The access entry granted for one requested scope, or `None` when nothing is granted.
///
/// Scope grammar (distribution `scope.md`): `type[(class)]:name:actions`, where the name may
/// contain a `:` (a registry host with a port), so the type ends at the first `:` and the
/// actions start after the last.
fn grant(authenticated: bool, scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split('(').next().unwrap_or(kind);
    let actions: Vec<&str> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .filter(|a| authenticated || (kind == "repository" && *a == "pull"))
        .collect();
    if actions.is_empty() {
        return None;
    }
    Some(json!({"type": kind, "name": name, "actions": actions}))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]})),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

enum Caller {
    Anonymous,
    User(String),
    BadCredentials(Option<String>),
}

fn caller(inner: &Inner, headers: &HeaderMap) -> Caller {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Caller::Anonymous;
    };
    let decoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(base64::decode)
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Caller::BadCredentials(None);
    };
    if inner.check_password(user, password) {
        Caller::User(user.to_owned())
    } else {
        Caller::BadCredentials(Some(user.to_owned()))
    }
}

fn form(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn get_token(
    State(inner): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = form(query.unwrap_or_default().as_bytes());
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
        .collect();
    let user = match caller(&inner, &headers) {
        Caller::Anonymous => None,
        Caller::User(user) => Some(user),
        Caller::BadCredentials(user) => {
            inner.record(
                "GET",
                &scopes,
                user.as_deref(),
                None,
                StatusCode::UNAUTHORIZED,
            );
            return unauthorized();
        }
    };
    if let Some(service) = first(&pairs, "service").filter(|s| *s != inner.service) {
        inner.record(
            "GET",
            &scopes,
            user.as_deref(),
            None,
            StatusCode::BAD_REQUEST,
        );
        let message = format!("unknown service '{service}'");
        let body = json!({"errors": [{"code": "INVALID_REQUEST", "message": message}]});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let token = inner.jwt(user.as_deref(), &scopes);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": inner.expires_in.load(Ordering::SeqCst),
        "issued_at": rfc3339(unix_now()),
    });
    if let Some(user) = &user
        && first(&pairs, "offline_token") == Some("true")
    {
        body["refresh_token"] = Value::String(inner.new_refresh_token(user));
    }
    inner.record("GET", &scopes, user.as_deref(), None, StatusCode::OK);
    (StatusCode::OK, Json(body)).into_response()
}

async fn post_token(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let pairs = form(&body);
    let scope_value = first(&pairs, "scope").unwrap_or_default().to_owned();
    let scopes: Vec<String> = scope_value.split_whitespace().map(str::to_owned).collect();
    let grant_type = first(&pairs, "grant_type").map(str::to_owned);
    let bad = |status: StatusCode, user: Option<&str>, error: &str, description: &str| {
        inner.record("POST", &scopes, user, grant_type.as_deref(), status);
        oauth_error(status, error, description)
    };
    if first(&pairs, "client_id").is_none_or(str::is_empty) {
        return bad(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_request",
            "client_id is required",
        );
    }
    if let Some(service) = first(&pairs, "service").filter(|s| *s != inner.service) {
        let description = format!("unknown service '{service}'");
        return bad(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_request",
            &description,
        );
    }
    let (user, refresh_token) = match grant_type.as_deref() {
        Some("password") => {
            let (Some(username), Some(password)) =
                (first(&pairs, "username"), first(&pairs, "password"))
            else {
                return bad(
                    StatusCode::BAD_REQUEST,
                    None,
                    "invalid_request",
                    "username and password are required",
                );
            };
            if !inner.check_password(username, password) {
                inner.record(
                    "POST",
                    &scopes,
                    Some(username),
                    grant_type.as_deref(),
                    StatusCode::UNAUTHORIZED,
                );
                return unauthorized();
            }
            let refresh = (first(&pairs, "access_type") == Some("offline"))
                .then(|| inner.new_refresh_token(username));
            (username.to_owned(), refresh)
        }
        Some("refresh_token") => {
            let presented = first(&pairs, "refresh_token").unwrap_or_default();
            let Some(user) = inner.refresh_token_user(presented) else {
                inner.record(
                    "POST",
                    &scopes,
                    None,
                    grant_type.as_deref(),
                    StatusCode::UNAUTHORIZED,
                );
                return unauthorized();
            };
            (user, Some(presented.to_owned()))
        }
        Some(other) => {
            let description = format!("unsupported grant_type '{other}'");
            return bad(
                StatusCode::BAD_REQUEST,
                None,
                "unsupported_grant_type",
                &description,
            );
        }
        None => {
            return bad(
                StatusCode::BAD_REQUEST,
                None,
                "invalid_request",
                "grant_type is required",
            );
        }
    };
    let mut body = json!({
        "access_token": inner.jwt(Some(&user), &scopes),
        "scope": scope_value,
        "expires_in": inner.expires_in.load(Ordering::SeqCst),
        "issued_at": rfc3339(unix_now()),
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = Value::String(refresh);
    }
    inner.record(
        "POST",
        &scopes,
        Some(&user),
        grant_type.as_deref(),
        StatusCode::OK,
    );
    (StatusCode::OK, Json(body)).into_response()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `secs` since the epoch as an RFC 3339 UTC timestamp (`2026-11-23T10:00:00Z`).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    fn segment(token: &str, i: usize) -> Value {
        let part = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&base64::decode(part).unwrap()).unwrap()
    }

    fn access(token: &str) -> Value {
        segment(token, 1)["access"].clone()
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn grant_rules() {
        let full = grant(true, "repository:localhost:5000/src/app:pull,push").unwrap();
        assert_eq!(
            full,
            json!({"type":"repository","name":"localhost:5000/src/app","actions":["pull","push"]})
        );
        let anon = grant(false, "repository:src/app:push,pull").unwrap();
        assert_eq!(anon["actions"], json!(["pull"]));
        assert!(grant(false, "repository:src/app:push").is_none());
        assert!(grant(false, "registry:catalog:*").is_none());
        assert_eq!(
            grant(true, "registry:catalog:*").unwrap()["actions"],
            json!(["*"])
        );
        assert_eq!(
            grant(true, "repository(plugin):p:pull").unwrap()["type"],
            "repository"
        );
        assert!(grant(true, "nonsense").is_none());
    }

    #[tokio::test]
    async fn jwt_has_the_registry_header_claims_and_a_valid_signature() {
        let server = TokenServer::start("alice", "pw").await;
        server.set_expires_in(120);
        let token = server.issue_token(Some("alice"), &["repository:a/b:pull,push"]);
        let header = segment(&token, 0);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        let x5c = base64::decode(header["x5c"][0].as_str().unwrap()).unwrap();
        assert_eq!(x5c, signing_key().cert_der);
        let claims = segment(&token, 1);
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], SERVICE);
        assert_eq!(claims["sub"], "alice");
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 120);
        assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
        assert!(!claims["jti"].as_str().unwrap().is_empty());
        assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));

        let (input, sig) = token.rsplit_once('.').unwrap();
        let public = signing_key().pair.public_key().as_ref().to_vec();
        let verifier = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public);
        verifier
            .verify(input.as_bytes(), &base64::decode(sig).unwrap())
            .unwrap();
        let mut tampered = base64::decode(sig).unwrap();
        tampered[0] ^= 1;
        assert!(verifier.verify(input.as_bytes(), &tampered).is_err());
    }

    #[tokio::test]
    async fn a_server_for_another_service_signs_for_it_and_refuses_the_default() {
        let server = TokenServer::start_for("myreg.azurecr.io", "alice", "pw").await;
        assert_eq!(server.service(), "myreg.azurecr.io");
        let token = server.issue_token(Some("alice"), &["repository:a:pull"]);
        assert_eq!(segment(&token, 1)["aud"], "myreg.azurecr.io");
        let minted = server
            .minter()
            .issue_token(None, &["repository:a:pull".to_owned()]);
        assert_eq!(segment(&minted, 1)["aud"], "myreg.azurecr.io");
        let client = super::super::tls::plain_client();
        let ok = client
            .get(server.realm())
            .query(&[("service", "myreg.azurecr.io")])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let refused = client
            .get(server.realm())
            .query(&[("service", SERVICE)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
    }

    #[tokio::test]
    async fn get_endpoint_grants_by_identity_and_logs_requests() {
        let server = TokenServer::start("alice", "secret").await;
        let client = super::super::tls::plain_client();
        let scopes = [
            ("service", SERVICE),
            ("scope", "repository:a/b:pull,push"),
            ("scope", "registry:catalog:*"),
        ];

        let anon: Value = client
            .get(server.realm())
            .query(&scopes)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            access(anon["token"].as_str().unwrap()),
            json!([{"type":"repository","name":"a/b","actions":["pull"]}])
        );
        assert_eq!(anon["token"], anon["access_token"]);
        assert_eq!(anon["expires_in"], DEFAULT_EXPIRES_IN);
        assert!(anon["issued_at"].as_str().unwrap().ends_with('Z'));
        assert!(anon.get("refresh_token").is_none());

        let resp = client
            .get(server.realm())
            .query(&scopes)
            .query(&[("offline_token", "true")])
            .basic_auth("alice", Some("secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let authed: Value = resp.json().await.unwrap();
        let granted = access(authed["access_token"].as_str().unwrap());
        assert_eq!(granted[0]["actions"], json!(["pull", "push"]));
        assert_eq!(
            granted[1],
            json!({"type":"registry","name":"catalog","actions":["*"]})
        );
        assert!(authed["refresh_token"].is_string());

        let resp = client
            .get(server.realm())
            .query(&scopes)
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
        assert_eq!(body["errors"][0]["message"], "authentication failed");

        let resp = client
            .get(server.realm())
            .query(&[("service", "other")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        assert_eq!(server.requests(), 4);
        assert_eq!(server.requests_with_scope("registry:catalog:*"), 3);
        assert_eq!(server.requests_with_scope("repository:a/b:pull"), 0);
        let log = server.log();
        assert_eq!(log[0].user, None);
        assert_eq!(log[1].user.as_deref(), Some("alice"));
        assert_eq!(
            (log[2].user.as_deref(), log[2].status),
            (Some("alice"), 401)
        );
        server.clear_log();
        assert_eq!(server.requests(), 0);
    }

    #[tokio::test]
    async fn post_endpoint_password_and_refresh_grants() {
        let server = TokenServer::start("alice", "secret").await;
        let client = super::super::tls::plain_client();
        let scope = "repository:a/b:pull,push repository:c/d:pull";

        let resp = client
            .post(server.realm())
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "secret"),
                ("service", SERVICE),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "client_id is required");

        let body: Value = client
            .post(server.realm())
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "secret"),
                ("service", SERVICE),
                ("client_id", "ocync"),
                ("access_type", "offline"),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let granted = access(body["access_token"].as_str().unwrap());
        assert_eq!(
            granted.as_array().unwrap().len(),
            2,
            "one scope value holds two scopes"
        );
        assert!(body.get("token").is_none());
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();

        let body: Value = client
            .post(server.realm())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", SERVICE),
                ("client_id", "ocync"),
                ("scope", "repository:a/b:pull"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let claims = segment(body["access_token"].as_str().unwrap(), 1);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["access"][0]["name"], "a/b");

        for form in [
            vec![("grant_type", "refresh_token"), ("refresh_token", "forged")],
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "nope"),
            ],
        ] {
            let resp = client
                .post(server.realm())
                .form(&[form, vec![("client_id", "ocync"), ("service", SERVICE)]].concat())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401);
        }
        let resp = client
            .post(server.realm())
            .form(&[("grant_type", "client_credentials"), ("client_id", "ocync")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        let log = server.log();
        assert_eq!(log.len(), 6);
        assert_eq!(log[1].grant_type.as_deref(), Some("password"));
        assert_eq!(log[1].scopes.len(), 2);
        assert_eq!(log[2].grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(log[2].user.as_deref(), Some("alice"));
        // The rejected request without client_id asked for it too.
        assert_eq!(server.requests_with_scope("repository:c/d:pull"), 2);
    }
}
