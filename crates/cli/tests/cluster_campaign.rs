//! One campaign, three nodes: three `callgate` processes (the real binary) on a private
//! Redis and a database of their own on the machine's PostgreSQL dial one campaign of 500
//! leads (cap 6 calls at once) through a fake Vapi account as strict as the real one
//! (`server/tests/support/vapi_dialer.rs`: it checks every body, refuses calls over the
//! account's limit, counts live calls itself and ends each call after a short talk).
//!
//! The leads are imported through one node; one node paces the campaign (it holds the
//! campaign's pacing lease, `callgate_campaign_paced_here` says which) and is SIGKILLed
//! once 150 calls are placed, with calls live. Another node takes the campaign over, follows
//! the dead node's live calls to their end and dials the rest. Asserted from the fake's own
//! view: exactly 500 calls, one per lead (none twice, none missed), never more than 6 at
//! once, no refusal; and from the surviving nodes: every lead completed, one attempt each.

mod support;

#[path = "../../server/tests/support/private.rs"]
mod private;
#[path = "../../server/tests/support/vapi_dialer.rs"]
mod vapi_dialer;

use private::{Redis, TestDb};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use support::eventually;
use vapi_dialer::{vapi_account, FakeVapi};

const LEADS: usize = 500;
const CAP: u32 = 6;
const NODES: usize = 3;

/// The live nodes (by index) that pace the campaign now.
async fn pacers(http: &reqwest::Client, nodes: &[String], alive: &[bool]) -> Vec<usize> {
    support::nodes_showing(http, nodes, alive, "callgate_campaign_paced_here{campaign=\"big\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_dial_500_leads_once_each_within_the_cap_also_when_the_pacer_is_killed() {
    // Every call is answered and talks 30-120 ms.
    let fake = FakeVapi::start(10, |phone, _| {
        let d = u64::from(phone.as_bytes()[phone.len() - 1] - b'0');
        (None, Duration::from_millis(30 + d * 10))
    })
    .await;
    let redis = Redis::start().await;
    let db = TestDb::new("cluster_campaign");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[storage]
ledger = "{}"
database = "{}"
domain = "campaign-3"
{}
[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"
lease_ttl = "10m"

[[campaigns]]
name = "big"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "asst", phone_number_id = "pn" }}
calls_per_second = 200
max_concurrency = {CAP}
window = {{ start = "00:00", end = "24:00" }}
retry = {{ failed = "50ms", max_attempts = 3 }}
start = true
"#,
            redis.url,
            db.url,
            vapi_account(&fake.url, "50ms")
        ),
    )
    .unwrap();
    let (mut children, nodes) = support::start_nodes(&config, dir.path(), NODES).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut alive = vec![true; NODES];
    eventually(Duration::from_secs(20), "one node paces the campaign", || {
        let (http, nodes, alive) = (&http, &nodes, &alive);
        async move { pacers(http, nodes, alive).await.len() == 1 }
    })
    .await;
    let pacer = pacers(&http, &nodes, &alive).await[0];
    let view: Value =
        http.get(format!("{}/v1/campaigns/big", nodes[pacer])).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["pacer"]["here"], true, "{view}");
    let pacer_node = view["pacer"]["node"].as_str().expect("the pacer's name").to_string();

    // Imported through a node that does not pace the campaign: the pacer reads the leads
    // from PostgreSQL.
    let importer = (pacer + 1) % NODES;
    support::import_leads(&http, &nodes[importer], "big", LEADS).await;

    // The pacer is killed mid-campaign, with calls live on the account.
    for _ in 0..6000 {
        if fake.counts().placed.len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    children[pacer].start_kill().expect("SIGKILL");
    children[pacer].wait().await.unwrap();
    alive[pacer] = false;
    let (at_kill, live_at_kill) = {
        let c = fake.counts();
        (c.placed.len(), c.live_out)
    };
    eprintln!("killed node {pacer} (the pacer) at {at_kill} calls placed, {live_at_kill} live");
    assert!((150..LEADS).contains(&at_kill), "killed mid-campaign: {at_kill} calls placed");

    // Another node takes the campaign over and finishes it.
    eventually(Duration::from_secs(30), "a surviving node paces the campaign", || {
        let (http, nodes, alive) = (&http, &nodes, &alive);
        async move { pacers(http, nodes, alive).await.len() == 1 }
    })
    .await;
    let next = pacers(&http, &nodes, &alive).await[0];
    let survivor = &nodes[next];
    let mut v = Value::Null;
    for _ in 0..900 {
        v = http.get(format!("{survivor}/v1/campaigns/big")).send().await.unwrap().json().await.unwrap();
        if v["finished"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http.get(format!("{survivor}/metrics")).send().await.unwrap().text().await.unwrap();
    let other: Value = {
        let i = (0..NODES).find(|&i| alive[i] && i != next).unwrap();
        http.get(format!("{}/v1/campaigns/big", nodes[i])).send().await.unwrap().json().await.unwrap()
    };
    for mut child in children {
        let _ = child.start_kill();
    }

    let counts = fake.counts();
    eprintln!(
        "{at_kill} calls placed before the pacer was killed ({live_at_kill} live), {} in all; the provider saw at most {} at once",
        counts.placed.len(),
        counts.max_out
    );
    assert_eq!(v["finished"], true, "the campaign finished on the surviving nodes: {v}");
    assert_ne!(v["pacer"]["node"].as_str(), Some(pacer_node.as_str()), "the campaign moved off the dead node: {v}");
    assert_eq!(v["pacer"]["here"], true, "{v}");
    assert_eq!(other["pacer"]["here"], false, "one pacer: {other}");
    assert_eq!(other["pacer"]["node"], v["pacer"]["node"], "the nodes agree on the pacer: {other}");
    assert!(metrics.contains("callgate_campaign_pacer{campaign=\"big\",node="), "{metrics}");
    assert_eq!(v["leads"]["total"], LEADS, "no lead lost: {v}");
    assert_eq!(v["leads"]["done"]["completed"], LEADS, "every lead reached: {v}");
    let phones: HashSet<&str> = counts.placed.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(phones.len(), LEADS, "every lead called");
    assert_eq!(counts.placed.len(), LEADS, "no lead called twice");
    let attempts: HashSet<u64> = counts.placed.iter().map(|p| p.attempt.unwrap()).collect();
    assert_eq!(attempts.len(), LEADS, "an attempt was placed twice");
    assert_eq!(v["attempts"], LEADS, "one attempt per lead: {v}");
    assert!(counts.max_out <= CAP, "the cap held cluster-wide: {} calls at once", counts.max_out);
    assert_eq!((counts.refusals, counts.malformed.len()), (0, 0), "{:?}", counts.malformed);
}
