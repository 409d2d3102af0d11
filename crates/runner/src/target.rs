//! SQL targets: the databases the runner provisions into. One trait for every dialect; this
//! crate implements SQLite (stored procedures emulated from the query set's `procedures`).

use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::value::{Value, MASK};
use zeroize::Zeroizing;

/// A failed target operation. `message` never holds a bound value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}{}", sqlstate.as_ref().map(|s| format!(" (SQLSTATE {s})")).unwrap_or_default())]
pub struct TargetError {
    /// SQLSTATE (or a SQLSTATE-like code for SQLite), matched against a query's `errors` map.
    pub sqlstate: Option<String>,
    pub message: String,
}

impl TargetError {
    pub fn refused(message: impl Into<String>) -> Self {
        TargetError { sqlstate: None, message: message.into() }
    }

    /// The response code a query's `errors` map gives this error: by SQLSTATE, else by
    /// MariaDB's vendor error number (1396, ...). `None` when the map has neither.
    pub fn response<'q>(&self, query: &'q ir::Query) -> Option<&'q String> {
        self.sqlstate
            .as_ref()
            .and_then(|s| query.errors.get(s))
            .or_else(|| crate::target_mariadb::vendor_code(self).and_then(|c| query.errors.get(c)))
    }
}

/// What a successful call returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOutcome {
    /// OUT parameter values by parameter name.
    pub outputs: BTreeMap<String, Value>,
    /// Result rows (column name → value), for queries that return rows.
    pub rows: Vec<BTreeMap<String, Value>>,
}

/// A database the runner provisions into.
pub trait Target {
    fn dialect(&self) -> Dialect;
    /// Runs `query` with `values[i]` for `query.params[i]` (OUT parameters: `Value::Null`).
    fn call(&mut self, query: &ir::Query, values: &[Value]) -> Result<CallOutcome, TargetError>;
    /// Runs an install script (several statements).
    fn install(&mut self, sql: &str) -> Result<(), TargetError>;
    /// The first column of the first row of `sql` (`None` when no row), for expectations.
    fn query_scalar(&mut self, sql: &str) -> Result<Option<Value>, TargetError>;
}

/// A query rendered for one dialect: SQL text with numbered bind parameters and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// May hold an inlined secret: wiped when dropped.
    pub sql: Zeroizing<String>,
    pub binds: Vec<Value>,
}

impl Rendered {
    /// The SQL and binds as shown in plans: secrets masked, never in the text.
    pub fn display(&self) -> String {
        if self.binds.is_empty() {
            return self.sql.as_str().to_owned();
        }
        let binds: Vec<String> = self
            .binds
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Text(s) => format!("?{}={:?}", i + 1, s),
                other => format!("?{}={}", i + 1, other.display()),
            })
            .collect();
        format!("{}   -- {}", self.sql.as_str(), binds.join(", "))
    }
}

/// Quotes `value` for inlining into SQL text. This is the only path from a value into SQL text.
pub fn quote(value: &Value, quoting: Quoting, dialect: Dialect) -> Result<Zeroizing<String>, TargetError> {
    let shown;
    let text = match value {
        Value::Secret(s) => s.expose(),
        Value::Text(t) => t.as_str(),
        Value::Null => return Err(TargetError::refused("a missing value cannot be inlined into SQL text")),
        other => {
            shown = other.display();
            shown.as_str()
        }
    };
    if text.contains('\0') {
        return Err(TargetError::refused("a value containing a NUL character cannot be sent to the target"));
    }
    Ok(match (quoting, dialect) {
        (Quoting::Bind, _) => return Err(TargetError::refused("a bind parameter is never inlined")),
        (Quoting::Identifier, Dialect::Mariadb) => quoted(text, '`', false),
        (Quoting::Identifier | Quoting::DoubleQuotes, _) => quoted(text, '"', false),
        (Quoting::Quotes, Dialect::Mariadb) => quoted(text, '\'', true),
        (Quoting::Quotes, _) => quoted(text, '\'', false),
    })
}

/// `text` between two `q`s, every `q` inside doubled (and with `backslash`, every `\`). The
/// buffer is sized for the worst case up front and wiped when dropped: an inlined secret is
/// never left behind in an allocation the text outgrew.
pub(crate) fn quoted(text: &str, q: char, backslash: bool) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(2 * text.len() + 2 * q.len_utf8()));
    out.push(q);
    for c in text.chars() {
        if c == q || (backslash && c == '\\') {
            out.push(c);
        }
        out.push(c);
    }
    out.push(q);
    out
}

