//! PF316 and PF317 are the servers' own refusals, found at compile time: each case is sent
//! once, as the runner would send it (its own targets and renderer), to the real PostgreSQL
//! and MariaDB, and fails there as the diagnostic says; the fix the diagnostic suggests
//! succeeds. Each case also compiles to its diagnostic. The same holds for PF318 and PF319,
//! another database's syntax and catalogs (the legacy corpus's statements). (PROVFLOW_TEST_PG_URL,
//! PROVFLOW_TEST_MARIADB_URL; skipped without them unless PROVFLOW_REQUIRE_DATABASES=1.)

use provflow_ir::{Location, ParamMode, Query, QueryParam, Quoting, Segment, ValueType};
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::Target;
use provflow_runner::value::{Secret, Value};
use provflow_tests::database_url;

/// A query of `segments` over parameters `(name, type, quoting)`.
fn query(segments: Vec<Segment>, params: &[(&str, ValueType, Quoting)]) -> Query {
    Query {
        name: "Q".into(),
        source: String::new(),
        segments,
        call: None,
        params: params
            .iter()
            .map(|(n, ty, quoting)| QueryParam { name: (*n).into(), ty: *ty, mode: ParamMode::In, quoting: *quoting })
            .collect(),
        response_from: None,
        errors: Default::default(),
        columns: vec![],
        idempotent: false,
        location: Location::default(),
    }
}

fn text(s: &str) -> Segment {
    Segment::Text(s.into())
}

/// The codes `provflow compile` gives the fixture.
fn compiled_codes(fixture: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(fixture);
    let compiled =
        provflow_compiler::compile_paths(&provflow_compiler::source::FsReader, &[root]).expect("the fixture loads");
    compiled.diagnostics.iter().map(|d| d.code.to_string()).collect()
}

#[test]
fn postgres_refuses_what_pf316_and_pf317_report() {
    assert_eq!(compiled_codes("PF316_bind_in_ddl.yaml"), ["PF316"]);
    assert_eq!(compiled_codes("PF317_doublequotes_call_argument.yaml"), ["PF317"]);
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let mut t = PostgresTarget::connect(&url, &Timeouts::default()).unwrap();
    t.install(
        "DROP ROLE IF EXISTS pf316_role;
         CREATE ROLE pf316_role;
         CREATE OR REPLACE PROCEDURE pf317_insert(usr text, pwd text) LANGUAGE plpgsql AS $$ BEGIN END $$;",
    )
    .unwrap();
    let name = [Value::Text("pf316_role".into())];

    // PF316: `DROP ROLE {__NAME__}` as a bind: `DROP ROLE $1`, a syntax error.
    let bound = query(vec![text("DROP ROLE "), Segment::Bind(0)], &[("__NAME__", ValueType::String, Quoting::Bind)]);
    let e = t.call(&bound, &name).unwrap_err();
    assert_eq!(e.sqlstate.as_deref(), Some("42601"), "{e}");
    // The fix: IDENTIFIER inlines a quoted name.
    let named =
        query(vec![text("DROP ROLE "), Segment::Inline(0)], &[("__NAME__", ValueType::String, Quoting::Identifier)]);
    t.call(&named, &name).unwrap();

    // PF317: a DOUBLEQUOTES call argument is a column reference, and the server repeats it.
    let params = [
        ("__NAME__", ValueType::String, Quoting::Bind),
        ("__PASSWORD__", ValueType::GuardedString, Quoting::DoubleQuotes),
    ];
    let quoted =
        query(vec![text("call pf317_insert("), Segment::Bind(0), text(", "), Segment::Inline(1), text(")")], &params);
    let values = [Value::Text("jdoe".into()), Value::Secret(Secret::new("Pf317-s3cret"))];
    let e = t.call(&quoted, &values).unwrap_err();
    assert_eq!(e.sqlstate.as_deref(), Some("42703"), "undefined column: {e}");
    // The fix: no tag, the secret is bound.
    let bound = query(
        vec![text("call pf317_insert("), Segment::Bind(0), text(", "), Segment::Bind(1), text(")")],
        &[("__NAME__", ValueType::String, Quoting::Bind), ("__PASSWORD__", ValueType::GuardedString, Quoting::Bind)],
    );
    t.call(&bound, &values).unwrap();
    t.install("DROP PROCEDURE pf317_insert(text, text);").unwrap();
}

#[test]
fn mariadb_refuses_what_pf316_reports() {
    assert_eq!(compiled_codes("PF316_bind_in_grant_mariadb.yaml"), ["PF316", "PF316"]);
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let mut t = MariadbTarget::connect(&url, &Timeouts::default()).unwrap();
    t.install("DROP ROLE IF EXISTS pf316_r; DROP USER IF EXISTS 'pf316_u'@'%'; CREATE ROLE pf316_r; CREATE USER 'pf316_u'@'%';")
        .unwrap();
    let values = [Value::Text("pf316_r".into()), Value::Text("pf316_u".into())];
    let params = |q: Quoting| [("role", ValueType::String, q), ("__UID__", ValueType::String, q)];
    // `GRANT ? TO ?`: MariaDB's parser refuses it (ER_PARSE_ERROR, SQLSTATE 42000).
    let bound = query(vec![text("GRANT "), Segment::Bind(0), text(" TO "), Segment::Bind(1)], &params(Quoting::Bind));
    let e = t.call(&bound, &values).unwrap_err();
    assert_eq!(e.sqlstate.as_deref(), Some("42000"), "{e}");
    assert!(e.message.contains("syntax"), "{e}");
    // The fix: IDENTIFIER.
    let named =
        query(vec![text("GRANT "), Segment::Inline(0), text(" TO "), Segment::Inline(1)], &params(Quoting::Identifier));
    t.call(&named, &values).unwrap();
    t.install("DROP USER 'pf316_u'@'%'; DROP ROLE pf316_r;").unwrap();
}

