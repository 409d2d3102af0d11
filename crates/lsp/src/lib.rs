//! `provflow lsp`: a language server over stdio built on the compiler.
//!
//! - [`workspace`]: the definition files (the editor's text for open files, the disk's for the
//!   rest), each file's names, and the compiler's diagnostics for the whole bundle.
//! - [`features`]: what the editor asks for — definition, references, hover, completion,
//!   rename, quick fixes — answered from the names of every file.
//! - This file: the protocol loop. Changes are taken in as they come; when no message is
//!   waiting, the workspace is compiled once and the diagnostics that changed published, so a
//!   burst of keystrokes costs one compile. A request that fails answers with an error and the
//!   server goes on; a panic in a handler is caught and answered the same way.
#![forbid(unsafe_code)]

pub mod features;
pub mod text;
pub mod workspace;

use std::path::PathBuf;
use std::str::FromStr;

use crossbeam_channel::TryRecvError;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{self as notif, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, DiagnosticSeverity, HoverProviderCapability, InitializeParams,
    NumberOrString, OneOf, PublishDiagnosticsParams, RenameOptions, ServerCapabilities, TextDocumentSyncCapability,
    TextDocumentSyncKind, Uri,
};

use text::LineMap;
use workspace::Workspace;

/// Runs the server on stdin/stdout until the client says `exit`.
pub fn run_stdio() -> Result<(), String> {
    let (connection, threads) = Connection::stdio();
    serve(&connection)?;
    drop(connection);
    threads.join().map_err(|e| format!("the stdio threads failed: {e}"))
}

/// The server on any connection (tests use an in-memory one).
pub fn serve(connection: &Connection) -> Result<(), String> {
    let (id, params) = connection.initialize_start().map_err(|e| format!("initialize: {e}"))?;
    let init: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "[".into(), " ".into()]),
            ..CompletionOptions::default()
        }),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..ServerCapabilities::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": { "name": "provflow", "version": env!("CARGO_PKG_VERSION") },
    });
    connection.initialize_finish(id, result).map_err(|e| format!("initialize: {e}"))?;

    let mut server = Server { ws: Workspace::new(folders(&init)), docs: docs_url(&init) };
    let mut dirty = true;
    loop {
        let message = if dirty {
            match connection.receiver.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    server.publish(connection);
                    dirty = false;
                    continue;
                }
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        } else {
            match connection.receiver.recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        };
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request).unwrap_or(true) {
                    return Ok(());
                }
                // Answers reflect the text as the editor has it: compile first if needed.
                let response = server.answer(request);
                let _ = connection.sender.send(Message::Response(response));
            }
            Message::Notification(n) => {
                if n.method == notif::Exit::METHOD {
                    return Ok(());
                }
                dirty |= server.take(n);
            }
            Message::Response(_) => {}
        }
    }
}

struct Server {
    ws: Workspace,
    /// Where `docs/diagnostics.md` is, for the codes' links.
    docs: Option<String>,
}

fn folders(init: &InitializeParams) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = init.workspace_folders.iter().flatten().filter_map(|f| uri_to_path(&f.uri)).collect();
    #[allow(deprecated)]
    if out.is_empty() {
        out.extend(init.root_uri.as_ref().and_then(uri_to_path));
    }
    out
}

fn docs_url(init: &InitializeParams) -> Option<String> {
    let root = folders(init).into_iter().next()?;
    let docs = root.join("docs").join("diagnostics.md");
    docs.is_file().then(|| path_to_uri(&docs)).flatten().map(|u| u.as_str().to_string())
}

pub fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    url::Url::parse(uri.as_str()).ok()?.to_file_path().ok()
}

pub fn path_to_uri(path: &std::path::Path) -> Option<Uri> {
    let url = url::Url::from_file_path(path).ok()?;
    Uri::from_str(url.as_str()).ok()
}

