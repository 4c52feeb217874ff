//! Pacing of requests per registry and per action group, so a sync finishes under a registry's
//! quotas instead of fighting them.
//!
//! Every request to a registry passes one *lane* of that registry's [`Limiter`]. A lane serves
//! one or more [`ActionGroup`]s (ECR meters each API action apart; ACR meters reads and writes;
//! an unknown registry gets a lane per group, so a 429 on uploads never slows manifest reads).
//! A lane combines three controls:
//!
//! - an adaptive concurrency window (slow start until the first throttle, then AIMD:
//!   `+1/window` per success, halved on 429/503 at most once per epoch, between 1 and the
//!   registry's `max_concurrent`);
//! - a token bucket: the published quota where there is one (ECR's PutImage 10 TPS, ACR's
//!   ReadOps/WriteOps...), and otherwise one learnt from the first 429: the rate the registry
//!   was accepting when it said no, cut by [`BETA`], then grown back along CUBIC's curve while the
//!   registry keeps accepting: fast at first, flat near the throttled rate, then probing
//!   upwards, so throttling turns into a rare probe rather than a storm;
//! - a hold: after a 429 or 503 the lane sends nothing until `Retry-After` (or a short pause)
//!   has passed, so requests queued behind the throttled one do not collect 429s of their own.
//!
//! A registry-wide semaphore caps everything in flight at `max_concurrent`; it is taken after
//! the lane, so requests waiting on a throttled lane hold no registry-wide slot. A registry's
//! first seconds also ramp up (50 requests, then 50 a second doubling every second), so a cold
//! run does not open with a flood of `HEAD`s that an unpublished limit answers with 429s.
//! All timing is on tokio's clock, so tests drive it with a paused clock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::client::RequestKind;

/// Requests a lane may have in flight before it has seen any answer. The window then grows by
/// one per success (doubling every round trip, as TCP's slow start) until the first throttle.
/// Wide enough for the engine's concurrent blob transfers, which hold a slot for as long as an
/// upload streams.
const INITIAL_WINDOW: f64 = 16.0;

/// The opening window of manifest writes: small and quick requests that registries meter most
/// tightly (ECR's PutImage 10 TPS), so an unknown limit answers a narrow first volley with few
/// 429s while slow start still reaches full speed within a few round trips.
const INITIAL_MANIFEST_WRITE_WINDOW: f64 = 4.0;

/// After a throttle the window is not cut again for this long: the requests already in flight
/// answer 429 too, and one congestion event must halve the window once, not once per answer.
const EPOCH: Duration = Duration::from_secs(1);

/// How far below the throttled rate a learnt rate restarts.
const BETA: f64 = 0.7;

/// The slowest a learnt rate gets: one request every ten seconds.
const MIN_RATE: f64 = 0.1;

/// The share of the accepted rate a learnt rate levels off at (see `throttled`).
const PLATEAU: f64 = 0.8;

/// CUBIC's scaling constant, in requests per second per second cubed: how fast a learnt rate
/// grows away from the rate that was throttled.
const CUBIC_C: f64 = 0.1;

/// A learnt rate this many times the throttled rate paces nothing any more and is dropped.
const UNBOUND: f64 = 8.0;

/// The span over which the rate a lane's requests were accepted at is measured: the second
/// before the throttle, when the lane was sending at the rate the registry objected to (a
/// longer span would average in quieter times and learn too low a rate).
const RATE_SPAN: Duration = Duration::from_secs(1);

/// Successes remembered for measuring: a faster lane is measured over a shorter span.
const RATE_SAMPLES: usize = 8192;

/// The pause after a throttle that came without `Retry-After`.
const DEFAULT_HOLD: Duration = Duration::from_millis(500);

/// The longest hold believed: a registry asking for more is reported by the retry logic.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// A registry's first second carries at most this many requests at once and this many per
/// second more, doubling every second after ([`Limits::ramp`]): a cold run opens with hundreds
/// of `HEAD`s, and a registry with an unpublished limit would answer a flood with a volley of
/// 429s before any lane could learn from the first.
const RAMP_START: f64 = 50.0;

/// The ramp ends once it allows this many requests a second.
const RAMP_END: f64 = 3200.0;

/// The default registry-wide cap on requests in flight (`max_concurrent` in the config).
pub const DEFAULT_MAX_CONCURRENT: usize = 50;

/// The action groups that registries meter separately. Named after the distribution API; ECR's
/// API action for each is in its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ActionGroup {
    /// Manifest `HEAD`/`GET` and referrers lists (ECR `BatchGetImage`).
    ManifestRead,
    /// Manifest `PUT` (ECR `PutImage`).
    ManifestWrite,
    /// Blob `HEAD` (ECR `BatchCheckLayerAvailability`).
    BlobCheck,
    /// Blob `GET` (ECR `GetDownloadUrlForLayer`).
    BlobRead,
    /// Upload session start and cross-repository mounts (ECR `InitiateLayerUpload`).
    UploadStart,
    /// Upload chunk `PATCH` (ECR `UploadLayerPart`).
    UploadChunk,
    /// Upload completion `PUT` and session `DELETE` (ECR `CompleteLayerUpload`).
    UploadComplete,
    /// Tag list pages (ECR `ListImages`).
    TagList,
}

