//! Real OCI content for tests: blobs, image manifests, indexes and OCI 1.1 artifacts with real
//! digests, and writers for OCI image layouts (image-spec `image-layout.md`).
//!
//! Everything is deterministic: the same seed gives the same bytes and digests in every
//! process, so a failing test can be replayed. Blob bytes come from a small xorshift generator
//! (not meant to be compressible or to look like tar files; registries never look inside).
//! Only `ocync_core` types are used, so the fixtures do not depend on the code they test.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use ocync_core::{
    ANNOTATION_REF_NAME, Annotations, Descriptor, Digest, ImageIndex, ImageManifest, Manifest,
    MediaType, Platform,
};

/// Creation time written into every config and artifact: fixed, so digests are stable.
pub const CREATED: &str = "2026-01-01T00:00:00Z";

/// Annotation holding the creation time of an artifact.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// Media type of the payload layer of artifacts built by [`ImageFixture::artifact`].
pub const ARTIFACT_LAYER_MEDIA_TYPE: &str = "application/octet-stream";

/// Artifact type of the signature-like referrer in [`Fixture::multi_arch_with_referrers`].
pub const SIGNATURE_TYPE: &str = "application/vnd.example.signature";

/// Artifact type of the SBOM-like referrer in [`Fixture::multi_arch_with_referrers`].
pub const SBOM_TYPE: &str = "application/vnd.example.sbom";

/// Artifact type of the referrer of the signature in [`Fixture::multi_arch_with_referrers`].
pub const COUNTERSIGNATURE_TYPE: &str = "application/vnd.example.countersignature";

/// Chunk size used when streaming generated layers to disk.
const CHUNK: usize = 1024 * 1024;

/// Size of the blocks [`PseudoRandom`] produces.
const BLOCK: usize = 64 * 1024;

/// A deterministic byte generator built on xorshift64* (seeded through splitmix64 so that
/// nearby seeds give unrelated streams).
///
/// Generating every byte with xorshift runs at ~100 MB/s in a debug build, too slow for
/// layers of hundreds of megabytes. So the generator fills one 64 KiB pad with xorshift
/// output, and each 64 KiB block of the stream is that pad rotated by a pseudo-random offset,
/// with its first 8 bytes replaced by the word that chose the offset: every block differs and
/// the work per block is two memory copies. Splitting the output into chunks of any size yields
/// the same stream.
#[derive(Clone)]
pub struct PseudoRandom {
    state: u64,
    pad: Vec<u8>,
    block: Vec<u8>,
    pos: usize,
}

impl PseudoRandom {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> PseudoRandom {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        PseudoRandom {
            state: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z },
            pad: Vec::new(),
            block: Vec::new(),
            pos: 0,
        }
    }

    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_block(&mut self) {
        if self.pad.is_empty() {
            let mut pad = Vec::with_capacity(BLOCK);
            while pad.len() < BLOCK {
                pad.extend_from_slice(&self.next_word().to_le_bytes());
            }
            self.pad = pad;
        }
        let word = self.next_word();
        let offset = (word % BLOCK as u64) as usize;
        self.block.clear();
        self.block.extend_from_slice(&self.pad[offset..]);
        self.block.extend_from_slice(&self.pad[..offset]);
        self.block[..8].copy_from_slice(&word.to_le_bytes());
        self.pos = 0;
    }

    /// Fill `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pos == self.block.len() {
                self.next_block();
            }
            let n = (buf.len() - filled).min(self.block.len() - self.pos);
            buf[filled..filled + n].copy_from_slice(&self.block[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
    }

    /// The next `len` bytes of the stream.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill(&mut out);
        out
    }
}

impl fmt::Debug for PseudoRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudoRandom")
            .field("state", &self.state)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// The first `size` bytes of the stream for `seed`.
pub fn random_bytes(seed: u64, size: usize) -> Vec<u8> {
    PseudoRandom::new(seed).bytes(size)
}

/// Content with its descriptor (media type, sha256 digest, size).
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    /// The content.
    pub bytes: Bytes,
    /// Its descriptor.
    pub descriptor: Descriptor,
}

impl Blob {
    /// A blob holding `bytes`.
    pub fn new(media_type: MediaType, bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        let descriptor = Descriptor::new(media_type, Digest::sha256(&bytes), bytes.len() as u64);
        Blob { bytes, descriptor }
    }

