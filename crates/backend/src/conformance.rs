//! The conformance suite: what every [`LedgerBackend`] must do, run against each backend
//! by its own crate's tests (`crates/store/tests/conformance.rs` for the embedded one).
//!
//! Two parts:
//! - **scenarios** ([`scenarios`]): scripted stories of a 10-slot account with two slots
//!   held back for inbound callers, each step with the answer a person would predict
//!   (grants, waiting lines, idempotent keys, owners, expiry, time-outs, lowered limits,
//!   caps, calls ended and repaired, restarts);
//! - **differential** ([`differential`]): random command sequences (calls through flows
//!   and through explicit pools, keys that repeat, owners, releases, renewals,
//!   cancellations, calls ended and repaired, limit and cap changes, ticks, time passing,
//!   restarts) run against the backend and against the pure ledger under
//!   [`crate::reference::apply`] side by side: every outcome, every event and, after each
//!   step, every lease, ticket and pool must agree.
//!
//! A backend's test provides a [`Harness`]: how to open it on a clock the suite moves,
//! how to restart it, and how to wait for a future.

mod at_once;
mod differential;
mod rng;

use crate::{Command, Executed, LeaseFilter, LeaseRef, LedgerBackend, Outcome, TicketRead};
pub use at_once::differential_at_once;
use callgate_core::clock::ManualClock;
use callgate_core::{
    ClassId, ClassSpec, Decision, Event, FlowId, FlowSpec, LeaseId, LedgerSpec, PoolId, PoolSpec, PoolUnits, QueueSpec,
    RejectReason, Request, TicketId, TicketOutcome, TicketStatus,
};
pub use differential::differential;
use differential::state;
pub(crate) use rng::Rng;
use std::future::Future;
use std::sync::Arc;

/// How the suite drives one kind of backend.
pub trait Harness {
    /// The backend under test.
    type Backend: LedgerBackend;

    /// A backend with nothing in it, for `spec`, running on `clock`.
    fn open(&mut self, spec: &LedgerSpec, clock: Arc<ManualClock>) -> Self::Backend;

    /// Stops `backend` and starts it again on the same state (a restart): what was
    /// durable must be back, and nothing else.
    fn restart(&mut self, backend: Self::Backend, spec: &LedgerSpec, clock: Arc<ManualClock>) -> Self::Backend;

    /// Runs a future to completion.
    fn block_on<F: Future>(&mut self, f: F) -> F::Output;
}

/// Runs `cmd` and waits until it is durable, as the governor does before it answers.
fn exec<H: Harness>(h: &mut H, b: &H::Backend, cmd: Command) -> Executed {
    let done = either(h, b, cmd.clone()).unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"));
    h.block_on(b.durable(done.commit)).unwrap_or_else(|e| panic!("{cmd:?} was not made durable: {e}"));
    done
}

