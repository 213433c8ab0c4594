//! The config's adaptive caps, breakers and alerts in a run: `callgate_policy`, the code
//! the server's operating layer runs, driven from modelled latencies and dependency
//! outcomes on simulated time.

use super::*;

fn report(text: &str) -> Report {
    let sc = Scenario::from_toml_str(text, None).unwrap_or_else(|e| panic!("{e}"));
    run(&sc, &RunOptions::default(), &mut |_| {}).unwrap()
}

/// One pool `lines` of `limit` (plus `pool_extra`), one flow `support` (plus
/// `flow_extra`), `extra` config sections, `sim` lines, and arrivals.
fn scenario(limit: u32, pool_extra: &str, flow_extra: &str, extra: &str, sim: &str, arrivals: &str) -> String {
    format!(
        r#"
[[classes]]
name = "inbound"
priority = 50

[[pools]]
name = "lines"
limit = {limit}
{pool_extra}

[[flows]]
name = "support"
pools = ["lines"]
class = "inbound"
{flow_extra}

{extra}

[sim]
{sim}

[[arrivals]]
flow = "support"
{arrivals}
"#
    )
}

const BREAKER: &str = r#"
[[breakers]]
name = "llm"
error_rate = 0.5
min_calls = 10
window = "30s"
open_for = "60s"
half_open_probes = 2
"#;

fn llm_outage(dependency: &str) -> Report {
    report(&scenario(
        20,
        "",
        "depends_on = [\"llm\"]\nfallback = { action = \"voicemail\" }",
        BREAKER,
        &format!("duration = \"3h\"\nseed = 3\n{dependency}"),
        "rate = \"900/h\"\nhold = { dist = \"exp\", mean = \"60s\" }",
    ))
}

#[test]
fn a_breaker_opens_in_simulation_when_the_modelled_dependency_fails_and_closes_after() {
    // The LLM fails every call from 1h to 1h20m.
    let r = llm_outage(
        "[[sim.dependencies]]\nname = \"llm\"\nerror_rate = 0.0\n\
         outages = [{ at = \"1h\", for = \"20m\", error_rate = 1.0 }]",
    );
    let ops = r.ops.as_ref().expect("breakers are configured");
    let b = &ops.breakers[0];
    assert!(b.opened >= 1, "it opened: {b:?}");
    assert!(b.fallbacks > 0, "callers went to the fallback while it was open");
    let flow = &r.flows[0];
    assert_eq!(flow.overflow_by_reason.dependency_down, b.fallbacks);
    assert_eq!(flow.overflow_by_action.get("voicemail"), Some(&b.fallbacks), "the flow's fallback answered them");
    let opened: Vec<f64> =
        ops.log.iter().filter(|l| l.what.starts_with("breaker `llm` closed → open")).map(|l| l.at_s).collect();
    // 900 calls an hour is one every 4 s: 10 failed calls (min_calls) take about 40 s.
    assert!((3600.0..3600.0 + 120.0).contains(&opened[0]), "opened soon after the outage began: {opened:?}");
    let closed: Vec<f64> = ops.log.iter().filter(|l| l.what.contains("→ closed")).map(|l| l.at_s).collect();
    let last = *closed.last().expect("it closed again");
    assert!(
        (4800.0..4800.0 + 300.0).contains(&last),
        "closed once the outage ended and a probe round passed: {closed:?}"
    );
    // While it was open, no caller reached a broken agent beyond the probes.
    assert!(b.failed < 200, "{b:?}");

    let text = r.to_text();
    assert!(text.contains("Operating policies\n"), "{text}");
    assert!(text.contains("breaker `llm` closed → open"), "the text shows when it opened: {text}");

    // The same traffic with a healthy dependency: the breaker never opens.
    let healthy = llm_outage("[[sim.dependencies]]\nname = \"llm\"\nerror_rate = 0.0");
    let hb = &healthy.ops.as_ref().unwrap().breakers[0];
    assert_eq!((hb.opened, hb.fallbacks), (0, 0));
    assert_eq!(healthy.flows[0].overflow_by_reason.dependency_down, 0);
}

