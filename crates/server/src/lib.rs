//! callgate's edges: the HTTP API, the provider webhooks (Vapi, Twilio), the governor,
//! reconciliation with the platforms, metrics and live events.
//!
//! Data flows one way: an edge turns an HTTP request into a ledger request, the
//! [`governor::Governor`] decides and hands the events to the journal, the edge waits
//! until they are durable and answers; the journal's consumers (metrics, live events)
//! see every event after it is on disk.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod bus;
pub mod campaign;
pub mod clock;
pub mod connections;
pub mod decision_log;
pub mod demo;
pub mod edges;
#[doc(hidden)]
pub mod fuzz;
pub mod governor;
pub mod inbound;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod providers;
pub mod reload;
pub mod serve;
pub mod telemetry;
pub mod views;

pub use serve::{serve, serve_announced, ServeOptions, Server};
