//! Amazon ECR and ECR Public providers and API helpers against moto (the ECR control plane,
//! started per test on 127.0.0.1) and wiremock (ECR Public, which moto does not emulate, and
//! failures moto cannot produce).
//!
//! Requests are counted by a small proxy in front of moto (moto keeps no request log), which can
//! also rewrite moto's fixed, already-expired `expiresAt` into a real 12 hour lifetime. Every SDK
//! configuration here is built by hand: static credentials, an explicit region and a loopback
//! endpoint, nothing from the environment.

#![cfg(feature = "ecr")]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ecr::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use ocync_auth::testing::MotoServer;
use ocync_auth::{
    Credential, CredentialProvider, EcrApi, EcrOptions, EcrProvider, EcrPublicProvider,
    EcrRegistry, Error,
};
use ocync_core::Digest;
use wiremock::matchers::{header, header_regex, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{SECRET, assert_no_secret};

const HOUR: Duration = Duration::from_secs(3600);
const EU: &str = "eu-west-1";
const AP: &str = "ap-southeast-2";
const PRIVATE_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";

// ---------------------------------------------------------------------------------------------
// helpers

/// One request the proxy forwarded: its `X-Amz-Target` and the region of its SigV4 scope.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    target: String,
    region: String,
}

/// A proxy in front of moto that records every request.
struct CountingProxy {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    fresh_tokens: bool,
}

impl CountingProxy {
    /// Forwards to `upstream`; with `fresh_tokens`, `GetAuthorizationToken` answers expire in 12
    /// hours instead of moto's 2015.
    async fn start(upstream: &str, fresh_tokens: bool) -> CountingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.to_owned(),
            client: common::client(),
            seen: seen.clone(),
            fresh_tokens,
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        CountingProxy { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests had `X-Amz-Target` ending in `.{operation}`.
    fn count(&self, operation: &str) -> usize {
        let suffix = format!(".{operation}");
        self.seen()
            .iter()
            .filter(|seen| seen.target.ends_with(&suffix))
            .count()
    }
}

async fn forward(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let target = text("x-amz-target");
    // `Credential=<key id>/<date>/<region>/<service>/aws4_request`
    let region = text("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|scope| scope.split('/').nth(2))
        .unwrap_or_default()
        .to_owned();
    state
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            target: target.clone(),
            region,
        });
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.body(body).send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if state.fresh_tokens && target == PRIVATE_TARGET && status.is_success() {
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for data in json["authorizationData"].as_array_mut().unwrap() {
            data["expiresAt"] = (epoch_now() + 12 * 3600).into();
        }
        bytes = serde_json::to_vec(&json).unwrap();
    }
    let mut response = axum::response::Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response.body(axum::body::Body::from(bytes)).unwrap()
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An SDK configuration for `endpoint`: static credentials whose secret key is [`SECRET`],
/// `region`, no retries (so failure tests answer at once).
fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    sdk_config_with(
        endpoint,
        region,
        Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTESTING",
            SECRET,
            None,
            None,
            "test",
        ))),
    )
}

fn sdk_config_with(
    endpoint: &str,
    region: &str,
    credentials: Option<SharedCredentialsProvider>,
) -> SdkConfig {
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(RetryConfig::disabled())
        .endpoint_url(endpoint);
    builder.set_credentials_provider(credentials);
    builder.build()
}

/// A credentials provider that finds nothing, like the default chain on a machine without AWS
/// credentials.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        )))
    }
}

fn no_credentials() -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(NoCredentials))
}

fn moto_host(region: &str) -> String {
    MotoServer::registry_host(region)
}

fn basic(credential: Option<Credential>) -> (String, String) {
    match credential {
        Some(Credential::Basic { username, password }) => (username, password.expose().to_owned()),
        other => panic!("expected a Basic credential, got {other:?}"),
    }
}

/// `(provider, registry, inner error)` of an `Error::Provider`.
fn provider_error(error: &Error) -> (&'static str, &str, &Error) {
    match error {
        Error::Provider {
            provider,
            registry,
            source,
        } => (provider, registry, source),
        other => panic!("expected Error::Provider, got {other:?}"),
    }
}

