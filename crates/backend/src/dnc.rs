//! Suppression (do-not-call) lists, durable: the [`DncLists`] trait of the stores that keep
//! them and their audit trail (SQLite's `dnc.db` for one node, PostgreSQL for a cluster),
//! the values they take and give, and the [`conformance`] suite every store passes.
//!
//! The server keeps a copy of every list in memory (a hash set per list, so a check
//! before each dial is O(1)) and keeps it coherent with the store through the store's
//! *position*: every transaction that changes a list takes the next number, and changes
//! commit in that order (a writer holds the store's one position row until it commits), so
//! a copy that has applied every change up to position `p` is exact as of `p`. Before a
//! decision that must not use a stale list, the server asks the store's position (one
//! small read) and applies the changes after its own ([`DncLists::changes`]), which also
//! brings in what other nodes added.

pub mod conformance;

use crate::Error;

/// The most lists a store keeps (each is named in API paths and metrics): an addition that
/// would make one more is refused, whichever node asks.
pub const MAX_LISTS: usize = 64;

/// How long the audit trail keeps a dial decision: five years (US claims under the TCPA
/// can be brought for four), so that the trail is bounded and still answers for every
/// call a complaint could be about. Older rows are deleted by the audit writer, at most
/// once an hour of audited time ([`AUDIT_PRUNE_EVERY_MS`]).
pub const AUDIT_RETENTION_MS: u64 = 5 * 366 * 24 * 3_600_000;

/// How often (in audited time) an audit writer deletes rows past [`AUDIT_RETENTION_MS`].
pub const AUDIT_PRUNE_EVERY_MS: u64 = 3_600_000;

/// The most audit rows waiting for a writer; beyond it rows are dropped (and logged), so
/// a stuck disk or database cannot grow memory without bound.
pub const AUDIT_BACKLOG: usize = 100_000;

/// One entry of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DncEntry {
    /// The list.
    pub list: String,
    /// The E.164 digits, without the `+`.
    pub number: u64,
    /// Where it came from (`import:FILE`, `api`, `call:ID`).
    pub source: String,
    /// Unix ms.
    pub added_at: u64,
}

/// One change of a list, as [`DncLists::changes`] reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DncChange {
    /// The position of the transaction that made it.
    pub seq: u64,
    /// The list.
    pub list: String,
    /// The number.
    pub number: u64,
    /// `true`: added; `false`: taken off.
    pub listed: bool,
}

/// One decision of the dialer about one dial, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// The campaign.
    pub campaign: String,
    /// The attempt (0 when none was made: the lead was rescheduled).
    pub attempt: u64,
    /// The lead.
    pub lead_id: u64,
    /// E.164.
    pub number: String,
    /// Unix ms.
    pub at: u64,
    /// The callee's IANA zone.
    pub timezone: String,
    /// The callee's local time then.
    pub local_time: String,
    /// The callee's region (`US-FL`), empty when unknown.
    pub region: String,
    /// The windows and caps checked.
    pub rules: String,
    /// The lists checked, each `list@version`.
    pub lists: String,
    /// What was decided.
    pub decision: String,
}

/// Where the suppression lists and the audit trail are kept.
///
/// Calls block (a local disk, or a round trip to the database): call them off the async
/// workers. A write is durable when it returns; each is one transaction that takes the
/// next position when it changes something, and none when it does not.
pub trait DncLists: Send + Sync + 'static {
    /// Adds `numbers` to `list` in one transaction, each with `source` and `at`; a number
    /// the list has already keeps its first entry. Answers how many were new. Refused
    /// ([`ErrorKind::Invalid`](crate::ErrorKind::Invalid)) when `list` is new and
    /// [`MAX_LISTS`] lists exist already.
    fn add(&self, list: &str, numbers: &[u64], source: &str, at: u64) -> Result<usize, Error>;

    /// Takes `number` off `list`; answers whether it was on it.
    fn remove(&self, list: &str, number: u64) -> Result<bool, Error>;

    /// The entry of `number` on `list`, if any.
    fn get(&self, list: &str, number: u64) -> Result<Option<DncEntry>, Error>;

    /// The position of the last change committed (0: none yet). Cheap: what a node asks
    /// before it trusts its copy.
    fn position(&self) -> Result<u64, Error>;

    /// The changes after `after` (a position and a number: where the last page ended;
    /// `(0, 0)` for everything), in position order and by number within one, at most
    /// `limit`. Every change up to a position read before the call is among them; a
    /// number taken off and added again shows its last removal and its last addition.
    fn changes(&self, after: (u64, u64), limit: usize) -> Result<Vec<DncChange>, Error>;

    /// Every list with its version (bumped by each change of the list), by name.
    fn versions(&self) -> Result<Vec<(String, u64)>, Error>;

    /// Hands `row` to the audit writer (never waits; a full backlog drops it, logged).
    fn audit(&self, row: AuditRow);

    /// The audit rows of `campaign` from `since` (Unix ms), oldest first, at most
    /// `limit`, once every row handed over before the call is written.
    fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, Error>;
}
