//! Prometheus metrics, kept from the committed events (never read from the ledger).
//!
//! Label sets are bounded by the configuration: pools, classes and a fixed list of
//! outcomes. Histograms use explicit buckets chosen for voice calls: waits from half a
//! second to ten minutes, holds from ten seconds to two hours.

mod edges;
pub mod process;
mod vapi;

pub use edges::{EdgeMetrics, LATENCY_BUCKETS, SPILL_OUTCOMES};
pub use vapi::{VapiMetrics, MAX_ASSISTANTS, VAPI_LATENCY_BUCKETS};

use crate::Edge;

use callgate_backend::Names;
use callgate_core::{Event, PoolUnits, PoolView, TicketOutcome};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the wait-time histogram.
pub const WAIT_BUCKETS: &[f64] = &[0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Upper bounds (seconds) of the decision and journal commit histograms: a decision is
/// a lock, a ledger step and a group commit (an fsync, about a millisecond on an SSD, up
/// to tens on a busy disk); above a second something is wrong.
pub const DECISION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Upper bounds (seconds) of the hold-time histogram.
pub const HOLD_BUCKETS: &[f64] = &[10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 3600.0, 7200.0];

#[derive(Clone, Debug)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Histogram { buckets, counts: vec![0; buckets.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Clone, Debug, Default)]
struct PoolGauges {
    limit: u32,
    cap: u32,
    used: u64,
    /// [class]
    used_by_class: Vec<u64>,
    waiting: u64,
}

/// A pool gauge: name, help, and how to read it.
type Gauge = (&'static str, &'static str, fn(&PoolGauges) -> u64);
/// A counter table: name, help, label name, label values, and counts [pool][class][value].
type Table<'a, const N: usize> =
    (&'static str, &'static str, &'static str, &'static [&'static str], &'a Vec<Vec<[u64; N]>>);

/// Decision outcomes counted per pool and class.
const OUTCOMES: [&str; 3] = ["granted", "queued", "rejected"];
const REASONS: [&str; 3] = ["capacity", "queue_full", "never_fits"];
const TICKET_ENDS: [&str; 4] = ["granted", "cancelled", "timed_out", "never_fits"];
const LEASE_ENDS: [&str; 2] = ["released", "expired"];

struct State {
    names: Names,
    pools: Vec<PoolGauges>,
    /// [pool][class][outcome]
    decisions: Vec<Vec<[u64; 3]>>,
    rejections: Vec<Vec<[u64; 3]>>,
    ticket_ends: Vec<Vec<[u64; 4]>>,
    lease_ends: Vec<Vec<[u64; 2]>>,
    /// [pool][class]
    wait: Vec<Vec<Histogram>>,
    /// [pool]
    hold: Vec<Histogram>,
    events: u64,
}

/// The metrics registry.
pub struct Metrics {
    state: Mutex<State>,
    /// [edge][outcome]: time from arrival at the governor to the durable answer.
    decision_seconds: Mutex<Vec<[Histogram; 3]>>,
    /// Webhooks, overflow, callbacks, reconciliation: counted by the edges.
    pub edges: EdgeMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Starts from the pools as restored (before any event is consumed).
    pub fn new(names: Names, pools: &[PoolView]) -> Self {
        let np = names.pools.len();
        let nc = names.classes.len();
        let state = State {
            pools: pools
                .iter()
                .map(|p| PoolGauges {
                    limit: p.limit,
                    cap: p.cap,
                    used: p.used,
                    used_by_class: (0..nc).map(|c| p.used_by_class.get(c).copied().unwrap_or(0)).collect(),
                    waiting: u64::from(p.waiting),
                })
                .collect(),
            decisions: vec![vec![[0; 3]; nc]; np],
            rejections: vec![vec![[0; 3]; nc]; np],
            ticket_ends: vec![vec![[0; 4]; nc]; np],
            lease_ends: vec![vec![[0; 2]; nc]; np],
            wait: vec![vec![Histogram::new(WAIT_BUCKETS); nc]; np],
            hold: vec![Histogram::new(HOLD_BUCKETS); np],
            events: 0,
            names,
        };
        let decision_seconds = Edge::ALL.iter().map(|_| std::array::from_fn(|_| Histogram::new(DECISION_BUCKETS)));
        Metrics {
            state: Mutex::new(state),
            decision_seconds: Mutex::new(decision_seconds.collect()),
            edges: EdgeMetrics::new([]),
        }
    }

    /// The ledger's names from now on (a configuration reload, which keeps the pools and
    /// classes: only flow names can move). Counters keep counting.
    pub fn rename(&self, names: Names) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.names.pools == names.pools && st.names.classes == names.classes {
            st.names = names;
        }
    }

    /// The same, with the edge metrics of these providers started at zero.
    pub fn with_providers<'a>(names: Names, pools: &[PoolView], providers: impl IntoIterator<Item = &'a str>) -> Self {
        Metrics { edges: EdgeMetrics::new(providers), ..Metrics::new(names, pools) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts committed events.
    pub fn observe(&self, events: &[Event]) {
        let mut s = self.lock();
        for e in events {
            s.events += 1;
            s.observe(e);
        }
    }

    /// A decision (`granted`, `queued`, `rejected`) of a request that came through
    /// `edge` was answered durably `seconds` after it arrived.
    pub fn decision_latency(&self, edge: Edge, outcome: &str, seconds: f64) {
        let (Some(e), Some(o)) =
            (Edge::ALL.iter().position(|x| *x == edge), OUTCOMES.iter().position(|x| *x == outcome))
        else {
            return;
        };
        let mut d = self.decision_seconds.lock().unwrap_or_else(|p| p.into_inner());
        d[e][o].observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        render_build_info(&mut out);
        self.lock().render(&mut out);
        let name = "callgate_decision_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time from a request's arrival at the governor to its durable answer, by edge and outcome.",
        );
        {
            let d = self.decision_seconds.lock().unwrap_or_else(|p| p.into_inner());
            for (e, row) in Edge::ALL.iter().zip(d.iter()) {
                for (o, h) in OUTCOMES.iter().zip(row) {
                    h.render(&mut out, name, &format!("edge=\"{}\",outcome=\"{o}\"", e.as_str()));
                }
            }
        }
        self.edges.render(&mut out);
        process::render(&mut out);
        out
    }
}

impl State {
    fn each_pool(pools: &[PoolUnits], mut f: impl FnMut(usize, u32)) {
        for pu in pools {
            f(pu.pool.index(), pu.units);
        }
    }

    fn observe(&mut self, e: &Event) {
        match e {
            Event::Granted { lease, from_ticket } => {
                let c = lease.class.index();
                let waited = from_ticket.map_or(0, |(_, w)| w) as f64 / 1000.0;
                Self::each_pool(&lease.pools, |p, u| {
                    self.pools[p].used += u64::from(u);
                    self.pools[p].used_by_class[c] += u64::from(u);
                    self.wait[p][c].observe(waited);
                    match from_ticket {
                        Some(_) => {
                            self.pools[p].waiting = self.pools[p].waiting.saturating_sub(1);
                            self.ticket_ends[p][c][0] += 1;
                        }
                        None => self.decisions[p][c][0] += 1,
                    }
                });
            }
            Event::Queued { ticket, .. } => {
                let c = ticket.class.index();
                Self::each_pool(&ticket.pools, |p, _| {
                    self.pools[p].waiting += 1;
                    self.decisions[p][c][1] += 1;
                });
            }
            Event::Rejected { class, pools, reason, .. } => {
                let c = class.index();
                let r = REASONS.iter().position(|x| *x == reason.as_str()).unwrap_or(0);
                Self::each_pool(pools, |p, _| {
                    self.decisions[p][c][2] += 1;
                    self.rejections[p][c][r] += 1;
                });
            }
            Event::Released { lease, at } | Event::Expired { lease, at } => {
                let c = lease.class.index();
                let how = usize::from(matches!(e, Event::Expired { .. }));
                let held = at.saturating_sub(lease.granted_at) as f64 / 1000.0;
                Self::each_pool(&lease.pools, |p, u| {
                    self.pools[p].used = self.pools[p].used.saturating_sub(u64::from(u));
                    let by_class = &mut self.pools[p].used_by_class[c];
                    *by_class = by_class.saturating_sub(u64::from(u));
                    self.lease_ends[p][c][how] += 1;
                    self.hold[p].observe(held);
                });
            }
            Event::TicketEnded { ticket, outcome, .. } => {
                let c = ticket.class.index();
                let o = match outcome {
                    TicketOutcome::Cancelled => 1,
                    TicketOutcome::NeverFits => 3,
                    TicketOutcome::TimedOut | TicketOutcome::Granted(_) => 2,
                };
                Self::each_pool(&ticket.pools, |p, _| {
                    self.pools[p].waiting = self.pools[p].waiting.saturating_sub(1);
                    self.ticket_ends[p][c][o] += 1;
                });
            }
            Event::LimitChanged { pool, limit, cap, .. } => {
                let g = &mut self.pools[pool.index()];
                g.limit = *limit;
                g.cap = *cap;
            }
            Event::Renewed { .. } => {}
        }
    }

    fn render(&self, out: &mut String) {
        let n = &self.names;
        let gauges: [Gauge; 4] = [
            ("callgate_pool_limit", "Configured limit of the pool (units).", |g| u64::from(g.limit)),
            ("callgate_pool_cap", "Effective cap of the pool (units), at most the limit.", |g| u64::from(g.cap)),
            ("callgate_pool_used", "Units held by live leases.", |g| g.used),
            ("callgate_pool_waiting", "Tickets waiting for the pool.", |g| g.waiting),
        ];
        for (name, help, get) in gauges {
            header(out, name, "gauge", help);
            for (i, g) in self.pools.iter().enumerate() {
                let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", n.pools[i], get(g));
            }
        }
        let name = "callgate_pool_used_units";
        header(out, name, "gauge", "Units held by live leases, by pool and class (sums to callgate_pool_used).");
        for (i, g) in self.pools.iter().enumerate() {
            for (c, units) in g.used_by_class.iter().enumerate() {
                let _ = writeln!(out, "{name}{{pool=\"{}\",class=\"{}\"}} {units}", n.pools[i], n.classes[c]);
            }
        }
        render_table(
            out,
            n,
            (
                "callgate_decisions_total",
                "Admission decisions on arrival, by pool, class and outcome.",
                "outcome",
                &OUTCOMES,
                &self.decisions,
            ),
        );
        render_table(
            out,
            n,
            (
                "callgate_tickets_ended_total",
                "Waiting tickets that ended, by pool, class and outcome.",
                "outcome",
                &TICKET_ENDS,
                &self.ticket_ends,
            ),
        );
        render_table(
            out,
            n,
            (
                "callgate_rejections_total",
                "Rejected requests, by pool, class and reason.",
                "reason",
                &REASONS,
                &self.rejections,
            ),
        );
        render_table(
            out,
            n,
            (
                "callgate_leases_ended_total",
                "Leases that ended, by pool, class and how.",
                "how",
                &LEASE_ENDS,
                &self.lease_ends,
            ),
        );
        let name = "callgate_wait_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from arrival to grant (0 for immediate grants).\n# TYPE {name} histogram"
        );
        for (p, row) in self.wait.iter().enumerate() {
            for (c, h) in row.iter().enumerate() {
                h.render(out, name, &format!("pool=\"{}\",class=\"{}\"", n.pools[p], n.classes[c]));
            }
        }
        let name = "callgate_hold_seconds";
        let _ = writeln!(out, "# HELP {name} How long leases were held.\n# TYPE {name} histogram");
        for (p, h) in self.hold.iter().enumerate() {
            h.render(out, name, &format!("pool=\"{}\"", n.pools[p]));
        }
        let _ = writeln!(
            out,
            "# HELP callgate_events_total Ledger events committed to the journal.\n# TYPE callgate_events_total counter\ncallgate_events_total {}",
            self.events
        );
    }
}

