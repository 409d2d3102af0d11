//! The commands that operate the runner: run, plan, resume, user, task, account, target,
//! notifications. Parsing of `k=v` flags and output formatting only; the work is in
//! `provflow_runner`.

use provflow_ir::{Bundle, TaskAction, TaskStatus};
use provflow_runner::clock::{self, Clock, CommandClock};
use provflow_runner::engine::{self, Engine, EngineError, FormInput, TargetProvider, Targets};
use provflow_runner::secret::SecretKey;
use provflow_runner::store::{self, Account, StateStore, TaskInstance, UserRecord};
use provflow_runner::value::Secret;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::args::{
    paths_or_default, AccountCommand, ChildCommand, Command, Format, Global, ProvisionArgs, RunArgs, TargetCommand,
    TaskCommand, UserCommand,
};
use crate::exit;
use crate::out::{self, errln, outln};

/// A failure already explained to the person; carries the exit code.
struct Exit(u8);

type Outcome = Result<u8, Exit>;

fn fail(code: u8, message: impl std::fmt::Display) -> Exit {
    errln!("error: {message}");
    Exit(code)
}

fn engine_error(e: EngineError) -> Exit {
    match e {
        EngineError::Invalid(problems) => {
            for p in problems {
                errln!("error: {p}");
            }
            Exit(exit::USAGE)
        }
        EngineError::TargetUnavailable { target, message } => {
            // The runner's two lines; only the target's own text in them is escaped.
            let shown = EngineError::TargetUnavailable {
                target: out::safe(&target).into_owned(),
                message: out::safe(&message).into_owned(),
            }
            .to_string();
            for (i, line) in shown.lines().enumerate() {
                if i == 0 {
                    errln!("error: {line}");
                } else {
                    errln!("{line}");
                }
            }
            Exit(exit::USAGE)
        }
        other => fail(exit::USAGE, other),
    }
}

pub fn exec(global: &Global, command: Command) -> u8 {
    let result = match command {
        Command::Plan(a) => plan(global, a),
        Command::Run(a) => run(global, a),
        Command::Resume(a) => resume(global, a.wait, a.batch.size),
        Command::User(c) => user(global, c),
        Command::Task(c) => task(global, c),
        Command::Account(c) => account(global, c),
        Command::TargetCmd(c) => target(global, c),
        // main routes every other command elsewhere (compile_cmds, runner_cmds_ext).
        other => {
            let name = format!("{other:?}");
            let name = name.split(['(', ' ', '{']).next().unwrap_or("").to_lowercase();
            Err(fail(exit::USAGE, format!("`provflow {name}` is not handled here")))
        }
    };
    result.unwrap_or_else(|Exit(code)| code)
}

// ----- set-up ---------------------------------------------------------------------------

pub(crate) fn key_file() -> PathBuf {
    Path::new(".provflow").join("secret.key")
}

/// The store of `--state` (a SQLite file or a PostgreSQL database), opened and migrated.
fn open_store(global: &Global) -> Result<Box<dyn StateStore + Send>, Exit> {
    store::location(&global.state).map_err(|e| fail(exit::USAGE, e))?;
    let key = SecretKey::discover(&key_file()).map_err(|e| fail(exit::USAGE, e))?;
    CommandClock::check().map_err(|e| fail(exit::USAGE, e))?;
    store::open(&global.state, key, Box::new(|| CommandClock.now())).map_err(|e| fail(exit::USAGE, e))
}

fn targets(global: &Global) -> Result<Targets, Exit> {
    let map = crate::args::target_urls(&global.targets).map_err(|e| fail(exit::USAGE, e))?;
    Ok(Targets::new(map, PathBuf::from(".")))
}

