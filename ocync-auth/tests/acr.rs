//! Azure Container Registry credentials against in-process fakes on loopback: an Entra token
//! endpoint, App Service and IMDS managed identity endpoints, an ACR `/oauth2/exchange` and
//! `/oauth2/token`, and fake `az` programs.
//!
//! Every test sets every endpoint a source could call (authority host, identity endpoint, IMDS,
//! exchange) to a loopback fake, or turns the source off: nothing here may reach Azure or
//! 169.254.169.254.

#![cfg(feature = "acr")]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ocync_auth::{
    AcrOptions, AcrProvider, AzureCloud, BearerChallenge, Credential, CredentialProvider, Error,
    ProviderChain, Scopes, Secret, TokenRequest, fetch_token,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Match, Mock, MockBuilder, MockServer, Request, ResponseTemplate};

use common::{SECRET, assert_no_secret, client};

const REGISTRY: &str = "myreg.azurecr.io";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0b7f8c3e-1111-2222-3333-444455556666";
const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
const CLIENT_SECRET: &str = "client-secret-value";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------------
// Helpers

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An unsigned JWT: `header.claims.signature`, base64url without padding.
fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode("not-a-signature"),
    )
}

/// An Entra access token as a JWT with the tenant in `tid`, valid for an hour.
fn aad_token(tag: &str) -> String {
    jwt(&json!({
        "aud": ACR_RESOURCE,
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "tid": TENANT,
        "exp": now_unix() + 3600,
        "tag": tag,
    }))
}

/// An ACR refresh token that expires `seconds` from now.
fn refresh_token(tag: &str, seconds: u64) -> String {
    jwt(&json!({
        "iss": "Azure Container Registry",
        "aud": REGISTRY,
        "tenant": TENANT,
        "grant_type": "refresh_token",
        "exp": now_unix() + seconds,
        "tag": tag,
    }))
}

fn identity_token(token: &str) -> Credential {
    Credential::IdentityToken {
        token: Secret::new(token),
    }
}

/// Matches a form-encoded body with exactly these fields, in any order.
struct Form(Vec<(String, String)>);

fn form(fields: &[(&str, &str)]) -> Form {
    Form(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

impl Match for Form {
    fn matches(&self, request: &Request) -> bool {
        let is_form = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut got: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let mut want = self.0.clone();
        got.sort();
        want.sort();
        is_form && got == want
    }
}

/// Matches a query string with exactly these parameters, in any order.
struct Query(Vec<(String, String)>);

fn query(params: &[(&str, &str)]) -> Query {
    Query(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

impl Match for Query {
    fn matches(&self, request: &Request) -> bool {
        let mut got: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let mut want = self.0.clone();
        got.sort();
        want.sort();
        got == want
    }
}

fn aad_response(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": token,
    }))
}

/// The fake Entra token endpoint for the client secret grant, checking every field.
fn client_secret_mock(tenant: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/{tenant}/oauth2/v2.0/token")))
        .and(form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "client_credentials"),
            ("scope", ACR_SCOPE),
        ]))
}

/// [`client_secret_mock`] for [`TENANT`] answering `token`.
fn client_secret_ok(token: &str) -> Mock {
    client_secret_mock(TENANT).respond_with(aad_response(token))
}

/// The fake Entra token endpoint for the federated (client assertion) grant.
fn assertion_mock(assertion: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(form(&[
            ("client_assertion", assertion),
            ("client_assertion_type", JWT_BEARER),
            ("client_id", CLIENT_ID),
            ("grant_type", "client_credentials"),
            ("scope", ACR_SCOPE),
        ]))
}

/// The fake ACR `/oauth2/exchange`, checking the grant, the service, the tenant (when given)
/// and that the access token is the Entra one.
fn exchange_mock_for(service: &str, tenant: Option<&str>, aad: &str) -> MockBuilder {
    let mut fields = vec![
        ("grant_type", "access_token"),
        ("service", service),
        ("access_token", aad),
    ];
    if let Some(tenant) = tenant {
        fields.push(("tenant", tenant));
    }
    Mock::given(method("POST"))
        .and(path("/oauth2/exchange"))
        .and(form(&fields))
}

fn exchange_response(refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"refresh_token": refresh}))
}

fn exchange_mock(aad: &str, refresh: &str) -> Mock {
    exchange_mock_for(REGISTRY, Some(TENANT), aad).respond_with(exchange_response(refresh))
}

/// Options with every source off and every endpoint on the fakes: tests turn on what they use.
fn options(aad: &MockServer, acr: &MockServer) -> AcrOptions {
    AcrOptions::default()
        .http_client(client())
        .authority_host(Url::parse(&aad.uri()).unwrap())
        .exchange_base(Url::parse(&acr.uri()).unwrap())
        .imds(false)
        .azure_cli(false)
}

fn client_secret_options(aad: &MockServer, acr: &MockServer) -> AcrOptions {
    options(aad, acr)
        .tenant_id(TENANT)
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
}

fn provider(options: AcrOptions) -> AcrProvider {
    AcrProvider::new(options).expect("the provider builds")
}

/// A loopback address where nothing listens: connections are refused.
fn closed_port() -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap()
}

