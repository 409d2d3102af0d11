//! Notifications (SPEC §2.4): rendering queued outbox rows with their template, the outbox
//! listing, and `.eml` export.
//!
//! The engine queues a row in the same transaction as the task transition that fires it;
//! rendering happens afterwards ([`render_pending`]). That split is deliberate: a template
//! that fails to render (a non-ASCII name in an ASCII template, a resolver query that fails)
//! is recorded on its outbox row as `failed` and never fails or rolls back provisioning.
//!
//! Secrets never reach a template: `GuardedString` user attributes are left out of every
//! variable, and no form field is exposed at all.
//!
//! What a rendered message may contain: line breaks in a subject or short message become
//! spaces (they are one line); a CR or CR LF in a body becomes a line break; any other control
//! character (NUL, ESC, ...) fails the render, as does an RFC 2047 encoded word in a subject,
//! which mail readers would show decoded instead of as written. The `.eml` export
//! ([`export`]) writes messages with `mail-builder` and checks the stored text the same way.

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use minijinja::AutoEscape;
use provflow_ir::{self as ir, Bundle, Encoding, Mailbox, MessageType, ResolverTarget};
use provflow_lex::mailbox::{has_encoded_word, name_fits, parse_address, parse_mailbox, shorten_name};
use rusqlite::OptionalExtension;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::clock::Instant;
use crate::engine::TargetProvider;
use crate::html_text;
use crate::store::{Account, Database, OutboxMessage, OutboxRender, StateStore, StoreError, TaskInstance, UserRecord};
use crate::target::{self, Target};
use crate::value::{self, Value};

