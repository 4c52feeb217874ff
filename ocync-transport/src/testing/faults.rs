//! A fake registry with scripted faults, for retry tests: an in-process HTTP server on a random
//! `127.0.0.1` port that implements just enough of the distribution API to accept blob uploads
//! (monolithic and chunked), serve blobs, and store manifests in memory, and that misbehaves on
//! cue: an error status (with or without `Retry-After`), a connection cut mid-body, a slow
//! download, or a cap on request bodies like Azure Container Registry's.
//!
//! axum handles the protocol; a connection is cut by dropping hyper's connection future, which
//! a handler triggers through a per-connection [`Notify`]. A download is cut by a body stream
//! that fails after the scripted number of bytes, which makes hyper abort the connection with
//! the promised `Content-Length` unmet.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, RANGE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use ocync_core::Digest;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const CONTENT_RANGE: &str = "content-range";

/// Media type stored for a manifest pushed without `Content-Type`.
const DEFAULT_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One scripted misbehaviour.
///
/// `method` is compared case-insensitively (empty matches every method) and `path_contains` is
/// looked for in the request's path and query (`/v2/app/blobs/uploads/upload-1?digest=…`).
/// Every request takes the first fault of the script that matches it and still has `times`
/// left, so faults for the same requests apply in script order, one request each.
/// [`Fault::MaxBody`] is not consumed: it holds for the server's whole lifetime and applies to
/// requests that no other fault took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with an OCI error body (code `TOOMANYREQUESTS` for 429, else `UNKNOWN`)
    /// after reading the whole request body, so the client sees the status rather than a
    /// broken pipe.
    Status {
        /// The method to match.
        method: String,
        /// A substring of the path and query to match.
        path_contains: String,
        /// The status to answer.
        status: u16,
        /// The raw `Retry-After` value to send (`"2"` or an HTTP date), if any.
        retry_after: Option<String>,
        /// How many matching requests get this answer.
        times: usize,
    },
    /// Cut the connection after `bytes` bytes of the body. A `GET` response is sent with its
    /// full `Content-Length` and cut after `bytes` bytes; a request with a body (`PUT`,
    /// `PATCH`, `POST`) has `bytes` of its body read and then gets no answer at all.
    ResetAfter {
        /// The method to match.
        method: String,
        /// A substring of the path and query to match.
        path_contains: String,
        /// How many body bytes get through before the cut.
        bytes: usize,
        /// How many matching requests are cut.
        times: usize,
    },
    /// Stream a `GET` response body at `bytes_per_sec`.
    SlowBody {
        /// The method to match (normally `GET`).
        method: String,
        /// A substring of the path and query to match.
        path_contains: String,
        /// The pace of the body.
        bytes_per_sec: u64,
        /// How many matching requests are slowed.
        times: usize,
    },
    /// Answer `413 Payload Too Large` to every `PUT` or `PATCH` whose body exceeds `bytes`:
    /// at once when `Content-Length` says so, else after reading `bytes + 1` bytes. Like ACR's
    /// cap on a single request body, it is never used up.
    MaxBody {
        /// The largest body accepted.
        bytes: u64,
    },
}

impl Fault {
    /// Answer `status` once to requests matching `method` and `path_contains`.
    pub fn status(
        method: impl Into<String>,
        path_contains: impl Into<String>,
        status: u16,
    ) -> Fault {
        Fault::Status {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            retry_after: None,
            times: 1,
        }
    }

    /// Cut one matching request or response after `bytes` body bytes.
    pub fn reset_after(
        method: impl Into<String>,
        path_contains: impl Into<String>,
        bytes: usize,
    ) -> Fault {
        Fault::ResetAfter {
            method: method.into(),
            path_contains: path_contains.into(),
            bytes,
            times: 1,
        }
    }

    /// Stream one matching response body at `bytes_per_sec`.
    pub fn slow_body(
        method: impl Into<String>,
        path_contains: impl Into<String>,
        bytes_per_sec: u64,
    ) -> Fault {
        Fault::SlowBody {
            method: method.into(),
            path_contains: path_contains.into(),
            bytes_per_sec,
            times: 1,
        }
    }

