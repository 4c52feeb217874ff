//! Which credential provider serves each registry: the configured `auth_type`, or, when it is
//! absent, one detected from the host (ECR, ECR Public, ACR), always after docker's
//! `config.json` so an explicit `docker login` or credential helper wins over ambient cloud
//! credentials.

use std::sync::Arc;

use anyhow::Context as _;

use ocync_auth::{
    AnonymousProvider, Credential, CredentialProvider, DockerConfigProvider, ProviderChain,
    StaticProvider,
};

use crate::config::{self, AuthType};

/// The cloud a registry host belongs to, when it is one ocync has native credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cloud {
    /// Amazon ECR (private).
    #[cfg(feature = "ecr")]
    Ecr(ocync_auth::EcrRegistry),
    /// Amazon ECR Public.
    #[cfg(feature = "ecr")]
    EcrPublic,
    /// Azure Container Registry.
    #[cfg(feature = "acr")]
    Acr,
    /// Anything else.
    Other,
}

impl Cloud {
    /// Detect from `host[:port]`.
    pub(crate) fn detect(host: &str) -> Cloud {
        #[cfg(feature = "ecr")]
        {
            if let Some(registry) = ocync_auth::EcrRegistry::parse(host) {
                return Cloud::Ecr(registry);
            }
            if ocync_auth::EcrRegistry::is_public(host) {
                return Cloud::EcrPublic;
            }
        }
        #[cfg(feature = "acr")]
        if ocync_auth::AzureCloud::matches(host) {
            return Cloud::Acr;
        }
        let _ = host;
        Cloud::Other
    }
}

/// Providers shared by every registry of a run (one AWS SDK setup per profile, one Entra
/// chain), built on first use.
#[derive(Debug)]
pub(crate) struct Providers {
    docker: Arc<dyn CredentialProvider>,
    #[cfg(feature = "ecr")]
    ecr: std::sync::Mutex<std::collections::HashMap<Option<String>, Arc<ocync_auth::EcrProvider>>>,
    #[cfg(feature = "acr")]
    acr: std::sync::OnceLock<Arc<dyn CredentialProvider>>,
}

impl Providers {
    /// Providers reading docker's `config.json` and the process environment.
    pub(crate) fn from_env() -> anyhow::Result<Providers> {
        Ok(Providers {
            docker: Arc::new(
                DockerConfigProvider::from_env().context("cannot read docker's config.json")?,
            ),
            #[cfg(feature = "ecr")]
            ecr: std::sync::Mutex::new(std::collections::HashMap::new()),
            #[cfg(feature = "acr")]
            acr: std::sync::OnceLock::new(),
        })
    }

