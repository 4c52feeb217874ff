//! Entra (Azure AD) access tokens: the credential sources, a cache per source, the chain that
//! asks them in order, and the chain as an `azure_core` [`TokenCredential`].
//!
//! Client secret and workload identity post to the authority's v2 token endpoint
//! (`{authority}/{tenant}/oauth2/v2.0/token`, azure_identity `client_secret_credential.rs` and
//! `client_assertion_credential.rs`); managed identity and the Azure CLI live in their own
//! modules.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::OffsetDateTime;
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::http::{self, Call, Expiry};
use crate::{BoxFuture, Error, Secret};

/// The lifetime assumed for an Entra token whose response says nothing about its expiry and
/// that is not a JWT; real tokens live 60 to 90 minutes.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How long a federated token read from its file is used before the file is read again. The
/// kubelet rotates the projected token long before it expires (at 80 % of its hour, or after a
/// day), so a fresh read every few minutes always finds a valid one.
const ASSERTION_REREAD: Duration = Duration::from_secs(5 * 60);

/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra access token.
#[derive(Clone, Debug)]
pub(crate) struct AadToken {
    pub(crate) value: Secret,
    pub(crate) expiry: Expiry,
}

impl AadToken {
    /// A token from an Entra or managed identity token response: `access_token` with
    /// `expires_in`, else `expires_on` (a number or a numeric string), else the JWT `exp`.
    pub(crate) fn from_response(
        call: &Call<'_>,
        object: &Map<String, Value>,
    ) -> Result<AadToken, Error> {
        let value = http::string(object, "access_token")
            .ok_or_else(|| call.response_error("the response has no 'access_token'"))?;
        let lifetime = match (object.get("expires_in"), object.get("expires_on")) {
            (Some(expires_in), _) if !expires_in.is_null() => {
                let seconds = http::number(expires_in)
                    .ok_or_else(|| call.response_error("'expires_in' is not a number"))?;
                Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(http::MAX_LIFETIME)
            }
            (_, Some(expires_on)) if !expires_on.is_null() => http::number(expires_on)
                .map(http::until_epoch)
                .ok_or_else(|| call.response_error("'expires_on' is not a number"))?,
            _ => http::jwt_lifetime(value).unwrap_or(DEFAULT_LIFETIME),
        };
        Ok(AadToken {
            value: Secret::new(value),
            expiry: Expiry::after(lifetime),
        })
    }
}

/// What a source is asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntraRequest<'a> {
    /// The registry the token is for, named in errors.
    pub(crate) registry: &'a str,
    /// The Entra authority host of the registry's cloud.
    pub(crate) authority: &'a Url,
    /// The space-separated scopes.
    pub(crate) scope: &'a str,
}

/// One way to get an Entra token.
///
/// `Ok(None)` means the source is not available here (not configured, no IMDS answering, no
/// `az` installed); the chain then asks the next one. An error stops the chain.
pub(crate) trait EntraSource: Send + Sync + fmt::Debug {
    /// The name errors and logs use: "client secret", "workload identity", ...
    fn name(&self) -> &'static str;

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>>;
}

