//! The PostgreSQL state store: the tables and meaning of the SQLite store, in a PostgreSQL
//! database, for runners on several machines. Migrations run on open in one transaction that
//! holds a transaction-scoped advisory lock, so processes opening a fresh database together
//! migrate it once; the audit trail is append-only by trigger; every write is one transaction.
//!
//! Types: ids and timestamps are `bigint` (timestamps are seconds since the Unix epoch, as on
//! SQLite), JSON columns are `text` holding the same JSON the SQLite store writes, flags are
//! `boolean`. A copy between stores maps columns one to one.

use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};
use provflow_ir::{Bundle, TaskStatus};
use std::cell::RefCell;
use std::time::Duration;

use super::queue::{
    expiry, fenced, holds, lease_seconds, slot_class, with_claims, Claim, Epoch, Fence, HeldClaim, Queue,
    TaskClaimParams, WorkerRecord, WorkerRow, WorkerStatus, HELD_COLUMNS, TASK_COUNTS, WORKER_COLUMNS,
};
use super::{
    audit_entry, encode_values, form_context, key_check_holds, key_check_value, map_json, reseal_form, status_text,
    user_record, why_refused, Account, AccountId, AccountRow, AuditEntry, Change, Database, KeyRotation, NewAccount,
    NewTask, OutboxEntry, OutboxMessage, OutboxRender, OutboxRow, ReconEvent, StateStore, Step, StoreError, TaskId,
    TaskInstance, TaskRow, UserRecord, ACCOUNT_COLUMNS, AUDIT_COLUMNS, KEY_CHECK, MESSAGE_COLUMNS, OUTBOX_COLUMNS,
    RECON_EVENT_COLUMNS, SCHEMA_VERSION, TASK_COLUMNS,
};
use crate::clock::Instant;
use crate::credentials::{self, Credentials};
use crate::pg_conn;
use crate::secret::SecretKey;

/// The key of the advisory lock that migrations hold: "provflow" in ASCII. Advisory locks are
/// per database, so stores in other databases of the same server never wait for each other.
const MIGRATION_LOCK: i64 = 0x7072_6f76_666c_6f77;

/// How long opening the store waits for the server when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations, with the numbers and meaning of the SQLite store's (`sqlite.rs`).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE bundles (
    hash      text PRIMARY KEY,
    ir        text NOT NULL,
    stored_at bigint NOT NULL,
    -- Insertion order, as SQLite's rowid: breaks ties of `stored_at` for `latest_bundle`.
    seq       bigserial NOT NULL
);
CREATE TABLE users (
    login      text PRIMARY KEY,
    attributes text NOT NULL,
    status     text NOT NULL,
    locked     boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    process     text NOT NULL,
    user_login  text NOT NULL REFERENCES users(login),
    bundle_hash text NOT NULL REFERENCES bundles(hash),
    status      text NOT NULL,
    form        text NOT NULL,
    children    text NOT NULL DEFAULT '{}',
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX accounts_by_user ON accounts(user_login, process);
CREATE TABLE task_instances (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts(id),
    task_index bigint NOT NULL,
    task_name  text NOT NULL,
    status     text NOT NULL,
    response   text,
    attempt    bigint NOT NULL DEFAULT 1,
    due_at     bigint,
    calling    boolean NOT NULL DEFAULT false,
    held       boolean NOT NULL DEFAULT false,
    note       text,
    child      text NOT NULL DEFAULT '{}',
    outputs    text NOT NULL DEFAULT '{}',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX task_instances_by_account ON task_instances(account_id);
CREATE INDEX task_instances_by_status ON task_instances(status, due_at);
CREATE TABLE task_audit (
    id          bigserial PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES task_instances(id),
    at          bigint NOT NULL,
    actor       text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    response    text,
    note        text
);
CREATE FUNCTION task_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER task_audit_no_change BEFORE UPDATE OR DELETE ON task_audit
    FOR EACH ROW EXECUTE FUNCTION task_audit_append_only();
CREATE TRIGGER task_audit_no_truncate BEFORE TRUNCATE ON task_audit
    FOR EACH STATEMENT EXECUTE FUNCTION task_audit_append_only();
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    account_id     bigint NOT NULL REFERENCES accounts(id),
    task_id        bigint REFERENCES task_instances(id),
    template_index bigint NOT NULL,
    template       text NOT NULL,
    task_status    text NOT NULL,
    recipient      text NOT NULL,
    bundle_hash    text NOT NULL,
    created_at     bigint NOT NULL,
    -- Filled when the message is rendered (later); secrets never reach these columns.
    locale         text,
    message_type   text,
    subject        text,
    body           text,
    rendered_at    bigint
);
"#,
    ),
    (
        2,
        // Notifications, reconciliation runs and events, and the stable `usr_key` (SQLite's
        // rowid of the user; here a sequence).
        r#"
ALTER TABLE users ADD COLUMN usr_key bigint;
CREATE SEQUENCE users_usr_key_seq OWNED BY users.usr_key;
UPDATE users SET usr_key = nextval('users_usr_key_seq');
ALTER TABLE users ALTER COLUMN usr_key SET DEFAULT nextval('users_usr_key_seq');
ALTER TABLE accounts ADD COLUMN usr_key bigint;
UPDATE accounts SET usr_key = (SELECT u.usr_key FROM users u WHERE u.login = accounts.user_login);
CREATE INDEX accounts_by_usr_key ON accounts(usr_key);
ALTER TABLE outbox ADD COLUMN short text;
ALTER TABLE outbox ADD COLUMN to_address text;
-- queued (not rendered yet) | rendered | failed (see `error`)
ALTER TABLE outbox ADD COLUMN status text NOT NULL DEFAULT 'queued';
ALTER TABLE outbox ADD COLUMN error text;
CREATE TABLE recon_runs (
    id          bigserial PRIMARY KEY,
    process     text NOT NULL,
    source      text NOT NULL,
    started_at  bigint NOT NULL,
    finished_at bigint,
    summary     text
);
CREATE TABLE recon_events (
    id         bigserial PRIMARY KEY,
    run_id     bigint NOT NULL,
    line       bigint NOT NULL,
    key        text,
    outcome    text NOT NULL,
    action     text NOT NULL,
    account_id bigint,
    changes    text NOT NULL DEFAULT '{}',
    error      text,
    at         bigint NOT NULL
);
CREATE INDEX recon_events_by_run ON recon_events(run_id, line);
"#,
    ),
    (
        3,
        // Only Pending work is looked up by status.
        r#"
DROP INDEX task_instances_by_status;
CREATE INDEX task_instances_pending ON task_instances(due_at) WHERE status = 'Pending';
"#,
    ),
    (
        4,
        // Workers and their claims (`queue.rs`).
        r#"
CREATE TABLE workers (
    id            text PRIMARY KEY,
    host          text NOT NULL,
    pid           bigint NOT NULL,
    started_at    bigint NOT NULL,
    heartbeat_at  bigint NOT NULL,
    lease_seconds bigint NOT NULL,
    concurrency   bigint NOT NULL,
    stopped_at    bigint
);
ALTER TABLE task_instances ADD COLUMN claimed_by text REFERENCES workers(id);
ALTER TABLE task_instances ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE task_instances ADD COLUMN lease_expires_at bigint;
CREATE INDEX task_instances_runnable ON task_instances(account_id) WHERE status = 'Pending' AND NOT held;
CREATE INDEX task_instances_claimed ON task_instances(account_id) WHERE claimed_by IS NOT NULL;
"#,
    ),
    (
        5,
        // Manual tasks are never claimed (see the SQLite store). Work committed anywhere wakes
        // the workers: a statement that inserts tasks or changes their status, hold or due
        // time notifies `provflow_work` (once per transaction, at its commit; claims and
        // heartbeats touch other columns and wake nobody).
        r#"
ALTER TABLE task_instances ADD COLUMN manual boolean NOT NULL DEFAULT false;
DROP INDEX task_instances_runnable;
CREATE INDEX task_instances_runnable ON task_instances(account_id) WHERE status = 'Pending' AND NOT held AND NOT manual;
CREATE FUNCTION provflow_work_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('provflow_work', '');
    RETURN NULL;
END $$;
CREATE TRIGGER task_instances_work AFTER INSERT OR UPDATE OF status, held, due_at ON task_instances
    FOR EACH STATEMENT EXECUTE FUNCTION provflow_work_notify();
"#,
    ),
    (
        6,
        // Facts about the store itself: the key check (see the SQLite store).
        r#"
CREATE TABLE store_meta (
    name  text PRIMARY KEY,
    value text NOT NULL
);
"#,
    ),
];

