//! CPU-bound hot paths of the public API: reference parsing, streaming digest verification
//! and manifest parsing with raw-bytes round trip. Names are stable so results compare
//! across commits (`cargo bench -p ocync-benches`).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ocync_core::{Digest, Manifest, Reference};

fn references(c: &mut Criterion) {
    let inputs = [
        "nginx",
        "ghcr.io/owner/app:v1.2.3",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service/api:2026.11.23-abcdef0",
        "localhost:5000/a/b@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    ];
    c.bench_function("reference/parse", |b| {
        b.iter(|| {
            for input in inputs {
                black_box(black_box(input).parse::<Reference>().unwrap());
            }
        })
    });
}

fn digests(c: &mut Criterion) {
    let mut group = c.benchmark_group("digest/verify");
    for (name, size) in [("1MiB", 1usize << 20), ("64MiB", 64usize << 20)] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256(&data);
        group.throughput(Throughput::Bytes(size as u64));
        if size > 8 << 20 {
            group.sample_size(10);
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                // 64 KiB chunks, as bytes arrive from the network.
                let mut v = digest.verifier();
                for chunk in data.chunks(64 * 1024) {
                    v.update(black_box(chunk));
                }
                v.finish().unwrap();
            })
        });
    }
    group.finish();
}

fn manifests(c: &mut Criterion) {
    let children: Vec<String> = (0..16)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"arch{i}","os":"linux"}},"annotations":{{"k":"v{i}"}}}}"#,
                Digest::sha256(format!("child{i}").as_bytes()),
                1000 + i
            )
        })
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        children.join(",")
    );
    let bytes = Bytes::from(index);
    c.bench_function("manifest/parse_index_16", |b| {
        b.iter(|| {
            let m = Manifest::from_bytes(black_box(bytes.clone()), None).unwrap();
            assert_eq!(m.bytes().len(), bytes.len());
            black_box(m);
        })
    });
}

criterion_group!(benches, references, digests, manifests);
criterion_main!(benches);