    /// `size` pseudo-random bytes generated from `seed` (see [`PseudoRandom`]).
    pub fn random(seed: u64, size: usize, media_type: MediaType) -> Blob {
        Blob::new(media_type, random_bytes(seed, size))
    }

    /// The empty JSON object `{}` (`application/vnd.oci.empty.v1+json`), the config of
    /// artifacts (image-spec `manifest.md`, "Guidance for an Empty Descriptor").
    pub fn empty_config() -> Blob {
        Blob::new(MediaType::OciEmpty, Bytes::from_static(b"{}"))
    }

    /// The digest.
    pub fn digest(&self) -> &Digest {
        &self.descriptor.digest
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.descriptor.size
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.descriptor.media_type)
            .field("digest", &self.descriptor.digest)
            .field("size", &self.descriptor.size)
            .finish()
    }
}

/// A manifest (raw bytes, digest, parsed view) with the blobs it references directly: config
/// then layers for an image or artifact, none for an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFixture {
    /// The manifest; [`Manifest::bytes`] are the exact bytes to push.
    pub manifest: Manifest,
    /// The config blob followed by the layers (empty for an index).
    pub blobs: Vec<Blob>,
    /// The platform, for an image meant to be an index child.
    pub platform: Option<Platform>,
}

impl ImageFixture {
    /// An OCI image for `platform` (`"linux/amd64"`, `"linux/arm/v7"`, …) with one random
    /// layer per entry of `layer_sizes`, and a small OCI config naming the platform.
    pub fn image(seed: u64, platform: &str, layer_sizes: &[usize]) -> ImageFixture {
        let layers = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, size)| Blob::random(layer_seed(seed, i), *size, MediaType::OciLayerGzip))
            .collect();
        ImageFixture::from_layers(seed, platform, layers)
    }

    /// An OCI image for `platform` with the given layers (to share layers between images).
    pub fn from_layers(seed: u64, platform: &str, layers: Vec<Blob>) -> ImageFixture {
        let platform = parse_platform(platform);
        let descriptors: Vec<Descriptor> = layers.iter().map(|l| l.descriptor.clone()).collect();
        let config = config_blob(seed, &platform, &descriptors);
        let manifest = image_manifest(config.descriptor.clone(), descriptors);
        let blobs = std::iter::once(config).chain(layers).collect();
        ImageFixture {
            manifest,
            blobs,
            platform: Some(platform),
        }
    }

    /// An OCI image index listing `children`, each with its platform.
    pub fn index(children: &[&ImageFixture]) -> ImageFixture {
        let manifests = children.iter().map(|c| c.descriptor()).collect();
        ImageFixture {
            manifest: ImageIndex::new(manifests).to_manifest(),
            blobs: Vec::new(),
            platform: None,
        }
    }

    /// An OCI 1.1 artifact: empty config (`{}`), one layer holding `payload`,
    /// `artifactType`, `subject` (media type, digest and size of `subject`) and a fixed
    /// `org.opencontainers.image.created` annotation.
    pub fn artifact(
        subject: &Descriptor,
        artifact_type: &str,
        payload: impl Into<Bytes>,
    ) -> ImageFixture {
        let config = Blob::empty_config();
        let layer = Blob::new(MediaType::from(ARTIFACT_LAYER_MEDIA_TYPE), payload);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: Some(artifact_type.to_owned()),
            config: config.descriptor.clone(),
            layers: vec![layer.descriptor.clone()],
            subject: Some(Descriptor::new(
                subject.media_type.clone(),
                subject.digest.clone(),
                subject.size,
            )),
            annotations: Some(Annotations::from([(
                ANNOTATION_CREATED.to_owned(),
                CREATED.to_owned(),
            )])),
        };
        ImageFixture {
            manifest: serialise(&manifest),
            blobs: vec![config, layer],
            platform: None,
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        self.manifest.digest()
    }

    /// The raw manifest bytes.
    pub fn bytes(&self) -> &Bytes {
        self.manifest.bytes()
    }

    /// The manifest media type.
    pub fn media_type(&self) -> &MediaType {
        self.manifest.media_type()
    }

    /// A descriptor of the manifest, with the platform when there is one.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = self.manifest.descriptor();
        d.platform = self.platform.clone();
        d
    }

    /// The config blob (images and artifacts).
    pub fn config(&self) -> Option<&Blob> {
        self.blobs.first()
    }

    /// The layer blobs (images and artifacts).
    pub fn layers(&self) -> &[Blob] {
        self.blobs.get(1..).unwrap_or_default()
    }

    /// The subject digest, for an artifact.
    pub fn subject(&self) -> Option<&Digest> {
        self.manifest.subject().map(|d| &d.digest)
    }

    /// The artifact type, for an artifact.
    pub fn artifact_type(&self) -> Option<&str> {
        match self.manifest.kind() {
            ocync_core::ManifestKind::Image(m) => m.artifact_type.as_deref(),
            ocync_core::ManifestKind::Index(i) => i.artifact_type.as_deref(),
            _ => None,
        }
    }
}

