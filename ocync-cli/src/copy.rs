//! `ocync copy`.

use std::sync::Arc;

use anyhow::Context as _;

use ocync_transport::{
    ClientBuilder, Copy, CopyOptions, Location, Progress, Registries, Scheme, UploadMode,
};

use crate::cli::CopyArgs;
use crate::exit::Code;
use crate::progress;

pub(crate) async fn run(args: CopyArgs, display: progress::Mode) -> anyhow::Result<Code> {
    let mut registries = Registries::from_docker_config()?;
    let mut hosts: Vec<String> = Vec::new();
    for location in [&args.source, &args.target] {
        if let Ok(Location::Registry(r)) = location.parse::<Location>() {
            hosts.push(r.registry().to_owned());
        }
    }
    hosts.extend(
        args.plain_http
            .iter()
            .chain(&args.tls_skip_verify)
            .map(|h| h.to_ascii_lowercase()),
    );
    hosts.sort();
    hosts.dedup();
    for host in &hosts {
        let mut builder = ClientBuilder::new(host);
        if args.plain_http.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            builder = builder.scheme(Scheme::Http);
        }
        if args
            .tls_skip_verify
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &args.ca_file {
            builder = builder.ca_file(ca);
        }
        if let Some(chunk_size) = args.chunk_size {
            builder = builder.upload_mode(UploadMode::Chunked { chunk_size });
        }
        registries.configure(host, builder);
    }
    let options = CopyOptions::default()
        .referrers(!args.no_referrers)
        .blob_concurrency(args.concurrency)
        .staging(std::env::temp_dir().join("ocync-staging"));
    let progress = Arc::new(Progress::new());
    let options = options.progress(progress.clone());
    let display = progress::Display::start(progress, display);
    let report = Copy::new(&args.source, &args.target)
        .options(options)
        .registries(&registries)
        .run()
        .await;
    display.finish().await;
    let report =
        report.with_context(|| format!("cannot copy {} to {}", args.source, args.target))?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)?;
        #[expect(clippy::print_stdout, reason = "the report is the command's output")]
        {
            println!("{json}");
        }
    } else {
        let verb = if report.status == ocync_transport::Status::Skipped {
            "already up to date"
        } else {
            "copied"
        };
        tracing::info!(
            "{verb}: {} -> {}: {} manifests pushed; {} blobs uploaded ({} bytes), {} mounted, {} present; {} referrers",
            report.source,
            report.target,
            report.manifests_pushed,
            report.blobs_uploaded,
            report.bytes_uploaded,
            report.blobs_mounted,
            report.blobs_skipped,
            report.referrers_copied,
        );
        #[expect(clippy::print_stdout, reason = "the digest is the command's output")]
        {
            println!("{}", report.digest);
        }
    }
    Ok(Code::Ok)
}