/// Uploads `content` as a layer of `repository` the way ECR's layer API takes it, which is the
/// only way moto learns about layers.
async fn upload_layer(ecr: &aws_sdk_ecr::Client, repository: &str, content: Vec<u8>) -> Digest {
    let digest = Digest::sha256(&content);
    let last = i64::try_from(content.len()).unwrap() - 1;
    let upload = ecr
        .initiate_layer_upload()
        .repository_name(repository)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    ecr.upload_layer_part()
        .repository_name(repository)
        .upload_id(id)
        .part_first_byte(0)
        .part_last_byte(last)
        .layer_part_blob(Blob::new(content))
        .send()
        .await
        .unwrap();
    let done = ecr
        .complete_layer_upload()
        .repository_name(repository)
        .upload_id(id)
        .layer_digests(digest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(done.layer_digest(), Some(digest.to_string().as_str()));
    digest
}

// ---------------------------------------------------------------------------------------------
// EcrProvider against moto

#[tokio::test]
async fn get_authorization_token_gives_basic_aws_credentials_and_expired_tokens_are_fetched_again()
{
    let moto = MotoServer::start();
    let proxy = CountingProxy::start(&moto.url(), false).await;
    let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&proxy.url, EU)));
    assert_eq!(provider.name(), "ecr");

    let first = provider.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(
        basic(first),
        ("AWS".to_owned(), MotoServer::PASSWORD.to_owned())
    );
    assert_eq!(proxy.count("GetAuthorizationToken"), 1);

    // moto's token expired in 2015: it served that call, the next one asks again.
    let second = provider.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(basic(second).1, MotoServer::PASSWORD);
    assert_eq!(proxy.count("GetAuthorizationToken"), 2);

    // Callers that wait for one fetch share it, even when it is only good once.
    let host = moto_host(EU);
    let concurrent = futures::future::join_all((0..8).map(|_| provider.credential(&host))).await;
    for credential in concurrent {
        assert_eq!(basic(credential.unwrap()).1, MotoServer::PASSWORD);
    }
    assert_eq!(proxy.count("GetAuthorizationToken"), 3);

    // Other hosts are not ECR's business, and cost no request.
    for host in [
        "ghcr.io",
        "docker.io",
        "public.ecr.aws",
        "localhost:5000",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com.example.com",
    ] {
        assert!(provider.credential(host).await.unwrap().is_none(), "{host}");
    }
    assert_eq!(proxy.seen().len(), 3);
}

#[tokio::test]
async fn tokens_are_cached_until_half_an_hour_before_they_expire() {
    let moto = MotoServer::start();
    let proxy = CountingProxy::start(&moto.url(), true).await;
    let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&proxy.url, EU)));

    for _ in 0..3 {
        let credential = provider.credential(&moto_host(EU)).await.unwrap();
        assert_eq!(basic(credential).1, MotoServer::PASSWORD);
    }
    assert_eq!(
        proxy.count("GetAuthorizationToken"),
        1,
        "served from the cache"
    );

    // Long runs: 11.5 h later (with 12 h tokens) the token is renewed before it expires.
    tokio::time::pause();
    tokio::time::advance(11 * HOUR + Duration::from_secs(29 * 60)).await;
    tokio::time::resume();
    provider.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(
        proxy.count("GetAuthorizationToken"),
        1,
        "still fresh at 11:29"
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    tokio::time::resume();
    provider.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(proxy.count("GetAuthorizationToken"), 2, "renewed at 11:31");
    provider.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(proxy.count("GetAuthorizationToken"), 2);

    // Another region of the same account is another token.
    provider.credential(&moto_host(AP)).await.unwrap();
    assert_eq!(proxy.count("GetAuthorizationToken"), 3);
}

