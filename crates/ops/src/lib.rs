// Long file: the operating layer's state (breakers, adaptive caps, alerts, figures) behind one lock.
//! Operating under load: adaptive caps, circuit breakers, alerts with automatic responses,
//! and the figures the live page shows.
//!
//! [`Ops`] is owned by the governor, which consults it where a decision needs it (the
//! breaker gate before an acquire, the adaptive cap after a sample, the runtime overflow
//! of a flow in a 429 body). Everything it learns arrives one way: committed ledger events
//! ([`Ops::observe`], like the metrics), samples reported through the API, and the clock.
//! What it decides outside the ledger (a breaker opened, an alert fired) becomes an
//! [`OpsEvent`] for the same consumers as ledger events: the metrics and `/v1/events`.
//! Cap changes are the governor's adaptive cap source (`callgate_governor`'s `caps.rs`), applied with
//! `Ledger::set_cap`, so they are ordinary `limit_changed` events.
//!
//! The decisions are `callgate_policy`'s, which the simulator drives too: adaptive caps
//! per pool, breakers per dependency (and the flows that depend on them), the last
//! minute's figures, and alert rules with the commands of their actions. This crate is
//! their shell: locks, events, metrics, webhooks, the event bus and the wall clock.
//! Module map: `breakers` (the API's view), `alerts` (runtime rules, views, undo),
//! `stats` (the policy's figures), `events` and `metrics`.
//! Campaigns are paused and resumed with commands on the event bus ([`callgate_events::bus::Bus`]),
//! which the dialer serves.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod alerts;
mod breakers;
pub mod events;
pub mod metrics;
pub use callgate_policy::stats;

pub use breakers::BreakerView;
pub use callgate_events::bus::CampaignInfo;
pub use events::OpsEvent;

use alerts::{AlertChange, AlertView, Condition, Rule, Undo};
use callgate_config::{Config, Env, Overflow};
use callgate_core::adaptive::{CapChange, Sample};
use callgate_core::breaker::{BreakerState, Transition};
use callgate_core::{Event, PoolUnits};
use callgate_events::live::Live;
use callgate_policy::adaptive::AdaptiveCaps;
use callgate_policy::alerts::Command;
use callgate_policy::breakers::{cause_text, Breakers, Down};
use metrics::OpsMetrics;
use serde::Serialize;
use stats::{FiguresView, Stats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a notification may take before it counts as failed: long enough for a slow
/// chat service, short enough that a dead one does not pile up requests.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A flow as the operating layer needs it.
#[derive(Debug)]
struct FlowInfo {
    name: Arc<str>,
    class: Arc<str>,
    /// `(pool index, units)`.
    pools: Vec<(usize, u32)>,
    overflow: Vec<Overflow>,
    fallback: Vec<Overflow>,
}

/// A flow's caller that may not pass: a dependency is down.
#[derive(Clone, Debug)]
pub struct Blocked {
    /// The open breaker.
    pub dependency: Arc<str>,
    /// The flow's fallback (else its overflow), first step (boxed: a step is large, and
    /// this travels in the `Err` of every gate).
    pub overflow: Option<Box<Overflow>>,
    /// When the breaker may let a probe through, from now (ms; at least 1 s).
    pub retry_after_ms: u64,
}

/// A runtime overflow set by an alert, with the generation that set it.
type Override = Option<(u64, Vec<Overflow>)>;

/// Which of a flow's overflow chains a rejected caller walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainKind {
    /// The flow's configured `overflow`.
    Configured,
    /// The flow's `fallback`: a dependency's breaker is open.
    Fallback,
    /// An alert's `set_overflow`, while it fires.
    Alert,
}

impl ChainKind {
    /// The name in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::Configured => "overflow",
            ChainKind::Fallback => "fallback",
            ChainKind::Alert => "alert",
        }
    }

    /// From [`ChainKind::as_str`].
    pub fn parse(s: &str) -> Option<ChainKind> {
        Some(match s {
            "overflow" => ChainKind::Configured,
            "fallback" => ChainKind::Fallback,
            "alert" => ChainKind::Alert,
            _ => return None,
        })
    }
}

