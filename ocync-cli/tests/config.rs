//! `ocync validate` and `ocync expand` on the configuration files in `tests/fixtures`: the
//! original tool's documented examples and its whole schema are valid; every validation rule
//! has a fixture that fails with exit code 3 and an error naming `file:line:column`, the key
//! path and the problem (and no other error, so rules do not cascade); `expand` redacts secrets
//! unless `--show-secrets` is given; secrets never reach an error message.

use std::process::{Command, Output};

/// Variables the fixtures reference; removed so the tests do not depend on the caller's
/// environment.
const FIXTURE_VARIABLES: &[&str] = &[
    "HARBOR_PASSWORD",
    "QUAY_TOKEN",
    "REGISTRY_HOST",
    "REGISTRY_USER",
    "REGISTRY_PASSWORD",
    "WEBHOOK_API_KEY",
    "LONG_HOST",
    "MULTI_LINE",
    "CACHE_SECRET",
    "REGISTRY_TOKEN",
    "SRC_HOST",
];

fn ocync(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocync"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for v in FIXTURE_VARIABLES {
        cmd.env_remove(v);
    }
    cmd
}

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

fn fixture(name: &str) -> String {
    format!("tests/fixtures/{name}")
}

fn validate(name: &str) -> (i32, String, String) {
    run(&mut ocync(&["validate", &fixture(name)]))
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

/// `name` fails validation with exactly these errors, in order: each starts with
/// `error: tests/fixtures/<name>:<at>: ` (`at` is `line:column: key.path`) and contains `what`.
fn assert_invalid(name: &str, expected: &[(&str, &str)]) {
    let (code, out, err) = validate(name);
    assert_eq!(code, 3, "{name}: {err}");
    assert!(out.is_empty(), "{name}: stdout is for data: {out}");
    assert!(!err.contains("config valid"), "{err}");
    let errors = error_lines(&err);
    assert_eq!(errors.len(), expected.len(), "{name}:\n{err}");
    for (line, (at, what)) in errors.iter().zip(expected) {
        let prefix = format!("error: {}:{at}", fixture(name));
        assert!(line.starts_with(&prefix), "want '{prefix}…' in:\n{err}");
        assert!(line.contains(what), "want '{what}' in:\n{line}");
    }
}

/// One test per validation rule: `invalid!(test_name, "fixture.yaml", ("line:col: path", "message part"), …)`.
macro_rules! invalid {
    ($name:ident, $fixture:literal, $(($at:literal, $what:literal)),+ $(,)?) => {
        #[test]
        fn $name() {
            assert_invalid($fixture, &[$(($at, $what)),+]);
        }
    };
}

#[test]
fn seed_examples_without_tags_are_valid() {
    for (name, summary) in [
        ("seed-acr.yaml", "config valid: 2 registries, 1 mappings\n"),
        ("seed-ecr.yaml", "config valid: 4 registries, 1 mappings\n"),
    ] {
        let (code, out, err) = validate(name);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.is_empty(), "{out}");
        // Exactly the summary: no warning either.
        assert_eq!(err, summary, "{name}");
    }
}