pub struct PgStore {
    /// The driver's calls take `&mut`; the trait's reads take `&self`.
    client: RefCell<Client>,
    /// The statements this connection prepared, by their SQL: a statement given as text costs
    /// the driver a round trip to prepare it before each execution (see [`Prepared`]).
    prepared: Prepared,
    key: Option<SecretKey>,
    now: Box<dyn Fn() -> Instant + Send>,
    /// The call slots this connection holds (advisory locks: class, slot).
    slots: RefCell<std::collections::BTreeSet<(i32, i32)>>,
}

/// A driver error as a store error: SQLSTATE and the server's message, or the driver's own;
/// any secret of a connection string this process has seen removed.
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let text = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => pg_conn::failure(&e),
        };
        StoreError::Postgres(credentials::scrub_known(&text).into_owned())
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How many statements a connection keeps prepared; past that the cache starts over (the
/// store's statements are a fixed set of well under this).
const MAX_PREPARED: usize = 256;

/// The statements one connection prepared, by SQL text. The store's statements are constant
/// strings (or formatted from constants), so each is prepared once per connection and then
/// executed in one round trip instead of two. Cleared after a failure: a statement that
/// failed because its prepared form went stale (a `DEALLOCATE`, a changed table) is
/// prepared afresh next time.
#[derive(Default)]
struct Prepared(RefCell<std::collections::HashMap<String, Statement>>);

impl Prepared {
    fn get(
        &self,
        sql: &str,
        prepare: impl FnOnce(&str) -> Result<Statement, postgres::Error>,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.0.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = prepare(sql)?;
        let mut cache = self.0.borrow_mut();
        if cache.len() >= MAX_PREPARED {
            cache.clear();
        }
        cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Passes `result` on, forgetting every statement when it is an error.
    fn check<T>(&self, result: Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// A write transaction of the store whose statements are prepared once per connection.
struct Tx<'a, 'c> {
    tx: Transaction<'a>,
    prepared: &'c Prepared,
}

impl Tx<'_, '_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        let tx = &mut self.tx;
        self.prepared.get(sql, |sql| tx.prepare(sql))
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.execute(&s, params)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query(&s, params)
    }

    fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query_one(&s, params)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query_opt(&s, params)
    }

    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }
}

impl PgStore {
    /// Refuses a key that is not the one the store's secrets are sealed under; records the key
    /// check on first use of a key (see the SQLite store).
    fn check_key(&mut self) -> Result<(), StoreError> {
        let Some(key) = self.key.clone() else { return Ok(()) };
        let check =
            self.client.borrow_mut().query_opt("SELECT value FROM store_meta WHERE name = $1", &[&KEY_CHECK])?;
        let check: Option<String> = check.map(|r| r.try_get(0)).transpose()?;
        match check {
            Some(sealed) if key_check_holds(&key, &sealed) => Ok(()),
            Some(_) => Err(StoreError::WrongKey { detail: "the store's key check does not open with it".into() }),
            None => {
                let sample = self
                    .client
                    .borrow_mut()
                    .query_opt("SELECT id, form FROM accounts WHERE form LIKE '%\"sealed\"%' LIMIT 1", &[])?;
                if let Some(row) = sample {
                    let (id, form): (AccountId, String) = (row.try_get(0)?, row.try_get(1)?);
                    reseal_form(&form, id, &key, &key)?;
                }
                let value = key_check_value(&key)?;
                self.execute(
                    "INSERT INTO store_meta(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&KEY_CHECK, &value],
                )?;
                Ok(())
            }
        }
    }

    /// Connects to `url` (a `postgres://` URL or a key=value DSN) and applies the migrations
    /// the database lacks. The database must exist; its tables are created on first open.
    pub fn open(url: &str, key: Option<SecretKey>, now: Box<dyn Fn() -> Instant + Send>) -> Result<Self, StoreError> {
        let client = connect(url)?;
        let mut store = PgStore {
            client: RefCell::new(client),
            prepared: Prepared::default(),
            key,
            now,
            slots: RefCell::default(),
        };
        store.migrate()?;
        store.check_key()?;
        Ok(store)
    }

