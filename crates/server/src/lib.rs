//! callgate's edges: the HTTP API, the governor, metrics and live events.
//!
//! Data flows one way: an edge turns an HTTP request into a ledger request, the
//! [`governor::Governor`] decides and hands the events to the journal, the edge waits
//! until they are durable and answers; the journal's consumers (metrics, live events)
//! see every event after it is on disk.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod clock;
pub mod edges;
pub mod error;
pub mod governor;
pub mod live;
pub mod metrics;
pub mod serve;
pub mod views;

pub use serve::{serve, Server, ServeOptions};
