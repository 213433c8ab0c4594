//! The Vapi edge: `POST /webhooks/vapi/{provider}`, the server URL of the phone numbers
//! (or assistants) whose calls callgate admits.
//!
//! - The credential is checked first ([`auth`]: the secret in `X-Vapi-Secret` or as
//!   `Authorization: Bearer`, a bearer plan, or an HMAC signature with a replay window), in
//!   constant time, before anything is parsed or changed: a wrong one is a 401. Header
//!   plans are checked before the body is even read.
//! - `assistant-request` acquires a line for the flow that serves the called number, with
//!   the call id as key, and never waits: Vapi wants the answer within 7.5 s and has no
//!   waiting room, so a caller who finds no free line gets the flow's overflow at once, as
//!   Vapi can carry it out: a transfer, or a spoken message (busy, or "we will call you
//!   back" once the callback is on disk). Voicemail and IVR steps need a keypad or a
//!   recorder Vapi's reply cannot ask for; they are skipped in favour of the next step.
//! - `status-update` with `ended` and `end-of-call-report` release the call's lease by its
//!   id, idempotently and in either order, and record the call; other statuses renew it.
//! - callgate is a transparent proxy ([`callgate_runtime::providers::forward`]): with a `public_url`, its replies
//!   point the call's server URL back at itself (`assistantOverrides.server`, with its
//!   own credential, and `serverMessages` that include `status-update` and
//!   `end-of-call-report`), so an assistant with its own server URL cannot take the
//!   call's end away from callgate. Every message, consumed or not, is passed on to the
//!   customer's server (`forward_url`, the flow's or the provider's): the ones that
//!   expect an answer (tool calls, transfer destinations, knowledge-base and voice
//!   requests) are awaited and the answer relayed unchanged; the others are sent in the
//!   background. Without a `forward_url`, a message that expects an answer gets `{}`, a
//!   warning and a metric.

mod reply;

pub use callgate_runtime::providers::forward::Forwarder;

use super::{body_error, webhook_outcome};
use crate::app::App;
use crate::error::{ApiError, ErrorKind};
use auth::Check;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callgate_backend::records::{CallTelemetry, Component};
use callgate_config::{FlowConfig, OverflowAction, ProviderKind, TransferTo, VapiTarget, WebhookAuth};
use callgate_governor::Measured;
use callgate_governor::{AcquireRequest, Answer, Edge, Target};
use callgate_providers::vapi::telemetry::Ending;
use callgate_providers::vapi::{auth, message};
use callgate_runtime::inbound::{book_callback, record_call, Call, DEFAULT_BUSY, DEFAULT_CALLBACK, NOT_IN_SERVICE};
use callgate_runtime::providers::forward::AskError;
use callgate_runtime::providers::{Credentials, Provider, VapiSettings};
use message::{CallInfo, VapiMessage};
use reply::{respond, TakenBy, VapiReply};
use serde_json::{json, Value};
use std::sync::Arc;

/// The largest webhook body read. An end-of-call report carries the transcript and the
/// messages of the whole call; 8 MiB holds hours of conversation. The secret is checked
/// before a byte of it is read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// `POST /webhooks/vapi/{provider}`.
pub(crate) async fn webhook(State(app): State<Arc<App>>, Path(name): Path<String>, req: Request) -> Response {
    let started = tokio::time::Instant::now();
    let Some(provider) = app.inbound.providers.current().get(&name, ProviderKind::Vapi).cloned() else {
        return ApiError::not_found("unknown_provider", format!("no vapi provider named `{name}`")).into_response();
    };
    let (endpoint, response) = handle(&app, &provider, req).await;
    let outcome = webhook_outcome(response.status());
    app.metrics.edges.webhook(&provider.name, endpoint, outcome, started.elapsed().as_secs_f64());
    response
}

/// What the assistant hears when callgate answers the opt-out tool itself.
const OPTED_OUT: &str = "Done: this number will not be called again.";

/// Message types whose sender waits for the customer's server's answer.
const EXPECT_ANSWER: &[&str] = &[
    "tool-calls",
    "function-call",
    "transfer-destination-request",
    "handoff-destination-request",
    "knowledge-base-request",
    "voice-request",
    "call.endpointing.request",
];

/// The message type as a metrics label: one of [`EXPECT_ANSWER`], else `other`.
fn answer_kind(kind: &str) -> Option<&'static str> {
    EXPECT_ANSWER.iter().find(|k| **k == kind).copied()
}

