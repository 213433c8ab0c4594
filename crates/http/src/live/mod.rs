//! The live page at `/`: one HTML page, its stylesheet and its script, embedded in the
//! binary (no front-end build). The page reads `GET /v1/pools`, `/v1/tickets`,
//! `/v1/breakers`, `/v1/alerts`, `/v1/stats`, `/v1/campaigns` and, for each pool whose
//! reserve follows the forecast, `/v1/forecast/today` (drawn by `forecast.js`, each
//! minute), then follows `/v1/events`. The page itself holds no data, so it is served without a key; when keys
//! are configured the script asks for one (or takes `?token=…`), keeps it in the tab's
//! sessionStorage, and sends it as a bearer token (and as `?token=` to `/v1/events`,
//! since `EventSource` cannot set headers).

use crate::app::App;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const INDEX: &str = include_str!("index.html");
const CSS: &str = include_str!("live.css");
const JS: &str = include_str!("live.js");
const FORECAST_JS: &str = include_str!("forecast.js");

/// Static files change only with the binary; a minute of caching saves reloads without
/// keeping a stale page after an upgrade for long.
const CACHE: &str = "public, max-age=60";

/// The page's routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX)
                    .into_response()
            }),
        )
        .route(
            "/live.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], CSS)
                    .into_response()
            }),
        )
        .route(
            "/live.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], JS)
                    .into_response()
            }),
        )
        .route(
            "/forecast.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, CACHE)],
                    FORECAST_JS,
                )
                    .into_response()
            }),
        )
}
