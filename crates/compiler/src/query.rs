//! Query text: placeholders, segments, calls, and the bodies of emulated procedures.
//!
//! The query language is the legacy one of `provision.queries`: SQL text with `{NAME}`
//! placeholders. This module knows that syntax and nothing about YAML: positions are 0-based
//! character offsets into the query string, which a pass turns into a diagnostic position with
//! [`line_col`] and `Finding::at_inner`. Used by the `ConnectorQueries` pass and by the
//! notification resolver pass.
//!
//! Placeholders are a layer above SQL: `{NAME}` is a placeholder wherever it stands, inside a
//! quoted string or a comment too (where [`quoted_placeholders`] finds it, because a bind
//! parameter is not replaced there), so [`split`] reads braces only. Everything that depends on
//! SQL's quotes and comments (calls, statements, binds) goes through the dialect's lexer,
//! [`provflow_lex::sql`].

use indexmap::IndexMap;
use provflow_ir as ir;
use provflow_lex::sql::{self, Lexer, Token, TokenKind};
use std::collections::HashMap;

use crate::syntax::{ParamSpec, Tag, TypeName};

/// A piece of query text: literal SQL, or a `{NAME}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// SQL text with `{{`/`}}` already turned into single braces.
    Text(String),
    /// `{name}`: `offset` is the character offset of the `{`, `len` counts both braces.
    Placeholder { name: String, offset: usize, len: usize },
}

/// Why query text cannot be split into text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuerySyntaxError {
    /// A `{` with no `}` on the same line.
    Unclosed { offset: usize },
    /// `{}`.
    Empty { offset: usize },
    /// `{...}` whose content is not a name (`[A-Za-z_][A-Za-z0-9_]*`); `len` counts the braces.
    BadName { offset: usize, len: usize, content: String },
    /// A single `}` that closes nothing (a literal brace is written `}}`).
    UnmatchedClose { offset: usize },
    /// A NUL character: no database takes it in SQL text, and drivers disagree on where it ends.
    Nul { offset: usize },
}

impl QuerySyntaxError {
    /// The character offset of the problem in the query string.
    pub fn offset(&self) -> usize {
        match self {
            QuerySyntaxError::Unclosed { offset }
            | QuerySyntaxError::Empty { offset }
            | QuerySyntaxError::BadName { offset, .. }
            | QuerySyntaxError::UnmatchedClose { offset }
            | QuerySyntaxError::Nul { offset } => *offset,
        }
    }

    /// The length in characters of the offending text (at least 1).
    // Never empty, so an `is_empty` would only mislead.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self {
            QuerySyntaxError::Empty { .. } => 2,
            QuerySyntaxError::BadName { len, .. } => (*len).max(1),
            _ => 1,
        }
    }

    /// How to fix it, in the words of the definition language.
    pub fn help(&self) -> String {
        match self {
            QuerySyntaxError::Unclosed { .. } => {
                "close the placeholder with `}`, or write `{{` for a literal brace".to_string()
            }
            QuerySyntaxError::Empty { .. } => {
                "write a parameter name between the braces, or `{{}}` for literal braces".to_string()
            }
            QuerySyntaxError::BadName { content, .. } => {
                let trimmed = content.trim();
                if is_name(trimmed) {
                    format!("write `{{{trimmed}}}` without spaces")
                } else {
                    "a placeholder name is a letter or `_` followed by letters, digits or `_`; write `{{` and `}}` \
                     for literal braces"
                        .to_string()
                }
            }
            QuerySyntaxError::UnmatchedClose { .. } => "write `}}` for a literal brace".to_string(),
            QuerySyntaxError::Nul { .. } => "remove the NUL character (`\\0`) from the query".to_string(),
        }
    }
}

impl std::fmt::Display for QuerySyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuerySyntaxError::Unclosed { .. } => write!(f, "unclosed `{{` in query"),
            QuerySyntaxError::Empty { .. } => write!(f, "empty placeholder `{{}}` in query"),
            QuerySyntaxError::BadName { content, .. } => write!(f, "`{{{content}}}` is not a placeholder name"),
            QuerySyntaxError::UnmatchedClose { .. } => write!(f, "unmatched `}}` in query"),
            QuerySyntaxError::Nul { .. } => write!(f, "query contains a NUL character"),
        }
    }
}

impl std::error::Error for QuerySyntaxError {}