impl ActionGroup {
    /// Every group, in lane order.
    pub const ALL: [ActionGroup; 8] = [
        ActionGroup::ManifestRead,
        ActionGroup::ManifestWrite,
        ActionGroup::BlobCheck,
        ActionGroup::BlobRead,
        ActionGroup::UploadStart,
        ActionGroup::UploadChunk,
        ActionGroup::UploadComplete,
        ActionGroup::TagList,
    ];

    /// The group a request belongs to; `None` for requests no registry meters (the `/v2/`
    /// probe, token requests, which go to a token server).
    pub fn of(kind: RequestKind) -> Option<ActionGroup> {
        Some(match kind {
            RequestKind::Ping | RequestKind::Token => return None,
            RequestKind::ManifestHead | RequestKind::ManifestGet | RequestKind::Referrers => {
                ActionGroup::ManifestRead
            }
            RequestKind::ManifestPut => ActionGroup::ManifestWrite,
            RequestKind::BlobHead => ActionGroup::BlobCheck,
            RequestKind::BlobGet => ActionGroup::BlobRead,
            RequestKind::UploadStart | RequestKind::Mount => ActionGroup::UploadStart,
            RequestKind::UploadChunk => ActionGroup::UploadChunk,
            RequestKind::UploadComplete | RequestKind::UploadCancel => ActionGroup::UploadComplete,
            RequestKind::TagList => ActionGroup::TagList,
        })
    }

    /// The snake_case name used in the config (`rate_limits:`) and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionGroup::ManifestRead => "manifest_read",
            ActionGroup::ManifestWrite => "manifest_write",
            ActionGroup::BlobCheck => "blob_check",
            ActionGroup::BlobRead => "blob_read",
            ActionGroup::UploadStart => "upload_start",
            ActionGroup::UploadChunk => "upload_chunk",
            ActionGroup::UploadComplete => "upload_complete",
            ActionGroup::TagList => "tag_list",
        }
    }

    /// The group named `name` (as in [`ActionGroup::as_str`]).
    pub fn from_name(name: &str) -> Option<ActionGroup> {
        ActionGroup::ALL.into_iter().find(|g| g.as_str() == name)
    }

    fn index(self) -> usize {
        ActionGroup::ALL
            .iter()
            .position(|g| *g == self)
            .expect("every group is in ALL")
    }
}

impl fmt::Display for ActionGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token bucket's shape: a sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Rate {
        Rate {
            per_second,
            burst: burst.max(1),
        }
    }
}

/// Registries whose published quotas and metering ocync knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryKind {
    /// Any other OCI distribution registry (Quay, Chainguard, Harbor, distribution itself).
    Generic,
    /// Docker Hub: pull quotas per 6 hours, reported in `ratelimit-remaining`.
    DockerHub,
    /// GitHub Container Registry.
    Ghcr,
    /// Amazon ECR (private), quotas per API action.
    Ecr,
    /// Amazon ECR Public.
    EcrPublic,
    /// Azure Container Registry: ReadOps and WriteOps per minute.
    Acr,
    /// Google Artifact Registry and Container Registry.
    Gar,
}

impl RegistryKind {
    /// The kind of the registry at `host` (`host[:port]`, as in a reference).
    pub fn detect(host: &str) -> RegistryKind {
        let host = host.to_ascii_lowercase();
        let name = host.split(':').next().unwrap_or_default();
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| name.ends_with(s));
        if name.contains(".dkr.ecr.") && ends(&[".amazonaws.com", ".amazonaws.com.cn"]) {
            RegistryKind::Ecr
        } else if name == "public.ecr.aws" {
            RegistryKind::EcrPublic
        } else if ends(&[".azurecr.io", ".azurecr.cn", ".azurecr.us"]) {
            RegistryKind::Acr
        } else if name == "ghcr.io" {
            RegistryKind::Ghcr
        } else if matches!(
            name,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        ) {
            RegistryKind::DockerHub
        } else if name == "gcr.io" || ends(&[".gcr.io", "-docker.pkg.dev"]) {
            RegistryKind::Gar
        } else {
            RegistryKind::Generic
        }
    }
}

/// How a registry's requests are paced: which groups share a lane, each lane's token bucket,
/// and the registry-wide cap on requests in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// For each group (by [`ActionGroup::ALL`] index), the index of the group that leads its
    /// lane: groups with the same leader share window, bucket and hold.
    lane_of: [usize; 8],
    /// Token bucket per lane leader; `None` until a 429 teaches one.
    rates: [Option<Rate>; 8],
    max_concurrent: usize,
    ramp: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_kind(RegistryKind::Generic)
    }
}

