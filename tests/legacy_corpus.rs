//! The legacy corpus (`tests/legacy_corpus/`: the DBUM connector's `Provisioning.queries`,
//! `Search.queries` and `LoVSearch.queries` for Oracle, MySQL, SQL Server, DB2 and Sybase)
//! imported for PostgreSQL and MariaDB:
//! - every entry is either converted, and the converted file compiles with no finding, or
//!   refused at its line with a reason and a help; what becomes of each entry is the snapshot
//!   `snapshots/legacy_corpus__<database>.snap`, reviewed like code;
//! - the converted account lifecycle (create, lock, unlock, password, roles, drop) of every
//!   database runs against the real PostgreSQL and MariaDB, and the account is in the state
//!   each statement says. (PROVFLOW_TEST_PG_URL, PROVFLOW_TEST_MARIADB_URL; skipped without
//!   them unless PROVFLOW_REQUIRE_DATABASES=1.)

use std::path::PathBuf;

use provflow_compiler::diagnostic::Severity;
use provflow_compiler::legacy::{import, parse_provision_queries_report};
use provflow_ir::Query;
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::Target;
use provflow_runner::value::{Secret, Value};
use provflow_tests::database_url;

const DATABASES: [&str; 5] = ["oracle", "mysql", "mssql", "db2", "sybase"];
const FILES: [&str; 3] = ["Provisioning", "Search", "LoVSearch"];
const DIALECTS: [&str; 2] = ["postgres", "mariadb"];