/// Renders a query's segments: binds become `?N` (`$N` on PostgreSQL), inlined values are
/// quoted. With `mask`, inlined secrets show as `'********'` (for plans).
pub fn render(query: &ir::Query, values: &[Value], dialect: Dialect, mask: bool) -> Result<Rendered, TargetError> {
    let mut sql = sql_buffer(query, values, 8);
    let mut binds = Vec::new();
    for segment in &query.segments {
        match segment {
            Segment::Text(t) => sql.push_str(t),
            Segment::Bind(i) | Segment::Out(i) => {
                let value = values.get(*i).cloned().unwrap_or(Value::Null);
                binds.push(value);
                match dialect {
                    Dialect::Postgres => sql.push_str(&format!("${}", binds.len())),
                    _ => sql.push_str(&format!("?{}", binds.len())),
                }
            }
            Segment::Inline(i) => {
                let param = query.params.get(*i).ok_or_else(|| TargetError::refused("query parameter out of range"))?;
                let value = values.get(*i).cloned().unwrap_or(Value::Null);
                if mask && value.is_secret() {
                    // Validate anyway, so a plan refuses what a run would refuse.
                    quote(&value, param.quoting, dialect)?;
                    sql.push_str(&quote(&Value::Text(MASK.into()), param.quoting, dialect)?);
                } else {
                    sql.push_str(&quote(&value, param.quoting, dialect)?);
                }
            }
        }
    }
    Ok(Rendered { sql, binds })
}

/// An empty buffer for a query's SQL text, sized for the worst case up front (each inlined
/// value quoted with every character doubled, each bind marker up to `per_bind` bytes): the
/// text never reallocates, so an inlined secret is not left behind in an allocation it
/// outgrew, and the buffer is wiped when dropped.
pub(crate) fn sql_buffer(query: &ir::Query, values: &[Value], per_bind: usize) -> Zeroizing<String> {
    let capacity: usize = query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Text(t) => t.len(),
            Segment::Bind(_) | Segment::Out(_) => per_bind,
            Segment::Inline(i) => values.get(*i).map_or(0, inlined_len).max(MASK.len()) * 2 + 8,
        })
        .sum();
    Zeroizing::new(String::with_capacity(capacity))
}

/// The length of a value's text before quoting.
fn inlined_len(value: &Value) -> usize {
    match value {
        Value::Secret(s) => s.expose().len(),
        Value::Text(t) => t.len(),
        other => other.display().len(),
    }
}

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
            std::fs::create_dir_all(parent).map_err(|e| {
                TargetError::refused(format!("cannot create the directory `{}`: {e}", parent.display()))
            })?;
        }
        // The same durability as the state store (see `sqlite_conn::synchronous`): WAL, where
        // a committed call survives a killed process without an fsync per commit.
        let pragmas = format!("PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;", crate::sqlite_conn::synchronous());
        let conn = crate::sqlite_conn::open_wal(path, std::time::Duration::from_secs(10), "", &pragmas)
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

