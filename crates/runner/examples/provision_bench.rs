//! Provisioning throughput of the runner against its baseline (bench/runner/run.sh).
//!
//! provflow: N accounts of the DBUM SQLite process through `Engine::provision`, the library
//! entry point `provflow run` uses (no process spawn per account), with the state store and
//! the target in separate files and every transition committed durably before the next step.
//! Both target files get the same durability (WAL, `PRAGMA synchronous` as
//! `provflow_runner::sqlite_conn::synchronous()` chooses).
//! Baseline: the same procedure statements (`insert_package`, then `set_profile`, as Create
//! User and Profile Updated run them) executed directly through rusqlite on a fresh target
//! file, one transaction per call, as many target transactions as provflow makes.
//!
//! Usage: provision_bench IR_FILE [ACCOUNTS]

use provflow_runner::clock::SystemClock;
use provflow_runner::engine::{Engine, FormInput, TargetProvider, Targets};
use provflow_runner::store::SqliteStore;
use provflow_runner::value::Secret;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn main() {
    if let Err(e) = bench() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ir_path = args.next().ok_or("usage: provision_bench IR_FILE [ACCOUNTS]")?;
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(provflow_runner::engine::DEFAULT_BATCH);
    let bundle = provflow_ir::load(&std::fs::read_to_string(&ir_path)?)?;
    let dir = tempfile::tempdir()?;
    let state_path = dir.path().join("state.db");
    let target_path = dir.path().join("dbum-target.db");

    let mut store = SqliteStore::open(&state_path, None, Box::new(|| 1_900_000_000))?;
    let overrides = BTreeMap::from([("dbum-sqlite".to_string(), format!("sqlite:{}", target_path.display()))]);
    let mut targets = Targets::new(overrides, dir.path().to_path_buf());
    let (index, target) = bundle.target("dbum-sqlite").ok_or("no target dbum-sqlite in the IR")?;
    let set = bundle.query_sets.get(target.query_set).ok_or("no query set")?;
    let install: Vec<String> = set.install.iter().map(|s| s.sql.clone()).collect();
    let procedures = set.procedures.clone();
    {
        let t = targets.open(&bundle, index)?;
        for sql in &install {
            t.install(sql)?;
        }
    }
    let clock = SystemClock;
    let logins: Vec<String> = (0..n).map(|i| format!("BENCH{i:06}")).collect();
    let form: BTreeMap<String, FormInput> =
        BTreeMap::from([("password".to_string(), FormInput::Secret(Secret::new("bench-password")))]);
    let (elapsed, tasks) = {
        let mut engine = Engine::new(&mut store, &mut targets, &clock);
        for login in &logins {
            let attrs = BTreeMap::from([("usr_udf_cost_center".to_string(), "CC-1".to_string())]);
            engine.create_user(&bundle, login, &attrs)?;
        }
        engine.batch = batch;
        let started = Instant::now();
        engine.provision_many(&bundle, "DBUM Account", &logins, &form)?;
        let elapsed = started.elapsed();
        (elapsed, engine.store.tasks(None)?)
    };
    let completed = tasks.iter().filter(|t| t.status == provflow_ir::TaskStatus::Completed).count();
    if completed != tasks.len() || tasks.len() != 2 * n {
        return Err(format!("expected {} completed tasks, found {completed} of {}", 2 * n, tasks.len()).into());
    }
    let accounts_per_s = n as f64 / elapsed.as_secs_f64();
    let tasks_per_s = tasks.len() as f64 / elapsed.as_secs_f64();

    let baseline = baseline(&dir.path().join("baseline.db"), &install, &procedures, &logins)?;
    let baseline_per_s = n as f64 / baseline.as_secs_f64();
    println!("accounts            {n} (batch {batch})");
    println!(
        "provflow            {:>9.1} accounts/s  {:>9.1} tasks/s  ({:.3} s)",
        accounts_per_s,
        tasks_per_s,
        elapsed.as_secs_f64()
    );
    println!(
        "baseline (rusqlite) {:>9.1} accounts/s  {:>9.1} calls/s  ({:.3} s)",
        baseline_per_s,
        2.0 * baseline_per_s,
        baseline.as_secs_f64()
    );
    println!("ratio               {:>9.1} % of the baseline", 100.0 * accounts_per_s / baseline_per_s);
    Ok(())
}

/// The same statements, bound the same way, one transaction per call.
fn baseline(
    path: &Path,
    install: &[String],
    procedures: &[provflow_ir::Procedure],
    logins: &[String],
) -> Result<std::time::Duration, Box<dyn std::error::Error>> {
    let mut conn = rusqlite::Connection::open(path)?;
    // The durability provflow gives its own SQLite target (see bench/runner/README.md).
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
        provflow_runner::sqlite_conn::synchronous()
    ))?;
    for sql in install {
        conn.execute_batch(sql)?;
    }
    let body = |name: &str| procedures.iter().find(|p| p.name == name).map(|p| p.statements.clone());
    let insert = body("insert_package").ok_or("no insert_package")?;
    let profile = body("set_profile").ok_or("no set_profile")?;
    let started = Instant::now();
    for login in logins {
        for (statements, extra) in [(&insert, ("pwd", "bench-password")), (&profile, ("profile", "DEFAULT"))] {
            let tx = conn.transaction()?;
            for s in statements {
                let mut stmt = tx.prepare_cached(s)?;
                // Bind only the names a statement uses, as the runner does.
                for i in 1..=stmt.parameter_count() {
                    match stmt.parameter_name(i).map(|n| n.trim_start_matches(':')) {
                        Some("usr") => stmt.raw_bind_parameter(i, login)?,
                        Some(name) if name == extra.0 => stmt.raw_bind_parameter(i, extra.1)?,
                        other => return Err(format!("unexpected parameter {other:?}").into()),
                    }
                }
                stmt.raw_execute()?;
            }
            tx.commit()?;
        }
    }
    Ok(started.elapsed())
}
