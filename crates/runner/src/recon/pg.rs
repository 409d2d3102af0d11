//! Reconciliation on a PostgreSQL state store: the same plan, matching, writer and events as
//! on SQLite (the rest of `recon/`), with what differs about the database here.
//!
//! - Loading: one `SELECT` of the process's accounts (and one of the users, for entity
//!   matching), streamed in id order into the same in-memory indexes. JSON members are read
//!   with `->>` from the `text` columns cast to `jsonb` once per row.
//! - Writing: on the store's own connection, in transactions of [`COMMIT_ROWS`] rows. A
//!   failed statement makes PostgreSQL abort the whole transaction, so every row that writes
//!   does so inside a savepoint: a failed row is rolled back to it and reported, and the
//!   rest of its batch stays. A form or attribute change patches only the members it changes
//!   (`jsonb ||`), so a concurrent change to another member survives, as on SQLite.
//! - Events: one `INSERT … SELECT FROM unnest(…)` per flush, whatever its size.

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Client;
use provflow_ir::{self as ir, Bundle, ReconTarget};

use super::index::{insert_key, AccountIndexer, Later, Loaded, Snapshot, StoredStatus, UserIndex};
use super::plan::{normalise_into, Field, Plan, KEY_SEPARATOR};
use super::writer::{Event, Sink};
use super::{write_rows, DbError, Feed, Options, Outcome, ReconError};
use crate::clock::Instant;
use crate::store::PgStore;

/// Rows per write transaction: small enough that the accounts a batch updates are not held
/// locked from the runners for long.
const COMMIT_ROWS: u64 = 5_000;

/// A string literal for PostgreSQL (`standard_conforming_strings` is on in every supported
/// server; names come from the definitions).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Member `name` of a JSON object as text (any scalar; an object or array as JSON text).
fn member(json: &str, name: &str) -> String {
    format!("({json} ->> {})", literal(name))
}

/// Member `name` of a JSON object as text when it is a string, else NULL.
fn string_member(json: &str, name: &str) -> String {
    let n = literal(name);
    format!("(CASE WHEN jsonb_typeof({json} -> {n}) = 'string' THEN {json} ->> {n} END)")
}

/// Loads and indexes the accounts of the process with one streamed query, in id order.
fn load_accounts(client: &mut Client, plan: &Plan) -> Result<Loaded, ReconError> {
    let keys: Vec<&Field> = plan.fields.iter().filter(|f| f.key).collect();
    let mut select = vec!["a.id".to_string(), "a.user_login".to_string(), "a.status".to_string()];
    let mut join_users = false;
    for f in &keys {
        select.push(match &f.maps_to {
            ReconTarget::Form(x) => member("af.j", x),
            ReconTarget::User(a) if a == "usr_login" => "a.user_login".to_string(),
            ReconTarget::User(a) => {
                join_users = true;
                member("ua.j", a)
            }
            ReconTarget::ObjectStatus => "a.status".to_string(),
        });
    }
    for x in &plan.form_fields {
        select.push(member("af.j", x));
    }
    for a in &plan.user_fields {
        join_users = true;
        select.push(string_member("ua.j", a));
    }
    let users = if join_users {
        "LEFT JOIN users u ON u.login = a.user_login LEFT JOIN LATERAL (SELECT u.attributes::jsonb AS j) ua ON true"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} FROM accounts a CROSS JOIN LATERAL (SELECT a.form::jsonb AS j) af {users}
         WHERE a.process = $1 ORDER BY a.id",
        select.join(", ")
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM accounts WHERE process = $1", &[&plan.process])
        .and_then(|r| r.try_get(0))
        .map_err(DbError::from)?;
    let mut indexer = AccountIndexer::new(plan, usize::try_from(count).unwrap_or(0).min(1 << 24));
    let mut rows = client.query_raw(sql.as_str(), [&plan.process]).map_err(DbError::from)?;
    let mut key = String::new();
    let text = |r: &postgres::Row, i: usize| -> Result<Option<Box<str>>, DbError> {
        Ok(r.try_get::<_, Option<String>>(i)?.map(String::into_boxed_str))
    };
    while let Some(r) = rows.next().map_err(DbError::from)? {
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            normalise_into(&mut key, f, text(&r, 3 + i)?.as_deref().unwrap_or(""));
        }
        let base = 3 + keys.len();
        let form = (0..plan.form_fields.len()).map(|i| text(&r, base + i)).collect::<Result<_, _>>()?;
        let base = base + plan.form_fields.len();
        let user = (0..plan.user_fields.len()).map(|i| text(&r, base + i)).collect::<Result<_, _>>()?;
        let snapshot = Snapshot {
            id: r.try_get(0).map_err(DbError::from)?,
            login: text(&r, 1)?.unwrap_or_default(),
            status: StoredStatus::from_text(text(&r, 2)?),
            form,
            user,
        };
        indexer.push(snapshot, Box::from(key.as_str()))?;
    }
    Ok(indexer.finish())
}

