//! Alerts at runtime: the rules with their notification URLs, their views, and what
//! undoes their actions. The rule itself (`for` and the hysteresis, the value an alert
//! reads, the commands its actions give) is `callgate_policy::alerts`, which the
//! simulator runs too.
//!
//! The server evaluates every alert once a second (see `ops::Ops::evaluate_alerts`).

use callgate_config::{AlertConfig, AlertMetric, AlertTarget};
use serde::Serialize;
use std::sync::Arc;

pub use callgate_policy::alerts::{AlertChange, AlertPhase, AlertState, Condition, Watched};

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
