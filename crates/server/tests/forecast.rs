//! Forecasts in a running server, on a manual clock: `GET /v1/forecast` from the call
//! history in the data directory, the inbound reserve that follows the forecast, changing
//! at 15-minute boundaries, the early-warning alert that fires before the peak, and the
//! prewarm hook called at its lead time.

mod support;

use callgate_core::clock::Clock as _;
use callgate_forecast::history::{Call, History};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use support::{eventually, receiver, secs, ManualClock, TestServer};

/// Twenty lines; inbound holds back what the forecast says it needs, at least 1 and at
/// most 12; outbound gets the rest.
const FORECAST: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 20
reserve = { inbound = "forecast" }
forecast = { floor = 1, ceiling = 12, service_level = 0.8, within = "20s", patience = "60s", weeks = 3 }

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"

[[flows]]
name = "outbound"
pools = ["acct"]
class = "outbound"
"#;

/// Monday 16 November 2026, 00:00 UTC.
const MONDAY: u64 = 1_794_787_200_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY_MS: u64 = 24 * HOUR;

/// Three weeks of history before `MONDAY` + 08:45: every day from 09:00 to 11:00 UTC, 20
/// calls of five minutes per 15 minutes; one call an hour otherwise.
fn write_history(dir: &Path) {
    let mut h = History::open(dir).unwrap();
    let start = MONDAY - 21 * DAY_MS;
    let end = MONDAY + 8 * HOUR + 45 * MINUTE;
    let mut calls = Vec::new();
    let mut t = start;
    while t < end {
        let hour = (t % DAY_MS) / HOUR;
        let n = if (9..11).contains(&hour) {
            20
        } else if t.is_multiple_of(HOUR) {
            1
        } else {
            0
        };
        for k in 0..n {
            let at = t + k * 30_000;
            calls.push(Call {
                key: format!("t:{at}"),
                flow: Some("support".into()),
                number: None,
                started_at_ms: at,
                ended_at_ms: Some(at + 5 * MINUTE),
                outcome: None,
            });
        }
        t += 15 * MINUTE;
    }
    h.add("csv", &calls).unwrap();
}