#[test]
fn an_alerts_set_limit_applies_at_its_time_and_is_undone_when_it_resolves() {
    let alert = r#"
[[alerts]]
name = "saturated"
pool = "lines"
metric = "utilization"
above = 0.9
for = "2m"
resolve = { below = 0.4, for = "5m" }
undo = true
actions = [{ action = "set_limit", pool = "lines", limit = 16 }, { action = "notify", url = "http://example.invalid/hook" }]
"#;
    // 10 lines, 14 erlangs offered from 1h to 2h (a burst), 2 erlangs otherwise.
    let r = report(&scenario(
        10,
        "",
        "queue = { max_wait = \"60s\" }\noverflow = { action = \"voicemail\" }",
        alert,
        "duration = \"4h\"\nseed = 11",
        "rate = \"30/h\"\nbursts = [{ at = \"1h\", for = \"1h\", rate = \"180/h\" }]\nhold = { dist = \"exp\", mean = \"4m\" }",
    ));
    let ops = r.ops.as_ref().expect("an alert is configured");
    let a = &ops.alerts[0];
    assert_eq!((a.fired, a.resolved), (1, 1), "{:#?}", ops.log);
    assert_eq!(a.notifications, 1);
    assert_eq!(a.actions, ["pool `lines` limit 10 → 16"]);
    let at = |needle: &str| ops.log.iter().find(|l| l.what.contains(needle)).map(|l| l.at_s);
    let fired = at("alert `saturated` fired").unwrap();
    assert!((3600.0 + 120.0..7200.0).contains(&fired), "fired in the burst, `for` after it began: {fired}");
    assert_eq!(at("limit 10 → 16"), Some(fired), "the limit changed at the firing evaluation");
    let resolved = at("alert `saturated` resolved").unwrap();
    assert!(resolved > 7200.0, "resolved after the burst: {resolved}");
    assert_eq!(at("limit 16 → 10"), Some(resolved), "undone when it resolved");
    assert!(r.pools[0].peak_used > 10 && r.pools[0].peak_used <= 16, "the raised limit was used");
}

fn adaptive(pool_model: &str) -> Report {
    report(&scenario(
        30,
        "adaptive = { algorithm = \"aimd\", min = 5, timeout = \"3s\", window = { min = \"1s\", max = \"1s\", min_samples = 1 } }",
        "queue = { max_wait = \"30s\" }\noverflow = { action = \"voicemail\" }",
        "",
        &format!("duration = \"2h\"\nseed = 5\n{pool_model}"),
        "rate = \"1500/h\"\nhold = { dist = \"exp\", mean = \"60s\" }",
    ))
}

#[test]
fn an_adaptive_cap_shrinks_under_modelled_latency() {
    // 1 s at light load, +250 ms per call beyond 10 in use: beyond 18 a call takes more
    // than the 3 s aimd counts as a drop, so the cap settles below that.
    let r = adaptive(
        "[[sim.pools]]\npool = \"lines\"\nlatency = { dist = \"fixed\", value = \"1s\" }\n\
         latency_per_call = \"250ms\"\nknee = 10",
    );
    let a = &r.ops.as_ref().unwrap().adaptive[0];
    assert_eq!(a.algorithm, "aimd");
    assert!(a.samples > 1000 && a.cap_changes > 0, "{a:?}");
    assert!(a.lowest_cap <= 18, "the cap came down where calls get slow: {a:?}");
    assert!(r.pools[0].peak_used < 30, "the limit of 30 was never reached: {:?}", r.pools[0]);

    // Without the latency model the pool gets no samples: its cap stays at the limit.
    let flat = adaptive("");
    let a = &flat.ops.as_ref().unwrap().adaptive[0];
    assert_eq!((a.samples, a.cap_changes, a.final_cap), (0, 0, 30));
    assert!(flat.flows[0].overflowed < r.flows[0].overflowed, "the lower cap cost callers");
}

#[test]
fn a_campaign_paused_by_its_flows_breaker_probes_when_it_turns_half_open_and_resumes() {
    let text = format!(
        r#"
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "lines"
limit = 60

[[flows]]
name = "dial"
pools = ["lines"]
class = "outbound"
depends_on = ["llm"]

{BREAKER}

[sim]
duration = "3h"
seed = 2

[[sim.dependencies]]
name = "llm"
outages = [{{ at = "1h", for = "30m", error_rate = 1.0 }}]

[[sim.campaigns]]
flow = "dial"
leads = 100000
answer = 0.5
talk = {{ dist = "fixed", value = "2m" }}
cps = 1
"#
    );
    let r = report(&text);
    let ops = r.ops.as_ref().unwrap();
    let opened = ops.log.iter().find(|l| l.what.contains("closed → open")).expect("it opened").at_s;
    assert!((3600.0..3700.0).contains(&opened), "{opened}");
    // As in the server, a campaign paused by a breaker resumes when it turns half-open:
    // its calls are the flow's only traffic, so they are the probes. While the outage
    // lasts the probes fail and the breaker opens again (pausing it again); once the
    // outage ended (1h30m) a probe round succeeds, the breaker closes and the campaign
    // dials on. (Before, half-open kept it paused: nothing probed, and the campaign
    // stayed paused for the rest of the run.)
    assert!(ops.log.iter().any(|l| l.what.contains("open → half_open")), "{:#?}", ops.log);
    let closed = ops.log.iter().find(|l| l.what.contains("half_open → closed")).expect("it closed").at_s;
    assert!((5400.0..5400.0 + 300.0).contains(&closed), "closed soon after the outage ended: {closed}");
    assert!(ops.log.iter().any(|l| l.what.contains("half_open → open")), "failed probe rounds: {:#?}", ops.log);
    let c = &r.campaigns[0];
    assert!(c.attempts > 0 && c.remaining > 0, "{c:?}");
    let b = &ops.breakers[0];
    assert!(b.failed <= 60 + 2 * 30, "the campaign called into the outage only with probes: {b:?}");
}

