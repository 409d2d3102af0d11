//! Engine tests on hand-built bundles: a sqlite target in a temp dir, a manual clock.

use provflow_ir::*;
use std::collections::BTreeMap;

use crate::clock::ManualClock;
use crate::engine::{has_final_rejection, Engine, FormInput, Targets};
use crate::secret::SecretKey;
use crate::store::{
    Account, AccountId, AuditEntry, Change, NewAccount, OutboxEntry, SqliteStore, StateStore, Step, StoreError, TaskId,
    TaskInstance, UserRecord,
};
use crate::value::Secret;

fn param(name: &str, ty: ValueType) -> QueryParam {
    QueryParam { name: name.into(), ty, mode: ParamMode::In, quoting: Quoting::Bind }
}

fn call_query(name: &str, procedure: &str, params: Vec<QueryParam>, idempotent: bool) -> Query {
    let mut segments = vec![Segment::Text(format!("call {procedure}("))];
    for i in 0..params.len() {
        if i > 0 {
            segments.push(Segment::Text(", ".into()));
        }
        segments.push(Segment::Bind(i));
    }
    segments.push(Segment::Text(")".into()));
    Query {
        name: name.into(),
        source: String::new(),
        segments,
        call: Some(Call::positional(procedure, (0..params.len()).map(Some).collect())),
        params,
        response_from: None,
        errors: [("23505".to_string(), "DUPLICATE".to_string())].into(),
        columns: vec![],
        idempotent,
        location: Location::default(),
    }
}

fn task(name: &str) -> Task {
    Task {
        name: name.into(),
        description: None,
        duration_minutes: None,
        conditional: true,
        condition: None,
        required_for_completion: false,
        effect: Effect::None,
        disable_manual_insert: false,
        allow_cancellation_while_pending: false,
        allow_multiple_instances: false,
        retry: None,
        depends_on: vec![],
        responses: vec![],
        undo: vec![],
        recovery: vec![],
        complete_on_recovery: false,
        status_map: BTreeMap::new(),
        notify: BTreeMap::new(),
        action: TaskAction::Manual { assignee: None },
        updates_field: None,
        location: Location::default(),
    }
}

fn adapter(query: usize, map: &[(usize, Source)]) -> TaskAction {
    TaskAction::Adapter(Adapter {
        query,
        map: map.iter().map(|(p, s)| Mapping { param: *p, source: s.clone() }).collect(),
    })
}

fn field(name: &str, ty: ValueType, from_user: Option<&str>) -> FormField {
    FormField {
        name: name.into(),
        ty,
        label: name.into(),
        required: true,
        from_user: from_user.map(Into::into),
        default: None,
    }
}

/// Tasks: 0 Create User, 1 Delete User, 2 Disable User, 3 Enable User, 4 Approve (manual,
/// condition), 5 Password Updated.
fn bundle() -> Bundle {
    let name = || Source::Form("username".into());
    let mut create = task("Create User");
    create.conditional = false;
    create.required_for_completion = true;
    create.action = adapter(0, &[(0, name()), (1, Source::Form("password".into()))]);
    create.responses =
        vec![Response { code: "DUPLICATE".into(), description: None, status: TaskStatus::Rejected, generate: vec![] }];
    create.retry = Some(Retry { count: 2, period_minutes: 30 });
    create.undo = vec![1];
    create.status_map =
        [(TaskStatus::Completed, ObjectStatus::Provisioned), (TaskStatus::Cancelled, ObjectStatus::Revoked)].into();
    create.notify = [(TaskStatus::Completed, 0)].into();
    let mut delete = task("Delete User");
    delete.action = adapter(1, &[(0, name())]);
    delete.status_map = [(TaskStatus::Completed, ObjectStatus::Revoked)].into();
    let mut disable = task("Disable User");
    disable.effect = Effect::Disables;
    disable.action = adapter(2, &[(0, name()), (1, Source::Literal("0".into()))]);
    disable.status_map = [(TaskStatus::Completed, ObjectStatus::Disabled)].into();
    disable.allow_multiple_instances = true;
    let mut enable = task("Enable User");
    enable.effect = Effect::Enables;
    enable.action = adapter(2, &[(0, name()), (1, Source::Literal("1".into()))]);
    enable.status_map = [(TaskStatus::Completed, ObjectStatus::Enabled)].into();
    enable.allow_multiple_instances = true;
    let mut approve = task("Approve");
    approve.condition = Some("user.cost_center == 'CC-9'".into());
    approve.depends_on = vec![0];
    let mut pw = task("Password Updated");
    pw.action = adapter(3, &[(0, name()), (1, Source::Form("password".into()))]);
    pw.updates_field = Some("password".into());
    pw.depends_on = vec![0];
    let procedures = vec![
        Procedure {
            name: "add_user".into(),
            params: vec!["usr".into(), "pwd".into()],
            statements: vec![
                "INSERT INTO audit_log(message) VALUES ('Added User ' || :usr)".into(),
                "INSERT INTO db_users(username, password) VALUES (:usr, :pwd)".into(),
            ],
        },
        Procedure {
            name: "drop_user".into(),
            params: vec!["usr".into()],
            statements: vec!["DELETE FROM db_users WHERE username = :usr".into()],
        },
        Procedure {
            name: "set_enabled".into(),
            params: vec!["usr".into(), "on".into()],
            statements: vec!["UPDATE db_users SET enabled = :on WHERE username = :usr".into()],
        },
        Procedure {
            name: "set_password".into(),
            params: vec!["usr".into(), "pwd".into()],
            statements: vec!["UPDATE db_users SET password = :pwd WHERE username = :usr".into()],
        },
    ];
    let s = ValueType::String;
    let queries = vec![
        call_query("CREATE", "add_user", vec![param("n", s), param("p", ValueType::GuardedString)], false),
        call_query("DROP", "drop_user", vec![param("n", s)], true),
        call_query("SET_ENABLED", "set_enabled", vec![param("n", s), param("on", ValueType::Integer)], true),
        call_query("SET_PASSWORD", "set_password", vec![param("n", s), param("p", ValueType::GuardedString)], true),
    ];
    Bundle {
        ir_version: IR_VERSION,
        hash: "test-bundle".into(),
        targets: vec![Target {
            name: "db".into(),
            dialect: Dialect::Sqlite,
            query_set: 0,
            url_env: None,
            properties: BTreeMap::new(),
            max_concurrent_calls: None,
            location: Location::default(),
        }],
        query_sets: vec![QuerySet {
            name: "db".into(),
            dialect: Dialect::Sqlite,
            install: vec![InstallScript {
                path: "db.sql".into(),
                sql: "CREATE TABLE IF NOT EXISTS db_users(username TEXT PRIMARY KEY, password TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1);
                      CREATE TABLE IF NOT EXISTS audit_log(id INTEGER PRIMARY KEY, message TEXT NOT NULL);"
                    .into(),
            }],
            queries,
            procedures,
            location: Location::default(),
        }],
        processes: vec![Process {
            name: "DB Account".into(),
            process_type: ProcessType::Provisioning,
            object: "DB Account".into(),
            default: true,
            target: 0,
            form: Form {
                table: None,
                auto_save: true,
                fields: vec![field("username", ValueType::String, Some("usr_login")), field("password", ValueType::GuardedString, None)],
                child_tables: vec![],
            },
            tasks: vec![create, delete, disable, enable, approve, pw],
            triggers: vec![],
            recon: None,
            location: Location::default(),
        }],
        events: vec![],
        templates: vec![NotificationTemplate {
            name: "Account Created".into(),
            event: 0,
            default_locale: "en-US".into(),
            locales: vec![],
            from: None,
            location: Location::default(),
        }],
        user_schema: UserSchema { name: None, attributes: vec![] },
        scenarios: vec![],
    }
}

