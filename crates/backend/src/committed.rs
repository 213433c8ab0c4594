//! What a ledger backend hands on once events are durable: the [`Consumer`] of committed
//! events (the bus: metrics, operations, live events, the decision log), and the
//! commit-time histogram of a backend that group-commits ([`CommitTimes`]).

use crate::Names;
use callgate_core::Event;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the commit-time histogram ([`CommitTimes`]): an fsync takes
/// about a millisecond on an SSD and tens on a busy disk; above a second admission stalls.
pub const COMMIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How long the journal's group commits took (successful or not), counted by the
/// backend's writer for `callgate_journal_commit_seconds`.
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// Per bucket of [`COMMIT_BUCKETS`], cumulative (commits at or under the bound).
    counts: [AtomicU64; 12],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A reading of [`CommitTimes`].
#[derive(Clone, Debug, PartialEq)]
pub struct CommitSnapshot {
    /// Cumulative counts by bucket.
    pub counts: Vec<u64>,
    /// Total time (seconds).
    pub sum_seconds: f64,
    /// Commits counted.
    pub count: u64,
}

impl CommitTimes {
    /// Counts one commit that took `seconds`.
    pub fn observe(&self, seconds: f64) {
        for (b, c) in COMMIT_BUCKETS.iter().zip(&self.counts) {
            if seconds <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> CommitSnapshot {
        CommitSnapshot {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// What happens to events once they are durable (metrics, live events). The embedded
/// backend runs it on its writer thread, after the commit and before the durable sequence
/// number is published (the answers wait for it): keep it quick.
pub trait Consumer: Send + 'static {
    /// Called with every committed event, in ledger order.
    fn committed(&mut self, events: &[Event]);

    /// Called when the ledger's names change (a configuration reload), after every
    /// event submitted before the change was handed to [`Consumer::committed`] and before
    /// any event submitted after it.
    fn renamed(&mut self, _names: &Names) {}
}

impl<F: FnMut(&[Event]) + Send + 'static> Consumer for F {
    fn committed(&mut self, events: &[Event]) {
        self(events)
    }
}
