//! Install scripts with compound statements, run for real through `Target::install`: a SQLite
//! trigger whose body has `CASE … END;` before its own `END;` (always: SQLite is embedded),
//! and routine bodies on PostgreSQL and MariaDB when PROVFLOW_TEST_PG_URL /
//! PROVFLOW_TEST_MARIADB_URL are set. The statements are split by provflow_lex::sql.
//!
//! Server objects carry this process's id and are dropped at the end.

use provflow_runner::target::install::ExecuteStatement;
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::{SqliteTarget, Target};
use provflow_tests::database_url;

fn scalar(t: &mut dyn Target, sql: &str) -> Option<String> {
    t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).map(|v| v.display())
}

const SQLITE_SCRIPT: &str = "-- A trigger body with CASE … END; inside, then more statements.
CREATE TABLE a(v INTEGER);
CREATE TABLE b(id INTEGER PRIMARY KEY, x INTEGER, label TEXT);
INSERT INTO b(id) VALUES (1);
CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET x = CASE WHEN new.v > 0 THEN 1 ELSE 0 END; END;
CREATE TRIGGER [t;2] AFTER INSERT ON a
WHEN CASE WHEN new.v IS NULL THEN 0 ELSE 1 END
BEGIN
  UPDATE b SET label = CASE WHEN new.v > 100 THEN 'big; ' || CASE WHEN new.v > 1000 THEN 'huge' ELSE 'end' END ELSE 'small' END;
  INSERT INTO a(v) SELECT NULL WHERE 0;
END;
BEGIN;
INSERT INTO a VALUES (5);
COMMIT;
";

#[test]
fn a_sqlite_trigger_with_case_in_its_body_installs_and_fires() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = SqliteTarget::open(&dir.path().join("target.db"), vec![]).unwrap();
    t.install(SQLITE_SCRIPT).unwrap_or_else(|e| panic!("{e}"));
    let triggers = "select count(*) from sqlite_master where type = 'trigger'";
    assert_eq!(scalar(&mut t, triggers).as_deref(), Some("2"));
    // The INSERT between BEGIN and COMMIT fired both triggers.
    assert_eq!(scalar(&mut t, "select x from b").as_deref(), Some("1"));
    assert_eq!(scalar(&mut t, "select label from b").as_deref(), Some("small"));
    t.execute_statement("INSERT INTO a VALUES (-5)").unwrap();
    assert_eq!(scalar(&mut t, "select x from b").as_deref(), Some("0"));
    t.execute_statement("INSERT INTO a VALUES (500)").unwrap();
    assert_eq!(scalar(&mut t, "select label from b").as_deref(), Some("big; end"));

    // A failing statement names its line; an unclosed quote refuses the script up front.
    let err = t.install("select 1;\n\nCREATE TABLE a(v INTEGER);").unwrap_err();
    assert!(err.message.starts_with("line 3: table a already exists"), "{err}");
    let err = t.install("CREATE TABLE c(v);\nselect 'oops;").unwrap_err();
    assert_eq!(err.message, "line 2: unterminated string literal; nothing was run");
    assert_eq!(scalar(&mut t, "select count(*) from sqlite_master where name = 'c'").as_deref(), Some("0"));
}

/// Runs the statements when dropped, so that a failed assertion still cleans up.
struct Cleanup<T: ExecuteStatement>(T, Vec<String>);

impl<T: ExecuteStatement> Drop for Cleanup<T> {
    fn drop(&mut self) {
        for s in &self.1 {
            let _ = self.0.execute_statement(s);
        }
    }
}

