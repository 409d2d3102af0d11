//! The SQL lexer shared by query splitting (compiler) and install-script splitting (runner).
//!
//! [`Lexer`] turns SQL text into [`Token`]s for one [`Dialect`]; the tokens cover the text
//! exactly, each with its byte offset ([`LineIndex`] turns an offset into a line and column).
//! It knows only what decides where a token ends:
//!
//! | | SQLite | PostgreSQL | MariaDB |
//! |---|---|---|---|
//! | `'…'` (`''` doubled) | string | string | string, `\` escapes |
//! | `E'…'` | — | string, `\` escapes | — |
//! | `"…"` (`""` doubled) | identifier | identifier | string, `\` escapes |
//! | `` `…` `` (` `` ` doubled) | identifier | — | identifier |
//! | `[…]` | identifier | — | — |
//! | `$tag$…$tag$` | — | string | — |
//! | `-- …` | comment | comment | comment when followed by a space or control character |
//! | `# …` | — | — | comment |
//! | `/* … */` | comment | comment, nested | comment; `/*! … */` is executable |
//! | parameters | `?`, `?1`, `:a`, `@a`, `$a` | `$1` | `?` |
//!
//! MariaDB's backslash escapes are those of the default `sql_mode` (no
//! `NO_BACKSLASH_ESCAPES`); PostgreSQL's plain strings are those of
//! `standard_conforming_strings = on`. On MariaDB the lexer also understands the client's
//! `DELIMITER` directive: a line `DELIMITER //` at the start of a statement is one
//! [`TokenKind::DelimiterDirective`] token, after which `//` is a [`TokenKind::Delimiter`] and
//! `;` is no longer a statement end ([`Lexer::delimiter`]).
//!
//! A string, quoted identifier, block comment or dollar quote that is never closed is a
//! [`LexError`] at its first character; the lexer then stops. Placeholders (`{name}`) are
//! not SQL: they are the query language's own layer above this one (see the compiler's
//! `query` module) and lex as punctuation and words.
//!
//! [`split`] cuts a script into statements on top of the lexer, keeping compound statements
//! (trigger and routine bodies) whole.

use provflow_ir::Dialect;

mod split;

pub use split::{split, Statement};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Spaces, tabs, line breaks, vertical tabs and form feeds.
    Whitespace,
    /// `-- …` (and `# …` on MariaDB), up to but not including the line break.
    LineComment,
    /// `/* … */`.
    BlockComment,
    /// MariaDB's `/*! … */` and `/*M! … */`: a comment elsewhere, SQL to MariaDB.
    ExecutableComment,
    /// A keyword or an unquoted identifier.
    Word,
    /// A quoted identifier, quotes included.
    QuotedIdent,
    /// A string literal, quotes and any prefix (`E`, `X`, `B`, `N`, `U&`) included.
    String,
    /// A PostgreSQL dollar-quoted string, both tags included.
    DollarString,
    /// A numeric literal.
    Number,
    /// A bind parameter: `$1` (PostgreSQL), `?` (SQLite, MariaDB), `?1`, `:a`, `@a`, `$a` (SQLite).
    Parameter,
    /// `;`.
    Semicolon,
    /// MariaDB: the delimiter set by a `DELIMITER` directive, when it is not `;`.
    Delimiter,
    /// MariaDB: a `DELIMITER xx` client directive, to the end of its line.
    DelimiterDirective,
    /// Any other character (one character per token).
    Punct,
}

impl TokenKind {
    /// Whitespace and comments: not SQL. (An executable comment is SQL.)
    pub fn is_trivia(self) -> bool {
        matches!(self, TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment)
    }

    /// Text the database does not read as code: literals, quoted identifiers and comments.
    pub fn is_quoted_or_comment(self) -> bool {
        matches!(
            self,
            TokenKind::LineComment
                | TokenKind::BlockComment
                | TokenKind::QuotedIdent
                | TokenKind::String
                | TokenKind::DollarString
        )
    }
}

/// One token: its kind, its text and the byte offset of its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
    pub offset: usize,
}

impl Token<'_> {
    /// The byte offset just past the token.
    pub fn end(&self) -> usize {
        self.offset + self.text.len()
    }

    /// Whether the token is the word `keyword` (ASCII case-insensitive).
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// Whether the token is the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct && self.text.len() == c.len_utf8() && self.text.starts_with(c)
    }
}

