use super::*;

const OPEN_FOR: Millis = 30_000;

/// Opens at 50 % failures over at least 4 calls in a 10 s window of 1 s buckets; slow
/// above 2 s at a 50 % rate; 30 s open; 5 probes.
fn spec() -> BreakerSpec {
    BreakerSpec {
        error_rate: 0.5,
        slow_call_ms: Some(2_000),
        slow_rate: 0.5,
        window_ms: 10_000,
        bucket_ms: 1_000,
        min_calls: 4,
        open_for_ms: OPEN_FOR,
        half_open_probes: 5,
    }
}

fn breaker() -> Breaker {
    Breaker::new(spec()).unwrap()
}

/// Records `oks` then `fails`, all at `now`; returns the last transition.
fn feed(b: &mut Breaker, now: Millis, oks: u32, fails: u32) -> Option<Transition> {
    let mut last = None;
    for _ in 0..oks {
        last = last.or(b.record(now, true, Some(100)));
    }
    for _ in 0..fails {
        last = last.or(b.record(now, false, Some(100)));
    }
    last
}

/// Opens `b` at `now` with two failures out of four.
fn open_at(b: &mut Breaker, now: Millis) {
    let t = feed(b, now, 2, 2).expect("opens");
    assert_eq!(t.to, BreakerState::Open { until: now + OPEN_FOR });
}

#[test]
fn a_new_breaker_is_closed_and_lets_calls_through() {
    let mut b = breaker();
    assert_eq!(b.state(0), BreakerState::Closed);
    assert_eq!(b.allow(0), Admission { allowed: true, probe: false, transition: None });
}

#[test]
fn fewer_than_min_calls_never_open_it() {
    let mut b = breaker();
    assert_eq!(feed(&mut b, 1_000, 0, 3), None);
    assert_eq!(b.state(1_000), BreakerState::Closed);
    assert_eq!(b.counts(1_000), WindowCounts { calls: 3, failed: 3, slow: 0 });
}

#[test]
fn the_error_rate_opens_it() {
    let mut b = breaker();
    assert_eq!(feed(&mut b, 1_000, 3, 0), None);
    assert_eq!(b.record(1_500, false, None), None, "1 of 4 failed");
    assert_eq!(b.record(2_000, false, None), None, "2 of 5 failed");
    let t = b.record(2_500, false, None).expect("3 of 6 failed");
    assert_eq!(
        t,
        Transition {
            from: BreakerState::Closed,
            to: BreakerState::Open { until: 2_500 + OPEN_FOR },
            at: 2_500,
            cause: Cause::ErrorRate { failed: 3, calls: 6 },
        }
    );
    assert_eq!(b.state(2_500), BreakerState::Open { until: 32_500 });
    assert_eq!(b.counts(2_500), WindowCounts::default(), "the window restarts");
}

#[test]
fn the_slow_call_rate_opens_it() {
    let mut b = breaker();
    assert_eq!(b.record(0, true, Some(2_000)), None, "at the threshold is not slow");
    assert_eq!(b.record(0, true, Some(2_001)), None);
    assert_eq!(b.record(0, true, Some(100)), None);
    assert_eq!(b.counts(0).slow, 1);
    let t = b.record(0, true, Some(5_000)).expect("2 of 4 slow");
    assert_eq!(t.cause, Cause::SlowRate { slow: 2, calls: 4 });
}

#[test]
fn slow_calls_count_only_when_a_threshold_is_set() {
    let mut b = Breaker::new(BreakerSpec { slow_call_ms: None, ..spec() }).unwrap();
    for t in 0..100 {
        assert_eq!(b.record(t, true, Some(60_000)), None);
    }
    assert_eq!(b.counts(99).slow, 0);
}

#[test]
fn an_open_breaker_refuses_calls_and_ignores_late_outcomes() {
    let mut b = breaker();
    open_at(&mut b, 1_000);
    assert_eq!(b.allow(1_001), Admission { allowed: false, probe: false, transition: None });
    // Calls admitted before it opened report now: they change nothing.
    assert_eq!(feed(&mut b, 2_000, 10, 10), None);
    assert_eq!(b.state(OPEN_FOR + 999), BreakerState::Open { until: OPEN_FOR + 1_000 });
    assert!(!b.allow(OPEN_FOR + 999).allowed);
}

#[test]
fn open_turns_half_open_when_its_time_is_up() {
    let mut b = breaker();
    open_at(&mut b, 1_000);
    let until = 1_000 + OPEN_FOR;
    assert_eq!(b.state(until - 1), BreakerState::Open { until });
    assert_eq!(b.state(until), BreakerState::HalfOpen, "a read shows it before any call");
    let a = b.allow(until + 5);
    assert!(a.allowed && a.probe);
    assert_eq!(
        a.transition,
        Some(Transition {
            from: BreakerState::Open { until },
            to: BreakerState::HalfOpen,
            at: until,
            cause: Cause::OpenElapsed,
        })
    );
    assert_eq!(b.advance(until + 6), None, "reported once");
}

