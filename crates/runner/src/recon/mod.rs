//! Reconciliation (SPEC §2.3 `recon`, §4; seed 001's multi-threaded CSV job, seed 004's field
//! mappings): rows from a CSV file or the process's recon query are matched to accounts by
//! their key fields and the process's actions are applied.
//!
//! Matching, per row:
//! - a *process match* is an account of the process (the newest per user) whose key values
//!   equal the row's: a key mapped to `form.X` compares the account's form field, a key mapped
//!   to `user.A` the account owner's attribute;
//! - an *entity match* is a user whose attributes equal the row's keys: a key mapped to
//!   `user.A` compares attribute `A`, a key mapped to `form.X` where `X` is filled
//!   `from: user.A` compares `A` too (for DBUM, `username` ← `usr_login`);
//! - one process match → `one_process_match`; several → `multiple_matches`; none but one
//!   entity match → `one_entity_match`; several entity matches → `multiple_matches`; else
//!   `no_match`. Keys declared `case_insensitive` compare case-folded.
//!
//! Actions: `update` (and `link` on an existing account) writes the changed form fields and
//! the `OIM_OBJECT_STATUS` (through `values`) when they differ from the stored ones; `link`
//! and `create` on an entity match create the user's account (no tasks run: the target
//! already has it), with the mapped status or `Provisioned`; `none` records the event only.
//!
//! Rows are read by one thread, validated and matched by `--threads` workers against
//! in-memory indexes built once per run (the accounts read in parallel id ranges; the users,
//! needed only by rows no account matches, loading while the first rows are written), and
//! applied by one writer thread in large transactions (SQLite serialises writes anyway), with
//! WAL checkpoints on a thread of their own. Only validated, decided rows reach the
//! writer, and each row's writes go in together (a savepoint when it needs two statements), so
//! a row is applied whole or not at all, and a failed row leaves the rest of its batch intact.

use provflow_ir::{self as ir, Bundle, ObjectStatus, ReconAction, ReconTarget, ValueType};
use rusqlite::params;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use crate::clock::Instant;
use crate::engine::TargetProvider;
use crate::store::PgStore;
use crate::value::{self, Value};

#[path = "recon_pg.rs"]
mod pg;

#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    #[error("process `{0}` has no `recon` section; add one (query, fields, actions) to reconcile it")]
    NoRecon(String),
    #[error("process `{0}` has no recon `query`; reconcile it from a CSV file with --csv")]
    NoQuery(String),
    #[error("recon field `{0}` is a GuardedString; reconciliation never reads secrets")]
    SecretField(String),
    #[error("cannot read `{path}`: {error}")]
    Read { path: String, error: String },
    #[error("`{path}` line {line}: the header has no column `{column}`{hint}; the header must name every recon field ({expected})")]
    MissingColumn { path: String, line: u64, column: String, hint: String, expected: String },
    #[error("the recon query of `{process}`: {error}")]
    Query { process: String, error: String },
    /// The target could not be opened: an environment error, nothing was read.
    #[error("the recon query of `{process}`: target `{target}` cannot be reached: {error}")]
    Unreachable { process: String, target: String, error: String },
    #[error("state store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for ReconError {
    fn from(e: rusqlite::Error) -> Self {
        ReconError::Store(e.to_string())
    }
}

impl From<crate::store::StoreError> for ReconError {
    fn from(e: crate::store::StoreError) -> Self {
        ReconError::Store(e.to_string())
    }
}

/// Why a statement of the run failed, as the database said it.
#[derive(Debug)]
enum DbError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => e.fmt(f),
            DbError::Postgres(e) => {
                let text = match e.as_db_error() {
                    Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                    None => crate::pg_conn::failure(e),
                };
                f.write_str(&crate::credentials::scrub_known(&text))
            }
            DbError::Other(e) => f.write_str(e),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

impl From<DbError> for ReconError {
    fn from(e: DbError) -> Self {
        ReconError::Store(e.to_string())
    }
}

/// The state store a run reads and writes.
pub enum State<'a> {
    /// A SQLite file: read on connections of the run's own, in parallel.
    Sqlite(&'a Path),
    /// A PostgreSQL store: read with one query per index and written on its connection.
    Postgres(&'a mut PgStore),
}

/// Where the rows come from.
pub enum Source {
    Csv(PathBuf),
    /// The process's recon query on its target.
    Target,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub run: i64,
    pub rows: u64,
    pub created: u64,
    pub linked: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub unmatched: u64,
    pub failed: u64,
}

/// A row reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub summary: Summary,
    /// The first bad rows (all of them are in `recon_events`).
    pub bad_rows: Vec<BadRow>,
    pub warnings: Vec<String>,
}

/// How many bad rows [`Outcome::bad_rows`] keeps; every one is recorded as an event.
const BAD_ROWS_KEPT: usize = 1000;
/// Rows per chunk handed to a worker: enough to amortise the channel hand-off.
const BATCH: usize = 2000;
/// Rows per write transaction: commits (and their WAL sync) stop mattering at this size, while
/// the write lock is still released every fraction of a second for the provisioning path.
const COMMIT_ROWS: u64 = 50_000;
/// Events per multi-row INSERT: 7 parameters each, under SQLite's historical 999 limit.
const EVENTS_PER_INSERT: usize = 128;
/// Marks a key shared by several accounts or users in the match indexes.
const MULTIPLE: u32 = u32::MAX;

pub struct Options<'a> {
    /// Threads that validate and match rows; one more thread reads the source and one writes.
    pub threads: usize,
    pub now: Instant,
    /// Called with the number of rows done after each batch.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Called once with the total, when it is known (`--from-target`).
    pub total: &'a (dyn Fn(u64) + Sync),
}

/// The match indexes hold a million short keys and are probed once per row; SipHash's
/// flooding resistance would cost a third of the matching time and the keys come from the
/// operator's own store and file.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// Normalised key → slot, or [`MULTIPLE`].
type KeyIndex = FxMap<Box<str>, u32>;

/// Where a recon field's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Index into [`Plan::form_fields`].
    Form(usize),
    /// Index into [`Plan::user_fields`] (a non-key user attribute).
    User(usize),
    Status,
    /// A key identifying the user: matched on, never written.
    Nowhere,
}

/// One recon field, resolved against the process.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: ValueType,
    maps_to: ReconTarget,
    key: bool,
    case_insensitive: bool,
    values: BTreeMap<String, ObjectStatus>,
    /// The user attribute this field identifies a user by (entity matching).
    user_attribute: Option<String>,
    put: Put,
}

/// The plan of one run: the process, its fields, and the in-memory match indexes. Read-only
/// once built, shared by every worker.
struct Plan {
    process: String,
    bundle_hash: String,
    fields: Vec<Field>,
    /// Column index in the source of each field.
    columns: Vec<usize>,
    width: usize,
    actions: [ReconAction; 4],
    /// The form fields recon writes, and their JSON paths.
    form_fields: Vec<String>,
    form_paths: Vec<String>,
    /// `form.X`, the name of a change to form field X in an event.
    form_changes: Vec<String>,
    /// The account UPDATE that patches `n` form fields, at index `n`.
    update_sql: Vec<String>,
    /// The non-key user attributes recon writes, and their JSON paths.
    user_fields: Vec<String>,
    user_paths: Vec<String>,
    /// Normalised composite key → account slot in [`Index::accounts`], or [`MULTIPLE`].
    accounts: FxMap<Box<str>, u32>,
    /// User login → slot of the user's newest account of the process.
    by_login: FxMap<Box<str>, u32>,
    /// Whether every key field identifies a user, so that entity matching is possible.
    entity_matching: bool,
    /// Form fields filled from user attributes, for accounts created by `link`/`create`.
    from_user: Vec<(String, String)>,
    defaults: Vec<(String, String)>,
}

