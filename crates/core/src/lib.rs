//! The admission ledger: pools, classes, leases, tickets and the admission rule.
//!
//! Pure and synchronous: no I/O, no async, no clock of its own (the [`clock`] module is
//! the one place the wall clock is read, for those who run the ledger; the ledger never
//! reads it). Every operation takes
//! `now` (milliseconds on whatever clock the caller runs: Unix time in the server, a
//! virtual clock in the simulator), so the server, the simulator and the property tests
//! drive exactly the same code.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod adaptive;
pub mod breaker;
pub mod clock;
pub mod duration;
mod event;
mod ids;
pub mod ledger;
mod spec;

pub use event::{Event, RejectReason, TicketOutcome};
pub use ids::{ClassId, FlowId, LeaseId, Millis, PoolId, PoolUnits, TicketId};
pub use ledger::{Decision, Lease, Ledger, PoolView, Request, RequestError, Target, Ticket, TicketStatus};
pub use spec::{ClassSpec, FlowSpec, LedgerSpec, PoolSpec, QueueSpec, SpecError};
