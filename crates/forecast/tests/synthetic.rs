//! Forecasts of a synthetic history with a known shape: a daily curve (quiet nights, a
//! morning and an afternoon peak), a weekly one (busy Mondays, quiet weekends), a slow
//! growth, and Poisson noise, drawn from a fixed seed.

use callgate_forecast::backtest::backtest;
use callgate_forecast::capacity::ServiceTarget;
use callgate_forecast::history::{Call, History};
use callgate_forecast::report::{Query, Report};
use callgate_forecast::{DAY, INTERVAL_MS, WEEK};

/// Monday 2026-10-05 00:00 UTC.
const START_MS: u64 = 1_791_158_400_000;

/// xorshift64*: deterministic draws without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Poisson draw (Knuth; the means here are small).
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

/// The expected calls of interval `i` (from START_MS).
fn shape(i: usize) -> f64 {
    let hour = (i % DAY) as f64 / 4.0;
    let weekday = (i / DAY) % 7; // 0 = Monday
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    let daily = 0.3 + 9.0 * bump(10.0, 2.0) + 6.0 * bump(15.0, 2.5);
    let weekly = [1.4, 1.1, 1.0, 1.0, 0.9, 0.45, 0.3][weekday];
    let growth = 1.0 + 0.01 * (i as f64 / WEEK as f64);
    daily * weekly * growth
}

/// `weeks` weeks of calls, each of 2 to 6 minutes.
fn history(weeks: usize) -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut calls = Vec::new();
    for i in 0..weeks * WEEK {
        for k in 0..rng.poisson(shape(i)) {
            let start = START_MS + i as u64 * INTERVAL_MS + (rng.unit() * INTERVAL_MS as f64) as u64;
            let length = 120_000 + (rng.unit() * 240_000.0) as u64;
            calls.push(Call {
                key: format!("synthetic:{i}:{k}"),
                flow: Some("support".to_owned()),
                number: None,
                started_at_ms: start,
                ended_at_ms: Some(start + length),
                outcome: Some("completed".to_owned()),
            });
        }
    }
    let added = h.add("csv", &calls).unwrap();
    assert_eq!(added.added as usize, calls.len());
    (dir, h)
}

fn query(days: u32, now_ms: u64) -> Query {
    Query { flow: Some("support".to_owned()), days, weeks: 8, level: 0.8, target: ServiceTarget::default(), now_ms }
}

#[test]
fn the_backtest_beats_seasonal_naive_on_a_daily_and_weekly_shape() {
    let (_dir, h) = history(8);
    let q = query(7, START_MS + 8 * WEEK as u64 * INTERVAL_MS);
    let series = q.series(&h).unwrap();
    assert_eq!(series.len(), 8 * WEEK);
    let b = backtest(&series, 7, 2).unwrap();
    eprintln!("{b:#?}");
    assert!(b.wape < b.naive_wape, "the model ({:.3}) beats seasonal naive ({:.3})", b.wape, b.naive_wape);
    for d in &b.by_day {
        assert!(d.wape < d.naive_wape * 1.05, "day {}: {:.3} against naive {:.3}", d.day, d.wape, d.naive_wape);
    }
}

#[test]
fn the_forecast_recovers_the_shape() {
    let (_dir, h) = history(6);
    let now = START_MS + 6 * WEEK as u64 * INTERVAL_MS;
    let q = query(7, now);
    let series = q.series(&h).unwrap();
    let r = Report::from_series(&q, &series).unwrap();
    assert_eq!(r.intervals.len(), 7 * DAY);
    assert_eq!(r.intervals[0].start_ms, now, "the forecast starts where the history ends");
    assert_eq!(r.from, "2026-11-16T00:00:00Z");
    // Monday 10:00 is busier than Monday 03:00 and than Sunday 10:00, as in the shape.
    let at = |day: usize, hour: usize| &r.intervals[day * DAY + hour * 4];
    assert!(at(0, 10).arrivals > 5.0 * at(0, 3).arrivals.max(0.5), "{:?} {:?}", at(0, 10), at(0, 3));
    assert!(at(0, 10).arrivals > 2.0 * at(6, 10).arrivals, "{:?} {:?}", at(0, 10), at(6, 10));
    // The expected value lies inside the band at the peak, and the band is a band.
    let expected = shape(6 * WEEK + 10 * 4);
    assert!(at(0, 10).low <= expected && expected <= at(0, 10).high, "{expected} in {:?}", at(0, 10));
    assert!(at(0, 10).high > at(0, 10).low);
    // Handling time: calls of 2 to 6 minutes, 240 s on average.
    let aht = at(0, 10).aht_s.unwrap();
    assert!((200..=280).contains(&aht), "aht {aht}");
    // Lines follow the load: more at the peak than at night.
    assert!(at(0, 10).lines > at(0, 3).lines);
}

#[test]
fn too_little_history_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    let q = query(7, START_MS);
    let series = q.series(&h).unwrap();
    let e = Report::from_series(&q, &series).unwrap_err();
    assert!(e.message.contains("needs at least 2 days"), "{}", e.message);
    let bad = Query { days: 15, ..q };
    assert!(bad.series(&h).unwrap_err().message.contains("days must be 1 to 14"));
}
