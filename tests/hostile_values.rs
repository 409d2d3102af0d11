//! Hostile values through every parameter type and every tag (bind, IDENTIFIER, DOUBLEQUOTES,
//! QUOTES) on SQLite, PostgreSQL (PROVFLOW_TEST_PG_URL) and MariaDB (PROVFLOW_TEST_MARIADB_URL):
//! each value lands byte-exact or is refused with a TargetError, and a canary table whose name
//! the values try to drop is intact afterwards.

use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment, ValueType};
use provflow_runner::target::install::ExecuteStatement;
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::{SqliteTarget, Target, TargetError};
use provflow_runner::value::{typed, Secret, Value};
use provflow_tests::database_url;
use std::collections::BTreeMap;

fn canary_name() -> String {
    format!("pf{}_canary", std::process::id())
}

fn hostile_values() -> Vec<String> {
    let canary = canary_name();
    let mut v: Vec<String> = [
        "'",
        "\"",
        "`",
        "´",
        "’",
        "‘",
        "“",
        "''",
        "\"\"",
        "``",
        "\\",
        "\\\\",
        "\\'",
        "\\\"",
        "\\`",
        "'\\",
        "\"\\",
        ";",
        "a;b",
        "--",
        "-- comment",
        "/*",
        "*/",
        "/* x */",
        "#",
        "# x",
        "$$",
        "$tag$",
        "$$ || $$",
        "$1",
        "%s",
        "%",
        "_",
        "?",
        "??",
        ":name",
        "@pf_out_1",
        "{__NAME__}",
        "\0",
        "a\0b",
        "😀",
        "👩‍💻",
        "שלום עולם",
        "\u{202E}txet",
        "e\u{301}",
        "\u{FEFF}bom",
        "",
        " ",
        "\t",
        "   ",
        "\r\n",
        "a\rb\nc",
        "'\\''",
        "\\\\'",
        "N'x'",
        "E'\\x41'",
        "x' OR '1'='1",
        "0x41",
        "NULL",
        "\\N",
        "\x1a",
        "\\0",
        "Robert'); DROP TABLE students;--",
        "'; DROP TABLE x; --",
        "\u{7f}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for template in [
        "'; DROP TABLE {c}; --",
        "\"; DROP TABLE {c}; --",
        "`; DROP TABLE {c}; --",
        "\\'; DROP TABLE {c}; --",
        "$$; DROP TABLE {c}; $$",
        "*/ DROP TABLE {c}; /*",
    ] {
        v.push(template.replace("{c}", &canary));
    }
    v.push("x".repeat(10 * 1024));
    v.push("'\\".repeat(5 * 1024));
    v
}

fn param(ty: ValueType, quoting: Quoting) -> ir::QueryParam {
    ir::QueryParam { name: "v".into(), ty, mode: ParamMode::In, quoting }
}

fn q(segments: Vec<Segment>, params: Vec<ir::QueryParam>) -> ir::Query {
    ir::Query {
        name: "HOSTILE".into(),
        source: String::new(),
        segments,
        params,
        call: None,
        response_from: None,
        errors: BTreeMap::new(),
        columns: vec![],
        idempotent: false,
        location: ir::Location::default(),
    }
}

fn text(s: &str) -> Segment {
    Segment::Text(s.to_string())
}

fn value_of(ty: ValueType, s: &str) -> Value {
    if ty == ValueType::GuardedString {
        Value::Secret(Secret::new(s))
    } else {
        Value::Text(s.to_string())
    }
}

/// What came back, or the refusal.
type Outcome = Result<Value, TargetError>;

fn select_value(t: &mut dyn Target, quoting: Quoting, ty: ValueType, v: &str) -> Outcome {
    let slot = if quoting == Quoting::Bind { Segment::Bind(0) } else { Segment::Inline(0) };
    let query = q(vec![text("select "), slot, text(" as v")], vec![param(ty, quoting)]);
    let out = t.call(&query, &[value_of(ty, v)])?;
    Ok(out.rows.first().and_then(|r| r.get("v")).cloned().unwrap_or(Value::Null))
}

