//! `callgate plan campaign`: how long a campaign takes and what it costs.

use super::{parse_duration_secs, parse_share, Prices};
use crate::campaign::{parse_window, plan_campaign, CampaignInput, CampaignPlan, Inbound};
use crate::sim::Scenario;
use crate::text::{count, money, num, pct, secs};
use crate::PlanError;
use serde::Serialize;
use std::fmt::Write as _;

/// Options of `callgate plan campaign`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct CampaignArgs {
    /// Leads to call.
    #[arg(long)]
    pub leads: u64,
    /// Share of attempts someone answers (0.3 or 30%).
    #[arg(long, default_value = "0.3", value_parser = parse_share)]
    pub connect_rate: f64,
    /// Mean length of an answered call.
    #[arg(long, default_value = "3m", value_parser = parse_duration_secs)]
    pub talk: f64,
    /// How long an unanswered attempt rings (and holds a line).
    #[arg(long, default_value = "30s", value_parser = parse_duration_secs)]
    pub ring: f64,
    /// Further attempts for a lead nobody answered.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Wait before trying a lead again.
    #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
    pub retry_after: f64,
    /// Lines of the account.
    #[arg(long)]
    pub lines: u32,
    /// Lines held back for inbound callers (the campaign uses the rest).
    #[arg(long, default_value_t = 0)]
    pub reserve: u32,
    /// Attempts per second the carrier allows.
    #[arg(long, default_value_t = 1.0)]
    pub cps: f64,
    /// Calling window, e.g. 09:00-17:00 (default: around the clock).
    #[arg(long)]
    pub window: Option<String>,
    /// Inbound calls per hour on the same lines: one rate, or hourly rates from midnight
    /// separated by commas (repeating after the last); with --inbound-aht.
    #[arg(long, value_parser = parse_rates)]
    pub inbound_calls_per_hour: Option<Rates>,
    /// Mean length of an inbound call.
    #[arg(long, value_parser = parse_duration_secs)]
    pub inbound_aht: Option<f64>,
    /// Take the inbound traffic from a scenario's [[arrivals]] instead (their hourly rates
    /// and mean call lengths; bursts are left out).
    #[arg(long, conflicts_with_all = ["inbound_calls_per_hour", "inbound_aht"])]
    pub inbound_scenario: Option<std::path::PathBuf>,
    /// Prices for the cost line.
    #[command(flatten)]
    pub prices: Prices,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `plan campaign` prints (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignReportOut {
    /// The inputs, after the reserve.
    pub input: CampaignInput,
    /// Lines of the account.
    pub account_lines: u32,
    /// Lines held back for inbound.
    pub reserve: u32,
    /// The plan.
    #[serde(flatten)]
    pub plan: CampaignPlan,
}

/// Computes what `plan campaign` prints.
pub fn campaign_report(args: &CampaignArgs) -> Result<CampaignReportOut, PlanError> {
    if args.reserve >= args.lines {
        return Err(PlanError::input(format!(
            "a reserve of {} leaves no line of {} for the campaign",
            args.reserve, args.lines
        )));
    }
    let window = args.window.as_deref().map(parse_window).transpose()?;
    let erlangs_by_hour = match (&args.inbound_calls_per_hour, args.inbound_aht, &args.inbound_scenario) {
        (Some(rates), Some(aht), None) => {
            if aht <= 0.0 || !aht.is_finite() {
                return Err(PlanError::input("--inbound-aht must be more than 0s"));
            }
            Some(rates.0.iter().map(|r| r * aht / 3600.0).collect())
        }
        (Some(_), None, None) => return Err(PlanError::input("--inbound-calls-per-hour needs --inbound-aht")),
        (None, Some(_), None) => return Err(PlanError::input("--inbound-aht needs --inbound-calls-per-hour")),
        (None, None, Some(path)) => Some(scenario_erlangs(&Scenario::from_file(path)?)?),
        _ => None,
    };
    let input = CampaignInput {
        leads: args.leads,
        connect_rate: args.connect_rate,
        talk_s: args.talk,
        ring_s: args.ring,
        retries: args.retries,
        retry_after_s: args.retry_after,
        lines: args.lines - args.reserve,
        cps: args.cps,
        window,
        inbound: erlangs_by_hour.map(|erlangs_by_hour| Inbound { erlangs_by_hour, account_lines: args.lines }),
    };
    let pricing = args.prices.resolve()?;
    let plan = plan_campaign(&input, pricing.as_ref())?;
    Ok(CampaignReportOut { input, account_lines: args.lines, reserve: args.reserve, plan })
}

/// Hourly rates (calls per hour), as `--inbound-calls-per-hour` takes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates(pub Vec<f64>);

fn parse_rates(text: &str) -> Result<Rates, String> {
    let rates: Result<Vec<f64>, String> = text
        .split(',')
        .map(|r| match r.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=1e9).contains(&x) => Ok(x),
            _ => Err(format!("`{}` is not a number of calls per hour (0 to 1,000,000,000)", r.trim())),
        })
        .collect();
    let rates = rates?;
    if rates.len() > 24 * 7 {
        return Err("at most 168 hourly rates (a week)".into());
    }
    Ok(Rates(rates))
}

