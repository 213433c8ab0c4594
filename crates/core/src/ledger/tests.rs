// Long file: the ledger's unit tests, scenario by scenario.
//! One test per rule of DESIGN.md ("The ledger's semantics"), each named for what a
//! caller of callgate would notice. The property test in `tests/model.rs` checks the same
//! rules on random histories against a plain reference model.

use super::*;
use crate::spec::{ClassSpec, FlowSpec, PoolSpec, QueueSpec};

const VIP: ClassId = ClassId(0);
const INBOUND: ClassId = ClassId(1);
const CALLBACK: ClassId = ClassId(2);
const OUTBOUND: ClassId = ClassId(3);

/// The classes DESIGN.md uses as its example: vip 100, inbound 50, callback 30,
/// outbound 10.
fn classes() -> Vec<ClassSpec> {
    [("vip", 100), ("inbound", 50), ("callback", 30), ("outbound", 10)]
        .into_iter()
        .map(|(name, priority)| ClassSpec { name: name.into(), priority })
        .collect()
}

fn pool(name: &str, limit: u32, reserve: &[(ClassId, u32)]) -> PoolSpec {
    PoolSpec { name: name.into(), limit, reserve: reserve.to_vec() }
}

fn flow(name: &str, pools: &[(u32, u32)], class: ClassId, queue: Option<QueueSpec>) -> FlowSpec {
    FlowSpec { name: name.into(), pools: units(pools).to_vec(), class, lease_ttl_ms: 60_000, queue }
}

fn waiting_room(max_wait_ms: u64, max_len: Option<u32>) -> Option<QueueSpec> {
    Some(QueueSpec { max_wait_ms, max_len })
}

fn ledger(pools: Vec<PoolSpec>, flows: Vec<FlowSpec>) -> Ledger {
    let spec = LedgerSpec { classes: classes(), pools, flows, ..LedgerSpec::default() };
    Ledger::new(&spec).expect("valid spec")
}

/// `[(pool index, units)]` as the ledger's pool list.
fn units(pools: &[(u32, u32)]) -> Arc<[PoolUnits]> {
    pools.iter().map(|&(p, units)| PoolUnits { pool: PoolId(p), units }).collect()
}

/// A request for explicit pools that may wait `max_wait_ms` (0: never waits).
fn ask(l: &mut Ledger, pools: &[(u32, u32)], class: ClassId, max_wait_ms: u64, now: Millis) -> Decision {
    l.acquire(Request::pools(units(pools), class).with_max_wait(max_wait_ms), now).expect("valid request")
}

#[track_caller]
fn granted(d: Decision) -> LeaseId {
    match d {
        Decision::Granted { lease, .. } => lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[track_caller]
fn queued(d: Decision) -> (TicketId, u32) {
    match d {
        Decision::Queued { ticket, position, .. } => (ticket, position),
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[track_caller]
fn rejected(d: Decision) -> RejectReason {
    match d {
        Decision::Rejected { reason, .. } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A waiting ticket as a journal would store it.
fn stored(t: &Ticket) -> Ticket {
    t.clone()
}

fn used(l: &Ledger, p: u32) -> u64 {
    l.pool(PoolId(p)).used
}

/// Grants one-unit requests of `class` in pool 0 until the first is refused; returns
/// how many were granted.
fn fill(l: &mut Ledger, class: ClassId) -> usize {
    let mut n = 0;
    while let Decision::Granted { .. } = ask(l, &[(0, 1)], class, 0, 0) {
        n += 1;
        assert!(n <= 1000, "the pool never filled");
    }
    n
}

fn outcome(l: &Ledger, t: TicketId) -> Option<TicketOutcome> {
    match l.ticket_status(t) {
        Some(TicketStatus::Ended { outcome, .. }) => Some(outcome),
        _ => None,
    }
}

/// Short names of the events since the last call, for asserting what a consumer sees.
fn event_kinds(l: &mut Ledger) -> Vec<&'static str> {
    l.drain_events()
        .map(|e| match e {
            Event::Granted { from_ticket: None, .. } => "granted",
            Event::Granted { from_ticket: Some(_), .. } => "granted-from-ticket",
            Event::Queued { .. } => "queued",
            Event::Rejected { .. } => "rejected",
            Event::Renewed { .. } => "renewed",
            Event::Released { .. } => "released",
            Event::Expired { .. } => "expired",
            Event::TicketEnded { outcome: TicketOutcome::Cancelled, .. } => "cancelled",
            Event::TicketEnded { outcome: TicketOutcome::TimedOut, .. } => "timed-out",
            Event::TicketEnded { outcome: TicketOutcome::NeverFits, .. } => "never-fits",
            Event::TicketEnded { outcome: TicketOutcome::Granted(_), .. } => "ended-granted",
            Event::LimitChanged { .. } => "limit-changed",
        })
        .collect()
}

// ----- capacity -----------------------------------------------------------------------

#[test]
fn a_ten_slot_pool_grants_ten_calls_and_refuses_the_eleventh() {
    let mut l = ledger(vec![pool("vapi", 10, &[])], vec![]);
    for _ in 0..10 {
        granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    }
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], INBOUND, 0, 0)), RejectReason::Capacity);
    assert_eq!(used(&l, 0), 10);
    assert_eq!(l.lease_count(), 10);
}

#[test]
fn the_eleventh_caller_waits_first_in_line_and_gets_the_next_free_slot() {
    let mut l =
        ledger(vec![pool("vapi", 10, &[])], vec![flow("support", &[(0, 1)], INBOUND, waiting_room(30_000, None))]);
    let support = l.flow_id("support").unwrap();
    let leases: Vec<LeaseId> = (0..10).map(|_| granted(l.acquire(Request::flow(support), 0).unwrap())).collect();
    let d = l.acquire(Request::flow(support), 5).unwrap();
    let Decision::Queued { ticket, position, deadline, .. } = d else { panic!("{d:?}") };
    assert_eq!(position, 1);
    assert_eq!(deadline, 30_005);
    assert_eq!(l.pool(PoolId(0)).waiting, 1);

    assert!(l.release(leases[3], 1_000));
    let Some(TicketOutcome::Granted(lease)) = outcome(&l, ticket) else { panic!("not granted") };
    assert_eq!(l.lease(lease).unwrap().granted_at, 1_000);
    assert_eq!(used(&l, 0), 10);
    assert_eq!(l.pool(PoolId(0)).waiting, 0);
}

#[test]
fn a_multi_unit_request_takes_all_its_units_or_none() {
    let mut l = ledger(vec![pool("gpu", 4, &[])], vec![]);
    granted(ask(&mut l, &[(0, 3)], INBOUND, 0, 0));
    assert_eq!(rejected(ask(&mut l, &[(0, 2)], INBOUND, 0, 0)), RejectReason::Capacity);
    assert_eq!(used(&l, 0), 3);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    assert_eq!(used(&l, 0), 4);
}

// ----- reserves -----------------------------------------------------------------------

#[test]
fn an_inbound_reserve_stops_outbound_at_seven_while_inbound_may_use_all_ten() {
    let mut l = ledger(vec![pool("vapi", 10, &[(INBOUND, 3)])], vec![]);
    assert_eq!(fill(&mut l, OUTBOUND), 7);
    assert_eq!(fill(&mut l, INBOUND), 3);
    assert_eq!(used(&l, 0), 10);

    // Inbound borrows the outbound share while outbound is idle.
    let mut l = ledger(vec![pool("vapi", 10, &[(INBOUND, 3)])], vec![]);
    assert_eq!(fill(&mut l, INBOUND), 10);
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 0)), RejectReason::Capacity);
}

