//! The HTTP API v1 (API.md): acquire, tickets, leases, pools, callbacks, calls, health,
//! metrics, events, campaigns; and the router that also serves the provider webhooks.

#[doc(hidden)]
pub mod acquire;
#[doc(hidden)]
pub use crate::auth::auth_keys;
pub(crate) mod body;
mod callbacks;
pub mod campaigns;
mod cluster;
pub mod dnc;
mod forecast;
mod leases;
pub mod openapi;
mod ops;
mod pools;
mod summary;
mod tickets;

pub use crate::app::App;
pub use crate::auth::{constant_time_eq, Caller, EventsCaller, Keys};
pub use crate::bounds::Limits;

use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use callgate_events::live::Resume;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// The API's routes (v1, health, metrics, the document) on the edge's state; the
/// webhooks and the live page join them in the edge's router (`router.rs`).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/acquire", post(acquire::acquire))
        .route("/v1/tickets/{id}", get(tickets::status).delete(tickets::cancel))
        .route("/v1/leases", get(leases::list).delete(leases::release_by_key))
        .route("/v1/leases/{id}", axum::routing::delete(leases::release))
        .route("/v1/leases/{id}/renew", post(leases::renew))
        .route("/v1/pools", get(pools::list))
        .route("/v1/pools/{name}", put(pools::set_limit).get(pools::one))
        .route("/v1/cluster/nodes", get(cluster::list))
        .route("/v1/cluster/nodes/{node}", axum::routing::delete(cluster::forget))
        .route("/v1/events", get(events))
        .route("/v1/samples", post(ops::samples))
        .route("/v1/breakers", get(ops::breakers))
        .route("/v1/alerts", get(ops::alerts))
        .route("/v1/stats", get(ops::stats))
        .route("/v1/schedules", get(ops::schedules))
        .route("/v1/forecast", get(forecast::forecast))
        .route("/v1/forecast/today", get(forecast::today))
        .route("/v1/tickets", get(ops::waiting))
        .route("/v1/config/reload", post(reload))
        .route("/v1/callbacks", get(callbacks::list))
        .route("/v1/calls", get(callbacks::calls))
        .route("/v1/calls/summary", get(summary::summary))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics))
        .merge(dnc::routes())
}

/// What `GET /healthz` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok` (200), `degraded` (200: Redis is unreachable and pools with `local_fallback`
    /// admit on this node's share, or the node is rejoining the shared ledger) or
    /// `failing` (503).
    status: &'static str,
    /// Why the journal is failing, or why the node is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Whether the server can promise durable answers (its journal commits).
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "server", security(()),
    responses(
        (status = 200, description = "Healthy (`ok`), or admitting on this node's share while Redis is unreachable (`degraded`)", body = Health),
        (status = 503, description = "The journal is failing: nothing is admitted", body = Health),
    ),
)]
async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.governor.journal_failure() {
        None => match app.fallback().and_then(|f| f.status().reason) {
            Some(why) => axum::Json(Health { status: "degraded", reason: Some(why) }).into_response(),
            None => axum::Json(Health { status: "ok", reason: None }).into_response(),
        },
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: "failing", reason: Some(why) }))
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "server", security(()),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = app.metrics.render();
    callgate_events::metrics::render_journal_up(&mut text, app.governor.journal_up());
    if let Some(held) = app.duties.clustered() {
        callgate_events::metrics::render_duties_held(&mut text, held);
    }
    if let Some(f) = &app.following {
        callgate_events::metrics::render_events_held(&mut text, f.held());
    }
    // How long the journal's commits took: the embedded backend's own figure.
    let mut backend = app.governor.backend();
    if let Some(f) = app.fallback() {
        f.render_metrics(&mut text);
        backend = f.inner();
    }
    if let Some(embedded) = backend.as_any().downcast_ref::<callgate_store::Embedded>() {
        callgate_events::metrics::render_commit_seconds(&mut text, embedded.journal().commit_times());
    } else if let Some(pg) = backend.as_any().downcast_ref::<callgate_runtime::cluster::durable::Journaled>() {
        // Cluster mode with a database: the PostgreSQL journal's.
        callgate_events::metrics::render_commit_seconds(&mut text, pg.journal().commit_times());
    }
    app.governor.ops().render_metrics(&mut text);
    app.campaigns.render_metrics(&mut text);
    app.reload.render_metrics(&mut text);
    app.schedules.render_metrics(&app.reload.current(), &mut text);
    app.forecasts.render_metrics(&app.reload.current(), app.governor.now_ms(), &mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /v1/events`: every event with its `id:`; with `Last-Event-ID`, first the events
/// after that one from the backlog, or a `missed` event when they are no longer kept.
#[utoipa::path(
    get, path = "/v1/events", operation_id = "events", tag = "events",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id"),
        ("token" = Option<String>, Query, description = "The key, for clients that cannot set headers (`EventSource`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: each `data:` is one event as JSON, with its `id:`",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "`Last-Event-ID` is not a number", body = ErrorBody),
        (status = 401, description = "No valid key", body = ErrorBody),
    ),
    security(("bearer" = []), ("token_query" = [])),
)]
async fn events(
    State(app): State<Arc<App>>,
    _caller: EventsCaller,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request("`Last-Event-ID` must be the id of an event this server sent (a number)")
        })?),
    };
    let (first, rx): (Vec<SseEvent>, _) = match last {
        None => (Vec::new(), app.live.subscribe()),
        Some(last) => {
            let (resume, rx) = app.live.resume(last);
            let first = match resume {
                Resume::Replay(list) => list.iter().map(|e| live_event(e.id, e.json())).collect(),
                Resume::Missed { last, latest } => {
                    vec![SseEvent::default().event("missed").id(latest.to_string()).data(
                        serde_json::json!({ "type": "missed", "last_event_id": last, "latest_id": latest }).to_string(),
                    )]
                }
            };
            (first, rx)
        }
    };
    let live = BroadcastStream::new(rx).map(|m| match m {
        Ok(e) => live_event(e.id, e.json()),
        Err(BroadcastStreamRecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
    });
    let mut stopping = app.stopping.subscribe();
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let stream =
        futures_util::stream::iter(first).chain(live).map(Ok::<_, std::convert::Infallible>).take_until(stopped);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn live_event(id: u64, json: &str) -> SseEvent {
    SseEvent::default().id(id.to_string()).data(json)
}

/// The answer to `POST /v1/config/reload`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReloadAnswer {
    /// Whether the new configuration is in force.
    reloaded: bool,
    /// What changed, for people (when reloaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<String>>,
    /// Why nothing changed (when not reloaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ReloadRefusal>,
}

/// Why a reload changed nothing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReloadRefusal {
    /// `no_config_file`, `invalid_config` or `restart_required`.
    code: &'static str,
    /// For people.
    message: String,
    /// Where the file does not validate (`invalid_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ReloadProblem>>,
    /// What only a restart can change (`restart_required`).
    #[serde(skip_serializing_if = "Option::is_none")]
    needs_restart: Option<Vec<String>>,
}

