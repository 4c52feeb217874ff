//! The one error type of `ocync-transport`: an opaque [`Error`] around an [`ErrorKind`].
//!
//! Every network error names the host that was actually contacted (after redirects, e.g. an ACR
//! data endpoint), never a URL's query string (pre-signed blob URLs carry signatures), and never
//! a credential.

use std::fmt;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde::Deserialize;

use ocync_core::Digest;

/// An error from a registry, a layout or the copy engine. Cheap to clone (one failure can be
/// reported for several targets).
#[derive(Clone)]
pub struct Error {
    kind: std::sync::Arc<ErrorKind>,
}

/// What went wrong. Match on it through [`Error::kind`]; prefer the predicates for decisions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid OCI data: a bad reference, digest, or manifest.
    #[error("{context}")]
    Oci {
        /// What was being read, e.g. `manifest 127.0.0.1:5000/app:v1`.
        context: String,
        /// The data error.
        #[source]
        source: ocync_core::Error,
    },

    /// A credential provider or token exchange failed.
    #[error("authentication with {registry} failed{}", provider.map(|p| format!(" (credentials from {p})")).unwrap_or_default())]
    Auth {
        /// The registry.
        registry: String,
        /// The provider whose credentials the token server refused, when it was one.
        provider: Option<&'static str>,
        /// The cause.
        #[source]
        source: ocync_auth::Error,
    },

    /// The registry refused the credentials or the action.
    #[error("{registry} denied {action} on repository '{repository}' ({status}{detail}): {hint}")]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// `pull` or `push`.
        action: &'static str,
        /// 401 or 403.
        status: StatusCode,
        /// The registry's error message, prefixed with `: `, or empty.
        detail: String,
        /// The credential provider whose credentials were refused, if any were sent.
        provider: Option<&'static str>,
        /// What to do about it.
        hint: String,
    },

    /// No TCP connection could be made.
    #[error("cannot connect to {host}: is the registry running and the address right?")]
    Connect {
        /// The host contacted.
        host: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// A connect, read or overall timeout expired.
    #[error("timed out talking to {host}")]
    Timeout {
        /// The host contacted.
        host: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake failed, most often an untrusted certificate.
    #[error(
        "tls handshake with {host} failed: set a CA bundle for this registry (ca_file, SSL_CERT_FILE) or, for a test registry, use plain http"
    )]
    Tls {
        /// The host contacted.
        host: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// Any other transport failure (connection reset, malformed response).
    #[error("request to {host} failed")]
    Request {
        /// The host contacted.
        host: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// The registry answered with an unexpected status.
    #[error("{method} {url} returned {status}{detail}")]
    Status {
        /// The host contacted.
        host: String,
        /// Request method.
        method: String,
        /// URL without its query string.
        url: String,
        /// The status.
        status: StatusCode,
        /// Parsed OCI error codes, if the body had them.
        codes: Vec<String>,
        /// `: <code>: <message>` from the body, or empty.
        detail: String,
        /// `Retry-After` in seconds, if the registry sent one.
        retry_after: Option<u64>,
    },

    /// The registry kept failing: its retry budget is spent, so requests fail at once instead
    /// of waiting on a registry that is down.
    #[error(
        "{registry} keeps failing ({retries} retries in the last {window_secs} s, last: {last}): giving up on it; is it up and reachable?"
    )]
    RetryBudget {
        /// The registry.
        registry: String,
        /// Retries the budget allows per window.
        retries: u32,
        /// The window, seconds.
        window_secs: u64,
        /// The last failure.
        last: String,
    },

    /// A manifest or tag does not exist.
    #[error("manifest '{reference}' not found in {location}")]
    ManifestNotFound {
        /// `registry/repository` or the layout path.
        location: String,
        /// Tag or digest.
        reference: String,
    },

    /// Blob bytes do not match their digest; nothing was stored from them.
    #[error("blob {expected} from {location} is corrupt: its content hashes to {actual}")]
    BlobDigest {
        /// Where the bytes came from.
        location: String,
        /// The digest the blob is addressed by.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },

    /// Blob download ended early or ran long.
    #[error(
        "blob {digest} from {location} has {actual} bytes, its descriptor says {expected}{hint}"
    )]
    BlobSize {
        /// Where the bytes came from.
        location: String,
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes received.
        actual: u64,
        /// A hint, e.g. that the download was cut short.
        hint: &'static str,
        /// The connection dropped (worth a retry), as opposed to content of the wrong size.
        interrupted: bool,
    },

    /// A manifest is larger than [`ocync_core::MAX_MANIFEST_SIZE`].
    #[error(
        "manifest '{reference}' from {location} is larger than the {limit}-byte limit ({size} bytes)"
    )]
    ManifestTooLarge {
        /// Where it came from.
        location: String,
        /// Tag or digest.
        reference: String,
        /// Its size (a lower bound when the read was cut off).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// The registry broke the protocol (a missing `Location`, a bad header).
    #[error("{host} broke the distribution protocol: {reason}")]
    Protocol {
        /// The host contacted.
        host: String,
        /// What was wrong.
        reason: String,
    },

    /// An OCI image layout cannot be read or written.
    #[error("oci layout {path}: {reason}")]
    Layout {
        /// The layout directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// The I/O cause, if any.
        #[source]
        source: Option<std::io::Error>,
    },

    /// Client settings are invalid (a CA bundle that does not load, a bad registry name).
    #[error("invalid settings for registry '{registry}': {reason}")]
    Settings {
        /// The registry.
        registry: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A registry control-plane call ([`crate::RegistryApi`]) failed.
    #[error("{operation} on {registry} failed: {reason}")]
    Api {
        /// The registry.
        registry: String,
        /// The call (`BatchCheckLayerAvailability`, `CreateRepository`).
        operation: &'static str,
        /// What went wrong and what to do.
        reason: String,
    },

    /// A tag filter (glob, version range, `latest` without `sort`) is invalid.
    #[error("invalid tag filter {field} '{input}': {reason}")]
    InvalidFilter {
        /// The field at fault (`glob`, `semver`, `exclude`, `latest`, …).
        field: &'static str,
        /// The value as given.
        input: String,
        /// What is wrong and what to write instead.
        reason: String,
    },

    /// A mapping selected fewer tags than its `min_tags`.
    #[error("selected {selected} tags from {repository}, fewer than min_tags {min_tags}")]
    BelowMinTags {
        /// The source repository.
        repository: String,
        /// Tags selected.
        selected: usize,
        /// The minimum.
        min_tags: usize,
    },

    /// A location string is neither a registry reference nor `oci:<dir>[:tag]`.
    #[error("invalid location '{input}': {reason}")]
    InvalidLocation {
        /// The string as given.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &*self.kind {
            ErrorKind::Status { status, .. } | ErrorKind::Denied { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The content (manifest, tag, blob) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&*self.kind, ErrorKind::ManifestNotFound { .. })
            || self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// Credentials are missing, wrong, or lack the permission.
    pub fn is_unauthorized(&self) -> bool {
        match &*self.kind {
            ErrorKind::Denied { .. } => true,
            ErrorKind::Auth { source, .. } => source.is_auth_failure(),
            _ => false,
        }
    }

    /// The registry throttled the request (429).
    pub fn is_rate_limited(&self) -> bool {
        self.status() == Some(StatusCode::TOO_MANY_REQUESTS)
    }

    /// A retry might succeed: timeouts, connection failures, 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match &*self.kind {
            ErrorKind::Timeout { .. } | ErrorKind::Connect { .. } | ErrorKind::Request { .. } => {
                true
            }
            // A download cut off by the network; content of the wrong size is not transient.
            ErrorKind::BlobSize { interrupted, .. } => *interrupted,
            ErrorKind::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            _ => false,
        }
    }

    /// The OCI error codes the registry sent (`MANIFEST_BLOB_UNKNOWN`, `DENIED`, …).
    pub fn codes(&self) -> &[String] {
        match &*self.kind {
            ErrorKind::Status { codes, .. } => codes,
            _ => &[],
        }
    }

    /// Seconds the registry asked to wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        match &*self.kind {
            ErrorKind::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The registry refused to move a tag because the repository's tags are immutable (ECR's
    /// `IMMUTABLE` tag setting): the tag already exists and stays as it is.
    pub fn is_immutable_tag(&self) -> bool {
        self.codes().iter().any(|c| c == "TAG_INVALID")
            && matches!(&*self.kind, ErrorKind::Status { detail, .. } if detail.contains("immutable") || detail.contains("cannot be overwritten"))
    }

    /// The data was corrupt: a digest or size mismatch.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            &*self.kind,
            ErrorKind::BlobDigest { .. }
                | ErrorKind::BlobSize {
                    interrupted: false,
                    ..
                }
        ) || matches!(
            &*self.kind,
            ErrorKind::Oci {
                source: ocync_core::Error::DigestMismatch { .. },
                ..
            }
        )
    }

    pub(crate) fn oci(context: impl Into<String>, source: ocync_core::Error) -> Error {
        ErrorKind::Oci {
            context: context.into(),
            source,
        }
        .into()
    }

    pub(crate) fn layout(
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
        source: Option<std::io::Error>,
    ) -> Error {
        ErrorKind::Layout {
            path: path.into(),
            reason: reason.into(),
            source,
        }
        .into()
    }

    pub(crate) fn protocol(host: &str, reason: impl Into<String>) -> Error {
        ErrorKind::Protocol {
            host: host.to_owned(),
            reason: reason.into(),
        }
        .into()
    }

    /// Classify a reqwest error, naming the host it was talking to (after redirects).
    pub(crate) fn transport(fallback_host: &str, source: reqwest::Error) -> Error {
        let host = source
            .url()
            .map(host_of)
            .unwrap_or_else(|| fallback_host.to_owned());
        let source = source.without_url();
        let kind = if source.is_timeout() {
            ErrorKind::Timeout { host, source }
        } else if is_tls_error(&source) {
            ErrorKind::Tls { host, source }
        } else if source.is_connect() {
            ErrorKind::Connect { host, source }
        } else {
            ErrorKind::Request { host, source }
        };
        kind.into()
    }

    /// An error for an unexpected response, with the OCI error body parsed.
    pub(crate) fn from_response(
        method: &reqwest::Method,
        url: &url::Url,
        status: StatusCode,
        body: &[u8],
        retry_after: Option<u64>,
    ) -> Error {
        let (codes, detail) = parse_error_body(body);
        ErrorKind::Status {
            host: host_of(url),
            method: method.to_string(),
            url: redact(url),
            status,
            codes,
            detail,
            retry_after,
        }
        .into()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error {
            kind: std::sync::Arc::new(kind),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.kind, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

/// `host[:port]` of a URL.
pub(crate) fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.as_str().to_owned(),
    }
}

