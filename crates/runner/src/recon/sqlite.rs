//! The writes of a run on a SQLite store ([`SqliteSink`]), and the connections a run opens on
//! it (`open_conn`), to load the indexes as well as to write.

use rusqlite::params;
use std::path::Path;
use std::sync::mpsc;

use super::plan::{update_sql, Plan};
use super::writer::{Event, Sink, EVENTS_PER_INSERT};
use super::{DbError, ReconError};
use crate::clock::Instant;

/// Rows per write transaction: commits (and their WAL sync) stop mattering at this size, while
/// the write lock is still released every fraction of a second for the provisioning path.
const COMMIT_ROWS: u64 = 50_000;

/// The writes of a run on a SQLite store: one connection in large IMMEDIATE transactions
/// with `synchronous = NORMAL`, the final commit with `FULL`; a checkpointing thread of its
/// own copies committed pages from the WAL after each commit.
pub(super) struct SqliteSink {
    conn: rusqlite::Connection,
    /// The INSERT of a full group of events, once built.
    events_sql: String,
    /// Asks the checkpointer for a checkpoint; dropped to stop it.
    committed: Option<mpsc::SyncSender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl SqliteSink {
    pub(super) fn open(state: &Path) -> Result<Self, ReconError> {
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

pub(super) fn open_conn(path: &Path) -> Result<rusqlite::Connection, ReconError> {
    let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(60), None)
        .map_err(|e| ReconError::Store(e.to_string()))?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    Ok(conn)
}
