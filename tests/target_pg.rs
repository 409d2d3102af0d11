//! The PostgreSQL target against a real server (PROVFLOW_TEST_PG_URL): the DBUM procedures of
//! definitions/dbum, their effects in the catalog, OUT/INOUT values, SQLSTATE mapping,
//! install errors with file:line, timeouts, reconnection, and credentials kept out of errors.
//!
//! Roles are cluster-wide, so every name carries this process's id and is dropped at the end.

use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment, ValueType};
use provflow_runner::target::install::{self, ExecuteStatement};
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::{Target, TargetError};
use provflow_runner::value::{Secret, Value};
use provflow_tests::database_url;
use std::collections::BTreeMap;
use std::time::Duration;

mod pg_scram;

mod target_common;
use target_common::{dbum_queries, query, text, values};

const VAR: &str = "PROVFLOW_TEST_PG_URL";

fn connect(url: &str) -> PostgresTarget {
    PostgresTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

fn scalar(t: &mut PostgresTarget, sql: &str) -> Option<Value> {
    t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Drops the test's roles and DBUM rows even when an assertion failed.
struct Cleanup<'a> {
    url: &'a str,
    statements: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = PostgresTarget::connect(self.url, &Timeouts::default()) {
            for s in &self.statements {
                let _ = t.execute_statement(s);
            }
        }
    }
}

use pg_scram::scram_accepts;

fn response_code(q: &ir::Query, e: &TargetError) -> Option<String> {
    e.response(q).cloned()
}

