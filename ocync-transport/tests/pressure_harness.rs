//! Proves the pressure harness (`NginxFront` and `FaultServer` in `ocync_transport::testing`)
//! with plain reqwest only, so a transport bug cannot hide a harness bug: nginx passes pushes
//! through, rate limits with and without `Retry-After`, and refuses large bodies while letting
//! chunks through; the fault server answers, cuts and caps exactly as scripted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use ocync_transport::testing::fixture::{Blob, ImageFixture, random_bytes};
use ocync_transport::testing::{
    Fault, FaultServer, NginxFront, NginxOptions, TestRegistry, plain_client,
};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPO: &str = "pressure/app";
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// `POST` a new upload session at `base`; the absolute `Location` to continue at.
async fn start_upload(client: &Client, base: &str) -> String {
    let start = client
        .post(format!("{base}/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = start.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{base}/")),
        "the Location '{location}' continues at '{base}'"
    );
    location
}

/// Monolithic upload through `base`: `POST`, then `PUT ?digest=` with the bytes.
async fn push_blob(client: &Client, base: &str, blob: &Blob) -> reqwest::Response {
    let location = start_upload(client, base).await;
    client
        .put(location)
        .query(&[("digest", blob.digest().to_string())])
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(blob.bytes.clone())
        .send()
        .await
        .unwrap()
}

/// Chunked upload through `base`: `POST`, one `PATCH` with `Content-Range` per chunk, then
/// `PUT ?digest=` without a body. Returns the final answer.
async fn push_chunked(client: &Client, base: &str, blob: &Blob, chunk: usize) -> reqwest::Response {
    let mut location = start_upload(client, base).await;
    for (i, piece) in blob.bytes.chunks(chunk).enumerate() {
        let start = i * chunk;
        let patch = client
            .patch(&location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + piece.len() - 1),
            )
            .body(blob.bytes.slice(start..start + piece.len()))
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), StatusCode::ACCEPTED, "PATCH of chunk {i}");
        assert_eq!(
            patch.headers()["range"].to_str().unwrap(),
            format!("0-{}", start + piece.len() - 1)
        );
        location = patch.headers()[LOCATION].to_str().unwrap().to_owned();
    }
    client
        .put(location)
        .query(&[("digest", blob.digest().to_string())])
        .send()
        .await
        .unwrap()
}

async fn put_manifest(
    client: &Client,
    base: &str,
    tag: &str,
    image: &ImageFixture,
) -> reqwest::Response {
    client
        .put(format!("{base}/v2/{REPO}/manifests/{tag}"))
        .header(CONTENT_TYPE, image.media_type().as_str())
        .body(image.bytes().clone())
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}

/// A body streamed with `Transfer-Encoding: chunked` (no `Content-Length`).
fn streamed(bytes: Bytes, piece: usize) -> reqwest::Body {
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(piece)
        .map(|at| Ok(bytes.slice(at..(at + piece).min(bytes.len()))))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(pieces))
}

#[tokio::test]
async fn nginx_passes_a_push_through_to_the_registry() {
    NginxFront::require();
    let registry = TestRegistry::plain().await;
    let front = NginxFront::start(&registry, NginxOptions::new()).await;
    let client = plain_client();
    let image = ImageFixture::image(1, "linux/amd64", &[300 * KIB]);

    for blob in &image.blobs {
        let done = push_blob(&client, &front.url(), blob).await;
        assert_eq!(done.status(), StatusCode::CREATED);
    }
    let done = put_manifest(&client, &front.url(), "v1", &image).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let location = done.headers()[LOCATION].to_str().unwrap();
    assert!(location.starts_with(&front.url()), "{location}");

    // The registry itself has everything, byte for byte.
    let layer = &image.layers()[0];
    let stored = std::fs::read(registry.blob_data_path(layer.digest())).unwrap();
    assert_eq!(stored, layer.bytes);
    let manifest = client
        .get(format!("{}/v2/{REPO}/manifests/v1", registry.url()))
        .header("accept", image.media_type().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(manifest.bytes().await.unwrap(), image.bytes());

    // nginx logged the five pushes and answered none of them alone; the registry saw them
    // and the direct GET.
    let lines = front.log_lines();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.upstream_status == Some(l.status)),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.retry_after_sent.is_none()),
        "{lines:#?}"
    );
    let layer_put = lines
        .iter()
        .find(|l| l.method == "PUT" && l.content_length == Some(layer.size()))
        .expect("the layer PUT is logged");
    assert!(layer_put.request_length > layer.size(), "{layer_put:?}");
    assert!(
        layer_put
            .query
            .as_deref()
            .unwrap()
            .contains("digest=sha256")
    );
    assert_eq!(registry.requests().len(), 6, "{:#?}", registry.requests());
    assert_eq!(front.count(201), 3);

    front.clear();
    assert!(front.log_lines().is_empty(), "the probe is never logged");
}

