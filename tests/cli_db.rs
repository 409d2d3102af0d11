//! The DBUM story through the `provflow` binary against a real server, shared by `cli_pg` and
//! `cli_mariadb`: each dialect describes its target, process and catalog queries in a [`Db`],
//! and the stories below run the same commands against either.
//!
//! Accounts are server-wide (PostgreSQL roles, MariaDB users), so every login carries this
//! process's id and is dropped at the end, also when an assertion failed.

#![allow(dead_code)]

use provflow_runner::target::Target;
use provflow_runner::value::Value;
use provflow_tests::{run_bounded, RunOutput, TempProject};
use std::time::Duration;

/// Every command finishes well within this; a hang fails the test.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// A key for `PROVFLOW_SECRET_KEY`, so that the account's password is stored (encrypted).
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// Environment variables holding the test passwords; `--secret password=env:VAR` reads them.
pub const PW_VAR: &str = "DBUM_CLI_PASSWORD";
pub const NEW_PW_VAR: &str = "DBUM_CLI_NEW_PASSWORD";

/// What differs between the dialects.
pub struct Db {
    /// `PostgreSQL`, `MariaDB`.
    pub server: &'static str,
    /// The Target of definitions/dbum.
    pub target: &'static str,
    /// Its `url_env`.
    pub url_env: &'static str,
    pub process: &'static str,
    /// Paths inside the project (copies of the repository's definitions).
    pub queries_file: &'static str,
    pub process_file: &'static str,
    pub install_file: &'static str,
    /// Opens a session for assertions and cleanup.
    pub connect: fn(&str) -> Box<dyn Target>,
    /// `select count(*)` of the account `name` (already lower case).
    pub exists_sql: fn(&str) -> String,
    /// A scalar that is true (or 1) when the account can log in.
    pub can_login_sql: fn(&str) -> String,
    /// Whether the server's stored credential of `name` accepts the password.
    pub password_is: fn(&mut dyn Target, &str, &str) -> bool,
    /// `select count(*)` of the membership of `name` in `role`.
    pub member_sql: fn(&str, &str) -> String,
    /// Drops the account and forgets it in `dbum_users`.
    pub cleanup_sql: fn(&str) -> Vec<String>,
}

/// A throw-away project with a copy of `definitions/`, whose commands reach the server
/// through the target's `url_env`.
pub struct Project {
    pub dir: TempProject,
    url_env: &'static str,
    url: String,
    pub passwords: Vec<String>,
}

impl Project {
    pub fn new(db: &Db, url: &str) -> Self {
        let dir = TempProject::new();
        dir.copy_from_repo("definitions");
        let pid = std::process::id();
        // Quotes, backslashes and dollar signs: the values reach dynamic SQL in the procedures.
        let passwords = vec![format!("Init'pw\\{pid}$$"), format!("N3w \"pw\" `{pid}` --")];
        Project { dir, url_env: db.url_env, url: url.to_string(), passwords }
    }

    /// `provflow ARGS` with the target URL, the secret key and the passwords in the environment.
    pub fn pf(&self, args: &[&str]) -> RunOutput {
        let mut cmd = self.dir.provflow();
        cmd.args(args)
            .env_remove("DBUM_PG_URL")
            .env_remove("DBUM_MARIADB_URL")
            .env_remove("DBUM_SQLITE_URL")
            .env_remove("PROVFLOW_NOW")
            .env(self.url_env, &self.url)
            .env("PROVFLOW_SECRET_KEY", KEY)
            .env(PW_VAR, &self.passwords[0])
            .env(NEW_PW_VAR, &self.passwords[1]);
        let out = run_bounded(&mut cmd, DEADLINE);
        self.assert_no_password(&out);
        out
    }

    /// No output of any command shows a password.
    pub fn assert_no_password(&self, out: &RunOutput) {
        for pw in &self.passwords {
            if out.stdout.contains(pw.as_str()) || out.stderr.contains(pw.as_str()) {
                // Show where, never the password itself.
                let masked = format!("{out}").replace(pw.as_str(), "<PASSWORD>");
                panic!("a password leaked\n{masked}");
            }
        }
    }

    pub fn expect(&self, code: i32, args: &[&str]) -> RunOutput {
        let out = self.pf(args);
        assert_eq!(out.code(), Some(code), "provflow {args:?}\n{out}");
        out
    }

    /// A `--format json` command that exits with `code`, its stdout parsed as one value.
    pub fn json(&self, code: i32, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.expect(code, &all);
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{out}"))
    }

