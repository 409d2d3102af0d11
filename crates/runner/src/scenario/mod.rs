//! `provflow test` (SPEC §2.6): runs every `Scenario` step by step in a fresh state store.
//!
//! Isolation: each scenario gets a temporary directory with its own state store and, for every
//! sqlite target it uses, a fresh database file with the target's `install` scripts applied.
//! PostgreSQL and MariaDB targets use their configured URL (`--target` or `url_env`); with
//! none the scenario is skipped, unless `PROVFLOW_REQUIRE_DATABASES=1` makes that a failure.
//!
//! Secrets come from `{ secret_env: VAR }`. An unset variable fails the scenario before its
//! first step, naming the variable: a scenario that silently skips its secrets would pass in
//! CI without testing anything.
//!
//! A failed action (the engine refused it) stops its scenario: later steps depend on it. A
//! failed expectation is reported and the scenario goes on, so one run shows every mismatch.

use provflow_ir::{self as ir, Bundle, Dialect, StepAction, StepValue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as WallClock};

use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, FormInput, TargetProvider, Targets};
use crate::secret::SecretKey;
use crate::store::{SqliteStore, StateStore};
use crate::value::{Secret, Value};
use crate::{notify, recon};

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `--target NAME=URL` overrides.
    pub target_urls: BTreeMap<String, String>,
    /// `PROVFLOW_REQUIRE_DATABASES=1`: a scenario whose database is not configured fails.
    pub require_databases: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub location: ir::Location,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed,
    Failed(Vec<Failure>),
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioResult {
    pub name: String,
    pub location: ir::Location,
    pub verdict: Verdict,
    pub duration: Duration,
}

/// Runs every scenario of the bundle, in bundle order.
pub fn run_all(bundle: &Bundle, config: &Config, mut on_done: impl FnMut(&ScenarioResult)) -> Vec<ScenarioResult> {
    let mut out = Vec::new();
    for s in &bundle.scenarios {
        let started = WallClock::now();
        let verdict = run_one(bundle, s, config);
        let r =
            ScenarioResult { name: s.name.clone(), location: s.location.clone(), verdict, duration: started.elapsed() };
        on_done(&r);
        out.push(r);
    }
    out
}

fn at(location: &ir::Location, message: impl Into<String>) -> Failure {
    Failure { location: location.clone(), message: message.into() }
}

/// The targets a scenario touches: its processes' targets and its `expect_sql` targets.
fn targets_used(bundle: &Bundle, s: &ir::Scenario) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for step in &s.steps {
        let process = match &step.action {
            StepAction::Provision { process, .. }
            | StepAction::SetForm { process, .. }
            | StepAction::CompleteTask { process, .. }
            | StepAction::RejectTask { process, .. }
            | StepAction::Recon { process, .. }
            | StepAction::ExpectAccount { process, .. }
            | StepAction::ExpectTask { process, .. } => Some(*process),
            StepAction::ExpectSql { target, .. } => {
                out.insert(*target);
                None
            }
            _ => None,
        };
        if let Some(t) = process.and_then(|p| bundle.processes.get(p)).map(|p| p.target) {
            out.insert(t);
        }
    }
    out
}

fn secret_vars(s: &ir::Scenario) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for step in &s.steps {
        if let StepAction::Provision { form, .. } | StepAction::SetForm { form, .. } = &step.action {
            for v in form.values() {
                if let StepValue::SecretEnv(var) = v {
                    out.insert(var.clone());
                }
            }
        }
    }
    out
}