/// Five manifest PUTs at once against 1 request/s: one gets through, the rest are refused
/// by nginx without reaching the registry, with `Retry-After` exactly when configured.
async fn manifest_puts_are_limited(retry_after: Option<u32>) {
    let registry = TestRegistry::plain().await;
    let mut options = NginxOptions::new().manifest_put_rate(1);
    if let Some(seconds) = retry_after {
        options = options.retry_after(seconds);
    }
    let front = NginxFront::start(&registry, options).await;
    let client = plain_client();
    let image = ImageFixture::image(2, "linux/amd64", &[4 * KIB]);
    // Blob requests are not limited: all pass, however quickly they follow each other.
    for blob in &image.blobs {
        assert_eq!(
            push_blob(&client, &front.url(), blob).await.status(),
            StatusCode::CREATED
        );
    }
    front.clear();
    registry.clear_requests();

    let puts = (0..5).map(|i| {
        let client = client.clone();
        let url = front.url();
        let image = image.clone();
        async move { put_manifest(&client, &url, &format!("t{i}"), &image).await }
    });
    let answers = join_all(puts).await;
    let mut created = 0;
    let mut limited = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let header = answer
                    .headers()
                    .get(RETRY_AFTER)
                    .map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(header, retry_after.map(|s| s.to_string()));
                assert_eq!(error_code(answer).await, "TOOMANYREQUESTS");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        created >= 1 && limited >= 1,
        "{created} created, {limited} limited"
    );
    assert_eq!(created + limited, 5);

    let lines = front.log_lines();
    let refused: Vec<_> = lines.iter().filter(|l| l.status == 429).collect();
    assert_eq!(refused.len(), limited, "{lines:#?}");
    for line in &refused {
        assert_eq!(line.method, "PUT");
        assert_eq!(line.upstream_status, None, "nginx answered alone: {line:?}");
        assert_eq!(line.retry_after_sent, retry_after.map(|s| s.to_string()));
    }
    assert_eq!(front.count(201), created);
    // The refused PUTs never reached the registry.
    let reached = registry.requests();
    assert_eq!(reached.len(), created, "{reached:#?}");
    assert!(reached.iter().all(|r| r.method == "PUT" && r.status == 201));
}

#[tokio::test]
async fn manifest_put_rate_answers_429_with_retry_after() {
    NginxFront::require();
    manifest_puts_are_limited(Some(2)).await;
}

#[tokio::test]
async fn manifest_put_rate_answers_429_without_retry_after() {
    NginxFront::require();
    manifest_puts_are_limited(None).await;
}

#[tokio::test]
async fn other_rate_limits_everything_but_manifest_puts() {
    NginxFront::require();
    let registry = TestRegistry::plain().await;
    let options = NginxOptions::new()
        .other_rate(1)
        .burst(1)
        .status(503)
        .retry_after(1);
    let front = NginxFront::start(&registry, options).await;
    let client = plain_client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = client
            .get(format!("{}/v2/", front.url()))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // The rate allows one, the burst one more; the configured status answers the rest.
    assert_eq!(statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&503), "{statuses:?}");
    let image = ImageFixture::image(3, "linux/amd64", &[]);
    // Manifest PUTs are not limited by the other zone (the manifest's blobs are missing, so
    // the registry itself refuses it: what matters is that it got there).
    let resp = put_manifest(&client, &front.url(), "v1", &image).await;
    assert_ne!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        registry.count_requests("PUT", &format!("/v2/{REPO}/manifests/")),
        1
    );
    assert_eq!(
        front.count(503),
        statuses.iter().filter(|s| **s == 503).count()
    );
}

