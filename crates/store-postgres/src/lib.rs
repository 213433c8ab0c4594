//! Durable data on PostgreSQL, for cluster mode: the lease journal, call records and
//! callbacks, campaigns, leads and attempts, shared by every node.
//!
//! [`Pg::open`] connects, applies the migrations ([`migrate`]: versioned, under an
//! advisory lock, so two nodes starting at once apply each exactly once) and starts the
//! thread all PostgreSQL I/O of this process runs on (one small tokio runtime of its own,
//! so the stores work from any thread, inside or outside the server's runtime). From it:
//!
//! - [`Journal`]: every acknowledged grant, renewal, release, expiry, waiting ticket and
//!   limit change of one budget domain, appended ([`Journal::append`]) and
//!   group-committed — one transaction for every batch that arrived while the last commit
//!   was under way — before the answer ([`Journal::durable`]); [`Journal::live_leases`]
//!   and [`Journal::restore`] read back what must be re-asserted into an empty Redis;
//! - [`PgRecords`]: the [`Records`](callgate_backend::records::Records) trait (call
//!   records and booked callbacks), group-committed like the journal;
//! - [`PgLeads`]: the [`Leads`](callgate_backend::leads::Leads) trait (campaigns, leads
//!   and attempts), passing the same conformance suite as the SQLite store, safe with
//!   several dialer nodes on one database: a lead is claimed under its row lock, so it is
//!   never handed out twice, and [`PgLeads::claim_due`] claims a batch with
//!   `FOR UPDATE SKIP LOCKED`;
//! - [`PgDnc`]: the [`DncLists`](callgate_backend::dnc::DncLists) trait (suppression lists
//!   and the audit trail of dial decisions), shared by every node, with positions that
//!   let each node's copy in memory catch up with what any node changed.
//!
//! Failures: when PostgreSQL cannot be reached, writes and [`Journal::durable`] answer
//! [`ErrorKind::Unavailable`](callgate_backend::ErrorKind::Unavailable) (nothing is ever
//! called durable that PostgreSQL has not committed) and reads fail with the same error;
//! each connection is made again on its next use. Connections are plain TCP without TLS
//! (see [`Pg::open`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod conn;
mod dnc;
mod journal;
mod leads;
pub mod migrate;
mod records;

pub use callgate_backend::{CommitSnapshot, CommitTimes, COMMIT_BUCKETS};
pub use conn::{Pg, Settings};
pub use dnc::PgDnc;
pub use journal::{Journal, JournalHealth, Restored, StoredEnded, StoredLease, StoredTicket};
pub use leads::{ClaimSlot, Claimed, PgLeads, NO_ATTEMPT_ID};
pub use records::{PgRecords, MAX_ROWS};

use callgate_backend::Error;

/// PostgreSQL failed: the database is unreachable, the connection broke, or it refused a
/// statement. Never the caller's fault; a retry may succeed.
pub(crate) fn unavailable(what: &str, e: tokio_postgres::Error) -> Error {
    Error::unavailable(format!("postgres: {what}: {}", describe(&e))).with_source(e)
}

/// The error with the server's own message when it sent one (`tokio_postgres::Error`'s
/// `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Clamps a Unix ms time or a count to PostgreSQL's `bigint`.
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads back a `bigint` written by [`big`]; a negative value (never written) reads as 0.
pub(crate) fn unbig(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
