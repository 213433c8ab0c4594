//! Three nodes, one budget: three `callgate` processes (the real binary) on different
//! ports share one pool of 20 (5 held back for inbound) through a private Redis. 200
//! clients spread over the three take, hold and release calls, vanish (their short TTL
//! ends the lease: the expiry sweep, a singleton duty, must run somewhere), repeat each
//! other's keys and wait in line, each request to the next node in turn: a lease taken
//! through one node is released through another, a ticket queued on one is polled (and
//! granted by a release) on another. The oracle (`support/oracle.rs`), built from the
//! clients' own grant-receipt and release-send times, shows that the leases held at once
//! never exceeded 20, nor outbound's 15.
//!
//! Then again on a fresh domain, with the node that runs the singleton duties SIGKILLed
//! mid-run: the clients carry on through the other two, the duties move (a survivor says
//! so in `/metrics`, and the leases that vanished are expired), and still nothing is
//! over-admitted.
//!
//! `CALLGATE_CLUSTER_OPS=N` sets the operations per client (default 12: both runs stay
//! well under a minute on two busy cores); `CALLGATE_WAKE_ROUNDS=N` the rounds of the
//! cross-node wake-up test (default 30; BENCHMARKS.md quotes its printed latencies).

mod support;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::oracle::{now_us, run_client, Book, Client};

const LIMIT: usize = 20;
const INBOUND_RESERVE: usize = 5;
const CLIENTS: u64 = 200;
const NODES: usize = 3;

fn config(redis: &str, domain: &str) -> String {
    format!(
        r#"
[storage]
ledger = "{redis}"
domain = "{domain}"

[[pools]]
name = "acct"
limit = {LIMIT}
reserve = {{ inbound = {INBOUND_RESERVE} }}

[[flows]]
name = "in"
pools = ["acct"]
class = "inbound"
lease_ttl = "1h"
queue = {{ max_wait = "2s", max_len = 40 }}

[[flows]]
name = "out"
pools = ["acct"]
class = "outbound"
lease_ttl = "1h"
"#
    )
}

/// A private Redis on a free port, without persistence, killed when dropped.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        Redis::start_on(port).await
    }

    /// A Redis on `port` (again, after [`Redis::kill`]: empty, as one without persistence
    /// restarts).
    async fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): this test needs Redis 7 (apt install redis-server)")
            });
        let redis = Redis { child, url: format!("redis://127.0.0.1:{port}/") };
        // Ready when it answers PING (it starts in milliseconds; give up after ~10 s).
        for _ in 0..1000 {
            if ping(port).await {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server on port {port} did not answer");
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").await.is_ok() && s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    fn port(&self) -> u16 {
        self.url.trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the node at `base` says it runs the singleton duties (`None`: it did not answer).
async fn holds_duties(http: &reqwest::Client, base: &str) -> Option<bool> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| l.starts_with("callgate_cluster_duties_held "))?;
    Some(line.ends_with(" 1"))
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `within`. A bound
/// against hanging, not a timing claim (the duty lease's TTL is 5 s).
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
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

/// The nodes (by index) that hold the duties now, among `alive`.
async fn holders(http: &reqwest::Client, nodes: &[String], alive: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, base) in nodes.iter().enumerate() {
        if alive[i] && holds_duties(http, base).await == Some(true) {
            out.push(i);
        }
    }
    out
}

