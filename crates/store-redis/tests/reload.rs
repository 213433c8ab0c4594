//! A reload ([`Command::Reconfigure`]) gives what the embedded backend gives: the new
//! ledger filled as a restart with the new configuration would fill it (flows matched by
//! name, runtime limits kept where the configured limit did not move, mean hold times to
//! the millisecond), the caps given, a limit event for each pool whose figures moved, then
//! a settle. The conformance suite's reference cannot run a reload (it needs the backend's
//! durable form of the state), so this test carries the embedded backend's rebuild on the
//! pure ledger and compares, over random histories with reloads between random
//! configurations.

use callgate_backend::{reference, Command, LeaseRef, LedgerBackend, Names, Outcome};
use callgate_core::clock::{Clock, ManualClock};
use callgate_core::{
    ClassId, ClassSpec, FlowId, FlowSpec, Ledger, LedgerSpec, PoolId, PoolSpec, PoolUnits, QueueSpec, Request, TicketId,
};
use callgate_store_redis::{RedisLedger, Time};
use support::Server;

mod support;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A configuration over the same two pools and three classes: limits, reserves,
/// priorities and flows vary with `rng`.
fn variant(rng: &mut Rng) -> LedgerSpec {
    let units = |p: u32, u: u32| PoolUnits { pool: PoolId(p), units: u };
    let priority = |rng: &mut Rng| rng.below(3) as i32 * 5;
    let mut flows = vec![
        FlowSpec {
            name: "vip".into(),
            pools: vec![units(0, 1)],
            class: ClassId(0),
            lease_ttl_ms: 4_000,
            queue: Some(QueueSpec { max_wait_ms: 3_000, max_len: None }),
        },
        FlowSpec {
            name: "inbound".into(),
            pools: vec![units(0, 1), units(1, 1)],
            class: ClassId(1),
            lease_ttl_ms: 3_000,
            queue: Some(QueueSpec { max_wait_ms: 4_000, max_len: Some(3) }),
        },
        FlowSpec {
            name: "web".into(),
            pools: vec![units(1, 1 + rng.below(2) as u32)],
            class: ClassId(2),
            lease_ttl_ms: 2_000,
            queue: Some(QueueSpec { max_wait_ms: 2_000, max_len: Some(2) }),
        },
    ];
    if rng.below(2) == 0 {
        flows.remove(rng.below(3) as usize);
    }
    if rng.below(2) == 0 {
        flows.reverse();
    }
    let limit0 = 4 + rng.below(3) as u32;
    LedgerSpec {
        classes: vec![
            ClassSpec { name: "vip".into(), priority: 10 },
            ClassSpec { name: "inbound".into(), priority: priority(rng) },
            ClassSpec { name: "web".into(), priority: priority(rng) },
        ],
        pools: vec![
            PoolSpec { name: "account".into(), limit: limit0, reserve: vec![(ClassId(0), rng.below(2) as u32)] },
            PoolSpec { name: "line".into(), limit: 2 + rng.below(3) as u32, reserve: vec![] },
        ],
        flows,
        ticket_retention_ms: 2_000,
        ..LedgerSpec::default()
    }
}

fn names(spec: &LedgerSpec) -> Names {
    Names {
        pools: spec.pools.iter().map(|p| p.name.as_str().into()).collect(),
        config_limits: spec.pools.iter().map(|p| p.limit).collect(),
        classes: spec.classes.iter().map(|c| c.name.as_str().into()).collect(),
        flows: spec.flows.iter().map(|f| f.name.as_str().into()).collect(),
    }
}

/// The embedded backend's reload (`Embedded::reconfigure` over `restore(snapshot(…))`), on
/// the pure ledger.
fn reload(old: &Ledger, old_spec: &LedgerSpec, spec: &LedgerSpec, caps: &[Option<u32>], now: u64) -> Ledger {
    let mut new = Ledger::new(spec).expect("spec");
    let flow = |f: Option<FlowId>| {
        f.and_then(|f| spec.flows.iter().position(|n| n.name == old_spec.flows[f.index()].name))
            .map(|i| FlowId(i as u32))
    };
    for (p, view) in old.pools().iter().enumerate() {
        let config = old_spec.pools[p].limit;
        if view.limit != config && spec.pools[p].limit == config {
            new.set_limit(PoolId(p as u32), view.limit, now);
        }
    }
    let leases: Vec<_> = old.leases().map(|l| callgate_core::Lease { flow: flow(l.flow), ..l.clone() }).collect();
    let mut tickets: Vec<_> =
        old.tickets().map(|t| callgate_core::Ticket { flow: flow(t.flow), ..t.clone() }).collect();
    tickets.sort_by_key(|t| t.seq);
    let ended: Vec<_> = old.ended_tickets().map(|(id, o, at, f)| (id, o, at, flow(f))).collect();
    for l in leases {
        new.restore_lease(l).expect("restore a lease");
    }
    for t in tickets {
        new.restore_ticket(t).expect("restore a ticket");
    }
    for (id, o, at, f) in ended {
        new.restore_ended(id, o, at, f);
    }
    new.restore_counters(old.next_id(), old.next_seq());
    for p in old.pools() {
        new.restore_mean_hold(p.id, p.mean_hold_ms);
    }
    new.drain_events().for_each(drop);
    for (p, cap) in caps.iter().enumerate() {
        if cap.is_some() {
            new.set_cap(PoolId(p as u32), *cap, now);
        }
    }
    for (p, was) in old.pools().iter().enumerate() {
        let is = new.pool(PoolId(p as u32));
        if (is.limit, is.cap) != (was.limit, was.cap) || old_spec.pools[p].limit != spec.pools[p].limit {
            new.set_limit(PoolId(p as u32), is.limit, now);
        }
    }
    new.settle(now);
    new
}

