//! The `ocync` binary against cloud registries without the cloud: hosts named like ECR and ACR
//! reached through `HTTPS_PROXY` (a local CONNECT proxy) and `SSL_CERT_FILE` (the test CA),
//! backed by real `docker-registry` data planes that enforce the credentials, with moto as
//! ECR's control plane and in-process fakes of Entra ID and ACR's token endpoints. Every run is
//! at trace level and all of its output is searched for the secrets it used.

use std::path::Path;
use std::process::{Command, Output};

use ocync_auth::testing::MotoServer;
use ocync_transport::testing::{
    ConnectProxy, FakeAad, FakeAcr, Fixture, RegistryAuth, RegistryOptions, TestRegistry,
    registries_for,
};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const ACR_HOST: &str = "myreg.azurecr.io";

/// `ocync` with a clean environment: no inherited cloud credentials, proxies, home or config.
fn ocync(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocync"));
    for (key, _) in std::env::vars() {
        let k = key.to_ascii_uppercase();
        if k.starts_with("AWS_")
            || k.starts_with("AZURE_")
            || k.contains("PROXY")
            || k.starts_with("IDENTITY_")
            || k.starts_with("SSL_CERT")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("IMDS_ENDPOINT", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("NO_COLOR", "1");
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

async fn seed_source() -> (TestRegistry, Fixture) {
    let source = TestRegistry::plain().await;
    let fixture = Fixture::multi_arch_with_referrers(77);
    let dir = tempfile::tempdir().unwrap();
    fixture.write_layout(dir.path(), "v1").unwrap();
    ocync_transport::Copy::new(
        format!("oci:{}:v1", dir.path().display()),
        format!("{}/app:v1", source.host()),
    )
    .registries(&registries_for(&[&source]))
    .run()
    .await
    .unwrap();
    (source, fixture)
}

fn assert_no_secret(outputs: &[&str], secrets: &[&str]) {
    for output in outputs {
        for secret in secrets {
            if let Some(at) = output.find(secret) {
                let line = output[..at].rsplit('\n').next().unwrap_or_default();
                panic!(
                    "a secret leaked into the output: {secret}\nin the line starting: {}",
                    &line[..line.len().min(300)]
                );
            }
        }
    }
}

/// ECR with ambient AWS credentials (environment variables): the registry is detected from
/// its host, `GetAuthorizationToken` (moto) gives the Basic credentials the data plane
/// demands, the repository is created (opt-in), and nothing secret is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_into_ecr_with_ambient_aws_credentials() {
    let moto = MotoServer::start();
    let ecr = TestRegistry::start(
        RegistryOptions::new()
            .with_tls_names([ECR_HOST])
            .with_auth(RegistryAuth::Htpasswd)
            .with_basic_user("AWS", MotoServer::PASSWORD),
    )
    .await;
    let proxy = ConnectProxy::start(vec![(format!("{ECR_HOST}:443"), ecr.addr())]).await;
    let (source, fixture) = seed_source().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("ocync.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  src:\n    url: http://{}\n  ecr:\n    url: {ECR_HOST}\n    create_repositories: true\nmappings:\n  - from: app\n    source: src\n    targets: ecr\n",
            source.host()
        ),
    )
    .unwrap();
    let aws_secret = "wJalrXUtnFEMI-test-secret-not-real-4242";
    let env = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", "AKIATESTONLY0000")
            .env("AWS_SECRET_ACCESS_KEY", aws_secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_ECR", moto.url())
            .env("HTTPS_PROXY", proxy.url())
            .env("SSL_CERT_FILE", ecr.ca_file().unwrap());
    };

    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.args(["-vv", "sync", "--json", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        proxy
            .connects()
            .iter()
            .any(|c| c == &format!("{ECR_HOST}:443")),
        "HTTPS_PROXY was used"
    );
    let client = ocync_transport::ClientBuilder::new(&ecr.host())
        .ca_file(ecr.ca_file().unwrap())
        .credentials(std::sync::Arc::new(ocync_auth::StaticProvider::new(
            ocync_auth::Credential::basic("AWS", MotoServer::PASSWORD),
        )))
        .build()
        .unwrap();
    let pushed = client.manifest_head("app", "v1").await.unwrap().unwrap();
    assert_eq!(pushed.digest, *fixture.top.digest());
    let api = ocync_auth::EcrApi::new(
        &ocync_auth::EcrRegistry::parse(ECR_HOST).unwrap(),
        &ocync_auth::EcrOptions::new().sdk_config(moto.sdk_config("us-east-1")),
    )
    .await
    .unwrap();
    assert!(
        api.repository_exists("app").await.unwrap(),
        "create_repositories made the repository"
    );
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", MotoServer::PASSWORD));
    assert_no_secret(&[&out, &err], &[aws_secret, MotoServer::PASSWORD, &basic]);

    // Even a RUST_LOG that asks for the AWS SDK's own trace output does not get credentials.
    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.env("RUST_LOG", "trace,aws_smithy_runtime=trace,aws_sigv4=trace")
        .args(["sync", "--config"])
        .arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("TRACE"), "trace logging is on");
    assert_no_secret(&[&out, &err], &[aws_secret, MotoServer::PASSWORD, &basic]);

    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.args(["-vv", "auth", "check", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains(ECR_HOST))
        .expect("a line for the ECR registry");
    assert!(
        line.starts_with("ok") && line.contains("via ecr") && line.contains("pull, push on app"),
        "{line}"
    );
    assert_no_secret(&[&out, &err], &[aws_secret, MotoServer::PASSWORD, &basic]);

    // Without AWS credentials the error names the registry, the provider and the fix.
    let mut cmd = ocync(home.path());
    cmd.env("AWS_ENDPOINT_URL_ECR", moto.url())
        .env("HTTPS_PROXY", proxy.url())
        .env("SSL_CERT_FILE", ecr.ca_file().unwrap());
    cmd.args(["auth", "check", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_ne!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(ECR_HOST))
        .unwrap_or_default();
    assert!(
        line.starts_with("FAILED") && line.contains("ecr"),
        "{line}\n{err}"
    );
}

/// ACR with a service principal (AZURE_CLIENT_ID/SECRET/TENANT_ID): Entra token, then
/// `/oauth2/exchange` for a refresh token, then the registry's own token flow; the registry is
/// detected from its host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_into_acr_with_a_service_principal() {
    let entra_token = "entra-access-token-not-real-9c1f";
    let client_secret = "client-secret-not-real-5e2d";
    let acr = FakeAcr::start(ACR_HOST, "tenant-1", entra_token).await;
    let aad = FakeAad::start("tenant-1", "client-1", client_secret, entra_token).await;
    let proxy = ConnectProxy::start(vec![acr.route()]).await;
    let (source, fixture) = seed_source().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("ocync.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  src:\n    url: http://{}\n  acr:\n    url: {ACR_HOST}\nmappings:\n  - from: app\n    to: mirror/app\n    source: src\n    targets: acr\n",
            source.host()
        ),
    )
    .unwrap();
    let env = |cmd: &mut Command| {
        cmd.env("AZURE_TENANT_ID", "tenant-1")
            .env("AZURE_CLIENT_ID", "client-1")
            .env("AZURE_CLIENT_SECRET", client_secret)
            .env("AZURE_AUTHORITY_HOST", aad.url())
            .env("HTTPS_PROXY", proxy.url())
            .env("SSL_CERT_FILE", acr.ca_file());
    };
    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.args(["-vv", "sync", "--json", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        acr.exchanges(),
        1,
        "one Entra token exchanged once for the run"
    );
    let link = acr
        .registry()
        .storage_root()
        .join("docker/registry/v2/repositories/mirror/app/_manifests/tags/v1/current/link");
    let stored = std::fs::read_to_string(&link).expect("the tag is stored behind the fake ACR");
    assert_eq!(stored.trim(), fixture.top.digest().to_string());
    let refresh_tokens = acr.refresh_tokens();
    let mut secrets: Vec<&str> = vec![client_secret, entra_token];
    secrets.extend(refresh_tokens.iter().map(String::as_str));
    assert_no_secret(&[&out, &err], &secrets);

    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.args(["-vv", "auth", "check", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains(ACR_HOST))
        .expect("a line for the ACR registry");
    assert!(
        line.starts_with("ok")
            && line.contains("via acr")
            && line.contains("pull, push on mirror/app"),
        "{line}"
    );
    let refresh_tokens = acr.refresh_tokens();
    let mut secrets: Vec<&str> = vec![client_secret, entra_token];
    secrets.extend(refresh_tokens.iter().map(String::as_str));
    assert_no_secret(&[&out, &err], &secrets);

    // A wrong client secret: Entra refuses, and the error names the registry and the source.
    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.env("AZURE_CLIENT_SECRET", "wrong-secret-not-real");
    cmd.args(["sync", "--config"]).arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains(ACR_HOST) && err.contains("client secret"),
        "{err}"
    );
    assert_no_secret(&[&out, &err], &["wrong-secret-not-real"]);
}

/// AWS_CA_BUNDLE, as the AWS CLI and SDKs honour it: the ECR API behind a TLS endpoint signed
/// by a CA nobody else trusts works only when the bundle names that CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_ca_bundle_is_trusted_for_the_ecr_api() {
    use axum::routing::post;
    use base64::Engine as _;
    let password = "bundle-password-not-real";
    let ecr = TestRegistry::start(
        RegistryOptions::new()
            .with_tls_names([ECR_HOST])
            .with_auth(RegistryAuth::Htpasswd)
            .with_basic_user("AWS", password),
    )
    .await;
    let proxy = ConnectProxy::start(vec![(format!("{ECR_HOST}:443"), ecr.addr())]).await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 43_200;
    let api_ca = ocync_transport::testing::TestCa::new();
    let router = axum::Router::new().route(
        "/",
        post(move || {
            let body = serde_json::json!({"authorizationData": [{
                "authorizationToken": token,
                "expiresAt": expires,
                "proxyEndpoint": format!("https://{ECR_HOST}")
            }]});
            async move {
                (
                    [("content-type", "application/x-amz-json-1.1")],
                    body.to_string(),
                )
            }
        }),
    );
    let (api, _server) = ocync_transport::testing::serve_tls(router, &api_ca).await;
    let home = tempfile::tempdir().unwrap();
    let bundle = api_ca.write_ca(home.path());
    let config = home.path().join("ocync.yaml");
    std::fs::write(
        &config,
        format!("registries:\n  ecr:\n    url: {ECR_HOST}\nmappings: []\n"),
    )
    .unwrap();
    let env = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", "AKIATESTONLY0000")
            .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
            .env("AWS_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL_ECR",
                format!("https://127.0.0.1:{}", api.port()),
            )
            .env("HTTPS_PROXY", proxy.url())
            .env("SSL_CERT_FILE", ecr.ca_file().unwrap());
    };
    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.args(["auth", "check", "--config"]).arg(&config);
    let (code, out, _) = run(cmd).await;
    assert_ne!(
        code, 0,
        "the API's CA is not trusted without the bundle: {out}"
    );
    let mut cmd = ocync(home.path());
    env(&mut cmd);
    cmd.env("AWS_CA_BUNDLE", &bundle)
        .args(["auth", "check", "--config"])
        .arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("via ecr") && out.contains("reachable"),
        "{out}"
    );
}

