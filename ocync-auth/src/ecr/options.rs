//! [`EcrOptions`]: how the ECR providers find AWS credentials and the ECR API.

use std::fmt;

use aws_config::SdkConfig;

/// How [`EcrProvider`](crate::EcrProvider), [`EcrPublicProvider`](crate::EcrPublicProvider) and
/// [`EcrApi`](crate::EcrApi) reach AWS.
///
/// The default loads the AWS SDK's default chain (`aws_config::defaults(BehaviorVersion::latest())`)
/// on first use: environment variables, the shared config and credentials files with their
/// profiles, role chains, `credential_process` and SSO, IRSA (web identity), EKS Pod Identity and
/// ECS container credentials, and the EC2 instance role. The region is the registry's (from its
/// host), and the SDK's own settings (`AWS_USE_FIPS_ENDPOINT`, `AWS_ENDPOINT_URL_ECR`,
/// `use_fips_endpoint` in the profile, ...) apply unless overridden here.
///
/// ```
/// use ocync_auth::EcrOptions;
///
/// let options = EcrOptions::new().aws_profile("vendor").use_fips(true);
/// assert_eq!(options.aws_profile.as_deref(), Some("vendor"));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct EcrOptions {
    /// The shared-config profile to take credentials and settings from (a registry's
    /// `aws_profile`), instead of `AWS_PROFILE` / `default`.
    pub aws_profile: Option<String>,
    /// The region to call the ECR API in, instead of the registry host's region.
    pub region: Option<String>,
    /// The ECR API endpoint, instead of the one the SDK resolves (emulators, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// FIPS API endpoints on or off. `None` leaves it to the SDK (`AWS_USE_FIPS_ENDPOINT`, the
    /// profile's `use_fips_endpoint`), except that a FIPS registry host turns it on.
    pub use_fips: Option<bool>,
    /// A ready SDK configuration used instead of loading the default chain (embedders, tests).
    /// The registry's region, [`EcrOptions::endpoint_url`] and [`EcrOptions::use_fips`] still
    /// override its settings; [`EcrOptions::aws_profile`] does not apply to it.
    pub sdk_config: Option<SdkConfig>,
}

impl EcrOptions {
    /// The default: the AWS SDK's default chain, the registry's region.
    pub fn new() -> EcrOptions {
        EcrOptions::default()
    }

    /// Sets [`EcrOptions::aws_profile`].
    pub fn aws_profile(mut self, profile: impl Into<String>) -> EcrOptions {
        self.aws_profile = Some(profile.into());
        self
    }

    /// Sets [`EcrOptions::region`].
    pub fn region(mut self, region: impl Into<String>) -> EcrOptions {
        self.region = Some(region.into());
        self
    }

    /// Sets [`EcrOptions::endpoint_url`].
    pub fn endpoint_url(mut self, url: impl Into<String>) -> EcrOptions {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets [`EcrOptions::use_fips`].
    pub fn use_fips(mut self, fips: bool) -> EcrOptions {
        self.use_fips = Some(fips);
        self
    }

    /// Sets [`EcrOptions::sdk_config`].
    pub fn sdk_config(mut self, config: SdkConfig) -> EcrOptions {
        self.sdk_config = Some(config);
        self
    }

    /// Where credentials come from, for error messages.
    pub(super) fn credential_source(&self) -> String {
        match (&self.sdk_config, &self.aws_profile) {
            (Some(_), _) => {
                "the credentials provider of the aws sdk config given by the caller".to_owned()
            }
            (None, profile) => {
                let profile = match profile {
                    Some(name) => format!("profile '{name}'"),
                    None => "profile $AWS_PROFILE or 'default'".to_owned(),
                };
                format!(
                    "tried the aws default chain: environment variables, {profile} in the shared \
                     config and credentials files, web identity token (IRSA), container \
                     credentials (ECS, EKS Pod Identity), EC2 instance metadata"
                )
            }
        }
    }
}

impl fmt::Debug for EcrOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An SdkConfig's Debug shows its providers; only the harmless parts are printed, and
        // endpoints without any user info.
        let sdk_config = self.sdk_config.as_ref().map(|config| SdkConfigSummary {
            region: config.region().map(|region| region.as_ref().to_owned()),
            endpoint_url: config.endpoint_url().map(redact_url),
            credentials_provider: config.credentials_provider().is_some(),
        });
        f.debug_struct("EcrOptions")
            .field("aws_profile", &self.aws_profile)
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_url),
            )
            .field("use_fips", &self.use_fips)
            .field("sdk_config", &sdk_config)
            .finish()
    }
}

#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug only")]
struct SdkConfigSummary {
    region: Option<String>,
    endpoint_url: Option<String>,
    credentials_provider: bool,
}

/// `url` without user info, query or fragment.
pub(super) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
            }
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "[unparsable url]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};

    use super::*;

    #[test]
    fn debug_shows_settings_but_no_secret() {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .endpoint_url("http://user:pa55word@127.0.0.1:5000/?token=qs-secret")
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret-access-key-Zq8vX",
                Some("session-token-Zq8vX".into()),
                None,
                "test",
            )))
            .build();
        let options = EcrOptions::new()
            .aws_profile("vendor")
            .endpoint_url("http://u:endpoint-pa55@127.0.0.1:1/")
            .use_fips(false)
            .sdk_config(config);
        let shown = format!("{options:?}");
        for secret in ["Zq8vX", "pa55", "qs-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for expected in [
            "vendor",
            "eu-west-1",
            "127.0.0.1:5000",
            "use_fips: Some(false)",
        ] {
            assert!(shown.contains(expected), "{shown}");
        }
    }

    #[test]
    fn credential_source_names_the_profile() {
        assert!(
            EcrOptions::new()
                .aws_profile("vendor")
                .credential_source()
                .contains("profile 'vendor'")
        );
        assert!(
            EcrOptions::new()
                .credential_source()
                .contains("$AWS_PROFILE or 'default'")
        );
    }
}
