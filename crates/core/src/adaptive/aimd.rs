//! AIMD: additive increase while nothing is dropped, multiplicative decrease on a drop.
//!
//! Mirrors `AIMDLimit.java` in Netflix/concurrency-limits
//! (`concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/AIMDLimit.java`):
//!
//! ```text
//! if dropped or rtt > timeout:   limit = floor(limit * backoff_ratio)
//! else if inflight * 2 >= limit: limit = limit + 1
//! limit = clamp(limit, min, max)
//! ```

use super::{positive, valid_rtt, LimitAlgorithm, Sample};
use crate::ids::Millis;
use crate::spec::SpecError;

/// AIMD's parameters, with the Java defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AimdParams {
    /// What a drop multiplies the limit by, in `[0.5, 1.0)`. Default 0.9.
    pub backoff_ratio: f64,
    /// A sample slower than this (milliseconds) counts as a drop. Default 5000 (the Java
    /// `DEFAULT_TIMEOUT` of 5 seconds).
    pub timeout_ms: f64,
}

impl Default for AimdParams {
    fn default() -> Self {
        AimdParams { backoff_ratio: 0.9, timeout_ms: 5_000.0 }
    }
}

impl AimdParams {
    /// Checks the ranges the Java builder checks.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(0.5..1.0).contains(&self.backoff_ratio) {
            return Err(SpecError(format!("aimd `backoff_ratio` must be in [0.5, 1.0), got {}", self.backoff_ratio)));
        }
        if !positive(self.timeout_ms) {
            return Err(SpecError(format!("aimd `timeout` must be positive, got {} ms", self.timeout_ms)));
        }
        Ok(())
    }
}

/// Loss-based limit: +1 per sample while the pool is at least half used and nothing is
/// dropped, `× backoff_ratio` on a drop or a timeout.
#[derive(Clone, Debug)]
pub struct AimdLimit {
    params: AimdParams,
    min: u32,
    max: u32,
    /// Always within `[min, max]`.
    limit: u32,
}

impl AimdLimit {
    /// A limit starting at `initial`, kept within `[min, max]`.
    pub fn new(params: AimdParams, min: u32, max: u32, initial: u32) -> AimdLimit {
        AimdLimit { params, min, max, limit: initial.clamp(min, max) }
    }

    /// The parameters.
    pub fn params(&self) -> &AimdParams {
        &self.params
    }
}

impl LimitAlgorithm for AimdLimit {
    fn on_sample(&mut self, _now: Millis, sample: Sample) -> u32 {
        let rtt = valid_rtt(sample.rtt_ms);
        let timed_out = rtt.is_some_and(|r| r > self.params.timeout_ms);
        let next = if sample.dropped || timed_out {
            (f64::from(self.limit) * self.params.backoff_ratio) as u32
        } else if rtt.is_none() {
            // Not a drop and no latency: nothing was measured (the Java code always has
            // an rtt, so this case does not arise there).
            self.limit
        } else if u64::from(sample.inflight) * 2 >= u64::from(self.limit) {
            self.limit.saturating_add(1)
        } else {
            self.limit
        };
        self.limit = next.clamp(self.min, self.max);
        self.limit
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    fn set_bounds(&mut self, min: u32, max: u32) {
        self.min = min;
        self.max = max;
        self.limit = self.limit.clamp(min, max);
    }
}
