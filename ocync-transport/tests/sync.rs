//! The sync engine against real `docker-registry` processes: what it uploads, how often, in
//! which order, and what it does when things go wrong. Counts come from the registries' own
//! access logs.

use std::collections::HashMap;
use std::sync::Arc;

use ocync_core::{Digest, MediaType};
use ocync_transport::testing::{
    Blob, Fixture, ImageFixture, RequestLine, TestRegistry, registries_for,
};
use ocync_transport::{
    Copy, Endpoint, Mapping, Registries, Status, SyncOptions, SyncPlan, SyncReport, TagFilter,
    TagRules, Target, sync,
};

/// Put a fixture into `registry/repository:tag` (through a layout).
async fn seed(
    registries: &Registries,
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    fixture: &Fixture,
) {
    let dir = tempfile::tempdir().unwrap();
    fixture.write_layout(dir.path(), tag).unwrap();
    Copy::new(
        format!("oci:{}:{tag}", dir.path().display()),
        format!("{}/{repository}:{tag}", registry.host()),
    )
    .registries(registries)
    .run()
    .await
    .unwrap();
}

fn all_tags() -> TagFilter {
    TagFilter::new(None, None).unwrap()
}

fn mapping(
    registries: &Registries,
    source: &TestRegistry,
    from: &str,
    targets: &[(&TestRegistry, &str)],
) -> Mapping {
    let targets = targets
        .iter()
        .map(|(r, to)| {
            Target::new(
                r.host(),
                Endpoint::Registry(registries.client(&r.host()).unwrap()),
                *to,
            )
        })
        .collect();
    Mapping::new(
        Endpoint::Registry(registries.client(&source.host()).unwrap()),
        from,
        targets,
        all_tags(),
    )
}

fn assert_all(report: &SyncReport, status: Status) {
    for image in &report.images {
        assert_eq!(image.status, status, "{image:?}");
    }
    assert!(
        report.mapping_errors.is_empty(),
        "{:?}",
        report.mapping_errors
    );
}

/// Completed blob uploads per digest seen by a registry.
fn uploads(lines: &[RequestLine]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in lines {
        if r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.status == 201 {
            let digest = r
                .query
                .as_deref()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or_default()
                .replace("%3A", ":");
            *out.entry(digest).or_default() += 1;
        }
    }
    out
}

