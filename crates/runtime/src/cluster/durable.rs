//! Cluster mode with `[storage] database`: the Redis ledger, made durable in PostgreSQL
//! before anything of it is shown.
//!
//! [`Journaled`] is the node's [`LedgerBackend`]: each command runs on Redis (one Lua
//! call, as without a database), then its events go to this node's PostgreSQL
//! [`Journal`] in the order Redis ran them, and the command's commit number *is* the
//! journal's append number. [`LedgerBackend::durable`] waits for the journal's group
//! commit, so the governor answers (every path waits `durable` before it answers) only
//! once PostgreSQL has committed the grant, renewal, release or ticket.
//!
//! **PostgreSQL down.** The journal's commit fails: `durable` answers `unavailable`, the
//! request answers 503 with `Retry-After`, `/healthz` and `callgate_journal_up` say so.
//! Redis ran the command already, so what it granted is taken back: an acquire whose
//! append was lost has its own grant released and its own waiting ticket cancelled in
//! Redis ([`Undo`], on a task of its own, as soon as the journal says the append is
//! lost), unless an acquire retried by its key on another node found the lease and
//! marked it first (`RedisLedger::take_back`; that node journals it and answers
//! "granted"). Grants that an unjournaled command made *from other tickets* (a release that
//! granted the next in line) are left alone: their waiter may already have been told by
//! the stream (see below); they end when their holder releases them or at their TTL.
//! Other commands whose append was lost (a release, a renewal, a limit change) stay done
//! in Redis, and their caller hears 503: a retried release finds nothing live, and the
//! journal keeps the released lease's row until its expiry (it is only ever counted too
//! long after a Redis restart, never too short).
//!
//! A command that changed nothing (no events) is not appended; its commit is the last
//! append before it. While the journal fails, the node asks PostgreSQL a cheap question
//! every second and reports itself healthy once it answers, so a node that a load
//! balancer took out for its 503 `/healthz` comes back without traffic; any commit lost
//! after that reports the failure again. A Redis that lost the domain's state is given
//! back what the journal holds ([`super::restore`]), also at the node's start.
//!
//! **The bus.** The follower ([`super::follow`]) feeds the bus from the domain's stream;
//! before it publishes a batch it calls [`Journaled::settle_own`], which waits until every
//! append this node made so far (its own events in the batch among them: a command and
//! its append are made under one lock, so a stream entry the follower could read is
//! covered) is committed or lost. So no metric, live event or `/v1/events` entry shows
//! one of this node's grants before PostgreSQL has it. The stream carries another node's
//! events as soon as Redis ran them, before that node's commit: so each command's stream
//! entry carries this node's tag (`Tag`: this process's origin and the call's number,
//! passed with the call), and once the appends of a tagged call are committed (or lost),
//! a task here adds a settle mark to the stream (one for all that settled meanwhile;
//! [`settle`]).
//! Another node's follower holds a tagged entry back from its bus until the mark comes
//! (or [`super::HOLD_MAX`], should this node die first), and its reads of the shared
//! ledger (pools, lease lists, tickets) wait until its follower has shown everything the
//! stream held after the read ([`super::Following`]).
//!
//! **A lost reply.** A tagged call whose reply from Redis never came (the connection
//! broke, or timed out, after it was sent) is answered as Redis ran it: Redis keeps the
//! answer to this node's last tagged call, and the node reads it back; a call Redis had
//! not run by then is given up (refused should it still come) and answers `unavailable`
//! (`RedisLedger::execute_tagged`). So a lost reply leaves no grant unjournaled and
//! unanswered until its TTL.
//!
//! **Answers.** A grant another node's command made is never *answered* to a caller here
//! before this node journaled it too ([`LedgerBackend::vouch`]: the same rows, written
//! again; a released lease stays released): a caller waiting here whose ticket another
//! node's release granted, a ticket read (`GET /v1/tickets/{id}`, Twilio's wait URL), an
//! idempotent retry that finds a lease (another node's, or one whose command's reply never
//! came) or a waiting ticket. So a client told "granted" gets its lease back after Redis
//! restarts empty, whichever node's commit was under way or lost, and one told "queued"
//! its ticket.

use callgate_backend::leads::Leads;
use callgate_backend::records::Records;
use callgate_backend::{
    BoxFuture, Command, Error, Executed, Health, LeaseFilter, LedgerBackend, Names, Outcome, TicketRead, Waiting,
};
use callgate_core::{Decision, Event, Lease, LeaseId, LedgerSpec, PoolView, Ticket, TicketId};
use callgate_store_postgres::{Journal, Pg, PgLeads, PgRecords, Settings};
use callgate_store_redis::{batched, RedisLedger, MAX_BATCH};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use undo::{take_back, Undo};

