//! The SQLite state store: one file, WAL, versioned migrations applied in one IMMEDIATE
//! transaction, the audit trail append-only by trigger.

use provflow_ir::{Bundle, TaskStatus};
use rusqlite::{params, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::queue::{
    expiry, fenced, holds, lease_seconds, slot_class, with_claims, Claim, Epoch, Fence, HeldClaim, Queue,
    TaskClaimParams, WorkerRecord, WorkerRow, WorkerStatus, HELD_COLUMNS, TASK_COUNTS, WORKER_COLUMNS,
};
use super::{
    audit_entry, encode_values, form_context, key_check_holds, key_check_value, map_json, reseal_form, status_text,
    user_record, why_refused, Account, AccountId, AccountRow, AuditEntry, Change, Database, KeyRotation, NewAccount,
    NewTask, OutboxEntry, OutboxMessage, OutboxRender, OutboxRow, ReconEvent, StateStore, Step, StoreError, TaskId,
    TaskInstance, TaskRow, UserAndAccount, UserRecord, ACCOUNT_COLUMNS, AUDIT_COLUMNS, KEY_CHECK, MESSAGE_COLUMNS,
    OUTBOX_COLUMNS, RECON_EVENT_COLUMNS, SCHEMA_VERSION, TASK_COLUMNS,
};
use crate::clock::Instant;
use crate::secret::SecretKey;

/// The migrations, applied in order on open; `schema_migrations` records each version.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE bundles (
    hash      TEXT PRIMARY KEY,
    ir        TEXT NOT NULL,
    stored_at INTEGER NOT NULL
);
CREATE TABLE users (
    login      TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    status     TEXT NOT NULL,
    locked     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    process     TEXT NOT NULL,
    user_login  TEXT NOT NULL REFERENCES users(login),
    bundle_hash TEXT NOT NULL REFERENCES bundles(hash),
    status      TEXT NOT NULL,
    form        TEXT NOT NULL,
    children    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX accounts_by_user ON accounts(user_login, process);
CREATE TABLE task_instances (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    task_index INTEGER NOT NULL,
    task_name  TEXT NOT NULL,
    status     TEXT NOT NULL,
    response   TEXT,
    attempt    INTEGER NOT NULL DEFAULT 1,
    due_at     INTEGER,
    calling    INTEGER NOT NULL DEFAULT 0,
    held       INTEGER NOT NULL DEFAULT 0,
    note       TEXT,
    child      TEXT NOT NULL DEFAULT '{}',
    outputs    TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX task_instances_by_account ON task_instances(account_id);
CREATE INDEX task_instances_by_status ON task_instances(status, due_at);
CREATE TABLE task_audit (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES task_instances(id),
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    response    TEXT,
    note        TEXT
);
CREATE TRIGGER task_audit_no_update BEFORE UPDATE ON task_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER task_audit_no_delete BEFORE DELETE ON task_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TABLE outbox (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    task_id        INTEGER REFERENCES task_instances(id),
    template_index INTEGER NOT NULL,
    template       TEXT NOT NULL,
    task_status    TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    bundle_hash    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    -- Filled when the message is rendered (later); secrets never reach these columns.
    locale         TEXT,
    message_type   TEXT,
    subject        TEXT,
    body           TEXT,
    rendered_at    INTEGER
);
"#,
    ),
    (
        2,
        // Notifications (rendering results, failures), reconciliation runs and events, and the
        // stable `usr_key` that notification resolvers query by.
        r#"
ALTER TABLE users ADD COLUMN usr_key INTEGER;
UPDATE users SET usr_key = rowid;
CREATE TRIGGER users_usr_key AFTER INSERT ON users WHEN NEW.usr_key IS NULL
BEGIN UPDATE users SET usr_key = NEW.rowid WHERE rowid = NEW.rowid; END;
ALTER TABLE accounts ADD COLUMN usr_key INTEGER;
UPDATE accounts SET usr_key = (SELECT u.usr_key FROM users u WHERE u.login = accounts.user_login);
CREATE TRIGGER accounts_usr_key AFTER INSERT ON accounts WHEN NEW.usr_key IS NULL
BEGIN UPDATE accounts SET usr_key = (SELECT u.usr_key FROM users u WHERE u.login = NEW.user_login) WHERE id = NEW.id; END;
CREATE INDEX accounts_by_usr_key ON accounts(usr_key);
ALTER TABLE outbox ADD COLUMN short TEXT;
ALTER TABLE outbox ADD COLUMN to_address TEXT;
-- queued (not rendered yet) | rendered | failed (see `error`)
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE outbox ADD COLUMN error TEXT;
CREATE TABLE recon_runs (
    id          INTEGER PRIMARY KEY,
    process     TEXT NOT NULL,
    source      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    summary     TEXT
);
CREATE TABLE recon_events (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL,
    line       INTEGER NOT NULL,
    key        TEXT,
    outcome    TEXT NOT NULL,
    action     TEXT NOT NULL,
    account_id INTEGER,
    changes    TEXT NOT NULL DEFAULT '{}',
    error      TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX recon_events_by_run ON recon_events(run_id, line);
"#,
    ),
    (
        3,
        // Only Pending work is looked up by status (`resume`, `next_due`). Finished tasks, the
        // vast majority, stay out of the index, so a transition writes fewer index pages.
        r#"
DROP INDEX task_instances_by_status;
CREATE INDEX task_instances_pending ON task_instances(due_at) WHERE status = 'Pending';
"#,
    ),
    (
        4,
        // Workers and their claims (`queue.rs`): who holds a task, the claim's epoch (one more
        // per claim, never reset: it fences commits) and when its lease expires.
        r#"
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    lease_seconds INTEGER NOT NULL,
    concurrency   INTEGER NOT NULL,
    stopped_at    INTEGER
);
ALTER TABLE task_instances ADD COLUMN claimed_by TEXT REFERENCES workers(id);
ALTER TABLE task_instances ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_instances ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX task_instances_runnable ON task_instances(account_id) WHERE status = 'Pending' AND held = 0;
CREATE INDEX task_instances_claimed ON task_instances(account_id) WHERE claimed_by IS NOT NULL;
"#,
    ),
    (
        5,
        // A manual task waits for a person: no worker claims it. Rows of earlier versions read
        // 0 and are marked when a worker first meets them (`task_mark_manual`).
        r#"
ALTER TABLE task_instances ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;
DROP INDEX task_instances_runnable;
CREATE INDEX task_instances_runnable ON task_instances(account_id) WHERE status = 'Pending' AND held = 0 AND manual = 0;
"#,
    ),
    (
        6,
        // Facts about the store itself: the key check (`key_check`), which tells a wrong key
        // at open instead of secrets that silently do not open.
        r#"
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
];

/// The page size of a new state store (an existing file keeps its own). A commit writes every
/// page it touches to the WAL in full; the store's rows are small, so 1 KiB pages write a
/// quarter of the bytes of SQLite's default 4 KiB for about the same number of pages. Measured
/// with `bench/runner`: an account run alone (`provflow run` for one user, `--batch 1`) is
/// ~25 % faster than with 4 KiB pages; batches of 64 are within the noise of either. The
/// autocheckpoint stays SQLite's 1,000 pages: with `synchronous = NORMAL` the commits since
/// the last checkpoint are what a power loss can take back, and that window stays small.
const STORE_PAGE_SIZE: u32 = 1024;

pub struct SqliteStore {
    conn: rusqlite::Connection,
    path: PathBuf,
    key: Option<SecretKey>,
    now: Box<dyn Fn() -> Instant + Send>,
    /// A transaction opened by `call_in_step` that the next `commit` finishes.
    step_open: bool,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates the store at `path`.
    pub fn open(path: &Path, key: Option<SecretKey>, now: Box<dyn Fn() -> Instant + Send>) -> Result<Self, StoreError> {
        let open_err = |error: String| StoreError::Open { path: path.display().to_string(), error };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::sqlite_conn::private_dir(parent).map_err(|e| open_err(e.to_string()))?;
        }
        // WAL with synchronous=NORMAL (see bench/runner/README.md, "Durability decision"): a
        // commit is in the WAL file when COMMIT returns, so it survives a killed process;
        // only a power loss can take back the newest commits. `PROVFLOW_SQLITE_SYNC=full`
        // fsyncs every commit instead.
        let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(30), Some(STORE_PAGE_SIZE))
            .map_err(|e| open_err(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = SqliteStore { conn, path: path.to_path_buf(), key, now, step_open: false };
        store.migrate()?;
        store.check_key()?;
        Ok(store)
    }

    /// Refuses a key that is not the one the store's secrets are sealed under; records the key
    /// check on first use of a key.
    fn check_key(&mut self) -> Result<(), StoreError> {
        let Some(key) = self.key.clone() else { return Ok(()) };
        let check: Option<String> = self
            .conn
            .query_row("SELECT value FROM store_meta WHERE name = ?1", [KEY_CHECK], |r| r.get(0))
            .optional()?;
        match check {
            Some(sealed) if key_check_holds(&key, &sealed) => Ok(()),
            Some(_) => Err(StoreError::WrongKey { detail: "the store's key check does not open with it".into() }),
            None => {
                // A store sealed before the check existed: one of its secrets must open.
                let sample: Option<(AccountId, String)> = self
                    .conn
                    .query_row("SELECT id, form FROM accounts WHERE form LIKE '%\"sealed\"%' LIMIT 1", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((id, form)) = sample {
                    reseal_form(&form, id, &key, &key)?;
                }
                let value = key_check_value(&key)?;
                self.write(|tx| {
                    tx.execute(
                        "INSERT INTO store_meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                        params![KEY_CHECK, value],
                    )?;
                    Ok(())
                })
            }
        }
    }

    /// The connection, for tests that write rows no store method writes.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &rusqlite::Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies the migrations this store lacks. Several processes may open a fresh store at
    /// the same moment: the version is read again, and the migrations applied, inside one
    /// write transaction, so exactly one of them migrates and the others find it done.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = SCHEMA_VERSION;
        // The common case, an up-to-date store, takes no write lock.
        if self.applied_version()? == Some(known) {
            return Ok(());
        }
        let now = (self.now)();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )?;
        let current: i64 = tx.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
        if current > known {
            return Err(StoreError::TooNew { found: current, known });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)", params![version, now])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest applied migration, `None` for a store without the migrations table.
    fn applied_version(&self) -> Result<Option<i64>, StoreError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(self.conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))?))
    }

    /// Runs `read` in one read transaction (or in the transaction already open): one lock of
    /// the WAL index for all its statements instead of one per statement, which costs more
    /// than small lookups themselves.
    fn reading<T>(&self, read: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        if !self.conn.is_autocommit() {
            return read();
        }
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let result = read();
        let end = self.conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([]));
        let found = result?;
        end?;
        Ok(found)
    }

    /// Runs `write` in one IMMEDIATE transaction and commits it; rolls it back on an error.
    /// BEGIN and COMMIT come from the statement cache: a step is only a few statements, and
    /// parsing these two again for every commit is a measurable part of it.
    fn write<T>(
        &mut self,
        write: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = write(&self.conn).and_then(|v| {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(v)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // The write's error is the one to report; a failed rollback shows on the next use.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn query_accounts(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Account>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let row = AccountRow {
                id: r.get(0)?,
                process: r.get(1)?,
                user: r.get(2)?,
                bundle_hash: r.get(3)?,
                status: r.get(4)?,
                form: r.get(5)?,
                children: r.get(6)?,
            };
            out.push(row.into_account(self.key.as_ref())?);
        }
        Ok(out)
    }

    fn query_tasks(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<TaskInstance>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let row = TaskRow {
                id: r.get(0)?,
                account: r.get(1)?,
                task_index: r.get(2)?,
                task_name: r.get(3)?,
                status: r.get(4)?,
                response: r.get(5)?,
                attempt: r.get(6)?,
                due_at: r.get(7)?,
                calling: r.get(8)?,
                held: r.get(9)?,
                note: r.get(10)?,
                child: r.get(11)?,
                outputs: r.get(12)?,
            };
            out.push(row.into_task()?);
        }
        Ok(out)
    }

    fn insert_task(
        tx: &rusqlite::Connection,
        account: AccountId,
        t: &NewTask,
        actor: &str,
        now: Instant,
    ) -> Result<TaskId, StoreError> {
        let child = map_json(&t.child);
        tx.prepare_cached(
            "INSERT INTO task_instances(account_id, task_index, task_name, status, attempt, due_at, held, note, child, calling, created_at, updated_at, manual)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
        )?
        .execute(params![
            account,
            t.task_index as i64,
            t.task_name,
            status_text(t.status),
            t.attempt,
            t.due_at,
            t.held,
            t.note,
            child,
            t.calling,
            now,
            t.manual
        ])?;
        let id = tx.last_insert_rowid();
        let mut audit = tx.prepare_cached(
            "INSERT INTO task_audit(task_id, at, actor, from_status, to_status, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        if t.promoted {
            audit.execute(params![id, now, actor, None::<&str>, status_text(TaskStatus::Waiting), None::<&str>])?;
            audit.execute(params![id, now, actor, status_text(TaskStatus::Waiting), status_text(t.status), t.note])?;
        } else {
            audit.execute(params![id, now, actor, None::<&str>, status_text(t.status), t.note])?;
        }
        Ok(id)
    }

    /// Why `create_accounts` could not insert `a`: its user is gone or deleted, or it has a
    /// live account of the process already.
    fn why_refused(tx: &rusqlite::Connection, a: &NewAccount<'_>) -> Result<String, StoreError> {
        let user: Option<String> = tx
            .prepare_cached("SELECT status FROM users WHERE login = ?1")?
            .query_row([a.user], |r| r.get(0))
            .optional()?;
        Ok(why_refused(a, user.as_deref()))
    }

    fn write_user(tx: &rusqlite::Connection, user: &UserRecord, now: Instant) -> Result<(), StoreError> {
        tx.prepare_cached(
            "UPDATE users SET attributes = ?2, status = ?3, locked = ?4, updated_at = ?5 WHERE login = ?1",
        )?
        .execute(params![
            user.login,
            serde_json::to_string(&user.attributes).unwrap_or_default(),
            user.status,
            user.locked,
            now
        ])?;
        Ok(())
    }

    fn write_form(
        tx: &rusqlite::Connection,
        key: Option<&SecretKey>,
        account: &Account,
        now: Instant,
    ) -> Result<(), StoreError> {
        let encoded = encode_values(key, &account.form, &form_context(account.id));
        let children = serde_json::to_string(&account.children).unwrap_or_else(|_| "{}".into());
        tx.prepare_cached("UPDATE accounts SET form = ?2, children = ?3, updated_at = ?4 WHERE id = ?1")?
            .execute(params![account.id, encoded, children, now])?;
        Ok(())
    }
}