/// Sends `sql` (text and `{0}`-style inlined or bound values, as `segments`) and returns the
/// SQLSTATE of the server's refusal.
fn refused(t: &mut dyn Target, q: &Query, values: &[Value]) -> String {
    let e = t.call(q, values).expect_err("the server refuses it");
    e.sqlstate.clone().unwrap_or_else(|| panic!("no SQLSTATE: {e}"))
}

#[test]
fn postgres_refuses_what_pf318_and_pf319_report() {
    assert_eq!(compiled_codes("PF318_oracle_lock_on_postgres.yaml"), ["PF318"]);
    assert_eq!(compiled_codes("PF319_oracle_dictionary_on_postgres.yaml"), ["PF319"]);
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let mut t = PostgresTarget::connect(&url, &Timeouts::default()).unwrap();
    t.install("DROP ROLE IF EXISTS pf318_u; CREATE ROLE pf318_u LOGIN;").unwrap();
    let name = [Value::Text("pf318_u".into()), Value::Secret(Secret::new("Pf318-s3cret"))];
    let params = [
        ("__NAME__", ValueType::String, Quoting::Identifier),
        ("__PASSWORD__", ValueType::GuardedString, Quoting::Quotes),
    ];
    let ident = |before: &str, after: &str| query(vec![text(before), Segment::Inline(0), text(after)], &params);

    // Oracle's lock, password and DB2's grant: syntax errors. The suggested statements run.
    assert_eq!(refused(&mut t, &ident("ALTER USER ", " ACCOUNT LOCK"), &name), "42601");
    t.call(&ident("ALTER ROLE ", " NOLOGIN"), &name).unwrap();
    let oracle_create =
        query(vec![text("CREATE USER "), Segment::Inline(0), text(" IDENTIFIED BY "), Segment::Inline(1)], &params);
    assert_eq!(refused(&mut t, &oracle_create, &name), "42601");
    let password =
        query(vec![text("ALTER ROLE "), Segment::Inline(0), text(" PASSWORD "), Segment::Inline(1)], &params);
    t.call(&password, &name).unwrap();
    assert_eq!(refused(&mut t, &ident("GRANT CONNECT ON DATABASE TO USER ", ""), &name), "42601");
    let bound =
        [("__NAME__", ValueType::String, Quoting::Bind), ("__PASSWORD__", ValueType::GuardedString, Quoting::Bind)];
    let exec = query(vec![text("EXEC sp_addlogin "), Segment::Bind(0), text(", "), Segment::Bind(1)], &bound);
    assert_eq!(refused(&mut t, &exec, &name), "42601");

    // PF319: Oracle's dictionary is not there; PostgreSQL's own catalog answers.
    let dictionary = query(vec![text("SELECT username FROM dba_users WHERE username = "), Segment::Bind(0)], &bound);
    assert_eq!(refused(&mut t, &dictionary, &name), "42P01", "undefined table");
    let own = query(vec![text("SELECT rolname FROM pg_roles WHERE rolname = "), Segment::Bind(0)], &bound);
    assert_eq!(t.call(&own, &name).unwrap().rows.len(), 1);
    t.install("DROP ROLE pf318_u;").unwrap();
}

#[test]
fn mariadb_refuses_what_pf318_and_pf319_report() {
    assert_eq!(compiled_codes("PF318_sybase_procedure_on_mariadb.yaml"), ["PF318"]);
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let mut t = MariadbTarget::connect(&url, &Timeouts::default()).unwrap();
    t.install("DROP USER IF EXISTS 'pf318_u'@'%'; CREATE USER 'pf318_u'@'%';").unwrap();
    let name = [Value::Text("pf318_u".into())];
    let params = [("__NAME__", ValueType::String, Quoting::Identifier)];
    let ident = |before: &str, after: &str| query(vec![text(before), Segment::Inline(0), text(after)], &params);

    // Sybase's lock procedure, Oracle's privilege and tablespace clause: refused. MariaDB's own
    // statements run.
    let bound = [("__NAME__", ValueType::String, Quoting::Bind)];
    let sybase = query(vec![text("sp_locklogin "), Segment::Bind(0), text(", 'lock'")], &bound);
    assert_eq!(refused(&mut t, &sybase, &name), "42000");
    t.call(&ident("ALTER USER ", " ACCOUNT LOCK"), &name).unwrap();
    assert_eq!(refused(&mut t, &ident("GRANT CREATE SESSION TO ", ""), &name), "42000");
    t.call(&ident("GRANT USAGE ON *.* TO ", ""), &name).unwrap();
    assert_eq!(refused(&mut t, &ident("ALTER USER ", " DEFAULT TABLESPACE users"), &name), "42000");
    assert_eq!(refused(&mut t, &ident("GRANT CONNECT ON DATABASE TO USER ", ""), &name), "42000");

    // PF319: SQL Server's `master..syslogins` is not even valid syntax here.
    let sql_server = query(vec![text("SELECT name FROM master..syslogins WHERE name = "), Segment::Bind(0)], &bound);
    assert_eq!(refused(&mut t, &sql_server, &name), "42000");
    t.install("DROP USER 'pf318_u'@'%';").unwrap();
}
