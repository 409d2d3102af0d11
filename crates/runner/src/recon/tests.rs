use super::writer::push_json_str;
use super::*;
use crate::clock::ManualClock;
use crate::engine::{Engine, Targets};
use crate::notify::tests::definitions;
use crate::store::{SqliteStore, StateStore};
use provflow_ir::{ObjectStatus, ReconAction};
use rusqlite::params;
use std::collections::BTreeMap;

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
    reconcile(State::Sqlite(state), b, "Badge Access", Source::Csv(csv.to_path_buf()), &mut targets, &options).unwrap()
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
    let err =
        reconcile(State::Sqlite(&state), &b, "Badge Access", Source::Csv(csv), &mut targets, &options).unwrap_err();
    assert!(err.to_string().contains("no column `login` (is `logn` meant to be `login`?)"), "{err}");
}

fn set_actions(b: &mut Bundle, one_entity_match: ReconAction, one_process_match: ReconAction) {
    for p in b.processes.iter_mut().filter(|p| p.name == "Badge Access") {
        if let Some(r) = p.recon.as_mut() {
            r.one_entity_match = one_entity_match;
            r.one_process_match = one_process_match;
        }
    }
}

#[test]
fn bad_rows_across_chunks_and_threads_keep_their_line_numbers_and_a_second_run_changes_nothing() {
    let logins: Vec<String> = (0..300).map(|i| format!("U{i}")).collect();
    let refs: Vec<&str> = logins.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &refs);
    // More rows than a chunk (BATCH) so that two workers share them; every 7th row of the
    // file has a bad status, every 11th a missing column. Rows cycle over the 300 users, so
    // most accounts are linked once and then updated or unchanged by later rows.
    let rows = 2 * BATCH + 123;
    let mut text = String::from("login,badge_id,status\n");
    let mut expected_bad = Vec::new();
    for i in 0..rows {
        let line = i as u64 + 2;
        let login = if i % 2 == 0 { format!("u{}", i % 300) } else { format!("U{}", i % 300) };
        if i % 7 == 0 {
            text.push_str(&format!("{login},B-{},LOST\n", i % 300));
            expected_bad.push(line);
        } else if i % 11 == 0 {
            text.push_str(&format!("{login},B-{}\n", i % 300));
            expected_bad.push(line);
        } else {
            text.push_str(&format!("{login},B-{},ACTIVE\n", i % 300));
        }
    }
    let csv = dir.path().join("many.csv");
    std::fs::write(&csv, text).unwrap();
    let first = run(&b, &state, &csv, 2);
    let s = &first.summary;
    assert_eq!(s.rows, rows as u64);
    assert_eq!(s.failed as usize, expected_bad.len());
    assert_eq!(s.linked, 300, "{s:?}");
    assert_eq!(s.unmatched + s.updated + s.created, 0, "{s:?}");
    assert_eq!(s.linked + s.unchanged + s.failed, s.rows);
    assert_eq!(first.bad_rows.iter().map(|r| r.line).collect::<Vec<_>>(), expected_bad);
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let (_, events) = events(&store, Some(s.run)).unwrap();
    assert_eq!(events.len(), rows);
    assert_eq!(events.iter().map(|e| e.line).collect::<Vec<_>>(), (2..rows as i64 + 2).collect::<Vec<_>>());
    let bad_events: Vec<i64> = events.iter().filter(|e| e.outcome == "bad row").map(|e| e.line).collect();
    assert_eq!(bad_events, expected_bad.iter().map(|&l| l as i64).collect::<Vec<_>>());
    // A bad row is never half-applied: U0's first row (line 2) is bad, its account came from a
    // later good row with the same values.
    let a = store.find_account("Badge Access", "U0").unwrap().unwrap();
    assert_eq!((a.status, a.form.get("badge_id").map(|v| v.display())), (ObjectStatus::Enabled, Some("B-0".into())));

    let again = run(&b, &state, &csv, 2);
    let s = &again.summary;
    assert_eq!((s.linked, s.updated, s.created, s.unchanged), (0, 0, 0, rows as u64 - s.failed), "{s:?}");
    assert_eq!(again.bad_rows, first.bad_rows);
}

