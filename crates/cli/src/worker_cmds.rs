//! `provflow worker` and `provflow worker list`: flags, signals and output; the worker itself
//! is `provflow_runner::worker`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use provflow_runner::clock::{self, Clock, CommandClock};
use provflow_runner::credentials;
use provflow_runner::secret::SecretKey;
use provflow_runner::store::{self, WorkerStatus};
use provflow_runner::worker::log::{Log, LogFormat};
use provflow_runner::worker::metrics::{Endpoint, Metrics, Probe};
use provflow_runner::worker::{Config, Setup, Worker};
use serde_json::json;

use crate::args::{Format, Global, LogFormatArg, WorkerArgs, WorkerCommand};
use crate::exit;
use crate::out::{self, errln, outln};

pub fn worker(global: &Global, a: WorkerArgs) -> u8 {
    match a.command {
        Some(WorkerCommand::List) => list(global),
        None => run(global, &a),
    }
}

fn run(global: &Global, a: &WorkerArgs) -> u8 {
    if let Err(why) = CommandClock::check() {
        errln!("error: {why}");
        return exit::USAGE;
    }
    if let Err(e) = store::location(&global.state) {
        errln!("error: {e}");
        return exit::USAGE;
    }
    let targets = match crate::args::target_urls(&global.targets) {
        Ok(t) => t,
        Err(e) => {
            errln!("error: {e}");
            return exit::USAGE;
        }
    };
    let key = match SecretKey::discover(&crate::runner_cmds::key_file()) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return exit::USAGE;
        }
    };
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let pid = std::process::id();
    let id = a.id.clone().unwrap_or_else(|| format!("{host}:{pid}:{}", CommandClock.now()));
    if id.is_empty() || id.chars().any(char::is_control) {
        errln!("error: --id must be a non-empty name without control characters");
        return exit::USAGE;
    }
    let format = match a.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    // A second SIGTERM or SIGINT stops at once; the first asks for a graceful stop.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(e) = registered {
            errln!("error: cannot handle signal {signal}: {e}");
            return exit::USAGE;
        }
    }
    let metrics = Arc::new(Metrics::new());
    let endpoint = match &a.metrics {
        Some(addr) => match Endpoint::serve(addr, metrics.clone(), probe(&global.state, key.clone())) {
            Ok(e) => Some(e),
            Err(why) => {
                errln!("error: --metrics: {why}");
                return exit::USAGE;
            }
        },
        None => None,
    };
    let log = Log::stderr(format, &id);
    if let Some(e) = &endpoint {
        log.info("metrics_listening", &[("url", format!("http://{}/metrics", e.addr).into())]);
    }
    let config = Config {
        id,
        host,
        pid,
        concurrency: a.concurrency,
        lease: Duration::from_secs(a.lease),
        poll: Duration::from_secs(a.poll),
        batch: usize::try_from(a.batch).unwrap_or(16),
        grace: Duration::from_secs(a.grace),
    };
    let setup =
        Setup { state: global.state.clone(), key, targets, base: PathBuf::from("."), clock: Arc::new(CommandClock) };
    let result = Worker::run(config, setup, log, metrics, stop);
    if let Some(e) = endpoint {
        e.stop();
    }
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            errln!("error: {e}");
            exit::USAGE
        }
    }
}

/// The metrics endpoint's view of the store: task counts, and whether it answers. Its own
/// connection, opened on first use and again after a failure.
fn probe(state: &str, key: Option<SecretKey>) -> Probe {
    let state = state.to_string();
    let mut store: Option<Box<dyn store::StateStore + Send>> = None;
    Box::new(move || {
        let st = match store.as_mut() {
            Some(st) => st,
            None => store
                .insert(store::open(&state, key.clone(), Box::new(|| CommandClock.now())).map_err(|e| e.to_string())?),
        };
        let counts = st.task_counts(CommandClock.now());
        if counts.is_err() {
            store = None;
        }
        counts.map_err(|e| credentials::scrub_known(&e.to_string()).into_owned())
    })
}

/// Whether a worker is live (heartbeat within its lease, not stopped), stopped, or silent.
fn state_of(w: &WorkerStatus, now: clock::Instant) -> &'static str {
    if w.worker.stopped_at.is_some() {
        "stopped"
    } else if w.worker.live(now) {
        "live"
    } else {
        "silent"
    }
}

/// How many live workers run the work of `store` (a command then leaves the running to them).
pub(crate) fn live_workers(store: &dyn store::StateStore) -> usize {
    let now = CommandClock.now();
    store.workers().map(|ws| ws.iter().filter(|w| w.worker.live(now)).count()).unwrap_or(0)
}

fn list(global: &Global) -> u8 {
    if let Err(why) = CommandClock::check() {
        errln!("error: {why}");
        return exit::USAGE;
    }
    let key = SecretKey::discover(&crate::runner_cmds::key_file()).ok().flatten();
    let st = match store::open(&global.state, key, Box::new(|| CommandClock.now())) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return exit::USAGE;
        }
    };
    let workers = match st.workers() {
        Ok(w) => w,
        Err(e) => {
            errln!("error: {e}");
            return exit::FAILED;
        }
    };
    let now = CommandClock.now();
    if global.format == Format::Json {
        let items: Vec<_> = workers
            .iter()
            .map(|w| {
                json!({
                    "id": w.worker.id,
                    "host": w.worker.host,
                    "pid": w.worker.pid,
                    "state": state_of(w, now),
                    "started_at": clock::timestamp(w.worker.started_at),
                    "heartbeat_at": clock::timestamp(w.worker.heartbeat_at),
                    "seconds_since_heartbeat": now.saturating_sub(w.worker.heartbeat_at).max(0),
                    "lease_seconds": w.worker.lease.as_secs(),
                    "concurrency": w.worker.concurrency,
                    "stopped_at": w.worker.stopped_at.map(clock::timestamp),
                    "claims": w.claims.iter().map(|c| json!({
                        "task": c.task,
                        "account": c.account,
                        "epoch": c.epoch,
                        "expires_at": clock::timestamp(c.expires_at),
                        "calling": c.calling,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        out::json(&json!(items));
        return exit::OK;
    }
    if workers.is_empty() {
        outln!("no worker has run on this state store; start one with `provflow worker`");
        return exit::OK;
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let ago = now.saturating_sub(w.worker.heartbeat_at).max(0);
            let holds = if w.claims.is_empty() {
                "-".to_string()
            } else {
                let accounts: Vec<String> = w.claims.iter().take(5).map(|c| format!("#{}", c.account)).collect();
                let more = w.claims.len().saturating_sub(5);
                let more = if more > 0 { format!(" +{more}") } else { String::new() };
                format!("{} account(s): {}{more}", w.claims.len(), accounts.join(" "))
            };
            vec![
                w.worker.id.clone(),
                format!("{}:{}", w.worker.host, w.worker.pid),
                state_of(w, now).to_string(),
                format!("{} ({ago}s ago)", clock::timestamp(w.worker.heartbeat_at)),
                w.worker.concurrency.to_string(),
                holds,
            ]
        })
        .collect();
    out::table(&["ID", "HOST:PID", "STATE", "LAST HEARTBEAT", "CONCURRENCY", "HOLDS"], &rows);
    let silent = workers.iter().filter(|w| state_of(w, now) == "silent" && !w.claims.is_empty()).count();
    if silent > 0 {
        errln!(
            "note: {silent} silent worker(s) still hold claims; live workers rescue that work once the leases expire"
        );
    }
    exit::OK
}
