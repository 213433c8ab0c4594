//! The cost of a shortfall on synthetic histories whose answer is known: four identical
//! weeks of calls (no noise, so the forecast is the shape itself), a pool a little too
//! small for inbound and a campaign together, and prices.
//!
//! - A short daily peak (30 minutes): the campaign's calls move to the many spare lines
//!   of the rest of its window, which costs nothing, so shifting is cheapest.
//! - A long daily shortfall (10 hours of a 12-hour window): the calls shifted out find
//!   too few spare lines and go unmade, so buying lines is cheapest.

use callgate_forecast::capacity::ServiceTarget;
use callgate_forecast::history::{Call, History};
use callgate_forecast::report::{Query, Report};
use callgate_forecast::shortfall::{Campaign, Setting, Shortfall};
use callgate_forecast::{DAY, INTERVAL_MS, WEEK};
use callgate_plan::cost::Pricing;

/// Monday 2026-10-05 00:00 UTC.
const START_MS: u64 = 1_791_158_400_000;
const HOUR: usize = 4;

/// Four weeks: `busy` calls per 15 minutes in the busy hours of each day (`from..to`,
/// intervals of the day), 2 otherwise; every call four minutes.
fn history(from: usize, to: usize, busy: u64) -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    let mut calls = Vec::new();
    for i in 0..4 * WEEK {
        let n = if (from..to).contains(&(i % DAY)) { busy } else { 2 };
        for k in 0..n {
            let start = START_MS + i as u64 * INTERVAL_MS + k * (INTERVAL_MS / n);
            calls.push(Call {
                key: format!("c:{i}:{k}"),
                flow: Some("support".to_owned()),
                number: None,
                started_at_ms: start,
                ended_at_ms: Some(start + 240_000),
                outcome: None,
            });
        }
    }
    h.add("csv", &calls).unwrap();
    (dir, h)
}

fn query() -> Query {
    Query {
        flow: Some("support".to_owned()),
        days: 7,
        weeks: 4,
        level: 0.8,
        target: ServiceTarget::default(),
        now_ms: START_MS + 4 * WEEK as u64 * INTERVAL_MS,
    }
}

fn pricing() -> Pricing {
    Pricing { per_line_month: 30.0, lost_caller: 5.0, campaign_call: 1.0, ..Pricing::default() }
}

/// The forecast against a pool two lines short at the peak with a 4-line campaign that
/// dials 08:00–20:00 UTC.
fn analyse(from: usize, to: usize, pricing: Option<Pricing>) -> (Report, u32, Shortfall) {
    let (_dir, h) = history(from, to, 20);
    let q = query();
    let report = Report::from_series(&q, &q.series(&h).unwrap()).unwrap();
    let peak = report.intervals.iter().map(|r| r.lines).max().unwrap();
    let quiet = report.intervals.iter().map(|r| r.lines).min().unwrap();
    assert!(peak >= quiet + 3, "the busy hours need more lines: {peak} against {quiet}");
    let limit = peak + 4 - 2;
    let dialing = report
        .points
        .iter()
        .map(|p| (8 * HOUR..20 * HOUR).contains(&((p.start_ms / INTERVAL_MS) as usize % DAY)))
        .collect();
    let setting = Setting {
        limit,
        campaigns: vec![Campaign { name: "renewals".into(), lines: 4, aht_s: 180.0, dialing }],
        pricing,
    };
    let shortfall = report.shortfall(&q, &setting).unwrap();
    (report, limit, shortfall)
}

fn choice<'a>(s: &'a Shortfall, option: &str) -> &'a callgate_forecast::shortfall::Choice {
    s.choices.iter().find(|c| c.option == option).unwrap_or_else(|| panic!("no {option} in {s:?}"))
}

