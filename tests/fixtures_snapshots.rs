//! Diagnostic snapshots, one per fixture: `tests/fixtures/<CODE>_<case>.yaml`.
//!
//! To add a case: drop a YAML file named `<CODE>_<what_it_shows>.yaml` (e.g.
//! `PF201_unknown_task_in_depends_on.yaml`; lower-case words joined by `_`) into
//! `tests/fixtures/`, then run
//!
//! ```text
//! cargo insta test -p provflow-tests --test fixtures_snapshots --review   # or --accept
//! ```
//!
//! and read the two new snapshots in `tests/snapshots/` before accepting them: the JSON lines
//! (`<name>-json.snap`) and the human rendering (`<name>-human.snap`). A fixture must produce
//! its own `<CODE>` among its diagnostics, or the test fails: a fixture cannot silently stop
//! testing its code when the checks change. Other codes may appear too (the snapshot shows
//! them), but keep a fixture minimal and complete apart from the one mistake it shows, so that
//! new checks elsewhere do not change it.
//!
//! The binary runs with the working directory `tests/` and the relative path
//! `fixtures/<file>`, with `NO_COLOR=1` and a fixed width, so paths and layout are the same on
//! every machine. The exit code is part of each snapshot.
//!
//! `PF008` (file larger than 32 MiB) has no fixture: it is covered by
//! `hostile_input::forty_megabyte_file_is_refused_before_parsing`.

use provflow_tests::{provflow, run_bounded, tests_dir, RunOutput};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// A fixture file and the code its name promises.
struct Fixture {
    file: String,
    stem: String,
    code: String,
}

/// `PF` + three digits, `_`, then lower-case words, digits and `_`.
fn parse_name(file: &str) -> Option<Fixture> {
    let stem = file.strip_suffix(".yaml").or_else(|| file.strip_suffix(".yml"))?;
    let (code, case) = stem.split_once('_')?;
    let code_ok = code.len() == 5 && code.starts_with("PF") && code[2..].bytes().all(|b| b.is_ascii_digit());
    let case_ok = !case.is_empty() && case.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (code_ok && case_ok).then(|| Fixture { file: file.to_owned(), stem: stem.to_owned(), code: code.to_owned() })
}

fn fixtures() -> Vec<Fixture> {
    let dir = tests_dir().join("fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let misnamed: Vec<&String> = names.iter().filter(|n| parse_name(n).is_none()).collect();
    assert!(
        misnamed.is_empty(),
        "fixtures must be named `PF123_lower_case_words.yaml`; these would be ignored: {misnamed:?}"
    );
    names.iter().filter_map(|n| parse_name(n)).collect()
}

fn compile(fixture: &Fixture, format: &str) -> RunOutput {
    let path = format!("fixtures/{}", fixture.file);
    run_bounded(provflow().current_dir(tests_dir()).args(["compile", "--format", format, &path]), DEADLINE)
}

fn snapshot_dir() -> PathBuf {
    tests_dir().join("snapshots")
}

fn check(fixture: &Fixture) {
    let json = compile(fixture, "json");
    let human = compile(fixture, "human");
    let diagnostics = json.json_diagnostics();

    let codes: Vec<&str> = diagnostics.iter().filter_map(|d| d["code"].as_str()).collect();
    assert!(
        codes.contains(&fixture.code.as_str()),
        "{}: expected {} among {codes:?}\n{json}",
        fixture.file,
        fixture.code
    );

    // Exit code 1 exactly when there is an error; warnings alone pass.
    let has_error = diagnostics.iter().any(|d| d["severity"] == "error");
    let expected = if has_error { 1 } else { 0 };
    assert_eq!(json.code(), Some(expected), "{}: json run\n{json}", fixture.file);
    assert_eq!(human.code(), Some(expected), "{}: human run\n{human}", fixture.file);
    // The human rendering names every diagnostic the JSON has.
    for code in &codes {
        assert!(human.stderr.contains(code), "{}: human output lacks {code}\n{human}", fixture.file);
    }

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir());
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(tests_dir().join("fixtures").join(&fixture.file));
    settings.set_description(format!("provflow compile fixtures/{}", fixture.file));
    // Both snapshots are recorded even when the first differs, so one review sees both.
    let json_snapshot = settings.bind(|| {
        catch_unwind(AssertUnwindSafe(|| {
            insta::assert_snapshot!(
                format!("{}-json", fixture.stem),
                format!("exit code: {}\n{}", expected, json.stdout)
            );
        }))
    });
    settings.bind(|| {
        insta::assert_snapshot!(
            format!("{}-human", fixture.stem),
            format!("exit code: {}\n{}", expected, human.stderr)
        );
    });
    if let Err(e) = json_snapshot {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn fixture_diagnostics() {
    let fixtures = fixtures();
    assert!(!fixtures.is_empty(), "no fixtures in tests/fixtures");
    // Run every fixture, then report all failures together.
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|f| {
            catch_unwind(AssertUnwindSafe(|| check(f))).err().map(|e| {
                let message = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!("{}: {}", f.file, message.lines().next().unwrap_or(""))
            })
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), fixtures.len(), failures.join("\n"));
}

#[test]
fn fixture_names_are_parsed() {
    let f = parse_name("PF102_unknown_field.yaml").map(|f| (f.code, f.stem));
    assert_eq!(f, Some(("PF102".into(), "PF102_unknown_field".into())));
    for bad in ["PF102.yaml", "pf102_x.yaml", "PF10_x.yaml", "PF102_Unknown.yaml", "PF102_x.json", "PF102_.yaml"] {
        assert!(parse_name(bad).is_none(), "{bad} must be refused");
    }
}

/// Every code that exists gets a fixture (PF008 excepted, see the module docs).
#[test]
fn every_loader_and_structure_code_has_a_fixture() {
    let have: Vec<String> = fixtures().into_iter().map(|f| f.code).collect();
    let wanted = [
        "PF001", "PF002", "PF003", "PF004", "PF005", "PF006", "PF007", "PF100", "PF101", "PF102", "PF103", "PF104",
        "PF105", "PF106", "PF200", "PF600",
    ];
    let missing: Vec<&str> = wanted.iter().copied().filter(|c| !have.iter().any(|h| h == c)).collect();
    assert!(missing.is_empty(), "no fixture for {missing:?}");
}
