//! `callgate plan lines`: what a number of lines gives callers, or the fewest lines for
//! a target, with the table around it and, given prices, the monthly cost of each.

use super::{parse_duration_secs, parse_share, Prices};
use crate::cost::MonthlyCost;
use crate::erlang::{fewest_lines, LineMetrics, Target, Traffic};
use crate::text::{count, money, num, pct, pct2, secs, Table};
use crate::PlanError;
use serde::Serialize;
use std::fmt::Write as _;

/// Options of `callgate plan lines`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct LinesArgs {
    /// Offered load in erlangs (calls in progress on average if nobody were turned away).
    #[arg(long, conflicts_with = "calls_per_hour", required_unless_present = "calls_per_hour")]
    pub erlangs: Option<f64>,
    /// Calls arriving per hour (the load is this times --aht).
    #[arg(long)]
    pub calls_per_hour: Option<f64>,
    /// Mean call length, e.g. 3m or 180s.
    #[arg(long, default_value = "3m", value_parser = parse_duration_secs)]
    pub aht: f64,
    /// Evaluate this many lines.
    #[arg(long)]
    pub lines: Option<u32>,
    /// Target: this share of callers answered within --answer-within (0.8 or 80%).
    #[arg(long, value_parser = parse_share)]
    pub target_sl: Option<f64>,
    /// Target: at most this share of callers hear busy, with no waiting room.
    #[arg(long, value_parser = parse_share)]
    pub target_blocking: Option<f64>,
    /// Target: at most this share of callers hang up while waiting (needs --patience).
    #[arg(long, value_parser = parse_share)]
    pub target_abandon: Option<f64>,
    /// The service level counts callers answered within this.
    #[arg(long, default_value = "20s", value_parser = parse_duration_secs)]
    pub answer_within: f64,
    /// Mean patience of a waiting caller (exponential): use Erlang A instead of Erlang C.
    #[arg(long, value_parser = parse_duration_secs)]
    pub patience: Option<f64>,
    /// Prices for the cost columns.
    #[command(flatten)]
    pub prices: Prices,
    /// Hours a day the load lasts, for monthly minutes.
    #[arg(long, default_value_t = 24.0)]
    pub hours_per_day: f64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One row of the table: the figures for a number of lines, and their monthly cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinesRow {
    /// The figures.
    #[serde(flatten)]
    pub metrics: LineMetrics,
    /// With prices: the month's cost of these lines and the minutes they carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<MonthlyCost>,
}

/// What `plan lines` prints (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinesReport {
    /// `erlang_c` (no patience) or `erlang_a`.
    pub model: &'static str,
    /// Offered load.
    pub erlangs: f64,
    /// Arrivals per hour.
    pub calls_per_hour: f64,
    /// Mean call length (seconds).
    pub aht_s: f64,
    /// The service-level threshold (seconds).
    pub answer_within_s: f64,
    /// Mean patience (seconds), for Erlang A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience_s: Option<f64>,
    /// The evaluated number of lines (`--lines`), else the recommended one.
    pub lines: u32,
    /// Share hearing busy with these lines and no waiting room (Erlang B).
    pub blocking: f64,
    /// Share who wait, with a waiting room.
    pub p_wait: f64,
    /// Mean wait of answered callers (seconds); null when the line grows without bound.
    pub asa_s: Option<f64>,
    /// Mean wait over all callers (seconds).
    pub mean_wait_s: Option<f64>,
    /// Share of all callers answered within `answer_within_s`.
    pub service_level: f64,
    /// Share of line time busy.
    pub occupancy: f64,
    /// Share hanging up while waiting (Erlang A).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_abandon: Option<f64>,
    /// `(lines - erlangs) / √erlangs`: the safety margin in square-root staffing terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// The fewest lines meeting every target given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended_lines: Option<u32>,
    /// The targets given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// With a service-level target: the fewest lines that answer that share at once with
    /// no waiting room (the others hear busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_queue_lines: Option<u32>,
    /// With prices: the month's cost at `lines`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<MonthlyCost>,
    /// With prices: the row with the lowest monthly total (more lines, or callers waiting
    /// longer on paid minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cheapest_lines: Option<u32>,
    /// The table around `lines` (and the recommendation).
    pub rows: Vec<LinesRow>,
    /// Currency symbol of the costs.
    #[serde(skip)]
    currency: String,
}