fn step(rng: &mut Rng, clock: &ManualClock, flows: usize) -> Command {
    let key = |rng: &mut Rng| format!("k{}", rng.below(10));
    match rng.below(10) {
        0..=3 => Command::Acquire(Request::flow(FlowId(rng.below(flows as u64) as u32)).with_key(key(rng))),
        4..=5 => Command::Release { lease: LeaseRef::Key(key(rng).into()), owner: None },
        6 => Command::Cancel(TicketId(rng.below(60))),
        7 => Command::SetLimit { pool: PoolId(rng.below(2) as u32), limit: 2 + rng.below(5) as u32 },
        _ => {
            clock.advance(rng.below(1_500));
            Command::Tick
        }
    }
}

fn state(b: &RedisLedger) -> (Vec<callgate_core::Lease>, Vec<callgate_core::Ticket>, Vec<callgate_core::PoolView>) {
    let mut tickets = b.tickets();
    tickets.sort_by_key(|t| t.id);
    (b.leases(), tickets, b.pools())
}

fn reference_state(
    r: &Ledger,
) -> (Vec<callgate_core::Lease>, Vec<callgate_core::Ticket>, Vec<callgate_core::PoolView>) {
    let mut tickets: Vec<_> = r.tickets().cloned().collect();
    tickets.sort_by_key(|t| t.id);
    (r.leases().cloned().collect(), tickets, r.pools())
}

#[test]
fn a_reload_gives_what_the_embedded_backend_gives() {
    let server = Server::start();
    let mut reloads_with_tickets = 0;
    // CALLGATE_CONFORMANCE_SEEDS explores more histories.
    let seeds = callgate_backend::conformance::seeds(6);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let clock = ManualClock::at(1_800_000_000_000);
        let mut spec = variant(&mut rng);
        let b =
            RedisLedger::open(&server.url, &format!("reload-{seed}"), &spec, Time::Clock(clock.clone())).expect("open");
        let mut r = Ledger::new(&spec).expect("spec");
        for n in 0..300 {
            let at = |what: &str| format!("seed {seed}, step {n}: {what}");
            if rng.below(15) == 0 {
                let new = variant(&mut rng);
                let caps: Vec<Option<u32>> = (0..2).map(|_| (rng.below(3) == 0).then(|| rng.below(5) as u32)).collect();
                let cmd = Command::Reconfigure {
                    spec: Box::new(new.clone()),
                    names: Box::new(names(&new)),
                    caps: caps.clone(),
                };
                reloads_with_tickets += usize::from(r.ticket_count() > 0);
                let mut want = reload(&r, &spec, &new, &caps, clock.now_ms());
                let want_events: Vec<_> = want.drain_events().collect();
                let got = b.execute(cmd).unwrap_or_else(|e| panic!("{}", at(&e.to_string())));
                assert_eq!(got.outcome, Outcome::Done);
                assert_eq!(got.events, want_events, "{}", at("the reload's events"));
                r = want;
                spec = new;
                // Lift the caps through both, so the histories go on comparably.
                for p in 0..2 {
                    let lift = Command::SetCap { pool: PoolId(p), cap: None };
                    reference::apply(&mut r, lift.clone(), clock.now_ms()).expect("uncap");
                    let want: Vec<_> = r.drain_events().collect();
                    assert_eq!(b.execute(lift).expect("uncap").events, want, "{}", at("uncap"));
                }
            } else {
                let cmd = step(&mut rng, &clock, spec.flows.len());
                let want = reference::apply(&mut r, cmd.clone(), clock.now_ms());
                let want_events: Vec<_> = r.drain_events().collect();
                let got = b.execute(cmd.clone());
                match (got, want) {
                    (Ok(got), Ok(want)) => {
                        assert_eq!(got.outcome, want, "{}", at(&format!("{cmd:?}")));
                        assert_eq!(got.events, want_events, "{}", at(&format!("the events of {cmd:?}")));
                    }
                    (got, want) => assert_eq!(got.is_ok(), want.is_ok(), "{}", at(&format!("{cmd:?}"))),
                }
            }
            assert_eq!(state(&b), reference_state(&r), "{}", at("state"));
            for id in 0..r.next_id() {
                let status = r.ticket_status(TicketId(id));
                assert_eq!(b.ticket(TicketId(id)).map(|t| t.status), status, "{}", at(&format!("ticket {id}")));
            }
        }
    }
    assert!(reloads_with_tickets >= 5, "reloads met waiting tickets {reloads_with_tickets} times");
}
