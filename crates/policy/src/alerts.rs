//! Alert rules: when a condition has held long enough to fire, when a firing alert has
//! recovered long enough to resolve, what value an alert reads, and what its actions
//! ask for. The server (`callgate-ops`, every second on the wall clock) and the simulator
//! (every simulated second) evaluate alerts with this code.
//!
//! [`AlertState::step`] is the whole rule, pure and on the caller's clock:
//! - quiet → pending when the metric crosses the threshold (`above`: strictly above;
//!   `below`: strictly below); pending → quiet as soon as it is back (a spike shorter
//!   than `for` never fires); pending → firing once it has stayed across for `for`;
//! - firing → resolving when the metric has *recovered*: below the resolve value (for an
//!   `above` alert; above it for a `below` alert), or, without a resolve value, no longer
//!   across the threshold; resolving → firing if it crosses back; resolving → quiet once
//!   it has stayed recovered for the resolve `for` (default: the alert's `for`). The gap
//!   between threshold and resolve value, and the time, are the hysteresis: an alert does
//!   not flap on a metric that hovers around its threshold.
//! - a metric with no data (a p95 of a minute without calls) is not across the threshold
//!   and counts as recovered.

use crate::stats::{Figure, Stats};
use callgate_config::{AlertAction, AlertActionKind, AlertConfig, AlertMetric, AlertTarget, Config, Overflow};

/// An alert's condition, in the units of its metric and in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    /// Fires above the threshold (true) or below it.
    pub above: bool,
    /// The threshold.
    pub threshold: f64,
    /// How long it must be across before firing (`for`), ms.
    pub hold_ms: u64,
    /// The resolve value; `None`: recovered as soon as it is no longer across.
    pub resolve_at: Option<f64>,
    /// How long it must be recovered before resolving, ms.
    pub resolve_ms: u64,
}

impl Condition {
    /// The condition an `[[alerts]]` entry describes.
    pub fn of(config: &AlertConfig) -> Condition {
        let (above, threshold) = config.threshold().unwrap_or((true, f64::INFINITY));
        let resolve = config.resolve.and_then(|r| if above { r.below } else { r.above }).map(|v| v.0);
        let (_, resolve_for) = config.resolve_at();
        Condition {
            above,
            threshold,
            hold_ms: millis(config.hold),
            resolve_at: resolve,
            resolve_ms: millis(resolve_for),
        }
    }

    /// The value is across the threshold.
    pub fn breaching(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| if self.above { v > self.threshold } else { v < self.threshold })
    }

    /// The value counts as recovered.
    pub fn recovered(&self, value: Option<f64>) -> bool {
        match (value, self.resolve_at) {
            (None, _) => true,
            (Some(_), None) => !self.breaching(value),
            (Some(v), Some(r)) => {
                if self.above {
                    v < r
                } else {
                    v > r
                }
            }
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where an alert stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertPhase {
    /// The condition does not hold.
    #[default]
    Quiet,
    /// It holds since `since`, not yet for `for`.
    Pending {
        /// When it started to hold.
        since: u64,
    },
    /// Fired at `since`.
    Firing {
        /// When it fired.
        since: u64,
    },
    /// Fired at `fired`, recovered since `since`, not yet for the resolve time.
    Resolving {
        /// When it fired.
        fired: u64,
        /// When it recovered.
        since: u64,
    },
}

impl AlertPhase {
    /// `quiet`, `pending`, `firing` (resolving reads as firing: its actions still hold).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertPhase::Quiet => "quiet",
            AlertPhase::Pending { .. } => "pending",
            AlertPhase::Firing { .. } | AlertPhase::Resolving { .. } => "firing",
        }
    }

    /// Fired and not yet resolved.
    pub fn is_firing(self) -> bool {
        matches!(self, AlertPhase::Firing { .. } | AlertPhase::Resolving { .. })
    }
}

/// What a step changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertChange {
    /// The alert fired.
    Fired,
    /// The alert resolved.
    Resolved,
}

/// One alert's state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Where it stands.
    pub phase: AlertPhase,
}

impl AlertState {
    /// Takes the metric's value at `now`; says when the alert fires or resolves.
    pub fn step(&mut self, c: &Condition, now: u64, value: Option<f64>) -> Option<AlertChange> {
        let breaching = c.breaching(value);
        let (next, change) = match self.phase {
            AlertPhase::Quiet if breaching && c.hold_ms == 0 => {
                (AlertPhase::Firing { since: now }, Some(AlertChange::Fired))
            }
            AlertPhase::Quiet if breaching => (AlertPhase::Pending { since: now }, None),
            AlertPhase::Quiet => (AlertPhase::Quiet, None),
            AlertPhase::Pending { .. } if !breaching => (AlertPhase::Quiet, None),
            AlertPhase::Pending { since } if now.saturating_sub(since) >= c.hold_ms => {
                (AlertPhase::Firing { since: now }, Some(AlertChange::Fired))
            }
            p @ AlertPhase::Pending { .. } => (p, None),
            AlertPhase::Firing { .. } if c.recovered(value) && c.resolve_ms == 0 => {
                (AlertPhase::Quiet, Some(AlertChange::Resolved))
            }
            AlertPhase::Firing { since } if c.recovered(value) => {
                (AlertPhase::Resolving { fired: since, since: now }, None)
            }
            p @ AlertPhase::Firing { .. } => (p, None),
            AlertPhase::Resolving { fired, .. } if !c.recovered(value) => (AlertPhase::Firing { since: fired }, None),
            AlertPhase::Resolving { since, .. } if now.saturating_sub(since) >= c.resolve_ms => {
                (AlertPhase::Quiet, Some(AlertChange::Resolved))
            }
            p @ AlertPhase::Resolving { .. } => (p, None),
        };
        self.phase = next;
        change
    }
}

