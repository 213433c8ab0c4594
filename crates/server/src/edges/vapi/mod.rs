//! The Vapi edge: `POST /webhooks/vapi/{provider}`, the server URL of the phone numbers
//! (or assistants) whose calls callgate admits.
//!
//! - The secret is checked first (`X-Vapi-Secret`, or `Authorization: Bearer`), in
//!   constant time, before the body is even read: a wrong one is a 401 and changes nothing.
//! - `assistant-request` acquires a line for the flow that serves the called number, with
//!   the call id as key, and never waits: Vapi wants the answer within 7.5 s and has no
//!   waiting room, so a caller who finds no free line gets the flow's overflow at once, as
//!   Vapi can carry it out: a transfer, or a spoken message (busy, or "we will call you
//!   back" once the callback is on disk). Voicemail and IVR steps need a keypad or a
//!   recorder Vapi's reply cannot ask for; they are skipped in favour of the next step.
//! - `status-update` with `ended` and `end-of-call-report` release the call's lease by its
//!   id, idempotently and in either order, and record the call; other statuses renew it.
//! - Every other message type is acknowledged and ignored.

pub(crate) mod message;
mod reply;

#[cfg(test)]
mod tests;

use super::api::{constant_time_eq, App};
use super::{body_error, webhook_outcome};
use crate::error::ApiError;
use crate::governor::{AcquireRequest, Answer, Target};
use crate::inbound::{book_callback, record_call, Call, DEFAULT_BUSY, DEFAULT_CALLBACK, NOT_IN_SERVICE};
use crate::providers::{Credentials, Provider};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use callgate_config::{FlowConfig, OverflowAction, ProviderKind};
use message::{CallInfo, VapiMessage};
use reply::{respond, VapiReply};
use std::sync::Arc;

/// The largest webhook body read. An end-of-call report carries the transcript and the
/// messages of the whole call; 8 MiB holds hours of conversation. The secret is checked
/// before a byte of it is read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// `POST /webhooks/vapi/{provider}`.
pub(crate) async fn webhook(State(app): State<Arc<App>>, Path(name): Path<String>, req: Request) -> Response {
    let started = tokio::time::Instant::now();
    let Some(provider) = app.inbound.providers.get(&name, ProviderKind::Vapi).cloned() else {
        return ApiError::not_found("unknown_provider", format!("no vapi provider named `{name}`")).into_response();
    };
    let (endpoint, response) = handle(&app, &provider, req).await;
    let outcome = webhook_outcome(response.status());
    app.metrics.edges.webhook(&provider.name, endpoint, outcome, started.elapsed().as_secs_f64());
    response
}

/// True when the request carries the provider's webhook secret.
fn authorized(headers: &HeaderMap, provider: &Provider) -> bool {
    let Credentials::Vapi { webhook_secret, .. } = &provider.credentials else { return false };
    let secret = webhook_secret.expose().as_bytes();
    let legacy = headers.get("x-vapi-secret").map(|v| v.as_bytes());
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // Both are compared whichever is present, so the timing tells nothing either.
    let a = legacy.is_some_and(|v| constant_time_eq(v, secret));
    let b = bearer.is_some_and(|v| constant_time_eq(v, secret));
    a | b
}

async fn handle(app: &App, provider: &Provider, req: Request) -> (&'static str, Response) {
    if !authorized(req.headers(), provider) {
        let e = ApiError::new(
            crate::error::ErrorKind::Unauthorized,
            "unauthorized",
            "missing or wrong webhook secret (X-Vapi-Secret or Authorization: Bearer)",
        );
        return ("unauthenticated", e.into_response());
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return ("unreadable", body_error(e).into_response()),
    };
    let msg = match message::parse(&body) {
        Ok(m) => m,
        Err(e) => return ("malformed", ApiError::bad_request(e.to_string()).into_response()),
    };
    let endpoint = msg.endpoint();
    let response = match msg {
        VapiMessage::AssistantRequest(call) => respond(true, assistant_request(app, provider, call).await),
        VapiMessage::StatusUpdate { call, status, ended_reason, at } => {
            respond(false, status_update(app, provider, call, &status, ended_reason, at).await)
        }
        VapiMessage::EndOfCallReport { call, ended_reason, cost, started_at, ended_at } => {
            respond(false, end_of_call(app, provider, call, ended_reason, cost, started_at, ended_at).await)
        }
        VapiMessage::Other(_) => respond(false, Ok(VapiReply::Ack)),
    };
    (endpoint, response)
}

fn call_of(provider: &Provider, info: CallInfo) -> Call {
    Call { provider: provider.name.clone(), id: info.id, from: info.customer, to: info.number }
}

