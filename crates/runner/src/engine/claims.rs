//! The engine under a worker's claims (`provflow worker`): runs the accounts of claimed tasks
//! with the semantics `run` and `resume` have, every commit fenced by the claim; applies the
//! rule for calls found interrupted (re-run if idempotent, else hold for a person); keeps
//! within a target's `max_concurrent_calls`; tells the worker what happened ([`Event`]).

use std::time::Duration;

use provflow_ir::{self as ir, Bundle, TaskAction, TaskStatus};

use super::inputs::query_of;
use super::{Engine, EngineError, Run};
use crate::store::{Account, AccountId, Claim, Epoch, Fence, Step, TaskId, TaskInstance};

/// Something a worker counts or logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A target call returned (`ok`: with an answer, whatever its response code).
    Called { target: String, elapsed: Duration, ok: bool },
    /// A task moved to a status in a committed step; `held`: handed to a person.
    Moved { account: AccountId, task: TaskId, to: TaskStatus, held: bool },
    /// A call found interrupted on a claimed account (its holder died or lost its lease):
    /// `rerun` when its query is idempotent, otherwise the task was held for a person.
    Interrupted { account: AccountId, task: TaskId, query: String, rerun: bool },
    /// A commit refused because the claim `(task, epoch)` is no longer this worker's.
    Fenced { account: AccountId, task: TaskId, epoch: Epoch, held_by: Option<String> },
    /// A call not started because the lease could not be trusted any more.
    Abandoned { account: AccountId, task: TaskId },
}

/// How long a worker waits between attempts to take a call slot of a capped target.
const SLOT_WAIT: Duration = Duration::from_millis(5);

/// What an engine learns that stays true from one run to the next (the bundles read from the
/// store, which targets are the store's own file): a worker keeps it across its claims.
#[derive(Default)]
pub struct EngineCache {
    bundles: std::collections::BTreeMap<String, std::rc::Rc<Bundle>>,
    store_targets: std::collections::BTreeMap<(String, usize), bool>,
}

