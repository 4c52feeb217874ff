//! Token exchange at a Bearer challenge's realm (distribution `docs/spec/auth/token.md` and
//! `oauth.md`), the way docker's client does it (`registry/client/auth/session.go`):
//!
//! - an identity (refresh) token is exchanged with an OAuth2 `POST`, `grant_type=refresh_token`;
//! - Basic credentials, or none, go in a `GET` with one `scope` query parameter per scope; a
//!   token server that only speaks OAuth2 (the `GET` answered 404 or 405) gets the credentials
//!   in a `POST` with `grant_type=password`;
//! - a registry token needs no exchange at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::{BearerChallenge, Credential, Error, Scopes, Secret, Token};

/// The OAuth2 `client_id` sent with refresh-token grants (docker sends `registry-client`;
/// servers only log it).
const CLIENT_ID: &str = "ocync";

/// Docker's `minimumTokenLifetimeSeconds`: servers that claim less are not believed, and the
/// default when a response gives no expiry at all.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The lifetime of a registry token whose expiry is unknown, and the upper bound of any
/// lifetime (renewing a long-lived token early costs one request; an `Instant` overflow would
/// panic).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Token responses are a few kilobytes; anything much larger is not one.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How much of an error body goes into an error message.
const MAX_MESSAGE_CHARS: usize = 200;

/// Everything [`fetch_token`] needs to ask a realm for a token.
#[derive(Clone, Copy, Debug)]
pub struct TokenRequest<'a> {
    /// The registry, `host[:port]`, named in errors.
    pub registry: &'a str,
    /// The registry's Bearer challenge: realm and service.
    pub challenge: &'a BearerChallenge,
    /// The scopes the token must cover.
    pub scopes: &'a Scopes,
    /// The credential to present, or `None` for an anonymous token.
    pub credential: Option<&'a Credential>,
    /// Whether the registry itself is reached over https: then credentials are never sent to a
    /// plain-http realm.
    pub registry_is_https: bool,
}

/// Fetches a token for `request` from its challenge's realm with `http`.
///
/// A [`Credential::Bearer`] is returned as the token without any request; its expiry is the
/// JWT `exp` when it is a JWT, else a year away.
pub async fn fetch_token(
    http: &reqwest::Client,
    request: &TokenRequest<'_>,
) -> Result<Token, Error> {
    let grant = match request.credential {
        Some(Credential::Bearer { token }) => {
            if let Some(ago) = jwt_expired_for(token.expose(), SystemTime::now()) {
                return Err(Error::TokenExpired {
                    registry: request.registry.to_owned(),
                    ago: human_duration(ago),
                });
            }
            return Ok(registry_token(token));
        }
        Some(Credential::IdentityToken { token }) => Grant::RefreshToken(token),
        Some(Credential::Basic { username, password }) => Grant::Basic(username, password),
        None => Grant::Anonymous,
    };
    let realm = parse_realm(request)?;
    let shown_realm = display_url(&realm);
    if request.registry_is_https && realm.scheme() == "http" && !matches!(grant, Grant::Anonymous) {
        return Err(Error::InsecureRealm {
            registry: request.registry.to_owned(),
            realm: shown_realm,
        });
    }

    let password_grant = match grant {
        Grant::Basic(username, password) => Some((username, password)),
        _ => None,
    };
    let builder = match grant {
        Grant::RefreshToken(refresh_token) => {
            let scope = request.scopes.to_string();
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("refresh_token", refresh_token.expose()),
            ];
            if let Some(service) = &request.challenge.service {
                form.push(("service", service));
            }
            if !scope.is_empty() {
                form.push(("scope", &scope));
            }
            http.post(realm).form(&form)
        }
        Grant::Basic(username, password) => get_request(http, realm, request)
            .query(&[("account", username)])
            .basic_auth(username, Some(password.expose())),
        Grant::Anonymous => get_request(http, realm, request),
    };

    let transport_error = |source: reqwest::Error| Error::TokenRequest {
        registry: request.registry.to_owned(),
        realm: shown_realm.clone(),
        source: source.without_url(),
    };
    let mut response = builder.send().await.map_err(transport_error)?;
    if let Some((username, password)) = password_grant
        && (response.status() == StatusCode::NOT_FOUND
            || response.status() == StatusCode::METHOD_NOT_ALLOWED)
    {
        let scope = request.scopes.to_string();
        let mut form = vec![
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("username", username),
            ("password", password.expose()),
        ];
        if let Some(service) = &request.challenge.service {
            form.push(("service", service));
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let realm = parse_realm(request)?;
        response = http
            .post(realm)
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
    }
    let status = response.status();
    let body = read_limited(response).await.map_err(transport_error)?;
    let received_at = Instant::now();

    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Error::TokenDenied {
            registry: request.registry.to_owned(),
            realm: shown_realm,
            status,
            message: error_message(&body, &sent_secrets(request.credential)),
        });
    }
    if !status.is_success() {
        return Err(Error::TokenServer {
            registry: request.registry.to_owned(),
            realm: shown_realm,
            status,
            message: error_message(&body, &sent_secrets(request.credential)),
        });
    }
    let body = body.ok_or_else(|| Error::TokenResponse {
        registry: request.registry.to_owned(),
        realm: shown_realm.clone(),
        reason: format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
    })?;
    parse_token_response(&body, received_at, SystemTime::now()).map_err(|reason| {
        Error::TokenResponse {
            registry: request.registry.to_owned(),
            realm: shown_realm,
            reason: reason.to_owned(),
        }
    })
}