#[tokio::test]
async fn the_forecast_reserve_changes_at_interval_boundaries() {
    let clock = ManualClock::at(MONDAY + 8 * HOUR + 50 * MINUTE);
    let s = TestServer::start_with_clock(FORECAST, clock.clone()).await;
    let app = s.server().app.clone();
    // Before any forecast: the floor, and why.
    let pool = s.pool("acct").await;
    assert_eq!(pool["reserve"], json!({ "inbound": 1 }));
    assert_eq!(pool["forecast_reserve"]["source"], "floor", "{pool}");

    write_history(&s.data_dir());
    app.forecasts.refresh(app.reload.current(), clock.now_ms()).await;
    let plan = app.forecasts.plan("acct").unwrap();
    assert!(plan.note.is_none(), "{:?}", plan.note);
    let needed = plan.step(MONDAY + 9 * HOUR).unwrap().lines;
    let peak = plan.units(MONDAY + 9 * HOUR).0;
    assert!((6..=12).contains(&needed), "the peak needs several lines: {needed}");
    // Six to seven calls busy on average: the free lines held back are the rest.
    assert!((2..needed).contains(&peak), "{peak} of {needed}");
    let mut events = support::providers::Events::subscribe(&s).await;

    // 08:59:59.999: still the quiet interval, still the floor.
    clock.set(MONDAY + 9 * HOUR - 1);
    let _ = app.schedules.apply(false).await;
    let pool = s.pool("acct").await;
    assert_eq!(pool["reserve"], json!({ "inbound": 1 }), "{pool}");
    assert_eq!(pool["forecast_reserve"]["source"], "forecast");
    assert_eq!(pool["forecast_reserve"]["interval_start_ms"], MONDAY + 8 * HOUR + 45 * MINUTE);

    // 09:00: the peak's interval holds back what the forecast needs.
    clock.set(MONDAY + 9 * HOUR);
    let _ = app.schedules.apply(false).await;
    let pool = s.pool("acct").await;
    assert_eq!(pool["reserve"], json!({ "inbound": peak }), "{pool}");
    assert_eq!(pool["forecast_reserve"]["needed"], needed);
    assert_eq!(pool["forecast_reserve"]["interval_start_ms"], MONDAY + 9 * HOUR);
    // The next two hours, interval by interval: the peak until 11:00.
    let next = pool["forecast_reserve"]["next"].as_array().unwrap().clone();
    assert_eq!(next.len(), 8);
    assert_eq!(next[0]["start_ms"], MONDAY + 9 * HOUR + 15 * MINUTE);
    assert!(next[..7].iter().all(|n| n["units"].as_u64().unwrap() > 1), "{next:?}");
    let page = s.client.get(format!("{}/live.js", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("forecast_reserve") && page.contains("reserve_changed"), "the live page shows the reserve");
    let e = events.next_of("reserve_changed").await;
    assert_eq!((e["pool"].clone(), e["units"].clone(), e["was"].clone()), (json!("acct"), json!(peak), json!(1)));
    assert_eq!(e["source"], "forecast");
    let metrics = s.metrics().await;
    let line = format!("callgate_forecast_reserve_units{{pool=\"acct\",class=\"inbound\",source=\"forecast\"}} {peak}");
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    assert!(metrics.contains(&format!("callgate_recommended_capacity{{pool=\"acct\"}} {needed}")));

    // Outbound gets every line inbound will not need: 20 - peak, and no more.
    for i in 0..20 - peak {
        let (status, v) = s.acquire(json!({ "flow": "outbound", "key": format!("o{i}") })).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, _) = s.acquire(json!({ "flow": "outbound", "key": "one-too-many" })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = s.acquire(json!({ "flow": "support", "key": "caller" })).await;
    assert_eq!(status, StatusCode::OK, "inbound takes its reserve");

    // 11:00: quiet again; the ticker puts the floor back by itself.
    clock.set(MONDAY + 11 * HOUR);
    eventually("the reserve is back at its floor", secs(10), || async {
        s.pool("acct").await["reserve"] == json!({ "inbound": 1 })
    })
    .await;
}

#[tokio::test]
async fn the_forecast_is_served_from_the_history() {
    let clock = ManualClock::at(MONDAY + 8 * HOUR + 45 * MINUTE);
    let s = TestServer::start_with_clock(FORECAST, clock).await;
    write_history(&s.data_dir());
    let (status, v) = s.get("/v1/forecast?flow=support&days=1").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["from"], "2026-11-16T08:45:00Z");
    assert_eq!(v["flow"], "support");
    let rows = v["intervals"].as_array().unwrap();
    assert_eq!(rows.len(), 96);
    let at = |start: &str| rows.iter().find(|r| r["start"] == start).unwrap().clone();
    let (peak, night) = (at("2026-11-16T09:30:00Z"), at("2026-11-16T20:00:00Z"));
    assert!((peak["arrivals"].as_f64().unwrap() - 20.0).abs() < 2.0, "{peak}");
    assert!(night["arrivals"].as_f64().unwrap() < 2.0, "{night}");
    assert_eq!(peak["aht_s"], 300);
    assert!(peak["low"].as_f64() <= peak["arrivals"].as_f64() && peak["arrivals"].as_f64() <= peak["high"].as_f64());

    for (query, code) in [
        ("days=15", "bad_request"),
        ("level=2", "bad_request"),
        ("color=blue", "bad_request"),
        ("flow=nobody", "not_enough_history"),
    ] {
        let (status, v): (StatusCode, Value) = s.get(&format!("/v1/forecast?{query}")).await;
        assert!(status.is_client_error(), "{query}: {status} {v}");
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
}

/// A plan that needs `quiet` lines and expects `quiet_sessions` until 09:00, then `peak`
/// lines and `peak_sessions` until 11:00, for Monday.
fn plan(quiet: (u32, f64), peak: (u32, f64)) -> callgate_server::forecast::Plan {
    let steps = (0..96u64)
        .map(|i| {
            let start = MONDAY + i * 15 * MINUTE;
            let (lines, sessions) = if (9 * 4..11 * 4).contains(&i) { peak } else { quiet };
            callgate_server::forecast::Step { start_ms: start, arrivals: sessions * 3.0, sessions, lines }
        })
        .collect();
    callgate_server::forecast::Plan {
        class: "inbound".into(),
        floor: 1,
        ceiling: 12,
        steps,
        note: None,
        // Fresh at 08:00, so the hourly refit (from an empty history) leaves it until 09:00.
        computed_at_ms: MONDAY + 8 * HOUR,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_early_warning_fires_before_the_peak() {
    let (hook, got) = receiver().await;
    let toml = format!(
        r#"{FORECAST}
[[alerts]]
name = "peak-ahead"
pool = "acct"
metric = "forecast_shortfall"
lookahead = "30m"
above = 0
actions = [{{ action = "notify", url = "{hook}" }}]
"#
    );
    let clock = ManualClock::at(MONDAY + 8 * HOUR);
    let s = TestServer::start_with_clock(&toml, clock.clone()).await;
    let app = s.server().app.clone();
    // The peak needs 26 lines of the 20.
    app.forecasts.set_plan("acct", plan((2, 1.0), (26, 12.0)));
    app.governor.evaluate_alerts().await;
    let (_, alerts) = s.get("/v1/alerts").await;
    assert_eq!(alerts[0]["state"], "quiet", "{alerts}");
    assert_eq!(alerts[0]["value"], -18.0, "08:00: 2 lines needed in the next 30 minutes, 20 there");
    // 08:31: the 09:00 interval starts within the lookahead: 6 lines short, before the peak.
    clock.set(MONDAY + 8 * HOUR + 31 * MINUTE);
    app.governor.evaluate_alerts().await;
    let (_, alerts) = s.get("/v1/alerts").await;
    assert_eq!(alerts[0]["state"], "firing", "{alerts}");
    assert_eq!(alerts[0]["value"], 6.0);
    eventually("the notification arrives", secs(10), || async { !got.lock().unwrap().is_empty() }).await;
    assert!(app.governor.now_ms() < MONDAY + 9 * HOUR, "it fired before the peak");
}

#[tokio::test]
async fn a_prewarm_hook_is_called_at_its_lead_time() {
    let (hook, got) = receiver().await;
    let toml = format!("{FORECAST}\n[[prewarm]]\nname = \"workers\"\npool = \"acct\"\nurl = \"{hook}\"\nlead = \"10m\"\nmin_rise = 2\n");
    let clock = ManualClock::at(MONDAY + 8 * HOUR + 40 * MINUTE);
    let s = TestServer::start_with_clock(&toml, clock.clone()).await;
    let app = s.server().app.clone();
    app.forecasts.set_plan("acct", plan((2, 1.0), (9, 7.5)));
    // 08:49:59.999: not yet (the ticker looks every second).
    clock.set(MONDAY + 8 * HOUR + 50 * MINUTE - 1);
    let quiet = support::holds_within(secs(3), || async { !got.lock().unwrap().is_empty() }).await;
    assert!(!quiet, "called before its lead time: {:?}", got.lock().unwrap());
    // 08:50: ten minutes before the 09:00 rise.
    clock.set(MONDAY + 8 * HOUR + 50 * MINUTE);
    eventually("the hook is called", secs(10), || async { !got.lock().unwrap().is_empty() }).await;
    let call = got.lock().unwrap()[0].clone();
    assert_eq!(call["hook"], "workers");
    assert_eq!(call["pool"], "acct");
    assert_eq!(call["at"], "2026-11-16T09:00:00Z");
    assert_eq!(call["expected_sessions"], 7.5);
    assert_eq!(call["lines"], 9);
    // Once per rise; the fall at 11:00 calls nothing.
    clock.set(MONDAY + 10 * HOUR + 55 * MINUTE);
    assert!(!support::holds_within(secs(2), || async { got.lock().unwrap().len() > 1 }).await);
    assert_eq!(
        support::providers::metric(&s, "callgate_prewarm_calls_total{hook=\"workers\",result=\"ok\"}").await,
        1.0
    );
}

#[tokio::test]
async fn the_servers_own_calls_become_history() {
    let clock = ManualClock::at(MONDAY + 9 * HOUR);
    let s = TestServer::start_with_clock(FORECAST, clock.clone()).await;
    let (status, _) = s.acquire(json!({ "flow": "support", "key": "call-1" })).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(90_000);
    let (status, v) = s.delete("/v1/leases?key=call-1").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let dir = s.data_dir();
    let calls = || {
        let h = History::open(&dir).unwrap();
        let mut out = Vec::new();
        h.scan(Some("support"), 0, u64::MAX / 2, |start, end| out.push((start, end))).unwrap();
        out
    };
    eventually("the call and its end are in the history", secs(10), || async {
        calls() == [(MONDAY + 9 * HOUR, Some(MONDAY + 9 * HOUR + 90_000))]
    })
    .await;
    assert_eq!(support::providers::metric(&s, "callgate_history_records_dropped_total").await, 0.0);
}

/// Without a forecast the server records nothing (it would cost admission CPU for no
/// reader), unless `[server] record_history = true` asks for it.
#[tokio::test]
async fn the_history_is_recorded_only_when_a_forecast_or_the_setting_asks() {
    const PLAIN: &str = "[[pools]]\nname = \"acct\"\nlimit = 5\n\n[[flows]]\nname = \"support\"\npools = [\"acct\"]\nclass = \"inbound\"\n";
    for (config, recorded) in [(PLAIN.to_owned(), false), (format!("[server]\nrecord_history = true\n\n{PLAIN}"), true)]
    {
        let clock = ManualClock::at(MONDAY + 9 * HOUR);
        let s = TestServer::start_with_clock(&config, clock.clone()).await;
        let (status, _) = s.acquire(json!({ "flow": "support", "key": "call-1" })).await;
        assert_eq!(status, StatusCode::OK);
        clock.advance(60_000);
        let (status, _) = s.delete("/v1/leases?key=call-1").await;
        assert_eq!(status, StatusCode::OK);
        let dir = s.data_dir();
        let calls = || {
            let h = History::open(&dir).unwrap();
            let mut n = 0;
            h.scan(Some("support"), 0, u64::MAX / 2, |_, end| n += usize::from(end.is_some())).unwrap();
            n
        };
        if recorded {
            eventually("the call is in the history", secs(10), || async { calls() == 1 }).await;
        } else {
            // No recorder: its writer opens (creates) the history as the server starts, and
            // nothing else of this configuration does.
            assert!(!dir.join("history.sqlite").exists(), "nothing records the server's calls");
        }
    }
}

/// `FORECAST` with a campaign of 14 lines dialing through the pool from 08:00 to 20:00
/// UTC, and prices.
const PRICED: &str = r#"
[[campaigns]]
name = "renewals"
flow = "outbound"
simulate = {}
max_concurrency = 14
window = { start = "08:00", end = "20:00" }

[pricing]
per_line_month = 45
lost_caller = 4
campaign_call = 0.5
"#;

#[tokio::test]
async fn a_pools_shortfall_is_priced_from_its_campaigns_and_the_pricing() {
    let clock = ManualClock::at(MONDAY + 8 * HOUR + 45 * MINUTE);
    let s = TestServer::start_with_clock(&format!("{FORECAST}{PRICED}"), clock).await;
    write_history(&s.data_dir());
    let (status, v) = s.get("/v1/forecast?pool=acct&days=1").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((&v["pool"], &v["flow"]), (&json!("acct"), &Value::Null), "the pool's inbound flows: {v}");
    let rows = v["intervals"].as_array().unwrap();
    let peak = rows.iter().map(|r| r["lines"].as_u64().unwrap()).max().unwrap();
    assert!(peak > 6, "the peak needs more than the 6 lines the campaign leaves: {peak}");
    let sf = &v["shortfall"];
    assert_eq!((sf["limit"].as_u64(), sf["campaign_lines"].as_u64()), (Some(20), Some(14)), "{sf}");
    // The peak (09:00-11:00), short by what the campaign's 14 lines leave it.
    let periods = sf["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 1, "{sf}");
    assert_eq!(periods[0]["start"], "2026-11-16T09:00:00Z");
    assert_eq!(periods[0]["end"], "2026-11-16T11:00:00Z");
    assert_eq!(periods[0]["lines_short"].as_u64(), Some(peak + 14 - 20));
    assert_eq!(periods[0]["inbound_short"], 0);
    // Its calls fit in the quiet hours of its window: shifting costs nothing.
    assert_eq!(sf["cheapest"], "shift_campaign", "{sf}");
    assert_eq!(sf["currency"], "$");
    let shift = sf["choices"].as_array().unwrap().iter().find(|c| c["option"] == "shift_campaign").unwrap();
    assert_eq!((shift["unplaced_calls"].as_f64(), shift["total"].as_f64()), (Some(0.0), Some(0.0)), "{shift}");

    let (status, v) = s.get("/v1/forecast?pool=nowhere").await;
    assert_eq!((status, &v["error"]["code"]), (StatusCode::NOT_FOUND, &json!("unknown_pool")));
}

#[tokio::test]
async fn todays_forecast_is_served_against_the_arrivals_so_far() {
    let clock = ManualClock::at(MONDAY + 10 * HOUR + 5 * MINUTE);
    let s = TestServer::start_with_clock(FORECAST, clock.clone()).await;
    let app = s.server().app.clone();
    write_history(&s.data_dir());
    // Today's morning: 18 calls in each interval from 09:00 to 10:00, 3 since 10:00.
    let mut today = Vec::new();
    for (from, n) in [
        (9 * HOUR, 18),
        (9 * HOUR + 15 * MINUTE, 18),
        (9 * HOUR + 30 * MINUTE, 18),
        (9 * HOUR + 45 * MINUTE, 18),
        (10 * HOUR, 3),
    ] {
        for k in 0..n {
            let at = MONDAY + from + k * 10_000;
            today.push(Call {
                key: format!("today:{at}"),
                flow: Some("support".into()),
                number: None,
                started_at_ms: at,
                ended_at_ms: None,
                outcome: None,
            });
        }
    }
    History::open(&s.data_dir()).unwrap().add("csv", &today).unwrap();
    let (status, v) = s.get("/v1/forecast/today?pool=acct").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["note"].as_str().unwrap().contains("being fitted"), "before a fit: {v}");

    app.forecasts.refresh(app.reload.current(), clock.now_ms()).await;
    let (status, v) = s.get("/v1/forecast/today?pool=acct").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((&v["date"], &v["start_ms"]), (&json!("2026-11-16"), &json!(MONDAY)), "{v}");
    assert!(v.get("note").is_none(), "{v}");
    let rows = v["intervals"].as_array().unwrap();
    assert_eq!(rows.len(), 96);
    let row = |h: u64, m: u64| rows[((h * HOUR + m * MINUTE) / (15 * MINUTE)) as usize].clone();
    // The forecast made at midnight from the weeks before: the 09:00-11:00 peak.
    let peak = row(9, 30);
    assert!((peak["arrivals"].as_f64().unwrap() - 20.0).abs() < 2.0, "{peak}");
    assert!(peak["low"].as_f64() <= peak["arrivals"].as_f64() && peak["arrivals"].as_f64() <= peak["high"].as_f64());
    // The arrivals counted so far: the hourly call of the night, the morning's, the
    // interval in force as far as it went, nothing for what is to come.
    assert_eq!(row(0, 0)["actual"], 1);
    assert_eq!(row(0, 15)["actual"], 0);
    assert_eq!(row(9, 30)["actual"], 18);
    assert_eq!(row(10, 0)["actual"], 3);
    assert_eq!(row(10, 15)["actual"], Value::Null);
    // The reserve, from the interval in force on: the peak's until 11:00, then quiet.
    assert_eq!(row(9, 45)["reserve"], Value::Null, "no reserve shown for the past");
    let (now, later) = (row(10, 0), row(11, 0));
    assert!(now["reserve"].as_u64().unwrap() > later["reserve"].as_u64().unwrap(), "{now} {later}");
    assert!(now["needed"].as_u64().unwrap() > later["needed"].as_u64().unwrap(), "{now} {later}");
    let (_, pool) = s.get("/v1/pools/acct").await;
    assert_eq!(now["reserve"], pool["forecast_reserve"]["units"], "{pool}");

    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("pool=nowhere", StatusCode::NOT_FOUND),
        ("pool=acct&x=1", StatusCode::BAD_REQUEST),
    ] {
        let (got, v) = s.get(&format!("/v1/forecast/today?{query}")).await;
        assert_eq!(got, status, "{query}: {v}");
    }
}

/// A reload does not wait for a fit: new bounds apply at once to a plan whose inputs did
/// not change; a changed target drops the plan (the floor, "being fitted") until the
/// ticker's fit of the new file lands, never the old plan under the new file.
#[tokio::test]
async fn a_reload_keeps_or_refits_the_plan_off_its_path() {
    let clock = ManualClock::at(MONDAY + 9 * HOUR);
    let s = TestServer::start_with_clock(FORECAST, clock.clone()).await;
    let app = s.server().app.clone();
    write_history(&s.data_dir());
    app.forecasts.refresh(app.reload.current(), clock.now_ms()).await;
    let before = app.forecasts.plan("acct").unwrap();
    assert!(!before.steps.is_empty() && before.ceiling == 12);

    // A lower ceiling: the same fit, at once.
    assert!(before.units(MONDAY + 9 * HOUR).0 > 1, "the peak holds back more than one line");
    let lower = support::config(&FORECAST.replace("ceiling = 12", "ceiling = 1"));
    assert!(!app.forecasts.rebase(&lower));
    let after = app.forecasts.plan("acct").unwrap();
    assert_eq!((after.ceiling, &after.steps, after.computed_at_ms), (1, &before.steps, before.computed_at_ms));
    assert_eq!(after.units(MONDAY + 9 * HOUR).0, 1, "the peak's reserve within the new ceiling");

    // Another target: the plan goes until the new fit lands.
    let stricter = FORECAST.replace("service_level = 0.8", "service_level = 0.95");
    let stricter = std::sync::Arc::new(support::config(&stricter));
    app.schedules.reconfigure(stricter.clone()).await.unwrap();
    match app.forecasts.plan("acct") {
        // The ticker's fit may already have landed: then it is the new file's.
        Some(plan) => assert_ne!(plan.fit_key, before.fit_key),
        None => {
            let view = app.forecasts.view(&stricter, "acct", clock.now_ms()).unwrap();
            assert_eq!((view.source, view.units), ("floor", 1));
            assert_eq!(view.note.as_deref(), Some("the forecast is being fitted"));
        }
    }
    eventually("the ticker fits the new file", secs(20), || async {
        app.forecasts.plan("acct").is_some_and(|p| p.fit_key != before.fit_key && !p.steps.is_empty())
    })
    .await;
    let refit = app.forecasts.plan("acct").unwrap();
    assert!(
        refit.step(MONDAY + 9 * HOUR).unwrap().lines > before.step(MONDAY + 9 * HOUR).unwrap().lines,
        "a stricter target needs more lines"
    );
}
