//! [`Location`]: where an image is, as users write it: a registry reference
//! (`ghcr.io/owner/app:v1`) or an OCI layout (`oci:<dir>[:tag|@digest]`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ocync_core::{Digest, Reference};

use crate::error::{Error, ErrorKind};

/// An image's location.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI image layout directory.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// Tag or digest; `None` means the layout's only image (or a target without a tag).
        reference: Option<String>,
    },
}

impl Location {
    /// The tag, or digest, this location names.
    pub fn reference(&self) -> Option<String> {
        match self {
            Location::Registry(r) => Some(r.manifest_reference()),
            Location::Layout { reference, .. } => reference.clone(),
        }
    }

    /// The tag this location names, if it names one.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Location::Registry(r) => r.tag(),
            Location::Layout { reference, .. } => reference
                .as_deref()
                .filter(|r| r.parse::<Digest>().is_err()),
        }
    }
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(input: &str) -> Result<Location, Error> {
        let invalid = |reason: String| -> Error {
            ErrorKind::InvalidLocation {
                input: input.to_owned(),
                reason,
            }
            .into()
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (path, reference) = if let Some((p, d)) = rest.rsplit_once('@') {
                let digest: Digest = d.parse().map_err(|e| invalid(format!("{e}")))?;
                (p, Some(digest.to_string()))
            } else {
                let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
                match rest[last_slash..].rfind(':') {
                    Some(i) => {
                        let tag = &rest[last_slash + i + 1..];
                        ocync_core::validate_tag(tag).map_err(|e| invalid(e.to_string()))?;
                        (&rest[..last_slash + i], Some(tag.to_owned()))
                    }
                    None => (rest, None),
                }
            };
            if path.is_empty() {
                return Err(invalid(
                    "expected oci:<directory>[:tag], e.g. oci:./images:v1".into(),
                ));
            }
            return Ok(Location::Layout {
                path: PathBuf::from(path),
                reference,
            });
        }
        input.parse::<Reference>().map(Location::Registry).map_err(|e| match e {
            ocync_core::Error::InvalidReference { reason, .. } => invalid(format!(
                "{reason} (write a registry reference such as ghcr.io/owner/app:v1, or oci:<directory>[:tag] for a layout)"
            )),
            other => invalid(other.to_string()),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Layout {
                path,
                reference: None,
            } => write!(f, "oci:{}", path.display()),
            Location::Layout {
                path,
                reference: Some(r),
            } if r.parse::<Digest>().is_ok() => write!(f, "oci:{}@{r}", path.display()),
            Location::Layout {
                path,
                reference: Some(r),
            } => write!(f, "oci:{}:{r}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn layouts_and_references() {
        let cases: [(&str, &str, Option<&str>); 6] = [
            ("oci:./out", "oci:./out", None),
            ("oci:/tmp/x:v1", "oci:/tmp/x:v1", Some("v1")),
            ("oci:dir.with:colon/sub", "oci:dir.with:colon/sub", None),
            (&format!("oci:/a/b@{D}"), &format!("oci:/a/b@{D}"), None),
            ("nginx", "docker.io/library/nginx:latest", Some("latest")),
            ("127.0.0.1:5000/app:v2", "127.0.0.1:5000/app:v2", Some("v2")),
        ];
        for (input, display, tag) in cases {
            let l: Location = input.parse().unwrap();
            assert_eq!(l.to_string(), display);
            assert_eq!(l.tag(), tag, "{input}");
        }
    }

    #[test]
    fn bad_locations_name_the_input_and_the_forms() {
        for (input, needle) in [
            ("oci:", "oci:<directory>"),
            ("oci:/x:-bad", "invalid tag"),
            ("oci:/x@sha256:12", "64 hex"),
            ("Registry.example/App", "uppercase"),
        ] {
            let err = input.parse::<Location>().unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::InvalidLocation { .. }));
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("'{input}'")) && msg.contains(needle),
                "{msg}"
            );
        }
    }
}
