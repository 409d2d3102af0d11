use super::*;
use crate::clock::ManualClock;
use crate::engine::{Engine, FormInput, Targets};
use crate::store::{Account, SqliteStore, UserRecord};
use crate::value::Secret;
use std::collections::BTreeMap;

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
    render_message(bundle, index, &data, store.connection(), &mut targets)
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

#[test]
fn eml_files_parse_back() {
    let m = Message {
        id: 3,
        template: "Account Created".into(),
        to: "ELEFEVRE".into(),
        to_address: Some("ELEFEVRE@localhost".into()),
        locale: Some("fr-FR".into()),
        message_type: Some("html".into()),
        ascii: false,
        subject: Some(
            "Votre compte Badge Access est prêt — une très longue ligne d'objet pour vérifier le pliage\r\nBcc: evil@x"
                .into(),
        ),
        short: None,
        body: Some(format!("<p>Bonjour Élodie,</p>\n<p>{}</p>\n", "é".repeat(700))),
        status: "rendered".into(),
        error: None,
        task_status: "Completed".into(),
        created_at: 1_700_000_000,
    };
    let eml = to_eml(&m, "provflow.localhost");
    for line in eml.split("\r\n") {
        assert!(line.len() <= 998 && !line.contains('\n') && !line.contains('\r'), "{line:?}");
    }
    assert!(!eml.contains("\r\nBcc:"), "a line break in the subject must not make a header");
    assert!(eml.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
    assert!(eml.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "{eml}");
    let parsed = mail_parser::MessageParser::default().parse(eml.as_bytes()).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Votre compte Badge Access est prêt — une très longue ligne d'objet pour vérifier le pliage  Bcc: evil@x")
    );
    assert_eq!(parsed.from().and_then(|f| f.first()).and_then(|a| a.address()), Some("provflow@localhost"));
    assert_eq!(parsed.to().and_then(|f| f.first()).and_then(|a| a.address()), Some("ELEFEVRE@localhost"));
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_700_000_000));
    assert_eq!(parsed.message_id(), Some("outbox-3.1700000000@provflow.localhost"));
    assert_eq!(parsed.body_html(0).map(|b| b.replace("\r\n", "\n")), m.body.clone());
    let part = parsed.html_part(0).unwrap();
    assert_eq!(
        mail_parser::MimeHeaders::content_type(part).map(|c| (c.ctype(), c.subtype())),
        Some(("text", Some("html")))
    );

    let ascii = Message {
        subject: Some("Your account has been disabled".into()),
        body: Some("Hello,\nbye\n".into()),
        message_type: Some("text".into()),
        ascii: true,
        ..m
    };
    let eml = to_eml(&ascii, "h");
    assert!(
        eml.contains("Content-Type: text/plain; charset=us-ascii\r\n") && eml.ends_with("Hello,\r\nbye\r\n"),
        "{eml}"
    );
    let parsed = mail_parser::MessageParser::default().parse(eml.as_bytes()).unwrap();
    assert_eq!(parsed.subject(), Some("Your account has been disabled"));
    assert_eq!(parsed.body_text(0).as_deref(), Some("Hello,\r\nbye\r\n"));
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
    assert_eq!(render_pending(&store, &mut targets, 1_700_000_001).unwrap(), 2);
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
    assert_eq!(render_pending(&store, &mut targets, 1_700_000_002).unwrap(), 0);
}
