//! The overflow chain each Twilio caller walks, frozen when their overflow starts.
//!
//! A Twilio caller walks a chain over several requests (a callback offer, then the
//! redirect to the next step, a menu, a transfer whose leg ends): each URL names a step
//! by its index. The chain in force changes with the breakers (the fallback while a
//! dependency is down) and with alerts (`set_overflow`), so an index alone could point
//! into another chain than the one the caller started on. So the chain chosen when the
//! caller's overflow starts is kept here by `CallSid`, and the caller goes on with it
//! whatever happens meanwhile. The URLs also carry the chain's kind (`chain=overflow |
//! fallback | alert`, signed by Twilio with the rest of the URL), so that after a restart,
//! which forgets this memory, a caller goes on with the chain of the same kind.
//!
//! In memory only, like the waiting room's announcements. An entry is dropped when the
//! call's terminal status arrives, or swept a day later.

use callgate_config::Overflow;
use callgate_ops::ChainKind;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

/// Entries of calls whose end was never seen are dropped after this long.
const FORGET_MS: u64 = 24 * 3600 * 1000;
/// Beyond this many entries, old ones are swept on the next freeze.
const SWEEP_AT: usize = 10_000;

/// A chain as a caller walks it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Chain {
    /// Where it came from (carried in the URLs).
    pub(crate) kind: ChainKind,
    /// Its steps.
    pub(crate) steps: Arc<[Overflow]>,
}

#[derive(Debug)]
struct Frozen {
    flow: String,
    chain: Chain,
    at: u64,
}

/// The chains Twilio callers are walking, by `CallSid`.
#[derive(Debug, Default)]
pub struct OverflowChains {
    calls: Mutex<FxHashMap<String, Frozen>>,
}

impl OverflowChains {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, Frozen>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's overflow starts (again) on `chain` of `flow`.
    pub(crate) fn freeze(&self, call: &str, flow: &str, chain: Chain, now: u64) {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, f| now.saturating_sub(f.at) < FORGET_MS);
        }
        map.insert(call.to_owned(), Frozen { flow: flow.to_owned(), chain, at: now });
    }

    /// The chain the caller started on in `flow`, if it is remembered.
    pub(crate) fn get(&self, call: &str, flow: &str) -> Option<Chain> {
        self.lock().get(call).filter(|f| f.flow == flow).map(|f| f.chain.clone())
    }

    /// The call is over.
    pub(crate) fn forget(&self, call: &str) {
        self.lock().remove(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::OverflowAction;

    fn chain(kind: ChainKind, actions: &[OverflowAction]) -> Chain {
        let steps: Vec<Overflow> = actions
            .iter()
            .map(|a| {
                let mut o = Overflow::new(*a);
                o.number = Some("+15559990000".into());
                o
            })
            .collect();
        Chain { kind, steps: steps.into() }
    }

    #[test]
    fn a_caller_keeps_the_chain_it_started_on() {
        let chains = OverflowChains::default();
        let fallback = chain(ChainKind::Fallback, &[OverflowAction::Transfer, OverflowAction::Voicemail]);
        chains.freeze("CA1", "support", fallback.clone(), 1_000);
        assert_eq!(chains.get("CA1", "support"), Some(fallback));
        assert_eq!(chains.get("CA1", "sales"), None, "another flow's URL does not use it");
        assert_eq!(chains.get("CA2", "support"), None);
        let busy = chain(ChainKind::Configured, &[OverflowAction::Busy]);
        chains.freeze("CA1", "support", busy.clone(), 2_000);
        assert_eq!(chains.get("CA1", "support"), Some(busy), "a new start freezes anew");
        chains.forget("CA1");
        assert_eq!(chains.get("CA1", "support"), None);
    }
}
