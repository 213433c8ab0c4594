//! Calls counted per 15-minute interval: arrivals, and the handling time of the calls that
//! started in each interval and whose end is known.

use crate::history::History;
use crate::{interval_start, ForecastError, DAY, INTERVAL_MS, WEEK};
use chrono::NaiveDate;

/// The most weeks of history a forecast reads (older calls say little about next week,
/// and the series' length bounds the model's work).
pub const MAX_WEEKS: u32 = 26;

/// Calls per interval, from `start_ms` on, one entry per [`INTERVAL_MS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Unix ms of the first interval's start (a multiple of [`INTERVAL_MS`]).
    pub start_ms: u64,
    /// Calls that started in each interval.
    pub arrivals: Vec<f64>,
    /// Total handling time (seconds) of the calls that started in each interval and whose
    /// end is known.
    pub handled_s: Vec<f64>,
    /// How many calls `handled_s` adds up.
    pub handled: Vec<f64>,
}

impl Series {
    /// An empty series of `len` intervals from `start_ms` (rounded down to an interval).
    pub fn zeros(start_ms: u64, len: usize) -> Series {
        Series {
            start_ms: interval_start(start_ms),
            arrivals: vec![0.0; len],
            handled_s: vec![0.0; len],
            handled: vec![0.0; len],
        }
    }

    /// Counts one call; one outside the series is ignored.
    pub fn add(&mut self, started_at_ms: u64, ended_at_ms: Option<u64>) {
        let Some(i) = self.index(started_at_ms) else { return };
        self.arrivals[i] += 1.0;
        if let Some(end) = ended_at_ms.filter(|&e| e >= started_at_ms) {
            self.handled_s[i] += (end - started_at_ms) as f64 / 1000.0;
            self.handled[i] += 1.0;
        }
    }

    /// The interval that holds `ms`, if the series covers it.
    pub fn index(&self, ms: u64) -> Option<usize> {
        let i = usize::try_from(ms.checked_sub(self.start_ms)? / INTERVAL_MS).ok()?;
        (i < self.len()).then_some(i)
    }

    /// Intervals in the series.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// True when it has no interval.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// Unix ms of interval `i`'s start.
    pub fn start_of(&self, i: usize) -> u64 {
        self.start_ms + i as u64 * INTERVAL_MS
    }

    /// The first `n` intervals.
    pub fn head(&self, n: usize) -> Series {
        let n = n.min(self.len());
        Series {
            start_ms: self.start_ms,
            arrivals: self.arrivals[..n].to_vec(),
            handled_s: self.handled_s[..n].to_vec(),
            handled: self.handled[..n].to_vec(),
        }
    }

    /// The calls of `flow` (of every flow, for `None`) in the `weeks` weeks before
    /// `end_ms` (rounded down to an interval), starting at the first day with a call, with
    /// the `excluded` days filled in from the week before (or after).
    pub fn from_history(
        history: &History,
        flow: Option<&str>,
        end_ms: u64,
        weeks: u32,
        excluded: &[NaiveDate],
    ) -> Result<Series, ForecastError> {
        let flows: Vec<Option<&str>> = vec![flow];
        Series::from_history_flows(history, &flows, end_ms, weeks, excluded)
    }

    /// [`Series::from_history`] over the calls of several flows together (`None` in
    /// `flows`: every call).
    pub fn from_history_flows(
        history: &History,
        flows: &[Option<&str>],
        end_ms: u64,
        weeks: u32,
        excluded: &[NaiveDate],
    ) -> Result<Series, ForecastError> {
        let weeks = weeks.clamp(1, MAX_WEEKS);
        let end = interval_start(end_ms);
        let len = weeks as usize * WEEK;
        let start = end.saturating_sub(len as u64 * INTERVAL_MS);
        let mut series = Series::zeros(start, ((end - start) / INTERVAL_MS) as usize);
        let mut first: Option<u64> = None;
        for flow in flows {
            history.scan(*flow, start, end, |s, e| {
                series.add(s, e);
                first = Some(first.map_or(s, |f| f.min(s)));
            })?;
        }
        let Some(first) = first else { return Ok(Series::zeros(end, 0)) };
        // Start at the first call's day (UTC): the zeros before it are "no history", not
        // "no calls".
        let day_ms = DAY as u64 * INTERVAL_MS;
        let skip = series.index(first - first % day_ms).unwrap_or(0);
        let mut series = Series {
            start_ms: series.start_of(skip),
            arrivals: series.arrivals.split_off(skip),
            handled_s: series.handled_s.split_off(skip),
            handled: series.handled.split_off(skip),
        };
        series.fill_excluded(excluded);
        Ok(series)
    }

    /// Replaces the intervals of each excluded day (UTC) with those a week earlier, else a
    /// week later, else a day earlier or later: the seasonal shape is kept, the one-off
    /// day's numbers are not learnt.
    pub fn fill_excluded(&mut self, excluded: &[NaiveDate]) {
        let mut bad = vec![false; self.len()];
        for day in excluded {
            let Some(ms) = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()) else { continue };
            let Ok(ms) = u64::try_from(ms) else { continue };
            for k in 0..DAY as u64 {
                if let Some(i) = self.index(ms + k * INTERVAL_MS) {
                    bad[i] = true;
                }
            }
        }
        for i in 0..self.len() {
            if !bad[i] {
                continue;
            }
            let candidates = [i.checked_sub(WEEK), Some(i + WEEK), i.checked_sub(DAY), Some(i + DAY)];
            let from = candidates.into_iter().flatten().find(|&j| j < self.len() && !bad[j]);
            let (a, s, n) = from.map_or((0.0, 0.0, 0.0), |j| (self.arrivals[j], self.handled_s[j], self.handled[j]));
            self.arrivals[i] = a;
            self.handled_s[i] = s;
            self.handled[i] = n;
        }
    }

    /// The mean handling time (seconds) per interval, where calls with a known end
    /// started.
    pub fn aht(&self) -> Vec<Option<f64>> {
        self.handled_s.iter().zip(&self.handled).map(|(&s, &n)| (n > 0.0).then(|| s / n)).collect()
    }

    /// The mean handling time over the whole series (seconds), if any call's end is known.
    pub fn mean_aht(&self) -> Option<f64> {
        let n: f64 = self.handled.iter().sum();
        (n > 0.0).then(|| self.handled_s.iter().sum::<f64>() / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_interval_and_excluded_days_take_last_weeks_shape() {
        let day_ms = DAY as u64 * INTERVAL_MS;
        let mut s = Series::zeros(0, 2 * WEEK);
        s.add(INTERVAL_MS + 5, Some(INTERVAL_MS + 5 + 60_000));
        s.add(INTERVAL_MS + 6, None);
        assert_eq!((s.arrivals[1], s.handled[1], s.handled_s[1]), (2.0, 1.0, 60.0));
        assert_eq!(s.aht()[1], Some(60.0));
        // A spike on day 8 (a one-off day), ignored.
        s.add(7 * day_ms + INTERVAL_MS, None);
        s.arrivals[WEEK + 1] += 50.0;
        let day8 = NaiveDate::from_ymd_opt(1970, 1, 8).unwrap();
        s.fill_excluded(&[day8]);
        assert_eq!(s.arrivals[WEEK + 1], 2.0, "the same interval a week earlier");
    }
}
