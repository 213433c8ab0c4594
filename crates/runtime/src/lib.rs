//! The node's running parts around the governor: campaigns, inbound calls, reconciliation, cluster duties.
//!
//! Also the schedules, forecasts and prewarm hooks, the call history and the OTLP traces.
//! Nothing here answers HTTP: the edge (crate `callgate-http`) sits above and hands
//! requests to these parts; `callgate-server` wires both at start-up.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod campaign;
pub mod clock;
pub mod cluster;
#[doc(hidden)]
pub mod forecast;
pub mod history;
pub mod inbound;
pub mod prewarm;
pub mod providers;
pub mod reconcile;
pub mod schedule;
pub mod telemetry;
