//! Alerts: when a condition has held long enough to fire, and when a firing alert has
//! recovered long enough to resolve.
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
//!
//! The server evaluates every alert once a second (see `ops::Ops::evaluate_alerts`).

use callgate_config::{AlertConfig, AlertMetric, AlertTarget};
use serde::Serialize;
use std::sync::Arc;

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
pub(crate) enum Watched {
    /// Pool `i`.
    Pool(usize),
    /// Flow `i`, holding these pools.
    Flow(usize, Vec<usize>),
}

/// How to put back what a firing alert changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Set `pool`'s limit back to `before` (if it is still the `set` we put there).
    Limit { pool: String, before: u32, set: u32 },
    /// Clear the override of flow `flow` (if it is still ours).
    Overflow { flow: usize, generation: u64 },
    /// Resume these campaigns.
    Resume(Vec<String>),
}

/// An alert at runtime.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) config: AlertConfig,
    pub(crate) target: AlertTarget,
    pub(crate) watched: Option<Watched>,
    pub(crate) condition: Condition,
    /// Notify URLs by action index (resolved from `url` or `url_env`).
    pub(crate) urls: Vec<Option<String>>,
    pub(crate) state: AlertState,
    pub(crate) value: Option<f64>,
    pub(crate) undo: Vec<Undo>,
}

/// What an alert watches: `{ "kind": "pool" | "flow" | "campaign", "name" }`.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AlertTargetView {
    /// `pool`, `flow` or `campaign`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
}

/// An alert as `GET /v1/alerts` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AlertView {
    /// Its name.
    pub name: Arc<str>,
    /// `quiet`, `pending` or `firing`.
    pub state: &'static str,
    /// What it watches.
    pub target: AlertTargetView,
    /// The metric (`utilization`, `waiting`, `p95_wait_ms`, …, as in `[[alerts]]`).
    #[schema(value_type = String)]
    pub metric: AlertMetric,
    /// `above` or `below`.
    pub direction: &'static str,
    /// The threshold.
    pub threshold: f64,
    /// `for`, ms.
    pub for_ms: u64,
    /// The value at the last evaluation (`null`: no data).
    pub value: Option<f64>,
    /// Pending since (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_since_ms: Option<u64>,
    /// Fired at (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firing_since_ms: Option<u64>,
    /// The actions it takes, by kind.
    pub actions: Vec<&'static str>,
    /// How its last notification (a `notify` webhook) went; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_notification: Option<NotificationView>,
    /// Notifications that could not be delivered since the server started.
    pub notifications_failed: u64,
}

/// One notification's outcome.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct NotificationView {
    /// Whether the webhook took it (a 2xx answer).
    pub ok: bool,
    /// What happened (`posted (200)`, `the webhook answered 500`, `cannot post: …`).
    pub detail: String,
    /// When the alert changed (Unix ms).
    pub at_ms: u64,
}

impl Rule {
    pub(crate) fn view(&self) -> AlertView {
        let (pending, firing) = match self.state.phase {
            AlertPhase::Quiet => (None, None),
            AlertPhase::Pending { since } => (Some(since), None),
            AlertPhase::Firing { since } => (None, Some(since)),
            AlertPhase::Resolving { fired, .. } => (None, Some(fired)),
        };
        AlertView {
            name: self.name.clone(),
            state: self.state.phase.as_str(),
            target: AlertTargetView { kind: self.target.kind(), name: self.target.name().to_string() },
            metric: self.config.metric,
            direction: if self.condition.above { "above" } else { "below" },
            threshold: self.condition.threshold,
            for_ms: self.condition.hold_ms,
            value: self.value,
            pending_since_ms: pending,
            firing_since_ms: firing,
            actions: self.config.actions.iter().map(|a| a.action.as_str()).collect(),
            last_notification: None,
            notifications_failed: 0,
        }
    }
}

/// The text of a notification (Slack shows `text`).
pub(crate) fn notify_text(rule: &Rule, firing: bool, value: Option<f64>) -> String {
    let c = &rule.condition;
    let value = value.map_or_else(|| "no data".to_owned(), format_value);
    let what = format!("{} of {} `{}`", rule.config.metric, rule.target.kind(), rule.target.name());
    if firing {
        let side = if c.above { "above" } else { "below" };
        let hold = callgate_core::duration::format_duration(rule.config.hold);
        format!(
            "callgate alert `{}` is firing: {what} is {value} ({side} {} for {hold})",
            rule.name,
            format_value(c.threshold)
        )
    } else {
        format!("callgate alert `{}` resolved: {what} is {value}", rule.name)
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests;
