//! Manifests: the raw bytes a registry served, with a parsed view for traversal.
//!
//! A [`Manifest`] is immutable and content-addressed: its digest is the hash of its bytes, and
//! pushing it sends those exact bytes. Only content ocync builds itself (a referrers index, a
//! layout's `index.json`) is serialised from [`ImageIndex`], with sorted annotation maps so the
//! same input gives the same bytes in every process.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Annotations, Descriptor, Digest, Error, MediaType};

/// The largest manifest ocync reads or writes: 4 MiB, the limit of distribution, ACR and ECR
/// (`imageManifest` is at most 4,194,304 characters).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// An image manifest (OCI image manifest or Docker v2 schema 2): a config and layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type field inside the JSON, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Artifact type (OCI 1.1 artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs, attestations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
}

/// An image index (OCI image index or Docker manifest list): a list of manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// Media type field inside the JSON, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Artifact type (OCI 1.1 artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests of the index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
}

impl ImageIndex {
    /// An OCI image index listing `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: None,
        }
    }

    /// Serialise to a [`Manifest`]. Field order is fixed and maps are sorted, so equal indexes
    /// give equal bytes and equal digests.
    pub fn to_manifest(&self) -> Manifest {
        let bytes = serde_json::to_vec(self).expect("an index always serialises");
        let media_type = self.media_type.clone().unwrap_or(MediaType::OciIndex);
        Manifest {
            digest: Digest::sha256(&bytes),
            bytes: Bytes::from(bytes),
            media_type,
            kind: ManifestKind::Index(Box::new(self.clone())),
        }
    }
}

/// The parsed view of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestKind {
    /// An image manifest.
    Image(Box<ImageManifest>),
    /// An index.
    Index(Box<ImageIndex>),
}

/// A manifest: raw bytes, media type, digest and the parsed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    bytes: Bytes,
    media_type: MediaType,
    digest: Digest,
    kind: ManifestKind,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<MediaType>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

impl Manifest {
    /// Parse manifest bytes, with the sha256 digest of the bytes.
    ///
    /// The media type is the `mediaType` field of the JSON when present, else `content_type`
    /// (a `Content-Type` header) when it names a manifest type, else inferred from the shape
    /// (`manifests` means an index, `config` an image manifest).
    pub fn from_bytes(bytes: Bytes, content_type: Option<&str>) -> Result<Manifest, Error> {
        let digest = Digest::sha256(&bytes);
        Manifest::parse(bytes, content_type, digest)
    }

    /// Parse manifest bytes fetched by `expected` digest, checking that they hash to it.
    pub fn with_digest(
        bytes: Bytes,
        content_type: Option<&str>,
        expected: &Digest,
    ) -> Result<Manifest, Error> {
        expected.verify(&bytes)?;
        Manifest::parse(bytes, content_type, expected.clone())
    }

