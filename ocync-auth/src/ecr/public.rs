//! [`EcrPublicProvider`]: credentials for Amazon ECR Public (`public.ecr.aws`).

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::cache::{Cache, Fetched};
use super::failure::{Call, Failure};
use super::provider::{decode_token, fetched};
use super::sdk::Sdk;
use super::{EcrOptions, EcrRegistry};
use crate::{BoxFuture, Credential, CredentialProvider, Error};

/// How long "no AWS credentials, pull anonymously" is remembered before the chain is asked again
/// (asking runs the whole default chain, instance metadata included).
const ANONYMOUS_FOR: Duration = Duration::from_secs(10 * 60);

/// Credentials for Amazon ECR Public, `public.ecr.aws`; `Ok(None)` for every other host.
///
/// Calls `ecr-public:GetAuthorizationToken` in us-east-1 (the only region that has it) and
/// answers `Credential::Basic { username: "AWS", password }`; the registry then issues its
/// bearer token for those credentials, with higher pull limits than anonymous access.
///
/// ECR Public serves anonymous pulls, so AWS trouble that only means "not signed in" is not an
/// error: with no AWS credentials at all, or credentials that may not call
/// `ecr-public:GetAuthorizationToken`, the answer is `Ok(None)` (logged at debug and warn level
/// respectively) and the transport goes on anonymously. Network and service failures are errors.
pub struct EcrPublicProvider {
    sdk: Sdk,
    tokens: Cache<(), Option<Credential>>,
}

impl EcrPublicProvider {
    /// A provider that reaches AWS as `options` says ([`EcrOptions::region`] does not apply: the
    /// API is in us-east-1 only).
    pub fn new(options: EcrOptions) -> EcrPublicProvider {
        EcrPublicProvider {
            sdk: Sdk::new(options),
            tokens: Cache::new(),
        }
    }

    async fn lookup(&self, registry: &str) -> Result<Option<Credential>, Error> {
        if !EcrRegistry::is_public(registry) {
            return Ok(None);
        }
        self.tokens
            .get_or_fetch(&(), || self.fetch(registry))
            .await
            .map_err(|source| Error::Provider {
                provider: "ecr-public",
                registry: registry.to_owned(),
                source: Box::new(source),
            })
    }

    async fn fetch(&self, registry: &str) -> Result<Fetched<Option<Credential>>, Error> {
        let client = self.sdk.ecr_public().await;
        let credential_source = self.sdk.options().credential_source();
        let call = Call {
            registry,
            operation: "GetAuthorizationToken",
            permission: "'ecr-public:GetAuthorizationToken' and 'sts:GetServiceBearerToken'",
            endpoint: &client.endpoint,
            credential_source: &credential_source,
        };
        if !client.has_credentials_provider {
            return Ok(anonymous(
                registry,
                "no aws credentials provider is configured",
            ));
        }
        tracing::debug!(registry, "ecr-public: GetAuthorizationToken");
        let output = match client.client.get_authorization_token().send().await {
            Ok(output) => output,
            Err(error) => {
                let failure = Failure::new(&error);
                if failure.is_credentials_missing() {
                    return Ok(anonymous(registry, "no aws credentials found"));
                }
                if failure.is_denied() {
                    let error = failure.into_error(&call);
                    tracing::warn!(
                        registry,
                        error = %error,
                        "ecr public: the aws credentials cannot get a token; pulling anonymously"
                    );
                    return Ok(anonymous(registry, "the aws credentials were refused"));
                }
                return Err(failure.into_error(&call));
            }
        };
        let data = output
            .authorization_data()
            .ok_or_else(|| Error::TokenResponse {
                registry: registry.to_owned(),
                realm: format!("{} ({})", call.endpoint, call.operation),
                reason: "the answer has no authorizationData".to_owned(),
            })?;
        let credential = decode_token(data.authorization_token(), &call)?;
        let expires_at = data
            .expires_at()
            .and_then(|at| SystemTime::try_from(*at).ok());
        let Fetched { value, reuse_until } = fetched(credential, expires_at, registry);
        Ok(Fetched {
            value: Some(value),
            reuse_until,
        })
    }
}

fn anonymous(registry: &str, why: &str) -> Fetched<Option<Credential>> {
    tracing::debug!(registry, "ecr public: {why}; pulling anonymously");
    Fetched {
        value: None,
        reuse_until: Some(Instant::now() + ANONYMOUS_FOR),
    }
}

impl Default for EcrPublicProvider {
    /// The AWS SDK's default chain.
    fn default() -> EcrPublicProvider {
        EcrPublicProvider::new(EcrOptions::default())
    }
}

impl fmt::Debug for EcrPublicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrPublicProvider")
            .field("options", self.sdk.options())
            .field("cached", &self.tokens.len())
            .finish()
    }
}

impl CredentialProvider for EcrPublicProvider {
    fn name(&self) -> &'static str {
        "ecr-public"
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(self.lookup(registry))
    }
}
