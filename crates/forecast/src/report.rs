//! A forecast as users read it (the CLI's table and JSON, `GET /v1/forecast`): one row per
//! interval with its time, arrivals, band, handling time and the lines it needs.

use crate::capacity::{self, ServiceTarget};
use crate::history::History;
use crate::model::{self, Interval};
use crate::series::Series;
use crate::{ForecastError, DAY, MAX_DAYS};
use serde::Serialize;

/// What to forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The flow, or every call of the account.
    pub flow: Option<String>,
    /// Days ahead, 1 to [`MAX_DAYS`].
    pub days: u32,
    /// Weeks of history to learn from.
    pub weeks: u32,
    /// The prediction interval's level, in (0, 1).
    pub level: f64,
    /// What the `lines` of each row must achieve.
    pub target: ServiceTarget,
    /// Unix ms: the forecast starts with the interval that holds it, learning from the
    /// intervals before (a partly elapsed interval would count too few calls).
    pub now_ms: u64,
}

impl Query {
    /// Checks the bounds.
    pub fn check(&self) -> Result<(), ForecastError> {
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(ForecastError::input(format!("days must be 1 to {MAX_DAYS}, not {}", self.days)));
        }
        if !(1..=crate::series::MAX_WEEKS).contains(&self.weeks) {
            return Err(ForecastError::input(format!(
                "weeks of history must be 1 to {}, not {}",
                crate::series::MAX_WEEKS,
                self.weeks
            )));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(ForecastError::input(format!(
                "the interval level must be between 0 and 1, not {}",
                self.level
            )));
        }
        let t = self.target;
        if !(t.service_level > 0.0 && t.service_level < 1.0) {
            return Err(ForecastError::input(format!(
                "the service level must be between 0 and 1, not {}",
                t.service_level
            )));
        }
        if !(t.within_s.is_finite() && t.within_s >= 0.0) {
            return Err(ForecastError::input("the answer time must be 0 seconds or more"));
        }
        if t.patience_s.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
            return Err(ForecastError::input("the patience must be more than 0 seconds"));
        }
        Ok(())
    }

    /// The history this query learns from: the `weeks` before the interval that holds
    /// `now_ms`, excluded days filled in.
    pub fn series(&self, history: &History) -> Result<Series, ForecastError> {
        self.check()?;
        let end = crate::interval_start(self.now_ms);
        let excluded = history.excluded()?;
        Series::from_history(history, self.flow.as_deref(), end, self.weeks, &excluded)
    }
}

/// One interval of a forecast, as shown.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Row {
    /// Its start, RFC 3339 UTC (`2026-12-07T14:00:00Z`).
    pub start: String,
    /// Its start, Unix ms.
    pub start_ms: u64,
    /// Expected calls starting in it (one decimal).
    pub arrivals: f64,
    /// The prediction interval's lower bound.
    pub low: f64,
    /// Its upper bound.
    pub high: f64,
    /// Expected mean handling time (seconds), when the history has ended calls.
    pub aht_s: Option<u32>,
    /// The lines that meet the target for the expected arrivals (Erlang A).
    pub lines: u32,
}

/// A forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The first interval's start, RFC 3339.
    pub from: String,
    /// Intervals of history it learnt from.
    pub history_intervals: usize,
    /// The model's intervals (unrounded).
    pub points: Vec<Interval>,
    /// The rows.
    pub intervals: Vec<Row>,
    /// The handling time (seconds) of intervals without one of their own.
    pub mean_aht_s: f64,
}

/// When no call of the history has a known end: the handling time assumed (seconds), a
/// typical AI voice call's few minutes. Shown nowhere as measured (`aht_s` is then null).
pub const ASSUMED_AHT_S: f64 = 180.0;

impl Report {
    /// Forecasts `query` from `series` (what [`Query::series`] read).
    pub fn from_series(query: &Query, series: &Series) -> Result<Report, ForecastError> {
        query.check()?;
        let horizon = query.days as usize * DAY;
        let points = model::forecast(series, horizon, query.level)?;
        let mean_aht = series.mean_aht().unwrap_or(ASSUMED_AHT_S);
        let mut intervals = Vec::with_capacity(points.len());
        for p in &points {
            intervals.push(Row {
                start: rfc3339(p.start_ms),
                start_ms: p.start_ms,
                arrivals: round1(p.arrivals),
                low: round1(p.low),
                high: round1(p.high),
                aht_s: p.aht_s.map(|a| a.round() as u32),
                lines: capacity::lines(p, mean_aht, query.target)?,
            });
        }
        let from = rfc3339(series.start_of(series.len()));
        Ok(Report { from, history_intervals: series.len(), points, intervals, mean_aht_s: mean_aht })
    }
}

/// A forecast as `callgate forecast --json` prints it and `GET /v1/forecast` serves it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ForecastAnswer {
    /// The flow forecast, or null for every call of the account (or of a pool's flows).
    pub flow: Option<String>,
    /// The pool set against it (`GET /v1/forecast?pool=`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The first interval's start, RFC 3339 UTC.
    pub from: String,
    /// The first interval's start, Unix ms.
    pub from_ms: u64,
    /// Days of history it learnt from.
    pub history_days: f64,
    /// The prediction interval's level.
    pub level: f64,
    /// One row per 15-minute interval.
    pub intervals: Vec<Row>,
    /// With a limit (`--limit`, or a pool): where the forecast needs more lines than it,
    /// and what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<crate::shortfall::Shortfall>,
}

impl ForecastAnswer {
    /// The answer for `report` of `series`, from `query`.
    pub fn new(query: &Query, series: &Series, report: Report) -> ForecastAnswer {
        let from_ms = series.start_of(series.len());
        ForecastAnswer {
            flow: query.flow.clone(),
            pool: None,
            from: rfc3339(from_ms),
            from_ms,
            history_days: (series.len() as f64 / DAY as f64 * 10.0).round() / 10.0,
            level: query.level,
            intervals: report.intervals,
            shortfall: None,
        }
    }
}

impl Report {
    /// This forecast set against `setting` (a pool's lines, its campaigns, prices).
    pub fn shortfall(
        &self,
        query: &Query,
        setting: &crate::shortfall::Setting,
    ) -> Result<crate::shortfall::Shortfall, ForecastError> {
        let needed: Vec<u32> = self.intervals.iter().map(|r| r.lines).collect();
        crate::shortfall::analyse(&self.points, &needed, self.mean_aht_s, query.target, setting)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Unix ms as RFC 3339 UTC, to the second.
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}