/// Three repositories with three tags each, built on shared base layers: every unique blob is
/// uploaded to the target registry exactly once, other repositories mount it, and each source
/// blob is read once.
#[tokio::test]
async fn shared_layers_are_uploaded_once_and_mounted_elsewhere() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let base = Blob::random(1, 40_000, MediaType::OciLayerGzip);
    let runtime = Blob::random(2, 30_000, MediaType::OciLayerGzip);
    let mut unique = std::collections::BTreeSet::new();
    let mut plan = SyncPlan::default();
    for (r, repo) in ["app/one", "app/two", "app/three"].iter().enumerate() {
        for (v, tag) in ["1.0", "1.1", "2.0"].iter().enumerate() {
            let own = Blob::random(
                100 + (r * 10 + v) as u64,
                5_000 + v * 100,
                MediaType::OciLayerGzip,
            );
            let image = ImageFixture::from_layers(
                (r * 10 + v) as u64,
                "linux/amd64",
                vec![base.clone(), runtime.clone(), own],
            );
            unique.extend(image.blobs.iter().map(|b| b.digest().clone()));
            seed(&registries, &source, repo, tag, &Fixture::single(image)).await;
        }
        plan.mappings
            .push(mapping(&registries, &source, repo, &[(&target, repo)]));
    }
    let mark = source.request_mark();
    target.clear_requests();
    let report = sync(plan, SyncOptions::default()).await;
    assert_all(&report, Status::Synced);
    assert_eq!(report.images.len(), 9);

    let uploaded = uploads(&target.requests());
    // Least privilege: a sync never lists the target's tags or catalog (a target token needs
    // only pull and push on the repositories it writes).
    assert!(
        !target
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/tags/list") || r.path.ends_with("/_catalog")),
        "{:?}",
        target.requests()
    );
    assert_eq!(
        uploaded.len(),
        unique.len(),
        "every unique blob uploaded: {uploaded:?}"
    );
    assert!(
        uploaded.values().all(|&n| n == 1),
        "no blob uploaded twice: {uploaded:?}"
    );
    let mounts = target
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.query.as_deref().is_some_and(|q| q.contains("mount="))
                && r.status == 201
        })
        .count();
    assert_eq!(
        mounts,
        2 * 2,
        "base and runtime layers mounted into the two other repositories"
    );
    let mut reads: HashMap<String, usize> = HashMap::new();
    for r in source.requests_since(mark) {
        if r.method == "GET" && r.path.contains("/blobs/sha256:") {
            *reads
                .entry(r.path.rsplit('/').next().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert!(
        reads.values().all(|&n| n == 1),
        "each source blob read once: {reads:?}"
    );
    assert_eq!(
        report.bytes_uploaded(),
        unique.iter().map(|d| blob_size(&target, d)).sum::<u64>()
    );
}

fn blob_size(registry: &TestRegistry, digest: &Digest) -> u64 {
    std::fs::metadata(registry.blob_data_path(digest))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// `latest` and `1.0` point at one digest: the manifest is fetched once, both tags arrive, and
/// a second run is all skips costing one HEAD per tag per side plus the tag list.
#[tokio::test]
async fn alias_tags_and_a_warm_run() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let fixture = Fixture::multi_arch_with_referrers(3);
    for tag in ["1.0", "latest"] {
        seed(&registries, &source, "app", tag, &fixture).await;
    }
    let cache = tempfile::tempdir().unwrap();
    let options = SyncOptions::default().cache(cache.path().join("state.json"));
    let plan = || SyncPlan {
        mappings: vec![mapping(
            &registries,
            &source,
            "app",
            &[(&target, "mirror/app")],
        )],
    };
    let mark = source.request_mark();
    let report = sync(plan(), options.clone()).await;
    assert_all(&report, Status::Synced);
    let client = registries.client(&target.host()).unwrap();
    for tag in ["1.0", "latest"] {
        let d = client
            .manifest_head("mirror/app", tag)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.digest, *fixture.top.digest());
    }
    let index_gets = source
        .requests_since(mark)
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with(&format!("/manifests/{}", fixture.top.digest()))
        })
        .count();
    assert_eq!(
        index_gets, 0,
        "the index was fetched by tag, never again by digest"
    );
    // Referrers arrived through the fallback tags, byte-identical.
    for (_, subject) in fixture.referrer_edges() {
        let src = registries
            .client(&source.host())
            .unwrap()
            .manifest("app", &subject.referrers_tag())
            .await
            .unwrap();
        let dst = client
            .manifest("mirror/app", &subject.referrers_tag())
            .await
            .unwrap();
        assert_eq!(src.digest(), dst.digest());
    }

    // Warm: nothing changed.
    let src_mark = source.request_mark();
    let dst_mark = target.request_mark();
    let report = sync(plan(), options).await;
    assert_all(&report, Status::Skipped);
    let src = source.requests_since(src_mark);
    let dst = target.requests_since(dst_mark);
    assert!(
        src.iter()
            .all(|r| r.method == "HEAD" || r.path.ends_with("/tags/list")),
        "source: {src:?}"
    );
    assert!(dst.iter().all(|r| r.method == "HEAD"), "target: {dst:?}");
    let tag_heads = |lines: &[RequestLine]| {
        lines
            .iter()
            .filter(|r| {
                r.method == "HEAD" && (r.path.ends_with("/1.0") || r.path.ends_with("/latest"))
            })
            .count()
    };
    assert_eq!(tag_heads(&src), 2);
    assert_eq!(tag_heads(&dst), 2);
    assert!(
        src.len() <= 2 + 1 + 1,
        "one HEAD per tag, one tag list, one referrers-tag HEAD: {src:?}"
    );
    assert_eq!(dst.len(), 2, "one HEAD per tag: {dst:?}");
}

