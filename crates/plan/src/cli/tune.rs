//! `callgate tune`: search a scenario's policy space with the simulator.

use super::progress::ProgressBar;
use crate::tune::{frontier_chart, tune_file, TuneReport};
use crate::PlanError;
use std::io::IsTerminal as _;
use std::path::PathBuf;

/// Options of `callgate tune`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct TuneArgs {
    /// A scenario file with a [tune] section: what to vary ([[tune.knobs]] set = "…",
    /// values = […]), what to minimise and what must hold.
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write a chart of the candidates and the trade-off frontier (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the search of `args` (writing the chart if asked).
pub fn tune_report(args: &TuneArgs) -> Result<TuneReport, PlanError> {
    let label = format!("candidates of {}", args.scenario.display());
    let mut bar = ProgressBar::new(&label, !args.quiet && std::io::stderr().is_terminal());
    let report = tune_file(&args.scenario, &mut |share| bar.update(share));
    bar.finish();
    let report = report?;
    if let Some(path) = &args.svg {
        std::fs::write(path, frontier_chart(&report))
            .map_err(|e| PlanError::io(format!("{}: cannot write the chart: {e}", path.display())))?;
    }
    Ok(report)
}

/// What `callgate tune` prints.
pub fn tune_output(args: &TuneArgs) -> Result<String, PlanError> {
    let report = tune_report(args)?;
    if args.json {
        super::pretty(&report)
    } else {
        Ok(report.to_text())
    }
}