#[tokio::test]
async fn the_region_comes_from_the_registry_host() {
    let moto = MotoServer::start();
    let proxy = CountingProxy::start(&moto.url(), false).await;
    // The configuration's own region is neither of the registries' regions.
    let provider =
        EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&proxy.url, "us-west-2")));

    provider.credential(&moto_host(EU)).await.unwrap();
    provider.credential(&moto_host(AP)).await.unwrap();
    let regions: Vec<String> = proxy.seen().into_iter().map(|s| s.region).collect();
    assert_eq!(regions, [EU, AP]);

    // moto keeps one registry per region (from the SigV4 scope): each API sees its own.
    let eu = provider
        .api(&EcrRegistry::parse(&moto_host(EU)).unwrap())
        .await;
    let ap = EcrApi::new(
        &EcrRegistry::parse(&moto_host(AP)).unwrap(),
        &EcrOptions::new().sdk_config(sdk_config(&proxy.url, "us-west-2")),
    )
    .await
    .unwrap();
    assert!(eu.create_repository("team/only-in-eu").await.unwrap());
    assert!(ap.create_repository("team/only-in-ap").await.unwrap());
    assert!(eu.repository_exists("team/only-in-eu").await.unwrap());
    assert!(!eu.repository_exists("team/only-in-ap").await.unwrap());
    assert!(ap.repository_exists("team/only-in-ap").await.unwrap());
    assert!(!ap.repository_exists("team/only-in-eu").await.unwrap());

    // The region option overrides the host's.
    let overridden = EcrProvider::new(
        EcrOptions::new()
            .sdk_config(sdk_config(&proxy.url, "us-west-2"))
            .region(AP),
    );
    overridden.credential(&moto_host(EU)).await.unwrap();
    assert_eq!(proxy.seen().last().unwrap().region, AP);
}

// ---------------------------------------------------------------------------------------------
// EcrApi against moto

#[tokio::test]
async fn batch_check_layers_asks_in_chunks_of_100_and_returns_the_available_ones() {
    let moto = MotoServer::start();
    let proxy = CountingProxy::start(&moto.url(), false).await;
    let registry = EcrRegistry::parse(&moto_host(EU)).unwrap();
    let api = EcrApi::new(
        &registry,
        &EcrOptions::new().sdk_config(sdk_config(&proxy.url, EU)),
    )
    .await
    .unwrap();
    assert!(api.create_repository("app/layers").await.unwrap());

    // Layers go straight to moto, past the counting proxy.
    let direct = aws_sdk_ecr::Client::new(&moto.sdk_config(EU));
    let uploaded: Vec<Digest> = futures::stream::iter(0..105_u32)
        .map(|n| upload_layer(&direct, "app/layers", format!("layer {n}").into_bytes()))
        .buffer_unordered(8)
        .collect()
        .await;
    let missing: Vec<Digest> = (0..25_u32)
        .map(|n| Digest::sha256(format!("never uploaded {n}").as_bytes()))
        .collect();
    let mut asked: Vec<Digest> = uploaded.iter().chain(&missing).cloned().collect();
    asked.push(uploaded[0].clone()); // a duplicate is asked about once

    let available = api.batch_check_layers("app/layers", &asked).await.unwrap();
    assert_eq!(available, uploaded.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(proxy.count("BatchCheckLayerAvailability"), 2, "130 digests");

    // A repository that does not exist has no layers.
    let none = api.batch_check_layers("app/absent", &asked).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(
        proxy.count("BatchCheckLayerAvailability"),
        3,
        "stops at the first chunk"
    );

    // Nothing to ask, no request.
    assert!(
        api.batch_check_layers("app/layers", &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(proxy.count("BatchCheckLayerAvailability"), 3);
    assert!(proxy.seen().iter().all(|seen| seen.region == EU));
}

#[tokio::test]
async fn create_repository_reports_whether_it_created_it() {
    let moto = MotoServer::start();
    let registry = EcrRegistry::parse(&moto_host(EU)).unwrap();
    let api = EcrApi::new(
        &registry,
        &EcrOptions::new().sdk_config(moto.sdk_config(EU)),
    )
    .await
    .unwrap();
    assert_eq!(api.registry(), &registry);

    assert!(!api.repository_exists("mirror/alpine").await.unwrap());
    assert!(api.create_repository("mirror/alpine").await.unwrap());
    assert!(!api.create_repository("mirror/alpine").await.unwrap());
    assert!(api.repository_exists("mirror/alpine").await.unwrap());

    // An invalid name is a real failure that names the registry.
    let error = api.create_repository("Not A Valid Name").await.unwrap_err();
    let (provider, shown_registry, source) = provider_error(&error);
    assert_eq!(
        (provider, shown_registry),
        ("ecr", registry.host().as_str())
    );
    assert!(matches!(source, Error::TokenServer { .. }), "{source:?}");
    assert!(
        source.to_string().contains("InvalidParameterException"),
        "{source}"
    );
    assert!(!format!("{api:?}").contains("testing"), "{api:?}");
}

// ---------------------------------------------------------------------------------------------
// EcrProvider failures (wiremock)

fn aws_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(serde_json::json!({ "__type": code, "message": message }))
}

#[tokio::test]
async fn access_denied_names_the_registry_and_the_permission() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PRIVATE_TARGET))
        .respond_with(aws_error(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: \
             ecr:GetAuthorizationToken on resource: * because no identity-based policy allows \
             the ecr:GetAuthorizationToken action",
        ))
        .expect(2)
        .mount(&server)
        .await;
    let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&server.uri(), EU)));
    let host = moto_host(EU);

    let error = provider.credential(&host).await.unwrap_err();
    let (name, registry, source) = provider_error(&error);
    assert_eq!((name, registry), ("ecr", host.as_str()));
    assert!(matches!(source, Error::TokenDenied { .. }), "{source:?}");
    assert!(error.is_auth_failure());
    let shown = source.to_string();
    for expected in [
        host.as_str(),
        "AccessDeniedException",
        "user/ci is not authorized",
        "needs the iam permission 'ecr:GetAuthorizationToken'",
    ] {
        assert!(shown.contains(expected), "{shown}");
    }
    assert_no_secret(&error);
    // Failures are not cached: the next call asks again (`expect(2)`).
    assert!(provider.credential(&host).await.is_err());
}

