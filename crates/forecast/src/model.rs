//! The forecast: arrivals per interval with a prediction interval, and the mean handling
//! time, for the next 1–14 days.
//!
//! Arrivals: `augurs`' MSTL splits the series into a daily (96 intervals) and a weekly (672)
//! seasonal part and a trend; AutoETS (a non-seasonal exponential-smoothing model, chosen
//! by AICc) forecasts the trend with its prediction interval, and the seasonal parts are
//! repeated on top. With under two weeks of history only the daily season is used (MSTL
//! needs two whole periods of each season). Handling time: the same decomposition with a
//! naive trend (the latest level), after filling the intervals without a finished call
//! with the mean of the same time of day (handling time is noisy where few calls end, and
//! it moves slowly). Nothing is negative: a forecast below zero is zero.

use crate::series::Series;
use crate::{ForecastError, DAY, WEEK};
use augurs_core::{Fit, Predict};
use augurs_ets::trend::AutoETSTrendModel;
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use serde::Serialize;

/// The default prediction-interval level: 80% of intervals should see arrivals between
/// `low` and `high`, a width that still says something at 15 minutes.
pub const DEFAULT_LEVEL: f64 = 0.8;
/// The least history a forecast takes: two days (two whole daily periods).
pub const MIN_INTERVALS: usize = 2 * DAY;

/// One interval of a forecast.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// Unix ms of its start.
    pub start_ms: u64,
    /// Expected calls starting in it.
    pub arrivals: f64,
    /// The prediction interval's lower bound.
    pub low: f64,
    /// Its upper bound.
    pub high: f64,
    /// Expected mean handling time (seconds), when the history has ended calls.
    pub aht_s: Option<f64>,
}

/// The seasonal periods a series of `len` intervals supports, or why it is too short.
pub fn periods(len: usize) -> Result<Vec<usize>, ForecastError> {
    if len >= 2 * WEEK {
        Ok(vec![DAY, WEEK])
    } else if len >= MIN_INTERVALS {
        Ok(vec![DAY])
    } else {
        Err(ForecastError::not_enough(format!(
            "{len} intervals of history ({:.1} days): a forecast needs at least 2 days, and 2 weeks for the weekly pattern",
            len as f64 / DAY as f64
        )))
    }
}

fn failed(e: impl std::fmt::Display) -> ForecastError {
    ForecastError::model(format!("the forecasting model failed: {e}"))
}

/// A forecast of one series: the point forecast and its prediction interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Band {
    /// The point forecast.
    pub point: Vec<f64>,
    /// The interval's lower bound.
    pub low: Vec<f64>,
    /// Its upper bound.
    pub high: Vec<f64>,
}

/// The model's point forecast and interval for `y`, `horizon` intervals ahead.
pub fn arrivals(y: &[f64], horizon: usize, level: f64) -> Result<Band, ForecastError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(ForecastError::input(format!("the interval level must be between 0 and 1, not {level}")));
    }
    let trend = AutoETSTrendModel::from(AutoETS::non_seasonal());
    let fit = MSTLModel::new(periods(y.len())?, trend).fit(y).map_err(failed)?;
    let f = fit.predict(horizon, level).map_err(failed)?;
    let (low, high) = match f.intervals {
        Some(i) => (i.lower, i.upper),
        None => (f.point.clone(), f.point.clone()),
    };
    let zero = |v: Vec<f64>| v.into_iter().map(|x| if x.is_finite() { x.max(0.0) } else { 0.0 }).collect();
    Ok(Band { point: zero(f.point), low: zero(low), high: zero(high) })
}

/// Mean handling time per interval ahead (seconds), or `None` when no call's end is known.
pub fn aht(series: &Series, horizon: usize) -> Result<Option<Vec<f64>>, ForecastError> {
    let Some(mean) = series.mean_aht() else { return Ok(None) };
    let known = series.aht();
    // The mean of each time of day, where some call of that time ended.
    let mut slot = vec![(0.0, 0.0); DAY];
    for (i, a) in known.iter().enumerate() {
        if let Some(a) = a {
            let w = series.handled[i];
            slot[i % DAY].0 += a * w;
            slot[i % DAY].1 += w;
        }
    }
    let filled: Vec<f64> = known
        .iter()
        .enumerate()
        .map(|(i, a)| a.unwrap_or_else(|| if slot[i % DAY].1 > 0.0 { slot[i % DAY].0 / slot[i % DAY].1 } else { mean }))
        .collect();
    let fit = MSTLModel::naive(periods(filled.len())?).fit(&filled).map_err(failed)?;
    let f = fit.predict(horizon, None).map_err(failed)?;
    // At least a second: a zero handling time would make every load zero.
    Ok(Some(f.point.into_iter().map(|x| if x.is_finite() { x.max(1.0) } else { mean }).collect()))
}

/// The forecast of `series` for `horizon` intervals after its end.
pub fn forecast(series: &Series, horizon: usize, level: f64) -> Result<Vec<Interval>, ForecastError> {
    let Band { point, low, high } = arrivals(&series.arrivals, horizon, level)?;
    let aht = aht(series, horizon)?;
    let start = series.start_of(series.len());
    Ok((0..horizon)
        .map(|h| Interval {
            start_ms: start + h as u64 * crate::INTERVAL_MS,
            arrivals: point[h],
            low: low[h].min(point[h]),
            high: high[h].max(point[h]),
            aht_s: aht.as_ref().map(|a| a[h]),
        })
        .collect())
}

/// The seasonal-naive baseline: each interval as the same interval a week earlier (a day
/// earlier with under a week of history), repeated past the horizon of one season.
pub fn seasonal_naive(y: &[f64], horizon: usize) -> Vec<f64> {
    let period = if y.len() >= WEEK { WEEK } else { DAY.min(y.len()).max(1) };
    if y.is_empty() {
        return vec![0.0; horizon];
    }
    let last = &y[y.len().saturating_sub(period)..];
    (0..horizon).map(|h| last[h % last.len()]).collect()
}
