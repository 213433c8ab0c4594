//! The `for` logic and the hysteresis, on a fixed clock.

use super::*;

/// utilization above 0.9 for 2 minutes; resolves below 0.8 after 1 minute.
fn saturated() -> Condition {
    Condition { above: true, threshold: 0.9, hold_ms: 120_000, resolve_at: Some(0.8), resolve_ms: 60_000 }
}

/// Feeds `(second, value)` pairs and returns the changes with their second.
fn run(c: &Condition, series: &[(u64, Option<f64>)]) -> (Vec<(u64, AlertChange)>, AlertState) {
    let mut state = AlertState::default();
    let mut out = Vec::new();
    for &(s, v) in series {
        if let Some(change) = state.step(c, s * 1000, v) {
            out.push((s, change));
        }
    }
    (out, state)
}

/// One evaluation per second from `from` to `to` (inclusive) at `value`.
fn flat(from: u64, to: u64, value: f64) -> Vec<(u64, Option<f64>)> {
    (from..=to).map(|s| (s, Some(value))).collect()
}

#[test]
fn a_spike_shorter_than_for_does_not_fire() {
    let mut series = flat(0, 10, 0.5);
    series.extend(flat(11, 100, 1.0)); // 90 s at 100 %
    series.extend(flat(101, 400, 0.5));
    let (changes, state) = run(&saturated(), &series);
    assert_eq!(changes, [], "90 s above the threshold is shorter than `for` (2 min)");
    assert_eq!(state.phase, AlertPhase::Quiet);
}

#[test]
fn a_sustained_rise_fires_once_for_has_passed() {
    let mut series = flat(0, 10, 0.5);
    series.extend(flat(11, 300, 0.95));
    let (changes, state) = run(&saturated(), &series);
    assert_eq!(changes, [(131, AlertChange::Fired)], "pending from 11 s, fires 120 s later");
    assert_eq!(state.phase, AlertPhase::Firing { since: 131_000 });
}

#[test]
fn two_spikes_do_not_add_up() {
    let mut series = flat(0, 100, 0.95); // 100 s
    series.push((101, Some(0.85))); // one evaluation back under the threshold
    series.extend(flat(102, 200, 0.95)); // 98 s
    let (changes, _) = run(&saturated(), &series);
    assert_eq!(changes, [], "the pending time restarts after the metric came back");
}

#[test]
fn resolving_needs_the_resolve_value_held_for_the_resolve_time() {
    let c = saturated();
    let mut series = flat(0, 130, 0.95); // fires at 120
    series.extend(flat(131, 300, 0.85)); // under 0.9 but not under 0.8: still firing
    series.extend(flat(301, 330, 0.7)); // recovered for 30 s…
    series.extend(flat(331, 335, 0.95)); // …then back up: the clock restarts
    series.extend(flat(336, 500, 0.7));
    let (changes, state) = run(&c, &series);
    assert_eq!(changes, [(120, AlertChange::Fired), (396, AlertChange::Resolved)]);
    assert_eq!(state.phase, AlertPhase::Quiet);
}

#[test]
fn hovering_around_the_threshold_does_not_flap() {
    let c = saturated();
    let mut series = flat(0, 125, 0.95);
    // Hovers between 0.85 and 0.95 for ten minutes: never recovered (not below 0.8).
    for s in 126..726 {
        series.push((s, Some(if s % 2 == 0 { 0.85 } else { 0.95 })));
    }
    let (changes, state) = run(&c, &series);
    assert_eq!(changes, [(120, AlertChange::Fired)], "one notification, not one per crossing");
    assert!(state.phase.is_firing());
}

#[test]
fn without_a_resolve_value_it_resolves_once_no_longer_across_for_as_long_as_for() {
    let c = Condition { above: true, threshold: 5.0, hold_ms: 30_000, resolve_at: None, resolve_ms: 30_000 };
    let mut series = flat(0, 40, 8.0);
    series.extend(flat(41, 100, 5.0)); // equal is not above
    let (changes, _) = run(&c, &series);
    assert_eq!(changes, [(30, AlertChange::Fired), (71, AlertChange::Resolved)]);
}

#[test]
fn a_below_alert_fires_below_and_resolves_above() {
    let c = Condition { above: false, threshold: 2.0, hold_ms: 10_000, resolve_at: Some(4.0), resolve_ms: 0 };
    let mut series = flat(0, 20, 1.0);
    series.extend(flat(21, 30, 3.0));
    series.extend(flat(31, 32, 5.0));
    let (changes, _) = run(&c, &series);
    assert_eq!(changes, [(10, AlertChange::Fired), (31, AlertChange::Resolved)]);
}

#[test]
fn zero_for_fires_at_the_first_evaluation_and_no_data_is_not_a_breach() {
    let c = Condition { above: true, threshold: 1000.0, hold_ms: 0, resolve_at: None, resolve_ms: 0 };
    let (changes, _) = run(&c, &[(0, None), (1, Some(1500.0)), (2, Some(1600.0)), (3, None)]);
    assert_eq!(changes, [(1, AlertChange::Fired), (3, AlertChange::Resolved)]);
}

#[test]
fn the_condition_reads_the_config() {
    let text = r#"
[[pools]]
name = "acct"
limit = 10
[[alerts]]
name = "full"
pool = "acct"
metric = "utilization"
above = 0.9
for = "2m"
resolve = { below = 0.8 }
"#;
    let config = Config::from_toml_str(text, None).unwrap();
    let c = Condition::of(&config.alerts[0]);
    assert_eq!(
        c,
        Condition { above: true, threshold: 0.9, hold_ms: 120_000, resolve_at: Some(0.8), resolve_ms: 120_000 }
    );
}