#[test]
fn nested_reserves_add_up_for_every_class_below_them() {
    // vip holds 2 back, inbound 3: outbound and callback see 10 - 2 - 3 = 5, inbound
    // sees 10 - 2 = 8, vip sees all 10.
    let spec = || vec![pool("vapi", 10, &[(VIP, 2), (INBOUND, 3)])];
    for (class, expected) in [(OUTBOUND, 5), (CALLBACK, 5), (INBOUND, 8), (VIP, 10)] {
        let mut l = ledger(spec(), vec![]);
        assert_eq!(fill(&mut l, class), expected, "{}", l.class_name(class));
    }
    // Stacked: outbound takes its 5, inbound then 3 more, vip the last 2.
    let mut l = ledger(spec(), vec![]);
    assert_eq!(fill(&mut l, OUTBOUND), 5);
    assert_eq!(fill(&mut l, CALLBACK), 0);
    assert_eq!(fill(&mut l, INBOUND), 3);
    assert_eq!(fill(&mut l, VIP), 2);
}

#[test]
fn a_reserve_counts_the_units_a_request_asks_for() {
    // limit 10, reserve {inbound = 3}: with 5 used, outbound may still take 2 units at
    // once (10 - 5 - 2 >= 3) but not 3.
    let mut l = ledger(vec![pool("vapi", 10, &[(INBOUND, 3)])], vec![]);
    for _ in 0..5 {
        granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    }
    assert_eq!(rejected(ask(&mut l, &[(0, 3)], OUTBOUND, 0, 0)), RejectReason::Capacity);
    granted(ask(&mut l, &[(0, 2)], OUTBOUND, 0, 0));
}

#[test]
fn three_slots_with_one_held_for_inbound_serve_two_outbound_and_queue_the_second_inbound() {
    let mut l = ledger(vec![pool("vapi", 3, &[(INBOUND, 1)])], vec![]);
    let out1 = granted(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 0));
    granted(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 0));
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 0)), RejectReason::Capacity);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let (ticket, position) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 10));
    assert_eq!(position, 1);
    l.drain_events().for_each(drop);

    assert!(l.release(out1, 20));
    let Some(TicketOutcome::Granted(lease)) = outcome(&l, ticket) else { panic!("the inbound caller still waits") };
    let events: Vec<Event> = l.drain_events().collect();
    assert!(matches!(&events[..], [
        Event::Released { .. },
        Event::Granted { lease: g, from_ticket: Some((t, 10)) },
    ] if g.id == lease && *t == ticket && g.granted_at == 20));
    assert_eq!(used(&l, 0), 3);
}

// ----- atomic multi-pool requests ------------------------------------------------------

#[test]
fn a_call_needing_several_pools_is_granted_in_all_of_them_or_in_none() {
    // A call needs a slot on the account and one on its assistant.
    let mut l = ledger(vec![pool("account", 10, &[]), pool("assistant", 1, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1), (1, 1)], INBOUND, 0, 0));
    assert_eq!(rejected(ask(&mut l, &[(0, 1), (1, 1)], INBOUND, 0, 0)), RejectReason::Capacity);
    assert_eq!((used(&l, 0), used(&l, 1)), (1, 1), "a refused call holds nothing");

    // A waiting call holds nothing either: the account stays usable for others.
    let (ticket, _) = queued(ask(&mut l, &[(0, 1), (1, 1)], INBOUND, 60_000, 0));
    assert_eq!((used(&l, 0), used(&l, 1)), (1, 1));
    for _ in 0..9 {
        granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    }
    assert_eq!(used(&l, 0), 10);
    assert_eq!(l.ticket(ticket).map(|t| t.id), Some(ticket));
}

// ----- order ----------------------------------------------------------------------------

#[test]
fn a_higher_class_goes_ahead_of_waiting_lower_classes() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let (outbound, p1) = queued(ask(&mut l, &[(0, 1)], OUTBOUND, 60_000, 1));
    let (vip, p2) = queued(ask(&mut l, &[(0, 1)], VIP, 60_000, 2));
    assert_eq!((p1, p2), (1, 1), "the vip caller is first in line on arrival");
    assert!(matches!(l.ticket_status(outbound), Some(TicketStatus::Waiting { position: 2, .. })));

    l.release(lease, 3);
    assert!(matches!(outcome(&l, vip), Some(TicketOutcome::Granted(_))));
    assert!(matches!(l.ticket_status(outbound), Some(TicketStatus::Waiting { position: 1, .. })));
}

#[test]
fn callers_of_one_class_are_served_first_come_first_served() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let tickets: Vec<TicketId> = (0..3).map(|i| queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, i)).0).collect();
    let mut current = lease;
    for (i, &t) in tickets.iter().enumerate() {
        assert!(l.release(current, 10 + i as u64));
        let Some(TicketOutcome::Granted(next)) = outcome(&l, t) else { panic!("ticket {i} was skipped") };
        for later in &tickets[i + 1..] {
            assert!(l.ticket(*later).is_some(), "a later caller overtook an earlier one");
        }
        current = next;
    }
}

#[test]
fn equal_priorities_share_one_line_in_arrival_order() {
    let spec = LedgerSpec {
        classes: vec![
            ClassSpec { name: "inbound".into(), priority: 50 },
            ClassSpec { name: "web".into(), priority: 50 },
        ],
        pools: vec![pool("vapi", 1, &[])],
        ..LedgerSpec::default()
    };
    let mut l = Ledger::new(&spec).unwrap();
    let lease = granted(ask(&mut l, &[(0, 1)], ClassId(0), 0, 0));
    let (web, _) = queued(ask(&mut l, &[(0, 1)], ClassId(1), 60_000, 1));
    let (inbound, position) = queued(ask(&mut l, &[(0, 1)], ClassId(0), 60_000, 2));
    assert_eq!(position, 2);
    l.release(lease, 3);
    assert!(matches!(outcome(&l, web), Some(TicketOutcome::Granted(_))));
    assert!(l.ticket(inbound).is_some());
}

