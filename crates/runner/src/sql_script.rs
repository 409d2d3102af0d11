//! Install scripts split into statements, so that each statement runs on its own and an error
//! names the file and the line it starts on (`dbum-postgres.sql:42: syntax error ...`).
//!
//! The splitter knows just enough of each dialect's lexical rules to find statement ends:
//! quotes (with doubled quotes; backslash escapes on MariaDB and in PostgreSQL `E'...'`),
//! comments (PostgreSQL block comments nest), PostgreSQL dollar quotes (`$$...$$`,
//! `$tag$...$tag$`), the `mariadb` client's `DELIMITER` directive, and SQLite trigger bodies
//! (`BEGIN ... END;`). It never fails: an unterminated quote runs to the end of the script, and
//! the server reports it with the statement's line.

use provflow_ir::Dialect;

use crate::target::TargetError;

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text without its delimiter, trimmed; leading comments dropped.
    pub sql: String,
    /// 1-based line of the statement's first character in the script.
    pub line: u32,
}

/// Runs one statement as is (no splitting). Implemented by every target, because
/// [`crate::target::Target::install`] takes a whole script.
pub trait ExecuteStatement {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError>;
}

impl ExecuteStatement for crate::target::SqliteTarget {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError> {
        // A single complete statement run as a batch is that statement.
        crate::target::Target::install(self, sql)
    }
}

/// An install script statement failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {error}")]
pub struct InstallError {
    pub file: String,
    pub line: u32,
    pub error: TargetError,
}

/// Runs `sql` (the text of the install script `path`) statement by statement, stopping at the
/// first error. Returns the number of statements run.
pub fn install_script(
    target: &mut dyn ExecuteStatement,
    path: &str,
    sql: &str,
    dialect: Dialect,
) -> Result<usize, InstallError> {
    let statements = split(sql, dialect);
    let lock = install_lock(dialect);
    if let Some((take, _)) = lock {
        target.execute_statement(take).map_err(|error| InstallError { file: path.to_string(), line: 0, error })?;
    }
    let mut result = Ok(statements.len());
    for statement in &statements {
        if let Err(error) = target.execute_statement(&statement.sql) {
            result = Err(InstallError { file: path.to_string(), line: statement.line, error });
            break;
        }
    }
    if let Some((_, release)) = lock {
        // After a failed statement the release may fail too (e.g. inside an aborted
        // transaction the script opened); the lock then ends with the session.
        let released = target.execute_statement(release);
        if let (Ok(_), Err(error)) = (&result, released) {
            return Err(InstallError { file: path.to_string(), line: 0, error });
        }
    }
    result
}

/// The statements that take and release a database-wide lock around an install on
/// PostgreSQL: two installs at once (parallel CI jobs, several runners starting) race on the
/// catalog rows of `CREATE OR REPLACE` and one fails with "tuple concurrently updated"
/// (XX000). A session-level advisory lock serialises them and dies with the connection.
fn install_lock(dialect: Dialect) -> Option<(&'static str, &'static str)> {
    match dialect {
        // The key is arbitrary but fixed: the bytes of "provflow".
        Dialect::Postgres => {
            Some(("SELECT pg_advisory_lock(8101800043870893943)", "SELECT pg_advisory_unlock(8101800043870893943)"))
        }
        Dialect::Mariadb | Dialect::Sqlite => None,
    }
}

