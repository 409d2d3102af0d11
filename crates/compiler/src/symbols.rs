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
    path.iter().map(|s| format!("/{}", yaml::escape_token(s.as_ref()))).collect()
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

/// What one document adds to its file's [`FileSymbols`].
struct Indexer<'a> {
    text: &'a str,
    doc: &'a yaml::Document,
    out: &'a mut FileSymbols,
}

impl<'a> Indexer<'a> {
    /// The byte range of the value (or, with `key`, the key) at `path`, without quotes.
    fn range(&self, path: &[&str], key: bool) -> Option<(usize, usize)> {
        span_of(self.text, self.doc, path, key)
    }

    /// The string at `path`, if it is one.
    fn string(&self, path: &[&str]) -> Option<&'a str> {
        let doc = self.doc;
        doc.value.pointer(&pointer(path)).and_then(str_of)
    }

    fn occurrence(
        &mut self,
        kind: SymbolKind,
        scope: Scope,
        name: &str,
        range: Option<(usize, usize)>,
        definition: bool,
        detail: Option<String>,
    ) {
        if let (Some((start, end)), false) = (range, name.is_empty()) {
            let name = name.to_string();
            self.out.occurrences.push(Occurrence { kind, scope, name, start, end, definition, detail });
        }
    }

    /// A name defined by the value (or key) at `path`.
    fn define(&mut self, kind: SymbolKind, scope: Scope, path: &[&str], key: bool, detail: Option<String>) {
        let name = if key { path.last().copied() } else { self.string(path) };
        let range = self.range(path, key);
        self.occurrence(kind, scope, name.unwrap_or(""), range, true, detail);
    }

    fn slot(&mut self, range: Option<(usize, usize)>, expects: Expects) {
        if let Some((start, end)) = range {
            self.out.slots.push(Slot { start, end, expects });
        }
    }

    /// A name used at `path`: a place where one of `kind` in `scope` is expected, and the
    /// reference, when a name is written there.
    fn refer(&mut self, kind: SymbolKind, scope: Scope, path: &[&str]) {
        let range = self.range(path, false);
        self.slot(range, Expects::Name(kind, scope.clone()));
        if let Some(name) = self.string(path) {
            self.occurrence(kind, scope, name, range, false, None);
        }
    }
}

