//! Over-admission oracle: 200 clients against the real binary (real SQLite journal) take,
//! hold and release calls, vanish (never release, the short TTL ends the lease), repeat
//! each other's keys and wait in line, on a 10-slot pool with 3 slots held for inbound.
//!
//! The oracle (`support/oracle.rs`, shared with the three-node test `cluster.rs`) knows
//! only what the clients saw: a lease was certainly held from when a client *received* its
//! grant until the first client *sent* its release (or until its `expires_at_ms`, the
//! earliest the server may reclaim it). Each such interval lies inside the time the server
//! really held the lease, so if more of them overlap at one instant than the pool has
//! slots (or than outbound may take), the server over-admitted: the check has no false
//! positives, whatever the scheduling.
//!
//! `CALLGATE_ORACLE_OPS=N` sets the operations per client (default 40).

mod support;

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::oracle::{run_client, Book, Client};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instant_holds_more_leases_than_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (mut child, base) = support::start(&config, &dir.path().join("data")).await;
    let ops = std::env::var("CALLGATE_ORACLE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);

    let book = Arc::new(Mutex::new(Book::new(LIMIT, INBOUND_RESERVE)));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let c = Client::new(http.clone(), vec![base.clone()], book.clone(), 0);
            tokio::spawn(run_client(c, n, ops))
        })
        .collect();
    for c in clients {
        c.await.expect("a client kept to the API");
    }
    let pool: Value = http.get(format!("{base}/v1/pools/acct")).send().await.unwrap().json().await.unwrap();
    child.start_kill().unwrap();

    let book = book.lock().unwrap();
    let (bad, _) = book.violations();
    eprintln!("{}", book.summary(CLIENTS));
    assert!(bad.is_empty(), "over-admission: (time µs, leases, outbound) {:?}", &bad[..bad.len().min(10)]);
    assert!(book.leases.len() > 200 && book.rejected > 0 && book.queued > 0, "the pool was contended");
    assert!(pool["used"].as_u64().unwrap() <= LIMIT as u64, "the server's own count: {pool}");
}

/// The oracle itself: it sees an overlap of 11 intervals, and of 8 outbound ones, and
/// takes a release sent at the instant of another grant as over (half-open intervals).
#[test]
fn the_oracle_counts_overlapping_holds() {
    let lease = |id: usize, class: &str, expires_ms: u64| json!({ "id": format!("L{id}"), "class": class, "expires_at_ms": expires_ms });
    let mut book = Book::new(LIMIT, INBOUND_RESERVE);
    for i in 0..LIMIT {
        book.grant(&lease(i, "inbound", 10), 1000);
    }
    book.release_sent("L0", 5000);
    book.grant(&lease(99, "inbound", 10), 5000);
    assert!(book.violations().0.is_empty(), "a slot freed at 5 ms is taken at 5 ms");
    book.grant(&lease(100, "inbound", 10), 4000);
    let (bad, peak) = book.violations();
    assert_eq!((bad[0].0, bad[0].1, peak), (4000, 11, 11), "11 leases from 4 ms on");

    let mut book = Book::new(LIMIT, INBOUND_RESERVE);
    for i in 0..=LIMIT - INBOUND_RESERVE {
        book.grant(&lease(i, "outbound", 10), 1000);
    }
    assert!(!book.violations().0.is_empty(), "8 outbound leases break the inbound reserve");
    book.release_sent("L0", 500);
    assert!(book.violations().0.is_empty(), "a release sent before the grant arrived ends it");
}

/// A release by key ends whichever lease holds the key when it runs: with a key two
/// clients share, the second holder's release (sent after the first one's, answered after
/// a third client was granted a new lease of that key) may end the new lease. The oracle
/// counts that lease as held only until the release's send, and not as held at the end;
/// a release by key answered before a grant leaves that grant alone.
#[test]
fn a_release_by_a_shared_key_may_end_a_later_lease_of_that_key() {
    let lease = |id: usize, key: &str| json!({ "id": format!("L{id}"), "class": "inbound", "key": key, "expires_at_ms": 3_600_000 });
    let mut book = Book::new(LIMIT, INBOUND_RESERVE);
    // Two clients hold L300 by key k (an idempotent retry); one releases it by key.
    book.grant(&lease(300, "k"), 1_000);
    book.grant(&lease(300, "k"), 2_000);
    book.release_sent("L300", 3_000);
    book.released_by_key("k", 3_000, 3_500);
    // A third client is granted L399 by k; the second holder's release by key, meant for
    // L300, is sent before and answered after (retried through an outage).
    book.grant(&lease(399, "k"), 5_000);
    book.release_sent("L300", 4_000);
    book.released_by_key("k", 4_000, 9_000);
    assert_eq!(book.held_at(10_000), Vec::<String>::new(), "L399 may have been ended by the release of k");
    // A lease of k granted after every release of k was answered is held.
    book.grant(&lease(400, "k"), 9_500);
    assert_eq!(book.held_at(10_000), vec!["L400".to_string()]);
    // L399 counts as held from its grant up to that release's send only: 20 more leases
    // from 4 ms on never overlap it.
    for i in 0..LIMIT - 1 {
        book.grant(&lease(i, &format!("own-{i}")), 4_000);
    }
    assert!(book.violations().0.is_empty(), "{:?}", book.violations());
}
