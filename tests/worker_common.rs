//! Helpers of the `provflow worker` fleet tests (`worker_fleet`): a project whose state store
//! is a fresh PostgreSQL database, workers started as child processes with their JSON log in
//! a file each (killed on drop, so a failing test leaves no process behind), users written in
//! bulk, accounts enqueued, signals, and the logs read back.

#![allow(dead_code)]

use crate::common::{Database, Project, KEY};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The password of every enqueued account.
pub const PW: &str = "Fleet-pw-1";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A small pseudo-random generator (xorshift), seeded from the clock; the seed is printed so
/// a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let seed = std::env::var("PROVFLOW_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| (now_ms() as u64) ^ u64::from(std::process::id()).rotate_left(32))
            | 1;
        eprintln!("random seed: PROVFLOW_TEST_SEED={seed}");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// In `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// A `provflow worker` child process; SIGKILLed on drop if still running.
pub struct Worker {
    pub id: String,
    pub child: Child,
    pub log: PathBuf,
    pub exited: Option<std::process::ExitStatus>,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} ({}) failed", self.pid(), self.id);
    }

    /// Waits for the process to end; `None` after `within`.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        if let Some(s) = self.exited {
            return Some(s);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
                return Some(s);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(10)).expect("a SIGKILLed worker ends");
    }

    /// Every JSON object of its log (stderr), in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The events named `name`.
    pub fn named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e["event"] == name).collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, for failure messages.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(12);
        format!("--- {} (pid {}) log tail\n{}", self.id, self.pid(), lines[from..].join("\n"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A project whose state is a fresh PostgreSQL database, its workers, and (optionally) a PostgreSQL
/// target database. Roles the DBUM procedures created (`CREATE ROLE`, cluster-wide) for this
/// test's logins are dropped at the end, on failure too.
pub struct Fleet {
    pub workers: Vec<Worker>,
    pub p: Project,
    pub state: Database,
    pub target: Option<Database>,
    /// Every login of this fleet starts with it (lower case: the PostgreSQL procedures fold
    /// names to lower case).
    pub prefix: String,
}

impl Fleet {
    /// `None` (the test skips) without `PROVFLOW_TEST_PG_URL`. `pg_target`: a second database
    /// for the `dbum-pg` target, with its procedures installed.
    pub fn new(pg_target: bool) -> Option<Self> {
        let state = Database::new()?;
        let mut p = Project::new().with_env("PROVFLOW_SECRET_KEY", KEY);
        p.global = vec!["--state".into(), state.url.clone()];
        let target = if pg_target { Some(Database::new()?) } else { None };
        if let Some(t) = &target {
            p.env.push(("DBUM_PG_URL".into(), t.url.clone()));
        }
        let mut rng = Rng::new();
        let prefix = format!("wf{:x}{:04x}u", std::process::id(), rng.next() & 0xffff);
        let f = Fleet { workers: Vec::new(), p, state, target, prefix };
        if pg_target {
            f.p.expect(0, &["target", "install", "dbum-pg", "definitions"], &[]);
        } else {
            f.p.install_dbum();
        }
        Some(f)
    }

    /// The logins `PREFIX1..=PREFIXn`, created as users: the first with `user create`, the
    /// rest written into the store's `users` table as `user create` writes them (a command
    /// per user would take minutes for a thousand).
    pub fn users(&self, n: usize) -> Vec<String> {
        let logins: Vec<String> = (1..=n).map(|i| format!("{}{i}", self.prefix)).collect();
        let first = &logins[0];
        self.p.expect(0, &["user", "create", first, "--attr", "usr_udf_cost_center=CC1"], &[]);
        let mut c = self.state.client();
        let row = c.query_one("SELECT attributes, status, created_at FROM users WHERE login = $1", &[first]).unwrap();
        let (attrs, status, at): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let expected = format!("{{\"usr_login\":\"{first}\",\"usr_udf_cost_center\":\"CC1\"}}");
        assert_eq!(attrs, expected, "the attributes `user create` writes changed: update this helper");
        c.execute(
            "INSERT INTO users(login, attributes, status, locked, created_at, updated_at)
             SELECT l, json_build_object('usr_login', l, 'usr_udf_cost_center', 'CC1')::text, $2, false, $3, $3
             FROM unnest($1::text[]) AS l",
            &[&logins[1..].to_vec(), &status, &at],
        )
        .unwrap();
        logins
    }

    /// `run --enqueue` for `logins` (through a file); the account ids.
    pub fn enqueue(&self, process: &str, logins: &[String]) -> Vec<i64> {
        let file = self.p.path().join(format!("users-{}.txt", now_ms()));
        std::fs::write(&file, logins.join("\n") + "\n").unwrap();
        let file = file.to_str().unwrap().to_string();
        let v = self.p.json(
            0,
            &["run", self.p.ir(), "--process", process, "--users", &file, "--secret", "password=env:PW", "--enqueue"],
            &[("PW", PW)],
        );
        assert_eq!(v["process"], process, "{v}");
        let ids: Vec<i64> = v["enqueued"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(ids.len(), logins.len(), "{v}");
        ids
    }

    /// Starts `provflow worker --id ID --log-format json ARGS` with `env`; its log goes to a
    /// file. Returns its index in `workers`.
    pub fn spawn(&mut self, id: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        let log = self.p.path().join(format!("worker-{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut all = vec!["worker", "--id", id, "--log-format", "json"];
        all.extend_from_slice(args);
        let mut cmd = self.p.command(&all, env);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(file)).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start worker {id}: {e}"));
        self.workers.push(Worker { id: id.to_string(), child, log, exited: None });
        self.workers.len() - 1
    }

    pub fn worker(&self, id: &str) -> &Worker {
        self.workers.iter().find(|w| w.id == id).unwrap_or_else(|| panic!("no worker {id}"))
    }

    pub fn worker_mut(&mut self, id: &str) -> &mut Worker {
        self.workers.iter_mut().find(|w| w.id == id).unwrap_or_else(|| panic!("no worker {id}"))
    }

    /// The log tail of every worker still running (or of all, when none is), and the queue
    /// as the store sees it, for failure messages.
    pub fn tails(&self) -> String {
        let running: Vec<&Worker> = self.workers.iter().filter(|w| w.exited.is_none()).collect();
        let shown = if running.is_empty() { self.workers.iter().collect() } else { running };
        let queue: Vec<String> = self
            .state
            .client()
            .query(
                "SELECT status || ' held=' || held || ' calling=' || calling || ' claimed_by=' || coalesce(claimed_by, '-')
                   || ' expires=' || coalesce(lease_expires_at::text, '-') || ': ' || count(*)
                 FROM task_instances WHERE status IN ('Pending', 'Waiting')
                 GROUP BY status, held, calling, claimed_by, lease_expires_at ORDER BY 1 LIMIT 40",
                &[],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        format!(
            "now={}\n--- open tasks\n{}\n{}",
            now_ms() / 1000,
            queue.join("\n"),
            shown.iter().map(|w| w.tail()).collect::<Vec<_>>().join("\n")
        )
    }

    /// Waits (polling every 100 ms) until `done`, failing the test with the logs after `within`.
    pub fn wait_for(&self, what: &str, within: Duration, mut done: impl FnMut(&Fleet) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < within, "{what}: not within {within:?}\n{}", self.tails());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Tasks that a worker may still run: Pending (not held, not manual) or Waiting.
    pub fn open_work(&self) -> i64 {
        self.state.count(
            "SELECT count(*) FROM task_instances WHERE (status = 'Pending' AND NOT held AND NOT manual) OR status = 'Waiting'",
        )
    }

    /// Waits until no work is left.
    pub fn drain(&self, within: Duration) {
        self.wait_for("the fleet drains the queue", within, |f| f.open_work() == 0);
    }

    /// SIGTERMs every running worker and waits for each to exit 0.
    pub fn stop_all(&mut self, within: Duration) {
        for w in self.workers.iter().filter(|w| w.exited.is_none()) {
            w.signal("TERM");
        }
        let mut failures = Vec::new();
        for w in self.workers.iter_mut() {
            if w.exited.is_some() {
                continue;
            }
            match w.wait(within) {
                Some(s) if s.success() => {}
                other => failures.push(format!("{} ended with {other:?}", w.id)),
            }
        }
        assert!(failures.is_empty(), "{failures:?}\n{}", self.tails());
    }

    /// `task list --format json`.
    pub fn task_list(&self) -> Vec<serde_json::Value> {
        self.p.json(0, &["task", "list"], &[]).as_array().unwrap().clone()
    }

    /// `worker list --format json`.
    pub fn worker_list(&self) -> Vec<serde_json::Value> {
        self.p.json(0, &["worker", "list"], &[]).as_array().unwrap().clone()
    }

    /// The rows of the target's audit table (`dbum_audit_log` on PostgreSQL, `audit_log` in the
    /// SQLite file), counted by message.
    pub fn target_audit(&self) -> BTreeMap<String, i64> {
        match &self.target {
            Some(t) => t
                .client()
                .query("SELECT message, count(*) FROM dbum_audit_log GROUP BY message", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            None => {
                let c = crate::common::open_db(&self.p.dbum_db());
                let mut s = c.prepare("SELECT message, count(*) FROM audit_log GROUP BY message").unwrap();
                let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
                rows.map(Result::unwrap).collect()
            }
        }
    }

    /// The status of each account, by user login.
    pub fn account_statuses(&self) -> BTreeMap<String, String> {
        self.state
            .client()
            .query("SELECT user_login, status FROM accounts", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if w.exited.is_none() {
                let _ = w.child.kill();
                let _ = w.child.wait();
                w.exited = w.child.try_wait().ok().flatten();
            }
        }
        if self.target.is_some() {
            let pattern = format!("{}%", self.prefix);
            if let Ok(mut c) = postgres::Client::connect(&self.state.url, postgres::NoTls) {
                let roles: Vec<String> = c
                    .query("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1", &[&pattern])
                    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_default();
                for r in roles {
                    let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\""));
                }
            }
        }
    }
}

/// An RFC 3339 UTC timestamp of the worker log (`2026-11-27T16:19:04.100Z`) in milliseconds
/// since the Unix epoch.
pub fn ts_ms(ts: &str) -> i64 {
    let n = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp {ts}"));
    let (date, time) = ts.trim_end_matches('Z').split_once('T').unwrap_or_else(|| panic!("bad timestamp {ts}"));
    let d: Vec<&str> = date.split('-').collect();
    let (y, m, day) = (n(d[0]), n(d[1]), n(d[2]));
    let t: Vec<&str> = time.split(':').collect();
    let (hh, mm) = (n(t[0]), n(t[1]));
    let secs: f64 = t[2].parse().unwrap_or_else(|_| panic!("bad timestamp {ts}"));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60) * 1000 + (secs * 1000.0).round() as i64
}

/// The `ts` of a log event, in milliseconds since the epoch.
pub fn event_ms(e: &serde_json::Value) -> i64 {
    ts_ms(e["ts"].as_str().unwrap_or_else(|| panic!("no ts in {e}")))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.0: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// The value of an OpenMetrics sample line `name value` (or `name{labels} value`).
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn timestamps_parse() {
    assert_eq!(ts_ms("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(ts_ms("2000-03-01T00:00:01.250Z"), 951_868_801_250);
}
