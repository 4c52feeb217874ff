//! [`ProviderChain`]: ask providers in order until one has a credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{BoxFuture, Credential, CredentialProvider, Error};

/// Providers asked in order. A provider answering `Ok(None)` passes the question on; an error
/// stops the chain, because silently falling back to the next provider (often anonymous access)
/// would hide a broken configuration.
#[derive(Clone, Debug, Default)]
pub struct ProviderChain {
    providers: Vec<Arc<dyn CredentialProvider>>,
    /// Which member answered last, per registry (`None`: none did).
    answers: Arc<Mutex<HashMap<String, Option<&'static str>>>>,
}

impl ProviderChain {
    /// A chain with no providers; it never has a credential.
    pub fn new() -> ProviderChain {
        ProviderChain::default()
    }

    /// A chain starting with `provider`.
    pub fn first(provider: impl CredentialProvider + 'static) -> ProviderChain {
        ProviderChain::new().with(provider)
    }

    /// Appends `provider`, asked after the ones already in the chain.
    pub fn with(self, provider: impl CredentialProvider + 'static) -> ProviderChain {
        self.with_shared(Arc::new(provider))
    }

    /// Appends `provider`: reads as `first(a).or_else(b)`.
    pub fn or_else(self, provider: impl CredentialProvider + 'static) -> ProviderChain {
        self.with(provider)
    }

    /// Appends a provider that is shared with other owners.
    pub fn with_shared(mut self, provider: Arc<dyn CredentialProvider>) -> ProviderChain {
        self.providers.push(provider);
        self
    }

    /// The providers' names, in the order they are asked.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    /// The first credential for `registry`, with the name of the provider that answered.
    ///
    /// A failing provider's error comes back as [`Error::Provider`] naming it and the registry.
    pub async fn resolve(
        &self,
        registry: &str,
    ) -> Result<Option<(&'static str, Credential)>, Error> {
        for provider in &self.providers {
            let name = provider.name();
            match provider.credential(registry).await {
                Ok(Some(credential)) => {
                    tracing::debug!(provider = name, registry, "credential provider answered");
                    let answered = provider.answered_by(registry).unwrap_or(name);
                    self.remember(registry, Some(answered));
                    return Ok(Some((answered, credential)));
                }
                Ok(None) => {
                    tracing::trace!(provider = name, registry, "credential provider has nothing");
                }
                Err(error @ Error::Provider { .. }) => return Err(error),
                Err(error) => {
                    return Err(Error::Provider {
                        provider: name,
                        registry: registry.to_owned(),
                        source: Box::new(error),
                    });
                }
            }
        }
        tracing::debug!(registry, "no credential provider answered");
        self.remember(registry, None);
        Ok(None)
    }

    fn remember(&self, registry: &str, answered: Option<&'static str>) {
        self.answers
            .lock()
            .expect("answers lock")
            .insert(registry.to_owned(), answered);
    }
}