/// What the store holds for an account, as far as recon compares it: the values the run
/// decides "changed or not" against. Owned by the writer, which keeps it current.
struct Snapshot {
    id: i64,
    login: Box<str>,
    status: StoredStatus,
    /// Per [`Plan::form_fields`]; `None` when absent or not a string.
    form: Vec<Option<Box<str>>>,
    /// Per [`Plan::user_fields`].
    user: Vec<Option<Box<str>>>,
}

/// An account's status as stored: one of the statuses (no allocation per account), or text
/// written by something else, kept as it is so that events report it faithfully.
enum StoredStatus {
    Known(ObjectStatus),
    Other(Box<str>),
}

impl StoredStatus {
    fn from_text(text: Option<Box<str>>) -> StoredStatus {
        let text = text.unwrap_or_default();
        match ObjectStatus::parse(&text) {
            Some(s) => StoredStatus::Known(s),
            None => StoredStatus::Other(text),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            StoredStatus::Known(s) => s.as_str(),
            StoredStatus::Other(t) => t,
        }
    }
}

fn normalise_into(out: &mut String, f: &Field, text: &str) {
    let t = text.trim();
    if !f.case_insensitive {
        out.push_str(t);
    } else if t.is_ascii() {
        out.extend(t.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(&t.to_lowercase());
    }
}

/// Key parts are joined with the unit separator, which no CSV value contains in practice.
const KEY_SEPARATOR: char = '\u{1f}';

/// A JSON path naming one top-level member; `"` cannot occur in form or attribute names.
fn json_path(name: &str) -> String {
    format!("$.\"{}\"", name.replace('"', ""))
}

fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL text of a string member of a JSON column, NULL when absent or not a string.
fn json_text(column: &str, name: &str) -> String {
    let p = sql_quote(&json_path(name));
    format!("CASE WHEN json_type({column}, {p}) = 'text' THEN json_extract({column}, {p}) END")
}

fn resolve(bundle: &Bundle, process: &ir::Process) -> Result<Plan, ReconError> {
    let recon = process.recon.as_ref().ok_or_else(|| ReconError::NoRecon(process.name.clone()))?;
    let mut fields = Vec::new();
    let mut form_fields: Vec<String> = Vec::new();
    let mut user_fields: Vec<String> = Vec::new();
    for f in &recon.fields {
        if f.ty.is_secret() {
            return Err(ReconError::SecretField(f.name.clone()));
        }
        let user_attribute = match &f.maps_to {
            ReconTarget::User(a) => Some(a.clone()),
            ReconTarget::Form(x) => {
                process.form.fields.iter().find(|ff| &ff.name == x).and_then(|ff| ff.from_user.clone())
            }
            ReconTarget::ObjectStatus => None,
        };
        let put = match &f.maps_to {
            ReconTarget::Form(x) => Put::Form(position_or_push(&mut form_fields, x)),
            ReconTarget::User(_) if f.key => Put::Nowhere,
            ReconTarget::User(a) => Put::User(position_or_push(&mut user_fields, a)),
            ReconTarget::ObjectStatus => Put::Status,
        };
        fields.push(Field {
            name: f.name.clone(),
            ty: f.ty,
            maps_to: f.maps_to.clone(),
            key: f.key,
            case_insensitive: f.case_insensitive,
            values: f.values.clone(),
            user_attribute,
            put,
        });
    }
    let entity_matching =
        fields.iter().any(|f| f.key) && fields.iter().filter(|f| f.key).all(|f| f.user_attribute.is_some());
    let secret_free = |f: &&ir::FormField| !f.ty.is_secret();
    Ok(Plan {
        process: process.name.clone(),
        bundle_hash: bundle.hash.clone(),
        columns: (0..fields.len()).collect(),
        width: fields.len(),
        fields,
        actions: [recon.no_match, recon.one_entity_match, recon.one_process_match, recon.multiple_matches],
        form_paths: form_fields.iter().map(|n| json_path(n)).collect(),
        form_changes: form_fields.iter().map(|n| format!("form.{n}")).collect(),
        update_sql: (0..=form_fields.len()).map(update_sql).collect(),
        form_fields,
        user_paths: user_fields.iter().map(|n| json_path(n)).collect(),
        user_fields,
        accounts: FxMap::default(),
        by_login: FxMap::default(),
        entity_matching,
        from_user: process
            .form
            .fields
            .iter()
            .filter(secret_free)
            .filter_map(|f| f.from_user.clone().map(|a| (f.name.clone(), a)))
            .collect(),
        defaults: process
            .form
            .fields
            .iter()
            .filter(secret_free)
            .filter_map(|f| f.default.clone().map(|d| (f.name.clone(), d)))
            .collect(),
    })
}

/// `UPDATE accounts` setting the status (?2, NULL: unchanged) and `n` form members (path and
/// value pairs from ?4).
fn update_sql(n: usize) -> String {
    let mut sql = String::from("UPDATE accounts SET ");
    if n > 0 {
        sql.push_str("form = json_set(form");
        for k in 0..n {
            sql.push_str(&format!(", ?{}, ?{}", 4 + 2 * k, 5 + 2 * k));
        }
        sql.push_str("), ");
    }
    sql.push_str("status = coalesce(?2, status), updated_at = ?3 WHERE id = ?1");
    sql
}

fn position_or_push(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}

fn column_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Box<str>>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into()),
        ValueRef::Integer(n) => Some(n.to_string().into()),
        ValueRef::Real(d) => Some(d.to_string().into()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    })
}

fn insert_key(index: &mut FxMap<Box<str>, u32>, key: Box<str>, slot: u32) {
    index.entry(key).and_modify(|s| *s = MULTIPLE).or_insert(slot);
}

/// Id ranges the accounts are read in, each on its own connection and thread: reading (the
/// query, its `json_extract`s, the snapshots) is most of the loading, and indexing what was
/// read is quick enough for one thread to keep up with both.
const LOAD_PARTS: i64 = 2;
/// Accounts handed from a reading thread to the indexing one at a time.
const LOAD_CHUNK: usize = 4096;

/// Accounts as read, with their normalised keys, in id order.
type LoadedChunk = Vec<(Snapshot, Box<str>)>;

/// Reads the accounts of the process with ids in `ids`, in id order, with the values recon
/// compares and their normalised keys.
fn read_accounts(
    conn: &rusqlite::Connection,
    plan: &Plan,
    sql: &str,
    ids: (i64, i64),
    tx: &mpsc::Sender<LoadedChunk>,
) -> Result<(), ReconError> {
    let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params![plan.process, ids.0, ids.1])?;
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    let mut key = String::new();
    while let Some(r) = rows.next()? {
        let login: Box<str> = column_text(r, 1)?.unwrap_or_default();
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            normalise_into(&mut key, f, column_text(r, 3 + i)?.as_deref().unwrap_or(""));
        }
        let base = 3 + keys.len();
        let form = (0..plan.form_fields.len()).map(|i| column_text(r, base + i)).collect::<rusqlite::Result<_>>()?;
        let base = base + plan.form_fields.len();
        let user = (0..plan.user_fields.len()).map(|i| column_text(r, base + i)).collect::<rusqlite::Result<_>>()?;
        let status = StoredStatus::from_text(column_text(r, 2)?);
        chunk.push((Snapshot { id: r.get(0)?, login, status, form, user }, Box::from(key.as_str())));
        if chunk.len() == LOAD_CHUNK && tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK))).is_err()
        {
            // The indexing thread stopped; it reports why.
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk);
    }
    Ok(())
}

/// Indexes accounts as they are read, in id order: the newest account of each user by its
/// normalised key, so "newest" means the same however the accounts were read.
struct AccountIndexer {
    no_keys: bool,
    /// When every key is a user attribute, a user's accounts share one key, so a newer
    /// account simply replaces an older one of the same user in the index; keys in the form
    /// can differ between a user's accounts, so the newest per user is found first.
    user_keyed: bool,
    snapshots: Vec<Snapshot>,
    accounts: KeyIndex,
    keyed: Vec<Box<str>>,
    by_login: FxMap<Box<str>, u32>,
}

