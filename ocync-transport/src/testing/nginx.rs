//! nginx as a rate-limiting, body-capping front for a [`TestRegistry`]: the registry behaviour
//! of Docker Hub, GHCR or ECR under load (`429`, with or without `Retry-After`) and ACR's cap
//! on a single request body (`413`), with a real HTTP server between client and registry.
//!
//! nginx runs as a child process (`master_process off`, so killing the one process stops it)
//! with its prefix, configuration, logs, pid file and temporary directories in a private
//! temporary directory; nothing is written under `/var`. Its access log uses a tab-separated
//! format of our own, parsed into [`NginxLine`]s.

use std::borrow::Borrow;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use super::registry::TestRegistry;
use super::tls::plain_client;

/// Environment variable naming the nginx binary to run.
pub const NGINX_BIN_ENV: &str = "OCYNC_TEST_NGINX_BIN";

/// A path nginx answers itself (`204`, not logged, never rate limited): the readiness probe,
/// and the marker [`NginxFront::log_lines`] uses to know earlier requests are logged.
const PROBE_PATH: &str = "/_ocync/probe";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const LOG_TAIL_LINES: usize = 40;

/// The regular expression (over `$request_method:$uri`) that picks manifest `PUT`s.
const MANIFEST_PUT: &str = "^PUT:/v2/.+/manifests/[^/]+$";

/// Options for [`NginxFront::start`]: everything off (a transparent proxy) by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxOptions {
    /// Requests per second allowed for `PUT /v2/<name>/manifests/<reference>`, all clients
    /// together (`limit_req`); `None` for no limit.
    pub manifest_put_rate: Option<u32>,
    /// Requests per second allowed for every other request; `None` for no limit.
    pub other_rate: Option<u32>,
    /// Requests above the rate accepted at once before limiting starts (`burst=… nodelay`),
    /// for both limits.
    pub burst: u32,
    /// `Retry-After` seconds sent with limited answers; `None` sends no `Retry-After`.
    pub retry_after: Option<u32>,
    /// The status of limited answers (`limit_req_status`), 429 by default.
    pub status: u16,
    /// Largest request body accepted (`client_max_body_size`); larger ones are answered `413`.
    /// `None` accepts any size.
    pub max_body: Option<u64>,
}

impl Default for NginxOptions {
    fn default() -> NginxOptions {
        NginxOptions {
            manifest_put_rate: None,
            other_rate: None,
            burst: 0,
            retry_after: None,
            status: 429,
            max_body: None,
        }
    }
}

impl NginxOptions {
    /// A transparent proxy: no limits, no body cap.
    pub fn new() -> NginxOptions {
        NginxOptions::default()
    }

    /// Limit manifest `PUT`s to `per_sec` requests per second.
    pub fn manifest_put_rate(mut self, per_sec: u32) -> NginxOptions {
        self.manifest_put_rate = Some(per_sec);
        self
    }

    /// Limit every request other than manifest `PUT`s to `per_sec` requests per second.
    pub fn other_rate(mut self, per_sec: u32) -> NginxOptions {
        self.other_rate = Some(per_sec);
        self
    }

    /// Let `burst` requests above the rate through before limiting.
    pub fn burst(mut self, burst: u32) -> NginxOptions {
        self.burst = burst;
        self
    }

    /// Send `Retry-After: <seconds>` with limited answers.
    pub fn retry_after(mut self, seconds: u32) -> NginxOptions {
        self.retry_after = Some(seconds);
        self
    }

    /// Answer limited requests with `status` instead of 429.
    pub fn status(mut self, status: u16) -> NginxOptions {
        self.status = status;
        self
    }

    /// Answer `413` to request bodies larger than `bytes`.
    pub fn max_body(mut self, bytes: u64) -> NginxOptions {
        self.max_body = Some(bytes);
        self
    }
}