    /// Applies the migrations this database lacks, in one transaction holding the advisory
    /// lock [`MIGRATION_LOCK`]: of processes opening a fresh database together, one migrates
    /// and the others, once it commits, read the version again and find nothing to do.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = SCHEMA_VERSION;
        let now = (self.now)();
        let client = self.client.get_mut();
        // The common case, an up-to-date store, takes no lock.
        if let Some(found) = applied_version(client)? {
            if found == known {
                return Ok(());
            }
            if found > known {
                return Err(StoreError::TooNew { found, known });
            }
        }
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, applied_at bigint NOT NULL)",
        )?;
        let current: i64 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[])?.try_get(0)?;
        if current > known {
            return Err(StoreError::TooNew { found: current, known });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql)?;
            tx.execute("INSERT INTO schema_migrations(version, applied_at) VALUES ($1, $2)", &[version, &now])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The store's connection, for reconciliation's own statements (`recon/pg.rs`).
    pub(crate) fn client(&mut self) -> &mut Client {
        self.client.get_mut()
    }

    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let result = self.prepared.get(sql, |sql| client.prepare(sql)).and_then(|s| client.query(&s, params));
        Ok(self.prepared.check(result)?)
    }

    fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        let mut client = self.client.borrow_mut();
        let result = self.prepared.get(sql, |sql| client.prepare(sql)).and_then(|s| client.query_one(&s, params));
        Ok(self.prepared.check(result)?)
    }

    fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let mut client = self.client.borrow_mut();
        let result = self.prepared.get(sql, |sql| client.prepare(sql)).and_then(|s| client.query_opt(&s, params));
        Ok(self.prepared.check(result)?)
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let mut client = self.client.borrow_mut();
        let result = self.prepared.get(sql, |sql| client.prepare(sql)).and_then(|s| client.execute(&s, params));
        Ok(self.prepared.check(result)?)
    }

    /// Runs `write` in one transaction and commits it; an error rolls it all back.
    fn write<T>(&self, write: impl FnOnce(&mut Tx<'_, '_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut client = self.client.borrow_mut();
        let result = (|| {
            let mut tx = Tx { tx: client.transaction()?, prepared: &self.prepared };
            let value = write(&mut tx)?;
            tx.tx.commit()?;
            Ok(value)
        })();
        if matches!(result, Err(StoreError::Postgres(_))) {
            // A statement may have failed because its prepared form went stale.
            self.prepared.clear();
        }
        result
    }

    fn query_accounts(&self, sql: &str, params: Params<'_>) -> Result<Vec<Account>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(sql, params)? {
            let row = AccountRow {
                id: r.try_get(0)?,
                process: r.try_get(1)?,
                user: r.try_get(2)?,
                bundle_hash: r.try_get(3)?,
                status: r.try_get(4)?,
                form: r.try_get(5)?,
                children: r.try_get(6)?,
            };
            out.push(row.into_account(self.key.as_ref())?);
        }
        Ok(out)
    }

    fn query_tasks(&self, sql: &str, params: Params<'_>) -> Result<Vec<TaskInstance>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(sql, params)? {
            let row = TaskRow {
                id: r.try_get(0)?,
                account: r.try_get(1)?,
                task_index: r.try_get(2)?,
                task_name: r.try_get(3)?,
                status: r.try_get(4)?,
                response: r.try_get(5)?,
                attempt: r.try_get(6)?,
                due_at: r.try_get(7)?,
                calling: r.try_get(8)?,
                held: r.try_get(9)?,
                note: r.try_get(10)?,
                child: r.try_get(11)?,
                outputs: r.try_get(12)?,
            };
            out.push(row.into_task()?);
        }
        Ok(out)
    }

    fn users_where(&self, clause: &str, params: Params<'_>) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(&format!("SELECT login, attributes, status, locked FROM users {clause}"), params)? {
            let attributes: String = r.try_get(1)?;
            out.push(user_record(r.try_get(0)?, &attributes, r.try_get(2)?, r.try_get(3)?)?);
        }
        Ok(out)
    }

    fn bundle_where(&self, sql: &str, params: Params<'_>, what: &str) -> Result<Option<Bundle>, StoreError> {
        let Some(row) = self.query(sql, params)?.into_iter().next() else { return Ok(None) };
        let json: String = row.try_get(0)?;
        provflow_ir::load(&json).map(Some).map_err(|e| StoreError::Corrupt(format!("bundle {what}: {e}")))
    }
}

/// Connects to `url` (a `postgres://` URL or a key=value DSN) without touching its tables:
/// the store's own connection, and `state copy`'s. Failures name the endpoint, never the
/// password.
pub(crate) fn connect(url: &str) -> Result<Client, StoreError> {
    credentials::remember(url);
    let secrets = Credentials::of(url);
    let mut prepared = pg_conn::prepare(url)
        .map_err(|e| StoreError::Open { path: credentials::redact(url), error: secrets.scrub(&e) })?;
    let config = &mut prepared.config;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("provflow");
    }
    config.notice_callback(|_| {});
    let endpoint = pg_conn::endpoint(config);
    let client = prepared.connect().map_err(|(_, e)| StoreError::Unreachable { endpoint, error: secrets.scrub(&e) })?;
    Ok(client)
}

/// The newest applied migration; `None` for a database without the migrations table.
pub(crate) fn applied_version(client: &mut Client) -> Result<Option<i64>, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?.try_get(0)?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[])?.try_get(0)?))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn insert_task(
    tx: &mut Tx<'_, '_>,
    account: AccountId,
    t: &NewTask,
    actor: &str,
    now: Instant,
) -> Result<TaskId, StoreError> {
    let id: TaskId = tx
        .query_one(
            "INSERT INTO task_instances(account_id, task_index, task_name, status, attempt, due_at, held, note, child, calling, created_at, updated_at, manual)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING id",
            &[
                &account,
                &to_i64(t.task_index),
                &t.task_name,
                &status_text(t.status),
                &i64::from(t.attempt),
                &t.due_at,
                &t.held,
                &t.note,
                &map_json(&t.child),
                &t.calling,
                &now,
                &t.manual,
            ],
        )?
        .try_get(0)?;
    let audit =
        "INSERT INTO task_audit(task_id, at, actor, from_status, to_status, note) VALUES ($1, $2, $3, $4, $5, $6)";
    let none: Option<&str> = None;
    if t.promoted {
        tx.execute(audit, &[&id, &now, &actor, &none, &status_text(TaskStatus::Waiting), &none])?;
        tx.execute(
            audit,
            &[&id, &now, &actor, &Some(status_text(TaskStatus::Waiting)), &status_text(t.status), &t.note],
        )?;
    } else {
        tx.execute(audit, &[&id, &now, &actor, &none, &status_text(t.status), &t.note])?;
    }
    Ok(id)
}

