//! The one place that knows YAML positions.
//!
//! A file's bytes become JSON values (YAML 1.2 core schema) plus a [`SpanIndex`] from JSON
//! pointers to source spans. Everything after this module speaks in pointers.
//!
//! Hostile input is bounded here: aliases are refused (so "billion laughs" cannot expand),
//! nesting is limited to [`MAX_DEPTH`], files to [`MAX_FILE_BYTES`], and the parser is an
//! event stream with its own limits, so nothing recurses on the input's shape.

use rustc_hash::FxHashMap as HashMap;
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use serde_json::{Map, Number, Value};

use crate::diagnostic::Span;

/// Deeper nesting than this is refused: no definition needs more than a dozen levels.
pub const MAX_DEPTH: usize = 64;
/// Larger files are refused before parsing.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Positions of one node: its key (for mapping values) and its value.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpan {
    pub key: Option<Span>,
    pub value: Span,
    /// For block scalars (`|`, `>`): the line and column (1-based) of the first content line.
    pub block_content: Option<(u32, u32)>,
    /// For quoted scalars: the value starts one column after the quote.
    pub quoted: bool,
}

/// JSON pointer → node position, for one document.
///
/// The first load indexes only the top levels ([`SHALLOW_DEPTH`]): that is all the lowering
/// needs for IR locations, and indexing every node of a large bundle would cost more than the
/// rest of the compile. A finding deeper down re-parses its file with [`parse_full`].
#[derive(Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<String, NodeSpan>,
    /// Nodes deeper than this are not indexed.
    max_depth: usize,
}

/// How deep the first load indexes: `/tasks/<name>` is depth 2.
pub const SHALLOW_DEPTH: usize = 2;

impl SpanIndex {
    /// Whether this index answers for a node at `pointer` as the full index would: every node
    /// down to its depth, and the few deeper ones it holds (see [`deep_scalar`]).
    pub fn covers(&self, pointer: &str) -> bool {
        pointer.matches('/').count() <= self.max_depth || self.nodes.contains_key(pointer)
    }

    pub fn get(&self, pointer: &str) -> Option<&NodeSpan> {
        self.nodes.get(pointer)
    }

    /// The span of the closest existing node at or above `pointer`.
    pub fn nearest(&self, pointer: &str) -> Option<(&str, &NodeSpan)> {
        let mut p = pointer;
        loop {
            if let Some((k, n)) = self.nodes.get_key_value(p) {
                return Some((k.as_str(), n));
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// One YAML document of a file.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub spans: SpanIndex,
    /// The span of the whole document's root node.
    pub root: Span,
}

/// A problem found while loading, before any schema is applied.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    pub span: Span,
}

/// Converts character-based parser markers to lines, columns and byte offsets.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of each line start.
    line_starts: Vec<usize>,
    /// Character index == byte offset: the common case, and much faster.
    ascii: bool,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        // `match_indices` of one ASCII character searches with memchr, not byte by byte.
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts, ascii: text.is_ascii() }
    }

    /// Byte offset of a 1-based line and 0-based character column (clamped to the text).
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let line_text = rest.split('\n').next().unwrap_or("");
        match line_text.char_indices().nth(col) {
            Some((i, _)) => start + i,
            None => start + line_text.len().min(rest.len()),
        }
    }

    pub fn span(&self, s: &YSpan) -> Span {
        let (sl, sc) = (s.start.line(), s.start.col());
        let (el, ec) = (s.end.line(), s.end.col());
        let (start, end) = if self.ascii {
            (s.start.index().min(self.text.len()), s.end.index().min(self.text.len()))
        } else {
            (self.offset(sl, sc), self.offset(el, ec))
        };
        Span {
            line: sl.max(1) as u32,
            column: sc as u32 + 1,
            end_line: el.max(1) as u32,
            end_column: ec as u32 + 1,
            start,
            end,
        }
    }

    /// A span for a 1-based line and column, `len` characters long on the same line.
    pub fn point(&self, line: u32, column: u32, len: u32) -> Span {
        let start = self.offset(line as usize, column.saturating_sub(1) as usize);
        let end = self.offset(line as usize, (column + len).saturating_sub(1) as usize);
        Span { line, column, end_line: line, end_column: column + len, start, end }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }
}

