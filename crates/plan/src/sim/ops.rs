//! The operating policies in a run: the config's adaptive caps, breakers and alerts,
//! driven through `callgate_policy` (the code the server's operating layer runs) on the
//! simulated clock, from the scenario's modelled latencies and dependency outcomes.
//!
//! - Every grant of a flow holding a pool described in `[[sim.pools]]` is a latency
//!   sample of that pool (its used units, the call included, as `inflight`); an outbound
//!   attempt beyond the pool's `provider_limit` is refused by the provider, a drop. Each
//!   sample goes to the pool's adaptive cap, whose changes become the ledger's cap.
//! - A caller of a flow with `depends_on` passes the breakers first (refused: the flow's
//!   `fallback`, else its overflow). Every granted call of such a flow is an outcome of
//!   each dependency described in `[[sim.dependencies]]`, recorded by its breaker.
//!   Campaigns whose flow depends on a breaker pause when it opens and resume when it
//!   turns half-open (their calls are probes) or closes, as the server's do.
//! - Every simulated second, breakers see the time pass and the alerts are evaluated
//!   against the ledger's gauges and the last minute's figures; the commands of an alert
//!   that fires are carried out on the simulated ledger, flows and dialers (and undone
//!   when it resolves, with `undo`).

use super::dist::Dist;
use super::report::{AdaptiveReport, AlertReport, BreakerReport, OpsLine, OpsReport};
use super::rng::Rng;
use super::scenario::{DependencyModel, PoolModel, Scenario};
use callgate_config::{AlertConfig, Overflow};
use callgate_core::adaptive::Sample;
use callgate_core::breaker::{BreakerState, Transition};
use callgate_core::{Event, FlowId, Ledger, PoolId};
use callgate_policy::adaptive::AdaptiveCaps;
use callgate_policy::alerts::{self, AlertChange, AlertState, Command, Condition, Gauges, Watched};
use callgate_policy::breakers::{cause_text, Breakers};
use callgate_policy::stats::Stats;

/// How often breakers and alerts look at the clock: the server evaluates alerts once a
/// second, and `for` is counted in whole evaluations.
pub(super) const TICK_MS: u64 = 1_000;
/// Lines kept in the report's log of what the policies did.
const MAX_LOG: usize = 1_000;

/// Why a dialer is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pause {
    /// A breaker its flow depends on opened.
    Breaker(usize),
    /// An alert's `pause_campaigns` (campaigns below `below`).
    Alert(usize),
}

/// What the engine must do for the policies: pause or resume dialers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    /// Pause the dialers whose flow depends on breaker `b`.
    PauseForBreaker(usize),
    /// Pause the dialers below this priority, for alert `i`.
    PauseBelow(usize, i32),
    /// Lift this pause from every dialer.
    Resume(Pause),
}

/// What undoes an alert's action.
enum Undo {
    Limit { pool: usize, before: u32, set: u32 },
    Overflow { flow: usize, generation: u64 },
    Resume(usize),
}

struct Rule {
    config: AlertConfig,
    condition: Condition,
    watched: Option<Watched>,
    state: AlertState,
    undo: Vec<Undo>,
    fired: u32,
    resolved: u32,
    notifications: u32,
    actions: Vec<String>,
}

#[derive(Default, Clone)]
struct PoolTally {
    samples: u64,
    refusals: u64,
    changes: u64,
    min_cap: Option<u32>,
}

#[derive(Default, Clone)]
struct BreakerTally {
    calls: u64,
    failed: u64,
    opened: u32,
    fallbacks: u64,
}

