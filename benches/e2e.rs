//! End-to-end sync benchmark: the `ocync` binary against two real registries (Debian
//! `docker-registry`, distribution 2.8) on this machine, each behind an in-process latency
//! proxy, on a deterministic corpus of multi-arch images with shared base layers, `latest`
//! aliases and OCI 1.1 referrers (signatures, an SBOM, a cosign `.sig` tag).
//!
//! It runs `ocync sync --config <file> --json` three times — cold (empty target), warm
//! (nothing changed) and partial (one new version pushed to one repository, its `latest`
//! moved, the new image signed) — and for each run reports wall time, the child's peak RSS,
//! the requests each registry logged, the blob bytes the target received (from its access log,
//! and from the JSON report when they differ), the unique blob bytes the target lacked before
//! the run (what an ideal tool uploads), how many source tags reached the target with the same
//! digest, and the exit code. The table goes to stdout, progress to stderr.
//!
//! ```text
//! cargo build --release -p ocync-cli -p ocync-benches
//! cargo run --release -p ocync-benches --bin e2e -- [--corpus small|standard] [--latency-ms 10]
//!     [--ocync target/release/ocync] [--mode sync|copy] [--tls] [--keep]
//! ```
//!
//! `--mode copy` drives `ocync copy` once per source tag instead (referrers-index tags are left
//! to the copy of their subject), for builds whose `sync` command does not work yet. The
//! corpus goes into the source through its proxy-free address, so only ocync's traffic pays
//! the latency. Everything listens on 127.0.0.1; `--keep` keeps the work directory (config,
//! each run's stdout and stderr, both registries' logs and storage, hard-linked) and prints its
//! path. Exits 1 when a run exited non-zero or left a tag missing or different at the target.

#![allow(clippy::print_stdout, reason = "the benchmark's table is its output")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use ocync_core::{Annotations, Descriptor, Digest, ImageIndex, ImageManifest, Manifest, MediaType};
use ocync_transport::testing::{Blob, ImageFixture, LargeImage, TestRegistry, registries_for};
use ocync_transport::{BlobStream, Client, Mount};

const MIB: u64 = 1024 * 1024;
const ARCHES: [&str; 2] = ["linux/amd64", "linux/arm64"];
const SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM_TYPE: &str = "application/spdx+json";
const COSIGN_PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Blob uploads in flight while the corpus is generated.
const GENERATE_CONCURRENCY: usize = 4;
/// How often the child's peak RSS is sampled.
const RSS_SAMPLE: Duration = Duration::from_millis(10);
/// Tag mismatches listed per run under the table (stderr has them all).
const MISMATCHES_SHOWN: usize = 8;

