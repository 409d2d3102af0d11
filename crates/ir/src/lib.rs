//! The checked intermediate representation (IR) of a provflow bundle.
//!
//! This crate is plain data: serde types and nothing else. The compiler produces a [`Bundle`]
//! only when every check passed, so the runner may rely on these invariants:
//!
//! - every cross reference is resolved: tasks are referenced by their index in
//!   [`Process::tasks`], targets, query sets, events and templates by their index in the
//!   bundle's vectors;
//! - vectors of named definitions are sorted by name, tasks are in a topological order of
//!   `depends_on` (ties broken by declaration order);
//! - queries are pre-split into [`Segment`]s for their dialect;
//! - serialising the same bundle twice gives byte-identical JSON.
//!
//! Bump [`IR_VERSION`] on any change that an older runner would misread. Keep
//! [`OLDEST_READABLE_IR_VERSION`] where it is as long as an older IR still reads correctly
//! into today's types (fields added since then are optional), so the bundles that state
//! stores hold keep working after an upgrade.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the IR layout this provflow writes. Version 2 added the notification
/// template's sender (`from`), version 3 the target's `max_concurrent_calls` (an older runner
/// would run without the limit, so it must refuse such a bundle).
pub const IR_VERSION: u32 = 3;

/// The oldest IR layout this provflow still reads: every version from this one to
/// [`IR_VERSION`] reads into today's types, with what was added since left empty.
pub const OLDEST_READABLE_IR_VERSION: u32 = 1;

/// A whole compiled bundle: everything `provflow compile` checked, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub ir_version: u32,
    /// Hex SHA-256 of the canonical JSON of this bundle with `hash` set to the empty string.
    pub hash: String,
    pub targets: Vec<Target>,
    pub query_sets: Vec<QuerySet>,
    pub processes: Vec<Process>,
    pub events: Vec<NotificationEvent>,
    pub templates: Vec<NotificationTemplate>,
    pub user_schema: UserSchema,
    pub scenarios: Vec<Scenario>,
}

/// Where a definition came from, for run-time messages that point back at the YAML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Location {
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based.
    pub column: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mariadb,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mariadb => "mariadb",
        }
    }

    /// The database server's name, for messages (`PostgreSQL`, `MariaDB`, `SQLite`).
    pub fn server(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mariadb => "MariaDB",
        }
    }
}

/// A database the runner provisions into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub dialect: Dialect,
    /// Index into [`Bundle::query_sets`].
    pub query_set: usize,
    /// Name of the environment variable holding the connection URL, if any.
    pub url_env: Option<String>,
    pub properties: BTreeMap<String, String>,
    /// The most calls to this target in flight at once, all workers together (1 to 10000, checked
    /// by the compiler); `None`: no limit. Absent from the JSON when `None`, so bundles without
    /// a limit serialise as before and older IR reads with no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    pub location: Location,
}

/// The value types of query parameters, form fields and user attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueType {
    String,
    GuardedString,
    Long,
    Integer,
    Double,
    Boolean,
    Date,
    Timestamp,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "String",
            ValueType::GuardedString => "GuardedString",
            ValueType::Long => "Long",
            ValueType::Integer => "Integer",
            ValueType::Double => "Double",
            ValueType::Boolean => "Boolean",
            ValueType::Date => "Date",
            ValueType::Timestamp => "Timestamp",
        }
    }

    pub fn is_secret(self) -> bool {
        self == ValueType::GuardedString
    }
}

/// How a parameter's value reaches the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quoting {
    /// A real bind parameter (no tag).
    Bind,
    /// Inlined as a dialect-correct quoted identifier (`IDENTIFIER`).
    Identifier,
    /// Inlined wrapped in `"` with `"` doubled (`DOUBLEQUOTES`).
    DoubleQuotes,
    /// Inlined as a single-quoted literal, `'` doubled, `\` escaped on MariaDB (`QUOTES`).
    Quotes,
}

/// Direction of a query parameter, derived from `params` and `outputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamMode {
    In,
    Out,
    InOut,
}

/// A named parameter of a query: an input, an output, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryParam {
    pub name: String,
    pub ty: ValueType,
    pub mode: ParamMode,
    pub quoting: Quoting,
}