#[test]
fn dependency_and_pool_models_name_what_the_config_has() {
    let text = scenario(
        5,
        "",
        "",
        "",
        "duration = \"1h\"\n\n[[sim.dependencies]]\nname = \"nope\"\n\n[[sim.pools]]\npool = \"lines\"\n\
         latency = { dist = \"fixed\", value = \"1s\" }\nknee = -1",
        "rate = \"60/h\"\nhold = { dist = \"exp\", mean = \"1m\" }",
    );
    let e = Scenario::from_toml_str(&text, Some(std::path::Path::new("s.toml"))).unwrap_err().message;
    assert!(e.contains("sim.dependencies[0].name: no [[breakers]] entry is named `nope`"), "{e}");
    assert!(e.contains("sim.pools[0].knee: must be between 0 and 1,000,000"), "{e}");
    assert!(e.contains("s.toml:"), "{e}");
}

#[test]
fn the_simulator_and_the_server_run_one_implementation_of_the_policies() {
    // Both the server's operating layer and the simulator depend on callgate-policy, and
    // neither builds the core's algorithms or steps an alert itself.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for krate in ["ops", "plan"] {
        let manifest = std::fs::read_to_string(root.join(format!("crates/{krate}/Cargo.toml"))).unwrap();
        assert!(manifest.contains("callgate-policy"), "{krate} depends on callgate-policy");
        let mut stack = vec![root.join(format!("crates/{krate}/src"))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.file_name().is_some_and(|n| n == "tests_ops.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for own in ["Breaker::new(", "AdaptiveLimit::new(", "fn step(", "impl AlertState"] {
                    assert!(!text.contains(own), "{} has its own `{own}`", path.display());
                }
            }
        }
    }
}

#[test]
fn a_provider_refusal_is_a_drop_for_the_adaptive_cap_and_gives_the_lead_back() {
    // The account takes 12 calls at once though the pool says 20: beyond, the provider
    // refuses. The aimd cap drops on each refusal and settles near the account's size;
    // the refused leads are dialed again later, so every lead is still called once.
    let text = r#"
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "lines"
limit = 20
adaptive = { algorithm = "aimd", min = 2, window = { min = "1s", max = "1s", min_samples = 1 } }

[[flows]]
name = "dial"
pools = ["lines"]
class = "outbound"

[sim]
seed = 4

[[sim.pools]]
pool = "lines"
latency = { dist = "fixed", value = "500ms" }
provider_limit = 12

[[sim.campaigns]]
flow = "dial"
leads = 400
answer = 0.5
talk = { dist = "fixed", value = "2m" }
cps = 2
"#;
    let r = report(text);
    let a = &r.ops.as_ref().unwrap().adaptive[0];
    assert!(a.refusals > 0 && a.lowest_cap <= 12, "{a:?}");
    let c = &r.campaigns[0];
    assert_eq!(c.attempts, 400, "refused attempts are not counted: {c:?}");
    assert_eq!(c.remaining, 0, "{c:?}");
    assert!(r.pools[0].peak_used <= 13, "the cap kept the pool near the account's size: {:?}", r.pools[0]);
}

#[test]
fn the_policies_second_and_the_schedules_minute_do_not_keep_a_run_alive() {
    // Both are clock events that go on only while something else is to happen: a run
    // with both ends with its last call, not at the end of time.
    let schedule = r#"
[[schedules]]
name = "peak"
start = "10:00"
end = "14:00"
pools = { lines = { limit = 25 } }
"#;
    let r = report(&scenario(
        20,
        "",
        "depends_on = [\"llm\"]\nfallback = { action = \"voicemail\" }",
        &format!("{BREAKER}\n{schedule}"),
        "duration = \"2h\"\nseed = 3\n[[sim.dependencies]]\nname = \"llm\"",
        "rate = \"900/h\"\nhold = { dist = \"exp\", mean = \"60s\" }",
    ));
    assert_eq!(r.schedules.len(), 1, "{:?}", r.schedules);
    // 2 h of arrivals and their calls: about 7,200 ticks and 120 minutes, not years.
    assert!(r.events < 50_000, "{}", r.events);
}
