//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  partial failure: some images failed, the others were copied
  2  failure: nothing was copied (registry, network or data error)
  3  invalid input: arguments, references or configuration
  4  authentication or authorization failure";

/// Copy and keep in sync OCI images and artifacts between registries and OCI layouts.
#[derive(Debug, Parser)]
#[command(name = "ocync", version, after_help = EXIT_CODES, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options of every command.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Copy one image (with all platforms and its referrers) from SOURCE to TARGET.
    #[command(after_help = COPY_HELP)]
    Copy(CopyArgs),
}

const COPY_HELP: &str = "\
Locations are registry references (host[:port]/repository[:tag|@digest]; Docker Hub names such
as `nginx` are expanded to docker.io/library/nginx:latest) or OCI image layouts
(oci:<directory>[:tag|@digest]). A target without a tag takes the source's tag. Credentials come
from docker's config.json ($DOCKER_CONFIG or ~/.docker/config.json).

Examples:
  ocync copy cgr.dev/chainguard/static:latest 123456789012.dkr.ecr.us-east-1.amazonaws.com/static
  ocync copy oci:./images:v1 localhost:5000/app:v1 --plain-http localhost:5000
  ocync copy ghcr.io/owner/app:v1 oci:./backup";

/// Arguments of `ocync copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// Where the image is.
    pub(crate) source: String,
    /// Where to copy it.
    pub(crate) target: String,
    /// Do not copy referrers (signatures, SBOMs, attestations).
    #[arg(long)]
    pub(crate) no_referrers: bool,
    /// Talk plain HTTP to this registry (host[:port]); repeatable.
    #[arg(long, value_name = "REGISTRY")]
    pub(crate) plain_http: Vec<String>,
    /// Accept any TLS certificate from this registry (test registries only); repeatable.
    #[arg(long, value_name = "REGISTRY")]
    pub(crate) tls_skip_verify: Vec<String>,
    /// Trust the CA certificates in this PEM file for every registry, in addition to the
    /// system's (SSL_CERT_FILE and SSL_CERT_DIR are honoured too).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Upload blobs in chunks of this many bytes instead of one request per blob.
    #[arg(long, value_name = "BYTES")]
    pub(crate) chunk_size: Option<u64>,
    /// Blob transfers in flight at once.
    #[arg(long, default_value_t = 6)]
    pub(crate) concurrency: usize,
    /// Write a JSON report to stdout instead of the digest.
    #[arg(long)]
    pub(crate) json: bool,
}