/// The policies of one run. See the module docs.
pub(super) struct SimOps {
    adaptive: AdaptiveCaps,
    /// [pool] → its provider's model.
    pool_models: Vec<Option<PoolModel>>,
    breakers: Breakers,
    /// [breaker] → its dependency's model.
    dependencies: Vec<Option<DependencyModel>>,
    /// [flow] → its `fallback` chain (empty: none).
    fallback: Vec<Vec<Overflow>>,
    /// With alerts: the last minute's figures.
    stats: Option<Stats>,
    rules: Vec<Rule>,
    /// [flow] → the chain an alert's `set_overflow` put in force, with its generation.
    overrides: Vec<Option<(u64, Vec<Overflow>)>>,
    generation: u64,
    /// Latencies and dependency outcomes, in the order calls are granted.
    rng: Rng,
    pub(super) effects: Vec<Effect>,
    start_ms: u64,
    log: Vec<OpsLine>,
    pools: Vec<PoolTally>,
    tallies: Vec<BreakerTally>,
}

impl SimOps {
    /// The policies `sc` configures, or `None` when it configures none that the run can
    /// drive (no adaptive pool, no breaker a flow depends on, no alert): then the run
    /// costs nothing more.
    pub(super) fn new(sc: &Scenario, seed: u64) -> Option<SimOps> {
        let config = &sc.config;
        let adaptive = AdaptiveCaps::new(config.pools.iter().map(|p| (p.adaptive.clone(), p.limit)));
        let breakers =
            Breakers::new(&config.breakers, config.flows.iter().map(|f| (f.name.as_str(), &f.depends_on[..])));
        let any_adaptive = (0..config.pools.len()).any(|p| adaptive.is_adaptive(p));
        let guarded = (0..config.flows.len()).any(|f| !breakers.depends(f).is_empty());
        if !any_adaptive && !guarded && config.alerts.is_empty() && sc.ops.pools.is_empty() {
            return None;
        }
        let mut pool_models = vec![None; config.pools.len()];
        for m in &sc.ops.pools {
            pool_models[m.pool] = Some(m.clone());
        }
        let mut dependencies = vec![None; breakers.len()];
        for d in &sc.ops.dependencies {
            // A breaker the core refused is not in `breakers`: its model has no slot.
            let name = &config.breakers[d.breaker].name;
            if let Some(b) = breakers.index(name) {
                dependencies[b] = Some(d.clone());
            }
        }
        let rules: Vec<Rule> = config
            .alerts
            .iter()
            .filter_map(|a| {
                let target = a.target()?;
                Some(Rule {
                    config: a.clone(),
                    condition: Condition::of(a),
                    watched: alerts::watched(config, &target),
                    state: AlertState::default(),
                    undo: Vec::new(),
                    fired: 0,
                    resolved: 0,
                    notifications: 0,
                    actions: Vec::new(),
                })
            })
            .collect();
        let nb = breakers.len();
        Some(SimOps {
            stats: (!rules.is_empty()).then(|| Stats::new(config.pools.len(), config.flows.len())),
            fallback: config.flows.iter().map(|f| f.fallback.clone()).collect(),
            overrides: vec![None; config.flows.len()],
            rules,
            generation: 0,
            rng: Rng::stream(seed, 5_000_000),
            effects: Vec::new(),
            start_ms: sc.sim.start_ms,
            log: Vec::new(),
            pools: vec![PoolTally::default(); config.pools.len()],
            tallies: vec![BreakerTally::default(); nb],
            adaptive,
            pool_models,
            breakers,
            dependencies,
        })
    }

    /// Whether time alone matters (breakers turning half-open, alerts).
    pub(super) fn ticks(&self) -> bool {
        !self.rules.is_empty() || !self.breakers.is_empty()
    }

    /// Whether the figures want the ledger's events.
    pub(super) fn observes(&self) -> bool {
        self.stats.is_some()
    }

    /// Committed ledger events, for the figures.
    pub(super) fn observe(&mut self, events: &[Event]) {
        if let Some(s) = &mut self.stats {
            s.observe(events);
        }
    }

    fn note(&mut self, now: u64, what: String) {
        if self.log.len() < MAX_LOG {
            let at = callgate_config::format_instant(self.start_ms.saturating_add(now));
            self.log.push(OpsLine { at_s: now as f64 / 1000.0, at, what });
        }
    }