// ----- the claimed-pools rule ----------------------------------------------------------

#[test]
fn a_waiting_call_that_does_not_fit_is_not_overtaken_by_smaller_calls_of_its_class() {
    let mut l = ledger(vec![pool("gpu", 3, &[])], vec![]);
    let big_holder = granted(ask(&mut l, &[(0, 2)], INBOUND, 0, 0));
    let (big, _) = queued(ask(&mut l, &[(0, 2)], INBOUND, 60_000, 1));
    // One unit is free, but the two-unit call ahead is waiting for it.
    let (small, position) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 2));
    assert_eq!(position, 2);
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 3)), RejectReason::Capacity);

    l.release(big_holder, 4);
    assert!(matches!(outcome(&l, big), Some(TicketOutcome::Granted(_))));
    assert!(matches!(outcome(&l, small), Some(TicketOutcome::Granted(_))));
    assert_eq!(used(&l, 0), 3);
}

#[test]
fn a_higher_class_is_never_held_back_by_a_lower_one_waiting() {
    let mut l = ledger(vec![pool("gpu", 3, &[])], vec![]);
    granted(ask(&mut l, &[(0, 2)], OUTBOUND, 0, 0));
    queued(ask(&mut l, &[(0, 2)], OUTBOUND, 60_000, 1));
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 2));
}

#[test]
fn a_campaign_at_its_own_cap_does_not_block_another_campaign_on_the_shared_account() {
    // Pools: 0 account (shared), 1 campaign A (cap 1), 2 campaign B (cap 5).
    let pools = vec![pool("account", 10, &[]), pool("campaign-a", 1, &[]), pool("campaign-b", 5, &[])];
    let flows = vec![
        flow("a", &[(0, 1), (1, 1)], OUTBOUND, waiting_room(60_000, None)),
        flow("b", &[(0, 1), (2, 1)], OUTBOUND, waiting_room(60_000, None)),
    ];
    let mut l = ledger(pools, flows);
    let (a, b) = (l.flow_id("a").unwrap(), l.flow_id("b").unwrap());
    granted(l.acquire(Request::flow(a), 0).unwrap());
    let (waiting_a, _) = queued(l.acquire(Request::flow(a), 1).unwrap());
    // B arrives behind A's waiting ticket in the account's line, yet is granted: A
    // waits for its own cap, not for the account.
    granted(l.acquire(Request::flow(b), 2).unwrap());
    assert!(l.ticket(waiting_a).is_some());
    assert_eq!(used(&l, 0), 2);
}

#[test]
fn a_freed_account_slot_goes_to_the_campaign_that_can_use_it() {
    // The account has 2 slots; campaign A's cap is 1. A holds one slot, B the other.
    let pools = vec![pool("account", 2, &[]), pool("campaign-a", 1, &[]), pool("campaign-b", 5, &[])];
    let flows = vec![
        flow("a", &[(0, 1), (1, 1)], OUTBOUND, waiting_room(60_000, None)),
        flow("b", &[(0, 1), (2, 1)], OUTBOUND, waiting_room(60_000, None)),
    ];
    let mut l = ledger(pools, flows);
    let (a, b) = (l.flow_id("a").unwrap(), l.flow_id("b").unwrap());
    granted(l.acquire(Request::flow(a), 0).unwrap());
    let b_lease = granted(l.acquire(Request::flow(b), 0).unwrap());
    let (waiting_a, _) = queued(l.acquire(Request::flow(a), 1).unwrap());
    let (waiting_b, _) = queued(l.acquire(Request::flow(b), 2).unwrap());

    l.release(b_lease, 3);
    assert!(l.ticket(waiting_a).is_some(), "A is still at its own cap");
    assert!(matches!(outcome(&l, waiting_b), Some(TicketOutcome::Granted(_))));
}

#[test]
fn a_call_waiting_for_the_account_gets_the_freed_slot_before_later_callers() {
    // Ticket T needs account + assistant; the account is full. A one-unit account
    // request behind T must not take the slot T waits for.
    let mut l = ledger(vec![pool("account", 1, &[]), pool("assistant", 1, &[])], vec![]);
    let holder = granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let (t, _) = queued(ask(&mut l, &[(0, 1), (1, 1)], INBOUND, 60_000, 1));
    let (behind, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 2));
    l.release(holder, 3);
    assert!(matches!(outcome(&l, t), Some(TicketOutcome::Granted(_))));
    assert!(l.ticket(behind).is_some());
}

// ----- idempotency ----------------------------------------------------------------------

#[test]
fn a_retried_request_with_the_same_call_id_gets_the_same_lease_and_counts_nothing() {
    let mut l = ledger(vec![pool("vapi", 10, &[])], vec![]);
    let key = "7f1c2d3e-0000-4a5b-9c8d-1234567890ab";
    let first = l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_key(key), 0).unwrap();
    let again = l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_key(key), 5).unwrap();
    let lease = granted(first);
    assert_eq!(again, Decision::Granted { lease, existing: true });
    assert_eq!(used(&l, 0), 1);
    assert_eq!(event_kinds(&mut l), ["granted"]);
    assert_eq!(l.lease_by_key(key).map(|l| l.id), Some(lease));
}

#[test]
fn a_retried_request_for_a_waiting_call_gets_the_same_ticket() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let req = || Request::pools(units(&[(0, 1)]), INBOUND).with_key("call-1").with_max_wait(60_000);
    let (ticket, _) = queued(l.acquire(req(), 1).unwrap());
    let again = l.acquire(req(), 2).unwrap();
    assert!(
        matches!(again, Decision::Queued { ticket: t, position: 1, deadline: 60_001, existing: true, .. } if t == ticket)
    );
    assert_eq!(l.pool(PoolId(0)).waiting, 1);
    assert_eq!(event_kinds(&mut l), ["granted", "queued"]);
}

#[test]
fn a_call_id_is_free_again_once_its_lease_ended() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let req = || Request::pools(units(&[(0, 1)]), INBOUND).with_key("call-1");
    let first = granted(l.acquire(req(), 0).unwrap());
    l.release(first, 1);
    let second = l.acquire(req(), 2).unwrap();
    assert!(matches!(second, Decision::Granted { lease, existing: false } if lease != first));
}

// ----- release, renew, expiry -----------------------------------------------------------

#[test]
fn releasing_a_call_twice_frees_its_slot_once() {
    let mut l = ledger(vec![pool("vapi", 2, &[])], vec![]);
    let a = granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    assert!(l.release(a, 1));
    assert!(!l.release(a, 2));
    assert_eq!(used(&l, 0), 1);
    assert_eq!(event_kinds(&mut l), ["granted", "granted", "released"]);
    assert!(!l.release(LeaseId(999), 3), "an unknown id frees nothing");
}

