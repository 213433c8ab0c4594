//! Metrics of the operating layer: samples, adaptive caps, breakers, fallbacks, alerts and
//! their actions. Appended to `/metrics` after the ledger's and the edges'.
//!
//! Every label set is fixed by the configuration (pools, flows, breakers, alerts) or by a
//! short list in this file, and every series exists from the start, at zero, so that
//! dashboards and alert rules see them before the first event.

use super::events::OpsEvent;
use callgate_events::metrics::header;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms: what an agent's response time or a
/// model call takes, from 50 ms to half a minute (time to first audio is usually under
/// 1.5 s; a dependency timing out takes 10 to 30 s).
pub const SAMPLE_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0];

const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];
const ACTIONS: [&str; 4] = ["notify", "pause_campaigns", "set_overflow", "set_limit"];

#[derive(Clone, Debug)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram { counts: vec![0; SAMPLE_BUCKETS.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in SAMPLE_BUCKETS.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (b, c) in SAMPLE_BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug)]
struct State {
    pools: Vec<String>,
    /// Whether the pool's cap is adaptive.
    adaptive: Vec<bool>,
    flows: Vec<String>,
    breakers: Vec<String>,
    alerts: Vec<String>,
    /// [pool]
    latency: Vec<Histogram>,
    /// [pool] (latency samples, drops)
    samples: Vec<[u64; 2]>,
    /// [pool] (up, down)
    cap_changes: Vec<[u64; 2]>,
    /// [pool]
    refusals: Vec<u64>,
    /// [breaker]
    state: Vec<usize>,
    /// [breaker][to state]
    transitions: Vec<[u64; 3]>,
    /// [breaker] (ok, failed)
    calls: Vec<[u64; 2]>,
    /// [breaker]
    dependency_latency: Vec<Histogram>,
    /// [flow][breaker]
    fallbacks: Vec<Vec<u64>>,
    /// [alert]
    firing: Vec<bool>,
    value: Vec<Option<f64>>,
    /// [alert] (fired, resolved)
    alert_transitions: Vec<[u64; 2]>,
    /// [alert][action] (ok, error)
    actions: Vec<[[u64; 2]; 4]>,
}

/// `ACTIONS` index of `notify`.
const NOTIFY: usize = 0;

/// The registry.
#[derive(Debug)]
pub struct OpsMetrics {
    state: Mutex<State>,
}

fn index(names: &[String], name: &str) -> Option<usize> {
    names.iter().position(|n| n == name)
}

