//! The router of the whole edge: the API's routes, the provider webhooks and the live
//! page on the edge's state, and JSON answers for unknown paths and methods. The body
//! limit is set around it where connections are served (`connections.rs`).

use crate::app::App;
use crate::error::{ApiError, ErrorKind};
use crate::{api, live, twilio, vapi};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;

/// The router of the whole edge (the campaign API is merged beside it at start-up).
pub fn router(app: Arc<App>) -> Router {
    api::routes()
        // The `webhook` span wraps these two routes only: a layer on the whole router
        // cloned a boxed service and boxed a future on every request (the API's too).
        .route(
            "/webhooks/vapi/{provider}",
            post(vapi::webhook).layer(axum::middleware::from_fn(callgate_runtime::telemetry::webhook_span)),
        )
        .route(
            "/webhooks/twilio/{provider}/{endpoint}",
            post(twilio::webhook).layer(axum::middleware::from_fn(callgate_runtime::telemetry::webhook_span)),
        )
        .merge(live::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "method_not_allowed", "this method is not served on this path")
}
