//! `state copy` at the library level: the checksum's normalisation, the table list against
//! both schemas, a SQLite → SQLite copy read back through the store, refusals, a mismatch
//! that rolls back, and (with `PROVFLOW_TEST_PG_URL`) SQLite → PostgreSQL → SQLite.

use provflow_ir::{ObjectStatus, TaskStatus};
use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::secret::SecretKey;
use crate::store::conformance::{bundle, ticking, Postgres};
use crate::store::{FormData, NewAccount, NewTask, PgStore, SqliteStore, StateStore, Step, Transition, UserRecord};
use crate::value::{Secret, Value};

fn digest(rows: &[Vec<Cell>]) -> (u64, String) {
    let columns = vec![Column { name: "a".into(), kind: Kind::Any, is_rowid: false }];
    let mut sum = Checksum::new("t", &columns);
    for r in rows {
        sum.add(r);
    }
    sum.finish()
}

#[test]
fn a_postgres_boolean_hashes_as_the_sqlite_integer() {
    assert_eq!(Cell::from_bool(true), Cell::Int(1));
    assert_eq!(Cell::from_bool(false), Cell::Int(0));
    let sqlite = digest(&[vec![Cell::from_sqlite(rusqlite::types::ValueRef::Integer(1))]]);
    let postgres = digest(&[vec![Cell::from_bool(true)]]);
    assert_eq!(sqlite, postgres);
    let text = digest(&[vec![Cell::from_sqlite(rusqlite::types::ValueRef::Text(b"sealed"))]]);
    assert_eq!(text, digest(&[vec![Cell::Text("sealed".into())]]));
}

#[test]
fn the_checksum_tells_apart_what_differs() {
    let one = |c: Cell| digest(&[vec![c]]).1;
    // Kinds, not renderings: 1 and "1", NULL and "", "" and no row.
    assert_ne!(one(Cell::Int(1)), one(Cell::Text("1".into())));
    assert_ne!(one(Cell::Null), one(Cell::Text(String::new())));
    assert_ne!(digest(&[vec![Cell::Text(String::new())]]), digest(&[]));
    // Row and value boundaries.
    let split = digest(&[vec![Cell::Text("ab".into()), Cell::Text(String::new())]]);
    let other = digest(&[vec![Cell::Text("a".into()), Cell::Text("b".into())]]);
    assert_ne!(split.1, other.1);
    let two_rows = digest(&[vec![Cell::Int(1)], vec![Cell::Int(2)]]);
    let one_row = digest(&[vec![Cell::Int(1), Cell::Int(2)]]);
    assert_ne!(two_rows.1, one_row.1);
    assert_eq!(two_rows.0, 2);
    // Order.
    assert_ne!(digest(&[vec![Cell::Int(2)], vec![Cell::Int(1)]]).1, two_rows.1);
    // The same rows, the same checksum.
    assert_eq!(digest(&[vec![Cell::Int(1)], vec![Cell::Int(2)]]), two_rows);
}

#[test]
fn values_that_do_not_fit_a_postgres_column_are_named_not_shown() {
    let col = |kind| Column { name: "c".into(), kind, is_rowid: false };
    assert!(pg_param(&Cell::Int(1), &col(Kind::Bool)).is_ok());
    let why = pg_param(&Cell::Int(2), &col(Kind::Bool)).err().unwrap();
    assert!(why.contains("integer 2") && why.contains("boolean"), "{why}");
    let why = pg_param(&Cell::Text("hunter2".into()), &col(Kind::Int)).err().unwrap();
    assert!(why.contains("holds text") && !why.contains("hunter2"), "{why}");
}

fn key() -> SecretKey {
    SecretKey::from_bytes([7; 32])
}

fn task(i: usize, status: TaskStatus, held: bool) -> NewTask {
    NewTask {
        task_index: i,
        task_name: format!("T{i}"),
        status,
        attempt: 1,
        due_at: Some(1_800_000_100),
        held,
        note: held.then(|| "waits for a person".to_string()),
        child: BTreeMap::new(),
        promoted: i == 1,
        calling: false,
        manual: false,
    }
}

