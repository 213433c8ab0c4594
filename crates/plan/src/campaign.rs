//! Campaign arithmetic: how long an outbound campaign takes, how busy it keeps its lines,
//! its busiest hour, and what its minutes cost.
//!
//! The dialer places attempts as fast as both the carrier (calls per second) and the
//! lines allow: with `p` the connect rate, an attempt holds a line for `talk` when
//! answered and `ring` when not, so `lines` lines sustain `lines / (p·talk + (1-p)·ring)`
//! attempts per second. An unanswered lead is tried again `retry_after` later, up to
//! `retries` more times. The plan follows the leads minute by minute as a fluid (expected
//! numbers, no randomness), inside the calling window; for the randomness and the
//! interplay with inbound traffic, simulate the campaign (`[[sim.campaigns]]` in a scenario).
//!
//! With [`Inbound`] traffic on the same account, the campaign gets, each clock hour, the
//! lines inbound leaves it: inbound has priority (the reserve, and a campaign that never
//! waits for a line), so its busy lines follow Erlang's loss distribution on the whole
//! account (`P(N = k) ∝ aᵏ/k!` for `k ≤ lines`, `a` the hour's inbound erlangs), and the
//! campaign may use `min(lines − reserve, lines − N)`: on average
//! `E[min(lines − reserve, lines − N)]`. Its pace in that hour follows from those lines.

use crate::cost::Pricing;
use crate::PlanError;
use serde::Serialize;
use std::collections::VecDeque;

/// Minutes in a day.
const DAY_MIN: u64 = 1440;

/// A campaign plan gives up past ten years of dialing.
const MAX_MINUTES: u64 = 3650 * DAY_MIN;

/// What a campaign is and what it may use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignInput {
    /// Leads to reach.
    pub leads: u64,
    /// Share of attempts that someone answers, in (0, 1].
    pub connect_rate: f64,
    /// Mean length of an answered call (seconds).
    pub talk_s: f64,
    /// How long an unanswered attempt holds a line (seconds).
    pub ring_s: f64,
    /// Further attempts for a lead nobody answered.
    pub retries: u32,
    /// Wait before a lead is tried again (seconds).
    pub retry_after_s: f64,
    /// Lines the campaign may use (after what is reserved for inbound).
    pub lines: u32,
    /// Attempts per second the carrier allows.
    pub cps: f64,
    /// Calling window as minutes of the day `[start, end)` (end before start: overnight);
    /// `None`: around the clock. The plan starts when the window opens.
    pub window: Option<(u32, u32)>,
    /// Inbound calls on the same account, if any: the campaign gets what they leave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Inbound>,
}

/// Inbound traffic sharing the account with the campaign.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inbound {
    /// Inbound load (erlangs: calls per second × mean call length) for each clock hour
    /// from midnight of day 1, repeating after the last (one entry: all day).
    pub erlangs_by_hour: Vec<f64>,
    /// Lines of the account: inbound may use them all, the campaign at most `lines`.
    pub account_lines: u32,
}

/// The mean lines a campaign capped at `cap` gets on an account of `account` lines that
/// carries `a` erlangs of inbound traffic first: `E[min(cap, account − N)]`, `N` Erlang's
/// loss distribution on `account` lines (a truncated Poisson).
pub fn lines_left(cap: u32, account: u32, a: f64) -> f64 {
    if !(a > 0.0 && a.is_finite()) {
        return f64::from(cap.min(account));
    }
    let n = account as usize;
    let mode = (a.floor() as usize).min(n);
    // The terms beyond ten standard deviations (plus a margin for small loads) add
    // less than 1e-20 of the total.
    let spread = (10.0 * a.sqrt() + 30.0) as usize;
    let (lo, hi) = (mode.saturating_sub(spread), (mode + spread).min(n));
    let mut w = vec![0.0f64; hi - lo + 1];
    w[mode - lo] = 1.0;
    for k in mode + 1..=hi {
        w[k - lo] = w[k - 1 - lo] * a / k as f64;
    }
    for k in (lo..mode).rev() {
        w[k - lo] = w[k + 1 - lo] * (k + 1) as f64 / a;
    }
    let total: f64 = w.iter().sum();
    let left: f64 = w.iter().enumerate().map(|(i, wk)| wk * f64::from(cap.min(account - (lo + i) as u32))).sum();
    left / total
}

