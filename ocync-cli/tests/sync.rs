//! `ocync sync` end to end against real registries: the JSON report on stdout, the exit codes
//! (all ok, partial, total failure, auth, interrupted), and a SIGTERM in the middle of a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ocync_transport::testing::{Fixture, ImageFixture, TestRegistry, registries_for};

fn ocync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocync"));
    cmd.env("DOCKER_CONFIG", "/nonexistent-docker-config")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

async fn run(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

async fn seed(registry: &TestRegistry, repository: &str, tag: &str, fixture: &Fixture) {
    let dir = tempfile::tempdir().unwrap();
    fixture.write_layout(dir.path(), tag).unwrap();
    ocync_transport::Copy::new(
        format!("oci:{}:{tag}", dir.path().display()),
        format!("{}/{repository}:{tag}", registry.host()),
    )
    .registries(&registries_for(&[registry]))
    .run()
    .await
    .unwrap();
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("ocync.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

fn config(source: &str, target: &str, mappings: &str, extra: &str) -> String {
    format!(
        "global:\n  cache_dir: ./cache\n{extra}\nregistries:\n  src:\n    url: http://{source}\n    auth_type: anonymous\n  dst:\n    url: http://{target}\n    auth_type: anonymous\ndefaults:\n  source: src\n  targets: dst\n  tags:\n    glob: \"*\"\nmappings:\n{mappings}"
    )
}

#[tokio::test]
async fn json_report_and_exit_codes() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    seed(&source, "app", "v1", &Fixture::multi_arch_with_referrers(1)).await;
    seed(
        &source,
        "app",
        "v2",
        &Fixture::single(ImageFixture::image(2, "linux/amd64", &[500])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    // All ok: 0, and stdout is one JSON document.
    let path = write_config(
        dir.path(),
        &config(&source.host(), &target.host(), "  - from: app\n", ""),
    );
    let mut cmd = ocync();
    cmd.args(["sync", "--json", "--config"]).arg(&path);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("stdout is the JSON report");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert!(images.iter().all(|i| i["status"] == "synced"), "{images:?}");
    assert!(
        report["registries"][source.host()]["total_requests"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(err.contains("summary:"), "{err}");

    // Warm: 0, everything up to date.
    let mut cmd = ocync();
    cmd.args(["sync", "--json", "--config"]).arg(&path);
    let (code, out, _) = run(cmd).await;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "skipped")
    );

    // One good mapping, one missing source repository: 1 (partial).
    let path = write_config(
        dir.path(),
        &config(
            &source.host(),
            &target.host(),
            "  - from: app\n  - from: not/there\n",
            "",
        ),
    );
    let mut cmd = ocync();
    cmd.args(["sync", "--config"]).arg(&path);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not/there"), "{err}");

    // Nothing can work: 2.
    let path = write_config(
        dir.path(),
        &config(&source.host(), &target.host(), "  - from: not/there\n", ""),
    );
    let mut cmd = ocync();
    cmd.args(["sync", "--config"]).arg(&path);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 2, "{err}");

    // Invalid configuration: 3, before any request.
    let mark = source.request_mark();
    let path = write_config(
        dir.path(),
        &config(
            &source.host(),
            &target.host(),
            "  - from: app\n    targets: nowhere\n",
            "",
        ),
    );
    let mut cmd = ocync();
    cmd.args(["sync", "--config"]).arg(&path);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("ocync.yaml:") && err.contains("nowhere"),
        "{err}"
    );
    assert!(
        source.requests_since(mark).is_empty(),
        "no request before the config is valid"
    );
}

#[tokio::test]
async fn wrong_credentials_exit_4() {
    let source = TestRegistry::htpasswd().await;
    let target = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "registries:\n  src:\n    url: http://{}\n    auth_type: basic\n    credentials:\n      username: alice\n      password: wrong\n  dst:\n    url: http://{}\nmappings:\n  - from: app\n    source: src\n    targets: dst\n",
        source.host(),
        target.host()
    );
    let path = write_config(dir.path(), &body);
    let mut cmd = ocync();
    cmd.args(["sync", "--config"]).arg(&path);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 4, "{err}");
    assert!(!out.contains("wrong") && !err.contains("password: wrong"));
}

