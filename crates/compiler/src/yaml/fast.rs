//! The fast reader: the block-structured YAML that definition files are written in, read line
//! by line into the same events, with the same spans, as the general parser gives.
//!
//! Definitions use a small part of YAML: block mappings and sequences, plain keys, one-line
//! plain and quoted scalars, one-line flow collections, literal and folded block scalars,
//! comments and `---` between documents. General YAML parsing costs several times more than
//! reading that part does, and it is most of a full compile's time. So this reader takes
//! exactly that part and gives up ([`Bail`]) at the first thing outside it: tabs, carriage
//! returns, control characters, anchors, aliases, tags, directives, `?` keys, quoted keys,
//! multi-line plain or quoted scalars, multi-line flow collections, block-scalar indentation
//! indicators, empty nodes it would have to invent, and every syntax error. The general parser
//! then reads the file from the start, so a file reads the same whichever reader took it.
//!
//! That equivalence is what the tests check: on every YAML file of the repository, on generated
//! files and under the fuzzer (`fuzz/run.sh 600 yaml_readers`), whenever this reader accepts a
//! text, its events and spans equal the general parser's.
//!
//! Nesting is bounded: past [`MAX_DEPTH`] - 1 levels the reader gives up and the general
//! parser reports the depth.

use std::borrow::Cow;

use super::{Ev, Sink, Style, MAX_DEPTH};
use crate::diagnostic::Span;

/// The text is outside what this reader takes; read it with the general parser. `at` is the
/// byte offset the reader had reached (for tests that explain a refusal).
#[derive(Debug)]
pub(crate) struct Bail {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) at: usize,
}

type R<T = ()> = Result<T, Bail>;

/// Reads `text` into `sink`, or gives up before the sink has seen anything it would not have
/// seen from the general parser (the caller then discards the sink).
pub(crate) fn read(text: &str, sink: &mut impl Sink) -> R {
    precheck(text)?;
    let mut r =
        Reader { text, b: text.as_bytes(), pos: 0, line: 1, line_start: 0, ascii: text.is_ascii(), depth: 0, sink };
    r.stream()
}

