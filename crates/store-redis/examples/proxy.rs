//! The yardstick for the cluster load run (`bench/cluster/ab`, issue 13): what a node that
//! does the least possible with Redis serves on this machine. It takes the same requests
//! as `bench/http/acquire_release.lua` drives a node with (`POST /v1/acquire` with a JSON
//! body, parsed into a typed struct as the real endpoint does; `DELETE /v1/leases?key=…`),
//! queues each as the node's batch runner does (`src/batch.rs`: commands that arrive while
//! a call is in Redis go in the next one, up to 64, at most two calls in Redis at once),
//! runs each batch as one `FCALL` of a function that only returns 1 (carrying each
//! command's name and key, as a real batch carries its arguments), and answers a JSON body
//! of about the real one's size. Same runtime, framework, allocator and Redis client as
//! the node: the distance between it and a bare `EVAL "return 1"` is the HTTP, the batching
//! and two processes sharing the cores; the distance between it and the node is the
//! ledger's work.
//!
//! `cargo run --release -p callgate-store-redis --example proxy -- redis://127.0.0.1:6379/ 127.0.0.1:7790`

use axum::extract::{Query, State};
use axum::routing::{delete, post};
use axum::{Json, Router};
use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The same allocator as the `callgate` binary, so the yardstick does not flatter it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As `src/batch.rs`: the most commands one call carries, and the calls in Redis at once.
const MAX_BATCH: usize = 64;
const IN_FLIGHT: usize = 2;

/// The function every batch calls: the cheapest script Redis can run.
const LIBRARY: &str = "#!lua name=cgyard\nredis.register_function('cgyard', function(keys, args) return 1 end)";

/// The acquire body's fields the load script sends, and the others the real one takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed as the real endpoint parses them; the yardstick only echoes the key
struct AcquireBody {
    flow: Option<String>,
    class: Option<String>,
    key: Option<String>,
    ttl_ms: Option<u64>,
    max_wait_ms: Option<u64>,
    wait_ms: Option<u64>,
    meta: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

struct Job {
    name: &'static str,
    key: String,
    reply: oneshot::Sender<bool>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    running: usize,
}

struct Yard {
    queue: Mutex<Queue>,
    conn: MultiplexedConnection,
}

impl Yard {
    /// Queues one command and waits for its batch's answer (`true`: Redis answered 1).
    async fn run(self: &Arc<Self>, name: &'static str, key: String) -> bool {
        let (reply, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.jobs.push(Job { name, key, reply });
            let start = q.running < IN_FLIGHT;
            if start {
                q.running += 1;
            }
            start
        };
        if start {
            let yard = self.clone();
            tokio::spawn(async move { yard.batches().await });
        }
        rx.await.unwrap_or(false)
    }

    /// Runs batches until nothing waits.
    async fn batches(self: Arc<Self>) {
        let mut conn = self.conn.clone();
        loop {
            let jobs: Vec<Job> = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.jobs.is_empty() {
                    q.running -= 1;
                    return;
                }
                let n = q.jobs.len().min(MAX_BATCH);
                q.jobs.drain(..n).collect()
            };
            let mut fcall = redis::cmd("FCALL");
            fcall.arg("cgyard").arg(0).arg("batch").arg("");
            for j in &jobs {
                fcall.arg(2).arg(j.name).arg(&j.key);
            }
            let ok = matches!(fcall.query_async::<i64>(&mut conn).await, Ok(1));
            for j in jobs {
                let _ = j.reply.send(ok);
            }
        }
    }
}

async fn acquire(State(yard): State<Arc<Yard>>, Json(body): Json<AcquireBody>) -> Json<Value> {
    let key = body.key.unwrap_or_default();
    let ok = yard.run("acquire", key.clone()).await;
    // About the size of the real node's grant.
    Json(json!({
        "decision": if ok { "granted" } else { "error" },
        "lease": { "id": 1234567, "key": key, "flow": body.flow, "class": "inbound",
                   "pools": [{ "pool": "bench", "units": 1 }],
                   "granted_at_ms": 1_765_000_000_000_u64, "expires_at_ms": 1_765_003_600_000_u64, "ttl_ms": 3_600_000 },
        "existing": false,
    }))
}

async fn release(State(yard): State<Arc<Yard>>, Query(q): Query<KeyQuery>) -> Json<Value> {
    let ok = yard.run("release", q.key).await;
    Json(json!({ "released": ok }))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7790".into());
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect to Redis");
    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(LIBRARY).query_async(&mut conn).await.expect("load");
    let yard = Arc::new(Yard { queue: Mutex::default(), conn });
    let app = Router::new()
        .route("/v1/acquire", post(acquire))
        .route("/v1/leases", delete(release))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(yard);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("proxy yardstick listening on http://{addr}");
    axum::serve(listener, app).await.expect("serve");
}
