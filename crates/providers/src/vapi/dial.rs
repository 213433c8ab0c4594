//! Vapi: `POST /call` places a call, `GET /call/{id}` reads one, `GET /call` lists recent
//! ones (to find, after a restart, the call an attempt placed).
//!
//! A refusal for concurrency comes in two forms (shared/providers/vapi.md): the older
//! `400 {"error": "Over Concurrency Limit"}`, and a created call whose
//! `subscriptionLimits.concurrencyBlocked` is true (it then ends with
//! `call.start.error-subscription-concurrency-limit-reached`). Both are
//! [`DialError::Refused`]. A 429 is treated the same way.
//!
//! The body is a `CreateCallDTO`, which Vapi validates against a whitelist: correlation
//! data travels in `assistantOverrides.metadata` (there is no top-level `metadata`; the
//! returned `Call` echoes the overrides, so a restart finds its attempt there) and
//! `customer.name` is cut to Vapi's 40 characters.
//!
//! Errors that concern the account or its configuration (401, 402, 403, 404 on the
//! assistant or phone number id, a 400 about anything but the customer) are
//! [`DialError::Account`]: the campaign pauses, the lead is not burnt. Only a 400 about
//! the customer (`customer.number` …) fails the lead.

use callgate_dialer::dial::{vapi_outcome, CallState, DialError, Dialer, Ended, Fut, Outcome, PlaceCall, Placed};
use serde_json::{json, Value};
use std::time::Duration;

/// How long one request to Vapi may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// `customer.name`'s limit in `CreateCustomerDTO` (shared/providers/vapi.md): longer
/// names are refused with a 400, so they are cut, never sent whole.
pub const CUSTOMER_NAME_MAX: usize = 40;

/// Places a campaign's calls on one Vapi account.
#[derive(Debug)]
pub struct VapiDialer {
    provider: String,
    base_url: String,
    api_key: String,
    assistant_id: String,
    numbers: Vec<String>,
    poll: Duration,
    client: reqwest::Client,
    /// Merged into each call's `assistantOverrides`: `server` (callgate's webhook URL and
    /// credential) and `serverMessages`, so callgate hears how every call it placed ends
    /// even when the assistant has a server URL of its own.
    overrides: Option<Value>,
}

impl VapiDialer {
    /// A dialer for `provider` at `base_url` (no trailing `/`).
    pub fn new(
        provider: &str,
        base_url: &str,
        api_key: String,
        assistant_id: &str,
        numbers: Vec<String>,
        poll: Duration,
    ) -> VapiDialer {
        VapiDialer {
            provider: provider.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            assistant_id: assistant_id.to_string(),
            numbers,
            poll,
            client: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default(),
            overrides: None,
        }
    }

    /// Sets what is merged into each call's `assistantOverrides` (see
    /// the server's `Provider::vapi_overrides`).
    pub fn with_overrides(mut self, overrides: Option<Value>) -> VapiDialer {
        self.overrides = overrides;
        self
    }