/// Platform filtering: only the selected child and its blobs travel, and the rebuilt index has
/// the same digest every run.
#[tokio::test]
async fn filtered_platform_is_deterministic_and_copies_only_that_platform() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let fixture = Fixture::multi_arch_with_referrers(5);
    seed(&registries, &source, "app", "v1", &fixture).await;
    let amd64 = fixture.child("linux/amd64").unwrap();
    let arm64 = fixture.child("linux/arm64").unwrap();
    let platforms = Some(vec!["linux/amd64".parse().unwrap()]);
    let plan = SyncPlan {
        mappings: vec![
            mapping(&registries, &source, "app", &[(&target, "one")]).platforms(platforms.clone()),
            mapping(&registries, &source, "app", &[(&target, "two")]).platforms(platforms),
        ],
    };
    let report = sync(plan, SyncOptions::default()).await;
    assert_all(&report, Status::Synced);
    let client = registries.client(&target.host()).unwrap();
    let one = client.manifest("one", "v1").await.unwrap();
    let two = client.manifest("two", "v1").await.unwrap();
    assert_eq!(
        one.digest(),
        two.digest(),
        "same input, same filtered index"
    );
    assert_ne!(one.digest(), fixture.top.digest());
    assert_eq!(one.children().len(), 1);
    assert_eq!(one.children()[0].digest, *amd64.digest());
    for b in arm64
        .layers()
        .iter()
        .filter(|b| !amd64.layers().iter().any(|a| a.digest() == b.digest()))
    {
        assert!(
            !client.blob_exists("one", b.digest()).await.unwrap(),
            "arm64-only blob copied"
        );
    }
    // The SBOM on the amd64 child came along; the signature on the unfiltered index did not.
    let sbom = fixture.referrers_of(amd64.digest());
    assert!(
        client
            .manifest_head("one", &sbom[0].digest().to_string())
            .await
            .unwrap()
            .is_some()
    );
    let signature = fixture.referrers_of(fixture.top.digest());
    assert!(
        client
            .manifest_head("one", &signature[0].digest().to_string())
            .await
            .unwrap()
            .is_none()
    );
}

