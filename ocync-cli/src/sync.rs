//! `ocync sync`: run every mapping of a configuration file.

use std::collections::BTreeMap;

use ocync_transport::{Shard, Status, SyncOptions, SyncPlan, SyncReport};

use crate::cli::{RunArgs, SyncArgs};
use crate::config::Config;
use crate::exit::{Code, InputError};
use crate::{config, endpoints, progress, signals};

pub(crate) async fn run(args: SyncArgs, display: progress::Mode) -> anyhow::Result<Code> {
    let config = config::load(&args.config)?;
    config.log_warnings();
    let (plan, options) = prepare(&config, &args.run)?;
    let options = options.dry_run(args.dry_run).shutdown(signals::shutdown());
    let labels: Vec<String> = plan.mappings.iter().map(|m| m.label.clone()).collect();
    let report = progress::sync(plan, options, display).await;

    if args.json {
        let json = serde_json::to_string_pretty(&report)?;
        #[expect(clippy::print_stdout, reason = "the report is the command's output")]
        {
            println!("{json}");
        }
    } else if args.dry_run {
        print_plan(&report);
    }
    summarise(&report, &labels);
    Ok(exit_code(&report))
}

/// What one run (a `sync`, or a `watch` cycle) does: the plan and the options from the
/// configuration and the command line (`--shard`, `--cache-dir`).
pub(crate) fn prepare(config: &Config, run: &RunArgs) -> anyhow::Result<(SyncPlan, SyncOptions)> {
    let shard = run.shard.as_deref().map(parse_shard).transpose()?;
    let endpoints = endpoints::endpoints(config)?;
    let plan = endpoints::plan(config, &endpoints)?;
    let global = config.global();
    let cache_dir = run.cache_dir.as_ref().unwrap_or(&global.cache_dir);
    // Shards may share one cache volume (a ReadWriteMany claim): each keeps its own file and
    // staging directory, so that none overwrites another's.
    let (state, staging) = match shard {
        Some(s) => (
            format!("state-shard-{}-of-{}.json", s.index(), s.count()),
            format!("staging/shard-{}-of-{}", s.index(), s.count()),
        ),
        None => ("state.json".to_owned(), "staging".to_owned()),
    };
    let mut options = SyncOptions::default()
        .image_concurrency(global.max_concurrent_transfers)
        .cache(cache_dir.join(state))
        .staging(cache_dir.join(staging), global.staging_size_limit);
    options.cache_ttl = global.cache_ttl;
    options.shard = shard;
    Ok((plan, options))
}

/// `I/N`, or `N` with I from `JOB_COMPLETION_INDEX` (set in every pod of a Kubernetes Indexed
/// Job).
fn parse_shard(text: &str) -> anyhow::Result<Shard> {
    let invalid = |why: String| {
        anyhow::Error::new(InputError(format!(
            "--shard '{text}': {why}; give I/N (part I of N, from 0, e.g. 0/4) or N in a Kubernetes Indexed Job"
        )))
    };
    let (index, count) = match text.split_once('/') {
        Some((i, n)) => (i.trim().to_owned(), n.trim()),
        None => match std::env::var("JOB_COMPLETION_INDEX") {
            Ok(i) => (i, text.trim()),
            Err(_) => {
                return Err(invalid(
                    "no index, and JOB_COMPLETION_INDEX is not set".into(),
                ));
            }
        },
    };
    let count: u32 = count
        .parse()
        .map_err(|_| invalid(format!("'{count}' is not a number of shards")))?;
    let index: u32 = index
        .parse()
        .map_err(|_| invalid(format!("'{index}' is not a shard index")))?;
    Shard::new(index, count).ok_or_else(|| invalid(format!("there is no shard {index} of {count}")))
}

/// The documented exit code of a run.
pub(crate) fn exit_code(report: &SyncReport) -> Code {
    if report.interrupted {
        return Code::Interrupted;
    }
    if report.is_success() {
        return Code::Ok;
    }
    let done = report.count(Status::Synced)
        + report.count(Status::Skipped)
        + report.count(Status::Planned);
    match (done, report.only_auth_failures()) {
        (0, true) => Code::Auth,
        (0, false) => Code::Failure,
        _ => Code::Partial,
    }
}

