use crate::{Journal, Names};
use callgate_core::*;
use std::sync::{Arc, Mutex};

fn spec() -> LedgerSpec {
    LedgerSpec {
        classes: vec![
            ClassSpec { name: "inbound".into(), priority: 50 },
            ClassSpec { name: "outbound".into(), priority: 10 },
        ],
        pools: vec![PoolSpec { name: "vapi".into(), limit: 2, reserve: vec![] }],
        flows: vec![FlowSpec {
            name: "support".into(),
            pools: vec![PoolUnits { pool: PoolId(0), units: 1 }],
            class: ClassId(0),
            lease_ttl_ms: 60_000,
            queue: Some(QueueSpec { max_wait_ms: 30_000, max_len: None }),
        }],
        ..LedgerSpec::default()
    }
}

fn names() -> Names {
    Names {
        pools: vec!["vapi".into()],
        config_limits: vec![2],
        classes: vec!["inbound".into(), "outbound".into()],
        flows: vec!["support".into()],
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("callgate-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn what_was_committed_comes_back_after_reopening() {
    let dir = temp_dir("roundtrip");
    let mut ledger = Ledger::new(&spec()).unwrap();
    let seen = Arc::new(Mutex::new(0usize));
    {
        let opened = Journal::open(&dir).unwrap();
        assert!(opened.restored.leases.is_empty());
        let counter = seen.clone();
        let journal = opened.start(names(), move |evs: &[Event]| *counter.lock().unwrap() += evs.len());
        let f = FlowId(0);
        let a = ledger.acquire(Request::flow(f).with_key("call-a"), 1_000).unwrap();
        let b = ledger.acquire(Request::flow(f), 1_001).unwrap();
        let c = ledger.acquire(Request::flow(f).with_key("call-c"), 1_002).unwrap();
        assert!(matches!(c, Decision::Queued { .. }));
        let Decision::Granted { lease: lb, .. } = b else { panic!() };
        assert!(matches!(a, Decision::Granted { .. }));
        ledger.renew(lb, Some(90_000), 1_003);
        ledger.set_limit(PoolId(0), 5, 1_004); // grants the waiting ticket too
        let evs: Vec<Event> = ledger.drain_events().collect();
        let n = evs.len();
        let seq = journal.submit(evs, ledger.next_id(), ledger.next_seq());
        journal.durable_blocking(seq).unwrap();
        drop(journal);
        assert_eq!(*seen.lock().unwrap(), n);
    }
    let opened = Journal::open(&dir).unwrap();
    let r = &opened.restored;
    assert_eq!(r.leases.len(), 3, "two granted at once and one from the waiting room");
    assert!(r.tickets.is_empty());
    // A restart starts at the id reservation, ahead of every id handed out before it
    // (also of ids that a crash kept from the disk): no id is ever handed out twice.
    assert!(r.next_id >= ledger.next_id() + 32_768, "{} vs {}", r.next_id, ledger.next_id());
    assert_eq!(r.ended.len(), 1, "the ticket that was granted is remembered: {:?}", r.ended);
    assert_eq!(r.ended[0].outcome, "granted");
    // Arrival numbers are reserved ahead the same way: a restart never goes back.
    assert!(r.next_seq >= ledger.next_seq() + 32_768, "{} vs {}", r.next_seq, ledger.next_seq());
    let renewed = r.leases.iter().find(|l| l.key.is_none()).unwrap();
    assert_eq!(renewed.expires_at, 1_003 + 90_000);
    assert!(r.leases.iter().any(|l| l.key.as_deref() == Some("call-c")));
    assert_eq!(r.limits, vec![("vapi".to_string(), 5, 2)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn many_submitters_share_commits_and_lose_nothing() {
    let dir = temp_dir("group");
    let ledger = Arc::new(Mutex::new(Ledger::new(&spec()).unwrap()));
    let opened = Journal::open(&dir).unwrap();
    let journal = Arc::new(opened.start(names(), |_: &[Event]| {}));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let seq = {
                        let mut l = ledger.lock().unwrap();
                        l.set_limit(PoolId(0), 1_000, 0);
                        l.acquire(Request::flow(FlowId(0)).with_key(format!("t{t}-{i}")), i).unwrap();
                        let evs: Vec<Event> = l.drain_events().collect();
                        let (a, b) = (l.next_id(), l.next_seq());
                        journal.submit(evs, a, b)
                    };
                    journal.durable_blocking(seq).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(journal);
    let opened = Journal::open(&dir).unwrap();
    assert_eq!(opened.restored.leases.len(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn callbacks_and_call_records_are_durable_merged_and_booked_once() {
    use crate::{CallUpdate, CallbackQuery, NewCallback, Record};
    let dir = temp_dir("records");
    let booking = NewCallback {
        provider: "tw".into(),
        call_id: "CA1".into(),
        number: "+15551230000".into(),
        flow: "support".into(),
        booked_at: 1_000,
        due_at: 61_000,
    };
    {
        let journal = Journal::open(&dir).unwrap().start(names(), |_: &[Event]| {});
        let seq = journal.record(vec![Record::Callback(booking.clone())]);
        journal.durable_blocking(seq).unwrap();
        let again = NewCallback { number: "+15559999999".into(), ..booking.clone() };
        let end = CallUpdate {
            provider: "tw".into(),
            call_id: "CA1".into(),
            ended_at: Some(9_000),
            ended_reason: Some("customer-ended-call".into()),
            cost: Some(0.12),
            at: 9_000,
            ..CallUpdate::default()
        };
        let start = CallUpdate {
            provider: "tw".into(),
            call_id: "CA1".into(),
            flow: Some("support".into()),
            outcome: Some("granted".into()),
            started_at: Some(1_000),
            at: 9_500,
            ..CallUpdate::default()
        };
        // The end arrives before the start: nothing known is lost either way.
        let seq = journal.record(vec![Record::Callback(again), Record::Call(end), Record::Call(start)]);
        journal.durable_blocking(seq).unwrap();
        let listed = journal.callbacks(&CallbackQuery { state: None, flow: None, limit: 10 }).unwrap();
        assert_eq!(listed.len(), 1, "one booking per call");
        assert_eq!(listed[0].number, "+15551230000");
    }
    let journal = Journal::open(&dir).unwrap().start(names(), |_: &[Event]| {});
    let listed = journal
        .callbacks(&CallbackQuery { state: Some("booked".into()), flow: Some("support".into()), limit: 10 })
        .unwrap();
    assert_eq!((listed[0].due_at, listed[0].state.as_str()), (61_000, "booked"));
    let call = journal.call("tw", "CA1").unwrap().unwrap();
    assert_eq!(call.flow.as_deref(), Some("support"));
    assert_eq!(call.started_at, Some(1_000));
    assert_eq!(call.ended_at, Some(9_000));
    assert_eq!(call.ended_reason.as_deref(), Some("customer-ended-call"));
    assert_eq!(call.cost, Some(0.12));
    assert_eq!(journal.calls(10).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_callback_moves_from_booked_to_dialing_to_done_and_never_back() {
    use crate::{CallbackQuery, CallbackState, CallbackUpdate, NewCallback, Record};
    let dir = temp_dir("callback-state");
    let book = |call: &str| NewCallback {
        provider: "tw".into(),
        call_id: call.into(),
        number: "+15551230000".into(),
        flow: "support".into(),
        booked_at: 1_000,
        due_at: 1_000,
    };
    let mark = |id: u64, state: CallbackState, outcome: Option<&str>, at: u64| {
        Record::CallbackState(CallbackUpdate { id, state, outcome: outcome.map(str::to_owned), at })
    };
    let of = |state: &str| CallbackQuery { state: Some(state.into()), flow: None, limit: 10 };
    {
        let journal = Journal::open(&dir).unwrap().start(names(), |_: &[Event]| {});
        let seq = journal.record(vec![Record::Callback(book("CA1")), Record::Callback(book("CA2"))]);
        journal.durable_blocking(seq).unwrap();
        let ids: Vec<u64> = journal.callbacks(&of("booked")).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 2);
        let seq = journal.record(vec![mark(ids[0], CallbackState::Dialing, None, 2_000)]);
        journal.durable_blocking(seq).unwrap();
        let booked = journal.callbacks(&of("booked")).unwrap();
        assert_eq!(booked.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[1]], "a taken callback is no longer booked");
        let dialing = journal.callbacks(&of("dialing")).unwrap();
        assert_eq!((dialing[0].id, dialing[0].updated_at, dialing[0].outcome.as_deref()), (ids[0], Some(2_000), None));
        let seq = journal.record(vec![
            mark(ids[0], CallbackState::Done, Some("completed"), 3_000),
            // A take repeated after a restart does not undo `done`; an unknown id is nothing.
            mark(ids[0], CallbackState::Dialing, None, 4_000),
            mark(999, CallbackState::Done, Some("busy"), 4_000),
        ]);
        journal.durable_blocking(seq).unwrap();
    }
    let journal = Journal::open(&dir).unwrap().start(names(), |_: &[Event]| {});
    let done = journal.callbacks(&of("done")).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].outcome.as_deref(), done[0].updated_at), (Some("completed"), Some(3_000)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_journal_from_before_callback_states_gains_the_columns() {
    let dir = temp_dir("callback-migrate");
    std::fs::create_dir_all(&dir).unwrap();
    {
        // The callbacks table as the first release wrote it.
        let conn = rusqlite::Connection::open(dir.join("callgate.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE callbacks (id INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL,
             call_id TEXT NOT NULL, number TEXT NOT NULL, flow TEXT NOT NULL, booked_at INTEGER NOT NULL,
             due_at INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'booked', UNIQUE (provider, call_id));
             INSERT INTO callbacks (provider, call_id, number, flow, booked_at, due_at)
             VALUES ('tw', 'CA1', '+15551230000', 'support', 1, 2);",
        )
        .unwrap();
    }
    let journal = Journal::open(&dir).unwrap().start(names(), |_: &[Event]| {});
    let listed = journal.callbacks(&crate::CallbackQuery { state: None, flow: None, limit: 10 }).unwrap();
    assert_eq!((listed[0].state.as_str(), listed[0].outcome.as_deref(), listed[0].updated_at), ("booked", None, None));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn owners_are_kept_and_an_older_journal_gains_the_column() {
    let dir = temp_dir("owner");
    std::fs::create_dir_all(&dir).unwrap();
    {
        // A journal from before owners were recorded.
        let conn = rusqlite::Connection::open(dir.join("callgate.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE leases (id INTEGER PRIMARY KEY, key TEXT, class TEXT NOT NULL, flow TEXT,
                 pools TEXT NOT NULL, granted_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                 ttl_ms INTEGER NOT NULL, meta TEXT);
             CREATE TABLE tickets (id INTEGER PRIMARY KEY, key TEXT, class TEXT NOT NULL, flow TEXT,
                 pools TEXT NOT NULL, seq INTEGER NOT NULL, enqueued_at INTEGER NOT NULL,
                 deadline INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, meta TEXT);
             INSERT INTO leases VALUES (7, 'old', 'inbound', 'support', '[[\"vapi\",1]]', 1, 100000, 60000, NULL);",
        )
        .unwrap();
    }
    let mut ledger = Ledger::new(&spec()).unwrap();
    {
        let opened = Journal::open(&dir).unwrap();
        assert_eq!(opened.restored.leases.len(), 1);
        assert_eq!(opened.restored.leases[0].owner, None, "an old lease has no owner");
        let journal = opened.start(names(), |_: &[Event]| {});
        ledger.restore_counters(8, 1);
        ledger.acquire(Request::flow(FlowId(0)).with_owner("app"), 1_000).unwrap();
        ledger.acquire(Request::flow(FlowId(0)).with_owner("app"), 1_001).unwrap();
        ledger.acquire(Request::flow(FlowId(0)).with_owner("other"), 1_002).unwrap();
        let evs: Vec<Event> = ledger.drain_events().collect();
        let seq = journal.submit(evs, ledger.next_id(), ledger.next_seq());
        journal.durable_blocking(seq).unwrap();
    }
    let r = Journal::open(&dir).unwrap().restored;
    let owners: Vec<Option<&str>> = r.leases.iter().map(|l| l.owner.as_deref()).collect();
    assert_eq!(owners, [None, Some("app"), Some("app")]);
    assert_eq!(r.tickets.iter().map(|t| t.owner.as_deref()).collect::<Vec<_>>(), [Some("other")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_commit_loses_its_batch_and_a_probe_resumes_commits() {
    use crate::Fault;
    let dir = temp_dir("probe");
    let mut ledger = Ledger::new(&spec()).unwrap();
    let opened = Journal::open(&dir).unwrap();
    let journal = opened.start(names(), |_: &[Event]| {});
    let mut step = |journal: &Journal, key: &str| {
        ledger.acquire(Request::flow(FlowId(0)).with_key(key), 1_000).unwrap();
        let evs: Vec<Event> = ledger.drain_events().collect();
        journal.submit(evs, ledger.next_id(), ledger.next_seq())
    };
    let a = step(&journal, "a");
    journal.durable_blocking(a).unwrap();
    journal.inject_fault(Fault::ReadOnly);
    let b = step(&journal, "b");
    assert!(journal.durable_blocking(b).is_err(), "a commit that fails is not durable");
    let health = journal.health();
    assert!(health.failed.is_some() && health.epoch == 1 && !health.dead, "{health:?}");
    // Still failing: a probe does not resume, and the batch stays lost.
    let p = journal.probe(health.epoch, 10, 10);
    assert!(journal.durable_blocking(p).is_err());
    journal.inject_fault(Fault::Writable);
    let p = journal.probe(health.epoch, 10, 10);
    journal.durable_blocking(p).unwrap();
    assert!(journal.failure().is_none());
    assert!(journal.durable_blocking(b).is_err(), "what was lost stays lost after the resume");
    drop(journal);
    let opened = Journal::open(&dir).unwrap();
    let keys: Vec<_> = opened.restored.leases.iter().map(|l| l.key.clone().unwrap()).collect();
    assert_eq!(keys, ["a"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_directory_has_one_owner_at_a_time() {
    let dir = temp_dir("lock");
    let first = crate::DirLock::acquire(&dir).unwrap();
    let err = crate::DirLock::acquire(&dir).unwrap_err().to_string();
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    drop(first);
    crate::DirLock::acquire(&dir).expect("free again once the owner lets go");
    let _ = std::fs::remove_dir_all(&dir);
}
