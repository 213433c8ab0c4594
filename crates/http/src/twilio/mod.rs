//! The Twilio edge: `POST /webhooks/twilio/{provider}/{endpoint}`.
//!
//! The number's voice URL is `…/voice`, its status callback `…/status`; the other
//! endpoints (`wait`, `queue`, `overflow`, `gather`, `dialed`, `voicemail`) are named by
//! the TwiML callgate answers, under the provider's `public_url`, with what they need to
//! know (flow, ticket, overflow step) in their query string. Twilio signs every request
//! over the full URL, so that state cannot be forged either.
//!
//! Every request is checked before anything else: the provider and endpoint must exist
//! (404), and `X-Twilio-Signature` must match (403, compared in constant time); only then
//! is the body's content looked at. Both of Twilio's schemes are accepted: the classic
//! HMAC-SHA1 with the auth token, and HMAC-SHA256 with a SharedKey, announced by
//! `X-Twilio-Webhooks-Signature-Settings` (see [`signature`]). The TwiML answer is chosen in one place, [`respond`].
//!
//! The overflow: a rejected caller walks the chain in force when their overflow starts
//! (the flow's fallback while one of its dependencies is down, an alert's
//! `set_overflow` while it fires, else the configured chain), the same chain the Vapi
//! edge and the API's 429 use. That chain is frozen for the call (see [`chains`]), so a
//! breaker or an alert that changes the chain in force meanwhile does not send the
//! caller to a step of another chain.
//!
//! The waiting room: a caller who finds no free line is put in a Twilio queue
//! (`<Enqueue>`); its wait URL announces the caller's place in line and the estimated wait
//! (from the pool's observed hold times) when it changes, and otherwise holds the request
//! open for a few seconds, so that the moment the ticket is granted the answer is
//! `<Leave/>`; the queue's action URL then connects the call as the flow says. A ticket
//! that times out also leaves the queue, and the action URL plays the flow's overflow.
//! A caller who hangs up cancels the ticket (queue result `hangup`, or the status
//! callback), so nobody waits behind an empty line. While a dependency of the flow is
//! down nobody waits for the assistant: a new caller is turned away by the breaker gate
//! and hears the fallback at once, and a caller already waiting leaves the queue at
//! their next wait request (and gives up the place) for the fallback; one whose line
//! came free meanwhile gives it back and hears the fallback too.
//!
//! Calls the campaign dialer placed report to `…/status?callgate_attempt=N`; their
//! statuses are handed to the dialer as well.

mod call;
mod spill;

pub use crate::callers::{OverflowChains, WaitingRoom};

use super::{body_error, webhook_outcome};
use crate::app::App;
use crate::error::{ApiError, ErrorKind};
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use call::TwilioCall;
use callgate_config::ProviderKind;
use callgate_providers::twilio::{form, signature, twiml};
use callgate_runtime::providers::{Credentials, Provider};
use form::Params;
use std::sync::Arc;
use twiml::Twiml;

/// Twilio's form bodies are a few dozen parameters; 64 KiB is far more than any of them.
const MAX_BODY: usize = 64 * 1024;

/// The URLs Twilio requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The number's voice URL: a call arrived.
    Voice,
    /// The number's status callback.
    Status,
    /// `<Enqueue waitUrl>`: a waiting caller's next few seconds.
    Wait,
    /// `<Enqueue action>`: the caller left the queue.
    Queue,
    /// Go on with the flow's overflow chain at a step.
    Overflow,
    /// `<Gather action>`: the caller pressed a key (callback offer, menu).
    Gather,
    /// `<Dial action>`: a transfer's leg ended.
    Dialed,
    /// `<Record action>`: a voicemail was taken.
    Voicemail,
}

impl Endpoint {
    fn parse(s: &str) -> Option<Endpoint> {
        Some(match s {
            "voice" => Endpoint::Voice,
            "status" => Endpoint::Status,
            "wait" => Endpoint::Wait,
            "queue" => Endpoint::Queue,
            "overflow" => Endpoint::Overflow,
            "gather" => Endpoint::Gather,
            "dialed" => Endpoint::Dialed,
            "voicemail" => Endpoint::Voicemail,
            _ => return None,
        })
    }

