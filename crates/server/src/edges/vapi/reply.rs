//! The answer to a Vapi webhook, chosen in one place ([`respond`]) from what the edge
//! decided or from the error's classification.

use crate::error::{ApiError, ErrorKind};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What Vapi is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VapiReply {
    /// `{ "assistantId" }`: the assistant takes the call.
    Assistant(String),
    /// `{ "destination": { "type": "number" | "sip", … } }`: transfer the call, without
    /// the AI, to a person or another line.
    Transfer {
        /// E.164 number, or
        number: Option<String>,
        /// a SIP URI.
        sip: Option<String>,
        /// What the caller hears before the transfer.
        message: Option<String>,
    },
    /// `{ "error": … }`: Vapi speaks the text to the caller and ends the call.
    Say(String),
    /// `{}`: received (status updates, reports, other messages).
    Ack,
}

impl VapiReply {
    fn body(self) -> serde_json::Value {
        match self {
            VapiReply::Assistant(id) => json!({ "assistantId": id }),
            VapiReply::Transfer { number: Some(number), message, .. } => {
                let mut d = json!({ "type": "number", "number": number });
                if let Some(m) = message {
                    d["message"] = json!(m);
                }
                json!({ "destination": d })
            }
            VapiReply::Transfer { sip, message, .. } => {
                let mut d = json!({ "type": "sip", "sipUri": sip });
                if let Some(m) = message {
                    d["message"] = json!(m);
                }
                json!({ "destination": d })
            }
            VapiReply::Say(text) => json!({ "error": text }),
            VapiReply::Ack => json!({}),
        }
    }
}

/// What a caller on the line hears when callgate cannot decide (the journal cannot
/// commit): a clear apology rather than dead air while Vapi's deadline runs out.
pub(crate) const CANNOT_DECIDE: &str = "Sorry, we cannot take your call right now. Please call again in a few minutes.";

/// The one place that turns an outcome into the HTTP answer. `caller_waiting` is true
/// for `assistant-request`, where a caller is on the line: a server-side failure is then
/// answered with a spoken apology (200) instead of an error status Vapi would turn into
/// silence; refusals (401, 400, 404) keep their status.
pub(crate) fn respond(caller_waiting: bool, result: Result<VapiReply, ApiError>) -> Response {
    match result {
        Ok(reply) => (StatusCode::OK, axum::Json(reply.body())).into_response(),
        Err(e) if caller_waiting && matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal) => {
            tracing::error!(error = %e.message, "Cannot decide a Vapi call; the caller hears an apology");
            (StatusCode::OK, axum::Json(VapiReply::Say(CANNOT_DECIDE.into()).body())).into_response()
        }
        Err(e) => e.into_response(),
    }
}