    async fn get(&self, path: &str) -> Result<(u16, Value), DialError> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| DialError::Failed(format!("vapi: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// The state of a Vapi call object.
pub fn call_state(call: &Value) -> CallState {
    let status = call["status"].as_str().unwrap_or("");
    match status {
        "ended" => {
            let started = call["startedAt"].as_str().and_then(parse_time);
            let ended = call["endedAt"].as_str().and_then(parse_time);
            let talk_ms = match (started, ended) {
                (Some(s), Some(e)) if e > s => Some(e - s),
                _ => None,
            };
            let reason = call["endedReason"].as_str().unwrap_or("").to_string();
            let outcome = vapi_outcome(&reason, talk_ms.is_some_and(|t| t > 0));
            CallState::Ended(Ended {
                outcome,
                talk_ms: if outcome == Outcome::Completed { talk_ms } else { None },
                reason: Some(reason).filter(|r| !r.is_empty()),
                cost: call["cost"].as_f64(),
            })
        }
        "in-progress" | "forwarding" => CallState::Live,
        "" => CallState::Unknown,
        _ => CallState::Ringing,
    }
}

/// Unix ms of an RFC 3339 time.
fn parse_time(s: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

fn refused(body: &Value) -> bool {
    let says = |v: &Value| v.as_str().is_some_and(|s| s.to_ascii_lowercase().contains("concurrency"));
    body["subscriptionLimits"]["concurrencyBlocked"].as_bool() == Some(true)
        || says(&body["endedReason"])
        || says(&body["error"])
        || says(&body["message"])
}

impl Dialer for VapiDialer {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn place<'a>(&'a self, call: &'a PlaceCall) -> Fut<'a, Result<Placed, DialError>> {
        Box::pin(async move {
            let number = self.numbers.get(call.caller_index % self.numbers.len().max(1)).cloned().unwrap_or_default();
            let mut body = create_call_body(&self.assistant_id, &number, call);
            // callgate's own server URL and message list (the transparent proxy), beside the
            // correlation metadata, which they never replace.
            if let Some(Value::Object(extra)) = &self.overrides {
                for (k, v) in extra {
                    if k != "metadata" {
                        body["assistantOverrides"][k] = v.clone();
                    }
                }
            }
            let resp = self
                .client
                .post(format!("{}/call", self.base_url))
                .bearer_auth(&self.api_key)
                .json(&body)
                .send()
                .await
                .map_err(|e| DialError::Failed(format!("vapi: {e}")))?;
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            classify(status, &body)
        })
    }

    fn status<'a>(&'a self, call_id: &'a str) -> Fut<'a, Result<CallState, DialError>> {
        Box::pin(async move {
            let (status, body) = self.get(&format!("/call/{call_id}")).await?;
            match status {
                200..=299 => Ok(call_state(&body)),
                404 => Ok(CallState::Unknown),
                _ => Err(DialError::Failed(format!("vapi {status}: {}", message(&body)))),
            }
        })
    }

    fn find<'a>(&'a self, call: &'a PlaceCall, since_ms: u64) -> Fut<'a, Result<Option<String>, DialError>> {
        Box::pin(async move {
            // A minute of slack for clocks that disagree.
            let since = chrono::DateTime::from_timestamp_millis(since_ms.saturating_sub(60_000) as i64)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            let (status, body) = self.get(&format!("/call?limit=1000&createdAtGt={since}")).await?;
            if !(200..=299).contains(&status) {
                return Err(DialError::Failed(format!("vapi {status}: {}", message(&body))));
            }
            let list = body.as_array().or_else(|| body["results"].as_array()).cloned().unwrap_or_default();
            Ok(list
                .iter()
                .find(|c| {
                    let a = &c["assistantOverrides"]["metadata"]["callgate_attempt"];
                    a.as_u64() == Some(call.attempt) || a.as_str() == Some(call.attempt.to_string().as_str())
                })
                .and_then(|c| c["id"].as_str().map(str::to_string)))
        })
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.poll)
    }
}

/// The `POST /call` body for `call`: a `CreateCallDTO` with only properties Vapi defines.
pub fn create_call_body(assistant_id: &str, phone_number_id: &str, call: &PlaceCall) -> Value {
    let mut customer = json!({ "number": call.phone });
    if let Some(name) = call.name.as_deref().map(customer_name).filter(|n| !n.is_empty()) {
        customer["name"] = json!(name);
    }
    let mut overrides = json!({
        "metadata": {
            "callgate_lease": call.lease,
            "callgate_campaign": call.campaign,
            "callgate_attempt": call.attempt,
            "callgate_lead": call.lead_id,
        },
    });
    if let Some(vars) = &call.vars {
        overrides["variableValues"] = vars.clone();
    }
    json!({
        "assistantId": assistant_id,
        "phoneNumberId": phone_number_id,
        "customer": customer,
        "assistantOverrides": overrides,
    })
}

/// A lead's name as Vapi takes it: trimmed, at most [`CUSTOMER_NAME_MAX`] characters (cut
/// on a character boundary; Vapi counts code points).
pub fn customer_name(name: &str) -> String {
    name.trim().chars().take(CUSTOMER_NAME_MAX).collect::<String>().trim_end().to_string()
}

/// What Vapi's answer to `POST /call` means for the attempt.
fn classify(status: u16, body: &Value) -> Result<Placed, DialError> {
    let msg = || format!("vapi {status}: {}", message(body));
    match status {
        200..=299 if refused(body) => {
            Err(DialError::Refused(body["endedReason"].as_str().unwrap_or("concurrency blocked").to_string()))
        }
        200..=299 => match body["id"].as_str() {
            Some(id) => Ok(Placed { call_id: id.to_string() }),
            None => Err(DialError::Failed("vapi answered without a call id".into())),
        },
        429 => Err(DialError::Refused("429 Too Many Requests".into())),
        400..=499 if refused(body) => {
            Err(DialError::Refused(body["error"].as_str().unwrap_or("concurrency").to_string()))
        }
        // The key, the credit, the permissions, the assistant or caller id: the account's.
        401..=404 => Err(DialError::Account(msg())),
        400 | 422 if about_customer(body) && !about_payment(body) => Err(DialError::Invalid(msg())),
        // Anything else Vapi refuses in the body is the configuration's (or callgate's),
        // the same for every lead: pausing beats failing the whole list.
        400 | 422 => Err(DialError::Account(msg())),
        _ => Err(DialError::Failed(msg())),
    }
}

/// Every message of an error body (Vapi's validation answers with a list).
fn messages(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["message", "error"] {
        match &body[key] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(list) => out.extend(list.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    out
}

/// A 400 about the number (or name) dialed: `customer.number must be …`.
fn about_customer(body: &Value) -> bool {
    messages(body).iter().any(|m| m.to_ascii_lowercase().contains("customer"))
}

/// A refusal for money: out of credit, billing, a wallet or subscription problem.
fn about_payment(body: &Value) -> bool {
    messages(body).iter().any(|m| {
        let m = m.to_ascii_lowercase();
        ["credit", "payment", "billing", "wallet", "balance", "subscription"].iter().any(|w| m.contains(w))
    })
}

fn message(body: &Value) -> String {
    let all = messages(body);
    let text = if all.is_empty() { body.to_string() } else { all.join("; ") };
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_objects_read_as_states() {
        let ended = json!({ "id": "c1", "status": "ended", "endedReason": "customer-ended-call",
            "startedAt": "2026-01-15T12:00:00.000Z", "endedAt": "2026-01-15T12:01:30.000Z", "cost": 0.12 });
        match call_state(&ended) {
            CallState::Ended(e) => {
                assert_eq!(e.outcome, Outcome::Completed);
                assert_eq!(e.talk_ms, Some(90_000));
                assert_eq!(e.cost, Some(0.12));
            }
            s => panic!("{s:?}"),
        }
        let busy = json!({ "status": "ended", "endedReason": "customer-busy" });
        assert!(matches!(call_state(&busy), CallState::Ended(Ended { outcome: Outcome::Busy, .. })));
        assert_eq!(call_state(&json!({ "status": "ringing" })), CallState::Ringing);
        assert_eq!(call_state(&json!({ "status": "in-progress" })), CallState::Live);
        assert!(refused(&json!({ "error": "Over Concurrency Limit" })));
        assert!(refused(&json!({ "id": "x", "subscriptionLimits": { "concurrencyBlocked": true } })));
        assert!(!refused(&json!({ "id": "x", "subscriptionLimits": { "concurrencyBlocked": false } })));
    }

    #[test]
    fn account_errors_are_told_from_the_leads() {
        let account = |status, body: Value| matches!(classify(status, &body), Err(DialError::Account(_)));
        assert!(account(
            401,
            json!({ "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa." })
        ));
        assert!(account(402, json!({ "message": "Payment Required" })));
        assert!(account(403, json!({ "message": "Forbidden" })));
        assert!(account(404, json!({ "message": "Couldn't Find Assistant." })));
        assert!(account(
            400,
            json!({ "message": ["property metadata should not exist"], "error": "Bad Request", "statusCode": 400 })
        ));
        assert!(account(
            400,
            json!({ "message": "Wallet Balance Too Low. Please purchase more credits: customer calls paused." })
        ));
        let invalid = classify(
            400,
            &json!({ "message": ["customer.number must be a valid phone number in the E.164 format."],
            "error": "Bad Request", "statusCode": 400 }),
        );
        assert!(matches!(invalid, Err(DialError::Invalid(ref m)) if m.contains("customer.number")), "{invalid:?}");
        assert!(matches!(classify(400, &json!({ "error": "Over Concurrency Limit" })), Err(DialError::Refused(_))));
        assert!(matches!(classify(503, &json!({})), Err(DialError::Failed(_))));
    }

    #[test]
    fn names_are_cut_to_forty_characters_on_a_character_boundary() {
        assert_eq!(customer_name("  Ada Lovelace "), "Ada Lovelace");
        let long = "Zoë ".repeat(20);
        let cut = customer_name(&long);
        assert!(cut.chars().count() <= CUSTOMER_NAME_MAX && long.starts_with(&cut), "{cut:?}");
        let emoji = "👩\u{200d}💻".repeat(30);
        assert_eq!(customer_name(&emoji).chars().count(), CUSTOMER_NAME_MAX);
    }
}
