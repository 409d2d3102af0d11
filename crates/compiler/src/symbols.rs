//! The names of a definition file and where each is defined or used, for the language server:
//! tasks, queries, targets, query sets, processes, notification events and templates, and the
//! users of scenarios.
//!
//! It reads the YAML itself ([`yaml::parse_full`]) rather than the typed documents, so a file
//! that does not pass the schema yet (the state of every file being typed) still has its
//! names. Positions are byte offsets into the file's text.

use serde_json::Value;

use crate::yaml;

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymbolKind {
    Target,
    QuerySet,
    /// A query of a query set (scope: the set).
    Query,
    Process,
    /// A task of a process (scope: the process).
    Task,
    Event,
    Template,
    /// A user a scenario creates (scope: the scenario).
    User,
}

impl SymbolKind {
    pub fn describe(self) -> &'static str {
        match self {
            SymbolKind::Target => "target",
            SymbolKind::QuerySet => "query set",
            SymbolKind::Query => "query",
            SymbolKind::Process => "process",
            SymbolKind::Task => "task",
            SymbolKind::Event => "notification event",
            SymbolKind::Template => "notification template",
            SymbolKind::User => "scenario user",
        }
    }
}

/// Which definition a name is looked up among.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Names unique in the bundle (targets, query sets, processes, events, templates).
    Global,
    /// Tasks of this process; users of this scenario; queries of this query set.
    In(String),
    /// Queries of the query set of this target (an adapter's `query`, through the process's
    /// `target`).
    SetOfTarget(String),
}

/// One place a name stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub kind: SymbolKind,
    pub scope: Scope,
    pub name: String,
    /// Byte range of the name itself (inside quotes, when quoted).
    pub start: usize,
    pub end: usize,
    pub definition: bool,
    /// For definitions: a short Markdown description (a query's SQL and parameters, a task's
    /// responses, status map and dependencies).
    pub detail: Option<String>,
}

/// A place where a value of a known shape is expected, for completion: the JSON pointer's
/// segments of the node, and what the value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: usize,
    pub end: usize,
    pub expects: Expects,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expects {
    /// A name of this kind and scope.
    Name(SymbolKind, Scope),
    /// An adapter source (`form.x`, `user.x`, `target.x`, `tasks.T.outputs.x`, `literal:`) in
    /// the process named.
    Source { process: String },
    /// A `map` key: the placeholders of the adapter's query (through the process's target).
    Placeholder { target: String, query: String },
    /// The text of a template's message: `{{ variable }}`s and `$Token`s of the event named.
    TemplateText { event: String },
}

/// What a process's adapters can read besides its form: its target (for `target.<property>`),
/// its tasks' queries (for `tasks.<task>.outputs.<name>`) and its child tables' fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSources {
    pub process: String,
    pub target: String,
    pub task_queries: Vec<(String, String)>,
    pub child_fields: Vec<String>,
}

/// What a notification event gives its templates: entity variables (name, entity kind) and
/// the resolver's columns (name, type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventVariables {
    pub event: String,
    pub entities: Vec<(String, String)>,
    pub provides: Vec<(String, String)>,
}

/// The attributes of a template entity kind (`User` has the user attributes' variables).
pub fn entity_attributes(kind: &str) -> Vec<&'static str> {
    match kind {
        "Resource" => crate::check::notify::RESOURCE_ATTRIBUTES.to_vec(),
        "Task" => crate::check::notify::TASK_ATTRIBUTES.to_vec(),
        _ => Vec::new(),
    }
}

/// The template variables of the built-in user attributes (`First_Name`, …).
pub fn builtin_attribute_variables() -> Vec<String> {
    crate::check::users::builtin_attributes().into_iter().map(|a| a.variable).collect()
}