/// A graph of manifests: a top manifest (what a tag points at), the manifests it depends on,
/// and referrer artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The tagged manifest (an index or an image).
    pub top: ImageFixture,
    /// The children of `top` when it is an index, in index order.
    pub children: Vec<ImageFixture>,
    /// Referrer artifacts, each after its subject (push order).
    pub referrers: Vec<ImageFixture>,
}

impl Fixture {
    /// A fixture of one image and nothing else.
    pub fn single(image: ImageFixture) -> Fixture {
        Fixture {
            top: image,
            children: Vec::new(),
            referrers: Vec::new(),
        }
    }

    /// An index of a linux/amd64 image (three layers) and a linux/arm64 image (two layers)
    /// sharing their first layer, plus three referrers: a signature
    /// ([`SIGNATURE_TYPE`]) of the index, an SBOM ([`SBOM_TYPE`]) of the amd64 image, and a
    /// countersignature ([`COUNTERSIGNATURE_TYPE`]) of the signature (a referrer of a
    /// referrer).
    pub fn multi_arch_with_referrers(seed: u64) -> Fixture {
        let shared = Blob::random(layer_seed(seed, 100), 3 * 1024, MediaType::OciLayerGzip);
        let amd64 = ImageFixture::from_layers(
            seed,
            "linux/amd64",
            vec![
                shared.clone(),
                Blob::random(layer_seed(seed, 1), 2 * 1024 + 17, MediaType::OciLayerGzip),
                Blob::random(layer_seed(seed, 2), 5 * 1024, MediaType::OciLayerGzip),
            ],
        );
        let arm64 = ImageFixture::from_layers(
            seed.wrapping_add(1),
            "linux/arm64",
            vec![
                shared,
                Blob::random(layer_seed(seed, 3), 4 * 1024 + 3, MediaType::OciLayerGzip),
            ],
        );
        let index = ImageFixture::index(&[&amd64, &arm64]);
        let signature = ImageFixture::artifact(
            &index.manifest.descriptor(),
            SIGNATURE_TYPE,
            format!("signature of {} (seed {seed})", index.digest()),
        );
        let sbom = ImageFixture::artifact(
            &amd64.manifest.descriptor(),
            SBOM_TYPE,
            format!("{{\"sbom\":\"{}\",\"seed\":{seed}}}", amd64.digest()),
        );
        let countersignature = ImageFixture::artifact(
            &signature.manifest.descriptor(),
            COUNTERSIGNATURE_TYPE,
            format!("countersignature of {} (seed {seed})", signature.digest()),
        );
        Fixture {
            top: index,
            children: vec![amd64, arm64],
            referrers: vec![signature, sbom, countersignature],
        }
    }

    /// A single-platform (linux/amd64) image with one layer of `layer_size` bytes, streamed
    /// rather than held in memory (see [`LargeImage`]).
    pub fn large_image(seed: u64, layer_size: u64) -> LargeImage {
        LargeImage::new(seed, "linux/amd64", &[layer_size])
    }

    /// Every manifest in push order: children, top, then referrers (subjects first).
    pub fn all_manifests(&self) -> Vec<&ImageFixture> {
        self.children
            .iter()
            .chain(std::iter::once(&self.top))
            .chain(&self.referrers)
            .collect()
    }

    /// Every blob, each digest once (shared layers and the empty config are deduplicated).
    pub fn all_blobs(&self) -> Vec<&Blob> {
        let mut seen = std::collections::BTreeSet::new();
        self.all_manifests()
            .into_iter()
            .flat_map(|m| &m.blobs)
            .filter(|b| seen.insert(b.digest().clone()))
            .collect()
    }

