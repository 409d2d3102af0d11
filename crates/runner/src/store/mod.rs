//! The state store: users, accounts (process instances), task instances with every attempt,
//! the append-only audit trail and the notification outbox. One trait ([`StateStore`]), two
//! implementations with the same tables and meaning: [`SqliteStore`] (`sqlite.rs`, a file)
//! and [`PgStore`] (`postgres.rs`, a PostgreSQL database). [`open`] picks one by `--state`.
//!
//! The store knows nothing of targets: a SQLite target in the store's own file is handed the
//! store's connection by [`StateStore::call_in_step`], and the engine makes the call.

use provflow_ir::{Bundle, ObjectStatus, TaskStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::clock::Instant;
use crate::credentials;
use crate::secret::SecretKey;
use crate::value::{Secret, Value};

#[cfg(test)]
mod conformance;
pub mod copy;
pub mod postgres;
pub mod queue;
mod sqlite;

pub use self::postgres::PgStore;
pub use self::queue::{Claim, Epoch, Fence, HeldClaim, Queue, TaskClaimParams, WorkerRecord, WorkerStatus};
pub use self::sqlite::SqliteStore;

pub type AccountId = i64;
pub type TaskId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state store's secrets are sealed under another key than the one given ({detail}); was the key rotated? Use the key `provflow key rotate` was given (PROVFLOW_SECRET_KEY or .provflow/secret.key on every machine); nothing was read or written"
    )]
    WrongKey { detail: String },
    #[error("the state store `{path}` cannot be opened: {error}")]
    Open { path: String, error: String },
    #[error("`{0}` is not a state store URL; use `sqlite:PATH` (e.g. `sqlite:.provflow/state.db`)")]
    BadUrl(String),
    /// The PostgreSQL server of the store cannot be reached or refused the login.
    #[error("cannot reach the PostgreSQL state store at {endpoint}: {error}; check that its server runs and accepts connections there, and the user, database and password of `--state` (or PROVFLOW_STATE)")]
    Unreachable { endpoint: String, error: String },
    /// A PostgreSQL error, its message scrubbed of the connection string's secrets.
    #[error("state store (PostgreSQL): {0}")]
    Postgres(String),
    #[error("the state store is newer than this provflow (schema version {found}, this provflow knows {known}); upgrade provflow")]
    TooNew { found: i64, known: i64 },
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the state store holds a damaged record ({0}); it was not written by this provflow")]
    Corrupt(String),
    #[error("this state store cannot run a target's calls in its own transactions")]
    NoSharedTransactions,
    /// An account was refused in the transaction that would have created it: another
    /// command changed its user or created its account since the run checked them.
    #[error("{0}; nothing of this batch of accounts was created")]
    Conflict(String),
    /// A fenced commit whose claim is no longer the worker's (see [`Queue::commit_steps_fenced`]).
    #[error("task {task}: this worker's claim (epoch {epoch}) is gone: {}; nothing of this commit was written", fenced_holder(.held_by.as_deref(), *.current))]
    Fenced { task: TaskId, epoch: Epoch, held_by: Option<String>, current: Option<Epoch> },
    /// Another live worker uses a SQLite store (one worker at a time there).
    #[error("worker `{id}` (pid {pid} on {host}) already runs on this SQLite state store: its last heartbeat was {seen_ago} s ago and its lease is {lease} s. A SQLite store runs one worker at a time: stop that worker, or, if it died, start this one when its heartbeat is {lease} s old; to run several workers, move the store to PostgreSQL (`provflow state copy`)")]
    WorkerAlreadyRunning { id: String, host: String, pid: i64, seen_ago: i64, lease: i64 },
    /// A live worker has the id a new worker asked for.
    #[error("a live worker already has the id `{id}` (pid {pid} on {host}, last heartbeat {seen_ago} s ago, lease {lease} s); give this worker another `--id`, or, if that one died, start this one when its heartbeat is {lease} s old")]
    WorkerIdInUse { id: String, host: String, pid: i64, seen_ago: i64, lease: i64 },
    #[error("worker `{0}` is not registered with this state store, or was stopped; restart the worker so that it registers again")]
    UnknownWorker(String),
}

