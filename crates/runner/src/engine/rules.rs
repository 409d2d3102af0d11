//! The engine's rules, without a store, a target or a clock in sight (SPEC §4 Semantics, seed
//! 004): given a process, an account's tasks in memory and the time, what follows — tasks
//! that become Pending, Rejected tasks settled by their recovery, the Provisioned rule, status
//! maps, notifications, retries, recovery and undo, insertion honouring
//! `allow_multiple_instances`, and which task to call next. Everything here only adds to a
//! [`Step`] and to the in-memory state; the driver (`super::Engine`) commits steps and makes
//! calls, and the tests drive these rules directly.

use provflow_ir::{self as ir, Bundle, Effect, ObjectStatus, TaskAction, TaskStatus};
use std::collections::BTreeMap;

use crate::clock::{self, Instant};
use crate::store::{Account, AccountId, ChildRow, NewTask, NotifyRequest, Step, TaskId, TaskInstance, Transition};

/// The rules for one account's process at one moment.
pub(super) struct Rules<'x> {
    pub bundle: &'x Bundle,
    pub process: &'x ir::Process,
    /// The time decisions are made at (retry due times, what is due now).
    pub now: Instant,
    /// Who the audit trail names for the steps these rules start.
    pub actor: &'x str,
}

impl Rules<'_> {
    /// Marks `calling`, in `step` that inserts tasks, the task the next round would call, when
    /// that round would commit nothing but the mark: the mark then shares the inserts'
    /// transaction instead of taking one of its own. The call still starts only after the
    /// commit. The next round finds the task marked and calls it; anything else, it decides
    /// as before.
    pub(super) fn mark_with_inserts(
        &self,
        account: &Account,
        tasks: &[TaskInstance],
        marked: Option<TaskId>,
        step: &mut Step,
    ) {
        // The inserted tasks as the next round would see them, under ids no stored task has.
        let placeholder = |k: usize| -1 - k as TaskId;
        let mut next_tasks: Vec<TaskInstance> = tasks.to_vec();
        next_tasks
            .extend(step.new_tasks.iter().enumerate().map(|(k, t)| instance(account.id, placeholder(k), t.clone())));
        let mut next_account = account.clone();
        let mut next = self.step(account);
        self.derive(&mut next_account, &mut next_tasks, &mut next);
        if !next.is_empty() {
            return;
        }
        match next_call(self.process, &next_tasks, marked, self.now) {
            Some(id) if id < 0 => {
                if let Some(t) = usize::try_from(-1 - id).ok().and_then(|k| step.new_tasks.get_mut(k)) {
                    t.calling = true;
                }
            }
            Some(id) if marked != Some(id) => step.calling = Some(id),
            _ => {}
        }
    }

    /// Adds to `step` what follows from the account's current state: waiting tasks whose
    /// dependencies now hold become Pending, rejected tasks whose recovery completed become
    /// Unsuccessfully Completed, a finished provisioning makes the account Provisioned. Each
    /// change is applied to `account` and `tasks` at once.
    pub(super) fn derive(&self, account: &mut Account, tasks: &mut [TaskInstance], step: &mut Step) {
        // Each round only moves tasks forward; the bound guards against a cycle all the same.
        for _ in 0..64 {
            let before = (step.transitions.len(), step.account_status);
            let from = step.transitions.len();
            self.promote(account, tasks, step);
            self.settle_recovery(account, tasks, step);
            apply_transitions(tasks, step.transitions.get(from..).unwrap_or_default());
            if let Some(s) = step.account_status {
                account.status = s;
            }
            Self::settle_completion(self.process, account, tasks, step);
            if let Some(s) = step.account_status {
                account.status = s;
            }
            if (step.transitions.len(), step.account_status) == before {
                return;
            }
        }
    }

    pub(super) fn deps_satisfied(task: &ir::Task, tasks: &[TaskInstance]) -> bool {
        let latest = latest(tasks);
        task.depends_on.iter().all(|d| latest.get(d).is_none_or(|t| t.status.satisfies_dependency()))
    }

    pub(super) fn promote(&self, account: &Account, tasks: &[TaskInstance], step: &mut Step) {
        for t in tasks.iter().filter(|t| t.status == TaskStatus::Waiting) {
            let Some(def) = self.process.tasks.get(t.task_index) else { continue };
            if Self::deps_satisfied(def, tasks) {
                let (held, note) = match &def.action {
                    TaskAction::Manual { assignee } => (
                        true,
                        Some(format!(
                            "waiting for {}: `provflow task complete {}` or `provflow task reject {}`",
                            assignee.as_deref().unwrap_or("a person"),
                            t.id,
                            t.id
                        )),
                    ),
                    TaskAction::Adapter(_) => (false, None),
                };
                step.transitions.push(Transition {
                    task: t.id,
                    to: TaskStatus::Pending,
                    response: None,
                    note,
                    held,
                    outputs: BTreeMap::new(),
                });
                self.on_status(account, tasks, t, TaskStatus::Pending, step);
            }
        }
    }

    /// A Rejected task with `complete_on_recovery` becomes Unsuccessfully Completed once all
    /// its recovery tasks have completed.
    pub(super) fn settle_recovery(&self, account: &Account, tasks: &[TaskInstance], step: &mut Step) {
        let latest = latest(tasks);
        for t in latest.values().filter(|t| t.status == TaskStatus::Rejected) {
            let Some(def) = self.process.tasks.get(t.task_index) else { continue };
            if !def.complete_on_recovery || def.recovery.is_empty() {
                continue;
            }
            let recovered = def.recovery.iter().all(|r| {
                tasks
                    .iter()
                    .rfind(|x| x.task_index == *r && x.id > t.id)
                    .is_some_and(|x| x.status.satisfies_dependency())
            });
            if recovered {
                step.transitions.push(Transition {
                    task: t.id,
                    to: TaskStatus::UnsuccessfullyCompleted,
                    response: None,
                    note: Some("its recovery tasks completed".into()),
                    held: false,
                    outputs: BTreeMap::new(),
                });
                self.on_status(account, tasks, t, TaskStatus::UnsuccessfullyCompleted, step);
            }
        }
    }

    /// A provisioning account is Provisioned once every required-for-completion task is
    /// Completed (or Manually Completed), unless a status map already moved it elsewhere.
    pub(super) fn settle_completion(process: &ir::Process, account: &Account, tasks: &[TaskInstance], step: &mut Step) {
        if account.status != ObjectStatus::Provisioning {
            return;
        }
        let latest = latest(tasks);
        let mut required = process.tasks.iter().enumerate().filter(|(_, t)| t.required_for_completion).peekable();
        let done = required.peek().is_some()
            && required.all(|(i, _)| {
                latest
                    .get(&i)
                    .is_some_and(|t| matches!(t.status, TaskStatus::Completed | TaskStatus::ManuallyCompleted))
            });
        if done {
            step.account_status = Some(ObjectStatus::Provisioned);
        }
    }

    pub(super) fn step(&self, account: &Account) -> Step {
        Step { account: account.id, actor: self.actor.to_owned(), ..Step::default() }
    }

    /// Everything a status change causes besides itself: the status map, notifications,
    /// retries, recovery and undo.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_status(
        &self,
        account: &Account,
        tasks: &[TaskInstance],
        inst: &TaskInstance,
        status: TaskStatus,
        step: &mut Step,
    ) {
        let Some(def) = self.process.tasks.get(inst.task_index) else { return };
        if let Some(s) = def.status_map.get(&status).filter(|s| **s != ObjectStatus::None) {
            step.account_status = Some(*s);
        }
        if let Some(&template_index) = def.notify.get(&status) {
            step.notify.push(NotifyRequest {
                task: Some(inst.id),
                template_index,
                template: self.bundle.templates.get(template_index).map(|t| t.name.clone()).unwrap_or_default(),
                task_status: status,
                recipient: account.user.clone(),
            });
        }
        match status {
            TaskStatus::Rejected => {
                let retry = def.retry.filter(|r| inst.attempt < r.count);
                if let Some(r) = retry {
                    let due = self.now.saturating_add((r.period_minutes as i64).saturating_mul(60));
                    let mut t = new_task(
                        self.process,
                        inst.task_index,
                        TaskStatus::Pending,
                        inst.attempt + 1,
                        Some(due),
                        inst.child.clone(),
                    );
                    t.note = Some(format!(
                        "retry {} of {} after a rejection; due {}",
                        inst.attempt,
                        r.count.saturating_sub(1),
                        clock::timestamp(due)
                    ));
                    step.new_tasks.push(t);
                } else {
                    self.insert(tasks, &def.recovery, &inst.child, step);
                }
            }
            TaskStatus::Cancelled => self.insert(tasks, &def.undo, &inst.child, step),
            _ => {}
        }
    }

    /// Inserts tasks (Waiting, or Pending at once when their dependencies hold), honouring
    /// `allow_multiple_instances`.
    pub(super) fn insert(&self, tasks: &[TaskInstance], indices: &[usize], child: &ChildRow, step: &mut Step) {
        let from = step.new_tasks.len();
        for &i in indices {
            let Some(def) = self.process.tasks.get(i) else { continue };
            let open_exists = tasks.iter().any(|t| t.task_index == i && is_open(t.status))
                || step.new_tasks.iter().any(|t| t.task_index == i);
            if open_exists && !def.allow_multiple_instances {
                continue;
            }
            step.new_tasks.push(new_task(self.process, i, TaskStatus::Waiting, 1, None, child.clone()));
        }
        start_pending(self.process, tasks, step, from);
    }
}

