//! `ocync watch`: sync on an interval or a cron schedule, serving health and metrics.
//!
//! One process runs cycles until it is stopped. Each cycle reads the configuration file again:
//! an unchanged file reuses the previous plan, whose registry clients keep their rate limiter
//! state and token caches from cycle to cycle; a changed file is loaded anew; a file that no
//! longer loads is reported and the last good configuration runs instead (the first read has
//! nothing to fall back on and exits with code 3). Between cycles the process waits for the
//! next start ([`schedule`]); a SIGTERM or SIGINT while waiting exits at once (0), one during a
//! cycle lets the engine drain it, then exits (5 when work was left). [`health`] serves
//! `/healthz`, `/readyz` and `/metrics` ([`metrics`]) from the first moment.

mod health;
mod metrics;
mod schedule;

use std::io::Write as _;
use std::path::Path;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use ocync_transport::{SyncOptions, SyncPlan, SyncReport};
use tokio::sync::watch;

use crate::cli::WatchArgs;
use crate::config::{self, ConfigError};
use crate::exit::Code;
use crate::{progress, signals, sync};

use health::{Phase, Shared, State};
use metrics::{CycleResult, Metrics};
use schedule::{Schedule, Waited};

pub(crate) async fn run(args: WatchArgs, display: progress::Mode) -> anyhow::Result<Code> {
    let schedule = match &args.schedule {
        Some(expression) => Schedule::cron(expression, Utc::now())?,
        None => Schedule::interval(args.interval),
    };
    // Installed first, once for the whole process: every cycle watches the same receiver.
    let mut shutdown = signals::shutdown();

    let listener = health::bind(&args.health_bind, args.health_port).await?;
    let shared = Shared::new(State {
        phase: Phase::Starting,
        last: None,
        wedged_after: schedule::wedged_after(schedule.period(Utc::now())),
        metrics: Metrics::new(env!("CARGO_PKG_VERSION")),
    });
    let address = listener.local_addr()?;
    tokio::spawn(health::serve(listener, shared.clone()));
    tracing::info!("health and metrics on http://{address}");

    // The first read has no good configuration to fall back on: its errors end the process.
    let mut current = Loaded::read(&args.config, &args)?;
    current.config_warnings();
    shared
        .lock()
        .metrics
        .config_read(true, Some(current.loaded_at));
    tracing::info!(
        "watching {}: {} mappings, {}",
        args.config.display(),
        current.labels.len(),
        schedule.describe()
    );

    let mut rng = fastrand::Rng::new();
    let mut cycle: u64 = 0;
    loop {
        if *shutdown.borrow() {
            return Ok(Code::Ok);
        }
        cycle += 1;
        if cycle > 1 {
            current = reload(current, &args, &shared);
        }
        let report = run_cycle(cycle, &current, &shutdown, &shared, args.json, display).await;
        let code = sync::exit_code(&report);
        if report.interrupted {
            // The engine drained what was running; the rest is listed in the report and the
            // cache, for the next start of the process.
            tracing::warn!(
                "stopped by a signal during cycle {cycle}; unfinished work is listed above"
            );
            return Ok(Code::Interrupted);
        }
        if *shutdown.borrow() {
            return Ok(Code::Ok);
        }
        if args.cycles != 0 && cycle >= args.cycles {
            return Ok(code);
        }

        let ended = Utc::now();
        let Some(next) = schedule.next_start(ended) else {
            tracing::error!(
                "{}: no later time to start a cycle; stopping",
                schedule.describe()
            );
            return Ok(code);
        };
        let delay = schedule::jitter(args.jitter, &mut rng);
        let start = next + chrono::Duration::from_std(delay).unwrap_or_default();
        {
            let mut state = shared.lock();
            let wait = (start - ended).to_std().unwrap_or_default();
            state.phase = Phase::Waiting(Instant::now() + wait);
            state.metrics.next_cycle(SystemTime::from(start));
        }
        tracing::info!(
            "next cycle at {}",
            start.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        if schedule::wait_until(start, Utc::now, &mut shutdown).await == Waited::Stopped {
            tracing::info!("signal received while waiting for the next cycle; exiting");
            return Ok(Code::Ok);
        }
    }
}

/// A configuration that loaded, and what a cycle needs from it.
struct Loaded {
    /// The file's text, to tell an unchanged file from a changed one.
    text: String,
    /// Mappings and registry clients; clones share the clients.
    plan: SyncPlan,
    /// Options from the configuration and the command line (without the shutdown signal).
    options: SyncOptions,
    /// Mapping labels, for the summary.
    labels: Vec<String>,
    /// Warnings to log once per configuration.
    warnings: Vec<String>,
    /// When it was loaded.
    loaded_at: SystemTime,
}

impl Loaded {
    /// Read, load and prepare the configuration file.
    fn read(path: &Path, args: &WatchArgs) -> anyhow::Result<Loaded> {
        let text = read_text(path)?;
        Loaded::from_text(text, path, args)
    }

    fn from_text(text: String, path: &Path, args: &WatchArgs) -> anyhow::Result<Loaded> {
        let config = config::load_str(&text, path, |name| std::env::var(name).ok())?;
        let (plan, options) = sync::prepare(&config, &args.run)?;
        let labels = plan.mappings.iter().map(|m| m.label.clone()).collect();
        Ok(Loaded {
            text,
            plan,
            options,
            labels,
            warnings: config.warnings().iter().map(ToString::to_string).collect(),
            loaded_at: SystemTime::now(),
        })
    }

    fn config_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

/// The file's text; a read error reads like every other configuration error.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(
            &path.display().to_string(),
            format!("cannot read the configuration file: {e}"),
        )
    })
}

