//! Install scripts run statement by statement, so that an error names the file and the line
//! the failing statement starts on (`dbum-postgres.sql:42: syntax error ...`).
//!
//! [`provflow_lex::sql::split`] finds the statements: quotes, comments, PostgreSQL dollar
//! quotes, the `mariadb` client's `DELIMITER` directive, and compound statements (SQLite
//! trigger bodies, MariaDB routine bodies, PostgreSQL `BEGIN ATOMIC`) whose `;`s do not end
//! them. A quote, comment or dollar quote that is never closed refuses the whole script
//! before anything runs, naming its line.

use provflow_ir::Dialect;
use provflow_lex::sql::{self, LineIndex};

use crate::target::TargetError;

/// Runs one statement as is (no splitting). Implemented by every target, because
/// [`crate::target::Target::install`] takes a whole script.
pub trait ExecuteStatement {
    fn execute_statement(&mut self, sql: &str) -> Result<(), TargetError>;
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
    let statements = sql::split(sql, dialect).map_err(|e| InstallError {
        file: path.to_string(),
        line: LineIndex::new(sql).line_col(e.offset).0,
        error: TargetError::refused(format!("{e}; nothing was run")),
    })?;
    let lock = install_lock(dialect);
    if let Some((take, _)) = lock {
        target.execute_statement(take).map_err(|error| InstallError { file: path.to_string(), line: 0, error })?;
    }
    let mut result = Ok(statements.len());
    for statement in &statements {
        if let Err(error) = target.execute_statement(statement.text) {
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

/// [`install_script`] for [`crate::target::Target::install`], which has no file name: the
/// error's message starts with `line N: `.
pub fn install_lines(target: &mut dyn ExecuteStatement, sql: &str, dialect: Dialect) -> Result<(), TargetError> {
    install_script(target, "line", sql, dialect).map(|_| ()).map_err(|e| TargetError {
        sqlstate: e.error.sqlstate,
        message: format!("line {}: {}", e.line, e.error.message),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dbum_scripts_split_into_their_statements() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../definitions/dbum/");
        for (file, dialect, first_proc) in [
            ("dbum-postgres.sql", Dialect::Postgres, "CREATE OR REPLACE PROCEDURE insert_package"),
            ("dbum-mariadb.sql", Dialect::Mariadb, "CREATE OR REPLACE PROCEDURE insert_package"),
        ] {
            let Ok(sql) = std::fs::read_to_string(format!("{root}{file}")) else { continue };
            let statements = sql::split(&sql, dialect).unwrap();
            let insert = statements.iter().find(|s| s.text.starts_with(first_proc)).unwrap();
            let line_text = sql.lines().nth(insert.line as usize - 1).unwrap();
            assert!(line_text.starts_with(first_proc), "{file}: line {} is `{line_text}`", insert.line);
            assert!(statements.iter().all(|s| !s.text.to_ascii_uppercase().starts_with("DELIMITER")), "{file}");
            assert!(insert.text.ends_with("END") || insert.text.ends_with("$$"), "{file}: {}", insert.text);
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
        let err = install_lines(&mut Recorder(vec![], Some("x")), "select 1;\nx;", Dialect::Sqlite).unwrap_err();
        assert_eq!(err.message, "line 2: syntax error at or near \"x\"");
    }

    #[test]
    fn an_unclosed_quote_refuses_the_script_naming_its_line() {
        for (dialect, script, line) in [
            (Dialect::Sqlite, "select 1;\nselect 'it''s;\nselect 2;", 2),
            (Dialect::Postgres, "select 1;\n\nDO $$ BEGIN; END;", 3),
            (Dialect::Mariadb, "select 1;\nselect 'a\\\\';\n/* x */ /* y", 3),
        ] {
            let mut nothing = Recorder(vec![], None);
            let err = install_script(&mut nothing, "s.sql", script, dialect).unwrap_err();
            assert_eq!(err.line, line, "{dialect:?}: {err}");
            assert!(err.to_string().starts_with(&format!("s.sql:{line}: unterminated ")), "{err}");
            assert!(err.to_string().ends_with("; nothing was run"), "{err}");
            assert_eq!(nothing.0, Vec::<String>::new(), "{dialect:?}");
        }
    }
}