impl Engine<'_> {
    /// Starts from what an earlier engine learned ([`Engine::into_cache`]).
    pub fn adopt_cache(&mut self, cache: EngineCache) {
        self.bundles = cache.bundles;
        self.store_targets = cache.store_targets;
    }

    /// What this engine learned, for the next one.
    pub fn into_cache(self) -> EngineCache {
        EngineCache { bundles: self.bundles, store_targets: self.store_targets }
    }

    /// Makes every commit of this engine fenced by `worker`'s claims: for [`Engine::run_claims`].
    pub fn hold_claims_as(&mut self, worker: &str) {
        self.holder = Some(worker.to_string());
    }

    /// Runs the accounts of `claims` (taken by the worker named in
    /// [`Engine::hold_claims_as`]) side by side until none can run now, then gives the claims
    /// back. A run whose claim is taken meanwhile stops at once: its commits are refused, and
    /// it starts no call. The claims go back even when the run fails.
    pub fn run_claims(&mut self, claims: &[Claim]) -> Result<(), EngineError> {
        let result = self.run_claimed(claims);
        let held: Vec<(TaskId, Epoch)> = claims.iter().map(|c| (c.task, c.epoch)).collect();
        let released = self.store.task_claim_release(&held);
        result?;
        released?;
        Ok(())
    }

    fn run_claimed(&mut self, claims: &[Claim]) -> Result<(), EngineError> {
        let Some(worker) = self.holder.clone() else {
            return Err(EngineError::Invalid(vec!["run_claims needs hold_claims_as first".into()]));
        };
        let mut runs = Vec::with_capacity(claims.len());
        for claim in claims {
            let mut run = self.load_run(claim.account)?;
            run.fence = Some(claim.fence(&worker));
            if self.settle_claimed(&mut run, claim)? {
                runs.push(run);
            }
        }
        self.drive(runs)
    }

    /// Before a claimed account runs: rows that predate the store's `manual` column are
    /// marked, and calls found interrupted are settled. `false` when the claim was lost.
    fn settle_claimed(&mut self, run: &mut Run, claim: &Claim) -> Result<bool, EngineError> {
        let bundle = run.bundle.clone();
        let process = Self::process_at(&bundle, run.process)?;
        let manual = |t: &TaskInstance| {
            t.status == TaskStatus::Pending
                && matches!(process.tasks.get(t.task_index).map(|d| &d.action), Some(TaskAction::Manual { .. }))
        };
        if run.tasks.iter().any(|t| t.id == claim.task && manual(t)) {
            let ids: Vec<TaskId> = run.tasks.iter().filter(|t| manual(t)).map(|t| t.id).collect();
            self.store.task_mark_manual(&ids)?;
        }
        let interrupted: Vec<TaskInstance> =
            run.tasks.iter().filter(|t| t.calling && t.status == TaskStatus::Pending).cloned().collect();
        if interrupted.is_empty() {
            return Ok(true);
        }
        let (step, events) = self.interrupted(&bundle, process, &run.account, &interrupted);
        if !self.write_marks(run.fence.as_ref(), step)? {
            return Ok(false);
        }
        for e in events {
            self.emit(e);
        }
        run.tasks = self.store.tasks_of(run.account.id)?;
        Ok(true)
    }

    /// The step that settles calls found interrupted (`tasks`, each marked `calling`): a
    /// task whose query is idempotent loses its mark and runs again; any other is held for a
    /// person, with a note, since its call may or may not have happened.
    pub(super) fn interrupted(
        &self,
        bundle: &Bundle,
        process: &ir::Process,
        account: &Account,
        tasks: &[TaskInstance],
    ) -> (Step, Vec<Event>) {
        let mut step = self.step(account);
        let mut events = Vec::new();
        for t in tasks {
            let query = process.tasks.get(t.task_index).and_then(|d| match &d.action {
                TaskAction::Adapter(a) => query_of(bundle, process, a).map(|q| q.0),
                TaskAction::Manual { .. } => None,
            });
            let rerun = query.is_none_or(|q| q.idempotent);
            if rerun {
                step.uncalling.push(t.id);
            } else if let Some(q) = query {
                let why = format!(
                    "provflow stopped while calling `{}`, which is not idempotent: it may or may not have run on the target; check the target",
                    q.name
                );
                let held = self.held_step(account, t, why);
                step.transitions.extend(held.transitions);
            }
            let query = query.map(|q| q.name.clone()).unwrap_or_default();
            events.push(Event::Interrupted { account: account.id, task: t.id, query, rerun });
        }
        (step, events)
    }

    /// Waits for a call slot of a target capped at `cap` (none needed without a cap):
    /// `Some(slot)` once taken, `None` when the lease can no longer be trusted.
    pub(super) fn call_slot(
        &mut self,
        fence: Option<&Fence>,
        target: &str,
        cap: Option<u32>,
    ) -> Result<Option<Option<u32>>, EngineError> {
        let may_call = |e: &Self| e.may_call.is_none_or(|ok| ok(fence));
        if !may_call(self) {
            return Ok(None);
        }
        let Some(cap) = cap else { return Ok(Some(None)) };
        loop {
            if let Some(slot) = self.store.target_slot_acquire(target, cap)? {
                return Ok(Some(Some(slot)));
            }
            std::thread::sleep(SLOT_WAIT);
            if !may_call(self) {
                return Ok(None);
            }
        }
    }

    /// Gives back a slot [`Engine::call_slot`] took. Best effort: a slot that cannot be given
    /// back is freed with the store connection.
    pub(super) fn release_slot(&mut self, target: &str, slot: Option<u32>) {
        if let Some(slot) = slot {
            let _ = self.store.target_slot_release(target, slot);
        }
    }

    pub(super) fn emit(&mut self, event: Event) {
        if let Some(events) = self.events.as_mut() {
            events(event);
        }
    }

    /// Tells of the transitions of a committed step.
    pub(super) fn emit_transitions(&mut self, step: &Step) {
        if self.events.is_none() {
            return;
        }
        for t in &step.transitions {
            self.emit(Event::Moved { account: step.account, task: t.task, to: t.to, held: t.held });
        }
    }
}
