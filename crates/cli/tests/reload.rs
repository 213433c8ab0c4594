//! `SIGHUP` reloads the configuration of a running `callgate serve` (it used to kill it):
//! the server keeps its leases, applies the new limit, and ignores an invalid file.

mod support;

use std::time::Duration;

const CONFIG: &str = r#"
[[pools]]
name = "acct"
limit = 2

[[flows]]
name = "calls"
pools = ["acct"]
class = "inbound"
"#;

fn hangup(pid: u32) {
    let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// Polls `GET path` until `check` holds (a real process answers a signal on its own time).
async fn until(client: &reqwest::Client, url: &str, check: impl Fn(&str) -> bool) -> String {
    for _ in 0..300 {
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        if check(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never showed what was expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_the_server_keeps_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (mut child, base) = support::start(&config, &dir.path().join("data")).await;
    let pid = child.id().expect("running");
    let client = reqwest::Client::new();
    let lease =
        client.post(format!("{base}/v1/acquire")).body(r#"{"flow":"calls","key":"call-1"}"#).send().await.unwrap();
    assert_eq!(lease.status(), 200);

    std::fs::write(&config, CONFIG.replace("limit = 2", "limit = 5")).unwrap();
    hangup(pid);
    let pool = until(&client, &format!("{base}/v1/pools/acct"), |b| b.contains("\"limit\":5")).await;
    assert!(pool.contains("\"used\":1"), "the lease is kept: {pool}");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop the server");

    // An invalid file changes nothing; the server serves on.
    std::fs::write(&config, CONFIG.replace("limit = 2", "limit = -1")).unwrap();
    hangup(pid);
    until(&client, &format!("{base}/metrics"), |m| m.contains("callgate_config_reloads_total{result=\"invalid\"} 1"))
        .await;
    let pool = client.get(format!("{base}/v1/pools/acct")).send().await.unwrap().text().await.unwrap();
    assert!(pool.contains("\"limit\":5") && pool.contains("\"used\":1"), "{pool}");
    assert!(child.try_wait().unwrap().is_none());
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