#[tokio::test]
async fn rejected_credentials_say_how_to_renew_them() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(aws_error(
            400,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ))
        .mount(&server)
        .await;
    let provider = EcrProvider::new(
        EcrOptions::new()
            .sdk_config(sdk_config(&server.uri(), EU))
            .aws_profile("vendor"),
    );
    let error = provider.credential(&moto_host(EU)).await.unwrap_err();
    let (_, _, source) = provider_error(&error);
    assert!(matches!(source, Error::TokenDenied { .. }), "{source:?}");
    let shown = source.to_string();
    assert!(shown.contains("were rejected"), "{shown}");
    assert!(shown.contains("aws_profile"), "{shown}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn missing_credentials_name_the_chain_and_the_fix_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let host = moto_host(EU);
    for credentials in [no_credentials(), None] {
        let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config_with(
            &server.uri(),
            EU,
            credentials,
        )));
        let error = provider.credential(&host).await.unwrap_err();
        let (name, registry, source) = provider_error(&error);
        assert_eq!((name, registry), ("ecr", host.as_str()));
        assert!(
            matches!(source, Error::CredentialHelper { .. }),
            "{source:?}"
        );
        assert!(!error.is_auth_failure());
        let shown = source.to_string();
        for expected in [
            host.as_str(),
            "no aws credentials found",
            "sdk config given by the caller",
            "AWS_PROFILE",
            "aws_profile",
            "IRSA",
            "EKS Pod Identity",
        ] {
            assert!(shown.contains(expected), "{shown}");
        }
    }
}

#[tokio::test]
async fn malformed_tokens_are_errors_that_do_not_show_the_token() {
    let server = MockServer::start().await;
    let token = STANDARD.encode(format!("no-colon-{SECRET}"));
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(serde_json::json!({
                    "authorizationData": [{ "authorizationToken": token, "expiresAt": epoch_now() + 3600 }]
                })),
        )
        .mount(&server)
        .await;
    let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&server.uri(), EU)));
    let error = provider.credential(&moto_host(EU)).await.unwrap_err();
    let (_, _, source) = provider_error(&error);
    assert!(matches!(source, Error::TokenResponse { .. }), "{source:?}");
    assert!(
        source
            .to_string()
            .contains("not base64 of 'AWS:<password>'"),
        "{source}"
    );
    assert_no_secret(&error);
    assert!(!format!("{error:?}").contains(&token));
}

