//! The configuration file as written: serde types accepting every key of the original tool's
//! schema plus ours, rejecting unknown keys. Values that need checking (durations, sizes,
//! globs, references between blocks) stay text here; `check` turns them into the resolved view
//! and reports every problem with its position.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::model::Secret;

/// Keys of the top level.
pub(crate) const ROOT_KEYS: &[&str] = &[
    "global",
    "registries",
    "target_groups",
    "defaults",
    "mappings",
];
/// Keys of `global`.
pub(crate) const GLOBAL_KEYS: &[&str] = &[
    "max_concurrent_transfers",
    "cache_dir",
    "cache_ttl",
    "staging_size_limit",
];
/// Keys of a registry.
pub(crate) const REGISTRY_KEYS: &[&str] = &[
    "url",
    "auth_type",
    "max_concurrent",
    "credentials",
    "token",
    "head_first",
    "aws_profile",
    "insecure",
    "tls_verify",
    "ca_file",
    "chunk_size",
    "create_repositories",
    "rate_limits",
];
/// Keys of `rate_limits`: the action groups of `ocync_transport::ActionGroup`.
pub(crate) const RATE_LIMITS_KEYS: &[&str] = &[
    "manifest_read",
    "manifest_write",
    "blob_check",
    "blob_read",
    "upload_start",
    "upload_chunk",
    "upload_complete",
    "tag_list",
];
/// Keys of one rate in `rate_limits`.
pub(crate) const RATE_KEYS: &[&str] = &["rate", "burst"];
/// Keys of `credentials`.
pub(crate) const CREDENTIALS_KEYS: &[&str] = &["username", "password"];
/// Keys of `defaults`.
pub(crate) const DEFAULTS_KEYS: &[&str] = &["source", "targets", "tags", "platforms", "artifacts"];
/// Keys of a mapping.
pub(crate) const MAPPING_KEYS: &[&str] = &[
    "from",
    "to",
    "source",
    "targets",
    "tags",
    "platforms",
    "artifacts",
];
/// Keys of a `tags` block (without the removed `semver_prerelease`).
pub(crate) const TAGS_KEYS: &[&str] = &[
    "glob",
    "include",
    "semver",
    "exclude",
    "sort",
    "latest",
    "min_tags",
    "immutable_tags",
];
/// Keys of an `artifacts` block.
pub(crate) const ARTIFACTS_KEYS: &[&str] = &["enabled", "include", "exclude", "require_artifacts"];

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `registries` and `mappings`"
)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) global: Option<RawGlobal>,
    #[serde(default)]
    pub(crate) registries: Option<BTreeMap<String, RawRegistry>>,
    #[serde(default)]
    pub(crate) target_groups: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub(crate) defaults: Option<RawDefaults>,
    pub(crate) mappings: Option<Vec<RawMapping>>,
}

/// `global`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of global settings")]
pub(crate) struct RawGlobal {
    #[serde(default)]
    pub(crate) max_concurrent_transfers: Option<u64>,
    #[serde(default)]
    pub(crate) cache_dir: Option<String>,
    #[serde(default)]
    pub(crate) cache_ttl: Option<Text>,
    #[serde(default)]
    pub(crate) staging_size_limit: Option<Text>,
}

/// `registries.<alias>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a registry: a mapping with `url`")]
pub(crate) struct RawRegistry {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) auth_type: Option<RawAuthType>,
    #[serde(default)]
    pub(crate) max_concurrent: Option<u64>,
    #[serde(default)]
    pub(crate) credentials: Option<RawCredentials>,
    #[serde(default)]
    pub(crate) token: Option<Secret>,
    #[serde(default)]
    pub(crate) head_first: Option<bool>,
    #[serde(default)]
    pub(crate) aws_profile: Option<String>,
    #[serde(default)]
    pub(crate) insecure: Option<bool>,
    #[serde(default)]
    pub(crate) tls_verify: Option<bool>,
    #[serde(default)]
    pub(crate) ca_file: Option<String>,
    #[serde(default)]
    pub(crate) chunk_size: Option<Text>,
    #[serde(default)]
    pub(crate) create_repositories: Option<bool>,
    #[serde(default)]
    pub(crate) rate_limits: Option<std::collections::BTreeMap<String, RawRate>>,
}

/// One entry of `rate_limits`: requests per second, a rate with its burst, or `off`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "requests per second (a number), `{ rate: <per second>, burst: <requests> }`, or `off`"
)]
pub(crate) enum RawRate {
    PerSecond(f64),
    Shaped(RawRateShape),
    Word(String),
}

/// `{ rate, burst }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateShape {
    pub(crate) rate: f64,
    #[serde(default)]
    pub(crate) burst: Option<u64>,
}

/// `auth_type` values as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawAuthType {
    Ecr,
    EcrPublic,
    Gar,
    Gcr,
    Acr,
    /// Deprecated alias of `docker_config`.
    Ghcr,
    Anonymous,
    Basic,
    #[serde(alias = "token")]
    StaticToken,
    DockerConfig,
}

/// `credentials`. Both fields are optional here so a missing one is reported with the others.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `username` and `password`"
)]
pub(crate) struct RawCredentials {
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<Secret>,
}