/// Escapes one JSON-pointer token.
pub fn escape_token(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_owned()
    }
}

/// Decodes bytes as UTF-8, reporting the position of the first invalid byte.
pub fn decode(bytes: &[u8]) -> Result<&str, LoadError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(LoadError {
            code: "PF008",
            message: format!(
                "file is larger than {} MiB, the most a definition file may hold",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            help: Some("split the definitions into several files".into()),
            span: Span { line: 1, column: 1, end_line: 1, end_column: 1, start: 0, end: 0 },
        });
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let line = valid.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The valid prefix is UTF-8, so counting its characters is safe.
        let column = std::str::from_utf8(valid.get(line_start..).unwrap_or_default()).map_or(0, |s| s.chars().count())
            as u32
            + 1;
        let at = e.valid_up_to();
        LoadError {
            code: "PF001",
            message: format!(
                "the file is not valid UTF-8 (byte 0x{:02x} at offset {at})",
                bytes.get(at).copied().unwrap_or_default()
            ),
            help: Some(
                "definition files must be UTF-8 text; is this a binary file, or saved in another encoding?".into(),
            ),
            span: Span { line, column, end_line: line, end_column: column + 1, start: at, end: at },
        }
    })
}

mod fast;

use std::borrow::Cow;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// One parse event, from either reader: the document-structure events of YAML's event model,
/// each with the span the general parser gives it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ev<'a> {
    DocumentStart,
    DocumentEnd,
    SequenceStart,
    SequenceEnd,
    MappingStart,
    MappingEnd,
    /// `tag` is the handle and suffix of an explicit tag (`!!str`): the general parser only.
    Scalar {
        text: Cow<'a, str>,
        style: Style,
        tag: Option<(String, String)>,
    },
    Alias,
}

/// What receives the events. `event` answers `false` to stop the reading.
pub(crate) trait Sink {
    fn event(&mut self, ev: Ev<'_>, span: Span) -> bool;
}

enum Frame {
    Seq {
        items: Vec<Value>,
        pointer: String,
    },
    Map {
        map: Map<String, Value>,
        pointer: String,
        pending_key: Option<(String, Span)>,
        /// Spans of the keys in `map`, in insertion order (for the duplicate-key message).
        key_spans: Vec<Span>,
    },
}

/// Parses every document of a file. Documents that are empty (only comments, or a trailing
/// `---`) are skipped; a file with no document at all is an error.
pub fn parse(text: &str) -> (Vec<Document>, Vec<LoadError>) {
    parse_indexed(text, SHALLOW_DEPTH)
}

/// Like [`parse`], indexing every node.
pub fn parse_full(text: &str) -> (Vec<Document>, Vec<LoadError>) {
    parse_indexed(text, usize::MAX)
}

/// Files read by the fast reader and by the general parser since the process started (for
/// `PROVFLOW_TIMINGS`).
pub(crate) static READ_FAST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
pub(crate) static READ_GENERAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether the fast reader and the general parser agree on `text`: `Ok(true)` when the fast
/// reader takes it and gives the general parser's events and spans, `Ok(false)` when it leaves
/// the text to the general parser, `Err` with the difference otherwise. For the fuzzer.
#[doc(hidden)]
pub fn readers_agree(text: &str) -> Result<bool, String> {
    fast::differential(text).map(|events| events.is_some())
}

fn parse_indexed(text: &str, max_depth: usize) -> (Vec<Document>, Vec<LoadError>) {
    let lines = LineIndex::new(text);
    // The fast reader takes the block-structured subset definitions are written in and gives
    // up on anything else (see `fast.rs`); the general parser then reads the file from the start.
    let mut builder = Builder::new(&lines, max_depth);
    if fast::read(text, &mut builder).is_ok() {
        READ_FAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return builder.finish();
    }
    READ_GENERAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut builder = Builder::new(&lines, max_depth);
    general(text, &lines, &mut builder);
    builder.finish()
}

/// Feeds `sink` the events of `saphyr-parser`, the general YAML 1.2 parser. A scanner error is
/// reported to `errors` and ends the reading (the event stream cannot be resumed after it).
fn general_into(text: &str, lines: &LineIndex<'_>, sink: &mut impl Sink, errors: &mut Vec<LoadError>) {
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, yspan) = match next {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                let span = lines.span(&YSpan::empty(*m));
                // The scanner's own nesting limit for flow collections (`[[[[`) is ours too.
                if e.info().contains("recursion limit") {
                    errors.push(LoadError {
                        code: "PF005",
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                        help: Some("definitions never need this depth; is the file generated by mistake?".into()),
                        span,
                    });
                    return;
                }
                errors.push(LoadError {
                    code: "PF002",
                    message: format!("YAML syntax error: {}", e.info()),
                    help: yaml_hint(e.info()),
                    span,
                });
                return;
            }
        };
        let ev = match event {
            Event::StreamStart | Event::Nothing => continue,
            Event::StreamEnd => return,
            Event::DocumentStart(_) => Ev::DocumentStart,
            Event::DocumentEnd => Ev::DocumentEnd,
            Event::Alias(_) => Ev::Alias,
            Event::SequenceStart(..) => Ev::SequenceStart,
            Event::SequenceEnd => Ev::SequenceEnd,
            Event::MappingStart(..) => Ev::MappingStart,
            Event::MappingEnd => Ev::MappingEnd,
            Event::Scalar(text, style, _anchor, tag) => Ev::Scalar {
                text,
                style: match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                },
                tag: tag.map(|t| (t.handle.clone(), t.suffix.clone())),
            },
        };
        if !sink.event(ev, lines.span(&yspan)) {
            return;
        }
    }
}

