//! `provflow notifications export` end to end: messages of the example definitions, written
//! as `.eml` files and read back by two independent parsers (`mail-parser` and Python's
//! `email` package with its strict policy), with the sender from the template, `--from`,
//! `PROVFLOW_MAIL_FROM` or the default.

#[path = "runner_common.rs"]
mod common;

use common::Project;
use provflow_tests::python_eml_check;
use std::path::{Path, PathBuf};

const DBUM: &str = "DBUM Account";

/// A project where ELEFEVRE got `Account Created` (HTML, the template names its sender) and
/// `Account Disabled` (plain ASCII text, no sender of its own).
fn project() -> Project {
    let p = Project::new().with_env("PROVFLOW_NOW", "1700000000");
    p.install_dbum();
    p.expect(
        0,
        &[
            "user",
            "create",
            "ELEFEVRE",
            "--attr",
            "usr_first_name=Élodie",
            "--attr",
            "usr_last_name=Lefèvre",
            "--attr",
            "usr_email=elodie.lefevre@example.com",
            "--attr",
            "usr_udf_cost_center=CC-1001",
            "--attr",
            "usr_udf_building=HQ-North",
        ],
        &[],
    );
    p.expect(
        0,
        &["run", p.ir(), "--process", DBUM, "--user", "ELEFEVRE", "--secret", "password=env:PW"],
        &[("PW", "s3cret-pw")],
    );
    p.expect(0, &["user", "disable", "ELEFEVRE"], &[]);
    p
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

/// One message as `mail-parser` reads it.
struct Read {
    template: String,
    /// (display name, address)
    from: (String, String),
    to: (String, String),
    subject: String,
    /// The text/plain part, with LF line ends.
    text: String,
}

/// Each file as `mail-parser` reads it, after the checks every message must pass.
fn read_with_mail_parser(files: &[PathBuf]) -> Vec<Read> {
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.is_ascii(), "{} is not 7-bit", f.display());
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("s3cret-pw"), "{}", f.display());
            for line in text.split("\r\n") {
                assert!(!line.contains(['\r', '\n', '\0']) && line.len() <= 78, "{}: {line:?}", f.display());
            }
            let m = mail_parser::MessageParser::default().parse(&bytes).expect("mail-parser reads it");
            let one = |a: Option<&mail_parser::Address<'_>>| {
                let first = a.and_then(|a| a.first()).expect("one mailbox");
                (first.name().unwrap_or_default().to_owned(), first.address().unwrap_or_default().to_owned())
            };
            Read {
                template: m.header_raw("X-Provflow-Template").unwrap_or_default().trim().to_owned(),
                from: one(m.from()),
                to: one(m.to()),
                subject: m.subject().unwrap_or_default().to_owned(),
                text: m.body_text(0).unwrap_or_default().replace("\r\n", "\n"),
            }
        })
        .collect()
}

#[test]
fn export_writes_standard_messages_from_the_configured_sender() {
    let p = project();
    // (output directory, flags, environment, the sender of templates without `from:`)
    type Run<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], (&'a str, &'a str));
    let runs: [Run<'_>; 3] = [
        ("default", &[], &[], ("provflow", "provflow@localhost")),
        ("flag", &["--from", "Opérations <ops@example.com>"], &[], ("Opérations", "ops@example.com")),
        ("env", &[], &[("PROVFLOW_MAIL_FROM", "\"Ops, Env\" <env@example.com>")], ("Ops, Env", "env@example.com")),
    ];
    for (dir, flags, env, (name, address)) in runs {
        let mut args = vec!["notifications", "export", dir];
        args.extend_from_slice(flags);
        let out = p.expect(0, &args, env);
        assert!(out.stdout.contains("wrote 2 message(s)"), "{out}");
        let files = eml_files(&p.path().join(dir));
        let read = read_with_mail_parser(&files);
        let created = &read[0];
        let disabled = &read[1];
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(created.template, "Account Created");
        assert_eq!(created.from, pair("Identity and Access Management", "iam@example.com"));
        assert_eq!(disabled.template, "Account Disabled");
        assert_eq!(disabled.from, pair(name, address));
        for m in &read {
            assert_eq!(m.to, pair("Élodie Lefèvre", "elodie.lefevre@example.com"));
        }
        assert_eq!(created.subject, "Your DBUM Account account is ready");
        assert!(
            created.text.starts_with("Hello Élodie,\n\nYour DBUM Account account was provisioned"),
            "{}",
            created.text
        );
        assert!(disabled.text.contains("quote cost center\nCC-1001."), "{}", disabled.text);

        let Some(py) = python_eml_check(&files) else { continue };
        let mailbox = |v: &serde_json::Value| {
            (v[0]["name"].as_str().map(str::to_owned), v[0]["address"].as_str().map(str::to_owned))
        };
        let some = |n: &str, a: &str| (Some(n.to_owned()), Some(a.to_owned()));
        assert_eq!(mailbox(&py[0]["from"]), some("Identity and Access Management", "iam@example.com"));
        assert_eq!(mailbox(&py[1]["from"]), some(name, address));
        let types: Vec<&str> = py[0]["parts"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["multipart/alternative", "text/plain", "text/html"]);
        assert_eq!(py[0]["parts"][1]["content"].as_str().map(|c| c.replace("\r\n", "\n")), Some(created.text.clone()));
        assert!(py[0]["parts"][2]["content"].as_str().unwrap().contains("<p>Hello Élodie,</p>"), "{}", py[0]);
        assert_eq!(py[1]["parts"][0]["type"], "text/plain");
        assert_eq!(py[1]["parts"][0]["charset"], "us-ascii");
        // One line of the template is 78 characters: over 76, so not 7bit.
        assert_eq!(py[1]["parts"][0]["transfer_encoding"], "quoted-printable");
        for m in &py {
            assert_eq!(m["date"], 1_700_000_000, "{m}");
            assert_eq!(mailbox(&m["to"]), some("Élodie Lefèvre", "elodie.lefevre@example.com"));
        }
    }
    // The same messages are written to the same bytes by every export.
    let again = p.path().join("again");
    p.expect(0, &["notifications", "export", "again"], &[]);
    for (a, b) in eml_files(&p.path().join("default")).iter().zip(eml_files(&again)) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{}", a.display());
    }
}

#[test]
fn a_sender_that_is_no_mailbox_is_refused_before_anything_is_written() {
    let p = project();
    for (flags, env) in [
        (vec!["--from", "IAM <iam@example.com>\r\nBcc: x@evil.example"], vec![]),
        (vec!["--from", "not an address"], vec![]),
        (vec![], vec![("PROVFLOW_MAIL_FROM", "\u{1b}[31mIAM <iam@example.com>")]),
        (vec!["--from", "Élodie <élodie@example.com>"], vec![]),
    ] {
        let mut args = vec!["notifications", "export", "out"];
        args.extend_from_slice(&flags);
        let out = p.expect(2, &args, &env);
        assert!(out.stderr.contains("--from (or PROVFLOW_MAIL_FROM)"), "{out}");
        assert!(!out.stderr.contains("evil") && !out.stderr.contains('\u{1b}'), "{out}");
        assert!(!p.path().join("out").exists());
    }
}