/// Two targets: each source blob is read once and teed to both.
#[tokio::test]
async fn two_targets_share_one_source_read() {
    let source = TestRegistry::plain().await;
    let a = TestRegistry::plain().await;
    let b = TestRegistry::tls().await;
    let registries = registries_for(&[&source, &a, &b]);
    let fixture = Fixture::single(ImageFixture::image(8, "linux/amd64", &[200_000, 50_000]));
    seed(&registries, &source, "app", "v1", &fixture).await;
    let mark = source.request_mark();
    let report = sync(
        SyncPlan {
            mappings: vec![mapping(
                &registries,
                &source,
                "app",
                &[(&a, "app"), (&b, "copy/app")],
            )],
        },
        SyncOptions::default(),
    )
    .await;
    assert_all(&report, Status::Synced);
    assert_eq!(report.images.len(), 2);
    let blob_gets = source
        .requests_since(mark)
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
        .count();
    assert_eq!(
        blob_gets,
        fixture.all_blobs().len(),
        "one read per blob for two targets"
    );
    for (registry, repo) in [(&a, "app"), (&b, "copy/app")] {
        let d = registries
            .client(&registry.host())
            .unwrap()
            .manifest_head(repo, "v1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.digest, *fixture.top.digest());
    }
}

/// The target lost a blob the cache says it has: the manifest push is refused
/// (MANIFEST_BLOB_UNKNOWN), the entry is dropped, the blob is uploaded again, and the run
/// succeeds.
#[tokio::test]
async fn target_that_lost_a_cached_blob_heals_in_the_same_run() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let shared = Blob::random(77, 20_000, MediaType::OciLayerGzip);
    let v1 = ImageFixture::from_layers(1, "linux/amd64", vec![shared.clone()]);
    seed(&registries, &source, "app", "v1", &Fixture::single(v1)).await;
    let cache = tempfile::tempdir().unwrap();
    let options = SyncOptions::default().cache(cache.path().join("state.json"));
    let plan = || SyncPlan {
        mappings: vec![mapping(&registries, &source, "app", &[(&target, "app")])],
    };
    assert_all(&sync(plan(), options.clone()).await, Status::Synced);

    // The registry loses the shared layer (a GC, a lifecycle policy).
    let deleted = target
        .client()
        .delete(format!("{}/v2/app/blobs/{}", target.url(), shared.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    // A new tag uses the same layer; the cache believes the target has it.
    let v2 = ImageFixture::from_layers(2, "linux/amd64", vec![shared.clone()]);
    seed(&registries, &source, "app", "v2", &Fixture::single(v2)).await;
    target.clear_requests();
    let report = sync(plan(), options).await;
    let v2_report = report
        .images
        .iter()
        .find(|i| i.source.ends_with(":v2"))
        .unwrap();
    assert_eq!(v2_report.status, Status::Synced, "{v2_report:?}");
    let refused = target
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/manifests/v2") && r.status == 400)
        .count();
    assert_eq!(refused, 1, "the stale belief cost exactly one refused push");
    assert_eq!(
        uploads(&target.requests()).get(&shared.digest().to_string()),
        Some(&1),
        "re-uploaded once"
    );
    let client = registries.client(&target.host()).unwrap();
    assert!(client.blob_exists("app", shared.digest()).await.unwrap());
}

/// One mapping's source repository does not exist: that mapping is reported, the other one
/// completes.
#[tokio::test]
async fn a_missing_source_repository_fails_only_its_mapping() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    seed(
        &registries,
        &source,
        "present",
        "v1",
        &Fixture::single(ImageFixture::image(4, "linux/amd64", &[100])),
    )
    .await;
    let report = sync(
        SyncPlan {
            mappings: vec![
                mapping(&registries, &source, "absent/repo", &[(&target, "absent")]),
                mapping(&registries, &source, "present", &[(&target, "present")]),
            ],
        },
        SyncOptions::default(),
    )
    .await;
    assert_eq!(report.mapping_errors.len(), 1, "{report:?}");
    assert_eq!(report.mapping_errors[0].mapping, 0);
    assert!(
        report.mapping_errors[0].error.contains("absent/repo"),
        "{:?}",
        report.mapping_errors
    );
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].status, Status::Synced);
    assert!(!report.is_success());
}

/// A shutdown before the run starts leaves every image interrupted (nothing written); the next
/// run completes everything.
#[tokio::test]
async fn stopped_run_reports_interrupted_work_and_the_next_run_completes() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    for tag in ["a", "b", "c"] {
        seed(
            &registries,
            &source,
            "app",
            tag,
            &Fixture::single(ImageFixture::image(
                tag.len() as u64 + tag.as_bytes()[0] as u64,
                "linux/amd64",
                &[1000],
            )),
        )
        .await;
    }
    let plan = || SyncPlan {
        mappings: vec![mapping(&registries, &source, "app", &[(&target, "app")])],
    };
    let (stop, stopped) = tokio::sync::watch::channel(true);
    let report = sync(plan(), SyncOptions::default().shutdown(stopped)).await;
    drop(stop);
    assert!(report.interrupted);
    assert!(!report.is_success());
    assert!(
        report
            .images
            .iter()
            .all(|i| i.status == Status::Interrupted),
        "{:?}",
        report.images
    );
    let report = sync(plan(), SyncOptions::default()).await;
    assert_all(&report, Status::Synced);
    assert_eq!(report.images.len(), 3);
}