/// Everything [`index`] found in one file.
#[derive(Debug, Clone, Default)]
pub struct FileSymbols {
    pub occurrences: Vec<Occurrence>,
    pub slots: Vec<Slot>,
    /// Target name → its query set, for [`Scope::SetOfTarget`].
    pub target_sets: Vec<(String, String)>,
    /// Process name → its form fields (name, type, label), for adapter sources.
    pub forms: Vec<(String, Vec<(String, String)>)>,
    /// Process name → its target, its tasks' adapter queries (task, query) and its child
    /// tables' fields.
    pub processes: Vec<ProcessSources>,
    /// Target name → its property names.
    pub target_properties: Vec<(String, Vec<String>)>,
    /// User attributes (name, description), from a UserSchema.
    pub attributes: Vec<(String, String)>,
    /// The template variables of those attributes (their labels with `_` for spaces).
    pub attribute_variables: Vec<String>,
    /// What each notification event gives its templates.
    pub events: Vec<EventVariables>,
    pub query_params: Vec<QueryParams>,
}

/// The parameters of one query: (query set, query, [(name, type)]).
pub type QueryParams = (String, String, Vec<(String, String)>);

/// One node of a document, with its pointer's segments.
struct Node<'v> {
    path: Vec<String>,
    value: &'v Value,
}

fn walk<'v>(value: &'v Value, path: &mut Vec<String>, out: &mut Vec<Node<'v>>) {
    out.push(Node { path: path.clone(), value });
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                walk(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn matches<S: AsRef<str>>(path: &[S], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(p, q)| *q == "*" || p.as_ref() == *q)
}

fn pointer<S: AsRef<str>>(path: &[S]) -> String {
    path.iter().map(|s| format!("/{}", s.as_ref().replace('~', "~0").replace('/', "~1"))).collect()
}

/// The byte range of the text a span covers, without surrounding quotes.
fn unquoted(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = text.get(start..end).unwrap_or("");
    let quoted =
        s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
    if quoted {
        (start + 1, end - 1)
    } else {
        (start, end)
    }
}

/// The byte range of the node at `path` (its key's, with `key`), without quotes.
fn span_of(text: &str, doc: &yaml::Document, path: &[&str], key: bool) -> Option<(usize, usize)> {
    let node = doc.spans.get(&pointer(path))?;
    let span = if key { node.key? } else { node.value };
    Some(unquoted(text, span.start, span.end))
}

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// The built-in user attributes (name, Markdown type and label), which every bundle has
/// beside its UserSchema's.
pub fn builtin_attributes() -> Vec<(String, String)> {
    crate::check::users::builtin_attributes()
        .into_iter()
        .map(|a| (a.name, format!("`{}` — {} (built in)", a.ty.as_str(), a.label)))
        .collect()
}

/// The names of every document of `text`.
pub fn index(text: &str) -> FileSymbols {
    let (documents, _) = yaml::parse_full(text);
    let mut out = FileSymbols::default();
    for doc in &documents {
        index_document(text, doc, &mut out);
    }
    out
}

