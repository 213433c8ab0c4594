//! Leases and the expiry schedule.

use crate::ids::{ClassId, FlowId, LeaseId, Millis, PoolUnits};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
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

/// Deadlines kept in a heap with lazy deletion: a release or renewal leaves the old entry
/// behind and `pop_due` skips entries that no longer match. The heap is rebuilt when stale
/// entries outnumber live ones, so memory stays proportional to what is live.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<(Millis, u64)>>,
}

impl Schedule {
    pub(crate) fn push(&mut self, at: Millis, id: u64) {
        self.heap.push(Reverse((at, id)));
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
