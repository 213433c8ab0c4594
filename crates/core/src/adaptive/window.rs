//! The sample window: many per-call samples in, one aggregate sample per window out.
//!
//! Mirrors `WindowedLimit.java` and `window/ImmutableAverageSampleWindow.java` in
//! Netflix/concurrency-limits (`concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/`).
//! The Gradient2 javadoc assumes this: "the core algorithm re-calculates the limit every
//! sampling window (ex. 1 second)". A window closes at the first sample after
//! `next_update` once it holds `min_samples` latencies; the algorithm then sees one
//! sample with the window's mean latency, its largest `inflight` and whether anything
//! was dropped, and the next window lasts `clamp(2 × min latency, min_ms, max_ms)`.
//!
//! Two choices differ from the current Java code, both for voice traffic, where a pool
//! of ten calls of three minutes yields a latency sample every few seconds:
//! - A window that is due but not ready keeps collecting (as `WindowedLimit` did before
//!   Netflix/concurrency-limits PR #125) instead of being thrown away; thrown away, a
//!   slow pool would never reach `min_samples` and the limit would never move.
//! - A window that holds a drop closes when due even with fewer than `min_samples`
//!   latencies (or none): a provider's refusal should lower the cap within a window, not
//!   wait for ten calls to end.

use super::{valid_rtt, Sample};
use crate::ids::Millis;
use crate::spec::SpecError;

/// How samples are grouped before the algorithm sees them (the Java defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Shortest window, in milliseconds. Default 1000.
    pub min_ms: u64,
    /// Longest window before it is due, in milliseconds. Default 1000.
    pub max_ms: u64,
    /// Latency samples a window needs before it closes (unless it holds a drop).
    /// Default 10. The Java builder insists on at least 10; here 1 is allowed, for
    /// pools whose samples are few.
    pub min_samples: u32,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec { min_ms: 1_000, max_ms: 1_000, min_samples: 10 }
    }
}

impl WindowSpec {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.min_ms == 0 || self.min_ms > self.max_ms {
            return Err(SpecError(format!(
                "adaptive window: `min_ms` ({}) must be at least 1 and at most `max_ms` ({})",
                self.min_ms, self.max_ms
            )));
        }
        if self.min_samples == 0 {
            return Err(SpecError("adaptive window: `min_samples` must be at least 1".into()));
        }
        Ok(())
    }
}

/// The window being filled.
#[derive(Clone, Debug)]
pub(super) struct SampleWindow {
    spec: WindowSpec,
    /// The window closes at the first sample strictly after this instant.
    next_update: Millis,
    /// `+inf` while the window holds no latency.
    min_rtt: f64,
    sum_rtt: f64,
    count: u32,
    max_inflight: u32,
    dropped: bool,
}

impl SampleWindow {
    pub(super) fn new(spec: WindowSpec) -> SampleWindow {
        SampleWindow {
            spec,
            next_update: 0,
            min_rtt: f64::INFINITY,
            sum_rtt: 0.0,
            count: 0,
            max_inflight: 0,
            dropped: false,
        }
    }

    /// Adds a sample; returns the window's aggregate when this sample closes it.
    pub(super) fn add(&mut self, now: Millis, sample: Sample) -> Option<Sample> {
        let rtt = valid_rtt(sample.rtt_ms);
        if rtt.is_none() && !sample.dropped {
            return None;
        }
        if let Some(r) = rtt {
            self.min_rtt = self.min_rtt.min(r);
            self.sum_rtt += r;
            self.count += 1;
        }
        self.max_inflight = self.max_inflight.max(sample.inflight);
        self.dropped |= sample.dropped;

        let ready = self.count >= self.spec.min_samples || self.dropped;
        if now <= self.next_update || !ready {
            return None;
        }
        let out = Sample {
            rtt_ms: (self.count > 0).then(|| self.sum_rtt / f64::from(self.count)),
            inflight: self.max_inflight,
            dropped: self.dropped,
        };
        // min(max(2 × min rtt, min), max); with no latency, +inf gives `max_ms`.
        let length = (2.0 * self.min_rtt).max(self.spec.min_ms as f64).min(self.spec.max_ms as f64);
        self.next_update = now.saturating_add(length as u64);
        *self = SampleWindow { next_update: self.next_update, ..SampleWindow::new(self.spec) };
        Some(out)
    }
}
