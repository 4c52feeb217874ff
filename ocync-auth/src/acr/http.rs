//! What the Entra sources and the ACR exchange share: token responses read with a size limit,
//! server messages scrubbed of what was sent, URLs shown without query strings, JWT claims and
//! expiry arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::{Host, Url};

use crate::Error;

/// Token responses are a few kilobytes; anything much larger is not one.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How much of a server's explanation goes into an error message.
const MAX_MESSAGE_CHARS: usize = 200;

/// The longest lifetime believed for any token, so a bogus expiry cannot overflow an `Instant`
/// or keep a token for days.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Tokens are renewed this long before they expire (azure_identity's `cache.rs` rule), or after
/// half their lifetime when they live shorter than twice this.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A token's expiry on tokio's clock, so paused-time tests and the transport agree.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expiry {
    pub(crate) at: Instant,
    pub(crate) lifetime: Duration,
}

impl Expiry {
    pub(crate) fn after(lifetime: Duration) -> Expiry {
        let lifetime = lifetime.min(MAX_LIFETIME);
        Expiry {
            at: Instant::now() + lifetime,
            lifetime,
        }
    }

    /// Whether the token is still good to hand out: more than the refresh margin before expiry.
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        let margin = REFRESH_MARGIN.min(self.lifetime / 2);
        self.at.saturating_duration_since(now) > margin
    }

    /// Time left until expiry (zero when passed).
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }
}

/// Time from now until the Unix time `epoch` (zero when passed), at most [`MAX_LIFETIME`].
pub(crate) fn until_epoch(epoch: f64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    Duration::try_from_secs_f64((epoch - now).max(0.0))
        .unwrap_or(MAX_LIFETIME)
        .min(MAX_LIFETIME)
}

/// A JSON number, or a string holding one (managed identity answers `"expires_on":"1700000000"`).
pub(crate) fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// The claims of a JWT, unverified: the issuer's audience verifies the signature, we only read
/// `exp` to schedule renewal and `tid` to name the tenant.
pub(crate) fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    jsonwebtoken::dangerous::insecure_decode_claims(token).ok()
}

/// Time until the JWT's `exp`, if `token` is a JWT with one.
pub(crate) fn jwt_lifetime(token: &str) -> Option<Duration> {
    jwt_claims(token)?
        .get("exp")
        .and_then(number)
        .map(until_epoch)
}

/// A non-empty string field of a JSON object.
pub(crate) fn string<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A URL for messages: no user info, query string or fragment.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Fails only for URLs without a host, which have no user info either.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A configured value that is meant to be a URL but may not parse, for messages.
pub(crate) fn display_raw_url(raw: &str) -> String {
    if let Ok(url) = Url::parse(raw)
        && url.has_host()
    {
        return display_url(&url);
    }
    let without_query = raw.split(['?', '#']).next().unwrap_or_default();
    match without_query.rsplit_once('@') {
        Some((_, rest)) => format!("...@{rest}"),
        None => without_query.to_owned(),
    }
}

/// Whether `url` points at this machine: plain http is fine there (test fakes, the App Service
/// identity endpoint), and nowhere else for an endpoint that receives a secret.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `base` with `suffix` appended to its path (`https://host/prefix` + `oauth2/token`).
pub(crate) fn join_path(base: &Url, suffix: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{suffix}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Refuses to send a secret to `url` unless it is https, or plain http on loopback.
pub(crate) fn check_secure(url: &Url, registry: &str) -> Result<(), Error> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Error::InsecureRealm {
            registry: registry.to_owned(),
            realm: display_url(url),
        }),
        _ => Err(Error::InvalidRealm {
            registry: registry.to_owned(),
            realm: display_url(url),
            reason: "the scheme is not http or https",
        }),
    }
}

/// A response: its status and its body, `None` when larger than the limit.
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Vec<u8>>,
}

/// Sends `request` and reads the answer, with the URL removed from any transport error (it
/// may hold a query string).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
    let mut response = request.send().await.map_err(reqwest::Error::without_url)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(reqwest::Error::without_url)?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(Response { status, body: None });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body: Some(body),
    })
}