impl crate::sql_script::ExecuteStatement for SqliteTarget {
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
        crate::sql_script::install_lines(self, sql, Dialect::Sqlite)
    }

    fn query_scalar(&mut self, sql: &str) -> Result<Option<Value>, TargetError> {
        let mut stmt = self.conn.prepare(sql).map_err(map_error)?;
        let rows = collect_rows(&mut stmt)?;
        let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
        Ok(rows.first().and_then(|r| names.first().and_then(|n| r.get(n).cloned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Secret;
    use ir::{Location, QueryParam, ValueType};

    fn param(name: &str, ty: ValueType, quoting: Quoting) -> QueryParam {
        QueryParam { name: name.into(), ty, mode: ParamMode::In, quoting }
    }

    pub(crate) fn query(
        name: &str,
        segments: Vec<Segment>,
        params: Vec<QueryParam>,
        call: Option<ir::Call>,
    ) -> ir::Query {
        ir::Query {
            name: name.into(),
            source: String::new(),
            segments,
            params,
            call,
            response_from: None,
            errors: BTreeMap::new(),
            columns: vec![],
            idempotent: false,
            location: Location::default(),
        }
    }

    #[test]
    fn quoting_doubles_quotes_and_refuses_nul() {
        let t = |s: &str| Value::Text(s.into());
        let cases = [
            (t("a\"b"), Quoting::Identifier, Dialect::Sqlite, Some("\"a\"\"b\"")),
            (t("a`b"), Quoting::Identifier, Dialect::Mariadb, Some("`a``b`")),
            (t("it's"), Quoting::Quotes, Dialect::Sqlite, Some("'it''s'")),
            (t("a\\'"), Quoting::Quotes, Dialect::Mariadb, Some("'a\\\\'''")),
            (t("x\"; drop"), Quoting::DoubleQuotes, Dialect::Postgres, Some("\"x\"\"; drop\"")),
            (t("a\0b"), Quoting::Quotes, Dialect::Sqlite, None),
            (Value::Null, Quoting::Quotes, Dialect::Sqlite, None),
        ];
        for (v, q, d, want) in cases {
            assert_eq!(quote(&v, q, d).ok().as_ref().map(|s| s.as_str()), want, "{v:?} {q:?} {d:?}");
        }
    }

    #[test]
    fn plan_rendering_masks_secrets() {
        let q = query(
            "Q",
            vec![
                Segment::Text("CREATE ROLE ".into()),
                Segment::Inline(0),
                Segment::Text(" PASSWORD ".into()),
                Segment::Inline(1),
            ],
            vec![
                param("n", ValueType::String, Quoting::Identifier),
                param("p", ValueType::GuardedString, Quoting::Quotes),
            ],
            None,
        );
        let values = [Value::Text("bob".into()), Value::Secret(Secret::new("pw'1"))];
        let shown = render(&q, &values, Dialect::Postgres, true).unwrap();
        assert_eq!(shown.sql.as_str(), "CREATE ROLE \"bob\" PASSWORD '********'");
        let sent = render(&q, &values, Dialect::Postgres, false).unwrap();
        assert_eq!(sent.sql.as_str(), "CREATE ROLE \"bob\" PASSWORD 'pw''1'");
    }

    /// A text holding an inlined secret is written into a buffer sized up front: it never
    /// grows (growing would leave a copy of the secret in the allocation it left, unwiped).
    #[test]
    fn texts_holding_secrets_never_reallocate() {
        let nasty = "'\\`\"".repeat(50);
        for (q, backslash) in [('\'', true), ('\'', false), ('"', false), ('`', false)] {
            let out = quoted(&nasty, q, backslash);
            assert_eq!(out.capacity(), String::with_capacity(2 * nasty.len() + 2).capacity(), "{q}");
        }
        let q = query(
            "Q",
            vec![Segment::Text("ALTER ROLE x PASSWORD ".into()), Segment::Inline(0), Segment::Bind(1)],
            vec![param("p", ValueType::GuardedString, Quoting::Quotes), param("b", ValueType::String, Quoting::Bind)],
            None,
        );
        let values = [Value::Secret(Secret::new(nasty.clone())), Value::Text("b".into())];
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mariadb] {
            let sent = render(&q, &values, dialect, false).unwrap();
            assert_eq!(sent.sql.capacity(), sql_buffer(&q, &values, 8).capacity(), "{dialect:?}");
        }
    }

    #[test]
    fn emulated_procedure_runs_in_a_savepoint_and_maps_errors() {
        let dir = tempfile::tempdir().unwrap();
        let proc_ = ir::Procedure {
            name: "add".into(),
            params: vec!["usr".into(), "pwd".into()],
            statements: vec![
                "INSERT INTO log(m) VALUES ('Added ' || :usr)".into(),
                "INSERT INTO users(u, p) VALUES (:usr, :pwd)".into(),
            ],
        };
        let mut t = SqliteTarget::open(&dir.path().join("t.db"), vec![proc_]).unwrap();
        t.install("CREATE TABLE users(u TEXT PRIMARY KEY, p TEXT NOT NULL); CREATE TABLE log(m TEXT);").unwrap();
        let q = query(
            "ADD",
            vec![
                Segment::Text("call add(".into()),
                Segment::Bind(0),
                Segment::Text(", ".into()),
                Segment::Bind(1),
                Segment::Text(")".into()),
            ],
            vec![param("n", ValueType::String, Quoting::Bind), param("p", ValueType::GuardedString, Quoting::Bind)],
            Some(ir::Call { procedure: "add".into(), args: vec![Some(0), Some(1)] }),
        );
        let values = [Value::Text("x'); drop table users; --".into()), Value::Secret(Secret::new("pw"))];
        t.call(&q, &values).unwrap();
        let err = t.call(&q, &values).unwrap_err();
        assert_eq!(err.sqlstate.as_deref(), Some("23505"));
        // The failed call left no half: one log row, one user.
        assert_eq!(t.query_scalar("select count(*) from log").unwrap(), Some(Value::Int(1)));
        assert_eq!(t.query_scalar("select count(*) from users").unwrap(), Some(Value::Int(1)));
        let null = [Value::Text("y".into()), Value::Null];
        assert_eq!(t.call(&q, &null).unwrap_err().sqlstate.as_deref(), Some("23502"));
    }
}
