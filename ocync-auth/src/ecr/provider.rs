//! [`EcrProvider`]: registry credentials for private Amazon ECR from `GetAuthorizationToken`.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;

use super::cache::{Cache, DOCUMENTED_LIFETIME, Fetched, reuse_until};
use super::failure::{Call, Failure};
use super::sdk::Sdk;
use super::{EcrApi, EcrOptions, EcrRegistry};
use crate::{BoxFuture, Credential, CredentialProvider, Error, Secret};

/// Credentials for private Amazon ECR registries (`<account>.dkr.ecr.<region>.amazonaws.com` and
/// the FIPS, dual-stack and China forms, see [`EcrRegistry`]); `Ok(None)` for every other host.
///
/// Calls `GetAuthorizationToken` for the registry's account in the registry's region with the
/// AWS credentials of [`EcrOptions`] (by default the SDK's default chain: environment, profiles,
/// SSO, IRSA, EKS Pod Identity, instance roles) and answers
/// `Credential::Basic { username: "AWS", password }`, which ECR takes as HTTP Basic on every
/// request.
///
/// Tokens are kept per (account, region, profile) until 30 minutes before their `expiresAt`
/// (ECR tokens live 12 hours), and concurrent callers share one `GetAuthorizationToken`. A token
/// that is already expired when it arrives (emulators) is used once and fetched again next time.
///
/// ```no_run
/// use ocync_auth::{CredentialProvider, EcrOptions, EcrProvider};
///
/// # async fn run() -> Result<(), ocync_auth::Error> {
/// let provider = EcrProvider::new(EcrOptions::new().aws_profile("prod"));
/// let credential = provider
///     .credential("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
///     .await?;
/// assert!(credential.is_some());
/// assert!(provider.credential("ghcr.io").await?.is_none());
/// # Ok(())
/// # }
/// ```
pub struct EcrProvider {
    sdk: Sdk,
    tokens: Cache<TokenKey, Credential>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TokenKey {
    account_id: String,
    region: String,
    profile: Option<String>,
}

impl EcrProvider {
    /// A provider that reaches AWS as `options` says. Nothing is loaded before the first ECR
    /// registry is asked for.
    pub fn new(options: EcrOptions) -> EcrProvider {
        EcrProvider {
            sdk: Sdk::new(options),
            tokens: Cache::new(),
        }
    }

    /// The ECR API helpers for `registry`, sharing this provider's SDK configuration and clients.
    pub async fn api(&self, registry: &EcrRegistry) -> EcrApi {
        EcrApi::from_client(
            registry.clone(),
            self.sdk.ecr(registry).await,
            self.sdk.options(),
        )
    }

    async fn lookup(&self, registry: &str) -> Result<Option<Credential>, Error> {
        let Some(ecr) = EcrRegistry::parse(registry) else {
            return Ok(None);
        };
        let key = TokenKey {
            account_id: ecr.account_id().to_owned(),
            region: self.sdk.region_for(&ecr),
            profile: self.sdk.options().aws_profile.clone(),
        };
        self.tokens
            .get_or_fetch(&key, || self.fetch(registry, &ecr))
            .await
            .map(Some)
            .map_err(|source| Error::Provider {
                provider: "ecr",
                registry: registry.to_owned(),
                source: Box::new(source),
            })
    }

