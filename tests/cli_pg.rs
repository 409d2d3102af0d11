//! Issue 4 through the `provflow` binary on PostgreSQL (PROVFLOW_TEST_PG_URL): install, catalog
//! check, the account lifecycle checked in pg_roles / pg_authid / pg_auth_members, duplicates
//! and an unreachable server. The stories are in `cli_db.rs`.

mod cli_db;
mod pg_scram;

use cli_db::Db;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::Target;
use provflow_tests::database_url;

const VAR: &str = "PROVFLOW_TEST_PG_URL";

fn connect(url: &str) -> Box<dyn Target> {
    Box::new(PostgresTarget::connect(url, &Timeouts::default()).unwrap_or_else(|e| panic!("cannot connect: {e}")))
}

const PG: Db = Db {
    server: "PostgreSQL",
    target: "dbum-pg",
    url_env: "DBUM_PG_URL",
    process: "DBUM Account PG",
    queries_file: "definitions/dbum/queries-postgres.yaml",
    process_file: "definitions/dbum/process-postgres.yaml",
    install_file: "definitions/dbum/dbum-postgres.sql",
    connect,
    exists_sql: |n| format!("select count(*) from pg_roles where rolname = '{n}'"),
    can_login_sql: |n| format!("select rolcanlogin from pg_roles where rolname = '{n}'"),
    password_is: |t, n, pw| pg_scram::scram_accepts(t, n, pw),
    member_sql: |n, role| {
        format!(
            "select count(*) from pg_auth_members m join pg_roles r on r.oid = m.roleid \
             join pg_roles u on u.oid = m.member where r.rolname = '{role}' and u.rolname = '{n}'"
        )
    },
    cleanup_sql: |n| {
        vec![format!("DROP ROLE IF EXISTS \"{n}\""), format!("DELETE FROM dbum_users WHERE username = '{n}'")]
    },
};

#[test]
fn install_twice_then_check() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::install_twice_then_check(&PG, &url);
}

#[test]
fn check_reports_mismatches_at_the_query() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::check_reports_mismatches_at_the_query(&PG, &url);
}

#[test]
fn install_error_names_file_and_line() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::install_error_names_file_and_line(&PG, &url);
}

#[test]
fn account_lifecycle() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::account_lifecycle(&PG, &url);
}

#[test]
fn duplicate_is_rejected() {
    let Some(url) = database_url(VAR) else { return };
    cli_db::duplicate_is_rejected(&PG, &url);
}

#[test]
fn unreachable_database() {
    // Needs no server, but runs with the others so that a skip is visible in one place.
    let Some(_url) = database_url(VAR) else { return };
    cli_db::unreachable_database(&PG, "postgres");
}
