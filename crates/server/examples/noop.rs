//! The yardstick for the HTTP load run: an axum endpoint that parses the same JSON body
//! as `/v1/acquire` and answers a small JSON object, doing nothing else. Same runtime,
//! same framework, same machine: the distance between it and callgate is what
//! admission and durability cost.
//!
//! `cargo run --release -p callgate-server --example noop -- 127.0.0.1:7790`

use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The same allocator as the `callgate` binary, so the yardstick does not flatter it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7790".into());
    let app = Router::new()
        .route(
            "/v1/acquire",
            post(|Json(body): Json<Value>| async move { Json(json!({ "decision": "granted", "echo": body["key"] })) }),
        )
        .route("/v1/leases", delete(|| async { Json(json!({ "released": true })) }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("noop listening on http://{addr}");
    axum::serve(listener, app).await.expect("serve");
}
