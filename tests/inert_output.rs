//! Issue 9, item 4: terminal output is inert. A user whose names and a form value carry
//! terminal escape sequences (CSI colour, OSC window title with BEL), CR/LF, C1 controls, DEL,
//! a bidi override and wide CJK characters, and a target whose error message carries them
//! too: no human output of `run`, `account list/show`, `task list` or `user list` holds a raw
//! control byte, every table stays aligned by display width, and JSON output still gives the
//! exact values back. A definitions file with such bytes gets inert diagnostics too.

use provflow_tests::{run_bounded, RunOutput, TempProject};
use std::time::Duration;
use unicode_width::UnicodeWidthStr;

const DEADLINE: Duration = Duration::from_secs(60);

/// Colour, a window title (OSC ... BEL), CR LF, wide characters, a right-to-left override, a
/// C1 CSI and DEL.
const HOSTILE: &str = "Ann\x1b[31mRed\x1b[0m\x1b]0;pwned\x07 名前\u{202e}evil\r\nline2\u{9b}31m\x7f";

/// The target's error: colour, a fake line after CR LF, a bidi override and BEL.
const TARGET_ERROR: &str = "\x1b[31mdenied\x1b[0m\r\nFAKE: ok\u{202e}\x07";

fn pf(p: &TempProject, args: &[&str]) -> RunOutput {
    let mut cmd = p.provflow();
    cmd.args(args).env("PW", "Inert-pw-1").env_remove("DBUM_SQLITE_URL").env_remove("PROVFLOW_SECRET_KEY");
    run_bounded(&mut cmd, DEADLINE)
}

fn expect(p: &TempProject, code: i32, args: &[&str]) -> RunOutput {
    let out = pf(p, args);
    assert_eq!(out.code(), Some(code), "provflow {args:?}\n{}", shown(&out));
    out
}

/// Output as a test failure shows it: escaped, so the terminal running the tests stays inert.
fn shown(out: &RunOutput) -> String {
    format!("{out}").escape_debug().to_string().replace("\\n", "\n")
}

/// A character that must never reach a terminal raw.
fn is_raw_control(c: char) -> bool {
    c.is_control() && c != '\n'
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

fn assert_inert(out: &RunOutput, what: &str) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw: Vec<String> =
            text.chars().filter(|c| is_raw_control(*c)).map(|c| c.escape_unicode().to_string()).collect();
        assert!(raw.is_empty(), "{what}: raw control characters {raw:?} on {stream}\n{}", shown(out));
    }
}

/// Every row of the table whose header line starts with `header` has its columns where the
/// header has them, in display columns: two spaces right before each column's start.
fn assert_aligned(text: &str, header: &str, rows: usize, what: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.starts_with(header)).unwrap_or_else(|| panic!("{what}: no `{header}`"));
    // Headers are ASCII: a column starts after two spaces.
    let head: Vec<char> = lines[start].chars().collect();
    let columns: Vec<usize> =
        (2..head.len()).filter(|&i| head[i - 2] == ' ' && head[i - 1] == ' ' && head[i] != ' ').collect();
    assert!(!columns.is_empty(), "{what}: no columns in `{}`", lines[start]);
    for row in &lines[start + 1..start + 1 + rows] {
        // (display column, character) of the row.
        let mut at = 0;
        let placed: Vec<(usize, char)> = row
            .chars()
            .map(|c| {
                let here = at;
                at += UnicodeWidthStr::width(c.encode_utf8(&mut [0; 4]) as &str);
                (here, c)
            })
            .collect();
        for &col in &columns {
            let gap: String = placed.iter().filter(|(a, _)| *a + 2 >= col && *a < col).map(|(_, c)| *c).collect();
            assert_eq!(gap, "  ", "{what}: `{}` is not aligned at display column {col}", row.escape_debug());
        }
    }
}

