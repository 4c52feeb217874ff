//! `docker-credential-*` helpers run by `DockerConfigProvider`, with tiny shell scripts in a
//! temporary directory as helpers. The process-wide `PATH` is never touched: the provider is
//! pointed at the directory with `helper_dirs`.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ocync_auth::{
    Credential, CredentialProvider, DockerConfigProvider, Error, ProviderChain, Secret,
};

use common::{SECRET, write_helper};

/// Records its arguments, stdin and number of calls next to itself, then answers `json`.
fn recording_helper(dir: &Path, name: &str, answer: &str) {
    write_helper(
        dir,
        name,
        &format!(
            "echo call >> \"$0.calls\"\nprintf '%s' \"$*\" > \"$0.args\"\ncat > \"$0.stdin\"\necho '{answer}'"
        ),
    );
}

fn recorded(dir: &Path, name: &str, what: &str) -> String {
    std::fs::read_to_string(dir.join(format!("docker-credential-{name}.{what}")))
        .unwrap_or_default()
}

fn calls(dir: &Path, name: &str) -> usize {
    recorded(dir, name, "calls").lines().count()
}

fn provider(dir: &Path, json: &str) -> DockerConfigProvider {
    DockerConfigProvider::from_json(json, "/test/config.json")
        .unwrap()
        .helper_dirs([dir])
        // Generous, so a loaded machine cannot turn a slow `sh` start into a failure; the
        // timeout test sets its own.
        .helper_timeout(Duration::from_secs(20))
}

fn helper_error(error: Error) -> (String, String, String) {
    match error {
        Error::CredentialHelper {
            helper,
            registry,
            reason,
        } => (helper, registry, reason),
        other => panic!("expected Error::CredentialHelper, got {other:?}"),
    }
}

#[tokio::test]
async fn helper_answer_is_used_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    recording_helper(
        dir.path(),
        "ok",
        r#"{"ServerURL":"r.example.com","Username":"alice","Secret":"pw"}"#,
    );
    let provider = provider(
        dir.path(),
        r#"{"credHelpers":{"r.example.com":"ok"},"auths":{"r.example.com":{"username":"file","password":"x"}}}"#,
    );
    for _ in 0..3 {
        assert_eq!(
            provider.credential("r.example.com").await.unwrap(),
            Some(Credential::basic("alice", "pw")),
            "the helper wins over auths"
        );
    }
    assert_eq!(recorded(dir.path(), "ok", "args"), "get");
    assert_eq!(recorded(dir.path(), "ok", "stdin"), "r.example.com");
    assert_eq!(calls(dir.path(), "ok"), 1, "answers are cached");
    assert_eq!(
        provider.credential("other.example.com").await.unwrap(),
        None
    );
    assert_eq!(calls(dir.path(), "ok"), 1, "credHelpers is per host");
}

