//! The OpenAPI document: the committed copy (`docs/openapi.json`) is what the code
//! generates, and a running server serves it at `/openapi.json` without a key.

mod support;

use reqwest::StatusCode;
use support::TestServer;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let generated = callgate_server::edges::api::openapi::document();
    let path = committed_path();
    if std::env::var("CALLGATE_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not what the code generates; after changing the API, rewrite it with\n  \
         CALLGATE_UPDATE_OPENAPI=1 cargo test -p callgate-server --test openapi\nand commit it"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_every_api_route() {
    let doc: serde_json::Value = serde_json::from_str(&callgate_server::edges::api::openapi::document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every route of the API router and the campaign router (the provider webhooks and
    // the live page's static files are left out on purpose: crates/http/src/api/openapi.rs).
    let expected = [
        ("/v1/acquire", vec!["post"]),
        ("/v1/tickets", vec!["get"]),
        ("/v1/tickets/{id}", vec!["get", "delete"]),
        ("/v1/leases", vec!["get", "delete"]),
        ("/v1/leases/{id}", vec!["delete"]),
        ("/v1/leases/{id}/renew", vec!["post"]),
        ("/v1/pools", vec!["get"]),
        ("/v1/pools/{name}", vec!["get", "put"]),
        ("/v1/cluster/nodes", vec!["get"]),
        ("/v1/cluster/nodes/{node}", vec!["delete"]),
        ("/v1/events", vec!["get"]),
        ("/v1/samples", vec!["post"]),
        ("/v1/breakers", vec!["get"]),
        ("/v1/alerts", vec!["get"]),
        ("/v1/stats", vec!["get"]),
        ("/v1/schedules", vec!["get"]),
        ("/v1/forecast", vec!["get"]),
        ("/v1/forecast/today", vec!["get"]),
        ("/v1/callbacks", vec!["get"]),
        ("/v1/calls", vec!["get"]),
        ("/v1/calls/summary", vec!["get"]),
        ("/v1/campaigns", vec!["get", "post"]),
        ("/v1/campaigns/{name}", vec!["get"]),
        ("/v1/campaigns/{name}/leads", vec!["post"]),
        ("/v1/campaigns/{name}/{action}", vec!["post"]),
        ("/v1/campaigns/{name}/audit", vec!["get"]),
        ("/v1/dnc", vec!["get"]),
        ("/v1/dnc/{list}", vec!["get", "post"]),
        ("/v1/dnc/{list}/{number}", vec!["post", "delete"]),
        ("/v1/config/reload", vec!["post"]),
        ("/healthz", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/openapi.json", vec!["get"]),
    ];
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|(p, _)| *p).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    // And the routers serve no other path: a route added without its annotation (and a
    // place in `openapi.rs`) fails here.
    let mut routed = Vec::new();
    for file in ["../http/src/api/mod.rs", "../http/src/api/dnc.rs", "../http/src/api/campaigns.rs"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        for part in text.split(".route(\"").skip(1) {
            let path = &part[..part.find('"').unwrap()];
            if !path.starts_with("/webhooks/") {
                routed.push(path.to_string());
            }
        }
    }
    routed.sort_unstable();
    routed.dedup();
    assert_eq!(routed, want, "routes of the API and campaign routers vs the document");
    for (path, methods) in expected {
        let mut got: Vec<&str> = paths[path].as_object().unwrap().keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut methods = methods.clone();
        methods.sort_unstable();
        assert_eq!(got, methods, "{path}");
        // Every operation answers a documented error body for its 4xx, and every one
        // behind a key says so (401).
        for m in methods {
            let op = &paths[path][m];
            let public = op["security"] == serde_json::json!([{}]);
            if !public {
                assert!(op["responses"]["401"].is_object(), "{m} {path} documents no 401");
            }
        }
    }
    // Client generators name methods after operation ids: each is unique.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "operation ids repeat: {ids:?}");
    // The 429 of an acquire carries Retry-After.
    assert!(paths["/v1/acquire"]["post"]["responses"]["429"]["headers"]["Retry-After"].is_object());
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn a_server_with_keys_serves_the_document_without_one() {
    let s = TestServer::start(
        r#"
[[pools]]
name = "p"
limit = 1

[auth]
keys = [{ name = "ops", token = "admin-token", role = "admin" }]
"#,
    )
    .await;
    let resp = s.client.get(format!("{}/openapi.json", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(resp.text().await.unwrap(), callgate_server::edges::api::openapi::document());
    // The API itself still needs the key.
    let (st, v) = s.get("/v1/pools").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
}
