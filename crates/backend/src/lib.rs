//! Where the ledger's state lives, behind one fixed command set: the [`LedgerBackend`] trait
//! every backend implements (today the embedded one, `callgate_store::Embedded`: the
//! in-memory ledger with its SQLite journal) and the [`conformance`] suite every backend
//! must pass. Beside the ledger: [`records`] (call records and callbacks), [`leads`]
//! (campaigns, leads and attempts) and [`dnc`] (suppression lists and their audit trail),
//! each a trait of its own.
//!
//! The governor is the only caller. It resolves names to ids, runs the breaker gate and
//! keeps the waiters and cap sources of its node; every change of the ledger is one
//! [`Command`], executed atomically by the backend, which answers with an owned
//! [`Outcome`], the events the command produced (in ledger order) and a commit number.
//! Nothing the command did may be shown to anyone before [`LedgerBackend::durable`] says
//! that commit is durable. Reads answer with owned values, never references into the
//! backend's state, so a backend may keep its state anywhere (another process, Redis).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod blocking;
mod committed;
pub mod conformance;
pub mod dnc;
pub mod journaled;
pub mod leads;
pub mod records;
pub mod reference;

pub use blocking::{blocking, contended};
pub use committed::{CommitSnapshot, CommitTimes, Consumer, COMMIT_BUCKETS};