/// `select 1 as <v>`: the column's name.
fn select_alias(t: &mut dyn Target, quoting: Quoting, v: &str) -> Outcome {
    let query = q(vec![text("select 1 as "), Segment::Inline(0)], vec![param(ValueType::String, quoting)]);
    let out = t.call(&query, &[Value::Text(v.to_string())])?;
    Ok(out.rows.first().and_then(|r| r.keys().next()).map(|k| Value::Text(k.clone())).unwrap_or(Value::Null))
}

/// Creates an object named by the value (IDENTIFIER), counts the objects of exactly that name
/// through a bind, drops it. Returns the name when exactly one was found.
fn create_named(t: &mut dyn Target, dialect: Dialect, v: &str) -> Outcome {
    let name = format!("pf{}_{v}", std::process::id());
    let (create, count, drop) = match dialect {
        Dialect::Postgres => ("CREATE ROLE ", "select count(*) as n from pg_roles where rolname = ", "DROP ROLE "),
        Dialect::Sqlite => ("CREATE TABLE ", "select count(*) as n from sqlite_master where name = ", "DROP TABLE "),
        Dialect::Mariadb => (
            "CREATE TABLE ",
            "select count(*) as n from information_schema.TABLES where TABLE_SCHEMA = database() and TABLE_NAME = ",
            "DROP TABLE ",
        ),
    };
    let suffix = if dialect == Dialect::Postgres { "" } else { "(x int)" };
    let ident = param(ValueType::String, Quoting::Identifier);
    let value = [Value::Text(name.clone())];
    t.call(&q(vec![text(create), Segment::Inline(0), text(suffix)], vec![ident.clone()]), &value)?;
    let found = t.call(&q(vec![text(count), Segment::Bind(0)], vec![param(ValueType::String, Quoting::Bind)]), &value);
    let dropped = t.call(&q(vec![text(drop), Segment::Inline(0)], vec![ident]), &value);
    let found = found?;
    dropped.unwrap_or_else(|e| panic!("{dialect:?}: cannot drop {name:?}: {e}"));
    let n = found.rows.first().and_then(|r| r.get("n")).cloned();
    Ok(if n == Some(Value::Int(1)) { Value::Text(v.to_string()) } else { Value::Null })
}

/// Whether the server may refuse `v` for an identifier-like use (or change it in a documented
/// way, checked by `acceptable`).
fn identifier_limits(dialect: Dialect, v: &str, prefix_len: usize) -> bool {
    let len = v.len() + prefix_len;
    v.is_empty()
        || v.contains('\0')
        || match dialect {
            Dialect::Postgres => len > 63,
            // Aliases up to 256 characters, table names up to 64; trailing spaces are refused in
            // table names.
            // Identifiers are utf8mb3 there: no characters beyond the BMP (emoji).
            Dialect::Mariadb => {
                v.chars().count() + prefix_len > 64
                    || v.ends_with(' ')
                    || v.ends_with('\t')
                    || v.trim().is_empty()
                    || v.chars().any(|c| u32::from(c) > 0xFFFF)
            }
            Dialect::Sqlite => false,
        }
}

fn check(dialect: Dialect, what: &str, v: &str, outcome: Outcome, may_refuse: bool, landed_as: Option<&str>) {
    let shown: String = v.chars().take(40).collect();
    match outcome {
        Ok(Value::Text(got)) if got == v || landed_as == Some(got.as_str()) => {}
        Ok(other) => panic!("{dialect:?} {what} {shown:?}: landed as {other:?}"),
        Err(e) => {
            assert!(may_refuse, "{dialect:?} {what} {shown:?}: refused: {e}");
            assert!(!e.message.is_empty());
            if v.contains('\0') {
                assert_eq!(e.sqlstate, None, "{dialect:?} {what}: NUL must be refused before sending: {e}");
                assert!(e.message.contains("NUL"), "{e}");
            }
        }
    }
}