/// Runs `cmd` through [`LedgerBackend::execute`] or, every other call,
/// [`LedgerBackend::execute_async`] (the governor's request paths): both must decide alike.
fn either<H: Harness>(h: &mut H, b: &H::Backend, cmd: Command) -> Result<Executed, crate::Error> {
    thread_local!(static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    if CALLS.with(|c| c.replace(c.get() + 1)).is_multiple_of(2) {
        b.execute(cmd)
    } else {
        h.block_on(b.execute_async(cmd))
    }
}

// ----- scenarios ----------------------------------------------------------------------------

const INBOUND: ClassId = ClassId(0);
const OUTBOUND: ClassId = ClassId(1);
const INBOUND_FLOW: FlowId = FlowId(0);
const OUTBOUND_FLOW: FlowId = FlowId(1);
const VAPI: PoolId = PoolId(0);
const T0: u64 = 1_800_000_000_000;

/// A Vapi account: 10 slots, 2 held back for inbound; inbound callers wait up to 60 s (20
/// at most), outbound calls never wait.
pub fn account_spec() -> LedgerSpec {
    LedgerSpec {
        classes: vec![
            ClassSpec { name: "inbound".into(), priority: 10 },
            ClassSpec { name: "outbound".into(), priority: 0 },
        ],
        pools: vec![PoolSpec { name: "vapi".into(), limit: 10, reserve: vec![(INBOUND, 2)] }],
        flows: vec![
            FlowSpec {
                name: "inbound".into(),
                pools: vec![PoolUnits { pool: VAPI, units: 1 }],
                class: INBOUND,
                lease_ttl_ms: 3_600_000,
                queue: Some(QueueSpec { max_wait_ms: 60_000, max_len: Some(20) }),
            },
            FlowSpec {
                name: "outbound".into(),
                pools: vec![PoolUnits { pool: VAPI, units: 1 }],
                class: OUTBOUND,
                lease_ttl_ms: 3_600_000,
                queue: None,
            },
        ],
        ..LedgerSpec::default()
    }
}

fn call(flow: FlowId, key: &str) -> Command {
    Command::Acquire(Request::flow(flow).with_key(key))
}

fn decision(e: &Executed) -> &Decision {
    match &e.outcome {
        Outcome::Decided { decision, .. } => decision,
        other => panic!("not a decision: {other:?}"),
    }
}

fn granted(e: &Executed) -> LeaseId {
    match decision(e) {
        Decision::Granted { lease, .. } => *lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn used(b: &impl LedgerBackend) -> u64 {
    b.pools()[0].used
}

/// A named scenario.
pub type Scenario<H> = (&'static str, fn(&mut H));

/// Every scenario, by name.
pub fn scenarios<H: Harness>() -> Vec<Scenario<H>> {
    vec![
        ("ten_slots_two_held_for_inbound", ten_slots_two_held_for_inbound::<H>),
        ("a_key_is_one_call", a_key_is_one_call::<H>),
        ("only_the_owner_releases", only_the_owner_releases::<H>),
        ("leases_expire_and_tickets_time_out", leases_expire_and_tickets_time_out::<H>),
        ("a_lowered_limit_ends_what_never_fits", a_lowered_limit_ends_what_never_fits::<H>),
        ("caps_hold_back_and_give_back", caps_hold_back_and_give_back::<H>),
        ("calls_end_and_are_repaired_by_key", calls_end_and_are_repaired_by_key::<H>),
        ("cancel_says_what_it_found", cancel_says_what_it_found::<H>),
        ("a_restart_keeps_what_was_durable", a_restart_keeps_what_was_durable::<H>),
        ("bad_requests_change_nothing", bad_requests_change_nothing::<H>),
    ]
}

/// How many seeds a test runs random histories for: `CALLGATE_CONFORMANCE_SEEDS` when it is
/// set to a number (to explore more), else `default` (seeds are fixed, so a run is
/// deterministic).
pub fn seeds(default: u64) -> u64 {
    std::env::var("CALLGATE_CONFORMANCE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs every scenario on a fresh backend each.
pub fn run_scenarios<H: Harness>(h: &mut H) {
    for (name, scenario) in scenarios::<H>() {
        eprintln!("conformance scenario: {name}");
        scenario(h);
    }
}

fn ten_slots_two_held_for_inbound<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    for i in 0..8 {
        granted(&exec(h, &b, call(OUTBOUND_FLOW, &format!("out-{i}"))));
    }
    let ninth = exec(h, &b, call(OUTBOUND_FLOW, "out-8"));
    assert!(
        matches!(decision(&ninth), Decision::Rejected { reason: RejectReason::Capacity, .. }),
        "the last two slots are held for inbound: {ninth:?}"
    );
    granted(&exec(h, &b, call(INBOUND_FLOW, "in-0")));
    granted(&exec(h, &b, call(INBOUND_FLOW, "in-1")));
    assert_eq!(used(&b), 10);
    let eleventh = exec(h, &b, call(INBOUND_FLOW, "in-2"));
    let ticket = match decision(&eleventh) {
        Decision::Queued { ticket, position: 1, .. } => *ticket,
        other => panic!("the eleventh caller waits first in line: {other:?}"),
    };
    assert_eq!(b.waiting(10).len(), 1);
    assert_eq!(b.counts(), (10, 1));
    let freed = exec(h, &b, Command::Release { lease: LeaseRef::Key("out-0".into()), owner: None });
    assert!(matches!(freed.outcome, Outcome::Released(Some(_))));
    let handed = freed.events.iter().find_map(|e| match e {
        Event::Granted { lease, from_ticket: Some((t, _)) } if *t == ticket => Some(lease.id),
        _ => None,
    });
    let lease = handed.expect("the freed slot goes to the waiting caller in the same command");
    assert_eq!(b.lease_by_key("in-2").map(|l| l.id), Some(lease));
    assert!(matches!(
        b.ticket(ticket),
        Some(TicketRead { ticket: None, status: TicketStatus::Ended { outcome: TicketOutcome::Granted(l), .. } }) if l == lease
    ));
    assert_eq!((used(&b), b.counts()), (10, (10, 0)));
}

fn a_key_is_one_call<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    let first = granted(&exec(h, &b, call(INBOUND_FLOW, "call-1")));
    let again = exec(h, &b, call(INBOUND_FLOW, "call-1"));
    assert_eq!(decision(&again), &Decision::Granted { lease: first, existing: true });
    assert!(again.events.is_empty(), "a repeated acquire changes nothing: {:?}", again.events);
    assert_eq!(used(&b), 1);
    let by_key = exec(h, &b, Command::Release { lease: LeaseRef::Key("call-1".into()), owner: None });
    assert!(matches!(by_key.outcome, Outcome::Released(Some(ref l)) if l.id == first));
    let twice = exec(h, &b, Command::Release { lease: LeaseRef::Id(first), owner: None });
    assert_eq!(twice.outcome, Outcome::Released(None), "a second release frees nothing");
    let next = granted(&exec(h, &b, call(INBOUND_FLOW, "call-1")));
    assert!(next > first, "a key used again after its release is a new call with a new id");
}

fn only_the_owner_releases<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    let mine = granted(&exec(h, &b, Command::Acquire(Request::flow(INBOUND_FLOW).with_key("k").with_owner("alice"))));
    let theirs = exec(h, &b, Command::Release { lease: LeaseRef::Key("k".into()), owner: Some("bob".into()) });
    assert_eq!(theirs.outcome, Outcome::NotOwner(mine));
    assert!(theirs.events.is_empty());
    assert_eq!(used(&b), 1);
    for lease in [LeaseRef::Key("k".into()), LeaseRef::Id(mine)] {
        let renew = Command::Renew { lease, ttl_ms: Some(9_000_000), owner: Some("bob".into()) };
        let theirs = exec(h, &b, renew);
        assert_eq!(theirs.outcome, Outcome::NotOwner(mine));
        assert!(theirs.events.is_empty(), "nothing renewed: {:?}", theirs.events);
    }
    let renew = Command::Renew { lease: LeaseRef::Id(mine), ttl_ms: None, owner: Some("alice".into()) };
    assert!(matches!(exec(h, &b, renew).outcome, Outcome::Renewed(Some(ref l)) if l.id == mine));
    let ok = exec(h, &b, Command::Release { lease: LeaseRef::Id(mine), owner: Some("alice".into()) });
    assert!(matches!(ok.outcome, Outcome::Released(Some(ref l)) if l.owner.as_deref() == Some("alice")));
    assert_eq!(used(&b), 0);
}

fn leases_expire_and_tickets_time_out<H: Harness>(h: &mut H) {
    let clock = ManualClock::at(T0);
    let b = h.open(&account_spec(), clock.clone());
    let short = granted(&exec(h, &b, Command::Acquire(Request::flow(INBOUND_FLOW).with_key("short").with_ttl(1_000))));
    for i in 0..9 {
        granted(&exec(h, &b, call(INBOUND_FLOW, &format!("in-{i}"))));
    }
    let waiting = exec(h, &b, Command::Acquire(Request::flow(INBOUND_FLOW).with_key("waits").with_max_wait(5_000)));
    let Decision::Queued { ticket, deadline, .. } = *decision(&waiting) else { panic!("{waiting:?}") };
    assert_eq!(deadline, T0 + 5_000);
    clock.advance(999);
    assert!(exec(h, &b, Command::Tick).events.is_empty(), "nothing is due a millisecond early");
    let renewed = exec(h, &b, Command::Renew { lease: LeaseRef::Id(short), ttl_ms: Some(2_000), owner: None });
    assert!(matches!(renewed.outcome, Outcome::Renewed(Some(ref l)) if l.expires_at == T0 + 999 + 2_000));
    clock.advance(2_001);
    let tick = exec(h, &b, Command::Tick);
    assert!(
        tick.events.iter().any(|e| matches!(e, Event::Expired { lease, .. } if lease.id == short)),
        "the renewed lease expires at its new time: {:?}",
        tick.events
    );
    assert!(b.lease(short).is_none());
    // Its slot went to the caller who waited.
    assert!(b.lease_by_key("waits").is_some());
    let again = exec(h, &b, Command::Acquire(Request::flow(INBOUND_FLOW).with_key("late").with_max_wait(1_000)));
    let Decision::Queued { ticket: late, .. } = *decision(&again) else { panic!("{again:?}") };
    clock.advance(1_001);
    let tick = exec(h, &b, Command::Tick);
    assert!(tick.events.iter().any(
        |e| matches!(e, Event::TicketEnded { ticket, outcome: TicketOutcome::TimedOut, .. } if ticket.id == late)
    ));
    assert!(matches!(
        b.ticket(late).map(|t| t.status),
        Some(TicketStatus::Ended { outcome: TicketOutcome::TimedOut, flow: Some(INBOUND_FLOW), .. })
    ));
    assert!(matches!(b.ticket(ticket).map(|t| t.status), Some(TicketStatus::Ended { .. })));
}

fn a_lowered_limit_ends_what_never_fits<H: Harness>(h: &mut H) {
    let spec =
        LedgerSpec { pools: vec![PoolSpec { name: "vapi".into(), limit: 4, reserve: vec![] }], ..account_spec() };
    let b = h.open(&spec, ManualClock::at(T0));
    let pair = [PoolUnits { pool: VAPI, units: 3 }];
    granted(&exec(h, &b, Command::Acquire(Request::pools(pair, INBOUND).with_key("three"))));
    let waits =
        exec(h, &b, Command::Acquire(Request::pools(pair, INBOUND).with_key("three-more").with_max_wait(60_000)));
    let Decision::Queued { ticket, .. } = *decision(&waits) else { panic!("{waits:?}") };
    let lowered = exec(h, &b, Command::SetLimit { pool: VAPI, limit: 2 });
    assert!(matches!(lowered.outcome, Outcome::Pool(ref p) if p.limit == 2 && p.used == 3));
    assert!(lowered.events.iter().any(
        |e| matches!(e, Event::TicketEnded { ticket: t, outcome: TicketOutcome::NeverFits, .. } if t.id == ticket)
    ));
    let now = exec(h, &b, Command::Acquire(Request::pools(pair, INBOUND)));
    assert!(matches!(decision(&now), Decision::Rejected { reason: RejectReason::NeverFits, .. }));
    assert_eq!(b.pools()[0].used, 3, "a lowered limit takes nothing back");
}

fn caps_hold_back_and_give_back<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    for i in 0..3 {
        granted(&exec(h, &b, call(INBOUND_FLOW, &format!("in-{i}"))));
    }
    let capped = exec(h, &b, Command::SetCap { pool: VAPI, cap: Some(3) });
    assert!(matches!(capped.outcome, Outcome::Pool(ref p) if p.cap == 3 && p.limit == 10));
    let waits = exec(h, &b, call(INBOUND_FLOW, "in-3"));
    assert!(matches!(decision(&waits), Decision::Queued { position: 1, .. }), "{waits:?}");
    let uncapped = exec(h, &b, Command::SetCap { pool: VAPI, cap: None });
    assert!(uncapped.events.iter().any(|e| matches!(e, Event::Granted { from_ticket: Some(_), .. })));
    assert_eq!(used(&b), 4);
    let bad = b.execute(Command::SetCap { pool: PoolId(7), cap: Some(1) });
    assert!(bad.is_err(), "an unknown pool is an error, not a silent no-op");
}

fn calls_end_and_are_repaired_by_key<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    let live = granted(&exec(h, &b, call(INBOUND_FLOW, "live")));
    let over = granted(&exec(h, &b, call(INBOUND_FLOW, "over")));
    let ended = exec(h, &b, Command::EndCall("over".into()));
    assert_eq!(ended.outcome, Outcome::CallEnded(crate::CallEnd::Released(over)));
    let again = exec(h, &b, Command::EndCall("over".into()));
    assert_eq!(again.outcome, Outcome::CallEnded(crate::CallEnd::Nothing));
    for i in 0..9 {
        granted(&exec(h, &b, call(INBOUND_FLOW, &format!("fill-{i}"))));
    }
    let queued = exec(h, &b, call(INBOUND_FLOW, "hung-up"));
    let Decision::Queued { ticket, .. } = *decision(&queued) else { panic!("{queued:?}") };
    let repaired = exec(
        h,
        &b,
        Command::Repair { ended: vec!["hung-up".into(), "fill-0".into(), "gone".into()], renew: vec!["live".into()] },
    );
    let Outcome::Repaired(r) = repaired.outcome else { panic!("{repaired:?}") };
    assert_eq!(r.cancelled, vec![(Arc::from("hung-up"), ticket)]);
    assert_eq!(r.released.len(), 1);
    assert_eq!(r.renewed, 1);
    assert!(b.lease(live).is_some());
    assert_eq!(used(&b), 9);
}

fn cancel_says_what_it_found<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    for i in 0..10 {
        granted(&exec(h, &b, call(INBOUND_FLOW, &format!("in-{i}"))));
    }
    let q = exec(h, &b, call(INBOUND_FLOW, "waits"));
    let Decision::Queued { ticket, .. } = *decision(&q) else { panic!("{q:?}") };
    assert_eq!(b.ticket_by_key("waits").map(|t| t.ticket.map(|t| t.id)), Some(Some(ticket)));
    assert_eq!(exec(h, &b, Command::Cancel(ticket)).outcome, Outcome::Cancelled(Some(true)));
    assert_eq!(exec(h, &b, Command::Cancel(ticket)).outcome, Outcome::Cancelled(Some(false)));
    assert_eq!(exec(h, &b, Command::Cancel(TicketId(999_999))).outcome, Outcome::Cancelled(None));
    assert!(b.ticket_by_key("waits").is_none());
}