/// A fake `az` in `dir` that records its arguments in `dir/az-calls`, checks them, and prints
/// `json`.
#[cfg(unix)]
fn fake_az(dir: &Path, expected_args: &str, json: &Value) -> PathBuf {
    write_az(
        dir,
        &format!(
            r#"echo "$*" >> '{calls}'
if [ "$*" != '{expected_args}' ]; then echo "unexpected arguments: $*" >&2; exit 2; fi
cat <<'JSON'
{json}
JSON"#,
            calls = dir.join("az-calls").display(),
        ),
    )
}

#[cfg(unix)]
fn write_az(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("az");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// How often the fake `az` in `dir` ran.
fn az_calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("az-calls"))
        .map(|calls| calls.lines().count())
        .unwrap_or(0)
}

fn az_output(token: &str) -> Value {
    json!({
        "accessToken": token,
        "expiresOn": "2999-01-01 00:00:00.000000",
        "expires_on": now_unix() + 3000,
        "subscription": "00000000-0000-0000-0000-000000000001",
        "tenant": TENANT,
        "tokenType": "Bearer",
    })
}

/// Checks that `error` is `Provider { acr, registry }` wrapping `Provider { source, registry }`
/// and returns the innermost error.
fn failed_source<'e>(error: &'e Error, source_name: &str, registry: &str) -> &'e Error {
    let Error::Provider {
        provider: "acr",
        registry: outer_registry,
        source,
    } = error
    else {
        panic!("expected the acr provider's error: {error:?}");
    };
    assert_eq!(outer_registry, registry);
    let Error::Provider {
        provider,
        registry: inner_registry,
        source,
    } = source.as_ref()
    else {
        panic!("expected an entra source's error: {error:?}");
    };
    assert_eq!(*provider, source_name);
    assert_eq!(inner_registry, registry);
    let chain = error_chain(error);
    assert!(
        chain.contains(source_name) && chain.contains(registry),
        "{chain}"
    );
    source.as_ref()
}

/// The error and its sources' messages, joined.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        shown.push(e.to_string());
        current = e.source();
    }
    shown.join(" / ")
}

// ---------------------------------------------------------------------------------------------
// Each source alone

#[tokio::test]
async fn client_secret_gives_an_acr_refresh_token_and_two_calls_make_one_exchange() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("client-secret");
    let refresh = refresh_token("r1", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(client_secret_options(&aad, &acr));
    assert_eq!(provider.name(), "acr");
    assert_eq!(provider.sources(), ["client secret"]);
    for _ in 0..2 {
        let credential = provider.credential(REGISTRY).await.unwrap();
        assert_eq!(credential, Some(identity_token(&refresh)));
    }
    // Any case and an explicit port are the same registry, and share the refresh token.
    let credential = provider.credential("MyReg.AzureCR.io:443").await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn workload_identity_sends_the_trimmed_federated_token() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "  federated.jwt.token\n").unwrap();
    let token = aad_token("workload");
    let refresh = refresh_token("r", 3 * 3600);
    assertion_mock("federated.jwt.token")
        .respond_with(aad_response(&token))
        .expect(1)
        .mount(&aad)
        .await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(
        options(&aad, &acr)
            .tenant_id(TENANT)
            .client_id(CLIENT_ID)
            .federated_token_file(&file),
    );
    assert_eq!(provider.sources(), ["workload identity"]);
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test(start_paused = true)]
async fn workload_identity_rereads_the_rotated_file_when_it_is_five_minutes_old() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first.federated.token").unwrap();
    // Entra and ACR tokens of 100 s, renewed after 50 s: every lookup below needs new ones.
    let short_aad = |token: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 100, "access_token": token,
        }))
    };
    let (first, second) = ("aad-first", "aad-second");
    assertion_mock("first.federated.token")
        .respond_with(short_aad(first))
        .expect(2)
        .mount(&aad)
        .await;
    assertion_mock("second.federated.token")
        .respond_with(short_aad(second))
        .expect(1)
        .mount(&aad)
        .await;
    exchange_mock_for(REGISTRY, Some(TENANT), first)
        .respond_with(exchange_response(&refresh_token("r1", 100)))
        .expect(2)
        .mount(&acr)
        .await;
    exchange_mock_for(REGISTRY, Some(TENANT), second)
        .respond_with(exchange_response(&refresh_token("r2", 3600)))
        .expect(1)
        .mount(&acr)
        .await;

    let provider = provider(
        options(&aad, &acr)
            .tenant_id(TENANT)
            .client_id(CLIENT_ID)
            .federated_token_file(&file),
    );
    provider.credential(REGISTRY).await.unwrap().unwrap();
    std::fs::write(&file, "second.federated.token").unwrap();
    // A minute later the copy read from the file is still used...
    tokio::time::advance(Duration::from_secs(60)).await;
    provider.credential(REGISTRY).await.unwrap().unwrap();
    // ...and once it is five minutes old, the rotated file is read.
    tokio::time::advance(Duration::from_secs(300)).await;
    provider.credential(REGISTRY).await.unwrap().unwrap();
}