fn index_document(text: &str, doc: &yaml::Document, out: &mut FileSymbols) {
    let kind = doc.value.get("kind").and_then(str_of).unwrap_or("");
    let doc_name = doc.value.get("name").and_then(str_of).unwrap_or("").to_string();
    let mut nodes = Vec::new();
    walk(&doc.value, &mut Vec::new(), &mut nodes);
    let mut ix = Indexer { text, doc, out };
    let target = doc.value.get("target").and_then(str_of).unwrap_or("").to_string();
    match kind {
        "Target" => {
            ix.define(SymbolKind::Target, Scope::Global, &["name"], false, None);
            let properties = doc.value.get("properties").and_then(Value::as_object);
            ix.out
                .target_properties
                .push((doc_name.clone(), properties.map(|m| m.keys().cloned().collect()).unwrap_or_default()));
            if let Some(set) = ix.string(&["queries"]) {
                ix.out.target_sets.push((doc_name.clone(), set.to_string()));
            }
            ix.refer(SymbolKind::QuerySet, Scope::Global, &["queries"]);
        }
        "ConnectorQueries" => {
            ix.define(SymbolKind::QuerySet, Scope::Global, &["name"], false, None);
            if let Some(Value::Object(queries)) = doc.value.get("queries") {
                for (name, def) in queries {
                    let set = Scope::In(doc_name.clone());
                    ix.define(SymbolKind::Query, set, &["queries", name], true, Some(query_detail(name, def)));
                    ix.out.query_params.push((doc_name.clone(), name.clone(), query_params(def)));
                }
            }
        }
        "Process" => index_process(&mut ix, &doc_name, &target, &nodes),
        "NotificationEvent" => {
            ix.define(SymbolKind::Event, Scope::Global, &["name"], false, None);
            // A resolver reads a target's database (or `state`, the state store).
            if let Some(t) = ix.string(&["resolver", "target"]).filter(|t| *t != "state") {
                let range = ix.range(&["resolver", "target"], false);
                ix.occurrence(SymbolKind::Target, Scope::Global, t, range, false, None);
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
            ix.out.events.push(vars);
        }
        "NotificationTemplate" => {
            ix.define(SymbolKind::Template, Scope::Global, &["name"], false, None);
            let event = ix.string(&["event"]).unwrap_or("").to_string();
            for node in &nodes {
                let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
                let text_field = matches(&path, &["locales", "*", "subject"])
                    || matches(&path, &["locales", "*", "short"])
                    || matches(&path, &["locales", "*", "long"]);
                if text_field {
                    ix.slot(ix.range(&path, false), Expects::TemplateText { event: event.clone() });
                }
            }
            ix.refer(SymbolKind::Event, Scope::Global, &["event"]);
        }
        "UserSchema" => {
            if let Some(Value::Object(attributes)) = doc.value.get("attributes") {
                for (name, def) in attributes {
                    ix.out.attributes.push((name.clone(), field_label(def)));
                    if let Some(label) = def.get("label").and_then(str_of) {
                        ix.out.attribute_variables.push(crate::check::users::variable_of(label));
                    }
                }
            }
        }
        "Scenario" => index_scenario(&mut ix, &doc_name, &nodes),
        _ => {}
    }
}

fn index_process(ix: &mut Indexer<'_>, process: &str, target: &str, nodes: &[Node<'_>]) {
    let doc = ix.doc;
    ix.define(SymbolKind::Process, Scope::Global, &["name"], false, None);
    ix.refer(SymbolKind::Target, Scope::Global, &["target"]);
    let fields: Vec<(String, String)> = doc
        .value
        .pointer("/form/fields")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), field_label(v))).collect())
        .unwrap_or_default();
    ix.out.forms.push((process.to_string(), fields));
    let task_queries = doc
        .value
        .get("tasks")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(t, d)| d.pointer("/adapter/query").and_then(str_of).map(|q| (t.clone(), q.to_string())))
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
    ix.out.processes.push(ProcessSources {
        process: process.to_string(),
        target: target.to_string(),
        task_queries,
        child_fields,
    });
    let tasks = Scope::In(process.to_string());
    if let Some(Value::Object(defs)) = doc.value.get("tasks") {
        for (name, def) in defs {
            ix.define(SymbolKind::Task, tasks.clone(), &["tasks", name], true, Some(task_detail(name, def)));
        }
    }
    for node in nodes {
        let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
        let p = path.as_slice();
        let task_ref = matches(p, &["tasks", "*", "depends_on", "*"])
            || matches(p, &["tasks", "*", "undo", "*"])
            || matches(p, &["tasks", "*", "recovery", "*"])
            || matches(p, &["tasks", "*", "responses", "*", "generate", "*"])
            || matches(p, &["triggers", "*"])
            || matches(p, &["form", "child_tables", "*", "on_insert"])
            || matches(p, &["form", "child_tables", "*", "on_delete"]);
        if task_ref {
            ix.refer(SymbolKind::Task, tasks.clone(), p);
        } else if matches(p, &["tasks", "*", "notify", "*"]) {
            ix.refer(SymbolKind::Template, Scope::Global, p);
        } else if matches(p, &["tasks", "*", "adapter", "query"]) || matches(p, &["recon", "query"]) {
            ix.refer(SymbolKind::Query, Scope::SetOfTarget(target.to_string()), p);
        } else if matches(p, &["tasks", "*", "adapter", "map", "*"]) {
            let range = ix.range(p, false);
            ix.slot(range, Expects::Source { process: process.to_string() });
            // `tasks.<task>.outputs.<name>`: the task's name is a reference.
            let output =
                str_of(node.value).and_then(|v| v.strip_prefix("tasks.")).and_then(|r| r.rsplit_once(".outputs."));
            if let (Some((task, _)), Some((start, _))) = (output, range) {
                let at = start + "tasks.".len();
                ix.occurrence(SymbolKind::Task, tasks.clone(), task, Some((at, at + task.len())), false, None);
            }
            if let Some(query) = p.get(1).and_then(|t| ix.string(&["tasks", *t, "adapter", "query"])) {
                let expects = Expects::Placeholder { target: target.to_string(), query: query.into() };
                ix.slot(ix.range(p, true), expects);
            }
        }
    }
}

fn index_scenario(ix: &mut Indexer<'_>, scenario: &str, nodes: &[Node<'_>]) {
    let users = Scope::In(scenario.to_string());
    for node in nodes {
        let path: Vec<&str> = node.path.iter().map(String::as_str).collect();
        let p = path.as_slice();
        let (Some(&"steps"), Some(index), Some(step)) = (p.first(), p.get(1), p.get(2)) else { continue };
        // The step's process, for its `task`.
        let process = ix.string(&["steps", *index, *step, "process"]).unwrap_or("");
        match (p.len(), p.get(3).copied()) {
            (4, Some("usr_login")) if *step == "create_user" => {
                ix.define(SymbolKind::User, users.clone(), p, false, None)
            }
            (3, None)
                if matches!(*step, "enable_user" | "disable_user" | "delete_user" | "lock_user" | "unlock_user") =>
            {
                ix.refer(SymbolKind::User, users.clone(), p);
            }
            (4, Some("user" | "to")) => ix.refer(SymbolKind::User, users.clone(), p),
            (4, Some("process")) => ix.refer(SymbolKind::Process, Scope::Global, p),
            (4, Some("task")) => ix.refer(SymbolKind::Task, Scope::In(process.to_string()), p),
            (4, Some("target")) => ix.refer(SymbolKind::Target, Scope::Global, p),
            (4, Some("template")) => ix.refer(SymbolKind::Template, Scope::Global, p),
            _ => {}
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