use callgate_core::{
    ClassId, Decision, Event, FlowId, Lease, LeaseId, PoolId, PoolView, Request, RequestError, Ticket, TicketId,
    TicketStatus,
};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, so that the trait stays usable as `dyn LedgerBackend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names of the ledger's pools, classes and flows by index, and the limits the
/// configuration gives the pools (a runtime limit change is stored against them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Pool names by `PoolId`.
    pub pools: Vec<Arc<str>>,
    /// Configured pool limits by `PoolId`.
    pub config_limits: Vec<u32>,
    /// Class names by `ClassId`.
    pub classes: Vec<Arc<str>>,
    /// Flow names by `FlowId`.
    pub flows: Vec<Arc<str>>,
}

/// Which lease a command names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseRef {
    /// By id.
    Id(LeaseId),
    /// By idempotency key (a provider's call id).
    Key(Arc<str>),
}

/// Every change the ledger knows, as data. Each runs atomically: nothing else happens
/// between its reads and its writes.
#[derive(Clone, Debug)]
pub enum Command {
    /// Grant, queue or reject.
    Acquire(Request),
    /// Releases the live lease `lease` names, if `owner` may (`None`: anyone, as an admin
    /// or a provider's edge); a lease another owner holds is [`Outcome::NotOwner`] and
    /// nothing changes.
    Release {
        /// The lease.
        lease: LeaseRef,
        /// Who asks.
        owner: Option<Arc<str>>,
    },
    /// Extends a live lease by `ttl_ms` (its own TTL when `None`), if `owner` may (as for
    /// [`Command::Release`]); a lease another owner holds is [`Outcome::NotOwner`] and
    /// nothing changes.
    Renew {
        /// The lease.
        lease: LeaseRef,
        /// The new TTL.
        ttl_ms: Option<u64>,
        /// Who asks (`None`: anyone).
        owner: Option<Arc<str>>,
    },
    /// Cancels a waiting ticket.
    Cancel(TicketId),
    /// Ends what is held for a call: releases the lease with this key, or else cancels
    /// the waiting ticket with this key.
    EndCall(Arc<str>),
    /// A reconciliation, in one step: ends the calls of `ended` (as [`Command::EndCall`])
    /// and renews the leases of `renew` (by key).
    Repair {
        /// Keys of calls that are over.
        ended: Vec<Arc<str>>,
        /// Keys of calls that are live.
        renew: Vec<Arc<str>>,
    },
    /// Changes a pool's limit (durably); lowering it ends the tickets that can no longer fit.
    SetLimit {
        /// The pool.
        pool: PoolId,
        /// The new limit.
        limit: u32,
    },
    /// Sets a pool's cap below its limit (`None`: the cap follows the limit). Caps are the
    /// node's cap sources' minimum; a backend re-applies the last one after it rebuilds.
    SetCap {
        /// The pool.
        pool: PoolId,
        /// The cap.
        cap: Option<u32>,
    },
    /// Expires leases and times out tickets that are due.
    Tick,
    /// A configuration reload: the ledger is rebuilt from `spec` and what it holds now,
    /// as a restart with the new configuration would rebuild it from what is durable
    /// (the same pools and classes in the same order; flows may change: a removed flow's
    /// leases and tickets live on without it). Pools get `caps`; whose limit or cap moved
    /// gets a limit event; then what can never fit ends and what fits is granted. The
    /// events after it name things by `names`. Refused ([`ErrorKind::Invalid`]) when a
    /// live lease or ticket would not fit the new configuration; nothing changes then.
    Reconfigure {
        /// The new configuration's ledger.
        spec: Box<callgate_core::LedgerSpec>,
        /// Its names.
        names: Box<Names>,
        /// The cap of each pool (`None`: it follows the limit).
        caps: Vec<Option<u32>>,
    },
    /// After a restore: expires what fell due while nobody ran, grants what now fits.
    Settle,
    /// A singleton duty's command ([`Command::Tick`], [`Command::Repair`], or an alert's
    /// [`Command::SetLimit`]) sent by the
    /// holder of the duty lease `fence` names: the backend runs `cmd` only while that
    /// lease is held with that token, checked atomically with `cmd` itself, so a former
    /// holder (paused past its lease, partitioned) changes nothing after another node took
    /// over; it is answered [`ErrorKind::Conflict`] with code `fenced`. A backend without
    /// duty leases (the embedded one: one node runs every duty) refuses it as invalid.
    Fenced {
        /// The lease and the token its holder was given.
        fence: Fence,
        /// The duty's command.
        cmd: Box<Command>,
    },
}

/// A duty lease's fencing token, as its holder presents it with a [`Command::Fenced`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The duty lease's name (`duties`).
    pub duty: Arc<str>,
    /// The token the holder was given when it took the lease (every holder gets a larger
    /// one than every holder before it).
    pub token: u64,
}

/// What a [`Command::Repair`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// `(call id, lease)` released because the call is over.
    pub released: Vec<(Arc<str>, LeaseId)>,
    /// `(call id, ticket)` cancelled because the caller is gone.
    pub cancelled: Vec<(Arc<str>, TicketId)>,
    /// Leases renewed because their call is still live.
    pub renewed: usize,
}

/// What ending a call freed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// Its lease was released (the first time).
    Released(LeaseId),
    /// Its waiting ticket was cancelled (the caller hung up while waiting).
    Cancelled(TicketId),
    /// Nothing was held (already ended, or never admitted through callgate).
    Nothing,
}

/// A command's answer, with owned values.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// [`Command::Acquire`]: the decision, the lease when granted, the ticket when queued.
    Decided {
        /// The ledger's decision.
        decision: Decision,
        /// The lease, when granted.
        lease: Option<Lease>,
        /// The ticket, when queued.
        ticket: Option<Ticket>,
    },
    /// [`Command::Release`]: the lease released (`None`: nothing live by that name).
    Released(Option<Lease>),
    /// [`Command::Release`] or [`Command::Renew`] of a lease another owner holds: nothing
    /// changed.
    NotOwner(LeaseId),
    /// [`Command::Renew`]: the lease as renewed (`None`: not live).
    Renewed(Option<Lease>),
    /// [`Command::Cancel`]: `None` when the ticket is unknown; `Some(false)` when it had
    /// already ended.
    Cancelled(Option<bool>),
    /// [`Command::EndCall`].
    CallEnded(CallEnd),
    /// [`Command::Repair`].
    Repaired(Repaired),
    /// [`Command::SetLimit`] and [`Command::SetCap`]: the pool after the change.
    Pool(PoolView),
    /// [`Command::Tick`], [`Command::Settle`], [`Command::Reconfigure`].
    Done,
}

/// A command as executed: its answer, the events it produced and the commit to wait for.
#[derive(Clone, Debug)]
pub struct Executed {
    /// The answer.
    pub outcome: Outcome,
    /// The events, in ledger order.
    pub events: Vec<Event>,
    /// Wait for [`LedgerBackend::durable`] of this before showing anything of it.
    pub commit: u64,
    /// The backend's "now" the command ran at (Unix ms).
    pub now: u64,
}

/// What kind of failure an [`Error`] is: whose fault, and so how an edge answers it (the
/// HTTP status, the Vapi reply, the TwiML answer are each chosen from it in one place, at
/// the edge; nothing below the edges knows HTTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's request is malformed or asks for something that cannot be done as
    /// asked; nothing changed.
    Invalid,
    /// The caller named something that does not exist (a pool, a flow, a campaign).
    NotFound,
    /// The caller may not act on what it named (another API key holds it).
    Forbidden,
    /// The request is valid, but the state of what it names does not allow it (a
    /// campaign that exists with other settings; a reload the live state refuses).
    Conflict,
    /// The backend cannot make changes durable now (disk full, connection lost, admission
    /// stopped): a retry may succeed.
    Unavailable,
    /// A broken invariant (a bug).
    Internal,
}

/// The one error of the governor and its backends, as in pingora: its kind, whether a
/// retry may help, a stable machine-readable code, a message for people and the error
/// that caused it, if any.
#[derive(Clone, Debug)]
pub struct Error {
    /// What kind.
    pub kind: ErrorKind,
    /// A stable machine-readable code (`unknown_pool`, `not_owner`, `unavailable`, …);
    /// clients match on it, so it never changes for the same failure.
    pub code: &'static str,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Why, for people.
    pub message: String,
    /// What caused it, when another error did.
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `kind` with `code` and `message`; retryable when the kind is
    /// [`ErrorKind::Unavailable`].
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Error {
        Error { kind, code, retryable: kind == ErrorKind::Unavailable, message: message.into(), source: None }
    }

    /// The backend cannot commit now (code `unavailable`).
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, "unavailable", message)
    }

    /// A request that cannot be carried out as asked; nothing changed (code `bad_request`).
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, "bad_request", message)
    }

    /// Something named that does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, code, message)
    }

    /// A request the state of what it names does not allow.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, code, message)
    }

    /// A caller that may not act on what it names.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Forbidden, code, message)
    }

    /// A broken invariant (code `internal`).
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, "internal", message)
    }

    /// The ledger refused the request itself.
    pub fn request(e: RequestError) -> Error {
        match e {
            RequestError::UnknownFlow => Error::not_found("unknown_flow", "unknown flow"),
            RequestError::UnknownClass => Error::not_found("unknown_class", "unknown class"),
            RequestError::BadPools(why) => Error::invalid(format!("bad pools: {why}")),
            RequestError::Duplicate => Error::invalid("an id or key that is already live"),
        }
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same error with `context: ` before its message.
    pub fn context(mut self, context: &str) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A ticket as read: the ticket while it waits, and its status (waiting, or how it ended
/// while its outcome is retained).
#[derive(Clone, Debug, PartialEq)]
pub struct TicketRead {
    /// The ticket, while it waits.
    pub ticket: Option<Ticket>,
    /// Its status.
    pub status: TicketStatus,
}

/// Which live leases a page of [`LedgerBackend::leases_page`] keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseFilter {
    /// Only leases holding units of this pool.
    pub pool: Option<PoolId>,
    /// Only leases of this flow.
    pub flow: Option<FlowId>,
    /// Only leases of this class.
    pub class: Option<ClassId>,
    /// Only leases whose key starts with this.
    pub key_prefix: Option<String>,
}

impl LeaseFilter {
    /// Whether `l` passes.
    pub fn keeps(&self, l: &Lease) -> bool {
        self.pool.is_none_or(|p| l.pools.iter().any(|pu| pu.pool == p))
            && self.flow.is_none_or(|f| l.flow == Some(f))
            && self.class.is_none_or(|c| l.class == c)
            && self.key_prefix.as_deref().is_none_or(|k| l.key.as_deref().is_some_and(|lk| lk.starts_with(k)))
    }
}

/// A waiting ticket with its place in line.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// The ticket.
    pub ticket: Ticket,
    /// 1 for the first in line (in the pool where it stands furthest back).
    pub position: u32,
    /// Estimated wait (ms).
    pub eta_ms: u64,
}

/// Whether the backend can commit, and since which failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Why commits fail now, if they do.
    pub failed: Option<String>,
    /// Bumped on each failure: a read that saw an epoch change may have seen state the
    /// failure took back.
    pub epoch: u64,
    /// The backend will never commit again (restart the process).
    pub dead: bool,
}

/// Where the ledger's state lives.
///
/// Implementations run each [`Command`] atomically and hand back its events; they own
/// durability (a command's changes survive a crash once [`LedgerBackend::durable`] of its
/// commit resolves), recovery (after a failed commit, the state goes back to what is
/// durable) and ids (never handed out twice, also across restarts).
pub trait LedgerBackend: Send + Sync + 'static {
    /// The backend's "now" (Unix ms): the time commands run at.
    fn now_ms(&self) -> u64;

    /// Runs one command atomically.
    fn execute(&self, cmd: Command) -> Result<Executed, Error>;

    /// [`LedgerBackend::execute`] without holding the caller's thread while the backend
    /// works: a backend that waits on a network (Redis) answers when its reply comes, so
    /// that many commands can be in flight at once. The governor's request paths call
    /// this, several at a time; the backend orders them, each still atomic. By default:
    /// [`LedgerBackend::execute`] (the embedded backend answers in microseconds).
    fn execute_async(&self, cmd: Command) -> BoxFuture<'_, Result<Executed, Error>> {
        Box::pin(std::future::ready(self.execute(cmd)))
    }

    /// Whether the synchronous calls wait on a network (Redis): a caller that holds a lock
    /// across one holds it for a round trip, or for as long as a stalled server keeps the
    /// call (up to its reply timeout), and whoever waits for that lock should wait off
    /// tokio's workers ([`blocking`]). By default false: the embedded backend answers in
    /// microseconds.
    fn waits_on_network(&self) -> bool {
        false
    }

    /// Resolves once commit `commit` (and every one before it) is durable.
    fn durable(&self, commit: u64) -> BoxFuture<'_, Result<(), Error>>;

    /// The last commit number handed out: a read that completed before this call saw
    /// nothing newer than it.
    fn submitted(&self) -> u64;

    /// Makes durable *here* a grant that this node is about to show but did not make
    /// itself, and answers the commit to wait for before showing it. `from_ticket`: the
    /// waiting ticket it was granted from. `seen`: an instant before this node read the
    /// grant from the shared ledger; like every append, this one counts as lost unless it
    /// is committed within the commit timeout of it (what a restore relies on).
    ///
    /// Several writers share one ledger in cluster mode, each with its own journal: a lease
    /// another node's command granted is in the shared ledger before that node's commit,
    /// which may still be under way or may be lost (its caller then hears 503). A node that
    /// answers such a grant to *its* caller (a ticket granted by another node's release, an
    /// idempotent retry that finds a lease) journals it too, so the answer never runs ahead
    /// of what a restore would bring back. Journaling a grant twice writes the same row (a
    /// released lease is not brought back). By default (one writer, whose every grant is
    /// durable before it is shown): the last commit handed out.
    fn vouch(&self, lease: &Lease, from_ticket: Option<TicketId>, seen: std::time::Instant) -> u64 {
        let _ = (lease, from_ticket, seen);
        self.submitted()
    }

    /// Whether commits succeed.
    fn health(&self) -> Health;

    /// Resolves when the backend is dead for good, with why.
    fn dead(&self) -> BoxFuture<'_, String>;

    /// A live lease.
    fn lease(&self, id: LeaseId) -> Option<Lease>;

    /// The live lease with this key.
    fn lease_by_key(&self, key: &str) -> Option<Lease>;

    /// A ticket, waiting or recently ended.
    fn ticket(&self, id: TicketId) -> Option<TicketRead>;

    /// The waiting ticket with this key.
    fn ticket_by_key(&self, key: &str) -> Option<TicketRead>;

    /// Every pool, by id.
    fn pools(&self) -> Vec<PoolView>;

    /// Live leases by id after `after`, those `filter` keeps, at most `limit` of them,
    /// looking at no more than `max_scan` leases; with where the next page starts
    /// (`None`: this was the last).
    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>);

    /// Every live lease (reconciliation, small accounts; prefer pages for the API).
    fn leases(&self) -> Vec<Lease>;

    /// The waiting tickets, first in line first (class priority, then arrival), at most
    /// `limit`.
    fn waiting(&self, limit: usize) -> Vec<Waiting>;

    /// Every waiting ticket, in no particular order.
    fn tickets(&self) -> Vec<Ticket>;

    /// `(live leases, waiting tickets)`.
    fn counts(&self) -> (usize, usize);

    /// `(next id, next sequence number)` the backend hands out: ids are never reused,
    /// and a restart may skip ahead but never back.
    fn counters(&self) -> (u64, u64);

    /// The backend itself, for test hooks that only one backend has (fault injection).
    #[doc(hidden)]
    fn as_any(&self) -> &dyn std::any::Any;
}
