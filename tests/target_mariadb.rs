//! The MariaDB target against a real server (PROVFLOW_TEST_MARIADB_URL): the DBUM procedures
//! of definitions/dbum (installed from a script with DELIMITER directives), OUT and INOUT
//! values through session variables, SQLSTATE mapping, effects in mysql.user, install errors
//! with file:line, timeouts, reconnection, credentials kept out of errors.
//!
//! Accounts are server-wide, so every name carries this process's id and is dropped at the end.

use provflow_ir::{self as ir, Dialect, ParamMode, Quoting, Segment, ValueType};
use provflow_runner::target::install::{self, ExecuteStatement};
use provflow_runner::target::mariadb::{vendor_code, MariadbTarget};
use provflow_runner::target::postgres::Timeouts;
use provflow_runner::target::{Target, TargetError};
use provflow_runner::value::{Secret, Value};
use provflow_tests::database_url;
use std::collections::BTreeMap;
use std::time::Duration;

mod target_common;
use target_common::{dbum_queries, query, text, values};

const VAR: &str = "PROVFLOW_TEST_MARIADB_URL";

fn connect(url: &str) -> MariadbTarget {
    MariadbTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

fn scalar(t: &mut MariadbTarget, sql: &str) -> Option<Value> {
    t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn response_code(q: &ir::Query, e: &TargetError) -> Option<String> {
    e.response(q).cloned()
}

struct Cleanup<'a> {
    url: &'a str,
    statements: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = MariadbTarget::connect(self.url, &Timeouts::default()) {
            for s in &self.statements {
                let _ = t.execute_statement(s);
            }
        }
    }
}

