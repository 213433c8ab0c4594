//! Traces over OTLP: a `tracing` layer that exports spans to an OpenTelemetry collector
//! as OTLP/HTTP JSON (`POST {endpoint}/v1/traces`), off unless `[telemetry]
//! otlp_endpoint` is set.
//!
//! Spans of note: `decision` (one per acquire: flow or class, key, outcome, reason, lease
//! or ticket), `webhook` (one per provider webhook answered, and one per outbound alert
//! notification). Parent and child spans share a trace id, so a webhook's decision shows
//! under it.
//!
//! Why by hand: the `opentelemetry` + `opentelemetry_sdk` + `opentelemetry-otlp` +
//! `tracing-opentelemetry` stack adds a dozen crates (prost and its code generation among
//! them) for what is here one file on crates already in the tree (serde_json, reqwest,
//! tokio). OTLP/HTTP with the JSON encoding is part of the stable OTLP 1.x specification
//! (ids as hex strings, 64-bit integers as decimal strings, enums as numbers) and every
//! current collector accepts it. What is left out: sampling (every span is sent; these
//! are few per call), metrics and logs over OTLP (Prometheus serves metrics), retries of
//! a failed export (a batch that cannot be sent is dropped and counted in a warning).
//!
//! Export never slows a decision: finished spans go into a bounded channel (a full
//! channel drops the span), and a thread of its own batches them (up to 512, or every
//! 2 s) and posts them.

use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting to be exported; beyond this new ones are dropped.
const QUEUE: usize = 8_192;
/// Spans per request.
const BATCH: usize = 512;
/// The longest a finished span waits before it is sent.
const EVERY: Duration = Duration::from_secs(2);
/// One export request may take this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A span being recorded.
#[derive(Clone, Debug)]
struct SpanData {
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    name: &'static str,
    kind: u8,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, Value)>,
    error: bool,
}

/// Unix nanoseconds. Spans are timed on the wall clock; no decision ever reads this.
#[allow(clippy::disallowed_methods)]
fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Random ids: SplitMix64 over a per-process random seed and a counter (ids need to be
/// unique, not secret).
struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(now_ns());
        Ids { seed: h.finish(), counter: AtomicU64::new(1) }
    }

    fn next(&self) -> u64 {
        let mut z =
            self.seed.wrapping_add(self.counter.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    }
}

struct Attrs<'a>(&'a mut SpanData);

impl Attrs<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "otel.kind" => {
                self.0.kind = match value["stringValue"].as_str() {
                    Some("server") => 2,
                    Some("client") => 3,
                    _ => 1,
                }
            }
            name => {
                if name == "outcome" && value["stringValue"] == "error" {
                    self.0.error = true;
                }
                self.0.attributes.retain(|(k, _)| k != name);
                self.0.attributes.push((name.to_owned(), value));
            }
        }
    }
}

impl Visit for Attrs<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, json!({ "stringValue": value }));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!({ "intValue": value.to_string() }));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!({ "intValue": value.to_string() }));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, json!({ "doubleValue": value }));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!({ "boolValue": value }));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, json!({ "stringValue": format!("{value:?}") }));
    }
}

/// What the exporter thread receives.
enum Msg {
    Span(Box<SpanData>),
    /// Send what is left and stop.
    Stop,
}

/// The layer: records spans and hands finished ones to the exporter thread.
pub struct OtlpLayer {
    tx: SyncSender<Msg>,
    ids: Ids,
    dropped: AtomicU64,
}

impl std::fmt::Debug for OtlpLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<SpanData>().map(|d| (d.trace_id, d.span_id)));
        let trace_id =
            parent.map_or_else(|| (u128::from(self.ids.next()) << 64) | u128::from(self.ids.next()), |p| p.0);
        let mut data = SpanData {
            trace_id,
            span_id: self.ids.next(),
            parent: parent.map(|p| p.1),
            name: attrs.metadata().name(),
            kind: 1,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: Vec::new(),
            error: false,
        };
        attrs.record(&mut Attrs(&mut data));
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(data) = span.extensions_mut().get_mut::<SpanData>() {
                values.record(&mut Attrs(data));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut data) = span.extensions_mut().remove::<SpanData>() else { return };
        data.end_ns = now_ns();
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Span(Box::new(data))) {
            // Said once, not per span: a stuck collector must not flood stderr.
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("otlp: the export queue is full (the collector is slow or down); spans are being dropped");
            }
        }
    }
}

