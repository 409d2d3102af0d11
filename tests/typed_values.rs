//! Typed values end to end (issue 9): every parameter type through the compiler (`literal:`
//! values and target properties in an adapter map) and through the runner (form values of
//! `provflow run`, CSV rows of `provflow recon`), on SQLite always and on PostgreSQL and
//! MariaDB when PROVFLOW_TEST_PG_URL / PROVFLOW_TEST_MARIADB_URL are set.
//!
//! A bad value is refused before anything reaches the target, with a message that says what
//! the type looks like and what is wrong; a good one reaches a typed column of the target
//! (through typed procedure parameters on PostgreSQL and MariaDB) with the same meaning. Each
//! run creates its own table and procedure, named after the process id, and drops them.

use provflow_runner::target::mariadb::MariadbTarget;
use provflow_runner::target::postgres::{PostgresTarget, Timeouts};
use provflow_runner::target::{SqliteTarget, Target};
use provflow_runner::value::Value;
use provflow_tests::{database_url, RunOutput, TempProject};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

// ----- the compiler ---------------------------------------------------------------------------

/// (parameter type, literal text, `None` when valid, else a part of the PF406 message).
const LITERALS: &[(&str, &str, Option<&str>)] = &[
    ("String", "2024-01-01garbage", None),
    ("Long", "-9223372036854775808", None),
    ("Long", "9223372036854775808", Some("is not a valid Long for parameter `V`: out of range")),
    ("Long", "4x", Some("is not a valid Long for parameter `V`: not a whole number")),
    ("Integer", "2147483647", None),
    ("Integer", "3000000000", Some("is not a valid Integer for parameter `V`: out of range")),
    ("Double", "-2e3", None),
    ("Double", "1e400", Some("is not a valid Double for parameter `V`: out of range: it overflows a 64-bit float")),
    ("Double", "NaN", Some("is not a valid Double for parameter `V`: NaN and infinities are refused")),
    ("Boolean", "yes", None),
    ("Boolean", "maybe", Some("is not a valid Boolean for parameter `V`: not one of the Boolean words")),
    ("Date", "2024-02-29", None),
    (
        "Date",
        "2023-02-29",
        Some("is not a valid Date for parameter `V`: there is no day 29 in 2023-02, which has 28 days"),
    ),
    ("Date", "2024-02-30", Some("there is no day 30 in 2024-02, which has 29 days")),
    ("Date", "2024-13-01", Some("is not a valid Date for parameter `V`: there is no month 13")),
    ("Date", "2024-01-01garbage", Some("is not a valid Date for parameter `V`: expected YYYY-MM-DD")),
    ("Timestamp", "2024-01-01", None),
    ("Timestamp", "2024-02-29 23:59:59.5", None),
    ("Timestamp", "2024-02-29T23:59:59+05:30", None),
    ("Timestamp", "2024-01-01garbage", Some("is not a valid Timestamp for parameter `V`: expected YYYY-MM-DD, then T")),
    ("Timestamp", "2024-01-01T24:00:00Z", Some("hours go from 00 to 23")),
    ("Timestamp", "2024-01-01T10:00:00+0200", Some("expected YYYY-MM-DD, then T")),
];

