//! A real registry for tests: the Debian `docker-registry` (distribution 2.8.2) binary run as
//! a child process with its own temporary directory, on a random `127.0.0.1` port.
//!
//! Three auth modes (none, htpasswd with bcrypt, token auth backed by an in-process
//! [`TokenServer`]) and optional TLS. The registry's access log (Apache combined format) is
//! parsed into [`RequestLine`]s so tests can count the requests the registry really received.

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::tls::{TestCa, plain_client};
use super::token_server::{ISSUER, SERVICE, TokenServer, random_hex};

/// Environment variable naming the registry binary to run.
pub const REGISTRY_BIN_ENV: &str = "OCYNC_TEST_REGISTRY_BIN";

/// The user created in htpasswd and token modes unless [`RegistryOptions::basic_user`] names
/// another.
pub const USERNAME: &str = "alice";

/// Realm of the htpasswd mode's `Basic` challenge.
pub const BASIC_REALM: &str = "basic-realm";

const HTTP_SECRET: &str = "ocync-test-registry-http-secret";
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const LOG_TAIL_LINES: usize = 40;

/// How the registry authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// Anonymous access to everything.
    #[default]
    None,
    /// `Basic` auth against an htpasswd file holding one user ([`USERNAME`] with a random
    /// password, or [`RegistryOptions::basic_user`]).
    Htpasswd,
    /// Bearer tokens from an in-process [`TokenServer`] that knows that one user.
    Token,
}

/// Options for [`TestRegistry::start`]. Build them with struct update syntax
/// (`RegistryOptions { tls: true, ..RegistryOptions::default() }`) or the `with_…` methods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate from a per-registry [`TestCa`].
    pub tls: bool,
    /// The auth mode.
    pub auth: RegistryAuth,
    /// Extra DNS names for the TLS leaf certificate besides the loopback names (e.g.
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com`, reached through a
    /// [`ConnectProxy`](super::proxy::ConnectProxy)). Ignored without `tls`.
    pub tls_names: Vec<String>,
    /// The one user of the htpasswd and token modes, `(username, password)`, instead of
    /// [`USERNAME`] with a random password (ECR's data plane: `AWS` and the token).
    pub basic_user: Option<(String, String)>,
    /// Token mode: the realm the registry advertises in its `Bearer` challenge instead of the
    /// in-process token server's `/token` (e.g. `https://myreg.azurecr.io/oauth2/token`).
    pub token_realm: Option<String>,
    /// Token mode: the `service` the registry advertises and requires as the JWT `aud`,
    /// instead of [`SERVICE`]. The in-process token server issues tokens for it.
    pub token_service: Option<String>,
}

impl RegistryOptions {
    /// No auth, plain HTTP (the default).
    pub fn new() -> RegistryOptions {
        RegistryOptions::default()
    }

    /// Serve HTTPS.
    pub fn with_tls(mut self) -> RegistryOptions {
        self.tls = true;
        self
    }

    /// Use `auth`.
    pub fn with_auth(mut self, auth: RegistryAuth) -> RegistryOptions {
        self.auth = auth;
        self
    }

    /// Serve HTTPS with a certificate also valid for `names`.
    pub fn with_tls_names<I, S>(mut self, names: I) -> RegistryOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tls = true;
        self.tls_names.extend(names.into_iter().map(Into::into));
        self
    }

    /// Make `username` with `password` the one user of the htpasswd and token modes.
    pub fn with_basic_user(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> RegistryOptions {
        self.basic_user = Some((username.into(), password.into()));
        self
    }

    /// Token mode: advertise `realm` instead of the token server's own endpoint.
    pub fn with_token_realm(mut self, realm: impl Into<String>) -> RegistryOptions {
        self.token_realm = Some(realm.into());
        self
    }

    /// Token mode: use `service` as the advertised service and the JWT audience.
    pub fn with_token_service(mut self, service: impl Into<String>) -> RegistryOptions {
        self.token_service = Some(service.into());
        self
    }
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// The HTTP method.
    pub method: String,
    /// The request path, without the query string (`/v2/src/app/blobs/uploads/`).
    pub path: String,
    /// The query string without `?`, if any (`digest=sha256:…`).
    pub query: Option<String>,
    /// The response status.
    pub status: u16,
}