fn run_one(bundle: &Bundle, s: &ir::Scenario, config: &Config) -> Verdict {
    // Databases first: a scenario that cannot reach its database is skipped before anything.
    let used = targets_used(bundle, s);
    let dir = match tempfile::Builder::new().prefix("provflow-test-").tempdir() {
        Ok(d) => d,
        Err(e) => return Verdict::Failed(vec![at(&s.location, format!("cannot create a temporary directory: {e}"))]),
    };
    let mut urls = BTreeMap::new();
    for &i in &used {
        let Some(t) = bundle.targets.get(i) else { continue };
        if t.dialect == Dialect::Sqlite {
            // Always a fresh embedded database, whatever `url_env` says: scenarios are isolated.
            urls.insert(
                t.name.clone(),
                format!("sqlite:{}", dir.path().join("targets").join(format!("{}.db", t.name)).display()),
            );
            continue;
        }
        let url = config
            .target_urls
            .get(&t.name)
            .cloned()
            .or_else(|| t.url_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|u| !u.is_empty()));
        match url {
            Some(u) => {
                crate::credentials::remember(&u);
                urls.insert(t.name.clone(), u);
            }
            None => {
                let how = match &t.url_env {
                    Some(v) => format!("set {v} or pass --target {}=URL", t.name),
                    None => format!("pass --target {}=URL", t.name),
                };
                let why = format!("the {} target `{}` has no URL ({how})", t.dialect.as_str(), t.name);
                return if config.require_databases {
                    Verdict::Failed(vec![at(
                        &s.location,
                        format!("{why}; PROVFLOW_REQUIRE_DATABASES=1 requires every database"),
                    )])
                } else {
                    Verdict::Skipped(why)
                };
            }
        }
    }
    let missing: Vec<String> = secret_vars(s).into_iter().filter(|v| std::env::var_os(v).is_none()).collect();
    if !missing.is_empty() {
        return Verdict::Failed(vec![at(
            &s.location,
            format!(
                "the scenario's secrets come from the environment: set {} (e.g. `export {}=...`)",
                missing.join(", "),
                missing.first().map(String::as_str).unwrap_or("")
            ),
        )]);
    }
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        return Verdict::Failed(vec![at(&s.location, "no randomness for the scenario's secret key")]);
    }
    let clock = SystemClock;
    let mut store = match SqliteStore::open(
        &dir.path().join("state.db"),
        Some(SecretKey::from_bytes(key)),
        Box::new(|| SystemClock.now()),
    ) {
        Ok(s) => s,
        Err(e) => return Verdict::Failed(vec![at(&s.location, e.to_string())]),
    };
    let mut targets = Targets::new(urls, dir.path().to_path_buf());
    if let Err(e) = store.save_bundle(bundle) {
        return Verdict::Failed(vec![at(&s.location, e.to_string())]);
    }
    for &i in &used {
        let Some(t) = bundle.targets.get(i) else { continue };
        let scripts = bundle.query_sets.get(t.query_set).map(|q| q.install.clone()).unwrap_or_default();
        let opened = match targets.open(bundle, i) {
            Ok(o) => o,
            Err(e) => return Verdict::Failed(vec![at(&t.location, format!("target `{}`: {e}", t.name))]),
        };
        for script in &scripts {
            if let Err(e) = opened.install(&script.sql) {
                return Verdict::Failed(vec![at(
                    &t.location,
                    format!("target `{}`: installing `{}` failed: {e}", t.name, script.path),
                )]);
            }
        }
    }
    let mut run = Run { bundle, store: &mut store, targets: &mut targets, clock: &clock, failures: Vec::new() };
    for step in &s.steps {
        let stop = run.step(step);
        if let Err(e) = notify::render_pending(&mut *run.store, run.targets, clock.now()) {
            run.failures.push(at(&step.location, format!("notifications: {e}")));
        }
        if stop {
            break;
        }
    }
    if run.failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(run.failures)
    }
}

struct Run<'a> {
    bundle: &'a Bundle,
    store: &'a mut SqliteStore,
    targets: &'a mut Targets,
    clock: &'a SystemClock,
    failures: Vec<Failure>,
}

fn form_inputs(form: &BTreeMap<String, StepValue>) -> Result<BTreeMap<String, FormInput>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in form {
        let input = match v {
            StepValue::Plain(t) => FormInput::Plain(t.clone()),
            StepValue::SecretEnv(var) => match std::env::var(var) {
                Ok(s) => FormInput::Secret(Secret::new(s)),
                Err(_) => return Err(format!("the environment variable `{var}` (secret for `{k}`) is not set")),
            },
        };
        out.insert(k.clone(), input);
    }
    Ok(out)
}

