//! What an SRE reads: `/metrics` as valid Prometheus text with build info, per-class use,
//! decision and commit latency and process figures; `used_by_class` in `GET /v1/pools`;
//! a failed alert notification in `GET /v1/alerts` and in `/metrics`.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use support::{eventually, secs, TestServer};

const CONFIG: &str = r#"
[[classes]]
name = "vip"
priority = 100
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 4

[[pools]]
name = "campaign"
limit = 2

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "2m" }

[[flows]]
name = "renewals"
pools = ["acct", "campaign"]
class = "outbound"
"#;

/// One sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the Prometheus text format (0.0.4): every sample line is
/// `name{label="value",…} number`, every family has one `# TYPE` before its samples,
/// no series appears twice, and histograms have increasing `le` buckets ending in `+Inf`
/// whose counts never fall and equal `_count`. Panics with the line on any fault.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = BTreeMap::new();
                let mut s = body;
                while !s.is_empty() {
                    let (k, v) = s.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "bad label name: {line}"
                    );
                    // The value ends at the first quote that is not escaped.
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in v.char_indices() {
                        match c {
                            '\\' if !escaped => escaped = true,
                            '"' if !escaped => {
                                end = Some(i);
                                break;
                            }
                            _ => escaped = false,
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
                    assert!(labels.insert(k.to_string(), v[..end].to_string()).is_none(), "label twice: {line}");
                    s = &v[end + 1..];
                    s = s.strip_prefix(',').unwrap_or(s);
                }
                (name, labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its # TYPE: {line}");
        assert!(seen.insert(series.to_string()), "series twice: {line}");
        samples.push((name.to_string(), labels, value));
    }
    // Histograms: buckets rise, end in +Inf, and +Inf is the count.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for (name, labels, v) in &samples {
        let mut rest = labels.clone();
        let le = rest.remove("le");
        let key = format!("{}{rest:?}", name.trim_end_matches("_bucket").trim_end_matches("_count"));
        if name.ends_with("_bucket") {
            let le = le.expect("a bucket has le");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
            buckets.entry(key).or_default().push((le, *v));
        } else if name.ends_with("_count") {
            counts.insert(key, *v);
        }
    }
    for (key, b) in &buckets {
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "buckets of {key}: {b:?}");
        assert_eq!(b.last().unwrap().0, f64::INFINITY, "{key} ends in +Inf");
        assert_eq!(Some(&b.last().unwrap().1), counts.get(key), "{key}: +Inf is the count");
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
}

async fn scrape(s: &TestServer) -> Vec<Sample> {
    parse(&s.metrics().await)
}

#[test]
fn the_reader_refuses_what_prometheus_refuses() {
    for bad in [
        "x 1\n",                                                                          // no TYPE
        "# TYPE x gauge\nx{a=\"1\" 1\n",                                                  // unclosed labels
        "# TYPE x gauge\nx{a=1} 1\n",                                                     // unquoted value
        "# TYPE x gauge\nx 1\nx 2\n",                                                     // the same series twice
        "# TYPE x gauge\nx one\n",                                                        // not a number
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // falling
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted {bad:?}");
    }
    let ok = parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n");
    assert_eq!(ok.len(), 4);
}