/// Who holds a fenced task now, for [`StoreError::Fenced`].
fn fenced_holder(held_by: Option<&str>, current: Option<Epoch>) -> String {
    match (held_by, current) {
        (Some(w), Some(e)) => {
            format!("the task is now claimed by worker `{w}` (epoch {e}) after this worker's lease expired")
        }
        (None, Some(e)) => {
            format!("the task is no longer claimed (epoch {e}): released, finished, or changed by another command")
        }
        (_, None) => "the task no longer exists".to_string(),
    }
}

/// A person or system known to the identity manager.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub login: String,
    pub attributes: BTreeMap<String, String>,
    /// `Active`, `Disabled`, `Deleted` or `Disabled Until Start Date`.
    pub status: String,
    pub locked: bool,
}

/// Form data: plain text values and secrets. A secret that could not be kept (no key) is
/// absent after a reload.
pub type FormData = BTreeMap<String, Value>;
pub type ChildRow = BTreeMap<String, String>;

/// A process instance: one account of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub process: String,
    pub user: String,
    pub bundle_hash: String,
    pub status: ObjectStatus,
    pub form: FormData,
    pub children: BTreeMap<String, Vec<ChildRow>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskInstance {
    pub id: TaskId,
    pub account: AccountId,
    pub task_index: usize,
    pub task_name: String,
    pub status: TaskStatus,
    pub response: Option<String>,
    pub attempt: u32,
    /// A Pending instance does not run before this instant (retries).
    pub due_at: Option<Instant>,
    /// A target call was started and its outcome is not recorded yet.
    pub calling: bool,
    /// Waits for a person (manual tasks, and automatic ones the runner gave up on).
    pub held: bool,
    pub note: Option<String>,
    /// The child-table row of an `on_insert`/`on_delete` task.
    pub child: ChildRow,
    /// OUT values of the call, for `tasks.<name>.outputs.<name>` mappings.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_index: usize,
    pub task_name: String,
    pub status: TaskStatus,
    pub attempt: u32,
    pub due_at: Option<Instant>,
    pub held: bool,
    pub note: Option<String>,
    pub child: ChildRow,
    /// Inserted as Pending because its dependencies already hold: the audit records the
    /// Waiting it starts in and its promotion, as if promoted by a step of its own.
    pub promoted: bool,
    /// The engine calls it right after this commit (see [`Step::calling`]).
    pub calling: bool,
    /// A manual task: it waits for a person, and no worker claims it.
    pub manual: bool,
}

/// A user as the store has it, and its newest account of a process.
pub type UserAndAccount = (Option<UserRecord>, Option<Account>);

/// An account to create, with its first tasks (see [`StateStore::create_accounts`]).
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    pub process: &'a str,
    pub user: &'a str,
    pub bundle_hash: &'a str,
    pub status: ObjectStatus,
    pub form: &'a FormData,
    pub tasks: &'a [NewTask],
}

/// A status change of one task instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub task: TaskId,
    pub to: TaskStatus,
    pub response: Option<String>,
    pub note: Option<String>,
    pub held: bool,
    pub outputs: BTreeMap<String, String>,
}

/// A notification to render and send later.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRequest {
    pub task: Option<TaskId>,
    pub template_index: usize,
    pub template: String,
    pub task_status: TaskStatus,
    pub recipient: String,
}

/// Everything one engine step changes, committed in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub account: AccountId,
    pub actor: String,
    pub transitions: Vec<Transition>,
    pub new_tasks: Vec<NewTask>,
    pub account_status: Option<ObjectStatus>,
    pub notify: Vec<NotifyRequest>,
    /// The task whose target call starts right after this commit: its `calling` mark is
    /// committed with the step instead of in a transaction of its own.
    pub calling: Option<TaskId>,
    /// Tasks whose `calling` mark comes off without a transition: a call found interrupted
    /// whose task may run again (its query is idempotent), or one that never started.
    pub uncalling: Vec<TaskId>,
}