/// `defaults`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of defaults for every mapping"
)]
pub(crate) struct RawDefaults {
    #[serde(default)]
    pub(crate) source: Option<String>,
    #[serde(default)]
    pub(crate) targets: Option<Targets>,
    #[serde(default)]
    pub(crate) tags: Option<RawTags>,
    #[serde(default)]
    pub(crate) platforms: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) artifacts: Option<RawArtifacts>,
}

/// One entry of `mappings`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping: `from`, and optionally `to`, `source`, `targets`, `tags`, `platforms`, `artifacts`"
)]
pub(crate) struct RawMapping {
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) to: Option<String>,
    #[serde(default)]
    pub(crate) source: Option<String>,
    #[serde(default)]
    pub(crate) targets: Option<Targets>,
    #[serde(default)]
    pub(crate) tags: Option<RawTags>,
    #[serde(default)]
    pub(crate) platforms: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) artifacts: Option<RawArtifacts>,
}

/// A `tags` block.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a tags block (glob, include, semver, exclude, sort, latest, min_tags, immutable_tags)"
)]
pub(crate) struct RawTags {
    #[serde(default)]
    pub(crate) glob: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) include: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) semver: Option<String>,
    #[serde(default)]
    pub(crate) exclude: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) sort: Option<RawSort>,
    #[serde(default)]
    pub(crate) latest: Option<u64>,
    #[serde(default)]
    pub(crate) min_tags: Option<u64>,
    #[serde(default)]
    pub(crate) immutable_tags: Option<String>,
    /// Removed by the original tool; accepted here so that its presence is reported (with
    /// the migration hint) among the other errors rather than as a parse failure.
    #[serde(default, rename = "semver_prerelease")]
    pub(crate) _semver_prerelease: Option<de::IgnoredAny>,
}

/// `sort` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSort {
    Semver,
    Alpha,
}

/// An `artifacts` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an artifacts block (enabled, include, exclude, require_artifacts)"
)]
pub(crate) struct RawArtifacts {
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) include: Vec<String>,
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    #[serde(default)]
    pub(crate) require_artifacts: bool,
}

fn yes() -> bool {
    true
}

/// `targets`: a group name or alias, or a list of aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Targets {
    /// A target group's name, else a registry alias.
    One(String),
    /// Registry aliases.
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Targets, D::Error> {
        d.deserialize_any(StringsVisitor)
            .map(|(list, v)| match (list, v) {
                (false, mut v) => Targets::One(v.pop().unwrap_or_default()),
                (true, v) => Targets::Many(v),
            })
    }
}

/// A string or a list of strings, and whether it was written as a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OneOrMany(pub(crate) Vec<String>, pub(crate) bool);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneOrMany, D::Error> {
        d.deserialize_any(StringsVisitor)
            .map(|(list, v)| OneOrMany(v, list))
    }
}

/// Visits a string (→ `(false, [s])`) or a list of strings (→ `(true, list)`).
struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = (bool, Vec<String>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((false, vec![v.to_owned()]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(s);
        }
        Ok((true, out))
    }
}

/// A duration or size: a string, or a non-negative integer (seconds, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub(crate) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string such as \"12h\" or \"500MB\", or a whole number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key lists (used for unknown-key messages and suggestions) are exactly what serde
    /// accepts: serde lists the fields it expected when it meets an unknown one.
    #[test]
    fn key_lists_match_the_serde_types() {
        fn fields<T: for<'de> Deserialize<'de> + fmt::Debug>() -> Vec<String> {
            let err = serde_norway::from_str::<T>("zz_probe: 1\n")
                .unwrap_err()
                .to_string();
            let expected = err.split("expected").nth(1).unwrap_or_default();
            expected
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        }
        let check = |got: Vec<String>, want: &[&str]| assert_eq!(got, want);
        check(fields::<RawConfig>(), ROOT_KEYS);
        check(fields::<RawGlobal>(), GLOBAL_KEYS);
        check(fields::<RawRegistry>(), REGISTRY_KEYS);
        check(fields::<RawCredentials>(), CREDENTIALS_KEYS);
        check(fields::<RawDefaults>(), DEFAULTS_KEYS);
        check(fields::<RawMapping>(), MAPPING_KEYS);
        let mut tags = TAGS_KEYS.to_vec();
        tags.push("semver_prerelease");
        check(fields::<RawTags>(), &tags);
        check(fields::<RawArtifacts>(), ARTIFACTS_KEYS);
    }

    #[test]
    fn strings_or_lists() {
        let t: Targets = serde_norway::from_str("prod").unwrap();
        assert_eq!(t, Targets::One("prod".into()));
        let t: Targets = serde_norway::from_str("[a, b]").unwrap();
        assert_eq!(t, Targets::Many(vec!["a".into(), "b".into()]));
        let g: OneOrMany = serde_norway::from_str("'v*'").unwrap();
        assert_eq!(g.0, ["v*"]);
        let err = serde_norway::from_str::<OneOrMany>("{a: 1}").unwrap_err();
        assert!(
            err.to_string().contains("a string or a list of strings"),
            "{err}"
        );
        let t: Text = serde_norway::from_str("300").unwrap();
        assert_eq!(t.0, "300");
        let a: RawAuthType = serde_norway::from_str("token").unwrap();
        assert_eq!(a, RawAuthType::StaticToken);
    }
}
