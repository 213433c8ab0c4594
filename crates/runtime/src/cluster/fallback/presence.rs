//! The node's presence in the shared ledger, and when it may admit on its own
//! (`local_fallback` in a partition, see the module docs of `fallback`).
//!
//! Every second the node tells Redis it is there, with the share of each pool it would take
//! if it went local now ([`RedisLedger::presence`](callgate_store_redis::RedisLedger::presence)):
//! Redis declares for it the least of that and its share of what the ledger has free at
//! that moment (so a view of the stream a little behind cannot make it larger). Redis
//! stamps it with its own time; [`LAPSE`] after its last stamp the node is *silent*
//! and the ledger holds its declared shares back from admission. So a node that loses
//! Redis admits locally only once Redis must already be holding its share back: [`LAPSE`]
//! plus [`MARGIN`] after the last write it knows Redis stamped was answered (the stamp came
//! before the answer), and on no more than it declared. It admits locally for at most
//! `[storage] fallback_max` (its `max`), measured from when that write was sent (before
//! its stamp); no local lease runs past that, and Redis stops holding the share back
//! [`SLACK`] after.

use super::{local, lock, Fallback, Mode};
use callgate_backend::Error;
use std::time::Duration;
use tokio::time::Instant;

/// A node whose last presence is older than this (Redis's time) is silent.
pub const LAPSE: Duration = Duration::from_secs(3);

/// How much longer than [`LAPSE`] a node waits before it admits on its own: room for
/// Redis's clock (its wall time, by which it stamps) to run slower than the node's, or to
/// step back a little.
pub const MARGIN: Duration = Duration::from_millis(1_500);

/// How much longer than its `fallback_max` (the longest a node admits on its own, from its
/// last presence) Redis holds a silent node's share back: room
/// for a step of the node's wall clock, by which its local leases expire.
pub const SLACK: Duration = Duration::from_secs(5);

/// What the node knows of its presence in Redis.
#[derive(Debug, Default)]
pub(super) struct Presence {
    /// When the last write Redis answered was sent (before Redis stamped it).
    sent: Option<Instant>,
    /// No presence Redis stamped is later than this: when the last write was answered,
    /// or when a later one failed (it may have run).
    last: Option<Instant>,
    /// The shares Redis holds back for this node if it goes silent: those of the last
    /// answered write; none after a write that failed (it may have run, and Redis may
    /// have declared less than before: the pool filled meanwhile).
    declared: Vec<u32>,
    /// Those of the answered write before (none before it, or after a write that failed).
    /// A node admits on its own on no more than the least of the two: a Redis restarted
    /// empty gets the nodes' presence back as another node last read it (at its own last
    /// presence, within the second before), which holds one of the two.
    before: Vec<u32>,
    /// What Redis held back for silent nodes, by pool, at the last answer.
    pub(super) held: Vec<u64>,
}

impl Presence {
    /// A write of `shares`, sent at `sent`, was answered at `at` with `held`.
    pub(super) fn answered(&mut self, sent: Instant, at: Instant, shares: Vec<u32>, held: Vec<u64>) {
        self.sent = Some(sent);
        self.last = Some(at);
        self.before = std::mem::replace(&mut self.declared, shares);
        self.held = held;
    }

    /// What the node may admit on its own, by pool: the least of its last two declared
    /// shares (none until two were answered).
    fn usable(&self) -> Vec<u32> {
        self.declared.iter().enumerate().map(|(i, d)| (*d).min(self.before.get(i).copied().unwrap_or(0))).collect()
    }

    /// A write failed at `at`: it may have run, with shares this node does not know. (The
    /// check just before it succeeded, so this is rare: then the node fails closed until
    /// Redis answers again.)
    pub(super) fn failed(&mut self, at: Instant) {
        if self.sent.is_none() {
            return;
        }
        self.last = Some(at);
        self.declared.iter_mut().for_each(|d| *d = 0);
        self.before.clear();
    }

    /// Whether the node may admit on its own at `now`: the least of its last two declared
    /// shares (its shares are at most that) and until when it may (`max` after its last
    /// presence); else why not.
    pub(super) fn local_terms(&self, now: Instant, max: Duration) -> Result<(Vec<u32>, Instant), String> {
        let (Some(sent), Some(last)) = (self.sent, self.last) else {
            return Err("Redis is unreachable and never stamped this node's presence: \
                        pools with local_fallback fail closed"
                .into());
        };
        let ready = last + LAPSE + MARGIN;
        if now < ready {
            return Err(format!(
                "Redis is unreachable: pools with local_fallback admit on this node's share in {} ms, \
                 once the shared ledger holds it back; retry",
                (ready - now).as_millis()
            ));
        }
        let until = sent + LAPSE + max;
        if now >= until {
            return Err("Redis is unreachable and this node's local fallback has run its longest \
                        ([storage] fallback_max): every pool fails closed until Redis answers"
                .into());
        }
        Ok((self.usable(), until))
    }
}

/// A node with `local_fallback` pools as the shared ledger knows it ([`Fallback::nodes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownNode {
    /// Its name (host, listen address and process id).
    pub node: String,
    /// Whether it is the node that answers.
    pub this_node: bool,
    /// Whether its presence lapsed: the ledger holds its declared shares back.
    pub silent: bool,
    /// When it turns silent without another presence, or turned (Redis's Unix ms).
    pub silent_at_ms: u64,
    /// When the ledger stops holding its shares back, once silent (Redis's Unix ms).
    pub holds_until_ms: u64,
    /// The share of each pool it declared at its last presence, by pool name.
    pub declared: Vec<(String, u32)>,
}