fn general(text: &str, lines: &LineIndex<'_>, builder: &mut Builder<'_, '_>) {
    let mut errors = Vec::new();
    general_into(text, lines, builder, &mut errors);
    builder.errors.extend(errors);
}

/// Builds the documents' values and span indexes from the events.
struct Builder<'l, 't> {
    lines: &'l LineIndex<'t>,
    max_depth: usize,
    docs: Vec<Document>,
    errors: Vec<LoadError>,
    stack: Vec<Frame>,
    spans: SpanIndex,
    root: Option<(Value, Span)>,
}

impl<'l, 't> Builder<'l, 't> {
    fn new(lines: &'l LineIndex<'t>, max_depth: usize) -> Self {
        Builder {
            lines,
            max_depth,
            docs: Vec::new(),
            errors: Vec::new(),
            stack: Vec::new(),
            spans: SpanIndex { nodes: HashMap::default(), max_depth },
            root: None,
        }
    }

    fn finish(mut self) -> (Vec<Document>, Vec<LoadError>) {
        if self.docs.is_empty() && self.errors.is_empty() {
            self.errors.push(LoadError {
                code: "PF006",
                message: "the file holds no YAML document".into(),
                help: Some("add a definition (`apiVersion: provflow/v1`, `kind: ...`) or delete the file".into()),
                span: Span { line: 1, column: 1, end_line: 1, end_column: 1, start: 0, end: 0 },
            });
        }
        (self.docs, self.errors)
    }