#[test]
fn a_call_can_be_released_by_its_call_id() {
    let mut l = ledger(vec![pool("vapi", 2, &[])], vec![]);
    let lease = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_key("CA123"), 0).unwrap());
    assert_eq!(l.release_key("CA123", 1), Some(lease));
    assert_eq!(l.release_key("CA123", 2), None);
    assert_eq!(l.release_key("never-seen", 2), None);
    assert_eq!(used(&l, 0), 0);
}

#[test]
fn a_waiting_ticket_cannot_be_released_by_its_key() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let req = Request::pools(units(&[(0, 1)]), INBOUND).with_key("CA9").with_max_wait(1_000);
    let (ticket, _) = queued(l.acquire(req, 0).unwrap());
    assert_eq!(l.release_key("CA9", 1), None);
    assert!(l.ticket(ticket).is_some());
}

#[test]
fn a_heartbeat_keeps_a_call_alive_past_its_first_expiry() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(1_000), 0).unwrap());
    assert_eq!(l.renew(lease, None, 800).map(|l| l.expires_at), Some(1_800));
    l.tick(1_000);
    assert!(l.lease(lease).is_some(), "a renewed lease expired at its old time");
    assert_eq!(l.renew(lease, Some(5_000), 1_500).map(|l| l.expires_at), Some(6_500));
    l.tick(6_499);
    assert!(l.lease(lease).is_some());
    l.tick(6_500);
    assert!(l.lease(lease).is_none());
    assert!(l.renew(lease, None, 6_600).is_none(), "an expired lease cannot be renewed");
}

#[test]
fn a_ghost_call_expires_and_its_slot_goes_to_the_next_caller_at_the_expiry_time() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let ghost = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(1_000), 0).unwrap());
    let (waiting, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 10));
    l.drain_events().for_each(drop);
    l.tick(999);
    assert!(l.lease(ghost).is_some());
    l.tick(5_000);
    assert!(l.lease(ghost).is_none());
    let events: Vec<Event> = l.drain_events().collect();
    assert!(matches!(&events[..], [
        Event::Expired { lease, at: 1_000 },
        Event::Granted { lease: g, from_ticket: Some((t, 990)) },
    ] if lease.id == ghost && *t == waiting && g.granted_at == 1_000));
    assert_eq!(used(&l, 0), 1);
}

#[test]
fn a_caller_who_waits_too_long_times_out_at_the_deadline_with_its_flow_named() {
    let mut l =
        ledger(vec![pool("vapi", 1, &[])], vec![flow("support", &[(0, 1)], INBOUND, waiting_room(2_000, None))]);
    let support = l.flow_id("support").unwrap();
    granted(l.acquire(Request::flow(support), 0).unwrap());
    let (ticket, _) = queued(l.acquire(Request::flow(support), 100).unwrap());
    l.tick(2_099);
    assert!(l.ticket(ticket).is_some());
    l.tick(9_000);
    // The flow is named so that the edge can apply its overflow action.
    let status = l.ticket_status(ticket);
    assert_eq!(status, Some(TicketStatus::Ended { outcome: TicketOutcome::TimedOut, at: 2_100, flow: Some(support) }));
    assert_eq!(event_kinds(&mut l), ["granted", "queued", "timed-out"]);
    assert_eq!(l.pool(PoolId(0)).waiting, 0);
}

#[test]
fn a_slot_freed_by_expiry_at_the_deadline_still_reaches_the_waiting_caller() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(1_000), 0).unwrap());
    let (ticket, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 1_000, 0));
    l.tick(1_000);
    assert!(matches!(outcome(&l, ticket), Some(TicketOutcome::Granted(_))));
}

#[test]
fn tick_handles_expiries_and_deadlines_in_time_order() {
    // The ticket's deadline (300) comes before the lease's expiry (500): even when one
    // late tick covers both, the caller has already timed out when the slot frees.
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(500), 0).unwrap());
    let (ticket, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 300, 0));
    l.tick(1_000);
    assert_eq!(
        l.ticket_status(ticket),
        Some(TicketStatus::Ended { outcome: TicketOutcome::TimedOut, at: 300, flow: None })
    );
    assert_eq!(used(&l, 0), 0);
}

// ----- tickets: cancel, status, retention -----------------------------------------------

#[test]
fn a_caller_who_hangs_up_leaves_the_line_and_the_next_caller_moves_up() {
    let mut l = ledger(vec![pool("gpu", 2, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let (big, _) = queued(ask(&mut l, &[(0, 2)], INBOUND, 60_000, 1));
    let (small, position) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 2));
    assert_eq!(position, 2);
    l.drain_events().for_each(drop);

    assert!(l.cancel(big, 3));
    assert!(!l.cancel(big, 4), "a ticket ends only once");
    assert_eq!(
        l.ticket_status(big),
        Some(TicketStatus::Ended { outcome: TicketOutcome::Cancelled, at: 3, flow: None })
    );
    // The one-unit call was only waiting behind the two-unit call.
    assert!(matches!(outcome(&l, small), Some(TicketOutcome::Granted(_))));
    assert_eq!(event_kinds(&mut l), ["cancelled", "granted-from-ticket"]);
    assert!(!l.cancel(small, 5), "a granted ticket cannot be cancelled");
}

#[test]
fn an_ended_ticket_can_be_polled_until_the_retention_period_passes() {
    let spec = LedgerSpec {
        classes: classes(),
        pools: vec![pool("vapi", 1, &[])],
        ticket_retention_ms: 10_000,
        ..LedgerSpec::default()
    };
    let mut l = Ledger::new(&spec).unwrap();
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let (ticket, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 0));
    l.cancel(ticket, 1_000);
    l.tick(10_999);
    assert_eq!(
        l.ticket_status(ticket),
        Some(TicketStatus::Ended { outcome: TicketOutcome::Cancelled, at: 1_000, flow: None })
    );
    l.tick(11_000);
    assert_eq!(l.ticket_status(ticket), None);
}

#[test]
fn a_flow_with_a_full_waiting_room_refuses_with_queue_full() {
    let mut l =
        ledger(vec![pool("vapi", 1, &[])], vec![flow("support", &[(0, 1)], INBOUND, waiting_room(60_000, Some(2)))]);
    let support = l.flow_id("support").unwrap();
    granted(l.acquire(Request::flow(support), 0).unwrap());
    queued(l.acquire(Request::flow(support), 0).unwrap());
    queued(l.acquire(Request::flow(support), 0).unwrap());
    assert_eq!(rejected(l.acquire(Request::flow(support), 0).unwrap()), RejectReason::QueueFull);
    // A request that may not wait is refused for capacity, whatever the room.
    let no_wait = Request::flow(support).with_max_wait(0);
    assert_eq!(rejected(l.acquire(no_wait, 0).unwrap()), RejectReason::Capacity);
}

