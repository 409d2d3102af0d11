use super::*;
use crate::clock::ManualClock;
use crate::engine::{Engine, Targets};
use crate::notify::tests::definitions;
use crate::store::{SqliteStore, StateStore};

fn setup(dir: &Path, users: &[&str]) -> (Bundle, PathBuf) {
    let b = definitions();
    let path = dir.join("s.db");
    let mut store = SqliteStore::open(&path, None, Box::new(|| 1)).unwrap();
    let mut targets = Targets::new(BTreeMap::new(), dir.to_path_buf());
    let clock = ManualClock::new(1_700_000_000);
    let mut e = Engine::new(&mut store, &mut targets, &clock);
    for u in users {
        let attrs: BTreeMap<String, String> = [("usr_first_name", "A"), ("usr_udf_cost_center", "CC-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.create_user(&b, u, &attrs).unwrap();
    }
    store.save_bundle(&b).unwrap();
    (b, path)
}

fn run(b: &Bundle, state: &Path, csv: &Path, threads: usize) -> Outcome {
    let mut targets = Targets::new(BTreeMap::new(), state.parent().unwrap().to_path_buf());
    let options = Options { threads, now: 5, progress: &|_| {}, total: &|_| {} };
    reconcile(state, b, "Badge Access", Source::Csv(csv.to_path_buf()), &mut targets, &options).unwrap()
}

#[test]
fn rows_link_update_and_bad_rows_are_skipped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE", "ASMITH", "KWHITE"]);
    let csv = dir.path().join("b.csv");
    // Line 3: unknown status; line 4: a column short; line 5: no such user; line 6: a quoted
    // comma (RFC 4180) and a lower-case login matching case-insensitively; line 7: a quoted
    // newline makes the record span lines 7-8.
    std::fs::write(
        &csv,
        "login,badge_id,status\nJDOE,B-1,ACTIVE\nASMITH,B-2,LOST\nKWHITE,B-3\nNOBODY,B-4,ACTIVE\nasmith,\"B,5\",SUSPENDED\n\"KW\nHITE\",B-6,ACTIVE\n",
    )
    .unwrap();
    let out = run(&b, &state, &csv, 1);
    let s = &out.summary;
    assert_eq!((s.rows, s.linked, s.updated, s.unmatched, s.failed), (6, 2, 0, 2, 2), "{out:?}");
    let lines: Vec<(u64, bool)> = out
        .bad_rows
        .iter()
        .map(|r| {
            (
                r.line,
                r.error.contains("unknown status value `LOST`") || r.error.contains("2 columns where the header has 3"),
            )
        })
        .collect();
    assert_eq!(lines, vec![(3, true), (4, true)]);
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let a = store.find_account("Badge Access", "ASMITH").unwrap().unwrap();
    assert_eq!((a.status, a.form.get("badge_id").map(|v| v.display())), (ObjectStatus::Disabled, Some("B,5".into())));
    assert_eq!(store.find_account("Badge Access", "JDOE").unwrap().unwrap().status, ObjectStatus::Enabled);
    let (run_id, events) = events(&store, None).unwrap();
    assert_eq!(run_id, Some(s.run));
    let summary: Vec<(i64, &str, &str)> =
        events.iter().map(|e| (e.line, e.outcome.as_str(), e.action.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (2, "one entity match", "link"),
            (3, "bad row", "skipped"),
            (4, "bad row", "skipped"),
            (5, "no match", "none"),
            (6, "one entity match", "link"),
            (7, "no match", "none"),
        ]
    );

    // Same file again, on two threads: nothing changes, every event says so.
    let again = run(&b, &state, &csv, 2);
    let s = &again.summary;
    assert_eq!((s.linked, s.updated, s.unchanged, s.failed), (0, 0, 2, 2), "{again:?}");
    let (_, events) = crate::recon::events(&store, Some(s.run)).unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "no change").count(), 2);

    // A changed status is an update of exactly what differs.
    std::fs::write(&csv, "login,badge_id,status\nJDOE,B-1,SUSPENDED\n").unwrap();
    let third = run(&b, &state, &csv, 2);
    assert_eq!(third.summary.updated, 1);
    let (_, events) = crate::recon::events(&store, Some(third.summary.run)).unwrap();
    assert_eq!(events[0].changes, serde_json::json!({ "OIM_OBJECT_STATUS": { "from": "Enabled", "to": "Disabled" } }));
}

#[test]
fn a_header_without_a_recon_field_is_refused_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE"]);
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, "logn,badge_id,status\nJDOE,B-1,ACTIVE\n").unwrap();
    let mut targets = Targets::new(BTreeMap::new(), dir.path().to_path_buf());
    let options = Options { threads: 1, now: 5, progress: &|_| {}, total: &|_| {} };
    let err = reconcile(&state, &b, "Badge Access", Source::Csv(csv), &mut targets, &options).unwrap_err();
    assert!(err.to_string().contains("no column `login` (is `logn` meant to be `login`?)"), "{err}");
}