    /// Refuse `PUT` and `PATCH` bodies larger than `bytes` for the server's lifetime.
    pub fn max_body(bytes: u64) -> Fault {
        Fault::MaxBody { bytes }
    }

    /// Apply to `n` matching requests instead of one (no effect on [`Fault::MaxBody`]).
    pub fn times(mut self, n: usize) -> Fault {
        match &mut self {
            Fault::Status { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::SlowBody { times, .. } => *times = n,
            Fault::MaxBody { .. } => {}
        }
        self
    }

    /// Send `Retry-After: value` with a [`Fault::Status`] answer (no effect on other faults).
    pub fn retry_after(mut self, value: impl Into<String>) -> Fault {
        if let Fault::Status { retry_after, .. } = &mut self {
            *retry_after = Some(value.into());
        }
        self
    }

    /// A short name for logs: `status`, `reset_after`, `slow_body` or `max_body`.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::ResetAfter { .. } => "reset_after",
            Fault::SlowBody { .. } => "slow_body",
            Fault::MaxBody { .. } => "max_body",
        }
    }

    /// Whether this (consumable) fault applies to a request, and how often it still will.
    fn matches(&self, method: &Method, target: &str) -> bool {
        let (wanted, path_contains, times) = match self {
            Fault::Status {
                method,
                path_contains,
                times,
                ..
            }
            | Fault::ResetAfter {
                method,
                path_contains,
                times,
                ..
            }
            | Fault::SlowBody {
                method,
                path_contains,
                times,
                ..
            } => (method, path_contains, *times),
            Fault::MaxBody { .. } => return false,
        };
        times > 0
            && (wanted.is_empty() || wanted.eq_ignore_ascii_case(method.as_str()))
            && target.contains(path_contains.as_str())
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// The status answered, or `0` when the connection was cut before any answer.
    pub status: u16,
    /// Request body bytes read.
    pub body_bytes: u64,
    /// The [`Fault::name`] of the fault applied to this request, if any.
    pub fault: Option<&'static str>,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
}

impl fmt::Display for FaultRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        write!(f, " {}", self.status)?;
        if let Some(fault) = self.fault {
            write!(f, " ({fault})")?;
        }
        Ok(())
    }
}

/// A running fault-injecting registry. Dropping it stops accepting and closes every open
/// connection.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    script: Vec<Fault>,
    max_body: Option<u64>,
    blobs: HashMap<String, Bytes>,
    /// `(repository, tag or digest)` → (content type, bytes).
    manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, Vec<u8>>,
    next_upload: u64,
    requests: Vec<FaultRequest>,
    max_request_body: u64,
    deleted_sessions: Vec<String>,
    /// Answer blob `GET`s with the whole blob whatever their `Range` says.
    ignore_ranges: bool,
}

/// The state a handler sees: the server's, and a way to cut its own connection.
#[derive(Clone)]
struct Conn {
    shared: Arc<Shared>,
    cut: Arc<Notify>,
}

