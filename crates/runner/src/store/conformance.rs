//! One suite of store tests, written once against `dyn StateStore`, run against every store:
//! SQLite always, PostgreSQL when `PROVFLOW_TEST_PG_URL` names a server (an admin URL: each
//! test creates a database of its own there and drops it at the end). With
//! `PROVFLOW_REQUIRE_DATABASES=1` a missing URL fails the PostgreSQL half instead of skipping.

use provflow_ir::{Bundle, ObjectStatus, TaskStatus};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::value::{Secret, Value};

/// A store under test, and raw access to its database that bypasses the store.
trait Backend: Sync {
    fn open(&self, key: Option<SecretKey>, now: Box<dyn Fn() -> Instant + Send>) -> Box<dyn StateStore + Send> {
        self.try_open(key, now).unwrap()
    }
    fn try_open(
        &self,
        key: Option<SecretKey>,
        now: Box<dyn Fn() -> Instant + Send>,
    ) -> Result<Box<dyn StateStore + Send>, StoreError>;
    /// Runs one statement directly on the database.
    fn execute(&self, sql: &str) -> Result<u64, String>;
    /// Every row of every table, as text, for grepping.
    fn dump(&self) -> String;
    fn migrations(&self) -> i64;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("sub/state.db")
    }
    fn raw(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.path()).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        c
    }
}

impl Backend for Sqlite {
    fn try_open(
        &self,
        key: Option<SecretKey>,
        now: Box<dyn Fn() -> Instant + Send>,
    ) -> Result<Box<dyn StateStore + Send>, StoreError> {
        Ok(Box::new(SqliteStore::open(&self.path(), key, now)?))
    }
    fn execute(&self, sql: &str) -> Result<u64, String> {
        self.raw().execute(sql, []).map(|n| n as u64).map_err(|e| e.to_string())
    }
    fn dump(&self) -> String {
        let c = self.raw();
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = String::new();
        for t in tables {
            let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                for i in 0..n {
                    match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            out.push_str(&String::from_utf8_lossy(t))
                        }
                        other => out.push_str(&format!("{other:?}")),
                    }
                    out.push('\t');
                }
                out.push('\n');
            }
        }
        out
    }
    fn migrations(&self) -> i64 {
        self.raw().query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap()
    }
}

/// A database of its own on the test server, dropped at the end.
pub(super) struct Postgres {
    admin: String,
    name: String,
    pub(super) url: String,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap();
    let path = url[start..].find('/').map(|i| start + i).unwrap_or(url.len());
    let query = url[path..].find('?').map(|i| &url[path + i..]).unwrap_or("");
    format!("{}/{db}{query}", &url[..path])
}

impl Postgres {
    /// `None` (the test skips) without `PROVFLOW_TEST_PG_URL`.
    pub(super) fn new() -> Option<Self> {
        let admin = match std::env::var("PROVFLOW_TEST_PG_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var("PROVFLOW_REQUIRE_DATABASES").is_ok_and(|v| v == "1") {
                    panic!("PROVFLOW_REQUIRE_DATABASES=1 but PROVFLOW_TEST_PG_URL is not set");
                }
                eprintln!("SKIPPED: PROVFLOW_TEST_PG_URL not set (start PostgreSQL and set it to run the PostgreSQL store tests)");
                return None;
            }
        };
        let name = format!("pf_store_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
        let mut c = ::postgres::Client::connect(&admin, ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = with_database(&admin, &name);
        Some(Postgres { admin, name, url })
    }
    fn raw(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url, ::postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut c) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

impl Backend for Postgres {
    fn try_open(
        &self,
        key: Option<SecretKey>,
        now: Box<dyn Fn() -> Instant + Send>,
    ) -> Result<Box<dyn StateStore + Send>, StoreError> {
        Ok(Box::new(PgStore::open(&self.url, key, now)?))
    }
    fn execute(&self, sql: &str) -> Result<u64, String> {
        self.raw().execute(sql, &[]).map_err(|e| e.to_string())
    }
    fn dump(&self) -> String {
        let mut c = self.raw();
        let tables: Vec<String> = c
            .query("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = String::new();
        for t in tables {
            for r in c.query(&format!("SELECT t::text FROM \"{t}\" t"), &[]).unwrap() {
                out.push_str(r.get::<_, &str>(0));
                out.push('\n');
            }
        }
        out
    }
    fn migrations(&self) -> i64 {
        self.raw().query_one("SELECT count(*) FROM schema_migrations", &[]).unwrap().get(0)
    }
}

/// A clock that ticks one second per reading, so every write has its own instant.
pub(super) fn ticking() -> Box<dyn Fn() -> Instant + Send> {
    let t = Arc::new(AtomicI64::new(1_800_000_000));
    Box::new(move || t.fetch_add(1, Ordering::SeqCst))
}

pub(super) fn bundle(hash: &str) -> Bundle {
    Bundle {
        ir_version: provflow_ir::IR_VERSION,
        hash: hash.into(),
        targets: vec![],
        query_sets: vec![],
        processes: vec![],
        events: vec![],
        templates: vec![],
        user_schema: provflow_ir::UserSchema { name: None, attributes: vec![] },
        scenarios: vec![],
    }
}

fn user(login: &str) -> UserRecord {
    UserRecord { login: login.into(), attributes: BTreeMap::new(), status: "Active".into(), locked: false }
}

pub(super) fn task(i: usize, status: TaskStatus) -> NewTask {
    NewTask {
        task_index: i,
        task_name: format!("T{i}"),
        status,
        attempt: 1,
        due_at: None,
        held: false,
        note: None,
        child: ChildRow::new(),
        promoted: false,
        calling: false,
        manual: false,
    }
}

fn completes(account: AccountId, task: TaskId) -> Step {
    Step {
        account,
        actor: "t".into(),
        transitions: vec![Transition {
            task,
            to: TaskStatus::Completed,
            response: Some("SUCCESS".into()),
            note: None,
            held: false,
            outputs: [("id".to_string(), "42".to_string())].into(),
        }],
        ..Step::default()
    }
}

/// A store with bundle `h` and users `A`, `B`.
fn seeded(b: &dyn Backend) -> Box<dyn StateStore + Send> {
    let mut s = b.open(None, ticking());
    s.save_bundle(&bundle("h")).unwrap();
    s.insert_user(&user("A")).unwrap();
    s.insert_user(&user("B")).unwrap();
    s
}

fn account(process: &'static str, login: &'static str, tasks: &'static [NewTask]) -> NewAccount<'static> {
    static EMPTY: std::sync::OnceLock<FormData> = std::sync::OnceLock::new();
    NewAccount {
        process,
        user: login,
        bundle_hash: "h",
        status: ObjectStatus::Provisioning,
        form: EMPTY.get_or_init(FormData::new),
        tasks,
    }
}

fn two_tasks() -> &'static [NewTask] {
    static TASKS: std::sync::OnceLock<Vec<NewTask>> = std::sync::OnceLock::new();
    TASKS.get_or_init(|| vec![task(0, TaskStatus::Pending), task(1, TaskStatus::Waiting)])
}

// ----- the suite ------------------------------------------------------------------------------

fn migrations_apply_once(b: &dyn Backend) {
    drop(b.open(None, ticking()));
    drop(b.open(None, ticking()));
    assert_eq!(b.migrations(), SCHEMA_VERSION);
}

fn fresh_store_opened_by_eight_at_once(b: &dyn Backend) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let s = b.open(None, ticking());
                    s.users().unwrap().len()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 0);
        }
    });
    assert_eq!(b.migrations(), SCHEMA_VERSION);
}

