//! Retries: which failures are worth another attempt, how long to wait (`Retry-After` first,
//! else exponential backoff with full jitter), and a per-registry budget so a registry that is
//! down fails fast with a clear error instead of being retried forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Attempts per request, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 4;

/// Attempts per request when the registry answers 429: throttling is pacing, not failure, and
/// the limiter slows the lane down between attempts.
pub(crate) const MAX_THROTTLED_ATTEMPTS: u32 = 8;

/// First backoff step; doubles per attempt.
const BASE: Duration = Duration::from_millis(250);

/// Longest backoff, and the longest `Retry-After` believed: a registry asking for an hour is
/// better reported than waited for.
const CAP: Duration = Duration::from_secs(30);

/// Retries a registry may take per budget window before requests fail fast.
const BUDGET: f64 = 60.0;

/// The budget refills over this long.
const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// How long to wait before attempt `attempt` (1 = the first retry): `Retry-After` when the
/// registry sent one (capped), else a random delay in `[0, min(CAP, BASE * 2^attempt))` (full
/// jitter: many clients retrying at once spread out instead of hitting the registry together).
pub(crate) fn delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after.min(CAP);
    }
    let ceiling = BASE.saturating_mul(1 << attempt.min(16)).min(CAP);
    Duration::from_nanos(jitter(ceiling.as_nanos() as u64))
}

/// A pseudo-random number in `[0, below)` (xorshift over a global counter: good enough to
/// spread retries, no dependency needed).
fn jitter(below: u64) -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if below == 0 { 0 } else { x % below }
}

/// `Retry-After`: delay-seconds or an HTTP-date (IMF-fixdate, RFC 850, asctime), as RFC 9110
/// section 10.2.3 allows. A date in the past means now.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = parse_http_date(value)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let words: Vec<&str> = value
        .split([' ', ',', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT; RFC 850: Sunday, 06-Nov-94 08:49:37 GMT;
    // asctime: Sun Nov  6 08:49:37 1994.
    let (day, month, year, time) = match words.as_slice() {
        [_, day, month, year, time, "GMT"] => (*day, *month, *year, *time),
        [_, month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u64 + 1;
    let mut year: u64 = year.parse().ok()?;
    if year < 100 {
        // RFC 850's two-digit years: RFC 9110 says to read them as within 50 years of now.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// Retries a registry may still take: a token bucket of [`BUDGET`] refilled over
/// [`BUDGET_WINDOW`]. An empty bucket means the registry keeps failing, and further failures
/// are reported at once.
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<(f64, Instant)>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            state: Mutex::new((BUDGET, Instant::now())),
        }
    }
}

impl Budget {
    /// Take one retry; `false` when the budget is spent.
    pub(crate) fn take(&self) -> bool {
        let mut state = self.state.lock().expect("budget lock");
        let now = Instant::now();
        let refill =
            now.duration_since(state.1).as_secs_f64() / BUDGET_WINDOW.as_secs_f64() * BUDGET;
        state.0 = (state.0 + refill).min(BUDGET);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// The budget, for messages.
    pub(crate) fn size() -> (u32, Duration) {
        (BUDGET as u32, BUDGET_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
        for (value, expected) in [
            ("120", Some(120)),
            (" 3 ", Some(3)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(7)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(7)),
            ("Sun Nov  6 08:49:37 1994", Some(7)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("soon", None),
            ("Sun, 32 Nov 1994 08:49:37 GMT", None),
            ("-5", None),
        ] {
            assert_eq!(
                parse_retry_after(value, now).map(|d| d.as_secs()),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn dates_match_the_unix_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 11, 23), Some(20_780));
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_a_cap() {
        for attempt in 1..8 {
            let ceiling = BASE.saturating_mul(1 << attempt).min(CAP);
            for _ in 0..50 {
                assert!(delay(attempt, None) < ceiling, "attempt {attempt}");
            }
        }
        let spread: std::collections::HashSet<u128> =
            (0..20).map(|_| delay(3, None).as_millis()).collect();
        assert!(spread.len() > 5, "jittered: {spread:?}");
        assert_eq!(
            delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            delay(1, Some(Duration::from_secs(3600))),
            CAP,
            "an hour is not waited for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_runs_out_and_refills() {
        let budget = Budget::default();
        let taken = (0..100).filter(|_| budget.take()).count();
        assert_eq!(taken, BUDGET as usize);
        assert!(!budget.take());
        tokio::time::advance(BUDGET_WINDOW / 2).await;
        let refilled = (0..100).filter(|_| budget.take()).count();
        assert_eq!(refilled, BUDGET as usize / 2);
    }
}
