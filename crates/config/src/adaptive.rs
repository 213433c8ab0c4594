//! A pool's `adaptive = { … }`: its cap follows measured latency and provider refusals,
//! between `min` and `max` (the pool's `limit` unless set lower).
//!
//! One flat table for the three algorithms, so it reads as one line in the file; a
//! parameter of another algorithm is refused by name, as overflow fields are. Parameters
//! left out keep the defaults of Netflix concurrency-limits (see `callgate_core::adaptive`).

use crate::campaign::Real;
use crate::problem::{Field, Problems};
use crate::Config;
use callgate_core::adaptive::{
    AdaptiveSpec, AimdParams, AlgorithmSpec, Gradient2Params, LimitFn, VegasParams, WindowSpec,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdaptiveAlgorithm {
    /// Netflix's Gradient2: follows the ratio of a long-term to the latest latency.
    Gradient2,
    /// TCP Vegas: estimates the calls queued above the no-load latency.
    Vegas,
    /// Additive increase, multiplicative decrease on drops and timeouts.
    Aimd,
}

impl AdaptiveAlgorithm {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            AdaptiveAlgorithm::Gradient2 => "gradient2",
            AdaptiveAlgorithm::Vegas => "vegas",
            AdaptiveAlgorithm::Aimd => "aimd",
        }
    }
}

impl fmt::Display for AdaptiveAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a pool's adaptive cap takes its latencies from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdaptiveSource {
    /// What customers post to `/v1/samples` or with a release (the default).
    #[default]
    Samples,
    /// Vapi's own measurements: each ended call's end-of-call report contributes its
    /// latency (`metric`); no customer code is needed.
    Vapi,
}

impl AdaptiveSource {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            AdaptiveSource::Samples => "samples",
            AdaptiveSource::Vapi => "vapi",
        }
    }
}

/// Which latency of an ended Vapi call is its sample (`metric = "turn_p95"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VapiMetric {
    /// The 95th percentile of the call's turn latencies (the default).
    #[default]
    TurnP95,
    /// The median turn latency.
    TurnP50,
    /// The average turn latency.
    TurnAvg,
    /// The 95th percentile of the model's latencies.
    ModelP95,
    /// The average model latency.
    ModelAvg,
}

impl VapiMetric {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            VapiMetric::TurnP95 => "turn_p95",
            VapiMetric::TurnP50 => "turn_p50",
            VapiMetric::TurnAvg => "turn_avg",
            VapiMetric::ModelP95 => "model_p95",
            VapiMetric::ModelAvg => "model_avg",
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A pool's adaptive cap (`[[pools]] adaptive = { algorithm = "gradient2", min = 2 }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// `gradient2`, `vegas` or `aimd`.
    pub algorithm: AdaptiveAlgorithm,
    /// Where latencies come from: `samples` (default) or `vapi` (each ended Vapi call
    /// of the pool's flows, as its end-of-call report measured it). A pool with
    /// `source = "vapi"` takes no latency from `/v1/samples`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: AdaptiveSource,
    /// With `source = "vapi"`: which latency of the call (default `turn_p95`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<VapiMetric>,
    /// The cap never goes below this many units (at least 1; default 1).
    #[serde(default = "one")]
    pub min: u32,
    /// The cap never goes above this many units (at most the pool's `limit`; default:
    /// the limit). A runtime limit change lowers it when the new limit is lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Where the cap starts, in units (default: `max`, so turning adaptive limiting on
    /// takes no capacity away before a sample says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<u32>,
    /// How samples are grouped before the algorithm sees them (default: windows of 1 s
    /// holding at least 10 latencies; a window with a refusal closes at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<AdaptiveWindow>,
    /// gradient2, vegas: weight of the new estimate, in (0, 1] (gradient2 0.2, vegas 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoothing: Option<Real>,
    /// gradient2: calls allowed to queue, in units (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    /// gradient2: samples in the long-term latency average (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_window: Option<u32>,
    /// gradient2: how far the latest latency may exceed the long-term average before the
    /// cap shrinks, at least 1.0 (default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_tolerance: Option<Real>,
    /// gradient2: what a drop (a provider's refusal) multiplies the cap by, in [0.5, 1.0];
    /// 1.0 ignores drops as Netflix's code does (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_backoff: Option<Real>,
    /// vegas: below this many queued calls the cap grows (default 3 × log10 of the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<u32>,
    /// vegas: above this many queued calls the cap shrinks (default 6 × log10 of the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<u32>,
    /// vegas: at or below this many queued calls the cap grows by `beta` (default log10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// vegas: the step up, in units (default log10 of the cap, i.e. 1 below 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increase: Option<u32>,
    /// vegas: the step down, in units (default log10 of the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrease: Option<u32>,
    /// vegas: the no-load latency is re-learned every about `probe_multiplier × cap`
    /// samples (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_multiplier: Option<u32>,
    /// aimd: what a drop multiplies the cap by, in [0.5, 1.0) (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ratio: Option<Real>,
    /// aimd: a call slower than this counts as a drop (default "5s").
    #[serde(default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `window = { min = "1s", max = "1s", min_samples = 10 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveWindow {
    /// Shortest window (default "1s").
    #[serde(default = "one_second", with = "crate::serde_duration")]
    pub min: Duration,
    /// Longest window before it is due (default "1s").
    #[serde(default = "one_second", with = "crate::serde_duration")]
    pub max: Duration,
    /// Latencies a window needs before it closes, unless it holds a refusal (default 10;
    /// lower it for pools whose calls end only every few seconds).
    #[serde(default = "ten")]
    pub min_samples: u32,
}

