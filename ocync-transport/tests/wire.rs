//! Request-level behaviour of the client against scripted servers: which requests are sent,
//! how many, and with which headers. Each optimisation is proved by a request that did not
//! happen (`expect(0)`), each fallback by the one that did.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt as _;
use ocync_auth::{Credential, StaticProvider};
use ocync_core::{Descriptor, Digest, MediaType};
use ocync_transport::{
    BlobStream, Client, ClientBuilder, CopyOptions, ErrorKind, Mount, Repository, UploadMode,
    copy_image,
};
use wiremock::matchers::{any, body_bytes, header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn http_client(server: &MockServer) -> ClientBuilder {
    ClientBuilder::new(&format!("http://{}", server.address()))
}

fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        }))
        .unwrap(),
    )
}

fn descriptor(media_type: MediaType, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::sha256(bytes), bytes.len() as u64)
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry that wants Bearer tokens from its own `/token`.
async fn bearer_registry(server: &MockServer) {
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="wire-test",scope="repository:app:pull""#,
        server.address()
    );
    Mock::given(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"token": "tok-1", "expires_in": 300})),
        )
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        .with_priority(20)
        .mount(server)
        .await;
}

#[tokio::test]
async fn bearer_token_is_fetched_once_per_scope_set() {
    let server = MockServer::start().await;
    let manifest = oci_manifest(&descriptor(MediaType::OciConfig, b"{}"), &[]);
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(manifest.clone(), MANIFEST_TYPE))
        .expect(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .and(query_param("scope", "repository:app:pull"))
        .and(query_param("service", "wire-test"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"token": "tok-1", "expires_in": 300})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="wire-test",scope="repository:app:pull""#,
        server.address()
    );
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        .expect(1)
        .with_priority(5)
        .mount(&server)
        .await;

    let client = http_client(&server).build().unwrap();
    for _ in 0..3 {
        let m = client.manifest("app", "v1").await.unwrap();
        assert_eq!(m.bytes(), &manifest);
    }
    let stats = client.stats();
    assert_eq!(stats.get(ocync_transport::RequestKind::Token), 1);
    assert_eq!(
        stats.get(ocync_transport::RequestKind::ManifestGet),
        4,
        "one 401, then three with the token"
    );
}

/// A token the registry rejects is refreshed once; a second rejection is reported, naming the
/// registry, repository and action, and nothing loops.
#[tokio::test]
async fn rejected_token_is_refreshed_once_then_reported() {
    let server = MockServer::start().await;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="wire-test",scope="repository:app:pull",error="invalid_token""#,
        server.address()
    );
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"token": "stale", "expires_in": 300})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        // Two calls, each: one attempt and exactly one retry.
        .expect(4)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    // First call: 401 (no token) -> token -> 401 -> report.
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&server.address().to_string())
            && msg.contains("'app'")
            && msg.contains("pull"),
        "{msg}"
    );
    // Second call: the cached token is sent, refused, refreshed once, refused again.
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Denied { .. }));
}

