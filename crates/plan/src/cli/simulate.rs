//! `callgate simulate`: run scenarios through the real ledger, report, chart, compare.

use super::latency::{latency_report, simulated_latency, LatencyArgs, LatencyReport};
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
    /// A saved `GET /v1/calls/summary` answer: say how the simulated concurrency sits on
    /// the measured concurrency/turn-latency curve (with --p95-under).
    #[arg(long, value_name = "FILE")]
    pub latency_summary: Option<PathBuf>,
    /// The turn latency target for --latency-summary: p95 under this, e.g. 1500ms.
    #[arg(long, value_parser = parse_duration_ms)]
    pub p95_under: Option<u64>,
}

/// The measured curve of `--latency-summary`, if asked for (levels with fewer than 5
/// calls are not trusted, as `plan latency`'s default).
fn latency_curve(args: &SimulateArgs) -> Result<Option<LatencyReport>, PlanError> {
    match (&args.latency_summary, args.p95_under) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(PlanError::input("--latency-summary needs --p95-under (the target, e.g. 1500ms)")),
        (None, Some(_)) => Err(PlanError::input("--p95-under needs --latency-summary (a saved GET /v1/calls/summary)")),
        (Some(summary), Some(p95_under)) => {
            let curve = LatencyArgs { summary: summary.clone(), p95_under, min_calls: 5, json: false };
            latency_report(&curve)
                .map(Some)
                .map_err(|e| PlanError { message: format!("--latency-summary {}", e.message), ..e })
        }
    }
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
            text.push_str(&format!("{}: {}\n", p.display(), crate::tune::check_file(p)?));
        }
        return Ok(text);
    }
    let curve = latency_curve(args)?;
    let reports = simulate_reports(args)?;
    let latency: Vec<_> = reports.iter().map(|r| curve.as_ref().map(|c| simulated_latency(c, &r.pools))).collect();
    if args.json {
        let json_err = |e: serde_json::Error| PlanError::io(format!("cannot write JSON: {e}"));
        let mut values = Vec::with_capacity(reports.len());
        for (r, l) in reports.iter().zip(&latency) {
            let mut v = serde_json::to_value(r).map_err(json_err)?;
            if let (Some(l), Some(obj)) = (l, v.as_object_mut()) {
                obj.insert("latency".to_owned(), serde_json::to_value(l).map_err(json_err)?);
            }
            values.push(v);
        }
        let value = match values.len() {
            1 => values.remove(0),
            _ => serde_json::json!({ "scenarios": values }),
        };
        let mut text = serde_json::to_string_pretty(&value).map_err(|e| PlanError::io(e.to_string()))?;
        text.push('\n');
        return Ok(text);
    }
    let mut text = match reports.as_slice() {
        [one] => one.to_text(),
        many => compare_text(many),
    };
    for (r, l) in reports.iter().zip(&latency) {
        if let Some(l) = l {
            if reports.len() > 1 {
                text.push_str(&format!("\n{}:", r.scenario));
            }
            text.push_str(&l.to_text());
        }
    }
    if let Some(path) = &args.svg {
        text.push_str(&format!("\nChart written to {}\n", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm55() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/mm55-benchmark.toml")
    }

    #[test]
    fn a_run_is_placed_on_the_measured_curve() {
        let summary = std::env::temp_dir().join(format!("callgate-sim-latency-{}.json", std::process::id()));
        // p95 = 20 ms per concurrent call, measured from 1 to 50 calls: 900 ms holds up to 44.
        let levels: Vec<_> =
            (1..=50u32).map(|c| serde_json::json!({ "concurrency": c, "calls": 10, "turn_p95_ms": 20 * c })).collect();
        std::fs::write(&summary, serde_json::json!({ "latency_by_concurrency": levels }).to_string()).unwrap();
        let args = SimulateArgs {
            scenarios: vec![mm55()],
            calls: Some(3000),
            quiet: true,
            json: true,
            latency_summary: Some(summary.clone()),
            p95_under: Some(900),
            ..SimulateArgs::default()
        };
        let json = simulate_output(&args);
        let text = simulate_output(&SimulateArgs { json: false, ..args.clone() });
        let _ = std::fs::remove_file(&summary);
        let v: serde_json::Value = serde_json::from_str(&json.unwrap()).unwrap();
        let l = &v["latency"];
        assert_eq!((l["keeps_under"].as_u64(), l["first_over"].as_u64()), (Some(44), Some(45)), "{l}");
        let pool = &l["pools"][0];
        assert_eq!(pool["pool"], "agents");
        assert_eq!(pool["peak_concurrency"], v["pools"][0]["peak_used"]);
        let (over, unknown) = (pool["over_share"].as_f64().unwrap(), pool["not_measured_share"].as_f64().unwrap());
        assert!(over > 0.0 && over + unknown <= 1.0 + 1e-9, "{pool}");
        let not_measured: Vec<u64> =
            pool["not_measured"].as_array().unwrap().iter().filter_map(|x| x.as_u64()).collect();
        assert!(not_measured.iter().all(|&c| c > 50 && c <= 55), "{pool}");
        assert_eq!(unknown > 0.0, !not_measured.is_empty());
        let text = text.unwrap();
        assert!(text.contains("Turn latency (measured p95 under 900 ms)"), "{text}");
        assert!(text.contains("Up to 44 concurrent calls kept p95 turn latency under 900 ms"), "{text}");
        assert!(text.contains("Pool agents: simulated peak "), "{text}");
    }

    #[test]
    fn the_latency_flags_go_together_and_a_bad_file_names_the_flag() {
        let only_file = SimulateArgs {
            scenarios: vec![mm55()],
            latency_summary: Some("no-such-summary.json".into()),
            ..SimulateArgs::default()
        };
        let e = simulate_output(&only_file).unwrap_err();
        assert!(e.message.contains("--latency-summary needs --p95-under"), "{}", e.message);
        let only_target = SimulateArgs { scenarios: vec![mm55()], p95_under: Some(900), ..SimulateArgs::default() };
        let e = simulate_output(&only_target).unwrap_err();
        assert!(e.message.contains("--p95-under needs --latency-summary"), "{}", e.message);
        let missing = SimulateArgs { p95_under: Some(900), ..only_file };
        let e = simulate_output(&missing).unwrap_err();
        assert!(e.message.starts_with("--latency-summary no-such-summary.json: "), "{}", e.message);
    }
}
