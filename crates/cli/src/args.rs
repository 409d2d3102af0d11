//! Every flag of `provflow`, defined once (SPEC §5).

use clap::{Args, Parser, Subcommand, ValueEnum};
use provflow_runner::credentials;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "provflow",
    version,
    about = "Declarative provisioning workflows: compile YAML definitions, run them against SQL targets",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The state store: `sqlite:PATH`, or a PostgreSQL database shared by several runners and
    /// workers (`postgres://USER@HOST:PORT/DB` or a key=value DSN; its tables are created on
    /// first use).
    #[arg(
        long,
        global = true,
        env = "PROVFLOW_STATE",
        hide_env_values = true,
        default_value = "sqlite:.provflow/state.db"
    )]
    pub state: String,
    /// A target's connection URL, `NAME=URL` (repeatable). Overrides the target's `url_env`.
    #[arg(long = "target", global = true, value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    /// GitHub Actions annotations (`compile` only).
    Github,
    /// Mermaid flowchart (`graph` only; its default).
    Mermaid,
    /// Graphviz DOT (`graph` only).
    Dot,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check definitions and write the IR.
    Compile(CompileArgs),
    /// Write the JSON Schemas editors use for completion and hover docs.
    Schema(SchemaArgs),
    /// Draw a process's task graph (Mermaid or DOT).
    Graph(GraphArgs),
    /// Dry run: the tasks and calls that would run, secrets masked, nothing sent.
    Plan(ProvisionArgs),
    /// Provision one account for an existing user and run until no task can run now.
    Run(RunArgs),
    /// Finish all unfinished work in the state store.
    Resume(ResumeArgs),
    /// The user lifecycle.
    #[command(subcommand)]
    User(UserCommand),
    /// The work queue of tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Accounts (process instances), form updates and child-table rows.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Install and check a target's stored procedures.
    #[command(subcommand, name = "target")]
    TargetCmd(TargetCommand),
    /// Reconcile target accounts into a process.
    Recon(ReconArgs),
    /// The notification outbox.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Run every Scenario.
    Test(TestArgs),
    /// The state store itself: copy it to another database.
    #[command(subcommand)]
    State(StateCommand),
    /// Run work from the state store until stopped (SIGTERM or SIGINT), or `worker list`.
    Worker(WorkerArgs),
    /// The key that seals secrets at rest: generate one, or rotate the store to a new one.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Convert legacy definitions.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The language server, over stdin/stdout: the compiler's diagnostics, go to definition,
    /// references, hover, completion, rename and quick fixes, for editors.
    Lsp,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// Definition files or directories (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// Write the checked IR (JSON) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Where to write the schemas.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Do not write: exit 1 when the directory differs from what this provflow generates.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Definition files or directories (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// The process to draw. The graph language is chosen with `--format mermaid|dot`.
    #[arg(long)]
    pub process: String,
}

#[derive(Args, Debug)]
pub struct ProvisionArgs {
    /// Definition files or directories, or a compiled IR file (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// The process to provision.
    #[arg(long)]
    pub process: String,
    /// The user's login.
    #[arg(long)]
    pub user: String,
    /// A form field value, `field=value` (repeatable).
    #[arg(long = "form", value_name = "FIELD=VALUE")]
    pub form: Vec<String>,
    /// A secret form field, `field=env:VAR` or `field=file:PATH` (repeatable). Never on the command line itself.
    #[arg(long = "secret", value_name = "FIELD=env:VAR|file:PATH")]
    pub secrets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Definition files or directories, or a compiled IR file (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// The process to provision.
    #[arg(long)]
    pub process: String,
    /// The user's login; repeat it to provision an account for each of several users.
    #[arg(long = "user", value_name = "LOGIN", required_unless_present = "users_file")]
    pub users: Vec<String>,
    /// A file of logins, one per line (blank lines and `#` comments are skipped; `-` reads
    /// standard input): an account for each.
    #[arg(long = "users", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// A form field value, `field=value` (repeatable); the same for every account.
    #[arg(long = "form", value_name = "FIELD=VALUE")]
    pub form: Vec<String>,
    /// A secret form field, `field=env:VAR` or `field=file:PATH` (repeatable). Never on the command line itself.
    #[arg(long = "secret", value_name = "FIELD=env:VAR|file:PATH")]
    pub secrets: Vec<String>,
    #[command(flatten)]
    pub batch: BatchArg,
    /// Record the accounts and their first tasks and return at once, printing their ids:
    /// `provflow worker` processes do the rest. Secret form fields need the workers' secret key.
    #[arg(long)]
    pub enqueue: bool,
}

#[derive(Args, Debug)]
pub struct BatchArg {
    /// How many accounts run side by side, sharing the state store's commits (faster with
    /// many accounts). After a crash, every call of the batch in flight may have happened:
    /// idempotent ones run again, the others are handed to a person; 1 keeps that to one call.
    #[arg(long = "batch", value_name = "N", default_value_t = provflow_runner::engine::DEFAULT_BATCH,
          value_parser = batch_size)]
    pub size: usize,
}

