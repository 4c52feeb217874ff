//! Conformance against the real Debian `docker-registry` (distribution 2.8.2), started per test
//! on a random loopback port: plain HTTP, TLS with a test CA, htpasswd, and token auth.
//!
//! The round trip goes layout -> registry -> registry (another repository, by mount) -> layout
//! and compares every manifest and blob byte for byte; request counts come from the registry's
//! own access log, so an optimisation is proved by a request the registry never saw.

use std::collections::HashSet;
use std::path::Path;

use ocync_core::Digest;
use ocync_transport::testing::{Fixture, ImageFixture, TestRegistry, registries_for};
use ocync_transport::{
    ClientBuilder, ClientStats, Copy, CopyOptions, CopyReport, ErrorKind, Layout, Registries,
    Repository, UploadMode, copy_image,
};

async fn copy(
    registries: &Registries,
    source: &str,
    target: &str,
) -> Result<CopyReport, ocync_transport::Error> {
    Copy::new(source, target).registries(registries).run().await
}

/// Every manifest and blob of the fixture is in the layout at `dir` with identical bytes.
fn assert_layout_holds(dir: &Path, fixture: &Fixture) {
    let blob =
        |d: &Digest| std::fs::read(dir.join("blobs/sha256").join(d.encoded())).unwrap_or_default();
    for m in fixture.all_manifests() {
        assert_eq!(
            blob(m.digest()),
            m.bytes().as_ref(),
            "manifest {} differs",
            m.digest()
        );
    }
    for b in fixture.all_blobs() {
        assert_eq!(
            blob(b.digest()),
            b.bytes.as_ref(),
            "blob {} differs",
            b.digest()
        );
    }
}

/// The round trip, in one registry configuration; the registry client's counters after it.
async fn round_trip(registry: &TestRegistry) -> ClientStats {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::multi_arch_with_referrers(7);
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let registries = registries_for(&[registry]);
    let host = registry.host();
    let src = format!("oci:{}/src:v1", dir.path().display());
    let one = format!("{host}/rt/one:v1");
    let two = format!("{host}/rt/two:v1");
    let out = dir.path().join("out");

    let report = copy(&registries, &src, &one).await.unwrap();
    assert_eq!(report.digest, *fixture.top.digest());
    assert_eq!(report.blobs_uploaded as usize, fixture.all_blobs().len());
    assert_eq!(report.referrers_copied as usize, fixture.referrers.len());
    // index + children + referrers + one fallback-tag index per subject with referrers.
    let subjects: HashSet<_> = fixture
        .referrer_edges()
        .into_iter()
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(
        report.manifests_pushed as usize,
        1 + fixture.children.len() + fixture.referrers.len() + subjects.len()
    );

    // Same registry, another repository: every blob by mount, none downloaded or re-uploaded.
    let mark = registry.request_mark();
    let report = copy(&registries, &one, &two).await.unwrap();
    assert_eq!(report.blobs_mounted as usize, fixture.all_blobs().len());
    assert_eq!((report.blobs_uploaded, report.bytes_uploaded), (0, 0));
    let seen = registry.requests_since(mark);
    assert!(
        !seen
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/blobs/sha256:")),
        "no blob was downloaded: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|r| r.method == "PATCH"
                || (r.method == "PUT" && r.path.contains("/blobs/uploads/")))
    );

    // The fallback-tag indexes are byte-identical in both repositories.
    let client = registries.client(&host).unwrap();
    for subject in &subjects {
        let a = client
            .manifest("rt/one", &subject.referrers_tag())
            .await
            .unwrap();
        let b = client
            .manifest("rt/two", &subject.referrers_tag())
            .await
            .unwrap();
        assert_eq!(a.digest(), b.digest(), "referrers index of {subject}");
    }

    let report = copy(&registries, &two, &format!("oci:{}:v1", out.display()))
        .await
        .unwrap();
    assert_eq!(report.digest, *fixture.top.digest());
    assert_layout_holds(&out, &fixture);
    let layout = Layout::open(&out).await.unwrap();
    for (referrer, subject) in fixture.referrer_edges() {
        let found = layout.referrers(subject).await.unwrap();
        assert!(
            found.descriptors.iter().any(|d| d.digest == *referrer),
            "{referrer} refers to {subject}"
        );
    }

    // Nothing changed: a second copy writes nothing.
    let mark = registry.request_mark();
    let report = copy(&registries, &one, &two).await.unwrap();
    assert_eq!(
        (
            report.manifests_pushed,
            report.blobs_uploaded,
            report.blobs_mounted
        ),
        (0, 0, 0)
    );
    let writes: Vec<_> = registry
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "warm copy wrote: {writes:?}");
    client.stats()
}