impl Step {
    /// Whether committing it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty()
            && self.new_tasks.is_empty()
            && self.account_status.is_none()
            && self.notify.is_empty()
            && self.calling.is_none()
            && self.uncalling.is_empty()
    }
}

/// A change to a user or to an account's form, committed in one transaction with the steps
/// (inserted tasks) it causes: a crash cannot keep the change and lose its tasks.
#[derive(Debug, Clone, Default)]
pub struct Change<'c> {
    pub user: Option<&'c UserRecord>,
    pub form: Option<&'c Account>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub task: TaskId,
    pub at: Instant,
    pub actor: String,
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    pub response: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub account: AccountId,
    pub task: Option<TaskId>,
    pub template_index: usize,
    pub template: String,
    pub task_status: TaskStatus,
    pub recipient: String,
    pub bundle_hash: String,
    pub created_at: Instant,
}

/// What rendering an outbox row gave (see [`StateStore::record_render`]). Secrets never reach
/// a message: the templates never see one.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxRender {
    Rendered {
        locale: String,
        /// `html` or `text`, with `/ascii` for an ASCII template.
        message_type: String,
        subject: String,
        short: String,
        body: String,
        /// The recipient's mailbox, `"Name" <address>`.
        to_address: Option<String>,
    },
    Failed {
        error: String,
        to_address: Option<String>,
    },
}

/// An outbox row with what rendering filled in, as listed and exported.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub template: String,
    pub recipient: String,
    pub to_address: Option<String>,
    pub locale: Option<String>,
    /// `html` or `text`, with `/ascii` for an ASCII template; `None` until rendered.
    pub message_type: Option<String>,
    pub subject: Option<String>,
    pub short: Option<String>,
    pub body: Option<String>,
    /// `queued`, `rendered` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub task_status: String,
    pub created_at: Instant,
    pub bundle_hash: String,
    pub template_index: i64,
}

/// The columns of [`OutboxMessage`], in its order.
pub(crate) const MESSAGE_COLUMNS: &str = "id, template, recipient, to_address, locale, message_type, subject, short, body, status, error, task_status, created_at, bundle_hash, template_index";

/// One recorded reconciliation event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReconEvent {
    pub run: i64,
    pub line: i64,
    pub key: Option<String>,
    pub outcome: String,
    pub action: String,
    pub account: Option<i64>,
    pub changes: serde_json::Value,
    pub error: Option<String>,
}

/// The columns of [`ReconEvent`], in its order.
pub(crate) const RECON_EVENT_COLUMNS: &str = "run_id, line, key, outcome, action, account_id, changes, error";

/// The store's own database, lent for one read-only query of a notification resolver with
/// `target: state` (see `notify`): SQL in that database's dialect, over the store's tables.
pub enum Database<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(std::cell::RefMut<'a, ::postgres::Client>),
}

impl Database<'_> {
    /// The dialect a query on this database is written in.
    pub fn dialect(&self) -> provflow_ir::Dialect {
        match self {
            Database::Sqlite(_) => provflow_ir::Dialect::Sqlite,
            Database::Postgres(_) => provflow_ir::Dialect::Postgres,
        }
    }
}

/// The runner's durable memory. Every method commits before it returns. Every store is a
/// work [`Queue`] too (`queue.rs`), so a worker needs nothing but the store `--state` opens.
pub trait StateStore: Queue {
    /// Whether secrets are kept (sealed with a key); without one they live for the command.
    fn has_key(&self) -> bool;
    /// Re-seals every stored secret under `new` in one transaction (the store's key opens
    /// them), and records `new` as the store's key: after a kill, the store is sealed wholly
    /// under one key or the other, and the key check says which.
    fn key_rotate(&mut self, new: &SecretKey) -> Result<KeyRotation, StoreError>;