/// A store with every table filled: bundles, users (one locked), accounts with sealed secrets,
/// tasks (one held), audit rows, the outbox, a reconciliation run and its events.
fn fill(store: &mut dyn StateStore) {
    for h in ["h1", "h2"] {
        let bundle = bundle(h);
        store.save_bundle(&bundle).unwrap();
    }
    for (login, locked) in [("b-user", true), ("A-user", false), ("ÉLISE", false)] {
        let attributes = [("usr_first_name".to_string(), format!("{login} ✓"))].into();
        store.insert_user(&UserRecord { login: login.into(), attributes, status: "Active".into(), locked }).unwrap();
    }
    let form: FormData = [
        ("login".to_string(), Value::Text("A-user".into())),
        ("password".to_string(), Value::Secret(Secret::new("c0py-Secret-1"))),
        ("empty".to_string(), Value::Null),
    ]
    .into();
    let tasks = [task(0, TaskStatus::Pending, true), task(1, TaskStatus::Pending, false)];
    let accounts = [
        NewAccount {
            process: "P",
            user: "A-user",
            bundle_hash: "h1",
            status: ObjectStatus::Provisioning,
            form: &form,
            tasks: &tasks,
        },
        NewAccount {
            process: "P",
            user: "b-user",
            bundle_hash: "h2",
            status: ObjectStatus::Provisioning,
            form: &form,
            tasks: &tasks,
        },
    ];
    let created = store.create_accounts("tester", &accounts).unwrap();
    let (account, ids) = created.first().cloned().unwrap();
    let step = Step {
        account,
        actor: "tester".into(),
        transitions: vec![Transition {
            task: ids[1],
            to: TaskStatus::Completed,
            response: Some("SUCCESS".into()),
            note: None,
            held: false,
            outputs: [("id".to_string(), "42".to_string())].into(),
        }],
        account_status: Some(ObjectStatus::Provisioned),
        notify: vec![crate::store::NotifyRequest {
            task: Some(ids[1]),
            template_index: 0,
            template: "Welcome".into(),
            task_status: TaskStatus::Completed,
            recipient: "A-user".into(),
        }],
        ..Step::default()
    };
    store.commit(&step).unwrap();
    // A worker holding a claim: `workers` is copied before the tasks that name it.
    let worker = crate::store::WorkerRecord {
        id: "host-1:77:1800000000".into(),
        host: "host-1".into(),
        pid: 77,
        started_at: 1_800_000_200,
        heartbeat_at: 1_800_000_200,
        lease: std::time::Duration::from_secs(30),
        concurrency: 4,
        stopped_at: None,
    };
    store.worker_register(&worker).unwrap();
    let params =
        crate::store::TaskClaimParams { worker: &worker.id, now: 1_800_000_200, lease: worker.lease, limit: 10 };
    let claims = store.task_claim(&params).unwrap();
    assert_eq!(claims.iter().map(|c| c.task).collect::<Vec<_>>(), [created[1].1[1]]);
}

/// Adds reconciliation rows with raw SQL (the store trait has no writer for them).
fn add_recon_rows(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "INSERT INTO recon_runs(process, source, started_at, finished_at, summary) VALUES ('P', 'csv', 5, 6, '{\"rows\":2}');
         INSERT INTO recon_events(run_id, line, key, outcome, action, account_id, changes, error, at)
           VALUES (1, 2, 'A-user', 'matched', 'update', 1, '{\"x\":\"1\"}', NULL, 6),
                  (1, 3, NULL, 'bad', 'none', NULL, '{}', 'no key', 6);
         UPDATE outbox SET status = 'rendered', subject = 'Hello', body = 'Body', rendered_at = 7;",
    )
    .unwrap();
}

fn sqlite_source(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("source.db");
    let mut store = SqliteStore::open(&path, Some(key()), ticking()).unwrap();
    fill(&mut store);
    add_recon_rows(store.connection());
    path
}

/// Every row of every store table of a SQLite file, as text, in key order.
fn sqlite_rows(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for t in TABLES {
        let mut stmt = c.prepare(&format!("SELECT rowid, * FROM {} ORDER BY {}", t.name, t.key)).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cells: Vec<String> = (0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect();
            out.push(format!("{}: {}", t.name, cells.join(" | ")));
        }
    }
    out
}

fn url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

#[test]
fn the_table_list_covers_the_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), None, ticking()).unwrap();
    let mut stmt = store
        .connection()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    let mut tables: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut listed: Vec<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
    tables.sort();
    listed.sort();
    assert_eq!(tables, listed, "a table of the SQLite store is missing from copy::TABLES (or gone)");
}