enum Grant<'a> {
    RefreshToken(&'a Secret),
    Basic(&'a str, &'a Secret),
    Anonymous,
}

/// `GET realm?service=<service>&scope=<s1>&scope=<s2>`: one `scope` parameter per entry, as
/// distribution's token server expects (the OAuth2 POST takes one space-joined parameter).
fn get_request(
    http: &reqwest::Client,
    realm: Url,
    request: &TokenRequest<'_>,
) -> reqwest::RequestBuilder {
    let mut builder = http.get(realm);
    if let Some(service) = &request.challenge.service {
        builder = builder.query(&[("service", service)]);
    }
    for scope in request.scopes.iter() {
        builder = builder.query(&[("scope", scope.to_string())]);
    }
    builder
}

fn registry_token(token: &Secret) -> Token {
    let lifetime = jwt_lifetime(token.expose(), SystemTime::now()).unwrap_or(MAX_TOKEN_LIFETIME);
    Token::new(token.clone(), Instant::now(), lifetime)
}

fn parse_realm(request: &TokenRequest<'_>) -> Result<Url, Error> {
    let raw = &request.challenge.realm;
    let invalid = |reason| Error::InvalidRealm {
        registry: request.registry.to_owned(),
        realm: display_raw_realm(raw),
        reason,
    };
    let url = Url::parse(raw).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme is not http or https"));
    }
    Ok(url)
}

/// A URL for messages: no user info, query string or fragment, which may carry credentials.
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Fails only for URLs without a host, which have no user info either.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn display_raw_realm(raw: &str) -> String {
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

/// The body, or `None` when it is larger than [`MAX_RESPONSE_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The values a server could echo back that must never reach a message.
fn sent_secrets(credential: Option<&Credential>) -> Vec<String> {
    match credential {
        Some(Credential::Basic { username, password }) => vec![
            password.expose().to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose())),
        ],
        Some(Credential::IdentityToken { token } | Credential::Bearer { token }) => {
            vec![token.expose().to_owned()]
        }
        None => Vec::new(),
    }
}

/// The server's explanation of an error: the distribution `errors[0].message` (or `details`),
/// the OAuth2 `error_description` or `error`, else the start of the body. Credentials that were
/// sent are replaced, in case the server echoes them.
fn error_message(body: &Option<Vec<u8>>, secrets: &[String]) -> String {
    let Some(body) = body else {
        return "(response body too large to show)".to_owned();
    };
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|json| {
        let first_error = json.get("errors").and_then(|e| e.get(0));
        [
            first_error.and_then(|e| e.get("message")),
            first_error.and_then(|e| e.get("details")),
            json.get("error_description"),
            json.get("error"),
            json.get("details"),
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
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "[REDACTED]");
    }
    if message.is_empty() {
        return "(empty response body)".to_owned();
    }
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    }
}

