// Long file: the reference model and its random histories: the model must be read whole to be trusted.
//! Random histories against a reference model.
//!
//! Each case builds a ledger with four pools (a shared account, an assistant, two
//! campaigns; random limits and reserves) and five classes (two of them sharing a
//! priority), then runs 50 to 200 random steps: calls through flows and through explicit
//! pools (with and without idempotency keys, keys repeating), releases by id and by key
//! (also of leases long gone), renewals, cancellations, ticks, time passing without a
//! tick, limit and cap changes, restarts from the ledger's own state, and malformed
//! requests (requests that can never fit arise from the random limits and units). The same steps drive [`Model`], a deliberately plain reference written from
//! DESIGN.md ("The ledger's semantics"): vectors, linear scans and the claimed-pools walk
//! spelled out. After every step the decisions, the events, the leases, the tickets and
//! the pools of both must agree, and the invariants of DESIGN.md are checked on the real
//! ledger alone: once from the event stream (each grant when it happened), once on the
//! state the step left behind.
//!
//! The default case count keeps `cargo test -p callgate-core` quick in debug mode; run
//! more with `PROPTEST_CASES=5000 cargo test -p callgate-core --test model`. The seed is
//! fixed so a plain test run is deterministic; `PROPTEST_RNG_SEED=<n>` explores others.

