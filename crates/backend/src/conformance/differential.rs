//! The differential part of the suite: random command sequences run against a backend and
//! against the pure ledger under [`crate::reference::apply`] side by side (see the parent
//! module's docs).

use super::{either, Harness, Rng, T0};
use crate::{Command, LeaseRef, LedgerBackend};
use callgate_core::clock::Clock;
use callgate_core::clock::ManualClock;
use callgate_core::{
    ClassId, ClassSpec, Event, FlowId, FlowSpec, Lease, LeaseId, Ledger, LedgerSpec, PoolId, PoolSpec, PoolUnits,
    QueueSpec, Request, TicketId,
};
use std::sync::Arc;

/// Three pools (an account shared by everyone, an assistant's line, a campaign's budget),
/// three classes, four flows, short TTLs and waits so that time matters within a history.
pub(super) fn differential_spec() -> LedgerSpec {
    let (account, assistant, campaign) = (PoolId(0), PoolId(1), PoolId(2));
    let units = |p: PoolId, u: u32| PoolUnits { pool: p, units: u };
    LedgerSpec {
        classes: vec![
            ClassSpec { name: "vip".into(), priority: 100 },
            ClassSpec { name: "inbound".into(), priority: 50 },
            ClassSpec { name: "outbound".into(), priority: 0 },
        ],
        pools: vec![
            PoolSpec { name: "account".into(), limit: 6, reserve: vec![(ClassId(0), 1), (ClassId(1), 1)] },
            PoolSpec { name: "assistant".into(), limit: 3, reserve: vec![] },
            PoolSpec { name: "campaign".into(), limit: 4, reserve: vec![] },
        ],
        flows: vec![
            FlowSpec {
                name: "vip".into(),
                pools: vec![units(account, 1)],
                class: ClassId(0),
                lease_ttl_ms: 3_000,
                queue: Some(QueueSpec { max_wait_ms: 2_000, max_len: None }),
            },
            FlowSpec {
                name: "inbound".into(),
                pools: vec![units(account, 1), units(assistant, 1)],
                class: ClassId(1),
                lease_ttl_ms: 2_500,
                queue: Some(QueueSpec { max_wait_ms: 3_000, max_len: Some(3) }),
            },
            FlowSpec {
                name: "outbound".into(),
                pools: vec![units(account, 1), units(campaign, 1)],
                class: ClassId(2),
                lease_ttl_ms: 4_000,
                queue: Some(QueueSpec { max_wait_ms: 1_500, max_len: Some(2) }),
            },
            FlowSpec {
                name: "web".into(),
                pools: vec![units(assistant, 2)],
                class: ClassId(1),
                lease_ttl_ms: 1_500,
                queue: None,
            },
        ],
        default_lease_ttl_ms: 2_500,
        ticket_retention_ms: 3_000,
        ..LedgerSpec::default()
    }
}

/// One random step: a command, time passing, or a restart.
pub(super) enum Step {
    Run(Command),
    Advance(u64),
    Restart,
}

pub(super) fn random_step(rng: &mut Rng, live: &[LeaseId], tickets: &[TicketId]) -> Step {
    let key = |rng: &mut Rng| -> Arc<str> { format!("k{}", rng.below(10)).into() };
    let owner = |rng: &mut Rng| -> Option<Arc<str>> { rng.chance(30).then(|| format!("o{}", rng.below(2)).into()) };
    let pick = |rng: &mut Rng, xs: &[LeaseId]| xs.get(rng.below(xs.len() as u64 + 1) as usize).copied();
    match rng.below(100) {
        0..=34 => {
            let mut req = if rng.chance(80) {
                Request::flow(FlowId(rng.below(4) as u32))
            } else {
                let mut pools = vec![PoolUnits { pool: PoolId(rng.below(3) as u32), units: 1 + rng.below(3) as u32 }];
                if rng.chance(30) {
                    pools.push(PoolUnits { pool: PoolId(rng.below(3) as u32), units: 1 });
                }
                Request::pools(pools, ClassId(rng.below(3) as u16))
            };
            if rng.chance(70) {
                req = req.with_key(key(rng));
            }
            if let Some(o) = owner(rng) {
                req = req.with_owner(o);
            }
            if rng.chance(20) {
                req = req.with_ttl(500 + rng.below(3_000));
            }
            if rng.chance(20) {
                req = req.with_max_wait(rng.below(4_000));
            }
            Step::Run(Command::Acquire(req))
        }
        35..=49 => {
            let lease = match pick(rng, live) {
                Some(id) if rng.chance(70) => LeaseRef::Id(id),
                Some(id) => LeaseRef::Id(LeaseId(id.0 + 1_000)),
                None => LeaseRef::Key(key(rng)),
            };
            Step::Run(Command::Release { lease, owner: owner(rng) })
        }
        50..=55 => Step::Run(Command::Renew {
            lease: pick(rng, live).map_or_else(|| LeaseRef::Key(key(rng)), LeaseRef::Id),
            ttl_ms: rng.chance(50).then(|| 500 + rng.below(3_000)),
            owner: owner(rng),
        }),
        56..=60 => {
            let t = tickets.get(rng.below(tickets.len() as u64 + 1) as usize).copied().unwrap_or(TicketId(7_777));
            Step::Run(Command::Cancel(t))
        }
        61..=65 => Step::Run(Command::EndCall(key(rng))),
        66..=68 => Step::Run(Command::Repair {
            ended: (0..rng.below(3)).map(|_| key(rng)).collect(),
            renew: (0..rng.below(3)).map(|_| key(rng)).collect(),
        }),
        69..=72 => Step::Run(Command::SetLimit { pool: PoolId(rng.below(3) as u32), limit: rng.below(8) as u32 }),
        73..=76 => Step::Run(Command::SetCap {
            pool: PoolId(rng.below(3) as u32),
            cap: rng.chance(60).then(|| rng.below(6) as u32),
        }),
        77..=86 => Step::Run(Command::Tick),
        87..=97 => Step::Advance(1 + rng.below(1_200)),
        _ => Step::Restart,
    }
}

