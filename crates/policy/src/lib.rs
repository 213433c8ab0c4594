//! The operating policies' decisions, sans I/O: adaptive caps, circuit breakers, the last
//! minute's figures and alert rules with the commands their actions give.
//!
//! Pure and synchronous, on the caller's clock (every call takes `now`), over the core's
//! algorithms (`callgate_core::adaptive`, `callgate_core::breaker`) and the configuration's
//! sections (`[[pools]] adaptive`, `[[breakers]]`, `[[alerts]]`). Two shells drive them:
//! the server's operating layer (`callgate-ops`: locks, events, metrics, webhooks, the
//! event bus, on the wall clock) and the simulator (`callgate-plan`: on simulated time,
//! from modelled latencies and dependency outcomes). One implementation, so a policy
//! behaves in a simulation as it will in the server.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod adaptive;
pub mod alerts;
pub mod breakers;
pub mod stats;