#[tokio::test]
async fn app_service_managed_identity_sends_the_identity_header() {
    let (aad, acr, identity) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let token = aad_token("app-service");
    let refresh = refresh_token("r", 3 * 3600);
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .and(header("X-IDENTITY-HEADER", "identity-header-value"))
        .and(query(&[
            ("api-version", "2019-08-01"),
            ("resource", ACR_RESOURCE),
            ("client_id", "user-assigned-id"),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token,
            "expires_on": (now_unix() + 3600).to_string(),
            "resource": ACR_RESOURCE,
            "token_type": "Bearer",
            "client_id": "user-assigned-id",
        })))
        .expect(1)
        .mount(&identity)
        .await;
    // No tenant configured: the exchange names the token's own `tid`.
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    let imds = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&imds)
        .await;

    let provider = provider(
        options(&aad, &acr)
            .client_id("user-assigned-id")
            .identity_endpoint(
                Url::parse(&format!("{}/msi/token", identity.uri())).unwrap(),
                "identity-header-value",
            )
            .imds_endpoint(Url::parse(&imds.uri()).unwrap())
            .imds(true),
    );
    assert_eq!(provider.sources(), ["managed identity"]);
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn imds_managed_identity_sends_the_metadata_header() {
    let (aad, acr, imds) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let token = aad_token("imds");
    let refresh = refresh_token("r", 3 * 3600);
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(header("Metadata", "true"))
        .and(query(&[
            ("api-version", "2018-02-01"),
            ("resource", ACR_RESOURCE),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token,
            "expires_in": "86399",
            "expires_on": (now_unix() + 86399).to_string(),
            "resource": ACR_RESOURCE,
            "token_type": "Bearer",
        })))
        .expect(1)
        .mount(&imds)
        .await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(
        options(&aad, &acr)
            .imds_endpoint(Url::parse(&imds.uri()).unwrap())
            .imds(true),
    );
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn imds_is_retried_while_it_is_unavailable() {
    let (aad, acr, imds) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let token = aad_token("imds");
    let refresh = refresh_token("r", 3 * 3600);
    Mock::given(path("/metadata/identity/oauth2/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&imds)
        .await;
    Mock::given(path("/metadata/identity/oauth2/token"))
        .and(header("Metadata", "true"))
        .respond_with(aad_response(&token))
        .expect(1)
        .mount(&imds)
        .await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(
        options(&aad, &acr)
            .imds_endpoint(Url::parse(&imds.uri()).unwrap())
            .imds(true),
    );
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[cfg(unix)]
#[tokio::test]
async fn azure_cli_token_is_exchanged() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let token = aad_token("az");
    let refresh = refresh_token("r", 3 * 3600);
    fake_az(
        dir.path(),
        &format!("account get-access-token -o json --scope {ACR_SCOPE} --tenant {TENANT}"),
        &az_output(&token),
    );
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&aad)
        .await;

    let provider = provider(
        options(&aad, &acr)
            .tenant_id(TENANT)
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    assert_eq!(provider.sources(), ["azure cli"]);
    for _ in 0..2 {
        let credential = provider.credential(REGISTRY).await.unwrap();
        assert_eq!(credential, Some(identity_token(&refresh)));
    }
    assert_eq!(az_calls(dir.path()), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn azure_cli_that_is_not_logged_in_is_an_error_naming_az() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    write_az(
        dir.path(),
        &format!(
            "echo '{{\"accessToken\":\"{SECRET}\"}}'\n\
             echo \"ERROR: Please run 'az login' to setup account.\" >&2\n\
             echo 'second line' >&2\nexit 1"
        ),
    );
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&acr)
        .await;

    let provider = provider(
        options(&aad, &acr)
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let inner = failed_source(&error, "azure cli", REGISTRY);
    let Error::CredentialHelper {
        helper,
        registry,
        reason,
    } = inner
    else {
        panic!("{inner:?}");
    };
    assert_eq!(helper, "az");
    assert_eq!(registry, REGISTRY);
    assert_eq!(
        reason,
        "exited with status 1: ERROR: Please run 'az login' to setup account."
    );
    assert!(!error.is_auth_failure());
    assert_no_secret(&error);
}

#[cfg(unix)]
#[tokio::test]
async fn a_hanging_azure_cli_times_out() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    write_az(dir.path(), "exec sleep 30");
    let provider = provider(
        options(&aad, &acr)
            .azure_cli(true)
            .azure_cli_dirs([dir.path()])
            .azure_cli_timeout(Duration::from_millis(300)),
    );
    let started = std::time::Instant::now();
    let error = provider.credential(REGISTRY).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let inner = failed_source(&error, "azure cli", REGISTRY);
    assert!(
        matches!(inner, Error::CredentialHelper { reason, .. } if reason.starts_with("no answer within")),
        "{inner:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Chain order and fall-through

#[cfg(unix)]
#[tokio::test]
async fn client_secret_wins_over_workload_identity_and_the_cli() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "federated").unwrap();
    fake_az(dir.path(), "unused", &az_output("az-token"));
    let token = aad_token("client-secret");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    assertion_mock("federated")
        .respond_with(aad_response("wi-token"))
        .expect(0)
        .mount(&aad)
        .await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(
        client_secret_options(&aad, &acr)
            .federated_token_file(&file)
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    assert_eq!(
        provider.sources(),
        ["client secret", "workload identity", "azure cli"]
    );
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
    assert_eq!(az_calls(dir.path()), 0);
}

#[cfg(unix)]
#[tokio::test]
async fn unavailable_sources_fall_through_to_the_cli() {
    // Managed identity is on, but nothing listens at the IMDS address.
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let token = aad_token("az");
    let refresh = refresh_token("r", 3 * 3600);
    fake_az(
        dir.path(),
        &format!("account get-access-token -o json --scope {ACR_SCOPE}"),
        &az_output(&token),
    );
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&aad)
        .await;

    let provider = provider(
        options(&aad, &acr)
            .imds(true)
            .imds_endpoint(closed_port())
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    assert_eq!(provider.sources(), ["managed identity", "azure cli"]);
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
    assert_eq!(az_calls(dir.path()), 1);
}

#[tokio::test]
async fn imds_without_an_identity_and_no_cli_means_no_credential() {
    let (aad, acr, imds) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    Mock::given(path("/metadata/identity/oauth2/token"))
        .and(header("Metadata", "true"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": "Identity not found",
        })))
        .expect(1)
        .mount(&imds)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&acr)
        .await;
    let empty = tempfile::tempdir().unwrap();

    let provider = provider(
        options(&aad, &acr)
            .imds(true)
            .imds_endpoint(Url::parse(&imds.uri()).unwrap())
            .azure_cli(true)
            .azure_cli_dirs([empty.path()]),
    );
    assert_eq!(provider.credential(REGISTRY).await.unwrap(), None);
}

