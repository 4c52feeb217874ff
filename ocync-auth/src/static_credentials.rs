//! Providers that need no lookup: [`StaticProvider`] (a fixed credential) and
//! [`AnonymousProvider`] (never a credential).

use crate::credential::canonical_registry;
use crate::{BoxFuture, Credential, CredentialProvider, Error};

/// A fixed credential, for every registry or for one registry only.
#[derive(Clone, Debug)]
pub struct StaticProvider {
    registry: Option<String>,
    credential: Credential,
}

impl StaticProvider {
    /// Answers `credential` for every registry.
    pub fn new(credential: Credential) -> StaticProvider {
        StaticProvider {
            registry: None,
            credential,
        }
    }

    /// Answers `credential` for `registry` only. The registry is normalised like a docker config
    /// key, so `https://index.docker.io/v1/` and `Index.Docker.io` both mean `docker.io`.
    pub fn for_registry(registry: impl AsRef<str>, credential: Credential) -> StaticProvider {
        StaticProvider {
            registry: Some(canonical_registry(registry.as_ref())),
            credential,
        }
    }

    fn lookup(&self, registry: &str) -> Option<Credential> {
        match &self.registry {
            Some(only) if *only != canonical_registry(registry) => None,
            _ => Some(self.credential.clone()),
        }
    }
}

impl CredentialProvider for StaticProvider {
    fn name(&self) -> &'static str {
        "static"
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        let found = self.lookup(registry);
        Box::pin(async move { Ok(found) })
    }
}

/// Never has a credential: requests go out anonymously (public images, anonymous pull tokens).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonymousProvider;

impl CredentialProvider for AnonymousProvider {
    fn name(&self) -> &'static str {
        "anonymous"
    }

    fn answered_by(&self, _registry: &str) -> Option<&'static str> {
        None
    }

    fn credential<'a>(
        &'a self,
        _registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn static_provider_table() {
        let credential = Credential::basic("u", "p");
        let everywhere = StaticProvider::new(credential.clone());
        let hub_only =
            StaticProvider::for_registry("https://index.docker.io/v1/", credential.clone());
        let local_only = StaticProvider::for_registry("LocalHost:5000", credential.clone());
        let cases: [(&StaticProvider, &str, bool); 7] = [
            (&everywhere, "ghcr.io", true),
            (&everywhere, "docker.io", true),
            (&hub_only, "docker.io", true),
            (&hub_only, "index.docker.io", true),
            (&hub_only, "ghcr.io", false),
            (&local_only, "localhost:5000", true),
            (&local_only, "localhost:5001", false),
        ];
        for (provider, registry, expected) in cases {
            let found = block_on(provider.credential(registry)).unwrap();
            assert_eq!(found.is_some(), expected, "{provider:?} for {registry}");
            if let Some(found) = found {
                assert_eq!(found, credential);
            }
        }
        assert_eq!(everywhere.name(), "static");
    }

    #[test]
    fn anonymous_provider_never_answers() {
        for registry in ["docker.io", "ghcr.io", "localhost:5000"] {
            assert_eq!(
                block_on(AnonymousProvider.credential(registry)).unwrap(),
                None
            );
        }
        assert_eq!(AnonymousProvider.name(), "anonymous");
    }
}
