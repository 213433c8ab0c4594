// Long file: the scenarios of cluster mode with PostgreSQL (durability, restore, pacing, fencing, the follower after a restore) share one config, the private Redis and database helpers and their readers.
//! Cluster mode with `[storage] database`: the Redis ledger made durable in PostgreSQL
//! before anything is answered (`crate::cluster::durable`), and suppression lists shared
//! by the nodes. Real stores only: a private
//! `redis-server` on a free port, and either a uniquely named database on the machine's
//! PostgreSQL (dropped at the end) or a private PostgreSQL that the test stops as a crash
//! would. Also each campaign paced by one node at a time (`crate::campaign::pacing`): what
//! another node changes (leads, state, new campaigns) reaches the pacer, and a pacer that
//! loses its lease stops dialing.

#[path = "support/private.rs"]
mod private;
mod support;

use private::{PrivatePg, Redis, TestDb};
use reqwest::StatusCode;
use serde_json::json;
use support::{eventually, secs, TestServer};

fn config(redis: &str, database: &str, domain: &str) -> String {
    format!(
        r#"
[storage]
ledger = "{redis}"
database = "{database}"
domain = "{domain}"

[[pools]]
name = "acct"
limit = 3

[[flows]]
name = "in"
pools = ["acct"]
class = "inbound"
lease_ttl = "1h"

[[flows]]
name = "wait"
pools = ["acct"]
class = "inbound"
lease_ttl = "1h"
queue = {{ max_wait = "10m" }}

[[flows]]
name = "out"
pools = ["acct"]
class = "outbound"
lease_ttl = "1h"
"#
    )
}

/// How many granted leases with `key` the journal of `domain` holds (`"0"` or `"1"`).
fn journaled(db: &TestDb, domain: &str, key: &str) -> String {
    db.query(&format!("SELECT count(*) FROM journal_leases WHERE domain = '{domain}' AND key = '{key}' AND granted"))
}

