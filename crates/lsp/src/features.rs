//! Definition, references, hover, completion, rename and quick fixes, from the names of every
//! file ([`provflow_compiler::symbols`]).

use std::collections::HashMap;
use std::path::Path;

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionParams, CompletionItem, CompletionItemKind,
    CompletionParams, CompletionResponse, Documentation, GotoDefinitionParams, GotoDefinitionResponse, Hover,
    HoverContents, HoverParams, Location, MarkupContent, MarkupKind, PrepareRenameResponse, ReferenceParams,
    RenameParams, TextDocumentPositionParams, TextEdit, WorkspaceEdit,
};
use provflow_compiler::symbols::{Expects, Occurrence, SymbolKind};

use crate::text::LineMap;
use crate::workspace::Workspace;
use crate::{path_to_uri, uri_to_path};

/// The file and byte offset of a request's position.
fn at(ws: &Workspace, p: &TextDocumentPositionParams) -> Option<(std::path::PathBuf, usize)> {
    let path = uri_to_path(&p.text_document.uri)?;
    let file = ws.files.get(&path)?;
    let offset = LineMap::new(&file.text).offset(p.position);
    Some((path, offset))
}

fn location(ws: &Workspace, path: &Path, o: &Occurrence) -> Option<Location> {
    let file = ws.files.get(path)?;
    Some(Location { uri: path_to_uri(path)?, range: LineMap::new(&file.text).range(o.start, o.end) })
}

pub fn definition(ws: &Workspace, p: GotoDefinitionParams) -> Option<GotoDefinitionResponse> {
    let (path, offset) = at(ws, &p.text_document_position_params)?;
    let key = ws.key(ws.occurrence_at(&path, offset)?);
    let found: Vec<Location> = ws
        .occurrences_of(&key)
        .into_iter()
        .filter(|(_, o)| o.definition)
        .filter_map(|(path, o)| location(ws, path, o))
        .collect();
    (!found.is_empty()).then_some(GotoDefinitionResponse::Array(found))
}

pub fn references(ws: &Workspace, p: ReferenceParams) -> Option<Vec<Location>> {
    let (path, offset) = at(ws, &p.text_document_position)?;
    let key = ws.key(ws.occurrence_at(&path, offset)?);
    let with_definition = p.context.include_declaration;
    Some(
        ws.occurrences_of(&key)
            .into_iter()
            .filter(|(_, o)| with_definition || !o.definition)
            .filter_map(|(path, o)| location(ws, path, o))
            .collect(),
    )
}

fn markdown(value: String) -> HoverContents {
    HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value })
}

pub fn hover(ws: &Workspace, p: HoverParams) -> Option<Hover> {
    let (path, offset) = at(ws, &p.text_document_position_params)?;
    let file = ws.files.get(&path)?;
    let map = LineMap::new(&file.text);
    if let Some(o) = ws.occurrence_at(&path, offset) {
        let key = ws.key(o);
        let all = ws.occurrences_of(&key);
        let detail = all.iter().find_map(|(_, d)| d.detail.clone().filter(|_| d.definition));
        let defined = all.iter().any(|(_, d)| d.definition);
        let uses = all.iter().filter(|(_, d)| !d.definition).count();
        let text = match detail {
            Some(detail) => format!("{detail}\n\n{uses} use(s)"),
            None if defined => format!("{} `{}`: {uses} use(s)", o.kind.describe(), o.name),
            None => format!("{} `{}` is not defined", o.kind.describe(), o.name),
        };
        return Some(Hover { contents: markdown(text), range: Some(map.range(o.start, o.end)) });
    }
    // An adapter source: the field's or attribute's type and label.
    let slot = file.symbols.slots.iter().find(|s| s.start <= offset && offset <= s.end)?;
    let Expects::Source { process } = &slot.expects else { return None };
    let source = file.text.get(slot.start..slot.end)?;
    let text = source_detail(ws, process, source)?;
    Some(Hover { contents: markdown(text), range: Some(map.range(slot.start, slot.end)) })
}

fn source_detail(ws: &Workspace, process: &str, source: &str) -> Option<String> {
    let (base, name) = source.split_once('.')?;
    match base {
        "form" => {
            let field = forms(ws, process).into_iter().find(|(n, _)| n == name)?;
            Some(format!("form field `{}`: {}", field.0, field.1))
        }
        "user" => {
            let builtin = provflow_compiler::symbols::builtin_attributes();
            let attr = builtin
                .iter()
                .chain(ws.files.values().flat_map(|f| f.symbols.attributes.iter()))
                .find(|(n, _)| n == name)?;
            Some(format!("user attribute `{}`: {}", attr.0, attr.1))
        }
        _ => None,
    }
}