    /// The path segment (and metrics label).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Voice => "voice",
            Endpoint::Status => "status",
            Endpoint::Wait => "wait",
            Endpoint::Queue => "queue",
            Endpoint::Overflow => "overflow",
            Endpoint::Gather => "gather",
            Endpoint::Dialed => "dialed",
            Endpoint::Voicemail => "voicemail",
        }
    }
}

/// `POST /webhooks/twilio/{provider}/{endpoint}`.
pub(crate) async fn webhook(
    State(app): State<Arc<App>>,
    Path((name, endpoint)): Path<(String, String)>,
    req: Request,
) -> Response {
    let started = tokio::time::Instant::now();
    let Some(provider) = app.inbound.providers.current().get(&name, ProviderKind::Twilio).cloned() else {
        return ApiError::not_found("unknown_provider", format!("no twilio provider named `{name}`")).into_response();
    };
    let Some(endpoint) = Endpoint::parse(&endpoint) else {
        return ApiError::not_found("not_found", format!("no Twilio endpoint `{endpoint}`")).into_response();
    };
    let response = respond(handle(&app, &provider, endpoint, req).await);
    let outcome = webhook_outcome(response.status());
    app.metrics.edges.webhook(&provider.name, endpoint.as_str(), outcome, started.elapsed().as_secs_f64());
    response
}

async fn handle(app: &App, provider: &Provider, endpoint: Endpoint, req: Request) -> Result<Twiml, ApiError> {
    let Credentials::Twilio { auth_token, public_url, .. } = &provider.credentials else {
        return Err(ApiError::not_found("unknown_provider", "not a twilio provider"));
    };
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(body_error)?;
    let params = Params::parse(&body);
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str());
    let given = parts.headers.get("x-twilio-signature").map(|v| v.as_bytes());
    // The SharedKey scheme names its algorithm; the key is the SharedKey secret.
    let settings = parts.headers.get(signature::SETTINGS_HEADER).map(|v| v.as_bytes());
    let algorithm = signature::Algorithm::from_settings(settings);
    let key = match (settings, &provider.shared_key) {
        (Some(_), Some(shared)) => shared.expose(),
        _ => auth_token.expose(),
    };
    // Signed over the URL Twilio requested: under `public_url`, or under the one a reload
    // replaced, for the calls that were given URLs under it.
    let valid = algorithm.is_some_and(|a| {
        provider
            .public_urls()
            .any(|base| signature::verify_with(a, key, &format!("{base}{path}"), params.pairs(), given))
    });
    if !valid {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "bad_signature",
            "missing or wrong X-Twilio-Signature (is public_url the URL Twilio calls?)",
        ));
    }
    let query = Params::parse(parts.uri.query().unwrap_or("").as_bytes());
    let call = TwilioCall::new(app, provider, public_url, &params)?;
    call.handle(endpoint, &params, &query).await
}

/// What a caller on the line hears when callgate cannot decide (the journal cannot
/// commit), instead of Twilio's "an application error has occurred".
const CANNOT_DECIDE: &str = "Sorry, we cannot take your call right now. Please call again in a few minutes.";

/// The one place that turns an outcome into the HTTP answer: TwiML with
/// `Content-Type: text/xml`; refusals (403 signature, 400 malformed, 404) as JSON errors
/// with their status; a server-side failure as spoken TwiML, since the caller is on the
/// line and an error status would only get them Twilio's generic apology.
pub(crate) fn respond(result: Result<Twiml, ApiError>) -> Response {
    match result {
        Ok(twiml) => xml(&twiml),
        Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal) => {
            tracing::error!(error = %e.message, "Cannot decide a Twilio call; the caller hears an apology");
            xml(&Twiml::goodbye(CANNOT_DECIDE))
        }
        Err(e) => e.into_response(),
    }
}

fn xml(twiml: &Twiml) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml.render()).into_response()
}
