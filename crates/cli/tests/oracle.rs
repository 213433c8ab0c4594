//! Over-admission oracle: 200 clients against the real binary (real SQLite journal) take,
//! hold and release calls, vanish (never release, the short TTL ends the lease), repeat
//! each other's keys and wait in line, on a 10-slot pool with 3 slots held for inbound.
//!
//! The oracle knows only what the clients saw: a lease was certainly held from when a
//! client *received* its grant until the first client *sent* its release (or until its
//! `expires_at_ms`, the earliest the server may reclaim it). Each such interval lies inside
//! the time the server really held the lease, so if more of them overlap at one instant
//! than the pool has slots (or than outbound may take), the server over-admitted: the
//! check has no false positives, whatever the scheduling.
//!
//! `CALLGATE_ORACLE_OPS=N` sets the operations per client (default 40).

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: usize = 10;
const INBOUND_RESERVE: usize = 3;
const CLIENTS: u64 = 200;

const CONFIG: &str = r#"
[[pools]]
name = "acct"
limit = 10
reserve = { inbound = 3 }

[[flows]]
name = "in"
pools = ["acct"]
class = "inbound"
lease_ttl = "1h"
queue = { max_wait = "2s", max_len = 40 }

[[flows]]
name = "out"
pools = ["acct"]
class = "outbound"
lease_ttl = "1h"
"#;

/// Microseconds of the wall clock, the clock the server's `expires_at_ms` is read on.
#[allow(clippy::disallowed_methods)] // the oracle compares client times with the server's wall clock
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// What the clients saw of one lease id.
#[derive(Debug)]
struct Seen {
    outbound: bool,
    /// Earliest receipt of a grant naming it.
    granted_us: u64,
    /// Earliest `expires_at_ms` seen, in µs.
    expires_us: u64,
    /// Earliest send of a release.
    released_us: Option<u64>,
}

#[derive(Default)]
struct Book {
    leases: HashMap<String, Seen>,
    granted: u64,
    queued: u64,
    rejected: u64,
    released: u64,
}

impl Book {
    fn grant(&mut self, lease: &Value, at: u64) {
        let id = lease["id"].as_str().unwrap_or_else(|| panic!("a lease id: {lease}")).to_string();
        let outbound = lease["class"] == "outbound";
        let expires_us = lease["expires_at_ms"].as_u64().unwrap_or_else(|| panic!("expires_at_ms: {lease}")) * 1000;
        self.granted += 1;
        let seen = self.leases.entry(id).or_insert(Seen { outbound, granted_us: at, expires_us, released_us: None });
        seen.granted_us = seen.granted_us.min(at);
        seen.expires_us = seen.expires_us.min(expires_us);
    }

    fn release_sent(&mut self, id: &str, at: u64) {
        self.released += 1;
        if let Some(seen) = self.leases.get_mut(id) {
            seen.released_us = Some(seen.released_us.map_or(at, |r| r.min(at)));
        }
    }

    /// Instants at which the oracle counts more leases than allowed: (time, total, outbound).
    fn violations(&self) -> (Vec<(u64, usize, usize)>, usize) {
        // (time, +1 start / -1 end, outbound); ends sort before starts at the same
        // instant: the intervals are half-open.
        let mut edges: Vec<(u64, i8, bool)> = Vec::new();
        for s in self.leases.values() {
            let end = s.released_us.map_or(s.expires_us, |r| r.min(s.expires_us));
            if end > s.granted_us {
                edges.push((s.granted_us, 1, s.outbound));
                edges.push((end, -1, s.outbound));
            }
        }
        edges.sort();
        let (mut total, mut outbound, mut peak, mut bad) = (0i64, 0i64, 0usize, Vec::new());
        for (t, d, out) in edges {
            total += i64::from(d);
            if out {
                outbound += i64::from(d);
            }
            peak = peak.max(total as usize);
            if total as usize > LIMIT || outbound as usize > LIMIT - INBOUND_RESERVE {
                bad.push((t, total as usize, outbound as usize));
            }
        }
        (bad, peak)
    }
}

