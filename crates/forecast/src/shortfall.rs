//! Where the forecast needs more lines than the pool has: when, how many lines short, how
//! many callers that loses, and — with prices — whether buying lines or shifting the
//! campaign out of the short intervals is cheaper.
//!
//! The pool has `limit` lines. In each interval inbound needs the lines its forecast
//! needs for the target (Erlang A, [`crate::capacity::lines`]) and the campaigns hold
//! their lines (`max_concurrency`) while they may dial (their calling window); an interval
//! is short by what both need over the limit. Four ways out are priced:
//!
//! - **lose callers**: nothing changes; inbound gets the lines the campaigns leave and the
//!   callers above the target's losses hang up (Erlang A with the callers' patience), each
//!   at `[pricing] lost_caller`.
//! - **buy lines**: enough lines for the shortest interval, at `per_line_month`
//!   **prorated** over the forecast's days (`lines × per_line_month × days /
//!   days_per_month`). Lines are billed by the month; prorating compares a month of lines
//!   with a month of the same shortfall (the forecast repeats its weekly pattern), so a
//!   peak that comes back every week is weighed fairly. Buying for only these days would
//!   cost a whole month, which the text says beside it.
//! - **shift the campaign**: in the short intervals the campaigns give their lines back
//!   to inbound (as a `[[schedules]]` entry lowering their `max_concurrency` does), and
//!   their calls move to intervals of the forecast with spare lines inside their calling
//!   windows (a schedule raising the cap there). Calls that find no spare line within the
//!   forecast's days are priced at `campaign_call`; callers still lost where inbound alone
//!   needs more than the pool are priced as above.
//! - **shift and buy**: when inbound alone needs more than the pool, both: the lines
//!   inbound alone lacks are bought and the campaigns shift.
//!
//! Per-minute prices are left out: the same calls are carried whichever way (a lost
//! caller's unpaid minutes are netted in `lost_caller`).

use crate::capacity::{self, ServiceTarget};
use crate::model::Interval;
use crate::report::rfc3339;
use crate::{ForecastError, DAY, INTERVAL_MS};
use callgate_plan::cost::Pricing;
use serde::Serialize;

/// The most short periods listed (a period is a run of short intervals); the count of
/// the others is given.
pub const MAX_PERIODS: usize = 48;
/// The most campaigns taken into account.
pub const MAX_CAMPAIGNS: usize = 64;

/// A campaign dialing through the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Campaign {
    /// Its name.
    pub name: String,
    /// The lines it holds while it dials (its `max_concurrency`).
    pub lines: u32,
    /// Mean length of its calls (seconds), to count moved calls.
    pub aht_s: f64,
    /// Per interval of the forecast: whether it may dial (its calling window). Empty:
    /// always.
    pub dialing: Vec<bool>,
}

impl Campaign {
    fn dials(&self, i: usize) -> bool {
        self.dialing.get(i).copied().unwrap_or(self.dialing.is_empty())
    }
}

/// What the forecast is set against.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setting {
    /// The pool's lines.
    pub limit: u32,
    /// The campaigns that share them (at most [`MAX_CAMPAIGNS`]).
    pub campaigns: Vec<Campaign>,
    /// Prices; without them (or without a `lost_caller` price) nothing is priced.
    pub pricing: Option<Pricing>,
}

impl Setting {
    /// The lines the campaigns hold in interval `i` of the forecast.
    pub fn campaign_lines_at(&self, i: usize) -> u32 {
        self.campaigns.iter().filter(|c| c.dials(i)).map(|c| c.lines).fold(0u32, u32::saturating_add)
    }
}

/// A run of short intervals.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// Its first interval's start, RFC 3339 UTC.
    pub start: String,
    /// Its end (the last interval's end), RFC 3339 UTC.
    pub end: String,
    /// Its first interval's start, Unix ms.
    pub start_ms: u64,
    /// Intervals in it.
    pub intervals: u32,
    /// The most lines short in one of its intervals (inbound's need and the campaigns'
    /// lines over the limit).
    pub lines_short: u32,
    /// The most lines inbound alone needs over the limit (0: the campaigns' lines make it
    /// short).
    pub inbound_short: u32,
    /// Callers who hang up in it beyond the target's losses, as things stand (null
    /// without a patience: Erlang C loses nobody to the wait).
    pub lost_callers: Option<f64>,
}