/// Measure ocync end to end against real registries behind latency proxies.
#[derive(Debug, Parser)]
#[command(name = "e2e")]
struct Args {
    /// Corpus to generate.
    #[arg(long, value_enum, default_value_t = CorpusSize::Small)]
    corpus: CorpusSize,
    /// One-way delay each proxy adds to every chunk, in each direction.
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// The ocync binary (default: target/release/ocync).
    #[arg(long)]
    ocync: Option<PathBuf>,
    /// `sync`: one `ocync sync` per run; `copy`: one `ocync copy` per source tag.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// Serve both registries over HTTPS (a throwaway CA each, passed in SSL_CERT_FILE).
    #[arg(long)]
    tls: bool,
    /// Keep the work directory (config, run output, registry logs and storage).
    #[arg(long)]
    keep: bool,
    /// Kill a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CorpusSize {
    /// 4 repositories, 3 versions each, about 150 MB of unique blobs.
    Small,
    /// 12 repositories, 4 versions each, about 1.5 GB of unique blobs.
    Standard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `ocync sync --config <file> --json`.
    Sync,
    /// `ocync copy --json <src>/<repo>:<tag> <dst>/<repo>:<tag>` per tag.
    Copy,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Returning (rather than exiting) on Ctrl-C drops the registries, which kills them.
    let result = runtime.block_on(async {
        tokio::select! {
            result = try_main(args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether every run exited 0 and left every tag correct.
async fn try_main(args: Args) -> anyhow::Result<bool> {
    let ocync = find_ocync(args.ocync.as_deref())?;
    let spec = Spec::of(args.corpus);
    let delay = Duration::from_millis(args.latency_ms);
    ocync_transport::testing::install_crypto_provider();

    let work = tempfile::Builder::new()
        .prefix("ocync-e2e-")
        .tempdir()
        .context("create the work directory")?;
    let state_dir = work.path().join("state");
    fs::create_dir_all(&state_dir)?;

    eprintln!(
        "e2e: starting two registries ({}) and latency proxies ({} ms each way)",
        if args.tls { "https" } else { "http" },
        args.latency_ms
    );
    let (src, dst) = if args.tls {
        tokio::join!(TestRegistry::tls(), TestRegistry::tls())
    } else {
        tokio::join!(TestRegistry::plain(), TestRegistry::plain())
    };
    let src_proxy = Proxy::start(src.addr(), delay).await?;
    let dst_proxy = Proxy::start(dst.addr(), delay).await?;
    let ca_file = if args.tls {
        let pem = [&src, &dst]
            .iter()
            .filter_map(|r| r.ca_pem())
            .collect::<Vec<_>>()
            .join("\n");
        let path = work.path().join("ca.pem");
        fs::write(&path, pem)?;
        Some(path)
    } else {
        None
    };
    let scheme = if args.tls { "https" } else { "http" };
    let sides = Sides {
        src: &src,
        dst: &dst,
        src_proxy: &src_proxy,
        dst_proxy: &dst_proxy,
    };

    let registries = registries_for(&[&src, &dst]);
    let src_client = registries.client(&src.host())?;
    let dst_client = registries.client(&dst.host())?;

    eprintln!(
        "e2e: generating the {} corpus into {} (direct, no proxy)",
        spec.name,
        src.host()
    );
    let started = Instant::now();
    let mut corpus = Corpus::new(spec);
    corpus.generate(&src_client).await?;
    let generated = started.elapsed();
    eprintln!(
        "e2e: corpus ready in {:.1}s: {} tags, {} blobs, {:.1} MB unique",
        generated.as_secs_f64(),
        corpus.tag_count(),
        corpus.blobs.len(),
        mb(corpus.unique_bytes())
    );

    let config = work.path().join("ocync.yaml");
    fs::write(
        &config,
        config_yaml(
            scheme,
            src_proxy.addr,
            dst_proxy.addr,
            &corpus.repos,
            &state_dir,
        ),
    )?;
    let runner = Runner {
        ocync: &ocync,
        mode: args.mode,
        config: &config,
        ca_file: ca_file.as_deref(),
        runs_dir: work.path().join("runs"),
        timeout: Duration::from_secs(args.timeout_s),
    };

    let mut results = Vec::new();
    for phase in ["cold", "warm", "partial"] {
        if phase == "partial" {
            let tag = corpus.push_update(&src_client).await?;
            eprintln!("e2e: pushed {}:{tag} and moved latest", corpus.repos[0]);
        }
        let result = runner
            .run(phase, &sides, &corpus, &src_client, &dst_client)
            .await?;
        eprintln!(
            "e2e: {phase}: {:.2}s, exit {}, {} / {} tags ok, {} + {} requests",
            result.wall.as_secs_f64(),
            result.exit_label(),
            result.tags_ok,
            result.tags_total,
            result.src.requests,
            result.dst.requests
        );
        results.push(result);
    }

    print!(
        "{}",
        report(&args, &ocync, &corpus, generated, &results, work.path())
    );

    let all_good = results
        .iter()
        .all(|r| r.exit == Some(0) && r.tags_ok == r.tags_total);
    if args.keep {
        for (name, registry) in [("src", &src), ("dst", &dst)] {
            let into = work.path().join(format!("registry-{name}"));
            if let Err(e) = preserve(registry.dir(), &into) {
                eprintln!("e2e: could not keep {name} registry files: {e}");
            }
        }
        let kept = work.keep();
        eprintln!("e2e: kept {}", kept.display());
    }
    Ok(all_good)
}

/// The ocync binary: `--ocync`, else `target/release/ocync` from the current directory or
/// from the workspace root.
fn find_ocync(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(path) => vec![path.to_owned()],
        None => vec![
            PathBuf::from("target/release/ocync"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/ocync"),
        ],
    };
    for candidate in &candidates {
        if candidate.is_file() {
            return candidate
                .canonicalize()
                .with_context(|| format!("cannot resolve '{}'", candidate.display()));
        }
    }
    bail!(
        "ocync binary not found at '{}': build it with `cargo build --release -p ocync-cli` or pass --ocync",
        candidates[0].display()
    )
}

/// The original ocync's YAML format: both registries through their proxies, anonymous, every
/// tag of every corpus repository to the same name.
fn config_yaml(
    scheme: &str,
    src: SocketAddr,
    dst: SocketAddr,
    repos: &[String],
    state_dir: &Path,
) -> String {
    // Without TLS the scheme is spelled out; with TLS it is left to the default (https), as the
    // original's configurations do.
    let url = |addr: SocketAddr| {
        if scheme == "http" {
            format!("http://{addr}")
        } else {
            addr.to_string()
        }
    };
    let mut yaml = format!(
        "registries:\n  src:\n    url: {}\n    auth_type: anonymous\n  dst:\n    url: {}\n    auth_type: anonymous\n\
         defaults:\n  source: src\n  targets: dst\n  tags:\n    glob: \"*\"\n\
         global:\n  cache_dir: {}\n\
         mappings:\n",
        url(src),
        url(dst),
        state_dir.display()
    );
    for repo in repos {
        let _ = writeln!(yaml, "  - from: {repo}\n    to: {repo}");
    }
    yaml
}

// ---------------------------------------------------------------------------------------------
// Latency proxy

/// A TCP proxy in front of one registry that delays every chunk by `delay` in each direction.
/// It is a delay line: chunks are stamped when read and written when their time comes, while
/// later chunks are already being read, so throughput is not limited by the delay.
struct Proxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyStats {
    connections: AtomicU64,
    bytes: AtomicU64,
}

/// Chunks buffered per direction before the reader waits (backpressure).
const DELAY_LINE_CHUNKS: usize = 512;
const READ_CHUNK: usize = 64 * 1024;

impl Proxy {
    async fn start(upstream: SocketAddr, delay: Duration) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind a proxy port")?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let counters = stats.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let counters = counters.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        delay_line(client_read, server_write, delay, &counters),
                        delay_line(server_read, client_write, delay, &counters),
                    );
                });
            }
        });
        Ok(Proxy {
            addr,
            stats,
            accept,
        })
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.stats.connections.load(Ordering::Relaxed),
            self.stats.bytes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copy `from` to `to`, each chunk written `delay` after it was read; EOF is delayed too.