/// One line of the front's access log.
#[derive(Debug, Clone, PartialEq)]
pub struct NginxLine {
    /// When nginx finished the request.
    pub time: SystemTime,
    /// The HTTP method.
    pub method: String,
    /// The request path as sent, without the query string.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// The status nginx answered.
    pub status: u16,
    /// The status the registry answered, `None` when nginx answered alone (a limited request,
    /// a body over the cap): proof that the request never reached the registry.
    pub upstream_status: Option<u16>,
    /// Bytes nginx read for the request: request line, headers and body (`$request_length`).
    pub request_length: u64,
    /// The request's `Content-Length` (`$content_length`). For a chunked body nginx fills it
    /// in with the length read once the body is complete, so `None` means no body, or a
    /// chunked body cut short (e.g. by the `413` of [`NginxOptions::max_body`]).
    pub content_length: Option<u64>,
    /// Response body bytes sent (`$body_bytes_sent`).
    pub body_bytes_sent: u64,
    /// The `Retry-After` value nginx sent, if any.
    pub retry_after_sent: Option<String>,
}

impl NginxLine {
    /// The `log_format` whose lines [`NginxLine::parse`] reads (tab-separated; nginx writes `-`
    /// for an empty variable).
    pub const LOG_FORMAT: &str = "$msec\\t$request_method\\t$request_uri\\t$status\\t$upstream_status\\t$request_length\\t$content_length\\t$body_bytes_sent\\t$sent_http_retry_after";

    /// Parse one line written with [`NginxLine::LOG_FORMAT`].
    pub fn parse(line: &str) -> Option<NginxLine> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [
            msec,
            method,
            uri,
            status,
            upstream_status,
            request_length,
            content_length,
            body_bytes_sent,
            retry_after,
        ] = fields.as_slice()
        else {
            return None;
        };
        let present = |value: &str| (value != "-" && !value.is_empty()).then(|| value.to_owned());
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(msec.parse().ok()?);
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => ((*path).to_owned(), Some(query.to_owned())),
            None => ((*uri).to_owned(), None),
        };
        // With several upstream attempts nginx writes `502, 200`: the last one answered.
        let upstream_status = present(upstream_status)
            .and_then(|s| s.rsplit(", ").next().and_then(|s| s.trim().parse().ok()));
        Some(NginxLine {
            time,
            method: (*method).to_owned(),
            path,
            query,
            status: status.parse().ok()?,
            upstream_status,
            request_length: request_length.parse().ok()?,
            content_length: present(content_length).and_then(|v| v.parse().ok()),
            body_bytes_sent: body_bytes_sent.parse().ok()?,
            retry_after_sent: present(retry_after),
        })
    }
}

impl fmt::Display for NginxLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        write!(f, " {}", self.status)?;
        if let Some(retry_after) = &self.retry_after_sent {
            write!(f, " (Retry-After: {retry_after})")?;
        }
        Ok(())
    }
}

/// nginx proxying to a [`TestRegistry`] over plain HTTP, on a random `127.0.0.1` port.
/// Killed (and reaped) when dropped.
///
/// `R` is how the front holds its registry: `&TestRegistry` (from
/// `NginxFront::start(&registry, …)`), an owned `TestRegistry`, or an `Arc`.
pub struct NginxFront<R: Borrow<TestRegistry> = TestRegistry> {
    registry: R,
    child: Child,
    addr: SocketAddr,
    options: NginxOptions,
    access_log: PathBuf,
    error_log: PathBuf,
    cleared: AtomicUsize,
    dir: TempDir,
}

enum Startup {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

impl<R: Borrow<TestRegistry>> NginxFront<R> {
    /// Start nginx in front of `registry` with `options` and wait until it answers.
    ///
    /// Panics when nginx is not installed (see [`NginxFront::available`]), when the registry
    /// serves TLS (the front proxies plain HTTP only), or when nginx does not come up; the
    /// message holds the tail of nginx's error log.
    pub async fn start(registry: R, options: NginxOptions) -> NginxFront<R> {
        let bin = nginx_binary().unwrap_or_else(|| {
            panic!(
                "nginx not found: run scripts/test.sh (it installs the Debian package nginx-light) or apt-get install nginx-light, or set {NGINX_BIN_ENV}"
            )
        });
        let upstream = {
            let registry: &TestRegistry = registry.borrow();
            assert!(
                !registry.options().tls,
                "NginxFront proxies plain HTTP registries only"
            );
            registry.addr()
        };
        let dir = tempfile::Builder::new()
            .prefix("ocync-nginx-")
            .tempdir()
            .expect("create nginx's temporary directory");
        let access_log = dir.path().join("access.log");
        let error_log = dir.path().join("error.log");
        for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(dir.path().join("temp").join(temp))
                .expect("create nginx's temporary directories");
        }

