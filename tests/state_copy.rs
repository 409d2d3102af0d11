//! `provflow state copy` through the binary: a SQLite store with every table filled (users,
//! provisioned accounts with sealed secrets, a held manual task, the audit trail, the outbox,
//! a reconciliation run) copied SQLite → SQLite, and with `PROVFLOW_TEST_PG_URL` SQLite →
//! PostgreSQL → SQLite; the copies answer provflow's commands as the original does and hold
//! the same rows; a non-empty destination and an unreachable one are refused (exit 2) without
//! a password in any output; a copy killed mid-way leaves the destination empty.

#[path = "runner_common.rs"]
mod common;

use common::{open_db, Database, Project, DEADLINE, KEY};
use std::path::Path;
use std::time::{Duration, Instant};

const DBUM: &str = "DBUM Account";
const BADGE: &str = "Badge Access";
const SECRET: &str = "c0py-St8-Secret";

/// The store tables, with the key they are ordered by.
const TABLES: &[(&str, &str)] = &[
    ("schema_migrations", "version"),
    ("bundles", "hash"),
    ("users", "login"),
    ("accounts", "id"),
    ("workers", "id"),
    ("task_instances", "id"),
    ("task_audit", "id"),
    ("outbox", "id"),
    ("recon_runs", "id"),
    ("recon_events", "id"),
    ("store_meta", "name"),
];

/// A project whose default SQLite store has a row in every table.
fn filled_project() -> Project {
    let p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
    p.install_dbum();
    for u in ["JDOE", "ASMITH", "AHOPE"] {
        p.create_user(u);
    }
    let pw = [("PW", SECRET)];
    p.json(0, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &pw);
    // A manual task, held for a person.
    p.json(0, &["run", p.ir(), "--process", BADGE, "--user", "AHOPE"], &[]);
    let csv = p.path().join("definitions/disconnected/badges.csv");
    p.expect(0, &["recon", p.ir(), "--process", BADGE, "--csv", csv.to_str().unwrap_or_default()], &[]);
    let db = open_db(&p.state_db());
    // A worker, silent since 2023, holding a claim on the held manual task.
    db.execute_batch(
        "insert into workers(id, host, pid, started_at, heartbeat_at, lease_seconds, concurrency)
           values ('host-1:77:1700000000', 'host-1', 77, 1700000000, 1700000000, 30, 4);
         update task_instances set claimed_by = 'host-1:77:1700000000', lease_epoch = 1, lease_expires_at = 1700000030
           where id = (select min(id) from task_instances where status = 'Pending');",
    )
    .unwrap();
    for (table, _) in TABLES {
        let n: i64 = db.query_row(&format!("select count(*) from {table}"), [], |r| r.get(0)).unwrap();
        assert!(n > 0, "the test store has no row in {table}");
    }
    p
}

/// Every row of every store table of a SQLite file, rowids included, in key order.
fn rows(path: &Path) -> Vec<String> {
    let c = open_db(path);
    let mut out = Vec::new();
    for (table, key) in TABLES {
        let mut stmt = c.prepare(&format!("select rowid, * from {table} order by {key}")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cells: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
            out.push(format!("{table}: {}", cells.join(" | ")));
        }
    }
    out
}

/// What provflow's read commands print for the store at `state`; `recon events` only with
/// `recon` (it needs a SQLite store for now).
fn views(p: &Project, state: &str, recon: bool) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        &["--format", "json", "account", "list"][..],
        &["--format", "json", "task", "list"][..],
        &["--format", "json", "account", "show", "--process", DBUM, "--user", "JDOE"][..],
        &["--format", "json", "account", "show", "--process", BADGE, "--user", "AHOPE"][..],
        &["user", "list"][..],
        &["recon", "events"][..],
    ] {
        let mut all = vec!["--state", state];
        all.extend_from_slice(args);
        if !recon && args.first() == Some(&"recon") {
            continue;
        }
        let o = p.expect(0, &all, &[]);
        out.push(o.stdout);
    }
    out
}