async fn delay_line(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    stats: &ProxyStats,
) {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<(tokio::time::Instant, Option<Bytes>)>(DELAY_LINE_CHUNKS);
    let reader = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(READ_CHUNK);
            let chunk = match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(buf.split().freeze()),
            };
            let done = chunk.is_none();
            let due = tokio::time::Instant::now() + delay;
            if tx.send((due, chunk)).await.is_err() || done {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match chunk {
                Some(chunk) => {
                    if to.write_all(&chunk).await.is_err() {
                        break;
                    }
                    stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                None => {
                    let _ = to.shutdown().await;
                    break;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// The shape of a corpus. Every image has three layers: an OS base shared by half of the
/// repositories (per architecture), a runtime layer shared by every version of one
/// repository, and an application layer of its own. Sizes get a deterministic jitter of up to
/// 1/16 so no two layers are the same size.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    repos: usize,
    versions: usize,
    base: u64,
    runtime: u64,
    app: u64,
}

impl Spec {
    fn of(size: CorpusSize) -> Spec {
        match size {
            CorpusSize::Small => Spec {
                name: "small",
                repos: 4,
                versions: 3,
                base: 8 * MIB,
                runtime: 5 * MIB,
                app: 3 * MIB,
            },
            CorpusSize::Standard => Spec {
                name: "standard",
                repos: 12,
                versions: 4,
                base: 40 * MIB,
                runtime: 22 * MIB,
                app: 8 * MIB,
            },
        }
    }
}

/// Where a blob's bytes come from when it is pushed.
#[derive(Clone)]
enum Source {
    /// Small blobs (configs, artifact payloads), held in memory.
    Memory(Bytes),
    /// A generated layer, streamed in 1 MiB chunks and never held whole.
    Generated(LargeImage),
}

/// What was pushed to the source, for the verification and the summary.
struct Corpus {
    spec: Spec,
    repos: Vec<String>,
    /// Every blob in the source, once: digest → size.
    blobs: BTreeMap<Digest, u64>,
    /// The repository a blob was first pushed to (to mount it elsewhere).
    placed: HashMap<Digest, String>,
    /// (repository, digest) pairs already present.
    present: HashSet<(String, Digest)>,
    /// Layer descriptors by label, so shared layers are hashed once.
    layers: HashMap<String, (LargeImage, Descriptor)>,
    /// Referrers pushed per (repository, subject), for the referrers-tag-schema indexes.
    referrers: HashMap<(String, Digest), Vec<Descriptor>>,
    /// Tags per repository.
    tags: BTreeMap<String, Vec<String>>,
    images: usize,
    signatures: usize,
    sboms: usize,
    cosign: usize,
}

/// A stable 64-bit seed from a label (FNV-1a).
fn seed_of(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn version(k: usize) -> String {
    format!("1.{k}.0")
}

impl Corpus {
    fn new(spec: Spec) -> Corpus {
        Corpus {
            spec,
            repos: (1..=spec.repos)
                .map(|i| format!("bench/app-{i:02}"))
                .collect(),
            blobs: BTreeMap::new(),
            placed: HashMap::new(),
            present: HashSet::new(),
            layers: HashMap::new(),
            referrers: HashMap::new(),
            tags: BTreeMap::new(),
            images: 0,
            signatures: 0,
            sboms: 0,
            cosign: 0,
        }
    }

    fn unique_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }

    fn tag_count(&self) -> usize {
        self.tags.values().map(Vec::len).sum()
    }

    async fn generate(&mut self, client: &Client) -> anyhow::Result<()> {
        for r in 0..self.repos.len() {
            let repo = self.repos[r].clone();
            let mut newest = None;
            for k in 0..self.spec.versions {
                newest = Some(self.push_version(client, r, k).await?);
            }
            let (index, children) = newest.context("at least one version")?;
            self.tag(client, &repo, "latest", &index.manifest).await?;
            // Signatures on every other repository's newest image, an SBOM on the second
            // repository's amd64 image, a cosign `.sig` tag on the fourth's.
            if r.is_multiple_of(2) {
                self.sign(client, &repo, &index).await?;
            }
            if r == 1 {
                self.sbom(client, &repo, &children[0]).await?;
            }
            if r % 4 == 3 {
                self.cosign_signature(client, &repo, &index).await?;
            }
        }
        Ok(())
    }

    /// The partial run's change: a new version of the first repository, `latest` moved to it,
    /// and a signature on it. Returns the new tag.
    async fn push_update(&mut self, client: &Client) -> anyhow::Result<String> {
        let repo = self.repos[0].clone();
        let k = self.spec.versions;
        let (index, _) = self.push_version(client, 0, k).await?;
        self.tag(client, &repo, "latest", &index.manifest).await?;
        self.sign(client, &repo, &index).await?;
        Ok(version(k))
    }

    /// A layer, by label, with its size jittered deterministically.
    fn layer(&mut self, label: String, size: u64) -> (LargeImage, Descriptor) {
        self.layers
            .entry(label)
            .or_insert_with_key(|label| {
                let seed = seed_of(label);
                let size = size + seed % (size / 16).max(1);
                let image = LargeImage::new(seed, "linux/amd64", &[size]);
                let descriptor = image.layer_descriptor(0);
                (image, descriptor)
            })
            .clone()
    }

    /// Version `k` of repository `r`: one image per architecture and their index, tagged.
    async fn push_version(
        &mut self,
        client: &Client,
        r: usize,
        k: usize,
    ) -> anyhow::Result<(ImageFixture, Vec<ImageFixture>)> {
        let repo = self.repos[r].clone();
        let tag = version(k);
        let mut children = Vec::new();
        let mut uploads = Vec::new();
        for arch in ARCHES {
            let layers = [
                self.layer(format!("base/{}/{arch}", r % 2), self.spec.base),
                self.layer(format!("runtime/{repo}/{arch}"), self.spec.runtime),
                self.layer(format!("app/{repo}/{tag}/{arch}"), self.spec.app),
            ];
            // The fixture needs only the layers' descriptors; their bytes are streamed from
            // the generator when pushed.
            let blobs = layers
                .iter()
                .map(|(_, d)| Blob {
                    bytes: Bytes::new(),
                    descriptor: d.clone(),
                })
                .collect();
            let image =
                ImageFixture::from_layers(seed_of(&format!("{repo}:{tag}/{arch}")), arch, blobs);
            let config = image.config().context("an image has a config")?;
            uploads.push((
                config.descriptor.clone(),
                Source::Memory(config.bytes.clone()),
            ));
            for (generator, descriptor) in layers {
                uploads.push((descriptor, Source::Generated(generator)));
            }
            children.push(image);
        }
        self.push_blobs(client, &repo, uploads).await?;
        for child in &children {
            client
                .push_manifest(&repo, &child.digest().to_string(), &child.manifest)
                .await?;
        }
        let refs: Vec<&ImageFixture> = children.iter().collect();
        let index = ImageFixture::index(&refs);
        self.tag(client, &repo, &tag, &index.manifest).await?;
        self.images += 1;
        Ok((index, children))
    }

    async fn tag(
        &mut self,
        client: &Client,
        repo: &str,
        tag: &str,
        manifest: &Manifest,
    ) -> anyhow::Result<()> {
        client.push_manifest(repo, tag, manifest).await?;
        let tags = self.tags.entry(repo.to_owned()).or_default();
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
        Ok(())
    }

    /// Push each blob the repository lacks: mounted from the repository that has it, else
    /// uploaded, a few at a time (never the same digest twice at once).
    async fn push_blobs(
        &mut self,
        client: &Client,
        repo: &str,
        blobs: Vec<(Descriptor, Source)>,
    ) -> anyhow::Result<()> {
        let mut jobs = Vec::new();
        let mut queued = HashSet::new();
        for (descriptor, source) in blobs {
            let key = (repo.to_owned(), descriptor.digest.clone());
            if self.present.contains(&key) || !queued.insert(descriptor.digest.clone()) {
                continue;
            }
            let from = self.placed.get(&descriptor.digest).cloned();
            jobs.push((descriptor, source, from));
        }
        let results: Vec<anyhow::Result<Descriptor>> = futures::stream::iter(jobs)
            .map(|(descriptor, source, from)| async move {
                let session = match &from {
                    Some(from) => match client.mount_blob(repo, &descriptor.digest, from).await? {
                        Mount::Mounted => return Ok(descriptor),
                        Mount::Session(session) => Some(session),
                        _ => None,
                    },
                    None => None,
                };
                let stream = match source {
                    Source::Memory(bytes) => BlobStream::from_bytes(bytes),
                    Source::Generated(image) => BlobStream::new(futures::stream::iter(
                        image.layer_chunks(0, MIB as usize).map(Ok),
                    )),
                };
                client
                    .push_blob(repo, &descriptor, stream, session)
                    .await
                    .with_context(|| format!("push {} to {repo}", descriptor.digest))?;
                Ok(descriptor)
            })
            .buffer_unordered(GENERATE_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            let descriptor = result?;
            self.blobs
                .insert(descriptor.digest.clone(), descriptor.size);
            self.placed
                .entry(descriptor.digest.clone())
                .or_insert_with(|| repo.to_owned());
            self.present.insert((repo.to_owned(), descriptor.digest));
        }
        Ok(())
    }

    /// Push an OCI 1.1 artifact about `subject` and rewrite the subject's referrers index
    /// under the referrers tag schema (`sha256-<hex>`): distribution 2.8 has no referrers API.
    async fn push_referrer(
        &mut self,
        client: &Client,
        repo: &str,
        subject: &Descriptor,
        artifact: &ImageFixture,
    ) -> anyhow::Result<()> {
        let blobs = artifact
            .blobs
            .iter()
            .map(|b| (b.descriptor.clone(), Source::Memory(b.bytes.clone())))
            .collect();
        self.push_blobs(client, repo, blobs).await?;
        client
            .push_manifest(repo, &artifact.digest().to_string(), &artifact.manifest)
            .await?;
        let list = self
            .referrers
            .entry((repo.to_owned(), subject.digest.clone()))
            .or_default();
        list.push(artifact.manifest.referrer_descriptor());
        let index = ImageIndex::new(list.clone()).to_manifest();
        self.tag(client, repo, &subject.digest.referrers_tag(), &index)
            .await
    }

    async fn sign(
        &mut self,
        client: &Client,
        repo: &str,
        image: &ImageFixture,
    ) -> anyhow::Result<()> {
        let subject = image.manifest.descriptor();
        let payload = format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{repo}\"}},\"image\":{{\"docker-manifest-digest\":\"{}\"}},\"type\":\"cosign container image signature\"}}}}",
            subject.digest
        );
        let artifact = ImageFixture::artifact(&subject, SIGNATURE_TYPE, payload);
        self.push_referrer(client, repo, &subject, &artifact)
            .await?;
        self.signatures += 1;
        Ok(())
    }

    async fn sbom(
        &mut self,
        client: &Client,
        repo: &str,
        image: &ImageFixture,
    ) -> anyhow::Result<()> {
        let subject = image.manifest.descriptor();
        let mut sbom = format!(
            "{{\"spdxVersion\":\"SPDX-2.3\",\"name\":\"{repo}@{}\",\"packages\":[",
            subject.digest
        );
        for i in 0..800 {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                sbom,
                "{sep}{{\"name\":\"pkg-{i}\",\"versionInfo\":\"{}.{}.{}\",\"SPDXID\":\"SPDXRef-{:016x}\"}}",
                i % 7,
                i % 13,
                i % 29,
                seed_of(&format!("{repo}/{i}"))
            );
        }
        sbom.push_str("]}");
        let artifact = ImageFixture::artifact(&subject, SBOM_TYPE, sbom);
        self.push_referrer(client, repo, &subject, &artifact)
            .await?;
        self.sboms += 1;
        Ok(())
    }

    /// A cosign-style signature stored under the `sha256-<hex>.sig` tag (cosign's scheme before
    /// OCI 1.1): an ordinary image, copied as an ordinary tag.
    async fn cosign_signature(
        &mut self,
        client: &Client,
        repo: &str,
        image: &ImageFixture,
    ) -> anyhow::Result<()> {
        let digest = image.digest();
        let payload = Blob::new(
            MediaType::from(COSIGN_PAYLOAD_TYPE),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{repo}\"}},\"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            ),
        );
        let config = Blob::new(
            MediaType::OciConfig,
            format!(
                "{{\"architecture\":\"\",\"os\":\"\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}",
                payload.digest()
            ),
        );
        let mut layer = payload.descriptor.clone();
        layer.annotations = Some(Annotations::from([(
            "dev.cosignproject.cosign/signature".to_owned(),
            format!("MEUCIQ{:016x}", seed_of(&digest.to_string())),
        )]));
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config: config.descriptor.clone(),
            layers: vec![layer],
            subject: None,
            annotations: None,
        };
        let manifest = Manifest::from_bytes(Bytes::from(serde_json::to_vec(&manifest)?), None)?;
        let blobs = [&config, &payload]
            .iter()
            .map(|b| (b.descriptor.clone(), Source::Memory(b.bytes.clone())))
            .collect();
        self.push_blobs(client, repo, blobs).await?;
        let tag = format!("{}.sig", digest.referrers_tag());
        self.tag(client, repo, &tag, &manifest).await?;
        self.cosign += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

struct Sides<'a> {
    src: &'a TestRegistry,
    dst: &'a TestRegistry,
    src_proxy: &'a Proxy,
    dst_proxy: &'a Proxy,
}

struct Runner<'a> {
    ocync: &'a Path,
    mode: Mode,
    config: &'a Path,
    ca_file: Option<&'a Path>,
    runs_dir: PathBuf,
    timeout: Duration,
}