#[test]
fn a_flow_without_a_waiting_room_refuses_at_once() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![flow("dial", &[(0, 1)], OUTBOUND, None)]);
    let dial = l.flow_id("dial").unwrap();
    let lease = granted(l.acquire(Request::flow(dial), 0).unwrap());
    assert_eq!(l.lease(lease).unwrap().expires_at, 60_000, "the flow's TTL applies");
    assert_eq!(rejected(l.acquire(Request::flow(dial), 0).unwrap()), RejectReason::Capacity);
    // The operator said "no waiting room": a client asking to wait is refused all the same.
    let patient = Request::flow(dial).with_max_wait(30_000);
    assert_eq!(rejected(l.acquire(patient, 0).unwrap()), RejectReason::Capacity);
    assert_eq!(l.ticket_count(), 0);
}

// ----- limits -----------------------------------------------------------------------------

#[test]
fn lowering_the_limit_ends_no_call_but_admits_nobody_until_below_it() {
    let mut l = ledger(vec![pool("vapi", 10, &[])], vec![]);
    let leases: Vec<LeaseId> = (0..8).map(|_| granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0))).collect();
    l.set_limit(PoolId(0), 5, 1);
    assert_eq!((l.pool(PoolId(0)).cap, used(&l, 0), l.lease_count()), (5, 8, 8));
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], VIP, 0, 2)), RejectReason::Capacity);
    for &lease in &leases[..4] {
        l.release(lease, 3);
    }
    granted(ask(&mut l, &[(0, 1)], VIP, 0, 4));
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], VIP, 0, 4)), RejectReason::Capacity);
}

// ----- never fits ---------------------------------------------------------------------------

#[test]
fn a_call_for_more_than_the_pool_can_ever_give_its_class_is_refused_at_once_and_blocks_nobody() {
    // Limit 10 with 3 held for inbound: outbound can never have more than 7.
    let mut l = ledger(vec![pool("vapi", 10, &[(INBOUND, 3)])], vec![]);
    let d = ask(&mut l, &[(0, 8)], OUTBOUND, 60_000, 0);
    assert_eq!(d, Decision::Rejected { reason: RejectReason::NeverFits, retry_after_ms: 0 });
    assert_eq!((l.ticket_count(), l.pool(PoolId(0)).waiting), (0, 0), "never queued");
    assert_eq!(event_kinds(&mut l), ["rejected"]);
    // Nothing waits ahead of the next caller, who gets a slot at once.
    granted(ask(&mut l, &[(0, 1)], OUTBOUND, 60_000, 1));
    // Inbound may take what outbound may not; nobody may take more than the limit.
    granted(ask(&mut l, &[(0, 9)], INBOUND, 60_000, 2));
    assert_eq!(rejected(ask(&mut l, &[(0, 11)], VIP, 60_000, 3)), RejectReason::NeverFits);
}

#[test]
fn a_flow_whose_units_no_longer_fit_after_a_lowered_limit_is_refused_with_never_fits() {
    let mut l =
        ledger(vec![pool("vapi", 4, &[])], vec![flow("conference", &[(0, 3)], INBOUND, waiting_room(60_000, None))]);
    granted(l.acquire(Request::flow(FlowId(0)), 0).unwrap());
    l.set_limit(PoolId(0), 2, 1);
    assert_eq!(rejected(l.acquire(Request::flow(FlowId(0)), 2).unwrap()), RejectReason::NeverFits);
    assert_eq!(l.ticket_count(), 0);
}

#[test]
fn a_call_above_only_todays_cap_still_waits_for_the_cap_to_rise() {
    let mut l = ledger(vec![pool("vapi", 4, &[])], vec![]);
    l.set_cap(PoolId(0), Some(2), 0);
    let (ticket, position) = queued(ask(&mut l, &[(0, 3)], INBOUND, 60_000, 1));
    assert_eq!(position, 1);
    l.set_cap(PoolId(0), None, 2);
    assert!(matches!(outcome(&l, ticket), Some(TicketOutcome::Granted(_))));
    assert_eq!(used(&l, 0), 3);
}

#[test]
fn lowering_the_limit_ends_the_waiting_calls_that_can_no_longer_fit_and_serves_those_behind_them() {
    let mut l = ledger(vec![pool("vapi", 4, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    // The big call waits for all four slots and holds the line for everyone behind it.
    let (big, _) = queued(ask(&mut l, &[(0, 4)], INBOUND, 60_000, 1));
    let (small, position) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 2));
    assert_eq!(position, 2);
    event_kinds(&mut l);
    l.set_limit(PoolId(0), 3, 10);
    assert_eq!(outcome(&l, big), Some(TicketOutcome::NeverFits));
    assert!(matches!(outcome(&l, small), Some(TicketOutcome::Granted(_))), "the line moves on");
    assert_eq!(event_kinds(&mut l), ["limit-changed", "never-fits", "granted-from-ticket"]);
    assert!(matches!(l.ticket_status(big), Some(TicketStatus::Ended { at: 10, .. })));
    assert_eq!(used(&l, 0), 2);
}

#[test]
fn a_call_ended_by_a_lowered_limit_frees_its_place_in_its_other_pools_too() {
    let mut l = ledger(vec![pool("account", 4, &[]), pool("campaign", 3, &[])], vec![]);
    granted(ask(&mut l, &[(1, 1)], OUTBOUND, 0, 0));
    // Fits the account but waits for 3 campaign units (2 free): it claims the campaign.
    let (big, _) = queued(ask(&mut l, &[(0, 4), (1, 3)], OUTBOUND, 60_000, 1));
    // Would fit the campaign, but stands behind the big call there.
    let (next, _) = queued(ask(&mut l, &[(1, 1)], OUTBOUND, 60_000, 2));
    // The account can no longer give the big call 4 units: it ends, the campaign moves.
    l.set_limit(PoolId(0), 3, 10);
    assert_eq!(outcome(&l, big), Some(TicketOutcome::NeverFits));
    assert!(matches!(outcome(&l, next), Some(TicketOutcome::Granted(_))));
    assert_eq!(l.pool(PoolId(1)).waiting, 0);
}

#[test]
fn lowering_the_limit_keeps_waiting_calls_that_still_fit() {
    let mut l = ledger(vec![pool("vapi", 4, &[(INBOUND, 1)])], vec![]);
    fill(&mut l, VIP);
    let (fits, _) = queued(ask(&mut l, &[(0, 2)], OUTBOUND, 60_000, 1));
    l.set_limit(PoolId(0), 3, 2);
    assert!(l.ticket(fits).is_some(), "2 + 1 reserved above outbound is within 3");
    l.set_limit(PoolId(0), 2, 3);
    assert_eq!(outcome(&l, fits), Some(TicketOutcome::NeverFits));
}

#[test]
fn a_restored_ticket_that_can_never_fit_ends_at_settle_and_the_line_moves_on() {
    // A journal written before the rule may hold a ticket that asks for more than the limit.
    let mut l = ledger(vec![pool("vapi", 2, &[])], vec![]);
    let ticket = |id: u64, units_: u32| Ticket {
        id: TicketId(id),
        key: Some(format!("call-{id}").into()),
        class: INBOUND,
        flow: None,
        pools: units(&[(0, units_)]),
        seq: id,
        enqueued_at: 0,
        deadline: 60_000,
        ttl_ms: 60_000,
        meta: None,
        owner: None,
    };
    l.restore_ticket(ticket(1, 3)).unwrap();
    l.restore_ticket(ticket(2, 2)).unwrap();
    l.settle(100);
    assert_eq!(outcome(&l, TicketId(1)), Some(TicketOutcome::NeverFits));
    assert!(matches!(outcome(&l, TicketId(2)), Some(TicketOutcome::Granted(_))));
    assert_eq!(event_kinds(&mut l), ["never-fits", "granted-from-ticket"]);
}

#[test]
fn raising_the_limit_lets_waiting_callers_in_at_once() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let tickets: Vec<TicketId> = (0..3).map(|_| queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 0)).0).collect();
    l.set_limit(PoolId(0), 3, 7);
    assert!(matches!(outcome(&l, tickets[0]), Some(TicketOutcome::Granted(_))));
    assert!(matches!(outcome(&l, tickets[1]), Some(TicketOutcome::Granted(_))));
    assert!(l.ticket(tickets[2]).is_some());
    assert_eq!(used(&l, 0), 3);
}