/// Computes what `plan lines` prints.
pub fn lines_report(args: &LinesArgs) -> Result<LinesReport, PlanError> {
    let traffic = match (args.erlangs, args.calls_per_hour) {
        (Some(e), _) => Traffic::new(e, args.aht, args.patience)?,
        (None, Some(c)) => Traffic::from_rate(c, args.aht, args.patience)?,
        (None, None) => return Err(PlanError::input("give the load: --erlangs A, or --calls-per-hour X with --aht")),
    };
    if !args.answer_within.is_finite() || args.answer_within < 0.0 {
        return Err(PlanError::input("--answer-within must be 0s or more"));
    }
    if !(args.hours_per_day > 0.0 && args.hours_per_day <= 24.0) {
        return Err(PlanError::input("--hours-per-day must be more than 0 and at most 24"));
    }
    let mut targets = Vec::new();
    if let Some(level) = args.target_sl {
        targets.push(Target::ServiceLevel { level, within_s: args.answer_within });
    }
    if let Some(max) = args.target_blocking {
        targets.push(Target::Blocking { max });
    }
    if let Some(max) = args.target_abandon {
        targets.push(Target::Abandon { max });
    }
    if targets.is_empty() && args.lines.is_none() {
        return Err(PlanError::input(
            "say what to answer: --lines N to evaluate, or a target (--target-sl 0.8, \
             --target-blocking 0.01, --target-abandon 0.05)",
        ));
    }
    if args.lines == Some(0) {
        return Err(PlanError::input("--lines must be at least 1"));
    }
    if args.lines.is_some_and(|n| n > crate::erlang::MAX_LINES) {
        return Err(PlanError::input(format!("--lines must be at most {}", crate::erlang::MAX_LINES)));
    }
    let mut recommended = None;
    for t in &targets {
        let n = fewest_lines(&traffic, *t)?;
        recommended = Some(recommended.map_or(n, |r: u32| r.max(n)));
    }
    let no_queue_lines = match args.target_sl {
        Some(level) => Some(fewest_lines(&traffic, Target::Blocking { max: 1.0 - level })?),
        None => None,
    };
    let pricing = args.prices.resolve()?;
    let focus = args.lines.or(recommended).unwrap_or(1);
    let within = args.answer_within;
    let cost_of = |m: &LineMetrics| {
        pricing.as_ref().map(|p| {
            let carried = traffic.erlangs * m.p_abandon.map_or(1.0, |a| 1.0 - a);
            let waiting = traffic.erlangs * m.mean_wait_s.unwrap_or(0.0) / traffic.aht_s;
            MonthlyCost::new(p, m.lines, carried.min(f64::from(m.lines)), waiting, args.hours_per_day)
        })
    };
    let low = focus.min(recommended.unwrap_or(focus)).saturating_sub(3).max(1);
    let high = focus.max(recommended.unwrap_or(focus)).saturating_add(3);
    let rows: Vec<LinesRow> = (low..=high)
        .map(|n| {
            let metrics = traffic.evaluate(n, within);
            LinesRow { cost: cost_of(&metrics), metrics }
        })
        .collect();
    let m = traffic.evaluate(focus, within);
    let cheapest_lines = rows
        .iter()
        .filter_map(|r| r.cost.map(|c| (r.metrics.lines, c.total)))
        .fold(None, |best: Option<(u32, f64)>, (n, t)| match best {
            Some((_, bt)) if bt <= t => best,
            _ => Some((n, t)),
        })
        .map(|(n, _)| n);
    Ok(LinesReport {
        model: if traffic.patience_s.is_some() { "erlang_a" } else { "erlang_c" },
        erlangs: traffic.erlangs,
        calls_per_hour: traffic.calls_per_hour(),
        aht_s: traffic.aht_s,
        answer_within_s: within,
        patience_s: traffic.patience_s,
        lines: focus,
        blocking: m.blocking,
        p_wait: m.p_wait,
        asa_s: m.asa_s,
        mean_wait_s: m.mean_wait_s,
        service_level: m.service_level,
        occupancy: m.occupancy,
        p_abandon: m.p_abandon,
        beta: (traffic.erlangs > 0.0).then(|| (f64::from(focus) - traffic.erlangs) / traffic.erlangs.sqrt()),
        recommended_lines: recommended,
        targets,
        no_queue_lines,
        cost: cost_of(&m),
        cheapest_lines,
        rows,
        currency: pricing.map_or_else(|| "$".to_owned(), |p| p.currency),
    })
}

fn target_text(t: &Target) -> String {
    match *t {
        Target::ServiceLevel { level, within_s } => format!("{} answered within {}", pct(level), secs(within_s)),
        Target::Blocking { max } => format!("at most {} hearing busy without a waiting room", pct2(max)),
        Target::Abandon { max } => format!("at most {} hanging up", pct2(max)),
    }
}

