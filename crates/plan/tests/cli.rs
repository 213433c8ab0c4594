//! The commands end to end, parsed by clap exactly as the `callgate` binary wires them
//! (`callgate plan …`, `callgate simulate …`), down to what they print.

use callgate_plan::cli::{plan_output, simulate_output, PlanCommand, SimulateArgs};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "callgate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    #[command(subcommand)]
    Plan(PlanCommand),
    Simulate(SimulateArgs),
}

fn parse(line: &str) -> Result<Command, clap::Error> {
    Cli::try_parse_from(std::iter::once("callgate").chain(line.split_whitespace())).map(|c| c.command)
}

fn plan(line: &str) -> String {
    match parse(line).unwrap_or_else(|e| panic!("{line}: {e}")) {
        Command::Plan(cmd) => plan_output(&cmd).unwrap_or_else(|e| panic!("{line}: {e}")),
        other => panic!("{other:?}"),
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(&plan(line)).unwrap()
}

fn close(v: &serde_json::Value, want: f64, tol: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() <= tol)
}

#[test]
fn plan_lines_prints_the_erlang_c_figures_as_json() {
    // The issue's own example.
    let v = json("plan lines --erlangs 10 --lines 14 --aht 180s --answer-within 20s --json");
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
    assert_eq!(v["lines"], 14);
    assert_eq!(v["model"], "erlang_c");
    assert!(close(&v["erlangs"], 10.0, 1e-12));
    assert!(close(&v["p_wait"], 0.1741, 5e-4));
    assert!(close(&v["service_level"], 0.8884, 5e-4));
    assert!(close(&v["occupancy"], 10.0 / 14.0, 1e-12));
    assert!(v["asa_s"].as_f64().is_some() && v["blocking"].as_f64().is_some());
    assert!(v.get("p_abandon").is_none(), "no patience, no abandonment");
    assert!(v.get("recommended_lines").is_none());
    assert!(v["rows"].as_array().is_some_and(|r| r.iter().any(|row| row["lines"] == 14)));
}

#[test]
fn plan_lines_with_patience_prints_the_erlang_a_figures() {
    let v = json("plan lines --erlangs 10 --lines 14 --aht 3m --patience 5m --json");
    assert_eq!(v["model"], "erlang_a");
    // pyworkforce's Erlang A regression values for this system (see the unit tests).
    assert!(close(&v["p_abandon"], 0.013984, 5e-7));
    assert!(close(&v["p_wait"], 0.14526, 5e-6));
}

#[test]
fn plan_lines_with_a_target_recommends_the_fewest_lines() {
    let v = json("plan lines --calls-per-hour 200 --aht 3m --target-sl 80% --json");
    assert_eq!(v["recommended_lines"], 14);
    assert_eq!(v["lines"], 14);
    let rows = v["rows"].as_array().unwrap();
    let sl = |n: u64| rows.iter().find(|r| r["lines"] == n).unwrap()["service_level"].as_f64().unwrap();
    assert!(sl(13) < 0.8 && sl(14) >= 0.8);
    let v = json("plan lines --erlangs 10 --target-blocking 0.01 --json");
    assert_eq!(v["recommended_lines"], 18);
    let v = json("plan lines --erlangs 10 --patience 1m --target-abandon 0.02 --target-sl 0.9 --json");
    let n = v["recommended_lines"].as_u64().unwrap();
    assert!(v["p_abandon"].as_f64().unwrap() <= 0.02 && v["service_level"].as_f64().unwrap() >= 0.9, "{n}");
}

#[test]
fn plan_lines_prints_a_table_with_costs_when_prices_are_given() {
    let text = plan(
        "plan lines --erlangs 10 --aht 3m --target-sl 0.8 --per-minute 0.12 --per-line-month 10 --hours-per-day 8",
    );
    println!("{text}");
    assert!(text.contains("Recommended: 14 lines"));
    assert!(text.contains("<- recommended"));
    assert!(text.contains("total/month"));
    assert!(text.contains("Lines or a waiting room?"));
}

#[test]
fn plan_lines_refuses_what_it_cannot_answer() {
    for line in [
        "plan lines --erlangs 10",
        "plan lines --erlangs 10 --lines 0",
        "plan lines --erlangs=-3 --lines 4",
        "plan lines --erlangs 10 --target-abandon 0.05",
    ] {
        let cmd = parse(line).unwrap();
        let Command::Plan(cmd) = cmd else { panic!() };
        let err = plan_output(&cmd).unwrap_err();
        assert!(!err.message.is_empty(), "{line}");
    }
    for line in [
        "plan lines --lines 4",
        "plan lines --erlangs 10 --calls-per-hour 20 --lines 3",
        "plan lines --erlangs 10 --aht forever --lines 3",
        "plan lines --erlangs 10 --target-sl 1.5",
    ] {
        assert!(parse(line).is_err(), "{line}");
    }
}

#[test]
fn plan_campaign_prints_duration_pace_busiest_hour_and_cost() {
    let text = plan(
        "plan campaign --leads 5000 --connect-rate 0.3 --talk 3m --ring 30s --retries 2 \
         --lines 10 --cps 1 --window 09:00-17:00 --per-minute 0.1 --per-line-month 30",
    );
    println!("{text}");
    assert!(text.contains("480 attempts/h"));
    assert!(text.contains("Busiest hour: day 1 09:00-10:00"));
    assert!(text.contains("Cost:"));
    let v = json("plan campaign --leads 5000 --lines 10 --reserve 3 --json");
    assert_eq!(v["input"]["lines"], 7);
    assert_eq!(v["paced_by"], "lines");
    assert!(v["connected"].as_f64().unwrap() > 0.0);
}

#[test]
fn simulate_parses_scenarios_and_comparisons() {
    let Command::Simulate(args) = parse("simulate a.toml --compare b.toml c.toml --json --svg out.svg").unwrap() else {
        panic!()
    };
    assert_eq!(args.scenarios.len(), 1);
    assert_eq!(args.compare.len(), 2);
    assert!(args.json);
    let Command::Simulate(args) = parse("simulate --compare b.toml c.toml --seed 3 --duration 2h").unwrap() else {
        panic!()
    };
    assert_eq!(args.duration, Some(7_200_000));
    assert_eq!(args.seed, Some(3));
    let missing = simulate_output(&SimulateArgs::default()).unwrap_err();
    assert!(missing.message.contains("scenario"));
    let absent = simulate_output(&SimulateArgs { scenarios: vec!["/nonexistent.toml".into()], ..Default::default() })
        .unwrap_err();
    assert!(absent.message.contains("/nonexistent.toml"));
}
