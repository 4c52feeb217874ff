//! Validation: turns the file as written ([`RawConfig`]) into the resolved view, reporting every
//! problem (not only the first) by key path. Nothing here touches the network; the only file
//! system access is checking that `ca_file`s exist.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use globset::Glob;
use ocync_core::PlatformFilter;
use ocync_transport::{ActionGroup, ErrorKind, Rate, Scheme, TagFilter, TagRules, TagSort};

use super::model::{
    Artifacts, AuthType, Credentials, DEFAULT_CACHE_TTL, DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_CONCURRENT_TRANSFERS, Endpoint, Global, Registry, ResolvedMapping, Secret,
    join_repository,
};
use super::raw::{
    OneOrMany, RawArtifacts, RawAuthType, RawConfig, RawGlobal, RawMapping, RawRate, RawRegistry,
    RawSort, RawTags, Targets,
};
use super::units::{parse_duration, parse_size};

/// A problem at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Key path (`mappings[2].source`).
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
}

/// The outcome of validation.
#[derive(Debug)]
pub(crate) struct Checked {
    /// Errors; the resolved parts are meaningless when there are any.
    pub(crate) errors: Vec<Problem>,
    /// Warnings.
    pub(crate) warnings: Vec<Problem>,
    /// Global settings.
    pub(crate) global: Global,
    /// Registries by alias.
    pub(crate) registries: BTreeMap<String, Registry>,
    /// Target groups by name.
    pub(crate) target_groups: BTreeMap<String, Vec<String>>,
    /// Resolved mappings.
    pub(crate) mappings: Vec<ResolvedMapping>,
}

/// Validate and resolve. `dir` is the configuration file's directory (absolute).
pub(crate) fn check(raw: RawConfig, dir: &Path) -> Checked {
    let mut c = Checker {
        dir,
        errors: Vec::new(),
        warnings: Vec::new(),
        registries: BTreeMap::new(),
        aliases: BTreeSet::new(),
        groups: BTreeMap::new(),
    };
    let global = c.global(raw.global.unwrap_or_default());
    let raw_registries = raw.registries.unwrap_or_default();
    c.aliases = raw_registries.keys().cloned().collect();
    for (alias, r) in raw_registries {
        if let Some(reg) = c.registry(&alias, r) {
            c.registries.insert(alias, reg);
        }
    }
    let raw_groups = raw.target_groups.unwrap_or_default();
    c.target_groups(&raw_groups);
    let defaults = raw.defaults.unwrap_or_default();
    let d = Defaults {
        source_given: defaults.source.is_some(),
        source: defaults
            .source
            .as_deref()
            .and_then(|s| c.usable(s, "defaults.source").then(|| s.to_owned())),
        targets_given: defaults.targets.is_some(),
        targets: defaults
            .targets
            .as_ref()
            .and_then(|t| c.targets(t, "defaults.targets", &raw_groups)),
        tags: defaults
            .tags
            .as_ref()
            .and_then(|t| c.tags(t, "defaults.tags")),
        platforms: c.platforms(defaults.platforms.as_deref(), "defaults.platforms"),
        artifacts: defaults
            .artifacts
            .as_ref()
            .and_then(|a| c.artifacts(a, "defaults.artifacts")),
    };
    let mut mappings = Vec::new();
    match raw.mappings {
        None => c.error(
            "mappings",
            "no `mappings`: list what to copy, e.g. `mappings: [{from: library/nginx}]`".to_owned(),
        ),
        Some(list) if list.is_empty() => c.warn(
            "mappings",
            "`mappings` is empty: there is nothing to copy".to_owned(),
        ),
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                if let Some(r) = c.mapping(i, m, &d, &raw_groups) {
                    mappings.push(r);
                }
            }
        }
    }
    c.conflicts(&mappings);
    Checked {
        errors: c.errors,
        warnings: c.warnings,
        global,
        registries: c.registries,
        target_groups: c.groups,
        mappings,
    }
}

struct Defaults {
    source_given: bool,
    source: Option<String>,
    targets_given: bool,
    targets: Option<Vec<String>>,
    tags: Option<TagRules>,
    platforms: Option<Option<Vec<PlatformFilter>>>,
    artifacts: Option<Artifacts>,
}

struct Checker<'a> {
    dir: &'a Path,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    registries: BTreeMap<String, Registry>,
    /// Every alias defined, valid or not.
    aliases: BTreeSet<String>,
    groups: BTreeMap<String, Vec<String>>,
}