impl Limits {
    /// The defaults for a kind of registry: its published quotas, about 20% under so a sync
    /// shares the account with other users, and its metering (which groups share a quota).
    pub fn for_kind(kind: RegistryKind) -> Limits {
        use ActionGroup::*;
        let mut limits = Limits {
            lane_of: std::array::from_fn(|i| i),
            rates: [None; 8],
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            ramp: true,
        };
        let reads = [ManifestRead, BlobCheck, BlobRead, TagList];
        let writes = [ManifestWrite, UploadStart, UploadChunk, UploadComplete];
        match kind {
            // Each API action has its own quota (per account and region): PutImage 10,
            // InitiateLayerUpload 100, UploadLayerPart 500, CompleteLayerUpload 100,
            // BatchCheckLayerAvailability 1,000, BatchGetImage 2,000, GetDownloadUrlForLayer
            // 3,000 per second.
            RegistryKind::Ecr => {
                limits.rates[ManifestWrite.index()] = Some(Rate::new(8.0, 10));
                limits.rates[UploadStart.index()] = Some(Rate::new(80.0, 20));
                limits.rates[UploadComplete.index()] = Some(Rate::new(80.0, 20));
                limits.rates[UploadChunk.index()] = Some(Rate::new(400.0, 50));
                limits.rates[BlobCheck.index()] = Some(Rate::new(800.0, 100));
                limits.rates[ManifestRead.index()] = Some(Rate::new(1600.0, 100));
                limits.rates[BlobRead.index()] = Some(Rate::new(2400.0, 100));
            }
            // ECR Public: 10 TPS for most actions, reads included; 260 for UploadLayerPart.
            RegistryKind::EcrPublic => {
                limits.share(&reads);
                limits.rates[ManifestRead.index()] = Some(Rate::new(8.0, 10));
                for group in [ManifestWrite, UploadStart, UploadComplete] {
                    limits.rates[group.index()] = Some(Rate::new(8.0, 10));
                }
                limits.rates[UploadChunk.index()] = Some(Rate::new(200.0, 30));
            }
            // ReadOps and WriteOps per minute, by SKU: Basic 1,000/100, Standard 3,000/500,
            // Premium 10,000/2,000. The SKU is not visible from the API: assume Standard, and
            // let a Premium registry's owner raise it in the config.
            RegistryKind::Acr => {
                limits.share(&reads);
                limits.share(&writes);
                limits.rates[ManifestRead.index()] = Some(Rate::new(40.0, 30));
                limits.rates[ManifestWrite.index()] = Some(Rate::new(6.5, 10));
            }
            // About 2,000 requests a minute per principal (measured by users; not published).
            RegistryKind::Ghcr => {
                limits.share(&ActionGroup::ALL);
                limits.rates[ManifestRead.index()] = Some(Rate::new(25.0, 20));
            }
            // Artifact Registry: 18,000 writes a minute per project and region... and 60,000
            // reads: one shared ceiling is simpler and generous enough.
            RegistryKind::Gar => {
                limits.share(&ActionGroup::ALL);
                limits.rates[ManifestRead.index()] = Some(Rate::new(240.0, 30));
            }
            // Docker Hub counts pulls per 6 hours (manifest GETs), which no bucket can pace;
            // its `ratelimit-remaining` is reported instead. Lanes stay apart, as for any
            // registry, and learn from 429s.
            RegistryKind::DockerHub | RegistryKind::Generic => {}
        }
        limits
    }

    /// Make `groups` share one lane (led by the first).
    fn share(&mut self, groups: &[ActionGroup]) {
        let leader = groups[0].index();
        for group in groups {
            self.lane_of[group.index()] = leader;
        }
    }

    /// Set the token bucket of the lane serving `group` (`None`: no fixed bucket, learn from
    /// 429s). For lanes shared by several groups this sets the shared bucket.
    pub fn rate(mut self, group: ActionGroup, rate: Option<Rate>) -> Limits {
        self.rates[self.lane_of[group.index()]] = rate;
        self
    }

    /// Cap requests in flight to the registry (all groups together) at `n` (at least 1); also
    /// the largest a lane's window grows.
    pub fn max_concurrent(mut self, n: usize) -> Limits {
        self.max_concurrent = n.max(1);
        self
    }

    /// Whether the registry's first seconds ramp up (on by default): 50 requests at once and
    /// 50 a second, doubling every second until the ramp stops mattering (a few seconds).
    pub fn ramp(mut self, on: bool) -> Limits {
        self.ramp = on;
        self
    }

    /// The token bucket of the lane serving `group`.
    pub fn rate_of(&self, group: ActionGroup) -> Option<Rate> {
        self.rates[self.lane_of[group.index()]]
    }

    /// Whether `a` and `b` share a lane (a 429 on one slows the other).
    pub fn shares_lane(&self, a: ActionGroup, b: ActionGroup) -> bool {
        self.lane_of[a.index()] == self.lane_of[b.index()]
    }