/// A piece of a query's SQL text after splitting at its placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Literal SQL text, sent as is.
    Text(String),
    /// A bind parameter: index into [`Query::params`].
    Bind(usize),
    /// A value inlined with the quoting of its parameter: index into [`Query::params`].
    Inline(usize),
    /// An OUT parameter slot of a `call`: index into [`Query::params`].
    Out(usize),
}

/// A `call` statement recognised in a query, for procedure checks and target adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub procedure: String,
    /// The parameter (index into [`Query::params`]) passed at each argument position;
    /// `None` for an argument that is a SQL expression rather than a placeholder.
    pub args: Vec<Option<usize>>,
    /// The argument names of named notation (`call p(usr => {__NAME__})`), one per argument
    /// (`None` for a positional one); empty when every argument is positional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Option<String>>,
    /// Where the procedure's name is written, inside the query text: findings about the call
    /// point there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Call {
    /// A call whose arguments are all positional, with no known location.
    pub fn positional(procedure: impl Into<String>, args: Vec<Option<usize>>) -> Self {
        Call { procedure: procedure.into(), args, names: Vec::new(), location: None }
    }
}

/// A typed column of a query's result rows (reconciliation and expectations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ValueType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub name: String,
    /// The original SQL text with its `{placeholders}`.
    pub source: String,
    pub segments: Vec<Segment>,
    pub params: Vec<QueryParam>,
    pub call: Option<Call>,
    /// Index into `params` of the OUT parameter whose value is the response code.
    pub response_from: Option<usize>,
    /// SQLSTATE (or vendor error number) → response code.
    pub errors: BTreeMap<String, String>,
    pub columns: Vec<Column>,
    pub idempotent: bool,
    pub location: Location,
}

impl Query {
    /// A query of fixed SQL text with no parameters, reading `columns` as text: the runner's
    /// own catalog reads, and tests.
    pub fn fixed(name: &str, sql: &str, columns: &[&str]) -> Query {
        Query {
            name: name.into(),
            source: sql.into(),
            segments: vec![Segment::Text(sql.into())],
            params: vec![],
            call: None,
            response_from: None,
            errors: BTreeMap::new(),
            columns: columns.iter().map(|n| Column { name: (*n).into(), ty: ValueType::String }).collect(),
            idempotent: false,
            location: Location::default(),
        }
    }
}

/// An emulated stored procedure (sqlite only): statements run in a SAVEPOINT with named binds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Procedure {
    pub name: String,
    pub params: Vec<String>,
    /// The statements of the body, split at top-level `;`.
    pub statements: Vec<String>,
}

/// A `ConnectorQueries` set: the `provision.queries` of one target type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuerySet {
    pub name: String,
    pub dialect: Dialect,
    /// Install scripts, resolved relative to the working directory of the compile.
    pub install: Vec<InstallScript>,
    pub queries: Vec<Query>,
    pub procedures: Vec<Procedure>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallScript {
    /// The path as written in the definition.
    pub path: String,
    /// The script's text, so that an IR file is self-contained.
    pub sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessType {
    Provisioning,
    Approval,
}

/// Task statuses (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    Waiting,
    Pending,
    Completed,
    #[serde(rename = "Manually Completed")]
    ManuallyCompleted,
    Rejected,
    #[serde(rename = "Unsuccessfully Completed")]
    UnsuccessfullyCompleted,
    Cancelled,
    #[serde(rename = "Pending Cancellation")]
    PendingCancellation,
    Suspended,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Waiting,
        TaskStatus::Pending,
        TaskStatus::Completed,
        TaskStatus::ManuallyCompleted,
        TaskStatus::Rejected,
        TaskStatus::UnsuccessfullyCompleted,
        TaskStatus::Cancelled,
        TaskStatus::PendingCancellation,
        TaskStatus::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "Waiting",
            TaskStatus::Pending => "Pending",
            TaskStatus::Completed => "Completed",
            TaskStatus::ManuallyCompleted => "Manually Completed",
            TaskStatus::Rejected => "Rejected",
            TaskStatus::UnsuccessfullyCompleted => "Unsuccessfully Completed",
            TaskStatus::Cancelled => "Cancelled",
            TaskStatus::PendingCancellation => "Pending Cancellation",
            TaskStatus::Suspended => "Suspended",
        }
    }

    /// The identity manager's one- or two-letter code (`C`, `MC`, ...), which `parse` accepts
    /// too. `Waiting` has none.
    pub fn code(self) -> Option<&'static str> {
        Some(match self {
            TaskStatus::Waiting => return None,
            TaskStatus::Pending => "P",
            TaskStatus::Completed => "C",
            TaskStatus::ManuallyCompleted => "MC",
            TaskStatus::Rejected => "R",
            TaskStatus::UnsuccessfullyCompleted => "UC",
            TaskStatus::Cancelled => "X",
            TaskStatus::PendingCancellation => "PX",
            TaskStatus::Suspended => "S",
        })
    }

    /// Accepts the full name or the one/two-letter code of the identity manager (C, MC, ...).
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|st| st.as_str() == s || st.code() == Some(s))
    }

    /// Statuses that let dependent tasks proceed.
    pub fn satisfies_dependency(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::ManuallyCompleted | TaskStatus::UnsuccessfullyCompleted)
    }

    /// Statuses after which a task instance never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::ManuallyCompleted
                | TaskStatus::Rejected
                | TaskStatus::UnsuccessfullyCompleted
                | TaskStatus::Cancelled
        )
    }
}