/// The busiest clock hour.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BusiestHour {
    /// Day of the campaign, from 1.
    pub day: u64,
    /// Hour of the day, 0–23.
    pub hour: u32,
    /// Attempts placed in that hour.
    #[serde(serialize_with = "rounded")]
    pub attempts: f64,
    /// Answered calls placed in that hour.
    #[serde(serialize_with = "rounded")]
    pub connected: f64,
}

/// How a campaign goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignPlan {
    /// Attempts placed in all (expected values: rounded to 3 decimals in JSON, so that
    /// 2,000 leads show as 2000, not 1999.9999999999943).
    #[serde(serialize_with = "rounded")]
    pub attempts: f64,
    /// Leads who answered.
    #[serde(serialize_with = "rounded")]
    pub connected: f64,
    /// Leads nobody answered after every attempt.
    #[serde(serialize_with = "rounded")]
    pub unreached: f64,
    /// Attempts per hour while dialing at full pace (with inbound: in the hour inbound
    /// leaves the most lines).
    #[serde(serialize_with = "rounded")]
    pub attempts_per_hour: f64,
    /// With inbound: the mean lines left to the campaign in each clock hour of the
    /// inbound profile (the reserve inbound leaves it), from midnight.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "rounded_all")]
    pub lines_left_by_hour: Vec<f64>,
    /// What sets the pace: `"lines"` or `"cps"`.
    pub paced_by: &'static str,
    /// Mean lines in use while dialing at full pace.
    pub lines_busy: f64,
    /// Hours spent dialing (inside the window).
    pub dialing_hours: f64,
    /// From the first attempt to the last, wall clock (seconds).
    pub duration_s: f64,
    /// Calendar days the campaign touches.
    pub days: u64,
    /// When the last attempt is placed: day (from 1) and minute of the day.
    pub ends_at: (u64, u32),
    /// The busiest clock hour.
    pub busiest_hour: BusiestHour,
    /// Attempts per clock hour from the first window on (at most 14 days).
    #[serde(serialize_with = "rounded_all")]
    pub hourly_attempts: Vec<f64>,
    /// Minutes of answered calls.
    #[serde(serialize_with = "rounded")]
    pub talk_minutes: f64,
    /// Minutes lines are held, answered or not.
    #[serde(serialize_with = "rounded")]
    pub line_minutes: f64,
    /// Costs, when prices were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CampaignCost>,
}

/// What a campaign costs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignCost {
    /// Currency symbol.
    pub currency: String,
    /// `talk_minutes × per-minute price`.
    pub minutes_cost: f64,
    /// The lines' monthly price for the days the campaign runs.
    pub lines_cost: f64,
    /// Both.
    pub total: f64,
    /// `total / connected`.
    pub per_connected_lead: f64,
}

/// A figure summed from fractions, to 3 decimals: the float error of the sums goes, the
/// fractions a rate gives stay.
fn round3(x: f64) -> f64 {
    if x.is_finite() && x.abs() < 1e12 {
        (x * 1000.0).round() / 1000.0
    } else {
        x
    }
}

fn rounded<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(*x))
}

fn rounded_all<S: serde::Serializer>(xs: &[f64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(xs.len()))?;
    for x in xs {
        seq.serialize_element(&round3(*x))?;
    }
    seq.end()
}