    /// The registry-wide cap on requests in flight.
    pub fn concurrency(&self) -> usize {
        self.max_concurrent
    }
}

/// The state of one lane at the end of a run, for reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaneStats {
    /// The groups the lane serves.
    pub groups: Vec<&'static str>,
    /// The concurrency window at the time of the snapshot.
    pub window: f64,
    /// The token bucket's rate, published or learnt; `None` when unpaced.
    pub rate_per_second: Option<f64>,
    /// Throttles (429/503) the lane reacted to: congestion events, not answers.
    pub throttle_events: u64,
    /// Time requests spent waiting for the lane, in milliseconds.
    pub waited_ms: u64,
}

/// One registry's lanes and registry-wide cap.
pub(crate) struct Limiter {
    lanes: Vec<Arc<Lane>>,
    /// `lane[i]` serves [`ActionGroup::ALL`]`[i]`.
    lane_of: [usize; 8],
    all: Arc<Semaphore>,
    ramp: Mutex<Option<Ramp>>,
}

/// The registry-wide ramp of its first seconds.
struct Ramp {
    started: Option<Instant>,
    /// A token bucket whose rate doubles every second from the first request on.
    bucket: Bucket,
}

impl Ramp {
    /// How long until the next request may go (zero: it goes, and takes its token); `None`
    /// once the ramp is over.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        let started = *self.started.get_or_insert(now);
        let rate = RAMP_START * 2f64.powf(now.saturating_duration_since(started).as_secs_f64());
        if rate >= RAMP_END {
            return None;
        }
        self.bucket.rate = rate;
        self.bucket.refill(now);
        let wait = self.bucket.wait();
        if wait.is_zero() {
            self.bucket.tokens -= 1.0;
        }
        Some(wait)
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

struct Lane {
    groups: Vec<&'static str>,
    state: Mutex<LaneState>,
    wake: Notify,
}

struct LaneState {
    in_flight: usize,
    window: f64,
    max_window: f64,
    /// No throttle seen yet: the window grows by one per success rather than `1/window`.
    slow_start: bool,
    /// No window cut before this instant.
    epoch_end: Option<Instant>,
    /// Nothing is sent before this instant.
    hold_until: Option<Instant>,
    bucket: Option<Bucket>,
    /// The published or configured rate: a learnt rate never grows past it.
    ceiling: Option<f64>,
    /// Successes within the last [`RATE_SPAN`]: the rate the registry accepted when it throttled.
    recent: VecDeque<Instant>,
    first_success: Option<Instant>,
    throttle_events: u64,
    waited: Duration,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// The rate the registry throttled at (learnt buckets only): growth slows near it.
    throttled_at: Option<f64>,
    /// When growth after the last throttle started (the end of its hold).
    grown: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            rate: rate.per_second.max(0.01),
            burst: f64::from(rate.burst),
            tokens: f64::from(rate.burst),
            refilled: now,
            throttled_at: None,
            grown: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
    }

    /// How long until a token is available (zero: take one now).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// A burst proportional to the rate: a quarter second's worth, at least one request.
fn learnt_burst(rate: f64) -> f64 {
    (rate / 4.0).floor().max(1.0)
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        let now = Instant::now();
        let max_window = limits.max_concurrent as f64;
        let mut leaders: Vec<usize> = Vec::new();
        let lane_of = limits.lane_of.map(|leader| {
            leaders
                .iter()
                .position(|l| *l == leader)
                .unwrap_or_else(|| {
                    leaders.push(leader);
                    leaders.len() - 1
                })
        });
        let lanes = leaders
            .iter()
            .enumerate()
            .map(|(lane, leader)| {
                let groups: Vec<ActionGroup> = ActionGroup::ALL
                    .into_iter()
                    .filter(|g| lane_of[g.index()] == lane)
                    .collect();
                let window = if groups == [ActionGroup::ManifestWrite] {
                    INITIAL_MANIFEST_WRITE_WINDOW
                } else {
                    INITIAL_WINDOW
                };
                let rate = limits.rates[*leader];
                Arc::new(Lane {
                    groups: groups.iter().map(|g| g.as_str()).collect(),
                    state: Mutex::new(LaneState {
                        in_flight: 0,
                        window: window.min(max_window),
                        max_window,
                        slow_start: true,
                        epoch_end: None,
                        hold_until: None,
                        bucket: rate.map(|r| Bucket::new(r, now)),
                        ceiling: rate.map(|r| r.per_second),
                        recent: VecDeque::new(),
                        first_success: None,
                        throttle_events: 0,
                        waited: Duration::ZERO,
                    }),
                    wake: Notify::new(),
                })
            })
            .collect();
        Limiter {
            lanes,
            lane_of,
            all: Arc::new(Semaphore::new(limits.max_concurrent)),
            ramp: Mutex::new(limits.ramp.then(|| Ramp {
                started: None,
                bucket: Bucket::new(Rate::new(RAMP_START, RAMP_START as u32), now),
            })),
        }
    }