fn forms<'w>(ws: &'w Workspace, process: &str) -> Vec<&'w (String, String)> {
    ws.files
        .values()
        .flat_map(|f| f.symbols.forms.iter())
        .filter(|(p, _)| p == process)
        .flat_map(|(_, fields)| fields.iter())
        .collect()
}

fn item(label: String, kind: CompletionItemKind, doc: Option<String>) -> CompletionItem {
    CompletionItem {
        label,
        kind: Some(kind),
        documentation: doc
            .map(|value| Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value })),
        ..CompletionItem::default()
    }
}

pub fn completion(ws: &Workspace, p: CompletionParams) -> Option<CompletionResponse> {
    let (path, offset) = at(ws, &p.text_document_position)?;
    let file = ws.files.get(&path)?;
    let slot = file.symbols.slots.iter().find(|s| s.start <= offset && offset <= s.end)?;
    let items: Vec<CompletionItem> = match &slot.expects {
        Expects::Name(kind, scope) => {
            let scope = ws.scope_name(scope);
            let kind_of = match kind {
                SymbolKind::Task => CompletionItemKind::FUNCTION,
                SymbolKind::Query => CompletionItemKind::METHOD,
                SymbolKind::User => CompletionItemKind::VARIABLE,
                _ => CompletionItemKind::REFERENCE,
            };
            ws.definitions(*kind, &scope).into_iter().map(|d| item(d.name.clone(), kind_of, d.detail.clone())).collect()
        }
        Expects::Source { process } => {
            let mut items: Vec<CompletionItem> = forms(ws, process)
                .into_iter()
                .map(|(n, label)| item(format!("form.{n}"), CompletionItemKind::FIELD, Some(label.clone())))
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            let builtin = provflow_compiler::symbols::builtin_attributes();
            for (n, label) in builtin.iter().chain(ws.files.values().flat_map(|f| f.symbols.attributes.iter())) {
                if seen.insert(n.clone()) {
                    items.push(item(format!("user.{n}"), CompletionItemKind::PROPERTY, Some(label.clone())));
                }
            }
            items.extend(process_sources(ws, process));
            items.push(item(
                "literal:".into(),
                CompletionItemKind::CONSTANT,
                Some("a fixed value: `literal:TEXT`".into()),
            ));
            items.push(item("system.date".into(), CompletionItemKind::CONSTANT, Some("the date of the call".into())));
            items
        }
        Expects::TemplateText { event } => {
            template_completion(ws, event, file.text.get(slot.start..offset).unwrap_or(""))
        }
        Expects::Placeholder { target, query } => {
            let set = ws.scope_name(&provflow_compiler::symbols::Scope::SetOfTarget(target.clone()));
            ws.files
                .values()
                .flat_map(|f| f.symbols.query_params.iter())
                .filter(|(s, q, _)| *s == set && q == query)
                .flat_map(|(_, _, params)| params.iter())
                .filter(|(_, ty)| !ty.ends_with("(output)"))
                .map(|(n, ty)| item(n.clone(), CompletionItemKind::VARIABLE, Some(format!("`{ty}`"))))
                .collect()
        }
    };
    Some(CompletionResponse::Array(items))
}

/// Names that rename across files; the others (users, processes, events, query sets) are
/// renamed in place only by editing.
fn renamable(kind: SymbolKind) -> bool {
    matches!(kind, SymbolKind::Task | SymbolKind::Query | SymbolKind::Target | SymbolKind::Template)
}

pub fn prepare_rename(ws: &Workspace, p: TextDocumentPositionParams) -> Result<Option<PrepareRenameResponse>, String> {
    let Some((path, offset)) = at(ws, &p) else { return Ok(None) };
    let Some(o) = ws.occurrence_at(&path, offset) else { return Ok(None) };
    if !renamable(o.kind) {
        return Err(format!(
            "a {} is not renamed across files: edit its name and the compiler lists the places to change",
            o.kind.describe()
        ));
    }
    let text = ws.files.get(&path).map(|f| f.text.as_str()).unwrap_or("");
    Ok(Some(PrepareRenameResponse::Range(LineMap::new(text).range(o.start, o.end))))
}