#[test]
fn the_whole_schema_is_valid() {
    let (code, out, err) = validate("full-schema.yaml");
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(error_lines(&err).is_empty(), "{err}");
    assert!(
        err.ends_with("config valid: 13 registries, 5 mappings\n"),
        "{err}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].starts_with(
            "warning: tests/fixtures/full-schema.yaml:35:5: registries.ghcr.auth_type: `ghcr` is deprecated"
        ),
        "{err}"
    );
    assert!(
        warnings[1].contains("registries.staging.tls_verify: TLS certificates"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_invalid_input() {
    let (code, out, err) = validate("no-such-file.yaml");
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with(
            "error: tests/fixtures/no-such-file.yaml: cannot read the configuration file"
        ),
        "{err}"
    );
}

// Keys.
invalid!(
    unknown_key_suggests_the_closest,
    "invalid-unknown-key.yaml",
    ("5:5: mappings[0]: ", "no targets"),
    (
        "7:5: mappings[0].target: ",
        "unknown key `target` (did you mean `targets`?); valid keys in a mapping: from, to, source, targets, tags"
    ),
);
invalid!(
    misplaced_key_says_where_it_belongs,
    "invalid-misplaced-key.yaml",
    (
        "8:5: mappings[0].auth_type: ",
        "`auth_type` belongs in a registry"
    ),
);
invalid!(
    removed_semver_prerelease_points_to_include,
    "invalid-semver-prerelease.yaml",
    (
        "11:7: mappings[0].tags.semver_prerelease: ",
        "was removed: list the pre-release tags or globs to keep under `include`"
    ),
);
invalid!(
    duplicate_key,
    "invalid-duplicate-key.yaml",
    (
        "8:5: mappings[0].source: ",
        "duplicate key `source` (also on line 6)"
    ),
);

// Syntax, types, enumerations, variables.
invalid!(
    yaml_syntax_error,
    "invalid-syntax.yaml",
    ("3:9: ", "did not find expected ',' or '}'"),
);
invalid!(
    wrong_type,
    "invalid-type.yaml",
    (
        "11:15: mappings[0].tags.latest: ",
        "invalid type: string \"three\", expected a whole number"
    ),
);
invalid!(
    unknown_auth_type_suggests_the_closest,
    "invalid-auth-type.yaml",
    (
        "4:16: registries.harbor.auth_type: ",
        "unknown value `basci` (did you mean `basic`?)"
    ),
);
invalid!(
    required_variable_names_variable_and_message,
    "invalid-required-variable.yaml",
    (
        "7:17: ",
        "required variable HARBOR_PASSWORD is not set: set HARBOR_PASSWORD to the robot account's password"
    ),
);
invalid!(
    unclosed_variable_reference,
    "invalid-unclosed-variable.yaml",
    ("3:10: ", "unclosed '${'"),
);

// Global settings.
invalid!(
    global_values,
    "invalid-global.yaml",
    (
        "2:3: global.max_concurrent_transfers: ",
        "must be at least 1"
    ),
    ("3:3: global.cache_ttl: ", "invalid duration '12w'"),
    (
        "4:3: global.staging_size_limit: ",
        "invalid size '2 gigabytes'"
    ),
);

// Registries.
invalid!(
    registry_urls,
    "invalid-url.yaml",
    ("3:5: registries.src.url: ", "unsupported scheme 'ftp://'"),
    ("5:5: registries.local.url: ", "`oci:` needs a directory"),
);
invalid!(
    registry_max_concurrent_at_least_one,
    "invalid-max-concurrent.yaml",
    ("4:5: registries.src.max_concurrent: ", "must be at least 1"),
);
invalid!(
    basic_needs_credentials,
    "invalid-basic-without-credentials.yaml",
    (
        "4:5: registries.harbor.auth_type: ",
        "`auth_type: basic` needs `credentials`"
    ),
);
invalid!(
    static_token_needs_a_token,
    "invalid-static-token-without-token.yaml",
    (
        "4:5: registries.quay.auth_type: ",
        "`auth_type: static_token` needs a non-empty `token`"
    ),
);
invalid!(
    aws_profile_needs_explicit_ecr,
    "invalid-aws-profile.yaml",
    (
        "4:5: registries.vendor.aws_profile: ",
        "needs an explicit `auth_type: ecr`"
    ),
);
invalid!(
    ca_file_must_exist_relative_to_the_file,
    "invalid-ca-file.yaml",
    (
        "4:5: registries.internal.ca_file: ",
        "tests/fixtures/certs/missing-ca.pem' does not exist"
    ),
);
invalid!(
    oci_layouts_take_no_auth_settings,
    "invalid-oci-auth.yaml",
    (
        "4:5: registries.backup.auth_type: ",
        "does not apply to an oci: layout directory"
    ),
    (
        "5:5: registries.backup.credentials: ",
        "does not apply to an oci: layout directory"
    ),
);
invalid!(
    insecure_contradicts_https,
    "invalid-insecure-https.yaml",
    (
        "4:5: registries.lab.insecure: ",
        "contradicts the https:// url"
    ),
);
invalid!(
    chunk_size_is_a_size,
    "invalid-chunk-size.yaml",
    ("4:5: registries.acr.chunk_size: ", "invalid size '16 megs'"),
);

// References.
invalid!(
    unknown_source,
    "invalid-unknown-source.yaml",
    ("5:5: mappings[0]: ", "no source registry"),
    (
        "8:5: mappings[1].source: ",
        "unknown registry 'dockerhub' (known: ecr, src)"
    ),
);
invalid!(
    unknown_targets_and_group_members,
    "invalid-unknown-target.yaml",
    ("5:15: target_groups.prod[1]: ", "unknown registry 'gar'"),
    ("9:20: mappings[0].targets[1]: ", "unknown registry 'acr'"),
    (
        "12:5: mappings[1].targets: ",
        "unknown target group or registry 'staging' (groups: prod; registries: ecr, src)"
    ),
);
invalid!(
    a_target_list_names_registries_not_groups,
    "invalid-group-in-list.yaml",
    (
        "9:15: mappings[0].targets[0]: ",
        "'prod' is a target group; a list names registries"
    ),
);
invalid!(
    mapping_needs_a_source,
    "invalid-no-source.yaml",
    ("5:5: mappings[0]: ", "no source registry"),
);
invalid!(
    mapping_needs_targets,
    "invalid-no-targets.yaml",
    ("7:5: mappings[0]: ", "no targets"),
);
invalid!(
    mappings_are_required,
    "invalid-no-mappings.yaml",
    ("1:1: mappings: ", "no `mappings`"),
);

// Mappings and filters.
invalid!(
    latest_needs_sort_in_the_same_block,
    "invalid-latest-without-sort.yaml",
    (
        "15:7: mappings[0].tags.latest: ",
        "`latest` needs `sort` in the same tags block"
    ),
);
invalid!(
    tag_globs_compile,
    "invalid-tag-glob.yaml",
    ("10:21: mappings[0].tags.glob[1]: ", "invalid glob 'v[1'"),
);
invalid!(
    semver_ranges_parse,
    "invalid-semver.yaml",
    (
        "10:7: mappings[0].tags.semver: ",
        "invalid tag filter semver '1.x': wildcards ('1.x') are not supported"
    ),
);
invalid!(
    platforms_are_well_formed_and_not_empty,
    "invalid-platform.yaml",
    (
        "7:3: defaults.platforms: ",
        "the list of platforms is empty"
    ),
    (
        "12:9: mappings[0].platforms[1]: ",
        "invalid platform 'linux'"
    ),
);
invalid!(
    require_artifacts_needs_artifacts,
    "invalid-require-artifacts.yaml",
    (
        "11:7: mappings[0].artifacts.require_artifacts: ",
        "contradicts `enabled: false`"
    ),
);
invalid!(
    repository_globs_compile,
    "invalid-repository-glob.yaml",
    (
        "5:5: mappings[0].from: ",
        "invalid repository glob 'library/[ab'"
    ),
);
invalid!(
    no_repository_glob_from_an_oci_directory,
    "invalid-oci-glob.yaml",
    ("5:5: mappings[0].from: ", "'layouts' is an oci: directory"),
);
invalid!(
    from_is_a_repository_without_tag,
    "invalid-from-with-tag.yaml",
    (
        "5:5: mappings[0].from: ",
        "'library/nginx:1.27' has a tag or digest"
    ),
);
invalid!(
    two_mappings_fighting_over_one_repository,
    "invalid-fight.yaml",
    (
        "13:5: mappings[1].to: ",
        "mappings[0] also writes 'nginx' in 'ecr', from another source (hub/library/nginx): two mappings would fight over one repository"
    ),
);
invalid!(
    a_mapping_copying_onto_itself,
    "invalid-self-copy.yaml",
    (
        "6:5: mappings[0].targets: ",
        "would copy 'static' onto itself"
    ),
);

#[test]
fn positions_are_in_the_file_as_written() {
    let (code, _, err) = run(ocync(&["validate", &fixture("positions.yaml")])
        .env("LONG_HOST", "a-much-longer-registry-host-name.example.com")
        .env("MULTI_LINE", "one\n    two\n    three"));
    assert_eq!(code, 3, "{err}");
    let errors = error_lines(&err);
    assert_eq!(
        errors,
        [
            "error: tests/fixtures/positions.yaml:5:31: registries.src.max_concurrent: must be at least 1",
            "error: tests/fixtures/positions.yaml:12:27: mappings[0].tags.latest: `latest: 0` keeps no tags; use at least 1 (or remove it)",
        ],
        "{err}"
    );
}

#[test]
fn unset_variables_are_warned_about_with_their_position() {
    let (code, _, err) = validate("unset-variable.yaml");
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "warning: tests/fixtures/unset-variable.yaml:5:12: variable QUAY_TOKEN is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: tests/fixtures/unset-variable.yaml:4:5: registries.quay.auth_type: `auth_type: static_token` needs a non-empty `token`"),
        "{err}"
    );
}

