//! The engine under a worker's claims ([`Engine::run_claims`]): fenced commits, the rule for
//! interrupted calls, a claim taken over in the middle of a run, a call not started.

use super::*;
use crate::engine::Event;
use crate::store::{Claim, Queue, TaskClaimParams, WorkerRecord};
use std::cell::{Cell, RefCell};
use std::time::Duration;

const NOW: i64 = 1_800_000_000;
const LEASE: Duration = Duration::from_secs(30);

fn worker(id: &str, at: i64) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        started_at: at,
        heartbeat_at: at,
        lease: LEASE,
        concurrency: 1,
        stopped_at: None,
    }
}

fn claim(store: &mut dyn StateStore, worker: &str, now: i64) -> Vec<Claim> {
    store.task_claim(&TaskClaimParams { worker, now, lease: LEASE, limit: 10 }).unwrap()
}

/// A world with a key, users A and B with an enqueued account each of `b`'s process (no call
/// made), and worker `w1` registered.
fn enqueued(b: &Bundle) -> (World, Vec<AccountId>) {
    let w = World::new(Some(SecretKey::from_bytes([3; 32])));
    let (mut store, mut targets) = (w.store(), w.targets());
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    let mut ids = vec![];
    for login in ["A", "B"] {
        e.create_user(b, login, &BTreeMap::new()).unwrap();
        let mut f = form("pw");
        f.insert("username".into(), FormInput::Plain(login.into()));
        ids.extend(e.enqueue_many(b, "DB Account", &[login.to_string()], &f).unwrap());
    }
    e.store.worker_register(&worker("w1", NOW)).unwrap();
    drop(e);
    (w, ids)
}

fn audit_actors(store: &dyn StateStore, account: AccountId) -> Vec<String> {
    let mut actors = vec![];
    for t in store.tasks_of(account).unwrap() {
        actors.extend(store.audit(t.id).unwrap().into_iter().map(|a| a.actor));
    }
    actors
}

#[test]
fn enqueued_accounts_wait_for_a_worker_which_runs_them_and_gives_the_claims_back() {
    let b = bundle();
    let (w, ids) = enqueued(&b);
    let (mut store, mut targets) = (w.store(), w.targets());
    assert_eq!(w.target_count("select count(*) from db_users"), 0, "enqueue calls nothing");
    assert!(store.tasks(None).unwrap().iter().all(|t| t.status == TaskStatus::Pending && !t.calling));
    let claims = claim(&mut store, "w1", NOW);
    assert_eq!(claims.iter().map(|c| c.account).collect::<Vec<_>>(), ids);
    let mut seen = vec![];
    let mut events = |e: Event| seen.push(e);
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.actor = "worker:w1".into();
    e.hold_claims_as("w1");
    e.events = Some(&mut events);
    e.run_claims(&claims).unwrap();
    drop(e);
    for id in &ids {
        assert_eq!(store.account(*id).unwrap().unwrap().status, ObjectStatus::Provisioned);
        assert!(audit_actors(&store, *id).iter().any(|a| a == "worker:w1"));
    }
    assert_eq!(w.target_count("select count(*) from db_users"), 2);
    assert!(store.workers().unwrap()[0].claims.is_empty(), "the claims were given back");
    let calls = seen.iter().filter(|e| matches!(e, Event::Called { ok: true, .. })).count();
    let completed = seen.iter().filter(|e| matches!(e, Event::Moved { to: TaskStatus::Completed, .. })).count();
    assert_eq!((calls, completed), (2, 2), "{seen:?}");
    // Nothing is left to claim.
    assert!(claim(&mut store, "w1", NOW + 1).is_empty());
}

