//! The runner with its state store in PostgreSQL (`--state postgres://…`), driving the
//! `provflow` binary: the DBUM SQLite target provisioned for one user and for several, the
//! account and task lists, a disable, `resume`, the rows in PostgreSQL, the commands that
//! refuse a PostgreSQL store, and a state URL's password in no output. Each test gets a fresh
//! database on the server of `PROVFLOW_TEST_PG_URL` (skipped without it, unless
//! `PROVFLOW_REQUIRE_DATABASES=1`).

#[path = "runner_common.rs"]
mod common;

use common::{count, open_db, status, tasks, Database, Project, KEY};

const DBUM: &str = "DBUM Account";

fn project(db: &Database) -> Project {
    let mut p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
    p.global = vec!["--state".into(), db.url.clone()];
    p
}

#[test]
fn dbum_lifecycle_with_the_state_in_postgres() {
    let Some(db) = Database::new() else { return };
    let p = project(&db);
    p.install_dbum();
    for u in ["JDOE", "NH001", "NH002", "NH003"] {
        p.create_user(u);
    }
    let pw = [("PW", "pg-st8-Secret")];

    // One user.
    let run = p.json(0, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &pw);
    assert_eq!(status(&run), "Provisioned", "{run}");
    assert_eq!(p.account(DBUM, "JDOE"), run, "`account show` prints what `run` printed");

    // Several users from a file, in batches.
    std::fs::write(p.path().join("hires.txt"), "NH001\nNH002\nNH003\n").unwrap();
    let out = p.expect(
        0,
        &[
            "--format",
            "json",
            "run",
            p.ir(),
            "--process",
            DBUM,
            "--secret",
            "password=env:PW",
            "--users",
            "hires.txt",
            "--batch",
            "2",
        ],
        &pw,
    );
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    for v in &lines {
        assert_eq!(status(v), "Provisioned", "{v}");
    }
    let target = open_db(&p.dbum_db());
    for u in ["JDOE", "NH001", "NH002", "NH003"] {
        assert_eq!(count(&target, "select count(*) from audit_log where message = 'Added User ' || ?1", u), 1, "{u}");
    }

    // Lists.
    let accounts = p.json(0, &["account", "list"], &[]);
    assert_eq!(accounts.as_array().map(Vec::len), Some(4), "{accounts}");
    let task_list = p.json(0, &["task", "list"], &[]);
    assert_eq!(task_list.as_array().map(Vec::len), Some(8), "{task_list}");
    let users = p.expect(0, &["user", "list"], &[]);
    assert!(users.stdout.contains("NH003"), "{users}");

    // A disable runs the disable task.
    p.expect(0, &["user", "disable", "JDOE"], &[]);
    let disabled = p.account(DBUM, "JDOE");
    assert_eq!(status(&disabled), "Disabled", "{disabled}");
    assert!(tasks(&disabled).iter().any(|t| t.0 == "Disable User" && t.1 == "Completed"), "{disabled}");
    let enabled: i64 =
        target.query_row("select enabled from db_users where username = 'JDOE'", [], |r| r.get(0)).unwrap();
    assert_eq!(enabled, 0);

    // Nothing left to resume.
    let resumed = p.expect(0, &["resume"], &[]);
    assert!(resumed.stderr.contains("resumed 0 account(s)"), "{resumed}");

    // The rows, in PostgreSQL.
    assert_eq!(db.count("select count(*) from users"), 4);
    assert_eq!(db.count("select count(*) from accounts where status = 'Provisioned'"), 3);
    assert_eq!(db.count("select count(*) from accounts where status = 'Disabled'"), 1);
    assert_eq!(db.count("select count(*) from task_instances where status = 'Completed'"), 9);
    assert!(db.count("select count(*) from task_audit") >= 9);
    assert_eq!(db.count("select max(version) from schema_migrations"), 3);
    // The password is sealed; the audit trail refuses changes.
    let mut c = db.client();
    let forms: Vec<String> = c.query("select form from accounts", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(forms.iter().all(|f| !f.contains("pg-st8-Secret") && f.contains("sealed")), "{forms:?}");
    assert!(c.execute("delete from task_audit", &[]).is_err());

    // Reconciliation and notifications do not work on a PostgreSQL store yet: refused, named.
    for args in [&["notifications", "list"][..], &["recon", p.ir(), "--process", DBUM, "--from-target"][..]] {
        let out = p.expect(2, args, &[]);
        assert!(out.stderr.contains("does not work on a PostgreSQL state store"), "{out}");
    }
}

#[test]
fn an_unreachable_state_store_is_named_without_its_password() {
    let p = Project::new();
    let url = "postgres://u:Pw-st4te-9@127.0.0.1:1/x";
    for args in [&["user", "list"][..], &["task", "list"][..], &["resume"][..], &["account", "list"][..]] {
        let mut all = vec!["--state", url];
        all.extend_from_slice(args);
        let out = p.expect(2, &all, &[]);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(!text.contains("Pw-st4te-9"), "{args:?} shows the password");
        assert!(
            text.contains("cannot reach the PostgreSQL state store at 127.0.0.1:1/x"),
            "{args:?}: {}",
            out.stderr.replace("Pw-st4te-9", "<pw>")
        );
    }
}