/// Sends `body` to `path` on `node` on a task of its own: the request's status and answer.
fn post_spawned(
    node: &TestServer,
    path: &str,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<(StatusCode, serde_json::Value)> {
    let (client, url) = (node.client.clone(), format!("{}{path}", node.base));
    tokio::spawn(async move {
        let r = client.post(url).json(&body).send().await.expect("the node answers");
        let status = r.status();
        (status, r.json::<serde_json::Value>().await.expect("a JSON answer"))
    })
}

/// What Redis holds of the pool now (read from the ledger itself, not through the API,
/// which answers only what is durable).
fn redis_used(t: &TestServer) -> u64 {
    t.server().app.governor.backend().pools()[0].used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_in_postgres_before_its_answer_and_campaigns_are_shared_by_the_nodes() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire");
    let toml = config(&redis.url, &db.url, "pgwire-a");
    let a = TestServer::start(&toml).await;
    let leases = |key: &str| journaled(&db, "pgwire-a", key);

    let (s, v) = a.acquire(json!({ "flow": "in", "key": "call-1" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Read right after the answer: the answer waited for PostgreSQL's commit.
    assert_eq!(leases("call-1"), "1", "the grant is in the journal table when it is answered");
    let id = v["lease"]["id"].as_str().unwrap().to_string();

    // A second node on the same Redis and database sees the lease, and its own grant is
    // journaled too (another node's counters row).
    let b = TestServer::start(&toml).await;
    let (s, got) = b.get("/v1/leases").await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert!(got.to_string().contains(&id), "node b lists the lease taken through a: {got}");
    let (s, v) = b.acquire(json!({ "flow": "in", "key": "call-2" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(leases("call-2"), "1");

    // Released through the other node: gone from the journal's live leases before the answer.
    let (s, v) = b.delete(&format!("/v1/leases/{id}")).await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({ "released": true })));
    assert_eq!(leases("call-1"), "0", "the release is committed before it is answered");
    assert_eq!(a.used("acct").await, 1);

    // The journal's commit times are the commit-time histogram in cluster mode.
    let text = a.metrics().await;
    let count = text
        .lines()
        .find(|l| l.starts_with("callgate_journal_commit_seconds_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no commit-time histogram:\n{text}"));
    assert!(count >= 1.0, "commits counted: {count}");

    // Campaigns live in PostgreSQL: made through one node, a node that starts later
    // loads it from there (nodes read the campaigns at their start).
    let body = json!({ "name": "shared", "flow": "out", "simulate": {} });
    let (s, v) = a.post("/v1/campaigns", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(db.query("SELECT count(*) FROM campaigns WHERE name = 'shared'"), "1");
    b.server.unwrap().stop().await;
    let c = TestServer::start(&toml).await;
    let (s, v) = c.get("/v1/campaigns/shared").await;
    assert_eq!(s, StatusCode::OK, "the other node reads the campaign from PostgreSQL: {v}");

    c.server.unwrap().stop().await;
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_sent_at_once_are_each_journaled_before_their_answer_and_never_over_admit() {
    // Many requests at once: the node runs them on Redis in batches and appends each
    // batch's events in Redis's order under one lock (crate::cluster::durable).
    let redis = Redis::start().await;
    let db = TestDb::new("pgbatch");
    let a = TestServer::start(&config(&redis.url, &db.url, "pgbatch")).await;
    let send = |path: &'static str, body: serde_json::Value| post_spawned(&a, path, body);
    let mut granted = Vec::new();
    for round in 0..3 {
        let calls: Vec<_> = (0..40)
            .map(|i| (format!("r{round}-{i}"), if i % 2 == 0 { "in" } else { "out" }))
            .map(|(key, flow)| (key.clone(), send("/v1/acquire", json!({ "flow": flow, "key": key }))))
            .collect();
        let mut this_round = Vec::new();
        for (key, call) in calls {
            let (s, v) = call.await.expect("the request task");
            match s {
                StatusCode::OK => this_round.push((key, v["lease"]["id"].as_str().unwrap().to_string())),
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("{key}: {other} {v}"),
            }
        }
        // The pool has 3 lines: never more granted, and every one already in PostgreSQL.
        assert_eq!(this_round.len(), 3, "round {round}: {this_round:?}");
        let in_journal = db.query(&format!(
            "SELECT count(*) FROM journal_leases WHERE domain = 'pgbatch' AND granted AND key LIKE 'r{round}-%'"
        ));
        assert_eq!(in_journal, "3", "round {round}: each answered grant is journaled");
        assert_eq!(redis_used(&a), 3);
        // Released at once too: each release is committed before it is answered.
        let releases: Vec<_> = this_round
            .iter()
            .map(|(_, id)| {
                let (client, url) = (a.client.clone(), format!("{}/v1/leases/{id}", a.base));
                tokio::spawn(async move { client.delete(url).send().await.expect("the node answers").status() })
            })
            .collect();
        for r in releases {
            assert_eq!(r.await.expect("the request task"), StatusCode::OK);
        }
        let live = db.query("SELECT count(*) FROM journal_leases WHERE domain = 'pgbatch' AND granted");
        assert_eq!(live, "0", "round {round}: every release is journaled before its answer");
        granted.extend(this_round);
    }
    assert_eq!(granted.len(), 9);
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_acquires_answer_503_and_the_grant_is_taken_back_in_redis() {
    let redis = Redis::start().await;
    let mut pg = PrivatePg::start();
    let t = TestServer::start(&config(&redis.url, &pg.url, "pgwire-down")).await;
    let (s, v) = t.acquire(json!({ "flow": "in", "key": "before" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    pg.stop();
    let (s, v) = t.acquire(json!({ "flow": "in", "key": "during" })).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "nothing is acknowledged that is not durable: {v}");
    // Redis ran the grant; the node takes it back once the journal says it was lost, so
    // an unacknowledged grant holds no slot.
    eventually("the lost grant is released in Redis", secs(20), || async { redis_used(&t) == 1 }).await;
    assert!(t.server().app.governor.backend().lease_by_key("during").is_none());
    assert!(t.server().app.governor.backend().lease_by_key("before").is_some(), "the acknowledged lease stays");
    let (s, _) = t.get("/healthz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "/healthz says the journal fails");

    pg.resume();
    // Without a request to commit, the node probes PostgreSQL and says it is healthy
    // again (a load balancer that took it out for its 503 sends it nothing to commit).
    eventually("/healthz recovers by itself", secs(30), || async { t.get("/healthz").await.0 == StatusCode::OK }).await;
    // Admission resumes with the database (the first commit after it may still find the
    // old connection broken: retried until one is answered).
    let mut answered = None;
    for i in 0..50 {
        let (s, v) = t.acquire(json!({ "flow": "in", "key": format!("after-{i}") })).await;
        if s == StatusCode::OK {
            answered = Some(format!("after-{i}"));
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let key = answered.expect("admission resumes once PostgreSQL is back");
    eventually("only acknowledged grants hold slots", secs(20), || async { redis_used(&t) == 2 }).await;
    let keys = pg.query("SELECT string_agg(key, ',' ORDER BY id) FROM journal_leases WHERE domain = 'pgwire-down'");
    assert_eq!(keys, format!("before,{key}"), "the journal holds exactly the acknowledged leases");
    t.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_gets_the_acknowledged_leases_back_and_admission_pauses_meanwhile() {
    let mut redis = Redis::start().await;
    let db = TestDb::new("pgwire_restore");
    let toml = config(&redis.url, &db.url, "pgwire-restore");
    let t = TestServer::start(&toml).await;
    // Two nodes: both notice the emptied Redis and try to restore it; one call does.
    let other = TestServer::start(&toml).await;
    let mut ids = Vec::new();
    for (node, key) in [(&t, "k1"), (&other, "k2"), (&t, "k3")] {
        let (s, v) = node.acquire(json!({ "flow": "in", "key": key })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(v["lease"]["id"].as_str().unwrap().to_string());
    }
    let (s, q) = t.acquire(json!({ "flow": "wait", "key": "waiter" })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "a full pool queues: {q}");
    let ticket = q["ticket"]["id"].as_str().unwrap().to_string();
    let before = t.pool("acct").await;
    assert_eq!((before["used"].as_u64(), before["waiting"].as_u64()), (Some(3), Some(1)), "{before}");

    // Redis dies and comes back without its data, on the same port.
    let port = redis.port;
    redis.kill();
    let _redis = Redis::start_on(port).await;

    // Admission pauses: 503 with Retry-After, nothing granted against the empty ledger.
    let answer = t
        .client
        .post(format!("{}/v1/acquire", t.base))
        .json(&json!({ "flow": "in", "key": "during" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"), "a 503 says when to come back");

    // The node re-asserts what PostgreSQL holds, then admission resumes.
    eventually("the ledger is re-asserted from PostgreSQL", secs(60), || async {
        t.get("/v1/pools/acct").await.0 == StatusCode::OK
    })
    .await;
    eventually("the other node admits again", secs(60), || async {
        other.get("/v1/pools/acct").await.0 == StatusCode::OK
    })
    .await;
    let after = t.pool("acct").await;
    assert_eq!(after["used"], before["used"], "the pool's use is the same: {after}");
    assert_eq!(other.pool("acct").await["used"], before["used"], "the same on the other node, not doubled");
    assert_eq!(after["waiting"], before["waiting"], "{after}");
    let (s, list) = t.get("/v1/leases").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    for id in &ids {
        assert!(list.to_string().contains(id.as_str()), "lease {id} is back: {list}");
    }
    assert!(t.server().app.governor.backend().lease_by_key("during").is_none(), "nothing granted while empty");
    let (s, v) = t.acquire(json!({ "flow": "in", "key": "k1" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["lease"]["id"].as_str(), Some(ids[0].as_str()), "the same key is the same lease: none doubled");

    // The line works: a release grants the waiting ticket; a new lease gets a new id.
    let (s, _) = t.delete(&format!("/v1/leases/{}", ids[1])).await;
    assert_eq!(s, StatusCode::OK);
    let (_, tk) = t.get(&format!("/v1/tickets/{ticket}")).await;
    assert_eq!(tk["state"], "granted", "{tk}");
    assert!(!ids.contains(&tk["lease"]["id"].as_str().unwrap().to_string()), "ids are never handed out twice");
    other.server.unwrap().stop().await;
    t.server.unwrap().stop().await;
}

/// The value of `callgate_pool_used{pool="acct"}` on the node's `/metrics` (fed by the bus).
async fn metric_used(t: &TestServer) -> String {
    metric(t, "callgate_pool_used{pool=\"acct\"}").await
}

/// The value of the metric line that starts with `line` on `t`.
async fn metric(t: &TestServer, line: &str) -> String {
    let text = t.metrics().await;
    text.lines()
        .find(|l| l.starts_with(line))
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no {line}:\n{text}"))
}

/// Another PostgreSQL session that holds the journal's lease table: every commit that
/// writes a lease row waits until it is released.
struct TableLock {
    psql: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl TableLock {
    async fn take(db: &TestDb) -> TableLock {
        use std::io::Write;
        let mut psql = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", &db.name, "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        let mut stdin = psql.stdin.take().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE journal_leases IN ACCESS EXCLUSIVE MODE;").unwrap();
        stdin.flush().unwrap();
        eventually("the table is locked", secs(10), || async {
            db.query(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'journal_leases' AND l.mode = 'AccessExclusiveLock' AND l.granted",
            ) == "1"
        })
        .await;
        TableLock { psql, stdin }
    }

    fn release(mut self) {
        use std::io::Write;
        writeln!(self.stdin, "COMMIT;").unwrap();
        drop(self.stdin);
        let _ = self.psql.wait();
    }
}

/// Acquires and releases once through `t` (its journal's connection and statements are
/// then ready), until its bus shows the pool empty again.
async fn warm(t: &TestServer, key: &str) {
    let (s, _) = t.acquire(json!({ "flow": "in", "key": key })).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.delete(&format!("/v1/leases?key={key}")).await;
    assert_eq!(s, StatusCode::OK);
    eventually("the bus saw the release", secs(10), || async { metric_used(t).await == "0" }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_own_grant_reaches_its_metrics_only_once_postgres_committed_it() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire_bus");
    let t = TestServer::start(&config(&redis.url, &db.url, "pgwire-bus")).await;
    warm(&t, "warm").await;

    let lock = TableLock::take(&db).await;
    let answer = post_spawned(&t, "/v1/acquire", json!({ "flow": "in", "key": "held" }));
    // Redis granted it (the stream carries the event) ...
    eventually("Redis ran the grant", secs(10), || async {
        t.server().app.governor.backend().lease_by_key("held").is_some()
    })
    .await;
    // ... but neither the answer nor the node's metrics show it while PostgreSQL has not
    // committed it.
    for _ in 0..10 {
        assert_eq!(metric_used(&t).await, "0", "the bus shows no grant before it is durable");
        assert!(!answer.is_finished(), "no answer before the commit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lock.release();
    assert_eq!(answer.await.unwrap().0, StatusCode::OK, "answered once committed");
    eventually("the bus shows the committed grant", secs(10), || async { metric_used(&t).await == "1" }).await;
    t.server.unwrap().stop().await;
}

/// Another node's grant is in the stream as soon as Redis ran it; this node's bus holds it
/// back until that node's PostgreSQL commit is done and it marked the entry settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_grant_reaches_this_nodes_metrics_only_once_that_node_committed_it() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire_held");
    let toml = config(&redis.url, &db.url, "pgwire-held");
    let (a, b) = (TestServer::start(&toml).await, TestServer::start(&toml).await);
    warm(&a, "warm-a").await;
    warm(&b, "warm-b").await;
    let held = || async { metric(&b, "callgate_cluster_events_held ").await.parse::<u64>().unwrap() };
    eventually("b holds nothing back", secs(10), || async { held().await == 0 }).await;

    let lock = TableLock::take(&db).await;
    let answer = post_spawned(&a, "/v1/acquire", json!({ "flow": "in", "key": "held" }));
    eventually("b read a's grant and holds it back", secs(10), || async { held().await >= 1 }).await;
    assert_eq!(metric_used(&b).await, "0", "b's bus shows no grant a has not committed");
    // A read of the pool through b sees the grant in Redis: it waits too.
    let pool = {
        let (client, url) = (b.client.clone(), format!("{}/v1/pools/acct", b.base));
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("b answers");
            (r.status(), r.json::<serde_json::Value>().await.expect("a JSON answer"))
        })
    };
    for _ in 0..10 {
        assert!(!answer.is_finished(), "a answers only once committed");
        assert!(!pool.is_finished(), "b answers the read only once a committed what it saw");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lock.release();
    let (s, v) = answer.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = pool.await.unwrap();
    assert_eq!((s, &v["used"]), (StatusCode::OK, &json!(1)), "{v}");
    eventually("b's bus shows the grant once a committed and marked it", secs(10), || async {
        metric_used(&b).await == "1" && held().await == 0
    })
    .await;

    // The cluster's alert rules name only metrics a cluster node exposes.
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/callgate-cluster-rules.yml");
    let rules = std::fs::read_to_string(rules).expect("the cluster's alert rules");
    let exposed = b.metrics().await;
    let named: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("callgate_"))
        .collect();
    assert!(named.len() >= 2, "{named:?}");
    for name in named {
        assert!(
            exposed.contains(&format!("# TYPE {name} ")),
            "{name} is named in the cluster's rules, not in /metrics"
        );
    }
    a.server.unwrap().stop().await;
    b.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_on_an_emptied_redis_brings_the_leases_back_before_it_admits() {
    let mut redis = Redis::start().await;
    let db = TestDb::new("pgwire_start");
    let toml = config(&redis.url, &db.url, "pgwire-start");
    let t = TestServer::start(&toml).await;
    for key in ["s1", "s2"] {
        let (s, v) = t.acquire(json!({ "flow": "in", "key": key })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    t.server.unwrap().stop().await;
    // Redis restarts empty while no node runs.
    let port = redis.port;
    redis.kill();
    let _redis = Redis::start_on(port).await;
    let t = TestServer::start(&toml).await;
    assert_eq!(t.used("acct").await, 2, "the acknowledged leases are counted from the first request on");
    let (s, v) = t.acquire(json!({ "flow": "in", "key": "s3" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = t.acquire(json!({ "flow": "in", "key": "s4" })).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "a pool of 3 with 2 restored leases has one slot: {v}");
    t.server.unwrap().stop().await;
}

/// The numbers of `campaign`'s leads that a call was placed to (not stopped by a list).
fn dialed(t: &TestServer, campaign: &str, ids: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let store = t.server().campaigns.store().clone();
    let mut out = Vec::new();
    for id in ids {
        let Some(lead) = store.lead(id).unwrap() else { continue };
        if lead.campaign == campaign
            && store.attempts_of(id).unwrap().iter().any(|a| a.outcome.as_deref() != Some("suppressed"))
        {
            out.push(lead.phone);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_listed_through_one_node_is_never_dialed_by_another() {
    use callgate_server::campaign::PickHook;
    use std::sync::Arc;
    let redis = Redis::start().await;
    let db = TestDb::new("dncshared");
    let toml = config(&redis.url, &db.url, "dnc-shared");
    // Both nodes are up (each has loaded the lists) before anything is listed.
    let a = TestServer::start(&toml).await;
    let b = TestServer::start(&toml).await;

    // Listed through a: b answers for it at once, from the shared store.
    let (s, v) = a.post("/v1/dnc/internal/+13125550101", json!(null)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = b.get("/v1/dnc/internal?number=%2B13125550101").await;
    assert_eq!((s, v["listed"].clone(), v["source"].clone()), (StatusCode::OK, json!(true), json!("api")), "{v}");
    let (_, v) = b.get("/v1/dnc").await;
    assert_eq!((v[0]["list"].clone(), v[0]["numbers"].clone()), (json!("internal"), json!(1)), "{v}");
    assert_eq!(db.query("SELECT count(*) FROM dnc WHERE list = 'internal'"), "1");

    // A campaign made through b (so b dials it: a node loads campaigns at its start).
    let body = json!({
        "name": "shared-dnc", "flow": "out", "calls_per_second": 50,
        "window": { "start": "00:00", "end": "24:00" },
        "simulate": { "ring_time": "2ms", "talk_min": "5ms", "talk_mean": "10ms", "talk_max": "20ms",
                      "failure_rate": 0, "seed": 3 },
        "retry": { "busy": "10ms", "no_answer": "10ms", "voicemail": "10ms", "failed": "10ms", "max_attempts": 2 },
    });
    let (s, v) = b.post("/v1/campaigns", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // At import, b leaves out the number a listed.
    let mut phones: Vec<String> = (0..12).map(|i| format!("+1312555{:04}", 200 + i)).collect();
    phones.push("+13125550101".into());
    let leads = json!({ "leads": phones.iter().map(|p| json!({ "phone": p })).collect::<Vec<_>>() });
    let (s, report) = b.post("/v1/campaigns/shared-dnc/leads", leads).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!((report["added"].clone(), report["suppressed"].clone()), (json!(12), json!(1)), "{report}");

    // Every odd number is listed through node a just after b's dialer picked it (and found
    // it on no list in its copy), before b's lease, attempt record and call: b's last check
    // must see a's addition.
    let (client, base) = (a.client.clone(), a.base.clone());
    let hook: PickHook = Arc::new(move |phone: String| {
        let (client, base) = (client.clone(), base.clone());
        Box::pin(async move {
            let n: u64 = phone[1..].parse().unwrap();
            if n % 2 == 1 {
                let r = client.post(format!("{base}/v1/dnc/internal/{phone}")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::CREATED, "listed through node a");
            }
        })
    });
    b.server().campaigns.set_pick_hook(hook);
    let (s, v) = b.post("/v1/campaigns/shared-dnc/start", json!(null)).await;
    assert!(s.is_success(), "{v}");
    eventually("the campaign finishes on node b", secs(60), || async {
        b.get("/v1/campaigns/shared-dnc").await.1["finished"] == true
    })
    .await;
    let (_, v) = b.get("/v1/campaigns/shared-dnc").await;
    assert_eq!(v["leads"]["suppressed"], 6, "{v}");
    let called = dialed(&b, "shared-dnc", 1..=200);
    assert_eq!(called.len(), 6, "{called:?}");
    assert!(called.iter().all(|p| p[1..].parse::<u64>().unwrap() % 2 == 0), "only even numbers: {called:?}");
    // The audit trail is in PostgreSQL, with the versions the nodes share.
    let r = b.client.get(format!("{}/v1/campaigns/shared-dnc/audit", b.base)).send().await.expect("audit");
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.expect("csv");
    assert_eq!(csv.matches("suppressed by internal").count(), 6, "{csv}");
    assert_eq!(db.query("SELECT count(*) FROM dnc_audit WHERE decision = 'suppressed by internal'"), "6");

    // Taken off through b: a stops refusing it.
    let (s, v) = b.delete("/v1/dnc/internal/+13125550101").await;
    assert_eq!((s, v["changed"].clone()), (StatusCode::OK, json!(true)), "{v}");
    let (_, v) = a.get("/v1/dnc/internal?number=%2B13125550101").await;
    assert_eq!(v["listed"], false, "{v}");
    a.server().campaigns.suppressions().catch_up().await.expect("catch up");
    assert_eq!(a.server().campaigns.suppressions().check(None, "+13125550101"), None);
    assert!(a.server().campaigns.suppressions().check(None, "+13125550201").is_some(), "listed by the hook");

    b.server.unwrap().stop().await;
    a.server.unwrap().stop().await;
}

/// A simulated campaign for [`config`]: two calls at once, short calls, quick retries.
const SIM: &str = r#"
[[campaigns]]
name = "sim"
flow = "out"
simulate = { ring_time = "2ms", talk_min = "20ms", talk_mean = "40ms", talk_max = "80ms", failure_rate = 0, seed = 3 }
window = { start = "00:00", end = "24:00" }
retry = { busy = "10ms", no_answer = "10ms", voicemail = "10ms", failed = "10ms", max_attempts = 2 }
calls_per_second = 50
max_concurrency = 2
start = true
"#;

async fn campaign(t: &TestServer) -> serde_json::Value {
    let (s, v) = t.get("/v1/campaigns/sim").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_paces_a_campaign_and_follows_what_another_node_changes() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire_pace");
    let toml = format!("{}{SIM}", config(&redis.url, &db.url, "pgwire-pace"));
    let a = TestServer::start(&toml).await;
    let b = TestServer::start(&toml).await;
    // One node paces it (the first to ask), and both name that node.
    eventually("one node paces the campaign", secs(20), || async {
        let (pa, pb) = (campaign(&a).await["pacer"].clone(), campaign(&b).await["pacer"].clone());
        pa["here"] != pb["here"] && pa["node"] == pb["node"] && pa["node"].is_string()
    })
    .await;
    let (pacer, other) = if campaign(&a).await["pacer"]["here"] == true { (&a, &b) } else { (&b, &a) };
    assert!(pacer.metrics().await.contains("callgate_campaign_paced_here{campaign=\"sim\"} 1"));
    assert!(other.metrics().await.contains("callgate_campaign_paced_here{campaign=\"sim\"} 0"));

    // Leads imported through the node that does not pace it are dialed by the pacer.
    let leads: Vec<serde_json::Value> = (0..40).map(|i| json!({ "phone": format!("+1213200{i:04}") })).collect();
    let (s, r) = other.post("/v1/campaigns/sim/leads", json!({ "leads": leads })).await;
    assert_eq!((s, &r["added"]), (StatusCode::OK, &json!(40)), "{r}");
    eventually("the pacer dials them", secs(30), || async { campaign(pacer).await["attempts"].as_u64() >= Some(5) })
        .await;
    assert_eq!(campaign(other).await["live"], 0, "the other node dials nothing");

    // Paused through the other node: the pacer follows and dials nothing more.
    let (s, v) = other.post("/v1/campaigns/sim/pause", json!({})).await;
    assert_eq!((s, &v["state"]), (StatusCode::OK, &json!("paused")), "{v}");
    eventually("the pacer follows the pause", secs(20), || async { campaign(pacer).await["state"] == "paused" }).await;
    let dialer = &pacer.server().app.campaigns;
    dialer.settle().await;
    eventually("its calls end", secs(20), || async { campaign(pacer).await["live"] == 0 }).await;
    let attempts = campaign(pacer).await["attempts"].clone();
    dialer.settle().await;
    let v = campaign(pacer).await;
    assert_eq!(v["attempts"], attempts, "nothing dialed while paused: {v}");
    assert!(v["leads"]["pending"].as_u64() > Some(0), "leads are left: {v}");

    // Resumed through the other node: the pacer finishes the campaign, one node dialing.
    let (s, _) = other.post("/v1/campaigns/sim/resume", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    eventually("the pacer finishes the campaign", secs(60), || async { campaign(pacer).await["finished"] == true })
        .await;
    let v = campaign(other).await;
    assert_eq!((v["finished"].clone(), v["leads"]["total"].clone()), (json!(true), json!(40)), "{v}");

    // A campaign created through one node while both run is taken in by the other, and
    // one of them paces it.
    let body = json!({ "name": "api-made", "flow": "out", "simulate": {} });
    let (s, v) = other.post("/v1/campaigns", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    eventually("the other node takes it in", secs(30), || async {
        pacer.get("/v1/campaigns/api-made").await.0 == StatusCode::OK
    })
    .await;
    eventually("one node paces it", secs(20), || async {
        let (pa, pb) = (
            pacer.get("/v1/campaigns/api-made").await.1["pacer"].clone(),
            other.get("/v1/campaigns/api-made").await.1["pacer"].clone(),
        );
        pa["here"] != pb["here"] && pa["node"] == pb["node"] && pa["node"].is_string()
    })
    .await;
    b.server.unwrap().stop().await;
    a.server.unwrap().stop().await;
}

/// `redis-cli` on `port` with `args`; its output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (it comes with redis-server)");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacer_that_loses_its_lease_stops_dialing_and_takes_the_campaign_back_with_a_new_token() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire_fence");
    let toml = format!("{}{SIM}", config(&redis.url, &db.url, "pgwire-fence"));
    let a = TestServer::start(&toml).await;
    eventually("the node paces the campaign", secs(20), || async { campaign(&a).await["pacer"]["here"] == true }).await;
    let token = campaign(&a).await["pacer"]["token"].as_u64().expect("a token");
    // Enough leads that the campaign is still dialing when its lease is taken (a lead takes
    // tens of milliseconds; the node notices within about a second).
    let leads: Vec<serde_json::Value> = (0..300).map(|i| json!({ "phone": format!("+1213200{i:04}") })).collect();
    let (s, r) = a.post("/v1/campaigns/sim/leads", json!({ "leads": leads })).await;
    assert_eq!((s, &r["added"]), (StatusCode::OK, &json!(300)), "{r}");
    eventually("it dials", secs(30), || async { campaign(&a).await["attempts"].as_u64() >= Some(3) }).await;

    // Another holder takes the lease (as a node would once this one's had run out): the
    // renewal finds it, and the node stops dialing.
    let key = "{cg:pgwire-fence}:duty:campaign:sim";
    assert_eq!(redis_cli(redis.port, &["SET", key, "intruder|1000", "PX", "600000"]), "OK");
    eventually("the node gives the campaign up", secs(20), || async {
        let v = campaign(&a).await;
        v["pacer"]["here"] == false && v["pacer"]["node"] == "intruder" && v["pacer"]["token"] == 1000
    })
    .await;
    let dialer = &a.server().app.campaigns;
    dialer.settle().await;
    eventually("its calls end", secs(20), || async { campaign(&a).await["live"] == 0 }).await;
    let attempts = campaign(&a).await["attempts"].clone();
    dialer.settle().await;
    let v = campaign(&a).await;
    assert_eq!(v["attempts"], attempts, "nothing dialed without the lease: {v}");
    assert!(v["leads"]["pending"].as_u64() > Some(0), "leads are left: {v}");

    // The holder is gone: the node takes the campaign back, with a larger token, and
    // finishes it.
    assert_eq!(redis_cli(redis.port, &["DEL", key]), "1");
    eventually("the node paces the campaign again", secs(20), || async { campaign(&a).await["pacer"]["here"] == true })
        .await;
    assert!(campaign(&a).await["pacer"]["token"].as_u64() > Some(token), "a new holder, a larger token");
    eventually("it finishes the campaign", secs(60), || async { campaign(&a).await["finished"] == true }).await;
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacer_that_stalled_past_a_takeover_is_fenced_in_postgres_and_claims_no_lead() {
    let redis = Redis::start().await;
    let db = TestDb::new("pgwire_stale");
    let toml = format!("{}{SIM}", config(&redis.url, &db.url, "pgwire-stale"));
    let a = TestServer::start(&toml).await;
    eventually("the node paces the campaign", secs(20), || async { campaign(&a).await["pacer"]["here"] == true }).await;
    let token = campaign(&a).await["pacer"]["token"].as_u64().expect("a token");
    let fence = db.query("SELECT pacer_fence FROM campaigns WHERE name = 'sim'");
    assert_eq!(fence, token.to_string(), "the pacer's takeover raised the fence to its token");

    // A stalled pacer's view: its lease still looks held to it (its clock says so), but
    // the next holder took the campaign meanwhile and raised the fence, as a takeover
    // does first. Leads imported now must not be claimed by the stale pacer.
    let next = token + 1;
    db.query(&format!("UPDATE campaigns SET pacer_fence = {next} WHERE name = 'sim'"));
    assert_eq!(db.query("SELECT pacer_fence FROM campaigns WHERE name = 'sim'"), next.to_string());
    let leads: Vec<serde_json::Value> = (0..20).map(|i| json!({ "phone": format!("+1213300{i:04}") })).collect();
    let (s, r) = a.post("/v1/campaigns/sim/leads", json!({ "leads": leads })).await;
    assert_eq!((s, &r["added"]), (StatusCode::OK, &json!(20)), "{r}");
    eventually("the stale pacer is refused and stops pacing", secs(20), || async {
        campaign(&a).await["pacer"]["here"] == false
    })
    .await;
    let dialer = &a.server().app.campaigns;
    dialer.settle().await;
    let v = campaign(&a).await;
    assert_eq!((v["attempts"].clone(), v["live"].clone()), (json!(0), json!(0)), "no lead claimed, no call: {v}");
    assert_eq!(v["leads"]["pending"], 20, "{v}");
    assert_eq!(db.query("SELECT count(*) FROM attempts"), "0", "no attempt recorded");
    assert_eq!(redis_used(&a), 0, "the call's lease went back");

    // Only a newer token takes it back: once the lease is given up in Redis, the node
    // takes it with the next token, raises the fence and finishes the campaign.
    assert_eq!(redis_cli(redis.port, &["DEL", "{cg:pgwire-stale}:duty:campaign:sim"]), "1");
    eventually("the node paces the campaign again", secs(20), || async { campaign(&a).await["pacer"]["here"] == true })
        .await;
    assert!(campaign(&a).await["pacer"]["token"].as_u64() >= Some(next), "a newer token");
    eventually("it finishes the campaign", secs(60), || async { campaign(&a).await["finished"] == true }).await;
    assert_eq!(db.query("SELECT count(DISTINCT lead_id) FROM attempts"), "20");
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_followers_read_the_new_event_stream_of_a_redis_that_restarted_empty() {
    let mut redis = Redis::start().await;
    let db = TestDb::new("pgwire_follow");
    let toml = config(&redis.url, &db.url, "pgwire-follow");
    let a = TestServer::start(&toml).await;
    let b = TestServer::start(&toml).await;
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "k1" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Stream ids are Redis's clock in ms. The ids read before the restart lie ahead of the
    // clock of the Redis that comes back (as when its clock was ahead, or it comes back on
    // another machine): the next entry is numbered far ahead, and both nodes read it.
    let stream = "{cg:pgwire-follow}:events";
    assert_eq!(redis_cli(redis.port, &["XSETID", stream, "99999999999999-0"]), "OK");
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "k2" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for node in [&a, &b] {
        eventually("the node's metrics follow the stream", secs(20), || async { metric_used(node).await == "2" }).await;
    }

    // Redis restarts empty and is restored from PostgreSQL; its new stream's ids start at
    // its clock, below the ids the followers read.
    let port = redis.port;
    redis.kill();
    let _redis = Redis::start_on(port).await;
    for node in [&a, &b] {
        eventually("the ledger is restored", secs(60), || async {
            node.get("/v1/pools/acct").await.0 == StatusCode::OK
        })
        .await;
    }
    let (s, v) = b.acquire(json!({ "flow": "in", "key": "k3" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let newest = redis_cli(port, &["XREVRANGE", stream, "+", "-", "COUNT", "1"]);
    let ms: u64 = newest.lines().next().and_then(|id| id.split('-').next()).and_then(|ms| ms.parse().ok()).unwrap();
    assert!(ms < 99_999_999_999_999, "the new stream's ids are below the old ones: {newest}");
    // Both nodes' buses see the decision made after the restore (the grant's node's own
    // included: its bus is fed from the stream too).
    for node in [&a, &b] {
        eventually("the node's metrics see the grant after the restore", secs(20), || async {
            metric_used(node).await == "3"
        })
        .await;
    }
    b.server.unwrap().stop().await;
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_that_ended_just_before_redis_restarted_empty_read_the_same_after_the_restore() {
    let mut redis = Redis::start().await;
    let db = TestDb::new("pgwire_ended");
    let toml = config(&redis.url, &db.url, "pgwire-ended");
    let t = TestServer::start(&toml).await;
    let mut leases = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let (s, v) = t.acquire(json!({ "flow": "in", "key": key })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        leases.push(v["lease"]["id"].as_str().unwrap().to_string());
    }
    // One ticket is granted by a release, another times out.
    let (s, q) = t.acquire(json!({ "flow": "wait", "key": "w1" })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{q}");
    let granted = q["ticket"]["id"].as_str().unwrap().to_string();
    let (s, q) = t.acquire(json!({ "flow": "wait", "key": "w2", "max_wait_ms": 100 })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{q}");
    let timed_out = q["ticket"]["id"].as_str().unwrap().to_string();
    let (s, _) = t.delete(&format!("/v1/leases/{}", leases[0])).await;
    assert_eq!(s, StatusCode::OK);
    let ticket = |id: String| {
        let t = &t;
        async move { t.get(&format!("/v1/tickets/{id}")).await }
    };
    let before = ticket(granted.clone()).await;
    assert_eq!((before.0, &before.1["state"]), (StatusCode::OK, &json!("granted")), "{}", before.1);
    eventually("the other ticket times out", secs(20), || async {
        ticket(timed_out.clone()).await.1["state"] == "timed_out"
    })
    .await;
    let before_timed_out = ticket(timed_out.clone()).await.1;
    eventually("both ends are in PostgreSQL", secs(20), || async {
        db.query("SELECT count(*) FROM journal_ended_tickets") == "2"
    })
    .await;

    // Redis restarts empty and is restored from PostgreSQL: a client polling either
    // ticket reads what it read before, not 404.
    let port = redis.port;
    redis.kill();
    let _redis = Redis::start_on(port).await;
    eventually("the ledger is restored", secs(60), || async { t.get("/v1/pools/acct").await.0 == StatusCode::OK })
        .await;
    let after = ticket(granted).await;
    assert_eq!(after.0, StatusCode::OK, "{}", after.1);
    assert_eq!(after.1, before.1, "the granted ticket reads the same, with its lease");
    let after = ticket(timed_out).await;
    assert_eq!(after.0, StatusCode::OK, "{}", after.1);
    assert_eq!(after.1, before_timed_out, "the timed-out ticket reads the same");
    t.server.unwrap().stop().await;
}

/// A node answers its caller with a grant that another node made only once it has
/// journaled that grant itself: the other node's commit may still be under way, or may be
/// lost (its own caller then hears 503), and a Redis that restarts empty gets back only
/// what PostgreSQL holds. Deterministic, with no timing: the other node here, `x`, is a
/// node of the same domain without `[storage] database`, so no grant it makes is ever
/// committed by it. Three ways a caller of `a` is shown such a grant: an idempotent retry
/// that finds the lease, a ticket read after `x`'s release granted it, and a request that
/// waits in line when `x`'s release grants its ticket; and a retry that finds a ticket `x`
/// queued. Each is in PostgreSQL when `a` answers, and after Redis restarted empty every
/// lease is still held and the ticket still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_another_node_made_is_journaled_here_before_this_node_shows_it() {
    let mut redis = Redis::start().await;
    let db = TestDb::new("pgwire_vouch");
    let toml = config(&redis.url, &db.url, "pgwire-vouch");
    let a = TestServer::start(&toml).await;
    let x = TestServer::start(&toml.replace(&format!("database = \"{}\"\n", db.url), "")).await;
    let journaled = |key: &str| journaled(&db, "pgwire-vouch", key);

    // An idempotent retry through a finds the lease x granted.
    let (s, first) = x.acquire(json!({ "flow": "in", "key": "retried" })).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(journaled("retried"), "0", "x journals nothing");
    let (s, again) = a.acquire(json!({ "flow": "in", "key": "retried" })).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["lease"]["id"], first["lease"]["id"], "the retry finds the same lease");
    assert_eq!(journaled("retried"), "1", "a journaled the lease before it answered the retry");

    // The pool (3) is full; a ticket waits through a and is granted by x's release.
    let mut held = Vec::new();
    for key in ["held-1", "held-2"] {
        let (s, v) = x.acquire(json!({ "flow": "in", "key": key })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        held.push(v["lease"]["id"].as_str().unwrap().to_string());
    }
    let (s, q) = a.acquire(json!({ "flow": "wait", "key": "polled" })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{q}");
    let (s, _) = x.delete(&format!("/v1/leases/{}", held[0])).await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = a.get(&format!("/v1/tickets/{}", q["ticket"]["id"].as_str().unwrap())).await;
    assert_eq!((s, &t["state"]), (StatusCode::OK, &json!("granted")), "{t}");
    assert_eq!(journaled("polled"), "1", "a journaled the ticket's lease before it showed it");

    // A request that waits in line on a, granted by x's release (a hears of it from the
    // cluster's stream).
    let waiting = post_spawned(&a, "/v1/acquire", json!({ "flow": "wait", "key": "waiter", "wait_ms": 60_000 }));
    eventually("the request waits in line", secs(20), || async { x.pool("acct").await["waiting"] == 1 }).await;
    let (s, _) = x.delete(&format!("/v1/leases/{}", held[1])).await;
    assert_eq!(s, StatusCode::OK);
    let (s, w) = waiting.await.unwrap();
    assert_eq!((s, &w["decision"]), (StatusCode::OK, &json!("granted")), "{w}");
    assert_eq!(journaled("waiter"), "1", "a journaled the waiter's lease before it answered");

    // The pool is full again: an idempotent retry through a finds the ticket x queued.
    let (s, first) = x.acquire(json!({ "flow": "wait", "key": "queued" })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let tickets = || db.query("SELECT count(*) FROM journal_tickets WHERE domain = 'pgwire-vouch' AND key = 'queued'");
    assert_eq!(tickets(), "0", "x journals nothing");
    let (s, again) = a.acquire(json!({ "flow": "wait", "key": "queued" })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    let ticket = again["ticket"]["id"].as_str().unwrap().to_string();
    assert_eq!(again["ticket"]["id"], first["ticket"]["id"], "the retry finds the same ticket");
    assert_eq!(tickets(), "1", "a journaled the ticket before it answered the retry");

    // Redis restarts empty: every lease a's callers were shown comes back from PostgreSQL.
    x.server.unwrap().stop().await;
    let port = redis.port;
    redis.kill();
    let _redis = Redis::start_on(port).await;
    eventually("the ledger is restored", secs(60), || async { a.get("/v1/pools/acct").await.0 == StatusCode::OK })
        .await;
    let (s, listed) = a.get("/v1/leases").await;
    assert_eq!(s, StatusCode::OK, "{listed}");
    let mut keys: Vec<&str> = listed["leases"].as_array().unwrap().iter().filter_map(|l| l["key"].as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["polled", "retried", "waiter"], "{listed}");
    let (s, t) = a.get(&format!("/v1/tickets/{ticket}")).await;
    assert_eq!((s, &t["state"]), (StatusCode::OK, &json!("waiting")), "the queued ticket waits on: {t}");
    a.server.unwrap().stop().await;
}