async fn assistant_request(app: &App, provider: &Provider, info: CallInfo) -> Result<VapiReply, ApiError> {
    let call = call_of(provider, info);
    let flow = app.inbound.flow_for(&provider.name, call.to.as_deref());
    let Some((flow, vapi)) = flow.and_then(|f| Some((f, f.vapi.as_ref()?))) else {
        tracing::warn!(provider = %provider.name, call = %call.id, number = ?call.to, "No flow serves this Vapi number");
        return Ok(VapiReply::Say(NOT_IN_SERVICE.into()));
    };
    let answer = app
        .governor
        .acquire(AcquireRequest {
            target: Target::Flow(flow.name.clone()),
            key: Some(call.id.clone()),
            ttl_ms: None,
            // Vapi has no waiting room and wants its answer within 7.5 s: never queue.
            max_wait_ms: Some(0),
            wait_ms: 0,
            meta: Some(call.meta()),
        })
        .await?;
    let now = app.governor.now_ms();
    let mut update = call.update(now);
    update.flow = Some(flow.name.clone());
    if let Answer::Granted(_) = answer {
        update.outcome = Some("granted".into());
        update.started_at = Some(now);
        record_call(app, update).await?;
        return Ok(VapiReply::Assistant(vapi.assistant_id.clone()));
    }
    let blocked = matches!(answer, Answer::Rejected { dependency: Some(_), .. });
    let (reply, action) = overflow(app, &call, flow, blocked).await?;
    app.metrics.edges.overflow(&flow.name, action);
    if action != "callback" {
        update.outcome = Some(format!("overflow:{action}"));
        record_call(app, update).await?;
    }
    Ok(reply)
}

/// The first step of the flow's chain that Vapi can carry out. `blocked`: a breaker
/// turned the caller away (the fallback applies).
async fn overflow(
    app: &App,
    call: &Call,
    flow: &FlowConfig,
    blocked: bool,
) -> Result<(VapiReply, &'static str), ApiError> {
    // The chain in force now: the fallback while a dependency's breaker is open (or
    // when a half-open one had no probe left for this caller), an alert's set_overflow
    // while it fires, else the configured one.
    let chain = app.governor.overflow_chain_now(&flow.name, blocked).map_or_else(|| flow.overflow.clone(), |(_, c)| c);
    for step in &chain {
        match step.action {
            OverflowAction::Busy => {
                return Ok((VapiReply::Say(step.message.clone().unwrap_or_else(|| DEFAULT_BUSY.into())), "busy"))
            }
            OverflowAction::Transfer => {
                let reply = VapiReply::Transfer {
                    number: step.number.clone(),
                    sip: step.sip.clone(),
                    message: step.message.clone(),
                };
                return Ok((reply, "transfer"));
            }
            OverflowAction::Callback => {
                // No keypad on Vapi: the booking is automatic. With a `key`, the message
                // was written as an offer ("press 1"), so the caller hears ours instead.
                if book_callback(app, call, flow, step).await? {
                    let text = match (&step.key, &step.message) {
                        (None, Some(m)) => m.clone(),
                        _ => DEFAULT_CALLBACK.to_owned(),
                    };
                    return Ok((VapiReply::Say(text), "callback"));
                }
            }
            // Vapi's reply cannot record a message or gather keys.
            OverflowAction::Voicemail | OverflowAction::Ivr => {}
        }
    }
    Ok((VapiReply::Say(DEFAULT_BUSY.into()), "none"))
}

async fn status_update(
    app: &App,
    provider: &Provider,
    info: CallInfo,
    status: &str,
    ended_reason: Option<String>,
    at: Option<u64>,
) -> Result<VapiReply, ApiError> {
    let call = call_of(provider, info);
    match status {
        "ended" => {
            let end = app.governor.end_call(&call.id).await?;
            tracing::debug!(provider = %provider.name, call = %call.id, ?end, "Vapi call ended");
            let now = app.governor.now_ms();
            let mut update = call.update(now);
            update.ended_at = Some(at.unwrap_or(now));
            update.ended_reason = ended_reason;
            record_call(app, update).await?;
        }
        // A sign of life: the lease lives on.
        "queued" | "ringing" | "in-progress" | "forwarding" => {
            app.governor.renew_call(&call.id).await?;
            // A campaign call that is answered (the dialer ignores calls it did not place).
            crate::campaign::vapi_webhook(app, &provider.name, &call.id, Some(status), None, None, None).await;
        }
        _ => {}
    }
    Ok(VapiReply::Ack)
}

async fn end_of_call(
    app: &App,
    provider: &Provider,
    info: CallInfo,
    ended_reason: Option<String>,
    cost: Option<f64>,
    started_at: Option<u64>,
    ended_at: Option<u64>,
) -> Result<VapiReply, ApiError> {
    let call = call_of(provider, info);
    let end = app.governor.end_call(&call.id).await?;
    tracing::debug!(provider = %provider.name, call = %call.id, ?end, "Vapi end-of-call report");
    let mut update = call.update(app.governor.now_ms());
    update.started_at = started_at;
    update.ended_at = ended_at;
    update.duration_ms = started_at.zip(ended_at).and_then(|(s, e)| e.checked_sub(s));
    update.ended_reason = ended_reason;
    update.cost = cost;
    // A campaign call's outcome drives its lead's retries (ignored for other calls).
    let reason = update.ended_reason.as_deref();
    crate::campaign::vapi_webhook(app, &provider.name, &call.id, None, reason, cost, update.duration_ms).await;
    record_call(app, update).await?;
    if let Some(usd) = cost {
        app.metrics.edges.cost(&provider.name, usd);
    }
    Ok(VapiReply::Ack)
}
