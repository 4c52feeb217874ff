//! Logging: tracing to stderr, never stdout (stdout carries data such as `--json` reports).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::{Global, LogFormat};

/// Crates whose verbose logs carry credentials: HTTP stacks log headers, the AWS SDK logs whole
/// response bodies at trace (`GetAuthorizationToken`'s body is the registry password) and the
/// SigV4 signer its canonical requests. They are capped whatever `-v` or `RUST_LOG` say.
const CAPS: &[(&str, &str)] = &[
    ("hyper", "warn"),
    ("hyper_util", "warn"),
    ("reqwest", "warn"),
    ("rustls", "warn"),
    ("h2", "warn"),
    ("aws_smithy_runtime", "info"),
    ("aws_smithy_runtime_api", "info"),
    ("aws_smithy_http", "info"),
    ("aws_smithy_http_client", "info"),
    ("aws_smithy_types", "info"),
    ("aws_sigv4", "info"),
    ("aws_runtime", "info"),
    ("aws_config", "info"),
    ("aws_sdk_ecr", "info"),
    ("aws_sdk_ecrpublic", "info"),
    ("aws_sdk_sts", "info"),
    ("aws_sdk_sso", "info"),
    ("aws_sdk_ssooidc", "info"),
];

/// Install the global subscriber. `RUST_LOG` overrides the level from `-v`/`-q`; the crates in
/// [`CAPS`] never log below their cap, so credentials never reach the log.
pub(crate) fn init(global: &Global) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,ocync=info,ocync_transport=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let caps: Vec<String> = CAPS
        .iter()
        .map(|(target, cap)| format!("{target}={cap}"))
        .collect();
    let filter = EnvFilter::try_new(format!("{base},{}", caps.join(",")))
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{}", caps.join(","))));
    // Colours only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::progress::LogWriter)
        .with_ansi(ansi);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
