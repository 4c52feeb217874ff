//! The health and metrics HTTP server of `ocync watch`: `GET /healthz` (liveness), `GET /readyz`
//! (readiness) and `GET /metrics` (Prometheus). Other paths answer 404, other methods 405.
//!
//! The watch loop writes its progress into a [`State`] behind a mutex; the handlers only read
//! it. The lock is never held across an `.await`, so a slow scrape cannot stall a cycle.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::metrics::{self, Metrics};
use crate::exit::{Code, InputError};

/// What the watch loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before the first cycle.
    Starting,
    /// A cycle has been running since then.
    Running(Instant),
    /// Waiting for the next cycle, due then.
    Waiting(Instant),
}

/// What the server reports, written by the watch loop.
#[derive(Debug)]
pub(super) struct State {
    /// What the loop is doing.
    pub(super) phase: Phase,
    /// The exit code of the last finished cycle.
    pub(super) last: Option<Code>,
    /// How long a cycle may run, or the next start be overdue, before the process counts as
    /// wedged (see [`super::schedule::wedged_after`]).
    pub(super) wedged_after: Duration,
    /// The metrics.
    pub(super) metrics: Metrics,
}

/// The state shared by the loop and the server.
#[derive(Debug, Clone)]
pub(super) struct Shared(Arc<Mutex<State>>);

impl Shared {
    /// Shared `state`.
    pub(super) fn new(state: State) -> Shared {
        Shared(Arc::new(Mutex::new(state)))
    }