fn a_restart_keeps_what_was_durable<H: Harness>(h: &mut H) {
    let clock = ManualClock::at(T0);
    let spec = account_spec();
    let b = h.open(&spec, clock.clone());
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(granted(&exec(h, &b, call(INBOUND_FLOW, &format!("in-{i}")))));
    }
    let q = exec(h, &b, Command::Acquire(Request::flow(INBOUND_FLOW).with_key("waits").with_owner("alice")));
    let Decision::Queued { ticket, .. } = *decision(&q) else { panic!("{q:?}") };
    exec(h, &b, Command::Release { lease: LeaseRef::Key("in-9".into()), owner: None });
    exec(h, &b, Command::SetLimit { pool: VAPI, limit: 12 });
    let before = state(&b);
    let b = h.restart(b, &spec, clock.clone());
    exec(h, &b, Command::Settle);
    let after = state(&b);
    assert_eq!(after.0, before.0, "the leases are back as they were");
    assert_eq!(after.1, before.1, "the waiting line is back as it was");
    assert_eq!(b.pools()[0].limit, 12, "a runtime limit change survives a restart");
    assert_eq!(b.pools()[0].used, before.2[0].used);
    let granted_ticket = b.ticket(ticket).map(|t| t.status);
    assert!(matches!(granted_ticket, Some(TicketStatus::Ended { outcome: TicketOutcome::Granted(_), .. })));
    let next = granted(&exec(h, &b, call(INBOUND_FLOW, "after")));
    assert!(ids.iter().all(|id| *id < next), "no id is handed out twice across a restart");
    assert!(next.0 > ticket.0);
}

fn bad_requests_change_nothing<H: Harness>(h: &mut H) {
    let b = h.open(&account_spec(), ManualClock::at(T0));
    granted(&exec(h, &b, call(INBOUND_FLOW, "one")));
    let before = (b.leases(), b.pools());
    for bad in [
        Command::Acquire(Request::flow(FlowId(9))),
        Command::Acquire(Request::pools([PoolUnits { pool: PoolId(5), units: 1 }], INBOUND)),
        Command::Acquire(Request::pools([PoolUnits { pool: VAPI, units: 0 }], INBOUND)),
        Command::Acquire(Request::pools([PoolUnits { pool: VAPI, units: 1 }], ClassId(9))),
        Command::SetLimit { pool: PoolId(3), limit: 1 },
    ] {
        let out = b.execute(bad.clone());
        assert!(out.is_err(), "{bad:?} must be refused: {out:?}");
    }
    assert_eq!((b.leases(), b.pools()), before);
    let page = b.leases_page(LeaseId(0), &LeaseFilter::default(), 10, 100);
    assert_eq!(page.0.len(), 1);
    assert_eq!(page.1, None);
}