/// Compares a query's scalar with the expected JSON value: numbers numerically, booleans as
/// 1/0 too, everything else as text.
fn scalar_equals(actual: &Option<Value>, expected: &serde_json::Value) -> bool {
    match (actual, expected) {
        (None | Some(Value::Null), serde_json::Value::Null) => true,
        (Some(Value::Int(i)), serde_json::Value::Number(n)) => n.as_i64() == Some(*i) || n.as_f64() == Some(*i as f64),
        (Some(Value::Double(d)), serde_json::Value::Number(n)) => n.as_f64() == Some(*d),
        (Some(Value::Int(i)), serde_json::Value::Bool(b)) => *i == i64::from(*b),
        (Some(Value::Bool(a)), serde_json::Value::Bool(b)) => a == b,
        (Some(v), serde_json::Value::String(s)) => v.display() == *s,
        (Some(Value::Text(t)), serde_json::Value::Number(n)) => t.trim() == n.to_string(),
        _ => false,
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "no row".into(),
        Some(Value::Text(t)) => format!("{t:?}"),
        Some(v) => v.display(),
    }
}

impl Run<'_> {
    fn process(&self, i: usize) -> &str {
        self.bundle.processes.get(i).map(|p| p.name.as_str()).unwrap_or("?")
    }

    fn task_name(&self, p: usize, t: usize) -> &str {
        self.bundle.processes.get(p).and_then(|p| p.tasks.get(t)).map(|t| t.name.as_str()).unwrap_or("?")
    }

    fn engine(&mut self) -> Engine<'_> {
        let mut e = Engine::new(&mut *self.store, &mut *self.targets, self.clock);
        e.actor = "scenario".into();
        e
    }

    /// Runs one step; `true` when the scenario cannot go on.
    fn step(&mut self, step: &ir::ScenarioStep) -> bool {
        let loc = &step.location;
        let bundle = self.bundle;
        let result: Result<(), String> = match &step.action {
            StepAction::CreateUser { attributes } => {
                let mut attrs = attributes.clone();
                let login = attrs.remove("usr_login").unwrap_or_default();
                self.engine().create_user(bundle, &login, &attrs).map_err(|e| e.to_string())
            }
            StepAction::ModifyUser { user, attributes } => {
                self.engine().modify_user(bundle, user, attributes).map(|_| ()).map_err(|e| e.to_string())
            }
            StepAction::EnableUser { user } => {
                self.engine().set_user_status(user, "Active").map(|_| ()).map_err(|e| e.to_string())
            }
            StepAction::DisableUser { user } => {
                self.engine().set_user_status(user, "Disabled").map(|_| ()).map_err(|e| e.to_string())
            }
            StepAction::DeleteUser { user } => {
                self.engine().set_user_status(user, "Deleted").map(|_| ()).map_err(|e| e.to_string())
            }
            StepAction::LockUser { user } => self.engine().set_user_locked(user, true).map_err(|e| e.to_string()),
            StepAction::UnlockUser { user } => self.engine().set_user_locked(user, false).map_err(|e| e.to_string()),
            StepAction::Provision { process, user, form } => form_inputs(form).and_then(|inputs| {
                let name = self.process(*process).to_string();
                self.engine().provision(bundle, &name, user, &inputs).map(|_| ()).map_err(|e| e.to_string())
            }),
            StepAction::SetForm { process, user, form } => form_inputs(form).and_then(|inputs| {
                let name = self.process(*process).to_string();
                self.engine().set_form(&name, user, &inputs).map(|_| ()).map_err(|e| e.to_string())
            }),
            StepAction::CompleteTask { process, user, task, response }
            | StepAction::RejectTask { process, user, task, response } => {
                let complete = matches!(step.action, StepAction::CompleteTask { .. });
                self.decide(*process, user, *task, complete, response.as_deref())
            }
            StepAction::Recon { process, csv, from_target } => self.recon(loc, *process, csv.as_deref(), *from_target),
            StepAction::Resume => self.engine().resume().map(|_| ()).map_err(|e| e.to_string()),
            StepAction::ExpectAccount { process, user, status } => {
                let name = self.process(*process);
                match self.store.find_account(name, user) {
                    Ok(Some(a)) if a.status == *status => {}
                    Ok(Some(a)) => self.failures.push(at(
                        loc,
                        format!(
                            "expected the `{name}` account of `{user}` to be {}, but it is {}",
                            status.as_str(),
                            a.status.as_str()
                        ),
                    )),
                    Ok(None) => self.failures.push(at(
                        loc,
                        format!("expected a `{name}` account of `{user}` ({}), but there is none", status.as_str()),
                    )),
                    Err(e) => self.failures.push(at(loc, e.to_string())),
                }
                return false;
            }
            StepAction::ExpectTask { process, user, task, status } => {
                let (name, tname) = (self.process(*process).to_string(), self.task_name(*process, *task).to_string());
                let latest = self.store.find_account(&name, user).and_then(|a| match a {
                    // A retry is not due yet: per the SPEC it only exists after its period, so the
                    // task still reads as the rejected attempt until then.
                    Some(a) => self.store.tasks_of(a.id).map(|ts| {
                        let now = self.clock.now();
                        Some(ts.into_iter().rfind(|t| t.task_index == *task && t.due_at.is_none_or(|d| d <= now)))
                    }),
                    None => Ok(None),
                });
                match latest {
                    Ok(Some(Some(t))) if t.status == *status => {}
                    Ok(Some(Some(t))) => self.failures.push(at(
                        loc,
                        format!(
                            "expected task `{tname}` of `{user}` to be {}, but it is {}{}{}",
                            status.as_str(),
                            t.status.as_str(),
                            t.response.as_ref().map(|r| format!(" (response {r})")).unwrap_or_default(),
                            t.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
                        ),
                    )),
                    Ok(Some(None)) => self.failures.push(at(
                        loc,
                        format!(
                            "expected task `{tname}` of `{user}` to be {}, but it was never inserted",
                            status.as_str()
                        ),
                    )),
                    Ok(None) => {
                        self.failures.push(at(loc, format!("`{user}` has no `{name}` account, so no task `{tname}`")))
                    }
                    Err(e) => self.failures.push(at(loc, e.to_string())),
                }
                return false;
            }
            StepAction::ExpectSql { target, query, equals } => {
                let name = bundle.targets.get(*target).map(|t| t.name.clone()).unwrap_or_default();
                match self.targets.open(bundle, *target).and_then(|t| t.query_scalar(query)) {
                    Ok(v) if scalar_equals(&v, equals) => {}
                    Ok(v) => self
                        .failures
                        .push(at(loc, format!("`{query}` on `{name}` expected {equals}, got {}", show(&v)))),
                    Err(e) => self.failures.push(at(loc, format!("`{query}` on `{name}` failed: {e}"))),
                }
                return false;
            }
            StepAction::ExpectNotification { template, to, subject_contains, body_contains } => {
                self.expect_notification(loc, *template, to, subject_contains.as_deref(), body_contains.as_deref());
                return false;
            }
        };
        match result {
            Ok(()) => false,
            Err(e) => {
                self.failures.push(at(loc, e));
                true
            }
        }
    }

    fn decide(
        &mut self,
        process: usize,
        user: &str,
        task: usize,
        complete: bool,
        response: Option<&str>,
    ) -> Result<(), String> {
        let (name, tname) = (self.process(process).to_string(), self.task_name(process, task).to_string());
        let account = self
            .store
            .find_account(&name, user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("`{user}` has no `{name}` account"))?;
        let tasks = self.store.tasks_of(account.id).map_err(|e| e.to_string())?;
        let Some(inst) = tasks.iter().rfind(|t| t.task_index == task && t.status == ir::TaskStatus::Pending) else {
            let now: Vec<String> = tasks
                .iter()
                .filter(|t| t.task_index == task)
                .map(|t| format!("#{} {}", t.id, t.status.as_str()))
                .collect();
            return Err(format!(
                "no Pending `{tname}` task of `{user}` to {} (instances: {})",
                if complete { "complete" } else { "reject" },
                if now.is_empty() { "none".to_string() } else { now.join(", ") }
            ));
        };
        let id = inst.id;
        self.engine().decide(id, complete, response).map(|_| ()).map_err(|e| e.to_string())
    }

    fn recon(
        &mut self,
        loc: &ir::Location,
        process: usize,
        csv: Option<&str>,
        from_target: bool,
    ) -> Result<(), String> {
        let name = self.process(process).to_string();
        let source = match (csv, from_target) {
            (Some(path), _) => {
                // Relative to the scenario's file, like `install` paths are to theirs.
                let base = Path::new(&loc.file).parent().map(Path::to_path_buf).unwrap_or_default();
                recon::Source::Csv(base.join(path))
            }
            (None, _) => recon::Source::Target,
        };
        let path: PathBuf = self.store.path().to_path_buf();
        let options = recon::Options { threads: 1, now: self.clock.now(), progress: &|_| {}, total: &|_| {} };
        let out = recon::reconcile(recon::State::Sqlite(&path), self.bundle, &name, source, self.targets, &options)
            .map_err(|e| e.to_string())?;
        for b in &out.bad_rows {
            self.failures.push(at(loc, format!("reconciliation row {} was skipped: {}", b.line, b.error)));
        }
        Ok(())
    }

    fn expect_notification(
        &mut self,
        loc: &ir::Location,
        template: usize,
        to: &str,
        subject: Option<&str>,
        body: Option<&str>,
    ) {
        let tname = self.bundle.templates.get(template).map(|t| t.name.clone()).unwrap_or_default();
        let messages = match notify::messages(&*self.store) {
            Ok(m) => m,
            Err(e) => return self.failures.push(at(loc, e.to_string())),
        };
        let candidates: Vec<&notify::Message> = messages.iter().filter(|m| m.template == tname && m.to == to).collect();
        let ok = candidates.iter().any(|m| {
            m.status == "rendered"
                && subject.is_none_or(|s| m.subject.as_deref().is_some_and(|x| x.contains(s)))
                && body.is_none_or(|b| m.body.as_deref().is_some_and(|x| x.contains(b)))
        });
        if ok {
            return;
        }
        let mut want = Vec::new();
        if let Some(s) = subject {
            want.push(format!("subject containing {s:?}"));
        }
        if let Some(b) = body {
            want.push(format!("body containing {b:?}"));
        }
        let found = if candidates.is_empty() {
            let others: Vec<String> = messages.iter().map(|m| format!("`{}` to {}", m.template, m.to)).collect();
            format!(
                "none was queued (the outbox has: {})",
                if others.is_empty() { "nothing".into() } else { others.join(", ") }
            )
        } else {
            candidates
                .iter()
                .map(|m| match m.status.as_str() {
                    "failed" => format!("#{} failed to render: {}", m.id, m.error.as_deref().unwrap_or("")),
                    _ => format!(
                        "#{} ({}) subject {:?}, body {:?}",
                        m.id,
                        m.locale.as_deref().unwrap_or("?"),
                        m.subject.as_deref().unwrap_or(""),
                        m.body.as_deref().unwrap_or("")
                    ),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        self.failures.push(at(
            loc,
            format!(
                "expected a `{tname}` notification to `{to}`{}; {found}",
                if want.is_empty() { String::new() } else { format!(" with {}", want.join(" and ")) }
            ),
        ));
    }
}

/// Text escaped for an XML 1.0 attribute value or element. Characters XML 1.0 cannot carry at
/// all, not even as a reference (most C0 controls, U+FFFE, U+FFFF), become U+FFFD; tab, line
/// feed and carriage return are written as references, which a parser keeps as they are
/// (written raw, a parser would fold them to spaces in attributes and CR LF to LF in text).
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{fffd}'),
        }
    }
    out
}