#[tokio::test]
async fn basic_challenge_gets_basic_credentials() {
    let server = MockServer::start().await;
    let config = descriptor(MediaType::OciConfig, b"{}");
    Mock::given(method("HEAD"))
        .and(path(format!("/v2/app/blobs/{}", config.digest)))
        .and(header("authorization", "Basic YWxpY2U6czNjcmV0"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Basic realm="basic-realm""#),
        )
        .expect(1)
        .with_priority(5)
        .mount(&server)
        .await;
    let client = http_client(&server)
        .credentials(Arc::new(StaticProvider::new(Credential::basic(
            "alice", "s3cret",
        ))))
        .build()
        .unwrap();
    assert!(client.blob_exists("app", &config.digest).await.unwrap());
    assert!(
        client.blob_exists("app", &config.digest).await.unwrap(),
        "Basic is sent pre-emptively after the first 401"
    );
}

#[tokio::test]
async fn blob_redirect_to_another_host_drops_authorization() {
    let registry = MockServer::start().await;
    let storage = MockServer::start().await;
    let data = b"layer bytes".repeat(100);
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    bearer_registry(&registry).await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/app/blobs/{}", layer.digest)))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("http://{}/blob-data?sig=SECRET", storage.address()).as_str(),
        ))
        .with_priority(1)
        .mount(&registry)
        .await;
    Mock::given(method("GET"))
        .and(path("/blob-data"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(400))
        .expect(0)
        .with_priority(1)
        .mount(&storage)
        .await;
    Mock::given(method("GET"))
        .and(path("/blob-data"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(data.clone()))
        .expect(1)
        .with_priority(2)
        .mount(&storage)
        .await;
    let client = http_client(&registry).build().unwrap();
    let stream = client.blob("app", &layer).await.unwrap();
    let bytes = stream.collect(1 << 20).await.unwrap();
    assert_eq!(bytes.as_ref(), data.as_slice());
}

#[tokio::test]
async fn errors_name_the_host_actually_contacted_and_hide_the_query() {
    let registry = MockServer::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let layer = descriptor(MediaType::OciLayerGzip, b"x");
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("http://{dead}/data?sig=SECRET").as_str(),
        ))
        .mount(&registry)
        .await;
    let client = http_client(&registry).build().unwrap();
    let err = client.blob("app", &layer).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Connect { .. }), "{err:?}");
    let msg = format!("{err} {err:?}");
    assert!(
        msg.contains(&dead.to_string()),
        "names the data endpoint: {msg}"
    );
    assert!(!msg.contains("SECRET"), "never the query: {msg}");
}

#[tokio::test]
async fn tag_list_follows_link_pagination() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/app/tags/list"))
        .and(query_param("last", "b"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"name": "app", "tags": ["c"]})),
        )
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/app/tags/list"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"name": "app", "tags": ["a", "b"]}))
                .insert_header("link", r#"</v2/app/tags/list?last=b&n=2>; rel="next""#),
        )
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    assert_eq!(client.tags("app").await.unwrap(), ["a", "b", "c"]);
}

/// Serves one image; HEAD answers "present" for every blob at the target.
async fn source_image(server: &MockServer, repo: &str) -> (Bytes, Vec<(Descriptor, Vec<u8>)>) {
    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer_bytes = vec![9u8; 3000];
    let blobs = vec![
        (
            descriptor(MediaType::OciConfig, &config_bytes),
            config_bytes,
        ),
        (
            descriptor(MediaType::OciLayerGzip, &layer_bytes),
            layer_bytes,
        ),
    ];
    let manifest = oci_manifest(&blobs[0].0, &[blobs[1].0.clone()]);
    Mock::given(method("GET"))
        .and(path(format!("/v2/{repo}/manifests/v1")))
        .respond_with(ResponseTemplate::new(200).set_body_raw(manifest.clone(), MANIFEST_TYPE))
        .mount(server)
        .await;
    for (d, bytes) in &blobs {
        Mock::given(method("GET"))
            .and(path(format!("/v2/{repo}/blobs/{}", d.digest)))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(bytes.clone()))
            .mount(server)
            .await;
    }
    (manifest, blobs)
}

#[tokio::test]
async fn blobs_already_at_the_target_are_not_uploaded_or_downloaded() {
    let source = MockServer::start().await;
    let target = MockServer::start().await;
    let (manifest, blobs) = source_image(&source, "src").await;
    Mock::given(method("HEAD"))
        .and(path("/v2/dst/manifests/v1"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&target)
        .await;
    for (d, _) in &blobs {
        Mock::given(method("HEAD"))
            .and(path(format!("/v2/dst/blobs/{}", d.digest)))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&target)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&target)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/dst/manifests/v1"))
        .and(body_bytes(manifest.to_vec()))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&target)
        .await;
    let src = Repository::registry(http_client(&source).build().unwrap(), "src");
    let dst = Repository::registry(http_client(&target).build().unwrap(), "dst");
    let report = copy_image(
        &src,
        "v1",
        &dst,
        Some("v1"),
        &CopyOptions::default().referrers(false),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            report.blobs_skipped,
            report.blobs_uploaded,
            report.manifests_pushed
        ),
        (2, 0, 1)
    );
    let src_stats = src.client().unwrap().stats();
    assert_eq!(
        src_stats.get(ocync_transport::RequestKind::BlobGet),
        0,
        "no blob was downloaded"
    );
}

