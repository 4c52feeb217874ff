//! No error ever shows a secret: each variant is produced through the code path that creates
//! it, from inputs that carry [`common::SECRET`] (passwords, tokens, URLs, server and helper
//! output), and its `Display`, `Debug` and sources are checked.
//!
//! `DockerConfigRead` carries only a path and an I/O error, and `InvalidScope` quotes scope
//! strings, which are not secret; both are still produced here so a future field that could
//! hold a secret gets noticed.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ocync_auth::{
    BearerChallenge, Credential, CredentialProvider, DockerConfigProvider, Error, ProviderChain,
    Scope, Scopes, Secret, TokenRequest, fetch_token,
};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{SECRET, assert_no_secret, client};

fn variant(error: &Error) -> &'static str {
    match error {
        Error::DockerConfigRead { .. } => "DockerConfigRead",
        Error::DockerConfig { .. } => "DockerConfig",
        Error::CredentialHelper { .. } => "CredentialHelper",
        Error::Provider { .. } => "Provider",
        Error::TokenRequest { .. } => "TokenRequest",
        Error::TokenDenied { .. } => "TokenDenied",
        Error::TokenServer { .. } => "TokenServer",
        Error::TokenResponse { .. } => "TokenResponse",
        Error::InsecureRealm { .. } => "InsecureRealm",
        Error::InvalidRealm { .. } => "InvalidRealm",
        Error::InvalidScope { .. } => "InvalidScope",
        _ => "unknown",
    }
}

fn credentials() -> [Credential; 2] {
    [
        Credential::basic("alice", SECRET),
        Credential::IdentityToken {
            token: Secret::new(SECRET),
        },
    ]
}

async fn exchange(realm: String, credential: &Credential, registry_is_https: bool) -> Error {
    let challenge = BearerChallenge {
        realm,
        service: Some("registry.test".to_owned()),
        scope: None,
        error: None,
    };
    let scopes = Scopes::from(Scope::repository("app", &["pull"]));
    let request = TokenRequest {
        registry: "registry.test",
        challenge: &challenge,
        scopes: &scopes,
        credential: Some(credential),
        registry_is_https,
    };
    fetch_token(&client(), &request)
        .await
        .expect_err("the exchange must fail")
}

async fn server_answering(status: u16, body: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn no_error_variant_shows_a_secret() {
    let mut errors: Vec<Error> = Vec::new();

    // Docker config: broken entries around secret values.
    let dir = tempfile::tempdir().unwrap();
    errors.push(DockerConfigProvider::from_path(dir.path().join("config.json")).unwrap_err());
    for json in [
        format!(r#"{{"auths":{{"r.io":{{"auth":"{SECRET}!"}}}}}}"#),
        format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            STANDARD.encode(SECRET)
        ),
        format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            STANDARD.encode(format!(":{SECRET}"))
        ),
        format!(r#"{{"auths":{{"r.io":"{SECRET}"}}}}"#),
        format!(r#"{{"auths":{{"r.io":{{"password":["{SECRET}"]}}}}}}"#),
        format!(r#"{{"auths":{{"r.io":{{"password":"{SECRET}","identitytoken":7}}}}}}"#),
        format!(r#"{{"auths":{{"r.io":{{"identitytoken":"{SECRET}"}}}},"credsStore":5}}"#),
        format!(r#"{{"auths":{{"r.io":{{"password":"{SECRET}"}}"#),
        format!("{{\"auths\":{{\"r.io\":{{\"password\":\"{SECRET}\u{1}\"}}}}}}"),
    ] {
        errors.push(DockerConfigProvider::from_json(&json, "/c.json").unwrap_err());
    }

    // Credential helpers that print secrets in unusable answers.
    #[cfg(unix)]
    {
        let helpers = [
            (
                "garbled",
                format!(r#"printf '{{"Username":"u","Secret":"{SECRET}"'"#),
            ),
            (
                "typed",
                format!(r#"echo '{{"Username":"u","Secret":["{SECRET}"]}}'"#),
            ),
            (
                "slow",
                format!(r#"echo '{{"Username":"u","Secret":"{SECRET}"}}'; exec sleep 30"#),
            ),
        ];
        for (name, body) in helpers {
            common::write_helper(dir.path(), name, &body);
            let provider = DockerConfigProvider::from_json(
                &format!(r#"{{"credsStore":"{name}"}}"#),
                "/c.json",
            )
            .unwrap()
            .helper_dirs([dir.path()])
            .helper_timeout(std::time::Duration::from_secs(if name == "slow" {
                1
            } else {
                20
            }));
            errors.push(provider.credential("r.io").await.unwrap_err());
            if name == "garbled" {
                errors.push(
                    ProviderChain::first(provider)
                        .resolve("r.io")
                        .await
                        .unwrap_err(),
                );
            }
        }
    }

    // Token exchange: every way it fails, with secrets in credentials, realm and response.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let echo = format!(
        "password {SECRET}, header Basic {}",
        STANDARD.encode(format!("alice:{SECRET}"))
    );
    let denied = server_answering(401, format!(r#"{{"errors":[{{"message":"{echo}"}}]}}"#)).await;
    let failing = server_answering(500, echo.clone()).await;
    let no_token = server_answering(200, format!(r#"{{"note":"{SECRET}"}}"#)).await;
    let not_json = server_answering(200, format!("token={SECRET}")).await;
    let bad_expiry = server_answering(
        200,
        format!(r#"{{"token":"{SECRET}","expires_in":"{SECRET}"}}"#),
    )
    .await;
    for credential in credentials() {
        errors.push(
            exchange(
                format!("http://{closed}/token?k={SECRET}"),
                &credential,
                false,
            )
            .await,
        );
        errors.push(exchange(format!("{}/token", denied.uri()), &credential, false).await);
        errors.push(exchange(format!("{}/token", failing.uri()), &credential, false).await);
        errors.push(exchange(format!("{}/token", no_token.uri()), &credential, false).await);
        errors.push(exchange(format!("{}/token", not_json.uri()), &credential, false).await);
        errors.push(exchange(format!("{}/token", bad_expiry.uri()), &credential, false).await);
        errors.push(
            exchange(
                format!("http://alice:{SECRET}@127.0.0.1:1/token?k={SECRET}#{SECRET}"),
                &credential,
                true,
            )
            .await,
        );
        for realm in [
            format!("ftp://alice:{SECRET}@auth.example.com/token?k={SECRET}"),
            format!("mailto:{SECRET}@example.com"),
            format!("alice:{SECRET}@auth/token"),
            format!("/token?k={SECRET}"),
        ] {
            errors.push(exchange(realm, &credential, true).await);
        }
    }
    errors.push("repository app pull".parse::<Scopes>().unwrap_err());

    let mut seen: Vec<&str> = errors.iter().map(variant).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "CredentialHelper",
            "DockerConfig",
            "DockerConfigRead",
            "InsecureRealm",
            "InvalidRealm",
            "InvalidScope",
            "Provider",
            "TokenDenied",
            "TokenRequest",
            "TokenResponse",
            "TokenServer",
        ]
        .into_iter()
        .filter(|v| cfg!(unix) || !matches!(*v, "CredentialHelper" | "Provider"))
        .collect::<Vec<_>>(),
        "every variant is covered"
    );
    for error in &errors {
        assert_no_secret(error);
    }
}