/// xorshift64*: each client's own fixed sequence of choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    book: Arc<Mutex<Book>>,
}

impl Client {
    /// Sends an acquire; on a grant records it and returns the lease.
    async fn acquire(&self, body: Value) -> Option<Answer> {
        let resp = self.http.post(format!("{}/v1/acquire", self.base)).json(&body).send().await.ok()?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.ok()?;
        let at = now_us();
        let mut book = self.book.lock().unwrap();
        match status {
            200 => {
                book.grant(&v["lease"], at);
                Some(Answer::Granted(v["lease"]["id"].as_str()?.to_string()))
            }
            202 => {
                book.queued += 1;
                Some(Answer::Queued(v["ticket"]["id"].as_str()?.to_string()))
            }
            429 => {
                book.rejected += 1;
                None
            }
            other => panic!("acquire answered {other}: {v}"),
        }
    }

    async fn release(&self, id: &str, key: Option<&str>) {
        self.book.lock().unwrap().release_sent(id, now_us());
        let url = match key {
            Some(k) => format!("{}/v1/leases?key={k}", self.base),
            None => format!("{}/v1/leases/{id}", self.base),
        };
        let resp = self.http.delete(url).send().await.expect("release");
        assert_eq!(resp.status(), 200, "release answers 200");
    }

    /// Polls a ticket until it ends; records a grant. `cancel`: give up after the first
    /// look, and leave out of the book a grant that raced the cancel.
    async fn wait_ticket(&self, ticket: &str, cancel: bool) -> Option<String> {
        for n in 0..120 {
            let resp = self.http.get(format!("{}/v1/tickets/{ticket}", self.base)).send().await.ok()?;
            let v: Value = resp.json().await.ok()?;
            let at = now_us();
            match v["state"].as_str() {
                Some("granted") if cancel && n > 0 => {
                    // Granted around the cancel: clean up, but claim nothing about when.
                    let id = v["lease"]["id"].as_str()?;
                    self.http.delete(format!("{}/v1/leases/{id}", self.base)).send().await.ok()?;
                    return None;
                }
                // Granted, and already released or expired: nothing left to claim.
                Some("granted") if v["lease"]["live"] == false => return None,
                Some("granted") => {
                    self.book.lock().unwrap().grant(&v["lease"], at);
                    return v["lease"]["id"].as_str().map(str::to_string);
                }
                Some("waiting") if cancel => {
                    self.http.delete(format!("{}/v1/tickets/{ticket}", self.base)).send().await.ok()?;
                }
                Some("waiting") => tokio::time::sleep(Duration::from_millis(25)).await,
                _ => return None,
            }
        }
        None
    }
}

enum Answer {
    Granted(String),
    Queued(String),
}

