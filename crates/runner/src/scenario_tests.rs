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