        let client = plain_client();
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let addr = free_port();
            let conf = dir.path().join("nginx.conf");
            fs::write(&conf, config(dir.path(), addr, upstream, &options))
                .unwrap_or_else(|e| panic!("cannot write '{}': {e}", conf.display()));
            // Truncated per attempt, so the tail shown on failure is this attempt's.
            fs::write(&error_log, "").expect("create nginx's error log");
            let output =
                fs::File::create(dir.path().join("nginx.out")).expect("create nginx's output file");
            let stderr = output.try_clone().expect("clone nginx's output handle");
            let pid_file = dir.path().join("nginx.pid");
            // `-e` moves the error log before the configuration is read: without it nginx
            // first opens its compiled-in /var/log/nginx/error.log.
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(&error_log)
                .arg("-c")
                .arg(&conf)
                .arg("-g")
                .arg(format!("daemon off; pid {};", pid_file.display()))
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run '{}': {e}", bin.display()));
            match wait_ready(&mut child, &client, addr).await {
                Startup::Ready => {
                    return NginxFront {
                        registry,
                        child,
                        addr,
                        options,
                        access_log,
                        error_log,
                        cleared: AtomicUsize::new(0),
                        dir,
                    };
                }
                Startup::Exited(status) => {
                    let log = error_tail(dir.path(), &error_log);
                    // Another process can take the port between our probe and nginx's bind:
                    // only that is worth another attempt with a new port.
                    if !log.contains("Address already in use") {
                        panic!("nginx on {addr} exited with {status}; error log tail:\n{log}");
                    }
                    failures.push_str(&format!("attempt {attempt} on {addr}: {status}\n{log}\n"));
                }
                Startup::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx on {addr} did not answer within {}s; error log tail:\n{}",
                        READY_TIMEOUT.as_secs(),
                        error_tail(dir.path(), &error_log)
                    );
                }
            }
        }
        panic!("nginx failed to start {START_ATTEMPTS} times:\n{failures}");
    }

    /// The registry behind the front.
    pub fn registry(&self) -> &TestRegistry {
        self.registry.borrow()
    }

    /// The options it was started with.
    pub fn options(&self) -> &NginxOptions {
        &self.options
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of a reference that goes through the front.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The temporary directory holding configuration, logs and nginx's temporary files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nginx configuration in use.
    pub fn config(&self) -> String {
        fs::read_to_string(self.dir.path().join("nginx.conf")).unwrap_or_default()
    }

    /// nginx's error log so far (it also notes every limited request).
    pub fn error_log(&self) -> String {
        fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// Every request in the access log since the last [`NginxFront::clear`], oldest first.
    ///
    /// nginx logs a request just after sending the last byte of its answer, so a client can
    /// have the answer before the line is written. This method first sends nginx a probe
    /// request of its own and waits for the answer: the single nginx process works through
    /// its events in order, so every answer that had been received by then is logged by
    /// then. (A request whose body nginx is still discarding after a `413` is logged only
    /// when the client stops sending.)
    pub fn log_lines(&self) -> Vec<NginxLine> {
        self.sync_log();
        self.all_lines()
            .into_iter()
            .skip(self.cleared.load(Ordering::SeqCst))
            .collect()
    }

    /// Number of logged requests (since the last clear) answered `status`.
    pub fn count(&self, status: u16) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.status == status)
            .count()
    }

    /// Make [`NginxFront::log_lines`] forget the requests logged so far.
    pub fn clear(&self) {
        self.sync_log();
        self.cleared.store(self.all_lines().len(), Ordering::SeqCst);
    }

    fn all_lines(&self) -> Vec<NginxLine> {
        fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(NginxLine::parse)
            .collect()
    }

    /// One blocking probe round trip on a fresh connection (loopback, milliseconds).
    fn sync_log(&self) {
        let probe = || -> std::io::Result<()> {
            let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                stream,
                "GET {PROBE_PATH} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            )?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            Ok(())
        };
        if let Err(e) = probe() {
            panic!(
                "nginx on {} does not answer its probe: {e}; error log tail:\n{}",
                self.addr,
                error_tail(self.dir.path(), &self.error_log)
            );
        }
    }
}