#[tokio::test]
async fn round_trip_plain_http() {
    let stats = round_trip(&TestRegistry::plain().await).await;
    assert_eq!(stats.http2_responses, 0, "no HTTP/2 without TLS (no h2c)");
}

#[tokio::test]
async fn round_trip_tls_with_test_ca() {
    let stats = round_trip(&TestRegistry::tls().await).await;
    // The registry offers h2 by ALPN and every request went over it (134 of 134 measured).
    assert!(stats.total() > 0);
    assert_eq!(stats.http2_responses, stats.total(), "{stats:?}");
}

#[tokio::test]
async fn round_trip_htpasswd() {
    round_trip(&TestRegistry::htpasswd().await).await;
}

#[tokio::test]
async fn round_trip_token_auth() {
    let registry = TestRegistry::token().await;
    round_trip(&registry).await;
    let tokens = registry.token_server().unwrap();
    // Tokens are cached per scope set: no scope set was fetched twice.
    let log = tokens.log();
    let mut seen = HashSet::new();
    for entry in &log {
        let mut scopes = entry.scopes.clone();
        scopes.sort();
        assert!(
            seen.insert(scopes.clone()),
            "token for {scopes:?} fetched twice: {log:?}"
        );
    }
}

/// Plain registry to TLS registry: two real registries, no mount possible, bytes streamed.
#[tokio::test]
async fn copy_between_two_registries() {
    let a = TestRegistry::plain().await;
    let b = TestRegistry::tls().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::multi_arch_with_referrers(11);
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let registries = registries_for(&[&a, &b]);
    copy(
        &registries,
        &format!("oci:{}/src:v1", dir.path().display()),
        &format!("{}/x/app:v1", a.host()),
    )
    .await
    .unwrap();
    let report = copy(
        &registries,
        &format!("{}/x/app:v1", a.host()),
        &format!("{}/y/app", b.host()),
    )
    .await
    .unwrap();
    assert_eq!(
        report.target,
        format!("{}/y/app:v1", b.host()),
        "the target takes the source's tag"
    );
    assert_eq!(report.blobs_mounted, 0);
    assert_eq!(report.blobs_uploaded as usize, fixture.all_blobs().len());
    let out = dir.path().join("out");
    copy(
        &registries,
        &format!("{}/y/app:v1", b.host()),
        &format!("oci:{}", out.display()),
    )
    .await
    .unwrap();
    assert_layout_holds(&out, &fixture);
}

/// Chunked uploads (the path for registries that cap request bodies) against the real registry.
#[tokio::test]
async fn chunked_upload_round_trip() {
    let registry = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(3, "linux/amd64", &[300_000, 70_000]));
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let mut registries = registries_for(&[&registry]);
    registries.configure(
        &registry.host(),
        ClientBuilder::new(&registry.host()).upload_mode(UploadMode::Chunked {
            chunk_size: 64 * 1024,
        }),
    );
    let target = format!("{}/chunked/app:v1", registry.host());
    copy(
        &registries,
        &format!("oci:{}/src:v1", dir.path().display()),
        &target,
    )
    .await
    .unwrap();
    // 300,000 bytes in 64 KiB chunks is 5 PATCHes; 70,000 is 2; the config 1.
    assert_eq!(
        registry.count_requests("PATCH", "/v2/chunked/app/blobs/uploads/"),
        8
    );
    let out = dir.path().join("out");
    copy(&registries, &target, &format!("oci:{}", out.display()))
        .await
        .unwrap();
    assert_layout_holds(&out, &fixture);
}

