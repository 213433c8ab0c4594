//! The Vapi API client: `GET /call` to list the account's calls for reconciliation.
//!
//! Vapi documents no sort order and no cursor for `GET /call`, and several calls can
//! share one `createdAt` (batch creation). So a listing never pages "from the oldest seen
//! on": that skips the calls that share the boundary's time, and with an oldest-first
//! order it skips every live call. Instead it covers the window with time ranges whose
//! bounds are inclusive (`createdAtGe` / `createdAtLe`): a range whose page comes back
//! not full holds every call created in it, whatever the order; a full page's range is
//! split in two at the median creation time seen, into `[lo, m]` and `[m, hi]`, which
//! overlap at `m` (so a call created at `m`, at any sub-millisecond precision, is in one
//! of them) and are de-duplicated by id. The listing is complete only when every range
//! came back not full; a range that cannot be split (more than a page of calls in one
//! millisecond) or a request budget that runs out leaves it incomplete, and then only
//! calls shown as ended are released.

use crate::time::{format_rfc3339, parse_rfc3339};
use crate::{http_client, Listing, PlatformCall, PlatformState, ProviderError};
use serde_json::Value;
use std::collections::HashSet;

/// Calls per page: the most Vapi returns at once.
const PAGE: usize = 1000;
/// Requests per listing: enough to split a window of tens of thousands of calls (far
/// beyond a 10-line account's hour); past that the listing is marked incomplete and
/// only affirmatively ended calls are released.
const MAX_REQUESTS: usize = 40;

/// A range of creation times, bounds inclusive, in Unix ms; `hi = None`: no upper bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: Option<u64>,
}

impl Range {
    /// The two overlapping halves around `m`, or `None` when the range cannot shrink.
    fn split(self, m: u64) -> Option<(Range, Range)> {
        let m = match self.hi {
            Some(hi) if hi <= self.lo.saturating_add(1) => return None,
            Some(hi) => m.clamp(self.lo + 1, hi - 1),
            None => m.max(self.lo + 1),
        };
        Some((Range { lo: self.lo, hi: Some(m) }, Range { lo: m, hi: self.hi }))
    }
}

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

    /// One page of the calls created in `range`.
    async fn page(&self, range: Range) -> Result<Vec<Value>, ProviderError> {
        let mut query = vec![("limit", PAGE.to_string()), ("createdAtGe", format_rfc3339(range.lo))];
        if let Some(hi) = range.hi {
            query.push(("createdAtLe", format_rfc3339(hi)));
        }
        let resp = self
            .http
            .get(format!("{}/call", self.base_url))
            .bearer_auth(&self.api_key)
            .query(&query)
            .send()
            .await?
            .error_for_status()?;
        match resp.json::<Value>().await? {
            Value::Array(items) => Ok(items),
            _ => Err(ProviderError::BadResponse("GET /call did not return an array".into())),
        }
    }

    /// Every call created at or after `since_ms` (Unix ms), whatever order Vapi lists
    /// them in; `complete` only when the pagination provably covered the window.
    pub async fn calls_since(&self, since_ms: u64) -> Result<Listing, ProviderError> {
        let mut out = Listing { calls: Vec::new(), complete: true };
        let mut seen: HashSet<String> = HashSet::new();
        let mut todo = vec![Range { lo: since_ms, hi: None }];
        let mut requests = 0;
        while let Some(range) = todo.pop() {
            if requests == MAX_REQUESTS {
                out.complete = false;
                break;
            }
            requests += 1;
            let items = self.page(range).await?;
            let mut created: Vec<u64> = Vec::with_capacity(items.len());
            for item in &items {
                if let Some(ms) = item.get("createdAt").and_then(Value::as_str).and_then(parse_rfc3339) {
                    created.push(ms);
                }
                let Some(call) = parse_call(item) else { continue };
                if seen.insert(call.id.clone()) {
                    out.calls.push(call);
                }
            }
            if items.len() < PAGE {
                continue;
            }
            // A full page: the range may hold more. Split it where the calls seen are.
            created.sort_unstable();
            let split = created.get(created.len() / 2).and_then(|&m| range.split(m));
            match split {
                Some((low, high)) => {
                    todo.push(low);
                    todo.push(high);
                }
                // More than a page within a millisecond, or no creation times to split
                // by: this range cannot be listed whole.
                None => out.complete = false,
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
    fn ranges_split_into_overlapping_halves_that_shrink() {
        let r = Range { lo: 100, hi: Some(200) };
        assert_eq!(r.split(150), Some((Range { lo: 100, hi: Some(150) }, Range { lo: 150, hi: Some(200) })));
        // A median at a bound still shrinks both halves.
        assert_eq!(r.split(100), Some((Range { lo: 100, hi: Some(101) }, Range { lo: 101, hi: Some(200) })));
        assert_eq!(r.split(200), Some((Range { lo: 100, hi: Some(199) }, Range { lo: 199, hi: Some(200) })));
        assert_eq!(Range { lo: 100, hi: Some(101) }.split(100), None, "one millisecond cannot be split");
        let open = Range { lo: 100, hi: None };
        assert_eq!(open.split(50), Some((Range { lo: 100, hi: Some(101) }, Range { lo: 101, hi: None })));
    }

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
        // Where POST /call puts it now: the assistant's overrides, echoed on the call.
        let overrides = json!({ "id": "c5", "status": "in-progress",
            "assistantOverrides": { "metadata": { "callgate_attempt": "12" } } });
        let overrides = parse_call(&overrides).unwrap();
        assert!(overrides.dialed && !overrides.adoptable);
    }
}
