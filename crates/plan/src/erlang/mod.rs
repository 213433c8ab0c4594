//! Erlang B, C and A: what callers see with a given number of lines, and the fewest
//! lines that meet a target.
//!
//! Definitions used throughout (they match the call-centre literature and the
//! simulator's report, so the two can be compared):
//! - **blocking**: share of callers who hear busy when there is no waiting room (B);
//! - **p_wait**: share of callers who wait at all when there is one (C, or A with patience);
//! - **asa**: mean wait of *answered* callers, those answered at once counting 0;
//! - **service level**: share of *all* callers answered within the given time (callers
//!   who hang up count against it);
//! - **occupancy**: share of line time busy with answered calls;
//! - **p_abandon** (Erlang A): share of callers who hang up while waiting.

mod a;
mod b;
mod c;
pub(crate) mod special;
mod staffing;
#[cfg(test)]
mod tests;

pub use a::{erlang_a, ErlangA};
pub use b::{erlang_b, erlang_b_ln};
pub use c::{erlang_c, erlang_c_ln};
pub use staffing::{fewest_lines, halfin_whitt_beta, sqrt_staffing, Target, MAX_LINES};

use crate::PlanError;
use serde::Serialize;

/// Patience longer than this many mean call lengths is treated as infinite (Erlang C):
/// the difference is far below what any input is known to, and it bounds the work.
const PATIENCE_AS_INFINITE: f64 = 1e6;

/// The largest offered load accepted, in erlangs.
pub const MAX_ERLANGS: f64 = 1e6;

/// A load offered to a group of lines, and how its callers behave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Traffic {
    /// Offered load in erlangs: arrivals per second times the mean call length in seconds.
    pub erlangs: f64,
    /// Mean call length (seconds).
    pub aht_s: f64,
    /// Mean patience of a waiting caller (seconds, exponentially distributed); `None`:
    /// callers wait as long as it takes (Erlang C).
    pub patience_s: Option<f64>,
}

impl Traffic {
    /// Checks the inputs: a finite load in `[0, 1e6]` erlangs, a positive call length, and
    /// a positive patience if any.
    pub fn new(erlangs: f64, aht_s: f64, patience_s: Option<f64>) -> Result<Traffic, PlanError> {
        if !erlangs.is_finite() || !(0.0..=MAX_ERLANGS).contains(&erlangs) {
            return Err(PlanError::input(format!(
                "the offered load must be between 0 and {MAX_ERLANGS} erlangs, not {erlangs}"
            )));
        }
        if !aht_s.is_finite() || aht_s <= 0.0 {
            return Err(PlanError::input("the mean call length (aht) must be more than 0s"));
        }
        if let Some(p) = patience_s {
            if !p.is_finite() || p <= 0.0 {
                return Err(PlanError::input("the patience must be more than 0s"));
            }
        }
        Ok(Traffic { erlangs, aht_s, patience_s })
    }

    /// From calls per hour and the mean call length.
    pub fn from_rate(calls_per_hour: f64, aht_s: f64, patience_s: Option<f64>) -> Result<Traffic, PlanError> {
        if !calls_per_hour.is_finite() || calls_per_hour < 0.0 {
            return Err(PlanError::input("calls per hour must be 0 or more"));
        }
        Traffic::new(calls_per_hour * aht_s / 3600.0, aht_s, patience_s)
    }

    /// Arrivals per hour.
    pub fn calls_per_hour(&self) -> f64 {
        self.erlangs * 3600.0 / self.aht_s
    }

    /// The patience that the formulas use: `None` when there is none or it is so long
    /// that Erlang C is exact to every shown digit.
    fn effective_patience(&self) -> Option<f64> {
        self.patience_s.filter(|&p| p <= PATIENCE_AS_INFINITE * self.aht_s)
    }

    /// What callers see with `lines` lines, the service level counted within
    /// `answer_within_s` seconds. Uses Erlang C without patience, Erlang A with it;
    /// `blocking` is always Erlang B (the same lines without a waiting room).
    pub fn evaluate(&self, lines: u32, answer_within_s: f64) -> LineMetrics {
        let n = f64::from(lines);
        let within = answer_within_s.max(0.0);
        let blocking = erlang_b(lines, self.erlangs);
        match self.effective_patience() {
            Some(patience) => {
                let a = erlang_a(lines, self.erlangs, self.aht_s, patience, within);
                LineMetrics {
                    lines,
                    blocking,
                    p_wait: a.p_wait,
                    asa_s: Some(a.asa_s),
                    mean_wait_s: Some(a.mean_wait_s),
                    service_level: a.service_level,
                    occupancy: a.occupancy,
                    p_abandon: Some(a.p_abandon),
                }
            }
            None if self.erlangs <= 0.0 => LineMetrics {
                lines,
                blocking,
                p_wait: 0.0,
                asa_s: Some(0.0),
                mean_wait_s: Some(0.0),
                service_level: 1.0,
                occupancy: 0.0,
                p_abandon: None,
            },
            None if self.erlangs >= n => LineMetrics {
                lines,
                blocking,
                p_wait: 1.0,
                asa_s: None,
                mean_wait_s: None,
                service_level: 0.0,
                occupancy: 1.0,
                p_abandon: None,
            },
            None => {
                let c = c::erlang_c_from_b(lines, self.erlangs, blocking);
                let asa = c * self.aht_s / (n - self.erlangs);
                LineMetrics {
                    lines,
                    blocking,
                    p_wait: c,
                    asa_s: Some(asa),
                    mean_wait_s: Some(asa),
                    service_level: 1.0 - c * (-(n - self.erlangs) * within / self.aht_s).exp(),
                    occupancy: self.erlangs / n,
                    p_abandon: None,
                }
            }
        }
    }
}

/// What callers see with a number of lines (see the module docs for the definitions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LineMetrics {
    /// Number of lines.
    pub lines: u32,
    /// Without a waiting room (Erlang B): share of callers who hear busy.
    pub blocking: f64,
    /// With a waiting room: share of callers who wait at all.
    pub p_wait: f64,
    /// Mean wait of answered callers (seconds); `None` when the line grows without bound
    /// (the load reaches the lines and nobody hangs up).
    pub asa_s: Option<f64>,
    /// Mean time in the waiting room over all callers, answered or not (seconds).
    pub mean_wait_s: Option<f64>,
    /// Share of all callers answered within the given time.
    pub service_level: f64,
    /// Share of line time busy with answered calls.
    pub occupancy: f64,
    /// Share of callers who hang up while waiting (only with a patience).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_abandon: Option<f64>,
}
