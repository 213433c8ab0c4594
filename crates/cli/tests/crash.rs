//! Crash safety: SIGKILL the server while many clients acquire and release, restart it,
//! and check that every lease acknowledged to a client is back and nothing else is.

mod support;

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG: &str = r#"
[[pools]]
name = "acct"
limit = 40

[[flows]]
name = "calls"
pools = ["acct"]
class = "inbound"
lease_ttl = "1h"
"#;

#[derive(Default)]
struct Ledger {
    /// Acknowledged grants: key -> lease id.
    granted: HashMap<String, String>,
    /// Acknowledged releases (lease ids).
    released: HashSet<String>,
    /// Requests sent whose answer never came: keys of acquires, ids of releases.
    acquiring: HashSet<String>,
    releasing: HashSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_lease_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let (mut child, base) = support::start(&config, &data).await;

    let book = Arc::new(Mutex::new(Ledger::default()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let (book, client, base) = (book.clone(), client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut held: Vec<String> = Vec::new();
            for n in 0.. {
                // Alternate: take a slot; every third step give the oldest one back.
                if n % 3 == 2 && !held.is_empty() {
                    let id = held.remove(0);
                    book.lock().unwrap().releasing.insert(id.clone());
                    let Ok(resp) = client.delete(format!("{base}/v1/leases/{id}")).send().await else { return };
                    let Ok(v) = resp.json::<Value>().await else { return };
                    assert_eq!(v["released"], true, "{v}");
                    let mut b = book.lock().unwrap();
                    b.releasing.remove(&id);
                    b.released.insert(id);
                } else {
                    let key = format!("client{c}-call{n}");
                    book.lock().unwrap().acquiring.insert(key.clone());
                    let Ok(resp) = client
                        .post(format!("{base}/v1/acquire"))
                        .json(&json!({ "flow": "calls", "key": key }))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let status = resp.status();
                    let Ok(v) = resp.json::<Value>().await else { return };
                    let mut b = book.lock().unwrap();
                    b.acquiring.remove(&key);
                    if status == 200 {
                        let id = v["lease"]["id"].as_str().unwrap().to_string();
                        b.granted.insert(key, id.clone());
                        held.push(id);
                    } else {
                        assert_eq!(status, 429, "{v}");
                    }
                }
            }
        }));
    }
    // Let them run until the pool is contended and many decisions are acknowledged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }

    let (mut child, base) = support::start(&config, &data).await;
    let page: Value =
        client.get(format!("{base}/v1/leases?pool=acct&limit=1000")).send().await.unwrap().json().await.unwrap();
    assert!(page["next_cursor"].is_null(), "every lease on one page");
    let leases = page["leases"].clone();
    let pool: Value = client.get(format!("{base}/v1/pools/acct")).send().await.unwrap().json().await.unwrap();
    child.start_kill().unwrap();

    let b = book.lock().unwrap();
    eprintln!(
        "acknowledged grants {}, releases {}, in flight at the kill: {} acquires, {} releases; restored {}",
        b.granted.len(),
        b.released.len(),
        b.acquiring.len(),
        b.releasing.len(),
        leases.as_array().map_or(0, |a| a.len())
    );
    assert!(b.granted.len() > 100, "the test did real work: {} grants", b.granted.len());
    let restored: HashMap<String, String> = leases
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l["key"].as_str().unwrap().to_string()))
        .collect();
    let acked_live: HashSet<&String> =
        b.granted.values().filter(|id| !b.released.contains(*id) && !b.releasing.contains(*id)).collect();
    for id in &acked_live {
        assert!(restored.contains_key(*id), "acknowledged lease {id} lost in the crash");
    }
    for (id, key) in &restored {
        assert!(!b.released.contains(id), "lease {id} was released (acknowledged) but came back");
        let known = acked_live.contains(id) || b.releasing.contains(id) || b.acquiring.contains(key);
        assert!(known, "lease {id} ({key}) was never acknowledged nor in flight");
    }
    assert_eq!(pool["used"].as_u64().unwrap(), restored.len() as u64, "used equals the units of the restored leases");
    assert!(restored.len() <= 40, "never over the limit: {}", restored.len());
    assert!(
        restored.len() >= acked_live.len()
            && restored.len() <= acked_live.len() + b.releasing.len() + b.acquiring.len()
    );
}
