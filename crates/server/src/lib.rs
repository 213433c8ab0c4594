//! callgate's running server: the start-up wiring of the edge and the runtime, the demo, the fuzz harness.
//!
//! Data flows one way: an edge turns an HTTP request into a ledger request, the
//! [`governor::Governor`] (crate `callgate-governor`) decides and has its backend make the
//! decision durable, the edge answers; the bus (crate `callgate-events`) hands every
//! committed batch to its consumers (metrics, the operating layer of `callgate-ops`, live
//! events, the decision log). The modules of those crates, the edge's (as [`edges`]) and
//! the runtime's are re-exported here under the names they had when they lived in this
//! crate.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod demo;
pub mod fuzz;
pub mod serve;

pub use callgate_events::{bus, decision_log, live, metrics, views};
pub use callgate_governor as governor;
pub use callgate_http as edges;
pub use callgate_http::{connections, reload};
pub use callgate_ops as ops;
#[doc(hidden)]
pub use callgate_runtime::forecast;
pub use callgate_runtime::{
    campaign, clock, cluster, history, inbound, prewarm, providers, reconcile, schedule, telemetry,
};
pub use serve::{serve, serve_announced, ServeOptions, Server};