/// Where a token request went, and what it sent that must never be shown.
pub(crate) struct Call<'a> {
    pub(crate) registry: &'a str,
    /// The endpoint, as [`display_url`] shows it.
    pub(crate) realm: String,
    pub(crate) secrets: &'a [&'a str],
}

impl Call<'_> {
    /// The transport error as [`Error::TokenRequest`].
    pub(crate) fn request_error(&self, source: reqwest::Error) -> Error {
        Error::TokenRequest {
            registry: self.registry.to_owned(),
            realm: self.realm.clone(),
            source,
        }
    }

    /// An [`Error::TokenResponse`] with `reason`.
    pub(crate) fn response_error(&self, reason: impl Into<String>) -> Error {
        Error::TokenResponse {
            registry: self.registry.to_owned(),
            realm: self.realm.clone(),
            reason: reason.into(),
        }
    }

    /// The JSON object of a 2xx response; 401 and 403 become [`Error::TokenDenied`], other
    /// statuses [`Error::TokenServer`], with the server's explanation scrubbed of the secrets.
    pub(crate) fn json(&self, response: Response) -> Result<Map<String, Value>, Error> {
        let Response { status, body } = response;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::TokenDenied {
                registry: self.registry.to_owned(),
                realm: self.realm.clone(),
                status,
                message: self.message(body.as_deref()),
            });
        }
        if !status.is_success() {
            return Err(Error::TokenServer {
                registry: self.registry.to_owned(),
                realm: self.realm.clone(),
                status,
                message: self.message(body.as_deref()),
            });
        }
        let body = body.ok_or_else(|| {
            self.response_error(format!(
                "the response is larger than {MAX_RESPONSE_BYTES} bytes"
            ))
        })?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(self.response_error("the response is not a JSON object")),
            Err(_) => Err(self.response_error("the response is not JSON")),
        }
    }

    /// The server's explanation of an error: OAuth2 `error_description` or `error`, the
    /// distribution `errors[0].message`, a managed identity `message`, else the start of the
    /// body. What was sent is replaced, in case the server echoes it.
    pub(crate) fn message(&self, body: Option<&[u8]>) -> String {
        let Some(body) = body else {
            return "(response body too large to show)".to_owned();
        };
        let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|json| {
            let first_error = json.get("errors").and_then(|e| e.get(0));
            [
                json.get("error_description"),
                first_error.and_then(|e| e.get("message")),
                json.get("message"),
                json.get("error").and_then(|e| e.get("message")),
                json.get("error"),
            ]
            .into_iter()
            .flatten()
            .find_map(|v| {
                v.as_str()
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned)
            })
        });
        let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let mut message = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            message = message.replace(secret, "[REDACTED]");
        }
        if message.is_empty() {
            return "(empty response body)".to_owned();
        }
        truncate(&message)
    }
}