#[test]
fn secrets_never_reach_error_messages() {
    // A secret variable's value in a value that is echoed by the duration check.
    let (code, _, err) = run(ocync(&["validate", &fixture("secret-in-messages.yaml")])
        .env("CACHE_SECRET", "s3cr3t-ttl")
        .env("QUAY_TOKEN", "tok-abcdef"));
    assert_eq!(code, 3, "{err}");
    assert!(
        !err.contains("s3cr3t-ttl") && !err.contains("tok-abcdef"),
        "{err}"
    );
    assert!(
        err.contains("error: tests/fixtures/secret-in-messages.yaml:2:3: global.cache_ttl: invalid duration '[REDACTED]'"),
        "{err}"
    );

    // A secret variable's value in a type error, which serde quotes.
    let (code, _, err) = run(
        ocync(&["validate", &fixture("secret-in-type-error.yaml")]).env("REGISTRY_TOKEN", "ab")
    );
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains("\"ab\""), "{err}");
    assert!(
        err.contains("error: tests/fixtures/secret-in-type-error.yaml:4:21: registries.src.max_concurrent: invalid type: string \"[REDACTED]\""),
        "{err}"
    );
}

fn expand(args: &[&str]) -> (i32, String, String) {
    run(ocync(args)
        .env("REGISTRY_HOST", "harbor.example.com")
        .env("REGISTRY_PASSWORD", "hunter2-from-env")
        .env("WEBHOOK_API_KEY", "key-0123456789"))
}