#[test]
fn advance_reports_half_open_from_a_tick() {
    let mut b = breaker();
    open_at(&mut b, 0);
    assert_eq!(b.advance(OPEN_FOR - 1), None);
    assert_eq!(b.advance(OPEN_FOR + 400).map(|t| (t.to, t.at)), Some((BreakerState::HalfOpen, OPEN_FOR)));
}

#[test]
fn half_open_lets_a_limited_number_of_probes_through() {
    let mut b = breaker();
    open_at(&mut b, 0);
    let probes: Vec<bool> = (0..8).map(|i| b.allow(OPEN_FOR + i).allowed).collect();
    assert_eq!(probes, [true, true, true, true, true, false, false, false]);
}

#[test]
fn all_probes_succeeding_closes_it() {
    let mut b = breaker();
    open_at(&mut b, 0);
    for i in 0..5 {
        assert!(b.allow(OPEN_FOR + i).probe);
    }
    for i in 0..4 {
        assert_eq!(b.record(OPEN_FOR + 100 + i, true, Some(300)), None);
        assert_eq!(b.state(OPEN_FOR + 100 + i), BreakerState::HalfOpen);
    }
    let t = b.record(OPEN_FOR + 200, true, Some(300)).expect("closes");
    assert_eq!((t.from, t.to, t.cause), (BreakerState::HalfOpen, BreakerState::Closed, Cause::ProbesSucceeded));
    assert_eq!(b.counts(OPEN_FOR + 200), WindowCounts::default(), "an empty window");
    assert!(b.allow(OPEN_FOR + 201).allowed && !b.allow(OPEN_FOR + 201).probe);
    // The failures from before it opened are gone: two more failures do not reopen it.
    assert_eq!(feed(&mut b, OPEN_FOR + 300, 0, 2), None);
}

#[test]
fn a_failed_probe_opens_it_again_at_once() {
    let mut b = breaker();
    open_at(&mut b, 0);
    for i in 0..3 {
        assert!(b.allow(OPEN_FOR + i).probe);
    }
    assert_eq!(b.record(OPEN_FOR + 10, true, Some(100)), None);
    let t = b.record(OPEN_FOR + 20, false, Some(100)).expect("reopens");
    assert_eq!(
        t,
        Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Open { until: 2 * OPEN_FOR + 20 },
            at: OPEN_FOR + 20,
            cause: Cause::ProbeFailed,
        }
    );
    assert!(!b.allow(OPEN_FOR + 21).allowed);
    // The third probe reports late: ignored.
    assert_eq!(b.record(OPEN_FOR + 30, true, Some(100)), None);
    assert_eq!(b.state(OPEN_FOR + 30), BreakerState::Open { until: 2 * OPEN_FOR + 20 });
}

#[test]
fn slow_probes_open_it_again_at_the_slow_rate() {
    // 3 of 5 probes slow reach 50 %: reopen on the third.
    let mut b = breaker();
    open_at(&mut b, 0);
    for i in 0..5 {
        assert!(b.allow(OPEN_FOR + i).probe);
    }
    assert_eq!(b.record(OPEN_FOR + 10, true, Some(2_500)), None);
    assert_eq!(b.record(OPEN_FOR + 11, true, Some(2_500)), None);
    let t = b.record(OPEN_FOR + 12, true, Some(2_500)).expect("reopens");
    assert_eq!(t.cause, Cause::SlowProbes { slow: 3 });

    // 2 of 5 slow: it closes.
    let mut b = breaker();
    open_at(&mut b, 0);
    for i in 0..5 {
        assert!(b.allow(OPEN_FOR + i).probe);
    }
    let latencies = [2_500, 100, 2_500, 100, 100];
    let transitions: Vec<_> = latencies.iter().map(|&l| b.record(OPEN_FOR + 10, true, Some(l))).collect();
    assert_eq!(transitions.last().unwrap().map(|t| t.to), Some(BreakerState::Closed));
}

#[test]
fn outcomes_without_an_outstanding_probe_do_not_decide() {
    let mut b = breaker();
    open_at(&mut b, 0);
    // Half-open, no probe out yet: a late failure from before is ignored (the call
    // that notices half-open reports it).
    let t = b.record(OPEN_FOR + 1, false, None).expect("notices half-open");
    assert_eq!(t.to, BreakerState::HalfOpen);
    assert_eq!(b.record(OPEN_FOR + 2, false, None), None);
    assert_eq!(b.state(OPEN_FOR + 2), BreakerState::HalfOpen);
    assert!(b.allow(OPEN_FOR + 3).probe, "all five probes still available");
}