/// What an alert watches, resolved to indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    /// Pool `i`.
    Pool(usize),
    /// Flow `i`, holding these pools.
    Flow(usize, Vec<usize>),
}

/// What `target` watches in `config`, resolved to indices (a campaign: its flow); `None`
/// when it names nothing the config has (a validated config names only what it has).
pub fn watched(config: &Config, target: &AlertTarget) -> Option<Watched> {
    let pool_index = |name: &str| config.pools.iter().position(|p| p.name == name);
    let flow = |i: usize| {
        let pools = config.flows[i].pools.iter().filter_map(|fp| pool_index(&fp.pool)).collect();
        Watched::Flow(i, pools)
    };
    let flow_index = |name: &str| config.flows.iter().position(|f| f.name == name);
    match target {
        AlertTarget::Pool(p) => pool_index(p).map(Watched::Pool),
        AlertTarget::Flow(f) => flow_index(f).map(flow),
        AlertTarget::Campaign(c) => {
            config.campaigns.iter().find(|x| &x.name == c).and_then(|x| flow_index(&x.flow)).map(flow)
        }
    }
}

/// What the alerts read from the ledger at one evaluation.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// [pool] → (used, cap, waiting).
    pub pools: Vec<(u64, u32, u32)>,
    /// [flow] → callers waiting.
    pub flow_waiting: Vec<u32>,
}

/// Interval length of the forecast plans (15 minutes).
const FORECAST_INTERVAL_MS: u64 = 15 * 60 * 1000;

/// The value `config`'s metric has at `now`, for what it watches: the pool gauges,
/// the last minute's figures and, for `forecast_shortfall`, the lines the inbound
/// forecast needs per pool (interval start, lines). `None`: no data.
pub fn value(
    config: &AlertConfig,
    watched: &Watched,
    gauges: &Gauges,
    stats: &Stats,
    forecast_need: &[Vec<(u64, u32)>],
    now: u64,
) -> Option<f64> {
    use AlertMetric as M;
    let utilization = |p: usize| {
        let &(used, cap, waiting) = gauges.pools.get(p)?;
        Some(if cap == 0 {
            // Nothing may be admitted: full if anyone holds or wants a unit.
            if used > 0 || waiting > 0 {
                1.0
            } else {
                0.0
            }
        } else {
            used as f64 / f64::from(cap)
        })
    };
    let figure = |fig: Figure| match watched {
        Watched::Pool(p) => stats.figure(true, *p, fig, now),
        Watched::Flow(f, _) => stats.figure(false, *f, fig, now),
    };
    match config.metric {
        M::Utilization => match watched {
            Watched::Pool(p) => utilization(*p),
            Watched::Flow(_, pools) => pools.iter().filter_map(|p| utilization(*p)).reduce(f64::max),
        },
        M::Waiting => match watched {
            Watched::Pool(p) => gauges.pools.get(*p).map(|g| f64::from(g.2)),
            Watched::Flow(f, _) => gauges.flow_waiting.get(*f).map(|w| f64::from(*w)),
        },
        M::P95Wait => figure(Figure::P95Wait),
        M::P95Latency => figure(Figure::P95Latency),
        M::ErrorRate => figure(Figure::ErrorRate),
        M::RejectionsPerMinute => figure(Figure::RejectionsPerMinute),
        M::ForecastShortfall => {
            let Watched::Pool(p) = watched else { return None };
            let cap = gauges.pools.get(*p)?.1;
            let end = now.saturating_add(config.lookahead.as_millis() as u64);
            let need = forecast_need
                .get(*p)?
                .iter()
                .filter(|&&(start, _)| start + FORECAST_INTERVAL_MS > now && start < end)
                .map(|&(_, lines)| lines)
                .max()?;
            Some(f64::from(need) - f64::from(cap))
        }
    }
}

/// What one action of a firing alert asks for, as data: the server carries it out
/// through the governor and the event bus, the simulator on its own ledger and dialers.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Post the alert to its webhook (action `k` of the alert).
    Notify {
        /// The action's index (its URL is the caller's).
        action: usize,
    },
    /// Set a pool's limit (remember the limit before, to put it back).
    SetLimit {
        /// The pool's name.
        pool: String,
        /// The new limit.
        limit: u32,
    },
    /// Put this chain in place of a flow's overflow while the alert fires.
    SetOverflow {
        /// The flow's name.
        flow: String,
        /// The chain.
        chain: Vec<Overflow>,
    },
    /// Pause the running campaigns below this priority.
    PauseCampaigns {
        /// Campaigns whose priority is below this pause (`i32::MIN`: none given, all).
        below: i32,
    },
}

/// The commands of an alert's actions, in order (a validated config has every field an
/// action needs; a missing one reads as empty, which the carrier-out refuses by name).
pub fn commands(actions: &[AlertAction]) -> Vec<Command> {
    actions
        .iter()
        .enumerate()
        .map(|(k, a)| match a.action {
            AlertActionKind::Notify => Command::Notify { action: k },
            AlertActionKind::SetLimit => {
                Command::SetLimit { pool: a.pool.clone().unwrap_or_default(), limit: a.limit.unwrap_or_default() }
            }
            AlertActionKind::SetOverflow => {
                Command::SetOverflow { flow: a.flow.clone().unwrap_or_default(), chain: a.overflow.clone() }
            }
            AlertActionKind::PauseCampaigns => Command::PauseCampaigns { below: a.below_priority.unwrap_or(i32::MIN) },
        })
        .collect()
}

#[cfg(test)]
mod tests;