#[test]
fn compiler_checks_literals_whole() {
    let p = TempProject::new();
    let mut queries = String::new();
    for ty in ["String", "Long", "Integer", "Double", "Boolean", "Date", "Timestamp"] {
        queries.push_str(&format!("  SET_{ty}: {{ query: \"select {{V}}\", params: {{ V: {ty} }} }}\n"));
    }
    let mut tasks = String::new();
    for (i, (ty, text, _)) in LITERALS.iter().enumerate() {
        tasks.push_str(&format!("  T{i}: {{ adapter: {{ query: SET_{ty}, map: {{ V: \"literal:{text}\" }} }} }}\n"));
    }
    // A target property is checked like a literal.
    tasks.push_str("  Property: { adapter: { query: SET_Date, map: { V: target.day } } }\n");
    p.write(
        "defs.yaml",
        format!(
            "apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: sqlite\nqueries: q\nproperties:\n  day: \"2024-02-30\"\n---\n\
             apiVersion: provflow/v1\nkind: ConnectorQueries\nname: q\ndialect: sqlite\nqueries:\n{queries}---\n\
             apiVersion: provflow/v1\nkind: Process\nname: Literals\nobject: Literals\ntarget: t\ntasks:\n{tasks}"
        ),
    );
    let out = p.run(&["--format", "json", "compile", "defs.yaml"], DEADLINE);
    let mismatches: Vec<serde_json::Value> =
        out.json_diagnostics().into_iter().filter(|d| d["code"] == "PF406").collect();
    for (i, (ty, text, want)) in LITERALS.iter().enumerate() {
        let pointer_line =
            |d: &serde_json::Value| d["message"].as_str().unwrap_or("").contains(&format!("literal `{text}`"));
        let found: Vec<&serde_json::Value> = mismatches
            .iter()
            .filter(|d| pointer_line(d) && d["message"].as_str().unwrap_or("").contains(&format!("valid {ty} ")))
            .collect();
        match want {
            None => assert!(found.is_empty(), "T{i}: `{text}` is a valid {ty}, yet: {found:?}\n{out}"),
            Some(part) => {
                assert_eq!(found.len(), 1, "T{i}: `{text}` as {ty}: one PF406 expected\n{out}");
                let message = found[0]["message"].as_str().unwrap_or("");
                assert!(message.contains(part), "T{i}: {message:?} should contain {part:?}");
                let help = found[0]["help"].as_str().unwrap_or("");
                let article = if *ty == "Integer" { "an" } else { "a" };
                assert!(help.starts_with(&format!("write {article} {ty} (")), "T{i}: help {help:?}");
            }
        }
    }
    let property = mismatches.iter().find(|d| d["message"].as_str().unwrap_or("").contains("target property"));
    let property = property.and_then(|d| d["message"].as_str()).unwrap_or("");
    assert_eq!(
        property,
        "type mismatch: target property `2024-02-30` is not a valid Date for parameter `V`: there is no day 30 in \
         2024-02, which has 29 days",
        "{out}"
    );
    let bad = LITERALS.iter().filter(|(_, _, w)| w.is_some()).count();
    assert_eq!(mismatches.len(), bad + 1, "{out}");
    assert_eq!(out.code(), Some(1), "{out}");
}

// ----- the runner -----------------------------------------------------------------------------

/// One target dialect: how to create the test's objects, how the query records a row, how
/// to read a row back as text the server formats itself.
struct Dialect {
    name: &'static str,
    /// `None`: the embedded SQLite file.
    url: Option<String>,
    install: fn(&str) -> String,
    record: fn(&str) -> String,
    /// `select` of the typed columns of a login as one text, `|`-separated.
    read: fn(&str, &str) -> String,
    drop: fn(&str) -> Vec<String>,
}

const PARAMS: &str = "{LOGIN}, {PW}, {NOTE}, {N_LONG}, {N_INT}, {X}, {FLAG}, {DAY}, {AT}, {AT_UTC}";

const SQLITE: fn() -> Dialect = || Dialect {
    name: "sqlite",
    url: None,
    install: |s| {
        format!(
            "CREATE TABLE IF NOT EXISTS {s}_typed (login TEXT PRIMARY KEY, pw TEXT, note TEXT, n_long INTEGER, \
             n_int INTEGER, x REAL, flag INTEGER, day TEXT, at TEXT, at_utc TEXT);\n"
        )
    },
    record: |s| format!("insert or replace into {s}_typed values ({PARAMS})"),
    read: |s, login| {
        format!(
            "select n_long || '|' || n_int || '|' || x || '|' || flag || '|' || day || '|' || at || '|' || at_utc \
             from {s}_typed where login = '{login}'"
        )
    },
    drop: |s| vec![format!("DROP TABLE IF EXISTS {s}_typed")],
};