/// Why one message could not be rendered. Recorded on its outbox row, never raised to the
/// task that fired it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("template index {0} is missing from the bundle")]
    NoTemplate(usize),
    #[error("template `{template}` has no locales")]
    NoLocale { template: String },
    #[error("template `{template}` ({locale}), {part}: {message}")]
    Template { template: String, locale: String, part: &'static str, message: String },
    #[error("template `{template}` ({locale}) is ASCII but its {part} renders `{character}` (U+{code:04X}) at character {position}; use a UTF-8 locale or keep free text out of it")]
    NotAscii { template: String, locale: String, part: &'static str, character: char, code: u32, position: usize },
    #[error("template `{template}` ({locale}): its {part} renders the control character U+{code:04X} at character {position}; a value it inserts holds it")]
    Control { template: String, locale: String, part: &'static str, code: u32, position: usize },
    #[error("template `{template}` ({locale}): its {part} renders an RFC 2047 encoded word (`=?...?=`), which mail readers would show decoded; a value it inserts holds it")]
    EncodedWord { template: String, locale: String, part: &'static str },
    #[error("the resolver of event `{event}`: {message}")]
    Resolver { event: String, message: String },
    #[error("{0}")]
    Missing(String),
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub locale: String,
    pub message_type: MessageType,
    pub encoding: Encoding,
    pub subject: String,
    pub short: String,
    pub body: String,
}

/// What a message is about: the data its templates may use.
#[derive(Debug, Clone)]
pub struct MessageData<'a> {
    pub user: &'a UserRecord,
    /// The user's stable key (`usr_key`).
    pub usr_key: Option<i64>,
    pub account: Option<&'a Account>,
    pub task: Option<&'a TaskInstance>,
    /// The task status that fired the notification.
    pub task_status: Option<ir::TaskStatus>,
}

/// The value of a user attribute as the templates see it; `None` when unset.
fn user_value(user: &UserRecord, usr_key: Option<i64>, attribute: &str) -> Option<String> {
    match attribute {
        "usr_login" => Some(user.login.clone()),
        "usr_status" => Some(user.status.clone()),
        "usr_locked" => Some(user.locked.to_string()),
        "usr_key" => usr_key.map(|k| k.to_string()).or_else(|| user.attributes.get("usr_key").cloned()),
        other => user.attributes.get(other).cloned(),
    }
}

/// The user's attributes by template variable (label with spaces as `_`), secrets left out.
fn user_variables(bundle: &Bundle, data: &MessageData<'_>) -> BTreeMap<String, minijinja::Value> {
    let mut out = BTreeMap::new();
    for a in bundle.user_schema.attributes.iter().filter(|a| !a.ty.is_secret()) {
        if let Some(v) = user_value(data.user, data.usr_key, &a.name) {
            let typed = match value::typed(a.ty, &v) {
                Ok(Value::Int(i)) => minijinja::Value::from(i),
                Ok(Value::Bool(b)) => minijinja::Value::from(b),
                Ok(Value::Double(d)) => minijinja::Value::from(d),
                _ => minijinja::Value::from(v),
            };
            out.insert(a.variable.clone(), typed);
        }
    }
    out
}

fn to_jinja(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Text(s) => minijinja::Value::from(s.clone()),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Double(d) => minijinja::Value::from(*d),
        Value::Bool(b) => minijinja::Value::from(*b),
        // Unreachable by construction (resolver columns are never secrets); masked anyway.
        Value::Secret(_) => minijinja::Value::from(value::MASK),
    }
}

/// Runs the event's resolver and returns its `provides` columns (no row: none of them).
///
/// A resolver with `target: state` queries the state store's own tables, in the dialect of
/// the store it runs on (SQLite or PostgreSQL): its query is rendered for that dialect and
/// runs on the store's connection (on PostgreSQL in a `READ ONLY` transaction). A query meant
/// for both kinds of store keeps to SQL both accept, as the example's `count(*)` does.
fn resolve(
    bundle: &Bundle,
    event: &ir::NotificationEvent,
    data: &MessageData<'_>,
    state: &dyn StateStore,
    targets: &mut dyn TargetProvider,
) -> Result<BTreeMap<String, minijinja::Value>, RenderError> {
    let Some(r) = &event.resolver else { return Ok(BTreeMap::new()) };
    let fail = |message: String| RenderError::Resolver { event: event.name.clone(), message };
    let mut values = Vec::with_capacity(r.params.len());
    for p in &r.params {
        let text = match p.name.as_str() {
            "account_id" => data.account.map(|a| a.id.to_string()),
            "process" => data.account.map(|a| a.process.clone()),
            other => {
                // A secret attribute never feeds a resolver either: its value could come back
                // as a column.
                if bundle.user_schema.attributes.iter().any(|a| a.name == other && a.ty.is_secret()) {
                    return Err(fail(format!("`{other}` is a secret and cannot be a resolver parameter")));
                }
                user_value(data.user, data.usr_key, other)
            }
        };
        let v = match text {
            None => Value::Null,
            Some(t) => value::typed(p.ty, &t).map_err(|e| fail(format!("parameter `{}`: {e}", p.name)))?,
        };
        values.push(v);
    }
    let query = ir::Query {
        name: format!("resolver of {}", event.name),
        source: r.source.clone(),
        segments: r.segments.clone(),
        params: r.params.clone(),
        call: None,
        response_from: None,
        errors: BTreeMap::new(),
        columns: r.provides.clone(),
        idempotent: true,
        location: event.location.clone(),
    };
    let row: Option<BTreeMap<String, Value>> = match r.target {
        ResolverTarget::State => {
            let db = state.database().map_err(|e| fail(e.to_string()))?;
            let rendered = target::render(&query, &values, db.dialect(), false).map_err(|e| fail(e.to_string()))?;
            state_row(db, &rendered).map_err(fail)?
        }
        ResolverTarget::Target(i) => {
            let t: &mut dyn Target = targets.open(bundle, i).map_err(|e| fail(e.to_string()))?;
            t.call(&query, &values).map_err(|e| fail(e.to_string()))?.rows.into_iter().next()
        }
    };
    let mut out = BTreeMap::new();
    if let Some(row) = row {
        for col in &r.provides {
            // Column names are matched case-insensitively: databases fold unquoted aliases.
            let found = row.iter().find(|(k, _)| k.eq_ignore_ascii_case(&col.name)).map(|(_, v)| v.clone());
            let v = match found {
                Some(Value::Null) | None => Value::Null,
                Some(v) => {
                    value::typed(col.ty, &v.display()).map_err(|e| fail(format!("column `{}`: {e}", col.name)))?
                }
            };
            out.insert(col.name.clone(), to_jinja(&v));
        }
    }
    Ok(out)
}

/// The first row of a resolver query on the state store's own database.
fn state_row(db: Database<'_>, rendered: &target::Rendered) -> Result<Option<BTreeMap<String, Value>>, String> {
    match db {
        Database::Sqlite(conn) => {
            let mut stmt = conn.prepare(&rendered.sql).map_err(|e| e.to_string())?;
            let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
            // Borrowed: a secret bind is not copied.
            let binds: Vec<rusqlite::types::ToSqlOutput<'_>> =
                rendered.binds.iter().map(target::sqlite::to_sql).collect();
            stmt.query_row(rusqlite::params_from_iter(binds.iter()), |row| {
                let mut m = BTreeMap::new();
                for (i, n) in names.iter().enumerate() {
                    let v = match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(x) => Value::Int(x),
                        rusqlite::types::ValueRef::Real(x) => Value::Double(x),
                        rusqlite::types::ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        rusqlite::types::ValueRef::Blob(_) => Value::Null,
                    };
                    m.insert(n.clone(), v);
                }
                Ok(m)
            })
            .optional()
            .map_err(|e| e.to_string())
        }
        Database::Postgres(mut client) => {
            crate::target::postgres::query_first_row(&mut client, &rendered.sql, &rendered.binds)
                .map_err(|e| e.to_string())
        }
    }
}

