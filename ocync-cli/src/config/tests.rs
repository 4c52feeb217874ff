//! Loading whole configurations: the resolved view (defaults, merge rules, parsed values,
//! repository globs) and how errors are collected and placed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ocync_transport::{Scheme, TagSort};

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Config {
    load_str(text, Path::new("/etc/ocync/ocync.yaml"), no_env).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    let err = load_str(text, Path::new("c.yaml"), no_env).unwrap_err();
    err.errors().iter().map(ToString::to_string).collect()
}

const BASE: &str = "\
registries:
  hub: { url: docker.io }
  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com }
  gar: { url: us-docker.pkg.dev }
";

#[test]
fn global_defaults_and_values() {
    let c = load(&format!("{BASE}mappings: []\n"));
    let g = c.global();
    assert_eq!(g.max_concurrent_transfers, 50);
    assert_eq!(g.cache_dir, PathBuf::from("/etc/ocync/.ocync/cache"));
    assert_eq!(g.cache_ttl, Some(Duration::from_secs(12 * 3600)));
    assert_eq!(g.staging_size_limit, None);

    let c = load(&format!(
        "global:\n  max_concurrent_transfers: 8\n  cache_dir: ../cache\n  cache_ttl: \"0\"\n  staging_size_limit: 500MB\n{BASE}mappings: []\n"
    ));
    let g = c.global();
    assert_eq!(g.max_concurrent_transfers, 8);
    assert_eq!(g.cache_dir, PathBuf::from("/etc/cache"));
    assert_eq!(g.cache_ttl, None, "\"0\" never expires");
    assert_eq!(g.staging_size_limit, Some(500_000_000));
    let c = load(&format!("global:\n  cache_ttl: 300\n{BASE}mappings: []\n"));
    assert_eq!(c.global().cache_ttl, Some(Duration::from_secs(300)));
}

#[test]
fn registries_resolve_endpoints_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let text = "\
registries:
  lab: { url: 'http://LocalHost:5000', chunk_size: 5MiB }
  plain: { url: lab.local, insecure: true, max_concurrent: 4 }
  tls: { url: https://reg.example.com, ca_file: ca.pem, head_first: true }
  backup: { url: 'oci:layouts' }
  old: { url: ghcr.io, auth_type: ghcr }
  quay: { url: quay.io, auth_type: token, token: abc }
  basic: { url: harbor.io, auth_type: basic, credentials: { username: u, password: hunter2 } }
mappings: []
";
    let c = load_str(text, &dir.path().join("c.yaml"), no_env).unwrap();
    let r = |alias: &str| c.registry(alias).unwrap();
    assert_eq!(
        r("lab").endpoint,
        Endpoint::Remote {
            host: "localhost:5000".into(),
            scheme: Scheme::Http,
            path: None
        }
    );
    assert_eq!(r("lab").chunk_size, Some(5 << 20));
    assert!(matches!(
        r("plain").endpoint,
        Endpoint::Remote {
            scheme: Scheme::Http,
            ..
        }
    ));
    assert_eq!(r("plain").max_concurrent, 4);
    assert_eq!(r("lab").max_concurrent, 50);
    assert!(matches!(
        r("tls").endpoint,
        Endpoint::Remote {
            scheme: Scheme::Https,
            ..
        }
    ));
    assert_eq!(
        r("tls").ca_file.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    assert!(r("tls").head_first && r("tls").tls_verify);
    assert_eq!(
        r("backup").endpoint,
        Endpoint::Layout {
            dir: dir.path().join("layouts")
        }
    );
    assert_eq!(r("old").auth_type, Some(AuthType::DockerConfig));
    assert_eq!(r("quay").auth_type, Some(AuthType::StaticToken));
    assert_eq!(r("quay").token.as_ref().map(Secret::expose), Some("abc"));
    let creds = r("basic").credentials.as_ref().unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.expose()),
        ("u", "hunter2")
    );
    // Secrets never print.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("\"abc\""),
        "{debug}"
    );
    let warnings: Vec<&str> = c.warnings().iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        warnings,
        [
            "`ghcr` is deprecated: write `docker_config` (same behaviour)",
            "`mappings` is empty: there is nothing to copy"
        ]
    );
}

