//! `provflow target check` on a real PostgreSQL catalog: procedures with defaulted trailing
//! arguments, named notation and overloads are understood as the server understands them; an
//! overload the server cannot choose is PF704 (and the server refuses that call at run time);
//! every finding points at the procedure's name inside the query text. On both PostgreSQL and
//! MariaDB, OUT/INOUT modes are read from the catalog, and a `call` of a function (which both
//! servers refuse) is reported as such.

use provflow_tests::{database_url, TempProject};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

const TARGET: &str = "apiVersion: provflow/v1
kind: Target
name: cat-pg
dialect: postgres
queries: cat-pg
connection:
  url_env: CAT_PG_URL
";

const INSTALL: &str = "
CREATE OR REPLACE PROCEDURE cat_grant(usr text, role text, admin boolean DEFAULT false) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE cat_quota(usr text, mb integer) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE cat_quota(usr text, unlimited boolean) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE cat_touch(usr text) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE cat_touch(usr character varying) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE FUNCTION cat_exists(usr text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
";

const QUERIES: &str = "apiVersion: provflow/v1
kind: ConnectorQueries
name: cat-pg
dialect: postgres
install: [cat.sql]
queries:
  DEFAULTED:
    query: \"call cat_grant({n}, {r})\"
    params: { n: String, r: String }
  NAMED:
    query: \"call cat_grant(role => {r}, usr => {n})\"
    params: { n: String, r: String }
  TOO_FEW:
    query: \"call cat_grant({n})\"
    params: { n: String }
  AMBIGUOUS:
    query: \"call cat_quota({n}, {q})\"
    params: { n: String, q: Long }
  STRINGS:
    query: \"call cat_touch({n})\"
    params: { n: String }
  CAST:
    query: \"call cat_quota({n}, {q}::integer)\"
    params: { n: String, q: Long }
  FUNCTION:
    query: \"call cat_exists({n})\"
    params: { n: String }
";

/// Installs `install` on target `name` (at `url`), runs `target check` (expected to find
/// mismatches, exit 1) and returns its output and findings as (code, line, column, message).
fn install_and_check(
    name: &str,
    url: &str,
    target: &str,
    queries: &str,
    install: &str,
) -> (provflow_tests::RunOutput, Vec<(String, i64, i64, String)>) {
    let p = TempProject::new();
    p.write("defs/target.yaml", target);
    p.write("defs/queries.yaml", queries);
    p.write("defs/cat.sql", install);
    let target = format!("{name}={url}");
    let installed = p.run(&["--target", &target, "target", "install", name, "defs"], DEADLINE);
    assert_eq!(installed.code(), Some(0), "{installed}");
    let out = p.run(&["--target", &target, "--format", "json", "target", "check", name, "defs"], DEADLINE);
    assert_eq!(out.code(), Some(1), "{out}");
    let found = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|d| {
            let (line, column) = (d["line"].as_i64().unwrap(), d["column"].as_i64().unwrap());
            (d["code"].as_str().unwrap().to_string(), line, column, d["message"].as_str().unwrap().to_string())
        })
        .collect();
    (out, found)
}

