//! The baseline of bench/worker (see bench/worker/README.md): the least a hand-written
//! PostgreSQL job queue does to run the DBUM process's two calls per account.
//!
//!   worker-baseline setup QUEUE_URL ACCOUNTS PREFIX
//!       creates `jobs` in QUEUE_URL: two jobs per account, logins PREFIX1..PREFIXN; the
//!       second job of an account waits until the first is done.
//!   worker-baseline run QUEUE_URL TARGET_URL WORKERS      (password in BW_PW)
//!       WORKERS threads, each with one queue connection and one target connection, claim a
//!       ready job (`FOR UPDATE SKIP LOCKED`), make its CALL on the target, and mark it done
//!       (which readies the account's second job), until every job is done. Prints one JSON
//!       line: seconds, tasks, tasks_per_s, and in ms the p50/p99 of the claim-to-outcome
//!       latency (claim returned → done mark committed) and of the dependent job's latency
//!       (first job's done mark committed → second job's done mark committed).
//!
//! Every statement is autocommit (one transaction each: the claim, the CALL, the done
//! mark), prepared once per connection. Connections are opened and statements prepared
//! before the clock starts.

use std::error::Error;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["setup", queue, accounts, prefix] => setup(queue, accounts.parse().unwrap_or(0), prefix),
        ["run", queue, target, workers] => run(queue, target, workers.parse().unwrap_or(1)),
        _ => Err("usage: worker-baseline setup QUEUE_URL ACCOUNTS PREFIX | run QUEUE_URL TARGET_URL WORKERS".into()),
    };
    if let Err(e) = result {
        let mut why = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            why.push_str(&format!(": {s}"));
            source = s.source();
        }
        eprintln!("worker-baseline: {why}");
        std::process::exit(1);
    }
}

fn setup(queue: &str, accounts: i64, prefix: &str) -> Res<()> {
    if accounts < 1 {
        return Err("ACCOUNTS must be a positive number".into());
    }
    let mut c = Client::connect(queue, NoTls)?;
    c.batch_execute(
        "DROP TABLE IF EXISTS jobs;
         CREATE TABLE jobs (
             id      bigint PRIMARY KEY,
             login   text   NOT NULL,
             step    int    NOT NULL,      -- 1: insert_package, 2: set_profile
             status  text   NOT NULL,      -- waiting | ready | running | done
             worker  int
         );",
    )?;
    // Account i (1-based): job 2i-1 (step 1, ready) and job 2i (step 2, waiting).
    c.execute(
        "INSERT INTO jobs(id, login, step, status)
         SELECT 2 * i - 2 + s, $1 || i, s, CASE s WHEN 1 THEN 'ready' ELSE 'waiting' END
         FROM generate_series(1, $2::bigint) AS i, generate_series(1, 2) AS s",
        &[&prefix, &accounts],
    )?;
    c.batch_execute("CREATE INDEX jobs_ready ON jobs(id) WHERE status = 'ready'")?;
    c.batch_execute("VACUUM ANALYZE jobs")?;
    Ok(())
}

struct Outcome {
    tasks: u64,
    /// Per job: its id, when its claim returned, when its done mark committed.
    jobs: Vec<(i64, Instant, Instant)>,
}

fn run(queue: &str, target: &str, workers: usize) -> Res<()> {
    let password = std::env::var("BW_PW").map_err(|_| "set BW_PW to the accounts' password")?;
    let workers = workers.max(1);
    let start = Arc::new(Barrier::new(workers + 1));
    let mut threads = Vec::new();
    for w in 0..workers {
        let (queue, target, password, start) = (queue.to_string(), target.to_string(), password.clone(), start.clone());
        threads.push(std::thread::spawn(move || worker(w, &queue, &target, &password, &start)));
    }
    start.wait();
    let t0 = Instant::now();
    let mut tasks = 0;
    let mut jobs = Vec::new();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(o)) => {
                tasks += o.tasks;
                jobs.extend(o.jobs);
            }
            Ok(Err(e)) => failure = Some(e.to_string()),
            Err(_) => failure = Some("a worker thread panicked".into()),
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.into());
    }
    // Claim to outcome: from the claim's return to the commit of the job's done mark.
    let claim: Vec<Duration> = jobs.iter().map(|(_, c, d)| *d - *c).collect();
    // The dependent job: from the commit that readied it (its first job's done mark) to the
    // commit of its own done mark.
    jobs.sort_by_key(|j| j.0);
    let next: Vec<Duration> =
        jobs.chunks(2).filter_map(|p| match p { [a, b] if b.0 == a.0 + 1 => Some(b.2 - a.2), _ => None }).collect();
    println!(
        "{{\"workers\":{workers},\"tasks\":{tasks},\"seconds\":{seconds:.3},\"tasks_per_s\":{:.1},\"claim_p50\":{:.2},\"claim_p99\":{:.2},\"next_p50\":{:.2},\"next_p99\":{:.2}}}",
        tasks as f64 / seconds,
        pct(&claim, 0.50),
        pct(&claim, 0.99),
        pct(&next, 0.50),
        pct(&next, 0.99)
    );
    Ok(())
}

/// The nearest-rank percentile `p` of `values`, in milliseconds.
fn pct(values: &[Duration], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort();
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn worker(w: usize, queue: &str, target: &str, password: &str, start: &Barrier) -> Res<Outcome> {
    let opened = (|| -> Res<_> {
        let mut q = Client::connect(queue, NoTls)?;
        let mut t = Client::connect(target, NoTls)?;
        let claim = q.prepare(
            "UPDATE jobs SET status = 'running', worker = $1
             WHERE id = (SELECT id FROM jobs WHERE status = 'ready' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING id, login, step",
        )?;
        // Done, and the account's second job ready, in one statement (one transaction).
        let done = q.prepare(
            "UPDATE jobs SET status = CASE WHEN id = $1 THEN 'done' ELSE 'ready' END
             WHERE id = $1 OR ($2 = 1 AND id = $1 + 1)",
        )?;
        let left = q.prepare("SELECT count(*) FROM jobs WHERE status <> 'done'")?;
        let create = t.prepare("CALL insert_package($1, $2)")?;
        let profile = t.prepare("CALL set_profile($1, $2)")?;
        Ok((q, t, claim, done, left, create, profile))
    })();
    // Whatever happened, the others are not kept waiting at the barrier.
    start.wait();
    let (mut q, mut t, claim, done, left, create, profile) = opened?;
    let me = i32::try_from(w).unwrap_or(i32::MAX);
    let mut out = Outcome { tasks: 0, jobs: Vec::new() };
    loop {
        let Some(row) = q.query_opt(&claim, &[&me])? else {
            let remaining: i64 = q.query_one(&left, &[])?.get(0);
            if remaining == 0 {
                return Ok(out);
            }
            // An account's second job waits for its first, running on another connection.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let claimed = Instant::now();
        let (id, login, step): (i64, String, i32) = (row.get(0), row.get(1), row.get(2));
        if step == 1 {
            t.execute(&create, &[&login, &password])?;
        } else {
            t.execute(&profile, &[&login, &"DEFAULT"])?;
        }
        q.execute(&done, &[&id, &step])?;
        out.jobs.push((id, claimed, Instant::now()));
        out.tasks += 1;
    }
}