#[test]
fn an_interrupted_call_runs_again_only_if_its_query_is_idempotent() {
    for idempotent in [false, true] {
        let mut b = bundle();
        b.query_sets[0].queries[0].idempotent = idempotent;
        let (w, ids) = enqueued(&b);
        let (mut store, mut targets) = (w.store(), w.targets());
        // A worker that died in the middle of A's call: the mark is committed, the outcome not.
        let first = claim(&mut store, "w1", NOW);
        let a_task = first[0].task;
        store
            .commit_steps_fenced(
                &[Step { account: ids[0], actor: "worker:w1".into(), calling: Some(a_task), ..Step::default() }],
                &[first[0].fence("w1")],
            )
            .unwrap();
        store.worker_register(&worker("w2", NOW + 31)).unwrap();
        let rescued = claim(&mut store, "w2", NOW + 31);
        let a = rescued.iter().find(|c| c.account == ids[0]).unwrap();
        assert_eq!((a.calling, a.rescued_from.as_deref()), (true, Some("w1")));
        let mut seen = vec![];
        let mut events = |e: Event| seen.push(e);
        let mut e = Engine::new(&mut store, &mut targets, &w.clock);
        e.hold_claims_as("w2");
        e.events = Some(&mut events);
        e.run_claims(&rescued).unwrap();
        drop(e);
        let t = store.task(a_task).unwrap().unwrap();
        if idempotent {
            assert_eq!((t.status, t.held), (TaskStatus::Completed, false));
            assert_eq!(store.account(ids[0]).unwrap().unwrap().status, ObjectStatus::Provisioned);
        } else {
            assert_eq!((t.status, t.held, t.calling), (TaskStatus::Pending, true, false));
            assert!(t.note.as_deref().unwrap_or("").starts_with("provflow stopped while calling `CREATE`"), "{t:?}");
        }
        assert!(
            seen.contains(&Event::Interrupted {
                account: ids[0],
                task: a_task,
                query: "CREATE".into(),
                rerun: idempotent
            }),
            "{seen:?}"
        );
        // B was never interrupted: it ran.
        assert_eq!(store.account(ids[1]).unwrap().unwrap().status, ObjectStatus::Provisioned);
    }
}

#[test]
fn a_worker_whose_claim_was_taken_over_commits_nothing_more() {
    let b = bundle();
    let (w, ids) = enqueued(&b);
    let (mut store, mut targets) = (w.store(), w.targets());
    let mine = claim(&mut store, "w1", NOW);
    // Right before w1's first call, its lease has expired and w2 has taken the accounts over;
    // w1 does not know yet (no heartbeat came back), so it makes the call.
    let other = RefCell::new(w.store());
    let taken = Cell::new(false);
    let steal = |_: Option<&crate::store::Fence>| {
        if !taken.replace(true) {
            let mut o = other.borrow_mut();
            o.worker_register(&worker("w2", NOW + 31)).unwrap();
            assert_eq!(claim(&mut *o, "w2", NOW + 31).len(), 2);
        }
        true
    };
    let mut seen = vec![];
    let mut events = |e: Event| seen.push(e);
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.actor = "worker:w1".into();
    e.hold_claims_as("w1");
    e.events = Some(&mut events);
    e.may_call = Some(&steal);
    e.run_claims(&mine).unwrap();
    drop(e);
    let fenced = seen.iter().filter(|e| matches!(e, Event::Fenced { held_by: Some(h), .. } if h == "w2")).count();
    assert_eq!(fenced, 2, "both runs were stopped by the fence: {seen:?}");
    // The round's two calls went out (nothing told w1 before its next commit); nothing of
    // them, or of anything after, was committed by w1: its tasks wait, marked, for w2's rule.
    assert_eq!(w.target_count("select count(*) from db_users"), 2);
    for id in &ids {
        assert!(!audit_actors(&store, *id).iter().any(|a| a == "worker:w1"), "w1 committed for #{id}");
        let t = &store.tasks_of(*id).unwrap()[0];
        assert_eq!(t.status, TaskStatus::Pending);
    }
    let held_by_w2: Vec<_> =
        store.workers().unwrap().into_iter().filter(|s| s.worker.id == "w2").flat_map(|s| s.claims).collect();
    assert_eq!(held_by_w2.len(), 2, "w1's give-back left w2's claims alone");
}

#[test]
fn a_call_not_started_when_stopping_loses_its_mark_and_its_claim() {
    let b = bundle();
    let (w, ids) = enqueued(&b);
    let (mut store, mut targets) = (w.store(), w.targets());
    let mine = claim(&mut store, "w1", NOW);
    let stopping = |_: Option<&crate::store::Fence>| false;
    let mut seen = vec![];
    let mut events = |e: Event| seen.push(e);
    let mut e = Engine::new(&mut store, &mut targets, &w.clock);
    e.hold_claims_as("w1");
    e.events = Some(&mut events);
    e.may_call = Some(&stopping);
    e.run_claims(&mine).unwrap();
    drop(e);
    assert_eq!(w.target_count("select count(*) from db_users"), 0);
    assert_eq!(seen.iter().filter(|e| matches!(e, Event::Abandoned { .. })).count(), 2, "{seen:?}");
    for id in &ids {
        let t = &store.tasks_of(*id).unwrap()[0];
        assert_eq!((t.status, t.calling, t.held), (TaskStatus::Pending, false, false), "no stale mark: {t:?}");
    }
    assert!(store.workers().unwrap()[0].claims.is_empty());
    // Another run takes them as if nothing happened: no rescue rule, no hold.
    let again = claim(&mut store, "w1", NOW + 1);
    assert!(again.iter().all(|c| !c.calling && !c.rescued()), "{again:?}");
}