    /// Wait until a request of `group` may be sent.
    pub(crate) async fn acquire(&self, group: ActionGroup) -> Permit {
        let lane = self.lanes[self.lane_of[group.index()]].clone();
        let started = Instant::now();
        loop {
            let notified = lane.wake.notified();
            tokio::pin!(notified);
            let wait = {
                let mut state = lane.state.lock().expect("lane lock");
                let now = Instant::now();
                match state.ready(now) {
                    Ready::Go => {
                        state.in_flight += 1;
                        if let Some(bucket) = &mut state.bucket {
                            bucket.tokens -= 1.0;
                        }
                        state.waited += now.saturating_duration_since(started);
                        break;
                    }
                    Ready::Sleep(d) => Some(d),
                    Ready::Full => {
                        notified.as_mut().enable();
                        None
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => notified.await,
            }
        }
        // The lane's slot is taken: from here on, a dropped future must give it back.
        let mut permit = Permit {
            lane,
            _all: None,
            outcome: Outcome::Neutral,
        };
        loop {
            let wait = {
                let mut ramp = self.ramp.lock().expect("ramp lock");
                match ramp.as_mut().map(|r| r.wait(Instant::now())) {
                    Some(Some(wait)) => wait,
                    Some(None) => {
                        *ramp = None;
                        Duration::ZERO
                    }
                    None => Duration::ZERO,
                }
            };
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        permit._all = Some(
            self.all
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
        );
        permit
    }

    pub(crate) fn stats(&self) -> Vec<LaneStats> {
        self.lanes
            .iter()
            .map(|lane| {
                let state = lane.state.lock().expect("lane lock");
                LaneStats {
                    groups: lane.groups.clone(),
                    window: (state.window * 100.0).round() / 100.0,
                    rate_per_second: state
                        .bucket
                        .as_ref()
                        .map(|b| (b.rate * 100.0).round() / 100.0),
                    throttle_events: state.throttle_events,
                    waited_ms: state.waited.as_millis() as u64,
                }
            })
            .collect()
    }
}

enum Ready {
    Go,
    Sleep(Duration),
    Full,
}

impl LaneState {
    fn ready(&mut self, now: Instant) -> Ready {
        if let Some(until) = self.hold_until {
            if until > now {
                return Ready::Sleep(until - now);
            }
            self.hold_until = None;
        }
        if self.in_flight as f64 >= self.window.floor().max(1.0) {
            return Ready::Full;
        }
        if let Some(bucket) = &mut self.bucket {
            bucket.refill(now);
            let wait = bucket.wait();
            if !wait.is_zero() {
                return Ready::Sleep(wait);
            }
        }
        Ready::Go
    }

    fn succeeded(&mut self, now: Instant) {
        self.first_success.get_or_insert(now);
        self.recent.push_back(now);
        while self.recent.len() > RATE_SAMPLES
            || self
                .recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > RATE_SPAN)
        {
            self.recent.pop_front();
        }
        let step = if self.slow_start {
            1.0
        } else {
            1.0 / self.window
        };
        self.window = (self.window + step).min(self.max_window);
        let Some(bucket) = &mut self.bucket else {
            return;
        };
        let Some(throttled_at) = bucket.throttled_at else {
            return;
        };
        // Grow back along CUBIC's curve (RFC 9438, as AWS SDKs' adaptive retry mode pace
        // their calls): quickly at first, flat around the rate that was throttled, then faster
        // again, probing whether the limit moved. The curve depends on time since the
        // throttle, not on the number of successes, so a lane that learnt too low a rate (it
        // was throttled for another lane's burst on a shared limit) escapes in seconds.
        let t = now.saturating_duration_since(bucket.grown).as_secs_f64();
        let k = (throttled_at * (1.0 - BETA) / CUBIC_C).cbrt();
        let rate = (CUBIC_C * (t - k).powi(3) + throttled_at).max(throttled_at * BETA);
        match self.ceiling {
            Some(ceiling) if rate >= ceiling => {
                // Back to the published quota.
                bucket.rate = ceiling;
                bucket.throttled_at = None;
            }
            None if rate >= UNBOUND * throttled_at => {
                // Far past anything the registry objected to: stop pacing.
                self.bucket = None;
                return;
            }
            _ => bucket.rate = rate,
        }
        bucket.burst = learnt_burst(bucket.rate);
    }

    /// Requests accepted per second over the last [`RATE_SPAN`], or since the lane's first
    /// success if that is more recent (but over at least a second: a burst in the first
    /// moments of a run is not a rate).
    fn accepted_rate(&self, now: Instant) -> f64 {
        let Some(first) = self.first_success else {
            return 0.0;
        };
        let oldest = match self.recent.front() {
            Some(front) if self.recent.len() == RATE_SAMPLES => *front,
            _ => first.max(now.checked_sub(RATE_SPAN).unwrap_or(first)),
        };
        let span = now
            .saturating_duration_since(oldest)
            .clamp(Duration::from_secs(1), RATE_SPAN);
        let count = self
            .recent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= span)
            .count();
        count as f64 / span.as_secs_f64()
    }

    /// A throttle: `rate_signal` for a 429 (the registry metering requests), not for a 503
    /// (a registry that is down or overloaded says nothing about a rate).
    fn throttled(&mut self, now: Instant, retry_after: Option<Duration>, rate_signal: bool) {
        let hold = retry_after.unwrap_or(DEFAULT_HOLD).min(MAX_HOLD);
        let until = now + hold;
        if self.hold_until.is_none_or(|h| h < until) {
            self.hold_until = Some(until);
        }
        if self.epoch_end.is_some_and(|end| now < end) {
            return;
        }
        self.epoch_end = Some(now + EPOCH.max(hold));
        self.throttle_events += 1;
        self.slow_start = false;
        self.window = (self.window / 2.0).max(1.0);
        if !rate_signal {
            return;
        }
        let accepted = self.accepted_rate(now);
        let current = self.bucket.as_ref().map(|b| b.rate);
        // The rate the registry said no at: what it accepted in the last second, less some of
        // the registry's burst allowance (ECR's and nginx's token buckets let a burst through
        // on top of the rate), so the curve levels off somewhat below it; never more than the
        // bucket's rate. With next to nothing accepted lately (the lane was held, or this was
        // its first request), a paced lane's rate was still too high: cut it; an unpaced lane
        // starts from one request a second, and the curve finds the real rate in seconds
        // (without a bucket, every hold would end in a volley of the whole window, which a
        // registry that allows no burst answers with another 429).
        let throttled_at = match (accepted >= 2.0, current) {
            (true, Some(current)) => (accepted * PLATEAU).min(current),
            (true, None) => accepted * PLATEAU,
            (false, Some(current)) => current,
            (false, None) => 1.0,
        };
        let rate = (throttled_at * BETA).max(MIN_RATE);
        let bucket = self.bucket.get_or_insert_with(|| {
            Bucket::new(
                Rate {
                    per_second: rate,
                    burst: 1,
                },
                now,
            )
        });
        bucket.refill(now);
        bucket.rate = rate;
        bucket.burst = learnt_burst(rate);
        bucket.tokens = bucket.tokens.min(bucket.burst);
        bucket.throttled_at = Some(throttled_at);
        bucket.grown = now + hold;
        tracing::debug!(
            rate,
            window = self.window,
            hold_ms = hold.as_millis() as u64,
            "throttled: pacing down"
        );
    }
}

/// The right to send one request; say how it went with [`Permit::success`] or
/// [`Permit::throttled`]. Dropped without either (a transport error, a cancelled request), it
/// frees its slot and changes nothing.
pub(crate) struct Permit {
    lane: Arc<Lane>,
    _all: Option<OwnedSemaphorePermit>,
    outcome: Outcome,
}

enum Outcome {
    Neutral,
    Success,
    Throttled(Option<Duration>),
    Unavailable(Option<Duration>),
}

impl Permit {
    /// The registry answered without throttling.
    pub(crate) fn success(mut self) {
        self.outcome = Outcome::Success;
    }

