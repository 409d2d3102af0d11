//! The worker's metrics and its small HTTP endpoint: `GET /metrics` (OpenMetrics text, which
//! Prometheus scrapes) and `GET /healthz` (200 while the state store answers, 503 otherwise).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The states [`crate::store::Queue::task_counts`] reports; each is exported, 0 when empty.
const STATES: [&str; 6] = ["runnable", "claimed", "retry_later", "held", "manual", "waiting"];

/// Everything the worker counts. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    pub claimed: Counter,
    pub rescued: Counter,
    pub completed: Counter,
    pub rejected: Counter,
    pub held: Counter,
    pub fenced: Counter,
    pub abandoned: Counter,
    pub lease_renewals_failed: Counter,
    pub store_errors: Counter,
    calls: Family<TargetLabel, Histogram>,
    call_errors: Family<TargetLabel, Counter>,
    tasks: Family<StateLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("provflow_worker");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let claimed = counter(&mut registry, "tasks_claimed", "Tasks claimed by this worker (rescues included)");
        let rescued = counter(&mut registry, "tasks_rescued", "Tasks claimed from a worker whose lease expired");
        let completed = counter(&mut registry, "tasks_completed", "Tasks this worker moved to Completed");
        let rejected = counter(&mut registry, "tasks_rejected", "Tasks this worker moved to Rejected");
        let held = counter(&mut registry, "tasks_held", "Tasks this worker handed to a person");
        let fenced = counter(
            &mut registry,
            "commits_fenced_off",
            "Commits refused because this worker's claim had been taken over",
        );
        let abandoned =
            counter(&mut registry, "calls_abandoned", "Calls not started because the lease could not be trusted");
        let lease_renewals_failed =
            counter(&mut registry, "lease_renewals_failed", "Heartbeats that did not reach the state store");
        let store_errors = counter(&mut registry, "store_errors", "Claim rounds ended by a state store error");
        let calls = Family::<TargetLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("call_seconds", "Target call latency, per target", calls.clone());
        let call_errors = Family::<TargetLabel, Counter>::default();
        registry.register(
            "call_errors",
            "Target calls that failed (no answer or an error), per target",
            call_errors.clone(),
        );
        let tasks = Family::<StateLabel, Gauge>::default();
        registry.register(
            "store_tasks",
            "Open tasks in the state store, by queue state (read at scrape)",
            tasks.clone(),
        );
        Metrics {
            registry,
            claimed,
            rescued,
            completed,
            rejected,
            held,
            fenced,
            abandoned,
            lease_renewals_failed,
            store_errors,
            calls,
            call_errors,
            tasks,
        }
    }

    pub fn call(&self, target: &str, elapsed: Duration, ok: bool) {
        let label = TargetLabel { target: target.to_string() };
        self.calls.get_or_create(&label).observe(elapsed.as_secs_f64());
        if !ok {
            self.call_errors.get_or_create(&label).inc();
        }
    }

    /// Sets the task gauges from [`crate::store::Queue::task_counts`].
    pub fn set_task_counts(&self, counts: &[(String, i64)]) {
        for state in STATES {
            let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            self.tasks.get_or_create(&StateLabel { state: state.to_string() }).set(n);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Reads the task counts for a scrape, and tells whether the state store answers: an error
/// is the reason it does not (already free of secrets).
pub type Probe = Box<dyn FnMut() -> Result<Vec<(String, i64)>, String> + Send>;

/// The HTTP endpoint, served by a thread of its own until [`Endpoint::stop`].
pub struct Endpoint {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: String,
}

impl Endpoint {
    /// Listens on `addr` (`HOST:PORT`; port 0 picks one: see [`Endpoint::addr`]).
    pub fn serve(addr: &str, metrics: Arc<Metrics>, mut probe: Probe) -> Result<Endpoint, String> {
        let server = tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = server.server_addr().to_ip().map_or_else(|| addr.to_string(), |a| a.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else { continue };
                    let (status, body, kind) = answer(&request, &metrics, &mut probe);
                    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], kind.as_bytes());
                    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                    if let Ok(h) = header {
                        response = response.with_header(h);
                    }
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(Endpoint { stop, thread: Some(thread), addr })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The status, body and content type of the answer to `request`.
fn answer(request: &tiny_http::Request, metrics: &Metrics, probe: &mut Probe) -> (u16, String, &'static str) {
    let path = request.url().split('?').next().unwrap_or("");
    let get = matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head);
    match path {
        "/metrics" | "/healthz" if !get => (405, "only GET is served here\n".into(), TEXT),
        "/metrics" => {
            match probe() {
                Ok(counts) => metrics.set_task_counts(&counts),
                Err(_) => {
                    metrics.store_errors.inc();
                }
            }
            (200, metrics.encode(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        }
        "/healthz" => match probe() {
            Ok(_) => (200, "ok: the state store answers\n".into(), TEXT),
            Err(e) => (503, format!("unhealthy: the state store does not answer: {e}\n"), TEXT),
        },
        _ => (404, "not found: this worker serves /metrics and /healthz\n".into(), TEXT),
    }
}