    pub fn create_user(&self, login: &str) {
        self.expect(
            0,
            &[
                "user",
                "create",
                login,
                "--attr",
                "usr_first_name=John",
                "--attr",
                "usr_last_name=Doe",
                "--attr",
                "usr_udf_cost_center=CC-1001",
            ],
        );
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    pub fn write(&self, relative: &str, text: &str) {
        self.dir.write(relative, text);
    }
}

/// Drops the accounts of a test, also when it failed half-way.
pub struct Cleanup<'a> {
    pub db: &'a Db,
    pub url: String,
    pub accounts: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut t = (self.db.connect)(&self.url);
        for a in &self.accounts {
            for s in (self.db.cleanup_sql)(a) {
                let _ = t.query_scalar(&s);
            }
        }
    }
}

pub fn scalar(t: &mut dyn Target, sql: &str) -> Option<Value> {
    t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Whether a scalar is true or a non-zero number (MariaDB has no booleans).
pub fn truthy(v: Option<Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => b,
        Some(Value::Int(i)) => i != 0,
        other => panic!("not a truth value: {other:?}"),
    }
}

pub fn count(t: &mut dyn Target, sql: &str) -> i64 {
    match scalar(t, sql) {
        Some(Value::Int(i)) => i,
        other => panic!("{sql}: {other:?}"),
    }
}

/// The account status and `(task, status, response)` of a `run`/`account show` JSON object.
pub fn status(v: &serde_json::Value) -> &str {
    v["account"]["status"].as_str().unwrap_or("<none>")
}

pub fn tasks(v: &serde_json::Value) -> Vec<(String, String, Option<String>)> {
    v["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks in {v}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["status"].as_str().unwrap_or_default().to_string(),
                t["response"].as_str().map(String::from),
            )
        })
        .collect()
}

/// The last instance of `task` in an account JSON object.
pub fn last_task(v: &serde_json::Value, task: &str) -> (String, Option<String>) {
    tasks(v)
        .into_iter()
        .rev()
        .find(|(n, _, _)| n == task)
        .map(|(_, s, r)| (s, r))
        .unwrap_or_else(|| panic!("no task `{task}` in {v}"))
}

/// The 1-based line and column (in characters) of the first occurrence of `needle`.
pub fn position_of(text: &str, needle: &str) -> (i64, i64) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in\n{text}"));
    let col = line.split(needle).next().map_or(0, |before| before.chars().count());
    (i as i64 + 1, col as i64 + 1)
}

/// `target install` twice (the scripts are idempotent), then `target check` finds nothing.
pub fn install_twice_then_check(db: &Db, url: &str) {
    let p = Project::new(db, url);
    for _ in 0..2 {
        let out = p.expect(0, &["target", "install", db.target]);
        assert!(out.stderr.contains("installed "), "{out}");
    }
    let out = p.expect(0, &["target", "check", db.target]);
    assert!(out.stderr.contains("target check ok: 0 mismatch(es) in 8 procedure call(s)"), "{out}");
    let out = p.expect(0, &["--format", "json", "target", "check", db.target]);
    assert_eq!(out.json_diagnostics(), Vec::<serde_json::Value>::new(), "{out}");
}