impl RequestLine {
    /// Parse an Apache combined log line, as distribution writes to stdout:
    /// `127.0.0.1 - - [23/Nov/2026:10:00:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
    pub fn parse(line: &str) -> Option<RequestLine> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once('"')?;
        let mut parts = request.split(' ');
        let method = parts.next()?.to_owned();
        let target = parts.next()?;
        if !parts.next()?.starts_with("HTTP/") {
            return None;
        }
        let status = rest.split_whitespace().next()?.parse().ok()?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (target.to_owned(), None),
        };
        Some(RequestLine {
            method,
            path,
            query,
            status,
        })
    }
}

impl fmt::Display for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        write!(f, " {}", self.status)
    }
}

/// A running `docker-registry` child process. Killed (and reaped) when dropped; its temporary
/// directory (storage, config, logs) lives exactly as long as this value.
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    options: RegistryOptions,
    ca: Option<TestCa>,
    ca_file: Option<PathBuf>,
    user: Option<(String, String)>,
    token_server: Option<TokenServer>,
    log_path: PathBuf,
    storage_root: PathBuf,
    cleared: AtomicUsize,
    dir: TempDir,
}

enum Startup {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

impl TestRegistry {
    /// No auth, plain HTTP.
    pub async fn plain() -> TestRegistry {
        TestRegistry::start(RegistryOptions::default()).await
    }

    /// No auth, HTTPS (trust [`TestRegistry::ca_pem`]).
    pub async fn tls() -> TestRegistry {
        TestRegistry::start(RegistryOptions::new().with_tls()).await
    }

    /// htpasswd (`Basic`) auth, plain HTTP.
    pub async fn htpasswd() -> TestRegistry {
        TestRegistry::start(RegistryOptions::new().with_auth(RegistryAuth::Htpasswd)).await
    }

    /// Token (`Bearer`) auth with an in-process [`TokenServer`], plain HTTP.
    pub async fn token() -> TestRegistry {
        TestRegistry::start(RegistryOptions::new().with_auth(RegistryAuth::Token)).await
    }

    /// Start a registry with `options` and wait until `GET /v2/` answers.
    ///
    /// Panics when the binary is missing or the registry does not come up; the message holds
    /// the tail of the registry's log.
    pub async fn start(options: RegistryOptions) -> TestRegistry {
        let bin = registry_binary();
        let dir = tempfile::Builder::new()
            .prefix("ocync-registry-")
            .tempdir()
            .expect("create the registry's temporary directory");
        let storage_root = dir.path().join("storage");
        fs::create_dir_all(&storage_root).expect("create the registry storage directory");
        let log_path = dir.path().join("registry.log");

        let ca = options.tls.then(|| {
            let names: Vec<&str> = options.tls_names.iter().map(String::as_str).collect();
            TestCa::with_names(&names)
        });
        let ca_file = ca.as_ref().map(|ca| ca.write_ca(dir.path()));
        let mut tls_yaml = String::new();
        if let Some(ca) = &ca {
            let cert = write(dir.path(), "server.crt", ca.leaf_cert_pem());
            let key = write(dir.path(), "server.key", ca.leaf_key_pem());
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }

        let user = (options.auth != RegistryAuth::None).then(|| {
            options
                .basic_user
                .clone()
                .unwrap_or_else(|| (USERNAME.to_owned(), random_hex(12)))
        });
        let (username, password) = user
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .unwrap_or_default();
        let mut token_server = None;
        let auth_yaml = match options.auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd => {
                assert!(
                    !username.contains(':') && !username.contains('\n'),
                    "an htpasswd user name cannot contain ':' or a newline: '{username}'"
                );
                let hash = bcrypt::hash(password, 4).expect("bcrypt the test password");
                let file = write(dir.path(), "htpasswd", &format!("{username}:{hash}\n"));
                format!(
                    "auth:\n  htpasswd:\n    realm: {BASIC_REALM}\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Token => {
                let service = options.token_service.as_deref().unwrap_or(SERVICE);
                let server = TokenServer::start_for(service, username, password).await;
                let bundle = write(dir.path(), "token.crt", server.cert_pem());
                let realm = options
                    .token_realm
                    .clone()
                    .unwrap_or_else(|| server.realm());
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    yaml_string(&realm),
                    yaml_string(service),
                    bundle.display()
                );
                token_server = Some(server);
                yaml
            }
        };