struct World {
    dir: tempfile::TempDir,
    clock: ManualClock,
    key: Option<SecretKey>,
}

impl World {
    fn new(key: Option<SecretKey>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = World { dir, clock: ManualClock::new(1_800_000_000), key };
        let mut targets = w.targets();
        let b = bundle();
        let t = crate::engine::TargetProvider::open(&mut targets, &b, 0).unwrap();
        t.install(&b.query_sets[0].install[0].sql).unwrap();
        w
    }
    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.dir.path().join(".provflow/state.db"), self.key.clone(), Box::new(|| 1_800_000_000))
            .unwrap()
    }
    fn targets(&self) -> Targets {
        Targets::new(BTreeMap::new(), self.dir.path().to_path_buf())
    }
    fn target_count(&self, sql: &str) -> i64 {
        let c = rusqlite::Connection::open(self.dir.path().join(".provflow/targets/db.db")).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

fn form(pw: &str) -> BTreeMap<String, FormInput> {
    [("password".to_string(), FormInput::Secret(Secret::new(pw)))].into()
}

fn statuses(store: &dyn StateStore, account: i64) -> Vec<(String, &'static str, u32)> {
    store.tasks_of(account).unwrap().into_iter().map(|t| (t.task_name, t.status.as_str(), t.attempt)).collect()
}

#[test]
fn provisions_disables_enables_and_deletes() {
    let w = World::new(Some(SecretKey::from_bytes([9; 32])));
    let (mut store, mut targets) = (w.store(), w.targets());
    let b = bundle();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.create_user(&b, "JDOE", &[("usr_first_name".to_string(), "John".to_string())].into()).unwrap();
    let id = e.provision(&b, "DB Account", "JDOE", &form("pa'ss")).unwrap();
    assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Provisioned);
    assert_eq!(w.target_count("select count(*) from db_users where username = 'JDOE' and password = 'pa''ss'"), 1);
    let outbox = e.store.outbox().unwrap();
    assert_eq!(
        (outbox.len(), outbox[0].template.as_str(), outbox[0].recipient.as_str()),
        (1, "Account Created", "JDOE")
    );

    e.set_user_status("JDOE", "Disabled").unwrap();
    assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Disabled);
    assert_eq!(w.target_count("select enabled from db_users"), 0);
    e.set_user_status("JDOE", "Active").unwrap();
    assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Enabled);
    e.set_user_status("JDOE", "Deleted").unwrap();
    assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Revoked);
    assert_eq!(w.target_count("select count(*) from db_users"), 0);
    let names: Vec<String> = statuses(&*e.store, id).into_iter().map(|t| format!("{} {}", t.0, t.1)).collect();
    assert_eq!(
        names,
        ["Create User Completed", "Disable User Completed", "Enable User Completed", "Delete User Completed"]
    );
    drop(e);
    // The secret is sealed at rest: the state file never holds it in clear.
    let bytes = std::fs::read(w.dir.path().join(".provflow/state.db")).unwrap();
    let wal = std::fs::read(w.dir.path().join(".provflow/state.db-wal")).unwrap_or_default();
    for b in [bytes, wal] {
        assert!(!b.windows(5).any(|x| x == b"pa'ss"));
    }
}