/// The error for a source whose configuration cannot work, naming the source.
pub(crate) fn config_error(source: &str, registry: &str, reason: impl Into<String>) -> Error {
    Error::CredentialHelper {
        helper: source.to_owned(),
        registry: registry.to_owned(),
        reason: reason.into(),
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<AadToken>>>;

/// A source with its tokens, per authority and scope. Concurrent callers for the same key wait
/// for one request.
pub(crate) struct CachedSource {
    source: Box<dyn EntraSource>,
    tokens: Mutex<HashMap<(String, String), Slot>>,
}

impl CachedSource {
    pub(crate) fn new(source: impl EntraSource + 'static) -> CachedSource {
        CachedSource {
            source: Box::new(source),
            tokens: Mutex::default(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.source.name()
    }

    async fn token(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let slot = self
            .lock()
            .entry((request.authority.to_string(), request.scope.to_owned()))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(token) = cached
            .as_ref()
            .filter(|t| t.expiry.is_fresh(Instant::now()))
        {
            return Ok(Some(token.clone()));
        }
        let token = self.source.token(request).await?;
        cached.clone_from(&token);
        Ok(token)
    }

    fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for CachedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSource")
            .field("source", &self.source)
            .field("cached", &self.lock().len())
            .finish()
    }
}

/// The sources in the order they are asked.
#[derive(Debug, Default)]
pub(crate) struct EntraChain {
    sources: Vec<CachedSource>,
}

impl EntraChain {
    pub(crate) fn push(&mut self, source: impl EntraSource + 'static) {
        self.sources.push(CachedSource::new(source));
    }

    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.sources.iter().map(CachedSource::name).collect()
    }

    /// The first source's token with the source's name, `None` when no source is available. A
    /// failing source's error comes back as [`Error::Provider`] naming the source.
    pub(crate) async fn token(
        &self,
        request: EntraRequest<'_>,
    ) -> Result<Option<(AadToken, &'static str)>, Error> {
        for source in &self.sources {
            let name = source.name();
            match source.token(request).await {
                Ok(Some(token)) => return Ok(Some((token, name))),
                Ok(None) => {
                    tracing::debug!(
                        source = name,
                        registry = request.registry,
                        "entra credential source not available"
                    );
                }
                Err(error) => {
                    return Err(Error::Provider {
                        provider: name,
                        registry: request.registry.to_owned(),
                        source: Box::new(error),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Forgets every cached token (the registry refused one).
    pub(crate) fn clear(&self) {
        for source in &self.sources {
            source.clear();
        }
    }
}

/// An [`EntraChain`] for one authority as an `azure_core` [`TokenCredential`], for embedders
/// that call other Azure services with the same identity.
#[derive(Debug)]
pub(crate) struct ChainCredential {
    pub(crate) chain: Arc<EntraChain>,
    pub(crate) authority: Url,
    /// What errors name as the registry: the cloud's registries, `*.azurecr.io`.
    pub(crate) label: String,
}

impl ChainCredential {
    async fn access_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let scope = scopes.join(" ");
        if scope.trim().is_empty() {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "no scope was requested",
            ));
        }
        let request = EntraRequest {
            registry: &self.label,
            authority: &self.authority,
            scope: &scope,
        };
        match self.chain.token(request).await {
            Ok(Some((token, _))) => {
                let remaining = token.expiry.remaining(Instant::now());
                Ok(AccessToken::new(
                    token.value.expose().to_owned(),
                    OffsetDateTime::now_utc() + remaining,
                ))
            }
            Ok(None) => Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "no entra credential source is available",
            )),
            Err(error) => Err(azure_core::Error::new(ErrorKind::Credential, error)),
        }
    }
}

impl TokenCredential for ChainCredential {
    // What `#[async_trait]` expands `async fn get_token` to; azure_core does not re-export the
    // macro, and one hand-written signature is cheaper than another dependency.
    fn get_token<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        scopes: &'life1 [&'life2 str],
        _options: Option<TokenRequestOptions<'life3>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.access_token(scopes))
    }
}

/// A tenant id goes into the token URL's path, so only what tenant ids and domain names are
/// made of is accepted.
fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant != "."
        && tenant != ".."
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The tenant and client id a service principal source needs, or the error naming what is
/// missing.
fn principal<'a>(
    source: &str,
    request: &EntraRequest<'_>,
    tenant: &'a Option<String>,
    client_id: &'a Option<String>,
) -> Result<(&'a str, &'a str), Error> {
    let fail = |reason: &str| config_error(source, request.registry, reason);
    let tenant = tenant
        .as_deref()
        .ok_or_else(|| fail("no tenant id is configured (AZURE_TENANT_ID)"))?;
    if !valid_tenant(tenant) {
        return Err(fail(&format!("invalid tenant id '{tenant}'")));
    }
    let client_id = client_id
        .as_deref()
        .ok_or_else(|| fail("no client id is configured (AZURE_CLIENT_ID)"))?;
    Ok((tenant, client_id))
}

