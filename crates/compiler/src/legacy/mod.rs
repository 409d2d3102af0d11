//! Import of legacy `provision.queries` files (the Oracle DBUM connector's format) into
//! `ConnectorQueries` YAML: `provflow import provision-queries FILE [--dialect D] [--name N]`.
//!
//! A legacy file holds one entry per query:
//!
//! ```text
//! # comments start with `#` (or `//`, or `/* ... */`)
//! CREATE_PASSWORD_USER {
//!     Query="call insertPackage ({__NAME__},{__PASSWORD__})"
//!     Parameters=["__NAME__":"Type:String", "__PASSWORD__":"Type:GuardedString,TAGS:DOUBLEQUOTES"]
//! }
//! ```
//!
//! [`parse_provision_queries`] reads such a file and reports *all* errors at once, each with a
//! 1-based line and column (counted in characters, a tab counts as one) and a help text;
//! [`to_connector_queries_yaml`] prints the equivalent `ConnectorQueries` document.
//! [`parse_provision_queries_report`] additionally returns warnings (for the CLI to print on
//! stderr). No input makes the parser panic; it never recurses, so deep nesting is harmless.
//!
//! # Accepted grammar
//!
//! The file format is a subset of the Groovy `ConfigSlurper` syntax the connector reads:
//!
//! ```text
//! file        = { entry | ";" } ;
//! entry       = NAME "{" { property | ";" } "}" ;
//! property    = "Query" "=" string { "+" string }
//!             | "Parameters" "=" "[" [ param { "," param } [ "," ] | ":" ] "]" ;
//! param       = ( string | NAME ) ":" string ;            (* the second string is a spec *)
//! string      = '"' { char | escape } '"'  |  "'" { char | escape } "'"     (* one line *)
//!             | '"""' { char | escape | newline } '"""'  |  "'''" ... "'''" ;
//! escape      = "\" ( "n" | "t" | "r" | "b" | "f" | '"' | "'" | "\" | "$" | "/"
//!                   | "u" HEX HEX HEX HEX | newline (* line continuation *) ) ;
//! NAME        = ( "A".."Z" | "a".."z" | "_" ) { "A".."Z" | "a".."z" | "0".."9" | "_" } ;
//! comment     = "#" { any } newline | "//" { any } newline | "/*" { any } "*/" ;
//!
//! (* inside the spec string; items in any order, blanks around items ignored *)
//! spec        = item { "," item } ;
//! item        = "Type" ":" TYPE | "TAGS" ":" TAG ;          (* Type required, TAGS optional *)
//! TYPE        = "String" | "GuardedString" | "Long" | "Integer" | "Double" | "Boolean"
//!             | "Date" | "Timestamp" ;
//! TAG         = "IDENTIFIER" | "DOUBLEQUOTES" | "QUOTES" ;    (* one tag at most *)
//!
//! (* inside the Query text *)
//! placeholder = "{" NAME "}" ;
//! ```
//!
//! # Decisions
//!
//! - **Keys, types and tags are case-sensitive**, as in the connector: `query=`, `Type:string`,
//!   `TAGS:quotes` and `Type:java.lang.String` are errors with a "did you mean" (`Query`,
//!   `String`, `QUOTES`, `String`). Several tags (`TAGS:IDENTIFIER|QUOTES`) are an error: the
//!   new format allows at most one.
//! - **Typographic quotes** pasted from web pages (`“ ” „ ‟ ″` for `"`, `‘ ’ ‚ ‛ ′` for `'`)
//!   are accepted as string delimiters, with one warning per file. A string opened with a
//!   plain `"` is closed only by a plain `"`. Typographic characters *inside* a query (curly
//!   quotes, non-breaking spaces, dashes) are kept unchanged, with a warning, because SQL does
//!   not treat them as quotes, spaces or minus signs.
//! - **Placeholders** are exactly `{NAME}`. Every placeholder must be declared and every
//!   declared parameter used. `{ NAME }` or an unclosed `{NAME` of a declared parameter is an
//!   error. Any other brace is literal SQL text (a warning points at it; JDBC's `{call ...}`
//!   escape gets a specific help), and is written as `{{` / `}}` in the YAML because the new
//!   query syntax reserves single braces for placeholders.
//! - **The query text is kept as written** (`insertPackage` stays camelCase); only the braces
//!   above are doubled in the YAML.
//! - Strings cannot span lines except triple-quoted ones, so a missing closing quote is
//!   reported on its own line instead of swallowing the rest of the file. A Query string that
//!   swallows `Parameters=` is recognised and reported as a missing quote.
//! - An entry's name, placeholders and parameter names are `NAME`s. NUL characters and unknown
//!   escapes (`\q`) are errors. A UTF-8 byte-order mark and `\r\n` / `\r` line ends are accepted.
//! - A file without entries parses to an empty list with a warning.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// The parameter types of the new format, as written after `Type:`.
pub const KNOWN_TYPES: [&str; 8] =
    ["String", "GuardedString", "Long", "Integer", "Double", "Boolean", "Date", "Timestamp"];

/// The tags of the new format, as written after `TAGS:`.
pub const KNOWN_TAGS: [&str; 3] = ["IDENTIFIER", "DOUBLEQUOTES", "QUOTES"];

/// One entry of a legacy file, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyQuery {
    /// The entry name, e.g. `CREATE_PASSWORD_USER`.
    pub name: String,
    /// The SQL text with its `{placeholders}`, escapes decoded, otherwise exactly as written.
    pub query: String,
    /// The declared parameters, in declaration order.
    pub params: Vec<LegacyParam>,
    /// The 1-based line of the entry name.
    pub line: usize,
}

/// One declared parameter of a legacy entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyParam {
    pub name: String,
    /// One of [`KNOWN_TYPES`].
    pub ty: String,
    /// One of [`KNOWN_TAGS`], or none (a real bind parameter).
    pub tag: Option<String>,
}

/// An error (or, in [`LegacyReport::warnings`], a warning) at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegacyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for LegacyError {
    /// `line 3, column 18: expected `=` after `Query`, found `:``, then `  help: ...` on a new line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LegacyError {}

/// Everything [`parse_provision_queries_report`] found. `queries` holds the entries that had no
/// error (only meaningful as a whole when `errors` is empty); both lists are sorted by position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyReport {
    pub queries: Vec<LegacyQuery>,
    pub errors: Vec<LegacyError>,
    pub warnings: Vec<LegacyError>,
}

/// Parses a legacy `provision.queries` file. On failure returns every error found, sorted by
/// line and column. Warnings are dropped; use [`parse_provision_queries_report`] to get them.
pub fn parse_provision_queries(src: &str) -> Result<Vec<LegacyQuery>, Vec<LegacyError>> {
    let report = parse_provision_queries_report(src);
    if report.errors.is_empty() {
        Ok(report.queries)
    } else {
        Err(report.errors)
    }
}

/// The largest legacy file the importer reads: the compiler's limit for a definition file.
/// Real `provision.queries` files are a few kilobytes.
pub const MAX_INPUT_BYTES: usize = crate::yaml::MAX_FILE_BYTES;

/// Parses a legacy `provision.queries` file, returning queries, errors and warnings.
pub fn parse_provision_queries_report(src: &str) -> LegacyReport {
    let mut diags = Diags::default();
    if src.len() > MAX_INPUT_BYTES {
        diags.error(
            Pos { line: 1, column: 1 },
            format!("the file is larger than {} MiB, the most the importer reads", MAX_INPUT_BYTES / (1024 * 1024)),
            Some("a provision.queries file is a few kilobytes: check that this is the right file".into()),
        );
        return LegacyReport { errors: finish(diags.errors), ..LegacyReport::default() };
    }
    let tokens = lex(src, &mut diags);
    let entries = Parser::new(&tokens, &mut diags).parse_file();
    let no_entries = entries.is_empty();
    let queries = check(entries, &mut diags);
    if no_entries && diags.errors.is_empty() {
        diags.warn(
            Pos { line: 1, column: 1 },
            "no entries found in this file",
            Some(format!("an entry looks like `{EXAMPLE_ENTRY}`")),
        );
    }
    LegacyReport { queries, errors: finish(diags.errors), warnings: finish(diags.warnings) }
}

mod port;

/// What [`import`] made of legacy queries: the `ConnectorQueries` YAML of every entry that
/// runs on the dialect, and the entries refused, each at its line with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub yaml: String,
    pub refused: Vec<LegacyError>,
}

/// Prints legacy queries as one `ConnectorQueries` YAML document (deterministic: same input,
/// same bytes), leaving out the entries [`import`] refuses.
pub fn to_connector_queries_yaml(queries: &[LegacyQuery], name: &str, dialect: &str) -> String {
    import(queries, name, dialect).yaml
}