impl FaultServer {
    /// Start a server that plays `script` (see [`Fault`] for how faults are matched).
    pub async fn start(script: Vec<Fault>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random 127.0.0.1 port");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(Store::default()),
        });
        for fault in script {
            shared.add(fault);
        }
        let accept_shared = Arc::clone(&shared);
        let handle = tokio::spawn(async move {
            // Connections live in this set so that aborting the accept task (on drop) closes
            // them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let conn = Conn {
                    shared: Arc::clone(&accept_shared),
                    cut: Arc::new(Notify::new()),
                };
                connections.spawn(async move {
                    let cut = Arc::clone(&conn.cut);
                    let service = TowerToHyperService::new(serve_request.with_state(conn));
                    let builder = Builder::new(TokioExecutor::new());
                    let serve = builder.serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection future closes the socket: that is the cut.
                    tokio::select! {
                        _ = serve => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        FaultServer {
            addr,
            shared,
            handle,
        }
    }

    /// Append `fault` to the script.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.add(fault);
    }

    /// The scripted faults not used up yet ([`Fault::MaxBody`] is not listed), with their
    /// remaining `times`.
    pub fn remaining_faults(&self) -> Vec<Fault> {
        self.shared.lock().script.clone()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received, oldest first (a request appears once it was answered or cut).
    pub fn requests(&self) -> Vec<FaultRequest> {
        self.shared.lock().requests.clone()
    }

    /// Number of requests with `method` (case-insensitive) whose path and query contain
    /// `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method))
            .filter(|r| {
                let target = match &r.query {
                    Some(q) => format!("{}?{q}", r.path),
                    None => r.path.clone(),
                };
                target.contains(path_contains)
            })
            .count()
    }

    /// Forget the logged requests (stored content and the script stay).
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// The blob stored under `digest` (`sha256:<hex>`), if an upload completed or
    /// [`FaultServer::insert_blob`] put it there.
    pub fn stored_blob(&self, digest: impl fmt::Display) -> Option<Bytes> {
        self.shared.lock().blobs.get(&digest.to_string()).cloned()
    }

    /// The manifest bytes stored in `repository` under `reference` (a tag or a digest).
    pub fn stored_manifest(&self, repository: &str, reference: &str) -> Option<Bytes> {
        self.shared
            .lock()
            .manifests
            .get(&(repository.to_owned(), reference.to_owned()))
            .map(|(_, bytes)| bytes.clone())
    }

    /// Store `bytes` as a blob (served from every repository) and return its digest.
    pub fn insert_blob(&self, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let digest = Digest::sha256(&bytes);
        self.shared.lock().blobs.insert(digest.to_string(), bytes);
        digest
    }

    /// The largest request body read from a single request, in bytes: proves a client split
    /// an upload into chunks.
    pub fn max_request_body(&self) -> u64 {
        self.shared.lock().max_request_body
    }

    /// Answer every blob `GET` with the whole blob (`200`), ignoring `Range`, as some
    /// registries and storage hosts do.
    pub fn ignore_ranges(&self) {
        self.shared.lock().ignore_ranges = true;
    }

    /// The ids of the upload sessions deleted with `DELETE`, oldest first.
    pub fn deleted_sessions(&self) -> Vec<String> {
        self.shared.lock().deleted_sessions.clone()
    }

    /// The ids of the upload sessions still open.
    pub fn open_sessions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.lock().uploads.keys().cloned().collect();
        ids.sort();
        ids
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for FaultServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.shared.lock();
        f.debug_struct("FaultServer")
            .field("addr", &self.addr)
            .field("script", &store.script)
            .field("max_body", &store.max_body)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, fault: Fault) {
        let mut store = self.lock();
        match fault {
            Fault::MaxBody { bytes } => store.max_body = Some(bytes),
            other => store.script.push(other),
        }
    }

    /// Take one use of the first scripted fault matching the request.
    fn take_fault(&self, method: &Method, target: &str) -> Option<Fault> {
        let mut store = self.lock();
        let index = store
            .script
            .iter()
            .position(|f| f.matches(method, target))?;
        let taken = store.script[index].clone();
        let left = match &mut store.script[index] {
            Fault::Status { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::SlowBody { times, .. } => {
                *times -= 1;
                *times
            }
            Fault::MaxBody { .. } => 1,
        };
        if left == 0 {
            store.script.remove(index);
        }
        Some(taken)
    }

    fn record(
        &self,
        request: &Incoming,
        status: u16,
        body_bytes: u64,
        fault: Option<&'static str>,
    ) {
        let mut store = self.lock();
        store.max_request_body = store.max_request_body.max(body_bytes);
        store.requests.push(FaultRequest {
            method: request.method.to_string(),
            path: request.path.clone(),
            query: request.query.clone(),
            status,
            body_bytes,
            fault,
            range: request.header(RANGE).map(str::to_owned),
        });
    }
}

/// The parts of a request the fake registry looks at.
struct Incoming {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Incoming {
    fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn header(&self, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content_length(&self) -> Option<u64> {
        self.header(CONTENT_LENGTH).and_then(|v| v.parse().ok())
    }

    fn has_body(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD | Method::DELETE)
    }
}

async fn serve_request(State(conn): State<Conn>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let incoming = Incoming {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
    };
    let mut body = body.into_data_stream();
    let shared = &conn.shared;
    let fault = shared.take_fault(&incoming.method, &incoming.target());
    let fault_name = fault.as_ref().map(Fault::name);

    match &fault {
        Some(Fault::Status {
            status,
            retry_after,
            ..
        }) => {
            let read = read_body(&mut body, None).await;
            let response = status_fault(*status, retry_after.as_deref());
            shared.record(&incoming, *status, read.len, fault_name);
            return response;
        }
        Some(Fault::ResetAfter { bytes, .. }) if incoming.has_body() => {
            let read = read_body(&mut body, Some(*bytes as u64)).await;
            shared.record(&incoming, 0, read.len, fault_name);
            conn.cut.notify_one();
            // The connection task drops this future together with the connection.
            return std::future::pending().await;
        }
        _ => {}
    }

    let max_body = shared.lock().max_body;
    let capped = max_body.filter(|_| matches!(incoming.method, Method::PUT | Method::PATCH));
    if let Some(max) = capped
        && incoming.content_length().is_some_and(|len| len > max)
    {
        // Refuse at once, as ACR does, but keep reading in the background so that the client
        // sees the 413 instead of a reset while it is still sending.
        tokio::spawn(async move { read_body(&mut body, None).await });
        shared.record(&incoming, 413, 0, Some("max_body"));
        return too_large(max);
    }
    let read = read_body(&mut body, capped.map(|max| max + 1)).await;
    if let Some(max) = capped
        && read.len > max
    {
        tokio::spawn(async move { read_body(&mut body, None).await });
        shared.record(&incoming, 413, read.len, Some("max_body"));
        return too_large(max);
    }
    if let Some(error) = read.error {
        // The client went away mid-body: nobody will read an answer.
        shared.record(&incoming, 0, read.len, fault_name);
        return plain(StatusCode::BAD_REQUEST, error);
    }

    let mut response = shared.route(&incoming, Bytes::from(read.bytes));
    let status = response.status().as_u16();
    let body_len = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if incoming.method == Method::GET && body_len > 0 {
        match &fault {
            Some(Fault::ResetAfter { bytes, .. }) => {
                let full = body_bytes(response.body_mut()).await;
                let cut = full.slice(..(*bytes).min(full.len()));
                *response.body_mut() = cut_body(cut);
            }
            Some(Fault::SlowBody { bytes_per_sec, .. }) => {
                let full = body_bytes(response.body_mut()).await;
                *response.body_mut() = slow_body(full, *bytes_per_sec);
            }
            _ => {}
        }
    }
    shared.record(&incoming, status, read.len, fault_name);
    response
}

/// What [`read_body`] got.
struct BodyRead {
    bytes: Vec<u8>,
    len: u64,
    error: Option<String>,
}

/// Read the body until its end or until at least `stop_at` bytes arrived.
async fn read_body(
    body: &mut (impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    stop_at: Option<u64>,
) -> BodyRead {
    let mut read = BodyRead {
        bytes: Vec::new(),
        len: 0,
        error: None,
    };
    while stop_at.is_none_or(|stop| read.len < stop) {
        match body.next().await {
            None => break,
            Some(Ok(chunk)) => {
                read.len += chunk.len() as u64;
                read.bytes.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                read.error = Some(format!("cannot read the request body: {e}"));
                break;
            }
        }
    }
    read
}

impl Shared {
    /// The registry itself: the distribution API subset, on the stored state.
    fn route(&self, request: &Incoming, body: Bytes) -> Response {
        let Some(rest) = request.path.strip_prefix("/v2/") else {
            return oci_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "not a /v2/ path");
        };
        if rest.is_empty() {
            return json(StatusCode::OK, "{}");
        }
        let base = match request.header(HOST) {
            Some(host) => format!("http://{host}"),
            None => format!("http://{}", self.addr),
        };
        let method = &request.method;
        if let Some((repo, id)) = rest.rsplit_once("/blobs/uploads/") {
            if id.is_empty() && *method == Method::POST {
                return self.start_upload(request, repo, &base, body);
            }
            if id.is_empty() || id.contains('/') {
                return oci_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "bad upload path");
            }
            return match *method {
                Method::PATCH => self.patch_upload(request, repo, id, &base, &body),
                Method::PUT => self.finish_upload(request, repo, id, &base, &body),
                Method::GET => self.upload_status(repo, id, &base),
                Method::DELETE => self.delete_upload(id),
                _ => method_not_allowed(),
            };
        }
        if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
            return match *method {
                Method::GET | Method::HEAD => self.get_blob(request, digest),
                _ => method_not_allowed(),
            };
        }
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return match *method {
                Method::GET | Method::HEAD => self.get_manifest(request, repo, reference),
                Method::PUT => self.put_manifest(request, repo, reference, &base, body),
                _ => method_not_allowed(),
            };
        }
        oci_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "unknown endpoint")
    }

    fn start_upload(&self, request: &Incoming, repo: &str, base: &str, body: Bytes) -> Response {
        // A single-POST monolithic upload.
        if let Some(digest) = request.query_param("digest") {
            return self.store_blob(repo, &digest, base, body);
        }
        // `?mount=` is answered like a plain POST: a new session, as registries do when they
        // cannot mount.
        let mut store = self.lock();
        store.next_upload += 1;
        let id = format!("upload-{}", store.next_upload);
        store.uploads.insert(id.clone(), Vec::new());
        upload_accepted(StatusCode::ACCEPTED, repo, &id, base, 0)
    }

    fn patch_upload(
        &self,
        request: &Incoming,
        repo: &str,
        id: &str,
        base: &str,
        body: &[u8],
    ) -> Response {
        let mut store = self.lock();
        let Some(upload) = store.uploads.get_mut(id) else {
            return upload_unknown(id);
        };
        if let Some(range) = request.header(CONTENT_RANGE) {
            let start = range
                .trim_start_matches("bytes=")
                .split_once('-')
                .and_then(|(start, _)| start.parse::<u64>().ok());
            if start != Some(upload.len() as u64) {
                let len = upload.len() as u64;
                let mut response = oci_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    &format!("chunk starts at '{range}' but the upload holds {len} bytes"),
                );
                set(&mut response, RANGE, range_header(len));
                return response;
            }
        }
        upload.extend_from_slice(body);
        let len = upload.len() as u64;
        upload_accepted(StatusCode::ACCEPTED, repo, id, base, len)
    }

    fn finish_upload(
        &self,
        request: &Incoming,
        repo: &str,
        id: &str,
        base: &str,
        body: &[u8],
    ) -> Response {
        let Some(mut upload) = self.lock().uploads.remove(id) else {
            return upload_unknown(id);
        };
        let Some(digest) = request.query_param("digest") else {
            self.lock().uploads.insert(id.to_owned(), upload);
            return oci_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest given");
        };
        upload.extend_from_slice(body);
        self.store_blob(repo, &digest, base, Bytes::from(upload))
    }

    /// Verify `bytes` against `digest` and store them (201), or answer `DIGEST_INVALID`.
    fn store_blob(&self, repo: &str, digest: &str, base: &str, bytes: Bytes) -> Response {
        let verified = digest
            .parse::<Digest>()
            .ok()
            .filter(|d| Digest::compute(d.algorithm(), &bytes) == *d);
        let Some(digest) = verified else {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("content does not match digest '{digest}'"),
            );
        };
        self.lock().blobs.insert(digest.to_string(), bytes);
        let mut response = empty(StatusCode::CREATED);
        set(
            &mut response,
            LOCATION,
            format!("{base}/v2/{repo}/blobs/{digest}"),
        );
        set(&mut response, DOCKER_CONTENT_DIGEST, digest.to_string());
        response
    }

    fn upload_status(&self, repo: &str, id: &str, base: &str) -> Response {
        let Some(len) = self.lock().uploads.get(id).map(Vec::len) else {
            return upload_unknown(id);
        };
        upload_accepted(StatusCode::NO_CONTENT, repo, id, base, len as u64)
    }

    fn delete_upload(&self, id: &str) -> Response {
        let mut store = self.lock();
        if store.uploads.remove(id).is_none() {
            return upload_unknown(id);
        }
        store.deleted_sessions.push(id.to_owned());
        empty(StatusCode::NO_CONTENT)
    }

    fn get_blob(&self, request: &Incoming, digest: &str) -> Response {
        let Some(bytes) = self.lock().blobs.get(digest).cloned() else {
            return oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob '{digest}' unknown"),
            );
        };
        let len = bytes.len();
        // `Range: bytes=<first>-` (the only form clients resume with), as distribution's
        // storage driver serves it: 206 with the rest, 416 past the end.
        let first = request
            .header(RANGE)
            .filter(|_| request.method == Method::GET && !self.lock().ignore_ranges)
            .and_then(|r| {
                r.strip_prefix("bytes=")?
                    .strip_suffix('-')?
                    .parse::<usize>()
                    .ok()
            });
        let mut response = match first {
            _ if request.method == Method::HEAD => {
                let mut response = empty(StatusCode::OK);
                set(&mut response, CONTENT_LENGTH, len.to_string());
                response
            }
            Some(first) if first >= len => {
                let mut response = empty(StatusCode::RANGE_NOT_SATISFIABLE);
                set(
                    &mut response,
                    HeaderName::from_static(CONTENT_RANGE),
                    format!("bytes */{len}"),
                );
                return response;
            }
            Some(first) => {
                let mut response = with_body(StatusCode::PARTIAL_CONTENT, bytes.slice(first..));
                set(
                    &mut response,
                    HeaderName::from_static(CONTENT_RANGE),
                    format!("bytes {first}-{}/{len}", len - 1),
                );
                set(&mut response, CONTENT_LENGTH, (len - first).to_string());
                response
            }
            None => {
                let mut response = with_body(StatusCode::OK, bytes);
                set(&mut response, CONTENT_LENGTH, len.to_string());
                response
            }
        };
        set(
            &mut response,
            CONTENT_TYPE,
            "application/octet-stream".to_owned(),
        );
        set(&mut response, DOCKER_CONTENT_DIGEST, digest.to_owned());
        response
    }

    fn get_manifest(&self, request: &Incoming, repo: &str, reference: &str) -> Response {
        let key = (repo.to_owned(), reference.to_owned());
        let Some((media_type, bytes)) = self.lock().manifests.get(&key).cloned() else {
            return oci_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("manifest '{repo}:{reference}' unknown"),
            );
        };
        let digest = Digest::sha256(&bytes).to_string();
        let len = bytes.len();
        let mut response = if request.method == Method::HEAD {
            empty(StatusCode::OK)
        } else {
            with_body(StatusCode::OK, bytes)
        };
        set(&mut response, CONTENT_LENGTH, len.to_string());
        set(&mut response, CONTENT_TYPE, media_type);
        set(&mut response, DOCKER_CONTENT_DIGEST, digest);
        response
    }

    fn put_manifest(
        &self,
        request: &Incoming,
        repo: &str,
        reference: &str,
        base: &str,
        bytes: Bytes,
    ) -> Response {
        let digest = Digest::sha256(&bytes);
        if reference.contains(':') && reference != digest.to_string() {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("manifest digest is '{digest}', not '{reference}'"),
            );
        }
        let media_type = request
            .header(CONTENT_TYPE)
            .unwrap_or(DEFAULT_MANIFEST_TYPE)
            .to_owned();
        let entry = (media_type, bytes);
        let mut store = self.lock();
        for key in [reference.to_owned(), digest.to_string()] {
            store
                .manifests
                .insert((repo.to_owned(), key), entry.clone());
        }
        let mut response = empty(StatusCode::CREATED);
        set(
            &mut response,
            LOCATION,
            format!("{base}/v2/{repo}/manifests/{digest}"),
        );
        set(&mut response, DOCKER_CONTENT_DIGEST, digest.to_string());
        response
    }
}

