// Long file: the admission rule and its bookkeeping: every path that changes `used` is here, so the invariants can be checked in one read.
//! The ledger: exact, atomic admission over pools, with leases, tickets and events.
//!
//! # Semantics
//! A request of class `k` needs, in each pool `p` it names, `need = units + the units
//! reserved in p for classes with priority above k`; it *fits* when `need <= cap - used`.
//! Waiting tickets stand in line by priority (higher first) then arrival. A request is
//! granted when, in every pool it needs, the largest need among the waiting tickets ahead
//! of it *and its own* is at most `cap - used`. That is the claimed-pools rule of
//! DESIGN.md: a ticket ahead that does not fit a pool claims it, so nobody overtakes it
//! there, while a ticket that fits a pool but waits for another one claims nothing in the
//! first. The same rule decides arrivals and the dispatch that runs after every release,
//! expiry, cancellation, time-out and limit change.
//!
//! A request that asks a pool for more than its *limit* can ever give its class (units
//! plus the reserves above the class) is refused at once with `never_fits`: it would wait
//! to its deadline and claim the pool for everyone behind it. Lowering a limit ends the
//! waiting tickets that no longer fit it (outcome `NeverFits`), and so does a settle after
//! a restore. The cap does not count here: an adaptive or cooldown cap may rise again.
//!
//! # Cost
//! Per pool, the waiting tickets sit in a B-tree in line order and their needs in a small
//! multiset per class, so an arrival checks its pools in O(classes + log n). A dispatch
//! walks only the pools that changed, in line order, and stops in a pool as soon as the
//! pool is claimed: in the common single-pool flow a release grants at most what it freed
//! and costs O(log n), never a scan of every ticket.
//!
//! # Time
//! Nothing here reads a clock. Leases expire and tickets time out in [`Ledger::tick`], in
//! the order of their deadlines, each at its own deadline (an expiry at the same instant
//! as a ticket's deadline is processed first, in the caller's favour).

mod admit;
mod lease;
mod pool;
mod ticket;

#[cfg(test)]
mod tests;

pub use lease::Lease;
pub use ticket::{Ticket, TicketStatus};

use crate::event::{Event, RejectReason, TicketOutcome};
use crate::ids::{ClassId, FlowId, LeaseId, Millis, PoolId, PoolUnits, TicketId};
use crate::spec::{check_pools, LedgerSpec, QueueSpec, SpecError};
use lease::{Leases, Schedule};
use pool::{NeedSet, Order, Pool};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use ticket::Ended;

/// What a request asks for.
#[derive(Clone, Debug)]
pub enum Target {
    /// A configured flow (its pools, class, TTL and waiting room).
    Flow(FlowId),
    /// Explicit pools in a class.
    Pools {
        /// Pools and units.
        pools: Arc<[PoolUnits]>,
        /// The class.
        class: ClassId,
    },
}

/// One admission request.
#[derive(Clone, Debug)]
pub struct Request {
    /// What it asks for.
    pub target: Target,
    /// Idempotency key: a live lease or waiting ticket with this key is returned instead.
    pub key: Option<Arc<str>>,
    /// Lease TTL (ms); default: the flow's, else the ledger's.
    pub ttl_ms: Option<u64>,
    /// How long it may wait (ms); default: the flow's queue, else 0 (never wait). Through
    /// a flow without a waiting room a request never waits.
    pub max_wait_ms: Option<u64>,
    /// Opaque metadata stored with the lease.
    pub meta: Option<Arc<str>>,
    /// The name of the API key it was acquired with (`None`: by the server itself, e.g.
    /// a provider webhook or the dialer, or with no keys configured). Only that key (or
    /// an admin) may release, renew or cancel it.
    pub owner: Option<Arc<str>>,
}

impl Request {
    /// A request through a flow with every option at its default.
    pub fn flow(flow: FlowId) -> Self {
        Request { target: Target::Flow(flow), key: None, ttl_ms: None, max_wait_ms: None, meta: None, owner: None }
    }

    /// A request for explicit pools.
    pub fn pools(pools: impl Into<Arc<[PoolUnits]>>, class: ClassId) -> Self {
        Request {
            target: Target::Pools { pools: pools.into(), class },
            key: None,
            ttl_ms: None,
            max_wait_ms: None,
            meta: None,
            owner: None,
        }
    }