// `WorkspaceEdit::changes` is lsp-types' `HashMap<Uri, _>`; `Uri` caches its parse inside,
// which clippy takes for a mutable key, but its hash and equality never change.
#[allow(clippy::mutable_key_type)]
pub fn rename(ws: &Workspace, p: RenameParams) -> Result<Option<WorkspaceEdit>, String> {
    let Some((path, offset)) = at(ws, &p.text_document_position) else { return Ok(None) };
    let Some(o) = ws.occurrence_at(&path, offset) else { return Ok(None) };
    if !renamable(o.kind) {
        return Err(format!("a {} is not renamed across files", o.kind.describe()));
    }
    let new = p.new_name.trim();
    if !plain_name(new) {
        return Err(format!(
            "`{new}` cannot be a name written as it is in YAML: use letters, digits, spaces, `_`, `-` and `.`, starting with a letter or `_`"
        ));
    }
    let mut changes: HashMap<lsp_types::Uri, Vec<TextEdit>> = HashMap::new();
    for (file, occurrence) in ws.occurrences_of(&ws.key(o)) {
        let (Some(uri), Some(f)) = (path_to_uri(file), ws.files.get(file)) else { continue };
        let range = LineMap::new(&f.text).range(occurrence.start, occurrence.end);
        changes.entry(uri).or_default().push(TextEdit { range, new_text: new.to_string() });
    }
    Ok(Some(WorkspaceEdit { changes: Some(changes), ..WorkspaceEdit::default() }))
}

/// A name YAML reads back as the same string when written plain: it starts with a letter or
/// `_`, holds only letters, digits, spaces, `_`, `-` and `.`, and is not a word YAML reads as
/// a boolean or null.
fn plain_name(name: &str) -> bool {
    let reserved = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"];
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
        && !reserved.contains(&name.to_ascii_lowercase().as_str())
}

/// Quick fixes: every diagnostic whose help says "did you mean `X`?" offers to write `X`
/// where the diagnostic points. When the diagnostic covers more dotted parts than `X` has
/// (`forms.username` for "did you mean `form`"), only the leading parts are replaced.
#[allow(clippy::mutable_key_type)] // see `rename`
pub fn code_actions(ws: &Workspace, p: CodeActionParams) -> Vec<CodeActionOrCommand> {
    let text = uri_to_path(&p.text_document.uri).and_then(|path| ws.files.get(&path)).map(|f| f.text.as_str());
    let mut out = Vec::new();
    for d in &p.context.diagnostics {
        let Some(suggestion) = did_you_mean(&d.message) else { continue };
        let mut range = d.range;
        if let Some(text) = text {
            let map = LineMap::new(text);
            let (start, end) = (map.offset(d.range.start), map.offset(d.range.end));
            let covered = text.get(start..end).unwrap_or("");
            let parts = suggestion.split('.').count();
            if covered.len() > 2 && covered.starts_with('{') && covered.ends_with('}') && !suggestion.starts_with('{') {
                // A placeholder: the suggestion is its name, the braces stay.
                range = lsp_types::Range { start: map.position(start + 1), end: map.position(end - 1) };
            } else if covered.split('.').count() > parts && !covered.contains('\n') {
                // The run of dotted parts closest to the suggestion is what it replaces
                // (`forms.username` for `form`; `form.usrname` for `username`).
                let segments: Vec<&str> = covered.split('.').collect();
                let windows: Vec<(usize, String)> = (0..=segments.len().saturating_sub(parts))
                    .filter_map(|i| segments.get(i..i + parts).map(|w| (i, w.join("."))))
                    .collect();
                let best =
                    provflow_compiler::suggest::did_you_mean(&suggestion, windows.iter().map(|(_, w)| w.as_str()));
                if let Some((i, w)) = windows.iter().find(|(_, w)| Some(w.as_str()) == best) {
                    let skip: usize = segments.iter().take(*i).map(|s| s.len() + 1).sum();
                    range = lsp_types::Range {
                        start: map.position(start + skip),
                        end: map.position(start + skip + w.len()),
                    };
                }
            }
        }
        let edit = TextEdit { range, new_text: suggestion.clone() };
        let changes = HashMap::from([(p.text_document.uri.clone(), vec![edit])]);
        out.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Change to `{suggestion}`"),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![d.clone()]),
            edit: Some(WorkspaceEdit { changes: Some(changes), ..WorkspaceEdit::default() }),
            is_preferred: Some(true),
            ..CodeAction::default()
        }));
    }
    out
}

