//! The ledger a node keeps on its own while Redis is unreachable (`local_fallback`): the
//! configuration's ledger with each pool capped at this node's share, ids from a block the
//! shared ledger never hands out, no waiting room, and what must reach Redis when it is
//! back (the leases granted here, live or ended, and what was asked of leases Redis holds).
//! Pure: no I/O, so the rules are tested here.

use callgate_backend::{reference, Command, Error, LeaseRef, Outcome};
use callgate_config::RedisUnavailable;
use callgate_core::{Event, Lease, Ledger, LedgerSpec, PoolId, PoolUnits, PoolView, Target};
use callgate_store_redis::adopt::Adopted;
use std::sync::Arc;

/// At most this many ended leases and this many changes of Redis's leases are kept for
/// when Redis is back (then a release or renewal of a lease Redis holds answers 503 without
/// being kept; an ended lease beyond it is only logged: it holds nothing).
pub(super) const MAX_KEPT: usize = 100_000;

/// What a pool's share is: `(effective cap - units in use) / nodes`, rounded down, for a
/// pool with `local_fallback`; nothing for one that fails closed. `in_use` counts every
/// node's leases the shared ledger held (as last seen, with this node's own grants not yet
/// seen on the stream and its acquires whose answer was lost), so the nodes' shares and
/// what Redis held never add up to more than the cap.
pub(super) fn share(policy: RedisUnavailable, cap: u32, in_use: u64, nodes: u32) -> u32 {
    match policy {
        RedisUnavailable::FailClosed => 0,
        RedisUnavailable::LocalFallback => {
            let free = u64::from(cap).saturating_sub(in_use);
            u32::try_from(free / u64::from(nodes.max(1))).unwrap_or(u32::MAX)
        }
    }
}

/// A change asked of a lease the shared ledger holds, made in Redis when it is back.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Pending {
    Release(LeaseRef, Option<Arc<str>>),
    Renew(LeaseRef, Option<u64>, Option<Arc<str>>),
    EndCall(Arc<str>),
}

impl Pending {
    pub(super) fn command(&self) -> Command {
        match self.clone() {
            Pending::Release(lease, owner) => Command::Release { lease, owner },
            Pending::Renew(lease, ttl_ms, owner) => Command::Renew { lease, ttl_ms, owner },
            Pending::EndCall(key) => Command::EndCall(key),
        }
    }
}

/// The node's own ledger in fallback.
pub(super) struct Local {
    ledger: Ledger,
    policy: Vec<RedisUnavailable>,
    /// This node's cap of each pool (its share).
    caps: Vec<u32>,
    /// The last id of the block the ids come from.
    last_id: u64,
    /// Leases granted here that ended here (released or expired).
    pub(super) ended: Vec<Adopted>,
    /// Changes of Redis's leases, in the order asked.
    pub(super) pending: Vec<Pending>,
    /// When the node went into fallback (its clock).
    pub(super) since: u64,
    /// When its fallback ends (its clock): no lease granted or renewed here runs past it,
    /// and from then on it grants and renews nothing (the shared ledger stops holding its
    /// share back a little after, see `presence`).
    until: u64,
    /// Each flow's lease TTL, and the TTL of a lease of pools without a flow.
    ttls: (Vec<u64>, u64),
    /// With PostgreSQL: grants made here whose commit is not known durable yet, with the
    /// commit (a retry by key that finds one answers 503 until it is settled).
    pub(super) unsettled: Vec<(u64, callgate_core::LeaseId)>,
}

impl Local {
    /// A local ledger for `spec`, each pool capped at `caps`, its ids from `first..=last`,
    /// admitting until `until`.
    pub(super) fn new(
        spec: &LedgerSpec,
        policy: Vec<RedisUnavailable>,
        caps: Vec<u32>,
        (first, last): (u64, u64),
        now: u64,
        until: u64,
    ) -> Result<Local, Error> {
        let mut ledger = Ledger::new(spec).map_err(|e| Error::internal(format!("the local ledger: {e}")))?;
        for (i, cap) in caps.iter().enumerate() {
            ledger.set_cap(PoolId(i as u32), Some(*cap), now);
        }
        ledger.restore_counters(first, 1);
        ledger.drain_events();
        Ok(Local {
            ledger,
            policy,
            caps,
            last_id: last,
            ended: Vec::new(),
            pending: Vec::new(),
            since: now,
            until,
            ttls: (spec.flows.iter().map(|f| f.lease_ttl_ms).collect(), spec.default_lease_ttl_ms),
            unsettled: Vec::new(),
        })
    }

    /// Each pool as this node admits it now: `cap` its local cap, `used` its local grants.
    pub(super) fn pools(&self) -> Vec<PoolView> {
        self.ledger.pools()
    }

