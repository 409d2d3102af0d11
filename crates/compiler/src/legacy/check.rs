//! Checks across an entry: placeholders against parameters, duplicate names, empty queries,
//! JDBC escapes and typography; what passes becomes a [`LegacyQuery`].

use std::collections::{HashMap, HashSet};

use super::braces::{jdbc_escape, scan_brace, Brace, JdbcEscape};
use super::diag::{did_you_mean, Diags, Pos};
use super::lex::is_space;
use super::parse::{shorten, text, Chars, RawEntry, RawParam};
use super::{LegacyParam, LegacyQuery};

pub(super) fn check(entries: Vec<RawEntry>, d: &mut Diags) -> Vec<LegacyQuery> {
    let mut seen: HashMap<String, Pos> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        if let Some(first) = seen.get(&e.name) {
            d.error(
                e.name_pos,
                format!("duplicate entry `{}`", e.name),
                Some(format!(
                    "the first `{}` is at line {}, column {}; rename or remove one of them",
                    e.name, first.line, first.column
                )),
            );
            continue;
        }
        seen.insert(e.name.clone(), e.name_pos);
        if e.saw_query.is_none() {
            d.error(
                e.name_pos,
                format!("entry `{}` has no `Query=`", e.name),
                Some("add the SQL it runs, e.g. `Query=\"call my_proc({__NAME__})\"`".into()),
            );
            continue;
        }
        let Some((chars, query_pos)) = e.query else {
            continue;
        };
        if !e.clean {
            continue;
        }
        if chars.iter().all(|(c, _)| is_space(*c)) {
            d.error(
                query_pos,
                format!("the `Query` of entry `{}` is empty", e.name),
                Some("write the SQL it runs, e.g. `Query=\"call my_proc({__NAME__})\"`".into()),
            );
            continue;
        }
        if matches!(jdbc_escape(&text(&chars)), Some(JdbcEscape::Function)) {
            d.error(
                query_pos,
                format!("entry `{}` reads a function's value through the JDBC escape `{{? = call f(...)}}`", e.name),
                Some("provflow calls procedures with `call` (OUT parameters under `outputs`) and reads a function's value as a row: write `select f(...) as result` with `columns: { result: String }`".into()),
            );
            continue;
        }
        // A JDBC escape `{call …}`: its braces are not placeholders; what is inside them is
        // checked.
        let inside = match jdbc_escape(&text(&chars)) {
            Some(JdbcEscape::Call(_)) => {
                let first = chars.iter().position(|(c, _)| *c == '{').unwrap_or(0);
                let last = chars.iter().rposition(|(c, _)| *c == '}').unwrap_or(chars.len());
                chars.get(first + 1..last).unwrap_or(&[])
            }
            _ => &chars[..],
        };
        let errors_before = d.errors.len();
        check_placeholders(&e.name, inside, e.params_at.is_some(), &e.params, d);
        warn_typography(&chars, d);
        if d.errors.len() != errors_before || e.broken {
            continue;
        }
        let mut params = Vec::with_capacity(e.params.len());
        for p in e.params {
            let Some(ty) = p.ty else {
                continue;
            };
            params.push(LegacyParam { name: p.name, ty, tag: p.tag });
        }
        out.push(LegacyQuery { name: e.name, query: text(&chars), params, line: e.name_pos.line });
    }
    out
}

fn check_placeholders(entry: &str, q: Chars<'_>, has_params: bool, params: &[RawParam], d: &mut Diags) {
    let chars: Vec<char> = q.iter().map(|(c, _)| *c).collect();
    let pos_at = |i: usize| q.get(i).map(|(_, p)| *p).unwrap_or(Pos { line: 1, column: 1 });
    let declared: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let declared_set: HashSet<&str> = declared.iter().copied().collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut undeclared: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars.get(i) != Some(&'{') {
            i += 1;
            continue;
        }
        match scan_brace(&chars, i) {
            Brace::Placeholder { name, len } => {
                if !declared_set.contains(name.as_str()) {
                    let help = if !has_params {
                        format!("entry `{entry}` has no `Parameters`: add `Parameters=[\"{name}\":\"Type:String\"]`")
                    } else {
                        match did_you_mean(&name, &declared) {
                            Some(s) => format!("did you mean `{{{s}}}`? Otherwise declare it: `\"{name}\":\"Type:String\"` in `Parameters`"),
                            None => format!("declare it in `Parameters`, e.g. `\"{name}\":\"Type:String\"`"),
                        }
                    };
                    d.error(
                        pos_at(i),
                        format!(
                            "placeholder `{{{}}}` is not declared in the `Parameters` of `{entry}`",
                            shorten(&name)
                        ),
                        Some(help),
                    );
                    undeclared.push(name);
                } else {
                    used.insert(name);
                }
                i += len;
            }
            Brace::Malformed { name, len } if declared_set.contains(name.as_str()) => {
                let written: String = chars.get(i..i + len).unwrap_or(&[]).iter().collect();
                d.error(
                    pos_at(i),
                    if written.ends_with('}') {
                        format!("placeholder `{written}` has blanks inside its braces")
                    } else {
                        format!("placeholder `{written}` is missing its closing `}}`")
                    },
                    Some(format!("write `{{{name}}}`")),
                );
                used.insert(name);
                i += len;
            }
            Brace::Malformed { .. } | Brace::Literal => {
                let rest: String = chars.iter().skip(i + 1).take(6).collect::<String>().to_lowercase();
                let rest = rest.trim_start();
                let help = if rest.starts_with("call") || rest.starts_with('?') {
                    "this looks like JDBC's `{call ...}` escape, which provflow does not translate: remove the braces and write `call proc(...)`".to_string()
                } else {
                    "it is kept as literal SQL text and written as `{{` in the YAML; if it was meant as a placeholder, write `{NAME}` with a declared parameter".to_string()
                };
                d.warn(pos_at(i), "this `{` does not start a `{NAME}` placeholder", Some(help));
                i += 1;
            }
        }
    }
    for p in params {
        if !used.contains(&p.name) {
            let mut help = format!("use it in the Query as `{{{}}}`, or remove it from `Parameters`", p.name);
            let undeclared_refs: Vec<&str> = undeclared.iter().map(String::as_str).collect();
            if let Some(typo) = did_you_mean(&p.name, &undeclared_refs) {
                help = format!("the Query uses `{{{typo}}}`: did you mean `{{{}}}` there?", p.name);
            }
            d.error(
                p.pos,
                format!("parameter `{}` is declared but the Query of `{entry}` never uses it", p.name),
                Some(help),
            );
        }
    }
}

/// Warns about the first character in a query that was likely mangled by a word processor.
fn warn_typography(q: Chars<'_>, d: &mut Diags) {
    for (c, at) in q {
        let (what, fix) = match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => ("a typographic quote", "`'`"),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => ("a typographic quote", "`\"`"),
            '\u{00A0}' | '\u{202F}' => ("a non-breaking space", "a plain space"),
            '\u{200B}' | '\u{2060}' | '\u{FEFF}' => ("an invisible zero-width character", "nothing (delete it)"),
            '\u{2013}' | '\u{2014}' | '\u{2212}' => ("a typographic dash", "`-`"),
            _ => continue,
        };
        d.warn(
            *at,
            format!("the Query contains {what} (U+{:04X}), which SQL does not understand as such", *c as u32),
            Some(format!("it was probably pasted from a web page: replace it with {fix}")),
        );
        return;
    }
}
