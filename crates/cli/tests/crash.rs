//! Crash safety: SIGKILL the server while many clients acquire and release, restart it,
//! and check that every lease acknowledged to a client is back and nothing else is; once,
//! and in a loop of rounds on one data directory (`CALLGATE_CRASH_ROUNDS`, default 8)
//! that also checks no lease id is handed out twice across the crashes.

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

/// What the clients know across every crash of one loop.
#[derive(Default)]
struct History {
    /// Every lease id ever acknowledged or restored, with its key.
    ids: HashMap<String, String>,
    /// Leases the clients hold: acknowledged (or restored) and not released. id -> key.
    live: HashMap<String, String>,
    /// Acknowledged releases.
    released: HashSet<String>,
    /// Acquires (keys) and releases (ids) sent whose answer never came.
    acquiring: HashSet<String>,
    releasing: HashMap<String, String>,
    /// Tickets answered `queued`, to be looked at again, and the keys of every request
    /// that was queued (its ticket may be granted without anyone looking).
    tickets: Vec<String>,
    queued_keys: HashSet<String>,
    /// Ids handed to a second key: (id, first key, second key).
    reused: Vec<(String, String, String)>,
    grants: u64,
    releases: u64,
}

impl History {
    fn granted(&mut self, lease: &Value) {
        let (Some(id), Some(key)) = (lease["id"].as_str(), lease["key"].as_str()) else {
            panic!("a granted lease has an id and a key: {lease}")
        };
        if let Some(first) = self.ids.get(id).filter(|k| *k != key) {
            self.reused.push((id.to_string(), first.clone(), key.to_string()));
        }
        self.ids.insert(id.to_string(), key.to_string());
        self.acquiring.remove(key);
        self.live.insert(id.to_string(), key.to_string());
        self.grants += 1;
    }
}

/// The live leases of `GET /v1/leases` (an array, or a page `{ "leases": [...] }`).
fn lease_list(v: &Value) -> HashMap<String, String> {
    let list = v.as_array().or_else(|| v["leases"].as_array()).unwrap_or_else(|| panic!("a lease list: {v}"));
    list.iter().map(|l| (l["id"].as_str().unwrap().to_string(), l["key"].as_str().unwrap().to_string())).collect()
}

/// One client until the server dies: acquire (some waiting in the request, with
/// `wait_ms`, when `waits`), and every third step release a held lease (by id or by key),
/// or look at a ticket it was given.
async fn crash_client(
    h: Arc<Mutex<History>>,
    http: reqwest::Client,
    base: String,
    name: String,
    waits: bool,
    seen_ticket_grant: Arc<tokio::sync::Notify>,
) {
    for n in 0.. {
        if n % 3 == 2 {
            let ticket = h.lock().unwrap().tickets.pop();
            if let Some(t) = ticket {
                let Ok(resp) = http.get(format!("{base}/v1/tickets/{t}")).send().await else { return };
                let Ok(v) = resp.json::<Value>().await else { return };
                if v["state"] == "granted" && v["lease"]["live"] != false {
                    h.lock().unwrap().granted(&v["lease"]);
                    seen_ticket_grant.notify_waiters();
                } else if v["state"] == "waiting" {
                    h.lock().unwrap().tickets.push(t);
                }
                continue;
            }
            let pick = {
                let mut h = h.lock().unwrap();
                let pick = h.live.iter().next().map(|(i, k)| (i.clone(), k.clone()));
                if let Some((id, key)) = &pick {
                    h.live.remove(id);
                    h.releasing.insert(id.clone(), key.clone());
                }
                pick
            };
            let Some((id, key)) = pick else { continue };
            let url = if n % 2 == 0 { format!("{base}/v1/leases/{id}") } else { format!("{base}/v1/leases?key={key}") };
            let Ok(resp) = http.delete(url).send().await else { return };
            let Ok(v) = resp.json::<Value>().await else { return };
            assert_eq!(v["released"], true, "a held lease is released: {v}");
            let mut h = h.lock().unwrap();
            h.releasing.remove(&id);
            h.released.insert(id);
            h.releases += 1;
        } else {
            let key = format!("{name}-n{n}");
            let mut body = json!({ "flow": "calls", "key": key });
            if waits && n % 4 == 1 {
                body["wait_ms"] = json!(200);
            } else {
                body["max_wait_ms"] = json!(0);
            }
            h.lock().unwrap().acquiring.insert(key.clone());
            let Ok(resp) = http.post(format!("{base}/v1/acquire")).json(&body).send().await else { return };
            let status = resp.status();
            let Ok(v) = resp.json::<Value>().await else { return };
            let mut h = h.lock().unwrap();
            match status.as_u16() {
                200 => h.granted(&v["lease"]),
                202 => {
                    h.acquiring.remove(&key);
                    h.tickets.push(v["ticket"]["id"].as_str().unwrap().to_string());
                    h.queued_keys.insert(key);
                }
                429 => {
                    h.acquiring.remove(&key);
                }
                s => panic!("acquire answered {s}: {v}"),
            }
        }
    }
}

