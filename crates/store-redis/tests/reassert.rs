//! Redis restarted empty: the ledger is given back with [`RedisLedger::reassert`] (what
//! the PostgreSQL journal kept) exactly as it was: the same leases, waiting tickets, pool
//! figures, lines and counters; only into an empty domain, so a second node's try changes
//! nothing.

use callgate_backend::{Command, ErrorKind, LeaseRef, LedgerBackend, Outcome};
use callgate_core::clock::{Clock as _, ManualClock};
use callgate_core::{Event, FlowId, LeaseId, LedgerSpec, Request, TicketId, TicketOutcome, TicketStatus};
use callgate_store_redis::reassert::{EndedTicket, Reassert};
use callgate_store_redis::{RedisLedger, Time};
use support::Server;

mod support;

fn spec() -> LedgerSpec {
    support::one_pool_spec(2, 60_000, 30_000)
}

fn acquire(b: &RedisLedger, key: &str) -> Outcome {
    let req = Request::flow(FlowId(0)).with_key(key);
    b.execute(Command::Acquire(req)).expect("acquire").outcome
}

#[test]
fn an_emptied_redis_gets_the_same_ledger_back_once() {
    let server = Server::start();
    let clock = ManualClock::at(1_800_000_000_000);
    let b = RedisLedger::open(&server.url, "again", &spec(), Time::Clock(clock.clone())).expect("open");
    acquire(&b, "a");
    acquire(&b, "b");
    let queued = acquire(&b, "c");
    assert!(matches!(queued, Outcome::Decided { ticket: Some(_), .. }), "{queued:?}");
    let (leases, tickets, pools, counters) = (b.leases(), b.tickets(), b.pools(), b.counters());
    assert_eq!((leases.len(), tickets.len()), (2, 1));

    // As a restart without persistence leaves it: no keys, no functions.
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();
    redis::cmd("FUNCTION").arg("FLUSH").query::<()>(&mut conn).unwrap();
    assert!(b.domain_missing().unwrap());
    let refused = b.execute(Command::Acquire(Request::flow(FlowId(0)))).expect_err("no ledger, no grant");
    assert_eq!(refused.kind, ErrorKind::Unavailable);
    assert!(b.health().failed.is_some());

    // How two earlier tickets ended (the journal keeps that for the retention time).
    let now = clock.now_ms();
    let ended = vec![
        EndedTicket {
            id: TicketId(100),
            outcome: TicketOutcome::Granted(LeaseId(101)),
            at: now - 2,
            flow: Some(FlowId(0)),
        },
        EndedTicket { id: TicketId(102), outcome: TicketOutcome::TimedOut, at: now - 1, flow: None },
    ];
    let state = Reassert {
        leases: leases.clone(),
        tickets: tickets.clone(),
        next_id: counters.0.max(103),
        next_seq: counters.1,
        limits: vec![],
        ended: ended.clone(),
    };
    assert!(b.reassert(&spec(), &state).expect("reassert"), "the empty domain is restored");
    assert!(!b.reassert(&spec(), &Reassert::default()).expect("again"), "a second try changes nothing");
    assert!(!b.domain_missing().unwrap());
    assert_eq!(b.leases(), leases);
    assert_eq!(b.tickets(), tickets);
    assert_eq!(b.pools(), pools);
    assert_eq!(b.counters(), (state.next_id, state.next_seq));
    assert!(b.lease_by_key("a").is_some() && b.ticket_by_key("c").is_some(), "keys are found again");
    for e in &ended {
        let read = b.ticket(e.id).expect("an ended ticket's outcome is read back");
        assert_eq!(read.status, TicketStatus::Ended { outcome: e.outcome, at: e.at, flow: e.flow }, "{read:?}");
    }

    // The line works: a release grants the waiting ticket; new ids are new.
    let done = b.execute(Command::Release { lease: LeaseRef::Key("a".into()), owner: None }).expect("release");
    assert!(
        done.events.iter().any(|e| matches!(e, Event::Granted { from_ticket: Some(_), .. })),
        "the waiting ticket gets the slot: {:?}",
        done.events
    );
    let Outcome::Decided { ticket: Some(t), .. } = acquire(&b, "d") else { panic!("a full pool queues") };
    assert!(t.id.0 >= counters.0, "ids are never handed out twice: {} < {}", t.id.0, counters.0);
    assert!(b.health().failed.is_none());
}

#[test]
fn a_domain_opened_on_an_emptied_redis_is_restored_until_it_decides_something() {
    let server = Server::start();
    let clock = ManualClock::at(1_800_000_000_000);
    let first = RedisLedger::open(&server.url, "fresh", &spec(), Time::Clock(clock.clone())).expect("open");
    acquire(&first, "a");
    let state = Reassert {
        leases: first.leases(),
        tickets: vec![],
        next_id: first.counters().0,
        next_seq: first.counters().1,
        limits: vec![],
        ended: vec![],
    };
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();

    // A node starting on the emptied Redis opens a new ledger; nothing was decided on it yet.
    let b = RedisLedger::open(&server.url, "fresh", &spec(), Time::Clock(clock.clone())).expect("open again");
    assert!(!b.domain_missing().unwrap());
    assert!(b.reassert(&spec(), &state).expect("reassert"), "a ledger that decided nothing yet takes the state");
    assert_eq!(b.leases(), state.leases);
    assert_eq!(b.pools()[0].used, 1);
    // Once it has decided something, its own state stands.
    acquire(&b, "b");
    assert!(!b.reassert(&spec(), &Reassert::default()).expect("again"));
    assert_eq!(b.pools()[0].used, 2);
}
