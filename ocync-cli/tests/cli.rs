//! The `ocync` binary end to end: exit codes, stdout (data) versus stderr (logs), credentials
//! from docker's config.json, `SSL_CERT_FILE`, secrets never printed, flat memory on large
//! blobs, and the bundled quickstart layout. Registries are real `docker-registry` processes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ocync, peak_rss_kib};
use ocync_core::{Digest, Manifest};
use ocync_transport::testing::{Fixture, ImageFixture, LargeImage, TestRegistry};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("ocync runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `run` for tests whose registry has an in-process part (the token server): the blocking wait
/// must not stall the runtime that serves it.
async fn run_async(mut cmd: Command) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/layout")
}

#[test]
fn help_documents_exit_codes_and_copy_has_examples() {
    let (code, out, _) = run(ocync().arg("--help"));
    assert_eq!(code, 0);
    for line in [
        "0  success",
        "1  partial failure",
        "2  failure",
        "3  invalid input",
        "4  authentication",
    ] {
        assert!(out.contains(line), "missing '{line}' in:\n{out}");
    }
    let (code, out, _) = run(ocync().args(["copy", "--help"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("Examples:") && out.contains("ocync copy"),
        "{out}"
    );
}

#[test]
fn bad_input_exits_3_and_names_the_input() {
    let (code, out, err) = run(ocync().args(["copy", "ghcr.io/Owner/App:v1", "oci:/tmp/never"]));
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("'ghcr.io/Owner/App:v1'") && err.contains("lowercase"),
        "{err}"
    );

    let (code, _, err) = run(ocync().args(["copy", "oci:", "oci:/tmp/x"]));
    assert_eq!(code, 3);
    assert!(err.contains("'oci:'"), "{err}");

    let (code, _, err) = run(ocync().args(["copy", "only-one-argument"]));
    assert_eq!(code, 3, "usage errors are invalid input: {err}");

    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(ocync().args([
        "copy",
        &format!("oci:{}:v1", dir.path().display()),
        "oci:/tmp/x",
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no oci-layout file"), "{err}");
}

#[test]
fn quickstart_layout_copies_with_digest_on_stdout_and_log_on_stderr() {
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("copy");
    let (code, out, err) = run(ocync().args([
        "copy",
        &format!("oci:{}:demo", quickstart().display()),
        &format!("oci:{}", target.display()),
    ]));
    assert_eq!(code, 0, "{err}");
    let digest: Digest = out
        .trim()
        .parse()
        .expect("stdout is the digest, nothing else");
    assert!(
        err.contains("copied") && err.contains("3 referrers"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("index.json")).unwrap()).unwrap();
    let tagged = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "demo")
        .expect("the tag is kept");
    assert_eq!(tagged["digest"], digest.to_string());

    let (code, out, _) = run(ocync().args([
        "copy",
        "--json",
        &format!("oci:{}:demo", quickstart().display()),
        &format!("oci:{}", target.display()),
    ]));
    assert_eq!(code, 0);
    let report: serde_json::Value =
        serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(report["digest"], digest.to_string());
    assert_eq!(
        report["manifests_pushed"], 0,
        "second copy finds everything present"
    );
}

/// The bundled layout is intact: every blob hashes to its name and every manifest it reaches
/// is present (run scripts/make-quickstart-layout.py to regenerate it).
#[test]
fn quickstart_layout_is_complete() {
    let root = quickstart();
    let blobs = root.join("blobs/sha256");
    let mut count = 0;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            Digest::sha256(&bytes).encoded(),
            entry.file_name().to_str().unwrap()
        );
        count += 1;
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let mut reached = 0;
    let mut pending: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    while let Some(d) = pending.pop() {
        let digest: Digest = d.parse().unwrap();
        let m = Manifest::from_bytes(
            std::fs::read(blobs.join(digest.encoded())).unwrap().into(),
            None,
        )
        .unwrap();
        reached += 1;
        for b in m.blobs() {
            assert!(
                blobs.join(b.digest.encoded()).exists(),
                "missing blob {}",
                b.digest
            );
            reached += 1;
        }
        pending.extend(m.children().iter().map(|c| c.digest.to_string()));
    }
    assert_eq!(count, 15, "blob files");
    assert!(reached >= count);
}

#[tokio::test]
async fn ssl_cert_file_is_honoured() {
    let registry = TestRegistry::tls().await;
    let target = format!("{}/qs/app:v1", registry.host());
    let source = format!("oci:{}:demo", quickstart().display());
    let (code, _, err) = run(ocync().args(["copy", &source, &target]));
    assert_eq!(code, 2, "untrusted CA fails: {err}");
    assert!(
        err.contains("tls handshake") && err.contains(&registry.host()),
        "{err}"
    );
    let (code, _, err) = run(ocync()
        .env("SSL_CERT_FILE", registry.ca_file().unwrap())
        .args(["copy", &source, &target]));
    assert_eq!(code, 0, "{err}");
    let ca_dir = tempfile::tempdir().unwrap();
    std::fs::copy(registry.ca_file().unwrap(), ca_dir.path().join("ca.pem")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = run(ocync()
        .env("SSL_CERT_DIR", ca_dir.path())
        .args(["copy", &target])
        .arg(format!("oci:{}", out.path().join("o").display())));
    assert_eq!(code, 0, "SSL_CERT_DIR trusts the CA too: {err}");
    let (code, _, err) = run(ocync()
        .args(["copy", "--ca-file"])
        .arg(registry.ca_file().unwrap())
        .args([&source, &target]));
    assert_eq!(code, 0, "--ca-file: {err}");
}

fn docker_config(dir: &Path, registry: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
    let path = dir.join("docker");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    path
}

/// Credentials from config.json work; wrong ones exit 4; no secret is printed even at trace.
#[tokio::test]
async fn docker_config_credentials_and_no_secret_in_any_output() {
    for registry in [TestRegistry::htpasswd().await, TestRegistry::token().await] {
        let dir = tempfile::tempdir().unwrap();
        let password = registry.password().unwrap().to_owned();
        let good = docker_config(dir.path(), &registry.host(), "alice", &password);
        let source = format!("oci:{}:demo", quickstart().display());
        let target = format!("{}/qs/app:v1", registry.host());
        let mut cmd = ocync();
        cmd.env("DOCKER_CONFIG", &good)
            .args(["-vv", "copy", &source, &target]);
        let (code, out, err) = run_async(cmd).await;
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("TRACE") || err.contains("DEBUG"),
            "verbose logging is on"
        );
        for (name, text) in [("stdout", &out), ("stderr", &err)] {
            assert!(!text.contains(&password), "password in {name}");
            for line in text
                .lines()
                .filter(|l| l.to_ascii_lowercase().contains("authorization"))
            {
                assert!(
                    !line.contains("Basic ") && !line.contains("Bearer ey"),
                    "credential in {name}: {line}"
                );
            }
        }

        let bad_dir = tempfile::tempdir().unwrap();
        let bad = docker_config(
            bad_dir.path(),
            &registry.host(),
            "alice",
            "not-the-password",
        );
        let mut cmd = ocync();
        cmd.env("DOCKER_CONFIG", &bad)
            .args(["-vv", "copy", &source, &target]);
        let (code, out, err) = run_async(cmd).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains(&registry.host()), "{err}");
        assert!(
            err.contains("docker-config"),
            "names the provider whose credentials failed: {err}"
        );
        assert!(!out.contains("not-the-password") && !err.contains("not-the-password"));
    }
}

#[tokio::test]
async fn unreachable_registry_exits_2_naming_the_host() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (code, _, err) = run(ocync().args(["copy", &format!("{addr}/app:v1"), "oci:/tmp/never"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&addr.to_string()) && err.contains("cannot connect"),
        "{err}"
    );
}

/// Peak memory of a copy does not grow with blob size: a 256 MiB layer goes layout ->
/// registry -> layout through a process whose peak RSS stays far below the blob.
#[tokio::test]
async fn large_blob_streams_with_flat_memory() {
    const LAYER: u64 = 256 * 1024 * 1024;
    let registry = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let large = LargeImage::new(42, "linux/amd64", &[LAYER]);
    let written = large.write_layout(&dir.path().join("src"), "big").unwrap();
    let target = format!("{}/big/app:big", registry.host());

    let peak_up = peak_rss_kib(ocync().args([
        "copy",
        &format!("oci:{}:big", dir.path().join("src").display()),
        &target,
    ]));
    let out = dir.path().join("out");
    let peak_down =
        peak_rss_kib(ocync().args(["copy", &target, &format!("oci:{}", out.display())]));
    let copied = out
        .join("blobs/sha256")
        .join(written.layers[0].digest.encoded());
    assert_eq!(std::fs::metadata(&copied).unwrap().len(), LAYER);
    eprintln!(
        "peak RSS: upload {peak_up} KiB, download {peak_down} KiB for a {} MiB layer",
        LAYER >> 20
    );
    for (what, peak) in [("upload", peak_up), ("download", peak_down)] {
        assert!(
            peak < 96 * 1024,
            "{what} peak RSS {peak} KiB for a {} MiB blob",
            LAYER >> 20
        );
    }
}

#[tokio::test]
async fn fixture_round_trip_through_the_cli_keeps_every_digest() {
    let registry = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::multi_arch_with_referrers(21);
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let one = format!("{}/cli/one:v1", registry.host());
    let two = format!("{}/cli/two", registry.host());
    let out = dir.path().join("out");
    for (from, to) in [
        (format!("oci:{}/src:v1", dir.path().display()), one.clone()),
        (one.clone(), two.clone()),
        (format!("{two}:v1"), format!("oci:{}", out.display())),
    ] {
        let (code, _, err) = run(ocync().args(["copy", &from, &to]));
        assert_eq!(code, 0, "{from} -> {to}: {err}");
    }
    for m in fixture.all_manifests() {
        let bytes = std::fs::read(out.join("blobs/sha256").join(m.digest().encoded())).unwrap();
        assert_eq!(bytes, m.bytes().as_ref());
    }
    let _: &ImageFixture = &fixture.top;
}
