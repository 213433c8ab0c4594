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

/// The callers `interval` would lose with only `lines` lines: those who hang up while
/// waiting (Erlang A with the target's patience). `None` without a patience (Erlang C:
/// callers wait as long as it takes, and none is lost to the wait).
pub fn lost_with(
    interval: &Interval,
    aht_s: f64,
    target: ServiceTarget,
    lines: u32,
) -> Result<Option<f64>, ForecastError> {
    let aht = interval.aht_s.unwrap_or(aht_s);
    if interval.arrivals <= 0.0 || target.patience_s.is_none() {
        return Ok(target.patience_s.map(|_| 0.0));
    }
    let erlangs = interval.arrivals * aht / (INTERVAL_MS as f64 / 1000.0);
    let traffic = Traffic::new(erlangs, aht, target.patience_s).map_err(|e| ForecastError::input(e.message))?;
    Ok(traffic.evaluate(lines, target.within_s).p_abandon.map(|p| p * interval.arrivals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(arrivals: f64) -> Interval {
        Interval { start_ms: 0, arrivals, low: arrivals, high: arrivals, aht_s: Some(180.0) }
    }

    #[test]
    fn more_calls_need_more_lines_and_too_few_lines_lose_callers() {
        let t = ServiceTarget::default();
        assert_eq!(lines(&interval(0.0), 180.0, t).unwrap(), 0);
        let (few, many) = (lines(&interval(5.0), 180.0, t).unwrap(), lines(&interval(50.0), 180.0, t).unwrap());
        assert!(few >= 1 && many > few, "{few} {many}");
        // 50 calls of 3 minutes in 15 minutes are 10 erlangs: 5 lines lose many callers,
        // the recommended lines (80% answered within 20 s) a few.
        let short = lost_with(&interval(50.0), 180.0, t, 5).unwrap().unwrap();
        let enough = lost_with(&interval(50.0), 180.0, t, many).unwrap().unwrap();
        assert!(short > 10.0 && enough < short / 4.0, "{short} {enough}");
        let no_patience = ServiceTarget { patience_s: None, ..t };
        assert_eq!(lost_with(&interval(50.0), 180.0, no_patience, 5).unwrap(), None);
        assert!((sessions(&interval(50.0), 180.0) - 10.0).abs() < 1e-9);
    }
}