#[tokio::test]
async fn metrics_parse_and_show_build_use_by_class_latency_and_the_process() {
    let s = TestServer::start(CONFIG).await;
    let mut granted = 0;
    for i in 0..2 {
        let (st, _) = s.post("/v1/acquire", json!({ "flow": "support", "key": format!("in-{i}") })).await;
        assert_eq!(st, StatusCode::OK);
        granted += 1;
    }
    let (st, _) = s.post("/v1/acquire", json!({ "flow": "renewals", "key": "out-0" })).await;
    assert_eq!(st, StatusCode::OK);
    granted += 1;
    let (st, _) =
        s.post("/v1/acquire", json!({ "pools": [{ "pool": "acct", "units": 1 }], "class": "vip", "key": "v" })).await;
    assert_eq!(st, StatusCode::OK);
    granted += 1;
    // Full: the next support caller waits, a renewals call is refused (no waiting room).
    let (st, _) = s.post("/v1/acquire", json!({ "flow": "support", "key": "in-2" })).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = s.post("/v1/acquire", json!({ "flow": "renewals", "key": "out-1" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);

    let m = scrape(&s).await;
    let version = m.iter().find(|(n, _, _)| n == "callgate_build_info").expect("callgate_build_info");
    assert_eq!(version.1["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version.2, 1.0);

    let units = |pool: &str, class: &str| value(&m, "callgate_pool_used_units", &[("pool", pool), ("class", class)]);
    assert_eq!(units("acct", "inbound"), Some(2.0));
    assert_eq!(units("acct", "outbound"), Some(1.0));
    assert_eq!(units("acct", "vip"), Some(1.0));
    assert_eq!(units("campaign", "outbound"), Some(1.0));
    assert_eq!(units("campaign", "inbound"), Some(0.0), "every pool and class, at zero too");
    for pool in ["acct", "campaign"] {
        let by_class: f64 = ["vip", "inbound", "outbound"].iter().map(|c| units(pool, c).unwrap()).sum();
        assert_eq!(Some(by_class), value(&m, "callgate_pool_used", &[("pool", pool)]), "{pool}: classes sum to used");
    }

    let decisions =
        |outcome: &str| value(&m, "callgate_decision_seconds_count", &[("edge", "api"), ("outcome", outcome)]).unwrap();
    assert_eq!(decisions("granted"), f64::from(granted));
    assert_eq!(decisions("queued"), 1.0);
    assert_eq!(decisions("rejected"), 1.0);
    assert_eq!(
        value(&m, "callgate_decision_seconds_count", &[("edge", "vapi"), ("outcome", "granted")]),
        Some(0.0),
        "every edge is there before its first decision"
    );
    assert!(value(&m, "callgate_journal_commit_seconds_count", &[]).unwrap() >= 1.0, "commits are timed");

    if cfg!(target_os = "linux") {
        assert!(value(&m, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
        let open = value(&m, "process_open_fds", &[]).unwrap();
        assert!(open >= 3.0 && open <= value(&m, "process_max_fds", &[]).unwrap());
        assert!(value(&m, "process_start_time_seconds", &[]).unwrap() > 1.0e9);
        assert!(value(&m, "process_cpu_seconds_total", &[]).is_some());
    }

    // A release moves the class's units back.
    let (st, _) = s.delete("/v1/leases?key=out-0").await;
    assert_eq!(st, StatusCode::OK);
    let m = scrape(&s).await;
    assert_eq!(value(&m, "callgate_pool_used_units", &[("pool", "campaign"), ("class", "outbound")]), Some(0.0));
}

#[tokio::test]
async fn pools_show_use_by_class_and_restore_it_after_a_restart() {
    let s = TestServer::start(CONFIG).await;
    s.post("/v1/acquire", json!({ "flow": "support", "key": "a" })).await;
    s.post("/v1/acquire", json!({ "flow": "support", "key": "b" })).await;
    s.post("/v1/acquire", json!({ "flow": "renewals", "key": "c" })).await;
    let (_, pools) = s.get("/v1/pools").await;
    assert_eq!(pools[0]["used"], 3);
    assert_eq!(pools[0]["used_by_class"], json!({ "inbound": 2, "outbound": 1 }), "{pools}");
    assert_eq!(pools[1]["used_by_class"], json!({ "outbound": 1 }), "only classes that hold units");
    let s = s.restart().await;
    let (_, pool) = s.get("/v1/pools/acct").await;
    assert_eq!(pool["used_by_class"], json!({ "inbound": 2, "outbound": 1 }), "restored leases count: {pool}");
    s.delete("/v1/leases?key=a").await;
    let (_, pool) = s.get("/v1/pools/acct").await;
    assert_eq!(pool["used_by_class"], json!({ "inbound": 1, "outbound": 1 }));
}

#[tokio::test]
async fn a_notification_that_cannot_be_delivered_shows_in_alerts_and_metrics() {
    // A port nothing listens on: the post is refused at once.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let toml = format!(
        "{CONFIG}\n[[alerts]]\nname = \"busy\"\npool = \"acct\"\nmetric = \"utilization\"\nabove = 0.5\n\
         actions = [{{ action = \"notify\", url = \"http://{dead}/hook\" }}]\n"
    );
    let s = TestServer::start(&toml).await;
    let (_, alerts) = s.get("/v1/alerts").await;
    assert_eq!(alerts[0]["notifications_failed"], 0);
    assert!(alerts[0].get("last_notification").is_none(), "nothing sent yet: {alerts}");
    for k in ["a", "b", "c"] {
        s.post("/v1/acquire", json!({ "flow": "support", "key": k })).await;
    }
    s.server().app.governor.evaluate_alerts().await;
    // The post runs in the background: wait for its outcome.
    let outcome = || async { s.get("/v1/alerts").await.1[0].get("last_notification").is_some() };
    eventually("the notification's outcome is shown", secs(5), outcome).await;
    let alert = s.get("/v1/alerts").await.1[0].clone();
    assert_eq!(alert["state"], "firing", "{alert}");
    assert_eq!(alert["last_notification"]["ok"], false, "{alert}");
    assert!(alert["last_notification"]["detail"].as_str().unwrap().starts_with("cannot post"), "{alert}");
    assert!(!alert["last_notification"]["detail"].as_str().unwrap().contains(&dead.to_string()), "no URL");
    assert_eq!(alert["notifications_failed"], 1);
    let m = scrape(&s).await;
    assert_eq!(value(&m, "callgate_alert_notifications_failed_total", &[("alert", "busy")]), Some(1.0));
}
