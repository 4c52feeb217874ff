//! Prometheus metrics of `ocync watch`, kept as plain numbers and written by hand in the text
//! exposition format 0.0.4 (`# HELP`, `# TYPE`, then `name{label="value"} number` lines): a
//! dozen families do not justify a metrics library.
//!
//! Counters add up the cycles' reports; gauges describe the latest cycle or configuration read.
//! Every series of a labelled family whose label values are known in advance (cycle results,
//! image statuses) is written from the start, at 0, so that `rate()` and `increase()` see the
//! first increment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use ocync_transport::{Status, SyncReport};

use crate::exit::Code;

/// The `Content-Type` of the exposition format.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the cycle duration histogram: a warm cycle of a small mirror takes
/// about a second, a first copy of a large one hours.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// How a cycle ended, as the `result` label of `ocync_cycles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum CycleResult {
    /// Exit code 0: everything synced or up to date.
    Success,
    /// Exit code 1: some images failed.
    Partial,
    /// Exit codes 2 and 4: nothing could be done.
    Failure,
    /// Exit code 5: a signal stopped the cycle with work left.
    Interrupted,
}

impl CycleResult {
    const ALL: [CycleResult; 4] = [
        CycleResult::Success,
        CycleResult::Partial,
        CycleResult::Failure,
        CycleResult::Interrupted,
    ];

    /// The result of a cycle that would have exited with `code`.
    pub(super) fn of(code: Code) -> CycleResult {
        match code {
            Code::Ok => CycleResult::Success,
            Code::Partial => CycleResult::Partial,
            Code::Interrupted => CycleResult::Interrupted,
            Code::Failure | Code::Auth | Code::Input => CycleResult::Failure,
        }
    }

    /// The label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CycleResult::Success => "success",
            CycleResult::Partial => "partial",
            CycleResult::Failure => "failure",
            CycleResult::Interrupted => "interrupted",
        }
    }
}

/// Image statuses counted by `ocync_images_total` (a watch never plans: it is never a dry run).
const STATUSES: [(Status, &str); 4] = [
    (Status::Synced, "synced"),
    (Status::Skipped, "skipped"),
    (Status::Failed, "failed"),
    (Status::Interrupted, "interrupted"),
];

/// Counters of one registry, added up over cycles.
#[derive(Debug, Clone, Default, PartialEq)]
struct RegistryCounters {
    requests: u64,
    throttled: u64,
    retries: u64,
    bytes_uploaded: u64,
    bytes_downloaded: u64,
    /// The last `ratelimit-remaining` the registry sent (Docker Hub), if any.
    ratelimit_remaining: Option<u64>,
}

/// Everything `/metrics` reports.
#[derive(Debug, Clone)]
pub(super) struct Metrics {
    version: &'static str,
    cycles: BTreeMap<CycleResult, u64>,
    running: bool,
    last_duration: Option<Duration>,
    duration_buckets: [u64; DURATION_BUCKETS.len()],
    /// Milliseconds, as reports count them: whole numbers add up without float noise.
    duration_sum_ms: u64,
    duration_count: u64,
    last_cycle: Option<SystemTime>,
    last_success: Option<SystemTime>,
    next_cycle: Option<SystemTime>,
    images: [u64; STATUSES.len()],
    mapping_errors: u64,
    bytes_uploaded: u64,
    bytes_avoided: u64,
    registries: BTreeMap<String, RegistryCounters>,
    config_reload_failures: u64,
    config_valid: bool,
    config_loaded: Option<SystemTime>,
}

impl Metrics {
    /// No cycle yet; `version` goes into `ocync_build_info`.
    pub(super) fn new(version: &'static str) -> Metrics {
        Metrics {
            version,
            cycles: CycleResult::ALL.iter().map(|r| (*r, 0)).collect(),
            running: false,
            last_duration: None,
            duration_buckets: [0; DURATION_BUCKETS.len()],
            duration_sum_ms: 0,
            duration_count: 0,
            last_cycle: None,
            last_success: None,
            next_cycle: None,
            images: [0; STATUSES.len()],
            mapping_errors: 0,
            bytes_uploaded: 0,
            bytes_avoided: 0,
            registries: BTreeMap::new(),
            config_reload_failures: 0,
            config_valid: false,
            config_loaded: None,
        }
    }

