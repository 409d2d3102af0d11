//! The braces of a legacy query: `{NAME}` placeholders, JDBC call escapes (`{call …}`), and
//! the query text in the new syntax, where the other braces are doubled.

use super::lex::{is_name_char, is_name_start, is_space};

/// A `{` in a query: a placeholder `{NAME}`, or something else.
pub(super) enum Brace {
    /// `{NAME}`, spanning `len` characters.
    Placeholder { name: String, len: usize },
    /// `{ NAME }`, `{NAME` …: a name after the brace, but not the exact placeholder form.
    Malformed { name: String, len: usize },
    /// Not followed by a name at all.
    Literal,
}

pub(super) fn scan_brace(chars: &[char], i: usize) -> Brace {
    let mut j = i + 1;
    while chars.get(j).is_some_and(|c| is_space(*c)) {
        j += 1;
    }
    let name_start = j;
    if !chars.get(j).is_some_and(|c| is_name_start(*c)) {
        return Brace::Literal;
    }
    while chars.get(j).is_some_and(|c| is_name_char(*c)) {
        j += 1;
    }
    let name: String = chars.get(name_start..j).unwrap_or(&[]).iter().collect();
    let exact = name_start == i + 1 && chars.get(j) == Some(&'}');
    if exact {
        return Brace::Placeholder { name, len: j + 1 - i };
    }
    let mut k = j;
    while chars.get(k).is_some_and(|c| is_space(*c)) {
        k += 1;
    }
    let len = if chars.get(k) == Some(&'}') { k + 1 - i } else { j - i };
    Brace::Malformed { name, len }
}

/// A JDBC call escape around a whole legacy query.
pub(super) enum JdbcEscape<'a> {
    /// `{call p(…)}`: the text inside, from `call`.
    Call(&'a str),
    /// `{? = call f(…)}` or `{{RESULT} = call f(…)}`: a function's return value.
    Function,
}

/// Recognises a JDBC call escape: the whole query in braces, starting with `call` or
/// `? = call` / `{NAME} = call` (case-insensitive, spaces allowed).
pub(super) fn jdbc_escape(query: &str) -> Option<JdbcEscape<'_>> {
    let inner = query.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    let starts_call = |t: &str| {
        t.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("call"))
            && t.get(4..).is_some_and(|r| r.starts_with([' ', '\t', '\n']))
    };
    if starts_call(inner) {
        return Some(JdbcEscape::Call(inner));
    }
    let after_result = inner
        .strip_prefix('?')
        .or_else(|| inner.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(_, rest)| rest))?;
    let rest = after_result.trim_start().strip_prefix('=')?.trim_start();
    starts_call(rest).then_some(JdbcEscape::Function)
}

/// The legacy text in the new query syntax: placeholders stay, other braces are doubled.
pub(super) fn to_new_query_text(legacy: &str) -> String {
    let legacy = match jdbc_escape(legacy) {
        Some(JdbcEscape::Call(inner)) => inner,
        _ => legacy,
    };
    let chars: Vec<char> = legacy.chars().collect();
    let mut out = String::with_capacity(legacy.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '{' => match scan_brace(&chars, i) {
                Brace::Placeholder { len, .. } => {
                    out.extend(chars.get(i..i + len).unwrap_or(&[]));
                    i += len;
                    continue;
                }
                _ => out.push_str("{{"),
            },
            '}' => out.push_str("}}"),
            other => out.push(other),
        }
        i += 1;
    }
    out
}
