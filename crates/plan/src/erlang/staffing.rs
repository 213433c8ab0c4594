//! The inverse questions: the fewest lines that meet a target, and square-root staffing.

use super::special::{normal_cdf, normal_pdf};
use super::{erlang_b, Traffic};
use crate::PlanError;
use serde::Serialize;

/// The most lines a search considers. One evaluation costs one step per line, so a
/// search up to here stays in the milliseconds.
pub const MAX_LINES: u32 = 1_000_000;

/// What a number of lines must achieve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// At least `level` of all callers answered within `within_s` seconds (with a waiting
    /// room: Erlang C, or Erlang A with a patience).
    ServiceLevel {
        /// Share of callers, in (0, 1).
        level: f64,
        /// Seconds.
        within_s: f64,
    },
    /// At most this share of callers hear busy (no waiting room: Erlang B).
    Blocking {
        /// Share of callers, in (0, 1).
        max: f64,
    },
    /// At most this share of callers hang up while waiting (Erlang A: needs a patience).
    Abandon {
        /// Share of callers, in (0, 1).
        max: f64,
    },
}

impl Target {
    fn check(&self, traffic: &Traffic) -> Result<(), PlanError> {
        let share = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(PlanError::input(format!("{what} must be between 0 and 1 (exclusive), not {v}")))
            }
        };
        match *self {
            Target::ServiceLevel { level, within_s } => {
                share(level, "the target service level")?;
                if !within_s.is_finite() || within_s < 0.0 {
                    return Err(PlanError::input("the answer time must be 0s or more"));
                }
                Ok(())
            }
            Target::Blocking { max } => share(max, "the target blocking"),
            Target::Abandon { max } => {
                share(max, "the target abandonment")?;
                if traffic.patience_s.is_none() {
                    return Err(PlanError::input("an abandonment target needs the callers' patience (--patience)"));
                }
                Ok(())
            }
        }
    }

    /// True when `lines` lines meet the target.
    fn met_by(&self, traffic: &Traffic, lines: u32) -> bool {
        match *self {
            Target::Blocking { max } => erlang_b(lines, traffic.erlangs) <= max,
            Target::ServiceLevel { level, within_s } => traffic.evaluate(lines, within_s).service_level >= level,
            Target::Abandon { max } => traffic.evaluate(lines, 0.0).p_abandon.is_some_and(|p| p <= max),
        }
    }
}

/// The fewest lines (at least 1) that meet `target` for `traffic`.
///
/// Every measure is monotone in the number of lines (more lines never make callers
/// worse off), so this doubles from a square-root staffing guess until the target is
/// met, then bisects.
pub fn fewest_lines(traffic: &Traffic, target: Target) -> Result<u32, PlanError> {
    target.check(traffic)?;
    let mut hi = sqrt_staffing(traffic.erlangs, 1.0).max(1);
    let mut lo = 0;
    while !target.met_by(traffic, hi) {
        if hi >= MAX_LINES {
            return Err(PlanError::input(format!("no number of lines up to {MAX_LINES} meets the target")));
        }
        lo = hi;
        hi = hi.saturating_mul(2).min(MAX_LINES);
    }
    // Invariant: `lo` fails (or is 0), `hi` meets the target.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if target.met_by(traffic, mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Square-root staffing: `⌈erlangs + beta·√erlangs⌉` lines. `beta` around 0.5 to 2 covers
/// most service goals; see [`halfin_whitt_beta`] to pick it from a probability of waiting.
pub fn sqrt_staffing(erlangs: f64, beta: f64) -> u32 {
    let n = (erlangs + beta * erlangs.max(0.0).sqrt()).ceil();
    if n.is_nan() || n < 0.0 {
        0
    } else if n > f64::from(MAX_LINES) {
        MAX_LINES
    } else {
        n as u32
    }
}

/// The `beta` whose square-root staffing gives callers the probability of waiting
/// `p_wait` when there are many lines (Halfin & Whitt, 1981):
/// `p_wait = 1 / (1 + beta·Φ(beta)/φ(beta))`. `p_wait` must lie in (0, 1).
pub fn halfin_whitt_beta(p_wait: f64) -> Option<f64> {
    if !(p_wait > 0.0 && p_wait < 1.0) {
        return None;
    }
    let wait = |beta: f64| 1.0 / (1.0 + beta * normal_cdf(beta) / normal_pdf(beta));
    // `wait` falls from 1 at beta = 0 towards 0; p_wait = 1e-300 needs beta ≈ 37.
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if wait(mid) > p_wait {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}
