//! SQL targets: the databases the runner provisions into. One trait for every dialect, SQL
//! rendering from the IR's segments, and quoting; one file per database: `sqlite.rs`
//! (stored procedures emulated from the query set's `procedures`), `postgres.rs`,
//! `mariadb.rs`; `catalog.rs` checks calls against a live catalog and `install.rs` runs
//! install scripts. No target imports the state store.

pub mod catalog;
pub mod install;
pub mod mariadb;
pub mod postgres;
pub mod sqlite;

pub use sqlite::{call_sqlite, check_sqlite_url, map_error, sqlite_path, SqliteTarget};

use provflow_ir::{self as ir, Dialect, Quoting, Segment};
use std::collections::BTreeMap;

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
            .or_else(|| crate::target::mariadb::vendor_code(self).and_then(|c| query.errors.get(c)))
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

/// The text `value` is inlined as, borrowed (a secret is not copied): NULL cannot be inlined
/// and NUL cannot be sent.
pub(crate) fn inline_text(value: &Value) -> Result<std::borrow::Cow<'_, str>, TargetError> {
    let text = match value {
        Value::Secret(s) => std::borrow::Cow::Borrowed(s.expose()),
        Value::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
        Value::Null => return Err(TargetError::refused("a missing value cannot be inlined into SQL text")),
        other => std::borrow::Cow::Owned(other.display()),
    };
    if text.contains('\0') {
        return Err(TargetError::refused("a value containing a NUL character cannot be sent to the target"));
    }
    Ok(text)
}

/// Quotes `value` for inlining into SQL text. This is the only path from a value into SQL text.
pub fn quote(value: &Value, quoting: Quoting, dialect: Dialect) -> Result<Zeroizing<String>, TargetError> {
    let text = inline_text(value)?;
    let text = text.as_ref();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Secret;
    use ir::{Location, ParamMode, QueryParam, ValueType};

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
            Some(ir::Call::positional("add", vec![Some(0), Some(1)])),
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