/// [`targets`] for a command that has the definitions in hand: a `--target NAME=URL` whose
/// name is no target of them is refused. Ignoring it would send the work to the target's
/// `url_env` or embedded default instead of the database the flag meant.
fn targets_of(global: &Global, bundle: &Bundle) -> Result<Targets, Exit> {
    let map = crate::args::target_urls(&global.targets).map_err(|e| fail(exit::USAGE, e))?;
    let names = || bundle.targets.iter().map(|t| t.name.as_str());
    if let Some(name) = map.keys().find(|n| bundle.target(n).is_none()) {
        let hint = engine::did_you_mean(name, names()).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
        let known: Vec<&str> = names().collect();
        return Err(fail(
            exit::USAGE,
            format!(
                "--target names `{name}`, which is no target of the definitions{hint} (targets: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(Targets::new(map, PathBuf::from(".")))
}

/// Loads the bundle from an IR file or compiles the definitions (diagnostics on stderr).
fn load_bundle(paths: &[PathBuf]) -> Result<Bundle, Exit> {
    if let [single] = paths {
        if single.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(single)
                .map_err(|e| fail(exit::USAGE, format!("cannot read the IR file `{}`: {e}", single.display())))?;
            return provflow_ir::load(&text).map_err(|e| fail(exit::USAGE, format!("`{}`: {e}", single.display())));
        }
    }
    let Some(c) = crate::compile_cmds::compile_and_report(paths, Format::Human) else { return Err(Exit(exit::USAGE)) };
    match c.bundle {
        Some(b) if c.errors() == 0 => Ok(b),
        _ => Err(fail(exit::FAILED, "the definitions have errors (above); fix them and run again")),
    }
}

fn split_pair<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str), Exit> {
    text.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .ok_or_else(|| fail(exit::USAGE, format!("{flag} takes NAME=VALUE, e.g. {flag} username=jdoe")))
}

/// `--form k=v` and `--secret k=env:VAR|k=file:PATH`. A secret's value is never echoed.
fn form_inputs(form: &[String], secrets: &[String]) -> Result<BTreeMap<String, FormInput>, Exit> {
    let mut out = BTreeMap::new();
    for f in form {
        let (k, v) = split_pair("--form", f)?;
        out.insert(k.to_string(), FormInput::Plain(v.to_string()));
    }
    for s in secrets {
        let Some((k, source)) = s.split_once('=') else {
            return Err(fail(exit::USAGE, "--secret takes FIELD=env:VAR or FIELD=file:PATH"));
        };
        let value = if let Some(var) = source.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                fail(exit::USAGE, format!("--secret {k}: the environment variable `{var}` is not set; export it first"))
            })?
        } else if let Some(path) = source.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(exit::USAGE, format!("--secret {k}: cannot read `{path}`: {}", e.kind())))?;
            text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string()
        } else {
            return Err(fail(
                exit::USAGE,
                format!("--secret {k}: give the value as env:VAR or file:PATH; a secret on the command line ends up in shell history and process lists"),
            ));
        };
        out.insert(k.to_string(), FormInput::Secret(Secret::new(value)));
    }
    Ok(out)
}

fn pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>, Exit> {
    let mut out = BTreeMap::new();
    for i in items {
        let (k, v) = split_pair(flag, i)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Who the audit trail names for a person's action.
fn person() -> String {
    let who = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    format!("person:{who}")
}

// ----- output -----------------------------------------------------------------------------

fn account_json(a: &Account) -> serde_json::Value {
    json!({ "id": a.id, "process": a.process, "user": a.user, "status": a.status.as_str() })
}

fn print_account(global: &Global, store: &dyn StateStore, a: &Account) -> Result<Vec<TaskInstance>, Exit> {
    let tasks = store.tasks_of(a.id).map_err(|e| fail(exit::USAGE, e))?;
    if global.format == Format::Json {
        out::json(&account_object(a, &tasks));
        return Ok(tasks);
    }
    outln!("account #{}  {}  {}  {}", a.id, a.process, a.user, a.status.as_str());
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let note = t.note.clone().unwrap_or_default();
            vec![
                t.id.to_string(),
                t.task_name.clone(),
                t.status.as_str().to_string(),
                t.response.clone().unwrap_or_else(|| "-".into()),
                t.attempt.to_string(),
                note,
            ]
        })
        .collect();
    out::table(&["ID", "TASK", "STATUS", "RESPONSE", "ATTEMPT", "NOTE"], &rows);
    Ok(tasks)
}