/// Whether `status` ends an instance's life as far as insertion rules go.
pub(super) fn is_open(status: TaskStatus) -> bool {
    !status.is_final()
}

/// The newest instance of each task index.
pub(super) fn latest(tasks: &[TaskInstance]) -> BTreeMap<usize, &TaskInstance> {
    let mut out = BTreeMap::new();
    for t in tasks {
        out.insert(t.task_index, t);
    }
    out
}

/// Whether a task ended Rejected with no retry coming: the run failed.
pub fn has_final_rejection(tasks: &[TaskInstance]) -> bool {
    latest(tasks).values().any(|t| t.status == TaskStatus::Rejected)
}

pub(super) fn effect_tasks(process: &ir::Process, effect: Effect) -> Vec<usize> {
    process
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.effect == effect)
        .map(|(i, t)| {
            let _ = t;
            i
        })
        .collect()
}

/// The undo tasks of the account's completed provisioning work; else the tasks whose status
/// map revokes the account.
pub(super) fn revoke_path(process: &ir::Process, tasks: &[TaskInstance]) -> Vec<usize> {
    let mut undo: Vec<usize> = Vec::new();
    for t in tasks.iter().filter(|t| matches!(t.status, TaskStatus::Completed | TaskStatus::ManuallyCompleted)) {
        if let Some(def) = process.tasks.get(t.task_index) {
            for u in &def.undo {
                if !undo.contains(u) {
                    undo.push(*u);
                }
            }
        }
    }
    if undo.is_empty() {
        undo = process
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.status_map.get(&TaskStatus::Completed) == Some(&ObjectStatus::Revoked))
            .map(|(i, _)| i)
            .collect();
    }
    undo
}

