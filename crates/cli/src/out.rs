//! Everything the command line prints goes through this module. Three guarantees:
//!
//! - **Inert text.** Human output escapes every control character (C0, DEL, C1, ESC) and every
//!   bidirectional-text control, visibly (`\e`, `\n`, `\u{202e}`), so a display name, a form
//!   value or a database's error message can neither move the cursor, recolour or retitle the
//!   terminal, nor reorder what a person reads. JSON output stays JSON and escapes the
//!   characters serde_json leaves raw (DEL, C1, bidi controls) as `\uXXXX`.
//! - **No secret.** Every write passes [`credentials::scrub_known`]: the secrets of every
//!   connection string the runner resolved are masked, whichever layer wrote the message.
//! - **A closed output loses nothing.** A write that fails (the reader went away: EPIPE,
//!   `provflow run ... | head -1`) marks that stream closed and returns: no panic, no
//!   further writes to it, and the command's work goes on to its end and its exit code.
//!   SIGPIPE stays ignored, as Rust's runtime sets it, so the failed write is an error and not
//!   the end of the process.
//!
//! Use the macros: `outln!` and `errln!` print one line of human output (its data escaped),
//! [`json`] one JSON value per line, [`text`] a multi-line block (graphs, imported YAML).

use provflow_runner::credentials;
use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use unicode_width::UnicodeWidthStr;

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// One line of human output on standard output: `outln!("user {}", login)`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line($crate::out::Stream::Out, &format!($($arg)*))
    };
}

/// One line of human output on standard error: `errln!("error: {message}")`.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::line($crate::out::Stream::Err, &format!($($arg)*))
    };
}

pub(crate) use {errln, outln};

/// Writes `text` as one line, every control character in it escaped.
pub fn line(stream: Stream, text: &str) {
    let mut s = safe(text).into_owned();
    s.push('\n');
    write(stream, &s);
}

/// Writes a multi-line block as is, but for control characters other than newline and tab.
pub fn text(stream: Stream, block: &str) {
    write(stream, &safe_keeping_lines(block));
}

/// Writes one JSON value on its own line of standard output.
pub fn json(value: &serde_json::Value) {
    let mut s = json_text(value);
    s.push('\n');
    write(Stream::Out, &s);
}