fn postgres(url: String) -> Dialect {
    Dialect {
        name: "postgres",
        url: Some(url),
        install: |s| {
            format!(
                "CREATE TABLE IF NOT EXISTS {s}_typed (login text PRIMARY KEY, pw text, note text, n_long bigint, \
                 n_int integer, x double precision, flag boolean, day date, at timestamp(6), at_utc timestamptz);\n\
                 CREATE OR REPLACE PROCEDURE {s}_record(p_login text, p_pw text, p_note text, p_long bigint, \
                 p_int integer, p_x double precision, p_flag boolean, p_day date, p_at timestamp, p_at_utc timestamptz)\n\
                 LANGUAGE plpgsql AS $$\nBEGIN\n  DELETE FROM {s}_typed WHERE login = p_login;\n  \
                 INSERT INTO {s}_typed VALUES (p_login, p_pw, p_note, p_long, p_int, p_x, p_flag, p_day, p_at, p_at_utc);\n\
                 END $$;\n"
            )
        },
        record: |s| format!("call {s}_record({PARAMS})"),
        read: |s, login| {
            format!(
                "select concat_ws('|', n_long::text, n_int::text, x::text, flag::text, to_char(day, 'YYYY-MM-DD'), \
                 to_char(at, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(at_utc at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')) \
                 from {s}_typed where login = '{login}'"
            )
        },
        drop: |s| vec![format!("DROP PROCEDURE IF EXISTS {s}_record"), format!("DROP TABLE IF EXISTS {s}_typed")],
    }
}

fn mariadb(url: String) -> Dialect {
    Dialect {
        name: "mariadb",
        url: Some(url),
        install: |s| {
            format!(
                "CREATE TABLE IF NOT EXISTS {s}_typed (login VARCHAR(64) PRIMARY KEY, pw VARCHAR(128), note VARCHAR(128), \
                 n_long BIGINT, n_int INT, x DOUBLE, flag BOOLEAN, day DATE, at DATETIME(6), at_utc DATETIME(6));\n\
                 DROP PROCEDURE IF EXISTS {s}_record;\n\
                 DELIMITER //\n\
                 CREATE PROCEDURE {s}_record(IN p_login VARCHAR(64), IN p_pw VARCHAR(128), IN p_note VARCHAR(128), \
                 IN p_long BIGINT, IN p_int INT, IN p_x DOUBLE, IN p_flag BOOLEAN, IN p_day DATE, IN p_at DATETIME(6), \
                 IN p_at_utc DATETIME(6))\nBEGIN\n  \
                 REPLACE INTO {s}_typed VALUES (p_login, p_pw, p_note, p_long, p_int, p_x, p_flag, p_day, p_at, p_at_utc);\n\
                 END //\nDELIMITER ;\n"
            )
        },
        record: |s| format!("call {s}_record({PARAMS})"),
        read: |s, login| {
            format!(
                "select concat_ws('|', n_long, n_int, x, flag, date_format(day, '%Y-%m-%d'), \
                 date_format(at, '%Y-%m-%d %H:%i:%s.%f'), date_format(at_utc, '%Y-%m-%d %H:%i:%s.%f')) \
                 from {s}_typed where login = '{login}'"
            )
        },
        drop: |s| vec![format!("DROP PROCEDURE IF EXISTS {s}_record"), format!("DROP TABLE IF EXISTS {s}_typed")],
    }
}

