//! Call lengths, patience and arrival rates.

use super::rng::Rng;

/// No sampled duration exceeds 30 days: a log-normal's far tail must not overflow the
/// clock, and no phone call lasts that long.
const MAX_SAMPLE_MS: f64 = 30.0 * 86_400_000.0;

/// An hour, in milliseconds.
const HOUR_MS: f64 = 3_600_000.0;

/// A distribution of durations (call lengths, patience, ring times).
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// Exponential with this mean (ms).
    Exp {
        /// Mean (ms).
        mean_ms: f64,
    },
    /// Log-normal with this mean and standard deviation (ms); the normal's parameters
    /// follow: `σ² = ln(1 + sd²/mean²)`, `μ = ln(mean) - σ²/2`.
    LogNormal {
        /// Mean (ms).
        mean_ms: f64,
        /// Standard deviation (ms).
        sd_ms: f64,
    },
    /// Always this long (ms).
    Fixed {
        /// The duration (ms).
        ms: f64,
    },
}

impl Dist {
    /// The mean (ms).
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Dist::Exp { mean_ms } | Dist::LogNormal { mean_ms, .. } => mean_ms,
            Dist::Fixed { ms } => ms,
        }
    }

    /// A short name for reports: `exp`, `lognormal`, `fixed`.
    pub fn name(&self) -> &'static str {
        match self {
            Dist::Exp { .. } => "exp",
            Dist::LogNormal { .. } => "lognormal",
            Dist::Fixed { .. } => "fixed",
        }
    }

    /// One sample in whole milliseconds.
    pub(crate) fn sample(&self, rng: &mut Rng) -> u64 {
        let ms = match *self {
            Dist::Exp { mean_ms } => mean_ms * rng.exp1(),
            Dist::LogNormal { mean_ms, sd_ms } => {
                let s2 = (sd_ms * sd_ms / (mean_ms * mean_ms)).ln_1p();
                let mu = mean_ms.ln() - 0.5 * s2;
                (mu + s2.sqrt() * rng.normal()).exp()
            }
            Dist::Fixed { ms } => ms,
        };
        round_ms(ms.clamp(0.0, MAX_SAMPLE_MS))
    }
}

/// `ms.round() as u64` for `ms` from 0 to 2⁶³ (NaN: 0), without the call to the software
/// `round` that a build for the baseline x86-64 makes (no SSE4.1 `roundsd`): half a
/// millisecond rounds up, as `f64::round` does away from zero. The difference `ms - t` is
/// exact (both lie within 1 of each other, or `t` is 0), so this is exactly the same value.
pub(crate) fn round_ms(ms: f64) -> u64 {
    // From 2⁵² on every f64 is a whole number already.
    if ms >= 4_503_599_627_370_496.0 {
        return ms as u64;
    }
    // Below 2⁵² the signed conversions are exact and cheaper than the unsigned ones.
    let t = ms as i64;
    let t = if ms - t as f64 >= 0.5 { t + 1 } else { t };
    t.max(0) as u64
}

/// A burst: extra arrivals at `per_ms` calls per millisecond during `[start_ms, end_ms)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    /// Start (ms from the start of the simulation).
    pub start_ms: f64,
    /// End (ms).
    pub end_ms: f64,
    /// Extra calls per millisecond.
    pub per_ms: f64,
}

/// A Poisson arrival process whose rate is piecewise constant: a base rate per hour of
/// a repeating profile (one entry: constant), plus bursts.
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    /// Calls per millisecond for each hour of the profile; the profile repeats after
    /// its last hour (24 entries: a daily profile).
    pub hourly: Vec<f64>,
    /// Extra arrivals at given times.
    pub bursts: Vec<Burst>,
}

impl RateProfile {
    /// A constant rate in calls per millisecond.
    pub fn constant(per_ms: f64) -> RateProfile {
        RateProfile { hourly: vec![per_ms], bursts: Vec::new() }
    }

    /// The rate at `t` (calls per ms).
    pub fn rate_at(&self, t: f64) -> f64 {
        let base = if self.hourly.len() == 1 {
            self.hourly[0]
        } else {
            let hour = (t / HOUR_MS).floor() as usize % self.hourly.len().max(1);
            self.hourly.get(hour).copied().unwrap_or(0.0)
        };
        base + self.bursts.iter().filter(|b| b.start_ms <= t && t < b.end_ms).map(|b| b.per_ms).sum::<f64>()
    }

