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
//! Rows are validated before anything is written; each row's writes are one SAVEPOINT inside
//! a batch transaction, so a row is applied whole or not at all, and a failed row leaves its
//! batch intact. Workers (`--threads`) match in parallel; SQLite serialises their writes.

use provflow_ir::{self as ir, Bundle, ObjectStatus, ReconAction, ReconTarget, ValueType};
use rusqlite::{params, OptionalExtension};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use crate::clock::Instant;
use crate::engine::TargetProvider;
use crate::value::{self, Value};

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

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.rows += o.rows;
        self.created += o.created;
        self.linked += o.linked;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.unmatched += o.unmatched;
        self.failed += o.failed;
    }
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
/// Rows per batch transaction: large enough that commits do not dominate, small enough that
/// a worker does not hold the write lock for long.
const BATCH: usize = 2000;

pub struct Options<'a> {
    pub threads: usize,
    pub now: Instant,
    /// Called with the number of rows done after each batch.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Called once with the total, when it is known (`--from-target`).
    pub total: &'a (dyn Fn(u64) + Sync),
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
}

/// The plan of one run: the process, its fields, and the in-memory match indexes.
struct Plan {
    process: String,
    bundle_hash: String,
    fields: Vec<Field>,
    /// Column index in the source of each field.
    columns: Vec<usize>,
    width: usize,
    actions: [ReconAction; 4],
    /// Normalised composite key → accounts of the process.
    accounts: HashMap<String, Vec<i64>>,
    /// Normalised composite key → user logins.
    users: HashMap<String, Vec<String>>,
    /// Whether every key field identifies a user, so that entity matching is possible.
    entity_matching: bool,
    /// Form fields filled from user attributes, for accounts created by `link`/`create`.
    from_user: Vec<(String, String)>,
    defaults: Vec<(String, String)>,
}

fn normalise(f: &Field, text: &str) -> String {
    if f.case_insensitive {
        text.trim().to_lowercase()
    } else {
        text.trim().to_string()
    }
}

/// Joins key parts with a separator no CSV value contains in practice (unit separator).
fn join_key(parts: &[String]) -> String {
    parts.join("\u{1f}")
}

fn plan(conn: &rusqlite::Connection, bundle: &Bundle, process: &ir::Process) -> Result<Plan, ReconError> {
    let recon = process.recon.as_ref().ok_or_else(|| ReconError::NoRecon(process.name.clone()))?;
    let mut fields = Vec::new();
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
        fields.push(Field {
            name: f.name.clone(),
            ty: f.ty,
            maps_to: f.maps_to.clone(),
            key: f.key,
            case_insensitive: f.case_insensitive,
            values: f.values.clone(),
            user_attribute,
        });
    }
    let keys: Vec<&Field> = fields.iter().filter(|f| f.key).collect();
    let entity_matching = !keys.is_empty() && keys.iter().all(|f| f.user_attribute.is_some());

    // Accounts: the newest of each user for this process, with the key values.
    let mut select = Vec::new();
    for f in &keys {
        select.push(match &f.maps_to {
            ReconTarget::Form(x) => format!("json_extract(a.form, '$.\"{}\"')", x.replace('\'', "''").replace('"', "")),
            ReconTarget::User(a) if a == "usr_login" => "a.user_login".to_string(),
            ReconTarget::User(a) => {
                format!("json_extract(u.attributes, '$.\"{}\"')", a.replace('\'', "''").replace('"', ""))
            }
            ReconTarget::ObjectStatus => "a.status".to_string(),
        });
    }
    let mut accounts: HashMap<String, Vec<i64>> = HashMap::new();
    if !keys.is_empty() {
        let sql = format!(
            "SELECT a.id, {} FROM accounts a JOIN users u ON u.login = a.user_login
             WHERE a.process = ?1 AND a.id IN (SELECT max(id) FROM accounts WHERE process = ?1 GROUP BY user_login)",
            select.join(", ")
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([&process.name])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let mut parts = Vec::with_capacity(keys.len());
            for (i, f) in keys.iter().enumerate() {
                let v: Option<String> = r.get::<_, Option<rusqlite::types::Value>>(i + 1)?.and_then(sql_text);
                parts.push(normalise(f, v.as_deref().unwrap_or("")));
            }
            accounts.entry(join_key(&parts)).or_default().push(id);
        }
    }
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    if entity_matching {
        let select: Vec<String> = keys
            .iter()
            .map(|f| match f.user_attribute.as_deref() {
                Some("usr_login") | None => "login".to_string(),
                Some(a) => format!("json_extract(attributes, '$.\"{}\"')", a.replace('\'', "''").replace('"', "")),
            })
            .collect();
        let sql = format!("SELECT login, {} FROM users WHERE status <> 'Deleted'", select.join(", "));
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let login: String = r.get(0)?;
            let mut parts = Vec::with_capacity(keys.len());
            for (i, f) in keys.iter().enumerate() {
                let v: Option<String> = r.get::<_, Option<rusqlite::types::Value>>(i + 1)?.and_then(sql_text);
                parts.push(normalise(f, v.as_deref().unwrap_or("")));
            }
            users.entry(join_key(&parts)).or_default().push(login);
        }
    }
    Ok(Plan {
        process: process.name.clone(),
        bundle_hash: bundle.hash.clone(),
        columns: (0..fields.len()).collect(),
        width: fields.len(),
        fields,
        actions: [recon.no_match, recon.one_entity_match, recon.one_process_match, recon.multiple_matches],
        accounts,
        users,
        entity_matching,
        from_user: process
            .form
            .fields
            .iter()
            .filter(|f| !f.ty.is_secret())
            .filter_map(|f| f.from_user.clone().map(|a| (f.name.clone(), a)))
            .collect(),
        defaults: process
            .form
            .fields
            .iter()
            .filter(|f| !f.ty.is_secret())
            .filter_map(|f| f.default.clone().map(|d| (f.name.clone(), d)))
            .collect(),
    })
}

