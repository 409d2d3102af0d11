//! `provflow recon`, `provflow notifications` and `provflow test`: argument handling and
//! output only; the work is in `provflow_runner::{recon, notify, scenario}`.

use provflow_ir::Bundle;
use provflow_lex::mailbox::parse_mailbox;
use provflow_runner::clock::{Clock, SystemClock};
use provflow_runner::engine::Targets;
use provflow_runner::secret::SecretKey;
use provflow_runner::store::{self, StateStore};
use provflow_runner::{notify, recon, scenario};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::args::{paths_or_default, Format, Global, NotificationsCommand, ReconArgs, ReconCommand, TestArgs};
use crate::exit;
use crate::out::{self, errln, outln};

fn fail(code: u8, message: impl std::fmt::Display) -> u8 {
    errln!("error: {message}");
    code
}

/// The store of `--state`, SQLite or PostgreSQL, opened and migrated.
fn open_store(global: &Global) -> Result<Box<dyn StateStore + Send>, u8> {
    store::location(&global.state).map_err(|e| fail(exit::USAGE, e))?;
    let key = SecretKey::discover(&Path::new(".provflow").join("secret.key")).map_err(|e| fail(exit::USAGE, e))?;
    store::open(&global.state, key, Box::new(|| SystemClock.now())).map_err(|e| fail(exit::USAGE, e))
}

fn target_urls(global: &Global) -> Result<BTreeMap<String, String>, u8> {
    crate::args::target_urls(&global.targets).map_err(|e| fail(exit::USAGE, e))
}

fn load_bundle(paths: &[PathBuf]) -> Result<Bundle, u8> {
    if let [single] = paths {
        if single.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(single)
                .map_err(|e| fail(exit::USAGE, format!("cannot read the IR file `{}`: {e}", single.display())))?;
            return provflow_ir::load(&text).map_err(|e| fail(exit::USAGE, format!("`{}`: {e}", single.display())));
        }
    }
    let Some(c) = crate::compile_cmds::compile_and_report(paths, Format::Human) else { return Err(exit::USAGE) };
    match c.bundle {
        Some(b) if c.errors() == 0 => Ok(b),
        _ => Err(fail(exit::FAILED, "the definitions have errors (above); fix them and run again")),
    }
}

/// Renders queued notifications after a runner command that exited with `code`. Best effort
/// and silent: a message that cannot be rendered is marked failed on its row; `notifications
/// list` shows it.
pub fn render_outbox(global: &Global, code: u8) {
    let Ok(location) = store::location(&global.state) else { return };
    match location {
        // A SQLite store the command did not create is not created here.
        store::Location::Sqlite(path) if !path.exists() => return,
        // A PostgreSQL store the command could not open (exit 2: refused or unreachable) is
        // not tried again: that would only wait for the same timeout twice.
        store::Location::Postgres(_) if code == exit::USAGE => return,
        _ => {}
    }
    // The command itself reported any problem with the store or the flags already.
    let Ok(key) = SecretKey::discover(&Path::new(".provflow").join("secret.key")) else { return };
    let Ok(mut store) = store::open(&global.state, key, Box::new(|| SystemClock.now())) else { return };
    let Ok(urls) = crate::args::target_urls(&global.targets) else { return };
    let mut targets = Targets::new(urls, PathBuf::from("."));
    let _ = notify::render_pending(store.as_mut(), &mut targets, SystemClock.now());
}

// ----- recon ------------------------------------------------------------------------------

pub fn recon(global: &Global, a: ReconArgs) -> u8 {
    match run_recon(global, a) {
        Ok(c) | Err(c) => c,
    }
}