fn corpus(database: &str, file: &str) -> (PathBuf, String) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("legacy_corpus").join(database).join(format!("{file}.queries"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// The imported file as a compilable bundle: a target of the dialect, then the queries.
fn with_target(yaml: &str, name: &str, dialect: &str) -> String {
    format!("apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: {dialect}\nqueries: {name}\nconnection: {{ url_env: T_URL }}\n---\n{yaml}")
}

/// Imports one corpus file: the converted YAML, checked to compile cleanly, and one line per
/// entry saying what became of it.
fn import_file(database: &str, file: &str, dialect: &str) -> (String, Vec<String>) {
    let (path, text) = corpus(database, file);
    let report = parse_provision_queries_report(&text);
    assert!(report.errors.is_empty(), "{}: {:?}", path.display(), report.errors);
    let name = format!("{database}-{file}").to_lowercase();
    let imported = import(&report.queries, &name, dialect);
    let compiled =
        provflow_compiler::compile_bytes("imported.yaml", with_target(&imported.yaml, &name, dialect).as_bytes());
    let findings: Vec<String> = compiled.diagnostics.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert!(
        findings.is_empty(),
        "{} for {dialect} does not compile cleanly: {findings:#?}\n{}",
        path.display(),
        imported.yaml
    );
    let converted: serde_json::Value = serde_yaml::from_str(&imported.yaml).unwrap();
    let mut lines = Vec::new();
    for q in &report.queries {
        let printed = converted["queries"].get(&q.name);
        let refusal = imported.refused.iter().find(|e| e.message.starts_with(&format!("entry `{}` ", q.name)));
        match (printed, refusal) {
            (Some(p), None) => {
                let text = p["query"].as_str().unwrap();
                let how = if text == q.query { "kept" } else { "converted" };
                lines.push(format!("  {}: {how}: {text}", q.name));
            }
            (None, Some(e)) => {
                assert_eq!(e.line, q.line, "the refusal points at the entry");
                let help = e.help.as_deref().unwrap_or_else(|| panic!("a refusal without help: {e}"));
                assert!(!help.trim().is_empty());
                let reason = e.message.split_once(": ").map_or(e.message.as_str(), |(_, r)| r);
                lines.push(format!("  {}: refused: {reason}", q.name));
            }
            other => panic!("{} entry {} is neither printed nor refused, or both: {other:?}", path.display(), q.name),
        }
    }
    (imported.yaml, lines)
}

#[test]
fn every_entry_is_converted_and_compiles_or_refused_with_a_reason() {
    for database in DATABASES {
        let mut summary = String::new();
        for file in FILES {
            for dialect in DIALECTS {
                let (_, lines) = import_file(database, file, dialect);
                summary.push_str(&format!("{file}.queries for {dialect}:\n{}\n", lines.join("\n")));
            }
        }
        insta::assert_snapshot!(database, summary);
    }
}

/// A query that reads one text column `v`.
fn read(t: &mut dyn Target, sql: &str) -> Vec<String> {
    let q = Query::fixed("read", sql, &["v"]);
    let rows = t.call(&q, &[]).unwrap().rows;
    rows.iter()
        .map(|r| match r.get("v") {
            Some(Value::Text(s)) => s.clone(),
            other => panic!("{sql}: {other:?}"),
        })
        .collect()
}

/// How one server shows an account's state.
struct Server {
    /// Creates the account outside the corpus (for files that have no create entry).
    create: fn(&str) -> String,
    /// Drops what an earlier, interrupted run may have left.
    drop_if_exists: fn(&str) -> String,
    /// Whether the account exists, may log in, and is a member of `pfl_role`.
    state: fn(&str) -> String,
    setup: &'static str,
    teardown: &'static str,
}

const POSTGRES: Server = Server {
    create: |u| format!("CREATE ROLE {u} LOGIN PASSWORD 'Pfl-s3cret-0'"),
    drop_if_exists: |u| format!("DROP ROLE IF EXISTS {u}"),
    state: |u| {
        format!(
            "select rolcanlogin::text || ' ' || exists(select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid \
             where m.member = r.oid and g.rolname = 'pfl_role')::text as v from pg_roles r where rolname = '{u}'"
        )
    },
    setup: "DROP ROLE IF EXISTS pfl_role; CREATE ROLE pfl_role;
        CREATE OR REPLACE PROCEDURE insertPackage(usr text, pwd text) LANGUAGE plpgsql AS $$
        BEGIN EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', usr, pwd); END $$;",
    teardown: "DROP PROCEDURE insertPackage(text, text); DROP ROLE pfl_role;",
};

const MARIADB: Server = Server {
    create: |u| format!("CREATE USER '{u}'@'%' IDENTIFIED BY 'Pfl-s3cret-0'"),
    drop_if_exists: |u| format!("DROP USER IF EXISTS '{u}'@'%'"),
    state: |u| {
        format!(
            "select concat(if(json_value(Priv, '$.account_locked') in ('1', 'true'), 'false', 'true'), ' ', \
             if(exists(select 1 from mysql.roles_mapping m where m.User = '{u}' and m.Role = 'pfl_role'), 'true', 'false')) as v \
             from mysql.global_priv where User = '{u}'"
        )
    },
    setup: "DROP ROLE IF EXISTS pfl_role; CREATE ROLE pfl_role;
        DROP PROCEDURE IF EXISTS insertPackage;
        CREATE PROCEDURE insertPackage(usr VARCHAR(64), pwd VARCHAR(64))
        BEGIN EXECUTE IMMEDIATE CONCAT('CREATE USER ', QUOTE(usr), ' IDENTIFIED BY ', QUOTE(pwd)); END;",
    teardown: "DROP PROCEDURE insertPackage; DROP ROLE pfl_role;",
};

/// The values of one account's entries, by parameter name.
fn value(param: &str, user: &str, password: &str) -> Value {
    match param {
        "__NAME__" | "loginName" => Value::Text(user.into()),
        "__PASSWORD__" => Value::Secret(Secret::new(password)),
        "roleName" => Value::Text("pfl_role".into()),
        "defaultTablespace" | "temporaryTablespace" => Value::Text("pg_default".into()),
        "host" => Value::Text("%".into()),
        other => panic!("the lifecycle test has no value for `{other}`: add one"),
    }
}

/// What a statement does to an account: (exists, may log in, is in pfl_role) afterwards, as
/// far as it says.
fn expected(sql: &str) -> Option<&'static str> {
    let s = sql.to_ascii_uppercase();
    if s.starts_with("DROP") {
        Some("gone")
    } else if s.contains("NOLOGIN") || s.contains("ACCOUNT LOCK") {
        Some("locked")
    } else if s.ends_with(" LOGIN") || s.contains("ACCOUNT UNLOCK") {
        Some("open")
    } else if s.contains(" ON ") {
        // A privilege (MariaDB's `GRANT USAGE ON *.*`): the account's state is unchanged.
        None
    } else if s.starts_with("GRANT") {
        Some("member")
    } else if s.starts_with("REVOKE") {
        Some("not member")
    } else {
        None
    }
}

fn check_state(t: &mut dyn Target, server: &Server, user: &str, want: &str, entry: &str) {
    let rows = read(t, &(server.state)(user));
    let state = rows.first().cloned().unwrap_or_else(|| "gone".into());
    let ok = match want {
        "gone" => rows.is_empty(),
        "exists" => !rows.is_empty(),
        "locked" => state.starts_with("false "),
        "open" => state.starts_with("true "),
        "member" => state.ends_with(" true"),
        "not member" => state.ends_with(" false"),
        _ => true,
    };
    assert!(ok, "after {entry}, `{user}` should be {want}, the server says {state}");
}

/// Runs every converted Provisioning entry of each corpus database against `server`: each
/// create entry with an account of its own, then every other entry on it, then a drop; the
/// account's state is checked after each statement.
fn lifecycle(t: &mut dyn Target, server: &Server, dialect: &str) {
    t.install(server.setup).unwrap();
    for database in DATABASES {
        let (yaml, _) = import_file(database, "Provisioning", dialect);
        let name = format!("{database}-provisioning");
        let compiled = provflow_compiler::compile_bytes("imported.yaml", with_target(&yaml, &name, dialect).as_bytes());
        assert!(compiled.diagnostics.iter().all(|d| d.severity != Severity::Error));
        let bundle = compiled.bundle.expect("the import compiles");
        let queries = &bundle.query_sets.first().expect("one query set").queries;
        let text = |q: &Query| q.source.trim().to_string();
        let creates: Vec<&Query> = queries
            .iter()
            .filter(|q| text(q).to_ascii_uppercase().starts_with("CREATE") || text(q).starts_with("call"))
            .collect();
        let drops: Vec<&Query> = queries.iter().filter(|q| expected(&text(q)) == Some("gone")).collect();
        let middle: Vec<&Query> = queries.iter().filter(|q| !creates.contains(q) && !drops.contains(q)).collect();
        // Each create entry (or the test itself, when the file has none) makes an account.
        let starts: Vec<Option<&Query>> =
            if creates.is_empty() { vec![None] } else { creates.iter().copied().map(Some).collect() };
        let mut ran = 0;
        for (n, create) in starts.into_iter().enumerate() {
            let user = format!("pfl_{database}_{n}");
            let password = format!("Pfl-s3cret-{n}");
            for leftover in [user.clone(), format!("{user}_d1"), format!("{user}_d2")] {
                t.install(&(server.drop_if_exists)(&leftover)).unwrap();
            }
            let values =
                |q: &Query| -> Vec<Value> { q.params.iter().map(|p| value(&p.name, &user, &password)).collect() };
            match create {
                Some(q) => {
                    t.call(q, &values(q)).unwrap_or_else(|e| panic!("{database} {} ({}): {e}", q.name, text(q)));
                    ran += 1;
                    check_state(t, server, &user, "exists", &q.name);
                }
                None => t.install(&(server.create)(&user)).unwrap(),
            }
            // Membership before revocation, unlock after lock: grants and locks first.
            let mut ordered = middle.clone();
            ordered.sort_by_key(|q| match expected(&text(q)) {
                Some("member") => 0,
                Some("not member") => 1,
                Some("locked") => 2,
                Some("open") => 3,
                _ => 4,
            });
            for q in &ordered {
                t.call(q, &values(q)).unwrap_or_else(|e| panic!("{database} {} ({}): {e}", q.name, text(q)));
                ran += 1;
                if let Some(want) = expected(&text(q)) {
                    check_state(t, server, &user, want, &q.name);
                }
            }
            // Every drop entry runs once: the first on this account, the others on accounts of
            // their own.
            for (k, q) in drops.iter().enumerate() {
                let target_user = if k == 0 { user.clone() } else { format!("{user}_d{k}") };
                if k > 0 {
                    t.install(&(server.create)(&target_user)).unwrap();
                }
                let v: Vec<Value> = q.params.iter().map(|p| value(&p.name, &target_user, &password)).collect();
                t.call(q, &v).unwrap_or_else(|e| panic!("{database} {} ({}): {e}", q.name, text(q)));
                ran += 1;
                check_state(t, server, &target_user, "gone", &q.name);
            }
            if drops.is_empty() {
                t.install(&(server.drop_if_exists)(&user)).unwrap();
            }
        }
        assert!(ran >= queries.len(), "{database}: every converted entry ran ({ran} calls, {} entries)", queries.len());
    }
    t.install(server.teardown).unwrap();
}

#[test]
fn the_converted_lifecycle_runs_on_postgres() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let mut t = PostgresTarget::connect(&url, &Timeouts::default()).unwrap();
    lifecycle(&mut t, &POSTGRES, "postgres");
}

#[test]
fn the_converted_lifecycle_runs_on_mariadb() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let mut t = MariadbTarget::connect(&url, &Timeouts::default()).unwrap();
    lifecycle(&mut t, &MARIADB, "mariadb");
}
