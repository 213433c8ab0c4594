//! Breakers as the API shows them. The breakers themselves (the gate, the state machines,
//! which flows depend on which) are `callgate_policy::breakers`, which the simulator runs
//! too.

use callgate_core::breaker::BreakerState;
use callgate_policy::breakers::BreakerStatus;
use serde::Serialize;
use std::sync::Arc;

/// A breaker as `GET /v1/breakers` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BreakerView {
    /// The dependency's name.
    pub name: Arc<str>,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// When an open breaker turns half-open (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// When it last changed state (Unix ms), if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Calls in the window (closed only: the window restarts on every change).
    pub calls: u32,
    /// Of which failed.
    pub failed: u32,
    /// Of which slow.
    pub slow: u32,
    /// The flows that answer with their fallback while it is open.
    pub flows: Vec<Arc<str>>,
}

impl From<BreakerStatus> for BreakerView {
    fn from(s: BreakerStatus) -> BreakerView {
        BreakerView {
            name: s.name,
            state: s.state.as_str(),
            until_ms: match s.state {
                BreakerState::Open { until } => Some(until),
                _ => None,
            },
            since_ms: s.since,
            calls: s.counts.calls,
            failed: s.counts.failed,
            slow: s.counts.slow,
            flows: s.flows,
        }
    }
}
