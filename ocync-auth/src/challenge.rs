//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1) as registries send them.
//!
//! A header value may carry several challenges, a response may carry several headers, and a
//! Bearer `scope` is a quoted string containing commas (`scope="repository:a:pull,push"`), so
//! the value is tokenised rather than split on `,`.

use crate::{Error, Scopes};

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic`: send HTTP Basic credentials on every request (ECR, htpasswd registries).
    Basic {
        /// The protection space, if given.
        realm: Option<String>,
    },
    /// `Bearer`: fetch a token from the realm (distribution token auth).
    Bearer(BearerChallenge),
    /// Any other scheme, kept so callers can report what the registry asked for.
    Other {
        /// The scheme as the registry wrote it.
        scheme: String,
    },
}

/// The parameters of a `Bearer` challenge (distribution `docs/spec/auth/token.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The token endpoint.
    pub realm: String,
    /// The `service` to name in the token request.
    pub service: Option<String>,
    /// The space-separated scopes the registry wants.
    pub scope: Option<String>,
    /// The RFC 6750 error code (`invalid_token`, `insufficient_scope`), if any.
    pub error: Option<String>,
}

impl BearerChallenge {
    /// The challenge's scopes, empty when it has none (a `/v2/` challenge).
    pub fn scopes(&self) -> Result<Scopes, Error> {
        self.scope.as_deref().unwrap_or_default().parse()
    }
}

/// Parses every challenge in `values`, the `WWW-Authenticate` header values of one response.
///
/// Scheme and parameter names are case-insensitive; the first occurrence of a parameter wins. A
/// `Bearer` challenge without `realm` is unusable and dropped, as is text that is not a
/// challenge.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values
        .into_iter()
        .flat_map(|value| Parser::new(value).challenges())
        .filter_map(|raw| raw.into_challenge())
        .collect()
}