/// Keeps the exporter running; dropping it sends what is left and stops the thread
/// (waiting at most the export timeout).
#[derive(Debug)]
pub struct OtlpGuard {
    stop: Option<SyncSender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Span(_) => "Span",
            Msg::Stop => "Stop",
        })
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Blocks while the queue is full: the thread is draining it.
            let _ = stop.send(Msg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which spans the exporter is given: callgate's own (the governor's decisions, the
/// webhooks' spans), at `INFO`, whatever `RUST_LOG` says about logs. A span's target is
/// the module path it was opened in, so every crate of the running server is named: the
/// edge (`callgate_http`), the runtime (`callgate_runtime`), the wiring (`callgate_server`).
pub fn span_targets() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_target("callgate_server", LevelFilter::INFO)
        .with_target("callgate_http", LevelFilter::INFO)
        .with_target("callgate_runtime", LevelFilter::INFO)
        .with_target("callgate_governor", LevelFilter::INFO)
}

/// The layer and its exporter, posting to `endpoint` (e.g. `http://127.0.0.1:4318`;
/// spans go to `{endpoint}/v1/traces`) with `service.name = service`.
pub fn otlp(endpoint: &str, service: &str) -> std::io::Result<(OtlpLayer, OtlpGuard)> {
    let (tx, rx) = sync_channel::<Msg>(QUEUE);
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let resource = json!({ "attributes": [
        { "key": "service.name", "value": { "stringValue": service } },
        { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
    ] });
    let thread = std::thread::Builder::new().name("otlp-export".into()).spawn(move || export(rx, url, resource))?;
    let layer = OtlpLayer { tx: tx.clone(), ids: Ids::new(), dropped: AtomicU64::new(0) };
    Ok((layer, OtlpGuard { stop: Some(tx), thread: Some(thread) }))
}

fn hex(v: u128, digits: usize) -> String {
    format!("{v:0digits$x}")
}

/// One OTLP/JSON `ExportTraceServiceRequest`.
fn request(resource: &Value, spans: &[SpanData]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": hex(s.trace_id, 32),
                "spanId": hex(u128::from(s.span_id), 16),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.max(s.start_ns).to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
                "status": { "code": if s.error { 2 } else { 0 } },
            });
            if let Some(p) = s.parent {
                v["parentSpanId"] = json!(hex(u128::from(p), 16));
            }
            v
        })
        .collect();
    json!({ "resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{ "scope": { "name": "callgate", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
    }] })
}

fn export(rx: Receiver<Msg>, url: String, resource: Value) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("otlp: cannot start the exporter's runtime; no traces are exported");
        return;
    };
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otlp: cannot build the HTTP client ({e}); no traces are exported");
            return;
        }
    };
    let send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let body = request(&resource, batch);
        let n = batch.len();
        batch.clear();
        // The export's own request is not traced: this thread has no subscriber context
        // of the server's spans, and reqwest logs below INFO.
        let result = runtime.block_on(async { client.post(&url).json(&body).send().await });
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!("otlp: the collector answered {} to {n} spans; they are dropped", r.status()),
            Err(e) => eprintln!("otlp: cannot send {n} spans ({e}); they are dropped"),
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match rx.recv_timeout(EVERY) {
            Ok(Msg::Span(span)) => {
                batch.push(*span);
                if batch.len() >= BATCH {
                    send(&mut batch);
                }
            }
            Err(RecvTimeoutError::Timeout) => send(&mut batch),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    send(&mut batch);
}

/// Middleware: a `webhook` span around every request under `/webhooks/` (kind and
/// provider from the path, the status once answered), so a webhook and the decision it
/// asked for are one trace.
pub async fn webhook_span(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/webhooks/") else { return next.run(req).await };
    let mut parts = rest.split('/');
    let (kind, provider, endpoint) = (parts.next(), parts.next(), parts.next());
    let span =
        tracing::info_span!("webhook", otel.kind = "server", kind, provider, endpoint, status = tracing::field::Empty);
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_otlp_json() {
        let span = SpanData {
            trace_id: 0xabc,
            span_id: 0x1f,
            parent: Some(2),
            name: "decision",
            kind: 1,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_000_500_000,
            attributes: vec![("outcome".into(), json!({ "stringValue": "granted" }))],
            error: false,
        };
        let body = request(&json!({ "attributes": [] }), &[span]);
        let s = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "00000000000000000000000000000abc");
        assert_eq!(s["spanId"], "000000000000001f");
        assert_eq!(s["parentSpanId"], "0000000000000002");
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000", "64-bit integers are strings in OTLP/JSON");
        assert_eq!(s["attributes"][0], json!({ "key": "outcome", "value": { "stringValue": "granted" } }));
    }

    #[test]
    fn ids_are_not_zero_and_do_not_repeat() {
        let ids = Ids::new();
        let seen: std::collections::HashSet<u64> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(seen.len(), 10_000);
        assert!(!seen.contains(&0));
    }
}