#[test]
fn expand_redacts_secrets_and_keeps_the_rest() {
    let (code, out, err) = expand(&["expand", &fixture("expand.yaml")]);
    assert_eq!(code, 0, "{err}");
    for secret in [
        "hunter2-from-env",
        "literal-token-in-the-file",
        "key-0123456789",
    ] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    let want = "\
# Registry host: harbor.example.com
registries:
  src: { url: cgr.dev }
  harbor:
    url: harbor.example.com
    auth_type: basic
    credentials:
      username: 
      password: \"[REDACTED]\"   # from the CI secret store
  quay:
    url: quay.io
    auth_type: static_token
    token: \"[REDACTED]\"
mappings:
  - from: chainguard/static
    source: src
    targets: [harbor, quay]
    # webhook: https://hooks.example.com/[REDACTED]
";
    assert_eq!(out, want);
    assert_eq!(
        err,
        "warning: tests/fixtures/expand.yaml:8:17: variable REGISTRY_USER is not set, so `${REGISTRY_USER}` expands to nothing (write `${REGISTRY_USER:-default}` or `${REGISTRY_USER:?message}` to decide)\n"
    );
}

#[test]
fn expand_show_secrets_reveals_them() {
    let (code, out, err) = expand(&["expand", "--show-secrets", &fixture("expand.yaml")]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("[REDACTED]"), "{out}");
    assert!(
        out.contains("      password: hunter2-from-env   # from the CI secret store\n"),
        "{out}"
    );
    assert!(
        out.contains("    token: \"literal-token-in-the-file\"\n"),
        "{out}"
    );
    assert!(out.contains("hooks.example.com/key-0123456789"), "{out}");
}

#[test]
fn expand_reports_failed_references_without_output() {
    let (code, out, err) = expand(&["expand", &fixture("invalid-required-variable.yaml")]);
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: tests/fixtures/invalid-required-variable.yaml:7:17: required variable HARBOR_PASSWORD is not set"),
        "{err}"
    );
}

#[test]
fn expand_needs_valid_yaml_to_redact() {
    let (code, out, err) = expand(&["expand", &fixture("invalid-syntax.yaml")]);
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("cannot redact secrets"), "{err}");
    let (code, out, err) = expand(&["expand", "--show-secrets", &fixture("invalid-syntax.yaml")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("registries:\n  src: { url: docker.io\n"),
        "{out}"
    );
}
