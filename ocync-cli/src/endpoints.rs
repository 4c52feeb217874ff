//! From configuration to the engine: registry aliases become clients (or layout
//! directories) with their credentials, and mappings become the engine's plan.

use std::collections::BTreeMap;

use anyhow::Context as _;

use ocync_transport::{
    ClientBuilder, Endpoint, Limits, Mapping, ReferrerPolicy, RegistryKind, SyncPlan, TagFilter,
    Target, UploadMode,
};

use crate::config::{self, Config};
use crate::credentials::{Cloud, Providers};

/// One engine endpoint per registry alias.
pub(crate) fn endpoints(config: &Config) -> anyhow::Result<BTreeMap<String, Endpoint>> {
    let providers = Providers::from_env()?;
    config
        .registries()
        .iter()
        .map(|(alias, registry)| Ok((alias.clone(), endpoint(registry, &providers)?)))
        .collect()
}

/// The endpoint of one configured registry.
pub(crate) fn endpoint(
    registry: &config::Registry,
    providers: &Providers,
) -> anyhow::Result<Endpoint> {
    let (host, scheme, path) = match &registry.endpoint {
        config::Endpoint::Layout { dir } => return Ok(Endpoint::Layouts(dir.clone())),
        config::Endpoint::Remote { host, scheme, path } => (host.clone(), *scheme, path),
    };
    let cloud = Cloud::detect(&host);
    // AWS_USE_FIPS_ENDPOINT moves the SDK to FIPS endpoints; the registry's data plane has its
    // own FIPS host, which the SDK does not know about.
    #[cfg(feature = "ecr")]
    let host = match &cloud {
        Cloud::Ecr(ecr) if fips_requested() && !ecr.is_fips() => ecr.fips_host(),
        _ => host,
    };
    let name = match path {
        Some(p) => format!("{host}/{p}"),
        None => host.clone(),
    };
    let credentials = providers.for_registry(registry, &host)?;
    let mut builder = ClientBuilder::new(&name)
        .scheme(scheme)
        .credentials(std::sync::Arc::new(credentials));
    #[cfg(feature = "ecr")]
    if let Cloud::Ecr(ecr) = &cloud
        && matches!(registry.auth_type, None | Some(config::AuthType::Ecr))
    {
        let provider = providers.ecr_provider(registry.aws_profile.clone());
        builder = builder.api(std::sync::Arc::new(
            crate::credentials::EcrRegistryApi::new(provider, ecr.clone()),
        ));
    }
    let _ = &cloud;
    builder = builder.create_repositories(registry.create_repositories);
    if !registry.tls_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &registry.ca_file {
        builder = builder.ca_file(ca);
    }
    let mut limits =
        Limits::for_kind(RegistryKind::detect(&host)).max_concurrent(registry.max_concurrent);
    for (group, rate) in &registry.rate_limits {
        limits = limits.rate(*group, *rate);
    }
    builder = builder.limits(limits);
    if let Some(chunk_size) = registry.chunk_size {
        builder = builder.upload_mode(UploadMode::Chunked { chunk_size });
    }
    let client = builder
        .build()
        .with_context(|| format!("registry '{}' ({})", registry.alias, registry.url))?;
    Ok(Endpoint::Registry(client))
}

/// `AWS_USE_FIPS_ENDPOINT=true`, as the AWS SDKs read it.
#[cfg(feature = "ecr")]
fn fips_requested() -> bool {
    std::env::var("AWS_USE_FIPS_ENDPOINT").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The engine's plan for a configuration.
pub(crate) fn plan(
    config: &Config,
    endpoints: &BTreeMap<String, Endpoint>,
) -> anyhow::Result<SyncPlan> {
    let mut plan = SyncPlan::default();
    for m in config.mappings() {
        let source = endpoints
            .get(&m.source)
            .with_context(|| format!("mapping {}: unknown source '{}'", m.index, m.source))?
            .clone();
        let targets = m
            .targets
            .iter()
            .map(|alias| {
                let endpoint = endpoints
                    .get(alias)
                    .with_context(|| format!("mapping {}: unknown target '{alias}'", m.index))?
                    .clone();
                Ok(Target::new(alias.clone(), endpoint, m.to.clone()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let filter = TagFilter::new(m.tags.as_ref(), m.default_tags.as_ref())
            .with_context(|| format!("mapping {} ({})", m.index, m.from))?;
        let mut referrers = ReferrerPolicy::default();
        referrers.enabled = m.artifacts.enabled;
        referrers.include.clone_from(&m.artifacts.include);
        referrers.exclude.clone_from(&m.artifacts.exclude);
        referrers.required = m.artifacts.require_artifacts;
        let label = format!(
            "{} -> {}",
            m.from,
            if m.to.is_empty() {
                m.from.as_str()
            } else {
                m.to.as_str()
            }
        );
        plan.mappings.push(
            Mapping::new(source, m.from.clone(), targets, filter)
                .glob(m.glob)
                .label(label)
                .platforms(m.platforms.clone())
                .referrers(referrers),
        );
    }
    Ok(plan)
}