#[tokio::test]
async fn imds_is_never_probed_unless_allowed() {
    let (aad, acr, imds) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    for server in [&aad, &acr, &imds] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
    let provider = provider(options(&aad, &acr).imds_endpoint(Url::parse(&imds.uri()).unwrap()));
    assert!(provider.sources().is_empty());
    assert_eq!(provider.credential(REGISTRY).await.unwrap(), None);
}

#[tokio::test]
async fn no_acr_credential_lets_a_chain_ask_the_next_provider() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let chain = ProviderChain::first(provider(options(&aad, &acr))).or_else(
        ocync_auth::StaticProvider::for_registry(REGISTRY, Credential::basic("myreg", "admin-pw")),
    );
    let (name, credential) = chain.resolve(REGISTRY).await.unwrap().unwrap();
    assert_eq!(name, "static");
    assert_eq!(credential, Credential::basic("myreg", "admin-pw"));
}

#[cfg(unix)]
#[tokio::test]
async fn a_failing_source_stops_the_chain_naming_itself_and_the_registry() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    fake_az(dir.path(), "unused", &az_output("az-token"));
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
        })))
        .expect(2)
        .mount(&aad)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&acr)
        .await;

    let provider = provider(
        client_secret_options(&aad, &acr)
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let inner = failed_source(&error, "client secret", REGISTRY);
    let Error::TokenDenied {
        registry,
        realm,
        status,
        message,
    } = inner
    else {
        panic!("{inner:?}");
    };
    assert_eq!(registry, REGISTRY);
    assert_eq!(*realm, format!("{}/{TENANT}/oauth2/v2.0/token", aad.uri()));
    assert_eq!(*status, StatusCode::UNAUTHORIZED);
    assert_eq!(message, "AADSTS7000215: Invalid client secret provided.");
    assert!(error.is_auth_failure());
    assert_eq!(
        error.to_string(),
        format!("credential provider 'acr' failed for registry '{REGISTRY}'")
    );
    assert_eq!(az_calls(dir.path()), 0);

    // Failures are not cached; a chain passes the error on as it is, naming the acr provider.
    let chain = ProviderChain::first(provider);
    let error = chain.resolve(REGISTRY).await.unwrap_err();
    failed_source(&error, "client secret", REGISTRY);
}