fn unauthorized(why: &'static str) -> (&'static str, Response) {
    let e = ApiError::new(ErrorKind::Unauthorized, "unauthorized", why);
    ("unauthenticated", e.into_response())
}

async fn handle(app: &App, provider: &Arc<Provider>, req: Request) -> (&'static str, Response) {
    let Credentials::Vapi { webhook_secret, .. } = &provider.credentials else {
        return unauthorized("not a vapi provider");
    };
    let settings = provider.vapi.as_deref();
    let plan = settings.and_then(|s| s.auth.as_ref());
    let (parts, body) = req.into_parts();
    let check = auth::check_headers(plan, webhook_secret.expose().as_bytes(), &parts.headers);
    if let Check::Fail(why) = check {
        return unauthorized(why);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return ("unreadable", body_error(e).into_response()),
    };
    if let (Check::NeedsBody, Some(WebhookAuth::Hmac(hmac))) = (&check, plan) {
        let signed = auth::Signed {
            method: parts.method.as_str(),
            path_and_query: parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str()),
            public_url: settings.and_then(|s| s.public_url.as_deref()),
            body: &body,
        };
        let now = app.governor.now_ms();
        if let Err(why) = auth::check_hmac(hmac, webhook_secret.expose(), &parts.headers, &signed, now) {
            return unauthorized(why);
        }
    }
    let msg = match message::parse(&body) {
        Ok(m) => m,
        Err(e) => return ("malformed", ApiError::bad_request(e.to_string()).into_response()),
    };
    let endpoint = msg.endpoint();
    // An opt-out said during the call goes on the list before anything is answered.
    let compliance = app.inbound.compliance();
    let names = message::OptOutNames {
        tool: compliance.vapi_tool.as_deref(),
        structured: compliance.vapi_structured_output.as_deref(),
        ended_reasons: &compliance.vapi_ended_reasons,
    };
    // (Read again only when a source is configured: an end-of-call report may be megabytes.)
    let any = names.tool.is_some() || names.structured.is_some() || !names.ended_reasons.is_empty();
    let opted = if any { message::opt_out(&body, names) } else { None };
    if let Some(o) = &opted {
        let source = o.call_id.as_deref().map_or_else(|| format!("vapi:{}", provider.name), |id| format!("call:{id}"));
        callgate_runtime::inbound::opt_out(
            &app.campaigns,
            o.number.as_deref(),
            compliance.opt_out_list(),
            &source,
            &o.why,
        )
        .await;
    }
    let flow = app.inbound.flow_for(&provider.name, msg.number()).map(|f| f.name.clone());
    let upstream = settings.and_then(|s| Some((s, s.upstream_for(flow.as_deref())?)));
    let response = match msg {
        VapiMessage::Other { kind, .. } if answer_kind(&kind).is_some() => {
            let label = answer_kind(&kind).unwrap_or("other");
            match upstream {
                Some((settings, upstream)) => ask(app, provider, settings, upstream, &body, label).await,
                None if opted.as_ref().is_some_and(|o| !o.tool_calls.is_empty()) => {
                    // The opt-out tool is callgate's to answer: the assistant hears it is done.
                    let calls = opted.map(|o| o.tool_calls).unwrap_or_default();
                    let results: Vec<Value> = calls
                        .iter()
                        .map(|c| json!({ "toolCallId": c.id, "name": c.name, "result": OPTED_OUT }))
                        .collect();
                    respond(false, Ok(VapiReply::Json(StatusCode::OK, json!({ "results": results }))))
                }
                None => {
                    tracing::warn!(provider = %provider.name, kind = label,
                        "A Vapi message that expects an answer arrived, but no forward_url is set: answered {{}}");
                    app.metrics.edges.unanswered(&provider.name, label);
                    respond(false, Ok(VapiReply::Ack))
                }
            }
        }
        msg => {
            if let Some((settings, upstream)) = upstream {
                settings.forwarder.notify(
                    &app.metrics,
                    &provider.name,
                    upstream,
                    body.clone(),
                    settings.forward_timeout,
                );
            }
            match msg {
                VapiMessage::AssistantRequest(call) => {
                    respond(true, assistant_request(app, provider, settings, webhook_secret, call).await)
                }
                VapiMessage::StatusUpdate { call, status, ended_reason, at } => {
                    respond(false, status_update(app, provider, call, &status, ended_reason, at).await)
                }
                VapiMessage::EndOfCallReport {
                    call,
                    ended_reason,
                    cost,
                    started_at,
                    ended_at,
                    assistant,
                    telemetry,
                } => {
                    let report = Report { ended_reason, cost, started_at, ended_at, assistant, telemetry };
                    respond(false, end_of_call(app, provider, flow, call, report).await)
                }
                VapiMessage::Other { .. } => respond(false, Ok(VapiReply::Ack)),
            }
        }
    };
    (endpoint, response)
}

