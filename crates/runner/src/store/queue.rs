//! The store half of `provflow worker`: workers, claims, leases and fenced commits, on both
//! stores (see ARCHITECTURE.md, "Claims, leases and fencing").
//!
//! A **claim** gives one worker one Pending task to run: the row records the worker
//! (`claimed_by`), a **lease epoch** (`lease_epoch`, incremented by every claim of that task and
//! never reset) and an expiry (`lease_expires_at`), renewed by the worker's heartbeat. An
//! account has at most one live claim: its tasks are decided together. A claim whose lease
//! expired may be taken by any worker: a **rescue**, reported with the worker it was taken
//! from and whether the task was `calling` (the engine then applies the idempotent-or-hold rule
//! of `resume`). Every outcome of a claimed task is committed **fenced** by (task, epoch,
//! worker): after a rescue the old holder cannot commit anything.
//!
//! Every method takes `now` from its caller and reads no clock.

use std::time::Duration;

use super::{AccountId, Step, StoreError, TaskId};
use crate::clock::Instant;

/// How many times a task was claimed, counting this claim: a claim is named by (task, epoch).
pub type Epoch = i64;

/// A worker process as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    /// The worker's `--id`, or `host:pid:start`.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: Instant,
    /// The last heartbeat; when registering, the instant of registration.
    pub heartbeat_at: Instant,
    /// How long its claims live without a heartbeat (default 30 s); whole seconds, rounded up.
    pub lease: Duration,
    /// How many tasks it runs at once.
    pub concurrency: u32,
    /// Set by [`Queue::worker_stop`]; a stopped worker claims and renews nothing.
    pub stopped_at: Option<Instant>,
}

impl WorkerRecord {
    /// Not stopped, and its last heartbeat younger than its lease.
    pub fn live(&self, now: Instant) -> bool {
        let lease = i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX);
        self.stopped_at.is_none() && self.heartbeat_at.saturating_add(lease) > now
    }
}

/// A claim a worker holds (see [`Queue::workers`], [`Queue::worker_heartbeat`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HeldClaim {
    pub task: TaskId,
    pub account: AccountId,
    pub epoch: Epoch,
    pub expires_at: Instant,
    /// A target call was started and its outcome is not recorded.
    pub calling: bool,
}

/// A worker and the claims it holds, for `provflow worker list`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    pub worker: WorkerRecord,
    pub claims: Vec<HeldClaim>,
}

/// What [`Queue::task_claim`] asks for.
#[derive(Debug, Clone, Copy)]
pub struct TaskClaimParams<'a> {
    /// A registered worker that is not stopped.
    pub worker: &'a str,
    pub now: Instant,
    /// The claims expire at `now + lease` unless renewed.
    pub lease: Duration,
    /// At most this many claims (one per account).
    pub limit: usize,
}

/// A task given to a worker by [`Queue::task_claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub task: TaskId,
    pub account: AccountId,
    pub epoch: Epoch,
    pub expires_at: Instant,
    /// The task was marked `calling`: a call may have happened. The engine re-runs it only if
    /// its query is `idempotent`, otherwise holds it for a person (as `resume` does).
    pub calling: bool,
    /// A rescue: the worker whose lease on the task expired.
    pub rescued_from: Option<String>,
}

impl Claim {
    /// Whether the claim was taken from a worker whose lease expired.
    pub fn rescued(&self) -> bool {
        self.rescued_from.is_some()
    }

    /// The fence of a commit of this claim's outcome by `worker`.
    pub fn fence(&self, worker: &str) -> Fence {
        Fence { task: self.task, epoch: self.epoch, worker: worker.to_string() }
    }
}

/// A claim a fenced commit must still hold (see [`Queue::commit_steps_fenced`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub task: TaskId,
    pub epoch: Epoch,
    pub worker: String,
}

