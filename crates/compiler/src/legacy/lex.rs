//! The lexer: the characters of a legacy file as tokens, strings decoded with the position of
//! each character, comments and typographic quotes handled.

use super::diag::{Diags, Pos};

/// A decoded string: each character with the source position it came from (for an escape,
/// the position of its backslash).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StrLit {
    pub(super) chars: Vec<(char, Pos)>,
    /// False when the string was not closed properly (already reported).
    pub(super) closed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(StrLit),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Comma,
    Eq,
    Semi,
    Plus,
    Other(char),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) start: Pos,
    /// The position just after the token's last character.
    pub(super) end: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteKind {
    Double,
    Single,
}

/// The quote a character stands for, and whether it is a typographic one.
fn quote_kind(c: char) -> Option<(QuoteKind, bool)> {
    match c {
        '"' => Some((QuoteKind::Double, false)),
        '\'' => Some((QuoteKind::Single, false)),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{FF02}' => Some((QuoteKind::Double, true)),
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{FF07}' => Some((QuoteKind::Single, true)),
        _ => None,
    }
}

pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

pub(super) fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

pub(super) fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

pub(super) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
    typographic_delimiters: usize,
    first_typographic: Option<(Pos, char)>,
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i.saturating_add(k)).copied()
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn note_typographic(&mut self, at: Pos, c: char) {
        self.typographic_delimiters += 1;
        if self.first_typographic.is_none() {
            self.first_typographic = Some((at, c));
        }
    }

    fn skip_to_line_end(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn skip_trivia(&mut self, d: &mut Diags) {
        loop {
            match self.peek(0) {
                Some(c) if is_space(c) => {
                    self.bump();
                }
                Some('#') => self.skip_to_line_end(),
                Some('/') if self.peek(1) == Some('/') => self.skip_to_line_end(),
                Some('/') if self.peek(1) == Some('*') => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.peek(0) {
                            None => {
                                d.error(
                                    start,
                                    "this `/*` comment is never closed",
                                    Some("end the comment with `*/`; everything after `/*` was ignored".into()),
                                );
                                break;
                            }
                            Some('*') if self.peek(1) == Some('/') => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            Some(_) => {
                                self.bump();
                            }
                        }
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            if !is_name_char(c) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    fn string(&mut self, d: &mut Diags) -> StrLit {
        let open = self.pos();
        let Some(q) = self.bump() else {
            return StrLit { chars: Vec::new(), closed: false };
        };
        let Some((kind, typographic)) = quote_kind(q) else {
            return StrLit { chars: Vec::new(), closed: false };
        };
        if typographic {
            self.note_typographic(open, q);
        }
        let triple = !typographic && self.peek(0) == Some(q) && self.peek(1) == Some(q);
        if triple {
            self.bump();
            self.bump();
        }
        let plain = match kind {
            QuoteKind::Double => '"',
            QuoteKind::Single => '\'',
        };
        let delimiter = if triple { format!("{plain}{plain}{plain}") } else { plain.to_string() };
        let mut chars: Vec<(char, Pos)> = Vec::new();
        let mut typographic_inside: Option<(Pos, char)> = None;
        loop {
            let at = self.pos();
            let Some(c) = self.peek(0) else {
                d.error(
                    open,
                    "this string is never closed",
                    Some(unclosed_help(&delimiter, "the end of the file", typographic_inside)),
                );
                return StrLit { chars, closed: false };
            };
            if c == '\n' && !triple {
                d.error(
                    open,
                    "this string is never closed",
                    Some(unclosed_help(&delimiter, &format!("the end of line {}", at.line), typographic_inside)),
                );
                return StrLit { chars, closed: false };
            }
            let closes = if typographic { quote_kind(c).is_some_and(|(k, _)| k == kind) } else { c == q };
            if closes {
                if triple {
                    if self.peek(1) == Some(q) && self.peek(2) == Some(q) {
                        self.bump();
                        self.bump();
                        self.bump();
                        return StrLit { chars, closed: true };
                    }
                } else {
                    if quote_kind(c).is_some_and(|(_, t)| t) {
                        self.note_typographic(at, c);
                    }
                    self.bump();
                    return StrLit { chars, closed: true };
                }
            }
            if c == '\\' {
                self.bump();
                self.escape(at, &mut chars, d);
                continue;
            }
            if quote_kind(c).is_some_and(|(_, t)| t) && typographic_inside.is_none() {
                typographic_inside = Some((at, c));
            }
            self.bump();
            push_char(&mut chars, c, at, d);
        }
    }

    /// Decodes the escape whose backslash (at `at`) was just consumed.
    fn escape(&mut self, at: Pos, chars: &mut Vec<(char, Pos)>, d: &mut Diags) {
        let Some(e) = self.peek(0) else {
            return; // the caller reports the unclosed string
        };
        if e == '\n' {
            self.bump(); // a line continuation
            return;
        }
        self.bump();
        let decoded = match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{C}',
            '"' | '\'' | '\\' | '$' | '/' => e,
            c if quote_kind(c).is_some() => c,
            'u' => {
                let mut value: u32 = 0;
                let mut digits = 0;
                while digits < 4 {
                    match self.peek(0).and_then(|c| c.to_digit(16)) {
                        Some(v) => {
                            value = value * 16 + v;
                            digits += 1;
                            self.bump();
                        }
                        None => break,
                    }
                }
                let decoded = if digits == 4 { char::from_u32(value) } else { None };
                match decoded {
                    Some(c) => c,
                    None => {
                        d.error(
                            at,
                            if digits == 4 {
                                format!("`\\u{value:04X}` is not a character on its own (a UTF-16 surrogate)")
                            } else {
                                "`\\u` must be followed by exactly 4 hexadecimal digits".to_string()
                            },
                            Some("write the character itself instead of a `\\u` escape, e.g. `é` or `\\u00E9`".into()),
                        );
                        return;
                    }
                }
            }
            other => {
                d.error(
                    at,
                    format!("unknown escape `\\{other}` in a string"),
                    Some(format!(
                        "the known escapes are `\\\"` `\\'` `\\\\` `\\n` `\\t` `\\r` `\\uXXXX`; for a literal backslash write it twice: `\\\\{other}`"
                    )),
                );
                push_char(chars, '\\', at, d);
                push_char(chars, other, at, d);
                return;
            }
        };
        push_char(chars, decoded, at, d);
    }
}

fn push_char(chars: &mut Vec<(char, Pos)>, c: char, at: Pos, d: &mut Diags) {
    if c == '\0' {
        d.error(
            at,
            "a NUL character (U+0000) is not allowed in a string",
            Some("remove it; no SQL text or name may contain NUL".into()),
        );
        return;
    }
    chars.push((c, at));
}

fn unclosed_help(delimiter: &str, before: &str, typographic_inside: Option<(Pos, char)>) -> String {
    let mut help = format!("add the closing `{delimiter}` before {before}");
    if let Some((at, c)) = typographic_inside {
        let plain = match quote_kind(c) {
            Some((QuoteKind::Single, _)) => '\'',
            _ => '"',
        };
        help.push_str(&format!(
            "; the `{c}` at line {}, column {} is a typographic quote, which does not close a string opened with `{plain}`: replace it with `{plain}`",
            at.line, at.column
        ));
    }
    help
}

pub(super) fn lex(src: &str, d: &mut Diags) -> Vec<Token> {
    let text = src.replace("\r\n", "\n").replace('\r', "\n");
    let mut lx = Lexer {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
        typographic_delimiters: 0,
        first_typographic: None,
    };
    if lx.chars.first() == Some(&'\u{FEFF}') {
        lx.i = 1; // a byte-order mark: not a column
    }
    let mut tokens = Vec::new();
    loop {
        lx.skip_trivia(d);
        let start = lx.pos();
        let Some(c) = lx.peek(0) else {
            tokens.push(Token { tok: Tok::Eof, start, end: start });
            break;
        };
        let tok = if is_name_start(c) {
            Tok::Ident(lx.name())
        } else if quote_kind(c).is_some() {
            Tok::Str(lx.string(d))
        } else {
            lx.bump();
            match c {
                '{' => Tok::LBrace,
                '}' => Tok::RBrace,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                ':' => Tok::Colon,
                ',' => Tok::Comma,
                '=' => Tok::Eq,
                ';' => Tok::Semi,
                '+' => Tok::Plus,
                other => Tok::Other(other),
            }
        };
        tokens.push(Token { tok, start, end: lx.pos() });
    }
    if let Some((at, c)) = lx.first_typographic {
        let plain = match quote_kind(c) {
            Some((QuoteKind::Single, _)) => '\'',
            _ => '"',
        };
        let n = lx.typographic_delimiters;
        d.warn(
            at,
            format!(
                "typographic quote `{c}` read as `{plain}` ({n} typographic quote{} used as string delimiters in this file)",
                if n == 1 { "" } else { "s" }
            ),
            Some("the text was probably copied from a web page; provflow accepts it, the legacy connector does not: replace them with plain quotes".into()),
        );
    }
    tokens
}