impl CampaignInput {
    fn check(&self) -> Result<(), PlanError> {
        let bad = |m: &str| Err(PlanError::input(m));
        if self.leads == 0 {
            return bad("--leads must be at least 1");
        }
        if !(self.connect_rate > 0.0 && self.connect_rate <= 1.0) {
            return bad("--connect-rate must be more than 0 and at most 1");
        }
        if !(self.talk_s > 0.0 && self.talk_s.is_finite()) {
            return bad("--talk must be more than 0s");
        }
        if !(self.ring_s >= 0.0 && self.ring_s.is_finite()) {
            return bad("--ring must be 0s or more");
        }
        if !(self.retry_after_s >= 0.0 && self.retry_after_s.is_finite()) {
            return bad("--retry-after must be 0s or more");
        }
        if self.lines == 0 {
            return bad("the campaign needs at least 1 line (after the reserve)");
        }
        if !(self.cps > 0.0 && self.cps.is_finite()) {
            return bad("--cps must be more than 0");
        }
        if let Some((s, e)) = self.window {
            if s == e || s >= DAY_MIN as u32 || e > DAY_MIN as u32 {
                return bad("the calling window must be two different times of day, e.g. 09:00-17:00");
            }
        }
        if let Some(i) = &self.inbound {
            if i.erlangs_by_hour.is_empty() || i.erlangs_by_hour.len() > 24 * 7 {
                return bad("the inbound profile needs 1 to 168 hourly values");
            }
            if i.erlangs_by_hour.iter().any(|a| !(a.is_finite() && *a >= 0.0 && *a <= 1e7)) {
                return bad("inbound load must be between 0 and 10,000,000 erlangs in every hour");
            }
            if i.account_lines < self.lines || i.account_lines > 1_000_000 {
                return bad("the account needs at least the campaign's lines, and at most 1,000,000");
            }
        }
        Ok(())
    }

    fn in_window(&self, minute_of_day: u32) -> bool {
        match self.window {
            None => true,
            Some((s, e)) if s < e => (s..e).contains(&minute_of_day),
            Some((s, e)) => minute_of_day >= s || minute_of_day < e,
        }
    }
}