#[tokio::test]
async fn an_unreachable_api_is_an_error_naming_the_endpoint() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let provider = EcrProvider::new(EcrOptions::new().sdk_config(sdk_config(&endpoint, EU)));
    let error = provider.credential(&moto_host(EU)).await.unwrap_err();
    let (_, _, source) = provider_error(&error);
    assert!(
        matches!(source, Error::CredentialHelper { .. }),
        "{source:?}"
    );
    assert!(!error.is_auth_failure());
    let shown = source.to_string();
    assert!(shown.contains(&endpoint), "{shown}");
    assert!(shown.contains("GetAuthorizationToken"), "{shown}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn nothing_secret_is_shown_by_providers_options_or_credentials() {
    let moto = MotoServer::start();
    let options = EcrOptions::new().sdk_config(sdk_config(&moto.url(), EU));
    let provider = EcrProvider::new(options.clone());
    let credential = provider.credential(&moto_host(EU)).await.unwrap();
    let public = EcrPublicProvider::new(options.clone());
    for shown in [
        format!("{provider:?}"),
        format!("{options:?}"),
        format!("{credential:?}"),
        format!("{public:?}"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(MotoServer::PASSWORD), "{shown}");
        assert!(!shown.contains("auth-token"), "{shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// EcrPublicProvider (wiremock: moto does not emulate ECR Public)

fn public_token(password: &str, expires_at: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(serde_json::json!({
            "authorizationData": {
                "authorizationToken": STANDARD.encode(format!("AWS:{password}")),
                "expiresAt": expires_at,
            }
        }))
}

#[tokio::test]
async fn ecr_public_gets_basic_credentials_in_us_east_1_and_caches_them() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUBLIC_TARGET))
        // Signed for ecr-public in us-east-1, whatever the configuration's region.
        .and(header_regex(
            "authorization",
            r"Credential=AKIDTESTING/\d{8}/us-east-1/ecr-public/aws4_request",
        ))
        .respond_with(public_token(SECRET, epoch_now() + 12 * 3600))
        .expect(1)
        .mount(&server)
        .await;
    let provider =
        EcrPublicProvider::new(EcrOptions::new().sdk_config(sdk_config(&server.uri(), EU)));
    assert_eq!(provider.name(), "ecr-public");

    for _ in 0..3 {
        let credential = provider.credential("public.ecr.aws").await.unwrap();
        assert_eq!(basic(credential), ("AWS".to_owned(), SECRET.to_owned()));
    }
    for host in ["ghcr.io", &moto_host(EU), "ecr.aws"] {
        assert!(provider.credential(host).await.unwrap().is_none(), "{host}");
    }
    assert!(!format!("{provider:?}").contains(SECRET));
}

#[tokio::test]
async fn ecr_public_goes_anonymous_without_credentials_or_permission() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", PUBLIC_TARGET))
        .respond_with(aws_error(
            400,
            "AccessDeniedException",
            "not authorized to perform: ecr-public:GetAuthorizationToken",
        ))
        .expect(1)
        .mount(&server)
        .await;
    // No credentials found, no credentials provider at all: no request, anonymous.
    for credentials in [no_credentials(), None] {
        let provider = EcrPublicProvider::new(EcrOptions::new().sdk_config(sdk_config_with(
            &server.uri(),
            EU,
            credentials,
        )));
        assert!(
            provider
                .credential("public.ecr.aws")
                .await
                .unwrap()
                .is_none()
        );
    }
    // Credentials that may not get a token: one request, then anonymous (remembered).
    let denied =
        EcrPublicProvider::new(EcrOptions::new().sdk_config(sdk_config(&server.uri(), EU)));
    assert!(denied.credential("public.ecr.aws").await.unwrap().is_none());
    assert!(denied.credential("public.ecr.aws").await.unwrap().is_none());
}

#[tokio::test]
async fn ecr_public_service_failures_are_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(aws_error(500, "ServerException", "internal failure"))
        .mount(&server)
        .await;
    let provider =
        EcrPublicProvider::new(EcrOptions::new().sdk_config(sdk_config(&server.uri(), EU)));
    let error = provider.credential("public.ecr.aws").await.unwrap_err();
    let (name, registry, source) = provider_error(&error);
    assert_eq!((name, registry), ("ecr-public", "public.ecr.aws"));
    assert!(matches!(source, Error::TokenServer { .. }), "{source:?}");
    assert!(source.to_string().contains("ServerException"), "{source}");
    assert_no_secret(&error);
}
