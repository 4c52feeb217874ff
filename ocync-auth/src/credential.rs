//! [`Credential`] and the [`CredentialProvider`] trait that every credential source implements.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{Error, Secret};

/// What a provider hands over for one registry.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A username and password: sent as HTTP Basic to a Basic registry or to a token realm.
    Basic {
        /// The username (not secret; it also goes into the token request's `account`).
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (docker `identitytoken`, ACR refresh token): exchanged at the
    /// realm with `grant_type=refresh_token`.
    IdentityToken {
        /// The refresh token.
        token: Secret,
    },
    /// A registry bearer token sent as is (docker `registrytoken`, a static token).
    Bearer {
        /// The bearer token.
        token: Secret,
    },
}

impl Credential {
    /// A [`Credential::Basic`].
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// A boxed, `Send` future, the return type of [`CredentialProvider::credential`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of credentials: a docker config, a cloud SDK, a fixed value.
///
/// Implementations put their logic in an inherent `async fn` and box it here, because a chain of
/// providers needs `dyn` and `async fn` in traits is not dyn-compatible.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Stable name used in logs, errors and dispatch tests (`"docker-config"`, `"static"`,
    /// `"anonymous"`, ...).
    fn name(&self) -> &'static str;

    /// The credential for `registry`, `host[:port]` as normalised by
    /// `ocync_core::Reference::registry` (Docker Hub is `docker.io`).
    ///
    /// `Ok(None)` means this provider has nothing for `registry`; `Err` means it failed.
    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>>;

    /// The provider that supplied the last credential for `registry`, for error messages
    /// ("rejected the credentials from docker-config"). A chain names the member that
    /// answered; `None` when nothing was supplied.
    fn answered_by(&self, registry: &str) -> Option<&'static str> {
        let _ = registry;
        Some(self.name())
    }
}

/// `host[:port]` of a registry as docker's `ConvertToHostname` writes it: no scheme, no path,
/// lowercase, and Docker Hub's aliases folded into [`ocync_core::DOCKER_HUB`].
pub(crate) fn canonical_registry(server: &str) -> String {
    let server = server.trim();
    let without_scheme = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            server
                .get(..scheme.len())
                .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
                .map(|_| &server[scheme.len()..])
        })
        .unwrap_or(server);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => ocync_core::DOCKER_HUB.to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_registry_table() {
        let cases = [
            ("docker.io", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("HTTPS://Index.Docker.IO/v1/", "docker.io"),
            ("http://localhost:5000", "localhost:5000"),
            ("localhost:5000/some/path", "localhost:5000"),
            ("GHCR.io", "ghcr.io"),
            ("  quay.io  ", "quay.io"),
            ("[::1]:5000", "[::1]:5000"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_registry(input), expected, "{input}");
        }
    }

    #[test]
    fn basic_constructor_wraps_the_password() {
        let credential = Credential::basic("u", "pa55word");
        assert_eq!(
            credential,
            Credential::Basic {
                username: "u".into(),
                password: Secret::new("pa55word"),
            }
        );
        assert!(!format!("{credential:?}").contains("pa55word"));
    }
}