/// Plans a campaign; prices, when given, add its cost.
pub fn plan_campaign(input: &CampaignInput, pricing: Option<&Pricing>) -> Result<CampaignPlan, PlanError> {
    input.check()?;
    let p = input.connect_rate;
    let hold_s = p * input.talk_s + (1.0 - p) * input.ring_s;
    let pace = |lines: f64| {
        let line_rate = if hold_s > 0.0 { lines / hold_s } else { f64::INFINITY };
        if line_rate < input.cps {
            (line_rate, "lines")
        } else {
            (input.cps, "cps")
        }
    };
    // Lines per clock hour of the inbound profile (one entry without inbound).
    let lines_left_by_hour: Vec<f64> = match &input.inbound {
        None => vec![f64::from(input.lines)],
        Some(i) => i.erlangs_by_hour.iter().map(|&a| lines_left(input.lines, i.account_lines, a)).collect(),
    };
    let per_minute_by_hour: Vec<f64> = lines_left_by_hour.iter().map(|&l| pace(l).0 * 60.0).collect();
    let best = lines_left_by_hour.iter().copied().fold(0.0, f64::max);
    let (rate, paced_by) = pace(best);
    let start_min = u64::from(input.window.map_or(0, |(s, _)| s));
    let retry_after_min = (input.retry_after_s / 60.0).ceil().max(1.0) as u64;
    let leads = input.leads as f64;
    // Amounts below this many leads are done: the fluid's way of saying "none left".
    let eps = 1e-9 * leads.max(1.0);

    let mut fresh = leads;
    let mut retry: VecDeque<(u64, u32, f64)> = VecDeque::new(); // (due minute, attempt no., leads)
    let (mut attempts, mut connected, mut unreached) = (0.0, 0.0, 0.0);
    let mut hourly: Vec<(f64, f64)> = Vec::new();
    let mut dialing_minutes = 0u64;
    let (mut first, mut last) = (None, 0u64);
    let mut m = 0u64;
    while fresh > eps || !retry.is_empty() {
        if m > MAX_MINUTES {
            return Err(PlanError::input("this campaign would take more than ten years of dialing"));
        }
        let clock = start_min + m;
        if input.in_window((clock % DAY_MIN) as u32) {
            let mut budget = per_minute_by_hour[(clock / 60) as usize % per_minute_by_hour.len()];
            let mut dialed_now = 0.0;
            let mut connected_now = 0.0;
            let mut place = |amount: f64, attempt: u32, retry: &mut VecDeque<(u64, u32, f64)>| {
                let answered = amount * p;
                let missed = amount - answered;
                connected_now += answered;
                dialed_now += amount;
                if attempt <= input.retries && missed > eps {
                    let due = m + retry_after_min;
                    match retry.iter_mut().find(|e| e.1 == attempt + 1) {
                        Some(e) => e.2 += missed,
                        None => retry.push_back((due, attempt + 1, missed)),
                    }
                } else {
                    unreached += missed;
                }
            };
            // Leads due for another try go first: they have waited longest.
            let mut later = VecDeque::new();
            while budget > 0.0 {
                match retry.front().copied() {
                    Some((due, attempt, amount)) if due <= m => {
                        let take = amount.min(budget);
                        budget -= take;
                        if take >= amount - eps {
                            retry.pop_front();
                        } else if let Some(front) = retry.front_mut() {
                            front.2 -= take;
                        }
                        place(take, attempt, &mut later);
                    }
                    _ => break,
                }
            }
            if budget > 0.0 && fresh > eps {
                let take = fresh.min(budget);
                fresh -= take;
                place(take, 1, &mut later);
            }
            // New tries fall due after every try already waiting, so they go at the back.
            for entry in later {
                match retry.back_mut() {
                    Some(back) if back.0 == entry.0 && back.1 == entry.1 => back.2 += entry.2,
                    _ => retry.push_back(entry),
                }
            }
            if dialed_now > 0.0 {
                attempts += dialed_now;
                connected += connected_now;
                dialing_minutes += 1;
                first.get_or_insert(m);
                last = m;
                let hour = (clock / 60 - start_min / 60) as usize;
                if hourly.len() <= hour {
                    hourly.resize(hour + 1, (0.0, 0.0));
                }
                hourly[hour].0 += dialed_now;
                hourly[hour].1 += connected_now;
            }
        }
        m += 1;
    }
    let first = first.unwrap_or(0);
    let (busiest_index, &(b_attempts, b_connected)) = hourly
        .iter()
        .enumerate()
        .fold((0, &(0.0, 0.0)), |best, (i, h)| if h.0 > best.1 .0 + 1e-9 { (i, h) } else { best });
    let busiest_clock = (start_min / 60 + busiest_index as u64) * 60;
    let end_clock = start_min + last;
    let duration_s = (last - first + 1) as f64 * 60.0;
    let talk_minutes = connected * input.talk_s / 60.0;
    let line_minutes = talk_minutes + (attempts - connected) * input.ring_s / 60.0;
    let days = end_clock / DAY_MIN + 1;
    let cost = pricing.map(|pr| {
        let minutes_cost = talk_minutes * pr.per_minute_total();
        let lines_cost = f64::from(input.lines) * pr.per_line_month * days as f64 / pr.days_per_month;
        let total = minutes_cost + lines_cost;
        CampaignCost {
            currency: pr.currency.clone(),
            minutes_cost,
            lines_cost,
            total,
            per_connected_lead: if connected > 0.0 { total / connected } else { 0.0 },
        }
    });
    Ok(CampaignPlan {
        attempts,
        connected,
        unreached,
        attempts_per_hour: rate * 3600.0,
        lines_left_by_hour: if input.inbound.is_some() { lines_left_by_hour } else { Vec::new() },
        paced_by,
        lines_busy: rate * hold_s,
        dialing_hours: dialing_minutes as f64 / 60.0,
        duration_s,
        days,
        ends_at: (days, (end_clock % DAY_MIN) as u32),
        busiest_hour: BusiestHour {
            day: busiest_clock / DAY_MIN + 1,
            hour: ((busiest_clock % DAY_MIN) / 60) as u32,
            attempts: b_attempts,
            connected: b_connected,
        },
        hourly_attempts: hourly.iter().take(14 * 24).map(|h| h.0).collect(),
        talk_minutes,
        line_minutes,
        cost,
    })
}