impl NginxFront {
    /// Whether an nginx binary is available ([`NGINX_BIN_ENV`], `nginx` on `PATH`, or
    /// `/usr/sbin/nginx`).
    pub fn available() -> bool {
        nginx_binary().is_some()
    }

    /// Panic, saying how to get nginx, unless it is available: nginx is a real part of the
    /// tests that use it, never optional (scripts/test.sh installs it).
    pub fn require() {
        assert!(
            NginxFront::available(),
            "nginx not installed: run scripts/test.sh (it installs nginx-light) or set {NGINX_BIN_ENV}"
        );
    }
}

impl<R: Borrow<TestRegistry>> Drop for NginxFront<R> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl<R: Borrow<TestRegistry>> fmt::Debug for NginxFront<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NginxFront")
            .field("url", &self.url())
            .field("registry", &self.registry().url())
            .field("options", &self.options)
            .field("pid", &self.child.id())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The nginx binary: `$OCYNC_TEST_NGINX_BIN`, else `nginx` on `PATH`, else `/usr/sbin/nginx`
/// (not on a normal user's `PATH`).
pub fn nginx_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(NGINX_BIN_ENV).filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

/// The configuration: one process, everything under `dir`, one server on `addr` proxying to
/// `upstream`.
fn config(dir: &Path, addr: SocketAddr, upstream: SocketAddr, options: &NginxOptions) -> String {
    let dir = dir.display();
    let status = options.status;
    let max_body = options.max_body.unwrap_or(0);
    let burst = if options.burst > 0 {
        format!(" burst={} nodelay", options.burst)
    } else {
        String::new()
    };

    // limit_req does not account requests whose key is empty, so each zone's key is the
    // client address for the requests it limits and empty for the rest. Every client is
    // 127.0.0.1, which makes each limit global.
    let mut zones = String::new();
    let mut limits = String::new();
    let limited = [
        (
            "manifest_put",
            options.manifest_put_rate,
            "$binary_remote_addr",
            "\"\"",
        ),
        ("other", options.other_rate, "\"\"", "$binary_remote_addr"),
    ];
    for (name, rate, manifest_put_key, default_key) in limited {
        let Some(rate) = rate else { continue };
        zones.push_str(&format!(
            "    map \"$request_method:$uri\" $ocync_{name}_key {{\n        default {default_key};\n        \"~{MANIFEST_PUT}\" {manifest_put_key};\n    }}\n    limit_req_zone $ocync_{name}_key zone=ocync_{name}:1m rate={rate}r/s;\n"
        ));
        limits.push_str(&format!(
            "            limit_req zone=ocync_{name}{burst};\n"
        ));
    }
    let mut limited_location = String::new();
    if !limits.is_empty() {
        limits.push_str(&format!(
            "            limit_req_status {status};\n            error_page {status} = @ocync_limited;\n"
        ));
        let retry_after = options
            .retry_after
            .map(|s| format!("            add_header Retry-After {s} always;\n"))
            .unwrap_or_default();
        limited_location = format!(
            "        location @ocync_limited {{\n            default_type application/json;\n{retry_after}            return {status} '{{\"errors\":[{{\"code\":\"TOOMANYREQUESTS\",\"message\":\"rate limited by the ocync test front\"}}]}}';\n        }}\n"
        );
    }

    format!(
        "# Written by ocync_transport::testing::NginxFront.
master_process off;
error_log {dir}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    log_format ocync '{log_format}';
    access_log {dir}/access.log ocync;
    client_body_temp_path {dir}/temp/client_body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;

    # Stream bodies both ways, as a registry front must for multi-gigabyte layers.
    client_max_body_size {max_body};
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;
    keepalive_timeout 60s;

{zones}
    upstream ocync_registry {{
        server {upstream};
        keepalive 16;
    }}

    server {{
        listen {addr};

        location = {PROBE_PATH} {{
            access_log off;
            return 204;
        }}

        location / {{
{limits}            proxy_pass http://ocync_registry;
            # distribution builds Location URLs from Host (and X-Forwarded-*): keep the
            # front's, so uploads continue through the front.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # Upstream keepalive needs an empty Connection header.
            proxy_set_header Connection \"\";
        }}
{limited_location}    }}
}}
",
        log_format = NginxLine::LOG_FORMAT,
    )
}