/// The operating layer of one server.
pub struct Ops {
    pools: Vec<Arc<str>>,
    flows: Vec<FlowInfo>,
    adaptive: Mutex<AdaptiveCaps>,
    breakers: Mutex<Breakers>,
    stats: Mutex<Stats>,
    rules: Mutex<Vec<Rule>>,
    /// [flow] → the overflow an alert set.
    overrides: Mutex<Vec<Override>>,
    /// [flow] → the overflow chain a `[[schedules]]` entry puts in place of the configured
    /// one while it is active (set by the server's schedule ticker).
    scheduled: Mutex<Vec<Option<Vec<Overflow>>>>,
    /// [pool] → the lines the inbound forecast needs per 15-minute interval ahead
    /// (interval start in Unix ms, lines), set by the server's forecast plans; read by
    /// `forecast_shortfall` alerts.
    forecast_need: Mutex<Vec<Vec<(u64, u32)>>>,
    generation: AtomicU64,
    /// [breaker] → campaigns it paused.
    paused_by_breaker: Arc<Mutex<Vec<Vec<String>>>>,
    /// Where campaign commands go (`pause_campaigns`, breakers): the dialer listens.
    bus: callgate_events::bus::Bus,
    metrics: Arc<OpsMetrics>,
    sink: Sink,
    http: reqwest::Client,
    /// One alert evaluation at a time (the ticker's and any explicit one), so actions of
    /// one evaluation are done before the next looks at the alerts.
    evaluating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").finish_non_exhaustive()
    }
}

/// `GET /v1/stats`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    /// When (Unix ms).
    pub at_ms: u64,
    /// Per pool.
    pub pools: Vec<FiguresView>,
    /// Per flow.
    pub flows: Vec<FiguresView>,
    /// The adaptive pools: `{ pool, algorithm, min, max, cap }`.
    #[schema(value_type = Vec<Object>)]
    pub adaptive: Vec<serde_json::Value>,
}

impl Ops {
    /// Nothing configured: no adaptive pool, no breaker, no alert (a governor built
    /// without a configuration, in tests).
    pub fn empty(pools: Vec<Arc<str>>, flows: Vec<Arc<str>>) -> Ops {
        let np = pools.len();
        let flows: Vec<FlowInfo> = flows
            .into_iter()
            .map(|name| FlowInfo {
                name,
                class: Arc::from(""),
                pools: Vec::new(),
                overflow: Vec::new(),
                fallback: Vec::new(),
            })
            .collect();
        let nf = flows.len();
        let metrics = Arc::new(OpsMetrics::new(
            pools.iter().map(|p| p.to_string()).collect(),
            vec![false; np],
            flows.iter().map(|f| f.name.to_string()).collect(),
            Vec::new(),
            Vec::new(),
        ));
        Ops {
            sink: Sink { metrics: metrics.clone(), live: Live::default(), notices: Default::default() },
            metrics,
            pools,
            adaptive: Mutex::new(AdaptiveCaps::default()),
            breakers: Mutex::new(Breakers::default()),
            stats: Mutex::new(Stats::new(np, nf)),
            rules: Mutex::new(Vec::new()),
            overrides: Mutex::new(vec![None; nf]),
            scheduled: Mutex::new(vec![None; nf]),
            forecast_need: Mutex::new(vec![Vec::new(); np]),
            generation: AtomicU64::new(0),
            paused_by_breaker: Arc::new(Mutex::new(Vec::new())),
            bus: callgate_events::bus::Bus::without_dialer(),
            http: reqwest::Client::new(),
            evaluating: tokio::sync::Mutex::new(()),
            flows,
        }
    }