/// The SPEC §5 object of `run` and `account show`.
fn account_object(a: &Account, tasks: &[TaskInstance]) -> serde_json::Value {
    let tasks: Vec<_> = tasks
        .iter()
        .map(|t| json!({ "id": t.id, "name": t.task_name, "status": t.status.as_str(), "response": t.response, "attempt": t.attempt }))
        .collect();
    json!({ "account": account_json(a), "tasks": tasks })
}

/// Prints the account after a command changed it; exit 1 when a task ended Rejected for good.
fn report_account(global: &Global, store: &dyn StateStore, id: store::AccountId) -> Outcome {
    let Some(a) = store.account(id).map_err(|e| fail(exit::USAGE, e))? else { return Ok(exit::OK) };
    let tasks = print_account(global, store, &a)?;
    if engine::has_final_rejection(&tasks) {
        if global.format == Format::Human {
            errln!("a task ended Rejected with no retry left; see the RESPONSE and NOTE columns");
        }
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}

// ----- commands ---------------------------------------------------------------------------

fn run(global: &Global, a: RunArgs) -> Outcome {
    let logins = logins(&a)?;
    let inputs = form_inputs(&a.form, &a.secrets)?;
    let bundle = load_bundle(&paths_or_default(&a.paths))?;
    let mut store = open_store(global)?;
    let mut targets = targets_of(global, &bundle)?;
    let clock = CommandClock;
    let live = crate::worker_cmds::live_workers(&*store);
    if a.enqueue {
        return enqueue(global, &mut *store, &mut targets, &bundle, &a, &logins, &inputs, live);
    }
    if live > 0 {
        return Err(fail(
            exit::USAGE,
            format!("{live} live worker(s) run this state store's work (see `provflow worker list`): provision with `provflow run --enqueue` and they run it, or stop them first; nothing was created"),
        ));
    }
    let bar =
        (logins.len() > 1).then(|| crate::runner_cmds_ext::progress_bar(logins.len() as u64, "accounts")).flatten();
    let mut advance = |n: usize| {
        if let Some(bar) = &bar {
            bar.inc(n as u64);
        }
    };
    let ids = {
        let mut e = Engine::new(&mut *store, &mut targets, &clock);
        e.batch = a.batch.size;
        if let [login] = logins.as_slice() {
            vec![e.provision(&bundle, &a.process, login, &inputs).map_err(engine_error)?]
        } else {
            e.progress = Some(&mut advance);
            let result = e.provision_many(&bundle, &a.process, &logins, &inputs);
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            result.map_err(|err| {
                let unavailable = matches!(err, EngineError::TargetUnavailable { .. });
                let exit = engine_error(err);
                if unavailable {
                    errln!(
                        "all {} accounts are recorded; `provflow resume` provisions them once the target is back",
                        logins.len()
                    );
                }
                exit
            })?
        }
    };
    if !store.has_key() && inputs.values().any(|v| matches!(v, FormInput::Secret(_))) && global.format == Format::Human
    {
        errln!("note: no PROVFLOW_SECRET_KEY or .provflow/secret.key: secrets were used but not stored; a task that needs one later is handed to a person");
    }
    match ids.as_slice() {
        [id] => report_account(global, &*store, *id),
        _ => report_accounts(global, &*store, &a.process, &ids),
    }
}

/// `run --enqueue`: records the accounts for the workers and prints their ids.
#[allow(clippy::too_many_arguments)]
fn enqueue(
    global: &Global,
    store: &mut dyn StateStore,
    targets: &mut Targets,
    bundle: &Bundle,
    a: &RunArgs,
    logins: &[String],
    inputs: &BTreeMap<String, FormInput>,
    live: usize,
) -> Outcome {
    let clock = CommandClock;
    let ids = {
        let mut e = Engine::new(store, targets, &clock);
        e.batch = a.batch.size;
        e.enqueue_many(bundle, &a.process, logins, inputs).map_err(engine_error)?
    };
    if global.format == Format::Json {
        out::json(&json!({ "process": a.process, "enqueued": ids }));
    } else {
        for id in &ids {
            outln!("{id}");
        }
        let who = if live > 0 {
            format!("{live} live worker(s) run them")
        } else {
            "no worker is live on this store: start one with `provflow worker`".to_string()
        };
        errln!("enqueued {} `{}` account(s); {who}", ids.len(), a.process);
    }
    Ok(exit::OK)
}

/// The logins of `--user` and `--users FILE`, in that order.
fn logins(a: &RunArgs) -> Result<Vec<String>, Exit> {
    let mut out = a.users.clone();
    if let Some(path) = &a.users_file {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| fail(exit::USAGE, format!("--users -: cannot read standard input: {e}")))?
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| fail(exit::USAGE, format!("--users: cannot read `{}`: {e}", path.display())))?
        };
        out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    }
    if out.is_empty() {
        return Err(fail(exit::USAGE, "no logins to provision: the --users file lists none"));
    }
    Ok(out)
}

