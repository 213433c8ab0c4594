//! Today's forecast of a pool against its arrivals so far, and the reserve of the
//! intervals ahead: `GET /v1/forecast/today` and the live page's chart.

use super::{inbound_flows, Forecasts, DAY_MS};
use callgate_config::Config;
use callgate_forecast::history::History;
use callgate_forecast::series::Series;
use callgate_forecast::INTERVAL_MS;
use serde::Serialize;

/// Today's forecast of a pool against the arrivals so far (`GET /v1/forecast/today`, the
/// live page's chart).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TodayView {
    /// The pool.
    pub pool: String,
    /// The class whose reserve follows the forecast.
    pub class: String,
    /// The day, UTC (`2026-12-05`).
    pub date: String,
    /// Its start, Unix ms.
    pub start_ms: u64,
    /// The server's time (Unix ms): arrivals are counted up to it.
    pub now_ms: u64,
    /// The prediction interval's level.
    pub level: f64,
    /// The day's 96 intervals.
    pub intervals: Vec<TodayRow>,
    /// Why there is no forecast of today, or no reserve ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One 15-minute interval of today.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TodayRow {
    /// Its start, Unix ms.
    pub start_ms: u64,
    /// The arrivals forecast at the start of the day (one decimal); null without one.
    pub arrivals: Option<f64>,
    /// The prediction interval's lower bound.
    pub low: Option<f64>,
    /// Its upper bound.
    pub high: Option<f64>,
    /// Calls of the pool's inbound flows that arrived in it, so far; null for an interval
    /// still to come.
    pub actual: Option<u32>,
    /// Units the reserve holds back in it, for the interval in force and those ahead (from
    /// the latest fit); null before.
    pub reserve: Option<u32>,
    /// The lines the latest fit says it needs, likewise.
    pub needed: Option<u32>,
}

impl Forecasts {
    /// Today's forecast of `pool` against its arrivals up to `now_ms` (blocking: it counts
    /// them in the history). `None` when the pool's reserve does not follow the forecast.
    pub fn today(
        &self,
        config: &Config,
        pool: &str,
        now_ms: u64,
    ) -> Result<Option<TodayView>, callgate_forecast::ForecastError> {
        let Some(p) = config.pool(pool) else { return Ok(None) };
        let Some(class) = p.forecast_class() else { return Ok(None) };
        let day_start = now_ms - now_ms % DAY_MS;
        let plan = self.plan(pool).filter(|plan| plan.class == class);
        let mut actual = Series::zeros(day_start, callgate_forecast::DAY);
        let history = History::open(&self.data_dir)?;
        for flow in inbound_flows(config, p) {
            history.scan(Some(&flow), day_start, now_ms.saturating_add(1), |s, _| actual.add(s, None))?;
        }
        let today = plan.as_ref().filter(|plan| plan.today_start_ms == day_start).map(|plan| &plan.today[..]);
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        let intervals = (0..callgate_forecast::DAY)
            .map(|i| {
                let start_ms = actual.start_of(i);
                let forecast = today.and_then(|t| t.get(i)).filter(|f| f.start_ms == start_ms);
                let ahead = start_ms + INTERVAL_MS > now_ms;
                let step = plan.as_ref().filter(|_| ahead).and_then(|plan| plan.step(start_ms.max(now_ms)).copied());
                TodayRow {
                    start_ms,
                    arrivals: forecast.map(|f| round1(f.arrivals)),
                    low: forecast.map(|f| round1(f.low)),
                    high: forecast.map(|f| round1(f.high)),
                    actual: (start_ms <= now_ms).then(|| actual.arrivals[i] as u32),
                    reserve: step.and_then(|_| plan.as_ref().map(|plan| plan.units(start_ms.max(now_ms)).0)),
                    needed: step.map(|s| s.lines),
                }
            })
            .collect();
        let note = match &plan {
            None => Some("the forecast is being fitted".to_owned()),
            Some(plan) if plan.today_start_ms != day_start => Some("today's forecast is being fitted".to_owned()),
            Some(plan) => plan.today_note.clone().or_else(|| plan.note.clone()),
        };
        Ok(Some(TodayView {
            pool: pool.to_owned(),
            class: class.to_owned(),
            date: callgate_forecast::report::rfc3339(day_start).get(..10).unwrap_or_default().to_owned(),
            start_ms: day_start,
            now_ms,
            level: callgate_forecast::model::DEFAULT_LEVEL,
            intervals,
            note,
        }))
    }
}