/// Work queue operations, noun then verb. Both stores implement it; every [`super::StateStore`]
/// is one, so a worker needs only the store `--state` opens. Each method is one transaction.
pub trait Queue {
    /// Registers (or re-registers) a worker; `worker.heartbeat_at` is the instant of
    /// registration. Refused when a live worker (heartbeat younger than its lease, not stopped)
    /// has the same id ([`StoreError::WorkerIdInUse`]), and on SQLite when any other live worker
    /// exists ([`StoreError::WorkerAlreadyRunning`]). Claims left by an earlier process with
    /// the same id are released: that process is gone, and the new one does not know them.
    fn worker_register(&mut self, worker: &WorkerRecord) -> Result<(), StoreError>;
    /// Records a heartbeat at `now` and renews to `now + lease` the claims of `held` (the tasks
    /// the worker's slots work on) that the worker still holds; returns them. A claim missing
    /// from the answer was taken by a rescue (or released, or finished by someone else): the
    /// worker must drop that task. A claim of the worker's that is not in `held` is not renewed:
    /// it was granted by a claim whose answer never arrived (the connection died), nobody works
    /// on it, and once its lease expires any worker rescues it.
    fn worker_heartbeat(
        &mut self,
        id: &str,
        now: Instant,
        lease: Duration,
        held: &[TaskId],
    ) -> Result<Vec<HeldClaim>, StoreError>;
    /// Marks the worker stopped and releases its claims whose call has not started; how many
    /// were released. Claims of calls in flight stay until their lease expires and are rescued.
    fn worker_stop(&mut self, id: &str, now: Instant) -> Result<usize, StoreError>;
    /// Every worker ever registered, by id, with the claims each holds.
    fn workers(&self) -> Result<Vec<WorkerStatus>, StoreError>;

    /// Claims up to `limit` runnable tasks for the worker: Pending, not held, due (`due_at`
    /// unset or not after `now`), unclaimed or with an expired lease, at most one per account
    /// and none of an account that has a live claim. Each claim increments the task's epoch.
    fn task_claim(&mut self, params: &TaskClaimParams<'_>) -> Result<Vec<Claim>, StoreError>;
    /// Gives claims back, in one transaction; how many of the (task, epoch) pairs were still
    /// claimed (a claim taken over by a rescue has another epoch and stays).
    fn task_claim_release(&mut self, held: &[(TaskId, Epoch)]) -> Result<usize, StoreError>;
    /// [`super::StateStore::commit_steps`], only if every fenced task is still claimed with
    /// that epoch by that worker: checked inside the commit's transaction (PostgreSQL: the rows
    /// locked), otherwise [`StoreError::Fenced`] and nothing is written. A task that leaves
    /// Pending loses its claim (as in every commit).
    fn commit_steps_fenced(&mut self, steps: &[Step], fence: &[Fence]) -> Result<Vec<Vec<TaskId>>, StoreError>;

    /// The next instant after `now` at which work may become claimable without a commit: a
    /// retry falling due, or a live claim's lease expiring (a rescue). Idle workers sleep
    /// until then at the latest.
    fn task_next_wake(&self, now: Instant) -> Result<Option<Instant>, StoreError>;
    /// How many open tasks are in each state of the queue at `now`: `runnable`, `claimed`,
    /// `retry_later` (a retry not due yet), `held` (handed to a person), `manual`, `waiting`
    /// (for the tasks they depend on). States with no task are left out.
    fn task_counts(&self, now: Instant) -> Result<Vec<(String, i64)>, StoreError>;
    /// Marks tasks as manual (waiting for a person, never claimed): rows written before the
    /// store knew which tasks are manual, found by a worker that claimed one.
    fn task_mark_manual(&mut self, tasks: &[TaskId]) -> Result<(), StoreError>;

    /// Takes one of the `cap` call slots of `target`, shared by every worker of the store;
    /// `None` when all are taken. A slot is this connection's until released or until the
    /// connection ends (a dead worker's slots come free with it).
    fn target_slot_acquire(&mut self, target: &str, cap: u32) -> Result<Option<u32>, StoreError>;
    /// Gives back a slot [`Queue::target_slot_acquire`] returned.
    fn target_slot_release(&mut self, target: &str, slot: u32) -> Result<(), StoreError>;
}

/// The advisory-lock class of a target's call slots: FNV-1a of its name, as the `int4` the
/// two-key advisory lock functions take (PostgreSQL), or the key of the process's slot table
/// (SQLite). The store's migration lock is a one-key lock: the two never meet.
pub(crate) fn slot_class(target: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in target.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The query of [`Queue::task_counts`], for both stores (`$1`: now; booleans compared as such).
pub(crate) const TASK_COUNTS: &str = "SELECT CASE
         WHEN status = 'Waiting' THEN 'waiting'
         WHEN held THEN 'held'
         WHEN manual THEN 'manual'
         WHEN claimed_by IS NOT NULL AND lease_expires_at > $1 THEN 'claimed'
         WHEN due_at > $1 THEN 'retry_later'
         ELSE 'runnable' END AS state, count(*)
       FROM task_instances WHERE status IN ('Pending', 'Waiting') GROUP BY 1 ORDER BY 1";

/// A lease in whole seconds, rounded up, at least one.
pub(crate) fn lease_seconds(lease: Duration) -> i64 {
    let whole = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
    i64::try_from(whole).unwrap_or(i64::MAX).max(1)
}

/// When a lease taken at `now` expires.
pub(crate) fn expiry(now: Instant, lease: Duration) -> Instant {
    now.saturating_add(lease_seconds(lease))
}

/// A stored integer that must fit a `u32` (pid, concurrency).
pub(crate) fn small(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("worker {what} {value}")))
}