/// A TCP proxy that lets `bytes_per_sec` through in each direction.
async fn throttled_proxy(
    upstream: std::net::SocketAddr,
    bytes_per_sec: usize,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pipe = |mut r: tokio::net::tcp::OwnedReadHalf,
                            mut w: tokio::net::tcp::OwnedWriteHalf| async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs_f64(
                            n as f64 / bytes_per_sec as f64,
                        ))
                        .await;
                    }
                    let _ = w.shutdown().await;
                };
                tokio::join!(pipe(cr, sw), pipe(sr, cw));
            });
        }
    });
    addr
}

/// SIGTERM while the first image is transferring: it finishes, the images that had not started
/// are reported interrupted, the exit code is 5, and the next run completes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_reports_and_the_next_run_completes() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        seed(
            &source,
            "app",
            tag,
            &Fixture::single(ImageFixture::image(
                10 + i as u64,
                "linux/amd64",
                &[3_000_000],
            )),
        )
        .await;
    }
    // 3 MB per image at 2 MB/s: the first image takes about 1.5 s.
    let slow = throttled_proxy(source.addr(), 2_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(
            &slow.to_string(),
            &target.host(),
            "  - from: app\n",
            "  max_concurrent_transfers: 1",
        ),
    );
    let mut child = ocync()
        .args(["sync", "--json", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first blob transfer has begun at the target, then signal.
    let started = std::time::Instant::now();
    while !target.requests().iter().any(|r| r.method == "POST") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the sync never started uploading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (child.wait().unwrap(), out, err)
    })
    .await
    .unwrap();
    let (status, out, err) = output;
    assert_eq!(status.code(), Some(5), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).expect("the report is still written");
    assert_eq!(report["interrupted"], true);
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"synced"),
        "the running image finished: {statuses:?}\n{err}"
    );
    assert!(
        statuses.contains(&"interrupted"),
        "unstarted images are listed: {statuses:?}"
    );
    assert_eq!(
        statuses.len(),
        3,
        "every image is accounted for: {statuses:?}"
    );

    let mut cmd = ocync();
    cmd.args(["sync", "--json", "--config"]).arg(&path);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "synced").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "skipped").count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn tags_previews_a_filter() {
    let source = TestRegistry::plain().await;
    let fixture = Fixture::multi_arch_with_referrers(4);
    for tag in ["1.0.0", "1.1.0", "2.0.0-rc1", "latest"] {
        seed(&source, "app", tag, &fixture).await;
    }
    let repo = format!("{}/app", source.host());
    let mut cmd = ocync();
    cmd.args(["tags", &repo, "--semver", ">=1.1", "--sort", "semver"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1.1.0"], "{err}");
    let mut cmd = ocync();
    cmd.args(["tags", &repo]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let mut tags: Vec<&str> = out.lines().collect();
    tags.sort();
    assert_eq!(
        tags,
        ["1.0.0", "1.1.0", "latest"],
        "pre-releases and sha256-<hex> referrers tags are not listed: {err}"
    );
    assert!(err.contains("3 of"), "{err}");
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    seed(
        &source,
        "app",
        "v1",
        &Fixture::single(ImageFixture::image(3, "linux/amd64", &[10_000])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(&source.host(), &target.host(), "  - from: app\n", ""),
    );
    target.clear_requests();
    let mut cmd = ocync();
    cmd.args(["sync", "--dry-run", "--config"]).arg(&path);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("copy") && out.contains("app:v1") && out.contains("to upload"),
        "{out}"
    );
    assert!(
        target
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "{:?}",
        target.requests()
    );
    assert!(
        !dir.path().join("cache/state.json").exists(),
        "a dry run leaves no cache"
    );
}