    fn save_bundle(&mut self, bundle: &Bundle) -> Result<(), StoreError>;
    fn bundle(&self, hash: &str) -> Result<Option<Bundle>, StoreError>;
    /// The bundle stored last, for commands that take no definitions.
    fn latest_bundle(&self) -> Result<Option<Bundle>, StoreError>;

    fn insert_user(&mut self, user: &UserRecord) -> Result<(), StoreError>;
    fn update_user(&mut self, user: &UserRecord) -> Result<(), StoreError>;
    fn user(&self, login: &str) -> Result<Option<UserRecord>, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Creates accounts, each with its first tasks, in one transaction; each account's id and
    /// its tasks' ids, in order.
    fn create_accounts(
        &mut self,
        actor: &str,
        accounts: &[NewAccount<'_>],
    ) -> Result<Vec<(AccountId, Vec<TaskId>)>, StoreError>;
    /// [`StateStore::create_accounts`] for one account.
    #[allow(clippy::too_many_arguments)]
    fn create_account(
        &mut self,
        process: &str,
        user: &str,
        bundle_hash: &str,
        status: ObjectStatus,
        form: &FormData,
        actor: &str,
        tasks: &[NewTask],
    ) -> Result<(AccountId, Vec<TaskId>), StoreError> {
        let account = NewAccount { process, user, bundle_hash, status, form, tasks };
        self.create_accounts(actor, &[account])?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("creating an account returned no id".into()))
    }
    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError>;
    /// The newest account of `user` for `process`.
    fn find_account(&self, process: &str, user: &str) -> Result<Option<Account>, StoreError>;
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// [`StateStore::user`] and [`StateStore::find_account`] together, as provisioning needs
    /// them.
    fn user_and_account(&self, login: &str, process: &str) -> Result<UserAndAccount, StoreError> {
        Ok((self.user(login)?, self.find_account(process, login)?))
    }
    /// [`StateStore::user_and_account`] for each of `logins`, read together.
    fn users_and_accounts(&self, logins: &[String], process: &str) -> Result<Vec<UserAndAccount>, StoreError> {
        logins.iter().map(|l| self.user_and_account(l, process)).collect()
    }
    fn save_form(&mut self, account: &Account) -> Result<(), StoreError>;