/// A dry run's plan, one line per image and target, on stdout.
fn print_plan(report: &SyncReport) {
    let mut lines = Vec::new();
    for image in &report.images {
        let line = match image.status {
            Status::Planned => format!(
                "copy      {} -> {} ({} to upload)",
                image.source,
                image.target,
                human_bytes(image.bytes_planned.unwrap_or(0))
            ),
            Status::Skipped => format!(
                "present   {} -> {} ({})",
                image.source,
                image.target,
                image.reason.as_deref().unwrap_or("up to date")
            ),
            _ => format!(
                "error     {} -> {}: {}",
                image.source,
                image.target,
                image.error.as_deref().unwrap_or("failed")
            ),
        };
        lines.push(line);
    }
    let total: u64 = report.images.iter().filter_map(|i| i.bytes_planned).sum();
    lines.push(format!("total: {} to upload", human_bytes(total)));
    #[expect(clippy::print_stdout, reason = "the plan is the command's output")]
    {
        println!("{}", lines.join("\n"));
    }
}

/// Per-mapping lines and a summary, on stderr (through the log).
pub(crate) fn summarise(report: &SyncReport, labels: &[String]) {
    let mut per_mapping: BTreeMap<usize, [usize; 4]> = BTreeMap::new();
    for image in &report.images {
        let slot = match image.status {
            Status::Synced => 0,
            Status::Skipped | Status::Planned => 1,
            Status::Failed => 2,
            Status::Interrupted => 3,
            _ => 2,
        };
        per_mapping.entry(image.mapping).or_default()[slot] += 1;
    }
    for (index, [synced, skipped, failed, interrupted]) in &per_mapping {
        let label = labels.get(*index).map_or("?", String::as_str);
        if *failed + *interrupted > 0 {
            tracing::warn!(
                "{label}: synced {synced}, up to date {skipped}, failed {failed}, interrupted {interrupted}"
            );
        } else {
            tracing::info!("{label}: synced {synced}, up to date {skipped}");
        }
    }
    for image in report.images.iter().filter(|i| i.status == Status::Failed) {
        tracing::error!(
            "failed {} -> {}: {}",
            image.source,
            image.target,
            image.error.as_deref().unwrap_or_default()
        );
    }
    for m in &report.mapping_errors {
        tracing::error!("mapping {} failed: {}", m.label, m.error);
    }
    let requests: u64 = report.registries.values().map(|r| r.total_requests).sum();
    tracing::info!(
        "summary: {} mappings | {} synced, {} up to date, {} failed{} | {} uploaded, {} not uploaded (already there or mounted), {requests} requests, {:.1}s",
        labels.len(),
        report.count(Status::Synced),
        report.count(Status::Skipped) + report.count(Status::Planned),
        report.count(Status::Failed) + report.mapping_errors.len(),
        if report.interrupted {
            format!(", {} interrupted", report.count(Status::Interrupted))
        } else {
            String::new()
        },
        human_bytes(report.bytes_uploaded()),
        human_bytes(report.bytes_avoided()),
        report.duration().as_secs_f64()
    );
    for (registry, stats) in &report.registries {
        if stats.throttled == 0 && stats.retries == 0 && stats.ratelimit_remaining.is_none() {
            continue;
        }
        let paced: Vec<String> = stats
            .pacing
            .iter()
            .filter_map(|lane| {
                let rate = lane.rate_per_second?;
                Some(format!("{} at {rate:.1}/s", lane.groups.join("+")))
            })
            .collect();
        tracing::info!(
            "{registry}: {} throttled (429), {} retries{}{}",
            stats.throttled,
            stats.retries,
            if paced.is_empty() {
                String::new()
            } else {
                format!(", paced {}", paced.join(", "))
            },
            stats
                .ratelimit_remaining
                .map(|n| format!(", {n} requests left in the registry's allowance"))
                .unwrap_or_default()
        );
    }
}

/// Bytes in SI units, as registries and the bench report them.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(1_637_000_000), "1.6 GB");
    }
}