    /// The providers for one configured registry on `host`, as a chain (whose `resolve` says
    /// which one answered).
    pub(crate) fn for_registry(
        &self,
        registry: &config::Registry,
        host: &str,
    ) -> anyhow::Result<ProviderChain> {
        let alias = &registry.alias;
        let single: Arc<dyn CredentialProvider> = match registry.auth_type {
            Some(AuthType::Anonymous) => Arc::new(AnonymousProvider),
            Some(AuthType::Basic) => {
                let c = registry.credentials.as_ref().with_context(|| {
                    format!("registry '{alias}': auth_type basic needs credentials")
                })?;
                Arc::new(StaticProvider::new(Credential::basic(
                    c.username.clone(),
                    c.password.expose(),
                )))
            }
            Some(AuthType::StaticToken) => {
                let token = registry.token.as_ref().with_context(|| {
                    format!("registry '{alias}': auth_type static_token needs a token")
                })?;
                Arc::new(StaticProvider::new(Credential::Bearer {
                    token: token.expose().into(),
                }))
            }
            #[cfg(feature = "ecr")]
            Some(AuthType::Ecr) => self.ecr(registry.aws_profile.clone()),
            #[cfg(feature = "ecr")]
            Some(AuthType::EcrPublic) => Arc::new(ocync_auth::EcrPublicProvider::new(
                ocync_auth::EcrOptions::new(),
            )),
            #[cfg(feature = "acr")]
            Some(AuthType::Acr) => self.acr()?,
            // GAR/GCR: docker's credential helper (docker-credential-gcloud) serves them.
            Some(AuthType::DockerConfig | AuthType::Gar | AuthType::Gcr) => self.docker.clone(),
            #[allow(
                unreachable_patterns,
                reason = "cloud variants exist only with their features"
            )]
            Some(other) => anyhow::bail!(
                "registry '{alias}': auth_type {other:?} needs ocync built with its feature (ecr, acr)"
            ),
            None => return self.detected(host),
        };
        Ok(ProviderChain::new().with_shared(single))
    }

    /// The chain for a registry without `auth_type`: docker's config first, then the cloud's
    /// own credentials.
    fn detected(&self, host: &str) -> anyhow::Result<ProviderChain> {
        let cloud: Option<Arc<dyn CredentialProvider>> = match Cloud::detect(host) {
            #[cfg(feature = "ecr")]
            Cloud::Ecr(_) => Some(self.ecr(None)),
            #[cfg(feature = "ecr")]
            Cloud::EcrPublic => Some(Arc::new(ocync_auth::EcrPublicProvider::new(
                ocync_auth::EcrOptions::new(),
            ))),
            #[cfg(feature = "acr")]
            Cloud::Acr => Some(self.acr()?),
            Cloud::Other => None,
        };
        let chain = ProviderChain::new().with_shared(self.docker.clone());
        Ok(match cloud {
            Some(cloud) => chain.with_shared(cloud),
            None => chain,
        })
    }

    #[cfg(feature = "ecr")]
    fn ecr(&self, profile: Option<String>) -> Arc<dyn CredentialProvider> {
        self.ecr_provider(profile)
    }

    /// The ECR provider of an AWS profile (`None`: the default chain), shared.
    #[cfg(feature = "ecr")]
    pub(crate) fn ecr_provider(&self, profile: Option<String>) -> Arc<ocync_auth::EcrProvider> {
        let mut providers = self.ecr.lock().expect("ecr providers");
        providers
            .entry(profile.clone())
            .or_insert_with(|| {
                let options = match profile {
                    Some(p) => ocync_auth::EcrOptions::new().aws_profile(p),
                    None => ocync_auth::EcrOptions::new(),
                };
                Arc::new(ocync_auth::EcrProvider::new(options))
            })
            .clone()
    }

    #[cfg(feature = "acr")]
    fn acr(&self) -> anyhow::Result<Arc<dyn CredentialProvider>> {
        if let Some(p) = self.acr.get() {
            return Ok(p.clone());
        }
        let provider: Arc<dyn CredentialProvider> =
            Arc::new(ocync_auth::AcrProvider::from_env().context("cannot set up ACR credentials")?);
        Ok(self.acr.get_or_init(|| provider).clone())
    }
}

/// ECR's control plane for the engine: `BatchCheckLayerAvailability` instead of a `HEAD` per
/// blob, and `CreateRepository` when the registry is configured with `create_repositories`.
#[cfg(feature = "ecr")]
#[derive(Debug)]
pub(crate) struct EcrRegistryApi {
    provider: Arc<ocync_auth::EcrProvider>,
    registry: ocync_auth::EcrRegistry,
    api: tokio::sync::OnceCell<ocync_auth::EcrApi>,
}

#[cfg(feature = "ecr")]
impl EcrRegistryApi {
    pub(crate) fn new(
        provider: Arc<ocync_auth::EcrProvider>,
        registry: ocync_auth::EcrRegistry,
    ) -> EcrRegistryApi {
        EcrRegistryApi {
            provider,
            registry,
            api: tokio::sync::OnceCell::new(),
        }
    }

    async fn api(&self) -> &ocync_auth::EcrApi {
        self.api
            .get_or_init(|| self.provider.api(&self.registry))
            .await
    }
}

#[cfg(feature = "ecr")]
impl ocync_transport::RegistryApi for EcrRegistryApi {
    fn name(&self) -> &'static str {
        "ecr"
    }

    fn blobs_present<'a>(
        &'a self,
        repository: &'a str,
        digests: &'a [ocync_core::Digest],
    ) -> ocync_auth::BoxFuture<
        'a,
        Result<std::collections::HashSet<ocync_core::Digest>, ocync_transport::Error>,
    > {
        Box::pin(async move {
            self.api()
                .await
                .batch_check_layers(repository, digests)
                .await
                .map_err(|e| {
                    ocync_transport::Error::api(
                        self.registry.host(),
                        "BatchCheckLayerAvailability",
                        e.to_string(),
                    )
                })
        })
    }

    fn create_repository<'a>(
        &'a self,
        repository: &'a str,
    ) -> ocync_auth::BoxFuture<'a, Result<bool, ocync_transport::Error>> {
        Box::pin(async move {
            self.api()
                .await
                .create_repository(repository)
                .await
                .map_err(|e| {
                    ocync_transport::Error::api(
                        self.registry.host(),
                        "CreateRepository",
                        e.to_string(),
                    )
                })
        })
    }
}
