//! The one error type of `ocync-auth`.
//!
//! No message ever contains a secret: credentials only travel as [`crate::Secret`], realm URLs
//! are shown without user info or query string, and text that a server or a helper sent back is
//! scrubbed of the credentials that were sent to it.

use std::path::PathBuf;

use reqwest::StatusCode;

/// Errors from credential providers and token exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A docker `config.json` exists but cannot be read.
    #[error("cannot read docker config '{}'", path.display())]
    DockerConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A docker `config.json` is malformed.
    #[error("invalid docker config '{}': {reason}", path.display())]
    DockerConfig {
        /// The file (or the origin given to [`crate::DockerConfigProvider::from_json`]).
        path: PathBuf,
        /// What is wrong, naming the key but never a credential value.
        reason: String,
    },

    /// A `docker-credential-<name>` helper could not be run or gave an unusable answer.
    #[error("credential helper '{helper}' failed for registry '{registry}': {reason}")]
    CredentialHelper {
        /// The helper program, `docker-credential-<name>`.
        helper: String,
        /// The registry it was asked about.
        registry: String,
        /// What went wrong; at most the first line of the helper's own error output.
        reason: String,
    },

    /// A credential provider failed (as opposed to having nothing for the registry).
    #[error("credential provider '{provider}' failed for registry '{registry}'")]
    Provider {
        /// The provider's [`crate::CredentialProvider::name`].
        provider: &'static str,
        /// The registry it was asked about.
        registry: String,
        /// The provider's error.
        #[source]
        source: Box<Error>,
    },

    /// The token endpoint could not be reached or the response could not be read.
    #[error("token request to '{realm}' for registry '{registry}' failed")]
    TokenRequest {
        /// The registry the token is for.
        registry: String,
        /// The token realm, without query string.
        realm: String,
        /// The HTTP error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// The token endpoint refused the credentials (401 or 403).
    #[error("token server '{realm}' denied access to registry '{registry}' ({status}): {message}")]
    TokenDenied {
        /// The registry the token is for.
        registry: String,
        /// The token realm, without query string.
        realm: String,
        /// The HTTP status.
        status: StatusCode,
        /// The server's explanation, scrubbed of the credentials that were sent.
        message: String,
    },

    /// The token endpoint answered with an unexpected status other than 401 or 403.
    #[error("token server '{realm}' for registry '{registry}' answered {status}: {message}")]
    TokenServer {
        /// The registry the token is for.
        registry: String,
        /// The token realm, without query string.
        realm: String,
        /// The HTTP status.
        status: StatusCode,
        /// The server's explanation, scrubbed of the credentials that were sent.
        message: String,
    },

    /// The token endpoint answered 2xx but without a usable token.
    #[error("invalid token response from '{realm}' for registry '{registry}': {reason}")]
    TokenResponse {
        /// The registry the token is for.
        registry: String,
        /// The token realm, without query string.
        realm: String,
        /// What is wrong with the response (never its content).
        reason: String,
    },

    /// Credentials for an https registry would go to a plain-http token realm.
    #[error(
        "refusing to send credentials for https registry '{registry}' to plain-http token realm '{realm}'"
    )]
    InsecureRealm {
        /// The registry the token is for.
        registry: String,
        /// The token realm, without query string.
        realm: String,
    },

    /// A challenge's realm is not an absolute http(s) URL.
    #[error("invalid token realm '{realm}' for registry '{registry}': {reason}")]
    InvalidRealm {
        /// The registry the token is for.
        registry: String,
        /// The realm, without user info or query string.
        realm: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A fixed token (configured `token`, docker `registrytoken`) is a JWT whose `exp` has
    /// passed: sending it would only earn a 401.
    #[error("the token configured for registry '{registry}' expired {ago} ago: issue a new one")]
    TokenExpired {
        /// The registry.
        registry: String,
        /// How long ago, e.g. `3 h 12 min`.
        ago: String,
    },

    /// A scope string is not `type[(class)]:name:action[,action]*`.
    #[error("invalid scope '{input}': {reason}")]
    InvalidScope {
        /// The scope as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    /// Whether the registry's token server refused the credentials: retrying with the same
    /// credentials will not help.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Error::TokenDenied { .. } | Error::TokenExpired { .. } => true,
            Error::Provider { source, .. } => source.is_auth_failure(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failure_is_token_denied_only() {
        let denied = Error::TokenDenied {
            registry: "r".into(),
            realm: "https://a/token".into(),
            status: StatusCode::UNAUTHORIZED,
            message: "no".into(),
        };
        assert!(denied.is_auth_failure());
        let wrapped = Error::Provider {
            provider: "ecr",
            registry: "r".into(),
            source: Box::new(denied),
        };
        assert!(wrapped.is_auth_failure());
        let response = Error::TokenResponse {
            registry: "r".into(),
            realm: "https://a/token".into(),
            reason: "no token".into(),
        };
        assert!(!response.is_auth_failure());
        let scope = Error::InvalidScope {
            input: "x".into(),
            reason: "y",
        };
        assert!(!scope.is_auth_failure());
    }

    #[test]
    fn messages_are_lowercase_and_name_their_input() {
        let cases = [
            (
                Error::DockerConfig {
                    path: "/h/.docker/config.json".into(),
                    reason: "'auths' is not an object".into(),
                },
                "invalid docker config '/h/.docker/config.json': 'auths' is not an object",
            ),
            (
                Error::CredentialHelper {
                    helper: "docker-credential-x".into(),
                    registry: "ghcr.io".into(),
                    reason: "exited with status 1".into(),
                },
                "credential helper 'docker-credential-x' failed for registry 'ghcr.io': exited with status 1",
            ),
            (
                Error::InsecureRealm {
                    registry: "r.io".into(),
                    realm: "http://auth/token".into(),
                },
                "refusing to send credentials for https registry 'r.io' to plain-http token realm 'http://auth/token'",
            ),
            (
                Error::InvalidScope {
                    input: "repo".into(),
                    reason: "expected type:name:actions",
                },
                "invalid scope 'repo': expected type:name:actions",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