/// A misspelled procedure (PF700) and an OUT parameter declared as an input (PF702), each
/// reported at its query's key in the queries file, in the json, github and human formats.
pub fn check_reports_mismatches_at_the_query(db: &Db, url: &str) {
    let p = Project::new(db, url);
    p.expect(0, &["target", "install", db.target]);

    // ENABLE_USER calls `enable_usr`.
    let queries = p.read(db.queries_file);
    let good_call = "query: \"call enable_user({__NAME__})\"";
    assert!(queries.contains(good_call), "{} changed: update this test", db.queries_file);
    let queries = queries.replace(good_call, "query: \"call enable_usr({__NAME__})\"");
    // RESET_PASSWORD declares the procedure's OUT parameter `response` as a plain input.
    let mut lines: Vec<String> = Vec::new();
    let mut in_reset = false;
    for l in queries.lines() {
        if l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':') {
            in_reset = l.trim() == "RESET_PASSWORD:";
        }
        if in_reset && (l.starts_with("    outputs:") || l.starts_with("    response_from:")) {
            continue;
        }
        lines.push(l.to_string());
        if in_reset && l.trim() == "__PASSWORD__: GuardedString" {
            lines.push("      response: String".into());
        }
    }
    let queries = lines.join("\n") + "\n";
    assert!(queries.contains("      response: String") && !queries.contains("response_from"), "{queries}");
    p.write(db.queries_file, &queries);
    // ... so the process maps it.
    let process = p.read(db.process_file);
    let map = "      query: RESET_PASSWORD\n      map: { __NAME__: form.username, __PASSWORD__: form.password }";
    assert!(process.contains(map), "{} changed: update this test", db.process_file);
    p.write(
        db.process_file,
        &process.replace(
            map,
            "      query: RESET_PASSWORD\n      map: { __NAME__: form.username, __PASSWORD__: form.password, response: \"literal:x\" }",
        ),
    );

    // Findings point at the procedure's name inside the query text.
    let (enable_line, enable_col) = position_of(&queries, "enable_usr(");
    let (reset_line, reset_col) = position_of(&queries, "reset_password(");
    let out = p.expect(1, &["--format", "json", "target", "check", db.target]);
    let found: Vec<(String, String, i64, i64, String)> = out
        .json_diagnostics()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default().to_string(),
                d["file"].as_str().unwrap_or_default().to_string(),
                d["line"].as_i64().unwrap_or(-1),
                d["column"].as_i64().unwrap_or(-1),
                d["help"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "PF700".to_string(),
                db.queries_file.to_string(),
                enable_line,
                enable_col,
                "did you mean `enable_user`?".to_string()
            ),
            (
                "PF702".to_string(),
                db.queries_file.to_string(),
                reset_line,
                reset_col,
                "declare it under `outputs`: `response: String`".to_string()
            ),
        ],
        "{out}"
    );
    let messages: Vec<String> =
        out.json_diagnostics().iter().map(|d| d["message"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(messages[0], "procedure `enable_usr` called by `ENABLE_USER` does not exist in the target database");
    assert!(messages[1].starts_with("argument 3 (`response`) of `reset_password` is OUT"), "{out}");

    let out = p.expect(1, &["--format", "github", "target", "check", db.target]);
    let expected = format!("::error file={},line={enable_line},col={enable_col},", db.queries_file);
    assert!(out.stdout.contains(&expected), "{out}");
    let out = p.expect(1, &["target", "check", db.target]);
    assert!(out.stderr.contains("target check failed: 2 mismatch(es)"), "{out}");
}

/// An install script with a syntax error: exit 1, the message names the script and the line
/// of the failing statement; the statements before it ran, nothing after it.
pub fn install_error_names_file_and_line(db: &Db, url: &str) {
    let p = Project::new(db, url);
    p.write(db.install_file, "-- broken on purpose\nselect 1;\n\nCREATE TABLE (;\nselect 2;\n");
    let out = p.expect(1, &["target", "install", db.target]);
    let file = db.install_file.rsplit('/').next().unwrap_or(db.install_file);
    assert!(out.stderr.contains(&format!("`{file}` failed: line 4: ")), "{out}");
    assert!(out.stderr.to_lowercase().contains("syntax"), "{out}");
}

/// The whole account lifecycle through the binary, checked in the server's own catalog.
pub fn account_lifecycle(db: &Db, url: &str) {
    let pid = std::process::id();
    let login = format!("PF{pid}CLI");
    let account = login.to_lowercase();
    let _cleanup = Cleanup { db, url: url.to_string(), accounts: vec![account.clone()] };
    let p = Project::new(db, url);
    let mut server = (db.connect)(url);
    let server = server.as_mut();
    p.expect(0, &["target", "install", db.target]);
    p.create_user(&login);

    let secret = format!("password=env:{PW_VAR}");
    let v = p.json(0, &["run", "--process", db.process, "--user", &login, "--secret", &secret]);
    assert_eq!(status(&v), "Provisioned", "{v}");
    assert_eq!(last_task(&v, "Create User"), ("Completed".into(), Some("SUCCESS".into())), "{v}");
    assert_eq!(count(server, &(db.exists_sql)(&account)), 1, "the {} account `{account}` was not created", db.server);
    assert!(truthy(scalar(server, &(db.can_login_sql)(&account))));
    assert!((db.password_is)(server, &account, &p.passwords[0]), "the stored password is not the one given");
    assert!(!(db.password_is)(server, &account, "wrong"), "the stored credential accepts any password");

    let out = p.expect(0, &["user", "disable", &login]);
    assert!(out.stdout.contains("Disabled"), "{out}");
    assert!(!truthy(scalar(server, &(db.can_login_sql)(&account))), "disabled but can still log in");
    let v = p.json(0, &["account", "show", "--process", db.process, "--user", &login]);
    assert_eq!((status(&v), last_task(&v, "Disable User").0.as_str()), ("Disabled", "Completed"), "{v}");

    p.expect(0, &["user", "enable", &login]);
    assert!(truthy(scalar(server, &(db.can_login_sql)(&account))), "enabled but cannot log in");
    let v = p.json(0, &["account", "show", "--process", db.process, "--user", &login]);
    assert_eq!((status(&v), last_task(&v, "Enable User").0.as_str()), ("Enabled", "Completed"), "{v}");

    // Password Updated: the procedure answers through its OUT parameter `response`.
    let new_secret = format!("password=env:{NEW_PW_VAR}");
    let v = p.json(0, &["account", "set", "--process", db.process, "--user", &login, "--secret", &new_secret]);
    assert_eq!(last_task(&v, "Password Updated"), ("Completed".into(), Some("SUCCESS".into())), "{v}");
    assert!((db.password_is)(server, &account, &p.passwords[1]), "the new password was not stored");
    assert!(!(db.password_is)(server, &account, &p.passwords[0]), "the old password still works");

    let member = (db.member_sql)(&account, "dbum_read");
    assert_eq!(count(server, &member), 0);
    let v =
        p.json(0, &["account", "child", "add", "--process", db.process, "--user", &login, "roles", "role=dbum_read"]);
    assert_eq!(last_task(&v, "Add Role"), ("Completed".into(), Some("SUCCESS".into())), "{v}");
    assert_eq!(count(server, &member), 1, "dbum_read was not granted");

    p.expect(0, &["user", "delete", &login]);
    let v = p.json(0, &["account", "show", "--process", db.process, "--user", &login]);
    assert_eq!((status(&v), last_task(&v, "Delete User").0.as_str()), ("Revoked", "Completed"), "{v}");
    assert_eq!(count(server, &(db.exists_sql)(&account)), 0, "the account was not dropped");
    assert_eq!(count(server, &format!("select count(*) from dbum_users where username = '{account}'")), 0);
}

/// A second account of the same name: the server says 42710, the queries map it to
/// DUPLICATE, the task is Rejected (a retry is scheduled), and the first account is untouched.
pub fn duplicate_is_rejected(db: &Db, url: &str) {
    let pid = std::process::id();
    let (first, second) = (format!("PF{pid}DUP"), format!("PF{pid}DUP2"));
    let account = first.to_lowercase();
    let _cleanup = Cleanup { db, url: url.to_string(), accounts: vec![account.clone(), second.to_lowercase()] };
    let p = Project::new(db, url);
    let mut server = (db.connect)(url);
    let server = server.as_mut();
    p.expect(0, &["target", "install", db.target]);
    p.create_user(&first);
    p.create_user(&second);
    let secret = format!("password=env:{PW_VAR}");
    let v = p.json(0, &["run", "--process", db.process, "--user", &first, "--secret", &secret]);
    assert_eq!(status(&v), "Provisioned", "{v}");

    let new_secret = format!("password=env:{NEW_PW_VAR}");
    let form = format!("username={first}");
    let v = p.json(0, &["run", "--process", db.process, "--user", &second, "--form", &form, "--secret", &new_secret]);
    assert_eq!(status(&v), "Provisioning", "{v}");
    let all = tasks(&v);
    assert_eq!(all.first(), Some(&("Create User".into(), "Rejected".into(), Some("DUPLICATE".into()))), "{v}");
    assert_eq!(all.get(1).map(|t| t.1.as_str()), Some("Pending"), "a retry is scheduled: {v}");
    assert!((db.password_is)(server, &account, &p.passwords[0]), "the duplicate changed the first account's password");
    assert_eq!(
        count(server, &format!("select count(*) from dbum_users where username = '{}'", second.to_lowercase())),
        0
    );
}

/// An unreachable server (port 1) with a password in the URL: `target install` and
/// `target check` exit 2 with a message naming the endpoint and never the password; `run`
/// does not complete the task and shows no password either.
pub fn unreachable_database(db: &Db, scheme: &str) {
    let pid = std::process::id();
    let password = format!("Hunter2-{pid}");
    let url = format!("{scheme}://bob:{password}@127.0.0.1:1/dbum");
    let mut p = Project::new(db, &url);
    p.passwords.push(password);
    for cmd in ["install", "check"] {
        let out = p.expect(2, &["target", cmd, db.target]);
        let expected =
            format!("error: target `{}`: cannot connect to {} at 127.0.0.1:1/dbum as `bob`: ", db.target, db.server);
        assert!(out.stderr.contains(&expected), "{out}");
        assert!(out.stderr.contains("refused"), "the reason is missing\n{out}");
    }
    // The same through --target, which overrides url_env.
    let override_url = format!("{}={url}", db.target);
    let out = p.expect(2, &["--target", &override_url, "target", "check", db.target]);
    assert!(out.stderr.contains("127.0.0.1:1/dbum"), "{out}");

    let login = format!("PF{pid}DOWN");
    p.create_user(&login);
    let secret = format!("password=env:{PW_VAR}");
    // An unreachable target is an environment error: exit 2, nothing sent, the task is no
    // attempt and stays Pending for `provflow resume`.
    let out = p.expect(2, &["run", "--process", db.process, "--user", &login, "--secret", &secret]);
    assert!(out.stderr.contains(&format!("cannot connect to {} at 127.0.0.1:1/dbum", db.server)), "{out}");
    assert!(out.stderr.contains("stays Pending"), "{out}");
    let tasks = p.expect(0, &["task", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&tasks.stdout).expect("task list JSON");
    let create = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["account"]["user"] == login.as_str()))
        .unwrap_or_else(|| panic!("no task for {login}\n{tasks}"));
    assert_eq!(create["status"], "Pending", "{tasks}");
}