    /// The operating layer a configuration describes. `limits` are the pools' current
    /// limits (after a restore), in config order; campaign commands go on `bus`; `env`
    /// resolves notify `url_env`.
    pub fn new(
        config: &Config,
        limits: &[u32],
        live: Live,
        bus: callgate_events::bus::Bus,
        env: &dyn Env,
    ) -> Result<Ops, String> {
        let pools: Vec<Arc<str>> = config.pools.iter().map(|p| Arc::from(p.name.as_str())).collect();
        let pool_index = |name: &str| config.pools.iter().position(|p| p.name == name);
        let flows: Vec<FlowInfo> = config
            .flows
            .iter()
            .map(|f| FlowInfo {
                name: Arc::from(f.name.as_str()),
                class: Arc::from(f.class.as_str()),
                pools: f.pools.iter().filter_map(|fp| Some((pool_index(&fp.pool)?, fp.units))).collect(),
                overflow: f.overflow.clone(),
                fallback: f.fallback.clone(),
            })
            .collect();
        let adaptive = AdaptiveCaps::new(
            config
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| (p.adaptive.clone(), limits.get(i).copied().unwrap_or(p.limit))),
        );
        let breakers =
            Breakers::new(&config.breakers, config.flows.iter().map(|f| (f.name.as_str(), &f.depends_on[..])));
        for problem in adaptive.problems() {
            tracing::warn!(error = %problem, "Adaptive cap disabled: its settings do not fit the pool's limit");
        }
        for problem in breakers.problems() {
            tracing::warn!(error = %problem, "Breaker disabled: invalid settings");
        }
        let mut rules = Vec::new();
        for a in &config.alerts {
            let Some(target) = a.target() else { continue };
            let watched = callgate_policy::alerts::watched(config, &target);
            let mut urls = Vec::new();
            for action in &a.actions {
                urls.push(match (&action.url, &action.url_env) {
                    (Some(u), _) => Some(u.clone()),
                    (None, Some(var)) => Some(env.var(var).ok_or_else(|| {
                        format!("alert `{}`: the environment variable `{var}` (notify url_env) is not set", a.name)
                    })?),
                    (None, None) => None,
                });
            }
            rules.push(Rule {
                name: Arc::from(a.name.as_str()),
                config: a.clone(),
                target,
                watched,
                condition: Condition::of(a),
                urls,
                state: Default::default(),
                value: None,
                undo: Vec::new(),
            });
        }
        let metrics = Arc::new(OpsMetrics::new(
            pools.iter().map(|p| p.to_string()).collect(),
            (0..pools.len()).map(|p| adaptive.is_adaptive(p)).collect(),
            flows.iter().map(|f| f.name.to_string()).collect(),
            breakers.names(),
            rules.iter().map(|r| r.name.to_string()).collect(),
        ));
        let nb = breakers.names().len();
        Ok(Ops {
            stats: Mutex::new(Stats::new(pools.len(), flows.len())),
            overrides: Mutex::new(vec![None; flows.len()]),
            scheduled: Mutex::new(vec![None; flows.len()]),
            forecast_need: Mutex::new(vec![Vec::new(); pools.len()]),
            pools,
            adaptive: Mutex::new(adaptive),
            breakers: Mutex::new(breakers),
            rules: Mutex::new(rules),
            generation: AtomicU64::new(0),
            paused_by_breaker: Arc::new(Mutex::new(vec![Vec::new(); nb])),
            bus,
            sink: Sink { metrics: metrics.clone(), live, notices: Default::default() },
            metrics,
            http: reqwest::Client::builder().timeout(NOTIFY_TIMEOUT).build().map_err(|e| e.to_string())?,
            evaluating: tokio::sync::Mutex::new(()),
            flows,
        })
    }

    /// Sends an ops event to its consumers.
    pub fn emit(&self, e: OpsEvent) {
        self.sink.emit(e);
    }

    /// Consumes committed ledger events (call this where the metrics consume them).
    pub fn observe(&self, events: &[Event]) {
        lock(&self.stats).observe(events);
    }

    /// The Prometheus text of the operating layer.
    pub fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out);
    }

    // ----- adaptive ----------------------------------------------------------------

    /// The cap the adaptive limit of pool `p` starts at, when it is below `limit`.
    pub fn initial_cap(&self, p: usize, limit: u32) -> Option<u32> {
        lock(&self.adaptive).cap(p).filter(|c| *c < limit)
    }

    /// Feeds a sample of pool `p`; the change to apply to the ledger, if the cap moved.
    pub fn adaptive_sample(&self, p: usize, now: u64, sample: Sample) -> Option<CapChange> {
        let mut a = lock(&self.adaptive);
        if !a.is_adaptive(p) {
            return None;
        }
        self.metrics.adaptive_sample(p, sample.dropped);
        let change = a.on_sample(p, now, sample);
        if let Some(c) = change {
            self.metrics.cap_changed(p, c.to > c.from);
            tracing::info!(pool = %self.pools[p], from = c.from, to = c.to, "Adaptive cap moved");
        }
        change
    }

    /// Pool `p`'s limit changed at runtime; the change to the cap, if any.
    pub fn limit_changed(&self, p: usize, limit: u32, now: u64) -> Option<CapChange> {
        let change = lock(&self.adaptive).on_limit(p, limit, now);
        if let Some(c) = change {
            self.metrics.cap_changed(p, c.to > c.from);
        }
        change
    }

    /// Where pool `p`'s adaptive cap takes its latencies from (and with `vapi`, which
    /// one), if it is adaptive.
    pub fn adaptive_source(&self, p: usize) -> Option<(callgate_config::AdaptiveSource, callgate_config::VapiMetric)> {
        lock(&self.adaptive).source(p)
    }

    /// Whether pool `p` has an adaptive cap.
    pub fn is_adaptive(&self, p: usize) -> bool {
        lock(&self.adaptive).is_adaptive(p)
    }

    /// A provider refused a call of pool `p` for concurrency.
    pub fn count_refusal(&self, p: usize) {
        self.metrics.refusal(p);
    }

    // ----- breakers ------------------------------------------------------------------

    /// The index of dependency `name`.
    pub fn dependency(&self, name: &str) -> Option<usize> {
        lock(&self.breakers).index(name)
    }

    /// The dependencies of flow `f`.
    pub fn depends(&self, f: usize) -> Vec<usize> {
        lock(&self.breakers).depends(f).to_vec()
    }

    /// Whether flow `f` depends on anything behind a breaker (without, [`Ops::gate`] always
    /// passes and changes nothing).
    pub fn guarded(&self, f: usize) -> bool {
        !lock(&self.breakers).depends(f).is_empty()
    }

    /// Does a caller of flow `f` pass its breakers at `now`?
    pub fn gate(&self, f: usize, now: u64) -> Result<(), Blocked> {
        let (answer, transitions) = lock(&self.breakers).pass(f, now);
        for (b, t) in transitions {
            self.breaker_changed(b, t);
        }
        let Err(Down { breaker, until }) = answer else { return Ok(()) };
        let dependency = lock(&self.breakers).name(breaker).clone();
        let overflow = match self.flows.get(f).and_then(|fl| fl.fallback.first()) {
            Some(s) => Some(Box::new(s.clone())),
            None => self.overflow_chain_of(f).into_iter().next().map(Box::new),
        };
        let retry_after_ms = until.map_or(1_000, |u| u.saturating_sub(now)).max(1_000);
        Err(Blocked { dependency, overflow, retry_after_ms })
    }

    /// A caller of flow `f` was answered with its fallback.
    pub fn fallback_answered(&self, f: usize, dependency: &Arc<str>, now: u64) {
        let flow = &self.flows[f];
        let pools: Vec<PoolUnits> =
            flow.pools.iter().map(|&(p, units)| PoolUnits { pool: callgate_core::PoolId(p as u32), units }).collect();
        lock(&self.stats).fallback(f, &pools, now);
        self.emit(OpsEvent::Fallback {
            flow: flow.name.clone(),
            dependency: dependency.clone(),
            class: flow.class.clone(),
            pools: flow.pools.iter().map(|&(p, u)| (self.pools[p].clone(), u)).collect(),
            at: now,
        });
    }

    /// Records an outcome of dependency `b`.
    pub fn dependency_outcome(&self, b: usize, now: u64, ok: bool, latency_ms: Option<f64>) {
        self.metrics.dependency_call(b, ok, latency_ms);
        let t = lock(&self.breakers).record(b, now, ok, latency_ms.map(|l| l.round() as u64));
        if let Some(t) = t {
            self.breaker_changed(b, t);
        }
    }

    /// Applies what time changes (breakers turning half-open).
    pub fn advance(&self, now: u64) {
        let transitions = lock(&self.breakers).advance(now);
        for (b, t) in transitions {
            self.breaker_changed(b, t);
        }
        lock(&self.stats).prune(now);
    }

    fn breaker_changed(&self, b: usize, t: Transition) {
        let name = lock(&self.breakers).name(b).clone();
        let until_ms = match t.to {
            BreakerState::Open { until } => Some(until),
            _ => None,
        };
        let cause = cause_text(&t.cause);
        match t.to {
            BreakerState::Open { .. } => tracing::warn!(breaker = %name, cause = %cause, "Breaker opened"),
            _ => tracing::info!(breaker = %name, state = t.to.as_str(), cause = %cause, "Breaker changed"),
        }
        self.emit(OpsEvent::BreakerChanged {
            breaker: name.clone(),
            from: t.from.as_str(),
            to: t.to.as_str(),
            cause,
            until_ms,
            at: t.at,
        });
        self.campaigns_follow_breaker(b, &name, &t);
    }

    /// Campaigns whose flow depends on a breaker pause when it opens and resume when it
    /// turns half-open or closes ([`callgate_policy::breakers::campaigns_do`]).
    fn campaigns_follow_breaker(&self, b: usize, name: &Arc<str>, t: &Transition) {
        let opened = match callgate_policy::breakers::campaigns_do(t) {
            callgate_policy::breakers::CampaignsDo::Pause => true,
            callgate_policy::breakers::CampaignsDo::Resume => false,
            callgate_policy::breakers::CampaignsDo::Nothing => return,
        };
        let bus = self.bus.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let flows: Vec<Arc<str>> = self
            .flows
            .iter()
            .enumerate()
            .filter(|(f, _)| self.depends(*f).contains(&b))
            .map(|(_, fl)| fl.name.clone())
            .collect();
        let reason = format!("breaker `{name}` {}", if opened { "opened" } else { t.to.as_str() });
        let paused = self.paused_by_breaker.clone();
        runtime.spawn(async move {
            if opened {
                for c in bus.campaigns().await.unwrap_or_default() {
                    if c.running && flows.iter().any(|f| **f == c.flow) && bus.pause_campaign(&c.name, &reason).await {
                        tracing::info!(campaign = %c.name, reason = %reason, "Campaign paused");
                        if let Some(list) = lock(&paused).get_mut(b) {
                            list.push(c.name);
                        }
                    }
                }
            } else {
                let names = lock(&paused).get_mut(b).map(std::mem::take).unwrap_or_default();
                for c in names {
                    if bus.resume_campaign(&c, &reason).await {
                        tracing::info!(campaign = %c, reason = %reason, "Campaign resumed");
                    }
                }
            }
        });
    }

    /// Every breaker's state.
    pub fn breakers(&self, now: u64) -> Vec<BreakerView> {
        lock(&self.breakers).statuses(now).into_iter().map(BreakerView::from).collect()
    }

    /// Whether any dependency of flow `f` is open at `now`.
    pub fn dependency_down(&self, f: usize, now: u64) -> bool {
        let b = lock(&self.breakers);
        b.depends(f).iter().any(|&d| b.is_open(d, now))
    }

    // ----- overflow ------------------------------------------------------------------

    /// The overflow an alert set for flow `f`, first step.
    pub fn overflow_override(&self, f: usize) -> Option<Overflow> {
        let o = lock(&self.overrides);
        o.get(f)?.as_ref()?.1.first().cloned()
    }

    fn overflow_chain_of(&self, f: usize) -> Vec<Overflow> {
        match lock(&self.overrides).get(f).cloned().flatten() {
            Some((_, chain)) => chain,
            None => self.configured_chain(f),
        }
    }

    /// Flow `f`'s configured chain as the schedules in force make it.
    fn configured_chain(&self, f: usize) -> Vec<Overflow> {
        match lock(&self.scheduled).get(f).cloned().flatten() {
            Some(chain) => chain,
            None => self.flows.get(f).map(|fl| fl.overflow.clone()).unwrap_or_default(),
        }
    }

    /// What the inbound forecast of `pool` needs: (interval start, lines) per 15-minute
    /// interval ahead, in order (an unknown pool is ignored). `forecast_shortfall` alerts
    /// compare it with the pool's cap.
    pub fn set_forecast_need(&self, pool: &str, steps: Vec<(u64, u32)>) {
        if let Some(p) = self.pools.iter().position(|n| &**n == pool) {
            if let Some(slot) = lock(&self.forecast_need).get_mut(p) {
                *slot = steps;
            }
        }
    }

    /// Puts in force the overflow chains the active `[[schedules]]` set, one entry per
    /// flow in config order (`None`: the flow's configured chain). A schedule's chain is
    /// what the flow is configured with while it is active: a breaker's fallback and an
    /// alert's `set_overflow` still come before it.
    pub fn set_scheduled_overflow(&self, chains: Vec<Option<Vec<Overflow>>>) {
        let mut s = lock(&self.scheduled);
        for (slot, chain) in s.iter_mut().zip(chains) {
            *slot = chain;
        }
    }

    /// The overflow chain that applies to flow `f`'s rejected callers now: its fallback
    /// while a dependency is down, else an alert's `set_overflow`, else the configured
    /// one. Provider edges walk this instead of the configured chain.
    pub fn overflow_chain(&self, f: usize, now: u64) -> Vec<Overflow> {
        self.chain_now(f, now, false).1
    }

    /// [`Ops::overflow_chain`] with the chain's kind. `blocked`: the caller was just
    /// turned away by a breaker (also a half-open one out of probes, which is not
    /// "open"), so the fallback applies whatever the breakers say a moment later.
    pub fn chain_now(&self, f: usize, now: u64, blocked: bool) -> (ChainKind, Vec<Overflow>) {
        if blocked || self.dependency_down(f, now) {
            if let Some(fl) = self.flows.get(f).filter(|fl| !fl.fallback.is_empty()) {
                return (ChainKind::Fallback, fl.fallback.clone());
            }
        }
        match lock(&self.overrides).get(f).cloned().flatten() {
            Some((_, chain)) => (ChainKind::Alert, chain),
            None => (ChainKind::Configured, self.configured_chain(f)),
        }
    }

    /// The chain of `kind` for flow `f` as it stands now, for an edge that knows only the
    /// kind a caller started on (an alert's chain that has since been cleared: the
    /// configured one; a flow without a fallback: the configured one).
    pub fn chain_of_kind(&self, f: usize, kind: ChainKind) -> Vec<Overflow> {
        let Some(fl) = self.flows.get(f) else { return Vec::new() };
        match kind {
            ChainKind::Fallback if !fl.fallback.is_empty() => fl.fallback.clone(),
            ChainKind::Alert => self.overflow_chain_of(f),
            _ => self.configured_chain(f),
        }
    }

    fn set_override(&self, f: usize, chain: Vec<Overflow>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(slot) = lock(&self.overrides).get_mut(f) {
            *slot = Some((generation, chain));
        }
        generation
    }

    fn clear_override(&self, f: usize, generation: u64) -> bool {
        let mut o = lock(&self.overrides);
        match o.get_mut(f) {
            Some(slot) if slot.as_ref().is_some_and(|(g, _)| *g == generation) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    // ----- samples and figures ---------------------------------------------------------

    /// A reported latency and/or outcome, for stats and metrics.
    pub fn sampled(&self, pools: &[usize], flow: Option<usize>, now: u64, latency_ms: Option<f64>, ok: Option<bool>) {
        if let Some(ms) = latency_ms {
            for &p in pools {
                self.metrics.pool_latency(p, ms);
            }
        }
        lock(&self.stats).sample(pools, flow, now, latency_ms, ok);
    }

    /// The pools and units of flow `f`.
    pub fn flow_pools(&self, f: usize) -> Vec<(usize, u32)> {
        self.flows.get(f).map(|fl| fl.pools.clone()).unwrap_or_default()
    }

    /// Last-minute figures of every pool and flow.
    pub fn stats(&self, now: u64) -> StatsView {
        let flows: Vec<Arc<str>> = self.flows.iter().map(|f| f.name.clone()).collect();
        let (pools, flows) = lock(&self.stats).views(&self.pools, &flows, now);
        let a = lock(&self.adaptive);
        let adaptive = (0..self.pools.len())
            .filter_map(|p| {
                let (algorithm, min, max) = a.describe(p)?;
                Some(serde_json::json!({
                    "pool": self.pools[p], "algorithm": algorithm, "min": min, "max": max, "cap": a.cap(p),
                }))
            })
            .collect();
        StatsView { at_ms: now, pools, flows, adaptive }
    }

    // ----- alerts ----------------------------------------------------------------------

    /// Whether any alert is configured.
    pub fn has_alerts(&self) -> bool {
        !lock(&self.rules).is_empty()
    }

    /// Every alert's state.
    pub fn alerts(&self) -> Vec<AlertView> {
        let notices = lock(&self.sink.notices).clone();
        lock(&self.rules)
            .iter()
            .map(|r| {
                let mut v = r.view();
                if let Some(n) = notices.get(&r.name) {
                    v.last_notification = Some(n.last.clone());
                    v.notifications_failed = n.failed;
                }
                v
            })
            .collect()
    }

    /// Held for one evaluation and its actions.
    pub async fn evaluation(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.evaluating.lock().await
    }

    /// Evaluates every alert at `now` against `gauges`; the alerts that fired or
    /// resolved, with the value that decided it.
    pub fn step_alerts(&self, now: u64, gauges: &Gauges) -> Vec<(usize, AlertChange, Option<f64>)> {
        let stats = lock(&self.stats);
        let need = lock(&self.forecast_need);
        let mut rules = lock(&self.rules);
        let mut out = Vec::new();
        for (i, rule) in rules.iter_mut().enumerate() {
            let value = rule
                .watched
                .as_ref()
                .and_then(|w| callgate_policy::alerts::value(&rule.config, w, gauges, &stats, &need, now));
            rule.value = value;
            self.metrics.alert_value(i, value);
            if let Some(change) = rule.state.step(&rule.condition, now, value) {
                out.push((i, change, value));
            }
        }
        out
    }

    /// Carries out what an alert's change calls for: the event, the notifications, the
    /// actions when it fired, their undo when it resolved (with `undo = true`).
    pub async fn act(&self, limits: &dyn PoolLimits, i: usize, change: AlertChange, value: Option<f64>, now: u64) {
        let firing = change == AlertChange::Fired;
        let (name, actions, urls, undo_wanted, text, event) = {
            let rules = lock(&self.rules);
            let r = &rules[i];
            let event = OpsEvent::Alert {
                alert: r.name.clone(),
                firing,
                target_kind: r.target.kind(),
                target: Arc::from(r.target.name()),
                metric: r.config.metric.as_str(),
                value,
                threshold: r.condition.threshold,
                at: now,
            };
            (
                r.name.clone(),
                callgate_policy::alerts::commands(&r.config.actions),
                r.urls.clone(),
                r.config.undo,
                alerts::notify_text(r, firing, value),
                event,
            )
        };
        if firing {
            tracing::warn!(alert = %name, value = ?value, "Alert fired");
        } else {
            tracing::info!(alert = %name, value = ?value, "Alert resolved");
        }
        // The event's JSON, with Slack's `text` and a plain `state`.
        let mut payload = event.to_json();
        payload["text"] = serde_json::Value::String(text);
        payload["state"] = serde_json::Value::String(if firing { "firing" } else { "resolved" }.into());
        self.emit(event);
        for command in &actions {
            if let Command::Notify { action } = command {
                if let Some(url) = urls.get(*action).cloned().flatten() {
                    self.notify(name.clone(), url, payload.clone(), !firing, now);
                }
            }
        }
        if firing {
            let mut undo = Vec::new();
            for action in &actions {
                if let Some(u) = self.run_action(limits, &name, action, now).await {
                    undo.push(u);
                }
            }
            if let Some(r) = lock(&self.rules).get_mut(i) {
                r.undo = undo;
            }
        } else {
            let undo = lock(&self.rules).get_mut(i).map(|r| std::mem::take(&mut r.undo)).unwrap_or_default();
            if undo_wanted {
                for u in undo.into_iter().rev() {
                    self.run_undo(limits, &name, u, now).await;
                }
            }
        }
    }

    /// Posts the alert's JSON (with a Slack-style `text`) in the background; the outcome
    /// becomes an `alert_action` event and a metric.
    fn notify(&self, alert: Arc<str>, url: String, payload: serde_json::Value, resolved: bool, now: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let http = self.http.clone();
        let sink = self.sink.clone();
        let span = tracing::info_span!("webhook", direction = "outbound", kind = "notify", alert = %alert);
        runtime.spawn(tracing::Instrument::instrument(
            async move {
                let result = match http.post(&url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => Ok(format!("posted ({})", r.status().as_u16())),
                    Ok(r) => Err(format!("the webhook answered {}", r.status().as_u16())),
                    Err(e) => Err(format!("cannot post: {}", without_url(&e))),
                };
                sink.action_done(&alert, "notify", resolved, result, now);
            },
            span,
        ));
    }

    /// Carries out one command of a firing alert; what undoes it, if anything.
    async fn run_action(&self, limits: &dyn PoolLimits, alert: &Arc<str>, command: &Command, now: u64) -> Option<Undo> {
        match command {
            Command::Notify { .. } => None,
            Command::SetOverflow { flow, chain } => {
                let Some(f) = self.flows.iter().position(|fl| &*fl.name == flow) else {
                    self.sink.action_done(alert, "set_overflow", false, Err(format!("no flow `{flow}`")), now);
                    return None;
                };
                let generation = self.set_override(f, chain.clone());
                let first = chain.first().map_or("none", |o| o.action.as_str());
                self.sink.action_done(
                    alert,
                    "set_overflow",
                    false,
                    Ok(format!("flow `{flow}` overflows to {first}")),
                    now,
                );
                Some(Undo::Overflow { flow: f, generation })
            }
            Command::SetLimit { pool, limit } => {
                let (pool, limit) = (pool.clone(), *limit);
                let before = match limits.limit(&pool) {
                    Ok(limit) => limit,
                    Err(e) => {
                        self.sink.action_done(alert, "set_limit", false, Err(e), now);
                        return None;
                    }
                };
                match limits.set_limit(&pool, limit).await {
                    Ok(_) => {
                        self.sink.action_done(
                            alert,
                            "set_limit",
                            false,
                            Ok(format!("pool `{pool}` limit {before} → {limit}")),
                            now,
                        );
                        Some(Undo::Limit { pool, before, set: limit })
                    }
                    Err(e) => {
                        self.sink.action_done(alert, "set_limit", false, Err(e), now);
                        None
                    }
                }
            }
            Command::PauseCampaigns { below } => {
                let below = *below;
                let Some(campaigns) = self.bus.campaigns().await else {
                    self.sink.action_done(alert, "pause_campaigns", false, Ok("no campaigns to pause".into()), now);
                    return None;
                };
                let reason = format!("alert `{alert}` fired");
                let mut paused = Vec::new();
                for c in campaigns {
                    if c.running && c.priority < below && self.bus.pause_campaign(&c.name, &reason).await {
                        paused.push(c.name);
                    }
                }
                let detail = if paused.is_empty() {
                    format!("no running campaign below priority {below}")
                } else {
                    format!("paused {}", paused.join(", "))
                };
                self.sink.action_done(alert, "pause_campaigns", false, Ok(detail), now);
                (!paused.is_empty()).then_some(Undo::Resume(paused))
            }
        }
    }

    /// Puts back what a firing alert changed, unless someone changed it since.
    async fn run_undo(&self, limits: &dyn PoolLimits, alert: &Arc<str>, undo: Undo, now: u64) {
        match undo {
            Undo::Overflow { flow, generation } => {
                let name = self.flows[flow].name.clone();
                let result = if self.clear_override(flow, generation) {
                    Ok(format!("flow `{name}` overflow restored"))
                } else {
                    Ok(format!("flow `{name}` overflow was changed since; left as it is"))
                };
                self.sink.action_done(alert, "set_overflow", true, result, now);
            }
            Undo::Limit { pool, before, set } => {
                let result = match limits.limit(&pool) {
                    Ok(now_limit) if now_limit != set => {
                        Ok(format!("pool `{pool}` limit was changed since (now {now_limit}); left as it is"))
                    }
                    Ok(_) => match limits.set_limit(&pool, before).await {
                        Ok(()) => Ok(format!("pool `{pool}` limit {set} → {before}")),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                self.sink.action_done(alert, "set_limit", true, result, now);
            }
            Undo::Resume(names) => {
                let reason = format!("alert `{alert}` resolved");
                let mut resumed = Vec::new();
                for c in &names {
                    if self.bus.resume_campaign(c, &reason).await {
                        resumed.push(c.clone());
                    }
                }
                self.sink.action_done(
                    alert,
                    "pause_campaigns",
                    true,
                    Ok(format!("resumed {}", resumed.join(", "))),
                    now,
                );
            }
        }
    }
}

/// Where ops events go: the metrics and the live stream. Cloned into background tasks.
#[derive(Clone, Debug)]
struct Sink {
    metrics: Arc<OpsMetrics>,
    live: Live,
    /// By alert: how its notifications went (for `GET /v1/alerts` and the live page).
    notices: Arc<Mutex<std::collections::BTreeMap<Arc<str>, Notices>>>,
}

/// How an alert's notifications went.
#[derive(Clone, Debug, Default)]
struct Notices {
    last: alerts::NotificationView,
    failed: u64,
}

impl Sink {
    fn emit(&self, e: OpsEvent) {
        self.metrics.observe(&e);
        self.live.publish_json(&e.to_json());
    }

    fn action_done(
        &self,
        alert: &Arc<str>,
        action: &'static str,
        undo: bool,
        result: Result<String, String>,
        now: u64,
    ) {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        if action == "notify" {
            let mut notices = lock(&self.notices);
            let n = notices.entry(alert.clone()).or_default();
            n.last = alerts::NotificationView { ok, detail: detail.clone(), at_ms: now };
            n.failed += u64::from(!ok);
        }
        if ok {
            tracing::info!(alert = %alert, action, undo, detail = %detail, "Alert action done");
        } else {
            tracing::warn!(alert = %alert, action, undo, detail = %detail, "Alert action failed");
        }
        self.emit(OpsEvent::AlertAction { alert: alert.clone(), action, undo, ok, detail, at: now });
    }
}

/// A reqwest error without the URL (a notify URL is a secret).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

/// What an alert's `set_limit` action changes outside the operating layer: pool limits,
/// durably. The governor is the one implementation; the operating layer names only this,
/// so it does not depend on the governor (which does depend on it).
pub trait PoolLimits: Send + Sync {
    /// The pool's limit now; why not, for people.
    fn limit(&self, pool: &str) -> Result<u32, String>;

    /// Sets the pool's limit, as `PUT /v1/pools/{name}` does; why not, for people.
    fn set_limit<'a>(&'a self, pool: &'a str, limit: u32) -> callgate_backend::BoxFuture<'a, Result<(), String>>;
}

/// What the alerts read from the ledger (through the governor) at one evaluation.
pub use callgate_policy::alerts::Gauges;

/// How often breakers look at the clock (an open breaker turns half-open within this of
/// its `open_for`).
const TICK: Duration = Duration::from_millis(250);
/// How often alerts are evaluated: their `for` is counted in whole evaluations, and no
/// alert needs a finer grain than a second.
const EVALUATE_EVERY: u32 = 4;

/// What the operating layer's clock drives: time passing for breakers and figures, and
/// the evaluation of alerts (the governor: it reads the gauges the alerts watch).
pub trait Ticked: Send + Sync + 'static {
    /// Time alone moved.
    fn ops_tick(&self);

    /// Evaluates every alert now and carries out what fired or resolved.
    fn evaluate_alerts(&self) -> callgate_backend::BoxFuture<'_, ()>;
}

/// Starts the operating layer's clock: breakers every 250 ms, alerts every second.
pub fn spawn_ticker(ticked: Arc<dyn Ticked>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut until_evaluation: u32 = 0;
        loop {
            every.tick().await;
            ticked.ops_tick();
            if until_evaluation == 0 {
                ticked.evaluate_alerts().await;
                until_evaluation = EVALUATE_EVERY;
            }
            until_evaluation -= 1;
        }
    })
}