/// What was left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unclosed {
    String,
    QuotedIdent,
    BlockComment,
    DollarQuote,
}

/// A string, quoted identifier, block comment or dollar quote that is never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LexError {
    pub unclosed: Unclosed,
    /// Byte offset of its first character (the quote, `/*`, or a string's prefix).
    pub offset: usize,
}

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.unclosed {
            Unclosed::String => "unterminated string literal",
            Unclosed::QuotedIdent => "unterminated quoted identifier",
            Unclosed::BlockComment => "unterminated block comment",
            Unclosed::DollarQuote => "unterminated dollar-quoted string",
        })
    }
}

impl std::error::Error for LexError {}

/// All tokens of `src`, or the first unclosed form.
pub fn tokenize(src: &str, dialect: Dialect) -> Result<Vec<Token<'_>>, LexError> {
    Lexer::new(src, dialect).collect()
}

/// The tokens of SQL text, in order; an iterator of `Result`s that ends after the first error.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    dialect: Dialect,
    pos: usize,
    /// MariaDB's client delimiter (`;` elsewhere, always).
    delimiter: String,
    /// Only whitespace since the last line break (or the start).
    at_line_start: bool,
    /// Nothing but whitespace and comments since the last statement end (or the start).
    at_statement_start: bool,
    failed: bool,
}

