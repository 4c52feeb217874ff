//! [`AcrProvider`]: ACR refresh tokens from Entra tokens, cached per registry.
//!
//! The exchange is Azure/acr `docs/AAD-OAuth.md`: `POST https://<registry>/oauth2/exchange` with
//! `grant_type=access_token&service=<registry>&tenant=<tenant>&access_token=<entra token>`
//! answers `{"refresh_token":"<JWT>"}`. The refresh token is valid for every repository of that
//! registry until its `exp` (about three hours).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use tokio::time::Instant;
use url::Url;

use super::azure_cli::AzureCli;
use super::entra::{
    AadToken, ChainCredential, ClientSecret, Custom, EntraChain, EntraRequest, WorkloadIdentity,
};
use super::http::{self, Call, Expiry};
use super::managed_identity::{IMDS_CONNECT_TIMEOUT, IMDS_REQUEST_TIMEOUT, ManagedIdentity};
use super::options::{AcrOptions, InvalidSetting};
use super::{AcrHost, AzureCloud};
use crate::{BoxFuture, Credential, CredentialProvider, Error, Secret};

/// The provider's name in logs, errors and dispatch.
const NAME: &str = "acr";

/// What errors raised before any registry is known name as the registry.
const ANY_REGISTRY: &str = "*";

/// The lifetime assumed for a refresh token that is not a JWT with `exp`: Entra logins to ACR
/// must be renewed every three hours.
const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3 * 60 * 60);

/// An ACR refresh token.
#[derive(Clone, Debug)]
struct RefreshToken {
    value: Secret,
    expiry: Expiry,
}

type Slot = Arc<tokio::sync::Mutex<Option<RefreshToken>>>;

/// Credentials for Azure Container Registry (`*.azurecr.io`, `*.azurecr.cn`, `*.azurecr.us`)
/// through Entra ID.
///
/// For an ACR host it answers [`Credential::IdentityToken`] holding an ACR refresh token, which
/// the registry's token realm exchanges for access tokens. The refresh token is cached per
/// registry until five minutes before its JWT `exp`, and concurrent callers share one exchange.
/// Other hosts get `Ok(None)`, and so do ACR hosts when no Entra source is available (the
/// admin user or a repository-scoped token can then come from the docker config as Basic
/// credentials).
///
/// Failures come back as [`Error::Provider`] named `acr`; when an Entra source failed, its
/// source is another [`Error::Provider`] naming it (`client secret`, `workload identity`,
/// `managed identity`, `azure cli`, `token credential`).
///
/// ```no_run
/// use ocync_auth::{AcrOptions, AcrProvider, Credential, CredentialProvider};
///
/// # async fn run() -> Result<(), ocync_auth::Error> {
/// let provider = AcrProvider::new(AcrOptions::from_env())?;
/// // An ACR refresh token, or `None` when no Entra source is available here.
/// let credential = provider.credential("myregistry.azurecr.io").await?;
/// assert!(matches!(credential, Some(Credential::IdentityToken { .. }) | None));
/// // Not an ACR host: nothing is asked.
/// assert!(provider.credential("ghcr.io").await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AcrProvider {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    scope: String,
    tenant_id: Option<String>,
    authority_host: Option<Url>,
    cloud_authority_hosts: Vec<(AzureCloud, Url)>,
    exchange_base: Option<Url>,
    invalid_settings: Vec<InvalidSetting>,
    chain: Arc<EntraChain>,
    refresh_tokens: Mutex<HashMap<String, Slot>>,
}

