//! The simulator's own behaviour: scenarios read right, problems placed on their line,
//! callers and dialers doing what a person would expect, results repeatable.

use super::*;

#[path = "../../tests/support/mod.rs"]
mod support;

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml_str(text, None).unwrap_or_else(|e| panic!("{e}"))
}

fn report(text: &str) -> Report {
    run(&scenario(text), &RunOptions::default(), &mut |_| {}).unwrap()
}

fn problem(text: &str) -> String {
    match Scenario::from_toml_str(text, Some(std::path::Path::new("s.toml"))) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.message,
    }
}

/// One pool of `lines`, one flow `support` with the given extra flow lines, and arrivals.
fn small(lines: u32, flow_extra: &str, sim: &str, arrivals: &str) -> String {
    support::one_pool(lines, "support", flow_extra, sim, arrivals)
}

const QUEUED: &str = "queue = { max_wait = \"60s\" }\noverflow = { action = \"voicemail\" }";
const TRAFFIC: &str =
    "rate = \"120/h\"\nhold = { dist = \"exp\", mean = \"4m\" }\npatience = { dist = \"exp\", mean = \"90s\" }";

#[test]
fn every_caller_has_exactly_one_outcome() {
    let r = report(&small(10, QUEUED, "calls = 5000\nseed = 7", TRAFFIC));
    let f = &r.flows[0];
    assert_eq!(f.offered, 5000);
    assert_eq!(f.answered + f.abandoned + f.overflowed, f.offered);
    assert_eq!(f.granted_at_once + f.queued, f.offered);
    assert!(f.abandoned > 0 && f.overflow_by_reason.timed_out > 0);
    assert_eq!(f.overflow_by_action.get("voicemail"), Some(&f.overflowed));
    assert!(r.pools[0].peak_used <= 10);
}

#[test]
fn same_seed_same_report_another_seed_another() {
    let text = small(10, QUEUED, "calls = 3000\nseed = 7", TRAFFIC);
    let a = report(&text);
    let b = report(&text);
    assert_eq!(a, b);
    let sc = scenario(&text);
    let c = run(&sc, &RunOptions { seed: Some(8), ..Default::default() }, &mut |_| {}).unwrap();
    assert_ne!(a.flows[0].queued, c.flows[0].queued);
}

#[test]
fn two_policies_meet_exactly_the_same_callers() {
    // Same seed, different lines and waiting rooms: the callers (arrival times, call
    // lengths, patience) are the same, so the offered load is too.
    let a = report(&small(8, "", "duration = \"6h\"\nseed = 5", TRAFFIC));
    let b = report(&small(12, QUEUED, "duration = \"6h\"\nseed = 5", TRAFFIC));
    assert_eq!(a.flows[0].offered, b.flows[0].offered);
    assert!(a.flows[0].overflowed > b.flows[0].overflowed);
}

#[test]
fn a_full_waiting_room_overflows_at_once() {
    let r = report(&small(
        2,
        "queue = { max_wait = \"5m\", max_len = 1 }\noverflow = { action = \"busy\" }",
        "calls = 2000",
        "rate = \"60/h\"\nhold = { dist = \"exp\", mean = \"4m\" }",
    ));
    let f = &r.flows[0];
    assert!(f.overflow_by_reason.queue_full > 0);
    assert!(f.peak_waiting <= 1);
}

#[test]
fn callers_before_the_warm_up_are_not_counted() {
    let r = report(&small(
        20,
        QUEUED,
        "duration = \"3h\"\nwarmup = \"2h\"",
        "rate = \"600/h\"\nhold = { dist = \"fixed\", value = \"1m\" }",
    ));
    // About 600 callers in the last hour (Poisson: 600 ± 3·√600).
    let n = r.flows[0].offered as f64;
    assert!((n - 600.0).abs() < 3.0 * 600f64.sqrt(), "{n}");
    assert_eq!(r.simulated_s, 3600.0);
}

#[test]
fn an_hourly_profile_puts_the_calls_in_their_hours() {
    let mut rates = vec!["0"; 24];
    rates[10] = "300";
    let rate = format!("rate = [{}]\nhold = {{ dist = \"fixed\", value = \"2m\" }}", rates.join(", "));
    let r = report(&small(50, QUEUED, "duration = \"24h\"", &rate));
    let s = &r.series;
    let busy: Vec<usize> = s.pools[0].mean.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(i, _)| i).collect();
    let (first, last) = (busy[0] as f64 * s.bucket_s, (busy[busy.len() - 1] + 1) as f64 * s.bucket_s);
    assert!(first >= 10.0 * 3600.0 && last <= 11.0 * 3600.0 + 120.0 + s.bucket_s, "{first}..{last}");
}