/// What one side (registry) saw during a run.
#[derive(Default)]
struct SideStats {
    requests: usize,
    by_method: BTreeMap<String, usize>,
    errors: usize,
    connections: u64,
    proxied_bytes: u64,
}

struct RunResult {
    phase: &'static str,
    wall: Duration,
    peak_rss_kib: u64,
    exit: Option<i32>,
    invocations: usize,
    src: SideStats,
    dst: SideStats,
    /// Bytes of blobs whose upload the target completed (PUT 201), from its access log.
    uploaded_log: u64,
    /// `bytes_uploaded` summed over the JSON report(s), when they parse.
    uploaded_json: Option<u64>,
    /// Corpus blob bytes the target lacked before the run.
    unique_missing: u64,
    tags_ok: usize,
    tags_total: usize,
    referrer_tags_ok: usize,
    referrer_tags_total: usize,
    mismatches: Vec<String>,
}

impl RunResult {
    fn exit_label(&self) -> String {
        match self.exit {
            Some(code) => code.to_string(),
            None => "killed".to_owned(),
        }
    }
}

struct Outcome {
    peak_rss_kib: u64,
    exit: Option<i32>,
    stderr: PathBuf,
}

impl Runner<'_> {
    async fn run(
        &self,
        phase: &'static str,
        sides: &Sides<'_>,
        corpus: &Corpus,
        src_client: &Client,
        dst_client: &Client,
    ) -> anyhow::Result<RunResult> {
        let dir = self.runs_dir.join(phase);
        fs::create_dir_all(&dir)?;
        let unique_missing = corpus
            .blobs
            .iter()
            .filter(|(digest, _)| !sides.dst.blob_data_path(digest).exists())
            .map(|(_, size)| size)
            .sum();
        // The copy mode's work list comes from the source, before the measured window.
        let copy_tags = match self.mode {
            Mode::Sync => Vec::new(),
            Mode::Copy => {
                let mut list = Vec::new();
                for repo in &corpus.repos {
                    for tag in src_client.tags(repo).await? {
                        if !is_referrers_index(&tag) {
                            list.push((repo.clone(), tag));
                        }
                    }
                }
                list
            }
        };

        let src_mark = sides.src.request_mark();
        let dst_mark = sides.dst.request_mark();
        let src_proxy_before = sides.src_proxy.snapshot();
        let dst_proxy_before = sides.dst_proxy.snapshot();
        let started = Instant::now();
        let mut outcomes = Vec::new();
        let mut stdouts = Vec::new();
        match self.mode {
            Mode::Sync => {
                let args = vec![
                    "sync".to_owned(),
                    "--config".to_owned(),
                    self.config.display().to_string(),
                    "--json".to_owned(),
                ];
                let stdout = dir.join("stdout.json");
                outcomes.push(
                    self.spawn(&args, &stdout, &dir.join("stderr.log"), started)
                        .await?,
                );
                stdouts.push(stdout);
            }
            Mode::Copy => {
                for (i, (repo, tag)) in copy_tags.iter().enumerate() {
                    let mut args = vec!["copy".to_owned(), "--json".to_owned()];
                    match self.ca_file {
                        Some(ca) => {
                            args.push("--ca-file".to_owned());
                            args.push(ca.display().to_string());
                        }
                        None => {
                            for proxy in [sides.src_proxy, sides.dst_proxy] {
                                args.push("--plain-http".to_owned());
                                args.push(proxy.addr.to_string());
                            }
                        }
                    }
                    args.push(format!("{}/{repo}:{tag}", sides.src_proxy.addr));
                    args.push(format!("{}/{repo}:{tag}", sides.dst_proxy.addr));
                    let stdout = dir.join(format!("copy-{i:03}.json"));
                    let stderr = dir.join(format!("copy-{i:03}.log"));
                    outcomes.push(self.spawn(&args, &stdout, &stderr, started).await?);
                    stdouts.push(stdout);
                }
            }
        }
        let wall = started.elapsed();
        let src_requests = sides.src.requests_since(src_mark);
        let dst_requests = sides.dst.requests_since(dst_mark);

        let uploaded_log = dst_requests
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.status == 201)
            .filter_map(|r| upload_digest(r.query.as_deref()?))
            .map(|digest| match corpus.blobs.get(&digest) {
                Some(size) => *size,
                None => fs::metadata(sides.dst.blob_data_path(&digest)).map_or(0, |m| m.len()),
            })
            .sum();
        let uploaded_json = stdouts
            .iter()
            .map(|path| json_bytes_uploaded(&fs::read(path).unwrap_or_default()))
            .sum::<Option<u64>>();

        let (tags_ok, tags_total, referrer_tags_ok, referrer_tags_total, mismatches) =
            verify(corpus, src_client, dst_client).await?;
        let exit = outcomes
            .iter()
            .map(|o| o.exit)
            .find(|e| *e != Some(0))
            .unwrap_or(Some(0));
        for mismatch in &mismatches {
            eprintln!("e2e: {phase}: {mismatch}");
        }
        if let Some(failed) = outcomes.iter().position(|o| o.exit != Some(0)) {
            eprintln!(
                "e2e: {phase}: ocync exited {:?}; the end of its stderr ({}):\n{}",
                outcomes[failed].exit,
                outcomes[failed].stderr.display(),
                tail(&outcomes[failed].stderr, 15)
            );
        }
        Ok(RunResult {
            phase,
            wall,
            peak_rss_kib: outcomes.iter().map(|o| o.peak_rss_kib).max().unwrap_or(0),
            exit,
            invocations: outcomes.len(),
            src: side_stats(&src_requests, sides.src_proxy, src_proxy_before),
            dst: side_stats(&dst_requests, sides.dst_proxy, dst_proxy_before),
            uploaded_log,
            uploaded_json,
            unique_missing,
            tags_ok,
            tags_total,
            referrer_tags_ok,
            referrer_tags_total,
            mismatches,
        })
    }

    /// Run ocync once, stdout and stderr to files, sampling its peak RSS (VmHWM) every 10 ms.
    async fn spawn(
        &self,
        args: &[String],
        stdout: &Path,
        stderr: &Path,
        started: Instant,
    ) -> anyhow::Result<Outcome> {
        let mut command = tokio::process::Command::new(self.ocync);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(stdout)?)
            .stderr(fs::File::create(stderr)?)
            .kill_on_drop(true);
        // As the shared harness does: no proxy from the environment, and the test CA trusted.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().to_ascii_lowercase().contains("proxy") {
                command.env_remove(key);
            }
        }
        command.env("NO_PROXY", "127.0.0.1,localhost");
        if let Some(ca) = self.ca_file {
            command.env("SSL_CERT_FILE", ca);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run '{}'", self.ocync.display()))?;
        let status_path = child.id().map(|pid| format!("/proc/{pid}/status"));
        let mut peak = 0;
        loop {
            if let Some(path) = &status_path {
                peak = peak.max(vm_hwm_kib(path).unwrap_or(0));
            }
            if let Some(status) = child.try_wait()? {
                return Ok(Outcome {
                    peak_rss_kib: peak,
                    exit: status.code(),
                    stderr: stderr.to_owned(),
                });
            }
            if started.elapsed() > self.timeout {
                eprintln!(
                    "e2e: {} {} timed out after {}s, killing it",
                    self.ocync.display(),
                    args.join(" "),
                    self.timeout.as_secs()
                );
                child.kill().await?;
                return Ok(Outcome {
                    peak_rss_kib: peak,
                    exit: None,
                    stderr: stderr.to_owned(),
                });
            }
            tokio::time::sleep(RSS_SAMPLE).await;
        }
    }
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn vm_hwm_kib(status_path: &str) -> Option<u64> {
    let status = fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `sha256-<64 hex>`: a referrers-tag-schema index, copied with its subject's referrers.
fn is_referrers_index(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `digest` query parameter of a completed upload (`digest=sha256%3A…`).
fn upload_digest(query: &str) -> Option<Digest> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("digest="))?;
    value.replace("%3A", ":").replace("%3a", ":").parse().ok()
}