#[test]
fn duplicate_is_rejected_then_retried_until_no_retry_left() {
    let w = World::new(None);
    let (mut store, mut targets) = (w.store(), w.targets());
    let b = bundle();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    for login in ["A", "B"] {
        e.create_user(&b, login, &BTreeMap::new()).unwrap();
    }
    e.provision(&b, "DB Account", "A", &form("x")).unwrap();
    let mut f = form("y");
    f.insert("username".into(), FormInput::Plain("A".into()));
    let id = e.provision(&b, "DB Account", "B", &f).unwrap();
    let tasks = e.store.tasks_of(id).unwrap();
    assert_eq!(
        tasks.iter().map(|t| (t.status, t.attempt)).collect::<Vec<_>>(),
        [(TaskStatus::Rejected, 1), (TaskStatus::Pending, 2)]
    );
    assert_eq!(tasks[0].response.as_deref(), Some("DUPLICATE"));
    assert!(!has_final_rejection(&tasks));
    assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Provisioning);
    // Not due yet: resume changes nothing.
    e.resume().unwrap();
    assert_eq!(e.store.tasks_of(id).unwrap().len(), 2);
    w.clock.advance_minutes(30);
    e.resume().unwrap();
    let tasks = e.store.tasks_of(id).unwrap();
    assert_eq!(
        tasks.iter().map(|t| (t.status, t.attempt)).collect::<Vec<_>>(),
        [(TaskStatus::Rejected, 1), (TaskStatus::Rejected, 2)]
    );
    assert!(has_final_rejection(&tasks));
    // The audit trail has every transition of the retry attempt.
    let audit = e.store.audit(tasks[1].id).unwrap();
    assert_eq!(audit.iter().map(|a| a.to).collect::<Vec<_>>(), [TaskStatus::Pending, TaskStatus::Rejected]);
}

#[test]
fn interrupted_non_idempotent_call_is_handed_to_a_person() {
    let w = World::new(None);
    let b = bundle();
    let id;
    {
        let (mut store, mut targets) = (w.store(), w.targets());
        let mut e = Engine::new(&mut store, &mut targets, &w.clock);
        e.create_user(&b, "A", &BTreeMap::new()).unwrap();
        e.create_user(&b, "B", &BTreeMap::new()).unwrap();
        e.provision(&b, "DB Account", "A", &form("x")).unwrap();
        let mut f = form("y");
        f.insert("username".into(), FormInput::Plain("A".into()));
        id = e.provision(&b, "DB Account", "B", &f).unwrap();
        // Simulate a crash in the middle of the retry's call.
        let retry = e.store.tasks_of(id).unwrap()[1].id;
        e.store.set_calling(retry, true).unwrap();
    }
    let (mut store, mut targets) = (w.store(), w.targets());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    w.clock.advance_minutes(60);
    e.resume().unwrap();
    let t = &e.store.tasks_of(id).unwrap()[1];
    assert_eq!((t.status, t.held, t.calling), (TaskStatus::Pending, true, false));
    assert!(t.note.as_deref().unwrap_or("").contains("not idempotent"), "{:?}", t.note);
    // Without a key the secret was not kept either; a person completes it by hand.
    let account = e.decide(t.id, true, None).unwrap();
    assert_eq!(e.store.task(t.id).unwrap().unwrap().status, TaskStatus::ManuallyCompleted);
    assert_eq!(e.store.account(account).unwrap().unwrap().status, ObjectStatus::Provisioned);
}

#[test]
fn secret_without_key_is_not_kept_across_runs() {
    let w = World::new(None);
    let b = bundle();
    let (mut store, mut targets) = (w.store(), w.targets());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.create_user(&b, "A", &BTreeMap::new()).unwrap();
    let id = e.provision(&b, "DB Account", "A", &form("x")).unwrap();
    drop(e);
    let (mut store, mut targets) = (w.store(), w.targets());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    assert!(!e.store.account(id).unwrap().unwrap().form.contains_key("password"));
    // A new run with no secret given: Password Updated needs it and is held for a person.
    e.set_form("DB Account", "A", &[("username".to_string(), FormInput::Plain("A".into()))].into()).unwrap();
    let mut step_form = BTreeMap::new();
    step_form.insert("password".to_string(), FormInput::Secret(Secret::new("new")));
    e.set_form("DB Account", "A", &step_form).unwrap();
    assert_eq!(w.target_count("select count(*) from db_users where password = 'new'"), 1);
}

