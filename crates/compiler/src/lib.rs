//! The provflow compiler: YAML definitions → checked IR plus diagnostics.
//!
//! Pipeline (each phase reports every problem it finds, then the next phase runs on whatever
//! was well-formed):
//!
//! 1. [`source`]: expand paths, read bytes through a [`source::SourceReader`].
//! 2. [`yaml`]: bytes → JSON values + a pointer → span index (the only place that knows spans).
//! 3. [`schema`]: structural validation against the schemas generated from [`syntax`].
//! 4. typed deserialisation into [`syntax`] types.
//! 5. [`check`]: name resolution and semantic passes, which lower to [`provflow_ir`] types.
//!
//! Architecture invariant: the compiler does no I/O but through the reader and never touches a
//! database; it never panics and never stops at the first error.
#![forbid(unsafe_code)]

pub mod check;
pub mod diagnostic;
pub mod foreign;
pub mod legacy;
pub mod query;
pub mod schema;
pub mod source;
pub use provflow_lex::suggest;
pub mod symbols;
pub mod syntax;
pub mod template;
pub mod yaml;

use rayon::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

use diagnostic::{Diagnostic, Finding, Part, Span};
use provflow_ir::Bundle;
use source::{SourceError, SourceReader};

/// One loaded definition file.
pub struct SourceFile {
    /// The path as given (relative paths stay relative).
    pub path: String,
    /// The decoded text, when the file was valid UTF-8.
    pub text: Option<String>,
}

/// The result of a compile: the IR when there were no errors, and every diagnostic.
pub struct Compilation {
    pub bundle: Option<Bundle>,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<SourceFile>,
}

impl Compilation {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// A typed document, as accepted by the structural phase.
#[derive(Debug, Clone)]
// Documents are built once and read in place: boxing the large kinds would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum TypedDoc {
    Target(syntax::Target),
    ConnectorQueries(syntax::ConnectorQueries),
    Process(syntax::Process),
    NotificationEvent(syntax::NotificationEvent),
    NotificationTemplate(syntax::NotificationTemplate),
    UserSchema(syntax::UserSchema),
    Scenario(syntax::Scenario),
}

/// A document that passed the structural phase, with what the later passes need to point back.
pub struct LoadedDoc {
    pub file: usize,
    /// Position of the document among the file's non-empty documents.
    pub ordinal: usize,
    pub doc: TypedDoc,
    pub spans: yaml::SpanIndex,
    pub root: Span,
}

/// Compiles definition files and directories read through `reader`.
///
/// Returns `Err` only when a path cannot be read at all (exit code 2); everything wrong inside
/// the files is a diagnostic.
pub fn compile_paths(reader: &dyn SourceReader, roots: &[PathBuf]) -> Result<Compilation, SourceError> {
    compile_paths_with(reader, roots, Produce::default())
}

/// What a compile computes besides the diagnostics and the IR.
#[derive(Debug, Clone, Copy)]
pub struct Produce {
    /// The bundle's content hash ([`Bundle::hash`]): what writes the IR, stores it or runs it
    /// needs it; a check that only reports diagnostics does not (the hash is left empty).
    pub hash: bool,
}

impl Default for Produce {
    fn default() -> Self {
        Produce { hash: true }
    }
}

/// [`compile_paths`], computing only what `produce` asks for.
pub fn compile_paths_with(
    reader: &dyn SourceReader,
    roots: &[PathBuf],
    produce: Produce,
) -> Result<Compilation, SourceError> {
    let paths = source::expand(reader, roots)?;
    let timings = Timings::from_env();
    // Each file is read and loaded in one task, on every core. When a file cannot be read, the
    // error is the first such file's in path order, as a sequential read would report it.
    let loaded: Vec<Result<Loaded, SourceError>> = paths
        .into_par_iter()
        .enumerate()
        .map(|(i, path)| {
            let bytes = reader.read(&path).map_err(|error| SourceError { path: path.clone(), error })?;
            Ok(load_file(i, &path, bytes))
        })
        .collect();
    let loaded = loaded.into_iter().collect::<Result<Vec<Loaded>, SourceError>>()?;
    Ok(compile_loaded(reader, loaded, timings, produce))
}

/// Compiles files already read. `reader` is used for the files they refer to (install scripts).
pub fn compile_files(reader: &dyn SourceReader, inputs: Vec<(PathBuf, Vec<u8>)>) -> Compilation {
    let timings = Timings::from_env();
    // Phases 2–4, file by file, on every core.
    let loaded: Vec<Loaded> =
        inputs.into_par_iter().enumerate().map(|(i, (path, bytes))| load_file(i, &path, bytes)).collect();
    compile_loaded(reader, loaded, timings, Produce::default())
}