#[test]
fn dbum_procedures_provision_a_mariadb_account() {
    let Some(url) = database_url(VAR) else { return };
    let (set, script) = dbum_queries("dbum-mariadb", "dbum-mariadb.sql");
    let mut t = connect(&url);
    let name = format!("pf{}_jdoe", std::process::id());
    let _cleanup = Cleanup {
        url: &url,
        statements: vec![
            format!("DROP USER IF EXISTS '{name}'@'%'"),
            format!("DELETE FROM dbum_users WHERE username = '{name}'"),
        ],
    };
    for _ in 0..2 {
        let n = install::install_script(&mut t, "dbum-mariadb.sql", &script, Dialect::Mariadb)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 15, "{n} statements");
    }

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
    let args =
        values(create, &[("__NAME__", text(&name.to_uppercase())), ("__PASSWORD__", Value::Secret(Secret::new(pw)))]);
    t.call(create, &args).unwrap_or_else(|e| panic!("{e}"));
    let exists = format!("select count(*) from mysql.user where User = '{name}' and Host = '%'");
    assert_eq!(scalar(&mut t, &exists), Some(Value::Int(1)));
    let password_is = |t: &mut MariadbTarget, pw: &str| {
        let literal = pw.replace('\\', "\\\\").replace('\'', "''");
        let sql = format!(
            "select authentication_string = PASSWORD('{literal}') from mysql.user where User = '{name}' and Host = '%'"
        );
        scalar(t, &sql) == Some(Value::Int(1))
    };
    assert!(password_is(&mut t, pw));
    assert!(!password_is(&mut t, "wrong"));

    let err = t.call(create, &args).unwrap_err();
    assert_eq!(err.sqlstate.as_deref(), Some("42710"), "{err}");
    assert_eq!(response_code(create, &err).as_deref(), Some("DUPLICATE"));
    assert!(vendor_code(&err).is_some(), "{err}");
    assert!(!err.message.contains(pw), "{err}");

    let locked = |t: &mut MariadbTarget| match scalar(t, &format!("SHOW CREATE USER '{name}'@'%'")) {
        Some(Value::Text(s)) => s.contains("ACCOUNT LOCK"),
        other => panic!("SHOW CREATE USER: {other:?}"),
    };
    let by_name = |q: &str| values(query(&set, q), &[("__NAME__", text(&name))]);
    assert!(!locked(&mut t));
    t.call(query(&set, "DISABLE_USER"), &by_name("DISABLE_USER")).unwrap();
    assert!(locked(&mut t));
    t.call(query(&set, "ENABLE_USER"), &by_name("ENABLE_USER")).unwrap();
    assert!(!locked(&mut t));

    let reset = query(&set, "RESET_PASSWORD");
    let new_pw = "N3w \"pw\" `x` --";
    let out = t
        .call(reset, &values(reset, &[("__NAME__", text(&name)), ("__PASSWORD__", Value::Secret(Secret::new(new_pw)))]))
        .unwrap();
    assert_eq!(out.outputs.get("response"), Some(&text("SUCCESS")));
    assert!(password_is(&mut t, new_pw));
    // The session variable does not outlive the call.
    assert_eq!(scalar(&mut t, "select @pf_out_3"), Some(Value::Null));
    let out = t
        .call(
            reset,
            &values(reset, &[("__NAME__", text("pf_nobody_here")), ("__PASSWORD__", Value::Secret(Secret::new("x")))]),
        )
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
    let member = format!("select count(*) from mysql.roles_mapping where User = '{name}' and Role = 'dbum_read'");
    t.call(grant, &values(grant, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    assert_eq!(scalar(&mut t, &member), Some(Value::Int(1)));
    let err = t.call(grant, &values(grant, &[("__NAME__", text(&name)), ("__ROLE__", text("root"))])).unwrap_err();
    assert_eq!(response_code(grant, &err).as_deref(), Some("NO_SUCH_ROLE"), "{err}");
    let revoke = query(&set, "REVOKE_ROLE");
    t.call(revoke, &values(revoke, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    t.call(revoke, &values(revoke, &[("__NAME__", text(&name)), ("__ROLE__", text("dbum_read"))])).unwrap();
    assert_eq!(scalar(&mut t, &member), Some(Value::Int(0)));

    let rows = t.call(query(&set, "SEARCH_USER"), &[]).unwrap().rows;
    let row = rows.iter().find(|r| r.get("username") == Some(&text(&name))).expect("the new account is listed");
    assert_eq!(row.get("enabled"), Some(&Value::Bool(true)));

    let delete = query(&set, "DELETE_USER");
    t.call(delete, &by_name("DELETE_USER")).unwrap();
    assert_eq!(scalar(&mut t, &exists), Some(Value::Int(0)));
    let err = t.call(delete, &by_name("DELETE_USER")).unwrap_err();
    assert_eq!(response_code(delete, &err).as_deref(), Some("NO_SUCH_USER"), "{err}");
}

#[test]
fn inout_parameters_through_session_variables() {
    let Some(url) = database_url(VAR) else { return };
    let mut t = connect(&url);
    let proc_name = format!("pf{}_typed", std::process::id());
    let _cleanup = Cleanup { url: &url, statements: vec![format!("DROP PROCEDURE IF EXISTS {proc_name}")] };
    t.install(&format!(
        "DELIMITER //\nCREATE OR REPLACE PROCEDURE {proc_name}(IN a INT, INOUT b BIGINT, OUT c TEXT, IN d DATE, IN e BOOLEAN, OUT i BOOLEAN)\n\
         BEGIN\n  SET b = b + a;\n  SET c = CONCAT_WS('|', d, e);\n  SET i = NOT e;\nEND //\nDELIMITER ;\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let p = |name: &str, ty, mode| ir::QueryParam { name: name.into(), ty, mode, quoting: Quoting::Bind };
    let params = vec![
        p("a", ValueType::Integer, ParamMode::In),
        p("b", ValueType::Long, ParamMode::InOut),
        p("summary", ValueType::String, ParamMode::Out),
        p("d", ValueType::Date, ParamMode::In),
        p("e", ValueType::Boolean, ParamMode::In),
        p("flag", ValueType::Boolean, ParamMode::Out),
    ];
    let mut segments = vec![Segment::Text(format!("CALL {proc_name}("))];
    for (i, param) in params.iter().enumerate() {
        if i > 0 {
            segments.push(Segment::Text(", ".into()));
        }
        segments.push(if param.mode == ParamMode::Out { Segment::Out(i) } else { Segment::Bind(i) });
    }
    segments.push(Segment::Text(")".into()));
    let q = ir::Query {
        name: "TYPED".into(),
        source: String::new(),
        segments,
        call: Some(ir::Call::positional(proc_name.clone(), (0..params.len()).map(Some).collect())),
        params,
        response_from: None,
        errors: BTreeMap::new(),
        columns: vec![],
        idempotent: false,
        location: ir::Location::default(),
    };
    let vals = [Value::Int(2), Value::Int(40), Value::Null, text("2024-02-29"), Value::Bool(true), Value::Null];
    let out = t.call(&q, &vals).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.outputs.get("b"), Some(&Value::Int(42)));
    assert_eq!(out.outputs.get("summary"), Some(&text("2024-02-29|1")));
    assert_eq!(out.outputs.get("flag"), Some(&Value::Bool(false)));
    assert_eq!(scalar(&mut t, "select @pf_io_2"), Some(Value::Null));
}

#[test]
fn install_errors_name_the_file_and_line() {
    let Some(url) = database_url(VAR) else { return };
    let mut t = connect(&url);
    let script = "# comment\nselect 1;\nDELIMITER //\nselect 2; //\nDELIMITER ;\nCREATE TABLE (;\nselect 3;";
    let err = install::install_script(&mut t, "dbum-mariadb.sql", script, Dialect::Mariadb).unwrap_err();
    assert_eq!(err.line, 6, "{err}");
    assert!(err.to_string().starts_with("dbum-mariadb.sql:6: You have an error in your SQL syntax"), "{err}");
    assert_eq!(err.error.sqlstate.as_deref(), Some("42000"));
    assert_eq!(vendor_code(&err.error), Some("1064"));
}

#[test]
fn statement_timeout_and_reconnect_once() {
    let Some(url) = database_url(VAR) else { return };
    let timeouts =
        Timeouts { statement: Duration::from_millis(300), idle_check: Duration::ZERO, ..Timeouts::default() };
    let mut t = MariadbTarget::connect(&url, &timeouts).unwrap();
    let err = t.query_scalar("select sleep(3) from dual where 1 = 1").map(|v| v.map(|v| v.display()));
    // MariaDB ends a SELECT over max_statement_time with error 1969 (SQLSTATE 70100), or
    // (for SLEEP) returns 1 for an interrupted sleep.
    match err {
        Err(e) => assert_eq!(vendor_code(&e), Some("1969"), "{e}"),
        Ok(v) => assert_eq!(v.as_deref(), Some("1")),
    }
    let id = scalar(&mut t, "select connection_id()").unwrap();
    let mut killer = connect(&url);
    killer.execute_statement(&format!("KILL CONNECTION {}", id.display())).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let again = scalar(&mut t, "select connection_id()").unwrap();
    assert_ne!(again, id);
}

#[test]
fn connection_errors_name_the_endpoint_never_the_password() {
    let Some(_url) = database_url(VAR) else { return };
    let timeouts = Timeouts { connect: Duration::from_secs(2), ..Timeouts::default() };
    let Err(err) = MariadbTarget::connect("mysql://bob:Hunter2%21secret@127.0.0.1:1/db", &timeouts) else {
        panic!("connected to port 1")
    };
    assert!(err.message.contains("127.0.0.1:1/db"), "{err}");
    assert!(!err.message.contains("Hunter2"), "{err}");
    assert_eq!(err.sqlstate, None);
}
