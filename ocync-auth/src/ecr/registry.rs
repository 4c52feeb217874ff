//! [`EcrRegistry`]: what an Amazon ECR registry host name says about the registry.

/// The host of Amazon ECR Public.
const PUBLIC_HOST: &str = "public.ecr.aws";

/// A private Amazon ECR registry, parsed from its host name.
///
/// The host names AWS documents ("Amazon ECR endpoints and quotas"):
///
/// | form | host |
/// |---|---|
/// | standard | `<account>.dkr.ecr.<region>.amazonaws.com` |
/// | FIPS | `<account>.dkr.ecr-fips.<region>.amazonaws.com` |
/// | dual-stack | `<account>.dkr-ecr.<region>.on.aws` |
/// | FIPS dual-stack | `<account>.dkr-ecr-fips.<region>.on.aws` |
/// | China | `<account>.dkr.ecr.<region>.amazonaws.com.cn` |
///
/// ```
/// use ocync_auth::EcrRegistry;
///
/// let registry = EcrRegistry::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
/// assert_eq!(registry.account_id(), "123456789012");
/// assert_eq!(registry.region(), "eu-west-1");
/// assert_eq!(registry.partition(), "aws");
/// assert_eq!(registry.fips_host(), "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com");
/// assert!(EcrRegistry::parse("ghcr.io").is_none());
/// assert!(EcrRegistry::is_public("public.ecr.aws"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EcrRegistry {
    account_id: String,
    region: String,
    fips: bool,
    dual_stack: bool,
}