fn bundles_by_hash(b: &dyn Backend) {
    let mut s = b.open(None, ticking());
    assert_eq!(s.latest_bundle().unwrap(), None);
    s.save_bundle(&bundle("a")).unwrap();
    s.save_bundle(&bundle("b")).unwrap();
    assert_eq!(s.bundle("a").unwrap().map(|x| x.hash), Some("a".into()));
    assert_eq!(s.bundle("zz").unwrap(), None);
    assert_eq!(s.latest_bundle().unwrap().map(|x| x.hash), Some("b".into()));
    // Used again: the newest use wins.
    s.save_bundle(&bundle("a")).unwrap();
    assert_eq!(s.latest_bundle().unwrap().map(|x| x.hash), Some("a".into()));
}

fn users_insert_update_read(b: &dyn Backend) {
    let mut s = b.open(None, ticking());
    let mut u = user("b");
    u.attributes.insert("usr_first_name".into(), "Bé".into());
    s.insert_user(&u).unwrap();
    s.insert_user(&user("B")).unwrap();
    s.insert_user(&user("a")).unwrap();
    assert!(s.insert_user(&user("a")).is_err(), "a login is unique");
    u.status = "Disabled".into();
    u.locked = true;
    s.update_user(&u).unwrap();
    assert_eq!(s.user("b").unwrap(), Some(u));
    assert_eq!(s.user("nobody").unwrap(), None);
    // Byte order on every store.
    let logins: Vec<String> = s.users().unwrap().into_iter().map(|u| u.login).collect();
    assert_eq!(logins, ["B", "a", "b"]);
}

fn accounts_are_created_with_their_tasks_or_not_at_all(b: &dyn Backend) {
    let mut s = seeded(b);
    // The second account's user does not exist: the first is not created either.
    let refused = s.create_accounts("t", &[account("P", "A", two_tasks()), account("P", "nobody", two_tasks())]);
    assert!(matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("nobody")), "{refused:?}");
    assert!(s.accounts().unwrap().is_empty());
    assert!(s.tasks(None).unwrap().is_empty());

    let made = s.create_accounts("t", &[account("P", "A", two_tasks()), account("P", "B", two_tasks())]).unwrap();
    assert_eq!(made.len(), 2);
    for (id, tasks) in &made {
        let listed: Vec<TaskId> = s.tasks_of(*id).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(&listed, tasks);
        let first = s.task(tasks[0]).unwrap().unwrap();
        assert_eq!((first.task_name.as_str(), first.status, first.attempt), ("T0", TaskStatus::Pending, 1));
        assert_eq!(s.audit(tasks[0]).unwrap().len(), 1);
    }
    // A second live account of the same process is refused; after a revoke a new one is made.
    let again = s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", &[]);
    assert!(matches!(&again, Err(StoreError::Conflict(m)) if m.contains("meanwhile")), "{again:?}");
    let (a_id, _) = made[0].clone();
    s.commit(&Step {
        account: a_id,
        actor: "t".into(),
        account_status: Some(ObjectStatus::Revoked),
        ..Step::default()
    })
    .unwrap();
    let (newer, _) = s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", &[]).unwrap();
    assert_eq!(s.find_account("P", "A").unwrap().map(|a| a.id), Some(newer));
    assert_eq!(s.find_account("Q", "A").unwrap(), None);
    assert_eq!(s.account(a_id).unwrap().map(|a| a.status), Some(ObjectStatus::Revoked));
    let both = s.users_and_accounts(&["A".into(), "zz".into()], "P").unwrap();
    assert_eq!(
        both.iter().map(|(u, a)| (u.is_some(), a.is_some())).collect::<Vec<_>>(),
        [(true, true), (false, false)]
    );
}

fn steps_of_several_accounts_commit_together(b: &dyn Backend) {
    let mut s = seeded(b);
    let made = s.create_accounts("t", &[account("P", "A", two_tasks()), account("P", "B", two_tasks())]).unwrap();
    let ((a, a_tasks), (b_id, b_tasks)) = (made[0].clone(), made[1].clone());
    // The second step inserts a task of an account that does not exist: nothing is kept.
    let bad =
        Step { account: 999_999, actor: "t".into(), new_tasks: vec![task(5, TaskStatus::Pending)], ..Step::default() };
    assert!(s.commit_steps(&[completes(a, a_tasks[0]), bad]).is_err());
    assert_eq!(s.task(a_tasks[0]).unwrap().map(|t| t.status), Some(TaskStatus::Pending));
    assert_eq!(s.audit(a_tasks[0]).unwrap().len(), 1);
    // A change and its steps too.
    let mut changed = user("A");
    changed.status = "Disabled".into();
    let bad =
        Step { account: 999_999, actor: "t".into(), new_tasks: vec![task(5, TaskStatus::Pending)], ..Step::default() };
    let change = Change { user: Some(&changed), form: None, steps: vec![completes(a, a_tasks[0]), bad] };
    assert!(s.commit_change(&change).is_err());
    assert_eq!(s.user("A").unwrap().map(|u| u.status), Some("Active".into()));

    let mut second = completes(b_id, b_tasks[0]);
    second.new_tasks.push(task(2, TaskStatus::Pending));
    second.calling = Some(b_tasks[1]);
    let ids = s.commit_steps(&[completes(a, a_tasks[0]), second]).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].is_empty());
    assert_eq!(ids[1].len(), 1);
    let done = s.task(a_tasks[0]).unwrap().unwrap();
    assert_eq!((done.status, done.response.as_deref()), (TaskStatus::Completed, Some("SUCCESS")));
    assert_eq!(done.outputs.get("id").map(String::as_str), Some("42"));
    assert!(s.task(b_tasks[1]).unwrap().unwrap().calling);
    let audit = s.audit(a_tasks[0]).unwrap();
    assert_eq!(audit.last().map(|e| (e.from, e.to)), Some((Some(TaskStatus::Pending), TaskStatus::Completed)));

    let change = Change { user: Some(&changed), form: None, steps: vec![] };
    s.commit_change(&change).unwrap();
    assert_eq!(s.user("A").unwrap().map(|u| u.status), Some("Disabled".into()));
    s.set_calling(b_tasks[1], false).unwrap();
    assert!(!s.task(b_tasks[1]).unwrap().unwrap().calling);
}