fn definitions(d: &Dialect, s: &str) -> String {
    let fields = [
        ("login", "String", "from: user.usr_login"),
        ("pw", "GuardedString", ""),
        ("note", "String", ""),
        ("n_long", "Long", ""),
        ("n_int", "Integer", ""),
        ("x", "Double", ""),
        ("flag", "Boolean", ""),
        ("day", "Date", ""),
        ("at", "Timestamp", ""),
        ("at_utc", "Timestamp", ""),
    ];
    let form: String = fields
        .iter()
        .map(|(f, ty, extra)| {
            let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
            format!("    {f}: {{ type: {ty}, label: {f}{extra} }}\n")
        })
        .collect();
    let params: String =
        fields.iter().map(|(f, ty, _)| format!("      {}: {ty}\n", f.to_uppercase())).collect::<String>();
    let map: Vec<String> = fields.iter().map(|(f, _, _)| format!("{}: form.{f}", f.to_uppercase())).collect();
    let map = map.join(", ");
    let recon: String = fields
        .iter()
        .filter(|(_, ty, _)| *ty != "GuardedString")
        .filter(|(f, _, _)| *f != "note")
        .map(|(f, ty, _)| {
            let key = if *f == "login" { ", key: true" } else { "" };
            format!("    {f}: {{ type: {ty}, maps_to: form.{f}{key} }}\n")
        })
        .collect();
    format!(
        "apiVersion: provflow/v1\nkind: Target\nname: typed\ndialect: {dialect}\nqueries: typed\n\
         connection: {{ url_env: TYPED_TARGET_URL }}\n---\n\
         apiVersion: provflow/v1\nkind: ConnectorQueries\nname: typed\ndialect: {dialect}\ninstall: [typed.sql]\n\
         queries:\n  RECORD:\n    query: \"{record}\"\n    params:\n{params}---\n\
         apiVersion: provflow/v1\nkind: Process\nname: Typed\nobject: Typed\ntarget: typed\n\
         form:\n  fields:\n{form}\
         tasks:\n  Record:\n    required_for_completion: true\n    adapter: {{ query: RECORD, map: {{ {map} }} }}\n    \
         status_map: {{ Completed: Provisioned }}\n\
         \x20 note Updated:\n    conditional: true\n    adapter: {{ query: RECORD, map: {{ {map} }} }}\n\
         recon:\n  fields:\n{recon}\
         \x20 actions: {{ no_match: none, one_entity_match: link, one_process_match: update, multiple_matches: none }}\n",
        dialect = d.name,
        record = (d.record)(s),
    )
}

fn connect(d: &Dialect, project: &TempProject) -> Box<dyn Target> {
    match (d.name, &d.url) {
        ("postgres", Some(url)) => Box::new(PostgresTarget::connect(url, &Timeouts::default()).expect("connect")),
        ("mariadb", Some(url)) => Box::new(MariadbTarget::connect(url, &Timeouts::default()).expect("connect")),
        _ => {
            let file = project.path().join(".provflow/targets/typed.db");
            Box::new(SqliteTarget::open(&file, vec![]).expect("open the sqlite target"))
        }
    }
}

/// Drops the test's table and procedure, even when an assertion failed.
struct Cleanup<'a> {
    dialect: &'a Dialect,
    suffix: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let connected = match (self.dialect.name, &self.dialect.url) {
            ("postgres", Some(url)) => {
                PostgresTarget::connect(url, &Timeouts::default()).map(|t| Box::new(t) as Box<dyn Target>).ok()
            }
            ("mariadb", Some(url)) => {
                MariadbTarget::connect(url, &Timeouts::default()).map(|t| Box::new(t) as Box<dyn Target>).ok()
            }
            _ => None,
        };
        if let Some(mut t) = connected {
            for statement in (self.dialect.drop)(&self.suffix) {
                let _ = t.query_scalar(&statement);
            }
        }
    }
}

fn scalar(t: &mut Box<dyn Target>, sql: &str) -> Option<String> {
    match t.query_scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
        Some(Value::Text(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.display()),
    }
}

fn pf(p: &TempProject, d: &Dialect, args: &[&str]) -> RunOutput {
    let mut cmd = p.provflow();
    cmd.args(args).env("PW", " pw'\"\\ ").env_remove("PROVFLOW_SECRET_KEY").env_remove("PROVFLOW_NOW");
    match &d.url {
        Some(url) => cmd.env("TYPED_TARGET_URL", url),
        None => cmd.env_remove("TYPED_TARGET_URL"),
    };
    provflow_tests::run_bounded(&mut cmd, DEADLINE)
}