/// The whole template context of a message: entities, bare user attributes, resolver columns.
pub fn context(
    bundle: &Bundle,
    event: &ir::NotificationEvent,
    data: &MessageData<'_>,
    resolved: BTreeMap<String, minijinja::Value>,
) -> BTreeMap<String, minijinja::Value> {
    let user = user_variables(bundle, data);
    let mut ctx: BTreeMap<String, minijinja::Value> = user.clone();
    let process = data.account.and_then(|a| bundle.process(&a.process).map(|(_, p)| p));
    for e in event.static_data.iter().chain(&event.params) {
        let value = match e.entity.as_str() {
            "User" => minijinja::Value::from(user.clone()),
            "Resource" => {
                let mut m: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
                if let Some(p) = process {
                    m.insert("Object_Name", p.object.clone().into());
                    m.insert("Process_Name", p.name.clone().into());
                    if let Some(t) = bundle.targets.get(p.target) {
                        m.insert("Target_Name", t.name.clone().into());
                    }
                }
                if let Some(a) = data.account {
                    m.insert("Status", a.status.as_str().into());
                    m.insert("Account_Id", a.id.into());
                }
                minijinja::Value::from(m)
            }
            _ => {
                let mut m: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
                if let Some(t) = data.task {
                    m.insert("Task_Name", t.task_name.clone().into());
                    if let Some(r) = &t.response {
                        m.insert("Response", r.clone().into());
                    }
                }
                if let Some(s) = data.task_status {
                    m.insert("Task_Status", s.as_str().into());
                }
                minijinja::Value::from(m)
            }
        };
        ctx.insert(e.variable.clone(), value);
    }
    ctx.extend(resolved);
    ctx
}

/// The locale a recipient gets: their `usr_locale` if the template has it, else the
/// template's default, else its first.
pub fn pick_locale<'t>(template: &'t ir::NotificationTemplate, user: &UserRecord) -> Option<&'t ir::LocalizedMessage> {
    let wanted = user.attributes.get("usr_locale").map(String::as_str).unwrap_or("");
    template
        .locales
        .iter()
        .find(|l| !wanted.is_empty() && l.locale.eq_ignore_ascii_case(wanted))
        .or_else(|| template.locales.iter().find(|l| l.locale == template.default_locale))
        .or_else(|| template.locales.first())
}