/// One problem of a configuration file.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReloadProblem {
    /// The line, when known.
    line: Option<usize>,
    /// The field (a dotted path).
    field: String,
    /// What is wrong.
    message: String,
}

/// `POST /v1/config/reload` (admin): re-reads the configuration file and applies it, or
/// changes nothing and says why (see [`crate::reload`]).
#[utoipa::path(
    post, path = "/v1/config/reload", operation_id = "reload_config", tag = "server",
    responses(
        (status = 200, description = "Reloaded: what changed", body = ReloadAnswer),
        (status = 400, description = "The file does not validate (`invalid_config`); nothing changed", body = ReloadAnswer),
        (status = 401, description = "No valid key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "No file to read (`no_config_file`), or a change only a restart can make (`restart_required`); nothing changed", body = ReloadAnswer),
        (status = 503, description = "The journal cannot commit", body = ErrorBody),
    ),
)]
pub(crate) async fn reload(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_admin()?;
    use crate::reload::ReloadFailure as F;
    let failure = match crate::reload::reload(&app, &callgate_config::ProcessEnv).await {
        Ok(changes) => {
            let answer = ReloadAnswer { reloaded: true, changes: Some(changes), error: None };
            return Ok(axum::Json(answer).into_response());
        }
        Err(f) => f,
    };
    let message = failure.to_string();
    let refusal =
        |code, problems, needs_restart| ReloadRefusal { code, message: message.clone(), problems, needs_restart };
    let (status, error) = match failure {
        F::NoFile => (StatusCode::CONFLICT, refusal("no_config_file", None, None)),
        F::Invalid(errors) => {
            let problems = errors
                .iter()
                .map(|e| ReloadProblem { line: e.line, field: e.field.clone(), message: e.message.clone() })
                .collect();
            (StatusCode::BAD_REQUEST, refusal("invalid_config", Some(problems), None))
        }
        F::Unusable(_) => (StatusCode::BAD_REQUEST, refusal("invalid_config", None, None)),
        F::NeedsRestart(list) => (StatusCode::CONFLICT, refusal("restart_required", None, Some(list))),
        F::Refused(e) => return Err(e.into()),
    };
    Ok((status, axum::Json(ReloadAnswer { reloaded: false, changes: None, error: Some(error) })).into_response())
}
