//! Provisioning throughput on PostgreSQL against the same CALLs made directly through the
//! driver (bench/pg/run.sh, bench/pg/README.md).
//!
//! provflow: N accounts of `DBUM Account PG` through `Engine::provision` (what `provflow run`
//! does, without a process spawn per account), split over W worker threads; each worker has
//! its own Engine, its own SQLite state store file (durable commits, as in production) and
//! its own PostgresTarget connection. Each account runs Create User (`call insert_package`)
//! and Profile Updated (`call set_profile`).
//! Direct: the same two CALLs with the same binds, over W connections of the `postgres`
//! crate, each statement prepared once per connection, autocommit: the best a hand-written
//! loop does.
//!
//! Users are created and connections opened before the clock starts; the created roles are
//! dropped (`call delete_user`) after each run, outside the clock.
//!
//! Usage: DBUM_PG_URL=postgres://... pg_bench IR_FILE [ACCOUNTS] [ROUNDS] [THREADS,...]

use provflow_ir::{Bundle, TaskStatus};
use provflow_runner::clock::SystemClock;
use provflow_runner::engine::{Engine, FormInput, TargetProvider, Targets};
use provflow_runner::store::SqliteStore;
use provflow_runner::value::Secret;
use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const PROCESS: &str = "DBUM Account PG";
const TARGET: &str = "dbum-pg";
const PASSWORD: &str = "bench-Password-1";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = bench() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn bench() -> BenchResult<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: DBUM_PG_URL=postgres://... pg_bench IR_FILE [ACCOUNTS] [ROUNDS] [THREADS,...]";
    let ir_path = args.next().ok_or(usage)?;
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let threads: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(|t| t.trim().parse()).collect::<Result<_, _>>()?,
        None => vec![1, 2],
    };
    let url = std::env::var("DBUM_PG_URL").map_err(|_| format!("DBUM_PG_URL is not set; {usage}"))?;
    let bundle = provflow_ir::load(&std::fs::read_to_string(&ir_path)?)?;
    let (index, target) = bundle.target(TARGET).ok_or("no target dbum-pg in the IR")?;
    let set = bundle.query_sets.get(target.query_set).ok_or("no query set")?;
    {
        let mut targets = Targets::new(BTreeMap::from([(TARGET.to_string(), url.clone())]), ".".into());
        let t = targets.open(&bundle, index)?;
        for script in &set.install {
            t.install(&script.sql)?;
        }
    }

    let pid = std::process::id();
    println!("accounts {n} per run, {rounds} round(s); 2 CALLs per account (insert_package, set_profile)");
    println!("{:<8} {:>7} {:>16} {:>16} {:>7}", "threads", "round", "provflow acc/s", "direct acc/s", "ratio");
    let mut summary = Vec::new();
    for &w in &threads {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which side goes first, so that neither always meets a warmer server.
            let names =
                |side: &str| -> Vec<String> { (0..n).map(|i| format!("pfb{pid}{side}{w}r{round}n{i}")).collect() };
            let (provflow_names, direct_names) = (names("p"), names("d"));
            let (p, d) = if round % 2 == 0 {
                let p = timed(&url, &provflow_names, |names| provflow_run(&bundle, &url, names, w))?;
                let d = timed(&url, &direct_names, |names| direct_run(&url, names, w))?;
                (p, d)
            } else {
                let d = timed(&url, &direct_names, |names| direct_run(&url, names, w))?;
                let p = timed(&url, &provflow_names, |names| provflow_run(&bundle, &url, names, w))?;
                (p, d)
            };
            let (p, d) = (n as f64 / p.as_secs_f64(), n as f64 / d.as_secs_f64());
            println!("{w:<8} {:>7} {p:>16.1} {d:>16.1} {:>6.1}%", round + 1, 100.0 * p / d);
            ours.push(p);
            theirs.push(d);
        }
        summary.push((w, median(&mut ours), median(&mut theirs)));
    }
    println!();
    println!("median per concurrency:");
    for (w, p, d) in summary {
        println!("{w:<8} provflow {p:>8.1} accounts/s  direct {d:>8.1} accounts/s  ratio {:>5.1}%", 100.0 * p / d);
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `work` on `names` and drops the roles it created, whether it succeeded or not.
fn timed(url: &str, names: &[String], work: impl FnOnce(&[String]) -> BenchResult<Duration>) -> BenchResult<Duration> {
    let result = work(names);
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let delete = client.prepare("CALL delete_user($1)")?;
    for name in names {
        // A name that was never created is 42704: nothing to drop.
        let _ = client.execute(&delete, &[name]);
    }
    result
}

/// Splits `names` over `workers` threads; each prepares with `setup` (untimed), waits for the
/// others, then runs `work`. Returns the time from the common start to the last worker's end.
fn in_parallel<S>(
    names: &[String],
    workers: usize,
    setup: impl Fn(&[String]) -> Result<S, String> + Sync,
    work: impl Fn(S, &[String]) -> Result<(), String> + Sync,
) -> BenchResult<Duration> {
    let workers = workers.max(1);
    let chunk = names.len().div_ceil(workers).max(1);
    let barrier = Barrier::new(workers + 1);
    let mut start = Instant::now();
    let ends: Vec<Result<Instant, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let (barrier, setup, work) = (&barrier, &setup, &work);
                s.spawn(move || {
                    let state = setup(part);
                    barrier.wait();
                    work(state?, part)?;
                    Ok(Instant::now())
                })
            })
            .collect();
        // Fewer chunks than workers (tiny N): release the missing ones' places.
        for _ in handles.len()..workers {
            barrier.wait();
        }
        barrier.wait();
        start = Instant::now();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into()))).collect()
    });
    let mut last = start;
    for end in ends {
        last = last.max(end?);
    }
    Ok(last - start)
}