/// Whether `s` is a placeholder (or bind) name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits legacy query text at its `{NAME}` placeholders. `{{` and `}}` are literal braces.
/// Adjacent text is merged, so text and placeholders alternate.
pub fn split(sql: &str) -> Result<Vec<Piece>, QuerySyntaxError> {
    let chars: Vec<char> = sql.chars().collect();
    if let Some(offset) = chars.iter().position(|&c| c == '\0') {
        return Err(QuerySyntaxError::Nul { offset });
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        match c {
            '{' if next == Some('{') => {
                text.push('{');
                i += 2;
            }
            '}' if next == Some('}') => {
                text.push('}');
                i += 2;
            }
            '}' => return Err(QuerySyntaxError::UnmatchedClose { offset: i }),
            '{' => {
                // A placeholder never spans lines or nests: stop there so that the error points
                // at the brace that was left open, not at some later one.
                let inner = chars.get(i + 1..).unwrap_or_default();
                let Some(width) =
                    inner.iter().position(|&c| matches!(c, '}' | '{' | '\n')).filter(|&w| inner.get(w) == Some(&'}'))
                else {
                    return Err(QuerySyntaxError::Unclosed { offset: i });
                };
                let content: String = inner.iter().take(width).collect();
                let len = width + 2;
                if content.is_empty() {
                    return Err(QuerySyntaxError::Empty { offset: i });
                }
                if !is_name(&content) {
                    return Err(QuerySyntaxError::BadName { offset: i, len, content });
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Placeholder { name: content, offset: i, len });
                i += len;
            }
            _ => {
                text.push(c);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The 0-based line and character column of a character offset in `text`, for
/// `Finding::at_inner` on multi-line strings.
pub fn line_col(text: &str, char_offset: usize) -> (u32, u32) {
    let mut line = 0u32;
    let mut col = 0u32;
    for c in text.chars().take(char_offset) {
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// A `call` recognised in query text, with character offsets for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpans {
    /// The procedure name as written (`name` or `schema.name`).
    pub procedure: String,
    /// Character offset of the procedure name.
    pub procedure_offset: usize,
    /// Each argument's text, trimmed, with the character offset of its first character.
    pub args: Vec<(String, usize)>,
}

/// Recognises `call name(args...)` / `CALL schema.name(...)`: case-insensitive keyword,
/// whitespace tolerant, an optional trailing `;`. Arguments are split at top-level commas,
/// outside the dialect's quotes, comments and parentheses; they keep their `{placeholders}`.
/// `None` when the text is not exactly one such call.
pub fn parse_call(sql: &str, dialect: ir::Dialect) -> Option<(String, Vec<String>)> {
    parse_call_spans(sql, dialect).map(|c| (c.procedure, c.args.into_iter().map(|(a, _)| a).collect()))
}

/// [`parse_call`] with the positions of the name and of every argument.
pub fn parse_call_spans(sql: &str, dialect: ir::Dialect) -> Option<CallSpans> {
    let CharTokens { tokens, unclosed } = lex_chars(sql, dialect);
    if unclosed.is_some() {
        return None;
    }
    let kind = |k: usize| tokens.get(k).map(|(t, _)| t.kind);
    let skip_ws = |mut k: usize| {
        while kind(k) == Some(TokenKind::Whitespace) {
            k += 1;
        }
        k
    };
    let mut k = skip_ws(0);
    let (call, _) = tokens.get(k)?;
    if !call.is_word("call") || kind(k + 1) != Some(TokenKind::Whitespace) {
        return None;
    }
    k = skip_ws(k + 1);
    let (first, procedure_offset) = *tokens.get(k)?;
    // The name: dot-separated parts, each a word or a quoted identifier.
    let mut name_end;
    loop {
        let (part, _) = tokens.get(k)?;
        let quoted_empty = part.kind == TokenKind::QuotedIdent && part.text.chars().count() <= 2;
        if !matches!(part.kind, TokenKind::Word | TokenKind::QuotedIdent) || quoted_empty {
            return None;
        }
        name_end = part.end();
        k += 1;
        if !tokens.get(k).is_some_and(|(t, _)| t.is_punct('.')) {
            break;
        }
        k += 1;
    }
    let procedure = sql.get(first.offset..name_end)?.to_string();
    k = skip_ws(k);
    let mut args = Vec::new();
    if tokens.get(k).is_some_and(|(t, _)| t.is_punct('(')) {
        let close = top_level_args(sql, &tokens, k + 1, &mut args)?;
        k = skip_ws(close + 1);
    }
    if kind(k) == Some(TokenKind::Semicolon) {
        k = skip_ws(k + 1);
    }
    (k == tokens.len()).then_some(CallSpans { procedure, procedure_offset, args })
}

/// A call argument in named notation, `name => value` (and PostgreSQL's older
/// `name := value`): the name (unquoted names folded to lower case on PostgreSQL, as the
/// server does) and the value's text; a positional argument is `(None, text)`.
pub fn named_argument(arg: &str, dialect: ir::Dialect) -> (Option<String>, &str) {
    let CharTokens { tokens, .. } = lex_chars(arg, dialect);
    let mut significant = tokens.iter().filter(|(t, _)| t.kind != TokenKind::Whitespace);
    let (Some((name, _)), Some((a, _)), Some((b, _))) = (significant.next(), significant.next(), significant.next())
    else {
        return (None, arg);
    };
    let arrow = (a.is_punct('=') && b.is_punct('>')) || (a.is_punct(':') && b.is_punct('='));
    if !arrow || !matches!(name.kind, TokenKind::Word | TokenKind::QuotedIdent) {
        return (None, arg);
    }
    let value = arg.get(b.end()..).unwrap_or("").trim();
    let name = match name.kind {
        TokenKind::QuotedIdent => name.text.trim_matches(['"', '`']).to_string(),
        _ if dialect == ir::Dialect::Postgres => name.text.to_lowercase(),
        _ => name.text.to_string(),
    };
    (Some(name), value)
}

/// Whether query text starts with the `call` keyword (so a failed [`parse_call`] is a
/// malformed call rather than some other statement).
pub fn looks_like_call(sql: &str) -> bool {
    let text = sql.trim_start();
    text.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("call"))
        && text.get(4..).and_then(|rest| rest.chars().next()).is_some_and(char::is_whitespace)
}

/// Reads arguments from the token just after `(` to the matching `)`; returns the index of
/// that `)`.
fn top_level_args(
    sql: &str,
    tokens: &[(Token<'_>, usize)],
    start: usize,
    args: &mut Vec<(String, usize)>,
) -> Option<usize> {
    // Each argument: its text trimmed, at the character offset of its first character.
    let push = |from: usize, to: usize, args: &mut Vec<(String, usize)>| -> Option<()> {
        let (first, chars) = tokens.get(from)?;
        let (end, _) = tokens.get(to)?;
        let raw = sql.get(first.offset..end.offset)?;
        let text = raw.trim();
        if text.is_empty() {
            return None;
        }
        args.push((text.to_owned(), chars + raw.chars().take_while(|c| c.is_whitespace()).count()));
        Some(())
    };
    let mut depth = 0usize;
    let mut arg_start = start;
    for (k, (t, _)) in tokens.iter().enumerate().skip(start) {
        if t.is_punct('(') {
            depth += 1;
        } else if t.is_punct(')') && depth == 0 {
            let empty = tokens.get(start..k).unwrap_or_default().iter().all(|(t, _)| t.kind == TokenKind::Whitespace);
            if !(empty && args.is_empty()) {
                push(arg_start, k, args)?;
            }
            return Some(k);
        } else if t.is_punct(')') {
            depth -= 1;
        } else if t.is_punct(',') && depth == 0 {
            push(arg_start, k, args)?;
            arg_start = k + 1;
        }
    }
    None
}

/// The IR value type of a source type name.
pub fn value_type(t: TypeName) -> ir::ValueType {
    match t {
        TypeName::String => ir::ValueType::String,
        TypeName::GuardedString => ir::ValueType::GuardedString,
        TypeName::Long => ir::ValueType::Long,
        TypeName::Integer => ir::ValueType::Integer,
        TypeName::Double => ir::ValueType::Double,
        TypeName::Boolean => ir::ValueType::Boolean,
        TypeName::Date => ir::ValueType::Date,
        TypeName::Timestamp => ir::ValueType::Timestamp,
    }
}

/// The IR quoting of a tag (no tag: [`ir::Quoting::Bind`]).
pub fn quoting(tag: Option<Tag>) -> ir::Quoting {
    match tag {
        None => ir::Quoting::Bind,
        Some(Tag::Identifier) => ir::Quoting::Identifier,
        Some(Tag::DoubleQuotes) => ir::Quoting::DoubleQuotes,
        Some(Tag::Quotes) => ir::Quoting::Quotes,
    }
}

/// A query's parameters and segments, lowered for the IR.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoweredParams {
    /// `params` in declaration order, then the `outputs` that are not also params.
    pub params: Vec<ir::QueryParam>,
    pub segments: Vec<ir::Segment>,
}

impl LoweredParams {
    /// The index of a parameter by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Name → index of every parameter, for lookups in a loop.
    pub fn indices(&self) -> HashMap<&str, usize> {
        self.params.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect()
    }
}

/// Where a parameter was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Under `params`.
    Param,
    /// Under `outputs`.
    Output,
}

/// A problem found while lowering parameters. Callers turn these into findings with their own
/// codes and pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamProblem {
    /// A placeholder names no parameter or output (position of the whole `{NAME}`).
    Undeclared { name: String, offset: usize, len: usize },
    /// A declared parameter or output that no placeholder uses.
    Unused { name: String, declared: Declared },
    /// A name in both `params` and `outputs` (INOUT) with different types.
    InOutTypeMismatch { name: String, param: ir::ValueType, output: ir::ValueType },
    /// An INOUT parameter with a tag: an inlined value cannot receive an OUT value.
    InOutTagged { name: String },
    /// `IDENTIFIER` on a `GuardedString`: a secret is never an identifier. `tag_index` is the
    /// position in `tags`.
    SecretIdentifier { name: String, tag_index: usize },
    /// More than one tag.
    SeveralTags { name: String },
}

/// Builds the IR parameters and segments of split query text.
///
/// A name only in `params` is IN, only in `outputs` OUT, in both INOUT. Untagged parameters
/// become [`ir::Segment::Bind`], tagged ones [`ir::Segment::Inline`], pure OUT slots
/// [`ir::Segment::Out`]. Undeclared placeholders produce no segment (and a problem).
pub fn lower_params(
    pieces: &[Piece],
    params: &IndexMap<String, ParamSpec>,
    outputs: &IndexMap<String, TypeName>,
) -> (LoweredParams, Vec<ParamProblem>) {
    let mut problems = Vec::new();
    let mut lowered = LoweredParams::default();
    for (name, spec) in params {
        let tags = spec.tags();
        if tags.len() > 1 {
            problems.push(ParamProblem::SeveralTags { name: name.clone() });
        }
        let ty = value_type(spec.ty());
        if ty.is_secret() {
            if let Some(tag_index) = tags.iter().position(|t| *t == Tag::Identifier) {
                problems.push(ParamProblem::SecretIdentifier { name: name.clone(), tag_index });
            }
        }
        let mode = match outputs.get(name) {
            None => ir::ParamMode::In,
            Some(out_ty) => {
                let output = value_type(*out_ty);
                if output != ty {
                    problems.push(ParamProblem::InOutTypeMismatch { name: name.clone(), param: ty, output });
                }
                if !tags.is_empty() {
                    problems.push(ParamProblem::InOutTagged { name: name.clone() });
                }
                ir::ParamMode::InOut
            }
        };
        lowered.params.push(ir::QueryParam { name: name.clone(), ty, mode, quoting: quoting(tags.first().copied()) });
    }
    for (name, ty) in outputs {
        if !params.contains_key(name) {
            lowered.params.push(ir::QueryParam {
                name: name.clone(),
                ty: value_type(*ty),
                mode: ir::ParamMode::Out,
                quoting: ir::Quoting::Bind,
            });
        }
    }

    let mut used = vec![false; lowered.params.len()];
    let indices: HashMap<String, usize> = lowered.params.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
    for piece in pieces {
        match piece {
            Piece::Text(t) => lowered.segments.push(ir::Segment::Text(t.clone())),
            Piece::Placeholder { name, offset, len } => match indices.get(name).copied() {
                Some(i) => {
                    if let Some(u) = used.get_mut(i) {
                        *u = true;
                    }
                    let segment = match lowered.params.get(i) {
                        Some(p) if p.mode == ir::ParamMode::Out => ir::Segment::Out(i),
                        Some(p) if p.quoting != ir::Quoting::Bind => ir::Segment::Inline(i),
                        _ => ir::Segment::Bind(i),
                    };
                    lowered.segments.push(segment);
                }
                None => {
                    problems.push(ParamProblem::Undeclared { name: name.clone(), offset: *offset, len: *len });
                }
            },
        }
    }
    for (p, used) in lowered.params.iter().zip(&used) {
        if !used {
            let declared = if params.contains_key(&p.name) { Declared::Param } else { Declared::Output };
            problems.push(ParamProblem::Unused { name: p.name.clone(), declared });
        }
    }
    (lowered, problems)
}

/// The tokens of a text, each with the character offset of its first character.
struct CharTokens<'a> {
    tokens: Vec<(Token<'a>, usize)>,
    /// The character offset of a quote or comment that is never closed: the tokens stop there
    /// and the rest of the text is inside it.
    unclosed: Option<usize>,
}

fn lex_chars(text: &str, dialect: ir::Dialect) -> CharTokens<'_> {
    let mut tokens = Vec::new();
    let mut chars = 0;
    for token in Lexer::new(text, dialect) {
        match token {
            Ok(t) => {
                tokens.push((t, chars));
                chars += t.text.chars().count();
            }
            Err(_) => return CharTokens { tokens, unclosed: Some(chars) },
        }
    }
    CharTokens { tokens, unclosed: None }
}

/// Splits the body of an emulated (sqlite) procedure into its statements (see
/// [`provflow_lex::sql::split`]: quotes, comments, trigger bodies). Each statement is the text
/// after the previous `;`, comments before it included, trimmed; statements with nothing but
/// whitespace and comments are dropped. A body with an unclosed quote or comment
/// ([`unterminated`]) has none.
pub fn split_statements(body: &str) -> Vec<String> {
    let Ok(statements) = sql::split(body, ir::Dialect::Sqlite) else { return Vec::new() };
    statements
        .into_iter()
        .map(|s| body.get(s.leading..s.offset + s.text.len()).unwrap_or(s.text).trim().to_owned())
        .collect()
}

/// The `:name` binds of a statement outside quotes and comments, distinct, in order of first
/// appearance (`::` casts are not binds).
pub fn named_binds(stmt: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in bind_positions(stmt) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Every `:name` bind of an emulated (sqlite) procedure body outside quotes and comments, with
/// the character offset of its `:`. A `:` right after a word, a number or another `:` is not
/// a bind (`a:b`, `x::text`); the name is the ASCII letters, digits and `_` after the `:`.
pub fn bind_positions(text: &str) -> Vec<(String, usize)> {
    let tokens = lex_chars(text, ir::Dialect::Sqlite).tokens;
    let mut out = Vec::new();
    let mut previous: Option<char> = None;
    for (t, chars) in &tokens {
        let after_word = previous.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ':');
        if t.kind == TokenKind::Parameter && !after_word {
            if let Some(name) = t.text.strip_prefix(':') {
                let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    out.push((name, *chars));
                }
            }
        }
        previous = t.text.chars().next_back();
    }
    out
}

/// The placeholders of query text that sit inside a quoted string, a quoted identifier or a
/// comment of the dialect, where a bind parameter is not replaced (legacy queries wrote
/// `'{NAME}'` because their values were pasted in as text). After an unclosed quote or
/// comment, every placeholder is inside it.
pub fn quoted_placeholders(sql: &str, dialect: ir::Dialect) -> Vec<(String, usize, usize)> {
    let Ok(pieces) = split(sql) else { return Vec::new() };
    let CharTokens { tokens, unclosed } = lex_chars(sql, dialect);
    let unclosed_from = unclosed.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    // Placeholders come in order: the token holding each is found by walking forward.
    let mut k = 0;
    for piece in pieces {
        let Piece::Placeholder { name, offset, len } = piece else { continue };
        while tokens.get(k + 1).is_some_and(|(_, chars)| *chars <= offset) {
            k += 1;
        }
        let quoted = offset >= unclosed_from
            || tokens.get(k).is_some_and(|(t, chars)| *chars <= offset && t.kind.is_quoted_or_comment());
        if quoted {
            out.push((name, offset, len));
        }
    }
    out
}

/// Where a placeholder stands in its statement, for the checks of what the server accepts
/// there (PF316, PF317).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub name: String,
    pub offset: usize,
    pub len: usize,
    /// The statement takes no bind parameters on the dialect: its leading keywords
    /// (`DROP`, `CREATE`, `GRANT`, `SET PASSWORD`, …).
    pub no_binds: Option<String>,
    /// The placeholder stands where the statement needs a value, not a name: why (`a call
    /// argument`, `a comparison`, `a VALUES list`, `a password`).
    pub value: Option<&'static str>,
}