#[test]
fn condition_inserts_a_manual_task_that_waits_for_a_person() {
    let w = World::new(None);
    let b = bundle();
    let (mut store, mut targets) = (w.store(), w.targets());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.create_user(&b, "A", &[("cost_center".to_string(), "CC-9".to_string())].into()).unwrap();
    e.create_user(&b, "C", &[("cost_center".to_string(), "CC-1".to_string())].into()).unwrap();
    let a = e.provision(&b, "DB Account", "A", &form("x")).unwrap();
    let c = e.provision(&b, "DB Account", "C", &form("x")).unwrap();
    let approve = e.store.tasks_of(a).unwrap().into_iter().find(|t| t.task_name == "Approve").unwrap();
    assert_eq!((approve.status, approve.held), (TaskStatus::Pending, true));
    assert!(e.store.tasks_of(c).unwrap().iter().all(|t| t.task_name != "Approve"));
    let refused = e.decide(approve.id, false, Some("NOPE")).unwrap_err().to_string();
    assert!(refused.contains("declares no response `NOPE`"), "{refused}");
    assert!(e.decide(approve.id, false, None).is_ok());
    assert_eq!(e.store.task(approve.id).unwrap().unwrap().status, TaskStatus::Rejected);
    assert!(matches!(e.decide(approve.id, true, None), Err(crate::engine::EngineError::NotActionable { .. })));
}

#[test]
fn plan_masks_secrets_and_writes_nothing() {
    let w = World::new(None);
    let b = bundle();
    let (mut store, mut targets) = (w.store(), w.targets());
    let e = Engine::new(&mut store, &mut targets, &w.clock);
    let user = crate::store::UserRecord {
        login: "JDOE".into(),
        attributes: BTreeMap::new(),
        status: "Active".into(),
        locked: false,
    };
    let plan = e.plan(&b, "DB Account", &user, &form("hunter2")).unwrap();
    assert_eq!(plan.len(), 1);
    let sql = plan[0].sql.clone().unwrap();
    assert!(sql.contains("********") && !sql.contains("hunter2"), "{sql}");
    assert!(e.store.accounts().unwrap().is_empty());
    let bad = e.plan(&b, "DB Acount", &user, &form("x")).unwrap_err().to_string();
    assert!(bad.contains("did you mean `DB Account`"), "{bad}");
    let plain_pw: BTreeMap<String, FormInput> = [("password".to_string(), FormInput::Plain("hunter2".into()))].into();
    let err = e.plan(&b, "DB Account", &user, &plain_pw).unwrap_err().to_string();
    assert!(err.contains("--secret password=env:VAR") && !err.contains("hunter2"), "{err}");
}

#[test]
fn user_checks_report_every_problem() {
    let mut schema = UserSchema { name: None, attributes: vec![] };
    for (name, ty, required) in [
        ("usr_start_date", ValueType::Date, false),
        ("usr_end_date", ValueType::Date, false),
        ("cost_center", ValueType::String, true),
        ("level", ValueType::Integer, false),
    ] {
        schema.attributes.push(UserAttribute {
            name: name.into(),
            ty,
            label: name.into(),
            variable: name.into(),
            required,
            searchable: false,
            multi_valued: false,
            max_size: Some(10),
            encrypted: false,
            builtin: false,
            allowed_values: vec![],
        });
    }
    let attrs: BTreeMap<String, String> =
        [("usr_start_date", "2025-05-01"), ("usr_end_date", "2025-01-01"), ("level", "high"), ("cost_centre", "x")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    let err = crate::engine::check_user(&schema, &attrs, true).unwrap_err().to_string();
    for want in ["did you mean `cost_center`", "`level`", "must come before", "`cost_center` (cost_center) is required"]
    {
        assert!(err.contains(want), "{want} in {err}");
    }
}

/// A store that counts the transactions the engine asks for, delegating everything.
struct Counting<'s> {
    inner: &'s mut SqliteStore,
    writes: Vec<&'static str>,
}

impl crate::store::Queue for Counting<'_> {
    fn worker_register(&mut self, worker: &crate::store::WorkerRecord) -> Result<(), StoreError> {
        self.writes.push("worker_register");
        self.inner.worker_register(worker)
    }
    fn worker_heartbeat(
        &mut self,
        id: &str,
        now: crate::clock::Instant,
        lease: std::time::Duration,
        held: &[crate::store::TaskId],
    ) -> Result<Vec<crate::store::HeldClaim>, StoreError> {
        self.writes.push("worker_heartbeat");
        self.inner.worker_heartbeat(id, now, lease, held)
    }
    fn worker_stop(&mut self, id: &str, now: crate::clock::Instant) -> Result<usize, StoreError> {
        self.writes.push("worker_stop");
        self.inner.worker_stop(id, now)
    }
    fn workers(&self) -> Result<Vec<crate::store::WorkerStatus>, StoreError> {
        self.inner.workers()
    }
    fn task_claim(
        &mut self,
        params: &crate::store::TaskClaimParams<'_>,
    ) -> Result<Vec<crate::store::Claim>, StoreError> {
        self.writes.push("task_claim");
        self.inner.task_claim(params)
    }
    fn task_claim_release(&mut self, held: &[(TaskId, crate::store::Epoch)]) -> Result<usize, StoreError> {
        self.writes.push("task_claim_release");
        self.inner.task_claim_release(held)
    }
    fn task_next_wake(&self, now: crate::clock::Instant) -> Result<Option<crate::clock::Instant>, StoreError> {
        self.inner.task_next_wake(now)
    }
    fn task_counts(&self, now: crate::clock::Instant) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner.task_counts(now)
    }
    fn task_mark_manual(&mut self, tasks: &[TaskId]) -> Result<(), StoreError> {
        self.writes.push("task_mark_manual");
        self.inner.task_mark_manual(tasks)
    }
    fn target_slot_acquire(&mut self, target: &str, cap: u32) -> Result<Option<u32>, StoreError> {
        self.inner.target_slot_acquire(target, cap)
    }
    fn target_slot_release(&mut self, target: &str, slot: u32) -> Result<(), StoreError> {
        self.inner.target_slot_release(target, slot)
    }
    fn commit_steps_fenced(
        &mut self,
        steps: &[Step],
        fence: &[crate::store::Fence],
    ) -> Result<Vec<Vec<TaskId>>, StoreError> {
        self.writes.push("commit");
        self.inner.commit_steps_fenced(steps, fence)
    }
}