/// `callgate_build_info`: always 1, its labels say what is running. `git_sha` and
/// `rustc` are set only when the build was given `CALLGATE_GIT_SHA` / `CALLGATE_RUSTC`
/// in its environment (the Dockerfile passes them); there is no build script, so a build
/// outside a git checkout works the same.
pub fn render_build_info(out: &mut String) {
    header(out, "callgate_build_info", "gauge", "Always 1; the labels say which build is running.");
    let mut labels = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    for (label, value) in [("git_sha", option_env!("CALLGATE_GIT_SHA")), ("rustc", option_env!("CALLGATE_RUSTC"))] {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            let _ = write!(labels, ",{label}=\"{}\"", escape_label(v));
        }
    }
    let _ = writeln!(out, "callgate_build_info{{{labels}}} 1");
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `callgate_journal_commit_seconds`: how long each group commit (one transaction and
/// its fsync) took, from the journal's own counts.
pub fn render_commit_seconds(out: &mut String, times: &callgate_backend::CommitTimes) {
    let name = "callgate_journal_commit_seconds";
    header(out, name, "histogram", "Time of one journal group commit (a transaction and its fsync).");
    let snap = times.snapshot();
    for (b, c) in callgate_backend::COMMIT_BUCKETS.iter().zip(&snap.counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snap.count);
    let _ = writeln!(out, "{name}_sum {}", snap.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", snap.count);
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A counter family by pool, class and one more label with `N` values.
fn render_table<const N: usize>(out: &mut String, n: &Names, (name, help, label, values, table): Table<'_, N>) {
    header(out, name, "counter", help);
    for (p, row) in table.iter().enumerate() {
        for (c, counts) in row.iter().enumerate() {
            for (v, count) in values.iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "{name}{{pool=\"{}\",class=\"{}\",{label}=\"{v}\"}} {count}",
                    n.pools[p], n.classes[c]
                );
            }
        }
    }
}

/// `callgate_cluster_duties_held` (cluster mode only): 1 on the node that runs the
/// singleton duties now, 0 on the others.
pub fn render_duties_held(out: &mut String, held: bool) {
    let _ = writeln!(
        out,
        "# HELP callgate_cluster_duties_held Whether this node runs the cluster's singleton duties (expiry sweeps, reconciliation, alerts)."
    );
    let _ = writeln!(out, "# TYPE callgate_cluster_duties_held gauge");
    let _ = writeln!(out, "callgate_cluster_duties_held {}", u8::from(held));
}

/// `callgate_cluster_events_held` (cluster mode only): how many entries of the cluster's
/// event stream this node read and holds back from its metrics and live events until the
/// node that made them marks them durable in its PostgreSQL journal (usually a few; a
/// number that stays up says a node cannot commit or mark).
pub fn render_events_held(out: &mut String, held: usize) {
    let _ = writeln!(
        out,
        "# HELP callgate_cluster_events_held Other nodes' events read but not shown yet: their node has not marked them durable."
    );
    let _ = writeln!(out, "# TYPE callgate_cluster_events_held gauge");
    let _ = writeln!(out, "callgate_cluster_events_held {held}");
}

/// `callgate_journal_up`: 1 while the journal commits (admission can be durable), 0
/// while commits fail or a background component died (admission is stopped, `/healthz`
/// answers 503). In cluster mode: while the shared ledger in Redis answers. The other
/// metrics come from committed events, so while it is 0 they show the last durable state.
pub fn render_journal_up(out: &mut String, up: bool) {
    let _ = writeln!(out, "# HELP callgate_journal_up Whether the journal commits (1) or admission is stopped (0).");
    let _ = writeln!(out, "# TYPE callgate_journal_up gauge");
    let _ = writeln!(out, "callgate_journal_up {}", u8::from(up));
}
