//! The Vapi API client: `GET /call` to list the account's calls for reconciliation.

use super::time::{format_rfc3339, parse_rfc3339};
use super::{http_client, Listing, PlatformCall, PlatformState, ProviderError};
use serde_json::Value;

/// Calls per page: the most Vapi returns at once.
const PAGE: usize = 1000;
/// Pages per listing: 10 000 calls in the window is far beyond a 10-line account; past
/// that the listing is marked incomplete and only affirmatively ended calls are released.
const MAX_PAGES: usize = 10;

/// A Vapi account.
#[derive(Clone, Debug)]
pub struct VapiClient {
    base_url: String,
    api_key: String,
    http: reqwest::Client,
}

impl VapiClient {
    /// A client for the API at `base_url` (no trailing `/`).
    pub fn new(base_url: &str, api_key: &str) -> Self {
        VapiClient { base_url: base_url.to_owned(), api_key: api_key.to_owned(), http: http_client() }
    }

    /// Every call created after `since_ms` (Unix ms), newest pages first.
    pub async fn calls_since(&self, since_ms: u64) -> Result<Listing, ProviderError> {
        let since = format_rfc3339(since_ms);
        let mut out = Listing { calls: Vec::new(), complete: false };
        let mut before: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("limit", PAGE.to_string()), ("createdAtGt", since.clone())];
            if let Some(b) = &before {
                query.push(("createdAtLt", b.clone()));
            }
            let resp = self
                .http
                .get(format!("{}/call", self.base_url))
                .bearer_auth(&self.api_key)
                .query(&query)
                .send()
                .await?
                .error_for_status()?;
            let page: Value = resp.json().await?;
            let items = page
                .as_array()
                .ok_or_else(|| ProviderError::BadResponse("GET /call did not return an array".into()))?;
            let mut oldest: Option<(u64, String)> = None;
            for item in items {
                let Some(call) = parse_call(item) else { continue };
                if let Some(created) = item.get("createdAt").and_then(Value::as_str) {
                    if let Some(ms) = parse_rfc3339(created) {
                        if oldest.as_ref().is_none_or(|(o, _)| ms < *o) {
                            oldest = Some((ms, created.to_owned()));
                        }
                    }
                }
                out.calls.push(call);
            }
            if items.len() < PAGE {
                out.complete = true;
                break;
            }
            match oldest {
                Some((_, created)) => before = Some(created),
                // A full page without creation times cannot be paged through.
                None => break,
            }
        }
        Ok(out)
    }
}

/// One call object: `id`, `status` (`scheduled, queued, ringing, in-progress, forwarding,
/// ended`), `phoneCallProviderId` (the telephony provider's id of the same call), and the
/// `assistantOverrides.metadata` the campaign dialer gives the calls it places
/// (`callgate_attempt`, `callgate_lease`; `POST /call` has no top-level `metadata`).
fn parse_call(item: &Value) -> Option<PlatformCall> {
    let id = item.get("id")?.as_str()?.to_owned();
    let state = match item.get("status").and_then(Value::as_str) {
        Some("ended") => PlatformState::Ended,
        Some("queued" | "ringing" | "in-progress" | "forwarding") => PlatformState::Live,
        _ => PlatformState::Pending,
    };
    let alias = item.get("phoneCallProviderId").and_then(Value::as_str).map(str::to_owned);
    let metadata = item.get("assistantOverrides").and_then(|o| o.get("metadata"));
    let dialed = ["callgate_attempt", "callgate_lease"]
        .iter()
        .any(|k| metadata.and_then(|m| m.get(k)).is_some_and(|v| !v.is_null()));
    Some(PlatformCall { id, state, alias, adoptable: state == PlatformState::Live && !dialed, dialed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_the_dialer_placed_are_never_adoptable() {
        let stranger = parse_call(&json!({ "id": "c1", "status": "in-progress" })).unwrap();
        assert!(stranger.adoptable && !stranger.dialed);
        let dialed = json!({ "id": "c2", "status": "in-progress", "assistantOverrides": {
            "metadata": { "callgate_lease": "L7", "callgate_campaign": "spring", "callgate_attempt": 12 } } });
        let dialed = parse_call(&dialed).unwrap();
        assert!(dialed.dialed && !dialed.adoptable, "{dialed:?}");
        let by_attempt = parse_call(&json!({ "id": "c3", "status": "ringing",
            "assistantOverrides": { "metadata": { "callgate_attempt": "12" } } }));
        assert!(by_attempt.unwrap().dialed);
        let other_meta = parse_call(&json!({ "id": "c4", "status": "queued",
            "assistantOverrides": { "metadata": { "crm": 1 } } }))
        .unwrap();
        assert!(other_meta.adoptable && !other_meta.dialed);
        // A top-level `metadata` is nothing Vapi's `POST /call` can set: not the dialer's.
        let top =
            parse_call(&json!({ "id": "c5", "status": "queued", "metadata": { "callgate_attempt": 3 } })).unwrap();
        assert!(top.adoptable && !top.dialed);
    }
}