/// Writes one step: transitions with their audit rows, new tasks, the account status and
/// notification requests. The caller owns the transaction.
fn apply_step(tx: &rusqlite::Connection, step: &Step, now: Instant) -> Result<Vec<TaskId>, StoreError> {
    for t in &step.transitions {
        // The audit row takes its `from` from the stored row, before the update below.
        tx.prepare_cached(
            "INSERT INTO task_audit(task_id, at, actor, from_status, to_status, response, note)
             SELECT id, ?2, ?3, status, ?4, ?5, ?6 FROM task_instances WHERE id = ?1",
        )?
        .execute(params![t.task, now, step.actor, status_text(t.to), t.response, t.note])?;
        let outputs = map_json(&t.outputs);
        tx.prepare_cached(
            "UPDATE task_instances SET status = ?2, response = coalesce(?3, response), note = ?4, held = ?5,
               outputs = CASE WHEN ?6 = '{}' THEN outputs ELSE ?6 END, calling = 0, updated_at = ?7,
               claimed_by = CASE WHEN ?2 = 'Pending' THEN claimed_by END,
               lease_expires_at = CASE WHEN ?2 = 'Pending' THEN lease_expires_at END
             WHERE id = ?1",
        )?
        .execute(params![t.task, status_text(t.to), t.response, t.note, t.held, outputs, now])?;
    }
    let mut ids = Vec::with_capacity(step.new_tasks.len());
    for t in &step.new_tasks {
        ids.push(SqliteStore::insert_task(tx, step.account, t, &step.actor, now)?);
    }
    if let Some(status) = step.account_status {
        tx.prepare_cached("UPDATE accounts SET status = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
            step.account,
            status.as_str(),
            now
        ])?;
    }
    for task in &step.uncalling {
        tx.prepare_cached("UPDATE task_instances SET calling = 0, updated_at = ?2 WHERE id = ?1")?
            .execute(params![task, now])?;
    }
    if let Some(task) = step.calling {
        tx.prepare_cached("UPDATE task_instances SET calling = 1, updated_at = ?2 WHERE id = ?1")?
            .execute(params![task, now])?;
    }
    for n in &step.notify {
        tx.prepare_cached(
            "INSERT INTO outbox(account_id, task_id, template_index, template, task_status, recipient, bundle_hash, created_at)
             SELECT id, ?2, ?3, ?4, ?5, ?6, bundle_hash, ?7 FROM accounts WHERE id = ?1",
        )?
        .execute(params![step.account, n.task, n.template_index as i64, n.template, status_text(n.task_status), n.recipient, now])?;
    }
    Ok(ids)
}