/// A challenge as written: scheme plus parameters in order.
struct RawChallenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl RawChallenge {
    fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn into_challenge(self) -> Option<Challenge> {
        if self.scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic {
                realm: self.param("realm"),
            })
        } else if self.scheme.eq_ignore_ascii_case("bearer") {
            let realm = self.param("realm").filter(|r| !r.is_empty())?;
            Some(Challenge::Bearer(BearerChallenge {
                realm,
                service: self.param("service"),
                scope: self.param("scope"),
                error: self.param("error"),
            }))
        } else {
            Some(Challenge::Other {
                scheme: self.scheme,
            })
        }
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(value: &'a str) -> Parser<'a> {
        Parser {
            input: value.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    fn skip_whitespace(&mut self) {
        self.skip_while(|b| b == b' ' || b == b'\t');
    }

    fn token(&mut self) -> &'a [u8] {
        self.skip_while(is_tchar)
    }

    /// `challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, separated by commas.
    fn challenges(mut self) -> Vec<RawChallenge> {
        let mut out = Vec::new();
        loop {
            self.skip_while(|b| b == b',' || b == b' ' || b == b'\t');
            if self.peek().is_none() {
                return out;
            }
            let scheme = self.token();
            if scheme.is_empty() {
                // Not a challenge: skip to the next list element.
                self.pos += 1;
                self.skip_while(|b| b != b',');
                continue;
            }
            let mut challenge = RawChallenge {
                scheme: String::from_utf8_lossy(scheme).into_owned(),
                params: Vec::new(),
            };
            self.skip_whitespace();
            if !self.token68() {
                while let Some(param) = self.auth_param() {
                    challenge.params.push(param);
                    self.skip_while(|b| b == b',' || b == b' ' || b == b'\t');
                }
            }
            out.push(challenge);
        }
    }

    /// A `token68` credential (`Negotiate abc==`), which no registry scheme uses: consumed and
    /// ignored. Leaves the position unchanged unless one was found.
    fn token68(&mut self) -> bool {
        let start = self.pos;
        let body = self.skip_while(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        self.skip_while(|b| b == b'=');
        self.skip_whitespace();
        if !body.is_empty() && matches!(self.peek(), None | Some(b',')) {
            return true;
        }
        self.pos = start;
        false
    }

    /// `auth-param = token BWS "=" BWS ( token / quoted-string )`. Leaves the position
    /// unchanged (at the next challenge's scheme, say) when there is none.
    fn auth_param(&mut self) -> Option<(String, String)> {
        let start = self.pos;
        let name = self.token();
        self.skip_whitespace();
        if name.is_empty() || self.peek() != Some(b'=') {
            self.pos = start;
            return None;
        }
        self.pos += 1;
        self.skip_whitespace();
        let value = if self.peek() == Some(b'"') {
            self.quoted_string()
        } else {
            // RFC 9110 allows only a token here; accepting any unquoted run (`realm=https://a/t`)
            // costs nothing and tolerates servers that skip the quotes.
            let value = self.skip_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'));
            if value.is_empty() {
                self.pos = start;
                return None;
            }
            String::from_utf8_lossy(value).into_owned()
        };
        Some((String::from_utf8_lossy(name).into_owned(), value))
    }

    /// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE`, starting at the opening quote.
    /// An unterminated string runs to the end of the value.
    fn quoted_string(&mut self) -> String {
        self.pos += 1;
        let mut bytes = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        bytes.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => bytes.push(b),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        error: Option<&str>,
    ) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: error.map(Into::into),
        })
    }

    #[test]
    fn registry_challenges_table() {
        const REALM: &str = "http://127.0.0.1:5103/token";
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry""#,
                vec![bearer(REALM, Some("test-registry"), None, None)],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="repository:src/app:pull""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("repository:src/app:pull"),
                    None,
                )],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="repository:dst/app:pull,push""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("repository:dst/app:pull,push"),
                    None,
                )],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="repository:dst/app:push,pull repository:src/app:pull""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("repository:dst/app:push,pull repository:src/app:pull"),
                    None,
                )],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="registry:catalog:*""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("registry:catalog:*"),
                    None,
                )],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="repository:src/app:pull,push",error="insufficient_scope""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("repository:src/app:pull,push"),
                    Some("insufficient_scope"),
                )],
            ),
            (
                r#"Bearer realm="http://127.0.0.1:5103/token",service="test-registry",scope="repository:src/app:pull",error="invalid_token""#,
                vec![bearer(
                    REALM,
                    Some("test-registry"),
                    Some("repository:src/app:pull"),
                    Some("invalid_token"),
                )],
            ),
            (
                r#"Basic realm="basic-realm""#,
                vec![Challenge::Basic {
                    realm: Some("basic-realm".into()),
                }],
            ),
            (
                r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#,
                vec![Challenge::Basic {
                    realm: Some("https://123456789012.dkr.ecr.us-east-1.amazonaws.com/".into()),
                }],
            ),
            (
                r#"Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io",scope="repository:app:pull""#,
                vec![bearer(
                    "https://myreg.azurecr.io/oauth2/token",
                    Some("myreg.azurecr.io"),
                    Some("repository:app:pull"),
                    None,
                )],
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_challenges([value]), expected, "{value}");
        }
    }

    #[test]
    fn syntax_table() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            // Case-insensitive scheme and parameter names; unquoted token values; spaces around `=`.
            (
                "BEARER Realm=https://a/token , SERVICE = reg",
                vec![bearer("https://a/token", Some("reg"), None, None)],
            ),
            // Escapes inside a quoted string.
            (
                r#"Bearer realm="https://a/t",scope="repo:x\"y:pull""#,
                vec![bearer("https://a/t", None, Some("repo:x\"y:pull"), None)],
            ),
            // Two challenges in one value, commas inside the quoted scope.
            (
                r#"Basic realm="b", Bearer realm="https://a/t",scope="repository:a:pull,push""#,
                vec![
                    Challenge::Basic {
                        realm: Some("b".into()),
                    },
                    bearer("https://a/t", None, Some("repository:a:pull,push"), None),
                ],
            ),
            // A bare scheme, a token68 scheme, then a Bearer.
            (
                r#"Basic, Negotiate abc==, Bearer realm="https://a/t""#,
                vec![
                    Challenge::Basic { realm: None },
                    Challenge::Other {
                        scheme: "Negotiate".into(),
                    },
                    bearer("https://a/t", None, None, None),
                ],
            ),
            // The first occurrence of a parameter wins; unknown parameters are ignored.
            (
                r#"Bearer realm="https://a/1",realm="https://a/2",extra=1"#,
                vec![bearer("https://a/1", None, None, None)],
            ),
            // Bearer without realm, or with an empty one, is dropped.
            (r#"Bearer service="reg",scope="repository:a:pull""#, vec![]),
            (r#"Bearer realm="""#, vec![]),
            // Unterminated quoted string runs to the end.
            (
                r#"Bearer realm="https://a/t"#,
                vec![bearer("https://a/t", None, None, None)],
            ),
            // Empty and garbage values.
            ("", vec![]),
            (" , ,", vec![]),
            (r#"="x", Basic"#, vec![Challenge::Basic { realm: None }]),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_challenges([value]), expected, "{value}");
        }
    }

    #[test]
    fn several_header_values() {
        let challenges = parse_challenges([
            r#"Basic realm="basic-realm""#,
            r#"Bearer realm="https://a/t",service="s""#,
        ]);
        assert_eq!(
            challenges,
            vec![
                Challenge::Basic {
                    realm: Some("basic-realm".into()),
                },
                bearer("https://a/t", Some("s"), None, None),
            ]
        );
    }

    #[test]
    fn bearer_scopes_parse_and_normalise() {
        let challenges = parse_challenges([
            r#"Bearer realm="https://a/t",scope="repository:dst/app:push,pull repository:src/app:pull""#,
        ]);
        let Challenge::Bearer(bearer) = &challenges[0] else {
            panic!("expected a bearer challenge: {challenges:?}");
        };
        assert_eq!(
            bearer.scopes().unwrap().to_string(),
            "repository:dst/app:pull,push repository:src/app:pull"
        );
        let no_scope = BearerChallenge {
            realm: "https://a/t".into(),
            service: None,
            scope: None,
            error: None,
        };
        assert!(no_scope.scopes().unwrap().is_empty());
    }
}