/// Asks the customer's server and relays its answer; a timeout or a failure is answered
/// with a clear error (for tool calls, as each tool's error, which the assistant can
/// speak about) and counted.
async fn ask(
    app: &App,
    provider: &Provider,
    settings: &VapiSettings,
    upstream: &callgate_runtime::providers::Upstream,
    body: &Bytes,
    kind: &'static str,
) -> Response {
    let answer = settings.forwarder.ask(upstream, body.clone(), settings.forward_timeout).await;
    let (status, why) = match answer {
        Ok(relayed) => {
            let ok = (200..300).contains(&relayed.status);
            app.metrics.edges.forward(&provider.name, "answer", if ok { "ok" } else { "status" });
            let reply =
                VapiReply::Relay { status: relayed.status, content_type: relayed.content_type, body: relayed.body };
            return respond(false, Ok(reply));
        }
        Err(AskError::Timeout) => {
            app.metrics.edges.forward(&provider.name, "answer", "timeout");
            let secs = settings.forward_timeout.as_secs_f64();
            (StatusCode::GATEWAY_TIMEOUT, format!("the customer's server did not answer within {secs}s"))
        }
        Err(AskError::Failed(e)) => {
            app.metrics.edges.forward(&provider.name, "answer", "error");
            (StatusCode::BAD_GATEWAY, format!("the customer's server cannot be reached: {e}"))
        }
    };
    tracing::warn!(provider = %provider.name, kind, url = %upstream.url, error = %why, "A forwarded Vapi message got no answer");
    if kind == "tool-calls" {
        // Vapi reads `results[].error` as the tool's failure and lets the assistant say so.
        let calls = message::tool_calls(body);
        let results: Vec<Value> =
            calls.iter().map(|c| json!({ "toolCallId": c.id, "name": c.name, "error": why })).collect();
        return respond(false, Ok(VapiReply::Json(StatusCode::OK, json!({ "results": results }))));
    }
    let code = if status == StatusCode::GATEWAY_TIMEOUT { "upstream_timeout" } else { "upstream_unreachable" };
    let body = json!({ "error": { "code": code, "message": why } });
    respond(false, Ok(VapiReply::Json(status, body)))
}

fn call_of(provider: &Provider, info: CallInfo) -> Call {
    Call { provider: provider.name.clone(), id: info.id, from: info.customer, to: info.number }
}

async fn assistant_request(
    app: &App,
    provider: &Provider,
    settings: Option<&VapiSettings>,
    secret: &callgate_runtime::providers::Secret,
    info: CallInfo,
) -> Result<VapiReply, ApiError> {
    let call = call_of(provider, info);
    let arrived_at = app.governor.now_ms();
    let flow = app.inbound.flow_for_call(&call, arrived_at);
    let Some((flow, target)) = flow.as_ref().and_then(|f| Some((f, f.vapi.as_ref()?.target()?))) else {
        tracing::warn!(provider = %provider.name, call = %call.id, number = ?call.to, "No flow serves this Vapi number");
        return Ok(VapiReply::Say(NOT_IN_SERVICE.into()));
    };
    let taken = || {
        let (by, id) = match target {
            VapiTarget::Assistant(id) => (TakenBy::Assistant, id),
            VapiTarget::Squad(id) => (TakenBy::Squad, id),
            VapiTarget::Workflow(id) => (TakenBy::Workflow, id),
        };
        let overrides = settings.and_then(|s| s.overrides(&provider.name, secret));
        VapiReply::Assistant { by, id: id.to_owned(), overrides }
    };
    // A spilled caller's transferred call takes the line held for it: it counts once.
    if app.inbound.spills.arrive(app.effects(), &app.inbound, &call, flow).await?.is_some() {
        return Ok(taken());
    }
    // A routing rule sends the caller to another flow, admitted there first.
    if let Some((step, to)) = app.inbound.route_for(flow, &call, arrived_at) {
        if let Some(spilled) = app.inbound.spills.spill(app.effects(), Edge::Vapi, &call, flow, &step, &to).await? {
            return Ok(transfer_to(spilled, None));
        }
    }
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
            edge: Edge::Vapi,
        })
        .await?;
    let now = app.governor.now_ms();
    let mut update = call.update(now);
    update.flow = Some(flow.name.clone());
    if let Answer::Granted(_) = answer {
        update.outcome = Some("granted".into());
        update.started_at = Some(now);
        record_call(&app.governor, update).await?;
        return Ok(taken());
    }
    let blocked = matches!(answer, Answer::Rejected { dependency: Some(_), .. });
    let (reply, action) = overflow(app, &call, flow, blocked).await?;
    app.metrics.edges.overflow(&flow.name, action);
    // A callback and a spill recorded the call already (with what they did).
    if action != "callback" && action != "spill" {
        update.outcome = Some(format!("overflow:{action}"));
        record_call(&app.governor, update).await?;
    }
    Ok(reply)
}

