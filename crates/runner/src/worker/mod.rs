//! `provflow worker`: a long-running process that claims runnable work from the state store
//! and runs it with the engine's semantics (see ARCHITECTURE.md, "Claims, leases and
//! fencing", and "The worker").
//!
//! Threads, each with its own connections:
//! - **slots** (`--concurrency`): claim up to a batch of tasks (one per account), run their
//!   accounts under the claims ([`Engine::run_claims`]), give the claims back; idle, they
//!   sleep until woken by a commit anywhere (PostgreSQL `LISTEN`), a retry falling due, a
//!   lease expiring (a rescue), or the poll interval.
//! - **heartbeat**: every third of the lease, renews the lease of every claim a slot holds
//!   (a claim granted by an answer that never arrived is left to expire and be rescued); a
//!   claim missing from the answer was taken over, and its slot starts no call for it. Without a
//!   heartbeat that got through in time, no slot starts a call at all.
//! - **listener** (PostgreSQL only): waits for `provflow_work` notifications.
//!
//! Starting: the store is opened and the worker registered; a connection lost on the way is
//! tried again a few times (`register`), a store that cannot be reached is an error at once.
//!
//! Stopping (SIGTERM, SIGINT: [`Worker::run`]'s `stop` flag): slots claim nothing more and
//! start no call; calls in flight finish within the grace period; then the worker is marked
//! stopped, which gives back every claim but those of calls still in flight (left to the
//! lease rule).

pub mod log;
pub mod metrics;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as Monotonic};

use crate::clock::{Clock, Instant};
use crate::credentials;
use crate::engine::{Engine, EngineCache, EngineError, Event, Targets};
use crate::secret::SecretKey;
use crate::store::{self, Claim, Epoch, Fence, StateStore, StoreError, TaskClaimParams, TaskId, WorkerRecord};
use log::Log;
use metrics::Metrics;
use provflow_ir::TaskStatus;
use wake::Wake;

/// How a worker runs (the flags of `provflow worker`).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--id`, or `host:pid:start`.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Slots: how many batches of accounts run at once (each makes one call at a time).
    pub concurrency: u32,
    /// How long claims live without a heartbeat.
    pub lease: Duration,
    /// The longest an idle slot sleeps without being woken.
    pub poll: Duration,
    /// How many tasks (one per account) a slot claims at once.
    pub batch: usize,
    /// How long calls in flight may take to finish once stopping.
    pub grace: Duration,
}

/// What the worker opens its connections with, once per thread.
pub struct Setup {
    /// `--state`.
    pub state: String,
    pub key: Option<SecretKey>,
    /// `--target NAME=URL` overrides.
    pub targets: BTreeMap<String, String>,
    /// The directory relative target paths start from.
    pub base: PathBuf,
    pub clock: Arc<dyn Clock>,
}