fn the_audit_trail_is_append_only(b: &dyn Backend) {
    let mut s = seeded(b);
    let (_, tasks) =
        s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", two_tasks()).unwrap();
    let before = s.audit(tasks[0]).unwrap();
    assert!(!before.is_empty());
    assert!(b.execute("UPDATE task_audit SET actor = 'someone else'").is_err());
    assert!(b.execute("DELETE FROM task_audit").is_err());
    assert_eq!(s.audit(tasks[0]).unwrap(), before);
}

fn secrets_are_sealed_at_rest_or_not_kept(b: &dyn Backend) {
    let key = SecretKey::from_bytes([3; 32]);
    let mut s = b.open(Some(key.clone()), ticking());
    s.save_bundle(&bundle("h")).unwrap();
    s.insert_user(&user("A")).unwrap();
    let form: FormData = [
        ("username".to_string(), Value::Text("JDOE".into())),
        ("password".to_string(), Value::Secret(Secret::new("top-secret-9"))),
    ]
    .into();
    let (id, _) = s.create_account("P", "A", "h", ObjectStatus::Provisioning, &form, "t", &[]).unwrap();
    let mut account = s.account(id).unwrap().unwrap();
    account.form.insert("other".into(), Value::Secret(Secret::new("second-secret-7")));
    s.save_form(&account).unwrap();
    drop(s);
    let raw = b.dump();
    assert!(!raw.contains("top-secret-9") && !raw.contains("second-secret-7"), "a secret is stored in plain text");
    assert!(raw.contains("sealed"));
    let back = b.open(Some(key), ticking()).account(id).unwrap().unwrap();
    let opened = match back.form.get("password") {
        Some(Value::Secret(s)) => s.expose().to_string(),
        other => panic!("the secret did not open: {:?}", other.map(Value::is_secret)),
    };
    assert_eq!(opened, "top-secret-9");
    assert!(back.form.contains_key("other"));
    let keyless = b.open(None, ticking()).account(id).unwrap().unwrap();
    assert!(!keyless.form.contains_key("password"));
    assert_eq!(keyless.form.get("username"), Some(&Value::Text("JDOE".into())));

    // Without a key a secret is not kept at all.
    let mut s = b.open(None, ticking());
    s.insert_user(&user("B")).unwrap();
    let (id, _) = s.create_account("P", "B", "h", ObjectStatus::Provisioning, &form, "t", &[]).unwrap();
    assert!(!s.account(id).unwrap().unwrap().form.contains_key("password"));
    assert!(!b.dump().contains("top-secret-9"));
}

fn notifications_wait_in_the_outbox(b: &dyn Backend) {
    let mut s = seeded(b);
    let (id, tasks) =
        s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", two_tasks()).unwrap();
    let mut step = completes(id, tasks[0]);
    step.notify.push(NotifyRequest {
        task: Some(tasks[0]),
        template_index: 2,
        template: "Welcome".into(),
        task_status: TaskStatus::Completed,
        recipient: "A".into(),
    });
    s.commit(&step).unwrap();
    let outbox = s.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    let e = &outbox[0];
    assert_eq!(
        (
            e.account,
            e.task,
            e.template_index,
            e.template.as_str(),
            e.task_status,
            e.recipient.as_str(),
            e.bundle_hash.as_str()
        ),
        (id, Some(tasks[0]), 2, "Welcome", TaskStatus::Completed, "A", "h")
    );
}

fn tasks_are_found_by_status(b: &dyn Backend) {
    let mut s = seeded(b);
    let tasks = [task(0, TaskStatus::Pending), task(1, TaskStatus::Waiting), task(2, TaskStatus::Pending)];
    let (id, ids) = s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", &tasks).unwrap();
    s.commit(&completes(id, ids[0])).unwrap();
    let of = |s: &dyn StateStore, st| s.tasks(Some(st)).unwrap().iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(of(&*s, TaskStatus::Pending), vec![ids[2]]);
    assert_eq!(of(&*s, TaskStatus::Waiting), vec![ids[1]]);
    assert_eq!(of(&*s, TaskStatus::Completed), vec![ids[0]]);
    assert_eq!(s.tasks(None).unwrap().len(), 3);
    // A promoted task records the Waiting it starts in.
    let mut promoted = task(3, TaskStatus::Pending);
    promoted.promoted = true;
    let new = s.commit(&Step { account: id, actor: "t".into(), new_tasks: vec![promoted], ..Step::default() }).unwrap();
    let audit = s.audit(new[0]).unwrap();
    assert_eq!(
        audit.iter().map(|a| (a.from, a.to)).collect::<Vec<_>>(),
        [(None, TaskStatus::Waiting), (Some(TaskStatus::Waiting), TaskStatus::Pending)]
    );
}

fn only_a_sqlite_store_shares_its_transactions(b: &dyn Backend) {
    let mut s = b.open(None, ticking());
    let mut called = false;
    let shared = s.call_in_step(&mut |_| called = true);
    assert_eq!(shared.is_ok(), s.sqlite_file().is_some());
    assert_eq!(called, s.sqlite_file().is_some());
    if shared.is_ok() {
        s.commit_steps(&[]).unwrap();
    }
}

/// A store with one queued notification for `A` (account `id`); returns it with the id.
fn with_a_notification(b: &dyn Backend) -> (Box<dyn StateStore + Send>, AccountId) {
    let mut s = seeded(b);
    let (id, tasks) =
        s.create_account("P", "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", two_tasks()).unwrap();
    let mut step = completes(id, tasks[0]);
    for (template_index, template) in [(0, "Welcome"), (1, "Broken")] {
        step.notify.push(NotifyRequest {
            task: Some(tasks[0]),
            template_index,
            template: template.into(),
            task_status: TaskStatus::Completed,
            recipient: "A".into(),
        });
    }
    s.commit(&step).unwrap();
    (s, id)
}

fn rendering_moves_outbox_rows_out_of_the_queue(b: &dyn Backend) {
    let (mut s, _) = with_a_notification(b);
    let queued = s.queued_outbox().unwrap();
    assert_eq!(queued.iter().map(|e| e.template.as_str()).collect::<Vec<_>>(), ["Welcome", "Broken"]);
    let messages = s.outbox_messages().unwrap();
    assert!(messages.iter().all(|m| m.status == "queued" && m.subject.is_none() && m.to_address.is_none()));
    let rendered = OutboxRender::Rendered {
        locale: "fr-FR".into(),
        message_type: "text/ascii".into(),
        subject: "Bienvenue".into(),
        short: "Court".into(),
        body: "Corps\nligne 2".into(),
        to_address: Some("\"Ann A\" <a@example.com>".into()),
    };
    s.record_render(queued[0].id, &rendered, 1_900_000_000).unwrap();
    let failed = OutboxRender::Failed { error: "template `Broken`: no".into(), to_address: None };
    s.record_render(queued[1].id, &failed, 1_900_000_001).unwrap();
    assert!(s.queued_outbox().unwrap().is_empty());
    let m = s.outbox_messages().unwrap();
    assert_eq!(m.len(), 2);
    let (ok, bad) = (&m[0], &m[1]);
    assert_eq!(
        (ok.id, ok.template.as_str(), ok.recipient.as_str(), ok.status.as_str(), ok.error.as_deref()),
        (queued[0].id, "Welcome", "A", "rendered", None)
    );
    assert_eq!(
        (ok.locale.as_deref(), ok.message_type.as_deref(), ok.subject.as_deref(), ok.short.as_deref()),
        (Some("fr-FR"), Some("text/ascii"), Some("Bienvenue"), Some("Court"))
    );
    assert_eq!(ok.body.as_deref(), Some("Corps\nligne 2"));
    assert_eq!(ok.to_address.as_deref(), Some("\"Ann A\" <a@example.com>"));
    assert_eq!((ok.task_status.as_str(), ok.bundle_hash.as_str(), ok.template_index), ("Completed", "h", 0));
    assert_eq!(ok.created_at, queued[0].created_at);
    assert_eq!(
        (bad.status.as_str(), bad.error.as_deref(), bad.subject.as_deref(), bad.template_index),
        ("failed", Some("template `Broken`: no"), None, 1)
    );
    // The old view of the outbox still lists both.
    assert_eq!(s.outbox().unwrap().len(), 2);
}