/// The inbound load of a scenario's `[[arrivals]]` per clock hour from the run's start
/// (a day, or a week when a stream's profile is longer than a day).
fn scenario_erlangs(sc: &Scenario) -> Result<Vec<f64>, PlanError> {
    if sc.arrivals.is_empty() {
        return Err(PlanError::input(format!("--inbound-scenario: {} has no [[arrivals]]", sc.name)));
    }
    let hours = if sc.arrivals.iter().all(|a| a.rate.hourly.len() <= 24 && 24 % a.rate.hourly.len() == 0) {
        24
    } else {
        24 * 7
    };
    Ok((0..hours)
        .map(|h| sc.arrivals.iter().map(|a| a.rate.hourly[h % a.rate.hourly.len()] * a.hold.mean_ms()).sum::<f64>())
        .collect())
}

fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

impl CampaignReportOut {
    /// The readable report.
    pub fn to_text(&self) -> String {
        let (i, p) = (&self.input, &self.plan);
        let mut out = String::new();
        let lines = if self.reserve > 0 {
            format!("{} of {} lines ({} held for inbound)", i.lines, self.account_lines, self.reserve)
        } else {
            format!("{} lines", i.lines)
        };
        let window =
            i.window.map_or_else(|| "around the clock".to_owned(), |(s, e)| format!("window {}-{}", hhmm(s), hhmm(e)));
        let retries = match i.retries {
            0 => "no retries".to_owned(),
            n => format!("{n} {} {} apart", if n == 1 { "retry" } else { "retries" }, secs(i.retry_after_s)),
        };
        let _ = writeln!(
            out,
            "{} leads · {} answer · {} calls · {} ring · {retries} · {lines} · {} call/s · {window}\n",
            count(i.leads),
            pct(i.connect_rate),
            secs(i.talk_s),
            secs(i.ring_s),
            num(i.cps, 2),
        );
        let limit = if p.paced_by == "lines" {
            format!("the lines set the pace; the carrier would allow {}/h", num(i.cps * 3600.0, 0))
        } else {
            "the carrier's calls per second set the pace".to_owned()
        };
        let _ = writeln!(
            out,
            "Pace:         {} attempts/h ({limit}), {} lines busy",
            num(p.attempts_per_hour, 0),
            num(p.lines_busy, 1)
        );
        let _ = writeln!(
            out,
            "Attempts:     {} · answered {} ({} of leads) · unreached {}",
            num(p.attempts, 0),
            num(p.connected, 0),
            pct(p.connected / i.leads as f64),
            num(p.unreached, 0)
        );
        let _ = writeln!(
            out,
            "Duration:     {} of dialing over {} {}; the last attempt on day {} at {}",
            secs(p.dialing_hours * 3600.0),
            p.days,
            if p.days == 1 { "day" } else { "days" },
            p.ends_at.0,
            hhmm(p.ends_at.1)
        );
        if let Some(inbound) = &i.inbound {
            let left = &p.lines_left_by_hour;
            let (lo, hi) = left.iter().enumerate().fold((0, 0), |(lo, hi), (h, &l)| {
                (if l < left[lo] { h } else { lo }, if l > left[hi] { h } else { hi })
            });
            let peak = inbound.erlangs_by_hour.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "Inbound:      up to {} erlangs on the {} lines; the campaign gets {} lines on average at \
                 {} (its fewest), {} at {}",
                num(peak, 1),
                count(u64::from(inbound.account_lines)),
                num(left[lo], 1),
                hhmm((lo % 24) as u32 * 60),
                num(left[hi], 1),
                hhmm((hi % 24) as u32 * 60),
            );
        }
        let b = &p.busiest_hour;
        let _ = writeln!(
            out,
            "Busiest hour: day {} {}-{}: {} attempts, {} answered",
            b.day,
            hhmm(b.hour * 60),
            hhmm((b.hour * 60 + 60) % 1440),
            num(b.attempts, 0),
            num(b.connected, 0)
        );
        let _ =
            writeln!(out, "Minutes:      {} talking, {} holding lines", num(p.talk_minutes, 0), num(p.line_minutes, 0));
        if let Some(c) = &p.cost {
            let m = |v: f64| money(&c.currency, v);
            let _ = writeln!(
                out,
                "Cost:         {} minutes + {} lines ({} days) = {} · {} per answered lead",
                m(c.minutes_cost),
                m(c.lines_cost),
                p.days,
                m(c.total),
                m(c.per_connected_lead)
            );
        }
        out
    }
}