/// One file after phases 2–4: the file, its documents that passed, and its diagnostics.
type Loaded = (SourceFile, Vec<LoadedDoc>, Vec<Diagnostic>);

/// Phase 5 and the rest, on the loaded files in input order.
fn compile_loaded(reader: &dyn SourceReader, loaded: Vec<Loaded>, timings: Timings, produce: Produce) -> Compilation {
    let mut files = Vec::with_capacity(loaded.len());
    let mut docs = Vec::new();
    let mut diagnostics = Vec::new();
    for (file, file_docs, diags) in loaded {
        files.push(file);
        docs.extend(file_docs);
        diagnostics.extend(diags);
    }

    timings.lap("load, schema, typed documents");
    timings.note(&format!(
        "files read by the fast YAML reader: {}, by the general parser: {}",
        yaml::READ_FAST.load(std::sync::atomic::Ordering::Relaxed),
        yaml::READ_GENERAL.load(std::sync::atomic::Ordering::Relaxed)
    ));
    let (bundle, diagnostics) = check_loaded(reader, &files, &docs, diagnostics);
    timings.lap("semantic passes and lowering");
    // Hashing the IR and freeing the source documents are independent: do them side by side.
    // Without a hash to wait for, the documents are freed in the background.
    let bundle = if produce.hash {
        rayon::join(
            move || {
                bundle.map(|mut b| {
                    b.hash = check::content_hash(&b);
                    b
                })
            },
            move || drop(docs),
        )
        .0
    } else {
        rayon::spawn(move || drop(docs));
        bundle
    };
    timings.lap("hash");
    Compilation { bundle, diagnostics, files }
}

/// One file through phases 2–4: its text, its documents that passed the structural phase,
/// and what was wrong with the rest. `index` is the file's position among the files checked
/// together ([`LoadedDoc::file`]; renumber it when the set changes).
pub struct LoadedFile {
    pub file: SourceFile,
    pub docs: Vec<LoadedDoc>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads one file (phases 2–4) on its own: what an editor re-reads when one file changes.
pub fn load(index: usize, path: &Path, bytes: Vec<u8>) -> LoadedFile {
    let (file, docs, diagnostics) = load_file(index, path, bytes);
    LoadedFile { file, docs, diagnostics }
}

/// Phase 5 over loaded files, and every diagnostic (`load_diagnostics` and the semantic
/// passes' findings, positioned, sorted, without duplicates). The bundle, unhashed, when
/// there is no error.
pub fn check_loaded(
    reader: &dyn SourceReader,
    files: &[SourceFile],
    docs: &[LoadedDoc],
    load_diagnostics: Vec<Diagnostic>,
) -> (Option<Bundle>, Vec<Diagnostic>) {
    let (bundle, findings) = check::run(reader, files, docs);
    let diagnostics = positioned(files, docs, load_diagnostics, findings);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    let bundle = match bundle {
        // Freeing a large IR takes a while: let another thread do it.
        Some(b) if has_errors => {
            rayon::spawn(move || drop(b));
            None
        }
        other => other,
    };
    (bundle, diagnostics)
}

/// Phase 5 for an editor: the diagnostics of [`check_loaded`], reusing the per-document results
/// of an earlier compile that `memo` holds (see [`check::CheckCache`]). No bundle is built: what
/// the memo keeps is shared with it, never copied.
pub fn diagnose_loaded(
    reader: &dyn SourceReader,
    files: &[SourceFile],
    docs: &[LoadedDoc],
    load_diagnostics: Vec<Diagnostic>,
    memo: check::Memo<'_>,
) -> Vec<Diagnostic> {
    let (lowered, findings) = check::run_with(reader, files, docs, Some(memo));
    drop(lowered);
    positioned(files, docs, load_diagnostics, findings)
}

/// `diagnostics` and `findings` positioned in their files, sorted, without duplicates.
fn positioned(
    files: &[SourceFile],
    docs: &[LoadedDoc],
    mut diagnostics: Vec<Diagnostic>,
    findings: check::Findings,
) -> Vec<Diagnostic> {
    // Deep pointers need the full span index of their file: build it once per such file.
    let mut full: rustc_hash::FxHashMap<usize, Vec<yaml::SpanIndex>> = Default::default();
    for (doc_index, finding) in findings {
        let Some(doc) = docs.get(doc_index) else { continue };
        let Some(file) = files.get(doc.file) else { continue };
        let spans = if doc.spans.covers(&finding.pointer) {
            &doc.spans
        } else {
            let indexes = full.entry(doc.file).or_insert_with(|| full_index(file));
            indexes.get(doc.ordinal).unwrap_or(&doc.spans)
        };
        diagnostics.push(resolve(file, spans, doc.root, &finding));
    }
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code, &a.message).cmp(&(&b.file, b.line, b.column, b.code, &b.message))
    });
    diagnostics.dedup();
    diagnostics
}