/// At most [`MAX_MESSAGE_CHARS`] characters of `text`, marked when cut.
pub(crate) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn now_unix() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn jwt_lifetime_table() {
        let now = now_unix();
        let cases = [
            (jwt(&format!(r#"{{"exp":{}}}"#, now + 3600)), Some(3600)),
            (jwt(&format!(r#"{{"exp":"{}"}}"#, now + 600)), Some(600)),
            (jwt(&format!(r#"{{"exp":{}}}"#, now - 10)), Some(0)),
            (
                jwt(&format!(r#"{{"exp":{}}}"#, now + 10 * 86400)),
                Some(86400),
            ),
            (jwt(r#"{"tid":"t"}"#), None),
            ("opaque".to_owned(), None),
            (String::new(), None),
        ];
        for (token, expected) in cases {
            let lifetime = jwt_lifetime(&token).map(|d| d.as_secs());
            match (lifetime, expected) {
                (Some(got), Some(want)) => {
                    assert!(got <= want && got + 5 >= want, "{token}: {got} vs {want}")
                }
                (got, want) => assert_eq!(got, want, "{token}"),
            }
        }
    }

    #[test]
    fn number_table() {
        let cases = [
            (serde_json::json!(3599), Some(3599.0)),
            (serde_json::json!("3599"), Some(3599.0)),
            (serde_json::json!(" 17.5 "), Some(17.5)),
            (serde_json::json!("soon"), None),
            (serde_json::json!(null), None),
            (serde_json::json!([1]), None),
        ];
        for (value, expected) in cases {
            assert_eq!(number(&value), expected, "{value}");
        }
    }

    #[test]
    fn freshness_uses_five_minutes_or_half_the_lifetime() {
        let start = Instant::now();
        let long = Expiry {
            at: start + Duration::from_secs(3600),
            lifetime: Duration::from_secs(3600),
        };
        assert!(long.is_fresh(start + Duration::from_secs(3299)));
        assert!(!long.is_fresh(start + Duration::from_secs(3300)));
        let short = Expiry {
            at: start + Duration::from_secs(120),
            lifetime: Duration::from_secs(120),
        };
        assert!(short.is_fresh(start + Duration::from_secs(59)));
        assert!(!short.is_fresh(start + Duration::from_secs(60)));
        assert_eq!(
            short.remaining(start + Duration::from_secs(500)),
            Duration::ZERO
        );
    }

    #[test]
    fn loopback_and_secure_table() {
        let cases = [
            ("https://login.microsoftonline.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://127.8.0.1", true),
            ("http://localhost:1/x", true),
            ("http://[::1]:5/", true),
            ("http://login.microsoftonline.com", false),
            ("http://169.254.169.254", false),
            ("ftp://127.0.0.1", false),
        ];
        for (url, ok) in cases {
            let url = Url::parse(url).unwrap();
            assert_eq!(check_secure(&url, "r.azurecr.io").is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn join_and_display_table() {
        let cases = [
            (
                "http://127.0.0.1:1",
                "oauth2/exchange",
                "http://127.0.0.1:1/oauth2/exchange",
            ),
            (
                "http://127.0.0.1:1/acr/",
                "oauth2/exchange",
                "http://127.0.0.1:1/acr/oauth2/exchange",
            ),
            (
                "https://h/p?x=1#f",
                "t/oauth2/v2.0/token",
                "https://h/p/t/oauth2/v2.0/token",
            ),
        ];
        for (base, suffix, expected) in cases {
            assert_eq!(
                join_path(&Url::parse(base).unwrap(), suffix).as_str(),
                expected
            );
        }
        assert_eq!(
            display_url(&Url::parse("https://u:p@h:1/x?secret=1#f").unwrap()),
            "https://h:1/x"
        );
        assert_eq!(display_raw_url("not a url?secret"), "not a url");
        assert_eq!(display_raw_url("u:p@host/x?q"), "...@host/x");
    }

    #[test]
    fn message_table() {
        let call = Call {
            registry: "r",
            realm: "https://h/token".into(),
            secrets: &["s3cr3t"],
        };
        let long = "x".repeat(300);
        let cases: Vec<(Option<&[u8]>, String)> = vec![
            (
                Some(br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret s3cr3t"}"#),
                "AADSTS7000215: Invalid client secret [REDACTED]".into(),
            ),
            (Some(br#"{"error":"invalid_grant"}"#), "invalid_grant".into()),
            (
                Some(br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad token"}]}"#),
                "bad token".into(),
            ),
            (
                Some(br#"{"error":{"code":"invalid_request","message":"Identity not found"}}"#),
                "Identity not found".into(),
            ),
            (Some(b"plain  text\n s3cr3t"), "plain text [REDACTED]".into()),
            (Some(long.as_bytes()), format!("{}...", &long[..200])),
            (Some(b""), "(empty response body)".into()),
            (None, "(response body too large to show)".into()),
        ];
        for (body, expected) in cases {
            assert_eq!(call.message(body), expected, "{body:?}");
        }
    }
}