#[test]
fn mappings_take_defaults_as_the_original_merges_them() {
    let c = load(&format!(
        "{BASE}\
target_groups:
  clouds: [ecr, gar]
defaults:
  source: hub
  targets: clouds
  tags: {{ exclude: '*-debug', sort: semver, latest: 5 }}
  platforms: [linux/amd64]
  artifacts: {{ enabled: false }}
mappings:
  - from: library/nginx
  - from: library/redis
    to: mirror/redis
    targets: [gar]
    tags: {{ glob: ['7.*'], latest: 2, sort: alpha }}
    platforms: [linux/arm64/v8]
    artifacts: {{ include: [application/spdx+json] }}
  - from: library/alpine
    targets: ecr
"
    ));
    let m = c.resolved();
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[0].from.as_str(), m[0].to.as_str()),
        ("library/nginx", "library/nginx")
    );
    assert_eq!(m[0].source, "hub");
    assert_eq!(m[0].targets, ["ecr", "gar"]);
    assert!(m[0].tags.is_none());
    let defaults = m[0].default_tags.as_ref().unwrap();
    assert_eq!(defaults.exclude, ["*-debug"]);
    assert_eq!(
        (defaults.sort, defaults.latest),
        (Some(TagSort::Semver), Some(5))
    );
    assert_eq!(
        m[0].platforms.as_ref().unwrap()[0].to_string(),
        "linux/amd64"
    );
    assert!(!m[0].artifacts.enabled);

    assert_eq!(m[1].to, "mirror/redis");
    assert_eq!(m[1].targets, ["gar"]);
    let own = m[1].tags.as_ref().unwrap();
    assert_eq!(
        (own.glob.as_slice(), own.latest),
        (&["7.*".to_owned()][..], Some(2))
    );
    assert_eq!(own.sort, Some(TagSort::Alpha));
    assert_eq!(
        m[1].default_tags.as_ref(),
        Some(defaults),
        "both blocks reach the engine"
    );
    assert_eq!(
        m[1].platforms.as_ref().unwrap()[0].to_string(),
        "linux/arm64/v8"
    );
    // Artifacts replace the defaults wholesale: `enabled` is back to its default.
    assert!(m[1].artifacts.enabled);
    assert_eq!(m[1].artifacts.include, ["application/spdx+json"]);

    // A string is a group first, then an alias.
    assert_eq!(m[2].targets, ["ecr"]);
    assert!(!m[0].glob && m[0].target_repository("library/nginx").is_some());
    assert_eq!(m[0].target_repository("library/redis"), None);
}

