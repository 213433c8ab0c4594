//! Runs a simulation once, for profilers: the M/M/55 benchmark scenario
//! (`examples/mm55-benchmark.toml`) by default. Build with
//! `cargo build --release -p callgate-plan --example mm55`, then for instance
//! `valgrind --tool=callgrind target/release/examples/mm55 100000` (instruction counts are
//! repeatable on a busy machine, unlike times). Arguments: the number of callers (0: the
//! scenario's own `calls` or `duration`), then optionally another scenario file, then
//! optionally `--debug`. Prints the report as JSON (with `--debug`, every field of it,
//! the chart's series too), so that a change of result shows.

use callgate_plan::sim::{run, RunOptions, Scenario};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args.next().map_or(100_000, |a| a.parse().expect("calls: a whole number"));
    let path = args
        .next()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mm55-benchmark.toml").to_owned());
    let scenario = Scenario::from_file(std::path::Path::new(&path)).expect("the scenario");
    let options = RunOptions { calls: (calls > 0).then_some(calls), ..RunOptions::default() };
    let report = run(&scenario, &options, &mut |_| {}).expect("the run");
    if args.next().as_deref() == Some("--debug") {
        println!("{report:#?}");
    } else {
        println!("{}", serde_json::to_string(&report).expect("json"));
    }
}