/// A URL without query and fragment: pre-signed blob URLs carry credentials in the query.
pub(crate) fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// The rustls error somewhere in a reqwest error's chain. hyper-util wraps it in an
/// `io::Error` inside another `io::Error`, whose `source()` skips both, so `io::Error`s are
/// unwrapped through `get_ref`.
fn find_tls_error(err: &reqwest::Error) -> Option<&rustls::Error> {
    fn dig<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        dig(inner)
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tls) = dig(e) {
            return Some(tls);
        }
        source = e.source();
    }
    None
}

fn is_tls_error(err: &reqwest::Error) -> bool {
    find_tls_error(err).is_some()
}

/// Whether the TLS failure means "the server does not speak TLS" (it answered a ClientHello
/// with plain HTTP), as opposed to a certificate problem.
pub(crate) fn is_plaintext_server(err: &reqwest::Error) -> bool {
    matches!(
        find_tls_error(err),
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. })
    )
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<OciError>,
}

#[derive(Deserialize)]
struct OciError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// OCI error envelope `{"errors":[{"code","message","detail"}]}`: the codes, and a `: code:
/// message` suffix for display. Other bodies contribute their first line, cut short.
fn parse_error_body(body: &[u8]) -> (Vec<String>, String) {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
        && !parsed.errors.is_empty()
    {
        let codes = parsed.errors.iter().map(|e| e.code.clone()).collect();
        let first = &parsed.errors[0];
        let detail = match (first.code.is_empty(), first.message.is_empty()) {
            (false, false) => format!(": {}: {}", first.code, first.message),
            (false, true) => format!(": {}", first.code),
            (true, false) => format!(": {}", first.message),
            (true, true) => String::new(),
        };
        return (codes, detail);
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        (Vec::new(), String::new())
    } else {
        (
            Vec::new(),
            format!(": {}", line.chars().take(200).collect::<String>()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_bodies_are_parsed() {
        let (codes, detail) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:x"}]}"#,
        );
        assert_eq!(codes, ["MANIFEST_BLOB_UNKNOWN"]);
        assert_eq!(detail, ": MANIFEST_BLOB_UNKNOWN: blob unknown to registry");
        let (codes, detail) = parse_error_body(b"404 page not found\n");
        assert!(codes.is_empty());
        assert_eq!(detail, ": 404 page not found");
        assert_eq!(parse_error_body(b"").1, "");
    }

    #[test]
    fn redaction_drops_query_and_userinfo() {
        let u = url::Url::parse("https://user:pw@blob.example.net:8443/x/data?sig=SECRET&se=1#f")
            .unwrap();
        assert_eq!(redact(&u), "https://blob.example.net:8443/x/data");
        assert_eq!(host_of(&u), "blob.example.net:8443");
    }

    #[test]
    fn status_error_names_host_and_codes() {
        let url = url::Url::parse("http://127.0.0.1:5000/v2/app/manifests/v1?x=1").unwrap();
        let err = Error::from_response(
            &reqwest::Method::PUT,
            &url,
            StatusCode::BAD_REQUEST,
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            None,
        );
        assert_eq!(
            err.to_string(),
            "PUT http://127.0.0.1:5000/v2/app/manifests/v1 returned 400 Bad Request: MANIFEST_BLOB_UNKNOWN: blob unknown"
        );
        assert_eq!(err.codes(), ["MANIFEST_BLOB_UNKNOWN"]);
        assert!(!err.is_retryable());
        let err = Error::from_response(
            &reqwest::Method::GET,
            &url,
            StatusCode::SERVICE_UNAVAILABLE,
            b"",
            Some(3),
        );
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(3));
    }
}