impl AccountIndexer {
    fn new(plan: &Plan, hint: usize) -> Self {
        let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
        AccountIndexer {
            no_keys: keys.is_empty(),
            user_keyed: keys.iter().all(|f| matches!(f.maps_to, ReconTarget::User(_))),
            // Sized once: growing a million-entry table costs more than filling it.
            snapshots: Vec::with_capacity(hint),
            accounts: FxMap::with_capacity_and_hasher(hint, Default::default()),
            keyed: Vec::new(),
            by_login: FxMap::default(),
        }
    }

    fn push(&mut self, snapshot: Snapshot, key: Box<str>) -> Result<(), ReconError> {
        let Ok(slot) = u32::try_from(self.snapshots.len()) else {
            return Err(ReconError::Store("too many accounts".into()));
        };
        if self.no_keys {
            // No key: nothing can match, nothing to index.
        } else if self.user_keyed {
            // In id order: a user's newest account comes last and wins.
            match self.accounts.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let same_user = self.snapshots.get(*e.get() as usize).is_some_and(|s| s.login == snapshot.login);
                    e.insert(if same_user { slot } else { MULTIPLE });
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(slot);
                }
            }
        } else {
            self.by_login.insert(snapshot.login.clone(), slot);
            self.keyed.push(key);
        }
        self.snapshots.push(snapshot);
        Ok(())
    }

    /// The snapshots, the key index and the newest account per login.
    fn finish(mut self) -> Loaded {
        if !self.user_keyed {
            for (slot, (key, s)) in self.keyed.into_iter().zip(&self.snapshots).enumerate() {
                let slot = slot as u32;
                if self.by_login.get(&s.login) == Some(&slot) {
                    insert_key(&mut self.accounts, key, slot);
                }
            }
        }
        (self.snapshots, self.accounts, self.by_login)
    }
}

/// What loading the accounts gives: their snapshots, the key index, the newest per login.
type Loaded = (Vec<Snapshot>, KeyIndex, FxMap<Box<str>, u32>);

/// Loads the accounts of the process with the values recon compares, and indexes the newest
/// of each user by key. The id ranges are read in parallel and indexed in id order as they
/// arrive, so "newest" means the same as reading them all in one query.
fn load_accounts(state: &Path, plan: &Plan) -> Result<Loaded, ReconError> {
    let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
    let mut select = vec!["a.id".to_string(), "a.user_login".to_string(), "a.status".to_string()];
    let mut join_users = false;
    for f in &keys {
        select.push(match &f.maps_to {
            ReconTarget::Form(x) => format!("json_extract(a.form, {})", sql_quote(&json_path(x))),
            ReconTarget::User(a) if a == "usr_login" => "a.user_login".to_string(),
            ReconTarget::User(a) => {
                join_users = true;
                format!("json_extract(u.attributes, {})", sql_quote(&json_path(a)))
            }
            ReconTarget::ObjectStatus => "a.status".to_string(),
        });
    }
    for x in &plan.form_fields {
        // Form values are stored as strings (secrets as objects, never recon fields).
        select.push(format!("json_extract(a.form, {})", sql_quote(&json_path(x))));
    }
    for a in &plan.user_fields {
        join_users = true;
        select.push(json_text("u.attributes", a));
    }
    let sql = format!(
        "SELECT {} FROM accounts a {} WHERE a.process = ?1 AND a.id BETWEEN ?2 AND ?3 ORDER BY a.id",
        select.join(", "),
        if join_users { "LEFT JOIN users u ON u.login = a.user_login" } else { "" }
    );
    let (first, last): (i64, i64) =
        open_conn(state)?.query_row("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM accounts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let hint = usize::try_from(last.saturating_sub(first).saturating_add(1)).unwrap_or(0).min(1 << 24);
    let per_part = (last.saturating_sub(first) / LOAD_PARTS).saturating_add(1);
    let ranges: Vec<(i64, i64)> = (0..LOAD_PARTS)
        .map(|k| {
            let lo = first.saturating_add(per_part.saturating_mul(k));
            let hi = if k + 1 == LOAD_PARTS { i64::MAX } else { lo.saturating_add(per_part - 1) };
            (lo, hi)
        })
        .collect();
    let mut indexer = AccountIndexer::new(plan, hint);
    std::thread::scope(|scope| {
        let mut parts = Vec::new();
        for ids in ranges {
            let (tx, rx) = mpsc::channel::<LoadedChunk>();
            let sql = &sql;
            let reader =
                scope.spawn(move || open_conn(state).and_then(|conn| read_accounts(&conn, plan, sql, ids, &tx)));
            parts.push((rx, reader));
        }
        let mut indexed = Ok(());
        let mut read = Ok(());
        for (rx, reader) in parts {
            // The ranges in order, each in id order: the same order as one query's.
            for chunk in rx.iter() {
                if indexed.is_err() {
                    break;
                }
                for (snapshot, key) in chunk {
                    if let Err(e) = indexer.push(snapshot, key) {
                        indexed = Err(e);
                        break;
                    }
                }
            }
            // Dropping the receiver stops a reader still sending after an indexing error.
            drop(rx);
            let r = reader.join().unwrap_or_else(|_| Err(ReconError::Store("loading the accounts panicked".into())));
            if read.is_ok() {
                read = r;
            }
        }
        indexed.and(read)
    })?;
    Ok(indexer.finish())
}

/// The users by key (entity matching).
#[derive(Default)]
struct UserIndex {
    /// Normalised composite key → index in `logins`, or [`MULTIPLE`].
    keys: KeyIndex,
    logins: Vec<Box<str>>,
}

/// A value another thread is still computing: a reader waits for it only when it needs it.
struct Later<T> {
    value: std::sync::OnceLock<T>,
    done: Mutex<bool>,
    ready: std::sync::Condvar,
}

impl<T> Later<T> {
    fn new() -> Self {
        Later { value: std::sync::OnceLock::new(), done: Mutex::new(false), ready: std::sync::Condvar::new() }
    }

    /// Ends the wait: with the value, or without (its producer failed and reports why).
    fn finish(&self, value: Option<T>) {
        if let Some(v) = value {
            let _ = self.value.set(v);
        }
        if let Ok(mut done) = self.done.lock() {
            *done = true;
        }
        self.ready.notify_all();
    }

    /// The value, once there; `None` if its producer failed.
    fn wait(&self) -> Option<&T> {
        if let Some(v) = self.value.get() {
            return Some(v);
        }
        let mut done = self.done.lock().ok()?;
        while !*done {
            done = self.ready.wait(done).ok()?;
        }
        drop(done);
        self.value.get()
    }
}

/// Ends a [`Later`]'s wait when dropped, even by a panic: nobody waits forever.
struct FinishOnDrop<'a, T>(&'a Later<T>);

impl<T> Drop for FinishOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.finish(None);
    }
}

/// Indexes the users by the key fields (entity matching).
fn load_users(conn: &rusqlite::Connection, fields: &[Field]) -> Result<UserIndex, ReconError> {
    let keys: Vec<&Field> = fields.iter().filter(|f| f.key).collect();
    let select: Vec<String> = keys
        .iter()
        .map(|f| match f.user_attribute.as_deref() {
            Some("usr_login") | None => "login".to_string(),
            Some(a) => format!("json_extract(attributes, {})", sql_quote(&json_path(a))),
        })
        .collect();
    let sql = format!("SELECT login, {} FROM users WHERE status <> 'Deleted'", select.join(", "));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let hint: i64 = conn.query_row("SELECT coalesce(max(rowid), 0) FROM users", [], |r| r.get(0))?;
    let hint = usize::try_from(hint).unwrap_or(0).min(1 << 24);
    let mut users = FxMap::with_capacity_and_hasher(hint, Default::default());
    let mut logins = Vec::with_capacity(hint);
    let mut key = String::new();
    while let Some(r) = rows.next()? {
        let login: Box<str> = column_text(r, 0)?.unwrap_or_default();
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            normalise_into(&mut key, f, column_text(r, 1 + i)?.as_deref().unwrap_or(""));
        }
        let slot = u32::try_from(logins.len()).map_err(|_| ReconError::Store("too many users".into()))?;
        insert_key(&mut users, Box::from(key.as_str()), slot);
        logins.push(login);
    }
    Ok(UserIndex { keys: users, logins })
}

