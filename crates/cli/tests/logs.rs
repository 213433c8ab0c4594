//! `callgate serve --log-json --decision-log` as a real process: every line it writes on
//! stderr is one JSON object, and each durable decision has its line with flow, class,
//! pools, key, lease or ticket, wait and reason.

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CONFIG: &str = r#"
[[pools]]
name = "acct"
limit = 1

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "2m" }

[[flows]]
name = "dial"
pools = ["acct"]
class = "outbound"
"#;

/// The next stderr line, which must be one JSON object.
async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30 s")
        .unwrap()
        .expect("callgate is still running");
    serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn every_line_of_log_json_is_json_and_each_decision_has_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--log-json", "--decision-log", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        // Info logs too, so there is more than the decision log to check.
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start callgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut all: Vec<Value> = Vec::new();
    let base = loop {
        let v = next(&mut lines).await;
        let message = v["fields"]["message"].as_str().unwrap_or_default().to_string();
        all.push(v);
        if let Some(url) = message.strip_prefix("callgate listening on ") {
            break url.to_string();
        }
    };
    let http = reqwest::Client::new();
    let acquire = |body: Value| {
        let (http, base) = (http.clone(), base.clone());
        async move { http.post(format!("{base}/v1/acquire")).json(&body).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(acquire(json!({ "flow": "support", "key": "CA-1" })).await, 200);
    assert_eq!(acquire(json!({ "flow": "support", "key": "CA-2" })).await, 202);
    assert_eq!(acquire(json!({ "flow": "dial", "key": "dial-1" })).await, 429);
    let r = http.delete(format!("{base}/v1/leases?key=CA-1")).send().await.unwrap();
    assert!(r.status().is_success());

    // Granted CA-1, queued CA-2, rejected dial-1, released CA-1, granted CA-2 from the line.
    let mut decisions: Vec<Value> = Vec::new();
    while decisions.len() < 5 {
        let v = next(&mut lines).await;
        if v["target"] == "callgate::decision" {
            decisions.push(v.clone());
        }
        all.push(v);
    }
    let _ = child.kill().await;
    let kinds: Vec<&str> = decisions.iter().map(|d| d["decision"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["granted", "queued", "rejected", "released", "granted"], "{decisions:#?}");
    let [first, queued, rejected, released, from_line] = &decisions[..] else { unreachable!() };
    assert_eq!(first["flow"], "support");
    assert_eq!(first["class"], "inbound");
    assert_eq!(first["pools"], "acct:1");
    assert_eq!(first["key"], "CA-1");
    assert_eq!(first["wait_ms"], 0);
    let lease = first["lease"].as_str().unwrap();
    assert!(lease.starts_with('L'), "{first}");
    assert_eq!(queued["key"], "CA-2");
    assert_eq!(queued["position"], 1);
    let ticket = queued["ticket"].as_str().unwrap();
    assert_eq!(rejected["key"], "dial-1");
    assert_eq!(rejected["class"], "outbound");
    assert_eq!(rejected["reason"], "capacity");
    assert_eq!(released["lease"], lease);
    assert!(released["held_ms"].is_u64());
    assert_eq!(from_line["key"], "CA-2");
    assert_eq!(from_line["ticket"], ticket, "the grant names the ticket it ended");
    assert!(from_line["wait_ms"].is_u64());
    for d in &decisions {
        assert!(d["at_ms"].is_u64() && d["timestamp"].is_string() && d["level"] == "INFO", "{d}");
    }
    // Not only decisions: the server's own logs were JSON too.
    assert!(all.iter().any(|v| v["fields"]["message"] == "Restored the journal"), "{all:#?}");
}

#[tokio::test]
async fn a_configuration_error_under_log_json_is_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[[pools]]\nname = \"acct\"\nlimit = \"ten\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--log-json", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "ERROR");
        assert!(v["fields"]["message"].as_str().unwrap().contains("limit"), "{v}");
    }
}
