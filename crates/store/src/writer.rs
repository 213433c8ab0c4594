// Long file: the journal writer thread: group commit, failure epochs and probes, and the event-to-row mapping must be read together to check durability.
//! The writer thread and the handle the governor talks to.

use crate::records;
use crate::rows::{self, Restored};
use crate::waiters::Waiters;
use crate::StoreError;
use crate::{CallRecord, Callback, CallbackQuery, Record};
pub use callgate_backend::Names;
pub use callgate_backend::{CommitSnapshot, CommitTimes, Consumer, COMMIT_BUCKETS};
use callgate_core::{Event, Lease, PoolUnits, Ticket, TicketOutcome};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use tokio::sync::watch;

trait NamesRows {
    fn pools(&self, pools: &[PoolUnits]) -> String;
}

impl NamesRows for Names {
    /// `[["pool", units], ...]` (the `pools` column, read back with serde), written
    /// without serde's owned copies of the names (this runs for every grant).
    fn pools(&self, pools: &[PoolUnits]) -> String {
        let mut out = Vec::with_capacity(16 * pools.len() + 2);
        out.push(b'[');
        for (i, p) in pools.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            // Writing a `str` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut out, &*self.pools[p.pool.index()]);
            out.push(b',');
            let _ = std::io::Write::write_fmt(&mut out, format_args!("{}", p.units));
            out.push(b']');
        }
        out.push(b']');
        String::from_utf8(out).unwrap_or_else(|_| "[]".into())
    }
}

struct Batch {
    seq: u64,
    events: Vec<Event>,
    next_id: u64,
    next_seq: u64,
    /// Call records and callbacks; they ride in the same group commit as events.
    records: Vec<Record>,
    /// `(pool index, mean hold time ms)` of the pools whose mean moved.
    holds: Vec<(usize, u64)>,
}

/// What the writer thread is handed, in order.
enum Msg {
    Batch(Batch),
    /// After a failed commit, once the governor has put its ledger back to what is on
    /// disk: try a commit again (the counters), and resume if it succeeds.
    Probe {
        seq: u64,
        epoch: u64,
        next_id: u64,
        next_seq: u64,
    },
    Fault(Fault),
    /// The ledger's names from here on (a configuration reload).
    Names(Names),
}

/// A fault injected into the writer by tests, through the real failure paths.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `PRAGMA query_only = ON` on the writer's connection: every later commit fails
    /// inside SQLite, as it does on a full disk or a read-only file system.
    ReadOnly,
    /// Lifts [`Fault::ReadOnly`].
    Writable,
    /// The next call of the committed-events consumer panics (as a serialisation bug
    /// would), which kills the writer thread.
    PanicInConsumer,
}

/// After this many failed commits the journal stays stopped until a restart: the lost
/// sequence ranges it keeps to answer waiters are bounded.
const MAX_FAILURES: usize = 64;

/// Ids are reserved on disk this far ahead of use, and the reservation moves when less
/// than half of it is left. A commit carries at most 8192 batches, each a handful of
/// ids, so the ids in flight between two commits stay far below half a block: every id
/// the ledger hands out is below the reservation on disk, and a restart, which starts at
/// the reservation, never hands an id out twice.
const ID_BLOCK: u64 = 1 << 16;

#[derive(Clone, Debug, Default)]
struct Durable {
    /// The last batch the writer has processed (committed, or lost in a failure).
    seq: u64,
    failed: Option<String>,
    /// How many times commits started failing.
    epoch: u64,
    /// Inclusive ranges of batches lost in failed commits (at most [`MAX_FAILURES`]).
    lost: Vec<(u64, u64)>,
    /// The writer thread is gone (it panicked): nothing will ever commit again.
    dead: bool,
}

impl Durable {
    fn verdict(&self, seq: u64) -> Result<(), StoreError> {
        let why = || self.failed.clone().unwrap_or_else(|| "a journal commit failed".into());
        if self.lost.iter().any(|&(a, b)| a <= seq && seq <= b) {
            return Err(StoreError(why()));
        }
        if self.seq >= seq {
            return Ok(());
        }
        Err(StoreError(why()))
    }