/// `POST {authority}/{tenant}/oauth2/v2.0/token` with `form` plus the scope.
async fn post_token_form(
    http: &reqwest::Client,
    request: &EntraRequest<'_>,
    tenant: &str,
    form: &[(&str, &str)],
    secrets: &[&str],
) -> Result<AadToken, Error> {
    let url = http::join_path(request.authority, &format!("{tenant}/oauth2/v2.0/token"));
    http::check_secure(&url, request.registry)?;
    let call = Call {
        registry: request.registry,
        realm: http::display_url(&url),
        secrets,
    };
    let mut form = form.to_vec();
    form.push(("scope", request.scope));
    let response = http::send(http.post(url).form(&form))
        .await
        .map_err(|e| call.request_error(e))?;
    AadToken::from_response(&call, &call.json(response)?)
}

/// A service principal with a client secret (`AZURE_CLIENT_SECRET`).
#[derive(Debug)]
pub(crate) struct ClientSecret {
    pub(crate) http: reqwest::Client,
    pub(crate) tenant: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) secret: Secret,
}

impl ClientSecret {
    async fn fetch(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let (tenant, client_id) = principal(self.name(), &request, &self.tenant, &self.client_id)?;
        let form = [
            ("client_id", client_id),
            ("client_secret", self.secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        post_token_form(&self.http, &request, tenant, &form, &[self.secret.expose()])
            .await
            .map(Some)
    }
}

impl EntraSource for ClientSecret {
    fn name(&self) -> &'static str {
        "client secret"
    }

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>> {
        Box::pin(self.fetch(request))
    }
}

/// Workload identity: a federated token from a file (AKS workload identity writes
/// `AZURE_FEDERATED_TOKEN_FILE`) as the client assertion of a service principal.
#[derive(Debug)]
pub(crate) struct WorkloadIdentity {
    pub(crate) http: reqwest::Client,
    pub(crate) tenant: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) file: PathBuf,
    pub(crate) assertion: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

impl WorkloadIdentity {
    pub(crate) fn new(
        http: reqwest::Client,
        tenant: Option<String>,
        client_id: Option<String>,
        file: PathBuf,
    ) -> WorkloadIdentity {
        WorkloadIdentity {
            http,
            tenant,
            client_id,
            file,
            assertion: tokio::sync::Mutex::default(),
        }
    }

    async fn fetch(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let (tenant, client_id) = principal(self.name(), &request, &self.tenant, &self.client_id)?;
        let assertion = self.assertion(request.registry).await?;
        let form = [
            ("client_assertion", assertion.expose()),
            ("client_assertion_type", JWT_BEARER),
            ("client_id", client_id),
            ("grant_type", "client_credentials"),
        ];
        post_token_form(&self.http, &request, tenant, &form, &[assertion.expose()])
            .await
            .map(Some)
    }

    async fn assertion(&self, registry: &str) -> Result<Secret, Error> {
        let mut cached = self.assertion.lock().await;
        if let Some((assertion, read_at)) = cached.as_ref()
            && read_at.elapsed() < ASSERTION_REREAD
        {
            return Ok(assertion.clone());
        }
        let shown = self.file.display();
        let contents = tokio::fs::read_to_string(&self.file).await.map_err(|e| {
            config_error(
                self.name(),
                registry,
                format!("cannot read the federated token file '{shown}': {e}"),
            )
        })?;
        let assertion = contents.trim();
        if assertion.is_empty() {
            return Err(config_error(
                self.name(),
                registry,
                format!("the federated token file '{shown}' is empty"),
            ));
        }
        let assertion = Secret::new(assertion);
        *cached = Some((assertion.clone(), Instant::now()));
        Ok(assertion)
    }
}

impl EntraSource for WorkloadIdentity {
    fn name(&self) -> &'static str {
        "workload identity"
    }

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>> {
        Box::pin(self.fetch(request))
    }
}