    /// The child of the index for `platform` (`"linux/arm64"`).
    pub fn child(&self, platform: &str) -> Option<&ImageFixture> {
        self.children.iter().find(|c| {
            c.platform
                .as_ref()
                .is_some_and(|p| p.to_string() == platform)
        })
    }

    /// The referrer with `artifact_type`.
    pub fn referrer(&self, artifact_type: &str) -> Option<&ImageFixture> {
        self.referrers
            .iter()
            .find(|r| r.artifact_type() == Some(artifact_type))
    }

    /// The referrers whose subject is `subject`.
    pub fn referrers_of(&self, subject: &Digest) -> Vec<&ImageFixture> {
        self.referrers
            .iter()
            .filter(|r| r.subject() == Some(subject))
            .collect()
    }

    /// Pairs of (artifact digest, subject digest), one per referrer.
    pub fn referrer_edges(&self) -> Vec<(&Digest, &Digest)> {
        self.referrers
            .iter()
            .filter_map(|r| Some((r.digest(), r.subject()?)))
            .collect()
    }

    /// Write an OCI image layout to `dir` (created if missing): `oci-layout`, every blob and
    /// manifest under `blobs/sha256/<hex>`, and an `index.json` listing the top manifest with
    /// `org.opencontainers.image.ref.name` = `tag`, plus one untagged descriptor (with
    /// `artifactType`) per referrer, as ORAS writes them.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> io::Result<()> {
        let blob_dir = init_layout(dir)?;
        for blob in self.all_blobs() {
            write_if_missing(&blob_dir, blob.digest(), &blob.bytes)?;
        }
        for manifest in self.all_manifests() {
            write_if_missing(&blob_dir, manifest.digest(), manifest.bytes())?;
        }
        let mut top = self.top.manifest.descriptor();
        top.annotations = Some(Annotations::from([(
            ANNOTATION_REF_NAME.to_owned(),
            tag.to_owned(),
        )]));
        let mut entries = vec![top];
        entries.extend(
            self.referrers
                .iter()
                .map(|r| r.manifest.referrer_descriptor()),
        );
        write_index_json(dir, entries)
    }
}

/// An image whose layers are generated on the fly, for tests of memory use while streaming
/// hundreds of megabytes. Layer bytes are exactly those [`ImageFixture::image`] would hold for
/// the same seed, platform and sizes, so the manifests are identical too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeImage {
    seed: u64,
    platform: String,
    layer_sizes: Vec<u64>,
}

/// What [`LargeImage::write_layout`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeLayout {
    /// The image manifest.
    pub manifest: Manifest,
    /// The config blob.
    pub config: Blob,
    /// The layer descriptors, in order.
    pub layers: Vec<Descriptor>,
    /// Paths of the layer files in the layout, in order.
    pub layer_paths: Vec<PathBuf>,
}

impl LargeImage {
    /// An image for `platform` with layers of `layer_sizes` bytes.
    pub fn new(seed: u64, platform: &str, layer_sizes: &[u64]) -> LargeImage {
        LargeImage {
            seed,
            platform: platform.to_owned(),
            layer_sizes: layer_sizes.to_vec(),
        }
    }

    /// The layer sizes.
    pub fn layer_sizes(&self) -> &[u64] {
        &self.layer_sizes
    }

    /// The bytes of layer `index` in chunks of at most `chunk_size` bytes (a multiple of 8 keeps
    /// the generator fastest), generated lazily.
    pub fn layer_chunks(&self, index: usize, chunk_size: usize) -> LayerChunks {
        assert!(chunk_size > 0, "chunk size must be positive");
        LayerChunks {
            rng: PseudoRandom::new(layer_seed(self.seed, index)),
            remaining: self.layer_sizes[index],
            chunk_size,
        }
    }

    /// The descriptor of layer `index`, computed by generating (not storing) its bytes.
    pub fn layer_descriptor(&self, index: usize) -> Descriptor {
        let mut ctx = Context::new(&SHA256);
        for chunk in self.layer_chunks(index, CHUNK) {
            ctx.update(&chunk);
        }
        Descriptor::new(
            MediaType::OciLayerGzip,
            finish(ctx),
            self.layer_sizes[index],
        )
    }