    fn task(&self, id: TaskId) -> Result<Option<TaskInstance>, StoreError>;
    fn tasks_of(&self, account: AccountId) -> Result<Vec<TaskInstance>, StoreError>;
    fn tasks(&self, status: Option<TaskStatus>) -> Result<Vec<TaskInstance>, StoreError>;
    /// Records that a target call is about to start (or finished without a transition).
    fn set_calling(&mut self, task: TaskId, calling: bool) -> Result<(), StoreError>;
    /// Commits steps (of one account or of several) in one transaction; after
    /// [`StateStore::call_in_step`], in the transaction that made the call. The ids of each
    /// step's new tasks, in order.
    fn commit_steps(&mut self, steps: &[Step]) -> Result<Vec<Vec<TaskId>>, StoreError>;
    /// [`StateStore::commit_steps`] for one step.
    fn commit(&mut self, step: &Step) -> Result<Vec<TaskId>, StoreError> {
        Ok(self.commit_steps(std::slice::from_ref(step))?.pop().unwrap_or_default())
    }
    /// Commits a user or form change and its steps in one transaction; the ids of each step's
    /// new tasks, in order.
    fn commit_change(&mut self, change: &Change<'_>) -> Result<Vec<Vec<TaskId>>, StoreError>;

    /// The file of an embedded SQLite store: a SQLite target in the same file shares its
    /// transactions (see [`StateStore::call_in_step`]).
    fn sqlite_file(&self) -> Option<&Path> {
        None
    }
    /// Opens the transaction of the next step and makes a target call inside it, on a target
    /// that is this store's own database. The call and the transition that the next
    /// [`StateStore::commit`] records then commit together or not at all, so no `calling`
    /// mark is needed: after a crash the call simply did not happen.
    ///
    /// The store hands its connection, inside that transaction, to `call`; the caller runs the
    /// target call with it. Stores without a SQLite file refuse ([`StoreError::NoSharedTransactions`]).
    fn call_in_step(&mut self, call: &mut dyn FnMut(&rusqlite::Connection)) -> Result<(), StoreError> {
        let _ = call;
        Err(StoreError::NoSharedTransactions)
    }

    fn audit(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError>;
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// The outbox rows not rendered yet, oldest first.
    fn queued_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Records how outbox row `id` rendered, at `at`: its message, or why it failed.
    fn record_render(&mut self, id: i64, render: &OutboxRender, at: Instant) -> Result<(), StoreError>;
    /// Every outbox row with its rendered message, oldest first.
    fn outbox_messages(&self) -> Result<Vec<OutboxMessage>, StoreError>;
    /// The stable key (`usr_key`) of a user, which notification resolvers query by.
    fn usr_key(&self, login: &str) -> Result<Option<i64>, StoreError>;
    /// The store's database, for a notification resolver's read-only query (`target: state`).
    fn database(&self) -> Result<Database<'_>, StoreError>;
    /// The events of reconciliation run `run`, or of the newest run, by line; the run's id
    /// too (`None`: no run yet).
    fn recon_events(&self, run: Option<i64>) -> Result<(Option<i64>, Vec<ReconEvent>), StoreError>;
}

/// Where `--state` points.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A PostgreSQL URL or key=value DSN, as given (it may hold a password: never display it;
    /// [`credentials::redact`] it).
    Postgres(String),
}

/// Parses `--state`: `sqlite:PATH`, `sqlite://PATH`, a plain path, a PostgreSQL URL
/// (`postgres://…`, `postgresql://…`) or a key=value DSN (`host=… dbname=…`). Any other URL,
/// or a file name with a password in it, is refused rather than taken for a file name.
/// Messages show the string redacted ([`credentials::redact`]), and its secrets are remembered
/// for [`credentials::scrub_known`].
pub fn location(url: &str) -> Result<Location, StoreError> {
    credentials::remember(url);
    let sqlite = url.starts_with("sqlite:");
    let postgres_dsn = !sqlite && credentials::is_key_value_dsn(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") || postgres_dsn {
        return Ok(Location::Postgres(url.to_string()));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let other_url = path.contains("://") && !sqlite;
    if path.is_empty() || other_url || !credentials::Credentials::of(url).is_empty() {
        return Err(StoreError::BadUrl(credentials::redact(url)));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

/// Opens (creating and migrating it if needed) the store `--state` points at.
pub fn open(
    url: &str,
    key: Option<SecretKey>,
    now: Box<dyn Fn() -> Instant + Send>,
) -> Result<Box<dyn StateStore + Send>, StoreError> {
    Ok(match location(url)? {
        Location::Sqlite(path) => Box::new(SqliteStore::open(&path, key, now)?),
        Location::Postgres(url) => Box::new(PgStore::open(&url, key, now)?),
    })
}

/// A connection that waits for work committed anywhere, on a PostgreSQL store; `None` on a
/// SQLite store, where one worker runs and polls.
pub fn work_listener(url: &str) -> Result<Option<postgres::WorkListener>, StoreError> {
    Ok(match location(url)? {
        Location::Sqlite(_) => None,
        Location::Postgres(url) => Some(postgres::WorkListener::open(&url)?),
    })
}

/// Secrets kept for the current process only, for stores without a key.
pub type SecretCache = BTreeMap<(AccountId, String), Secret>;

// ----- what both stores share -------------------------------------------------------------

/// The current version of the store's schema: both stores apply migrations with the same
/// numbers, each written in its own dialect, so one version means the same tables on both.
pub(crate) const SCHEMA_VERSION: i64 = 6;

pub(crate) fn status_text(s: TaskStatus) -> &'static str {
    s.as_str()
}

pub(crate) fn parse_task_status(s: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("task status `{s}`")))
}

pub(crate) fn parse_object_status(s: &str) -> Result<ObjectStatus, StoreError> {
    ObjectStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("account status `{s}`")))
}