    /// A cycle started.
    pub(super) fn cycle_started(&mut self) {
        self.running = true;
        self.next_cycle = None;
    }

    /// A cycle ended at `ended` with `report` (its registry counters for this cycle alone) and
    /// exit code `code`.
    pub(super) fn cycle_finished(&mut self, report: &SyncReport, code: Code, ended: SystemTime) {
        self.running = false;
        *self.cycles.entry(CycleResult::of(code)).or_default() += 1;
        let duration = report.duration();
        self.last_duration = Some(duration);
        let seconds = duration.as_secs_f64();
        for (bucket, bound) in self.duration_buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.duration_sum_ms += report.duration_ms;
        self.duration_count += 1;
        self.last_cycle = Some(ended);
        if code == Code::Ok {
            self.last_success = Some(ended);
        }
        for (count, (status, _)) in self.images.iter_mut().zip(STATUSES) {
            *count += report.count(status) as u64;
        }
        self.mapping_errors += report.mapping_errors.len() as u64;
        self.bytes_uploaded += report.bytes_uploaded();
        self.bytes_avoided += report.bytes_avoided();
        for (registry, stats) in &report.registries {
            let counters = self.registries.entry(registry.clone()).or_default();
            counters.requests += stats.total_requests;
            counters.throttled += stats.throttled;
            counters.retries += stats.retries;
            counters.bytes_uploaded += stats.bytes_uploaded;
            counters.bytes_downloaded += stats.bytes_downloaded;
            if stats.ratelimit_remaining.is_some() {
                counters.ratelimit_remaining = stats.ratelimit_remaining;
            }
        }
    }

    /// When the next cycle is due.
    pub(super) fn next_cycle(&mut self, at: SystemTime) {
        self.next_cycle = Some(at);
    }

    /// The configuration file was read: it loaded (`loaded_at`: when, for a new configuration),
    /// or it did not (a failed reload).
    pub(super) fn config_read(&mut self, valid: bool, loaded_at: Option<SystemTime>) {
        self.config_valid = valid;
        if !valid {
            self.config_reload_failures += 1;
        }
        if let Some(at) = loaded_at {
            self.config_loaded = Some(at);
        }
    }

