//! AWS SDK configuration and clients, built lazily and kept per (profile, region, endpoint, fips).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::options::redact_url;
use super::{EcrOptions, EcrRegistry};

/// ECR Public's API exists only in us-east-1.
pub(super) const PUBLIC_REGION: &str = "us-east-1";

/// The SDK configuration of one provider and the clients made from it.
pub(super) struct Sdk {
    options: EcrOptions,
    /// The default chain, loaded on first use (unless the options bring a config).
    loaded: tokio::sync::OnceCell<SdkConfig>,
    clients: Mutex<HashMap<ClientKey, EcrClient>>,
    public: tokio::sync::OnceCell<PublicClient>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    profile: Option<String>,
    region: String,
    endpoint: Option<String>,
    fips: Option<bool>,
}

/// A private ECR API client and what to call its endpoint in messages.
#[derive(Clone, Debug)]
pub(super) struct EcrClient {
    pub(super) client: aws_sdk_ecr::Client,
    pub(super) region: String,
    pub(super) endpoint: String,
}

/// An ECR Public API client and what to call its endpoint in messages.
#[derive(Clone, Debug)]
pub(super) struct PublicClient {
    pub(super) client: aws_sdk_ecrpublic::Client,
    pub(super) endpoint: String,
    /// Whether the configuration has a credentials provider at all.
    pub(super) has_credentials_provider: bool,
}

impl Sdk {
    pub(super) fn new(options: EcrOptions) -> Sdk {
        Sdk {
            options,
            loaded: tokio::sync::OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
            public: tokio::sync::OnceCell::new(),
        }
    }

    pub(super) fn options(&self) -> &EcrOptions {
        &self.options
    }

    /// The region ECR API calls for `registry` go to.
    pub(super) fn region_for(&self, registry: &EcrRegistry) -> String {
        self.options
            .region
            .clone()
            .unwrap_or_else(|| registry.region().to_owned())
    }

    /// The shared configuration: the caller's, or the default chain loaded once. `region` is the
    /// region the credential providers use (for STS, say); clients set their own.
    async fn shared(&self, region: &str) -> &SdkConfig {
        if let Some(config) = &self.options.sdk_config {
            return config;
        }
        self.loaded
            .get_or_init(|| async {
                // Only the profile and region go into the loader: endpoint and FIPS overrides are
                // for the ECR API, not for the STS calls of role and web-identity credentials.
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.to_owned()));
                if let Some(profile) = &self.options.aws_profile {
                    loader = loader.profile_name(profile);
                }
                // The AWS CLI and the other SDKs trust AWS_CA_BUNDLE (a proxy or private
                // endpoint's CA); the Rust SDK does not read it, so it is added here.
                if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE").filter(|b| !b.is_empty()) {
                    match ca_bundle_client(std::path::Path::new(&bundle)) {
                        Ok(client) => loader = loader.http_client(client),
                        Err(e) => tracing::error!(path = %std::path::Path::new(&bundle).display(), error = %e, "AWS_CA_BUNDLE cannot be used; the system's CA certificates are trusted instead"),
                    }
                }
                tracing::debug!(
                    profile = self.options.aws_profile.as_deref(),
                    region,
                    "loading the aws sdk default configuration"
                );
                loader.load().await
            })
            .await
    }

    /// Whether a credentials provider is configured (the default chain always has one).
    async fn has_credentials_provider(&self, region: &str) -> bool {
        self.shared(region).await.credentials_provider().is_some()
    }

    /// The ECR API client for `registry`.
    pub(super) async fn ecr(&self, registry: &EcrRegistry) -> EcrClient {
        let region = self.region_for(registry);
        // A FIPS registry host means FIPS all the way unless the options say otherwise.
        let fips = self.options.use_fips.or(registry.is_fips().then_some(true));
        let key = ClientKey {
            profile: self.options.aws_profile.clone(),
            region: region.clone(),
            endpoint: self.options.endpoint_url.clone(),
            fips,
        };
        if let Some(client) = self.lock().get(&key) {
            return client.clone();
        }
        let shared = self.shared(&region).await;
        let mut builder =
            aws_sdk_ecr::config::Builder::from(shared).region(Region::new(region.clone()));
        if shared.behavior_version().is_none() {
            builder = builder.behavior_version(BehaviorVersion::latest());
        }
        if let Some(url) = &self.options.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(fips) = fips {
            builder = builder.use_fips(fips);
        }
        let client = EcrClient {
            client: aws_sdk_ecr::Client::from_conf(builder.build()),
            endpoint: self.endpoint("ecr", &region, shared, fips),
            region,
        };
        self.lock().entry(key).or_insert(client).clone()
    }

    /// The ECR Public API client (us-east-1).
    pub(super) async fn ecr_public(&self) -> &PublicClient {
        self.public
            .get_or_init(|| async {
                let shared = self.shared(PUBLIC_REGION).await;
                let mut builder = aws_sdk_ecrpublic::config::Builder::from(shared)
                    .region(Region::new(PUBLIC_REGION));
                if shared.behavior_version().is_none() {
                    builder = builder.behavior_version(BehaviorVersion::latest());
                }
                if let Some(url) = &self.options.endpoint_url {
                    builder = builder.endpoint_url(url);
                }
                if let Some(fips) = self.options.use_fips {
                    builder = builder.use_fips(fips);
                }
                PublicClient {
                    client: aws_sdk_ecrpublic::Client::from_conf(builder.build()),
                    endpoint: self.endpoint(
                        "ecr-public",
                        PUBLIC_REGION,
                        shared,
                        self.options.use_fips,
                    ),
                    has_credentials_provider: self.has_credentials_provider(PUBLIC_REGION).await,
                }
            })
            .await
    }

    /// What to call the API endpoint in messages: the URL when one is configured, else the
    /// service and region (the SDK resolves the host, possibly from `AWS_ENDPOINT_URL_ECR`).
    fn endpoint(
        &self,
        service: &str,
        region: &str,
        shared: &SdkConfig,
        fips: Option<bool>,
    ) -> String {
        if let Some(url) = self
            .options
            .endpoint_url
            .as_deref()
            .or(shared.endpoint_url())
        {
            return redact_url(url);
        }
        let fips = if fips.or(shared.use_fips()).unwrap_or(false) {
            " fips"
        } else {
            ""
        };
        format!("{service}{fips} api in {region}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, EcrClient>> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An SDK HTTP client trusting the system's CA certificates and those of the PEM file `path`.
fn ca_bundle_client(
    path: &std::path::Path,
) -> Result<aws_sdk_ecr::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err("it holds no PEM certificate".to_owned());
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}