fn sql_text(v: rusqlite::types::Value) -> Option<String> {
    match v {
        rusqlite::types::Value::Null => None,
        rusqlite::types::Value::Integer(i) => Some(i.to_string()),
        rusqlite::types::Value::Real(d) => Some(d.to_string()),
        rusqlite::types::Value::Text(t) => Some(t),
        rusqlite::types::Value::Blob(_) => None,
    }
}

/// A row after validation: what it says, typed.
struct Checked {
    key_display: String,
    key: String,
    /// Form field → stored text.
    form: Vec<(String, String)>,
    /// User attribute (non-key) → text.
    user: Vec<(String, String)>,
    status: Option<ObjectStatus>,
}

/// Validates a row: column count, types, status values. Every problem of the row at once.
fn check(plan: &Plan, record: &[String]) -> Result<Checked, String> {
    let mut problems = Vec::new();
    let mut key_parts = Vec::new();
    let mut key_display = Vec::new();
    let mut form = Vec::new();
    let mut user = Vec::new();
    let mut status = None;
    for (col, f) in plan.fields.iter().enumerate() {
        let raw = record.get(col).map(String::as_str).unwrap_or("").trim();
        if raw.is_empty() {
            if f.key {
                problems.push(format!("the key `{}` is empty", f.name));
            }
            continue;
        }
        let typed = match value::typed(f.ty, raw) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("`{}`: {e}", f.name));
                continue;
            }
        };
        let text = match &typed {
            Value::Text(t) => t.clone(),
            other => other.display(),
        };
        if f.key {
            key_parts.push(normalise(f, &text));
            key_display.push(text.clone());
        }
        match &f.maps_to {
            ReconTarget::Form(x) => form.push((x.clone(), text)),
            ReconTarget::User(a) if !f.key => user.push((a.clone(), text)),
            ReconTarget::User(_) => {}
            ReconTarget::ObjectStatus => {
                let found = f
                    .values
                    .get(&text)
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
    Ok(Checked { key_display: key_display.join(","), key: join_key(&key_parts), form, user, status })
}

/// What matching decided for a row.
enum Decision {
    Account(i64, ReconAction, &'static str),
    User(String, ReconAction),
    Nothing(ReconAction, &'static str),
}

fn decide(plan: &Plan, c: &Checked) -> Decision {
    let [no_match, one_entity, one_process, multiple] = plan.actions;
    match plan.accounts.get(&c.key).map(Vec::as_slice) {
        Some([id]) => return Decision::Account(*id, one_process, "one process match"),
        Some(ids) if ids.len() > 1 => return Decision::Nothing(multiple, "multiple matches"),
        _ => {}
    }
    if plan.entity_matching {
        match plan.users.get(&c.key).map(Vec::as_slice) {
            Some([login]) => return Decision::User(login.clone(), one_entity),
            Some(l) if l.len() > 1 => return Decision::Nothing(multiple, "multiple matches"),
            _ => {}
        }
    }
    Decision::Nothing(no_match, "no match")
}

fn action_name(a: ReconAction) -> &'static str {
    match a {
        ReconAction::None => "none",
        ReconAction::Create => "create",
        ReconAction::Link => "link",
        ReconAction::Update => "update",
    }
}

/// A row ready for a worker: its line and its values in field order, or why it could not be
/// read (wrong column count, invalid UTF-8).
type Row = (u64, Result<Vec<String>, String>);

struct Event<'a> {
    line: u64,
    key: Option<&'a str>,
    outcome: &'a str,
    action: &'a str,
    account: Option<i64>,
    changes: String,
    error: Option<&'a str>,
}

fn record(tx: &rusqlite::Connection, run: i64, now: Instant, e: &Event<'_>) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO recon_events(run_id, line, key, outcome, action, account_id, changes, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    stmt.execute(params![run, e.line as i64, e.key, e.outcome, e.action, e.account, e.changes, e.error, now])?;
    Ok(())
}

/// Applies `c` to account `id`: only what differs. Returns the changes as JSON, empty if none.
fn apply_update(conn: &rusqlite::Connection, id: i64, c: &Checked, now: Instant) -> rusqlite::Result<String> {
    let (form_text, status, login): (String, String, String) = conn
        .prepare_cached("SELECT form, status, user_login FROM accounts WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let mut form: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&form_text).unwrap_or_default();
    let mut changes = serde_json::Map::new();
    for (name, text) in &c.form {
        let current = form.get(name).and_then(|v| v.as_str());
        if current != Some(text.as_str()) {
            changes.insert(format!("form.{name}"), serde_json::json!({ "from": current, "to": text }));
            form.insert(name.clone(), serde_json::Value::String(text.clone()));
        }
    }
    let new_status = c.status.filter(|s| s.as_str() != status && *s != ObjectStatus::None);
    if let Some(s) = new_status {
        changes.insert("OIM_OBJECT_STATUS".into(), serde_json::json!({ "from": status, "to": s.as_str() }));
    }
    if changes.keys().any(|k| k.starts_with("form.")) || new_status.is_some() {
        conn.prepare_cached(
            "UPDATE accounts SET form = ?2, status = coalesce(?3, status), updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id,
            serde_json::Value::Object(form).to_string(),
            new_status.map(|s| s.as_str()),
            now
        ])?;
    }
    if !c.user.is_empty() {
        let attrs: String =
            conn.prepare_cached("SELECT attributes FROM users WHERE login = ?1")?.query_row([&login], |r| r.get(0))?;
        let mut map: BTreeMap<String, String> = serde_json::from_str(&attrs).unwrap_or_default();
        let mut changed = false;
        for (a, text) in &c.user {
            if map.get(a) != Some(text) {
                changes.insert(format!("user.{a}"), serde_json::json!({ "from": map.get(a), "to": text }));
                map.insert(a.clone(), text.clone());
                changed = true;
            }
        }
        if changed {
            conn.prepare_cached("UPDATE users SET attributes = ?2, updated_at = ?3 WHERE login = ?1")?
                .execute(params![login, serde_json::to_string(&map).unwrap_or_default(), now])?;
        }
    }
    Ok(if changes.is_empty() { String::new() } else { serde_json::Value::Object(changes).to_string() })
}

/// Creates the account of `login` that the target already has. Returns its id and changes.
fn create_account(
    conn: &rusqlite::Connection,
    plan: &Plan,
    login: &str,
    c: &Checked,
    now: Instant,
) -> rusqlite::Result<(i64, String)> {
    let attrs: String =
        conn.prepare_cached("SELECT attributes FROM users WHERE login = ?1")?.query_row([login], |r| r.get(0))?;
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
    for (name, text) in &c.form {
        form.insert(name.clone(), serde_json::Value::String(text.clone()));
    }
    let status = c.status.filter(|s| *s != ObjectStatus::None).unwrap_or(ObjectStatus::Provisioned);
    conn.prepare_cached(
        "INSERT INTO accounts(process, user_login, bundle_hash, status, form, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![plan.process, login, plan.bundle_hash, status.as_str(), serde_json::Value::Object(form.clone()).to_string(), now])?;
    let id = conn.last_insert_rowid();
    let changes =
        serde_json::json!({ "account": { "to": id }, "OIM_OBJECT_STATUS": { "to": status.as_str() }, "form": form });
    Ok((id, changes.to_string()))
}

struct Worker<'a> {
    plan: &'a Plan,
    run: i64,
    now: Instant,
}

impl Worker<'_> {
    /// Processes one batch in one transaction, each row in its own savepoint.
    fn batch(
        &self,
        conn: &mut rusqlite::Connection,
        rows: &[Row],
        bad: &mut Vec<BadRow>,
    ) -> Result<Summary, ReconError> {
        // Validation and matching need no lock: done before the write transaction starts.
        let checked: Vec<(u64, Result<Checked, String>)> = rows
            .iter()
            .map(|(line, rec)| (*line, rec.as_ref().map_err(Clone::clone).and_then(|r| check(self.plan, r))))
            .collect();
        let mut s = Summary::default();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (line, c) in &checked {
            s.rows += 1;
            let c = match c {
                Ok(c) => c,
                Err(e) => {
                    s.failed += 1;
                    if bad.len() < BAD_ROWS_KEPT {
                        bad.push(BadRow { line: *line, error: e.clone() });
                    }
                    record(
                        &tx,
                        self.run,
                        self.now,
                        &Event {
                            line: *line,
                            key: None,
                            outcome: "bad row",
                            action: "skipped",
                            account: None,
                            changes: "{}".into(),
                            error: Some(e),
                        },
                    )?;
                    continue;
                }
            };
            tx.execute_batch("SAVEPOINT recon_row")?;
            let result = self.apply(&tx, c, *line, &mut s);
            match result {
                Ok(()) => tx.execute_batch("RELEASE recon_row")?,
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO recon_row; RELEASE recon_row")?;
                    s.failed += 1;
                    let msg = e.to_string();
                    if bad.len() < BAD_ROWS_KEPT {
                        bad.push(BadRow { line: *line, error: msg.clone() });
                    }
                    record(
                        &tx,
                        self.run,
                        self.now,
                        &Event {
                            line: *line,
                            key: Some(&c.key_display),
                            outcome: "failed",
                            action: "skipped",
                            account: None,
                            changes: "{}".into(),
                            error: Some(&msg),
                        },
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(s)
    }

    fn apply(&self, conn: &rusqlite::Connection, c: &Checked, line: u64, s: &mut Summary) -> rusqlite::Result<()> {
        let key = Some(c.key_display.as_str());
        let ev = |outcome: &'static str, action: &'static str, account: Option<i64>, changes: String| Event {
            line,
            key,
            outcome,
            action,
            account,
            changes: if changes.is_empty() { "{}".into() } else { changes },
            error: None,
        };
        match decide(self.plan, c) {
            Decision::Account(id, action, outcome) => match action {
                ReconAction::Update | ReconAction::Link | ReconAction::Create => {
                    let changes = apply_update(conn, id, c, self.now)?;
                    if changes.is_empty() {
                        s.unchanged += 1;
                        record(conn, self.run, self.now, &ev(outcome, "no change", Some(id), String::new()))
                    } else {
                        s.updated += 1;
                        record(conn, self.run, self.now, &ev(outcome, action_name(action), Some(id), changes))
                    }
                }
                ReconAction::None => {
                    s.unmatched += 1;
                    record(conn, self.run, self.now, &ev(outcome, "none", Some(id), String::new()))
                }
            },
            Decision::User(login, action) => {
                // Another row of this run (another worker) may have created it meanwhile.
                let existing: Option<i64> = conn
                    .prepare_cached("SELECT max(id) FROM accounts WHERE process = ?1 AND user_login = ?2")?
                    .query_row(params![self.plan.process, login], |r| r.get(0))
                    .optional()?
                    .flatten();
                match (action, existing) {
                    (ReconAction::None, _) => {
                        s.unmatched += 1;
                        record(conn, self.run, self.now, &ev("one entity match", "none", None, String::new()))
                    }
                    (ReconAction::Update, None) => {
                        s.unmatched += 1;
                        record(
                            conn,
                            self.run,
                            self.now,
                            &ev("one entity match", "none: no account to update", None, String::new()),
                        )
                    }
                    (_, Some(id)) => {
                        let changes = apply_update(conn, id, c, self.now)?;
                        if changes.is_empty() {
                            s.unchanged += 1;
                            record(
                                conn,
                                self.run,
                                self.now,
                                &ev("one process match", "no change", Some(id), String::new()),
                            )
                        } else {
                            s.updated += 1;
                            record(conn, self.run, self.now, &ev("one process match", "update", Some(id), changes))
                        }
                    }
                    (action, None) => {
                        let (id, changes) = create_account(conn, self.plan, &login, c, self.now)?;
                        if action == ReconAction::Create {
                            s.created += 1;
                        } else {
                            s.linked += 1;
                        }
                        record(
                            conn,
                            self.run,
                            self.now,
                            &ev("one entity match", action_name(action), Some(id), changes),
                        )
                    }
                }
            }
            Decision::Nothing(action, outcome) => {
                s.unmatched += 1;
                let action = match action {
                    ReconAction::None => "none",
                    // Nothing to link to, update, or own a created account.
                    _ => "none: no single user or account to apply it to",
                };
                record(conn, self.run, self.now, &ev(outcome, action, None, String::new()))
            }
        }
    }
}

fn open_conn(path: &Path) -> Result<rusqlite::Connection, ReconError> {
    let conn = rusqlite::Connection::open(path).map_err(|e| ReconError::Store(e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// Reconciles `process` from `source` into the state store at `state`. The bundle must
/// already be saved in the store (accounts reference it).
pub fn reconcile(
    state: &Path,
    bundle: &Bundle,
    process_name: &str,
    source: Source,
    targets: &mut dyn TargetProvider,
    options: &Options<'_>,
) -> Result<Outcome, ReconError> {
    let process =
        bundle.process(process_name).map(|(_, p)| p).ok_or_else(|| ReconError::NoRecon(process_name.to_string()))?;
    let conn = open_conn(state)?;
    let mut plan = plan(&conn, bundle, process)?;
    let mut warnings = Vec::new();
    let source_name = match &source {
        Source::Csv(p) => format!("csv:{}", p.display()),
        Source::Target => {
            format!("target:{}", bundle.targets.get(process.target).map(|t| t.name.as_str()).unwrap_or("?"))
        }
    };
    conn.execute(
        "INSERT INTO recon_runs(process, source, started_at) VALUES (?1, ?2, ?3)",
        params![process.name, source_name, options.now],
    )?;
    let run = conn.last_insert_rowid();

    // The source is opened (and its header checked) before any worker starts.
    let feed = match source {
        Source::Csv(path) => {
            let display = path.display().to_string();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
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
            FeedKind::Csv(reader, display)
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
            let target = targets
                .open(bundle, process.target)
                .map_err(|e| ReconError::Query { process: process.name.clone(), error: e.to_string() })?;
            let outcome = target
                .call(query, &values)
                .map_err(|e| ReconError::Query { process: process.name.clone(), error: e.to_string() })?;
            let rows: Vec<Row> = outcome
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let rec = plan
                        .fields
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
                        .collect();
                    (i as u64 + 1, Ok(rec))
                })
                .collect();
            (options.total)(rows.len() as u64);
            FeedKind::Rows(rows)
        }
    };
    drop(conn);

    let threads = options.threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<Vec<Row>>(threads * 2);
    let rx = Arc::new(Mutex::new(rx));
    let plan = &plan;
    let results: Vec<Result<(Summary, Vec<BadRow>), ReconError>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            handles.push(scope.spawn(move || -> Result<(Summary, Vec<BadRow>), ReconError> {
                let mut conn = open_conn(state)?;
                let worker = Worker { plan, run, now: options.now };
                let mut total = Summary::default();
                let mut bad = Vec::new();
                loop {
                    let batch = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => break,
                    };
                    let Ok(batch) = batch else { break };
                    let s = worker.batch(&mut conn, &batch, &mut bad)?;
                    (options.progress)(s.rows);
                    total.add(&s);
                }
                Ok((total, bad))
            }));
        }
        let feed_result = feed_rows(feed, plan, &tx);
        drop(tx);
        let mut out: Vec<Result<(Summary, Vec<BadRow>), ReconError>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(ReconError::Store("a worker panicked".into()))))
            .collect();
        if let Err(e) = feed_result {
            out.push(Err(e));
        }
        out
    });
    let mut summary = Summary { run, ..Summary::default() };
    let mut bad_rows = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((s, b)) => {
                summary.add(&s);
                bad_rows.extend(b);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    bad_rows.sort_by_key(|b| b.line);
    bad_rows.truncate(BAD_ROWS_KEPT);
    let conn = open_conn(state)?;
    conn.execute(
        "UPDATE recon_runs SET finished_at = ?2, summary = ?3 WHERE id = ?1",
        params![run, options.now, serde_json::to_string(&summary).unwrap_or_default()],
    )?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Outcome { summary, bad_rows, warnings })
}