/// Converts legacy queries for `dialect`: query texts become double-quoted YAML scalars;
/// braces that are not placeholders are doubled (`{{`, `}}`), as the new query syntax
/// requires; another database's account statements are translated where the dialect has the
/// same statement, and refused otherwise ([`port`]); tags are translated by where each
/// placeholder stands ([`translate_tag`]). Every translation is noted in a YAML comment.
pub fn import(queries: &[LegacyQuery], name: &str, dialect: &str) -> Imported {
    let ir_dialect = match dialect {
        "postgres" => Some(provflow_ir::Dialect::Postgres),
        "mariadb" => Some(provflow_ir::Dialect::Mariadb),
        "sqlite" => Some(provflow_ir::Dialect::Sqlite),
        _ => None,
    };
    let mut refused = Vec::new();
    let mut kept: Vec<(&LegacyQuery, String, Option<String>)> = Vec::new();
    for q in queries {
        let text = to_new_query_text(&q.query);
        match ir_dialect.map(|d| port::port(&text, &q.params, d)) {
            Some(port::Ported::Refused { reason, help }) => refused.push(LegacyError {
                line: q.line,
                column: 1,
                message: format!("entry `{}` cannot run on {dialect}: {reason}", q.name),
                help: Some(format!("{help}; the entry is left out")),
            }),
            Some(port::Ported::Translated { text: ported, from, note }) => {
                kept.push((q, ported, Some(format!("translated from {from} `{text}`: {note}"))));
            }
            _ => kept.push((q, text, None)),
        }
    }
    Imported { yaml: print_yaml(&kept, queries, name, dialect, ir_dialect), refused }
}