impl AcrProvider {
    /// A provider with `options`. Fails only when no HTTP client can be built.
    pub fn new(options: AcrOptions) -> Result<AcrProvider, Error> {
        let build_error = |source: reqwest::Error, realm: &str| Error::Provider {
            provider: NAME,
            registry: ANY_REGISTRY.to_owned(),
            source: Box::new(Error::TokenRequest {
                registry: ANY_REGISTRY.to_owned(),
                realm: realm.to_owned(),
                source,
            }),
        };
        let http = match options.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| build_error(e, AzureCloud::Public.authority_host()))?,
        };
        let mut chain = EntraChain::default();
        if let Some(credential) = options.token_credential {
            chain.push(Custom { credential });
        } else {
            if let Some(secret) = options.client_secret {
                chain.push(ClientSecret {
                    http: http.clone(),
                    tenant: options.tenant_id.clone(),
                    client_id: options.client_id.clone(),
                    secret,
                });
            }
            if let Some(file) = options.federated_token_file {
                chain.push(WorkloadIdentity::new(
                    http.clone(),
                    options.tenant_id.clone(),
                    options.client_id.clone(),
                    file,
                ));
            }
            let imds = if options.imds && options.identity_endpoint.is_none() {
                // IMDS is link-local: a proxy from the environment would only get in the way.
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(IMDS_CONNECT_TIMEOUT)
                    .timeout(IMDS_REQUEST_TIMEOUT)
                    .build()
                    .map_err(|e| build_error(e, &http::display_url(&options.imds_endpoint)))?;
                Some((options.imds_endpoint, client))
            } else {
                None
            };
            if options.identity_endpoint.is_some() || imds.is_some() {
                chain.push(ManagedIdentity {
                    http: http.clone(),
                    client_id: options.client_id.clone(),
                    app_service: options.identity_endpoint,
                    imds,
                });
            }
            if options.azure_cli {
                chain.push(AzureCli {
                    program: options.azure_cli_program,
                    dirs: options.azure_cli_dirs,
                    timeout: options.azure_cli_timeout,
                    tenant: options.tenant_id.clone(),
                });
            }
        }
        Ok(AcrProvider {
            inner: Arc::new(Inner {
                http,
                scope: options.scope,
                tenant_id: options.tenant_id,
                authority_host: options.authority_host,
                cloud_authority_hosts: options.cloud_authority_hosts,
                exchange_base: options.exchange_base,
                invalid_settings: options.invalid_settings,
                chain: Arc::new(chain),
                refresh_tokens: Mutex::default(),
            }),
        })
    }

    /// A provider configured from the environment ([`AcrOptions::from_env`]).
    pub fn from_env() -> Result<AcrProvider, Error> {
        AcrProvider::new(AcrOptions::from_env())
    }

    /// The Entra sources that will be asked, in order (`"client secret"`,
    /// `"workload identity"`, `"managed identity"`, `"azure cli"`, or `"token credential"`).
    pub fn sources(&self) -> Vec<&'static str> {
        self.inner.chain.names()
    }

    /// The Entra authority host used for `registry`: an override from the options, else its
    /// cloud's. `None` when `registry` is not an ACR host.
    pub fn authority_host(&self, registry: &str) -> Option<Url> {
        let host = AcrHost::parse(registry)?;
        Some(self.inner.authority(host.cloud))
    }

    /// The Entra sources as an `azure_core` [`TokenCredential`] against `cloud`'s authority, for
    /// calling other Azure services with the identity the provider uses. Tokens are shared with
    /// the provider's cache.
    pub fn token_credential(&self, cloud: AzureCloud) -> Arc<dyn TokenCredential> {
        Arc::new(ChainCredential {
            chain: Arc::clone(&self.inner.chain),
            authority: self.inner.authority(cloud),
            label: format!("*{}", cloud.registry_suffix()),
        })
    }

    /// Forgets the refresh token of `registry` (after the registry refused it), so the next
    /// lookup does a new exchange.
    pub fn invalidate(&self, registry: &str) {
        if let Some(host) = AcrHost::parse(registry) {
            self.inner.lock().remove(&host.login_server);
        }
    }

    async fn lookup(&self, registry: &str) -> Result<Option<Credential>, Error> {
        let Some(host) = AcrHost::parse(registry) else {
            return Ok(None);
        };
        let fail = |source: Error| Error::Provider {
            provider: NAME,
            registry: registry.to_owned(),
            source: Box::new(source),
        };
        if let Some(invalid) = self.inner.invalid_settings.first() {
            return Err(fail(Error::InvalidRealm {
                registry: registry.to_owned(),
                realm: invalid.shown.clone(),
                reason: invalid.reason,
            }));
        }
        let slot = self
            .inner
            .lock()
            .entry(host.login_server.clone())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(token) = cached
            .as_ref()
            .filter(|t| t.expiry.is_fresh(Instant::now()))
        {
            return Ok(Some(Credential::IdentityToken {
                token: token.value.clone(),
            }));
        }
        let authority = self.inner.authority(host.cloud);
        let request = EntraRequest {
            registry,
            authority: &authority,
            scope: &self.inner.scope,
        };
        let Some((aad, source)) = self.inner.chain.token(request).await.map_err(fail)? else {
            tracing::debug!(registry, "no entra credential source is available");
            return Ok(None);
        };
        let token = match self.inner.exchange(registry, &host, &aad).await {
            Ok(token) => token,
            Err(error) => {
                if matches!(error, Error::TokenDenied { .. }) {
                    // The Entra token may have been revoked early: ask again next time.
                    self.inner.chain.clear();
                }
                return Err(fail(error));
            }
        };
        tracing::debug!(
            registry,
            source,
            lifetime = ?token.expiry.lifetime,
            "acr refresh token obtained"
        );
        let credential = Credential::IdentityToken {
            token: token.value.clone(),
        };
        *cached = Some(token);
        Ok(Some(credential))
    }
}

