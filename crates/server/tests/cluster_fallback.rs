// Long file: the scenarios of a Redis that fails (down, back, partitioned, stalled) share one config, the private Redis, a forwarder and the oracle of held leases.
//! `on_redis_unavailable = "local_fallback"` (`crate::cluster::fallback`): two nodes over a
//! private `redis-server` that the test SIGKILLs and starts again on the same port and
//! append-only file (Redis unreachable for a while, not emptied). While it is down each
//! node admits on its share of what was free, a pool that fails closed answers 503; when
//! it is back, every lease granted in fallback is in the shared ledger and can be released
//! through any node, and no instant held more leases than the pool.

#[path = "support/private.rs"]
mod private;
mod support;

use private::{free_port, PrivatePg, Redis, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{eventually, secs, TestServer};

fn config(redis: &str, domain: &str, database: Option<&str>) -> String {
    let database = database.map(|d| format!("database = \"{d}\"\n")).unwrap_or_default();
    format!(
        r#"
[storage]
ledger = "{redis}"
domain = "{domain}"
nodes = 2
{database}
[[pools]]
name = "shared"
limit = 6
on_redis_unavailable = "local_fallback"

[[pools]]
name = "strict"
limit = 4

[[flows]]
name = "in"
pools = ["shared"]
class = "inbound"
lease_ttl = "1h"
queue = {{ max_wait = "10m" }}

[[flows]]
name = "strict"
pools = ["strict"]
class = "inbound"
lease_ttl = "1h"
"#
    )
}

/// The value of the metric line `name{pool="<pool>"}` on the node.
async fn metric(t: &TestServer, name: &str, pool: &str) -> String {
    let text = t.metrics().await;
    let prefix = format!("{name}{{pool=\"{pool}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
}

async fn health(t: &TestServer) -> (StatusCode, Value) {
    t.get("/healthz").await
}

/// Waits until Redis has stamped the nodes' presence (a node Redis never saw does not
/// admit on its own).
async fn present(nodes: &[&TestServer]) {
    eventually("Redis has the nodes' presence", secs(10), || async { nodes.iter().all(|t| fallback(t).present()) })
        .await;
}

/// Waits until the node admits on its share of the pool `shared` (Redis is unreachable,
/// and its presence lapsed there a margin ago: a few seconds).
async fn goes_local(t: &TestServer) {
    eventually("the node admits on its share", secs(15), || async {
        metric(t, "callgate_redis_fallback", "shared").await == "1"
    })
    .await;
    assert_eq!(health(t).await.1["status"], "degraded");
}

/// Leases the clients were granted and not yet told released: the oracle.
#[derive(Default)]
struct Held(Vec<String>);

impl Held {
    /// Acquires through `node`; `Some(id)` when granted (and counted), `None` when
    /// rejected for capacity.
    async fn acquire(&mut self, node: &TestServer, key: &str) -> Option<String> {
        self.acquire_lease(node, key).await.map(|l| l["id"].as_str().expect("a lease id").to_owned())
    }

    /// The same, answering the lease granted.
    async fn acquire_lease(&mut self, node: &TestServer, key: &str) -> Option<Value> {
        // No waiting: the oracle counts grants.
        let (s, v) = node.acquire(json!({ "flow": "in", "key": key, "max_wait_ms": 0 })).await;
        match s {
            StatusCode::OK => {
                let id = v["lease"]["id"].as_str().expect("a lease id").to_owned();
                self.0.push(id);
                assert!(self.0.len() <= 6, "{} leases held at once in a pool of 6: {:?}", self.0.len(), self.0);
                Some(v["lease"].clone())
            }
            StatusCode::TOO_MANY_REQUESTS => None,
            other => panic!("acquire {key}: {other} {v}"),
        }
    }

    async fn release(&mut self, node: &TestServer, id: &str) {
        let (s, v) = node.delete(&format!("/v1/leases/{id}")).await;
        assert_eq!((s, &v), (StatusCode::OK, &json!({ "released": true })), "release {id}");
        self.0.retain(|l| l != id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_node_admits_its_share_and_its_leases_join_the_shared_ledger() {
    let (port, dir) = (free_port(), tempfile::tempdir().unwrap());
    let mut redis = Redis::start_keeping(port, dir.path()).await;
    let toml = config(&redis.url, "fallback", None);
    let a = TestServer::start(&toml).await;
    let b = TestServer::start(&toml).await;
    let mut held = Held::default();

    // Before: two leases of the shared pool through a, one of the strict pool through b.
    let k0 = held.acquire(&a, "k0").await.unwrap();
    let k1 = held.acquire(&a, "k1").await.unwrap();
    let (s, v) = b.acquire(json!({ "flow": "strict", "key": "s0" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for node in [&a, &b] {
        eventually("the node has seen both grants on the stream", secs(10), || async {
            metric(node, "callgate_pool_used", "shared").await == "2"
        })
        .await;
    }
    assert_eq!(metric(&a, "callgate_redis_fallback", "shared").await, "0");
    assert_eq!(health(&a).await.1["status"], "ok");

    present(&[&a, &b]).await;
    redis.kill();
    // Each node notices within a second (it checks Redis every second) and goes local once
    // its presence in Redis lapsed, with a margin.
    for node in [&a, &b] {
        goes_local(node).await;
    }
    // Each node's share: (6 - 2 in use) / 2 nodes = 2.
    for node in [&a, &b] {
        assert_eq!(metric(node, "callgate_redis_fallback", "shared").await, "1");
        assert_eq!(metric(node, "callgate_redis_fallback_cap", "shared").await, "2");
        assert_eq!(metric(node, "callgate_redis_fallback", "strict").await, "0", "strict fails closed");
        let pool = node.pool("shared").await;
        assert_eq!(pool["cap"], 2, "/v1/pools shows the local cap in force: {pool}");
    }
    let a1 = held.acquire(&a, "a1").await.expect("within a's share");
    let a2 = held.acquire(&a, "a2").await.expect("within a's share");
    assert_eq!(held.acquire(&a, "a3").await, None, "a's share is used up");
    let b1 = held.acquire(&b, "b1").await.expect("within b's share");
    let b2 = held.acquire(&b, "b2").await.expect("within b's share");
    assert_eq!(held.acquire(&b, "b3").await, None, "b's share is used up");
    assert_eq!(held.acquire(&b, "b3").await, None, "and stays so");
    // A pool that fails closed answers 503, with Retry-After.
    let answer =
        a.client.post(format!("{}/v1/acquire", a.base)).json(&json!({ "flow": "strict" })).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));

    // A local lease released locally frees a's share again; a release of a lease Redis
    // holds is kept for Redis (503) and does not.
    held.release(&a, &a1).await;
    let (s, v) = a.delete(&format!("/v1/leases/{k0}")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "kept for Redis: {v}");
    assert!(v.to_string().contains("kept"), "{v}");
    held.0.retain(|l| *l != k0); // the caller is done with it; Redis frees it when back
    let a4 = held.acquire(&a, "a4").await.expect("a1's slot is a's again");
    assert_eq!(held.acquire(&a, "a5").await, None);

    // Redis comes back with its data: the nodes hand over their leases and rejoin.
    let _redis = Redis::start_keeping(port, dir.path()).await;
    for node in [&a, &b] {
        eventually("the node admits on the shared ledger again", secs(30), || async {
            health(node).await.1["status"] == "ok"
        })
        .await;
        assert_eq!(metric(node, "callgate_redis_fallback", "shared").await, "0");
        assert_eq!(metric(node, "callgate_redis_fallback_over", "shared").await, "0", "nothing over the cap");
    }
    // k1, a2, a4, b1, b2: the kept release of k0 was made, a1 ended.
    assert_eq!(a.used("shared").await, 5);
    assert_eq!(b.used("shared").await, 5);
    assert_eq!(a.used("strict").await, 1);
    let (s, list) = b.get("/v1/leases?pool=shared").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let mut ids: Vec<&str> = list["leases"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    let mut want = vec![k1.as_str(), a2.as_str(), a4.as_str(), b1.as_str(), b2.as_str()];
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want, "the live leases, the fallback's among them, are in the shared ledger (k0 and a1 ended)");
    // Every node's bus counted the fallback's leases once.
    eventually("the stream brought the adopted leases", secs(10), || async {
        metric(&a, "callgate_pool_used", "shared").await == "5"
            && metric(&b, "callgate_pool_used", "shared").await == "5"
    })
    .await;

    // Releases work through any node; the pool admits up to its limit, not past it.
    held.release(&b, &a2).await;
    held.release(&a, &b1).await;
    let (s, v) = b.acquire(json!({ "flow": "in", "key": "a4" })).await;
    assert_eq!((s, v["lease"]["id"].as_str()), (StatusCode::OK, Some(a4.as_str())), "a key keeps its lease: {v}");
    let mut granted = 0;
    for i in 0..4 {
        if held.acquire(&b, &format!("after-{i}")).await.is_some() {
            granted += 1;
        }
    }
    assert_eq!(granted, 3, "6 - (k1, a4, b2)");
    assert_eq!(a.used("shared").await, 6);
    a.server.unwrap().stop().await;
    b.server.unwrap().stop().await;
}

/// A Redis that stalls (it takes requests in and answers none) holds up the requests that
/// wait for it, and nothing else: they wait off the runtime's workers (two, as on this
/// machine), also those that wait for the governor's lock while the sweep holds it across
/// its call to Redis, so `/healthz` and the timers go on meanwhile. Once Redis runs
/// again, the requests are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_holds_up_only_the_requests_that_wait_for_it() {
    let redis = Redis::start().await;
    let a = TestServer::start(&config(&redis.url, "stall", None)).await;
    let mut held = Held::default();
    let id = held.acquire(&a, "k0").await.expect("granted");
    // The node runs the sweep (every 20 ms, under the governor's lock).
    eventually("the node holds the duties", secs(10), || async {
        a.metrics().await.contains("callgate_cluster_duties_held 1")
    })
    .await;

    redis.pause();
    // More requests than the runtime has workers, each waiting for Redis: reads of the
    // shared ledger, and changes of a limit, which wait for the governor's lock first.
    let requests = [
        a.client.get(format!("{}/v1/leases?pool=shared", a.base)),
        a.client.put(format!("{}/v1/pools/shared", a.base)).json(&json!({ "limit": 7 })),
        a.client.get(format!("{}/v1/pools/shared", a.base)),
        a.client.put(format!("{}/v1/pools/shared", a.base)).json(&json!({ "limit": 7 })),
        a.client.get(format!("{}/v1/leases?pool=shared", a.base)),
        a.client.put(format!("{}/v1/pools/shared", a.base)).json(&json!({ "limit": 7 })),
    ];
    let waiting: Vec<_> = requests
        .into_iter()
        .map(|request| {
            tokio::spawn(async move {
                let answer = request.send().await.expect("an answer");
                (answer.status(), answer.text().await.expect("a body"))
            })
        })
        .collect();
    // For a while (on the runtime's timer, which a frozen runtime would not run), the node
    // answers its health; what it says is not the point (it may have noticed Redis).
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (s, v) = health(&a).await;
        assert!(s == StatusCode::OK || s == StatusCode::SERVICE_UNAVAILABLE, "{s} {v}");
    }
    // Still waiting (Redis was not let go; one that had given up would have answered).
    if let Some(done) = waiting.iter().position(|r| r.is_finished()) {
        let answer = waiting.into_iter().nth(done).unwrap().await.unwrap();
        panic!("a request was answered while Redis was stopped: {answer:?}");
    }

    redis.resume();
    for request in waiting {
        let (s, body) = request.await.unwrap();
        // 503 when the node noticed Redis's stall meanwhile (its follower's read gives up
        // after 2 s): the client asks again.
        assert!(s == StatusCode::OK || s == StatusCode::SERVICE_UNAVAILABLE, "{s} {body}");
        assert!(s != StatusCode::OK || body.contains(&id) || body.contains("\"limit\":"), "{body}");
    }
    eventually("the node answers from Redis again", secs(15), || async {
        a.get("/v1/pools/shared").await.0 == StatusCode::OK
    })
    .await;
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_a_lease_granted_in_fallback_is_journaled_before_its_answer() {
    let (port, dir) = (free_port(), tempfile::tempdir().unwrap());
    let mut redis = Redis::start_keeping(port, dir.path()).await;
    let db = TestDb::new("fallback_pg");
    let a = TestServer::start(&config(&redis.url, "fallback-pg", Some(&db.url))).await;
    let rows = |key: &str| {
        db.query(&format!(
            "SELECT count(*) FROM journal_leases WHERE domain = 'fallback-pg' AND key = '{key}' AND granted"
        ))
    };
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "before" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    present(&[&a]).await;
    redis.kill();
    goes_local(&a).await;
    // Its share is (6 - 1) / 2 = 2.
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "local" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let local = v["lease"]["id"].as_str().unwrap().to_owned();
    assert_eq!(rows("local"), "1", "the local grant is in PostgreSQL when it is answered");

    let _redis = Redis::start_keeping(port, dir.path()).await;
    eventually("the node rejoins", secs(30), || async { health(&a).await.1["status"] == "ok" }).await;
    assert_eq!(a.used("shared").await, 2);
    let (s, v) = a.delete(&format!("/v1/leases/{local}")).await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({ "released": true })), "the local lease is Redis's now");
    assert_eq!(rows("local"), "0", "and its release is journaled");
    assert_eq!(rows("before"), "1");
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_empty_is_restored_from_postgres_and_then_the_local_leases_join_it() {
    let mut redis = Redis::start().await; // no persistence: it comes back empty
    let db = TestDb::new("fallback_empty");
    let a = TestServer::start(&config(&redis.url, "fallback-empty", Some(&db.url))).await;
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "before" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let before = v["lease"]["id"].as_str().unwrap().to_owned();

    let port = redis.port;
    present(&[&a]).await;
    redis.kill();
    goes_local(&a).await;
    let mut local = Vec::new();
    for key in ["local-1", "local-2"] {
        let (s, v) = a.acquire(json!({ "flow": "in", "key": key })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        local.push(v["lease"]["id"].as_str().unwrap().to_owned());
    }
    let (s, _) = a.delete(&format!("/v1/leases/{}", local[1])).await;
    assert_eq!(s, StatusCode::OK);

    // Redis returns empty: the ledger is restored from PostgreSQL (which journaled the
    // local grant and release too), then the local leases are handed over, once.
    let _redis = Redis::start_on(port).await;
    eventually("the node rejoins", secs(60), || async { health(&a).await.1["status"] == "ok" }).await;
    assert_eq!(a.used("shared").await, 2, "before and local-1, neither doubled");
    let (s, list) = a.get("/v1/leases").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let mut ids: Vec<&str> = list["leases"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = vec![before.as_str(), local[0].as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let (s, v) = a.delete(&format!("/v1/leases/{}", local[0])).await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({ "released": true })));
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "after" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = v["lease"]["id"].as_str().unwrap();
    assert!(
        ![before.as_str(), local[0].as_str(), local[1].as_str()].contains(&after),
        "ids are never handed out twice"
    );
    a.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_grant_postgres_did_not_commit_is_taken_back() {
    let mut redis = Redis::start().await;
    let mut pg = PrivatePg::start();
    let a = TestServer::start(&config(&redis.url, "fallback-lost", Some(&pg.url))).await;
    let local_used = |t: &TestServer| t.server().app.governor.backend().pools()[0].used;
    present(&[&a]).await;
    redis.kill();
    goes_local(&a).await;

    pg.stop();
    let (s, v) = a.acquire(json!({ "flow": "in", "key": "lost" })).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "nothing is acknowledged that is not durable: {v}");
    eventually("the unacknowledged grant is taken back", secs(30), || async { local_used(&a) == 0 }).await;

    pg.resume();
    let mut granted = false;
    for _ in 0..100 {
        let (s, v) = a.acquire(json!({ "flow": "in", "key": "lost" })).await;
        if s == StatusCode::OK {
            granted = true;
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(granted, "the local share admits again once PostgreSQL commits");
    assert_eq!(local_used(&a), 1, "one lease for the key, not two");
    a.server.unwrap().stop().await;
}

/// A TCP forwarder to Redis that the test can cut (its connections closed, new ones
/// refused) and heal (listening again on the same port): a partition of one node. It runs
/// on a runtime of its own: the node's blocking Redis calls may hold the test runtime's
/// workers while they wait for it.
struct Forwarder {
    port: u16,
    to: u16,
    rt: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    fn start(to: u16) -> Forwarder {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // Bound on a port the system picks, and kept: a port found free and bound later
        // can be taken in between by another test's server (it was, once, in a run of
        // the whole suite).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the forwarder");
        let port = listener.local_addr().unwrap().port();
        let mut f = Forwarder { port, to, rt: Some(rt), task: None };
        f.listen(listener);
        f
    }

    /// Listens again on the same port after [`Forwarder::cut`].
    fn heal(&mut self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the forwarder's port");
        self.listen(listener);
    }

    fn listen(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let to = self.to;
        let rt = self.rt.as_ref().expect("running");
        self.task = Some(rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Dropped with the task: every connection is closed when the forwarder is cut.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn fallback(t: &TestServer) -> &callgate_server::cluster::fallback::Fallback {
    t.server().app.fallback().expect("the local fallback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_partition_the_cut_off_nodes_share_is_held_back_in_redis_while_it_admits_on_it() {
    let redis = Redis::start().await;
    let mut cut_off = Forwarder::start(redis.port);
    // a reaches Redis through the forwarder, b directly; a admits on its own for at most a
    // minute (`fallback_max`).
    let a = TestServer::start(&with_fallback_max(&config(&cut_off.url(), "partition", None), "1m")).await;
    let b = TestServer::start(&config(&redis.url, "partition", None)).await;
    let mut held = Held::default();
    present(&[&a, &b]).await;
    assert!(b.pool("shared").await.get("held_for_silent").is_none(), "nothing is held back while all are there");

    cut_off.cut().await;
    // a notices at once (its Redis connections are closed): it is failing until it may
    // admit on its share.
    eventually("a knows Redis is unreachable", secs(10), || async { health(&a).await.1["status"] == "failing" }).await;
    // Until Redis must be holding a's share back, a admits nothing: 503, with Retry-After
    // (and without trying Redis: an acquire whose answer is lost would count as in use).
    let answer = a.client.post(format!("{}/v1/acquire", a.base)).json(&json!({ "flow": "in" })).send().await.unwrap();
    let (status, retry) = (answer.status(), answer.headers().contains_key("retry-after"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.text().await.unwrap());
    assert!(retry);
    // Redis holds back the share a declared, (6 - 0) / 2 = 3, once its presence lapsed.
    eventually("b sees a's share held back", secs(10), || async { b.pool("shared").await["held_for_silent"] == 3 })
        .await;
    assert_eq!(metric(&b, "callgate_redis_held_for_silent", "shared").await, "3");
    // b fills what Redis admits: the 3 not held back.
    let mut on_b = Vec::new();
    for i in 0..4 {
        if let Some(id) = held.acquire(&b, &format!("b{i}")).await {
            on_b.push(id);
        }
    }
    assert_eq!(on_b.len(), 3, "Redis admits the pool less a's share");
    // a goes local (after the lapse and a margin) on that share, and its leases and
    // Redis's never exceed the pool (the oracle asserts it at each grant).
    goes_local(&a).await;
    assert_eq!(metric(&a, "callgate_redis_fallback_cap", "shared").await, "3");
    let mut on_a = Vec::new();
    for i in 0..4 {
        if let Some(lease) = held.acquire_lease(&a, &format!("a{i}")).await {
            // The flow's TTL is an hour: a local lease's is cut to end with the fallback.
            let ttl = lease["expires_at_ms"].as_u64().unwrap() - lease["granted_at_ms"].as_u64().unwrap();
            assert!(ttl <= 60_000, "a local lease outlives fallback_max: {lease}");
            on_a.push(lease["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(on_a.len(), 3, "a's share, and not more");
    assert_eq!(held.acquire(&b, "b-more").await, None, "b still admits nothing past the pool");
    // A local lease released frees a's share, not Redis's.
    held.release(&a, &on_a[0]).await;
    assert!(held.acquire(&a, "a-again").await.is_some());
    assert_eq!(held.acquire(&b, "b-more").await, None);

    // Healed: a's leases are adopted, then its presence ends the hold-back; nothing over.
    cut_off.heal();
    eventually("a rejoins the shared ledger", secs(30), || async { health(&a).await.1["status"] == "ok" }).await;
    eventually("the hold-back ended", secs(10), || async { b.pool("shared").await.get("held_for_silent").is_none() })
        .await;
    assert_eq!(b.used("shared").await, 6, "b's 3 and a's 3 live local leases");
    assert_eq!(metric(&a, "callgate_redis_fallback_over", "shared").await, "0", "nothing over the pool");
    let (s, list) = b.get("/v1/leases?pool=shared").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let live: Vec<&str> = list["leases"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    for id in &held.0 {
        assert!(live.contains(&id.as_str()), "lease {id} is in the shared ledger: {live:?}");
    }
    assert_eq!(held.acquire(&b, "b-full").await, None, "the pool is full");
    held.release(&b, &on_a[1]).await;
    assert!(held.acquire(&b, "b-freed").await.is_some(), "a local lease released through b frees its unit");
    a.server.unwrap().stop().await;
    b.server.unwrap().stop().await;
}

/// `GET /v1/cluster/nodes` shows the nodes and which are silent; an admin who knows a
/// silent node is gone forgets it (`DELETE /v1/cluster/nodes/{node}`), and the others admit
/// on its share at once rather than after the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_forgets_a_node_that_is_gone_and_its_share_is_free_again() {
    let redis = Redis::start().await;
    let mut cut_off = Forwarder::start(redis.port);
    let a = TestServer::start(&with_fallback_max(&config(&cut_off.url(), "forget", None), "40s")).await;
    let b = TestServer::start(&config(&redis.url, "forget", None)).await;
    present(&[&a, &b]).await;
    let (s, nodes) = a.get("/v1/cluster/nodes").await;
    assert_eq!(s, StatusCode::OK, "{nodes}");
    let nodes = nodes["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let me = nodes.iter().find(|n| n["this_node"] == true).expect("a knows itself");
    assert_eq!((&me["silent"], &me["declared"]), (&json!(false), &json!({ "shared": 3, "strict": 0 })), "{me}");
    // Redis holds a silent node's share back for its own fallback_max (and 5 s) from when
    // it turns silent (3 s after its last presence): a's 40 s, b's default quarter-hour.
    let held_for = |n: &Value| n["holds_back_until_ms"].as_u64().unwrap() - n["silent_at_ms"].as_u64().unwrap();
    assert_eq!(held_for(me), 45_000, "{me}");
    let other = nodes.iter().find(|n| n["this_node"] == false).expect("b");
    assert_eq!(held_for(other), 905_000, "{other}");
    let name = me["node"].as_str().unwrap().to_owned();

    cut_off.cut().await;
    eventually("b sees a's share held back", secs(10), || async { b.pool("shared").await["held_for_silent"] == 3 })
        .await;
    let (_, seen) = b.get("/v1/cluster/nodes").await;
    let silent: Vec<&Value> = seen["nodes"].as_array().unwrap().iter().filter(|n| n["silent"] == true).collect();
    assert_eq!(silent.len(), 1, "{seen}");
    assert_eq!(silent[0]["node"], name.as_str());
    assert!(silent[0]["holds_back_until_ms"].as_u64() > silent[0]["silent_at_ms"].as_u64());

    let path = format!("/v1/cluster/nodes/{}", urlencoding(&name));
    let (s, v) = b.delete(&path).await;
    assert_eq!((s, &v), (StatusCode::OK, &json!({ "forgotten": name })));
    let (s, v) = b.delete(&path).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_node")), "{v}");
    eventually("nothing is held back", secs(10), || async { b.pool("shared").await.get("held_for_silent").is_none() })
        .await;
    let mut held = Held::default();
    for i in 0..6 {
        assert!(held.acquire(&b, &format!("b{i}")).await.is_some(), "the whole pool admits on b again");
    }
    a.server.unwrap().stop().await;
    b.server.unwrap().stop().await;

    // A node without a pool on local_fallback keeps no presence.
    let plain = TestServer::start("[[pools]]\nname = \"p\"\nlimit = 1\n").await;
    let (s, v) = plain.get("/v1/cluster/nodes").await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_local_fallback")), "{v}");
}

/// `config` with `[storage] fallback_max`.
fn with_fallback_max(config: &str, max: &str) -> String {
    config.replace("nodes = 2\n", &format!("nodes = 2\nfallback_max = \"{max}\"\n"))
}

/// `name` as one path segment (node names carry ':' and '.': both allowed in a segment).
fn urlencoding(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