#[test]
fn a_cap_below_the_limit_applies_until_cleared() {
    let mut l = ledger(vec![pool("vapi", 4, &[])], vec![]);
    l.set_cap(PoolId(0), Some(2), 0);
    assert_eq!((l.pool(PoolId(0)).limit, l.pool(PoolId(0)).cap), (4, 2));
    assert_eq!(fill(&mut l, INBOUND), 2);
    let (ticket, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 0));
    // A cap above the limit is held to the limit.
    l.set_cap(PoolId(0), Some(9), 1);
    assert_eq!(l.pool(PoolId(0)).cap, 4);
    assert!(matches!(outcome(&l, ticket), Some(TicketOutcome::Granted(_))));
    l.set_cap(PoolId(0), Some(1), 2);
    l.set_limit(PoolId(0), 6, 3);
    assert_eq!(l.pool(PoolId(0)).cap, 1, "the cap stays while the limit moves");
    l.set_cap(PoolId(0), None, 4);
    assert_eq!(l.pool(PoolId(0)).cap, 6);
    let kinds = event_kinds(&mut l);
    assert_eq!(kinds.iter().filter(|k| **k == "limit-changed").count(), 5);
}

// ----- events -------------------------------------------------------------------------------

#[test]
fn every_change_is_published_as_an_event_in_order() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(100), 0).unwrap());
    rejected(ask(&mut l, &[(0, 1)], INBOUND, 0, 1));
    let (cancelled, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 1_000, 2));
    l.renew(lease, None, 3);
    l.cancel(cancelled, 4);
    queued(ask(&mut l, &[(0, 1)], INBOUND, 50, 5));
    l.tick(60);
    l.release(lease, 61);
    granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(100), 62).unwrap());
    queued(ask(&mut l, &[(0, 1)], INBOUND, 1_000, 63));
    l.tick(200);
    l.set_limit(PoolId(0), 2, 201);
    let second = granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 202));
    l.release(second, 203);
    assert_eq!(
        event_kinds(&mut l),
        [
            "granted",
            "rejected",
            "queued",
            "renewed",
            "cancelled",
            "queued",
            "timed-out",
            "released",
            "granted",
            "queued",
            "expired",
            "granted-from-ticket",
            "limit-changed",
            "granted",
            "released",
        ]
    );
    assert_eq!(l.drain_events().count(), 0, "draining takes every event once");
}

#[test]
fn events_carry_when_each_change_happened() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(100), 10).unwrap());
    queued(ask(&mut l, &[(0, 1)], INBOUND, 1_000, 20));
    l.tick(500);
    let times: Vec<Millis> = l.drain_events().map(|e| e.at()).collect();
    assert_eq!(times, [10, 20, 110, 110]);
    assert!(l.lease(lease).is_none());
}

// ----- restore ------------------------------------------------------------------------------

#[test]
fn a_restart_restores_leases_and_tickets_and_never_reuses_an_id() {
    let pools = || vec![pool("vapi", 2, &[])];
    let mut before = ledger(pools(), vec![]);
    let leases: Vec<Lease> = (0..2)
        .map(|i| {
            let req = Request::pools(units(&[(0, 1)]), INBOUND).with_key(format!("call-{i}"));
            let id = granted(before.acquire(req, 0).unwrap());
            before.lease(id).unwrap().clone()
        })
        .collect();
    let tickets: Vec<Ticket> = [OUTBOUND, INBOUND, INBOUND]
        .into_iter()
        .map(|class| {
            let (id, _) = queued(ask(&mut before, &[(0, 1)], class, 60_000, 1));
            before.ticket(id).unwrap().clone()
        })
        .collect();

    let mut after = ledger(pools(), vec![]);
    // Restored in any order: the line order comes from class and arrival.
    for t in tickets.iter().rev() {
        after.restore_ticket(stored(t)).unwrap();
    }
    for lease in &leases {
        after.restore_lease(lease.clone()).unwrap();
    }
    after.restore_counters(before.next_id(), before.next_seq());
    after.settle(2);
    assert_eq!(used(&after, 0), 2);
    assert_eq!(after.pool(PoolId(0)).waiting, 3);
    assert_eq!(after.lease_by_key("call-1").map(|l| l.id), Some(leases[1].id));
    assert_eq!(after.drain_events().count(), 0, "a restore publishes nothing");

    let order: Vec<TicketId> = after.waiting_in(PoolId(0)).map(|t| t.id).collect();
    assert_eq!(order, [tickets[1].id, tickets[2].id, tickets[0].id]);
    // A new inbound caller stands behind the restored inbound callers.
    let (new, position) = queued(ask(&mut after, &[(0, 1)], INBOUND, 60_000, 3));
    assert_eq!(position, 3);
    let max_old = leases.iter().map(|l| l.id.0).chain(tickets.iter().map(|t| t.id.0)).max().unwrap();
    assert!(new.0 > max_old);

    after.release(leases[0].id, 4);
    let Some(TicketOutcome::Granted(granted_lease)) = outcome(&after, tickets[1].id) else { panic!() };
    assert!(granted_lease.0 > new.0);
}