    fn lose(&mut self, first: u64, last: u64) {
        match self.lost.last_mut() {
            Some((_, b)) if *b + 1 >= first => *b = (*b).max(last),
            _ => self.lost.push((first, last)),
        }
    }
}

/// The journal's health, as the governor and `/healthz` read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Why commits fail, while they do.
    pub failed: Option<String>,
    /// How many times commits started failing (a new failure is a new epoch).
    pub epoch: u64,
    /// The writer thread died: the journal never commits again (restart the process).
    pub dead: bool,
}

/// The journal: an opened database whose writer has not started yet, so that the
/// server can restore the ledger and drop rows it cannot use first.
pub struct Opened {
    conn: Connection,
    path: PathBuf,
    /// How long ended tickets are kept (ms).
    retention_ms: u64,
    /// What the journal held.
    pub restored: Restored,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("restored", &self.restored).finish()
    }
}

/// The handle to a running journal.
pub struct Journal {
    tx: Option<mpsc::Sender<Msg>>,
    submitted: AtomicU64,
    /// Held while a sequence number is taken and its batch sent, so batches reach the
    /// writer in sequence order also when records are submitted outside the ledger's
    /// lock (a durable mark for batch n must never cover an unsent batch n - 1).
    order: Mutex<()>,
    durable: watch::Receiver<Durable>,
    /// The requests waiting in [`Journal::durable`], woken by the verdicts on their batches.
    waiters: Arc<Waiters>,
    thread: Option<JoinHandle<()>>,
    /// A second connection for reads (WAL lets it read beside the writer).
    reader: Option<Mutex<Connection>>,
    /// How long commits take (counted by the writer thread).
    commit_times: Arc<CommitTimes>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("submitted", &self.submitted).finish()
    }
}

