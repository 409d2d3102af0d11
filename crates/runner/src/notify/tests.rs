use super::*;
use crate::clock::ManualClock;
use crate::engine::{Engine, FormInput, Targets};
use crate::store::{Account, SqliteStore, UserRecord};
use crate::value::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub(crate) fn definitions() -> Bundle {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../definitions");
    let c = provflow_compiler::compile_paths(&provflow_compiler::source::FsReader, &[root]).unwrap();
    c.bundle.expect("definitions/ compiles")
}

fn user(first: &str, locale: &str, cost_center: &str) -> UserRecord {
    let attributes: BTreeMap<String, String> = [
        ("usr_first_name", first),
        ("usr_last_name", "Doe"),
        ("usr_locale", locale),
        ("usr_udf_cost_center", cost_center),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    UserRecord { login: "JDOE".into(), attributes, status: "Active".into(), locked: false }
}

fn account(process: &str) -> Account {
    Account {
        id: 7,
        process: process.into(),
        user: "JDOE".into(),
        bundle_hash: String::new(),
        status: ir::ObjectStatus::Provisioned,
        form: BTreeMap::new(),
        children: BTreeMap::new(),
    }
}

/// Renders template `name` for `u` against an empty state store.
fn render(bundle: &Bundle, name: &str, u: &UserRecord) -> Result<Rendered, RenderError> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), None, Box::new(|| 0)).unwrap();
    let mut targets = Targets::new(BTreeMap::new(), dir.path().to_path_buf());
    let index = bundle.templates.iter().position(|t| t.name == name).unwrap();
    let a = account("Badge Access");
    let data = MessageData { user: u, usr_key: Some(1), account: Some(&a), task: None, task_status: None };
    render_message(bundle, index, &data, &store, &mut targets)
}

#[test]
fn html_is_escaped_text_is_not() {
    let b = definitions();
    let evil = user("<script>alert(1)</script>", "en-US", "CC-1");
    let html = render(&b, "Account Created", &evil).unwrap();
    assert_eq!(html.message_type, MessageType::Html);
    assert!(html.body.contains("Hello &lt;script&gt;alert(1)&lt;&#x2f;script&gt;,"), "{}", html.body);
    assert!(!html.body.contains("<script>"), "{}", html.body);
    assert_eq!(html.subject, "Your Badge Access account is ready");
    let text = render(&b, "Request Rejected", &evil).unwrap();
    assert!(text.body.contains("Hello <script>alert(1)</script>,"), "{}", text.body);
}

#[test]
fn locale_comes_from_the_recipient_with_fallback() {
    let b = definitions();
    let cases = [
        ("fr-FR", "fr-FR", "Votre compte Badge Access est prêt"),
        ("de-DE", "en-US", "Your Badge Access account is ready"),
        ("", "en-US", "Your Badge Access account is ready"),
    ];
    for (wanted, got, subject) in cases {
        let m = render(&b, "Account Created", &user("Élodie", wanted, "CC-1")).unwrap();
        assert_eq!((m.locale.as_str(), m.subject.as_str()), (got, subject));
    }
    // Granted_User.First_Name (entity) in fr-FR, bare legacy $First_Name in en-US.
    assert!(render(&b, "Account Created", &user("Élodie", "fr-FR", "CC-1")).unwrap().body.contains("Bonjour Élodie"));
    assert!(render(&b, "Account Created", &user("Hans", "en-US", "CC-1")).unwrap().body.contains("Hello Hans,"));
}

#[test]
fn ascii_templates_refuse_non_ascii_values() {
    let b = definitions();
    let ok = render(&b, "Account Disabled", &user("Élodie", "en-US", "CC-1001")).unwrap();
    assert!(ok.body.contains("quote cost center\nCC-1001."), "{}", ok.body);
    let err = render(&b, "Account Disabled", &user("Jo", "en-US", "CC-Zürich")).unwrap_err();
    assert!(matches!(err, RenderError::NotAscii { character: 'ü', part: "long message", .. }), "{err:?}");
    assert!(err.to_string().contains("U+00FC"), "{err}");
}