#[test]
fn a_key_repeated_in_one_file_is_decided_against_what_the_run_wrote_before() {
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE"]);
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, "login,badge_id,status\nJDOE,B-1,ACTIVE\njdoe,B-2,ACTIVE\nJdoe,B-2,SUSPENDED\n").unwrap();
    let out = run(&b, &state, &csv, 1);
    let s = &out.summary;
    assert_eq!((s.linked, s.updated, s.unchanged), (1, 2, 0), "{out:?}");
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let (_, events) = events(&store, Some(s.run)).unwrap();
    assert_eq!(events[1].changes, serde_json::json!({ "form.badge_id": { "from": "B-1", "to": "B-2" } }));
    assert_eq!(events[2].changes, serde_json::json!({ "OIM_OBJECT_STATUS": { "from": "Enabled", "to": "Disabled" } }));
    let a = store.find_account("Badge Access", "JDOE").unwrap().unwrap();
    assert_eq!((a.status, a.form.get("badge_id").map(|v| v.display())), (ObjectStatus::Disabled, Some("B-2".into())));
    // Form fields recon does not map are kept: the account was linked with the default level.
    assert_eq!(a.form.get("access_level").map(|v| v.display()), Some("STANDARD".into()));
}

#[test]
fn actions_none_and_update_record_events_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, state) = setup(dir.path(), &["JDOE", "ASMITH"]);
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, "login,badge_id,status\nJDOE,B-1,ACTIVE\n").unwrap();
    run(&b, &state, &csv, 1);

    // `update` on an entity match has no account to update; `none` on a process match only
    // records the event.
    set_actions(&mut b, ReconAction::Update, ReconAction::None);
    std::fs::write(&csv, "login,badge_id,status\njdoe,B-9,SUSPENDED\nASMITH,B-2,ACTIVE\n").unwrap();
    let out = run(&b, &state, &csv, 2);
    let s = &out.summary;
    assert_eq!((s.linked, s.updated, s.unchanged, s.unmatched), (0, 0, 0, 2), "{out:?}");
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let (_, events) = events(&store, Some(s.run)).unwrap();
    let got: Vec<(&str, &str, Option<&str>)> =
        events.iter().map(|e| (e.outcome.as_str(), e.action.as_str(), e.key.as_deref())).collect();
    assert_eq!(
        got,
        vec![
            ("one process match", "none", Some("jdoe")),
            ("one entity match", "none: no account to update", Some("ASMITH"))
        ]
    );
    assert!(events[0].account.is_some());
    assert!(store.find_account("Badge Access", "ASMITH").unwrap().is_none());
    let a = store.find_account("Badge Access", "JDOE").unwrap().unwrap();
    assert_eq!((a.status, a.form.get("badge_id").map(|v| v.display())), (ObjectStatus::Enabled, Some("B-1".into())));

    // `update` on a process match: a case-insensitive key updates exactly what differs.
    set_actions(&mut b, ReconAction::Link, ReconAction::Update);
    std::fs::write(&csv, "login,badge_id,status\njDoE,B-9,ACTIVE\n").unwrap();
    let out = run(&b, &state, &csv, 1);
    assert_eq!(out.summary.updated, 1, "{out:?}");
    let (_, events) = crate::recon::events(&store, Some(out.summary.run)).unwrap();
    assert_eq!(events[0].changes, serde_json::json!({ "form.badge_id": { "from": "B-1", "to": "B-9" } }));
}

#[test]
fn invalid_utf8_is_a_bad_row_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE", "ASMITH"]);
    let csv = dir.path().join("b.csv");
    let mut bytes = b"login,badge_id,status\nJDOE,B-\xff1,ACTIVE\nASMITH,B-2,ACTIVE\n".to_vec();
    bytes.extend_from_slice(b"");
    std::fs::write(&csv, bytes).unwrap();
    let out = run(&b, &state, &csv, 2);
    assert_eq!((out.summary.linked, out.summary.failed), (1, 1), "{out:?}");
    assert_eq!(out.bad_rows.len(), 1);
    assert_eq!(out.bad_rows[0].line, 2);
    assert!(out.bad_rows[0].error.contains("`badge_id`: not valid UTF-8"), "{:?}", out.bad_rows);
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    assert!(store.find_account("Badge Access", "JDOE").unwrap().is_none());
}

#[test]
fn event_json_strings_are_escaped_like_serde_json() {
    for text in ["", "B-1", "a\"b", "back\\slash", "line\nbreak\r\t", "\u{1}\u{1f}x", "é€😀\"", "\u{7f}"] {
        let mut out = String::from("x");
        push_json_str(&mut out, text);
        assert_eq!(out, format!("x{}", serde_json::to_string(text).unwrap()), "{text:?}");
    }
}

