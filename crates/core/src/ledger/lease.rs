//! Leases and the expiry schedule.

use crate::ids::{ClassId, FlowId, LeaseId, Millis, PoolUnits};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// A grant: units in one or more pools, held until released or expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Never reused.
    pub id: LeaseId,
    /// The idempotency key (e.g. a provider's call id).
    pub key: Option<Arc<str>>,
    /// The class it was granted in.
    pub class: ClassId,
    /// The flow it came through, if any.
    pub flow: Option<FlowId>,
    /// Pools and units held.
    pub pools: Arc<[PoolUnits]>,
    /// When it was granted.
    pub granted_at: Millis,
    /// When it expires unless renewed or released.
    pub expires_at: Millis,
    /// The time to live a renewal without its own TTL extends by (ms).
    pub ttl_ms: u64,
    /// Opaque metadata (the server keeps JSON text here).
    pub meta: Option<Arc<str>>,
    /// The name of the API key it was acquired with (`None`: by the server itself, e.g.
    /// a provider webhook or the dialer, or with no keys configured). Only that key (or
    /// an admin) may release, renew or cancel it.
    pub owner: Option<Arc<str>>,
}

/// The live leases: by id in a hash map, with their ids in order beside them (ids grow in
/// grant order, so a listing can be paged from a cursor without walking or sorting every
/// lease). A B-tree of whole leases would move about a kilobyte of its node's values on
/// every grant and release; here a grant moves one lease into the map and appends its id,
/// a release takes the lease out and leaves the id behind, to be skipped (lazy deletion:
/// the ids are compacted when the departed outnumber the live, so memory stays
/// proportional to what is live, for an amortised O(1) per lease).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_id: FxHashMap<u64, Lease>,
    /// Ascending; holds every live id and possibly ids of departed leases.
    order: VecDeque<u64>,
}

impl Leases {
    pub(crate) fn get(&self, id: u64) -> Option<&Lease> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Lease> {
        self.by_id.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn insert(&mut self, lease: Lease) {
        let id = lease.id.0;
        if self.order.back().is_none_or(|&last| last < id) {
            self.order.push_back(id);
        } else {
            // A restore, in any order: keep the ids sorted, and once (the id may still be
            // there from a lease of the same id that departed).
            let at = self.order.partition_point(|&o| o < id);
            if self.order.get(at) != Some(&id) {
                self.order.insert(at, id);
            }
        }
        self.by_id.insert(id, lease);
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Lease> {
        let lease = self.by_id.remove(&id)?;
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let live = &self.by_id;
            self.order.retain(|o| live.contains_key(o));
        }
        Some(lease)
    }

    /// The leases whose id is above `after` (all with `None`), by id.
    pub(crate) fn after(&self, after: Option<u64>) -> impl Iterator<Item = &Lease> {
        let from = after.map_or(0, |a| self.order.partition_point(|&o| o <= a));
        self.order.range(from..).filter_map(|id| self.by_id.get(id))
    }
}

/// Deadlines kept in a heap with lazy deletion: a release or renewal leaves the old entry
/// behind and `pop_due` skips entries that no longer match. The heap is rebuilt when stale
/// entries outnumber live ones, so memory stays proportional to what is live.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<(Millis, u64)>>,
}

impl Schedule {
    /// Schedules `id` at `at`; `Millis::MAX` is never (a lease without expiry, such as
    /// the simulator's, whose calls always report their end), so it is not kept.
    pub(crate) fn push(&mut self, at: Millis, id: u64) {
        if at != Millis::MAX {
            self.heap.push(Reverse((at, id)));
        }
    }

    /// The earliest entry, which may be stale.
    pub(crate) fn peek(&self) -> Option<(Millis, u64)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    pub(crate) fn pop(&mut self) {
        self.heap.pop();
    }

    /// Drops every entry for which `live` is false, when the heap holds more than twice
    /// the live entries (amortised O(1) per operation).
    pub(crate) fn compact_if_needed(&mut self, live_count: usize, live: impl Fn(Millis, u64) -> bool) {
        if self.heap.len() > 2 * live_count + 64 {
            let old = std::mem::take(&mut self.heap).into_vec();
            self.heap = old.into_iter().filter(|Reverse((at, id))| live(*at, *id)).collect();
        }
    }
}
