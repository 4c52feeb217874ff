//! [`AcrOptions`]: which Entra sources [`crate::AcrProvider`] may use, and where they are.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use url::Url;

use super::{ACR_SCOPE, AzureCloud};
use crate::Secret;

/// The IMDS address on every Azure VM, VM scale set and AKS node.
const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// How long `az account get-access-token` may take: it refreshes its own tokens over the
/// network, which takes a few seconds on a slow link.
const DEFAULT_AZURE_CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for [`crate::AcrProvider`]: the Entra credential sources and the endpoints they talk
/// to.
///
/// [`AcrOptions::default`] reads nothing from the environment: no source is configured except
/// the Azure CLI (`az` on `PATH`), and IMDS is not probed. [`AcrOptions::from_env`] reads the
/// variables the Azure SDKs read (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
/// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`,
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST`, `IMDS_ENDPOINT`) and allows IMDS.
///
/// The sources are tried in order, and the first one that is configured gives the token:
/// client secret, workload identity (federated token file), managed identity (the
/// `IDENTITY_ENDPOINT` of App Service and Container Apps, else IMDS), Azure CLI.
/// [`AcrOptions::token_credential`] replaces all four.
///
/// `Debug` never shows the client secret or the identity header.
#[derive(Clone)]
#[non_exhaustive]
pub struct AcrOptions {
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) federated_token_file: Option<PathBuf>,
    pub(crate) authority_host: Option<Url>,
    pub(crate) cloud_authority_hosts: Vec<(AzureCloud, Url)>,
    pub(crate) identity_endpoint: Option<(Url, Secret)>,
    pub(crate) imds_endpoint: Url,
    pub(crate) imds: bool,
    pub(crate) azure_cli: bool,
    pub(crate) azure_cli_program: String,
    pub(crate) azure_cli_dirs: Option<Vec<PathBuf>>,
    pub(crate) azure_cli_timeout: Duration,
    pub(crate) exchange_base: Option<Url>,
    pub(crate) scope: String,
    pub(crate) http: Option<reqwest::Client>,
    pub(crate) token_credential: Option<Arc<dyn TokenCredential>>,
    /// Environment variables whose value is not a usable URL: reported when an ACR registry is
    /// asked for, so a stray variable does not break providers for other registries.
    pub(crate) invalid_settings: Vec<InvalidSetting>,
}

/// An environment variable that should hold an http(s) URL but does not.
#[derive(Clone, Debug)]
pub(crate) struct InvalidSetting {
    pub(crate) reason: &'static str,
    /// The value as [`super::http::display_raw_url`] shows it.
    pub(crate) shown: String,
}

impl Default for AcrOptions {
    fn default() -> AcrOptions {
        AcrOptions {
            tenant_id: None,
            client_id: None,
            client_secret: None,
            federated_token_file: None,
            authority_host: None,
            cloud_authority_hosts: Vec::new(),
            identity_endpoint: None,
            imds_endpoint: Url::parse(DEFAULT_IMDS_ENDPOINT).expect("a valid constant URL"),
            imds: false,
            azure_cli: true,
            azure_cli_program: "az".to_owned(),
            azure_cli_dirs: None,
            azure_cli_timeout: DEFAULT_AZURE_CLI_TIMEOUT,
            exchange_base: None,
            scope: ACR_SCOPE.to_owned(),
            http: None,
            token_credential: None,
            invalid_settings: Vec::new(),
        }
    }
}

impl AcrOptions {
    /// Options from the process environment (see [`AcrOptions::from_lookup`]), with IMDS allowed.
    pub fn from_env() -> AcrOptions {
        AcrOptions::from_lookup(|name| std::env::var(name).ok())
    }

    /// Options from the Azure SDK environment variables as `lookup` answers them, with IMDS
    /// allowed. Empty values count as unset. A variable that should be a URL but is not one is
    /// reported by the provider when it is asked about an ACR registry.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> AcrOptions {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut options = AcrOptions {
            tenant_id: get("AZURE_TENANT_ID"),
            client_id: get("AZURE_CLIENT_ID"),
            client_secret: get("AZURE_CLIENT_SECRET").map(Secret::new),
            federated_token_file: get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            imds: true,
            ..AcrOptions::default()
        };
        let mut url = |name: &'static str, reason: &'static str| {
            let raw = get(name)?;
            match Url::parse(&raw) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    options.invalid_settings.push(InvalidSetting {
                        reason,
                        shown: super::http::display_raw_url(&raw),
                    });
                    None
                }
            }
        };
        let authority_host = url(
            "AZURE_AUTHORITY_HOST",
            "AZURE_AUTHORITY_HOST is not an http(s) URL",
        );
        let identity_endpoint = url(
            "IDENTITY_ENDPOINT",
            "IDENTITY_ENDPOINT is not an http(s) URL",
        );
        let imds_endpoint = url(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            "AZURE_POD_IDENTITY_AUTHORITY_HOST is not an http(s) URL",
        )
        .or_else(|| url("IMDS_ENDPOINT", "IMDS_ENDPOINT is not an http(s) URL"));
        options.authority_host = authority_host;
        if let Some(endpoint) = imds_endpoint {
            options.imds_endpoint = endpoint;
        }
        // Without the header, IDENTITY_ENDPOINT belongs to a managed identity flavour this
        // provider does not speak (Azure Arc pairs it with IMDS_ENDPOINT); IMDS is tried instead.
        if let (Some(endpoint), Some(header)) = (identity_endpoint, get("IDENTITY_HEADER")) {
            options.identity_endpoint = Some((endpoint, Secret::new(header)));
        }
        options
    }

    /// The Entra tenant (directory) id: required by the client secret and workload identity
    /// sources, passed to `az --tenant`, and sent with the ACR exchange.
    pub fn tenant_id(mut self, tenant_id: impl Into<String>) -> AcrOptions {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// The application (client) id: of the service principal for the client secret and workload
    /// identity sources, of the user-assigned identity for managed identity.
    pub fn client_id(mut self, client_id: impl Into<String>) -> AcrOptions {
        self.client_id = Some(client_id.into());
        self
    }

    /// A client secret of the service principal: turns the client secret source on.
    pub fn client_secret(mut self, client_secret: impl Into<Secret>) -> AcrOptions {
        self.client_secret = Some(client_secret.into());
        self
    }

    /// The file holding the federated (Kubernetes service account) token: turns the workload
    /// identity source on. It is re-read when the copy in memory is five minutes old, since the
    /// kubelet rotates it.
    pub fn federated_token_file(mut self, path: impl Into<PathBuf>) -> AcrOptions {
        self.federated_token_file = Some(path.into());
        self
    }

    /// The Entra authority host for every cloud (`AZURE_AUTHORITY_HOST`), instead of the one the
    /// registry's cloud implies. Plain http is accepted for loopback addresses only.
    pub fn authority_host(mut self, authority_host: Url) -> AcrOptions {
        self.authority_host = Some(authority_host);
        self
    }

    /// The Entra authority host for registries of `cloud`; wins over
    /// [`AcrOptions::authority_host`].
    pub fn cloud_authority_host(mut self, cloud: AzureCloud, authority_host: Url) -> AcrOptions {
        self.cloud_authority_hosts.retain(|(c, _)| *c != cloud);
        self.cloud_authority_hosts.push((cloud, authority_host));
        self
    }

    /// The managed identity endpoint of App Service, Functions and Container Apps
    /// (`IDENTITY_ENDPOINT`) and the header value it requires (`IDENTITY_HEADER`).
    pub fn identity_endpoint(mut self, endpoint: Url, header: impl Into<Secret>) -> AcrOptions {
        self.identity_endpoint = Some((endpoint, header.into()));
        self
    }

    /// The IMDS address (default `http://169.254.169.254`; `from_env` honours
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST`, then `IMDS_ENDPOINT`).
    pub fn imds_endpoint(mut self, endpoint: Url) -> AcrOptions {
        self.imds_endpoint = endpoint;
        self
    }

    /// Whether IMDS may be asked for a managed identity token when no other managed identity is
    /// configured (off in [`AcrOptions::default`], on in [`AcrOptions::from_env`]). When nothing
    /// answers at the IMDS address within a second, the next source is tried.
    pub fn imds(mut self, allowed: bool) -> AcrOptions {
        self.imds = allowed;
        self
    }

    /// Whether the Azure CLI may be run (default on).
    pub fn azure_cli(mut self, allowed: bool) -> AcrOptions {
        self.azure_cli = allowed;
        self
    }

    /// The Azure CLI program name (default `az`).
    pub fn azure_cli_program(mut self, program: impl Into<String>) -> AcrOptions {
        self.azure_cli_program = program.into();
        self
    }

    /// Looks for the Azure CLI in `dirs` instead of `PATH`.
    pub fn azure_cli_dirs<P: Into<PathBuf>>(
        mut self,
        dirs: impl IntoIterator<Item = P>,
    ) -> AcrOptions {
        self.azure_cli_dirs = Some(dirs.into_iter().map(Into::into).collect());
        self
    }

    /// How long the Azure CLI may take before it is killed and the lookup fails (default 10 s).
    pub fn azure_cli_timeout(mut self, timeout: Duration) -> AcrOptions {
        self.azure_cli_timeout = timeout;
        self
    }

    /// Where to send the ACR exchange (`<base>/oauth2/exchange`) instead of
    /// `https://<registry>`: a proxy, or a fake registry in tests. Plain http is accepted for
    /// loopback addresses only.
    pub fn exchange_base(mut self, base: Url) -> AcrOptions {
        self.exchange_base = Some(base);
        self
    }

    /// The Entra audience to ask tokens for (default `https://containerregistry.azure.net`),
    /// with or without the `/.default` suffix, e.g. the ARM audience
    /// `https://management.azure.com` for tools that only have that.
    pub fn audience(mut self, audience: impl Into<String>) -> AcrOptions {
        let audience = audience.into();
        self.scope = if audience.ends_with("/.default") {
            audience
        } else {
            format!("{}/.default", audience.trim_end_matches('/'))
        };
        self
    }

    /// The HTTP client for Entra and the ACR exchange, the caller's (proxies, TLS roots,
    /// timeouts). Without one, [`crate::AcrProvider::new`] builds a default client. IMDS always
    /// gets its own client, without proxy and with a one-second connect timeout.
    pub fn http_client(mut self, http: reqwest::Client) -> AcrOptions {
        self.http = Some(http);
        self
    }

    /// An Entra credential (from `azure_identity`, say) that replaces the four built-in
    /// sources.
    pub fn token_credential(mut self, credential: Arc<dyn TokenCredential>) -> AcrOptions {
        self.token_credential = Some(credential);
        self
    }
}

