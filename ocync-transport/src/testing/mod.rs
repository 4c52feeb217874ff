//! Test support for the workspace's tests (feature `test-support`; never part of the public
//! API of a release).
//!
//! - [`TestRegistry`]: a real `docker-registry` (distribution 2.8.2) child process on a random
//!   loopback port, with no auth, htpasswd or token auth, optionally over TLS, whose access log
//!   tells which requests it really received.
//! - [`TokenServer`]: an in-process Docker token server (GET and OAuth2 POST) signing RS256
//!   JWTs the registry trusts, with per-scope request counters.
//! - [`TestCa`], [`serve`], [`serve_tls`]: a throwaway CA (whose leaf can also carry real
//!   registry host names) and helpers to run in-process axum fake registries over HTTP or HTTPS.
//! - [`ConnectProxy`]: a `CONNECT` proxy (for `HTTPS_PROXY`) that tunnels hosts named like real
//!   cloud registries (`<acct>.dkr.ecr.<region>.amazonaws.com`, `<name>.azurecr.io`) to loopback
//!   servers and refuses everything else.
//! - [`FakeAcr`], [`FakeAad`]: an Azure Container Registry login server (Entra exchange, token
//!   endpoint, reverse proxy to a real token-auth registry) and an Entra ID token endpoint.
//! - [`NginxFront`]: nginx in front of a [`TestRegistry`], rate limiting (`429` with or
//!   without `Retry-After`) and capping request bodies (`413`), with a parsed access log.
//! - [`FaultServer`]: an in-process registry for blob uploads and downloads that answers
//!   scripted [`Fault`]s (error statuses, cut connections, slow bodies, a body size cap).
//! - [`fixture`]: deterministic OCI content with real digests (images, indexes, OCI 1.1
//!   artifacts and referrers, large streamed layers) and OCI image layout writers.
//!
//! Everything binds `127.0.0.1` only.

pub mod acr;
mod base64;
pub mod faults;
pub mod fixture;
pub mod nginx;
pub mod proxy;
pub mod registry;
pub mod tls;
pub mod token_server;

pub use acr::{FakeAad, FakeAcr, FormRequest};

pub use faults::{Fault, FaultRequest, FaultServer};
pub use fixture::{Blob, Fixture, ImageFixture, LargeImage, LargeLayout, PseudoRandom};
pub use nginx::{NginxFront, NginxLine, NginxOptions};
pub use proxy::{ConnectProxy, ProxyRequest};
pub use registry::{RegistryAuth, RegistryOptions, RequestLine, TestRegistry};
pub use tls::{TestCa, install_crypto_provider, plain_client, serve, serve_tls};
pub use token_server::{TokenRequest, TokenServer};

/// [`crate::Registries`] that reach these test registries: their CA trusted, their users'
/// credentials offered (Basic, for htpasswd and for the token server), plain HTTP found by the
/// loopback fallback.
pub fn registries_for(registries: &[&TestRegistry]) -> crate::Registries {
    use std::sync::Arc;

    use ocync_auth::{Credential, ProviderChain, StaticProvider};

    let mut chain = ProviderChain::new();
    for r in registries {
        if let (Some(user), Some(password)) = (r.username(), r.password()) {
            chain = chain.with(StaticProvider::for_registry(
                r.host(),
                Credential::basic(user, password),
            ));
        }
    }
    let mut out = crate::Registries::new(Arc::new(chain));
    for r in registries {
        let mut builder = crate::ClientBuilder::new(&r.host());
        if let Some(ca) = r.ca_file() {
            builder = builder.ca_file(ca);
        }
        out.configure(&r.host(), builder);
    }
    out
}