/// Indexes the users that are not deleted by the key fields (entity matching).
fn load_users(client: &mut Client, fields: &[Field]) -> Result<UserIndex, ReconError> {
    let keys: Vec<&Field> = fields.iter().filter(|f| f.key).collect();
    let select: Vec<String> = keys
        .iter()
        .map(|f| match f.user_attribute.as_deref() {
            Some("usr_login") | None => "login".to_string(),
            Some(a) => member("attributes::jsonb", a),
        })
        .collect();
    let sql = format!("SELECT login, {} FROM users WHERE status <> 'Deleted'", select.join(", "));
    let mut index = UserIndex::default();
    let mut key = String::new();
    let empty: [&(dyn ToSql + Sync); 0] = [];
    let mut rows = client.query_raw(sql.as_str(), empty).map_err(DbError::from)?;
    while let Some(r) = rows.next().map_err(DbError::from)? {
        let login: String = r.try_get(0).map_err(DbError::from)?;
        key.clear();
        for (i, f) in keys.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            let v: Option<String> = r.try_get(1 + i).map_err(DbError::from)?;
            normalise_into(&mut key, f, v.as_deref().unwrap_or(""));
        }
        let slot = u32::try_from(index.logins.len()).map_err(|_| ReconError::Store("too many users".into()))?;
        insert_key(&mut index.keys, Box::from(key.as_str()), slot);
        index.logins.push(login.into_boxed_str());
    }
    Ok(index)
}

/// Reconciles on a PostgreSQL store: the indexes loaded one after the other on the store's
/// connection, then the rows written on it.
pub(super) fn reconcile(
    store: &mut PgStore,
    bundle: &Bundle,
    process: &ir::Process,
    mut plan: Plan,
    feed: Feed,
    options: &Options<'_>,
    warnings: Vec<String>,
) -> Result<Outcome, ReconError> {
    let client = store.client();
    let (snapshots, accounts, by_login) = load_accounts(client, &plan)?;
    plan.accounts = accounts;
    plan.by_login = by_login;
    let users = Later::new();
    let index = if plan.entity_matching { load_users(client, &plan.fields)? } else { UserIndex::default() };
    users.finish(Some(index));
    let mut sink = PgSink { client, in_tx: false, lost: false };
    write_rows(&mut sink, bundle, process, &plan, &users, snapshots, feed, options, warnings)
}

/// The writes of a run on a PostgreSQL store.
struct PgSink<'c> {
    client: &'c mut Client,
    in_tx: bool,
    /// A statement failed outside a savepoint, or rolling back to one failed: the server
    /// aborted the transaction.
    lost: bool,
}

impl PgSink<'_> {
    /// Runs `write` inside a savepoint: on failure it is undone and the transaction goes on.
    fn row<T>(&mut self, write: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, DbError> {
        self.fatal(|c| c.batch_execute("SAVEPOINT recon_row"))?;
        match write(&mut *self.client) {
            Ok(v) => {
                self.fatal(|c| c.batch_execute("RELEASE recon_row"))?;
                Ok(v)
            }
            Err(e) => {
                self.fatal(|c| c.batch_execute("ROLLBACK TO recon_row; RELEASE recon_row"))?;
                Err(e.into())
            }
        }
    }

    /// Runs `f` outside a savepoint: its failure loses the transaction.
    fn fatal<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, DbError> {
        f(&mut *self.client).map_err(|e| {
            self.lost = true;
            DbError::from(e)
        })
    }
}

/// The JSON object of `pairs` (name index into `names`, text).
fn patch(names: &[String], pairs: &[&(usize, String)]) -> String {
    let mut map = serde_json::Map::new();
    for (i, t) in pairs {
        if let Some(name) = names.get(*i) {
            map.insert(name.clone(), serde_json::Value::String(t.clone()));
        }
    }
    serde_json::Value::Object(map).to_string()
}