/// Renders one template for a recipient. HTML bodies are auto-escaped; subjects and short
/// messages are headers and plain text, so never HTML-escaped.
pub fn render_template(
    template: &ir::NotificationTemplate,
    user: &UserRecord,
    ctx: &BTreeMap<String, minijinja::Value>,
) -> Result<Rendered, RenderError> {
    let loc = pick_locale(template, user).ok_or_else(|| RenderError::NoLocale { template: template.name.clone() })?;
    let render = |part: &'static str, src: &str, html: bool| -> Result<String, RenderError> {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(move |_| if html { AutoEscape::Html } else { AutoEscape::None });
        let out = env.render_str(src, ctx).map_err(|e| RenderError::Template {
            template: template.name.clone(),
            locale: loc.locale.clone(),
            part,
            message: e.to_string(),
        })?;
        let one_line = part != "long message";
        let out = clean_text(&out, one_line).map_err(|problem| match problem {
            TextProblem::Control { code, position } => RenderError::Control {
                template: template.name.clone(),
                locale: loc.locale.clone(),
                part,
                code,
                position,
            },
            TextProblem::EncodedWord => {
                RenderError::EncodedWord { template: template.name.clone(), locale: loc.locale.clone(), part }
            }
        })?;
        if loc.encoding == Encoding::Ascii {
            if let Some((position, character)) = out.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
                return Err(RenderError::NotAscii {
                    template: template.name.clone(),
                    locale: loc.locale.clone(),
                    part,
                    character,
                    code: u32::from(character),
                    position: position + 1,
                });
            }
        }
        Ok(out)
    };
    let html = loc.message_type == MessageType::Html;
    Ok(Rendered {
        locale: loc.locale.clone(),
        message_type: loc.message_type,
        encoding: loc.encoding,
        subject: render("subject", &loc.subject, false)?,
        short: render("short message", &loc.short, false)?,
        body: render("long message", &loc.long, html)?,
    })
}

/// Renders a message of `template_index` for `data` (running the event's resolver).
pub fn render_message(
    bundle: &Bundle,
    template_index: usize,
    data: &MessageData<'_>,
    state: &dyn StateStore,
    targets: &mut dyn TargetProvider,
) -> Result<Rendered, RenderError> {
    let template = bundle.templates.get(template_index).ok_or(RenderError::NoTemplate(template_index))?;
    let event = bundle
        .events
        .get(template.event)
        .ok_or_else(|| RenderError::Missing(format!("the event of template `{}` is missing", template.name)))?;
    let resolved = resolve(bundle, event, data, state, targets)?;
    let ctx = context(bundle, event, data, resolved);
    render_template(template, data.user, &ctx)
}

/// Why a text cannot go into a message as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    /// A control character other than a line break or a tab (1-based character position).
    Control { code: u32, position: usize },
    /// An RFC 2047 encoded word in one-line text.
    EncodedWord,
}

impl std::fmt::Display for TextProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextProblem::Control { code, position } => {
                write!(f, "the control character U+{code:04X} at character {position}")
            }
            TextProblem::EncodedWord => write!(f, "an RFC 2047 encoded word (`=?...?=`)"),
        }
    }
}

/// `text` as it may go into a message: CR LF and lone CRs become LF; for `one_line` text
/// (a subject, a short message) line breaks and tabs become spaces. Any other control
/// character is refused, and so is an encoded word in one-line text.
pub fn clean_text(text: &str, one_line: bool) -> Result<String, TextProblem> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                '\n'
            }
            c => c,
        };
        match c {
            '\n' | '\t' if one_line => out.push(' '),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let position = out.chars().count() + 1;
                return Err(TextProblem::Control { code: u32::from(c), position });
            }
            c => out.push(c),
        }
    }
    if one_line && has_encoded_word(&out) {
        return Err(TextProblem::EncodedWord);
    }
    Ok(out)
}

