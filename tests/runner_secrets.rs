//! Secrets never leak (SPEC §4 Secrets): a full lifecycle with recognisable passwords given
//! through `--secret password=env:VAR` / `file:PATH`, once with `PROVFLOW_SECRET_KEY` and once
//! without. After every command, every file under `.provflow` (state.db, its -wal and -shm,
//! anything else) and everything the command printed (human and `--format json`, `plan`,
//! errors) is searched for the passwords: never found. The target database is where the
//! emulated procedure stores the password on purpose (`db_users.password`): it must be there,
//! and in no other table of the target.

#[path = "runner_common.rs"]
mod common;

use common::{count, open_db, status, Project, KEY};
use std::path::Path;

const DBUM: &str = "DBUM Account";
const FIRST: &str = "Canary-Pw-7f3a9c1e";
const SECOND: &str = "Canary-Pw-NEW-19b2d4";
const PLANNED: &str = "Canary-Pw-PLAN-5e6f70";

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

struct Checker<'a> {
    p: &'a Project,
    env: Vec<(&'static str, &'static str)>,
    commands: usize,
    files_seen: std::collections::BTreeSet<String>,
}

impl Checker<'_> {
    /// Runs a command, then searches its output and every file under `.provflow`.
    fn run(&mut self, code: i32, args: &[&str]) -> String {
        let out = self.p.pf(args, &self.env);
        assert_eq!(out.code(), Some(code), "provflow {args:?}\n{out}");
        for secret in [FIRST, SECOND, PLANNED] {
            assert!(!out.stdout.contains(secret), "provflow {args:?} printed a secret on stdout\n{out}");
            assert!(!out.stderr.contains(secret), "provflow {args:?} printed a secret on stderr\n{out}");
        }
        self.commands += 1;
        self.scan();
        out.stdout
    }

    fn scan(&mut self) {
        let mut all = Vec::new();
        files(&self.p.path().join(".provflow"), &mut all);
        for f in all {
            let bytes = std::fs::read(&f).unwrap_or_default();
            if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
                self.files_seen.insert(name.to_string());
            }
            for secret in [FIRST, SECOND, PLANNED] {
                assert!(!contains(&bytes, secret), "{} holds a secret", f.display());
            }
        }
    }
}

fn lifecycle(with_key: bool) {
    let mut p = Project::new();
    if with_key {
        p = p.with_env("PROVFLOW_SECRET_KEY", KEY);
    }
    // The target outside `.provflow`, so that every byte under `.provflow` is the runner's.
    p.global = vec!["--target".into(), "dbum-sqlite=sqlite:dbum-target.db".into()];
    p.dir.write("second-password.txt", format!("{SECOND}\n"));
    let ir = p.ir().to_string();
    let mut c =
        Checker { p: &p, env: vec![("PW", FIRST), ("PLAN_PW", PLANNED)], commands: 0, files_seen: Default::default() };

    c.run(0, &["target", "install", "dbum-sqlite", "definitions"]);
    c.run(0, &["user", "create", "JDOE", "--attr", "usr_first_name=John", "--attr", "usr_udf_cost_center=CC-1"]);
    // Plans mask secrets, human and JSON.
    let plan = c.run(0, &["plan", &ir, "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PLAN_PW"]);
    assert!(plan.contains("********"), "the plan does not show the masked password:\n{plan}");
    c.run(
        0,
        &["--format", "json", "plan", &ir, "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PLAN_PW"],
    );
    // A secret fed to a plain field is refused without echoing it.
    c.run(
        2,
        &["run", &ir, "--process", DBUM, "--user", "JDOE", "--secret", "profile=env:PW", "--secret", "password=env:PW"],
    );

    let run =
        c.run(0, &["--format", "json", "run", &ir, "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW"]);
    let run: serde_json::Value = serde_json::from_str(run.trim()).unwrap();
    assert_eq!(status(&run), "Provisioned", "{run}");
    for format in ["human", "json"] {
        c.run(0, &["--format", format, "account", "show", "--process", DBUM, "--user", "JDOE"]);
        c.run(0, &["--format", format, "task", "list"]);
        c.run(0, &["--format", format, "account", "list"]);
        c.run(0, &["--format", format, "notifications", "list"]);
    }
    c.run(0, &["account", "set", "--process", DBUM, "--user", "JDOE", "--secret", "password=file:second-password.txt"]);
    c.run(0, &["--format", "json", "account", "show", "--process", DBUM, "--user", "JDOE"]);
    c.run(0, &["user", "disable", "JDOE"]);
    c.run(0, &["user", "enable", "JDOE"]);
    // Work left over is finished by `resume`; nothing of it prints a secret.
    c.run(0, &["resume"]);
    c.run(0, &["--format", "json", "resume"]);
    c.run(0, &["user", "delete", "JDOE"]);
    let last = c.run(0, &["--format", "json", "account", "show", "--process", DBUM, "--user", "JDOE"]);
    assert!(last.contains("\"Revoked\""), "{last}");
    assert!(c.commands >= 20);
    assert!(c.files_seen.contains("state.db"), "{:?}", c.files_seen);

    // The target stored the password, as the emulated procedure does on purpose, and the
    // second one replaced the first; no other table of the target holds either.
    let target = open_db(&p.path().join("dbum-target.db"));
    let audit: Vec<String> = {
        let mut stmt = target.prepare("select message from audit_log").unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert!(audit.iter().any(|m| m == "Reset Password for User JDOE"), "{audit:?}");
    assert!(!audit.iter().any(|m| m.contains(FIRST) || m.contains(SECOND)), "{audit:?}");
    // Deleted with the account: the row is gone; before that it held the second password.
    assert_eq!(count(&target, "select count(*) from db_users where username = ?1", "JDOE"), 0);

    // A second account proves the password lands in db_users (the deletion removed the first).
    c.run(0, &["user", "create", "ASMITH", "--attr", "usr_udf_cost_center=CC-2"]);
    c.run(0, &["run", &ir, "--process", DBUM, "--user", "ASMITH", "--secret", "password=env:PW"]);
    let stored: String =
        target.query_row("select password from db_users where username = 'ASMITH'", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, FIRST);
    c.scan();

    // Without a key nothing about the secret is kept; with one it is sealed.
    let state = open_db(&p.state_db());
    let form: String =
        state.query_row("select form from accounts where user_login = 'ASMITH'", [], |r| r.get(0)).unwrap();
    assert_eq!(form.contains("\"sealed\""), with_key, "{form}");
}

#[test]
fn no_secret_in_the_store_or_output_with_a_key() {
    lifecycle(true);
}

#[test]
fn no_secret_in_the_store_or_output_without_a_key() {
    lifecycle(false);
}
