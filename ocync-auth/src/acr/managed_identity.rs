//! Managed identity: the `IDENTITY_ENDPOINT` of App Service, Functions and Container Apps, else
//! the instance metadata service (IMDS) of VMs, scale sets and AKS nodes.
//!
//! Both take a resource (the scope without `/.default`) instead of a scope, and a user-assigned
//! identity is picked with `client_id`. Wire format: azure_identity
//! `app_service_managed_identity_credential.rs` and `imds_managed_identity_credential.rs`;
//! Microsoft's "How to use managed identities for Azure resources on an Azure VM to acquire an
//! access token".

use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use super::entra::{AadToken, EntraRequest, EntraSource, config_error};
use super::http::{self, Call};
use crate::{BoxFuture, Error, Secret};

/// `api-version` of the App Service identity endpoint (the one with `X-IDENTITY-HEADER`).
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// `api-version` of IMDS as Microsoft's documentation uses it.
const IMDS_API_VERSION: &str = "2018-02-01";

/// How long a connection to IMDS may take before IMDS counts as absent: off Azure, nothing
/// listens at 169.254.169.254 and the connection hangs instead of being refused.
pub(crate) const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an IMDS request may take once connected.
pub(crate) const IMDS_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits before retrying IMDS after 404, 410, 429 or 5xx (IMDS retry guidance: it answers 404
/// and 410 while it is being updated, 429 when called too often).
const IMDS_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// The managed identity source.
#[derive(Debug)]
pub(crate) struct ManagedIdentity {
    pub(crate) http: reqwest::Client,
    /// Of a user-assigned identity; `None` for the system-assigned one.
    pub(crate) client_id: Option<String>,
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    pub(crate) app_service: Option<(Url, Secret)>,
    /// The IMDS address and the client for it (no proxy, short connect timeout), when IMDS may
    /// be asked.
    pub(crate) imds: Option<(Url, reqwest::Client)>,
}

impl ManagedIdentity {
    async fn fetch(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let resource = request
            .scope
            .strip_suffix("/.default")
            .unwrap_or(request.scope);
        if resource.is_empty() || resource.contains(char::is_whitespace) {
            return Err(config_error(
                self.name(),
                request.registry,
                format!(
                    "a managed identity token is for one resource, not '{}'",
                    request.scope
                ),
            ));
        }
        let mut query = vec![("resource", resource)];
        if let Some(client_id) = &self.client_id {
            query.push(("client_id", client_id));
        }
        if let Some((endpoint, header)) = &self.app_service {
            return self
                .app_service(&request, endpoint, header, &query)
                .await
                .map(Some);
        }
        if let Some((endpoint, client)) = &self.imds {
            return imds(client, &request, endpoint, &query).await;
        }
        Ok(None)
    }

    async fn app_service(
        &self,
        request: &EntraRequest<'_>,
        endpoint: &Url,
        header: &Secret,
        query: &[(&str, &str)],
    ) -> Result<AadToken, Error> {
        let call = Call {
            registry: request.registry,
            realm: http::display_url(endpoint),
            secrets: &[header.expose()],
        };
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(Error::InvalidRealm {
                registry: request.registry.to_owned(),
                realm: call.realm,
                reason: "IDENTITY_ENDPOINT is not an http(s) URL",
            });
        }
        let response = http::send(
            self.http
                .get(endpoint.clone())
                .query(&[("api-version", APP_SERVICE_API_VERSION)])
                .query(query)
                .header("X-IDENTITY-HEADER", header.expose()),
        )
        .await
        .map_err(|e| call.request_error(e))?;
        AadToken::from_response(&call, &call.json(response)?)
    }
}

/// A token from IMDS; `None` when nothing answers there or it has no identity for this
/// machine.
async fn imds(
    client: &reqwest::Client,
    request: &EntraRequest<'_>,
    endpoint: &Url,
    query: &[(&str, &str)],
) -> Result<Option<AadToken>, Error> {
    let url = http::join_path(endpoint, "metadata/identity/oauth2/token");
    let call = Call {
        registry: request.registry,
        realm: http::display_url(&url),
        secrets: &[],
    };
    let mut delays = IMDS_RETRY_DELAYS.iter();
    loop {
        let sent = http::send(
            client
                .get(url.clone())
                .query(&[("api-version", IMDS_API_VERSION)])
                .query(query)
                .header("Metadata", "true"),
        )
        .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                tracing::debug!(
                    registry = request.registry,
                    imds = %call.realm,
                    "no managed identity: nothing answers at the IMDS address"
                );
                return Ok(None);
            }
            Err(e) => return Err(call.request_error(e)),
        };
        let status = response.status;
        // IMDS answers 400 "Identity not found" on a machine without a managed identity, which
        // other Azure SDKs' default chains also treat as "not available here".
        if status == StatusCode::BAD_REQUEST {
            tracing::debug!(
                registry = request.registry,
                message = %call.message(response.body.as_deref()),
                "no managed identity: IMDS has no identity for this machine"
            );
            return Ok(None);
        }
        let retryable = matches!(status.as_u16(), 404 | 410 | 429) || status.is_server_error();
        if let (true, Some(delay)) = (retryable, delays.next()) {
            tracing::debug!(registry = request.registry, %status, ?delay, "retrying IMDS");
            tokio::time::sleep(*delay).await;
            continue;
        }
        return AadToken::from_response(&call, &call.json(response)?).map(Some);
    }
}

impl EntraSource for ManagedIdentity {
    fn name(&self) -> &'static str {
        "managed identity"
    }

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>> {
        Box::pin(self.fetch(request))
    }
}
