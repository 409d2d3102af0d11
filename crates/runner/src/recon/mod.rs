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

use provflow_ir::{self as ir, Bundle};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use crate::clock::Instant;
use crate::engine::TargetProvider;
use crate::store::PgStore;
use crate::value::Value;

use index::{load_accounts, load_users, FinishOnDrop, FxMap, Later, Snapshot, UserIndex};
use matching::{work, Chunk, Work};
use plan::{resolve, Field, Plan};
use sqlite::{open_conn, SqliteSink};
use writer::{Sink, Writer, EVENTS_PER_INSERT};

mod index; // the in-memory match indexes, loaded from SQLite
mod matching; // validating and matching rows, on the workers
mod pg; // loading and writing on a PostgreSQL store
mod plan; // the recon fields resolved against the process
mod sqlite; // writing on a SQLite store
mod writer; // the single writer: applies decided rows, records events

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

pub struct Options<'a> {
    /// Threads that validate and match rows; one more thread reads the source and one writes.
    pub threads: usize,
    pub now: Instant,
    /// Called with the number of rows done after each batch.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Called once with the total, when it is known (`--from-target`).
    pub total: &'a (dyn Fn(u64) + Sync),
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
mod tests;
