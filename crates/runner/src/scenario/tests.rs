use super::*;
use crate::notify::tests::definitions;

#[test]
fn failed_expectations_point_at_their_step_and_junit_reports_them() {
    let mut b = definitions();
    let name = "Badge Access - manual fulfilment rejected revokes the account";
    b.scenarios.retain(|s| s.name == name || s.name.starts_with("DBUM on PostgreSQL"));
    let s = b.scenarios.iter_mut().find(|s| s.name == name).unwrap();
    let step = s.steps.iter_mut().find(|st| matches!(st.action, StepAction::ExpectAccount { .. })).unwrap();
    let line = step.location.line;
    if let StepAction::ExpectAccount { status, .. } = &mut step.action {
        *status = ir::ObjectStatus::Enabled;
    }
    let config = Config { target_urls: BTreeMap::new(), require_databases: false };
    let results = run_all(&b, &config, |_| {});
    let r = results.iter().find(|r| r.name == name).unwrap();
    let Verdict::Failed(fs) = &r.verdict else { panic!("{r:?}") };
    assert_eq!(fs.len(), 1, "{fs:?}");
    assert_eq!(fs[0].location.line, line);
    assert!(fs[0].message.contains("to be Enabled, but it is Provisioning"), "{}", fs[0].message);
    // Without a database URL the PostgreSQL scenarios are skipped, not failed.
    let pg: Vec<&ScenarioResult> = results.iter().filter(|r| r.name.starts_with("DBUM on PostgreSQL")).collect();
    assert!(
        !pg.is_empty() && pg.iter().all(|r| matches!(&r.verdict, Verdict::Skipped(w) if w.contains("DBUM_PG_URL"))),
        "{pg:?}"
    );
    let xml = junit(&results);
    assert!(
        xml.contains(&format!("tests=\"{}\" failures=\"1\" errors=\"0\" skipped=\"{}\"", results.len(), pg.len())),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"definitions/") || xml.contains("<failure message=\""), "{xml}");
    assert!(xml.contains(&format!(":{line}: expected the `Badge Access` account of `KWHITE` to be Enabled")), "{xml}");
    assert!(xml.contains("<skipped message=\"the postgres target `dbum-pg` has no URL"), "{xml}");

    let strict = Config { require_databases: true, ..config };
    b.scenarios.retain(|s| s.name.starts_with("DBUM on PostgreSQL"));
    assert!(run_all(&b, &strict, |_| {}).iter().all(|r| matches!(r.verdict, Verdict::Failed(_))));
}

/// Names and failure messages carry whatever scenario files and databases say: every
/// character survives a strict XML 1.0 parser, exactly, except those XML 1.0 cannot carry at
/// all, which become U+FFFD.
#[test]
fn junit_is_well_formed_xml_for_any_text() {
    let hostile = "a\u{0}b\u{1b}[31m\u{7}c\u{fffe}\u{ffff}d <e> & \"f\" 'g' ]]> \t\r\n\u{202e}h \u{1f600}\u{85}";
    let kept = "a\u{fffd}b\u{fffd}[31m\u{fffd}c\u{fffd}\u{fffd}d <e> & \"f\" 'g' ]]> \t\r\n\u{202e}h \u{1f600}\u{85}";
    let at = |file: &str| ir::Location { file: file.into(), line: 3, column: 1 };
    let results = vec![
        ScenarioResult {
            name: hostile.into(),
            location: at(&format!("defs/{hostile}.yaml")),
            verdict: Verdict::Failed(vec![Failure { location: at("defs/s.yaml"), message: hostile.into() }]),
            duration: Duration::from_millis(5),
        },
        ScenarioResult {
            name: "skipped".into(),
            location: at("defs/s.yaml"),
            verdict: Verdict::Skipped(hostile.into()),
            duration: Duration::ZERO,
        },
    ];
    let xml = junit(&results);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not XML 1.0: {e}\n{xml}"));
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].attribute("name"), Some(kept));
    assert_eq!(cases[0].attribute("file"), Some(format!("defs/{kept}.yaml").as_str()));
    let failure = cases[0].children().find(|n| n.has_tag_name("failure")).unwrap();
    let one_line = format!("defs/s.yaml:3: {kept}");
    assert_eq!(failure.attribute("message"), Some(one_line.as_str()));
    assert_eq!(failure.text(), Some(one_line.as_str()));
    let skipped = cases[1].children().find(|n| n.has_tag_name("skipped")).unwrap();
    assert_eq!(skipped.attribute("message"), Some(kept));
    let suite = doc.root_element();
    assert_eq!(
        (suite.attribute("tests"), suite.attribute("failures"), suite.attribute("skipped")),
        (Some("2"), Some("1"), Some("1"))
    );
}