/// `bytes_uploaded` of a JSON report: summed over `images` for `sync`, the top-level field for
/// `copy`. `None` when the output is not such a report.
fn json_bytes_uploaded(stdout: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    if let Some(images) = value.get("images").and_then(|i| i.as_array()) {
        return images
            .iter()
            .map(|i| i.get("bytes_uploaded").and_then(serde_json::Value::as_u64))
            .sum();
    }
    value.get("bytes_uploaded")?.as_u64()
}

fn side_stats(
    requests: &[ocync_transport::testing::RequestLine],
    proxy: &Proxy,
    before: (u64, u64),
) -> SideStats {
    let mut stats = SideStats {
        requests: requests.len(),
        ..SideStats::default()
    };
    for r in requests {
        *stats.by_method.entry(r.method.clone()).or_default() += 1;
        if r.status >= 400 {
            stats.errors += 1;
        }
    }
    let (connections, bytes) = proxy.snapshot();
    stats.connections = connections - before.0;
    stats.proxied_bytes = bytes - before.1;
    stats
}

type Verification = (usize, usize, usize, usize, Vec<String>);

/// HEAD every source tag at both sides (direct addresses, after the measured window).
async fn verify(corpus: &Corpus, src: &Client, dst: &Client) -> anyhow::Result<Verification> {
    let (mut ok, mut total, mut ref_ok, mut ref_total) = (0, 0, 0, 0);
    let mut mismatches = Vec::new();
    for repo in &corpus.repos {
        for tag in src.tags(repo).await? {
            let referrer = tag.starts_with("sha256-");
            total += 1;
            ref_total += usize::from(referrer);
            let want = src
                .manifest_head(repo, &tag)
                .await?
                .with_context(|| format!("{repo}:{tag} listed but missing at the source"))?;
            let got = match dst.manifest_head(repo, &tag).await {
                Ok(got) => got,
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    mismatches.push(format!("{repo}:{tag}: target error: {e}"));
                    continue;
                }
            };
            match got {
                Some(got) if got.digest == want.digest => {
                    ok += 1;
                    ref_ok += usize::from(referrer);
                }
                Some(got) => mismatches.push(format!(
                    "{repo}:{tag}: target has {}, source {}",
                    got.digest, want.digest
                )),
                None => mismatches.push(format!("{repo}:{tag}: missing at the target")),
            }
        }
    }
    Ok((ok, total, ref_ok, ref_total, mismatches))
}

