//! The SQLite target: emulated stored procedures (the query set's `procedures`) run in a
//! SAVEPOINT with named binds, SQLite errors mapped to SQLSTATEs.

use provflow_ir::{self as ir, Dialect, ParamMode};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{render, CallOutcome, Target, TargetError};
use crate::value::Value;

/// Where a SQLite target lives: the `url` given (`sqlite:PATH` or a plain path), else the
/// embedded default `.provflow/targets/<name>.db` under `base`.
pub fn sqlite_path(url: Option<&str>, name: &str, base: &Path) -> PathBuf {
    match url {
        Some(u) => PathBuf::from(u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:")).unwrap_or(u)),
        None => base.join(".provflow").join("targets").join(format!("{name}.db")),
    }
}

/// Refuses, before anything is created, a SQLite target's URL that is another database's URL
/// or DSN (`postgres://...`, `host=... password=...`): it would otherwise become a file name
/// and show its password in every message naming the file.
pub fn check_sqlite_url(name: &str, url: &str) -> Result<(), TargetError> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let other_url = !url.starts_with("sqlite:") && path.contains("://");
    if other_url || !crate::credentials::Credentials::of(url).is_empty() {
        return Err(TargetError::refused(format!(
            "the sqlite target `{name}` takes `sqlite:PATH` or a file path, not `{}`",
            crate::credentials::redact(url)
        )));
    }
    Ok(())
}

/// A SQLite target. `call p(...)` runs the emulated procedure `p` of the query set.
pub struct SqliteTarget {
    conn: rusqlite::Connection,
    procedures: Vec<ir::Procedure>,
    path: PathBuf,
}

impl SqliteTarget {
    pub fn open(path: &Path, procedures: Vec<ir::Procedure>) -> Result<Self, TargetError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::sqlite_conn::private_dir(parent).map_err(|e| {
                TargetError::refused(format!("cannot create the directory `{}`: {e}", parent.display()))
            })?;
        }
        // The same durability as the state store (see `sqlite_conn::synchronous`): WAL, where
        // a committed call survives a killed process without an fsync per commit.
        let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(10), None)
            .map_err(|e| TargetError::refused(format!("cannot open the SQLite target `{}`: {e}", path.display())))?;
        Ok(SqliteTarget { conn, procedures, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs `query` on `conn`: `call p(...)` runs the emulated procedure `p` of `procedures`, any
/// other query its rendered statement. Used by [`SqliteTarget`] and by the state store when a
/// target is the store's own file, so both run a call the same way. A procedure body runs in
/// a SAVEPOINT: a failing statement leaves nothing of the call behind, inside or outside an
/// open transaction.
pub fn call_sqlite(
    conn: &rusqlite::Connection,
    procedures: &[ir::Procedure],
    query: &ir::Query,
    values: &[Value],
) -> Result<CallOutcome, TargetError> {
    match &query.call {
        Some(call) => run_procedure(conn, procedures, query, call, values),
        None => run_statement(conn, query, values),
    }
}

fn run_procedure(
    conn: &rusqlite::Connection,
    procedures: &[ir::Procedure],
    query: &ir::Query,
    call: &ir::Call,
    values: &[Value],
) -> Result<CallOutcome, TargetError> {
    let procedure = procedures.iter().find(|p| p.name == call.procedure).ok_or_else(|| {
        TargetError::refused(format!("no emulated procedure `{}` in this target's query set", call.procedure))
    })?;
    if procedure.params.len() != call.args.len() {
        return Err(TargetError::refused(format!(
            "`{}` takes {} arguments but the call passes {}",
            procedure.name,
            procedure.params.len(),
            call.args.len()
        )));
    }
    let mut named: BTreeMap<&str, &Value> = BTreeMap::new();
    for (position, (name, arg)) in procedure.params.iter().zip(&call.args).enumerate() {
        let Some(index) = arg else {
            return Err(TargetError::refused(format!(
                "argument {} of `{}` is a SQL expression; emulated procedures take placeholders only",
                position + 1,
                procedure.name
            )));
        };
        named.insert(name.as_str(), values.get(*index).unwrap_or(&Value::Null));
    }
    conn.prepare_cached("SAVEPOINT provflow_call").and_then(|mut s| s.execute([])).map_err(map_error)?;
    match run_body(conn, procedure, query, &named) {
        Ok(outcome) => {
            conn.prepare_cached("RELEASE provflow_call").and_then(|mut s| s.execute([])).map_err(map_error)?;
            Ok(outcome)
        }
        Err(e) => {
            // The body's error is the one that matters; a failed rollback surfaces on the
            // next statement of this connection anyway.
            let _ = conn.execute_batch("ROLLBACK TO provflow_call; RELEASE provflow_call");
            Err(e)
        }
    }
}

fn run_body(
    conn: &rusqlite::Connection,
    procedure: &ir::Procedure,
    query: &ir::Query,
    named: &BTreeMap<&str, &Value>,
) -> Result<CallOutcome, TargetError> {
    let mut outcome = CallOutcome::default();
    for statement in &procedure.statements {
        let mut stmt = conn.prepare_cached(statement).map_err(map_error)?;
        for i in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(i).map(|n| n.trim_start_matches([':', '@', '$']));
            let value = name.and_then(|n| named.get(n)).ok_or_else(|| {
                TargetError::refused(format!(
                    "a statement of `{}` uses `{}`, which is not one of its parameters",
                    procedure.name,
                    name.unwrap_or("?")
                ))
            })?;
            stmt.raw_bind_parameter(i, to_sql(value)).map_err(map_error)?;
        }
        if stmt.column_count() > 0 {
            // A row-returning statement of the body supplies OUT values by column name.
            let rows = collect_rows(&mut stmt)?;
            if let Some(first) = rows.first() {
                for p in query.params.iter().filter(|p| p.mode != ParamMode::In) {
                    if let Some(v) = first.get(&p.name) {
                        outcome.outputs.insert(p.name.clone(), v.clone());
                    }
                }
            }
            outcome.rows = rows;
        } else {
            stmt.raw_execute().map_err(map_error)?;
        }
    }
    Ok(outcome)
}

fn run_statement(conn: &rusqlite::Connection, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
    let rendered = render(query, values, Dialect::Sqlite, false)?;
    let mut stmt = conn.prepare(&rendered.sql).map_err(map_error)?;
    for (i, v) in rendered.binds.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, to_sql(v)).map_err(map_error)?;
    }
    let mut outcome = CallOutcome::default();
    if stmt.column_count() > 0 {
        outcome.rows = collect_rows(&mut stmt)?;
    } else {
        stmt.raw_execute().map_err(map_error)?;
    }
    Ok(outcome)
}

