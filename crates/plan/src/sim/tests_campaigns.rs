//! Simulated campaigns with what `[[campaigns]]` has: a scenario that names the real
//! campaign, outcomes per kind, retries per outcome, windows in a time zone, priorities.

use super::*;

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

/// A real campaign `promo` (weekdays 09:00–17:00 New York, 3 at once, one call every 2 s,
/// its own retry table) and a simulated one that only adds the traffic.
const REAL: &str = r#"
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 10
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[campaigns]]
name = "promo"
flow = "dialer"
simulate = { answer_rate = 0.5, busy_rate = 0.2, voicemail_rate = 0.1, failure_rate = 0.05 }
max_concurrency = 3
calls_per_second = 0.5
default_timezone = "America/New_York"
window = { start = "09:00", end = "17:00", days = ["mon", "tue", "wed", "thu", "fri"] }
retry = { busy = "10m", no_answer = "1h", voicemail = "2h", failed = "5m", backoff = 1, max_attempts = 2 }
SCHEDULES
[sim]
START
[[sim.campaigns]]
campaign = "promo"
leads = 300
talk = { dist = "fixed", value = "3m" }
EXTRA
"#;

fn real(start: &str, schedules: &str, extra: &str) -> String {
    REAL.replace("START", start).replace("SCHEDULES", schedules).replace("EXTRA", extra)
}

#[test]
fn a_scenario_names_the_real_campaign_and_gets_its_pacing() {
    let r = report(&real("", "", ""));
    let c = &r.campaigns[0];
    assert_eq!((c.campaign.as_str(), c.flow.as_str(), c.leads), ("promo", "dialer", 300));
    // Its own cap, not the pool's 10.
    assert_eq!(r.pools[0].peak_used, 3, "{}", r.to_text());
    // Outcomes in the simulated provider's shares; at most two attempts per lead.
    assert_eq!(c.attempts, c.connected + c.busy + c.voicemail + c.no_answer + c.failed);
    assert!(c.busy > 0 && c.voicemail > 0 && c.failed > 0 && c.no_answer > 0, "{c:?}");
    let answered = c.connected as f64 / c.attempts as f64;
    assert!((0.4..0.6).contains(&answered), "{answered}");
    assert!(c.attempts <= 2 * c.leads && c.unreached > 0);
    assert_eq!(c.connected + c.unreached, c.leads);
    // 2024-01-01 is a Monday: the window is 09:00–17:00 in New York, 14:00–22:00 UTC, and
    // the leads are done within it (about 450 attempts at about 115 an hour).
    let finished = c.finished_at_s.expect("finished");
    assert!(finished > 14.0 * 3600.0 + 3.0 * 3600.0 && finished < 22.0 * 3600.0, "{finished}");
    // One call every 2 s at most, 3 lines of 3-minute calls: about 60 an hour at most.
    assert!(c.attempts_per_hour <= 1800.0 && c.attempts_per_hour > 20.0, "{c:?}");
}

#[test]
fn a_campaign_table_written_in_the_scenario_is_read_as_campaigns_are() {
    // The same campaign, written inline instead of named: the same run.
    let inline = real("", "", "").replace(
        "campaign = \"promo\"",
        "campaign = { name = \"promo\", flow = \"dialer\", simulate = { answer_rate = 0.5, busy_rate = 0.2, \
         voicemail_rate = 0.1, failure_rate = 0.05 }, max_concurrency = 3, calls_per_second = 0.50, default_timezone = \
         \"America/New_York\", window = { start = \"09:00\", end = \"17:00\", days = [\"mon\", \"tue\", \"wed\", \
         \"thu\", \"fri\"] }, retry = { busy = \"10m\", no_answer = \"1h\", voicemail = \"2h\", failed = \"5m\", \
         backoff = 1, max_attempts = 2 } }",
    );
    assert_eq!(report(&inline), report(&real("", "", "")));
    // Checked by the configuration's own rules, placed on the scenario's line.
    let bad = problem(&inline.replace("calls_per_second = 0.50", "calls_per_second = -1"));
    assert!(bad.contains("s.toml:") && bad.contains("sim.campaigns[0].campaign.calls_per_second"), "{bad}");
    let unknown = problem(&inline.replace("max_concurrency = 3, calls", "max_concurency = 3, calls"));
    assert!(unknown.contains("sim.campaigns[0].campaign") && unknown.contains("max_concurency"), "{unknown}");
    let e = problem(&real("", "", "").replace("campaign = \"promo\"", "campaign = 3"));
    assert!(e.contains("the name of a [[campaigns]] entry, or a table like one"), "{e}");
}

