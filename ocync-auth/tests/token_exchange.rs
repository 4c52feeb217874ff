//! Token exchange against a wiremock token server on loopback.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ocync_auth::{
    BearerChallenge, Credential, Error, Scopes, Secret, Token, TokenRequest, fetch_token,
};
use reqwest::StatusCode;
use tokio::time::Instant;
use wiremock::matchers::{any, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use common::{SECRET, client};

const REGISTRY: &str = "registry.test:5000";
const SERVICE: &str = "registry.test";

fn challenge(realm: String) -> BearerChallenge {
    BearerChallenge {
        realm,
        service: Some(SERVICE.to_owned()),
        scope: None,
        error: None,
    }
}

async fn fetch(
    realm: String,
    credential: Option<&Credential>,
    scopes: &str,
    registry_is_https: bool,
) -> Result<Token, Error> {
    let challenge = challenge(realm);
    let scopes: Scopes = scopes.parse().unwrap();
    let request = TokenRequest {
        registry: REGISTRY,
        challenge: &challenge,
        scopes: &scopes,
        credential,
        registry_is_https,
    };
    fetch_token(&client(), &request).await
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.remove(0)
}

fn query_values(request: &Request, key: &str) -> Vec<String> {
    request
        .url
        .query_pairs()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn jwt_expiring_in(seconds: u64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"sub":"x"}}"#))
    )
}

#[tokio::test]
async fn basic_get_sends_one_scope_parameter_per_scope_and_the_account() {
    let server = MockServer::start().await;
    let basic = format!("Basic {}", STANDARD.encode("alice:pw-1"));
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(header("authorization", basic.as_str()))
        .and(query_param("service", SERVICE))
        .and(query_param("account", "alice"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"token":"t1","expires_in":300}"#),
        )
        .expect(1)
        .mount(&server)
        .await;

    let credential = Credential::basic("alice", "pw-1");
    let token = fetch(
        format!("{}/token", server.uri()),
        Some(&credential),
        "repository:src/app:pull repository:dst/app:push,pull",
        false,
    )
    .await
    .unwrap();
    assert_eq!(token.value().expose(), "t1");
    assert_eq!(token.lifetime(), Duration::from_secs(300));
    assert!(token.refresh_token().is_none());

    let request = only_request(&server).await;
    assert_eq!(
        query_values(&request, "scope"),
        ["repository:dst/app:pull,push", "repository:src/app:pull"],
        "one normalised scope parameter per resource"
    );
    assert_eq!(query_values(&request, "service"), [SERVICE]);
    assert_eq!(query_values(&request, "account"), ["alice"]);
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn anonymous_get_sends_no_authorization_and_no_account() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"anon"}"#))
        .expect(1)
        .mount(&server)
        .await;

    let token = fetch(
        format!("{}/token", server.uri()),
        None,
        "repository:library/nginx:pull",
        true,
    )
    .await
    .unwrap();
    assert_eq!(token.value().expose(), "anon");
    assert_eq!(
        token.lifetime(),
        Duration::from_secs(60),
        "default lifetime"
    );

    let request = only_request(&server).await;
    assert!(
        !request.headers.contains_key("authorization"),
        "{:?}",
        request.headers
    );
    assert!(query_values(&request, "account").is_empty());
    assert_eq!(
        query_values(&request, "scope"),
        ["repository:library/nginx:pull"]
    );
}

#[tokio::test]
async fn identity_token_is_exchanged_with_a_refresh_grant_post() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"access_token":"a1","refresh_token":"refresh-2","expires_in":600,"scope":"x"}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;

    let credential = Credential::IdentityToken {
        token: Secret::new("refresh-1"),
    };
    let token = fetch(
        format!("{}/oauth2/token", server.uri()),
        Some(&credential),
        "repository:b:pull repository:a:push,pull",
        false,
    )
    .await
    .unwrap();
    assert_eq!(token.value().expose(), "a1");
    assert_eq!(token.lifetime(), Duration::from_secs(600));
    assert_eq!(token.refresh_token().map(Secret::expose), Some("refresh-2"));

    let request = only_request(&server).await;
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    form.sort();
    let expected = [
        ("client_id", "ocync"),
        ("grant_type", "refresh_token"),
        ("refresh_token", "refresh-1"),
        ("scope", "repository:a:pull,push repository:b:pull"),
        ("service", SERVICE),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(form, expected, "one space-joined scope parameter");
    assert!(!request.headers.contains_key("authorization"));
    assert_eq!(request.url.query(), None);
}