/// A row after validation: what it says, typed.
struct Checked {
    key_display: String,
    /// Index into [`Plan::form_fields`] → stored text.
    form: Vec<(usize, String)>,
    /// Index into [`Plan::user_fields`] → text.
    user: Vec<(usize, String)>,
    status: Option<ObjectStatus>,
}

/// Validates a row: types, status values. Every problem of the row at once. The normalised
/// key goes to `key` (a buffer the caller reuses: only matching needs it).
fn check(plan: &Plan, record: &[&str], key: &mut String) -> Result<Checked, String> {
    key.clear();
    let mut problems = Vec::new();
    let mut key_display = String::new();
    let mut form = Vec::new();
    let mut user = Vec::new();
    let mut status = None;
    for (col, f) in plan.fields.iter().enumerate() {
        let raw = record.get(col).copied().unwrap_or("").trim();
        if raw.is_empty() {
            if f.key {
                problems.push(format!("the key `{}` is empty", f.name));
            }
            continue;
        }
        let text: std::borrow::Cow<'_, str> = match f.ty {
            // The common case needs no typed value: the text is stored as it is.
            ValueType::String => raw.into(),
            ty => match value::typed(ty, raw) {
                Ok(Value::Text(t)) => t.into(),
                Ok(other) => other.display().into(),
                Err(e) => {
                    problems.push(format!("`{}`: {e}", f.name));
                    continue;
                }
            },
        };
        if f.key {
            if !key_display.is_empty() {
                key.push(KEY_SEPARATOR);
                key_display.push(',');
            }
            normalise_into(key, f, &text);
            key_display.push_str(&text);
        }
        match f.put {
            Put::Form(i) => form.push((i, text.into_owned())),
            Put::User(i) => user.push((i, text.into_owned())),
            Put::Nowhere => {}
            Put::Status => {
                let found = f
                    .values
                    .get(&*text)
                    .or_else(|| f.values.iter().find(|(k, _)| k.eq_ignore_ascii_case(&text)).map(|(_, v)| v))
                    .copied()
                    .or_else(|| if f.values.is_empty() { ObjectStatus::parse(&text) } else { None });
                match found {
                    Some(s) => status = Some(s),
                    None => {
                        let expected: Vec<&str> = if f.values.is_empty() {
                            ObjectStatus::ALL.iter().map(|s| s.as_str()).collect()
                        } else {
                            f.values.keys().map(String::as_str).collect()
                        };
                        problems.push(format!(
                            "unknown status value `{text}` for `{}`; expected one of {}",
                            f.name,
                            expected.join(", ")
                        ))
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Checked { key_display, form, user, status })
}

/// What matching decided for a row.
enum Decision {
    /// An account slot.
    Account(u32, ReconAction, &'static str),
    /// A user index in [`Plan::user_logins`].
    User(u32, ReconAction),
    Nothing(ReconAction, &'static str),
}

/// `None` when the user index, needed for this row, failed to load.
fn decide(plan: &Plan, users: &Later<UserIndex>, key: &str) -> Option<Decision> {
    let [no_match, one_entity, one_process, multiple] = plan.actions;
    match plan.accounts.get(key) {
        Some(&MULTIPLE) => return Some(Decision::Nothing(multiple, "multiple matches")),
        Some(&slot) => return Some(Decision::Account(slot, one_process, "one process match")),
        None => {}
    }
    if plan.entity_matching {
        // The user index may still be loading: only rows without a process match wait.
        match users.wait()?.keys.get(key) {
            Some(&MULTIPLE) => return Some(Decision::Nothing(multiple, "multiple matches")),
            Some(&u) => return Some(Decision::User(u, one_entity)),
            None => {}
        }
    }
    Some(Decision::Nothing(no_match, "no match"))
}

fn action_name(a: ReconAction) -> &'static str {
    match a {
        ReconAction::None => "none",
        ReconAction::Create => "create",
        ReconAction::Link => "link",
        ReconAction::Update => "update",
    }
}

/// Rows read from the source, waiting for a worker: the values of the recon fields (in field
/// order) of every row packed into one buffer, so a chunk costs a handful of allocations.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Byte range in `bytes` of each value.
    spans: Vec<(usize, usize)>,
    /// Line, and the index in `spans` of the row's first value or why the row is unreadable.
    rows: Vec<(u64, Result<usize, String>)>,
}

impl Chunk {
    fn push_value(&mut self, v: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(v);
        self.spans.push((start, self.bytes.len()));
    }
}

/// A validated and matched row, for the writer.
enum Work {
    Bad { line: u64, error: String },
    Row { line: u64, checked: Checked, decision: Decision },
}

/// Validates and matches the rows of a chunk: the CPU-bound part, run on every worker.
/// `None` when the user index failed to load (the run fails with its error).
fn work(plan: &Plan, users: &Later<UserIndex>, chunk: &Chunk) -> Option<Vec<Work>> {
    let n = plan.fields.len();
    let mut out = Vec::with_capacity(chunk.rows.len());
    let mut values: Vec<&str> = Vec::with_capacity(n);
    let mut key = String::new();
    for (line, row) in &chunk.rows {
        let line = *line;
        let first = match row {
            Ok(first) => *first,
            Err(e) => {
                out.push(Work::Bad { line, error: e.clone() });
                continue;
            }
        };
        values.clear();
        let mut problems = Vec::new();
        for (i, f) in plan.fields.iter().enumerate() {
            let bytes = chunk.spans.get(first + i).and_then(|&(s, e)| chunk.bytes.get(s..e)).unwrap_or(&[]);
            match std::str::from_utf8(bytes) {
                Ok(v) => values.push(v),
                Err(e) => {
                    problems.push(format!("`{}`: not valid UTF-8 (byte {})", f.name, e.valid_up_to() + 1));
                    values.push("");
                }
            }
        }
        let checked = if problems.is_empty() {
            check(plan, &values, &mut key)
        } else {
            Err(format!("unreadable row: {}", problems.join("; ")))
        };
        out.push(match checked {
            Ok(checked) => {
                let decision = decide(plan, users, &key)?;
                Work::Row { line, checked, decision }
            }
            Err(error) => Work::Bad { line, error },
        });
    }
    Some(out)
}

/// One event waiting for the multi-row INSERT.
struct Event {
    line: u64,
    key: Option<String>,
    outcome: &'static str,
    action: &'static str,
    account: Option<i64>,
    changes: String,
    error: Option<String>,
}

/// Appends `text` as a JSON string.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    // Runs without anything to escape are copied whole; every escaped byte is ASCII, so the
    // run boundaries are character boundaries.
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(text.get(run..i).unwrap_or(""));
        if escaped.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(text.get(run..).unwrap_or(""));
    out.push('"');
}

/// Appends `"name":{"from":..,"to":..}` to a changes object under construction.
fn push_change(out: &mut String, name: &str, from: Option<&str>, to: &str) {
    out.push(if out.is_empty() { '{' } else { ',' });
    push_json_str(out, name);
    out.push_str(":{\"from\":");
    match from {
        Some(f) => push_json_str(out, f),
        None => out.push_str("null"),
    }
    out.push_str(",\"to\":");
    push_json_str(out, to);
    out.push('}');
}

/// The writes of a run on its store, one implementation per kind of store: SQLite
/// ([`SqliteSink`]) and PostgreSQL (`recon_pg.rs`). The writer decides what to write; a sink
/// writes it, each row's writes whole or not at all.
trait Sink {
    /// Records the start of a run; its id.
    fn start_run(&mut self, process: &str, source: &str, now: Instant) -> Result<i64, DbError>;
    /// Records the run's summary once every row is written.
    fn finish_run(&mut self, run: i64, now: Instant, summary: &str) -> Result<(), DbError>;
    /// Rows per write transaction.
    fn commit_rows(&self) -> u64;
    fn begin(&mut self) -> Result<(), DbError>;
    fn commit(&mut self) -> Result<(), DbError>;
    /// Rolls back the open transaction, if any.
    fn rollback(&mut self);
    /// Whether the open transaction was lost (the database rolled it back), which ends the
    /// run; otherwise a failed row was undone whole and the run goes on.
    fn lost(&self) -> bool;
    /// Writes account `id`'s new status and form members, and its user's attributes, as one
    /// unit.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        plan: &Plan,
        id: i64,
        login: &str,
        status: Option<&str>,
        form: &[&(usize, String)],
        user: &[&(usize, String)],
        now: Instant,
    ) -> Result<(), DbError>;
    /// A user's attributes (JSON text).
    fn user_attributes(&mut self, login: &str) -> Result<String, DbError>;
    /// Inserts an account of the process for `login`; its id.
    fn insert_account(
        &mut self,
        plan: &Plan,
        login: &str,
        status: &str,
        form: &str,
        now: Instant,
    ) -> Result<i64, DbError>;
    fn insert_events(&mut self, run: i64, now: Instant, events: &[Event]) -> Result<(), DbError>;
}

/// The single writer: applies decided rows in large transactions and records their events.
/// It owns the account snapshots, so "changed or not" is decided against what this run has
/// written so far, in the order it writes.
struct Writer<'a> {
    plan: &'a Plan,
    users: &'a Later<UserIndex>,
    run: i64,
    now: Instant,
    snapshots: Vec<Snapshot>,
    /// Accounts created by this run, by user login.
    created: FxMap<Box<str>, u32>,
    events: Vec<Event>,
    summary: Summary,
    bad: Vec<BadRow>,
}

