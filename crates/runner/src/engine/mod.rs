//! The task engine (SPEC §4 Semantics, seed 004): inserts tasks, moves them through their
//! statuses, calls targets, applies responses, retries, recovery, undo, status maps and
//! notifications. Every transition is committed before the next step.

use provflow_ir::{self as ir, Bundle, Effect, ObjectStatus, TaskAction, TaskStatus};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::clock::{self, Clock};
use crate::store::{
    Account, AccountId, Change, ChildRow, Fence, FormData, NewAccount, NewTask, SecretCache, StateStore, Step,
    StoreError, TaskId, TaskInstance, Transition, UserAndAccount, UserRecord,
};
use crate::target::{self, CallOutcome, TargetError};
use crate::value::{self, Secret, Value};

mod claims;
mod inputs;
mod rules;
mod targets;
#[cfg(test)]
mod tests;
mod users;

use inputs::{condition_holds, query_of, Inputs};
pub use targets::{TargetProvider, Targets};
pub use users::check_user;
use users::{generate_display_name, normalize_attrs};

pub use claims::{EngineCache, Event};
pub use rules::has_final_rejection;
use rules::{apply_in_memory, effect_tasks, instance, is_open, new_task, next_call, revoke_path, start_pending, Rules};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown user `{login}`{}", hint(suggestion))]
    UnknownUser { login: String, suggestion: Option<String> },
    #[error("user `{0}` already exists; change it with `provflow user modify {0} --attr name=value`")]
    UserExists(String),
    #[error(
        "target `{target}` cannot be reached: {message}\nnothing was sent; the task stays Pending: run `provflow resume` once the target is back"
    )]
    TargetUnavailable { target: String, message: String },
    #[error("unknown process `{name}`{}", hint(suggestion))]
    UnknownProcess { name: String, suggestion: Option<String> },
    #[error(
        "`{user}` has no `{process}` account; provision one with `provflow run --process \"{process}\" --user {user}`"
    )]
    NoAccount { process: String, user: String },
    #[error("`{user}` already has a `{process}` account (#{id}, {status}); see `provflow account show --process \"{process}\" --user {user}`")]
    AccountExists { process: String, user: String, id: AccountId, status: &'static str },
    #[error("no task instance #{0}; see `provflow task list`")]
    UnknownTask(TaskId),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("task #{id} `{name}` is {status}: {why}")]
    NotActionable { id: TaskId, name: String, status: &'static str, why: String },
    #[error("the definitions (bundle {0}) this account was started with are missing from the state store")]
    BundleMissing(String),
    #[error("target `{target}`: {error}")]
    Target { target: String, error: TargetError },
}

pub(super) fn hint<S: AsRef<str>>(s: &Option<S>) -> String {
    s.as_ref().map(|s| format!("; did you mean `{}`?", s.as_ref())).unwrap_or_default()
}

/// The closest of `candidates` to a misspelled name (the one helper of compiler and runner).
pub use provflow_lex::suggest::did_you_mean;

/// A form value given on the command line.
#[derive(Debug, Clone)]
pub enum FormInput {
    Plain(String),
    Secret(Secret),
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub name: String,
    pub status: TaskStatus,
    pub manual: bool,
    /// The rendered SQL with secrets masked.
    pub sql: Option<String>,
    pub note: Option<String>,
}

pub struct Engine<'a> {
    pub store: &'a mut dyn StateStore,
    pub targets: &'a mut dyn TargetProvider,
    clock: &'a dyn Clock,
    /// Who the audit trail names for this run's transitions.
    pub actor: String,
    /// Secrets given in this process, usable even when the store cannot keep them.
    secrets: SecretCache,
    bundles: BTreeMap<String, Rc<Bundle>>,
    /// How many accounts run side by side, sharing the state store's commits (see
    /// [`Engine::drive`]): `provision_many` and `resume` take them this many at a time.
    pub batch: usize,
    /// Told how many accounts each batch of `provision_many` created and ran (progress bars).
    pub progress: Option<&'a mut dyn FnMut(usize)>,
    /// Whether target `(bundle hash, index)` is the state store's own file.
    store_targets: BTreeMap<(String, usize), bool>,
    /// The worker whose claims fence every commit of this engine (`provflow worker`, see
    /// [`Engine::run_claims`]); `None` for the commands.
    holder: Option<String>,
    /// Told of every call, committed transition, rescue and fenced-off commit (the worker's
    /// metrics and logs).
    pub events: Option<&'a mut dyn FnMut(Event)>,
    /// Asked right before every target call: `false` when this process can no longer trust
    /// its lease (no heartbeat got through in time), and the call must not start.
    pub may_call: Option<&'a MayCall<'a>>,
    /// Leave the running of accounts to the workers: a change (a person's decision, a user
    /// update) commits its tasks, and live workers pick them up (see `provflow worker`).
    pub defer: bool,
}

/// Whether a call under a claim (`None`: no claim) may start now; see [`Engine::may_call`].
pub type MayCall<'a> = dyn Fn(Option<&Fence>) -> bool + 'a;

/// [`Engine::batch`] unless set otherwise.
pub const DEFAULT_BATCH: usize = 64;

/// An account being run: its state in memory, and where its run loop stands.
struct Run {
    account: Account,
    tasks: Vec<TaskInstance>,
    /// The account's user, read once for all its calls.
    user: Option<UserRecord>,
    bundle: Rc<Bundle>,
    /// The account's process in `bundle`.
    process: usize,
    /// Whether the process's target is the state store's own file.
    shared: bool,
    /// The outcome of the last call, committed with the next round.
    carry: Option<Step>,
    /// The worker's claim on the account, which every commit of this run must still hold.
    fence: Option<Fence>,
    /// The claim was lost (rescued by another worker, or the lease could not be renewed):
    /// this run commits and calls nothing more.
    lost: bool,
    /// The task whose `calling` mark is committed and whose call comes next; any other
    /// marked task was interrupted by a crash and waits for `resume`.
    marked: Option<TaskId>,
}

impl Run {
    /// Takes in what a commit of `step` wrote: the new tasks with their ids, the marks.
    fn committed(&mut self, step: Step, ids: Vec<TaskId>) {
        for (t, id) in step.new_tasks.into_iter().zip(ids) {
            if t.calling {
                self.marked = Some(id);
            }
            self.tasks.push(instance(self.account.id, id, t));
        }
        if let Some(c) = step.calling {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == c) {
                t.calling = true;
            }
            self.marked = Some(c);
        }
    }
}

/// What a run does once its round is committed.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Decide again: the round inserted tasks.
    Again,
    /// Call this task.
    Call(TaskId),
    /// Nothing can run now.
    Done,
}

/// An account checked and ready to create (see [`Engine::prepare`]).
#[derive(Clone)]
struct Start {
    login: String,
    user: UserRecord,
    form: FormData,
    tasks: Vec<NewTask>,
    /// Which of `tasks` is marked `calling`: the first call.
    marked: Option<usize>,
}

impl Start {
    /// The start without its first call's mark: the account is created, its call not made.
    fn unmarked(mut self) -> Self {
        self.marked = None;
        self.tasks.iter_mut().for_each(|t| t.calling = false);
        self
    }
}

impl<'a> Engine<'a> {
    pub fn new(store: &'a mut dyn StateStore, targets: &'a mut dyn TargetProvider, clock: &'a dyn Clock) -> Self {
        Engine {
            store,
            targets,
            clock,
            actor: "provflow".into(),
            secrets: SecretCache::new(),
            bundles: BTreeMap::new(),
            batch: DEFAULT_BATCH,
            progress: None,
            store_targets: BTreeMap::new(),
            holder: None,
            events: None,
            may_call: None,
            defer: false,
        }
    }

    pub fn bundle(&mut self, hash: &str) -> Result<Rc<Bundle>, EngineError> {
        if let Some(b) = self.bundles.get(hash) {
            return Ok(b.clone());
        }
        let b = Rc::new(self.store.bundle(hash)?.ok_or_else(|| EngineError::BundleMissing(hash.to_string()))?);
        self.bundles.insert(hash.to_string(), b.clone());
        Ok(b)
    }