fn users_have_stable_keys(b: &dyn Backend) {
    let mut s = seeded(b);
    let a = s.usr_key("A").unwrap().expect("A has a key");
    let bk = s.usr_key("B").unwrap().expect("B has a key");
    assert_ne!(a, bk);
    assert_eq!(s.usr_key("nobody").unwrap(), None);
    let mut changed = user("A");
    changed.attributes.insert("usr_first_name".into(), "Ann".into());
    s.update_user(&changed).unwrap();
    assert_eq!(s.usr_key("A").unwrap(), Some(a));
}

fn the_database_answers_resolver_queries(b: &dyn Backend) {
    let (s, id) = with_a_notification(b);
    let key = s.usr_key("A").unwrap().unwrap();
    // The example resolver's query, in the store's own dialect.
    let db = s.database().unwrap();
    let sql = match db.dialect() {
        provflow_ir::Dialect::Postgres => {
            "select count(*) as Account_Count, max(id) as last from accounts where usr_key = $1"
        }
        _ => "select count(*) as Account_Count, max(id) as last from accounts where usr_key = ?1",
    };
    let row = match db {
        Database::Sqlite(conn) => {
            conn.query_row(sql, [key], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).unwrap()
        }
        Database::Postgres(mut client) => {
            let r = client.query_one(sql, &[&key]).unwrap();
            (r.get::<_, i64>(0), r.get::<_, i64>(1))
        }
    };
    assert_eq!(row, (1, id));
}

fn recon_events_are_read_by_run(b: &dyn Backend) {
    let s = seeded(b);
    assert_eq!(s.recon_events(None).unwrap(), (None, vec![]));
    for sql in [
        "INSERT INTO recon_runs(process, source, started_at) VALUES ('P', 'csv:x', 1)",
        "INSERT INTO recon_runs(process, source, started_at) VALUES ('P', 'csv:y', 2)",
        "INSERT INTO recon_events(run_id, line, key, outcome, action, account_id, changes, error, at) VALUES (1, 3, 'a', 'no match', 'none', NULL, '{}', NULL, 1)",
        "INSERT INTO recon_events(run_id, line, key, outcome, action, account_id, changes, error, at) VALUES (2, 4, NULL, 'bad row', 'skipped', NULL, '{}', 'the key is empty', 2)",
        "INSERT INTO recon_events(run_id, line, key, outcome, action, account_id, changes, error, at) VALUES (2, 2, 'b', 'one process match', 'update', 7, '{\"form.x\":{\"from\":null,\"to\":\"1\"}}', NULL, 2)",
    ] {
        b.execute(sql).unwrap();
    }
    let (run, events) = s.recon_events(None).unwrap();
    assert_eq!(run, Some(2));
    assert_eq!(events.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4]);
    let e = &events[0];
    assert_eq!(
        (e.run, e.key.as_deref(), e.outcome.as_str(), e.action.as_str(), e.account, e.error.as_deref()),
        (2, Some("b"), "one process match", "update", Some(7), None)
    );
    assert_eq!(e.changes, serde_json::json!({ "form.x": { "from": null, "to": "1" } }));
    assert_eq!(events[1].error.as_deref(), Some("the key is empty"));
    let (run, events) = s.recon_events(Some(1)).unwrap();
    assert_eq!((run, events.len()), (Some(1), 1));
    assert_eq!(s.recon_events(Some(9)).unwrap(), (Some(9), vec![]));
}

// ----- the work queue ---------------------------------------------------------------------------

const NOW: Instant = 1_800_000_000;
const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

fn worker(id: &str, at: Instant) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        host: "host-1".into(),
        pid: 4242,
        started_at: at,
        heartbeat_at: at,
        lease: LEASE,
        concurrency: 4,
        stopped_at: None,
    }
}

fn claim(s: &mut dyn StateStore, worker: &str, now: Instant, limit: usize) -> Vec<Claim> {
    s.task_claim(&TaskClaimParams { worker, now, lease: LEASE, limit }).unwrap()
}

fn claimed_tasks(claims: &[Claim]) -> Vec<TaskId> {
    claims.iter().map(|c| c.task).collect()
}

/// An account of user `A` for `process` with `tasks`; its task ids.
fn account_with(s: &mut dyn StateStore, process: &str, tasks: &[NewTask]) -> (AccountId, Vec<TaskId>) {
    s.create_account(process, "A", "h", ObjectStatus::Provisioning, &FormData::new(), "t", tasks).unwrap()
}

fn marks_calling(account: AccountId, task: TaskId) -> Step {
    Step { account, actor: "w".into(), calling: Some(task), ..Step::default() }
}

fn claims_take_only_runnable_tasks(b: &dyn Backend) {
    let mut s = seeded(b);
    let mut held = task(0, TaskStatus::Pending);
    held.held = true;
    let mut retry = task(0, TaskStatus::Pending);
    retry.due_at = Some(NOW + 600);
    let (_, runnable) = account_with(&mut *s, "P1", &[task(0, TaskStatus::Pending)]);
    account_with(&mut *s, "P2", &[task(0, TaskStatus::Waiting)]);
    account_with(&mut *s, "P3", &[held]);
    let (_, later) = account_with(&mut *s, "P4", &[retry]);
    account_with(&mut *s, "P5", &[task(0, TaskStatus::Completed), task(1, TaskStatus::Rejected)]);
    s.worker_register(&worker("w1", NOW)).unwrap();
    let lease = std::time::Duration::from_secs(3600);
    let params = |now| TaskClaimParams { worker: "w1", now, lease, limit: 10 };
    let first = s.task_claim(&params(NOW)).unwrap();
    assert_eq!(claimed_tasks(&first), runnable);
    let c = &first[0];
    assert_eq!((c.epoch, c.expires_at, c.calling, c.rescued()), (1, NOW + 3600, false, false));
    // The retry is not due one second early; it is at its due instant.
    assert!(s.task_claim(&params(NOW + 599)).unwrap().is_empty());
    assert_eq!(claimed_tasks(&s.task_claim(&params(NOW + 600)).unwrap()), later);
    assert!(s.task_claim(&params(NOW + 601)).unwrap().is_empty());
    // An unknown worker claims nothing and is told so.
    let unknown = s.task_claim(&TaskClaimParams { worker: "nobody", ..params(NOW) });
    assert!(matches!(&unknown, Err(StoreError::UnknownWorker(w)) if w == "nobody"), "{unknown:?}");
}

