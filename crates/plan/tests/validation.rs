//! The simulator against the formulas: M/M/N (Erlang C), M/M/N+M (Erlang A) and M/M/N/N
//! (Erlang B), each driven through the real ledger.
//!
//! Every check runs R independent replications (seeds 1..=R, each with its own warm-up),
//! takes each replication's estimate, and builds a 99% confidence interval from their
//! mean and standard deviation with Student's t (R - 1 degrees of freedom). The formula's
//! value must fall inside. The interval comes from the data: a longer run narrows it,
//! and a simulator that is biased (a wrong admission, a lost ticket, an off-by-one in
//! the clock) falls outside it.

mod support;

use callgate_plan::erlang::{erlang_b, Traffic};
use callgate_plan::sim::{run, Report, RunOptions, Scenario};

/// Replications per check.
const R: usize = 10;

/// Student's t, two-sided 99% (the 0.995 quantile) with R - 1 = 9 degrees of freedom,
/// from any t table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2: 3.250).
const T_99_DF9: f64 = 3.250;

/// A one-pool, one-flow scenario: `lines` lines, Poisson arrivals at `per_hour`,
/// exponential calls of mean `aht`, and either a waiting room nobody leaves (no
/// patience), one callers leave after exponential `patience`, or none at all.
fn mmn(lines: u32, per_hour: f64, aht: &str, queue: bool, patience: Option<&str>, calls: u64) -> Scenario {
    let queue_line = if queue { "queue = { max_wait = \"24h\" }" } else { "" };
    let patience_line = patience.map_or(String::new(), |p| format!("patience = {{ dist = \"exp\", mean = \"{p}\" }}"));
    let sim = format!(
        r#"calls = {calls}
warmup = "2h"
answer_within = "20s""#
    );
    let arrivals = format!(
        r#"rate = "{per_hour}/h"
hold = {{ dist = "exp", mean = "{aht}" }}
{patience_line}"#
    );
    let text = support::one_pool(lines, "calls", queue_line, &sim, &arrivals);
    Scenario::from_toml_str(&text, None).unwrap_or_else(|e| panic!("{e}"))
}

fn replications(sc: &Scenario) -> Vec<Report> {
    (1..=R as u64)
        .map(|seed| run(sc, &RunOptions { seed: Some(seed), ..RunOptions::default() }, &mut |_| {}).unwrap())
        .collect()
}

/// Asserts that `want` lies in the 99% t-interval of the replications' `estimates`.
fn assert_in_ci(what: &str, estimates: &[f64], want: f64) {
    let n = estimates.len() as f64;
    let mean = estimates.iter().sum::<f64>() / n;
    let var = estimates.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = T_99_DF9 * (var / n).sqrt();
    println!("{what}: simulated {mean:.5} ± {half:.5} (99%), formula {want:.5}");
    assert!(
        (mean - want).abs() <= half,
        "{what}: the formula's {want} is outside the simulation's 99% interval {mean} ± {half}"
    );
}

#[test]
fn the_simulator_reproduces_erlang_c_on_m_m_10() {
    // 8 erlangs on 10 lines (120 calls/h × 4 min), everybody waits: C ≈ 0.409.
    let reports = replications(&mmn(10, 120.0, "240s", true, None, 30_000));
    let want = Traffic::new(8.0, 240.0, None).unwrap().evaluate(10, 20.0);
    let f = |pick: fn(&Report) -> f64| reports.iter().map(pick).collect::<Vec<_>>();
    assert_in_ci("P(wait)", &f(|r| r.flows[0].p_wait), want.p_wait);
    assert_in_ci("ASA (s)", &f(|r| r.flows[0].asa_s), want.asa_s.unwrap());
    assert_in_ci("SL 20s", &f(|r| r.flows[0].service_level), want.service_level);
    assert_in_ci("utilization", &f(|r| r.pools[0].utilization), want.occupancy);
}

#[test]
fn the_simulator_reproduces_erlang_a_on_m_m_10_plus_m() {
    // 10 erlangs on 10 lines (150 calls/h × 4 min), mean patience 2 minutes: only
    // abandonment keeps the line finite.
    let reports = replications(&mmn(10, 150.0, "240s", true, Some("120s"), 30_000));
    let want = Traffic::new(10.0, 240.0, Some(120.0)).unwrap().evaluate(10, 20.0);
    let f = |pick: fn(&Report) -> f64| reports.iter().map(pick).collect::<Vec<_>>();
    assert_in_ci("P(wait)", &f(|r| r.flows[0].p_wait), want.p_wait);
    assert_in_ci("P(abandon)", &f(|r| r.flows[0].abandon_rate), want.p_abandon.unwrap());
    assert_in_ci("ASA (s)", &f(|r| r.flows[0].asa_s), want.asa_s.unwrap());
    // The mean wait over every caller means the same in both: `plan lines`' `mean_wait_s`.
    assert_in_ci("mean wait, all callers (s)", &f(|r| r.flows[0].mean_wait_s), want.mean_wait_s.unwrap());
    assert_in_ci("SL 20s", &f(|r| r.flows[0].service_level), want.service_level);
    assert_in_ci("utilization", &f(|r| r.pools[0].utilization), want.occupancy);
}

#[test]
fn the_simulator_reproduces_erlang_b_without_a_waiting_room() {
    // 8 erlangs on 10 lines, no waiting room: B(10, 8) ≈ 0.122 hear busy.
    let reports = replications(&mmn(10, 120.0, "240s", false, None, 30_000));
    let blocked: Vec<f64> = reports.iter().map(|r| r.flows[0].overflow_rate).collect();
    assert_in_ci("blocking", &blocked, erlang_b(10, 8.0));
}

#[test]
fn the_simulator_reproduces_erlang_c_on_the_m_m_55_benchmark() {
    // The benchmark's scenario: 720 calls/h, 4-minute calls, 55 lines (48 erlangs).
    let reports = replications(&mmn(55, 720.0, "240s", true, None, 30_000));
    let want = Traffic::new(48.0, 240.0, None).unwrap().evaluate(55, 20.0);
    let f = |pick: fn(&Report) -> f64| reports.iter().map(pick).collect::<Vec<_>>();
    assert_in_ci("P(wait)", &f(|r| r.flows[0].p_wait), want.p_wait);
    assert_in_ci("SL 20s", &f(|r| r.flows[0].service_level), want.service_level);
}
