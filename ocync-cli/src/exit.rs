//! Exit codes and error reports.

use std::process::ExitCode;

use ocync_transport::ErrorKind;

/// The documented exit codes (see `ocync --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Everything worked.
    Ok = 0,
    /// Some work failed, the rest was done.
    Partial = 1,
    /// Nothing was done.
    Failure = 2,
    /// Arguments, references or configuration are invalid.
    Input = 3,
    /// Credentials were missing, wrong or not allowed.
    Auth = 4,
    /// A signal stopped the run before all work was done.
    Interrupted = 5,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}

/// Bad command-line input that clap cannot check itself (exit code 3).
#[derive(Debug)]
pub(crate) struct InputError(pub(crate) String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// The exit code an error maps to.
pub(crate) fn classify(err: &anyhow::Error) -> Code {
    for cause in err.chain() {
        if cause.is::<crate::config::ConfigError>() || cause.is::<InputError>() {
            return Code::Input;
        }
        if let Some(e) = cause.downcast_ref::<ocync_transport::Error>() {
            if e.is_unauthorized() {
                return Code::Auth;
            }
            return match e.kind() {
                ErrorKind::InvalidLocation { .. } | ErrorKind::Settings { .. } => Code::Input,
                ErrorKind::Layout { source: None, .. } => Code::Input,
                ErrorKind::Auth { .. } | ErrorKind::Denied { .. } => Code::Auth,
                _ => Code::Failure,
            };
        }
    }
    Code::Failure
}

/// Print an error and its causes to stderr, each fact once.
pub(crate) fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
