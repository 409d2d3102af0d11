//! Issue 9, item 1: credentials never leak through a URL. Every form of connection string the
//! drivers accept (URL user info, `?password=`, key=value DSNs with plain and quoted values,
//! PostgreSQL `options`, MariaDB URLs, percent-encoded passwords) is given to every command
//! that connects, as `--state`, `PROVFLOW_STATE`, `--target NAME=URL` and a Target's
//! `url_env`; no byte of any output may show the password, as written, decoded or encoded,
//! and the message must still say what failed.
//!
//! The unreachable forms point at 127.0.0.1 port 1 (nothing listens; nothing leaves the
//! machine) and always run. A refused password needs a server that checks passwords: the
//! MariaDB test database (root has an empty password, so any password is refused) when
//! PROVFLOW_TEST_MARIADB_URL is set. The PostgreSQL test server trusts 127.0.0.1 and ignores
//! passwords, so PostgreSQL is covered by the unreachable forms.
//!
//! A failing assertion prints the output with every form of the password masked.

use provflow_tests::{database_url, run_bounded, RunOutput, TempProject};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// URL-safe.
const PLAIN: &str = "Hunter2-Zq9x";
/// As written in a quoted DSN value (`\'` and `\\` are escapes) and as the driver reads it.
const QUOTED_RAW: &str = "P W\\'q\\\\7";
const QUOTED: &str = "P W'q\\7";
/// Percent-encoded in a URL, and decoded.
const ENCODED_RAW: &str = "p%40ss-Zq9";
const ENCODED: &str = "p@ss-Zq9";

/// What a dialect's forms are given to.
#[derive(Debug, PartialEq, Eq)]
struct Server {
    target: &'static str,
    url_env: &'static str,
    process: &'static str,
    scenario: &'static str,
    /// What `--state` with such a URL answers.
    as_state: &'static str,
}

const PG: &Server = &Server {
    target: "dbum-pg",
    url_env: "DBUM_PG_URL",
    process: "DBUM Account PG",
    scenario: "definitions/scenarios/dbum-postgres.yaml",
    as_state: "PostgreSQL state store",
};

const MARIADB: &Server = &Server {
    target: "dbum-mariadb",
    url_env: "DBUM_MARIADB_URL",
    process: "DBUM Account MariaDB",
    scenario: "definitions/scenarios/dbum-mariadb.yaml",
    as_state: "is not a state store URL",
};

/// One way of writing a connection string with a password.
struct Form {
    label: &'static str,
    server: &'static Server,
    url: String,
    /// The password as the driver reads it and as written in the string.
    passwords: Vec<&'static str>,
}