/// Makes the tasks `step` inserts (from `from` on) Pending at once when nothing holds them
/// back, saving each a promotion step of its own: automatic tasks whose dependencies already
/// hold (none of them inserted by the same step), with nothing bound to their Pending status.
/// Manual tasks keep their promotion step, whose note names the task's id.
pub(super) fn start_pending(process: &ir::Process, tasks: &[TaskInstance], step: &mut Step, from: usize) {
    let latest = latest(tasks);
    let inserted: Vec<usize> = step.new_tasks.iter().map(|t| t.task_index).collect();
    let status_of =
        |t: &TaskInstance| step.transitions.iter().rev().find(|x| x.task == t.id).map_or(t.status, |x| x.to);
    let ready: Vec<bool> =
        step.new_tasks
            .iter()
            .skip(from)
            .map(|t| {
                let Some(def) = process.tasks.get(t.task_index) else { return false };
                t.status == TaskStatus::Waiting
                    && matches!(def.action, TaskAction::Adapter(_))
                    && !def.status_map.contains_key(&TaskStatus::Pending)
                    && !def.notify.contains_key(&TaskStatus::Pending)
                    && def.depends_on.iter().all(|d| {
                        !inserted.contains(d) && latest.get(d).is_none_or(|x| status_of(x).satisfies_dependency())
                    })
            })
            .collect();
    for (t, ready) in step.new_tasks.iter_mut().skip(from).zip(ready) {
        if ready {
            t.status = TaskStatus::Pending;
            t.promoted = true;
        }
    }
}