    /// A scalar: in key position it becomes the mapping's pending key, elsewhere a value.
    fn place_scalar(&mut self, value: Value, span: Span, block: Option<(u32, u32)>, quoted: bool) -> bool {
        if let Some(Frame::Map { map, pending_key, key_spans, .. }) = self.stack.last_mut() {
            if pending_key.is_none() {
                let key = match value {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                // Every earlier key of this mapping is in `map` already: its value was attached
                // before this key was read.
                if map.contains_key(&key) {
                    let first =
                        map.keys().position(|k| *k == key).and_then(|i| key_spans.get(i)).copied().unwrap_or(span);
                    self.errors.push(LoadError {
                        code: "PF003",
                        message: format!("duplicate key `{key}`"),
                        help: Some(format!(
                            "`{key}` is already set on line {}; a mapping may set each key once",
                            first.line
                        )),
                        span,
                    });
                } else {
                    key_spans.push(span);
                }
                *pending_key = Some((key, span));
                return true;
            }
        }
        self.place(value, span, block, quoted)
    }

    /// Places a value at the current position and records its span.
    fn place(&mut self, value: Value, span: Span, block_content: Option<(u32, u32)>, quoted: bool) -> bool {
        if self.stack.len() <= self.max_depth || deep_scalar(&self.stack, self.max_depth) {
            if let Some(pointer) = child_pointer(&self.stack) {
                let key = key_span(&self.stack);
                self.spans.nodes.insert(pointer, NodeSpan { key, value: span, block_content, quoted });
            }
        }
        self.attach(value, span)
    }

    /// Attaches a finished value to its parent (or makes it the document root).
    fn attach(&mut self, value: Value, span: Span) -> bool {
        match self.stack.last_mut() {
            None => {
                self.root = Some((value, span));
                true
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                true
            }
            Some(Frame::Map { map, pending_key, .. }) => match pending_key.take() {
                Some((k, _)) => {
                    // On a duplicate key (already reported) the first value is kept.
                    map.entry(k).or_insert(value);
                    true
                }
                None => {
                    self.errors.push(LoadError {
                        code: "PF007",
                        message: "mapping keys must be plain strings, not collections".into(),
                        help: Some("use a string key".into()),
                        span,
                    });
                    false
                }
            },
        }
    }
}

impl Sink for Builder<'_, '_> {
    fn event(&mut self, ev: Ev<'_>, span: Span) -> bool {
        let max_depth = self.max_depth;
        match ev {
            Ev::DocumentStart => {
                self.stack.clear();
                self.spans = SpanIndex { nodes: HashMap::default(), max_depth };
                self.root = None;
                true
            }
            Ev::DocumentEnd => {
                if let Some((value, root_span)) = self.root.take() {
                    if !value.is_null() {
                        self.docs.push(Document { value, spans: std::mem::take(&mut self.spans), root: root_span });
                    }
                }
                true
            }
            Ev::Alias => {
                self.errors.push(LoadError {
                    code: "PF004",
                    message: "YAML aliases (`*name`) are not allowed in definitions".into(),
                    help: Some(
                        "write the value out; aliases are refused so that a document cannot expand to an unbounded size"
                            .into(),
                    ),
                    span,
                });
                self.place(Value::Null, span, None, false)
            }
            Ev::Scalar { text, style, tag } => {
                let forced_string = match &tag {
                    None => false,
                    Some((handle, suffix)) if (handle == "tag:yaml.org,2002:" || handle == "!!") && suffix == "str" => {
                        true
                    }
                    Some((handle, suffix)) => {
                        self.errors.push(LoadError {
                            code: "PF002",
                            message: format!("YAML tag `{handle}{suffix}` is not supported"),
                            help: Some("remove the tag; only `!!str` is accepted".into()),
                            span,
                        });
                        false
                    }
                };
                let value = if style == Style::Plain && !forced_string {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                let block = match style {
                    Style::Literal | Style::Folded
                        if self.stack.len() <= max_depth || deep_scalar(&self.stack, max_depth) =>
                    {
                        block_content_start(self.lines, &span)
                    }
                    _ => None,
                };
                let quoted = matches!(style, Style::SingleQuoted | Style::DoubleQuoted);
                self.place_scalar(value, span, block, quoted)
            }
            Ev::SequenceStart | Ev::MappingStart => {
                let (stack, spans, errors) = (&mut self.stack, &mut self.spans, &mut self.errors);
                if stack.len() >= MAX_DEPTH {
                    errors.push(LoadError {
                        code: "PF005",
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                        help: Some("definitions never need this depth; is the file generated by mistake?".into()),
                        span,
                    });
                    return false;
                }
                let indexed = stack.len() <= max_depth;
                let pointer = if indexed { child_pointer(stack) } else { key_expected(stack).then_some(String::new()) };
                let Some(pointer) = pointer else {
                    // A collection used as a mapping key.
                    errors.push(LoadError {
                        code: "PF007",
                        message: "mapping keys must be plain strings, not collections".into(),
                        help: Some("use a string key".into()),
                        span,
                    });
                    return false;
                };
                // Remember where the collection starts; its value span is completed at its end.
                if indexed {
                    let key = key_span(stack);
                    spans
                        .nodes
                        .insert(pointer.clone(), NodeSpan { key, value: span, block_content: None, quoted: false });
                }
                if ev == Ev::SequenceStart {
                    stack.push(Frame::Seq { items: Vec::new(), pointer });
                } else {
                    stack.push(Frame::Map { map: Map::new(), pointer, pending_key: None, key_spans: Vec::new() });
                }
                true
            }
            Ev::SequenceEnd | Ev::MappingEnd => {
                let (stack, spans) = (&mut self.stack, &mut self.spans);
                let Some(frame) = stack.pop() else { return true };
                let (value, pointer) = match frame {
                    Frame::Seq { items, pointer } => (Value::Array(items), pointer),
                    Frame::Map { map, pointer, .. } => (Value::Object(map), pointer),
                };
                // After the pop, `stack.len()` is the depth the collection was opened at.
                let indexed = stack.len() <= max_depth;
                let start = if indexed { spans.nodes.get(&pointer).map(|n| n.value).unwrap_or(span) } else { span };
                let full = Span {
                    end_line: span.end_line,
                    end_column: span.end_column,
                    end: span.end.max(start.start),
                    ..start
                };
                if indexed {
                    if let Some(n) = spans.nodes.get_mut(&pointer) {
                        n.value = full;
                    }
                }
                self.attach(value, full)
            }
        }
    }
}

/// Scalars below the shallow index that a clean compile still needs the position of: the text
/// of a query (`/queries/<name>/query`), where every `call` records where its procedure's name
/// stands. Indexing them here saves re-parsing every query set's file in full. Only scalars are
/// added, with exactly the span the full index would give them, and [`SpanIndex::covers`]
/// answers for them only when present, so a lookup gives what the full index would.
fn deep_scalar(stack: &[Frame], max_depth: usize) -> bool {
    let pending = |frame: Option<&Frame>, key: &str| matches!(frame, Some(Frame::Map { pending_key: Some((k, _)), .. }) if k == key);
    stack.len() == 3
        && max_depth == SHALLOW_DEPTH
        && pending(stack.first(), "queries")
        && matches!(stack.get(1), Some(Frame::Map { .. }))
        && pending(stack.get(2), "query")
}

/// True unless the innermost collection is a mapping waiting for a key.
fn key_expected(stack: &[Frame]) -> bool {
    !matches!(stack.last(), Some(Frame::Map { pending_key: None, .. }))
}

/// The pointer of the next child of the innermost collection; `None` if a key is expected.
fn child_pointer(stack: &[Frame]) -> Option<String> {
    match stack.last() {
        None => Some(String::new()),
        Some(Frame::Seq { items, pointer }) => Some(format!("{pointer}/{}", items.len())),
        Some(Frame::Map { pending_key: Some((k, _)), pointer, .. }) => Some(format!("{pointer}/{}", escape_token(k))),
        Some(Frame::Map { pending_key: None, .. }) => None,
    }
}

fn key_span(stack: &[Frame]) -> Option<Span> {
    match stack.last() {
        Some(Frame::Map { pending_key: Some((_, s)), .. }) => Some(*s),
        _ => None,
    }
}

/// Where the content of a block scalar starts: the first non-blank line after the indicator.
fn block_content_start(lines: &LineIndex<'_>, span: &Span) -> Option<(u32, u32)> {
    let text = lines.text();
    let after = text.get(span.start..)?;
    // Depending on the parser, the scalar's span starts at the `|`/`>` indicator or at the content.
    let (mut line, rest) = if after.starts_with(['|', '>']) {
        let nl = after.find('\n')?;
        (span.line + 1, &after[nl + 1..])
    } else {
        let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        (span.line, &text[line_start..])
    };
    for l in rest.split('\n') {
        if !l.trim().is_empty() {
            let indent = l.chars().take_while(|c| *c == ' ').count() as u32;
            return Some((line, indent + 1));
        }
        line += 1;
    }
    None
}

/// YAML 1.2 core schema resolution of a plain scalar. `yes`/`no`/`on`/`off` stay strings.
pub fn resolve_plain(s: &str) -> Value {
    resolve_non_string(s).unwrap_or_else(|| Value::String(s.to_owned()))
}

/// The value of a plain scalar that is not a string: null, a boolean or a number.
fn resolve_non_string(s: &str) -> Option<Value> {
    // Every non-string form starts with one of these; anything else is text.
    if !s.as_bytes().first().is_none_or(|c| c.is_ascii_digit() || b"~nNtTfF-+.".contains(c)) {
        return None;
    }
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let b = s.as_bytes();
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits(unsigned) {
        if let Ok(i) = s.parse::<i64>() {
            return Some(Value::Number(i.into()));
        }
        if let Ok(u) = s.trim_start_matches('+').parse::<u64>() {
            return Some(Value::Number(u.into()));
        }
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Some(Value::Number(n));
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Some(Value::Number(i.into()));
            }
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Some(Value::Number(i.into()));
            }
        }
    }
    if is_core_float(unsigned) && b.first().is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.')) {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Some(Value::Number(n));
        }
    }
    // `.inf` and `.nan` have no JSON form: keep them as text for the schema to judge.
    None
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() && !frac.is_empty() || !int.is_empty())
                && int.bytes().all(|c| c.is_ascii_digit())
                && frac.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exp_ok
}