    /// The manifest and config, computing every layer digest by generating its bytes once.
    pub fn manifest(&self) -> (Manifest, Blob) {
        let layers = (0..self.layer_sizes.len())
            .map(|i| self.layer_descriptor(i))
            .collect();
        self.assemble(layers)
    }

    fn assemble(&self, layers: Vec<Descriptor>) -> (Manifest, Blob) {
        let config = config_blob(self.seed, &parse_platform(&self.platform), &layers);
        (image_manifest(config.descriptor.clone(), layers), config)
    }

    /// Write an OCI image layout to `dir` holding this image tagged `tag`. Each layer is
    /// generated in 1 MiB chunks, hashed while it is written to a temporary file, then renamed
    /// to `blobs/sha256/<hex>`: no layer is ever held in memory.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> io::Result<LargeLayout> {
        let blob_dir = init_layout(dir)?;
        let mut layers = Vec::new();
        let mut layer_paths = Vec::new();
        for (i, size) in self.layer_sizes.iter().enumerate() {
            let tmp = blob_dir.join(format!(".layer-{i}.partial"));
            let mut file = io::BufWriter::new(fs::File::create(&tmp)?);
            let mut ctx = Context::new(&SHA256);
            for chunk in self.layer_chunks(i, CHUNK) {
                ctx.update(&chunk);
                file.write_all(&chunk)?;
            }
            file.into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .sync_all()?;
            let digest = finish(ctx);
            let path = blob_dir.join(digest.encoded());
            fs::rename(&tmp, &path)?;
            layers.push(Descriptor::new(MediaType::OciLayerGzip, digest, *size));
            layer_paths.push(path);
        }
        let (manifest, config) = self.assemble(layers.clone());
        write_if_missing(&blob_dir, config.digest(), &config.bytes)?;
        write_if_missing(&blob_dir, manifest.digest(), manifest.bytes())?;
        let mut top = manifest.descriptor();
        top.annotations = Some(Annotations::from([(
            ANNOTATION_REF_NAME.to_owned(),
            tag.to_owned(),
        )]));
        write_index_json(dir, vec![top])?;
        Ok(LargeLayout {
            manifest,
            config,
            layers,
            layer_paths,
        })
    }
}

/// Lazily generated chunks of a [`LargeImage`] layer.
#[derive(Debug)]
pub struct LayerChunks {
    rng: PseudoRandom,
    remaining: u64,
    chunk_size: usize,
}

impl Iterator for LayerChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(self.chunk_size as u64) as usize;
        self.remaining -= len as u64;
        Some(Bytes::from(self.rng.bytes(len)))
    }
}

/// The seed of layer `index` of the image with `seed`.
fn layer_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x1000_0000_01b3)
        .wrapping_add(index as u64 + 1)
}

fn parse_platform(platform: &str) -> Platform {
    let mut parts = platform.split('/');
    let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
        panic!("platform '{platform}' is not os/architecture[/variant]");
    };
    Platform {
        architecture: architecture.to_owned(),
        os: os.to_owned(),
        os_version: None,
        os_features: None,
        variant: parts.next().map(str::to_owned),
        features: None,
    }
}

/// A small valid OCI image config (image-spec `config.md`) naming the platform; the seed goes
/// into a label so that different seeds give different configs.
fn config_blob(seed: u64, platform: &Platform, layers: &[Descriptor]) -> Blob {
    let mut config = serde_json::json!({
        "created": CREATED,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.ocync.test.seed": seed.to_string()},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = serde_json::Value::String(variant.clone());
    }
    let bytes = serde_json::to_vec(&config).expect("config serialises");
    Blob::new(MediaType::OciConfig, bytes)
}

fn image_manifest(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
    serialise(&ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: None,
    })
}

/// Serialise with `ocync_core::ImageManifest`, whose fields are in spec order.
fn serialise(manifest: &ImageManifest) -> Manifest {
    let bytes = serde_json::to_vec(manifest).expect("manifest serialises");
    Manifest::from_bytes(Bytes::from(bytes), None).expect("a built manifest parses")
}

fn finish(ctx: Context) -> Digest {
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
        .parse()
        .expect("sha256 hex is a digest")
}

fn init_layout(dir: &Path) -> io::Result<PathBuf> {
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(blob_dir)
}