/// A registry given with a path (the ACR emulator's `localhost:<port>/<registry>`) keeps every
/// repository under that path.
#[tokio::test]
async fn path_prefixed_registry() {
    let registry = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(5, "linux/amd64", &[1000]));
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let client = ClientBuilder::new(&format!("{}/myregistry", registry.host()))
        .build()
        .unwrap();
    let source = Repository::layout(Layout::open(dir.path().join("src")).await.unwrap());
    let target = Repository::registry(client, "demo/app");
    copy_image(&source, "v1", &target, Some("v1"), &CopyOptions::default())
        .await
        .unwrap();
    let catalog: serde_json::Value = registry
        .client()
        .get(format!("{}/v2/_catalog", registry.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["myregistry/demo/app"])
    );
}

#[tokio::test]
async fn wrong_password_is_denied_naming_registry_repository_and_action() {
    let registry = TestRegistry::htpasswd().await;
    let dir = tempfile::tempdir().unwrap();
    Fixture::single(ImageFixture::image(1, "linux/amd64", &[100]))
        .write_layout(&dir.path().join("src"), "v1")
        .unwrap();
    let chain = ocync_auth::StaticProvider::for_registry(
        registry.host(),
        ocync_auth::Credential::basic("alice", "wrong-password"),
    );
    let mut registries = Registries::new(std::sync::Arc::new(chain));
    registries.configure(&registry.host(), ClientBuilder::new(&registry.host()));
    let err = copy(
        &registries,
        &format!("oci:{}/src:v1", dir.path().display()),
        &format!("{}/team/app:v1", registry.host()),
    )
    .await
    .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Denied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&registry.host()) && msg.contains("'team/app'"),
        "{msg}"
    );
    assert!(
        msg.contains("refused the credentials from static"),
        "names the provider: {msg}"
    );
    assert!(
        !format!("{msg} {err:?}").contains("wrong-password"),
        "no secret in the error"
    );
}

#[tokio::test]
async fn token_server_refusal_is_an_auth_error_naming_the_registry() {
    let registry = TestRegistry::token().await;
    let chain = ocync_auth::StaticProvider::for_registry(
        registry.host(),
        ocync_auth::Credential::basic("alice", "nope"),
    );
    let registries = Registries::new(std::sync::Arc::new(chain));
    let err = copy(
        &registries,
        &format!("{}/app:v1", registry.host()),
        "oci:/nonexistent-never-created",
    )
    .await
    .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(err.to_string().contains(&registry.host()), "{err}");
    assert!(
        !format!("{err} {err:?}").contains("nope"),
        "no secret in the error"
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error_with_the_fix() {
    let registry = TestRegistry::tls().await;
    let registries = Registries::new(std::sync::Arc::new(ocync_auth::AnonymousProvider));
    let err = copy(
        &registries,
        &format!("{}/app:v1", registry.host()),
        "oci:/nonexistent-never-created",
    )
    .await
    .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&registry.host()) && msg.contains("ca_file"),
        "{msg}"
    );
}

#[tokio::test]
async fn skip_verify_accepts_an_untrusted_certificate() {
    let registry = TestRegistry::tls().await;
    let strict = ClientBuilder::new(&registry.host()).build().unwrap();
    assert!(matches!(
        strict.ping().await.unwrap_err().kind(),
        ErrorKind::Tls { .. }
    ));
    let lax = ClientBuilder::new(&registry.host())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    lax.ping().await.unwrap();
    let trusted = ClientBuilder::new(&registry.host())
        .ca_file(registry.ca_file().unwrap())
        .build()
        .unwrap();
    trusted.ping().await.unwrap();
}