    async fn fetch(&self, registry: &str, ecr: &EcrRegistry) -> Result<Fetched<Credential>, Error> {
        let client = self.sdk.ecr(ecr).await;
        let credential_source = self.sdk.options().credential_source();
        let call = Call {
            registry,
            operation: "GetAuthorizationToken",
            permission: "'ecr:GetAuthorizationToken' (on resource '*')",
            endpoint: &client.endpoint,
            credential_source: &credential_source,
        };
        if self
            .sdk
            .options()
            .sdk_config
            .as_ref()
            .is_some_and(|c| c.credentials_provider().is_none())
        {
            return Err(Failure::no_credentials_provider().into_error(&call));
        }
        tracing::debug!(
            registry,
            account = ecr.account_id(),
            region = client.region,
            "ecr: GetAuthorizationToken"
        );
        // registryIds is deprecated (the token is good for every registry the principal may
        // use) but still accepted; naming the account makes emulators answer for it.
        #[expect(deprecated, reason = "registryIds still works and names the account")]
        let output = client
            .client
            .get_authorization_token()
            .registry_ids(ecr.account_id())
            .send()
            .await
            .map_err(|error| Failure::new(&error).into_error(&call))?;
        let data = output
            .authorization_data()
            .first()
            .ok_or_else(|| token_response(&call, "the answer has no authorizationData"))?;
        let credential = decode_token(data.authorization_token(), &call)?;
        let expires_at = data
            .expires_at()
            .and_then(|at| SystemTime::try_from(*at).ok());
        Ok(fetched(credential, expires_at, registry))
    }
}

/// A credential with its reuse deadline, logging when it is only good for this once.
pub(super) fn fetched(
    credential: Credential,
    expires_at: Option<SystemTime>,
    registry: &str,
) -> Fetched<Credential> {
    let (wall_now, now) = (SystemTime::now(), Instant::now());
    let reuse_until = match expires_at {
        Some(expires_at) => reuse_until(expires_at, wall_now, now),
        None => reuse_until(wall_now + DOCUMENTED_LIFETIME, wall_now, now),
    };
    if reuse_until.is_none() {
        // Not an error: moto answers with a fixed expiresAt in 2015, and a wrong local clock
        // looks the same. The registry decides whether the token is still good.
        tracing::debug!(
            registry,
            expires_at = ?expires_at,
            "ecr authorization token is already expired on arrival; using it once"
        );
    }
    Fetched {
        value: credential,
        reuse_until,
    }
}

/// `base64("<user>:<password>")` to a Basic credential; the token itself never goes into an error.
pub(super) fn decode_token(token: Option<&str>, call: &Call<'_>) -> Result<Credential, Error> {
    let token =
        token.ok_or_else(|| token_response(call, "the answer has no authorizationToken"))?;
    let decoded = STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| token_response(call, "the authorization token is not base64 text"))?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok(Credential::Basic {
                username: user.to_owned(),
                password: Secret::new(password),
            })
        }
        _ => Err(token_response(
            call,
            "the authorization token is not base64 of 'AWS:<password>'",
        )),
    }
}

fn token_response(call: &Call<'_>, reason: &str) -> Error {
    Error::TokenResponse {
        registry: call.registry.to_owned(),
        realm: format!("{} ({})", call.endpoint, call.operation),
        reason: reason.to_owned(),
    }
}

impl Default for EcrProvider {
    /// The AWS SDK's default chain, the registry's region.
    fn default() -> EcrProvider {
        EcrProvider::new(EcrOptions::default())
    }
}

impl fmt::Debug for EcrProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrProvider")
            .field("options", self.sdk.options())
            .field("cached_tokens", &self.tokens.len())
            .finish()
    }
}

impl CredentialProvider for EcrProvider {
    fn name(&self) -> &'static str {
        "ecr"
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(self.lookup(registry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call<'static> {
        Call {
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            operation: "GetAuthorizationToken",
            permission: "'ecr:GetAuthorizationToken'",
            endpoint: "ecr api in us-east-1",
            credential_source: "test",
        }
    }

    #[test]
    fn decode_token_table() {
        let ok = [
            (
                "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
                "AWS",
                "123456789012-auth-token",
            ),
            (" QVdTOnA6d2l0aDpjb2xvbnM= ", "AWS", "p:with:colons"),
        ];
        for (token, user, password) in ok {
            assert_eq!(
                decode_token(Some(token), &call()).unwrap(),
                Credential::basic(user, password),
                "{token}"
            );
        }
        let secret_token = STANDARD.encode("no-colon-s3cr3t");
        let bad = [
            (None, "has no authorizationToken"),
            (Some("%%%not-base64-s3cr3t"), "is not base64 text"),
            (
                Some(secret_token.as_str()),
                "is not base64 of 'AWS:<password>'",
            ),
            (Some("QVdTOg=="), "is not base64 of 'AWS:<password>'"),
            (Some("Ong="), "is not base64 of 'AWS:<password>'"),
            (Some("//79"), "is not base64 text"),
        ];
        for (token, reason) in bad {
            let error = decode_token(token, &call()).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(matches!(error, Error::TokenResponse { .. }), "{shown}");
            assert!(shown.contains(reason), "{shown}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
            if let Some(token) = token {
                assert!(!shown.contains(token.trim()), "{shown}");
            }
        }
    }

    #[test]
    fn tokens_without_expiry_are_kept_for_the_documented_lifetime() {
        let kept = fetched(Credential::basic("AWS", "p"), None, "r");
        let until = kept.reuse_until.expect("reusable");
        assert!(until > Instant::now() + DOCUMENTED_LIFETIME / 2);
        let expired = fetched(
            Credential::basic("AWS", "p"),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_420_070_400)),
            "r",
        );
        assert!(expired.reuse_until.is_none());
    }
}
