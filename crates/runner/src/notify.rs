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

use minijinja::AutoEscape;
use provflow_ir::{self as ir, Bundle, Encoding, MessageType, ResolverTarget};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::clock::{self, Instant};
use crate::engine::TargetProvider;
use crate::store::{Account, SqliteStore, StateStore, StoreError, TaskInstance, UserRecord};
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
fn resolve(
    bundle: &Bundle,
    event: &ir::NotificationEvent,
    data: &MessageData<'_>,
    state: &rusqlite::Connection,
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
            let rendered =
                target::render(&query, &values, ir::Dialect::Sqlite, false).map_err(|e| fail(e.to_string()))?;
            let mut stmt = state.prepare(&rendered.sql).map_err(|e| fail(e.to_string()))?;
            let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
            let binds: Vec<rusqlite::types::Value> = rendered.binds.iter().map(sql_value).collect();
            stmt.query_row(rusqlite::params_from_iter(binds), |row| {
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
            .map_err(|e| fail(e.to_string()))?
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

fn sql_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Double(d) => rusqlite::types::Value::Real(*d),
        Value::Bool(b) => rusqlite::types::Value::Integer(i64::from(*b)),
        Value::Secret(s) => rusqlite::types::Value::Text(s.expose().to_string()),
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
    state: &rusqlite::Connection,
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

/// The address a user's mail goes to: `usr_email`, else `<login>@localhost`.
pub fn address_of(user: &UserRecord) -> String {
    if let Some(e) = user.attributes.get("usr_email").map(|e| e.trim()).filter(|e| is_address(e)) {
        return e.to_string();
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

fn is_address(s: &str) -> bool {
    s.is_ascii()
        && !s.chars().any(|c| c.is_ascii_control() || c.is_whitespace() || "<>,;\"".contains(c))
        && s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

/// Renders every queued outbox row. Returns how many were rendered or marked failed.
/// Only a store error stops it; a message that cannot be rendered is marked `failed`.
pub fn render_pending(
    store: &SqliteStore,
    targets: &mut dyn TargetProvider,
    now: Instant,
) -> Result<usize, StoreError> {
    let conn = store.connection();
    type QueuedRow = (i64, i64, Option<i64>, i64, String, String, String);
    let queued: Vec<QueuedRow> = {
        let mut stmt = conn.prepare(
            "SELECT id, account_id, task_id, template_index, task_status, recipient, bundle_hash FROM outbox
             WHERE status = 'queued' ORDER BY id",
        )?;
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut bundles: BTreeMap<String, Option<Bundle>> = BTreeMap::new();
    for (id, account_id, task_id, template_index, task_status, recipient, hash) in &queued {
        if !bundles.contains_key(hash) {
            bundles.insert(hash.clone(), store.bundle(hash)?);
        }
        let bundle = bundles.get(hash).and_then(Option::as_ref);
        let user = store.user(recipient)?;
        let account = store.account(*account_id)?;
        let task = task_id.map(|t| store.task(t)).transpose()?.flatten();
        let usr_key: Option<i64> = conn
            .query_row("SELECT usr_key FROM users WHERE login = ?1", [recipient], |r| r.get(0))
            .optional()?
            .flatten();
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
                    task_status: ir::TaskStatus::parse(task_status),
                };
                usize::try_from(*template_index)
                    .map_err(|_| RenderError::NoTemplate(0))
                    .and_then(|ti| render_message(bundle, ti, &data, conn, targets))
            }
        };
        let to = user.as_ref().map(address_of);
        match result {
            Ok(m) => conn.execute(
                "UPDATE outbox SET status = 'rendered', locale = ?2, message_type = ?3, subject = ?4, short = ?5, body = ?6,
                   to_address = ?7, error = NULL, rendered_at = ?8 WHERE id = ?1",
                params![
                    id,
                    m.locale,
                    format!("{}{}", type_name(m.message_type), if m.encoding == Encoding::Ascii { "/ascii" } else { "" }),
                    m.subject,
                    m.short,
                    m.body,
                    to,
                    now
                ],
            )?,
            Err(e) => conn.execute(
                "UPDATE outbox SET status = 'failed', error = ?2, to_address = ?3, rendered_at = ?4 WHERE id = ?1",
                params![id, e.to_string(), to, now],
            )?,
        };
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
}

pub fn messages(store: &SqliteStore) -> Result<Vec<Message>, StoreError> {
    let conn = store.connection();
    let mut stmt = conn.prepare(
        "SELECT id, template, recipient, to_address, locale, message_type, subject, short, body, status, error, task_status, created_at
         FROM outbox ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let kind: Option<String> = r.get(5)?;
        let (message_type, ascii) = match kind {
            Some(k) => match k.split_once('/') {
                Some((t, _)) => (Some(t.to_string()), true),
                None => (Some(k), false),
            },
            None => (None, false),
        };
        Ok(Message {
            id: r.get(0)?,
            template: r.get(1)?,
            to: r.get(2)?,
            to_address: r.get(3)?,
            locale: r.get(4)?,
            message_type,
            ascii,
            subject: r.get(6)?,
            short: r.get(7)?,
            body: r.get(8)?,
            status: r.get(9)?,
            error: r.get(10)?,
            task_status: r.get(11)?,
            created_at: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ----- .eml export ----------------------------------------------------------------------------

/// The sender of every message.
pub const FROM: &str = "provflow <provflow@localhost>";

/// RFC 5322 date-time of an instant (UTC).
pub fn rfc5322_date(at: Instant) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    let date = clock::date(at);
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next().unwrap_or("1970"), parts.next().unwrap_or("01"), parts.next().unwrap_or("01"));
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let weekday = WEEKDAYS.get(days.rem_euclid(7) as usize).copied().unwrap_or("Thu");
    let month = m.parse::<usize>().ok().and_then(|m| MONTHS.get(m.wrapping_sub(1))).copied().unwrap_or("Jan");
    let day = d.trim_start_matches('0');
    format!("{weekday}, {day} {month} {y} {:02}:{:02}:{:02} +0000", secs / 3600, secs % 3600 / 60, secs % 60)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header value: as is when short printable ASCII, else RFC 2047 encoded words (UTF-8,
/// base64) folded onto continuation lines. Line breaks in the value never reach the header.
pub fn encode_header(value: &str) -> String {
    let flat: String = value.chars().map(|c| if c == '\r' || c == '\n' || c == '\t' { ' ' } else { c }).collect();
    let plain = flat.chars().all(|c| (' '..='~').contains(&c)) && flat.len() <= 900 && !flat.contains("=?");
    if plain {
        return flat;
    }
    // At most 45 bytes per word: 60 base64 characters + 12 of framing stays under 76.
    let mut words = Vec::new();
    let mut current = String::new();
    for c in flat.chars() {
        if current.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", base64(current.as_bytes())));
            current.clear();
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", base64(current.as_bytes())));
    }
    words.join("\r\n ")
}

/// Quoted-printable (RFC 2045) with CRLF line breaks and soft breaks before 76 characters.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if literal { char::from(b).to_string() } else { format!("={b:02X}") };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        if n + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    out
}

/// A message as an RFC 5322 / MIME document with CRLF line endings.
pub fn to_eml(m: &Message, host_id: &str) -> String {
    let body = m.body.clone().unwrap_or_default();
    let to = m.to_address.clone().unwrap_or_else(|| format!("{}@localhost", m.to));
    let subtype = if m.message_type.as_deref() == Some("html") { "html" } else { "plain" };
    let ascii_lines = body.is_ascii() && body.lines().all(|l| l.len() <= 998);
    let (charset, encoding, encoded) = if ascii_lines {
        let crlf: Vec<&str> = body.lines().collect();
        let mut text = crlf.join("\r\n");
        if body.ends_with('\n') {
            text.push_str("\r\n");
        }
        (if m.ascii || body.is_ascii() { "us-ascii" } else { "utf-8" }, "7bit", text)
    } else {
        ("utf-8", "quoted-printable", quoted_printable(&body))
    };
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    header("From", FROM);
    header("To", &format!("<{to}>"));
    header("Subject", &encode_header(m.subject.as_deref().unwrap_or("")));
    header("Date", &rfc5322_date(m.created_at));
    header("Message-ID", &format!("<outbox-{}.{}@{host_id}>", m.id, m.created_at));
    header("MIME-Version", "1.0");
    header("Content-Type", &format!("text/{subtype}; charset={charset}"));
    header("Content-Transfer-Encoding", encoding);
    header("X-Provflow-Template", &encode_header(&m.template));
    out.push_str("\r\n");
    out.push_str(&encoded);
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// Writes one `.eml` per rendered message into `dir`; failed and queued messages are skipped
/// and returned so that the caller can report them.
pub fn export(store: &SqliteStore, dir: &Path) -> Result<(Vec<PathBuf>, Vec<Message>), ExportError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ExportError::Io { path: dir.display().to_string(), error: e.to_string() })?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for m in messages(store)? {
        if m.status != "rendered" {
            skipped.push(m);
            continue;
        }
        let path = dir.join(format!("outbox-{:06}.eml", m.id));
        std::fs::write(&path, to_eml(&m, "provflow.localhost"))
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
#[path = "notify_tests.rs"]
pub(crate) mod tests;