fn run_recon(global: &Global, a: ReconArgs) -> Result<u8, u8> {
    if let Some(ReconCommand::Events { run }) = a.command {
        return recon_events(global, run);
    }
    // A bad `--state` is refused before anything is read.
    let location = store::location(&global.state).map_err(|e| fail(exit::USAGE, e))?;
    let process = a.process.clone().unwrap_or_default();
    let source = match (&a.csv, a.from_target) {
        (Some(p), false) => recon::Source::Csv(p.clone()),
        (None, true) => recon::Source::Target,
        _ => return Err(fail(exit::USAGE, "give the rows with --csv FILE or --from-target")),
    };
    if a.threads == 0 || a.threads > 256 {
        return Err(fail(exit::USAGE, "--threads takes a number from 1 to 256"));
    }
    let bundle = load_bundle(&paths_or_default(&a.paths))?;
    if bundle.process(&process).is_none() {
        let s = provflow_runner::engine::did_you_mean(&process, bundle.processes.iter().map(|p| p.name.as_str()));
        return Err(fail(
            exit::USAGE,
            format!("unknown process `{process}`{}", s.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()),
        ));
    }
    // The bundle is saved first: the accounts a run creates reference it.
    enum Opened {
        Sqlite(PathBuf),
        Postgres(Box<store::PgStore>),
    }
    let mut opened = match location {
        store::Location::Sqlite(path) => {
            let mut store = open_store(global)?;
            store.save_bundle(&bundle).map_err(|e| fail(exit::USAGE, e))?;
            Opened::Sqlite(path)
        }
        store::Location::Postgres(url) => {
            let key =
                SecretKey::discover(&Path::new(".provflow").join("secret.key")).map_err(|e| fail(exit::USAGE, e))?;
            let mut store =
                store::PgStore::open(&url, key, Box::new(|| SystemClock.now())).map_err(|e| fail(exit::USAGE, e))?;
            store.save_bundle(&bundle).map_err(|e| fail(exit::USAGE, e))?;
            Opened::Postgres(Box::new(store))
        }
    };
    let mut targets = Targets::new(target_urls(global)?, PathBuf::from("."));

    // A bar on a terminal only; piped output gets the summary and nothing else.
    let bar = std::io::stderr().is_terminal().then(|| {
        let total = match &a.csv {
            Some(p) => std::fs::metadata(p).ok().map(|_| 0),
            None => None,
        };
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} reconciling {pos} rows ({per_sec}) {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    };
    let total = |n: u64| {
        if let Some(b) = &bar {
            b.set_length(n);
            b.set_style(bar_style("rows"));
        }
    };
    let options = recon::Options { threads: a.threads, now: SystemClock.now(), progress: &progress, total: &total };
    let started = std::time::Instant::now();
    let state = match &mut opened {
        Opened::Sqlite(path) => recon::State::Sqlite(path),
        Opened::Postgres(pg) => recon::State::Postgres(pg),
    };
    let result = recon::reconcile(state, &bundle, &process, source, &mut targets, &options);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = result.map_err(|e| {
        fail(
            match e {
                recon::ReconError::Store(_) | recon::ReconError::Query { .. } => exit::FAILED,
                _ => exit::USAGE,
            },
            e,
        )
    })?;
    let s = &outcome.summary;
    let secs = started.elapsed().as_secs_f64();
    if global.format == Format::Json {
        let bad: Vec<_> = outcome.bad_rows.iter().map(|b| json!({ "line": b.line, "error": b.error })).collect();
        out::json(&json!({ "run": s.run, "process": process, "rows": s.rows, "created": s.created, "linked": s.linked,
                "updated": s.updated, "unchanged": s.unchanged, "unmatched": s.unmatched, "failed": s.failed,
                "bad_rows": bad, "warnings": outcome.warnings }));
    } else {
        for w in &outcome.warnings {
            errln!("warning: {w}");
        }
        let where_ = match &a.csv {
            Some(p) => p.display().to_string(),
            None => "the target".to_string(),
        };
        for b in &outcome.bad_rows {
            errln!("{where_}:{}: {}", b.line, b.error);
        }
        if (s.failed as usize) > outcome.bad_rows.len() {
            errln!(
                "... and {} more; see `provflow recon events --run {}`",
                s.failed as usize - outcome.bad_rows.len(),
                s.run
            );
        }
        outln!(
            "recon run {}: {} rows in {:.2}s: {} created, {} linked, {} updated, {} unchanged, {} unmatched, {} failed",
            s.run,
            s.rows,
            secs,
            s.created,
            s.linked,
            s.updated,
            s.unchanged,
            s.unmatched,
            s.failed
        );
    }
    Ok(if s.failed > 0 { exit::FAILED } else { exit::OK })
}

fn recon_events(global: &Global, run: Option<i64>) -> Result<u8, u8> {
    let store = open_store(global)?;
    let (run, events) = recon::events(store.as_ref(), run).map_err(|e| fail(exit::USAGE, e))?;
    if global.format == Format::Json {
        out::json(&serde_json::to_value(&events).unwrap_or_else(|_| json!([])));
        return Ok(exit::OK);
    }
    let Some(run) = run else {
        errln!("no reconciliation has run yet");
        return Ok(exit::OK);
    };
    outln!("recon run {run}: {} events", events.len());
    for e in &events {
        let changes =
            if e.changes.as_object().is_some_and(|o| o.is_empty()) { String::new() } else { e.changes.to_string() };
        outln!(
            "  line {:>6}  {}  {}  {}{}{}",
            e.line,
            out::pad(e.key.as_deref().unwrap_or("-"), 20),
            out::pad(&e.outcome, 18),
            e.action,
            if changes.is_empty() { String::new() } else { format!("  {changes}") },
            e.error.as_ref().map(|x| format!("  error: {x}")).unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

// ----- notifications ------------------------------------------------------------------------

pub fn notifications(global: &Global, c: NotificationsCommand) -> u8 {
    // A bad sender is refused before anything is rendered or written.
    let sender = match &c {
        NotificationsCommand::Export { from: Some(text), .. } => match parse_mailbox(text) {
            Ok(m) => m,
            Err(e) => return fail(exit::USAGE, format!("--from (or PROVFLOW_MAIL_FROM): {e}")),
        },
        _ => notify::default_sender(),
    };
    let mut store = match open_store(global) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let urls = match target_urls(global) {
        Ok(u) => u,
        Err(c) => return c,
    };
    let mut targets = Targets::new(urls, PathBuf::from("."));
    if let Err(e) = notify::render_pending(store.as_mut(), &mut targets, SystemClock.now()) {
        return fail(exit::USAGE, e);
    }
    match c {
        NotificationsCommand::List => {
            let messages = match notify::messages(store.as_ref()) {
                Ok(m) => m,
                Err(e) => return fail(exit::USAGE, e),
            };
            if global.format == Format::Json {
                let v: Vec<_> = messages
                    .iter()
                    .map(|m| {
                        json!({ "id": m.id, "template": m.template, "to": m.to, "locale": m.locale, "subject": m.subject,
                                "type": m.message_type, "status": m.status, "error": m.error })
                    })
                    .collect();
                out::json(&json!(v));
            } else {
                for m in &messages {
                    let what = match m.status.as_str() {
                        "failed" => format!("FAILED: {}", m.error.as_deref().unwrap_or("")),
                        _ => m.subject.clone().unwrap_or_default(),
                    };
                    outln!(
                        "#{:<4} {} to {} {} {} {}",
                        m.id,
                        out::pad(&m.template, 18),
                        out::pad(&m.to, 10),
                        out::pad(m.locale.as_deref().unwrap_or("-"), 6),
                        out::pad(m.message_type.as_deref().unwrap_or("-"), 5),
                        what
                    );
                }
                if messages.is_empty() {
                    errln!("the outbox is empty");
                }
            }
            exit::OK
        }
        NotificationsCommand::Export { dir, .. } => match notify::export(store.as_ref(), &dir, &sender) {
            Ok((written, skipped)) => {
                for m in &skipped {
                    errln!(
                        "skipped #{} `{}` to {}: {}",
                        m.id,
                        m.template,
                        m.to,
                        m.error.as_deref().unwrap_or(&m.status)
                    );
                }
                if global.format == Format::Json {
                    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
                    out::json(
                        &json!({ "written": files, "skipped": skipped.iter().map(|m| m.id).collect::<Vec<_>>() }),
                    );
                } else {
                    outln!("wrote {} message(s) to {}", written.len(), dir.display());
                }
                exit::OK
            }
            Err(e) => fail(exit::USAGE, e),
        },
    }
}

// ----- test ---------------------------------------------------------------------------------

pub fn test(global: &Global, a: TestArgs) -> u8 {
    let bundle = match load_bundle(&paths_or_default(&a.paths)) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let urls = match target_urls(global) {
        Ok(u) => u,
        Err(c) => return c,
    };
    let config = scenario::Config {
        target_urls: urls,
        require_databases: std::env::var("PROVFLOW_REQUIRE_DATABASES").is_ok_and(|v| v == "1" || v == "true"),
    };
    let human = global.format != Format::Json;
    let results = scenario::run_all(&bundle, &config, |r| {
        if !human {
            return;
        }
        match &r.verdict {
            scenario::Verdict::Passed => outln!("ok       {} ({:.2}s)", r.name, r.duration.as_secs_f64()),
            scenario::Verdict::Skipped(why) => outln!("skipped  {}: {why}", r.name),
            scenario::Verdict::Failed(fs) => {
                outln!("FAILED   {}", r.name);
                for f in fs {
                    outln!("    {}", scenario::describe(f));
                }
            }
        }
    });
    let passed = results.iter().filter(|r| r.verdict == scenario::Verdict::Passed).count();
    let failed = results.iter().filter(|r| matches!(r.verdict, scenario::Verdict::Failed(_))).count();
    let skipped = results.len() - passed - failed;
    if let Some(path) = &a.junit {
        // The report is read in CI logs like the terminal output: no connection secret in it.
        let xml = scenario::junit(&results);
        if let Err(e) = std::fs::write(path, provflow_runner::credentials::scrub_known(&xml).as_bytes()) {
            return fail(exit::USAGE, format!("cannot write `{}`: {e}", path.display()));
        }
    }
    if human {
        outln!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        let v: Vec<_> = results
            .iter()
            .map(|r| {
                let (status, details): (&str, Vec<String>) = match &r.verdict {
                    scenario::Verdict::Passed => ("passed", vec![]),
                    scenario::Verdict::Skipped(w) => ("skipped", vec![w.clone()]),
                    scenario::Verdict::Failed(fs) => ("failed", fs.iter().map(scenario::describe).collect()),
                };
                json!({ "name": r.name, "file": r.location.file, "status": status, "details": details })
            })
            .collect();
        out::json(&json!({ "scenarios": v, "passed": passed, "failed": failed, "skipped": skipped }));
    }
    if results.is_empty() && human {
        errln!("no Scenario in the definitions");
    }
    if failed > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// A progress bar of `total` items on a terminal; none when standard error is piped, so piped
/// output gets the results and nothing else (SPEC §5).
pub fn progress_bar(total: u64, unit: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(bar_style(unit));
        bar
    })
}

/// The style of every bar of known length: `bar done/total UNIT (rate) eta`.
fn bar_style(unit: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}) {{eta}}"))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}
