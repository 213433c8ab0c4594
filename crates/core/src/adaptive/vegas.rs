//! Vegas: keep a small, bounded number of calls queued above the no-load latency.
//!
//! Mirrors `VegasLimit.java` in Netflix/concurrency-limits
//! (`concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/VegasLimit.java`),
//! with `Log10RootFunction.java` for the default step functions:
//!
//! ```text
//! probe_count += 1
//! if probe_jitter * probe_multiplier * limit <= probe_count:   // re-learn the no-load rtt
//!     probe_jitter = uniform[0.5, 1); probe_count = 0; rtt_noload = rtt; return
//! if rtt_noload unknown or rtt < rtt_noload: rtt_noload = rtt; return
//! queue = ceil(limit * (1 - rtt_noload / rtt))
//! if dropped:                      limit = decrease(limit)
//! else if inflight * 2 < limit:    return                 // app-limited
//! else if queue <= threshold:      limit = limit + beta   // no queueing: grow fast
//! else if queue < alpha:           limit = increase(limit)
//! else if queue > beta:            limit = decrease(limit)
//! else:                            return                 // alpha <= queue <= beta
//! limit = (1 - smoothing) * limit + smoothing * clamp(new, min, max)
//! ```
//!
//! The Java code draws the probe jitter from `ThreadLocalRandom`; here it comes from a
//! SplitMix64 generator seeded by [`VegasParams::seed`], so runs are reproducible.
//!
//! One addition: a drop without a latency (a provider's concurrency refusal measures
//! nothing about the service's latency) skips the probe and no-load bookkeeping and goes
//! straight to the drop rule. In the Java code every sample has an rtt, and a fast
//! refusal would become the new no-load rtt, which would then read every later normal
//! call as queueing.

use super::functions::LimitFn;
use super::{unit_interval, valid_rtt, LimitAlgorithm, Sample};
use crate::ids::Millis;
use crate::spec::SpecError;

/// Vegas' parameters, with the Java defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VegasParams {
    /// Weight of the new estimate, in `(0, 1]`. Default 1.0 (no smoothing).
    pub smoothing: f64,
    /// Below this many queued calls the limit grows by `increase`. Default `3 × log10_root`.
    pub alpha: LimitFn,
    /// Above this many queued calls the limit shrinks by `decrease`. Default `6 × log10_root`.
    pub beta: LimitFn,
    /// At or below this many queued calls the limit grows by `beta`. Default `log10_root`.
    pub threshold: LimitFn,
    /// The step up when `threshold < queue < alpha`. Default `log10_root`.
    pub increase: LimitFn,
    /// The step down on a drop or when `queue > beta`. Default `log10_root`.
    pub decrease: LimitFn,
    /// The no-load rtt is re-learned every `jitter × probe_multiplier × limit` samples,
    /// jitter uniform in `[0.5, 1)`. Default 30.
    pub probe_multiplier: u32,
    /// Seed of the probe jitter (the Java code uses `ThreadLocalRandom`).
    pub seed: u64,
}

impl Default for VegasParams {
    fn default() -> Self {
        VegasParams {
            smoothing: 1.0,
            alpha: LimitFn::Log10Root { times: 3 },
            beta: LimitFn::Log10Root { times: 6 },
            threshold: LimitFn::Log10Root { times: 1 },
            increase: LimitFn::Log10Root { times: 1 },
            decrease: LimitFn::Log10Root { times: 1 },
            probe_multiplier: 30,
            seed: 0x5eed_ca11_9a7e,
        }
    }
}

impl VegasParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !unit_interval(self.smoothing) {
            return Err(SpecError(format!("vegas `smoothing` must be in (0, 1], got {}", self.smoothing)));
        }
        if self.probe_multiplier == 0 {
            return Err(SpecError("vegas `probe_multiplier` must be at least 1".into()));
        }
        Ok(())
    }
}

/// Delay-based limit after TCP Vegas.
#[derive(Clone, Debug)]
pub struct VegasLimit {
    params: VegasParams,
    min: u32,
    max: u32,
    /// The estimate (fractional with smoothing); the limit is its integer part.
    estimated: f64,
    /// The no-load latency in ms; 0 until the first sample.
    rtt_noload: f64,
    probe_count: u64,
    probe_jitter: f64,
    rng: SplitMix64,
}

impl VegasLimit {
    /// A limit starting at `initial`, kept within `[min, max]`.
    pub fn new(params: VegasParams, min: u32, max: u32, initial: u32) -> VegasLimit {
        let mut rng = SplitMix64(params.seed);
        let probe_jitter = rng.uniform_half_to_one();
        VegasLimit {
            params,
            min,
            max,
            estimated: f64::from(initial.clamp(min, max)),
            rtt_noload: 0.0,
            probe_count: 0,
            probe_jitter,
            rng,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &VegasParams {
        &self.params
    }

    /// The no-load latency it currently assumes (ms), `None` before the first sample.
    pub fn rtt_noload_ms(&self) -> Option<f64> {
        (self.rtt_noload > 0.0).then_some(self.rtt_noload)
    }

    fn int_limit(&self) -> u32 {
        self.estimated as u32
    }

    fn should_probe(&self) -> bool {
        self.probe_jitter * f64::from(self.params.probe_multiplier) * self.estimated <= self.probe_count as f64
    }

    fn decreased(&self) -> f64 {
        self.estimated - f64::from(self.params.decrease.apply(self.int_limit()))
    }

    fn apply(&mut self, new_limit: f64) -> u32 {
        let bounded = new_limit.clamp(f64::from(self.min), f64::from(self.max));
        let s = self.params.smoothing;
        self.estimated = (1.0 - s) * self.estimated + s * bounded;
        self.int_limit()
    }
}

impl LimitAlgorithm for VegasLimit {
    fn on_sample(&mut self, _now: Millis, sample: Sample) -> u32 {
        let Some(rtt) = valid_rtt(sample.rtt_ms) else {
            if sample.dropped {
                let next = self.decreased();
                return self.apply(next);
            }
            return self.int_limit();
        };

        self.probe_count += 1;
        if self.should_probe() {
            self.probe_jitter = self.rng.uniform_half_to_one();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.int_limit();
        }
        if self.rtt_noload == 0.0 || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.int_limit();
        }

        let limit = self.int_limit();
        let queue = (self.estimated * (1.0 - self.rtt_noload / rtt)).ceil() as i64;
        let next = if sample.dropped {
            self.decreased()
        } else if f64::from(sample.inflight) * 2.0 < self.estimated {
            return limit;
        } else {
            let alpha = i64::from(self.params.alpha.apply(limit));
            let beta = i64::from(self.params.beta.apply(limit));
            let threshold = i64::from(self.params.threshold.apply(limit));
            if queue <= threshold {
                self.estimated + beta as f64
            } else if queue < alpha {
                self.estimated + f64::from(self.params.increase.apply(limit))
            } else if queue > beta {
                self.decreased()
            } else {
                return limit;
            }
        };
        self.apply(next)
    }

    fn limit(&self) -> u32 {
        self.int_limit()
    }

    fn set_bounds(&mut self, min: u32, max: u32) {
        self.min = min;
        self.max = max;
        self.estimated = self.estimated.clamp(f64::from(min), f64::from(max));
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for a probe jitter.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0.5, 1)`, like `ThreadLocalRandom.nextDouble(0.5, 1)`.
    fn uniform_half_to_one(&mut self) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        0.5 + 0.5 * unit
    }
}
