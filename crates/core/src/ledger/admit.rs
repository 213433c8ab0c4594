//! The admission rule, for arrivals and for the dispatch after capacity frees.

use super::pool::Order;
use super::ticket::Ended;
use super::Ledger;
use crate::ids::{ClassId, Millis, PoolId, PoolUnits, TicketId};
use std::ops::Bound;

/// A pool the dispatch walks: where it is in the pool's line, and the largest need of
/// the tickets it passed without granting them.
pub(super) struct Walk {
    pool: PoolId,
    after: Option<Order>,
    blocked_max: u64,
    done: bool,
    /// Whether a ticket of this pool's line was passed without a grant (it stays in
    /// line). Until then every ticket before `after` has left the line, so the next one
    /// is simply the first: no range search (the common single-pool release).
    passed: bool,
}

impl Ledger {
    /// The rule for a new request (which stands behind every waiting ticket of its
    /// priority or higher): in each pool, the largest need among those tickets and its
    /// own must fit in `cap - used`.
    pub(super) fn admits_arrival(&self, pools: &[PoolUnits], class: ClassId) -> bool {
        let ahead = &self.classes[class.index()].ahead;
        pools.iter().all(|pu| {
            let p = &self.pools[pu.pool.index()];
            let mut need = p.need(class, pu.units);
            if !p.queue.is_empty() {
                for c in ahead {
                    need = need.max(p.needs[c.index()].max());
                }
            }
            need as i64 <= p.free()
        })
    }

    /// The largest need among the tickets ahead of `order` in `pool`'s line.
    fn claim_before(&self, pool: PoolId, order: Order) -> u64 {
        let p = &self.pools[pool.index()];
        p.queue
            .range(..order)
            .map(|(_, t)| {
                let t = &self.tickets[&t.0];
                let units = t.pools.iter().find(|pu| pu.pool == pool).map_or(0, |pu| pu.units);
                p.need(t.class, units)
            })
            .max()
            .unwrap_or(0)
    }

    /// Grants, in line order, every waiting ticket that the rule admits among those that
    /// stand in one of `changed` pools (only they can have become admissible).
    ///
    /// The walk merges the lines of the changed pools in line order. In a changed pool it
    /// keeps the largest need of the tickets it passed; once that need no longer fits, the
    /// pool is claimed for everyone behind and its walk stops. A ticket's other pools are
    /// checked against the tickets ahead of it there.
    pub(super) fn dispatch(&mut self, changed: impl IntoIterator<Item = PoolId>, now: Millis) {
        // Reuse the scratch vector: a contended release should not allocate.
        let mut walks = std::mem::take(&mut self.walks);
        walks.clear();
        for pool in changed {
            if walks.iter().all(|w| w.pool != pool) && !self.pools[pool.index()].queue.is_empty() {
                walks.push(Walk { pool, after: None, blocked_max: 0, done: false, passed: false });
            }
        }
        loop {
            // The next ticket in line order among the walks that are still going.
            let mut next: Option<(Order, TicketId)> = None;
            for w in walks.iter_mut().filter(|w| !w.done) {
                let p = &self.pools[w.pool.index()];
                let first = if w.passed {
                    let lower = w.after.map_or(Bound::Unbounded, Bound::Excluded);
                    p.queue.range((lower, Bound::Unbounded)).next()
                } else {
                    p.queue.first_key_value()
                };
                match first {
                    Some((o, t)) => {
                        if next.is_none_or(|(n, _)| *o < n) {
                            next = Some((*o, *t));
                        }
                    }
                    None => w.done = true,
                }
            }
            let Some((order, id)) = next else { break };
            // Every walk's next entry is at or after `order`, so all may move past it.
            for w in walks.iter_mut() {
                w.after = Some(order);
            }
            let ticket = &self.tickets[&id.0];
            let mut admit = true;
            for pu in ticket.pools.iter() {
                let p = &self.pools[pu.pool.index()];
                let claim = match walks.iter().find(|w| w.pool == pu.pool) {
                    Some(w) => w.blocked_max,
                    None => self.claim_before(pu.pool, order),
                };
                if claim.max(p.need(ticket.class, pu.units)) as i64 > p.free() {
                    admit = false;
                    break;
                }
            }
            if admit {
                let t = self.dequeue(id).expect("waiting ticket");
                // A late tick processes an expiry at its own (earlier) time; a ticket that
                // arrived after it would have been granted on arrival, so it is granted
                // then, never before it existed.
                let at = now.max(t.enqueued_at);
                let waited = at - t.enqueued_at;
                let flow = t.flow;
                let lease =
                    self.grant(t.pools, t.class, flow, t.key, t.ttl_ms, (t.meta, t.owner), at, Some((id, waited)));
                self.remember(id, Ended::granted(lease, at, flow));
            } else {
                for pu in ticket.pools.iter() {
                    if let Some(w) = walks.iter_mut().find(|w| w.pool == pu.pool) {
                        let need = self.pools[pu.pool.index()].need(ticket.class, pu.units);
                        w.blocked_max = w.blocked_max.max(need);
                        w.passed = true;
                    }
                }
            }
            // A pool whose passed tickets no longer fit is claimed for everyone behind.
            for w in walks.iter_mut().filter(|w| !w.done) {
                if w.blocked_max as i64 > self.pools[w.pool.index()].free() {
                    w.done = true;
                }
            }
        }
        self.walks = walks;
    }
}