/// XML 1.0's `Char` production (surrogates cannot occur in a Rust string).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// A failure as one line: `file:line: message`.
pub fn describe(f: &Failure) -> String {
    format!("{}:{}: {}", f.location.file, f.location.line, f.message)
}

/// JUnit XML, the shape Jenkins, GitLab and GitHub test reporters read.
pub fn junit(results: &[ScenarioResult]) -> String {
    let failed = results.iter().filter(|r| matches!(r.verdict, Verdict::Failed(_))).count();
    let skipped = results.iter().filter(|r| matches!(r.verdict, Verdict::Skipped(_))).count();
    let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"provflow\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
        results.len()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"provflow scenarios\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
        results.len()
    ));
    for r in results {
        out.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
            xml(&r.name),
            xml(&r.location.file.trim_end_matches(".yaml").replace('/', ".")),
            xml(&r.location.file),
            r.location.line,
            r.duration.as_secs_f64()
        ));
        match &r.verdict {
            Verdict::Passed => out.push_str("/>\n"),
            Verdict::Skipped(why) => {
                out.push_str(&format!(">\n      <skipped message=\"{}\"/>\n    </testcase>\n", xml(why)))
            }
            Verdict::Failed(fs) => {
                let first = fs.first().map(describe).unwrap_or_default();
                let all: Vec<String> = fs.iter().map(describe).collect();
                out.push_str(&format!(
                    ">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                    xml(&first),
                    xml(&all.join("\n"))
                ));
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests;