    /// Sets the owner (the name of the API key asking).
    pub fn with_owner(mut self, owner: impl Into<Arc<str>>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Sets the idempotency key.
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets how long the request may wait.
    pub fn with_max_wait(mut self, ms: u64) -> Self {
        self.max_wait_ms = Some(ms);
        self
    }

    /// Sets the lease TTL.
    pub fn with_ttl(mut self, ms: u64) -> Self {
        self.ttl_ms = Some(ms);
        self
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Granted: the lease.
    Granted {
        /// The lease id.
        lease: LeaseId,
        /// True when the key matched a live lease and nothing new was counted.
        existing: bool,
    },
    /// Waiting: the ticket.
    Queued {
        /// The ticket id.
        ticket: TicketId,
        /// 1 for the first in line.
        position: u32,
        /// Estimated wait (ms).
        eta_ms: u64,
        /// When it times out.
        deadline: Millis,
        /// True when the key matched a waiting ticket.
        existing: bool,
    },
    /// Refused.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// A hint for when capacity may be free again (ms).
        retry_after_ms: u64,
    },
}

/// A request the ledger cannot take (bad input, never a capacity answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Unknown flow id.
    UnknownFlow,
    /// Unknown class id.
    UnknownClass,
    /// Bad pool list (empty, unknown pool, pool twice, zero units).
    BadPools(String),
    /// A restore names an id or key that is already live.
    Duplicate,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::UnknownFlow => f.write_str("unknown flow"),
            RequestError::UnknownClass => f.write_str("unknown class"),
            RequestError::BadPools(why) => write!(f, "bad pools: {why}"),
            RequestError::Duplicate => f.write_str("an id or key that is already live"),
        }
    }
}

impl std::error::Error for RequestError {}

/// A read-only view of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolView {
    /// Its id.
    pub id: PoolId,
    /// Its name.
    pub name: Arc<str>,
    /// Configured limit.
    pub limit: u32,
    /// Effective cap.
    pub cap: u32,
    /// Units in use.
    pub used: u64,
    /// Units in use by class index (one entry per class; sums to `used`).
    pub used_by_class: Vec<u64>,
    /// Units reserved per class: `(class, units)` for classes with a reserve.
    pub reserve: Vec<(ClassId, u32)>,
    /// Waiting tickets that need this pool.
    pub waiting: u32,
    /// Mean hold time observed (ms).
    pub mean_hold_ms: u64,
}

#[derive(Clone, Copy, Debug)]
enum KeyRef {
    Lease(LeaseId),
    Ticket(TicketId),
}

struct Class {
    name: Arc<str>,
    priority: i32,
    /// Class indices whose tickets stand ahead of a new request of this class
    /// (priority greater or equal).
    ahead: Vec<ClassId>,
}

struct Flow {
    name: Arc<str>,
    pools: Arc<[PoolUnits]>,
    class: ClassId,
    lease_ttl_ms: u64,
    queue: Option<QueueSpec>,
    waiting: u32,
}

/// The admission ledger. See the module docs for the rule it enforces.
pub struct Ledger {
    classes: Vec<Class>,
    pools: Vec<Pool>,
    flows: Vec<Flow>,
    /// By id, in id order (ids grow in grant order).
    leases: Leases,
    tickets: FxHashMap<u64, Ticket>,
    keys: FxHashMap<Arc<str>, KeyRef>,
    ended: FxHashMap<u64, Ended>,
    ended_order: VecDeque<(Millis, u64)>,
    expiries: Schedule,
    deadlines: Schedule,
    next_id: u64,
    next_seq: u64,
    events: Vec<Event>,
    walks: Vec<admit::Walk>,
    default_ttl_ms: u64,
    retention_ms: u64,
    /// See [`LedgerSpec::pools_max_len`].
    pools_max_len: Option<u32>,
    /// Waiting tickets without a flow (requests that named pools directly).
    pools_waiting: u32,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("pools", &self.pools.len())
            .field("leases", &self.leases.len())
            .field("tickets", &self.tickets.len())
            .finish()
    }
}