fn index_document(text: &str, doc: &yaml::Document, out: &mut FileSymbols) {
    let kind = doc.value.get("kind").and_then(str_of).unwrap_or("");
    let doc_name = doc.value.get("name").and_then(str_of).unwrap_or("").to_string();
    let mut nodes = Vec::new();
    walk(&doc.value, &mut Vec::new(), &mut nodes);
    let value_range = |path: &[&str]| span_of(text, doc, path, false);
    let key_range = |path: &[&str]| span_of(text, doc, path, true);
    let mut push = |kind: SymbolKind,
                    scope: Scope,
                    name: &str,
                    range: Option<(usize, usize)>,
                    definition: bool,
                    detail: Option<String>| {
        if let Some((start, end)) = range {
            if !name.is_empty() {
                out.occurrences.push(Occurrence {
                    kind,
                    scope,
                    name: name.to_string(),
                    start,
                    end,
                    definition,
                    detail,
                });
            }
        }
    };
    let mut slots = Vec::new();
    let target = doc.value.get("target").and_then(str_of).unwrap_or("").to_string();
    match kind {
        "Target" => {
            push(SymbolKind::Target, Scope::Global, &doc_name, value_range(&["name"]), true, None);
            let properties = doc.value.get("properties").and_then(Value::as_object);
            out.target_properties
                .push((doc_name.clone(), properties.map(|m| m.keys().cloned().collect()).unwrap_or_default()));
            if let Some(set) = doc.value.get("queries").and_then(str_of) {
                push(SymbolKind::QuerySet, Scope::Global, set, value_range(&["queries"]), false, None);
                out.target_sets.push((doc_name.clone(), set.to_string()));
            }
            if let Some((start, end)) = value_range(&["queries"]) {
                slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::QuerySet, Scope::Global) });
            }
        }
        "ConnectorQueries" => {
            push(SymbolKind::QuerySet, Scope::Global, &doc_name, value_range(&["name"]), true, None);
            if let Some(Value::Object(queries)) = doc.value.get("queries") {
                for (name, def) in queries {
                    let detail = query_detail(name, def);
                    push(
                        SymbolKind::Query,
                        Scope::In(doc_name.clone()),
                        name,
                        key_range(&["queries", name]),
                        true,
                        Some(detail),
                    );
                    out.query_params.push((doc_name.clone(), name.clone(), query_params(def)));
                }
            }
        }
        "Process" => {
            push(SymbolKind::Process, Scope::Global, &doc_name, value_range(&["name"]), true, None);
            push(SymbolKind::Target, Scope::Global, &target, value_range(&["target"]), false, None);
            if let Some((start, end)) = value_range(&["target"]) {
                slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::Target, Scope::Global) });
            }
            let fields: Vec<(String, String)> = doc
                .value
                .pointer("/form/fields")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), field_label(v))).collect())
                .unwrap_or_default();
            out.forms.push((doc_name.clone(), fields));
            let task_queries = doc
                .value
                .get("tasks")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(t, d)| {
                            d.pointer("/adapter/query").and_then(str_of).map(|q| (t.clone(), q.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let child_fields = doc
                .value
                .pointer("/form/child_tables")
                .and_then(Value::as_object)
                .map(|tables| {
                    tables
                        .values()
                        .filter_map(|t| t.get("fields").and_then(Value::as_object))
                        .flat_map(|f| f.keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            out.processes.push(ProcessSources {
                process: doc_name.clone(),
                target: target.clone(),
                task_queries,
                child_fields,
            });
            let tasks = Scope::In(doc_name.clone());
            if let Some(Value::Object(defs)) = doc.value.get("tasks") {
                for (name, def) in defs {
                    push(
                        SymbolKind::Task,
                        tasks.clone(),
                        name,
                        key_range(&["tasks", name]),
                        true,
                        Some(task_detail(name, def)),
                    );
                }
            }
            for node in &nodes {
                let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
                let p = path.as_slice();
                let task_ref = matches(p, &["tasks", "*", "depends_on", "*"])
                    || matches(p, &["tasks", "*", "undo", "*"])
                    || matches(p, &["tasks", "*", "recovery", "*"])
                    || matches(p, &["tasks", "*", "responses", "*", "generate", "*"])
                    || matches(p, &["triggers", "*"])
                    || matches(p, &["form", "child_tables", "*", "on_insert"])
                    || matches(p, &["form", "child_tables", "*", "on_delete"]);
                let range = value_range(p);
                if task_ref {
                    if let Some((start, end)) = range {
                        slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::Task, tasks.clone()) });
                    }
                    if let Some(name) = str_of(node.value) {
                        push(SymbolKind::Task, tasks.clone(), name, range, false, None);
                    }
                } else if matches(p, &["tasks", "*", "notify", "*"]) {
                    if let Some((start, end)) = range {
                        slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::Template, Scope::Global) });
                    }
                    if let Some(name) = str_of(node.value) {
                        push(SymbolKind::Template, Scope::Global, name, range, false, None);
                    }
                } else if matches(p, &["tasks", "*", "adapter", "query"]) || matches(p, &["recon", "query"]) {
                    let scope = Scope::SetOfTarget(target.clone());
                    if let Some((start, end)) = range {
                        slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::Query, scope.clone()) });
                    }
                    if let Some(name) = str_of(node.value) {
                        push(SymbolKind::Query, scope, name, range, false, None);
                    }
                } else if matches(p, &["tasks", "*", "adapter", "map", "*"]) {
                    if let Some((start, end)) = range {
                        slots.push(Slot { start, end, expects: Expects::Source { process: doc_name.clone() } });
                    }
                    // `tasks.<task>.outputs.<name>`: the task's name is a reference.
                    let output = str_of(node.value)
                        .and_then(|v| v.strip_prefix("tasks."))
                        .and_then(|r| r.rsplit_once(".outputs."));
                    if let (Some((task, _)), Some((start, _))) = (output, range) {
                        let at = start + "tasks.".len();
                        push(SymbolKind::Task, tasks.clone(), task, Some((at, at + task.len())), false, None);
                    }
                    let query = p.get(1).and_then(|t| doc.value.pointer(&pointer(&["tasks", *t, "adapter", "query"])));
                    if let (Some((start, end)), Some(query)) = (key_range(p), query.and_then(str_of)) {
                        slots.push(Slot {
                            start,
                            end,
                            expects: Expects::Placeholder { target: target.clone(), query: query.into() },
                        });
                    }
                }
            }
        }
        "NotificationEvent" => {
            push(SymbolKind::Event, Scope::Global, &doc_name, value_range(&["name"]), true, None);
            // A resolver reads a target's database (or `state`, the state store).
            if let Some(t) = doc.value.pointer("/resolver/target").and_then(str_of).filter(|t| *t != "state") {
                push(SymbolKind::Target, Scope::Global, t, value_range(&["resolver", "target"]), false, None);
            }
            let mut vars = EventVariables { event: doc_name.clone(), ..EventVariables::default() };
            for section in ["static_data", "params"] {
                for e in doc.value.get(section).and_then(Value::as_array).into_iter().flatten() {
                    let name = e.get("name").and_then(str_of).unwrap_or("");
                    let kind = e.get("entity").and_then(str_of).unwrap_or("");
                    if !name.is_empty() {
                        vars.entities.push((crate::check::users::variable_of(name), kind.to_string()));
                    }
                }
            }
            if let Some(Value::Object(provides)) = doc.value.pointer("/resolver/provides") {
                vars.provides =
                    provides.iter().map(|(k, v)| (k.clone(), str_of(v).unwrap_or("").to_string())).collect();
            }
            out.events.push(vars);
        }
        "NotificationTemplate" => {
            push(SymbolKind::Template, Scope::Global, &doc_name, value_range(&["name"]), true, None);
            let event = doc.value.get("event").and_then(str_of).unwrap_or("").to_string();
            for node in &nodes {
                let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
                let text_field = matches(&path, &["locales", "*", "subject"])
                    || matches(&path, &["locales", "*", "short"])
                    || matches(&path, &["locales", "*", "long"]);
                if let (true, Some((start, end))) = (text_field, value_range(&path)) {
                    slots.push(Slot { start, end, expects: Expects::TemplateText { event: event.clone() } });
                }
            }
            if let Some(event) = doc.value.get("event").and_then(str_of) {
                push(SymbolKind::Event, Scope::Global, event, value_range(&["event"]), false, None);
            }
            if let Some((start, end)) = value_range(&["event"]) {
                slots.push(Slot { start, end, expects: Expects::Name(SymbolKind::Event, Scope::Global) });
            }
        }
        "UserSchema" => {
            if let Some(Value::Object(attributes)) = doc.value.get("attributes") {
                for (name, def) in attributes {
                    out.attributes.push((name.clone(), field_label(def)));
                    if let Some(label) = def.get("label").and_then(str_of) {
                        out.attribute_variables.push(crate::check::users::variable_of(label));
                    }
                }
            }
        }
        "Scenario" => index_scenario(text, doc, &doc_name, &nodes, &mut push, &mut slots),
        _ => {}
    }
    out.slots.extend(slots);
}