    /// The state, locked. A panic while it was held leaves plain numbers behind, still worth
    /// serving, so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Liveness: the loop is alive unless a cycle has run, or the next start has been overdue, for
/// longer than `wedged_after`. A failing cycle is not a liveness problem (a restart would not
/// fix a registry outage or a bad credential); a stuck one is.
pub(super) fn liveness(phase: Phase, now: Instant, wedged_after: Duration) -> Result<(), String> {
    match phase {
        Phase::Starting => Ok(()),
        Phase::Running(since) => {
            let running = now.saturating_duration_since(since);
            if running > wedged_after {
                Err(format!(
                    "the current cycle has run for {}s, more than the {}s a healthy cycle takes",
                    running.as_secs(),
                    wedged_after.as_secs()
                ))
            } else {
                Ok(())
            }
        }
        Phase::Waiting(due) => {
            let overdue = now.saturating_duration_since(due);
            if overdue > wedged_after {
                Err(format!(
                    "the next cycle is {}s overdue: the watch loop is stuck",
                    overdue.as_secs()
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Readiness: ready once a cycle has finished (the first one always runs with a valid
/// configuration; later invalid ones are replaced by the last good one), and as long as the last
/// cycle did some of its work (exit codes 0 and 1: partial failures are still ready).
///
/// A cycle that did nothing at all (2: every registry unreachable or every mapping failing, 4:
/// credentials refused) makes the pod not ready, without restarting it: `kubectl get pods` then
/// shows the mirror is not working, and a rollout of a version or a credential that cannot sync
/// stops at its first pod instead of replacing working ones. The next cycle that works makes it
/// ready again.
pub(super) fn readiness(last: Option<Code>) -> Result<(), String> {
    match last {
        None => Err("the first sync cycle has not finished yet".to_owned()),
        Some(Code::Ok | Code::Partial) => Ok(()),
        Some(Code::Auth) => {
            Err("the last cycle synced nothing: credentials were refused (exit code 4)".to_owned())
        }
        Some(Code::Interrupted) => Err("stopping: a signal interrupted the cycle".to_owned()),
        Some(code) => Err(format!(
            "the last cycle synced nothing (exit code {}); see the log",
            code as u8
        )),
    }
}

/// Listen on `bind:port`; a failure is an input error (exit code 3) naming the address and the
/// flags that choose it.
pub(super) async fn bind(bind: &str, port: u16) -> Result<TcpListener, InputError> {
    let shown = match bind.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{bind}:{port}"),
    };
    let result = match bind.parse::<IpAddr>() {
        Ok(ip) => TcpListener::bind(SocketAddr::new(ip, port)).await,
        // A host name (`localhost`): resolved by the system.
        Err(_) => TcpListener::bind((bind, port)).await,
    };
    result.map_err(|e| {
        InputError(format!(
            "cannot listen on {shown} for health and metrics: {e}; choose another --health-port (0: any free port) or --health-bind address"
        ))
    })
}

/// Serve until the process ends.
pub(super) async fn serve(listener: TcpListener, shared: Shared) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!("the health and metrics server stopped: {e}");
    }
}

/// The routes. `get` answers HEAD too, and 405 (with `Allow`) for other methods.
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: GET /healthz, /readyz or /metrics\n",
            )
        })
        .with_state(shared)
}

async fn healthz(Extract(shared): Extract<Shared>) -> Response {
    let verdict = {
        let state = shared.lock();
        liveness(state.phase, Instant::now(), state.wedged_after)
    };
    answer(verdict)
}

async fn readyz(Extract(shared): Extract<Shared>) -> Response {
    let verdict = readiness(shared.lock().last);
    answer(verdict)
}

async fn metrics(Extract(shared): Extract<Shared>) -> Response {
    let body = shared.lock().metrics.render();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

/// 200 `ok`, or 503 with the reason.
fn answer(verdict: Result<(), String>) -> Response {
    match verdict {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn alive_unless_a_cycle_or_a_wait_overruns() {
        let now = Instant::now() + 10 * HOUR;
        let bound = 6 * HOUR;
        assert!(liveness(Phase::Starting, now, bound).is_ok());
        assert!(liveness(Phase::Running(now - 5 * HOUR), now, bound).is_ok());
        assert!(liveness(Phase::Running(now - bound), now, bound).is_ok());
        let err = liveness(Phase::Running(now - 7 * HOUR), now, bound).unwrap_err();
        assert!(err.contains("25200s"), "{err}");
        // Waiting for a start in the future, or slightly late: alive.
        assert!(liveness(Phase::Waiting(now + HOUR), now, bound).is_ok());
        assert!(liveness(Phase::Waiting(now - HOUR), now, bound).is_ok());
        let err = liveness(Phase::Waiting(now - 7 * HOUR), now, bound).unwrap_err();
        assert!(err.contains("overdue"), "{err}");
        // A phase that started after `now` (clock read before the update) is not negative.
        assert!(liveness(Phase::Running(now + HOUR), now, bound).is_ok());
    }

    #[test]
    fn ready_after_a_cycle_that_did_some_work() {
        let err = readiness(None).unwrap_err();
        assert!(err.contains("first sync cycle"), "{err}");
        assert!(readiness(Some(Code::Ok)).is_ok());
        assert!(readiness(Some(Code::Partial)).is_ok());
        assert!(
            readiness(Some(Code::Failure))
                .unwrap_err()
                .contains("exit code 2")
        );
        assert!(
            readiness(Some(Code::Auth))
                .unwrap_err()
                .contains("credentials")
        );
        assert!(readiness(Some(Code::Interrupted)).is_err());
    }

    #[tokio::test]
    async fn bind_failures_name_the_address_and_the_flags() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind("127.0.0.1", port).await.unwrap_err().0;
        assert!(
            err.contains(&format!("127.0.0.1:{port}"))
                && err.contains("--health-port")
                && err.contains("--health-bind"),
            "{err}"
        );
        let err = bind("::1", port).await.map(|_| ()).err();
        // IPv6 may be missing in a sandbox; when it fails, the address is bracketed.
        if let Some(err) = err {
            assert!(err.0.contains("[::1]:"), "{}", err.0);
        }
        let free = bind("localhost", 0).await.unwrap();
        assert!(free.local_addr().unwrap().ip().is_loopback());
    }
}