impl EcrRegistry {
    /// Parses a registry host (`host` or `host:443`, any case). `None` when it is not a private
    /// ECR registry host: another domain, an account id that is not 12 digits, a region that is
    /// not `<letters>-...-<digit(s)>`, or a China region outside `.amazonaws.com.cn` (and the
    /// reverse).
    pub fn parse(host: &str) -> Option<EcrRegistry> {
        let host = host.trim().to_ascii_lowercase();
        let host = host.strip_suffix(":443").unwrap_or(&host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let (account_id, rest) = host.split_once('.')?;
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let forms = [
            ("dkr.ecr.", false, false),
            ("dkr.ecr-fips.", true, false),
            ("dkr-ecr.", false, true),
            ("dkr-ecr-fips.", true, true),
        ];
        let (rest, fips, dual_stack) = forms.iter().find_map(|&(prefix, fips, dual_stack)| {
            rest.strip_prefix(prefix)
                .map(|rest| (rest, fips, dual_stack))
        })?;
        let (region, domain) = rest.split_once('.')?;
        let china = region.starts_with("cn-");
        let domain_fits = match (dual_stack, domain) {
            (false, "amazonaws.com") | (true, "on.aws") => !china,
            (false, "amazonaws.com.cn") => china,
            _ => false,
        };
        (domain_fits && valid_region(region)).then(|| EcrRegistry {
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            fips,
            dual_stack,
        })
    }

    /// Whether `host` (`host` or `host:443`, any case) is Amazon ECR Public, `public.ecr.aws`.
    pub fn is_public(host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let host = host.strip_suffix(":443").unwrap_or(&host);
        host.strip_suffix('.').unwrap_or(host) == PUBLIC_HOST
    }

    /// The 12-digit AWS account id that owns the registry.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The AWS region of the registry, such as `us-east-1`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The AWS partition of the region: `aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`, else
    /// `aws`.
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// Whether the host is a FIPS endpoint (`dkr.ecr-fips` or `dkr-ecr-fips`).
    pub fn is_fips(&self) -> bool {
        self.fips
    }

    /// Whether the host is a dual-stack (IPv4 and IPv6) endpoint (`….on.aws`).
    pub fn is_dual_stack(&self) -> bool {
        self.dual_stack
    }

    /// The registry host in its canonical (lowercase) form.
    pub fn host(&self) -> String {
        self.host_with(self.fips)
    }

    /// The FIPS registry host for the same registry, keeping dual-stack: what the data plane
    /// talks to when FIPS endpoints are asked for (`AWS_USE_FIPS_ENDPOINT=true`), since the AWS
    /// SDK switches only the API endpoint.
    pub fn fips_host(&self) -> String {
        self.host_with(true)
    }

    fn host_with(&self, fips: bool) -> String {
        let fips = if fips { "-fips" } else { "" };
        let (account, region) = (&self.account_id, &self.region);
        if self.dual_stack {
            format!("{account}.dkr-ecr{fips}.{region}.on.aws")
        } else {
            let cn = if self.partition() == "aws-cn" {
                ".cn"
            } else {
                ""
            };
            format!("{account}.dkr.ecr{fips}.{region}.amazonaws.com{cn}")
        }
    }
}

/// `<letters>(-<letters>)+-<digits>`, as in `us-east-1`, `us-gov-west-1`, `ap-southeast-5`.
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (host, account, region, partition, fips, dual-stack)
        let accepted = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "123456789012",
                "us-east-1",
                "aws",
                false,
                false,
            ),
            (
                "123456789012.DKR.ECR.EU-West-1.AmazonAWS.com",
                "123456789012",
                "eu-west-1",
                "aws",
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
                "123456789012",
                "us-east-1",
                "aws",
                false,
                false,
            ),
            (
                "210987654321.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "210987654321",
                "us-gov-west-1",
                "aws-us-gov",
                true,
                false,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "123456789012",
                "cn-north-1",
                "aws-cn",
                false,
                false,
            ),
            (
                "123456789012.dkr-ecr.ap-southeast-5.on.aws",
                "123456789012",
                "ap-southeast-5",
                "aws",
                false,
                true,
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-2.on.aws",
                "123456789012",
                "us-east-2",
                "aws",
                true,
                true,
            ),
        ];
        for (host, account, region, partition, fips, dual_stack) in accepted {
            let parsed = EcrRegistry::parse(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(parsed.account_id(), account, "{host}");
            assert_eq!(parsed.region(), region, "{host}");
            assert_eq!(parsed.partition(), partition, "{host}");
            assert_eq!(parsed.is_fips(), fips, "{host}");
            assert_eq!(parsed.is_dual_stack(), dual_stack, "{host}");
        }
        let rejected = [
            "",
            "ghcr.io",
            "public.ecr.aws",
            "localhost:5000",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/path",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr.useast1.amazonaws.com",
            "123456789012.dkr.ecr.us-east.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1a.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            "123456789012.dkr-ecr.cn-north-1.on.aws",
            "123456789012.api.ecr.us-east-1.amazonaws.com",
            "api.ecr.us-east-1.amazonaws.com",
            "evil.example/123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ];
        for host in rejected {
            assert_eq!(EcrRegistry::parse(host), None, "{host}");
        }
    }

    #[test]
    fn hosts_table() {
        // (host, canonical host, FIPS host)
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            ),
            (
                "123456789012.DKR.ECR-FIPS.us-gov-east-1.amazonaws.com:443",
                "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
                "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
            ),
            (
                "123456789012.dkr-ecr.eu-central-1.on.aws",
                "123456789012.dkr-ecr.eu-central-1.on.aws",
                "123456789012.dkr-ecr-fips.eu-central-1.on.aws",
            ),
            (
                "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
                "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
                "123456789012.dkr.ecr-fips.cn-northwest-1.amazonaws.com.cn",
            ),
        ];
        for (host, canonical, fips) in cases {
            let parsed = EcrRegistry::parse(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(parsed.host(), canonical, "{host}");
            assert_eq!(parsed.fips_host(), fips, "{host}");
            assert_eq!(EcrRegistry::parse(&parsed.host()), Some(parsed.clone()));
            assert_eq!(
                EcrRegistry::parse(&parsed.fips_host()).map(|r| r.is_fips()),
                Some(true)
            );
        }
    }

    #[test]
    fn is_public_table() {
        for (host, public) in [
            ("public.ecr.aws", true),
            ("PUBLIC.ECR.AWS", true),
            ("public.ecr.aws:443", true),
            ("public.ecr.aws.", true),
            ("public.ecr.aws:5000", false),
            ("ecr.aws", false),
            ("xpublic.ecr.aws", false),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", false),
            ("docker.io", false),
        ] {
            assert_eq!(EcrRegistry::is_public(host), public, "{host}");
        }
    }
}