#[test]
fn defaults_named_notation_and_overloads_as_the_server_sees_them() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let (out, found) = install_and_check("cat-pg", &url, TARGET, QUERIES, INSTALL);
    let found: Vec<(String, i64, i64)> = found.into_iter().map(|(c, l, col, _)| (c, l, col)).collect();
    // Each at the procedure name inside the query text: `    query: "call ` is 17 characters.
    let line = |name: &str| QUERIES.lines().position(|l| l.trim() == format!("{name}:")).unwrap() as i64 + 2;
    assert_eq!(
        found,
        [
            ("PF701".to_string(), line("TOO_FEW"), 18),
            ("PF704".to_string(), line("AMBIGUOUS"), 18),
            ("PF700".to_string(), line("FUNCTION"), 18)
        ],
        "{out}"
    );
    assert!(out.stdout.contains("takes 2 to 3 argument(s)"), "{out}");
    assert!(out.stdout.contains("`cat_exists` called by `FUNCTION` is a function, not a procedure"), "{out}");

    // The server agrees: the calls provflow accepts run, the ambiguous one is refused.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute("call cat_grant($1, $2)", &[&"jdoe", &"dba"]).unwrap();
    c.execute("call cat_grant(role => $1, usr => $2)", &[&"dba", &"jdoe"]).unwrap();
    c.execute("call cat_touch($1)", &[&"jdoe"]).unwrap();
    c.execute("call cat_quota($1, $2::integer)", &[&"jdoe", &5i32]).unwrap();
    let refused = c.execute("call cat_quota($1, $2)", &[&"jdoe", &5i64]).unwrap_err();
    assert_eq!(refused.code().map(|s| s.code()), Some("42725"), "not unique: {refused}");
    // `call` of a function: 42809, wrong object type.
    let refused = c.execute("call cat_exists($1)", &[&"jdoe"]).unwrap_err();
    assert_eq!(refused.code().map(|s| s.code()), Some("42809"), "{refused}");
    c.batch_execute(
        "DROP FUNCTION cat_exists(text); DROP PROCEDURE cat_grant(text, text, boolean); DROP PROCEDURE cat_quota(text, integer);
         DROP PROCEDURE cat_quota(text, boolean); DROP PROCEDURE cat_touch(text); DROP PROCEDURE cat_touch(character varying);",
    )
    .unwrap();
}

const MARIADB_TARGET: &str = "apiVersion: provflow/v1
kind: Target
name: cat-maria
dialect: mariadb
queries: cat-maria
connection:
  url_env: CAT_MARIA_URL
";

const MARIADB_INSTALL: &str = "
DROP PROCEDURE IF EXISTS cat_reset;
CREATE PROCEDURE cat_reset(IN usr VARCHAR(64), INOUT pwd VARCHAR(64), OUT response VARCHAR(200)) BEGIN SET response = 'ok'; END;
DROP FUNCTION IF EXISTS cat_exists;
CREATE FUNCTION cat_exists(usr VARCHAR(64)) RETURNS BOOLEAN DETERMINISTIC RETURN FALSE;
";

const MARIADB_QUERIES: &str = "apiVersion: provflow/v1
kind: ConnectorQueries
name: cat-maria
dialect: mariadb
install: [cat.sql]
queries:
  MODES:
    query: \"call cat_reset({n}, {p}, {r})\"
    params: { n: String }
    outputs: { p: String, r: String }
  NOT_OUT:
    query: \"call cat_reset({n}, {p}, {r})\"
    params: { n: String, p: String, r: String }
  FUNCTION:
    query: \"call CAT_EXISTS({n})\"
    params: { n: String }
";

#[test]
fn mariadb_procedure_modes_and_functions_as_the_server_sees_them() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let (out, found) = install_and_check("cat-maria", &url, MARIADB_TARGET, MARIADB_QUERIES, MARIADB_INSTALL);
    let line = |name: &str| MARIADB_QUERIES.lines().position(|l| l.trim() == format!("{name}:")).unwrap() as i64 + 2;
    let expected = [
        ("PF702", line("NOT_OUT"), "argument 2 (`pwd`) of `cat_reset` is INOUT but `p` is an input only"),
        ("PF702", line("NOT_OUT"), "argument 3 (`response`) of `cat_reset` is OUT but `r` is an input only"),
        (
            "PF700",
            line("FUNCTION"),
            "`CAT_EXISTS` called by `FUNCTION` is a function, not a procedure: `call` runs procedures only, and the server refuses it",
        ),
    ];
    let expected: Vec<(String, i64, i64, String)> =
        expected.iter().map(|(c, l, m)| (c.to_string(), *l, 18, m.to_string())).collect();
    assert_eq!(found, expected, "{out}");

    // The server agrees: `CALL` of a function is ER_SP_DOES_NOT_EXIST (1305, SQLSTATE 42000).
    let mut t = provflow_runner::target::mariadb::MariadbTarget::connect(
        &url,
        &provflow_runner::target::postgres::Timeouts::default(),
    )
    .unwrap();
    use provflow_runner::target::Target;
    let err = t.install("CALL cat_exists('jdoe')").unwrap_err();
    assert!(err.to_string().contains("PROCEDURE") && err.to_string().contains("does not exist"), "{err}");
    t.install("SELECT cat_exists('jdoe')").unwrap();
    t.install("DROP PROCEDURE cat_reset; DROP FUNCTION cat_exists;").unwrap();
}