    /// The text exposition.
    pub(super) fn render(&self) -> String {
        let mut w = Writer::default();
        w.family("ocync_up", "gauge", "1 while ocync watch runs.");
        w.sample("ocync_up", &[], 1);
        w.family(
            "ocync_build_info",
            "gauge",
            "The running ocync's version, as a label; the value is always 1.",
        );
        w.sample("ocync_build_info", &[("version", self.version)], 1);

        w.family(
            "ocync_cycles_total",
            "counter",
            "Sync cycles finished, by result (success: exit code 0, partial: 1, failure: 2 or 4, interrupted: 5).",
        );
        for (result, count) in &self.cycles {
            w.sample("ocync_cycles_total", &[("result", result.as_str())], *count);
        }
        w.family(
            "ocync_cycle_in_progress",
            "gauge",
            "1 while a sync cycle runs, 0 while waiting for the next.",
        );
        w.sample("ocync_cycle_in_progress", &[], u64::from(self.running));
        w.family(
            "ocync_cycle_duration_seconds",
            "gauge",
            "Wall time of the last finished cycle (0 before the first).",
        );
        w.sample_f64(
            "ocync_cycle_duration_seconds",
            &[],
            self.last_duration.map_or(0.0, |d| d.as_secs_f64()),
        );
        w.family(
            "ocync_cycle_seconds",
            "histogram",
            "Wall time of every finished cycle.",
        );
        for (bound, count) in DURATION_BUCKETS.iter().zip(self.duration_buckets) {
            w.sample(
                "ocync_cycle_seconds_bucket",
                &[("le", &format_f64(*bound))],
                count,
            );
        }
        w.sample(
            "ocync_cycle_seconds_bucket",
            &[("le", "+Inf")],
            self.duration_count,
        );
        w.sample_f64(
            "ocync_cycle_seconds_sum",
            &[],
            self.duration_sum_ms as f64 / 1000.0,
        );
        w.sample("ocync_cycle_seconds_count", &[], self.duration_count);
        w.family(
            "ocync_last_cycle_timestamp_seconds",
            "gauge",
            "Unix time the last cycle finished, whatever its result (0: none yet).",
        );
        w.sample_f64(
            "ocync_last_cycle_timestamp_seconds",
            &[],
            unix(self.last_cycle),
        );
        w.family(
            "ocync_last_success_timestamp_seconds",
            "gauge",
            "Unix time the last fully successful cycle (exit code 0) finished (0: none yet).",
        );
        w.sample_f64(
            "ocync_last_success_timestamp_seconds",
            &[],
            unix(self.last_success),
        );
        w.family(
            "ocync_next_cycle_timestamp_seconds",
            "gauge",
            "Unix time the next cycle is due, jitter included (0 while a cycle runs).",
        );
        w.sample_f64(
            "ocync_next_cycle_timestamp_seconds",
            &[],
            unix(self.next_cycle),
        );

        w.family(
            "ocync_images_total",
            "counter",
            "Images (one source tag at one target) handled, by outcome, over all cycles.",
        );
        for (count, (_, status)) in self.images.iter().zip(STATUSES) {
            w.sample("ocync_images_total", &[("status", status)], *count);
        }
        w.family(
            "ocync_mapping_errors_total",
            "counter",
            "Mappings that failed as a whole (missing source repository, tag list error).",
        );
        w.sample("ocync_mapping_errors_total", &[], self.mapping_errors);
        w.family(
            "ocync_bytes_uploaded_total",
            "counter",
            "Blob bytes uploaded to targets, over all cycles.",
        );
        w.sample("ocync_bytes_uploaded_total", &[], self.bytes_uploaded);
        w.family(
            "ocync_bytes_avoided_total",
            "counter",
            "Blob bytes not uploaded because the target had them or mounted them, over all cycles.",
        );
        w.sample("ocync_bytes_avoided_total", &[], self.bytes_avoided);

        type Field = fn(&RegistryCounters) -> Option<u64>;
        let registry_families: [(&str, &str, &str, Field); 6] = [
            (
                "ocync_registry_requests_total",
                "counter",
                "HTTP requests sent to the registry (token requests included).",
                |c| Some(c.requests),
            ),
            (
                "ocync_registry_throttled_total",
                "counter",
                "429 Too Many Requests answers from the registry.",
                |c| Some(c.throttled),
            ),
            (
                "ocync_registry_retries_total",
                "counter",
                "Requests sent again after a transient failure.",
                |c| Some(c.retries),
            ),
            (
                "ocync_registry_bytes_uploaded_total",
                "counter",
                "Blob bytes sent to the registry.",
                |c| Some(c.bytes_uploaded),
            ),
            (
                "ocync_registry_bytes_downloaded_total",
                "counter",
                "Blob bytes received from the registry.",
                |c| Some(c.bytes_downloaded),
            ),
            (
                "ocync_registry_ratelimit_remaining",
                "gauge",
                "Requests left in the registry's allowance, as it last reported (Docker Hub's ratelimit-remaining).",
                |c| c.ratelimit_remaining,
            ),
        ];
        for (name, kind, help, field) in registry_families {
            w.family(name, kind, help);
            for (registry, counters) in &self.registries {
                if let Some(value) = field(counters) {
                    w.sample(name, &[("registry", registry)], value);
                }
            }
        }

        w.family(
            "ocync_config_reload_failures_total",
            "counter",
            "Reads of the configuration file that failed (the last good configuration was kept).",
        );
        w.sample(
            "ocync_config_reload_failures_total",
            &[],
            self.config_reload_failures,
        );
        w.family(
            "ocync_config_valid",
            "gauge",
            "1 when the latest read of the configuration file loaded, 0 when it did not.",
        );
        w.sample("ocync_config_valid", &[], u64::from(self.config_valid));
        w.family(
            "ocync_config_loaded_timestamp_seconds",
            "gauge",
            "Unix time the configuration in use was loaded.",
        );
        w.sample_f64(
            "ocync_config_loaded_timestamp_seconds",
            &[],
            unix(self.config_loaded),
        );
        w.out
    }
}

