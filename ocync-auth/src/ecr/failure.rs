//! Turning AWS SDK errors into [`Error`]s that say what failed and how to fix it, without a
//! secret.

use std::error::Error as StdError;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use reqwest::StatusCode;

use crate::Error;

/// Error codes that mean "these credentials may not do this".
const ACCESS_DENIED: &[&str] = &["AccessDeniedException", "AccessDenied"];

/// Error codes that mean "these credentials are not valid" (wrong, expired, badly signed).
const CREDENTIALS_REJECTED: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationTokenException",
];

/// The longest server message quoted in an error.
const MAX_MESSAGE: usize = 300;

/// What went wrong in one SDK call, with everything that could carry a secret left out.
#[derive(Debug)]
pub(super) struct Failure {
    kind: Kind,
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    detail: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// The service answered with an error.
    Service,
    /// The credential chain found nothing.
    CredentialsMissing,
    /// The credential chain failed (bad profile, STS refused the role, ...).
    Credentials,
    /// The request failed on the way (connection, timeout, unreadable answer).
    Other,
}

/// The context of a call, for messages.
pub(super) struct Call<'a> {
    /// The registry the call was for.
    pub(super) registry: &'a str,
    /// The API operation, such as `GetAuthorizationToken`.
    pub(super) operation: &'static str,
    /// The IAM permission(s) the operation needs.
    pub(super) permission: &'static str,
    /// Where the call went (see `Sdk::endpoint`).
    pub(super) endpoint: &'a str,
    /// Where credentials came from (see `EcrOptions::credential_source`).
    pub(super) credential_source: &'a str,
}

impl Failure {
    /// Classifies an SDK error.
    pub(super) fn new<E>(error: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        if let Some(service) = error.as_service_error() {
            return Failure {
                kind: Kind::Service,
                status,
                code: service.code().map(str::to_owned),
                message: service.message().map(|m| clip(m, MAX_MESSAGE)),
                detail: String::new(),
            };
        }
        let kind = credentials_kind(error).unwrap_or(Kind::Other);
        let detail = match error {
            // The body of an answer that could not be parsed may hold the token it carried.
            SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
            _ => clip(&causes(error), MAX_MESSAGE * 2),
        };
        Failure {
            kind,
            status,
            code: None,
            message: None,
            detail,
        }
    }

    /// The failure of a call made with no credentials provider at all.
    pub(super) fn no_credentials_provider() -> Failure {
        Failure {
            kind: Kind::CredentialsMissing,
            status: None,
            code: None,
            message: None,
            detail: "no credentials provider".to_owned(),
        }
    }

    /// The service's error code, such as `RepositoryNotFoundException`.
    pub(super) fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether no AWS credentials were found at all.
    pub(super) fn is_credentials_missing(&self) -> bool {
        self.kind == Kind::CredentialsMissing
    }

    /// Whether the service refused the credentials or their permissions.
    pub(super) fn is_denied(&self) -> bool {
        self.code().is_some_and(|code| {
            ACCESS_DENIED.contains(&code) || CREDENTIALS_REJECTED.contains(&code)
        })
    }

    /// The error for `call`.
    pub(super) fn into_error(self, call: &Call<'_>) -> Error {
        let registry = call.registry.to_owned();
        let realm = format!("{} ({})", call.endpoint, call.operation);
        let code = self.code.as_deref().unwrap_or("unknown error");
        let said = match &self.message {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        };
        match self.kind {
            Kind::Service if ACCESS_DENIED.contains(&code) => Error::TokenDenied {
                registry,
                realm,
                status: status(self.status, StatusCode::FORBIDDEN),
                message: format!(
                    "{said}; the aws principal needs the iam permission {}",
                    call.permission
                ),
            },
            Kind::Service if CREDENTIALS_REJECTED.contains(&code) => Error::TokenDenied {
                registry,
                realm,
                status: status(self.status, StatusCode::FORBIDDEN),
                message: format!(
                    "{said}; the aws credentials ({}) were rejected: renew expired session \
                     credentials (aws sso login, a new role session) or choose another profile \
                     with AWS_PROFILE or the registry's aws_profile",
                    call.credential_source
                ),
            },
            Kind::Service => Error::TokenServer {
                registry,
                realm,
                status: status(self.status, StatusCode::INTERNAL_SERVER_ERROR),
                message: said,
            },
            Kind::CredentialsMissing => Error::CredentialHelper {
                helper: "aws credential chain".to_owned(),
                registry,
                reason: format!(
                    "no aws credentials found for {} ({}); to fix: set AWS_PROFILE or the \
                     registry's aws_profile, export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     or give the workload an iam role (IRSA or EKS Pod Identity on EKS, the task \
                     role on ECS, the instance profile on EC2)",
                    call.operation, call.credential_source
                ),
            },
            Kind::Credentials => Error::CredentialHelper {
                helper: "aws credential chain".to_owned(),
                registry,
                reason: format!(
                    "cannot load aws credentials for {} ({}): {}",
                    call.operation, call.credential_source, self.detail
                ),
            },
            Kind::Other => Error::CredentialHelper {
                helper: "aws-sdk".to_owned(),
                registry,
                reason: format!("{realm} failed: {}", self.detail),
            },
        }
    }
}