/// Phase timings on stderr when `PROVFLOW_TIMINGS` is set: for profiling, not for tests.
struct Timings(Option<std::cell::Cell<std::time::Instant>>);

impl Timings {
    fn from_env() -> Timings {
        Timings(std::env::var_os("PROVFLOW_TIMINGS").map(|_| std::cell::Cell::new(std::time::Instant::now())))
    }

    fn note(&self, what: &str) {
        if self.0.is_some() {
            let _ = std::io::Write::write_fmt(&mut std::io::stderr().lock(), format_args!("timing: {what}\n"));
        }
    }

    fn lap(&self, what: &str) {
        if let Some(start) = &self.0 {
            // A closed stderr must not stop a compile.
            let ms = start.get().elapsed().as_secs_f64() * 1000.0;
            let _ =
                std::io::Write::write_fmt(&mut std::io::stderr().lock(), format_args!("timing: {what}: {ms:.1} ms\n"));
            start.set(std::time::Instant::now());
        }
    }
}

/// Compiles a single in-memory file (fuzzing, tests).
pub fn compile_bytes(name: &str, bytes: &[u8]) -> Compilation {
    let reader = source::MemoryReader::new().with(name, bytes.to_vec());
    compile_files(&reader, vec![(PathBuf::from(name), bytes.to_vec())])
}

/// The span index of every node of every document of a file.
pub(crate) fn full_index(file: &SourceFile) -> Vec<yaml::SpanIndex> {
    file.text.as_deref().map(|t| yaml::parse_full(t).0.into_iter().map(|d| d.spans).collect()).unwrap_or_default()
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

fn load_file(index: usize, path: &Path, bytes: Vec<u8>) -> Loaded {
    let name = display_path(path);
    let mut diags = Vec::new();
    if let Err(e) = yaml::decode(&bytes) {
        diags.push(load_diagnostic(&name, e));
        return (SourceFile { path: name, text: None }, Vec::new(), diags);
    }
    // Checked above; the conversion reuses the buffer instead of copying the file.
    let Ok(owned) = String::from_utf8(bytes) else {
        return (SourceFile { path: name, text: None }, Vec::new(), diags);
    };
    let text = owned.as_str();
    let (documents, errors) = yaml::parse(text);
    // An alias was replaced by null: checking its document would only add confusing errors.
    let poisoned = errors.iter().any(|e| e.code == "PF004");
    for e in errors {
        diags.push(load_diagnostic(&name, e));
    }
    if poisoned {
        return (SourceFile { path: name, text: Some(owned) }, Vec::new(), diags);
    }
    let file = SourceFile { path: name, text: Some(owned) };
    let mut out = Vec::new();
    let mut full: Option<Vec<yaml::SpanIndex>> = None;
    for (ordinal, doc) in documents.into_iter().enumerate() {
        let mut findings = Vec::new();
        if let Some(typed) = structural(doc.value, &mut findings) {
            out.push(LoadedDoc { file: index, ordinal, doc: typed, spans: doc.spans, root: doc.root });
        } else {
            for f in &findings {
                let spans = if doc.spans.covers(&f.pointer) {
                    &doc.spans
                } else {
                    full.get_or_insert_with(|| full_index(&file)).get(ordinal).unwrap_or(&doc.spans)
                };
                diags.push(resolve(&file, spans, doc.root, f));
            }
        }
    }
    (file, out, diags)
}

fn load_diagnostic(file: &str, e: yaml::LoadError) -> Diagnostic {
    Diagnostic {
        severity: diagnostic::Severity::Error,
        code: e.code,
        message: e.message,
        file: file.to_owned(),
        line: e.span.line,
        column: e.span.column,
        end_line: e.span.end_line,
        end_column: e.span.end_column,
        help: e.help,
        span: e.span,
    }
}

/// Phases 3 and 4 for one document: header checks, schema validation, typed deserialisation.
fn structural(value: Value, findings: &mut Vec<Finding>) -> Option<TypedDoc> {
    let Some(obj) = value.as_object() else {
        findings.push(Finding::error(
            "PF101",
            "a definition must be a mapping with `apiVersion`, `kind` and `name`",
            "",
            Part::Value,
            Some("start the document with `apiVersion: provflow/v1` and `kind: ...`".into()),
        ));
        return None;
    };
    match obj.get("apiVersion") {
        None => findings.push(Finding::error(
            "PF100",
            "missing `apiVersion`",
            "",
            Part::Value,
            Some("add `apiVersion: provflow/v1`".into()),
        )),
        Some(Value::String(v)) if v == syntax::API_VERSION => {}
        Some(other) => findings.push(Finding::error(
            "PF100",
            format!("unsupported apiVersion `{}`", other.as_str().map_or_else(|| other.to_string(), String::from)),
            "/apiVersion",
            Part::Value,
            Some(format!("this provflow reads `apiVersion: {}`", syntax::API_VERSION)),
        )),
    }
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if syntax::KINDS.contains(&k.as_str()) => k.as_str(),
        Some(other) => {
            let given = other.as_str().map_or_else(|| other.to_string(), String::from);
            let help = match suggest::did_you_mean(&given, syntax::KINDS) {
                Some(s) => format!("did you mean `{s}`? The kinds are: {}", syntax::KINDS.join(", ")),
                None => format!("the kinds are: {}", syntax::KINDS.join(", ")),
            };
            findings.push(Finding::error("PF101", format!("unknown kind `{given}`"), "/kind", Part::Value, Some(help)));
            return None;
        }
        None => {
            findings.push(Finding::error(
                "PF101",
                "missing `kind`",
                "",
                Part::Value,
                Some(format!("add `kind:` with one of: {}", syntax::KINDS.join(", "))),
            ));
            return None;
        }
    };
    let kind = kind.to_owned();
    let kind = kind.as_str();
    check::raw_checks(kind, &value, findings);
    let schema_findings = schema::validate(kind, &value);
    let raw_pointers: Vec<String> = findings.iter().map(|f| f.pointer.clone()).collect();
    // A raw check explains some problems better than the schema (credentials in a connection).
    findings.extend(schema_findings.into_iter().filter(|f| !raw_pointers.contains(&f.pointer)));
    if findings.iter().any(|f| f.severity == diagnostic::Severity::Error) {
        return None;
    }
    let typed = match kind {
        "Target" => serde_json::from_value(value).map(TypedDoc::Target),
        "ConnectorQueries" => serde_json::from_value(value).map(TypedDoc::ConnectorQueries),
        "Process" => serde_json::from_value(value).map(TypedDoc::Process),
        "NotificationEvent" => serde_json::from_value(value).map(TypedDoc::NotificationEvent),
        "NotificationTemplate" => serde_json::from_value(value).map(TypedDoc::NotificationTemplate),
        "UserSchema" => serde_json::from_value(value).map(TypedDoc::UserSchema),
        _ => serde_json::from_value(value).map(TypedDoc::Scenario),
    };
    match typed {
        Ok(t) => Some(t),
        Err(e) => {
            // The schema accepted what serde refused: report it rather than lose the document.
            findings.push(Finding::error("PF106", format!("invalid {kind}: {e}"), "", Part::Value, None));
            None
        }
    }
}