/// After Redis is found empty, how long the restore waits before it reads the journal:
/// longer than the commit timeout (5 s), within which an append is committed after its
/// command was sent to Redis or counts as lost (`Journal::append_started`), so every grant
/// Redis made before it lost its state is committed (restored) or lost (never acknowledged).
/// Nothing is granted meanwhile: the ledger is gone.
const RESTORE_GRACE: Duration = Duration::from_secs(6);

pub(super) struct Inner {
    pub(super) redis: Arc<RedisLedger>,
    pub(super) journal: Arc<Journal>,
    /// Held across a command on Redis and its append (see the module docs: the follower
    /// relies on it).
    order: Mutex<()>,
    /// The ledger's configuration and names now (a reload changes them): what a restore
    /// into an emptied Redis is built for.
    pub(super) config: RwLock<(LedgerSpec, Names)>,
    /// The journal's failure epoch in which a probe ([`Inner::probe`]) found PostgreSQL
    /// answering again (`u64::MAX`: none). The journal clears its failure only with a
    /// commit, and a node that a load balancer took out of service for its 503 `/healthz`
    /// gets no requests to commit: the probe lets it say it is healthy again. Any lost
    /// commit takes the probe's word back.
    answered_in: AtomicU64,
    /// Leases and tickets (ids) that acquires made and whose commit has not been found
    /// durable yet: a retry by key that finds one is refused until it is settled, so a
    /// retry can never be answered with a grant that is about to be taken back.
    unsettled: Mutex<std::collections::HashSet<u64>>,
    /// The request paths' commands waiting for the next batch (see [`Inner::run_batch`]).
    pending: Mutex<Pending>,
    /// The tags of this node's stream entries, and their settle marks.
    marks: settle::Marker,
}

/// Commands waiting for a batch, and whether a batch is being run (one at a time: the
/// order lock is held across each).
#[derive(Default)]
struct Pending {
    jobs: Vec<(Command, oneshot::Sender<Result<Executed, Error>>)>,
    running: bool,
}

impl Inner {
    /// While the journal reports a failure: asks PostgreSQL a cheap question (the leases
    /// live after the end of time: none) and remembers when it answers.
    pub(super) async fn probe(&self) {
        let h = self.journal.health();
        if h.failed.is_none() || self.answered_in.load(Ordering::SeqCst) == h.epoch {
            return;
        }
        if self.journal.live_leases(u64::MAX).await.is_ok() {
            self.answered_in.store(h.epoch, Ordering::SeqCst);
        }
    }