/// The sealing context of an account's form field: the same on every store, so a sealed
/// value copied between stores opens with the same key.
pub(crate) fn form_context(account: AccountId) -> String {
    format!("account/{account}")
}

/// Encodes a form: plain values as strings, secrets sealed (or dropped without a key).
pub(crate) fn encode_values(key: Option<&SecretKey>, values: &FormData, context: &str) -> String {
    let mut out = serde_json::Map::new();
    for (name, value) in values {
        match value {
            Value::Secret(s) => {
                if let Some(sealed) = key.and_then(|k| k.seal(s, &format!("{context}/{name}"))) {
                    out.insert(name.clone(), serde_json::json!({ "sealed": sealed }));
                }
            }
            Value::Null => {
                out.insert(name.clone(), serde_json::Value::Null);
            }
            other => {
                out.insert(name.clone(), serde_json::Value::String(other.display()));
            }
        }
    }
    serde_json::Value::Object(out).to_string()
}

/// The `store_meta` row whose value proves which key seals the store's secrets.
pub(crate) const KEY_CHECK: &str = "key_check";
const KEY_CHECK_CONTEXT: &str = "store/key-check";
const KEY_CHECK_TEXT: &str = "provflow state store key check";

/// The key check's value under `key`.
pub(crate) fn key_check_value(key: &SecretKey) -> Result<String, StoreError> {
    key.seal(&Secret::new(KEY_CHECK_TEXT), KEY_CHECK_CONTEXT)
        .ok_or_else(|| StoreError::Corrupt("the random source failed while sealing the key check".into()))
}

/// Whether `sealed` (a [`key_check_value`]) was sealed under `key`.
pub(crate) fn key_check_holds(key: &SecretKey, sealed: &str) -> bool {
    key.open(sealed, KEY_CHECK_CONTEXT).is_some_and(|s| s.expose() == KEY_CHECK_TEXT)
}

/// What [`StateStore::key_rotate`] re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyRotation {
    pub accounts: usize,
    pub secrets: usize,
}

/// A stored form with every sealed value opened with `old` and sealed again with `new`
/// (plain values untouched); how many were re-sealed. A value `old` does not open refuses
/// the whole rotation: the store is then not sealed under `old`.
pub(crate) fn reseal_form(
    json: &str,
    account: AccountId,
    old: &SecretKey,
    new: &SecretKey,
) -> Result<(String, usize), StoreError> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("form data of account #{account}: {e}")))?;
    let context = form_context(account);
    let mut count = 0;
    if let serde_json::Value::Object(map) = &mut value {
        for (name, v) in map.iter_mut() {
            let Some(sealed) = v.get("sealed").and_then(|s| s.as_str()) else { continue };
            let field = format!("{context}/{name}");
            let secret = old.open(sealed, &field).ok_or_else(|| StoreError::WrongKey {
                detail: format!("the secret `{name}` of account #{account} does not open with it"),
            })?;
            let resealed = new
                .seal(&secret, &field)
                .ok_or_else(|| StoreError::Corrupt("the random source failed while sealing".into()))?;
            *v = serde_json::json!({ "sealed": resealed });
            count += 1;
        }
    }
    Ok((value.to_string(), count))
}

/// Decodes a form written by [`encode_values`]; a sealed value that does not open (no key,
/// another key) is absent.
pub(crate) fn decode_values(key: Option<&SecretKey>, json: &str, context: &str) -> Result<FormData, StoreError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("form data: {e}")))?;
    let mut out = FormData::new();
    if let serde_json::Value::Object(map) = value {
        for (name, v) in map {
            match v {
                serde_json::Value::String(s) => {
                    out.insert(name, Value::Text(s));
                }
                serde_json::Value::Object(o) => {
                    let opened = o
                        .get("sealed")
                        .and_then(|s| s.as_str())
                        .and_then(|s| key.and_then(|k| k.open(s, &format!("{context}/{name}"))));
                    if let Some(secret) = opened {
                        out.insert(name, Value::Secret(secret));
                    }
                }
                _ => {
                    out.insert(name, Value::Null);
                }
            }
        }
    }
    Ok(out)
}