/// Reads `HH:MM-HH:MM` as minutes of the day.
pub fn parse_window(text: &str) -> Result<(u32, u32), PlanError> {
    let bad = || PlanError::input(format!("`{text}` is not a calling window (write e.g. 09:00-17:00)"));
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let time = |t: &str| -> Result<u32, PlanError> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (s, e) = (time(a)?, time(b)?);
    if s == e || s >= 1440 {
        return Err(bad());
    }
    Ok((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CampaignInput {
        CampaignInput {
            leads: 5_000,
            connect_rate: 0.3,
            talk_s: 180.0,
            ring_s: 30.0,
            retries: 2,
            retry_after_s: 3600.0,
            lines: 10,
            cps: 1.0,
            window: Some((9 * 60, 17 * 60)),
            inbound: None,
        }
    }

    #[test]
    fn every_lead_ends_answered_or_unreached() {
        let plan = plan_campaign(&base(), None).unwrap();
        // 1 - 0.7^3 of the leads answer at some attempt.
        let want = 5_000.0 * (1.0 - 0.7f64.powi(3));
        assert!((plan.connected - want).abs() < 1e-6, "{}", plan.connected);
        assert!((plan.connected + plan.unreached - 5_000.0).abs() < 1e-6);
        // Expected attempts per lead: 1 + 0.7 + 0.49.
        assert!((plan.attempts - 5_000.0 * 2.19).abs() < 1e-6);
    }

    #[test]
    fn counts_in_json_are_rounded_not_float_noise() {
        let input = CampaignInput { leads: 2_000, connect_rate: 1.0, retries: 0, ..base() };
        let plan = plan_campaign(&input, None).unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["attempts"], 2000.0);
        assert_eq!(json["connected"], 2000.0);
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("99999999"), "{text}");
    }

    #[test]
    fn ten_lines_pace_the_dialer_below_one_call_a_second() {
        let plan = plan_campaign(&base(), None).unwrap();
        // A mean attempt holds 0.3·180 + 0.7·30 = 75 s: 10 lines sustain 480 attempts/h.
        assert_eq!(plan.paced_by, "lines");
        assert!((plan.attempts_per_hour - 480.0).abs() < 1e-9);
        assert!((plan.lines_busy - 10.0).abs() < 1e-9);
        // 10,950 attempts at 480 an hour take 22.8 hours at full pace, a little more once
        // the last retries trickle in an hour apart. The retries of the last attempts of
        // day 3 fall due after 17:00 and wait for the window of day 4.
        let full_pace = 10_950.0 / 480.0;
        assert!(plan.dialing_hours >= full_pace && plan.dialing_hours < full_pace + 2.0);
        assert_eq!(plan.days, 4, "{plan:?}");
        assert_eq!(plan.ends_at, (4, 9 * 60));
        assert_eq!((plan.busiest_hour.day, plan.busiest_hour.hour), (1, 9));
    }

    #[test]
    fn the_carrier_limit_paces_a_campaign_with_many_lines() {
        let plan = plan_campaign(&CampaignInput { lines: 500, cps: 0.5, ..base() }, None).unwrap();
        assert_eq!(plan.paced_by, "cps");
        assert!((plan.attempts_per_hour - 1800.0).abs() < 1e-9);
    }

    #[test]
    fn a_campaign_around_the_clock_never_waits_for_a_window() {
        let plan = plan_campaign(&CampaignInput { window: None, retries: 0, ..base() }, None).unwrap();
        assert!((plan.dialing_hours * 60.0 - plan.duration_s / 60.0).abs() < 1e-9);
    }

    #[test]
    fn costs_count_talk_minutes_and_prorated_lines() {
        let pricing = Pricing { per_minute: 0.1, per_line_month: 30.0, ..Pricing::default() };
        let plan = plan_campaign(&base(), Some(&pricing)).unwrap();
        let cost = plan.cost.unwrap();
        assert!((cost.minutes_cost - plan.talk_minutes * 0.1).abs() < 1e-9);
        assert!((cost.lines_cost - 10.0 * 30.0 * plan.days as f64 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn windows_are_read_and_bad_input_refused() {
        assert_eq!(parse_window("09:00-17:30").unwrap(), (540, 1050));
        assert_eq!(parse_window("22:00-06:00").unwrap(), (1320, 360));
        for bad in ["9-17", "09:00", "25:00-26:00", "10:00-10:00"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        assert!(plan_campaign(&CampaignInput { leads: 0, ..base() }, None).is_err());
        assert!(plan_campaign(&CampaignInput { connect_rate: 0.0, ..base() }, None).is_err());
        assert!(plan_campaign(&CampaignInput { cps: f64::NAN, ..base() }, None).is_err());
        let inbound = |erlangs: Vec<f64>, account_lines| Some(Inbound { erlangs_by_hour: erlangs, account_lines });
        assert!(plan_campaign(&CampaignInput { inbound: inbound(vec![], 10), ..base() }, None).is_err());
        assert!(plan_campaign(&CampaignInput { inbound: inbound(vec![f64::NAN], 10), ..base() }, None).is_err());
        assert!(plan_campaign(&CampaignInput { inbound: inbound(vec![1.0], 5), ..base() }, None).is_err());
    }

    #[test]
    fn lines_left_follow_erlangs_loss_distribution() {
        // No inbound: all the campaign's lines.
        assert_eq!(lines_left(7, 10, 0.0), 7.0);
        // One line, a erlangs: inbound holds it a/(1+a) of the time (Erlang B with 1 line).
        for a in [0.1, 1.0, 3.0] {
            assert!((lines_left(1, 1, a) - 1.0 / (1.0 + a)).abs() < 1e-12, "{a}");
        }
        // A reserve of 3 on 10 lines and a light inbound load: inbound rarely needs more
        // than the 3 reserved, so the campaign has nearly its 7.
        let light = lines_left(7, 10, 0.5);
        assert!(light > 6.99 && light < 7.0, "{light}");
        // A heavy inbound load (9 E on 10 lines) leaves about 10 − 9·(1 − B) on average.
        let heavy = lines_left(10, 10, 9.0);
        let b = crate::erlang::erlang_b(10, 9.0);
        assert!((heavy - (10.0 - 9.0 * (1.0 - b))).abs() < 1e-9, "{heavy}");
        // Large accounts stay finite and sensible.
        let big = lines_left(500, 1000, 450.0);
        assert!(big > 450.0 && big <= 500.0, "{big}");
    }

    #[test]
    fn inbound_traffic_slows_the_campaign_in_its_busy_hours() {
        let alone = plan_campaign(&CampaignInput { lines: 7, ..base() }, None).unwrap();
        // 10 lines, reserve 3; inbound 6 E from 09:00 to 17:00, nothing otherwise.
        let mut profile = vec![0.0; 24];
        profile[9..17].iter_mut().for_each(|a| *a = 6.0);
        let shared = CampaignInput {
            lines: 7,
            inbound: Some(Inbound { erlangs_by_hour: profile, account_lines: 10 }),
            ..base()
        };
        let plan = plan_campaign(&shared, None).unwrap();
        assert!(
            plan.lines_left_by_hour[10] < 4.5 && plan.lines_left_by_hour[10] > 3.5,
            "{:?}",
            plan.lines_left_by_hour
        );
        assert_eq!(plan.lines_left_by_hour[3], 7.0);
        assert!(plan.days > alone.days || plan.ends_at.1 > alone.ends_at.1, "{plan:?}\n{alone:?}");
        assert!(plan.dialing_hours > alone.dialing_hours);
        // The same leads, the same outcomes: only the time differs.
        assert!((plan.attempts - alone.attempts).abs() < 1e-6);
    }
}