fn write_if_missing(blob_dir: &Path, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
    let path = blob_dir.join(digest.encoded());
    if !path.exists() {
        fs::write(path, bytes)?;
    }
    Ok(())
}

fn write_index_json(dir: &Path, manifests: Vec<Descriptor>) -> io::Result<()> {
    let index = ImageIndex::new(manifests).to_manifest();
    fs::write(dir.join("index.json"), index.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_file(path: &Path) -> Digest {
        Digest::sha256(&fs::read(path).unwrap())
    }

    #[test]
    fn generator_is_deterministic_and_chunking_does_not_matter() {
        let whole = random_bytes(7, 1003);
        assert_eq!(whole, random_bytes(7, 1003));
        assert_ne!(whole, random_bytes(8, 1003));
        assert_ne!(random_bytes(0, 64), vec![0; 64]);
        let mut rng = PseudoRandom::new(7);
        let mut pieces = Vec::new();
        for n in [1, 2, 13, 8, 500, 479] {
            pieces.extend(rng.bytes(n));
        }
        assert_eq!(pieces, whole);

        let long = random_bytes(3, 3 * BLOCK + 5);
        let mut rng = PseudoRandom::new(3);
        let mut pieces = Vec::new();
        for n in [BLOCK - 1, 2, BLOCK, 7, BLOCK - 3] {
            pieces.extend(rng.bytes(n));
        }
        assert_eq!(pieces, long);
        let blocks: Vec<&[u8]> = long.chunks(BLOCK).take(3).collect();
        assert_ne!(blocks[0], blocks[1]);
        assert_ne!(
            blocks[1][8..],
            blocks[2][8..],
            "rotations differ, not only the first word"
        );
    }

    #[test]
    fn image_manifest_is_spec_ordered_and_matches_its_blobs() {
        let image = ImageFixture::image(1, "linux/arm/v7", &[10, 20]);
        let text = std::str::from_utf8(image.bytes()).unwrap();
        let order: Vec<usize> = ["schemaVersion", "mediaType", "config", "layers"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(order.is_sorted(), "{text}");
        assert_eq!(image.media_type(), &MediaType::OciManifest);
        let parsed: Vec<&Descriptor> = image.manifest.blobs();
        assert_eq!(parsed.len(), 3);
        for (d, blob) in parsed.iter().zip(&image.blobs) {
            assert_eq!(**d, blob.descriptor);
            assert_eq!(Digest::sha256(&blob.bytes), blob.descriptor.digest);
        }
        let config: serde_json::Value =
            serde_json::from_slice(&image.config().unwrap().bytes).unwrap();
        assert_eq!(config["architecture"], "arm");
        assert_eq!(config["variant"], "v7");
        assert_eq!(config["os"], "linux");
        assert_eq!(image.layers().len(), 2);
        assert_eq!(
            image.descriptor().platform.unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(ImageFixture::image(1, "linux/arm/v7", &[10, 20]), image);
        assert_ne!(
            ImageFixture::image(2, "linux/arm/v7", &[10, 20]).digest(),
            image.digest()
        );
    }

    #[test]
    fn multi_arch_fixture_shape() {
        let f = Fixture::multi_arch_with_referrers(42);
        assert!(f.top.manifest.is_index());
        let amd64 = f.child("linux/amd64").unwrap();
        let arm64 = f.child("linux/arm64").unwrap();
        assert_eq!(amd64.layers().len(), 3);
        assert_eq!(arm64.layers().len(), 2);
        assert_eq!(amd64.layers()[0], arm64.layers()[0], "one shared layer");
        let platforms: Vec<String> = f
            .top
            .manifest
            .children()
            .iter()
            .map(|c| c.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

        let signature = f.referrer(SIGNATURE_TYPE).unwrap();
        let sbom = f.referrer(SBOM_TYPE).unwrap();
        let counter = f.referrer(COUNTERSIGNATURE_TYPE).unwrap();
        assert_eq!(signature.subject(), Some(f.top.digest()));
        assert_eq!(sbom.subject(), Some(amd64.digest()));
        assert_eq!(counter.subject(), Some(signature.digest()));
        assert_eq!(f.referrers_of(f.top.digest()), vec![signature]);
        assert_eq!(f.referrer_edges().len(), 3);
        let artifact = &signature.manifest;
        assert_eq!(artifact.artifact_type().as_deref(), Some(SIGNATURE_TYPE));
        assert_eq!(artifact.blobs()[0].media_type, MediaType::OciEmpty);
        assert_eq!(artifact.blobs()[0].digest, Digest::sha256(b"{}"));
        assert_eq!(
            artifact
                .annotations()
                .unwrap()
                .get(ANNOTATION_CREATED)
                .map(String::as_str),
            Some(CREATED)
        );
        assert!(artifact.subject().unwrap().platform.is_none());

        assert_eq!(f.all_manifests().len(), 6);
        // 3 + 2 layers (one shared) + 2 configs + the empty config + 3 payloads.
        let blobs = f.all_blobs();
        assert_eq!(blobs.len(), 4 + 2 + 1 + 3);
        let mut digests: Vec<&Digest> = blobs.iter().map(|b| b.digest()).collect();
        digests.dedup();
        assert_eq!(digests.len(), blobs.len());
        assert_eq!(Fixture::multi_arch_with_referrers(42), f);
        assert_ne!(
            Fixture::multi_arch_with_referrers(43).top.digest(),
            f.top.digest()
        );
    }

    #[test]
    fn written_layout_round_trips() {
        let f = Fixture::multi_arch_with_referrers(5);
        let dir = tempfile::tempdir().unwrap();
        f.write_layout(dir.path(), "v1").unwrap();

        let layout: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
        assert_eq!(layout, serde_json::json!({"imageLayoutVersion": "1.0.0"}));

        let mut files = 0;
        for entry in fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(
                hash_file(&path).encoded(),
                name,
                "blob file hashes to its name"
            );
            files += 1;
        }
        assert_eq!(files, f.all_blobs().len() + f.all_manifests().len());

        let index_bytes = fs::read(dir.path().join("index.json")).unwrap();
        let index = Manifest::from_bytes(Bytes::from(index_bytes), None).unwrap();
        assert!(index.is_index());
        let entries = index.children();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].digest, *f.top.digest());
        assert_eq!(entries[0].annotation(ANNOTATION_REF_NAME), Some("v1"));
        for (entry, referrer) in entries[1..].iter().zip(&f.referrers) {
            assert_eq!(entry.digest, *referrer.digest());
            assert_eq!(entry.artifact_type.as_deref(), referrer.artifact_type());
            assert_eq!(entry.annotation(ANNOTATION_REF_NAME), None);
        }

        for expected in f.all_manifests() {
            let path = dir
                .path()
                .join("blobs/sha256")
                .join(expected.digest().encoded());
            let parsed = Manifest::from_bytes(Bytes::from(fs::read(path).unwrap()), None).unwrap();
            assert_eq!(parsed.digest(), expected.digest());
            assert_eq!(parsed, expected.manifest);
        }
    }

    #[test]
    fn large_image_streams_the_same_content_as_image() {
        let sizes = [3 * 1024 * 1024 + 5, 100];
        let large = LargeImage::new(9, "linux/amd64", &sizes);
        let small = ImageFixture::image(9, "linux/amd64", &[sizes[0] as usize, sizes[1] as usize]);
        let (manifest, config) = large.manifest();
        assert_eq!(manifest, small.manifest);
        assert_eq!(Some(&config), small.config());

        let joined: Vec<u8> = large.layer_chunks(0, 4096).flatten().collect();
        assert_eq!(joined, small.layers()[0].bytes);

        let dir = tempfile::tempdir().unwrap();
        let written = large.write_layout(dir.path(), "big").unwrap();
        assert_eq!(written.manifest, small.manifest);
        for (path, d) in written.layer_paths.iter().zip(&written.layers) {
            assert_eq!(hash_file(path), d.digest);
            assert_eq!(fs::metadata(path).unwrap().len(), d.size);
        }
        let blob_dir = dir.path().join("blobs/sha256");
        let names: Vec<String> = fs::read_dir(&blob_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names.len(),
            4,
            "two layers, config, manifest and no partial files: {names:?}"
        );
        let index = Manifest::from_bytes(
            Bytes::from(fs::read(dir.path().join("index.json")).unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(index.children()[0].digest, *small.digest());
        assert_eq!(Fixture::large_image(9, 10).layer_sizes(), [10]);
    }
}
