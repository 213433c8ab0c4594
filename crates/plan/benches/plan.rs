//! Benchmarks: one Erlang evaluation at 10,000 lines (target: well under a millisecond),
//! and the M/M/55 simulation of 1,000,000 calls through the real ledger (target: well
//! under a second on one core). Run with `cargo bench -p callgate-plan`; criterion's
//! "thrpt" line for `simulate/mm55` is calls simulated per second.

use callgate_plan::erlang::{erlang_b, fewest_lines, Target, Traffic};
use callgate_plan::sim::{run, RunOptions, Scenario};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn erlang(c: &mut Criterion) {
    let mut g = c.benchmark_group("erlang");
    // A load close to the lines is the hardest case for every formula.
    let c_traffic = Traffic::new(9_900.0, 180.0, None).unwrap();
    let a_traffic = Traffic::new(10_000.0, 180.0, Some(120.0)).unwrap();
    g.bench_function("b_10000_lines", |b| b.iter(|| erlang_b(black_box(10_000), black_box(9_900.0))));
    g.bench_function("c_10000_lines", |b| b.iter(|| black_box(&c_traffic).evaluate(black_box(10_000), 20.0)));
    g.bench_function("a_10000_lines", |b| b.iter(|| black_box(&a_traffic).evaluate(black_box(10_000), 20.0)));
    g.bench_function("fewest_lines_sl_10000_erlangs", |b| {
        let t = Traffic::new(10_000.0, 180.0, None).unwrap();
        b.iter(|| fewest_lines(black_box(&t), Target::ServiceLevel { level: 0.8, within_s: 20.0 }))
    });
    g.finish();
}

fn simulate(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mm55-benchmark.toml");
    let scenario = Scenario::from_file(std::path::Path::new(path)).unwrap();
    let calls = 1_000_000u64;
    let options = RunOptions { calls: Some(calls), ..RunOptions::default() };
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(calls));
    g.bench_function("mm55_1m_calls", |b| b.iter(|| run(black_box(&scenario), &options, &mut |_| {}).unwrap()));
    g.finish();
}

criterion_group!(benches, erlang, simulate);
criterion_main!(benches);
