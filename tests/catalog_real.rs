//! `provflow target check` on a real PostgreSQL catalog: procedures with defaulted trailing
//! arguments, named notation and overloads are understood as the server understands them; an
//! overload the server cannot choose is PF704 (and the server refuses that call at run time);
//! every finding points at the procedure's name inside the query text.

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
";

#[test]
fn defaults_named_notation_and_overloads_as_the_server_sees_them() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let p = TempProject::new();
    p.write("defs/target.yaml", TARGET);
    p.write("defs/queries.yaml", QUERIES);
    p.write("defs/cat.sql", INSTALL);
    let target = format!("cat-pg={url}");
    let install = p.run(&["--target", &target, "target", "install", "cat-pg", "defs"], DEADLINE);
    assert_eq!(install.code(), Some(0), "{install}");
    let out = p.run(&["--target", &target, "--format", "json", "target", "check", "cat-pg", "defs"], DEADLINE);
    assert_eq!(out.code(), Some(1), "{out}");
    let found: Vec<(String, i64, i64)> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["line"].as_i64().unwrap(), d["column"].as_i64().unwrap()))
        .collect();
    // Each at the procedure name inside the query text: `    query: "call ` is 17 characters.
    let line = |name: &str| QUERIES.lines().position(|l| l.trim() == format!("{name}:")).unwrap() as i64 + 2;
    assert_eq!(
        found,
        [("PF701".to_string(), line("TOO_FEW"), 18), ("PF704".to_string(), line("AMBIGUOUS"), 18)],
        "{out}"
    );
    assert!(out.stdout.contains("takes 2 to 3 argument(s)"), "{out}");

    // The server agrees: the calls provflow accepts run, the ambiguous one is refused.
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute("call cat_grant($1, $2)", &[&"jdoe", &"dba"]).unwrap();
    c.execute("call cat_grant(role => $1, usr => $2)", &[&"dba", &"jdoe"]).unwrap();
    c.execute("call cat_touch($1)", &[&"jdoe"]).unwrap();
    c.execute("call cat_quota($1, $2::integer)", &[&"jdoe", &5i32]).unwrap();
    let refused = c.execute("call cat_quota($1, $2)", &[&"jdoe", &5i64]).unwrap_err();
    assert_eq!(refused.code().map(|s| s.code()), Some("42725"), "not unique: {refused}");
    c.batch_execute(
        "DROP PROCEDURE cat_grant(text, text, boolean); DROP PROCEDURE cat_quota(text, integer);
         DROP PROCEDURE cat_quota(text, boolean); DROP PROCEDURE cat_touch(text); DROP PROCEDURE cat_touch(character varying);",
    )
    .unwrap();
}