    fn transition(&mut self, b: usize, t: Transition, now: u64) {
        let name = self.breakers.name(b).clone();
        self.note(now, format!("breaker `{name}` {} → {} ({})", t.from.as_str(), t.to.as_str(), cause_text(&t.cause)));
        if matches!((t.from, t.to), (BreakerState::Closed, BreakerState::Open { .. })) {
            self.tallies[b].opened += 1;
        }
        match callgate_policy::breakers::campaigns_do(&t) {
            callgate_policy::breakers::CampaignsDo::Pause => self.effects.push(Effect::PauseForBreaker(b)),
            callgate_policy::breakers::CampaignsDo::Resume => self.effects.push(Effect::Resume(Pause::Breaker(b))),
            callgate_policy::breakers::CampaignsDo::Nothing => {}
        }
    }

    /// The breakers flow `f` depends on.
    pub(super) fn depends(&self, f: usize) -> &[usize] {
        self.breakers.depends(f)
    }

    /// Does a caller of flow `f` pass its breakers at `now`? (As the server's gate: the
    /// first dependency that refuses stops the walk.)
    pub(super) fn gate(&mut self, ledger: &Ledger, f: usize, now: u64) -> bool {
        if self.breakers.depends(f).is_empty() {
            return true;
        }
        let (answer, transitions) = self.breakers.pass(f, now);
        for (b, t) in transitions {
            self.transition(b, t, now);
        }
        match answer {
            Ok(()) => true,
            Err(down) => {
                self.tallies[down.breaker].fallbacks += 1;
                if let Some(s) = &mut self.stats {
                    s.fallback(f, ledger.flow_pools(FlowId(f as u32)), now);
                }
                false
            }
        }
    }

    /// The chain a rejected caller of flow `f` walks, when the policies replace the
    /// configured (or scheduled) one: the fallback while a dependency is down (or the
    /// caller was just turned away by a breaker), else an alert's `set_overflow`.
    pub(super) fn chain(&self, f: usize, now: u64, blocked: bool) -> Option<&[Overflow]> {
        let down = blocked || {
            let deps = self.breakers.depends(f);
            deps.iter().any(|&d| self.breakers.is_open(d, now))
        };
        if down {
            if let Some(chain) = self.fallback.get(f).filter(|c| !c.is_empty()) {
                return Some(chain);
            }
        }
        self.overrides.get(f)?.as_ref().map(|(_, chain)| chain.as_slice())
    }

    /// A call of flow `f` was granted at `now` (`outbound`: a dialer placed it). Feeds the
    /// pools' adaptive caps with its latency sample and the breakers with its dependency
    /// outcomes. Returns `(refused, failed)`: the provider refused the call (outbound
    /// beyond `provider_limit`: the caller must release it), a dependency failed it.
    pub(super) fn granted(&mut self, ledger: &mut Ledger, f: usize, now: u64, outbound: bool) -> (bool, bool) {
        let mut refused = false;
        let pools = ledger.flow_pools(FlowId(f as u32)).clone();
        for pu in pools.iter() {
            let p = pu.pool.index();
            let Some(model) = self.pool_models.get(p).and_then(Option::as_ref) else { continue };
            let inflight = u32::try_from(ledger.pool(pu.pool).used).unwrap_or(u32::MAX);
            let sample = if outbound && model.provider_limit.is_some_and(|l| inflight > l) {
                refused = true;
                self.pools[p].refusals += 1;
                Sample::refusal(inflight)
            } else {
                let over = f64::from(inflight.saturating_sub(model.knee));
                let rtt = model.latency.sample(&mut self.rng) as f64 + model.per_call_ms * over;
                if let Some(s) = &mut self.stats {
                    s.sample(&[p], Some(f), now, Some(rtt), None);
                }
                Sample::latency(rtt.max(1.0), inflight)
            };
            self.pools[p].samples += 1;
            if let Some(change) = self.adaptive.on_sample(p, now, sample) {
                self.cap_changed(ledger, p, change.from, change.to, now);
            }
        }
        if refused {
            return (true, false);
        }
        let mut failed = false;
        let deps = self.breakers.depends(f).to_vec();
        for b in deps {
            let Some(model) = self.dependencies[b].as_ref() else { continue };
            let (error_rate, latency) = model.at(now);
            let latency: Option<Dist> = latency.cloned();
            let ok = self.rng.uniform() >= error_rate;
            let latency_ms = latency.map(|d| d.sample(&mut self.rng));
            let tally = &mut self.tallies[b];
            tally.calls += 1;
            if !ok {
                tally.failed += 1;
                failed = true;
            }
            if let Some(s) = &mut self.stats {
                let pools: Vec<usize> = pools.iter().map(|pu| pu.pool.index()).collect();
                s.sample(&pools, Some(f), now, latency_ms.map(|l| l as f64), Some(ok));
            }
            if let Some(t) = self.breakers.record(b, now, ok, latency_ms) {
                self.transition(b, t, now);
            }
        }
        (false, failed)
    }