#[test]
fn the_real_campaigns_days_and_time_zone_hold_the_simulated_one() {
    // Started on Saturday 2024-01-06: nothing before Monday 09:00 New York.
    let weekend = report(&real("start = \"2024-01-06T00:00:00Z\"", "", ""));
    let monday = report(&real("", "", ""));
    let (w, m) = (weekend.campaigns[0].finished_at_s.unwrap(), monday.campaigns[0].finished_at_s.unwrap());
    assert!((w - m - 2.0 * 86_400.0).abs() < 1.0, "two days later: {w} vs {m}");
    // The same leads, the same outcomes: only the calendar moved.
    assert_eq!(weekend.campaigns[0].connected, monday.campaigns[0].connected);
}

#[test]
fn a_schedule_changes_the_real_campaign_by_its_name() {
    let capped = report(&real(
        "",
        "[[schedules]]\nname = \"slow\"\nstart = \"00:00\"\nend = \"24:00\"\ncampaigns = { promo = { max_concurrency = 1 } }",
        "",
    ));
    assert_eq!(capped.pools[0].peak_used, 1, "{}", capped.to_text());
}

#[test]
fn traffic_assumptions_override_the_simulated_providers_rates() {
    let r = report(&real("", "", "answer = 1.0\nbusy = 0.0\nvoicemail = 0.0\nfailed = 0.0"));
    let c = &r.campaigns[0];
    assert_eq!((c.attempts, c.connected, c.unreached), (300, 300, 0));
}

#[test]
fn the_pacing_of_a_named_campaign_is_changed_where_the_server_reads_it() {
    let e = problem(&real("", "", "max_concurrency = 5\nwindow = \"09:00-17:00\""));
    assert!(
        e.contains("s.toml:") && e.contains("sim.campaigns[0].max_concurrency: comes from the campaign `promo`"),
        "{e}"
    );
    assert!(e.contains("sim.campaigns[0].window: comes from the campaign `promo`"), "{e}");
    let e = problem(&real("", "", "flow = \"dialer\""));
    assert!(e.contains("give `campaign` or `flow`, not both"), "{e}");
    let e = problem(&real("", "", "").replace("campaign = \"promo\"", "campaign = \"nobody\""));
    assert!(
        e.contains("sim.campaigns[0].campaign: no [[campaigns]] entry is named `nobody` (campaigns: `promo`)"),
        "{e}"
    );
    let e = problem(&real("", "", "").replace("campaign = \"promo\"", ""));
    assert!(e.contains("`campaign = \"…\"`"), "{e}");
    let e = problem(&real("", "", "answer = 0.7\nbusy = 0.5"));
    assert!(e.contains("answer + busy + voicemail + failed must be at most 1"), "{e}");
}

const TWO: &str = r#"
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 1
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[sim.campaigns]]
name = "low"
flow = "dialer"
leads = 20
answer = 1.0
talk = { dist = "fixed", value = "1m" }
LOW
[[sim.campaigns]]
name = "high"
flow = "dialer"
leads = 20
answer = 1.0
talk = { dist = "fixed", value = "1m" }
HIGH
"#;

#[test]
fn the_higher_priority_campaign_takes_the_line_first() {
    let r = report(&TWO.replace("LOW", "priority = 0").replace("HIGH", "priority = 5"));
    let (low, high) = (&r.campaigns[0], &r.campaigns[1]);
    assert!(high.finished_at_s.unwrap() < low.finished_at_s.unwrap(), "{}", r.to_text());
    // Equal priorities: file order.
    let r = report(&TWO.replace("LOW", "").replace("HIGH", ""));
    assert!(r.campaigns[0].finished_at_s.unwrap() < r.campaigns[1].finished_at_s.unwrap());
}

