//! Running the real `callgate` binary in tests: start it on a free port and learn the
//! address it listens on, so a test can SIGKILL it and start it again on the same data.

#![allow(dead_code)] // each test file uses some of these

pub mod oracle;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `callgate serve` with `config` and `data`; returns the child and its base URL.
pub async fn start(config: &Path, data: &Path) -> (Child, String) {
    start_with_env(config, data, &[]).await
}

/// [`start`] with more environment variables (e.g. the `*_env` secrets of a config).
pub async fn start_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        // `CALLGATE_TEST_LOGS=info` (a `RUST_LOG` filter) shows the nodes' logs.
        .env("RUST_LOG", std::env::var("CALLGATE_TEST_LOGS").unwrap_or_else(|_| "warn".into()))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start callgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("callgate listening on ") {
                return url.to_string();
            }
        }
        panic!("callgate exited before listening");
    })
    .await
    .expect("callgate starts");
    // Keep draining stderr so the child never blocks on a full pipe.
    let show = std::env::var_os("CALLGATE_TEST_LOGS").is_some();
    let node = addr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if show {
                eprintln!("[{node}] {line}");
            }
        }
    });
    (child, addr)
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `within`. A bound
/// against hanging, not a timing claim.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let tries = within.as_millis() / 100;
    for _ in 0..tries {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// Starts `n` nodes of `config`, each with a data directory of its own under `dir`
/// (`node-0`, `node-1`, …); returns the children and their base URLs, in order.
pub async fn start_nodes(config: &Path, dir: &Path, n: usize) -> (Vec<Child>, Vec<String>) {
    let (mut children, mut nodes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (child, base) = start(config, &dir.join(format!("node-{i}"))).await;
        children.push(child);
        nodes.push(base);
    }
    (children, nodes)
}

/// Imports `n` leads with distinct valid US numbers into `campaign` through the node at
/// `base`, and checks that every one was added.
pub async fn import_leads(http: &reqwest::Client, base: &str, campaign: &str, n: usize) {
    let leads: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "phone": format!("+1213{:03}{:04}", 200 + i / 10_000, i % 10_000) }))
        .collect();
    let r: serde_json::Value = http
        .post(format!("{base}/v1/campaigns/{campaign}/leads"))
        .json(&serde_json::json!({ "leads": leads }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["added"], n, "{r}");
}

/// The live nodes (by index) whose `/metrics` shows the gauge `series` (its name with its
/// labels, as printed) at 1: which node holds the duties, paces a campaign, … A node that
/// does not answer counts as not showing it.
pub async fn nodes_showing(http: &reqwest::Client, nodes: &[String], alive: &[bool], series: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, base) in nodes.iter().enumerate() {
        if alive[i] && gauge_is_one(http, base, series).await == Some(true) {
            out.push(i);
        }
    }
    out
}

/// Whether the node at `base` shows `series` at 1 (`None`: it did not answer, or has no
/// such series).
async fn gauge_is_one(http: &reqwest::Client, base: &str, series: &str) -> Option<bool> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| l.split_once(' ').is_some_and(|(name, _)| name == series))?;
    Some(line.ends_with(" 1"))
}