/// One worker's provflow: a state store file, the target connection, the users.
struct Worker {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    targets: Targets,
}

fn provflow_run(bundle: &Bundle, url: &str, names: &[String], workers: usize) -> BenchResult<Duration> {
    let form: BTreeMap<String, FormInput> =
        BTreeMap::from([("password".to_string(), FormInput::Secret(Secret::new(PASSWORD)))]);
    let setup = |part: &[String]| -> Result<Worker, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = SqliteStore::open(&dir.path().join("state.db"), None, Box::new(|| 1_900_000_000))
            .map_err(|e| e.to_string())?;
        let mut targets = Targets::new(BTreeMap::from([(TARGET.to_string(), url.to_string())]), dir.path().into());
        let (index, _) = bundle.target(TARGET).ok_or("no target")?;
        targets.open(bundle, index).map_err(|e| e.to_string())?;
        let mut w = Worker { _dir: dir, store, targets };
        {
            let clock = SystemClock;
            let mut engine = Engine::new(&mut w.store, &mut w.targets, &clock);
            for login in part {
                let attrs = BTreeMap::from([("usr_udf_cost_center".to_string(), "CC-1".to_string())]);
                engine.create_user(bundle, login, &attrs).map_err(|e| e.to_string())?;
            }
        }
        Ok(w)
    };
    let work = |mut w: Worker, part: &[String]| -> Result<(), String> {
        let clock = SystemClock;
        let mut engine = Engine::new(&mut w.store, &mut w.targets, &clock);
        for login in part {
            engine.provision(bundle, PROCESS, login, &form).map_err(|e| e.to_string())?;
        }
        let tasks = engine.store.tasks(None).map_err(|e| e.to_string())?;
        let completed = tasks.iter().filter(|t| t.status == TaskStatus::Completed).count();
        if completed != 2 * part.len() || tasks.len() != completed {
            let odd = tasks.iter().find(|t| t.status != TaskStatus::Completed);
            return Err(format!(
                "expected {} completed tasks, found {completed} of {}; e.g. {:?}",
                2 * part.len(),
                tasks.len(),
                odd.map(|t| (&t.task_name, t.status, &t.response, &t.note))
            ));
        }
        Ok(())
    };
    in_parallel(names, workers, setup, work)
}

fn direct_run(url: &str, names: &[String], workers: usize) -> BenchResult<Duration> {
    let setup = |_: &[String]| -> Result<_, String> {
        let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
        let insert = client.prepare("CALL insert_package($1, $2)").map_err(|e| e.to_string())?;
        let profile = client.prepare("CALL set_profile($1, $2)").map_err(|e| e.to_string())?;
        Ok((client, insert, profile))
    };
    let work = |(mut client, insert, profile): (postgres::Client, postgres::Statement, postgres::Statement),
                part: &[String]|
     -> Result<(), String> {
        for name in part {
            client.execute(&insert, &[name, &PASSWORD]).map_err(|e| e.to_string())?;
            client.execute(&profile, &[name, &"DEFAULT"]).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    in_parallel(names, workers, setup, work)
}
