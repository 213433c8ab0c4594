//! How good the forecast is: fit on history up to a cut, forecast what came after, and
//! compare, for the model and the seasonal-naive baseline.
//!
//! WAPE (weighted absolute percentage error, `Σ|actual − forecast| / Σ actual`) rather
//! than MAPE: a 15-minute interval at night often has no calls, where a percentage error
//! is undefined. It is reported per day ahead (day 1 is the first 96 intervals after the
//! cut), over `folds` cuts a week apart ending at the series' end, so "the last weeks held
//! out" are each predicted once.

use crate::model::{self, MIN_INTERVALS};
use crate::series::Series;
use crate::{ForecastError, DAY, WEEK};
use serde::Serialize;

/// The most folds (cuts) one backtest makes: each is a model fit.
pub const MAX_FOLDS: u32 = 8;

/// The accuracy on one day ahead.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DayScore {
    /// 1 for the first day after the cut.
    pub day: u32,
    /// The model's WAPE (0.12 is 12%).
    pub wape: f64,
    /// The seasonal-naive baseline's WAPE.
    pub naive_wape: f64,
}

/// A backtest's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backtest {
    /// Cuts made.
    pub folds: u32,
    /// Days ahead scored.
    pub days: u32,
    /// The WAPE of each day ahead.
    pub by_day: Vec<DayScore>,
    /// Over every day ahead.
    pub wape: f64,
    /// The baseline's, over every day ahead.
    pub naive_wape: f64,
}

/// Scores the forecast `days` ahead over `folds` cuts a week apart.
pub fn backtest(series: &Series, days: u32, folds: u32) -> Result<Backtest, ForecastError> {
    if !(1..=crate::MAX_DAYS).contains(&days) {
        return Err(ForecastError::input(format!("days must be 1 to {}, not {days}", crate::MAX_DAYS)));
    }
    if !(1..=MAX_FOLDS).contains(&folds) {
        return Err(ForecastError::input(format!("folds must be 1 to {MAX_FOLDS}, not {folds}")));
    }
    let horizon = days as usize * DAY;
    let y = &series.arrivals;
    // (|error| sum, actual sum) per day ahead, model and naive.
    let mut sums = vec![[0.0f64; 3]; days as usize];
    for f in 0..folds as usize {
        let Some(cut) = y.len().checked_sub(horizon.max(WEEK) + f * WEEK).filter(|&c| c >= MIN_INTERVALS) else {
            return Err(ForecastError::not_enough(format!(
                "a backtest of {folds} cuts {days} days ahead needs {} days of history; there are {:.1}",
                (horizon.max(WEEK) + (folds as usize - 1) * WEEK + MIN_INTERVALS) / DAY,
                y.len() as f64 / DAY as f64
            )));
        };
        let train = &y[..cut];
        let point = model::arrivals(train, horizon, model::DEFAULT_LEVEL)?.point;
        let naive = model::seasonal_naive(train, horizon);
        for h in 0..horizon {
            let actual = y[cut + h];
            let day = &mut sums[h / DAY];
            day[0] += (actual - point[h]).abs();
            day[1] += (actual - naive[h]).abs();
            day[2] += actual;
        }
    }
    let wape = |err: f64, actual: f64| if actual > 0.0 { err / actual } else { 0.0 };
    let by_day = sums
        .iter()
        .enumerate()
        .map(|(d, s)| DayScore { day: d as u32 + 1, wape: wape(s[0], s[2]), naive_wape: wape(s[1], s[2]) })
        .collect();
    let total = sums.iter().fold([0.0; 3], |a, s| [a[0] + s[0], a[1] + s[1], a[2] + s[2]]);
    Ok(Backtest { folds, days, by_day, wape: wape(total[0], total[2]), naive_wape: wape(total[1], total[2]) })
}
