//! The seed stories end to end on the embedded SQLite default, driving the `provflow` binary:
//! DBUM provisioning (seed 000), a duplicate user rejected, retried and given up, the
//! disconnected Badge Access application (seed 001), the user lifecycle, form and child-table
//! changes, the SPEC §5 JSON shapes, a target that is the state store's own file, and hostile
//! values through the command line.

#[path = "runner_common.rs"]
mod common;

use common::{assert_account_shape, count, open_db, status, tasks, Project, KEY};

const DBUM: &str = "DBUM Account";
const BADGE: &str = "Badge Access";

fn names_and_statuses(v: &serde_json::Value) -> Vec<(String, String)> {
    tasks(v).into_iter().map(|(n, s, _, _)| (n, s)).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn dbum_account_lifecycle_on_the_embedded_default() {
    let p = Project::new();
    p.install_dbum();
    p.create_user("JDOE");
    let pw = [("PW", "Tr0ub4dor&3")];

    // Provision: the seed's check is `select * from dba_users` and the audit table.
    let run = p.json(0, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &pw);
    assert_account_shape(&run);
    assert_eq!(status(&run), "Provisioned", "{run}");
    assert_eq!(run["account"]["process"], DBUM);
    assert_eq!(run["account"]["user"], "JDOE");
    assert_eq!(
        tasks(&run),
        [
            ("Create User".to_string(), "Completed".to_string(), Some("SUCCESS".to_string()), 1),
            ("Profile Updated".to_string(), "Completed".to_string(), Some("SUCCESS".to_string()), 1),
        ]
    );
    {
        let db = open_db(&p.dbum_db());
        let (password, profile, enabled): (String, String, i64) = db
            .query_row("select password, profile, enabled from db_users where username = 'JDOE'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((password.as_str(), profile.as_str(), enabled), ("Tr0ub4dor&3", "DEFAULT", 1));
        assert_eq!(count(&db, "select count(*) from audit_log where message = 'Added User ' || ?1", "JDOE"), 1);
    }
    let shown = p.account(DBUM, "JDOE");
    assert_account_shape(&shown);
    assert_eq!(shown, run, "`account show` prints what `run` printed");

    // A second account of the same process for the same user is refused, exit 2.
    let again = p.expect(2, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &pw);
    assert!(again.stderr.contains("already has a `DBUM Account` account"), "{again}");

    // Password change: the `Password Updated` task, with the new secret on the target.
    let set = p.json(
        0,
        &["account", "set", "--process", DBUM, "--user", "JDOE", "--secret", "password=env:NEWPW"],
        &[("NEWPW", "n3w-Secret")],
    );
    assert_account_shape(&set);
    assert!(
        tasks(&set)
            .iter()
            .any(|(n, s, r, _)| n == "Password Updated" && s == "Completed" && r.as_deref() == Some("SUCCESS")),
        "{set}"
    );
    let password: String = open_db(&p.dbum_db())
        .query_row("select password from db_users where username = 'JDOE'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(password, "n3w-Secret");

    // A role row: `Add Role` with the row's value.
    let role =
        p.json(0, &["account", "child", "add", "--process", DBUM, "--user", "JDOE", "roles", "role=dbum_read"], &[]);
    assert!(tasks(&role).iter().any(|(n, s, _, _)| n == "Add Role" && s == "Completed"), "{role}");
    assert_eq!(
        count(
            &open_db(&p.dbum_db()),
            "select count(*) from db_user_roles where username = ?1 and role = 'dbum_read'",
            "JDOE"
        ),
        1
    );

    // Lock and unlock trigger nothing.
    let before = tasks(&p.account(DBUM, "JDOE")).len();
    p.expect(0, &["user", "lock", "JDOE"], &[]);
    p.expect(0, &["user", "unlock", "JDOE"], &[]);
    assert_eq!(tasks(&p.account(DBUM, "JDOE")).len(), before, "lock/unlock inserted tasks");

    // Disable, enable, delete: the effect tasks and the undo of Create User.
    p.expect(0, &["user", "disable", "JDOE"], &[]);
    let disabled = p.account(DBUM, "JDOE");
    assert_eq!(status(&disabled), "Disabled", "{disabled}");
    assert!(names_and_statuses(&disabled).contains(&("Disable User".into(), "Completed".into())));
    let enabled: i64 = open_db(&p.dbum_db())
        .query_row("select enabled from db_users where username = 'JDOE'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(enabled, 0);

    p.expect(0, &["user", "enable", "JDOE"], &[]);
    let enabled_again = p.account(DBUM, "JDOE");
    assert_eq!(status(&enabled_again), "Enabled", "{enabled_again}");
    assert!(names_and_statuses(&enabled_again).contains(&("Enable User".into(), "Completed".into())));

    p.expect(0, &["user", "delete", "JDOE"], &[]);
    let deleted = p.account(DBUM, "JDOE");
    assert_eq!(status(&deleted), "Revoked", "{deleted}");
    assert!(names_and_statuses(&deleted).contains(&("Delete User".into(), "Completed".into())), "{deleted}");
    let db = open_db(&p.dbum_db());
    assert_eq!(count(&db, "select count(*) from db_users where username = ?1", "JDOE"), 0);
    assert_eq!(count(&db, "select count(*) from audit_log where message = 'Deleted User ' || ?1", "JDOE"), 1);

    // `account list` and `task list` shapes (SPEC §5).
    let list = p.json(0, &["account", "list"], &[]);
    assert_eq!(list, serde_json::json!([deleted["account"]]));
    let task_list = p.json(0, &["task", "list"], &[]);
    let items = task_list.as_array().unwrap();
    assert_eq!(items.len(), tasks(&deleted).len());
    for t in items {
        let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["account", "held", "id", "manual", "name", "note", "status"], "{t}");
        assert_eq!(t["account"], serde_json::json!({"process": DBUM, "user": "JDOE"}));
        assert_eq!(t["manual"], false);
    }
}

#[test]
fn duplicate_user_is_rejected_retried_then_given_up() {
    // The clock is fixed per command, so the 30-minute retry period passes without waiting.
    let p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
    let t0 = "2030-01-01T09:00:00Z";
    let at = |t: &'static str| [("PROVFLOW_NOW", t), ("PW", "pw-1")];
    p.install_dbum();
    p.create_user("JDOE");
    p.create_user("JSMITH");
    p.json(0, &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"], &at(t0));

    // JSMITH's form says JDOE: the target refuses the duplicate (SQLSTATE 23505 -> DUPLICATE).
    let run = p.json(
        0,
        &[
            "run",
            p.ir(),
            "--process",
            DBUM,
            "--user",
            "JSMITH",
            "--form",
            "username=JDOE",
            "--secret",
            "password=env:PW",
        ],
        &at(t0),
    );
    assert_eq!(status(&run), "Provisioning");
    assert_eq!(
        tasks(&run),
        [
            ("Create User".into(), "Rejected".into(), Some("DUPLICATE".into()), 1),
            ("Create User".into(), "Pending".into(), None, 2),
        ]
    );

    // Not due yet: nothing runs.
    p.expect(0, &["resume"], &at("2030-01-01T09:10:00Z"));
    assert_eq!(tasks(&p.account(DBUM, "JSMITH")).len(), 2);

    // Due: the second attempt is rejected too, a third is scheduled.
    p.expect(0, &["resume"], &at("2030-01-01T09:31:00Z"));
    let second = p.account(DBUM, "JSMITH");
    assert_eq!(
        tasks(&second).iter().map(|(_, s, _, a)| (s.as_str(), *a)).collect::<Vec<_>>(),
        [("Rejected", 1), ("Rejected", 2), ("Pending", 3)],
        "{second}"
    );

    // The last attempt: rejected with no retry left, so `resume` exits 1.
    let last = p.pf(&["--format", "json", "resume"], &at("2030-01-01T10:02:00Z"));
    assert_eq!(last.code(), Some(1), "{last}");
    let given_up = p.account(DBUM, "JSMITH");
    assert_eq!(
        tasks(&given_up).iter().map(|(_, s, r, a)| (s.as_str(), r.as_deref(), *a)).collect::<Vec<_>>(),
        [("Rejected", Some("DUPLICATE"), 1), ("Rejected", Some("DUPLICATE"), 2), ("Rejected", Some("DUPLICATE"), 3)],
    );
    assert_eq!(status(&given_up), "Provisioning");
    // The target kept one JDOE and wrote one audit row only.
    let db = open_db(&p.dbum_db());
    assert_eq!(count(&db, "select count(*) from db_users where username = ?1", "JDOE"), 1);
    assert_eq!(count(&db, "select count(*) from audit_log where message = 'Added User ' || ?1", "JDOE"), 1);
}

#[test]
fn disconnected_application_is_fulfilled_by_people() {
    let p = Project::new();
    for login in ["AHOPE", "BWHITE"] {
        p.create_user(login);
    }
    // Complete: Provisioned.
    let run = p.json(0, &["run", p.ir(), "--process", BADGE, "--user", "AHOPE"], &[]);
    assert_account_shape(&run);
    assert_eq!(status(&run), "Provisioning");
    assert_eq!(names_and_statuses(&run), pairs(&[("Manual Provisioning", "Pending")]));
    let queue = p.json(0, &["task", "list", "--status", "Pending"], &[]);
    assert_eq!(queue.as_array().map(Vec::len), Some(1), "{queue}");
    assert_eq!(queue[0]["manual"], true);
    assert_eq!(queue[0]["account"], serde_json::json!({"process": BADGE, "user": "AHOPE"}));
    let id = queue[0]["id"].as_i64().unwrap().to_string();
    let done = p.json(0, &["task", "complete", &id], &[]);
    assert_eq!(status(&done), "Provisioned", "{done}");
    assert_eq!(tasks(&done)[0].1, "Completed");

    // A first-name change inserts the trigger task (a manual reprint).
    p.expect(0, &["user", "modify", "AHOPE", "--attr", "usr_first_name=Anne"], &[]);
    let modified = p.account(BADGE, "AHOPE");
    assert!(names_and_statuses(&modified).contains(&("Reprint Badge".into(), "Pending".into())), "{modified}");
    assert_eq!(status(&modified), "Provisioned");

    // Reject: the seed's fix maps the rejection to Revoked; the run failed, exit 1.
    p.json(0, &["run", p.ir(), "--process", BADGE, "--user", "BWHITE"], &[]);
    let pending = p.json(0, &["task", "list", "--status", "Pending"], &[]);
    let bwhite = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["account"]["user"] == "BWHITE")
        .unwrap_or_else(|| panic!("no pending task for BWHITE: {pending}"));
    let id = bwhite["id"].as_i64().unwrap().to_string();
    let rejected = p.json(1, &["task", "reject", &id, "--response", "REJECT"], &[]);
    assert_eq!(status(&rejected), "Revoked", "{rejected}");
    assert_eq!(tasks(&rejected)[0], ("Manual Provisioning".into(), "Rejected".into(), Some("REJECT".into()), 1));
}

#[test]
fn a_target_in_the_state_store_file_commits_with_the_transition() {
    let p = Project::new();
    let state = p.path().join("shared.db");
    let state = state.to_str().unwrap().to_string();
    let mut p = p;
    p.global =
        vec!["--state".into(), format!("sqlite:{state}"), "--target".into(), format!("dbum-sqlite=sqlite:{state}")];
    p.install_dbum();
    p.create_user("JDOE");
    let run = p.json(
        0,
        &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"],
        &[("PW", "pw")],
    );
    assert_eq!(status(&run), "Provisioned", "{run}");
    assert!(!p.dbum_db().exists(), "the embedded default target file was created");
    let db = open_db(std::path::Path::new(&state));
    assert_eq!(count(&db, "select count(*) from db_users where username = ?1", "JDOE"), 1);
    assert_eq!(count(&db, "select count(*) from audit_log where message = 'Added User ' || ?1", "JDOE"), 1);
    // A rejected call (a duplicate) rolls back its savepoint, the transition still commits.
    p.create_user("JSMITH");
    let dup = p.json(
        0,
        &[
            "run",
            p.ir(),
            "--process",
            DBUM,
            "--user",
            "JSMITH",
            "--form",
            "username=JDOE",
            "--secret",
            "password=env:PW",
        ],
        &[("PW", "pw")],
    );
    assert_eq!(tasks(&dup)[0].2.as_deref(), Some("DUPLICATE"), "{dup}");
    assert_eq!(count(&db, "select count(*) from audit_log where message = 'Added User ' || ?1", "JDOE"), 1);
    // Calls in the store's transaction never need the `calling` mark.
    assert_eq!(count(&db, "select count(*) from task_instances where calling = ?1", "1"), 0);
    p.expect(0, &["user", "disable", "JDOE"], &[]);
    assert_eq!(status(&p.account(DBUM, "JDOE")), "Disabled");
}

#[test]
fn hostile_values_land_byte_exact_or_are_refused() {
    let p = Project::new();
    p.install_dbum();
    let long = "x".repeat(10 * 1024);
    let logins: Vec<String> = vec![
        "O'Brien".into(),
        "a\"b".into(),
        "x'); DROP TABLE db_users; --".into(),
        "back\\slash\\".into(),
        "semi;colon".into(),
        "Ünïcødé-用户-🚀".into(),
        "-- comment".into(),
        long.clone(),
    ];
    let profiles = ["it's", "\"; DELETE FROM db_users; --", "\\'\\", "", "Zürich 🏔", &long];
    for (i, login) in logins.iter().enumerate() {
        // A login starting with `-` would be a flag: `--` ends the flags.
        p.expect(0, &["user", "create", "--attr", "usr_udf_cost_center=CC", "--", login], &[]);
        let profile = profiles[i % profiles.len()];
        let form = format!("profile={profile}");
        // `--user=VALUE`, so that a login starting with `-` stays a value.
        let user = format!("--user={login}");
        let run = p.json(
            0,
            &["run", p.ir(), "--process", DBUM, &user, "--form", &form, "--secret", "password=env:PW"],
            &[("PW", "p'w\"; --\\")],
        );
        assert_eq!(status(&run), "Provisioned", "login {login:?}: {run}");
        let db = open_db(&p.dbum_db());
        let (password, stored_profile): (String, Option<String>) = db
            .query_row("select password, profile from db_users where username = ?1", [login], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap_or_else(|e| panic!("no db_users row for {login:?}: {e}"));
        assert_eq!(password, "p'w\"; --\\");
        assert_eq!(stored_profile.as_deref(), Some(profile), "login {login:?}");
    }
    let db = open_db(&p.dbum_db());
    let rows: i64 = db.query_row("select count(*) from db_users", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, logins.len() as i64, "db_users survived every value");
    let users = p.json(0, &["account", "list"], &[]);
    let listed: Vec<&str> = users.as_array().unwrap().iter().filter_map(|a| a["user"].as_str()).collect();
    assert_eq!(listed, logins.iter().map(String::as_str).collect::<Vec<_>>(), "logins round-trip through the store");

    // Refused with a clear error, nothing created.
    let empty = p.expect(2, &["user", "create", "--attr", "usr_udf_cost_center=CC", "--", ""], &[]);
    assert!(empty.stderr.contains("needs a login"), "{empty}");
    for login in ["tab\there", "new\nline", "esc\u{1b}[31m", "rtl\u{202e}txt"] {
        let out = p.expect(2, &["user", "create", "--attr", "usr_udf_cost_center=CC", "--", login], &[]);
        assert!(out.stderr.contains("logins are printable text"), "{out}");
        assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{202e}'), "{out}");
    }
    p.expect(0, &["user", "create", "FRESH", "--attr", "usr_udf_cost_center=CC"], &[]);
    let bad_field = p.expect(2, &["run", p.ir(), "--process", DBUM, "--user", "FRESH", "--form", "nosuch=1"], &[]);
    assert!(bad_field.stderr.contains("no form field `nosuch`"), "{bad_field}");
    let secret_on_argv =
        p.expect(2, &["run", p.ir(), "--process", DBUM, "--user", "FRESH", "--form", "password=visible"], &[]);
    assert!(secret_on_argv.stderr.contains("is a secret"), "{secret_on_argv}");
    assert!(!secret_on_argv.stderr.contains("visible"), "{secret_on_argv}");
}

/// `run --users FILE` and repeated `--user`: every login checked first, then one account each,
/// side by side in batches; one JSON object per account per line.
#[test]
fn many_users_in_one_run() {
    let p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
    let pw = [("PW", "bulk-pw")];
    p.install_dbum();
    let users = ["NH001", "NH002", "NH003", "NH004", "NH005"];
    for u in users {
        p.create_user(u);
    }
    // NH003 exists on the target already: its Create User is refused as a duplicate.
    open_db(&p.dbum_db()).execute("insert into db_users(username, password) values ('NH003', 'x')", []).unwrap();
    std::fs::write(p.path().join("new-hires.txt"), "# this week's new hires\nNH001\nNH002\n\nNH003\nNH004\nNH005\n")
        .unwrap();
    let base = ["--format", "json", "run", p.ir(), "--process", DBUM, "--secret", "password=env:PW"];
    let mut args = base.to_vec();
    args.extend(["--users", "new-hires.txt", "--batch", "2"]);
    let out = p.expect(0, &args, &pw);
    let lines: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (v, user) in lines.iter().zip(users) {
        assert_account_shape(v);
        assert_eq!(v["account"]["user"], user, "{v}");
        if user == "NH003" {
            assert_eq!(status(v), "Provisioning");
            assert_eq!(
                tasks(v),
                [
                    ("Create User".into(), "Rejected".into(), Some("DUPLICATE".into()), 1),
                    ("Create User".into(), "Pending".into(), None, 2),
                ]
            );
        } else {
            assert_eq!(status(v), "Provisioned", "{v}");
            assert_eq!(
                tasks(v).iter().map(|t| (t.0.as_str(), t.1.as_str())).collect::<Vec<_>>(),
                [("Create User", "Completed"), ("Profile Updated", "Completed")]
            );
        }
    }
    let db = open_db(&p.dbum_db());
    for u in users {
        let added = count(&db, "select count(*) from audit_log where message = 'Added User ' || ?1", u);
        assert_eq!(added, i64::from(u != "NH003"), "{u}");
    }

    // A problem with any login creates nothing and names every problem.
    p.create_user("NH006");
    let refused = p.expect(
        2,
        &[
            "run",
            p.ir(),
            "--process",
            DBUM,
            "--user",
            "NH006",
            "--user",
            "NH001",
            "--user",
            "NH07",
            "--secret",
            "password=env:PW",
        ],
        &pw,
    );
    for want in [
        "NH001: `NH001` already has a `DBUM Account` account",
        "NH07: unknown user `NH07`; did you mean",
        "2 of 3 accounts cannot be provisioned; nothing was created",
    ] {
        assert!(refused.stderr.contains(want), "{want}\n{refused}");
    }
    let none = p.pf(&["account", "show", "--process", DBUM, "--user", "NH006"], &[]);
    assert_eq!(none.code(), Some(2), "{none}");

    // Human output: a line per account and a summary.
    p.create_user("NH007");
    let human = p.expect(
        0,
        &["run", p.ir(), "--process", DBUM, "--user", "NH006", "--user", "NH007", "--secret", "password=env:PW"],
        &pw,
    );
    assert!(human.stdout.starts_with("ID  USER   STATUS       TASKS\n"), "{human}");
    assert!(human.stdout.contains("NH007  Provisioned  2 Completed\n"), "{human}");
    assert!(human.stdout.ends_with("2 accounts of `DBUM Account`: 2 Provisioned\n"), "{human}");
    assert!(human.stderr.is_empty(), "piped output gets no progress bar: {human}");

    // Usage errors.
    let missing = p.expect(2, &["run", p.ir(), "--process", DBUM, "--users", "absent.txt"], &[]);
    assert!(missing.stderr.contains("--users: cannot read `absent.txt`"), "{missing}");
    let zero = p.expect(2, &["run", p.ir(), "--process", DBUM, "--user", "NH001", "--batch", "0"], &[]);
    assert!(zero.stderr.contains("from 1 to 10000"), "{zero}");
}

/// A `--target NAME=URL` naming no target of the definitions is refused before anything is
/// created: ignoring it would send the work to the target's default database instead.
#[test]
fn a_target_flag_for_an_unknown_target_is_refused() {
    let p = Project::new();
    p.install_dbum();
    p.expect(0, &["user", "create", "JDOE", "--attr", "usr_udf_cost_center=CC"], &[]);
    let url = format!("dbum-sqlit=sqlite:{}", p.path().join("elsewhere.db").display());
    for args in [
        vec![
            "--target",
            url.as_str(),
            "run",
            p.ir(),
            "--process",
            DBUM,
            "--user",
            "JDOE",
            "--secret",
            "password=env:PW",
        ],
        vec![
            "--target",
            url.as_str(),
            "plan",
            p.ir(),
            "--process",
            DBUM,
            "--user",
            "JDOE",
            "--secret",
            "password=env:PW",
        ],
        vec!["--target", url.as_str(), "target", "install", "dbum-sqlite", p.ir()],
    ] {
        let out = p.expect(2, &args, &[("PW", "pw")]);
        assert!(
            out.stderr.contains("`dbum-sqlit`, which is no target")
                && out.stderr.contains("did you mean `dbum-sqlite`"),
            "{out}"
        );
    }
    assert!(!p.path().join("elsewhere.db").exists(), "nothing opened");
    let accounts = p.json(0, &["account", "list"], &[]);
    assert_eq!(accounts.as_array().map(Vec::len), Some(0), "nothing created: {accounts}");
}
