//! What a node knows of the shared ledger's pools when Redis goes away: their use and
//! caps as the domain's event stream last brought them, its own grants before the stream
//! brings them, and what it cannot know (acquires whose answer was lost).

use callgate_core::{Event, Lease, PoolUnits};
use std::collections::HashMap;
use std::sync::Arc;

/// How long an own grant counted early waits for the stream, and how long a grant the
/// stream brought waits for this node's answer to it (the stream and a command's answer
/// race: either may come first, and the grant counts once). After this an own grant
/// counted early is taken out again (a stream slower than this counts it on arrival).
pub(super) const EARLY_MS: u64 = 10_000;

/// At most this many grants are remembered in each direction of that race.
const RACE_KEPT: usize = 1_000_000;

/// The shared ledger's pools as this node last saw them (from the domain's stream).
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Units in use, by pool.
    pub(super) used: Vec<u64>,
    /// Effective caps, by pool.
    pub(super) cap: Vec<u32>,
    /// This node's grants counted before the stream brought them: id -> (when, pools).
    pub(super) early: HashMap<u64, (u64, Arc<[PoolUnits]>)>,
    /// Grants the stream brought (any node's) in the last [`EARLY_MS`]: id -> when, so
    /// that this node's answer to one of them does not count it again.
    pub(super) streamed: HashMap<u64, u64>,
    /// Units of acquires whose answer was lost (Redis may have granted them), by pool.
    pub(super) doubt: Vec<u64>,
    /// Units of acquires sent to Redis whose answer has not come yet, by pool (`flight.rs`).
    pub(super) in_flight: Vec<u64>,
    /// When `early` was last looked through for grants that waited too long.
    pub(super) swept: u64,
}

impl Seen {
    fn add(&mut self, lease: &Lease, sign: i64) {
        self.add_units(&lease.pools, sign);
    }

    fn add_units(&mut self, pools: &[PoolUnits], sign: i64) {
        for pu in pools {
            if let Some(u) = self.used.get_mut(pu.pool.index()) {
                *u = u.saturating_add_signed(sign * i64::from(pu.units));
            }
        }
    }

    /// Events at `now` (this node's clock): `own` from this node's answers (its grants
    /// count at once), else from the stream (every node's, in order).
    pub(super) fn apply(&mut self, events: &[Event], own: bool, now: u64) {
        if now.saturating_sub(self.swept) >= 1_000 {
            self.swept = now;
            let stale: Vec<u64> = self
                .early
                .iter()
                .filter(|(_, (at, _))| now.saturating_sub(*at) > EARLY_MS)
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                if let Some((_, pools)) = self.early.remove(&id) {
                    self.add_units(&pools, -1);
                }
            }
            self.streamed.retain(|_, at| now.saturating_sub(*at) <= EARLY_MS);
        }
        for e in events {
            match e {
                Event::Granted { lease, .. } => {
                    if own {
                        if self.streamed.remove(&lease.id.0).is_none()
                            && self.early.len() < RACE_KEPT
                            && self.early.insert(lease.id.0, (now, lease.pools.clone())).is_none()
                        {
                            self.add(lease, 1);
                        }
                    } else if self.early.remove(&lease.id.0).is_none() {
                        self.add(lease, 1);
                        if self.streamed.len() < RACE_KEPT {
                            self.streamed.insert(lease.id.0, now);
                        }
                    }
                }
                // Own releases are counted when the stream brings them: a use seen too
                // high only makes a share smaller.
                Event::Released { lease, .. } | Event::Expired { lease, .. } if !own => self.add(lease, -1),
                Event::LimitChanged { pool, cap, .. } if !own => {
                    if let Some(c) = self.cap.get_mut(pool.index()) {
                        *c = *cap;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_core::PoolId;
    use callgate_core::{ClassId, LeaseId, PoolUnits};
    use std::sync::Arc;

    fn lease(id: u64, units: u32) -> Lease {
        Lease {
            id: LeaseId(id),
            key: None,
            class: ClassId(0),
            flow: None,
            pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units }]),
            granted_at: 1,
            expires_at: 2,
            ttl_ms: 1,
            meta: None,
            owner: None,
        }
    }

    #[test]
    fn the_use_seen_counts_own_grants_at_once_and_once() {
        let mut seen = Seen { used: vec![3], cap: vec![10], doubt: vec![0], ..Seen::default() };
        let granted = |id| Event::Granted { lease: lease(id, 2), from_ticket: None };
        seen.apply(&[granted(7)], true, 0);
        assert_eq!(seen.used, vec![5], "this node's grant counts before the stream brings it");
        seen.apply(&[granted(7), granted(8)], false, 0);
        assert_eq!(seen.used, vec![7], "and not again when it does; another node's counts");
        seen.apply(&[Event::Released { lease: lease(7, 2), at: 5 }], true, 0);
        assert_eq!(seen.used, vec![7], "an own release waits for the stream (too high is safe)");
        seen.apply(&[Event::Expired { lease: lease(7, 2), at: 5 }], false, 0);
        assert_eq!(seen.used, vec![5]);
        seen.apply(&[Event::LimitChanged { pool: PoolId(0), limit: 10, cap: 6, at: 5 }], false, 0);
        assert_eq!(seen.cap, vec![6]);
    }

    #[test]
    fn an_own_grant_the_stream_brought_first_is_counted_once() {
        let mut seen = Seen { used: vec![0], cap: vec![10], doubt: vec![0], ..Seen::default() };
        let granted = Event::Granted { lease: lease(9, 1), from_ticket: None };
        seen.apply(std::slice::from_ref(&granted), false, 1_000);
        seen.apply(std::slice::from_ref(&granted), true, 1_000);
        assert_eq!(seen.used, vec![1], "the answer after the stream does not count it again");
        seen.apply(&[], false, 1_000 + EARLY_MS + 1);
        assert_eq!(seen.used, vec![1], "nor does time");
        assert!(seen.streamed.is_empty() && seen.early.is_empty(), "and nothing is kept");
    }
}
