//! The answer to a Vapi webhook, chosen in one place ([`respond`]) from what the edge
//! decided or from the error's classification.

use crate::error::{ApiError, ErrorKind};
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serde_json::Value;

/// What takes a granted call: `assistantId`, `squadId` or `workflowId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakenBy {
    /// `assistantId`.
    Assistant,
    /// `squadId`.
    Squad,
    /// `workflowId`.
    Workflow,
}

impl TakenBy {
    fn field(self) -> &'static str {
        match self {
            TakenBy::Assistant => "assistantId",
            TakenBy::Squad => "squadId",
            TakenBy::Workflow => "workflowId",
        }
    }
}

/// What Vapi is told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum VapiReply {
    /// `{ "assistantId" | "squadId" | "workflowId": id, "assistantOverrides"? }`: the call
    /// is taken; the overrides point its server URL back at callgate.
    Assistant {
        /// Which field names `id`.
        by: TakenBy,
        /// The assistant's, squad's or workflow's id.
        id: String,
        /// `assistantOverrides`, when callgate has a `public_url`.
        overrides: Option<Value>,
    },
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
    /// The customer's server's answer, relayed unchanged.
    Relay {
        /// Its status.
        status: u16,
        /// Its content type.
        content_type: Option<String>,
        /// Its body.
        body: Bytes,
    },
    /// A JSON answer with a status of its own (a tool call whose upstream failed).
    Json(StatusCode, Value),
}

impl VapiReply {
    fn body(self) -> Value {
        match self {
            VapiReply::Assistant { by, id, overrides } => {
                let mut body = json!({ by.field(): id });
                if let Some(o) = overrides {
                    body["assistantOverrides"] = o;
                }
                body
            }
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
            VapiReply::Relay { .. } | VapiReply::Json(..) => json!({}),
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
        Ok(VapiReply::Relay { status, content_type, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = content_type.unwrap_or_else(|| "application/json".into());
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(VapiReply::Json(status, body)) => (status, axum::Json(body)).into_response(),
        Ok(reply) => (StatusCode::OK, axum::Json(reply.body())).into_response(),
        Err(e) if caller_waiting && matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal) => {
            tracing::error!(error = %e.message, "Cannot decide a Vapi call; the caller hears an apology");
            (StatusCode::OK, axum::Json(VapiReply::Say(CANNOT_DECIDE.into()).body())).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::{respond, TakenBy, VapiReply};

    #[test]
    fn replies_have_the_shapes_vapi_documents() {
        let body = |r: VapiReply| {
            let resp = respond(true, Ok(r));
            assert_eq!(resp.status(), 200);
            resp
        };
        // Shapes checked end to end in tests/vapi.rs; here only that each builds.
        for r in [
            VapiReply::Assistant { by: TakenBy::Squad, id: "a".into(), overrides: None },
            VapiReply::Transfer { number: Some("+1555".into()), sip: None, message: None },
            VapiReply::Transfer { number: None, sip: Some("sip:a@b".into()), message: Some("hold on".into()) },
            VapiReply::Say("busy".into()),
            VapiReply::Ack,
        ] {
            body(r);
        }
    }
}
