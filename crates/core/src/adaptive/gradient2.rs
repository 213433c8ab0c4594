//! Gradient2: follow the ratio between a long-term average latency and the latest one.
//!
//! Mirrors `Gradient2Limit.java` in Netflix/concurrency-limits
//! (`concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/Gradient2Limit.java`),
//! with `measurement/ExpAvgMeasurement.java` for the long-term average:
//!
//! ```text
//! queue    = queue_size(limit)
//! short    = rtt                                    // the sample itself
//! long     = long_ema.add(rtt)                      // EMA over long_window samples,
//!                                                   // a plain mean for the first 10
//! if long / short > 2: long_ema *= 0.95             // recover fast after a load spell
//! if inflight < limit / 2: return                   // app-limited
//! gradient = clamp(rtt_tolerance * long / short, 0.5, 1.0)
//! new      = limit * gradient + queue
//! limit    = clamp(limit * (1 - smoothing) + new * smoothing, min, max)
//! ```
//!
//! The Java builder's `shortWindow` is deprecated and has no effect (the short-term rtt
//! is the sample itself), so it has no counterpart here.
//!
//! # Drops (a callgate addition)
//! The Java code ignores `didDrop` (Netflix/concurrency-limits issue #176): a dropped
//! request's elapsed time is just another rtt. For callgate a drop is usually a
//! provider's concurrency refusal, the plainest sign that the cap is above what the
//! provider will take, and its "rtt" is the time the refusal took, which says nothing
//! about latency. So with [`Gradient2Params::drop_backoff`] set (the default, 0.9, AIMD's
//! ratio) a drop multiplies the estimate by it; a latency carried by the drop still feeds
//! the long-term average. With `drop_backoff = None` the Java behaviour is kept exactly:
//! the drop flag is ignored and a drop without a latency changes nothing.
//!
//! # A property to know
//! Under sustained saturation the long-term average follows the loaded latency, so the
//! limit keeps creeping up by about `queue_size × smoothing` whenever the latest latency
//! is within `rtt_tolerance` of that average (Netflix/concurrency-limits issue #137).
//! The scenario tests measure that creep; `max` (the pool's limit) bounds it.

use super::functions::LimitFn;
use super::{unit_interval, valid_rtt, LimitAlgorithm, Sample};
use crate::ids::Millis;
use crate::spec::SpecError;

/// Samples averaged plainly before the long-term average turns exponential
/// (`new ExpAvgMeasurement(longWindow, 10)` in the Java constructor).
const WARMUP_SAMPLES: u32 = 10;

/// Gradient2's parameters, with the Java defaults (and one callgate addition).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gradient2Params {
    /// Weight of the new estimate, in `(0, 1]`. Default 0.2.
    pub smoothing: f64,
    /// Calls allowed to queue: how far the limit may grow per update while latency stays
    /// low. Default 4 (`concurrency -> 4`).
    pub queue_size: LimitFn,
    /// Samples in the long-term average (EMA factor `2 / (long_window + 1)`). Default 600.
    pub long_window: u32,
    /// How much the latest latency may exceed the long-term average before the limit
    /// shrinks, `>= 1.0`. Default 1.5.
    pub rtt_tolerance: f64,
    /// callgate addition: a drop multiplies the estimate by this, in `[0.5, 1.0)`;
    /// `None` ignores drops as the Java code does. Default `Some(0.9)`.
    pub drop_backoff: Option<f64>,
}

impl Default for Gradient2Params {
    fn default() -> Self {
        Gradient2Params {
            smoothing: 0.2,
            queue_size: LimitFn::Fixed(4),
            long_window: 600,
            rtt_tolerance: 1.5,
            drop_backoff: Some(0.9),
        }
    }
}