impl LinesReport {
    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let within = secs(self.answer_within_s);
        let _ = writeln!(
            out,
            "Offered load: {} erlangs = {} calls/h × {} calls",
            num(self.erlangs, 2),
            num(self.calls_per_hour, 1),
            secs(self.aht_s)
        );
        let model = match self.patience_s {
            Some(p) => format!("Erlang A (callers hang up after {} on average)", secs(p)),
            None => "Erlang C (callers wait as long as it takes)".to_owned(),
        };
        let _ = writeln!(out, "Model: {model}; blocking is Erlang B (no waiting room)\n");
        if let Some(n) = self.recommended_lines {
            let goals: Vec<String> = self.targets.iter().map(target_text).collect();
            let _ =
                writeln!(out, "Recommended: {} lines, the fewest with {}", count(u64::from(n)), goals.join(" and "));
        }
        let asa = self.asa_s.map_or_else(
            || "no finite wait (the load reaches the lines)".to_owned(),
            |a| format!("answered after {} on average", secs(a)),
        );
        let _ = write!(
            out,
            "{} lines: {} of callers wait, {asa}, {} within {within}, lines {} busy",
            count(u64::from(self.lines)),
            pct(self.p_wait),
            pct(self.service_level),
            pct(self.occupancy)
        );
        if let Some(a) = self.p_abandon {
            let _ = write!(out, ", {} hang up", pct2(a));
        }
        let _ = writeln!(out, ".");
        let _ = writeln!(
            out,
            "Without a waiting room the same lines turn away {} of callers (busy signal).",
            pct2(self.blocking)
        );
        if let Some(b) = self.beta {
            let _ = writeln!(out, "Safety margin: β = {b:.2} in lines = erlangs + β·√erlangs.");
        }
        let mut headers: Vec<String> = vec![
            "lines".into(),
            "busy, no queue".into(),
            "P(wait)".into(),
            "ASA".into(),
            format!("SL {within}"),
            "occupancy".into(),
        ];
        if self.p_abandon.is_some() {
            headers.push("hang up".into());
        }
        let priced = self.rows.iter().any(|r| r.cost.is_some());
        if priced {
            headers.extend(["lines/month".into(), "minutes/month".into(), "total/month".into()]);
        }
        headers.push(String::new());
        let marks = headers.len() - 1;
        let mut t = Table::new(&headers).left(marks);
        for r in &self.rows {
            let m = &r.metrics;
            let mark = if Some(m.lines) == self.recommended_lines {
                " <- recommended"
            } else if m.lines == self.lines {
                " <-"
            } else {
                ""
            };
            let mut row = vec![
                format!("{}", m.lines),
                pct2(m.blocking),
                pct(m.p_wait),
                m.asa_s.map_or_else(|| "∞".to_owned(), secs),
                pct(m.service_level),
                pct(m.occupancy),
            ];
            if let Some(a) = m.p_abandon {
                row.push(pct2(a));
            }
            if let Some(c) = &r.cost {
                row.extend([
                    money(&self.currency, c.lines_cost),
                    money(&self.currency, c.minutes_cost + c.waiting_cost),
                    money(&self.currency, c.total),
                ]);
            }
            row.push(mark.trim_start().to_owned());
            t.row(row);
        }
        out.push('\n');
        out.push_str(&t.render(2));
        if let (Some(n), Some(nq), Some(level)) = (self.recommended_lines, self.no_queue_lines, self.sl_target()) {
            let _ = writeln!(
                out,
                "\nLines or a waiting room? With a waiting room, {} lines meet the target. Without one, \
                 answering {} of callers at once takes {} lines, and the other {} hear busy.",
                count(u64::from(n)),
                pct(level),
                count(u64::from(nq)),
                pct(1.0 - level),
            );
        }
        if let Some(n) = self.cheapest_lines {
            let row = self.rows.iter().find(|r| r.metrics.lines == n).and_then(|r| r.cost);
            let _ = writeln!(
                out,
                "\nCheapest in this table: {} lines at {} a month (lines, call minutes and waiting minutes).",
                count(u64::from(n)),
                money(&self.currency, row.map_or(0.0, |c| c.total))
            );
        }
        if priced {
            let _ = writeln!(
                out,
                "Each extra line costs {} a month.",
                money(
                    &self.currency,
                    self.rows
                        .first()
                        .and_then(|r| r.cost)
                        .map_or(0.0, |c| { c.lines_cost / f64::from(c.lines.max(1)) })
                )
            );
        }
        out
    }

    fn sl_target(&self) -> Option<f64> {
        self.targets.iter().find_map(|t| match t {
            Target::ServiceLevel { level, .. } => Some(*level),
            _ => None,
        })
    }
}