fn expect(p: &TempProject, d: &Dialect, code: i32, args: &[&str]) -> RunOutput {
    let out = pf(p, d, args);
    assert_eq!(out.code(), Some(code), "{}: provflow {args:?}\n{out}", d.name);
    out
}

/// Rounds of bad form values, one bad value per type in each: (field, text, the message).
const BAD_FORMS: &[&[(&str, &str, &str)]] = &[
    &[
        ("n_long", "4x", "form field `n_long`: `4x` is not a Long (a whole number from -9223372036854775808 to 9223372036854775807): not a whole number (digits with an optional sign)"),
        ("n_int", "3000000000", "form field `n_int`: `3000000000` is not an Integer (a whole number from -2147483648 to 2147483647): out of range"),
        ("x", "1e400", "form field `x`: `1e400` is not a Double (a finite number such as 1.5 or -2e3): out of range: it overflows a 64-bit float"),
        ("flag", "maybe", "form field `flag`: `maybe` is not a Boolean (true or false; also yes/no, y/n, 1/0): not one of the Boolean words"),
        ("day", "2024-02-30", "form field `day`: `2024-02-30` is not a Date (YYYY-MM-DD): there is no day 30 in 2024-02, which has 29 days"),
        ("at", "2024-01-01garbage", "form field `at`: `2024-01-01garbage` is not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): expected YYYY-MM-DD, then T or a space, then HH:MM:SS"),
        ("at_utc", "2024-01-01T24:00:00Z", "form field `at_utc`: `2024-01-01T24:00:00Z` is not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): hours go from 00 to 23"),
    ],
    &[
        ("n_long", "99999999999999999999", "`99999999999999999999` is not a Long (a whole number from -9223372036854775808 to 9223372036854775807): out of range"),
        ("n_int", "1.5", "`1.5` is not an Integer (a whole number from -2147483648 to 2147483647): not a whole number"),
        ("x", "NaN", "`NaN` is not a Double (a finite number such as 1.5 or -2e3): NaN and infinities are refused"),
        ("flag", "2", "`2` is not a Boolean"),
        ("day", "2024-13-01", "`2024-13-01` is not a Date (YYYY-MM-DD): there is no month 13"),
        ("at", "2023-02-29 10:00:00", "`2023-02-29 10:00:00` is not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): there is no day 29 in 2023-02, which has 28 days"),
        ("at_utc", "2024-01-01T10:00:00+0200", "`2024-01-01T10:00:00+0200` is not a Timestamp"),
    ],
];

/// alice's good form values, in forms the canonical parse accepts but does not print.
const GOOD_FORM: &[(&str, &str)] = &[
    ("note", "  spaced  "),
    ("n_long", " 9223372036854775807"),
    ("n_int", "-2147483648"),
    ("x", "1.5"),
    ("flag", "YES"),
    ("day", " 2024-02-29 "),
    ("at", "2024-02-29 23:59:59.123456"),
    ("at_utc", "2024-03-01T01:30:00+02:00"),
];

/// How alice's values read back, per dialect (the server's own formatting).
fn alice_row(dialect: &str) -> &'static str {
    match dialect {
        "sqlite" => "9223372036854775807|-2147483648|1.5|1|2024-02-29|2024-02-29T23:59:59.123456|2024-02-29T23:30:00Z",
        "postgres" => {
            "9223372036854775807|-2147483648|1.5|true|2024-02-29|2024-02-29 23:59:59.123456|2024-02-29 23:30:00.000000"
        }
        _ => "9223372036854775807|-2147483648|1.5|1|2024-02-29|2024-02-29 23:59:59.123456|2024-02-29 23:30:00.000000",
    }
}

/// The CSV of the reconciliation: carol's row is good, dave's and erin's are not.
const CSV: &str = "login,n_long,n_int,x,flag,day,at,at_utc\n\
                   carol,+42,-7, -2e3 ,Yes,2000-02-29,2024-06-30 12:00:00.5,2024-06-30T12:00:00-02:00\n\
                   dave,4x,3000000000,1e400,maybe,2024-02-30,2024-01-01garbage,2024-01-01T24:00:00Z\n\
                   erin,1,1,NaN,1,1900-02-29,2024-01-01T10:00,2024-01-01T23:59:60Z\n";