enum FeedKind {
    Csv(csv::Reader<std::fs::File>, String),
    Rows(Vec<Row>),
}

/// Sends the source's rows to the workers in batches.
fn feed_rows(feed: FeedKind, plan: &Plan, tx: &mpsc::SyncSender<Vec<Row>>) -> Result<(), ReconError> {
    {
        let mut batch: Vec<Row> = Vec::with_capacity(BATCH);
        let send = |batch: &mut Vec<Row>| -> bool {
            let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
            tx.send(full).is_ok()
        };
        match feed {
            FeedKind::Rows(rows) => {
                for r in rows {
                    batch.push(r);
                    if batch.len() == BATCH && !send(&mut batch) {
                        return Ok(());
                    }
                }
            }
            FeedKind::Csv(mut reader, path) => {
                let mut record = csv::StringRecord::new();
                loop {
                    let line;
                    match reader.read_record(&mut record) {
                        Ok(false) => break,
                        Ok(true) => {
                            line = record.position().map(|p| p.line()).unwrap_or(0);
                            // Values in field order; a short row keeps its length so that
                            // `check` reports the column count.
                            let values = if record.len() == plan.width {
                                Ok(plan.columns.iter().map(|&i| record.get(i).unwrap_or("").to_string()).collect())
                            } else {
                                Err(format!("{} columns where the header has {}", record.len(), plan.width))
                            };
                            batch.push((line, values));
                        }
                        Err(e) => {
                            // Invalid UTF-8 and the like: the row is reported, the rest goes on.
                            let line = e.position().map(|p| p.line()).unwrap_or(0);
                            if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                                return Err(ReconError::Read { path, error: e.to_string() });
                            }
                            batch.push((line, Err(format!("unreadable row: {e}"))));
                        }
                    }
                    if batch.len() == BATCH && !send(&mut batch) {
                        return Ok(());
                    }
                }
            }
        }
        if !batch.is_empty() {
            send(&mut batch);
        }
        Ok(())
    }
}

