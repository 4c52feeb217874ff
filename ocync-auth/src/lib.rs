//! Credentials and registry tokens for ocync: who we are to a registry, and the bearer tokens
//! that prove it.
//!
//! Principal types:
//! - [`Credential`] and [`Secret`]: what a provider hands over (Basic, an OAuth2 identity token,
//!   or a bearer token), with secrets that never print.
//! - [`CredentialProvider`]: a source of credentials. [`DockerConfigProvider`] reads docker's
//!   `config.json` and runs its credential helpers; [`StaticProvider`] and
//!   [`AnonymousProvider`] need no lookup; [`ProviderChain`] asks several in order.
//! - [`parse_challenges`]: the registry's `WWW-Authenticate` headers as [`Challenge`]s.
//! - [`Scope`] and [`Scopes`]: what a token is for, normalised so equal needs share a token.
//! - [`fetch_token`]: a [`Token`] from a Bearer challenge's realm, and [`TokenCache`] to keep
//!   tokens per [`TokenKey`] with one fetch at a time per key.
//!
//! This crate never builds an HTTP client: [`fetch_token`] takes the caller's
//! `reqwest::Client`, so TLS, proxies and timeouts are configured once, in the transport.
//!
//! ```
//! use ocync_auth::{
//!     AnonymousProvider, Challenge, Credential, ProviderChain, Scopes, StaticProvider,
//!     parse_challenges,
//! };
//!
//! // A registry answered 401 with this challenge.
//! let challenges = parse_challenges([
//!     r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:app:push,pull""#,
//! ]);
//! let Challenge::Bearer(bearer) = &challenges[0] else {
//!     return Err("expected a Bearer challenge".into());
//! };
//! let scopes: Scopes = bearer.scopes()?;
//! assert_eq!(scopes.to_string(), "repository:app:pull,push");
//!
//! // Credentials for that registry, and anonymous access everywhere else.
//! let chain = ProviderChain::first(StaticProvider::for_registry(
//!     "registry.example.com",
//!     Credential::basic("ci", "s3cr3t"),
//! ))
//! .or_else(AnonymousProvider);
//! let found = futures::executor::block_on(chain.resolve("registry.example.com"))?;
//! let (provider, credential) = found.ok_or("no credential")?;
//! assert_eq!(provider, "static");
//! assert!(!format!("{credential:?}").contains("s3cr3t"));
//! assert!(futures::executor::block_on(chain.resolve("docker.io"))?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "acr")]
mod acr;
mod chain;
mod challenge;
mod credential;
mod credential_helper;
mod docker_config;
#[cfg(feature = "ecr")]
mod ecr;
mod error;
mod scope;
mod secret;
mod static_credentials;
mod token;
mod token_exchange;

pub use chain::ProviderChain;
pub use challenge::{BearerChallenge, Challenge, parse_challenges};
pub use credential::{BoxFuture, Credential, CredentialProvider};
pub use docker_config::DockerConfigProvider;
pub use error::Error;
pub use scope::{Scope, Scopes};
pub use secret::Secret;
pub use static_credentials::{AnonymousProvider, StaticProvider};
pub use token::{Token, TokenCache, TokenKey};
pub use token_exchange::{TokenRequest, fetch_token};

#[cfg(feature = "acr")]
pub use acr::{AcrOptions, AcrProvider, AzureCloud};
#[cfg(feature = "ecr")]
pub use ecr::{EcrApi, EcrOptions, EcrProvider, EcrPublicProvider, EcrRegistry};

#[cfg(feature = "test-support")]
pub mod testing;