/// A token from a 2xx response body, or why there is none. The reasons never quote the body.
fn parse_token_response(
    body: &[u8],
    received_at: Instant,
    now: SystemTime,
) -> Result<Token, &'static str> {
    let json: Value = serde_json::from_slice(body).map_err(|_| "the response is not JSON")?;
    let object = json
        .as_object()
        .ok_or("the response is not a JSON object")?;
    let string = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    // Docker prefers `access_token` when both are present.
    let value = string("access_token")
        .or_else(|| string("token"))
        .ok_or("the response has neither 'token' nor 'access_token'")?;
    let lifetime = match object.get("expires_in") {
        None | Some(Value::Null) => jwt_lifetime(value, now)
            // A JWT `exp` that is already close is more likely clock skew than a token that
            // short-lived, so the docker minimum applies here too.
            .map(|d| d.max(MIN_TOKEN_LIFETIME))
            .unwrap_or(MIN_TOKEN_LIFETIME),
        Some(expires_in) => {
            let seconds = expires_in.as_f64().ok_or("'expires_in' is not a number")?;
            Duration::try_from_secs_f64(seconds.max(MIN_TOKEN_LIFETIME.as_secs_f64()))
                .unwrap_or(MAX_TOKEN_LIFETIME)
        }
    };
    let token = Token::new(
        Secret::new(value),
        received_at,
        lifetime.min(MAX_TOKEN_LIFETIME),
    );
    Ok(match string("refresh_token") {
        Some(refresh_token) => token.with_refresh_token(Secret::new(refresh_token)),
        None => token,
    })
}

/// Time from `now` to the `exp` claim when `token` is a JWT that has one (zero when it has
/// passed). The signature is not checked: the registry checks it, we only schedule renewal.
fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let remaining = Duration::try_from_secs_f64((exp - now).max(0.0)).unwrap_or(MAX_TOKEN_LIFETIME);
    Some(remaining.min(MAX_TOKEN_LIFETIME))
}

/// How long ago a JWT's `exp` passed, if it has.
fn jwt_expired_for(token: &str, now: SystemTime) -> Option<Duration> {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    (exp < now).then(|| Duration::from_secs_f64(now - exp))
}