/// Characters the reader never takes: control characters other than the line feed (tabs and
/// carriage returns included), DEL, the byte-order mark, C1 controls, the Unicode line and
/// paragraph separators and the non-characters U+FFFE and U+FFFF. And a blank or comment last
/// line without a line break.
fn precheck(text: &str) -> R {
    let bad_byte = |c: &u8| (*c < 0x20 && *c != b'\n') || *c == 0x7f;
    if let Some(at) = text.as_bytes().iter().position(bad_byte) {
        return Err(Bail { at });
    }
    if !text.is_ascii()
        && text
            .chars()
            .any(|c| matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
    {
        return Err(Bail { at: 0 });
    }
    // A last line without a line break that holds only spaces or a comment: where the general
    // parser ends the stream then depends on what came before.
    let last = text.rsplit('\n').next().unwrap_or("");
    if !last.is_empty() && (last.bytes().all(|c| c == b' ') || last.trim_start_matches(' ').starts_with('#')) {
        return Err(Bail { at: text.len() - last.len() });
    }
    Ok(())
}

/// A position: byte offset, 1-based line, 0-based column in characters.
#[derive(Debug, Clone, Copy)]
struct Mark {
    index: usize,
    line: u32,
    col: u32,
}

fn span(a: Mark, b: Mark) -> Span {
    Span { line: a.line, column: a.col + 1, end_line: b.line, end_column: b.col + 1, start: a.index, end: b.index }
}

/// Longer keys go to the general parser, which enforces YAML's limit of 1,024 characters on
/// a key written without `?` (counted here in bytes, so that no key near the limit is taken).
const MAX_KEY: usize = 1000;

/// Characters that cannot start a plain scalar (YAML's indicators).
fn indicator(c: u8) -> bool {
    matches!(
        c,
        b'[' | b']' | b'{' | b'}' | b',' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`'
    )
}

fn flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

/// Whether the character after a `-`, `?` or `:` in a flow collection ends it there (a space,
/// a line break, a flow indicator or the end): the indicator then cannot start a plain scalar.
fn ends_flow_indicator(next: Option<u8>) -> bool {
    next.is_none_or(|n| flow_indicator(n) || n == b' ' || n == b'\n')
}

struct Reader<'t, 's, S: Sink> {
    text: &'t str,
    b: &'t [u8],
    /// The next byte to read.
    pos: usize,
    /// The line `pos` is on (1-based) and where that line starts.
    line: u32,
    line_start: usize,
    /// An ASCII text's columns are byte distances.
    ascii: bool,
    /// Open collections, block and flow.
    depth: usize,
    sink: &'s mut S,
}

impl<S: Sink> Reader<'_, '_, S> {
    // --- positions -----------------------------------------------------------------------

    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn cur(&self) -> Option<u8> {
        self.at(self.pos)
    }

    /// The mark of byte `i` on the current line.
    fn mark_at(&self, i: usize) -> Mark {
        let col = if self.ascii {
            i.saturating_sub(self.line_start)
        } else {
            self.text.get(self.line_start..i).map_or(0, |s| s.chars().count())
        };
        Mark { index: i, line: self.line, col: col as u32 }
    }

    fn mark(&self) -> Mark {
        if self.pos >= self.b.len() {
            return self.eof_mark();
        }
        self.mark_at(self.pos)
    }

    /// Where the general parser puts the end of the stream: the start of the line after the
    /// last line break, or of the line after the last line when the text does not end with one.
    fn eof_mark(&self) -> Mark {
        let line = if self.line_start >= self.b.len() { self.line } else { self.line + 1 };
        Mark { index: self.b.len(), line, col: 0 }
    }

    /// Where the general parser ends a quoted scalar or a closing bracket that ends at `i`:
    /// past the spaces after it, and past a comment that follows them.
    fn tail(&self, i: usize) -> usize {
        let mut j = i;
        while self.at(j) == Some(b' ') {
            j += 1;
        }
        if j > i && self.at(j) == Some(b'#') {
            j = self.b.get(j..).and_then(|r| r.iter().position(|&c| c == b'\n')).map_or(self.b.len(), |p| j + p);
        }
        j
    }

    fn emit(&mut self, ev: Ev<'_>, at: Span) -> R {
        if self.sink.event(ev, at) {
            Ok(())
        } else {
            // The sink stopped (an error it reports itself): the general parser would stop too,
            // but its error may differ; let it read the file.
            Err(Bail { at: self.pos })
        }
    }

    fn empty(&self, m: Mark) -> Span {
        span(m, m)
    }

    // --- lines ---------------------------------------------------------------------------

    /// Moves to the start of the next line (or the end of the text).
    fn next_line(&mut self) {
        match self.b.get(self.pos..).and_then(|rest| rest.iter().position(|&c| c == b'\n')) {
            Some(i) => {
                self.pos += i + 1;
                self.line += 1;
                self.line_start = self.pos;
            }
            None => self.pos = self.b.len(),
        }
    }

    /// From the start of a line: skips blank and comment-only lines and the indentation of
    /// the next line with content. Returns that line's indentation, or -1 at the end of the
    /// text or at a `---` line (both end every open block collection).
    fn skip_blank_lines(&mut self) -> R<isize> {
        loop {
            let mut i = self.pos;
            while self.at(i) == Some(b' ') {
                i += 1;
            }
            match self.at(i) {
                None => {
                    self.pos = i;
                    return Ok(-1);
                }
                Some(b'\n') | Some(b'#') => {
                    self.pos = i;
                    self.next_line();
                }
                Some(_) => {
                    self.pos = i;
                    let indent = i - self.line_start;
                    if indent == 0 {
                        if self.starts_marker(b"---") {
                            return Ok(-1);
                        }
                        if self.starts_marker(b"...") || self.cur() == Some(b'%') {
                            return Err(Bail { at: self.pos });
                        }
                    }
                    return Ok(indent as isize);
                }
            }
        }
    }

    /// `---` or `...` at the start of a line at `pos`, followed by a space, a line break or the
    /// end.
    fn starts_marker(&self, marker: &[u8]) -> bool {
        self.pos == self.line_start
            && self.b.get(self.pos..).is_some_and(|rest| rest.starts_with(marker))
            && matches!(self.at(self.pos + 3), None | Some(b' ') | Some(b'\n'))
    }

    /// The span of the `---` at `pos`.
    fn marker_span(&self) -> Span {
        span(self.mark(), self.mark_at(self.pos + 3))
    }

    /// After a value on its line: spaces, then a comment or the line break. Moves to the next
    /// line with content and returns its indentation ([`Self::skip_blank_lines`]).
    fn end_line(&mut self) -> R<isize> {
        let start = self.pos;
        while self.cur() == Some(b' ') {
            self.pos += 1;
        }
        match self.cur() {
            None => {}
            Some(b'\n') => self.next_line(),
            // A comment must be separated from the value by a space.
            Some(b'#') if self.pos > start => self.next_line(),
            Some(_) => return Err(Bail { at: self.pos }),
        }
        self.skip_blank_lines()
    }

    /// A `-` entry indicator at `pos`: `-` followed by a space or the line's end.
    fn at_entry(&self) -> bool {
        self.cur() == Some(b'-') && matches!(self.at(self.pos + 1), None | Some(b' ') | Some(b'\n'))
    }

    /// If the line from `pos` is a mapping entry with a plain or one-line quoted key, the
    /// offset of its `:`.
    fn key_colon(&self) -> Option<usize> {
        let first = self.cur()?;
        if first == b'"' || first == b'\'' {
            let mut i = self.pos + 1;
            loop {
                match self.at(i)? {
                    b'\n' => return None,
                    b'\\' if first == b'"' => i += 2,
                    b'\'' if first == b'\'' && self.at(i + 1) == Some(b'\'') => i += 2,
                    c if c == first => break,
                    _ => i += 1,
                }
            }
            i += 1;
            while self.at(i) == Some(b' ') {
                i += 1;
            }
            return (self.at(i) == Some(b':') && matches!(self.at(i + 1), None | Some(b' ') | Some(b'\n')))
                .then_some(i);
        }
        if indicator(first)
            || (matches!(first, b'-' | b'?' | b':') && matches!(self.at(self.pos + 1), None | Some(b' ') | Some(b'\n')))
        {
            return None;
        }
        let mut i = self.pos;
        while let Some(c) = self.at(i) {
            match c {
                b'\n' => return None,
                b':' if matches!(self.at(i + 1), None | Some(b' ') | Some(b'\n')) => return Some(i),
                b'#' if self.at(i.wrapping_sub(1)) == Some(b' ') => return None,
                _ => i += 1,
            }
        }
        None
    }

    // --- documents -----------------------------------------------------------------------

    fn stream(&mut self) -> R {
        let mut indent = self.skip_blank_lines()?;
        loop {
            if self.pos >= self.b.len() {
                return Ok(());
            }
            // An explicit start spans its `---`; an implicit one is empty, at the content.
            let start = if self.starts_marker(b"---") {
                let marker = self.marker_span();
                self.pos += 3;
                indent = self.end_line()?;
                if indent < 0 {
                    // An empty document: the general parser makes it a null.
                    return Err(Bail { at: self.pos });
                }
                marker
            } else {
                self.empty(self.mark())
            };
            // A definition is a block mapping (a sequence at least reads alike); any other root
            // is refused by the compiler, and the general parser reads it.
            if !self.at_entry() && self.key_colon().is_none() {
                return Err(Bail { at: self.pos });
            }
            self.emit(Ev::DocumentStart, start)?;
            indent = self.block_node(-1, indent)?;
            if indent >= 0 {
                return Err(Bail { at: self.pos });
            }
            let end = if self.starts_marker(b"---") { self.marker_span() } else { self.empty(self.mark()) };
            self.emit(Ev::DocumentEnd, end)?;
        }
    }

    // --- block structure -----------------------------------------------------------------

    fn enter(&mut self) -> R {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Bail { at: self.pos });
        }
        Ok(())
    }

    /// A node that starts on its own line, at `pos` (indentation `indent` > `parent`). Returns
    /// the indentation of the next line with content.
    fn block_node(&mut self, parent: isize, indent: isize) -> R<isize> {
        if self.at_entry() {
            self.block_sequence(indent, false)
        } else if self.key_colon().is_some() {
            self.block_mapping(indent)
        } else {
            self.inline_value(parent)
        }
    }

    /// A block mapping whose keys stand at column `n`; `pos` is at its first key.
    fn block_mapping(&mut self, n: isize) -> R<isize> {
        self.enter()?;
        self.emit(Ev::MappingStart, self.empty(self.mark()))?;
        let next = loop {
            let colon = self.key_colon().ok_or(Bail { at: self.pos })?;
            if colon - self.pos > MAX_KEY {
                return Err(Bail { at: self.pos });
            }
            if matches!(self.cur(), Some(b'"') | Some(b'\'')) {
                self.quoted()?;
            } else {
                let key_start = self.mark();
                let key = self.text.get(self.pos..colon).ok_or(Bail { at: self.pos })?.trim_end_matches(' ');
                let key_end = self.mark_at(self.pos + key.len());
                self.emit(
                    Ev::Scalar { text: Cow::Borrowed(key), style: Style::Plain, tag: None },
                    span(key_start, key_end),
                )?;
            }
            self.pos = colon + 1;
            while self.cur() == Some(b' ') {
                self.pos += 1;
            }
            let next = match self.cur() {
                None | Some(b'\n') | Some(b'#') => {
                    // The value, if any, is on the lines below.
                    let colon_mark = self.mark_at(colon);
                    if self.pos < self.b.len() {
                        self.next_line();
                    }
                    let m = self.skip_blank_lines()?;
                    if m > n {
                        self.block_node(n, m)?
                    } else if m == n && self.at_entry() {
                        self.block_sequence(n, true)?
                    } else {
                        self.emit(
                            Ev::Scalar { text: Cow::Borrowed(""), style: Style::Plain, tag: None },
                            self.empty(colon_mark),
                        )?;
                        m
                    }
                }
                Some(_) => self.inline_value(n)?,
            };
            if next == n && !self.at_entry() {
                continue;
            }
            if next < n {
                break next;
            }
            return Err(Bail { at: self.pos });
        };
        self.emit(Ev::MappingEnd, self.empty(self.mark()))?;
        self.depth -= 1;
        Ok(next)
    }

    /// A block sequence whose `-` stand at column `n`; `pos` is at the first `-`. An indentless
    /// sequence is a mapping's value written at the mapping's own indentation.
    fn block_sequence(&mut self, n: isize, indentless: bool) -> R<isize> {
        self.enter()?;
        let mut first = true;
        let next = loop {
            let dash = self.mark();
            self.pos += 1;
            while self.cur() == Some(b' ') {
                self.pos += 1;
            }
            let on_next_line = matches!(self.cur(), None | Some(b'\n') | Some(b'#'));
            if first {
                // The general parser starts an indentless sequence after its first `-`, the spaces and
                // a comment after it.
                let at = if indentless { self.mark_at(self.tail(dash.index + 1)) } else { dash };
                self.emit(Ev::SequenceStart, self.empty(at))?;
                first = false;
            }
            let next = if on_next_line {
                if self.pos < self.b.len() {
                    self.next_line();
                }
                let m = self.skip_blank_lines()?;
                if m <= n {
                    // An empty item.
                    return Err(Bail { at: self.pos });
                }
                self.block_node(n, m)?
            } else if self.at_entry() {
                // `- - x`: a sequence in a sequence on one line.
                return Err(Bail { at: self.pos });
            } else if self.key_colon().is_some() {
                // Only spaces and `-` precede `pos` on this line: bytes are columns.
                self.block_mapping((self.pos - self.line_start) as isize)?
            } else {
                self.inline_value(n)?
            };
            if next == n && self.at_entry() {
                continue;
            }
            if next < n || (indentless && next == n) {
                break next;
            }
            return Err(Bail { at: self.pos });
        };
        self.emit(Ev::SequenceEnd, self.empty(self.mark()))?;
        self.depth -= 1;
        Ok(next)
    }

    /// A value that starts at `pos`, on the line of its key or `-`, or on a line of its own.
    /// Lines it continues on must be indented deeper than `parent`; the next line with content
    /// must not be. Returns that line's indentation.
    fn inline_value(&mut self, parent: isize) -> R<isize> {
        let next = match self.cur().ok_or(Bail { at: self.pos })? {
            b'|' | b'>' => {
                self.block_scalar(parent)?;
                // The block scalar ends at the first non-space of a less indented line: a
                // comment, or the next node.
                if self.cur() == Some(b'#') {
                    self.next_line();
                }
                self.skip_blank_lines()?
            }
            b'[' | b'{' => {
                self.flow_node()?;
                self.end_line()?
            }
            b'"' | b'\'' => {
                self.quoted()?;
                self.end_line()?
            }
            c if indicator(c) => return Err(Bail { at: self.pos }),
            _ => {
                self.plain_block()?;
                self.end_line()?
            }
        };
        if next > parent {
            return Err(Bail { at: self.pos });
        }
        Ok(next)
    }

    /// A one-line plain scalar in block context, at `pos`.
    fn plain_block(&mut self) -> R {
        let first = self.cur().ok_or(Bail { at: self.pos })?;
        if matches!(first, b'-' | b'?' | b':') && matches!(self.at(self.pos + 1), None | Some(b' ') | Some(b'\n')) {
            return Err(Bail { at: self.pos });
        }
        let start = self.pos;
        let mut i = start;
        while let Some(c) = self.at(i) {
            match c {
                b'\n' => break,
                // `key: a: b` is an error; let the general parser say so.
                b':' if matches!(self.at(i + 1), None | Some(b' ') | Some(b'\n')) => return Err(Bail { at: self.pos }),
                b'#' if self.at(i.wrapping_sub(1)) == Some(b' ') => break,
                _ => i += 1,
            }
        }
        let value = self.text.get(start..i).ok_or(Bail { at: self.pos })?.trim_end_matches(' ');
        let end = start + value.len();
        let at = span(self.mark_at(start), self.mark_at(end));
        self.pos = end;
        self.emit(Ev::Scalar { text: Cow::Borrowed(value), style: Style::Plain, tag: None }, at)
    }

    /// A literal (`|`) or folded (`>`) block scalar; `pos` is at the indicator. Leaves `pos`
    /// at the first non-space of the line that ends it (or the end of the text).
    fn block_scalar(&mut self, parent: isize) -> R {
        if parent < 0 {
            return Err(Bail { at: self.pos });
        }
        let folded = self.cur() == Some(b'>');
        self.pos += 1;
        #[derive(PartialEq)]
        enum Chomp {
            Strip,
            Clip,
            Keep,
        }
        let chomp = match self.cur() {
            Some(b'-') => Chomp::Strip,
            Some(b'+') => Chomp::Keep,
            _ => Chomp::Clip,
        };
        if chomp != Chomp::Clip {
            self.pos += 1;
        }
        // The header: an optional comment, then the line break.
        let header_end = self.pos;
        while self.cur() == Some(b' ') {
            self.pos += 1;
        }
        match self.cur() {
            Some(b'\n') => {}
            Some(b'#') if self.pos > header_end => {}
            // An indentation indicator, or anything else.
            _ => return Err(Bail { at: self.pos }),
        }
        self.next_line();
        // The first line sets the content's indentation; it must hold text.
        let mut i = self.pos;
        while self.at(i) == Some(b' ') {
            i += 1;
        }
        if matches!(self.at(i), None | Some(b'\n')) {
            return Err(Bail { at: self.pos });
        }
        let indent = i - self.line_start;
        if indent as isize <= parent {
            return Err(Bail { at: self.pos });
        }
        let start = self.mark_at(i);
        // Content lines (None: an empty line).
        let mut lines: Vec<Option<&str>> = Vec::new();
        let end = loop {
            if self.pos >= self.b.len() {
                break self.eof_mark();
            }
            let ls = self.pos;
            let mut i = ls;
            while self.at(i) == Some(b' ') {
                i += 1;
            }
            let spaces = i - ls;
            match self.at(i) {
                Some(b'\n') if spaces <= indent => {
                    lines.push(None);
                    self.pos = i;
                    self.next_line();
                }
                // Trailing spaces at the end of the text, or a blank line with more spaces
                // than the indentation (content made of spaces).
                None | Some(b'\n') => return Err(Bail { at: self.pos }),
                Some(_) if spaces < indent => {
                    self.pos = i;
                    break self.mark_at(i);
                }
                Some(_) => {
                    let eol = self
                        .b
                        .get(i..)
                        .and_then(|r| r.iter().position(|&c| c == b'\n'))
                        .map_or(self.b.len(), |p| i + p);
                    let content = self.text.get(ls + indent..eol).ok_or(Bail { at: self.pos })?;
                    lines.push(Some(content));
                    self.pos = eol;
                    if eol < self.b.len() {
                        self.next_line();
                    } else {
                        // The last line has no line break: the scalar ends with its text.
                        break self.mark_at(eol);
                    }
                }
            }
        };
        let last = lines.iter().rposition(Option::is_some).ok_or(Bail { at: self.pos })?;
        let trailing = lines.len() - last - 1;
        let body = lines.get(..=last).ok_or(Bail { at: self.pos })?;
        let mut value = String::with_capacity(body.iter().map(|l| l.map_or(0, str::len) + 1).sum::<usize>() + trailing);
        if folded {
            // Between two lines of text the line break folds: into a space, or, when empty
            // lines follow it, into one line feed per empty line. A more-indented line keeps
            // the line breaks around it.
            let mut empties = 0;
            let mut prev_spaced = false;
            for (k, l) in body.iter().enumerate() {
                match l {
                    None => empties += 1,
                    Some(text) => {
                        let spaced = text.starts_with(' ');
                        if k > 0 {
                            if spaced || prev_spaced {
                                value.extend(std::iter::repeat_n('\n', empties + 1));
                            } else if empties == 0 {
                                value.push(' ');
                            } else {
                                value.extend(std::iter::repeat_n('\n', empties));
                            }
                        }
                        empties = 0;
                        prev_spaced = spaced;
                        value.push_str(text);
                    }
                }
            }
        } else {
            for (k, l) in body.iter().enumerate() {
                if k > 0 {
                    value.push('\n');
                }
                value.push_str(l.unwrap_or(""));
            }
        }
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => value.push('\n'),
            Chomp::Keep => value.extend(std::iter::repeat_n('\n', 1 + trailing)),
        }
        let style = if folded { Style::Folded } else { Style::Literal };
        self.emit(Ev::Scalar { text: Cow::Owned(value), style, tag: None }, span(start, end))
    }

    // --- scalars and flow collections (one line) ---------------------------------------

    /// A single- or double-quoted scalar on one line, at `pos`.
    fn quoted(&mut self) -> R {
        let start = self.pos;
        let double = self.cur() == Some(b'"');
        let mut i = start + 1;
        // The unescaped text, borrowed until the first escape.
        let mut owned: Option<String> = None;
        let mut run = i;
        loop {
            let c = self.at(i).ok_or(Bail { at: self.pos })?;
            match c {
                b'\n' => return Err(Bail { at: self.pos }),
                b'"' if double => break,
                b'\'' if !double => {
                    if self.at(i + 1) == Some(b'\'') {
                        let s = owned.get_or_insert_with(String::new);
                        s.push_str(self.text.get(run..=i).ok_or(Bail { at: self.pos })?);
                        i += 2;
                        run = i;
                        continue;
                    }
                    break;
                }
                b'\\' if double => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(self.text.get(run..i).ok_or(Bail { at: self.pos })?);
                    let (ch, len) = self.escape(i + 1)?;
                    s.push(ch);
                    i += 1 + len;
                    run = i;
                }
                _ => i += 1,
            }
        }
        let rest = self.text.get(run..i).ok_or(Bail { at: self.pos })?;
        let text = match owned {
            Some(mut s) => {
                s.push_str(rest);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(rest),
        };
        let at = span(self.mark_at(start), self.mark_at(self.tail(i + 1)));
        self.pos = i + 1;
        let style = if double { Style::DoubleQuoted } else { Style::SingleQuoted };
        self.emit(Ev::Scalar { text, style, tag: None }, at)
    }

    /// The escape sequence after a `\` at `i`: the character and the bytes it takes.
    fn escape(&self, i: usize) -> R<(char, usize)> {
        let hex = |len: usize| -> R<(char, usize)> {
            let digits = self.text.get(i + 1..i + 1 + len).ok_or(Bail { at: self.pos })?;
            if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(Bail { at: self.pos });
            }
            let code = u32::from_str_radix(digits, 16).map_err(|_| Bail { at: self.pos })?;
            Ok((char::from_u32(code).ok_or(Bail { at: self.pos })?, 1 + len))
        };
        let ch = match self.at(i).ok_or(Bail { at: self.pos })? {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' => return hex(2),
            b'u' => return hex(4),
            b'U' => return hex(8),
            _ => return Err(Bail { at: self.pos }),
        };
        Ok((ch, 1))
    }

    /// Spaces inside a flow collection; the collection must go on on the same line.
    fn flow_spaces(&mut self) -> R {
        while self.cur() == Some(b' ') {
            self.pos += 1;
        }
        match self.cur() {
            None | Some(b'\n') | Some(b'#') => Err(Bail { at: self.pos }),
            Some(_) => Ok(()),
        }
    }

    /// A node inside a flow collection (or a flow collection as a block value), at `pos`.
    fn flow_node(&mut self) -> R {
        match self.cur().ok_or(Bail { at: self.pos })? {
            b'[' => self.flow_collection(false),
            b'{' => self.flow_collection(true),
            b'"' | b'\'' => self.quoted(),
            _ => self.plain_flow(),
        }
    }

    /// `[a, b]` or `{k: v, k2: v2}` on one line; `pos` is at the bracket.
    fn flow_collection(&mut self, mapping: bool) -> R {
        self.enter()?;
        let open = self.mark();
        self.pos += 1;
        self.flow_spaces()?;
        // The general parser's start event runs from the bracket to the next token.
        let (start, end, close) =
            if mapping { (Ev::MappingStart, Ev::MappingEnd, b'}') } else { (Ev::SequenceStart, Ev::SequenceEnd, b']') };
        self.emit(start, span(open, self.mark()))?;
        if self.cur() != Some(close) {
            loop {
                if mapping {
                    let key_start = self.pos;
                    match self.cur() {
                        Some(b'"') | Some(b'\'') => self.quoted()?,
                        Some(b'[') | Some(b'{') => return Err(Bail { at: self.pos }),
                        _ => self.plain_flow()?,
                    }
                    if self.cur() != Some(b':') || self.at(self.pos + 1) != Some(b' ') || self.pos - key_start > MAX_KEY
                    {
                        return Err(Bail { at: self.pos });
                    }
                    self.pos += 1;
                    self.flow_spaces()?;
                    if self.cur().is_some_and(|c| matches!(c, b',' | b'}')) {
                        return Err(Bail { at: self.pos });
                    }
                }
                self.flow_node()?;
                self.flow_spaces()?;
                match self.cur() {
                    Some(b',') => {
                        self.pos += 1;
                        self.flow_spaces()?;
                        if self.cur() == Some(close) {
                            // A trailing comma.
                            return Err(Bail { at: self.pos });
                        }
                    }
                    Some(c) if c == close => break,
                    _ => return Err(Bail { at: self.pos }),
                }
            }
        }
        let at = span(self.mark(), self.mark_at(self.tail(self.pos + 1)));
        self.pos += 1;
        self.emit(end, at)?;
        self.depth -= 1;
        Ok(())
    }

    /// A plain scalar inside a flow collection, at `pos`: it ends before `,[]{}`, before a `:`
    /// followed by a space, or at trailing spaces before those.
    fn plain_flow(&mut self) -> R {
        let first = self.cur().ok_or(Bail { at: self.pos })?;
        // `-`, `?` and `:` start a plain scalar only before a character that can go on with it.
        if indicator(first) || matches!(first, b'-' | b'?' | b':') && ends_flow_indicator(self.at(self.pos + 1)) {
            return Err(Bail { at: self.pos });
        }
        let start = self.pos;
        let mut i = start;
        loop {
            match self.at(i).ok_or(Bail { at: self.pos })? {
                b'\n' => return Err(Bail { at: self.pos }),
                c if flow_indicator(c) => break,
                b':' => match self.at(i + 1) {
                    Some(b' ') => break,
                    _ => return Err(Bail { at: self.pos }),
                },
                b'#' if self.at(i.wrapping_sub(1)) == Some(b' ') => return Err(Bail { at: self.pos }),
                // `x -]`: the general parser reads a `-` or `?` after a space as the start of
                // another scalar, and refuses it before a flow indicator.
                b'-' | b'?' if self.at(i.wrapping_sub(1)) == Some(b' ') && ends_flow_indicator(self.at(i + 1)) => {
                    return Err(Bail { at: self.pos })
                }
                _ => i += 1,
            }
        }
        let value = self.text.get(start..i).ok_or(Bail { at: self.pos })?.trim_end_matches(' ');
        if value.is_empty() {
            return Err(Bail { at: self.pos });
        }
        let end = start + value.len();
        let at = span(self.mark_at(start), self.mark_at(end));
        self.pos = end;
        self.emit(Ev::Scalar { text: Cow::Borrowed(value), style: Style::Plain, tag: None }, at)
    }
}

/// Collects events, owning their text.
#[derive(Default)]
struct Events(Vec<(Ev<'static>, Span)>);

impl Sink for Events {
    fn event(&mut self, ev: Ev<'_>, span: Span) -> bool {
        let ev = match ev {
            Ev::Scalar { text, style, tag } => Ev::Scalar { text: Cow::Owned(text.into_owned()), style, tag },
            Ev::DocumentStart => Ev::DocumentStart,
            Ev::DocumentEnd => Ev::DocumentEnd,
            Ev::SequenceStart => Ev::SequenceStart,
            Ev::SequenceEnd => Ev::SequenceEnd,
            Ev::MappingStart => Ev::MappingStart,
            Ev::MappingEnd => Ev::MappingEnd,
            Ev::Alias => Ev::Alias,
        };
        self.0.push((ev, span));
        true
    }
}

/// Both readers on `text`: `Ok(None)` when the fast reader gives up, `Ok(Some(events))` when it
/// takes the text and its events and spans equal the general parser's, `Err` saying how they
/// differ otherwise.
pub(crate) fn differential(text: &str) -> Result<Option<Vec<(Ev<'static>, Span)>>, String> {
    let mut fast = Events::default();
    if read(text, &mut fast).is_err() {
        return Ok(None);
    }
    let lines = super::LineIndex::new(text);
    let mut general = Events::default();
    let mut errors = Vec::new();
    super::general_into(text, &lines, &mut general, &mut errors);
    if !errors.is_empty() {
        return Err(format!("the fast reader took a text the general parser refuses: {errors:?}\n---\n{text}"));
    }
    for (k, (f, g)) in fast.0.iter().zip(&general.0).enumerate() {
        if f != g {
            return Err(format!("event {k} differs\n  fast:    {f:?}\n  general: {g:?}\n---\n{text}"));
        }
    }
    if fast.0.len() != general.0.len() {
        return Err(format!(
            "the fast reader gives {} events, the general parser {}\n---\n{text}",
            fast.0.len(),
            general.0.len()
        ));
    }
    Ok(Some(fast.0))
}

#[cfg(test)]
mod tests;