/// Runs `state copy --format json` and returns its report; the exit code must be `code`.
fn copy(p: &Project, from: &str, to: &str, code: i32) -> (serde_json::Value, String) {
    let out = p.expect(code, &["--format", "json", "state", "copy", "--from", from, "--to", to], &[]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains(SECRET), "a copy printed the secret");
    let report = serde_json::from_str(out.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (report, out.stderr)
}

fn assert_verified(report: &serde_json::Value) {
    assert_eq!(report["verified"], true, "{report}");
    let tables = report["tables"].as_array().unwrap_or_else(|| panic!("no tables: {report}"));
    let names: Vec<&str> = tables.iter().filter_map(|t| t["table"].as_str()).collect();
    let wanted: Vec<&str> = TABLES.iter().map(|t| t.0).collect();
    assert_eq!(names, wanted, "{report}");
    for t in tables {
        assert_eq!(t["rows"], t["destination_rows"], "{t}");
        assert_eq!(t["checksum"], t["destination_checksum"], "{t}");
        assert!(t["rows"].as_i64().unwrap_or(0) > 0, "{t}");
    }
}

#[test]
fn sqlite_to_sqlite_copy_answers_as_the_original() {
    let p = filled_project();
    let original = format!("sqlite:{}", p.state_db().display());
    let copy_db = p.path().join("copies/one.db");
    let to = format!("sqlite:{}", copy_db.display());
    let (report, _) = copy(&p, &original, &to, 0);
    assert_verified(&report);
    assert_eq!(rows(&p.state_db()), rows(&copy_db));
    assert_eq!(views(&p, &original, true), views(&p, &to, true));
    // The secret stays sealed: the copy holds no clear text.
    let forms: Vec<String> = open_db(&copy_db)
        .prepare("select form from accounts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(forms.iter().any(|f| f.contains("sealed")) && !forms.iter().any(|f| f.contains(SECRET)), "{forms:?}");

    // A second copy into it is refused, and changes nothing.
    let before = rows(&copy_db);
    let (_, stderr) = copy(&p, &original, &to, 2);
    assert!(stderr.contains("is not empty") && stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(rows(&copy_db), before);

    // Human output: a table of tables, then the verdict.
    let human = p.expect(0, &["state", "copy", "--from", &original, "--to", "sqlite:copies/two.db"], &[]);
    assert!(human.stdout.starts_with("TABLE"), "{human}");
    assert!(human.stdout.contains("task_audit") && human.stdout.contains("verified"), "{human}");
}

#[test]
fn an_unreachable_destination_is_named_without_its_password() {
    let p = Project::new();
    p.create_user("JDOE");
    for to in ["postgres://u:Pw-c0py-9@127.0.0.1:1/x", "host=127.0.0.1 port=1 user=u password=Pw-c0py-9 dbname=x"] {
        let out = p.expect(2, &["state", "copy", "--from", "sqlite:.provflow/state.db", "--to", to], &[]);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(!text.contains("Pw-c0py-9"), "the password is shown");
        assert!(
            text.contains("cannot reach the PostgreSQL database at 127.0.0.1:1/x"),
            "{}",
            text.replace("Pw-c0py-9", "<pw>")
        );
    }
    // And as a source.
    let out =
        p.expect(2, &["state", "copy", "--from", "postgres://u:Pw-c0py-9@127.0.0.1:1/x", "--to", "sqlite:n.db"], &[]);
    assert!(!format!("{}{}", out.stdout, out.stderr).contains("Pw-c0py-9"));
    assert!(!p.path().join("n.db").exists(), "a refused copy created its destination");
}

#[test]
fn a_copy_killed_mid_way_leaves_the_destination_empty() {
    let p = Project::new();
    p.create_user("JDOE");
    p.json(0, &["run", p.ir(), "--process", BADGE, "--user", "JDOE"], &[]);
    // A large audit trail (inserts are allowed on the append-only table).
    {
        let mut db = open_db(&p.state_db());
        let tx = db.transaction().unwrap();
        let task: i64 = tx.query_row("select min(id) from task_instances", [], |r| r.get(0)).unwrap();
        let note = "n".repeat(400);
        let mut stmt = tx
            .prepare("insert into task_audit(task_id, at, actor, from_status, to_status, note) values (?1, ?2, 'bulk', 'Pending', 'Pending', ?3)")
            .unwrap();
        for i in 0..120_000_i64 {
            stmt.execute(rusqlite::params![task, i, note]).unwrap();
        }
        drop(stmt);
        tx.commit().unwrap();
    }
    let dest = p.path().join("killed.db");
    let wal = p.path().join("killed.db-wal");
    let mut child = p
        .command(&["state", "copy", "--from", "sqlite:.provflow/state.db", "--to", "sqlite:killed.db"], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the copy's transaction has spilled pages into the WAL: mid-copy.
    let start = Instant::now();
    let killed = loop {
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 1 << 20 {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(start.elapsed() < DEADLINE, "the copy neither finished nor wrote");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(killed, "the copy finished before it could be killed; make the store larger");
    // Whoever opens it next finds every table empty (the WAL's uncommitted frames are ignored).
    let db = open_db(&dest);
    for (table, _) in TABLES.iter().filter(|t| t.0 != "schema_migrations") {
        let n: i64 = db.query_row(&format!("select count(*) from {table}"), [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{table} kept rows of a killed copy");
    }
    drop(db);
    // And a copy run again into it succeeds.
    let (report, _) = copy(&p, "sqlite:.provflow/state.db", "sqlite:killed.db", 0);
    assert_eq!(report["verified"], true, "{report}");
}

#[test]
fn sqlite_to_postgres_and_back() {
    let Some(db) = Database::new() else { return };
    let p = filled_project();
    let original = format!("sqlite:{}", p.state_db().display());

    let (there, _) = copy(&p, &original, &db.url, 0);
    assert_verified(&there);
    assert_eq!(views(&p, &original, false), views(&p, &db.url, false), "the PostgreSQL copy answers otherwise");

    // Into the now non-empty database: refused, nothing written.
    let (_, stderr) = copy(&p, &original, &db.url, 2);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let users: i64 = c.query_one("select count(*) from users", &[]).unwrap().get(0);
    assert_eq!(users, 3);

    // Back to a new SQLite file: the original's rows, rowids included, and the same checksums.
    let back = p.path().join("back.db");
    let (report, _) = copy(&p, &db.url, &format!("sqlite:{}", back.display()), 0);
    assert_verified(&report);
    let sums = |r: &serde_json::Value| {
        r["tables"].as_array().map(|t| t.iter().map(|x| x["checksum"].clone()).collect::<Vec<_>>())
    };
    assert_eq!(sums(&there), sums(&report));
    assert_eq!(rows(&p.state_db()), rows(&back));

    // The PostgreSQL copy keeps working: a new account takes the next id.
    let attrs = ["usr_first_name=N", "usr_last_name=B", "usr_udf_cost_center=CC-1001", "usr_udf_building=HQ-North"];
    let mut create = vec!["--state", db.url.as_str(), "user", "create", "NEWBIE"];
    for a in &attrs {
        create.extend(["--attr", a]);
    }
    p.expect(0, &create, &[]);
    let run = p.json(0, &["--state", &db.url, "run", p.ir(), "--process", BADGE, "--user", "NEWBIE"], &[]);
    let max: i64 = c.query_one("select max(id) from accounts", &[]).unwrap().get(0);
    assert_eq!(run["account"]["id"].as_i64(), Some(max), "{run}");
}