#[tokio::test]
async fn missing_settings_are_errors_naming_the_source() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&aad)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            options(&aad, &acr).client_id(CLIENT_ID).client_secret("x"),
            "client secret",
            "no tenant id is configured (AZURE_TENANT_ID)".to_owned(),
        ),
        (
            options(&aad, &acr).tenant_id(TENANT).client_secret("x"),
            "client secret",
            "no client id is configured (AZURE_CLIENT_ID)".to_owned(),
        ),
        (
            options(&aad, &acr)
                .tenant_id("../evil")
                .client_id(CLIENT_ID)
                .client_secret("x"),
            "client secret",
            "invalid tenant id '../evil'".to_owned(),
        ),
        (
            options(&aad, &acr)
                .tenant_id(TENANT)
                .client_id(CLIENT_ID)
                .federated_token_file(dir.path().join("missing")),
            "workload identity",
            format!(
                "cannot read the federated token file '{}': ",
                dir.path().join("missing").display()
            ),
        ),
    ];
    for (options, source, reason_start) in cases {
        let error = provider(options).credential(REGISTRY).await.unwrap_err();
        let inner = failed_source(&error, source, REGISTRY);
        let Error::CredentialHelper { helper, reason, .. } = inner else {
            panic!("{inner:?}");
        };
        assert_eq!(helper, source);
        assert!(reason.starts_with(&reason_start), "{reason}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts and clouds

#[cfg(unix)]
#[tokio::test]
async fn hosts_that_are_not_acr_get_nothing_and_nothing_is_called() {
    let (aad, acr, identity, imds) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    for server in [&aad, &acr, &identity, &imds] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "federated").unwrap();
    fake_az(dir.path(), "unused", &az_output("az-token"));
    let provider = provider(
        client_secret_options(&aad, &acr)
            .federated_token_file(&file)
            .identity_endpoint(Url::parse(&identity.uri()).unwrap(), "h")
            .imds(true)
            .imds_endpoint(Url::parse(&imds.uri()).unwrap())
            .azure_cli(true)
            .azure_cli_dirs([dir.path()]),
    );
    for registry in [
        "docker.io",
        "ghcr.io",
        "localhost:5000",
        "azurecr.io",
        "myreg.azurecr.io.evil.com",
        "myreg.azurecr.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    ] {
        assert_eq!(
            provider.credential(registry).await.unwrap(),
            None,
            "{registry}"
        );
        assert_eq!(provider.authority_host(registry), None, "{registry}");
    }
    assert_eq!(az_calls(dir.path()), 0);
}

#[test]
fn the_cloud_picks_the_authority() {
    let provider = provider(AcrOptions::default().http_client(client()).azure_cli(false));
    let cases = [
        ("myreg.azurecr.io", "https://login.microsoftonline.com/"),
        (
            "myreg.westeurope.data.azurecr.io",
            "https://login.microsoftonline.com/",
        ),
        ("myreg.azurecr.cn", "https://login.chinacloudapi.cn/"),
        (
            "myreg.chinaeast2.data.azurecr.cn",
            "https://login.chinacloudapi.cn/",
        ),
        ("myreg.azurecr.us", "https://login.microsoftonline.us/"),
    ];
    for (registry, authority) in cases {
        assert_eq!(
            provider.authority_host(registry).map(String::from),
            Some(authority.to_owned()),
            "{registry}"
        );
    }
    assert_eq!(
        AzureCloud::from_host("myreg.azurecr.cn"),
        Some(AzureCloud::China)
    );
    assert!(AzureCloud::matches("myreg.azurecr.us"));
    assert!(!AzureCloud::matches("docker.io"));
}

#[tokio::test]
async fn a_china_registry_asks_the_china_authority() {
    let (public_aad, china_aad, acr) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let token = aad_token("china");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&china_aad).await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&public_aad)
        .await;
    exchange_mock_for("myreg.azurecr.cn", Some(TENANT), &token)
        .respond_with(exchange_response(&refresh))
        .expect(1)
        .mount(&acr)
        .await;

    let provider = provider(
        client_secret_options(&public_aad, &acr)
            .cloud_authority_host(AzureCloud::Public, Url::parse(&public_aad.uri()).unwrap())
            .cloud_authority_host(AzureCloud::China, Url::parse(&china_aad.uri()).unwrap()),
    );
    assert_eq!(
        provider
            .authority_host("myreg.azurecr.cn")
            .map(String::from),
        Some(format!("{}/", china_aad.uri()))
    );
    let credential = provider.credential("myreg.azurecr.cn").await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn a_data_endpoint_is_exchanged_at_its_login_server() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    let provider = provider(client_secret_options(&aad, &acr));
    for registry in ["myreg.westeurope.data.azurecr.io", REGISTRY] {
        let credential = provider.credential(registry).await.unwrap();
        assert_eq!(credential, Some(identity_token(&refresh)), "{registry}");
    }
}

#[tokio::test]
async fn azure_authority_host_from_the_environment_overrides_every_cloud() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("env");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock_for("myreg.azurecr.us", Some(TENANT), &token)
        .respond_with(exchange_response(&refresh))
        .expect(1)
        .mount(&acr)
        .await;
    let imds = closed_port();
    let env: HashMap<&str, String> = HashMap::from([
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("AZURE_AUTHORITY_HOST", aad.uri()),
        ("IMDS_ENDPOINT", imds.to_string()),
    ]);
    let options = AcrOptions::from_lookup(|name| env.get(name).cloned())
        .http_client(client())
        .exchange_base(Url::parse(&acr.uri()).unwrap())
        .imds(false)
        .azure_cli(false);
    let provider = provider(options);
    assert_eq!(provider.sources(), ["client secret"]);
    for registry in ["myreg.azurecr.io", "myreg.azurecr.cn", "myreg.azurecr.us"] {
        assert_eq!(
            provider.authority_host(registry).map(String::from),
            Some(format!("{}/", aad.uri()))
        );
    }
    let credential = provider.credential("myreg.azurecr.us").await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn invalid_urls_in_the_environment_fail_acr_lookups_only() {
    let env: HashMap<&str, &str> = HashMap::from([
        ("AZURE_AUTHORITY_HOST", "login.example?sig=value"),
        ("AZURE_CLIENT_SECRET", "x"),
    ]);
    let options = AcrOptions::from_lookup(|name| env.get(name).map(|v| (*v).to_owned()))
        .http_client(client())
        .imds(false)
        .azure_cli(false);
    let provider = provider(options);
    assert_eq!(provider.credential("docker.io").await.unwrap(), None);
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let Error::Provider { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(
            source.as_ref(),
            Error::InvalidRealm { registry, realm, reason }
                if registry == REGISTRY
                    && realm == "login.example"
                    && *reason == "AZURE_AUTHORITY_HOST is not an http(s) URL"
        ),
        "{source:?}"
    );
}