/// Inserts accounts of `Badge Access` with the given ids, owners, statuses and badge ids.
fn insert_accounts(state: &Path, b: &Bundle, accounts: &[(i64, &str, &str, &str)]) {
    let conn = rusqlite::Connection::open(state).unwrap();
    for (id, login, status, badge) in accounts {
        conn.execute(
            "INSERT INTO accounts(id, process, user_login, bundle_hash, status, form, created_at, updated_at) \
             VALUES (?1, 'Badge Access', ?2, ?3, ?4, json_object('badge_id', ?5, 'access_level', 'STANDARD'), 0, 0)",
            params![id, login, b.hash, status, badge],
        )
        .unwrap();
    }
}

#[test]
fn accounts_read_in_parallel_id_ranges_match_as_if_read_in_one_query() {
    // Ids 1..=4 are read as two ranges, [1, 2] and [3, ..]: JDOE's newest account (4) is in
    // the second range and wins over its older one (1); ASMITH's stored status is no status
    // provflow knows and is reported as it is.
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE", "ASMITH", "KWHITE"]);
    insert_accounts(
        &state,
        &b,
        &[(1, "JDOE", "Provisioned", "OLD-1"), (2, "ASMITH", "Legacy", "B-2"), (3, "KWHITE", "Enabled", "B-3")],
    );
    insert_accounts(&state, &b, &[(4, "JDOE", "Provisioned", "OLD-4")]);
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, "login,badge_id,status\njdoe,B-9,ACTIVE\nASMITH,B-2,ACTIVE\nKWHITE,B-3,ACTIVE\n").unwrap();
    let out = run(&b, &state, &csv, 1);
    let s = &out.summary;
    assert_eq!((s.updated, s.unchanged, s.linked, s.unmatched), (2, 1, 0, 0), "{out:?}");
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let (_, events) = events(&store, Some(s.run)).unwrap();
    let got: Vec<(Option<i64>, &str)> = events.iter().map(|e| (e.account, e.action.as_str())).collect();
    assert_eq!(got, vec![(Some(4), "update"), (Some(2), "update"), (Some(3), "no change")]);
    assert_eq!(
        events[0].changes,
        serde_json::json!({ "OIM_OBJECT_STATUS": { "from": "Provisioned", "to": "Enabled" },
                            "form.badge_id": { "from": "OLD-4", "to": "B-9" } })
    );
    assert_eq!(events[1].changes, serde_json::json!({ "OIM_OBJECT_STATUS": { "from": "Legacy", "to": "Enabled" } }));
    let conn = rusqlite::Connection::open(&state).unwrap();
    let old: (String, String) = conn
        .query_row("SELECT status, json_extract(form, '$.badge_id') FROM accounts WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(old, ("Provisioned".to_string(), "OLD-1".to_string()));
}

#[test]
fn one_key_on_accounts_of_two_users_in_different_id_ranges_is_a_multiple_match() {
    // `JDOE` and `jdoe` are two users whose logins fold to one case-insensitive key; their
    // accounts fall in different id ranges, read by different threads.
    let dir = tempfile::tempdir().unwrap();
    let (b, state) = setup(dir.path(), &["JDOE", "jdoe", "ASMITH"]);
    insert_accounts(
        &state,
        &b,
        &[
            (1, "JDOE", "Provisioned", "OLD-1"),
            (2, "ASMITH", "Provisioned", "OLD-2"),
            (4, "jdoe", "Provisioned", "OLD-4"),
        ],
    );
    let csv = dir.path().join("b.csv");
    std::fs::write(&csv, "login,badge_id,status\nJdoe,B-9,ACTIVE\nasmith,B-2,ACTIVE\n").unwrap();
    let out = run(&b, &state, &csv, 2);
    let s = &out.summary;
    assert_eq!((s.updated, s.unmatched), (1, 1), "{out:?}");
    let store = SqliteStore::open(&state, None, Box::new(|| 1)).unwrap();
    let (_, events) = events(&store, Some(s.run)).unwrap();
    let got: Vec<(&str, &str, Option<i64>)> =
        events.iter().map(|e| (e.outcome.as_str(), e.action.as_str(), e.account)).collect();
    assert_eq!(got, vec![("multiple matches", "none", None), ("one process match", "update", Some(2))]);
    let conn = rusqlite::Connection::open(&state).unwrap();
    let untouched: i64 = conn
        .query_row("SELECT count(*) FROM accounts WHERE status = 'Provisioned' AND id IN (1, 4)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(untouched, 2);
}