/// After provisioning several accounts: one line (JSON: one object) per account, a summary;
/// exit 1 when any of them has a task that ended Rejected for good.
fn report_accounts(global: &Global, store: &dyn StateStore, process: &str, ids: &[store::AccountId]) -> Outcome {
    let mut rows = Vec::with_capacity(ids.len());
    let mut failed = Vec::new();
    let mut by_status: BTreeMap<&'static str, usize> = BTreeMap::new();
    for &id in ids {
        let Some(a) = store.account(id).map_err(|e| fail(exit::USAGE, e))? else { continue };
        let tasks = store.tasks_of(id).map_err(|e| fail(exit::USAGE, e))?;
        if engine::has_final_rejection(&tasks) {
            failed.push(a.user.clone());
        }
        *by_status.entry(a.status.as_str()).or_default() += 1;
        if global.format == Format::Json {
            out::json(&account_object(&a, &tasks));
            continue;
        }
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for t in &tasks {
            *counts.entry(t.status.as_str()).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        rows.push(vec![a.id.to_string(), a.user.clone(), a.status.as_str().to_string(), summary.join(", ")]);
    }
    if global.format == Format::Human {
        out::table(&["ID", "USER", "STATUS", "TASKS"], &rows);
        let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
        outln!("{} accounts of `{process}`: {}", ids.len(), statuses.join(", "));
    }
    if failed.is_empty() {
        return Ok(exit::OK);
    }
    if global.format == Format::Human {
        let shown: Vec<&str> = failed.iter().take(10).map(String::as_str).collect();
        let more = if failed.len() > shown.len() {
            format!(" and {} more", failed.len() - shown.len())
        } else {
            String::new()
        };
        errln!(
            "{} account(s) have a task that ended Rejected with no retry left ({}{more}); see `provflow account show --process \"{process}\" --user LOGIN`",
            failed.len(),
            shown.join(", ")
        );
    }
    Ok(exit::FAILED)
}

fn plan(global: &Global, a: ProvisionArgs) -> Outcome {
    let inputs = form_inputs(&a.form, &a.secrets)?;
    let bundle = load_bundle(&paths_or_default(&a.paths))?;
    // A plan writes nothing: a missing state file is not created, and the user must exist.
    // (A PostgreSQL database exists already; opening it only applies missing migrations.)
    let location = store::location(&global.state).map_err(|e| fail(exit::USAGE, e))?;
    if let store::Location::Sqlite(path) = &location {
        if !path.exists() {
            return Err(fail(exit::USAGE, format!("unknown user `{}`: the state store `{}` does not exist yet; create the user with `provflow user create {}`", a.user, path.display(), a.user)));
        }
    }
    let mut store = open_store(global)?;
    let user: UserRecord = match store.user(&a.user).map_err(|e| fail(exit::USAGE, e))? {
        Some(u) => u,
        None => {
            return Err(fail(
                exit::USAGE,
                format!("unknown user `{}`; create it with `provflow user create {}`", a.user, a.user),
            ))
        }
    };
    let mut targets = targets_of(global, &bundle)?;
    let clock = CommandClock;
    let e = Engine::new(&mut *store, &mut targets, &clock);
    let planned = e.plan(&bundle, &a.process, &user, &inputs).map_err(engine_error)?;
    if global.format == Format::Json {
        let tasks: Vec<_> = planned
            .iter()
            .map(|t| json!({ "name": t.name, "status": t.status.as_str(), "manual": t.manual, "sql": t.sql, "note": t.note }))
            .collect();
        out::json(&json!({ "process": a.process, "user": a.user, "tasks": tasks }));
    } else {
        outln!("plan: provision `{}` for `{}` (nothing is sent or written)", a.process, a.user);
        for t in &planned {
            outln!("  {} [{}]", t.name, t.status.as_str());
            if let Some(sql) = &t.sql {
                outln!("      {sql}");
            }
            if let Some(note) = &t.note {
                outln!("      {note}");
            }
        }
    }
    Ok(exit::OK)
}

fn resume(global: &Global, wait: bool, batch: usize) -> Outcome {
    let mut store = open_store(global)?;
    let live = crate::worker_cmds::live_workers(&*store);
    if live > 0 {
        return Err(fail(
            exit::USAGE,
            format!("{live} live worker(s) run this state store's work, retries and rescues included (see `provflow worker list`); `resume` is for a store without workers"),
        ));
    }
    let mut targets = targets(global)?;
    let clock = CommandClock;
    let mut e = Engine::new(&mut *store, &mut targets, &clock);
    e.batch = batch;
    loop {
        let touched = e.resume().map_err(engine_error)?;
        let next = e.next_due().map_err(engine_error)?;
        if global.format == Format::Human {
            errln!("resumed {} account(s)", touched.len());
        }
        match next {
            Some(due) if wait => {
                let now = clock.now();
                if due > now {
                    if global.format == Format::Human {
                        errln!("waiting for the next retry, due {}", clock::timestamp(due));
                    }
                    std::thread::sleep(std::time::Duration::from_secs((due - now).min(60) as u64));
                }
            }
            Some(due) => {
                if global.format == Format::Human {
                    errln!(
                        "next retry due {}; run `provflow resume` again then, or `provflow resume --wait`",
                        clock::timestamp(due)
                    );
                }
                break;
            }
            None => break,
        }
    }
    let failed = e.store.tasks(None).map_err(|x| fail(exit::USAGE, x))?;
    let mut by_account: BTreeMap<i64, Vec<TaskInstance>> = BTreeMap::new();
    for t in failed {
        by_account.entry(t.account).or_default().push(t);
    }
    let any_failed = by_account.values().any(|ts| engine::has_final_rejection(ts));
    if global.format == Format::Json {
        let accounts: Vec<_> = e.store.accounts().map_err(|x| fail(exit::USAGE, x))?.iter().map(account_json).collect();
        out::json(&json!(accounts));
    }
    Ok(if any_failed { exit::FAILED } else { exit::OK })
}

/// The user schema's bundle: `--definitions`, else the newest in the store, else
/// `definitions/` if it exists, else the built-in attributes only.
fn schema_bundle(store: &dyn StateStore, definitions: &Option<PathBuf>) -> Result<Bundle, Exit> {
    if let Some(p) = definitions {
        return load_bundle(std::slice::from_ref(p));
    }
    if let Some(b) = store.latest_bundle().map_err(|e| fail(exit::USAGE, e))? {
        return Ok(b);
    }
    if Path::new("definitions").is_dir() {
        return load_bundle(&[PathBuf::from("definitions")]);
    }
    Ok(Bundle {
        ir_version: provflow_ir::IR_VERSION,
        hash: String::new(),
        targets: vec![],
        query_sets: vec![],
        processes: vec![],
        events: vec![],
        templates: vec![],
        user_schema: provflow_ir::UserSchema { name: None, attributes: vec![] },
        scenarios: vec![],
    })
}

fn user(global: &Global, c: UserCommand) -> Outcome {
    let mut store = open_store(global)?;
    let bundle = match &c {
        UserCommand::Create(a) | UserCommand::Modify(a) => Some(schema_bundle(&*store, &a.definitions)?),
        _ => None,
    };
    let mut targets = targets(global)?;
    let clock = CommandClock;
    let defer = crate::worker_cmds::live_workers(&*store) > 0;
    let mut e = Engine::new(&mut *store, &mut targets, &clock);
    e.actor = person();
    e.defer = defer;
    let (login, touched) = match (c, bundle) {
        (UserCommand::Create(a), Some(b)) => {
            e.create_user(&b, &a.login, &pairs("--attr", &a.attrs)?).map_err(engine_error)?;
            (a.login, vec![])
        }
        (UserCommand::Modify(a), Some(b)) => {
            let t = e.modify_user(&b, &a.login, &pairs("--attr", &a.attrs)?).map_err(engine_error)?;
            (a.login, t)
        }
        (UserCommand::Enable(l), _) => {
            let t = e.set_user_status(&l.login, "Active").map_err(engine_error)?;
            (l.login, t)
        }
        (UserCommand::Disable(l), _) => {
            let t = e.set_user_status(&l.login, "Disabled").map_err(engine_error)?;
            (l.login, t)
        }
        (UserCommand::Delete(l), _) => {
            let t = e.set_user_status(&l.login, "Deleted").map_err(engine_error)?;
            (l.login, t)
        }
        (UserCommand::Lock(l), _) => {
            e.set_user_locked(&l.login, true).map_err(engine_error)?;
            (l.login, vec![])
        }
        (UserCommand::Unlock(l), _) => {
            e.set_user_locked(&l.login, false).map_err(engine_error)?;
            (l.login, vec![])
        }
        (UserCommand::List, _) => {
            let users = e.store.users().map_err(|x| fail(exit::USAGE, x))?;
            if global.format == Format::Json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| json!({ "login": u.login, "status": u.status, "locked": u.locked, "attributes": u.attributes }))
                    .collect();
                out::json(&json!(v));
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.login.clone(),
                            u.attributes.get("usr_display_name").cloned().unwrap_or_default(),
                            u.status.clone(),
                            if u.locked { "locked".into() } else { "-".into() },
                        ]
                    })
                    .collect();
                out::table(&["LOGIN", "DISPLAY NAME", "STATUS", "LOCKED"], &rows);
            }
            return Ok(exit::OK);
        }
        _ => return Err(fail(exit::USAGE, "internal: no user schema")),
    };
    let u = e.store.user(&login).map_err(|x| fail(exit::USAGE, x))?;
    let mut code = exit::OK;
    if global.format == Format::Json {
        let accounts: Vec<_> =
            touched.iter().filter_map(|id| e.store.account(*id).ok().flatten()).map(|a| account_json(&a)).collect();
        out::json(
            &json!({ "user": u.as_ref().map(|u| json!({"login": u.login, "status": u.status, "locked": u.locked})), "accounts": accounts }),
        );
    } else {
        if let Some(u) = &u {
            outln!("user {}  {}{}", u.login, u.status, if u.locked { "  locked" } else { "" });
        }
        for id in &touched {
            if report_account(global, &*e.store, *id)? == exit::FAILED {
                code = exit::FAILED;
            }
        }
    }
    for id in &touched {
        if engine::has_final_rejection(&e.store.tasks_of(*id).unwrap_or_default()) {
            code = exit::FAILED;
        }
    }
    Ok(code)
}