    fn parse(bytes: Bytes, content_type: Option<&str>, digest: Digest) -> Result<Manifest, Error> {
        let size = bytes.len() as u64;
        if size > MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let header_type = content_type.map(MediaType::from);
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|source| Error::ManifestJson {
                media_type: header_type.clone().unwrap_or(MediaType::OciManifest),
                source,
            })?;
        if probe.schema_version == Some(1) {
            return Err(Error::UnsupportedMediaType {
                media_type: header_type.map_or_else(
                    || "application/vnd.docker.distribution.manifest.v1+json".into(),
                    |m| m.to_string(),
                ),
            });
        }
        let media_type = match (probe.media_type, header_type) {
            (Some(m), _) => m,
            (None, Some(h)) if h.is_manifest() => h,
            (None, _) if probe.manifests.is_some() => MediaType::OciIndex,
            (None, _) if probe.config.is_some() => MediaType::OciManifest,
            (None, h) => {
                return Err(Error::UnsupportedMediaType {
                    media_type: h.map_or_else(|| "(none)".to_owned(), |m| m.to_string()),
                });
            }
        };
        let json_err = |source| Error::ManifestJson {
            media_type: media_type.clone(),
            source,
        };
        let kind = if media_type.is_index() {
            ManifestKind::Index(serde_json::from_slice(&bytes).map_err(json_err)?)
        } else if media_type.is_image_manifest() {
            ManifestKind::Image(serde_json::from_slice(&bytes).map_err(json_err)?)
        } else {
            return Err(Error::UnsupportedMediaType {
                media_type: media_type.to_string(),
            });
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
            kind,
        })
    }

    /// The raw bytes, exactly as pulled.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The media type.
    pub fn media_type(&self) -> &MediaType {
        &self.media_type
    }

    /// The digest of the raw bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Size of the raw bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The parsed view.
    pub fn kind(&self) -> &ManifestKind {
        &self.kind
    }

    /// Whether this is an index.
    pub fn is_index(&self) -> bool {
        matches!(self.kind, ManifestKind::Index(_))
    }

    /// The blobs an image manifest references (config first, then layers); none for an index.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match &self.kind {
            ManifestKind::Image(m) => std::iter::once(&m.config).chain(&m.layers).collect(),
            ManifestKind::Index(_) => Vec::new(),
        }
    }

    /// The manifests an index references; none for an image manifest.
    pub fn children(&self) -> &[Descriptor] {
        match &self.kind {
            ManifestKind::Index(i) => &i.manifests,
            ManifestKind::Image(_) => &[],
        }
    }

    /// The subject, for a manifest that refers to another one.
    pub fn subject(&self) -> Option<&Descriptor> {
        match &self.kind {
            ManifestKind::Image(m) => m.subject.as_ref(),
            ManifestKind::Index(i) => i.subject.as_ref(),
        }
    }

    /// The manifest's annotations.
    pub fn annotations(&self) -> Option<&Annotations> {
        match &self.kind {
            ManifestKind::Image(m) => m.annotations.as_ref(),
            ManifestKind::Index(i) => i.annotations.as_ref(),
        }
    }

    /// The artifact type a referrers list reports for this manifest: its `artifactType`, else
    /// (image manifests) its config media type (distribution-spec, listing referrers).
    pub fn artifact_type(&self) -> Option<String> {
        match &self.kind {
            ManifestKind::Image(m) => m
                .artifact_type
                .clone()
                .or_else(|| Some(m.config.media_type.to_string())),
            ManifestKind::Index(i) => i.artifact_type.clone(),
        }
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size())
    }

    /// The descriptor that represents this manifest in a referrers list: artifact type and
    /// annotations included.
    pub fn referrer_descriptor(&self) -> Descriptor {
        let mut d = self.descriptor();
        d.artifact_type = self.artifact_type();
        d.annotations = self.annotations().cloned();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_MANIFEST: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
      "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
   "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3,
      "digest": "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"}]
}"#;

    const DOCKER_LIST: &str = r#"{"schemaVersion":2,
  "mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
  "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,
    "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}"#;

    const ARTIFACT: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
  "artifactType":"application/vnd.example.sbom",
  "config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,
    "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","data":"e30="},
  "layers":[],
  "subject":{"mediaType":"application/vnd.oci.image.index.v1+json","size":10,
    "digest":"sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"},
  "annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}"#;

    #[test]
    fn docker_manifest_keeps_its_bytes_and_digest() {
        let m = Manifest::from_bytes(Bytes::from_static(DOCKER_MANIFEST.as_bytes()), None).unwrap();
        assert_eq!(m.media_type(), &MediaType::DockerManifest);
        assert_eq!(
            m.bytes().as_ref(),
            DOCKER_MANIFEST.as_bytes(),
            "whitespace is kept"
        );
        assert_eq!(m.digest(), &Digest::sha256(DOCKER_MANIFEST.as_bytes()));
        assert_eq!(m.blobs().len(), 2);
        assert_eq!(m.blobs()[0].media_type, MediaType::DockerConfig);
        assert!(m.children().is_empty());
    }

    #[test]
    fn docker_list_is_an_index_with_platforms() {
        let m = Manifest::from_bytes(Bytes::from_static(DOCKER_LIST.as_bytes()), None).unwrap();
        assert!(m.is_index());
        let p = m.children()[0].platform.as_ref().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
    }

    #[test]
    fn artifact_reports_type_subject_and_annotations() {
        let m = Manifest::from_bytes(Bytes::from_static(ARTIFACT.as_bytes()), None).unwrap();
        assert_eq!(
            m.artifact_type().as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert!(m.subject().is_some());
        let d = m.referrer_descriptor();
        assert_eq!(
            d.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert!(d.annotation("org.opencontainers.image.created").is_some());
    }

    #[test]
    fn media_type_from_header_or_shape_when_the_field_is_missing() {
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        let m = Manifest::from_bytes(Bytes::from_static(bare), None).unwrap();
        assert_eq!(m.media_type(), &MediaType::OciIndex);
        let m = Manifest::from_bytes(
            Bytes::from_static(bare),
            Some("application/vnd.docker.distribution.manifest.list.v2+json"),
        )
        .unwrap();
        assert_eq!(m.media_type(), &MediaType::DockerManifestList);
    }

    #[test]
    fn schema1_and_non_manifests_are_unsupported() {
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = Manifest::from_bytes(Bytes::from_static(s1), None).unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }));
        assert!(err.to_string().contains("manifest.v1"), "{err}");
        let other = br#"{"schemaVersion":2,"mediaType":"application/json"}"#;
        let err = Manifest::from_bytes(Bytes::from_static(other), None).unwrap_err();
        assert!(err.to_string().contains("'application/json'"), "{err}");
    }

    #[test]
    fn bad_json_names_the_media_type() {
        let err = Manifest::from_bytes(
            Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":7}"#),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, Error::ManifestJson { .. }));
        assert!(
            err.to_string()
                .contains("application/vnd.oci.image.manifest.v1+json")
        );
    }

    #[test]
    fn size_limit_is_enforced() {
        let big = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        let err = Manifest::from_bytes(Bytes::from(big), None).unwrap_err();
        assert!(
            matches!(err, Error::ManifestTooLarge { size, .. } if size == MAX_MANIFEST_SIZE + 1)
        );
        assert!(err.to_string().contains("4194304"), "{err}");
    }

    #[test]
    fn with_digest_rejects_other_bytes() {
        let d = Digest::sha256(b"something else");
        let err = Manifest::with_digest(Bytes::from_static(DOCKER_LIST.as_bytes()), None, &d)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
    }

    #[test]
    fn built_index_is_deterministic() {
        let m = Manifest::from_bytes(Bytes::from_static(ARTIFACT.as_bytes()), None).unwrap();
        let a = ImageIndex::new(vec![m.referrer_descriptor()]).to_manifest();
        let b = ImageIndex::new(vec![m.referrer_descriptor()]).to_manifest();
        assert_eq!(a.bytes(), b.bytes());
        let reparsed = Manifest::from_bytes(a.bytes().clone(), None).unwrap();
        assert_eq!(reparsed.digest(), a.digest());
        assert_eq!(
            reparsed.children()[0].artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
    }

    #[test]
    fn parse_agrees_with_oci_spec() {
        for doc in [DOCKER_MANIFEST, ARTIFACT] {
            let ours = Manifest::from_bytes(Bytes::from_static(doc.as_bytes()), None).unwrap();
            let theirs: oci_spec::image::ImageManifest = serde_json::from_str(doc).unwrap();
            let layer_digests: Vec<String> = theirs
                .layers()
                .iter()
                .map(|l| l.digest().to_string())
                .collect();
            let our_layers: Vec<String> = ours.blobs()[1..]
                .iter()
                .map(|d| d.digest.to_string())
                .collect();
            assert_eq!(our_layers, layer_digests);
            assert_eq!(
                ours.blobs()[0].digest.to_string(),
                theirs.config().digest().to_string()
            );
            assert_eq!(
                ours.subject().map(|s| s.digest.to_string()),
                theirs.subject().as_ref().map(|s| s.digest().to_string())
            );
        }
        let theirs: oci_spec::image::ImageIndex = serde_json::from_str(DOCKER_LIST).unwrap();
        let ours = Manifest::from_bytes(Bytes::from_static(DOCKER_LIST.as_bytes()), None).unwrap();
        assert_eq!(ours.children().len(), theirs.manifests().len());
    }
}