/// One run on domain `domain`: three nodes, 200 clients; with `kill`, the duty holder is
/// SIGKILLed once the clients have seen 300 grants.
async fn run(redis: &Redis, domain: &str, kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("callgate.toml");
    std::fs::write(&config_path, config(&redis.url, domain)).unwrap();
    let mut children = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let (child, base) = support::start(&config_path, &dir.path().join(format!("node-{i}"))).await;
        children.push(child);
        nodes.push(base);
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut alive = vec![true; NODES];
    // Exactly one node takes the duties (the first to ask), within a few seconds.
    eventually(Duration::from_secs(20), "one node holds the duties", || {
        let (http, nodes, alive) = (&http, &nodes, &alive);
        async move { holders(http, nodes, alive).await.len() == 1 }
    })
    .await;
    let holder = holders(&http, &nodes, &alive).await[0];

    let ops = std::env::var("CALLGATE_CLUSTER_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let book = Arc::new(Mutex::new(Book::new(LIMIT, INBOUND_RESERVE)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let c = Client::new(http.clone(), nodes.clone(), book.clone(), n as usize % NODES);
            tokio::spawn(run_client(c, n, ops))
        })
        .collect();
    if kill {
        // Mid-run: once the clients have seen 300 grants (or they are done).
        while book.lock().unwrap().granted < 300 && !clients.iter().all(|c| c.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        children[holder].start_kill().unwrap();
        let _ = children[holder].wait().await;
        alive[holder] = false;
        eprintln!("cluster: killed node {holder} (the duty holder) at {} grants", book.lock().unwrap().granted);
    }
    for c in clients {
        c.await.expect("a client kept to the API");
    }
    let survivor = (0..NODES).find(|&i| alive[i]).unwrap();
    let base = &nodes[survivor];

    // The duties are held by exactly one live node (another one when the holder died),
    // and the sweep runs: no live lease stays past its expiry (the vanished calls').
    eventually(Duration::from_secs(30), "one live node holds the duties", || {
        let (http, nodes, alive) = (&http, &nodes, &alive);
        async move { holders(http, nodes, alive).await.len() == 1 }
    })
    .await;
    if kill {
        assert_ne!(holders(&http, &nodes, &alive).await, vec![holder], "the duties moved off the dead node");
    }
    eventually(Duration::from_secs(30), "every lease past its expiry is expired", || {
        let (http, base) = (&http, base);
        async move {
            let Ok(resp) = http.get(format!("{base}/v1/leases?limit=1000")).send().await else { return false };
            let Ok(page) = resp.json::<Value>().await else { return false };
            let now_ms = now_us() / 1000;
            page["leases"].as_array().is_some_and(|ls| ls.iter().all(|l| l["expires_at_ms"].as_u64() > Some(now_ms)))
        }
    })
    .await;
    // Every node reads the same pool from the shared ledger.
    let mut used = Vec::new();
    for (i, b) in nodes.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let pool: Value = http.get(format!("{b}/v1/pools/acct")).send().await.unwrap().json().await.unwrap();
        assert!(pool["used"].as_u64().unwrap() <= LIMIT as u64, "node {i}'s count: {pool}");
        used.push(pool["used"].clone());
    }
    for mut child in children {
        let _ = child.start_kill();
    }

    let book = book.lock().unwrap();
    let (bad, _) = book.violations();
    eprintln!("{} ({domain}, {NODES} nodes{})", book.summary(CLIENTS), if kill { ", one killed" } else { "" });
    assert!(bad.is_empty(), "over-admission: (time µs, leases, outbound) {:?}", &bad[..bad.len().min(10)]);
    assert!(book.leases.len() > 200 && book.rejected > 0 && book.queued > 0, "the pool was contended");
    assert!(used.windows(2).all(|w| w[0] == w[1]), "the nodes agree on the pool's use: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_never_hold_more_than_the_pool_also_when_one_is_killed() {
    let redis = Redis::start().await;
    run(&redis, "oracle-1", false).await;
    run(&redis, "oracle-2", true).await;
}

/// Starts `n` nodes on `domain` of `redis`, with `limit` slots in the pool; the nodes'
/// base URLs (the children die with the returned handles).
async fn nodes(
    redis: &Redis,
    domain: &str,
    n: usize,
    limit: usize,
) -> (tempfile::TempDir, Vec<tokio::process::Child>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("callgate.toml");
    let text = config(&redis.url, domain)
        .replace(&format!("limit = {LIMIT}"), &format!("limit = {limit}"))
        .replace(&format!("reserve = {{ inbound = {INBOUND_RESERVE} }}"), "")
        .replace(r#"max_wait = "2s""#, r#"max_wait = "60s""#);
    std::fs::write(&config_path, text).unwrap();
    let (mut children, mut bases) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (child, base) = support::start(&config_path, &dir.path().join(format!("node-{i}"))).await;
        children.push(child);
        bases.push(base);
    }
    (dir, children, bases)
}