/// Five lines; every caller who finds them full is offered a callback, returned through
/// the `callbacks` flow by the callback dialer. `CALLBACK` is the rest of `[sim] callback`.
const CALLBACK_EVERYTHING: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "callback"
priority = 30
[[pools]]
name = "lines"
limit = 5
[[flows]]
name = "support"
pools = ["lines"]
class = "inbound"
overflow = { action = "callback" }
[[flows]]
name = "callbacks"
pools = ["lines"]
class = "callback"
[sim]
duration = "8h"
callback = { flow = "callbacks", after = "10m"CALLBACK }
[[arrivals]]
flow = "support"
rate = "90/h"
hold = { dist = "exp", mean = "3m" }
"#;

fn callback_everything(rest: &str) -> Report {
    report(&CALLBACK_EVERYTHING.replace("CALLBACK", rest))
}

#[test]
fn callbacks_are_booked_on_overflow_and_dialed_later_as_attempts_not_callers() {
    let r = callback_everything("");
    let support = r.flows.iter().find(|f| f.flow == "support").unwrap();
    assert!(support.callbacks_booked > 0);
    assert_eq!(support.callbacks_booked, support.overflow_by_action["callback"], "every offer accepted by default");
    assert!(r.flows.iter().all(|f| f.flow != "callbacks"), "callback traffic is not callers");
    let cb = r.callbacks.as_ref().unwrap();
    assert_eq!(cb.flow, "callbacks");
    assert!(cb.attempts >= cb.connected && cb.connected > 0);
    assert_eq!(cb.attempts, cb.connected + cb.busy + cb.voicemail + cb.no_answer);
    assert!((0.45..0.75).contains(&cb.connect_rate), "answered 60% of the time by default: {}", cb.connect_rate);
    assert_eq!(cb.booked, cb.connected + cb.lost + cb.pending);
    assert_eq!(cb.pending, 0, "the run goes on until every callback is settled");
}

#[test]
fn a_callback_everything_policy_loses_the_callers_whose_callbacks_fail() {
    // Nobody answers a callback: every caller sent to a callback is lost.
    let r = callback_everything(", answer = 0.0, busy = 0.5, voicemail = 0.3, deadline = \"4h\"");
    let support = r.flows.iter().find(|f| f.flow == "support").unwrap();
    assert!(support.callbacks_booked > 0);
    assert_eq!(support.callbacks_connected, 0);
    assert_eq!(support.callbacks_lost, support.callbacks_booked, "{}", r.to_text());
    assert_eq!(r.lost.callback_never_connected, support.callbacks_booked);
    assert_eq!(r.lost.lost, support.callbacks_booked);
    assert!(r.lost.share > 0.0);
    let cb = r.callbacks.as_ref().unwrap();
    // At most three attempts each (the campaigns' default max_attempts); fewer when the
    // next one would come after the 4-hour deadline (voicemail waits 4 hours).
    assert!(cb.lost < cb.attempts && cb.attempts <= 3 * cb.lost, "{cb:?}");
    assert!(r.to_text().contains("Lost: "), "{}", r.to_text());

    // Half decline the offer: lost too, and the same callers as before.
    let declined = callback_everything(", accept = 0.5");
    let s = declined.flows.iter().find(|f| f.flow == "support").unwrap();
    assert!(s.callbacks_declined > 0 && s.callbacks_booked > 0);
    assert_eq!(s.callbacks_declined + s.callbacks_booked, s.overflow_by_action["callback"]);
    assert!(declined.lost.lost >= s.callbacks_declined);
    assert_eq!(declined.lost.callers, support.offered, "the same callers whatever the policy");

    // A callback with no way back is refused, not silently counted as served.
    let e = problem(&CALLBACK_EVERYTHING.replace("callback = { flow = \"callbacks\", after = \"10m\"CALLBACK }\n", ""));
    assert!(e.contains("overflows to `callback`"), "{e}");
}

const DIALER: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 10
RESERVE
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[sim.campaigns]]
flow = "dialer"
leads = LEADS
connect_rate = RATE
talk = { dist = "fixed", value = "60s" }
ring = { dist = "fixed", value = "20s" }
retries = RETRIES
retry_after = "30m"
EXTRA
"#;