#[test]
fn restored_leases_are_kept_even_above_the_cap() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    for id in [10, 11] {
        let lease = Lease {
            id: LeaseId(id),
            key: None,
            class: INBOUND,
            flow: None,
            pools: units(&[(0, 1)]),
            granted_at: 0,
            expires_at: 60_000,
            ttl_ms: 60_000,
            meta: None,
            owner: None,
        };
        l.restore_lease(lease).unwrap();
    }
    l.settle(1);
    assert_eq!((used(&l, 0), l.lease_count()), (2, 2));
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], VIP, 0, 2)), RejectReason::Capacity);
    l.restore_counters(500, 500);
    l.release(LeaseId(10), 3);
    l.release(LeaseId(11), 3);
    assert_eq!(granted(ask(&mut l, &[(0, 1)], VIP, 0, 4)), LeaseId(500));
}

#[test]
fn settle_after_a_restart_expires_what_ran_out_while_down_and_serves_the_line() {
    let mut l = ledger(vec![pool("vapi", 1, &[])], vec![]);
    let lease = Lease {
        id: LeaseId(1),
        key: None,
        class: INBOUND,
        flow: None,
        pools: units(&[(0, 1)]),
        granted_at: 0,
        expires_at: 1_000,
        ttl_ms: 1_000,
        meta: None,
        owner: None,
    };
    let ticket = Ticket {
        id: TicketId(2),
        key: Some("call-2".into()),
        class: INBOUND,
        flow: None,
        pools: units(&[(0, 1)]),
        seq: 2,
        enqueued_at: 500,
        deadline: 60_000,
        ttl_ms: 60_000,
        meta: None,
        owner: None,
    };
    l.restore_lease(lease).unwrap();
    l.restore_ticket(ticket).unwrap();
    l.settle(5_000);
    assert!(l.lease(LeaseId(1)).is_none());
    assert!(matches!(outcome(&l, TicketId(2)), Some(TicketOutcome::Granted(LeaseId(3)))));
    assert!(l.lease_by_key("call-2").is_some());
}

// ----- bad input --------------------------------------------------------------------------

#[test]
fn malformed_requests_are_errors_not_refusals() {
    let mut l = ledger(vec![pool("a", 1, &[]), pool("b", 1, &[])], vec![]);
    let bad = |l: &mut Ledger, pools: &[(u32, u32)], class: ClassId| l.acquire(Request::pools(units(pools), class), 0);
    assert!(matches!(bad(&mut l, &[(0, 0)], INBOUND), Err(RequestError::BadPools(_))), "zero units");
    assert!(matches!(bad(&mut l, &[(0, 1), (1, 1), (0, 1)], INBOUND), Err(RequestError::BadPools(_))), "a pool twice");
    assert!(matches!(bad(&mut l, &[(7, 1)], INBOUND), Err(RequestError::BadPools(_))), "unknown pool");
    assert!(matches!(bad(&mut l, &[], INBOUND), Err(RequestError::BadPools(_))), "no pools");
    assert_eq!(bad(&mut l, &[(0, 1)], ClassId(9)), Err(RequestError::UnknownClass));
    assert_eq!(l.acquire(Request::flow(FlowId(3)), 0), Err(RequestError::UnknownFlow));
    assert_eq!((used(&l, 0), l.drain_events().count()), (0, 0), "bad input changes nothing");
    assert_eq!(l.next_seq(), 1, "bad input takes no place in line");
}

#[test]
fn a_spec_whose_reserves_exceed_the_limit_is_refused() {
    let spec = LedgerSpec {
        classes: classes(),
        pools: vec![pool("vapi", 3, &[(VIP, 2), (INBOUND, 2)])],
        ..LedgerSpec::default()
    };
    assert!(Ledger::new(&spec).is_err());
}

#[test]
fn restoring_the_same_lease_or_ticket_twice_is_refused() {
    let mut l = ledger(vec![pool("acct", 3, &[])], vec![flow("calls", &[(0, 1)], INBOUND, waiting_room(60_000, None))]);
    let lease = granted(l.acquire(Request::flow(FlowId(0)).with_key("a"), 0).unwrap());
    let copy = l.lease(lease).unwrap().clone();
    assert_eq!(l.restore_lease(copy), Err(RequestError::Duplicate));
    for _ in 0..2 {
        granted(l.acquire(Request::flow(FlowId(0)), 0).unwrap());
    }
    let (ticket, _) = queued(l.acquire(Request::flow(FlowId(0)).with_key("w"), 0).unwrap());
    let waiting = stored(l.ticket(ticket).unwrap());
    assert_eq!(l.restore_ticket(waiting), Err(RequestError::Duplicate));
    assert_eq!(l.pool(PoolId(0)).used, 3, "nothing was counted twice");
    assert_eq!(l.pool(PoolId(0)).waiting, 1, "no phantom in line");
}

#[test]
fn a_late_tick_never_grants_a_ticket_before_it_arrived() {
    let mut l = ledger(vec![pool("acct", 1, &[])], vec![flow("calls", &[(0, 1)], INBOUND, waiting_room(60_000, None))]);
    granted(l.acquire(Request::flow(FlowId(0)).with_ttl(100), 0).unwrap());
    // The lease is due at 100, but the tick comes late, after a caller queued at 120.
    let (ticket, _) = queued(l.acquire(Request::flow(FlowId(0)), 120).unwrap());
    l.drain_events().for_each(drop);
    l.tick(150);
    let grant = l.drain_events().find_map(|e| match e {
        Event::Granted { lease, from_ticket: Some((t, waited)) } if t == ticket => Some((lease.granted_at, waited)),
        _ => None,
    });
    assert_eq!(grant, Some((120, 0)), "granted as of its arrival, having waited for nothing");
}

// ----- bounds on what callers can pile up ------------------------------------------

#[test]
fn requests_naming_pools_directly_wait_in_a_bounded_line() {
    let spec = LedgerSpec {
        classes: classes(),
        pools: vec![pool("acct", 1, &[])],
        pools_max_len: Some(2),
        ..LedgerSpec::default()
    };
    let mut l = Ledger::new(&spec).expect("valid spec");
    granted(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 0));
    let (first, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 1));
    queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 2));
    assert_eq!(rejected(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 3)), RejectReason::QueueFull);
    // A place frees up when someone leaves the line.
    assert!(l.cancel(first, 4));
    queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 5));
}