impl Sink for PgSink<'_> {
    fn start_run(&mut self, process: &str, source: &str, now: Instant) -> Result<i64, DbError> {
        let row = self.client.query_one(
            "INSERT INTO recon_runs(process, source, started_at) VALUES ($1, $2, $3) RETURNING id",
            &[&process, &source, &now],
        )?;
        Ok(row.try_get(0)?)
    }

    fn finish_run(&mut self, run: i64, now: Instant, summary: &str) -> Result<(), DbError> {
        self.client
            .execute("UPDATE recon_runs SET finished_at = $2, summary = $3 WHERE id = $1", &[&run, &now, &summary])?;
        Ok(())
    }

    fn commit_rows(&self) -> u64 {
        COMMIT_ROWS
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.client.batch_execute("BEGIN")?;
        self.in_tx = true;
        self.lost = false;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.in_tx = false;
        // A lost transaction's COMMIT is a ROLLBACK: say so rather than report it written.
        if self.lost {
            let _ = self.client.batch_execute("ROLLBACK");
            return Err(DbError::Other("the transaction was aborted by the server".into()));
        }
        Ok(self.client.batch_execute("COMMIT")?)
    }

    fn rollback(&mut self) {
        if self.in_tx {
            self.in_tx = false;
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }

    fn lost(&self) -> bool {
        self.lost
    }

    fn update(
        &mut self,
        plan: &Plan,
        id: i64,
        login: &str,
        status: Option<&str>,
        form: &[&(usize, String)],
        user: &[&(usize, String)],
        now: Instant,
    ) -> Result<(), DbError> {
        let form_patch = (!form.is_empty()).then(|| patch(&plan.form_fields, form));
        let user_patch = (!user.is_empty()).then(|| patch(&plan.user_fields, user));
        self.row(|c| {
            if status.is_some() || form_patch.is_some() {
                c.execute(
                    "UPDATE accounts SET form = CASE WHEN $4::text IS NULL THEN form ELSE (form::jsonb || $4::text::jsonb)::text END,
                       status = coalesce($2, status), updated_at = $3 WHERE id = $1",
                    &[&id, &status, &now, &form_patch],
                )?;
            }
            if let Some(p) = &user_patch {
                c.execute(
                    "UPDATE users SET attributes = (attributes::jsonb || $3::text::jsonb)::text, updated_at = $2 WHERE login = $1",
                    &[&login, &now, p],
                )?;
            }
            Ok(())
        })
    }

    fn user_attributes(&mut self, login: &str) -> Result<String, DbError> {
        let row = self.fatal(|c| c.query_opt("SELECT attributes FROM users WHERE login = $1", &[&login]))?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(DbError::Other(format!("user `{login}` no longer exists"))),
        }
    }

    fn insert_account(
        &mut self,
        plan: &Plan,
        login: &str,
        status: &str,
        form: &str,
        now: Instant,
    ) -> Result<i64, DbError> {
        let row = self.row(|c| {
            c.query_opt(
                "INSERT INTO accounts(process, user_login, bundle_hash, status, form, usr_key, created_at, updated_at)
                 SELECT $1, u.login, $3, $4, $5, u.usr_key, $6, $6 FROM users u WHERE u.login = $2 RETURNING id",
                &[&plan.process, &login, &plan.bundle_hash, &status, &form, &now],
            )
        })?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(DbError::Other(format!("user `{login}` no longer exists"))),
        }
    }

    fn insert_events(&mut self, run: i64, now: Instant, events: &[Event]) -> Result<(), DbError> {
        if events.is_empty() {
            return Ok(());
        }
        let lines: Vec<i64> = events.iter().map(|e| i64::try_from(e.line).unwrap_or(i64::MAX)).collect();
        let keys: Vec<Option<&str>> = events.iter().map(|e| e.key.as_deref()).collect();
        let outcomes: Vec<&str> = events.iter().map(|e| e.outcome).collect();
        let actions: Vec<&str> = events.iter().map(|e| e.action).collect();
        let accounts: Vec<Option<i64>> = events.iter().map(|e| e.account).collect();
        let changes: Vec<&str> = events.iter().map(|e| e.changes.as_str()).collect();
        let errors: Vec<Option<&str>> = events.iter().map(|e| e.error.as_deref()).collect();
        self.fatal(|c| {
            c.execute(
                "INSERT INTO recon_events(run_id, at, line, key, outcome, action, account_id, changes, error)
                 SELECT $1::bigint, $2::bigint, * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[])",
                &[&run, &now, &lines, &keys, &outcomes, &actions, &accounts, &changes, &errors],
            )
        })?;
        Ok(())
    }
}
