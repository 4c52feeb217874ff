//! Running `docker-credential-<name> get` (docker-credential-helpers `client/client.go`).
//!
//! The helper is found in the search path and run directly, never through a shell, with the
//! server URL on stdin. It answers `{"ServerURL","Username","Secret"}` on stdout; a username of
//! `<token>` marks the secret as an identity token (docker/cli `native_store.go`). A helper that
//! has nothing prints "credentials not found" and exits non-zero, which is not an error.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::{Credential, Error, Secret};

/// How long a helper may take by default: some open a desktop keychain prompt.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// docker/cli `native_store.go` `tokenUsername`.
const TOKEN_USERNAME: &str = "<token>";

/// How much of a helper's error output goes into an error message.
const MAX_REASON_CHARS: usize = 200;

type Answer = Arc<OnceCell<Option<Credential>>>;

/// Runs helpers and remembers their answers per helper and registry.
#[derive(Debug)]
pub(crate) struct HelperRunner {
    /// Where to look for `docker-credential-*`; `None` is `$PATH` at lookup time.
    pub(crate) dirs: Option<Vec<PathBuf>>,
    pub(crate) timeout: Duration,
    answers: Mutex<HashMap<(String, String), Answer>>,
}

impl Default for HelperRunner {
    fn default() -> HelperRunner {
        HelperRunner {
            dirs: None,
            timeout: DEFAULT_TIMEOUT,
            answers: Mutex::default(),
        }
    }
}

/// Whether `name` may follow `docker-credential-`: it becomes part of a file name we execute.
pub(crate) fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl HelperRunner {
    /// The helper's credential for `registry`, asking it about `server_url`. `Ok(None)` when it
    /// has none. Answers (including "none") are kept for the runner's lifetime; failures are
    /// not, so a later lookup tries again.
    pub(crate) async fn get(
        &self,
        name: &str,
        registry: &str,
        server_url: &str,
    ) -> Result<Option<Credential>, Error> {
        let answer = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((name.to_owned(), registry.to_owned()))
            .or_default()
            .clone();
        answer
            .get_or_try_init(|| self.run(name, registry, server_url))
            .await
            .cloned()
    }

    async fn run(
        &self,
        name: &str,
        registry: &str,
        server_url: &str,
    ) -> Result<Option<Credential>, Error> {
        let program = format!("docker-credential-{name}{}", std::env::consts::EXE_SUFFIX);
        let fail = |reason: String| Error::CredentialHelper {
            helper: program.clone(),
            registry: registry.to_owned(),
            reason,
        };
        let path = self
            .find(&program)
            .ok_or_else(|| fail("the program is not in the helper search path".to_owned()))?;
        let mut command = Command::new(&path);
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = spawn(&mut command)
            .await
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let stdin = child.stdin.take();
        let conversation = async move {
            if let Some(mut stdin) = stdin {
                // A helper may exit without reading stdin; its output tells what happened.
                let _ = stdin.write_all(server_url.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        // On timeout the conversation is dropped with the child, which kills it.
        let output = tokio::time::timeout(self.timeout, conversation)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| fail(format!("cannot read its output: {e}")))?;

        if !output.status.success() {
            let stdout = String::from_utf8_lossy(&output.stdout);
            if stdout
                .to_ascii_lowercase()
                .contains("credentials not found")
            {
                tracing::debug!(helper = %program, registry, "credential helper has no credentials");
                return Ok(None);
            }
            let status = match output.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            };
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(
                match first_line(&stdout).or_else(|| first_line(&stderr)) {
                    Some(line) => format!("{status}: {line}"),
                    None => status,
                },
            ));
        }
        // Parsed as a `Value` so that no serde message can quote the secret.
        let json: Value = serde_json::from_slice(&output.stdout)
            .map_err(|_| fail("its output is not JSON".to_owned()))?;
        let secret = json
            .get("Secret")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("its output has no 'Secret' string".to_owned()))?;
        let username = json
            .get("Username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(match (username, secret) {
            (_, "") => None,
            (TOKEN_USERNAME, secret) => Some(Credential::IdentityToken {
                token: Secret::new(secret),
            }),
            (username, secret) => Some(Credential::basic(username, secret)),
        })
    }

    fn find(&self, program: &str) -> Option<PathBuf> {
        let dirs: Vec<PathBuf> = match &self.dirs {
            Some(dirs) => dirs.clone(),
            None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect(),
        };
        dirs.iter()
            // Like Go's exec.LookPath since 1.19: a relative PATH entry would run whatever the
            // current directory holds.
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }
}

/// Spawns `command`, retrying briefly on `ETXTBSY`: the file was just written (a helper being
/// installed or upgraded) and another thread's fork still holds it open for writing.
pub(crate) async fn spawn(command: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

#[cfg(unix)]
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(crate) fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_name_table() {
        let cases = [
            ("ecr-login", true),
            ("desktop", true),
            ("osxkeychain", true),
            ("gcloud", true),
            ("acr-env_1.2", true),
            ("", false),
            ("../evil", false),
            ("a/b", false),
            ("a b", false),
            ("x;rm", false),
            ("$(id)", false),
        ];
        for (name, valid) in cases {
            assert_eq!(valid_helper_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn first_line_table() {
        let long = "y".repeat(300);
        let cases = [
            ("", None),
            ("\n  \n", None),
            ("error: boom\nsecond line", Some("error: boom".to_owned())),
            ("\n  spaced  \n", Some("spaced".to_owned())),
            (long.as_str(), Some(format!("{}...", &long[..200]))),
        ];
        for (text, expected) in cases {
            assert_eq!(first_line(text), expected, "{text:?}");
        }
    }
}
