//! The request paths' commands on the shared ledger's batches while Redis answers.
//!
//! The synchronous path ([`Fallback`]'s `execute`) runs a command on Redis under the mode's
//! read lock, so a switch to local admission (under the write lock) comes after every
//! command under way, and counts its answer, or its units as in doubt when the answer was
//! lost. Here a command waits for its batch (`callgate_store_redis`'s batches, or the
//! journaled backend's) without holding that lock, so that a node has as many commands in
//! Redis as it has requests waiting. Instead an acquire's units count as *in flight* from
//! before it is sent until its answer: a switch to local admission meanwhile counts them
//! as in use (a share is computed from too much in use, never too little). Its answer
//! moves them to what is seen in use; a lost answer, to what is in doubt.

use super::{lock, Fallback, Mode};
use callgate_backend::{Command, Error, ErrorKind, Executed, LedgerBackend};
use callgate_core::PoolUnits;

/// An acquire's units in flight, given back when dropped (answered, refused, or its
/// caller gone), unless its answer was lost: then they count as in doubt.
struct InFlight<'a> {
    fallback: &'a Fallback,
    pools: Vec<PoolUnits>,
}

impl<'a> InFlight<'a> {
    fn new(fallback: &'a Fallback, pools: Vec<PoolUnits>) -> InFlight<'a> {
        count(&mut lock(&fallback.seen).in_flight, &pools, true);
        InFlight { fallback, pools }
    }

    /// Its answer was lost (Redis may have granted it): its units count as in doubt.
    fn lost(mut self) {
        let pools = std::mem::take(&mut self.pools);
        let mut seen = lock(&self.fallback.seen);
        count(&mut seen.in_flight, &pools, false);
        count(&mut seen.doubt, &pools, true);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.pools.is_empty() {
            count(&mut lock(&self.fallback.seen).in_flight, &self.pools, false);
        }
    }
}

/// Adds (or takes out) `pools`' units to `units`, by pool.
pub(super) fn count(units: &mut [u64], pools: &[PoolUnits], add: bool) {
    for pu in pools {
        if let Some(u) = units.get_mut(pu.pool.index()) {
            let n = u64::from(pu.units);
            *u = if add { *u + n } else { u.saturating_sub(n) };
        }
    }
}

impl Fallback {
    /// Whether `cmd` goes through the wrapped backend's batches: a request path's command,
    /// while the node admits on the shared ledger and Redis answers.
    pub(super) fn batches(&self, cmd: &Command) -> bool {
        callgate_store_redis::batched(cmd) && matches!(*self.mode_read(), Mode::Shared) && !self.unreachable()
    }

    /// Runs `cmd` ([`Fallback::batches`]) in the wrapped backend's batches. When Redis
    /// turns out unreachable: an acquire answers 503 (its units in doubt; a retry takes the
    /// synchronous path, which admits locally once it may); anything else takes the
    /// synchronous path (a change of a lease Redis holds is kept for Redis).
    pub(super) async fn execute_batched(&self, cmd: Command) -> Result<Executed, Error> {
        let flight = InFlight::new(self, self.acquire_units(&cmd));
        match self.inner.execute_async(cmd.clone()).await {
            Ok(done) => {
                // Seen in use before no longer in flight: counted at every moment.
                lock(&self.seen).apply(&done.events, true, self.clock.now_ms());
                drop(flight);
                Ok(done)
            }
            Err(e) if e.kind == ErrorKind::Unavailable && self.unreachable() => {
                if matches!(cmd, Command::Acquire(_)) {
                    flight.lost();
                    return Err(e);
                }
                drop(flight);
                self.execute(cmd)
            }
            Err(e) => Err(e),
        }
    }
}
