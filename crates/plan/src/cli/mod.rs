//! The command line of planning: `callgate plan lines|campaign|latency`, `callgate simulate`
//! and `callgate tune`.
//!
//! The `callgate` binary wires these in: [`PlanCommand`] as the `plan` subcommands with
//! [`run_plan`], and [`SimulateArgs`] as `simulate` with [`run_simulate`]. Both print
//! their result on stdout (JSON with `--json`) and return an error message for the
//! binary to print before exiting non-zero. The `*_report` / `*_output` functions build
//! the same results without printing, for tests and other callers.

mod campaign;
mod latency;
mod lines;
mod progress;
mod simulate;
mod tune;

pub use campaign::{campaign_report, CampaignArgs, CampaignReportOut};
pub use latency::{
    latency_report, simulated_latency, LatencyArgs, LatencyLevel, LatencyReport, PoolLatency, SimLatency,
};
pub use lines::{lines_report, LinesArgs, LinesReport, LinesRow};
pub use simulate::{simulate_output, simulate_reports, SimulateArgs};
pub use tune::{tune_output, tune_report, TuneArgs};

use crate::cost::Pricing;
use crate::PlanError;
use callgate_core::duration::parse_duration;
use std::io::Write as _;
use std::path::PathBuf;

/// `callgate plan …`.
#[derive(clap::Subcommand, Clone, Debug, PartialEq)]
pub enum PlanCommand {
    /// How many lines a load needs, or what a number of lines gives callers (Erlang B, C
    /// and, with --patience, A), with the monthly cost of each.
    Lines(LinesArgs),
    /// How long an outbound campaign takes on your lines, its busiest hour and its cost.
    Campaign(CampaignArgs),
    /// How many concurrent calls keep p95 turn latency under a target, from what Vapi
    /// measured (a saved GET /v1/calls/summary).
    Latency(LatencyArgs),
}

/// Prices given on the command line (they override a --pricing file).
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct Prices {
    /// Price of a minute of call, all parties together (replaces the per-minute prices
    /// of a --pricing file).
    #[arg(long, value_name = "PRICE")]
    pub per_minute: Option<f64>,
    /// Price of a line (one concurrent call) per month.
    #[arg(long, value_name = "PRICE")]
    pub per_line_month: Option<f64>,
    /// Read prices from the [pricing] section of this TOML file (e.g. a scenario).
    #[arg(long, value_name = "FILE")]
    pub pricing: Option<PathBuf>,
}

impl Prices {
    /// The prices to use, or `None` when none were given.
    pub fn resolve(&self) -> Result<Option<Pricing>, PlanError> {
        if self.per_minute.is_none() && self.per_line_month.is_none() && self.pricing.is_none() {
            return Ok(None);
        }
        let mut pricing = match &self.pricing {
            Some(path) => crate::cost::pricing_from_file(path)?,
            None => Pricing::default(),
        };
        if let Some(p) = self.per_minute {
            pricing = Pricing {
                platform_per_min: 0.0,
                model_per_min: 0.0,
                voice_per_min: 0.0,
                transcription_per_min: 0.0,
                telephony_per_min: 0.0,
                per_minute: p,
                ..pricing
            };
        }
        if let Some(p) = self.per_line_month {
            pricing.per_line_month = p;
        }
        if let Some((field, message)) = pricing.problems().into_iter().next() {
            return Err(PlanError::input(format!("{field}: {message}")));
        }
        Ok(Some(pricing))
    }
}

/// What `callgate plan …` prints.
pub fn plan_output(cmd: &PlanCommand) -> Result<String, PlanError> {
    match cmd {
        PlanCommand::Lines(args) => {
            let report = lines_report(args)?;
            if args.json {
                pretty(&report)
            } else {
                Ok(report.to_text())
            }
        }
        PlanCommand::Campaign(args) => {
            let report = campaign_report(args)?;
            if args.json {
                pretty(&report)
            } else {
                Ok(report.to_text())
            }
        }
        PlanCommand::Latency(args) => {
            let report = latency_report(args)?;
            if args.json {
                pretty(&report)
            } else {
                Ok(report.to_text())
            }
        }
    }
}

/// Runs `callgate plan …`: prints the result on stdout, or returns the error to print.
pub fn run_plan(cmd: PlanCommand) -> Result<(), String> {
    let text = plan_output(&cmd).map_err(|e| e.message)?;
    print_out(&text)
}

/// Runs `callgate simulate …`: prints the report on stdout (and writes the chart), or
/// returns the error to print.
pub fn run_simulate(args: SimulateArgs) -> Result<(), String> {
    let text = simulate_output(&args).map_err(|e| e.message)?;
    print_out(&text)
}

/// Runs `callgate tune …`: prints the best policy and the frontier on stdout (and writes
/// the chart), or returns the error to print.
pub fn run_tune(args: TuneArgs) -> Result<(), String> {
    let text = tune_output(&args).map_err(|e| e.message)?;
    print_out(&text)
}

fn print_out(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| format!("cannot write: {e}"))
}

/// Pretty JSON ending in a newline.
fn pretty<T: serde::Serialize>(value: &T) -> Result<String, PlanError> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| PlanError::io(format!("cannot write JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// A duration on the command line (`20s`, `3m`, `1h30m`) in seconds.
pub(crate) fn parse_duration_secs(text: &str) -> Result<f64, String> {
    parse_duration(text).map(|d| d.as_secs_f64()).map_err(|e| e.to_string())
}

/// A duration on the command line in whole milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    parse_duration(text).map(|d| d.as_millis() as u64).map_err(|e| e.to_string())
}

/// A share: `0.8` or `80%`.
pub(crate) fn parse_share(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{text}` is not a share (write e.g. 0.8 or 80%)"))?;
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{text}` is not a share between 0 and 1 (or 0% and 100%)"))
    }
}