fn yaml_hint(info: &str) -> Option<String> {
    let i = info.to_ascii_lowercase();
    if i.contains("tab") {
        Some("YAML indentation must use spaces; replace the tab characters with spaces".into())
    } else if i.contains("mapping values are not allowed") {
        Some("a `:` followed by a space starts a mapping; quote the value if it contains `: `".into())
    } else if i.contains("did not find expected") || i.contains("while parsing") {
        Some("check the indentation and that every quote and bracket is closed".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> (Vec<Document>, Vec<LoadError>) {
        parse_full(src)
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("yes"), Value::String("yes".into()));
        assert_eq!(resolve_plain("off"), Value::String("off".into()));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("42"), Value::Number(42.into()));
        assert_eq!(resolve_plain("0x1f"), Value::Number(31.into()));
        assert_eq!(resolve_plain("0o17"), Value::Number(15.into()));
        assert_eq!(resolve_plain("1.5e3").as_f64(), Some(1500.0));
        assert_eq!(resolve_plain("42704"), Value::Number(42704.into()));
        assert_eq!(resolve_plain("1.2.3"), Value::String("1.2.3".into()));
        assert_eq!(resolve_plain(".inf"), Value::String(".inf".into()));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let (docs, errs) = load("a: 1\nb:\n  c: [x, y]\n");
        assert!(errs.is_empty());
        let d = &docs[0];
        let c = d.spans.get("/b/c").unwrap();
        assert_eq!((c.key.unwrap().line, c.key.unwrap().column), (3, 3));
        let y = d.spans.get("/b/c/1").unwrap();
        assert_eq!((y.value.line, y.value.column), (3, 10));
    }

    #[test]
    fn duplicate_keys_and_aliases_are_errors() {
        let (_, errs) = load("a: 1\na: 2\n");
        assert_eq!(errs[0].code, "PF003");
        assert_eq!(errs[0].span.line, 2);
        let (_, errs) = load("x: 0\na:\n  b: [1]\nc: 2\na: 3\n");
        assert_eq!(errs[0].code, "PF003");
        assert_eq!(errs[0].span.line, 5);
        assert!(errs[0].help.as_deref().unwrap_or("").contains("line 2"), "{:?}", errs[0].help);
        let (_, errs) = load("a: &x [1]\nb: *x\n");
        assert_eq!(errs[0].code, "PF004");
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut s = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for i in 1..10 {
            s.push_str(&format!(
                "{}: &{} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n",
                (b'a' + i) as char,
                (b'a' + i) as char,
                p = (b'a' + i - 1) as char
            ));
        }
        let (_, errs) = load(&s);
        assert!(errs.iter().all(|e| e.code == "PF004"));
        assert!(!errs.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = "[".repeat(20_000);
        let (_, errs) = load(&s);
        assert_eq!(errs.len(), 1);
        let deep_block: String = (0..20_000).map(|i| format!("{}k:\n", " ".repeat(i % 200))).collect();
        let (_, errs) = load(&deep_block);
        assert!(!errs.is_empty());
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(load("").1[0].code, "PF006");
        assert_eq!(load("# only a comment\n").1[0].code, "PF006");
        assert!(decode(&[0x61, 0xff, 0x00]).is_err());
        let (_, errs) = load("a:\n\tb: 1\n");
        assert_eq!(errs[0].code, "PF002");
    }

    #[test]
    fn block_scalar_content_position() {
        let (docs, _) = load("x:\n  long: |\n    hello\n    {{ y }}\n");
        let n = docs[0].spans.get("/x/long").unwrap();
        assert_eq!(n.block_content, Some((3, 5)));
    }
}