fn print_yaml(
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
fn translate_tag<'a>(
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

// ---------------------------------------------------------------------------------------------
// Positions and diagnostics

const EXAMPLE_ENTRY: &str =
    "CREATE_USER { Query=\"call create_user({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

#[derive(Default)]
struct Diags {
    errors: Vec<LegacyError>,
    warnings: Vec<LegacyError>,
}

impl Diags {
    fn error(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        self.errors.push(LegacyError { line: at.line, column: at.column, message: message.into(), help });
    }

    fn warn(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        self.warnings.push(LegacyError { line: at.line, column: at.column, message: message.into(), help });
    }
}

/// Sorts by position (stable: diagnostics at one position keep their order) and drops repeats.
fn finish(mut list: Vec<LegacyError>) -> Vec<LegacyError> {
    list.sort_by_key(|e| (e.line, e.column));
    let mut seen = HashSet::with_capacity(list.len());
    list.retain(|e| seen.insert(e.clone()));
    list
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// A decoded string: each character with the source position it came from (for an escape,
/// the position of its backslash).
#[derive(Debug, Clone, PartialEq)]
struct StrLit {
    chars: Vec<(char, Pos)>,
    /// False when the string was not closed properly (already reported).
    closed: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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
struct Token {
    tok: Tok,
    start: Pos,
    /// The position just after the token's last character.
    end: Pos,
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

fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_name(s: &str) -> bool {
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

fn lex(src: &str, d: &mut Diags) -> Vec<Token> {
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

// ---------------------------------------------------------------------------------------------
// Parser

/// The shape of a token, without its payload (cheap to clone).
#[derive(Debug, Clone, PartialEq)]
enum K {
    Ident(String),
    Str,
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

fn describe(k: &K) -> String {
    match k {
        K::Ident(s) => format!("`{}`", shorten(s)),
        K::Str => "a string".into(),
        K::LBrace => "`{`".into(),
        K::RBrace => "`}`".into(),
        K::LBracket => "`[`".into(),
        K::RBracket => "`]`".into(),
        K::Colon => "`:`".into(),
        K::Comma => "`,`".into(),
        K::Eq => "`=`".into(),
        K::Semi => "`;`".into(),
        K::Plus => "`+`".into(),
        K::Other(c) => describe_char(*c),
        K::Eof => "the end of the file".into(),
    }
}

fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() || matches!(c, '`') {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

fn is_property(name: &str) -> bool {
    name == "Query" || name == "Parameters"
}

struct RawParam {
    name: String,
    pos: Pos,
    ty: Option<String>,
    tag: Option<String>,
}

struct RawEntry {
    name: String,
    name_pos: Pos,
    saw_query: Option<Pos>,
    query: Option<(Vec<(char, Pos)>, Pos)>,
    params_at: Option<Pos>,
    params: Vec<RawParam>,
    /// False after a syntax error that makes placeholder checks meaningless.
    clean: bool,
    /// An error was reported inside the entry while parsing it: it is not converted, whatever
    /// the checks after find.
    broken: bool,
}

struct Parser<'t, 'd> {
    tokens: &'t [Token],
    i: usize,
    eof: Token,
    d: &'d mut Diags,
}

impl<'t, 'd> Parser<'t, 'd> {
    fn new(tokens: &'t [Token], d: &'d mut Diags) -> Self {
        let end = tokens.last().map(|t| t.end).unwrap_or(Pos { line: 1, column: 1 });
        Parser { tokens, i: 0, eof: Token { tok: Tok::Eof, start: end, end }, d }
    }

    fn token(&self, k: usize) -> &Token {
        self.tokens.get(self.i.saturating_add(k)).unwrap_or(&self.eof)
    }

    fn k(&self, n: usize) -> K {
        match &self.token(n).tok {
            Tok::Ident(s) => K::Ident(s.clone()),
            Tok::Str(_) => K::Str,
            Tok::LBrace => K::LBrace,
            Tok::RBrace => K::RBrace,
            Tok::LBracket => K::LBracket,
            Tok::RBracket => K::RBracket,
            Tok::Colon => K::Colon,
            Tok::Comma => K::Comma,
            Tok::Eq => K::Eq,
            Tok::Semi => K::Semi,
            Tok::Plus => K::Plus,
            Tok::Other(c) => K::Other(*c),
            Tok::Eof => K::Eof,
        }
    }

    fn is_ident(&self, n: usize) -> bool {
        matches!(self.token(n).tok, Tok::Ident(_))
    }

    fn is(&self, n: usize, k: &K) -> bool {
        &self.k(n) == k
    }

    fn start(&self) -> Pos {
        self.token(0).start
    }

    fn bump(&mut self) {
        if self.i < self.tokens.len() {
            self.i += 1;
        }
    }

    /// Where to point for "expected X after Y": at the next token when it is on the same line
    /// as the previous one, otherwise just after the previous token.
    fn expected_at(&self) -> Pos {
        let next = self.token(0);
        let prev_end = match self.i.checked_sub(1).and_then(|j| self.tokens.get(j)) {
            Some(t) => t.end,
            None => return next.start,
        };
        if matches!(next.tok, Tok::Eof) || next.start.line != prev_end.line {
            prev_end
        } else {
            next.start
        }
    }

    /// Like [`Self::expected_at`], for what should follow the current token.
    fn expected_after_current(&self) -> Pos {
        let current = self.token(0).end;
        let next = self.token(1);
        if matches!(next.tok, Tok::Eof) || next.start.line != current.line {
            current
        } else {
            next.start
        }
    }

    /// `NAME {`: the start of an entry.
    fn at_entry_start(&self) -> bool {
        self.is_ident(0) && self.is(1, &K::LBrace)
    }

    /// `Query=` / `Parameters=` (or with `:`).
    fn at_property_start(&self) -> bool {
        matches!(&self.token(0).tok, Tok::Ident(n) if is_property(n))
            && matches!(self.token(1).tok, Tok::Eq | Tok::Colon)
    }

    fn take_string(&mut self) -> Option<StrLit> {
        let s = match &self.token(0).tok {
            Tok::Str(s) => s.clone(),
            _ => return None,
        };
        self.bump();
        Some(s)
    }

    fn parse_file(&mut self) -> Vec<RawEntry> {
        let mut entries = Vec::new();
        loop {
            let at = self.start();
            match self.k(0) {
                K::Eof => break,
                K::Semi => self.bump(),
                K::Ident(_) if self.is(1, &K::LBrace) => entries.push(self.parse_entry()),
                K::Ident(name)
                    if (is_property(&name) || did_you_mean(&name, &["Query", "Parameters"]).is_some())
                        && matches!(self.k(1), K::Eq | K::Colon) =>
                {
                    self.d.error(
                        at,
                        format!("`{}=` outside of an entry", shorten(&name)),
                        Some(format!(
                            "`Query=` and `Parameters=` belong inside an entry named after the operation: `{EXAMPLE_ENTRY}`"
                        )),
                    );
                    self.sync_top();
                }
                K::Ident(name) => {
                    let found = describe(&self.k(1));
                    let at = self.expected_after_current();
                    self.d.error(
                        at,
                        format!("expected `{{` after the entry name `{}`, found {found}", shorten(&name)),
                        Some(format!("an entry looks like `{EXAMPLE_ENTRY}`")),
                    );
                    self.sync_top();
                }
                K::RBrace => {
                    self.d.error(
                        at,
                        "unexpected `}`: no entry is open here",
                        Some("remove it, or look for an extra `}` in the entry above".into()),
                    );
                    self.bump();
                }
                other => {
                    self.d.error(
                        at,
                        format!("expected an entry name such as `CREATE_USER`, found {}", describe(&other)),
                        Some(format!("an entry looks like `{EXAMPLE_ENTRY}`")),
                    );
                    self.sync_top();
                }
            }
        }
        entries
    }

    /// Error recovery at the top level: skip to the next `NAME {`.
    fn sync_top(&mut self) {
        self.bump();
        while !self.is(0, &K::Eof) && !self.at_entry_start() {
            self.bump();
        }
    }

    /// Error recovery inside an entry: skip to the next property, the entry's `}` or the next entry.
    fn recover_property(&mut self) {
        loop {
            if self.at_property_start() || self.at_entry_start() {
                return;
            }
            match self.k(0) {
                K::Eof | K::RBrace => return,
                _ => self.bump(),
            }
        }
    }

    fn parse_entry(&mut self) -> RawEntry {
        let name_pos = self.start();
        let name = match self.k(0) {
            K::Ident(n) => n,
            _ => String::new(),
        };
        self.bump();
        let brace = self.start();
        self.bump();
        let errors_at_start = self.d.errors.len();
        let mut e = RawEntry {
            name,
            name_pos,
            saw_query: None,
            query: None,
            params_at: None,
            params: Vec::new(),
            clean: true,
            broken: false,
        };
        loop {
            let at = self.start();
            match self.k(0) {
                K::RBrace => {
                    self.bump();
                    break;
                }
                K::Semi => self.bump(),
                K::Eof => {
                    self.d.error(
                        brace,
                        format!("entry `{}` is never closed: the file ends before its `}}`", e.name),
                        Some(format!("add `}}` after the last property of `{}`", e.name)),
                    );
                    break;
                }
                K::Ident(next) if self.is(1, &K::LBrace) => {
                    self.d.error(
                        brace,
                        format!(
                            "entry `{}` is not closed before the next entry `{}` starts at line {}",
                            e.name,
                            shorten(&next),
                            at.line
                        ),
                        Some(format!("add `}}` at the end of `{}`", e.name)),
                    );
                    break;
                }
                K::Ident(n) if n == "Query" => self.parse_query(&mut e),
                K::Ident(n) if n == "Parameters" => self.parse_params(&mut e),
                K::Ident(n) => {
                    let suggestion = did_you_mean(&n, &["Query", "Parameters"]);
                    let help = match suggestion {
                        Some(s) => format!("did you mean `{s}`? (names are case-sensitive)"),
                        None => format!(
                            "an entry holds only `Query=\"...\"` and `Parameters=[...]`; remove `{}`",
                            shorten(&n)
                        ),
                    };
                    self.d.error(at, format!("unknown property `{}` in entry `{}`", shorten(&n), e.name), Some(help));
                    if suggestion.is_some() {
                        // A misspelt Query/Parameters: further checks of this entry would only add noise.
                        e.clean = false;
                        if suggestion == Some("Query") && e.saw_query.is_none() {
                            e.saw_query = Some(at);
                        }
                    }
                    self.bump();
                    if matches!(self.k(0), K::Eq | K::Colon) {
                        self.bump();
                        self.skip_value();
                    } else {
                        self.recover_property();
                    }
                }
                other => {
                    self.d.error(
                        at,
                        format!("unexpected {} in entry `{}`", describe(&other), e.name),
                        Some(
                            "an entry holds `Query=\"...\"` and optionally `Parameters=[...]`, and ends with `}`"
                                .into(),
                        ),
                    );
                    e.clean = false;
                    self.bump();
                    self.recover_property();
                }
            }
        }
        e.broken = self.d.errors.len() > errors_at_start;
        e
    }

    /// Skips the value of an unknown property: strings joined by `+`, or a `[...]` list.
    fn skip_value(&mut self) {
        match self.k(0) {
            K::Str => {
                self.bump();
                while self.is(0, &K::Plus) && self.is(1, &K::Str) {
                    self.bump();
                    self.bump();
                }
            }
            K::LBracket => {
                self.bump();
                loop {
                    if self.at_entry_start() {
                        return;
                    }
                    match self.k(0) {
                        K::RBracket => {
                            self.bump();
                            return;
                        }
                        K::RBrace | K::Eof => return,
                        _ => self.bump(),
                    }
                }
            }
            _ => self.recover_property(),
        }
    }

    /// After a property name: `=`. Returns false when the value cannot be found.
    fn expect_eq(&mut self, key: &str, example: &str) -> bool {
        match self.k(0) {
            K::Eq => {
                self.bump();
                true
            }
            K::Colon => {
                self.d.error(
                    self.start(),
                    format!("expected `=` after `{key}`, found `:`"),
                    Some(format!("write `{example}`; the `:` form is only used inside `Parameters=[...]`")),
                );
                self.bump();
                true
            }
            other => {
                self.d.error(
                    self.expected_at(),
                    format!("expected `=` after `{key}`, found {}", describe(&other)),
                    Some(format!("write `{example}`")),
                );
                // Carry on when the value is plainly there (only the `=` is missing).
                matches!(other, K::Str | K::LBracket)
            }
        }
    }

    fn parse_query(&mut self, e: &mut RawEntry) {
        let key_pos = self.start();
        self.bump();
        let duplicate = e.saw_query;
        if let Some(first) = duplicate {
            self.d.error(
                key_pos,
                format!("`Query` is set twice in entry `{}`", e.name),
                Some(format!("the first `Query` is at line {}, column {}; keep only one", first.line, first.column)),
            );
        } else {
            e.saw_query = Some(key_pos);
        }
        if !self.expect_eq("Query", "Query=\"call my_proc({__NAME__})\"") {
            e.clean = false;
            self.recover_property();
            return;
        }
        let start = self.start();
        let Some(first) = self.take_string() else {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected the SQL text in quotes after `Query=`, found {found}"),
                Some("quote the SQL text: `Query=\"call my_proc({__NAME__})\"`".into()),
            );
            e.clean = false;
            self.recover_property();
            return;
        };
        let mut chars = first.chars;
        let mut closed = first.closed;
        while self.is(0, &K::Plus) {
            self.bump();
            match self.take_string() {
                Some(more) => {
                    chars.extend(more.chars);
                    closed &= more.closed;
                }
                None => {
                    let found = describe(&self.k(0));
                    self.d.error(
                        self.expected_at(),
                        format!("expected a string after `+`, found {found}"),
                        Some("join quoted strings only: `Query=\"select ...\" + \" from ...\"`".into()),
                    );
                    closed = false;
                    break;
                }
            }
        }
        if !closed {
            e.clean = false;
        }
        if duplicate.is_some() {
            return;
        }
        if let Some(at) = find_swallowed_parameters(&chars) {
            self.d.error(
                at,
                "the Query text runs on into `Parameters=`",
                Some("a closing quote is probably missing: end the SQL text with `\"` before `Parameters`".into()),
            );
            e.clean = false;
            self.recover_property();
        }
        e.query = Some((chars, start));
    }

    /// `[` ... `]` of `Parameters=`; the list may not be closed.
    fn at_list_end(&self) -> bool {
        matches!(self.k(0), K::RBrace | K::Eof)
            || self.at_entry_start()
            || (matches!(&self.token(0).tok, Tok::Ident(n) if is_property(n)) && self.is(1, &K::Eq))
    }

    fn parse_params(&mut self, e: &mut RawEntry) {
        let key_pos = self.start();
        self.bump();
        let duplicate = e.params_at;
        if let Some(first) = duplicate {
            self.d.error(
                key_pos,
                format!("`Parameters` is set twice in entry `{}`", e.name),
                Some(format!(
                    "the first `Parameters` is at line {}, column {}; merge them into one list",
                    first.line, first.column
                )),
            );
        } else {
            e.params_at = Some(key_pos);
        }
        let example = "Parameters=[\"__NAME__\":\"Type:String\"]";
        if !self.expect_eq("Parameters", example) {
            e.clean = false;
            self.recover_property();
            return;
        }
        if !self.is(0, &K::LBracket) {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected `[` after `Parameters=`, found {found}"),
                Some(format!("write the parameters as a list: `{example}`")),
            );
            e.clean = false;
            self.recover_property();
            return;
        }
        let open = self.start();
        self.bump();
        if self.is(0, &K::Colon) && self.is(1, &K::RBracket) {
            self.bump(); // `[:]`, Groovy's empty map
            self.bump();
            return;
        }
        let mut params: Vec<RawParam> = Vec::new();
        let missing_bracket = |p: &mut Self| {
            let found = describe(&p.k(0));
            let at = p.expected_at();
            p.d.error(
                at,
                format!(
                    "expected `]` to close the `Parameters` list opened at line {}, column {}, found {found}",
                    open.line, open.column
                ),
                Some("add `]` after the last parameter".into()),
            );
        };
        loop {
            match self.k(0) {
                K::RBracket => {
                    self.bump();
                    break;
                }
                K::Comma => {
                    self.d.error(
                        self.start(),
                        "unexpected `,`: expected a parameter such as `\"__NAME__\":\"Type:String\"`",
                        Some("remove the extra `,`".into()),
                    );
                    self.bump();
                }
                _ if self.at_list_end() => {
                    missing_bracket(self);
                    e.clean = false;
                    break;
                }
                K::Str | K::Ident(_) => {
                    let (goes_on, name) = self.parse_param(e, &mut params);
                    if !goes_on {
                        break;
                    }
                    match self.k(0) {
                        K::Comma => self.bump(),
                        K::RBracket => {
                            self.bump();
                            break;
                        }
                        _ if self.at_list_end() => {
                            missing_bracket(self);
                            e.clean = false;
                            break;
                        }
                        other => {
                            self.d.error(
                                self.expected_at(),
                                format!(
                                    "expected `,` or `]` after parameter `{}`, found {}",
                                    shorten(&name),
                                    describe(&other)
                                ),
                                Some("separate parameters with `,` and close the list with `]`".into()),
                            );
                            e.clean = false;
                            if !self.recover_item() {
                                break;
                            }
                        }
                    }
                }
                other => {
                    self.d.error(
                        self.start(),
                        format!("expected a parameter name such as `\"__NAME__\"`, found {}", describe(&other)),
                        Some("a parameter is written `\"__NAME__\":\"Type:String\"`".into()),
                    );
                    e.clean = false;
                    if !self.recover_item() {
                        break;
                    }
                }
            }
        }
        if duplicate.is_none() {
            e.params = params;
        }
    }

    /// Skips a broken list item. True when the list goes on, false when it ended.
    fn recover_item(&mut self) -> bool {
        loop {
            if self.at_list_end() {
                return false;
            }
            match self.k(0) {
                K::Comma => {
                    self.bump();
                    return true;
                }
                K::RBracket => {
                    self.bump();
                    return false;
                }
                _ => self.bump(),
            }
        }
    }

    /// One `"NAME":"Type:...,TAGS:..."`. Returns false when the list cannot go on, and the name read.
    fn parse_param(&mut self, e: &mut RawEntry, params: &mut Vec<RawParam>) -> (bool, String) {
        let mut name = String::new();
        let goes_on = self.parse_param_into(e, params, &mut name);
        (goes_on, name)
    }

    fn parse_param_into(&mut self, e: &mut RawEntry, params: &mut Vec<RawParam>, out_name: &mut String) -> bool {
        let name_pos = self.start();
        let name = match self.k(0) {
            K::Ident(n) => {
                self.bump();
                n
            }
            _ => match self.take_string() {
                Some(s) => {
                    if !s.closed {
                        e.clean = false;
                    }
                    s.chars.iter().map(|(c, _)| *c).collect()
                }
                None => return self.recover_item(),
            },
        };
        out_name.clone_from(&name);
        match self.k(0) {
            K::Colon => self.bump(),
            K::Eq => {
                self.d.error(
                    self.start(),
                    format!("expected `:` after parameter name `{}`, found `=`", shorten(&name)),
                    Some(format!("write `\"{}\":\"Type:String\"`", shorten(&name))),
                );
                self.bump();
            }
            other => {
                self.d.error(
                    self.expected_at(),
                    format!("expected `:` after parameter name `{}`, found {}", shorten(&name), describe(&other)),
                    Some(format!("write `\"{}\":\"Type:String\"`", shorten(&name))),
                );
                e.clean = false;
                return self.recover_item_keep_going();
            }
        }
        let spec_pos = self.start();
        let Some(spec) = self.take_string() else {
            let found = describe(&self.k(0));
            self.d.error(
                self.expected_at(),
                format!("expected the declaration of `{}` in quotes, found {found}", shorten(&name)),
                Some(format!("quote it: `\"{}\":\"Type:String\"`", shorten(&name))),
            );
            e.clean = false;
            return self.recover_item_keep_going();
        };
        if !spec.closed {
            e.clean = false;
        }
        if !is_name(&name) {
            let help = if name.is_empty() {
                "give the parameter a name such as `__NAME__`".to_string()
            } else {
                "use letters, digits and `_` only, starting with a letter or `_`, e.g. `__NAME__`".to_string()
            };
            self.d.error(
                name_pos,
                if name.is_empty() {
                    "empty parameter name".to_string()
                } else {
                    format!("parameter name `{}` cannot be used as a `{{placeholder}}`", shorten(&name))
                },
                Some(help),
            );
            e.clean = false;
            return true;
        }
        if let Some(first) = params.iter().find(|p| p.name == name) {
            self.d.error(
                name_pos,
                format!("parameter `{name}` is declared twice in entry `{}`", e.name),
                Some(format!(
                    "the first declaration is at line {}, column {}; keep only one",
                    first.pos.line, first.pos.column
                )),
            );
            return true;
        }
        let (ty, tag) = parse_spec(&name, &spec.chars, spec_pos, self.d);
        params.push(RawParam { name, pos: name_pos, ty, tag });
        true
    }

    /// Like [`Self::recover_item`], but "the list ended" is only reported through the position:
    /// the caller's loop sees the `]` is gone and stops. Returns true so that the caller looks
    /// at the next token itself.
    fn recover_item_keep_going(&mut self) -> bool {
        loop {
            if self.at_list_end() {
                return true;
            }
            match self.k(0) {
                K::Comma | K::RBracket => return true,
                _ => self.bump(),
            }
        }
    }
}

/// The `Parameters` of a Query string that lacks its closing quote.
fn find_swallowed_parameters(chars: &[(char, Pos)]) -> Option<Pos> {
    const WORD: [char; 10] = ['P', 'a', 'r', 'a', 'm', 'e', 't', 'e', 'r', 's'];
    for (i, (_, at)) in chars.iter().enumerate() {
        let window = chars.get(i..i.saturating_add(WORD.len()))?;
        if window.iter().map(|(c, _)| *c).eq(WORD.iter().copied()) {
            let rest = chars.get(i + WORD.len()..).unwrap_or(&[]);
            let next = rest.iter().map(|(c, _)| *c).find(|c| !c.is_whitespace());
            if next == Some('=') {
                return Some(*at);
            }
        }
    }
    None
}

type Chars<'a> = &'a [(char, Pos)];

fn trim(s: Chars<'_>) -> Chars<'_> {
    let start = s.iter().position(|(c, _)| !is_space(*c));
    let end = s.iter().rposition(|(c, _)| !is_space(*c));
    match (start, end) {
        (Some(a), Some(b)) if a <= b => s.get(a..=b).unwrap_or(&[]),
        _ => &[],
    }
}

fn text(s: Chars<'_>) -> String {
    s.iter().map(|(c, _)| *c).collect()
}

/// Parses `Type:String,TAGS:QUOTES` (the declaration of parameter `name`).
fn parse_spec(name: &str, spec: Chars<'_>, spec_pos: Pos, d: &mut Diags) -> (Option<String>, Option<String>) {
    let mut ty: Option<(String, Pos)> = None;
    let mut tag: Option<(String, Pos)> = None;
    let mut type_error = false;
    let types_list = KNOWN_TYPES.join(", ");
    let tags_list = KNOWN_TAGS.join(", ");
    for raw_item in spec.split(|(c, _)| *c == ',') {
        let item = trim(raw_item);
        let Some(&(_, item_pos)) = item.first() else {
            continue; // `Type:String,` — an empty item is harmless
        };
        let Some(colon) = item.iter().position(|(c, _)| *c == ':') else {
            let word = text(item);
            let help = match did_you_mean_type(&word) {
                Some(t) => format!("write `Type:{t}`"),
                None => format!(
                    "write `Type:<type>` (one of {types_list}) and optionally `TAGS:<tag>` (one of {tags_list})"
                ),
            };
            d.error(
                item_pos,
                format!("expected `Type:<type>` in the declaration of `{name}`, found `{}`", shorten(&word)),
                Some(help),
            );
            type_error = true;
            continue;
        };
        let key = trim(item.get(..colon).unwrap_or(&[]));
        let value = trim(item.get(colon + 1..).unwrap_or(&[]));
        let key_text = text(key);
        let value_text = text(value);
        let value_pos = value
            .first()
            .map(|(_, p)| *p)
            .or_else(|| item.get(colon).map(|(_, p)| Pos { line: p.line, column: p.column + 1 }))
            .unwrap_or(item_pos);
        match key_text.as_str() {
            "Type" => {
                if let Some((_, first)) = &ty {
                    d.error(
                        item_pos,
                        format!("`Type` is given twice for parameter `{name}`"),
                        Some(format!("the first is at line {}, column {}; keep only one", first.line, first.column)),
                    );
                    continue;
                }
                if value_text.is_empty() {
                    d.error(
                        value_pos,
                        format!("missing type after `Type:` for parameter `{name}`"),
                        Some(format!("write one of {types_list}")),
                    );
                    type_error = true;
                } else if KNOWN_TYPES.contains(&value_text.as_str()) {
                    ty = Some((value_text, item_pos));
                } else {
                    let help = match did_you_mean_type(&value_text) {
                        Some(t) => format!("did you mean `{t}`? (the known types are {types_list})"),
                        None => format!("the known types are {types_list}"),
                    };
                    d.error(
                        value_pos,
                        format!("unknown type `{}` for parameter `{name}`", shorten(&value_text)),
                        Some(help),
                    );
                    type_error = true;
                }
            }
            "TAGS" => {
                if let Some((_, first)) = &tag {
                    d.error(
                        item_pos,
                        format!("`TAGS` is given twice for parameter `{name}`"),
                        Some(format!(
                            "the first is at line {}, column {}; a parameter has at most one tag",
                            first.line, first.column
                        )),
                    );
                    continue;
                }
                if let Some(&(_, bar)) = value.iter().find(|(c, _)| *c == '|') {
                    d.error(
                        bar,
                        format!("parameter `{name}` has several tags (`{}`); provflow allows one", shorten(&value_text)),
                        Some("keep the one the SQL needs: IDENTIFIER inlines a quoted identifier, DOUBLEQUOTES wraps the value in `\"`, QUOTES inlines a string literal".into()),
                    );
                    continue;
                }
                if value_text.is_empty() {
                    d.error(
                        value_pos,
                        format!("missing tag after `TAGS:` for parameter `{name}`"),
                        Some(format!("write one of {tags_list}, or remove `TAGS:` to bind the value as a parameter")),
                    );
                } else if KNOWN_TAGS.contains(&value_text.as_str()) {
                    tag = Some((value_text, item_pos));
                } else {
                    let help = match did_you_mean(&value_text, &KNOWN_TAGS) {
                        Some(t) => format!("did you mean `{t}`? (the known tags are {tags_list})"),
                        None => format!("the known tags are {tags_list}"),
                    };
                    d.error(
                        value_pos,
                        format!("unknown tag `{}` for parameter `{name}`", shorten(&value_text)),
                        Some(help),
                    );
                }
            }
            other => {
                let help = match did_you_mean(other, &["Type", "TAGS"]) {
                    Some(k) => format!("did you mean `{k}`? (keys are case-sensitive)"),
                    None => "a declaration holds `Type:<type>` and optionally `TAGS:<tag>`".to_string(),
                };
                if did_you_mean(other, &["Type"]).is_some() {
                    type_error = true;
                }
                d.error(
                    key.first().map(|(_, p)| *p).unwrap_or(item_pos),
                    format!("unknown key `{}` in the declaration of `{name}`", shorten(other)),
                    Some(help),
                );
            }
        }
    }
    if ty.is_none() && !type_error {
        d.error(
            spec_pos,
            format!("parameter `{name}` has no `Type:`"),
            Some(format!("add its type, e.g. `\"{name}\":\"Type:String\"` (one of {types_list})")),
        );
    }
    (ty.map(|(t, _)| t), tag.map(|(t, _)| t))
}

// ---------------------------------------------------------------------------------------------
// "Did you mean"

/// The candidate the input most likely meant ([`crate::suggest::did_you_mean`]), the input
/// itself included (a right word in the wrong place); a dotted Java name (`java.lang.String`)
/// is matched by its last segment.
fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let last = input.rsplit('.').next().filter(|l| !l.is_empty()).unwrap_or(input);
    match candidates.iter().find(|c| **c == last) {
        Some(c) => Some(c),
        None => crate::suggest::did_you_mean(last, candidates.iter().copied()),
    }
}

fn did_you_mean_type(input: &str) -> Option<&'static str> {
    const ALIASES: [(&str, &str); 9] = [
        ("int", "Integer"),
        ("bool", "Boolean"),
        ("float", "Double"),
        ("number", "Long"),
        ("password", "GuardedString"),
        ("varchar", "String"),
        ("varchar2", "String"),
        ("datetime", "Timestamp"),
        ("biginteger", "Long"),
    ];
    let last = input.rsplit('.').next().unwrap_or(input).to_lowercase();
    if let Some((_, t)) = ALIASES.iter().find(|(a, _)| *a == last) {
        return Some(t);
    }
    did_you_mean(input, &KNOWN_TYPES)
}

// ---------------------------------------------------------------------------------------------
// Checks across an entry: placeholders against parameters, duplicate names

fn check(entries: Vec<RawEntry>, d: &mut Diags) -> Vec<LegacyQuery> {
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

/// A `{` in a query: a placeholder `{NAME}`, or something else.
enum Brace {
    /// `{NAME}`, spanning `len` characters.
    Placeholder { name: String, len: usize },
    /// `{ NAME }`, `{NAME` …: a name after the brace, but not the exact placeholder form.
    Malformed { name: String, len: usize },
    /// Not followed by a name at all.
    Literal,
}

fn scan_brace(chars: &[char], i: usize) -> Brace {
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

// ---------------------------------------------------------------------------------------------
// YAML output

/// The legacy text in the new query syntax: placeholders stay, other braces are doubled.
/// A JDBC call escape around a whole legacy query.
enum JdbcEscape<'a> {
    /// `{call p(…)}`: the text inside, from `call`.
    Call(&'a str),
    /// `{? = call f(…)}` or `{{RESULT} = call f(…)}`: a function's return value.
    Function,
}

/// Recognises a JDBC call escape: the whole query in braces, starting with `call` or
/// `? = call` / `{NAME} = call` (case-insensitive, spaces allowed).
fn jdbc_escape(query: &str) -> Option<JdbcEscape<'_>> {
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

fn to_new_query_text(legacy: &str) -> String {
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

/// A scalar written plain when that is unambiguous, otherwise double-quoted.
fn yaml_scalar(s: &str) -> String {
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
fn yaml_double_quoted(s: &str) -> String {
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

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"CREATE_PASSWORD_USER { Query="call insertPackage ({__NAME__},{__PASSWORD__})" Parameters=["__NAME__":"Type:String", "__PASSWORD__":"Type:GuardedString,TAGS:DOUBLEQUOTES"] }"#;

    fn param(name: &str, ty: &str, tag: Option<&str>) -> LegacyParam {
        LegacyParam { name: name.into(), ty: ty.into(), tag: tag.map(Into::into) }
    }

    fn parse_ok(src: &str) -> Vec<LegacyQuery> {
        match parse_provision_queries(src) {
            Ok(q) => q,
            Err(errors) => panic!("unexpected errors:\n{}", render(&errors)),
        }
    }

    fn parse_err(src: &str) -> Vec<LegacyError> {
        match parse_provision_queries(src) {
            Ok(q) => panic!("expected errors, got {q:?}"),
            Err(errors) => errors,
        }
    }

    fn render(errors: &[LegacyError]) -> String {
        errors.iter().map(|e| format!("{e}\n")).collect()
    }

    /// Exactly one error, at `line:column`, whose message contains `needle`; returns it.
    fn one_error(src: &str, line: usize, column: usize, needle: &str) -> LegacyError {
        let errors = parse_err(src);
        assert_eq!(errors.len(), 1, "expected one error, got:\n{}", render(&errors));
        let e = errors.into_iter().next().unwrap_or_else(|| unreachable!());
        assert_eq!((e.line, e.column), (line, column), "wrong position for: {e}");
        assert!(e.message.contains(needle), "message {:?} lacks {:?}", e.message, needle);
        assert!(e.help.is_some(), "no help for: {e}");
        e
    }

    fn yaml_value(yaml: &str) -> serde_json::Value {
        match serde_yaml::from_str::<serde_json::Value>(yaml) {
            Ok(v) => v,
            Err(e) => panic!("output is not YAML: {e}\n{yaml}"),
        }
    }

    #[test]
    fn seed_example() {
        let q = parse_ok(SEED);
        assert_eq!(
            q,
            vec![LegacyQuery {
                name: "CREATE_PASSWORD_USER".into(),
                query: "call insertPackage ({__NAME__},{__PASSWORD__})".into(),
                params: vec![
                    param("__NAME__", "String", None),
                    param("__PASSWORD__", "GuardedString", Some("DOUBLEQUOTES")),
                ],
                line: 1,
            }]
        );
        let yaml = to_connector_queries_yaml(&q, "dbum-oracle", "postgres");
        assert_eq!(
            yaml,
            "apiVersion: provflow/v1\n\
             kind: ConnectorQueries\n\
             name: dbum-oracle\n\
             dialect: postgres\n\
             queries:\n  \
               CREATE_PASSWORD_USER:\n    \
                 query: \"call insertPackage ({__NAME__},{__PASSWORD__})\"\n    \
                 params:\n      \
                   __NAME__: String\n      \
                   # __PASSWORD__: legacy TAGS:DOUBLEQUOTES dropped: it stands in a call argument, where the value is bound (\"…\" would be a column name on postgres)\n      \
                   __PASSWORD__: GuardedString\n"
        );
        let v = yaml_value(&yaml);
        assert_eq!(v["queries"]["CREATE_PASSWORD_USER"]["params"]["__PASSWORD__"], "GuardedString");
        assert!(parse_provision_queries_report(SEED).warnings.is_empty());
    }

    #[test]
    fn seed_blog_text_with_typographic_quotes() {
        // The two lines as the blog (seed 000) prints them, wrapped in an entry.
        let src = "CREATE_PWD_USER {\n\nQuery=\u{201D}call insertPackage ({__NAME__},{__PASSWORD__})\u{201D}\n\n\nParameters=[\u{201C}__NAME__\u{201D}:\u{201D}Type:String\u{201D}, \u{201C}__PASSWORD__\u{201D}:\u{201D}Type:GuardedString,TAGS:DOUBLEQUOTES\u{201D}]\n}\n";
        let report = parse_provision_queries_report(src);
        assert!(report.errors.is_empty(), "{}", render(&report.errors));
        let mut expected = parse_ok(SEED);
        if let Some(q) = expected.first_mut() {
            q.name = "CREATE_PWD_USER".into();
        }
        assert_eq!(report.queries, expected);
        assert_eq!(report.warnings.len(), 1, "{}", render(&report.warnings));
        let w = &report.warnings[0];
        assert_eq!((w.line, w.column), (3, 7));
        assert!(w.message.contains("typographic quote `\u{201D}` read as `\"` (10 typographic quotes"), "{w}");
    }

    #[test]
    fn seed_blog_lines_without_an_entry() {
        let src = "Query=\u{201D}call insertPackage ({__NAME__},{__PASSWORD__})\u{201D}\n\nParameters=[\u{201C}__NAME__\u{201D}:\u{201D}Type:String\u{201D}]\n";
        let e = one_error(src, 1, 1, "`Query=` outside of an entry");
        assert!(e.help.as_deref().unwrap_or("").contains("CREATE_USER {"));
    }

    #[test]
    fn multi_line_entries_comments_and_blank_lines() {
        let src = r#"
# provision.queries for Oracle
// a Groovy comment
/* a block
   comment */
CREATE_USER {
    Query="CREATE USER {__NAME__} IDENTIFIED BY {__PASSWORD__}"   # trailing comment
    Parameters=[
        "__NAME__":"Type:String,TAGS:IDENTIFIER",
        "__PASSWORD__" : " Type:GuardedString , TAGS:DOUBLEQUOTES ",   // blanks are fine
    ]
}

LIST_USERS { Query='select username from dba_users' }
ENABLE_USER
{
  Query="alter user {__NAME__} account unlock"; Parameters=[__NAME__:"TAGS:IDENTIFIER,Type:String"]
}
NOTHING { Query="select 1 from dual" Parameters=[:] }
"#;
        let q = parse_ok(src);
        let names: Vec<&str> = q.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["CREATE_USER", "LIST_USERS", "ENABLE_USER", "NOTHING"]);
        assert_eq!(q.iter().map(|q| q.line).collect::<Vec<_>>(), [6, 14, 15, 19]);
        assert_eq!(
            q[0].params,
            vec![
                param("__NAME__", "String", Some("IDENTIFIER")),
                param("__PASSWORD__", "GuardedString", Some("DOUBLEQUOTES"))
            ]
        );
        assert_eq!(q[1].query, "select username from dba_users");
        assert!(q[1].params.is_empty());
        assert_eq!(q[2].params, vec![param("__NAME__", "String", Some("IDENTIFIER"))]);
        // On sqlite everything is kept as written.
        let yaml = to_connector_queries_yaml(&q, "oracle", "sqlite");
        assert!(
            yaml.contains("  LIST_USERS:\n    query: \"select username from dba_users\"\n  ENABLE_USER:\n"),
            "{yaml}"
        );
        let v = yaml_value(&yaml);
        let keys: Vec<&String> = v["queries"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["CREATE_USER", "LIST_USERS", "ENABLE_USER", "NOTHING"]);
        // On postgres Oracle's statements are translated, and what reads Oracle's dictionary
        // is refused at its line.
        let imported = import(&q, "oracle", "postgres");
        let v = yaml_value(&imported.yaml);
        let keys: Vec<&String> = v["queries"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["CREATE_USER", "ENABLE_USER"]);
        assert_eq!(v["queries"]["ENABLE_USER"]["query"], "ALTER ROLE {__NAME__} LOGIN");
        let refused: Vec<(usize, &str)> = imported.refused.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(
            refused,
            [
                (14, "entry `LIST_USERS` cannot run on postgres: `dba_users` is Oracle's data dictionary view: PostgreSQL has none of that name, so the query fails unless you created it"),
                (19, "entry `NOTHING` cannot run on postgres: `dual` is Oracle's dummy table: PostgreSQL has none of that name, so the query fails unless you created it")
            ]
        );
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let src = r#"Q { Query="select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend" Parameters=["__NAME__":"Type:String"] }"#;
        let q = parse_ok(src);
        assert_eq!(q[0].query, "select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend");
        let yaml = to_connector_queries_yaml(&q, "q", "sqlite");
        assert!(
            yaml.contains(r#"    query: "select \"USERNAME\" from t where a = 'x\\y' and b = {__NAME__}\tend""#),
            "{yaml}"
        );
        assert_eq!(yaml_value(&yaml)["queries"]["Q"]["query"], q[0].query.as_str());
    }

    #[test]
    fn concatenation_and_triple_quoted_strings_keep_positions() {
        let src = "Q {\n  Query=\"select *\" +\n        \" from t where n = {__NAME__}\"\n  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n\
                   R {\n  Query=\"\"\"select *\n    from t where n = {__NAM__}\"\"\"\n  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n";
        let errors = parse_err(src);
        assert_eq!(errors.len(), 2, "{}", render(&errors));
        assert_eq!((errors[0].line, errors[0].column), (8, 22));
        assert!(errors[0].message.contains("placeholder `{__NAM__}` is not declared"), "{}", errors[0]);
        assert_eq!(
            errors[0].help.as_deref(),
            Some("did you mean `{__NAME__}`? Otherwise declare it: `\"__NAM__\":\"Type:String\"` in `Parameters`")
        );
        assert_eq!((errors[1].line, errors[1].column), (9, 15));
        assert!(errors[1].message.contains("parameter `__NAME__` is declared but"), "{}", errors[1]);
        assert!(errors[1].help.as_deref().unwrap_or("").contains("the Query uses `{__NAM__}`"));

        let ok = parse_ok(&src.replace("__NAM__}", "__NAME__}"));
        assert_eq!(ok[0].query, "select * from t where n = {__NAME__}");
        assert_eq!(ok[1].query, "select *\n    from t where n = {__NAME__}");
        let yaml = to_connector_queries_yaml(&ok, "q", "sqlite");
        assert!(yaml.contains(r#"query: "select *\n    from t where n = {__NAME__}""#), "{yaml}");
    }

    #[test]
    fn crlf_and_bom_do_not_shift_positions() {
        let lf = "A {\n  Query=\"x {p}\"\n}\n";
        let crlf = format!("\u{FEFF}{}", lf.replace('\n', "\r\n"));
        for src in [lf.to_string(), crlf] {
            let e = one_error(&src, 2, 12, "placeholder `{p}` is not declared");
            assert!(e.help.as_deref().unwrap_or("").contains("has no `Parameters`"));
        }
    }

    #[test]
    fn display_is_readable_at_2am() {
        let e = one_error("A {\n  Query:\"select 1\"\n}\n", 2, 8, "expected `=` after `Query`, found `:`");
        assert_eq!(
            e.to_string(),
            "line 2, column 8: expected `=` after `Query`, found `:`\n  help: write `Query=\"call my_proc({__NAME__})\"`; the `:` form is only used inside `Parameters=[...]`"
        );
    }

    #[test]
    fn error_missing_equals() {
        // The value is plainly there: only the `=` is reported, the entry is still checked.
        one_error("A {\n  Query \"select 1\"\n}", 2, 9, "expected `=` after `Query`, found a string");
        // At the end of a line the error points just after the key.
        one_error("A {\n  Query\n}", 2, 8, "expected `=` after `Query`, found `}`");
    }

    #[test]
    fn error_unquoted_query() {
        let e = one_error(
            "A {\n  Query=select 1\n}\nB { Query=\"x\" }",
            2,
            9,
            "expected the SQL text in quotes after `Query=`, found `select`",
        );
        assert!(e.help.as_deref().unwrap_or("").contains("quote the SQL text"));
    }

    #[test]
    fn error_unclosed_string() {
        let e = one_error("A {\n  Query=\"select 1\n}\n", 2, 9, "this string is never closed");
        assert_eq!(e.help.as_deref(), Some("add the closing `\"` before the end of line 2"));
        // Closed with a typographic quote: the help says so.
        let e = one_error("A {\n  Query=\"select 1\u{201D}\n}\n", 2, 9, "this string is never closed");
        assert!(
            e.help.as_deref().unwrap_or("").contains("the `\u{201D}` at line 2, column 18 is a typographic quote"),
            "{e}"
        );
        // A triple-quoted string may span lines; unclosed, it runs to the end of the file, so the
        // entry is not closed either.
        let errors = parse_err("A { Query=\"\"\"select\n1");
        assert_eq!(errors.len(), 2, "{}", render(&errors));
        assert_eq!((errors[0].line, errors[0].column), (1, 3));
        assert!(errors[0].message.contains("entry `A` is never closed"));
        assert_eq!((errors[1].line, errors[1].column), (1, 11));
        assert_eq!(errors[1].help.as_deref(), Some("add the closing `\"\"\"` before the end of the file"));
    }

    #[test]
    fn error_query_swallows_parameters() {
        let src = "A {\n  Query=\"call p({__NAME__})  Parameters=[\"__NAME__\":\"Type:String\"]\n}\n";
        let errors = parse_err(src);
        assert_eq!((errors[0].line, errors[0].column), (2, 30), "{}", render(&errors));
        assert!(errors[0].message.contains("runs on into `Parameters=`"));
    }

    #[test]
    fn error_unknown_types_with_did_you_mean() {
        let cases = [
            ("Type:Strng", "unknown type `Strng`", Some("String")),
            ("Type:java.lang.String", "unknown type `java.lang.String`", Some("String")),
            ("Type:org.identityconnectors.common.security.GuardedString", "unknown type", Some("GuardedString")),
            ("Type:int", "unknown type `int`", Some("Integer")),
            ("Type:string", "unknown type `string`", Some("String")),
            ("Type:Blob", "unknown type `Blob`", None),
        ];
        for (spec, needle, suggestion) in cases {
            let src = format!("A {{ Query=\"x {{p}}\" Parameters=[\"p\":\"{spec}\"] }}");
            let e = one_error(&src, 1, 41, needle);
            let help = e.help.unwrap_or_default();
            match suggestion {
                Some(s) => assert!(help.starts_with(&format!("did you mean `{s}`?")), "{help}"),
                None => assert!(help.starts_with("the known types are String, GuardedString"), "{help}"),
            }
        }
    }

    #[test]
    fn error_tags() {
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:DOUBLEQUOTE\"] }";
        let e = one_error(src, 1, 53, "unknown tag `DOUBLEQUOTE`");
        assert!(e.help.unwrap_or_default().starts_with("did you mean `DOUBLEQUOTES`?"));
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:IDENTIFIER|QUOTES\"] }";
        one_error(src, 1, 63, "several tags (`IDENTIFIER|QUOTES`)");
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,TAGS:\"] }";
        one_error(src, 1, 53, "missing tag after `TAGS:`");
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,Tags:QUOTES\"] }";
        let e = one_error(src, 1, 48, "unknown key `Tags`");
        assert!(e.help.unwrap_or_default().starts_with("did you mean `TAGS`?"));
    }

    #[test]
    fn error_spec_shape() {
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"type:String\"] }";
        let e = one_error(src, 1, 36, "unknown key `type`");
        assert!(e.help.unwrap_or_default().starts_with("did you mean `Type`?"));
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"String\"] }";
        let e = one_error(src, 1, 36, "expected `Type:<type>` in the declaration of `p`, found `String`");
        assert_eq!(e.help.as_deref(), Some("write `Type:String`"));
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"TAGS:QUOTES\"] }";
        one_error(src, 1, 35, "parameter `p` has no `Type:`");
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":\"Type:String,Type:Long\"] }";
        one_error(src, 1, 48, "`Type` is given twice");
        let src = "A { Query=\"x {p}\" Parameters=[\"p\":Type:String] }";
        one_error(src, 1, 35, "expected the declaration of `p` in quotes, found `Type`");
        let src = "A { Query=\"x {p}\" Parameters=[\"p\"=\"Type:String\"] }";
        one_error(src, 1, 34, "expected `:` after parameter name `p`, found `=`");
        let src = "A { Query=\"x {my-name}\" Parameters=[\"my-name\":\"Type:String\"] }";
        let errors = parse_err(src);
        assert_eq!((errors[0].line, errors[0].column), (1, 37), "{}", render(&errors));
        assert!(errors[0].message.contains("cannot be used as a `{placeholder}`"));
    }

    #[test]
    fn error_placeholders() {
        let src = "A {\n  Query=\"call p({__NAME__}, {__PASWORD__})\"\n  Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString\"]\n}";
        let errors = parse_err(src);
        assert_eq!(errors.len(), 2, "{}", render(&errors));
        assert_eq!((errors[0].line, errors[0].column), (2, 29));
        assert!(errors[0].message.contains("placeholder `{__PASWORD__}` is not declared"));
        assert!(errors[0].help.as_deref().unwrap_or("").starts_with("did you mean `{__PASSWORD__}`?"));
        assert_eq!((errors[1].line, errors[1].column), (3, 41));
        assert!(errors[1].message.contains("parameter `__PASSWORD__` is declared but the Query of `A` never uses it"));
        // An unused parameter on its own.
        let src = "A { Query=\"call p()\"\n Parameters=[\"__NAME__\":\"Type:String\"] }";
        let e = one_error(src, 2, 14, "parameter `__NAME__` is declared but");
        assert_eq!(e.help.as_deref(), Some("use it in the Query as `{__NAME__}`, or remove it from `Parameters`"));
        // Unclosed and blank-padded placeholders of declared parameters.
        let src = "A { Query=\"call p({__NAME__, { __X__ })\" Parameters=[\"__NAME__\":\"Type:String\",\"__X__\":\"Type:Long\"] }";
        let errors = parse_err(src);
        assert_eq!(errors.len(), 2, "{}", render(&errors));
        assert_eq!((errors[0].line, errors[0].column), (1, 19));
        assert!(errors[0].message.contains("placeholder `{__NAME__` is missing its closing `}`"));
        assert_eq!((errors[1].line, errors[1].column), (1, 30));
        assert!(errors[1].message.contains("placeholder `{ __X__ }` has blanks inside its braces"));
        assert_eq!(errors[1].help.as_deref(), Some("write `{__X__}`"));
    }

    #[test]
    fn literal_braces_warn_and_are_doubled_in_yaml() {
        let src = "A { Query=\"{call p({__NAME__})} -- {} { x\" Parameters=[\"__NAME__\":\"Type:String\"] }";
        let report = parse_provision_queries_report(src);
        assert!(report.errors.is_empty(), "{}", render(&report.errors));
        assert_eq!(report.warnings.len(), 3, "{}", render(&report.warnings));
        assert_eq!((report.warnings[0].line, report.warnings[0].column), (1, 12));
        assert!(report.warnings[0].help.as_deref().unwrap_or("").contains("JDBC"));
        let yaml = to_connector_queries_yaml(&report.queries, "n", "postgres");
        assert!(yaml.contains(r#"query: "{{call p({__NAME__})}} -- {{}} {{ x""#), "{yaml}");
    }

    #[test]
    fn error_duplicates() {
        let src = "A { Query=\"select 1\" }\nB { Query=\"select 2\" }\nA { Query=\"select 3\" }\n";
        let e = one_error(src, 3, 1, "duplicate entry `A`");
        assert_eq!(e.help.as_deref(), Some("the first `A` is at line 1, column 1; rename or remove one of them"));
        let src = "A {\n Query=\"select {p}\"\n Parameters=[\"p\":\"Type:String\", \"p\":\"Type:Long\"]\n}";
        one_error(src, 3, 33, "parameter `p` is declared twice in entry `A`");
        let src = "A {\n Query=\"select 1\"\n Query=\"select 2\"\n}";
        one_error(src, 3, 2, "`Query` is set twice in entry `A`");
        let src = "A { Query=\"select {p}\" Parameters=[\"p\":\"Type:String\"] Parameters=[] }";
        one_error(src, 1, 55, "`Parameters` is set twice");
    }

    #[test]
    fn error_unknown_property() {
        let src = "A {\n  Querry=\"select 1\"\n}";
        let e = one_error(src, 2, 3, "unknown property `Querry` in entry `A`");
        assert_eq!(e.help.as_deref(), Some("did you mean `Query`? (names are case-sensitive)"));
        let src = "A {\n  Query=\"select 1\"\n  Timeout=\"30\"\n}";
        let e = one_error(src, 3, 3, "unknown property `Timeout`");
        assert!(e.help.unwrap_or_default().contains("remove `Timeout`"));
    }

    #[test]
    fn error_braces() {
        // A missing `}` is reported at the entry's `{`, and the next entry is still read.
        let src = "A {\n  Query=\"select 1\"\nB {\n  Query=\"select {x}\"\n}\n";
        let errors = parse_err(src);
        assert_eq!(errors.len(), 2, "{}", render(&errors));
        assert_eq!((errors[0].line, errors[0].column), (1, 3));
        assert!(errors[0].message.contains("entry `A` is not closed before the next entry `B` starts at line 3"));
        assert_eq!((errors[1].line, errors[1].column), (4, 17));
        one_error("A {\n  Query=\"select 1\"\n", 1, 3, "entry `A` is never closed");
        one_error("A { Query=\"select 1\" }\n}\n", 2, 1, "unexpected `}`");
        one_error("A Query=\"select 1\" }\n", 1, 3, "expected `{` after the entry name `A`, found `Query`");
        one_error("A {\n  Query=\"select 1\" ]\n}", 2, 20, "unexpected `]` in entry `A`");
        one_error("\n\n  42 A { Query=\"x\" }", 3, 3, "expected an entry name such as `CREATE_USER`, found `4`");
    }

    #[test]
    fn error_parameter_lists() {
        let src = "A {\n  Query=\"select {p}\"\n  Parameters=[\"p\":\"Type:String\"\n}";
        let e =
            one_error(src, 3, 32, "expected `]` to close the `Parameters` list opened at line 3, column 14, found `}`");
        assert_eq!(e.help.as_deref(), Some("add `]` after the last parameter"));
        let src = "A {\n  Query=\"select {p} {q}\"\n  Parameters=[\"p\":\"Type:String\" \"q\":\"Type:String\"]\n}";
        one_error(src, 3, 33, "expected `,` or `]` after parameter `p`, found a string");
        let src = "A { Query=\"select {p}\" Parameters=[\"p\":\"Type:String\",,] }";
        one_error(src, 1, 54, "unexpected `,`");
        let src = "A { Query=\"select {p}\" Parameters=\"p:String\" }";
        one_error(src, 1, 35, "expected `[` after `Parameters=`, found a string");
    }

    #[test]
    fn error_missing_or_empty_query() {
        one_error("A { Parameters=[] }", 1, 1, "entry `A` has no `Query=`");
        one_error("A { Query=\"  \" }", 1, 11, "the `Query` of entry `A` is empty");
    }

    #[test]
    fn error_escapes_nul_and_comments() {
        one_error("A { Query=\"a\\qb\" }", 1, 13, "unknown escape `\\q`");
        one_error("A { Query=\"a\\u00\" }", 1, 13, "`\\u` must be followed by exactly 4 hexadecimal digits");
        one_error("A { Query=\"a\\u0000\" }", 1, 13, "NUL character");
        one_error("A { Query=\"a\0\" }", 1, 13, "NUL character");
        one_error("A { Query=\"a\" }\n/* never\nclosed", 2, 1, "this `/*` comment is never closed");
        // Known escapes decode.
        let q = parse_ok("A { Query=\"\\u00e9\\n\\'\\$\" }");
        assert_eq!(q[0].query, "é\n'$");
    }

    #[test]
    fn all_errors_of_a_file_at_once_sorted() {
        let src = "\
# three broken entries and one good one
CREATE_USER {
    Query=\"call create_user({__NAME__}, {__PASSWORD__})\"
    Parameters=[\"__NAME__\":\"Type:Strin\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:QUOTE\"]
}
DELETE_USER { Query:\"call drop_user({__NAME__})\" Parameters=[\"__NAME__\":\"Type:String\"] }
GOOD { Query=\"select 1\" }
CREATE_USER { Query=\"call x()\" }
";
        let errors = parse_err(src);
        let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, [(4, 34), (4, 82), (6, 20), (8, 1)], "{}", render(&errors));
    }

    #[test]
    fn warnings_for_typography_inside_the_query() {
        let src = "A { Query=\"select \u{2018}x\u{2019} from\u{A0}dual\" }";
        let report = parse_provision_queries_report(src);
        assert!(report.errors.is_empty());
        assert_eq!(report.warnings.len(), 1);
        assert_eq!((report.warnings[0].line, report.warnings[0].column), (1, 19));
        let yaml = to_connector_queries_yaml(&report.queries, "n", "postgres");
        assert!(yaml.contains("query: \"select \u{2018}x\u{2019} from\\_dual\""), "{yaml}");
        let empty = parse_provision_queries_report("# nothing here\n");
        assert!(empty.errors.is_empty() && empty.queries.is_empty());
        assert!(empty.warnings[0].message.contains("no entries"));
        assert_eq!(
            to_connector_queries_yaml(&[], "q", "sqlite"),
            "apiVersion: provflow/v1\nkind: ConnectorQueries\nname: q\ndialect: sqlite\nqueries: {}\n"
        );
    }

    #[test]
    fn yaml_quotes_what_needs_quoting() {
        let q = vec![LegacyQuery {
            name: "null".into(),
            query: "x {yes}".into(),
            params: vec![param("yes", "String", None)],
            line: 1,
        }];
        let yaml = to_connector_queries_yaml(&q, "my set: 1", "on");
        assert!(yaml.contains("name: \"my set: 1\"\ndialect: \"on\"\n"), "{yaml}");
        assert!(yaml.contains("  \"null\":\n") && yaml.contains("      \"yes\": String\n"), "{yaml}");
        let v = yaml_value(&yaml);
        assert_eq!(v["name"], "my set: 1");
        assert_eq!(v["queries"]["null"]["params"]["yes"], "String");
    }

    /// A tiny deterministic PRNG (xorshift64*), so the fuzz tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn yaml_double_quoted_round_trips_any_text() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let interesting = [
            '\\',
            '"',
            '\'',
            '\0',
            '\u{7}',
            '\t',
            '\n',
            '\r',
            '\u{1B}',
            '\u{7F}',
            '\u{85}',
            '\u{A0}',
            '\u{2028}',
            '\u{2029}',
            '\u{FEFF}',
            '\u{200B}',
            '\u{FFFE}',
            '\u{FFFF}',
            '#',
            ':',
            '{',
            '}',
            '-',
            ' ',
            'é',
            '\u{1F600}',
        ];
        for _ in 0..2000 {
            let len = rng.below(20);
            let s: String = (0..len)
                .map(|_| {
                    if rng.below(2) == 0 {
                        interesting[rng.below(interesting.len())]
                    } else {
                        char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x')
                    }
                })
                .collect();
            let yaml = format!("v: {}\n", yaml_double_quoted(&s));
            let v = yaml_value(&yaml);
            assert_eq!(v["v"].as_str(), Some(s.as_str()), "{yaml:?}");
            let yaml = format!("v: {}\n", yaml_scalar(&s));
            assert_eq!(yaml_value(&yaml)["v"].as_str(), Some(s.as_str()), "{yaml:?}");
        }
    }

    fn check_invariants(src: &str) {
        let report = parse_provision_queries_report(src);
        let lines = src.split(['\n', '\r']).count() + 1;
        for e in report.errors.iter().chain(&report.warnings) {
            assert!(e.line >= 1 && e.column >= 1 && e.line <= lines, "bad position {e} in {src:?}");
            assert!(!e.message.is_empty());
        }
        if report.errors.is_empty() {
            let yaml = to_connector_queries_yaml(&report.queries, "fuzz", "sqlite");
            let v = yaml_value(&yaml);
            for q in &report.queries {
                assert_eq!(v["queries"][q.name.as_str()]["query"].as_str(), Some(to_new_query_text(&q.query).as_str()));
            }
        }
    }

    #[test]
    fn fuzz_random_bytes_never_panic() {
        let mut rng = Rng(42);
        for _ in 0..3000 {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_invariants(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn fuzz_token_soup_never_panics() {
        let pieces = [
            "A",
            "CREATE_USER",
            "Query",
            "Parameters",
            "Type",
            "TAGS",
            "=",
            ":",
            ",",
            ";",
            "+",
            "{",
            "}",
            "[",
            "]",
            "\"",
            "'",
            "\"\"\"",
            "\u{201C}",
            "\u{201D}",
            "\u{2019}",
            "\\",
            "\\u",
            "\\u12",
            "\\\"",
            "#",
            "//",
            "/*",
            "*/",
            "\n",
            "\r\n",
            "\r",
            " ",
            "\t",
            "{__NAME__}",
            "{__NAME__",
            "\"__NAME__\"",
            "\"Type:String\"",
            "\"Type:GuardedString,TAGS:QUOTES\"",
            "Type:String|",
            "\0",
            "\u{FEFF}",
            "\u{A0}",
            "é",
            "{call",
            "Parameters=[",
            "Query=\"",
            "\"]",
            "[:]",
        ];
        let mut rng = Rng(7);
        for _ in 0..5000 {
            let n = rng.below(60);
            let src: String = (0..n).map(|_| pieces[rng.below(pieces.len())]).collect();
            check_invariants(&src);
        }
    }

    #[test]
    fn fuzz_every_truncation_and_deletion_of_a_valid_file() {
        let src = "# c\nCREATE_USER {\n  Query=\"call p({__NAME__}, {__PASSWORD__}) \\\"x\\\"\" + '''y\n'''\n  Parameters=[\"__NAME__\":\"Type:String,TAGS:IDENTIFIER\", __PASSWORD__:\u{201C}Type:GuardedString\u{201D},]\n}\nB { Query=\"select 1\" Parameters=[:] } /* end */\n";
        assert_eq!(parse_ok(src).len(), 2);
        let chars: Vec<char> = src.chars().collect();
        for i in 0..=chars.len() {
            let truncated: String = chars.iter().take(i).collect();
            check_invariants(&truncated);
            let deleted: String = chars.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| c).collect();
            check_invariants(&deleted);
        }
    }

    #[test]
    fn big_inputs_stay_fast() {
        let mut src = String::new();
        for i in 0..2000 {
            src.push_str(&format!(
                "Q{i} {{ Query=\"call p({{__NAME__}}, {{__PASSWORD__}})\" Parameters=[\"__NAME__\":\"Type:String\", \"__PASSWORD__\":\"Type:GuardedString,TAGS:QUOTES\"] }}\n"
            ));
        }
        let started = std::time::Instant::now();
        assert_eq!(parse_ok(&src).len(), 2000);
        // Pathological: one huge unclosed bracket / brace soup.
        check_invariants(&"[".repeat(100_000));
        check_invariants(&"{".repeat(100_000));
        check_invariants(&"A { Parameters=[".repeat(10_000));
        check_invariants(&"}".repeat(100_000));
        check_invariants(&format!("A {{ Query=\"{}\" }}", "{".repeat(100_000)));
        assert!(started.elapsed().as_secs() < 20, "too slow: {:?}", started.elapsed());
    }

    #[test]
    fn output_is_deterministic() {
        let src = "B { Query=\"x {b} {a}\" Parameters=[\"b\":\"Type:Long\", \"a\":\"Type:Date,TAGS:QUOTES\"] }\nA { Query=\"y\" }";
        let first = parse_ok(src);
        let yaml = to_connector_queries_yaml(&first, "n", "mariadb");
        for _ in 0..5 {
            assert_eq!(to_connector_queries_yaml(&parse_ok(src), "n", "mariadb"), yaml);
        }
        assert!(yaml.find("  B:").unwrap_or(usize::MAX) < yaml.find("  A:").unwrap_or(0));
        assert!(yaml.find("      b: Long").unwrap_or(usize::MAX) < yaml.find("      a: {").unwrap_or(0));
    }
}
