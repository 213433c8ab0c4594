//! `callgate simulate`: run scenarios through the real ledger, report, chart, compare.

use super::parse_duration_ms;
use super::progress::ProgressBar;
use crate::sim::{chart, compare_text, run, Report, RunOptions, Scenario};
use crate::PlanError;
use std::io::IsTerminal as _;
use std::path::PathBuf;

/// Runs longer than this many callers get a progress bar (when stderr is a terminal).
const PROGRESS_FROM_CALLS: f64 = 200_000.0;

/// Options of `callgate simulate`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct SimulateArgs {
    /// Scenario files: a callgate config plus [sim], [[arrivals]], [[sim.campaigns]] and
    /// [pricing]. Several are compared side by side.
    #[arg(value_name = "SCENARIO")]
    pub scenarios: Vec<PathBuf>,
    /// Scenarios to compare side by side (with the positional ones); with the same seed
    /// every policy meets exactly the same callers.
    #[arg(long, num_args = 1.., value_name = "SCENARIO")]
    pub compare: Vec<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write a chart of lines in use, callers waiting and utilization over time (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Use this seed instead of the scenarios' own.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Simulate this many callers (replaces the scenarios' duration and calls).
    #[arg(long)]
    pub calls: Option<u64>,
    /// Simulate this long, e.g. 24h (replaces the scenarios' duration and calls).
    #[arg(long, value_parser = parse_duration_ms)]
    pub duration: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Only check the scenario files (every problem with its line and field) and say what
    /// each holds; run nothing.
    #[arg(long)]
    pub check: bool,
}

/// Runs the scenarios of `args` and returns the reports (writing the chart if asked).
pub fn simulate_reports(args: &SimulateArgs) -> Result<Vec<Report>, PlanError> {
    let paths: Vec<&PathBuf> = args.scenarios.iter().chain(&args.compare).collect();
    if paths.is_empty() {
        return Err(PlanError::input("give a scenario file (see examples/), or several with --compare"));
    }
    let scenarios = paths.iter().map(|p| Scenario::from_file(p)).collect::<Result<Vec<_>, _>>()?;
    let options = RunOptions { seed: args.seed, calls: args.calls, duration_ms: args.duration };
    let terminal = std::io::stderr().is_terminal();
    let mut reports = Vec::with_capacity(scenarios.len());
    for sc in &scenarios {
        let calls = match (args.calls, args.duration) {
            (Some(c), _) => c as f64,
            _ => sc.expected_calls(),
        };
        let mut bar = ProgressBar::new(&sc.name, !args.quiet && terminal && calls >= PROGRESS_FROM_CALLS);
        let report = run(sc, &options, &mut |done| bar.update(done));
        bar.finish();
        reports.push(report?);
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, chart(&reports))
            .map_err(|e| PlanError::io(format!("{}: cannot write the chart: {e}", path.display())))?;
    }
    Ok(reports)
}

/// What `callgate simulate` prints.
pub fn simulate_output(args: &SimulateArgs) -> Result<String, PlanError> {
    if args.check {
        let paths: Vec<&PathBuf> = args.scenarios.iter().chain(&args.compare).collect();
        if paths.is_empty() {
            return Err(PlanError::input("give a scenario file to check"));
        }
        let mut text = String::new();
        for p in paths {
            let sc = Scenario::from_file(p)?;
            text.push_str(&format!("{}: {}\n", p.display(), sc.summary()));
        }
        return Ok(text);
    }
    let reports = simulate_reports(args)?;
    if args.json {
        let value = match reports.as_slice() {
            [one] => serde_json::to_value(one),
            many => serde_json::to_value(serde_json::json!({ "scenarios": many })),
        }
        .map_err(|e| PlanError::io(format!("cannot write JSON: {e}")))?;
        let mut text = serde_json::to_string_pretty(&value).map_err(|e| PlanError::io(e.to_string()))?;
        text.push('\n');
        return Ok(text);
    }
    let mut text = match reports.as_slice() {
        [one] => one.to_text(),
        many => compare_text(many),
    };
    if let Some(path) = &args.svg {
        text.push_str(&format!("\nChart written to {}\n", path.display()));
    }
    Ok(text)
}
