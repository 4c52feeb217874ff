//! [`DockerConfigProvider`]: credentials from docker's `config.json`, including its credential
//! helpers, looked up the way docker/cli does.
//!
//! Lookup order (docker/cli `getConfiguredCredentialStore`): `credHelpers[host]`, else
//! `credsStore`, else the file's `auths`. A helper that has no credentials falls through to
//! `auths`. Keys are normalised like docker's `ConvertToHostname`, so the legacy Docker Hub key
//! `https://index.docker.io/v1/` serves `docker.io`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::{Map, Value};

use crate::credential::canonical_registry;
use crate::credential_helper::{HelperRunner, valid_helper_name};
use crate::{BoxFuture, Credential, CredentialProvider, Error, Secret};

/// The server URL docker asks credential helpers about for Docker Hub (docker/cli
/// `registry.IndexServer`).
const DOCKER_HUB_HELPER_URL: &str = "https://index.docker.io/v1/";

/// Standard base64, with or without padding: hand-edited configs drop it.
const AUTH_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials from a docker `config.json`.
#[derive(Debug)]
pub struct DockerConfigProvider {
    path: PathBuf,
    /// Usable `auths` entries by canonical registry.
    auths: HashMap<String, Credential>,
    /// `credHelpers` by canonical registry.
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
    helpers: HelperRunner,
}

impl DockerConfigProvider {
    /// Reads `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`, as docker does.
    /// A missing file gives a provider that never has a credential; a malformed one is an
    /// error.
    pub fn from_env() -> Result<DockerConfigProvider, Error> {
        let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
        match default_path(std::env::var_os("DOCKER_CONFIG"), home) {
            Some(path) => DockerConfigProvider::load(path, true),
            None => Ok(DockerConfigProvider::empty(PathBuf::new())),
        }
    }

    /// Reads the config at `path`; a missing file is an error.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<DockerConfigProvider, Error> {
        DockerConfigProvider::load(path.into(), false)
    }

    /// Parses `json`; `origin` names it in errors.
    pub fn from_json(
        json: &str,
        origin: impl Into<PathBuf>,
    ) -> Result<DockerConfigProvider, Error> {
        let mut provider = DockerConfigProvider::empty(origin.into());
        provider.parse(json)?;
        Ok(provider)
    }

    /// Looks for `docker-credential-*` programs in `dirs` instead of `$PATH`.
    pub fn helper_dirs<P: Into<PathBuf>>(
        mut self,
        dirs: impl IntoIterator<Item = P>,
    ) -> DockerConfigProvider {
        self.helpers.dirs = Some(dirs.into_iter().map(Into::into).collect());
        self
    }

    /// How long a credential helper may take before it is killed and the lookup fails
    /// (default 30 s).
    pub fn helper_timeout(mut self, timeout: Duration) -> DockerConfigProvider {
        self.helpers.timeout = timeout;
        self
    }

    /// The file the configuration came from (empty when `from_env` found none).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn empty(path: PathBuf) -> DockerConfigProvider {
        DockerConfigProvider {
            path,
            auths: HashMap::new(),
            cred_helpers: HashMap::new(),
            creds_store: None,
            helpers: HelperRunner::default(),
        }
    }

    fn load(path: PathBuf, missing_is_empty: bool) -> Result<DockerConfigProvider, Error> {
        match std::fs::read_to_string(&path) {
            Ok(json) => DockerConfigProvider::from_json(&json, path),
            Err(e) if missing_is_empty && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no docker config");
                Ok(DockerConfigProvider::empty(path))
            }
            Err(source) => Err(Error::DockerConfigRead { path, source }),
        }
    }

    async fn lookup(&self, registry: &str) -> Result<Option<Credential>, Error> {
        let registry = canonical_registry(registry);
        if let Some(helper) = self
            .cred_helpers
            .get(&registry)
            .or(self.creds_store.as_ref())
        {
            let server_url = match registry.as_str() {
                ocync_core::DOCKER_HUB => DOCKER_HUB_HELPER_URL,
                other => other,
            };
            if let Some(credential) = self.helpers.get(helper, &registry, server_url).await? {
                return Ok(Some(credential));
            }
        }
        Ok(self.auths.get(&registry).cloned())
    }

    fn parse(&mut self, json: &str) -> Result<(), Error> {
        let invalid = |reason: String| Error::DockerConfig {
            path: self.path.clone(),
            reason,
        };
        // Docker reads an empty file as an empty configuration.
        if json.trim().is_empty() {
            return Ok(());
        }
        // Parsed as a `Value` first: serde's type errors quote the offending value, which may
        // be a password. Syntax errors only give a position.
        let root: Value =
            serde_json::from_str(json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let root = root
            .as_object()
            .ok_or_else(|| invalid("the top level is not a JSON object".to_owned()))?;

        let mut ranks = HashMap::new();
        for (key, entry) in object_field(root, "auths").map_err(invalid)? {
            let Some(credential) = auth_entry(key, entry).map_err(invalid)? else {
                continue;
            };
            let registry = canonical_registry(key);
            if registry.is_empty() {
                continue;
            }
            // Several keys can name one registry (`docker.io`, `https://index.docker.io/v1/`);
            // the key docker itself would write wins, then the first in key order.
            let rank = usize::from(key != canonical_key(&registry));
            match ranks.entry(registry.clone()) {
                Entry::Occupied(mut best) if rank < *best.get() => {
                    best.insert(rank);
                    self.auths.insert(registry, credential);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(rank);
                    self.auths.insert(registry, credential);
                }
            }
        }

        for (key, helper) in object_field(root, "credHelpers").map_err(invalid)? {
            let helper = helper
                .as_str()
                .ok_or_else(|| invalid(format!("credHelpers entry '{key}' is not a string")))?;
            check_helper_name(helper, &format!("credHelpers entry '{key}'")).map_err(invalid)?;
            self.cred_helpers
                .insert(canonical_registry(key), helper.to_owned());
        }

        self.creds_store = match root.get("credsStore") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(helper)) => {
                check_helper_name(helper, "credsStore").map_err(invalid)?;
                Some(helper.clone())
            }
            Some(_) => return Err(invalid("'credsStore' is not a string".to_owned())),
        };
        Ok(())
    }
}