/// A caller waits on node B for the one slot; it is released through node C: B's waiter
/// is granted by the release on C (inside C's script) and hears of it from the domain's
/// event stream. The HTTP client gives up after 15 s while the caller would wait 60 s, so
/// a wake-up that never came fails the test instead of passing late. The latencies
/// (release sent on C to grant received from B) are printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_node_grants_the_caller_waiting_on_another() {
    let redis = Redis::start().await;
    let (_dir, _children, n) = nodes(&redis, "wake", 3, 1).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut latencies_us = Vec::new();
    let rounds = std::env::var("CALLGATE_WAKE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    for i in 0..rounds {
        let held: Value = http
            .post(format!("{}/v1/acquire", n[0]))
            .json(&serde_json::json!({ "flow": "in", "key": format!("held-{i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(held["decision"], "granted", "{held}");
        let waiter = {
            let (http, b) = (http.clone(), n[1].clone());
            tokio::spawn(async move {
                let body = serde_json::json!({ "flow": "in", "key": format!("waiter-{i}"), "wait_ms": 60_000 });
                let resp = http.post(format!("{b}/v1/acquire")).json(&body).send().await.expect("B answers in time");
                let at = now_us();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap(), at)
            })
        };
        // The caller is in line (as every node sees it) before the slot frees.
        eventually(Duration::from_secs(10), "the caller waits", || {
            let (http, c) = (&http, &n[2]);
            async move {
                let Ok(r) = http.get(format!("{c}/v1/pools/acct")).send().await else { return false };
                r.json::<Value>().await.is_ok_and(|p| p["waiting"] == 1)
            }
        })
        .await;
        let sent = now_us();
        let released = http.delete(format!("{}/v1/leases?key=held-{i}", n[2])).send().await.unwrap();
        assert_eq!(released.status(), 200);
        let (status, answer, at) = waiter.await.unwrap();
        assert_eq!((status, &answer["decision"]), (200, &Value::from("granted")), "{answer}");
        latencies_us.push(at.saturating_sub(sent));
        let freed = http.delete(format!("{}/v1/leases?key=waiter-{i}", n[0])).send().await.unwrap();
        assert_eq!(freed.status(), 200);
    }
    latencies_us.sort_unstable();
    let q = |f: f64| latencies_us[((latencies_us.len() - 1) as f64 * f).round() as usize] as f64 / 1000.0;
    eprintln!(
        "cross-node wake-up (release on C to grant from B), {} rounds: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies_us.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

/// Redis goes away: admission answers 503 with Retry-After and a JSON error, `/healthz`
/// says why, nothing is granted. Redis comes back empty (no persistence): the domain's
/// ledger is gone, and the node keeps refusing rather than admit against an empty
/// ledger (re-asserting the leases from PostgreSQL is the PostgreSQL store's part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_admission_fails_closed_and_says_so() {
    let mut redis = Redis::start().await;
    let (_dir, _children, n) = nodes(&redis, "outage", 1, 2).await;
    let base = &n[0];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let acquire = |key: &'static str| {
        let http = http.clone();
        let url = format!("{base}/v1/acquire");
        async move { http.post(url).json(&serde_json::json!({ "flow": "in", "key": key })).send().await.unwrap() }
    };
    assert_eq!(acquire("before").await.status(), 200);
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);

    let port = redis.port();
    redis.kill();
    let refused = acquire("during").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    eventually(Duration::from_secs(10), "/healthz fails while Redis is gone", || {
        let http = &http;
        async move {
            let Ok(r) = http.get(format!("{base}/healthz")).send().await else { return false };
            r.status() == 503 && r.json::<Value>().await.is_ok_and(|h| h["status"] == "failing")
        }
    })
    .await;

    let _redis = Redis::start_on(port).await;
    // Back, but empty: still refused, and /healthz keeps failing with the reason.
    for key in ["after-1", "after-2", "after-3"] {
        assert_eq!(acquire(key).await.status(), 503, "no grant against an emptied ledger");
    }
    let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "failing", "{health}");
}
