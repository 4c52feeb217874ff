//! Content descriptors (image-spec `descriptor.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, MediaType, Platform};

/// Annotations: a sorted map, so anything serialised from it has a stable byte form (and so a
/// stable digest) across processes.
pub type Annotations = BTreeMap<String, String>;

/// A reference to content: its media type, digest and size, plus optional platform (in
/// indexes), artifact type (in referrers lists) and annotations.
///
/// Unknown fields are ignored when parsing. Pulled manifests are never re-serialised from this
/// type; it is serialised only for content ocync builds (referrers indexes, layout indexes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: MediaType,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    /// Platform the referenced manifest runs on (entries of an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type of the referenced manifest (entries of a referrers list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_optional_fields_skipped() {
        let json = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size":2,"somethingNew":true,"annotations":{"b":"2","a":"1"}}"#;
        let d: Descriptor = serde_json::from_str(json).unwrap();
        assert_eq!(d.annotation("a"), Some("1"));
        let out = serde_json::to_string(&d).unwrap();
        assert!(out.contains(r#""annotations":{"a":"1","b":"2"}"#), "{out}");
        assert!(!out.contains("platform") && !out.contains("somethingNew"));
    }
}