impl Gradient2Params {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !unit_interval(self.smoothing) {
            return Err(SpecError(format!("gradient2 `smoothing` must be in (0, 1], got {}", self.smoothing)));
        }
        if self.long_window == 0 {
            return Err(SpecError("gradient2 `long_window` must be at least 1".into()));
        }
        if !(self.rtt_tolerance >= 1.0 && self.rtt_tolerance.is_finite()) {
            return Err(SpecError(format!("gradient2 `rtt_tolerance` must be >= 1.0, got {}", self.rtt_tolerance)));
        }
        if let Some(b) = self.drop_backoff {
            if !(0.5..1.0).contains(&b) {
                return Err(SpecError(format!("gradient2 `drop_backoff` must be in [0.5, 1.0), got {b}")));
            }
        }
        Ok(())
    }
}

/// `ExpAvgMeasurement`: a plain mean over the first `warmup` samples, then an EMA with
/// factor `2 / (window + 1)`.
#[derive(Clone, Debug)]
struct ExpAvg {
    value: f64,
    sum: f64,
    count: u32,
    factor: f64,
}

impl ExpAvg {
    fn new(window: u32) -> ExpAvg {
        ExpAvg { value: 0.0, sum: 0.0, count: 0, factor: 2.0 / (f64::from(window) + 1.0) }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < WARMUP_SAMPLES {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }
}

/// Latency-gradient limit.
#[derive(Clone, Debug)]
pub struct Gradient2Limit {
    params: Gradient2Params,
    min: u32,
    max: u32,
    /// The estimate (fractional); the limit is its integer part. Within `[min, max]`.
    estimated: f64,
    long_rtt: ExpAvg,
    last_rtt: f64,
}

impl Gradient2Limit {
    /// A limit starting at `initial`, kept within `[min, max]`.
    pub fn new(params: Gradient2Params, min: u32, max: u32, initial: u32) -> Gradient2Limit {
        Gradient2Limit {
            params,
            min,
            max,
            estimated: f64::from(initial.clamp(min, max)),
            long_rtt: ExpAvg::new(params.long_window),
            last_rtt: 0.0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Gradient2Params {
        &self.params
    }

    /// The long-term average latency (ms); 0 before the first sample.
    pub fn long_rtt_ms(&self) -> f64 {
        self.long_rtt.value
    }

    /// The latest latency (ms); 0 before the first sample.
    pub fn last_rtt_ms(&self) -> f64 {
        self.last_rtt
    }

    fn int_limit(&self) -> u32 {
        self.estimated as u32
    }

    fn bounded(&self, x: f64) -> f64 {
        x.clamp(f64::from(self.min), f64::from(self.max))
    }

    /// Feeds the averages; returns `(short, long)` as the update rule reads them (the
    /// long value from before the recovery decay, as in the Java code).
    fn observe(&mut self, rtt: f64) -> (f64, f64) {
        self.last_rtt = rtt;
        let long = self.long_rtt.add(rtt);
        if long / rtt > 2.0 {
            self.long_rtt.value *= 0.95;
        }
        (rtt, long)
    }
}

impl LimitAlgorithm for Gradient2Limit {
    fn on_sample(&mut self, _now: Millis, sample: Sample) -> u32 {
        let rtt = valid_rtt(sample.rtt_ms);
        if let (true, Some(backoff)) = (sample.dropped, self.params.drop_backoff) {
            if let Some(rtt) = rtt {
                self.observe(rtt);
            }
            self.estimated = self.bounded(self.estimated * backoff);
            return self.int_limit();
        }
        let Some(rtt) = rtt else {
            return self.int_limit();
        };

        let queue = f64::from(self.params.queue_size.apply(self.int_limit()));
        let (short, long) = self.observe(rtt);

        if f64::from(sample.inflight) < self.estimated / 2.0 {
            return self.int_limit();
        }

        let gradient = (self.params.rtt_tolerance * long / short).clamp(0.5, 1.0);
        let new_limit = self.estimated * gradient + queue;
        let s = self.params.smoothing;
        self.estimated = self.bounded(self.estimated * (1.0 - s) + new_limit * s);
        self.int_limit()
    }

    fn limit(&self) -> u32 {
        self.int_limit()
    }

    fn set_bounds(&mut self, min: u32, max: u32) {
        self.min = min;
        self.max = max;
        self.estimated = self.bounded(self.estimated);
    }
}