fn batch_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=10_000) => Ok(n),
        _ => Err(format!("`{text}` is not a batch size: give a whole number of accounts from 1 to 10000")),
    }
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Sleep until the next retry is due, and run it, until no work is left.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub batch: BatchArg,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user.
    Create(UserAttrs),
    /// Change a user's attributes (runs the processes' triggers).
    Modify(UserAttrs),
    /// Enable a user (runs `effect: enables` tasks).
    Enable(UserLogin),
    /// Disable a user (runs `effect: disables` tasks).
    Disable(UserLogin),
    /// Delete a user (runs the undo path of each account).
    Delete(UserLogin),
    /// Lock a user (runs nothing).
    Lock(UserLogin),
    /// Unlock a user (runs nothing).
    Unlock(UserLogin),
    /// List users.
    List,
}

#[derive(Args, Debug)]
pub struct UserAttrs {
    /// The user's login.
    pub login: String,
    /// An attribute, `name=value` (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub attrs: Vec<String>,
    /// Definition files, directories or an IR file whose user schema applies (default: the newest bundle in the state store, else `definitions/`).
    #[arg(long)]
    pub definitions: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UserLogin {
    /// The user's login.
    pub login: String,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// List task instances.
    List {
        /// Only tasks with this status (e.g. `Pending`).
        #[arg(long)]
        status: Option<String>,
    },
    /// Complete a pending task (a manual task, or one handed to a person).
    Complete(TaskAction),
    /// Reject a pending task.
    Reject(TaskAction),
    /// Cancel a task.
    Cancel(TaskAction),
    /// Insert a new attempt of a rejected task now.
    Retry(TaskAction),
}

#[derive(Args, Debug)]
pub struct TaskAction {
    /// The task instance id (see `provflow task list`).
    pub id: i64,
    /// The response code to record.
    #[arg(long)]
    pub response: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// List accounts.
    List,
    /// Show an account and its tasks.
    Show(AccountRef),
    /// Change form fields (runs `"<label> Updated"` tasks).
    Set(AccountSet),
    /// Child-table rows.
    #[command(subcommand)]
    Child(ChildCommand),
}

#[derive(Args, Debug)]
pub struct AccountRef {
    #[arg(long)]
    pub process: String,
    #[arg(long)]
    pub user: String,
}

#[derive(Args, Debug)]
pub struct AccountSet {
    #[arg(long)]
    pub process: String,
    #[arg(long)]
    pub user: String,
    /// A form field value, `field=value` (repeatable).
    #[arg(long = "form", value_name = "FIELD=VALUE")]
    pub form: Vec<String>,
    /// A secret form field, `field=env:VAR` or `field=file:PATH` (repeatable).
    #[arg(long = "secret", value_name = "FIELD=env:VAR|file:PATH")]
    pub secrets: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ChildCommand {
    /// Add a row (runs the table's `on_insert` task).
    Add(ChildRow),
    /// Remove a row (runs the table's `on_delete` task).
    Remove(ChildRow),
}

#[derive(Args, Debug)]
pub struct ChildRow {
    #[arg(long)]
    pub process: String,
    #[arg(long)]
    pub user: String,
    /// The child table.
    pub table: String,
    /// The row's values, `field=value`.
    #[arg(required = true)]
    pub values: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// Run the target's `install` SQL files.
    Install(TargetArgs),
    /// Verify every called procedure against the live catalog.
    Check(TargetArgs),
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// The target's name.
    pub name: String,
    /// Definition files or directories (default: `definitions/`).
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReconArgs {
    /// `events`: list what a run did.
    #[command(subcommand)]
    pub command: Option<ReconCommand>,
    /// Definition files or directories (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// The process to reconcile. Required unless a subcommand (`events`) is given.
    #[arg(long, required = true)]
    pub process: Option<String>,
    /// Read rows from this CSV file.
    #[arg(long, conflicts_with = "from_target")]
    pub csv: Option<PathBuf>,
    /// Read rows from the process's `recon.query`.
    #[arg(long)]
    pub from_target: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Subcommand, Debug)]
pub enum ReconCommand {
    /// List the events of a reconciliation run (default: the newest run).
    Events {
        /// The run id (printed by `provflow recon`).
        #[arg(long)]
        run: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotificationsCommand {
    /// List the outbox.
    List,
    /// Write one `.eml` file per message.
    Export {
        /// The directory to write to.
        dir: PathBuf,
        /// The sender of messages whose template has no `from:`: `local@domain` or
        /// `Display Name <local@domain>` (default: `provflow <provflow@localhost>`).
        #[arg(long, env = "PROVFLOW_MAIL_FROM", value_name = "MAILBOX")]
        from: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Copy a state store into an empty one (SQLite to PostgreSQL and back): everything, the
    /// audit trail and sealed secrets included, in one transaction, verified table by table.
    Copy(StateCopyArgs),
}

#[derive(Args, Debug)]
pub struct StateCopyArgs {
    /// The store to copy, only read: `sqlite:PATH`, `postgres://…` or a key=value DSN.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The empty store to copy into: a new SQLite file or an empty PostgreSQL database (it must
    /// exist; its tables are created). A destination holding any row is refused.
    #[arg(long, value_name = "URL")]
    pub to: String,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
    /// How many batches of accounts run at once (each makes one target call at a time).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How many seconds a claim lives without a heartbeat; another worker rescues the work
    /// of a worker silent for longer. Heartbeats come every third of it.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz
    /// (`127.0.0.1:9464`, or `0.0.0.0:9464` for every interface).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// This worker's name in the store and its logs (default: HOST:PID:START). Two live
    /// workers cannot share one.
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// The longest an idle worker sleeps without being woken (on PostgreSQL, commits wake it
    /// at once; retries falling due and expired leases too).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll: u64,
    /// How many accounts one slot claims and runs together, sharing the state store's commits.
    #[arg(long = "batch", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Once stopping, how many seconds calls in flight may take to finish before the worker
    /// exits and leaves them to the lease rule.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub grace: u64,
    /// Log lines as `text` (key=value, for people) or `json` (one object a line).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new random key file (64 hex digits), readable by its owner only. An existing
    /// file is never replaced: its secrets would become unreadable.
    Generate {
        /// Where to write it.
        #[arg(long, value_name = "FILE", default_value = ".provflow/secret.key")]
        out: PathBuf,
    },
    /// Re-seal every secret of the state store under a new key, in one transaction. The
    /// current key comes from PROVFLOW_SECRET_KEY or .provflow/secret.key as usual.
    Rotate {
        /// The new key's file (from `provflow key generate --out FILE`).
        #[arg(long = "new-key", value_name = "FILE")]
        new_key: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkerCommand {
    /// The workers the state store knows: live, stopped or silent, their last heartbeat and
    /// the work each holds.
    List,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Definition files or directories (default: `definitions/`).
    pub paths: Vec<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Print a legacy `provision.queries` file as `ConnectorQueries` YAML.
    ProvisionQueries {
        /// The legacy file.
        file: PathBuf,
        /// The database the converted queries will run on (required: a legacy file does not
        /// say, and quoting, binds and calls differ between them).
        #[arg(long, value_parser = ["postgres", "mariadb", "sqlite"])]
        dialect: Option<String>,
        /// The name of the query set (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
}

/// The definition paths of a command, defaulting to `definitions/`.
pub fn paths_or_default(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("definitions")]
    } else {
        paths.to_vec()
    }
}

/// The `--target NAME=URL` overrides by name. A flag without `NAME=` (a bare URL or DSN,
/// whose `password=` would otherwise split into a name and a value) is refused; the message
/// shows it redacted.
pub fn target_urls(flags: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for flag in flags {
        let bare = credentials::is_key_value_dsn(flag);
        let pair = flag.split_once('=').filter(|(name, url)| {
            !bare && !name.is_empty() && !url.is_empty() && !name.contains("://") && !name.contains('@')
        });
        let Some((name, url)) = pair else {
            return Err(format!("--target takes NAME=URL, got `{}`", credentials::redact(flag)));
        };
        map.insert(name.to_string(), url.to_string());
    }
    Ok(map)
}
