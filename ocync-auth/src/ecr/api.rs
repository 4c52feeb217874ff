//! [`EcrApi`]: the ECR control-plane calls the data plane uses (layer existence in bulk,
//! repository creation).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use aws_sdk_ecr::types::LayerAvailability;
use ocync_core::Digest;

use super::failure::{Call, Failure};
use super::sdk::{EcrClient, Sdk};
use super::{EcrOptions, EcrRegistry};
use crate::Error;

/// `BatchCheckLayerAvailability` takes 1 to 100 digests per call.
const MAX_LAYERS_PER_CHECK: usize = 100;

/// ECR API calls for one private registry, with the credentials of [`EcrOptions`].
///
/// Every call names the registry's account as `registryId`, so repositories of another account
/// work when its repository policies allow the caller.
#[derive(Clone)]
pub struct EcrApi {
    registry: EcrRegistry,
    host: String,
    client: EcrClient,
    credential_source: String,
}

impl EcrApi {
    /// The API helpers for `registry`. This loads the AWS SDK configuration (the default chain
    /// unless `options` brings one); [`EcrProvider::api`](crate::EcrProvider::api) reuses a
    /// provider's instead.
    pub async fn new(registry: &EcrRegistry, options: &EcrOptions) -> Result<EcrApi, Error> {
        let sdk = Sdk::new(options.clone());
        let client = sdk.ecr(registry).await;
        Ok(EcrApi::from_client(registry.clone(), client, options))
    }

    pub(super) fn from_client(
        registry: EcrRegistry,
        client: EcrClient,
        options: &EcrOptions,
    ) -> EcrApi {
        EcrApi {
            host: registry.host(),
            registry,
            client,
            credential_source: options.credential_source(),
        }
    }

    /// The registry these calls are for.
    pub fn registry(&self) -> &EcrRegistry {
        &self.registry
    }

    /// Which of `digests` are available as layers in `repository` (`BatchCheckLayerAvailability`,
    /// at most 100 digests per call). A repository that does not exist has no layers: the answer
    /// is empty, not an error.
    ///
    /// ECR knows only blobs pushed as layers (not configs or manifests pushed through the registry
    /// API), so a digest missing here may still exist: use this to skip uploads, never to decide
    /// that a blob is absent.
    pub async fn batch_check_layers(
        &self,
        repository: &str,
        digests: &[Digest],
    ) -> Result<HashSet<Digest>, Error> {
        let wanted: BTreeSet<&Digest> = digests.iter().collect();
        let wanted: Vec<&Digest> = wanted.into_iter().collect();
        let mut available = HashSet::new();
        for chunk in wanted.chunks(MAX_LAYERS_PER_CHECK) {
            let answer = self
                .client
                .client
                .batch_check_layer_availability()
                .registry_id(self.registry.account_id())
                .repository_name(repository)
                .set_layer_digests(Some(chunk.iter().map(|d| d.to_string()).collect()))
                .send()
                .await;
            let output = match answer {
                Ok(output) => output,
                Err(error) => {
                    let failure = Failure::new(&error);
                    if failure.code() == Some("RepositoryNotFoundException") {
                        tracing::debug!(
                            registry = self.host,
                            repository,
                            "ecr: no such repository, so no layers"
                        );
                        return Ok(HashSet::new());
                    }
                    return Err(self.error(failure, "BatchCheckLayerAvailability"));
                }
            };
            available.extend(
                output
                    .layers()
                    .iter()
                    .filter(|layer| {
                        layer.layer_availability() == Some(&LayerAvailability::Available)
                    })
                    .filter_map(|layer| layer.layer_digest()?.parse::<Digest>().ok())
                    .filter(|digest| chunk.contains(&digest)),
            );
        }
        Ok(available)
    }

    /// Creates `repository` with the account's defaults (`CreateRepository`): `Ok(true)` when it
    /// was created, `Ok(false)` when it already existed.
    pub async fn create_repository(&self, repository: &str) -> Result<bool, Error> {
        let answer = self
            .client
            .client
            .create_repository()
            .registry_id(self.registry.account_id())
            .repository_name(repository)
            .send()
            .await;
        match answer {
            Ok(_) => {
                tracing::debug!(registry = self.host, repository, "ecr: created repository");
                Ok(true)
            }
            Err(error) => {
                let failure = Failure::new(&error);
                if failure.code() == Some("RepositoryAlreadyExistsException") {
                    return Ok(false);
                }
                Err(self.error(failure, "CreateRepository"))
            }
        }
    }

    /// Whether `repository` exists (`DescribeRepositories`).
    pub async fn repository_exists(&self, repository: &str) -> Result<bool, Error> {
        let answer = self
            .client
            .client
            .describe_repositories()
            .registry_id(self.registry.account_id())
            .repository_names(repository)
            .send()
            .await;
        match answer {
            Ok(output) => Ok(output
                .repositories()
                .iter()
                .any(|found| found.repository_name() == Some(repository))),
            Err(error) => {
                let failure = Failure::new(&error);
                if failure.code() == Some("RepositoryNotFoundException") {
                    return Ok(false);
                }
                Err(self.error(failure, "DescribeRepositories"))
            }
        }
    }

    fn error(&self, failure: Failure, operation: &'static str) -> Error {
        let permission = match operation {
            "BatchCheckLayerAvailability" => "'ecr:BatchCheckLayerAvailability'",
            "CreateRepository" => "'ecr:CreateRepository'",
            _ => "'ecr:DescribeRepositories'",
        };
        let call = Call {
            registry: &self.host,
            operation,
            permission,
            endpoint: &self.client.endpoint,
            credential_source: &self.credential_source,
        };
        Error::Provider {
            provider: "ecr",
            registry: self.host.clone(),
            source: Box::new(failure.into_error(&call)),
        }
    }
}

impl fmt::Debug for EcrApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrApi")
            .field("registry", &self.host)
            .field("region", &self.client.region)
            .field("endpoint", &self.client.endpoint)
            .finish()
    }
}