/// One way out, priced.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Choice {
    /// `lose_callers`, `buy_lines`, `shift_campaign` or `shift_and_buy`.
    pub option: &'static str,
    /// Lines bought.
    pub extra_lines: u32,
    /// Callers who still hang up beyond the target's losses.
    pub lost_callers: Option<f64>,
    /// Campaign calls moved out of the short intervals into spare lines.
    pub moved_calls: f64,
    /// Campaign calls that found no spare line within the forecast's days.
    pub unplaced_calls: f64,
    /// `extra_lines × per_line_month × days / days_per_month` (prorated).
    pub lines_cost: Option<f64>,
    /// `lost_callers × lost_caller`.
    pub lost_cost: Option<f64>,
    /// `unplaced_calls × campaign_call`.
    pub unplaced_cost: Option<f64>,
    /// All together, over the forecast's days; null when it cannot be priced.
    pub total: Option<f64>,
}

/// Where the forecast outgrows the pool, and what to do about it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Shortfall {
    /// The pool's lines.
    pub limit: u32,
    /// The most lines the campaigns hold at once while dialing.
    pub campaign_lines: u32,
    /// Intervals that need more than the limit.
    pub short_intervals: u32,
    /// Days the forecast covers (what the costs are over).
    pub days: f64,
    /// The runs of short intervals, in order (at most 48).
    pub periods: Vec<Period>,
    /// Runs not listed.
    pub periods_left_off: u32,
    /// The ways out, in this order: lose callers, buy lines, shift the campaign (with
    /// campaigns), shift and buy (when inbound alone is short).
    pub choices: Vec<Choice>,
    /// The cheapest choice's `option`, with prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cheapest: Option<&'static str>,
    /// Shown in front of amounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `per_line_month` (what one line costs for a whole month), with prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_line_month: Option<f64>,
    /// `days_per_month`, the month the line price is prorated over, with prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_per_month: Option<f64>,
    /// Why something is not priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The forecast's `points` (with `needed`, the lines each needs, and `mean_aht_s` for the
