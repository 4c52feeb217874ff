//! Logging: tracing to stderr, never stdout (stdout carries data such as `--json` reports).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::{Global, LogFormat};

/// Install the global subscriber. `RUST_LOG` overrides the level from `-v`/`-q`; the HTTP
/// stack stays at `warn` so request headers (credentials) never reach the log.
pub(crate) fn init(global: &Global) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,ocync=info,ocync_transport=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = EnvFilter::try_new(format!(
        "{base},hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn,h2=warn"
    ))
    .unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