/// Where a user's mail goes: `usr_email` (when it is an address), else `<login>@localhost`;
/// named by `usr_display_name`, else first and last name. Control characters in the name
/// become spaces; a name too long to stay one encoded word is shortened with `…`; a name with
/// an encoded word in it is left out.
pub fn recipient_of(user: &UserRecord) -> Mailbox {
    let attr = |name: &str| user.attributes.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let name = attr("usr_display_name").map(str::to_owned).or_else(|| {
        let parts: Vec<&str> = [attr("usr_first_name"), attr("usr_last_name")].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    let name = name
        .map(|n| {
            let spaced: String = n.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            shorten_name(&spaced.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|n| !n.is_empty() && !has_encoded_word(n));
    Mailbox { name, address: address_of(user) }
}

/// A mailbox as one text, `"Name" <address>` or `address`: what the outbox's `to_address`
/// holds. [`parse_mailbox`] reads it back.
pub fn format_mailbox(m: &Mailbox) -> String {
    match &m.name {
        None => m.address.clone(),
        Some(name) => {
            let quoted: String =
                name.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect();
            format!("\"{quoted}\" <{}>", m.address)
        }
    }
}

/// The address a user's mail goes to: `usr_email`, else `<login>@localhost`.
pub fn address_of(user: &UserRecord) -> String {
    if let Some(e) = user.attributes.get("usr_email").and_then(|e| parse_address(e).ok()) {
        return e;
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom =
        !user.login.is_empty() && user.login.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    if dot_atom {
        format!("{}@localhost", user.login)
    } else {
        // A quoted local part keeps any printable login a valid address.
        let quoted: String = user
            .login
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] })
            .collect();
        format!("\"{quoted}\"@localhost")
    }
}

/// Renders every queued outbox row. Returns how many were rendered or marked failed.
/// Only a store error stops it; a message that cannot be rendered is marked `failed`.
pub fn render_pending(
    store: &mut dyn StateStore,
    targets: &mut dyn TargetProvider,
    now: Instant,
) -> Result<usize, StoreError> {
    let queued = store.queued_outbox()?;
    let mut bundles: BTreeMap<String, Option<Bundle>> = BTreeMap::new();
    for row in &queued {
        let hash = &row.bundle_hash;
        if !bundles.contains_key(hash) {
            bundles.insert(hash.clone(), store.bundle(hash)?);
        }
        let bundle = bundles.get(hash).and_then(Option::as_ref);
        let recipient = &row.recipient;
        let user = store.user(recipient)?;
        let account = store.account(row.account)?;
        let task = row.task.map(|t| store.task(t)).transpose()?.flatten();
        let usr_key = store.usr_key(recipient)?;
        let result = match (bundle, &user) {
            (None, _) => {
                Err(RenderError::Missing(format!("the definitions (bundle {hash}) are missing from the state store")))
            }
            (_, None) => Err(RenderError::Missing(format!("the recipient `{recipient}` no longer exists"))),
            (Some(bundle), Some(user)) => {
                let data = MessageData {
                    user,
                    usr_key,
                    account: account.as_ref(),
                    task: task.as_ref(),
                    task_status: Some(row.task_status),
                };
                render_message(bundle, row.template_index, &data, &*store, targets)
            }
        };
        let to_address = user.as_ref().map(|u| format_mailbox(&recipient_of(u)));
        let render = match result {
            Ok(m) => OutboxRender::Rendered {
                locale: m.locale,
                message_type: format!(
                    "{}{}",
                    type_name(m.message_type),
                    if m.encoding == Encoding::Ascii { "/ascii" } else { "" }
                ),
                subject: m.subject,
                short: m.short,
                body: m.body,
                to_address,
            },
            Err(e) => OutboxRender::Failed { error: e.to_string(), to_address },
        };
        store.record_render(row.id, &render, now)?;
    }
    Ok(queued.len())
}

fn type_name(t: MessageType) -> &'static str {
    match t {
        MessageType::Html => "html",
        MessageType::Text => "text",
    }
}

/// One outbox row as listed and exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: i64,
    pub template: String,
    /// The recipient's login.
    pub to: String,
    pub to_address: Option<String>,
    pub locale: Option<String>,
    /// `html` or `text`; `None` until rendered.
    pub message_type: Option<String>,
    pub ascii: bool,
    pub subject: Option<String>,
    pub short: Option<String>,
    pub body: Option<String>,
    /// `queued`, `rendered` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub task_status: String,
    pub created_at: Instant,
    /// The bundle the message was queued with, and its template's index there.
    pub bundle_hash: String,
    pub template_index: i64,
}

impl From<OutboxMessage> for Message {
    fn from(m: OutboxMessage) -> Self {
        let (message_type, ascii) = match m.message_type {
            Some(k) => match k.split_once('/') {
                Some((t, _)) => (Some(t.to_string()), true),
                None => (Some(k), false),
            },
            None => (None, false),
        };
        Message {
            id: m.id,
            template: m.template,
            to: m.recipient,
            to_address: m.to_address,
            locale: m.locale,
            message_type,
            ascii,
            subject: m.subject,
            short: m.short,
            body: m.body,
            status: m.status,
            error: m.error,
            task_status: m.task_status,
            created_at: m.created_at,
            bundle_hash: m.bundle_hash,
            template_index: m.template_index,
        }
    }
}

/// Every outbox row, oldest first.
pub fn messages(store: &dyn StateStore) -> Result<Vec<Message>, StoreError> {
    Ok(store.outbox_messages()?.into_iter().map(Message::from).collect())
}

