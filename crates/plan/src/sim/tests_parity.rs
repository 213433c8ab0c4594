//! A scenario that names a real `[[campaigns]]` entry simulates what the real dialer would
//! do: its leads in their own time zones (`lead_mix`), its window and batches read by the
//! dialer's calendar, its retries, its weekly cap, and the `[[calling_rules]]` of the
//! leads' regions (windows and 24-hour caps), through `callgate_dialer`'s code.

use super::*;
use callgate_dialer::window::Calendar;

fn report(text: &str) -> Report {
    let sc = Scenario::from_toml_str(text, None).unwrap_or_else(|e| panic!("{e}"));
    run(&sc, &RunOptions::default(), &mut |_| {}).unwrap()
}

/// A real campaign `promo` on 20 lines: window `WINDOW` in UTC by default, retry table
/// `RETRY`; `[[calling_rules]]` `RULES`; a simulated one with `MIX`, starting Monday
/// 2024-01-01 02:00 UTC (the evening before in America).
const PROMO: &str = r#"
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 20
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[campaigns]]
name = "promo"
flow = "dialer"
simulate = { answer_rate = 0.3 }
calls_per_second = 5
window = WINDOW
retry = RETRY
RULES
[sim]
start = "2024-01-01T02:00:00Z"
duration = "DURATION"
[[sim.campaigns]]
campaign = "promo"
leads = LEADS
talk = { dist = "fixed", value = "2m" }
MIX
"#;

fn promo(window: &str, retry: &str, rules: &str, duration: &str, leads: u32, mix: &str) -> String {
    PROMO
        .replace("WINDOW", window)
        .replace("RETRY", retry)
        .replace("RULES", rules)
        .replace("DURATION", duration)
        .replace("LEADS", &leads.to_string())
        .replace("MIX", mix)
}

const NINE_TO_FIVE: &str = r#"{ start = "09:00", end = "17:00" }"#;
const NO_RETRY: &str = "{ max_attempts = 1 }";

#[test]
fn each_lead_is_called_in_its_own_time_zones_window() {
    let starts = |zone: &str| {
        let text = promo(
            NINE_TO_FIVE,
            NO_RETRY,
            "",
            "1d",
            50,
            &format!("lead_mix = [{{ share = 1.0, timezone = \"{zone}\" }}]"),
        );
        let sc = Scenario::from_toml_str(&text, None).unwrap();
        let real = sc.campaigns[0].real.as_deref().unwrap().clone();
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        // What the real dialer's calendar says, from the run's start.
        let open = Calendar::new(&real).eligible_at(tz, sc.sim.start_ms).unwrap();
        let r = report(&text);
        (r.campaigns[0].clone(), (open - sc.sim.start_ms) as f64 / 1000.0)
    };
    let (ny, ny_open) = starts("America/New_York");
    let (la, la_open) = starts("America/Los_Angeles");
    assert_eq!(ny_open, 12.0 * 3600.0, "09:00 in New York is 14:00 UTC in January, 12 h after the start");
    assert_eq!(la_open, 15.0 * 3600.0, "and 09:00 in Los Angeles 17:00 UTC");
    // 50 leads, 5 a second, 2-minute calls: every lead is called in its first minutes of
    // window; a campaign that finishes is over within a few minutes of its opening.
    let done = |c: &CampaignReport| c.finished_at_s.expect("every lead called once");
    assert!(done(&ny) >= ny_open && done(&ny) < ny_open + 600.0, "{ny:?}");
    assert!(done(&la) >= la_open && done(&la) < la_open + 600.0, "{la:?}");
}

#[test]
fn a_mix_of_zones_dials_each_share_when_its_window_opens() {
    // Half in New York (window 14:00-22:00 UTC), half in Los Angeles (17:00-01:00 UTC),
    // 100 leads, one call each: the New York half is done in its first minutes, the Los
    // Angeles half waits three hours for its window.
    let mix = |ny: f64| {
        let text = promo(
            NINE_TO_FIVE,
            NO_RETRY,
            "",
            "1d",
            100,
            &format!(
                "lead_mix = [{{ share = {ny}, timezone = \"America/New_York\" }}, \
                 {{ share = {}, timezone = \"America/Los_Angeles\" }}]",
                1.0 - ny
            ),
        );
        report(&text).campaigns[0].clone()
    };
    let both = mix(0.5);
    assert_eq!(both.attempts, 100, "{both:?}");
    let finished = both.finished_at_s.unwrap();
    assert!((15.0 * 3600.0..15.0 * 3600.0 + 600.0).contains(&finished), "done once Los Angeles opened: {both:?}");
    let east = mix(0.99);
    assert!(east.finished_at_s.unwrap() >= 15.0 * 3600.0, "the one lead in Los Angeles waits: {east:?}");
}

#[test]
fn the_weekly_cap_holds_back_a_lead_the_retry_table_would_call_again() {
    // Never answered (answer 0.01), retried a minute later up to 10 times, all day:
    // without a weekly cap 10 attempts per lead within the first hour; with
    // `max_per_week = 2`, two in the first week.
    let all_day = r#"{ start = "00:00", end = "24:00" }"#;
    let retry = |week: u32| {
        format!("{{ no_answer = \"1m\", busy = \"1m\", voicemail = \"1m\", failed = \"1m\", backoff = 1, max_attempts = 10, max_per_week = {week} }}")
    };
    let mix = "answer = 0.000001";
    let free = report(&promo(all_day, &retry(10), "", "3d", 10, mix));
    assert_eq!(free.campaigns[0].attempts, 100, "{:?}", free.campaigns[0]);
    let capped = report(&promo(all_day, &retry(2), "", "3d", 10, mix));
    assert_eq!(capped.campaigns[0].attempts, 20, "{:?}", capped.campaigns[0]);
    assert_eq!(capped.campaigns[0].remaining, 10, "every lead waits for its week to pass");
}

