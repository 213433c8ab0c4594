//! Twilio: `POST /2010-04-01/Accounts/{sid}/Calls.json` places a call (`To`, `From`, `Url`
//! or `Twiml`, `StatusCallback`), `GET …/Calls/{sid}.json` reads one, `GET …/Calls.json`
//! with `To` and `StartTime>=` finds one after a restart.
//!
//! The status callback goes to the provider's webhook
//! (`{public_url}/webhooks/twilio/{name}/status`) with `callgate_attempt` in its query, so
//! the webhook can hand the outcome to the campaign without looking anything up. Twilio
//! queues calls above an account's calls-per-second instead of refusing them; a 429
//! (error 20429) is still taken as a refusal.

use super::{twilio_outcome, CallState, DialError, Dialer, Ended, Fut, Outcome, PlaceCall, Placed};
use serde_json::Value;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Places a campaign's calls on one Twilio account.
#[derive(Debug)]
pub struct TwilioDialer {
    provider: String,
    base_url: String,
    account_sid: String,
    auth_token: String,
    public_url: Option<String>,
    from: Vec<String>,
    url: Option<String>,
    twiml: Option<String>,
    poll: Duration,
    client: reqwest::Client,
}

/// What a [`TwilioDialer`] is built from.
#[derive(Clone, Debug)]
pub struct TwilioAccount {
    /// The provider's name.
    pub provider: String,
    /// API base URL.
    pub base_url: String,
    /// `AC…`.
    pub account_sid: String,
    /// The auth token.
    pub auth_token: String,
    /// Where Twilio reaches callgate (for status callbacks).
    pub public_url: Option<String>,
}

impl TwilioDialer {
    /// A dialer on `account` calling from `from`, connecting answered calls to `url` or
    /// `twiml`.
    pub fn new(
        account: TwilioAccount,
        from: Vec<String>,
        url: Option<String>,
        twiml: Option<String>,
        poll: Duration,
    ) -> TwilioDialer {
        TwilioDialer {
            provider: account.provider,
            base_url: account.base_url.trim_end_matches('/').to_string(),
            account_sid: account.account_sid,
            auth_token: account.auth_token,
            public_url: account.public_url,
            from,
            url,
            twiml,
            poll,
            client: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default(),
        }
    }

    fn calls_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}/Calls", self.base_url, self.account_sid)
    }

    async fn get(&self, url: String) -> Result<(u16, Value), DialError> {
        let resp = self
            .client
            .get(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .map_err(|e| DialError::Failed(format!("twilio: {e}")))?;
        let status = resp.status().as_u16();
        Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
    }
}

/// The state of a Twilio call resource.
pub fn call_state(call: &Value) -> CallState {
    let status = call["status"].as_str().unwrap_or("");
    match twilio_outcome(status, call["answered_by"].as_str()) {
        Some(outcome) => {
            let secs = call["duration"].as_str().and_then(|d| d.parse::<u64>().ok()).or(call["duration"].as_u64());
            CallState::Ended(Ended {
                outcome,
                reason: Some(status.to_string()),
                talk_ms: if outcome == Outcome::Completed { secs.map(|s| s * 1000) } else { None },
                // Twilio reports prices as negative strings ("-0.0130").
                cost: call["price"].as_str().and_then(|p| p.parse::<f64>().ok()).map(f64::abs),
            })
        }
        None if status == "in-progress" => CallState::Live,
        None if status.is_empty() => CallState::Unknown,
        None => CallState::Ringing,
    }
}

impl Dialer for TwilioDialer {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn place<'a>(&'a self, call: &'a PlaceCall) -> Fut<'a, Result<Placed, DialError>> {
        Box::pin(async move {
            let from = self.from.get(call.caller_index % self.from.len().max(1)).cloned().unwrap_or_default();
            let mut form: Vec<(&str, String)> = vec![("To", call.phone.clone()), ("From", from)];
            if let Some(url) = &self.url {
                form.push(("Url", url.clone()));
            }
            if let Some(twiml) = &self.twiml {
                form.push(("Twiml", twiml.clone()));
            }
            if let Some(public) = &self.public_url {
                form.push((
                    "StatusCallback",
                    format!(
                        "{}/webhooks/twilio/{}/status?callgate_attempt={}",
                        public.trim_end_matches('/'),
                        self.provider,
                        call.attempt
                    ),
                ));
                for e in ["initiated", "ringing", "answered", "completed"] {
                    form.push(("StatusCallbackEvent", e.to_string()));
                }
            }
            let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
            let resp = self
                .client
                .post(format!("{}.json", self.calls_url()))
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .map_err(|e| DialError::Failed(format!("twilio: {e}")))?;
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            let msg = || body["message"].as_str().unwrap_or("").to_string();
            match status {
                200..=299 => body["sid"]
                    .as_str()
                    .map(|sid| Placed { call_id: sid.to_string() })
                    .ok_or_else(|| DialError::Failed("twilio answered without a call sid".into())),
                429 => Err(DialError::Refused(format!("twilio 429: {}", msg()))),
                400..=499 if body["code"].as_u64() == Some(20429) => Err(DialError::Refused(msg())),
                400..=499 => Err(DialError::Invalid(format!("twilio {status}: {}", msg()))),
                _ => Err(DialError::Failed(format!("twilio {status}: {}", msg()))),
            }
        })
    }

    fn status<'a>(&'a self, call_id: &'a str) -> Fut<'a, Result<CallState, DialError>> {
        Box::pin(async move {
            let (status, body) = self.get(format!("{}/{call_id}.json", self.calls_url())).await?;
            match status {
                200..=299 => Ok(call_state(&body)),
                404 => Ok(CallState::Unknown),
                _ => Err(DialError::Failed(format!("twilio {status}"))),
            }
        })
    }

    fn find<'a>(&'a self, call: &'a PlaceCall, since_ms: u64) -> Fut<'a, Result<Option<String>, DialError>> {
        Box::pin(async move {
            let day = chrono::DateTime::from_timestamp_millis(since_ms as i64)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("To", &call.phone)
                .append_pair("StartTime>", &day)
                .append_pair("PageSize", "50")
                .finish();
            let (status, body) = self.get(format!("{}.json?{query}", self.calls_url())).await?;
            if !(200..=299).contains(&status) {
                return Err(DialError::Failed(format!("twilio {status}")));
            }
            let since = since_ms.saturating_sub(60_000);
            Ok(body["calls"].as_array().and_then(|calls| {
                calls
                    .iter()
                    .filter(|c| {
                        c["date_created"]
                            .as_str()
                            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                            .is_none_or(|d| d.timestamp_millis() >= since as i64)
                    })
                    .find_map(|c| c["sid"].as_str().map(str::to_string))
            }))
        })
    }

    fn poll_every(&self) -> Option<Duration> {
        Some(self.poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_resources_read_as_states() {
        let c = json!({ "sid": "CA1", "status": "completed", "duration": "42", "price": "-0.0130" });
        match call_state(&c) {
            CallState::Ended(e) => {
                assert_eq!(e.outcome, Outcome::Completed);
                assert_eq!(e.talk_ms, Some(42_000));
                assert_eq!(e.cost, Some(0.013));
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(call_state(&json!({ "status": "ringing" })), CallState::Ringing);
        assert_eq!(call_state(&json!({ "status": "in-progress" })), CallState::Live);
    }
}
