//! Adaptive caps: a pool's cap follows measured latency and drops, between `min` and the
//! pool's `limit`.
//!
//! # Sources
//! The update rules are those of Netflix's concurrency-limits library
//! (<https://github.com/Netflix/concurrency-limits>), read from
//! `concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/`:
//! - [`Gradient2Limit`]: `Gradient2Limit.java`, with `measurement/ExpAvgMeasurement.java`;
//! - [`VegasLimit`]: `VegasLimit.java`, with `functions/Log10RootFunction.java`;
//! - [`AimdLimit`]: `AIMDLimit.java` (named `AimdLimit` here, after Rust's casing rules);
//! - the sample window: `WindowedLimit.java` and `window/ImmutableAverageSampleWindow.java`.
//!
//! Parameters and their defaults are the Java builders', except the bounds: the Java
//! defaults (`minLimit` 20, `maxConcurrency` 200 or 1000, `initialLimit` 20) are sized for
//! RPC servers, while a voice pool's limit is often 10. Here `max` is the pool's `limit`,
//! `min` is configured (default 1) and the cap starts at `max`.
//!
//! # What feeds it
//! A [`Sample`] per finished call (its latency, e.g. the assistant's response latency or
//! time to first audio, reported with the release or through `POST /v1/samples`) and per
//! drop. A provider's concurrency refusal is a drop without a latency
//! ([`Sample::refusal`]); a call that timed out is a drop with its latency. Every
//! sample carries `inflight`, the pool's used units when the call started.
//!
//! # The rules the wrapper adds ([`AdaptiveLimit`])
//! - The cap stays within `[min, max]`.
//! - **App-limited**: a sample that is not a drop and whose `inflight * 2 < cap` never
//!   raises the cap (Netflix's own test, in all three algorithms). A pool that uses 4 of
//!   its 10 units has shown nothing about whether 11 would work.
//! - With a window (the default), the algorithm sees one aggregate sample per window, as
//!   Netflix's `WindowedLimit` feeds it; see the `window` module for the two voice-traffic
//!   choices made there.
//!
//! # Differences from the Java code, and why
//! - Gradient2 reacts to drops ([`Gradient2Params::drop_backoff`], default 0.9); the Java
//!   code ignores them (issue #176 there). `drop_backoff = None` restores that.
//! - A drop without a latency skips Vegas' probe and no-load bookkeeping (a refusal's
//!   elapsed time would otherwise become the no-load latency).
//! - Vegas' probe jitter comes from a seeded generator ([`VegasParams::seed`]) instead of
//!   `ThreadLocalRandom`, so a run is reproducible.
//! - Latencies are `f64` milliseconds instead of `long` nanoseconds; the rules only use
//!   ratios and comparisons, so the unit does not change a decision. A latency that is
//!   not a positive finite number counts as no latency.
//! - The sample window keeps collecting when it is due but short of `min_samples`, and
//!   closes early on a drop (see the `window` module: voice pools have few samples).
//!
//! # Behaviour under sustained saturation (from the scenario tests)
//! Against a server whose latency is flat up to K calls and grows as `n / K` beyond
//! (Little's law for K workers), with demand always above the cap:
//! - AIMD, whose only signals are drops and its timeout, saw-tooths around the point
//!   where latency passes `timeout` (or just below a provider's hard limit);
//! - Vegas holds `alpha..beta` (3..6) calls queued above K, until a probe re-learns the
//!   no-load latency from a loaded sample and the band moves up by about as much;
//! - Gradient2 settles near `rtt_tolerance × K + queue_size`, then creeps up as its
//!   long-term average follows the loaded latency. It reacts to *changes* of latency:
//!   started at the pool's limit against a dependency already past its knee, it takes
//!   the loaded latency as normal and stays at the limit.
//!
//! The creep and the last point are properties of the published rules (the reason `max`,
//! the pool's limit, bounds every cap); the tests pin them so that changing them is a
//! decision.

mod aimd;
mod cap;
mod functions;
mod gradient2;
mod vegas;
mod window;

#[cfg(test)]
mod tests;

pub use aimd::{AimdLimit, AimdParams};
pub use cap::{AdaptiveLimit, AdaptiveSpec, Algorithm, AlgorithmSpec, CapChange};
pub use functions::{log10_root, square_root, LimitFn};
pub use gradient2::{Gradient2Limit, Gradient2Params};
pub use vegas::{VegasLimit, VegasParams};
pub use window::WindowSpec;

use crate::ids::Millis;

/// What one finished (or dropped) call tells the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The call's latency in milliseconds; `None` when it measured nothing (a refusal).
    /// Values that are not positive and finite count as `None`.
    pub rtt_ms: Option<f64>,
    /// The pool's used units when the call started, the call included.
    pub inflight: u32,
    /// The call was dropped: refused by the provider for concurrency, or timed out.
    pub dropped: bool,
}

impl Sample {
    /// A call that completed in `rtt_ms` milliseconds.
    pub fn latency(rtt_ms: f64, inflight: u32) -> Sample {
        Sample { rtt_ms: Some(rtt_ms), inflight, dropped: false }
    }

    /// A provider's concurrency refusal: a drop with no latency.
    pub fn refusal(inflight: u32) -> Sample {
        Sample { rtt_ms: None, inflight, dropped: true }
    }

    /// A call dropped after `rtt_ms` milliseconds (e.g. a timeout).
    pub fn dropped_after(rtt_ms: f64, inflight: u32) -> Sample {
        Sample { rtt_ms: Some(rtt_ms), inflight, dropped: true }
    }
}

/// An update rule for a concurrency limit. Pure: no clock, no I/O; `now` is the
/// caller's clock (none of the three built-in rules reads it, but a rule may).
pub trait LimitAlgorithm {
    /// Takes one sample and returns the new limit.
    fn on_sample(&mut self, now: Millis, sample: Sample) -> u32;

    /// The current limit.
    fn limit(&self) -> u32;

    /// Replaces the bounds; the current estimate is clamped into them.
    fn set_bounds(&mut self, min: u32, max: u32);
}

/// The latency, if it is one (positive and finite).
fn valid_rtt(rtt_ms: Option<f64>) -> Option<f64> {
    rtt_ms.filter(|r| r.is_finite() && *r > 0.0)
}

/// `x` is a positive finite number.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// `x` is in `(0, 1]`.
fn unit_interval(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}