impl Journal {
    /// Opens (or creates) `dir/callgate.db` and reads what it holds.
    pub fn open(dir: &Path) -> Result<Opened, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("callgate.db"))?;
        // WAL lets readers and the writer run side by side and makes a commit one
        // sequential append; FULL fsyncs that append, so an acknowledged lease survives a
        // power cut, not only a crash. Group commit pays for the fsync.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(rows::SCHEMA)?;
        conn.execute_batch(records::SCHEMA)?;
        records::migrate(&conn)?;
        rows::migrate(&conn)?;
        let restored = rows::load(&conn)?;
        Ok(Opened { conn, path: dir.join("callgate.db"), retention_ms: 10 * 60 * 1000, restored })
    }

    /// Takes the next sequence number for `events` (which must be handed over in ledger
    /// order: call this while holding the ledger's lock) and queues them for the writer.
    /// Returns the number to wait for with [`Journal::durable`]. An empty batch returns
    /// the last number handed out, so waiting on it covers everything before it (an
    /// idempotent repeat waits for the grant it repeats).
    pub fn submit(&self, events: Vec<Event>, next_id: u64, next_seq: u64) -> u64 {
        self.submit_with(events, next_id, next_seq, Vec::new())
    }

    /// [`Journal::submit`] with the pools' mean hold times that the events moved
    /// (`(pool index, ms)`), written in the same commit.
    pub fn submit_with(&self, events: Vec<Event>, next_id: u64, next_seq: u64, holds: Vec<(usize, u64)>) -> u64 {
        if events.is_empty() {
            return self.submitted.load(Ordering::Acquire);
        }
        self.send(|seq| Msg::Batch(Batch { seq, events, next_id, next_seq, records: Vec::new(), holds }))
    }

    /// Queues call records and callbacks for the writer; wait for the returned number
    /// with [`Journal::durable`] before telling anyone they are stored. They need no
    /// ledger order, so this may be called without the ledger's lock.
    pub fn record(&self, records: Vec<Record>) -> u64 {
        if records.is_empty() {
            return self.submitted.load(Ordering::Acquire);
        }
        // The id counters are only written with events (next_id 0 means "no change").
        self.send(|seq| {
            Msg::Batch(Batch { seq, events: Vec::new(), next_id: 0, next_seq: 0, records, holds: Vec::new() })
        })
    }

    /// After a failure of `epoch`, once the ledger in memory is back to what is on
    /// disk: asks the writer to try a commit again (the id counters). When it succeeds
    /// the journal is healthy again and admission resumes; everything submitted before
    /// the probe stays lost. Call it under the ledger's lock.
    pub fn probe(&self, epoch: u64, next_id: u64, next_seq: u64) -> u64 {
        self.send(|seq| Msg::Probe { seq, epoch, next_id, next_seq })
    }

    /// Injects a fault into the writer (tests only; see [`Fault`]).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Fault(fault));
        }
    }

    /// The ledger's names from now on (a configuration reload rebuilt the ledger): events
    /// submitted after this call are written and consumed with them. Call it under the
    /// ledger's lock, between the last event of the old ledger and the first of the new.
    pub fn rename(&self, names: Names) {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Names(names));
        }
    }

    /// How long the commits took so far.
    pub fn commit_times(&self) -> &CommitTimes {
        &self.commit_times
    }

    /// The last sequence number handed out: waiting for it covers everything
    /// submitted so far.
    pub fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Acquire)
    }

    fn send(&self, msg: impl FnOnce(u64) -> Msg) -> u64 {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(tx) = &self.tx {
            // A send fails only when the writer is gone; `durable` then reports it.
            let _ = tx.send(msg(seq));
        }
        seq
    }

    /// What is on disk now (read through the second connection): after a failed
    /// commit, the governor rebuilds its ledger from it.
    pub fn reload(&self) -> Result<Restored, StoreError> {
        self.read(rows::load)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let reader = self.reader.as_ref().ok_or_else(|| StoreError("the journal has no reader".into()))?;
        let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Booked callbacks, soonest due first.
    pub fn callbacks(&self, query: &CallbackQuery) -> Result<Vec<Callback>, StoreError> {
        self.read(|c| records::callbacks(c, query))
    }

    /// The most recently updated call records, newest first.
    pub fn calls(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        self.read(|c| records::calls(c, limit))
    }

    /// One call record.
    pub fn call(&self, provider: &str, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        self.read(|c| records::call(c, provider, call_id))
    }

    /// Waits until batch `seq` (and every batch before it) is committed. An error when
    /// the batch was lost in a failed commit, or commits are failing.
    pub async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        // While commits fail the writer still takes every batch in turn (and marks it
        // lost), so this waits for the verdict on this very batch, not for the next.
        std::future::poll_fn(|cx| {
            if let Some(verdict) = self.verdict(seq) {
                return Poll::Ready(verdict);
            }
            self.waiters.register(seq, cx.waker());
            // A verdict published before the registration is seen here (see `waiters`).
            match self.verdict(seq) {
                Some(verdict) => Poll::Ready(verdict),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The verdict on batch `seq`, once there is one.
    fn verdict(&self, seq: u64) -> Option<Result<(), StoreError>> {
        {
            let d = self.durable.borrow();
            if d.seq >= seq || d.dead {
                return Some(d.verdict(seq));
            }
        }
        // The writer is gone without a verdict (it only goes when the journal is dropped).
        self.durable.has_changed().is_err().then(|| Err(StoreError("the journal writer stopped".into())))
    }

    /// Blocking form of [`Journal::durable`] for callers outside an async runtime.
    pub fn durable_blocking(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.durable.clone();
        loop {
            {
                let d = rx.borrow_and_update();
                if d.seq >= seq || d.dead {
                    return d.verdict(seq);
                }
            }
            // No runtime here: poll gently. Only tools and tests use this.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// None while healthy; the reason while commits fail (the server then refuses
    /// admission: it cannot promise durability).
    pub fn failure(&self) -> Option<String> {
        self.durable.borrow().failed.clone()
    }

    /// Whether commits fail, since which failure epoch, and whether the writer died.
    pub fn health(&self) -> Health {
        let d = self.durable.borrow();
        Health { failed: d.failed.clone(), epoch: d.epoch, dead: d.dead }
    }

    /// Resolves once the writer thread has died (it panicked): nothing will ever be
    /// committed again, and the process should exit so that a supervisor restarts it.
    pub async fn dead(&self) -> String {
        let mut rx = self.durable.clone();
        let why = match rx.wait_for(|d| d.dead).await {
            Ok(d) => d.failed.clone().unwrap_or_else(|| "the journal writer died".into()),
            Err(_) => "the journal writer stopped".into(),
        };
        why
    }

    /// Flushes what was submitted and stops the writer.
    pub fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Opened {
    /// Deletes rows the server could not restore.
    pub fn forget(&mut self, leases: &[u64], tickets: &[u64]) -> Result<(), StoreError> {
        rows::forget(&self.conn, leases, tickets)
    }

    /// Keeps ended tickets on disk for `ms` after they ended (the ledger's retention
    /// time; 10 minutes unless set).
    pub fn retain_ended_for(mut self, ms: u64) -> Self {
        self.retention_ms = ms;
        self
    }

    /// Starts the writer thread.
    pub fn start(self, names: Names, consumer: impl Consumer) -> Journal {
        // Reads never block on the writer; if this second connection cannot be opened,
        // reads fail (and say so) while writes go on.
        let reader = Connection::open(&self.path)
            .and_then(|c| c.busy_timeout(std::time::Duration::from_secs(5)).map(|_| c))
            .map_err(|e| tracing::error!(error = %e, "Cannot open a reading connection to the journal"))
            .ok()
            .map(Mutex::new);
        let (tx, rx) = mpsc::channel::<Msg>();
        let (durable_tx, durable_rx) = watch::channel(Durable::default());
        let waiters = Arc::new(Waiters::default());
        let durable_tx = Publisher { tx: durable_tx, waiters: waiters.clone() };
        let commit_times = Arc::new(CommitTimes::default());
        let writer = Writer {
            commit_times: commit_times.clone(),
            conn: self.conn,
            names,
            consumer: Box::new(consumer),
            retention_ms: self.retention_ms,
            // The arrival numbers restored start at the `next_seq` row; the block above
            // them is not reserved yet.
            on_disk: OnDisk { id_reserved: self.restored.id_reserved, ..OnDisk::default() },
            panic_in_consumer: false,
            committed: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("callgate-journal".into())
            .spawn(move || {
                let mut writer = writer;
                // A panic (in a consumer, or a bug here) must not leave a silent dead
                // thread behind: the journal says it is dead, the governor stops
                // admission and the server exits so that a supervisor restarts it.
                let run = std::panic::catch_unwind(AssertUnwindSafe(|| writer.run(&rx, &durable_tx)));
                if let Err(panic) = run {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(panic = %what, "The journal writer thread died; admission stops");
                    durable_tx.send_modify(|d| {
                        if d.failed.is_none() {
                            d.epoch += 1;
                        }
                        d.failed = Some(format!("the journal writer thread died: {what}"));
                        d.dead = true;
                    });
                }
            })
            .expect("spawn journal thread");
        Journal {
            tx: Some(tx),
            submitted: AtomicU64::new(0),
            order: Mutex::new(()),
            durable: durable_rx,
            waiters,
            thread: Some(thread),
            reader,
            commit_times,
        }
    }
}

/// Where the writer publishes its verdicts: the `watch` channel that health and
/// [`Journal::dead`] read, then a wake of the requests whose batches the verdict covers.
struct Publisher {
    tx: watch::Sender<Durable>,
    waiters: Arc<Waiters>,
}

impl Publisher {
    fn borrow(&self) -> watch::Ref<'_, Durable> {
        self.tx.borrow()
    }

    /// Changes the verdicts, then wakes whom they cover (everyone, once the writer died).
    fn send_modify(&self, change: impl FnOnce(&mut Durable)) {
        self.tx.send_modify(change);
        let (seq, dead) = {
            let d = self.tx.borrow();
            (d.seq, d.dead)
        };
        self.waiters.wake_through(seq, dead);
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    names: Names,
    consumer: Box<dyn Consumer>,
    retention_ms: u64,
    /// What the counters and mean hold times on disk say.
    on_disk: OnDisk,
    /// [`Fault::PanicInConsumer`] is armed.
    panic_in_consumer: bool,
    commit_times: Arc<CommitTimes>,
    /// The events of the group being handed to the consumer, in ledger order (kept to
    /// reuse its allocation).
    committed: Vec<Event>,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Msg>, durable: &Publisher) {
        let mut msgs: Vec<Msg> = Vec::new();
        let mut group: Vec<Batch> = Vec::new();
        while let Ok(first) = rx.recv() {
            msgs.push(first);
            // Everything that arrived while the last commit was under way rides in this
            // one; a bound keeps a single transaction from growing huge.
            while msgs.len() < 8192 {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            for m in msgs.drain(..) {
                match m {
                    Msg::Batch(b) => group.push(b),
                    Msg::Probe { seq, epoch, next_id, next_seq } => {
                        self.commit_group(&mut group, durable);
                        self.probe(seq, epoch, next_id, next_seq, durable);
                    }
                    Msg::Fault(f) => {
                        self.commit_group(&mut group, durable);
                        self.inject(f);
                    }
                    Msg::Names(names) => {
                        // Events submitted before the change name things by the old ids.
                        self.commit_group(&mut group, durable);
                        self.consumer.renamed(&names);
                        self.names = names;
                    }
                }
            }
            self.commit_group(&mut group, durable);
        }
        self.flush_holds(durable);
    }

    /// Writes the mean hold times still waiting for their turn (when the journal is
    /// closed): a restart finds the latest.
    fn flush_holds(&mut self, durable: &Publisher) {
        if self.on_disk.holds.is_empty() || durable.borrow().failed.is_some() {
            return;
        }
        let written = self.conn.transaction().map_err(StoreError::from).and_then(|tx| {
            write_holds(&tx, &self.names, &self.on_disk.holds)?;
            tx.commit()?;
            Ok(())
        });
        match written {
            Ok(()) => self.on_disk.holds.clear(),
            Err(e) => tracing::warn!(error = %e, "Cannot write the pools' mean hold times at close"),
        }
    }

    fn commit_group(&mut self, group: &mut Vec<Batch>, durable: &Publisher) {
        let (Some(first), Some(last)) = (group.first().map(|b| b.seq), group.last().map(|b| b.seq)) else {
            return;
        };
        let failing = durable.borrow().failed.is_some();
        let result = if failing {
            Err(StoreError("commits are failing".into()))
        } else {
            // Measured for the commit-time histogram only; nothing decides on it.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            let r = commit(&mut self.conn, &self.names, group, self.retention_ms, &mut self.on_disk);
            self.commit_times.observe(started.elapsed().as_secs_f64());
            r
        };
        match result {
            Ok(()) => {
                // The consumers (metrics, live events) run before the waiters are told,
                // so that a client who got its answer finds it in `/metrics` and the
                // event stream. A consumer that panics still lets the committed batches
                // be answered, then takes the thread down (see `start`).
                // The whole group in one call, in ledger order: each subscriber takes its
                // lock once per commit rather than once per request.
                let consumed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.committed.clear();
                    for b in group.iter_mut() {
                        self.committed.append(&mut b.events);
                    }
                    if !self.committed.is_empty() {
                        if std::mem::take(&mut self.panic_in_consumer) {
                            panic!("injected fault: the committed-events consumer panicked");
                        }
                        self.consumer.committed(&self.committed);
                    }
                    self.committed.clear();
                }));
                durable.send_modify(|d| d.seq = last);
                if let Err(panic) = consumed {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "Journal commit failed; admission stops until a commit succeeds again");
                }
                durable.send_modify(|d| {
                    if d.failed.is_none() {
                        d.epoch += 1;
                        d.failed = Some(e.to_string());
                    }
                    d.lose(first, last);
                    d.seq = last;
                });
            }
        }
        group.clear();
    }

    fn probe(&mut self, seq: u64, epoch: u64, next_id: u64, next_seq: u64, durable: &Publisher) {
        let (failing, current, failures) = {
            let d = durable.borrow();
            (d.failed.is_some(), d.epoch, d.lost.len())
        };
        // A probe for an older failure, or after too many, resumes nothing.
        let may_resume = failing && epoch == current && failures < MAX_FAILURES;
        if failing && !may_resume {
            durable.send_modify(|d| {
                d.lose(seq, seq);
                d.seq = seq;
            });
            return;
        }
        let probe = Batch { seq, events: Vec::new(), next_id, next_seq, records: Vec::new(), holds: Vec::new() };
        match commit_counters(&mut self.conn, &probe, &mut self.on_disk) {
            Ok(()) => {
                if failing {
                    tracing::warn!("A journal commit succeeded again; admission resumes");
                }
                durable.send_modify(|d| {
                    d.failed = None;
                    d.seq = seq;
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "The journal still cannot commit");
                durable.send_modify(|d| {
                    if d.failed.is_none() {
                        d.epoch += 1;
                        d.failed = Some(e.to_string());
                    }
                    d.lose(seq, seq);
                    d.seq = seq;
                });
            }
        }
    }

    fn inject(&mut self, fault: Fault) {
        let result = match fault {
            Fault::ReadOnly => self.conn.pragma_update(None, "query_only", true),
            Fault::Writable => self.conn.pragma_update(None, "query_only", false),
            Fault::PanicInConsumer => {
                self.panic_in_consumer = true;
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, ?fault, "Cannot inject a journal fault");
        }
    }
}

/// What the counter and mean-hold rows on disk say, so that a commit writes only what
/// must be there: the counters when a reservation moves (once every half block of ids or
/// arrivals), the pools' mean hold times at most once a second. Each row a commit writes
/// costs its statement and, most often, one more page in the WAL.
#[derive(Clone, Debug, Default)]
struct OnDisk {
    /// The id high-water mark on disk.
    id_reserved: u64,
    /// The arrival number a restart starts at (the `next_seq` row): like ids, arrival
    /// numbers are reserved ahead, so that a restart never numbers an arrival below one
    /// handed out before it.
    seq_reserved: u64,
    /// Mean hold times not written yet, `(pool index, ms)`, the latest of each pool.
    holds: Vec<(usize, u64)>,
    /// When (ledger time, Unix ms) the mean hold times were last written.
    holds_at: u64,
}

/// Mean hold times are written at most this often (ledger time). They only shape waiting
/// estimates: a crash forgets at most this much of their movement, and a clean close
/// writes what is left.
const HOLDS_EVERY_MS: u64 = 1_000;

/// Moves the id and arrival-number reservations ahead when less than half a block of
/// either is left (`all`: writes both counters in any case). In between, no counter row
/// is written: a restart starts ids at the reservation and arrival numbers at theirs, both
/// at least half a block ahead of every number handed out, so nothing is numbered twice
/// or goes back.
fn write_counters(tx: &Transaction<'_>, b: &Batch, on_disk: &mut OnDisk, all: bool) -> Result<(), StoreError> {
    let ids = b.next_id.saturating_add(ID_BLOCK / 2) > on_disk.id_reserved;
    let seqs = b.next_seq.saturating_add(ID_BLOCK / 2) > on_disk.seq_reserved;
    if !all && !ids && !seqs {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO counters (name, value) VALUES (?1, ?2)")?;
    stmt.execute(params!["next_id", b.next_id as i64])?;
    if ids {
        on_disk.id_reserved = b.next_id.saturating_add(ID_BLOCK);
        stmt.execute(params!["id_reserved", on_disk.id_reserved as i64])?;
    }
    if seqs {
        on_disk.seq_reserved = b.next_seq.saturating_add(ID_BLOCK);
    }
    if all || seqs {
        stmt.execute(params!["next_seq", on_disk.seq_reserved.max(b.next_seq) as i64])?;
    }
    Ok(())
}

fn write_holds(tx: &Transaction<'_>, names: &Names, holds: &[(usize, u64)]) -> Result<(), StoreError> {
    for &(pool, ms) in holds {
        if let Some(name) = names.pools.get(pool) {
            tx.prepare_cached("INSERT OR REPLACE INTO pool_holds (pool, mean_hold_ms) VALUES (?1, ?2)")?
                .execute(params![&**name, ms.min(i64::MAX as u64) as i64])?;
        }
    }
    Ok(())
}

fn commit_counters(conn: &mut Connection, b: &Batch, on_disk: &mut OnDisk) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let mut next = on_disk.clone();
    write_counters(&tx, b, &mut next, true)?;
    tx.commit()?;
    *on_disk = next;
    Ok(())
}

fn commit(
    conn: &mut Connection,
    names: &Names,
    batches: &[Batch],
    retention_ms: u64,
    on_disk: &mut OnDisk,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let mut latest = 0;
    // What the disk will say once this commits; nothing changes if it does not.
    let mut next = on_disk.clone();
    let mut stmts = Stmts::new(&tx);
    for b in batches {
        for e in &b.events {
            apply(&mut stmts, names, e)?;
            latest = latest.max(e.at());
        }
        for r in &b.records {
            records::apply(&tx, r)?;
        }
        // Only each pool's last mean counts.
        for &(pool, ms) in &b.holds {
            match next.holds.iter_mut().find(|(p, _)| *p == pool) {
                Some(h) => h.1 = ms,
                None => next.holds.push((pool, ms)),
            }
        }
    }
    drop(stmts);
    if !next.holds.is_empty() && latest >= next.holds_at.saturating_add(HOLDS_EVERY_MS) {
        write_holds(&tx, names, &next.holds)?;
        next.holds.clear();
        next.holds_at = latest;
    }
    if let Some(b) = batches.iter().rev().find(|b| !b.events.is_empty()) {
        write_counters(&tx, b, &mut next, false)?;
    }
    if latest > retention_ms {
        // Outcomes older than the retention time are forgotten by the ledger too.
        tx.prepare_cached("DELETE FROM ended_tickets WHERE at < ?1")?
            .execute(params![(latest - retention_ms).min(i64::MAX as u64) as i64])?;
    }
    tx.commit()?;
    *on_disk = next;
    Ok(())
}

/// The statements an event writes, in [`Stmts`].
#[derive(Clone, Copy)]
enum Sql {
    InsertLease,
    DeleteLease,
    RenewLease,
    InsertTicket,
    DeleteTicket,
    InsertEnded,
}

impl Sql {
    const COUNT: usize = 6;

    fn text(self) -> &'static str {
        match self {
            Sql::InsertLease => {
                "INSERT OR REPLACE INTO leases (id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            }
            Sql::DeleteLease => "DELETE FROM leases WHERE id = ?1",
            Sql::RenewLease => "UPDATE leases SET expires_at = ?2, ttl_ms = ?3 WHERE id = ?1",
            Sql::InsertTicket => {
                "INSERT OR REPLACE INTO tickets (id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms, meta, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            }
            Sql::DeleteTicket => "DELETE FROM tickets WHERE id = ?1",
            Sql::InsertEnded => {
                "INSERT OR REPLACE INTO ended_tickets (id, outcome, lease, flow, at) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
        }
    }
}

/// The statements of one commit, each taken from the connection's statement cache the
/// first time the commit needs it and kept until the commit ends. Taking it from the cache
/// for every event (hashing its text, then resetting it and putting it back) cost more
/// than binding its parameters (BENCHMARKS.md, "Where the embedded store's time went").
struct Stmts<'c> {
    conn: &'c Connection,
    prepared: [Option<rusqlite::CachedStatement<'c>>; Sql::COUNT],
}

impl<'c> Stmts<'c> {
    fn new(conn: &'c Connection) -> Self {
        Stmts { conn, prepared: Default::default() }
    }

    /// Runs `sql` with `params`; the number of rows it changed.
    fn execute(&mut self, sql: Sql, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        let slot = &mut self.prepared[sql as usize];
        if let Some(stmt) = slot {
            return Ok(stmt.execute(params)?);
        }
        Ok(slot.insert(self.conn.prepare_cached(sql.text())?).execute(params)?)
    }
}

fn insert_ended(
    tx: &mut Stmts<'_>,
    names: &Names,
    id: u64,
    outcome: TicketOutcome,
    flow: Option<callgate_core::FlowId>,
    at: u64,
) -> Result<(), StoreError> {
    let (outcome, lease) = outcome.parts();
    let lease = lease.map(|l| l.0 as i64);
    tx.execute(
        Sql::InsertEnded,
        params![id as i64, outcome, lease, flow.and_then(|f| names.flows.get(f.index())).map(|f| &**f), at as i64],
    )?;
    Ok(())
}

fn insert_lease(tx: &mut Stmts<'_>, names: &Names, l: &Lease) -> Result<(), StoreError> {
    tx.execute(
        Sql::InsertLease,
        params![
            l.id.0 as i64,
            l.key.as_deref(),
            &*names.classes[l.class.index()],
            l.flow.map(|f| &*names.flows[f.index()]),
            names.pools(&l.pools),
            l.granted_at as i64,
            l.expires_at as i64,
            l.ttl_ms as i64,
            l.meta.as_deref(),
            l.owner.as_deref(),
        ],
    )?;
    Ok(())
}

fn insert_ticket(tx: &mut Stmts<'_>, names: &Names, t: &Ticket) -> Result<(), StoreError> {
    tx.execute(
        Sql::InsertTicket,
        params![
            t.id.0 as i64,
            t.key.as_deref(),
            &*names.classes[t.class.index()],
            t.flow.map(|f| &*names.flows[f.index()]),
            names.pools(&t.pools),
            t.seq as i64,
            t.enqueued_at as i64,
            t.deadline as i64,
            t.ttl_ms as i64,
            t.meta.as_deref(),
            t.owner.as_deref(),
        ],
    )?;
    Ok(())
}

fn apply(tx: &mut Stmts<'_>, names: &Names, e: &Event) -> Result<(), StoreError> {
    match e {
        Event::Granted { lease, from_ticket } => {
            if let Some((t, _)) = from_ticket {
                tx.execute(Sql::DeleteTicket, params![t.0 as i64])?;
                insert_ended(tx, names, t.0, TicketOutcome::Granted(lease.id), lease.flow, lease.granted_at)?;
            }
            insert_lease(tx, names, lease)?;
        }
        Event::Queued { ticket, .. } => insert_ticket(tx, names, ticket)?,
        Event::Renewed { lease, expires_at, ttl_ms, .. } => {
            tx.execute(Sql::RenewLease, params![lease.0 as i64, *expires_at as i64, *ttl_ms as i64])?;
        }
        Event::Released { lease, .. } | Event::Expired { lease, .. } => {
            tx.execute(Sql::DeleteLease, params![lease.id.0 as i64])?;
        }
        Event::TicketEnded { ticket, outcome, at } => {
            debug_assert!(!matches!(outcome, TicketOutcome::Granted(_)));
            tx.execute(Sql::DeleteTicket, params![ticket.id.0 as i64])?;
            insert_ended(tx, names, ticket.id.0, *outcome, ticket.flow, *at)?;
        }
        Event::LimitChanged { pool, limit, .. } => {
            let name = &*names.pools[pool.index()];
            let config_limit = names.config_limits[pool.index()];
            if *limit == config_limit {
                tx.conn.prepare_cached("DELETE FROM pool_limits WHERE pool = ?1")?.execute(params![name])?;
            } else {
                tx.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO pool_limits (pool, limit_units, config_limit) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![name, *limit as i64, config_limit as i64])?;
            }
        }
        Event::Rejected { .. } => {}
    }
    Ok(())
}

/// Reads one counter (for tests and tools).
pub fn read_counter(conn: &Connection, name: &str) -> Result<Option<u64>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", params![name], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|v| v as u64))
}

#[cfg(test)]
mod pools_column {
    use super::NamesRows;
    use callgate_backend::Names;
    use callgate_core::{PoolId, PoolUnits};

    /// The column is what serde writes for `[(name, units)]`, escapes included, so the
    /// restore's serde reader reads it back.
    #[test]
    fn is_what_serde_writes() {
        let names = Names {
            pools: vec!["acct".into(), "we \"quote\" \\ and \u{1}".into(), "ünïcode".into()],
            ..Names::default()
        };
        let cases: Vec<Vec<PoolUnits>> = vec![
            vec![],
            vec![PoolUnits { pool: PoolId(0), units: 1 }],
            vec![PoolUnits { pool: PoolId(1), units: 4_000_000_000 }, PoolUnits { pool: PoolId(2), units: 7 }],
        ];
        for pools in cases {
            let named: Vec<(String, u32)> =
                pools.iter().map(|p| (names.pools[p.pool.index()].to_string(), p.units)).collect();
            let column = names.pools(&pools);
            assert_eq!(column, serde_json::to_string(&named).unwrap());
            let back: Vec<(String, u32)> = serde_json::from_str(&column).unwrap();
            assert_eq!(back, named);
        }
    }
}