impl StateStore for Counting<'_> {
    fn has_key(&self) -> bool {
        self.inner.has_key()
    }
    fn key_rotate(&mut self, new: &SecretKey) -> Result<crate::store::KeyRotation, StoreError> {
        self.writes.push("key_rotate");
        self.inner.key_rotate(new)
    }
    fn save_bundle(&mut self, bundle: &Bundle) -> Result<(), StoreError> {
        self.writes.push("save_bundle");
        self.inner.save_bundle(bundle)
    }
    fn bundle(&self, hash: &str) -> Result<Option<Bundle>, StoreError> {
        self.inner.bundle(hash)
    }
    fn latest_bundle(&self) -> Result<Option<Bundle>, StoreError> {
        self.inner.latest_bundle()
    }
    fn insert_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.writes.push("insert_user");
        self.inner.insert_user(user)
    }
    fn update_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.writes.push("update_user");
        self.inner.update_user(user)
    }
    fn user(&self, login: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user(login)
    }
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.users()
    }
    fn create_accounts(
        &mut self,
        actor: &str,
        accounts: &[NewAccount<'_>],
    ) -> Result<Vec<(AccountId, Vec<TaskId>)>, StoreError> {
        self.writes.push("create_accounts");
        self.inner.create_accounts(actor, accounts)
    }
    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.inner.account(id)
    }
    fn find_account(&self, process: &str, user: &str) -> Result<Option<Account>, StoreError> {
        self.inner.find_account(process, user)
    }
    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts()
    }
    fn save_form(&mut self, account: &Account) -> Result<(), StoreError> {
        self.writes.push("save_form");
        self.inner.save_form(account)
    }
    fn task(&self, id: TaskId) -> Result<Option<TaskInstance>, StoreError> {
        self.inner.task(id)
    }
    fn tasks_of(&self, account: AccountId) -> Result<Vec<TaskInstance>, StoreError> {
        self.inner.tasks_of(account)
    }
    fn tasks(&self, status: Option<TaskStatus>) -> Result<Vec<TaskInstance>, StoreError> {
        self.inner.tasks(status)
    }
    fn set_calling(&mut self, task: TaskId, calling: bool) -> Result<(), StoreError> {
        self.writes.push("set_calling");
        self.inner.set_calling(task, calling)
    }
    fn commit_steps(&mut self, steps: &[Step]) -> Result<Vec<Vec<TaskId>>, StoreError> {
        self.writes.push("commit");
        self.inner.commit_steps(steps)
    }
    fn commit_change(&mut self, change: &Change<'_>) -> Result<Vec<Vec<TaskId>>, StoreError> {
        self.writes.push("commit_change");
        self.inner.commit_change(change)
    }
    fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.inner.sqlite_file()
    }
    fn audit(&self, task: TaskId) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(task)
    }
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox()
    }
    fn queued_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.queued_outbox()
    }
    fn record_render(
        &mut self,
        id: i64,
        render: &crate::store::OutboxRender,
        at: crate::clock::Instant,
    ) -> Result<(), StoreError> {
        self.writes.push("record_render");
        self.inner.record_render(id, render, at)
    }
    fn outbox_messages(&self) -> Result<Vec<crate::store::OutboxMessage>, StoreError> {
        self.inner.outbox_messages()
    }
    fn usr_key(&self, login: &str) -> Result<Option<i64>, StoreError> {
        self.inner.usr_key(login)
    }
    fn database(&self) -> Result<crate::store::Database<'_>, StoreError> {
        self.inner.database()
    }
    fn recon_events(&self, run: Option<i64>) -> Result<(Option<i64>, Vec<crate::store::ReconEvent>), StoreError> {
        self.inner.recon_events(run)
    }
}