fn an_account_has_one_claimed_task_at_a_time(b: &dyn Backend) {
    let mut s = seeded(b);
    let (a, a_tasks) = account_with(&mut *s, "P1", &[task(0, TaskStatus::Pending), task(1, TaskStatus::Pending)]);
    let (_, b_tasks) = account_with(&mut *s, "P2", &[task(0, TaskStatus::Pending)]);
    s.worker_register(&worker("w1", NOW)).unwrap();
    let claims = claim(&mut *s, "w1", NOW, 10);
    assert_eq!(claimed_tasks(&claims), [a_tasks[0], b_tasks[0]]);
    // The account's second task waits while the first is claimed, by anyone.
    assert!(claim(&mut *s, "w1", NOW + 1, 10).is_empty());
    let fence = claims[0].fence("w1");
    s.commit_steps_fenced(&[completes(a, a_tasks[0])], &[fence]).unwrap();
    // A fenced commit keeps the claim although its task left Pending: the worker holds the
    // account until it gives the claim back.
    assert!(claim(&mut *s, "w1", NOW + 2, 10).is_empty());
    assert_eq!(s.task_claim_release(&[(a_tasks[0], claims[0].epoch), (b_tasks[0], claims[1].epoch)]).unwrap(), 2);
    let next = claim(&mut *s, "w1", NOW + 2, 10);
    assert_eq!(claimed_tasks(&next), [a_tasks[1], b_tasks[0]]);
    assert_eq!((next[0].epoch, next[1].epoch), (1, 2));
    // The limit counts claims.
    let (_, c_tasks) = account_with(&mut *s, "P3", &[task(0, TaskStatus::Pending)]);
    account_with(&mut *s, "P4", &[task(0, TaskStatus::Pending)]);
    assert_eq!(claimed_tasks(&claim(&mut *s, "w1", NOW + 3, 1)), [c_tasks[0]]);
}

fn expired_leases_are_rescued_and_stale_commits_fenced(b: &dyn Backend) {
    let mut s = seeded(b);
    let sqlite = s.sqlite_file().is_some();
    let (a, tasks) = account_with(&mut *s, "P1", two_tasks());
    let x = tasks[0];
    s.worker_register(&worker("w1", NOW)).unwrap();
    let mine = claim(&mut *s, "w1", NOW, 10);
    assert_eq!((claimed_tasks(&mine), mine[0].epoch), (vec![x], 1));
    // The call is marked in a fenced commit, then w1 goes silent after one heartbeat.
    s.commit_steps_fenced(&[marks_calling(a, x)], &[mine[0].fence("w1")]).unwrap();
    // A claim the worker does not say it works on is not renewed (its claim's answer was lost).
    assert!(s.worker_heartbeat("w1", NOW + 5, LEASE, &[]).unwrap().is_empty());
    let renewed = s.worker_heartbeat("w1", NOW + 10, LEASE, &[x]).unwrap();
    assert_eq!(
        renewed.iter().map(|c| (c.task, c.epoch, c.expires_at, c.calling)).collect::<Vec<_>>(),
        [(x, 1, NOW + 40, true)]
    );
    if sqlite {
        // One worker at a time on SQLite, refused with who holds the store.
        let refused = s.worker_register(&worker("w2", NOW + 35)).unwrap_err();
        assert!(matches!(refused, StoreError::WorkerAlreadyRunning { .. }), "{refused:?}");
        let text = refused.to_string();
        for want in ["`w1`", "pid 4242 on host-1", "25 s ago", "lease is 30 s", "PostgreSQL"] {
            assert!(text.contains(want), "{want} in {text}");
        }
    } else {
        // The renewed lease is not rescued.
        s.worker_register(&worker("w2", NOW + 35)).unwrap();
        assert!(claim(&mut *s, "w2", NOW + 35, 10).is_empty());
    }
    // Once the lease has expired another worker takes the task, with the next epoch.
    if sqlite {
        s.worker_register(&worker("w2", NOW + 40)).unwrap();
    }
    let rescued = claim(&mut *s, "w2", NOW + 40, 10);
    assert_eq!(claimed_tasks(&rescued), [x]);
    let r = &rescued[0];
    assert_eq!((r.epoch, r.calling, r.rescued_from.as_deref()), (2, true, Some("w1")));
    // The old holder learns it at its next heartbeat …
    assert!(s.worker_heartbeat("w1", NOW + 41, LEASE, &[x]).unwrap().is_empty());
    // … and cannot commit anything: not the outcome, not a new task, not a notification.
    let audit = s.audit(x).unwrap();
    let mut stale = completes(a, x);
    stale.new_tasks.push(task(5, TaskStatus::Pending));
    stale.notify.push(NotifyRequest {
        task: Some(x),
        template_index: 0,
        template: "Welcome".into(),
        task_status: TaskStatus::Completed,
        recipient: "A".into(),
    });
    let refused = s.commit_steps_fenced(&[stale.clone()], &[mine[0].fence("w1")]).unwrap_err();
    match &refused {
        StoreError::Fenced { task, epoch, held_by, current } => {
            assert_eq!((*task, *epoch, held_by.as_deref(), *current), (x, 1, Some("w2"), Some(2)))
        }
        other => panic!("not fenced: {other:?}"),
    }
    let text = refused.to_string();
    assert!(text.contains("`w2`") && text.contains("nothing of this commit was written"), "{text}");
    let after = s.task(x).unwrap().unwrap();
    assert_eq!((after.status, after.calling), (TaskStatus::Pending, true));
    assert_eq!(s.audit(x).unwrap(), audit);
    assert_eq!(s.tasks_of(a).unwrap().len(), 2);
    assert!(s.outbox().unwrap().is_empty());
    // A fence of the right epoch but another worker is refused too.
    let forged = Fence { task: x, epoch: 2, worker: "w1".into() };
    assert!(matches!(s.commit_steps_fenced(&[completes(a, x)], &[forged]), Err(StoreError::Fenced { .. })));
    // The new holder's commit goes through; the claim stays the new holder's until released.
    let ids = s.commit_steps_fenced(&[stale], &[r.fence("w2")]).unwrap();
    assert_eq!(ids[0].len(), 1);
    assert_eq!(s.task(x).unwrap().map(|t| t.status), Some(TaskStatus::Completed));
    assert_eq!(s.outbox().unwrap().len(), 1);
    let held_by_w2 = |s: &dyn StateStore| {
        let w2 = s.workers().unwrap().into_iter().find(|w| w.worker.id == "w2").unwrap();
        w2.claims.iter().map(|c| c.task).collect::<Vec<_>>()
    };
    assert_eq!(held_by_w2(&*s), [x]);
    assert_eq!(s.task_claim_release(&[(x, 2)]).unwrap(), 1);
    assert!(held_by_w2(&*s).is_empty());
    // Its epoch stays: a task's epochs only grow.
    assert!(s.task_claim_release(&[(x, 2)]).is_ok_and(|released| released == 0));
    assert_eq!(s.task(x).unwrap().map(|t| t.status), Some(TaskStatus::Completed));
}