/// The reply that transfers a spilled caller to the flow that holds a line for them.
fn transfer_to(spilled: callgate_runtime::inbound::Spilled, message: Option<String>) -> VapiReply {
    let (number, sip) = match spilled.to {
        TransferTo::Number(n) => (Some(n), None),
        TransferTo::Sip(s) => (None, Some(s)),
    };
    VapiReply::Transfer { number, sip, message }
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
                if book_callback(app.effects(), call, flow, step).await? {
                    let text = match (&step.key, &step.message) {
                        (None, Some(m)) => m.clone(),
                        _ => DEFAULT_CALLBACK.to_owned(),
                    };
                    return Ok((VapiReply::Say(text), "callback"));
                }
            }
            OverflowAction::Spill => {
                let Some(target) = step.flow.as_deref().and_then(|f| app.inbound.flow(f)) else { continue };
                let spills = &app.inbound.spills;
                if let Some(spilled) = spills.spill(app.effects(), Edge::Vapi, call, flow, step, &target).await? {
                    return Ok((transfer_to(spilled, step.message.clone()), "spill"));
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
            let end = app.inbound.spills.end_call(app.effects(), &call).await?;
            tracing::debug!(provider = %provider.name, call = %call.id, ?end, "Vapi call ended");
            let now = app.governor.now_ms();
            let mut update = call.update(now);
            update.ended_at = Some(at.unwrap_or(now));
            update.ended_reason = ended_reason;
            record_call(&app.governor, update).await?;
        }
        // A sign of life: the lease lives on.
        "queued" | "ringing" | "in-progress" | "forwarding" => {
            app.inbound.spills.renew_call(app.effects(), &call).await?;
            // A campaign call that is answered (the dialer ignores calls it did not place).
            publish_call_event(app, &provider.name, &call.id, Some(status), None, None, None).await;
        }
        _ => {}
    }
    Ok(VapiReply::Ack)
}

/// What an end-of-call report says, beyond the call it is about.
struct Report {
    ended_reason: Option<String>,
    cost: Option<f64>,
    started_at: Option<u64>,
    ended_at: Option<u64>,
    assistant: Option<String>,
    telemetry: Option<Box<CallTelemetry>>,
}