    fn unsettled(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settled(&self, undo: &Undo) {
        let mut unsettled = self.unsettled();
        for id in undo.leases.iter().map(|l| l.0).chain(undo.tickets.iter().map(|t| t.0)) {
            unsettled.remove(&id);
        }
    }

    /// The journal's failure, unless a probe found PostgreSQL answering since.
    fn journal_failure(&self) -> (Option<String>, u64) {
        let h = self.journal.health();
        match h.failed {
            Some(_) if self.answered_in.load(Ordering::SeqCst) == h.epoch => (None, h.epoch),
            failed => (failed, h.epoch),
        }
    }

    async fn durable(&self, seq: u64) -> Result<(), Error> {
        let r = self.journal.durable(seq).await;
        if r.is_err() {
            self.answered_in.store(u64::MAX, Ordering::SeqCst);
        }
        r
    }

    /// The order lock. A batch holds it across its call to Redis, which a stalled Redis
    /// stretches to seconds: a command run on the synchronous path (under the governor's
    /// lock, on one of tokio's workers) waits for it off the workers
    /// ([`callgate_backend::contended`]).
    fn order(&self) -> std::sync::MutexGuard<'_, ()> {
        callgate_backend::contended(self.order.try_lock(), || self.order.lock()).unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn run(&self, cmd: Command) -> Result<Executed, Error> {
        let _order = self.order();
        let renamed = match &cmd {
            Command::Reconfigure { spec, names, .. } => Some(((**spec).clone(), (**names).clone())),
            _ => None,
        };
        // Its append counts as lost unless committed within the commit timeout from here.
        let started = Instant::now();
        let tag = self.marks.next_tag();
        let done = self.redis.execute_tagged(cmd, Some(&tag))?;
        // The reconfiguration's own events already name things the new way.
        if let Some((spec, names)) = renamed {
            self.journal.rename(names.clone());
            *self.config.write().unwrap_or_else(|p| p.into_inner()) = (spec, names);
        }
        let done = self.append(done, started);
        self.marks.to_settle(&tag, [&done]);
        Ok(done)
    }

    /// Appends what the command `done` (sent to Redis at `started`) changed; under the order
    /// lock. A command that changed nothing (a sweep with nothing due: fifty a second on the
    /// duty holder) is not appended: it waits for what came before it. An empty append
    /// would be "committed" without asking PostgreSQL and clear a failure it never saw.
    fn append(&self, done: Executed, started: Instant) -> Executed {
        let seq = if done.events.is_empty() {
            self.journal.submitted()
        } else {
            self.journal.append_started(done.events.clone(), started)
        };
        Executed { commit: seq, ..done }
    }

    /// [`Inner::run`] for many request-path commands at once: one script call on Redis runs
    /// them in order, then each one's events are appended in that order, all under the order
    /// lock (so the stream entry they share is covered as one command's would be).
    fn run_batch(&self, cmds: Vec<Command>) -> Vec<Result<Executed, Error>> {
        let _order = self.order();
        let started = Instant::now();
        let tag = self.marks.next_tag();
        let done = self.redis.execute_batch(cmds, Some(&tag));
        let done: Vec<_> = done.into_iter().map(|r| r.map(|done| self.append(done, started))).collect();
        self.marks.to_settle(&tag, done.iter().flatten());
        done
    }

    /// Runs batches of what waits until nothing does (blocking: on a thread of its own).
    fn drain(&self) {
        loop {
            let jobs: Vec<_> = {
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if p.jobs.is_empty() {
                    p.running = false;
                    return;
                }
                let n = p.jobs.len().min(MAX_BATCH);
                p.jobs.drain(..n).collect()
            };
            let (cmds, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            for (reply, done) in replies.into_iter().zip(self.run_batch(cmds)) {
                let _ = reply.send(done);
            }
        }
    }
}

/// What an acquire's answer still needs once it ran ([`Journaled::after`]).
enum After {
    /// Nothing: answer it.
    Done(Executed),
    /// An idempotent retry found this lease: mark it in Redis first (blocking or not, as
    /// the caller runs), then [`Journaled::marked`].
    Mark(Executed, Lease),
}

/// The Redis ledger with this node's PostgreSQL journal. See the module docs.
pub struct Journaled {
    inner: Arc<Inner>,
    undo: mpsc::UnboundedSender<(u64, Undo)>,
}

impl std::fmt::Debug for Journaled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journaled").field("journal", &self.inner.journal).finish_non_exhaustive()
    }
}

/// What `[storage] database` puts in PostgreSQL: the ledger's journal (through the
/// backend), call records and callbacks, campaigns and leads, suppression lists and the
/// audit trail, all shared by every node.
#[doc(hidden)]
pub struct Postgres {
    /// The Redis ledger with this node's journal.
    pub backend: Arc<Journaled>,
    /// Call records and callbacks.
    pub records: Arc<dyn Records>,
    /// Campaigns, leads and attempts.
    pub leads: Arc<dyn Leads>,
    /// The suppression lists and the audit trail of dial decisions.
    pub dnc: Arc<dyn callgate_backend::dnc::DncLists>,
}

impl Postgres {
    /// What the follower runs before it publishes a batch (see [`Journaled::settle_own`]).
    #[doc(hidden)]
    pub fn gate(&self) -> impl Fn() + Send + 'static {
        let (backend, handle) = (self.backend.clone(), tokio::runtime::Handle::current());
        move || backend.settle_own(&handle)
    }
}

/// Opens the database at `url` (connects and applies the migrations; blocking work, off
/// the async threads) and the stores on it, the journal of `domain` written as `node`.
#[doc(hidden)]
pub async fn open(
    url: String,
    redis: Arc<RedisLedger>,
    domain: String,
    node: String,
    spec: LedgerSpec,
    names: Names,
) -> Result<Postgres, String> {
    let retention_ms = spec.ticket_retention_ms;
    let (pg, leads) = tokio::task::spawn_blocking(move || {
        let pg = Pg::open(&url, Settings::default())?;
        let leads = PgLeads::open(&pg)?;
        Ok::<_, Error>((pg, leads))
    })
    .await
    .map_err(|e| format!("opening PostgreSQL: {e}"))?
    .map_err(|e| format!("[storage] database: {e}"))?;
    let journal = Arc::new(Journal::open(&pg, &domain, &node, names.clone(), retention_ms));
    tracing::info!(target = %pg.target(), "The journal, call records, campaigns and suppression lists are in PostgreSQL");
    let backend = Arc::new(Journaled::new(redis, journal, spec, names));
    // Redis may have restarted empty while no node ran (this node's open then made a new,
    // empty ledger): what PostgreSQL holds goes back first.
    super::restore::at_start(&backend.inner)
        .await
        .map_err(|e| format!("re-asserting the ledger from PostgreSQL: {e}"))?;
    let dnc = Arc::new(callgate_store_postgres::PgDnc::open(&pg));
    Ok(Postgres { backend, records: Arc::new(PgRecords::open(&pg)), leads: Arc::new(leads), dnc })
}

