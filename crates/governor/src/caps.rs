//! The effective cap of every pool has one owner: the governor. Several things may lower
//! a pool's cap below its limit; each is a named *source* here, and the cap the ledger
//! enforces is the minimum of the sources that are set (then `min(limit, cap)` in the
//! ledger). Nobody else sends `Command::SetCap`, so one source ending can never raise
//! the cap above what another source still asks for.
//!
//! The sources:
//! - **adaptive**: the pool's adaptive limit (`adaptive = { … }`), moved by samples, by
//!   provider refusals and by runtime limit changes;
//! - **cooldown**: a provider refused a call of a pool that is *not* adaptive, for
//!   concurrency. The platform knows of calls callgate does not count (or allows fewer
//!   than the configured limit), so the pool is capped at the units in use until the
//!   cooldown ends, or until reconciliation lists the platform's calls and finds fewer
//!   live than the pool's limit (the platform has room again, and callgate's count has
//!   been made right by then: ghost calls released, unknown calls adopted).
//!
//! A provider concurrency refusal goes through [`Governor::provider_refused`] only: for an
//! adaptive pool it is a drop sample for the limiter (which lowers the cap in its own
//! measured way, and whose cap no cooldown may later undo); for a fixed pool it sets the
//! cooldown source. Either way the change is an ordinary `limit_changed` event.
//!
//! In cluster mode every node has its own sources: the Redis backend keeps each node's
//! cap of a pool beside the others' and enforces the least of them, so one node's cap
//! never overwrites another's; a node's cap lapses unless it is said again
//! ([`Governor::reassert_caps`], which the server calls every few seconds).
//!
//! Like the adaptive caps, the sources are not journaled beyond their events: after a
//! restart every pool starts at its limit (adaptive ones at their `initial` cap), and a
//! cooldown that was running is over (the reconciliation after the start finds the
//! platform's calls again).

use super::Error;
use super::{Governor, State};
use callgate_backend::{Command, Executed};
use callgate_core::PoolId;

/// A cooldown cap: the units in use when the provider refused, until `until` (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cooldown {
    cap: u32,
    until: u64,
}

/// What lowers one pool's cap, by source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CapSources {
    /// The adaptive limit's cap, once it has one below (or at) the limit.
    adaptive: Option<u32>,
    /// After a provider refusal of a fixed pool.
    cooldown: Option<Cooldown>,
    /// What was last handed to the backend (`Command::SetCap`; it starts with none).
    applied: Option<u32>,
}

impl CapSources {
    /// A reload's new operating layer starts the adaptive source afresh.
    pub(super) fn reset_adaptive(&mut self, cap: Option<u32>) {
        self.adaptive = cap;
    }

    /// For a ledger built afresh (which starts with no cap): what to hand it, marked as
    /// handed.
    pub(super) fn refresh(&mut self) -> Option<u32> {
        self.applied = self.effective();
        self.applied
    }

    /// The minimum of the sources that are set; `None` follows the limit.
    fn effective(&self) -> Option<u32> {
        [self.adaptive, self.cooldown.map(|c| c.cap)].into_iter().flatten().min()
    }
}

/// A pool's cap sources, for `GET /v1/pools` (`cap_sources`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSourcesView {
    /// The adaptive limit's cap, if it set one.
    pub adaptive: Option<u32>,
    /// `(cap, until_ms)` of a refusal's cooldown.
    pub cooldown: Option<(u32, u64)>,
}

impl State {
    pub(super) fn caps_for(pools: usize) -> Vec<CapSources> {
        vec![CapSources::default(); pools]
    }
}

impl Governor {
    /// Hands the minimum of pool `p`'s sources to the backend, when it changed; under the
    /// lock, so the change is ordered with the operation that caused it. The executed
    /// command, if one ran (wait for its commit).
    fn apply_caps(&self, st: &mut State, p: usize) -> Result<Option<Executed>, Error> {
        let Some(sources) = st.caps.get_mut(p) else { return Ok(None) };
        let want = sources.effective();
        if want == sources.applied {
            return Ok(None);
        }
        sources.applied = want;
        self.exec(st, Command::SetCap { pool: PoolId(p as u32), cap: want }).map(Some)
    }

    /// Hands the backend this node's caps again, unchanged (cluster mode: a node's cap of
    /// a shared pool lapses unless the node says it again, so a node that died stops
    /// holding the pool down). Pools without a cap of this node are left alone.
    pub fn reassert_caps(&self) {
        let mut st = self.lock();
        for p in 0..st.caps.len() {
            if let Some(cap) = st.caps[p].applied {
                if self.exec(&mut st, Command::SetCap { pool: PoolId(p as u32), cap: Some(cap) }).is_err() {
                    return;
                }
            }
        }
    }

    /// Sets pool `p`'s adaptive source (the limiter moved); under the lock.
    pub(super) fn set_adaptive_cap(&self, st: &mut State, p: usize, cap: u32) -> Result<Option<Executed>, Error> {
        if let Some(s) = st.caps.get_mut(p) {
            s.adaptive = Some(cap);
        }
        self.apply_caps(st, p)
    }