fn task(global: &Global, c: TaskCommand) -> Outcome {
    let mut store = open_store(global)?;
    let mut targets = targets(global)?;
    let clock = CommandClock;
    let defer = crate::worker_cmds::live_workers(&*store) > 0;
    let mut e = Engine::new(&mut *store, &mut targets, &clock);
    e.actor = person();
    e.defer = defer;
    let account = match c {
        TaskCommand::List { status } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
                    let names: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                    fail(exit::USAGE, format!("unknown task status `{s}`; one of {}", names.join(", ")))
                })?),
            };
            let tasks = e.store.tasks(status).map_err(|x| fail(exit::USAGE, x))?;
            let accounts: BTreeMap<i64, Account> =
                e.store.accounts().map_err(|x| fail(exit::USAGE, x))?.into_iter().map(|a| (a.id, a)).collect();
            let mut rows = Vec::new();
            let mut items = Vec::new();
            for t in &tasks {
                let Some(a) = accounts.get(&t.account) else { continue };
                let manual = e
                    .bundle(&a.bundle_hash)
                    .ok()
                    .and_then(|b| {
                        b.process(&a.process).and_then(|(_, p)| p.tasks.get(t.task_index)).map(|d| matches!(d.action, TaskAction::Manual { .. }))
                    })
                    .unwrap_or(false);
                items.push(json!({ "id": t.id, "account": { "process": a.process, "user": a.user }, "name": t.task_name, "status": t.status.as_str(), "manual": manual, "held": t.held, "note": t.note }));
                rows.push(vec![
                    t.id.to_string(),
                    a.process.clone(),
                    a.user.clone(),
                    t.task_name.clone(),
                    t.status.as_str().to_string(),
                    if manual { "manual".into() } else if t.held { "needs a person".into() } else { "-".into() },
                    t.note.clone().unwrap_or_default(),
                ]);
            }
            if global.format == Format::Json {
                out::json(&json!(items));
            } else {
                out::table(&["ID", "PROCESS", "USER", "TASK", "STATUS", "KIND", "NOTE"], &rows);
            }
            return Ok(exit::OK);
        }
        TaskCommand::Complete(a) => e.decide(a.id, true, a.response.as_deref()),
        TaskCommand::Reject(a) => e.decide(a.id, false, a.response.as_deref()),
        TaskCommand::Cancel(a) => e.cancel(a.id),
        TaskCommand::Retry(a) => e.retry(a.id),
    }
    .map_err(engine_error)?;
    report_account(global, &*e.store, account)
}

