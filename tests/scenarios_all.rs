//! `provflow test definitions/ --junit FILE` with every database of the bundle: the SQLite,
//! PostgreSQL and MariaDB scenarios all run (none skipped) and pass, and the JUnit file says so.

use provflow_tests::{database_url, run_bounded, TempProject};
use std::time::Duration;

#[test]
fn every_scenario_passes_against_every_database() {
    let Some(pg) = database_url("PROVFLOW_TEST_PG_URL") else { return };
    let Some(mariadb) = database_url("PROVFLOW_TEST_MARIADB_URL") else { return };
    let p = TempProject::new();
    p.copy_from_repo("definitions");
    let junit = p.path().join("junit.xml");
    let junit_arg = junit.to_string_lossy().into_owned();
    let mut cmd = p.provflow();
    cmd.args(["test", "definitions/", "--junit", &junit_arg])
        .env_remove("DBUM_SQLITE_URL")
        .env("DBUM_PG_URL", &pg)
        .env("DBUM_MARIADB_URL", &mariadb)
        .env("DBUM_TEST_PASSWORD", format!("Scenario'pw-{}", std::process::id()))
        .env("DBUM_TEST_NEW_PASSWORD", format!("Scenario\"new\\pw-{}", std::process::id()))
        // A skipped database scenario fails instead: this test is about running them all.
        .env("PROVFLOW_REQUIRE_DATABASES", "1");
    let out = run_bounded(&mut cmd, Duration::from_secs(300));
    assert_eq!(out.code(), Some(0), "{out}");

    // One testcase per Scenario document of definitions/scenarios.
    let mut expected = Vec::new();
    let dir = p.path().join("definitions/scenarios");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let documents = text.lines().filter(|l| l.trim_end() == "kind: Scenario").count();
        expected.extend(std::iter::repeat_n(entry.file_name().to_string_lossy().into_owned(), documents));
    }
    assert!(expected.iter().any(|f| f == "dbum-postgres.yaml") && expected.iter().any(|f| f == "dbum-mariadb.yaml"));

    let xml = std::fs::read_to_string(&junit).unwrap_or_else(|e| panic!("no JUnit file ({e})\n{out}"));
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("the JUnit file is not XML: {e}\n{xml}"));
    let suites = doc.root_element();
    let n = expected.len().to_string();
    assert_eq!(suites.attribute("tests"), Some(n.as_str()), "{xml}");
    for counter in ["failures", "errors", "skipped"] {
        assert_eq!(suites.attribute(counter), Some("0"), "{counter}\n{xml}");
    }
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), expected.len(), "{xml}");
    assert!(cases.iter().all(|c| c.children().all(|n| !n.is_element())), "a failure or skip\n{xml}");
    for file in ["dbum-postgres.yaml", "dbum-mariadb.yaml"] {
        let want = expected.iter().filter(|f| *f == file).count();
        let path = format!("definitions/scenarios/{file}");
        let got = cases.iter().filter(|c| c.attribute("file") == Some(path.as_str())).count();
        assert_eq!(got, want, "{file}\n{xml}");
    }
    assert!(out.stdout.contains(&format!("{n} passed, 0 failed, 0 skipped")), "{out}");
}