/// `202 Accepted` (or `204` for a status query) for an open upload holding `len` bytes.
fn upload_accepted(status: StatusCode, repo: &str, id: &str, base: &str, len: u64) -> Response {
    let mut response = empty(status);
    set(
        &mut response,
        LOCATION,
        format!("{base}/v2/{repo}/blobs/uploads/{id}"),
    );
    set(&mut response, RANGE, range_header(len));
    set(&mut response, DOCKER_UPLOAD_UUID, id.to_owned());
    response
}

/// distribution's `Range` for an upload of `len` bytes: `0-<last byte>`, and `0-0` when empty.
fn range_header(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn upload_unknown(id: &str) -> Response {
    oci_error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        &format!("upload '{id}' unknown"),
    )
}

fn method_not_allowed() -> Response {
    oci_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "method not allowed",
    )
}

fn status_fault(status: u16, retry_after: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status)
        .unwrap_or_else(|_| panic!("scripted status {status} is not an HTTP status"));
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        "TOOMANYREQUESTS"
    } else {
        "UNKNOWN"
    };
    let mut response = oci_error(status, code, "scripted fault");
    if let Some(value) = retry_after {
        set(&mut response, RETRY_AFTER, value.to_owned());
    }
    response
}

fn too_large(max: u64) -> Response {
    oci_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        &format!("request body larger than {max} bytes"),
    )
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    json(status, &body.to_string())
}