/// An embedder's [`TokenCredential`] in place of the built-in sources.
#[derive(Debug)]
pub(crate) struct Custom {
    pub(crate) credential: Arc<dyn TokenCredential>,
}

impl Custom {
    async fn fetch(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let scopes: Vec<&str> = request.scope.split_whitespace().collect();
        match self.credential.get_token(&scopes, None).await {
            Ok(token) => {
                let remaining = token.expires_on - OffsetDateTime::now_utc();
                let lifetime = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
                Ok(Some(AadToken {
                    value: Secret::new(token.token.secret()),
                    expiry: Expiry::after(lifetime),
                }))
            }
            Err(error) => Err(match error.into_downcast::<Error>() {
                Ok(ours) => ours,
                Err(theirs) => {
                    let shown = theirs.to_string();
                    let first_line = shown.lines().map(str::trim).find(|l| !l.is_empty());
                    config_error(
                        self.name(),
                        request.registry,
                        http::truncate(first_line.unwrap_or("failed without a message")),
                    )
                }
            }),
        }
    }
}

impl EntraSource for Custom {
    fn name(&self) -> &'static str {
        "token credential"
    }

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>> {
        Box::pin(self.fetch(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_table() {
        let cases = [
            ("72f988bf-86f1-41af-91ab-2d7cd011db47", true),
            ("contoso.onmicrosoft.com", true),
            ("organizations", true),
            ("", false),
            ("..", false),
            ("a/b", false),
            ("a?b", false),
            ("a b", false),
        ];
        for (tenant, valid) in cases {
            assert_eq!(valid_tenant(tenant), valid, "{tenant}");
        }
    }

    #[test]
    fn token_response_table() {
        let call = Call {
            registry: "r.azurecr.io",
            realm: "https://login/t/oauth2/v2.0/token".into(),
            secrets: &[],
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1800;
        let cases = [
            (
                serde_json::json!({"access_token":"a","expires_in":3599,"token_type":"Bearer"}),
                Ok(3599),
            ),
            (
                serde_json::json!({"access_token":"a","expires_in":"3599"}),
                Ok(3599),
            ),
            (
                serde_json::json!({"access_token":"a","expires_on":exp.to_string()}),
                Ok(1800),
            ),
            (
                serde_json::json!({"access_token":"a","expires_on":exp}),
                Ok(1800),
            ),
            (serde_json::json!({"access_token":"a"}), Ok(600)),
            (
                serde_json::json!({"expires_in":1}),
                Err("the response has no 'access_token'"),
            ),
            (
                serde_json::json!({"access_token":"a","expires_in":"soon"}),
                Err("'expires_in' is not a number"),
            ),
            (
                serde_json::json!({"access_token":"a","expires_on":[]}),
                Err("'expires_on' is not a number"),
            ),
        ];
        for (json, expected) in cases {
            let Value::Object(object) = &json else {
                unreachable!()
            };
            let got = AadToken::from_response(&call, object);
            match (got, expected) {
                (Ok(token), Ok(seconds)) => {
                    let lifetime = token.expiry.lifetime.as_secs();
                    assert!(
                        lifetime <= seconds && lifetime + 5 >= seconds,
                        "{json}: {lifetime}"
                    );
                    assert_eq!(token.value.expose(), "a");
                }
                (Err(Error::TokenResponse { reason, .. }), Err(expected)) => {
                    assert_eq!(reason, expected, "{json}");
                }
                (got, expected) => panic!("{json}: {got:?} vs {expected:?}"),
            }
        }
    }
}