    /// This node's local cap of each pool.
    pub(super) fn caps(&self) -> &[u32] {
        &self.caps
    }

    /// The ledger (reads).
    pub(super) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// What must reach Redis: the live leases granted here and those that ended here.
    pub(super) fn to_adopt(&self) -> Vec<Adopted> {
        let live = self.ledger.leases().map(|l| Adopted { lease: l.clone(), ended: None, expired: false });
        let mut all: Vec<Adopted> = live.collect();
        all.extend(self.ended.iter().cloned());
        all.sort_by_key(|a| a.lease.id);
        all
    }

    fn pools_of(&self, target: &Target) -> Option<Arc<[PoolUnits]>> {
        match target {
            Target::Flow(f) => (f.index() < self.ledger.flow_count()).then(|| self.ledger.flow_pools(*f).clone()),
            Target::Pools { pools, .. } => Some(pools.clone()),
        }
    }

    fn knows(&self, lease: &LeaseRef) -> bool {
        match lease {
            LeaseRef::Id(id) => self.ledger.lease(*id).is_some(),
            LeaseRef::Key(k) => self.ledger.lease_by_key(k).is_some(),
        }
    }

    /// Keeps a change of a lease Redis holds for when it is back; answers that it was kept.
    fn keep(&mut self, change: Pending) -> Error {
        if self.pending.contains(&change) {
            return queued();
        }
        if self.pending.len() >= MAX_KEPT {
            return Error::unavailable("Redis is unreachable and too many changes wait for it; retry later");
        }
        self.pending.push(change);
        queued()
    }

    /// Runs `cmd` on the local ledger at `now` (this node's clock): the outcome and its
    /// events. Leases that fell due expire first.
    pub(super) fn execute(&mut self, cmd: Command, now: u64) -> Result<(Outcome, Vec<Event>), Error> {
        self.ledger.tick(now);
        let mut events: Vec<Event> = self.ledger.drain_events().collect();
        let cmd = match cmd {
            Command::Acquire(mut req) => {
                let pools = self
                    .pools_of(&req.target)
                    .ok_or_else(|| Error::request(callgate_core::RequestError::UnknownFlow))?;
                if let Some(pu) =
                    pools.iter().find(|pu| self.policy.get(pu.pool.index()) != Some(&RedisUnavailable::LocalFallback))
                {
                    return Err(Error::unavailable(format!(
                        "Redis is unreachable and pool {} fails closed (on_redis_unavailable = \"fail_closed\")",
                        self.ledger.pool_name(pu.pool)
                    )));
                }
                // A new lease needs an id from the block (a retry with a live key does not).
                let existing = req.key.as_deref().is_some_and(|k| self.ledger.lease_by_key(k).is_some());
                if !existing && self.ledger.next_id() > self.last_id {
                    return Err(Error::unavailable("Redis is unreachable and this node's block of ids is used up"));
                }
                // Nobody waits in fallback: a waiting line across nodes needs Redis.
                req.max_wait_ms = Some(0);
                let ttl = req.ttl_ms.unwrap_or(match req.target {
                    Target::Flow(f) => self.ttls.0.get(f.index()).copied().unwrap_or(self.ttls.1),
                    Target::Pools { .. } => self.ttls.1,
                });
                req.ttl_ms = Some(self.within_fallback(ttl, now)?);
                Command::Acquire(req)
            }
            Command::Release { lease, owner } if !self.knows(&lease) => {
                return Err(self.keep(Pending::Release(lease, owner)));
            }
            Command::Renew { lease, ttl_ms, owner } if !self.knows(&lease) => {
                return Err(self.keep(Pending::Renew(lease, ttl_ms, owner)));
            }
            Command::EndCall(key) if self.ledger.lease_by_key(&key).is_none() => {
                return Err(self.keep(Pending::EndCall(key)));
            }
            Command::Renew { lease, ttl_ms, owner } => {
                let ttl = ttl_ms.or_else(|| self.lease(&lease).map(|l| l.ttl_ms)).unwrap_or(self.ttls.1);
                Command::Renew { lease, ttl_ms: Some(self.within_fallback(ttl, now)?), owner }
            }
            cmd @ (Command::Release { .. } | Command::EndCall(_) | Command::Tick) => cmd,
            Command::Settle => Command::Tick,
            _ => return Err(Error::unavailable("Redis is unreachable: only admission runs on this node's own share")),
        };
        let outcome = reference::apply(&mut self.ledger, cmd, now)?;
        events.extend(self.ledger.drain_events());
        self.note_ends(&events);
        Ok((outcome, events))
    }