impl CredentialProvider for DockerConfigProvider {
    fn name(&self) -> &'static str {
        "docker-config"
    }

    fn credential<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, Error>> {
        Box::pin(self.lookup(registry))
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json` (docker/cli `config.Dir`).
fn default_path(docker_config: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let dir = match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".docker"),
    };
    Some(dir.join("config.json"))
}

/// The `auths` key docker writes for `registry`.
fn canonical_key(registry: &str) -> &str {
    match registry {
        ocync_core::DOCKER_HUB => DOCKER_HUB_HELPER_URL,
        other => other,
    }
}

fn object_field<'a>(
    root: &'a Map<String, Value>,
    field: &str,
) -> Result<Vec<(&'a String, &'a Value)>, String> {
    match root.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(_) => Err(format!("'{field}' is not an object")),
    }
}

fn check_helper_name(helper: &str, what: &str) -> Result<(), String> {
    if valid_helper_name(helper) {
        Ok(())
    } else {
        Err(format!(
            "{what}: credential helper name '{helper}' is not letters, digits, '.', '_' or '-'"
        ))
    }
}

/// The credential in one `auths` entry (docker/cli `types.AuthConfig`), `None` when it has
/// nothing usable. Errors name the key and the field, never a value.
fn auth_entry(key: &str, entry: &Value) -> Result<Option<Credential>, String> {
    let entry = match entry {
        Value::Null => return Ok(None),
        Value::Object(entry) => entry,
        _ => return Err(format!("auths entry '{key}' is not an object")),
    };
    let field = |name: &str| match entry.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(format!("auths entry '{key}': '{name}' is not a string")),
    };
    // Docker decodes `auth` whenever it is present, so a broken one is an error even when
    // another field takes precedence.
    let from_auth = field("auth")?
        .map(|auth| decode_auth(key, auth))
        .transpose()?;
    if let Some(token) = field("registrytoken")? {
        return Ok(Some(Credential::Bearer {
            token: Secret::new(token),
        }));
    }
    if let Some(token) = field("identitytoken")? {
        return Ok(Some(Credential::IdentityToken {
            token: Secret::new(token),
        }));
    }
    if from_auth.is_some() {
        return Ok(from_auth);
    }
    Ok(match (field("username")?, field("password")?) {
        (Some(username), Some(password)) => Some(Credential::basic(username, password)),
        _ => None,
    })
}

/// `auth` is base64 of `username:password`, split at the first `:` (docker/cli `decodeAuth`).
fn decode_auth(key: &str, auth: &str) -> Result<Credential, String> {
    let bytes = AUTH_BASE64
        .decode(auth.trim())
        .or_else(|_| general_purpose::URL_SAFE.decode(auth.trim()))
        .map_err(|_| format!("auths entry '{key}': 'auth' is not valid base64"))?;
    let decoded = String::from_utf8(bytes)
        .map_err(|_| format!("auths entry '{key}': 'auth' is not UTF-8 once decoded"))?;
    match decoded.split_once(':') {
        Some((username, password)) if !username.is_empty() => {
            Ok(Credential::basic(username, password.trim_matches('\0')))
        }
        _ => Err(format!(
            "auths entry '{key}': 'auth' does not decode to username:password"
        )),
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    fn b64(s: &str) -> String {
        general_purpose::STANDARD.encode(s)
    }

    fn lookup(provider: &DockerConfigProvider, registry: &str) -> Option<Credential> {
        block_on(provider.credential(registry)).unwrap_or_else(|e| panic!("{registry}: {e}"))
    }

    #[test]
    fn auths_field_forms_table() {
        let basic = |u: &str, p: &str| Some(Credential::basic(u, p));
        let cases: Vec<(String, Option<Credential>)> = vec![
            (
                format!(r#"{{"auth":"{}"}}"#, b64("alice:pw")),
                basic("alice", "pw"),
            ),
            (
                format!(r#"{{"auth":"{}"}}"#, b64("alice:pw:with:colons")),
                basic("alice", "pw:with:colons"),
            ),
            (
                format!(r#"{{"auth":"{}"}}"#, b64("alice:")),
                basic("alice", ""),
            ),
            (
                format!(r#"{{"auth":"{}"}}"#, b64("alice:pw\0")),
                basic("alice", "pw"),
            ),
            (
                format!(r#"{{"auth":"{}"}}"#, b64("alice:pw1").trim_end_matches('=')),
                basic("alice", "pw1"),
            ),
            (
                r#"{"username":"bob","password":"pw"}"#.into(),
                basic("bob", "pw"),
            ),
            (
                format!(
                    r#"{{"auth":"{}","username":"bob","password":"other"}}"#,
                    b64("alice:pw")
                ),
                basic("alice", "pw"),
            ),
            (
                r#"{"identitytoken":"refresh","username":"00000000-0000-0000-0000-000000000000"}"#
                    .into(),
                Some(Credential::IdentityToken {
                    token: Secret::new("refresh"),
                }),
            ),
            (
                format!(
                    r#"{{"auth":"{}","identitytoken":"refresh"}}"#,
                    b64("alice:pw")
                ),
                Some(Credential::IdentityToken {
                    token: Secret::new("refresh"),
                }),
            ),
            (
                r#"{"registrytoken":"bearer","identitytoken":"refresh"}"#.into(),
                Some(Credential::Bearer {
                    token: Secret::new("bearer"),
                }),
            ),
            (r#"{}"#.into(), None),
            ("null".into(), None),
            (r#"{"auth":""}"#.into(), None),
            (r#"{"username":"bob"}"#.into(), None),
            (
                r#"{"email":"bob@example.com","serveraddress":"r.io"}"#.into(),
                None,
            ),
        ];
        for (entry, expected) in cases {
            let json = format!(r#"{{"auths":{{"r.example.com":{entry}}}}}"#);
            let provider = DockerConfigProvider::from_json(&json, "/test/config.json")
                .unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(lookup(&provider, "r.example.com"), expected, "{entry}");
            assert_eq!(lookup(&provider, "other.example.com"), None, "{entry}");
        }
    }

    #[test]
    fn auths_key_aliases_table() {
        // (config key, registries it serves, a registry it does not serve)
        let cases: [(&str, &[&str], &str); 8] = [
            (
                "https://index.docker.io/v1/",
                &["docker.io", "index.docker.io", "registry-1.docker.io"],
                "ghcr.io",
            ),
            ("index.docker.io", &["docker.io"], "ghcr.io"),
            ("registry-1.docker.io", &["docker.io"], "ghcr.io"),
            ("docker.io", &["docker.io", "Docker.IO"], "quay.io"),
            (
                "http://localhost:5000",
                &["localhost:5000"],
                "localhost:5001",
            ),
            (
                "https://Reg.Example.com:8443/v2/",
                &["reg.example.com:8443"],
                "reg.example.com",
            ),
            ("ghcr.io/owner", &["ghcr.io"], "docker.io"),
            (
                "myreg.azurecr.io",
                &["myreg.azurecr.io", "MYREG.azurecr.io"],
                "other.azurecr.io",
            ),
        ];
        for (key, serves, other) in cases {
            let json = format!(r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#);
            let provider = DockerConfigProvider::from_json(&json, "/test/config.json").unwrap();
            for registry in serves {
                assert_eq!(
                    lookup(&provider, registry),
                    Some(Credential::basic("u", "p")),
                    "{key} for {registry}"
                );
            }
            assert_eq!(lookup(&provider, other), None, "{key} for {other}");
        }
    }

    #[test]
    fn the_key_docker_writes_wins_over_aliases() {
        let json = format!(
            r#"{{"auths":{{
                "docker.io":{{"auth":"{}"}},
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "index.docker.io":{{"auth":"{}"}},
                "https://index.docker.io/v1/ignored":{{}}
            }}}}"#,
            b64("short:1"),
            b64("legacy:2"),
            b64("index:3")
        );
        let provider = DockerConfigProvider::from_json(&json, "/c.json").unwrap();
        assert_eq!(
            lookup(&provider, "docker.io"),
            Some(Credential::basic("legacy", "2"))
        );

        let json = r#"{"auths":{"https://r.io/v2/":{"username":"a","password":"1"},"r.io":{"username":"b","password":"2"}}}"#;
        let provider = DockerConfigProvider::from_json(json, "/c.json").unwrap();
        assert_eq!(lookup(&provider, "r.io"), Some(Credential::basic("b", "2")));

        // An empty entry under the preferred key does not hide a usable alias.
        let json = r#"{"auths":{"https://index.docker.io/v1/":{},"docker.io":{"username":"a","password":"1"}}}"#;
        let provider = DockerConfigProvider::from_json(json, "/c.json").unwrap();
        assert_eq!(
            lookup(&provider, "docker.io"),
            Some(Credential::basic("a", "1"))
        );
    }

    #[test]
    fn malformed_config_table() {
        let secret = "s3cr3t-value";
        let cases: Vec<(String, &str)> = vec![
            (
                "{".into(),
                "not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{secret}"#),
                "not valid JSON",
            ),
            ("[]".into(), "the top level is not a JSON object"),
            (r#"{"auths":[]}"#.into(), "'auths' is not an object"),
            (
                format!(r#"{{"auths":{{"r.io":"{secret}"}}}}"#),
                "auths entry 'r.io' is not an object",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{secret}!"}}}}}}"#),
                "auths entry 'r.io': 'auth' is not valid base64",
            ),
            (
                format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64(secret)),
                "auths entry 'r.io': 'auth' does not decode to username:password",
            ),
            (
                format!(
                    r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
                    b64(&format!(":{secret}"))
                ),
                "auths entry 'r.io': 'auth' does not decode to username:password",
            ),
            (
                format!(
                    r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
                    general_purpose::STANDARD.encode([0xff, b':', 0xfe])
                ),
                "auths entry 'r.io': 'auth' is not UTF-8 once decoded",
            ),
            (
                format!(
                    r#"{{"auths":{{"r.io":{{"auth":"{}","identitytoken":"{secret}"}}}}}}"#,
                    b64(secret)
                ),
                "auths entry 'r.io': 'auth' does not decode to username:password",
            ),
            (
                r#"{"auths":{"r.io":{"password":123}}}"#.into(),
                "auths entry 'r.io': 'password' is not a string",
            ),
            (
                r#"{"credHelpers":"ecr-login"}"#.into(),
                "'credHelpers' is not an object",
            ),
            (
                r#"{"credHelpers":{"r.io":1}}"#.into(),
                "credHelpers entry 'r.io' is not a string",
            ),
            (
                r#"{"credHelpers":{"r.io":"../../bin/sh"}}"#.into(),
                "credHelpers entry 'r.io': credential helper name '../../bin/sh' is not letters, digits, '.', '_' or '-'",
            ),
            (
                r#"{"credsStore":"desk top"}"#.into(),
                "credsStore: credential helper name 'desk top' is not letters, digits, '.', '_' or '-'",
            ),
            (
                r#"{"credsStore":true}"#.into(),
                "'credsStore' is not a string",
            ),
        ];
        for (json, reason) in cases {
            match DockerConfigProvider::from_json(&json, "/home/u/.docker/config.json") {
                Err(error @ Error::DockerConfig { .. }) => {
                    let message = error.to_string();
                    assert!(
                        message
                            .starts_with("invalid docker config '/home/u/.docker/config.json': "),
                        "{message}"
                    );
                    assert!(message.contains(reason), "{json}: {message}");
                    assert!(!message.contains(secret), "{json}: {message}");
                    assert!(!format!("{error:?}").contains(secret), "{json}: {error:?}");
                }
                other => panic!("{json}: expected Error::DockerConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn empty_and_irrelevant_configs_have_nothing() {
        for json in [
            "",
            "  \n",
            "{}",
            r#"{"auths":{}}"#,
            r#"{"auths":null,"credsStore":"","psFormat":"table","HttpHeaders":{"X":"y"}}"#,
        ] {
            let provider = DockerConfigProvider::from_json(json, "/c.json")
                .unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(lookup(&provider, "docker.io"), None, "{json}");
        }
    }

    #[test]
    fn default_path_table() {
        let os = |s: &str| Some(OsString::from(s));
        let cases = [
            (
                os("/etc/docker-cfg"),
                os("/home/u"),
                Some("/etc/docker-cfg/config.json"),
            ),
            (None, os("/home/u"), Some("/home/u/.docker/config.json")),
            (os(""), os("/home/u"), Some("/home/u/.docker/config.json")),
            (os("/cfg"), None, Some("/cfg/config.json")),
            (None, None, None),
            (None, os(""), None),
        ];
        for (docker_config, home, expected) in cases {
            assert_eq!(
                default_path(docker_config.clone(), home.clone()),
                expected.map(PathBuf::from),
                "{docker_config:?} {home:?}"
            );
        }
    }

    #[test]
    fn from_path_reads_files_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let provider = DockerConfigProvider::from_path(&path).unwrap();
        assert_eq!(provider.path(), path);
        assert_eq!(lookup(&provider, "r.io"), Some(Credential::basic("u", "p")));

        let missing = dir.path().join("missing.json");
        match DockerConfigProvider::from_path(&missing) {
            Err(error @ Error::DockerConfigRead { .. }) => {
                assert_eq!(
                    error.to_string(),
                    format!("cannot read docker config '{}'", missing.display())
                );
            }
            other => panic!("expected Error::DockerConfigRead, got {other:?}"),
        }
        let provider = DockerConfigProvider::load(missing.clone(), true).unwrap();
        assert_eq!(provider.path(), missing);
        assert_eq!(lookup(&provider, "r.io"), None);

        std::fs::write(&path, "{not json").unwrap();
        match DockerConfigProvider::load(path.clone(), true) {
            Err(Error::DockerConfig { path: named, .. }) => assert_eq!(named, path),
            other => panic!("expected Error::DockerConfig, got {other:?}"),
        }
    }
}