impl Ledger {
    /// Builds a ledger; the spec is validated first.
    pub fn new(spec: &LedgerSpec) -> Result<Ledger, SpecError> {
        spec.validate()?;
        let classes: Vec<Class> = spec
            .classes
            .iter()
            .map(|c| Class {
                name: c.name.as_str().into(),
                priority: c.priority,
                ahead: spec
                    .classes
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.priority >= c.priority)
                    .map(|(i, _)| ClassId(i as u16))
                    .collect(),
            })
            .collect();
        let pools = spec
            .pools
            .iter()
            .map(|p| {
                let mut reserve = vec![0u32; classes.len()];
                for &(c, u) in &p.reserve {
                    reserve[c.index()] += u;
                }
                let reserved_above = classes
                    .iter()
                    .map(|k| {
                        classes
                            .iter()
                            .zip(&reserve)
                            .filter(|(c, _)| c.priority > k.priority)
                            .map(|(_, &u)| u64::from(u))
                            .sum()
                    })
                    .collect();
                Pool {
                    name: p.name.as_str().into(),
                    limit: p.limit,
                    cap: p.limit,
                    cap_override: None,
                    used: 0,
                    used_by_class: vec![0; classes.len()],
                    reserve,
                    reserved_above,
                    queue: BTreeMap::new(),
                    needs: vec![NeedSet::default(); classes.len()],
                    hold_ewma_ms: spec.default_hold_ms as f64,
                }
            })
            .collect();
        let flows = spec
            .flows
            .iter()
            .map(|f| Flow {
                name: f.name.as_str().into(),
                pools: f.pools.clone().into(),
                class: f.class,
                lease_ttl_ms: f.lease_ttl_ms,
                queue: f.queue,
                waiting: 0,
            })
            .collect();
        Ok(Ledger {
            classes,
            pools,
            flows,
            leases: Leases::default(),
            tickets: FxHashMap::default(),
            keys: FxHashMap::default(),
            ended: FxHashMap::default(),
            ended_order: VecDeque::new(),
            expiries: Schedule::default(),
            deadlines: Schedule::default(),
            next_id: 1,
            next_seq: 1,
            events: Vec::new(),
            walks: Vec::new(),
            default_ttl_ms: spec.default_lease_ttl_ms,
            retention_ms: spec.ticket_retention_ms,
            pools_max_len: spec.pools_max_len,
            pools_waiting: 0,
        })
    }

    // ----- lookups -------------------------------------------------------------------

    /// The id of the pool with this name.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools.iter().position(|p| &*p.name == name).map(|i| PoolId(i as u32))
    }

    /// The id of the class with this name.
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        self.classes.iter().position(|c| &*c.name == name).map(|i| ClassId(i as u16))
    }

    /// The id of the flow with this name.
    pub fn flow_id(&self, name: &str) -> Option<FlowId> {
        self.flows.iter().position(|f| &*f.name == name).map(|i| FlowId(i as u32))
    }

    /// A pool's name.
    pub fn pool_name(&self, id: PoolId) -> &Arc<str> {
        &self.pools[id.index()].name
    }

    /// A class's name.
    pub fn class_name(&self, id: ClassId) -> &Arc<str> {
        &self.classes[id.index()].name
    }

    /// A class's priority.
    pub fn class_priority(&self, id: ClassId) -> i32 {
        self.classes[id.index()].priority
    }

    /// A flow's name.
    pub fn flow_name(&self, id: FlowId) -> &Arc<str> {
        &self.flows[id.index()].name
    }

    /// A flow's class.
    pub fn flow_class(&self, id: FlowId) -> ClassId {
        self.flows[id.index()].class
    }

    /// A flow's pools.
    pub fn flow_pools(&self, id: FlowId) -> &Arc<[PoolUnits]> {
        &self.flows[id.index()].pools
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Number of classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Number of flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// A view of one pool.
    pub fn pool(&self, id: PoolId) -> PoolView {
        let p = &self.pools[id.index()];
        PoolView {
            id,
            name: p.name.clone(),
            limit: p.limit,
            cap: p.cap,
            used: p.used,
            used_by_class: p.used_by_class.clone(),
            reserve: p
                .reserve
                .iter()
                .enumerate()
                .filter(|(_, &u)| u > 0)
                .map(|(i, &u)| (ClassId(i as u16), u))
                .collect(),
            waiting: p.waiting(),
            mean_hold_ms: p.hold_ewma_ms as u64,
        }
    }

    /// Views of every pool, in table order.
    pub fn pools(&self) -> Vec<PoolView> {
        (0..self.pools.len()).map(|i| self.pool(PoolId(i as u32))).collect()
    }

    /// A live lease.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(id.0)
    }

    /// The live lease with this key.
    pub fn lease_by_key(&self, key: &str) -> Option<&Lease> {
        match self.keys.get(key) {
            Some(KeyRef::Lease(id)) => self.leases.get(id.0),
            _ => None,
        }
    }

    /// The waiting ticket with this key.
    pub fn ticket_by_key(&self, key: &str) -> Option<&Ticket> {
        match self.keys.get(key) {
            Some(KeyRef::Ticket(id)) => self.tickets.get(&id.0),
            _ => None,
        }
    }

    /// Every live lease, by id (the order they were granted in).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.after(None)
    }

    /// The live leases whose id is above `after`, by id: one page of a listing after
    /// another, each starting where the last stopped.
    pub fn leases_after(&self, after: LeaseId) -> impl Iterator<Item = &Lease> {
        self.leases.after(Some(after.0))
    }

    /// Every waiting ticket (in no particular order).
    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values()
    }

    /// Number of live leases.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Number of waiting tickets.
    pub fn ticket_count(&self) -> usize {
        self.tickets.len()
    }

    /// A waiting ticket.
    pub fn ticket(&self, id: TicketId) -> Option<&Ticket> {
        self.tickets.get(&id.0)
    }

    /// Waiting tickets of one pool in line order.
    pub fn waiting_in(&self, pool: PoolId) -> impl Iterator<Item = &Ticket> {
        self.pools[pool.index()].queue.values().filter_map(|t| self.tickets.get(&t.0))
    }

    /// What a ticket is now: waiting (with position), or how it ended (kept for the
    /// retention period).
    pub fn ticket_status(&self, id: TicketId) -> Option<TicketStatus> {
        if let Some(t) = self.tickets.get(&id.0) {
            let (position, eta_ms) = self.position_of(t);
            return Some(TicketStatus::Waiting { position, eta_ms, deadline: t.deadline });
        }
        self.ended.get(&id.0).map(|e| TicketStatus::Ended { outcome: e.outcome, at: e.at, flow: e.flow })
    }

    /// The earliest time at which [`Ledger::tick`] has work (an expiry or a deadline),
    /// possibly a stale entry (a tick then does nothing).
    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.expiries.peek(), self.deadlines.peek()) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.or(b).map(|e| e.0),
        }
    }

    /// Takes the events produced since the last call, oldest first.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Moves the events produced since the last call into `out`.
    pub fn take_events(&mut self, out: &mut Vec<Event>) {
        if out.is_empty() {
            // The same, without copying the events: the two buffers change places.
            std::mem::swap(out, &mut self.events);
        } else {
            out.append(&mut self.events);
        }
    }

    /// The next id the ledger will hand out (the journal persists it).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The next arrival sequence number (the journal persists it).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    // ----- operations ----------------------------------------------------------------

    /// Decides a request: grant, queue or reject.
    pub fn acquire(&mut self, req: Request, now: Millis) -> Result<Decision, RequestError> {
        let (pools, class, flow, ttl_ms, max_wait_ms) = match req.target {
            Target::Flow(f) => {
                let flow = self.flows.get(f.index()).ok_or(RequestError::UnknownFlow)?;
                (
                    flow.pools.clone(),
                    flow.class,
                    Some(f),
                    req.ttl_ms.unwrap_or(flow.lease_ttl_ms),
                    // A flow without a waiting room rejects at once, whatever the request asks.
                    flow.queue.map_or(0, |q| req.max_wait_ms.unwrap_or(q.max_wait_ms)),
                )
            }
            Target::Pools { pools, class } => {
                if class.index() >= self.classes.len() {
                    return Err(RequestError::UnknownClass);
                }
                check_pools(&pools, self.pools.len()).map_err(RequestError::BadPools)?;
                (pools, class, None, req.ttl_ms.unwrap_or(self.default_ttl_ms), req.max_wait_ms.unwrap_or(0))
            }
        };
        if let Some(key) = &req.key {
            match self.keys.get(&**key) {
                Some(KeyRef::Lease(id)) => return Ok(Decision::Granted { lease: *id, existing: true }),
                Some(KeyRef::Ticket(id)) => {
                    let t = &self.tickets[&id.0];
                    let (position, eta_ms) = self.position_of(t);
                    return Ok(Decision::Queued {
                        ticket: *id,
                        position,
                        eta_ms,
                        deadline: t.deadline,
                        existing: true,
                    });
                }
                None => {}
            }
        }
        // Before it takes a place in line: waiting cannot help it, and by the claimed-pools
        // rule it would hold up everyone behind it until its deadline.
        if !self.can_ever_fit(&pools, class) {
            let reason = RejectReason::NeverFits;
            self.events.push(Event::Rejected { class, pools, flow, key: req.key, reason, at: now });
            return Ok(Decision::Rejected { reason, retry_after_ms: 0 });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.admits_arrival(&pools, class) {
            let id = self.grant(pools, class, flow, req.key, ttl_ms, (req.meta, req.owner), now, None);
            return Ok(Decision::Granted { lease: id, existing: false });
        }
        let room = match flow {
            Some(f) => {
                let fl = &self.flows[f.index()];
                fl.queue.and_then(|q| q.max_len).is_none_or(|m| fl.waiting < m)
            }
            None => self.pools_max_len.is_none_or(|m| self.pools_waiting < m),
        };
        if max_wait_ms == 0 || !room {
            let reason = if max_wait_ms == 0 { RejectReason::Capacity } else { RejectReason::QueueFull };
            let retry_after_ms = self.retry_after(&pools);
            self.events.push(Event::Rejected { class, pools, flow, key: req.key, reason, at: now });
            return Ok(Decision::Rejected { reason, retry_after_ms });
        }
        let id = TicketId(self.next_id);
        self.next_id += 1;
        let ticket = Ticket {
            id,
            key: req.key,
            class,
            flow,
            pools,
            seq,
            enqueued_at: now,
            deadline: now.saturating_add(max_wait_ms),
            ttl_ms,
            meta: req.meta,
            owner: req.owner,
        };
        let (position, eta_ms) = self.arrival_position(&ticket);
        self.enqueue(ticket.clone());
        let deadline = ticket.deadline;
        self.events.push(Event::Queued { ticket, position });
        Ok(Decision::Queued { ticket: id, position, eta_ms, deadline, existing: false })
    }

    /// Releases a lease by id. True the first time; false when it is unknown, already
    /// released or expired (its units are freed exactly once).
    pub fn release(&mut self, id: LeaseId, now: Millis) -> bool {
        match self.leases.remove(id.0) {
            Some(lease) => {
                self.end_lease(lease, now, false);
                true
            }
            None => false,
        }
    }

    /// Releases the live lease with this key; returns its id the first time.
    pub fn release_key(&mut self, key: &str, now: Millis) -> Option<LeaseId> {
        let id = match self.keys.get(key) {
            Some(KeyRef::Lease(id)) => *id,
            _ => return None,
        };
        self.release(id, now).then_some(id)
    }

    /// Extends a live lease to `now + ttl` (the lease's own TTL when `None`).
    pub fn renew(&mut self, id: LeaseId, ttl_ms: Option<u64>, now: Millis) -> Option<&Lease> {
        let lease = self.leases.get_mut(id.0)?;
        if let Some(ttl) = ttl_ms {
            lease.ttl_ms = ttl;
        }
        lease.expires_at = now.saturating_add(lease.ttl_ms);
        self.expiries.push(lease.expires_at, id.0);
        self.events.push(Event::Renewed { lease: id, expires_at: lease.expires_at, ttl_ms: lease.ttl_ms, at: now });
        self.leases.get(id.0)
    }

    /// Cancels a waiting ticket (the caller hung up). True the first time.
    pub fn cancel(&mut self, id: TicketId, now: Millis) -> bool {
        match self.dequeue(id) {
            Some(t) => {
                let pools = t.pools.clone();
                self.end_ticket(t, TicketOutcome::Cancelled, now);
                self.dispatch(pools.iter().map(|p| p.pool), now);
                true
            }
            None => false,
        }
    }

    /// Expires leases and times out tickets whose time has come, each at its own time
    /// and in time order, dispatching after each; forgets old ticket outcomes.
    pub fn tick(&mut self, now: Millis) {
        loop {
            let lease_due = self.next_live_expiry().filter(|&(at, _)| at <= now);
            let ticket_due = self.next_live_deadline().filter(|&(at, _)| at <= now);
            match (lease_due, ticket_due) {
                (Some((at, id)), t) if t.is_none_or(|(dt, _)| at <= dt) => {
                    self.expiries.pop();
                    let lease = self.leases.remove(id).expect("live expiry");
                    self.end_lease(lease, at, true);
                }
                (_, Some((at, id))) => {
                    self.deadlines.pop();
                    let t = self.dequeue(TicketId(id)).expect("live deadline");
                    let pools = t.pools.clone();
                    self.end_ticket(t, TicketOutcome::TimedOut, at);
                    self.dispatch(pools.iter().map(|p| p.pool), at);
                }
                _ => break,
            }
        }
        self.forget_ended(now);
        let live = &self.leases;
        self.expiries.compact_if_needed(live.len(), |at, id| live.get(id).is_some_and(|l| l.expires_at == at));
        let waiting = &self.tickets;
        self.deadlines.compact_if_needed(waiting.len(), |at, id| waiting.get(&id).is_some_and(|t| t.deadline == at));
    }

    /// Changes a pool's configured limit. Lowering it revokes no lease, but ends the
    /// waiting tickets that can no longer fit (outcome [`TicketOutcome::NeverFits`], in
    /// line order, after the limit event) and dispatches the lines they stood in; raising
    /// it dispatches waiting tickets at once.
    pub fn set_limit(&mut self, pool: PoolId, limit: u32, now: Millis) {
        let p = &mut self.pools[pool.index()];
        let lowered = limit < p.limit;
        p.limit = limit;
        let raised = self.update_cap(pool, now);
        let mut changed = vec![pool];
        let mut ended = false;
        if lowered {
            let doomed: Vec<TicketId> = {
                let p = &self.pools[pool.index()];
                p.queue
                    .values()
                    .filter(|t| {
                        let t = &self.tickets[&t.0];
                        t.pools.iter().any(|pu| pu.pool == pool && !p.can_ever_fit(t.class, pu.units))
                    })
                    .copied()
                    .collect()
            };
            ended = !doomed.is_empty();
            self.end_never_fitting(doomed, &mut changed, now);
        }
        if raised || ended {
            self.dispatch(changed, now);
        }
    }

    /// Replaces a pool's reserves (`(class, units)`; classes left out reserve nothing), as
    /// a schedule asks. Revokes no lease; waiting tickets are placed again by their new
    /// needs, those that can no longer fit end ([`TicketOutcome::NeverFits`]), and what
    /// now fits is granted. False (and nothing changes) for an unknown pool or class, or
    /// reserves that add up to more than the limit.
    pub fn set_reserve(&mut self, pool: PoolId, reserve: &[(ClassId, u32)], now: Millis) -> bool {
        let classes = self.classes.len();
        let Some(p) = self.pools.get(pool.index()) else { return false };
        let mut units = vec![0u32; classes];
        for &(c, u) in reserve {
            let Some(slot) = units.get_mut(c.index()) else { return false };
            *slot = slot.saturating_add(u);
        }
        if units.iter().map(|&u| u64::from(u)).sum::<u64>() > u64::from(p.limit) {
            return false;
        }
        let above: Vec<u64> = self
            .classes
            .iter()
            .map(|k| {
                self.classes
                    .iter()
                    .zip(&units)
                    .filter(|(c, _)| c.priority > k.priority)
                    .map(|(_, &u)| u64::from(u))
                    .sum()
            })
            .collect();
        let p = &mut self.pools[pool.index()];
        p.reserve = units;
        p.reserved_above = above;
        let mut needs = vec![NeedSet::default(); classes];
        let mut doomed = Vec::new();
        for id in p.queue.values() {
            let Some(t) = self.tickets.get(&id.0) else { continue };
            for pu in t.pools.iter().filter(|pu| pu.pool == pool) {
                needs[t.class.index()].insert(p.need(t.class, pu.units));
                if !p.can_ever_fit(t.class, pu.units) {
                    doomed.push(*id);
                }
            }
        }
        p.needs = needs;
        let mut changed = vec![pool];
        self.end_never_fitting(doomed, &mut changed, now);
        self.dispatch(changed, now);
        true
    }

    /// Units reserved in `pool` per class (by class index).
    pub fn reserve(&self, pool: PoolId) -> &[u32] {
        self.pools.get(pool.index()).map_or(&[], |p| &p.reserve)
    }

    /// Sets (or with `None` clears) a cap below the limit, as adaptive limiting or a
    /// breaker asks. The effective cap is `min(limit, cap)`.
    pub fn set_cap(&mut self, pool: PoolId, cap: Option<u32>, now: Millis) {
        self.pools[pool.index()].cap_override = cap;
        self.apply_cap(pool, now);
    }

    fn apply_cap(&mut self, pool: PoolId, now: Millis) {
        if self.update_cap(pool, now) {
            self.dispatch([pool], now);
        }
    }

    /// Recomputes a pool's effective cap and publishes it; true when it rose.
    fn update_cap(&mut self, pool: PoolId, now: Millis) -> bool {
        let p = &mut self.pools[pool.index()];
        let cap = p.cap_override.map_or(p.limit, |c| c.min(p.limit));
        let raised = cap > p.cap;
        p.cap = cap;
        self.events.push(Event::LimitChanged { pool, limit: p.limit, cap, at: now });
        raised
    }

    /// Whether a request of `class` for `pools` could ever be granted: in every pool its
    /// need is at most the limit.
    fn can_ever_fit(&self, pools: &[PoolUnits], class: ClassId) -> bool {
        pools.iter().all(|pu| self.pools[pu.pool.index()].can_ever_fit(class, pu.units))
    }

    /// Ends these waiting tickets as [`TicketOutcome::NeverFits`], in the given order, and
    /// adds the pools they stood in to `changed` (a dispatch there may now grant the
    /// tickets they held up).
    fn end_never_fitting(&mut self, doomed: Vec<TicketId>, changed: &mut Vec<PoolId>, now: Millis) {
        for id in doomed {
            if let Some(t) = self.dequeue(id) {
                for pu in t.pools.iter() {
                    if !changed.contains(&pu.pool) {
                        changed.push(pu.pool);
                    }
                }
                self.end_ticket(t, TicketOutcome::NeverFits, now);
            }
        }
    }

    // ----- restore (from a journal) --------------------------------------------------

    /// Puts back a lease that was granted before a restart, as it was (even above the
    /// cap: an acknowledged lease is never dropped). Emits no event.
    pub fn restore_lease(&mut self, lease: Lease) -> Result<(), RequestError> {
        if lease.class.index() >= self.classes.len() {
            return Err(RequestError::UnknownClass);
        }
        check_pools(&lease.pools, self.pools.len()).map_err(RequestError::BadPools)?;
        if self.is_live(lease.id.0, lease.key.as_deref()) {
            return Err(RequestError::Duplicate);
        }
        for pu in lease.pools.iter() {
            let p = &mut self.pools[pu.pool.index()];
            p.used += u64::from(pu.units);
            p.used_by_class[lease.class.index()] += u64::from(pu.units);
        }
        if let Some(k) = &lease.key {
            self.keys.insert(k.clone(), KeyRef::Lease(lease.id));
        }
        self.next_id = self.next_id.max(lease.id.0 + 1);
        self.expiries.push(lease.expires_at, lease.id.0);
        self.leases.insert(lease);
        Ok(())
    }

    /// Puts back a ticket that was waiting before a restart, in its old place in line.
    /// Emits no event.
    pub fn restore_ticket(&mut self, t: Ticket) -> Result<(), RequestError> {
        if t.class.index() >= self.classes.len() {
            return Err(RequestError::UnknownClass);
        }
        check_pools(&t.pools, self.pools.len()).map_err(RequestError::BadPools)?;
        if self.is_live(t.id.0, t.key.as_deref()) {
            return Err(RequestError::Duplicate);
        }
        self.next_id = self.next_id.max(t.id.0 + 1);
        self.next_seq = self.next_seq.max(t.seq + 1);
        self.enqueue(t);
        Ok(())
    }

    /// Raises the id and sequence counters to at least these values (the journal's
    /// high-water marks), so ids are never reused across restarts.
    pub fn restore_counters(&mut self, next_id: u64, next_seq: u64) {
        self.next_id = self.next_id.max(next_id);
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// Puts back how a ticket ended before a restart, so that a waiter who asks again
    /// within the retention time learns the real outcome. Outcomes must be restored in
    /// the order they happened (the oldest is forgotten first). Emits no event; ignored
    /// for a ticket that is waiting or already remembered.
    pub fn restore_ended(&mut self, id: TicketId, outcome: TicketOutcome, at: Millis, flow: Option<FlowId>) {
        if self.tickets.contains_key(&id.0) || self.ended.contains_key(&id.0) {
            return;
        }
        self.next_id = self.next_id.max(id.0 + 1);
        self.remember(id, Ended { outcome, at, flow });
    }

    /// How recent tickets ended, oldest end first, as a journal keeps them: `(ticket,
    /// outcome, when, flow)`. A configuration reload rebuilds the ledger from these, the
    /// live leases and the waiting tickets, the way a restart does from the journal.
    pub fn ended_tickets(&self) -> impl Iterator<Item = (TicketId, TicketOutcome, Millis, Option<FlowId>)> + '_ {
        self.ended_order.iter().filter_map(|&(at, id)| {
            self.ended.get(&id).filter(|e| e.at == at).map(|e| (TicketId(id), e.outcome, e.at, e.flow))
        })
    }

    /// The mean hold time (ms) of a pool's ended leases, behind `eta_ms` and
    /// `Retry-After`; the journal keeps it across restarts.
    pub fn mean_hold_ms(&self, pool: PoolId) -> u64 {
        self.pools.get(pool.index()).map_or(0, |p| p.hold_ewma_ms as u64)
    }

    /// Puts back a pool's mean hold time as it was before a restart. Emits no event.
    pub fn restore_mean_hold(&mut self, pool: PoolId, ms: u64) {
        if let Some(p) = self.pools.get_mut(pool.index()) {
            p.hold_ewma_ms = ms as f64;
        }
    }

    /// After a restore: expires and times out what is due, ends the waiting tickets that
    /// can never fit (a journal written before that rule, or a limit restored below
    /// them), in line order, then dispatches every pool.
    pub fn settle(&mut self, now: Millis) {
        self.tick(now);
        let mut doomed: Vec<&Ticket> =
            self.tickets.values().filter(|t| !self.can_ever_fit(&t.pools, t.class)).collect();
        doomed.sort_by_key(|t| self.order_of(t));
        let doomed: Vec<TicketId> = doomed.into_iter().map(|t| t.id).collect();
        self.end_never_fitting(doomed, &mut Vec::new(), now);
        self.dispatch((0..self.pools.len() as u32).map(PoolId), now);
    }

    // ----- internals -----------------------------------------------------------------

    /// Whether an id or a key is taken by a live lease or a waiting ticket.
    fn is_live(&self, id: u64, key: Option<&str>) -> bool {
        self.leases.contains(id) || self.tickets.contains_key(&id) || key.is_some_and(|k| self.keys.contains_key(k))
    }

    fn next_live_expiry(&mut self) -> Option<(Millis, u64)> {
        while let Some((at, id)) = self.expiries.peek() {
            if self.leases.get(id).is_some_and(|l| l.expires_at == at) {
                return Some((at, id));
            }
            self.expiries.pop();
        }
        None
    }

    fn next_live_deadline(&mut self) -> Option<(Millis, u64)> {
        while let Some((at, id)) = self.deadlines.peek() {
            if self.tickets.get(&id).is_some_and(|t| t.deadline == at) {
                return Some((at, id));
            }
            self.deadlines.pop();
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        pools: Arc<[PoolUnits]>,
        class: ClassId,
        flow: Option<FlowId>,
        key: Option<Arc<str>>,
        ttl_ms: u64,
        (meta, owner): (Option<Arc<str>>, Option<Arc<str>>),
        now: Millis,
        from_ticket: Option<(TicketId, Millis)>,
    ) -> LeaseId {
        let id = LeaseId(self.next_id);
        self.next_id += 1;
        for pu in pools.iter() {
            let p = &mut self.pools[pu.pool.index()];
            p.used += u64::from(pu.units);
            p.used_by_class[class.index()] += u64::from(pu.units);
        }
        if let Some(k) = &key {
            self.keys.insert(k.clone(), KeyRef::Lease(id));
        }
        let lease = Lease {
            id,
            key,
            class,
            flow,
            pools,
            granted_at: now,
            expires_at: now.saturating_add(ttl_ms),
            ttl_ms,
            meta,
            owner,
        };
        self.expiries.push(lease.expires_at, id.0);
        self.events.push(Event::Granted { lease: lease.clone(), from_ticket });
        self.leases.insert(lease);
        id
    }

    fn end_lease(&mut self, lease: Lease, at: Millis, expired: bool) {
        let held = at.saturating_sub(lease.granted_at);
        let mut contended = false;
        for pu in lease.pools.iter() {
            let p = &mut self.pools[pu.pool.index()];
            p.used -= u64::from(pu.units);
            p.used_by_class[lease.class.index()] -= u64::from(pu.units);
            p.observe_hold(held);
            contended |= !p.queue.is_empty();
        }
        if let Some(k) = &lease.key {
            self.keys.remove(k);
        }
        // The pool list outlives the lease (which moves into the event) only when a
        // dispatch needs it: an uncontended release then costs no reference count.
        let pools = contended.then(|| lease.pools.clone());
        self.events.push(if expired { Event::Expired { lease, at } } else { Event::Released { lease, at } });
        if let Some(pools) = pools {
            self.dispatch(pools.iter().map(|p| p.pool), at);
        }
    }

    /// A ticket's place in line: its class's priority, then its arrival.
    pub(super) fn order_of(&self, t: &Ticket) -> Order {
        Order { rank: -i64::from(self.classes[t.class.index()].priority), seq: t.seq }
    }

    fn enqueue(&mut self, ticket: Ticket) {
        let order = self.order_of(&ticket);
        for pu in ticket.pools.iter() {
            let p = &mut self.pools[pu.pool.index()];
            p.queue.insert(order, ticket.id);
            let need = p.need(ticket.class, pu.units);
            p.needs[ticket.class.index()].insert(need);
        }
        match ticket.flow {
            Some(f) => self.flows[f.index()].waiting += 1,
            None => self.pools_waiting += 1,
        }
        if let Some(k) = &ticket.key {
            self.keys.insert(k.clone(), KeyRef::Ticket(ticket.id));
        }
        self.deadlines.push(ticket.deadline, ticket.id.0);
        self.tickets.insert(ticket.id.0, ticket);
        // Granted and cancelled tickets leave their deadlines behind; dropped here too
        // (not only in `tick`), they never pile up to be popped one by one when a tick
        // comes, and `next_deadline` rarely wakes anyone for nothing.
        let waiting = &self.tickets;
        self.deadlines.compact_if_needed(waiting.len(), |at, id| waiting.get(&id).is_some_and(|t| t.deadline == at));
    }

    /// Takes a waiting ticket out of every line it stands in (its key goes too).
    fn dequeue(&mut self, id: TicketId) -> Option<Ticket> {
        let t = self.tickets.remove(&id.0)?;
        let order = self.order_of(&t);
        for pu in t.pools.iter() {
            let p = &mut self.pools[pu.pool.index()];
            p.queue.remove(&order);
            let need = p.need(t.class, pu.units);
            p.needs[t.class.index()].remove(need);
        }
        match t.flow {
            Some(f) => self.flows[f.index()].waiting -= 1,
            None => self.pools_waiting -= 1,
        }
        if let Some(k) = &t.key {
            self.keys.remove(k);
        }
        Some(t)
    }

    fn end_ticket(&mut self, ticket: Ticket, outcome: TicketOutcome, at: Millis) {
        self.remember(ticket.id, Ended { outcome, at, flow: ticket.flow });
        self.events.push(Event::TicketEnded { ticket, outcome, at });
    }

    fn remember(&mut self, id: TicketId, ended: Ended) {
        self.ended.insert(id.0, ended);
        self.ended_order.push_back((ended.at, id.0));
        // Also here, not only in `tick`: a ledger ticked only when a deadline is due (the
        // simulator's) then keeps no more outcomes than the retention time's.
        self.forget_ended(ended.at);
    }

    /// Forgets the outcomes that ended at least the retention time before `now`.
    fn forget_ended(&mut self, now: Millis) {
        while let Some(&(at, id)) = self.ended_order.front() {
            if at.saturating_add(self.retention_ms) > now {
                break;
            }
            self.ended_order.pop_front();
            self.ended.remove(&id);
        }
    }

    /// Position (1-based) and estimated wait of a waiting ticket: its place in the
    /// longest line it stands in.
    fn position_of(&self, t: &Ticket) -> (u32, u64) {
        let order = self.order_of(t);
        t.pools
            .iter()
            .map(|pu| {
                let p = &self.pools[pu.pool.index()];
                let ahead = p.queue.range(..order).count() as u32;
                (ahead + 1, p.eta_ms(ahead))
            })
            .max()
            .unwrap_or((1, 0))
    }

    /// Position and estimate of a new arrival: everything of its priority or higher is
    /// ahead of it (computed from the class counts, without walking the line).
    fn arrival_position(&self, t: &Ticket) -> (u32, u64) {
        let ahead_classes = &self.classes[t.class.index()].ahead;
        t.pools
            .iter()
            .map(|pu| {
                let p = &self.pools[pu.pool.index()];
                let ahead: u32 = ahead_classes.iter().map(|c| p.needs[c.index()].len()).sum();
                (ahead + 1, p.eta_ms(ahead))
            })
            .max()
            .unwrap_or((1, 0))
    }

    fn retry_after(&self, pools: &[PoolUnits]) -> u64 {
        // The expected time until the busiest pool frees a unit: its mean hold time
        // over the calls in progress; clamped so clients neither spin nor sleep for ages.
        pools
            .iter()
            .map(|pu| {
                let p = &self.pools[pu.pool.index()];
                (p.hold_ewma_ms / p.used.max(1) as f64) as u64
            })
            .max()
            .unwrap_or(1000)
            .clamp(1000, 300_000)
    }
}
