//! When `ocync watch` starts its cycles: a fixed pause after each cycle (`--interval`) or the
//! next time of a cron schedule after it (`--schedule`, UTC), plus a random jitter.
//!
//! Everything here is a pure function of the times it is given, so the rules are tested with
//! fixed times; only [`wait_until`] waits, and it takes its clock as an argument so the loop can
//! be tested on tokio's paused clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tokio::sync::watch;

use crate::exit::InputError;

/// The longest single sleep while waiting for a start time: the wall clock is read again after
/// each, so a clock step (NTP, a resumed VM) moves the start with it instead of leaving a
/// monotonic sleep computed from the old time.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How cycles follow each other.
#[derive(Debug, Clone)]
pub(super) enum Schedule {
    /// This long from the end of one cycle to the start of the next.
    Interval(Duration),
    /// At the next time of the expression (UTC) after the end of the previous cycle.
    Cron {
        /// The expression as given, for messages.
        expression: String,
        /// The parsed expression.
        cron: Box<Cron>,
    },
}

impl Schedule {
    /// A pause of `seconds` between cycles.
    pub(super) fn interval(seconds: u64) -> Schedule {
        Schedule::Interval(Duration::from_secs(seconds))
    }

    /// A 5-field cron expression (`minute hour day-of-month month day-of-week`, UTC). Fails
    /// when the expression does not parse, or never fires after `now`.
    pub(super) fn cron(expression: &str, now: DateTime<Utc>) -> Result<Schedule, InputError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| {
                let why = lowercase_first(e.to_string().trim_end_matches('.'));
                InputError(format!(
                    "--schedule '{expression}': {why}; give 5 fields (minute hour day-of-month month day-of-week, in UTC), e.g. '*/15 * * * *' or '0 3 * * MON-FRI'"
                ))
            })?;
        let schedule = Schedule::Cron {
            expression: expression.to_owned(),
            cron: Box::new(cron),
        };
        if schedule.next_start(now).is_none() {
            return Err(InputError(format!(
                "--schedule '{expression}' never fires: no date matches all its fields; check the day of month against the month"
            )));
        }
        Ok(schedule)
    }

    /// When the cycle after one that ended at `ended` starts, before jitter; `None` when a
    /// cron expression has no later time.
    pub(super) fn next_start(&self, ended: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(pause) => {
                ended.checked_add_signed(chrono::Duration::from_std(*pause).ok()?)
            }
            // Strictly after the end: a cycle that ended exactly on a fire time does not start
            // again at once.
            Schedule::Cron { cron, .. } => cron.find_next_occurrence(&ended, false).ok(),
        }
    }

    /// The usual gap between two cycle starts after `now`: the interval, or the distance
    /// between the next two times of the cron expression.
    pub(super) fn period(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Interval(pause) => *pause,
            Schedule::Cron { .. } => self
                .next_start(now)
                .and_then(|first| Some((first, self.next_start(first)?)))
                .and_then(|(first, second)| (second - first).to_std().ok())
                .unwrap_or(Duration::ZERO),
        }
    }

    /// How the schedule reads in logs.
    pub(super) fn describe(&self) -> String {
        match self {
            Schedule::Interval(pause) => {
                format!("every {}s after the previous cycle", pause.as_secs())
            }
            Schedule::Cron { expression, .. } => format!("on the schedule '{expression}' (UTC)"),
        }
    }
}

/// How long a cycle may run before `/healthz` reports the process wedged: at least 6 hours,
/// and 10 schedule periods for slow schedules.
///
/// A cycle's length depends on how much changed, not on the schedule: the first cycle of a
/// large mirror copies everything and can take hours, and a registry that throttles can stretch
/// any cycle. Kubernetes restarts a pod whose liveness fails, which would kill exactly that
/// long first copy and start it again, so the bound is far above any healthy cycle. 6 hours
/// covers terabytes at typical registry throughput; a schedule that fires less often than every
/// 36 minutes (daily, weekly) is used for mirrors whose cycles may run longer still, so the bound
/// grows to 10 periods. A hung cycle (a connection that never answers, a deadlock) is still
/// caught within hours, instead of leaving a pod that looks alive and never syncs again.
pub(super) fn wedged_after(period: Duration) -> Duration {
    const FLOOR: Duration = Duration::from_secs(6 * 3600);
    period.saturating_mul(10).max(FLOOR)
}