impl fmt::Debug for AcrOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Url| super::http::display_url(url);
        f.debug_struct("AcrOptions")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("federated_token_file", &self.federated_token_file)
            .field("authority_host", &self.authority_host.as_ref().map(shown))
            .field(
                "cloud_authority_hosts",
                &self
                    .cloud_authority_hosts
                    .iter()
                    .map(|(cloud, url)| (cloud, shown(url)))
                    .collect::<Vec<_>>(),
            )
            .field(
                "identity_endpoint",
                &self
                    .identity_endpoint
                    .as_ref()
                    .map(|(url, header)| (shown(url), header)),
            )
            .field("imds_endpoint", &shown(&self.imds_endpoint))
            .field("imds", &self.imds)
            .field("azure_cli", &self.azure_cli)
            .field("azure_cli_program", &self.azure_cli_program)
            .field("azure_cli_dirs", &self.azure_cli_dirs)
            .field("azure_cli_timeout", &self.azure_cli_timeout)
            .field("exchange_base", &self.exchange_base.as_ref().map(shown))
            .field("scope", &self.scope)
            .field("http_client", &self.http.is_some())
            .field("token_credential", &self.token_credential.is_some())
            .field("invalid_settings", &self.invalid_settings)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn from_lookup_reads_the_azure_variables() {
        let options = AcrOptions::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_ID", " client "),
            ("AZURE_CLIENT_SECRET", "s3cr3t"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ("AZURE_AUTHORITY_HOST", "https://login.example/"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
            ("IDENTITY_HEADER", "h3ad3r"),
            ("IMDS_ENDPOINT", "http://127.0.0.1:9"),
        ]));
        assert_eq!(options.tenant_id.as_deref(), Some("tenant"));
        assert_eq!(options.client_id.as_deref(), Some("client"));
        assert_eq!(
            options.client_secret.as_ref().map(Secret::expose),
            Some("s3cr3t")
        );
        assert_eq!(
            options.federated_token_file,
            Some(PathBuf::from("/var/run/token"))
        );
        assert_eq!(
            options.authority_host.as_ref().map(Url::as_str),
            Some("https://login.example/")
        );
        let (endpoint, header) = options.identity_endpoint.as_ref().unwrap();
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:41741/msi/token");
        assert_eq!(header.expose(), "h3ad3r");
        assert_eq!(options.imds_endpoint.as_str(), "http://127.0.0.1:9/");
        assert!(options.imds);
        assert!(options.invalid_settings.is_empty());
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("h3ad3r"),
            "{debug}"
        );
    }

    #[test]
    fn empty_variables_are_unset_and_defaults_read_nothing() {
        let options = AcrOptions::from_lookup(lookup(&[
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_TENANT_ID", "  "),
        ]));
        assert!(options.client_secret.is_none() && options.tenant_id.is_none());
        assert_eq!(options.imds_endpoint.as_str(), "http://169.254.169.254/");
        let default = AcrOptions::default();
        assert!(!default.imds);
        assert!(default.azure_cli);
        assert_eq!(default.scope, ACR_SCOPE);
    }

    #[test]
    fn pod_identity_host_wins_over_imds_endpoint() {
        let options = AcrOptions::from_lookup(lookup(&[
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.2:1"),
            ("IMDS_ENDPOINT", "http://127.0.0.3:1"),
        ]));
        assert_eq!(options.imds_endpoint.as_str(), "http://127.0.0.2:1/");
    }

    #[test]
    fn identity_endpoint_without_header_is_not_app_service() {
        let options =
            AcrOptions::from_lookup(lookup(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi")]));
        assert!(options.identity_endpoint.is_none());
    }

    #[test]
    fn invalid_urls_are_kept_for_later_without_query_strings() {
        let options = AcrOptions::from_lookup(lookup(&[
            ("AZURE_AUTHORITY_HOST", "login.example?sig=s3cr3t"),
            ("IDENTITY_ENDPOINT", "ftp://127.0.0.1/x"),
            ("IDENTITY_HEADER", "h"),
        ]));
        let reasons: Vec<_> = options.invalid_settings.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            [
                "AZURE_AUTHORITY_HOST is not an http(s) URL",
                "IDENTITY_ENDPOINT is not an http(s) URL"
            ]
        );
        assert!(!format!("{options:?}").contains("s3cr3t"));
        assert!(options.authority_host.is_none() && options.identity_endpoint.is_none());
    }

    #[test]
    fn audience_gets_the_default_suffix_once() {
        let cases = [
            (
                "https://management.azure.com",
                "https://management.azure.com/.default",
            ),
            (
                "https://management.azure.com/",
                "https://management.azure.com/.default",
            ),
            (
                "https://containerregistry.azure.net/.default",
                "https://containerregistry.azure.net/.default",
            ),
        ];
        for (audience, scope) in cases {
            assert_eq!(AcrOptions::default().audience(audience).scope, scope);
        }
    }
}
