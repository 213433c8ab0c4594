//! Vapi: `POST /call` places a call, `GET /call/{id}` reads one, `GET /call` lists recent
//! ones (to find, after a restart, the call an attempt placed).
//!
//! A refusal for concurrency comes in two forms (shared/providers/vapi.md): the older
//! `400 {"error": "Over Concurrency Limit"}`, and a created call whose
//! `subscriptionLimits.concurrencyBlocked` is true (it then ends with
//! `call.start.error-subscription-concurrency-limit-reached`). Both are
//! [`DialError::Refused`]. A 429 is treated the same way.

use super::{vapi_outcome, CallState, DialError, Dialer, Ended, Fut, Outcome, PlaceCall, Placed};
use serde_json::{json, Value};
use std::time::Duration;

/// How long one request to Vapi may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// [`crate::providers::Provider::vapi_overrides`]).
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
            let mut customer = json!({ "number": call.phone });
            if let Some(name) = &call.name {
                customer["name"] = json!(name);
            }
            let mut body = json!({
                "assistantId": self.assistant_id,
                "phoneNumberId": number,
                "customer": customer,
                "metadata": {
                    "callgate_lease": call.lease,
                    "callgate_campaign": call.campaign,
                    "callgate_attempt": call.attempt,
                    "callgate_lead": call.lead_id,
                },
            });
            if let Some(vars) = &call.vars {
                body["assistantOverrides"] = json!({ "variableValues": vars });
            }
            if let Some(Value::Object(extra)) = &self.overrides {
                if !body["assistantOverrides"].is_object() {
                    body["assistantOverrides"] = json!({});
                }
                for (k, v) in extra {
                    body["assistantOverrides"][k] = v.clone();
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
            match status {
                200..=299 if refused(&body) => {
                    Err(DialError::Refused(body["endedReason"].as_str().unwrap_or("concurrency blocked").to_string()))
                }
                200..=299 => match body["id"].as_str() {
                    Some(id) => Ok(Placed { call_id: id.to_string() }),
                    None => Err(DialError::Failed("vapi answered without a call id".into())),
                },
                429 => Err(DialError::Refused("429 Too Many Requests".into())),
                400..=499 if refused(&body) => {
                    Err(DialError::Refused(body["error"].as_str().unwrap_or("concurrency").to_string()))
                }
                400..=499 => Err(DialError::Invalid(format!("vapi {status}: {}", message(&body)))),
                _ => Err(DialError::Failed(format!("vapi {status}: {}", message(&body)))),
            }
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
                    let a = &c["metadata"]["callgate_attempt"];
                    a.as_u64() == Some(call.attempt) || a.as_str() == Some(call.attempt.to_string().as_str())
                })
                .and_then(|c| c["id"].as_str().map(str::to_string)))
        })
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.poll)
    }
}

fn message(body: &Value) -> String {
    body["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string().chars().take(200).collect())
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
}
