//! The sync planner's CPU-bound steps on the public API: choosing which of a repository's tags a
//! mapping copies ([`TagFilter::select`] on 10,000 tags with glob, version range, excludes,
//! semver sort and `latest`), and cutting a 64-entry index down to two platforms
//! ([`filter_index`]). Both run once per repository (per index) in every sync, warm ones
//! included, so they bound how fast a no-op sync of a large mirror can be.
//!
//! Run with `cargo bench -p ocync-benches --bench planner`. Names (`planner/select_10000`,
//! `planner/filter_index_64`) are stable so results compare across commits.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ocync_core::{
    Annotations, Descriptor, Digest, ImageIndex, Manifest, MediaType, Platform, PlatformFilter,
};
use ocync_transport::{TagFilter, TagRules, TagSort, filter_index};

/// Number of tags in the synthetic repository.
const TAGS: usize = 10_000;

/// Number of entries in the synthetic index.
const INDEX_ENTRIES: usize = 64;

/// A deterministic list of distinct tags shaped like a busy public repository: mostly versions (with and
/// without `v`, with variant suffixes), pre-releases, floating aliases, CI tags, and the
/// referrer and cosign tags that accumulate next to signed images.
fn tag_list() -> Vec<String> {
    const SUFFIXES: [&str; 6] = ["", "-alpine", "-slim", "-debian12", "-debug", "-windows"];
    let mut tags = vec![
        "latest".to_owned(),
        "stable".to_owned(),
        "edge".to_owned(),
        "nightly".to_owned(),
    ];
    let mut seen: HashSet<String> = tags.iter().cloned().collect();
    let mut i: u64 = 0;
    while tags.len() < TAGS {
        i += 1;
        let major = i % 4;
        let minor = (i / 4) % 30;
        let patch = (i / 120) % 40;
        let tag = match i % 20 {
            // Releases, with and without the `v` prefix and with variant suffixes.
            0..=10 => {
                let prefix = if i.is_multiple_of(3) { "v" } else { "" };
                let suffix = SUFFIXES[(i / 7) as usize % SUFFIXES.len()];
                format!("{prefix}{major}.{minor}.{patch}{suffix}")
            }
            // Two-part floating versions.
            11 => format!("{major}.{minor}"),
            // Pre-releases.
            12 => format!("{major}.{minor}.{patch}-rc.{}", i % 5),
            13 => format!("{major}.{minor}.{patch}-beta{}", i % 3),
            // CI tags.
            14 => format!("main-{:07x}", hash(i) & 0xfff_ffff),
            15 => format!("pr-{}", i % 5000),
            // Referrers-tag-schema indexes and cosign tags.
            16 | 17 => format!("sha256-{}", hex64(i)),
            18 => format!("sha256-{}.sig", hex64(i)),
            _ => format!("sha256-{}.att", hex64(i)),
        };
        if seen.insert(tag.clone()) {
            tags.push(tag);
        }
    }
    tags
}

fn hash(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex64(i: u64) -> String {
    (0..4)
        .map(|k| format!("{:016x}", hash(i * 4 + k)))
        .collect()
}

/// A realistic mapping filter: releases of major versions 1 and 2, no debug or Windows
/// variants, newest 20.
fn rules() -> TagRules {
    let mut rules = TagRules::default();
    rules.glob = vec!["v*".to_owned(), "[0-9]*".to_owned()];
    rules.semver = Some(">=1.2, <3".to_owned());
    rules.exclude = vec!["*-debug".to_owned(), "*-windows".to_owned()];
    rules.sort = Some(TagSort::Semver);
    rules.latest = Some(20);
    rules
}

fn select(c: &mut Criterion) {
    let tags = tag_list();
    let filter = TagFilter::new(Some(&rules()), None).expect("the filter compiles");
    let selection = filter.select(&tags);
    assert_eq!(selection.kept.len(), 20, "{:?}", selection.kept);
    assert_eq!(selection.kept.len() + selection.dropped.len(), tags.len());

    let mut group = c.benchmark_group("planner");
    group.throughput(Throughput::Elements(tags.len() as u64));
    group.bench_function("select_10000", |b| {
        b.iter(|| black_box(filter.select(black_box(&tags))))
    });
    group.finish();
}

/// An index of 64 entries over 8 platforms, with a buildx attestation manifest for every
/// fourth image (platform `unknown/unknown`, pointing at its image).
fn index() -> Manifest {
    const PLATFORMS: [(&str, &str, Option<&str>); 8] = [
        ("linux", "amd64", None),
        ("linux", "arm64", Some("v8")),
        ("linux", "arm", Some("v7")),
        ("linux", "arm", Some("v6")),
        ("linux", "386", None),
        ("linux", "ppc64le", None),
        ("linux", "s390x", None),
        ("windows", "amd64", None),
    ];
    let mut entries: Vec<Descriptor> = Vec::with_capacity(INDEX_ENTRIES);
    let mut i = 0;
    while entries.len() < INDEX_ENTRIES {
        let (os, architecture, variant) = PLATFORMS[i % PLATFORMS.len()];
        let digest = Digest::sha256(format!("image {i}").as_bytes());
        let mut image = Descriptor::new(MediaType::OciManifest, digest.clone(), 1000 + i as u64);
        image.platform = Some(platform(os, architecture, variant));
        entries.push(image);
        if i.is_multiple_of(4) && entries.len() < INDEX_ENTRIES {
            let mut attestation = Descriptor::new(
                MediaType::OciManifest,
                Digest::sha256(format!("attestation {i}").as_bytes()),
                800,
            );
            attestation.platform = Some(platform("unknown", "unknown", None));
            attestation.annotations = Some(Annotations::from([
                (
                    "vnd.docker.reference.type".to_owned(),
                    "attestation-manifest".to_owned(),
                ),
                ("vnd.docker.reference.digest".to_owned(), digest.to_string()),
            ]));
            entries.push(attestation);
        }
        i += 1;
    }
    ImageIndex::new(entries).to_manifest()
}

fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: architecture.to_owned(),
        os: os.to_owned(),
        os_version: None,
        os_features: None,
        variant: variant.map(str::to_owned),
        features: None,
    }
}

fn filter_index_64(c: &mut Criterion) {
    let index = index();
    assert_eq!(index.children().len(), INDEX_ENTRIES);
    let filters: Vec<PlatformFilter> = ["linux/amd64", "linux/arm64"]
        .iter()
        .map(|p| p.parse().expect("a valid platform filter"))
        .collect();
    let filtered = filter_index(&index, &filters, "bench/app").expect("two platforms match");
    assert!(filtered.children().len() < INDEX_ENTRIES);
    assert!(!filtered.children().is_empty());

    let mut group = c.benchmark_group("planner");
    group.throughput(Throughput::Elements(INDEX_ENTRIES as u64));
    group.bench_function("filter_index_64", |b| {
        b.iter(|| {
            black_box(filter_index(black_box(&index), black_box(&filters), "bench/app").unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, select, filter_index_64);
criterion_main!(benches);
