//! `provflow worker` fleets end to end (issue 10, item 9): workers as child processes on a
//! PostgreSQL state store (a fresh database per test on the server of
//! `PROVFLOW_TEST_PG_URL`; skipped without it unless `PROVFLOW_REQUIRE_DATABASES=1`),
//! draining DBUM accounts on SQLite and PostgreSQL targets, killed, cut off from the store,
//! paused past their lease, stopped with SIGTERM, woken by NOTIFY, held to a target's call cap,
//! and watched through /metrics, /healthz and `worker list`.

#[path = "runner_common.rs"]
mod common;
#[path = "worker_common.rs"]
mod fleet;

use fleet::{event_ms, free_port, http_get, metric, now_ms, Fleet, Rng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DBUM_SQLITE: &str = "DBUM Account";
const DBUM_PG: &str = "DBUM Account PG";

/// Every account Provisioned, and each procedure called exactly once per account.
fn assert_each_called_once(f: &Fleet, logins: &[String]) {
    let statuses = f.account_statuses();
    let not_done: Vec<(&String, &String)> = statuses.iter().filter(|(_, s)| *s != "Provisioned").collect();
    assert!(
        not_done.is_empty(),
        "{} accounts not Provisioned: {:?}",
        not_done.len(),
        &not_done[..not_done.len().min(10)]
    );
    assert_eq!(statuses.len(), logins.len());
    let audit = f.target_audit();
    let mut wrong = Vec::new();
    for l in logins {
        for m in [format!("Added User {l}"), format!("Set Profile DEFAULT for User {l}")] {
            let n = audit.get(&m).copied().unwrap_or(0);
            if n != 1 {
                wrong.push(format!("{m}: {n} times"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} procedure calls not made exactly once: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert_eq!(audit.values().sum::<i64>(), 2 * logins.len() as i64, "no other audit row");
}

fn drain_1000(pg_target: bool) {
    let Some(mut f) = Fleet::new(pg_target) else { return };
    let logins = f.users(1000);
    f.enqueue(if pg_target { DBUM_PG } else { DBUM_SQLITE }, &logins);
    for i in 1..=3 {
        f.spawn(&format!("w{i}"), &["--lease", "3", "--poll", "1"], &[]);
    }
    f.drain(Duration::from_secs(150));
    f.stop_all(Duration::from_secs(30));
    assert_each_called_once(&f, &logins);
    // Nothing went wrong on the way: no store error, no held task.
    for w in &f.workers {
        for bad in ["store_error", "claim_failed", "task_held", "heartbeat_failed"] {
            assert!(w.named(bad).is_empty(), "{bad} in {}", w.tail());
        }
    }
}

#[test]
fn three_workers_drain_1000_accounts_on_the_sqlite_target() {
    drain_1000(false);
}

#[test]
fn three_workers_drain_1000_accounts_on_the_postgres_target() {
    drain_1000(true);
}

#[test]
fn chaos_kills_and_terminated_store_connections_lose_nothing_and_call_nothing_twice() {
    let Some(mut f) = Fleet::new(true) else { return };
    // The long run (scripts/chaos.sh) sets more accounts and faults than CI's.
    let knob = |name: &str, default: usize| {
        std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(default)
    };
    let (accounts, kills_wanted, cuts) =
        (knob("PROVFLOW_CHAOS_ACCOUNTS", 1000), knob("PROVFLOW_CHAOS_KILLS", 10), knob("PROVFLOW_CHAOS_CUTS", 5));
    let logins = f.users(accounts);
    let lease = 3;
    let delay = [("PROVFLOW_TEST_STEP_DELAY_MS", "60")];
    let args = ["--lease", "3", "--poll", "1", "--grace", "5"];
    let mut live: Vec<String> = (1..=3).map(|i| format!("w{i}")).collect();
    for id in &live {
        f.spawn(id, &args, &delay);
    }
    let started = std::time::Instant::now();
    f.enqueue(DBUM_PG, &logins);
    let mut rng = Rng::new();
    // Kills and cut connections, in a random order, at random moments.
    let mut actions: Vec<bool> = [vec![true; kills_wanted], vec![false; cuts]].concat();
    for i in (1..actions.len()).rev() {
        actions.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let mut kills: BTreeMap<String, i64> = BTreeMap::new();
    let mut terminated = 0;
    let mut next = 4;
    let mut admin = f.state.client();
    let state_db = f.state.client().query_one("SELECT current_database()::text", &[]).unwrap().get::<_, String>(0);
    for kill in actions {
        std::thread::sleep(Duration::from_millis(rng.range(150, 450)));
        if kill {
            let victim = live.remove(rng.range(0, live.len() as u64) as usize);
            let at = now_ms();
            f.worker_mut(&victim).kill9();
            kills.insert(victim, at);
            let id = format!("w{next}");
            next += 1;
            f.spawn(&id, &args, &delay);
            live.push(id);
        } else {
            let n = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND application_name = 'provflow' AND pid <> pg_backend_pid()",
                    &[&state_db],
                )
                .unwrap()
                .len();
            assert!(n > 0, "no provflow connection to the state store to terminate");
            terminated += 1;
        }
    }
    let left = f.open_work();
    eprintln!("chaos over: {} kills, {terminated} terminations, {left} tasks still open", kills.len());
    assert!(left > 0, "the fleet drained before the chaos ended: the test proves nothing; slow it down");
    f.drain(Duration::from_secs(180 + accounts as u64 / 20));
    let drained = started.elapsed();
    f.stop_all(Duration::from_secs(30));

    // No account lost: Provisioned, or with a held task listed with its note.
    let tasks = f.task_list();
    let held: Vec<&serde_json::Value> = tasks.iter().filter(|t| t["held"] == true).collect();
    for t in &held {
        let note = t["note"].as_str().unwrap_or_default();
        assert!(note.starts_with("provflow stopped while calling"), "a held task without the note: {t}");
        assert_eq!(t["status"], "Pending", "{t}");
    }
    let held_users: std::collections::BTreeSet<&str> =
        held.iter().map(|t| t["account"]["user"].as_str().unwrap()).collect();
    let statuses = f.account_statuses();
    assert_eq!(statuses.len(), logins.len());
    for (user, status) in &statuses {
        assert!(status == "Provisioned" || held_users.contains(user.as_str()), "account of {user} lost: {status}");
    }
    // No non-idempotent call twice; every Provisioned account created exactly once.
    let audit = f.target_audit();
    for l in &logins {
        let added = audit.get(&format!("Added User {l}")).copied().unwrap_or(0);
        assert!(added <= 1, "CREATE_PASSWORD_USER called {added} times for {l}");
        if statuses[l] == "Provisioned" {
            assert_eq!(added, 1, "{l} Provisioned without its Create User call");
        }
    }
    // Every rescue within lease + 5 s of what left the claim behind: the kill of the worker it
    // names or, from a worker that lives on, a claim of its whose answer was lost with a cut
    // connection (granted, but never known to the worker, so never renewed).
    let mut rescues = 0;
    for w in &f.workers {
        for e in w.named("claim_rescued") {
            rescues += 1;
            let from = e["from"].as_str().unwrap_or_default();
            let at = event_ms(&e);
            // The latest of the two before the rescue.
            let lost_claims =
                f.workers.iter().filter(|o| o.id == from).flat_map(|o| o.named("claim_failed")).map(|c| event_ms(&c));
            let left = kills.get(from).copied().into_iter().chain(lost_claims).filter(|t| *t <= at).max();
            let left = left.unwrap_or_else(|| {
                panic!("a rescue from {from}, which was neither killed nor lost a claim's answer before it: {e}")
            });
            let after = at - left;
            assert!(after <= (lease + 5) * 1000, "rescued {after} ms after {from} left the claim: {e}");
        }
    }
    eprintln!(
        "chaos figures: {accounts} accounts, {} kills, {terminated} cut connections, drained in {:.1} s, {rescues} rescues, {} held tasks, 0 lost, 0 non-idempotent calls twice",
        kills.len(),
        drained.as_secs_f64(),
        held.len()
    );
}

/// A worker paused (SIGSTOP) past its lease while it holds claims: another worker rescues and
/// finishes; resumed, the paused one commits nothing and calls nothing.
#[test]
fn a_worker_paused_past_its_lease_is_fenced_off() {
    let Some(mut f) = Fleet::new(true) else { return };
    let logins = f.users(4);
    f.enqueue(DBUM_PG, &logins);
    f.spawn(
        "slow",
        &["--lease", "2", "--poll", "1", "--concurrency", "1", "--batch", "4"],
        &[("PROVFLOW_TEST_STEP_DELAY_MS", "400")],
    );
    f.wait_for("the slow worker calls", Duration::from_secs(30), |f| {
        !f.worker("slow").named("claimed").is_empty()
            && f.state.count("SELECT count(*) FROM task_instances WHERE calling") > 0
    });
    f.worker("slow").signal("STOP");
    let stopped = now_ms();
    f.spawn("rescuer", &["--lease", "2", "--poll", "1"], &[]);
    f.drain(Duration::from_secs(60));
    // The rescuer took the work over from the paused worker.
    let rescued = f.worker("rescuer").named("claim_rescued");
    assert!(rescued.iter().any(|e| e["from"] == "slow"), "{}", f.tails());
    // Let the rescuer give its claims back before the paused worker resumes.
    std::thread::sleep(Duration::from_millis(500));
    let resumed_at = now_ms();
    f.worker("slow").signal("CONT");
    // Long enough for the resumed worker to finish its sleep, try a commit and a heartbeat.
    std::thread::sleep(Duration::from_secs(4));
    f.stop_all(Duration::from_secs(30));

    let slow = f.worker("slow");
    let after: Vec<String> = slow
        .events()
        .into_iter()
        .filter(|e| event_ms(e) >= resumed_at)
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        after.iter().any(|e| ["commit_fenced_off", "claim_lost", "call_not_started"].contains(&e.as_str())),
        "the resumed worker logged none of commit_fenced_off, claim_lost, call_not_started: {after:?}\n{}",
        slow.tail()
    );
    // It committed nothing after it resumed (the audit's `at` is in whole seconds).
    let late = f.state.count(&format!(
        "SELECT count(*) FROM task_audit WHERE actor = 'worker:slow' AND at >= {}",
        resumed_at.div_euclid(1000)
    ));
    assert_eq!(late, 0, "the fenced-off worker committed {late} transitions after SIGCONT");
    // It called nothing after it resumed, and nothing was called twice.
    let t = f.target.as_ref().unwrap();
    let late_calls = t.count(&format!(
        "SELECT count(*) FROM dbum_audit_log WHERE logged_at >= to_timestamp({})",
        resumed_at as f64 / 1000.0
    ));
    assert_eq!(late_calls, 0, "a target call after SIGCONT");
    let audit = f.target_audit();
    let statuses = f.account_statuses();
    let tasks = f.task_list();
    for l in &logins {
        let added = audit.get(&format!("Added User {l}")).copied().unwrap_or(0);
        let profile = audit.get(&format!("Set Profile DEFAULT for User {l}")).copied().unwrap_or(0);
        assert!(added <= 1 && profile <= 1, "{l}: {added} creates, {profile} profiles");
        if statuses[l] == "Provisioned" {
            assert_eq!((added, profile), (1, 1), "{l}");
        } else {
            // Held for a person: the paused worker may have been inside Create User.
            assert!(
                tasks.iter().any(|t| t["account"]["user"] == l.as_str() && t["held"] == true),
                "{l} is {} and not held",
                statuses[l]
            );
        }
    }
    assert!(stopped < resumed_at);
}

/// SIGTERM while calls are slow: exit 0 within the grace period, `worker_stopped`, no task
/// left marked calling without its call, and a new worker finishes everything.
#[test]
fn sigterm_drains_a_busy_worker_and_a_new_one_finishes() {
    let Some(mut f) = Fleet::new(true) else { return };
    let logins = f.users(6);
    f.enqueue(DBUM_PG, &logins);
    let grace = 10;
    f.spawn(
        "busy",
        &["--lease", "3", "--poll", "1", "--concurrency", "2", "--batch", "3", "--grace", "10"],
        &[("PROVFLOW_TEST_STEP_DELAY_MS", "300")],
    );
    f.wait_for("the busy worker calls", Duration::from_secs(30), |f| {
        f.state.count("SELECT count(*) FROM task_instances WHERE calling") > 0
    });
    let start = Instant::now();
    f.worker("busy").signal("TERM");
    let status = f.worker_mut("busy").wait(Duration::from_secs(grace + 10)).expect("the worker exits");
    let took = start.elapsed();
    assert!(status.success(), "{status:?}\n{}", f.tails());
    assert!(took <= Duration::from_secs(grace), "stopping took {took:?}, more than the grace period");
    let busy = f.worker("busy");
    assert_eq!(busy.named("worker_stopped").len(), 1, "{}", busy.tail());
    // Every task still marked calling had its call started (its audit row is on the target).
    let audit = f.target_audit();
    let calling: Vec<(String, String)> = f
        .state
        .client()
        .query(
            "SELECT a.user_login, t.task_name FROM task_instances t JOIN accounts a ON a.id = t.account_id WHERE t.calling",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (user, task) in &calling {
        let message = match task.as_str() {
            "Create User" => format!("Added User {user}"),
            _ => format!("Set Profile DEFAULT for User {user}"),
        };
        assert!(audit.contains_key(&message), "{task} of {user} marked calling but never called");
    }
    assert!(f.open_work() > 0, "the busy worker finished everything: nothing left to prove");
    f.spawn("next", &["--lease", "3", "--poll", "1"], &[]);
    f.drain(Duration::from_secs(60));
    f.stop_all(Duration::from_secs(30));
    assert!(f.task_list().iter().all(|t| t["held"] == false), "a task was held");
    assert_each_called_once(&f, &logins);
}

/// An idle worker with --poll 60 is woken by the commit of an enqueue (LISTEN/NOTIFY).
/// The store's server ends the connection of the worker's first registration (as a restart or
/// an administrator's `pg_terminate_backend` would): the worker tries again and starts, rather
/// than exiting.
#[test]
fn a_connection_lost_while_registering_is_tried_again() {
    let Some(mut f) = Fleet::new(true) else { return };
    let logins = f.users(2);
    // A sequence, not a table: what the killed transaction did is rolled back, nextval is not.
    f.state
        .client()
        .batch_execute(
            "CREATE SEQUENCE register_attempts;
             CREATE FUNCTION end_first_registration() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('register_attempts') = 1 THEN
                 PERFORM pg_terminate_backend(pg_backend_pid());
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER end_first_registration BEFORE INSERT ON workers
               FOR EACH ROW EXECUTE FUNCTION end_first_registration();",
        )
        .unwrap();
    f.enqueue(DBUM_PG, &logins);
    f.spawn("w1", &["--poll", "1"], &[]);
    f.wait_for("the worker starts", Duration::from_secs(30), |f| !f.worker("w1").named("worker_started").is_empty());
    let retried = f.worker("w1").named("store_error");
    assert_eq!(retried.len(), 1, "{}", f.tails());
    assert_eq!(
        (&retried[0]["phase"], &retried[0]["attempt"]),
        (&serde_json::json!("start"), &serde_json::json!(1)),
        "{}",
        f.tails()
    );
    assert_eq!(f.state.count("SELECT last_value FROM register_attempts"), 2);
    f.drain(Duration::from_secs(60));
    f.stop_all(Duration::from_secs(30));
    assert_each_called_once(&f, &logins);
}

#[test]
fn an_idle_worker_picks_up_enqueued_work_within_a_second() {
    let Some(mut f) = Fleet::new(true) else { return };
    let logins = f.users(1);
    f.spawn("idle", &["--poll", "60", "--lease", "3"], &[]);
    f.wait_for("the worker starts", Duration::from_secs(30), |f| !f.worker("idle").named("worker_started").is_empty());
    // Idle: its slots asleep on the 60 s poll.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(f.worker("idle").named("claimed").is_empty());
    f.enqueue(DBUM_PG, &logins);
    let enqueued = now_ms();
    f.wait_for("the first task is claimed", Duration::from_secs(5), |f| !f.worker("idle").named("claimed").is_empty());
    let claimed = event_ms(&f.worker("idle").named("claimed")[0]);
    let latency = claimed - enqueued;
    assert!(latency < 1000, "claimed {latency} ms after the enqueue returned");
    f.drain(Duration::from_secs(30));
    f.stop_all(Duration::from_secs(30));
}

/// `max_concurrent_calls: 2` holds across 3 workers of 4 slots each.
#[test]
fn a_target_cap_holds_across_the_fleet() {
    let Some(mut f) = Fleet::new(false) else { return };
    let Some(target) = common::Database::new() else { return };
    let dir = f.p.dir.copy_from_repo("tests/fixtures/worker_cap");
    let defs = dir.to_str().unwrap().to_string();
    f.p.expect(0, &["compile", &defs, "--deny-warnings", "--out", "cap.json"], &[]);
    f.p.env.push(("CAP_PG_URL".into(), target.url.clone()));
    f.p.expect(0, &["target", "install", "cap-pg", &defs], &[]);
    let logins: Vec<String> = (1..=60).map(|i| format!("{}{i}", f.prefix)).collect();
    f.p.expect(0, &["user", "create", &logins[0], "--attr", "usr_udf_cost_center=CC1"], &[]);
    f.state
        .client()
        .execute(
            "INSERT INTO users(login, attributes, status, locked, created_at, updated_at)
             SELECT l, json_build_object('usr_login', l, 'usr_udf_cost_center', 'CC1')::text, 'Active', false, 0, 0
             FROM unnest($1::text[]) AS l",
            &[&logins[1..].to_vec()],
        )
        .unwrap();
    let file = f.p.path().join("cap-users.txt");
    std::fs::write(&file, logins.join("\n")).unwrap();
    f.p.json(0, &["run", "cap.json", "--process", "Cap Account", "--users", file.to_str().unwrap(), "--enqueue"], &[]);
    for i in 1..=3 {
        f.spawn(&format!("c{i}"), &["--concurrency", "4", "--batch", "2", "--lease", "3", "--poll", "1"], &[]);
    }
    f.drain(Duration::from_secs(120));
    f.stop_all(Duration::from_secs(30));
    let (samples, max): (i64, i32) = {
        let r = target.client().query_one("SELECT count(*), max(running) FROM cap_samples", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(samples, 60, "one call per account");
    assert!(max <= 2, "{max} calls ran at once on a target capped at 2");
    assert_eq!(max, 2, "the cap was never reached: the test cannot tell a cap from no concurrency");
    assert_eq!(f.state.count("SELECT count(*) FROM accounts WHERE status = 'Provisioned'"), 60);
}

/// /metrics and /healthz answer during a run; `worker list` shows the workers live, then stopped.
#[test]
fn metrics_health_and_worker_list_during_a_run() {
    let Some(mut f) = Fleet::new(true) else { return };
    let logins = f.users(200);
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        let addr = format!("127.0.0.1:{port}");
        f.spawn(
            &format!("m{}", i + 1),
            &["--lease", "3", "--poll", "1", "--metrics", &addr],
            &[("PROVFLOW_TEST_STEP_DELAY_MS", "100")],
        );
    }
    f.wait_for("both workers start", Duration::from_secs(30), |f| {
        f.workers.iter().all(|w| !w.named("metrics_listening").is_empty() && !w.named("worker_started").is_empty())
    });
    f.enqueue(DBUM_PG, &logins);
    let port = ports[0];
    f.wait_for("a task completes", Duration::from_secs(60), |_| {
        metric(&http_get(port, "/metrics").1, "provflow_worker_tasks_completed_total").unwrap_or(0.0) > 0.0
    });
    assert!(f.open_work() > 0, "the run is over already: nothing observed during it");
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(metric(&body, "provflow_worker_tasks_claimed_total").unwrap_or(0.0) > 0.0, "{body}");
    assert!(body.contains("provflow_worker_store_tasks{"), "{body}");
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    let list = f.worker_list();
    for id in ["m1", "m2"] {
        let w = list.iter().find(|w| w["id"] == id).unwrap_or_else(|| panic!("{id} not listed: {list:?}"));
        assert_eq!(w["state"], "live", "{w}");
    }
    f.drain(Duration::from_secs(120));
    f.stop_all(Duration::from_secs(30));
    let list = f.worker_list();
    for id in ["m1", "m2"] {
        let w = list.iter().find(|w| w["id"] == id).unwrap();
        assert_eq!(w["state"], "stopped", "{w}");
    }
}