/// A port that was free a moment ago. Racy by nature; [`NginxFront::start`] retries.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a random 127.0.0.1 port")
}

/// Wait until the probe path answers `204` on `addr` while our child is alive.
async fn wait_ready(child: &mut Child, client: &reqwest::Client, addr: SocketAddr) -> Startup {
    let url = format!("http://{addr}{PROBE_PATH}");
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Startup::Exited(status);
        }
        let probe = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(resp) = probe
            && resp.status() == reqwest::StatusCode::NO_CONTENT
        {
            // Answered by our nginx, not by whoever else might hold the port: a process that
            // lost the bind exits, so check once more.
            if let Ok(Some(status)) = child.try_wait() {
                return Startup::Exited(status);
            }
            return Startup::Ready;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    match child.try_wait() {
        Ok(Some(status)) => Startup::Exited(status),
        _ => Startup::TimedOut,
    }
}

/// The end of the error log, and anything nginx printed before it opened the log.
fn error_tail(dir: &Path, error_log: &Path) -> String {
    let mut text = fs::read_to_string(dir.join("nginx.out")).unwrap_or_default();
    text.push_str(&fs::read_to_string(error_log).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_lines() {
        let line = "1790000000.250\tPUT\t/v2/a/b/manifests/v1\t429\t-\t512\t300\t93\t2";
        let parsed = NginxLine::parse(line).unwrap();
        assert_eq!(parsed.method, "PUT");
        assert_eq!(parsed.path, "/v2/a/b/manifests/v1");
        assert_eq!(parsed.query, None);
        assert_eq!(parsed.status, 429);
        assert_eq!(parsed.upstream_status, None);
        assert_eq!(parsed.request_length, 512);
        assert_eq!(parsed.content_length, Some(300));
        assert_eq!(parsed.body_bytes_sent, 93);
        assert_eq!(parsed.retry_after_sent.as_deref(), Some("2"));
        assert_eq!(
            parsed.time,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_250)
        );
        assert_eq!(
            parsed.to_string(),
            "PUT /v2/a/b/manifests/v1 429 (Retry-After: 2)"
        );

        let line =
            "1790000000.000\tPATCH\t/v2/a/blobs/uploads/u?_state=x\t202\t502, 202\t900\t-\t0\t-";
        let parsed = NginxLine::parse(line).unwrap();
        assert_eq!(parsed.query.as_deref(), Some("_state=x"));
        assert_eq!(parsed.upstream_status, Some(202));
        assert_eq!(parsed.content_length, None);
        assert_eq!(parsed.retry_after_sent, None);
        assert_eq!(NginxLine::parse("not a log line"), None);
    }

    #[test]
    fn config_limits_only_what_is_asked() {
        let upstream: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let addr: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let dir = Path::new("/tmp/x");
        let plain = config(dir, addr, upstream, &NginxOptions::new());
        assert!(!plain.contains("limit_req"), "{plain}");
        assert!(!plain.contains("Retry-After"), "{plain}");
        assert!(plain.contains("client_max_body_size 0;"), "{plain}");

        let options = NginxOptions::new()
            .manifest_put_rate(2)
            .burst(3)
            .retry_after(7)
            .max_body(1024);
        let limited = config(dir, addr, upstream, &options);
        assert!(
            limited.contains("zone=ocync_manifest_put:1m rate=2r/s"),
            "{limited}"
        );
        assert!(limited.contains("limit_req zone=ocync_manifest_put burst=3 nodelay;"));
        assert!(!limited.contains("ocync_other"), "{limited}");
        assert!(
            limited.contains("add_header Retry-After 7 always;"),
            "{limited}"
        );
        assert!(limited.contains("client_max_body_size 1024;"), "{limited}");
        assert!(!limited.contains("/var/"), "{limited}");
    }
}