#[test]
fn leases_are_listed_by_id_from_a_cursor() {
    let mut l = ledger(vec![pool("acct", 5, &[])], vec![]);
    let ids: Vec<LeaseId> = (0..4).map(|i| granted(ask(&mut l, &[(0, 1)], INBOUND, 0, i))).collect();
    assert!(l.release(ids[1], 10));
    let after_first: Vec<LeaseId> = l.leases_after(ids[0]).map(|x| x.id).collect();
    assert_eq!(after_first, vec![ids[2], ids[3]]);
    assert_eq!(l.leases_after(LeaseId(0)).count(), 3);
}

#[test]
fn the_owner_of_a_ticket_owns_the_lease_it_becomes() {
    let mut l = ledger(vec![pool("acct", 1, &[])], vec![]);
    let ask = |owner: &str| Request::pools(units(&[(0, 1)]), INBOUND).with_max_wait(60_000).with_owner(owner);
    let first = granted(l.acquire(ask("app"), 0).unwrap());
    assert_eq!(l.lease(first).unwrap().owner.as_deref(), Some("app"));
    let (t, _) = queued(l.acquire(ask("other"), 1).unwrap());
    assert_eq!(l.ticket(t).unwrap().owner.as_deref(), Some("other"));
    assert!(l.release(first, 2));
    let owners: Vec<Option<&str>> = l.leases().map(|x| x.owner.as_deref()).collect();
    assert_eq!(owners, [Some("other")]);
}

#[test]
fn a_schedule_changing_reserves_moves_what_lower_classes_may_take() {
    let mut l = ledger(vec![pool("acct", 4, &[])], vec![]);
    // Inbound holds 3 of 4 back: an outbound call needs 1 + 3 free.
    assert!(l.set_reserve(PoolId(0), &[(INBOUND, 3)], 0));
    assert_eq!(l.reserve(PoolId(0))[INBOUND.index()], 3);
    granted(ask(&mut l, &[(0, 1)], OUTBOUND, 0, 1));
    let (waiting, _) = queued(ask(&mut l, &[(0, 1)], OUTBOUND, 60_000, 2));
    // The reserve goes back to none: the waiting outbound call is granted at once.
    assert!(l.set_reserve(PoolId(0), &[], 3));
    assert!(matches!(outcome(&l, waiting), Some(TicketOutcome::Granted(_))));
    // A reserve that leaves a waiting call no way to ever fit ends it.
    let (doomed, _) = queued(ask(&mut l, &[(0, 3)], OUTBOUND, 60_000, 4));
    assert!(l.set_reserve(PoolId(0), &[(INBOUND, 2)], 5));
    assert_eq!(outcome(&l, doomed), Some(TicketOutcome::NeverFits));
    // Reserves above the limit, or for an unknown class, change nothing.
    assert!(!l.set_reserve(PoolId(0), &[(INBOUND, 5)], 6));
    assert!(!l.set_reserve(PoolId(0), &[(ClassId(9), 1)], 6));
    assert_eq!(l.reserve(PoolId(0))[INBOUND.index()], 2);
}

#[test]
fn thousands_of_grants_and_releases_keep_the_listing_in_id_order() {
    let mut l = ledger(vec![pool("acct", 2_000, &[])], vec![]);
    let mut live: Vec<LeaseId> = Vec::new();
    // Grants and releases interleaved, most recent and oldest alike, so that the ids of
    // departed leases are dropped from the listing's order many times over.
    for i in 0..3_000u64 {
        live.push(granted(ask(&mut l, &[(0, 1)], INBOUND, 0, i)));
        if i % 3 != 0 {
            let gone = live.remove((i as usize * 7) % live.len());
            assert!(l.release(gone, i));
        }
    }
    live.sort();
    let listed: Vec<LeaseId> = l.leases().map(|x| x.id).collect();
    assert_eq!(listed, live);
    assert_eq!(l.lease_count(), live.len());
    // A cursor may name a lease that is gone: the page starts after it all the same.
    let cursor = LeaseId(live[10].0 - 1);
    assert!(l.lease(cursor).is_none());
    let page: Vec<LeaseId> = l.leases_after(cursor).take(3).map(|x| x.id).collect();
    assert_eq!(page, live[10..13]);
}

#[test]
fn leases_restored_in_any_order_are_listed_once_by_id() {
    let mut before = ledger(vec![pool("acct", 10, &[])], vec![]);
    let ids: Vec<LeaseId> = (0..5).map(|i| granted(ask(&mut before, &[(0, 1)], INBOUND, 0, i))).collect();
    let leases: Vec<Lease> = ids.iter().map(|&id| before.lease(id).unwrap().clone()).collect();
    let mut after = ledger(vec![pool("acct", 10, &[])], vec![]);
    for i in [3, 0, 4] {
        after.restore_lease(leases[i].clone()).unwrap();
    }
    // Lease 0 leaves and comes back (a reload after a release that was not journaled).
    assert!(after.release(ids[0], 6));
    for i in [1, 0, 2] {
        after.restore_lease(leases[i].clone()).unwrap();
    }
    let listed: Vec<LeaseId> = after.leases().map(|x| x.id).collect();
    assert_eq!(listed, ids);
}

#[test]
fn a_lease_without_expiry_leaves_no_deadline_to_tick() {
    let mut l = ledger(vec![pool("acct", 2, &[])], vec![]);
    let id = granted(l.acquire(Request::pools(units(&[(0, 1)]), INBOUND).with_ttl(u64::MAX), 5).unwrap());
    assert_eq!(l.lease(id).unwrap().expires_at, Millis::MAX);
    assert_eq!(l.next_deadline(), None);
    l.tick(u64::MAX - 1);
    assert!(l.release(id, u64::MAX - 1), "it never expired");
}

#[test]
fn ticket_outcomes_are_forgotten_after_the_retention_time_even_between_ticks() {
    let mut l = ledger(vec![pool("acct", 1, &[])], vec![]);
    granted(ask(&mut l, &[(0, 1)], INBOUND, 0, 0));
    let retention = LedgerSpec::default().ticket_retention_ms;
    let (first, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, 0));
    assert!(l.cancel(first, 1));
    assert_eq!(outcome(&l, first), Some(TicketOutcome::Cancelled));
    // Another ticket ends once the first one's outcome is past its retention: no tick
    // came in between (a simulated ledger is ticked only when a deadline is due).
    let (second, _) = queued(ask(&mut l, &[(0, 1)], INBOUND, 60_000, retention));
    assert!(l.cancel(second, retention + 1));
    assert_eq!(outcome(&l, first), None);
    assert_eq!(outcome(&l, second), Some(TicketOutcome::Cancelled));
}
