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
/// ended`), and `phoneCallProviderId` (the telephony provider's id of the same call).
fn parse_call(item: &Value) -> Option<PlatformCall> {
    let id = item.get("id")?.as_str()?.to_owned();
    let state = match item.get("status").and_then(Value::as_str) {
        Some("ended") => PlatformState::Ended,
        Some("queued" | "ringing" | "in-progress" | "forwarding") => PlatformState::Live,
        _ => PlatformState::Pending,
    };
    let alias = item.get("phoneCallProviderId").and_then(Value::as_str).map(str::to_owned);
    Some(PlatformCall { id, state, alias, adoptable: state == PlatformState::Live })
}