#[test]
fn each_call_costs_one_commit_and_a_user_change_commits_with_its_tasks() {
    let w = World::new(Some(SecretKey::from_bytes([9; 32])));
    let (mut inner, mut targets) = (w.store(), w.targets());
    let mut b = bundle();
    // Password Updated (automatic, idempotent) now starts with the account, after Create User.
    b.processes[0].tasks[5].conditional = false;
    let mut store = Counting { inner: &mut inner, writes: vec![] };
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.create_user(&b, "JDOE", &BTreeMap::new()).unwrap();
    let id = e.provision(&b, "DB Account", "JDOE", &form("pw")).unwrap();
    drop(e);
    // The account with its first task (marked as calling), then one commit per call, each
    // carrying what follows from it and the next call's mark.
    assert_eq!(store.writes, ["save_bundle", "insert_user", "create_accounts", "commit", "commit"]);
    let tasks = store.tasks_of(id).unwrap();
    assert_eq!(
        tasks.iter().map(|t| (t.task_name.as_str(), t.status, t.calling)).collect::<Vec<_>>(),
        [("Create User", TaskStatus::Completed, false), ("Password Updated", TaskStatus::Completed, false)]
    );
    assert_eq!(store.account(id).unwrap().unwrap().status, ObjectStatus::Provisioned);
    // The audit still shows every status each task went through, Waiting first.
    for t in &tasks {
        let chain: Vec<(Option<TaskStatus>, TaskStatus)> =
            store.audit(t.id).unwrap().into_iter().map(|a| (a.from, a.to)).collect();
        assert_eq!(
            chain,
            [
                (None, TaskStatus::Waiting),
                (Some(TaskStatus::Waiting), TaskStatus::Pending),
                (Some(TaskStatus::Pending), TaskStatus::Completed)
            ],
            "{}",
            t.task_name
        );
    }

    store.writes.clear();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.set_user_status("JDOE", "Disabled").unwrap();
    drop(e);
    // The user's new status and the Disable User task in one transaction; the call's mark;
    // the call's outcome.
    assert_eq!(store.writes, ["commit_change", "commit", "commit"]);
    assert_eq!(store.user("JDOE").unwrap().unwrap().status, "Disabled");
    assert_eq!(store.account(id).unwrap().unwrap().status, ObjectStatus::Disabled);
}

fn logins(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn many_accounts_run_side_by_side_one_commit_per_round() {
    let w = World::new(Some(SecretKey::from_bytes([9; 32])));
    let (mut inner, mut targets) = (w.store(), w.targets());
    let mut b = bundle();
    b.processes[0].tasks[5].conditional = false;
    let users = logins(&["A", "B", "C", "D", "E"]);
    let mut store = Counting { inner: &mut inner, writes: vec![] };
    let mut reported = Vec::new();
    let mut report = |n| reported.push(n);
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.batch = 2;
    for u in &users {
        e.create_user(&b, u, &BTreeMap::new()).unwrap();
    }
    e.progress = Some(&mut report);
    let ids = e.provision_many(&b, "DB Account", &users, &form("pw")).unwrap();
    drop(e);
    assert_eq!(reported, [2, 2, 1]);
    // Per batch: the accounts with their first calls marked; the first calls' outcomes with
    // the second calls' marks; the second calls' outcomes. Not one commit per call.
    let per_batch = ["create_accounts", "commit", "commit"];
    assert_eq!(store.writes[6..], per_batch.repeat(3)[..], "{:?}", store.writes);
    assert_eq!(ids.len(), 5);
    for (id, login) in ids.iter().zip(&users) {
        let a = store.account(*id).unwrap().unwrap();
        assert_eq!((a.user.as_str(), a.status), (login.as_str(), ObjectStatus::Provisioned));
        assert_eq!(
            statuses(&store, *id),
            [("Create User".to_string(), "Completed", 1), ("Password Updated".to_string(), "Completed", 1)]
        );
        for t in store.tasks_of(*id).unwrap() {
            assert!(!t.calling, "{t:?}");
            let chain: Vec<TaskStatus> = store.audit(t.id).unwrap().iter().map(|a| a.to).collect();
            assert_eq!(chain, [TaskStatus::Waiting, TaskStatus::Pending, TaskStatus::Completed], "{}", t.task_name);
        }
    }
    assert_eq!(w.target_count("select count(*) from db_users where password = 'pw'"), 5);
    assert_eq!(w.target_count("select count(*) from audit_log"), 5);
    assert_eq!(store.outbox().unwrap().len(), 5);
}

#[test]
fn many_accounts_are_all_checked_before_any_is_created() {
    let w = World::new(None);
    let (mut store, mut targets) = (w.store(), w.targets());
    let b = bundle();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    for u in ["ALICE", "BOB"] {
        e.create_user(&b, u, &BTreeMap::new()).unwrap();
    }
    let bob = e.provision(&b, "DB Account", "BOB", &form("x")).unwrap();
    let err =
        e.provision_many(&b, "DB Account", &logins(&["ALICE", "BOB", "ALICIA", "ALICE"]), &form("y")).unwrap_err();
    let crate::engine::EngineError::Invalid(lines) = &err else { panic!("{err:?}") };
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("BOB: `BOB` already has a `DB Account` account (#1"), "{lines:?}");
    assert!(lines[1].starts_with("ALICIA: unknown user `ALICIA`; did you mean `ALICE`?"), "{lines:?}");
    assert_eq!(lines[2], "ALICE: listed twice (again as entry 4)");
    assert_eq!(lines[3], "3 of 4 accounts cannot be provisioned; nothing was created");
    assert_eq!(e.store.accounts().unwrap().iter().map(|a| a.id).collect::<Vec<_>>(), [bob]);
    assert_eq!(w.target_count("select count(*) from db_users"), 1);
}

