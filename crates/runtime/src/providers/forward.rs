//! The transparent proxy's way out: passing Vapi messages on to the customer's own server
//! URL (the provider's `forward_url`, or the flow's).
//!
//! - A message that expects an answer (`tool-calls`, `transfer-destination-request`, …) is
//!   sent and awaited for at most `forward_timeout`, below the 20 s callgate asks Vapi to
//!   wait, and the upstream's answer (status, content type, body) is relayed unchanged. A
//!   timeout or an unreachable upstream is answered with a clear error, never a hang.
//! - Every other message is sent without delaying callgate's own answer: one task per
//!   message, holding a share of a fixed budget of bytes in flight (32 MiB), so a slow
//!   upstream can only make callgate drop notifications (counted), never grow without
//!   bound.

use crate::providers::Upstream;
use axum::body::Bytes;
use callgate_events::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bodies in flight to upstreams at once, in KiB: 32 MiB holds hundreds of ordinary
/// messages, or a handful of end-of-call reports with long transcripts.
const NOTIFY_BUDGET_KIB: u32 = 32 * 1024;
/// The largest upstream answer relayed: tool results and transfer destinations are small.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Sends Vapi messages upstream.
pub struct Forwarder {
    http: reqwest::Client,
    budget: Arc<Semaphore>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("budget_kib", &self.budget.available_permits()).finish()
    }
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

/// An upstream's answer, relayed as it came.
#[derive(Debug)]
#[doc(hidden)]
pub struct Relayed {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Why no answer can be relayed.
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum AskError {
    /// No answer within `forward_timeout`.
    Timeout,
    /// Connection refused, reset, or an answer larger than callgate relays.
    Failed(String),
}

impl Forwarder {
    /// A forwarder with its own connection pool.
    pub fn new() -> Self {
        Self::with_budget(NOTIFY_BUDGET_KIB)
    }

    /// A forwarder that keeps at most `kib` KiB of notifications in flight.
    fn with_budget(kib: u32) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Forwarder { http, budget: Arc::new(Semaphore::new(kib as usize)) }
    }

    fn request(&self, upstream: &Upstream, body: Bytes, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&upstream.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        if let Some(value) = upstream.header_value() {
            req = req.header(upstream.header.as_str(), value);
        }
        req
    }

    /// Sends `body` and waits (at most `timeout`) for the answer.
    #[doc(hidden)]
    pub async fn ask(&self, upstream: &Upstream, body: Bytes, timeout: Duration) -> Result<Relayed, AskError> {
        let exchange = async {
            let mut resp = self.request(upstream, body, timeout).send().await.map_err(classify)?;
            let status = resp.status().as_u16();
            let content_type =
                resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut out = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(classify)? {
                if out.len() + chunk.len() > MAX_ANSWER {
                    return Err(AskError::Failed(format!("the answer is larger than {MAX_ANSWER} bytes")));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Relayed { status, content_type, body: Bytes::from(out) })
        };
        // The request's own timeout covers the exchange; this one also bounds reading a
        // body that trickles in.
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(AskError::Timeout))
    }

    /// Sends `body` in the background; counts the outcome, or a drop when the budget of
    /// bytes in flight is spent.
    #[doc(hidden)]
    pub fn notify(
        &self,
        metrics: &Arc<Metrics>,
        provider: &Arc<str>,
        upstream: &Upstream,
        body: Bytes,
        timeout: Duration,
    ) {
        let kib = u32::try_from(body.len().div_ceil(1024)).unwrap_or(u32::MAX).max(1);
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(kib) else {
            tracing::warn!(provider = %provider, url = %upstream.url, "Upstream is behind: a Vapi message was not forwarded");
            metrics.edges.forward(provider, "notify", "dropped");
            return;
        };
        let req = self.request(upstream, body, timeout);
        let (metrics, provider, url) = (metrics.clone(), provider.clone(), upstream.url.clone());
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(timeout, req.send()).await {
                Ok(Ok(resp)) if resp.status().is_success() => "ok",
                Ok(Ok(resp)) => {
                    tracing::warn!(provider = %provider, url = %url, status = resp.status().as_u16(), "Upstream refused a forwarded Vapi message");
                    "status"
                }
                Ok(Err(e)) if e.is_timeout() => "timeout",
                Err(_) => "timeout",
                Ok(Err(e)) => {
                    tracing::warn!(provider = %provider, url = %url, error = %e, "Cannot forward a Vapi message");
                    "error"
                }
            };
            metrics.edges.forward(&provider, "notify", outcome);
            drop(permit);
        });
    }
}

fn classify(e: reqwest::Error) -> AskError {
    if e.is_timeout() {
        AskError::Timeout
    } else {
        AskError::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A customer server that takes connections and never answers.
    async fn silent_upstream() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/vapi", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Upstream { url, header: "Authorization".into(), secret: None }
    }

    fn rendered(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.edges.render(&mut out);
        out
    }

    #[tokio::test]
    async fn notifications_beyond_the_budget_are_dropped_and_counted() {
        let upstream = silent_upstream().await;
        let forwarder = Forwarder::with_budget(3);
        let metrics = Arc::new(Metrics::new(Default::default(), &[]));
        let provider: Arc<str> = "v".into();
        let body = Bytes::from(vec![b' '; 2 * 1024]);
        // 2 KiB fits in 3 KiB; the next 2 KiB does not while the first is in flight.
        forwarder.notify(&metrics, &provider, &upstream, body.clone(), Duration::from_secs(60));
        forwarder.notify(&metrics, &provider, &upstream, body, Duration::from_secs(60));
        let text = rendered(&metrics);
        assert!(
            text.contains("callgate_vapi_forwards_total{provider=\"v\",mode=\"notify\",outcome=\"dropped\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_does_not_come_is_a_timeout() {
        let upstream = silent_upstream().await;
        let forwarder = Forwarder::new();
        let answer = forwarder.ask(&upstream, Bytes::from_static(b"{}"), Duration::from_millis(100)).await;
        assert_eq!(answer.unwrap_err(), AskError::Timeout);
    }
}