#[tokio::test]
async fn max_body_refuses_large_puts_and_passes_smaller_chunks() {
    NginxFront::require();
    let registry = TestRegistry::plain().await;
    let front = NginxFront::start(&registry, NginxOptions::new().max_body(MIB as u64)).await;
    let client = plain_client();
    let blob = Blob::random(4, 2 * MIB, ocync_core::MediaType::OciLayerGzip);

    let refused = push_blob(&client, &front.url(), &blob).await;
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let uploads = format!("/v2/{REPO}/blobs/uploads/");
    assert_eq!(
        registry.count_requests("PUT", &uploads),
        0,
        "{:#?}",
        registry.requests()
    );

    // nginx decides from Content-Length before any of the body arrives.
    let location = start_upload(&client, &front.url()).await;
    let target = location.strip_prefix(&front.url()).unwrap();
    let mut stream = tokio::net::TcpStream::connect(front.addr()).await.unwrap();
    let head = format!(
        "PUT {target}&digest={} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        blob.digest(),
        front.host(),
        2 * MIB
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("413 without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(stream);

    // 512 KiB PATCHes (with Content-Length) and a streamed one (chunked encoding) pass.
    let done = push_chunked(&client, &front.url(), &blob, 512 * KIB).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let stored = std::fs::read(registry.blob_data_path(blob.digest())).unwrap();
    assert_eq!(stored, blob.bytes);
    let location = start_upload(&client, &front.url()).await;
    let patch = client
        .patch(&location)
        .body(streamed(blob.bytes.slice(..512 * KIB), 64 * KIB))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    // A streamed body over the cap is cut off by nginx once it passes the limit.
    let location = start_upload(&client, &front.url()).await;
    let over = client
        .patch(&location)
        .body(streamed(blob.bytes.clone(), 64 * KIB))
        .send()
        .await;
    if let Ok(resp) = over {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    let lines = front.log_lines();
    let too_large: Vec<_> = lines.iter().filter(|l| l.status == 413).collect();
    assert!(too_large.len() >= 2, "{lines:#?}");
    let first = too_large[0];
    assert_eq!(
        (first.method.as_str(), first.upstream_status),
        ("PUT", None)
    );
    assert_eq!(first.content_length, Some(2 * MIB as u64));
    assert!(
        first.request_length < 64 * KIB as u64,
        "the body was not read: {first:?}"
    );
    let patches = lines
        .iter()
        .filter(|l| l.method == "PATCH" && l.status == 202)
        .count();
    assert_eq!(patches, 5, "{lines:#?}");
}

#[tokio::test]
async fn fault_server_answers_a_scripted_500_then_succeeds() {
    let server = FaultServer::start(vec![Fault::status("PUT", "/manifests/", 500)]).await;
    let client = plain_client();
    let image = ImageFixture::image(5, "linux/amd64", &[]);

    let first = put_manifest(&client, &server.url(), "v1", &image).await;
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(first.headers().get(RETRY_AFTER).is_none());
    assert_eq!(error_code(first).await, "UNKNOWN");
    assert_eq!(
        server.stored_manifest(REPO, "v1"),
        None,
        "the faulted PUT stored nothing"
    );

    let second = put_manifest(&client, &server.url(), "v1", &image).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(
        second.headers()["docker-content-digest"].to_str().unwrap(),
        image.digest().to_string()
    );
    assert_eq!(
        server.stored_manifest(REPO, "v1").as_ref(),
        Some(image.bytes())
    );
    let by_digest = client
        .get(format!(
            "{}/v2/{REPO}/manifests/{}",
            server.url(),
            image.digest()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_digest.headers()[CONTENT_TYPE],
        image.media_type().as_str()
    );
    assert_eq!(by_digest.bytes().await.unwrap(), image.bytes());

    assert!(server.remaining_faults().is_empty());
    assert_eq!(server.count("PUT", "/manifests/v1"), 2);
    let requests = server.requests();
    assert_eq!(requests[0].fault, Some("status"));
    assert_eq!((requests[0].status, requests[1].status), (500, 201));
    assert_eq!(requests[1].fault, None);
}

#[tokio::test]
async fn fault_server_sends_retry_after_as_scripted() {
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    let server = FaultServer::start(vec![
        Fault::status("GET", "/manifests/", 429)
            .retry_after("2")
            .times(2),
        Fault::status("GET", "/manifests/", 503).retry_after(date),
        Fault::status("GET", "/manifests/", 429),
    ])
    .await;
    let client = plain_client();
    let url = format!("{}/v2/{REPO}/manifests/v1", server.url());
    let mut seen = Vec::new();
    for _ in 0..5 {
        let resp = client.get(&url).send().await.unwrap();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        seen.push((resp.status().as_u16(), retry_after));
    }
    let expected = [
        (429, Some("2".to_owned())),
        (429, Some("2".to_owned())),
        (503, Some(date.to_owned())),
        (429, None),
        (404, None),
    ];
    assert_eq!(seen, expected);
    // HEAD is another method: no fault applied to it.
    let server = FaultServer::start(vec![Fault::status("GET", "/manifests/", 429)]).await;
    let head = client
        .head(format!("{}/v2/{REPO}/manifests/v1", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.remaining_faults().len(), 1);
}

#[tokio::test]
async fn fault_server_cuts_a_download_short() {
    let server = FaultServer::start(vec![Fault::reset_after("GET", "/blobs/", 1000)]).await;
    let bytes = Bytes::from(random_bytes(6, 64 * KIB));
    let digest = server.insert_blob(bytes.clone());
    let client = plain_client();
    let url = format!("{}/v2/{REPO}/blobs/{digest}", server.url());

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.headers()[CONTENT_LENGTH], (64 * KIB).to_string());
    assert_eq!(
        server.remaining_faults().len(),
        1,
        "HEAD does not use up a GET fault"
    );

    let cut = client.get(&url).send().await.unwrap();
    assert_eq!(cut.status(), StatusCode::OK);
    assert_eq!(cut.headers()[CONTENT_LENGTH], (64 * KIB).to_string());
    let err = cut.bytes().await.expect_err("the body is cut short");
    assert!(err.is_body() || err.is_decode(), "{err:?}");

    let whole = client.get(&url).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap(), bytes);
    let faulted: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 1);
    assert_eq!(faulted[0].fault, Some("reset_after"));
}

#[tokio::test]
async fn fault_server_cuts_an_upload_and_streams_slowly() {
    let server = FaultServer::start(vec![
        Fault::reset_after("PATCH", "/blobs/uploads/", 10 * KIB),
        Fault::slow_body("GET", "/blobs/", 40 * KIB as u64),
    ])
    .await;
    let client = plain_client();
    let blob = Blob::random(7, 64 * KIB, ocync_core::MediaType::OciLayerGzip);

    let location = start_upload(&client, &server.url()).await;
    let err = client
        .patch(&location)
        .header("content-range", format!("0-{}", 64 * KIB - 1))
        .body(blob.bytes.clone())
        .send()
        .await
        .expect_err("the connection is cut mid-body");
    assert!(!err.is_timeout(), "{err:?}");
    let cut = server.requests().pop().unwrap();
    assert_eq!((cut.method.as_str(), cut.status), ("PATCH", 0));
    assert!(
        cut.body_bytes >= 10 * KIB as u64 && cut.body_bytes < 64 * KIB as u64,
        "{cut:?}"
    );

    // The session survived the cut and holds nothing: the whole blob goes again.
    let done = push_chunked(&client, &server.url(), &blob, 64 * KIB).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(server.stored_blob(blob.digest()), Some(blob.bytes.clone()));

    // 64 KiB at 40 KiB/s takes more than a second.
    let started = Instant::now();
    let slow = client
        .get(format!(
            "{}/v2/{REPO}/blobs/{}",
            server.url(),
            blob.digest()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(slow, blob.bytes);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert!(server.remaining_faults().is_empty());
}

#[tokio::test]
async fn fault_server_caps_bodies_like_acr() {
    let server = FaultServer::start(vec![Fault::max_body(KIB as u64)]).await;
    let client = plain_client();
    let blob = Blob::random(8, 4 * KIB, ocync_core::MediaType::OciLayerGzip);

    let refused = push_blob(&client, &server.url(), &blob).await;
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(refused).await, "SIZE_INVALID");
    // Without Content-Length the cap is found by reading.
    let location = start_upload(&client, &server.url()).await;
    let streamed_over = client
        .patch(&location)
        .body(streamed(blob.bytes.clone(), 256))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed_over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let read = server.requests().pop().unwrap();
    assert_eq!((read.method.as_str(), read.status), ("PATCH", 413));
    assert!(read.body_bytes > KIB as u64, "decided by reading: {read:?}");
    assert_eq!(server.stored_blob(blob.digest()), None);

    let done = push_chunked(&client, &server.url(), &blob, 512).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(server.stored_blob(blob.digest()), Some(blob.bytes.clone()));
    let capped = server
        .requests()
        .iter()
        .filter(|r| r.fault == Some("max_body"))
        .count();
    assert_eq!(capped, 2);
    // The successful chunks were 512 bytes; only refused bodies came close to the cap.
    let accepted_max = server
        .requests()
        .iter()
        .filter(|r| r.status != 413)
        .map(|r| r.body_bytes)
        .max();
    assert_eq!(accepted_max, Some(512));
    assert!(
        server.max_request_body() <= KIB as u64 + 256,
        "{}",
        server.max_request_body()
    );
}

#[tokio::test]
async fn fault_server_assembles_and_verifies_chunked_uploads() {
    let server = FaultServer::start(Vec::new()).await;
    let client = plain_client();
    let blob = Blob::random(9, 10 * KIB, ocync_core::MediaType::OciLayerGzip);

    let done = push_chunked(&client, &server.url(), &blob, 3 * KIB).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(
        done.headers()["docker-content-digest"].to_str().unwrap(),
        blob.digest().to_string()
    );
    assert_eq!(server.stored_blob(blob.digest()), Some(blob.bytes.clone()));
    assert_eq!(server.count("PATCH", "/blobs/uploads/"), 4);
    assert_eq!(server.max_request_body(), 3 * KIB as u64);
    let head = client
        .head(format!(
            "{}/v2/{REPO}/blobs/{}",
            server.url(),
            blob.digest()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[CONTENT_LENGTH], (10 * KIB).to_string());

    // A chunk that does not start where the upload ends: 416 with the current range.
    let location = start_upload(&client, &server.url()).await;
    let gap = client
        .patch(&location)
        .header("content-range", "100-199")
        .body(vec![0; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(gap.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(gap.headers()["range"], "0-0");
    // Wrong bytes for the digest: 400 DIGEST_INVALID and nothing stored.
    let other = Blob::random(10, KIB, ocync_core::MediaType::OciLayerGzip);
    let wrong = client
        .put(&location)
        .query(&[("digest", other.digest().to_string())])
        .body(blob.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(wrong).await, "DIGEST_INVALID");
    assert_eq!(server.stored_blob(other.digest()), None);

    // An abandoned session is deleted.
    let location = start_upload(&client, &server.url()).await;
    let deleted = client.delete(&location).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = client.delete(&location).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let id = location.rsplit('/').next().unwrap();
    assert_eq!(server.deleted_sessions(), [id]);
    assert!(
        server.open_sessions().is_empty(),
        "{:?}",
        server.open_sessions()
    );
}