impl Setup {
    fn store(&self) -> Result<Box<dyn StateStore + Send>, StoreError> {
        let clock = self.clock.clone();
        store::open(&self.state, self.key.clone(), Box::new(move || clock.now()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Metrics(String),
}

/// The claims the slots hold, and those the heartbeat found taken over.
#[derive(Default)]
struct Claims {
    /// Each active claim, with the moment its slot took it.
    active: HashMap<(TaskId, Epoch), Monotonic>,
    /// Active claims missing from a heartbeat's renewals: rescued by another worker.
    lost: std::collections::HashSet<(TaskId, Epoch)>,
}

/// What the worker's threads share.
struct Shared {
    config: Config,
    setup: Setup,
    log: Log,
    metrics: Arc<Metrics>,
    wake: Wake,
    /// Set by a signal: claim nothing more, start no call.
    stop: Arc<AtomicBool>,
    /// Set once the slots are done: the heartbeat and the listener end.
    done: AtomicBool,
    claims: Mutex<Claims>,
    /// Until when the last heartbeat that got through vouches for the leases.
    trusted_until: Mutex<Monotonic>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a call under `fence` may start now.
    fn may_call(&self, fence: Option<&Fence>) -> bool {
        if self.stopping() {
            return false;
        }
        let trusted = self.trusted_until.lock().is_ok_and(|t| Monotonic::now() < *t);
        let lost = fence.is_some_and(|f| self.claims.lock().map_or(true, |c| c.lost.contains(&(f.task, f.epoch))));
        trusted && !lost
    }

    /// Sleeps up to `d`, waking early when stopping.
    fn pause(&self, d: Duration) {
        let seen = self.wake.generation();
        self.wake.wait_past(seen, d);
    }

    fn event(&self, e: Event) {
        let m = &self.metrics;
        match e {
            Event::Called { target, elapsed, ok } => m.call(&target, elapsed, ok),
            Event::Moved { account, task, to, held } => {
                if held {
                    m.held.inc();
                } else if matches!(to, TaskStatus::Completed | TaskStatus::ManuallyCompleted) {
                    m.completed.inc();
                } else if to == TaskStatus::Rejected {
                    m.rejected.inc();
                }
                let fields = [("account", account.into()), ("task", task.into()), ("status", to.as_str().into())];
                if held {
                    self.log.warn("task_held", &fields);
                } else {
                    self.log.info("task_moved", &fields);
                }
            }
            Event::Interrupted { account, task, query, rerun } => {
                let action = if rerun { "runs again (idempotent)" } else { "held for a person (not idempotent)" };
                self.log.warn(
                    "call_interrupted",
                    &[
                        ("account", account.into()),
                        ("task", task.into()),
                        ("query", query.into()),
                        ("action", action.into()),
                    ],
                );
            }
            Event::Fenced { account, task, epoch, held_by } => {
                m.fenced.inc();
                self.log.warn(
                    "commit_fenced_off",
                    &[
                        ("account", account.into()),
                        ("task", task.into()),
                        ("epoch", epoch.into()),
                        ("held_by", held_by.unwrap_or_else(|| "nobody".into()).into()),
                        (
                            "why",
                            "the claim was taken over after this worker's lease expired; nothing was written".into(),
                        ),
                    ],
                );
            }
            Event::Abandoned { account, task } => {
                m.abandoned.inc();
                let why = if self.stopping() { "stopping" } else { "lease not renewed in time" };
                self.log.warn(
                    "call_not_started",
                    &[("account", account.into()), ("task", task.into()), ("why", why.into())],
                );
            }
        }
    }
}

/// How often opening the store and registering are tried when the connection is lost on the
/// way (about four seconds of waiting in all).
const START_ATTEMPTS: u32 = 5;

/// Opens the store and registers the worker. A connection lost on the way (a restarted server,
/// an administrator's terminate) is tried again a few times: registering again is this
/// worker's own registration, not another worker's. A store that cannot be reached or refuses
/// the login is an error at once, so that a wrong `--state` does not look like a hang.
fn register(
    setup: &Setup,
    record: &WorkerRecord,
    log: &Log,
    stop: &AtomicBool,
) -> Result<Box<dyn StateStore + Send>, WorkerError> {
    let mut backoff = Backoff::new();
    let mut attempt = 1;
    loop {
        let registered = setup.store().and_then(|mut st| st.worker_register(record).map(|()| st));
        match registered {
            Ok(st) => return Ok(st),
            Err(e @ StoreError::Postgres(_)) if attempt < START_ATTEMPTS && !stop.load(Ordering::Relaxed) => {
                log.error(
                    "store_error",
                    &[("phase", "start".into()), ("attempt", attempt.into()), ("error", e.to_string().into())],
                );
                std::thread::sleep(backoff.next());
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A running worker.
pub struct Worker;

impl Worker {
    /// Registers the worker, runs it until `stop` is set, drains, and marks it stopped.
    pub fn run(
        config: Config,
        setup: Setup,
        log: Log,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Result<(), WorkerError> {
        let now = setup.clock.now();
        let record = WorkerRecord {
            id: config.id.clone(),
            host: config.host.clone(),
            pid: config.pid,
            started_at: now,
            heartbeat_at: now,
            lease: config.lease,
            concurrency: config.concurrency,
            stopped_at: None,
        };
        let mut store = register(&setup, &record, &log, &stop)?;
        // A PostgreSQL store is listened to (the listener thread opens its own connection).
        let listens = matches!(store::location(&setup.state), Ok(store::Location::Postgres(_)));
        let trusted = Monotonic::now() + trust(config.lease);
        let shared = Arc::new(Shared {
            config,
            setup,
            log,
            metrics,
            wake: Wake::default(),
            stop,
            done: AtomicBool::new(false),
            claims: Mutex::new(Claims::default()),
            trusted_until: Mutex::new(trusted),
        });
        let c = &shared.config;
        shared.log.info(
            "worker_started",
            &[
                ("host", c.host.clone().into()),
                ("pid", c.pid.into()),
                ("state", credentials::redact(&shared.setup.state).into()),
                ("concurrency", c.concurrency.into()),
                ("lease_seconds", c.lease.as_secs_f64().into()),
                ("poll_seconds", c.poll.as_secs_f64().into()),
                ("wake", if listens { "listen/notify and polling" } else { "polling" }.into()),
            ],
        );
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name).spawn(f);
        let s = shared.clone();
        let heartbeat = spawn("heartbeat".into(), Box::new(move || heartbeat(&s)))
            .map_err(|e| WorkerError::Metrics(format!("cannot start the heartbeat thread: {e}")))?;
        let listener = if listens {
            let s = shared.clone();
            Some(
                spawn("listener".into(), Box::new(move || listen(&s)))
                    .map_err(|e| WorkerError::Metrics(format!("cannot start the listener thread: {e}")))?,
            )
        } else {
            None
        };
        for n in 0..shared.config.concurrency.max(1) {
            let s = shared.clone();
            let t = spawn(format!("slot-{n}"), Box::new(move || slot(&s, n)))
                .map_err(|e| WorkerError::Metrics(format!("cannot start slot {n}: {e}")))?;
            threads.push(t);
        }
        // Wait for a signal (or every slot ending, which only a fatal error does).
        while !shared.stopping() && threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        shared.stop.store(true, Ordering::Relaxed);
        shared.wake.notify();
        let in_flight = shared.claims.lock().map(|c| c.active.len()).unwrap_or(0);
        shared.log.info(
            "worker_stopping",
            &[("claims_held", in_flight.into()), ("grace_seconds", shared.config.grace.as_secs_f64().into())],
        );
        let deadline = Monotonic::now() + shared.config.grace;
        while threads.iter().any(|t| !t.is_finished()) && Monotonic::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let unfinished = threads.iter().filter(|t| !t.is_finished()).count();
        for t in threads.into_iter().filter(|t| t.is_finished()) {
            let _ = t.join();
        }
        if unfinished > 0 {
            shared.log.warn(
                "grace_period_over",
                &[
                    ("slots_still_calling", unfinished.into()),
                    ("what_happens", "their claims are rescued by other workers once the lease expires".into()),
                ],
            );
        }
        shared.done.store(true, Ordering::Relaxed);
        let _ = heartbeat.join();
        if let Some(l) = listener {
            let _ = l.join();
        }
        // The first connection may have died long ago (a restart of the server, a killed
        // backend): one more try on a new one.
        let now = shared.setup.clock.now();
        let released = store
            .worker_stop(&shared.config.id, now)
            .or_else(|_| shared.setup.store().and_then(|mut fresh| fresh.worker_stop(&shared.config.id, now)));
        match released {
            Ok(n) => shared.log.info("worker_stopped", &[("claims_released", n.into())]),
            Err(e) => shared.log.error(
                "worker_stopped",
                &[("error", e.to_string().into()), ("what_happens", "its claims expire with the lease".into())],
            ),
        }
        Ok(())
    }
}

/// How long a heartbeat vouches for the leases: the lease, less a margin for the time a
/// heartbeat takes and for clocks that drift apart.
fn trust(lease: Duration) -> Duration {
    lease.saturating_sub((lease / 5).max(Duration::from_millis(500)))
}

/// Doubling waits after failures, up to 30 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::ZERO)
    }
    fn next(&mut self) -> Duration {
        self.0 = (self.0 * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
        self.0
    }
    fn reset(&mut self) {
        self.0 = Duration::ZERO;
    }
}

/// One slot: claims, runs, gives back; sleeps while there is nothing to claim.
fn slot(s: &Shared, n: u32) {
    let mut store: Option<Box<dyn StateStore + Send>> = None;
    let mut targets = Targets::new(s.setup.targets.clone(), s.setup.base.clone());
    let mut backoff = Backoff::new();
    let mut cache = EngineCache::default();
    // Claims a failed connection could not give back: given back on the next one.
    let mut unreleased: Vec<(TaskId, Epoch)> = Vec::new();
    while !s.stopping() {
        let st = match store.as_mut() {
            Some(st) => st,
            None => match s.setup.store() {
                Ok(st) => store.insert(st),
                Err(e) => {
                    s.metrics.store_errors.inc();
                    s.log.error("store_unreachable", &[("slot", n.into()), ("error", e.to_string().into())]);
                    s.pause(backoff.next());
                    continue;
                }
            },
        };
        if !unreleased.is_empty() && st.task_claim_release(&unreleased).is_ok() {
            forget(s, &unreleased);
            unreleased.clear();
        }
        let seen = s.wake.generation();
        let now = s.setup.clock.now();
        let params = TaskClaimParams { worker: &s.config.id, now, lease: s.config.lease, limit: s.config.batch.max(1) };
        let claims = match st.task_claim(&params) {
            Ok(c) => c,
            Err(e) => {
                s.metrics.store_errors.inc();
                s.log.error("claim_failed", &[("slot", n.into()), ("error", e.to_string().into())]);
                if matches!(e, StoreError::UnknownWorker(_)) {
                    // Marked stopped by someone else: this worker must not go on.
                    s.stop.store(true, Ordering::Relaxed);
                    break;
                }
                store = None;
                s.pause(backoff.next());
                continue;
            }
        };
        if claims.is_empty() {
            let wait = idle_wait(&**st, now, s.config.poll);
            s.wake.wait_past(seen, wait);
            continue;
        }
        took(s, n, &claims);
        let result = {
            let may_call = |f: Option<&Fence>| s.may_call(f);
            let mut events = |e: Event| s.event(e);
            let clock = &*s.setup.clock;
            let mut engine = Engine::new(&mut **st, &mut targets, clock);
            // The audit trail names the worker that committed each transition.
            engine.actor = format!("worker:{}", s.config.id);
            engine.hold_claims_as(&s.config.id);
            engine.batch = s.config.batch.max(1);
            engine.events = Some(&mut events);
            engine.may_call = Some(&may_call);
            engine.adopt_cache(std::mem::take(&mut cache));
            let result = engine.run_claims(&claims);
            cache = engine.into_cache();
            result
        };
        let held: Vec<(TaskId, Epoch)> = claims.iter().map(|c| (c.task, c.epoch)).collect();
        match result {
            Ok(()) => {
                forget(s, &held);
                backoff.reset();
            }
            Err(EngineError::TargetUnavailable { target, message }) => {
                forget(s, &held);
                let wait = backoff.next();
                s.log.warn(
                    "target_unavailable",
                    &[
                        ("target", target.into()),
                        ("error", message.into()),
                        ("retry_in_seconds", wait.as_secs_f64().into()),
                    ],
                );
                s.pause(wait);
            }
            Err(EngineError::Store(e)) => {
                // The claims may not have gone back: given back on the next connection.
                s.metrics.store_errors.inc();
                s.log.error("store_error", &[("slot", n.into()), ("error", e.to_string().into())]);
                unreleased.extend(held);
                store = None;
                s.pause(backoff.next());
            }
            Err(e) => {
                forget(s, &held);
                s.log.error("run_failed", &[("slot", n.into()), ("error", e.to_string().into())]);
                s.pause(backoff.next());
            }
        }
    }
    if let (Some(st), false) = (store.as_mut(), unreleased.is_empty()) {
        let _ = st.task_claim_release(&unreleased);
    }
}

/// Records claims a slot took: active for the heartbeat, counted, logged.
fn took(s: &Shared, n: u32, claims: &[Claim]) {
    let at = Monotonic::now();
    if let Ok(mut c) = s.claims.lock() {
        for claim in claims {
            c.active.insert((claim.task, claim.epoch), at);
        }
    }
    s.metrics.claimed.inc_by(claims.len() as u64);
    for claim in claims.iter().filter(|c| c.rescued()) {
        s.metrics.rescued.inc();
        s.log.warn(
            "claim_rescued",
            &[
                ("account", claim.account.into()),
                ("task", claim.task.into()),
                ("epoch", claim.epoch.into()),
                ("from", claim.rescued_from.clone().unwrap_or_default().into()),
                ("calling", claim.calling.into()),
            ],
        );
    }
    s.log.info("claimed", &[("slot", n.into()), ("tasks", claims.len().into())]);
}

/// Drops claims given back (or lost) from the heartbeat's watch.
fn forget(s: &Shared, held: &[(TaskId, Epoch)]) {
    if let Ok(mut c) = s.claims.lock() {
        for h in held {
            c.active.remove(h);
            c.lost.remove(h);
        }
    }
}

/// How long an idle slot sleeps: until a retry falls due or a lease expires (a rescue to
/// make), at most `poll`. The store counts whole seconds: a little after the second.
fn idle_wait(st: &dyn StateStore, now: Instant, poll: Duration) -> Duration {
    match st.task_next_wake(now) {
        Ok(Some(at)) => {
            let secs = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
            poll.min(Duration::from_secs(secs) + Duration::from_millis(200))
        }
        _ => poll,
    }
}

/// The heartbeat thread: renews the leases every third of the lease.
fn heartbeat(s: &Shared) {
    let every = (s.config.lease / 3).max(Duration::from_millis(200));
    let mut store: Option<Box<dyn StateStore + Send>> = None;
    while !s.done.load(Ordering::Relaxed) {
        let started = Monotonic::now();
        let st = match store.as_mut() {
            Some(st) => Ok(st),
            None => s.setup.store().map(|st| store.insert(st)),
        };
        // Only the claims a slot works on are renewed (see `Queue::worker_heartbeat`).
        let held: Vec<TaskId> =
            s.claims.lock().map(|c| c.active.keys().map(|(task, _)| *task).collect()).unwrap_or_default();
        let beat = st.and_then(|st| st.worker_heartbeat(&s.config.id, s.setup.clock.now(), s.config.lease, &held));
        match beat {
            Ok(renewed) => {
                if let Ok(mut t) = s.trusted_until.lock() {
                    *t = started + trust(s.config.lease);
                }
                let renewed: std::collections::HashSet<(TaskId, Epoch)> =
                    renewed.iter().map(|c| (c.task, c.epoch)).collect();
                if let Ok(mut c) = s.claims.lock() {
                    let gone: Vec<(TaskId, Epoch)> = c
                        .active
                        .iter()
                        .filter(|(k, at)| **at < started && !renewed.contains(k))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in gone {
                        if c.lost.insert(k) {
                            s.log.warn(
                                "claim_lost",
                                &[
                                    ("task", k.0.into()),
                                    ("epoch", k.1.into()),
                                    (
                                        "what_happens",
                                        "taken over by another worker; this one starts no call for it".into(),
                                    ),
                                ],
                            );
                        }
                    }
                }
            }
            Err(e) => {
                s.metrics.lease_renewals_failed.inc();
                s.log.error("heartbeat_failed", &[("error", e.to_string().into())]);
                if matches!(e, StoreError::UnknownWorker(_)) {
                    s.stop.store(true, Ordering::Relaxed);
                }
                store = None;
            }
        }
        let elapsed = started.elapsed();
        let mut left = every.saturating_sub(elapsed);
        while !left.is_zero() && !s.done.load(Ordering::Relaxed) {
            let step = left.min(Duration::from_millis(100));
            std::thread::sleep(step);
            left = left.saturating_sub(step);
        }
    }
}

/// The listener thread (PostgreSQL): wakes the slots when work is committed anywhere.
fn listen(s: &Shared) {
    let mut backoff = Backoff::new();
    while !s.done.load(Ordering::Relaxed) {
        let mut listener = match store::work_listener(&s.setup.state) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                s.log.warn("listen_failed", &[("error", e.to_string().into()), ("fallback", "polling".into())]);
                std::thread::sleep(backoff.next());
                continue;
            }
        };
        backoff.reset();
        while !s.done.load(Ordering::Relaxed) {
            match listener.wait(Duration::from_millis(500)) {
                Ok(true) => s.wake.notify(),
                Ok(false) => {}
                Err(e) => {
                    s.log.warn("listen_lost", &[("error", e.to_string().into()), ("fallback", "polling".into())]);
                    // Work committed while the connection was down would go unseen.
                    s.wake.notify();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_ends_before_the_lease() {
        assert_eq!(trust(Duration::from_secs(30)), Duration::from_secs(24));
        assert_eq!(trust(Duration::from_secs(1)), Duration::from_millis(500));
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(250));
    }
}