async fn end_of_call(
    app: &App,
    provider: &Provider,
    flow: Option<String>,
    info: CallInfo,
    mut report: Report,
) -> Result<VapiReply, ApiError> {
    let call = call_of(provider, info);
    let ending = Ending::of(report.ended_reason.as_deref().unwrap_or(""));
    // What is recorded already: the flow when the number called does not say (an
    // outbound call's number is the customer's), and whether this report came before
    // (Vapi retries a webhook that failed): a repeated report is recorded again but
    // measured once.
    let stored = {
        let (governor, provider, id) = (app.governor.clone(), provider.name.to_string(), call.id.clone());
        tokio::task::spawn_blocking(move || governor.call_record(&provider, &id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    };
    // Only an end-of-call report writes these.
    let repeated = stored.as_ref().is_some_and(|r| r.telemetry.is_some() || r.cost.is_some() || r.assistant.is_some());
    let flow = flow.or_else(|| stored.and_then(|r| r.flow));
    // Vapi's measurements move the flow's adaptive caps and breakers before the lease
    // goes, so the sample is of the load the call saw.
    if let (Some(flow), false) = (&flow, repeated) {
        let measured = Measured {
            flow,
            telemetry: report.telemetry.as_deref(),
            failed: ending == Ending::Failure,
            refused: ending == Ending::Refused,
        };
        let (moved, concurrency) = app.governor.measured(measured).await?;
        for (pool, cap) in moved {
            tracing::debug!(provider = %provider.name, call = %call.id, %pool, cap, "Vapi latency moved an adaptive cap");
        }
        if let Some(t) = report.telemetry.as_deref_mut() {
            t.concurrency = concurrency;
        }
    }
    let end = app.inbound.spills.end_call(app.effects(), &call).await?;
    tracing::debug!(provider = %provider.name, call = %call.id, ?end, "Vapi end-of-call report");
    let Report { ended_reason, cost, started_at, ended_at, assistant, telemetry } = report;
    if !repeated {
        telemetry_span(provider, flow.as_deref(), assistant.as_deref(), telemetry.as_deref(), ending, cost);
        app.metrics.edges.vapi.call(
            &provider.name,
            flow.as_deref(),
            assistant.as_deref(),
            telemetry.as_deref(),
            ending.as_str(),
        );
    }
    let mut update = call.update(app.governor.now_ms());
    update.started_at = started_at;
    update.ended_at = ended_at;
    update.duration_ms = started_at.zip(ended_at).and_then(|(s, e)| e.checked_sub(s));
    update.ended_reason = ended_reason;
    update.cost = cost;
    update.assistant = assistant;
    update.telemetry = telemetry;
    // A campaign call's outcome drives its lead's retries (ignored for other calls).
    let reason = update.ended_reason.as_deref();
    publish_call_event(app, &provider.name, &call.id, None, reason, cost, update.duration_ms).await;
    record_call(&app.governor, update).await?;
    if let Some(usd) = cost {
        app.metrics.edges.cost(&provider.name, usd);
    }
    Ok(VapiReply::Ack)
}

/// A `vapi_call` span (exported over OTLP when configured) with what Vapi measured.
fn telemetry_span(
    provider: &Provider,
    flow: Option<&str>,
    assistant: Option<&str>,
    t: Option<&CallTelemetry>,
    ending: Ending,
    cost: Option<f64>,
) {
    let q = |c: Component, q: f64| t.and_then(|t| t.quantile(c, q));
    let span = tracing::info_span!(
        "vapi_call",
        provider = %provider.name,
        flow,
        assistant,
        ending = ending.as_str(),
        turn_p50_ms = q(Component::Turn, 0.5),
        turn_p95_ms = q(Component::Turn, 0.95),
        model_p95_ms = q(Component::Model, 0.95),
        voice_p95_ms = q(Component::Voice, 0.95),
        transcriber_p95_ms = q(Component::Transcriber, 0.95),
        endpointing_p95_ms = q(Component::Endpointing, 0.95),
        user_interrupted = t.and_then(|t| t.user_interrupted),
        assistant_interrupted = t.and_then(|t| t.assistant_interrupted),
        cost_usd = cost,
    );
    drop(span);
}

/// Publishes a status update or an end-of-call report on the bus as a call event; the
/// dialer acts on it when the call is one of its own and ignores it otherwise.
async fn publish_call_event(
    app: &App,
    provider: &str,
    call_id: &str,
    status: Option<&str>,
    ended_reason: Option<&str>,
    cost: Option<f64>,
    talk_ms: Option<u64>,
) {
    use callgate_dialer::dial::{CallState, Ended, Outcome};
    // An `ended` status carries no talk time; the end-of-call report that follows does,
    // and a lost report is made up for by the poll of live calls.
    let state = match status {
        Some("in-progress") => CallState::Live,
        None => {
            let reason = ended_reason.unwrap_or("");
            let outcome = callgate_dialer::dial::vapi_outcome(reason, talk_ms.is_some_and(|t| t > 0));
            CallState::Ended(Ended {
                outcome,
                reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
                talk_ms: talk_ms.filter(|_| outcome == Outcome::Completed),
                cost,
            })
        }
        Some(_) => return,
    };
    let update = callgate_events::bus::ProviderUpdate {
        provider: provider.into(),
        call_id: call_id.into(),
        attempt: None,
        state,
    };
    app.bus.call(update).await;
}