impl Writer<'_> {
    fn bad_row(&mut self, line: u64, error: String) {
        self.bad.push(BadRow { line, error });
        // Keep the first rows by line (workers finish out of order), in bounded memory.
        if self.bad.len() >= 2 * BAD_ROWS_KEPT {
            self.bad.sort_by_key(|b| b.line);
            self.bad.truncate(BAD_ROWS_KEPT);
        }
    }

    fn event(
        &mut self,
        line: u64,
        c: &mut Checked,
        outcome: &'static str,
        action: &'static str,
        account: Option<i64>,
        changes: String,
    ) {
        self.events.push(Event {
            line,
            // Each row has one event (a failed write has none yet): the key moves into it.
            key: Some(std::mem::take(&mut c.key_display)),
            outcome,
            action,
            account,
            changes: if changes.is_empty() { "{}".into() } else { changes },
            error: None,
        });
    }

    /// Applies one unit of work inside the open transaction. A row whose write fails is
    /// rolled back whole and reported; an error that ends the transaction ends the run.
    fn write<S: Sink>(&mut self, sink: &mut S, w: Work) -> Result<(), ReconError> {
        self.summary.rows += 1;
        let (line, c, decision) = match w {
            Work::Bad { line, error } => {
                self.summary.failed += 1;
                self.events.push(Event {
                    line,
                    key: None,
                    outcome: "bad row",
                    action: "skipped",
                    account: None,
                    changes: "{}".into(),
                    error: Some(error.clone()),
                });
                self.bad_row(line, error);
                return Ok(());
            }
            Work::Row { line, checked, decision } => (line, checked, decision),
        };
        let mut c = c;
        if let Err(e) = self.apply(sink, line, &mut c, decision) {
            if sink.lost() {
                // The database rolled the whole transaction back (disk full, I/O error): stop.
                return Err(e.into());
            }
            self.summary.failed += 1;
            let msg = e.to_string();
            self.events.push(Event {
                line,
                key: Some(std::mem::take(&mut c.key_display)),
                outcome: "failed",
                action: "skipped",
                account: None,
                changes: "{}".into(),
                error: Some(msg.clone()),
            });
            self.bad_row(line, msg);
        }
        Ok(())
    }

    fn apply<S: Sink>(&mut self, sink: &mut S, line: u64, c: &mut Checked, decision: Decision) -> Result<(), DbError> {
        match decision {
            Decision::Account(slot, action, outcome) => match action {
                ReconAction::Update | ReconAction::Link | ReconAction::Create => {
                    self.update_and_record(sink, line, c, slot, outcome, action_name(action))
                }
                ReconAction::None => {
                    self.summary.unmatched += 1;
                    let id = self.snapshots.get(slot as usize).map(|s| s.id);
                    self.event(line, c, outcome, "none", id, String::new());
                    Ok(())
                }
            },
            Decision::User(user, action) => {
                // A user decision was made with the index: it is there.
                let login = self.users.wait().and_then(|u| u.logins.get(user as usize)).cloned().unwrap_or_default();
                // An account created by an earlier row of this run, or one the key did not
                // match (its key fields differ from the user's attributes).
                let existing = self.created.get(&login).or_else(|| self.plan.by_login.get(&login)).copied();
                match (action, existing) {
                    (ReconAction::None, _) => {
                        self.summary.unmatched += 1;
                        self.event(line, c, "one entity match", "none", None, String::new());
                        Ok(())
                    }
                    (ReconAction::Update, None) => {
                        self.summary.unmatched += 1;
                        self.event(line, c, "one entity match", "none: no account to update", None, String::new());
                        Ok(())
                    }
                    (_, Some(slot)) => self.update_and_record(sink, line, c, slot, "one process match", "update"),
                    (action, None) => {
                        let (slot, changes) = self.create_account(sink, &login, c)?;
                        if action == ReconAction::Create {
                            self.summary.created += 1;
                        } else {
                            self.summary.linked += 1;
                        }
                        self.created.insert(login, slot);
                        let id = self.snapshots.get(slot as usize).map(|s| s.id);
                        self.event(line, c, "one entity match", action_name(action), id, changes);
                        Ok(())
                    }
                }
            }
            Decision::Nothing(action, outcome) => {
                self.summary.unmatched += 1;
                let action = match action {
                    ReconAction::None => "none",
                    // Nothing to link to, update, or own a created account.
                    _ => "none: no single user or account to apply it to",
                };
                self.event(line, c, outcome, action, None, String::new());
                Ok(())
            }
        }
    }

    fn update_and_record<S: Sink>(
        &mut self,
        sink: &mut S,
        line: u64,
        c: &mut Checked,
        slot: u32,
        outcome: &'static str,
        action: &'static str,
    ) -> Result<(), DbError> {
        let (id, changes) = self.apply_update(sink, slot, c)?;
        if changes.is_empty() {
            self.summary.unchanged += 1;
            self.event(line, c, outcome, "no change", Some(id), String::new());
        } else {
            self.summary.updated += 1;
            self.event(line, c, outcome, action, Some(id), changes);
        }
        Ok(())
    }

    /// Writes to account `slot` what differs from its snapshot, patching only those members of
    /// the JSON columns (a concurrent change to another form field survives). Returns the
    /// account id and the changes as JSON, empty if none.
    fn apply_update<S: Sink>(&mut self, sink: &mut S, slot: u32, c: &Checked) -> Result<(i64, String), DbError> {
        let plan = self.plan;
        let Some(snap) = self.snapshots.get(slot as usize) else {
            return Err(DbError::Other(format!("account slot {slot} is missing")));
        };
        let new_status =
            c.status.filter(|s| *s != ObjectStatus::None && s.as_str() != snap.status.as_str()).map(|s| s.as_str());
        let form: Vec<&(usize, String)> =
            c.form.iter().filter(|(i, t)| snap.form.get(*i).and_then(|v| v.as_deref()) != Some(t.as_str())).collect();
        let user: Vec<&(usize, String)> =
            c.user.iter().filter(|(i, t)| snap.user.get(*i).and_then(|v| v.as_deref()) != Some(t.as_str())).collect();
        if new_status.is_none() && form.is_empty() && user.is_empty() {
            return Ok((snap.id, String::new()));
        }
        // The key order of a serde_json map, so events read the same as before.
        let mut changes = String::with_capacity(128);
        if let Some(s) = new_status {
            push_change(&mut changes, "OIM_OBJECT_STATUS", Some(snap.status.as_str()), s);
        }
        for (i, t) in &form {
            let name = plan.form_changes.get(*i).map(String::as_str).unwrap_or("");
            push_change(&mut changes, name, snap.form.get(*i).and_then(|v| v.as_deref()), t);
        }
        for (i, t) in &user {
            let name = plan.user_fields.get(*i).map(String::as_str).unwrap_or("");
            push_change(&mut changes, &format!("user.{name}"), snap.user.get(*i).and_then(|v| v.as_deref()), t);
        }
        changes.push('}');

        sink.update(plan, snap.id, &snap.login, new_status, &form, &user, self.now)?;
        let id = snap.id;
        if let Some(snap) = self.snapshots.get_mut(slot as usize) {
            if let Some(s) = c.status.filter(|_| new_status.is_some()) {
                snap.status = StoredStatus::Known(s);
            }
            for (i, t) in form {
                if let Some(v) = snap.form.get_mut(*i) {
                    *v = Some(t.as_str().into());
                }
            }
            for (i, t) in user {
                if let Some(v) = snap.user.get_mut(*i) {
                    *v = Some(t.as_str().into());
                }
            }
        }
        Ok((id, changes))
    }

    /// Creates the account of `login` that the target already has. Returns its slot and the
    /// changes.
    fn create_account<S: Sink>(&mut self, sink: &mut S, login: &str, c: &Checked) -> Result<(u32, String), DbError> {
        let plan = self.plan;
        let attrs = sink.user_attributes(login)?;
        let attrs: BTreeMap<String, String> = serde_json::from_str(&attrs).unwrap_or_default();
        let mut form = serde_json::Map::new();
        for (name, d) in &plan.defaults {
            form.insert(name.clone(), serde_json::Value::String(d.clone()));
        }
        for (name, a) in &plan.from_user {
            let v = if a == "usr_login" { Some(login.to_string()) } else { attrs.get(a).cloned() };
            if let Some(v) = v {
                form.insert(name.clone(), serde_json::Value::String(v));
            }
        }
        for (i, text) in &c.form {
            if let Some(name) = plan.form_fields.get(*i) {
                form.insert(name.clone(), serde_json::Value::String(text.clone()));
            }
        }
        let status = c.status.filter(|s| *s != ObjectStatus::None).unwrap_or(ObjectStatus::Provisioned);
        let form_json = serde_json::Value::Object(form.clone()).to_string();
        let id = sink.insert_account(plan, login, status.as_str(), &form_json, self.now)?;
        let slot = u32::try_from(self.snapshots.len()).map_err(|_| DbError::Other("too many accounts".into()))?;
        self.snapshots.push(Snapshot {
            id,
            login: login.into(),
            status: StoredStatus::Known(status),
            form: plan.form_fields.iter().map(|n| form.get(n).and_then(|v| v.as_str()).map(Into::into)).collect(),
            user: plan.user_fields.iter().map(|a| attrs.get(a).map(|v| v.as_str().into())).collect(),
        });
        let changes = serde_json::json!({ "account": { "to": id }, "OIM_OBJECT_STATUS": { "to": status.as_str() }, "form": form });
        Ok((slot, changes.to_string()))
    }

    /// Inserts the pending events.
    fn flush_events<S: Sink>(&mut self, sink: &mut S) -> Result<(), DbError> {
        let events = std::mem::take(&mut self.events);
        sink.insert_events(self.run, self.now, &events)
    }

    /// Writes every batch the workers send, committing every [`Sink::commit_rows`] rows.
    fn drain<S: Sink>(
        &mut self,
        sink: &mut S,
        done: mpsc::Receiver<Vec<Work>>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), ReconError> {
        let mut in_tx = 0u64;
        let commit_rows = sink.commit_rows();
        sink.begin()?;
        let result = (|| -> Result<(), ReconError> {
            for batch in done.iter() {
                let n = batch.len() as u64;
                for w in batch {
                    self.write(sink, w)?;
                    if self.events.len() >= EVENTS_PER_INSERT * 16 {
                        self.flush_events(sink)?;
                    }
                }
                in_tx += n;
                if in_tx >= commit_rows {
                    self.flush_events(sink)?;
                    sink.commit()?;
                    sink.begin()?;
                    in_tx = 0;
                }
                progress(n);
            }
            self.flush_events(sink)?;
            sink.commit()?;
            Ok(())
        })();
        if result.is_err() {
            sink.rollback();
        }
        result
    }
}

