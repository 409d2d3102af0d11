//! Semantic passes: name resolution, cross-reference checks, and lowering to the IR.
//!
//! Each pass takes the typed documents (through [`Ctx`]) and the IR already lowered by the
//! passes before it, reports [`Finding`]s against the document they concern, and returns exactly
//! one IR item per definition, in the order of the [`Ctx`] lists (sorted by name), so that an
//! index in a name table is the index in the bundle. Items with errors are lowered on a best
//! effort basis; the bundle is discarded when any error was reported.

pub(crate) mod notify;
mod process;
mod queries;
mod scenario;
pub(crate) mod users;

use std::sync::Arc;

use provflow_ir as ir;
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::diagnostic::{Finding, Part};
use crate::source::SourceReader;
use crate::suggest::did_you_mean;
use crate::{syntax, LoadedDoc, SourceFile, TypedDoc};

/// Findings of the semantic passes, each with the index of the document it concerns.
pub type Findings = Vec<(usize, Finding)>;

/// A named definition of one kind.
pub struct Named<'a, T> {
    /// Index into the loaded documents (for findings).
    pub doc: usize,
    pub name: &'a str,
    pub def: &'a T,
}

/// Everything the passes read: the typed documents of the bundle, by kind, sorted by name.
pub struct Ctx<'a> {
    pub reader: &'a dyn SourceReader,
    pub files: &'a [SourceFile],
    pub docs: &'a [LoadedDoc],
    pub targets: Vec<Named<'a, syntax::Target>>,
    pub query_sets: Vec<Named<'a, syntax::ConnectorQueries>>,
    pub processes: Vec<Named<'a, syntax::Process>>,
    pub events: Vec<Named<'a, syntax::NotificationEvent>>,
    pub templates: Vec<Named<'a, syntax::NotificationTemplate>>,
    pub user_schemas: Vec<Named<'a, syntax::UserSchema>>,
    pub scenarios: Vec<Named<'a, syntax::Scenario>>,
    /// Full span indexes, built on first use per file (the loader indexes only the top levels).
    pub(crate) full_spans: Vec<std::sync::OnceLock<Vec<crate::yaml::SpanIndex>>>,
    /// Results of per-document passes kept from an earlier compile (the language server).
    pub(crate) memo: Option<Memo<'a>>,
}

/// Per-document results of the query-set and process passes, kept between compiles of the
/// same workspace: a pass whose document and inputs are unchanged is not run again.
///
/// A query set's result depends on its document (its text and where it stands in its file,
/// for locations) and its install scripts; a process's on its document, the targets, query
/// sets, user schema and template names. The keys are the callers' fingerprints of those
/// documents ([`MemoKeys`]); install scripts are not part of them, so a caller clears the cache
/// when files on disk change. Entries not used by a compile are dropped after it.
#[derive(Default)]
pub struct CheckCache {
    pub(crate) query_sets: Shelf<u64, ir::QuerySet>,
    pub(crate) processes: Shelf<(u64, u64), ir::Process>,
    pub(crate) templates: Shelf<(u64, u64), ir::NotificationTemplate>,
}

impl CheckCache {
    pub fn clear(&self) {
        self.query_sets.clear();
        self.processes.clear();
        self.templates.clear();
    }

    /// Drops the entries the last compile did not use.
    fn sweep(&self) {
        self.query_sets.sweep();
        self.processes.sweep();
        self.templates.sweep();
    }
}

/// A pass's result as the memo keeps it: the lowered definition, shared with every compile
/// that uses it (never copied), and its document's findings.
struct Kept<T> {
    lowered: Arc<T>,
    findings: Arc<[Finding]>,
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Kept { lowered: Arc::clone(&self.lowered), findings: Arc::clone(&self.findings) }
    }
}

/// One pass's kept results, by key.
pub(crate) struct Shelf<K, T> {
    kept: std::sync::Mutex<rustc_hash::FxHashMap<K, Kept<T>>>,
    used: std::sync::Mutex<rustc_hash::FxHashSet<K>>,
}

