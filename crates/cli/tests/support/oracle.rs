//! The over-admission oracle and its clients, shared by the one-node test (`oracle.rs`)
//! and the three-node test (`cluster.rs`).
//!
//! The oracle knows only what the clients saw: a lease was certainly held from when a
//! client *received* its grant until the first client *sent* its release (or until its
//! `expires_at_ms`, the earliest the server may reclaim it). Each such interval lies inside
//! the time the server really held the lease, so if more of them overlap at one instant
//! than the pool has slots (or than the lower class may take), the server over-admitted:
//! the check has no false positives, whatever the scheduling.
//!
//! A release by key (`DELETE /v1/leases?key=…`) ends whichever lease holds the key when the
//! server runs it, and clients share keys (a retried request): the lease a client meant may
//! be gone already, released by another holder, and the key then names a later lease that
//! a third client was granted since. A release retried through an outage (503, then again a
//! second later) runs long after it was sent. So a release by key is booked with when it was
//! sent and when its answer came, and it ends every lease of that key that it may have run
//! after: each one granted before the answer, at its send at the latest.
//!
//! A client talks to one or several nodes, each request to the next node in turn (so a
//! lease taken through one node is released, and a ticket polled, through another), and
//! to the next one when a node does not answer (it was killed).

#![allow(dead_code)] // each test file uses some of these

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Microseconds of the wall clock, the clock the server's `expires_at_ms` is read on.
#[allow(clippy::disallowed_methods)] // the oracle compares client times with the server's wall clock
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// What the clients saw of one lease id.
#[derive(Debug)]
pub struct Seen {
    outbound: bool,
    /// Earliest receipt of a grant naming it.
    granted_us: u64,
    /// Earliest `expires_at_ms` seen, in µs.
    expires_us: u64,
    /// Earliest send of a release.
    released_us: Option<u64>,
    /// The lease's idempotency key, if it has one.
    key: Option<String>,
}

/// What every client saw, for a pool of `limit` slots of which `reserve` are held back
/// for inbound (outbound may hold `limit - reserve`).
pub struct Book {
    pub limit: usize,
    pub reserve: usize,
    pub leases: HashMap<String, Seen>,
    /// Releases by key: for each key, when each was sent and when its answer came (µs).
    pub by_key: HashMap<String, Vec<(u64, u64)>>,
    pub granted: u64,
    pub queued: u64,
    pub rejected: u64,
    pub released: u64,
    /// Answers 503 (the ledger unavailable: Redis restarted), each retried.
    pub unavailable: u64,
    /// Of those, answers without `Retry-After`.
    pub without_retry_after: u64,
}

impl Book {
    pub fn new(limit: usize, reserve: usize) -> Book {
        Book {
            limit,
            reserve,
            leases: HashMap::new(),
            by_key: HashMap::new(),
            granted: 0,
            queued: 0,
            rejected: 0,
            released: 0,
            unavailable: 0,
            without_retry_after: 0,
        }
    }

    pub fn grant(&mut self, lease: &Value, at: u64) {
        let id = lease["id"].as_str().unwrap_or_else(|| panic!("a lease id: {lease}")).to_string();
        let outbound = lease["class"] == "outbound";
        let expires_us = lease["expires_at_ms"].as_u64().unwrap_or_else(|| panic!("expires_at_ms: {lease}")) * 1000;
        let key = lease["key"].as_str().map(str::to_string);
        self.granted += 1;
        let seen =
            self.leases.entry(id).or_insert(Seen { outbound, granted_us: at, expires_us, released_us: None, key });
        seen.granted_us = seen.granted_us.min(at);
        seen.expires_us = seen.expires_us.min(expires_us);
    }

    pub fn release_sent(&mut self, id: &str, at: u64) {
        self.released += 1;
        if let Some(seen) = self.leases.get_mut(id) {
            seen.released_us = Some(seen.released_us.map_or(at, |r| r.min(at)));
        }
    }

    /// A release by `key` was sent at `sent` and answered at `answered` (µs): it ran in
    /// between, on whichever lease held the key then.
    pub fn released_by_key(&mut self, key: &str, sent: u64, answered: u64) {
        self.by_key.entry(key.to_string()).or_default().push((sent, answered));
    }

    /// Until when the clients know `s` was held: its first release's send, its expiry, or
    /// the send of a release by its key that may have run after it was granted.
    fn end(&self, s: &Seen) -> u64 {
        let mut end = s.released_us.map_or(s.expires_us, |r| r.min(s.expires_us));
        let by_key = s.key.as_ref().and_then(|k| self.by_key.get(k)).map_or(&[][..], Vec::as_slice);
        for &(sent, answered) in by_key {
            if answered > s.granted_us {
                end = end.min(sent.max(s.granted_us));
            }
        }
        end
    }

    /// Instants at which the oracle counts more leases than allowed: (time, total, outbound).
    pub fn violations(&self) -> (Vec<(u64, usize, usize)>, usize) {
        // (time, +1 start / -1 end, outbound); ends sort before starts at the same
        // instant: the intervals are half-open.
        let mut edges: Vec<(u64, i8, bool)> = Vec::new();
        for s in self.leases.values() {
            let end = self.end(s);
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
            if total as usize > self.limit || outbound as usize > self.limit - self.reserve {
                bad.push((t, total as usize, outbound as usize));
            }
        }
        (bad, peak)
    }

