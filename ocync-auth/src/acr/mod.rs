//! Azure Container Registry credentials through Entra ID (Azure AD).
//!
//! ACR does not take Entra tokens at its token realm directly. [`AcrProvider`] gets an Entra
//! access token for the ACR audience from the first configured source (client secret, workload
//! identity, managed identity, Azure CLI), trades it at `POST https://<registry>/oauth2/exchange`
//! for an ACR refresh token, and hands that over as [`crate::Credential::IdentityToken`]. The
//! transport's ordinary refresh-token grant at `https://<registry>/oauth2/token` then gives the
//! registry access token (Azure/acr `docs/AAD-OAuth.md`).
//!
//! [`AzureCloud`] maps a registry host to its cloud, which picks the Entra authority.

mod azure_cli;
mod entra;
mod http;
mod managed_identity;
mod options;
mod provider;

pub use options::AcrOptions;
pub use provider::AcrProvider;

use std::fmt;

/// The Entra scope for ACR tokens. Registries accept it in every cloud, also when
/// authentication with ARM-audience tokens is disabled (`azureADAuthenticationAsArmPolicy`).
pub(crate) const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// An Azure cloud, told apart by the login server suffix of its registries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureCloud {
    /// Azure public cloud: `*.azurecr.io`, authority `https://login.microsoftonline.com`.
    Public,
    /// Azure operated by 21Vianet (China): `*.azurecr.cn`, authority
    /// `https://login.chinacloudapi.cn`.
    China,
    /// Azure Government (US): `*.azurecr.us`, authority `https://login.microsoftonline.us`.
    UsGovernment,
}

impl AzureCloud {
    /// Every cloud, in declaration order.
    pub const ALL: [AzureCloud; 3] = [
        AzureCloud::Public,
        AzureCloud::China,
        AzureCloud::UsGovernment,
    ];

    /// The cloud of an ACR login server or data endpoint, `host[:port]` in any case
    /// (`myreg.azurecr.io`, `myreg.westeurope.data.azurecr.io`, `MyReg.azurecr.cn:443`);
    /// `None` when the host is not an ACR host.
    pub fn from_host(host: &str) -> Option<AzureCloud> {
        AcrHost::parse(host).map(|h| h.cloud)
    }

    /// Whether `host` is an ACR login server or data endpoint in any cloud.
    pub fn matches(host: &str) -> bool {
        AzureCloud::from_host(host).is_some()
    }

    /// The login server suffix of this cloud's registries, with its leading dot (`.azurecr.io`).
    pub fn registry_suffix(self) -> &'static str {
        match self {
            AzureCloud::Public => ".azurecr.io",
            AzureCloud::China => ".azurecr.cn",
            AzureCloud::UsGovernment => ".azurecr.us",
        }
    }

    /// This cloud's Entra authority host, as azure_identity hardcodes it.
    pub fn authority_host(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://login.microsoftonline.com",
            AzureCloud::China => "https://login.chinacloudapi.cn",
            AzureCloud::UsGovernment => "https://login.microsoftonline.us",
        }
    }

    /// The Entra scope for ACR tokens in this cloud: `https://containerregistry.azure.net/.default`
    /// in all three (the Go SDK uses it everywhere since `azcontainerregistry` 0.2.0).
    pub fn acr_scope(self) -> &'static str {
        ACR_SCOPE
    }
}

impl fmt::Display for AzureCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureCloud::Public => "azure public cloud",
            AzureCloud::China => "azure china cloud",
            AzureCloud::UsGovernment => "azure us government cloud",
        })
    }
}

/// A registry host that belongs to ACR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcrHost {
    pub(crate) cloud: AzureCloud,
    /// The login server (`<name>.azurecr.io`): the exchange's `service`, also for a data
    /// endpoint (`<name>.<region>.data.azurecr.io`), which has no token endpoints of its own.
    pub(crate) login_server: String,
}

impl AcrHost {
    pub(crate) fn parse(registry: &str) -> Option<AcrHost> {
        let registry = registry.trim().to_ascii_lowercase();
        if registry.starts_with('[') || registry.contains(['/', '@', '?', '#', ' ']) {
            return None;
        }
        let host = match registry.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                host
            }
            Some(_) => return None,
            None => registry.as_str(),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        AzureCloud::ALL.into_iter().find_map(|cloud| {
            let suffix = cloud.registry_suffix();
            let name = host.strip_suffix(suffix)?;
            let labels: Vec<&str> = name.split('.').collect();
            let valid = labels.iter().all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !valid {
                return None;
            }
            let login_server = match labels.as_slice() {
                [registry, _region, "data"] => format!("{registry}{suffix}"),
                _ => host.to_owned(),
            };
            Some(AcrHost {
                cloud,
                login_server,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let cases = [
            (
                "myreg.azurecr.io",
                Some((AzureCloud::Public, "myreg.azurecr.io")),
            ),
            (
                "MyReg.AzureCR.io",
                Some((AzureCloud::Public, "myreg.azurecr.io")),
            ),
            (
                "myreg.azurecr.io:443",
                Some((AzureCloud::Public, "myreg.azurecr.io")),
            ),
            (
                "myreg.azurecr.io.",
                Some((AzureCloud::Public, "myreg.azurecr.io")),
            ),
            (
                "myreg.azurecr.cn",
                Some((AzureCloud::China, "myreg.azurecr.cn")),
            ),
            (
                "myreg.azurecr.us",
                Some((AzureCloud::UsGovernment, "myreg.azurecr.us")),
            ),
            (
                "myreg.westeurope.data.azurecr.io",
                Some((AzureCloud::Public, "myreg.azurecr.io")),
            ),
            (
                "myreg.chinaeast2.data.azurecr.cn",
                Some((AzureCloud::China, "myreg.azurecr.cn")),
            ),
            (
                "myreg.usgovvirginia.data.azurecr.us",
                Some((AzureCloud::UsGovernment, "myreg.azurecr.us")),
            ),
            ("azurecr.io", None),
            (".azurecr.io", None),
            ("a..azurecr.io", None),
            ("myreg.azurecr.io.evil.com", None),
            ("myreg.azurecr.com", None),
            ("evil.com/x.azurecr.io", None),
            ("user@myreg.azurecr.io", None),
            ("myreg.azurecr.io:https", None),
            ("docker.io", None),
            ("localhost:5000", None),
            ("[::1]:5000", None),
            ("", None),
        ];
        for (host, expected) in cases {
            let parsed = AcrHost::parse(host);
            assert_eq!(
                parsed.as_ref().map(|h| (h.cloud, h.login_server.as_str())),
                expected,
                "{host}"
            );
            assert_eq!(AzureCloud::from_host(host), expected.map(|e| e.0), "{host}");
            assert_eq!(AzureCloud::matches(host), expected.is_some(), "{host}");
        }
    }

    #[test]
    fn authorities_and_scopes_per_cloud() {
        let cases = [
            (
                AzureCloud::Public,
                "https://login.microsoftonline.com",
                ".azurecr.io",
            ),
            (
                AzureCloud::China,
                "https://login.chinacloudapi.cn",
                ".azurecr.cn",
            ),
            (
                AzureCloud::UsGovernment,
                "https://login.microsoftonline.us",
                ".azurecr.us",
            ),
        ];
        for (cloud, authority, suffix) in cases {
            assert_eq!(cloud.authority_host(), authority);
            assert_eq!(cloud.registry_suffix(), suffix);
            assert_eq!(
                cloud.acr_scope(),
                "https://containerregistry.azure.net/.default"
            );
        }
    }
}