/// The task the run calls next: the one whose `calling` mark this engine committed, else the
/// first Pending adapter task that is due and not held or being called.
pub(super) fn next_call(
    process: &ir::Process,
    tasks: &[TaskInstance],
    marked: Option<TaskId>,
    now: clock::Instant,
) -> Option<TaskId> {
    let runnable = |t: &&TaskInstance| {
        t.status == TaskStatus::Pending
            && !t.held
            && (!t.calling || marked == Some(t.id))
            && t.due_at.is_none_or(|d| d <= now)
            && matches!(process.tasks.get(t.task_index).map(|x| &x.action), Some(TaskAction::Adapter(_)))
    };
    tasks.iter().find(|t| marked == Some(t.id) && runnable(t)).or_else(|| tasks.iter().find(runnable)).map(|t| t.id)
}

/// A task instance as `step` inserted it, with the id its commit gave it.
pub(super) fn instance(account: AccountId, id: TaskId, t: NewTask) -> TaskInstance {
    TaskInstance {
        id,
        account,
        task_index: t.task_index,
        task_name: t.task_name,
        status: t.status,
        response: None,
        attempt: t.attempt,
        due_at: t.due_at,
        calling: t.calling,
        held: t.held,
        note: t.note,
        child: t.child,
        outputs: BTreeMap::new(),
    }
}

/// Applies transitions to tasks held in memory, as the store applies them.
pub(super) fn apply_transitions(tasks: &mut [TaskInstance], transitions: &[Transition]) {
    for x in transitions {
        if let Some(t) = tasks.iter_mut().find(|t| t.id == x.task) {
            t.status = x.to;
            if x.response.is_some() {
                t.response = x.response.clone();
            }
            t.note = x.note.clone();
            t.held = x.held;
            if !x.outputs.is_empty() {
                t.outputs = x.outputs.clone();
            }
            t.calling = false;
        }
    }
}

/// Applies a step not committed yet to the account and tasks held in memory (its new tasks
/// join them when the commit gives them ids).
pub(super) fn apply_in_memory(account: &mut Account, tasks: &mut [TaskInstance], step: &Step) {
    apply_transitions(tasks, &step.transitions);
    if let Some(s) = step.account_status {
        account.status = s;
    }
}

pub(super) fn new_task(
    process: &ir::Process,
    index: usize,
    status: TaskStatus,
    attempt: u32,
    due_at: Option<i64>,
    child: ChildRow,
) -> NewTask {
    NewTask {
        task_index: index,
        task_name: process.tasks.get(index).map(|t| t.name.clone()).unwrap_or_default(),
        status,
        attempt,
        due_at,
        held: false,
        note: None,
        child,
        promoted: false,
        calling: false,
        manual: process.tasks.get(index).is_some_and(|t| matches!(t.action, TaskAction::Manual { .. })),
    }
}
