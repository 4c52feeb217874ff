//! From configuration to the engine: registry aliases become clients (or layout
//! directories) with their credentials, and mappings become the engine's plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use ocync_auth::{
    AnonymousProvider, Credential, CredentialProvider, DockerConfigProvider, StaticProvider,
};
use ocync_transport::{
    ClientBuilder, Endpoint, Mapping, ReferrerPolicy, SyncPlan, TagFilter, Target, UploadMode,
};

use crate::config::{self, AuthType, Config};

/// One engine endpoint per registry alias.
pub(crate) fn endpoints(config: &Config) -> anyhow::Result<BTreeMap<String, Endpoint>> {
    let docker: Arc<dyn CredentialProvider> =
        Arc::new(DockerConfigProvider::from_env().context("cannot read docker's config.json")?);
    config
        .registries()
        .iter()
        .map(|(alias, registry)| Ok((alias.clone(), endpoint(registry, &docker)?)))
        .collect()
}

/// The endpoint of one configured registry.
pub(crate) fn endpoint(
    registry: &config::Registry,
    docker: &Arc<dyn CredentialProvider>,
) -> anyhow::Result<Endpoint> {
    let (host, scheme, path) = match &registry.endpoint {
        config::Endpoint::Layout { dir } => return Ok(Endpoint::Layouts(dir.clone())),
        config::Endpoint::Remote { host, scheme, path } => (host, *scheme, path),
    };
    let name = match path {
        Some(p) => format!("{host}/{p}"),
        None => host.clone(),
    };
    let credentials: Arc<dyn CredentialProvider> = match registry.auth_type {
        Some(AuthType::Anonymous) => Arc::new(AnonymousProvider),
        Some(AuthType::Basic) => {
            let c = registry.credentials.as_ref().with_context(|| {
                format!(
                    "registry '{}': auth_type basic needs credentials",
                    registry.alias
                )
            })?;
            Arc::new(StaticProvider::new(Credential::basic(
                c.username.clone(),
                c.password.expose(),
            )))
        }
        Some(AuthType::StaticToken) => {
            let token = registry.token.as_ref().with_context(|| {
                format!(
                    "registry '{}': auth_type static_token needs a token",
                    registry.alias
                )
            })?;
            Arc::new(StaticProvider::new(Credential::Bearer {
                token: token.expose().into(),
            }))
        }
        // Docker's config.json, whose credential helpers (docker-credential-ecr-login,
        // docker-credential-acr-env, docker-credential-gcloud) also serve the cloud registries.
        _ => docker.clone(),
    };
    let mut builder = ClientBuilder::new(&name)
        .scheme(scheme)
        .credentials(credentials);
    if !registry.tls_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &registry.ca_file {
        builder = builder.ca_file(ca);
    }
    if let Some(chunk_size) = registry.chunk_size {
        builder = builder.upload_mode(UploadMode::Chunked { chunk_size });
    }
    let client = builder
        .build()
        .with_context(|| format!("registry '{}' ({})", registry.alias, registry.url))?;
    Ok(Endpoint::Registry(client))
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