impl<K, T> Default for Shelf<K, T> {
    fn default() -> Self {
        Shelf { kept: Default::default(), used: Default::default() }
    }
}

impl<K: std::hash::Hash + Eq + Copy, T> Shelf<K, T> {
    /// `lower()`'s result for document `doc`: from the shelf when it holds `key` (shared, not
    /// copied), else computed and kept when every finding belongs to `doc`.
    pub(crate) fn through(&self, key: K, doc: usize, lower: impl FnOnce() -> (T, Findings)) -> (Arc<T>, Findings) {
        for_each_lock(&self.used, |u| {
            u.insert(key);
        });
        let kept = self.kept.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(kept) = kept {
            return (kept.lowered, kept.findings.iter().map(|f| (doc, f.clone())).collect());
        }
        let (lowered, found) = lower();
        let lowered = Arc::new(lowered);
        if let Some(own) = own_findings(doc, &found) {
            let kept = Kept { lowered: Arc::clone(&lowered), findings: own.into() };
            for_each_lock(&self.kept, |m| {
                m.insert(key, kept);
            });
        }
        (lowered, found)
    }

    fn clear(&self) {
        for_each_lock(&self.kept, |m| m.clear());
    }

    fn sweep(&self) {
        let used = take_lock(&self.used);
        for_each_lock(&self.kept, |m| m.retain(|k, _| used.contains(k)));
    }
}

/// `lower()`'s result for document `doc`: through `shelf` under its key when the compile has a
/// memo (see [`Shelf::through`]), else computed.
pub(crate) fn memoized<K: std::hash::Hash + Eq + Copy, T>(
    shelf: Option<(&Shelf<K, T>, K)>,
    doc: usize,
    lower: impl FnOnce() -> (T, Findings),
) -> (Arc<T>, Findings) {
    match shelf {
        Some((shelf, key)) => shelf.through(key, doc, lower),
        None => {
            let (lowered, found) = lower();
            (Arc::new(lowered), found)
        }
    }
}

/// Runs `f` on the locked value; a poisoned lock (a panic elsewhere) just skips the cache.
fn for_each_lock<T>(lock: &std::sync::Mutex<T>, f: impl FnOnce(&mut T)) {
    if let Ok(mut guard) = lock.lock() {
        f(&mut guard);
    }
}

fn take_lock<T: Default>(lock: &std::sync::Mutex<T>) -> T {
    lock.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default()
}

/// The caller's fingerprint of each document (same order as the documents), and the cache.
#[derive(Clone, Copy)]
pub struct Memo<'a> {
    pub fingerprints: &'a [u64],
    pub cache: &'a CheckCache,
}

/// What the memo keys are made of.
pub struct MemoKeys;

impl MemoKeys {
    /// A document's fingerprint: its file's path, the line it starts on (its IR locations
    /// count from there), and its text.
    pub fn document(path: &str, line: u32, text: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        path.hash(&mut h);
        line.hash(&mut h);
        text.hash(&mut h);
        h.finish()
    }
}

