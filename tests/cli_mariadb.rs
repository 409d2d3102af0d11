//! Issue 4 through the `provflow` binary on MariaDB (PROVFLOW_TEST_MARIADB_URL): install,
//! catalog check, the account lifecycle checked in mysql.global_priv / mysql.user /
//! mysql.roles_mapping, duplicates and an unreachable server. The stories are in `cli_db.rs`.

mod cli_db;

use cli_db::Db;
use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::Timeouts;
use provflow_runner::target::Target;
use provflow_runner::value::Value;
use provflow_tests::database_url;

const VAR: &str = "PROVFLOW_TEST_MARIADB_URL";

fn connect(url: &str) -> Box<dyn Target> {
    Box::new(MariadbTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("cannot connect: {e}")))
}

/// MariaDB's PASSWORD() is the mysql_native_password hash that the account stores.
fn password_is(t: &mut dyn Target, name: &str, pw: &str) -> bool {
    let literal = pw.replace('\\', "\\\\").replace('\'', "''");
    let sql = format!(
        "select authentication_string = PASSWORD('{literal}') from mysql.user where User = '{name}' and Host = '%'"
    );
    cli_db::scalar(t, &sql) == Some(Value::Int(1))
}

const MARIADB: Db = Db {
    server: "MariaDB",
    target: "dbum-mariadb",
    url_env: "DBUM_MARIADB_URL",
    process: "DBUM Account MariaDB",
    queries_file: "definitions/dbum/queries-mariadb.yaml",
    process_file: "definitions/dbum/process-mariadb.yaml",
    install_file: "definitions/dbum/dbum-mariadb.sql",
    connect,
    exists_sql: |n| format!("select count(*) from mysql.global_priv where User = '{n}' and Host = '%'"),
    can_login_sql: |n| {
        format!(
            "select count(*) = 0 from mysql.global_priv where User = '{n}' and Host = '%' \
             and json_extract(Priv, '$.account_locked') = 'true'"
        )
    },
    password_is,
    member_sql: |n, role| format!("select count(*) from mysql.roles_mapping where User = '{n}' and Role = '{role}'"),
    cleanup_sql: |n| {
        vec![format!("DROP USER IF EXISTS '{n}'@'%'"), format!("DELETE FROM dbum_users WHERE username = '{n}'")]
    },
};

#[test]
fn install_twice_then_check() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::install_twice_then_check(&MARIADB, &url);
}

#[test]
fn check_reports_mismatches_at_the_query() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::check_reports_mismatches_at_the_query(&MARIADB, &url);
}

#[test]
fn install_error_names_file_and_line() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::install_error_names_file_and_line(&MARIADB, &url);
}

#[test]
fn account_lifecycle() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::account_lifecycle(&MARIADB, &url);
}

#[test]
fn duplicate_is_rejected() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::duplicate_is_rejected(&MARIADB, &url);
}

#[test]
fn unreachable_database() {
    let Some(_url) = database_url(VAR) else { return };
    cli_db::unreachable_database(&MARIADB, "mysql");
}