        let client = match &ca {
            Some(ca) => ca.client(),
            None => plain_client(),
        };
        let scheme = if options.tls { "https" } else { "http" };
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let addr = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: {HTTP_SECRET}\n{tls_yaml}{auth_yaml}",
                storage_root.display()
            );
            let config_path = write(dir.path(), "config.yml", &config);
            let log = fs::File::create(&log_path).expect("create the registry log");
            let stderr = log.try_clone().expect("clone the registry log handle");
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run '{}': {e}", bin.display()));
            let url = format!("{scheme}://{addr}/v2/");
            match wait_ready(&mut child, &client, &url, &log_path, addr).await {
                Startup::Ready => {
                    let registry = TestRegistry {
                        child,
                        addr,
                        options,
                        ca,
                        ca_file,
                        user,
                        token_server,
                        log_path,
                        storage_root,
                        cleared: AtomicUsize::new(0),
                        dir,
                    };
                    // The readiness probes are not the test's requests.
                    registry.clear_requests();
                    return registry;
                }
                Startup::Exited(status) => {
                    let log = tail(&log_path);
                    // Another process can take the port between our probe and the registry's
                    // bind: only that is worth another attempt with a new port.
                    if !log.contains("address already in use") {
                        panic!("docker-registry on {addr} exited with {status}; log tail:\n{log}");
                    }
                    failures.push_str(&format!("attempt {attempt} on {addr}: {status}\n{log}\n"));
                }
                Startup::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry on {addr} did not answer GET /v2/ within {}s; log tail:\n{}",
                        READY_TIMEOUT.as_secs(),
                        tail(&log_path)
                    );
                }
            }
        }
        panic!("docker-registry failed to start {START_ATTEMPTS} times:\n{failures}");
    }

    /// The options it was started with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA that signed the registry's certificate, PEM (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(TestCa::ca_pem)
    }

    /// A file holding [`TestRegistry::ca_pem`] (TLS only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The CA (TLS only).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// A reqwest client that can reach the registry: trusts only the registry's CA when TLS is
    /// on, and never consults the system certificate store. Sends no credentials.
    pub fn client(&self) -> reqwest::Client {
        match &self.ca {
            Some(ca) => ca.client(),
            None => plain_client(),
        }
    }

    /// The temporary directory holding storage, config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The filesystem storage driver's root directory.
    pub fn storage_root(&self) -> &Path {
        &self.storage_root
    }

    /// Where the registry stores the blob with `digest` (`sha256:<hex>`), following the
    /// distribution layout `docker/registry/v2/blobs/sha256/<first two hex>/<hex>/data`, so a
    /// test can corrupt or truncate it.
    pub fn blob_data_path(&self, digest: impl fmt::Display) -> PathBuf {
        let digest = digest.to_string();
        let (algorithm, hex) = digest
            .split_once(':')
            .unwrap_or_else(|| panic!("'{digest}' is not algorithm:hex"));
        assert!(hex.len() > 2, "'{digest}' is too short to be a digest");
        self.storage_root
            .join("docker/registry/v2/blobs")
            .join(algorithm)
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The user in htpasswd and token modes ([`USERNAME`] or
    /// [`RegistryOptions::basic_user`]).
    pub fn username(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    /// That user's password in htpasswd and token modes (random unless
    /// [`RegistryOptions::basic_user`] set it).
    pub fn password(&self) -> Option<&str> {
        self.user.as_ref().map(|(_, p)| p.as_str())
    }

    /// The token server (token mode only).
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The registry's combined stdout and stderr so far: application log lines (`time=… level=…`)
    /// and access log lines.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every request in the access log since the last [`TestRegistry::clear_requests`] (the
    /// harness's readiness probes are cleared at start).
    ///
    /// distribution writes the access line before the response is flushed to the client, so a
    /// request whose response has been received is always there.
    pub fn requests(&self) -> Vec<RequestLine> {
        self.requests_since(self.cleared.load(Ordering::SeqCst))
    }

    /// Every request after the first `mark` ones, where `mark` came from
    /// [`TestRegistry::request_mark`]: the requests of one phase of a test. Marks count from
    /// the registry's start, readiness probes included.
    pub fn requests_since(&self, mark: usize) -> Vec<RequestLine> {
        self.all_requests().into_iter().skip(mark).collect()
    }

    /// The number of requests logged so far, for [`TestRegistry::requests_since`].
    pub fn request_mark(&self) -> usize {
        self.all_requests().len()
    }

    /// Make [`TestRegistry::requests`] forget the requests logged so far.
    pub fn clear_requests(&self) {
        self.cleared.store(self.request_mark(), Ordering::SeqCst);
    }

    /// Number of requests (since the last clear) with `method` whose path starts with
    /// `path_prefix`.
    pub fn count_requests(&self, method: &str, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    fn all_requests(&self) -> Vec<RequestLine> {
        self.log().lines().filter_map(RequestLine::parse).collect()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRegistry")
            .field("url", &self.url())
            .field("auth", &self.options.auth)
            .field("pid", &self.child.id())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The registry binary: `$OCYNC_TEST_REGISTRY_BIN`, else `docker-registry` on `PATH`, else
/// `/usr/bin/docker-registry`.
pub fn registry_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os(REGISTRY_BIN_ENV).filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("docker-registry"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(bin) = on_path {
        return bin;
    }
    let fallback = PathBuf::from("/usr/bin/docker-registry");
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "docker-registry not found: run scripts/test.sh (it installs the Debian package) or apt-get install docker-registry"
    );
}

/// A port that was free a moment ago. Racy by nature; [`TestRegistry::start`] retries.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a random 127.0.0.1 port")
}

/// Wait until the child logged that it listens on `addr` and `GET /v2/` answers 200 or 401.
/// The log line matters: if another process took the port, a probe alone could be answered by
/// it while our child is still failing to bind.
async fn wait_ready(
    child: &mut Child,
    client: &reqwest::Client,
    url: &str,
    log_path: &Path,
    addr: SocketAddr,
) -> Startup {
    let listening = format!("listening on {addr}");
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Startup::Exited(status);
        }
        let bound = fs::read_to_string(log_path).is_ok_and(|log| log.contains(&listening));
        if bound {
            let probe = client.get(url).timeout(Duration::from_secs(2)).send().await;
            if let Ok(resp) = probe
                && matches!(resp.status().as_u16(), 200 | 401)
            {
                return Startup::Ready;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    match child.try_wait() {
        Ok(Some(status)) => Startup::Exited(status),
        _ => Startup::TimedOut,
    }
}

/// `value` as a double-quoted YAML scalar, so realms and services with `:` or `#` stay whole.
fn yaml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write '{}': {e}", path.display()));
    path
}

fn tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_log_lines() {
        let line = r#"127.0.0.1 - - [23/Nov/2026:16:31:42 +0000] "PUT /v2/a/b/blobs/uploads/u-1?_state=x&digest=sha256%3Aab HTTP/1.1" 201 0 "" "curl/7.88.1""#;
        let parsed = RequestLine::parse(line).unwrap();
        assert_eq!(parsed.method, "PUT");
        assert_eq!(parsed.path, "/v2/a/b/blobs/uploads/u-1");
        assert_eq!(parsed.query.as_deref(), Some("_state=x&digest=sha256%3Aab"));
        assert_eq!(parsed.status, 201);
        let line =
            r#"127.0.0.1 - alice [23/Nov/2026:16:31:42 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "ua""#;
        assert_eq!(
            RequestLine::parse(line).unwrap().to_string(),
            "GET /v2/ 401"
        );
        let app = r#"time="2026-11-23T16:31:40Z" level=info msg="listening on 127.0.0.1:5999""#;
        assert_eq!(RequestLine::parse(app), None);
    }
}