async fn run_client(c: Client, n: u64, ops: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n + 1).wrapping_mul(0x1000_0000_01b3));
    for op in 0..ops {
        let hold = Duration::from_millis(rng.below(40));
        let roll = rng.below(100);
        let flow = if rng.below(2) == 0 { "in" } else { "out" };
        let own_key = format!("c{n}-op{op}");
        match roll {
            // An inbound call that may wait, in the request or in line.
            0..=34 => {
                let wait_ms = [0, 0, 200, 1000][rng.below(4) as usize];
                let body = json!({ "flow": "in", "key": own_key, "wait_ms": wait_ms });
                let id = match c.acquire(body).await {
                    Some(Answer::Granted(id)) => Some(id),
                    Some(Answer::Queued(t)) => c.wait_ticket(&t, rng.below(5) == 0).await,
                    None => None,
                };
                if let Some(id) = id {
                    tokio::time::sleep(hold).await;
                    let by_key = rng.below(3) == 0;
                    c.release(&id, by_key.then_some(own_key.as_str())).await;
                }
            }
            // An outbound call: no waiting room, never past the inbound reserve.
            35..=64 => {
                if let Some(Answer::Granted(id)) = c.acquire(json!({ "flow": "out", "key": own_key })).await {
                    tokio::time::sleep(hold).await;
                    c.release(&id, None).await;
                }
            }
            // A call that vanishes: never released, its short TTL ends it.
            65..=79 => {
                let ttl_ms = 200 + rng.below(400);
                if let Some(Answer::Queued(t)) =
                    c.acquire(json!({ "flow": flow, "key": own_key, "ttl_ms": ttl_ms })).await
                {
                    c.wait_ticket(&t, false).await;
                }
            }
            // A retried request: a key other clients use too.
            _ => {
                let key = format!("shared-{}", rng.below(15));
                let id = match c.acquire(json!({ "flow": flow, "key": key })).await {
                    Some(Answer::Granted(id)) => Some(id),
                    Some(Answer::Queued(t)) => c.wait_ticket(&t, false).await,
                    None => None,
                };
                if let (Some(id), true) = (id, rng.below(2) == 0) {
                    tokio::time::sleep(hold).await;
                    c.release(&id, Some(&key)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instant_holds_more_leases_than_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (mut child, base) = support::start(&config, &dir.path().join("data")).await;
    let ops = std::env::var("CALLGATE_ORACLE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);

    let book = Arc::new(Mutex::new(Book::default()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let c = Client { http: http.clone(), base: base.clone(), book: book.clone() };
            tokio::spawn(run_client(c, n, ops))
        })
        .collect();
    for c in clients {
        c.await.expect("a client kept to the API");
    }
    let pool: Value = http.get(format!("{base}/v1/pools/acct")).send().await.unwrap().json().await.unwrap();
    child.start_kill().unwrap();

    let book = book.lock().unwrap();
    let (bad, peak) = book.violations();
    eprintln!(
        "oracle: {} clients, {} grants seen ({} lease ids), {} queued, {} rejected, {} releases sent; \
         peak {peak} leases at once (limit {LIMIT}); {} violations",
        CLIENTS,
        book.granted,
        book.leases.len(),
        book.queued,
        book.rejected,
        book.released,
        bad.len()
    );
    assert!(bad.is_empty(), "over-admission: (time µs, leases, outbound) {:?}", &bad[..bad.len().min(10)]);
    assert!(book.leases.len() > 200 && book.rejected > 0 && book.queued > 0, "the pool was contended");
    assert!(pool["used"].as_u64().unwrap() <= LIMIT as u64, "the server's own count: {pool}");
}

/// The oracle itself: it sees an overlap of 11 intervals, and of 8 outbound ones, and
/// takes a release sent at the instant of another grant as over (half-open intervals).
#[test]
fn the_oracle_counts_overlapping_holds() {
    let lease = |id: usize, class: &str, expires_ms: u64| json!({ "id": format!("L{id}"), "class": class, "expires_at_ms": expires_ms });
    let mut book = Book::default();
    for i in 0..LIMIT {
        book.grant(&lease(i, "inbound", 10), 1000);
    }
    book.release_sent("L0", 5000);
    book.grant(&lease(99, "inbound", 10), 5000);
    assert!(book.violations().0.is_empty(), "a slot freed at 5 ms is taken at 5 ms");
    book.grant(&lease(100, "inbound", 10), 4000);
    let (bad, peak) = book.violations();
    assert_eq!((bad[0].0, bad[0].1, peak), (4000, 11, 11), "11 leases from 4 ms on");

    let mut book = Book::default();
    for i in 0..=LIMIT - INBOUND_RESERVE {
        book.grant(&lease(i, "outbound", 10), 1000);
    }
    assert!(!book.violations().0.is_empty(), "8 outbound leases break the inbound reserve");
    book.release_sent("L0", 500);
    assert!(book.violations().0.is_empty(), "a release sent before the grant arrived ends it");
}