#[test]
fn secret_attributes_never_reach_templates() {
    let mut b = definitions();
    b.user_schema.attributes.push(ir::UserAttribute {
        name: "usr_udf_pin".into(),
        ty: ir::ValueType::GuardedString,
        label: "PIN".into(),
        variable: "PIN".into(),
        required: false,
        searchable: false,
        multi_valued: false,
        max_size: None,
        encrypted: true,
        builtin: false,
        allowed_values: vec![],
    });
    let mut u = user("Jo", "en-US", "CC-1");
    u.attributes.insert("usr_udf_pin".into(), "4711".into());
    let t = b.templates.iter_mut().find(|t| t.name == "Request Rejected").unwrap();
    for l in &mut t.locales {
        l.long = "[{{ PIN }}|{{ Granted_User.PIN }}|{{ First_Name }}]".into();
    }
    let m = render(&b, "Request Rejected", &u).unwrap();
    assert_eq!(m.body, "[||Jo]");
}

// ----- exported messages ---------------------------------------------------------------------

/// Checks that hold for every exported message: 7-bit, CRLF only, no NUL, every line within
/// 78 characters (so within 998), every encoded word within 75. Returns the text.
fn assert_wellformed(eml: &[u8]) -> String {
    let text = String::from_utf8(eml.to_vec()).expect("a message is ASCII");
    assert!(eml.is_ascii(), "a message is 7-bit:\n{text}");
    assert!(!text.contains('\0'), "NUL in\n{text}");
    for line in text.split("\r\n") {
        assert!(!line.contains('\r') && !line.contains('\n'), "bare CR or LF in {line:?}");
        assert!(line.len() <= 78, "{} characters: {line:?}", line.len());
    }
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .filter(|w| w.starts_with("=?") && w.ends_with("?="))
        .collect();
    for w in &words {
        assert!(w.len() <= 75, "encoded word of {} characters: {w}", w.len());
    }
    text
}

