//! `callgate plan campaign`: how long a campaign takes and what it costs.

use super::{parse_duration_secs, parse_share, Prices};
use crate::campaign::{parse_window, plan_campaign, CampaignInput, CampaignPlan};
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
    };
    let pricing = args.prices.resolve()?;
    let plan = plan_campaign(&input, pricing.as_ref())?;
    Ok(CampaignReportOut { input, account_lines: args.lines, reserve: args.reserve, plan })
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