fn index_of<T>(list: &[Named<'_, T>], name: &str) -> Option<usize> {
    list.binary_search_by(|n| n.name.cmp(name)).ok()
}

impl<'a> Ctx<'a> {
    pub fn target(&self, name: &str) -> Option<usize> {
        index_of(&self.targets, name)
    }
    pub fn query_set(&self, name: &str) -> Option<usize> {
        index_of(&self.query_sets, name)
    }
    pub fn process(&self, name: &str) -> Option<usize> {
        index_of(&self.processes, name)
    }
    pub fn event(&self, name: &str) -> Option<usize> {
        index_of(&self.events, name)
    }
    pub fn template(&self, name: &str) -> Option<usize> {
        index_of(&self.templates, name)
    }

    /// The file path of a document, as shown in diagnostics.
    pub fn file_of(&self, doc: usize) -> &str {
        self.docs.get(doc).and_then(|d| self.files.get(d.file)).map_or("", |f| f.path.as_str())
    }

    /// The source position of any node of a document.
    pub fn node(&self, doc: usize, pointer: &str) -> Option<crate::yaml::NodeSpan> {
        let d = self.docs.get(doc)?;
        if d.spans.covers(pointer) {
            return d.spans.get(pointer).copied();
        }
        let file = self.files.get(d.file)?;
        let indexes = self.full_spans.get(d.file)?.get_or_init(|| crate::full_index(file));
        indexes.get(d.ordinal)?.get(pointer).copied()
    }

    /// The IR location of a node of a document.
    pub fn location(&self, doc: usize, pointer: &str) -> ir::Location {
        let Some(d) = self.docs.get(doc) else { return ir::Location::default() };
        let span = d.spans.get(pointer).map(|n| n.key.unwrap_or(n.value)).unwrap_or(d.root);
        ir::Location { file: self.file_of(doc).to_owned(), line: span.line, column: span.column }
    }

    /// The file position of a place inside a string value: `inner` is 0-based within the
    /// string, as `Finding::at_inner` takes it (the same arithmetic as `resolve`).
    pub fn inner_location(&self, doc: usize, pointer: &str, (line, col): (u32, u32)) -> ir::Location {
        let Some(n) = self.node(doc, pointer) else {
            return self.location(doc, pointer);
        };
        let (line, column) = match n.block_content {
            Some((bl, bc)) => (bl + line, bc + col),
            None if line == 0 => (n.value.line, n.value.column + col + u32::from(n.quoted)),
            None => (n.value.line + line, col + 1),
        };
        ir::Location { file: self.file_of(doc).to_owned(), line, column }
    }
}

impl<'a> Ctx<'a> {
    /// Sorts the documents into name tables by kind, reporting duplicate names into `out`.
    pub fn new(
        reader: &'a dyn SourceReader,
        files: &'a [SourceFile],
        docs: &'a [LoadedDoc],
        out: &mut Findings,
    ) -> Ctx<'a> {
        Ctx {
            reader,
            files,
            docs,
            targets: collect(
                files,
                docs,
                "Target",
                |d| match d {
                    TypedDoc::Target(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            query_sets: collect(
                files,
                docs,
                "ConnectorQueries",
                |d| match d {
                    TypedDoc::ConnectorQueries(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            processes: collect(
                files,
                docs,
                "Process",
                |d| match d {
                    TypedDoc::Process(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            events: collect(
                files,
                docs,
                "NotificationEvent",
                |d| match d {
                    TypedDoc::NotificationEvent(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            templates: collect(
                files,
                docs,
                "NotificationTemplate",
                |d| match d {
                    TypedDoc::NotificationTemplate(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            user_schemas: collect(
                files,
                docs,
                "UserSchema",
                |d| match d {
                    TypedDoc::UserSchema(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            scenarios: collect(
                files,
                docs,
                "Scenario",
                |d| match d {
                    TypedDoc::Scenario(t) => Some((t.name.as_str(), t)),
                    _ => None,
                },
                out,
            ),
            full_spans: files.iter().map(|_| std::sync::OnceLock::new()).collect(),
            memo: None,
        }
    }
}

/// An "unknown X" finding with a did-you-mean over the known names.
pub fn unknown<'n>(
    code: &'static str,
    what: &str,
    given: &str,
    known: impl IntoIterator<Item = &'n str> + Clone,
    pointer: impl Into<String>,
) -> Finding {
    let help = match did_you_mean(given, known.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            let mut names: Vec<&str> = known.into_iter().collect();
            if names.is_empty() {
                format!("no {what} is defined in this bundle")
            } else {
                names.truncate(12);
                let what = match what.strip_suffix('y') {
                    Some(stem) => format!("{stem}ies"),
                    None => format!("{what}s"),
                };
                format!("the known {what} are: {}", names.join(", "))
            }
        }
    };
    Finding::error(code, format!("unknown {what} `{given}`"), pointer, Part::Value, Some(help))
}

/// Escapes a name for use in a JSON pointer.
pub fn ptr(token: &str) -> String {
    crate::yaml::escape_token(token)
}

/// Checks on the raw JSON of a document, before the schema (which would explain these worse).
pub fn raw_checks(kind: &str, value: &Value, findings: &mut Vec<Finding>) {
    if kind != "Target" {
        return;
    }
    call_limit(value, findings);
    if let Some(conn) = value.get("connection").and_then(Value::as_object) {
        for (key, v) in conn {
            let credential_key = matches!(
                key.to_ascii_lowercase().as_str(),
                "url" | "dsn" | "password" | "passwd" | "pwd" | "user" | "username" | "secret" | "token" | "host"
            );
            let url_value = v.as_str().is_some_and(|s| s.contains("://"));
            if credential_key || (key == "url_env" && url_value) {
                findings.push(Finding::error(
                    "PF600",
                    if key == "url_env" {
                        "`url_env` must name an environment variable, not hold a URL".to_string()
                    } else {
                        format!("`connection.{key}` would put a credential in a definition file")
                    },
                    format!("/connection/{}", ptr(key)),
                    if key == "url_env" { Part::Value } else { Part::Key },
                    Some(
                        "definitions are committed to git: write `url_env: SOME_VARIABLE` and set the URL in that \
                         environment variable, or pass `--target NAME=URL`"
                            .into(),
                    ),
                ));
            }
        }
    }
    if let Some(props) = value.get("properties").and_then(Value::as_object) {
        for key in props.keys() {
            let k = key.to_ascii_lowercase();
            if ["password", "passwd", "secret", "token", "credential", "private_key"].iter().any(|w| k.contains(w)) {
                findings.push(Finding::error(
                    "PF600",
                    format!("target property `{key}` looks like a credential"),
                    format!("/properties/{}", ptr(key)),
                    Part::Key,
                    Some(
                        "properties are plain text in git and in the IR; secrets come from `--secret` or a form field \
                         of type GuardedString"
                            .into(),
                    ),
                ));
            }
        }
    }
}

/// PF315: `max_concurrent_calls` is a whole number from 1 to
/// [`syntax::MAX_CONCURRENT_CALLS_LIMIT`]. Checked on the raw value, before the schema, so that
/// every wrong value (a string, a fraction, 0, a negative or too large number, nothing) gets one
/// message that says what was found and what is allowed.
fn call_limit(value: &Value, findings: &mut Vec<Finding>) {
    const FIELD: &str = "max_concurrent_calls";
    let Some(v) = value.get(FIELD) else { return };
    let max = syntax::MAX_CONCURRENT_CALLS_LIMIT;
    let allowed = format!("write a whole number from 1 to {max}, or leave the field out for no limit");
    let (message, help) = match v {
        // A whole number; `as_i64` is `None` only beyond `i64::MAX`, which is too large as well.
        Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_i64() {
            Some(i) if (1..=i64::from(max)).contains(&i) => return,
            Some(0) => {
                (format!("`{FIELD}` must be at least 1, found `0`"), format!("0 would let no call through: {allowed}"))
            }
            Some(i) if i < 0 => (format!("`{FIELD}` must be at least 1, found `{i}`"), allowed),
            _ => (
                format!("`{FIELD}` must be at most {max}, found `{n}`"),
                format!("write at most {max}, or leave the field out for no limit"),
            ),
        },
        // A number written with a fraction or an exponent (`2.5`, `10.0`, `1e3`), or an integer
        // too large for 64 bits.
        Value::Number(n) => match n.as_f64().filter(|f| f.fract() == 0.0) {
            Some(f) if f < 1.0 => (format!("`{FIELD}` must be at least 1, found `{n}`"), allowed),
            Some(f) if f > f64::from(max) => (
                format!("`{FIELD}` must be at most {max}, found `{n}`"),
                format!("write at most {max}, or leave the field out for no limit"),
            ),
            Some(f) => (
                format!("`{FIELD}` must be a whole number, found `{n}`"),
                format!("write it without a fraction or exponent: `{FIELD}: {f:.0}`"),
            ),
            None => (format!("`{FIELD}` must be a whole number, found `{n}`"), allowed),
        },
        Value::String(s) => {
            let number = s.trim().parse::<u32>().ok().filter(|i| (1..=max).contains(i));
            let help = match number {
                Some(i) => format!("write the number without quotes: `{FIELD}: {i}`"),
                None => allowed,
            };
            (format!("`{FIELD}` must be a number, found a string"), help)
        }
        Value::Null => (format!("`{FIELD}` has no value"), allowed),
        Value::Bool(_) => (format!("`{FIELD}` must be a number, found a boolean"), allowed),
        Value::Array(_) => (format!("`{FIELD}` must be a number, found a list"), allowed),
        Value::Object(_) => (format!("`{FIELD}` must be a number, found a mapping"), allowed),
    };
    findings.push(Finding::error("PF315", message, format!("/{FIELD}"), Part::Value, Some(help)));
}

fn collect<'a, T>(
    files: &[SourceFile],
    docs: &'a [LoadedDoc],
    kind: &str,
    pick: impl Fn(&'a TypedDoc) -> Option<(&'a str, &'a T)>,
    out: &mut Findings,
) -> Vec<Named<'a, T>> {
    let mut list: Vec<Named<'a, T>> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, d)| pick(&d.doc).map(|(name, def)| Named { doc: i, name, def }))
        .collect();
    // Stable: among duplicates the first in file order wins and the others are reported.
    list.sort_by(|a, b| a.name.cmp(b.name).then(a.doc.cmp(&b.doc)));
    let mut kept: Vec<Named<'a, T>> = Vec::with_capacity(list.len());
    for item in list {
        if let Some(first_doc) = kept.last().filter(|k| k.name == item.name).and_then(|first| docs.get(first.doc)) {
            let line = first_doc.spans.get("/name").map_or(first_doc.root.line, |n| n.value.line);
            out.push((
                item.doc,
                Finding::error(
                    "PF200",
                    format!("duplicate {kind} name `{}`", item.name),
                    "/name",
                    Part::Value,
                    Some(format!(
                        "`{}` is already defined at {}:{line}; names are unique per kind across the bundle",
                        item.name,
                        files.get(first_doc.file).map_or("", |f| f.path.as_str()),
                    )),
                ),
            ));
        } else {
            kept.push(item);
        }
    }
    kept
}

/// Runs every pass. Returns the bundle without its hash (see [`content_hash`]); it is meaningful
/// only when no error was reported.
pub fn run(reader: &dyn SourceReader, files: &[SourceFile], docs: &[LoadedDoc]) -> (Option<ir::Bundle>, Findings) {
    let (lowered, findings) = run_with(reader, files, docs, None);
    (Some(lowered.into_bundle()), findings)
}

/// What the passes lowered: the parts of a bundle, with the definitions an editor's memo keeps
/// shared between compiles rather than copied into each.
pub struct Lowered {
    pub targets: Vec<ir::Target>,
    pub query_sets: Vec<Arc<ir::QuerySet>>,
    pub processes: Vec<Arc<ir::Process>>,
    pub events: Vec<ir::NotificationEvent>,
    pub templates: Vec<Arc<ir::NotificationTemplate>>,
    pub user_schema: ir::UserSchema,
    pub scenarios: Vec<ir::Scenario>,
}

impl Lowered {
    /// The bundle, without its hash. A definition no memo shares is moved into it; one a memo
    /// shares is copied.
    pub fn into_bundle(self) -> ir::Bundle {
        fn owned<T: Clone>(shared: Vec<Arc<T>>) -> Vec<T> {
            shared.into_iter().map(Arc::unwrap_or_clone).collect()
        }
        ir::Bundle {
            ir_version: ir::IR_VERSION,
            hash: String::new(),
            targets: self.targets,
            query_sets: owned(self.query_sets),
            processes: owned(self.processes),
            events: self.events,
            templates: owned(self.templates),
            user_schema: self.user_schema,
            scenarios: self.scenarios,
        }
    }
}

/// Every pass, reusing the per-document results `memo` holds from an earlier compile.
pub fn run_with(
    reader: &dyn SourceReader,
    files: &[SourceFile],
    docs: &[LoadedDoc],
    memo: Option<Memo<'_>>,
) -> (Lowered, Findings) {
    let t = std::env::var_os("PROVFLOW_TIMINGS").map(|_| std::time::Instant::now());
    let mut out = Findings::new();
    let mut ctx = Ctx::new(reader, files, docs, &mut out);
    ctx.memo = memo.filter(|m| m.fingerprints.len() == docs.len());
    let lap = |what: &str| {
        if let Some(t) = t {
            // A closed stderr must not stop a compile.
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr().lock(),
                format_args!("timing:   {what}: {ms:.1} ms\n"),
            );
        }
    };
    lap("name tables");
    let user_schema = users::lower(&ctx, &mut out);
    let query_sets = queries::lower_query_sets(&ctx, &mut out);
    let targets = queries::lower_targets(&ctx, &query_sets, &mut out);
    lap("users, queries, targets");
    // Processes and notifications depend only on what is above: lower them side by side.
    let mut notify_out = Findings::new();
    let (processes, (events, templates)) = rayon::join(
        || process::lower(&ctx, &targets, &query_sets, &user_schema, &mut out),
        || {
            let events = notify::lower_events(&ctx, &targets, &user_schema, &mut notify_out);
            let templates = notify::lower_templates(&ctx, &events, &user_schema, &mut notify_out);
            (events, templates)
        },
    );
    out.append(&mut notify_out);
    lap("processes and notifications");
    let scenarios = scenario::lower(&ctx, &processes, &targets, &user_schema, &mut out);

    let lowered = Lowered { targets, query_sets, processes, events, templates, user_schema, scenarios };
    lap("scenarios");
    if let Some(m) = ctx.memo {
        m.cache.sweep();
    }
    (lowered, out)
}

impl Ctx<'_> {
    /// The memo key of what every process pass reads besides its own document and its
    /// target's: the names of the targets, query sets and templates (references and their
    /// indexes in the bundle) and the user schemas.
    pub(crate) fn process_inputs_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let Some(m) = self.memo else { return 0 };
        let mut h = rustc_hash::FxHasher::default();
        for names in [
            self.targets.iter().map(|n| n.name).collect::<Vec<_>>(),
            self.query_sets.iter().map(|n| n.name).collect(),
            self.templates.iter().map(|n| n.name).collect(),
        ] {
            names.hash(&mut h);
        }
        for n in &self.user_schemas {
            m.fingerprints.get(n.doc).hash(&mut h);
        }
        h.finish()
    }

    /// The memo key of what every template pass reads besides its own document: the events'
    /// names (a template refers to its event by index) and documents, and what the events'
    /// pass reads (the targets' and user schemas' documents).
    pub(crate) fn template_inputs_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let Some(m) = self.memo else { return 0 };
        let mut h = rustc_hash::FxHasher::default();
        self.events.iter().map(|n| n.name).collect::<Vec<_>>().hash(&mut h);
        let docs = self.events.iter().map(|n| n.doc).chain(self.targets.iter().map(|n| n.doc));
        for doc in docs.chain(self.user_schemas.iter().map(|n| n.doc)) {
            m.fingerprints.get(doc).hash(&mut h);
        }
        h.finish()
    }

    /// The memo key of a process's own inputs: `base` ([`Ctx::process_inputs_key`]) and the
    /// documents of the target it names and of that target's query set.
    pub(crate) fn process_key(&self, base: u64, target: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let Some(m) = self.memo else { return 0 };
        let mut h = rustc_hash::FxHasher::default();
        base.hash(&mut h);
        if let Some(t) = self.target(target).and_then(|i| self.targets.get(i)) {
            m.fingerprints.get(t.doc).hash(&mut h);
            if let Some(q) = self.query_set(&t.def.queries).and_then(|i| self.query_sets.get(i)) {
                m.fingerprints.get(q.doc).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// The definitions of a parallel pass, in order, with their findings appended to `out`.
pub(crate) fn merge<T>(lowered: Vec<(T, Findings)>, out: &mut Findings) -> Vec<T> {
    lowered
        .into_iter()
        .map(|(item, mut found)| {
            out.append(&mut found);
            item
        })
        .collect()
}

/// The findings of one document's pass, without the document's index, when they all belong to
/// it (what the memo can keep).
pub(crate) fn own_findings(doc: usize, found: &Findings) -> Option<Vec<Finding>> {
    found.iter().all(|(d, _)| *d == doc).then(|| found.iter().map(|(_, f)| f.clone()).collect())
}

/// The bundle's content hash: SHA-256 over the IR version and the SHA-256 of the canonical
/// JSON of every definition, section by section in bundle order. Hashing definitions one by
/// one lets every core take part and never holds the whole JSON in memory.
pub fn content_hash(bundle: &ir::Bundle) -> String {
    fn each<T: serde::Serialize + Sync>(items: &[T]) -> Vec<[u8; 32]> {
        items.par_iter().map(|item| digest_json(item)).collect()
    }
    let sections = [
        each(&bundle.targets),
        each(&bundle.query_sets),
        each(&bundle.processes),
        each(&bundle.events),
        each(&bundle.templates),
        vec![digest_json(&bundle.user_schema)],
        each(&bundle.scenarios),
    ];
    let mut hasher = Sha256::new();
    hasher.update(bundle.ir_version.to_le_bytes());
    for section in &sections {
        hasher.update((section.len() as u64).to_le_bytes());
        for d in section {
            hasher.update(d);
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn digest_json<T: serde::Serialize>(item: &T) -> [u8; 32] {
    /// Feeds serialised JSON straight into the hasher.
    struct HashWriter(Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = HashWriter(Sha256::new());
    // Serialising plain IR data into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut w, item);
    w.0.finalize().into()
}

/// Test support: the documents of one YAML text, typed by their `kind`, with full span
/// indexes, as the loader would hand them to the passes (no schema validation).
#[cfg(test)]
pub(crate) fn test_docs(text: &str) -> Vec<LoadedDoc> {
    let (documents, errors) = crate::yaml::parse_full(text);
    assert!(errors.is_empty(), "{errors:?}");
    documents
        .into_iter()
        .enumerate()
        .map(|(ordinal, d)| {
            let kind = d.value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
            let v = d.value;
            let doc = match kind.as_str() {
                "Target" => TypedDoc::Target(serde_json::from_value(v).expect("Target")),
                "ConnectorQueries" => TypedDoc::ConnectorQueries(serde_json::from_value(v).expect("ConnectorQueries")),
                "NotificationEvent" => TypedDoc::NotificationEvent(serde_json::from_value(v).expect("event")),
                "NotificationTemplate" => TypedDoc::NotificationTemplate(serde_json::from_value(v).expect("template")),
                "UserSchema" => TypedDoc::UserSchema(serde_json::from_value(v).expect("UserSchema")),
                "Scenario" => TypedDoc::Scenario(serde_json::from_value(v).expect("Scenario")),
                _ => TypedDoc::Process(serde_json::from_value(v).expect("Process")),
            };
            LoadedDoc { file: 0, ordinal, doc, spans: d.spans, root: d.root }
        })
        .collect()
}