/// The suggestion of a "did you mean `X`?" help.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.split("did you mean `").nth(1)?;
    let (suggestion, _) = rest.split_once('`')?;
    (!suggestion.is_empty()).then(|| suggestion.to_string())
}

/// Inside a template's text: after `{{`/`{%` (or `$` for a legacy token) the event's variables
/// and the user's attribute variables; after `Entity.` that entity's attributes. Nothing
/// outside a tag.
fn template_completion(ws: &Workspace, event: &str, before: &str) -> Vec<CompletionItem> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let typed = before.trim_end_matches(ident);
    let vars: Vec<&provflow_compiler::symbols::EventVariables> =
        ws.files.values().flat_map(|f| f.symbols.events.iter()).filter(|e| e.event == event).collect();
    let mut user_vars = provflow_compiler::symbols::builtin_attribute_variables();
    user_vars.extend(ws.files.values().flat_map(|f| f.symbols.attribute_variables.iter().cloned()));
    // `Entity.` : that entity's attributes.
    if let Some(head) = typed.strip_suffix('.') {
        let entity = &head[head.trim_end_matches(ident).len()..];
        let Some(kind) = vars.iter().flat_map(|e| e.entities.iter()).find(|(v, _)| v == entity).map(|(_, k)| k.clone())
        else {
            return Vec::new();
        };
        let attributes: Vec<String> = if kind == "User" {
            user_vars
        } else {
            provflow_compiler::symbols::entity_attributes(&kind).into_iter().map(str::to_string).collect()
        };
        return attributes
            .into_iter()
            .map(|a| item(a, CompletionItemKind::FIELD, Some(format!("an attribute of `{entity}` ({kind})"))))
            .collect();
    }
    let in_tag = {
        let open = typed.rfind("{{").max(typed.rfind("{%"));
        let close = typed.rfind("}}").max(typed.rfind("%}"));
        open.is_some() && open > close
    };
    let token = typed.ends_with('$');
    if !in_tag && !token {
        return Vec::new();
    }
    let mut items = Vec::new();
    if in_tag {
        for e in &vars {
            for (v, kind) in &e.entities {
                items.push(item(
                    v.clone(),
                    CompletionItemKind::STRUCT,
                    Some(format!("entity ({kind}) of event `{event}`")),
                ));
            }
            for (v, ty) in &e.provides {
                items.push(item(
                    v.clone(),
                    CompletionItemKind::VARIABLE,
                    Some(format!("`{ty}`, from the event's resolver")),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in user_vars {
        if seen.insert(v.clone()) {
            items.push(item(v, CompletionItemKind::PROPERTY, Some("an attribute of the notified user".into())));
        }
    }
    items
}

/// `target.<property>`, `tasks.<task>.outputs.<name>` and `child.<field>` for a process's
/// adapters.
fn process_sources(ws: &Workspace, process: &str) -> Vec<CompletionItem> {
    let mut items = Vec::new();
    let all = || ws.files.values().map(|f| &f.symbols);
    let Some(p) = all().flat_map(|s| s.processes.iter()).find(|p| p.process == process) else { return items };
    for (_, properties) in all().flat_map(|s| s.target_properties.iter()).filter(|(t, _)| *t == p.target) {
        for property in properties {
            items.push(item(
                format!("target.{property}"),
                CompletionItemKind::PROPERTY,
                Some(format!("a property of target `{}`", p.target)),
            ));
        }
    }
    let set = ws.scope_name(&provflow_compiler::symbols::Scope::SetOfTarget(p.target.clone()));
    for (task, query) in &p.task_queries {
        let outputs = all()
            .flat_map(|s| s.query_params.iter())
            .filter(|(s, q, _)| *s == set && q == query)
            .flat_map(|(_, _, params)| params.iter())
            .filter_map(|(n, ty)| ty.strip_suffix(" (output)").map(|ty| (n, ty)));
        for (name, ty) in outputs {
            items.push(item(
                format!("tasks.{task}.outputs.{name}"),
                CompletionItemKind::VALUE,
                Some(format!("`{ty}`, an output of `{query}` after task `{task}` ran")),
            ));
        }
    }
    for field in &p.child_fields {
        items.push(item(
            format!("child.{field}"),
            CompletionItemKind::FIELD,
            Some("a field of the child-table row (child-table tasks)".into()),
        ));
    }
    items
}
