//! Proves the test harness (`ocync_transport::testing`) against the real `docker-registry`
//! with plain reqwest only, so a transport bug cannot hide a harness bug: every registry
//! configuration stores what is pushed, serves it back, enforces its auth, and reports the
//! requests it received.

use bytes::Bytes;
use ocync_transport::testing::fixture::{Blob, ImageFixture};
use ocync_transport::testing::{RegistryAuth, RequestLine, TestCa, TestRegistry};
use reqwest::header::{CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;

const REPO: &str = "harness/app";

/// Credentials a request carries.
#[derive(Debug, Clone)]
enum Auth {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::Anonymous => request,
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }
}

fn location(registry: &TestRegistry, response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get(LOCATION)
        .expect("upload answers carry a Location")
        .to_str()
        .unwrap()
        .to_owned();
    if location.starts_with('/') {
        format!("{}{location}", registry.url())
    } else {
        location
    }
}

/// Monolithic upload as distribution 2.8 supports it: POST (202 + Location), then PUT with the
/// bytes and `?digest=` (201).
async fn push_blob(registry: &TestRegistry, client: &Client, auth: &Auth, blob: &Blob) {
    let start = auth
        .apply(client.post(format!("{}/v2/{REPO}/blobs/uploads/", registry.url())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        StatusCode::ACCEPTED,
        "{}",
        start.text().await.unwrap()
    );
    let upload = location(registry, &start);
    let done = auth
        .apply(client.put(upload))
        .query(&[("digest", blob.digest().to_string())])
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(blob.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::CREATED,
        "{}",
        done.text().await.unwrap()
    );
    assert_eq!(
        done.headers()["docker-content-digest"].to_str().unwrap(),
        blob.digest().to_string()
    );
}

async fn push_manifest(
    registry: &TestRegistry,
    client: &Client,
    auth: &Auth,
    tag: &str,
    image: &ImageFixture,
) {
    let resp = auth
        .apply(client.put(format!("{}/v2/{REPO}/manifests/{tag}", registry.url())))
        .header(CONTENT_TYPE, image.media_type().as_str())
        .body(image.bytes().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        image.digest().to_string()
    );
}

async fn get(
    registry: &TestRegistry,
    client: &Client,
    auth: &Auth,
    path: &str,
) -> reqwest::Response {
    auth.apply(client.get(format!("{}{path}", registry.url())))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .unwrap()
}

async fn get_bytes(registry: &TestRegistry, client: &Client, auth: &Auth, path: &str) -> Bytes {
    let resp = get(registry, client, auth, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.bytes().await.unwrap()
}

fn count(requests: &[RequestLine], method: &str, path_prefix: &str, status: u16) -> usize {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(path_prefix) && r.status == status)
        .count()
}

/// Push an image (config + one layer by POST+PUT, then the manifest), read everything back,
/// and check that the registry's access log saw exactly those requests.
async fn round_trip(
    registry: &TestRegistry,
    client: &Client,
    auth: &Auth,
    seed: u64,
) -> ImageFixture {
    let image = ImageFixture::image(seed, "linux/amd64", &[1500]);
    let mark = registry.request_mark();

    for blob in &image.blobs {
        push_blob(registry, client, auth, blob).await;
    }
    push_manifest(registry, client, auth, "v1", &image).await;

    let layer = &image.layers()[0];
    let pulled = get_bytes(
        registry,
        client,
        auth,
        &format!("/v2/{REPO}/blobs/{}", layer.digest()),
    )
    .await;
    assert_eq!(pulled, layer.bytes);
    let resp = get(registry, client, auth, &format!("/v2/{REPO}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], image.media_type().as_str());
    assert_eq!(resp.bytes().await.unwrap(), image.bytes());

    let seen = registry.requests_since(mark);
    let uploads = format!("/v2/{REPO}/blobs/uploads/");
    assert_eq!(count(&seen, "POST", &uploads, 202), 2, "{seen:#?}");
    assert_eq!(count(&seen, "PUT", &uploads, 201), 2, "{seen:#?}");
    let digest_puts = seen
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.query
                    .as_deref()
                    .is_some_and(|q| q.contains("digest=sha256"))
        })
        .count();
    assert_eq!(digest_puts, 2, "{seen:#?}");
    assert_eq!(
        count(&seen, "PUT", &format!("/v2/{REPO}/manifests/v1"), 201),
        1
    );
    assert_eq!(
        count(&seen, "GET", &format!("/v2/{REPO}/blobs/sha256:"), 200),
        1
    );
    assert_eq!(
        count(&seen, "GET", &format!("/v2/{REPO}/manifests/v1"), 200),
        1
    );
    assert_eq!(
        seen.len(),
        7,
        "no other request reached the registry: {seen:#?}"
    );

    let stored = std::fs::read(registry.blob_data_path(layer.digest())).unwrap();
    assert_eq!(
        stored, layer.bytes,
        "blob_data_path points at the stored layer"
    );
    image
}

#[tokio::test]
async fn plain_registry_round_trip_request_log_storage_and_shutdown() {
    let registry = TestRegistry::plain().await;
    assert_eq!(registry.options().auth, RegistryAuth::None);
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert!(registry.ca_pem().is_none() && registry.username().is_none());
    let client = registry.client();

    let image = round_trip(&registry, &client, &Auth::Anonymous, 1).await;

    // Phases: after clear_requests only the new requests count.
    registry.clear_requests();
    assert!(registry.requests().is_empty());
    let resp = get(
        &registry,
        &client,
        &Auth::Anonymous,
        "/v2/harness/missing/manifests/v1",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let after = registry.requests();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(
        after[0].to_string(),
        "GET /v2/harness/missing/manifests/v1 404"
    );
    assert_eq!(registry.count_requests("GET", "/v2/harness/missing/"), 1);
    assert!(
        registry.log().contains("response completed"),
        "application log is captured too"
    );

    // Corrupting the stored blob through blob_data_path changes what the registry serves.
    let layer = &image.layers()[0];
    let path = registry.blob_data_path(layer.digest().to_string());
    std::fs::write(&path, &layer.bytes[..100]).unwrap();
    let resp = get(
        &registry,
        &client,
        &Auth::Anonymous,
        &format!("/v2/{REPO}/blobs/{}", layer.digest()),
    )
    .await;
    let served = resp.bytes().await.unwrap_or_default();
    assert_ne!(
        served, layer.bytes,
        "the registry serves the truncated file"
    );

    // Dropping the registry kills it and removes its directory.
    let (url, dir) = (registry.url(), registry.dir().to_owned());
    drop(registry);
    assert!(
        client.get(format!("{url}/v2/")).send().await.is_err(),
        "registry still answering"
    );
    assert!(!dir.exists(), "temporary directory left behind");
}

#[tokio::test]
async fn tls_registry_is_reachable_only_through_its_ca() {
    let registry = TestRegistry::tls().await;
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let ca_pem = registry.ca_pem().expect("tls registries have a ca");
    let ca_file = registry.ca_file().expect("and a ca file");
    assert_eq!(std::fs::read_to_string(ca_file).unwrap(), ca_pem);

    // A client built from the PEM alone, as a user of the harness would.
    let client = Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    round_trip(&registry, &client, &Auth::Anonymous, 2).await;

    let stranger = TestCa::new().client();
    let err = stranger
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.is_connect(),
        "an untrusted ca must fail the handshake: {err:?}"
    );
    let plain = registry.url().replace("https://", "http://");
    let resp = registry
        .client()
        .get(format!("{plain}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "plain http to a tls port"
    );
}

#[tokio::test]
async fn htpasswd_registry_requires_the_password() {
    let registry = TestRegistry::htpasswd().await;
    let client = registry.client();
    let user = registry.username().unwrap().to_owned();
    let password = registry.password().unwrap().to_owned();
    assert_eq!(user, "alice");
    assert!(registry.token_server().is_none());

    let resp = get(&registry, &client, &Auth::Anonymous, "/v2/").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()[WWW_AUTHENTICATE],
        "Basic realm=\"basic-realm\""
    );
    let wrong = Auth::Basic(user.clone(), format!("{password}x"));
    assert_eq!(
        get(&registry, &client, &wrong, "/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let resp = wrong
        .apply(client.post(format!("{}/v2/{REPO}/blobs/uploads/", registry.url())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "no upload with a wrong password"
    );
    assert_eq!(registry.count_requests("GET", "/v2/"), 2);
    assert!(registry.requests().iter().all(|r| r.status == 401));

    round_trip(&registry, &client, &Auth::Basic(user, password), 3).await;
}

async fn fetch_token(registry: &TestRegistry, auth: &Auth, scope: &str) -> String {
    let server = registry.token_server().unwrap();
    let resp = auth
        .apply(registry.client().get(server.realm()))
        .query(&[("service", server.service()), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn token_registry_accepts_only_tokens_with_the_right_scope() {
    let registry = TestRegistry::token().await;
    let client = registry.client();
    let server = registry
        .token_server()
        .expect("token mode has a token server");
    let user = registry.username().unwrap().to_owned();
    let password = registry.password().unwrap().to_owned();
    assert_eq!(
        (server.username(), server.password()),
        (user.as_str(), password.as_str())
    );

    // Anonymous: a Bearer challenge pointing at our token server.
    let resp = get(&registry, &client, &Auth::Anonymous, "/v2/").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}\",service=\"test-registry\"",
            server.realm()
        )
    );

    // A token for /v2/ (no scope needed) turns the 401 into a 200.
    let token = fetch_token(&registry, &Auth::Anonymous, "registry:catalog:*").await;
    let resp = get(&registry, &client, &Auth::Bearer(token), "/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);

    // alice's token has pull and push: the full round trip works.
    let basic = Auth::Basic(user.clone(), password.clone());
    let scope = format!("repository:{REPO}:pull,push");
    let token = fetch_token(&registry, &basic, &scope).await;
    let image = round_trip(&registry, &client, &Auth::Bearer(token), 4).await;

    // An anonymous token only carries pull: reading works, pushing is insufficient_scope.
    let anonymous = Auth::Bearer(fetch_token(&registry, &Auth::Anonymous, &scope).await);
    let manifest = get_bytes(
        &registry,
        &client,
        &anonymous,
        &format!("/v2/{REPO}/manifests/v1"),
    )
    .await;
    assert_eq!(manifest, image.bytes());
    let resp = anonymous
        .apply(client.post(format!("{}/v2/{REPO}/blobs/uploads/", registry.url())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // distribution names the actions in either order (protocol-facts 1.3).
    assert!(
        [
            format!("scope=\"repository:{REPO}:pull,push\""),
            format!("scope=\"repository:{REPO}:push,pull\""),
        ]
        .iter()
        .any(|s| challenge.contains(s)),
        "{challenge}"
    );

    // A token for another repository does not open this one.
    let other = fetch_token(&registry, &basic, "repository:other/app:pull,push").await;
    let resp = get(
        &registry,
        &client,
        &Auth::Bearer(other),
        &format!("/v2/{REPO}/manifests/v1"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A wrong password gets no token at all.
    let resp = client
        .get(server.realm())
        .query(&[("service", server.service()), ("scope", scope.as_str())])
        .basic_auth(&user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // OAuth2 POST: password grant with a refresh token, then a refresh grant that reads tags.
    let body: Value = client
        .post(server.realm())
        .form(&[
            ("grant_type", "password"),
            ("username", user.as_str()),
            ("password", password.as_str()),
            ("service", server.service()),
            ("client_id", "harness"),
            ("access_type", "offline"),
            ("scope", &format!("repository:{REPO}:pull")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let body: Value = client
        .post(server.realm())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", server.service()),
            ("client_id", "harness"),
            ("scope", &format!("repository:{REPO}:pull")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refreshed = Auth::Bearer(body["access_token"].as_str().unwrap().to_owned());
    let tags: Value = serde_json::from_slice(
        &get_bytes(
            &registry,
            &client,
            &refreshed,
            &format!("/v2/{REPO}/tags/list"),
        )
        .await,
    )
    .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // The token server saw every fetch, with who asked for what.
    assert_eq!(server.requests(), 7);
    assert_eq!(server.requests_with_scope(&scope), 3);
    let log = server.log();
    assert_eq!(log[0].user, None);
    assert_eq!(log[1].user.as_deref(), Some("alice"));
    assert_eq!(
        (log[4].user.as_deref(), log[4].status),
        (Some("alice"), 401)
    );
    assert_eq!(log[6].grant_type.as_deref(), Some("refresh_token"));
    let denied = registry
        .requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(
        denied, 3,
        "the anonymous /v2/, the insufficient push and the wrong repo"
    );
}
