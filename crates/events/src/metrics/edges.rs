//! Metrics of the provider edges: webhooks, overflow actions, callbacks, reconciliation
//! and provider API calls. Unlike the ledger metrics these are counted where they happen
//! (they are not ledger events). Labels are bounded: provider and flow names come from
//! the configuration, endpoints, actions and outcomes from fixed lists.

use super::{header, Histogram};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the webhook and provider-request latency histograms: from a
/// millisecond to Vapi's 7.5 s answer deadline and Twilio's 15 s webhook timeout.
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 15.0];

#[derive(Default)]
struct State {
    /// (provider, endpoint, outcome)
    webhooks: BTreeMap<(String, &'static str, &'static str), u64>,
    webhook_seconds: BTreeMap<String, Histogram>,
    /// (flow, action)
    overflow: BTreeMap<(String, &'static str), u64>,
    /// flow
    callbacks: BTreeMap<String, u64>,
    /// (from flow, to flow, outcome)
    spills: BTreeMap<(String, String, &'static str), u64>,
    /// (provider, what = lease | ticket)
    reconciled: BTreeMap<(String, &'static str), u64>,
    adopted: BTreeMap<String, u64>,
    /// (provider, outcome = ok | error)
    provider_requests: BTreeMap<(String, &'static str), u64>,
    provider_seconds: BTreeMap<String, Histogram>,
    live_calls: BTreeMap<String, u64>,
    cost: BTreeMap<String, f64>,
    /// (provider, mode = answer | notify, outcome)
    forwards: BTreeMap<(String, &'static str, &'static str), u64>,
    /// (provider, message type): messages that expect an answer and had no upstream
    unanswered: BTreeMap<(String, &'static str), u64>,
}

/// The outcomes of `callgate_spills_total`.
pub const SPILL_OUTCOMES: [&str; 5] = ["granted", "rejected", "arrived", "expired", "no_caller"];

/// The edge metrics registry.
pub struct EdgeMetrics {
    state: Mutex<State>,
    /// Vapi's own measurements, from end-of-call reports.
    pub vapi: super::VapiMetrics,
}

impl std::fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeMetrics").finish_non_exhaustive()
    }
}

impl EdgeMetrics {
    /// Starts every provider's counters at zero, so a dashboard sees them before the
    /// first event.
    pub fn new<'a>(providers: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = State::default();
        for p in providers {
            for what in ["lease", "ticket"] {
                s.reconciled.insert((p.to_owned(), what), 0);
            }
            s.adopted.insert(p.to_owned(), 0);
            s.cost.insert(p.to_owned(), 0.0);
        }
        EdgeMetrics { state: Mutex::new(s), vapi: super::VapiMetrics::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A webhook was answered: `endpoint` (e.g. `assistant-request`, `voice`), `outcome`
    /// (`ok`, `unauthorized`, `bad_request`, `not_found`, `error`), and how long it took.
    pub fn webhook(&self, provider: &str, endpoint: &'static str, outcome: &'static str, seconds: f64) {
        let mut s = self.lock();
        *s.webhooks.entry((provider.to_owned(), endpoint, outcome)).or_default() += 1;
        s.webhook_seconds
            .entry(provider.to_owned())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(seconds);
    }

    /// An overflow action was carried out for a caller of `flow` (`none` when the chain
    /// had nothing the edge could do and the caller heard the default busy message).
    pub fn overflow(&self, flow: &str, action: &'static str) {
        *self.lock().overflow.entry((flow.to_owned(), action)).or_default() += 1;
    }

    /// A callback was booked for a caller of `flow`.
    pub fn callback_booked(&self, flow: &str) {
        *self.lock().callbacks.entry(flow.to_owned()).or_default() += 1;
    }

    /// A caller of flow `from` was spilled or routed to flow `to`, with `outcome`: one of
    /// [`SPILL_OUTCOMES`].
    pub fn spill(&self, from: &str, to: &str, outcome: &'static str) {
        *self.lock().spills.entry((from.to_owned(), to.to_owned(), outcome)).or_default() += 1;
    }

    /// Reconciliation released leases and cancelled tickets of calls that had ended.
    pub fn reconciled(&self, provider: &str, leases: u64, tickets: u64) {
        let mut s = self.lock();
        *s.reconciled.entry((provider.to_owned(), "lease")).or_default() += leases;
        *s.reconciled.entry((provider.to_owned(), "ticket")).or_default() += tickets;
    }

    /// Reconciliation took leases for live calls callgate did not know.
    pub fn adopted(&self, provider: &str, n: u64) {
        *self.lock().adopted.entry(provider.to_owned()).or_default() += n;
    }

    /// A provider API listing finished (`ok` or `error`), with the platform's count of
    /// live calls when it succeeded.
    pub fn provider_request(&self, provider: &str, ok: bool, seconds: f64, live: Option<u64>) {
        let mut s = self.lock();
        let outcome = if ok { "ok" } else { "error" };
        *s.provider_requests.entry((provider.to_owned(), outcome)).or_default() += 1;
        s.provider_seconds
            .entry(provider.to_owned())
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(seconds);
        if let Some(n) = live {
            s.live_calls.insert(provider.to_owned(), n);
        }
    }

    /// A call's cost (USD) as the platform reported it.
    pub fn cost(&self, provider: &str, usd: f64) {
        if usd.is_finite() && usd >= 0.0 {
            *self.lock().cost.entry(provider.to_owned()).or_default() += usd;
        }
    }

    /// A Vapi message was passed on to the customer's server: `mode` `answer` (its answer
    /// was relayed) or `notify` (fire-and-forget); `outcome` `ok`, `status` (a non-2xx
    /// answer), `timeout`, `error` (unreachable) or `dropped` (the queue was full).
    pub fn forward(&self, provider: &str, mode: &'static str, outcome: &'static str) {
        *self.lock().forwards.entry((provider.to_owned(), mode, outcome)).or_default() += 1;
    }

    /// A Vapi message that expects an answer arrived with no upstream to ask: it was
    /// answered `{}`.
    pub fn unanswered(&self, provider: &str, kind: &'static str) {
        *self.lock().unanswered.entry((provider.to_owned(), kind)).or_default() += 1;
    }

    /// Appends the Prometheus text.
    pub fn render(&self, out: &mut String) {
        let s = self.lock();
        header(
            out,
            "callgate_webhooks_total",
            "counter",
            "Provider webhooks answered, by provider, endpoint and outcome.",
        );
        for ((p, e, o), n) in &s.webhooks {
            let _ = writeln!(out, "callgate_webhooks_total{{provider=\"{p}\",endpoint=\"{e}\",outcome=\"{o}\"}} {n}");
        }
        header(out, "callgate_webhook_seconds", "histogram", "Time to answer a provider webhook.");
        for (p, h) in &s.webhook_seconds {
            h.render(out, "callgate_webhook_seconds", &format!("provider=\"{p}\""));
        }
        header(out, "callgate_overflow_total", "counter", "Overflow actions carried out, by flow and action.");
        for ((f, a), n) in &s.overflow {
            let _ = writeln!(out, "callgate_overflow_total{{flow=\"{f}\",action=\"{a}\"}} {n}");
        }
        header(out, "callgate_callbacks_booked_total", "counter", "Callbacks booked, by flow.");
        for (f, n) in &s.callbacks {
            let _ = writeln!(out, "callgate_callbacks_booked_total{{flow=\"{f}\"}} {n}");
        }
        header(
            out,
            "callgate_spills_total",
            "counter",
            "Callers spilled or routed to another flow, by flow, target and outcome (granted: admitted there and \
             transferred; rejected: no line there, the chain went on; arrived: the transferred call came in and was \
             answered under that line; expired: it never came and the line was freed; no_caller: the caller's number \
             is unknown, so the arriving call could not be recognised).",
        );
        for ((f, t, o), n) in &s.spills {
            let _ = writeln!(out, "callgate_spills_total{{from=\"{f}\",to=\"{t}\",outcome=\"{o}\"}} {n}");
        }
        header(
            out,
            "callgate_reconciled_total",
            "counter",
            "Leases released and tickets cancelled because the platform says the call ended (ghost calls).",
        );
        for ((p, w), n) in &s.reconciled {
            let _ = writeln!(out, "callgate_reconciled_total{{provider=\"{p}\",what=\"{w}\"}} {n}");
        }
        header(out, "callgate_adopted_total", "counter", "Live platform calls callgate did not know, now counted.");
        for (p, n) in &s.adopted {
            let _ = writeln!(out, "callgate_adopted_total{{provider=\"{p}\"}} {n}");
        }
        header(out, "callgate_provider_requests_total", "counter", "Provider API listings, by provider and outcome.");
        for ((p, o), n) in &s.provider_requests {
            let _ = writeln!(out, "callgate_provider_requests_total{{provider=\"{p}\",outcome=\"{o}\"}} {n}");
        }
        header(out, "callgate_provider_request_seconds", "histogram", "Time of a provider API listing.");
        for (p, h) in &s.provider_seconds {
            h.render(out, "callgate_provider_request_seconds", &format!("provider=\"{p}\""));
        }
        header(out, "callgate_provider_live_calls", "gauge", "Live calls the platform reported at the last listing.");
        for (p, n) in &s.live_calls {
            let _ = writeln!(out, "callgate_provider_live_calls{{provider=\"{p}\"}} {n}");
        }
        header(
            out,
            "callgate_call_cost_usd_total",
            "counter",
            "Cost of ended calls as the platform reported it (USD).",
        );
        for (p, c) in &s.cost {
            let _ = writeln!(out, "callgate_call_cost_usd_total{{provider=\"{p}\"}} {c}");
        }
        header(
            out,
            "callgate_vapi_forwards_total",
            "counter",
            "Vapi messages passed on to the customer's server, by provider, mode (answer, notify) and outcome.",
        );
        for ((p, m, o), n) in &s.forwards {
            let _ = writeln!(out, "callgate_vapi_forwards_total{{provider=\"{p}\",mode=\"{m}\",outcome=\"{o}\"}} {n}");
        }
        header(
            out,
            "callgate_vapi_unanswered_total",
            "counter",
            "Vapi messages that expect an answer but had no forward_url to ask, by provider and type.",
        );
        for ((p, t), n) in &s.unanswered {
            let _ = writeln!(out, "callgate_vapi_unanswered_total{{provider=\"{p}\",type=\"{t}\"}} {n}");
        }
        drop(s);
        self.vapi.render(out);
    }
}
