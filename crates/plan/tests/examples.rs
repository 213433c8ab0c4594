//! Every scenario in `examples/` parses and runs, and its report holds together.

use callgate_plan::cli::{simulate_output, SimulateArgs};
use callgate_plan::sim::{chart, run, RunOptions, Scenario};
use std::path::PathBuf;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_parses_and_runs() {
    let files = examples();
    assert!(files.len() >= 3, "the examples folder needs at least three scenarios");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with('#'), "{}: start with a comment on what it teaches", path.display());
        let sc = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        // Short runs keep the test quick: the first 12 simulated hours, or 5,000 callers.
        let options = match sc.sim.duration_ms {
            Some(d) => RunOptions { duration_ms: Some(d.min(12 * 3_600_000)), ..Default::default() },
            None => RunOptions { calls: Some(5_000), ..Default::default() },
        };
        let r = run(&sc, &options, &mut |_| {}).unwrap();
        for f in &r.flows {
            assert_eq!(f.answered + f.abandoned + f.overflowed, f.offered, "{}: {}", path.display(), f.flow);
            assert!(f.granted_at_once + f.queued <= f.offered);
        }
        for p in &r.pools {
            assert!(p.peak_used <= u64::from(p.limit), "{}: {}", path.display(), p.pool);
        }
        assert!(!r.to_text().is_empty());
        assert!(chart(std::slice::from_ref(&r)).contains("</svg>"));
    }
}

#[test]
fn simulate_prints_a_table_and_writes_a_chart() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let svg = std::env::temp_dir().join(format!("callgate-plan-test-{}.svg", std::process::id()));
    let args = SimulateArgs {
        scenarios: vec![dir.join("support-day.toml")],
        svg: Some(svg.clone()),
        quiet: true,
        ..Default::default()
    };
    let text = simulate_output(&args).unwrap();
    println!("{text}");
    assert!(text.contains("Flows") && text.contains("Pools") && text.contains("Cost"));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("Lines in use"));
    let _ = std::fs::remove_file(&svg);
    // The same run again gives the same report, to the character.
    assert_eq!(
        simulate_output(&SimulateArgs { svg: None, ..args.clone() }).unwrap(),
        text.replace(&format!("\nChart written to {}\n", svg.display()), "",)
    );
}

#[test]
fn comparing_the_reserve_pair_shows_what_the_reserve_does() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let args = SimulateArgs {
        compare: vec![dir.join("reserve-none.toml"), dir.join("reserve-3.toml")],
        quiet: true,
        json: true,
        ..Default::default()
    };
    let v: serde_json::Value = serde_json::from_str(&simulate_output(&args).unwrap()).unwrap();
    let runs = v["scenarios"].as_array().unwrap();
    let support =
        |i: usize| runs[i]["flows"].as_array().unwrap().iter().find(|f| f["flow"] == "support").unwrap().clone();
    let campaign = |i: usize| runs[i]["campaigns"][0].clone();
    // The same callers in both runs.
    assert_eq!(support(0)["offered"], support(1)["offered"]);
    // The reserve gets inbound callers a line at once more often...
    assert!(support(1)["p_wait"].as_f64() < support(0)["p_wait"].as_f64());
    // ...and slows the campaign down.
    assert!(campaign(1)["attempts_per_hour"].as_f64() < campaign(0)["attempts_per_hour"].as_f64());
    let text = simulate_output(&SimulateArgs { json: false, ..args }).unwrap();
    println!("{text}");
    assert!(text.contains("reserve-none") && text.contains("reserve-3"));
}