fn dialer(reserve: &str, leads: u32, rate: f64, retries: u32, extra: &str) -> Report {
    report(
        &DIALER
            .replace("RESERVE", reserve)
            .replace("LEADS", &leads.to_string())
            .replace("RATE", &rate.to_string())
            .replace("RETRIES", &retries.to_string())
            .replace("EXTRA", extra),
    )
}

#[test]
fn a_campaign_dials_inside_its_window_until_every_lead_is_done() {
    // 10 lines of 60-second calls: 600 an hour; 300 leads take half an hour from 09:00.
    let r = dialer("", 300, 1.0, 0, "window = \"09:00-17:00\"");
    let c = &r.campaigns[0];
    assert_eq!((c.connected, c.unreached, c.remaining), (300, 0, 0));
    let done = c.finished_at_s.unwrap();
    assert!((9.0 * 3600.0 + 1790.0..9.0 * 3600.0 + 1900.0).contains(&done), "{done}");
    assert_eq!(r.pools[0].peak_used, 10);
}

#[test]
fn the_carrier_limit_paces_the_dialer() {
    // One attempt every 10 seconds: 100 leads take at least 990 s whatever the lines.
    let r = dialer("", 100, 1.0, 0, "cps = 0.1");
    let done = r.campaigns[0].finished_at_s.unwrap();
    assert!((1050.0..1060.0).contains(&done), "{done}");
}

#[test]
fn unanswered_leads_are_tried_again() {
    let r = dialer("", 2000, 0.5, 1, "");
    let c = &r.campaigns[0];
    assert_eq!(c.connected + c.unreached, 2000);
    // 2000 first attempts, about 1000 second ones (binomial: ± 3·√500).
    let second = c.attempts as f64 - 2000.0;
    assert!((second - 1000.0).abs() < 3.0 * 500f64.sqrt(), "{second}");
}

#[test]
fn an_inbound_reserve_keeps_the_dialer_off_the_reserved_lines() {
    let r = dialer("reserve = { inbound = 3 }", 500, 1.0, 0, "");
    assert_eq!(r.pools[0].peak_used, 7);
}

#[test]
fn a_run_reports_its_progress_up_to_the_end() {
    let sc = scenario(&small(10, QUEUED, "calls = 200000", TRAFFIC));
    let mut seen = Vec::new();
    run(&sc, &RunOptions::default(), &mut |p| seen.push(p)).unwrap();
    assert!(seen.len() > 2);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(seen.last(), Some(&1.0));
}

// ----- problems in scenario files ----------------------------------------------------

#[test]
fn problems_name_the_file_the_line_and_the_field() {
    let text = small(10, QUEUED, "calls = 100", "rate = \"720/x\"\nhold = { dist = \"exp\", mean = \"4m\" }");
    let line = text.lines().position(|l| l.contains("720/x")).unwrap() + 1;
    let e = problem(&text);
    assert!(e.starts_with(&format!("s.toml:{line}: arrivals[0].rate: `720/x` is not a rate")), "{e}");

    let text = small(10, QUEUED, "calls = 100", "rate = \"1/s\"\nhold = { dist = \"gamma\", mean = \"4m\" }");
    let e = problem(&text);
    assert!(e.contains("arrivals[0].hold.dist: `gamma` is not a distribution"), "{e}");

    let text = small(10, QUEUED, "calls = 100\nduratoin = \"1h\"", TRAFFIC);
    let line = text.lines().position(|l| l.contains("duratoin")).unwrap() + 1;
    let e = problem(&text);
    assert!(e.starts_with(&format!("s.toml:{line}:")) && e.contains("duratoin"), "{e}");

    let e = problem(&small(10, QUEUED, "seed = 3", TRAFFIC));
    assert!(e.contains("sim: say how long to run"), "{e}");

    let text = small(10, QUEUED, "calls = 100", TRAFFIC).replace("flow = \"support\"\nrate", "flow = \"suport\"\nrate");
    let e = problem(&text);
    assert!(e.contains("arrivals[0].flow: no flow is named `suport` (flows: `support`)"), "{e}");

    let e = problem(&small(10, QUEUED, "duration = \"soon\"", TRAFFIC));
    assert!(e.contains("sim.duration: `soon` is not a duration"), "{e}");

    let e = problem("[sim\nduration = 3");
    assert!(e.starts_with("s.toml:1:"), "{e}");
}

