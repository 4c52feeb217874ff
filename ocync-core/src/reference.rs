//! Image references: `[registry/]repository[:tag][@digest]` (distribution `reference` grammar).
//!
//! Normalisation follows docker: a first path component is a registry only if it contains `.`
//! or `:`, is `localhost`, or is a bracketed IPv6 address; otherwise the registry is Docker Hub.
//! `index.docker.io` and `registry-1.docker.io` (the API host) are the same registry as
//! `docker.io`, and one-component Docker Hub names live under `library/`. A reference without
//! tag or digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

/// The canonical name of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

const MAX_NAME_LEN: usize = 255;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// A reference from parts that are already valid and normalised.
    pub fn new(
        registry: impl Into<String>,
        repository: impl Into<String>,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> Result<Reference, Error> {
        let registry = registry.into();
        let repository = repository.into();
        validate_repository(&repository)?;
        if let Some(tag) = &tag {
            validate_tag(tag)?;
        }
        Ok(Reference {
            registry: normalise_registry(&registry),
            repository,
            tag,
            digest,
        })
    }

    /// The registry, `host[:port]` (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one (it pins the content even when
    /// a tag is also given), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        validate_tag(tag)?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Reference, Error> {
        let invalid = |reason: &str| Error::InvalidReference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(invalid("the reference is empty"));
        }
        if input.contains("://") {
            return Err(invalid(
                "a reference has no scheme; write host[:port]/repository[:tag] (plain HTTP is a registry setting)",
            ));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(invalid("a reference contains no whitespace"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| invalid(&e.to_string()))?),
            ),
            None => (input, None),
        };

        // A tag is after the last ':' that follows the last '/', so a registry port is not a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag).map_err(|e| invalid(&e.to_string()))?;
                (&rest[..last_slash + i], Some(tag.to_owned()))
            }
            None => (rest, None),
        };

        let (registry, mut repository) = match name.split_once('/') {
            Some((first, remainder)) if is_registry(first) => {
                validate_host(first).map_err(|reason| invalid(&reason))?;
                (normalise_registry(first), remainder.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        validate_repository(&repository).map_err(|e| match e {
            Error::InvalidReference { reason, .. } => invalid(&reason),
            other => invalid(&other.to_string()),
        })?;

        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

fn is_registry(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component == "localhost"
        || component.starts_with('[')
        || component.bytes().any(|b| b.is_ascii_uppercase())
}

fn normalise_registry(registry: &str) -> String {
    let lower = registry.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => lower,
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry '{host}' has an unclosed '['"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry '{host}' is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (
                v6,
                p.strip_prefix(':')
                    .ok_or_else(|| format!("registry '{host}' is malformed"))?,
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, p),
            None => (host, ""),
        }
    };
    if !host.starts_with('[') {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("registry '{host}' is not a valid host name"));
        }
    }
    if host.contains(':') && !host.ends_with(']') && port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("registry '{host}' has an invalid port"));
    }
    Ok(())
}

/// Check a repository path: `/`-separated components of lowercase letters and digits joined by
/// `.`, `_`, `__` or runs of `-`, at most 255 characters in all.
pub fn validate_repository(repository: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidReference {
        input: repository.to_owned(),
        reason: reason.to_owned(),
    };
    if repository.is_empty() {
        return Err(invalid("the repository name is empty"));
    }
    if repository.len() > MAX_NAME_LEN {
        return Err(invalid("a repository name has at most 255 characters"));
    }
    for component in repository.split('/') {
        if !valid_component(component) {
            let reason = if component.bytes().any(|b| b.is_ascii_uppercase()) {
                format!(
                    "repository component '{component}' has uppercase letters; repository names are lowercase"
                )
            } else {
                format!(
                    "repository component '{component}' must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
                )
            };
            return Err(invalid(&reason));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        match b {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i >= bytes.len() || !alnum(bytes[i]) || i == start {
            return false;
        }
    }
    true
}

/// Check a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), Error> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTag {
            input: tag.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn normalisation_table() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("bitnami/redis", "docker.io/bitnami/redis:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            (
                "index.docker.io/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            ("registry-1.docker.io/nginx:1", "docker.io/library/nginx:1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
            ("GHCR.IO/owner/app", "ghcr.io/owner/app:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            (
                &format!("cgr.dev/chainguard/static@{D}"),
                &format!("cgr.dev/chainguard/static@{D}"),
            ),
            (&format!("quay.io/a/b:t@{D}"), &format!("quay.io/a/b:t@{D}")),
            (
                "reg.example.com/a__b/c-d/e.f_g:1.0-rc_1",
                "reg.example.com/a__b/c-d/e.f_g:1.0-rc_1",
            ),
        ];
        for (input, expected) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), expected, "{input}");
            assert_eq!(
                r.to_string().parse::<Reference>().unwrap(),
                r,
                "round trip {input}"
            );
        }
    }

    #[test]
    fn parts_and_manifest_reference() {
        let r: Reference = format!("localhost:5000/myregistry/app:v1@{D}")
            .parse()
            .unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "myregistry/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_reference(), D, "the digest pins the content");
        let r: Reference = "alpine".parse().unwrap();
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(
            r.with_tag("3.20").unwrap().to_string(),
            "docker.io/library/alpine:3.20"
        );
    }

    #[test]
    fn bad_references_name_the_input_and_the_problem() {
        let cases = [
            ("", "empty"),
            ("https://ghcr.io/app", "no scheme"),
            ("ghcr.io/Owner/app", "uppercase"),
            ("ghcr.io/app:", "invalid tag"),
            ("ghcr.io/app:-bad", "invalid tag"),
            ("ghcr.io/app@sha256:1234", "64 hex characters"),
            ("ghcr.io//app", "component ''"),
            ("ghcr.io/app-", "component 'app-'"),
            ("ghcr.io/a..b", "component 'a..b'"),
            ("localhost:99999/app", "invalid port"),
            ("my_host.com/app", "not a valid host"),
            ("ghcr.io/app name", "whitespace"),
        ];
        for (input, needle) in cases {
            let err = input.parse::<Reference>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{input}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("'{input}'")), "{input}: {msg}");
            assert!(msg.contains(needle), "{input}: {msg}");
        }
    }

    #[test]
    fn long_names_are_rejected() {
        let long = format!("ghcr.io/{}", "a".repeat(256));
        assert!(long.parse::<Reference>().is_err());
    }

    #[test]
    fn tags() {
        for ok in ["a", "latest", "1.2.3-rc_1", "_x", &"t".repeat(128)] {
            validate_tag(ok).unwrap();
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", &"t".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
