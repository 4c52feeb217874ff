//! The `ocync` binary pushing a 100 MiB layer to a registry behind nginx that refuses request
//! bodies over 20 MiB (413, like Azure Container Registry): the one whole-blob PUT is refused,
//! the layer goes again in chunks under the cap, arrives byte for byte (digest checked on the
//! registry's disk), and the process's peak memory stays far below the blob. Counts come from
//! nginx's access log.

mod common;

use std::io::Read;

use common::{ocync, peak_rss_kib};
use ocync_transport::testing::{LargeImage, NginxFront, NginxOptions, TestRegistry};

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn large_blob_through_a_20_mib_body_cap_goes_in_chunks_with_flat_memory() {
    const LAYER: u64 = 100 * MIB;
    const CAP: u64 = 20 * MIB;
    assert!(
        NginxFront::available(),
        "nginx not installed: run scripts/test.sh (it installs nginx-light) or set OCYNC_TEST_NGINX_BIN"
    );
    let registry = TestRegistry::plain().await;
    let front = NginxFront::start(&registry, NginxOptions::new().max_body(CAP)).await;
    let dir = tempfile::tempdir().unwrap();
    let large = LargeImage::new(43, "linux/amd64", &[LAYER]);
    let written = large.write_layout(&dir.path().join("src"), "big").unwrap();
    let source = format!("oci:{}:big", dir.path().join("src").display());
    let target = format!("{}/big/app:big", front.host());

    let peak =
        tokio::task::spawn_blocking(move || peak_rss_kib(ocync().args(["copy", &source, &target])))
            .await
            .unwrap();

    // The registry holds the layer, byte for byte.
    let layer = &written.layers[0];
    let path = registry.blob_data_path(&layer.digest);
    let mut file = std::fs::File::open(&path).unwrap();
    let mut verifier = layer.digest.verifier();
    let mut buf = vec![0; MIB as usize];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    assert_eq!(verifier.len(), LAYER);
    verifier.finish().unwrap();

    // One refused whole-blob PUT, answered by nginx alone; then chunks under the cap.
    let lines = front.log_lines();
    let refused: Vec<_> = lines.iter().filter(|l| l.status == 413).collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    assert_eq!(refused[0].method, "PUT");
    assert_eq!(refused[0].upstream_status, None);
    assert_eq!(refused[0].content_length, Some(LAYER));
    // The layer's session is the one its completing PUT (`?digest=`) went to; the config may
    // have gone in one small chunk of its own when it was uploaded after the 413.
    let completed = lines
        .iter()
        .find(|l| {
            l.method == "PUT"
                && l.status == 201
                && l.query
                    .as_deref()
                    .is_some_and(|q| q.contains(layer.digest.encoded()))
        })
        .unwrap_or_else(|| panic!("the layer's upload completed: {lines:#?}"));
    let patches: Vec<u64> = lines
        .iter()
        .filter(|l| l.method == "PATCH" && l.path == completed.path)
        .map(|l| {
            assert_eq!(l.status, 202, "{l:?}");
            l.content_length.unwrap()
        })
        .collect();
    assert_eq!(patches.iter().sum::<u64>(), LAYER, "{patches:?}");
    assert!(patches.iter().all(|&n| n <= CAP), "{patches:?}");
    assert_eq!(
        patches.len(),
        LAYER.div_ceil(8 * MIB) as usize,
        "{patches:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.method == "PATCH")
            .all(|l| l.status == 202 && l.content_length.is_some_and(|n| n <= CAP)),
        "{lines:#?}"
    );
    let manifest = lines
        .iter()
        .filter(|l| l.method == "PUT" && l.path == "/v2/big/app/manifests/big")
        .map(|l| l.status)
        .collect::<Vec<_>>();
    assert_eq!(manifest, [201]);

    eprintln!(
        "peak RSS {peak} KiB for a {} MiB layer through a {} MiB body cap",
        LAYER / MIB,
        CAP / MIB
    );
    assert!(peak < 96 * 1024, "peak RSS {peak} KiB");
}