type Push<'a> = dyn FnMut(SymbolKind, Scope, &str, Option<(usize, usize)>, bool, Option<String>) + 'a;

fn index_scenario(
    text: &str,
    doc: &yaml::Document,
    scenario: &str,
    nodes: &[Node<'_>],
    push: &mut Push<'_>,
    slots: &mut Vec<Slot>,
) {
    let users = Scope::In(scenario.to_string());
    for node in nodes {
        let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
        let p = path.as_slice();
        let (Some(&"steps"), Some(index), Some(step)) = (p.first(), p.get(1), p.get(2)) else { continue };
        let range = span_of(text, doc, p, false);
        let name = str_of(node.value);
        // The step's process, for its `task`.
        let process = doc.value.pointer(&pointer(&["steps", *index, *step, "process"])).and_then(str_of).unwrap_or("");
        let what = match (p.len(), p.get(3).copied()) {
            (4, Some("usr_login")) if *step == "create_user" => Some((SymbolKind::User, users.clone(), true)),
            (3, None)
                if matches!(*step, "enable_user" | "disable_user" | "delete_user" | "lock_user" | "unlock_user") =>
            {
                Some((SymbolKind::User, users.clone(), false))
            }
            (4, Some("user" | "to")) => Some((SymbolKind::User, users.clone(), false)),
            (4, Some("process")) => Some((SymbolKind::Process, Scope::Global, false)),
            (4, Some("task")) => Some((SymbolKind::Task, Scope::In(process.to_string()), false)),
            (4, Some("target")) => Some((SymbolKind::Target, Scope::Global, false)),
            (4, Some("template")) => Some((SymbolKind::Template, Scope::Global, false)),
            _ => None,
        };
        let Some((kind, scope, definition)) = what else { continue };
        if !definition {
            if let Some((start, end)) = range {
                slots.push(Slot { start, end, expects: Expects::Name(kind, scope.clone()) });
            }
        }
        if let Some(name) = name {
            push(kind, scope, name, range, definition, None);
        }
    }
}

fn field_label(def: &Value) -> String {
    match def {
        Value::String(ty) => format!("`{ty}`"),
        Value::Object(m) => {
            let ty = m.get("type").and_then(str_of).unwrap_or("String");
            match m.get("label").or_else(|| m.get("description")).and_then(str_of) {
                Some(label) => format!("`{ty}` — {label}"),
                None => format!("`{ty}`"),
            }
        }
        _ => String::new(),
    }
}

fn query_params(def: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for section in ["params", "outputs"] {
        if let Some(Value::Object(params)) = def.get(section) {
            for (name, spec) in params {
                let ty = match spec {
                    Value::String(t) => t.clone(),
                    Value::Object(m) => m.get("type").and_then(str_of).unwrap_or("").to_string(),
                    _ => String::new(),
                };
                let ty = if section == "outputs" { format!("{ty} (output)") } else { ty };
                out.push((name.clone(), ty));
            }
        }
    }
    out
}

fn query_detail(name: &str, def: &Value) -> String {
    let sql = def.get("query").and_then(str_of).unwrap_or("");
    let mut s = format!("**query `{name}`**\n\n```sql\n{sql}\n```\n");
    let params = query_params(def);
    if !params.is_empty() {
        s.push_str("\n| parameter | type |\n| --- | --- |\n");
        for (p, ty) in params {
            s.push_str(&format!("| `{p}` | {ty} |\n"));
        }
    }
    if def.get("idempotent").and_then(Value::as_bool) == Some(true) {
        s.push_str("\nidempotent: may be repeated after a crash\n");
    }
    s
}

fn task_detail(name: &str, def: &Value) -> String {
    let mut s = format!("**task `{name}`**");
    if let Some(d) = def.get("description").and_then(str_of) {
        s.push_str(&format!("\n\n{d}"));
    }
    let list = |key: &str| -> Vec<String> {
        def.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(str_of).map(|n| format!("`{n}`")).collect())
            .unwrap_or_default()
    };
    let deps = list("depends_on");
    if !deps.is_empty() {
        s.push_str(&format!("\n\ndepends on {}", deps.join(", ")));
    }
    if let Some(Value::Object(responses)) = def.get("responses") {
        s.push_str("\n\n| response | status | description |\n| --- | --- | --- |\n");
        for (code, r) in responses {
            let status = r.get("status").and_then(str_of).unwrap_or("");
            let description = r.get("description").and_then(str_of).unwrap_or("");
            s.push_str(&format!("| `{code}` | {status} | {description} |\n"));
        }
    }
    if let Some(Value::Object(map)) = def.get("status_map") {
        let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k} → {}", str_of(v).unwrap_or(""))).collect();
        s.push_str(&format!("\nstatus map: {}\n", pairs.join(", ")));
    }
    let undo = list("undo");
    if !undo.is_empty() {
        s.push_str(&format!("\nundone by {}\n", undo.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCESS: &str = "apiVersion: provflow/v1
kind: Process
name: P
type: provisioning
object: O
target: t1
form:
  fields: { username: { type: String, label: User Name } }
tasks:
  Create User:
    adapter: { query: CREATE_USER, map: { __NAME__: form.username } }
    responses: { SUCCESS: { status: Completed, generate: [\"Enable\"] } }
    notify: { Completed: Welcome }
  Enable:
    depends_on: [Create User]
---
apiVersion: provflow/v1
kind: Target
name: t1
dialect: postgres
queries: set1
";

    fn names(s: &FileSymbols) -> Vec<(SymbolKind, String, bool, String)> {
        s.occurrences
            .iter()
            .map(|o| (o.kind, o.name.clone(), o.definition, PROCESS.get(o.start..o.end).unwrap_or("?").to_string()))
            .collect()
    }

    #[test]
    fn definitions_and_references_with_their_text() {
        let s = index(PROCESS);
        let got = names(&s);
        let want = [
            (SymbolKind::Process, "P", true, "P"),
            (SymbolKind::Target, "t1", false, "t1"),
            (SymbolKind::Task, "Create User", true, "Create User"),
            (SymbolKind::Task, "Enable", true, "Enable"),
            (SymbolKind::Query, "CREATE_USER", false, "CREATE_USER"),
            (SymbolKind::Task, "Enable", false, "Enable"),
            (SymbolKind::Template, "Welcome", false, "Welcome"),
            (SymbolKind::Task, "Create User", false, "Create User"),
            (SymbolKind::Target, "t1", true, "t1"),
            (SymbolKind::QuerySet, "set1", false, "set1"),
        ];
        let want: Vec<_> = want.iter().map(|(k, n, d, t)| (*k, n.to_string(), *d, t.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(s.target_sets, [("t1".to_string(), "set1".to_string())]);
        assert!(s
            .slots
            .iter()
            .any(|sl| matches!(&sl.expects, Expects::Placeholder { query, .. } if query == "CREATE_USER")));
    }

    #[test]
    fn broken_yaml_gives_what_it_can() {
        let s = index("kind: Process\nname: P\ntasks:\n  A: { depends_on: [B\n");
        assert!(s.occurrences.len() <= 2);
        let _ = index("\u{0}\u{feff}: [}{");
    }
}