impl StateStore for SqliteStore {
    fn has_key(&self) -> bool {
        self.key.is_some()
    }

    fn key_rotate(&mut self, new: &SecretKey) -> Result<KeyRotation, StoreError> {
        let Some(old) = self.key.clone() else {
            return Err(StoreError::WrongKey {
                detail: "no key was given: the current key is needed to open the secrets".into(),
            });
        };
        let check = key_check_value(new)?;
        let done = self.write(|tx| {
            let forms: Vec<(AccountId, String)> = tx
                .prepare("SELECT id, form FROM accounts WHERE form LIKE '%\"sealed\"%' ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut done = KeyRotation::default();
            let mut update = tx.prepare("UPDATE accounts SET form = ?2 WHERE id = ?1")?;
            for (id, form) in forms {
                let (resealed, n) = reseal_form(&form, id, &old, new)?;
                if n > 0 {
                    update.execute(params![id, resealed])?;
                    done.accounts += 1;
                    done.secrets += n;
                }
            }
            tx.execute(
                "INSERT INTO store_meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![KEY_CHECK, check],
            )?;
            Ok(done)
        })?;
        self.key = Some(new.clone());
        Ok(done)
    }

    fn save_bundle(&mut self, bundle: &Bundle) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO bundles(hash, ir, stored_at) VALUES (?1, ?2, ?3)",
            params![bundle.hash, bundle.to_json(), (self.now)()],
        )?;
        // The newest use wins for `latest_bundle`, even for a bundle stored before.
        self.conn.execute("UPDATE bundles SET stored_at = ?2 WHERE hash = ?1", params![bundle.hash, (self.now)()])?;
        Ok(())
    }

    fn bundle(&self, hash: &str) -> Result<Option<Bundle>, StoreError> {
        let json: Option<String> =
            self.conn.query_row("SELECT ir FROM bundles WHERE hash = ?1", [hash], |r| r.get(0)).optional()?;
        json.map(|j| provflow_ir::load(&j).map_err(|e| StoreError::Corrupt(format!("bundle {hash}: {e}")))).transpose()
    }

    fn latest_bundle(&self) -> Result<Option<Bundle>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT ir FROM bundles ORDER BY stored_at DESC, rowid DESC LIMIT 1", [], |r| r.get(0))
            .optional()?;
        json.map(|j| provflow_ir::load(&j).map_err(|e| StoreError::Corrupt(format!("bundle: {e}")))).transpose()
    }

    fn insert_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        let now = (self.now)();
        self.conn.execute(
            "INSERT INTO users(login, attributes, status, locked, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![user.login, serde_json::to_string(&user.attributes).unwrap_or_default(), user.status, user.locked, now],
        )?;
        Ok(())
    }

    fn update_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE users SET attributes = ?2, status = ?3, locked = ?4, updated_at = ?5 WHERE login = ?1",
            params![
                user.login,
                serde_json::to_string(&user.attributes).unwrap_or_default(),
                user.status,
                user.locked,
                (self.now)()
            ],
        )?;
        Ok(())
    }

    fn user(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users_where("WHERE login = ?1", [login])?.into_iter().next())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users_where("ORDER BY login", [])
    }

    fn create_accounts(
        &mut self,
        actor: &str,
        accounts: &[NewAccount<'_>],
    ) -> Result<Vec<(AccountId, Vec<TaskId>)>, StoreError> {
        let now = (self.now)();
        let key = self.key.clone();
        self.write(|tx| {
            let mut out = Vec::with_capacity(accounts.len());
            // The ids the inserts below get (the write lock is held): each form is sealed with
            // its id as context, and written with the row instead of by a second statement.
            let first: AccountId =
                tx.prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM accounts")?.query_row([], |r| r.get(0))?;
            for (id, a) in (first..).zip(accounts) {
                let encoded = encode_values(key.as_ref(), a.form, &form_context(id));
                // Checked again under the write lock, by the insert itself: another command may
                // have deleted the user or provisioned the same account since the run looked.
                // `usr_key` given, so the trigger that fills a missing one has nothing to do.
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO accounts(id, process, user_login, bundle_hash, status, form, usr_key, created_at, updated_at)
                         SELECT ?1, ?2, u.login, ?4, ?5, ?6, u.usr_key, ?7, ?7 FROM users u
                         WHERE u.login = ?3 AND u.status != 'Deleted' AND NOT EXISTS (
                           SELECT 1 FROM accounts a WHERE a.user_login = ?3 AND a.process = ?2 AND a.status != 'Revoked')",
                    )?
                    .execute(params![id, a.process, a.user, a.bundle_hash, a.status.as_str(), encoded, now])?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(SqliteStore::why_refused(tx, a)?));
                }
                let mut ids = Vec::with_capacity(a.tasks.len());
                for t in a.tasks {
                    ids.push(SqliteStore::insert_task(tx, id, t, actor, now)?);
                }
                out.push((id, ids));
            }
            Ok(out)
        })
    }

    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        Ok(self
            .query_accounts(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"), [id])?
            .into_iter()
            .next())
    }

    fn find_account(&self, process: &str, user: &str) -> Result<Option<Account>, StoreError> {
        // The newest id first, then its row: SQLite re-prepares a statement that orders or
        // takes the max() of these rows whenever its bound values change, which costs more
        // than the lookup itself; this one stays prepared.
        let newest: Option<AccountId> = self
            .conn
            .prepare_cached("SELECT id FROM accounts WHERE user_login = ?2 AND process = ?1")?
            .query_map([process, user], |r| r.get(0))?
            .try_fold(None, |newest: Option<AccountId>, id| id.map(|id| newest.max(Some(id))))?;
        match newest {
            Some(id) => self.account(id),
            None => Ok(None),
        }
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.query_accounts(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"), [])
    }

    fn user_and_account(&self, login: &str, process: &str) -> Result<UserAndAccount, StoreError> {
        self.reading(|| Ok((self.user(login)?, self.find_account(process, login)?)))
    }

    fn users_and_accounts(&self, logins: &[String], process: &str) -> Result<Vec<UserAndAccount>, StoreError> {
        let read = || logins.iter().map(|l| Ok((self.user(l)?, self.find_account(process, l)?))).collect();
        self.reading(read)
    }

    fn save_form(&mut self, account: &Account) -> Result<(), StoreError> {
        let encoded = encode_values(self.key.as_ref(), &account.form, &form_context(account.id));
        let children = serde_json::to_string(&account.children).unwrap_or_else(|_| "{}".into());
        self.conn.execute(
            "UPDATE accounts SET form = ?2, children = ?3, updated_at = ?4 WHERE id = ?1",
            params![account.id, encoded, children, (self.now)()],
        )?;
        Ok(())
    }

    fn task(&self, id: TaskId) -> Result<Option<TaskInstance>, StoreError> {
        Ok(self
            .query_tasks(&format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE id = ?1"), [id])?
            .into_iter()
            .next())
    }

    fn tasks_of(&self, account: AccountId) -> Result<Vec<TaskInstance>, StoreError> {
        self.query_tasks(
            &format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE account_id = ?1 ORDER BY id"),
            [account],
        )
    }

    fn tasks(&self, status: Option<TaskStatus>) -> Result<Vec<TaskInstance>, StoreError> {
        match status {
            // The partial index of Pending tasks, named: without statistics SQLite prefers to
            // scan every task in id order over sorting the few Pending ones.
            Some(TaskStatus::Pending) => self.query_tasks(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task_instances INDEXED BY task_instances_pending
                     WHERE status = 'Pending' ORDER BY id"
                ),
                [],
            ),
            Some(s) => self.query_tasks(
                &format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE status = ?1 ORDER BY id"),
                [status_text(s)],
            ),
            None => self.query_tasks(&format!("SELECT {TASK_COLUMNS} FROM task_instances ORDER BY id"), []),
        }
    }

    fn set_calling(&mut self, task: TaskId, calling: bool) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE task_instances SET calling = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![task, calling, (self.now)()])?;
        Ok(())
    }

    fn commit_steps(&mut self, steps: &[Step]) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        let apply = |tx: &rusqlite::Connection| steps.iter().map(|step| apply_step(tx, step, now)).collect();
        if std::mem::take(&mut self.step_open) {
            // The transaction `call_in_step` opened: the call and these steps commit together.
            return match apply(&self.conn) {
                Ok(ids) => {
                    self.conn.execute_batch("COMMIT")?;
                    Ok(ids)
                }
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            };
        }
        self.write(apply)
    }

    fn commit_change(&mut self, change: &Change<'_>) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        let key = self.key.clone();
        self.write(|tx| {
            if let Some(user) = change.user {
                SqliteStore::write_user(tx, user, now)?;
            }
            if let Some(account) = change.form {
                SqliteStore::write_form(tx, key.as_ref(), account, now)?;
            }
            let mut ids = Vec::with_capacity(change.steps.len());
            for step in &change.steps {
                ids.push(apply_step(tx, step, now)?);
            }
            Ok(ids)
        })
    }

    fn sqlite_file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn call_in_step(&mut self, call: &mut dyn FnMut(&rusqlite::Connection)) -> Result<(), StoreError> {
        if self.step_open {
            // A step left open by an earlier call that was never committed: it did not happen.
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.step_open = true;
        call(&self.conn);
        Ok(())
    }

    fn audit(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM task_audit WHERE task_id = ?1 ORDER BY id"))?;
        let mut rows = stmt.query([task])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(audit_entry((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))?);
        }
        Ok(out)
    }

    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_where("")
    }

    fn queued_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_where("WHERE status = 'queued'")
    }

    fn record_render(&mut self, id: i64, render: &OutboxRender, at: Instant) -> Result<(), StoreError> {
        let (locale, message_type, subject, short, body, to_address, error, status) = render.columns();
        self.conn.execute(
            "UPDATE outbox SET status = ?2, locale = ?3, message_type = ?4, subject = ?5, short = ?6, body = ?7,
               to_address = ?8, error = ?9, rendered_at = ?10 WHERE id = ?1",
            params![id, status, locale, message_type, subject, short, body, to_address, error, at],
        )?;
        Ok(())
    }

    fn outbox_messages(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM outbox ORDER BY id"))?;
        let rows = stmt.query_map([], |r| {
            Ok(OutboxMessage {
                id: r.get(0)?,
                template: r.get(1)?,
                recipient: r.get(2)?,
                to_address: r.get(3)?,
                locale: r.get(4)?,
                message_type: r.get(5)?,
                subject: r.get(6)?,
                short: r.get(7)?,
                body: r.get(8)?,
                status: r.get(9)?,
                error: r.get(10)?,
                task_status: r.get(11)?,
                created_at: r.get(12)?,
                bundle_hash: r.get(13)?,
                template_index: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn usr_key(&self, login: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT usr_key FROM users WHERE login = ?1")?
            .query_row([login], |r| r.get(0))
            .optional()?
            .flatten())
    }

    fn database(&self) -> Result<Database<'_>, StoreError> {
        Ok(Database::Sqlite(&self.conn))
    }

    fn recon_events(&self, run: Option<i64>) -> Result<(Option<i64>, Vec<ReconEvent>), StoreError> {
        let run = match run {
            Some(r) => Some(r),
            None => self.conn.query_row("SELECT max(id) FROM recon_runs", [], |r| r.get::<_, Option<i64>>(0))?,
        };
        let Some(run) = run else { return Ok((None, vec![])) };
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {RECON_EVENT_COLUMNS} FROM recon_events WHERE run_id = ?1 ORDER BY line, id"))?;
        let rows = stmt.query_map([run], |r| {
            let changes: String = r.get(6)?;
            Ok(ReconEvent {
                run: r.get(0)?,
                line: r.get(1)?,
                key: r.get(2)?,
                outcome: r.get(3)?,
                action: r.get(4)?,
                account: r.get(5)?,
                changes: super::changes_json(&changes),
                error: r.get(7)?,
            })
        })?;
        Ok((Some(run), rows.collect::<Result<_, _>>()?))
    }
}

impl SqliteStore {
    fn outbox_where(&self, clause: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox {clause} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let row = OutboxRow {
                id: r.get(0)?,
                account: r.get(1)?,
                task: r.get(2)?,
                template_index: r.get(3)?,
                template: r.get(4)?,
                task_status: r.get(5)?,
                recipient: r.get(6)?,
                bundle_hash: r.get(7)?,
                created_at: r.get(8)?,
            };
            out.push(row.into_entry()?);
        }
        Ok(out)
    }
}

impl SqliteStore {
    fn users_where(&self, clause: &str, params: impl rusqlite::Params) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT login, attributes, status, locked FROM users {clause}"))?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let attributes: String = r.get(1)?;
            out.push(user_record(r.get(0)?, &attributes, r.get(2)?, r.get(3)?)?);
        }
        Ok(out)
    }
}