/// Stored bytes that do not match their digest are detected while streaming, and nothing is
/// committed at the target: no blob, no manifest.
#[tokio::test]
async fn corrupt_source_blob_is_never_pushed() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(9, "linux/amd64", &[50_000]));
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let registries = registries_for(&[&source, &target]);
    copy(
        &registries,
        &format!("oci:{}/src:v1", dir.path().display()),
        &format!("{}/app:v1", source.host()),
    )
    .await
    .unwrap();
    let layer = &fixture.top.layers()[0];
    let path = source.blob_data_path(layer.digest());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1234] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let err = copy(
        &registries,
        &format!("{}/app:v1", source.host()),
        &format!("{}/app:v1", target.host()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BlobDigest { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&layer.digest().to_string()) && msg.contains(&source.host()),
        "{msg}"
    );
    let client = registries.client(&target.host()).unwrap();
    assert!(
        !client.blob_exists("app", layer.digest()).await.unwrap(),
        "corrupt blob committed"
    );
    assert!(
        client.manifest_head("app", "v1").await.unwrap().is_none(),
        "manifest pushed without its blob"
    );
}

#[tokio::test]
async fn truncated_stored_blob_is_a_size_error() {
    let source = TestRegistry::plain().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(10, "linux/amd64", &[80_000]));
    fixture.write_layout(&dir.path().join("src"), "v1").unwrap();
    let registries = registries_for(&[&source]);
    copy(
        &registries,
        &format!("oci:{}/src:v1", dir.path().display()),
        &format!("{}/app:v1", source.host()),
    )
    .await
    .unwrap();
    let layer = &fixture.top.layers()[0];
    let path = source.blob_data_path(layer.digest());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..30_000]).unwrap();
    let out = dir.path().join("out");
    let err = copy(
        &registries,
        &format!("{}/app:v1", source.host()),
        &format!("oci:{}", out.display()),
    )
    .await
    .unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
    assert!(
        err.to_string().contains(&layer.digest().to_string()),
        "{err}"
    );
    assert!(
        !out.join("blobs/sha256")
            .join(layer.digest().encoded())
            .exists()
    );
}

#[tokio::test]
async fn missing_tag_names_tag_and_repository() {
    let registry = TestRegistry::plain().await;
    let registries = registries_for(&[&registry]);
    let err = copy(
        &registries,
        &format!("{}/nothing/here:v9", registry.host()),
        "oci:/nonexistent-never-created",
    )
    .await
    .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("'v9'") && msg.contains("nothing/here"),
        "{msg}"
    );
}

#[tokio::test]
async fn oversized_manifest_in_a_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(12, "linux/amd64", &[10]));
    fixture.write_layout(dir.path(), "v1").unwrap();
    // Replace the index entry with a 5 MiB manifest blob.
    let big = format!(
        "{{\"schemaVersion\":2,\"manifests\":[],\"pad\":\"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let digest = Digest::sha256(big.as_bytes());
    std::fs::write(dir.path().join("blobs/sha256").join(digest.encoded()), &big).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": big.len(),
        "annotations": {"org.opencontainers.image.ref.name": "big"}}]});
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let registries = Registries::new(std::sync::Arc::new(ocync_auth::AnonymousProvider));
    let err = copy(
        &registries,
        &format!("oci:{}:big", dir.path().display()),
        &format!("oci:{}/out", dir.path().display()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ManifestTooLarge { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("'big'"), "{err}");
}

/// `check_access` really obtains a token for the scope: anonymous may pull but not push on the
/// token registry, alice may do both, and the push check leaves no upload session behind.
#[tokio::test]
async fn check_access_proves_pull_and_push_scopes() {
    let registry = TestRegistry::token().await;
    let anonymous = ClientBuilder::new(&registry.host()).build().unwrap();
    anonymous.check_access("team/app", false).await.unwrap();
    let err = anonymous.check_access("team/app", true).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(
        err.to_string().contains("push") && err.to_string().contains("'team/app'"),
        "{err}"
    );

    let registries = registries_for(&[&registry]);
    let alice = registries.client(&registry.host()).unwrap();
    registry.clear_requests();
    alice.check_access("team/app", false).await.unwrap();
    alice.check_access("team/app", true).await.unwrap();
    let lines = registry.requests();
    assert!(
        lines.iter().any(|r| r.method == "POST" && r.status == 202),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|r| r.method == "DELETE"),
        "the session is deleted: {lines:?}"
    );
    let tokens = registry.token_server().unwrap().log();
    assert!(
        tokens
            .iter()
            .any(|t| t.scopes.iter().any(|s| s.contains("push"))),
        "{tokens:?}"
    );
}