    /// Leases granted, never released (by id, or by a key release that may have run after
    /// the grant) whose `expires_at_ms` is after `now_us`: what the server must still hold.
    pub fn held_at(&self, now_us: u64) -> Vec<String> {
        let mut ids: Vec<String> =
            self.leases.iter().filter(|(_, s)| self.end(s) > now_us).map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    }

    /// Leases never released by id, not expired at `now_us`, that a release by their key
    /// (sent for an earlier lease of that key) may have ended: not in [`Book::held_at`].
    pub fn cut_by_key(&self, now_us: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, s)| s.released_us.is_none() && s.expires_us > now_us && self.end(s) <= now_us)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// One line for the test's output.
    pub fn summary(&self, clients: u64) -> String {
        let (bad, peak) = self.violations();
        format!(
            "oracle: {clients} clients, {} grants seen ({} lease ids), {} queued, {} rejected, {} releases sent; \
             {} answers 503 (retried); peak {peak} leases at once (limit {}); {} violations",
            self.granted,
            self.leases.len(),
            self.queued,
            self.rejected,
            self.released,
            self.unavailable,
            self.limit,
            bad.len()
        )
    }
}

/// xorshift64*: each client's own fixed sequence of choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One client of one or several nodes.
pub struct Client {
    pub http: reqwest::Client,
    /// The nodes' base URLs.
    pub nodes: Vec<String>,
    pub book: Arc<Mutex<Book>>,
    /// The node of the next request (each request goes to the next node).
    pub next: AtomicUsize,
}

impl Client {
    pub fn new(http: reqwest::Client, nodes: Vec<String>, book: Arc<Mutex<Book>>, first: usize) -> Client {
        Client { http, nodes, book, next: AtomicUsize::new(first) }
    }

    /// Sends `make(base)` to the next node, and on to the others while a node does not
    /// answer at all (killed); `None` when none answers. A 503 (the shared ledger is
    /// unavailable: Redis restarted) is retried after a second (the `Retry-After` callgate sends),
    /// as a client should, for up to two minutes. Every request is safe to repeat: acquires
    /// carry keys, releases and cancels free once.
    async fn send(&self, make: impl Fn(&str) -> reqwest::RequestBuilder) -> Option<reqwest::Response> {
        for _ in 0..120 {
            let resp = self.send_once(&make).await?;
            if resp.status() != 503 {
                return Some(resp);
            }
            let after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            {
                let mut book = self.book.lock().unwrap();
                book.unavailable += 1;
                book.without_retry_after += u64::from(after.is_none());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the nodes answered 503 for two minutes");
    }

    async fn send_once(&self, make: &impl Fn(&str) -> reqwest::RequestBuilder) -> Option<reqwest::Response> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.nodes.len() {
            let base = &self.nodes[(first + i) % self.nodes.len()];
            if let Ok(resp) = make(base).send().await {
                return Some(resp);
            }
        }
        None
    }

    /// Sends an acquire; on a grant records it and returns the lease.
    pub async fn acquire(&self, body: Value) -> Option<Answer> {
        let resp = self.send(|base| self.http.post(format!("{base}/v1/acquire")).json(&body)).await?;
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

    pub async fn release(&self, id: &str, key: Option<&str>) {
        let sent = now_us();
        self.book.lock().unwrap().release_sent(id, sent);
        let path = match key {
            Some(k) => format!("/v1/leases?key={k}"),
            None => format!("/v1/leases/{id}"),
        };
        let resp =
            self.send(|base| self.http.delete(format!("{base}{path}"))).await.expect("release: no node answered");
        assert_eq!(resp.status(), 200, "release answers 200");
        if let Some(key) = key {
            self.book.lock().unwrap().released_by_key(key, sent, now_us());
        }
    }

    /// Polls a ticket until it ends; records a grant. `cancel`: give up after the first
    /// look, and leave out of the book a grant that raced the cancel.
    pub async fn wait_ticket(&self, ticket: &str, cancel: bool) -> Option<String> {
        for n in 0..120 {
            let resp = self.send(|base| self.http.get(format!("{base}/v1/tickets/{ticket}"))).await?;
            let v: Value = resp.json().await.ok()?;
            let at = now_us();
            match v["state"].as_str() {
                Some("granted") if cancel && n > 0 => {
                    // Granted around the cancel: clean up, but claim nothing about when.
                    let id = v["lease"]["id"].as_str()?.to_string();
                    self.send(|base| self.http.delete(format!("{base}/v1/leases/{id}"))).await?;
                    return None;
                }
                // Granted, and already released or expired: nothing left to claim.
                Some("granted") if v["lease"]["live"] == false => return None,
                Some("granted") => {
                    self.book.lock().unwrap().grant(&v["lease"], at);
                    return v["lease"]["id"].as_str().map(str::to_string);
                }
                Some("waiting") if cancel => {
                    self.send(|base| self.http.delete(format!("{base}/v1/tickets/{ticket}"))).await?;
                }
                Some("waiting") => tokio::time::sleep(Duration::from_millis(25)).await,
                _ => return None,
            }
        }
        None
    }
}

pub enum Answer {
    Granted(String),
    Queued(String),
}

/// Client `n`'s `ops` operations: inbound calls that wait (in the request or in line),
/// outbound calls, calls that vanish (never released: their short TTL ends them), and
/// retried requests whose key other clients use too.
pub async fn run_client(c: Client, n: u64, ops: u64) {
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