#[test]
fn config_problems_keep_their_lines_although_traffic_sections_come_first() {
    // The traffic sections are blanked before the config reader sees the text: its line
    // numbers must still be the file's.
    let text = r#"[sim]
calls = 100

[[arrivals]]
flow = "support"
rate = [
  10,
  20,
]
hold = { dist = "exp", mean = "4m" }

[[pools]]
name = "lines"
limit = 10

[[flows]]
name = "support"
pools = ["linez"]
class = "inbound"
"#;
    let e = problem(text);
    assert!(e.starts_with("s.toml:18: flows[0].pools[0]:"), "{e}");
}

#[test]
fn campaign_problems_are_placed_too() {
    let text = DIALER
        .replace("RESERVE", "")
        .replace("LEADS", "-5")
        .replace("RATE", "1.5")
        .replace("RETRIES", "0")
        .replace("EXTRA", "window = \"9-5\"");
    let e = problem(&text);
    assert!(e.contains("sim.campaigns[0].leads: must be between 1"), "{e}");
    assert!(e.contains("sim.campaigns[0].connect_rate: must be more than 0 and at most 1"), "{e}");
    assert!(e.contains("sim.campaigns[0].window: `9-5` is not a calling window"), "{e}");
}

#[test]
fn absurd_rates_are_refused_before_they_run_for_ever() {
    let sc = scenario(&small(
        10,
        QUEUED,
        "duration = \"366d\"",
        "rate = \"1000/s\"\nhold = { dist = \"exp\", mean = \"4m\" }",
    ));
    let e = run(&sc, &RunOptions::default(), &mut |_| {}).unwrap_err();
    assert!(e.message.contains("check the rates' units"), "{e}");
}

#[test]
fn rates_read_in_every_unit() {
    assert_eq!(parse_rate("720/h"), Some(720.0 / 3_600_000.0));
    assert_eq!(parse_rate("12/m"), Some(12.0 / 60_000.0));
    assert_eq!(parse_rate("0.5/s"), Some(0.0005));
    assert_eq!(parse_rate("100/d"), Some(100.0 / 86_400_000.0));
    for bad in ["720", "720/x", "-1/h", "/h", "abc/h"] {
        assert_eq!(parse_rate(bad), None, "{bad}");
    }
}

/// Two lines, a campaign of 4-minute calls, and a schedule that reserves both lines for
/// inbound from 00:10 to 00:20 on the run's wall clock (the default start is a Monday,
/// 00:00 UTC).
const SCHEDULED: &str = r#"
[[pools]]
name = "lines"
limit = 2
[[flows]]
name = "outbound"
pools = ["lines"]
class = "outbound"
[[schedules]]
name = "inbound-hour"
start = "00:10"
end = "00:20"
pools = { lines = { reserve = { inbound = 2 } } }
[sim]
duration = "30m"
[[sim.campaigns]]
flow = "outbound"
leads = 1000
connect_rate = 1.0
talk = { dist = "fixed", value = "4m" }
"#;

#[test]
fn a_schedule_changes_a_reserve_at_its_time_in_the_simulator() {
    let r = report(SCHEDULED);
    // Dialing at 0, 4 and 8 minutes; the reserve holds both lines from 10 to 20 (the
    // calls placed at 8 end at 12 and nothing follows); then 20, 24 and 28.
    assert_eq!(r.campaigns[0].attempts, 12, "{}", r.to_text());
    let at: Vec<(f64, Vec<String>)> = r.schedules.iter().map(|c| (c.at_s, c.active.clone())).collect();
    assert_eq!(at, [(0.0, vec![]), (600.0, vec!["inbound-hour".to_owned()]), (1200.0, vec![])]);
    // Without the schedule, every 4 minutes: 16.
    let without = report(
        &SCHEDULED.replace("start = \"00:10\"", "start = \"23:00\"").replace("end = \"00:20\"", "end = \"23:30\""),
    );
    assert_eq!(without.campaigns[0].attempts, 16);
    // Started at 00:15 instead, the run begins inside the schedule.
    let late = report(&SCHEDULED.replace("duration = \"30m\"", "duration = \"30m\"\nstart = \"2024-01-01T00:15:00Z\""));
    assert_eq!(late.schedules[0].active, ["inbound-hour"]);
    // Nothing until 00:20 (5 minutes in), then at 5, 9, …, 29 minutes.
    assert_eq!(late.campaigns[0].attempts, 14, "{}", late.to_text());
    assert_eq!(late.schedules[1].at_s, 300.0);
}