fn json(status: StatusCode, body: &str) -> Response {
    let mut response = with_body(status, Bytes::from(body.to_owned()));
    set(&mut response, CONTENT_TYPE, "application/json".to_owned());
    response
}

fn plain(status: StatusCode, message: String) -> Response {
    with_body(status, Bytes::from(message))
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn with_body(status: StatusCode, bytes: Bytes) -> Response {
    let len = bytes.len();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    set(&mut response, CONTENT_LENGTH, len.to_string());
    response
}

fn set(response: &mut Response, name: HeaderName, value: String) {
    let value = value
        .parse()
        .unwrap_or_else(|_| panic!("invalid header value '{value}'"));
    response.headers_mut().insert(name, value);
}

/// The whole of an in-memory response body.
async fn body_bytes(body: &mut Body) -> Bytes {
    let mut stream: BodyDataStream = std::mem::take(body).into_data_stream();
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
    }
    Bytes::from(out)
}

/// A body that yields `prefix` and then fails: hyper aborts the connection short of the
/// `Content-Length` already sent, which the client sees as a truncated body.
///
/// The pause before the failure matters: hyper writes buffered data only when the body has
/// nothing more to give, and a failure that follows at once would drop the headers too.
fn cut_body(prefix: Bytes) -> Body {
    let failure = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "scripted reset",
        ))
    });
    Body::from_stream(futures::stream::iter([Ok(prefix)]).chain(failure))
}

