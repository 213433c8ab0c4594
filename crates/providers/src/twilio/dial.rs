//! Twilio: `POST /2010-04-01/Accounts/{sid}/Calls.json` places a call (`To`, `From`, `Url`
//! or `Twiml`, `StatusCallback`), `GET …/Calls/{sid}.json` reads one, `GET …/Calls.json`
//! with `To` and `StartTime>=` finds one after a restart.
//!
//! The status callback goes to the provider's webhook
//! (`{public_url}/webhooks/twilio/{name}/status`) with `callgate_attempt` in its query, so
//! the webhook can hand the outcome to the campaign without looking anything up. Twilio
//! queues calls above an account's calls-per-second instead of refusing them; a 429
//! (error 20429) is still taken as a refusal.
//!
//! Errors of the account (401 / 20003 authentication, 21210 a `From` the account does not
//! own or has not verified, …) are [`DialError::Account`]: the campaign pauses, the lead
//! is not burnt. Errors about the number dialed (21211, 21214, …) fail the lead.
//!
//! Voicemail: with [`Amd`] the call asks for answering machine detection
//! (`MachineDetection`, and `AsyncAmd` with its callback to the same status URL), and
//! `AnsweredBy` decides between a conversation, voicemail and a fax line.

pub use callgate_config::MachineDetection;
use callgate_dialer::dial::{twilio_outcome, CallState, DialError, Dialer, Ended, Fut, Outcome, PlaceCall, Placed};
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
    amd: Option<Amd>,
    poll: Duration,
    client: reqwest::Client,
}

/// Answering machine detection as a call asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amd {
    /// `Enable` or `DetectMessageEnd` (never `Off`: then there is no `Amd`).
    pub mode: MachineDetection,
    /// In the background (`AsyncAmd=true`): the call connects at once and `AnsweredBy`
    /// comes to the status URL later.
    pub asynchronous: bool,
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
    /// `twiml`, with answering machine detection when `amd` says so.
    pub fn new(
        account: TwilioAccount,
        from: Vec<String>,
        url: Option<String>,
        twiml: Option<String>,
        amd: Option<Amd>,
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
            amd,
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
                let status_url = format!(
                    "{}/webhooks/twilio/{}/status?callgate_attempt={}",
                    public.trim_end_matches('/'),
                    self.provider,
                    call.attempt
                );
                form.push(("StatusCallback", status_url.clone()));
                for e in ["initiated", "ringing", "answered", "completed"] {
                    form.push(("StatusCallbackEvent", e.to_string()));
                }
                if let Some(amd) = self.amd.filter(|a| a.asynchronous) {
                    form.push(("MachineDetection", amd.mode.as_str().to_string()));
                    form.push(("AsyncAmd", "true".to_string()));
                    form.push(("AsyncAmdStatusCallback", status_url));
                }
            }
            if let Some(amd) = self.amd.filter(|a| !a.asynchronous) {
                form.push(("MachineDetection", amd.mode.as_str().to_string()));
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
            classify(status, &body)
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

/// Twilio error codes that concern the account, not the number dialed: authentication
/// (20003), the account not found or not active (20404, 20005), a `From` the account does
/// not own or has not verified (21210), an invalid caller id (21212).
const ACCOUNT_CODES: [u64; 5] = [20003, 20005, 20404, 21210, 21212];

/// Error codes about the number dialed: invalid (21211, 21217, 21401, 13224), not
/// reachable (21214, 21612), not allowed by the account's geographic permissions (21215),
/// on a blocklist (21216, 21610).
const NUMBER_CODES: [u64; 10] = [13224, 21211, 21214, 21215, 21216, 21217, 21401, 21610, 21612, 21614];

/// What Twilio's answer to `POST Calls.json` means for the attempt.
fn classify(status: u16, body: &Value) -> Result<Placed, DialError> {
    let code = body["code"].as_u64();
    let msg = || match code {
        Some(c) => format!("twilio {status} (code {c}): {}", body["message"].as_str().unwrap_or("")),
        None => format!("twilio {status}: {}", body["message"].as_str().unwrap_or("")),
    };
    match status {
        200..=299 => body["sid"]
            .as_str()
            .map(|sid| Placed { call_id: sid.to_string() })
            .ok_or_else(|| DialError::Failed("twilio answered without a call sid".into())),
        429 => Err(DialError::Refused(msg())),
        400..=499 if code == Some(20429) => Err(DialError::Refused(msg())),
        401 | 403 => Err(DialError::Account(msg())),
        400..=499 if code.is_some_and(|c| ACCOUNT_CODES.contains(&c)) => Err(DialError::Account(msg())),
        400..=499 if code.is_some_and(|c| NUMBER_CODES.contains(&c)) => Err(DialError::Invalid(msg())),
        _ => Err(DialError::Failed(msg())),
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
        let machine = json!({ "status": "completed", "duration": "20", "answered_by": "machine_end_beep" });
        assert!(matches!(
            call_state(&machine),
            CallState::Ended(Ended { outcome: Outcome::Voicemail, talk_ms: None, .. })
        ));
    }

    #[test]
    fn account_errors_are_told_from_the_numbers() {
        let err = |status, code: u64| classify(status, &json!({ "code": code, "message": "m", "status": status }));
        assert!(matches!(err(401, 20003), Err(DialError::Account(_))));
        assert!(matches!(err(400, 21210), Err(DialError::Account(_))));
        assert!(matches!(err(400, 21211), Err(DialError::Invalid(_))));
        assert!(matches!(err(400, 21214), Err(DialError::Invalid(_))));
        assert!(matches!(err(429, 20429), Err(DialError::Refused(_))));
        assert!(matches!(err(400, 21205), Err(DialError::Failed(_))));
        assert!(matches!(err(500, 20500), Err(DialError::Failed(_))));
    }
}