impl OpsMetrics {
    /// Every series at zero, for these names.
    pub fn new(
        pools: Vec<String>,
        adaptive: Vec<bool>,
        flows: Vec<String>,
        breakers: Vec<String>,
        alerts: Vec<String>,
    ) -> Self {
        let (np, nb, nf, na) = (pools.len(), breakers.len(), flows.len(), alerts.len());
        OpsMetrics {
            state: Mutex::new(State {
                latency: vec![Histogram::new(); np],
                samples: vec![[0; 2]; np],
                cap_changes: vec![[0; 2]; np],
                refusals: vec![0; np],
                state: vec![0; nb],
                transitions: vec![[0; 3]; nb],
                calls: vec![[0; 2]; nb],
                dependency_latency: vec![Histogram::new(); nb],
                fallbacks: vec![vec![0; nb]; nf],
                firing: vec![false; na],
                value: vec![None; na],
                alert_transitions: vec![[0; 2]; na],
                actions: vec![[[0; 2]; 4]; na],
                pools,
                adaptive,
                flows,
                breakers,
                alerts,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A latency (ms) was reported for a call of pool `p`.
    pub(crate) fn pool_latency(&self, p: usize, latency_ms: f64) {
        self.lock().latency[p].observe(latency_ms / 1000.0);
    }

    /// A sample (a latency, or a drop) reached pool `p`'s adaptive cap.
    pub(crate) fn adaptive_sample(&self, p: usize, dropped: bool) {
        self.lock().samples[p][usize::from(dropped)] += 1;
    }

    /// A provider refused a call of pool `p` for concurrency.
    pub(crate) fn refusal(&self, p: usize) {
        self.lock().refusals[p] += 1;
    }

    /// The adaptive cap of pool `p` moved.
    pub(crate) fn cap_changed(&self, p: usize, up: bool) {
        self.lock().cap_changes[p][usize::from(!up)] += 1;
    }

    /// An outcome of dependency `b`.
    pub(crate) fn dependency_call(&self, b: usize, ok: bool, latency_ms: Option<f64>) {
        let mut s = self.lock();
        s.calls[b][usize::from(!ok)] += 1;
        if let Some(ms) = latency_ms {
            s.dependency_latency[b].observe(ms / 1000.0);
        }
    }

    /// The value an alert was last evaluated at.
    pub(crate) fn alert_value(&self, a: usize, value: Option<f64>) {
        self.lock().value[a] = value;
    }

    /// Counts an ops event.
    pub(crate) fn observe(&self, e: &OpsEvent) {
        let mut s = self.lock();
        match e {
            OpsEvent::BreakerChanged { breaker, to, .. } => {
                if let Some(b) = index(&s.breakers, breaker) {
                    let st = BREAKER_STATES.iter().position(|x| x == to).unwrap_or(0);
                    s.state[b] = st;
                    s.transitions[b][st] += 1;
                }
            }
            OpsEvent::Fallback { flow, dependency, .. } => {
                if let (Some(f), Some(b)) = (index(&s.flows, flow), index(&s.breakers, dependency)) {
                    s.fallbacks[f][b] += 1;
                }
            }
            OpsEvent::Alert { alert, firing, .. } => {
                if let Some(a) = index(&s.alerts, alert) {
                    s.firing[a] = *firing;
                    s.alert_transitions[a][usize::from(!firing)] += 1;
                }
            }
            OpsEvent::AlertAction { alert, action, ok, .. } => {
                if let (Some(a), Some(k)) = (index(&s.alerts, alert), ACTIONS.iter().position(|x| x == action)) {
                    s.actions[a][k][usize::from(!ok)] += 1;
                }
            }
        }
    }

    /// Appends the Prometheus text.
    pub fn render(&self, out: &mut String) {
        let s = self.lock();
        header(
            out,
            "callgate_sample_latency_seconds",
            "histogram",
            "Latencies reported for a pool's calls (samples and releases).",
        );
        for (p, h) in s.latency.iter().enumerate() {
            h.render(out, "callgate_sample_latency_seconds", &format!("pool=\"{}\"", s.pools[p]));
        }
        let adaptive: Vec<(usize, &String)> = s.pools.iter().enumerate().filter(|(p, _)| s.adaptive[*p]).collect();
        header(
            out,
            "callgate_adaptive_samples_total",
            "counter",
            "Samples fed to a pool's adaptive cap, by kind (latency, drop).",
        );
        for &(p, name) in &adaptive {
            let [latency, drops] = s.samples[p];
            let _ = writeln!(out, "callgate_adaptive_samples_total{{pool=\"{name}\",kind=\"latency\"}} {latency}");
            let _ = writeln!(out, "callgate_adaptive_samples_total{{pool=\"{name}\",kind=\"drop\"}} {drops}");
        }
        header(out, "callgate_adaptive_cap_changes_total", "counter", "Moves of a pool's adaptive cap, by direction.");
        for &(p, name) in &adaptive {
            let [up, down] = s.cap_changes[p];
            let _ = writeln!(out, "callgate_adaptive_cap_changes_total{{pool=\"{name}\",direction=\"up\"}} {up}");
            let _ = writeln!(out, "callgate_adaptive_cap_changes_total{{pool=\"{name}\",direction=\"down\"}} {down}");
        }
        header(
            out,
            "callgate_provider_refusals_total",
            "counter",
            "Calls the provider refused for concurrency (drops), by pool.",
        );
        for (p, n) in s.refusals.iter().enumerate() {
            let _ = writeln!(out, "callgate_provider_refusals_total{{pool=\"{}\"}} {n}", s.pools[p]);
        }
        header(
            out,
            "callgate_breaker_state",
            "gauge",
            "1 for the state each breaker is in (closed, open, half_open), 0 for the others.",
        );
        for (b, name) in s.breakers.iter().enumerate() {
            for (i, st) in BREAKER_STATES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "callgate_breaker_state{{breaker=\"{name}\",state=\"{st}\"}} {}",
                    u8::from(s.state[b] == i)
                );
            }
        }
        header(out, "callgate_breaker_transitions_total", "counter", "Breaker state changes, by the state entered.");
        for (b, name) in s.breakers.iter().enumerate() {
            for (i, st) in BREAKER_STATES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "callgate_breaker_transitions_total{{breaker=\"{name}\",to=\"{st}\"}} {}",
                    s.transitions[b][i]
                );
            }
        }
        header(
            out,
            "callgate_dependency_calls_total",
            "counter",
            "Outcomes reported for a dependency, by outcome (ok, failed).",
        );
        for (b, name) in s.breakers.iter().enumerate() {
            let [ok, failed] = s.calls[b];
            let _ = writeln!(out, "callgate_dependency_calls_total{{dependency=\"{name}\",outcome=\"ok\"}} {ok}");
            let _ =
                writeln!(out, "callgate_dependency_calls_total{{dependency=\"{name}\",outcome=\"failed\"}} {failed}");
        }
        header(out, "callgate_dependency_latency_seconds", "histogram", "Latencies reported for a dependency.");
        for (b, h) in s.dependency_latency.iter().enumerate() {
            h.render(out, "callgate_dependency_latency_seconds", &format!("dependency=\"{}\"", s.breakers[b]));
        }
        header(
            out,
            "callgate_fallbacks_total",
            "counter",
            "Callers answered with the flow's fallback because a breaker was open.",
        );
        for (f, row) in s.fallbacks.iter().enumerate() {
            for (b, n) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "callgate_fallbacks_total{{flow=\"{}\",breaker=\"{}\"}} {n}",
                    s.flows[f], s.breakers[b]
                );
            }
        }
        header(out, "callgate_alert_firing", "gauge", "1 while the alert fires.");
        for (a, name) in s.alerts.iter().enumerate() {
            let _ = writeln!(out, "callgate_alert_firing{{alert=\"{name}\"}} {}", u8::from(s.firing[a]));
        }
        header(
            out,
            "callgate_alert_value",
            "gauge",
            "The value the alert's metric had at its last evaluation (NaN: no data).",
        );
        for (a, name) in s.alerts.iter().enumerate() {
            let v = s.value[a].map_or_else(|| "NaN".to_owned(), |v| v.to_string());
            let _ = writeln!(out, "callgate_alert_value{{alert=\"{name}\"}} {v}");
        }
        header(out, "callgate_alert_transitions_total", "counter", "Alerts fired and resolved.");
        for (a, name) in s.alerts.iter().enumerate() {
            let [fired, resolved] = s.alert_transitions[a];
            let _ = writeln!(out, "callgate_alert_transitions_total{{alert=\"{name}\",to=\"firing\"}} {fired}");
            let _ = writeln!(out, "callgate_alert_transitions_total{{alert=\"{name}\",to=\"resolved\"}} {resolved}");
        }
        header(
            out,
            "callgate_alert_notifications_failed_total",
            "counter",
            "Alert notifications (notify webhooks) that could not be delivered, by alert.",
        );
        for (a, name) in s.alerts.iter().enumerate() {
            let _ = writeln!(
                out,
                "callgate_alert_notifications_failed_total{{alert=\"{name}\"}} {}",
                s.actions[a][NOTIFY][1]
            );
        }
        header(
            out,
            "callgate_alert_actions_total",
            "counter",
            "Automatic responses run, by alert, action and outcome (ok, error).",
        );
        for (a, name) in s.alerts.iter().enumerate() {
            for (k, action) in ACTIONS.iter().enumerate() {
                let [ok, err] = s.actions[a][k];
                let _ = writeln!(
                    out,
                    "callgate_alert_actions_total{{alert=\"{name}\",action=\"{action}\",outcome=\"ok\"}} {ok}"
                );
                let _ = writeln!(
                    out,
                    "callgate_alert_actions_total{{alert=\"{name}\",action=\"{action}\",outcome=\"error\"}} {err}"
                );
            }
        }
    }
}
