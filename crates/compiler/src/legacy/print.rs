//! The `ConnectorQueries` YAML the importer prints: entries, parameters with their translated
//! tags, SQLite procedure stubs, and YAML scalars.

use std::collections::HashSet;

use super::braces::{jdbc_escape, to_new_query_text, JdbcEscape};
use super::lex::is_name_start;
use super::{LegacyParam, LegacyQuery};

pub(super) fn print_yaml(
    kept: &[(&LegacyQuery, String, Option<String>)],
    all: &[LegacyQuery],
    name: &str,
    dialect: &str,
    ir_dialect: Option<provflow_ir::Dialect>,
) -> String {
    let mut out = String::new();
    // No `yaml-language-server: $schema=` modeline: its path is relative to where the output is
    // saved, which is not known here. Saved under definitions/, the file gets its schema from the
    // editor settings the repository ships (README, "Editor completion").
    out.push_str("apiVersion: provflow/v1\n");
    out.push_str("kind: ConnectorQueries\n");
    out.push_str(&format!("name: {}\n", yaml_scalar(name)));
    out.push_str(&format!("dialect: {}\n", yaml_scalar(dialect)));
    if kept.is_empty() {
        out.push_str("queries: {}\n");
        return out;
    }
    out.push_str("queries:\n");
    for (q, text, translated) in kept {
        out.push_str(&format!("  {}:\n", yaml_scalar(&q.name)));
        if matches!(jdbc_escape(&q.query), Some(JdbcEscape::Call(_))) {
            out.push_str("    # query: the JDBC escape `{call …}` became the plain `call` the server runs\n");
        }
        if let Some(note) = translated {
            out.push_str(&format!("    # query: {}\n", note.replace('\n', " ")));
        }
        out.push_str(&format!("    query: {}\n", yaml_double_quoted(text)));
        if q.params.is_empty() {
            continue;
        }
        let placements = ir_dialect.map(|d| crate::query::placements(text, d)).unwrap_or_default();
        out.push_str("    params:\n");
        for p in &q.params {
            let (tag, note) = translate_tag(p, &placements, dialect);
            if let Some(note) = note {
                out.push_str(&format!("      # {}: {note}\n", p.name));
            }
            match tag {
                None => out.push_str(&format!("      {}: {}\n", yaml_scalar(&p.name), yaml_scalar(&p.ty))),
                Some(tag) => out.push_str(&format!(
                    "      {}: {{ type: {}, tags: [{}] }}\n",
                    yaml_scalar(&p.name),
                    yaml_scalar(&p.ty),
                    yaml_scalar(tag)
                )),
            }
        }
    }
    if ir_dialect == Some(provflow_ir::Dialect::Sqlite) {
        out.push_str(&procedure_stubs(all));
    }
    out
}

/// SQLite has no stored procedures: each procedure the queries call becomes a stub under
/// `procedures`, its parameters named after the call's placeholders, its body a comment the
/// compiler refuses (PF313, "write its body") until someone writes the statements.
fn procedure_stubs(queries: &[LegacyQuery]) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for q in queries {
        let text = to_new_query_text(&q.query);
        let Some((name, args)) = crate::query::parse_call(&text, provflow_ir::Dialect::Sqlite) else { continue };
        if !seen.insert(name.clone()) {
            continue;
        }
        if out.is_empty() {
            out.push_str("procedures:\n");
        }
        let params: Vec<String> = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let inner = a.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}'));
                inner.filter(|n| crate::query::is_name(n)).map_or_else(|| format!("arg{}", i + 1), str::to_string)
            })
            .collect();
        let binds: Vec<String> = params.iter().map(|p| format!(":{p}")).collect();
        out.push_str(&format!("  # `{name}` ran on the legacy database; sqlite has no stored procedures: write its\n"));
        out.push_str(&format!(
            "  # statements here, `;`-separated, with {} for its arguments\n",
            if binds.is_empty() { "no binds".to_string() } else { binds.join(", ") }
        ));
        out.push_str(&format!("  {}:\n", yaml_scalar(&name)));
        out.push_str(&format!(
            "    params: [{}]\n",
            params.iter().map(|p| yaml_scalar(p)).collect::<Vec<_>>().join(", ")
        ));
        out.push_str(&format!("    body: {}\n", yaml_double_quoted(&format!("-- write the body of {name}"))));
    }
    out
}

/// The tag a legacy parameter gets in the dialect, by where it stands in its query, and the
/// note that says what was translated (none when the tag is kept as written):
/// - `DOUBLEQUOTES` where a value goes (a call argument, a comparison, a `VALUES` list, a
///   password outside DDL) is dropped: the value is bound. (`"…"` is a name on PostgreSQL and
///   SQLite.)
/// - In a statement that takes no bind parameters (DDL, `GRANT`, `SET PASSWORD`…), a
///   password becomes `QUOTES` (a string literal) and anything else `IDENTIFIER` (a name
///   quoted the dialect's way), whether it had `DOUBLEQUOTES` or no tag.
pub(super) fn translate_tag<'a>(
    p: &'a LegacyParam,
    placements: &[crate::query::Placement],
    dialect: &str,
) -> (Option<&'a str>, Option<String>) {
    let mine: Vec<&crate::query::Placement> = placements.iter().filter(|x| x.name == p.name).collect();
    let kept = (p.tag.as_deref(), None);
    let Some(first) = mine.first() else { return kept };
    let secret = p.ty == "GuardedString";
    let password = mine.iter().all(|x| x.value == Some("a password")) || (secret && first.no_binds.is_some());
    // A value in a statement without binds (`SET default_tablespace = {t}`): a literal too.
    let literal = password || mine.iter().all(|x| x.value.is_some());
    match (p.tag.as_deref(), &first.no_binds) {
        (None | Some("DOUBLEQUOTES"), Some(statement)) => {
            let (tag, what) = if literal { ("QUOTES", "a string literal") } else { ("IDENTIFIER", "a quoted name") };
            let was = p.tag.as_deref().map_or("no tag (a bind parameter)".to_string(), |t| format!("TAGS:{t}"));
            (
                Some(tag),
                Some(format!(
                    "legacy {was} became {tag}: {dialect} takes no bind parameter in {statement}, so the value is inlined as {what}"
                )),
            )
        }
        (Some("IDENTIFIER"), Some(statement)) if literal && !password => (
            Some("QUOTES"),
            Some(format!(
                "legacy TAGS:IDENTIFIER became QUOTES: it stands where {dialect} needs a value in {statement}, so the value is inlined as a string literal"
            )),
        ),
        (Some("DOUBLEQUOTES"), None) if mine.iter().all(|x| x.value.is_some()) => {
            let why = first.value.unwrap_or("a value");
            (
                None,
                Some(format!(
                    "legacy TAGS:DOUBLEQUOTES dropped: it stands in {why}, where the value is bound (\"…\" would be a column name on {dialect})"
                )),
            )
        }
        _ => kept,
    }
}

/// A scalar written plain when that is unambiguous, otherwise double-quoted.
pub(super) fn yaml_scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(is_name_start)
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        yaml_double_quoted(s)
    }
}

/// A YAML double-quoted scalar: `\` and `"` escaped, every non-printable or line-breaking
/// character escaped, invisible characters made visible.
pub(super) fn yaml_double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{B}' => out.push_str("\\v"),
            '\u{C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1B}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{A0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x20 || (0x7F..=0x9F).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