/// A JSON value as one line: serde_json's escaping plus `\uXXXX` for DEL, C1 and bidi controls
/// (they can only stand inside strings, where the escape means the same character).
pub fn json_text(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(needs_escape) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes text that is already inert (a rendered diagnostic whose parts were escaped, with the
/// colours the renderer chose). Secrets are still masked and a closed stream still ignored.
pub fn raw(stream: Stream, text: &str) {
    write(stream, text);
}

/// Whether standard output was found closed (a reader that went away).
#[cfg(test)]
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write(stream: Stream, text: &str) {
    let text = credentials::scrub_known(text);
    match stream {
        Stream::Out => write_guarded(&mut io::stdout().lock(), &STDOUT_CLOSED, text.as_bytes()),
        Stream::Err => write_guarded(&mut io::stderr().lock(), &STDERR_CLOSED, text.as_bytes()),
    }
}

/// Writes and flushes `bytes` unless `closed`; a failure (EPIPE, or any other: there is nobody
/// to tell) sets `closed`, so nothing more is tried on that stream.
fn write_guarded(w: &mut dyn Write, closed: &AtomicBool, bytes: &[u8]) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// A character that must not reach a terminal raw: C0 controls, DEL, C1 controls, the
/// bidirectional-text controls and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{1b}' => out.push_str("\\e"),
        '\0' => out.push_str("\\0"),
        c if u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// `s` with every control character escaped visibly, for one line or one table cell.
pub fn safe(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// `s` with every control character but newline and tab escaped, for a multi-line block.
fn safe_keeping_lines(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) && !keep(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Source text for a rendered snippet: every control character but newline, tab and the CR
/// of a CRLF replaced by `?` repeated to its UTF-8 length, so that byte offsets (the
/// diagnostic's span) still point at the same text.
pub fn inert_source(text: &str) -> Cow<'_, str> {
    let unsafe_at = |i: usize, c: char| match c {
        '\n' | '\t' => false,
        '\r' => !text.get(i + 1..).is_some_and(|rest| rest.starts_with('\n')),
        c => needs_escape(c),
    };
    if !text.char_indices().any(|(i, c)| unsafe_at(i, c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if unsafe_at(i, c) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The columns a terminal gives `s` (wide CJK characters take two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` escaped and padded with spaces to `columns` display columns (never cut).
pub fn pad(s: &str, columns: usize) -> String {
    let mut cell = safe(s).into_owned();
    let fill = columns.saturating_sub(width(&cell));
    cell.extend(std::iter::repeat_n(' ', fill));
    cell
}

/// A table: columns two spaces apart, each as wide as its widest cell in display width;
/// every cell escaped; printed in one write.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    write(Stream::Out, &table_text(headers, rows));
}

fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<Cow<'_, str>> = headers.iter().map(|h| safe(h)).collect();
    let body: Vec<Vec<Cow<'_, str>>> = rows.iter().map(|r| r.iter().map(|c| safe(c)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in &body {
        for (i, c) in r.iter().enumerate() {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width(c)),
                None => widths.push(width(c)),
            }
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(&header).chain(&body) {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            line.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(c)) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_visibly() {
        assert_eq!(safe("plain É 名前"), "plain É 名前");
        assert_eq!(safe("a\x1b[31mb\nc\rd\te\0f\x07g\x7fh"), "a\\e[31mb\\nc\\rd\\te\\0f\\x07g\\x7fh");
        assert_eq!(safe("x\u{9b}y\u{202e}z\u{2066}\u{2028}"), "x\\u{9b}y\\u{202e}z\\u{2066}\\u{2028}");
        assert_eq!(safe_keeping_lines("a\n\tb\x1b]0;t\x07\n"), "a\n\tb\\e]0;t\\x07\n");
    }

    #[test]
    fn json_stays_json_and_inert() {
        let v = serde_json::json!({ "name": "a\u{1b}b\u{9b}c\u{202e}d\u{7f}" });
        let text = json_text(&v);
        assert!(!text.chars().any(needs_escape), "{text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn source_text_keeps_its_offsets() {
        let text = "a: \"\x1b[2J\u{202e}\"\r\nb: 1\r\n\rc";
        let inert = inert_source(text);
        assert_eq!(inert.len(), text.len());
        assert_eq!(inert, "a: \"?[2J???\"\r\nb: 1\r\n?c");
    }

    #[test]
    fn tables_align_by_display_width() {
        let rows = vec![
            vec!["1".to_string(), "名前名前".to_string(), "x".to_string()],
            vec!["22".to_string(), "a\x1bb".to_string(), "y".to_string()],
        ];
        let text = table_text(&["ID", "NAME", "LAST"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["ID  NAME      LAST", "1   名前名前  x", "22  a\\eb      y"]);
        let last_column: Vec<usize> =
            lines.iter().map(|l| width(l.get(..l.rfind(' ').unwrap_or(0)).unwrap_or(""))).collect();
        assert!(last_column.windows(2).all(|w| w[0] == w[1]), "{last_column:?}");
    }

    /// A writer whose reader went away.
    struct ClosedPipe {
        attempts: usize,
    }

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.attempts += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_is_tried_once_then_left_alone() {
        let closed = AtomicBool::new(false);
        let mut pipe = ClosedPipe { attempts: 0 };
        write_guarded(&mut pipe, &closed, b"first\n");
        write_guarded(&mut pipe, &closed, b"second\n");
        assert!(closed.load(Ordering::Relaxed));
        assert_eq!(pipe.attempts, 1);
        assert!(!stdout_closed(), "only the stream that failed is closed");
    }
}