#[test]
fn dbum_procedures_provision_a_postgres_role() {
    let Some(url) = database_url(VAR) else { return };
    let (set, script) = dbum_queries("dbum-postgres", "dbum-postgres.sql");
    let mut t = connect(&url);
    let pid = std::process::id();
    let name = format!("pf{pid}_jdoe");
    let _cleanup = Cleanup {
        url: &url,
        statements: vec![
            format!("DROP ROLE IF EXISTS {name}"),
            format!("DELETE FROM dbum_users WHERE username = '{name}'"),
        ],
    };

    // Installing twice is harmless.
    for _ in 0..2 {
        let n = install::install_script(&mut t, "dbum-postgres.sql", &script, Dialect::Postgres)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 10, "{n} statements");
    }
    t.install(&script).unwrap();

    // The live catalog matches every call of the query set; a misspelled call does not.
    let findings = provflow_runner::target::catalog::check(&mut t, &set).unwrap();
    assert_eq!(findings, vec![], "catalog findings");
    let mut broken = set.clone();
    if let Some(call) = broken.queries.iter_mut().find(|q| q.name == "ENABLE_USER").and_then(|q| q.call.as_mut()) {
        call.procedure = "enable_usr".into();
    }
    let findings = provflow_runner::target::catalog::check(&mut t, &broken).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].help.as_deref(), Some("did you mean `enable_user`?"));

    let create = query(&set, "CREATE_PASSWORD_USER");
    let pw = "Initial-pw'1\\";
    // Upper case in, lower case role: the procedures fold names like PostgreSQL does.
    let args =
        values(create, &[("__NAME__", text(&name.to_uppercase())), ("__PASSWORD__", Value::Secret(Secret::new(pw)))]);
    let outcome = t.call(create, &args).unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.outputs.is_empty());
    let role_exists = format!("select count(*) from pg_roles where rolname = '{name}'");
    assert_eq!(scalar(&mut t, &role_exists), Some(Value::Int(1)));
    let can_login = format!("select rolcanlogin from pg_roles where rolname = '{name}'");
    assert_eq!(scalar(&mut t, &can_login), Some(Value::Bool(true)));
    assert!(scram_accepts(&mut t, &name, pw), "the stored verifier does not accept the password");
    assert!(!scram_accepts(&mut t, &name, "wrong"), "the verifier accepts any password");

    // A second create is 42710, which the query set maps to DUPLICATE.
    let err = t.call(create, &args).unwrap_err();
    assert_eq!(err.sqlstate.as_deref(), Some("42710"), "{err}");
    assert_eq!(response_code(create, &err).as_deref(), Some("DUPLICATE"));
    assert!(!err.message.contains(pw), "{err}");

    let by_name = |q: &str| values(query(&set, q), &[("__NAME__", text(&name))]);
    t.call(query(&set, "DISABLE_USER"), &by_name("DISABLE_USER")).unwrap();
    assert_eq!(scalar(&mut t, &can_login), Some(Value::Bool(false)));
    t.call(query(&set, "ENABLE_USER"), &by_name("ENABLE_USER")).unwrap();
    assert_eq!(scalar(&mut t, &can_login), Some(Value::Bool(true)));

    // The OUT parameter `response` is the response code.
    let reset = query(&set, "RESET_PASSWORD");
    let new_pw = "N3w \"pw\" $$ --";
    let out = t
        .call(reset, &values(reset, &[("__NAME__", text(&name)), ("__PASSWORD__", Value::Secret(Secret::new(new_pw)))]))
        .unwrap();
    assert_eq!(out.outputs.get("response"), Some(&text("SUCCESS")));
    assert!(scram_accepts(&mut t, &name, new_pw));
    assert!(!scram_accepts(&mut t, &name, pw));
    let missing = format!("pf{pid}_nobody");
    let out = t
        .call(reset, &values(reset, &[("__NAME__", text(&missing)), ("__PASSWORD__", Value::Secret(Secret::new("x")))]))
        .unwrap();
    assert_eq!(out.outputs.get("response"), Some(&text("NO_SUCH_USER")));

    let profile = query(&set, "SET_PROFILE");
    t.call(profile, &values(profile, &[("__NAME__", text(&name)), ("__PROFILE__", text("O'Brien \\ profile"))]))
        .unwrap();
    assert_eq!(
        scalar(&mut t, &format!("select profile from dbum_users where username = '{name}'")),
        Some(text("O'Brien \\ profile"))
    );

    let grant = query(&set, "GRANT_ROLE");
    let member = format!("select count(*) from pg_auth_members m join pg_roles r on r.oid = m.roleid join pg_roles u on u.oid = m.member where r.rolname = 'dbum_read' and u.rolname = '{name}'");
    t.call(grant, &values(grant, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    t.call(grant, &values(grant, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    assert_eq!(scalar(&mut t, &member), Some(Value::Int(1)));
    let err = t.call(grant, &values(grant, &[("__NAME__", text(&name)), ("__ROLE__", text("postgres"))])).unwrap_err();
    assert_eq!(response_code(grant, &err).as_deref(), Some("NO_SUCH_ROLE"), "{err}");
    let revoke = query(&set, "REVOKE_ROLE");
    t.call(revoke, &values(revoke, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    assert_eq!(scalar(&mut t, &member), Some(Value::Int(0)));

    // Rows typed by the query's columns.
    let search = query(&set, "SEARCH_USER");
    let rows = t.call(search, &[]).unwrap().rows;
    let row = rows.iter().find(|r| r.get("username") == Some(&text(&name))).expect("the new account is listed");
    assert_eq!(row.get("enabled"), Some(&Value::Bool(true)));

    let delete = query(&set, "DELETE_USER");
    t.call(delete, &by_name("DELETE_USER")).unwrap();
    assert_eq!(scalar(&mut t, &role_exists), Some(Value::Int(0)));
    let err = t.call(delete, &by_name("DELETE_USER")).unwrap_err();
    assert_eq!(response_code(delete, &err).as_deref(), Some("NO_SUCH_USER"), "{err}");
}

fn param(name: &str, ty: ValueType, mode: ParamMode) -> ir::QueryParam {
    ir::QueryParam { name: name.into(), ty, mode, quoting: Quoting::Bind }
}

fn hand_query(name: &str, segments: Vec<Segment>, params: Vec<ir::QueryParam>, call: Option<ir::Call>) -> ir::Query {
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
        location: ir::Location::default(),
    }
}

#[test]
fn typed_binds_inout_and_out_parameters() {
    let Some(url) = database_url(VAR) else { return };
    let mut t = connect(&url);
    let proc_name = format!("pf{}_typed", std::process::id());
    let _cleanup = Cleanup { url: &url, statements: vec![format!("DROP PROCEDURE IF EXISTS {proc_name}")] };
    t.install(&format!(
        "CREATE OR REPLACE PROCEDURE {proc_name}(IN a integer, INOUT b bigint, OUT c text, IN d date, IN e boolean, \
         IN f double precision, IN g numeric, IN h timestamp, OUT i boolean)\n\
         LANGUAGE plpgsql AS $$\nBEGIN\n  b := b + a;\n  c := format('%s|%s|%s|%s|%s', d, e, f, g, h);\n  i := NOT e;\nEND\n$$;"
    ))
    .unwrap();
    let params = vec![
        param("a", ValueType::Integer, ParamMode::In),
        param("b", ValueType::Long, ParamMode::InOut),
        param("summary", ValueType::String, ParamMode::Out),
        param("d", ValueType::Date, ParamMode::In),
        param("e", ValueType::Boolean, ParamMode::In),
        param("f", ValueType::Double, ParamMode::In),
        param("g", ValueType::Long, ParamMode::In),
        param("h", ValueType::Timestamp, ParamMode::In),
        param("flag", ValueType::Boolean, ParamMode::Out),
    ];
    let mut segments = vec![Segment::Text(format!("CALL {proc_name}("))];
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            segments.push(Segment::Text(", ".into()));
        }
        segments.push(if p.mode == ParamMode::Out { Segment::Out(i) } else { Segment::Bind(i) });
    }
    segments.push(Segment::Text(")".into()));
    let call = ir::Call::positional(proc_name.clone(), (0..params.len()).map(Some).collect());
    let q = hand_query("TYPED", segments, params, Some(call));
    let values = [
        Value::Int(2),
        Value::Int(40),
        Value::Null,
        text("2024-02-29"),
        Value::Bool(true),
        Value::Double(1.5),
        Value::Int(12345678901),
        text("2024-02-29T10:11:12"),
        Value::Null,
    ];
    let out = t.call(&q, &values).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.outputs.get("b"), Some(&Value::Int(42)));
    // The column is named `c` by the procedure; the query calls it `summary`: read by position.
    assert_eq!(out.outputs.get("summary"), Some(&text("2024-02-29|t|1.5|12345678901|2024-02-29 10:11:12")));
    assert_eq!(out.outputs.get("flag"), Some(&Value::Bool(false)));

    // An Integer that does not fit the server's int4 is refused, not truncated.
    let mut too_big = values.clone();
    too_big[0] = Value::Int(1 << 40);
    let err = t.call(&q, &too_big).unwrap_err();
    assert!(err.message.contains("`a`") && err.message.contains("int4"), "{err}");
}

#[test]
fn install_errors_name_the_file_and_line() {
    let Some(url) = database_url(VAR) else { return };
    let mut t = connect(&url);
    let script = "-- a comment\nselect 1;\n\nselect $$;$$;\nCREATE TABLE (;\nselect 2;";
    let err = install::install_script(&mut t, "dbum-postgres.sql", script, Dialect::Postgres).unwrap_err();
    assert_eq!(err.line, 5);
    assert!(err.to_string().starts_with("dbum-postgres.sql:5: syntax error at or near \"(\""), "{err}");
    assert_eq!(err.error.sqlstate.as_deref(), Some("42601"));
    let err = t.install(script).unwrap_err();
    assert!(err.message.starts_with("line 5: syntax error"), "{err}");
}

#[test]
fn statement_timeout_and_reconnect_once() {
    let Some(url) = database_url(VAR) else { return };
    let timeouts =
        Timeouts { statement: Duration::from_millis(300), idle_check: Duration::ZERO, ..Timeouts::default() };
    let mut t = PostgresTarget::connect(&url, &timeouts).unwrap();
    let err = t.query_scalar("select pg_sleep(3)").unwrap_err();
    assert_eq!(err.sqlstate.as_deref(), Some("57014"), "{err}");

    // Another session ends this one; the next use reconnects once and succeeds.
    let pid = scalar(&mut t, "select pg_backend_pid()").unwrap();
    let mut killer = connect(&url);
    assert_eq!(
        scalar(&mut killer, &format!("select pg_terminate_backend({})", pid.display())),
        Some(Value::Bool(true))
    );
    std::thread::sleep(Duration::from_millis(100));
    let again = scalar(&mut t, "select pg_backend_pid()").unwrap();
    assert_ne!(again, pid);
}

#[test]
fn connection_errors_name_the_endpoint_never_the_password() {
    let Some(_url) = database_url(VAR) else { return };
    let timeouts = Timeouts { connect: Duration::from_secs(2), ..Timeouts::default() };
    for url in
        ["postgres://bob:Hunter2%21secret@127.0.0.1:1/db", "postgres://bob@127.0.0.1:1/db?password=Hunter2!secret"]
    {
        let Err(err) = PostgresTarget::connect(url, &timeouts) else { panic!("connected to port 1") };
        assert!(err.message.contains("127.0.0.1:1/db"), "{err}");
        assert!(!err.message.contains("Hunter2"), "{err}");
        assert_eq!(err.sqlstate, None);
    }
    let Err(err) = PostgresTarget::connect("postgres://bob:Hunter2secret@[bad", &timeouts) else { panic!() };
    assert!(!err.message.contains("Hunter2"), "{err}");
}