#[tokio::test]
async fn expiry_table() {
    let jwt = jwt_expiring_in(3600);
    // (body, expected lifetime in seconds, with some slack for the JWT clock)
    let cases = [
        (r#"{"token":"t","expires_in":5}"#.to_owned(), 60..=60),
        (r#"{"token":"t","expires_in":59}"#.to_owned(), 60..=60),
        (r#"{"token":"t","expires_in":61}"#.to_owned(), 61..=61),
        (
            r#"{"token":"t","expires_in":900,"issued_at":"1999-01-01T00:00:00Z"}"#.to_owned(),
            900..=900,
        ),
        (format!(r#"{{"access_token":"{jwt}"}}"#), 3590..=3600),
        (
            format!(r#"{{"access_token":"{jwt}","expires_in":120}}"#),
            120..=120,
        ),
        (r#"{"token":"opaque"}"#.to_owned(), 60..=60),
    ];
    for (body, lifetime) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body.clone()))
            .expect(1)
            .mount(&server)
            .await;
        let before = Instant::now();
        let token = fetch(
            format!("{}/token", server.uri()),
            None,
            "repository:a:pull",
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("{body}: {e}"));
        assert!(
            lifetime.contains(&token.lifetime().as_secs()),
            "{body}: {:?}",
            token.lifetime()
        );
        assert!(
            token.expires_at() >= before + token.lifetime(),
            "{body}: expiry counts from receipt"
        );
        assert!(
            token.expires_at() <= Instant::now() + token.lifetime(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn denied_names_registry_and_realm_but_not_the_password() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!(
            r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"bad password '{SECRET}' for alice"}}]}}"#
        )))
        .expect(1)
        .mount(&server)
        .await;

    let credential = Credential::basic("alice", SECRET);
    let realm = format!("{}/token?tenant=t1", server.uri());
    let error = fetch(realm, Some(&credential), "repository:a:pull", false)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "token server '{}/token' denied access to registry '{REGISTRY}' (401 Unauthorized): bad password '[REDACTED]' for alice",
            server.uri()
        )
    );
    assert!(
        matches!(&error, Error::TokenDenied { status, .. } if *status == StatusCode::UNAUTHORIZED)
    );
    assert!(error.is_auth_failure());
    assert!(!format!("{error:?}").contains(SECRET));
}

#[tokio::test]
async fn status_table() {
    // (status, body, auth failure, message)
    let cases = [
        (
            403,
            r#"{"details":"access to the requested resource is not authorized"}"#,
            true,
            "access to the requested resource is not authorized",
        ),
        (401, "", true, "(empty response body)"),
        (500, "upstream\nfailure", false, "upstream failure"),
        (404, r#"{"error":"not_found"}"#, false, "not_found"),
    ];
    for (status, body, auth_failure, message) in cases {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .expect(1)
            .mount(&server)
            .await;
        let error = fetch(
            format!("{}/token", server.uri()),
            None,
            "repository:a:pull",
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(error.is_auth_failure(), auth_failure, "{status}: {error}");
        let (Error::TokenDenied {
            status: got,
            message: said,
            ..
        }
        | Error::TokenServer {
            status: got,
            message: said,
            ..
        }) = &error
        else {
            panic!("{status}: expected TokenDenied or TokenServer, got {error:?}");
        };
        assert_eq!(got.as_u16(), status);
        assert_eq!(said, message, "{status}");
        assert!(error.to_string().contains(REGISTRY), "{error}");
    }
}

#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"t"}"#))
        .expect(0)
        .mount(&server)
        .await;
    let realm = format!("{}/token?x=1", server.uri());
    for credential in [
        Credential::basic("alice", SECRET),
        Credential::IdentityToken {
            token: Secret::new(SECRET),
        },
    ] {
        let error = fetch(realm.clone(), Some(&credential), "repository:a:pull", true)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InsecureRealm { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "refusing to send credentials for https registry '{REGISTRY}' to plain-http token realm '{}/token'",
                server.uri()
            )
        );
    }
}