impl Server {
    /// Takes in a notification; whether the text changed.
    fn take(&mut self, n: Notification) -> bool {
        match n.method.as_str() {
            notif::DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params) else {
                    return false;
                };
                let Some(path) = uri_to_path(&p.text_document.uri) else { return false };
                // A YAML file outside the definitions (a CI workflow, a compose file) is not part
                // of the bundle: it gets no provflow diagnostics.
                if !self.ws.is_definition(&path) {
                    return false;
                }
                self.ws.set(path, p.text_document.text, true);
                true
            }
            notif::DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params) else {
                    return false;
                };
                let Some(path) = uri_to_path(&p.text_document.uri) else { return false };
                if !self.ws.is_definition(&path) || p.content_changes.is_empty() {
                    return false;
                }
                // Incremental sync: each change applies to the text the ones before it left.
                let mut text = self.ws.files.get(&path).map(|f| f.text.clone()).unwrap_or_default();
                for change in &p.content_changes {
                    text::apply_change(&mut text, change.range, &change.text);
                }
                self.ws.set(path, text, true);
                true
            }
            notif::DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params) else {
                    return false;
                };
                let Some(path) = uri_to_path(&p.text_document.uri) else { return false };
                self.ws.close(&path);
                true
            }
            notif::DidSaveTextDocument::METHOD => {
                // A saved definition is already known by its text; a saved install script (or
                // any other file) may change what the query sets read from disk.
                let Ok(p) = serde_json::from_value::<lsp_types::DidSaveTextDocumentParams>(n.params) else {
                    return false;
                };
                if uri_to_path(&p.text_document.uri).is_some_and(|path| self.ws.is_definition(&path)) {
                    return false;
                }
                self.ws.reload_from_disk();
                true
            }
            notif::DidChangeWatchedFiles::METHOD => {
                self.ws.reload_from_disk();
                true
            }
            _ => false,
        }
    }

    fn answer(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        let method = request.method.clone();
        let ws = &self.ws;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(ws, request)));
        match outcome {
            Ok(Ok(value)) => Response::new_ok(id, value),
            Ok(Err(message)) => error(id, ErrorCode::InvalidParams, message),
            Err(_) => error(
                id,
                ErrorCode::InternalError,
                format!("provflow lsp could not answer `{method}`; the server goes on"),
            ),
        }
    }

    /// Compiles and publishes the diagnostics of every file whose diagnostics changed (or whose
    /// text did, while it has some), and clears those of files that have none left.
    fn publish(&mut self, connection: &Connection) {
        let t0 = std::time::Instant::now();
        let ws = &mut self.ws;
        let Ok(compiled) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ws.compile())) else {
            // The compiler never panics by design; if it does, the last diagnostics stay and
            // the server goes on (the panic message went to stderr, the client's log).
            return;
        };
        let t1 = std::time::Instant::now();
        // Only what changed goes out: a file whose diagnostics and text are as last published
        // is not sent again (an error in a target can flag a thousand files; a keystroke
        // elsewhere must not send them all again). A file loaded again has a new text, so its
        // diagnostics' positions may have moved even when they compare equal.
        for (path, diagnostics) in &self.ws.diagnostics {
            if compiled.reloaded.contains(path) || compiled.before.get(path) != Some(diagnostics) {
                self.send(connection, path, diagnostics);
            }
        }
        for path in compiled.before.keys() {
            if !self.ws.diagnostics.contains_key(path) {
                self.send(connection, path, &[]);
            }
        }
        // Phase timings on stderr (the client's log) when PROVFLOW_TIMINGS is set, as `compile`.
        if std::env::var_os("PROVFLOW_TIMINGS").is_some() {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            eprintln!("timing: lsp compile: {:.1} ms, publish: {:.1} ms", ms(t1 - t0), ms(t1.elapsed()));
        }
    }

    fn send(
        &self,
        connection: &Connection,
        path: &std::path::Path,
        diagnostics: &[provflow_compiler::diagnostic::Diagnostic],
    ) {
        let Some(uri) = path_to_uri(path) else { return };
        let text = self.ws.files.get(path).map(|f| f.text.as_str()).unwrap_or("");
        let map = LineMap::new(text);
        let diagnostics = diagnostics.iter().map(|d| to_lsp(d, &map, self.docs.as_deref())).collect();
        let params = PublishDiagnosticsParams { uri, diagnostics, version: None };
        let Ok(params) = serde_json::to_value(params) else { return };
        let _ = connection
            .sender
            .send(Message::Notification(Notification { method: notif::PublishDiagnostics::METHOD.into(), params }));
    }
}

fn error(id: RequestId, code: ErrorCode, message: String) -> Response {
    Response::new_err(id, code as i32, message)
}

/// A compiler diagnostic as the editor shows it: the code links to its section of
/// docs/diagnostics.md, and the help follows the message.
pub fn to_lsp(
    d: &provflow_compiler::diagnostic::Diagnostic,
    map: &LineMap<'_>,
    docs: Option<&str>,
) -> lsp_types::Diagnostic {
    let (start, end) = (d.span.start, d.span.end.max(d.span.start));
    let range = map.range(start, end);
    let message = match &d.help {
        Some(help) => format!("{}\nhelp: {help}", d.message),
        None => d.message.clone(),
    };
    let href = docs.and_then(|base| Uri::from_str(&format!("{base}#{}", d.code.to_lowercase())).ok());
    lsp_types::Diagnostic {
        range,
        severity: Some(if d.is_error() { DiagnosticSeverity::ERROR } else { DiagnosticSeverity::WARNING }),
        code: Some(NumberOrString::String(d.code.to_string())),
        code_description: href.map(|href| lsp_types::CodeDescription { href }),
        source: Some("provflow".into()),
        message,
        ..lsp_types::Diagnostic::default()
    }
}

fn dispatch(ws: &Workspace, request: Request) -> Result<serde_json::Value, String> {
    let params = request.params;
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
    match request.method.as_str() {
        req::GotoDefinition::METHOD => json(serde_json::to_value(features::definition(ws, parse(params)?))),
        req::References::METHOD => json(serde_json::to_value(features::references(ws, parse(params)?))),
        req::HoverRequest::METHOD => json(serde_json::to_value(features::hover(ws, parse(params)?))),
        req::Completion::METHOD => json(serde_json::to_value(features::completion(ws, parse(params)?))),
        req::PrepareRenameRequest::METHOD => json(serde_json::to_value(features::prepare_rename(ws, parse(params)?)?)),
        req::Rename::METHOD => json(serde_json::to_value(features::rename(ws, parse(params)?)?)),
        req::CodeActionRequest::METHOD => json(serde_json::to_value(features::code_actions(ws, parse(params)?))),
        other => Err(format!("provflow lsp does not handle `{other}`")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(params: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(params).map_err(|e| format!("invalid parameters: {e}"))
}
