//! PF316 and PF317 are the servers' own refusals, found at compile time: each case is sent
//! once, as the runner would send it (its own targets and renderer), to the real PostgreSQL
//! and MariaDB, and fails there as the diagnostic says; the fix the diagnostic suggests
//! succeeds. Each case also compiles to its diagnostic. (PROVFLOW_TEST_PG_URL,
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