fn claims_are_released_by_epoch(b: &dyn Backend) {
    let mut s = seeded(b);
    let (_, tasks) = account_with(&mut *s, "P1", two_tasks());
    s.worker_register(&worker("w1", NOW)).unwrap();
    let first = claim(&mut *s, "w1", NOW, 10);
    assert_eq!(s.task_claim_release(&[(tasks[0], 7)]).unwrap(), 0, "another epoch releases nothing");
    assert_eq!(s.task_claim_release(&[(tasks[0], first[0].epoch)]).unwrap(), 1);
    assert_eq!(s.task_claim_release(&[(tasks[0], first[0].epoch)]).unwrap(), 0, "released once");
    let again = claim(&mut *s, "w1", NOW + 1, 10);
    assert_eq!((claimed_tasks(&again), again[0].epoch, again[0].rescued()), (vec![tasks[0]], 2, false));
    // The released claim's fence no longer holds.
    let stale = s.commit_steps_fenced(&[], &[first[0].fence("w1")]);
    assert!(matches!(stale, Err(StoreError::Fenced { current: Some(2), .. })), "{stale:?}");
}

fn stopping_releases_claims_whose_call_has_not_started(b: &dyn Backend) {
    let mut s = seeded(b);
    let (a, a_tasks) = account_with(&mut *s, "P1", two_tasks());
    let (_, b_tasks) = account_with(&mut *s, "P2", two_tasks());
    s.worker_register(&worker("w1", NOW)).unwrap();
    // The same id while it lives is refused, on every store.
    let twice = s.worker_register(&worker("w1", NOW + 1)).unwrap_err();
    assert!(matches!(twice, StoreError::WorkerIdInUse { .. }), "{twice:?}");
    assert!(twice.to_string().contains("another `--id`"), "{twice}");
    // The same registration again (a retry whose first answer was lost) is this worker's own.
    s.worker_register(&worker("w1", NOW)).unwrap();
    assert_eq!(s.workers().unwrap().len(), 1);
    let claims = claim(&mut *s, "w1", NOW, 10);
    assert_eq!(claimed_tasks(&claims), [a_tasks[0], b_tasks[0]]);
    s.commit_steps_fenced(&[marks_calling(a, a_tasks[0])], &[claims[0].fence("w1")]).unwrap();
    assert_eq!(s.worker_stop("w1", NOW + 5).unwrap(), 1);
    let listed = s.workers().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].worker.stopped_at, Some(NOW + 5));
    assert_eq!(listed[0].worker, WorkerRecord { stopped_at: Some(NOW + 5), ..worker("w1", NOW) });
    assert_eq!(listed[0].claims.iter().map(|c| (c.task, c.calling)).collect::<Vec<_>>(), [(a_tasks[0], true)]);
    // A stopped worker claims and renews nothing.
    let refused = s.task_claim(&TaskClaimParams { worker: "w1", now: NOW + 6, lease: LEASE, limit: 10 });
    assert!(matches!(refused, Err(StoreError::UnknownWorker(_))), "{refused:?}");
    assert!(matches!(s.worker_heartbeat("w1", NOW + 6, LEASE, &[]), Err(StoreError::UnknownWorker(_))));
    // Started again under the same id: the old process's claims are given up, and the call it
    // may have made is reported with the task.
    s.worker_register(&worker("w1", NOW + 7)).unwrap();
    let back = claim(&mut *s, "w1", NOW + 7, 10);
    assert_eq!(
        back.iter().map(|c| (c.task, c.epoch, c.calling)).collect::<Vec<_>>(),
        [(a_tasks[0], 2, true), (b_tasks[0], 2, false)]
    );
}

fn a_person_finishing_a_claimed_task_ends_the_claim(b: &dyn Backend) {
    let mut s = seeded(b);
    let (a, tasks) = account_with(&mut *s, "P1", two_tasks());
    s.worker_register(&worker("w1", NOW)).unwrap();
    let claims = claim(&mut *s, "w1", NOW, 10);
    // `provflow task complete` commits without a fence: the worker's outcome is then refused.
    s.commit(&completes(a, tasks[0])).unwrap();
    assert!(s.workers().unwrap()[0].claims.is_empty());
    let late = s.commit_steps_fenced(&[completes(a, tasks[0])], &[claims[0].fence("w1")]);
    assert!(matches!(late, Err(StoreError::Fenced { held_by: None, current: Some(1), .. })), "{late:?}");
}