impl Checker<'_> {
    fn error(&mut self, path: impl Into<String>, message: String) {
        self.errors.push(Problem {
            path: path.into(),
            message,
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: String) {
        self.warnings.push(Problem {
            path: path.into(),
            message,
        });
    }

    fn global(&mut self, g: RawGlobal) -> Global {
        let p = "global";
        let max_concurrent_transfers = match g.max_concurrent_transfers {
            None => DEFAULT_MAX_CONCURRENT_TRANSFERS,
            Some(0) => {
                self.error(
                    format!("{p}.max_concurrent_transfers"),
                    "must be at least 1".to_owned(),
                );
                DEFAULT_MAX_CONCURRENT_TRANSFERS
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let cache_dir = match g.cache_dir.as_deref() {
            None => self.dir.join(".ocync").join("cache"),
            Some("") => {
                self.error(
                    format!("{p}.cache_dir"),
                    "is empty: omit it for the default (.ocync/cache next to this file)".to_owned(),
                );
                PathBuf::new()
            }
            Some(d) => clean(&self.dir.join(d)),
        };
        let cache_ttl = match &g.cache_ttl {
            None => Some(DEFAULT_CACHE_TTL),
            Some(t) => match parse_duration(&t.0) {
                Ok(Duration::ZERO) => None,
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(format!("{p}.cache_ttl"), e);
                    None
                }
            },
        };
        let staging_size_limit = match &g.staging_size_limit {
            None => None,
            Some(t) => match parse_size(&t.0) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.error(format!("{p}.staging_size_limit"), e);
                    None
                }
            },
        };
        Global {
            max_concurrent_transfers,
            cache_dir,
            cache_ttl,
            staging_size_limit,
        }
    }

    fn registry(&mut self, alias: &str, r: RawRegistry) -> Option<Registry> {
        let p = format!("registries.{alias}");
        let errors_before = self.errors.len();
        if alias.trim().is_empty() {
            self.error(&p, "a registry alias is empty".to_owned());
        }
        let endpoint = match parse_url(&r.url, self.dir) {
            Ok(e) => Some(e),
            Err(e) => {
                self.error(format!("{p}.url"), e);
                None
            }
        };
        let auth_type = r.auth_type.map(|a| match a {
            RawAuthType::Ecr => AuthType::Ecr,
            RawAuthType::EcrPublic => AuthType::EcrPublic,
            RawAuthType::Gar => AuthType::Gar,
            RawAuthType::Gcr => AuthType::Gcr,
            RawAuthType::Acr => AuthType::Acr,
            RawAuthType::Ghcr | RawAuthType::DockerConfig => AuthType::DockerConfig,
            RawAuthType::Anonymous => AuthType::Anonymous,
            RawAuthType::Basic => AuthType::Basic,
            RawAuthType::StaticToken => AuthType::StaticToken,
        });
        if r.auth_type == Some(RawAuthType::Ghcr) {
            self.warn(
                format!("{p}.auth_type"),
                "`ghcr` is deprecated: write `docker_config` (same behaviour)".to_owned(),
            );
        }

        let mut scheme = Scheme::Auto;
        let mut path = None;
        match &endpoint {
            Some(Endpoint::Layout { .. }) => {
                let settings = [
                    ("auth_type", r.auth_type.is_some()),
                    ("credentials", r.credentials.is_some()),
                    ("token", r.token.is_some()),
                    ("aws_profile", r.aws_profile.is_some()),
                    ("insecure", r.insecure.is_some()),
                    ("tls_verify", r.tls_verify.is_some()),
                    ("ca_file", r.ca_file.is_some()),
                    ("chunk_size", r.chunk_size.is_some()),
                    ("create_repositories", r.create_repositories.is_some()),
                ];
                for (key, _) in settings.iter().filter(|(_, present)| *present) {
                    self.error(
                        format!("{p}.{key}"),
                        format!(
                            "`{key}` does not apply to an oci: layout directory (no network, no authentication)"
                        ),
                    );
                }
            }
            Some(Endpoint::Remote {
                scheme: url_scheme,
                path: url_path,
                ..
            }) => {
                // A path places every repository under it (the ACR emulator's
                // `localhost:<port>/<registry>` login server); it must be a repository path.
                path.clone_from(url_path);
                if let Some(url_path) = url_path
                    && let Err(e) = ocync_core::validate_repository(url_path)
                {
                    self.error(
                        format!("{p}.url"),
                        format!("the path '/{url_path}' is not a repository path: {e}"),
                    );
                }
                scheme = *url_scheme;
                match (r.insecure, url_scheme) {
                    (Some(true), Scheme::Https) => self.error(
                        format!("{p}.insecure"),
                        "`insecure: true` (plain HTTP) contradicts the https:// url".to_owned(),
                    ),
                    (Some(false), Scheme::Http) => self.error(
                        format!("{p}.insecure"),
                        "`insecure: false` contradicts the http:// url".to_owned(),
                    ),
                    (Some(true), _) => scheme = Scheme::Http,
                    _ => {}
                }
                if scheme == Scheme::Http {
                    if r.tls_verify == Some(false) {
                        self.error(
                            format!("{p}.tls_verify"),
                            "has no effect: this registry is reached over plain HTTP".to_owned(),
                        );
                    }
                    if r.ca_file.is_some() {
                        self.error(
                            format!("{p}.ca_file"),
                            "has no effect: this registry is reached over plain HTTP".to_owned(),
                        );
                    }
                }
            }
            None => {}
        }
        let endpoint = endpoint.map(|e| match e {
            Endpoint::Remote { host, .. } => Endpoint::Remote { host, scheme, path },
            layout => layout,
        });

        if let Some(0) = r.max_concurrent {
            self.error(
                format!("{p}.max_concurrent"),
                "must be at least 1".to_owned(),
            );
        }
        let credentials = r.credentials.as_ref().and_then(|c| {
            let mut ok = true;
            let present = [
                (
                    "username",
                    c.username.as_deref().is_some_and(|u| !u.is_empty()),
                ),
                (
                    "password",
                    c.password.as_ref().is_some_and(|p| !p.is_empty()),
                ),
            ];
            for (key, _) in present.iter().filter(|(_, present)| !present) {
                self.error(
                    format!("{p}.credentials.{key}"),
                    format!("`{key}` is missing or empty"),
                );
                ok = false;
            }
            ok.then(|| Credentials {
                username: c.username.clone().unwrap_or_default(),
                password: c
                    .password
                    .clone()
                    .unwrap_or_else(|| Secret::new(String::new())),
            })
        });
        match auth_type {
            Some(AuthType::Basic) if r.credentials.is_none() => self.error(
                format!("{p}.auth_type"),
                "`auth_type: basic` needs `credentials` (username and password)".to_owned(),
            ),
            Some(AuthType::StaticToken) if r.token.as_ref().is_none_or(Secret::is_empty) => self
                .error(
                    format!("{p}.auth_type"),
                    "`auth_type: static_token` needs a non-empty `token`".to_owned(),
                ),
            _ => {}
        }
        let layout = matches!(endpoint, Some(Endpoint::Layout { .. }));
        if r.credentials.is_some() && auth_type != Some(AuthType::Basic) && !layout {
            self.warn(
                format!("{p}.credentials"),
                "ignored: credentials are used only with `auth_type: basic`".to_owned(),
            );
        }
        if r.token.is_some() && auth_type != Some(AuthType::StaticToken) && !layout {
            self.warn(
                format!("{p}.token"),
                "ignored: `token` is used only with `auth_type: static_token`".to_owned(),
            );
        }
        if let Some(profile) = &r.aws_profile {
            if profile.trim().is_empty() {
                self.error(format!("{p}.aws_profile"), "is empty".to_owned());
            } else if auth_type != Some(AuthType::Ecr) && !layout {
                self.error(
                    format!("{p}.aws_profile"),
                    "`aws_profile` needs an explicit `auth_type: ecr`".to_owned(),
                );
            }
        }
        let tls_verify = r.tls_verify.unwrap_or(true);
        if !tls_verify && !layout && scheme != Scheme::Http {
            self.warn(
                format!("{p}.tls_verify"),
                "TLS certificates of this registry are not verified".to_owned(),
            );
        }
        let ca_file = match r.ca_file.as_deref() {
            None => None,
            Some(_) if layout => None,
            Some("") => {
                self.error(format!("{p}.ca_file"), "is empty".to_owned());
                None
            }
            Some(f) => {
                let path = clean(&self.dir.join(f));
                if !tls_verify {
                    self.error(
                        format!("{p}.ca_file"),
                        "has no effect with `tls_verify: false`".to_owned(),
                    );
                } else if !path.is_file() {
                    let what = if path.exists() {
                        "is not a file"
                    } else {
                        "does not exist"
                    };
                    self.error(
                        format!("{p}.ca_file"),
                        format!("'{}' {what}", path.display()),
                    );
                }
                Some(path)
            }
        };
        let chunk_size = match &r.chunk_size {
            None => None,
            Some(_) if layout => None,
            Some(t) => match parse_size(&t.0) {
                Ok(0) => {
                    self.error(
                        format!("{p}.chunk_size"),
                        "must be more than 0 (omit it to upload each blob in one request)"
                            .to_owned(),
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(e) => {
                    self.error(format!("{p}.chunk_size"), e);
                    None
                }
            },
        };
        let rate_limits = self.rate_limits(&p, r.rate_limits.as_ref());
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Registry {
            alias: alias.to_owned(),
            url: r.url.clone(),
            endpoint: endpoint?,
            auth_type,
            max_concurrent: r.max_concurrent.map_or(DEFAULT_MAX_CONCURRENT, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            credentials,
            token: r.token,
            head_first: r.head_first.unwrap_or(false),
            aws_profile: r.aws_profile,
            tls_verify,
            ca_file,
            chunk_size,
            create_repositories: r.create_repositories.unwrap_or(false),
            rate_limits,
        })
    }

    /// `rate_limits`: each entry names an action group (unknown names are reported by the key
    /// check) and gives a positive rate, a rate with a burst of at least 1, or `off`.
    fn rate_limits(
        &mut self,
        p: &str,
        raw: Option<&std::collections::BTreeMap<String, RawRate>>,
    ) -> Vec<(ActionGroup, Option<Rate>)> {
        let mut out = Vec::new();
        for (name, value) in raw.into_iter().flatten() {
            let at = format!("{p}.rate_limits.{name}");
            let Some(group) = ActionGroup::from_name(name) else {
                continue;
            };
            let (per_second, burst) = match value {
                RawRate::Word(w) if w == "off" => {
                    out.push((group, None));
                    continue;
                }
                RawRate::Word(w) => {
                    self.error(
                        at,
                        format!("'{w}' is not a rate: write requests per second (e.g. 8), `{{ rate: 8, burst: 10 }}`, or `off`"),
                    );
                    continue;
                }
                RawRate::PerSecond(rate) => (*rate, None),
                RawRate::Shaped(shape) => (shape.rate, shape.burst),
            };
            if !(per_second.is_finite() && per_second > 0.0) {
                self.error(
                    at,
                    format!("{per_second} requests per second: must be more than 0 (use `off` for no fixed limit)"),
                );
                continue;
            }
            if burst == Some(0) {
                self.error(format!("{at}.burst"), "must be at least 1".to_owned());
                continue;
            }
            // Without a burst, allow one second's worth at once, as the registries' own
            // token buckets do.
            let burst = burst.unwrap_or(per_second.ceil() as u64);
            out.push((
                group,
                Some(Rate::new(
                    per_second,
                    u32::try_from(burst).unwrap_or(u32::MAX),
                )),
            ));
        }
        out
    }

    /// `known: a, b` or `no registries are defined`.
    fn registry_list(&self) -> String {
        if self.aliases.is_empty() {
            "no registries are defined".to_owned()
        } else {
            format!("known: {}", self.registry_names())
        }
    }

    fn registry_names(&self) -> String {
        let names: Vec<&str> = self.aliases.iter().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Whether `alias` names a valid registry. An unknown alias is reported at `path`; a
    /// registry with errors of its own is not reported again.
    fn usable(&mut self, alias: &str, path: &str) -> bool {
        if self.registries.contains_key(alias) {
            return true;
        }
        if !self.aliases.contains(alias) {
            let message = format!("unknown registry '{alias}' ({})", self.registry_list());
            self.error(path, message);
        }
        false
    }

    fn target_groups(&mut self, raw: &BTreeMap<String, Vec<String>>) {
        for (name, members) in raw {
            let p = format!("target_groups.{name}");
            if members.is_empty() {
                self.error(&p, "the target group is empty".to_owned());
                continue;
            }
            if self.registries.contains_key(name) {
                self.warn(
                    &p,
                    format!(
                        "the group has the name of a registry: `targets: {name}` means the group"
                    ),
                );
            }
            let mut list: Vec<String> = Vec::new();
            for (i, alias) in members.iter().enumerate() {
                if list.contains(alias) {
                    self.error(format!("{p}[{i}]"), format!("'{alias}' is listed twice"));
                } else if self.usable(alias, &format!("{p}[{i}]")) {
                    list.push(alias.clone());
                }
            }
            self.groups.insert(name.clone(), list);
        }
    }

    /// Resolve `targets` to aliases (`None` after reporting an error).
    fn targets(
        &mut self,
        t: &Targets,
        path: &str,
        raw_groups: &BTreeMap<String, Vec<String>>,
    ) -> Option<Vec<String>> {
        match t {
            Targets::One(name) => {
                if let Some(members) = raw_groups.get(name) {
                    // The group's own problems are reported at the group.
                    let group = self.groups.get(name)?;
                    return (group.len() == members.len()).then(|| group.clone());
                }
                if self.aliases.contains(name) {
                    return self
                        .registries
                        .contains_key(name)
                        .then(|| vec![name.clone()]);
                }
                let groups: Vec<&str> = raw_groups.keys().map(String::as_str).collect();
                let groups = if groups.is_empty() {
                    "no target groups are defined".to_owned()
                } else {
                    format!("groups: {}", groups.join(", "))
                };
                let message = format!(
                    "unknown target group or registry '{name}' ({groups}; registries: {})",
                    self.registry_names()
                );
                self.error(path, message);
                None
            }
            Targets::Many(list) => {
                if list.is_empty() {
                    self.error(path, "the list of targets is empty".to_owned());
                    return None;
                }
                let mut out: Vec<String> = Vec::new();
                let mut ok = true;
                for (i, alias) in list.iter().enumerate() {
                    let item = format!("{path}[{i}]");
                    if out.contains(alias) {
                        self.error(item, format!("'{alias}' is listed twice"));
                        ok = false;
                    } else if raw_groups.contains_key(alias) && !self.aliases.contains(alias) {
                        self.error(
                            item,
                            format!(
                                "'{alias}' is a target group; a list names registries (write `targets: {alias}` to use the group)"
                            ),
                        );
                        ok = false;
                    } else if self.usable(alias, &item) {
                        out.push(alias.clone());
                    } else {
                        ok = false;
                    }
                }
                ok.then_some(out)
            }
        }
    }

    fn tags(&mut self, t: &RawTags, path: &str) -> Option<TagRules> {
        let before = self.errors.len();
        let patterns = |key: &str, list: &Option<OneOrMany>, this: &mut Self| -> Vec<String> {
            let Some(list) = list else { return Vec::new() };
            for (i, pattern) in list.0.iter().enumerate() {
                let item = if list.1 {
                    format!("{path}.{key}[{i}]")
                } else {
                    format!("{path}.{key}")
                };
                if let Err(e) = check_glob(pattern) {
                    this.error(item, e);
                }
            }
            list.0.clone()
        };
        let glob = patterns("glob", &t.glob, self);
        let include = patterns("include", &t.include, self);
        let exclude = patterns("exclude", &t.exclude, self);
        if let Some(pattern) = &t.immutable_tags
            && let Err(e) = check_glob(pattern)
        {
            self.error(format!("{path}.immutable_tags"), e);
        }
        if let Some(range) = &t.semver {
            let mut probe = TagRules::default();
            probe.semver = Some(range.clone());
            if let Some((_, message)) = filter_error(Some(&probe), None) {
                self.error(format!("{path}.semver"), message);
            }
        }
        match (t.latest, t.sort) {
            (Some(0), _) => self.error(
                format!("{path}.latest"),
                "`latest: 0` keeps no tags; use at least 1 (or remove it)".to_owned(),
            ),
            (Some(_), None) => self.error(
                format!("{path}.latest"),
                "`latest` needs `sort` in the same tags block (a `sort` elsewhere does not count): add `sort: semver` or `sort: alpha`".to_owned(),
            ),
            _ => {}
        }
        if self.errors.len() > before {
            return None;
        }
        let mut rules = TagRules::default();
        rules.glob = glob;
        rules.include = include;
        rules.semver = t.semver.clone();
        rules.exclude = exclude;
        rules.sort = t.sort.map(|s| match s {
            RawSort::Semver => TagSort::Semver,
            RawSort::Alpha => TagSort::Alpha,
        });
        rules.latest = t.latest.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        rules.min_tags = t.min_tags.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        rules.immutable_tags = t.immutable_tags.clone();
        // Whatever the checks above missed, the engine's filter would reject: same verdict.
        if let Some((field, message)) = filter_error(Some(&rules), None) {
            self.error(format!("{path}.{field}"), message);
            return None;
        }
        Some(rules)
    }

    /// `None` after an error; `Some(None)` when absent.
    fn platforms(
        &mut self,
        raw: Option<&[String]>,
        path: &str,
    ) -> Option<Option<Vec<PlatformFilter>>> {
        let Some(list) = raw else { return Some(None) };
        if list.is_empty() {
            self.error(
                path,
                "the list of platforms is empty: omit `platforms` to copy every platform"
                    .to_owned(),
            );
            return None;
        }
        let mut out: Vec<PlatformFilter> = Vec::new();
        let mut ok = true;
        for (i, p) in list.iter().enumerate() {
            match p.parse::<PlatformFilter>() {
                Ok(f) if out.contains(&f) => {
                    self.warn(format!("{path}[{i}]"), format!("'{p}' is listed twice"));
                }
                Ok(f) => out.push(f),
                Err(e) => {
                    self.error(format!("{path}[{i}]"), e.to_string());
                    ok = false;
                }
            }
        }
        ok.then_some(Some(out))
    }

    fn artifacts(&mut self, a: &RawArtifacts, path: &str) -> Option<Artifacts> {
        if a.require_artifacts && !a.enabled {
            self.error(
                format!("{path}.require_artifacts"),
                "`require_artifacts: true` contradicts `enabled: false`".to_owned(),
            );
            return None;
        }
        for (key, list) in [("include", &a.include), ("exclude", &a.exclude)] {
            for (i, t) in list.iter().enumerate() {
                if !t.contains('/') {
                    self.warn(
                        format!("{path}.{key}[{i}]"),
                        format!(
                            "'{t}' is not a media type (type/subtype), so it matches no artifact type"
                        ),
                    );
                }
            }
        }
        Some(Artifacts {
            enabled: a.enabled,
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            require_artifacts: a.require_artifacts,
        })
    }

    fn mapping(
        &mut self,
        i: usize,
        m: &RawMapping,
        d: &Defaults,
        raw_groups: &BTreeMap<String, Vec<String>>,
    ) -> Option<ResolvedMapping> {
        let p = format!("mappings[{i}]");
        let before = self.errors.len();
        let glob = is_glob(&m.from);

        // Repositories.
        let mut repository_glob = None;
        let to = if glob {
            match Glob::new(&m.from) {
                Ok(g) => {
                    let prefix = literal_prefix(&m.from).to_owned();
                    let trimmed = prefix.trim_end_matches('/');
                    if !trimmed.is_empty()
                        && let Err(e) = ocync_core::validate_repository(trimmed)
                    {
                        self.error(format!("{p}.from"), repository_message(&e));
                    }
                    repository_glob = Some((g.compile_matcher(), prefix));
                }
                Err(e) => self.error(
                    format!("{p}.from"),
                    format!("invalid repository glob '{}': {}", m.from, e.kind()),
                ),
            }
            match &m.to {
                Some(to) => {
                    let to = to.trim_end_matches('/');
                    if is_glob(to) {
                        self.error(
                            format!("{p}.to"),
                            "for a repository glob, `to` is a prefix and has no glob characters"
                                .to_owned(),
                        );
                    } else if !to.is_empty()
                        && let Err(e) = ocync_core::validate_repository(to)
                    {
                        self.error(format!("{p}.to"), repository_message(&e));
                    }
                    to.to_owned()
                }
                None => literal_prefix(&m.from).trim_end_matches('/').to_owned(),
            }
        } else {
            if let Err(message) = check_repository(&m.from) {
                self.error(format!("{p}.from"), message);
            }
            match &m.to {
                Some(to) => {
                    if let Err(message) = check_repository(to) {
                        self.error(format!("{p}.to"), message);
                    }
                    to.clone()
                }
                None => m.from.clone(),
            }
        };

        // Source and targets.
        let source = match &m.source {
            Some(s) => self.usable(s, &format!("{p}.source")).then(|| s.clone()),
            None => {
                if !d.source_given {
                    self.error(
                        &p,
                        "no source registry: set `source` on this mapping or `defaults.source`"
                            .to_owned(),
                    );
                }
                d.source.clone()
            }
        };
        let targets = match &m.targets {
            Some(t) => self.targets(t, &format!("{p}.targets"), raw_groups),
            None => {
                if !d.targets_given {
                    self.error(
                        &p,
                        "no targets: set `targets` on this mapping or `defaults.targets`"
                            .to_owned(),
                    );
                }
                d.targets.clone()
            }
        };
        if let (true, Some(src)) = (glob, source.as_deref())
            && self.registries.get(src).is_some_and(Registry::is_layout)
        {
            self.error(
                format!("{p}.from"),
                format!(
                    "a repository glob needs a registry that lists its repositories; '{src}' is an oci: directory"
                ),
            );
        }
        if let (Some(src), Some(targets)) = (source.as_deref(), targets.as_ref()) {
            self.same_storage(&p, m, src, targets, &to);
        }

        // Filters.
        let tags = match &m.tags {
            Some(t) => self.tags(t, &format!("{p}.tags")),
            None => None,
        };
        let platforms = match &m.platforms {
            Some(list) => self.platforms(Some(list), &format!("{p}.platforms")),
            None => d.platforms.clone(),
        };
        let artifacts = match &m.artifacts {
            Some(a) => self.artifacts(a, &format!("{p}.artifacts")),
            None => Some(d.artifacts.clone().unwrap_or_default()),
        };
        if self.errors.len() == before
            && let Some((_, message)) = filter_error(tags.as_ref(), d.tags.as_ref())
        {
            let at = if m.tags.is_some() { "tags" } else { "from" };
            self.error(format!("{p}.{at}"), message);
        }
        if self.errors.len() > before {
            return None;
        }
        Some(ResolvedMapping {
            index: i,
            from: m.from.clone(),
            to,
            glob,
            source: source?,
            targets: targets?,
            tags,
            default_tags: d.tags.clone(),
            platforms: platforms?,
            artifacts: artifacts?,
            repository_glob,
        })
    }

    /// Two targets that are one registry, or a target that is the source repository itself.
    fn same_storage(&mut self, p: &str, m: &RawMapping, src: &str, targets: &[String], to: &str) {
        let key = |c: &Self, alias: &str| c.registries.get(alias).map(Registry::storage_key);
        let Some(src_key) = key(self, src) else {
            return;
        };
        let mut seen: HashMap<String, &str> = HashMap::new();
        for t in targets {
            let Some(t_key) = key(self, t) else { continue };
            if let Some(other) = seen.insert(t_key.clone(), t.as_str()) {
                self.error(
                    format!("{p}.targets"),
                    format!("'{other}' and '{t}' are the same registry ({t_key}): the mapping would write each repository twice"),
                );
            }
            let same_repo = if is_glob(&m.from) {
                to == literal_prefix(&m.from).trim_end_matches('/')
            } else {
                to == m.from
            };
            if t_key == src_key && same_repo {
                self.error(
                    format!("{p}.targets"),
                    format!(
                        "target '{t}' is the source registry and `to` is `from`: the mapping would copy '{}' onto itself",
                        m.from
                    ),
                );
            }
        }
    }

    /// Mappings that write the same target repository from different sources.
    fn conflicts(&mut self, mappings: &[ResolvedMapping]) {
        struct Writer<'m> {
            mapping: &'m ResolvedMapping,
            source_key: String,
        }
        let key = |alias: &str| {
            self.registries
                .get(alias)
                .map(Registry::storage_key)
                .unwrap_or_default()
        };
        let mut writers: HashMap<(String, String), Vec<Writer<'_>>> = HashMap::new();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for m in mappings.iter().filter(|m| !m.glob) {
            for t in &m.targets {
                let slot = writers.entry((key(t), m.to.clone())).or_default();
                let source_key = key(&m.source);
                for w in slot.iter() {
                    let at = format!("mappings[{}].to", m.index);
                    if w.source_key != source_key || w.mapping.from != m.from {
                        problems.push(Problem {
                            path: at,
                            message: format!(
                                "mappings[{}] also writes '{}' in '{t}', from another source ({}/{}): two mappings would fight over one repository",
                                w.mapping.index, m.to, w.mapping.source, w.mapping.from
                            ),
                        });
                    } else if same_selection(w.mapping, m) {
                        warnings.push(Problem {
                            path: at,
                            message: format!("repeats mappings[{}]", w.mapping.index),
                        });
                    }
                }
                slot.push(Writer {
                    mapping: m,
                    source_key,
                });
            }
        }
        // A glob mapping may write what an exact mapping writes; whether it does depends on
        // the source catalog, so this is a warning.
        for g in mappings.iter().filter(|m| m.glob) {
            for e in mappings.iter().filter(|m| !m.glob) {
                let Some(shared) = g
                    .targets
                    .iter()
                    .find(|t| e.targets.iter().any(|u| key(u) == key(t)))
                else {
                    continue;
                };
                let Some((_, prefix)) = &g.repository_glob else {
                    continue;
                };
                let rest = if g.to.is_empty() {
                    Some(e.to.as_str())
                } else {
                    e.to.strip_prefix(&format!("{}/", g.to))
                };
                let Some(rest) = rest else { continue };
                let candidate = format!("{prefix}{rest}");
                if g.target_repository(&candidate).as_deref() != Some(e.to.as_str()) {
                    continue;
                }
                if key(&g.source) != key(&e.source) || candidate != e.from {
                    warnings.push(Problem {
                        path: format!("mappings[{}].from", e.index),
                        message: format!(
                            "mappings[{}] ('{}') also writes '{}' in '{shared}' if {}/{candidate} exists: two mappings would fight over one repository",
                            g.index,
                            g.from,
                            join_repository(&g.to, rest),
                            g.source
                        ),
                    });
                }
            }
        }
        self.errors.extend(problems);
        self.warnings.extend(warnings);
    }
}

fn same_selection(a: &ResolvedMapping, b: &ResolvedMapping) -> bool {
    a.tags == b.tags && a.platforms == b.platforms && a.artifacts == b.artifacts
}

/// Whether a repository name is a glob.
fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The text before the first glob character, cut back after the last `/`.
fn literal_prefix(glob: &str) -> &str {
    let first = glob.find(['*', '?', '[']).unwrap_or(glob.len());
    glob[..first].rfind('/').map_or("", |i| &glob[..=i])
}

/// The engine's verdict on tag rules: `(field, message)` when it would refuse them.
fn filter_error(
    rules: Option<&TagRules>,
    defaults: Option<&TagRules>,
) -> Option<(&'static str, String)> {
    let err = TagFilter::new(rules, defaults).err()?;
    let field = match err.kind() {
        ErrorKind::InvalidFilter { field, .. } => field,
        _ => "tags",
    };
    Some((field, err.to_string()))
}

fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid glob '{pattern}': {}", e.kind()))
}