#[test]
fn repository_globs_map_names_under_a_prefix() {
    let c = load(&format!(
        "{BASE}\
defaults: {{ source: hub, targets: ecr }}
mappings:
  - from: team/*
    to: mirror/
  - from: '*'
    targets: gar
  - from: apps/web-?
    to: web
    targets: gar
"
    ));
    let m = c.resolved();
    assert!(m.iter().all(|m| m.glob));
    assert_eq!(m[0].to, "mirror");
    assert_eq!(
        m[0].target_repository("team/app").as_deref(),
        Some("mirror/app")
    );
    assert_eq!(
        m[0].target_repository("team/app/web").as_deref(),
        Some("mirror/app/web")
    );
    assert_eq!(m[0].target_repository("other/app"), None);
    assert_eq!(m[1].to, "");
    assert_eq!(
        m[1].target_repository("library/nginx").as_deref(),
        Some("library/nginx")
    );
    assert_eq!(
        m[2].target_repository("apps/web-1").as_deref(),
        Some("web/web-1")
    );
    assert_eq!(m[2].target_repository("apps/web-10"), None);
}

#[test]
fn every_error_is_collected_in_file_order() {
    let errs = errors(&format!(
        "{BASE}\
defaults:
  source: nope
mappings:
  - from: library/nginx
    targets: [ecr, ecr]
    tags: {{ latest: 3 }}
  - from: Library/Redis
    targets: clouds
"
    ));
    assert_eq!(
        errs,
        [
            "c.yaml:6:3: defaults.source: unknown registry 'nope' (known: ecr, gar, hub)",
            "c.yaml:9:20: mappings[0].targets[1]: 'ecr' is listed twice",
            "c.yaml:10:13: mappings[0].tags.latest: `latest` needs `sort` in the same tags block (a `sort` elsewhere does not count): add `sort: semver` or `sort: alpha`",
            "c.yaml:11:5: mappings[1].from: invalid repository 'Library/Redis': repository component 'Library' has uppercase letters; repository names are lowercase",
            "c.yaml:12:5: mappings[1].targets: unknown target group or registry 'clouds' (no target groups are defined; registries: ecr, gar, hub)",
        ]
    );
}

#[test]
fn one_broken_registry_is_reported_once() {
    // The mapping refers to a registry whose url is wrong: no second error at the mapping.
    let errs = errors(
        "registries:\n  src: { url: 'ftp://x' }\n  ecr: { url: ecr.example.com }\nmappings:\n  - { from: a, source: src, targets: [ecr] }\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("c.yaml:2:10: registries.src.url: "),
        "{errs:?}"
    );
}

#[test]
fn same_registry_under_two_aliases_is_one_target() {
    let registries = "registries:\n  hub: { url: docker.io }\n  a: { url: ecr.example.com }\n  b: { url: 'https://ECR.example.com' }\n";
    let errs = errors(&format!(
        "{registries}mappings:\n  - {{ from: x/y, source: hub, targets: [a, b] }}\n"
    ));
    assert_eq!(
        errs,
        [
            "c.yaml:6:31: mappings[0].targets: 'a' and 'b' are the same registry (ecr.example.com): the mapping would write each repository twice"
        ]
    );
    let errs = errors(&format!(
        "{registries}mappings:\n  - {{ from: x/y, source: hub, targets: [a] }}\n  - {{ from: other/y, source: hub, targets: [b], to: x/y }}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("c.yaml:7:49: mappings[1].to: mappings[0] also writes 'x/y' in 'b'"),
        "{errs:?}"
    );
}

#[test]
fn glob_and_exact_mappings_that_may_fight_are_warned_about() {
    let c = load(&format!(
        "{BASE}\
defaults: {{ source: hub, targets: ecr }}
mappings:
  - from: library/*
    to: mirror
  - from: team/nginx
    to: mirror/nginx
  - from: library/redis
    to: mirror/redis
"
    ));
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("mappings[1].from: mappings[0] ('library/*') also writes 'mirror/nginx' in 'ecr' if hub/library/nginx exists"),
        "{w:?}"
    );
}

#[test]
fn variables_expand_and_unset_ones_are_remembered() {
    let env = |name: &str| (name == "HOST").then(|| "ghcr.io".to_owned());
    let c = load_str(
        "registries:\n  src: { url: '${HOST}' }\n  dst: { url: '${DST:-quay.io}', head_first: ${FAST} }\nmappings: []\n",
        Path::new("c.yaml"),
        env,
    )
    .unwrap();
    assert_eq!(c.registry("src").unwrap().url, "ghcr.io");
    assert_eq!(c.registry("dst").unwrap().url, "quay.io");
    assert_eq!(c.unset_variables(), ["FAST"]);
    assert!(c.warnings().iter().any(|w| {
        w.to_string()
            .starts_with("c.yaml:3:46: variable FAST is not set")
    }));
}

#[test]
fn empty_and_non_mapping_documents() {
    assert_eq!(
        errors("# nothing\n"),
        ["c.yaml:1:1: the file is empty: a configuration has at least `registries` and `mappings`"]
    );
    let errs = errors("- a\n- b\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("expected a mapping with `registries` and `mappings`"),
        "{errs:?}"
    );
}

#[test]
fn rate_limits_override_a_registrys_pacing() {
    use ocync_transport::{ActionGroup, Rate};
    let c = load(
        "\
registries:
  ecr:
    url: 123456789012.dkr.ecr.us-east-1.amazonaws.com
    max_concurrent: 20
    rate_limits:
      manifest_write: 5
      upload_chunk: { rate: 300, burst: 40 }
      blob_read: off
mappings: []
",
    );
    let ecr = c.registry("ecr").unwrap();
    assert_eq!(ecr.max_concurrent, 20);
    assert_eq!(
        ecr.rate_limits,
        vec![
            (ActionGroup::BlobRead, None),
            (ActionGroup::ManifestWrite, Some(Rate::new(5.0, 5))),
            (ActionGroup::UploadChunk, Some(Rate::new(300.0, 40))),
        ]
    );
}

#[test]
fn bad_rate_limits_name_the_key_and_the_fix() {
    let got = errors(
        "\
registries:
  lab:
    url: lab.example.com
    rate_limits:
      manifest_writes: 5
      blob_read: 0
      tag_list: { rate: 2, burst: 0 }
      blob_check: { rate: 2, bursts: 3 }
mappings: []
",
    );
    let all = got.join("\n");
    assert!(
        all.contains("registries.lab.rate_limits.manifest_writes")
            && all.contains("did you mean `manifest_write`?"),
        "{all}"
    );
    assert!(
        all.contains("registries.lab.rate_limits.blob_check.bursts")
            && all.contains("did you mean `burst`?"),
        "{all}"
    );
    let got = errors(
        "\
registries:
  lab:
    url: lab.example.com
    rate_limits:
      blob_read: 0
      tag_list: { rate: 2, burst: 0 }
      upload_start: fast
mappings: []
",
    );
    let all = got.join("\n");
    for (path, message) in [
        ("rate_limits.blob_read", "must be more than 0"),
        ("rate_limits.tag_list.burst", "must be at least 1"),
        ("rate_limits.upload_start", "'fast' is not a rate"),
    ] {
        assert!(
            got.iter().any(|e| e.contains(path) && e.contains(message)),
            "{path}: {message} in\n{all}"
        );
    }
}