/// ACR's admin user (and repository-scoped tokens, which work the same way): Basic
/// credentials from the configuration, exchanged at ACR's `/oauth2/token`, with no Entra ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_into_acr_with_the_admin_user() {
    let acr = FakeAcr::start(ACR_HOST, "tenant-1", "entra-token-unused").await;
    let proxy = ConnectProxy::start(vec![acr.route()]).await;
    let (source, fixture) = seed_source().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("ocync.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  src:\n    url: http://{}\n  acr:\n    url: {ACR_HOST}\n    auth_type: basic\n    credentials:\n      username: {}\n      password: ${{ACR_ADMIN_PASSWORD}}\nmappings:\n  - from: app\n    source: src\n    targets: acr\n",
            source.host(),
            acr.admin_username()
        ),
    )
    .unwrap();
    let mut cmd = ocync(home.path());
    cmd.env("ACR_ADMIN_PASSWORD", acr.admin_password())
        .env("HTTPS_PROXY", proxy.url())
        .env("SSL_CERT_FILE", acr.ca_file())
        .args(["-vv", "sync", "--config"])
        .arg(&config);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(acr.exchanges(), 0, "no Entra ID involved");
    let link = acr
        .registry()
        .storage_root()
        .join("docker/registry/v2/repositories/app/_manifests/tags/v1/current/link");
    assert_eq!(
        std::fs::read_to_string(link).unwrap().trim(),
        fixture.top.digest().to_string()
    );
    assert_no_secret(&[&out, &err], &[&acr.admin_password()]);
}