#[tokio::test]
async fn secrets_are_only_sent_over_https_or_to_loopback() {
    let provider = provider(
        AcrOptions::default()
            .http_client(client())
            .authority_host(Url::parse("http://login.invalid").unwrap())
            .tenant_id(TENANT)
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .azure_cli(false),
    );
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let inner = failed_source(&error, "client secret", REGISTRY);
    assert!(
        matches!(inner, Error::InsecureRealm { realm, .. } if realm == &format!("http://login.invalid/{TENANT}/oauth2/v2.0/token")),
        "{inner:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Caching, expiry and concurrency

#[tokio::test(start_paused = true)]
async fn the_refresh_token_is_renewed_before_it_expires() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    // The ACR refresh token lives 20 minutes, the Entra token an hour.
    client_secret_ok(&token).expect(1).mount(&aad).await;
    let (first, second) = (refresh_token("first", 1200), refresh_token("second", 1200));
    exchange_mock(&token, &first)
        .up_to_n_times(1)
        .expect(1)
        .mount(&acr)
        .await;
    exchange_mock(&token, &second).expect(1).mount(&acr).await;

    let provider = provider(client_secret_options(&aad, &acr));
    assert_eq!(
        provider.credential(REGISTRY).await.unwrap(),
        Some(identity_token(&first))
    );
    // Still more than five minutes left: the cached token.
    tokio::time::advance(Duration::from_secs(890)).await;
    assert_eq!(
        provider.credential(REGISTRY).await.unwrap(),
        Some(identity_token(&first))
    );
    // Within five minutes of its expiry: a new exchange, with the still-valid Entra token.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(
        provider.credential(REGISTRY).await.unwrap(),
        Some(identity_token(&second))
    );
}

#[tokio::test(start_paused = true)]
async fn after_both_tokens_expire_both_are_fetched_again() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    client_secret_ok(&token).expect(2).mount(&aad).await;
    let refresh = refresh_token("r", 3 * 3600);
    exchange_mock(&token, &refresh).expect(2).mount(&acr).await;

    let provider = provider(client_secret_options(&aad, &acr));
    provider.credential(REGISTRY).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    provider.credential(REGISTRY).await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    provider.credential(REGISTRY).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refresh_token_without_exp_is_kept_three_hours() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, "opaque-refresh-token")
        .expect(1)
        .mount(&acr)
        .await;
    let provider = provider(client_secret_options(&aad, &acr));
    for _ in 0..2 {
        assert_eq!(
            provider.credential(REGISTRY).await.unwrap(),
            Some(identity_token("opaque-refresh-token"))
        );
    }
}

#[tokio::test]
async fn invalidate_forces_a_new_exchange_with_the_cached_entra_token() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, &refresh).expect(2).mount(&acr).await;
    let provider = provider(client_secret_options(&aad, &acr));
    provider.credential(REGISTRY).await.unwrap().unwrap();
    provider.invalidate("MYREG.azurecr.io");
    provider.credential(REGISTRY).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_exchange_is_an_error_and_the_next_lookup_starts_over() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(2).mount(&aad).await;
    Mock::given(method("POST"))
        .and(path("/oauth2/exchange"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "errors": [{"code": "UNAUTHORIZED", "message": "identity has no access"}],
        })))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&acr)
        .await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;

    let provider = provider(client_secret_options(&aad, &acr));
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let Error::Provider {
        provider: "acr",
        source,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        matches!(
            source.as_ref(),
            Error::TokenDenied { realm, message, .. }
                if *realm == format!("{}/oauth2/exchange", acr.uri())
                    && message == "identity has no access"
        ),
        "{source:?}"
    );
    assert!(error.is_auth_failure());
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_entra_call_and_one_exchange_per_registry() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let (first, second) = (refresh_token("1", 3 * 3600), refresh_token("2", 3 * 3600));
    client_secret_mock(TENANT)
        .respond_with(aad_response(&token).set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&aad)
        .await;
    exchange_mock_for(REGISTRY, Some(TENANT), &token)
        .respond_with(exchange_response(&first).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&acr)
        .await;
    exchange_mock_for("other.azurecr.io", Some(TENANT), &token)
        .respond_with(exchange_response(&second))
        .expect(1)
        .mount(&acr)
        .await;

    let provider = provider(client_secret_options(&aad, &acr));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let provider = provider.clone();
            let registry = if i % 5 == 4 {
                "other.azurecr.io"
            } else {
                REGISTRY
            };
            tokio::spawn(async move { (registry, provider.credential(registry).await) })
        })
        .collect();
    for task in tasks {
        let (registry, credential) = task.await.unwrap();
        let expected = if registry == REGISTRY {
            &first
        } else {
            &second
        };
        assert_eq!(credential.unwrap(), Some(identity_token(expected)));
    }
}