fn write_user(tx: &mut Tx<'_, '_>, user: &UserRecord, now: Instant) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE users SET attributes = $2, status = $3, locked = $4, updated_at = $5 WHERE login = $1",
        &[&user.login, &map_json(&user.attributes), &user.status, &user.locked, &now],
    )?;
    Ok(())
}

fn write_form(tx: &mut Tx<'_, '_>, key: Option<&SecretKey>, account: &Account, now: Instant) -> Result<(), StoreError> {
    let encoded = encode_values(key, &account.form, &form_context(account.id));
    let children = serde_json::to_string(&account.children).unwrap_or_else(|_| "{}".into());
    tx.execute(
        "UPDATE accounts SET form = $2, children = $3, updated_at = $4 WHERE id = $1",
        &[&account.id, &encoded, &children, &now],
    )?;
    Ok(())
}

/// Writes one step (see the SQLite store's `apply_step`). The caller owns the transaction.
fn apply_step(tx: &mut Tx<'_, '_>, step: &Step, now: Instant) -> Result<Vec<TaskId>, StoreError> {
    for t in &step.transitions {
        // The audit row takes its `from` from the stored row, before the update below.
        tx.execute(
            "INSERT INTO task_audit(task_id, at, actor, from_status, to_status, response, note)
             SELECT id, $2, $3, status, $4, $5, $6 FROM task_instances WHERE id = $1",
            &[&t.task, &now, &step.actor, &status_text(t.to), &t.response, &t.note],
        )?;
        tx.execute(
            "UPDATE task_instances SET status = $2, response = coalesce($3, response), note = $4, held = $5,
               outputs = CASE WHEN $6::text = '{}' THEN outputs ELSE $6::text END, calling = false, updated_at = $7,
               claimed_by = CASE WHEN $2 = 'Pending' THEN claimed_by END,
               lease_expires_at = CASE WHEN $2 = 'Pending' THEN lease_expires_at END
             WHERE id = $1",
            &[&t.task, &status_text(t.to), &t.response, &t.note, &t.held, &map_json(&t.outputs), &now],
        )?;
    }
    let mut ids = Vec::with_capacity(step.new_tasks.len());
    for t in &step.new_tasks {
        ids.push(insert_task(tx, step.account, t, &step.actor, now)?);
    }
    if let Some(status) = step.account_status {
        tx.execute(
            "UPDATE accounts SET status = $2, updated_at = $3 WHERE id = $1",
            &[&step.account, &status.as_str(), &now],
        )?;
    }
    for task in &step.uncalling {
        tx.execute("UPDATE task_instances SET calling = false, updated_at = $2 WHERE id = $1", &[task, &now])?;
    }
    if let Some(task) = step.calling {
        tx.execute("UPDATE task_instances SET calling = true, updated_at = $2 WHERE id = $1", &[&task, &now])?;
    }
    for n in &step.notify {
        tx.execute(
            "INSERT INTO outbox(account_id, task_id, template_index, template, task_status, recipient, bundle_hash, created_at)
             SELECT id, $2, $3, $4, $5, $6, bundle_hash, $7 FROM accounts WHERE id = $1",
            &[
                &step.account,
                &n.task,
                &to_i64(n.template_index),
                &n.template,
                &status_text(n.task_status),
                &n.recipient,
                &now,
            ],
        )?;
    }
    Ok(ids)
}