/// carol's values as the reconciliation stores them: canonical.
const CAROL_FORM: &[(&str, &str)] = &[
    ("n_long", "42"),
    ("n_int", "-7"),
    ("x", "-2000"),
    ("flag", "true"),
    ("day", "2000-02-29"),
    ("at", "2024-06-30T12:00:00.5"),
    ("at_utc", "2024-06-30T14:00:00Z"),
];

fn carol_row(dialect: &str) -> &'static str {
    match dialect {
        "sqlite" => "42|-7|-2000.0|1|2000-02-29|2024-06-30T12:00:00.5|2024-06-30T14:00:00Z",
        "postgres" => "42|-7|-2000|true|2000-02-29|2024-06-30 12:00:00.500000|2024-06-30 14:00:00.000000",
        _ => "42|-7|-2000|1|2000-02-29|2024-06-30 12:00:00.500000|2024-06-30 14:00:00.000000",
    }
}

/// The row problems of the reconciliation: (line, parts of its error).
const BAD_ROWS: &[(u64, &[&str])] = &[
    (
        3,
        &[
            "`n_long`: `4x` is not a Long",
            "`n_int`: `3000000000` is not an Integer",
            "`x`: `1e400` is not a Double",
            "`flag`: `maybe` is not a Boolean",
            "`day`: `2024-02-30` is not a Date (YYYY-MM-DD): there is no day 30 in 2024-02, which has 29 days",
            "`at`: `2024-01-01garbage` is not a Timestamp",
            "`at_utc`: `2024-01-01T24:00:00Z` is not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): hours go from 00 to 23",
        ],
    ),
    (
        4,
        &[
            "`x`: `NaN` is not a Double",
            "`day`: `1900-02-29` is not a Date (YYYY-MM-DD): there is no day 29 in 1900-02, which has 28 days",
            "`at`: `2024-01-01T10:00` is not a Timestamp",
            "`at_utc`: `2024-01-01T23:59:60Z` is not a Timestamp (YYYY-MM-DDTHH:MM:SS with an optional offset or Z): a leap second (:60) is refused",
        ],
    ),
];

fn form_args<'a>(values: &[(&'a str, &'a str)], storage: &'a mut Vec<String>) -> Vec<&'a str> {
    storage.clear();
    for (field, text) in values {
        storage.push(format!("{field}={text}"));
    }
    let mut args = Vec::new();
    for a in storage.iter() {
        args.push("--form");
        args.push(a.as_str());
    }
    args
}

