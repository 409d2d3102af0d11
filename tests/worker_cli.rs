//! `provflow worker` on a SQLite store, through the binary: `run --enqueue` and a worker
//! finish the work; one worker per SQLite store; the commands leave the running to a live
//! worker; `--enqueue` with a secret refuses without a key; SIGTERM stops it cleanly;
//! `worker list`. The fleet on PostgreSQL is `worker_fleet.rs`.

#[path = "runner_common.rs"]
mod common;

use common::{Project, KEY};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const DBUM: &str = "DBUM Account";

/// A worker process, SIGTERMed (then killed) when dropped.
struct Worker {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Worker {
    fn start(p: &Project, args: &[&str]) -> Worker {
        let mut all = vec!["worker", "--log-format", "json", "--poll", "1", "--lease", "3"];
        all.extend_from_slice(args);
        let mut child = p.command(&all, &[]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Worker { child, lines, log: vec![] };
        w.wait_for("worker_started", Duration::from_secs(30));
        w
    }

    /// Waits for a log line of `event`; the line.
    fn wait_for(&mut self, event: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    let v: serde_json::Value =
                        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                    if v["event"] == event {
                        return v;
                    }
                }
                Err(_) => panic!("no `{event}` within {within:?}; log so far:\n{}", self.log.join("\n")),
            }
        }
    }

    fn terminate(&mut self) -> i32 {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the worker did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with the `kill` command (no unsafe code in tests either).
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success());
}

fn project() -> Project {
    let p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
    p.install_dbum();
    for u in ["JDOE", "ASMITH", "BKING"] {
        p.create_user(u);
    }
    p
}

fn statuses(p: &Project) -> Vec<String> {
    let v = p.json(0, &["account", "list"], &[]);
    v.as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap().to_string()).collect()
}

#[test]
fn enqueued_accounts_are_run_by_the_worker_and_commands_leave_the_running_to_it() {
    let p = project();
    let pw = [("PW", "w0rker-Secret")];
    let run = ["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--user", "ASMITH", "--secret", "password=env:PW"];
    let mut enqueue = run.to_vec();
    enqueue.push("--enqueue");
    let out = p.json(0, &enqueue, &pw);
    assert_eq!(out["enqueued"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(statuses(&p), ["Provisioning", "Provisioning"], "enqueue runs nothing");

    let mut w = Worker::start(&p, &["--id", "w1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while statuses(&p) != ["Provisioned", "Provisioned"] {
        assert!(Instant::now() < deadline, "not provisioned: {:?}\n{}", statuses(&p), w.log.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second worker on a SQLite store is refused, naming the first.
    let second = p.pf(&["worker", "--id", "w2"], &[]);
    assert_eq!(second.code(), Some(2), "{second}");
    assert!(second.stderr.contains("w1"), "{second}");
    // While it lives, `run` and `resume` refuse; `worker list` shows it live.
    let mut again = run.to_vec();
    again[5] = "BKING";
    again.truncate(6);
    again.extend(["--secret", "password=env:PW"]);
    let refused = p.pf(&again, &pw);
    assert_eq!(refused.code(), Some(2), "{refused}");
    assert!(refused.stderr.contains("--enqueue"), "{refused}");
    let resume = p.pf(&["resume"], &[]);
    assert_eq!(resume.code(), Some(2), "{resume}");
    let list = p.json(0, &["worker", "list"], &[]);
    assert_eq!((list[0]["id"].as_str(), list[0]["state"].as_str()), (Some("w1"), Some("live")), "{list}");
    // A user disabled by a person: the command commits the Disable task, the worker runs it.
    p.expect(0, &["user", "disable", "JDOE"], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = p.account(DBUM, "JDOE");
        if a["account"]["status"] == "Disabled" {
            break;
        }
        assert!(Instant::now() < deadline, "not disabled: {a}\n{}", w.log.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(w.terminate(), 0, "{}", w.log.join("\n"));
    assert!(w.log.iter().any(|l| l.contains("\"worker_stopped\"")), "{}", w.log.join("\n"));
    let list = p.json(0, &["worker", "list"], &[]);
    assert_eq!(list[0]["state"].as_str(), Some("stopped"), "{list}");
    let human = p.expect(0, &["worker", "list"], &[]);
    assert!(human.stdout.contains("w1") && human.stdout.contains("stopped"), "{human}");
    // Nothing of the secret in the logs.
    assert!(!w.log.iter().any(|l| l.contains("w0rker-Secret")));
    // Without live workers, `run` runs as before.
    let out = p.json(0, &again, &pw);
    assert_eq!(out["account"]["status"], "Provisioned", "{out}");
}

#[test]
fn enqueue_with_a_secret_needs_a_key_and_creates_nothing_without_one() {
    let mut p = project();
    p.env.retain(|(k, _)| k != "PROVFLOW_SECRET_KEY");
    let out = p.pf(
        &["run", p.ir(), "--process", DBUM, "--user", "JDOE", "--secret", "password=env:PW", "--enqueue"],
        &[("PW", "n0-key-Secret")],
    );
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("PROVFLOW_SECRET_KEY") && out.stderr.contains("nothing was created"), "{out}");
    assert!(!out.stderr.contains("n0-key-Secret"));
    assert_eq!(p.json(0, &["account", "list"], &[]), serde_json::json!([]));
}

#[test]
fn a_bad_metrics_address_and_a_malformed_id_are_refused_before_anything_starts() {
    let p = project();
    let bad = p.pf(&["worker", "--metrics", "not an address"], &[]);
    assert_eq!(bad.code(), Some(2), "{bad}");
    assert!(bad.stderr.contains("--metrics"), "{bad}");
    let bad = p.pf(&["worker", "--concurrency", "0"], &[]);
    assert_eq!(bad.code(), Some(2), "{bad}");
    let list = p.json(0, &["worker", "list"], &[]);
    assert_eq!(list, serde_json::json!([]), "nothing registered");
}