    /// The next time after `t` at which the rate may change (`inf` if never).
    fn next_change(&self, t: f64) -> f64 {
        let mut next = if self.hourly.len() > 1 { ((t / HOUR_MS).floor() + 1.0) * HOUR_MS } else { f64::INFINITY };
        for b in &self.bursts {
            for edge in [b.start_ms, b.end_ms] {
                if edge > t && edge < next {
                    next = edge;
                }
            }
        }
        next
    }

    /// True when no arrival can come after `t`.
    fn silent_after(&self, t: f64) -> bool {
        self.hourly.iter().all(|&r| r <= 0.0) && self.bursts.iter().all(|b| b.end_ms <= t || b.per_ms <= 0.0)
    }

    /// The first arrival after `t`, given an exponential(1) draw `e` (inverting the
    /// integrated rate segment by segment); `None` when the rate stays 0 from then on.
    pub(crate) fn next_after(&self, mut t: f64, mut e: f64) -> Option<f64> {
        if let ([rate], []) = (self.hourly.as_slice(), self.bursts.as_slice()) {
            // A constant rate (the common case, once per caller): the loop below would
            // find one endless segment and return the same.
            return (*rate > 0.0).then(|| t + e / rate);
        }
        loop {
            if self.silent_after(t) {
                return None;
            }
            let rate = self.rate_at(t);
            let end = self.next_change(t);
            if rate > 0.0 {
                let room = rate * (end - t);
                if room >= e {
                    return Some(t + e / rate);
                }
                e -= room;
            }
            if !end.is_finite() {
                return None;
            }
            t = end;
        }
    }

    /// The mean number of arrivals in `[0, t)`.
    pub fn expected_arrivals(&self, t_end: f64) -> f64 {
        let mut t = 0.0;
        let mut total = 0.0;
        while t < t_end {
            let end = self.next_change(t).min(t_end);
            total += self.rate_at(t) * (end - t);
            t = end;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_have_the_asked_mean() {
        let mut rng = Rng::stream(3, 0);
        for dist in [
            Dist::Exp { mean_ms: 240_000.0 },
            Dist::LogNormal { mean_ms: 180_000.0, sd_ms: 120_000.0 },
            Dist::Fixed { ms: 30_000.0 },
        ] {
            let n = 100_000;
            let mean = (0..n).map(|_| dist.sample(&mut rng) as f64).sum::<f64>() / n as f64;
            // The standard error is at most mean/sqrt(n) for these (CV <= 1): 5 of them.
            let se = dist.mean_ms() / (n as f64).sqrt();
            assert!((mean - dist.mean_ms()).abs() < 5.0 * se, "{dist:?}: {mean}");
        }
    }

    #[test]
    fn rounding_to_whole_milliseconds_is_f64_round() {
        let mut rng = Rng::stream(5, 0);
        let edges = [
            -2.5,
            -0.7,
            0.0,
            0.5,
            1.5,
            2.5,
            0.49999999999999994,
            1e15 + 0.5,
            4_503_599_627_370_495.5,
            9e15,
            1e18,
            f64::NAN,
        ];
        let random = (0..100_000).map(|i| rng.uniform() * 10f64.powi(i % 16));
        for ms in edges.into_iter().chain(random) {
            assert_eq!(round_ms(ms), ms.round() as u64, "{ms}");
        }
    }

    #[test]
    fn a_daily_profile_with_a_burst_has_the_integrated_rate() {
        let per_h = |calls: f64| calls / HOUR_MS;
        let mut hourly = vec![per_h(0.0); 24];
        hourly[9] = per_h(100.0);
        hourly[10] = per_h(200.0);
        let profile = RateProfile {
            hourly,
            bursts: vec![Burst { start_ms: 9.5 * HOUR_MS, end_ms: 9.75 * HOUR_MS, per_ms: per_h(400.0) }],
        };
        assert!((profile.expected_arrivals(24.0 * HOUR_MS) - 400.0).abs() < 1e-9);
        // No arrival at night: the first one lands in the 09:00 hour.
        let mut rng = Rng::stream(1, 1);
        let t = profile.next_after(0.0, rng.exp1()).unwrap();
        assert!((9.0 * HOUR_MS..11.0 * HOUR_MS).contains(&t));
        let quiet = RateProfile { hourly: vec![0.0], bursts: vec![] };
        assert_eq!(quiet.next_after(0.0, 1.0), None);
    }
}