#[test]
fn a_target_down_during_many_leaves_every_account_pending_for_resume() {
    let w = World::new(None);
    let b = bundle();
    let users = logins(&["A", "B", "C", "D", "E"]);
    let mut store = w.store();
    {
        // A directory is no SQLite file: the target cannot be opened.
        let down = [("db".to_string(), format!("sqlite:{}", w.dir.path().display()))].into();
        let mut targets = Targets::new(down, w.dir.path().to_path_buf());
        let mut e = Engine::new(&mut store, &mut targets, &w.clock);
        e.batch = 2;
        for u in &users {
            e.create_user(&b, u, &BTreeMap::new()).unwrap();
        }
        let err = e.provision_many(&b, "DB Account", &users, &form("pw")).unwrap_err();
        assert!(matches!(err, crate::engine::EngineError::TargetUnavailable { .. }), "{err:?}");
    }
    // Every account is recorded, its first task Pending and not marked as calling: nothing
    // was sent, so nothing needs a person.
    let accounts = store.accounts().unwrap();
    assert_eq!(accounts.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(), ["A", "B", "C", "D", "E"]);
    for a in &accounts {
        let tasks = store.tasks_of(a.id).unwrap();
        assert_eq!(
            tasks.iter().map(|t| (t.status, t.calling, t.held)).collect::<Vec<_>>(),
            [(TaskStatus::Pending, false, false)],
            "{}",
            a.user
        );
    }
    assert_eq!(w.target_count("select count(*) from db_users"), 0);
    // The target is back; the secret was not kept (no key), so each Create User is handed
    // to a person, which `resume` does for all of them at once.
    let mut targets = w.targets();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    assert_eq!(e.resume().unwrap().len(), 5);
    for a in &accounts {
        let t = &e.store.tasks_of(a.id).unwrap()[0];
        assert!(t.held && t.note.as_deref().unwrap_or_default().contains("PROVFLOW_SECRET_KEY"), "{t:?}");
    }
}

