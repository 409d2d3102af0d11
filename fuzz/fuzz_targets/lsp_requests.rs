//! The language server's request handling on arbitrary input: a file of any text, then every
//! request kind at positions taken from the input. Answers or errors, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lsp_types::{
    CodeActionContext, CodeActionParams, CompletionParams, GotoDefinitionParams, HoverParams, Position,
    ReferenceContext, ReferenceParams, RenameParams, TextDocumentIdentifier, TextDocumentPositionParams,
};
use provflow_lsp::{features, path_to_uri, workspace::Workspace};

fuzz_target!(|data: &[u8]| {
    // The text, then 4 bytes per position (line, character as two u16).
    let split = data.len().saturating_sub(32).min(data.len());
    let (text, positions) = data.split_at(split);
    let text = String::from_utf8_lossy(text).into_owned();
    let path = std::path::PathBuf::from("/fuzz/definitions/f.yaml");
    let Some(uri) = path_to_uri(&path) else { return };
    let mut ws = Workspace::new(Vec::new());
    ws.set(path.clone(), text.clone(), true);
    // A second file that references the first's names, the way real workspaces do.
    ws.set(std::path::PathBuf::from("/fuzz/definitions/g.yaml"), text, true);
    ws.compile();
    let doc = TextDocumentIdentifier { uri: uri.clone() };
    for chunk in positions.chunks_exact(4) {
        let line = u32::from(u16::from_le_bytes([chunk[0], chunk[1]]));
        let character = u32::from(u16::from_le_bytes([chunk[2], chunk[3]]));
        let at = TextDocumentPositionParams { text_document: doc.clone(), position: Position { line, character } };
        let _ = features::definition(&ws, GotoDefinitionParams { text_document_position_params: at.clone(), work_done_progress_params: Default::default(), partial_result_params: Default::default() });
        let _ = features::references(&ws, ReferenceParams { text_document_position: at.clone(), context: ReferenceContext { include_declaration: true }, work_done_progress_params: Default::default(), partial_result_params: Default::default() });
        let _ = features::hover(&ws, HoverParams { text_document_position_params: at.clone(), work_done_progress_params: Default::default() });
        let _ = features::completion(&ws, CompletionParams { text_document_position: at.clone(), work_done_progress_params: Default::default(), partial_result_params: Default::default(), context: None });
        let _ = features::prepare_rename(&ws, at.clone());
        let _ = features::rename(&ws, RenameParams { text_document_position: at, new_name: "Renamed".into(), work_done_progress_params: Default::default() });
    }
    let diagnostics = ws.diagnostics.values().flatten().map(|d| provflow_lsp::to_lsp(d, &provflow_lsp::text::LineMap::new(""), None)).collect();
    let _ = features::code_actions(&ws, CodeActionParams {
        text_document: doc,
        range: Default::default(),
        context: CodeActionContext { diagnostics, only: None, trigger_kind: None },
        work_done_progress_params: Default::default(),
        partial_result_params: Default::default(),
    });
});