#[test]
fn hostile_names_values_and_target_errors_print_inert_and_aligned() {
    let p = TempProject::new();
    p.copy_from_repo("definitions");
    expect(&p, 0, &["compile", "definitions", "--out", "ir.json"]);
    expect(&p, 0, &["target", "install", "dbum-sqlite", "ir.json"]);
    // The target refuses every new user with the hostile message.
    let db = rusqlite::Connection::open(p.path().join(".provflow/targets/dbum-sqlite.db")).expect("target db");
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON db_users BEGIN SELECT RAISE(ABORT, '{TARGET_ERROR}'); END;"
    ))
    .expect("trigger");
    drop(db);

    let first = format!("usr_first_name={HOSTILE}");
    let display = format!("usr_display_name={HOSTILE}");
    let create = ["user", "create", "JD", "--attr", &first, "--attr", "usr_last_name=Doe"];
    let out = expect(&p, 0, &[&create[..], &["--attr", "usr_udf_cost_center=CC-1", "--attr", &display]].concat());
    assert_inert(&out, "user create");
    expect(
        &p,
        0,
        &[
            "user",
            "create",
            "WIDE",
            "--attr",
            "usr_first_name=名前名前",
            "--attr",
            "usr_last_name=Doe",
            "--attr",
            "usr_udf_cost_center=CC-2",
        ],
    );

    let username = format!("username={HOSTILE}");
    let run = pf(
        &p,
        &[
            "run",
            "ir.json",
            "--process",
            "DBUM Account",
            "--user",
            "JD",
            "--secret",
            "password=env:PW",
            "--form",
            &username,
        ],
    );
    assert_inert(&run, "run");
    assert!(
        run.stdout.contains("\\e[31mdenied\\e[0m\\r\\nFAKE: ok\\u{202e}\\x07"),
        "the target's message, escaped\n{}",
        shown(&run)
    );
    assert_aligned(&run.stdout, "ID  TASK", 2, "run");

    let tasks = expect(&p, 0, &["task", "list"]);
    assert_inert(&tasks, "task list");
    assert_aligned(&tasks.stdout, "ID  PROCESS", 2, "task list");
    assert_eq!(tasks.stdout.lines().count(), 3, "one line per task\n{}", shown(&tasks));

    let show = expect(&p, 0, &["account", "show", "--process", "DBUM Account", "--user", "JD"]);
    assert_inert(&show, "account show");
    assert_aligned(&show.stdout, "ID  TASK", 2, "account show");
    assert!(
        show.stdout
            .contains("username=Ann\\e[31mRed\\e[0m\\e]0;pwned\\x07 名前\\u{202e}evil\\r\\nline2\\u{9b}31m\\x7f"),
        "{}",
        shown(&show)
    );

    let accounts = expect(&p, 0, &["account", "list"]);
    assert_inert(&accounts, "account list");
    assert_aligned(&accounts.stdout, "ID  PROCESS", 1, "account list");

    let users = expect(&p, 0, &["user", "list"]);
    assert_inert(&users, "user list");
    assert_eq!(users.stdout.lines().count(), 3, "one line per user\n{}", shown(&users));
    assert_aligned(&users.stdout, "LOGIN", 2, "user list");

    // JSON stays JSON, gives the exact values back, and holds no raw control either.
    let json = expect(&p, 0, &["--format", "json", "user", "list"]);
    assert_inert(&json, "user list --format json");
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    let jd = v.as_array().and_then(|a| a.iter().find(|u| u["login"] == "JD")).expect("JD");
    assert_eq!(jd["attributes"]["usr_first_name"], HOSTILE);
    assert_eq!(jd["attributes"]["usr_display_name"], HOSTILE);
}

/// Diagnostics about definitions files with control characters in them: the message (an
/// unknown field named with an escape sequence), the file name and the source snippet (a
/// syntax error on a line full of them) are inert, in the human, GitHub and JSON formats.
#[test]
fn diagnostics_of_hostile_definitions_are_inert() {
    let p = TempProject::new();
    // YAML escapes: the key holds ESC, a right-to-left override and a C1 CSI.
    let field = r"unknown\e[2J\u202e\x9b";
    p.write(
        "defs/unknown-field.yaml",
        format!("apiVersion: provflow/v1\nkind: Target\nname: t\ndialect: sqlite\nqueries: q\n\"{field}\": 1\n"),
    );
    p.write("defs/syntax.yaml", format!("apiVersion: provflow/v1\nkind: Target\nname: \"t{HOSTILE}\"\n"));
    p.write("defs/name\x1b[31m\u{202e}.yaml", "apiVersion: provflow/v1\nkind: Target\nname: u\nbogus: 1\n");
    for format in ["human", "github", "json"] {
        let out = pf(&p, &["--format", format, "compile", "defs"]);
        assert_eq!(out.code(), Some(1), "{format}\n{}", shown(&out));
        assert_inert(&out, &format!("compile --format {format}"));
        for expected in ["PF002", "PF102", "unknown\\e[2J\\u{202e}\\u{9b}"] {
            let expected = if format == "json" { "PF" } else { expected };
            assert!(
                out.stdout.contains(expected) || out.stderr.contains(expected),
                "{format}: no `{expected}`\n{}",
                shown(&out)
            );
        }
    }
}
