//! Proves the cloud fakes of the test harness (`ConnectProxy`, `FakeAcr`, `FakeAad`, registries
//! with real cloud host names and users) with plain reqwest only: hosts named like ECR and ACR
//! registries are reached through the `CONNECT` proxy with nothing but the test CA trusted, the
//! whole ACR token dance works against a real `docker-registry`, and nothing unknown is
//! tunnelled.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ocync_transport::testing::acr::{
    ACR_SCOPE, JWT_BEARER_ASSERTION_TYPE, NULL_GUID_USER, REFRESH_TOKEN_LIFETIME,
};
use ocync_transport::testing::fixture::{Blob, ImageFixture};
use ocync_transport::testing::{
    ConnectProxy, FakeAad, FakeAcr, RegistryAuth, RegistryOptions, TestCa, TestRegistry,
};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Client, Proxy, StatusCode};
use serde_json::Value;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const LOGIN_SERVER: &str = "myreg.azurecr.io";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const CLIENT_SECRET: &str = "client-secret-value";
const ENTRA_TOKEN: &str = "entra.access.token";
const REPO: &str = "app";
const SCOPE: &str = "repository:app:pull,push";

/// A client that goes through `proxy` for HTTPS and trusts `ca` only.
fn proxied_client(proxy: &ConnectProxy, ca: &TestCa) -> Client {
    Client::builder()
        .proxy(Proxy::https(proxy.url()).unwrap())
        .tls_certs_only([ca.reqwest_certificate()])
        .build()
        .unwrap()
}