/// A random delay of 0 to `max_seconds` seconds (inclusive), at millisecond resolution, so
/// replicas and shards started together spread their requests.
pub(super) fn jitter(max_seconds: u64, rng: &mut fastrand::Rng) -> Duration {
    if max_seconds == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rng.u64(0..=max_seconds.saturating_mul(1000)))
}

/// How waiting for a start time ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// The time came.
    Due,
    /// A shutdown signal came first.
    Stopped,
}

/// Wait until `now()` reaches `start`, or until `shutdown` turns true. The clock is read again
/// after every sleep of at most [`MAX_SLEEP`], so the start follows the wall clock.
pub(super) async fn wait_until(
    start: DateTime<Utc>,
    now: impl Fn() -> DateTime<Utc>,
    shutdown: &mut watch::Receiver<bool>,
) -> Waited {
    loop {
        if *shutdown.borrow_and_update() {
            return Waited::Stopped;
        }
        let Ok(left) = (start - now()).to_std() else {
            return Waited::Due;
        };
        if left.is_zero() {
            return Waited::Due;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The signal handler is gone (it never drops its sender while the process
                    // runs): nothing can stop the wait any more but time.
                    tokio::time::sleep(left).await;
                    return Waited::Due;
                }
            }
        }
    }
}

/// `Invalid pattern: ...` as a clause of a longer message.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a test time")
            .with_timezone(&Utc)
    }

    fn cron(expression: &str) -> Schedule {
        Schedule::cron(expression, at("2025-01-01T00:00:00Z")).expect("a valid expression")
    }

    #[test]
    fn interval_starts_after_the_end() {
        let s = Schedule::interval(300);
        assert_eq!(
            s.next_start(at("2025-03-01T10:00:30Z")),
            Some(at("2025-03-01T10:05:30Z"))
        );
        assert_eq!(
            s.period(at("2025-03-01T10:00:30Z")),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn cron_fires_at_the_next_time_strictly_after_the_end() {
        let s = cron("*/15 * * * *");
        assert_eq!(
            s.next_start(at("2025-03-01T10:07:12Z")),
            Some(at("2025-03-01T10:15:00Z"))
        );
        // A cycle that ends exactly on a fire time waits for the next one.
        assert_eq!(
            s.next_start(at("2025-03-01T10:15:00Z")),
            Some(at("2025-03-01T10:30:00Z"))
        );
        // A cycle that overran several fire times starts once, at the next.
        assert_eq!(
            s.next_start(at("2025-03-01T11:59:59Z")),
            Some(at("2025-03-01T12:00:00Z"))
        );
        assert_eq!(
            s.period(at("2025-03-01T10:07:12Z")),
            Duration::from_secs(900)
        );
    }

    #[test]
    fn cron_crosses_days_months_and_years_in_utc() {
        let daily = cron("30 3 * * *");
        assert_eq!(
            daily.next_start(at("2025-12-31T04:00:00Z")),
            Some(at("2026-01-01T03:30:00Z"))
        );
        assert_eq!(
            daily.period(at("2025-06-01T00:00:00Z")),
            Duration::from_secs(86_400)
        );
        // Leap day only.
        let leap = cron("0 0 29 2 *");
        assert_eq!(
            leap.next_start(at("2025-01-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn cron_names_ranges_and_weekdays_are_posix() {
        // 2025-03-01 is a Saturday: the next weekday 06:00 is Monday the 3rd.
        let weekdays = cron("0 6 * * MON-FRI");
        assert_eq!(
            weekdays.next_start(at("2025-03-01T12:00:00Z")),
            Some(at("2025-03-03T06:00:00Z"))
        );
        // 0 and 7 are Sunday.
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
            assert_eq!(
                cron(sunday).next_start(at("2025-03-01T12:00:00Z")),
                Some(at("2025-03-02T00:00:00Z")),
                "{sunday}"
            );
        }
        // Day of month and day of week both restricted: either matches (Vixie cron).
        let either = cron("0 0 15 * MON");
        assert_eq!(
            either.next_start(at("2025-03-01T12:00:00Z")),
            Some(at("2025-03-03T00:00:00Z"))
        );
        assert_eq!(
            either.next_start(at("2025-03-13T12:00:00Z")),
            Some(at("2025-03-15T00:00:00Z"))
        );
        assert_eq!(
            cron("@hourly").next_start(at("2025-03-01T12:00:01Z")),
            Some(at("2025-03-01T13:00:00Z"))
        );
    }

    #[test]
    fn invalid_cron_expressions_name_the_flag_and_the_expression() {
        let now = at("2025-01-01T00:00:00Z");
        for bad in [
            "",
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "every day",
        ] {
            let err = Schedule::cron(bad, now).expect_err(bad).0;
            assert!(
                err.starts_with(&format!("--schedule '{bad}': ")) && err.contains("5 fields"),
                "{bad}: {err}"
            );
        }
        let err = Schedule::cron("0 0 30 2 *", now)
            .expect_err("February 30th")
            .0;
        assert!(err.contains("never fires"), "{err}");
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = fastrand::Rng::with_seed(7);
        assert_eq!(jitter(0, &mut rng), Duration::ZERO);
        let samples: Vec<Duration> = (0..2000).map(|_| jitter(3, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(3)));
        // Spread over the range, not stuck at one end.
        assert!(samples.iter().any(|d| *d < Duration::from_millis(300)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(2700)));
        // No overflow on absurd values.
        assert!(jitter(u64::MAX, &mut rng) <= Duration::from_millis(u64::MAX));
    }

    #[test]
    fn wedged_bound() {
        assert_eq!(
            wedged_after(Duration::from_secs(300)),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            wedged_after(Duration::from_secs(86_400)),
            Duration::from_secs(864_000)
        );
        assert_eq!(wedged_after(Duration::MAX), Duration::MAX);
    }

    /// A clock that follows tokio's (paused) clock from a fixed wall time.
    fn paused_wall_clock(start: DateTime<Utc>) -> impl Fn() -> DateTime<Utc> {
        let origin = tokio::time::Instant::now();
        move || start + chrono::Duration::from_std(origin.elapsed()).expect("small")
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_the_start_time() {
        let start = at("2025-03-01T10:00:00Z");
        let (_tx, mut rx) = watch::channel(false);
        let began = tokio::time::Instant::now();
        let waited = wait_until(
            start + chrono::Duration::seconds(150),
            paused_wall_clock(start),
            &mut rx,
        )
        .await;
        assert_eq!(waited, Waited::Due);
        assert_eq!(began.elapsed(), Duration::from_secs(150));
        // A start time in the past is due at once.
        let began = tokio::time::Instant::now();
        let waited = wait_until(
            start,
            paused_wall_clock(start + chrono::Duration::hours(1)),
            &mut rx,
        )
        .await;
        assert_eq!(waited, Waited::Due);
        assert_eq!(began.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_ends_the_wait_at_once() {
        let start = at("2025-03-01T10:00:00Z");
        let (tx, mut rx) = watch::channel(false);
        let began = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(95)).await;
            let _ = tx.send(true);
            // Keep the sender: a dropped sender is not a signal.
            std::future::pending::<()>().await;
        });
        let waited = wait_until(
            start + chrono::Duration::hours(2),
            paused_wall_clock(start),
            &mut rx,
        )
        .await;
        assert_eq!(waited, Waited::Stopped);
        assert_eq!(began.elapsed(), Duration::from_secs(95));
        // Already signalled: no wait at all.
        let waited = wait_until(
            start + chrono::Duration::hours(2),
            paused_wall_clock(start),
            &mut rx,
        )
        .await;
        assert_eq!(waited, Waited::Stopped);
    }
}
