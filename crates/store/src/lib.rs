//! Where callgate's state lives on one node: the embedded backend ([`Embedded`], the
//! `LedgerBackend` of `callgate-backend`), with its SQLite journal and group commit.
//!
//! The journal keeps the ledger's live state (leases, waiting tickets, id counters and
//! runtime limit changes) in SQLite in WAL mode under the data directory. The governor
//! hands it every event *in ledger order* with [`Journal::submit`] and waits with
//! [`Journal::durable`] before it answers the client, so an acknowledged lease is on disk.
//!
//! One writer thread owns the connection. It takes every batch that is waiting, applies
//! them all in one transaction and commits once (`synchronous = FULL`, so the commit is
//! fsynced): under load, one fsync covers many requests (group commit) instead of one
//! each. After the commit it hands the events to the consumers (metrics, live events)
//! and then publishes the durable sequence number, so an answered client finds its
//! decision in the metrics and the event stream.
//!
//! When a commit fails, its batches (and every later one, until the governor has put
//! its ledger back to what is on disk and a probe commit succeeds) are *lost*: their
//! waiters get an error, their events reach no consumer. If the writer thread panics,
//! the journal says it is dead and never commits again. Ids are reserved on disk ahead
//! of use, so a restart never hands out an id twice; how tickets ended and each pool's
//! mean hold time are kept too. [`DirLock`] keeps a second server out of the directory.
//!
//! Beside the ledger's state it keeps call records and the callbacks that overflow steps
//! book ([`Journal::record`]), written by the same thread in the same commits, and read
//! through a second connection.
//!
//! Rows name pools, classes and flows by name, not by index, so a restart with a
//! reordered or edited configuration restores what still makes sense; the server decides
//! what to do with rows that name something that no longer exists.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod dnc;
mod embedded;
mod leads;
mod lock;
mod records;
mod restore;
mod rows;
mod waiters;
mod writer;

#[cfg(test)]
mod tests;

pub use callgate_backend::leads::{
    AttemptEnd, AttemptEnded, AttemptRow, CallbackLead, CampaignCounts, LeadOp, LeadOut, LeadRow, Leads, NewAttempt,
    NewLead, PendingLead, StoredCampaign,
};
pub use callgate_backend::records::{
    CallRecord, CallUpdate, Callback, CallbackQuery, CallbackState, CallbackUpdate, NewCallback, Record, Records,
};
pub use dnc::{AuditRow, DncEntry, DncStore};
pub use embedded::{names_of, Embedded, Restoring};
pub use leads::LeadStore;
pub use lock::{DirLock, LOCK_FILE};
pub use rows::{Restored, StoredEnded, StoredLease, StoredTicket};
pub use writer::{
    read_counter, CommitSnapshot, CommitTimes, Consumer, Fault, Health, Journal, Names, Opened, COMMIT_BUCKETS,
};

use std::fmt;

/// A journal failure. Every one of them is the server's fault (disk, permissions,
/// corruption), never the client's; a retry may help once the disk has room.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "journal: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}