/// The claims of a JWT.
fn claims(jwt: &str) -> Value {
    let segment = jwt.split('.').nth(1).expect("a jwt has three segments");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn ecr_host_name_reaches_a_tls_htpasswd_registry_through_the_proxy() {
    let password = "ecr-authorization-token";
    let registry = TestRegistry::start(
        RegistryOptions::new()
            .with_tls_names([ECR_HOST])
            .with_auth(RegistryAuth::Htpasswd)
            .with_basic_user("AWS", password),
    )
    .await;
    assert_eq!(registry.username(), Some("AWS"));
    assert_eq!(registry.password(), Some(password));
    let ca = registry.ca().unwrap();
    assert!(ca.names().iter().any(|n| n == ECR_HOST), "{:?}", ca.names());
    let proxy = ConnectProxy::start(vec![(format!("{ECR_HOST}:443"), registry.addr())]).await;
    let client = proxied_client(&proxy, ca);
    let base = format!("https://{ECR_HOST}");

    let anonymous = client.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, WWW_AUTHENTICATE).starts_with("Basic "));

    let wrong = client
        .get(format!("{base}/v2/"))
        .basic_auth("AWS", Some("stale-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let ok = client
        .get(format!("{base}/v2/"))
        .basic_auth("AWS", Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    // The registry builds upload URLs from the Host it was asked for: the ECR name.
    let start = client
        .post(format!("{base}/v2/{REPO}/blobs/uploads/"))
        .basic_auth("AWS", Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = header(&start, LOCATION);
    assert!(
        location.starts_with(&format!("{base}/v2/{REPO}/blobs/uploads/")),
        "{location}"
    );

    // Every request went through the proxy (one tunnel per connection; at least one) to the
    // registry, which logged exactly them.
    let connects = proxy.connects();
    assert!(!connects.is_empty());
    assert!(connects.iter().all(|c| c == &format!("{ECR_HOST}:443")));
    assert_eq!(proxy.tunnelled(), connects);
    let statuses: Vec<u16> = registry.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200, 202]);
    // A client that does not trust the test CA is refused in the handshake, not by the proxy.
    let stranger = proxied_client(&proxy, &TestCa::new());
    let err = stranger
        .get(format!("{base}/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(registry.requests().len(), 4);
}

/// Push `blob` through the front: POST for a session, then one PATCH with the bytes, then
/// the closing PUT with `?digest=`, following the rewritten `Location`s.
async fn push_blob_chunked(client: &Client, token: &str, blob: &Blob) {
    let start = client
        .post(format!("https://{LOGIN_SERVER}/v2/{REPO}/blobs/uploads/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = header(&start, LOCATION);
    assert!(
        location.starts_with(&format!("https://{LOGIN_SERVER}/v2/{REPO}/blobs/uploads/")),
        "{location}"
    );
    let patch = client
        .patch(&location)
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_RANGE, format!("0-{}", blob.size() - 1))
        .header(CONTENT_LENGTH, blob.size())
        .body(blob.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&patch, "range"), format!("0-{}", blob.size() - 1));
    let location = header(&patch, LOCATION);
    assert!(location.starts_with(&format!("https://{LOGIN_SERVER}/")));
    let done = client
        .put(&location)
        .bearer_auth(token)
        .query(&[("digest", blob.digest().to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(
        header(&done, "docker-content-digest"),
        blob.digest().to_string()
    );
}

/// Push `blob` through the front monolithically: POST, then PUT with the bytes streamed.
async fn push_blob_streamed(client: &Client, token: &str, blob: &Blob) {
    let start = client
        .post(format!("https://{LOGIN_SERVER}/v2/{REPO}/blobs/uploads/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = blob
        .bytes
        .chunks(256 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let done = client
        .put(header(&start, LOCATION))
        .bearer_auth(token)
        .query(&[("digest", blob.digest().to_string())])
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(
        header(&done, "docker-content-digest"),
        blob.digest().to_string()
    );
}

#[tokio::test]
async fn acr_dance_from_entra_to_push_and_pull_through_the_login_server() {
    let acr = FakeAcr::start(LOGIN_SERVER, TENANT, ENTRA_TOKEN).await;
    let aad = FakeAad::start(TENANT, CLIENT_ID, CLIENT_SECRET, ENTRA_TOKEN).await;
    let proxy = ConnectProxy::start(vec![acr.route()]).await;
    let client = proxied_client(&proxy, acr.ca());
    let plain = ocync_transport::testing::plain_client();
    let front = acr.url();
    assert_eq!(front, format!("https://{LOGIN_SERVER}"));

    // The registry challenges for the login server's token endpoint and service.
    let challenge = client.get(format!("{front}/v2/")).send().await.unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.version(),
        reqwest::Version::HTTP_2,
        "alpn picks h2"
    );
    assert_eq!(
        header(&challenge, WWW_AUTHENTICATE),
        format!(r#"Bearer realm="https://{LOGIN_SERVER}/oauth2/token",service="{LOGIN_SERVER}""#)
    );

    // 1. Entra: client secret, then a federated assertion.
    let entra: Value = plain
        .post(aad.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", ACR_SCOPE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entra["token_type"], "Bearer");
    assert_eq!(entra["expires_in"], 3599);
    assert_eq!(entra["ext_expires_in"], 3599);
    assert_eq!(entra["access_token"], ENTRA_TOKEN);
    let federated = plain
        .post(aad.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion", CLIENT_SECRET),
            ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
            ("scope", ACR_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(federated.status(), StatusCode::OK);

    // 2. Exchange for an ACR refresh token.
    let exchanged = client
        .post(format!("{front}/oauth2/exchange"))
        .form(&[
            ("grant_type", "access_token"),
            ("service", LOGIN_SERVER),
            ("tenant", TENANT),
            ("access_token", ENTRA_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), StatusCode::OK);
    let refresh_token = exchanged.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh_claims = claims(&refresh_token);
    assert_eq!(refresh_claims["aud"], LOGIN_SERVER);
    let exp = refresh_claims["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + REFRESH_TOKEN_LIFETIME) < 60, "{exp}");

    // 3. An access token for the repository, with no expires_in: the JWT says when.
    let answer: Value = client
        .post(format!("{front}/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", LOGIN_SERVER),
            ("scope", SCOPE),
            ("refresh_token", refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
    let token = answer["access_token"].as_str().unwrap().to_owned();
    let access = claims(&token);
    assert_eq!(access["aud"], LOGIN_SERVER);
    assert!(access["exp"].as_u64().unwrap() > now());
    assert_eq!(access["access"][0]["name"], REPO);
    assert_eq!(
        access["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );

    // 4. Push an image through the front: the config in a PATCH, a 3 MiB layer (over axum's
    // 2 MiB default body limit) streamed in a PUT, then the manifest.
    let image = ImageFixture::image(7, "linux/amd64", &[3 * 1024 * 1024]);
    push_blob_chunked(&client, &token, &image.blobs[0]).await;
    push_blob_streamed(&client, &token, &image.blobs[1]).await;
    let put = client
        .put(format!("{front}/v2/{REPO}/manifests/v1"))
        .bearer_auth(&token)
        .header(CONTENT_TYPE, image.media_type().as_str())
        .body(image.bytes().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(
        header(&put, "docker-content-digest"),
        image.digest().to_string()
    );
    assert!(header(&put, LOCATION).starts_with(&format!("{front}/v2/{REPO}/manifests/")));

    // Read it all back.
    let manifest = client
        .get(format!("{front}/v2/{REPO}/manifests/v1"))
        .bearer_auth(&token)
        .header("accept", image.media_type().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(
        header(&manifest, "docker-content-digest"),
        image.digest().to_string()
    );
    assert_eq!(&manifest.bytes().await.unwrap(), image.bytes());
    for blob in &image.blobs {
        let url = format!("{front}/v2/{REPO}/blobs/{}", blob.digest());
        let head = client.head(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, CONTENT_LENGTH), blob.size().to_string());
        let got = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.bytes().await.unwrap(), blob.bytes);
        assert!(acr.registry().blob_data_path(blob.digest()).is_file());
    }

    // Without a token the data plane refuses.
    let anonymous = client
        .get(format!("{front}/v2/{REPO}/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, WWW_AUTHENTICATE).contains(r#"scope="repository:app:pull""#));

    // Docker-style Basic on GET /oauth2/token: the admin user, and the null-GUID user with the
    // refresh token.
    for (user, password) in [
        (acr.admin_username(), acr.admin_password()),
        (NULL_GUID_USER.to_owned(), refresh_token.clone()),
    ] {
        let answer = client
            .get(format!("{front}/oauth2/token"))
            .query(&[("service", LOGIN_SERVER), ("scope", "repository:app:pull")])
            .basic_auth(&user, Some(&password))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{user}");
        let pull_token = answer.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let pulled = client
            .get(format!("{front}/v2/{REPO}/manifests/v1"))
            .bearer_auth(&pull_token)
            .header("accept", image.media_type().as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK, "{user}");
    }
    assert_eq!(acr.admin_username(), "myreg");

    // The counters and logs saw exactly that.
    assert_eq!(aad.requests(), 2);
    assert_eq!(aad.log()[1].field("client_assertion"), Some(CLIENT_SECRET));
    assert_eq!(acr.exchanges(), 1);
    let exchange = &acr.log()[0];
    assert_eq!(exchange.field("tenant"), Some(TENANT));
    assert_eq!(exchange.field("access_token"), Some(ENTRA_TOKEN));
    assert_eq!(acr.token_requests(), 3);
    assert_eq!(acr.token_requests_with_scope(SCOPE), 1);
    assert_eq!(acr.token_requests_with_scope("repository:app:pull"), 2);
    assert_eq!(acr.refresh_tokens(), [refresh_token]);
    let registry = acr.registry();
    assert_eq!(
        registry.count_requests("PATCH", "/v2/app/blobs/uploads/"),
        1
    );
    assert_eq!(registry.count_requests("PUT", "/v2/app/blobs/uploads/"), 2);
    assert_eq!(registry.count_requests("PUT", "/v2/app/manifests/v1"), 1);
    assert!(
        proxy
            .connects()
            .iter()
            .all(|c| c == &format!("{LOGIN_SERVER}:443"))
    );
}

#[tokio::test]
async fn upload_bodies_stream_through_the_front_without_buffering() {
    let acr = FakeAcr::start(LOGIN_SERVER, TENANT, ENTRA_TOKEN).await;
    let proxy = ConnectProxy::start(vec![acr.route()]).await;
    let client = proxied_client(&proxy, acr.ca());
    let token = acr
        .registry()
        .token_server()
        .unwrap()
        .issue_token(Some("alice"), &[SCOPE]);
    let blob = Blob::random(11, 4 * 1024 * 1024, ocync_core::MediaType::OciLayerGzip);
    let half = blob.bytes.len() / 2;

    let start = client
        .post(format!("https://{LOGIN_SERVER}/v2/{REPO}/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let location = header(&start, LOCATION);
    let uuid = location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let data = acr
        .registry()
        .storage_root()
        .join("docker/registry/v2/repositories")
        .join(REPO)
        .join("_uploads")
        .join(&uuid)
        .join("data");

    // The client sends the first half and then waits: if the front buffered whole bodies, the
    // registry would see nothing until the end.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = client
        .patch(&location)
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, blob.size())
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let pending = tokio::spawn(request);
    sender.send(Ok(blob.bytes.slice(..half))).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let stored = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        if stored >= (half as u64) / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the registry holds {stored} bytes of the first {half} after 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!pending.is_finished());
    sender.send(Ok(blob.bytes.slice(half..))).await.unwrap();
    drop(sender);
    let patched = pending.await.unwrap().unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let done = client
        .put(header(&patched, LOCATION))
        .bearer_auth(&token)
        .query(&[("digest", blob.digest().to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    assert!(acr.registry().blob_data_path(blob.digest()).is_file());
}

#[tokio::test]
async fn wrong_entra_credentials_and_tokens_are_refused() {
    let acr = FakeAcr::start(LOGIN_SERVER, TENANT, ENTRA_TOKEN).await;
    let aad = FakeAad::start(TENANT, CLIENT_ID, CLIENT_SECRET, ENTRA_TOKEN).await;
    let proxy = ConnectProxy::start(vec![acr.route()]).await;
    let client = proxied_client(&proxy, acr.ca());
    let plain = ocync_transport::testing::plain_client();

    // Entra: wrong secret, wrong scope, assertion without its type, unknown tenant.
    let forms: [&[(&str, &str)]; 3] = [
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("scope", ACR_SCOPE),
        ],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "https://management.azure.com/.default"),
        ],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion", CLIENT_SECRET),
            ("scope", ACR_SCOPE),
        ],
    ];
    for form in forms {
        let answer = plain.post(aad.token_url()).form(form).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{form:?}");
        assert_eq!(
            answer.json::<Value>().await.unwrap()["error"],
            "invalid_client"
        );
    }
    let other_tenant = plain
        .post(format!("{}/other-tenant/oauth2/v2.0/token", aad.url()))
        .form(forms[0])
        .send()
        .await
        .unwrap();
    assert_eq!(other_tenant.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(aad.requests(), 4);

    // ACR exchange with a token Entra never issued.
    let refused = client
        .post(format!("{}/oauth2/exchange", acr.url()))
        .form(&[
            ("grant_type", "access_token"),
            ("service", LOGIN_SERVER),
            ("tenant", TENANT),
            ("access_token", "not.the.token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(acr.exchanges(), 1);
    assert_eq!(acr.log()[0].status, 401);
    assert!(acr.refresh_tokens().is_empty());

    // A refresh token the login server never issued.
    let forged = client
        .post(format!("{}/oauth2/token", acr.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", LOGIN_SERVER),
            ("scope", SCOPE),
            ("refresh_token", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // Admin Basic with a wrong password.
    let wrong_admin = client
        .get(format!("{}/oauth2/token", acr.url()))
        .query(&[("service", LOGIN_SERVER), ("scope", SCOPE)])
        .basic_auth("myreg", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_admin.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(acr.token_requests(), 2);
    assert_eq!(acr.token_requests_with_scope(SCOPE), 2);

    // An expired refresh token is refused; a fresh one gets an access token whose lifetime
    // the test chose.
    let exchange = || async {
        let answer: Value = client
            .post(format!("{}/oauth2/exchange", acr.url()))
            .form(&[
                ("grant_type", "access_token"),
                ("service", LOGIN_SERVER),
                ("tenant", TENANT),
                ("access_token", ENTRA_TOKEN),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["refresh_token"].as_str().unwrap().to_owned()
    };
    let token_for = |refresh: String| {
        client
            .post(format!("{}/oauth2/token", acr.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("service", LOGIN_SERVER),
                ("scope", SCOPE),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
    };
    acr.set_refresh_token_lifetime(0);
    let expired = token_for(exchange().await).await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    acr.set_refresh_token_lifetime(REFRESH_TOKEN_LIFETIME);
    acr.set_access_token_lifetime(90);
    let fresh: Value = token_for(exchange().await)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = claims(fresh["access_token"].as_str().unwrap());
    assert_eq!(
        access["exp"].as_u64().unwrap() - access["iat"].as_u64().unwrap(),
        90
    );
    assert_eq!(acr.exchanges(), 3);
    assert_eq!(acr.refresh_tokens().len(), 2);
    assert!(acr.registry().requests().is_empty());
}

#[tokio::test]
async fn unknown_connect_host_is_refused_and_nothing_is_tunnelled() {
    let registry = TestRegistry::start(RegistryOptions::new().with_tls_names([ECR_HOST])).await;
    let proxy = ConnectProxy::start(vec![(format!("{ECR_HOST}:443"), registry.addr())]).await;
    let client = proxied_client(&proxy, registry.ca().unwrap());

    let err = client
        .get("https://registry-1.docker.io/v2/")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Same host, other port: not routed either.
    let err = client
        .get(format!("https://{ECR_HOST}:8443/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    assert_eq!(
        proxy.connects(),
        [
            "registry-1.docker.io:443".to_owned(),
            format!("{ECR_HOST}:8443")
        ]
    );
    assert!(proxy.tunnelled().is_empty());
    assert!(proxy.requests().iter().all(|r| r.status == 403));
    assert!(registry.requests().is_empty());

    // Plain-HTTP requests through the proxy are refused too.
    let http = Client::builder()
        .proxy(Proxy::http(proxy.url()).unwrap())
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .unwrap();
    let answer = http
        .get(format!("http://{ECR_HOST}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert_eq!(proxy.requests().last().unwrap().method, "GET");
    assert!(registry.requests().is_empty());

    // The routed host still works.
    let ok = client
        .get(format!("https://{ECR_HOST}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(proxy.tunnelled(), [format!("{ECR_HOST}:443")]);
}