#[test]
fn probes_that_never_report_are_written_off_after_open_for() {
    let mut b = breaker();
    open_at(&mut b, 0);
    for i in 0..5 {
        assert!(b.allow(OPEN_FOR + i).probe);
    }
    // Two report success, three never report.
    assert_eq!(feed(&mut b, OPEN_FOR + 100, 2, 0), None);
    let last = OPEN_FOR + 4;
    assert!(!b.allow(last + OPEN_FOR - 1).allowed, "still waiting for them");
    let replacements: Vec<bool> = (0..4).map(|i| b.allow(last + OPEN_FOR + i).probe).collect();
    assert_eq!(replacements, [true, true, true, false], "three lost probes replaced");
    // The two successes are kept: three more close it.
    assert_eq!(feed(&mut b, last + OPEN_FOR + 10, 2, 0), None);
    let t = b.record(last + OPEN_FOR + 10, true, None).expect("closes");
    assert_eq!(t.cause, Cause::ProbesSucceeded);
}

#[test]
fn old_failures_age_out_of_the_window() {
    // Three failures at 0.5 s, then one success: still in the window at 9.999 s (bucket
    // 0 is one of the ten that end at bucket 9), gone at 10 s.
    let mut b = breaker();
    feed(&mut b, 500, 0, 3);
    assert_eq!(b.counts(9_999).failed, 3);
    assert!(b.record(9_999, true, None).is_some(), "3 of 4 failed");

    let mut b = breaker();
    feed(&mut b, 500, 0, 3);
    assert_eq!(b.counts(10_000), WindowCounts::default());
    assert_eq!(b.record(10_000, true, None), None, "1 call in the window");
    assert_eq!(b.counts(10_000), WindowCounts { calls: 1, failed: 0, slow: 0 });
}

#[test]
fn the_window_slides_bucket_by_bucket() {
    let mut b = Breaker::new(BreakerSpec { min_calls: 1_000, ..spec() }).unwrap();
    for s in 0..10 {
        b.record(s * 1_000, false, None);
    }
    assert_eq!(b.counts(9_000).calls, 10);
    assert_eq!(b.counts(12_500).calls, 7, "buckets 0, 1, 2 aged out");
    b.record(12_500, true, None);
    assert_eq!(b.counts(12_500), WindowCounts { calls: 8, failed: 7, slow: 0 });
    // A jump far beyond the window empties it.
    b.record(1_000_000, true, None);
    assert_eq!(b.counts(1_000_000), WindowCounts { calls: 1, failed: 0, slow: 0 });
    // A report older than the window is dropped.
    b.record(900_000, false, None);
    assert_eq!(b.counts(1_000_000).calls, 1);
}

/// The ring agrees with a plain recount of the calls whose bucket is one of the last
/// `window / bucket`, over a long pseudo-random run (fixed seed).
#[test]
fn the_window_matches_a_recount() {
    let spec = BreakerSpec { min_calls: u32::MAX, window_ms: 7_500, bucket_ms: 500, ..spec() };
    let mut b = Breaker::new(spec).unwrap();
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut calls: Vec<(Millis, bool, bool)> = Vec::new();
    let mut now = 0;
    for _ in 0..20_000 {
        now += match next() % 10 {
            0 => next() % 20_000, // now and then a long pause
            _ => next() % 400,
        };
        let ok = next() % 3 != 0;
        let latency = next() % 4_000;
        b.record(now, ok, Some(latency));
        calls.push((now, ok, latency > 2_000));
        let head = now / 500;
        let mut want = WindowCounts::default();
        for &(t, ok, slow) in calls.iter().rev().take_while(|(t, ..)| t / 500 + 15 > head) {
            debug_assert!(t <= now);
            want.calls += 1;
            want.failed += u32::from(!ok);
            want.slow += u32::from(slow);
        }
        assert_eq!(b.counts(now), want, "at {now}");
        assert_eq!(b.window.totals, want, "running totals at {now}");
    }
}

#[test]
fn specs_are_checked_with_the_field_named() {
    let err = |s: BreakerSpec| Breaker::new(s).unwrap_err().0;
    assert!(err(BreakerSpec { error_rate: 0.0, ..spec() }).contains("`error_rate`"));
    assert!(err(BreakerSpec { error_rate: 1.5, ..spec() }).contains("`error_rate`"));
    assert!(err(BreakerSpec { slow_rate: f64::NAN, ..spec() }).contains("`slow_rate`"));
    assert!(err(BreakerSpec { slow_call_ms: Some(0), ..spec() }).contains("`slow_call_ms`"));
    assert!(err(BreakerSpec { bucket_ms: 0, ..spec() }).contains("`bucket`"));
    assert!(err(BreakerSpec { window_ms: 500, ..spec() }).contains("`window`"));
    assert!(err(BreakerSpec { window_ms: u64::MAX, bucket_ms: 1, ..spec() }).contains("`window`"));
    assert!(err(BreakerSpec { min_calls: 0, ..spec() }).contains("`min_calls`"));
    assert!(err(BreakerSpec { open_for_ms: 0, ..spec() }).contains("`open_for`"));
    assert!(err(BreakerSpec { half_open_probes: 0, ..spec() }).contains("`half_open_probes`"));
    assert!(BreakerSpec::default().validate().is_ok());
}

#[test]
fn state_names() {
    assert_eq!(BreakerState::Closed.as_str(), "closed");
    assert_eq!(BreakerState::Open { until: 5 }.as_str(), "open");
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
}