// ----- the work queue (`queue.rs`) ------------------------------------------------------------

/// Reads a worker row (`WORKER_COLUMNS` order).
fn worker_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerRow> {
    Ok(WorkerRow {
        id: r.get(0)?,
        host: r.get(1)?,
        pid: r.get(2)?,
        started_at: r.get(3)?,
        heartbeat_at: r.get(4)?,
        lease_seconds: r.get(5)?,
        concurrency: r.get(6)?,
        stopped_at: r.get(7)?,
    })
}

/// Reads a claim with its holder (`HELD_COLUMNS` order).
fn held_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, HeldClaim)> {
    Ok((
        r.get(5)?,
        HeldClaim { task: r.get(0)?, account: r.get(1)?, epoch: r.get(2)?, expires_at: r.get(3)?, calling: r.get(4)? },
    ))
}

/// Checks every fence inside the open transaction: the task still claimed by that worker
/// with that epoch. Returns each fenced task's lease expiry, to keep the claim through the commit.
fn check_fences(tx: &rusqlite::Connection, fences: &[Fence]) -> Result<Vec<Option<Instant>>, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT claimed_by, lease_epoch, lease_expires_at FROM task_instances WHERE id = ?1")?;
    let mut kept = Vec::with_capacity(fences.len());
    for f in fences {
        let row: Option<(Option<String>, Epoch, Option<Instant>)> =
            stmt.query_row([f.task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        match row {
            Some((by, epoch, expires)) if holds(f, by.as_deref(), epoch) => kept.push(expires),
            Some((by, epoch, _)) => return Err(fenced(f, by, Some(epoch))),
            None => return Err(fenced(f, None, None)),
        }
    }
    Ok(kept)
}

/// Puts back the claims a fenced commit's steps took off (a fenced task left Pending): the
/// claim is the worker's hold on the account until it releases it.
fn keep_fences(tx: &rusqlite::Connection, fences: &[Fence], kept: &[Option<Instant>]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE task_instances SET claimed_by = ?2, lease_expires_at = ?3 WHERE id = ?1 AND claimed_by IS NULL",
    )?;
    for (f, expires) in fences.iter().zip(kept) {
        stmt.execute(params![f.task, f.worker, expires])?;
    }
    Ok(())
}