/// A multi-line span cut to its first line: "missing field" on a whole document or list item
/// points at where it starts instead of underlining every line.
fn first_line(span: Span, file: &SourceFile) -> Span {
    if span.end_line <= span.line {
        return span;
    }
    let Some(text) = file.text.as_deref() else { return span };
    let rest = text.get(span.start..).unwrap_or("");
    let line = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
    Span {
        end_line: span.line,
        end_column: span.column + line.chars().count() as u32,
        end: span.start + line.len(),
        ..span
    }
}

/// Turns a pointer-positioned finding into a diagnostic with file, line and column.
pub fn resolve(file: &SourceFile, spans: &yaml::SpanIndex, root: Span, f: &Finding) -> Diagnostic {
    let node = spans.get(&f.pointer).or_else(|| spans.nearest(&f.pointer).map(|(_, n)| n));
    let mut span = match (node, f.part) {
        (Some(n), Part::Key) => n.key.unwrap_or_else(|| first_line(n.value, file)),
        (Some(n), Part::Value) => n.value,
        (None, _) => first_line(root, file),
    };
    if let (Some((line, col)), Some(n), Some(text)) = (f.inner, node, file.text.as_deref()) {
        let lines = yaml::LineIndex::new(text);
        let (l, c) = match n.block_content {
            Some((bl, bc)) => (bl + line, bc + col),
            None if line == 0 => (n.value.line, n.value.column + col + u32::from(n.quoted)),
            None => (n.value.line + line, col + 1),
        };
        span = lines.point(l, c, f.inner_len);
    }
    Diagnostic {
        severity: f.severity,
        code: f.code,
        message: f.message.clone(),
        file: file.path.clone(),
        line: span.line,
        column: span.column,
        end_line: span.end_line,
        end_column: span.end_column,
        help: f.help.clone(),
        span,
    }
}
