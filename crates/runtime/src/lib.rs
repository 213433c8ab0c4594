//! callgate's node at run time, around the governor: campaigns, inbound admission,
//! reconciliation with the platforms, cluster duties, schedules, forecasts, call history
//! and traces.
//!
//! Nothing here speaks HTTP to callers: the edge (crate `callgate-http`) sits above and
//! hands requests to these parts; `callgate-server` wires both at start-up.
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
