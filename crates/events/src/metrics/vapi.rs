//! Metrics of Vapi's own measurements, from each end-of-call report: latency
//! histograms by component (turn, model, voice, transcriber, endpointing), cost by
//! component, interruptions and calls by ending, per provider, flow and assistant.
//!
//! Labels are bounded: providers and flows come from the configuration, components and
//! endings from fixed lists, and assistants are the first [`MAX_ASSISTANTS`] ids seen
//! (made of letters, digits, `-`, `_` and `.`, at most 64 of them); any other reads as
//! `other`.

use super::{header, Histogram};
use callgate_backend::records::{CallTelemetry, Component};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the Vapi latency histograms: a component takes tens of
/// milliseconds, a whole turn from half a second to several.
pub const VAPI_LATENCY_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];

/// The most distinct assistant labels; later assistants are counted as `other`.
pub const MAX_ASSISTANTS: usize = 64;

/// (provider, flow, assistant)
type Key = (String, String, String);

#[derive(Default)]
struct State {
    assistants: BTreeSet<String>,
    latency: BTreeMap<(Key, &'static str), Histogram>,
    cost: BTreeMap<(Key, String), f64>,
    calls: BTreeMap<(Key, &'static str), u64>,
    interruptions: BTreeMap<(Key, &'static str), u64>,
}

impl State {
    fn assistant(&mut self, a: Option<&str>) -> String {
        let Some(a) = a else { return "none".into() };
        let clean = !a.is_empty()
            && a.len() <= 64
            && a.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !clean {
            return "other".into();
        }
        if self.assistants.contains(a) || self.assistants.len() < MAX_ASSISTANTS {
            self.assistants.insert(a.to_owned());
            return a.to_owned();
        }
        "other".into()
    }
}

/// The Vapi telemetry registry.
#[derive(Default)]
pub struct VapiMetrics {
    state: Mutex<State>,
}

impl std::fmt::Debug for VapiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapiMetrics").finish_non_exhaustive()
    }
}

/// The cost components a label may name (Vapi's `costs[].type`, else `other`).
const COST_COMPONENTS: [&str; 9] = [
    "transport",
    "transcriber",
    "model",
    "voice",
    "vapi",
    "analysis",
    "knowledge-base",
    "voicemail-detection",
    "other",
];

impl VapiMetrics {
    /// One ended call: `ending` is `normal`, `failure` or `refused`; `flow` the flow that
    /// served it, if known.
    pub fn call(
        &self,
        provider: &str,
        flow: Option<&str>,
        assistant: Option<&str>,
        telemetry: Option<&CallTelemetry>,
        ending: &'static str,
    ) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = (provider.to_owned(), flow.unwrap_or("none").to_owned(), s.assistant(assistant));
        *s.calls.entry((key.clone(), ending)).or_default() += 1;
        let Some(t) = telemetry else { return };
        for c in Component::ALL {
            let values = t.latencies(c);
            if values.is_empty() {
                continue;
            }
            let h = s.latency.entry((key.clone(), c.as_str())).or_insert_with(|| Histogram::new(VAPI_LATENCY_BUCKETS));
            for v in values {
                h.observe(v / 1000.0);
            }
        }
        for item in &t.costs {
            let component = COST_COMPONENTS.iter().find(|c| **c == item.component).copied().unwrap_or("other");
            *s.cost.entry((key.clone(), component.to_owned())).or_default() += item.usd;
        }
        for (who, n) in [("user", t.user_interrupted), ("assistant", t.assistant_interrupted)] {
            if let Some(n) = n {
                *s.interruptions.entry((key.clone(), who)).or_default() += u64::from(n);
            }
        }
    }

    /// Appends the Prometheus text.
    pub fn render(&self, out: &mut String) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let labels = |(p, f, a): &Key| format!("provider=\"{p}\",flow=\"{f}\",assistant=\"{a}\"");
        header(
            out,
            "callgate_vapi_latency_seconds",
            "histogram",
            "Latency Vapi measured per turn, by provider, flow, assistant and component (turn, model, voice, transcriber, endpointing).",
        );
        for ((k, c), h) in &s.latency {
            h.render(out, "callgate_vapi_latency_seconds", &format!("{},component=\"{c}\"", labels(k)));
        }
        header(
            out,
            "callgate_vapi_cost_usd_total",
            "counter",
            "Cost of ended Vapi calls by component (USD), from the end-of-call reports' costs[].",
        );
        for ((k, c), usd) in &s.cost {
            let _ = writeln!(out, "callgate_vapi_cost_usd_total{{{},component=\"{c}\"}} {usd}", labels(k));
        }
        header(
            out,
            "callgate_vapi_calls_total",
            "counter",
            "Ended Vapi calls by ending: normal, failure (the platform or a provider in its pipeline failed) or refused (concurrency).",
        );
        for ((k, e), n) in &s.calls {
            let _ = writeln!(out, "callgate_vapi_calls_total{{{},ending=\"{e}\"}} {n}", labels(k));
        }
        header(
            out,
            "callgate_vapi_interruptions_total",
            "counter",
            "Interruptions in ended Vapi calls: who = user (the caller cut the assistant off) or assistant.",
        );
        for ((k, w), n) in &s.interruptions {
            let _ = writeln!(out, "callgate_vapi_interruptions_total{{{},who=\"{w}\"}} {n}", labels(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_backend::records::{CostItem, TurnLatency};

    #[test]
    fn assistants_are_bounded_and_odd_ids_read_as_other() {
        let m = VapiMetrics::default();
        let t = CallTelemetry {
            turns: vec![TurnLatency { turn_ms: Some(800.0), model_ms: Some(300.0), ..TurnLatency::default() }],
            costs: vec![CostItem { component: "model".into(), usd: 0.5 }],
            user_interrupted: Some(2),
            ..CallTelemetry::default()
        };
        for i in 0..MAX_ASSISTANTS + 5 {
            m.call("vapi", Some("support"), Some(&format!("a{i}")), Some(&t), "normal");
        }
        m.call("vapi", None, Some("bad\"id"), None, "failure");
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                r#"callgate_vapi_calls_total{provider="vapi",flow="support",assistant="other",ending="normal"} 5"#
            ),
            "{out}"
        );
        assert!(out.contains(
            r#"callgate_vapi_calls_total{provider="vapi",flow="none",assistant="other",ending="failure"} 1"#
        ));
        assert!(out.contains(r#"callgate_vapi_latency_seconds_bucket{provider="vapi",flow="support",assistant="a0",component="turn",le="1"} 1"#));
        assert!(out.contains(
            r#"callgate_vapi_cost_usd_total{provider="vapi",flow="support",assistant="a0",component="model"} 0.5"#
        ));
        assert!(out.contains(
            r#"callgate_vapi_interruptions_total{provider="vapi",flow="support",assistant="a0",who="user"} 2"#
        ));
        assert!(!out.contains("a64\""), "the 65th assistant has no label of its own");
    }
}
