//! A node's local fallback, on the ledger's side: a block of ids the ledger never hands
//! out ([`RedisLedger::reserve_ids`]), and the leases granted on a node's own while Redis
//! was unreachable taken in once each ([`RedisLedger::adopt`]): kept as granted, ended
//! when they ended there, over the cap if need be (then nothing new is admitted), a key
//! another live lease holds left with it, an id another lease holds not taken.

use callgate_backend::{Command, LeaseRef, LedgerBackend, Outcome};
use callgate_core::clock::ManualClock;
use callgate_core::{
    ClassId, ClassSpec, Decision, Event, FlowId, FlowSpec, Lease, LeaseId, LedgerSpec, PoolId, PoolSpec, PoolUnits,
    Request,
};
use callgate_store_redis::adopt::Adopted;
use callgate_store_redis::{RedisLedger, Time};
use std::sync::Arc;
use support::Server;

mod support;

const NOW: u64 = 1_800_000_000_000;

fn spec() -> LedgerSpec {
    LedgerSpec {
        classes: vec![ClassSpec { name: "inbound".into(), priority: 5 }],
        pools: vec![PoolSpec { name: "acct".into(), limit: 3, reserve: vec![] }],
        flows: vec![FlowSpec {
            name: "in".into(),
            pools: vec![PoolUnits { pool: PoolId(0), units: 1 }],
            class: ClassId(0),
            lease_ttl_ms: 60_000,
            queue: None,
        }],
        ..LedgerSpec::default()
    }
}

fn acquire(b: &RedisLedger, key: &str) -> Decision {
    match b.execute(Command::Acquire(Request::flow(FlowId(0)).with_key(key))).expect("acquire").outcome {
        Outcome::Decided { decision, .. } => decision,
        other => panic!("{other:?}"),
    }
}

fn local(id: u64, key: &str) -> Lease {
    Lease {
        id: LeaseId(id),
        key: Some(Arc::from(key)),
        class: ClassId(0),
        flow: Some(FlowId(0)),
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
        granted_at: NOW - 1_000,
        expires_at: NOW + 59_000,
        ttl_ms: 60_000,
        meta: None,
        owner: None,
    }
}

fn live(lease: Lease) -> Adopted {
    Adopted { lease, ended: None, expired: false }
}

#[test]
fn reserved_ids_are_never_handed_out_and_adopted_leases_join_once_each() {
    let server = Server::start();
    let clock = ManualClock::at(NOW);
    let b = RedisLedger::open(&server.url, "adopt", &spec(), Time::Clock(clock.clone())).expect("open");
    let (first, last) = b.reserve_ids(100).expect("a block");
    assert_eq!(last - first + 1, 100);
    assert_eq!(b.last_id().unwrap(), last);
    let Decision::Granted { lease: redis_lease, .. } = acquire(&b, "r") else { panic!("granted") };
    assert!(redis_lease.0 > last, "the ledger's ids go on after the block");

    // Two leases granted in fallback (one of them with a key Redis gave another lease
    // meanwhile), one granted and released there.
    let mut ended = local(first + 2, "gone");
    ended.granted_at = NOW - 500;
    let list = vec![
        live(local(first, "x")),
        live(local(first + 1, "r")),
        Adopted { lease: ended, ended: Some(NOW - 100), expired: false },
    ];
    let adoption = b.adopt(&list).expect("adopt");
    assert_eq!((adoption.adopted, adoption.clashes), (3, 0));
    let granted = adoption.events.iter().filter(|e| matches!(e, Event::Granted { .. })).count();
    let released = adoption.events.iter().filter(|e| matches!(e, Event::Released { .. })).count();
    assert_eq!((granted, released), (3, 1), "each counted once on the stream: {:?}", adoption.events);
    assert_eq!(b.pools()[0].used, 3, "r, x and the lease whose key was taken");
    assert_eq!(b.lease(LeaseId(first)).map(|l| l.key), Some(Some(Arc::from("x"))));
    assert_eq!(b.lease(LeaseId(first + 1)).map(|l| l.key), Some(None), "the key stays with Redis's lease");
    assert_eq!(b.lease_by_key("r").map(|l| l.id), Some(redis_lease));
    assert!(b.lease(LeaseId(first + 2)).is_none(), "the ended one holds nothing");

    // A retry (the answer was lost) changes nothing.
    let again = b.adopt(&list).expect("again");
    assert_eq!((again.adopted, again.events.len()), (0, 0));
    assert_eq!(b.pools()[0].used, 3);

    // Over the cap: nothing revoked, nothing new admitted until it is under again.
    let over = b.adopt(&[live(local(first + 3, "y"))]).expect("adopt over");
    assert_eq!(over.adopted, 1);
    assert_eq!((b.pools()[0].used, b.pools()[0].cap), (4, 3));
    assert!(matches!(acquire(&b, "z"), Decision::Rejected { .. }));
    for key in ["x", "y"] {
        let done = b.execute(Command::Release { lease: LeaseRef::Key(key.into()), owner: None }).unwrap();
        assert!(matches!(done.outcome, Outcome::Released(Some(_))), "{:?}", done.outcome);
    }
    assert!(matches!(acquire(&b, "z"), Decision::Granted { .. }), "under the cap again");

    // An id another lease holds is not taken.
    let mut clash = local(redis_lease.0, "w");
    clash.class = ClassId(0);
    clash.pools = Arc::from(vec![PoolUnits { pool: PoolId(0), units: 2 }]);
    let clashed = b.adopt(&[live(clash)]).expect("adopt a clash");
    assert_eq!((clashed.adopted, clashed.clashes), (0, 1));
    assert_eq!(b.lease_by_key("r").map(|l| l.id), Some(redis_lease));
}