impl CredentialProvider for ProviderChain {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(async move { Ok(self.resolve(registry).await?.map(|(_, c)| c)) })
    }

    fn answered_by(&self, registry: &str) -> Option<&'static str> {
        self.answers
            .lock()
            .expect("answers lock")
            .get(registry)
            .copied()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::executor::block_on;

    use super::*;
    use crate::{AnonymousProvider, StaticProvider};

    /// Counts calls and answers with a fixed outcome.
    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        outcome: fn() -> Result<Option<Credential>, Error>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(
            name: &'static str,
            outcome: fn() -> Result<Option<Credential>, Error>,
        ) -> Arc<Self> {
            Arc::new(Scripted {
                name,
                outcome,
                calls: AtomicUsize::new(0),
            })
        }
    }

    impl CredentialProvider for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }

        fn credential<'a>(
            &'a self,
            _registry: &'a str,
        ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let outcome = (self.outcome)();
            Box::pin(async move { outcome })
        }
    }

    fn nothing() -> Result<Option<Credential>, Error> {
        Ok(None)
    }

    fn basic() -> Result<Option<Credential>, Error> {
        Ok(Some(Credential::basic("u", "p")))
    }

    fn failure() -> Result<Option<Credential>, Error> {
        Err(Error::CredentialHelper {
            helper: "docker-credential-x".into(),
            registry: "r.io".into(),
            reason: "exited with status 1".into(),
        })
    }

    fn nested_failure() -> Result<Option<Credential>, Error> {
        Err(Error::Provider {
            provider: "inner",
            registry: "r.io".into(),
            source: Box::new(failure().unwrap_err()),
        })
    }

    #[test]
    fn first_answer_wins_and_later_providers_are_not_asked() {
        let empty = Scripted::new("empty", nothing);
        let answers = Scripted::new("answers", basic);
        let never = Scripted::new("never", failure);
        let chain = ProviderChain::new()
            .with_shared(empty.clone())
            .with_shared(answers.clone())
            .with_shared(never.clone());
        assert_eq!(chain.names(), ["empty", "answers", "never"]);
        let (name, credential) = block_on(chain.resolve("r.io")).unwrap().unwrap();
        assert_eq!(name, "answers");
        assert_eq!(credential, Credential::basic("u", "p"));
        assert_eq!(empty.calls.load(Ordering::SeqCst), 1);
        assert_eq!(answers.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            never.calls.load(Ordering::SeqCst),
            0,
            "the chain stops at the first answer"
        );
    }

    #[test]
    fn an_error_stops_the_chain_and_names_provider_and_registry() {
        let failing = Scripted::new("failing", failure);
        let fallback = Scripted::new("fallback", basic);
        let chain = ProviderChain::new()
            .with_shared(failing.clone())
            .with_shared(fallback.clone());
        let error = block_on(chain.resolve("r.io")).unwrap_err();
        match &error {
            Error::Provider {
                provider,
                registry,
                source,
            } => {
                assert_eq!(*provider, "failing");
                assert_eq!(registry, "r.io");
                assert!(
                    matches!(**source, Error::CredentialHelper { .. }),
                    "{source:?}"
                );
            }
            other => panic!("expected Error::Provider, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "credential provider 'failing' failed for registry 'r.io'"
        );
        assert_eq!(
            fallback.calls.load(Ordering::SeqCst),
            0,
            "no fallback after an error"
        );
    }

    #[test]
    fn a_provider_error_is_not_wrapped_twice() {
        let chain =
            ProviderChain::first(ProviderChain::new().with_shared(Scripted::new("x", failure)));
        match block_on(chain.resolve("r.io")).unwrap_err() {
            Error::Provider {
                provider, source, ..
            } => {
                assert_eq!(provider, "x");
                assert!(matches!(*source, Error::CredentialHelper { .. }));
            }
            other => panic!("expected Error::Provider, got {other:?}"),
        }
        let chain = ProviderChain::new().with_shared(Scripted::new("outer", nested_failure));
        match block_on(chain.resolve("r.io")).unwrap_err() {
            Error::Provider { provider, .. } => assert_eq!(provider, "inner"),
            other => panic!("expected Error::Provider, got {other:?}"),
        }
    }

    #[test]
    fn no_answer_is_none_and_the_chain_is_a_provider() {
        let chain =
            ProviderChain::first(AnonymousProvider).with_shared(Scripted::new("empty", nothing));
        assert_eq!(block_on(chain.resolve("r.io")).unwrap(), None);
        assert_eq!(
            block_on(ProviderChain::new().resolve("r.io")).unwrap(),
            None
        );

        let chain = ProviderChain::first(StaticProvider::for_registry(
            "other.io",
            Credential::basic("a", "b"),
        ))
        .or_else(StaticProvider::new(Credential::basic("u", "p")));
        assert_eq!(chain.name(), "chain");
        assert_eq!(chain.names(), ["static", "static"]);
        assert_eq!(
            block_on(chain.credential("r.io")).unwrap(),
            Some(Credential::basic("u", "p"))
        );
        assert_eq!(
            block_on(chain.credential("other.io")).unwrap(),
            Some(Credential::basic("a", "b"))
        );
    }
}