/// What the backend and the reference must agree on after every step.
pub(super) fn state(b: &impl LedgerBackend) -> (Vec<Lease>, Vec<callgate_core::Ticket>, Vec<callgate_core::PoolView>) {
    let mut leases = b.leases();
    leases.sort_by_key(|l| l.id);
    let mut tickets = b.tickets();
    tickets.sort_by_key(|t| t.id);
    (leases, tickets, b.pools())
}

pub(super) fn reference_state(r: &Ledger) -> (Vec<Lease>, Vec<callgate_core::Ticket>, Vec<callgate_core::PoolView>) {
    let mut leases: Vec<Lease> = r.leases().cloned().collect();
    leases.sort_by_key(|l| l.id);
    let mut tickets: Vec<callgate_core::Ticket> = r.tickets().cloned().collect();
    tickets.sort_by_key(|t| t.id);
    (leases, tickets, r.pools())
}

/// Runs `cmd` on the backend (waiting until it is durable) and on the reference at `now`,
/// and panics unless both give the same outcome and events, or both refuse it alike.
/// Whether both carried it out.
fn agree<H: Harness>(
    h: &mut H,
    b: &H::Backend,
    reference: &mut Ledger,
    cmd: Command,
    now: u64,
    at: &dyn Fn(&str) -> String,
) -> bool {
    let want = crate::reference::apply(reference, cmd.clone(), now);
    let want_events: Vec<Event> = reference.drain_events().collect();
    match (either(h, b, cmd.clone()), want) {
        (Ok(got), Ok(want)) => {
            h.block_on(b.durable(got.commit)).unwrap_or_else(|e| panic!("{}", at(&e.to_string())));
            assert_eq!(got.outcome, want, "{}", at(&format!("{cmd:?}")));
            assert_eq!(got.events, want_events, "{}", at(&format!("the events of {cmd:?}")));
            true
        }
        (Err(got), Err(want)) => {
            assert_eq!(got.kind, want.kind, "{}", at(&format!("{cmd:?}")));
            false
        }
        (got, want) => panic!("{}", at(&format!("{cmd:?}: backend {got:?}, reference {want:?}"))),
    }
}

/// Runs `steps` random steps from `seed` against a fresh backend and the reference ledger.
/// Panics at the first disagreement, naming the seed and the step.
pub fn differential<H: Harness>(h: &mut H, seed: u64, steps: usize) {
    let spec = differential_spec();
    let clock = ManualClock::at(T0);
    let mut b = h.open(&spec, clock.clone());
    let mut reference = Ledger::new(&spec).expect("the differential spec is valid");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut capped = false;
    for step in 0..steps {
        let live: Vec<LeaseId> = reference.leases().map(|l| l.id).collect();
        let tickets: Vec<TicketId> = reference.tickets().map(|t| t.id).collect();
        let now = clock.now_ms();
        let at = |what: &str| format!("seed {seed}, step {step}: {what}");
        match random_step(&mut rng, &live, &tickets) {
            Step::Run(cmd) => {
                capped |= matches!(cmd, Command::SetCap { cap: Some(_), .. });
                agree(h, &b, &mut reference, cmd, now, &at);
            }
            Step::Advance(ms) => clock.advance(ms),
            Step::Restart => {
                // Caps are a node's, not the ledger's durable state (a restart drops them):
                // lift them first, through both, so the states stay comparable.
                if capped {
                    for p in 0..spec.pools.len() {
                        let cmd = Command::SetCap { pool: PoolId(p as u32), cap: None };
                        assert!(agree(h, &b, &mut reference, cmd, now, &at), "{}", at("uncap refused"));
                    }
                    capped = false;
                }
                assert_eq!(state(&b), reference_state(&reference), "{}", at("before the restart"));
                b = h.restart(b, &spec, clock.clone());
                assert_eq!(state(&b), reference_state(&reference), "{}", at("after the restart"));
                // A restart may skip ids ahead (never back): the reference follows.
                let (next_id, next_seq) = b.counters();
                assert!(next_id >= reference.next_id() && next_seq >= reference.next_seq(), "{}", at("counters"));
                reference.restore_counters(next_id, next_seq);
                // Mean hold times are kept to the millisecond: the reference rounds as well.
                for p in b.pools() {
                    reference.restore_mean_hold(p.id, p.mean_hold_ms);
                }
                // Both settle: what fell due while "down", what fits now.
                assert!(agree(h, &b, &mut reference, Command::Settle, now, &at), "{}", at("settle refused"));
            }
        }
        assert_eq!(state(&b), reference_state(&reference), "{}", at("state"));
        assert_eq!(b.counts(), (reference.lease_count(), reference.ticket_count()), "{}", at("counts"));
    }
}