fn account(global: &Global, c: AccountCommand) -> Outcome {
    let mut store = open_store(global)?;
    let mut targets = targets(global)?;
    let clock = CommandClock;
    let defer = crate::worker_cmds::live_workers(&*store) > 0;
    let mut e = Engine::new(&mut *store, &mut targets, &clock);
    e.actor = person();
    e.defer = defer;
    let id = match c {
        AccountCommand::List => {
            let accounts = e.store.accounts().map_err(|x| fail(exit::USAGE, x))?;
            if global.format == Format::Json {
                out::json(&json!(accounts.iter().map(account_json).collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| vec![a.id.to_string(), a.process.clone(), a.user.clone(), a.status.as_str().to_string()])
                    .collect();
                out::table(&["ID", "PROCESS", "USER", "STATUS"], &rows);
            }
            return Ok(exit::OK);
        }
        AccountCommand::Show(r) => {
            let a = e.account(&r.process, &r.user).map_err(engine_error)?;
            print_account(global, &*e.store, &a)?;
            if global.format == Format::Human {
                let form: Vec<String> = a.form.iter().map(|(k, v)| format!("{k}={}", v.display())).collect();
                outln!("form: {}", form.join("  "));
                for (table, rows) in &a.children {
                    for row in rows {
                        let cells: Vec<String> = row.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        outln!("{table}: {}", cells.join("  "));
                    }
                }
            }
            return Ok(exit::OK);
        }
        AccountCommand::Set(s) => {
            let inputs = form_inputs(&s.form, &s.secrets)?;
            if inputs.is_empty() {
                return Err(fail(exit::USAGE, "nothing to change: pass --form FIELD=VALUE or --secret FIELD=env:VAR"));
            }
            e.set_form(&s.process, &s.user, &inputs)
        }
        AccountCommand::Child(ChildCommand::Add(r)) => {
            let row = pairs("a child row", &r.values)?;
            e.child(&r.process, &r.user, &r.table, row, true)
        }
        AccountCommand::Child(ChildCommand::Remove(r)) => {
            let row = pairs("a child row", &r.values)?;
            e.child(&r.process, &r.user, &r.table, row, false)
        }
    }
    .map_err(engine_error)?;
    report_account(global, &*e.store, id)
}

fn target(global: &Global, c: TargetCommand) -> Outcome {
    let a = match c {
        TargetCommand::Install(a) => a,
        TargetCommand::Check(a) => return target_check(global, a),
    };
    let bundle = load_bundle(&paths_or_default(&a.paths))?;
    let Some((index, t)) = bundle.target(&a.name) else {
        let s = engine::did_you_mean(&a.name, bundle.targets.iter().map(|t| t.name.as_str()));
        return Err(fail(
            exit::USAGE,
            format!("unknown target `{}`{}", a.name, s.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()),
        ));
    };
    let mut targets = targets_of(global, &bundle)?;
    let file = targets.sqlite_file(&bundle, index);
    let scripts = bundle.query_sets.get(t.query_set).map(|q| q.install.clone()).unwrap_or_default();
    let opened = targets.open(&bundle, index).map_err(|e| fail(exit::USAGE, format!("target `{}`: {e}", a.name)))?;
    for s in &scripts {
        opened
            .install(&s.sql)
            .map_err(|e| fail(exit::FAILED, format!("target `{}`: `{}` failed: {e}", a.name, s.path)))?;
        if global.format == Format::Human {
            let at = file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default();
            errln!("installed {} into {}{at}", s.path, a.name);
        }
    }
    if scripts.is_empty() && global.format == Format::Human {
        errln!("target `{}` has no install scripts", a.name);
    }
    if global.format == Format::Json {
        out::json(
            &json!({ "target": a.name, "installed": scripts.iter().map(|s| s.path.clone()).collect::<Vec<_>>() }),
        );
    }
    Ok(exit::OK)
}

/// `provflow target check`: every `call` of the target's query set against the live catalog,
/// reported as diagnostics at the query's YAML location, in the formats of `compile`.
fn target_check(global: &Global, a: crate::args::TargetArgs) -> Outcome {
    let format = if matches!(global.format, Format::Mermaid | Format::Dot) { Format::Human } else { global.format };
    let Some(c) = crate::compile_cmds::compile_and_report(&paths_or_default(&a.paths), format) else {
        return Err(Exit(exit::USAGE));
    };
    let Some(bundle) = c.bundle.as_ref().filter(|_| c.errors() == 0) else {
        return Err(fail(exit::FAILED, "the definitions have errors (above); fix them and run again"));
    };
    let Some((index, t)) = bundle.target(&a.name) else {
        let s = engine::did_you_mean(&a.name, bundle.targets.iter().map(|t| t.name.as_str()));
        return Err(fail(
            exit::USAGE,
            format!("unknown target `{}`{}", a.name, s.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()),
        ));
    };
    let Some(set) = bundle.query_sets.get(t.query_set) else {
        return Err(fail(exit::USAGE, format!("target `{}` has no query set", a.name)));
    };
    let mut targets = targets_of(global, bundle)?;
    let opened = targets.open(bundle, index).map_err(|e| fail(exit::USAGE, format!("target `{}`: {e}", a.name)))?;
    let findings = provflow_runner::target::catalog::check(opened, set)
        .map_err(|e| fail(exit::USAGE, format!("target `{}`: cannot read the catalog: {e}", a.name)))?;
    let text_of = |file: &str| c.files.iter().find(|f| f.path == file).and_then(|f| f.text.clone());
    let diagnostics: Vec<provflow_compiler::diagnostic::Diagnostic> = findings
        .iter()
        .map(|f| {
            let len = f.len;
            let span = text_of(&f.location.file)
                .map(|text| {
                    provflow_compiler::yaml::LineIndex::new(&text).point(f.location.line, f.location.column, len)
                })
                .unwrap_or_default();
            provflow_compiler::diagnostic::Diagnostic {
                severity: provflow_compiler::diagnostic::Severity::Error,
                code: f.code,
                message: f.message.clone(),
                file: f.location.file.clone(),
                line: f.location.line,
                column: f.location.column,
                end_line: f.location.line,
                end_column: f.location.column + len,
                help: f.help.clone(),
                span,
            }
        })
        .collect();
    crate::report::print_diagnostics(&diagnostics, format, &text_of);
    let calls = set.queries.iter().filter(|q| q.call.is_some()).count();
    if format == Format::Human {
        let verdict = if diagnostics.is_empty() { "ok" } else { "failed" };
        errln!(
            "target check {verdict}: {} mismatch(es) in {calls} procedure call(s) of `{}` against `{}`",
            diagnostics.len(),
            set.name,
            a.name
        );
    }
    Ok(if diagnostics.is_empty() { exit::OK } else { exit::FAILED })
}