// ---------------------------------------------------------------------------------------------
// Output

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn report(
    args: &Args,
    ocync: &Path,
    corpus: &Corpus,
    generated: Duration,
    results: &[RunResult],
    work: &Path,
) -> String {
    let mut out = String::new();
    let mode = match args.mode {
        Mode::Sync => "ocync sync --config <file> --json",
        Mode::Copy => "ocync copy --json, once per tag",
    };
    let _ = writeln!(
        out,
        "## ocync e2e: {} corpus, {} ms one-way latency, {}, {}\n",
        corpus.spec.name,
        args.latency_ms,
        if args.tls { "https" } else { "http" },
        mode
    );
    let _ = writeln!(out, "binary: `{}`\n", ocync.display());
    let _ = writeln!(
        out,
        "| run | wall s | peak RSS MB | src requests | dst requests | MB uploaded | unique MB | tags ok/total | exit |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let uploaded = match r.uploaded_json {
            Some(json) if json != r.uploaded_log => {
                format!("{:.1} (json {:.1})", mb(r.uploaded_log), mb(json))
            }
            _ => format!("{:.1}", mb(r.uploaded_log)),
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.1} | {} | {} | {} | {:.1} | {}/{} | {} |",
            r.phase,
            r.wall.as_secs_f64(),
            r.peak_rss_kib as f64 / 1024.0,
            r.src.requests,
            r.dst.requests,
            uploaded,
            mb(r.unique_missing),
            r.tags_ok,
            r.tags_total,
            r.exit_label()
        );
    }
    let _ = writeln!(
        out,
        "\nMB uploaded: blob uploads the target completed (PUT 201 in its access log; the JSON \
         report's `bytes_uploaded` in brackets when it differs). unique MB: corpus blob bytes the \
         target lacked before the run, what an ideal tool uploads. Tags include referrer tags.\n"
    );

    let _ = writeln!(
        out,
        "| run | side | requests by method | 4xx/5xx | connections | MB through proxy |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for r in results {
        for (side, s) in [("src", &r.src), ("dst", &r.dst)] {
            let methods: Vec<String> = s
                .by_method
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {side} | {} | {} | {} | {:.1} |",
                r.phase,
                methods.join(", "),
                s.errors,
                s.connections,
                mb(s.proxied_bytes)
            );
        }
    }

    let image_tags: usize = corpus
        .tags
        .values()
        .flatten()
        .filter(|t| !t.starts_with("sha256-"))
        .count();
    let _ = writeln!(
        out,
        "\ncorpus `{}` (after the partial update): {} repositories, {} tags ({} image tags \
         including {} `latest`, {} referrer tags), {} multi-arch images ({}), {} blobs, {:.1} MB \
         unique; referrers: signatures {}, SBOMs {}, cosign `.sig` tags {}; generated in {:.1}s",
        corpus.spec.name,
        corpus.repos.len(),
        corpus.tag_count(),
        image_tags,
        corpus.repos.len(),
        corpus.tag_count() - image_tags,
        corpus.images,
        ARCHES.join(" + "),
        corpus.blobs.len(),
        mb(corpus.unique_bytes()),
        corpus.signatures,
        corpus.sboms,
        corpus.cosign,
        generated.as_secs_f64()
    );
    for r in results {
        if r.referrer_tags_total > 0 {
            let _ = write!(
                out,
                "{}{}: referrer tags {}/{}",
                if r.phase == "cold" { "" } else { "; " },
                r.phase,
                r.referrer_tags_ok,
                r.referrer_tags_total
            );
        }
        if r.invocations > 1 {
            let _ = write!(out, " ({} ocync invocations)", r.invocations);
        }
    }
    out.push('\n');
    for r in results {
        for m in r.mismatches.iter().take(MISMATCHES_SHOWN) {
            let _ = writeln!(out, "- {}: {m}", r.phase);
        }
        if r.mismatches.len() > MISMATCHES_SHOWN {
            let _ = writeln!(
                out,
                "- {}: … and {} more (all on stderr)",
                r.phase,
                r.mismatches.len() - MISMATCHES_SHOWN
            );
        }
    }
    if args.keep {
        let _ = writeln!(out, "\nwork directory: `{}`", work.display());
    }
    out
}

