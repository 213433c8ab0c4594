//! Crash safety of the dialer: SIGKILL the server while a campaign dials a fake Vapi
//! account, start it again, and check that the campaign finishes with every lead, that no
//! attempt was placed twice (no lead was called twice: every call is answered, so one call
//! per lead is all there should be), and that the account never held more than it should.

mod support;

#[path = "../../server/tests/support/vapi_dialer.rs"]
mod vapi_dialer;

use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use vapi_dialer::{vapi_account, FakeVapi};

const LEADS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lead_is_lost_or_dialed_twice_across_sigkill() {
    // Every call is answered and talks 60-330 ms: calls are live when the kill comes.
    let fake = FakeVapi::start(10, |phone, _| {
        let d = u64::from(phone.as_bytes()[phone.len() - 1] - b'0');
        (None, Duration::from_millis(60 + d * 30))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"
lease_ttl = "10m"

[[campaigns]]
name = "crash"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "asst", phone_number_id = "pn" }}
calls_per_second = 1000
window = {{ start = "00:00", end = "24:00" }}
retry = {{ failed = "50ms", max_attempts = 3 }}
start = true
"#,
            vapi_account(&fake.url, "100ms")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut child, base) = support::start(&config, &data).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    support::import_leads(&client, &base, "crash", LEADS).await;

    // Kill it mid-campaign, with calls live on the account.
    for _ in 0..600 {
        if fake.counts().placed.len() >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let at_kill = fake.counts().placed.len();
    let live_at_kill = fake.counts().live_out;
    assert!((30..LEADS).contains(&at_kill), "killed mid-campaign: {at_kill} calls placed");

    let (mut child, base) = support::start(&config, &data).await;
    let mut v = Value::Null;
    for _ in 0..600 {
        v = client.get(format!("{base}/v1/campaigns/crash")).send().await.unwrap().json().await.unwrap();
        if v["finished"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.start_kill().unwrap();
    let counts = fake.counts();
    eprintln!(
        "{at_kill} calls placed before the kill ({live_at_kill} live), {} in all; provider saw at most {} at once",
        counts.placed.len(),
        counts.max_out
    );
    assert_eq!(v["finished"], true, "the campaign finished after the restart: {v}");
    assert_eq!(v["leads"]["total"], LEADS, "no lead lost: {v}");
    assert_eq!(v["leads"]["done"]["completed"], LEADS, "every lead reached: {v}");
    // One call per attempt, one attempt per lead.
    let attempts: HashSet<u64> = counts.placed.iter().map(|p| p.attempt.unwrap()).collect();
    assert_eq!(attempts.len(), counts.placed.len(), "an attempt was placed twice");
    let phones: HashSet<&str> = counts.placed.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(phones.len(), LEADS);
    assert_eq!(counts.placed.len(), LEADS, "no lead was called twice");
    assert_eq!(v["attempts"], LEADS, "{v}");
    assert!(counts.max_out <= 7, "outbound never took the inbound reserve: {}", counts.max_out);
    assert_eq!(counts.refusals, 0);
}