    /// `ttl` cut so that a lease granted or renewed at `now` ends by the end of the
    /// fallback; unavailable once it has ended.
    fn within_fallback(&self, ttl: u64, now: u64) -> Result<u64, Error> {
        match self.until.checked_sub(now).filter(|left| *left > 0) {
            Some(left) => Ok(ttl.min(left)),
            None => Err(Error::unavailable(
                "Redis is unreachable and this node's local fallback has run its longest ([storage] fallback_max): \
                 every pool fails closed until Redis answers",
            )),
        }
    }

    fn note_ends(&mut self, events: &[Event]) {
        for e in events {
            let (lease, at, expired) = match e {
                Event::Released { lease, at } => (lease, *at, false),
                Event::Expired { lease, at } => (lease, *at, true),
                _ => continue,
            };
            if self.ended.len() < MAX_KEPT {
                self.ended.push(Adopted { lease: lease.clone(), ended: Some(at), expired });
            } else {
                tracing::warn!(
                    lease = lease.id.0,
                    "Too many leases ended in fallback: this one is not counted in Redis"
                );
            }
        }
    }

    /// Takes back a grant whose commit was lost (its caller heard 503): it frees its slot
    /// here and is never handed to Redis. No events: it was never acknowledged.
    pub(super) fn take_back(&mut self, id: callgate_core::LeaseId, now: u64) {
        self.ledger.release(id, now);
        self.ledger.drain_events();
        self.ended.retain(|a| a.lease.id != id);
    }

    /// A live lease granted here.
    pub(super) fn lease(&self, lease: &LeaseRef) -> Option<Lease> {
        match lease {
            LeaseRef::Id(id) => self.ledger.lease(*id).cloned(),
            LeaseRef::Key(k) => self.ledger.lease_by_key(k).cloned(),
        }
    }
}