impl Journaled {
    /// The ledger `redis`, journaled in `journal`. Starts the task that takes back lost
    /// grants (call inside the server's runtime).
    pub(crate) fn new(redis: Arc<RedisLedger>, journal: Arc<Journal>, spec: LedgerSpec, names: Names) -> Journaled {
        let marks = settle::Marker::start(redis.clone(), journal.clone());
        let inner = Arc::new(Inner {
            redis,
            journal,
            order: Mutex::new(()),
            config: RwLock::new((spec, names)),
            answered_in: AtomicU64::new(u64::MAX),
            unsettled: Mutex::new(Default::default()),
            pending: Mutex::new(Pending::default()),
            marks,
        });
        super::restore::spawn(Arc::downgrade(&inner), RESTORE_GRACE);
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Undo)>();
        let undoer = inner.clone();
        tokio::spawn(async move {
            // Appends are committed in number order, so waiting for each in turn is as
            // quick as waiting for all at once.
            while let Some((seq, undo)) = rx.recv().await {
                if undoer.durable(seq).await.is_err() {
                    let inner = undoer.clone();
                    let undo = tokio::task::spawn_blocking(move || {
                        take_back(&inner, &undo);
                        undo
                    })
                    .await;
                    let Ok(undo) = undo else { continue };
                    undoer.settled(&undo);
                } else {
                    undoer.settled(&undo);
                }
            }
        });
        Journaled { inner, undo: tx }
    }

    /// The journal (its commit times for `/metrics`).
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// This process's origin in the tags of its stream entries.
    pub fn origin(&self) -> &str {
        self.inner.marks.origin()
    }

    /// Why the journal fails now, if it does (unless a probe found PostgreSQL answering).
    pub(crate) fn journal_failure(&self) -> Option<String> {
        self.inner.journal_failure().0
    }

    /// After an acquire that `started`: what it made is taken back if its append is lost; a
    /// retry by key that found an unsettled lease or ticket is refused, a settled one (maybe
    /// another node's) journaled here too.
    fn after(&self, is_acquire: bool, done: Executed, started: Instant) -> Result<After, Error> {
        let undo = Undo::of(is_acquire, &done);
        if !undo.is_empty() {
            let mut unsettled = self.inner.unsettled();
            unsettled.extend(undo.leases.iter().map(|l| l.0).chain(undo.tickets.iter().map(|t| t.0)));
            let _ = self.undo.send((done.commit, undo));
        } else if let Outcome::Decided { lease, ticket, decision } = &done.outcome {
            // An idempotent retry that found what an earlier acquire made (ids are shared
            // by leases and tickets, never reused).
            let found = lease.as_ref().map(|l| l.id.0).or(ticket.as_ref().map(|t| t.id.0));
            if found.is_some_and(|id| self.inner.unsettled().contains(&id)) {
                return Err(Error::unavailable("the first request with this key is not settled yet; retry"));
            }
            // Maybe another node's (its commit under way or lost), or its reply never came:
            // marked (by the caller, then [`Journaled::marked`]), then journaled here too.
            if let Some(l) = lease {
                let l = l.clone();
                return Ok(After::Mark(done, l));
            }
            if let (Some(ticket), Decision::Queued { position, .. }) = (ticket, decision) {
                let queued = Event::Queued { ticket: ticket.clone(), position: *position };
                let commit = self.inner.journal.append_started(vec![queued], started);
                return Ok(After::Done(Executed { commit, ..done }));
            }
        }
        Ok(After::Done(done))
    }

    /// An idempotent retry found `lease`, and marking it in Redis answered `marked`
    /// ([`RedisLedger::mark_found`]): so that a take-back by the node whose commit of it
    /// was lost leaves it. Journaled here too before it is answered (the same rows again).
    fn marked(&self, done: Executed, lease: &Lease, marked: bool, started: Instant) -> Result<Executed, Error> {
        if !marked {
            return Err(Error::unavailable("the lease this key found was taken back; retry"));
        }
        let commit = self.vouch(lease, None, started.into_std());
        Ok(Executed { commit, ..done })
    }

    /// Blocks until every append this node made so far is committed or lost (the
    /// follower, before it publishes a batch it read from the stream). `handle`: the
    /// server's runtime.
    pub(crate) fn settle_own(&self, handle: &tokio::runtime::Handle) {
        let seq = {
            let _order = self.inner.order();
            self.inner.journal.submitted()
        };
        // Lost appends were taken back (or are being): their events are published all the
        // same, as Redis ran them, and the take-back follows on the stream.
        let _ = handle.block_on(self.inner.journal.durable(seq));
    }
}