/// A body that yields `bytes` at about `bytes_per_sec`, ten pieces a second.
fn slow_body(bytes: Bytes, bytes_per_sec: u64) -> Body {
    let piece = (bytes_per_sec / 10).max(1) as usize;
    let pause = Duration::from_secs_f64(piece as f64 / bytes_per_sec.max(1) as f64);
    let stream = futures::stream::unfold(bytes, move |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(pause).await;
        let chunk = rest.split_to(piece.min(rest.len()));
        Some((Ok::<_, std::io::Error>(chunk), rest))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_method_and_path_and_are_used_up_in_order() {
        let shared = Shared {
            addr: "127.0.0.1:1".parse().unwrap(),
            state: Mutex::new(Store::default()),
        };
        shared.add(Fault::status("PUT", "/manifests/", 429).times(2));
        shared.add(Fault::status("", "/manifests/", 500));
        shared.add(Fault::max_body(10));
        let put = Method::PUT;
        assert_eq!(shared.take_fault(&Method::GET, "/v2/a/blobs/x"), None);
        let first = shared.take_fault(&put, "/v2/a/manifests/latest").unwrap();
        assert!(matches!(first, Fault::Status { status: 429, .. }));
        let second = shared.take_fault(&put, "/v2/a/manifests/latest").unwrap();
        assert!(matches!(second, Fault::Status { status: 429, .. }));
        let third = shared.take_fault(&Method::GET, "/v2/a/manifests/latest");
        assert!(matches!(third, Some(Fault::Status { status: 500, .. })));
        assert_eq!(shared.take_fault(&put, "/v2/a/manifests/latest"), None);
        assert_eq!(shared.lock().max_body, Some(10));
    }

    #[test]
    fn ranges_follow_distribution() {
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(1), "0-0");
        assert_eq!(range_header(512), "0-511");
    }
}