use callgate_core::{
    ClassId, ClassSpec, Decision, Event, FlowId, FlowSpec, Lease, LeaseId, Ledger, LedgerSpec, Millis, PoolId,
    PoolSpec, PoolUnits, QueueSpec, RejectReason, Request, RequestError, Ticket, TicketId, TicketOutcome, TicketStatus,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

// ----- the world every case runs in ---------------------------------------------------------

/// `(name, priority)`; inbound and web share a priority (one line, first come first
/// served).
const CLASSES: [(&str, i32); 5] = [("vip", 100), ("inbound", 50), ("web", 50), ("outbound", 10), ("background", 0)];
const VIP: u16 = 0;
const INBOUND: u16 = 1;
const WEB: u16 = 2;
const OUTBOUND: u16 = 3;
const BACKGROUND: u16 = 4;

const POOLS: [&str; 4] = ["account", "assistant", "campaign-a", "campaign-b"];
const ACCOUNT: u32 = 0;
const ASSISTANT: u32 = 1;
const CAMPAIGN_A: u32 = 2;
const CAMPAIGN_B: u32 = 3;

/// Short, so that tickets are forgotten within a history.
const RETENTION_MS: u64 = 3_000;
const DEFAULT_TTL_MS: u64 = 2_500;
/// Keys are drawn from a small set so that they repeat.
const KEYS: u8 = 12;

/// A flow as the model needs it: pools, class, lease TTL, waiting room
/// `(max_wait_ms, max_len)`.
type FlowShape = (&'static [(u32, u32)], u16, u64, Option<(u64, Option<u32>)>);

const FLOWS: [FlowShape; 6] = [
    (&[(ACCOUNT, 1)], VIP, 3_000, Some((2_000, None))),
    (&[(ACCOUNT, 1), (ASSISTANT, 1)], INBOUND, 2_500, Some((3_000, Some(1)))),
    (&[(ACCOUNT, 1), (ASSISTANT, 1)], WEB, 2_000, None),
    (&[(ACCOUNT, 1), (CAMPAIGN_A, 1)], OUTBOUND, 4_000, Some((5_000, None))),
    (&[(ACCOUNT, 1), (CAMPAIGN_B, 1)], BACKGROUND, 3_500, Some((1_500, Some(2)))),
    (&[(ASSISTANT, 2)], INBOUND, 1_500, Some((2_500, None))),
];

/// The random part of a case's configuration.
#[derive(Clone, Debug)]
struct World {
    limits: [u32; 4],
    reserves: [Vec<(u16, u32)>; 4],
}

impl World {
    fn spec(&self) -> LedgerSpec {
        LedgerSpec {
            classes: CLASSES.iter().map(|&(name, priority)| ClassSpec { name: name.into(), priority }).collect(),
            pools: (0..4)
                .map(|p| PoolSpec {
                    name: POOLS[p].into(),
                    limit: self.limits[p],
                    reserve: self.reserves[p].iter().map(|&(c, u)| (ClassId(c), u)).collect(),
                })
                .collect(),
            flows: FLOWS
                .iter()
                .enumerate()
                .map(|(i, &(pools, class, ttl, queue))| FlowSpec {
                    name: format!("flow-{i}"),
                    pools: pools.iter().map(|&(p, units)| PoolUnits { pool: PoolId(p), units }).collect(),
                    class: ClassId(class),
                    lease_ttl_ms: ttl,
                    queue: queue.map(|(max_wait_ms, max_len)| QueueSpec { max_wait_ms, max_len }),
                })
                .collect(),
            default_lease_ttl_ms: DEFAULT_TTL_MS,
            ticket_retention_ms: RETENTION_MS,
            default_hold_ms: 1_000,
            pools_max_len: None,
        }
    }
}

fn world() -> impl Strategy<Value = World> {
    let limits = (1u32..=8, 1u32..=5, 1u32..=3, 1u32..=4);
    let reserves = prop::collection::vec(prop::collection::vec((0u16..5, 0u32..=2), 0..3), 4);
    (limits, reserves).prop_map(|((a, b, c, d), raw)| {
        let limits = [a, b, c, d];
        let mut reserves: [Vec<(u16, u32)>; 4] = Default::default();
        for (p, wanted) in raw.into_iter().enumerate() {
            // Reserves may not add up to more than the limit (the spec refuses that).
            let mut total = 0;
            for (class, units) in wanted {
                let units = units.min(limits[p] - total);
                total += units;
                reserves[p].push((class, units));
            }
        }
        World { limits, reserves }
    })
}

// ----- steps ------------------------------------------------------------------------------------

/// One step of a history.
#[derive(Clone, Debug)]
enum Op {
    /// A call through a flow; `max_wait` and `ttl` override the flow's.
    Flow {
        flow: usize,
        key: Option<u8>,
        max_wait: Option<u64>,
        ttl: Option<u64>,
    },
    /// A call for explicit pools.
    Pools {
        pools: Vec<(u32, u32)>,
        class: u16,
        key: Option<u8>,
        max_wait: u64,
        ttl: Option<u64>,
    },
    /// Release a live lease, or with `stale` one of every lease ever granted (mostly
    /// gone already) or an id never handed out.
    Release {
        pick: usize,
        stale: bool,
    },
    ReleaseKey {
        key: u8,
    },
    Renew {
        pick: usize,
        stale: bool,
        ttl: Option<u64>,
    },
    /// Cancel a waiting ticket, or with `stale` one of every ticket ever created.
    Cancel {
        pick: usize,
        stale: bool,
    },
    /// Time passes and the owner ticks.
    Tick {
        advance: u64,
    },
    /// Time passes without a tick (operations then meet overdue leases and tickets).
    Wait {
        advance: u64,
    },
    SetLimit {
        pool: u32,
        limit: u32,
    },
    SetCap {
        pool: u32,
        cap: Option<u32>,
    },
    /// The process restarts: a new ledger is built and restored from the old one's
    /// leases, tickets and counters, then settled.
    Restart,
    /// A malformed request: 0 zero units, 1 a pool twice, 2 an unknown class, 3 an
    /// unknown flow.
    Malformed {
        kind: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = prop::option::weighted(0.5, 0..KEYS);
    let ttl = prop::option::weighted(0.3, 0u64..5_000);
    let max_wait = prop_oneof![Just(None), Just(Some(0)), (1u64..4_000).prop_map(Some)];
    let pools =
        (prop::sample::subsequence(vec![ACCOUNT, ASSISTANT, CAMPAIGN_A, CAMPAIGN_B], 1..=3), [1u32..=3, 1..=3, 1..=3])
            .prop_map(|(pools, units)| pools.into_iter().zip(units).collect::<Vec<_>>());
    let stale = prop::bool::weighted(0.25);
    let pools_wait = prop_oneof![Just(0u64), Just(500), Just(2_000), Just(6_000)];
    prop_oneof![
        6 => (0..FLOWS.len(), key.clone(), max_wait, ttl.clone())
            .prop_map(|(flow, key, max_wait, ttl)| Op::Flow { flow, key, max_wait, ttl }),
        4 => (pools, 0u16..5, key, pools_wait, ttl.clone())
            .prop_map(|(pools, class, key, max_wait, ttl)| Op::Pools { pools, class, key, max_wait, ttl }),
        4 => (any::<usize>(), stale).prop_map(|(pick, stale)| Op::Release { pick, stale }),
        1 => (0..KEYS).prop_map(|key| Op::ReleaseKey { key }),
        2 => (any::<usize>(), stale, ttl).prop_map(|(pick, stale, ttl)| Op::Renew { pick, stale, ttl }),
        2 => (any::<usize>(), stale).prop_map(|(pick, stale)| Op::Cancel { pick, stale }),
        5 => (0u64..1_500).prop_map(|advance| Op::Tick { advance }),
        1 => (1u64..800).prop_map(|advance| Op::Wait { advance }),
        1 => (0u32..4, 0u32..=9).prop_map(|(pool, limit)| Op::SetLimit { pool, limit }),
        1 => (0u32..4, prop::option::of(0u32..=9)).prop_map(|(pool, cap)| Op::SetCap { pool, cap }),
        1 => Just(Op::Restart),
        1 => (0u8..4).prop_map(|kind| Op::Malformed { kind }),
    ]
}

// ----- what both sides are compared on --------------------------------------------------------

/// A decision without its estimates (`eta_ms`, `retry_after_ms`), which are advice and
/// not part of the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Granted { lease: u64, existing: bool },
    Queued { ticket: u64, position: u32, deadline: Millis, existing: bool },
    Rejected { reason: RejectReason },
    Error,
}

/// An event, reduced to what the model can know.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Granted { lease: MLease, from_ticket: Option<(u64, Millis)> },
    Queued { ticket: MTicket, position: u32 },
    Rejected { class: u16, pools: Vec<(u32, u32)>, flow: Option<u32>, reason: RejectReason, at: Millis },
    Renewed { lease: u64, expires_at: Millis, at: Millis },
    Released { lease: u64, at: Millis },
    Expired { lease: u64, at: Millis },
    TicketEnded { ticket: u64, outcome: TicketOutcome, at: Millis },
    LimitChanged { pool: u32, limit: u32, cap: u32, at: Millis },
}

fn pools_of(pools: &[PoolUnits]) -> Vec<(u32, u32)> {
    pools.iter().map(|pu| (pu.pool.0, pu.units)).collect()
}

fn lease_of(l: &Lease) -> MLease {
    MLease {
        id: l.id.0,
        key: l.key.as_deref().map(str::to_owned),
        class: l.class.0,
        flow: l.flow.map(|f| f.0),
        pools: pools_of(&l.pools),
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl: l.ttl_ms,
    }
}

fn ticket_of(t: &Ticket) -> MTicket {
    MTicket {
        id: t.id.0,
        key: t.key.as_deref().map(str::to_owned),
        class: t.class.0,
        flow: t.flow.map(|f| f.0),
        pools: pools_of(&t.pools),
        seq: t.seq,
        enqueued_at: t.enqueued_at,
        deadline: t.deadline,
        ttl: t.ttl_ms,
    }
}

fn ev_of(e: &Event) -> Ev {
    match e {
        Event::Granted { lease, from_ticket } => {
            Ev::Granted { lease: lease_of(lease), from_ticket: from_ticket.map(|(t, w)| (t.0, w)) }
        }
        Event::Queued { ticket, position } => Ev::Queued { ticket: ticket_of(ticket), position: *position },
        Event::Rejected { class, pools, flow, reason, at, .. } => {
            Ev::Rejected { class: class.0, pools: pools_of(pools), flow: flow.map(|f| f.0), reason: *reason, at: *at }
        }
        Event::Renewed { lease, expires_at, at, .. } => {
            Ev::Renewed { lease: lease.0, expires_at: *expires_at, at: *at }
        }
        Event::Released { lease, at } => Ev::Released { lease: lease.id.0, at: *at },
        Event::Expired { lease, at } => Ev::Expired { lease: lease.id.0, at: *at },
        Event::TicketEnded { ticket, outcome, at } => {
            Ev::TicketEnded { ticket: ticket.id.0, outcome: *outcome, at: *at }
        }
        Event::LimitChanged { pool, limit, cap, at } => {
            Ev::LimitChanged { pool: pool.0, limit: *limit, cap: *cap, at: *at }
        }
    }
}

fn answer_of(d: Result<Decision, RequestError>) -> Answer {
    match d {
        Ok(Decision::Granted { lease, existing }) => Answer::Granted { lease: lease.0, existing },
        Ok(Decision::Queued { ticket, position, deadline, existing, .. }) => {
            Answer::Queued { ticket: ticket.0, position, deadline, existing }
        }
        Ok(Decision::Rejected { reason, .. }) => Answer::Rejected { reason },
        Err(_) => Answer::Error,
    }
}

// ----- the reference model ----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct MLease {
    id: u64,
    key: Option<String>,
    class: u16,
    flow: Option<u32>,
    pools: Vec<(u32, u32)>,
    granted_at: Millis,
    expires_at: Millis,
    ttl: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MTicket {
    id: u64,
    key: Option<String>,
    class: u16,
    flow: Option<u32>,
    pools: Vec<(u32, u32)>,
    seq: u64,
    enqueued_at: Millis,
    deadline: Millis,
    ttl: u64,
}

/// A request as the model resolves it.
struct Ask {
    pools: Vec<(u32, u32)>,
    class: u16,
    flow: Option<u32>,
    key: Option<String>,
    ttl: u64,
    max_wait: u64,
}

/// DESIGN.md's ledger, written for clarity: every number is recomputed from the lists.
struct Model {
    limit: Vec<u32>,
    cap_override: Vec<Option<u32>>,
    reserve: Vec<Vec<(u16, u32)>>,
    /// Live leases, in grant order.
    leases: Vec<MLease>,
    /// Waiting tickets, in arrival order (line order is computed when needed).
    tickets: Vec<MTicket>,
    /// Every ended ticket since the last restart: `(id, outcome, at, flow)`.
    ended: Vec<(u64, TicketOutcome, Millis, Option<u32>)>,
    next_id: u64,
    next_seq: u64,
    events: Vec<Ev>,
}

fn priority(class: u16) -> i32 {
    CLASSES[class as usize].1
}

/// Whether a ticket of `(class, seq)` stands ahead of one of `(other_class, other_seq)`:
/// strict priority between classes, first come first served within a priority.
fn in_line_before(class: u16, seq: u64, other_class: u16, other_seq: u64) -> bool {
    let (a, b) = (priority(class), priority(other_class));
    a > b || (a == b && seq < other_seq)
}

impl Model {
    fn new(world: &World) -> Model {
        Model {
            limit: world.limits.to_vec(),
            cap_override: vec![None; 4],
            reserve: world.reserves.to_vec(),
            leases: Vec::new(),
            tickets: Vec::new(),
            ended: Vec::new(),
            next_id: 1,
            next_seq: 1,
            events: Vec::new(),
        }
    }

    fn cap(&self, p: u32) -> u32 {
        let limit = self.limit[p as usize];
        self.cap_override[p as usize].map_or(limit, |c| c.min(limit))
    }

    fn used(&self, p: u32) -> u64 {
        self.leases.iter().flat_map(|l| &l.pools).filter(|(q, _)| *q == p).map(|&(_, u)| u64::from(u)).sum()
    }

    fn waiting(&self, p: u32) -> u32 {
        self.tickets.iter().filter(|t| t.pools.iter().any(|(q, _)| *q == p)).count() as u32
    }

    /// "A request of class k may take units in pool p only if
    /// cap(p) - used(p) - units >= sum of reserve(p, c) for every class c with priority > k."
    fn fits(&self, p: u32, class: u16, units: u32) -> bool {
        let held_back: i64 = self.reserve[p as usize]
            .iter()
            .filter(|&&(c, _)| priority(c) > priority(class))
            .map(|&(_, u)| i64::from(u))
            .sum();
        i64::from(self.cap(p)) - self.used(p) as i64 - i64::from(units) >= held_back
    }

    /// "A request for more units than a pool can ever give its class (`limit` minus the
    /// reserves of higher classes)": the cap does not count.
    fn never_fits(&self, pools: &[(u32, u32)], class: u16) -> bool {
        pools.iter().any(|&(p, u)| {
            let held_back: i64 = self.reserve[p as usize]
                .iter()
                .filter(|&&(c, _)| priority(c) > priority(class))
                .map(|&(_, u)| i64::from(u))
                .sum();
            i64::from(u) + held_back > i64::from(self.limit[p as usize])
        })
    }

    /// The claimed-pools walk over the waiting tickets ahead of `(class, seq)`: "a waiting
    /// request that does not fit claims the pools it does not fit in".
    fn claimed(&self, class: u16, seq: u64) -> BTreeSet<u32> {
        let mut claimed = BTreeSet::new();
        for t in self.tickets.iter().filter(|t| in_line_before(t.class, t.seq, class, seq)) {
            for &(p, u) in &t.pools {
                if !self.fits(p, t.class, u) {
                    claimed.insert(p);
                }
            }
        }
        claimed
    }

    /// "A request is granted if it fits in every pool it needs and none of those pools
    /// is claimed."
    fn admits(&self, pools: &[(u32, u32)], class: u16, seq: u64) -> bool {
        let claimed = self.claimed(class, seq);
        pools.iter().all(|&(p, u)| self.fits(p, class, u) && !claimed.contains(&p))
    }

    /// The place in line of `(class, seq)`: the tickets ahead of it in the longest of its
    /// pools' lines, plus one.
    fn position(&self, pools: &[(u32, u32)], class: u16, seq: u64) -> u32 {
        pools
            .iter()
            .map(|&(p, _)| {
                let ahead = self
                    .tickets
                    .iter()
                    .filter(|o| o.pools.iter().any(|(q, _)| *q == p) && in_line_before(o.class, o.seq, class, seq))
                    .count();
                ahead as u32 + 1
            })
            .max()
            .unwrap_or(1)
    }

    fn grant(&mut self, ask: Ask, now: Millis, from: Option<(u64, Millis)>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let lease = MLease {
            id,
            key: ask.key,
            class: ask.class,
            flow: ask.flow,
            pools: ask.pools,
            granted_at: now,
            expires_at: now.saturating_add(ask.ttl),
            ttl: ask.ttl,
        };
        self.events.push(Ev::Granted {
            lease: lease.clone(),
            from_ticket: from.map(|(t, since)| (t, now.saturating_sub(since))),
        });
        if let Some((t, _)) = from {
            self.ended.push((t, TicketOutcome::Granted(LeaseId(id)), now, ask.flow));
        }
        self.leases.push(lease);
        id
    }

    fn resolve(&self, op: &Op) -> Option<Ask> {
        let key = |k: &Option<u8>| k.map(call_id);
        match op {
            Op::Flow { flow, key: k, max_wait, ttl } => {
                let (pools, class, flow_ttl, queue) = FLOWS[*flow];
                // A flow without a waiting room never lets a request wait.
                let max_wait = match queue {
                    Some((flow_wait, _)) => max_wait.unwrap_or(flow_wait),
                    None => 0,
                };
                Some(Ask {
                    pools: pools.to_vec(),
                    class,
                    flow: Some(*flow as u32),
                    key: key(k),
                    ttl: ttl.unwrap_or(flow_ttl),
                    max_wait,
                })
            }
            Op::Pools { pools, class, key: k, max_wait, ttl } => Some(Ask {
                pools: pools.clone(),
                class: *class,
                flow: None,
                key: key(k),
                ttl: ttl.unwrap_or(DEFAULT_TTL_MS),
                max_wait: *max_wait,
            }),
            _ => None,
        }
    }

    fn acquire(&mut self, ask: Ask, now: Millis) -> Answer {
        if let Some(k) = &ask.key {
            if let Some(l) = self.leases.iter().find(|l| l.key.as_ref() == Some(k)) {
                return Answer::Granted { lease: l.id, existing: true };
            }
            if let Some(t) = self.tickets.iter().find(|t| t.key.as_ref() == Some(k)) {
                let position = self.position(&t.pools, t.class, t.seq);
                return Answer::Queued { ticket: t.id, position, deadline: t.deadline, existing: true };
            }
        }
        // "Rejected at once (`never_fits`), never queued" (and it takes no place in line).
        if self.never_fits(&ask.pools, ask.class) {
            let reason = RejectReason::NeverFits;
            self.events.push(Ev::Rejected { class: ask.class, pools: ask.pools, flow: ask.flow, reason, at: now });
            return Answer::Rejected { reason };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.admits(&ask.pools, ask.class, seq) {
            let lease = self.grant(ask, now, None);
            return Answer::Granted { lease, existing: false };
        }
        let room = match ask.flow {
            Some(f) => match FLOWS[f as usize].3 {
                Some((_, Some(max_len))) => {
                    (self.tickets.iter().filter(|t| t.flow == Some(f)).count() as u32) < max_len
                }
                _ => true,
            },
            None => true,
        };
        if ask.max_wait == 0 || !room {
            let reason = if ask.max_wait == 0 { RejectReason::Capacity } else { RejectReason::QueueFull };
            self.events.push(Ev::Rejected { class: ask.class, pools: ask.pools, flow: ask.flow, reason, at: now });
            return Answer::Rejected { reason };
        }
        let position = self.position(&ask.pools, ask.class, seq);
        let ticket = MTicket {
            id: self.next_id,
            key: ask.key,
            class: ask.class,
            flow: ask.flow,
            pools: ask.pools,
            seq,
            enqueued_at: now,
            deadline: now.saturating_add(ask.max_wait),
            ttl: ask.ttl,
        };
        self.next_id += 1;
        self.events.push(Ev::Queued { ticket: ticket.clone(), position });
        let answer = Answer::Queued { ticket: ticket.id, position, deadline: ticket.deadline, existing: false };
        self.tickets.push(ticket);
        answer
    }

    /// "The dispatch walks the waiting tickets in order and grants each one that the rule
    /// allows", against the state as it evolves.
    fn dispatch(&mut self, now: Millis) {
        let mut line: Vec<(i32, u64, u64)> = self.tickets.iter().map(|t| (-priority(t.class), t.seq, t.id)).collect();
        line.sort();
        for (_, _, id) in line {
            let i = self.tickets.iter().position(|t| t.id == id).expect("still waiting");
            let t = &self.tickets[i];
            if self.admits(&t.pools, t.class, t.seq) {
                let t = self.tickets.remove(i);
                let ask = Ask { pools: t.pools, class: t.class, flow: t.flow, key: t.key, ttl: t.ttl, max_wait: 0 };
                // Never granted before it arrived (a late tick processes an expiry at its own time).
                self.grant(ask, now.max(t.enqueued_at), Some((t.id, t.enqueued_at)));
            }
        }
    }

    fn release(&mut self, id: u64, now: Millis) -> bool {
        match self.leases.iter().position(|l| l.id == id) {
            Some(i) => {
                self.leases.remove(i);
                self.events.push(Ev::Released { lease: id, at: now });
                self.dispatch(now);
                true
            }
            None => false,
        }
    }

    fn renew(&mut self, id: u64, ttl: Option<u64>, now: Millis) -> Option<Millis> {
        let lease = self.leases.iter_mut().find(|l| l.id == id)?;
        if let Some(ttl) = ttl {
            lease.ttl = ttl;
        }
        lease.expires_at = now.saturating_add(lease.ttl);
        let expires_at = lease.expires_at;
        self.events.push(Ev::Renewed { lease: id, expires_at, at: now });
        Some(expires_at)
    }

    fn cancel(&mut self, id: u64, now: Millis) -> bool {
        match self.tickets.iter().position(|t| t.id == id) {
            Some(i) => {
                let t = self.tickets.remove(i);
                self.ended.push((id, TicketOutcome::Cancelled, now, t.flow));
                self.events.push(Ev::TicketEnded { ticket: id, outcome: TicketOutcome::Cancelled, at: now });
                self.dispatch(now);
                true
            }
            None => false,
        }
    }

    /// Expiries and deadlines up to `now`, each at its own time, in time order (an expiry
    /// before a deadline at the same instant; equal times by id), dispatching after each.
    fn tick(&mut self, now: Millis) {
        loop {
            let expiry = self.leases.iter().filter(|l| l.expires_at <= now).map(|l| (l.expires_at, l.id)).min();
            let deadline = self.tickets.iter().filter(|t| t.deadline <= now).map(|t| (t.deadline, t.id)).min();
            match (expiry, deadline) {
                (Some((at, id)), d) if d.is_none_or(|(dt, _)| at <= dt) => {
                    self.leases.retain(|l| l.id != id);
                    self.events.push(Ev::Expired { lease: id, at });
                    self.dispatch(at);
                }
                (_, Some((at, id))) => {
                    let i = self.tickets.iter().position(|t| t.id == id).expect("waiting");
                    let t = self.tickets.remove(i);
                    self.ended.push((id, TicketOutcome::TimedOut, at, t.flow));
                    self.events.push(Ev::TicketEnded { ticket: id, outcome: TicketOutcome::TimedOut, at });
                    self.dispatch(at);
                }
                _ => break,
            }
        }
    }

    /// A limit or cap changed: the event, then a dispatch.
    fn cap_changed(&mut self, pool: u32, now: Millis) {
        self.events.push(Ev::LimitChanged { pool, limit: self.limit[pool as usize], cap: self.cap(pool), at: now });
        self.dispatch(now);
    }

    /// "Lowering a limit ends the waiting tickets that can no longer fit": the event, the
    /// ends in line order, then a dispatch.
    fn set_limit(&mut self, pool: u32, limit: u32, now: Millis) {
        self.limit[pool as usize] = limit;
        self.events.push(Ev::LimitChanged { pool, limit, cap: self.cap(pool), at: now });
        self.end_never_fitting(now);
        self.dispatch(now);
    }

    /// Ends, in line order, every waiting ticket that can never fit.
    fn end_never_fitting(&mut self, now: Millis) {
        let mut line: Vec<(i32, u64, u64)> = self
            .tickets
            .iter()
            .filter(|t| self.never_fits(&t.pools, t.class))
            .map(|t| (-priority(t.class), t.seq, t.id))
            .collect();
        line.sort();
        for (_, _, id) in line {
            let i = self.tickets.iter().position(|t| t.id == id).expect("waiting");
            let t = self.tickets.remove(i);
            self.ended.push((id, TicketOutcome::NeverFits, now, t.flow));
            self.events.push(Ev::TicketEnded { ticket: id, outcome: TicketOutcome::NeverFits, at: now });
        }
    }
}

fn call_id(k: u8) -> String {
    // Shaped like a provider's call id.
    format!("5f0c1e2a-{k:04x}-4bd7-9a51-0c3b7d2e9f10")
}

// ----- the invariants, checked on the real ledger alone ------------------------------------------

/// What the event stream says the ledger holds; every event is checked against it as it
/// arrives, so each grant is judged in the state it was made in.
struct Watch {
    world: World,
    limit: Vec<u32>,
    cap: Vec<u32>,
    used: Vec<u64>,
    live: BTreeMap<u64, Lease>,
    waiting: BTreeMap<u64, Ticket>,
    /// Every id ever handed out (leases and tickets).
    ids: HashSet<u64>,
    ended: HashSet<u64>,
    freed: HashSet<u64>,
    /// The time of the last completed tick, if any.
    last_tick: Option<Millis>,
}

impl Watch {
    fn new(world: &World) -> Watch {
        Watch {
            world: world.clone(),
            limit: world.limits.to_vec(),
            cap: world.limits.to_vec(),
            used: vec![0; 4],
            live: BTreeMap::new(),
            waiting: BTreeMap::new(),
            ids: HashSet::new(),
            ended: HashSet::new(),
            freed: HashSet::new(),
            last_tick: None,
        }
    }

    fn held_back(&self, p: u32, class: u16) -> i64 {
        self.world.reserves[p as usize]
            .iter()
            .filter(|&&(c, _)| priority(c) > priority(class))
            .map(|&(_, u)| i64::from(u))
            .sum()
    }

    fn fits(&self, p: u32, class: u16, units: u32) -> bool {
        i64::from(self.cap[p as usize]) - self.used[p as usize] as i64 - i64::from(units) >= self.held_back(p, class)
    }

    /// Whether a request could ever be granted: in each pool its units and the reserves
    /// above its class are within the limit.
    fn can_ever_fit(&self, pools: &[PoolUnits], class: u16) -> bool {
        pools
            .iter()
            .all(|pu| i64::from(pu.units) + self.held_back(pu.pool.0, class) <= i64::from(self.limit[pu.pool.index()]))
    }

    fn key_holder(&self, key: &str) -> Option<u64> {
        let lease = self.live.values().find(|l| l.key.as_deref() == Some(key)).map(|l| l.id.0);
        lease.or_else(|| self.waiting.values().find(|t| t.key.as_deref() == Some(key)).map(|t| t.id.0))
    }

    /// A ticket ends no later than its deadline plus one tick: past its deadline only if
    /// no tick has run since the deadline.
    fn ends_in_time(&self, t: &Ticket, at: Millis) -> Result<(), TestCaseError> {
        let ticked_since_deadline = self.last_tick.is_some_and(|tick| tick >= t.deadline);
        prop_assert!(
            at <= t.deadline || !ticked_since_deadline,
            "ticket {} ended at {at}, after its deadline {} and a tick",
            t.id,
            t.deadline
        );
        Ok(())
    }

    fn observe(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match e {
            Event::Granted { lease, from_ticket } => {
                prop_assert!(self.ids.insert(lease.id.0), "lease id {} handed out twice", lease.id);
                // The admission rule, with the line as it stood at the grant.
                let (class, seq) = match from_ticket {
                    Some((t, waited)) => {
                        let ticket = self.waiting.remove(&t.0);
                        prop_assert!(ticket.is_some(), "ticket {t} granted but not waiting");
                        let ticket = ticket.unwrap();
                        prop_assert!(self.ended.insert(t.0), "ticket {t} ended twice");
                        prop_assert_eq!(*waited, lease.granted_at.saturating_sub(ticket.enqueued_at));
                        prop_assert_eq!(&ticket.key, &lease.key);
                        prop_assert_eq!(pools_of(&ticket.pools), pools_of(&lease.pools));
                        self.ends_in_time(&ticket, lease.granted_at)?;
                        (ticket.class.0, ticket.seq)
                    }
                    // An arrival stands behind every waiting ticket of its priority.
                    None => (lease.class.0, u64::MAX),
                };
                if let Some(k) = &lease.key {
                    prop_assert_eq!(self.key_holder(k), None, "key {} counted twice", k);
                }
                let mut claimed = BTreeSet::new();
                for t in self.waiting.values().filter(|t| in_line_before(t.class.0, t.seq, class, seq)) {
                    for pu in t.pools.iter() {
                        if !self.fits(pu.pool.0, t.class.0, pu.units) {
                            claimed.insert(pu.pool.0);
                        }
                    }
                }
                for pu in lease.pools.iter() {
                    let p = pu.pool.index();
                    prop_assert!(
                        self.used[p] + u64::from(pu.units) <= u64::from(self.cap[p]),
                        "grant {} makes used > cap in {}",
                        lease.id,
                        POOLS[p]
                    );
                    prop_assert!(
                        self.fits(pu.pool.0, class, pu.units),
                        "grant {} breaks a reserve in {}",
                        lease.id,
                        POOLS[p]
                    );
                    prop_assert!(
                        !claimed.contains(&pu.pool.0),
                        "grant {} overtakes a waiting ticket in {}",
                        lease.id,
                        POOLS[p]
                    );
                }
                for pu in lease.pools.iter() {
                    self.used[pu.pool.index()] += u64::from(pu.units);
                }
                self.live.insert(lease.id.0, lease.clone());
            }
            Event::Queued { ticket, .. } => {
                prop_assert!(self.ids.insert(ticket.id.0), "ticket id {} handed out twice", ticket.id);
                if let Some(k) = &ticket.key {
                    prop_assert_eq!(self.key_holder(k), None, "key {} counted twice", k);
                }
                prop_assert!(
                    self.can_ever_fit(&ticket.pools, ticket.class.0),
                    "ticket {} waits though it can never fit",
                    ticket.id
                );
                self.waiting.insert(ticket.id.0, ticket.clone());
            }
            Event::Rejected { class, pools, reason, .. } => {
                let never = !self.can_ever_fit(pools, class.0);
                prop_assert_eq!(
                    never,
                    *reason == RejectReason::NeverFits,
                    "a refusal says never_fits iff it never fits"
                );
            }
            Event::Renewed { .. } => {}
            Event::Released { lease, at } | Event::Expired { lease, at } => {
                prop_assert!(self.freed.insert(lease.id.0), "lease {} freed twice", lease.id);
                let held = self.live.remove(&lease.id.0);
                prop_assert!(held.is_some(), "lease {} freed but not live", lease.id);
                if matches!(e, Event::Expired { .. }) {
                    prop_assert_eq!(*at, lease.expires_at, "a lease expires at its expiry");
                }
                for pu in lease.pools.iter() {
                    self.used[pu.pool.index()] -= u64::from(pu.units);
                }
            }
            Event::TicketEnded { ticket, outcome, at } => {
                prop_assert!(self.ended.insert(ticket.id.0), "ticket {} ended twice", ticket.id);
                prop_assert!(self.waiting.remove(&ticket.id.0).is_some(), "ticket {} ended but not waiting", ticket.id);
                if *outcome == TicketOutcome::TimedOut {
                    prop_assert_eq!(*at, ticket.deadline, "a ticket times out at its deadline");
                }
                if *outcome == TicketOutcome::NeverFits {
                    prop_assert!(
                        !self.can_ever_fit(&ticket.pools, ticket.class.0),
                        "ticket {} ended but fits",
                        ticket.id
                    );
                }
                self.ends_in_time(ticket, *at)?;
            }
            Event::LimitChanged { pool, cap, limit, .. } => {
                prop_assert!(cap <= limit);
                self.cap[pool.index()] = *cap;
                self.limit[pool.index()] = *limit;
            }
        }
        Ok(())
    }
}

/// The state a step left behind, judged from the ledger's own views.
fn check_settled(ledger: &Ledger, now: Millis, ticked: bool) -> Result<(), TestCaseError> {
    let pools = ledger.pools();
    // used equals the units of live leases.
    let mut used = vec![0u64; pools.len()];
    let mut by_class = vec![vec![0u64; ledger.class_count()]; pools.len()];
    for l in ledger.leases() {
        for pu in l.pools.iter() {
            used[pu.pool.index()] += u64::from(pu.units);
            by_class[pu.pool.index()][l.class.index()] += u64::from(pu.units);
        }
    }
    for ((v, u), c) in pools.iter().zip(&used).zip(&by_class) {
        prop_assert_eq!(v.used, *u, "used in {} is not the units of its leases", &v.name);
        prop_assert_eq!(&v.used_by_class, c, "use by class in {} is not the units of its leases", &v.name);
        prop_assert!(v.cap <= v.limit);
    }
    // A key names at most one live lease or waiting ticket, and finds it.
    let mut keys = HashSet::new();
    for l in ledger.leases() {
        if let Some(k) = &l.key {
            prop_assert!(keys.insert(k.clone()), "key {} held twice", k);
            prop_assert_eq!(ledger.lease_by_key(k).map(|x| x.id), Some(l.id));
        }
    }
    for t in ledger.tickets() {
        if let Some(k) = &t.key {
            prop_assert!(keys.insert(k.clone()), "key {} held twice", k);
            prop_assert_eq!(ledger.ticket_by_key(k).map(|x| x.id), Some(t.id));
        }
    }
    // The admission rule holds in the settled state: no waiting ticket is admissible.
    let fits = |p: PoolId, class: ClassId, units: u32| {
        let v = &pools[p.index()];
        let held_back: i64 = v
            .reserve
            .iter()
            .filter(|(c, _)| ledger.class_priority(*c) > ledger.class_priority(class))
            .map(|&(_, u)| i64::from(u))
            .sum();
        i64::from(v.cap) - v.used as i64 - i64::from(units) >= held_back
    };
    let before = |a: &Ticket, b: &Ticket| {
        let (pa, pb) = (ledger.class_priority(a.class), ledger.class_priority(b.class));
        pa > pb || (pa == pb && a.seq < b.seq)
    };
    for t in ledger.tickets() {
        let mut claimed = BTreeSet::new();
        for o in ledger.tickets().filter(|o| before(o, t)) {
            for pu in o.pools.iter() {
                if !fits(pu.pool, o.class, pu.units) {
                    claimed.insert(pu.pool);
                }
            }
        }
        let admissible = t.pools.iter().all(|pu| fits(pu.pool, t.class, pu.units) && !claimed.contains(&pu.pool));
        prop_assert!(!admissible, "ticket {} could be granted but waits", t.id);
        // No waiting ticket asks more than its pools' limits can ever give it: it would
        // claim them for everyone behind it until its deadline.
        for pu in t.pools.iter() {
            let v = &pools[pu.pool.index()];
            let held_back: u64 = v
                .reserve
                .iter()
                .filter(|(c, _)| ledger.class_priority(*c) > ledger.class_priority(t.class))
                .map(|&(_, u)| u64::from(u))
                .sum();
            prop_assert!(
                u64::from(pu.units) + held_back <= u64::from(v.limit),
                "ticket {} waits for more than {} can ever give it",
                t.id,
                &v.name
            );
        }
        if ticked {
            prop_assert!(t.deadline > now, "ticket {} is past its deadline after a tick", t.id);
        }
    }
    if ticked {
        for l in ledger.leases() {
            prop_assert!(l.expires_at > now, "lease {} outlived its expiry after a tick", l.id);
        }
    }
    Ok(())
}

// ----- the runner -------------------------------------------------------------------------------

fn run(world: World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let spec = world.spec();
    let mut ledger = Ledger::new(&spec).expect("the generated spec is valid");
    let mut model = Model::new(&world);
    let mut watch = Watch::new(&world);
    let mut now: Millis = 0;
    let mut last_tick: Millis = 0;
    // The longest stretch between a tick and a later operation: ended tickets may stay
    // readable this much beyond their retention (they are forgotten in the order they
    // ended, which can lag their time by that much).
    let mut max_gap: Millis = 0;
    let mut lease_ids: Vec<u64> = Vec::new();
    let mut ticket_ids: Vec<u64> = Vec::new();

    for (step, op) in ops.iter().enumerate() {
        let ctx = || format!("step {step}: {op:?}");
        let mut ticked = false;
        match op {
            Op::Flow { flow, key, max_wait, ttl } => {
                let mut req = Request::flow(FlowId(*flow as u32));
                req.key = key.map(|k| Arc::from(call_id(k)));
                req.max_wait_ms = *max_wait;
                req.ttl_ms = *ttl;
                let got = answer_of(ledger.acquire(req, now));
                let want = model.acquire(model.resolve(op).unwrap(), now);
                prop_assert_eq!(got, want, "{}", ctx());
            }
            Op::Pools { pools, class, key, max_wait, ttl } => {
                let units: Arc<[PoolUnits]> =
                    pools.iter().map(|&(p, units)| PoolUnits { pool: PoolId(p), units }).collect();
                let mut req = Request::pools(units, ClassId(*class)).with_max_wait(*max_wait);
                req.key = key.map(|k| Arc::from(call_id(k)));
                req.ttl_ms = *ttl;
                let got = answer_of(ledger.acquire(req, now));
                let want = model.acquire(model.resolve(op).unwrap(), now);
                prop_assert_eq!(got, want, "{}", ctx());
            }
            Op::Release { pick, stale } => {
                let id = pick_id(*pick, *stale, model.leases.iter().map(|l| l.id), &lease_ids);
                let got = ledger.release(LeaseId(id), now);
                prop_assert_eq!(got, model.release(id, now), "{}", ctx());
            }
            Op::ReleaseKey { key } => {
                let k = call_id(*key);
                let got = ledger.release_key(&k, now).map(|l| l.0);
                let want = model.leases.iter().find(|l| l.key.as_ref() == Some(&k)).map(|l| l.id);
                if let Some(id) = want {
                    model.release(id, now);
                }
                prop_assert_eq!(got, want, "{}", ctx());
            }
            Op::Renew { pick, stale, ttl } => {
                let id = pick_id(*pick, *stale, model.leases.iter().map(|l| l.id), &lease_ids);
                let got = ledger.renew(LeaseId(id), *ttl, now).map(|l| l.expires_at);
                prop_assert_eq!(got, model.renew(id, *ttl, now), "{}", ctx());
            }
            Op::Cancel { pick, stale } => {
                let id = pick_id(*pick, *stale, model.tickets.iter().map(|t| t.id), &ticket_ids);
                let got = ledger.cancel(TicketId(id), now);
                prop_assert_eq!(got, model.cancel(id, now), "{}", ctx());
            }
            Op::Tick { advance } => {
                now += advance;
                ledger.tick(now);
                model.tick(now);
                ticked = true;
            }
            Op::Wait { advance } => now += advance,
            Op::SetLimit { pool, limit } => {
                ledger.set_limit(PoolId(*pool), *limit, now);
                model.set_limit(*pool, *limit, now);
            }
            Op::SetCap { pool, cap } => {
                ledger.set_cap(PoolId(*pool), *cap, now);
                model.cap_override[*pool as usize] = *cap;
                model.cap_changed(*pool, now);
            }
            Op::Restart => {
                ledger = restart(&ledger, &world, &model, now)?;
                // Ended tickets are not part of the restored state.
                model.ended.clear();
                model.tick(now);
                model.end_never_fitting(now);
                model.dispatch(now);
                ticked = true;
            }
            Op::Malformed { kind } => {
                let seq = ledger.next_seq();
                let got = match kind {
                    0 => ledger.acquire(
                        Request::pools(vec![PoolUnits { pool: PoolId(ACCOUNT), units: 0 }], ClassId(VIP)),
                        now,
                    ),
                    1 => {
                        let twice = vec![
                            PoolUnits { pool: PoolId(ACCOUNT), units: 1 },
                            PoolUnits { pool: PoolId(ACCOUNT), units: 1 },
                        ];
                        ledger.acquire(Request::pools(twice, ClassId(VIP)), now)
                    }
                    2 => ledger
                        .acquire(Request::pools(vec![PoolUnits { pool: PoolId(ACCOUNT), units: 1 }], ClassId(9)), now),
                    _ => ledger.acquire(Request::flow(FlowId(99)), now),
                };
                prop_assert!(got.is_err(), "{}: {:?}", ctx(), got);
                prop_assert_eq!(ledger.next_seq(), seq, "a malformed request took a place in line");
            }
        }

        // The events of the step, the same on both sides, each a legal change.
        let events: Vec<Event> = ledger.drain_events().collect();
        let got: Vec<Ev> = events.iter().map(ev_of).collect();
        let want: Vec<Ev> = std::mem::take(&mut model.events);
        prop_assert_eq!(&got, &want, "{}", ctx());
        for e in &events {
            watch.observe(e).map_err(|err| TestCaseError::fail(format!("{}: {err}", ctx())))?;
            match e {
                Event::Granted { lease, .. } => lease_ids.push(lease.id.0),
                Event::Queued { ticket, .. } => ticket_ids.push(ticket.id.0),
                _ => {}
            }
        }
        max_gap = max_gap.max(now - last_tick);
        if ticked {
            last_tick = now;
            watch.last_tick = Some(now);
        }

        // The state after the step, the same on both sides.
        for p in 0..4u32 {
            let v = ledger.pool(PoolId(p));
            prop_assert_eq!(
                (v.limit, v.cap, v.used, v.waiting),
                (model.limit[p as usize], model.cap(p), model.used(p), model.waiting(p)),
                "{}: pool {}",
                ctx(),
                POOLS[p as usize]
            );
            prop_assert_eq!(v.used, watch.used[p as usize], "{}: events and state disagree", ctx());
        }
        let mut leases: Vec<MLease> = ledger.leases().map(lease_of).collect();
        leases.sort_by_key(|l| l.id);
        prop_assert_eq!(&leases, &model.leases, "{}", ctx());
        prop_assert_eq!(
            leases.iter().map(|l| l.id).collect::<Vec<_>>(),
            watch.live.keys().copied().collect::<Vec<_>>()
        );
        let mut tickets: Vec<MTicket> = ledger.tickets().map(ticket_of).collect();
        tickets.sort_by_key(|t| t.id);
        let mut want_tickets = model.tickets.clone();
        want_tickets.sort_by_key(|t| t.id);
        prop_assert_eq!(&tickets, &want_tickets, "{}", ctx());
        prop_assert_eq!(
            tickets.iter().map(|t| t.id).collect::<Vec<_>>(),
            watch.waiting.keys().copied().collect::<Vec<_>>()
        );

        // What a caller polling a ticket sees.
        for t in &model.tickets {
            let status = ledger.ticket_status(TicketId(t.id));
            let position = model.position(&t.pools, t.class, t.seq);
            prop_assert!(
                matches!(status, Some(TicketStatus::Waiting { position: p, deadline: d, .. }) if p == position && d == t.deadline),
                "{}: ticket {} shows {:?}, expected position {}",
                ctx(),
                t.id,
                status,
                position
            );
        }
        for &(id, outcome, at, flow) in &model.ended {
            let status = ledger.ticket_status(TicketId(id));
            if now < at + RETENTION_MS {
                let flow = flow.map(FlowId);
                prop_assert_eq!(status, Some(TicketStatus::Ended { outcome, at, flow }), "{}: ticket {}", ctx(), id);
            } else if last_tick >= at + RETENTION_MS + max_gap {
                prop_assert_eq!(status, None, "{}: ticket {} outlived its retention", ctx(), id);
            }
        }

        check_settled(&ledger, now, ticked).map_err(|err| TestCaseError::fail(format!("{}: {err}", ctx())))?;
    }
    Ok(())
}

/// An id to act on: one of `live`, or with `stale` (or nothing live) one of every id
/// ever handed out, or one never handed out.
fn pick_id(pick: usize, stale: bool, live: impl Iterator<Item = u64>, ever: &[u64]) -> u64 {
    let mut live: Vec<u64> = live.collect();
    live.sort_unstable();
    if !stale && !live.is_empty() {
        return live[pick % live.len()];
    }
    ever.get(pick % (ever.len() + 1)).copied().unwrap_or(u64::MAX / 2)
}

/// Builds a new ledger from what a journal would hold: the current limits and caps, the
/// live leases, the waiting tickets and the id counters, then settles it.
fn restart(old: &Ledger, world: &World, model: &Model, now: Millis) -> Result<Ledger, TestCaseError> {
    // The configured limits, then the runtime changes (a limit may now be below the
    // reserves, which a spec refuses but a runtime change may do).
    let mut ledger = Ledger::new(&world.spec()).expect("valid spec");
    for p in 0..4u32 {
        ledger.set_limit(PoolId(p), model.limit[p as usize], now);
        ledger.set_cap(PoolId(p), model.cap_override[p as usize], now);
    }
    ledger.drain_events().for_each(drop);
    // Restored in an order unrelated to the line: the line comes from class and arrival.
    let mut leases: Vec<Lease> = old.leases().cloned().collect();
    leases.sort_by_key(|l| std::cmp::Reverse(l.id));
    for lease in leases {
        prop_assert!(ledger.restore_lease(lease).is_ok());
    }
    let mut tickets: Vec<&Ticket> = old.tickets().collect();
    tickets.sort_by_key(|t| std::cmp::Reverse(t.id));
    for t in tickets {
        let stored = t.clone();
        prop_assert!(ledger.restore_ticket(stored).is_ok());
    }
    ledger.restore_counters(old.next_id(), old.next_seq());
    prop_assert_eq!(ledger.drain_events().count(), 0, "a restore publishes nothing");
    ledger.settle(now);
    Ok(ledger)
}

// ----- the property -------------------------------------------------------------------------

/// Cases per run by default: a few seconds of debug-mode work on a small machine.
const CASES: u32 = 512;

proptest! {
    #![proptest_config(Config {
        cases: CASES,
        rng_seed: RngSeed::Fixed(0x00ca_119a_7e00),
        ..Config::default()
    })]

    #[test]
    fn the_ledger_behaves_like_the_reference_model(world in world(), ops in prop::collection::vec(op(), 50..200)) {
        run(world, ops)?;
    }
}