pub(crate) fn to_sql(value: &Value) -> ToSqlOutput<'_> {
    match value {
        Value::Null => ToSqlOutput::Owned(SqlValue::Null),
        Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
        Value::Double(d) => ToSqlOutput::Owned(SqlValue::Real(*d)),
        Value::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*b))),
        Value::Secret(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.expose().as_bytes())),
    }
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(d) => Value::Double(d),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Text(format!("<{} bytes>", b.len())),
    }
}

fn collect_rows(stmt: &mut rusqlite::Statement<'_>) -> Result<Vec<BTreeMap<String, Value>>, TargetError> {
    let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_error)? {
        let mut map = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            map.insert(name.clone(), from_sql(row.get_ref(i).map_err(map_error)?));
        }
        out.push(map);
    }
    Ok(out)
}

/// Maps SQLite errors to SQLSTATE-like codes, so that a query's `errors` map works the same
/// way on every dialect. The message is SQLite's, which names constraints, never values.
pub fn map_error(e: rusqlite::Error) -> TargetError {
    use rusqlite::ffi;
    let sqlstate = match &e {
        rusqlite::Error::SqliteFailure(err, _) => match err.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "23505",
            ffi::SQLITE_CONSTRAINT_NOTNULL => "23502",
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
            ffi::SQLITE_CONSTRAINT_CHECK => "23514",
            _ => "HY000",
        },
        _ => "HY000",
    };
    TargetError { sqlstate: Some(sqlstate.to_string()), message: e.to_string() }
}

impl crate::target::install::ExecuteStatement for SqliteTarget {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError> {
        // A single complete statement run as a batch is that statement.
        self.conn.execute_batch(sql).map_err(map_error)
    }
}

impl Target for SqliteTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn call(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError> {
        call_sqlite(&self.conn, &self.procedures, query, values)
    }

    /// Runs the script statement by statement; an error names the statement's line.
    fn install(&mut self, sql: &str) -> Result<(), TargetError> {
        crate::target::install::install_lines(self, sql, Dialect::Sqlite)
    }

    fn query_scalar(&mut self, sql: &str) -> Result<Option<Value>, TargetError> {
        let mut stmt = self.conn.prepare(sql).map_err(map_error)?;
        let rows = collect_rows(&mut stmt)?;
        let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
        Ok(rows.first().and_then(|r| names.first().and_then(|n| r.get(n).cloned())))
    }
}