// ----- .eml export ----------------------------------------------------------------------------

/// The sender when neither the template (`from:`) nor the export (`--from`,
/// `PROVFLOW_MAIL_FROM`) names one.
pub const DEFAULT_FROM: &str = "provflow <provflow@localhost>";

/// [`DEFAULT_FROM`] as a mailbox.
pub fn default_sender() -> Mailbox {
    Mailbox { name: Some("provflow".into()), address: "provflow@localhost".into() }
}

/// Everything an exported message says; [`write_message`] turns it into RFC 5322 bytes.
#[derive(Debug, Clone)]
pub struct Mail<'a> {
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub subject: &'a str,
    /// Seconds since the Unix epoch (UTC), from the injectable clock.
    pub date: Instant,
    /// The Message-ID without its angle brackets.
    pub message_id: &'a str,
    pub message_type: MessageType,
    pub body: &'a str,
    /// Written as `X-Provflow-Template`.
    pub template: &'a str,
}

/// Why a stored message cannot be exported: it was stored before the render checks existed,
/// or the store was edited. The export skips it and says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmlError {
    #[error("its {part} cannot be written: it holds {problem}")]
    Text { part: &'static str, problem: TextProblem },
    #[error("the display name `{0}...` is too long to stay one piece in a mail header")]
    NameTooLong(String),
    #[error("its recipient `{0}` is not a mail address")]
    Recipient(String),
    #[error("the message could not be written: {0}")]
    Write(String),
}

fn mailbox_address(m: &Mailbox) -> Address<'_> {
    Address::new_address(m.name.as_deref(), m.address.as_str())
}

/// `text/<subtype>` with the narrowest charset that holds `text`.
fn text_part<'a>(subtype: &str, text: String) -> MimePart<'a> {
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    MimePart::new(ContentType::new(format!("text/{subtype}")).attribute("charset", charset), text)
}

/// A multipart boundary derived from the Message-ID (so that the same message is written to
/// the same bytes) that occurs in none of `texts`; a transfer encoding never creates one
/// either (quoted-printable keeps `-` and letters as they are, base64 has no `-`).
fn boundary(message_id: &str, texts: &[&str]) -> String {
    let base: String =
        message_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).take(48).collect();
    (0u32..)
        .map(|n| format!("=_pf-{base}-{n}"))
        .find(|b| !texts.iter().any(|t| t.contains(b.as_str())))
        .unwrap_or_else(|| format!("=_pf-{base}"))
}

/// A message as RFC 5322 / MIME bytes (CRLF line endings), written by `mail-builder`: encoded
/// words of at most 75 characters, header lines folded, 7bit bodies only when every line is
/// short and plain ASCII (quoted-printable or base64 otherwise). An HTML message is
/// `multipart/alternative`: a plain-text rendering first, then the HTML.
pub fn write_message(mail: &Mail<'_>) -> Result<Vec<u8>, EmlError> {
    let text = |part: &'static str, value: &str, one_line: bool| {
        clean_text(value, one_line).map_err(|problem| EmlError::Text { part, problem })
    };
    let subject = text("subject", mail.subject, true)?;
    let template = text("template name", mail.template, true)?;
    let body = text("body", mail.body, false)?;
    for m in std::iter::once(mail.from).chain(mail.to) {
        // Names and addresses come from the parser or from `recipient_of`; checked again so
        // that no caller can put a line break into a header.
        let name = m.name.as_deref().unwrap_or("");
        let problem = match name.chars().enumerate().find(|(_, c)| c.is_control()) {
            Some((i, c)) => Some(TextProblem::Control { code: u32::from(c), position: i + 1 }),
            None => has_encoded_word(name).then_some(TextProblem::EncodedWord),
        };
        if let Some(problem) = problem {
            return Err(EmlError::Text { part: "display name", problem });
        }
        if !name_fits(name) {
            return Err(EmlError::NameTooLong(name.chars().take(20).collect()));
        }
        parse_address(&m.address).map_err(|_| EmlError::Recipient(m.address.clone()))?;
    }
    let to: Vec<Address<'_>> = mail.to.iter().map(mailbox_address).collect();
    let builder = MessageBuilder::new()
        .from(mailbox_address(mail.from))
        .to(Address::new_list(to))
        .subject(Text::new(subject))
        .date(Date::new(mail.date))
        .message_id(mail.message_id)
        .header("X-Provflow-Template", Text::new(template));
    let builder = match mail.message_type {
        MessageType::Text => builder.body(text_part("plain", body)),
        MessageType::Html => {
            let plain = html_text::to_text(&body);
            let plain = text("plain-text rendering", &plain, false)?;
            let boundary = boundary(mail.message_id, &[&plain, &body]);
            let alternative = ContentType::new("multipart/alternative").attribute("boundary", boundary);
            builder.body(MimePart::new(alternative, vec![text_part("plain", plain), text_part("html", body)]))
        }
    };
    builder.write_to_vec().map_err(|e| EmlError::Write(e.to_string()))
}