/// A glob mapping lists the source catalog and keeps the names under the target prefix.
#[tokio::test]
async fn repository_glob_mapping() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    for repo in ["team/api", "team/web", "other/x"] {
        seed(
            &registries,
            &source,
            repo,
            "v1",
            &Fixture::single(ImageFixture::image(
                repo.len() as u64,
                "linux/amd64",
                &[300],
            )),
        )
        .await;
    }
    let m = mapping(&registries, &source, "team/*", &[(&target, "mirror")]).glob(true);
    let report = sync(SyncPlan { mappings: vec![m] }, SyncOptions::default()).await;
    assert_all(&report, Status::Synced);
    let mut targets: Vec<&str> = report.images.iter().map(|i| i.target.as_str()).collect();
    targets.sort();
    let host = target.host();
    assert_eq!(
        targets,
        [
            format!("{host}/mirror/api:v1"),
            format!("{host}/mirror/web:v1")
        ]
    );
}

/// A dry run reads but never writes, and says how many bytes it would upload.
#[tokio::test]
async fn dry_run_writes_nothing() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let fixture = Fixture::single(ImageFixture::image(6, "linux/amd64", &[1234, 4321]));
    seed(&registries, &source, "app", "v1", &fixture).await;
    target.clear_requests();
    let report = sync(
        SyncPlan {
            mappings: vec![mapping(&registries, &source, "app", &[(&target, "app")])],
        },
        SyncOptions::default().dry_run(true),
    )
    .await;
    assert_all(&report, Status::Planned);
    let expected: u64 = fixture.all_blobs().iter().map(|b| b.size()).sum();
    assert_eq!(report.images[0].bytes_planned, Some(expected));
    assert!(
        target
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "{:?}",
        target.requests()
    );
}

/// Tag filters apply (semver, excludes, latest) and the sha256-<hex> referrers tags are left to
/// the referrers machinery.
#[tokio::test]
async fn tag_filter_selects_what_is_copied() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let fixture = Fixture::multi_arch_with_referrers(9);
    for tag in ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "dev"] {
        seed(&registries, &source, "app", tag, &fixture).await;
    }
    let mut rules = TagRules::default();
    rules.semver = Some(">=1.1".into());
    rules.sort = Some(ocync_transport::TagSort::Semver);
    rules.latest = Some(5);
    let filter = TagFilter::new(Some(&rules), None).unwrap();
    let mut m = mapping(&registries, &source, "app", &[(&target, "app")]);
    m.filter = Arc::new(filter);
    let report = sync(SyncPlan { mappings: vec![m] }, SyncOptions::default()).await;
    assert_all(&report, Status::Synced);
    let mut copied: Vec<String> = report
        .images
        .iter()
        .map(|i| i.source.rsplit(':').next().unwrap().to_owned())
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        ["1.1.0", "2.0.0"],
        "rc excluded by default, dev outside the range, referrers tags not tags"
    );
}

/// A signature added to an image that did not change is copied by the next (warm) run.
#[tokio::test]
async fn new_referrer_on_an_unchanged_image_is_copied_by_a_warm_run() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let full = Fixture::multi_arch_with_referrers(12);
    let bare = Fixture {
        referrers: Vec::new(),
        ..full.clone()
    };
    seed(&registries, &source, "app", "v1", &bare).await;
    let cache = tempfile::tempdir().unwrap();
    let options = SyncOptions::default().cache(cache.path().join("state.json"));
    let plan = || SyncPlan {
        mappings: vec![mapping(&registries, &source, "app", &[(&target, "app")])],
    };
    let first = sync(plan(), options.clone()).await;
    assert_all(&first, Status::Synced);
    assert_eq!(first.images[0].referrers_copied, 0);
    assert_eq!(
        first.images[0].source_digest.as_ref(),
        Some(full.top.digest())
    );
    assert!(
        first.images[0].requests > 0,
        "the job's requests are counted"
    );

    // Signatures, an SBOM and a countersignature arrive for the same image.
    seed(&registries, &source, "app", "v1", &full).await;
    let second = sync(plan(), options.clone()).await;
    assert_eq!(
        second.images[0].status,
        Status::Synced,
        "{:?}",
        second.images[0]
    );
    assert_eq!(second.images[0].reason.as_deref(), Some("referrers"));
    let client = registries.client(&target.host()).unwrap();
    for referrer in &full.referrers {
        assert!(
            client
                .manifest_head("app", &referrer.digest().to_string())
                .await
                .unwrap()
                .is_some()
        );
    }

    // And the run after that is quiet again.
    let third = sync(plan(), options).await;
    assert_all(&third, Status::Skipped);
}