#[test]
fn a_schedule_names_a_simulated_campaign_or_is_refused() {
    let capped = SCHEDULED.replace(
        "pools = { lines = { reserve = { inbound = 2 } } }",
        "campaigns = { outbound = { max_concurrency = 1 } }",
    );
    // One line for the campaign from 10 to 20: 0, 4, 8 (2 each), 12, 16 (1 each), 20, 24, 28.
    assert_eq!(report(&capped).campaigns[0].attempts, 14);
    let e = problem(&capped.replace("campaigns = { outbound", "campaigns = { nobody"));
    assert!(e.contains("schedules[0].campaigns.nobody") && e.contains("unknown campaign"), "{e}");
}

#[test]
fn overlapping_schedules_whose_reserves_pass_the_limit_are_refused_before_the_run() {
    let both = SCHEDULED.replace(
        "[sim]",
        "[[schedules]]\nname = \"also\"\nstart = \"00:15\"\nend = \"00:25\"\npools = { lines = { reserve = { callback = 1 } } }\n[sim]",
    );
    let e = problem(&both);
    assert!(e.contains("schedules[1].pools.lines") && e.contains("active together"), "{e}");
}

/// One line held for ever by the first caller; everyone after hears busy.
fn one_line_held(retrial: &str) -> Report {
    report(&small(
        1,
        "overflow = { action = \"busy\" }",
        "calls = 50",
        &format!("rate = \"60/h\"\nhold = {{ dist = \"fixed\", value = \"1000h\" }}\n{retrial}"),
    ))
}

#[test]
fn callers_who_hear_busy_call_again_up_to_their_limit_and_count_once_as_people() {
    let r = one_line_held("retrial = { share = 1.0, after = { dist = \"fixed\", value = \"1m\" }, max = 2 }");
    let l = &r.lost;
    // 50 people: the first is answered, the 49 others call three times each.
    assert_eq!(l.people, 50);
    assert_eq!(l.callers, 1 + 49 * 3);
    assert_eq!(l.retrials, 49 * 2);
    assert_eq!(l.lost, 49 * 3);
    assert_eq!(l.people_lost, 49);
    assert_eq!(l.called_again, 49 * 2);
    assert!((l.people_share - 49.0 / 50.0).abs() < 1e-12);
    let f = &r.flows[0];
    assert_eq!((f.people, f.people_lost, f.retrials), (50, 49, 98));
    let text = r.to_text();
    assert!(text.contains("People lost: 49 of 50"), "{text}");

    // Without retrial every call is a person.
    let plain = one_line_held("");
    assert_eq!((plain.lost.people, plain.lost.callers, plain.lost.people_lost), (50, 50, 49));
    assert!(!plain.to_text().contains("People lost"));
}

#[test]
fn calling_again_is_a_property_of_the_people_so_a_share_of_zero_changes_nothing() {
    let base = small(8, QUEUED.replace("voicemail", "busy").as_str(), "duration = \"6h\"\nseed = 3", TRAFFIC);
    let none = report(&base);
    let zero =
        report(&base.replace(
            "patience = ",
            "retrial = { share = 0.0, after = { dist = \"exp\", mean = \"5m\" } }\npatience = ",
        ));
    assert_eq!(none, zero);
    assert_eq!(none.lost.people, none.lost.callers);
}

#[test]
fn hung_up_and_busy_callers_call_again_with_their_own_shares() {
    let base = small(6, QUEUED.replace("voicemail", "busy").as_str(), "duration = \"8h\"\nseed = 11", TRAFFIC);
    let with = |retrial: &str| report(&base.replace("patience = ", &format!("retrial = {retrial}\npatience = ")));
    let busy_only = with("{ busy = 1.0, hung_up = 0.0, after = { dist = \"exp\", mean = \"10m\" }, max = 5 }");
    let l = &busy_only.lost;
    // Nobody who hung up called again: every hang-up of a person's last call is a person
    // lost, so the people lost are at least the hang-ups that were not followed by a call.
    assert!(l.retrials > 0 && l.called_again >= l.retrials);
    assert_eq!(l.people_lost + l.called_again, l.lost);
    assert_eq!(l.people + l.retrials, l.callers);
    let hung_up_only = with("{ busy = 0.0, hung_up = 1.0, after = { dist = \"exp\", mean = \"10m\" }, max = 5 }");
    assert!(hung_up_only.lost.retrials > 0);
    // The same people arrive first in both runs.
    assert_eq!(busy_only.lost.people, hung_up_only.lost.people);
    // The more people call again, the fewer are lost, but the more calls there are.
    let both = with("{ share = 1.0, after = { dist = \"exp\", mean = \"10m\" }, max = 5 }");
    assert!(both.lost.people_share < busy_only.lost.people_share, "{:?}\n{:?}", both.lost, busy_only.lost);
    assert!(both.lost.callers > busy_only.lost.callers);
    // Same seed, same report, retrials and all.
    assert_eq!(both, with("{ share = 1.0, after = { dist = \"exp\", mean = \"10m\" }, max = 5 }"));
}

