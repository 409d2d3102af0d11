//! Lexical rules that the compiler and the runner must apply identically: how a text becomes
//! a value of a parameter type (dates and times included), how SQL text splits into tokens,
//! which known name a misspelled one most likely meant, and what a mail address is.
//!
//! **Invariant**: pure functions over text; no I/O, no global state.
#![forbid(unsafe_code)]

pub mod mailbox;
pub mod sql;
pub mod suggest;
pub mod time;
pub mod values;

/// `raw` with each backslash escape replaced by the character it escapes (`\"` → `"`,
/// `\\` → `\`), as in an RFC 5322 quoted string or a libpq quoted value. A trailing lone
/// backslash is dropped.
pub fn unescape_backslashes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn backslash_escapes() {
        assert_eq!(super::unescape_backslashes(r#"a\"b\\c\"#), r#"a"b\c"#);
    }
}
