//! The writer thread and the handle the governor talks to.

use crate::records::{self, CallRecord, Callback, CallbackQuery, Record};
use crate::rows::{self, pools_json, Restored};
use crate::StoreError;
use callgate_core::{Event, Lease, PoolUnits, Ticket, TicketOutcome};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::watch;

/// Names of the ledger's pools, classes and flows by index, as rows store them, and the
/// limits the configuration gives the pools.
#[derive(Clone, Debug, Default)]
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

impl Names {
    fn pools(&self, pools: &[PoolUnits]) -> String {
        let named: Vec<(String, u32)> =
            pools.iter().map(|p| (self.pools[p.pool.index()].to_string(), p.units)).collect();
        pools_json(&named)
    }
}

/// What happens to events once they are durable (metrics, live events). Runs on the
/// writer thread, after the durable sequence number is published: keep it quick.
pub trait Consumer: Send + 'static {
    /// Called with every committed event, in ledger order.
    fn committed(&mut self, events: &[Event]);
}

impl<F: FnMut(&[Event]) + Send + 'static> Consumer for F {
    fn committed(&mut self, events: &[Event]) {
        self(events)
    }
}

struct Batch {
    seq: u64,
    events: Vec<Event>,
    next_id: u64,
    next_seq: u64,
    /// Call records and callbacks; they ride in the same group commit as events.
    records: Vec<Record>,
}

#[derive(Clone, Debug, Default)]
struct Durable {
    seq: u64,
    failed: Option<String>,
}

/// The journal: an opened database whose writer has not started yet, so that the
/// server can restore the ledger and drop rows it cannot use first.
pub struct Opened {
    conn: Connection,
    path: PathBuf,
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
    tx: Option<mpsc::Sender<Batch>>,
    submitted: AtomicU64,
    /// Held while a sequence number is taken and its batch sent, so batches reach the
    /// writer in sequence order also when records are submitted outside the ledger's
    /// lock (a durable mark for batch n must never cover an unsent batch n - 1).
    order: Mutex<()>,
    durable: watch::Receiver<Durable>,
    thread: Option<JoinHandle<()>>,
    /// A second connection for reads (WAL lets it read beside the writer).
    reader: Option<Mutex<Connection>>,
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
        Ok(Opened { conn, path: dir.join("callgate.db"), restored })
    }

    /// Takes the next sequence number for `events` (which must be handed over in ledger
    /// order: call this while holding the ledger's lock) and queues them for the writer.
    /// Returns the number to wait for with [`Journal::durable`]. An empty batch returns
    /// the last number handed out, so waiting on it covers everything before it (an
    /// idempotent repeat waits for the grant it repeats).
    pub fn submit(&self, events: Vec<Event>, next_id: u64, next_seq: u64) -> u64 {
        if events.is_empty() {
            return self.submitted.load(Ordering::Acquire);
        }
        self.send(|seq| Batch { seq, events, next_id, next_seq, records: Vec::new() })
    }

    /// Queues call records and callbacks for the writer; wait for the returned number
    /// with [`Journal::durable`] before telling anyone they are stored. They need no
    /// ledger order, so this may be called without the ledger's lock.
    pub fn record(&self, records: Vec<Record>) -> u64 {
        if records.is_empty() {
            return self.submitted.load(Ordering::Acquire);
        }
        // The id counters are only written with events (next_id 0 means "no change").
        self.send(|seq| Batch { seq, events: Vec::new(), next_id: 0, next_seq: 0, records })
    }

    fn send(&self, batch: impl FnOnce(u64) -> Batch) -> u64 {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(tx) = &self.tx {
            // A send fails only when the writer is gone; `durable` then reports it.
            let _ = tx.send(batch(seq));
        }
        seq
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

    /// Waits until batch `seq` (and every batch before it) is committed.
    pub async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| StoreError("the journal writer stopped".into()))?;
        match &state.failed {
            Some(why) => Err(StoreError(why.clone())),
            None => Ok(()),
        }
    }

    /// Blocking form of [`Journal::durable`] for callers outside an async runtime.
    pub fn durable_blocking(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.durable.clone();
        loop {
            {
                let d = rx.borrow_and_update();
                if let Some(why) = &d.failed {
                    return Err(StoreError(why.clone()));
                }
                if d.seq >= seq {
                    return Ok(());
                }
            }
            // No runtime here: poll gently. Only tools and tests use this.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// None while healthy; the reason once a commit has failed (the server then stops
    /// admitting: it cannot promise durability).
    pub fn failure(&self) -> Option<String> {
        self.durable.borrow().failed.clone()
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

    /// Starts the writer thread.
    pub fn start(self, names: Names, mut consumer: impl Consumer) -> Journal {
        // Reads never block on the writer; if this second connection cannot be opened,
        // reads fail (and say so) while writes go on.
        let reader = Connection::open(&self.path)
            .and_then(|c| c.busy_timeout(std::time::Duration::from_secs(5)).map(|_| c))
            .map_err(|e| tracing::error!(error = %e, "Cannot open a reading connection to the journal"))
            .ok()
            .map(Mutex::new);
        let (tx, rx) = mpsc::channel::<Batch>();
        let (durable_tx, durable_rx) = watch::channel(Durable::default());
        let mut conn = self.conn;
        let thread = std::thread::Builder::new()
            .name("callgate-journal".into())
            .spawn(move || {
                let mut pending: Vec<Batch> = Vec::new();
                let mut failed: Option<String> = None;
                while let Ok(first) = rx.recv() {
                    pending.push(first);
                    // Everything that arrived while the last commit was under way rides
                    // in this one; a bound keeps a single transaction from growing huge.
                    while pending.len() < 8192 {
                        match rx.try_recv() {
                            Ok(b) => pending.push(b),
                            Err(_) => break,
                        }
                    }
                    let last = pending.last().map_or(0, |b| b.seq);
                    if failed.is_none() {
                        if let Err(e) = commit(&mut conn, &names, &pending) {
                            tracing::error!(error = %e, "Journal commit failed; admission stops");
                            failed = Some(e.to_string());
                        }
                    }
                    durable_tx.send_modify(|d| {
                        d.seq = last;
                        d.failed = failed.clone();
                    });
                    if failed.is_none() {
                        for b in pending.iter().filter(|b| !b.events.is_empty()) {
                            consumer.committed(&b.events);
                        }
                    }
                    pending.clear();
                }
            })
            .expect("spawn journal thread");
        Journal {
            tx: Some(tx),
            submitted: AtomicU64::new(0),
            order: Mutex::new(()),
            durable: durable_rx,
            thread: Some(thread),
            reader,
        }
    }
}

fn commit(conn: &mut Connection, names: &Names, batches: &[Batch]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for b in batches {
        for e in &b.events {
            apply(&tx, names, e)?;
        }
        for r in &b.records {
            records::apply(&tx, r)?;
        }
    }
    if let Some(b) = batches.iter().rev().find(|b| !b.events.is_empty()) {
        let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO counters (name, value) VALUES (?1, ?2)")?;
        stmt.execute(params!["next_id", b.next_id as i64])?;
        stmt.execute(params!["next_seq", b.next_seq as i64])?;
    }
    tx.commit()?;
    Ok(())
}

fn insert_lease(tx: &Transaction<'_>, names: &Names, l: &Lease) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO leases (id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
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
    ])?;
    Ok(())
}

