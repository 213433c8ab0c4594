//! A pool's live state: its budget, its reserves and the tickets waiting on it.

use crate::ids::{ClassId, TicketId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The place of a waiting ticket in line: higher priority first, then first come first
/// served (`seq` grows with every request the ledger sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Order {
    /// `-priority`, so that the natural order serves the highest priority first.
    pub(crate) rank: i64,
    pub(crate) seq: u64,
}

/// The multiset of "needs" of the tickets of one class waiting on one pool.
///
/// A ticket's need in a pool is its units plus the units reserved for the classes above
/// it: it fits exactly when `need <= cap - used`. Tickets of a class nearly always share
/// one need, so a short vector beats a tree here.
#[derive(Clone, Debug, Default)]
pub(crate) struct NeedSet {
    counts: Vec<(u64, u32)>,
}

impl NeedSet {
    pub(crate) fn insert(&mut self, need: u64) {
        match self.counts.iter_mut().find(|(n, _)| *n == need) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((need, 1)),
        }
    }

    pub(crate) fn remove(&mut self, need: u64) {
        if let Some(i) = self.counts.iter().position(|(n, _)| *n == need) {
            self.counts[i].1 -= 1;
            if self.counts[i].1 == 0 {
                self.counts.swap_remove(i);
            }
        }
    }

    pub(crate) fn max(&self) -> u64 {
        self.counts.iter().map(|(n, _)| *n).max().unwrap_or(0)
    }

    pub(crate) fn len(&self) -> u32 {
        self.counts.iter().map(|(_, c)| *c).sum()
    }
}

/// One pool.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) name: Arc<str>,
    /// Configured limit (changed at runtime by `set_limit`).
    pub(crate) limit: u32,
    /// Effective cap, `cap <= limit`; adaptive limiting and breakers lower it.
    pub(crate) cap: u32,
    /// A cap asked for below the limit (adaptive or breaker); `None` follows the limit.
    pub(crate) cap_override: Option<u32>,
    /// Units of live leases. May exceed `cap` after the cap was lowered (nothing is
    /// revoked) or after a restore; never because of a grant.
    pub(crate) used: u64,
    /// Units of live leases by class index; sums to `used`.
    pub(crate) used_by_class: Vec<u64>,
    /// Units reserved for each class (by class index).
    pub(crate) reserve: Vec<u32>,
    /// For each class index: the units reserved for the classes strictly above it.
    pub(crate) reserved_above: Vec<u64>,
    /// Waiting tickets that need this pool, in line order.
    pub(crate) queue: BTreeMap<Order, TicketId>,
    /// Needs of the waiting tickets, by class index.
    pub(crate) needs: Vec<NeedSet>,
    /// Exponentially weighted mean hold time of ended leases (ms), for wait estimates.
    pub(crate) hold_ewma_ms: f64,
}

impl Pool {
    /// `cap - used`, negative when the cap was lowered below what is in use.
    pub(crate) fn free(&self) -> i64 {
        i64::from(self.cap) - self.used as i64
    }

    /// What a request of `class` for `units` needs free in this pool.
    pub(crate) fn need(&self, class: ClassId, units: u32) -> u64 {
        u64::from(units) + self.reserved_above[class.index()]
    }

    /// Whether a request of `class` for `units` could ever be granted here: its need
    /// is at most the limit (DESIGN.md "Never fits"). The cap does not count: an adaptive
    /// or cooldown cap may rise again, the limit only by an operator.
    pub(crate) fn can_ever_fit(&self, class: ClassId, units: u32) -> bool {
        self.need(class, units) <= u64::from(self.limit)
    }

    pub(crate) fn waiting(&self) -> u32 {
        self.queue.len() as u32
    }

    pub(crate) fn observe_hold(&mut self, held_ms: u64) {
        // A weight of 1/20 follows a change of call length within a few dozen calls
        // while one very long call moves the estimate by only 5 %.
        self.hold_ewma_ms += (held_ms as f64 - self.hold_ewma_ms) / 20.0;
        // Holds of 0 ms (released within the millisecond) decay the mean until it sticks
        // on a subnormal float, and every later update then costs a microcode assist
        // (~100 cycles). Below the smallest normal float it is 0 for every estimate.
        if self.hold_ewma_ms < f64::MIN_POSITIVE {
            self.hold_ewma_ms = 0.0;
        }
    }

    /// Expected time until `ahead + 1` units have been released, assuming `cap` calls of
    /// the observed mean length are in progress.
    pub(crate) fn eta_ms(&self, ahead: u32) -> u64 {
        let servers = f64::from(self.cap.max(1));
        (f64::from(ahead + 1) * self.hold_ewma_ms / servers) as u64
    }
}