// ---------------------------------------------------------------------------------------------
// azure_core TokenCredential, both ways

/// A credential an embedder might bring (azure_identity's, say).
#[derive(Debug)]
struct FixedCredential(Result<String, String>);

impl TokenCredential for FixedCredential {
    fn get_token<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        scopes: &'life1 [&'life2 str],
        _options: Option<TokenRequestOptions<'life3>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let answer = match (&self.0, scopes) {
            (Ok(token), [ACR_SCOPE]) => Ok(AccessToken::new(
                token.clone(),
                OffsetDateTime::now_utc() + Duration::from_secs(3600),
            )),
            (Ok(_), _) => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("unexpected scopes {scopes:?}"),
            )),
            (Err(message), _) => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                message.clone(),
            )),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_token_credential_replaces_the_sources() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&aad)
        .await;
    let refresh = refresh_token("r", 3 * 3600);
    exchange_mock_for(REGISTRY, Some(TENANT), "embedder-token")
        .respond_with(exchange_response(&refresh))
        .expect(1)
        .mount(&acr)
        .await;
    let provider = provider(
        client_secret_options(&aad, &acr)
            .token_credential(Arc::new(FixedCredential(Ok("embedder-token".into())))),
    );
    assert_eq!(provider.sources(), ["token credential"]);
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn without_a_tenant_the_exchange_goes_without_one() {
    // An opaque token names no tenant (no `tid`), and none is configured.
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let refresh = refresh_token("r", 3 * 3600);
    exchange_mock_for(REGISTRY, None, "embedder-token")
        .respond_with(exchange_response(&refresh))
        .expect(1)
        .mount(&acr)
        .await;
    let provider = provider(
        options(&aad, &acr)
            .token_credential(Arc::new(FixedCredential(Ok("embedder-token".into())))),
    );
    let credential = provider.credential(REGISTRY).await.unwrap();
    assert_eq!(credential, Some(identity_token(&refresh)));
}

#[tokio::test]
async fn a_failing_token_credential_is_named() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let provider = provider(
        options(&aad, &acr).token_credential(Arc::new(FixedCredential(Err(
            "no identity here\nmore".into(),
        )))),
    );
    let error = provider.credential(REGISTRY).await.unwrap_err();
    let inner = failed_source(&error, "token credential", REGISTRY);
    assert!(
        matches!(inner, Error::CredentialHelper { helper, reason, .. }
            if helper == "token credential" && reason == "no identity here"),
        "{inner:?}"
    );
}

#[tokio::test]
async fn the_sources_serve_as_an_azure_core_token_credential_sharing_the_cache() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let refresh = refresh_token("r", 3 * 3600);
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    let provider = provider(client_secret_options(&aad, &acr));

    let credential = provider.token_credential(AzureCloud::Public);
    let access = credential.get_token(&[ACR_SCOPE], None).await.unwrap();
    assert_eq!(access.token.secret(), token);
    let left = access.expires_on - OffsetDateTime::now_utc();
    assert!(
        left.whole_seconds() > 3500 && left.whole_seconds() <= 3599,
        "{left}"
    );
    assert!(!format!("{credential:?}").contains(CLIENT_SECRET));
    // The provider reuses the Entra token.
    provider.credential(REGISTRY).await.unwrap().unwrap();

    // Failures keep their `ocync_auth::Error` inside.
    let failing = AcrProvider::new(
        options(&aad, &acr)
            .client_secret(CLIENT_SECRET)
            .client_id(CLIENT_ID),
    )
    .unwrap()
    .token_credential(AzureCloud::China);
    let error = failing.get_token(&[ACR_SCOPE], None).await.unwrap_err();
    assert_eq!(error.kind(), &azure_core::error::ErrorKind::Credential);
    let ours = error.into_downcast::<Error>().unwrap();
    let chain = error_chain(&ours);
    assert!(
        chain.contains("client secret") && chain.contains("*.azurecr.cn"),
        "{chain}"
    );

    let none = AcrProvider::new(options(&aad, &acr)).unwrap();
    let error = none
        .token_credential(AzureCloud::Public)
        .get_token(&[ACR_SCOPE], None)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no entra credential source is available");
}

// ---------------------------------------------------------------------------------------------
// The whole exchange, and secrets