fn runner_story(d: &Dialect) {
    let s = format!("pfv{}", std::process::id());
    let _cleanup = Cleanup { dialect: d, suffix: s.clone() };
    let p = TempProject::new();
    p.write("defs/typed.yaml", definitions(d, &s));
    p.write("defs/typed.sql", (d.install)(&s));
    p.write("rows.csv", CSV);
    expect(&p, d, 0, &["compile", "defs", "--out", "ir.json"]);
    expect(&p, d, 0, &["target", "install", "typed", "defs"]);
    for login in ["alice", "bob", "carol", "dave", "erin"] {
        expect(&p, d, 0, &["user", "create", login, "--definitions", "ir.json"]);
    }
    let mut target = connect(d, &p);
    let count = format!("select count(*) from {s}_typed");

    // Bad form values: every problem is reported at once and nothing reaches the target.
    for round in BAD_FORMS {
        let values: Vec<(&str, &str)> = round.iter().map(|(f, t, _)| (*f, *t)).collect();
        let mut storage = Vec::new();
        let mut args = vec!["run", "ir.json", "--process", "Typed", "--user", "bob"];
        args.extend(form_args(&values, &mut storage));
        let out = pf(&p, d, &args);
        assert_ne!(out.code(), Some(0), "{}: bad values were accepted\n{out}", d.name);
        for (_, _, message) in round.iter() {
            assert!(out.stderr.contains(message), "{}: no `{message}`\n{out}", d.name);
        }
    }
    assert_eq!(scalar(&mut target, &count).as_deref(), Some("0"), "{}: a bad value reached the target", d.name);

    // Good values reach typed columns with their meaning: whitespace and case are forgiven,
    // the offset turns into the UTC instant, the wall-clock time stays as written.
    let mut storage = Vec::new();
    let mut args = vec!["run", "ir.json", "--process", "Typed", "--user", "alice", "--secret", "pw=env:PW"];
    args.extend(form_args(GOOD_FORM, &mut storage));
    expect(&p, d, 0, &args);
    let read_alice = (d.read)(&s, "alice");
    assert_eq!(scalar(&mut target, &read_alice).as_deref(), Some(alice_row(d.name)), "{}", d.name);
    let pw = format!("select pw from {s}_typed where login = 'alice'");
    assert_eq!(scalar(&mut target, &pw).as_deref(), Some(" pw'\"\\ "), "{}: a secret is kept as given", d.name);
    let note = format!("select note from {s}_typed where login = 'alice'");
    assert_eq!(scalar(&mut target, &note).as_deref(), Some("  spaced  "), "{}: a String is kept as given", d.name);

    // CSV rows: the good one is stored canonical, each bad one reported with all its problems.
    // Failed rows make the run fail (exit 1) after the good ones are applied.
    let out = expect(&p, d, 1, &["recon", "ir.json", "--process", "Typed", "--csv", "rows.csv"]);
    assert!(out.stdout.contains("1 linked") && out.stdout.contains("2 failed"), "{}: {out}", d.name);
    let events = expect(&p, d, 0, &["--format", "json", "recon", "events"]);
    let events: serde_json::Value = serde_json::from_str(events.stdout.trim()).expect("events are JSON");
    let events = events.as_array().cloned().unwrap_or_default();
    for (line, parts) in BAD_ROWS {
        let event = events.iter().find(|e| e["line"] == *line);
        let error = event.and_then(|e| e["error"].as_str()).unwrap_or("");
        for part in *parts {
            assert!(error.contains(part), "{}: line {line}: `{part}` not in {error:?}\n{events:?}", d.name);
        }
    }
    let shown = expect(&p, d, 0, &["account", "show", "--process", "Typed", "--user", "carol"]);
    let form = shown.stdout.lines().find_map(|l| l.strip_prefix("form: ")).unwrap_or("");
    let form: Vec<&str> = form.split("  ").collect();
    for (field, want) in CAROL_FORM {
        let pair = format!("{field}={want}");
        assert!(form.contains(&pair.as_str()), "{}: carol's form has no `{pair}`: {form:?}", d.name);
    }
    for login in ["dave", "erin"] {
        let out = pf(&p, d, &["account", "show", "--process", "Typed", "--user", login]);
        assert_ne!(out.code(), Some(0), "{}: a bad row made an account for {login}\n{out}", d.name);
    }

    // The CSV's values reach the target when a task sends them.
    // (A CSV carries no secret: the change gives the one the task sends.)
    let set = [
        "account",
        "set",
        "--process",
        "Typed",
        "--user",
        "carol",
        "--form",
        "note=from the CSV",
        "--secret",
        "pw=env:PW",
    ];
    expect(&p, d, 0, &set);
    let read_carol = (d.read)(&s, "carol");
    assert_eq!(scalar(&mut target, &read_carol).as_deref(), Some(carol_row(d.name)), "{}", d.name);
    assert_eq!(scalar(&mut target, &count).as_deref(), Some("2"), "{}", d.name);
}

#[test]
fn runner_types_form_values_and_csv_rows_on_sqlite() {
    runner_story(&SQLITE());
}

#[test]
fn runner_types_form_values_and_csv_rows_on_postgres() {
    let Some(url) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    runner_story(&postgres(url));
}

#[test]
fn runner_types_form_values_and_csv_rows_on_mariadb() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    runner_story(&mariadb(url));
}