/// Whether a credentials error is among the causes of `error`.
///
/// `aws-credential-types`' `CredentialsError` is not re-exported by the SDK crates, so it is
/// recognised by its variant name (`Debug`) and its fixed messages (`Display`).
fn credentials_kind(error: &(dyn StdError + 'static)) -> Option<Kind> {
    const CREDENTIAL_FAILURES: &[&str] = &[
        "credentials provider timed out",
        "the credentials provider was not properly configured",
        "an error occurred while loading credentials",
        "unexpected credentials error",
    ];
    let mut current = Some(error);
    while let Some(e) = current {
        if format!("{e:?}").starts_with("CredentialsNotLoaded(") {
            return Some(Kind::CredentialsMissing);
        }
        let shown = e.to_string();
        if CREDENTIAL_FAILURES.iter().any(|m| shown.starts_with(m)) {
            return Some(Kind::Credentials);
        }
        current = e.source();
    }
    None
}

/// The messages of `error` and its causes, joined with `: `, each once (the SDK's own
/// `DisplayErrorContext` appends the whole `Debug` form as well).
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut shown: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let message = e.to_string();
        if !message.is_empty() && !shown.iter().any(|earlier| earlier.contains(&message)) {
            shown.push(message);
        }
        current = e.source();
    }
    shown.join(": ")
}

fn status(code: Option<u16>, default: StatusCode) -> StatusCode {
    code.and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(default)
}

/// At most `max` characters of `text`, on one line.
fn clip(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max + 1)
        .collect();
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call<'static> {
        Call {
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            operation: "GetAuthorizationToken",
            permission: "'ecr:GetAuthorizationToken'",
            endpoint: "ecr api in us-east-1",
            credential_source: "the test chain",
        }
    }

    fn service(code: &str, status: u16) -> Failure {
        Failure {
            kind: Kind::Service,
            status: Some(status),
            code: Some(code.to_owned()),
            message: Some("said the server".to_owned()),
            detail: String::new(),
        }
    }

    #[test]
    fn messages_table() {
        let cases = [
            (
                service("AccessDeniedException", 400),
                "token server 'ecr api in us-east-1 (GetAuthorizationToken)' denied access to \
                 registry '123456789012.dkr.ecr.us-east-1.amazonaws.com' (400 Bad Request): \
                 AccessDeniedException: said the server; the aws principal needs the iam \
                 permission 'ecr:GetAuthorizationToken'",
            ),
            (
                service("ThrottlingException", 400),
                "token server 'ecr api in us-east-1 (GetAuthorizationToken)' for registry \
                 '123456789012.dkr.ecr.us-east-1.amazonaws.com' answered 400 Bad Request: \
                 ThrottlingException: said the server",
            ),
            (
                Failure::no_credentials_provider(),
                "credential helper 'aws credential chain' failed for registry \
                 '123456789012.dkr.ecr.us-east-1.amazonaws.com': no aws credentials found for \
                 GetAuthorizationToken (the test chain); to fix: set AWS_PROFILE or the \
                 registry's aws_profile, export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 give the workload an iam role (IRSA or EKS Pod Identity on EKS, the task role on \
                 ECS, the instance profile on EC2)",
            ),
        ];
        for (failure, expected) in cases {
            assert_eq!(failure.into_error(&call()).to_string(), expected);
        }
        let rejected = service("UnrecognizedClientException", 400).into_error(&call());
        assert!(rejected.is_auth_failure());
        assert!(rejected.to_string().contains("were rejected"), "{rejected}");
    }

    #[test]
    fn denied_codes() {
        assert!(service("AccessDeniedException", 400).is_denied());
        assert!(service("ExpiredTokenException", 400).is_denied());
        assert!(!service("ServerException", 500).is_denied());
        assert!(!Failure::no_credentials_provider().is_denied());
        assert!(Failure::no_credentials_provider().is_credentials_missing());
    }

    #[test]
    fn clip_table() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a\nb\tc", 10), "a b c");
        assert_eq!(clip("0123456789abc", 10), "0123456789...");
        assert_eq!(clip("0123456789", 10), "0123456789");
    }
}
