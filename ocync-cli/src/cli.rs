//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  partial failure: some images failed, the others were copied
  2  failure: nothing was copied (registry, network or data error)
  3  invalid input: arguments, references or configuration
  4  authentication or authorization failure
  5  interrupted: a signal stopped the run; unfinished work is listed";

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
    /// Sync every mapping of a configuration file.
    #[command(after_help = SYNC_HELP)]
    Sync(SyncArgs),
    /// Sync again and again (on an interval or a cron schedule), serving health and metrics.
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
    /// Check a configuration file without contacting any registry.
    #[command(after_help = "Example:\n  ocync validate ocync.yaml")]
    Validate(ValidateArgs),
    /// Print a configuration file with ${VAR} references expanded (secrets redacted).
    #[command(after_help = "Example:\n  ocync expand ocync.yaml")]
    Expand(ExpandArgs),
    /// List a repository's tags, and which of them a filter selects.
    #[command(after_help = TAGS_HELP)]
    Tags(TagsArgs),
    /// Credentials: check what every configured registry accepts.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ocync completions bash > /etc/bash_completion.d/ocync\n  ocync completions zsh > \"${fpath[1]}/_ocync\"\n  ocync completions fish > ~/.config/fish/completions/ocync.fish"
    )]
    Completions(CompletionsArgs),
}

/// Arguments of `ocync completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `ocync auth` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// For every registry of the configuration, obtain a real token for the scopes a sync
    /// needs (pull on sources, pull and push on targets) and say which provider answered.
    #[command(
        after_help = "Example:\n  ocync auth check --config ocync.yaml\n\nPrints one line per registry on stdout; no secret is ever printed."
    )]
    Check(AuthCheckArgs),
}

/// Arguments of `ocync auth check`.
#[derive(Debug, Args)]
pub(crate) struct AuthCheckArgs {
    /// Configuration files (repeatable).
    #[arg(short, long = "config", value_name = "FILE", required = true)]
    pub(crate) configs: Vec<PathBuf>,
}

const SYNC_HELP: &str = "\
Examples:
  ocync sync --config ocync.yaml
  ocync sync --config ocync.yaml --dry-run      # what would be copied, no writes
  ocync sync --config ocync.yaml --json > report.json
  ocync sync --config ocync.yaml --shard 0/4    # the first of four disjoint parts";

const WATCH_HELP: &str = "\
The configuration is read again before every cycle; a file that no longer loads is reported and
the last good one is used. GET /healthz, /readyz and /metrics (Prometheus) are served on
--health-bind:--health-port. SIGTERM or SIGINT ends the current cycle gracefully and exits.

Examples:
  ocync watch --config ocync.yaml --interval 600
  ocync watch --config ocync.yaml --schedule '*/15 * * * *' --health-bind 0.0.0.0";

/// Where a run's shard comes from: `I/N` (part I of N, from 0), or `N` with the index read from
/// `JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job).
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Handle only part I of N of the repositories (`I/N`, from 0), or `N` to take I from
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs). Parts are disjoint and stable.
    #[arg(long, value_name = "I/N", env = "OCYNC_SHARD")]
    pub(crate) shard: Option<String>,
    /// Keep the cache and staged blobs here instead of the configuration's `global.cache_dir`.
    #[arg(long, value_name = "DIR", env = "OCYNC_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
}

const TAGS_HELP: &str = "\
Examples:
  ocync tags docker.io/library/nginx --semver '>=1.26' --sort semver --latest 5
  ocync tags ghcr.io/owner/app --glob 'v*' --exclude '*-rc*'";

/// Arguments of `ocync sync`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Print the plan (what would be copied, what is already there) and write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write a JSON report to stdout.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Arguments of `ocync watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The configuration file (read again before every cycle).
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Seconds from the end of one cycle to the start of the next.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "schedule")]
    pub(crate) interval: u64,
    /// Start cycles on this cron schedule instead (5 fields, UTC: '*/15 * * * *').
    #[arg(long, value_name = "CRON")]
    pub(crate) schedule: Option<String>,
    /// Delay each cycle after the first by a random 0..SECONDS, so replicas and shards spread
    /// out.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub(crate) jitter: u64,
    /// Address the health and metrics server listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub(crate) health_bind: String,
    /// Port of the health and metrics server (0: any free port, printed at start).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub(crate) health_port: u16,
    /// Write each cycle's JSON report to stdout (one line per cycle).
    #[arg(long)]
    pub(crate) json: bool,
    /// Run this many cycles, then exit (0: forever). For tests and one-off checks.
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub(crate) cycles: u64,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Arguments of `ocync validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The configuration file.
    pub(crate) config: PathBuf,
}

/// Arguments of `ocync expand`.
#[derive(Debug, Args)]
pub(crate) struct ExpandArgs {
    /// The configuration file.
    pub(crate) config: PathBuf,
    /// Print secrets instead of [REDACTED].
    #[arg(long)]
    pub(crate) show_secrets: bool,
}

/// Arguments of `ocync tags`.
#[derive(Debug, Args)]
pub(crate) struct TagsArgs {
    /// The repository (host/repository), without a tag.
    pub(crate) repository: String,
    /// Registry settings and credentials from this configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Keep tags matching one of these globs.
    #[arg(long)]
    pub(crate) glob: Vec<String>,
    /// Always keep these tags (literals) or rescue these globs.
    #[arg(long)]
    pub(crate) include: Vec<String>,
    /// Keep tags in this version range (e.g. '>=1.2, <2').
    #[arg(long)]
    pub(crate) semver: Option<String>,
    /// Drop tags matching these globs.
    #[arg(long)]
    pub(crate) exclude: Vec<String>,
    /// Order the selection.
    #[arg(long, value_enum)]
    pub(crate) sort: Option<SortArg>,
    /// Keep the first N after sorting.
    #[arg(long, requires = "sort")]
    pub(crate) latest: Option<usize>,
}

/// Tag orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortArg {
    /// Newest version first.
    Semver,
    /// Reverse byte order.
    Alpha,
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