#[test]
fn sqlite_to_sqlite_copies_every_row_and_the_copy_opens_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_source(dir.path());
    let dest = dir.path().join("new/dir/copy.db");
    let report = copy(&url(&source), &url(&dest), 1_900_000_000).unwrap();
    assert!(report.verified(), "{report:?}");
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    let rows = |name: &str| report.tables.iter().find(|t| t.table == name).map(|t| t.source_rows);
    assert_eq!(rows("users"), Some(3));
    assert_eq!(rows("accounts"), Some(2));
    assert_eq!(rows("task_instances"), Some(4));
    assert_eq!(rows("recon_events"), Some(2));
    assert!(rows("task_audit").unwrap_or(0) >= 6);
    assert_eq!(rows("outbox"), Some(1));
    // Byte for byte the same rows, rowids included (the newest bundle, usr_key).
    assert_eq!(sqlite_rows(&source), sqlite_rows(&dest));

    // The store reads the copy as it reads the source: the secret opens with the same key.
    let a = SqliteStore::open(&source, Some(key()), ticking()).unwrap();
    let b = SqliteStore::open(&dest, Some(key()), ticking()).unwrap();
    assert_eq!(a.accounts().unwrap(), b.accounts().unwrap());
    let secret = b.accounts().unwrap().first().and_then(|acc| acc.form.get("password").cloned());
    assert!(matches!(secret, Some(Value::Secret(_))), "{secret:?}");
    assert_eq!(a.tasks(None).unwrap(), b.tasks(None).unwrap());
    assert_eq!(a.users().unwrap(), b.users().unwrap());
    assert_eq!(a.outbox().unwrap(), b.outbox().unwrap());
    assert_eq!(a.latest_bundle().unwrap().map(|x| x.hash), b.latest_bundle().unwrap().map(|x| x.hash));
    assert_eq!(a.audit(1).unwrap(), b.audit(1).unwrap());
    // New rows do not collide with copied ids.
    drop(b);
    let mut b = SqliteStore::open(&dest, Some(key()), ticking()).unwrap();
    b.insert_user(&UserRecord {
        login: "new".into(),
        attributes: BTreeMap::new(),
        status: "Active".into(),
        locked: false,
    })
    .unwrap();
}

#[test]
fn a_non_empty_destination_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_source(dir.path());
    let other = dir.path().join("other.db");
    {
        let mut s = SqliteStore::open(&other, None, ticking()).unwrap();
        s.insert_user(&UserRecord {
            login: "x".into(),
            attributes: BTreeMap::new(),
            status: "Active".into(),
            locked: false,
        })
        .unwrap();
    }
    let before = sqlite_rows(&other);
    let err = copy(&url(&source), &url(&other), 1).unwrap_err();
    assert!(
        matches!(&err, CopyError::Refused(m) if m.contains("not empty") && m.contains("`users` holds 1 row")),
        "{err}"
    );
    assert_eq!(sqlite_rows(&other), before);
    // The same store twice, a missing source, a source that is no store.
    let err = copy(&url(&source), &url(&source), 1).unwrap_err();
    assert!(matches!(&err, CopyError::Usage(m) if m.contains("same store")), "{err}");
    let missing = dir.path().join("missing.db");
    let err = copy(&url(&missing), &url(&dir.path().join("d1.db")), 1).unwrap_err();
    assert!(matches!(&err, CopyError::Refused(m) if m.contains("no such file")), "{err}");
    assert!(!missing.exists(), "the copy created its source");
    let blank = dir.path().join("blank.db");
    drop(rusqlite::Connection::open(&blank).unwrap());
    let err = copy(&url(&blank), &url(&dir.path().join("d2.db")), 1).unwrap_err();
    assert!(matches!(&err, CopyError::Refused(m) if m.contains("holds no provflow state store")), "{err}");
}

#[test]
fn a_source_at_another_schema_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_source(dir.path());
    let raw = rusqlite::Connection::open(&source).unwrap();
    raw.execute("INSERT INTO schema_migrations(version, applied_at) VALUES (?1, 1)", [SCHEMA_VERSION + 1]).unwrap();
    let dest = dir.path().join("d.db");
    let err = copy(&url(&source), &url(&dest), 1).unwrap_err();
    assert!(matches!(&err, CopyError::Refused(m) if m.contains("newer than this provflow")), "{err}");
    assert!(!dest.exists(), "a refused copy created its destination");
    raw.execute("DELETE FROM schema_migrations WHERE version >= ?1", [SCHEMA_VERSION]).unwrap();
    let err = copy(&url(&source), &url(&dest), 1).unwrap_err();
    assert!(
        matches!(&err, CopyError::Refused(m) if m.contains("older than this provflow") && m.contains("task list")),
        "{err}"
    );
    let version: i64 = raw.query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION - 1, "the copy migrated its source");
}

