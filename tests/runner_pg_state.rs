//! The runner with its state store in PostgreSQL (`--state postgres://…`), driving the
//! `provflow` binary: the DBUM SQLite target provisioned for one user and for several, the
//! account and task lists, a disable, `resume`, the rows in PostgreSQL, the notifications
//! rendered, listed and exported, reconciliation from a CSV file and its events, and a state
//! URL's password in no output. Each test gets a fresh
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
    assert_eq!(db.count("select max(version) from schema_migrations"), 6);
    // The password is sealed; the audit trail refuses changes.
    let mut c = db.client();
    let forms: Vec<String> = c.query("select form from accounts", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(forms.iter().all(|f| !f.contains("pg-st8-Secret") && f.contains("sealed")), "{forms:?}");
    assert!(c.execute("delete from task_audit", &[]).is_err());

    notifications_from_postgres(&p, &db);
    reconciliation_in_postgres(&p, &db);
}

/// The notifications the lifecycle above queued: rendered after each command (the resolver's
/// `Account_Count` answered by PostgreSQL), listed, exported and read back.
fn notifications_from_postgres(p: &Project, db: &Database) {
    assert_eq!(db.count("select count(*) from outbox where status = 'queued'"), 0, "rendered after each command");
    assert_eq!(db.count("select count(*) from outbox where status = 'failed'"), 0);
    let list = p.json(0, &["notifications", "list"], &[]);
    let rows = list.as_array().expect("a list");
    let of = |template: &str| rows.iter().filter(|m| m["template"] == template).count();
    assert_eq!((of("Account Created"), of("Account Disabled")), (4, 1), "{list}");
    assert!(rows.iter().all(|m| m["status"] == "rendered"), "{list}");

    let out = p.expect(0, &["notifications", "export", "mail"], &[]);
    assert!(out.stdout.contains("wrote 5 message(s)"), "{out}");
    let mut files: Vec<_> = std::fs::read_dir(p.path().join("mail")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("pg-st8-Secret"), "{}", f.display());
        let m = mail_parser::MessageParser::default().parse(&bytes).expect("mail-parser reads it");
        let template = m.header_raw("X-Provflow-Template").unwrap_or_default().trim().to_owned();
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_owned();
        let text = m.body_text(0).unwrap_or_default().replace("\r\n", "\n");
        match template.as_str() {
            "Account Created" => {
                assert_eq!(m.subject(), Some("Your DBUM Account account is ready"));
                // The resolver counted this user's accounts in PostgreSQL: one.
                assert!(text.contains("It is your first account."), "{to}: {text}");
            }
            "Account Disabled" => {
                assert_eq!(to, "JDOE@localhost");
                assert_eq!(m.subject(), Some("Your DBUM Account account has been disabled"));
            }
            other => panic!("unexpected template `{other}` in {}", f.display()),
        }
    }
}

/// `recon --csv` with good and bad rows, twice, and its events, in PostgreSQL.
fn reconciliation_in_postgres(p: &Project, db: &Database) {
    p.create_user("LINKME");
    std::fs::write(
        p.path().join("accounts.csv"),
        "username,enabled\njdoe,true\nNH001,false\nLINKME,true\n,true\nNH003,maybe\nGHOST,true\n",
    )
    .unwrap();
    let recon = ["recon", p.ir(), "--process", DBUM, "--csv", "accounts.csv"];
    let counts = |v: &serde_json::Value| {
        ["rows", "created", "linked", "updated", "unchanged", "unmatched", "failed"]
            .map(|k| v[k].as_u64().unwrap_or(99))
    };
    let first = p.json(1, &recon, &[]);
    assert_eq!(counts(&first), [6, 0, 1, 2, 0, 1, 2], "{first}");
    let bad: Vec<u64> = first["bad_rows"].as_array().unwrap().iter().map(|b| b["line"].as_u64().unwrap()).collect();
    assert_eq!(bad, [5, 6], "{first}");
    let human = p.expect(1, &recon, &[]);
    assert!(human.stderr.contains("accounts.csv:5: the key `username` is empty"), "{human}");
    assert!(human.stderr.contains("accounts.csv:6: `enabled`"), "{human}");
    assert!(human.stdout.contains("0 updated, 3 unchanged, 1 unmatched, 2 failed"), "{human}");
    let again = p.json(1, &recon, &[]);
    assert_eq!(counts(&again), [6, 0, 0, 0, 3, 1, 2], "a third run changes nothing: {again}");

    // What the first run wrote, and nothing of the bad rows.
    let status = |login: &str| -> String {
        db.client()
            .query_one("select status from accounts where user_login = $1 order by id desc limit 1", &[&login])
            .unwrap()
            .get(0)
    };
    assert_eq!(status("JDOE"), "Enabled");
    assert_eq!(status("NH001"), "Disabled");
    assert_eq!(status("LINKME"), "Enabled");
    assert_eq!(status("NH003"), "Provisioned");
    assert_eq!(db.count("select count(*) from recon_runs where finished_at is not null"), 3);
    assert_eq!(db.count("select count(*) from recon_events"), 18);

    let events = p.json(0, &["recon", "events", "--run", &first["run"].to_string()], &[]);
    let lines: Vec<(i64, String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["line"].as_i64().unwrap(), e["outcome"].as_str().unwrap().into(), e["action"].as_str().unwrap().into())
        })
        .collect();
    let expected = [
        (2, "one process match", "update"),
        (3, "one process match", "update"),
        (4, "one entity match", "link"),
        (5, "bad row", "skipped"),
        (6, "bad row", "skipped"),
        (7, "no match", "none"),
    ];
    assert_eq!(lines, expected.map(|(l, o, a)| (l, o.to_string(), a.to_string())), "{events}");
    assert_eq!(events[0]["changes"]["OIM_OBJECT_STATUS"]["to"], "Enabled", "{events}");
    let newest = p.expect(0, &["recon", "events"], &[]);
    assert!(newest.stdout.starts_with(&format!("recon run {}: 6 events", again["run"])), "{newest}");
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
