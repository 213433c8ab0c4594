//! The per-pool adaptive cap: an algorithm, an optional sample window, the bounds, and
//! the rule that the cap never rises while the pool is not using what it has.

use super::aimd::{AimdLimit, AimdParams};
use super::gradient2::{Gradient2Limit, Gradient2Params};
use super::vegas::{VegasLimit, VegasParams};
use super::window::{SampleWindow, WindowSpec};
use super::{LimitAlgorithm, Sample};
use crate::ids::Millis;
use crate::spec::SpecError;

/// Which algorithm moves the cap, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AlgorithmSpec {
    /// [`Gradient2Limit`].
    Gradient2(Gradient2Params),
    /// [`VegasLimit`].
    Vegas(VegasParams),
    /// [`AimdLimit`].
    Aimd(AimdParams),
}

impl AlgorithmSpec {
    /// The config name: `gradient2`, `vegas` or `aimd`.
    pub fn name(&self) -> &'static str {
        match self {
            AlgorithmSpec::Gradient2(_) => "gradient2",
            AlgorithmSpec::Vegas(_) => "vegas",
            AlgorithmSpec::Aimd(_) => "aimd",
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            AlgorithmSpec::Gradient2(p) => p.validate(),
            AlgorithmSpec::Vegas(p) => p.validate(),
            AlgorithmSpec::Aimd(p) => p.validate(),
        }
    }
}

/// A pool's `adaptive = { … }` setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveSpec {
    /// The algorithm.
    pub algorithm: AlgorithmSpec,
    /// The cap never goes below this, in units, `>= 1` (a cap of 0 would admit nothing,
    /// so no sample would ever come to raise it). Default 1.
    pub min: u32,
    /// The cap never goes above this: the pool's configured `limit`.
    pub max: u32,
    /// Where the cap starts; `None` (the default) starts at `max`, so turning adaptive
    /// limiting on never takes capacity away before a sample says so. (The Java builders
    /// start at 20.)
    pub initial: Option<u32>,
    /// Group samples into windows before the algorithm sees them; `None` feeds every
    /// sample to the algorithm. Default: [`WindowSpec::default`].
    pub window: Option<WindowSpec>,
}

impl AdaptiveSpec {
    /// The defaults for a pool whose limit is `max`.
    pub fn new(algorithm: AlgorithmSpec, max: u32) -> AdaptiveSpec {
        AdaptiveSpec { algorithm, min: 1, max, initial: None, window: Some(WindowSpec::default()) }
    }

    /// Checks bounds, the initial cap, the window and the algorithm's parameters.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_bounds(self.min, self.max)?;
        if let Some(i) = self.initial {
            if i < self.min || i > self.max {
                return Err(SpecError(format!(
                    "adaptive `initial` ({i}) must be between `min` ({}) and the pool's limit ({})",
                    self.min, self.max
                )));
            }
        }
        if let Some(w) = &self.window {
            w.validate()?;
        }
        self.algorithm.validate()
    }
}

fn check_bounds(min: u32, max: u32) -> Result<(), SpecError> {
    if min == 0 {
        return Err(SpecError("adaptive `min` must be at least 1".into()));
    }
    if min > max {
        return Err(SpecError(format!("adaptive `min` ({min}) is above the pool's limit ({max})")));
    }
    Ok(())
}

/// One of the three built-in algorithms.
#[derive(Clone, Debug)]
pub enum Algorithm {
    /// Gradient2.
    Gradient2(Gradient2Limit),
    /// Vegas.
    Vegas(VegasLimit),
    /// AIMD.
    Aimd(AimdLimit),
}

impl Algorithm {
    /// Builds the algorithm a spec names, bounded by `[min, max]`, starting at `initial`.
    pub fn new(spec: &AlgorithmSpec, min: u32, max: u32, initial: u32) -> Algorithm {
        match *spec {
            AlgorithmSpec::Gradient2(p) => Algorithm::Gradient2(Gradient2Limit::new(p, min, max, initial)),
            AlgorithmSpec::Vegas(p) => Algorithm::Vegas(VegasLimit::new(p, min, max, initial)),
            AlgorithmSpec::Aimd(p) => Algorithm::Aimd(AimdLimit::new(p, min, max, initial)),
        }
    }

    fn inner(&mut self) -> &mut dyn LimitAlgorithm {
        match self {
            Algorithm::Gradient2(a) => a,
            Algorithm::Vegas(a) => a,
            Algorithm::Aimd(a) => a,
        }
    }
}

