//! Adaptive caps: one [`AdaptiveLimit`] per pool that has `adaptive = { … }`.
//!
//! In the server, the governor feeds it under its lock and applies each [`CapChange`] as the pool's
//! adaptive cap source (the effective cap is the minimum of the sources, see
//! `caps.rs` in `callgate-governor`), so a cap change is an ordinary `limit_changed` event (journaled,
//! counted, streamed). What `inflight` means for a sample (the pool's used units when the
//! call started) is approximated by the used units when the sample arrives, plus the
//! units a release is about to free: callgate does not keep the count at grant time for
//! every lease, and for the app-limited rule (`inflight * 2 < cap`) the difference is at
//! most the calls that started or ended during one call.
//!
//! A cap is not journaled beyond its events: after a restart every adaptive pool starts
//! again at its `initial` cap (by default its limit), as the algorithms' state is gone.
//!
//! The simulator feeds the same caps with the samples of its modelled latency and applies
//! each change with `Ledger::set_cap`, on its virtual clock.

use callgate_config::{AdaptiveConfig, AdaptiveSource, VapiMetric};
use callgate_core::adaptive::{AdaptiveLimit, CapChange, Sample};

/// One pool's adaptive cap, with its settings (to rebuild the bounds on a limit change).
#[derive(Debug)]
struct Slot {
    config: AdaptiveConfig,
    limit: AdaptiveLimit,
}

/// The adaptive caps of every pool, by pool index (`None`: the pool is not adaptive).
#[derive(Debug, Default)]
pub struct AdaptiveCaps {
    pools: Vec<Option<Slot>>,
    /// Why a configured pool was left fixed (its settings do not fit its limit).
    problems: Vec<String>,
}

impl AdaptiveCaps {
    /// From each pool's setting and current limit, by pool index. A setting the core
    /// refuses (a validated config has none) or a limit of 0 leaves the pool fixed; see
    /// [`AdaptiveCaps::problems`].
    pub fn new(pools: impl IntoIterator<Item = (Option<AdaptiveConfig>, u32)>) -> Self {
        let mut problems = Vec::new();
        let pools = pools
            .into_iter()
            .map(|(config, limit)| {
                let config = config?;
                match build(&config, limit) {
                    Ok(limit) => Some(Slot { config, limit }),
                    Err(e) => {
                        problems.push(e);
                        None
                    }
                }
            })
            .collect();
        AdaptiveCaps { pools, problems }
    }

    /// Why pools configured adaptive were left fixed (for the caller's log).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether pool `p` is adaptive.
    pub fn is_adaptive(&self, p: usize) -> bool {
        self.pools.get(p).is_some_and(Option::is_some)
    }

    /// Where pool `p` takes its latencies from, and with `vapi` which one, if it is
    /// adaptive.
    pub fn source(&self, p: usize) -> Option<(AdaptiveSource, VapiMetric)> {
        let c = &self.pools.get(p)?.as_ref()?.config;
        Some((c.source, c.metric.unwrap_or_default()))
    }

    /// The cap the adaptive limit of pool `p` wants, if it is adaptive.
    pub fn cap(&self, p: usize) -> Option<u32> {
        self.pools.get(p)?.as_ref().map(|s| s.limit.cap())
    }

    /// `(algorithm, min, max)` of pool `p`, if it is adaptive.
    pub fn describe(&self, p: usize) -> Option<(&'static str, u32, u32)> {
        let s = self.pools.get(p)?.as_ref()?;
        Some((s.config.algorithm.as_str(), s.limit.min(), s.limit.max()))
    }

    /// Feeds a sample of pool `p`; the change to apply, if the cap moved.
    pub fn on_sample(&mut self, p: usize, now: u64, sample: Sample) -> Option<CapChange> {
        self.pools.get_mut(p)?.as_mut()?.limit.on_sample(now, sample)
    }

    /// The pool's limit changed at runtime: the bounds follow (`max` is at most the
    /// limit). A limit below `min` lowers `min` with it; a limit of 0 is left to the
    /// ledger (the effective cap is `min(limit, cap)`), and the bounds stay.
    pub fn on_limit(&mut self, p: usize, limit: u32, now: u64) -> Option<CapChange> {
        let slot = self.pools.get_mut(p)?.as_mut()?;
        if limit == 0 {
            return None;
        }
        let max = slot.config.max_for(limit);
        let min = slot.config.min.min(max);
        slot.limit.set_bounds(now, min, max).ok().flatten()
    }
}

fn build(config: &AdaptiveConfig, limit: u32) -> Result<AdaptiveLimit, String> {
    let mut spec = config.spec(limit);
    // A runtime limit restored below the configured min: keep the pool adaptive within
    // what it has.
    spec.min = spec.min.min(spec.max);
    spec.initial = spec.initial.map(|i| i.clamp(spec.min, spec.max));
    AdaptiveLimit::new(spec).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::AdaptiveAlgorithm;

    fn aimd(min: u32) -> AdaptiveConfig {
        let mut c = AdaptiveConfig::new(AdaptiveAlgorithm::Aimd);
        c.min = min;
        // One sample per window, so each drop moves the cap.
        c.window = Some(callgate_config::AdaptiveWindow {
            min: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(1),
            min_samples: 1,
        });
        c
    }

    #[test]
    fn a_refusal_lowers_the_cap_and_a_lower_limit_moves_the_bounds() {
        let mut caps = AdaptiveCaps::new([(Some(aimd(2)), 10), (None, 5)]);
        assert!(caps.is_adaptive(0) && !caps.is_adaptive(1));
        assert_eq!(caps.cap(0), Some(10), "starts at the limit");
        let change = caps.on_sample(0, 1_000, Sample::refusal(10)).expect("a drop lowers the cap");
        assert_eq!((change.from, change.to), (10, 9));
        assert_eq!(caps.on_sample(1, 1_000, Sample::refusal(5)), None, "a fixed pool ignores samples");
        let change = caps.on_limit(0, 6, 2_000).expect("the cap follows a lower limit");
        assert_eq!(change.to, 6);
        assert_eq!(caps.describe(0), Some(("aimd", 2, 6)));
        assert_eq!(caps.on_limit(0, 1, 3_000).map(|c| c.to), Some(1), "min follows a limit below it");
    }
}
