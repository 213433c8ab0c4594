//! Ops events: what changes outside the ledger (breakers, alerts, their actions, callers
//! answered with a fallback). They go to the same consumers as the ledger's events, the
//! metrics and the live stream, but not to the journal: nothing in them needs to survive
//! a restart (a breaker starts closed, an alert starts quiet).

use serde_json::{json, Value};
use std::sync::Arc;

/// One change outside the ledger.
#[derive(Clone, Debug, PartialEq)]
pub enum OpsEvent {
    /// A breaker changed state.
    BreakerChanged {
        /// The breaker (dependency) name.
        breaker: Arc<str>,
        /// `closed`, `open` or `half_open`.
        from: &'static str,
        /// `closed`, `open` or `half_open`.
        to: &'static str,
        /// Why, e.g. `error_rate 12/20`.
        cause: String,
        /// When the open state ends (Unix ms), when it opened.
        until_ms: Option<u64>,
        /// When (Unix ms).
        at: u64,
    },
    /// A caller of a flow whose dependency is down was answered with the fallback.
    Fallback {
        /// The flow.
        flow: Arc<str>,
        /// The open breaker.
        dependency: Arc<str>,
        /// The flow's class.
        class: Arc<str>,
        /// The flow's pools and units.
        pools: Vec<(Arc<str>, u32)>,
        /// When.
        at: u64,
    },
    /// An alert fired or resolved.
    Alert {
        /// The alert's name.
        alert: Arc<str>,
        /// True when it fired, false when it resolved.
        firing: bool,
        /// `pool`, `flow` or `campaign`.
        target_kind: &'static str,
        /// The target's name.
        target: Arc<str>,
        /// The metric's name.
        metric: &'static str,
        /// The value that decided it.
        value: Option<f64>,
        /// The threshold it fires at.
        threshold: f64,
        /// When.
        at: u64,
    },
    /// An alert's action ran.
    AlertAction {
        /// The alert.
        alert: Arc<str>,
        /// `notify`, `pause_campaigns`, `set_overflow`, `set_limit`.
        action: &'static str,
        /// True when the action was an undo.
        undo: bool,
        /// Whether it worked.
        ok: bool,
        /// What it did, or why it failed.
        detail: String,
        /// When.
        at: u64,
    },
}

impl OpsEvent {
    /// The JSON of `/v1/events` (the same framing as ledger events: `type` and `at_ms`).
    pub fn to_json(&self) -> Value {
        match self {
            OpsEvent::BreakerChanged { breaker, from, to, cause, until_ms, at } => json!({
                "type": "breaker_changed",
                "at_ms": at,
                "breaker": breaker,
                "from": from,
                "state": to,
                "cause": cause,
                "until_ms": until_ms,
            }),
            OpsEvent::Fallback { flow, dependency, class, pools, at } => json!({
                "type": "rejected",
                "at_ms": at,
                "class": class,
                "flow": flow,
                "pools": pools.iter().map(|(p, u)| json!({ "pool": p, "units": u })).collect::<Vec<_>>(),
                "reason": "dependency_down",
                "dependency": dependency,
            }),
            OpsEvent::Alert { alert, firing, target_kind, target, metric, value, threshold, at } => json!({
                "type": if *firing { "alert_fired" } else { "alert_resolved" },
                "at_ms": at,
                "alert": alert,
                "target": { "kind": target_kind, "name": target },
                "metric": metric,
                "value": value,
                "threshold": threshold,
            }),
            OpsEvent::AlertAction { alert, action, undo, ok, detail, at } => json!({
                "type": "alert_action",
                "at_ms": at,
                "alert": alert,
                "action": action,
                "undo": undo,
                "ok": ok,
                "detail": detail,
            }),
        }
    }
}