#[tokio::test]
async fn plain_http_realm_is_fine_for_plain_http_registries_and_anonymous_tokens() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"t"}"#))
        .expect(2)
        .mount(&server)
        .await;
    let realm = format!("{}/token", server.uri());
    let credential = Credential::basic("alice", "pw");
    fetch(realm.clone(), Some(&credential), "repository:a:pull", false)
        .await
        .unwrap();
    fetch(realm, None, "repository:a:pull", true).await.unwrap();
}

#[tokio::test]
async fn a_response_without_a_token_is_an_error() {
    let cases = [
        (
            r#"{"expires_in":300}"#,
            "the response has neither 'token' nor 'access_token'",
        ),
        (
            r#"{"token":""}"#,
            "the response has neither 'token' nor 'access_token'",
        ),
        ("<html>token</html>", "the response is not JSON"),
    ];
    for (body, reason) in cases {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .expect(1)
            .mount(&server)
            .await;
        let error = fetch(
            format!("{}/token", server.uri()),
            None,
            "repository:a:pull",
            false,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&error, Error::TokenResponse { reason: r, .. } if r == reason),
            "{body}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "invalid token response from '{}/token' for registry '{REGISTRY}': {reason}",
                server.uri()
            )
        );
        assert!(!error.is_auth_failure());
    }
}

#[tokio::test]
async fn a_registry_token_needs_no_request() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"other"}"#))
        .expect(0)
        .mount(&server)
        .await;
    let jwt = jwt_expiring_in(1800);
    for (value, lifetime) in [
        (jwt.as_str(), 1790..=1800),
        ("opaque", 365 * 86400..=365 * 86400),
    ] {
        let credential = Credential::Bearer {
            token: Secret::new(value),
        };
        let token = fetch(
            format!("{}/token", server.uri()),
            Some(&credential),
            "repository:a:pull",
            true,
        )
        .await
        .unwrap();
        assert_eq!(token.value().expose(), value);
        assert!(
            lifetime.contains(&token.lifetime().as_secs()),
            "{value}: {:?}",
            token.lifetime()
        );
    }
}

#[tokio::test]
async fn an_unreachable_realm_is_a_request_error_without_the_query() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let credential = Credential::basic("alice", SECRET);
    let error = fetch(
        format!("http://{address}/token?tenant=t1"),
        Some(&credential),
        "repository:a:pull",
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::TokenRequest { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("token request to 'http://{address}/token' for registry '{REGISTRY}' failed")
    );
    let debug = format!("{error:?}");
    for hidden in ["tenant", "account=", "scope="] {
        assert!(!debug.contains(hidden), "{hidden} in {debug}");
    }
    common::assert_no_secret(&error);
}

#[tokio::test]
async fn invalid_realms_are_refused_before_any_request() {
    let cases = [
        ("/token", "not an absolute URL"),
        ("token.example.com/token", "not an absolute URL"),
        (
            "ftp://auth.example.com/token",
            "the scheme is not http or https",
        ),
    ];
    for (realm, reason) in cases {
        let error = fetch(realm.to_owned(), None, "repository:a:pull", true)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("invalid token realm '{realm}' for registry '{REGISTRY}': {reason}")
        );
    }
}

/// A token server that only speaks OAuth2 answers the docker `GET` with 405: the Basic
/// credentials go in a `POST` with `grant_type=password` instead, once.
#[tokio::test]
async fn oauth2_only_server_gets_a_password_grant() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(405))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "from-password-grant", "expires_in": 300}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let credential = Credential::basic("alice", SECRET);
    let token = fetch(
        format!("{}/token", server.uri()),
        Some(&credential),
        "repository:app:pull,push",
        false,
    )
    .await
    .unwrap();
    assert_eq!(token.value().expose(), "from-password-grant");
    let requests = server.received_requests().await.unwrap();
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&post.body)
        .into_owned()
        .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("grant_type"), Some("password"));
    assert_eq!(get("username"), Some("alice"));
    assert_eq!(get("password"), Some(SECRET));
    assert_eq!(get("service"), Some(SERVICE));
    assert_eq!(get("scope"), Some("repository:app:pull,push"));
}
