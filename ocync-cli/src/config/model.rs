//! The validated configuration as the engine uses it: defaults applied, references resolved,
//! durations and sizes parsed, paths absolute.
//!
//! `ocync sync` is being written against this view; fields it does not read yet are allowed to
//! be unused (each such item says so).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobMatcher;
use ocync_core::PlatformFilter;
use ocync_transport::{Scheme, TagRules};

use super::error::Diagnostic;

/// Default of `global.max_concurrent_transfers`.
pub(crate) const DEFAULT_MAX_CONCURRENT_TRANSFERS: usize = 50;
/// Default of `registries.<alias>.max_concurrent`.
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 50;
/// Default of `global.cache_ttl`.
pub(crate) const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(12 * 3600);

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(super) path: PathBuf,
    pub(super) global: Global,
    pub(super) registries: BTreeMap<String, Registry>,
    pub(super) target_groups: BTreeMap<String, Vec<String>>,
    pub(super) mappings: Vec<ResolvedMapping>,
    pub(super) warnings: Vec<Diagnostic>,
    pub(super) unset_variables: Vec<String>,
}

#[allow(
    dead_code,
    reason = "the accessors `ocync sync` is being written against"
)]
impl Config {
    /// The file it was loaded from, as named by the user.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The mappings with defaults applied, in file order.
    pub(crate) fn resolved(&self) -> Vec<ResolvedMapping> {
        self.mappings.clone()
    }

    /// The mappings with defaults applied, in file order, borrowed.
    pub(crate) fn mappings(&self) -> &[ResolvedMapping] {
        &self.mappings
    }

    /// Registries by alias.
    pub(crate) fn registries(&self) -> &BTreeMap<String, Registry> {
        &self.registries
    }

    /// One registry by alias.
    pub(crate) fn registry(&self, alias: &str) -> Option<&Registry> {
        self.registries.get(alias)
    }

    /// Target groups by name (every member is a known alias).
    pub(crate) fn target_groups(&self) -> &BTreeMap<String, Vec<String>> {
        &self.target_groups
    }

    /// Global settings with defaults applied.
    pub(crate) fn global(&self) -> &Global {
        &self.global
    }

    /// Things that work but are probably not what the user meant (deprecated values, ignored
    /// settings, unset variables), each with its position.
    pub(crate) fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// Names of variables referenced as `${VAR}` while unset (they expanded to nothing).
    pub(crate) fn unset_variables(&self) -> &[String] {
        &self.unset_variables
    }

    /// Log every warning (for commands that log rather than print).
    pub(crate) fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!("{w}");
        }
    }
}

/// `global`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) struct Global {
    /// Concurrent (tag, target) transfers; default 50.
    pub(crate) max_concurrent_transfers: usize,
    /// Cache directory, absolute; default `<config dir>/.ocync/cache`. A relative setting is
    /// relative to the configuration file's directory.
    pub(crate) cache_dir: PathBuf,
    /// How long the cache stays valid; `None` when it never expires (`"0"`). Default 12 h.
    pub(crate) cache_ttl: Option<Duration>,
    /// The most bytes staged at once under `<cache_dir>/staging`; `None`: no limit beyond the
    /// blobs in flight (the default).
    pub(crate) staging_size_limit: Option<u64>,
}

/// One registry (`registries.<alias>`).
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) struct Registry {
    /// The alias.
    pub(crate) alias: String,
    /// `url` as written (after `${VAR}` expansion).
    pub(crate) url: String,
    /// Where it is and how to reach it.
    pub(crate) endpoint: Endpoint,
    /// `auth_type` when set (`ghcr` is read as `docker_config`); `None`: detect from the host.
    pub(crate) auth_type: Option<AuthType>,
    /// In-flight request cap; default 50.
    pub(crate) max_concurrent: usize,
    /// `credentials` (for `auth_type: basic`).
    pub(crate) credentials: Option<Credentials>,
    /// `token` (for `auth_type: static_token`).
    pub(crate) token: Option<Secret>,
    /// Compare source and target digests with HEAD requests before pulling (a source setting).
    pub(crate) head_first: bool,
    /// AWS profile for ECR credentials (only with `auth_type: ecr`).
    pub(crate) aws_profile: Option<String>,
    /// Verify TLS certificates (default true).
    pub(crate) tls_verify: bool,
    /// Extra CA certificates (PEM), absolute path of an existing file.
    pub(crate) ca_file: Option<PathBuf>,
    /// Upload blobs in chunks of this many bytes; `None`: one request per blob.
    pub(crate) chunk_size: Option<u64>,
    /// Create a missing target repository before pushing (ECR without create-on-push).
    pub(crate) create_repositories: bool,
    /// `rate_limits`: per action group, a token bucket replacing the registry's default
    /// (`None`: no fixed bucket, pace by 429s only).
    pub(crate) rate_limits: Vec<(ocync_transport::ActionGroup, Option<ocync_transport::Rate>)>,
}

impl Registry {
    /// Whether this is an `oci:` layout directory rather than a registry.
    pub(crate) fn is_layout(&self) -> bool {
        matches!(self.endpoint, Endpoint::Layout { .. })
    }

