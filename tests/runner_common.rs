//! Helpers shared by the SQLite runner tests (`runner_stories`, `runner_secrets`,
//! `runner_durability`): a project with `definitions/` compiled once to an IR file, the DBUM
//! target installed, and commands run with a deadline.

#![allow(dead_code)]

use provflow_tests::{run_bounded, RunOutput, TempProject};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every command of these tests finishes well within this; a hang fails the test.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A key for `PROVFLOW_SECRET_KEY` (64 hex digits).
pub const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

pub struct Project {
    pub dir: TempProject,
    /// `definitions/` compiled once: runs load it instead of compiling again.
    pub ir: PathBuf,
    /// Extra environment for every command (`PROVFLOW_SECRET_KEY`, `PROVFLOW_NOW`, ...).
    pub env: Vec<(String, String)>,
    /// Extra global arguments for every command (`--state`, `--target`).
    pub global: Vec<String>,
}

impl Project {
    /// A project with a copy of the repository's `definitions/`, compiled to `ir.json`.
    pub fn new() -> Self {
        let dir = TempProject::new();
        dir.copy_from_repo("definitions");
        let ir = dir.path().join("ir.json");
        let out = run_bounded(dir.provflow().args(["compile", "definitions", "--out", "ir.json"]), DEADLINE);
        assert_eq!(out.code(), Some(0), "compile failed\n{out}");
        Project { dir, ir, env: Vec::new(), global: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ir(&self) -> &str {
        self.ir.to_str().unwrap_or("ir.json")
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut cmd = self.dir.provflow();
        cmd.args(&self.global).args(args);
        cmd.env_remove("PROVFLOW_SECRET_KEY").env_remove("PROVFLOW_NOW").env_remove("DBUM_SQLITE_URL");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `provflow ARGS` (with the project's global arguments and environment).
    pub fn pf(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        run_bounded(&mut self.command(args, env), DEADLINE)
    }

    /// Runs a command that must exit with `code`.
    pub fn expect(&self, code: i32, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        let out = self.pf(args, env);
        assert_eq!(out.code(), Some(code), "provflow {args:?}\n{out}");
        out
    }

    /// Runs a `--format json` command that must exit with `code` and parses its stdout.
    pub fn json(&self, code: i32, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.expect(code, &all, env);
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{out}"))
    }

    /// `target install dbum-sqlite`.
    pub fn install_dbum(&self) {
        self.expect(0, &["target", "install", "dbum-sqlite", "definitions"], &[]);
    }

    /// `user create LOGIN` with the attributes `definitions/users.yaml` requires.
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
                "--attr",
                "usr_udf_building=HQ-North",
            ],
            &[],
        );
    }

    /// `account show --format json` of a DBUM-like account.
    pub fn account(&self, process: &str, user: &str) -> serde_json::Value {
        self.json(0, &["account", "show", "--process", process, "--user", user], &[])
    }

    /// The default embedded DBUM target database.
    pub fn dbum_db(&self) -> PathBuf {
        self.path().join(".provflow/targets/dbum-sqlite.db")
    }

    pub fn state_db(&self) -> PathBuf {
        self.path().join(".provflow/state.db")
    }
}

/// Opens an existing SQLite file for assertions. Read-write: after a killed process, the first
/// reader of a database in rollback-journal mode must roll the hot journal back, as any
/// provflow opening it would.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    conn
}

/// `select count(*) ...` with one text parameter.
pub fn count(conn: &rusqlite::Connection, sql: &str, param: &str) -> i64 {
    conn.query_row(sql, [param], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The account status of an `account show`/`run` JSON object.
pub fn status(v: &serde_json::Value) -> &str {
    v["account"]["status"].as_str().unwrap_or("<none>")
}

/// (name, status, response, attempt) of each task of an `account show`/`run` JSON object.
pub fn tasks(v: &serde_json::Value) -> Vec<(String, String, Option<String>, i64)> {
    v["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_string(),
                        t["status"].as_str().unwrap_or_default().to_string(),
                        t["response"].as_str().map(String::from),
                        t["attempt"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the exact key sets of the SPEC §5 `run`/`account show` object.
pub fn assert_account_shape(v: &serde_json::Value) {
    let keys = |o: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = o.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(v), ["account", "tasks"], "{v}");
    assert_eq!(keys(&v["account"]), ["id", "process", "status", "user"], "{v}");
    assert!(v["account"]["id"].is_i64(), "{v}");
    for t in v["tasks"].as_array().unwrap_or_else(|| panic!("tasks is not an array: {v}")) {
        assert_eq!(keys(t), ["attempt", "id", "name", "response", "status"], "{t}");
        assert!(t["id"].is_i64() && t["attempt"].is_i64(), "{t}");
        assert!(t["response"].is_null() || t["response"].is_string(), "{t}");
    }
}

/// A database of its own on the test server, dropped at the end.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    /// `None` (the test skips) without `PROVFLOW_TEST_PG_URL`.
    pub fn new() -> Option<Self> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let admin = provflow_tests::database_url("PROVFLOW_TEST_PG_URL")?;
        let name = format!("pf_state_{}_{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("the test server");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        // The admin URL with the database replaced.
        let start = admin.find("://").map(|i| i + 3).unwrap_or(0);
        let path = admin[start..].find('/').map(|i| start + i).unwrap_or(admin.len());
        let query = admin[path..].find('?').map(|i| admin[path + i..].to_string()).unwrap_or_default();
        let url = format!("{}/{name}{query}", &admin[..path]);
        Some(Database { admin, name, url })
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("the test database")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}
