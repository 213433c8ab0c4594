//! The lines an interval's forecast needs: the offered load (arrivals × handling time over
//! the interval's 900 seconds) and Erlang A with the callers' patience (Erlang C without
//! one), the fewest lines that answer `service_level` of callers within `within_s`.

use crate::model::Interval;
use crate::{ForecastError, INTERVAL_MS};
use callgate_plan::erlang::{fewest_lines, Target, Traffic};
use serde::Serialize;

/// What the inbound callers must get.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServiceTarget {
    /// Share of callers answered within `within_s`, in (0, 1).
    pub service_level: f64,
    /// Seconds.
    pub within_s: f64,
    /// Mean patience of a waiting caller (seconds): Erlang A; `None`: Erlang C.
    pub patience_s: Option<f64>,
}

impl Default for ServiceTarget {
    /// 80% answered within 20 seconds, the contact-centre convention, patience 60 s.
    fn default() -> Self {
        ServiceTarget { service_level: 0.8, within_s: 20.0, patience_s: Some(60.0) }
    }
}

/// The lines `interval` needs (0 when it expects no calls). `aht_s` is used when the
/// interval has no handling time of its own.
pub fn lines(interval: &Interval, aht_s: f64, target: ServiceTarget) -> Result<u32, ForecastError> {
    let aht = interval.aht_s.unwrap_or(aht_s);
    if interval.arrivals <= 0.0 {
        return Ok(0);
    }
    let erlangs = interval.arrivals * aht / (INTERVAL_MS as f64 / 1000.0);
    let traffic = Traffic::new(erlangs, aht, target.patience_s).map_err(|e| ForecastError::input(e.message))?;
    let target = Target::ServiceLevel { level: target.service_level, within_s: target.within_s };
    fewest_lines(&traffic, target).map_err(|e| ForecastError::input(e.message))
}

/// The concurrent calls `interval` is expected to hold on average (its offered load in
/// erlangs): the signal for autoscalers of agent workers.
pub fn sessions(interval: &Interval, aht_s: f64) -> f64 {
    interval.arrivals * interval.aht_s.unwrap_or(aht_s) / (INTERVAL_MS as f64 / 1000.0)
}