#[tokio::test]
async fn the_refresh_token_gets_a_registry_access_token_from_fetch_token() {
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    let token = aad_token("t");
    let refresh = refresh_token("r", 3 * 3600);
    let access = jwt(&json!({"exp": now_unix() + 4500, "access": [{"type": "repository"}]}));
    client_secret_ok(&token).expect(1).mount(&aad).await;
    exchange_mock(&token, &refresh).expect(1).mount(&acr).await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "ocync"),
            ("service", REGISTRY),
            ("scope", "repository:app:pull,push"),
            ("refresh_token", &refresh),
        ]))
        // ACR answers without `expires_in`: the expiry is the JWT's.
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": access})))
        .expect(1)
        .mount(&acr)
        .await;

    let provider = provider(client_secret_options(&aad, &acr));
    let credential = provider.credential(REGISTRY).await.unwrap().unwrap();
    let challenge = BearerChallenge {
        realm: format!("{}/oauth2/token", acr.uri()),
        service: Some(REGISTRY.to_owned()),
        scope: None,
        error: None,
    };
    let scopes: Scopes = "repository:app:push,pull".parse().unwrap();
    let request = TokenRequest {
        registry: REGISTRY,
        challenge: &challenge,
        scopes: &scopes,
        credential: Some(&credential),
        registry_is_https: false,
    };
    let registry_token = fetch_token(&client(), &request).await.unwrap();
    assert_eq!(registry_token.value().expose(), access);
    let lifetime = registry_token.lifetime().as_secs();
    assert!((4490..=4500).contains(&lifetime), "{lifetime}");
}

#[tokio::test]
async fn no_error_or_debug_output_shows_a_secret() {
    let mut errors: Vec<Error> = Vec::new();
    let echo = |status: u16| {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": "invalid_client",
            "error_description": format!("you sent {SECRET}"),
            "errors": [{"message": format!("you sent {SECRET}")}],
        }))
    };

    // The client secret, echoed by Entra on 401 and 400, and in a 200 without a token.
    for (status, body) in [
        (401, echo(401)),
        (400, echo(400)),
        (
            200,
            ResponseTemplate::new(200).set_body_string(format!("token {SECRET}")),
        ),
    ] {
        let (aad, acr) = (MockServer::start().await, MockServer::start().await);
        Mock::given(any()).respond_with(body).mount(&aad).await;
        let provider = provider(
            options(&aad, &acr)
                .tenant_id(TENANT)
                .client_id(CLIENT_ID)
                .client_secret(SECRET),
        );
        let error = provider.credential(REGISTRY).await.unwrap_err();
        assert!(!format!("{provider:?}").contains(SECRET), "status {status}");
        errors.push(error);
    }

    // The federated assertion, echoed by Entra.
    let (aad, acr) = (MockServer::start().await, MockServer::start().await);
    Mock::given(any()).respond_with(echo(400)).mount(&aad).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), SECRET).unwrap();
    errors.push(
        provider(
            options(&aad, &acr)
                .tenant_id(TENANT)
                .client_id(CLIENT_ID)
                .federated_token_file(dir.path().join("token")),
        )
        .credential(REGISTRY)
        .await
        .unwrap_err(),
    );

    // The identity header, echoed by the managed identity endpoint.
    let (identity, acr) = (MockServer::start().await, MockServer::start().await);
    Mock::given(any())
        .respond_with(echo(500))
        .mount(&identity)
        .await;
    errors.push(
        provider(options(&aad, &acr).identity_endpoint(
            Url::parse(&format!("{}/msi/token?sig={SECRET}", identity.uri())).unwrap(),
            SECRET,
        ))
        .credential(REGISTRY)
        .await
        .unwrap_err(),
    );
    // IMDS is sent nothing secret, but its address may carry a query string.
    let imds = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(403))
        .mount(&imds)
        .await;
    errors.push(
        provider(
            options(&aad, &acr)
                .imds(true)
                .imds_endpoint(Url::parse(&format!("{}?k={SECRET}", imds.uri())).unwrap()),
        )
        .credential(REGISTRY)
        .await
        .unwrap_err(),
    );

    // The Entra token, echoed by the exchange on 401, 500, and in a 200 without a refresh token.
    for body in [
        echo(401),
        echo(500),
        ResponseTemplate::new(200).set_body_json(json!({"token": SECRET})),
    ] {
        let (aad, acr) = (MockServer::start().await, MockServer::start().await);
        Mock::given(any())
            .respond_with(aad_response(SECRET))
            .mount(&aad)
            .await;
        Mock::given(any()).respond_with(body).mount(&acr).await;
        errors.push(
            provider(client_secret_options(&aad, &acr))
                .credential(REGISTRY)
                .await
                .unwrap_err(),
        );
    }

    // Nothing listening, with a secret in the endpoint's query string.
    errors.push(
        provider(options(&aad, &acr).identity_endpoint(
            Url::parse(&format!("{}?k={SECRET}", closed_port())).unwrap(),
            "h",
        ))
        .credential(REGISTRY)
        .await
        .unwrap_err(),
    );

    assert_eq!(errors.len(), 10);
    for error in &errors {
        assert_no_secret(error);
    }

    let options = AcrOptions::default()
        .client_secret(SECRET)
        .identity_endpoint(
            Url::parse(&format!("http://127.0.0.1:1/msi?k={SECRET}")).unwrap(),
            SECRET,
        )
        .exchange_base(Url::parse(&format!("http://u:{SECRET}@127.0.0.1:1")).unwrap())
        .azure_cli(false);
    let shown = format!("{options:?} {options:#?}");
    assert!(!shown.contains(SECRET), "{shown}");
    let provider = provider(options.http_client(client()));
    assert!(!format!("{provider:?}").contains(SECRET));
    assert!(!format!("{:?}", identity_token(SECRET)).contains(SECRET));
}
