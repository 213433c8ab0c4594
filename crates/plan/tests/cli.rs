//! The commands end to end, parsed by clap exactly as the `callgate` binary wires them
//! (`callgate plan …`, `callgate simulate …`), down to what they print.

use callgate_plan::cli::{plan_output, simulate_output, tune_output, PlanCommand, SimulateArgs, TuneArgs};
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
    Tune(TuneArgs),
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
fn plan_campaign_with_inbound_finishes_later_and_says_what_inbound_leaves() {
    let base = "plan campaign --leads 5000 --connect-rate 0.3 --talk 3m --ring 30s --retries 2 --lines 10 \
                --reserve 3 --cps 1 --window 09:00-17:00 --json";
    let alone = json(base);
    // 40 calls an hour of 6 minutes from 09:00 to 17:00 (4 E), none at night.
    let profile = "0,0,0,0,0,0,0,0,0,40,40,40,40,40,40,40,40,0,0,0,0,0,0,0";
    let shared = json(&format!("{base} --inbound-calls-per-hour {profile} --inbound-aht 6m"));
    let left = shared["lines_left_by_hour"].as_array().unwrap();
    assert_eq!(left.len(), 24);
    assert!(close(&left[3], 7.0, 1e-9), "{left:?}");
    assert!(left[10].as_f64().unwrap() < 6.5 && left[10].as_f64().unwrap() > 5.0, "{left:?}");
    assert!(shared["dialing_hours"].as_f64().unwrap() > alone["dialing_hours"].as_f64().unwrap());
    assert!(alone.get("lines_left_by_hour").is_none());
    let text = plan(&format!("{} --inbound-calls-per-hour 40 --inbound-aht 6m", base.replace(" --json", "")));
    assert!(text.contains("Inbound:      up to 4.0 erlangs on the 10 lines"), "{text}");
    // A scenario's arrivals give the same profile.
    let dir = std::env::temp_dir().join(format!("callgate-plan-inbound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("inbound.toml");
    std::fs::write(
        &file,
        format!(
            "[[classes]]\nname = \"inbound\"\npriority = 50\n[[pools]]\nname = \"lines\"\nlimit = 10\n\
             [[flows]]\nname = \"support\"\npools = [\"lines\"]\nclass = \"inbound\"\n[sim]\nduration = \"24h\"\n\
             [[arrivals]]\nflow = \"support\"\nrate = [{profile}]\nhold = {{ dist = \"exp\", mean = \"6m\" }}\n"
        ),
    )
    .unwrap();
    let from_file = json(&format!("{base} --inbound-scenario {}", file.display()));
    assert_eq!(from_file["lines_left_by_hour"], shared["lines_left_by_hour"]);
    assert_eq!(from_file["dialing_hours"], shared["dialing_hours"]);
    std::fs::remove_dir_all(&dir).unwrap();
    // Half an inbound description is an error naming the missing flag.
    let Command::Plan(cmd) = parse(&format!("{base} --inbound-calls-per-hour 40")).unwrap() else { panic!() };
    assert!(plan_output(&cmd).unwrap_err().message.contains("--inbound-aht"));
    assert!(parse(&format!("{base} --inbound-calls-per-hour 40,x --inbound-aht 6m")).is_err());
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

#[test]
fn tune_prints_the_best_policy_as_a_diff_and_writes_the_frontier() {
    let dir = std::env::temp_dir().join(format!("callgate-plan-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("loss.toml");
    std::fs::write(
        &file,
        "[[classes]]\nname = \"inbound\"\npriority = 50\n[[pools]]\nname = \"lines\"\nlimit = 4\n[[flows]]\n\
         name = \"support\"\npools = [\"lines\"]\nclass = \"inbound\"\n[sim]\ncalls = 2000\n[[arrivals]]\n\
         flow = \"support\"\nrate = \"60/h\"\nhold = { dist = \"exp\", mean = \"3m\" }\n[tune]\nseeds = 2\n\
         max_lost_share = 0.05\nminimize = \"lost\"\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [2, 4, 6]\n",
    )
    .unwrap();
    let svg = dir.join("frontier.svg");
    let line = format!("tune {} --quiet --svg {}", file.display(), svg.display());
    let Command::Tune(args) = parse(&line).unwrap() else { panic!() };
    let text = tune_output(&args).unwrap();
    assert!(text.contains("3 candidates × 2 seeds"), "{text}");
    assert!(text.contains("Best: pools.lines.limit = 6"), "{text}");
    assert!(text.contains("+limit = 6"), "{text}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let json: serde_json::Value =
        serde_json::from_str(&tune_output(&TuneArgs { json: true, svg: None, ..args }).unwrap()).unwrap();
    assert_eq!(json["best"], 2);
    assert_eq!(json["candidates"].as_array().unwrap().len(), 3);
    // The same file runs as a plain scenario: [tune] is tune's.
    let Command::Simulate(sim) = parse(&format!("simulate {} --quiet", file.display())).unwrap() else { panic!() };
    assert!(simulate_output(&sim).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(parse("tune").is_err(), "a scenario is required");
}