impl Form {
    fn new(label: &'static str, server: &'static Server, url: String, passwords: &[&'static str]) -> Self {
        Form { label, server, url, passwords: passwords.to_vec() }
    }

    /// Every string that must not appear: each password as is and percent-encoded.
    fn leaks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.passwords {
            for s in [p.to_string(), percent_encode(p, false), percent_encode(p, true)] {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }
}

fn percent_encode(s: &str, lower: bool) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form, pointing at a closed port of this machine.
fn unreachable_forms() -> Vec<Form> {
    let (pg, my) = (PG, MARIADB);
    vec![
        Form::new("URL user info", pg, format!("postgres://u:{PLAIN}@127.0.0.1:1/db"), &[PLAIN]),
        Form::new("URL ?password=", pg, format!("postgresql://u@127.0.0.1:1/db?password={PLAIN}"), &[PLAIN]),
        Form::new("key=value DSN", pg, format!("host=127.0.0.1 port=1 user=u password={PLAIN} dbname=db"), &[PLAIN]),
        Form::new(
            "quoted key=value DSN",
            pg,
            format!("host=127.0.0.1 port=1 user=u password='{QUOTED_RAW}' dbname=db"),
            &[QUOTED, QUOTED_RAW],
        ),
        Form::new(
            "percent-encoded user info",
            pg,
            format!("postgres://u:{ENCODED_RAW}@127.0.0.1:1/db"),
            &[ENCODED, ENCODED_RAW],
        ),
        Form::new(
            "password inside options",
            pg,
            format!("postgres://u@127.0.0.1:1/db?options=-c%20password%3D{PLAIN}"),
            &[PLAIN],
        ),
        Form::new("MariaDB user info", my, format!("mysql://u:{PLAIN}@127.0.0.1:1/db"), &[PLAIN]),
        Form::new("MariaDB ?password=", my, format!("mysql://u@127.0.0.1:1/db?password={PLAIN}"), &[PLAIN]),
        Form::new(
            "MariaDB percent-encoded",
            my,
            format!("mysql://u:{ENCODED_RAW}@127.0.0.1:1/db"),
            &[ENCODED, ENCODED_RAW],
        ),
    ]
}

/// `output` with every leak form masked, for assertion messages.
fn masked(output: &RunOutput, form: &Form) -> String {
    form.leaks().iter().fold(output.to_string(), |text, leak| text.replace(leak.as_str(), "<PASSWORD>"))
}

/// No output byte shows the password; returns stdout and stderr together.
fn assert_no_leak(output: &RunOutput, form: &Form, what: &str) -> String {
    let all = format!("{}\n{}", output.stdout, output.stderr);
    assert!(
        !form.leaks().iter().any(|leak| all.contains(leak.as_str())),
        "{} ({}): `{what}` shows the password\n{}",
        form.label,
        form.server.target,
        masked(output, form)
    );
    all
}

/// A project with `definitions/` compiled to `ir.json` and a secret key, so that `resume`
/// finds the password of a Pending task and calls the target.
struct Project {
    dir: TempProject,
}

impl Project {
    fn new() -> Self {
        let dir = TempProject::new();
        dir.copy_from_repo("definitions");
        let p = Project { dir };
        let out = p.pf(&["compile", "definitions", "--out", "ir.json"], &[]);
        assert_eq!(out.code(), Some(0), "{out}");
        p
    }

    fn pf(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        let mut cmd = self.dir.provflow();
        cmd.args(args)
            .env("PROVFLOW_SECRET_KEY", KEY)
            .env("PW", "Acct-pw-1")
            .env("DBUM_TEST_PASSWORD", "Scn-pw-1")
            .env("DBUM_TEST_NEW_PASSWORD", "Scn-pw-2");
        for var in ["DBUM_PG_URL", "DBUM_MARIADB_URL", "DBUM_SQLITE_URL"] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(&mut cmd, DEADLINE)
    }

    fn create_user(&self, login: &str) {
        let out = self.pf(
            &["user", "create", login, "--attr", "usr_first_name=A", "--attr", "usr_last_name=B"]
                .iter()
                .copied()
                .chain(["--attr", "usr_udf_cost_center=CC-1"])
                .collect::<Vec<_>>(),
            &[],
        );
        assert_eq!(out.code(), Some(0), "{out}");
    }
}

/// How a form reaches the runner.
#[derive(Clone, Copy, Debug)]
enum Via {
    Flag,
    Env,
}

/// Every command that opens a target, with the form given `via` the flag or `url_env`:
/// the exit code and a message naming the endpoint, never the password.
fn check_target_commands(p: &Project, form: &Form, via: Via, login: &str, expect: &dyn Fn(&str) -> bool) {
    let server = form.server;
    let flag = format!("{}={}", server.target, form.url);
    let (global, env): (Vec<&str>, Vec<(&str, &str)>) = match via {
        Via::Flag => (vec!["--target", flag.as_str()], vec![]),
        Via::Env => (vec![], vec![(server.url_env, form.url.as_str())]),
    };
    let with = |args: &[&str]| -> Vec<String> { global.iter().chain(args).map(|s| s.to_string()).collect() };
    let scenario_paths = ["definitions/dbum", "definitions/users.yaml", "definitions/notifications", server.scenario];
    let secret = "password=env:PW";
    let commands: Vec<(Vec<String>, i32)> = vec![
        (with(&["target", "install", server.target, "ir.json"]), 2),
        (with(&["target", "check", server.target, "definitions"]), 2),
        (with(&["run", "ir.json", "--process", server.process, "--user", login, "--secret", secret]), 2),
        // The task `run` left Pending: resume calls the target again.
        (with(&["resume"]), 2),
        (with(&["recon", "ir.json", "--process", server.process, "--from-target"]), 2),
        // A scenario that cannot reach its database fails (exit 1), naming the endpoint.
        (with(&["test", "--junit", "junit.xml"].iter().copied().chain(scenario_paths).collect::<Vec<_>>()), 1),
    ];
    for (args, code) in commands {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = p.pf(&argv, &env);
        let what =
            format!("{} via {via:?}", argv.iter().skip(global.len()).take(2).copied().collect::<Vec<_>>().join(" "));
        let all = assert_no_leak(&out, form, &what);
        assert_eq!(out.code(), Some(code), "{} ({what}): exit code\n{}", form.label, masked(&out, form));
        assert!(expect(&all), "{} ({what}): the message does not say what failed\n{}", form.label, masked(&out, form));
    }
    let junit = std::fs::read_to_string(p.dir.path().join("junit.xml")).unwrap_or_default();
    assert!(junit.contains("<testcase"), "{}: no JUnit report", form.label);
    assert!(
        !form.leaks().iter().any(|leak| junit.contains(leak.as_str())),
        "{}: the JUnit report shows the password",
        form.label
    );
    // Commands that may open the target but need not: still nothing shown.
    for args in [
        with(&["plan", "ir.json", "--process", server.process, "--user", login, "--secret", secret]),
        with(&["notifications", "list"]),
        with(&["task", "list"]),
        with(&["account", "show", "--process", server.process, "--user", login]),
    ] {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = p.pf(&argv, &env);
        assert_no_leak(&out, form, &argv.join(" "));
    }
}

fn unreachable(message: &str) -> bool {
    message.contains("127.0.0.1:1") && message.contains("refused")
}

/// Each form and way in a project of its own, so that `resume` meets only its own target.
#[test]
fn unreachable_targets_never_show_their_password() {
    for form in unreachable_forms() {
        for via in [Via::Flag, Via::Env] {
            let p = Project::new();
            p.create_user("LEAK");
            check_target_commands(&p, &form, via, "LEAK", &|m| unreachable(m));
        }
    }
}

/// A SQLite target given another database's URL refuses it before creating anything, and
/// shows it redacted.
#[test]
fn a_sqlite_target_refuses_a_database_url() {
    let p = Project::new();
    for form in unreachable_forms() {
        let flag = format!("dbum-sqlite={}", form.url);
        let out = p.pf(&["--target", &flag, "target", "install", "dbum-sqlite", "ir.json"], &[]);
        assert_no_leak(&out, &form, "target install dbum-sqlite");
        assert_eq!(out.code(), Some(2), "{}\n{}", form.label, masked(&out, &form));
        assert!(out.stderr.contains("takes `sqlite:PATH`"), "{}\n{}", form.label, masked(&out, &form));
        assert!(out.stderr.contains("********"), "{}\n{}", form.label, masked(&out, &form));
    }
    assert_only_project_files(&p);
}

/// Nothing but the project's own files in its directory: no connection string became a file.
fn assert_only_project_files(p: &Project) {
    let entries: Vec<String> = std::fs::read_dir(p.dir.path())
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(
        entries.iter().all(|e| [".provflow", "definitions", "ir.json", "junit.xml"].contains(&e.as_str())),
        "a connection string became a file: {} entries",
        entries.len()
    );
}

/// `--target` without `NAME=`: refused, shown redacted.
#[test]
fn a_bare_url_as_target_is_refused_redacted() {
    let p = Project::new();
    for form in unreachable_forms() {
        let out = p.pf(&["--target", &form.url, "task", "list"], &[]);
        assert_no_leak(&out, &form, "--target URL task list");
        assert_eq!(out.code(), Some(2), "{}\n{}", form.label, masked(&out, &form));
        assert!(out.stderr.contains("--target takes NAME=URL"), "{}\n{}", form.label, masked(&out, &form));
    }
}

/// `--state` and `PROVFLOW_STATE` with every form, on every command that opens the store:
/// PostgreSQL URLs and DSNs are recognised (and their server is unreachable, or the command
/// refuses PostgreSQL stores), others are not a store URL;
/// none becomes a file name, and none is shown.
#[test]
fn state_urls_never_show_their_password() {
    let p = Project::new();
    let commands: [&[&str]; 10] = [
        &["run", "ir.json", "--process", "DBUM Account", "--user", "X", "--secret", "password=env:PW"],
        &["plan", "ir.json", "--process", "DBUM Account", "--user", "X"],
        &["resume"],
        &["user", "list"],
        &["user", "create", "X", "--attr", "usr_first_name=A"],
        &["task", "list"],
        &["account", "list"],
        &["account", "show", "--process", "DBUM Account", "--user", "X"],
        &["notifications", "list"],
        &["recon", "ir.json", "--process", "DBUM Account", "--from-target"],
    ];
    for form in unreachable_forms() {
        let expected = form.server.as_state;
        for args in commands {
            for via in [Via::Flag, Via::Env] {
                let out = match via {
                    Via::Flag => {
                        let argv: Vec<&str> = ["--state", form.url.as_str()].iter().chain(args).copied().collect();
                        p.pf(&argv, &[])
                    }
                    Via::Env => p.pf(args, &[("PROVFLOW_STATE", form.url.as_str())]),
                };
                let what = format!("{} with the state via {via:?}", args.first().unwrap_or(&""));
                assert_no_leak(&out, &form, &what);
                assert_eq!(out.code(), Some(2), "{} ({what})\n{}", form.label, masked(&out, &form));
                assert!(out.stderr.contains(expected), "{} ({what})\n{}", form.label, masked(&out, &form));
            }
        }
    }
    assert_only_project_files(&p);
}

/// `--help` shows `PROVFLOW_STATE`'s name, never its value.
#[test]
fn help_hides_the_state_url() {
    let p = Project::new();
    let form = unreachable_forms().into_iter().next().expect("a form");
    let out = p.pf(&["task", "list", "--help"], &[("PROVFLOW_STATE", form.url.as_str())]);
    assert_no_leak(&out, &form, "task list --help");
    assert_eq!(out.code(), Some(0), "{}", masked(&out, &form));
}

/// MariaDB checks passwords: a wrong one is refused ("Access denied", exit 2) and shown by no
/// command, in every URL form.
#[test]
fn a_refused_mariadb_password_is_never_shown() {
    let Some(url) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let rest = url.strip_prefix("mysql://").unwrap_or(&url);
    let (_, server) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (host_port, db) = server.split_once('/').unwrap_or((server, "test"));
    let db = db.split('?').next().unwrap_or(db);
    let my = MARIADB;
    let forms = [
        Form::new("user info", my, format!("mysql://root:{PLAIN}@{host_port}/{db}"), &[PLAIN]),
        Form::new("?password=", my, format!("mysql://root@{host_port}/{db}?password={PLAIN}"), &[PLAIN]),
        Form::new(
            "percent-encoded",
            my,
            format!("mysql://root:{ENCODED_RAW}@{host_port}/{db}"),
            &[ENCODED, ENCODED_RAW],
        ),
    ];
    for form in &forms {
        for via in [Via::Flag, Via::Env] {
            let p = Project::new();
            p.create_user("DENIED");
            check_target_commands(&p, form, via, "DENIED", &|m| {
                m.contains(host_port) && m.contains("Access denied for user 'root'")
            });
        }
    }
}
