//! The Twilio REST client: `Calls.json` filtered by status, to list live calls for
//! reconciliation.

use crate::{http_client, Listing, PlatformCall, PlatformState, ProviderError};
use serde_json::Value;

/// Calls per page: Twilio's maximum.
const PAGE_SIZE: &str = "1000";
/// Pages per status: 20 000 live calls is far beyond any account callgate fronts.
const MAX_PAGES: usize = 20;
/// The statuses of a call that holds a line. `queued` is an outbound call not yet
/// dialled: it holds nothing yet.
const LIVE: [&str; 2] = ["in-progress", "ringing"];

/// A Twilio account.
#[derive(Clone, Debug)]
pub struct TwilioClient {
    base_url: String,
    account_sid: String,
    auth_token: String,
    http: reqwest::Client,
}

impl TwilioClient {
    /// A client for the API at `base_url` (no trailing `/`).
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str) -> Self {
        TwilioClient {
            base_url: base_url.to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            http: http_client(),
        }
    }

    /// Every live call of the account. `adoptable(to)` says whether an inbound parent
    /// call to that number is one callgate answers (and so should count).
    pub async fn live_calls(&self, adoptable: impl Fn(&str) -> bool) -> Result<Listing, ProviderError> {
        let mut out = Listing { calls: Vec::new(), complete: true };
        for status in LIVE {
            let mut url = format!("{}/2010-04-01/Accounts/{}/Calls.json", self.base_url, self.account_sid);
            let mut query = vec![("Status", status), ("PageSize", PAGE_SIZE)];
            let mut pages = 0;
            loop {
                let page: Value = self
                    .http
                    .get(&url)
                    .basic_auth(&self.account_sid, Some(&self.auth_token))
                    .query(&query)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let calls = page
                    .get("calls")
                    .and_then(Value::as_array)
                    .ok_or_else(|| ProviderError::BadResponse("Calls.json has no `calls` array".into()))?;
                for c in calls {
                    let Some(id) = c.get("sid").and_then(Value::as_str) else { continue };
                    let is_child = c.get("parent_call_sid").and_then(Value::as_str).is_some_and(|p| !p.is_empty());
                    let inbound = c.get("direction").and_then(Value::as_str) == Some("inbound");
                    let to = c.get("to").and_then(Value::as_str).unwrap_or("");
                    out.calls.push(PlatformCall {
                        id: id.to_owned(),
                        state: PlatformState::Live,
                        alias: None,
                        adoptable: inbound && !is_child && adoptable(to),
                        // A call resource does not show its status callback; the dialer
                        // is asked by CallSid instead (see reconcile).
                        dialed: false,
                    });
                }
                pages += 1;
                match page.get("next_page_uri").and_then(Value::as_str) {
                    Some(next) if !next.is_empty() => {
                        if pages >= MAX_PAGES {
                            out.complete = false;
                            break;
                        }
                        // The next page's URI carries its own query.
                        url = format!("{}{next}", self.base_url);
                        query.clear();
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}