#[test]
fn retrial_problems_are_placed() {
    let with = |retrial: &str| problem(&small(2, "", "calls = 10", &format!("{TRAFFIC}\nretrial = {retrial}")));
    let e = with("{ after = { dist = \"exp\", mean = \"5m\" } }");
    assert!(e.contains("s.toml:") && e.contains("arrivals[0].retrial: needs `share`"), "{e}");
    let e = with("{ share = 1.5, after = { dist = \"exp\", mean = \"5m\" } }");
    assert!(e.contains("arrivals[0].retrial.share: must be between 0 and 1"), "{e}");
    let e = with("{ share = 0.5, after = { dist = \"exp\", mean = \"5m\" }, max = 0 }");
    assert!(e.contains("arrivals[0].retrial.max: must be between 1 and 20"), "{e}");
    let e = with("{ share = 0.5, after = { dist = \"gamma\", mean = \"5m\" } }");
    assert!(e.contains("arrivals[0].retrial.after.dist"), "{e}");
    let e = with("{ share = 0.5, after = { dist = \"exp\", mean = \"5m\" }, when = \"busy\" }");
    assert!(e.contains("when"), "{e}");
}

/// Two accounts of four lines; callers arrive at account A only. With `spill`, a caller
/// who finds A full is admitted on B at the same instant.
fn two_accounts(overflow: &str) -> String {
    format!(
        r#"
[[classes]]
name = "inbound"
priority = 50

[[pools]]
name = "acct-a"
limit = 4
[[pools]]
name = "acct-b"
limit = 4

[[providers]]
name = "vapi-a"
kind = "vapi"
webhook_secret = "a"
pool = "acct-a"
[[providers]]
name = "vapi-b"
kind = "vapi"
webhook_secret = "b"
pool = "acct-b"

[[flows]]
name = "support-a"
pools = ["acct-a"]
class = "inbound"
match = {{ provider = "vapi-a", number = "+15550001111" }}
vapi = {{ assistant_id = "a" }}
overflow = {overflow}

[[flows]]
name = "support-b"
pools = ["acct-b"]
class = "inbound"
match = {{ provider = "vapi-b", number = "+15550002222" }}
vapi = {{ assistant_id = "b" }}

[sim]
calls = 4000
seed = 11

[[arrivals]]
flow = "support-a"
rate = "60/h"
hold = {{ dist = "exp", mean = "4m" }}
"#
    )
}

#[test]
fn a_spill_to_a_second_account_lowers_lost_callers() {
    let alone = report(&two_accounts("{ action = \"busy\" }"));
    let spill = report(&two_accounts("[{ action = \"spill\", flow = \"support-b\" }, { action = \"busy\" }]"));
    let (a, s) = (&alone.flows[0], &spill.flows[0]);
    assert_eq!(a.offered, s.offered, "the same callers");
    // Four lines at 4 Erlangs lose about 31% (Erlang B); eight lines about 3%.
    assert!(alone.lost.busy > 1000, "{:?}", alone.lost);
    assert!(spill.lost.busy * 5 < alone.lost.busy, "{:?} vs {:?}", spill.lost, alone.lost);
    let spilled = s.overflow_by_action.get("spill").copied().unwrap_or(0);
    assert!(spilled > 0 && spilled + s.overflow_by_action.get("busy").copied().unwrap_or(0) == s.overflowed);
    assert_eq!(spill.lost.busy, s.overflow_by_action.get("busy").copied().unwrap_or(0));
    // Account B carried the spilled calls, never more than its four lines.
    let b = spill.pools.iter().find(|p| p.pool == "acct-b").unwrap();
    assert!(b.peak_used <= 4 && b.peak_used > 0);
    assert_eq!(alone.pools.iter().find(|p| p.pool == "acct-b").unwrap().peak_used, 0);
}