/// The Message-ID of an outbox row: the row, its time and its bundle, at the sender's domain.
/// The same row always gets the same ID, so a receiving system that sees an export twice can
/// tell.
pub fn message_id(m: &Message, from: &Mailbox) -> String {
    let domain = from.address.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let bundle: String = m.bundle_hash.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    format!("outbox-{}.{}.{bundle}@{domain}", m.id, m.created_at)
}

/// An outbox row as a message from `from`.
pub fn to_eml(m: &Message, from: &Mailbox) -> Result<Vec<u8>, EmlError> {
    let to = match &m.to_address {
        Some(stored) => parse_mailbox(stored).map_err(|_| EmlError::Recipient(m.to.clone()))?,
        None => Mailbox {
            name: None,
            address: parse_address(&format!("{}@localhost", m.to)).map_err(|_| EmlError::Recipient(m.to.clone()))?,
        },
    };
    let message_type = if m.message_type.as_deref() == Some("html") { MessageType::Html } else { MessageType::Text };
    let id = message_id(m, from);
    write_message(&Mail {
        from,
        to: std::slice::from_ref(&to),
        subject: m.subject.as_deref().unwrap_or(""),
        date: m.created_at,
        message_id: &id,
        message_type,
        body: m.body.as_deref().unwrap_or(""),
        template: &m.template,
    })
}

/// The sender of a message: its template's `from:`, else `default`.
fn sender<'a>(
    store: &dyn StateStore,
    bundles: &'a mut BTreeMap<String, Option<Bundle>>,
    m: &Message,
    default: &'a Mailbox,
) -> Result<&'a Mailbox, StoreError> {
    if !bundles.contains_key(&m.bundle_hash) {
        let bundle = store.bundle(&m.bundle_hash)?;
        bundles.insert(m.bundle_hash.clone(), bundle);
    }
    let from = bundles
        .get(&m.bundle_hash)
        .and_then(Option::as_ref)
        .and_then(|b| usize::try_from(m.template_index).ok().and_then(|i| b.templates.get(i)))
        .and_then(|t| t.from.as_ref());
    Ok(from.unwrap_or(default))
}

/// Writes one `.eml` per rendered message into `dir`, each from its template's sender or else
/// from `default_from`. Failed and queued messages, and messages that cannot be written, are
/// skipped and returned (with the reason in `error`) so that the caller can report them.
pub fn export(
    store: &dyn StateStore,
    dir: &Path,
    default_from: &Mailbox,
) -> Result<(Vec<PathBuf>, Vec<Message>), ExportError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ExportError::Io { path: dir.display().to_string(), error: e.to_string() })?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    let mut bundles = BTreeMap::new();
    for mut m in messages(store)? {
        if m.status != "rendered" {
            skipped.push(m);
            continue;
        }
        let from = sender(store, &mut bundles, &m, default_from)?;
        let bytes = match to_eml(&m, from) {
            Ok(b) => b,
            Err(e) => {
                m.error = Some(e.to_string());
                skipped.push(m);
                continue;
            }
        };
        let path = dir.join(format!("outbox-{:06}.eml", m.id));
        std::fs::write(&path, bytes)
            .map_err(|e| ExportError::Io { path: path.display().to_string(), error: e.to_string() })?;
        written.push(path);
    }
    Ok((written, skipped))
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write `{path}`: {error}")]
    Io { path: String, error: String },
}

#[cfg(test)]
pub(crate) mod tests;