#[test]
fn a_short_peak_is_cheapest_shifted() {
    // 10:00–10:30 UTC, every day.
    let (_, limit, s) = analyse(10 * HOUR, 10 * HOUR + 2, Some(pricing()));
    // When and how much: the two peak intervals of each of the 7 days, two lines short.
    assert_eq!(s.periods.len(), 7, "{s:#?}");
    assert_eq!(s.short_intervals, 14);
    for p in &s.periods {
        assert!(p.start.ends_with("T10:00:00Z") && p.end.ends_with("T10:30:00Z"), "{p:?}");
        assert_eq!((p.intervals, p.lines_short, p.inbound_short), (2, 2, 0), "{p:?}");
        assert!(p.lost_callers.unwrap() > 0.0, "too few lines lose callers: {p:?}");
    }
    assert_eq!(s.limit, limit);
    let (lose, buy, shift) = (choice(&s, "lose_callers"), choice(&s, "buy_lines"), choice(&s, "shift_campaign"));
    assert!(s.choices.iter().all(|c| c.option != "shift_and_buy"), "inbound alone fits: {s:#?}");
    // Buying: 2 lines for 7 of 30 days at 30 a month.
    assert_eq!(buy.extra_lines, 2);
    assert!((buy.total.unwrap() - 14.0).abs() < 1e-9, "{buy:?}");
    assert_eq!(buy.lost_callers, Some(0.0));
    // Shifting: 2 lines × 2 intervals × 7 days × 5 calls an interval move, all placed.
    assert!((shift.moved_calls - 140.0).abs() < 1e-6, "{shift:?}");
    assert_eq!((shift.unplaced_calls, shift.lost_callers, shift.total), (0.0, Some(0.0), Some(0.0)), "{shift:?}");
    // (The total is priced before the callers are rounded to a tenth.)
    assert!((lose.total.unwrap() - 5.0 * lose.lost_callers.unwrap()).abs() < 0.5, "{lose:?}");
    assert_eq!(s.cheapest, Some("shift_campaign"), "{s:#?}");
}

#[test]
fn a_long_daily_shortfall_is_cheapest_bought() {
    // 08:00–18:00 UTC, every day: most of the campaign's window.
    let (_, _, s) = analyse(8 * HOUR, 18 * HOUR, Some(pricing()));
    assert_eq!(s.periods.len(), 7);
    assert_eq!(s.short_intervals, 7 * 40, "{s:#?}");
    let (buy, shift) = (choice(&s, "buy_lines"), choice(&s, "shift_campaign"));
    assert!((buy.total.unwrap() - 14.0).abs() < 1e-9, "{buy:?}");
    // 2800 calls to move; only 18:00–20:00 has spare lines inside the window.
    assert!((shift.moved_calls + shift.unplaced_calls - 2800.0).abs() < 1e-6, "{shift:?}");
    assert!(shift.unplaced_calls > 1000.0, "{shift:?}");
    assert!(shift.total.unwrap() > 1000.0, "{shift:?}");
    assert_eq!(s.cheapest, Some("buy_lines"), "{s:#?}");
}

#[test]
fn without_prices_the_shortfall_is_told_but_not_priced() {
    let (_, _, s) = analyse(10 * HOUR, 10 * HOUR + 2, None);
    assert_eq!(s.short_intervals, 14);
    assert!(s.choices.iter().all(|c| c.total.is_none()));
    assert_eq!(s.cheapest, None);
    assert!(s.note.as_deref().unwrap().contains("lost_caller"), "{s:?}");
    // A lost_caller price of 0 is no price either.
    let free = Pricing { lost_caller: 0.0, ..pricing() };
    let (_, _, s) = analyse(10 * HOUR, 10 * HOUR + 2, Some(free));
    assert_eq!(s.cheapest, None);
    assert!(s.note.as_deref().unwrap().contains("lost_caller is 0"), "{s:?}");
}

#[test]
fn inbound_alone_over_the_pool_adds_shift_and_buy() {
    let (_dir, h) = history(10 * HOUR, 10 * HOUR + 2, 20);
    let q = query();
    let report = Report::from_series(&q, &q.series(&h).unwrap()).unwrap();
    let peak = report.intervals.iter().map(|r| r.lines).max().unwrap();
    // One line fewer than inbound needs at the peak, and a campaign around the clock.
    let setting = Setting {
        limit: peak - 1,
        campaigns: vec![Campaign { name: "c".into(), lines: 2, aht_s: 180.0, dialing: Vec::new() }],
        pricing: Some(pricing()),
    };
    let s = report.shortfall(&q, &setting).unwrap();
    assert!(s.periods.iter().all(|p| p.inbound_short == 1), "{s:#?}");
    let both = choice(&s, "shift_and_buy");
    assert_eq!(both.extra_lines, 1);
    assert_eq!(both.lost_callers, Some(0.0), "{both:?}");
    let shift = choice(&s, "shift_campaign");
    assert!(shift.lost_callers.unwrap() > 0.0, "shifting alone leaves inbound a line short: {shift:?}");
    // Buying covers the campaign's lines too: 3.
    assert_eq!(choice(&s, "buy_lines").extra_lines, 3);
    assert_eq!(s.cheapest, Some("shift_and_buy"), "{s:#?}");
}