fn insert_ticket(tx: &Transaction<'_>, names: &Names, t: &Ticket) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO tickets (id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms, meta, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
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
    ])?;
    Ok(())
}

fn apply(tx: &Transaction<'_>, names: &Names, e: &Event) -> Result<(), StoreError> {
    match e {
        Event::Granted { lease, from_ticket } => {
            if let Some((t, _)) = from_ticket {
                tx.prepare_cached("DELETE FROM tickets WHERE id = ?1")?.execute(params![t.0 as i64])?;
            }
            insert_lease(tx, names, lease)?;
        }
        Event::Queued { ticket, .. } => insert_ticket(tx, names, ticket)?,
        Event::Renewed { lease, expires_at, .. } => {
            tx.prepare_cached("UPDATE leases SET expires_at = ?2 WHERE id = ?1")?
                .execute(params![lease.0 as i64, *expires_at as i64])?;
        }
        Event::Released { lease, .. } | Event::Expired { lease, .. } => {
            tx.prepare_cached("DELETE FROM leases WHERE id = ?1")?.execute(params![lease.id.0 as i64])?;
        }
        Event::TicketEnded { ticket, outcome, .. } => {
            debug_assert!(!matches!(outcome, TicketOutcome::Granted(_)));
            tx.prepare_cached("DELETE FROM tickets WHERE id = ?1")?.execute(params![ticket.id.0 as i64])?;
        }
        Event::LimitChanged { pool, limit, .. } => {
            let name = &*names.pools[pool.index()];
            let config_limit = names.config_limits[pool.index()];
            if *limit == config_limit {
                tx.prepare_cached("DELETE FROM pool_limits WHERE pool = ?1")?.execute(params![name])?;
            } else {
                tx.prepare_cached(
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
