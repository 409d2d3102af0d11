//! Query text: placeholders, segments, calls, and the bodies of emulated procedures.
//!
//! The query language is the legacy one of `provision.queries`: SQL text with `{NAME}`
//! placeholders. This module knows that syntax and nothing about YAML: positions are 0-based
//! character offsets into the query string, which a pass turns into a diagnostic position with
//! [`line_col`] and `Finding::at_inner`. Used by the `ConnectorQueries` pass and by the
//! notification resolver pass.

use indexmap::IndexMap;
use provflow_ir as ir;
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
                let end = chars[i + 1..].iter().position(|&c| matches!(c, '}' | '{' | '\n')).map(|p| p + i + 1);
                let Some(close) = end.filter(|&j| chars.get(j) == Some(&'}')) else {
                    return Err(QuerySyntaxError::Unclosed { offset: i });
                };
                let content: String = chars[i + 1..close].iter().collect();
                let len = close - i + 1;
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
                i = close + 1;
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
/// respecting quotes and parentheses; they keep their `{placeholders}`. `None` when the text is
/// not exactly one such call.
pub fn parse_call(sql: &str) -> Option<(String, Vec<String>)> {
    parse_call_spans(sql).map(|c| (c.procedure, c.args.into_iter().map(|(a, _)| a).collect()))
}

/// [`parse_call`] with the positions of the name and of every argument.
pub fn parse_call_spans(sql: &str) -> Option<CallSpans> {
    let chars: Vec<char> = sql.chars().collect();
    let mut i = skip_ws(&chars, 0);
    if !starts_with_call_keyword(&chars[i..]) {
        return None;
    }
    i = skip_ws(&chars, i + 4);
    let procedure_offset = i;
    // The name: dot-separated parts, each bare or quoted with `"` or a backtick.
    loop {
        match chars.get(i) {
            Some(&q @ ('"' | '`')) => {
                let close = chars[i + 1..].iter().position(|&c| c == q)? + i + 1;
                if close == i + 1 {
                    return None;
                }
                i = close + 1;
            }
            Some(c) if c.is_alphanumeric() || *c == '_' || *c == '$' => {
                while chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$') {
                    i += 1;
                }
            }
            _ => return None,
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
        } else {
            break;
        }
    }
    let procedure: String = chars[procedure_offset..i].iter().collect();
    i = skip_ws(&chars, i);
    let mut args = Vec::new();
    if chars.get(i) == Some(&'(') {
        let close = top_level_args(&chars, i + 1, &mut args)?;
        i = skip_ws(&chars, close + 1);
    }
    if chars.get(i) == Some(&';') {
        i = skip_ws(&chars, i + 1);
    }
    (i == chars.len()).then_some(CallSpans { procedure, procedure_offset, args })
}

/// Whether query text starts with the `call` keyword (so a failed [`parse_call`] is a
/// malformed call rather than some other statement).
pub fn looks_like_call(sql: &str) -> bool {
    let chars: Vec<char> = sql.chars().collect();
    let i = skip_ws(&chars, 0);
    starts_with_call_keyword(&chars[i..])
}

fn starts_with_call_keyword(chars: &[char]) -> bool {
    let keyword: String = chars.iter().take(4).collect();
    keyword.eq_ignore_ascii_case("call") && chars.get(4).is_some_and(|c| c.is_whitespace())
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// Reads arguments from just after `(` to the matching `)`; returns the index of that `)`.
fn top_level_args(chars: &[char], start: usize, args: &mut Vec<(String, usize)>) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut arg_start = start;
    let mut i = start;
    let push = |from: usize, to: usize, args: &mut Vec<(String, usize)>| -> Option<()> {
        let raw = &chars[from..to];
        let lead = raw.iter().take_while(|c| c.is_whitespace()).count();
        let text: String = raw.iter().collect::<String>().trim().to_owned();
        if text.is_empty() {
            return None;
        }
        args.push((text, from + lead));
        Some(())
    };
    loop {
        let c = *chars.get(i)?;
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') if depth == 0 => {
                let only_ws = chars[start..i].iter().all(|c| c.is_whitespace());
                if !(only_ws && args.is_empty()) {
                    push(arg_start, i, args)?;
                }
                return Some(i);
            }
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                push(arg_start, i, args)?;
                arg_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
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

/// What each character of SQL text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexeme {
    Code,
    /// Inside (or delimiting) a quoted string or identifier.
    Quoted,
    Comment,
}

struct Lexed {
    kinds: Vec<Lexeme>,
    /// Character offset of a quote or `/*` comment that is never closed.
    unterminated: Option<usize>,
}

impl Lexed {
    fn is_code(&self, i: usize) -> bool {
        self.kinds.get(i) == Some(&Lexeme::Code)
    }
}

/// `brackets`: `[...]` quotes an identifier (sqlite), rather than indexing an array.
fn lex(chars: &[char], brackets: bool) -> Lexed {
    let mut kinds = vec![Lexeme::Code; chars.len()];
    let mut unterminated = None;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let (end, kind) = match (c, next) {
            ('\'' | '"' | '`', _) => (find_from(chars, i + 1, |x| x == c).map(|j| j + 1), Lexeme::Quoted),
            ('[', _) if brackets => (find_from(chars, i + 1, |x| x == ']').map(|j| j + 1), Lexeme::Quoted),
            ('-', Some('-')) => (Some(find_from(chars, i + 2, |x| x == '\n').unwrap_or(chars.len())), Lexeme::Comment),
            ('/', Some('*')) => (
                (i + 2..chars.len().saturating_sub(1)).find(|&j| chars[j] == '*' && chars[j + 1] == '/').map(|j| j + 2),
                Lexeme::Comment,
            ),
            _ => {
                i += 1;
                continue;
            }
        };
        let end = end.unwrap_or_else(|| {
            unterminated.get_or_insert(i);
            chars.len()
        });
        for k in kinds.iter_mut().take(end).skip(i) {
            *k = kind;
        }
        i = end;
    }
    Lexed { kinds, unterminated }
}