/// Read the configuration again before a cycle: the same text keeps the current plan (and its
/// clients' state), a new text that loads replaces it, and anything else keeps it with an error.
fn reload(current: Loaded, args: &WatchArgs, shared: &Shared) -> Loaded {
    let path = &args.config;
    let result = read_text(path)
        .map_err(anyhow::Error::new)
        .and_then(|text| {
            if text == current.text {
                Ok(None)
            } else {
                Loaded::from_text(text, path, args).map(Some)
            }
        });
    match result {
        Ok(None) => {
            shared.lock().metrics.config_read(true, None);
            current
        }
        Ok(Some(new)) => {
            tracing::info!(
                "configuration changed; reloaded {} ({} mappings)",
                path.display(),
                new.labels.len()
            );
            new.config_warnings();
            shared.lock().metrics.config_read(true, Some(new.loaded_at));
            new
        }
        Err(e) => {
            let since =
                DateTime::<Utc>::from(current.loaded_at).to_rfc3339_opts(SecondsFormat::Secs, true);
            tracing::error!(
                "the configuration no longer loads; keeping the last good configuration from {since} (the file is read again before every cycle): {e:#}"
            );
            shared.lock().metrics.config_read(false, None);
            current
        }
    }
}

/// One cycle: sync, print the report (`--json`), log the summary, update the state.
async fn run_cycle(
    cycle: u64,
    current: &Loaded,
    shutdown: &watch::Receiver<bool>,
    shared: &Shared,
    json: bool,
    display: progress::Mode,
) -> SyncReport {
    {
        let mut state = shared.lock();
        state.phase = Phase::Running(Instant::now());
        state.metrics.cycle_started();
    }
    tracing::info!("cycle {cycle} started");
    let options = current.options.clone().shutdown(shutdown.clone());
    // The report's registry counters are this cycle's alone, although the plan's clients live
    // from cycle to cycle: the engine counts from the start of each run.
    let report = progress::sync(current.plan.clone(), options, display).await;

    if json {
        print_line(&report);
    }
    sync::summarise(&report, &current.labels);
    let code = sync::exit_code(&report);
    tracing::info!(
        "cycle {cycle} finished: {} in {:.1}s",
        CycleResult::of(code).as_str(),
        report.duration().as_secs_f64()
    );
    let mut state = shared.lock();
    state.last = Some(code);
    state
        .metrics
        .cycle_finished(&report, code, SystemTime::now());
    report
}

/// One compact JSON line on stdout, flushed at once, so a consumer reads cycle by cycle.
fn print_line(report: &SyncReport) {
    let line = match serde_json::to_string(report) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!("cannot write the cycle's report as JSON: {e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!("cannot write the cycle's report to stdout: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_loop_is_send() {
        fn send<T: Send>(_: T) {}
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "ocync", "watch", "--config", "x.yaml",
        ])
        .expect("valid arguments");
        let crate::cli::Command::Watch(args) = cli.command else {
            panic!("not a watch command");
        };
        // Never polled: only the type is checked.
        send(run(args, progress::Mode::Off));
    }
}