/// The call slots taken in this process, by store file and target (see
/// [`Queue::target_slot_acquire`]).
type SlotTable = std::collections::HashMap<(PathBuf, i32), std::collections::BTreeSet<u32>>;

fn slots() -> &'static std::sync::Mutex<SlotTable> {
    static SLOTS: std::sync::OnceLock<std::sync::Mutex<SlotTable>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

/// Ends an IMMEDIATE transaction begun by hand: commits `result`'s work, or rolls it back.
fn finish<T>(conn: &rusqlite::Connection, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // The error to report is the write's; a failed rollback shows on the next use.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl Queue for SqliteStore {
    fn worker_register(&mut self, worker: &WorkerRecord) -> Result<(), StoreError> {
        let now = worker.heartbeat_at;
        self.write(|tx| {
            // One worker at a time on a SQLite store: its claims are all in this file, and a
            // second worker would only wait for the same write lock.
            let other = tx
                .prepare_cached(&format!(
                    "SELECT {WORKER_COLUMNS} FROM workers
                     WHERE id <> ?1 AND stopped_at IS NULL AND heartbeat_at + lease_seconds > ?2
                     ORDER BY heartbeat_at DESC LIMIT 1"
                ))?
                .query_row(params![worker.id, now], worker_row)
                .optional()?;
            if let Some(other) = other {
                return Err(other.refusal(now, false));
            }
            // This very registration again (the same host, pid and start) is not another worker.
            let same = tx
                .prepare_cached(&format!(
                    "SELECT {WORKER_COLUMNS} FROM workers
                     WHERE id = ?1 AND stopped_at IS NULL AND heartbeat_at + lease_seconds > ?2
                       AND NOT (host = ?3 AND pid = ?4 AND started_at = ?5)"
                ))?
                .query_row(params![worker.id, now, worker.host, worker.pid, worker.started_at], worker_row)
                .optional()?;
            if let Some(same) = same {
                return Err(same.refusal(now, true));
            }
            tx.prepare_cached(
                "INSERT INTO workers(id, host, pid, started_at, heartbeat_at, lease_seconds, concurrency, stopped_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
                 ON CONFLICT(id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                   lease_seconds = excluded.lease_seconds, concurrency = excluded.concurrency, stopped_at = NULL",
            )?
            .execute(params![
                worker.id,
                worker.host,
                worker.pid,
                worker.started_at,
                now,
                lease_seconds(worker.lease),
                worker.concurrency
            ])?;
            // Claims of an earlier process with this id: it is gone, and this one never knew them.
            tx.prepare_cached(
                "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL WHERE claimed_by = ?1",
            )?
            .execute([&worker.id])?;
            Ok(())
        })
    }

    fn worker_heartbeat(
        &mut self,
        id: &str,
        now: Instant,
        lease: Duration,
        held: &[TaskId],
    ) -> Result<Vec<HeldClaim>, StoreError> {
        self.write(|tx| {
            let seen = tx
                .prepare_cached(
                    "UPDATE workers SET heartbeat_at = ?2, lease_seconds = ?3 WHERE id = ?1 AND stopped_at IS NULL",
                )?
                .execute(params![id, now, lease_seconds(lease)])?;
            if seen == 0 {
                return Err(StoreError::UnknownWorker(id.to_string()));
            }
            let mut stmt = tx.prepare_cached(&format!(
                "UPDATE task_instances SET lease_expires_at = ?2
                 WHERE claimed_by = ?1 AND id IN (SELECT value FROM json_each(?3)) RETURNING {HELD_COLUMNS}"
            ))?;
            let held = serde_json::to_string(held).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut renewed = stmt
                .query_map(params![id, expiry(now, lease), held], held_row)?
                .map(|r| r.map(|(_, c)| c))
                .collect::<Result<Vec<_>, _>>()?;
            renewed.sort_by_key(|c| c.task);
            Ok(renewed)
        })
    }

    fn worker_stop(&mut self, id: &str, now: Instant) -> Result<usize, StoreError> {
        self.write(|tx| {
            let seen =
                tx.prepare_cached("UPDATE workers SET stopped_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
            if seen == 0 {
                return Err(StoreError::UnknownWorker(id.to_string()));
            }
            Ok(tx
                .prepare_cached(
                    "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL
                     WHERE claimed_by = ?1 AND NOT EXISTS (SELECT 1 FROM task_instances c
                       WHERE c.account_id = task_instances.account_id AND c.calling = 1)",
                )?
                .execute([id])?)
        })
    }

    fn workers(&self) -> Result<Vec<WorkerStatus>, StoreError> {
        self.reading(|| {
            let mut stmt = self.conn.prepare_cached(&format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY id"))?;
            let rows = stmt.query_map([], worker_row)?.collect::<Result<Vec<_>, _>>()?;
            let workers = rows.into_iter().map(WorkerRow::into_record).collect::<Result<Vec<_>, _>>()?;
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {HELD_COLUMNS} FROM task_instances INDEXED BY task_instances_claimed
                 WHERE claimed_by IS NOT NULL ORDER BY id"
            ))?;
            let claims = stmt.query_map([], held_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(with_claims(workers, claims))
        })
    }

    fn task_claim(&mut self, p: &TaskClaimParams<'_>) -> Result<Vec<Claim>, StoreError> {
        let expires_at = expiry(p.now, p.lease);
        let limit = i64::try_from(p.limit).unwrap_or(i64::MAX);
        self.write(|tx| {
            let live: Option<Option<Instant>> = tx
                .prepare_cached("SELECT stopped_at FROM workers WHERE id = ?1")?
                .query_row([p.worker], |r| r.get(0))
                .optional()?;
            if !matches!(live, Some(None)) {
                return Err(StoreError::UnknownWorker(p.worker.to_string()));
            }
            // The write lock is held: nothing changes between this choice and the claims below.
            // Per account the task whose lease expired first (a rescue), then the oldest.
            let picked: Vec<(TaskId, AccountId, Option<String>)> = tx
                .prepare_cached(
                    "SELECT p.id, p.account_id, p.claimed_by FROM (
                       SELECT t.id, t.account_id, t.claimed_by,
                              row_number() OVER (PARTITION BY t.account_id ORDER BY t.claimed_by IS NULL, t.id) AS n
                       FROM task_instances t INDEXED BY task_instances_runnable
                       WHERE t.status = 'Pending' AND t.held = 0 AND t.manual = 0 AND (t.due_at IS NULL OR t.due_at <= ?1)
                         AND (t.claimed_by IS NULL OR t.lease_expires_at <= ?1)
                         AND NOT EXISTS (SELECT 1 FROM task_instances l INDEXED BY task_instances_claimed
                                         WHERE l.account_id = t.account_id AND l.claimed_by IS NOT NULL
                                           AND l.lease_expires_at > ?1)) p
                     WHERE p.n = 1
                     ORDER BY EXISTS (SELECT 1 FROM task_instances r INDEXED BY task_instances_claimed
                                      WHERE r.account_id = p.account_id AND r.claimed_by IS NOT NULL) DESC, p.account_id
                     LIMIT ?2",
                )?
                .query_map(params![p.now, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut claim = tx.prepare_cached(
                "UPDATE task_instances SET claimed_by = ?2, lease_epoch = lease_epoch + 1, lease_expires_at = ?3
                 WHERE id = ?1 RETURNING lease_epoch, calling",
            )?;
            // The account has no live claim: any other claim on it expired (a worker that held
            // the account and died after its first task left Pending). It goes, named as rescued.
            let mut stale = tx.prepare_cached(
                "SELECT claimed_by FROM task_instances INDEXED BY task_instances_claimed
                 WHERE account_id = ?1 AND claimed_by IS NOT NULL AND id <> ?2",
            )?;
            let mut clear = tx.prepare_cached(
                "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL
                 WHERE account_id = ?1 AND claimed_by IS NOT NULL AND id <> ?2",
            )?;
            let mut claims = Vec::with_capacity(picked.len());
            for (task, account, before) in picked {
                let gone: Vec<String> =
                    stale.query_map(params![account, task], |r| r.get(0))?.collect::<Result<_, _>>()?;
                if !gone.is_empty() {
                    clear.execute(params![account, task])?;
                }
                let (epoch, calling) =
                    claim.query_row(params![task, p.worker, expires_at], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let rescued_from = before.or_else(|| gone.into_iter().next());
                claims.push(Claim { task, account, epoch, expires_at, calling, rescued_from });
            }
            Ok(claims)
        })
    }

    fn task_claim_release(&mut self, held: &[(TaskId, Epoch)]) -> Result<usize, StoreError> {
        if held.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL
                 WHERE id = ?1 AND lease_epoch = ?2 AND claimed_by IS NOT NULL",
            )?;
            let mut released = 0;
            for (task, epoch) in held {
                released += stmt.execute(params![task, epoch])?;
            }
            Ok(released)
        })
    }

    fn commit_steps_fenced(&mut self, steps: &[Step], fence: &[Fence]) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        let apply = |tx: &rusqlite::Connection| {
            let kept = check_fences(tx, fence)?;
            let ids = steps.iter().map(|step| apply_step(tx, step, now)).collect::<Result<Vec<_>, _>>()?;
            keep_fences(tx, fence, &kept)?;
            Ok(ids)
        };
        if std::mem::take(&mut self.step_open) {
            // The transaction `call_in_step` opened: refused, the call is rolled back with it.
            let result = apply(&self.conn);
            return finish(&self.conn, result);
        }
        self.write(apply)
    }

    fn task_next_wake(&self, now: Instant) -> Result<Option<Instant>, StoreError> {
        self.reading(|| {
            Ok(self
                .conn
                .prepare_cached(
                    "SELECT min(at) FROM (
                       SELECT min(due_at) AS at FROM task_instances INDEXED BY task_instances_runnable
                       WHERE status = 'Pending' AND held = 0 AND manual = 0 AND due_at > ?1
                       UNION ALL
                       SELECT min(lease_expires_at) FROM task_instances INDEXED BY task_instances_claimed
                       WHERE claimed_by IS NOT NULL AND lease_expires_at > ?1)",
                )?
                .query_row([now], |r| r.get(0))?)
        })
    }

    fn task_counts(&self, now: Instant) -> Result<Vec<(String, i64)>, StoreError> {
        self.reading(|| {
            let sql = TASK_COUNTS.replace("$1", "?1");
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn task_mark_manual(&mut self, tasks: &[TaskId]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE task_instances SET manual = 1 WHERE id = ?1")?;
            for t in tasks {
                stmt.execute([t])?;
            }
            Ok(())
        })
    }

    fn target_slot_acquire(&mut self, target: &str, cap: u32) -> Result<Option<u32>, StoreError> {
        // One worker at a time runs on a SQLite store: its slots are this process's.
        let mut taken = slots().lock().map_err(|_| StoreError::Corrupt("the call slot table".into()))?;
        let key = (self.path.clone(), slot_class(target));
        let used = taken.entry(key).or_default();
        let free = (0..cap).find(|s| !used.contains(s));
        if let Some(s) = free {
            used.insert(s);
        }
        Ok(free)
    }

    fn target_slot_release(&mut self, target: &str, slot: u32) -> Result<(), StoreError> {
        let mut taken = slots().lock().map_err(|_| StoreError::Corrupt("the call slot table".into()))?;
        if let Some(used) = taken.get_mut(&(self.path.clone(), slot_class(target))) {
            used.remove(&slot);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FormData, Transition};
    use provflow_ir::ObjectStatus;
    use std::collections::BTreeMap;

    /// A user with no attributes, as accounts need one.
    fn add_user(s: &mut SqliteStore, login: &str) {
        let user =
            UserRecord { login: login.into(), attributes: BTreeMap::new(), status: "Active".into(), locked: false };
        s.insert_user(&user).unwrap();
    }

    fn open(dir: &Path, key: Option<SecretKey>) -> SqliteStore {
        SqliteStore::open(&dir.join("sub/state.db"), key, Box::new(|| 1_000)).unwrap()
    }

    #[test]
    fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), None));
        let s = open(dir.path(), None);
        let n: i64 = s.conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }

    #[test]
    fn lookups_per_provisioned_account_stay_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), None);
        s.conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for login in ["A", "B", "C"] {
            add_user(&mut s, login);
            // A revoked account, then the live one.
            s.create_account("P", login, "h", ObjectStatus::Revoked, &FormData::new(), "t", &[]).unwrap();
            s.create_account("P", login, "h", ObjectStatus::Provisioning, &FormData::new(), "t", &[]).unwrap();
            // A second live one is refused in the transaction that would create it.
            let again = s.create_account("P", login, "h", ObjectStatus::Provisioning, &FormData::new(), "t", &[]);
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        }
        for login in ["A", "B", "C", "D"] {
            let found = s.find_account("P", login).unwrap().map(|a| a.id);
            assert_eq!(found, ["A", "B", "C"].iter().position(|l| *l == login).map(|i| 2 * i as i64 + 2), "{login}");
            s.user(login).unwrap();
        }
        // A statement SQLite re-prepares for each new bound value costs more than the lookup.
        for sql in [
            "SELECT id FROM accounts WHERE user_login = ?2 AND process = ?1".to_string(),
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
            "SELECT login, attributes, status, locked FROM users WHERE login = ?1".to_string(),
        ] {
            let stmt = s.conn.prepare_cached(&sql).unwrap();
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
        }
    }

    #[test]
    fn pending_tasks_are_found_through_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), None);
        s.conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let task = crate::store::conformance::task;
        add_user(&mut s, "A");
        let (id, ids) = s
            .create_account(
                "P",
                "A",
                "h",
                ObjectStatus::Provisioning,
                &FormData::new(),
                "t",
                &[task(0, TaskStatus::Pending), task(1, TaskStatus::Waiting), task(2, TaskStatus::Pending)],
            )
            .unwrap();
        let step = Step {
            account: id,
            actor: "t".into(),
            transitions: vec![Transition {
                task: ids[0],
                to: TaskStatus::Completed,
                response: Some("SUCCESS".into()),
                note: None,
                held: false,
                outputs: BTreeMap::new(),
            }],
            ..Step::default()
        };
        s.commit(&step).unwrap();
        let pending: Vec<TaskId> = s.tasks(Some(TaskStatus::Pending)).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(pending, vec![ids[2]]);
        let waiting: Vec<TaskId> = s.tasks(Some(TaskStatus::Waiting)).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(waiting, vec![ids[1]]);
        let plan: String = s
            .conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN SELECT {TASK_COLUMNS} FROM task_instances INDEXED BY task_instances_pending
                     WHERE status = 'Pending' ORDER BY id"
                ),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("task_instances_pending"), "{plan}");
        // The audit's `from` is the stored status before the transition.
        let audit = s.audit(ids[0]).unwrap();
        assert_eq!(audit.last().map(|a| (a.from, a.to)), Some((Some(TaskStatus::Pending), TaskStatus::Completed)));
    }
}