#[test]
fn a_copy_that_does_not_verify_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_source(dir.path());
    // An empty destination whose trigger changes what is written: verification must see it.
    let dest = dir.path().join("d.db");
    {
        let s = SqliteStore::open(&dest, None, ticking()).unwrap();
        s.connection()
            .execute_batch(
                "CREATE TRIGGER tamper AFTER INSERT ON users BEGIN
                   UPDATE users SET status = 'Tampered' WHERE login = NEW.login; END;",
            )
            .unwrap();
    }
    let report = copy(&url(&source), &url(&dest), 1).unwrap();
    assert!(!report.verified());
    assert_eq!(report.mismatched(), ["users"]);
    let users = report.tables.iter().find(|t| t.table == "users").unwrap();
    assert_eq!(users.source_rows, users.destination_rows);
    assert_ne!(users.source_checksum, users.destination_checksum);
    let c = rusqlite::Connection::open(&dest).unwrap();
    for t in TABLES.iter().filter(|t| t.name != "schema_migrations") {
        let n: i64 = c.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{} kept rows of a copy that did not verify", t.name);
    }
}

// ----- PostgreSQL --------------------------------------------------------------------------

#[test]
fn the_table_list_covers_the_postgres_schema() {
    let Some(db) = Postgres::new() else { return };
    drop(PgStore::open(&db.url, None, ticking()).unwrap());
    let mut c = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    let tables: Vec<String> = c
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut listed: Vec<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
    listed.sort();
    assert_eq!(tables, listed, "a table of the PostgreSQL store is missing from copy::TABLES (or gone)");
}

#[test]
fn sqlite_to_postgres_and_back_keeps_every_row() {
    let Some(db) = Postgres::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_source(dir.path());
    let there = copy(&url(&source), &db.url, 1_900_000_000).unwrap();
    assert!(there.verified(), "{there:?}");

    // The PostgreSQL store reads what the SQLite one does, secrets opened with the same key.
    let a = SqliteStore::open(&source, Some(key()), ticking()).unwrap();
    let mut p = PgStore::open(&db.url, Some(key()), ticking()).unwrap();
    assert_eq!(a.accounts().unwrap(), p.accounts().unwrap());
    assert_eq!(a.tasks(None).unwrap(), p.tasks(None).unwrap());
    assert_eq!(a.users().unwrap(), p.users().unwrap());
    assert_eq!(a.outbox().unwrap(), p.outbox().unwrap());
    assert_eq!(a.latest_bundle().unwrap().map(|x| x.hash), p.latest_bundle().unwrap().map(|x| x.hash));
    for t in a.tasks(None).unwrap() {
        assert_eq!(a.audit(t.id).unwrap(), p.audit(t.id).unwrap());
    }
    // Copied into a non-empty PostgreSQL store: refused.
    let again = copy(&url(&source), &db.url, 1).unwrap_err();
    assert!(matches!(&again, CopyError::Refused(m) if m.contains("not empty")), "{again}");

    // And back to SQLite: the same rows as the original file, rowids included.
    let back = dir.path().join("back.db");
    let report = copy(&db.url, &url(&back), 1_900_000_001).unwrap();
    assert!(report.verified(), "{report:?}");
    let checksums = |r: &CopyReport| r.tables.iter().map(|t| t.source_checksum.clone()).collect::<Vec<_>>();
    assert_eq!(checksums(&there), checksums(&report));
    assert_eq!(sqlite_rows(&source), sqlite_rows(&back));

    // New rows in PostgreSQL take ids after the copied ones.
    p.insert_user(&UserRecord {
        login: "new".into(),
        attributes: BTreeMap::new(),
        status: "Active".into(),
        locked: false,
    })
    .unwrap();
    let created = p
        .create_accounts(
            "t",
            &[NewAccount {
                process: "Q",
                user: "new",
                bundle_hash: "h1",
                status: ObjectStatus::Provisioning,
                form: &FormData::new(),
                tasks: &[task(0, TaskStatus::Pending, false)],
            }],
        )
        .unwrap();
    assert_eq!(created.first().map(|c| c.0), Some(3), "{created:?}");
    let mut c = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
    let keys: Vec<i64> =
        c.query("SELECT usr_key FROM users ORDER BY usr_key", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, [1, 2, 3, 4]);
}