/// Splits a script into statements.
pub fn split(script: &str, dialect: Dialect) -> Vec<Statement> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut delimiter = String::from(";");
    let mut i = 0;
    let mut line: u32 = 1;
    // Byte offset and line of the current statement's first significant character.
    let mut start: Option<(usize, u32)> = None;
    let mut at_line_start = true;

    while let Some(&c) = b.get(i) {
        if start.is_none() && at_line_start && dialect == Dialect::Mariadb && is_delimiter_directive(&b[i..]) {
            // `DELIMITER xx` is a client directive, not SQL: it is consumed here.
            let end = find_byte(b, i, b'\n').unwrap_or(b.len());
            let argument = script.get(i + "delimiter".len()..end).unwrap_or("").split_whitespace().next();
            if let Some(d) = argument {
                delimiter = d.to_string();
            }
            i = end;
            continue;
        }
        if c == b'\n' {
            line += 1;
            at_line_start = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        at_line_start = false;
        if b[i..].starts_with(delimiter.as_bytes()) {
            if let Some((s, l)) = start {
                let text = script.get(s..i).unwrap_or("").trim_end();
                if dialect == Dialect::Sqlite && is_unfinished_trigger(text) {
                    i += delimiter.len();
                    continue;
                }
                out.push(Statement { sql: text.to_string(), line: l });
            }
            start = None;
            i += delimiter.len();
            continue;
        }
        let next = b.get(i + 1).copied();
        match c {
            b'-' if next == Some(b'-') && line_comment_dash(dialect, b.get(i + 2).copied()) => {
                i = find_byte(b, i, b'\n').unwrap_or(b.len());
            }
            b'#' if dialect == Dialect::Mariadb => {
                i = find_byte(b, i, b'\n').unwrap_or(b.len());
            }
            b'/' if next == Some(b'*') => {
                // MariaDB's executable comments `/*! ... */` are SQL.
                if dialect == Dialect::Mariadb && b.get(i + 2) == Some(&b'!') {
                    start.get_or_insert((i, line));
                }
                i = skip_block_comment(b, i, dialect == Dialect::Postgres, &mut line);
            }
            b'\'' | b'"' | b'`' => {
                start.get_or_insert((i, line));
                let backslash = match dialect {
                    Dialect::Mariadb => c != b'`',
                    Dialect::Postgres => c == b'\'' && is_escape_string_prefix(b, i),
                    Dialect::Sqlite => false,
                };
                i = skip_quoted(b, i, c, backslash, &mut line);
            }
            b'$' if dialect == Dialect::Postgres => {
                start.get_or_insert((i, line));
                match dollar_tag(b, i) {
                    Some(tag_len) => {
                        let tag = &b[i..i + tag_len];
                        let body = i + tag_len;
                        let end = find_bytes(b, body, tag).map(|e| e + tag_len).unwrap_or(b.len());
                        line += count_newlines(&b[i..end]);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => {
                start.get_or_insert((i, line));
                i += 1;
            }
        }
    }
    if let Some((s, l)) = start {
        let text = script.get(s..).unwrap_or("").trim_end();
        if !text.is_empty() {
            out.push(Statement { sql: text.to_string(), line: l });
        }
    }
    out
}

fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == needle).map(|p| p + from)
}

fn find_bytes(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(from);
    }
    b.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn count_newlines(b: &[u8]) -> u32 {
    b.iter().filter(|&&c| c == b'\n').count().try_into().unwrap_or(u32::MAX)
}

/// MariaDB needs whitespace (or the end) after `--` for a comment; `1--1` is arithmetic.
fn line_comment_dash(dialect: Dialect, after: Option<u8>) -> bool {
    dialect != Dialect::Mariadb || after.is_none_or(|c| c.is_ascii_whitespace())
}

fn is_delimiter_directive(b: &[u8]) -> bool {
    let word = b"delimiter";
    b.len() > word.len()
        && b[..word.len()].eq_ignore_ascii_case(word)
        && b.get(word.len()).is_some_and(|c| c.is_ascii_whitespace())
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// `E'...'` (PostgreSQL escape string): backslash escapes apply inside.
fn is_escape_string_prefix(b: &[u8], quote: usize) -> bool {
    let Some(prev) = quote.checked_sub(1) else { return false };
    matches!(b.get(prev), Some(b'e' | b'E'))
        && prev.checked_sub(1).and_then(|p| b.get(p)).is_none_or(|&c| !is_ident_byte(c))
}

/// The length of a dollar-quote tag (`$$`, `$body$`) starting at `i`, if one starts there.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    // `$1` is a parameter and `a$b` part of an identifier, not a quote.
    if i.checked_sub(1).and_then(|p| b.get(p)).is_some_and(|&c| is_ident_byte(c) || c == b'$') {
        return None;
    }
    let mut j = i + 1;
    if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while b.get(j).is_some_and(|&c| is_ident_byte(c)) {
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1 - i)
}

fn skip_block_comment(b: &[u8], i: usize, nested: bool, line: &mut u32) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match (b[j], b.get(j + 1).copied()) {
            (b'/', Some(b'*')) if depth == 0 || nested => {
                depth += 1;
                j += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return j;
                }
            }
            (b'\n', _) => {
                *line += 1;
                j += 1;
            }
            _ => j += 1,
        }
    }
    b.len()
}