#[test]
fn postgres_routine_bodies_install() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let p = format!("pf{}_lex", std::process::id());
    let connect = || PostgresTarget::connect(&url, &Timeouts::default()).unwrap_or_else(|e| panic!("{e}"));
    let _cleanup = Cleanup(
        connect(),
        vec![
            format!("DROP TABLE IF EXISTS {p}_t"),
            format!("DROP FUNCTION IF EXISTS {p}_sign(int)"),
            format!("DROP FUNCTION IF EXISTS {p}_tag(text)"),
        ],
    );
    let mut t = connect();
    let atomic =
        scalar(&mut t, "select current_setting('server_version_num')::int >= 140000").as_deref() == Some("true");
    let mut script = format!(
        "CREATE TABLE {p}_t(v int);
CREATE FUNCTION {p}_tag(a text) RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
  -- `;`, `$$` and `$1` inside the dollar quote.
  RETURN format($f$<%s;$$>$f$, $1);
END
$body$;
BEGIN;
INSERT INTO {p}_t VALUES (1), (2);
COMMIT;
"
    );
    if atomic {
        // SQL-standard bodies (PostgreSQL 14): `;` and CASE … END inside BEGIN ATOMIC … END.
        script.push_str(&format!(
            "CREATE FUNCTION {p}_sign(a int) RETURNS int LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
  SELECT CASE WHEN a > 0 THEN 1 WHEN a < 0 THEN -1 ELSE 0 END;
END;
"
        ));
    }
    t.install(&script).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scalar(&mut t, &format!("select {p}_tag('x')")).as_deref(), Some("<x;$$>"));
    assert_eq!(scalar(&mut t, &format!("select sum(v)::int from {p}_t")).as_deref(), Some("3"));
    if atomic {
        assert_eq!(scalar(&mut t, &format!("select {p}_sign(-5)")).as_deref(), Some("-1"));
    } else {
        eprintln!("BEGIN ATOMIC needs PostgreSQL 14: not tried");
    }
}

#[test]
fn mariadb_routine_bodies_install_with_and_without_delimiter() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let p = format!("pf{}_lex", std::process::id());
    let connect = || MariadbTarget::connect(&url, &Timeouts::default()).unwrap_or_else(|e| panic!("{e}"));
    let _cleanup = Cleanup(
        connect(),
        vec![
            format!("DROP TABLE IF EXISTS {p}_t"),
            format!("DROP PROCEDURE IF EXISTS {p}_p"),
            format!("DROP FUNCTION IF EXISTS {p}_f"),
        ],
    );
    let mut t = connect();
    let script = format!(
        "CREATE TABLE {p}_t (v INT);
# No DELIMITER: the body's `;`s stay inside the procedure.
CREATE PROCEDURE {p}_p(IN n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  lbl: LOOP
    SET i = i + 1;
    IF i >= n THEN LEAVE lbl; END IF;
  END LOOP lbl;
  WHILE i < n + 2 DO SET i = i + 1; END WHILE;
  CASE WHEN n > 2 THEN INSERT INTO {p}_t VALUES (i * 10);
  ELSE INSERT INTO {p}_t VALUES (IF(n > 0, 1, CASE WHEN n < 0 THEN -1 ELSE 0 END)); END CASE;
END;
CREATE TRIGGER {p}_trg BEFORE INSERT ON {p}_t FOR EACH ROW
BEGIN
  IF NEW.v < 0 THEN SET NEW.v = 0; END IF;
END;
CALL {p}_p(3);
CALL {p}_p(-1);
DELIMITER //
CREATE FUNCTION {p}_f(a INT) RETURNS INT DETERMINISTIC
BEGIN
  RETURN CASE WHEN a > 0 THEN 1 ELSE 0 END;
END//
DELIMITER ;
"
    );
    t.install(&script).unwrap_or_else(|e| panic!("{e}"));
    // n = 3: the loop counts to 3, the WHILE to 5, the CASE inserts 50; n = -1 inserts -1,
    // which the trigger turns into 0.
    assert_eq!(scalar(&mut t, &format!("select cast(sum(v) as signed) from {p}_t")).as_deref(), Some("50"));
    assert_eq!(scalar(&mut t, &format!("select count(*) from {p}_t where v = 0")).as_deref(), Some("1"));
    assert_eq!(scalar(&mut t, &format!("select {p}_f(5)")).as_deref(), Some("1"));
}