const DIRECTIVE: &[u8] = b"delimiter";

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A byte of an unquoted identifier after its first character. Every byte of a multi-byte
/// character is one, so a word always ends at a character boundary.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, dialect: Dialect) -> Self {
        Lexer {
            src,
            dialect,
            pos: 0,
            delimiter: ";".to_string(),
            at_line_start: true,
            at_statement_start: true,
            failed: false,
        }
    }

    /// The current statement delimiter: `;`, or what MariaDB's last `DELIMITER` directive set.
    pub fn delimiter(&self) -> &str {
        &self.delimiter
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    fn rest_from(&self, i: usize) -> &'a str {
        self.src.get(i..).unwrap_or_default()
    }

    /// The end of a run of bytes from `i` on that satisfy `pred`.
    fn scan_while(&self, mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
        while self.byte(i).is_some_and(&pred) {
            i += 1;
        }
        i
    }

    fn custom_delimiter_at(&self, i: usize) -> bool {
        self.dialect == Dialect::Mariadb && self.delimiter != ";" && self.rest_from(i).starts_with(&self.delimiter)
    }

    /// The end of the word whose first byte is at `start`. A MariaDB delimiter ends it
    /// (`END$$`).
    fn word_end(&self, start: usize) -> usize {
        let mut i = start + 1;
        while self.byte(i).is_some_and(is_word_byte) && !self.custom_delimiter_at(i) {
            i += 1;
        }
        i
    }

    /// The end of a quoted form that opens with the byte at `open` and closes with `close`;
    /// a doubled `close` stands for itself. `None` when it never closes.
    fn quoted_end(&self, open: usize, close: u8, backslash: bool) -> Option<usize> {
        let mut i = open + 1;
        loop {
            let b = self.byte(i)?;
            if backslash && b == b'\\' {
                i += 2;
            } else if b == close {
                if close != b']' && self.byte(i + 1) == Some(close) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            } else {
                i += 1;
            }
        }
    }

    fn block_comment_end(&self, start: usize) -> Option<usize> {
        let nested = self.dialect == Dialect::Postgres;
        let mut depth = 1usize;
        let mut i = start + 2;
        loop {
            match (self.byte(i)?, self.byte(i + 1)) {
                (b'*', Some(b'/')) => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                (b'/', Some(b'*')) if nested => {
                    depth += 1;
                    i += 2;
                }
                _ => i += 1,
            }
        }
    }

    /// A PostgreSQL dollar quote starting at `start` (a `$`): `Some(Ok(end))`, `Some(Err(()))`
    /// when it never closes, `None` when no tag starts there.
    fn dollar_string_end(&self, start: usize) -> Option<Result<usize, ()>> {
        let tag_end = if self.byte(start + 1) == Some(b'$') {
            start + 1
        } else if self.byte(start + 1).is_some_and(is_word_start) {
            self.scan_while(start + 1, |b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        } else {
            return None;
        };
        if self.byte(tag_end) != Some(b'$') {
            return None;
        }
        let tag = self.src.get(start..=tag_end)?;
        let body = tag_end + 1;
        Some(self.rest_from(body).find(tag).map(|p| body + p + tag.len()).ok_or(()))
    }

    /// A MariaDB `DELIMITER` directive at `start`: the end of its line and its argument.
    fn directive_at(&self, start: usize) -> Option<(usize, Option<&'a str>)> {
        let rest = self.rest_from(start);
        let word = rest.as_bytes().get(..DIRECTIVE.len())?;
        if !word.eq_ignore_ascii_case(DIRECTIVE) || !rest.as_bytes().get(DIRECTIVE.len()).is_some_and(|&b| is_space(b))
        {
            return None;
        }
        let end = rest.find('\n').map_or(self.src.len(), |p| start + p);
        let argument = self.src.get(start + DIRECTIVE.len()..end).and_then(|a| a.split_whitespace().next());
        Some((end, argument))
    }

    /// The end and kind of the token at `start` (whose first byte is `b`), or the error.
    fn lex_at(&mut self, start: usize, b: u8) -> Result<(usize, TokenKind), LexError> {
        use TokenKind as K;
        let d = self.dialect;
        let next = self.byte(start + 1);
        let unclosed = |unclosed: Unclosed| LexError { unclosed, offset: start };
        if d == Dialect::Mariadb {
            if self.at_line_start && self.at_statement_start {
                if let Some((end, argument)) = self.directive_at(start) {
                    if let Some(a) = argument {
                        self.delimiter = a.to_string();
                    }
                    return Ok((end, K::DelimiterDirective));
                }
            }
            if self.custom_delimiter_at(start) {
                return Ok((start + self.delimiter.len(), K::Delimiter));
            }
        }
        let token = match b {
            _ if is_space(b) => (self.scan_while(start, is_space), K::Whitespace),
            b'-' if next == Some(b'-')
                && (d != Dialect::Mariadb
                    || self.byte(start + 2).is_none_or(|c| is_space(c) || c.is_ascii_control())) =>
            {
                (self.scan_while(start, |c| c != b'\n'), K::LineComment)
            }
            b'#' if d == Dialect::Mariadb => (self.scan_while(start, |c| c != b'\n'), K::LineComment),
            b'/' if next == Some(b'*') => {
                let end = self.block_comment_end(start).ok_or(unclosed(Unclosed::BlockComment))?;
                let rest = self.rest_from(start);
                let executable = d == Dialect::Mariadb && (rest.starts_with("/*!") || rest.starts_with("/*M!"));
                (end, if executable { K::ExecutableComment } else { K::BlockComment })
            }
            b'\'' => {
                (self.quoted_end(start, b'\'', d == Dialect::Mariadb).ok_or(unclosed(Unclosed::String))?, K::String)
            }
            b'"' if d == Dialect::Mariadb => {
                (self.quoted_end(start, b'"', true).ok_or(unclosed(Unclosed::String))?, K::String)
            }
            b'"' => (self.quoted_end(start, b'"', false).ok_or(unclosed(Unclosed::QuotedIdent))?, K::QuotedIdent),
            b'`' if d != Dialect::Postgres => {
                (self.quoted_end(start, b'`', false).ok_or(unclosed(Unclosed::QuotedIdent))?, K::QuotedIdent)
            }
            b'[' if d == Dialect::Sqlite => {
                (self.quoted_end(start, b']', false).ok_or(unclosed(Unclosed::QuotedIdent))?, K::QuotedIdent)
            }
            b'$' if d == Dialect::Postgres => {
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    (self.scan_while(start + 1, |c| c.is_ascii_digit()), K::Parameter)
                } else {
                    match self.dollar_string_end(start) {
                        Some(end) => (end.map_err(|()| unclosed(Unclosed::DollarQuote))?, K::DollarString),
                        None => (start + 1, K::Punct),
                    }
                }
            }
            b'$' if d == Dialect::Mariadb => (self.word_end(start), K::Word),
            b'?' if d == Dialect::Sqlite => (self.scan_while(start + 1, |c| c.is_ascii_digit()), K::Parameter),
            b'?' if d == Dialect::Mariadb => (start + 1, K::Parameter),
            b':' | b'@' | b'$' if d == Dialect::Sqlite && next.is_some_and(is_word_byte) => {
                (self.scan_while(start + 1, is_word_byte), K::Parameter)
            }
            b'0'..=b'9' => self.number(start),
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) => self.number(start),
            _ if is_word_start(b) => self.word_or_prefixed_string(start)?,
            b';' => (start + 1, K::Semicolon),
            _ => (start + 1, K::Punct),
        };
        Ok(token)
    }

    fn number(&self, start: usize) -> (usize, TokenKind) {
        let digit = |c: u8| c.is_ascii_digit();
        let hex = self.byte(start) == Some(b'0')
            && matches!(self.byte(start + 1), Some(b'x' | b'X'))
            && self.byte(start + 2).is_some_and(|c| c.is_ascii_hexdigit());
        let mut i = if hex {
            self.scan_while(start + 2, |c| c.is_ascii_hexdigit())
        } else {
            let mut i = self.scan_while(start, digit);
            if self.byte(i) == Some(b'.') {
                i = self.scan_while(i + 1, digit);
            }
            if matches!(self.byte(i), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(self.byte(i + 1), Some(b'+' | b'-')));
                if self.byte(i + 1 + sign).is_some_and(digit) {
                    i = self.scan_while(i + 1 + sign, digit);
                }
            }
            i
        };
        // MariaDB identifiers may start with digits (`1st_table`).
        if self.dialect == Dialect::Mariadb
            && self.byte(start).is_some_and(digit)
            && self.byte(i).is_some_and(|c| is_word_byte(c) && !self.custom_delimiter_at(i))
        {
            i = self.word_end(i);
            return (i, TokenKind::Word);
        }
        (i, TokenKind::Number)
    }

    /// A word, or a string literal with a one-word prefix (`E'…'`, `X'…'`, `N'…'`, `B'…'`,
    /// PostgreSQL `U&'…'` and `U&"…"`).
    fn word_or_prefixed_string(&self, start: usize) -> Result<(usize, TokenKind), LexError> {
        let end = self.word_end(start);
        let prefix = if end == start + 1 { self.byte(start).map(|c| c.to_ascii_uppercase()) } else { None };
        let unclosed = |unclosed: Unclosed| LexError { unclosed, offset: start };
        let pg = self.dialect == Dialect::Postgres;
        let string = |open: usize, backslash: bool| {
            Ok((self.quoted_end(open, b'\'', backslash).ok_or(unclosed(Unclosed::String))?, TokenKind::String))
        };
        match (prefix, self.byte(end), self.byte(end + 1)) {
            (Some(b'E'), Some(b'\''), _) if pg => string(end, true),
            (Some(b'X' | b'B' | b'N'), Some(b'\''), _) => string(end, self.dialect == Dialect::Mariadb),
            (Some(b'U'), Some(b'&'), Some(b'\'')) if pg => string(end + 1, false),
            (Some(b'U'), Some(b'&'), Some(b'"')) if pg => Ok((
                self.quoted_end(end + 1, b'"', false).ok_or(unclosed(Unclosed::QuotedIdent))?,
                TokenKind::QuotedIdent,
            )),
            _ => Ok((end, TokenKind::Word)),
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Result<Token<'a>, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let start = self.pos;
        let b = self.byte(start)?;
        let (end, kind) = match self.lex_at(start, b) {
            Ok(token) => token,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        // Every token ends on an ASCII byte or at the end, so `end` is a character boundary.
        let end = end.min(self.src.len());
        let text = self.src.get(start..end).unwrap_or_default();
        self.pos = end;
        match kind {
            TokenKind::Whitespace => self.at_line_start |= text.contains('\n'),
            TokenKind::LineComment | TokenKind::BlockComment => self.at_line_start = false,
            TokenKind::Semicolon => {
                self.at_line_start = false;
                self.at_statement_start = self.delimiter == ";";
            }
            TokenKind::Delimiter | TokenKind::DelimiterDirective => {
                self.at_line_start = false;
                self.at_statement_start = true;
            }
            _ => {
                self.at_line_start = false;
                self.at_statement_start = false;
            }
        }
        Some(Ok(Token { kind, text, offset: start }))
    }
}

/// Line and column of byte offsets, for messages.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    src: &'a str,
    /// Byte offset of the first character of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(src: &'a str) -> Self {
        let starts = std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { src, starts }
    }

    /// The 1-based line and 1-based column (in characters) of a byte offset; an offset past
    /// the end or inside a character counts as the nearest character boundary before it.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let mut end = offset.min(self.src.len());
        while !self.src.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.src.get(start..end).map_or(0, |s| s.chars().count()) + 1;
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests;