/// One recorded reconciliation event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    pub run: i64,
    pub line: i64,
    pub key: Option<String>,
    pub outcome: String,
    pub action: String,
    pub account: Option<i64>,
    pub changes: serde_json::Value,
    pub error: Option<String>,
}

/// The events of run `run`, or of the newest run. Returns the run id too (`None`: no runs).
pub fn events(
    store: &crate::store::SqliteStore,
    run: Option<i64>,
) -> Result<(Option<i64>, Vec<EventRecord>), ReconError> {
    let conn = store.connection();
    let run = match run {
        Some(r) => Some(r),
        None => conn.query_row("SELECT max(id) FROM recon_runs", [], |r| r.get::<_, Option<i64>>(0))?,
    };
    let Some(run) = run else { return Ok((None, vec![])) };
    let mut stmt = conn.prepare(
        "SELECT run_id, line, key, outcome, action, account_id, changes, error FROM recon_events WHERE run_id = ?1 ORDER BY line, id",
    )?;
    let rows = stmt.query_map([run], |r| {
        let changes: String = r.get(6)?;
        Ok(EventRecord {
            run: r.get(0)?,
            line: r.get(1)?,
            key: r.get(2)?,
            outcome: r.get(3)?,
            action: r.get(4)?,
            account: r.get(5)?,
            changes: serde_json::from_str(&changes).unwrap_or(serde_json::Value::Null),
            error: r.get(7)?,
        })
    })?;
    Ok((Some(run), rows.collect::<Result<_, _>>()?))
}

#[cfg(test)]
#[path = "recon_tests.rs"]
mod tests;