fn check_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    if name.contains('@')
        || name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    {
        return Err(format!(
            "'{name}' has a tag or digest: name the repository only and select tags with `tags`"
        ));
    }
    ocync_core::validate_repository(name).map_err(|e| repository_message(&e))
}

fn repository_message(e: &ocync_core::Error) -> String {
    match e {
        ocync_core::Error::InvalidReference { input, reason } => {
            format!("invalid repository '{input}': {reason}")
        }
        other => other.to_string(),
    }
}

/// Parse `url`: `[http://|https://]host[:port][/path]` or `oci:<directory>`.
fn parse_url(url: &str, dir: &Path) -> Result<Endpoint, String> {
    if url.trim().is_empty() {
        return Err("the url is empty".to_owned());
    }
    if url.trim() != url || url.chars().any(char::is_whitespace) {
        return Err(format!("the url '{url}' contains spaces"));
    }
    if let Some(path) = url.strip_prefix("oci:") {
        if path.is_empty() {
            return Err("`oci:` needs a directory: oci:<directory>".to_owned());
        }
        return Ok(Endpoint::Layout {
            dir: clean(&dir.join(path)),
        });
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "https" => (Scheme::Https, rest),
            "http" => (Scheme::Http, rest),
            _ => {
                return Err(format!(
                    "unsupported scheme '{s}://': write host[:port], https://host or http://host"
                ));
            }
        },
        None => (Scheme::Auto, url),
    };
    if rest.contains('@') {
        return Err(
            "the url contains user information: put credentials under `credentials`".to_owned(),
        );
    }
    if rest.contains(['?', '#']) {
        return Err(format!("the url '{url}' has a query or fragment"));
    }
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_matches('/')),
        None => (rest, ""),
    };
    check_host(host).map_err(|e| format!("invalid url '{url}': {e}"))?;
    Ok(Endpoint::Remote {
        host: host.to_ascii_lowercase(),
        scheme,
        path: (!path.is_empty()).then(|| path.to_owned()),
    })
}

