//! Platforms of index entries and the `os/architecture[/variant]` filters that select them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The platform an image runs on (image-spec `image-index.md`, `platform` object).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …), GOARCH values.
    pub architecture: String,
    /// Operating system (`linux`, `windows`, …), GOOS values.
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required operating system features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Reserved by the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A platform selector such as `linux/amd64` or `linux/arm/v7`.
///
/// Matching is case-insensitive. A filter without a variant matches every variant; a filter
/// with one matches that variant, where an absent variant counts as the architecture's default
/// (`v8` for arm64, `v7` for arm), as containerd normalises them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformFilter {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl PlatformFilter {
    /// Whether `platform` is selected by this filter.
    pub fn matches(&self, platform: &Platform) -> bool {
        if !self.os.eq_ignore_ascii_case(&platform.os)
            || !self
                .architecture
                .eq_ignore_ascii_case(&platform.architecture)
        {
            return false;
        }
        let Some(wanted) = &self.variant else {
            return true;
        };
        let default = default_variant(&self.architecture);
        let actual = platform.variant.as_deref().or(default);
        actual.is_some_and(|a| a.eq_ignore_ascii_case(wanted))
    }
}

fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture.to_ascii_lowercase().as_str() {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl FromStr for PlatformFilter {
    type Err = Error;

    fn from_str(input: &str) -> Result<PlatformFilter, Error> {
        let invalid = || Error::InvalidPlatform {
            input: input.to_owned(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        let valid_part = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(invalid());
        }
        Ok(PlatformFilter {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: None,
            variant: variant.map(Into::into),
            features: None,
        }
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("linux/amd64", platform("linux", "amd64", None), true),
            ("Linux/AMD64", platform("linux", "amd64", None), true),
            ("linux/amd64", platform("linux", "arm64", None), false),
            ("linux/amd64", platform("windows", "amd64", None), false),
            ("linux/arm64", platform("linux", "arm64", Some("v8")), true),
            ("linux/arm64/v8", platform("linux", "arm64", None), true),
            (
                "linux/arm64/v8",
                platform("linux", "arm64", Some("v8")),
                true,
            ),
            ("linux/arm/v7", platform("linux", "arm", Some("v6")), false),
            ("linux/arm/v6", platform("linux", "arm", Some("v6")), true),
            ("linux/arm/v7", platform("linux", "arm", None), true),
            ("linux/amd64/v3", platform("linux", "amd64", None), false),
        ];
        for (filter, p, expected) in cases {
            let f: PlatformFilter = filter.parse().unwrap();
            assert_eq!(f.matches(&p), expected, "{filter} vs {p}");
        }
    }

    #[test]
    fn bad_filters_name_the_input() {
        for input in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            let err = input.parse::<PlatformFilter>().unwrap_err();
            assert!(matches!(err, Error::InvalidPlatform { .. }));
            assert!(err.to_string().contains(&format!("'{input}'")), "{err}");
        }
    }

    #[test]
    fn serde_uses_dotted_os_fields() {
        let p: Platform = serde_json::from_str(
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"}"#,
        )
        .unwrap();
        assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
        assert_eq!(p.to_string(), "windows/amd64");
    }
}