#[test]
fn retries_and_retry_after_are_a_retry_table_with_one_delay_and_no_backoff() {
    let text = |retry: &str| {
        format!(
            r#"
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 4
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[[sim.campaigns]]
flow = "dialer"
leads = 200
connect_rate = 0.3
talk = {{ dist = "fixed", value = "2m" }}
{retry}
"#
        )
    };
    let dial = |retry: &str| report(&text(retry));
    let legacy = dial("retries = 2\nretry_after = \"30m\"");
    let table =
        dial("retry = { busy = \"30m\", no_answer = \"30m\", voicemail = \"30m\", failed = \"30m\", backoff = 1, max_attempts = 3 }");
    assert_eq!(legacy, table);
    // Per outcome, with backoff: another run.
    let backoff = dial("retry = { no_answer = \"30m\", backoff = 3, max_attempts = 3 }");
    assert_eq!(backoff.campaigns[0].attempts, legacy.campaigns[0].attempts, "the same attempts");
    assert!(backoff.campaigns[0].finished_at_s > legacy.campaigns[0].finished_at_s);
    let e = problem(&text("retries = 2\nretry = { max_attempts = 3 }"));
    assert!(e.contains("sim.campaigns[0].retries: give `retry = { … }` or `retries`/`retry_after`, not both"), "{e}");
}

#[test]
fn the_chart_splits_calls_by_class_and_shows_what_happened_over_the_day() {
    let r = report(
        r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10
[[pools]]
name = "lines"
limit = 6
reserve = { inbound = 2 }
[[flows]]
name = "support"
pools = ["lines"]
class = "inbound"
queue = { max_wait = "30s" }
overflow = { action = "busy" }
[[flows]]
name = "dialer"
pools = ["lines"]
class = "outbound"
[sim]
duration = "6h"
warmup = "1h"
[[arrivals]]
flow = "support"
rate = "60/h"
hold = { dist = "exp", mean = "5m" }
patience = { dist = "exp", mean = "20s" }
[[sim.campaigns]]
flow = "dialer"
leads = 300
answer = 0.5
talk = { dist = "fixed", value = "3m" }
"#,
    );
    let s = &r.series;
    let names: Vec<&str> = s.classes.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["inbound", "outbound"]);
    assert!(s.classes.iter().all(|l| l.mean.iter().any(|&v| v > 0.0)));
    // Counts per hour of each interval, over the whole run (the warm-up too).
    let refused = s.outcomes.iter().find(|l| l.name == "refused (busy)").expect("refused");
    let total: f64 = refused.mean.iter().map(|per_h| per_h * s.bucket_s / 3600.0).sum();
    assert!(total.round() >= r.flows[0].overflowed as f64, "{total} vs {}", r.flows[0].overflowed);
    assert!(s.outcomes.iter().any(|l| l.name == "hung up waiting"));
    let svg = chart(std::slice::from_ref(&r));
    for want in ["Calls in progress by class", "Callers not answered", "refused (busy)", "warm-up (not counted)"] {
        assert!(svg.contains(want), "{want}");
    }
    // One class of traffic: no class panel, and no extra work in the run.
    let one = report(
        "[[classes]]\nname = \"inbound\"\npriority = 50\n[[pools]]\nname = \"lines\"\nlimit = 2\n[[flows]]\n\
         name = \"support\"\npools = [\"lines\"]\nclass = \"inbound\"\n[sim]\ncalls = 200\n[[arrivals]]\n\
         flow = \"support\"\nrate = \"60/h\"\nhold = { dist = \"exp\", mean = \"2m\" }\n",
    );
    assert!(one.series.classes.is_empty());
    assert!(!chart(std::slice::from_ref(&one)).contains("by class"));
}

#[test]
fn a_campaign_alone_is_measured_until_its_last_call_ends() {
    // No duration and no callers: the measured window (and the pool's utilization over it)
    // ends with the campaign's last call, not at a timer its calls left behind (the
    // leases' expiry entries once stretched it by up to an hour of idle lines).
    let r = report(&real("seed = 3", "", ""));
    let c = &r.campaigns[0];
    assert_eq!(c.remaining, 0);
    assert_eq!(Some(r.simulated_s), c.finished_at_s);
}