/// The writes of a run on a SQLite store: one connection in large IMMEDIATE transactions
/// with `synchronous = NORMAL`, the final commit with `FULL`; a checkpointing thread of its
/// own copies committed pages from the WAL after each commit.
struct SqliteSink {
    conn: rusqlite::Connection,
    /// The INSERT of a full group of events, once built.
    events_sql: String,
    /// Asks the checkpointer for a checkpoint; dropped to stop it.
    committed: Option<mpsc::SyncSender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl SqliteSink {
    fn open(state: &Path) -> Result<Self, ReconError> {
        let conn = open_conn(state)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144; PRAGMA wal_autocheckpoint = 0;")?;
        // Copying committed pages from the WAL into the database (and its fsyncs) happens on
        // a connection of its own, beside the writer, not inside its commits. The checkpoint
        // is PASSIVE: it never waits for the writer, and what it leaves is done on close.
        let (committed, checkpoints) = mpsc::sync_channel::<()>(1);
        let path = state.to_path_buf();
        let checkpointer = std::thread::spawn(move || {
            let Ok(conn) = open_conn(&path) else { return };
            if conn.execute_batch("PRAGMA synchronous = NORMAL").is_err() {
                return;
            }
            for () in checkpoints.iter() {
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        });
        Ok(SqliteSink { conn, events_sql: String::new(), committed: Some(committed), checkpointer: Some(checkpointer) })
    }

    /// Stops the checkpointer.
    fn stop_checkpoints(&mut self) {
        self.committed = None;
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SqliteSink {
    fn drop(&mut self) {
        self.stop_checkpoints();
    }
}

impl Sink for SqliteSink {
    fn start_run(&mut self, process: &str, source: &str, now: Instant) -> Result<i64, DbError> {
        self.conn.execute(
            "INSERT INTO recon_runs(process, source, started_at) VALUES (?1, ?2, ?3)",
            params![process, source, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn finish_run(&mut self, run: i64, now: Instant, summary: &str) -> Result<(), DbError> {
        self.stop_checkpoints();
        // The last commit syncs the WAL, and with it every batch of the run.
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        self.conn.execute(
            "UPDATE recon_runs SET finished_at = ?2, summary = ?3 WHERE id = ?1",
            params![run, now, summary],
        )?;
        Ok(())
    }

    fn commit_rows(&self) -> u64 {
        COMMIT_ROWS
    }

    fn begin(&mut self) -> Result<(), DbError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.conn.execute_batch("COMMIT")?;
        // A checkpoint already asked for covers this commit too.
        if let Some(c) = &self.committed {
            let _ = c.try_send(());
        }
        Ok(())
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn lost(&self) -> bool {
        self.conn.is_autocommit()
    }

    fn update(
        &mut self,
        plan: &Plan,
        id: i64,
        login: &str,
        new_status: Option<&str>,
        form: &[&(usize, String)],
        user: &[&(usize, String)],
        now: Instant,
    ) -> Result<(), DbError> {
        let conn = &self.conn;
        // Two statements must go in together: a savepoint, only then.
        let both = (new_status.is_some() || !form.is_empty()) && !user.is_empty();
        if both {
            conn.execute_batch("SAVEPOINT recon_row")?;
        }
        let written = (|| -> rusqlite::Result<()> {
            if new_status.is_some() || !form.is_empty() {
                // Two recon fields may map to one form field: more pairs than form fields.
                let built;
                let sql = match plan.update_sql.get(form.len()) {
                    Some(sql) => sql,
                    None => {
                        built = update_sql(form.len());
                        &built
                    }
                };
                let mut stmt = conn.prepare_cached(sql)?;
                stmt.raw_bind_parameter(1, id)?;
                stmt.raw_bind_parameter(2, new_status)?;
                stmt.raw_bind_parameter(3, now)?;
                for (k, (i, t)) in form.iter().enumerate() {
                    stmt.raw_bind_parameter(4 + 2 * k, plan.form_paths.get(*i).map(String::as_str).unwrap_or("$"))?;
                    stmt.raw_bind_parameter(5 + 2 * k, t.as_str())?;
                }
                stmt.raw_execute()?;
            }
            if !user.is_empty() {
                let mut sql = String::from("UPDATE users SET attributes = json_set(attributes");
                for k in 0..user.len() {
                    sql.push_str(&format!(", ?{}, ?{}", 3 + 2 * k, 4 + 2 * k));
                }
                sql.push_str("), updated_at = ?2 WHERE login = ?1");
                let mut stmt = conn.prepare_cached(&sql)?;
                stmt.raw_bind_parameter(1, login)?;
                stmt.raw_bind_parameter(2, now)?;
                for (k, (i, t)) in user.iter().enumerate() {
                    stmt.raw_bind_parameter(3 + 2 * k, plan.user_paths.get(*i).map(String::as_str).unwrap_or("$"))?;
                    stmt.raw_bind_parameter(4 + 2 * k, t.as_str())?;
                }
                stmt.raw_execute()?;
            }
            Ok(())
        })();
        if both {
            match &written {
                Ok(()) => conn.execute_batch("RELEASE recon_row")?,
                Err(_) if !conn.is_autocommit() => conn.execute_batch("ROLLBACK TO recon_row; RELEASE recon_row")?,
                Err(_) => {}
            }
        }
        Ok(written?)
    }

    fn user_attributes(&mut self, login: &str) -> Result<String, DbError> {
        Ok(self
            .conn
            .prepare_cached("SELECT attributes FROM users WHERE login = ?1")?
            .query_row([login], |r| r.get(0))?)
    }

    fn insert_account(
        &mut self,
        plan: &Plan,
        login: &str,
        status: &str,
        form: &str,
        now: Instant,
    ) -> Result<i64, DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO accounts(process, user_login, bundle_hash, status, form, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![plan.process, login, plan.bundle_hash, status, form, now])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Many rows per statement.
    fn insert_events(&mut self, run: i64, now: Instant, events: &[Event]) -> Result<(), DbError> {
        let conn = &self.conn;
        for group in events.chunks(EVENTS_PER_INSERT) {
            // Full groups reuse one text (the statement cache is keyed by it); built once.
            if group.len() == EVENTS_PER_INSERT && !self.events_sql.is_empty() {
                let mut stmt = conn.prepare_cached(&self.events_sql)?;
                bind_events(&mut stmt, group)?;
                stmt.raw_execute()?;
                continue;
            }
            // The run id and the time are the same for every row: literals, not parameters.
            let mut sql = String::from(
                "INSERT INTO recon_events(run_id, at, line, key, outcome, action, account_id, changes, error) VALUES ",
            );
            for k in 0..group.len() {
                let p = 7 * k;
                if k > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "({}, {}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    run,
                    now,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7
                ));
            }
            let mut stmt = conn.prepare_cached(&sql)?;
            bind_events(&mut stmt, group)?;
            stmt.raw_execute()?;
            if group.len() == EVENTS_PER_INSERT {
                self.events_sql = sql;
            }
        }
        Ok(())
    }
}

fn bind_events(stmt: &mut rusqlite::CachedStatement<'_>, group: &[Event]) -> rusqlite::Result<()> {
    for (k, e) in group.iter().enumerate() {
        let p = 7 * k;
        stmt.raw_bind_parameter(p + 1, e.line as i64)?;
        stmt.raw_bind_parameter(p + 2, e.key.as_deref())?;
        stmt.raw_bind_parameter(p + 3, e.outcome)?;
        stmt.raw_bind_parameter(p + 4, e.action)?;
        stmt.raw_bind_parameter(p + 5, e.account)?;
        stmt.raw_bind_parameter(p + 6, e.changes.as_str())?;
        stmt.raw_bind_parameter(p + 7, e.error.as_deref())?;
    }
    Ok(())
}

fn open_conn(path: &Path) -> Result<rusqlite::Connection, ReconError> {
    let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(60), None)
        .map_err(|e| ReconError::Store(e.to_string()))?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    Ok(conn)
}

/// Reconciles `process` from `source` into the state store `state`. The bundle must already
/// be saved in the store (accounts reference it).
///
/// One thread reads the source, `options.threads` workers validate and match rows against
/// in-memory indexes built once at the start, and one writer applies the decided rows in
/// large transactions. On SQLite another thread checkpoints the WAL after each of them.
/// Durability: the writer commits its batches with `synchronous=NORMAL` (in WAL mode, still
/// atomic and consistent) and the final commit with `FULL`, which syncs the whole WAL; on
/// PostgreSQL every commit is the server's. A crash mid-run may lose the last batches, never
/// half a row, and re-running the same source applies what is missing and changes nothing
/// else.
pub fn reconcile(
    state: State<'_>,
    bundle: &Bundle,
    process_name: &str,
    source: Source,
    targets: &mut dyn TargetProvider,
    options: &Options<'_>,
) -> Result<Outcome, ReconError> {
    let process =
        bundle.process(process_name).map(|(_, p)| p).ok_or_else(|| ReconError::NoRecon(process_name.to_string()))?;
    let mut plan = resolve(bundle, process)?;
    let mut warnings = Vec::new();

    // The source is opened (and its header checked) before anything is loaded or recorded.
    let feed = match source {
        Source::Csv(path) => {
            let display = path.display().to_string();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .buffer_capacity(1 << 20)
                .from_path(&path)
                .map_err(|e| ReconError::Read { path: display.clone(), error: e.to_string() })?;
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| ReconError::Read { path: display.clone(), error: e.to_string() })?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut columns = Vec::new();
            for f in &plan.fields {
                match header.iter().position(|h| h == &f.name) {
                    Some(i) => columns.push(i),
                    None => {
                        let hint = crate::engine::did_you_mean(&f.name, header.iter().map(String::as_str))
                            .map(|s| format!(" (is `{s}` meant to be `{}`?)", f.name))
                            .unwrap_or_default();
                        return Err(ReconError::MissingColumn {
                            path: display,
                            line: 1,
                            column: f.name.clone(),
                            hint,
                            expected: plan.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
                        });
                    }
                }
            }
            for h in &header {
                if !plan.fields.iter().any(|f| &f.name == h) {
                    warnings
                        .push(format!("column `{h}` of `{display}` is no recon field of `{}`; ignored", process.name));
                }
            }
            plan.columns = columns;
            plan.width = header.len();
            Feed::Csv(reader, display)
        }
        Source::Target => {
            let recon = process.recon.as_ref().ok_or_else(|| ReconError::NoRecon(process.name.clone()))?;
            let qi = recon.query.ok_or_else(|| ReconError::NoQuery(process.name.clone()))?;
            let query = bundle
                .targets
                .get(process.target)
                .and_then(|t| bundle.query_sets.get(t.query_set))
                .and_then(|s| s.queries.get(qi))
                .ok_or_else(|| ReconError::NoQuery(process.name.clone()))?;
            let values = vec![Value::Null; query.params.len()];
            let target = targets.open(bundle, process.target).map_err(|e| ReconError::Unreachable {
                process: process.name.clone(),
                target: bundle.targets.get(process.target).map(|t| t.name.clone()).unwrap_or_default(),
                error: e.to_string(),
            })?;
            let outcome = target
                .call(query, &values)
                .map_err(|e| ReconError::Query { process: process.name.clone(), error: e.to_string() })?;
            let rows: Vec<Vec<String>> = outcome
                .rows
                .iter()
                .map(|r| {
                    plan.fields
                        .iter()
                        .map(|f| {
                            r.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(&f.name))
                                .map(|(_, v)| match v {
                                    Value::Null => String::new(),
                                    other => other.display(),
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
            (options.total)(rows.len() as u64);
            Feed::Rows(rows)
        }
    };

    let state = match state {
        State::Sqlite(path) => path,
        State::Postgres(store) => return pg::reconcile(store, bundle, process, plan, feed, options, warnings),
    };
    // The indexes load side by side, on their own connections. Rows start flowing once the
    // accounts are indexed: the user index is only for rows no account matches, which wait
    // for it (while it loads, the writer already writes the others).
    let users = Later::new();
    std::thread::scope(|outer| {
        let users = &users;
        let key_fields: Vec<Field> = plan.fields.iter().filter(|f| f.key).cloned().collect();
        let entity_matching = plan.entity_matching;
        let users_loaded = outer.spawn(move || -> Result<(), ReconError> {
            let _finished = FinishOnDrop(users);
            let index =
                if entity_matching { load_users(&open_conn(state)?, &key_fields)? } else { UserIndex::default() };
            users.finish(Some(index));
            Ok(())
        });
        let (snapshots, account_index, by_login) = load_accounts(state, &plan)?;
        plan.accounts = account_index;
        plan.by_login = by_login;
        let outcome = SqliteSink::open(state).and_then(|mut sink| {
            write_rows(&mut sink, bundle, process, &plan, users, snapshots, feed, options, warnings)
        });
        let users_loaded =
            users_loaded.join().unwrap_or_else(|_| Err(ReconError::Store("loading the users panicked".into())));
        let outcome = outcome?;
        users_loaded?;
        Ok(outcome)
    })
}

/// Matches, applies and records the rows of `feed` (the indexes of `plan` built, the user
/// index built or on its way).
#[allow(clippy::too_many_arguments)]
fn write_rows<S: Sink>(
    sink: &mut S,
    bundle: &Bundle,
    process: &ir::Process,
    plan: &Plan,
    users: &Later<UserIndex>,
    snapshots: Vec<Snapshot>,
    feed: Feed,
    options: &Options<'_>,
    warnings: Vec<String>,
) -> Result<Outcome, ReconError> {
    let source_name = match &feed {
        Feed::Csv(_, p) => format!("csv:{p}"),
        Feed::Rows(_) => {
            format!("target:{}", bundle.targets.get(process.target).map(|t| t.name.as_str()).unwrap_or("?"))
        }
    };
    let run = sink.start_run(&process.name, &source_name, options.now)?;

    let threads = options.threads.max(1);
    let mut writer = Writer {
        plan,
        users,
        run,
        now: options.now,
        snapshots,
        created: FxMap::default(),
        events: Vec::with_capacity(EVENTS_PER_INSERT * 16),
        summary: Summary { run, ..Summary::default() },
        bad: Vec::new(),
    };
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(threads * 2);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<Vec<Work>>(threads * 2);
    let (written, feed_result, workers_ok) = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || feed_rows(feed, plan, &chunk_tx));
        let mut handles = Vec::new();
        for _ in 0..threads {
            let chunk_rx = Arc::clone(&chunk_rx);
            let done_tx = done_tx.clone();
            handles.push(scope.spawn(move || loop {
                let chunk = match chunk_rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok(chunk) = chunk else { return };
                let Some(done) = work(plan, users, &chunk) else { return };
                if done_tx.send(done).is_err() {
                    // The writer stopped; so do we, which stops the feeder.
                    return;
                }
            }));
        }
        drop(done_tx);
        drop(chunk_rx);
        // Dropping the receiver (when `drain` returns) unblocks the workers on an error.
        let written = writer.drain(sink, done_rx, options.progress);
        // Every worker joined, even after a panic: the scope would re-panic on an unjoined one.
        let joined: Vec<bool> = handles.into_iter().map(|h| h.join().is_ok()).collect();
        let workers_ok = joined.iter().all(|&ok| ok);
        let feed_result =
            feeder.join().unwrap_or_else(|_| Err(ReconError::Store("reading the source panicked".into())));
        (written, feed_result, workers_ok)
    });
    let summary = writer.summary.clone();
    let mut bad_rows = std::mem::take(&mut writer.bad);
    bad_rows.sort_by_key(|b| b.line);
    bad_rows.truncate(BAD_ROWS_KEPT);
    sink.finish_run(run, options.now, &serde_json::to_string(&summary).unwrap_or_default())?;
    written?;
    feed_result?;
    if !workers_ok {
        return Err(ReconError::Store("a worker panicked".into()));
    }
    Ok(Outcome { summary, bad_rows, warnings })
}

enum Feed {
    Csv(csv::Reader<std::fs::File>, String),
    Rows(Vec<Vec<String>>),
}

/// Reads the source into chunks for the workers. Parsing bytes (not strings) keeps this thread
/// light; the workers check UTF-8 along with everything else.
fn feed_rows(feed: Feed, plan: &Plan, tx: &mpsc::SyncSender<Chunk>) -> Result<(), ReconError> {
    let mut chunk = Chunk::default();
    let send = |chunk: &mut Chunk| -> bool { tx.send(std::mem::take(chunk)).is_ok() };
    match feed {
        Feed::Rows(rows) => {
            for (i, r) in rows.iter().enumerate() {
                chunk.rows.push((i as u64 + 1, Ok(chunk.spans.len())));
                for v in r {
                    chunk.push_value(v.as_bytes());
                }
                if chunk.rows.len() == BATCH && !send(&mut chunk) {
                    return Ok(());
                }
            }
        }
        Feed::Csv(mut reader, path) => {
            let mut record = csv::ByteRecord::new();
            loop {
                match reader.read_byte_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        if record.len() == plan.width {
                            chunk.rows.push((line, Ok(chunk.spans.len())));
                            for &i in &plan.columns {
                                chunk.push_value(record.get(i).unwrap_or(b""));
                            }
                        } else {
                            chunk.rows.push((
                                line,
                                Err(format!("{} columns where the header has {}", record.len(), plan.width)),
                            ));
                        }
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            return Err(ReconError::Read { path, error: e.to_string() });
                        }
                        chunk.rows.push((line, Err(format!("unreadable row: {e}"))));
                    }
                }
                if chunk.rows.len() == BATCH && !send(&mut chunk) {
                    return Ok(());
                }
            }
        }
    }
    if !chunk.rows.is_empty() {
        send(&mut chunk);
    }
    Ok(())
}

/// One recorded reconciliation event.
pub use crate::store::ReconEvent as EventRecord;

/// The events of run `run`, or of the newest run. Returns the run id too (`None`: no runs).
pub fn events(
    store: &dyn crate::store::StateStore,
    run: Option<i64>,
) -> Result<(Option<i64>, Vec<EventRecord>), ReconError> {
    Ok(store.recon_events(run)?)
}

#[cfg(test)]
#[path = "recon_tests.rs"]
mod tests;