/// Parses `files` with Python's `email` package under `email.policy.strict`
/// (tests/eml_check.py), which fails on any defect. `None` when `python3` is missing and
/// this is not CI (where it must be there).
pub(crate) fn python_parse(files: &[PathBuf]) -> Option<Vec<serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/eml_check.py");
    let out = match std::process::Command::new("python3").arg(&script).args(files).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED the Python email check: `python3` is not on PATH (with CI=true it is required)");
            return None;
        }
        Err(e) => panic!("cannot run python3 {}: {e}", script.display()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python's email package (strict policy) refused a message:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// Writes each message to a file of `dir` and parses them all with Python.
fn python_parse_bytes(dir: &Path, emls: &[&[u8]]) -> Option<Vec<serde_json::Value>> {
    let files: Vec<PathBuf> = emls
        .iter()
        .enumerate()
        .map(|(i, eml)| {
            let path = dir.join(format!("m{i}.eml"));
            std::fs::write(&path, eml).unwrap();
            path
        })
        .collect();
    python_parse(&files)
}

fn parse(eml: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(eml).expect("mail-parser reads it")
}

fn names_and_addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<(Option<String>, String)> {
    a.into_iter()
        .flat_map(|a| a.iter())
        .map(|m| (m.name().map(str::to_owned), m.address().unwrap_or_default().to_owned()))
        .collect()
}

fn python_mailboxes(v: &serde_json::Value) -> Vec<(Option<String>, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
            (name, m["address"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn mailbox(name: Option<&str>, address: &str) -> Mailbox {
    Mailbox { name: name.map(str::to_owned), address: address.to_owned() }
}

#[test]
fn long_non_ascii_subject_display_names_and_a_recipient_list() {
    let dir = tempfile::tempdir().unwrap();
    let from = mailbox(Some("Gestion des identités — IAM"), "iam@example.com");
    // The longest names that stay one piece: 45 bytes of UTF-8, 70 characters of ASCII
    // (escapes counted).
    let widest = "Ébène Ünïcödé Lefèvre-Ørsted Ñandú".to_owned() + "x";
    assert_eq!(widest.len(), 45);
    let ascii = format!("Doe, John \"JD\" \\ Jr. {}", "y".repeat(46));
    assert_eq!(ascii.len() + 3, 70);
    let to = vec![
        mailbox(Some("Élodie Lefèvre"), "elodie.lefevre@example.com"),
        mailbox(Some("Doe, John \"JD\" \\ Jr."), "j.doe@example.com"),
        mailbox(Some("李小龍"), "xiaolong@example.com"),
        mailbox(Some(&widest), "widest@example.com"),
        mailbox(Some(&ascii), "ascii@example.com"),
        mailbox(None, "k@example.com"),
    ];
    let subject = "Votre compte Badge Access est prêt — une très longue ligne d'objet pour vérifier le pliage \
                   des en-têtes encodés, 안녕하세요 세계, ça marche ? Ünïcödé partout, et encore un peu plus long";
    let body = "Bonjour Élodie,\n\nvotre compte est prêt.\n";
    let mail = Mail {
        from: &from,
        to: &to,
        subject,
        date: 1_700_000_000,
        message_id: "outbox-3.1700000000.abc@example.com",
        message_type: MessageType::Text,
        body,
        template: "Account Créé",
    };
    let eml = write_message(&mail).unwrap();
    let text = assert_wellformed(&eml);
    // The old writer put a long subject into one encoded word of 81 characters.
    assert!(text.matches("=?").count() >= 4, "{text}");
    assert!(text.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "{text}");

    let expected_to: Vec<(Option<String>, String)> = to.iter().map(|m| (m.name.clone(), m.address.clone())).collect();
    let parsed = parse(&eml);
    assert_eq!(parsed.subject(), Some(subject));
    assert_eq!(names_and_addresses(parsed.from()), vec![(from.name.clone(), from.address.clone())]);
    assert_eq!(names_and_addresses(parsed.to()), expected_to);
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_700_000_000));
    assert_eq!(parsed.message_id(), Some("outbox-3.1700000000.abc@example.com"));
    assert_eq!(parsed.body_text(0).map(|b| b.replace("\r\n", "\n")).as_deref(), Some(body));

    let Some(py) = python_parse_bytes(dir.path(), &[&eml]) else { return };
    let m = &py[0];
    assert_eq!(m["subject"], subject);
    assert_eq!(python_mailboxes(&m["from"]), vec![(from.name.clone(), from.address.clone())]);
    assert_eq!(python_mailboxes(&m["to"]), expected_to);
    assert_eq!(m["date"], 1_700_000_000);
    assert_eq!(m["message_id"], "<outbox-3.1700000000.abc@example.com>");
    assert_eq!(m["template"], "Account Créé");
    assert_eq!(m["parts"][0]["type"], "text/plain");
    assert_eq!(m["parts"][0]["charset"], "utf-8");
    assert_eq!(m["parts"][0]["content"].as_str().map(|c| c.replace("\r\n", "\n")).as_deref(), Some(body));
}

/// A rendered message as an outbox row.
fn row(id: i64, template: &str, m: &Rendered, to: &UserRecord) -> Message {
    Message {
        id,
        template: template.into(),
        to: to.login.clone(),
        to_address: Some(format_mailbox(&recipient_of(to))),
        locale: Some(m.locale.clone()),
        message_type: Some(type_name(m.message_type).into()),
        ascii: m.encoding == Encoding::Ascii,
        subject: Some(m.subject.clone()),
        short: Some(m.short.clone()),
        body: Some(m.body.clone()),
        status: "rendered".into(),
        error: None,
        task_status: "Completed".into(),
        created_at: 1_700_000_000,
        bundle_hash: "0123456789abcdef0123".into(),
        template_index: 0,
    }
}

#[test]
fn html_templates_are_multipart_alternative_with_a_text_rendering() {
    let b = definitions();
    let dir = tempfile::tempdir().unwrap();
    let mut french = user("<script>alert(1)</script> Élodie", "fr-FR", "CC-1");
    french.attributes.insert("usr_email".into(), "elodie@example.com".into());
    let english = user("Hans", "en-US", "CC-1");
    let fr = render(&b, "Account Created", &french).unwrap();
    let en = render(&b, "Account Created", &english).unwrap();
    let from = default_sender();
    let emls: Vec<Vec<u8>> = [row(1, "Account Created", &fr, &french), row(2, "Account Created", &en, &english)]
        .iter()
        .map(|m| to_eml(m, &from).unwrap())
        .collect();
    for eml in &emls {
        let text = assert_wellformed(eml);
        assert!(text.contains("Content-Type: multipart/alternative;"), "{text}");
    }
    // Exporting again writes the same bytes (the boundary derives from the Message-ID).
    assert_eq!(to_eml(&row(1, "Account Created", &fr, &french), &from).unwrap(), emls[0]);

    let plain_fr = "Bonjour <script>alert(1)</script> Élodie,\n\nVotre compte Badge Access a été créé et est prêt à \
                    l'emploi. Vous avez maintenant 0 comptes.\n\nGestion des identités et des accès\n";
    let parsed = parse(&emls[0]);
    assert_eq!(parsed.body_text(0).map(|b| b.replace("\r\n", "\n")).as_deref(), Some(plain_fr));
    assert_eq!(parsed.body_html(0).map(|b| b.replace("\r\n", "\n")), Some(fr.body.clone()));
    assert!(fr.body.contains("&lt;script&gt;") && !fr.body.contains("<script>"), "{}", fr.body);
    assert_eq!(
        names_and_addresses(parsed.to()),
        vec![(Some("<script>alert(1)</script> Élodie Doe".into()), "elodie@example.com".into())]
    );

    let Some(py) = python_parse_bytes(dir.path(), &[&emls[0], &emls[1]]) else { return };
    let parts = |m: &serde_json::Value| -> Vec<(String, Option<String>)> {
        m["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["type"].as_str().unwrap().to_owned(), p["charset"].as_str().map(str::to_owned)))
            .collect()
    };
    let s = |t: &str, c: Option<&str>| (t.to_owned(), c.map(str::to_owned));
    assert_eq!(
        parts(&py[0]),
        vec![s("multipart/alternative", None), s("text/plain", Some("utf-8")), s("text/html", Some("utf-8"))]
    );
    assert_eq!(py[0]["parts"][1]["content"].as_str().map(|c| c.replace("\r\n", "\n")).as_deref(), Some(plain_fr));
    assert_eq!(py[0]["parts"][2]["content"].as_str().map(|c| c.replace("\r\n", "\n")), Some(fr.body.clone()));
    assert_eq!(py[0]["subject"], "Votre compte Badge Access est prêt");
    // An all-ASCII message says so in both parts.
    assert_eq!(
        parts(&py[1]),
        vec![s("multipart/alternative", None), s("text/plain", Some("us-ascii")), s("text/html", Some("us-ascii"))]
    );
    assert_eq!(python_mailboxes(&py[1]["from"]), vec![(Some("provflow".into()), "provflow@localhost".into())]);
    assert_eq!(python_mailboxes(&py[1]["to"]), vec![(Some("Hans Doe".into()), "JDOE@localhost".into())]);
}

#[test]
fn hostile_values_are_neutralised_or_refused_at_render() {
    let mut b = definitions();
    let t = b.templates.iter_mut().find(|t| t.name == "Request Rejected").unwrap();
    for l in &mut t.locales {
        l.subject = "Hello {{ First_Name }}".into();
        l.long = "Hello {{ First_Name }},\nbye\n".into();
    }
    let long = "x".repeat(5000);
    // (first name, subject, body) for the values that render.
    let fine = [
        ("Jo\r\nBcc: evil@example.com", "Hello Jo Bcc: evil@example.com", "Hello Jo\nBcc: evil@example.com,\nbye"),
        ("Jo\rDoe", "Hello Jo Doe", "Hello Jo\nDoe,\nbye"),
        ("<script>alert(1)</script>", "Hello <script>alert(1)</script>", "Hello <script>alert(1)</script>,\nbye"),
        ("Jo\tDoe", "Hello Jo Doe", "Hello Jo\tDoe,\nbye"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut emls = Vec::new();
    let mut expected = Vec::new();
    for (i, (first, subject, body)) in fine.iter().enumerate() {
        let u = user(first, "en-US", "CC-1");
        let m = render(&b, "Request Rejected", &u).unwrap();
        assert_eq!((m.subject.as_str(), m.body.as_str()), (*subject, *body), "{first:?}");
        emls.push(to_eml(&row(i as i64, "Request Rejected", &m, &u), &default_sender()).unwrap());
        expected.push((subject.to_string(), body.to_string()));
    }
    // A very long line goes out quoted-printable, folded, and comes back whole.
    let u = user(&long, "en-US", "CC-1");
    let m = render(&b, "Request Rejected", &u).unwrap();
    assert_eq!(m.subject.len(), 6 + 5000);
    let eml = to_eml(&row(9, "Request Rejected", &m, &u), &default_sender()).unwrap();
    assert!(String::from_utf8_lossy(&eml).contains("Content-Transfer-Encoding: quoted-printable"));
    emls.push(eml);
    expected.push((m.subject.clone(), m.body.clone()));

    for (eml, (subject, body)) in emls.iter().zip(&expected) {
        assert_wellformed(eml);
        let parsed = parse(eml);
        assert_eq!(parsed.subject(), Some(subject.as_str()));
        assert_eq!(parsed.body_text(0).map(|b| b.replace("\r\n", "\n")).as_deref(), Some(body.as_str()));
        let to = names_and_addresses(parsed.to());
        assert_eq!(to.len(), 1, "{to:?}");
        assert!(to[0].0.as_deref().is_none_or(|n| !n.contains(['\r', '\n', '\t'])), "{to:?}");
    }
    if let Some(py) = python_parse_bytes(dir.path(), &emls.iter().map(Vec::as_slice).collect::<Vec<_>>()) {
        for (m, (subject, body)) in py.iter().zip(&expected) {
            assert_eq!(m["subject"].as_str(), Some(subject.as_str()));
            assert_eq!(
                m["parts"][0]["content"].as_str().map(|c| c.replace("\r\n", "\n")).as_deref(),
                Some(body.as_str())
            );
        }
    }

    // Control characters and encoded words fail the render, saying where.
    let refused = [("Jo\u{0}", "subject", 9), ("Jo\u{1b}[2J", "subject", 9), ("Jo\u{7f}", "subject", 9)];
    for (first, part, position) in refused {
        let err = render(&b, "Request Rejected", &user(first, "en-US", "CC-1")).unwrap_err();
        assert!(
            matches!(&err, RenderError::Control { part: p, position: at, .. } if *p == part && *at == position),
            "{first:?}: {err:?}"
        );
        assert!(!err.to_string().contains(first), "{err}");
    }
    let err =
        render(&b, "Request Rejected", &user("=?utf-8?q?=0D=0ABcc:_x@evil.example?=", "en-US", "CC-1")).unwrap_err();
    assert!(matches!(err, RenderError::EncodedWord { part: "subject", .. }), "{err:?}");
}

#[test]
fn clean_text_rules() {
    assert_eq!(clean_text("a\r\nb\rc\nd\te", false), Ok("a\nb\nc\nd\te".into()));
    assert_eq!(clean_text("a\r\nb\rc\nd\te", true), Ok("a b c d e".into()));
    assert_eq!(clean_text("ab\u{0}", false), Err(TextProblem::Control { code: 0, position: 3 }));
    assert_eq!(clean_text("a\r\n\u{1b}", false), Err(TextProblem::Control { code: 0x1b, position: 3 }));
    assert_eq!(clean_text("\u{85}", true), Err(TextProblem::Control { code: 0x85, position: 1 }));
    assert_eq!(clean_text("x =?utf-8?B?QQ==?=", true), Err(TextProblem::EncodedWord));
    assert_eq!(clean_text("x =?utf-8?B?QQ==?=", false), Ok("x =?utf-8?B?QQ==?=".into()));
}

#[test]
fn recipients_round_trip_through_the_outbox() {
    let cases = [
        ("Élodie", "Lefèvre", None, Some("Élodie Lefèvre")),
        ("Jo \"JD\" \\", "Doe, Jr.", None, Some("Jo \"JD\" \\ Doe, Jr.")),
        ("Jo\r\nBcc: x@evil.example", "", None, Some("Jo Bcc: x@evil.example")),
        ("Jo", "", Some("  The   Jo  "), Some("The Jo")),
        ("=?utf-8?q?=0D=0A?=", "", None, None),
        ("", "", None, None),
        ("Gestion des identités et des accès", "Équipe IAM", None, Some("Gestion des identités et des accès Équi…")),
    ];
    for (first, last, display, name) in cases {
        let mut u = user(first, "en-US", "CC-1");
        u.attributes.insert("usr_last_name".into(), last.into());
        if let Some(d) = display {
            u.attributes.insert("usr_display_name".into(), d.into());
        }
        u.attributes.insert("usr_email".into(), "jo@example.com".into());
        let r = recipient_of(&u);
        assert_eq!(r, mailbox(name, "jo@example.com"), "{first:?}");
        assert_eq!(parse_mailbox(&format_mailbox(&r)), Ok(r.clone()));
    }
    // A usr_email that is no address (or would inject a header) is not used.
    let mut u = user("Jo", "en-US", "CC-1");
    for bad in ["jo@example.com\r\nBcc: x@evil.example", "not an address", "élodie@example.com"] {
        u.attributes.insert("usr_email".into(), bad.into());
        assert_eq!(address_of(&u), "JDOE@localhost", "{bad:?}");
    }
    u.login = "J DOE".into();
    assert_eq!(address_of(&u), "\"J DOE\"@localhost");
    assert!(parse_address(&address_of(&u)).is_ok());
}

#[test]
fn stored_rows_that_bypass_the_render_checks_are_not_written() {
    let b = definitions();
    let u = user("Jo", "en-US", "CC-1");
    let m = render(&b, "Request Rejected", &u).unwrap();
    let good = row(1, "Request Rejected", &m, &u);
    assert!(to_eml(&good, &default_sender()).is_ok());
    let nul = Message { body: Some("a\u{0}b".into()), ..good.clone() };
    assert_eq!(
        to_eml(&nul, &default_sender()),
        Err(EmlError::Text { part: "body", problem: TextProblem::Control { code: 0, position: 2 } })
    );
    let injected = Message { to_address: Some("jo@example.com\r\nBcc: x@evil.example".into()), ..good.clone() };
    assert_eq!(to_eml(&injected, &default_sender()), Err(EmlError::Recipient("JDOE".into())));
    let evil_from = mailbox(Some("IAM\r\nBcc: x@evil.example"), "iam@example.com");
    assert!(matches!(to_eml(&good, &evil_from), Err(EmlError::Text { part: "display name", .. })));
}

#[test]
fn a_failed_render_is_recorded_and_never_fails_the_task() {
    let b = definitions();
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("s.db"), None, Box::new(|| 1_700_000_000)).unwrap();
    let mut targets = Targets::new(BTreeMap::new(), dir.path().to_path_buf());
    let (ti, _) = b.target("dbum-sqlite").unwrap();
    let t = &b.targets[ti];
    for s in &b.query_sets[t.query_set].install {
        crate::engine::TargetProvider::open(&mut targets, &b, ti).unwrap().install(&s.sql).unwrap();
    }
    let clock = ManualClock::new(1_700_000_000);
    {
        let mut e = Engine::new(&mut store, &mut targets, &clock);
        let attrs: BTreeMap<String, String> = [("usr_first_name", "Jo"), ("usr_udf_cost_center", "CC-Zürich")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.create_user(&b, "JDOE", &attrs).unwrap();
        let form: BTreeMap<String, FormInput> =
            [("password".to_string(), FormInput::Secret(Secret::new("s3cret-pw")))].into();
        e.provision(&b, "DBUM Account", "JDOE", &form).unwrap();
        e.set_user_status("JDOE", "Disabled").unwrap();
    }
    assert_eq!(render_pending(&mut store, &mut targets, 1_700_000_001).unwrap(), 2);
    let a = store.find_account("DBUM Account", "JDOE").unwrap().unwrap();
    assert_eq!(a.status, ir::ObjectStatus::Disabled);
    let ms = messages(&store).unwrap();
    let created = ms.iter().find(|m| m.template == "Account Created").unwrap();
    assert_eq!((created.status.as_str(), created.locale.as_deref()), ("rendered", Some("en-US")));
    assert!(created.body.as_deref().unwrap().contains("It is your first account."), "{created:?}");
    let disabled = ms.iter().find(|m| m.template == "Account Disabled").unwrap();
    assert_eq!(disabled.status, "failed");
    assert!(disabled.error.as_deref().unwrap().contains("ASCII"), "{disabled:?}");
    for m in &ms {
        assert!(!format!("{m:?}").contains("s3cret-pw"));
    }
    // Nothing queued is rendered twice.
    assert_eq!(render_pending(&mut store, &mut targets, 1_700_000_002).unwrap(), 0);
}

#[test]
fn export_takes_the_sender_from_the_template_else_the_given_default() {
    let mut b = definitions();
    let iam = mailbox(Some("Gestion des identités — IAM"), "iam@example.com");
    b.templates.iter_mut().find(|t| t.name == "Account Created").unwrap().from = Some(iam.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("s.db"), None, Box::new(|| 1_700_000_000)).unwrap();
    let mut targets = Targets::new(BTreeMap::new(), dir.path().to_path_buf());
    let (ti, _) = b.target("dbum-sqlite").unwrap();
    for s in &b.query_sets[b.targets[ti].query_set].install {
        crate::engine::TargetProvider::open(&mut targets, &b, ti).unwrap().install(&s.sql).unwrap();
    }
    let clock = ManualClock::new(1_700_000_000);
    {
        let mut e = Engine::new(&mut store, &mut targets, &clock);
        let attrs: BTreeMap<String, String> = [
            ("usr_first_name", "Élodie"),
            ("usr_last_name", "Lefèvre"),
            ("usr_email", "elodie.lefevre@example.com"),
            ("usr_udf_cost_center", "CC-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        e.create_user(&b, "ELEFEVRE", &attrs).unwrap();
        let form: BTreeMap<String, FormInput> =
            [("password".to_string(), FormInput::Secret(Secret::new("s3cret-pw")))].into();
        e.provision(&b, "DBUM Account", "ELEFEVRE", &form).unwrap();
        e.set_user_status("ELEFEVRE", "Disabled").unwrap();
    }
    assert_eq!(render_pending(&mut store, &mut targets, 1_700_000_001).unwrap(), 2);

    let ops = mailbox(Some("Opérations"), "ops@example.com");
    let mut from_of = Vec::new();
    for (sub, default) in [("default", default_sender()), ("configured", ops.clone())] {
        let out = dir.path().join(sub);
        let (written, skipped) = export(&store, &out, &default).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(written.len(), 2);
        let bytes: Vec<Vec<u8>> = written.iter().map(|p| std::fs::read(p).unwrap()).collect();
        // The same store exports the same bytes again.
        let (again, _) = export(&store, &dir.path().join(format!("{sub}-again")), &default).unwrap();
        assert_eq!(again.iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>(), bytes);
        for eml in &bytes {
            assert_wellformed(eml);
            assert!(!String::from_utf8_lossy(eml).contains("s3cret-pw"));
            let parsed = parse(eml);
            let template = parsed.header_raw("X-Provflow-Template").unwrap_or_default().trim().to_owned();
            let to = names_and_addresses(parsed.to());
            assert_eq!(to, vec![(Some("Élodie Lefèvre".into()), "elodie.lefevre@example.com".into())]);
            from_of.push((sub, template, names_and_addresses(parsed.from())));
        }
        if let Some(py) = python_parse(&written) {
            for m in &py {
                let want = if m["template"] == "Account Created" { &iam } else { &default };
                assert_eq!(python_mailboxes(&m["from"]), vec![(want.name.clone(), want.address.clone())], "{m}");
                assert!(m["message_id"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("@{}>", want.address.split('@').nth(1).unwrap())));
            }
        }
    }
    let pair = |m: &Mailbox| vec![(m.name.clone(), m.address.clone())];
    assert_eq!(
        from_of,
        vec![
            ("default", "Account Created".into(), pair(&iam)),
            ("default", "Account Disabled".into(), pair(&default_sender())),
            ("configured", "Account Created".into(), pair(&iam)),
            ("configured", "Account Disabled".into(), pair(&ops)),
        ]
    );
}