/// intervals without a handling time) set against `setting`.
pub fn analyse(
    points: &[Interval],
    needed: &[u32],
    mean_aht_s: f64,
    target: ServiceTarget,
    setting: &Setting,
) -> Result<Shortfall, ForecastError> {
    if points.len() != needed.len() {
        return Err(ForecastError::input("the forecast and its lines differ in length"));
    }
    if setting.campaigns.len() > MAX_CAMPAIGNS {
        return Err(ForecastError::input(format!("at most {MAX_CAMPAIGNS} campaigns")));
    }
    if let Some(c) = setting.campaigns.iter().find(|c| !(c.aht_s.is_finite() && c.aht_s > 0.0)) {
        return Err(ForecastError::input(format!("campaign {}: its call length must be more than 0 s", c.name)));
    }
    let limit = setting.limit;
    // Lines the campaigns hold, and their calls per line and interval, per interval.
    let campaign: Vec<u32> = (0..points.len()).map(|i| setting.campaign_lines_at(i)).collect();
    let calls_per_line: Vec<f64> = (0..points.len())
        .map(|i| {
            let (lines, calls) = setting.campaigns.iter().filter(|c| c.dials(i)).fold((0.0, 0.0), |(l, n), c| {
                (l + f64::from(c.lines), n + f64::from(c.lines) * INTERVAL_MS as f64 / 1000.0 / c.aht_s)
            });
            if lines > 0.0 {
                calls / lines
            } else {
                0.0
            }
        })
        .collect();
    let over = |i: usize, limit: u32| needed[i].saturating_add(campaign[i]).saturating_sub(limit);
    let lost = |i: usize, lines: u32| -> Result<Option<f64>, ForecastError> {
        // Beyond what the target itself loses.
        let (Some(with), Some(at_target)) = (
            capacity::lost_with(&points[i], mean_aht_s, target, lines)?,
            capacity::lost_with(&points[i], mean_aht_s, target, needed[i])?,
        ) else {
            return Ok(None);
        };
        Ok(Some((with - at_target).max(0.0)))
    };

    // When, and how much.
    let mut periods: Vec<Period> = Vec::new();
    let mut left_off = 0u32;
    let mut short_intervals = 0u32;
    let mut open: Option<Period> = None;
    for i in 0..points.len() {
        let short = over(i, limit);
        if short == 0 {
            if let Some(p) = open.take() {
                push_period(&mut periods, &mut left_off, p);
            }
            continue;
        }
        short_intervals += 1;
        let here = lost(i, limit.saturating_sub(campaign[i]))?;
        let end_ms = points[i].start_ms + INTERVAL_MS;
        let p = open.get_or_insert_with(|| Period {
            start: rfc3339(points[i].start_ms),
            end: String::new(),
            start_ms: points[i].start_ms,
            intervals: 0,
            lines_short: 0,
            inbound_short: 0,
            lost_callers: Some(0.0),
        });
        p.end = rfc3339(end_ms);
        p.intervals += 1;
        p.lines_short = p.lines_short.max(short);
        p.inbound_short = p.inbound_short.max(needed[i].saturating_sub(limit));
        p.lost_callers = p.lost_callers.zip(here).map(|(a, b)| a + b);
    }
    if let Some(p) = open.take() {
        push_period(&mut periods, &mut left_off, p);
    }

    // The ways out.
    let days = points.len() as f64 / DAY as f64;
    let most_short = (0..points.len()).map(|i| over(i, limit)).max().unwrap_or(0);
    let inbound_short = (0..points.len()).map(|i| needed[i].saturating_sub(limit)).max().unwrap_or(0);
    let has_campaign = campaign.iter().any(|&c| c > 0);
    let mut ways = vec![("lose_callers", false, 0)];
    if short_intervals > 0 {
        ways.push(("buy_lines", false, most_short));
        if has_campaign {
            ways.push(("shift_campaign", true, 0));
            if inbound_short > 0 {
                ways.push(("shift_and_buy", true, inbound_short));
            }
        }
    }
    let priced = setting.pricing.as_ref().filter(|p| p.lost_caller > 0.0);
    let mut choices = Vec::with_capacity(ways.len());
    for (option, shift, extra) in ways {
        let pool = limit.saturating_add(extra);
        let (mut lost_callers, mut given, mut spare) = (Some(0.0), 0.0, 0.0);
        for i in 0..points.len() {
            let short = over(i, pool);
            if short == 0 {
                // Lines left over where the campaigns may dial take moved calls.
                if campaign[i] > 0 {
                    let free = pool.saturating_sub(needed[i]).saturating_sub(campaign[i]);
                    spare += f64::from(free) * calls_per_line[i];
                }
                continue;
            }
            let back = if shift { campaign[i].min(short) } else { 0 };
            given += f64::from(back) * calls_per_line[i];
            let inbound = pool.saturating_sub(campaign[i] - back);
            let here = if inbound >= needed[i] { Some(0.0) } else { lost(i, inbound)? };
            lost_callers = lost_callers.zip(here).map(|(a, b)| a + b);
        }
        let moved = given.min(spare);
        let unplaced = given - moved;
        let (lines_cost, lost_cost, unplaced_cost, total) = match priced {
            Some(p) => {
                let lines_cost = f64::from(extra) * p.per_line_month * days / p.days_per_month;
                let lost_cost = lost_callers.map(|n| n * p.lost_caller);
                let unplaced_cost = unplaced * p.campaign_call;
                (Some(lines_cost), lost_cost, Some(unplaced_cost), lost_cost.map(|l| l + lines_cost + unplaced_cost))
            }
            None => (None, None, None, None),
        };
        choices.push(Choice {
            option,
            extra_lines: extra,
            lost_callers: lost_callers.map(round1),
            moved_calls: round1(moved),
            unplaced_calls: round1(unplaced),
            lines_cost: lines_cost.map(round2),
            lost_cost: lost_cost.map(round2),
            unplaced_cost: unplaced_cost.map(round2),
            total: total.map(round2),
        });
    }
    let cheapest = if short_intervals > 0 {
        // The first of the cheapest in the order given (losing callers before spending).
        choices
            .iter()
            .filter_map(|c| c.total.map(|t| (t, c.option)))
            .fold(None, |best: Option<(f64, &'static str)>, (t, o)| match best {
                Some((b, _)) if b <= t => best,
                _ => Some((t, o)),
            })
            .map(|(_, o)| o)
    } else {
        None
    };
    let note = if short_intervals == 0 {
        None
    } else if target.patience_s.is_none() {
        Some("without a patience (Erlang C) callers wait rather than hang up: no loss to price".to_owned())
    } else if setting.pricing.is_none() {
        Some("no prices: give [pricing] with lost_caller and per_line_month to compare the choices".to_owned())
    } else if priced.is_none() {
        Some("[pricing] lost_caller is 0: set what a caller who hangs up costs to compare the choices".to_owned())
    } else {
        None
    };
    Ok(Shortfall {
        limit,
        campaign_lines: campaign.iter().copied().max().unwrap_or(0),
        short_intervals,
        days,
        periods,
        periods_left_off: left_off,
        choices,
        cheapest,
        currency: priced.map(|p| p.currency.clone()),
        per_line_month: priced.map(|p| p.per_line_month),
        days_per_month: priced.map(|p| p.days_per_month),
        note,
    })
}

fn push_period(periods: &mut Vec<Period>, left_off: &mut u32, mut p: Period) {
    p.lost_callers = p.lost_callers.map(round1);
    if periods.len() < MAX_PERIODS {
        periods.push(p);
    } else {
        *left_off += 1;
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// What [`Choice::option`] says, for people.
pub fn option_text(option: &str) -> &'static str {
    match option {
        "lose_callers" => "lose callers",
        "buy_lines" => "buy lines",
        "shift_campaign" => "shift campaign",
        "shift_and_buy" => "shift and buy",
        _ => "?",
    }
}
