//! The requests waiting for their batch to be durable, woken by the batch they wait for.
//!
//! The journal publishes its verdicts on a `watch` channel, which wakes every waiting
//! request on every commit: a request whose batch is in the next commit was polled (its
//! whole connection, from the top) for nothing, about once a request under load
//! (BENCHMARKS.md, "Where the embedded store's time went"). Here each waits under its own
//! batch's number, and a verdict wakes only the batches it covers.
//!
//! No wake is lost: the writer publishes a verdict before it wakes, and a waiter registers
//! before it looks at the verdict a second time, so a verdict published before the
//! registration is seen by that second look, and one published after it wakes the waiter.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::task::Waker;

/// Wakers by the batch they wait for.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<BTreeMap<u64, Vec<Waker>>>);

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<Waker>>> {
        // Nothing here can panic half-way through a change.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes `waker` once the verdict on batch `seq` is published. A waker polled again
    /// before then is kept once.
    pub(crate) fn register(&self, seq: u64, waker: &Waker) {
        let mut map = self.lock();
        let list = map.entry(seq).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    /// Wakes the waiters of batch `seq` and of every batch before it; of every batch when
    /// `all` (the writer died).
    pub(crate) fn wake_through(&self, seq: u64, all: bool) {
        let woken = {
            let mut map = self.lock();
            if all {
                std::mem::take(&mut *map)
            } else {
                let later = map.split_off(&seq.saturating_add(1));
                std::mem::replace(&mut *map, later)
            }
        };
        for w in woken.into_values().flatten() {
            w.wake();
        }
    }
}