impl Fallback {
    /// The share of each pool this node would take if it went local now: of what the
    /// shared ledger held as last seen, and of what it held back for silent nodes (`held`).
    pub(super) fn shares_now(&self, held: &[u64]) -> Vec<u32> {
        let seen = lock(&self.seen);
        (0..self.policy.len())
            .map(|i| {
                let at = |v: &[u64]| v.get(i).copied().unwrap_or(0);
                let in_use = at(&seen.used) + at(&seen.doubt) + at(&seen.in_flight) + at(held);
                local::share(self.policy[i], seen.cap.get(i).copied().unwrap_or(0), in_use, self.nodes)
            })
            .collect()
    }

    /// Tells Redis this node is there, with the shares it would take now; Redis declares
    /// the least of those and the node's share of what it has free (see the module docs).
    /// Blocking.
    pub(super) fn say_present(&self) {
        let shares = self.shares_now(&lock(&self.presence).held);
        let sent = Instant::now();
        let keep = (self.max + SLACK).as_millis() as u64;
        match self.redis.presence(&self.node, LAPSE.as_millis() as u64, keep, &shares, self.nodes) {
            Ok(said) => lock(&self.presence).answered(sent, Instant::now(), said.shares, said.held),
            Err(e) => {
                lock(&self.presence).failed(Instant::now());
                tracing::warn!(error = %e, "Cannot tell Redis this node is there");
            }
        }
    }

    /// A clean stop: Redis holds nothing back for this node any more (unless it admits on
    /// its own now: its local leases are not in Redis). Blocking.
    pub(crate) fn leave(&self) {
        if matches!(*self.mode_read(), Mode::Local(_)) {
            return;
        }
        if let Err(e) = self.redis.leave(&self.node) {
            tracing::warn!(error = %e, "Cannot take this node's presence out of Redis: its share is held back a while");
        }
    }

    /// Units of each pool the shared ledger holds back for silent nodes, as Redis said at
    /// this node's last presence (within a second while Redis answers).
    #[doc(hidden)]
    pub fn held_for_silent(&self) -> Vec<u64> {
        lock(&self.presence).held.clone()
    }

    /// Whether Redis has answered two presences of this node since its last failed one
    /// (it may go local on its share, in time).
    #[doc(hidden)]
    pub fn present(&self) -> bool {
        !lock(&self.presence).before.is_empty()
    }

    /// The nodes with `local_fallback` pools that the shared ledger knows: those present,
    /// and the silent ones whose declared shares it holds back. Blocking.
    pub fn nodes(&self) -> Result<Vec<KnownNode>, Error> {
        let (nodes, now) = self.redis.nodes()?;
        let names: Vec<String> =
            self.spec.read().unwrap_or_else(|p| p.into_inner()).pools.iter().map(|p| p.name.to_string()).collect();
        Ok(nodes
            .into_iter()
            .map(|n| KnownNode {
                this_node: n.node == self.node,
                silent: n.silent_at <= now,
                declared: names.iter().cloned().zip(n.shares).collect(),
                node: n.node,
                silent_at_ms: n.silent_at,
                holds_until_ms: n.holds_until,
            })
            .collect())
    }

    /// Forgets node `node`, for an operator who knows it is gone (its calls ended): the
    /// shared ledger stops holding its shares back at once, and the waiting lines move.
    /// Answers whether the ledger knew it. A node that is not gone but cut off from Redis
    /// may still admit on its share: forgetting it lets the others admit that share too.
    /// Blocking.
    pub fn forget(&self, node: &str) -> Result<bool, Error> {
        if !self.redis.nodes()?.0.iter().any(|n| n.node == node) {
            return Ok(false);
        }
        self.redis.leave(node)?;
        tracing::warn!(node, "Forgot a node on an operator's word: its shares are no longer held back");
        Ok(true)
    }

    /// [`Fallback::held_for_silent`] of the pool named `pool`.
    #[doc(hidden)]
    pub fn held_of(&self, pool: &str) -> Option<u64> {
        let i = self.spec.read().unwrap_or_else(|p| p.into_inner()).pools.iter().position(|p| &*p.name == pool)?;
        Some(self.held_for_silent().get(i).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_goes_local_only_after_the_lapse_and_on_no_more_than_it_declared() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let max = Duration::from_secs(60);
        let mut p = Presence::default();
        assert!(p.local_terms(ms(100_000), max).is_err(), "never stamped: never local");
        p.failed(ms(1));
        assert!(p.local_terms(ms(100_000), max).is_err(), "a failed first write does not count");
        p.answered(ms(0), ms(10), vec![3, 0], vec![0, 0]);
        let ready = 10 + (LAPSE + MARGIN).as_millis() as u64;
        let (shares, _) = p.local_terms(ms(ready), max).unwrap();
        assert_eq!(shares, vec![0, 0], "one answered presence: nothing of its own yet");
        p.answered(ms(0), ms(10), vec![4, 1], vec![0, 0]);
        assert!(p.local_terms(ms(ready - 1), max).unwrap_err().contains("retry"));
        let (shares, until) = p.local_terms(ms(ready), max).unwrap();
        assert_eq!((shares, until), (vec![3, 0], ms(0) + LAPSE + max), "the least of the last two");
        // A write that failed may have run: it moves the lapse, and its shares are unknown.
        p.failed(ms(1_000));
        assert!(p.local_terms(ms(ready), max).is_err());
        let (shares, until) = p.local_terms(ms(ready + 1_000), max).unwrap();
        assert_eq!((shares, until), (vec![0, 0], ms(0) + LAPSE + max), "the deadline stays with the answered one");
        assert!(p.local_terms(until, max).unwrap_err().contains("fallback_max"));
    }
}