/// Object (account) statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectStatus {
    Waiting,
    Ready,
    Provisioning,
    Provisioned,
    Enabled,
    Disabled,
    Revoked,
    #[serde(rename = "Provide Information")]
    ProvideInformation,
    /// In a status map: no effect on the account.
    None,
}

impl ObjectStatus {
    pub const ALL: [ObjectStatus; 9] = [
        ObjectStatus::Waiting,
        ObjectStatus::Ready,
        ObjectStatus::Provisioning,
        ObjectStatus::Provisioned,
        ObjectStatus::Enabled,
        ObjectStatus::Disabled,
        ObjectStatus::Revoked,
        ObjectStatus::ProvideInformation,
        ObjectStatus::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectStatus::Waiting => "Waiting",
            ObjectStatus::Ready => "Ready",
            ObjectStatus::Provisioning => "Provisioning",
            ObjectStatus::Provisioned => "Provisioned",
            ObjectStatus::Enabled => "Enabled",
            ObjectStatus::Disabled => "Disabled",
            ObjectStatus::Revoked => "Revoked",
            ObjectStatus::ProvideInformation => "Provide Information",
            ObjectStatus::None => "None",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectStatus> {
        ObjectStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    None,
    Enables,
    Disables,
}

/// A provisioning (or approval) process definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    pub process_type: ProcessType,
    pub object: String,
    pub default: bool,
    /// Index into [`Bundle::targets`].
    pub target: usize,
    pub form: Form,
    /// In a topological order of `depends_on`.
    pub tasks: Vec<Task>,
    pub triggers: Vec<Trigger>,
    pub recon: Option<Recon>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Form {
    pub table: Option<String>,
    pub auto_save: bool,
    pub fields: Vec<FormField>,
    pub child_tables: Vec<ChildTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    pub name: String,
    pub ty: ValueType,
    pub label: String,
    pub required: bool,
    /// A user attribute the field is filled from when provisioning.
    pub from_user: Option<String>,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildTable {
    pub name: String,
    pub fields: Vec<FormField>,
    /// Index into [`Process::tasks`].
    pub on_insert: Option<usize>,
    /// Index into [`Process::tasks`].
    pub on_delete: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub description: Option<String>,
    pub duration_minutes: Option<u64>,
    pub conditional: bool,
    /// A minijinja expression over `user`, `form` and `target`.
    pub condition: Option<String>,
    pub required_for_completion: bool,
    pub effect: Effect,
    pub disable_manual_insert: bool,
    pub allow_cancellation_while_pending: bool,
    pub allow_multiple_instances: bool,
    pub retry: Option<Retry>,
    pub depends_on: Vec<usize>,
    pub responses: Vec<Response>,
    pub undo: Vec<usize>,
    pub recovery: Vec<usize>,
    pub complete_on_recovery: bool,
    pub status_map: BTreeMap<TaskStatus, ObjectStatus>,
    /// Task status → index into [`Bundle::templates`].
    pub notify: BTreeMap<TaskStatus, usize>,
    pub action: TaskAction,
    /// For a `"<label> Updated"` task: the form field whose change inserts it.
    pub updates_field: Option<String>,
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub count: u32,
    pub period_minutes: u64,
}

/// What a response code does to the task that received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub code: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub generate: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    /// Runs a query of the process target's query set.
    Adapter(Adapter),
    /// Waits in the work queue for a person.
    Manual { assignee: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    /// Index into the query set's `queries`.
    pub query: usize,
    /// One mapping per IN/INOUT parameter of the query, in parameter order.
    pub map: Vec<Mapping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// Index into the query's `params`.
    pub param: usize,
    pub source: Source,
}

/// Where an adapter variable's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Form(String),
    Child(String),
    User(String),
    Target(String),
    Literal(String),
    SystemDate,
    TaskOutput { task: usize, output: String },
}

/// A user attribute whose change (on user MODIFY) inserts a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub attribute: String,
    pub task: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconAction {
    None,
    Create,
    Link,
    Update,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recon {
    /// Index into the target's query set.
    pub query: Option<usize>,
    pub fields: Vec<ReconField>,
    pub no_match: ReconAction,
    pub one_entity_match: ReconAction,
    pub one_process_match: ReconAction,
    pub multiple_matches: ReconAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconField {
    pub name: String,
    pub ty: ValueType,
    pub maps_to: ReconTarget,
    pub key: bool,
    pub case_insensitive: bool,
    /// Source value → object status (only for `OIM_OBJECT_STATUS`).
    pub values: BTreeMap<String, ObjectStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconTarget {
    Form(String),
    User(String),
    ObjectStatus,
}

/// An entity whose attributes a notification template may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEntity {
    pub name: String,
    /// The variable name: `name` with spaces replaced by `_`.
    pub variable: String,
    pub entity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationEvent {
    pub name: String,
    pub static_data: Vec<EventEntity>,
    pub params: Vec<EventEntity>,
    pub resolver: Option<Resolver>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolverTarget {
    State,
    /// Index into [`Bundle::targets`].
    Target(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolver {
    pub target: ResolverTarget,
    pub source: String,
    pub segments: Vec<Segment>,
    pub params: Vec<QueryParam>,
    pub provides: Vec<Column>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Html,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    #[serde(rename = "UTF-8")]
    Utf8,
    #[serde(rename = "ASCII")]
    Ascii,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationTemplate {
    pub name: String,
    /// Index into [`Bundle::events`].
    pub event: usize,
    pub default_locale: String,
    /// Sorted by locale.
    pub locales: Vec<LocalizedMessage>,
    /// The sender of its messages; `None`: the sender the export is given (or its default).
    pub from: Option<Mailbox>,
    pub location: Location,
}

/// A mail address with an optional display name, as checked by the compiler: the address is
/// ASCII `local@domain`, the name has no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// One locale of a template. Sources are minijinja, with legacy `$Token`s already rewritten to
/// `{{ Token }}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalizedMessage {
    pub locale: String,
    pub encoding: Encoding,
    pub message_type: MessageType,
    pub subject: String,
    pub short: String,
    pub long: String,
    /// Every top-level variable the three messages use, sorted.
    pub variables: Vec<String>,
}

/// A user attribute: built in or custom (a UDF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAttribute {
    pub name: String,
    pub ty: ValueType,
    pub label: String,
    /// The template variable name: `label` with spaces replaced by `_`.
    pub variable: String,
    pub required: bool,
    pub searchable: bool,
    pub multi_valued: bool,
    pub max_size: Option<u32>,
    pub encrypted: bool,
    pub builtin: bool,
    /// For enumerated attributes such as `usr_status`.
    pub allowed_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSchema {
    /// `None` when the bundle declares no `UserSchema` (the built-in attributes only).
    pub name: Option<String>,
    pub attributes: Vec<UserAttribute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<ScenarioStep>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioStep {
    pub location: Location,
    pub action: StepAction,
}

/// A value given in a scenario: plain, or a secret read from the environment at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepValue {
    Plain(String),
    SecretEnv(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    CreateUser {
        attributes: BTreeMap<String, String>,
    },
    ModifyUser {
        user: String,
        attributes: BTreeMap<String, String>,
    },
    EnableUser {
        user: String,
    },
    DisableUser {
        user: String,
    },
    DeleteUser {
        user: String,
    },
    LockUser {
        user: String,
    },
    UnlockUser {
        user: String,
    },
    /// `process` is an index into [`Bundle::processes`].
    Provision {
        process: usize,
        user: String,
        form: BTreeMap<String, StepValue>,
    },
    SetForm {
        process: usize,
        user: String,
        form: BTreeMap<String, StepValue>,
    },
    CompleteTask {
        process: usize,
        user: String,
        task: usize,
        response: Option<String>,
    },
    RejectTask {
        process: usize,
        user: String,
        task: usize,
        response: Option<String>,
    },
    Recon {
        process: usize,
        csv: Option<String>,
        from_target: bool,
    },
    Resume,
    ExpectAccount {
        process: usize,
        user: String,
        status: ObjectStatus,
    },
    ExpectTask {
        process: usize,
        user: String,
        task: usize,
        status: TaskStatus,
    },
    ExpectSql {
        target: usize,
        query: String,
        equals: serde_json::Value,
    },
    ExpectNotification {
        template: usize,
        to: String,
        subject_contains: Option<String>,
        body_contains: Option<String>,
    },
}

impl Bundle {
    /// Serialises the bundle to its canonical JSON (pretty, stable key order).
    pub fn to_json(&self) -> String {
        // Serialising plain data structs, BTreeMaps and Vecs cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn process(&self, name: &str) -> Option<(usize, &Process)> {
        self.processes.iter().enumerate().find(|(_, p)| p.name == name)
    }

    pub fn target(&self, name: &str) -> Option<(usize, &Target)> {
        self.targets.iter().enumerate().find(|(_, t)| t.name == name)
    }
}

impl Process {
    pub fn task(&self, name: &str) -> Option<(usize, &Task)> {
        self.tasks.iter().enumerate().find(|(_, t)| t.name == name)
    }
}

/// Why an IR file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Json(serde_json::Error),
    Version { found: u32 },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Json(e) => write!(f, "not a provflow IR file: {e}"),
            LoadError::Version { found } => write!(
                f,
                "IR version {found} is not supported (this provflow reads versions {OLDEST_READABLE_IR_VERSION} to {IR_VERSION}); recompile the definitions with this provflow"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads an IR file's JSON, refusing versions it cannot read before looking at the rest.
pub fn load(json: &str) -> Result<Bundle, LoadError> {
    #[derive(Deserialize)]
    struct Header {
        ir_version: u32,
    }
    let header: Header = serde_json::from_str(json).map_err(LoadError::Json)?;
    if !(OLDEST_READABLE_IR_VERSION..=IR_VERSION).contains(&header.ir_version) {
        return Err(LoadError::Version { found: header.ir_version });
    }
    serde_json::from_str(json).map_err(LoadError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(ir_version: u32, max_concurrent_calls: Option<u32>) -> Bundle {
        Bundle {
            ir_version,
            hash: String::new(),
            targets: vec![Target {
                name: "db".into(),
                dialect: Dialect::Sqlite,
                query_set: 0,
                url_env: None,
                properties: BTreeMap::new(),
                max_concurrent_calls,
                location: Location::default(),
            }],
            query_sets: Vec::new(),
            processes: Vec::new(),
            events: Vec::new(),
            templates: Vec::new(),
            user_schema: UserSchema { name: None, attributes: Vec::new() },
            scenarios: Vec::new(),
        }
    }

    #[test]
    fn a_call_limit_is_written_only_when_set() {
        let without = serde_json::to_value(bundle(IR_VERSION, None)).unwrap();
        assert!(without["targets"][0].get("max_concurrent_calls").is_none(), "{without}");
        let with = serde_json::to_string(&bundle(IR_VERSION, Some(4))).unwrap();
        assert!(with.contains(r#""max_concurrent_calls":4,"location""#), "{with}");
        assert_eq!(load(&with).unwrap(), bundle(IR_VERSION, Some(4)));
    }

    #[test]
    fn an_ir_written_before_the_call_limit_reads_with_no_limit() {
        // Version 2 had no `max_concurrent_calls`; its bundles are in state stores and must still load.
        let mut v2 = serde_json::to_value(bundle(2, Some(4))).unwrap();
        v2["targets"][0].as_object_mut().unwrap().remove("max_concurrent_calls");
        let read = load(&v2.to_string()).unwrap();
        assert_eq!(read, bundle(2, None));
    }

    #[test]
    fn versions_outside_the_readable_range_are_refused() {
        for version in [OLDEST_READABLE_IR_VERSION - 1, IR_VERSION + 1] {
            let json = serde_json::to_string(&bundle(version, None)).unwrap();
            assert!(matches!(load(&json), Err(LoadError::Version { found }) if found == version), "{version}");
        }
    }
}