fn run(t: &mut dyn Target, dialect: Dialect) -> usize {
    let canary = canary_name();
    let exec = |t: &mut dyn Target, sql: &str| t.query_scalar(sql);
    let _ = exec(t, &format!("DROP TABLE IF EXISTS {canary}"));
    t.call(&q(vec![text(&format!("CREATE TABLE {canary}(x int)"))], vec![]), &[]).unwrap();
    t.call(&q(vec![text(&format!("INSERT INTO {canary} VALUES (1)"))], vec![]), &[]).unwrap();
    let values = hostile_values();
    assert!(values.len() >= 50, "{} values", values.len());
    let prefix = format!("pf{}_", std::process::id()).len();
    let mut checked = 0;
    for v in &values {
        let nul = v.contains('\0');
        // Binds: SQLite stores NUL in text, the network targets refuse it.
        for ty in [ValueType::String, ValueType::GuardedString] {
            let outcome = select_value(t, Quoting::Bind, ty, v);
            check(dialect, &format!("bind {ty:?}"), v, outcome, nul, None);
            let outcome = select_value(t, Quoting::Quotes, ty, v);
            check(dialect, &format!("QUOTES {ty:?}"), v, outcome, nul, None);
            checked += 2;
        }
        // Other types: a hostile text never becomes a value of them, so it never reaches SQL.
        for ty in [
            ValueType::Long,
            ValueType::Integer,
            ValueType::Double,
            ValueType::Boolean,
            ValueType::Date,
            ValueType::Timestamp,
        ] {
            if let Ok(value) = typed(ty, v) {
                let query = q(vec![text("select "), Segment::Bind(0), text(" as v")], vec![param(ty, Quoting::Bind)]);
                let out = t.call(&query, &[value]).unwrap_or_else(|e| panic!("{dialect:?} {ty:?} {v:?}: {e}"));
                assert_eq!(out.rows.len(), 1);
            }
        }
        // DOUBLEQUOTES: an identifier on PostgreSQL and SQLite, a string literal on MariaDB.
        let outcome = if dialect == Dialect::Mariadb {
            select_value(t, Quoting::DoubleQuotes, ValueType::String, v)
        } else {
            select_alias(t, Quoting::DoubleQuotes, v)
        };
        let may_refuse = if dialect == Dialect::Mariadb { nul } else { identifier_limits(dialect, v, 0) };
        check(dialect, "DOUBLEQUOTES", v, outcome, may_refuse, None);
        let outcome = create_named(t, dialect, v);
        check(dialect, "IDENTIFIER", v, outcome, identifier_limits(dialect, v, prefix), None);
        checked += 2;
    }
    assert_eq!(exec(t, &format!("select count(*) from {canary}")).unwrap(), Some(Value::Int(1)), "{dialect:?}: canary");
    t.call(&q(vec![text(&format!("DROP TABLE {canary}"))], vec![]), &[]).unwrap();
    checked
}

#[test]
fn hostile_values_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = SqliteTarget::open(&dir.path().join("hostile.db"), vec![]).unwrap();
    let n = run(&mut t, Dialect::Sqlite);
    assert!(n > 300, "{n}");
}

#[test]
fn hostile_values_on_postgres() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let mut t = PostgresTarget::connect(&url, &Timeouts::default()).unwrap();
    run(&mut t, Dialect::Postgres);
}

#[test]
fn hostile_values_on_mariadb() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let mut t = MariadbTarget::connect(&url, &Timeouts::default()).unwrap();
    run(&mut t, Dialect::Mariadb);
    // The same under NO_BACKSLASH_ESCAPES: quoting follows the session's sql_mode.
    t.execute_statement("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')").unwrap();
    assert!(t.sql_mode().no_backslash_escapes);
    run(&mut t, Dialect::Mariadb);
}