#[tokio::test]
async fn token_username_means_identity_token() {
    let dir = tempfile::tempdir().unwrap();
    recording_helper(
        dir.path(),
        "acr",
        r#"{"ServerURL":"myreg.azurecr.io","Username":"<token>","Secret":"refresh"}"#,
    );
    let provider = provider(dir.path(), r#"{"credHelpers":{"myreg.azurecr.io":"acr"}}"#);
    assert_eq!(
        provider.credential("myreg.azurecr.io").await.unwrap(),
        Some(Credential::IdentityToken {
            token: Secret::new("refresh")
        })
    );
}

#[tokio::test]
async fn creds_store_is_the_default_and_docker_hub_is_asked_by_its_legacy_url() {
    let dir = tempfile::tempdir().unwrap();
    recording_helper(dir.path(), "store", r#"{"Username":"bob","Secret":"pw2"}"#);
    recording_helper(
        dir.path(),
        "ecr",
        r#"{"Username":"AWS","Secret":"ecr-token"}"#,
    );
    let provider = provider(
        dir.path(),
        r#"{"credsStore":"store","credHelpers":{"1234.dkr.ecr.us-east-1.amazonaws.com":"ecr"}}"#,
    );
    assert_eq!(
        provider.credential("docker.io").await.unwrap(),
        Some(Credential::basic("bob", "pw2"))
    );
    assert_eq!(
        recorded(dir.path(), "store", "stdin"),
        "https://index.docker.io/v1/"
    );
    assert_eq!(
        provider
            .credential("1234.dkr.ecr.us-east-1.amazonaws.com")
            .await
            .unwrap(),
        Some(Credential::basic("AWS", "ecr-token"))
    );
    assert_eq!(
        calls(dir.path(), "store"),
        1,
        "credHelpers wins over credsStore"
    );
    assert_eq!(calls(dir.path(), "ecr"), 1);
}

#[tokio::test]
async fn not_found_falls_back_to_auths_then_none() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "empty",
        "echo call >> \"$0.calls\"\necho 'credentials not found in native keychain'\nexit 1",
    );
    recording_helper(dir.path(), "blank", r#"{"Username":"","Secret":""}"#);
    let provider = provider(
        dir.path(),
        r#"{"credsStore":"empty","credHelpers":{"b.io":"blank"},"auths":{"a.io":{"username":"u","password":"p"},"b.io":{"username":"v","password":"q"}}}"#,
    );
    assert_eq!(
        provider.credential("a.io").await.unwrap(),
        Some(Credential::basic("u", "p"))
    );
    assert_eq!(provider.credential("c.io").await.unwrap(), None);
    assert_eq!(provider.credential("c.io").await.unwrap(), None);
    assert_eq!(
        calls(dir.path(), "empty"),
        2,
        "one call per registry, then cached"
    );
    assert_eq!(
        provider.credential("b.io").await.unwrap(),
        Some(Credential::basic("v", "q")),
        "an empty secret is no credential"
    );
}

#[tokio::test]
async fn failing_helpers_are_errors_that_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "locked",
        "echo call >> \"$0.calls\"\necho 'error: keychain locked'\necho 'second line'\nexit 1",
    );
    write_helper(dir.path(), "stderr", "echo 'boom' >&2\nexit 2");
    write_helper(dir.path(), "silent", "exit 3");
    write_helper(
        dir.path(),
        "garbled",
        &format!("printf '{{\"Username\":\"u\",\"Secret\":\"{SECRET}\"'"),
    );
    write_helper(
        dir.path(),
        "nosecret",
        r#"echo '{"Username":"u","Secret":42}'"#,
    );
    let cases = [
        ("locked", "exited with status 1: error: keychain locked"),
        ("stderr", "exited with status 2: boom"),
        ("silent", "exited with status 3"),
        ("garbled", "its output is not JSON"),
        ("nosecret", "its output has no 'Secret' string"),
        ("missing", "the program is not in the helper search path"),
    ];
    for (name, reason) in cases {
        let provider = provider(dir.path(), &format!(r#"{{"credsStore":"{name}"}}"#));
        let error = provider.credential("r.io").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "credential helper 'docker-credential-{name}' failed for registry 'r.io': {reason}"
            )
        );
        common::assert_no_secret(&error);
        let (helper, registry, got) = helper_error(error);
        assert_eq!(helper, format!("docker-credential-{name}"));
        assert_eq!(registry, "r.io");
        assert_eq!(got, reason);
    }
    let provider = provider(dir.path(), r#"{"credsStore":"locked"}"#);
    provider.credential("r.io").await.unwrap_err();
    provider.credential("r.io").await.unwrap_err();
    assert_eq!(
        calls(dir.path(), "locked"),
        3,
        "failures are retried, not cached"
    );
}

#[tokio::test]
async fn a_hanging_helper_times_out_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(dir.path(), "hang", "echo $$ > \"$0.pid\"\nexec sleep 30");
    let provider =
        provider(dir.path(), r#"{"credsStore":"hang"}"#).helper_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let error = provider.credential("r.io").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let (helper, _, reason) = helper_error(error);
    assert_eq!(helper, "docker-credential-hang");
    assert_eq!(reason, "no answer within 1s");

    #[cfg(target_os = "linux")]
    {
        let pid = recorded(dir.path(), "hang", "pid");
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting to be reaped: either way no longer sleeping.
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(
                Instant::now() < deadline,
                "helper {} still running",
                pid.trim()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn an_invalid_helper_name_is_refused_when_loading() {
    for json in [
        r#"{"credsStore":"../../../bin/sh"}"#,
        r#"{"credHelpers":{"r.io":"x y"}}"#,
        r#"{"credHelpers":{"r.io":""}}"#,
    ] {
        match DockerConfigProvider::from_json(json, "/test/config.json") {
            Err(error @ Error::DockerConfig { .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with("invalid docker config '/test/config.json': "),
                    "{message}"
                );
                assert!(message.contains("credential helper name"), "{message}");
            }
            other => panic!("{json}: expected Error::DockerConfig, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failing_docker_config_stops_a_chain_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(dir.path(), "broken", "exit 1");
    let chain = ProviderChain::first(provider(dir.path(), r#"{"credsStore":"broken"}"#))
        .or_else(ocync_auth::AnonymousProvider);
    let error = chain.resolve("r.io").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "credential provider 'docker-config' failed for registry 'r.io'"
    );
    let source = std::error::Error::source(&error).expect("the helper error is the source");
    assert!(
        source
            .to_string()
            .starts_with("credential helper 'docker-credential-broken'")
    );
}