fn queued() -> Error {
    Error::unavailable("Redis is unreachable: the change is kept and made in Redis when it answers again")
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_backend::ErrorKind;
    use callgate_core::{ClassId, ClassSpec, Decision, FlowId, FlowSpec, PoolSpec, QueueSpec, Request};

    const L: RedisUnavailable = RedisUnavailable::LocalFallback;
    const F: RedisUnavailable = RedisUnavailable::FailClosed;

    fn spec() -> LedgerSpec {
        let pool = |name: &str, limit| PoolSpec { name: name.into(), limit, reserve: vec![] };
        let flow = |name: &str, pool: u32, queue| FlowSpec {
            name: name.into(),
            pools: vec![PoolUnits { pool: PoolId(pool), units: 1 }],
            class: ClassId(0),
            lease_ttl_ms: 60_000,
            queue,
        };
        LedgerSpec {
            classes: vec![ClassSpec { name: "inbound".into(), priority: 0 }],
            pools: vec![pool("shared", 10), pool("closed", 4)],
            flows: vec![flow("in", 0, Some(QueueSpec { max_wait_ms: 60_000, max_len: None })), flow("strict", 1, None)],
            ..LedgerSpec::default()
        }
    }

    fn local(caps: Vec<u32>, block: (u64, u64)) -> Local {
        Local::new(&spec(), vec![L, F], caps, block, 1_000, u64::MAX).unwrap()
    }

    fn acquire(l: &mut Local, flow: u32, key: Option<&str>, now: u64) -> Result<Decision, Error> {
        let mut req = Request::flow(FlowId(flow));
        req.key = key.map(Arc::from);
        match l.execute(Command::Acquire(req), now)?.0 {
            Outcome::Decided { decision, .. } => Ok(decision),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_share_is_what_was_free_divided_among_the_nodes_rounded_down() {
        assert_eq!(share(L, 10, 0, 3), 3);
        assert_eq!(share(L, 10, 4, 3), 2, "the leases Redis held, this node's and others', come first");
        assert_eq!(share(L, 10, 12, 3), 0, "a pool over its cap has no share");
        assert_eq!(share(F, 10, 0, 3), 0, "a pool that fails closed admits nothing");
        // Whatever the use, the shares of every node and what was held fit the cap.
        for cap in 0..30u32 {
            for used in 0..35u64 {
                for nodes in 1..6u32 {
                    let total = used + u64::from(share(L, cap, used, nodes)) * u64::from(nodes);
                    assert!(total <= u64::from(cap).max(used), "cap {cap} used {used} nodes {nodes}");
                }
            }
        }
    }

    #[test]
    fn grants_stop_at_the_local_cap_and_nobody_waits() {
        let mut l = local(vec![2, 0], (500, 600));
        let a = acquire(&mut l, 0, Some("a"), 1_000).unwrap();
        assert!(matches!(a, Decision::Granted { lease, .. } if lease.0 == 500), "ids come from the block: {a:?}");
        assert!(matches!(acquire(&mut l, 0, None, 1_000).unwrap(), Decision::Granted { .. }));
        // The flow has a waiting room, but a waiting line across nodes needs Redis.
        assert!(matches!(acquire(&mut l, 0, None, 1_000).unwrap(), Decision::Rejected { .. }));
        assert_eq!(l.ledger().lease_count(), 2);
        // An idempotent retry finds its lease.
        assert!(matches!(acquire(&mut l, 0, Some("a"), 1_000).unwrap(), Decision::Granted { existing: true, .. }));
        assert_eq!(l.pools()[0].cap, 2, "the local cap is what /v1/pools shows");
    }

    #[test]
    fn no_lease_runs_past_the_end_of_the_fallback_and_nothing_is_granted_after_it() {
        let mut l = Local::new(&spec(), vec![L, F], vec![5, 0], (500, 600), 1_000, 31_000).unwrap();
        acquire(&mut l, 0, Some("a"), 1_000).unwrap();
        assert_eq!(l.lease(&LeaseRef::Key(Arc::from("a"))).unwrap().expires_at, 31_000, "the flow's 60 s, cut");
        let mut req = Request::flow(FlowId(0));
        req.ttl_ms = Some(5_000);
        l.execute(Command::Acquire(req), 2_000).unwrap();
        assert_eq!(l.ledger().lease(callgate_core::LeaseId(501)).unwrap().expires_at, 7_000, "a shorter TTL stays");
        let renew = Command::Renew { lease: LeaseRef::Key(Arc::from("a")), ttl_ms: None, owner: None };
        l.execute(renew.clone(), 20_000).unwrap();
        assert_eq!(l.lease(&LeaseRef::Key(Arc::from("a"))).unwrap().expires_at, 31_000, "a renewal too");
        assert_eq!(acquire(&mut l, 0, None, 31_000).unwrap_err().kind, ErrorKind::Unavailable);
        assert_eq!(l.execute(renew, 31_000).unwrap_err().kind, ErrorKind::Unavailable);
    }

    #[test]
    fn a_pool_that_fails_closed_answers_unavailable() {
        let mut l = local(vec![2, 0], (500, 600));
        let e = acquire(&mut l, 1, None, 1_000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.message.contains("closed"), "{e}");
    }

    #[test]
    fn a_grant_taken_back_frees_its_slot_and_is_never_handed_over() {
        let mut l = local(vec![1, 0], (500, 600));
        let Decision::Granted { lease, .. } = acquire(&mut l, 0, Some("lost"), 1_000).unwrap() else { panic!() };
        l.take_back(lease, 1_001);
        assert!(l.to_adopt().is_empty());
        assert!(matches!(acquire(&mut l, 0, None, 1_002).unwrap(), Decision::Granted { .. }), "the slot is free");
    }

    #[test]
    fn the_block_of_ids_bounds_the_grants() {
        let mut l = local(vec![5, 0], (500, 501));
        acquire(&mut l, 0, None, 1_000).unwrap();
        acquire(&mut l, 0, None, 1_000).unwrap();
        let e = acquire(&mut l, 0, None, 1_000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    }

    #[test]
    fn ends_and_changes_of_redis_leases_are_kept_for_redis_once() {
        let mut l = local(vec![3, 0], (500, 600));
        acquire(&mut l, 0, Some("kept"), 1_000).unwrap();
        acquire(&mut l, 0, Some("gone"), 1_000).unwrap();
        let (o, _) = l.execute(Command::EndCall(Arc::from("gone")), 2_000).unwrap();
        assert!(matches!(o, Outcome::CallEnded(_)), "{o:?}");
        // A lease this node does not hold is Redis's: kept, once, and answered 503.
        for _ in 0..2 {
            let e = l.execute(Command::Release { lease: LeaseRef::Id(callgate_core::LeaseId(7)), owner: None }, 2_000);
            assert_eq!(e.unwrap_err().kind, ErrorKind::Unavailable);
        }
        assert_eq!(l.pending, vec![Pending::Release(LeaseRef::Id(callgate_core::LeaseId(7)), None)]);
        // Expiry runs with the next command, by this node's clock.
        l.execute(Command::Tick, 1_000 + 60_001).unwrap();
        let adopt = l.to_adopt();
        assert_eq!(adopt.len(), 2);
        assert!(adopt.iter().all(|a| a.ended.is_some()));
        assert_eq!(adopt.iter().filter(|a| a.expired).count(), 1, "{adopt:?}");
        assert!(l.execute(Command::SetLimit { pool: PoolId(0), limit: 3 }, 2_000).is_err());
    }
}
