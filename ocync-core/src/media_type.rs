//! Media types of manifests and blobs (image-spec `media-types.md`, Docker v2 schema 2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A media type. Known manifest and blob types have variants; anything else is kept verbatim
/// in [`MediaType::Other`] so it round-trips unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MediaType {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
    /// `application/vnd.oci.image.config.v1+json`
    OciConfig,
    /// `application/vnd.docker.container.image.v1+json`
    DockerConfig,
    /// `application/vnd.oci.image.layer.v1.tar`
    OciLayer,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    OciLayerGzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`
    OciLayerZstd,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`
    DockerLayerGzip,
    /// `application/vnd.oci.empty.v1+json`, the `{}` blob of artifacts without a config.
    OciEmpty,
    /// Any other media type, kept verbatim.
    Other(String),
}

const TABLE: &[(MediaType, &str)] = &[
    (
        MediaType::OciManifest,
        "application/vnd.oci.image.manifest.v1+json",
    ),
    (
        MediaType::OciIndex,
        "application/vnd.oci.image.index.v1+json",
    ),
    (
        MediaType::DockerManifest,
        "application/vnd.docker.distribution.manifest.v2+json",
    ),
    (
        MediaType::DockerManifestList,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ),
    (
        MediaType::OciConfig,
        "application/vnd.oci.image.config.v1+json",
    ),
    (
        MediaType::DockerConfig,
        "application/vnd.docker.container.image.v1+json",
    ),
    (
        MediaType::OciLayer,
        "application/vnd.oci.image.layer.v1.tar",
    ),
    (
        MediaType::OciLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    (
        MediaType::OciLayerZstd,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ),
    (
        MediaType::DockerLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (MediaType::OciEmpty, "application/vnd.oci.empty.v1+json"),
];

impl MediaType {
    /// The manifest media types a client accepts, most specific first: the `Accept` list of
    /// every manifest GET and HEAD. Without the index types a registry answers 404 for an index.
    pub const MANIFEST_TYPES: [MediaType; 4] = [
        MediaType::OciManifest,
        MediaType::OciIndex,
        MediaType::DockerManifest,
        MediaType::DockerManifestList,
    ];

    /// The string form.
    pub fn as_str(&self) -> &str {
        if let MediaType::Other(s) = self {
            return s;
        }
        TABLE
            .iter()
            .find(|(m, _)| m == self)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }

    /// Whether this is an image manifest type (OCI or Docker v2 schema 2).
    pub fn is_image_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// Whether this is an index type (OCI image index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// Whether this is any manifest type ocync can copy.
    pub fn is_manifest(&self) -> bool {
        self.is_image_manifest() || self.is_index()
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for MediaType {
    fn from(s: &str) -> MediaType {
        // Content-Type headers may carry parameters (`; charset=utf-8`); the type is before them.
        let s = s.split(';').next().unwrap_or_default().trim();
        TABLE
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s))
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| MediaType::Other(s.to_owned()))
    }
}

impl FromStr for MediaType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<MediaType, Self::Err> {
        Ok(MediaType::from(s))
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MediaType, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(MediaType::from(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_type_round_trips() {
        for (m, s) in TABLE {
            assert_eq!(MediaType::from(*s), *m);
            assert_eq!(m.as_str(), *s);
        }
        let other = MediaType::from("application/vnd.cncf.notary.signature");
        assert_eq!(
            other,
            MediaType::Other("application/vnd.cncf.notary.signature".into())
        );
        assert_eq!(other.as_str(), "application/vnd.cncf.notary.signature");
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        assert_eq!(
            MediaType::from("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            MediaType::OciIndex
        );
    }

    #[test]
    fn classification() {
        assert!(MediaType::DockerManifestList.is_index());
        assert!(MediaType::DockerManifest.is_image_manifest());
        assert!(!MediaType::OciLayerGzip.is_manifest());
    }
}