/// `name[:port]` or `[ipv6][:port]`.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in the host".to_owned())?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{v6}' is not an IPv6 address"));
        }
        (None, after.strip_prefix(':').map(str::to_owned))
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (Some(n), Some(p.to_owned())),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!("'{name}' is not a valid host name"));
        }
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("'{port}' is not a valid port"));
    }
    Ok(())
}

/// Remove `.` and `..` components without touching the file system.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let dir = Path::new("/etc/ocync");
        let remote = |url: &str| match parse_url(url, dir) {
            Ok(Endpoint::Remote { host, scheme, path }) => (host, scheme, path),
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(remote("cgr.dev"), ("cgr.dev".into(), Scheme::Auto, None));
        assert_eq!(
            remote("HTTP://LocalHost:5000/"),
            ("localhost:5000".into(), Scheme::Http, None)
        );
        assert_eq!(
            remote("https://ghcr.io/owner"),
            ("ghcr.io".into(), Scheme::Https, Some("owner".into()))
        );
        assert_eq!(remote("[::1]:5000").0, "[::1]:5000");
        assert_eq!(
            parse_url("oci:../layouts", dir),
            Ok(Endpoint::Layout {
                dir: PathBuf::from("/etc/layouts")
            })
        );
        assert_eq!(
            parse_url("oci:/srv/x", dir),
            Ok(Endpoint::Layout {
                dir: PathBuf::from("/srv/x")
            })
        );
        let bad = [
            ("", "empty"),
            ("oci:", "needs a directory"),
            ("ftp://x", "unsupported scheme"),
            ("https://u:p@host", "user information"),
            ("host:99999", "not a valid port"),
            ("host:0", "not a valid port"),
            ("ho st", "spaces"),
            ("-bad.com", "not a valid host"),
            ("[zz]:1", "not an IPv6"),
            ("https://", "the host is empty"),
        ];
        for (url, want) in bad {
            let err = parse_url(url, dir).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn glob_prefixes_and_repositories() {
        assert_eq!(literal_prefix("library/*"), "library/");
        assert_eq!(literal_prefix("team/app-*"), "team/");
        assert_eq!(literal_prefix("*"), "");
        assert_eq!(literal_prefix("a/b/c?/d"), "a/b/");
        assert!(is_glob("a/[bc]") && !is_glob("a/b"));
        assert!(check_repository("library/nginx").is_ok());
        assert!(
            check_repository("nginx:1.25")
                .unwrap_err()
                .contains("tag or digest")
        );
        assert!(check_repository("Nginx").unwrap_err().contains("uppercase"));
        assert!(
            check_glob("v[1")
                .unwrap_err()
                .contains("invalid glob 'v[1'")
        );
        assert_eq!(clean(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