/// Keep a registry's files after it is gone: its log and config copied, its storage
/// hard-linked (cheap, and the temporary directory's removal only unlinks the originals).
fn preserve(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            preserve(&entry.path(), &target)?;
        } else if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the proxy: a round trip takes two one-way delays, and 100 chunks
    /// written back to back arrive one delay (plus transfer) later, not 100 delays later.
    #[tokio::test]
    async fn proxy_is_a_delay_line() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = echo.accept().await.unwrap();
            let (mut r, mut w) = socket.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let delay = Duration::from_millis(50);
        let proxy = Proxy::start(echo_addr, delay).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.set_nodelay(true).unwrap();

        let started = Instant::now();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        let rtt = started.elapsed();
        assert_eq!(&buf, b"ping");
        assert!(rtt >= 2 * delay, "round trip {rtt:?}");
        assert!(rtt < 4 * delay, "round trip {rtt:?}");

        let chunk = vec![7u8; 16 * 1024];
        let (mut reader, mut writer) = client.into_split();
        let started = Instant::now();
        let send = tokio::spawn(async move {
            for _ in 0..100 {
                writer.write_all(&chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            writer
        });
        let mut received = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while received < 100 * 16 * 1024 {
            received += reader.read(&mut buf).await.unwrap();
        }
        let elapsed = started.elapsed();
        drop(send.await.unwrap());
        assert!(elapsed >= 2 * delay, "{elapsed:?}");
        assert!(
            elapsed < 20 * delay,
            "throughput capped by the delay: {elapsed:?}"
        );
        assert_eq!(proxy.snapshot().0, 1, "one connection");
    }

    #[test]
    fn parses_upload_digests_and_reports() {
        let digest = Digest::sha256(b"x");
        let query = format!(
            "_state=abc&digest={}",
            digest.to_string().replace(':', "%3A")
        );
        assert_eq!(upload_digest(&query), Some(digest));
        assert_eq!(upload_digest("_state=abc"), None);
        let sync = br#"{"images":[{"bytes_uploaded":5},{"bytes_uploaded":7}],"registries":{}}"#;
        assert_eq!(json_bytes_uploaded(sync), Some(12));
        assert_eq!(json_bytes_uploaded(br#"{"bytes_uploaded":3}"#), Some(3));
        assert_eq!(json_bytes_uploaded(b"error: no"), None);
        assert!(is_referrers_index(&format!("sha256-{}", "a".repeat(64))));
        assert!(!is_referrers_index(&format!(
            "sha256-{}.sig",
            "a".repeat(64)
        )));
    }

    #[test]
    fn config_is_the_original_format() {
        let yaml = config_yaml(
            "http",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            &["bench/app-01".to_owned()],
            Path::new("/tmp/state"),
        );
        for line in [
            "    url: http://127.0.0.1:1",
            "    url: http://127.0.0.1:2",
            "    auth_type: anonymous",
            "  source: src",
            "  targets: dst",
            "    glob: \"*\"",
            "  cache_dir: /tmp/state",
            "  - from: bench/app-01",
            "    to: bench/app-01",
        ] {
            assert!(yaml.lines().any(|l| l == line), "{line}\n{yaml}");
        }
    }
}