impl LedgerBackend for Journaled {
    fn now_ms(&self) -> u64 {
        self.inner.redis.now_ms()
    }

    fn execute(&self, cmd: Command) -> Result<Executed, Error> {
        let (is_acquire, started) = (matches!(cmd, Command::Acquire(_)), Instant::now());
        let done = self.inner.run(cmd)?;
        match self.after(is_acquire, done, started)? {
            After::Done(done) => Ok(done),
            After::Mark(done, lease) => {
                let marked = self.inner.redis.mark_found(lease.id)?;
                self.marked(done, &lease, marked, started)
            }
        }
    }

    fn waits_on_network(&self) -> bool {
        true
    }

    /// The request paths' commands go in batches: while one batch runs on Redis and is
    /// appended to the journal (on a blocking thread, under the order lock), the commands
    /// that arrive wait, and the next batch carries them all. Others run one by one.
    fn execute_async(&self, cmd: Command) -> BoxFuture<'_, Result<Executed, Error>> {
        if !batched(&cmd) {
            return Box::pin(std::future::ready(self.execute(cmd)));
        }
        Box::pin(async move {
            let (is_acquire, started) = (matches!(cmd, Command::Acquire(_)), Instant::now());
            let (reply, answer) = oneshot::channel();
            let start = {
                let mut p = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                p.jobs.push((cmd, reply));
                !std::mem::replace(&mut p.running, true)
            };
            if start {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || inner.drain());
            }
            let done = answer.await.map_err(|_| Error::internal("a batch of ledger commands was dropped"))??;
            match self.after(is_acquire, done, started)? {
                After::Done(done) => Ok(done),
                After::Mark(done, lease) => {
                    let marked = self.inner.redis.mark_found_async(lease.id).await?;
                    self.marked(done, &lease, marked, started)
                }
            }
        })
    }

    fn durable(&self, commit: u64) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.inner.durable(commit))
    }

    fn submitted(&self) -> u64 {
        self.inner.journal.submitted()
    }

    /// Journals the grant as if this node had made it (no order lock: nothing goes to the
    /// stream; no ticket's wait time is journaled).
    fn vouch(&self, lease: &Lease, from_ticket: Option<TicketId>, seen: std::time::Instant) -> u64 {
        let granted = Event::Granted { lease: lease.clone(), from_ticket: from_ticket.map(|t| (t, 0)) };
        self.inner.journal.append_started(vec![granted], Instant::from_std(seen))
    }

    fn health(&self) -> Health {
        let (redis, (journal, journal_epoch)) = (self.inner.redis.health(), self.inner.journal_failure());
        Health {
            failed: redis.failed.or(journal),
            // Both only grow: a new failure of either is a new epoch.
            epoch: redis.epoch + journal_epoch,
            dead: redis.dead,
        }
    }

    fn dead(&self) -> BoxFuture<'_, String> {
        self.inner.redis.dead()
    }

    fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.inner.redis.lease(id)
    }

    fn lease_by_key(&self, key: &str) -> Option<Lease> {
        self.inner.redis.lease_by_key(key)
    }

    fn ticket(&self, id: TicketId) -> Option<TicketRead> {
        self.inner.redis.ticket(id)
    }

    fn ticket_by_key(&self, key: &str) -> Option<TicketRead> {
        self.inner.redis.ticket_by_key(key)
    }

    fn pools(&self) -> Vec<PoolView> {
        self.inner.redis.pools()
    }

    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>) {
        self.inner.redis.leases_page(after, filter, limit, max_scan)
    }

    fn leases(&self) -> Vec<Lease> {
        self.inner.redis.leases()
    }

    fn waiting(&self, limit: usize) -> Vec<Waiting> {
        self.inner.redis.waiting(limit)
    }

    fn tickets(&self) -> Vec<Ticket> {
        self.inner.redis.tickets()
    }

    fn counts(&self) -> (usize, usize) {
        self.inner.redis.counts()
    }

    fn counters(&self) -> (u64, u64) {
        self.inner.redis.counters()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

mod settle;
#[cfg(test)]
mod tests;
mod undo;