    /// The registry answered 429, maybe with `Retry-After`.
    pub(crate) fn throttled(mut self, retry_after: Option<Duration>) {
        self.outcome = Outcome::Throttled(retry_after);
    }

    /// The registry answered 503, maybe with `Retry-After`: back off, learn no rate.
    pub(crate) fn unavailable(mut self, retry_after: Option<Duration>) {
        self.outcome = Outcome::Unavailable(retry_after);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.lane.state.lock().expect("lane lock");
            state.in_flight -= 1;
            let now = Instant::now();
            match self.outcome {
                Outcome::Neutral => {}
                Outcome::Success => state.succeeded(now),
                Outcome::Throttled(after) => state.throttled(now, after, true),
                Outcome::Unavailable(after) => state.throttled(now, after, false),
            }
        }
        self.lane.wake.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter without the opening ramp, so tests see one mechanism at a time.
    fn limiter(limits: Limits) -> Arc<Limiter> {
        Arc::new(Limiter::new(&limits.ramp(false)))
    }

    #[test]
    fn detects_registry_kinds() {
        for (host, kind) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                RegistryKind::Ecr,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                RegistryKind::Ecr,
            ),
            ("public.ecr.aws", RegistryKind::EcrPublic),
            ("myreg.azurecr.io", RegistryKind::Acr),
            ("MyReg.AzureCR.us:443", RegistryKind::Acr),
            ("ghcr.io", RegistryKind::Ghcr),
            ("docker.io", RegistryKind::DockerHub),
            ("registry-1.docker.io", RegistryKind::DockerHub),
            ("europe-docker.pkg.dev", RegistryKind::Gar),
            ("gcr.io", RegistryKind::Gar),
            ("quay.io", RegistryKind::Generic),
            ("cgr.dev", RegistryKind::Generic),
            ("127.0.0.1:5000", RegistryKind::Generic),
            ("evil.azurecr.io.example.com", RegistryKind::Generic),
            ("dkr.ecr.example.com", RegistryKind::Generic),
        ] {
            assert_eq!(RegistryKind::detect(host), kind, "{host}");
        }
    }

    #[test]
    fn every_request_kind_maps_to_the_group_its_registry_meters() {
        assert_eq!(ActionGroup::of(RequestKind::Ping), None);
        assert_eq!(ActionGroup::of(RequestKind::Token), None);
        assert_eq!(
            ActionGroup::of(RequestKind::Mount),
            Some(ActionGroup::UploadStart)
        );
        assert_eq!(
            ActionGroup::of(RequestKind::Referrers),
            Some(ActionGroup::ManifestRead)
        );
        for group in ActionGroup::ALL {
            assert_eq!(ActionGroup::from_name(group.as_str()), Some(group));
        }
        assert_eq!(ActionGroup::from_name("manifest_writes"), None);
    }

    #[test]
    fn defaults_follow_published_quotas_and_metering() {
        let ecr = Limits::for_kind(RegistryKind::Ecr);
        assert_eq!(
            ecr.rate_of(ActionGroup::ManifestWrite),
            Some(Rate::new(8.0, 10))
        );
        assert!(!ecr.shares_lane(ActionGroup::UploadStart, ActionGroup::UploadComplete));
        let acr = Limits::for_kind(RegistryKind::Acr);
        assert!(acr.shares_lane(ActionGroup::ManifestRead, ActionGroup::BlobRead));
        assert!(acr.shares_lane(ActionGroup::ManifestWrite, ActionGroup::UploadChunk));
        assert!(!acr.shares_lane(ActionGroup::ManifestRead, ActionGroup::ManifestWrite));
        let generic = Limits::default();
        for a in ActionGroup::ALL {
            assert_eq!(generic.rate_of(a), None);
            for b in ActionGroup::ALL {
                assert_eq!(generic.shares_lane(a, b), a == b);
            }
        }
        // An override of a shared lane sets the shared bucket.
        let premium = acr.rate(ActionGroup::UploadChunk, Some(Rate::new(26.0, 10)));
        assert_eq!(
            premium.rate_of(ActionGroup::ManifestWrite),
            Some(Rate::new(26.0, 10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_paces_after_the_burst() {
        let limits = Limits::default().rate(ActionGroup::ManifestWrite, Some(Rate::new(10.0, 2)));
        let limiter = limiter(limits);
        let start = Instant::now();
        for _ in 0..12 {
            limiter.acquire(ActionGroup::ManifestWrite).await.success();
        }
        // Two at once, then ten more at 10/s.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn window_bounds_requests_in_flight() {
        let limiter = limiter(Limits::default().max_concurrent(3));
        let held: Vec<Permit> =
            futures::future::join_all((0..3).map(|_| limiter.acquire(ActionGroup::BlobRead))).await;
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(ActionGroup::BlobRead).await.success() }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !waiting.is_finished(),
            "a fourth request went past a window of 3"
        );
        drop(held);
        waiting.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn max_concurrent_caps_all_lanes_together() {
        let limiter = limiter(Limits::default().max_concurrent(2));
        let _a = limiter.acquire(ActionGroup::BlobRead).await;
        let _b = limiter.acquire(ActionGroup::ManifestRead).await;
        let third = tokio::time::timeout(
            Duration::from_secs(5),
            limiter.acquire(ActionGroup::TagList),
        )
        .await;
        assert!(third.is_err(), "a third request went past max_concurrent 2");
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_holds_for_retry_after_and_halves_once_per_epoch() {
        let limiter = limiter(Limits::default());
        for _ in 0..5 {
            limiter.acquire(ActionGroup::ManifestWrite).await.success();
        }
        // Slow start: one more per success.
        assert_eq!(
            limiter.stats()[1].window,
            INITIAL_MANIFEST_WRITE_WINDOW + 5.0
        );
        let permits: Vec<Permit> =
            futures::future::join_all((0..4).map(|_| limiter.acquire(ActionGroup::ManifestWrite)))
                .await;
        // Four answers of one congestion event: one cut, one hold of the longest Retry-After.
        for permit in permits {
            permit.throttled(Some(Duration::from_secs(2)));
        }
        let stats = &limiter.stats()[ActionGroup::ManifestWrite.index()];
        assert_eq!(stats.throttle_events, 1);
        assert_eq!(stats.window, (INITIAL_MANIFEST_WRITE_WINDOW + 5.0) / 2.0);
        let start = Instant::now();
        limiter.acquire(ActionGroup::ManifestWrite).await.success();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // Five accepted in the lane's first second: levelling off at 4/s without the burst
        // share, restarting at 70% of that.
        let stats = &limiter.stats()[ActionGroup::ManifestWrite.index()];
        assert_eq!(stats.rate_per_second, Some(2.8));
        // After the epoch, another throttle cuts again.
        tokio::time::sleep(EPOCH).await;
        limiter
            .acquire(ActionGroup::ManifestWrite)
            .await
            .throttled(None);
        assert_eq!(limiter.stats()[1].throttle_events, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_lane_does_not_slow_the_others() {
        let limiter = limiter(Limits::default());
        limiter
            .acquire(ActionGroup::UploadStart)
            .await
            .throttled(Some(Duration::from_secs(20)));
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire(ActionGroup::ManifestRead).await.success();
        }
        limiter.acquire(ActionGroup::UploadChunk).await.success();
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(ActionGroup::UploadStart).await.success();
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_lane_is_throttled_as_one() {
        let limiter = limiter(Limits::for_kind(RegistryKind::Acr));
        limiter
            .acquire(ActionGroup::UploadChunk)
            .await
            .throttled(Some(Duration::from_secs(3)));
        let start = Instant::now();
        limiter.acquire(ActionGroup::ManifestWrite).await.success();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_registrys_first_seconds_ramp_up() {
        let limiter = Arc::new(Limiter::new(&Limits::default()));
        let start = Instant::now();
        for _ in 0..50 {
            limiter.acquire(ActionGroup::BlobCheck).await.success();
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the opening burst");
        for _ in 0..75 {
            limiter.acquire(ActionGroup::ManifestRead).await.success();
        }
        // 50/s doubling each second: 75 more take a little over a second, whatever the lane.
        let first = start.elapsed();
        assert!(
            first > Duration::from_millis(900) && first < Duration::from_millis(1300),
            "{first:?}"
        );
        // After about six seconds the ramp is gone for good.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let later = Instant::now();
        for _ in 0..1000 {
            limiter.acquire(ActionGroup::BlobCheck).await.success();
        }
        assert_eq!(later.elapsed(), Duration::ZERO);
    }

    /// A server metering like nginx's `limit_req rate=10r/s burst=10 nodelay` (a leaky bucket
    /// of excess requests draining at the rate): the answer to a request arriving at `now`.
    struct Metered {
        rate: f64,
        burst: f64,
        excess: f64,
        last: Option<Instant>,
    }

    impl Metered {
        fn admit(&mut self, now: Instant) -> bool {
            let drained = self.last.map_or(0.0, |t| {
                now.saturating_duration_since(t).as_secs_f64() * self.rate
            });
            let excess = (self.excess - drained).max(0.0);
            self.last = Some(now);
            if excess + 1.0 > self.burst + 1.0 {
                self.excess = excess;
                false
            } else {
                self.excess = excess + 1.0;
                true
            }
        }
    }

    /// Twenty workers pushing as fast as they can through an unknown registry limited to 10
    /// requests a second: every request gets through, the registry answers few 429s, and the
    /// throughput settles near the limit instead of collapsing.
    #[tokio::test(start_paused = true)]
    async fn learns_an_unpublished_limit_with_few_throttles() {
        for retry_after in [Some(Duration::from_secs(1)), None] {
            let limiter = limiter(Limits::default());
            let server = Arc::new(Mutex::new(Metered {
                rate: 10.0,
                burst: 10.0,
                excess: 0.0,
                last: None,
            }));
            let throttled = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let later = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let start = Instant::now();
            let workers = (0..20).map(|_| {
                let (limiter, server, throttled, later) = (
                    limiter.clone(),
                    server.clone(),
                    throttled.clone(),
                    later.clone(),
                );
                async move {
                    for _ in 0..20 {
                        loop {
                            let permit = limiter.acquire(ActionGroup::ManifestWrite).await;
                            // 20 ms to the server, 20 ms back.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let admitted = server.lock().unwrap().admit(Instant::now());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if admitted {
                                permit.success();
                                break;
                            }
                            throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if start.elapsed() > Duration::from_secs(2) {
                                later.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            permit.throttled(retry_after);
                            // The client's own retry waits as the registry asked.
                            tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(300)))
                                .await;
                        }
                    }
                }
            });
            futures::future::join_all(workers).await;
            let elapsed = start.elapsed().as_secs_f64();
            let throttled = throttled.load(std::sync::atomic::Ordering::Relaxed);
            let later = later.load(std::sync::atomic::Ordering::Relaxed);
            // The first round trips overshoot an unknown limit by about one window (the
            // requests in flight when the first 429 comes back); after that the lane probes
            // the limit about once every 10 seconds while demand exceeds it.
            assert!(
                throttled <= 14 && later <= 6,
                "{throttled} throttled answers, {later} after the first 2 s ({retry_after:?})"
            );
            assert!(
                elapsed < 39.0 * 1.5,
                "{elapsed:.1}s for 400 requests ({retry_after:?})"
            );
        }
    }
}