impl LimitAlgorithm for Algorithm {
    fn on_sample(&mut self, now: Millis, sample: Sample) -> u32 {
        self.inner().on_sample(now, sample)
    }

    fn limit(&self) -> u32 {
        match self {
            Algorithm::Gradient2(a) => a.limit(),
            Algorithm::Vegas(a) => a.limit(),
            Algorithm::Aimd(a) => a.limit(),
        }
    }

    fn set_bounds(&mut self, min: u32, max: u32) {
        self.inner().set_bounds(min, max)
    }
}

/// The cap moved: the caller turns this into a "limit changed" event and sets the
/// pool's cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapChange {
    /// The cap before.
    pub from: u32,
    /// The cap now.
    pub to: u32,
    /// When (the `now` of the sample that moved it).
    pub at: Millis,
}

/// A pool's adaptive cap.
///
/// Feed it every latency sample and every drop of the pool with [`AdaptiveLimit::on_sample`];
/// when the cap moves it says so. The cap always stays within `[min, max]`, and it never
/// rises on an *app-limited* sample: one that is not a drop and whose `inflight` is
/// below half the current cap (`inflight * 2 < cap`, the test all three Netflix
/// algorithms make). Such a sample still reaches the algorithm (it teaches Gradient2
/// its long-term latency and Vegas its no-load latency); only a rise is refused.
/// The three built-in algorithms already hold their limit under that test, so for them
/// the guard never fires; it is there for any other [`LimitAlgorithm`].
#[derive(Clone, Debug)]
pub struct AdaptiveLimit<A = Algorithm> {
    algorithm: A,
    window: Option<SampleWindow>,
    min: u32,
    max: u32,
    /// Within `[min, max]`.
    cap: u32,
}

impl AdaptiveLimit<Algorithm> {
    /// The adaptive cap a spec describes.
    pub fn new(spec: AdaptiveSpec) -> Result<AdaptiveLimit<Algorithm>, SpecError> {
        spec.validate()?;
        let initial = spec.initial.unwrap_or(spec.max);
        let algorithm = Algorithm::new(&spec.algorithm, spec.min, spec.max, initial);
        AdaptiveLimit::with_algorithm(algorithm, spec.min, spec.max, spec.window)
    }
}

impl<A: LimitAlgorithm> AdaptiveLimit<A> {
    /// Wraps any algorithm; the cap starts at the algorithm's limit, clamped.
    pub fn with_algorithm(
        mut algorithm: A,
        min: u32,
        max: u32,
        window: Option<WindowSpec>,
    ) -> Result<AdaptiveLimit<A>, SpecError> {
        check_bounds(min, max)?;
        if let Some(w) = &window {
            w.validate()?;
        }
        algorithm.set_bounds(min, max);
        let cap = algorithm.limit().clamp(min, max);
        Ok(AdaptiveLimit { algorithm, window: window.map(SampleWindow::new), min, max, cap })
    }

    /// The cap now, in units.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// The lowest cap allowed.
    pub fn min(&self) -> u32 {
        self.min
    }

    /// The highest cap allowed (the pool's limit).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The algorithm, to read its state (for metrics and tests).
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// Feeds one sample: a call's latency, or a drop (a provider's concurrency refusal,
    /// a timeout). `inflight` is the pool's used units when the call started, the call
    /// included. Returns the change when the cap moved.
    pub fn on_sample(&mut self, now: Millis, sample: Sample) -> Option<CapChange> {
        let seen = match &mut self.window {
            Some(w) => w.add(now, sample)?,
            None => sample,
        };
        let app_limited = !seen.dropped && u64::from(seen.inflight) * 2 < u64::from(self.cap);
        let proposed = self.algorithm.on_sample(now, seen).clamp(self.min, self.max);
        let next = if app_limited && proposed > self.cap { self.cap } else { proposed };
        self.move_to(now, next)
    }

    /// New bounds, e.g. after the pool's limit was changed at runtime. What the
    /// algorithm learned is kept; its estimate is clamped into the new bounds.
    pub fn set_bounds(&mut self, now: Millis, min: u32, max: u32) -> Result<Option<CapChange>, SpecError> {
        check_bounds(min, max)?;
        self.min = min;
        self.max = max;
        self.algorithm.set_bounds(min, max);
        let next = self.cap.clamp(min, max);
        Ok(self.move_to(now, next))
    }

    fn move_to(&mut self, now: Millis, next: u32) -> Option<CapChange> {
        debug_assert!(self.min <= next && next <= self.max);
        if next == self.cap {
            return None;
        }
        let change = CapChange { from: self.cap, to: next, at: now };
        self.cap = next;
        Some(change)
    }
}