/// Starts the server on `data`, checks what it restored against the history, and takes
/// the restored state as the clients' own. Returns the running server.
async fn restart_and_check(
    config: &std::path::Path,
    data: &std::path::Path,
    h: &Mutex<History>,
    http: &reqwest::Client,
    round: usize,
) -> (tokio::process::Child, String) {
    let (child, base) = support::start(config, data).await;
    let leases: Value = http.get(format!("{base}/v1/leases?pool=acct")).send().await.unwrap().json().await.unwrap();
    let pool: Value = http.get(format!("{base}/v1/pools/acct")).send().await.unwrap().json().await.unwrap();
    let restored = lease_list(&leases);
    let mut h = h.lock().unwrap();
    for (id, key) in &h.live {
        assert!(restored.contains_key(id), "round {round}: acknowledged lease {id} ({key}) lost in the crash");
    }
    for (id, key) in &restored {
        assert!(!h.released.contains(id), "round {round}: lease {id} was released (acknowledged) but came back");
        let known = h.live.contains_key(id)
            || h.releasing.contains_key(id)
            || h.acquiring.contains(key)
            || h.queued_keys.contains(key);
        assert!(known, "round {round}: lease {id} ({key}) was never acknowledged nor in flight");
    }
    assert_eq!(pool["used"].as_u64(), Some(restored.len() as u64), "round {round}: used equals the restored units");
    assert!(restored.len() <= 40, "round {round}: never over the limit: {}", restored.len());
    // What was in flight is settled by what came back.
    let releasing: Vec<String> = h.releasing.keys().cloned().collect();
    for id in releasing {
        if !restored.contains_key(&id) {
            h.released.insert(id);
        }
    }
    for (id, key) in &restored {
        if let Some(first) = h.ids.get(id).filter(|k| *k != key) {
            let r = (id.clone(), first.clone(), key.clone());
            h.reused.push(r);
        }
        h.ids.insert(id.clone(), key.clone());
    }
    h.live = restored;
    h.releasing.clear();
    // An acquire in flight may have become a ticket that the restart kept and a later
    // dispatch grants.
    let acquiring = std::mem::take(&mut h.acquiring);
    h.queued_keys.extend(acquiring);
    (child, base)
}

/// Several rounds of load, `kill -9` and restart on one data directory; returns the
/// history for the caller's last checks.
async fn kill_loop(waits: bool) -> History {
    let rounds: usize = std::env::var("CALLGATE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, format!("{CONFIG}queue = {{ max_wait = \"2s\", max_len = 20 }}\n")).unwrap();
    let data = dir.path().join("data");
    let h = Arc::new(Mutex::new(History::default()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let (mut child, mut base) = support::start(&config, &data).await;
    for round in 1..=rounds {
        let seen_ticket_grant = Arc::new(tokio::sync::Notify::new());
        let tasks: Vec<_> = (0..24)
            .map(|c| {
                let (h, http, base, name) = (h.clone(), http.clone(), base.clone(), format!("r{round}-c{c}"));
                tokio::spawn(crash_client(h, http, base, name, waits, seen_ticket_grant.clone()))
            })
            .collect();
        // Kill at a different point of the load each round; with waits, every other round
        // the moment a client has been shown a ticket's grant, when a grant that is not yet
        // on disk would be lost.
        let after = Duration::from_millis(500 + 250 * (round as u64 % 4));
        if waits && round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tokio::time::timeout(after, seen_ticket_grant.notified()).await;
        } else {
            tokio::time::sleep(after).await;
        }
        child.start_kill().expect("SIGKILL");
        child.wait().await.unwrap();
        for t in tasks {
            t.await.expect("a client kept to the API");
        }
        (child, base) = restart_and_check(&config, &data, &h, &http, round).await;
    }
    child.start_kill().unwrap();
    let h = Arc::try_unwrap(h).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "kill -9 loop ({rounds} rounds, waits {waits}): {} grants, {} releases acknowledged, {} ids, {} live at the end, {} ids reused",
        h.grants,
        h.releases,
        h.ids.len(),
        h.live.len(),
        h.reused.len()
    );
    assert!(h.grants > 50 * rounds as u64, "the loop did real work: {} grants", h.grants);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_leases_survive_a_kill_9_loop() {
    let h = kill_loop(false).await;
    assert!(h.reused.is_empty(), "a lease id handed out twice across crashes: {:?}", h.reused);
}

/// The same loop with grants that arrive by waiting (`wait_ms`, ticket status), the paths
/// issue 10 item 3 found showing a grant before it is on disk: such a grant would be lost
/// here, or its id handed out twice after a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_grants_survive_a_kill_9_loop_and_ids_are_never_reused() {
    let h = kill_loop(true).await;
    assert!(h.reused.is_empty(), "a lease id handed out twice across crashes: {:?}", h.reused);
}