fn one() -> u32 {
    1
}

fn ten() -> u32 {
    10
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The parameters that belong to one algorithm only, with their owner.
const OWNED: &[(&str, &[AdaptiveAlgorithm])] = &[
    ("smoothing", &[AdaptiveAlgorithm::Gradient2, AdaptiveAlgorithm::Vegas]),
    ("queue_size", &[AdaptiveAlgorithm::Gradient2]),
    ("long_window", &[AdaptiveAlgorithm::Gradient2]),
    ("rtt_tolerance", &[AdaptiveAlgorithm::Gradient2]),
    ("drop_backoff", &[AdaptiveAlgorithm::Gradient2]),
    ("alpha", &[AdaptiveAlgorithm::Vegas]),
    ("beta", &[AdaptiveAlgorithm::Vegas]),
    ("threshold", &[AdaptiveAlgorithm::Vegas]),
    ("increase", &[AdaptiveAlgorithm::Vegas]),
    ("decrease", &[AdaptiveAlgorithm::Vegas]),
    ("probe_multiplier", &[AdaptiveAlgorithm::Vegas]),
    ("backoff_ratio", &[AdaptiveAlgorithm::Aimd]),
    ("timeout", &[AdaptiveAlgorithm::Aimd]),
];

impl AdaptiveConfig {
    /// An adaptive setting with `algorithm` and every default.
    pub fn new(algorithm: AdaptiveAlgorithm) -> Self {
        AdaptiveConfig {
            algorithm,
            source: AdaptiveSource::Samples,
            metric: None,
            min: 1,
            max: None,
            initial: None,
            window: None,
            smoothing: None,
            queue_size: None,
            long_window: None,
            rtt_tolerance: None,
            drop_backoff: None,
            alpha: None,
            beta: None,
            threshold: None,
            increase: None,
            decrease: None,
            probe_multiplier: None,
            backoff_ratio: None,
            timeout: None,
        }
    }

    /// Which parameters are given, by name.
    fn given(&self) -> [(&'static str, bool); 13] {
        [
            ("smoothing", self.smoothing.is_some()),
            ("queue_size", self.queue_size.is_some()),
            ("long_window", self.long_window.is_some()),
            ("rtt_tolerance", self.rtt_tolerance.is_some()),
            ("drop_backoff", self.drop_backoff.is_some()),
            ("alpha", self.alpha.is_some()),
            ("beta", self.beta.is_some()),
            ("threshold", self.threshold.is_some()),
            ("increase", self.increase.is_some()),
            ("decrease", self.decrease.is_some()),
            ("probe_multiplier", self.probe_multiplier.is_some()),
            ("backoff_ratio", self.backoff_ratio.is_some()),
            ("timeout", self.timeout.is_some()),
        ]
    }

    /// The upper bound for a pool whose limit is `limit`.
    pub fn max_for(&self, limit: u32) -> u32 {
        self.max.map_or(limit, |m| m.min(limit))
    }

    /// The core spec for a pool whose limit is `limit`. Meant for a validated config;
    /// the core checks it again ([`AdaptiveSpec::validate`]).
    pub fn spec(&self, limit: u32) -> AdaptiveSpec {
        let algorithm = match self.algorithm {
            AdaptiveAlgorithm::Gradient2 => {
                let d = Gradient2Params::default();
                AlgorithmSpec::Gradient2(Gradient2Params {
                    smoothing: self.smoothing.map_or(d.smoothing, |r| r.0),
                    queue_size: self.queue_size.map_or(d.queue_size, LimitFn::Fixed),
                    long_window: self.long_window.unwrap_or(d.long_window),
                    rtt_tolerance: self.rtt_tolerance.map_or(d.rtt_tolerance, |r| r.0),
                    // 1.0 reads as "drops change nothing", the Java behaviour.
                    drop_backoff: match self.drop_backoff {
                        Some(Real(1.0)) => None,
                        Some(Real(b)) => Some(b),
                        None => d.drop_backoff,
                    },
                })
            }
            AdaptiveAlgorithm::Vegas => {
                let d = VegasParams::default();
                let f = |v: Option<u32>, default: LimitFn| v.map_or(default, LimitFn::Fixed);
                AlgorithmSpec::Vegas(VegasParams {
                    smoothing: self.smoothing.map_or(d.smoothing, |r| r.0),
                    alpha: f(self.alpha, d.alpha),
                    beta: f(self.beta, d.beta),
                    threshold: f(self.threshold, d.threshold),
                    increase: f(self.increase, d.increase),
                    decrease: f(self.decrease, d.decrease),
                    probe_multiplier: self.probe_multiplier.unwrap_or(d.probe_multiplier),
                    seed: d.seed,
                })
            }
            AdaptiveAlgorithm::Aimd => {
                let d = AimdParams::default();
                AlgorithmSpec::Aimd(AimdParams {
                    backoff_ratio: self.backoff_ratio.map_or(d.backoff_ratio, |r| r.0),
                    timeout_ms: self.timeout.map_or(d.timeout_ms, |t| t.as_secs_f64() * 1000.0),
                })
            }
        };
        let mut spec = AdaptiveSpec::new(algorithm, self.max_for(limit));
        spec.min = self.min;
        spec.initial = self.initial;
        if let Some(w) = self.window {
            spec.window = Some(WindowSpec { min_ms: millis(w.min), max_ms: millis(w.max), min_samples: w.min_samples });
        }
        spec
    }
}

/// Checks every pool's `adaptive`: parameters of its algorithm only, bounds within the
/// limit, and the ranges the core checks.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    for (i, pool) in config.pools.iter().enumerate() {
        let Some(a) = &pool.adaptive else { continue };
        let field = Field::top("pools").index(i).key("adaptive");
        let before = out.0.len();
        for (name, present) in a.given() {
            let owners = OWNED.iter().find(|(n, _)| *n == name).map_or(&[][..], |(_, o)| *o);
            if present && !owners.contains(&a.algorithm) {
                let names: Vec<&str> = owners.iter().map(|o| o.as_str()).collect();
                out.push(
                    field.key(name),
                    format!("`{name}` is a parameter of {}, not of {}", names.join(" and "), a.algorithm),
                );
            }
        }
        if a.metric.is_some() && a.source != AdaptiveSource::Vapi {
            out.push(field.key("metric"), "`metric` chooses a Vapi latency: it needs `source = \"vapi\"`");
        }
        let vapi = config.providers.iter().any(|p| p.kind == crate::ProviderKind::Vapi);
        if a.source == AdaptiveSource::Vapi && !vapi {
            out.push(field.key("source"), "`source = \"vapi\"` needs a `[[providers]]` entry of kind \"vapi\"");
        }
        if a.min == 0 {
            out.push(field.key("min"), "min must be at least 1 (a cap of 0 would never see a sample to raise it)");
        }
        if let Some(max) = a.max {
            if max > pool.limit {
                out.push(
                    field.key("max"),
                    format!("max ({max}) is above the pool's limit ({}); leave it out to use the limit", pool.limit),
                );
            }
        }
        let max = a.max_for(pool.limit);
        if a.min > max {
            out.push(field.key("min"), format!("min ({}) is above the highest cap ({max})", a.min));
        }
        if let Some(initial) = a.initial {
            if initial < a.min || initial > max {
                out.push(
                    field.key("initial"),
                    format!("initial ({initial}) must be between min ({}) and {max}", a.min),
                );
            }
        }
        if let Some(Real(b)) = a.drop_backoff {
            if !(0.5..=1.0).contains(&b) {
                out.push(field.key("drop_backoff"), format!("drop_backoff must be in [0.5, 1.0], got {b}"));
            }
        }
        if let Some(w) = &a.window {
            if w.min.is_zero() || w.min > w.max {
                out.push(field.key("window").key("min"), "the window's min must be at least 1ms and at most its max");
            }
            if w.min_samples == 0 {
                out.push(field.key("window").key("min_samples"), "min_samples must be at least 1");
            }
        }
        // What the core checks beyond the above (ranges of the algorithm's parameters),
        // reported once the plain mistakes are out of the way.
        if out.0.len() == before {
            if let Err(e) = a.spec(pool.limit).validate() {
                let key = backticked(&e.0).filter(|k| OWNED.iter().any(|(n, _)| n == k));
                let at = match key {
                    Some(k) => field.key(k),
                    None => field.clone(),
                };
                out.push(at, e.0);
            }
        }
    }
}

/// The first word written between backticks in a message (the core names its fields so).
pub(crate) fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}