fn skip_quoted(b: &[u8], i: usize, quote: u8, backslash: bool, line: &mut u32) -> usize {
    let mut j = i + 1;
    while let Some(&c) = b.get(j) {
        if c == b'\n' {
            *line += 1;
        }
        if backslash && c == b'\\' {
            if b.get(j + 1) == Some(&b'\n') {
                *line += 1;
            }
            j += 2;
            continue;
        }
        if c == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// A SQLite `CREATE TRIGGER` statement continues until a `;` that follows `END`.
fn is_unfinished_trigger(text: &str) -> bool {
    let mut words = text.split_whitespace().map(|w| w.to_ascii_uppercase());
    let is_trigger = matches!(
        (words.next().as_deref(), words.next().as_deref(), words.next().as_deref()),
        (Some("CREATE"), Some("TRIGGER"), _) | (Some("CREATE"), Some("TEMP" | "TEMPORARY"), Some("TRIGGER"))
    );
    let last = text.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).find(|w| !w.is_empty());
    is_trigger && !last.is_some_and(|w| w.eq_ignore_ascii_case("END"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dialect: Dialect, script: &str, want: &[(u32, &str)]) {
        let got: Vec<(u32, String)> = split(script, dialect).into_iter().map(|s| (s.line, s.sql)).collect();
        let want: Vec<(u32, String)> = want.iter().map(|(l, s)| (*l, s.to_string())).collect();
        assert_eq!(got, want, "{dialect:?}: {script}");
    }

    #[test]
    fn splits_plain_statements_with_lines() {
        check(
            Dialect::Sqlite,
            "-- header\nCREATE TABLE a(x);\n\n  INSERT INTO a VALUES ('x;y');INSERT INTO a VALUES (\"q;\");\nselect 1",
            &[
                (2, "CREATE TABLE a(x)"),
                (4, "INSERT INTO a VALUES ('x;y')"),
                (4, "INSERT INTO a VALUES (\"q;\")"),
                (5, "select 1"),
            ],
        );
        check(Dialect::Postgres, " ; ;\n-- only a comment;\n/* x; */", &[]);
    }

    #[test]
    fn postgres_dollar_quotes_comments_and_escape_strings() {
        let script = "DO $$\nBEGIN\n  PERFORM 1; -- ;\nEND\n$$;\nCREATE FUNCTION f() RETURNS text AS $body$ select 'a;$$' $body$ LANGUAGE sql;\n\
                      /* outer /* nested; */ still; */ select $1, a$b$c, E'it\\'s;', 'x''y;';\nselect '$$;'";
        check(
            Dialect::Postgres,
            script,
            &[
                (1, "DO $$\nBEGIN\n  PERFORM 1; -- ;\nEND\n$$"),
                (6, "CREATE FUNCTION f() RETURNS text AS $body$ select 'a;$$' $body$ LANGUAGE sql"),
                (7, "select $1, a$b$c, E'it\\'s;', 'x''y;'"),
                (8, "select '$$;'"),
            ],
        );
    }

    #[test]
    fn mariadb_delimiter_directives_backslashes_and_hash_comments() {
        let script = "SET sql_mode = 'a\\';b';\n# comment;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT `a//b`;\nEND //\n\ndelimiter ;\nCREATE ROLE r; select 1--1;\nselect 2 -- done;\n;";
        check(
            Dialect::Mariadb,
            script,
            &[
                (1, "SET sql_mode = 'a\\';b'"),
                (4, "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT `a//b`;\nEND"),
                (10, "CREATE ROLE r"),
                (10, "select 1--1"),
                (11, "select 2 -- done;"),
            ],
        );
    }

    #[test]
    fn sqlite_trigger_bodies_stay_whole() {
        check(
            Dialect::Sqlite,
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n INSERT INTO b VALUES (1);\n INSERT INTO b VALUES (2);\nEND;\nselect 1;",
            &[
                (1, "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n INSERT INTO b VALUES (1);\n INSERT INTO b VALUES (2);\nEND"),
                (5, "select 1"),
            ],
        );
    }

    #[test]
    fn the_dbum_scripts_split_into_their_statements() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../definitions/dbum/");
        for (file, dialect, first_proc) in [
            ("dbum-postgres.sql", Dialect::Postgres, "CREATE OR REPLACE PROCEDURE insert_package"),
            ("dbum-mariadb.sql", Dialect::Mariadb, "CREATE OR REPLACE PROCEDURE insert_package"),
        ] {
            let Ok(sql) = std::fs::read_to_string(format!("{root}{file}")) else { continue };
            let statements = split(&sql, dialect);
            let insert = statements.iter().find(|s| s.sql.starts_with(first_proc)).unwrap();
            let line_text = sql.lines().nth(insert.line as usize - 1).unwrap();
            assert!(line_text.starts_with(first_proc), "{file}: line {} is `{line_text}`", insert.line);
            assert!(statements.iter().all(|s| !s.sql.to_ascii_uppercase().starts_with("DELIMITER")), "{file}");
            assert!(insert.sql.trim_end().ends_with("END") || insert.sql.ends_with("$$"), "{file}: {}", insert.sql);
        }
    }

    /// Records every statement sent; the one equal to `.1` fails.
    struct Recorder(Vec<String>, Option<&'static str>);
    impl ExecuteStatement for Recorder {
        fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError> {
            self.0.push(sql.to_string());
            if Some(sql) == self.1 {
                return Err(TargetError {
                    sqlstate: Some("42601".into()),
                    message: "syntax error at or near \"x\"".into(),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn install_stops_at_the_first_error_naming_file_and_line() {
        let mut ok = Recorder(vec![], None);
        assert_eq!(install_script(&mut ok, "s.sql", "select 1;\nselect 2;", Dialect::Mariadb), Ok(2));
        assert_eq!(ok.0, vec!["select 1", "select 2"]);
        // The lock is released after the failure.
        let mut failing = Recorder(vec![], Some("x"));
        let err = install_script(&mut failing, "s.sql", "select 1;\n\nx;\nselect 3;", Dialect::Postgres).unwrap_err();
        assert_eq!(err.to_string(), "s.sql:3: syntax error at or near \"x\" (SQLSTATE 42601)");
        assert_eq!(
            failing.0,
            vec![
                "SELECT pg_advisory_lock(8101800043870893943)",
                "select 1",
                "x",
                "SELECT pg_advisory_unlock(8101800043870893943)"
            ]
        );
    }
}
