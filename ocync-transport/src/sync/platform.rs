//! Platform filtering of an index: keep the source bytes when nothing is filtered out, and
//! build the filtered index deterministically when something is.

use bytes::Bytes;

use ocync_core::{Descriptor, Manifest, PlatformFilter};

use crate::error::{Error, ErrorKind};

/// Buildx attestation manifests sit in the index with platform `unknown/unknown` and point at
/// the image they attest through these annotations; they follow their image.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// `index` with only the children matching one of `filters`. Returns the index itself (same
/// bytes, same digest) when every child matches, and an error naming the available platforms
/// when none does. The rebuilt index keeps every other field of the original, and its JSON has
/// sorted keys, so the same input gives the same digest in every process.
pub fn filter_index(
    index: &Manifest,
    filters: &[PlatformFilter],
    location: &str,
) -> Result<Manifest, Error> {
    if !index.is_index() || filters.is_empty() {
        return Ok(index.clone());
    }
    let selected = |d: &Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| filters.iter().any(|f| f.matches(p)))
    };
    let kept_images: std::collections::HashSet<String> = index
        .children()
        .iter()
        .filter(|d| selected(d))
        .map(|d| d.digest.to_string())
        .collect();
    let kept: Vec<usize> = index
        .children()
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            selected(d)
                || (d.annotation(REFERENCE_TYPE) == Some("attestation-manifest")
                    && d.annotation(REFERENCE_DIGEST)
                        .is_some_and(|target| kept_images.contains(target)))
        })
        .map(|(i, _)| i)
        .collect();
    if kept.len() == index.children().len() {
        return Ok(index.clone());
    }
    if kept.is_empty() {
        let available: Vec<String> = index
            .children()
            .iter()
            .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
            .collect();
        let wanted: Vec<String> = filters.iter().map(ToString::to_string).collect();
        return Err(ErrorKind::InvalidFilter {
            field: "platforms",
            input: wanted.join(", "),
            reason: format!(
                "{location} has no such platform; it has {}",
                if available.is_empty() {
                    "no platform entries".to_owned()
                } else {
                    available.join(", ")
                }
            ),
        }
        .into());
    }
    // Rebuild from the original JSON so unknown fields survive; serde_json's map is sorted.
    let mut value: serde_json::Value = serde_json::from_slice(index.bytes())
        .map_err(|e| Error::protocol(location, format!("index is not JSON: {e}")))?;
    let entries = value
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| Error::protocol(location, "index has no manifests array"))?;
    let filtered: Vec<serde_json::Value> = kept
        .iter()
        .filter_map(|&i| entries.get(i).cloned())
        .collect();
    *entries = filtered;
    let bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
    Manifest::from_bytes(Bytes::from(bytes), Some(index.media_type().as_str()))
        .map_err(|e| Error::oci(format!("filtered index of {location}"), e))
}

/// A stable key of a platform filter list, for the cache.
pub(crate) fn platform_key(filters: Option<&[PlatformFilter]>) -> String {
    match filters {
        None => String::new(),
        Some(f) => {
            let mut names: Vec<String> = f.iter().map(ToString::to_string).collect();
            names.sort();
            names.dedup();
            names.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocync_core::Digest;

    fn index(extra: &str) -> Manifest {
        let child = |arch: &str, variant: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":100,"platform":{{"architecture":"{arch}","os":"linux"{variant}}}}}"#,
                Digest::sha256(arch.as_bytes())
            )
        };
        let attestation = format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":50,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{}"}}}}"#,
            Digest::sha256(b"att"),
            Digest::sha256(b"arm64")
        );
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{},{attestation}]{extra}}}"#,
            child("amd64", ""),
            child("arm64", r#","variant":"v8""#),
            child("s390x", ""),
        );
        Manifest::from_bytes(Bytes::from(json), None).unwrap()
    }

    fn filters(list: &[&str]) -> Vec<PlatformFilter> {
        list.iter().map(|f| f.parse().unwrap()).collect()
    }

    #[test]
    fn nothing_filtered_keeps_the_bytes() {
        let i = index("");
        let same = filter_index(&i, &[], "x").unwrap();
        assert_eq!(same.bytes(), i.bytes());
    }

    #[test]
    fn filtered_index_is_deterministic_and_keeps_other_fields() {
        let i = index(r#","annotations":{"z":"1","a":"2"},"futureField":true"#);
        let a = filter_index(&i, &filters(&["linux/arm64"]), "x").unwrap();
        let b = filter_index(&i, &filters(&["linux/arm64"]), "x").unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_ne!(a.digest(), i.digest());
        let text = String::from_utf8(a.bytes().to_vec()).unwrap();
        assert!(
            text.contains("futureField") && text.contains(r#""annotations":{"a":"2","z":"1"}"#),
            "{text}"
        );
        // arm64 and its attestation are kept, amd64 and s390x dropped.
        assert_eq!(a.children().len(), 2);
        assert_eq!(a.children()[1].digest, Digest::sha256(b"att"));
    }

    #[test]
    fn no_match_names_what_is_available() {
        let err = filter_index(&index(""), &filters(&["windows/amd64"]), "reg/app:v1").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("windows/amd64")
                && msg.contains("linux/arm64/v8")
                && msg.contains("reg/app:v1"),
            "{msg}"
        );
    }

    #[test]
    fn key_is_order_independent() {
        let a = filters(&["linux/arm64", "linux/amd64"]);
        let b = filters(&["linux/amd64", "linux/arm64", "linux/amd64"]);
        assert_eq!(platform_key(Some(&a)), platform_key(Some(&b)));
        assert_eq!(platform_key(None), "");
    }
}