/// The cache says repository `a` holds a layer, so `b` mounts it from there; `a` lost it, the
/// mount opens a session instead (202), and the layer is uploaded into it in the same run.
#[tokio::test]
async fn a_mount_source_that_lost_the_blob_falls_back_to_upload() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let layer = Blob::random(5, 30_000, MediaType::OciLayerGzip);
    let a = ImageFixture::from_layers(1, "linux/amd64", vec![layer.clone()]);
    let b = ImageFixture::from_layers(2, "linux/amd64", vec![layer.clone()]);
    seed(&registries, &source, "a", "v1", &Fixture::single(a)).await;
    seed(&registries, &source, "b", "v1", &Fixture::single(b)).await;
    let cache = tempfile::tempdir().unwrap();
    let options = SyncOptions::default().cache(cache.path().join("state.json"));
    let only = |repo: &str| SyncPlan {
        mappings: vec![mapping(&registries, &source, repo, &[(&target, repo)])],
    };
    assert_all(&sync(only("a"), options.clone()).await, Status::Synced);
    let deleted = target
        .client()
        .delete(format!("{}/v2/a/blobs/{}", target.url(), layer.digest()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    target.clear_requests();
    let report = sync(only("b"), options).await;
    assert_all(&report, Status::Synced);
    let lines = target.requests();
    let failed_mount = lines.iter().any(|r| {
        r.method == "POST"
            && r.query.as_deref().is_some_and(|q| q.contains("from=a"))
            && r.status == 202
    });
    assert!(failed_mount, "the cached home was tried: {lines:?}");
    assert_eq!(
        uploads(&lines).get(&layer.digest().to_string()),
        Some(&1),
        "uploaded into the session"
    );
    assert!(
        registries
            .client(&target.host())
            .unwrap()
            .blob_exists("b", layer.digest())
            .await
            .unwrap()
    );
}

/// With a control-plane API, blobs it reports present get no HEAD and no upload, missing ones
/// are checked and uploaded as usual, and repositories are created once each (opt-in).
#[tokio::test]
async fn registry_api_batch_check_replaces_heads_and_creates_repositories() {
    let source = TestRegistry::plain().await;
    let target = TestRegistry::plain().await;
    let registries = registries_for(&[&source, &target]);
    let shared = Blob::random(31, 25_000, MediaType::OciLayerGzip);
    let v1 = ImageFixture::from_layers(1, "linux/amd64", vec![shared.clone()]);
    let v2 = ImageFixture::from_layers(
        2,
        "linux/amd64",
        vec![
            shared.clone(),
            Blob::random(32, 9_000, MediaType::OciLayerGzip),
        ],
    );
    seed(
        &registries,
        &source,
        "app",
        "v1",
        &Fixture::single(v1.clone()),
    )
    .await;
    seed(&registries, &source, "app", "v2", &Fixture::single(v2)).await;
    // The target already has v1 (so `shared` and v1's config are there).
    seed(
        &registries,
        &target,
        "app",
        "v1",
        &Fixture::single(v1.clone()),
    )
    .await;
    let storage = target.storage_root().to_path_buf();
    // The fake API answers from the registry's storage: a blob is present in `app` when the
    // repository's layer link exists.
    #[derive(Debug)]
    struct StorageApi {
        root: std::path::PathBuf,
        batch_calls: std::sync::atomic::AtomicUsize,
        created: std::sync::Mutex<Vec<String>>,
    }
    impl ocync_transport::RegistryApi for StorageApi {
        fn name(&self) -> &'static str {
            "storage"
        }
        fn blobs_present<'a>(
            &'a self,
            repository: &'a str,
            digests: &'a [Digest],
        ) -> ocync_auth::BoxFuture<
            'a,
            Result<std::collections::HashSet<Digest>, ocync_transport::Error>,
        > {
            Box::pin(async move {
                self.batch_calls
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(digests
                    .iter()
                    .filter(|d| {
                        self.root
                            .join(format!("docker/registry/v2/repositories/{repository}/_layers/sha256/{}/link", d.encoded()))
                            .exists()
                    })
                    .cloned()
                    .collect())
            })
        }
        fn create_repository<'a>(
            &'a self,
            repository: &'a str,
        ) -> ocync_auth::BoxFuture<'a, Result<bool, ocync_transport::Error>> {
            Box::pin(async move {
                self.created.lock().unwrap().push(repository.to_owned());
                Ok(true)
            })
        }
    }
    let api = Arc::new(StorageApi {
        root: storage,
        batch_calls: 0.into(),
        created: Default::default(),
    });
    let client = ocync_transport::ClientBuilder::new(&target.host())
        .api(api.clone())
        .create_repositories(true)
        .build()
        .unwrap();
    let m = Mapping::new(
        Endpoint::Registry(registries.client(&source.host()).unwrap()),
        "app",
        vec![Target::new("dst", Endpoint::Registry(client), "app")],
        all_tags(),
    );
    target.clear_requests();
    let report = sync(SyncPlan { mappings: vec![m] }, SyncOptions::default()).await;
    for image in &report.images {
        assert!(
            matches!(image.status, Status::Synced | Status::Skipped),
            "{image:?}"
        );
    }
    assert_eq!(
        api.created.lock().unwrap().as_slice(),
        ["app"],
        "created once"
    );
    assert_eq!(
        api.batch_calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only v2 needed a push"
    );
    let heads: Vec<String> = target
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.contains("/blobs/"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !heads
            .iter()
            .any(|p| p.ends_with(&shared.digest().to_string())),
        "no HEAD for a blob the API reported: {heads:?}"
    );
    assert_eq!(
        heads.len(),
        2,
        "the two blobs the API did not know (new layer, v2 config): {heads:?}"
    );
    assert_eq!(uploads(&target.requests()).len(), 2);
}

/// ECR refuses to move a tag in a repository with immutable tags (400 TAG_INVALID): the image
/// is reported as skipped, not failed.
#[tokio::test]
async fn immutable_tag_refusal_is_a_skip() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(ImageFixture::image(40, "linux/amd64", &[100]));
    fixture.write_layout(&dir.path().join("app"), "v1").unwrap();
    let ecr = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ecr)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(1)
        .mount(&ecr)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"errors": [{
            "code": "TAG_INVALID",
            "message": "The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable."
        }]})))
        .expect(1)
        .mount(&ecr)
        .await;
    let client = ocync_transport::ClientBuilder::new(&format!("http://{}", ecr.address()))
        .build()
        .unwrap();
    let m = Mapping::new(
        Endpoint::Layouts(dir.path().to_path_buf()),
        "app",
        vec![Target::new("ecr", Endpoint::Registry(client), "app")],
        all_tags(),
    );
    let report = sync(SyncPlan { mappings: vec![m] }, SyncOptions::default()).await;
    assert_eq!(report.images.len(), 1);
    assert_eq!(
        report.images[0].status,
        Status::Skipped,
        "{:?}",
        report.images[0]
    );
    assert_eq!(report.images[0].reason.as_deref(), Some("immutable_tag"));
}