/// The statements that take no bind parameters, by leading keyword: utility statements on
/// PostgreSQL (only SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES and CALL take `$n`),
/// and the DDL and account statements MariaDB prepares without `?` (a `?` only stands for a
/// data value there). SQLite is the same for DDL.
const NO_BINDS: [&str; 10] =
    ["create", "alter", "drop", "grant", "revoke", "rename", "truncate", "comment", "do", "reassign"];

/// Every placeholder outside quotes and comments, with its [`Placement`]. One pass over the
/// tokens: linear in the text, whatever it holds.
pub fn placements(sql: &str, dialect: ir::Dialect) -> Vec<Placement> {
    let Ok(pieces) = split(sql) else { return Vec::new() };
    let CharTokens { tokens, unclosed } = lex_chars(sql, dialect);
    if unclosed.is_some() {
        return Vec::new();
    }
    let significant =
        |t: &Token<'_>| !matches!(t.kind, TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment);
    let lower = |t: &Token<'_>| t.text.to_ascii_lowercase();
    let mut leading = tokens.iter().map(|(t, _)| t).filter(|t| significant(t));
    let first = leading.next().filter(|t| t.kind == TokenKind::Word).map(lower);
    let second = leading.next().filter(|t| t.kind == TokenKind::Word).map(lower);
    let no_binds = match (first.as_deref(), second.as_deref()) {
        (Some("set"), Some(w @ ("password" | "role" | "session"))) => Some(format!("SET {}", w.to_uppercase())),
        (Some(w), _) if NO_BINDS.contains(&w) => Some(w.to_uppercase()),
        _ => None,
    };
    let call_args: std::collections::HashSet<(usize, usize)> = parse_call_spans(sql, dialect)
        .map(|c| c.args.iter().map(|(text, at)| (*at, text.chars().count())).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    // Tokens before `next` are taken in: the last two significant ones, and for each open
    // parenthesis whether it opens a `VALUES` list.
    let (mut next, mut at) = (0usize, 0usize);
    let (mut prev, mut prev2) = (String::new(), String::new());
    let mut parens: Vec<bool> = Vec::new();
    for piece in pieces {
        let Piece::Placeholder { name, offset, len } = piece else { continue };
        while tokens.get(at + 1).is_some_and(|(_, chars)| *chars <= offset) {
            at += 1;
        }
        while next < at {
            if let Some((t, _)) = tokens.get(next).filter(|(t, _)| significant(t)) {
                if t.is_punct('(') {
                    parens.push(prev == "values");
                } else if t.is_punct(')') {
                    parens.pop();
                }
                prev2 = std::mem::replace(&mut prev, lower(t));
            }
            next += 1;
        }
        if tokens.get(at).is_some_and(|(t, chars)| *chars <= offset && t.kind.is_quoted_or_comment()) {
            continue;
        }
        let value = if call_args.contains(&(offset, len)) {
            Some("a call argument")
        } else if prev == "password" || (prev == "by" && prev2 == "identified") {
            Some("a password")
        } else if matches!(prev.as_str(), "=" | "<" | ">" | "like" | "ilike") {
            Some("a comparison")
        } else if parens.last() == Some(&true) {
            Some("a VALUES list")
        } else {
            None
        };
        out.push(Placement { name, offset, len, no_binds: no_binds.clone(), value });
    }
    out
}

/// The character offset of a quote or block comment of an emulated (sqlite) procedure body
/// that is never closed, if any.
pub fn unterminated(text: &str) -> Option<usize> {
    lex_chars(text, ir::Dialect::Sqlite).unclosed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph(name: &str, offset: usize, len: usize) -> Piece {
        Piece::Placeholder { name: name.into(), offset, len }
    }

    #[test]
    fn splits_placeholders_and_literal_braces() {
        let cases: Vec<(&str, Vec<Piece>)> = vec![
            ("", vec![]),
            ("select 1", vec![Piece::Text("select 1".into())]),
            (
                "call p({__NAME__}, {pwd})",
                vec![
                    Piece::Text("call p(".into()),
                    ph("__NAME__", 7, 10),
                    Piece::Text(", ".into()),
                    ph("pwd", 19, 5),
                    Piece::Text(")".into()),
                ],
            ),
            ("{a}{b}", vec![ph("a", 0, 3), ph("b", 3, 3)]),
            ("x {{y}} z", vec![Piece::Text("x {y} z".into())]),
            ("{{{a}}}", vec![Piece::Text("{".into()), ph("a", 2, 3), Piece::Text("}".into())]),
            ("é{a}", vec![Piece::Text("é".into()), ph("a", 1, 3)]),
        ];
        for (sql, want) in cases {
            assert_eq!(split(sql), Ok(want), "{sql}");
        }
    }

    #[test]
    fn reports_malformed_placeholders_with_offsets() {
        let cases: Vec<(&str, QuerySyntaxError)> = vec![
            ("select {a", QuerySyntaxError::Unclosed { offset: 7 }),
            ("select {a {b}", QuerySyntaxError::Unclosed { offset: 7 }),
            ("{a\n}", QuerySyntaxError::Unclosed { offset: 0 }),
            ("x {}", QuerySyntaxError::Empty { offset: 2 }),
            ("x {1a}", QuerySyntaxError::BadName { offset: 2, len: 4, content: "1a".into() }),
            ("x { a }", QuerySyntaxError::BadName { offset: 2, len: 5, content: " a ".into() }),
            ("x {a}}", QuerySyntaxError::UnmatchedClose { offset: 5 }),
            ("x\0{a}", QuerySyntaxError::Nul { offset: 1 }),
        ];
        for (sql, want) in cases {
            assert_eq!(split(sql), Err(want), "{sql}");
        }
        assert_eq!(QuerySyntaxError::Empty { offset: 0 }.len(), 2);
        assert!(QuerySyntaxError::BadName { offset: 0, len: 5, content: " a ".into() }.help().contains("`{a}`"));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("abc", 2), (0, 2));
        assert_eq!(line_col("ab\ncd", 4), (1, 1));
        assert_eq!(line_col("é\né{x}", 3), (1, 1));
    }

    const DIALECTS: [ir::Dialect; 3] = [ir::Dialect::Sqlite, ir::Dialect::Postgres, ir::Dialect::Mariadb];

    #[test]
    fn recognises_calls() {
        use ir::Dialect::{Mariadb, Postgres, Sqlite};
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        type Case<'a> = (&'a [ir::Dialect], &'a str, Option<(&'a str, Vec<String>)>);
        let cases: Vec<Case> = vec![
            (&DIALECTS, "call p({a}, {b})", Some(("p", s(&["{a}", "{b}"])))),
            (
                &DIALECTS,
                "  CALL  dbum.insert_package ( {a} ,'x,y', f(1, 2) ) ; ",
                Some(("dbum.insert_package", s(&["{a}", "'x,y'", "f(1, 2)"]))),
            ),
            (
                &DIALECTS,
                "call insertPackage ({__NAME__},{__PASSWORD__})",
                Some(("insertPackage", s(&["{__NAME__}", "{__PASSWORD__}"]))),
            ),
            (&DIALECTS, "Call p()", Some(("p", vec![]))),
            (&DIALECTS, "call p", Some(("p", vec![]))),
            (&DIALECTS, "call\n\tp(\n{a}\n);", Some(("p", s(&["{a}"])))),
            (&[Sqlite, Postgres], "call \"My Proc\"({a})", Some(("\"My Proc\"", s(&["{a}"])))),
            (&[Mariadb], "call \"My Proc\"({a})", None),
            (&[Sqlite, Mariadb], "call `db`.`p q`({a})", Some(("`db`.`p q`", s(&["{a}"])))),
            (&[Sqlite], "call [p]({a})", Some(("[p]", s(&["{a}"])))),
            (&DIALECTS, "call \"\"({a})", None),
            (&DIALECTS, "call p({a}) extra", None),
            (&DIALECTS, "call p({a}) -- comment", None),
            (&DIALECTS, "call p({a}", None),
            (&DIALECTS, "call p({a},,{b})", None),
            (&DIALECTS, "call p(')')", Some(("p", s(&["')'"])))),
            (&DIALECTS, "call p('a', /* , ) */ {b})", Some(("p", s(&["'a'", "/* , ) */ {b}"])))),
            // Backslash escapes are the dialect's.
            (&[Mariadb], "call p('it\\'s, x', {a})", Some(("p", s(&["'it\\'s, x'", "{a}"])))),
            (&[Postgres], "call p(E'it\\'s, x', 'a\\', {a})", Some(("p", s(&["E'it\\'s, x'", "'a\\'", "{a}"])))),
            (&[Sqlite, Postgres], "call p('it\\'s, x', {a})", None),
            (&[Postgres], "call p($$a, b)$$, $1)", Some(("p", s(&["$$a, b)$$", "$1"])))),
            (&DIALECTS, "call p('unclosed)", None),
            (&DIALECTS, "callp()", None),
            (&DIALECTS, "select call from t", None),
            (&DIALECTS, "call (1)", None),
        ];
        for (dialects, sql, want) in cases {
            for &d in dialects {
                let got = parse_call(sql, d);
                let want = want.clone().map(|(n, a)| (n.to_string(), a));
                assert_eq!(got, want, "{d:?}: {sql}");
            }
        }
        let spans = parse_call_spans("call é.p( {a},\u{a0}{b})", Postgres);
        assert_eq!(
            spans,
            Some(CallSpans {
                procedure: "é.p".into(),
                procedure_offset: 5,
                args: vec![("{a}".into(), 10), ("{b}".into(), 15)]
            })
        );
        assert!(looks_like_call(" CALL p(("));
        assert!(looks_like_call("call\n"));
        assert!(!looks_like_call("select 1"));
        assert!(!looks_like_call("callé"));
    }

    fn spec(ty: TypeName, tags: &[Tag]) -> ParamSpec {
        ParamSpec::Long(crate::syntax::ParamDef { ty, tags: tags.to_vec() })
    }

    #[test]
    fn lowers_modes_quoting_and_segments() {
        let pieces = split("call p({name}, {pw}, {io}, {out}, {name})").unwrap_or_default();
        let params: IndexMap<String, ParamSpec> = [
            ("name".to_string(), spec(TypeName::String, &[Tag::Identifier])),
            ("pw".to_string(), ParamSpec::Short(TypeName::GuardedString)),
            ("io".to_string(), ParamSpec::Short(TypeName::Long)),
        ]
        .into_iter()
        .collect();
        let outputs: IndexMap<String, TypeName> =
            [("io".to_string(), TypeName::Long), ("out".to_string(), TypeName::String)].into_iter().collect();
        let (lowered, problems) = lower_params(&pieces, &params, &outputs);
        assert_eq!(problems, vec![]);
        let modes: Vec<_> = lowered.params.iter().map(|p| (p.name.as_str(), p.mode, p.quoting)).collect();
        assert_eq!(
            modes,
            vec![
                ("name", ir::ParamMode::In, ir::Quoting::Identifier),
                ("pw", ir::ParamMode::In, ir::Quoting::Bind),
                ("io", ir::ParamMode::InOut, ir::Quoting::Bind),
                ("out", ir::ParamMode::Out, ir::Quoting::Bind),
            ]
        );
        use ir::Segment::*;
        let t = |s: &str| Text(s.to_string());
        assert_eq!(
            lowered.segments,
            vec![
                t("call p("),
                Inline(0),
                t(", "),
                Bind(1),
                t(", "),
                Bind(2),
                t(", "),
                Out(3),
                t(", "),
                Inline(0),
                t(")")
            ]
        );
    }

    #[test]
    fn reports_param_problems() {
        let pieces = split("x {a} {zz} {s}").unwrap_or_default();
        let params: IndexMap<String, ParamSpec> = [
            ("a".to_string(), spec(TypeName::String, &[Tag::Quotes])),
            ("s".to_string(), spec(TypeName::GuardedString, &[Tag::Identifier])),
            ("unused".to_string(), ParamSpec::Short(TypeName::String)),
        ]
        .into_iter()
        .collect();
        let outputs: IndexMap<String, TypeName> = [("a".to_string(), TypeName::Long)].into_iter().collect();
        let (_, problems) = lower_params(&pieces, &params, &outputs);
        assert_eq!(
            problems,
            vec![
                ParamProblem::InOutTypeMismatch {
                    name: "a".into(),
                    param: ir::ValueType::String,
                    output: ir::ValueType::Long
                },
                ParamProblem::InOutTagged { name: "a".into() },
                ParamProblem::SecretIdentifier { name: "s".into(), tag_index: 0 },
                ParamProblem::Undeclared { name: "zz".into(), offset: 6, len: 4 },
                ParamProblem::Unused { name: "unused".into(), declared: Declared::Param },
            ]
        );
    }

    #[test]
    fn splits_procedure_bodies() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("a; b;", vec!["a", "b"]),
            ("a;\n\n  ;b", vec!["a", "b"]),
            ("insert into t values ('x;y'); select \"a;b\"", vec!["insert into t values ('x;y')", "select \"a;b\""]),
            ("select 1 -- a; comment\n; select 2", vec!["select 1 -- a; comment", "select 2"]),
            ("select /* ; */ 1; -- trailing only\n", vec!["select /* ; */ 1"]),
            ("select 'it''s;'; x", vec!["select 'it''s;'", "x"]),
            ("select [a;b], `c;d` from t", vec!["select [a;b], `c;d` from t"]),
            ("-- leading\nselect 1; /* c; */ ;\n-- d\n x", vec!["-- leading\nselect 1", "-- d\n x"]),
            ("select ''", vec!["select ''"]),
            ("", vec![]),
            ("select 'a; b", vec![]),
            (
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET x = CASE WHEN new.v > 0 THEN 1 ELSE 0 END; END; select 1",
                vec!["CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET x = CASE WHEN new.v > 0 THEN 1 ELSE 0 END; END", "select 1"],
            ),
        ];
        for (body, want) in cases {
            assert_eq!(split_statements(body), want, "{body:?}");
        }
    }

    #[test]
    fn finds_named_binds_outside_quotes_and_comments() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("insert into t values (:usr, :pwd, :usr)", vec!["usr", "pwd"]),
            ("select ':nope', \":no\" -- :no\n, /* :no */ :yes", vec!["yes"]),
            ("select x::text, a:b, :_1", vec!["_1"]),
            ("select :1", vec![]),
            ("select [:no], `:no`, :a$b, :é, 1:c, $d:e, ?:f, x$:g", vec!["a", "f", "g"]),
            ("select :ok, 'unclosed :no", vec!["ok"]),
        ];
        for (stmt, want) in cases {
            assert_eq!(named_binds(stmt), want, "{stmt}");
        }
        assert_eq!(bind_positions("a :x\n :y"), vec![("x".to_string(), 2), ("y".to_string(), 6)]);
        assert_eq!(bind_positions("'é' :x"), vec![("x".to_string(), 4)]);
        assert_eq!(unterminated("select 'abc"), Some(7));
        assert_eq!(unterminated("select /* x"), Some(7));
        assert_eq!(unterminated("é [x"), Some(2));
        assert_eq!(unterminated("select 'a' -- 'b"), None);
    }

    #[test]
    fn finds_placeholders_inside_quotes_and_comments() {
        use ir::Dialect::{Mariadb, Postgres, Sqlite};
        type Case<'a> = (&'a [ir::Dialect], &'a str, Vec<(&'a str, usize)>);
        let cases: Vec<Case> = vec![
            (&DIALECTS, "select '{a}', {b}, \"{c}\" -- {d}\n", vec![("a", 8), ("c", 20), ("d", 28)]),
            (&DIALECTS, "select '{a} {b}', /* {c} */ {d}", vec![("a", 8), ("b", 12), ("c", 21)]),
            (&DIALECTS, "select é'{a}'", vec![("a", 9)]),
            (&DIALECTS, "select {a} where '{b}", vec![("b", 18)]),
            (&DIALECTS, "select '{{' || {a}", vec![]),
            (&DIALECTS, "select '{a'", vec![]),
            (&[Postgres, Mariadb], "select a[{i}] from t where x = {x}", vec![]),
            (&[Sqlite], "select a[{i}] from t where x = {x}", vec![("i", 9)]),
            (&[Postgres], "select $${a}$$, $1, {b}, `{c}`", vec![("a", 9)]),
            (&[Sqlite, Mariadb], "select $${a}$$, {b}, `{c}`", vec![("c", 22)]),
            (&[Mariadb], "select 'x\\' {a}', {b} # {c}", vec![("a", 12), ("c", 24)]),
            (&[Postgres], "select 'x\\' {a}', {b}", vec![("b", 18)]),
            (&[Postgres], "select E'x\\' {a}', {b}", vec![("a", 13)]),
            (&[Mariadb], "select /*! {a} */ 1", vec![]),
        ];
        for (dialects, sql, want) in cases {
            for &d in dialects {
                let got: Vec<(String, usize)> =
                    quoted_placeholders(sql, d).into_iter().map(|(n, o, _)| (n, o)).collect();
                let want: Vec<(String, usize)> = want.iter().map(|(n, o)| (n.to_string(), *o)).collect();
                assert_eq!(got, want, "{d:?}: {sql}");
            }
        }
    }
}