/// Seconds since the Unix epoch, 0 for never.
fn unix(time: Option<SystemTime>) -> f64 {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Builds the exposition text.
#[derive(Debug, Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.line(name, labels, &value.to_string());
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.line(name, labels, &format_f64(value));
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }
}

/// A label value: backslash, double quote and line feed are escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `# HELP` text: backslash and line feed are escaped (quotes are not, unlike labels).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus parses it (`+Inf`, `-Inf`, `NaN`; Rust writes `inf`).
fn format_f64(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line is a comment or `name{labels} value` with a number Prometheus reads; every
    /// family has HELP and TYPE before its samples.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
            };
            let name = series.split('{').next().expect("a name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                typed.iter().any(|t| name == t
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(t.as_str()))),
                "no TYPE before {line}"
            );
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate {line}"
            );
        }
        samples
    }

    /// A report as a cycle gets it. Image reports cannot be built outside the engine's crate
    /// (the integration tests count them); registry counters can.
    fn report(duration_ms: u64, registries: &[(&str, u64, u64, u64)]) -> SyncReport {
        let mut report = SyncReport::default();
        report.duration_ms = duration_ms;
        for (name, requests, throttled, retries) in registries {
            let mut stats = ocync_transport::RegistryStats::default();
            stats.total_requests = *requests;
            stats.throttled = *throttled;
            stats.retries = *retries;
            report.registries.insert((*name).to_owned(), stats);
        }
        report
    }

    #[test]
    fn empty_metrics_are_well_formed() {
        let m = Metrics::new("1.2.3");
        let text = m.render();
        let samples = parse(&text);
        assert_eq!(samples["ocync_up"], 1.0);
        assert_eq!(samples["ocync_build_info{version=\"1.2.3\"}"], 1.0);
        for result in ["success", "partial", "failure", "interrupted"] {
            assert_eq!(
                samples[&format!("ocync_cycles_total{{result=\"{result}\"}}")],
                0.0
            );
        }
        for status in ["synced", "skipped", "failed", "interrupted"] {
            assert_eq!(
                samples[&format!("ocync_images_total{{status=\"{status}\"}}")],
                0.0
            );
        }
        assert_eq!(samples["ocync_last_success_timestamp_seconds"], 0.0);
        assert_eq!(samples["ocync_cycle_seconds_bucket{le=\"+Inf\"}"], 0.0);
        assert!(text.contains("# TYPE ocync_cycles_total counter\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn cycles_add_up() {
        let mut m = Metrics::new("0.1.0");
        m.config_read(true, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(50)));
        m.cycle_started();
        assert!(parse(&m.render())["ocync_cycle_in_progress"] == 1.0);
        let first = report(2500, &[("registry.example:5000", 10, 2, 1)]);
        m.cycle_finished(
            &first,
            Code::Ok,
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        );
        m.next_cycle(SystemTime::UNIX_EPOCH + Duration::from_secs(400));
        m.cycle_started();
        let second = report(
            40_000,
            &[("registry.example:5000", 5, 0, 1), ("docker.io", 3, 0, 0)],
        );
        m.cycle_finished(
            &second,
            Code::Partial,
            SystemTime::UNIX_EPOCH + Duration::from_secs(500),
        );
        m.config_read(false, None);
        let s = parse(&m.render());
        assert_eq!(s["ocync_cycles_total{result=\"success\"}"], 1.0);
        assert_eq!(s["ocync_cycles_total{result=\"partial\"}"], 1.0);
        assert_eq!(s["ocync_cycle_in_progress"], 0.0);
        assert_eq!(s["ocync_cycle_duration_seconds"], 40.0);
        assert_eq!(s["ocync_cycle_seconds_sum"], 42.5);
        assert_eq!(s["ocync_cycle_seconds_count"], 2.0);
        assert_eq!(s["ocync_cycle_seconds_bucket{le=\"1\"}"], 0.0);
        assert_eq!(s["ocync_cycle_seconds_bucket{le=\"5\"}"], 1.0);
        assert_eq!(s["ocync_cycle_seconds_bucket{le=\"60\"}"], 2.0);
        assert_eq!(s["ocync_cycle_seconds_bucket{le=\"+Inf\"}"], 2.0);
        assert_eq!(s["ocync_last_success_timestamp_seconds"], 100.0);
        assert_eq!(s["ocync_last_cycle_timestamp_seconds"], 500.0);
        assert_eq!(
            s["ocync_next_cycle_timestamp_seconds"], 0.0,
            "cleared when a cycle starts"
        );
        assert_eq!(s["ocync_config_valid"], 0.0);
        assert_eq!(s["ocync_config_reload_failures_total"], 1.0);
        assert_eq!(s["ocync_config_loaded_timestamp_seconds"], 50.0);
        assert_eq!(
            s["ocync_registry_requests_total{registry=\"registry.example:5000\"}"],
            15.0
        );
        assert_eq!(
            s["ocync_registry_throttled_total{registry=\"registry.example:5000\"}"],
            2.0
        );
        assert_eq!(
            s["ocync_registry_retries_total{registry=\"registry.example:5000\"}"],
            2.0
        );
        assert_eq!(
            s["ocync_registry_requests_total{registry=\"docker.io\"}"],
            3.0
        );
        assert!(
            !s.keys()
                .any(|k| k.starts_with("ocync_registry_ratelimit_remaining")),
            "no allowance reported, no series"
        );
        m.config_read(true, None);
        let s = parse(&m.render());
        assert_eq!(s["ocync_config_valid"], 1.0);
        assert_eq!(s["ocync_config_reload_failures_total"], 1.0);
    }

    #[test]
    fn results_from_exit_codes() {
        assert_eq!(CycleResult::of(Code::Ok), CycleResult::Success);
        assert_eq!(CycleResult::of(Code::Partial), CycleResult::Partial);
        assert_eq!(CycleResult::of(Code::Failure), CycleResult::Failure);
        assert_eq!(CycleResult::of(Code::Auth), CycleResult::Failure);
        assert_eq!(CycleResult::of(Code::Interrupted), CycleResult::Interrupted);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        assert_eq!(
            escape_label("registry.example:5000"),
            "registry.example:5000"
        );
        assert_eq!(escape_help("a \\ \"q\"\nb"), "a \\\\ \"q\"\\nb");
        let mut w = Writer::default();
        w.sample("x", &[("registry", "we\"ird\\\nname"), ("b", "2")], 3);
        assert_eq!(w.out, "x{registry=\"we\\\"ird\\\\\\nname\",b=\"2\"} 3\n");
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        assert_eq!(format_f64(0.0), "0");
        assert_eq!(format_f64(1.5), "1.5");
        assert_eq!(format_f64(1_700_000_000.25), "1700000000.25");
        assert_eq!(format_f64(f64::INFINITY), "+Inf");
        assert_eq!(format_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_f64(f64::NAN), "NaN");
    }
}