/// A worker row as both stores read it (`WORKER_COLUMNS` order).
pub(crate) struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: Instant,
    pub heartbeat_at: Instant,
    pub lease_seconds: i64,
    pub concurrency: i64,
    pub stopped_at: Option<Instant>,
}

pub(crate) const WORKER_COLUMNS: &str =
    "id, host, pid, started_at, heartbeat_at, lease_seconds, concurrency, stopped_at";

/// The columns of a [`HeldClaim`] with its holder, from `task_instances`.
pub(crate) const HELD_COLUMNS: &str = "id, account_id, lease_epoch, lease_expires_at, calling, claimed_by";

impl WorkerRow {
    pub(crate) fn into_record(self) -> Result<WorkerRecord, StoreError> {
        Ok(WorkerRecord {
            pid: small(self.pid, "pid")?,
            concurrency: small(self.concurrency, "concurrency")?,
            lease: Duration::from_secs(u64::try_from(self.lease_seconds).unwrap_or(0)),
            id: self.id,
            host: self.host,
            started_at: self.started_at,
            heartbeat_at: self.heartbeat_at,
            stopped_at: self.stopped_at,
        })
    }

    /// The refusal of a registration because this (live) worker exists; `same_id` when the
    /// new worker asked for its id.
    pub(crate) fn refusal(self, now: Instant, same_id: bool) -> StoreError {
        let seen_ago = now.saturating_sub(self.heartbeat_at).max(0);
        let (id, host, pid, lease) = (self.id, self.host, self.pid, self.lease_seconds);
        if same_id {
            StoreError::WorkerIdInUse { id, host, pid, seen_ago, lease }
        } else {
            StoreError::WorkerAlreadyRunning { id, host, pid, seen_ago, lease }
        }
    }
}

/// Groups claims (`HELD_COLUMNS` order, holder last) under their workers.
pub(crate) fn with_claims(workers: Vec<WorkerRecord>, claims: Vec<(String, HeldClaim)>) -> Vec<WorkerStatus> {
    workers
        .into_iter()
        .map(|worker| {
            let claims = claims.iter().filter(|(by, _)| *by == worker.id).map(|(_, c)| c.clone()).collect();
            WorkerStatus { worker, claims }
        })
        .collect()
}

/// The refusal of a fenced commit: the task's claim as the store has it now.
pub(crate) fn fenced(fence: &Fence, held_by: Option<String>, current: Option<Epoch>) -> StoreError {
    StoreError::Fenced { task: fence.task, epoch: fence.epoch, held_by, current }
}

/// Whether the stored claim (`claimed_by`, `lease_epoch`) is still the fence's.
pub(crate) fn holds(fence: &Fence, claimed_by: Option<&str>, epoch: Epoch) -> bool {
    claimed_by == Some(fence.worker.as_str()) && epoch == fence.epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_up_to_whole_seconds() {
        assert_eq!(lease_seconds(Duration::from_secs(30)), 30);
        assert_eq!(lease_seconds(Duration::from_millis(30_001)), 31);
        assert_eq!(lease_seconds(Duration::ZERO), 1);
        assert_eq!(expiry(100, Duration::from_secs(30)), 130);
        assert_eq!(expiry(i64::MAX, Duration::from_secs(30)), i64::MAX);
    }
}