    fn cap_changed(&mut self, ledger: &mut Ledger, p: usize, from: u32, to: u32, now: u64) {
        ledger.set_cap(PoolId(p as u32), Some(to), now);
        let t = &mut self.pools[p];
        t.changes += 1;
        t.min_cap = Some(t.min_cap.map_or(to, |m| m.min(to)));
        if t.changes <= 20 || to < from && t.min_cap == Some(to) {
            let name = ledger.pool_name(PoolId(p as u32)).clone();
            self.note(now, format!("pool `{name}` adaptive cap {from} → {to}"));
        }
    }

    /// Pool `p`'s limit changed (a schedule, an alert): the adaptive bounds follow, as in
    /// the server.
    pub(super) fn limit_changed(&mut self, ledger: &mut Ledger, p: usize, limit: u32, now: u64) {
        if let Some(change) = self.adaptive.on_limit(p, limit, now) {
            self.cap_changed(ledger, p, change.from, change.to, now);
        }
    }

    /// A second passed: breakers see the time, figures drop what is older than a minute,
    /// alerts are evaluated and what fired or resolved is carried out.
    pub(super) fn tick(&mut self, ledger: &mut Ledger, now: u64) {
        for (b, t) in self.breakers.advance(now) {
            self.transition(b, t, now);
        }
        let Some(mut stats) = self.stats.take() else { return };
        stats.prune(now);
        let pools: Vec<(u64, u32, u32)> = ledger.pools().iter().map(|p| (p.used, p.cap, p.waiting)).collect();
        let mut flow_waiting = vec![0u32; ledger.flow_count()];
        for t in ledger.tickets() {
            if let Some(w) = t.flow.and_then(|f| flow_waiting.get_mut(f.index())) {
                *w += 1;
            }
        }
        let gauges = Gauges { pools, flow_waiting };
        let mut changes = Vec::new();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let value = rule.watched.as_ref().and_then(|w| alerts::value(&rule.config, w, &gauges, &stats, &[], now));
            if let Some(change) = rule.state.step(&rule.condition, now, value) {
                changes.push((i, change, value));
            }
        }
        self.stats = Some(stats);
        for (i, change, value) in changes {
            self.act(ledger, i, change, value, now);
        }
    }

    fn act(&mut self, ledger: &mut Ledger, i: usize, change: AlertChange, value: Option<f64>, now: u64) {
        let name = self.rules[i].config.name.clone();
        let value = value.map_or_else(|| "no data".to_owned(), |v| format!("{v:.2}"));
        if change == AlertChange::Resolved {
            self.rules[i].resolved += 1;
            self.note(now, format!("alert `{name}` resolved ({value})"));
            let undo = std::mem::take(&mut self.rules[i].undo);
            if self.rules[i].config.undo {
                for u in undo.into_iter().rev() {
                    self.undo(ledger, &name, u, now);
                }
            }
            return;
        }
        self.rules[i].fired += 1;
        self.note(now, format!("alert `{name}` fired ({value})"));
        let mut undo = Vec::new();
        for command in alerts::commands(&self.rules[i].config.actions) {
            match command {
                Command::Notify { .. } => self.rules[i].notifications += 1,
                Command::SetLimit { pool, limit } => {
                    let Some(id) = ledger.pool_id(&pool) else { continue };
                    let before = ledger.pool(id).limit;
                    ledger.set_limit(id, limit, now);
                    self.limit_changed(ledger, id.index(), limit, now);
                    self.did(i, now, format!("pool `{pool}` limit {before} → {limit}"));
                    undo.push(Undo::Limit { pool: id.index(), before, set: limit });
                }
                Command::SetOverflow { flow, chain } => {
                    let Some(f) = ledger.flow_id(&flow) else { continue };
                    self.generation += 1;
                    let first = chain.first().map_or("none", |o| o.action.as_str());
                    self.did(i, now, format!("flow `{flow}` overflows to {first}"));
                    self.overrides[f.index()] = Some((self.generation, chain));
                    undo.push(Undo::Overflow { flow: f.index(), generation: self.generation });
                }
                Command::PauseCampaigns { below } => {
                    self.effects.push(Effect::PauseBelow(i, below));
                    self.did(i, now, format!("campaigns below priority {below} paused"));
                    undo.push(Undo::Resume(i));
                }
            }
        }
        self.rules[i].undo = undo;
    }

    fn did(&mut self, i: usize, now: u64, what: String) {
        self.note(now, format!("  {what}"));
        let actions = &mut self.rules[i].actions;
        if actions.len() < 16 {
            actions.push(what);
        }
    }

    fn undo(&mut self, ledger: &mut Ledger, alert: &str, u: Undo, now: u64) {
        match u {
            Undo::Limit { pool, before, set } => {
                let id = PoolId(pool as u32);
                let name = ledger.pool_name(id).clone();
                if ledger.pool(id).limit == set {
                    ledger.set_limit(id, before, now);
                    self.limit_changed(ledger, pool, before, now);
                    self.note(now, format!("  alert `{alert}` undone: pool `{name}` limit {set} → {before}"));
                }
            }
            Undo::Overflow { flow, generation } => {
                if self.overrides[flow].as_ref().is_some_and(|(g, _)| *g == generation) {
                    self.overrides[flow] = None;
                    self.note(now, format!("  alert `{alert}` undone: flow overflow restored"));
                }
            }
            Undo::Resume(i) => {
                self.effects.push(Effect::Resume(Pause::Alert(i)));
                self.note(now, format!("  alert `{alert}` undone: campaigns resumed"));
            }
        }
    }

    /// What the policies did, for the report.
    pub(super) fn report(self, ledger: &Ledger) -> OpsReport {
        let adaptive = (0..self.pools.len())
            .filter_map(|p| {
                let (algorithm, min, max) = self.adaptive.describe(p)?;
                let t = &self.pools[p];
                Some(AdaptiveReport {
                    pool: ledger.pool_name(PoolId(p as u32)).to_string(),
                    algorithm: algorithm.to_owned(),
                    min,
                    max,
                    lowest_cap: t.min_cap.unwrap_or(max).min(self.adaptive.cap(p).unwrap_or(max)),
                    final_cap: self.adaptive.cap(p).unwrap_or(max),
                    cap_changes: t.changes,
                    samples: t.samples,
                    refusals: t.refusals,
                })
            })
            .collect();
        let breakers = self
            .breakers
            .names()
            .into_iter()
            .zip(&self.tallies)
            .map(|(name, t)| BreakerReport {
                name,
                calls: t.calls,
                failed: t.failed,
                opened: t.opened,
                fallbacks: t.fallbacks,
            })
            .collect();
        let alerts = self
            .rules
            .into_iter()
            .map(|r| AlertReport {
                name: r.config.name,
                fired: r.fired,
                resolved: r.resolved,
                notifications: r.notifications,
                actions: r.actions,
            })
            .collect();
        OpsReport { adaptive, breakers, alerts, log: self.log }
    }
}