/// A mount the registry cannot do answers 202 with a session; that session is used for the
/// upload, not discarded for a second POST.
#[tokio::test]
async fn failed_mount_uploads_into_the_session_it_opened() {
    let server = MockServer::start().await;
    let data = vec![5u8; 4096];
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    Mock::given(method("POST"))
        .and(path("/v2/dst/blobs/uploads/"))
        .and(query_param("mount", layer.digest.to_string().as_str()))
        .and(query_param("from", "src"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("location", "/v2/dst/blobs/uploads/session-1?_state=abc"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/dst/blobs/uploads/session-1"))
        .and(query_param("_state", "abc"))
        .and(query_param("digest", layer.digest.to_string().as_str()))
        .and(header("content-length", "4096"))
        .and(body_bytes(data.clone()))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let Mount::Session(session) = client
        .mount_blob("dst", &layer.digest, "src")
        .await
        .unwrap()
    else {
        panic!("202 is a session");
    };
    client
        .push_blob(
            "dst",
            &layer,
            BlobStream::from_bytes(Bytes::from(data)),
            Some(session),
        )
        .await
        .unwrap();
    let stats = client.stats();
    assert_eq!(
        stats.get(ocync_transport::RequestKind::UploadStart),
        0,
        "no second POST"
    );
    assert_eq!(stats.bytes_uploaded, 4096);
}

/// Chunked uploads send sized PATCHes with Content-Range and a final empty PUT, and notice a
/// registry that acknowledged less than was sent.
#[tokio::test]
async fn chunked_upload_request_shape_and_range_check() {
    struct Patch(AtomicUsize);
    impl Respond for Patch {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let range = request
                .headers
                .get("content-range")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let end = range.split('-').nth(1).unwrap().to_owned();
            assert_eq!(
                request
                    .headers
                    .get("content-length")
                    .unwrap()
                    .to_str()
                    .unwrap(),
                request.body.len().to_string()
            );
            ResponseTemplate::new(202)
                .insert_header("range", format!("0-{end}").as_str())
                .insert_header(
                    "location",
                    format!("/v2/app/blobs/uploads/s?part={}", n + 1).as_str(),
                )
        }
    }
    let server = MockServer::start().await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("location", "/v2/app/blobs/uploads/s?part=0"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v2/app/blobs/uploads/s"))
        .respond_with(Patch(AtomicUsize::new(0)))
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v2/app/blobs/uploads/s"))
        .and(query_param("part", "3"))
        .and(query_param("digest", layer.digest.to_string().as_str()))
        .and(header("content-length", "0"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server)
        .upload_mode(UploadMode::Chunked { chunk_size: 4000 })
        .build()
        .unwrap();
    let parts: Vec<Result<Bytes, ocync_transport::Error>> = data
        .chunks(999)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .push_blob(
            "app",
            &layer,
            BlobStream::new(futures::stream::iter(parts)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(client.stats().bytes_uploaded, 10_000);
}

#[tokio::test]
async fn chunk_lost_by_the_registry_is_an_error_and_the_session_is_deleted() {
    let server = MockServer::start().await;
    let data = vec![1u8; 5000];
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("location", "/v2/app/blobs/uploads/s"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("range", "0-0")
                .insert_header("location", "/v2/app/blobs/uploads/s"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/app/blobs/uploads/s"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server)
        .upload_mode(UploadMode::Chunked { chunk_size: 5000 })
        .build()
        .unwrap();
    let err = client
        .push_blob(
            "app",
            &layer,
            BlobStream::from_bytes(Bytes::from(data)),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("Range '0-0'"), "{err}");
}

#[tokio::test]
async fn oversized_manifests_are_refused_with_and_without_content_length() {
    let server = MockServer::start().await;
    let big = vec![b' '; 4 * 1024 * 1024 + 10];
    Mock::given(path("/v2/app/manifests/big"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, MANIFEST_TYPE))
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let err = client.manifest("app", "big").await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ManifestTooLarge { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("'big'") && msg.contains("4194304"), "{msg}");

    // Without Content-Length the body is read with a cap.
    let raw = raw_server(|_| {
        let mut response = b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..5 {
            let chunk = vec![b' '; 1024 * 1024];
            response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            response.extend_from_slice(&chunk);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        response
    })
    .await;
    let client = ClientBuilder::new(&format!("http://{raw}"))
        .build()
        .unwrap();
    let err = client.manifest("app", "big").await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ManifestTooLarge { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn manifest_that_does_not_match_its_digest_header_is_rejected() {
    let server = MockServer::start().await;
    let manifest = oci_manifest(&descriptor(MediaType::OciConfig, b"{}"), &[]);
    Mock::given(path("/v2/app/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(manifest, MANIFEST_TYPE)
                .insert_header(
                    "docker-content-digest",
                    Digest::sha256(b"other").to_string().as_str(),
                ),
        )
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
    assert!(err.to_string().contains("app:v1"), "{err}");
}

/// A download that stops before Content-Length is a size error naming the blob and source.
#[tokio::test]
async fn truncated_blob_download_is_reported() {
    let data = vec![7u8; 100_000];
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    let raw = raw_server(move |_| {
        let mut response =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", data.len()).into_bytes();
        response.extend_from_slice(&data[..40_000]);
        response
    })
    .await;
    let client = ClientBuilder::new(&format!("http://{raw}"))
        .build()
        .unwrap();
    let mut stream = client.blob("app", &layer).await.unwrap();
    let mut received = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(chunk)) => received += chunk.len(),
            Some(Err(e)) => break e,
            None => panic!("a truncated stream must not end cleanly"),
        }
    };
    assert!(received < 40_000, "the last chunk is held back");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BlobSize {
                expected: 100_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
}

#[tokio::test]
async fn referrers_api_pages_and_fallback_tag() {
    let server = MockServer::start().await;
    let subject = Digest::sha256(b"subject");
    let d1 = descriptor(MediaType::OciManifest, b"sig1");
    let d2 = descriptor(MediaType::OciManifest, b"sig2");
    let page = |d: &Descriptor| {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [d]})).unwrap()
    };
    Mock::given(path(format!("/v2/app/referrers/{subject}")))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(page(&d2), "application/vnd.oci.image.index.v1+json"),
        )
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/v2/app/referrers/{subject}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(page(&d1), "application/vnd.oci.image.index.v1+json")
                .insert_header(
                    "link",
                    format!(r#"</v2/app/referrers/{subject}?page=2>; rel="next""#).as_str(),
                ),
        )
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let found = client.referrers("app", &subject).await.unwrap();
    assert_eq!(found.descriptors, vec![d1.clone(), d2]);
    assert_eq!(client.supports_referrers_api(), Some(true));

    // A registry without the API: one 404, then only the fallback tag, ever.
    let old = MockServer::start().await;
    Mock::given(path(format!("/v2/app/referrers/{subject}")))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found\n"))
        .expect(1)
        .mount(&old)
        .await;
    Mock::given(path(format!(
        "/v2/app/manifests/{}",
        subject.referrers_tag()
    )))
    .respond_with(
        ResponseTemplate::new(200)
            .set_body_raw(page(&d1), "application/vnd.oci.image.index.v1+json"),
    )
    .expect(2)
    .mount(&old)
    .await;
    let client = http_client(&old).build().unwrap();
    for _ in 0..2 {
        let found = client.referrers("app", &subject).await.unwrap();
        assert_eq!(found.descriptors, vec![d1.clone()]);
        assert!(found.fallback_index.is_some());
    }
    assert_eq!(client.supports_referrers_api(), Some(false));
}

#[tokio::test]
async fn unknown_host_is_a_connect_error_naming_it() {
    #[derive(Debug)]
    struct NoDns;
    impl reqwest::dns::Resolve for NoDns {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let name = name.as_str().to_owned();
            Box::pin(async move { Err(format!("no such host: {name}").into()) })
        }
    }
    let client = ClientBuilder::new("registry.does-not-exist.invalid")
        .dns_resolver(Arc::new(NoDns))
        .build()
        .unwrap();
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("registry.does-not-exist.invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn path_prefixed_registry_places_repositories_under_the_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/myregistry/team/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let client = ClientBuilder::new(&format!("http://{}/myregistry", server.address()))
        .build()
        .unwrap();
    assert_eq!(client.manifest_head("team/app", "v1").await.unwrap(), None);
}

/// A one-connection-at-a-time server that answers every request with `respond(request)`.
async fn raw_server(
    respond: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let _ = socket.write_all(&respond(&buf[..n])).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn client_is_cheap_to_share() {
    // Clones share counters: the engine hands clones to tasks and reads one report.
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let client: Client = http_client(&server).build().unwrap();
    let clone = client.clone();
    clone
        .blob_exists("app", &Digest::sha256(b"x"))
        .await
        .unwrap();
    assert_eq!(client.stats().total(), 1);
}

/// A data endpoint that accepts the connection and never answers (a firewalled ACR data
/// endpoint) times out, and the error names that host, not the registry.
#[tokio::test]
async fn hanging_data_endpoint_times_out_naming_it() {
    let registry = MockServer::start().await;
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("http://{hang_addr}/data").as_str()),
        )
        .mount(&registry)
        .await;
    let client = http_client(&registry)
        .read_timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .blob("app", &descriptor(MediaType::OciLayerGzip, b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&hang_addr.to_string()), "{err}");
}

#[tokio::test]
async fn ping_answers_a_challenge_with_credentials() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/"))
        .and(header("authorization", "Basic YWxpY2U6czNjcmV0"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", r#"Basic realm="r""#),
        )
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let client = http_client(&server)
        .credentials(Arc::new(StaticProvider::new(Credential::basic(
            "alice", "s3cret",
        ))))
        .build()
        .unwrap();
    client.ping().await.unwrap();
}

/// ECR answers a chunk PATCH with 201 instead of 202; that is success, not an error.
#[tokio::test]
async fn chunk_acknowledged_with_201_is_accepted() {
    let server = MockServer::start().await;
    let data = vec![4u8; 6000];
    let layer = descriptor(MediaType::OciLayerGzip, &data);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("location", "/v2/app/blobs/uploads/s"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("range", "0-5999")
                .insert_header("location", "/v2/app/blobs/uploads/s"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server)
        .upload_mode(UploadMode::Chunked { chunk_size: 8000 })
        .build()
        .unwrap();
    client
        .push_blob(
            "app",
            &layer,
            BlobStream::from_bytes(Bytes::from(data)),
            None,
        )
        .await
        .unwrap();
}

/// A registry that omits `Docker-Content-Digest` on HEAD (seen on some ECR responses) is
/// answered with a GET, whose bytes give the digest.
#[tokio::test]
async fn head_without_digest_header_falls_back_to_get() {
    let server = MockServer::start().await;
    let manifest = oci_manifest(&descriptor(MediaType::OciConfig, b"{}"), &[]);
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", MANIFEST_TYPE))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(manifest.clone(), MANIFEST_TYPE))
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let d = client.manifest_head("app", "v1").await.unwrap().unwrap();
    assert_eq!(d.digest, Digest::sha256(&manifest));
}

/// An expired fixed token is refused before it is sent, naming the registry; a 403 (the
/// credentials are fine but lack the permission) is told apart from a 401 in the message.
#[tokio::test]
async fn expired_static_token_and_403_versus_401() {
    use base64::Engine as _;
    let server = MockServer::start().await;
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="wire-test""#,
        server.address()
    );
    Mock::given(path("/v2/app/manifests/v1"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/app/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let expired = format!(
        "{}.{}.sig",
        b64(r#"{"alg":"none"}"#),
        b64(r#"{"exp":1000000000}"#)
    );
    let client = http_client(&server)
        .credentials(Arc::new(StaticProvider::new(Credential::Bearer {
            token: expired.clone().into(),
        })))
        .build()
        .unwrap();
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(
        chain.contains("expired") && chain.contains(&server.address().to_string()),
        "{chain}"
    );
    assert!(
        !format!("{err:?}").contains(&expired),
        "the token is not in the error"
    );

    let valid = format!(
        "{}.{}.sig",
        b64(r#"{"alg":"none"}"#),
        b64(r#"{"exp":4000000000}"#)
    );
    let client = http_client(&server)
        .credentials(Arc::new(StaticProvider::new(Credential::Bearer {
            token: valid.into(),
        })))
        .build()
        .unwrap();
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Denied { status, .. } if status.as_u16() == 403),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("403 Forbidden") && err.to_string().contains("DENIED"),
        "{err}"
    );
}

/// A 500 then a 200: the GET is sent again once and succeeds; the retry is counted.
#[tokio::test]
async fn transient_server_error_is_retried() {
    let server = MockServer::start().await;
    let manifest = oci_manifest(&descriptor(MediaType::OciConfig, b"{}"), &[]);
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(manifest.clone(), MANIFEST_TYPE))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    assert_eq!(
        client.manifest("app", "v1").await.unwrap().bytes(),
        &manifest
    );
    let stats = client.stats();
    assert_eq!(
        (
            stats.get(ocync_transport::RequestKind::ManifestGet),
            stats.retries
        ),
        (2, 1)
    );
}

/// 429 with `Retry-After`: counted as throttled and retried; a request that can never work
/// (404) is not retried.
#[tokio::test]
async fn throttled_requests_wait_and_retry_but_not_found_does_not() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    assert_eq!(client.manifest_head("app", "v1").await.unwrap(), None);
    let stats = client.stats();
    assert_eq!((stats.throttled, stats.retries, stats.total()), (2, 2, 3));
}

/// A registry that keeps failing spends its retry budget, then fails fast with an error that
/// says so, instead of being retried forever.
#[tokio::test]
async fn dead_registry_exhausts_the_retry_budget() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let mut last = None;
    for _ in 0..40 {
        let err = client.manifest_head("app", "v1").await.unwrap_err();
        if matches!(err.kind(), ErrorKind::RetryBudget { .. }) {
            last = Some(err);
            break;
        }
    }
    let err = last.expect("the budget runs out");
    let msg = err.to_string();
    assert!(
        msg.contains(&server.address().to_string())
            && msg.contains("503")
            && msg.contains("giving up"),
        "{msg}"
    );
    assert_eq!(client.stats().retries, 60, "exactly the budget was spent");
}

/// Docker Hub's `ratelimit-remaining` is read and surfaced in the client's counters.
#[tokio::test]
async fn docker_hub_rate_limit_headers_are_surfaced() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("ratelimit-limit", "100;w=21600")
                .insert_header("ratelimit-remaining", "7;w=21600"),
        )
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    assert_eq!(client.stats().ratelimit_remaining, None);
    client.manifest_head("app", "v1").await.unwrap();
    assert_eq!(client.stats().ratelimit_remaining, Some(7));
}

/// A 429 saying the allowance is spent (`ratelimit-remaining: 0`, Docker Hub's pull limit)
/// fails at once with the registry's message: one request, no retry, nothing drawn from waiting.
#[tokio::test]
async fn spent_allowance_fails_without_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/manifests/v1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("ratelimit-limit", "100;w=21600")
                .insert_header("ratelimit-remaining", "0;w=21600")
                .set_body_string(
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = http_client(&server).build().unwrap();
    let err = client.manifest("app", "v1").await.unwrap_err();
    assert!(err.to_string().contains("pull rate limit"), "{err}");
    let stats = client.stats();
    assert_eq!((stats.throttled, stats.retries, stats.total()), (1, 0, 1));
    assert_eq!(stats.ratelimit_remaining, Some(0));
}