impl Inner {
    fn authority(&self, cloud: AzureCloud) -> Url {
        self.cloud_authority_hosts
            .iter()
            .find(|(c, _)| *c == cloud)
            .map(|(_, url)| url.clone())
            .or_else(|| self.authority_host.clone())
            .unwrap_or_else(|| {
                Url::parse(cloud.authority_host()).expect("the authority constants are URLs")
            })
    }

    /// Trades an Entra token for an ACR refresh token.
    async fn exchange(
        &self,
        registry: &str,
        host: &AcrHost,
        aad: &AadToken,
    ) -> Result<RefreshToken, Error> {
        let url = match &self.exchange_base {
            Some(base) => http::join_path(base, "oauth2/exchange"),
            None => Url::parse(&format!("https://{}/oauth2/exchange", host.login_server)).map_err(
                |_| Error::InvalidRealm {
                    registry: registry.to_owned(),
                    realm: format!("https://{}/oauth2/exchange", host.login_server),
                    reason: "not an absolute URL",
                },
            )?,
        };
        http::check_secure(&url, registry)?;
        let call = Call {
            registry,
            realm: http::display_url(&url),
            secrets: &[aad.value.expose()],
        };
        // Sent when known: the exchange works without it, but the documented form has it.
        let tenant = self.tenant_id.clone().or_else(|| {
            http::jwt_claims(aad.value.expose())
                .and_then(|claims| http::string(&claims, "tid").map(str::to_owned))
        });
        let mut form = vec![
            ("grant_type", "access_token"),
            ("service", host.login_server.as_str()),
        ];
        if let Some(tenant) = &tenant {
            form.push(("tenant", tenant));
        }
        form.push(("access_token", aad.value.expose()));
        let response = http::send(self.http.post(url).form(&form))
            .await
            .map_err(|e| call.request_error(e))?;
        let json = call.json(response)?;
        let value = http::string(&json, "refresh_token")
            .ok_or_else(|| call.response_error("the response has no 'refresh_token'"))?;
        let lifetime = http::jwt_lifetime(value).unwrap_or(DEFAULT_REFRESH_TOKEN_LIFETIME);
        Ok(RefreshToken {
            value: Secret::new(value),
            expiry: Expiry::after(lifetime),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.refresh_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for AcrProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("AcrProvider")
            .field("sources", &inner.chain.names())
            .field("scope", &inner.scope)
            .field("tenant_id", &inner.tenant_id)
            .field(
                "authority_host",
                &inner.authority_host.as_ref().map(http::display_url),
            )
            .field(
                "exchange_base",
                &inner.exchange_base.as_ref().map(http::display_url),
            )
            .field("cached_registries", &inner.lock().len())
            .finish_non_exhaustive()
    }
}

impl CredentialProvider for AcrProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(self.lookup(registry))
    }
}
