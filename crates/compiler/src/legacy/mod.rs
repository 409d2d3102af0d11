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

mod braces;
mod check;
mod diag;
mod lex;
mod parse;
mod port;
mod print;
#[cfg(test)]
mod tests;

use std::fmt;

use braces::to_new_query_text;
use check::check;
use diag::{finish, Diags, Pos, EXAMPLE_ENTRY};
use lex::lex;
use parse::Parser;
use print::print_yaml;

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
/// placeholder stands ([`print::translate_tag`]). Every translation is noted in a YAML comment.
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