    /// Sets pool `p`'s cooldown source at the units in use (never above the cap in force),
    /// until `now + cooldown_ms`; a refusal during a cooldown extends it. Under the lock.
    fn start_cooldown(
        &self,
        st: &mut State,
        p: usize,
        cooldown_ms: u64,
        now: u64,
    ) -> Result<(u32, Option<Executed>), Error> {
        let view = self.backend.pools().into_iter().nth(p).ok_or_else(|| super::internal("no such pool"))?;
        let cap = u32::try_from(view.used).unwrap_or(u32::MAX).min(view.cap);
        let until = now.saturating_add(cooldown_ms);
        if let Some(s) = st.caps.get_mut(p) {
            let until = s.cooldown.map_or(until, |c| c.until.max(until));
            s.cooldown = Some(Cooldown { cap, until });
            st.cooldown_due = Some(st.cooldown_due.map_or(until, |d| d.min(until)));
        }
        Ok((cap, self.apply_caps(st, p)?))
    }

    /// Clears the cooldown of pool `p`; whether there was one. Under the lock.
    fn clear_cooldown(&self, st: &mut State, p: usize) -> Result<(bool, Option<Executed>), Error> {
        let cleared = st.caps.get_mut(p).and_then(|s| s.cooldown.take()).is_some();
        if !cleared {
            return Ok((false, None));
        }
        st.cooldown_due = st.caps.iter().filter_map(|s| s.cooldown.map(|c| c.until)).min();
        Ok((true, self.apply_caps(st, p)?))
    }

    /// Ends the cooldowns that are due; under the lock. Cheap when none is.
    pub(super) fn expire_cooldowns(&self, st: &mut State, now: u64) -> Result<(), Error> {
        if st.cooldown_due.is_none_or(|due| due > now) {
            return Ok(());
        }
        let due: Vec<usize> =
            (0..st.caps.len()).filter(|&p| st.caps[p].cooldown.is_some_and(|c| c.until <= now)).collect();
        for p in due {
            self.clear_cooldown(st, p)?;
            tracing::info!(pool = %self.names().pools[p], "The cooldown after a provider refusal ended; the cap follows the limit again");
        }
        Ok(())
    }

    /// A provider refused a call of `pool` for concurrency (Vapi's "over concurrency
    /// limit", a 429 from an outbound API). The one entry point for refusals: for an
    /// adaptive pool it is a drop sample for its limiter; for a fixed pool the cap is
    /// lowered to the units in use for `cooldown_ms` (or until reconciliation finds room,
    /// see [`Governor::platform_room`]). Returns the pool's cap when it moved.
    pub async fn provider_refused(&self, pool: &str, cooldown_ms: u64) -> Result<Option<u32>, Error> {
        let p = self.pool_id(pool)?.index();
        let (moved, commit) = {
            let mut st = self.lock();
            let now = self.now_ms();
            self.ops().count_refusal(p);
            let before = self.backend.pools().get(p).map(|v| v.cap);
            let done = if self.ops().is_adaptive(p) {
                let report = super::Report { dropped: true, ..super::Report::default() };
                let inflight = self.used(p);
                self.feed(&mut st, p, inflight, &report, now)?.1
            } else {
                let (cap, done) = self.start_cooldown(&mut st, p, cooldown_ms, now)?;
                tracing::warn!(%pool, cap, cooldown_ms, "A provider refused a call for concurrency: the pool is capped at what is in use");
                done
            };
            let after = self.backend.pools().get(p).map(|v| v.cap);
            ((after != before).then_some(after).flatten(), done.map(|d| d.commit))
        };
        if let Some(c) = commit {
            self.durable(c).await?;
        }
        Ok(moved)
    }

    /// Reconciliation listed the platform's calls completely and found `live` of them:
    /// when that is below `pool`'s limit the platform has room, and a refusal's cooldown
    /// of the pool ends now. True when one ended.
    pub async fn platform_room(&self, pool: &str, live: usize) -> Result<bool, Error> {
        let p = self.pool_id(pool)?.index();
        let (cleared, commit) = {
            let mut st = self.lock();
            let limit = self.backend.pools().get(p).map_or(0, |v| v.limit);
            let room = live < limit as usize;
            if room && st.caps.get(p).is_some_and(|s| s.cooldown.is_some()) {
                let (cleared, done) = self.clear_cooldown(&mut st, p)?;
                if cleared {
                    tracing::info!(%pool, live, "Reconciliation found room on the platform: the refusal's cooldown ended");
                }
                (cleared, done.map(|d| d.commit))
            } else {
                (false, None)
            }
        };
        if let Some(c) = commit {
            self.durable(c).await?;
        }
        Ok(cleared)
    }

    /// What lowers `pool`'s cap now.
    pub fn cap_sources(&self, pool: &str) -> Option<CapSourcesView> {
        let p = self.pool_id(pool).ok()?.index();
        let st = self.lock();
        let s = st.caps.get(p)?;
        Some(CapSourcesView { adaptive: s.adaptive, cooldown: s.cooldown.map(|c| (c.cap, c.until)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_cap_is_the_minimum_of_the_sources_set() {
        let mut s = CapSources::default();
        assert_eq!(s.effective(), None, "no source: the limit");
        s.adaptive = Some(8);
        assert_eq!(s.effective(), Some(8));
        s.cooldown = Some(Cooldown { cap: 5, until: 1 });
        assert_eq!(s.effective(), Some(5), "the lower source wins");
        s.adaptive = Some(3);
        assert_eq!(s.effective(), Some(3));
        s.cooldown = None;
        assert_eq!(s.effective(), Some(3), "a cooldown that ends never raises the cap above the adaptive one");
    }
}
