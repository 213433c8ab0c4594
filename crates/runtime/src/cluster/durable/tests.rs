//! The take-back of a lost acquire (`Undo`): only what it made for its own caller.

use super::*;
use callgate_core::{ClassId, PoolId, PoolUnits};

fn lease(id: u64) -> Lease {
    Lease {
        id: LeaseId(id),
        key: None,
        class: ClassId(0),
        flow: None,
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
        granted_at: 1,
        expires_at: 2,
        ttl_ms: 1,
        meta: None,
        owner: None,
    }
}

fn ticket(id: u64) -> Ticket {
    Ticket {
        id: TicketId(id),
        key: None,
        class: ClassId(0),
        flow: None,
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
        seq: 1,
        enqueued_at: 1,
        deadline: 2,
        ttl_ms: 1,
        meta: None,
        owner: None,
    }
}

fn executed(events: Vec<Event>) -> Executed {
    Executed { outcome: Outcome::Done, events, commit: 1, now: 1 }
}

#[test]
fn a_lost_acquire_takes_back_only_what_it_made_for_its_own_caller() {
    let done = executed(vec![
        Event::Granted { lease: lease(7), from_ticket: None },
        Event::Granted { lease: lease(8), from_ticket: Some((TicketId(3), 10)) },
        Event::Queued { ticket: ticket(9), position: 1 },
    ]);
    let undo = Undo::of(true, &done);
    assert_eq!(undo, Undo { leases: vec![LeaseId(7)], tickets: vec![TicketId(9)] });
    assert!(Undo::of(false, &done).is_empty(), "only acquires are taken back");
    assert!(Undo::of(true, &executed(vec![])).is_empty(), "an idempotent retry made nothing");
}