impl StateStore for PgStore {
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
            // Every writer of a form locks its account row: the rotation waits for them, and
            // they for it.
            let rows =
                tx.query("SELECT id, form FROM accounts WHERE form LIKE '%\"sealed\"%' ORDER BY id FOR UPDATE", &[])?;
            let mut done = KeyRotation::default();
            for row in rows {
                let (id, form): (AccountId, String) = (row.try_get(0)?, row.try_get(1)?);
                let (resealed, n) = reseal_form(&form, id, &old, new)?;
                if n > 0 {
                    tx.execute("UPDATE accounts SET form = $2 WHERE id = $1", &[&id, &resealed])?;
                    done.accounts += 1;
                    done.secrets += n;
                }
            }
            tx.execute(
                "INSERT INTO store_meta(name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&KEY_CHECK, &check],
            )?;
            Ok(done)
        })?;
        self.key = Some(new.clone());
        Ok(done)
    }

    fn save_bundle(&mut self, bundle: &Bundle) -> Result<(), StoreError> {
        // The newest use wins for `latest_bundle`, even for a bundle stored before.
        self.execute(
            "INSERT INTO bundles(hash, ir, stored_at) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO UPDATE SET stored_at = EXCLUDED.stored_at",
            &[&bundle.hash, &bundle.to_json(), &(self.now)()],
        )?;
        Ok(())
    }

    fn bundle(&self, hash: &str) -> Result<Option<Bundle>, StoreError> {
        self.bundle_where("SELECT ir FROM bundles WHERE hash = $1", &[&hash], hash)
    }

    fn latest_bundle(&self) -> Result<Option<Bundle>, StoreError> {
        self.bundle_where("SELECT ir FROM bundles ORDER BY stored_at DESC, seq DESC LIMIT 1", &[], "(newest)")
    }

    fn insert_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        let now = (self.now)();
        self.execute(
            "INSERT INTO users(login, attributes, status, locked, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
            &[&user.login, &map_json(&user.attributes), &user.status, &user.locked, &now],
        )?;
        Ok(())
    }

    fn update_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        let now = (self.now)();
        self.write(|tx| write_user(tx, user, now))
    }

    fn user(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users_where("WHERE login = $1", &[&login])?.into_iter().next())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        // Byte order, as SQLite sorts: the database's collation may sort otherwise.
        self.users_where("ORDER BY login COLLATE \"C\"", &[])
    }

    fn create_accounts(
        &mut self,
        actor: &str,
        accounts: &[NewAccount<'_>],
    ) -> Result<Vec<(AccountId, Vec<TaskId>)>, StoreError> {
        let now = (self.now)();
        let key = self.key.as_ref();
        self.write(|tx| {
            let mut out = Vec::with_capacity(accounts.len());
            for a in accounts {
                // The user's row locked: another command creating an account for the same user,
                // or deleting the user, waits for this transaction, and the insert below sees
                // what such a command committed before.
                let user = tx.query_opt("SELECT status FROM users WHERE login = $1 FOR UPDATE", &[&a.user])?;
                let status: Option<String> = user.map(|r| r.try_get(0)).transpose()?;
                // The id first: the form is sealed with it as context.
                let id: AccountId =
                    tx.query_one("SELECT nextval(pg_get_serial_sequence('accounts', 'id'))", &[])?.try_get(0)?;
                let encoded = encode_values(key, a.form, &form_context(id));
                let inserted = tx.execute(
                    "INSERT INTO accounts(id, process, user_login, bundle_hash, status, form, usr_key, created_at, updated_at)
                     SELECT $1, $2, u.login, $4, $5, $6, u.usr_key, $7, $7 FROM users u
                     WHERE u.login = $3 AND u.status <> 'Deleted' AND NOT EXISTS (
                       SELECT 1 FROM accounts a WHERE a.user_login = $3 AND a.process = $2 AND a.status <> 'Revoked')",
                    &[&id, &a.process, &a.user, &a.bundle_hash, &a.status.as_str(), &encoded, &now],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(why_refused(a, status.as_deref())));
                }
                let mut ids = Vec::with_capacity(a.tasks.len());
                for t in a.tasks {
                    ids.push(insert_task(tx, id, t, actor, now)?);
                }
                out.push((id, ids));
            }
            Ok(out)
        })
    }

    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        Ok(self.query_accounts(&sql, &[&id])?.into_iter().next())
    }

    fn find_account(&self, process: &str, user: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_login = $2 AND process = $1 ORDER BY id DESC LIMIT 1"
        );
        Ok(self.query_accounts(&sql, &[&process, &user])?.into_iter().next())
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.query_accounts(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"), &[])
    }

    fn save_form(&mut self, account: &Account) -> Result<(), StoreError> {
        let now = (self.now)();
        let key = self.key.as_ref();
        self.write(|tx| write_form(tx, key, account, now))
    }

    fn task(&self, id: TaskId) -> Result<Option<TaskInstance>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE id = $1");
        Ok(self.query_tasks(&sql, &[&id])?.into_iter().next())
    }

    fn tasks_of(&self, account: AccountId) -> Result<Vec<TaskInstance>, StoreError> {
        self.query_tasks(
            &format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE account_id = $1 ORDER BY id"),
            &[&account],
        )
    }

    fn tasks(&self, status: Option<TaskStatus>) -> Result<Vec<TaskInstance>, StoreError> {
        match status {
            Some(s) => self.query_tasks(
                &format!("SELECT {TASK_COLUMNS} FROM task_instances WHERE status = $1 ORDER BY id"),
                &[&status_text(s)],
            ),
            None => self.query_tasks(&format!("SELECT {TASK_COLUMNS} FROM task_instances ORDER BY id"), &[]),
        }
    }

    fn set_calling(&mut self, task: TaskId, calling: bool) -> Result<(), StoreError> {
        self.execute(
            "UPDATE task_instances SET calling = $2, updated_at = $3 WHERE id = $1",
            &[&task, &calling, &(self.now)()],
        )?;
        Ok(())
    }

    fn commit_steps(&mut self, steps: &[Step]) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        self.write(|tx| steps.iter().map(|step| apply_step(tx, step, now)).collect())
    }

    fn commit_change(&mut self, change: &Change<'_>) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        let key = self.key.as_ref();
        self.write(|tx| {
            if let Some(user) = change.user {
                write_user(tx, user, now)?;
            }
            if let Some(account) = change.form {
                write_form(tx, key, account, now)?;
            }
            change.steps.iter().map(|step| apply_step(tx, step, now)).collect()
        })
    }

    fn audit(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM task_audit WHERE task_id = $1 ORDER BY id");
        self.query(&sql, &[&task])?
            .iter()
            .map(|r| {
                audit_entry((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                ))
            })
            .collect()
    }

    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_where("")
    }

    fn queued_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_where("WHERE status = 'queued'")
    }

    fn record_render(&mut self, id: i64, render: &OutboxRender, at: Instant) -> Result<(), StoreError> {
        let (locale, message_type, subject, short, body, to_address, error, status) = render.columns();
        self.execute(
            "UPDATE outbox SET status = $2, locale = $3, message_type = $4, subject = $5, short = $6, body = $7,
               to_address = $8, error = $9, rendered_at = $10 WHERE id = $1",
            &[&id, &status, &locale, &message_type, &subject, &short, &body, &to_address, &error, &at],
        )?;
        Ok(())
    }

    fn outbox_messages(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM outbox ORDER BY id");
        self.query(&sql, &[])?
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get(0)?,
                    template: r.try_get(1)?,
                    recipient: r.try_get(2)?,
                    to_address: r.try_get(3)?,
                    locale: r.try_get(4)?,
                    message_type: r.try_get(5)?,
                    subject: r.try_get(6)?,
                    short: r.try_get(7)?,
                    body: r.try_get(8)?,
                    status: r.try_get(9)?,
                    error: r.try_get(10)?,
                    task_status: r.try_get(11)?,
                    created_at: r.try_get(12)?,
                    bundle_hash: r.try_get(13)?,
                    template_index: r.try_get(14)?,
                })
            })
            .collect()
    }

    fn usr_key(&self, login: &str) -> Result<Option<i64>, StoreError> {
        let rows = self.query("SELECT usr_key FROM users WHERE login = $1", &[&login])?;
        Ok(match rows.first() {
            Some(r) => r.try_get(0)?,
            None => None,
        })
    }

    fn database(&self) -> Result<Database<'_>, StoreError> {
        let client = self
            .client
            .try_borrow_mut()
            .map_err(|_| StoreError::Postgres("the connection is already in use by this process".into()))?;
        Ok(Database::Postgres(client))
    }

    fn recon_events(&self, run: Option<i64>) -> Result<(Option<i64>, Vec<ReconEvent>), StoreError> {
        let run = match run {
            Some(r) => Some(r),
            None => {
                self.query("SELECT max(id) FROM recon_runs", &[])?.first().map(|r| r.try_get(0)).transpose()?.flatten()
            }
        };
        let Some(run) = run else { return Ok((None, vec![])) };
        let sql = format!("SELECT {RECON_EVENT_COLUMNS} FROM recon_events WHERE run_id = $1 ORDER BY line, id");
        let events = self
            .query(&sql, &[&run])?
            .iter()
            .map(|r| {
                let changes: String = r.try_get(6)?;
                Ok(ReconEvent {
                    run: r.try_get(0)?,
                    line: r.try_get(1)?,
                    key: r.try_get(2)?,
                    outcome: r.try_get(3)?,
                    action: r.try_get(4)?,
                    account: r.try_get(5)?,
                    changes: super::changes_json(&changes),
                    error: r.try_get(7)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((Some(run), events))
    }
}

impl PgStore {
    fn outbox_where(&self, clause: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox {clause} ORDER BY id"), &[])? {
            let row = OutboxRow {
                id: r.try_get(0)?,
                account: r.try_get(1)?,
                task: r.try_get(2)?,
                template_index: r.try_get(3)?,
                template: r.try_get(4)?,
                task_status: r.try_get(5)?,
                recipient: r.try_get(6)?,
                bundle_hash: r.try_get(7)?,
                created_at: r.try_get(8)?,
            };
            out.push(row.into_entry()?);
        }
        Ok(out)
    }
}

// ----- the work queue (`queue.rs`) ------------------------------------------------------------

/// Reads a worker row (`WORKER_COLUMNS` order).
fn worker_row(r: &Row) -> Result<WorkerRow, StoreError> {
    Ok(WorkerRow {
        id: r.try_get(0)?,
        host: r.try_get(1)?,
        pid: r.try_get(2)?,
        started_at: r.try_get(3)?,
        heartbeat_at: r.try_get(4)?,
        lease_seconds: r.try_get(5)?,
        concurrency: r.try_get(6)?,
        stopped_at: r.try_get(7)?,
    })
}

/// Reads a claim with its holder (`HELD_COLUMNS` order).
fn held_row(r: &Row) -> Result<(String, HeldClaim), StoreError> {
    Ok((
        r.try_get(5)?,
        HeldClaim {
            task: r.try_get(0)?,
            account: r.try_get(1)?,
            epoch: r.try_get(2)?,
            expires_at: r.try_get(3)?,
            calling: r.try_get(4)?,
        },
    ))
}

/// What makes a task `t` claimable at `$1`, but for the one-claim-per-account rule.
const RUNNABLE: &str = "t.status = 'Pending' AND NOT t.held AND NOT t.manual AND (t.due_at IS NULL OR t.due_at <= $1)
    AND (t.claimed_by IS NULL OR t.lease_expires_at <= $1)";

/// No task of `t`'s account has a live claim at `$1`.
const NO_LIVE_CLAIM: &str = "NOT EXISTS (SELECT 1 FROM task_instances l
    WHERE l.account_id = t.account_id AND l.claimed_by IS NOT NULL AND l.lease_expires_at > $1)";

impl Queue for PgStore {
    fn worker_register(&mut self, worker: &WorkerRecord) -> Result<(), StoreError> {
        let now = worker.heartbeat_at;
        let (pid, concurrency) = (i64::from(worker.pid), i64::from(worker.concurrency));
        self.write(|tx| {
            // The row is taken over only from a stopped or silent worker, or from this very
            // registration (the same host, pid and start: a retry after its answer was lost with
            // the connection); two processes registering one id at once: the second waits for
            // the first's insert, then finds it live and is refused.
            let taken = tx.query_opt(
                "INSERT INTO workers(id, host, pid, started_at, heartbeat_at, lease_seconds, concurrency, stopped_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                   lease_seconds = excluded.lease_seconds, concurrency = excluded.concurrency, stopped_at = NULL
                 WHERE workers.stopped_at IS NOT NULL OR workers.heartbeat_at + workers.lease_seconds <= $5
                    OR (workers.host = excluded.host AND workers.pid = excluded.pid
                        AND workers.started_at = excluded.started_at)
                 RETURNING id",
                &[&worker.id, &worker.host, &pid, &worker.started_at, &now, &lease_seconds(worker.lease), &concurrency],
            )?;
            if taken.is_none() {
                let live =
                    tx.query_one(&format!("SELECT {WORKER_COLUMNS} FROM workers WHERE id = $1"), &[&worker.id])?;
                return Err(worker_row(&live)?.refusal(now, true));
            }
            // Claims of an earlier process with this id: it is gone, and this one never knew them.
            tx.execute(
                "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL WHERE claimed_by = $1",
                &[&worker.id],
            )?;
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
            let seen = tx.execute(
                "UPDATE workers SET heartbeat_at = $2, lease_seconds = $3 WHERE id = $1 AND stopped_at IS NULL",
                &[&id, &now, &lease_seconds(lease)],
            )?;
            if seen == 0 {
                return Err(StoreError::UnknownWorker(id.to_string()));
            }
            // A rescue that takes a claim at the same moment updates the same row: whichever
            // commits second re-reads it, so a claim is renewed or rescued, never both. The
            // rows are locked in id order first, as fenced commits and releases lock them: a
            // plain `UPDATE … WHERE claimed_by` locks them in the order of the scan, and
            // deadlocks against this worker's own slots committing or releasing a batch.
            let rows = tx.query(
                &format!(
                    "WITH mine AS (SELECT id AS mine FROM task_instances WHERE claimed_by = $1 AND id = ANY($3)
                                   ORDER BY id FOR UPDATE)
                     UPDATE task_instances t SET lease_expires_at = $2 FROM mine
                     WHERE t.id = mine.mine AND t.claimed_by = $1 RETURNING {HELD_COLUMNS}"
                ),
                &[&id, &expiry(now, lease), &held],
            )?;
            let mut renewed = rows.iter().map(|r| held_row(r).map(|(_, c)| c)).collect::<Result<Vec<_>, _>>()?;
            renewed.sort_by_key(|c| c.task);
            Ok(renewed)
        })
    }

    fn worker_stop(&mut self, id: &str, now: Instant) -> Result<usize, StoreError> {
        self.write(|tx| {
            if tx.execute("UPDATE workers SET stopped_at = $2 WHERE id = $1", &[&id, &now])? == 0 {
                return Err(StoreError::UnknownWorker(id.to_string()));
            }
            let released = tx.execute(
                "UPDATE task_instances SET claimed_by = NULL, lease_expires_at = NULL
                 WHERE claimed_by = $1 AND NOT EXISTS (SELECT 1 FROM task_instances c
                   WHERE c.account_id = task_instances.account_id AND c.calling)",
                &[&id],
            )?;
            Ok(usize::try_from(released).unwrap_or(usize::MAX))
        })
    }

    fn workers(&self) -> Result<Vec<WorkerStatus>, StoreError> {
        // One snapshot for both reads.
        self.write(|tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            let rows = tx.query(&format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY id COLLATE \"C\""), &[])?;
            let workers =
                rows.iter().map(|r| worker_row(r).and_then(WorkerRow::into_record)).collect::<Result<Vec<_>, _>>()?;
            let rows = tx.query(
                &format!("SELECT {HELD_COLUMNS} FROM task_instances WHERE claimed_by IS NOT NULL ORDER BY id"),
                &[],
            )?;
            let claims = rows.iter().map(held_row).collect::<Result<Vec<_>, _>>()?;
            Ok(with_claims(workers, claims))
        })
    }

    fn task_claim(&mut self, p: &TaskClaimParams<'_>) -> Result<Vec<Claim>, StoreError> {
        let expires_at = expiry(p.now, p.lease);
        let limit = i64::try_from(p.limit).unwrap_or(i64::MAX);
        self.write(|tx| {
            let live = tx.query_opt("SELECT stopped_at FROM workers WHERE id = $1", &[&p.worker])?;
            let stopped: Option<Option<Instant>> = live.map(|r| r.try_get(0)).transpose()?;
            if !matches!(stopped, Some(None)) {
                return Err(StoreError::UnknownWorker(p.worker.to_string()));
            }
            // 1. Lock the accounts to claim in, skipping those another claimer holds. Every
            // claim locks its account first, so these accounts are ours until the commit.
            // Rescues first (an account with a claim left, expired: its work has waited a
            // lease already), found through the small index of claimed rows; then the oldest.
            let ids = |rows: Vec<Row>| rows.iter().map(|r| r.try_get(0)).collect::<Result<Vec<AccountId>, _>>();
            let mut accounts: Vec<AccountId> = ids(tx.query(
                &format!(
                    "SELECT a.id FROM accounts a
                     WHERE a.id IN (SELECT r.account_id FROM task_instances r
                                    WHERE r.claimed_by IS NOT NULL AND r.lease_expires_at <= $1)
                       AND EXISTS (SELECT 1 FROM task_instances t WHERE t.account_id = a.id AND {RUNNABLE})
                       AND NOT EXISTS (SELECT 1 FROM task_instances l WHERE l.account_id = a.id
                                         AND l.claimed_by IS NOT NULL AND l.lease_expires_at > $1)
                     ORDER BY a.id LIMIT $2
                     FOR NO KEY UPDATE OF a SKIP LOCKED"
                ),
                &[&p.now, &limit],
            )?)?;
            // Then new work, a page of candidate accounts at a time through the index of
            // runnable tasks (ordered by account): a claim reads a few pages, not the whole
            // backlog. Pages go on while accounts are skipped (locked or claimed by others)
            // and the page was full, so a claimer never sees "no work" while work remains.
            let mut rest = limit.saturating_sub(i64::try_from(accounts.len()).unwrap_or(i64::MAX));
            let page = rest.saturating_mul(4).max(64);
            let mut cursor: AccountId = AccountId::MIN;
            while rest > 0 {
                let candidates: Vec<AccountId> = ids(tx.query(
                    &format!(
                        "SELECT DISTINCT t.account_id FROM task_instances t
                         WHERE {RUNNABLE} AND t.account_id > $2 ORDER BY t.account_id LIMIT $3"
                    ),
                    &[&p.now, &cursor, &page],
                )?)?;
                let Some(&last) = candidates.last() else { break };
                cursor = last;
                let got = ids(tx.query(
                    "SELECT a.id FROM accounts a
                     WHERE a.id = ANY($2) AND a.id <> ALL($4)
                       AND NOT EXISTS (SELECT 1 FROM task_instances l WHERE l.account_id = a.id
                                         AND l.claimed_by IS NOT NULL AND l.lease_expires_at > $1)
                     ORDER BY a.id LIMIT $3
                     FOR NO KEY UPDATE OF a SKIP LOCKED",
                    &[&p.now, &candidates, &rest, &accounts],
                )?)?;
                rest = rest.saturating_sub(i64::try_from(got.len()).unwrap_or(i64::MAX));
                accounts.extend(got);
                if i64::try_from(candidates.len()).unwrap_or(i64::MAX) < page {
                    break;
                }
            }
            if accounts.is_empty() {
                return Ok(vec![]);
            }
            // 2. The locked accounts have no live claim: any claim left on them expired (a
            // worker that held the account and died after its first task left Pending). They
            // go, and their holders are named as rescued.
            let stale: Vec<(AccountId, String)> = tx
                .query(
                    "WITH old AS (
                       SELECT id, account_id, claimed_by FROM task_instances
                       WHERE account_id = ANY($2) AND claimed_by IS NOT NULL AND lease_expires_at <= $1
                       ORDER BY id FOR UPDATE)
                     UPDATE task_instances t SET claimed_by = NULL, lease_expires_at = NULL
                     FROM old WHERE t.id = old.id
                     RETURNING old.account_id, old.claimed_by",
                    &[&p.now, &accounts],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, StoreError>>()?;
            // 3. Claim one task per locked account. A statement of its own: its snapshot is
            // taken after the locks were granted, so it sees every claim committed by whoever
            // held them before (the first statement's snapshot may predate such a commit, and
            // would let two workers claim two tasks of one account). The conditions on `t` are
            // repeated in the UPDATE: a row changed meanwhile (a heartbeat, a commit) is
            // checked again in its newest version.
            let rows = tx.query(
                &format!(
                    "WITH pick AS (
                       SELECT DISTINCT ON (t.account_id) t.id
                       FROM task_instances t
                       WHERE t.account_id = ANY($2) AND {RUNNABLE} AND {NO_LIVE_CLAIM}
                       ORDER BY t.account_id, t.id)
                     UPDATE task_instances t
                     SET claimed_by = $3, lease_epoch = t.lease_epoch + 1, lease_expires_at = $4
                     FROM pick
                     WHERE t.id = pick.id AND {RUNNABLE}
                     RETURNING t.id, t.account_id, t.lease_epoch, t.calling"
                ),
                &[&p.now, &accounts, &p.worker, &expires_at],
            )?;
            let mut claims = rows
                .iter()
                .map(|r| {
                    let account: AccountId = r.try_get(1)?;
                    Ok(Claim {
                        task: r.try_get(0)?,
                        account,
                        epoch: r.try_get(2)?,
                        expires_at,
                        calling: r.try_get(3)?,
                        rescued_from: stale.iter().find(|(a, _)| *a == account).map(|(_, by)| by.clone()),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            claims.sort_by_key(|c| c.account);
            Ok(claims)
        })
    }

    fn task_claim_release(&mut self, held: &[(TaskId, Epoch)]) -> Result<usize, StoreError> {
        if held.is_empty() {
            return Ok(0);
        }
        let (tasks, epochs): (Vec<TaskId>, Vec<Epoch>) = held.iter().copied().unzip();
        // Locked in id order, as the heartbeat and fenced commits lock them (see
        // `worker_heartbeat`): an UPDATE alone would lock them in the order of its join.
        let released = self.execute(
            "WITH held AS (SELECT id AS held FROM task_instances WHERE id = ANY($1) ORDER BY id FOR UPDATE)
             UPDATE task_instances t SET claimed_by = NULL, lease_expires_at = NULL
             FROM held, unnest($1::bigint[], $2::bigint[]) AS h(task, epoch)
             WHERE t.id = held.held AND t.id = h.task AND t.lease_epoch = h.epoch AND t.claimed_by IS NOT NULL",
            &[&tasks, &epochs],
        )?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    fn commit_steps_fenced(&mut self, steps: &[Step], fence: &[Fence]) -> Result<Vec<Vec<TaskId>>, StoreError> {
        let now = (self.now)();
        // Checked in id order, so that the first fence found broken is always the same one.
        let mut order: Vec<&Fence> = fence.iter().collect();
        order.sort_by_key(|f| f.task);
        let tasks: Vec<TaskId> = order.iter().map(|f| f.task).collect();
        let mut accounts: Vec<AccountId> = steps.iter().map(|s| s.account).collect();
        accounts.sort_unstable();
        accounts.dedup();
        self.write(|tx| {
            // The accounts first, as a claim locks them before their tasks: a commit that
            // locked its tasks first and then waited for an account a rescuer had locked
            // (the rescuer waiting for those tasks) would deadlock.
            tx.execute("SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE", &[&accounts])?;
            // Every fenced row locked by one statement, in id order (the rows come out of the
            // sort before they are locked), so two fenced commits never wait for each other
            // in a circle.
            let rows = tx.query(
                "SELECT id, claimed_by, lease_epoch, lease_expires_at FROM task_instances
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&tasks],
            )?;
            let mut found = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                let (id, by, epoch, expires): (TaskId, Option<String>, Epoch, Option<Instant>) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                found.insert(id, (by, epoch, expires));
            }
            let (mut kept, mut workers, mut expiries) = (Vec::new(), Vec::new(), Vec::new());
            for f in order {
                match found.remove(&f.task) {
                    Some((by, epoch, expires)) => {
                        if !holds(f, by.as_deref(), epoch) {
                            return Err(fenced(f, by, Some(epoch)));
                        }
                        kept.push(f.task);
                        workers.push(f.worker.as_str());
                        expiries.push(expires);
                    }
                    None => return Err(fenced(f, None, None)),
                }
            }
            let ids = steps.iter().map(|step| apply_step(tx, step, now)).collect::<Result<Vec<_>, _>>()?;
            // A fenced task that left Pending keeps its claim: the worker's hold on the
            // account until it releases it.
            if !kept.is_empty() {
                tx.execute(
                    "UPDATE task_instances t SET claimed_by = h.worker, lease_expires_at = h.expires
                     FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS h(task, worker, expires)
                     WHERE t.id = h.task AND t.claimed_by IS NULL",
                    &[&kept, &workers, &expiries],
                )?;
            }
            Ok(ids)
        })
    }

    fn task_next_wake(&self, now: Instant) -> Result<Option<Instant>, StoreError> {
        let row = self.query_one(
            "SELECT least(
               (SELECT min(due_at) FROM task_instances
                WHERE status = 'Pending' AND NOT held AND NOT manual AND due_at > $1),
               (SELECT min(lease_expires_at) FROM task_instances
                WHERE claimed_by IS NOT NULL AND lease_expires_at > $1))",
            &[&now],
        )?;
        Ok(row.try_get(0)?)
    }

    fn task_counts(&self, now: Instant) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self.query(TASK_COUNTS, &[&now])?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    fn task_mark_manual(&mut self, tasks: &[TaskId]) -> Result<(), StoreError> {
        self.execute("UPDATE task_instances SET manual = true WHERE id = ANY($1)", &[&tasks])?;
        Ok(())
    }

    fn target_slot_acquire(&mut self, target: &str, cap: u32) -> Result<Option<u32>, StoreError> {
        // Session advisory locks: held by this connection, freed when it ends, whatever ends it.
        // A session may take an advisory lock it holds again: the slots this connection holds
        // are left out.
        let class = slot_class(target);
        let cap = i32::try_from(cap).unwrap_or(i32::MAX);
        let mine: Vec<i32> = self.slots.borrow().iter().filter(|(c, _)| *c == class).map(|(_, slot)| *slot).collect();
        // The series is scanned in order and the scan stops at the first lock taken.
        let row = self.query_opt(
            "SELECT s FROM generate_series(0, $2 - 1) AS s WHERE s <> ALL($3) AND pg_try_advisory_lock($1, s) LIMIT 1",
            &[&class, &cap, &mine],
        )?;
        let slot: Option<i32> = row.map(|r| r.try_get(0)).transpose()?;
        if let Some(taken) = slot {
            self.slots.borrow_mut().insert((class, taken));
        }
        Ok(slot.and_then(|s| u32::try_from(s).ok()))
    }

    fn target_slot_release(&mut self, target: &str, slot: u32) -> Result<(), StoreError> {
        let (class, slot) = (slot_class(target), i32::try_from(slot).unwrap_or(i32::MAX));
        if self.slots.borrow_mut().remove(&(class, slot)) {
            self.query_one("SELECT pg_advisory_unlock($1, $2)", &[&class, &slot])?;
        }
        Ok(())
    }
}

/// The channel every commit of new work notifies (migration 5's trigger).
pub const WORK_CHANNEL: &str = "provflow_work";

/// A connection of its own that waits for `provflow_work` notifications (see
/// [`super::work_listener`]).
pub struct WorkListener {
    client: Client,
}

impl WorkListener {
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut client = connect(url)?;
        client.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))?;
        Ok(WorkListener { client })
    }

    /// Waits up to `timeout` for a notification; `true` when one (or several) arrived.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut notifications = self.client.notifications();
        let first = notifications.timeout_iter(timeout).next()?;
        if first.is_none() {
            // A timeout, or a connection that died quietly: a query tells them apart.
            drop(notifications);
            self.client.simple_query("")?;
            return Ok(false);
        }
        // Several commits wake the workers once.
        while notifications.iter().next()?.is_some() {}
        Ok(true)
    }
}