    fn user(&self, login: &str) -> Result<UserRecord, EngineError> {
        match self.store.user(login)? {
            Some(u) => Ok(u),
            None => Err(self.unknown_user(login)?),
        }
    }

    fn unknown_user(&self, login: &str) -> Result<EngineError, EngineError> {
        let users = self.store.users()?;
        Ok(EngineError::UnknownUser {
            login: login.to_string(),
            suggestion: did_you_mean(login, users.iter().map(|u| u.login.as_str())).map(str::to_string),
        })
    }

    pub fn process_index(bundle: &Bundle, name: &str) -> Result<usize, EngineError> {
        bundle.process(name).map(|(i, _)| i).ok_or_else(|| EngineError::UnknownProcess {
            name: name.to_string(),
            suggestion: did_you_mean(name, bundle.processes.iter().map(|p| p.name.as_str())).map(str::to_string),
        })
    }

    /// The process at an index [`Engine::process_index`] returned.
    fn process_at(bundle: &Bundle, pi: usize) -> Result<&ir::Process, EngineError> {
        bundle.processes.get(pi).ok_or_else(|| EngineError::UnknownProcess { name: format!("#{pi}"), suggestion: None })
    }

    fn process_of<'b>(bundle: &'b Bundle, account: &Account) -> Result<&'b ir::Process, EngineError> {
        bundle
            .process(&account.process)
            .map(|(_, p)| p)
            .ok_or_else(|| EngineError::UnknownProcess { name: account.process.clone(), suggestion: None })
    }

    // ----- provisioning -------------------------------------------------------------------

    /// Builds the form of a new account: given values, then `from` user attributes, then
    /// defaults; every problem reported at once.
    fn build_form(
        process: &ir::Process,
        user: &UserRecord,
        given: &BTreeMap<String, FormInput>,
    ) -> Result<FormData, EngineError> {
        let mut problems = Vec::new();
        for name in given.keys() {
            if !process.form.fields.iter().any(|f| &f.name == name) {
                let s = did_you_mean(name, process.form.fields.iter().map(|f| f.name.as_str()));
                problems.push(format!("`{}` has no form field `{name}`{}", process.name, hint(&s)));
            }
        }
        let mut form = FormData::new();
        for field in &process.form.fields {
            let text = match given.get(&field.name) {
                Some(FormInput::Secret(s)) => {
                    if field.ty.is_secret() {
                        form.insert(field.name.clone(), Value::Secret(s.clone()));
                    } else {
                        // A secret source never feeds a plain field; nothing of it is echoed.
                        problems.push(format!(
                            "form field `{}` is a {}, not a secret; pass it with --form {}=VALUE",
                            field.name,
                            field.ty.as_str(),
                            field.name
                        ));
                    }
                    continue;
                }
                Some(FormInput::Plain(t)) => {
                    if field.ty.is_secret() {
                        problems.push(format!(
                            "form field `{}` is a secret: pass it with --secret {}=env:VAR or --secret {}=file:PATH, never on the command line",
                            field.name, field.name, field.name
                        ));
                        continue;
                    }
                    Some(t.clone())
                }
                None => field
                    .from_user
                    .as_ref()
                    .and_then(
                        |a| if a == "usr_login" { Some(user.login.clone()) } else { user.attributes.get(a).cloned() },
                    )
                    .or_else(|| field.default.clone()),
            };
            match text {
                Some(t) => match value::typed(field.ty, &t) {
                    Ok(Value::Secret(s)) => {
                        form.insert(field.name.clone(), Value::Secret(s));
                    }
                    // Form values are kept as text; the query parameter's type applies at call time.
                    Ok(_) => {
                        form.insert(field.name.clone(), Value::Text(t));
                    }
                    Err(e) => problems.push(format!("form field `{}`: {e}", field.name)),
                },
                None if field.required => problems.push(if field.ty.is_secret() {
                    format!("form field `{}` is required: pass it with --secret {}=env:VAR", field.name, field.name)
                } else {
                    format!("form field `{}` is required: pass it with --form {}=VALUE", field.name, field.name)
                }),
                None => {}
            }
        }
        if problems.is_empty() {
            Ok(form)
        } else {
            Err(EngineError::Invalid(problems))
        }
    }

    /// The tasks a new account starts with: non-conditional ones, and conditional ones whose
    /// `condition` holds.
    fn initial_tasks(bundle: &Bundle, process: &ir::Process, user: &UserRecord, form: &FormData) -> Vec<usize> {
        process
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| match (&t.condition, t.conditional) {
                (Some(c), _) => condition_holds(c, bundle, process, user, form),
                (None, conditional) => !conditional,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Provisions one account and runs it until no task can run now.
    pub fn provision(
        &mut self,
        bundle: &Bundle,
        process_name: &str,
        login: &str,
        given: &BTreeMap<String, FormInput>,
    ) -> Result<AccountId, EngineError> {
        let pi = Self::process_index(bundle, process_name)?;
        let found = self.store.user_and_account(login, &Self::process_at(bundle, pi)?.name)?;
        let start = self.prepare(bundle, pi, login, found, given)?;
        let ids = self.provision_prepared(bundle, pi, vec![start])?;
        ids.into_iter()
            .next()
            .ok_or_else(|| EngineError::NoAccount { process: process_name.into(), user: login.into() })
    }

    /// Provisions one account per login, all with the same given form values, and runs them
    /// until no task can run now.
    ///
    /// Every login is checked before anything is written: when any cannot be provisioned
    /// (unknown or deleted user, a live account already, a login listed twice, a form value
    /// its field refuses), nothing is created and every problem is reported. The accounts then
    /// run side by side, [`Engine::batch`] at a time (see [`Engine::drive`]). When a target
    /// cannot be reached, the accounts not started yet are still created, their first tasks
    /// Pending, so that `resume` finishes all of them once it is back.
    pub fn provision_many(
        &mut self,
        bundle: &Bundle,
        process_name: &str,
        logins: &[String],
        given: &BTreeMap<String, FormInput>,
    ) -> Result<Vec<AccountId>, EngineError> {
        let pi = Self::process_index(bundle, process_name)?;
        let starts = self.prepare_many(bundle, pi, logins, given)?;
        self.provision_prepared(bundle, pi, starts)
    }

    /// Records one account per login with its first tasks, and runs nothing: the workers
    /// (`provflow worker`) do the rest. Checked as [`Engine::provision_many`] checks; a form
    /// with a secret also needs a store that keeps secrets (a secret key), since the work
    /// leaves this process: otherwise nothing is created.
    pub fn enqueue_many(
        &mut self,
        bundle: &Bundle,
        process_name: &str,
        logins: &[String],
        given: &BTreeMap<String, FormInput>,
    ) -> Result<Vec<AccountId>, EngineError> {
        let pi = Self::process_index(bundle, process_name)?;
        let secrets: Vec<&str> =
            given.iter().filter(|(_, v)| matches!(v, FormInput::Secret(_))).map(|(k, _)| k.as_str()).collect();
        if !secrets.is_empty() && !self.store.has_key() {
            return Err(EngineError::Invalid(vec![format!(
                "--enqueue hands the work to the workers, and the secret form field(s) {} must reach them sealed in the state store: set PROVFLOW_SECRET_KEY (or .provflow/secret.key) here and on every worker to the same key; nothing was created",
                secrets.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            )]));
        }
        let starts = self.prepare_many(bundle, pi, logins, given)?;
        if !self.bundles.contains_key(&bundle.hash) {
            self.store.save_bundle(bundle)?;
            self.bundles.insert(bundle.hash.clone(), Rc::new(bundle.clone()));
        }
        let held = self.bundle(&bundle.hash)?;
        let mut ids = Vec::with_capacity(starts.len());
        let starts: Vec<Start> = starts.into_iter().map(Start::unmarked).collect();
        for part in starts.chunks(self.batch.max(64)) {
            let runs = self.create(&held, pi, false, part.to_vec())?;
            ids.extend(runs.iter().map(|r| r.account.id));
            if let Some(progress) = self.progress.as_mut() {
                progress(runs.len());
            }
        }
        Ok(ids)
    }

    /// Checks every login of [`Engine::provision_many`] before anything is written and
    /// prepares their accounts; every problem is reported at once.
    fn prepare_many(
        &mut self,
        bundle: &Bundle,
        pi: usize,
        logins: &[String],
        given: &BTreeMap<String, FormInput>,
    ) -> Result<Vec<Start>, EngineError> {
        let mut starts = Vec::with_capacity(logins.len());
        let mut problems = Vec::new();
        const SHOWN: usize = 20;
        let mut seen = std::collections::BTreeSet::new();
        let found = self.store.users_and_accounts(logins, &Self::process_at(bundle, pi)?.name)?;
        // Read once, for the "did you mean" of the unknown logins that are shown.
        let mut known: Option<Vec<String>> = None;
        for ((line, login), found) in logins.iter().enumerate().zip(found) {
            if !seen.insert(login.as_str()) {
                problems.push(format!("{login}: listed twice (again as entry {})", line + 1));
                continue;
            }
            if found.0.is_none() {
                let suggestion = if problems.len() < SHOWN {
                    let users = match &known {
                        Some(u) => u,
                        None => known.insert(self.store.users()?.into_iter().map(|u| u.login).collect()),
                    };
                    did_you_mean(login, users.iter().map(String::as_str)).map(str::to_string)
                } else {
                    None
                };
                problems.push(format!("{login}: {}", EngineError::UnknownUser { login: login.clone(), suggestion }));
                continue;
            }
            match self.prepare(bundle, pi, login, found, given) {
                Ok(s) => starts.push(s),
                Err(EngineError::Store(e)) => return Err(e.into()),
                Err(e) => problems.push(format!("{login}: {}", e.to_string().replace('\n', "; "))),
            }
        }
        if !problems.is_empty() {
            let total = problems.len();
            let more = total.saturating_sub(SHOWN);
            problems.truncate(SHOWN);
            if more > 0 {
                problems.push(format!("... and {more} more"));
            }
            problems.push(format!("{total} of {} accounts cannot be provisioned; nothing was created", logins.len()));
            return Err(EngineError::Invalid(problems));
        }
        Ok(starts)
    }

    /// Checks that `login` can get an account of process `pi`, given its user and newest
    /// account of that process as the store has them, and builds what creating it writes: the
    /// form, the first tasks, and which of them is called first.
    fn prepare(
        &mut self,
        bundle: &Bundle,
        pi: usize,
        login: &str,
        (user, existing): UserAndAccount,
        given: &BTreeMap<String, FormInput>,
    ) -> Result<Start, EngineError> {
        let process = Self::process_at(bundle, pi)?;
        let Some(user) = user else { return Err(self.unknown_user(login)?) };
        if user.status == "Deleted" {
            return Err(EngineError::Invalid(vec![format!(
                "user `{login}` is deleted; nothing can be provisioned for it"
            )]));
        }
        if let Some(existing) = existing {
            if existing.status != ObjectStatus::Revoked {
                return Err(EngineError::AccountExists {
                    process: process.name.clone(),
                    user: login.to_string(),
                    id: existing.id,
                    status: existing.status.as_str(),
                });
            }
        }
        let form = Self::build_form(process, &user, given)?;
        let mut first = Step::default();
        for i in Self::initial_tasks(bundle, process, &user, &form) {
            first.new_tasks.push(new_task(process, i, TaskStatus::Waiting, 1, None, ChildRow::new()));
        }
        start_pending(process, &[], &mut first, 0);
        // The first call's `calling` mark commits with the account, not in a transaction of its own.
        let marked = if self.target_is_store(bundle, process.target) {
            None
        } else {
            first.new_tasks.iter().position(|t| t.status == TaskStatus::Pending && !t.held && t.due_at.is_none())
        };
        if let Some(t) = marked.and_then(|i| first.new_tasks.get_mut(i)) {
            t.calling = true;
        }
        Ok(Start { login: login.to_string(), user, form, tasks: first.new_tasks, marked })
    }

    /// Creates the prepared accounts, [`Engine::batch`] per transaction, and runs each batch.
    fn provision_prepared(
        &mut self,
        bundle: &Bundle,
        pi: usize,
        starts: Vec<Start>,
    ) -> Result<Vec<AccountId>, EngineError> {
        // A bundle this engine already holds is in the store (saved or loaded by it): saving
        // it again would cost two durable writes per account when provisioning many.
        if !self.bundles.contains_key(&bundle.hash) {
            self.store.save_bundle(bundle)?;
            self.bundles.insert(bundle.hash.clone(), Rc::new(bundle.clone()));
        }
        let held = self.bundle(&bundle.hash)?;
        let process = Self::process_at(bundle, pi)?;
        let shared = self.target_is_store(bundle, process.target);
        // A target in the store's own file makes its call inside the next step's transaction,
        // which one account at a time can own.
        let batch = if shared { 1 } else { self.batch.max(1) };
        let mut ids = Vec::with_capacity(starts.len());
        let mut starts = starts.into_iter().peekable();
        while starts.peek().is_some() {
            let part: Vec<Start> = starts.by_ref().take(batch).collect();
            let runs = self.create(&held, pi, shared, part)?;
            let count = runs.len();
            ids.extend(runs.iter().map(|r| r.account.id));
            let driven = self.drive(runs);
            if let Some(progress) = self.progress.as_mut() {
                progress(count);
            }
            if let Err(e) = driven {
                if matches!(e, EngineError::TargetUnavailable { .. }) {
                    // Nothing reached the target: the rest wait for `resume` like the batch that failed.
                    let rest: Vec<Start> = starts.map(Start::unmarked).collect();
                    for part in rest.chunks(batch.max(64)) {
                        self.create(&held, pi, shared, part.to_vec())?;
                    }
                }
                return Err(e);
            }
        }
        Ok(ids)
    }

    /// Creates prepared accounts in one transaction; their runs, ready to drive.
    fn create(
        &mut self,
        bundle: &Rc<Bundle>,
        pi: usize,
        shared: bool,
        part: Vec<Start>,
    ) -> Result<Vec<Run>, EngineError> {
        let process = Self::process_at(bundle, pi)?;
        let new: Vec<NewAccount<'_>> = part
            .iter()
            .map(|s| NewAccount {
                process: &process.name,
                user: &s.login,
                bundle_hash: &bundle.hash,
                status: ObjectStatus::Provisioning,
                form: &s.form,
                tasks: &s.tasks,
            })
            .collect();
        let created = self.store.create_accounts(&self.actor, &new)?;
        let mut runs = Vec::with_capacity(part.len());
        for (s, (id, task_ids)) in part.into_iter().zip(created) {
            for (name, v) in &s.form {
                if let Value::Secret(secret) = v {
                    self.secrets.insert((id, name.clone()), secret.clone());
                }
            }
            let marked = s.marked.and_then(|i| task_ids.get(i).copied());
            let tasks = s.tasks.into_iter().zip(task_ids).map(|(t, task)| instance(id, task, t)).collect();
            let account = Account {
                id,
                process: process.name.clone(),
                user: s.login,
                bundle_hash: bundle.hash.clone(),
                status: ObjectStatus::Provisioning,
                form: s.form,
                children: BTreeMap::new(),
            };
            runs.push(Run {
                account,
                tasks,
                user: Some(s.user),
                bundle: bundle.clone(),
                process: pi,
                shared,
                carry: None,
                marked,
                fence: None,
                lost: false,
            });
        }
        Ok(runs)
    }

    /// What `provision` would do, without writing or sending anything.
    pub fn plan(
        &self,
        bundle: &Bundle,
        process_name: &str,
        user: &UserRecord,
        given: &BTreeMap<String, FormInput>,
    ) -> Result<Vec<PlannedTask>, EngineError> {
        let pi = Self::process_index(bundle, process_name)?;
        let process = Self::process_at(bundle, pi)?;
        let form = Self::build_form(process, user, given)?;
        let inserted = Self::initial_tasks(bundle, process, user, &form);
        let mut out = Vec::new();
        for &i in &inserted {
            let Some(task) = process.tasks.get(i) else { continue };
            let waiting = task.depends_on.iter().any(|d| inserted.contains(d));
            let status = if waiting { TaskStatus::Waiting } else { TaskStatus::Pending };
            let (sql, note) = match &task.action {
                TaskAction::Manual { assignee } => {
                    (None, Some(format!("manual: waits for {}", assignee.as_deref().unwrap_or("a person"))))
                }
                TaskAction::Adapter(adapter) => {
                    let ctx = Inputs {
                        bundle,
                        process,
                        user,
                        form: &form,
                        child: &ChildRow::new(),
                        tasks: &[],
                        today: clock::date(self.clock.now()),
                    };
                    match (query_of(bundle, process, adapter), ctx.values(adapter)) {
                        (Some((query, dialect)), Ok(values)) => match target::render(query, &values, dialect, true) {
                            Ok(r) => (Some(r.display()), None),
                            Err(e) => (None, Some(format!("would be refused: {}", e.message))),
                        },
                        (None, _) => (None, Some("the query is missing from the bundle".into())),
                        (_, Err(e)) => (None, Some(e)),
                    }
                }
            };
            out.push(PlannedTask {
                name: task.name.clone(),
                status,
                manual: matches!(task.action, TaskAction::Manual { .. }),
                sql,
                note,
            });
        }
        Ok(out)
    }

    // ----- the run loop -------------------------------------------------------------------

    /// Runs one account until no task can run now: promotes waiting tasks, runs due pending
    /// adapter tasks, settles recovery and completion (see [`Engine::drive`]).
    pub fn run_account(&mut self, id: AccountId) -> Result<(), EngineError> {
        if self.defer {
            return Ok(());
        }
        let run = self.load_run(id)?;
        self.drive(vec![run])
    }

    /// An account and its tasks, read once, ready to drive.
    fn load_run(&mut self, id: AccountId) -> Result<Run, EngineError> {
        let account = self
            .store
            .account(id)?
            .ok_or(EngineError::NoAccount { process: "?".into(), user: format!("account #{id}") })?;
        let tasks = self.store.tasks_of(id)?;
        let bundle = self.bundle(&account.bundle_hash)?;
        let (process, def) = bundle
            .process(&account.process)
            .ok_or_else(|| EngineError::UnknownProcess { name: account.process.clone(), suggestion: None })?;
        let shared = self.target_is_store(&bundle, def.target);
        Ok(Run {
            account,
            tasks,
            user: None,
            bundle,
            process,
            shared,
            carry: None,
            marked: None,
            fence: None,
            lost: false,
        })
    }

    /// Runs accounts side by side until none can run now.
    ///
    /// Each run's account and tasks are kept up to date in memory. A round first decides, for
    /// every run, what to commit: the outcome of its last call with what follows from it
    /// (promotions, generated tasks, recovery, completion, status maps, notifications) and the
    /// `calling` mark of its next call. All of that commits in one transaction; then each run
    /// makes its call, one target transaction each. So every account's transitions are
    /// committed before its next call starts, and the state store pays one commit per round
    /// for all the runs of a batch instead of one per call. After a crash in the middle of a
    /// round, every call marked in that round may have happened: `resume` re-runs the
    /// idempotent ones and hands the others to a person, so a batch of one keeps that set to a
    /// single call.
    fn drive(&mut self, mut runs: Vec<Run>) -> Result<(), EngineError> {
        // Every round moves each run on or ends it; the bound only guards against a definition
        // that generates tasks forever.
        for _ in 0..10_000 {
            if runs.is_empty() {
                return Ok(());
            }
            let mut nexts = Vec::with_capacity(runs.len());
            let mut written = Vec::new();
            let mut steps = Vec::new();
            for (i, run) in runs.iter_mut().enumerate() {
                let (step, next) = self.round(run);
                nexts.push(next);
                if !step.is_empty() {
                    written.push(i);
                    steps.push(step);
                }
            }
            if !steps.is_empty() {
                self.commit_round(&mut runs, written, steps)?;
            }
            for i in 0..runs.len() {
                let (Some(Next::Call(task)), Some(run)) = (nexts.get(i).copied(), runs.get_mut(i)) else { continue };
                if run.lost {
                    continue;
                }
                if let Err(e) = self.call(run, task) {
                    self.settle_after_failure(&mut runs, i);
                    return Err(e);
                }
            }
            let mut k = 0;
            runs.retain(|run| {
                k += 1;
                !run.lost && !matches!(nexts.get(k - 1), Some(Next::Done))
            });
        }
        Ok(())
    }

    /// After the call of `runs[failed]` failed in the middle of a round: the outcomes of the
    /// calls already made this round are committed (they happened), and every other run's
    /// mark of a call that never started comes off, so that `resume` neither loses the former
    /// nor hands the latter to a person. Best effort: the failed call's error is the one to
    /// report, and if the store fails here too, `resume` still finds the marks and is careful.
    fn settle_after_failure(&mut self, runs: &mut [Run], failed: usize) {
        let made: Vec<usize> = (0..failed).filter(|&k| runs.get(k).is_some_and(|r| r.carry.is_some())).collect();
        let steps: Vec<Step> = made.iter().filter_map(|&k| runs.get_mut(k)?.carry.take()).collect();
        if !steps.is_empty() {
            let _ = self.commit_round(runs, made, steps);
        }
        for k in (0..runs.len()).filter(|&k| k != failed) {
            let Some(run) = runs.get(k).filter(|r| !r.lost) else { continue };
            if let Some(t) = run.marked {
                let step = Step { uncalling: vec![t], ..self.step(&run.account) };
                let fence = run.fence.clone();
                let _ = self.write_marks(fence.as_ref(), step);
            }
        }
    }

    /// Commits one round's steps, `steps[k]` of `runs[written[k]]`, and takes in what they
    /// wrote. A worker's commit is fenced by the claims of the runs: a run whose claim was
    /// taken is dropped from the round (it commits and calls nothing more) and the rest
    /// commit without it.
    fn commit_round(
        &mut self,
        runs: &mut [Run],
        mut written: Vec<usize>,
        mut steps: Vec<Step>,
    ) -> Result<(), EngineError> {
        loop {
            let result = if self.holder.is_some() {
                let fences: Vec<Fence> = written.iter().filter_map(|&i| runs.get(i)?.fence.clone()).collect();
                self.store.commit_steps_fenced(&steps, &fences)
            } else {
                self.store.commit_steps(&steps)
            };
            match result {
                Ok(ids) => {
                    for ((i, step), ids) in written.into_iter().zip(steps).zip(ids) {
                        self.emit_transitions(&step);
                        if let Some(run) = runs.get_mut(i) {
                            run.committed(step, ids);
                        }
                    }
                    return Ok(());
                }
                Err(StoreError::Fenced { task, epoch, held_by, current }) => {
                    let at = written
                        .iter()
                        .position(|&i| runs.get(i).and_then(|r| r.fence.as_ref()).is_some_and(|f| f.task == task));
                    let Some(at) = at else { return Err(StoreError::Fenced { task, epoch, held_by, current }.into()) };
                    let i = written.remove(at);
                    steps.remove(at);
                    if let Some(run) = runs.get_mut(i) {
                        run.lost = true;
                        self.emit(Event::Fenced { account: run.account.id, task, epoch, held_by });
                    }
                    if steps.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Commits a step that only moves `calling` marks, fenced by `fence` when there is one;
    /// `false` when the claim is gone (nothing was written).
    fn write_marks(&mut self, fence: Option<&Fence>, step: Step) -> Result<bool, EngineError> {
        match fence {
            None => {
                self.store.commit(&step)?;
                Ok(true)
            }
            Some(f) => match self.store.commit_steps_fenced(std::slice::from_ref(&step), std::slice::from_ref(f)) {
                Ok(_) => Ok(true),
                Err(StoreError::Fenced { task, epoch, held_by, .. }) => {
                    self.emit(Event::Fenced { account: step.account, task, epoch, held_by });
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Decides one round of `run`: the step to commit, and what follows the commit.
    fn round(&self, run: &mut Run) -> (Step, Next) {
        let bundle = run.bundle.clone();
        let Some(process) = bundle.processes.get(run.process) else { return (self.step(&run.account), Next::Done) };
        let mut step = run.carry.take().unwrap_or_else(|| self.step(&run.account));
        if !step.new_tasks.is_empty() {
            // New tasks have no ids yet: they commit before the next round looks further,
            // with the next call's `calling` mark when nothing else follows from them.
            if !run.shared {
                self.rules(&bundle, process).mark_with_inserts(&run.account, &run.tasks, run.marked, &mut step);
            }
            return (step, Next::Again);
        }
        self.rules(&bundle, process).derive(&mut run.account, &mut run.tasks, &mut step);
        let found = next_call(process, &run.tasks, run.marked, self.clock.now());
        if let Some(t) = found.filter(|t| !run.shared && run.marked != Some(*t)) {
            // Committed before the call: after a crash, `resume` knows the call may have happened.
            step.calling = Some(t);
        }
        (step, found.map_or(Next::Done, Next::Call))
    }

    /// Makes `run`'s call of `task` and keeps its outcome for the next round to commit.
    fn call(&mut self, run: &mut Run, task: TaskId) -> Result<(), EngineError> {
        let Some(inst) = run.tasks.iter().find(|t| t.id == task).cloned() else { return Ok(()) };
        let carry = self.execute(run, &inst)?;
        run.marked = None;
        apply_in_memory(&mut run.account, &mut run.tasks, &carry);
        run.carry = Some(carry);
        Ok(())
    }

    /// The engine's rules for `process` of `bundle`, at this moment, for this actor.
    fn rules<'x>(&'x self, bundle: &'x Bundle, process: &'x ir::Process) -> Rules<'x> {
        Rules { bundle, process, now: self.clock.now(), actor: &self.actor }
    }

    /// A new step for `account`, in this actor's name.
    fn step(&self, account: &Account) -> Step {
        Step { account: account.id, actor: self.actor.clone(), ..Step::default() }
    }

    /// Runs one pending adapter task of `run` against its target and returns the step that
    /// records the outcome, for the next round to commit (with what follows from it) before
    /// anything else touches the store. The run's user is read once and kept for its calls.
    fn execute(&mut self, run: &mut Run, inst: &TaskInstance) -> Result<Step, EngineError> {
        let bundle = run.bundle.clone();
        let Run { account, tasks, user, marked, shared, fence, lost, .. } = run;
        let (account, tasks, shared) = (&*account, tasks.as_slice(), *shared);
        let Some(process) = bundle.processes.get(run.process) else { return Ok(self.step(account)) };
        let bundle = bundle.as_ref();
        let empty = self.step(account);
        let Some(def) = process.tasks.get(inst.task_index) else { return Ok(empty) };
        let TaskAction::Adapter(adapter) = &def.action else { return Ok(empty) };
        let Some((query, _)) = query_of(bundle, process, adapter) else {
            return Ok(self.held_step(account, inst, "the task's query is missing from the bundle".into()));
        };
        let user = match user {
            Some(u) => u,
            None => user.insert(self.user(&account.user)?),
        };
        let mut form = account.form.clone();
        for ((_, name), s) in
            self.secrets.range((account.id, String::new())..).take_while(|((acc, _), _)| *acc == account.id)
        {
            form.insert(name.clone(), Value::Secret(s.clone()));
        }
        let inputs = Inputs {
            bundle,
            process,
            user,
            form: &form,
            child: &inst.child,
            tasks,
            today: clock::date(self.clock.now()),
        };
        let values = match inputs.values(adapter) {
            Ok(v) => v,
            Err(why) => return Ok(self.held_step(account, inst, why)),
        };
        let target_name = bundle.targets.get(process.target).map(|t| t.name.clone()).unwrap_or_default();
        let result = if shared {
            // The target is the state store's own database: the call runs in the transaction
            // that the `commit` below finishes with the transition, so both happen or neither.
            let procedures = bundle
                .targets
                .get(process.target)
                .and_then(|t| bundle.query_sets.get(t.query_set))
                .map(|q| q.procedures.as_slice())
                .unwrap_or_default();
            let mut result = None;
            self.store.call_in_step(&mut |conn| {
                result = Some(crate::target::call_sqlite(conn, procedures, query, &values));
            })?;
            test_pause();
            result.ok_or(StoreError::NoSharedTransactions)?
        } else {
            if let Err(e) = self.targets.open(bundle, process.target) {
                // Nothing reached the target: the task is not an attempt, it waits for `resume`.
                if *marked == Some(inst.id) {
                    let step = Step { uncalling: vec![inst.id], ..self.step(account) };
                    self.write_marks(fence.as_ref(), step)?;
                    *marked = None;
                }
                return Err(EngineError::TargetUnavailable { target: target_name, message: e.message });
            }
            if *marked != Some(inst.id) {
                // Committed before the call: after a crash, `resume` knows the call may have
                // happened. The run loop commits it with the previous step; this is the rest.
                let step = Step { calling: Some(inst.id), ..self.step(account) };
                if !self.write_marks(fence.as_ref(), step)? {
                    *lost = true;
                    return Ok(empty);
                }
            }
            // Before the lease check, not between it and the call: a process paused here
            // (the hook's sleep, a SIGSTOP) must find its lease gone when it wakes up.
            test_pause();
            let cap = bundle.targets.get(process.target).and_then(|t| t.max_concurrent_calls);
            let Some(slot) = self.call_slot(fence.as_ref(), &target_name, cap)? else {
                // The worker is stopping or cannot trust its lease any more: the call does not
                // start, and its mark comes off (refused if the claim is gone: then the mark
                // is the new holder's to judge).
                *lost = true;
                let step = Step { uncalling: vec![inst.id], ..self.step(account) };
                self.write_marks(fence.as_ref(), step)?;
                self.emit(Event::Abandoned { account: account.id, task: inst.id });
                return Ok(empty);
            };
            let started = std::time::Instant::now();
            let result = match self.targets.open(bundle, process.target) {
                Ok(t) => t.call(query, &values),
                Err(e) => Err(e),
            };
            let elapsed = started.elapsed();
            self.release_slot(&target_name, slot);
            self.emit(Event::Called { target: target_name.clone(), elapsed, ok: result.is_ok() });
            test_pause();
            result
        };
        let (code, outputs, note) = match &result {
            Ok(CallOutcome { outputs, .. }) => {
                let code = query
                    .response_from
                    .and_then(|i| query.params.get(i))
                    .and_then(|p| outputs.get(&p.name))
                    .and_then(|v| v.as_plain_text())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "SUCCESS".to_string());
                let outs = outputs.iter().filter_map(|(k, v)| v.as_plain_text().map(|t| (k.clone(), t))).collect();
                (code, outs, None)
            }
            Err(e) => {
                let code = e.response(query).cloned().unwrap_or_else(|| "UNKNOWN".into());
                (code, BTreeMap::new(), Some(format!("target `{target_name}` refused `{}`: {e}", query.name)))
            }
        };
        let response = def.responses.iter().find(|r| r.code == code);
        let status = match response {
            Some(r) => r.status,
            None if code == "SUCCESS" => TaskStatus::Completed,
            None => TaskStatus::Rejected,
        };
        let mut step = self.step(account);
        step.transitions.push(Transition {
            task: inst.id,
            to: status,
            response: Some(code),
            note,
            held: false,
            outputs,
        });
        if let Some(r) = response {
            self.rules(bundle, process).insert(tasks, &r.generate, &inst.child, &mut step);
        }
        self.rules(bundle, process).on_status(account, tasks, inst, status, &mut step);
        Ok(step)
    }

    /// Whether the sqlite target `index` lives in the state store's own file.
    fn target_is_store(&mut self, bundle: &Bundle, index: usize) -> bool {
        let key = (bundle.hash.clone(), index);
        if let Some(known) = self.store_targets.get(&key) {
            return *known;
        }
        let (Some(store), Some(target)) = (self.store.sqlite_file(), self.targets.sqlite_file(bundle, index)) else {
            return false;
        };
        // Both exist when they are the same file (the store is open), so canonical paths
        // compare them; a target file that does not exist yet is not the store's either.
        let same = match (std::fs::canonicalize(store), std::fs::canonicalize(&target)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        self.store_targets.insert(key, same);
        same
    }

    /// Leaves a task Pending for a person, with a note saying why and what to do.
    fn held_step(&self, account: &Account, inst: &TaskInstance, why: String) -> Step {
        let mut step = self.step(account);
        step.transitions.push(Transition {
            task: inst.id,
            to: TaskStatus::Pending,
            response: None,
            note: Some(format!(
                "{why}; handed to a person: fix it, then `provflow task retry {id}`, or do it by hand and `provflow task complete {id}`",
                id = inst.id
            )),
            held: true,
            outputs: BTreeMap::new(),
        });
        step
    }

    /// Finishes all unfinished work: calls interrupted by a crash, due retries, waiting tasks.
    pub fn resume(&mut self) -> Result<Vec<AccountId>, EngineError> {
        let mut touched = Vec::new();
        for t in self.store.tasks(Some(TaskStatus::Pending))?.into_iter().filter(|t| t.calling) {
            let account = self.store.account(t.account)?.ok_or(EngineError::UnknownTask(t.id))?;
            let bundle = self.bundle(&account.bundle_hash)?;
            let process = Self::process_of(&bundle, &account)?;
            let (step, _) = self.interrupted(&bundle, process, &account, std::slice::from_ref(&t));
            self.store.commit(&step)?;
        }
        let open: Vec<AccountId> = {
            let mut ids: Vec<AccountId> = self
                .store
                .tasks(None)?
                .into_iter()
                .filter(|t| {
                    matches!(t.status, TaskStatus::Waiting | TaskStatus::Pending) || t.status == TaskStatus::Rejected
                })
                .map(|t| t.account)
                .collect();
            ids.dedup();
            ids.sort();
            ids.dedup();
            ids
        };
        // Side by side, a batch at a time; a target in the store's own file, one at a time.
        let mut runs = Vec::new();
        for id in open {
            let run = self.load_run(id)?;
            touched.push(id);
            if run.shared {
                self.drive(vec![run])?;
                continue;
            }
            runs.push(run);
            if runs.len() >= self.batch.max(1) {
                self.drive(std::mem::take(&mut runs))?;
            }
        }
        self.drive(runs)?;
        Ok(touched)
    }

    /// When the next retry is due, if any automatic task waits for one.
    pub fn next_due(&self) -> Result<Option<clock::Instant>, EngineError> {
        Ok(self.store.tasks(Some(TaskStatus::Pending))?.iter().filter(|t| !t.held).filter_map(|t| t.due_at).min())
    }

    // ----- people acting on tasks ---------------------------------------------------------

    fn load_task(&mut self, id: TaskId) -> Result<(TaskInstance, Account, Rc<Bundle>), EngineError> {
        let inst = self.store.task(id)?.ok_or(EngineError::UnknownTask(id))?;
        let account = self.store.account(inst.account)?.ok_or(EngineError::UnknownTask(id))?;
        let bundle = self.bundle(&account.bundle_hash)?;
        Ok((inst, account, bundle))
    }

    /// `task complete|reject`: a person decides a pending task.
    pub fn decide(&mut self, id: TaskId, complete: bool, response: Option<&str>) -> Result<AccountId, EngineError> {
        let (inst, account, bundle) = self.load_task(id)?;
        let process = Self::process_of(&bundle, &account)?;
        let def = process.tasks.get(inst.task_index).ok_or(EngineError::UnknownTask(id))?;
        if inst.status != TaskStatus::Pending {
            let why = if inst.status == TaskStatus::Waiting {
                "it waits for the tasks it depends on".to_string()
            } else {
                "only a Pending task can be completed or rejected".to_string()
            };
            return Err(EngineError::NotActionable { id, name: inst.task_name, status: inst.status.as_str(), why });
        }
        let manual = matches!(def.action, TaskAction::Manual { .. });
        let code =
            response.map(str::to_string).unwrap_or_else(|| if complete { "SUCCESS".into() } else { "UNKNOWN".into() });
        let declared = def.responses.iter().find(|r| r.code == code);
        if declared.is_none() && code != "SUCCESS" && code != "UNKNOWN" {
            let codes: Vec<&str> = def.responses.iter().map(|r| r.code.as_str()).collect();
            let s = did_you_mean(&code, codes.iter().copied());
            let known = if codes.is_empty() { "none".to_string() } else { codes.join(", ") };
            return Err(EngineError::Invalid(vec![format!(
                "`{}` declares no response `{code}`{} (declared: {known}; SUCCESS and UNKNOWN always work)",
                def.name,
                hint(&s)
            )]));
        }
        let status = match (declared, complete) {
            // A person finishing an automatic task's work by hand: Manually Completed.
            (Some(r), true) if !manual && response.is_none() && r.status == TaskStatus::Completed => {
                TaskStatus::ManuallyCompleted
            }
            (Some(r), _) => r.status,
            (None, true) if manual => TaskStatus::Completed,
            (None, true) => TaskStatus::ManuallyCompleted,
            (None, false) => TaskStatus::Rejected,
        };
        if complete != !matches!(status, TaskStatus::Rejected | TaskStatus::Cancelled) {
            return Err(EngineError::Invalid(vec![format!(
                "response `{code}` of `{}` sets the status {}; use `provflow task {} {id} --response {code}`",
                def.name,
                status.as_str(),
                if complete { "reject" } else { "complete" }
            )]));
        }
        let tasks = self.store.tasks_of(account.id)?;
        let mut step = self.step(&account);
        step.transitions.push(Transition {
            task: id,
            to: status,
            response: Some(code),
            note: None,
            held: false,
            outputs: BTreeMap::new(),
        });
        if let Some(r) = declared {
            self.rules(&bundle, process).insert(&tasks, &r.generate, &inst.child, &mut step);
        }
        self.rules(&bundle, process).on_status(&account, &tasks, &inst, status, &mut step);
        self.store.commit(&step)?;
        self.run_account(account.id)?;
        Ok(account.id)
    }

    /// `task cancel`: Waiting tasks, Pending ones that allow it, and completed work (whose
    /// undo tasks then run).
    pub fn cancel(&mut self, id: TaskId) -> Result<AccountId, EngineError> {
        let (inst, account, bundle) = self.load_task(id)?;
        let process = Self::process_of(&bundle, &account)?;
        let def = process.tasks.get(inst.task_index).ok_or(EngineError::UnknownTask(id))?;
        let allowed = match inst.status {
            TaskStatus::Waiting | TaskStatus::Completed | TaskStatus::ManuallyCompleted => true,
            TaskStatus::Pending => def.allow_cancellation_while_pending || inst.held,
            _ => false,
        };
        if !allowed {
            let why = if inst.status == TaskStatus::Pending {
                format!("`{}` does not set `allow_cancellation_while_pending`", def.name)
            } else {
                "it is already final".to_string()
            };
            return Err(EngineError::NotActionable { id, name: inst.task_name, status: inst.status.as_str(), why });
        }
        let tasks = self.store.tasks_of(account.id)?;
        let mut step = self.step(&account);
        step.transitions.push(Transition {
            task: id,
            to: TaskStatus::Cancelled,
            response: None,
            note: None,
            held: false,
            outputs: BTreeMap::new(),
        });
        self.rules(&bundle, process).on_status(&account, &tasks, &inst, TaskStatus::Cancelled, &mut step);
        self.store.commit(&step)?;
        self.run_account(account.id)?;
        Ok(account.id)
    }

    /// `task retry`: a new attempt of a rejected task now, or a held task released to run.
    pub fn retry(&mut self, id: TaskId) -> Result<AccountId, EngineError> {
        let (inst, account, bundle) = self.load_task(id)?;
        let process = Self::process_of(&bundle, &account)?;
        let tasks = self.store.tasks_of(account.id)?;
        let mut step = self.step(&account);
        match inst.status {
            TaskStatus::Pending
                if inst.held
                    && !matches!(
                        process.tasks.get(inst.task_index).map(|t| &t.action),
                        Some(TaskAction::Manual { .. })
                    ) =>
            {
                step.transitions.push(Transition {
                    task: id,
                    to: TaskStatus::Pending,
                    response: None,
                    note: Some("released by a person to run again".into()),
                    held: false,
                    outputs: BTreeMap::new(),
                });
            }
            TaskStatus::Rejected => {
                if tasks.iter().any(|t| t.task_index == inst.task_index && t.id > inst.id && is_open(t.status)) {
                    return Err(EngineError::NotActionable {
                        id,
                        name: inst.task_name,
                        status: "Rejected",
                        why: "a newer attempt is already open".into(),
                    });
                }
                let mut t =
                    new_task(process, inst.task_index, TaskStatus::Pending, inst.attempt + 1, None, inst.child.clone());
                t.note = Some(format!("retry of #{id} asked for by a person"));
                step.new_tasks.push(t);
            }
            other => {
                return Err(EngineError::NotActionable {
                    id,
                    name: inst.task_name,
                    status: other.as_str(),
                    why: "only a Rejected task, or an automatic one handed to a person, can be retried".into(),
                })
            }
        }
        self.store.commit(&step)?;
        self.run_account(account.id)?;
        Ok(account.id)
    }

    // ----- accounts -----------------------------------------------------------------------

    pub fn account(&self, process: &str, user: &str) -> Result<Account, EngineError> {
        if let Some(a) = self.store.find_account(process, user)? {
            return Ok(a);
        }
        let accounts = self.store.accounts()?;
        if !accounts.iter().any(|a| a.process == process) {
            let mut names: Vec<&str> = accounts.iter().map(|a| a.process.as_str()).collect();
            names.dedup();
            if let Some(s) = did_you_mean(process, names) {
                return Err(EngineError::UnknownProcess { name: process.into(), suggestion: Some(s.to_string()) });
            }
        }
        if self.store.user(user)?.is_none() {
            self.user(user)?;
        }
        Err(EngineError::NoAccount { process: process.into(), user: user.into() })
    }

    /// `account set`: changes form fields and runs their `"<label> Updated"` tasks.
    pub fn set_form(
        &mut self,
        process: &str,
        user: &str,
        given: &BTreeMap<String, FormInput>,
    ) -> Result<AccountId, EngineError> {
        let mut account = self.account(process, user)?;
        let bundle = self.bundle(&account.bundle_hash)?;
        let def = Self::process_of(&bundle, &account)?;
        let user_rec = self.user(user)?;
        // Validate as a complete form so that types and secrecy rules are the same as at provisioning.
        let mut merged: BTreeMap<String, FormInput> = account
            .form
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Secret(s) => Some((k.clone(), FormInput::Secret(s.clone()))),
                Value::Null => None,
                other => Some((k.clone(), FormInput::Plain(other.display()))),
            })
            .collect();
        for ((acc, name), s) in &self.secrets {
            if *acc == account.id {
                merged.insert(name.clone(), FormInput::Secret(s.clone()));
            }
        }
        merged.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut problems = Vec::new();
        for name in given.keys() {
            if !def.form.fields.iter().any(|f| &f.name == name) {
                let s = did_you_mean(name, def.form.fields.iter().map(|f| f.name.as_str()));
                problems.push(format!("`{}` has no form field `{name}`{}", def.name, hint(&s)));
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let form = match Self::build_form(def, &user_rec, &merged) {
            Ok(f) => f,
            // A secret lost for want of a key is not the fault of this change.
            Err(EngineError::Invalid(p)) => {
                let p: Vec<String> = p.into_iter().filter(|m| !m.contains("is required")).collect();
                if !p.is_empty() {
                    return Err(EngineError::Invalid(p));
                }
                let mut f = account.form.clone();
                for (k, v) in given {
                    f.insert(
                        k.clone(),
                        match v {
                            FormInput::Secret(s) => Value::Secret(s.clone()),
                            FormInput::Plain(t) => Value::Text(t.clone()),
                        },
                    );
                }
                f
            }
            Err(e) => return Err(e),
        };
        let changed: Vec<String> = given
            .keys()
            .filter(|k| match (form.get(*k), account.form.get(*k)) {
                (Some(Value::Secret(_)), _) => true,
                (a, b) => a != b,
            })
            .cloned()
            .collect();
        for (k, v) in given {
            if let FormInput::Secret(s) = v {
                self.secrets.insert((account.id, k.clone()), s.clone());
            }
        }
        account.form = form;
        let tasks = self.store.tasks_of(account.id)?;
        let indices: Vec<usize> = def
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.updates_field.as_ref().is_some_and(|f| changed.contains(f)))
            .map(|(i, _)| i)
            .collect();
        let mut step = self.step(&account);
        self.rules(&bundle, def).insert(&tasks, &indices, &ChildRow::new(), &mut step);
        // The new form and the tasks it causes commit together: a crash keeps both or neither.
        self.store.commit_change(&Change { user: None, form: Some(&account), steps: vec![step] })?;
        self.run_account(account.id)?;
        Ok(account.id)
    }

    /// `account child add|remove`: a child-table row, running `on_insert`/`on_delete`.
    pub fn child(
        &mut self,
        process: &str,
        user: &str,
        table: &str,
        row: ChildRow,
        add: bool,
    ) -> Result<AccountId, EngineError> {
        let mut account = self.account(process, user)?;
        let bundle = self.bundle(&account.bundle_hash)?;
        let def = Self::process_of(&bundle, &account)?;
        let Some(child_table) = def.form.child_tables.iter().find(|c| c.name == table) else {
            let s = did_you_mean(table, def.form.child_tables.iter().map(|c| c.name.as_str()));
            return Err(EngineError::Invalid(vec![format!("`{}` has no child table `{table}`{}", def.name, hint(&s))]));
        };
        let mut problems = Vec::new();
        for (k, v) in &row {
            match child_table.fields.iter().find(|f| &f.name == k) {
                None => {
                    let s = did_you_mean(k, child_table.fields.iter().map(|f| f.name.as_str()));
                    problems.push(format!("child table `{table}` has no field `{k}`{}", hint(&s)));
                }
                Some(f) if f.ty.is_secret() => {
                    problems.push(format!("child field `{k}` is a secret; child rows cannot carry secrets yet"))
                }
                Some(f) => {
                    if let Err(e) = value::typed(f.ty, v) {
                        problems.push(format!("child field `{k}`: {e}"));
                    }
                }
            }
        }
        for f in child_table.fields.iter().filter(|f| f.required && !row.contains_key(&f.name)) {
            problems.push(format!("child field `{}` is required: add {}=VALUE", f.name, f.name));
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let rows = account.children.entry(table.to_string()).or_default();
        if add {
            if rows.contains(&row) {
                return Err(EngineError::Invalid(vec![format!("`{table}` already has this row")]));
            }
            rows.push(row.clone());
        } else {
            let Some(pos) = rows.iter().position(|r| r == &row) else {
                return Err(EngineError::Invalid(vec![format!(
                    "`{table}` has no such row; see `provflow account show`"
                )]));
            };
            rows.remove(pos);
        }
        let task = if add { child_table.on_insert } else { child_table.on_delete };
        let tasks = self.store.tasks_of(account.id)?;
        let mut step = self.step(&account);
        if let Some(i) = task {
            self.rules(&bundle, def).insert(&tasks, &[i], &row, &mut step);
        }
        // The row and the task it causes commit together: a crash keeps both or neither.
        self.store.commit_change(&Change { user: None, form: Some(&account), steps: vec![step] })?;
        self.run_account(account.id)?;
        Ok(account.id)
    }

    // ----- the user lifecycle -------------------------------------------------------------

    pub fn create_user(
        &mut self,
        bundle: &Bundle,
        login: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if login.trim().is_empty() {
            return Err(EngineError::Invalid(vec!["a user needs a login".into()]));
        }
        // A login travels into terminals, mail headers, file names and target SQL: no
        // control characters (newlines, ESC), no bidirectional overrides.
        if login.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')) {
            return Err(EngineError::Invalid(vec![format!(
                "the login {login:?} contains a control or bidirectional-override character; logins are printable text"
            )]));
        }
        if self.store.user(login)?.is_some() {
            return Err(EngineError::UserExists(login.to_string()));
        }
        let mut attributes = normalize_attrs(&bundle.user_schema, attrs);
        attributes.insert("usr_login".into(), login.to_string());
        generate_display_name(&mut attributes);
        check_user(&bundle.user_schema, &attributes, true)?;
        let future_start = attributes.get("usr_start_date").and_then(|d| value::wall_clock(d)).is_some_and(|start| {
            // Canonical dates (`YYYY-MM-DD`, years 0001 to 9999) sort as text.
            start.date().to_string() > clock::date(self.clock.now())
        });
        let status = if future_start { "Disabled Until Start Date" } else { "Active" };
        // A bundle this engine already holds is in the store (see `provision`).
        if !bundle.hash.is_empty() && !self.bundles.contains_key(&bundle.hash) {
            self.store.save_bundle(bundle)?;
            self.bundles.insert(bundle.hash.clone(), Rc::new(bundle.clone()));
        }
        self.store.insert_user(&UserRecord {
            login: login.to_string(),
            attributes,
            status: status.into(),
            locked: false,
        })?;
        Ok(())
    }

    /// `user modify`: changes attributes and inserts the `triggers` tasks of every account.
    pub fn modify_user(
        &mut self,
        bundle: &Bundle,
        login: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<Vec<AccountId>, EngineError> {
        let mut user = self.user(login)?;
        if attrs.contains_key("usr_login") && attrs.get("usr_login").map(String::as_str) != Some(login) {
            return Err(EngineError::Invalid(vec!["`usr_login` cannot change; create a new user instead".into()]));
        }
        let attrs = &normalize_attrs(&bundle.user_schema, attrs);
        let mut attributes = user.attributes.clone();
        attributes.extend(attrs.clone());
        if !attrs.contains_key("usr_display_name")
            && (attrs.contains_key("usr_first_name") || attrs.contains_key("usr_last_name"))
        {
            attributes.remove("usr_display_name");
        }
        generate_display_name(&mut attributes);
        check_user(&bundle.user_schema, &attributes, false)?;
        let changed: Vec<String> =
            attributes.iter().filter(|(k, v)| user.attributes.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
        user.attributes = attributes;
        self.for_each_account(
            &user,
            |process, _, _| {
                process.triggers.iter().filter(|t| changed.contains(&t.attribute)).map(|t| t.task).collect()
            },
            None,
        )
    }

    pub fn set_user_status(&mut self, login: &str, status: &str) -> Result<Vec<AccountId>, EngineError> {
        let mut user = self.user(login)?;
        let previous = user.status.clone();
        if previous == "Deleted" {
            return Err(EngineError::Invalid(vec![format!("user `{login}` is deleted")]));
        }
        if previous == status {
            return Err(EngineError::Invalid(vec![format!("user `{login}` is already {status}")]));
        }
        user.status = status.to_string();
        match status {
            "Disabled" => self.for_each_account(
                &user,
                |process, account, _| {
                    if !matches!(account.status, ObjectStatus::Provisioned | ObjectStatus::Enabled) {
                        return vec![];
                    }
                    effect_tasks(process, Effect::Disables)
                },
                None,
            ),
            "Active" => self.for_each_account(
                &user,
                |process, account, _| {
                    if account.status != ObjectStatus::Disabled {
                        return vec![];
                    }
                    effect_tasks(process, Effect::Enables)
                },
                None,
            ),
            "Deleted" => self.for_each_account(
                &user,
                |process, account, tasks| {
                    if account.status == ObjectStatus::Revoked {
                        return vec![];
                    }
                    revoke_path(process, tasks)
                },
                Some(ObjectStatus::Revoked),
            ),
            _ => {
                self.store.update_user(&user)?;
                Ok(vec![])
            }
        }
    }

    pub fn set_user_locked(&mut self, login: &str, locked: bool) -> Result<(), EngineError> {
        let mut user = self.user(login)?;
        user.locked = locked;
        self.store.update_user(&user)?;
        Ok(())
    }

    /// Commits the changed `user` together with `pick`'s tasks inserted into each of the
    /// user's accounts (one transaction: a crash keeps the change and all its tasks, or
    /// neither), then runs them. With `fallback`, an account for which `pick` finds nothing is
    /// set to that status directly.
    fn for_each_account(
        &mut self,
        user: &UserRecord,
        pick: impl Fn(&ir::Process, &Account, &[TaskInstance]) -> Vec<usize>,
        fallback: Option<ObjectStatus>,
    ) -> Result<Vec<AccountId>, EngineError> {
        let accounts: Vec<Account> = self.store.accounts()?.into_iter().filter(|a| a.user == user.login).collect();
        let mut steps = Vec::new();
        for account in accounts {
            let bundle = self.bundle(&account.bundle_hash)?;
            let Ok(process) = Self::process_of(&bundle, &account) else { continue };
            let tasks = self.store.tasks_of(account.id)?;
            let indices = pick(process, &account, &tasks);
            let mut step = self.step(&account);
            self.rules(&bundle, process).insert(&tasks, &indices, &ChildRow::new(), &mut step);
            if step.new_tasks.is_empty() && indices.is_empty() && account.status != ObjectStatus::Revoked {
                step.account_status = fallback;
            }
            if !step.is_empty() {
                steps.push(step);
            }
        }
        let touched: Vec<AccountId> = steps.iter().map(|s| s.account).collect();
        self.store.commit_change(&Change { user: Some(user), form: None, steps })?;
        for &id in &touched {
            self.run_account(id)?;
        }
        Ok(touched)
    }
}

/// A test hook, off unless `PROVFLOW_TEST_STEP_DELAY_MS` is set: sleeps that many
/// milliseconds around each target call, to widen the window in which the durability test's
/// SIGKILL lands between a call and its recorded transition. It only slows a run down; it
/// changes no outcome.
fn test_pause() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("PROVFLOW_TEST_STEP_DELAY_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}

#[cfg(test)]
mod commit_tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::SqliteStore;

    /// Transactions in a state store's WAL: its frames that end a commit.
    fn commits_in_wal(db: &std::path::Path) -> usize {
        let wal = std::fs::read(db.with_extension("db-wal")).unwrap_or_default();
        let Some(page) = wal.get(8..12).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return 0;
        };
        wal.get(32..).unwrap_or_default().chunks_exact(24 + page).filter(|frame| frame[4..8] != [0, 0, 0, 0]).count()
    }

    #[test]
    fn a_generated_task_is_marked_calling_in_the_commit_that_inserts_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../definitions");
        let compiled = provflow_compiler::compile_paths(&provflow_compiler::source::FsReader, &[root]).unwrap();
        let bundle = compiled.bundle.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let mut store = SqliteStore::open(&state, None, Box::new(|| 1_900_000_000)).unwrap();
        let target = format!("sqlite:{}", dir.path().join("dbum.db").display());
        let mut targets = Targets::new(BTreeMap::from([("dbum-sqlite".to_string(), target)]), dir.path().into());
        let (index, t) = bundle.target("dbum-sqlite").unwrap();
        for sql in &bundle.query_sets[t.query_set].install {
            targets.open(&bundle, index).unwrap().install(&sql.sql).unwrap();
        }
        let clock = ManualClock::new(1_900_000_000);
        let mut engine = Engine::new(&mut store, &mut targets, &clock);
        let form = BTreeMap::from([("password".to_string(), FormInput::Secret(Secret::new("pw")))]);
        let attrs = BTreeMap::from([("usr_udf_cost_center".to_string(), "CC-1".to_string())]);
        let mut per_account = vec![];
        for login in ["JDOE", "ASMITH"] {
            engine.create_user(&bundle, login, &attrs).unwrap();
            let before = commits_in_wal(&state);
            let id = engine.provision(&bundle, "DBUM Account", login, &form).unwrap();
            per_account.push(commits_in_wal(&state) - before);
            let tasks = engine.store.tasks_of(id).unwrap();
            assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed && !t.calling), "{tasks:?}");
            assert_eq!(tasks.len(), 2);
        }
        // The account with Create User marked; its outcome with Profile Updated, which it
        // generates, inserted already marked; Profile Updated's outcome.
        assert_eq!(per_account, [3, 3]);
    }
}