#[test]
fn many_accounts_with_the_target_in_the_state_store_run_one_at_a_time() {
    let w = World::new(None);
    let b = bundle();
    let state = w.dir.path().join(".provflow/state.db");
    let mut store = w.store();
    let shared = [("db".to_string(), format!("sqlite:{}", state.display()))].into();
    let mut targets = Targets::new(shared, w.dir.path().to_path_buf());
    crate::engine::TargetProvider::open(&mut targets, &b, 0).unwrap().install(&b.query_sets[0].install[0].sql).unwrap();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    let users = logins(&["A", "B", "C"]);
    for u in &users {
        e.create_user(&b, u, &BTreeMap::new()).unwrap();
    }
    let ids = e.provision_many(&b, "DB Account", &users, &form("pw")).unwrap();
    for id in ids {
        assert_eq!(e.store.account(id).unwrap().unwrap().status, ObjectStatus::Provisioned);
    }
    drop(e);
    let c = rusqlite::Connection::open(&state).unwrap();
    let n: i64 = c.query_row("select count(*) from db_users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
}

#[test]
fn a_call_failing_mid_round_keeps_the_outcomes_already_made_and_no_stale_marks() {
    let w = World::new(Some(SecretKey::from_bytes([9; 32])));
    let b1 = bundle();
    // The same process under a second bundle, whose target `db2` is another file.
    let mut b2 = bundle();
    b2.hash = "test-bundle-2".into();
    b2.targets[0].name = "db2".into();
    let down = format!("sqlite:{}", w.dir.path().display());
    let mut store = w.store();
    {
        let all_down = [("db".to_string(), down.clone()), ("db2".to_string(), down.clone())].into();
        let mut targets = Targets::new(all_down, w.dir.path().to_path_buf());
        let mut e = Engine::new(&mut store, &mut targets, &w.clock);
        for u in ["A", "B", "C"] {
            e.create_user(&b1, u, &BTreeMap::new()).unwrap();
        }
        // Accounts #1 (A) and #3 (C) on `db`, #2 (B) on `db2`; nothing reachable yet.
        assert!(e.provision(&b1, "DB Account", "A", &form("pw")).is_err());
        assert!(e.provision(&b2, "DB Account", "B", &form("pw")).is_err());
        assert!(e.provision(&b1, "DB Account", "C", &form("pw")).is_err());
    }
    // `db` is back, `db2` is not. One resume round marks all three calls, calls A's (made),
    // then B's target fails: A's outcome must be committed, C's mark must come off.
    let mut targets = Targets::new([("db2".to_string(), down)].into(), w.dir.path().to_path_buf());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    let err = e.resume().unwrap_err();
    assert!(matches!(err, crate::engine::EngineError::TargetUnavailable { .. }), "{err:?}");
    drop(e);
    fn state(store: &SqliteStore, login: &str) -> (ObjectStatus, TaskStatus, bool, bool) {
        let a = store.find_account("DB Account", login).unwrap().unwrap();
        let t = store.tasks_of(a.id).unwrap().remove(0);
        (a.status, t.status, t.calling, t.held)
    }
    assert_eq!(state(&store, "A"), (ObjectStatus::Provisioned, TaskStatus::Completed, false, false));
    assert_eq!(state(&store, "B"), (ObjectStatus::Provisioning, TaskStatus::Pending, false, false));
    assert_eq!(state(&store, "C"), (ObjectStatus::Provisioning, TaskStatus::Pending, false, false));
    assert_eq!(w.target_count("select count(*) from db_users"), 1);
    // Nothing needs a person: with `db2` back, one more resume finishes B and C.
    let db2 = format!("sqlite:{}", w.dir.path().join("db2.db").display());
    let mut targets = Targets::new([("db2".to_string(), db2)].into(), w.dir.path().to_path_buf());
    let install = b2.query_sets[0].install[0].sql.clone();
    crate::engine::TargetProvider::open(&mut targets, &b2, 0).unwrap().install(&install).unwrap();
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.resume().unwrap();
    drop(e);
    for login in ["A", "B", "C"] {
        assert_eq!(state(&store, login), (ObjectStatus::Provisioned, TaskStatus::Completed, false, false), "{login}");
    }
}

/// The rules alone: a process, an account's tasks in memory and a moment — no store, no
/// target, no clock. What they decide is only added to a step and to the tasks in memory.
mod rules_alone {
    use super::*;
    use crate::engine::rules::{instance, new_task, next_call, Rules};
    use crate::store::ChildRow;

    const NOW: i64 = 1_800_000_000;

    fn account() -> Account {
        Account {
            id: 1,
            process: "DB Account".into(),
            user: "JDOE".into(),
            bundle_hash: "test-bundle".into(),
            status: ObjectStatus::Provisioning,
            form: BTreeMap::new(),
            children: BTreeMap::new(),
        }
    }

    fn at(p: &Process, id: TaskId, index: usize, status: TaskStatus, attempt: u32) -> TaskInstance {
        instance(1, id, new_task(p, index, status, attempt, None, ChildRow::new()))
    }

    #[test]
    fn a_rejection_with_retries_left_schedules_the_next_attempt_after_its_period() {
        let b = bundle();
        let p = &b.processes[0];
        let rules = Rules { bundle: &b, process: p, now: NOW, actor: "test" };
        let first = vec![at(p, 10, 0, TaskStatus::Rejected, 1)];
        let mut step = rules.step(&account());
        rules.on_status(&account(), &first, &first[0], TaskStatus::Rejected, &mut step);
        let retry = step.new_tasks.first().expect("a retry");
        assert_eq!((retry.task_index, retry.status, retry.attempt), (0, TaskStatus::Pending, 2));
        assert_eq!(retry.due_at, Some(NOW + 30 * 60), "due after `period_minutes`");

        // `count: 2` counts attempts: after the second rejection nothing is retried.
        let second = vec![at(p, 11, 0, TaskStatus::Rejected, 2)];
        let mut step = rules.step(&account());
        rules.on_status(&account(), &second, &second[0], TaskStatus::Rejected, &mut step);
        assert!(step.new_tasks.is_empty(), "{:?}", step.new_tasks);
    }

    #[test]
    fn completed_dependencies_make_a_waiting_task_pending_and_the_account_provisioned() {
        let b = bundle();
        let p = &b.processes[0];
        let rules = Rules { bundle: &b, process: p, now: NOW, actor: "test" };
        let mut account = account();
        let mut tasks = vec![at(p, 10, 0, TaskStatus::Completed, 1), at(p, 11, 5, TaskStatus::Waiting, 1)];
        let mut step = rules.step(&account);
        rules.derive(&mut account, &mut tasks, &mut step);
        assert!(step.transitions.iter().any(|t| t.task == 11 && t.to == TaskStatus::Pending), "{:?}", step.transitions);
        assert_eq!(tasks[1].status, TaskStatus::Pending, "applied in memory at once");
        assert_eq!(step.account_status, Some(ObjectStatus::Provisioned), "every required task completed");
        assert_eq!(account.status, ObjectStatus::Provisioned);
    }

    #[test]
    fn a_cancellation_inserts_the_undo_task_ready_to_run_and_revokes() {
        let b = bundle();
        let p = &b.processes[0];
        let rules = Rules { bundle: &b, process: p, now: NOW, actor: "test" };
        let tasks = vec![at(p, 10, 0, TaskStatus::Cancelled, 1)];
        let mut step = rules.step(&account());
        rules.on_status(&account(), &tasks, &tasks[0], TaskStatus::Cancelled, &mut step);
        assert_eq!(step.account_status, Some(ObjectStatus::Revoked));
        let undo = step.new_tasks.first().expect("the undo task");
        assert_eq!((undo.task_name.as_str(), undo.status), ("Delete User", TaskStatus::Pending));
    }

    #[test]
    fn the_next_call_is_the_marked_task_else_the_first_due_unheld_pending_adapter_task() {
        let b = bundle();
        let p = &b.processes[0];
        let mut held = at(p, 1, 0, TaskStatus::Pending, 1);
        held.held = true;
        let mut calling = at(p, 2, 2, TaskStatus::Pending, 1);
        calling.calling = true;
        let mut later = at(p, 3, 3, TaskStatus::Pending, 1);
        later.due_at = Some(NOW + 1);
        let manual = at(p, 4, 4, TaskStatus::Pending, 1);
        let due = at(p, 5, 1, TaskStatus::Pending, 1);
        let tasks = vec![held, calling, later, manual, due];
        assert_eq!(next_call(p, &tasks, None, NOW), Some(5));
        assert_eq!(next_call(p, &tasks, Some(2), NOW), Some(2), "this engine's own mark");
        assert_eq!(next_call(p, &tasks, None, NOW + 1), Some(3), "due now");
        assert_eq!(next_call(p, &tasks[..4], None, NOW), None, "held, someone else's call, not due, manual");
    }
}

#[path = "claims_tests.rs"]
mod claims;