/// A string map (child row, outputs, user attributes) as stored: JSON text, `{}` when empty.
pub(crate) fn map_json(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        "{}".to_string()
    } else {
        serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
    }
}

/// Reads a JSON column written by [`map_json`] (or of child tables); `what` names it in the
/// error of a damaged one.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A stored integer that must fit a `usize` (task and template indexes).
pub(crate) fn index(value: i64, what: &str) -> Result<usize, StoreError> {
    usize::try_from(value).map_err(|_| StoreError::Corrupt(what.into()))
}

/// Why `create_accounts` could not insert an account, from its user's status (`None` when
/// the user is gone).
pub(crate) fn why_refused(a: &NewAccount<'_>, user_status: Option<&str>) -> String {
    match user_status {
        None => format!("user `{}` no longer exists", a.user),
        Some("Deleted") => format!("user `{}` was deleted meanwhile", a.user),
        Some(_) => format!("`{}` got a `{}` account from another command meanwhile", a.user, a.process),
    }
}

/// A task row as both stores read it (`TASK_COLUMNS` order), before its columns are checked.
pub(crate) struct TaskRow {
    pub id: TaskId,
    pub account: AccountId,
    pub task_index: i64,
    pub task_name: String,
    pub status: String,
    pub response: Option<String>,
    pub attempt: i64,
    pub due_at: Option<Instant>,
    pub calling: bool,
    pub held: bool,
    pub note: Option<String>,
    pub child: String,
    pub outputs: String,
}

/// The columns of [`TaskRow`], in its order.
pub(crate) const TASK_COLUMNS: &str =
    "id, account_id, task_index, task_name, status, response, attempt, due_at, calling, held, note, child, outputs";
/// The columns of [`AccountRow`], in its order.
pub(crate) const ACCOUNT_COLUMNS: &str = "id, process, user_login, bundle_hash, status, form, children";

impl TaskRow {
    pub(crate) fn into_task(self) -> Result<TaskInstance, StoreError> {
        Ok(TaskInstance {
            id: self.id,
            account: self.account,
            task_index: index(self.task_index, "task index")?,
            task_name: self.task_name,
            status: parse_task_status(&self.status)?,
            response: self.response,
            attempt: u32::try_from(self.attempt).map_err(|_| StoreError::Corrupt("task attempt".into()))?,
            due_at: self.due_at,
            calling: self.calling,
            held: self.held,
            note: self.note,
            child: parse_json(&self.child, "child row")?,
            outputs: parse_json(&self.outputs, "outputs")?,
        })
    }
}

/// An account row as both stores read it (`ACCOUNT_COLUMNS` order).
pub(crate) struct AccountRow {
    pub id: AccountId,
    pub process: String,
    pub user: String,
    pub bundle_hash: String,
    pub status: String,
    pub form: String,
    pub children: String,
}

impl AccountRow {
    /// The account, its form's secrets opened with `key` (absent without one).
    pub(crate) fn into_account(self, key: Option<&SecretKey>) -> Result<Account, StoreError> {
        Ok(Account {
            form: decode_values(key, &self.form, &form_context(self.id))?,
            id: self.id,
            process: self.process,
            user: self.user,
            bundle_hash: self.bundle_hash,
            status: parse_object_status(&self.status)?,
            children: parse_json(&self.children, "child rows")?,
        })
    }
}

/// An outbox row as both stores read it.
pub(crate) struct OutboxRow {
    pub id: i64,
    pub account: AccountId,
    pub task: Option<TaskId>,
    pub template_index: i64,
    pub template: String,
    pub task_status: String,
    pub recipient: String,
    pub bundle_hash: String,
    pub created_at: Instant,
}