fn concurrent_claimers_never_share_a_task(b: &dyn Backend) {
    const ACCOUNTS: usize = 200;
    const THREADS: usize = 8;
    let mut s = seeded(b);
    let processes: Vec<String> = (0..ACCOUNTS).map(|i| format!("P{i}")).collect();
    let tasks = [task(0, TaskStatus::Pending), task(1, TaskStatus::Pending)];
    let form = FormData::new();
    let accounts: Vec<NewAccount<'_>> = processes
        .iter()
        .map(|p| NewAccount {
            process: p,
            user: "A",
            bundle_hash: "h",
            status: ObjectStatus::Provisioning,
            form: &form,
            tasks: &tasks,
        })
        .collect();
    s.create_accounts("t", &accounts).unwrap();
    // SQLite runs one worker, here with eight connections; PostgreSQL eight workers.
    let sqlite = s.sqlite_file().is_some();
    let ids: Vec<String> = (0..THREADS).map(|i| if sqlite { "w".to_string() } else { format!("w{i}") }).collect();
    for id in if sqlite { &ids[..1] } else { &ids[..] } {
        s.worker_register(&worker(id, NOW)).unwrap();
    }
    let got: Vec<Vec<Claim>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                scope.spawn(move || {
                    let mut s = b.open(None, ticking());
                    let mut mine = Vec::new();
                    let mut empty = 0;
                    while empty < 3 {
                        let got = claim(&mut *s, id, NOW, 7);
                        empty = if got.is_empty() { empty + 1 } else { 0 };
                        mine.extend(got);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<&Claim> = got.iter().flatten().collect();
    let mut tasks: Vec<TaskId> = all.iter().map(|c| c.task).collect();
    tasks.sort();
    tasks.dedup();
    assert_eq!(all.len(), ACCOUNTS, "every account's first task claimed exactly once");
    assert_eq!(tasks.len(), ACCOUNTS, "no task claimed twice");
    let mut accounts: Vec<AccountId> = all.iter().map(|c| c.account).collect();
    accounts.sort();
    accounts.dedup();
    assert_eq!(accounts.len(), ACCOUNTS, "one task per account");
    assert!(all.iter().all(|c| c.epoch == 1 && !c.rescued()));
    let held: usize = s.workers().unwrap().iter().map(|w| w.claims.len()).sum();
    assert_eq!(held, ACCOUNTS);
}

fn manual_tasks_wait_for_a_person_and_are_never_claimed(b: &dyn Backend) {
    let mut s = seeded(b);
    let mut manual = task(0, TaskStatus::Pending);
    manual.manual = true;
    let (_, m) = account_with(&mut *s, "P1", &[manual]);
    let (_, legacy) = account_with(&mut *s, "P2", &[task(0, TaskStatus::Pending)]);
    s.worker_register(&worker("w1", NOW)).unwrap();
    // A row of an older store, not known as manual, is claimed once and then marked.
    let first = claim(&mut *s, "w1", NOW, 10);
    assert_eq!(claimed_tasks(&first), legacy);
    s.task_mark_manual(&legacy).unwrap();
    s.task_claim_release(&[(legacy[0], first[0].epoch)]).unwrap();
    assert!(claim(&mut *s, "w1", NOW + 1, 10).is_empty(), "manual tasks {m:?} and {legacy:?} are never claimed");
    let counts = s.task_counts(NOW + 1).unwrap();
    assert_eq!(counts, [("manual".to_string(), 2)]);
}

fn a_rescue_names_the_holder_of_an_account_whose_first_task_is_done(b: &dyn Backend) {
    let mut s = seeded(b);
    let (a, tasks) = account_with(&mut *s, "P1", &[task(0, TaskStatus::Pending), task(1, TaskStatus::Waiting)]);
    s.worker_register(&worker("w1", NOW)).unwrap();
    let mine = claim(&mut *s, "w1", NOW, 10);
    // w1 completes the first task, promotes the second and marks it calling, then dies.
    let mut step = completes(a, tasks[0]);
    step.transitions.push(Transition {
        task: tasks[1],
        to: TaskStatus::Pending,
        response: None,
        note: None,
        held: false,
        outputs: BTreeMap::new(),
    });
    step.calling = Some(tasks[1]);
    s.commit_steps_fenced(&[step], &[mine[0].fence("w1")]).unwrap();
    assert_eq!(s.task_counts(NOW + 1).unwrap(), [("runnable".to_string(), 1)]);
    // The account stays w1's while its lease lives: no claim, and the expiry is the next wake.
    assert!(claim(&mut *s, "w1", NOW + 29, 10).is_empty());
    assert_eq!(s.task_next_wake(NOW + 29).unwrap(), Some(NOW + 30));
    // (A SQLite store takes a second worker once the first is silent.)
    s.worker_register(&worker("w2", NOW + 30)).unwrap();
    let rescued = claim(&mut *s, "w2", NOW + 30, 10);
    assert_eq!(claimed_tasks(&rescued), [tasks[1]]);
    assert_eq!((rescued[0].rescued_from.as_deref(), rescued[0].calling), (Some("w1"), true));
    // w1's fence on its first task is gone with the rescue.
    let late = s.commit_steps_fenced(&[marks_calling(a, tasks[1])], &[mine[0].fence("w1")]);
    assert!(matches!(late, Err(StoreError::Fenced { held_by: None, .. })), "{late:?}");
    // Stopping keeps the claims of accounts with a call in flight.
    assert_eq!(s.worker_stop("w2", NOW + 31).unwrap(), 0);
    assert_eq!(s.task_counts(NOW + 31).unwrap(), [("claimed".to_string(), 1)]);
}

fn rescues_are_claimed_before_new_work(b: &dyn Backend) {
    let mut s = seeded(b);
    // Work of lower account ids that falls due later, and the account w1 claims and loses.
    let mut later = task(0, TaskStatus::Pending);
    later.due_at = Some(NOW + 10);
    let newer: Vec<TaskId> =
        (2..6).flat_map(|i| account_with(&mut *s, &format!("P{i}"), std::slice::from_ref(&later)).1).collect();
    let (_, first) = account_with(&mut *s, "P1", &[task(0, TaskStatus::Pending)]);
    s.worker_register(&worker("w1", NOW)).unwrap();
    let lost = claim(&mut *s, "w1", NOW, 1);
    assert_eq!(claimed_tasks(&lost), first);
    s.worker_register(&worker("w2", NOW + 31)).unwrap();
    let mut params = TaskClaimParams { worker: "w2", now: NOW + 31, lease: LEASE, limit: 1 };
    let rescued = s.task_claim(&params).unwrap();
    assert_eq!((claimed_tasks(&rescued), rescued[0].rescued_from.as_deref()), (first.clone(), Some("w1")));
    params.limit = 10;
    assert_eq!(claimed_tasks(&s.task_claim(&params).unwrap()), newer);
}

fn a_claim_looks_past_a_backlog_of_claimed_accounts(b: &dyn Backend) {
    let mut s = seeded(b);
    let tasks: Vec<TaskId> =
        (0..100).flat_map(|i| account_with(&mut *s, &format!("P{i}"), &[task(0, TaskStatus::Pending)]).1).collect();
    s.worker_register(&worker("w1", NOW)).unwrap();
    // The first 70 accounts are claimed: more than a page of candidates for a claim of 5.
    assert_eq!(claim(&mut *s, "w1", NOW, 70).len(), 70);
    let next = claim(&mut *s, "w1", NOW + 1, 5);
    assert_eq!(claimed_tasks(&next), tasks[70..75]);
    assert_eq!(claim(&mut *s, "w1", NOW + 2, 100).len(), 25);
    assert!(claim(&mut *s, "w1", NOW + 3, 100).is_empty());
}

fn retries_falling_due_wake_idle_workers(b: &dyn Backend) {
    let mut s = seeded(b);
    let mut retry = task(0, TaskStatus::Pending);
    retry.due_at = Some(NOW + 600);
    account_with(&mut *s, "P1", &[retry]);
    assert_eq!(s.task_next_wake(NOW).unwrap(), Some(NOW + 600));
    assert_eq!(s.task_next_wake(NOW + 600).unwrap(), None);
    assert_eq!(s.task_counts(NOW).unwrap(), [("retry_later".to_string(), 1)]);
    assert_eq!(s.task_counts(NOW + 600).unwrap(), [("runnable".to_string(), 1)]);
}

fn call_slots_are_shared_by_every_connection(b: &dyn Backend) {
    let mut one = b.open(None, ticking());
    let mut two = b.open(None, ticking());
    let a = one.target_slot_acquire("dbum", 2).unwrap();
    let b2 = two.target_slot_acquire("dbum", 2).unwrap();
    assert_eq!((a, b2), (Some(0), Some(1)));
    assert_eq!(two.target_slot_acquire("dbum", 2).unwrap(), None, "both slots are taken");
    assert_eq!(two.target_slot_acquire("other", 2).unwrap(), Some(0), "another target has its own");
    two.target_slot_release("other", 0).unwrap();
    one.target_slot_release("dbum", 0).unwrap();
    assert_eq!(two.target_slot_acquire("dbum", 2).unwrap(), Some(0));
    two.target_slot_release("dbum", 0).unwrap();
    two.target_slot_release("dbum", 1).unwrap();
    if one.sqlite_file().is_none() {
        // PostgreSQL: a connection that ends frees its slots.
        let mut three = b.open(None, ticking());
        assert_eq!(three.target_slot_acquire("dbum", 1).unwrap(), Some(0));
        drop(three);
        let mut freed = None;
        for _ in 0..100 {
            freed = one.target_slot_acquire("dbum", 1).unwrap();
            if freed.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(freed, Some(0));
    }
}

/// An account of a new user `login` whose form holds the secret `password`.
fn sealed_account(s: &mut dyn StateStore, login: &str, password: &str) -> AccountId {
    s.insert_user(&user(login)).unwrap();
    let form: FormData = [
        ("username".to_string(), Value::Text(login.into())),
        ("password".to_string(), Value::Secret(Secret::new(password))),
    ]
    .into();
    s.create_account("P", login, "h", ObjectStatus::Provisioning, &form, "t", &[]).unwrap().0
}

fn password_of(s: &dyn StateStore, id: AccountId) -> Option<String> {
    match s.account(id).unwrap().unwrap().form.get("password") {
        Some(Value::Secret(x)) => Some(x.expose().to_string()),
        _ => None,
    }
}

fn a_rotated_store_opens_with_the_new_key_only(b: &dyn Backend) {
    let (old, new) = (SecretKey::from_bytes([3; 32]), SecretKey::from_bytes([4; 32]));
    let mut s = b.open(Some(old.clone()), ticking());
    s.save_bundle(&bundle("h")).unwrap();
    let ids = [sealed_account(&mut *s, "A", "pw-a-1"), sealed_account(&mut *s, "B", "pw-b-2")];
    let before = b.dump();
    let done = s.key_rotate(&new).unwrap();
    assert_eq!(done, KeyRotation { accounts: 2, secrets: 2 });
    assert_eq!(password_of(&*s, ids[0]).as_deref(), Some("pw-a-1"), "the rotating store goes on with the new key");
    drop(s);
    assert_ne!(before, b.dump(), "the sealed values changed");
    assert!(!b.dump().contains("pw-a-1"));
    // The old key is refused at open, with the reason; the new one opens every secret.
    let refused = b.try_open(Some(old), ticking()).err().unwrap();
    assert!(matches!(refused, StoreError::WrongKey { .. }), "{refused:?}");
    assert!(refused.to_string().contains("key rotate"), "{refused}");
    let s = b.open(Some(new), ticking());
    assert_eq!(password_of(&*s, ids[1]).as_deref(), Some("pw-b-2"));
    // Without a key the store still opens (and keeps no secret).
    drop(b.open(None, ticking()));
}

fn a_rotation_that_cannot_open_every_secret_changes_nothing(b: &dyn Backend) {
    let (old, other, new) =
        (SecretKey::from_bytes([3; 32]), SecretKey::from_bytes([5; 32]), SecretKey::from_bytes([4; 32]));
    let mut s = b.open(Some(old.clone()), ticking());
    s.save_bundle(&bundle("h")).unwrap();
    let a = sealed_account(&mut *s, "A", "pw-a-1");
    drop(s);
    // B's secret was sealed under another key (written by a process with the wrong key
    // before the store had a key check): its row is forged from a second store.
    let sealed = other.seal(&Secret::new("pw-b-2"), "account/999/password").unwrap();
    b.execute("INSERT INTO users(login, attributes, status, locked, created_at, updated_at) VALUES ('B', '{}', 'Active', false, 1, 1)").unwrap();
    b.execute(&format!(
        "INSERT INTO accounts(id, process, user_login, bundle_hash, status, form, children, created_at, updated_at)
         VALUES (999, 'P', 'B', 'h', 'Provisioning', '{{\"password\":{{\"sealed\":\"{sealed}\"}}}}', '{{}}', 1, 1)"
    ))
    .unwrap();
    let before = b.dump();
    let mut s = b.open(Some(old.clone()), ticking());
    let refused = s.key_rotate(&new).unwrap_err();
    assert!(matches!(&refused, StoreError::WrongKey { detail } if detail.contains("#999")), "{refused:?}");
    drop(s);
    assert_eq!(before, b.dump(), "nothing was re-sealed");
    assert_eq!(password_of(&*b.open(Some(old), ticking()), a).as_deref(), Some("pw-a-1"));
}

fn a_store_sealed_before_its_key_check_refuses_another_key(b: &dyn Backend) {
    let (old, other) = (SecretKey::from_bytes([3; 32]), SecretKey::from_bytes([5; 32]));
    let mut s = b.open(Some(old.clone()), ticking());
    s.save_bundle(&bundle("h")).unwrap();
    sealed_account(&mut *s, "A", "pw-a-1");
    drop(s);
    // An older store: sealed secrets, no key check yet.
    b.execute("DELETE FROM store_meta").unwrap();
    let refused = b.try_open(Some(other), ticking()).err().unwrap();
    assert!(matches!(refused, StoreError::WrongKey { .. }), "{refused:?}");
    // The right key opens it and records the check.
    drop(b.open(Some(old), ticking()));
    assert!(b.dump().contains("key_check"));
}

/// Each case as one test per store.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $case() { super::$case(&super::Sqlite::new()) } )*
        }
        mod postgres {
            $( #[test] fn $case() { if let Some(b) = super::Postgres::new() { super::$case(&b) } } )*
        }
    };
}

conformance!(
    migrations_apply_once,
    fresh_store_opened_by_eight_at_once,
    bundles_by_hash,
    users_insert_update_read,
    accounts_are_created_with_their_tasks_or_not_at_all,
    steps_of_several_accounts_commit_together,
    the_audit_trail_is_append_only,
    secrets_are_sealed_at_rest_or_not_kept,
    notifications_wait_in_the_outbox,
    tasks_are_found_by_status,
    only_a_sqlite_store_shares_its_transactions,
    rendering_moves_outbox_rows_out_of_the_queue,
    users_have_stable_keys,
    the_database_answers_resolver_queries,
    recon_events_are_read_by_run,
    claims_take_only_runnable_tasks,
    an_account_has_one_claimed_task_at_a_time,
    expired_leases_are_rescued_and_stale_commits_fenced,
    claims_are_released_by_epoch,
    stopping_releases_claims_whose_call_has_not_started,
    a_person_finishing_a_claimed_task_ends_the_claim,
    concurrent_claimers_never_share_a_task,
    manual_tasks_wait_for_a_person_and_are_never_claimed,
    a_rescue_names_the_holder_of_an_account_whose_first_task_is_done,
    retries_falling_due_wake_idle_workers,
    rescues_are_claimed_before_new_work,
    a_claim_looks_past_a_backlog_of_claimed_accounts,
    call_slots_are_shared_by_every_connection,
    a_rotated_store_opens_with_the_new_key_only,
    a_rotation_that_cannot_open_every_secret_changes_nothing,
    a_store_sealed_before_its_key_check_refuses_another_key,
);

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(with_database("postgres://u@h:5/a", "b"), "postgres://u@h:5/b");
    assert_eq!(with_database("postgres://u@h/a?x=1", "b"), "postgres://u@h/b?x=1");
    assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
}