/// The model itself, on the scenario DESIGN.md tells in prose, so that a wrong model
/// cannot make the property pass vacuously.
#[test]
fn the_model_serves_the_design_example() {
    let world = World { limits: [3, 5, 3, 4], reserves: [vec![(INBOUND, 1)], vec![], vec![], vec![]] };
    let mut m = Model::new(&world);
    let ask = |class: u16, max_wait: u64| Ask {
        pools: vec![(ACCOUNT, 1)],
        class,
        flow: None,
        key: None,
        ttl: 1_000,
        max_wait,
    };
    assert!(matches!(m.acquire(ask(OUTBOUND, 0), 0), Answer::Granted { .. }));
    assert!(matches!(m.acquire(ask(OUTBOUND, 0), 0), Answer::Granted { .. }));
    assert_eq!(m.acquire(ask(OUTBOUND, 0), 0), Answer::Rejected { reason: RejectReason::Capacity });
    assert!(matches!(m.acquire(ask(INBOUND, 0), 0), Answer::Granted { .. }));
    assert!(matches!(m.acquire(ask(INBOUND, 500), 0), Answer::Queued { position: 1, .. }));
    assert!(m.release(1, 10));
    assert!(m.tickets.is_empty());
    assert_eq!(m.used(ACCOUNT), 3);
}

/// The model's "never fits", on the example of DESIGN.md: limit 10 with 3 reserved for
/// inbound, so outbound can never have 8 however long it waits; a cap below the limit
/// is only today's and does not count.
#[test]
fn the_model_refuses_what_can_never_fit_and_ends_it_when_the_limit_drops() {
    let world = World { limits: [10, 5, 3, 4], reserves: [vec![(INBOUND, 3)], vec![], vec![], vec![]] };
    let mut m = Model::new(&world);
    let ask = |class: u16, units: u32| Ask {
        pools: vec![(ACCOUNT, units)],
        class,
        flow: None,
        key: None,
        ttl: 1_000,
        max_wait: 5_000,
    };
    assert_eq!(m.acquire(ask(OUTBOUND, 8), 0), Answer::Rejected { reason: RejectReason::NeverFits });
    m.cap_override[ACCOUNT as usize] = Some(2);
    assert!(matches!(m.acquire(ask(OUTBOUND, 5), 0), Answer::Queued { .. }));
    m.set_limit(ACCOUNT, 7, 1);
    assert!(matches!(m.ended[..], [(_, TicketOutcome::NeverFits, 1, None)]));
    assert!(m.tickets.is_empty());
}
