//! Issue 9, item 7: a closed pipe loses nothing. A batched `run` whose reader goes away (the
//! read end closed before the first line, or `| head -1`) finishes every account, commits it,
//! and exits with its normal exit code, quietly: not killed by SIGPIPE, no panic, no message
//! about the pipe. A read command (`task list | head -1`) ends the same way.

use provflow_tests::{run_bounded, RunOutput, TempProject};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const DBUM: &str = "DBUM Account";
const USERS: usize = 24;

struct Project {
    dir: TempProject,
}

impl Project {
    /// DBUM on the embedded SQLite target, `USERS` users listed in `users.txt`; the user at
    /// `duplicate` already exists on the target, so its account ends with a rejection.
    fn new(duplicate: Option<usize>) -> Self {
        let dir = TempProject::new();
        dir.copy_from_repo("definitions");
        let p = Project { dir };
        p.expect(0, &["compile", "definitions", "--out", "ir.json"]);
        p.expect(0, &["target", "install", "dbum-sqlite", "ir.json"]);
        let mut list = String::new();
        for i in 0..USERS {
            let login = login(i);
            p.expect(
                0,
                &[
                    "user",
                    "create",
                    &login,
                    "--attr",
                    "usr_first_name=A",
                    "--attr",
                    "usr_last_name=B",
                    "--attr",
                    "usr_udf_cost_center=CC-1",
                ],
            );
            list.push_str(&login);
            list.push('\n');
        }
        p.dir.write("users.txt", list);
        if let Some(d) = duplicate {
            let db = rusqlite::Connection::open(p.dir.path().join(".provflow/targets/dbum-sqlite.db")).expect("target");
            db.execute("insert into db_users(username, password) values (?1, 'x')", [login(d)]).expect("insert");
        }
        p
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.dir.provflow();
        cmd.args(args).env("PROVFLOW_SECRET_KEY", KEY).env("PW", "Pipe-pw-1").env_remove("DBUM_SQLITE_URL");
        cmd
    }

    fn expect(&self, code: i32, args: &[&str]) -> RunOutput {
        let out = run_bounded(&mut self.command(args), DEADLINE);
        assert_eq!(out.code(), Some(code), "provflow {args:?}\n{out}");
        out
    }

    /// (user, status) of every account.
    fn accounts(&self) -> Vec<(String, String)> {
        let out = self.expect(0, &["--format", "json", "account", "list"]);
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("account list JSON");
        v.as_array()
            .expect("an array")
            .iter()
            .map(|a| (a["user"].as_str().unwrap_or("").to_string(), a["status"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    fn assert_all_finished(&self, duplicate: Option<usize>) {
        let accounts = self.accounts();
        assert_eq!(accounts.len(), USERS, "{accounts:?}");
        for (i, (user, status)) in accounts.iter().enumerate() {
            assert_eq!(user, &login(i));
            let expected = if Some(i) == duplicate { "Provisioning" } else { "Provisioned" };
            assert_eq!(status, expected, "{user}: {accounts:?}");
        }
    }
}

fn login(i: usize) -> String {
    format!("PIPE{i:03}")
}

fn run_args() -> Vec<&'static str> {
    vec!["run", "ir.json", "--process", DBUM, "--users", "users.txt", "--batch", "3", "--secret", "password=env:PW"]
}

fn wait(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                panic!("provflow did not finish within {DEADLINE:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for provflow: {e}"),
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    text
}

/// The reader is gone before the first line: every write fails, the work does not.
#[test]
fn a_run_whose_output_is_closed_from_the_start_finishes_every_account() {
    for format in ["human", "json"] {
        let p = Project::new(None);
        let mut args = vec!["--format", format];
        args.extend(run_args());
        let mut child = p.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start provflow");
        drop(child.stdout.take());
        let status = wait(&mut child);
        let stderr = stderr_of(&mut child);
        assert_eq!(status.code(), Some(0), "{format}: {status} (a signal has no code)\n{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.to_lowercase().contains("pipe"), "{format}: {stderr}");
        p.assert_all_finished(None);
    }
}

/// `run ... | head -1`: one line read, then the pipe closes, and standard error is gone too.
/// The account whose user already exists on the target waits for its retry, as without a
/// pipe; every other one is Provisioned.
#[test]
fn a_run_read_by_head_finishes_every_account() {
    for format in ["human", "json"] {
        let duplicate = Some(5);
        let p = Project::new(duplicate);
        let mut args = vec!["--format", format];
        args.extend(run_args());
        let mut child = p.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start provflow");
        let mut first = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut first).expect("the first line");
        }
        // Standard error goes away too.
        drop(child.stderr.take());
        let status = wait(&mut child);
        assert!(!first.is_empty(), "{format}: no first line");
        assert_eq!(status.code(), Some(0), "{format}: {status} (a signal has no code)");
        p.assert_all_finished(duplicate);
    }
}

/// A read command: its reader gone before the first line, and through a real shell pipe
/// (`provflow task list | head -1`, with `pipefail`), it ends quietly with exit 0.
#[test]
fn a_read_command_into_a_closed_pipe_ends_quietly() {
    let p = Project::new(None);
    p.expect(0, &run_args());
    for format in ["human", "json"] {
        let mut child = p
            .command(&["--format", format, "task", "list"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provflow");
        drop(child.stdout.take());
        let status = wait(&mut child);
        let stderr = stderr_of(&mut child);
        assert_eq!(status.code(), Some(0), "{format}: {status} (a signal has no code)\n{stderr}");
        assert!(stderr.is_empty(), "{format}: {stderr}");

        let script = format!("set -o pipefail; \"$0\" --format {format} task list | head -1; echo \"status $?\" >&2");
        let mut shell = std::process::Command::new("bash");
        shell.current_dir(p.dir.path()).arg("-c").arg(&script).arg(provflow_tests::provflow_bin());
        shell.env("NO_COLOR", "1").env_remove("PROVFLOW_STATE");
        let out = run_bounded(&mut shell, DEADLINE);
        assert_eq!(out.stdout.lines().count(), 1, "{format}\n{out}");
        assert_eq!(out.stderr.trim(), "status 0", "{format}\n{out}");
    }
}