#[test]
fn calling_rules_of_the_leads_region_narrow_the_window_and_cap_the_day() {
    let all_day = r#"{ start = "00:00", end = "24:00" }"#;
    let retry =
        r#"{ no_answer = "10m", busy = "10m", voicemail = "10m", failed = "10m", backoff = 1, max_attempts = 6 }"#;
    let rules = r#"
[[calling_rules]]
region = "US-FL"
window = "10:00-12:00"
max_per_day = 2
"#;
    let fl = r#"answer = 0.000001
lead_mix = [{ share = 1.0, timezone = "America/New_York", region = "US-FL" }]"#;
    let r = report(&promo(all_day, retry, rules, "2d", 10, fl));
    let c = &r.campaigns[0];
    // Two a day each, on two days: 40 attempts; without the rule 60 within the first
    // morning.
    assert_eq!(c.attempts, 40, "{c:?}");
    let ga = fl.replace("US-FL", "US-GA");
    let free = report(&promo(all_day, retry, rules, "2d", 10, &ga));
    assert_eq!(free.campaigns[0].attempts, 60, "a rule of another state does not apply");
    assert_eq!(free.campaigns[0].finished_at_s.map(|s| s < 6.0 * 3600.0), Some(true));
}

#[test]
fn lead_mix_is_checked_and_needs_a_real_campaign() {
    let bad = promo(
        NINE_TO_FIVE,
        NO_RETRY,
        "",
        "1d",
        10,
        r#"lead_mix = [{ share = 0.5, timezone = "Mars/Olympus" }, { share = 0.2, timezone = "UTC" }]"#,
    );
    let e = Scenario::from_toml_str(&bad, None).unwrap_err().message;
    assert!(e.contains("sim.campaigns[0].lead_mix[0].timezone: `Mars/Olympus` is not an IANA time zone"), "{e}");
    assert!(e.contains("sim.campaigns[0].lead_mix: the shares add up to 0.7, not 1"), "{e}");
    let flow_only = bad.replace("campaign = \"promo\"", "flow = \"dialer\"\nanswer = 0.3");
    let e = Scenario::from_toml_str(&flow_only, None).unwrap_err().message;
    assert!(e.contains("lead_mix: time zones are those of a [[campaigns]] window"), "{e}");
}

/// Inbound `support` (4 lines, overflow to a callback) and a real campaign `promo` with
/// `callbacks = true` and a 09:00-17:00 UTC window returning them; `CB` is `[sim] callback`.
const RETURNED: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "callback"
priority = 30
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 4
[[flows]]
name = "support"
pools = ["lines"]
class = "inbound"
overflow = { action = "callback" }
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[campaigns]]
name = "promo"
flow = "dialer"
simulate = { answer_rate = 0.3 }
callbacks = true
calls_per_second = 1
window = { start = "09:00", end = "17:00" }
retry = { no_answer = "30m", busy = "30m", voicemail = "30m", max_attempts = 3 }
[sim]
start = "2024-01-01T00:00:00Z"
duration = "12h"
CB
[[sim.campaigns]]
campaign = "promo"
leads = 20
talk = { dist = "fixed", value = "2m" }
[[arrivals]]
flow = "support"
rate = "40/h"
hold = { dist = "exp", mean = "4m" }
"#;

#[test]
fn a_campaign_with_callbacks_returns_them_in_its_window_before_its_leads() {
    let text = RETURNED.replace("CB", r#"callback = { after = "10m", answer = 0.6 }"#);
    let sc = Scenario::from_toml_str(&text, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sc.sim.callback.as_ref().and_then(|c| c.campaign), Some(0));
    let r = run(&sc, &RunOptions::default(), &mut |_| {}).unwrap();
    let cb = r.callbacks.as_ref().expect("callbacks were booked");
    assert!(cb.attempts > 0 && cb.connected > 0, "{cb:?}");
    let flow = &r.flows[0];
    assert!(flow.callbacks_booked > 0);
    // Booked from midnight on, returned only from 09:00 (the campaign's window): the mean
    // time to connect is hours, not the 10 minutes `after` asks for.
    assert!(cb.mean_time_to_connect_s > 3600.0, "{cb:?}");
    // The campaign's leads wait behind the callbacks (warm leads first) but are dialed.
    assert!(r.campaigns[0].attempts > 0);
}

#[test]
fn the_pacing_of_returned_callbacks_is_the_campaigns() {
    let text = RETURNED
        .replace("CB", r#"callback = { flow = "support", after = "10m", calls_per_second = 2, deadline = "1h" }"#);
    let e = Scenario::from_toml_str(&text, None).unwrap_err().message;
    assert!(
        e.contains("sim.callback.flow: comes from the campaign `promo` (callbacks = true): change it there"),
        "{e}"
    );
    assert!(e.contains("sim.callback.calls_per_second: comes from the campaign `promo`"), "{e}");
    assert!(e.contains("sim.callback.deadline: comes from the campaign `promo`"), "{e}");
    let alone = RETURNED.replace("callbacks = true\n", "").replace("CB", r#"callback = { after = "10m" }"#);
    let e = Scenario::from_toml_str(&alone, None).unwrap_err().message;
    assert!(e.contains("sim.callback.flow: say which flow returns the callbacks"), "{e}");
}