/// `2 d 3 h`, `3 h 12 min`, `5 min`, `40 s`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const NOW_UNIX: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn jwt_lifetime_table() {
        let cases = [
            (
                jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX + 3600)),
                Some(3600),
            ),
            (
                jwt(&format!(r#"{{"exp":{}.5,"iss":"x"}}"#, NOW_UNIX + 10)),
                Some(10),
            ),
            (jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX - 10)), Some(0)),
            (jwt(r#"{"iss":"no exp"}"#), None),
            (jwt(r#"{"exp":"soon"}"#), None),
            ("opaque-token".to_owned(), None),
            ("a.b.c".to_owned(), None),
            (String::new(), None),
        ];
        for (token, expected) in cases {
            assert_eq!(
                jwt_lifetime(&token, now()).map(|d| d.as_secs()),
                expected,
                "{token}"
            );
        }
    }

    #[test]
    fn token_response_table() {
        let secs = |n| Some(Duration::from_secs(n));
        let long_jwt = jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX + 4500));
        let short_jwt = jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX + 5));
        // (body, token value, lifetime, refresh token)
        let cases: Vec<(String, &str, Option<Duration>, Option<&str>)> = vec![
            (
                r#"{"token":"t","expires_in":300}"#.into(),
                "t",
                secs(300),
                None,
            ),
            (
                r#"{"access_token":"a","token":"t","expires_in":300}"#.into(),
                "a",
                secs(300),
                None,
            ),
            (
                r#"{"access_token":"","token":"t"}"#.into(),
                "t",
                secs(60),
                None,
            ),
            (
                r#"{"token":"t","expires_in":10}"#.into(),
                "t",
                secs(60),
                None,
            ),
            (
                r#"{"token":"t","expires_in":-5}"#.into(),
                "t",
                secs(60),
                None,
            ),
            (
                r#"{"token":"t","expires_in":null}"#.into(),
                "t",
                secs(60),
                None,
            ),
            (
                r#"{"token":"t","expires_in":1e30}"#.into(),
                "t",
                secs(365 * 86400),
                None,
            ),
            (
                r#"{"token":"t","expires_in":300,"issued_at":"2001-01-01T00:00:00Z"}"#.into(),
                "t",
                secs(300),
                None,
            ),
            (
                format!(r#"{{"access_token":"{long_jwt}"}}"#),
                &long_jwt,
                secs(4500),
                None,
            ),
            (
                format!(r#"{{"access_token":"{long_jwt}","expires_in":120}}"#),
                &long_jwt,
                secs(120),
                None,
            ),
            (
                format!(r#"{{"access_token":"{short_jwt}"}}"#),
                &short_jwt,
                secs(60),
                None,
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_in":300}"#.into(),
                "a",
                secs(300),
                Some("r"),
            ),
        ];
        let received = Instant::now();
        for (body, value, lifetime, refresh) in cases {
            let token = parse_token_response(body.as_bytes(), received, now())
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(token.value().expose(), value, "{body}");
            assert_eq!(Some(token.lifetime()), lifetime, "{body}");
            assert_eq!(token.expires_at(), received + token.lifetime(), "{body}");
            assert_eq!(token.refresh_token().map(Secret::expose), refresh, "{body}");
        }
    }

    #[test]
    fn token_response_errors_table() {
        let cases = [
            ("not json s3cr3t", "the response is not JSON"),
            (r#"["s3cr3t"]"#, "the response is not a JSON object"),
            (
                r#"{"expires_in":60}"#,
                "the response has neither 'token' nor 'access_token'",
            ),
            (
                r#"{"token":5,"secret":"s3cr3t"}"#,
                "the response has neither 'token' nor 'access_token'",
            ),
            (
                r#"{"token":"s3cr3t","expires_in":"soon"}"#,
                "'expires_in' is not a number",
            ),
        ];
        for (body, expected) in cases {
            let reason = parse_token_response(body.as_bytes(), Instant::now(), now()).unwrap_err();
            assert_eq!(reason, expected, "{body}");
        }
    }

    #[test]
    fn error_message_table() {
        let secrets = sent_secrets(Some(&Credential::basic("alice", "s3cr3t")));
        let long = "x".repeat(500);
        let cases: Vec<(Option<Vec<u8>>, String)> = vec![
            (
                Some(br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#.to_vec()),
                "authentication required".into(),
            ),
            (
                Some(br#"{"errors":[{"code":"DENIED","details":"no push for you"}]}"#.to_vec()),
                "no push for you".into(),
            ),
            (
                Some(br#"{"error":"invalid_grant","error_description":"refresh token expired"}"#.to_vec()),
                "refresh token expired".into(),
            ),
            (Some(br#"{"error":"invalid_grant"}"#.to_vec()), "invalid_grant".into()),
            (Some(b"<html>\n  Access   denied\n</html>".to_vec()), "<html> Access denied </html>".into()),
            (Some(b"bad password s3cr3t for alice".to_vec()), "bad password [REDACTED] for alice".into()),
            (Some(b"header was Basic YWxpY2U6czNjcjN0".to_vec()), "header was Basic [REDACTED]".into()),
            (
                Some(br#"{"errors":[{"message":"wrong password 's3cr3t'"}]}"#.to_vec()),
                "wrong password '[REDACTED]'".into(),
            ),
            (Some(long.clone().into_bytes()), format!("{}...", &long[..200])),
            (Some(Vec::new()), "(empty response body)".into()),
            (None, "(response body too large to show)".into()),
        ];
        for (body, expected) in cases {
            assert_eq!(error_message(&body, &secrets), expected, "{body:?}");
        }
    }

    #[test]
    fn realm_display_table() {
        let cases = [
            (
                "https://auth.example.com/token",
                "https://auth.example.com/token",
            ),
            (
                "https://auth.example.com/token?service=x&account=alice",
                "https://auth.example.com/token",
            ),
            (
                "https://alice:s3cr3t@auth.example.com:8443/token#frag",
                "https://auth.example.com:8443/token",
            ),
            (
                "ftp://alice:s3cr3t@auth.example.com/token",
                "ftp://auth.example.com/token",
            ),
            ("/token?x=1", "/token"),
            ("alice:s3cr3t@auth/token?x", "...@auth/token"),
        ];
        for (raw, expected) in cases {
            assert_eq!(display_raw_realm(raw), expected, "{raw}");
        }
    }

    #[test]
    fn expired_fixed_tokens_are_refused_before_any_request() {
        let expired = jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX - 3 * 3600 - 720));
        assert_eq!(
            jwt_expired_for(&expired, now())
                .map(human_duration)
                .as_deref(),
            Some("3 h 12 min")
        );
        assert_eq!(
            jwt_expired_for(&jwt(&format!(r#"{{"exp":{}}}"#, NOW_UNIX + 5)), now()),
            None
        );
        assert_eq!(jwt_expired_for("opaque", now()), None);
        for (secs, text) in [
            (40, "40 s"),
            (300, "5 min"),
            (2 * 86_400 + 3 * 3600, "2 d 3 h"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn registry_token_uses_jwt_exp_or_a_year() {
        let opaque = registry_token(&Secret::new("opaque"));
        assert_eq!(opaque.lifetime(), MAX_TOKEN_LIFETIME);
        assert_eq!(opaque.value().expose(), "opaque");
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 7200;
        let jwt = registry_token(&Secret::new(jwt(&format!(r#"{{"exp":{exp}}}"#))));
        let lifetime = jwt.lifetime().as_secs();
        assert!((7195..=7200).contains(&lifetime), "{lifetime}");
    }
}