fn find_from(chars: &[char], from: usize, pred: impl Fn(char) -> bool) -> Option<usize> {
    chars.iter().skip(from).position(|&c| pred(c)).map(|p| p + from)
}

/// Splits the body of an emulated (sqlite) procedure into statements at top-level `;`,
/// respecting quotes (`'`, `"`, backticks, `[...]`) and comments (`--`, `/* */`). Statements
/// are trimmed; statements with nothing but whitespace and comments are dropped.
pub fn split_statements(body: &str) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let lexed = lex(&chars, true);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut push = |from: usize, to: usize| {
        let has_sql = (from..to).any(|i| match lexed.kinds.get(i) {
            Some(Lexeme::Code) => chars.get(i).is_some_and(|c| !c.is_whitespace()),
            Some(Lexeme::Quoted) => true,
            _ => false,
        });
        if has_sql {
            let text: String = chars[from..to].iter().collect();
            statements.push(text.trim().to_owned());
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        if c == ';' && lexed.is_code(i) {
            push(start, i);
            start = i + 1;
        }
    }
    push(start, chars.len());
    statements
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

/// Every `:name` bind outside quotes and comments with the character offset of its `:`.
pub fn bind_positions(text: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let lexed = lex(&chars, true);
    let is_code = |i: usize| lexed.is_code(i);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == ':' && is_code(i) {
            if chars.get(i + 1) == Some(&':') {
                i += 2;
                continue;
            }
            let after_word = i > 0 && chars.get(i - 1).is_some_and(|p| p.is_alphanumeric() || *p == '_' || *p == ':');
            let first_ok = chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_');
            if first_ok && !after_word {
                let mut j = i + 1;
                while chars.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    j += 1;
                }
                out.push((chars[i + 1..j].iter().collect(), i));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The placeholders of query text that sit inside a quoted string, a quoted identifier or a
/// comment, where a bind parameter is not replaced (legacy queries wrote `'{NAME}'` because
/// their values were pasted in as text). Backslash escapes are not understood.
pub fn quoted_placeholders(sql: &str) -> Vec<(String, usize, usize)> {
    let Ok(pieces) = split(sql) else { return Vec::new() };
    let chars: Vec<char> = sql.chars().collect();
    let lexed = lex(&chars, false);
    pieces
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder { name, offset, len } if !lexed.is_code(offset) => Some((name, offset, len)),
            _ => None,
        })
        .collect()
}

/// The character offset of a quote or block comment that is never closed, if any.
pub fn unterminated(text: &str) -> Option<usize> {
    let chars: Vec<char> = text.chars().collect();
    lex(&chars, true).unterminated
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

    #[test]
    fn recognises_calls() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        type Case<'a> = (&'a str, Option<(&'a str, Vec<String>)>);
        let cases: Vec<Case> = vec![
            ("call p({a}, {b})", Some(("p", s(&["{a}", "{b}"])))),
            (
                "  CALL  dbum.insert_package ( {a} ,'x,y', f(1, 2) ) ; ",
                Some(("dbum.insert_package", s(&["{a}", "'x,y'", "f(1, 2)"]))),
            ),
            (
                "call insertPackage ({__NAME__},{__PASSWORD__})",
                Some(("insertPackage", s(&["{__NAME__}", "{__PASSWORD__}"]))),
            ),
            ("Call p()", Some(("p", vec![]))),
            ("call p", Some(("p", vec![]))),
            ("call \"My Proc\"({a})", Some(("\"My Proc\"", s(&["{a}"])))),
            ("call p({a}) extra", None),
            ("call p({a}", None),
            ("call p({a},,{b})", None),
            ("call p(')')", Some(("p", s(&["')'"])))),
            ("callp()", None),
            ("select call from t", None),
            ("call (1)", None),
        ];
        for (sql, want) in cases {
            let got = parse_call(sql);
            let want = want.map(|(n, a)| (n.to_string(), a));
            assert_eq!(got, want, "{sql}");
        }
        let spans = parse_call_spans("call p( {a},{b})");
        assert_eq!(
            spans,
            Some(CallSpans {
                procedure: "p".into(),
                procedure_offset: 5,
                args: vec![("{a}".into(), 8), ("{b}".into(), 12)]
            })
        );
        assert!(looks_like_call(" CALL p(("));
        assert!(!looks_like_call("select 1"));
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
            ("select ''", vec!["select ''"]),
            ("", vec![]),
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
        ];
        for (stmt, want) in cases {
            assert_eq!(named_binds(stmt), want, "{stmt}");
        }
        assert_eq!(bind_positions("a :x\n :y"), vec![("x".to_string(), 2), ("y".to_string(), 6)]);
        assert_eq!(unterminated("select 'abc"), Some(7));
        assert_eq!(unterminated("select /* x"), Some(7));
        assert_eq!(unterminated("select 'a' -- 'b"), None);
        let quoted = |sql: &str| quoted_placeholders(sql).into_iter().map(|(n, o, _)| (n, o)).collect::<Vec<_>>();
        assert_eq!(
            quoted("select '{a}', {b}, \"{c}\" -- {d}\n"),
            vec![("a".into(), 8), ("c".into(), 20), ("d".into(), 28)]
        );
        assert_eq!(quoted("select a[{i}] from t where x = {x}"), vec![]);
    }
}
