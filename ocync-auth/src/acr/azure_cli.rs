//! The Azure CLI source: `az account get-access-token -o json --scope <scope> [--tenant <t>]`,
//! run directly (no shell) with a timeout. The CLI keeps its own login and refresh tokens; this
//! source only reads the access token it prints (azure_identity `azure_cli_credential.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::process::Command;

use super::entra::{AadToken, EntraRequest, EntraSource};
use super::http::{self, Expiry};
use crate::credential_helper::{is_executable, spawn};
use crate::{BoxFuture, Error, Secret};

/// The longest lifetime believed from `expiresOn`, which is local time without a zone: read as
/// UTC it can be hours off, and `az` hands out cached tokens that expire within minutes.
const EXPIRES_ON_LOCAL_MAX: Duration = Duration::from_secs(10 * 60);

/// The Azure CLI source.
#[derive(Debug)]
pub(crate) struct AzureCli {
    pub(crate) program: String,
    /// Where to look for the program; `None` is `PATH` at lookup time.
    pub(crate) dirs: Option<Vec<PathBuf>>,
    pub(crate) timeout: Duration,
    pub(crate) tenant: Option<String>,
}

impl AzureCli {
    async fn fetch(&self, request: EntraRequest<'_>) -> Result<Option<AadToken>, Error> {
        let Some(path) = self.find() else {
            tracing::debug!(program = %self.program, "no azure cli in the search path");
            return Ok(None);
        };
        let fail = |reason: String| Error::CredentialHelper {
            helper: self.program.clone(),
            registry: request.registry.to_owned(),
            reason,
        };
        let mut command = Command::new(&path);
        command.args(["account", "get-access-token", "-o", "json"]);
        for scope in request.scope.split_whitespace() {
            command.args(["--scope", scope]);
        }
        if let Some(tenant) = &self.tenant {
            command.args(["--tenant", tenant]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = spawn(&mut command)
            .await
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        // On timeout the future is dropped with the child, which kills it.
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| fail(format!("cannot read its output: {e}")))?;
        if !output.status.success() {
            let status = match output.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            };
            // Its stdout may hold a token even on failure; only stderr is shown.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let line = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(http::truncate);
            return Err(fail(match line {
                Some(line) => format!("{status}: {line}"),
                None => status,
            }));
        }
        // Parsed as a `Value` so that no serde message can quote the token.
        let json: Map<String, Value> = serde_json::from_slice(&output.stdout)
            .map_err(|_| fail("its output is not a JSON object".to_owned()))?;
        let token = http::string(&json, "accessToken")
            .ok_or_else(|| fail("its output has no 'accessToken'".to_owned()))?;
        Ok(Some(AadToken {
            value: Secret::new(token),
            expiry: Expiry::after(lifetime(&json, token)),
        }))
    }

    fn find(&self) -> Option<PathBuf> {
        let dirs: Vec<PathBuf> = match &self.dirs {
            Some(dirs) => dirs.clone(),
            None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect(),
        };
        let names: Vec<String> = if cfg!(windows) {
            // The CLI installs `az.cmd`; std runs batch files with their arguments escaped.
            vec![
                format!("{}.cmd", self.program),
                format!("{}.exe", self.program),
            ]
        } else {
            vec![self.program.clone()]
        };
        dirs.iter()
            // A relative PATH entry would run whatever the current directory holds.
            .filter(|dir| dir.is_absolute())
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|candidate| is_executable(candidate))
    }
}

/// The token's lifetime: `expires_on` (Unix time, CLI 2.54.0 and later), else the JWT `exp`,
/// else `expiresOn` (local time) read as UTC and believed for at most ten minutes.
fn lifetime(json: &Map<String, Value>, token: &str) -> Duration {
    if let Some(epoch) = json.get("expires_on").and_then(http::number) {
        return http::until_epoch(epoch);
    }
    if let Some(lifetime) = http::jwt_lifetime(token) {
        return lifetime;
    }
    json.get("expiresOn")
        .and_then(Value::as_str)
        .and_then(parse_local_datetime)
        .map(|epoch| http::until_epoch(epoch as f64).min(EXPIRES_ON_LOCAL_MAX))
        .unwrap_or(Duration::ZERO)
}

/// Seconds since the Unix epoch of `YYYY-MM-DD HH:MM:SS[.ffffff]`, read as UTC.
fn parse_local_datetime(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once([' ', 'T'])?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let time = time.split('.').next()?;
    let mut time = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

impl EntraSource for AzureCli {
    fn name(&self) -> &'static str {
        "azure cli"
    }

    fn token<'a>(
        &'a self,
        request: EntraRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<AadToken>, Error>> {
        Box::pin(self.fetch(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_datetime_table() {
        let cases = [
            ("1970-01-01 00:00:00", Some(0)),
            ("2030-01-02 03:04:05.000000", Some(1_893_553_445)),
            ("2024-02-29T12:00:00", Some(1_709_208_000)),
            ("2030-13-02 03:04:05", None),
            ("2030-01-02", None),
            ("soon", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_local_datetime(text), expected, "{text}");
        }
    }

    #[test]
    fn lifetime_prefers_expires_on_then_jwt() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let json = |value: Value| match value {
            Value::Object(object) => object,
            _ => unreachable!(),
        };
        let from_epoch = lifetime(
            &json(
                serde_json::json!({"expires_on": now + 1200, "expiresOn": "2999-01-01 00:00:00"}),
            ),
            "opaque",
        );
        assert!(
            (1195..=1200).contains(&from_epoch.as_secs()),
            "{from_epoch:?}"
        );
        let from_local = lifetime(
            &json(serde_json::json!({"expiresOn": "2999-01-01 00:00:00.000000"})),
            "opaque",
        );
        assert_eq!(from_local, EXPIRES_ON_LOCAL_MAX);
        assert_eq!(
            lifetime(&json(serde_json::json!({})), "opaque"),
            Duration::ZERO
        );
    }
}