pub(crate) const OUTBOX_COLUMNS: &str =
    "id, account_id, task_id, template_index, template, task_status, recipient, bundle_hash, created_at";

impl OutboxRow {
    pub(crate) fn into_entry(self) -> Result<OutboxEntry, StoreError> {
        Ok(OutboxEntry {
            id: self.id,
            account: self.account,
            task: self.task,
            template_index: index(self.template_index, "template index")?,
            template: self.template,
            task_status: parse_task_status(&self.task_status)?,
            recipient: self.recipient,
            bundle_hash: self.bundle_hash,
            created_at: self.created_at,
        })
    }
}

/// An audit row: task, at, actor, from, to, response, note.
pub(crate) type AuditRow = (TaskId, Instant, String, Option<String>, String, Option<String>, Option<String>);

pub(crate) const AUDIT_COLUMNS: &str = "task_id, at, actor, from_status, to_status, response, note";

pub(crate) fn audit_entry((task, at, actor, from, to, response, note): AuditRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        task,
        at,
        actor,
        from: from.as_deref().map(parse_task_status).transpose()?,
        to: parse_task_status(&to)?,
        response,
        note,
    })
}

/// A user row: login, attributes (JSON), status, locked.
pub(crate) fn user_record(
    login: String,
    attributes: &str,
    status: String,
    locked: bool,
) -> Result<UserRecord, StoreError> {
    Ok(UserRecord { login, attributes: parse_json(attributes, "user attributes")?, status, locked })
}

/// `(locale, message_type, subject, short, body, to_address, error, status)` of a render, as
/// both stores write them.
pub(crate) type RenderColumns<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'static str,
);

impl OutboxRender {
    pub(crate) fn columns(&self) -> RenderColumns<'_> {
        match self {
            OutboxRender::Rendered { locale, message_type, subject, short, body, to_address } => (
                Some(locale),
                Some(message_type),
                Some(subject),
                Some(short),
                Some(body),
                to_address.as_deref(),
                None,
                "rendered",
            ),
            OutboxRender::Failed { error, to_address } => {
                (None, None, None, None, None, to_address.as_deref(), Some(error), "failed")
            }
        }
    }
}

/// A recon event's stored `changes` text as JSON (`null` when damaged).
pub(crate) fn changes_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_parse() {
        assert_eq!(location("sqlite:a/b.db").unwrap(), Location::Sqlite(PathBuf::from("a/b.db")));
        assert_eq!(location("x.db").unwrap(), Location::Sqlite(PathBuf::from("x.db")));
        assert_eq!(location("postgres://u@h/db").unwrap(), Location::Postgres("postgres://u@h/db".into()));
        assert_eq!(location("host=h dbname=x").unwrap(), Location::Postgres("host=h dbname=x".into()));
    }

    #[test]
    fn state_urls_with_passwords_are_postgres_or_refused_redacted() {
        let cases = [
            ("postgres://u@h/x?password=Pw-q1", true),
            ("host=h user=u password=Pw-q2 dbname=x", true),
            ("host=127.0.0.1 port=1 password='P w-q3'", true),
            ("mysql://u:Pw-q4@h/x", false),
            ("host=h password=Pw-q5 bogus=1", false),
            ("postgres://u:p%40ss-q6@h/x", true),
        ];
        // Messages are not printed: they would show a password when the test fails.
        for (case, (url, postgres)) in cases.into_iter().enumerate() {
            let message = match location(url) {
                Ok(Location::Postgres(_)) if postgres => continue,
                Err(e @ StoreError::BadUrl(_)) if !postgres => e.to_string(),
                Err(_) => panic!("case {case}: the wrong error"),
                Ok(_) => panic!("case {case}: taken for the wrong kind of store"),
            };
            let leaked = ["Pw-", "P w", "p@ss", "p%40ss"].iter().any(|p| message.contains(p));
            assert!(!leaked, "case {case}: the message shows the password");
            assert!(message.contains("********"), "case {case}: nothing masked");
        }
    }
}
