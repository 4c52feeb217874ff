//! `ocync watch` end to end: the health and metrics server (readiness before and after the
//! first cycle, Prometheus text), cycles that copy then find everything up to date, a
//! configuration broken and fixed while it runs, `--cycles` with `--json` lines, SIGTERM while
//! waiting (exit 0) and during a cycle (drained, exit 5, cache saved), and the input errors that
//! exit 3 before any cycle.
//!
//! Sources are OCI layouts written by the fixtures; the registry target is a real
//! `docker-registry`, reached through a proxy the test can hold shut, so that a cycle lasts
//! exactly as long as the test needs.

#[allow(dead_code, reason = "shared helpers; this file uses only some of them")]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ocync;
use ocync_transport::testing::{Fixture, ImageFixture, TestRegistry};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

/// Long enough for a slow CI machine, short enough to fail a stuck test quickly.
const PATIENCE: Duration = Duration::from_secs(20);

/// A TCP proxy whose connections wait, open, until the gate is opened.
struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    connections: Arc<AtomicUsize>,
}

impl Gate {
    async fn start(upstream: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(false);
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Gate {
            addr,
            open,
            connections,
        }
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// One OCI layout per repository under `<dir>/layouts`, one small image each, tagged `v1`.
fn layouts(dir: &Path, repositories: &[&str]) {
    for (i, repository) in repositories.iter().enumerate() {
        Fixture::single(ImageFixture::image(
            40 + i as u64,
            "linux/amd64",
            &[2_000 + i],
        ))
        .write_layout(&dir.join("layouts").join(repository), "v1")
        .unwrap();
    }
}

/// A configuration copying every layout under `<dir>/layouts` named in `repositories` to
/// `target` (`host:port` of a registry, or `oci:<dir>`).
fn config(dir: &Path, target: &str, repositories: &[&str], extra_global: &str) -> PathBuf {
    let target = if target.starts_with("oci:") {
        format!("    url: {target}\n")
    } else {
        format!("    url: http://{target}\n    auth_type: anonymous\n")
    };
    let mappings: String = repositories
        .iter()
        .map(|r| format!("  - from: {r}\n"))
        .collect();
    let body = format!(
        "global:\n  cache_dir: ./cache\n{extra_global}registries:\n  src:\n    url: oci:./layouts\n  dst:\n{target}defaults:\n  source: src\n  targets: dst\n  tags:\n    glob: \"*\"\nmappings:\n{mappings}"
    );
    let path = dir.join("ocync.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A running `ocync watch` with its stderr (and stdout) collected line by line.
struct Watch {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    port: u16,
}

impl Watch {
    /// Start `ocync watch --config <config> --health-port 0 <args>` and wait for the server.
    async fn start(config: &Path, args: &[&str]) -> Watch {
        let mut child = ocync()
            .args(["watch", "--health-port", "0", "--config"])
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let mut watch = Watch {
            child,
            stderr,
            stdout,
            port: 0,
        };
        let line = watch
            .wait_log("health and metrics on http://")
            .await
            .expect("the server's address is logged");
        let address = line
            .split("health and metrics on http://")
            .nth(1)
            .unwrap()
            .trim();
        watch.port = address.rsplit(':').next().unwrap().parse().unwrap();
        assert!(address.starts_with("127.0.0.1:"), "{address}");
        watch
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first stderr line containing `needle`, waiting for it (`None` if the process
    /// exits or time runs out first).
    async fn wait_log(&mut self, needle: &str) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Some(line) = self.stderr().lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if self.child.try_wait().unwrap().is_some() {
                // Give the reader thread a moment to take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return self
                    .stderr()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn get(&self, path: &str) -> (u16, String) {
        request(self.port, "GET", path).await
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    }

    /// Poll `/metrics` until `check` accepts them; the metrics it accepted.
    async fn wait_metrics(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let started = Instant::now();
        loop {
            let metrics = self.metrics().await;
            if check(&metrics) {
                return metrics;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what} never happened; metrics: {metrics:#?}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the exit: the code, and how long it took.
    async fn exit(mut self) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "ocync watch did not exit:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read a child's pipe in a thread, line by line, into a shared string.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

/// One HTTP/1.1 request on a fresh connection: the status and the body (plus the headers for
/// `/metrics`' content type, prepended as `content-type: ...\n` when present).
async fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .map(|v| format!("content-type: {v}\n"))
        .unwrap_or_default();
    let body = if path == "/metrics" {
        format!("{content_type}{body}")
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Prometheus text: every line is a comment or `name{labels} value`; the samples by series.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let (first, text) = text.split_once('\n').unwrap();
    assert_eq!(
        first, "content-type: text/plain; version=0.0.4; charset=utf-8",
        "the exposition format's content type"
    );
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name{labels} value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, Some(labels)),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = labels {
            assert!(labels.ends_with('}') && labels.contains("=\""), "{line}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn metric(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {metrics:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_and_survives_a_broken_configuration() {
    let registry = TestRegistry::plain().await;
    let gate = Gate::start(registry.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    layouts(dir.path(), &["one", "two"]);
    let path = config(dir.path(), &gate.addr.to_string(), &["one", "two"], "");
    let good = std::fs::read_to_string(&path).unwrap();
    let mut watch = Watch::start(&path, &["--interval", "1"]).await;

    // The first cycle is held at the gate: alive, not ready.
    let (status, body) = watch.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("first sync cycle"), "{body}");
    assert_eq!(watch.get("/healthz").await, (200, "ok\n".to_owned()));
    let before = watch
        .wait_metrics("the first cycle's start", |m| {
            m.get("ocync_cycle_in_progress") == Some(&1.0)
        })
        .await;
    assert_eq!(metric(&before, "ocync_up"), 1.0);
    assert_eq!(metric(&before, "ocync_config_valid"), 1.0);
    assert_eq!(
        metric(&before, "ocync_cycles_total{result=\"success\"}"),
        0.0
    );
    assert_eq!(metric(&before, "ocync_last_success_timestamp_seconds"), 0.0);
    assert!(
        before
            .keys()
            .any(|k| k.starts_with("ocync_build_info{version=\""))
    );
    assert_eq!(request(watch.port, "POST", "/metrics").await.0, 405);
    assert_eq!(watch.get("/nowhere").await.0, 404);

    gate.open();
    let after_first = watch
        .wait_metrics("the first cycle", |m| {
            m.get("ocync_cycles_total{result=\"success\"}") >= Some(&1.0)
        })
        .await;
    let (status, body) = watch.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(&after_first, "ocync_images_total{status=\"synced\"}"),
        2.0,
        "both images copied by the first cycle, and never again"
    );
    assert_eq!(
        metric(&after_first, "ocync_images_total{status=\"failed\"}"),
        0.0
    );
    assert!(metric(&after_first, "ocync_last_success_timestamp_seconds") > 1.6e9);
    assert!(metric(&after_first, "ocync_last_cycle_timestamp_seconds") > 1.6e9);
    assert!(metric(&after_first, "ocync_bytes_uploaded_total") > 4_000.0);
    let registry_series = format!(
        "ocync_registry_requests_total{{registry=\"{}\"}}",
        gate.addr
    );
    assert!(metric(&after_first, &registry_series) > 0.0);
    assert!(after_first.contains_key(&format!(
        "ocync_registry_throttled_total{{registry=\"{}\"}}",
        gate.addr
    )));

    // The next cycle finds both images up to date, with few requests of its own.
    let after_second = watch
        .wait_metrics("the second cycle", |m| {
            m.get("ocync_cycles_total{result=\"success\"}") >= Some(&2.0)
        })
        .await;
    assert_eq!(
        metric(&after_second, "ocync_images_total{status=\"synced\"}"),
        2.0
    );
    assert!(metric(&after_second, "ocync_images_total{status=\"skipped\"}") >= 2.0);
    assert_eq!(watch.get("/healthz").await.0, 200);
    assert!(
        !watch.stderr().contains("configuration changed"),
        "an unchanged file is not reloaded"
    );

    // Break the file: cycles go on with the last good configuration.
    std::fs::write(&path, "registries: [\nmappings: {").unwrap();
    let line = watch
        .wait_log("keeping the last good configuration from")
        .await
        .unwrap_or_else(|| panic!("no reload error logged:\n{}", watch.stderr()));
    assert!(
        line.contains("ERROR") && line.contains("ocync.yaml:"),
        "{line}"
    );
    let broken = watch
        .wait_metrics("a failed reload", |m| {
            m.get("ocync_config_valid") == Some(&0.0)
                && m.get("ocync_config_reload_failures_total") >= Some(&1.0)
        })
        .await;
    let successes = metric(&broken, "ocync_cycles_total{result=\"success\"}");
    watch
        .wait_metrics("a cycle on the last good configuration", |m| {
            m.get("ocync_cycles_total{result=\"success\"}") > Some(&successes)
        })
        .await;
    let (status, _) = watch.get("/readyz").await;
    assert_eq!(status, 200, "still ready on the last good configuration");

    // Fixed: valid again.
    std::fs::write(&path, &good).unwrap();
    watch
        .wait_metrics("a good reload", |m| {
            m.get("ocync_config_valid") == Some(&1.0)
        })
        .await;
    let stderr = watch.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn cycles_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    layouts(dir.path(), &["app"]);
    let out = format!("oci:{}", dir.path().join("out").display());
    let path = config(dir.path(), &out, &["app"], "");
    let watch = Watch::start(&path, &["--interval", "1", "--cycles", "2", "--json"]).await;
    let stdout = watch.stdout.clone();
    let stderr = watch.stderr.clone();
    let (code, _) = watch.exit().await;
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(code, 0, "{stderr}");
    let stdout = stdout.lock().unwrap().clone();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one JSON line per cycle:\n{stdout}");
    let statuses: Vec<String> = lines
        .iter()
        .map(|line| {
            let report: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            report["images"][0]["status"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(statuses, ["synced", "skipped"], "{stdout}");
    assert_eq!(stderr.matches("summary:").count(), 2, "{stderr}");
}

#[tokio::test]
async fn sigterm_while_waiting_exits_0_at_once() {
    let dir = tempfile::tempdir().unwrap();
    layouts(dir.path(), &["app"]);
    let out = format!("oci:{}", dir.path().join("out").display());
    let path = config(dir.path(), &out, &["app"], "");
    let mut watch = Watch::start(&path, &["--interval", "3600", "--jitter", "5"]).await;
    watch
        .wait_log("next cycle at")
        .await
        .unwrap_or_else(|| panic!("the first cycle never finished:\n{}", watch.stderr()));
    let ready = watch
        .wait_metrics("readiness", |m| {
            m.get("ocync_cycles_total{result=\"success\"}") == Some(&1.0)
        })
        .await;
    assert!(metric(&ready, "ocync_next_cycle_timestamp_seconds") > 1.6e9);
    assert_eq!(watch.get("/readyz").await.0, 200);
    watch.signal("TERM");
    let stderr = watch.stderr.clone();
    let (code, took) = watch.exit().await;
    assert_eq!(code, 0, "{}", stderr.lock().unwrap());
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_cycle_drains_it_and_exits_5() {
    let registry = TestRegistry::plain().await;
    let gate = Gate::start(registry.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    layouts(dir.path(), &["a", "b", "c"]);
    let path = config(
        dir.path(),
        &gate.addr.to_string(),
        &["a", "b", "c"],
        "  max_concurrent_transfers: 1\n",
    );
    let mut watch = Watch::start(&path, &["--interval", "1", "--json"]).await;
    // One image is being copied (its connection waits at the gate), the others wait their turn.
    let started = Instant::now();
    while gate.connections.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "no request reached the target"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.signal("TERM");
    watch
        .wait_log("signal received")
        .await
        .unwrap_or_else(|| panic!("the signal was not seen:\n{}", watch.stderr()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The running image may finish while the engine drains.
    gate.open();
    let stdout = watch.stdout.clone();
    let stderr = watch.stderr.clone();
    let (code, _) = watch.exit().await;
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(code, 5, "{stderr}");
    let stdout = stdout.lock().unwrap().clone();
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the interrupted cycle's report");
    assert_eq!(report["interrupted"], true);
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(statuses.contains(&"interrupted"), "{statuses:?}");
    assert!(
        dir.path().join("cache/state.json").is_file(),
        "the cache is saved on the way out"
    );
}

#[tokio::test]
async fn input_errors_exit_3_before_any_cycle() {
    let dir = tempfile::tempdir().unwrap();
    layouts(dir.path(), &["app"]);
    let out = format!("oci:{}", dir.path().join("out").display());
    let path = config(dir.path(), &out, &["app"], "");

    // Each of these must exit on its own; one that starts watching instead is killed, and
    // the test fails, rather than hanging the suite.
    let run = |args: Vec<String>| async move {
        let child = ocync()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let id = child.id();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
        let output = match tokio::time::timeout(PATIENCE, output).await {
            Ok(output) => output.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").arg(id.to_string()).status();
                panic!("ocync watch did not exit on an input error");
            }
        };
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let args = |extra: &[&str], config: &Path| -> Vec<String> {
        ["watch", "--health-port", "0", "--config"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([config.display().to_string()])
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .collect()
    };

    // An invalid first configuration: nothing to fall back on.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "registries:\n  src:\n    url: oci:./layouts\nmappings:\n  - from: app\n    source: src\n    targets: nowhere\n",
    )
    .unwrap();
    let (code, err) = run(args(&[], &bad)).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("bad.yaml:") && err.contains("nowhere"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());

    let (code, err) = run(args(&[], &dir.path().join("missing.yaml"))).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("missing.yaml"), "{err}");

    // An invalid schedule names the flag and the expression.
    let (code, err) = run(args(&["--schedule", "61 * * * *"], &path)).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--schedule '61 * * * *'"), "{err}");
    let (code, err) = run(args(&["--schedule", "0 0 30 2 *"], &path)).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("never fires"), "{err}");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) = run(vec![
        "watch".into(),
        "--config".into(),
        path.display().to_string(),
        "--health-port".into(),
        port.clone(),
    ])
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("--health-port"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists(), "no cycle ran");
    drop(taken);

    // Flags clap checks.
    let (code, err) = run(args(&["--interval", "0"], &path)).await;
    assert_eq!(code, 3, "{err}");
    let (code, err) = run(args(&["--interval", "5", "--schedule", "* * * * *"], &path)).await;
    assert_eq!(code, 3, "{err}");
}

#[test]
fn help_documents_the_endpoints() {
    let output = ocync().args(["watch", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.contains("/healthz") && help.contains("--schedule"),
        "{help}"
    );
}