    /// Identity of the storage, for "same repository" checks: the normalised host (Docker Hub's
    /// names are one) or the layout directory. The url path is not part of it (repositories are
    /// named by mappings alone, as in the original).
    pub(crate) fn storage_key(&self) -> String {
        match &self.endpoint {
            Endpoint::Remote { host, .. } => match host.as_str() {
                "index.docker.io" | "registry-1.docker.io" => ocync_core::DOCKER_HUB.to_owned(),
                h => h.to_owned(),
            },
            Endpoint::Layout { dir } => format!("oci:{}", dir.display()),
        }
    }
}

/// Where a registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A registry reached over the network.
    Remote {
        /// `host[:port]`, lowercase, without scheme or path.
        host: String,
        /// `http://` or `insecure: true` → `Http`; `https://` → `Https`; no scheme → `Auto`.
        scheme: Scheme,
        /// The path after the host in `url`, if any: every repository of the registry lives
        /// under it (`localhost:5000/myregistry`).
        path: Option<String>,
    },
    /// `oci:<directory>`: a directory holding one OCI layout per repository
    /// (`<directory>/<repository>`).
    Layout {
        /// The directory, absolute (relative to the configuration file's directory).
        dir: PathBuf,
    },
}

/// `auth_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) enum AuthType {
    /// Amazon ECR (AWS SDK credentials).
    Ecr,
    /// Amazon ECR Public.
    EcrPublic,
    /// Google Artifact Registry.
    Gar,
    /// Google Container Registry.
    Gcr,
    /// Azure Container Registry.
    Acr,
    /// No credentials.
    Anonymous,
    /// `credentials` as Basic credentials for the token exchange.
    Basic,
    /// `token` as a Bearer token (`token` is an alias).
    StaticToken,
    /// Docker's `config.json` (also `ghcr`, deprecated).
    DockerConfig,
}

/// `credentials`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) struct Credentials {
    /// User name.
    pub(crate) username: String,
    /// Password.
    pub(crate) password: Secret,
}

/// A secret string: `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
impl Secret {
    /// Wrap a secret.
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// An `artifacts` block (OCI referrers: signatures, SBOMs, attestations).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) struct Artifacts {
    /// Copy referrers (default true).
    pub(crate) enabled: bool,
    /// Artifact types to copy (empty: all).
    pub(crate) include: Vec<String>,
    /// Artifact types not to copy.
    pub(crate) exclude: Vec<String>,
    /// Fail an image when no referrer matched.
    pub(crate) require_artifacts: bool,
}

impl Default for Artifacts {
    fn default() -> Artifacts {
        Artifacts {
            enabled: true,
            include: Vec::new(),
            exclude: Vec::new(),
            require_artifacts: false,
        }
    }
}

/// One mapping with the defaults applied (the merge rules of the original: `source`,
/// `targets`, `platforms` and `artifacts` replace the defaults wholesale; tags are merged field
/// by field by the engine, which gets both blocks).
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
pub(crate) struct ResolvedMapping {
    /// Position in `mappings` (for messages: `mappings[index]`).
    pub(crate) index: usize,
    /// `from`: a source repository, or a repository glob when `glob`.
    pub(crate) from: String,
    /// The target repository; for a glob mapping, the prefix target names start with (see
    /// [`ResolvedMapping::target_repository`]).
    pub(crate) to: String,
    /// `from` has glob characters (`*`, `?`, `[`): the engine lists the source catalog.
    pub(crate) glob: bool,
    /// Source registry alias.
    pub(crate) source: String,
    /// Target registry aliases (groups expanded), without duplicates.
    pub(crate) targets: Vec<String>,
    /// The mapping's own `tags` block; `None` with no `default_tags` means every tag.
    pub(crate) tags: Option<TagRules>,
    /// `defaults.tags` (its `exclude` is the soft tier).
    pub(crate) default_tags: Option<TagRules>,
    /// Platforms to keep from multi-platform images; `None`: all.
    pub(crate) platforms: Option<Vec<PlatformFilter>>,
    /// Referrers to copy.
    pub(crate) artifacts: Artifacts,
    /// For a glob mapping: the compiled glob and the literal prefix of `from` that is replaced
    /// by `to` (the text before the first glob character, cut back after the last `/`).
    pub(crate) repository_glob: Option<(GlobMatcher, String)>,
}

#[allow(dead_code, reason = "read by `ocync sync`, which is being written")]
impl ResolvedMapping {
    /// The target repository for a source repository, or `None` when this mapping does not
    /// select it. Exact mappings select `from` only, and write `to`. Glob mappings select
    /// what the glob matches, and write `to` joined with what follows the literal prefix:
    /// `from: team/*`, `to: mirror` maps `team/app/web` to `mirror/app/web`; `from: "*"` with
    /// no `to` keeps every name.
    pub(crate) fn target_repository(&self, source_repository: &str) -> Option<String> {
        let Some((glob, prefix)) = &self.repository_glob else {
            return (source_repository == self.from).then(|| self.to.clone());
        };
        if !glob.is_match(source_repository) {
            return None;
        }
        let rest = source_repository.strip_prefix(prefix.as_str())?;
        Some(join_repository(&self.to, rest))
    }
}

/// `prefix/rest`, or `rest` without a prefix.
pub(crate) fn join_repository(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else if rest.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}
