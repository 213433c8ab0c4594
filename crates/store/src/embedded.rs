//! The embedded backend: the ledger in this process's memory, every change journaled to
//! SQLite before anyone is told of it. One lock orders the commands; each command's
//! events reach the journal in ledger order under that lock.
//!
//! When a commit fails, the next command rebuilds the ledger from the journal (the last
//! durable state) and every command answers `unavailable` until a probe commit succeeds:
//! what was applied in memory after the last commit is gone, and so are the answers it
//! would have given (they were `unavailable` too).

use crate::restore::{restore, snapshot};
use crate::{Journal, Names, Opened, StoreError};
use callgate_backend::records::{CallRecord, Callback, CallbackQuery, Record, Records};
use callgate_backend::{
    BoxFuture, Command, Error, Executed, Health, LeaseFilter, LedgerBackend, Outcome, TicketRead, Waiting,
};
use callgate_core::clock::Clock;
use callgate_core::{
    ClassId, Event, FlowId, Lease, LeaseId, Ledger, LedgerSpec, PoolId, PoolView, Ticket, TicketId, TicketStatus,
};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// While commits fail, how often the journal is probed with a fresh commit: often
/// enough that admission resumes within a second or so of the disk having room, rarely
/// enough that a broken disk is not hammered.
const PROBE_EVERY_MS: u64 = 1_000;

struct Inner {
    ledger: Ledger,
    /// What the ledger is built from (a reload replaces it), to rebuild it after a failed
    /// commit.
    spec: LedgerSpec,
    /// The ledger's names (a reload replaces them).
    names: Names,
    /// The last cap each pool was given ([`Command::SetCap`]), put back after a rebuild.
    caps: Vec<Option<u32>>,
    /// The journal failure epoch the ledger was last rebuilt from disk for (0: none).
    rebuilt_epoch: u64,
    /// When to probe the journal again while commits fail (Unix ms).
    next_probe_at: u64,
}

/// A data directory opened and its state restored into a ledger, before the journal's
/// writer starts (the server builds its consumers from the names and pools first).
pub struct Restoring {
    ledger: Ledger,
    opened: Opened,
    spec: LedgerSpec,
    dropped: (usize, usize),
}

impl std::fmt::Debug for Restoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restoring").field("dropped", &self.dropped).finish_non_exhaustive()
    }
}

impl Restoring {
    /// Opens `dir`'s journal and restores what it holds into a ledger built from `spec`.
    /// Rows naming a pool or class the configuration no longer has are dropped from
    /// memory and from disk.
    pub fn open(dir: &Path, spec: &LedgerSpec, now: u64) -> Result<Restoring, StoreError> {
        let mut ledger = Ledger::new(spec).map_err(|e| StoreError(format!("configuration: {e}")))?;
        let mut opened = Journal::open(dir)?;
        let dropped = restore(&mut ledger, &opened.restored, now);
        tracing::info!(
            leases = ledger.lease_count(),
            tickets = ledger.ticket_count(),
            dropped_leases = dropped.leases.len(),
            dropped_tickets = dropped.tickets.len(),
            "Restored the journal"
        );
        opened.forget(&dropped.leases, &dropped.tickets)?;
        let dropped = (dropped.leases.len(), dropped.tickets.len());
        Ok(Restoring { ledger, opened, spec: spec.clone(), dropped })
    }

    /// The names of the ledger's pools, classes and flows, and the pools' limits as
    /// configured (not as restored: a runtime limit change is journaled against the
    /// configured limit, so that a restart with an edited configuration can tell).
    pub fn names(&self) -> Names {
        let mut names = names_of(&self.ledger);
        names.config_limits = self.spec.pools.iter().map(|p| p.limit).collect();
        names
    }

    /// The pools as restored.
    pub fn pools(&self) -> Vec<PoolView> {
        self.ledger.pools()
    }

    /// Starts the journal's writer, which hands every committed batch of events to
    /// `consumer`, and keeps ended tickets for `retention_ms`.
    pub fn start(
        self,
        names: Names,
        retention_ms: u64,
        clock: Arc<dyn Clock>,
        consumer: impl crate::Consumer,
    ) -> Embedded {
        let pools = self.ledger.pool_count();
        let journal_names = names.clone();
        let journal = self.opened.retain_ended_for(retention_ms).start(names, consumer);
        Embedded {
            state: Mutex::new(Inner {
                ledger: self.ledger,
                spec: self.spec,
                names: journal_names,
                caps: vec![None; pools],
                rebuilt_epoch: 0,
                next_probe_at: 0,
            }),
            journal,
            clock,
        }
    }
}

/// The embedded backend: the ledger in memory, journaled to SQLite.
pub struct Embedded {
    state: Mutex<Inner>,
    journal: Journal,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").field("journal", &self.journal).finish_non_exhaustive()
    }
}

impl Embedded {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every command finishes its changes before it can panic (the ledger does not
        // panic on input); the governor stops admission when its own lock is poisoned.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Injects a fault into the journal writer (tests only).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: crate::Fault) {
        self.journal.inject_fault(fault);
    }

    /// The journal (call records and callbacks are written through it).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// `Ok` when the journal commits; otherwise recovers what it can and says why not.
    fn writable(&self, st: &mut Inner, now: u64) -> Result<(), Error> {
        let health = self.journal.health();
        let Some(why) = &health.failed else { return Ok(()) };
        self.recover(st, &health, now);
        Err(Error::unavailable(format!("the journal cannot commit: {why}")))
    }

    /// After a failed commit: puts the ledger back to the last durable state (every
    /// change after it was answered `unavailable` and is forgotten: no phantom lease keeps
    /// a unit), then probes the journal until a commit succeeds again.
    fn recover(&self, st: &mut Inner, health: &crate::Health, now: u64) {
        if health.dead {
            return; // nothing will commit again; the server exits
        }
        if st.rebuilt_epoch != health.epoch {
            match self.rebuild(st, now) {
                Ok(()) => {
                    st.rebuilt_epoch = health.epoch;
                    st.next_probe_at = now;
                    tracing::warn!(
                        leases = st.ledger.lease_count(),
                        tickets = st.ledger.ticket_count(),
                        "The ledger is back to its last durable state"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "Cannot rebuild the ledger from the journal; admission stays stopped");
                    return;
                }
            }
        }
        if now >= st.next_probe_at {
            st.next_probe_at = now.saturating_add(PROBE_EVERY_MS);
            self.journal.probe(health.epoch, st.ledger.next_id(), st.ledger.next_seq());
        }
    }

    fn rebuild(&self, st: &mut Inner, now: u64) -> Result<(), String> {
        let restored = self.journal.reload().map_err(|e| e.to_string())?;
        let mut ledger = Ledger::new(&st.spec).map_err(|e| format!("configuration: {e}"))?;
        restore(&mut ledger, &restored, now);
        // Ids handed out in memory were never shown (nothing is before it is durable),
        // but they are not handed out again either.
        ledger.restore_counters(st.ledger.next_id(), st.ledger.next_seq());
        for (p, cap) in st.caps.iter().enumerate() {
            if cap.is_some() {
                ledger.set_cap(PoolId(p as u32), *cap, now);
            }
        }
        ledger.drain_events().for_each(drop);
        st.ledger = ledger;
        Ok(())
    }
}

/// `(pool index, mean hold ms)` of the pools whose mean hold time `events` moved.
fn mean_holds(ledger: &Ledger, events: &[Event]) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = Vec::new();
    for e in events {
        if let Event::Released { lease, .. } | Event::Expired { lease, .. } = e {
            for pu in lease.pools.iter() {
                if !out.iter().any(|(p, _)| *p == pu.pool.index()) {
                    out.push((pu.pool.index(), ledger.mean_hold_ms(pu.pool)));
                }
            }
        }
    }
    out
}

fn ticket_read(ledger: &Ledger, id: TicketId) -> Option<TicketRead> {
    let status = ledger.ticket_status(id)?;
    Some(TicketRead { ticket: ledger.ticket(id).cloned(), status })
}

impl Embedded {
    /// [`Command::Reconfigure`]: the new ledger is filled with what the current one holds
    /// by the restore a restart runs on the journal's rows, so a reload gives what a
    /// restart with the new configuration gives.
    fn reconfigure(
        &self,
        st: &mut Inner,
        spec: LedgerSpec,
        names: Names,
        caps: Vec<Option<u32>>,
        now: u64,
    ) -> Result<Outcome, Error> {
        if st.names.pools != names.pools || st.names.classes != names.classes {
            return Err(Error::invalid("the pools and classes must stay the same, in the same order"));
        }
        let mut ledger =
            Ledger::new(&spec).map_err(|e| Error::invalid(format!("the new configuration's ledger: {e}")))?;
        let dropped = restore(&mut ledger, &snapshot(&st.ledger, &st.names), now);
        if !dropped.leases.is_empty() || !dropped.tickets.is_empty() {
            // Cannot happen with the same pools and classes; never drop a lease for it.
            return Err(Error::invalid("a live lease or ticket would not fit the new configuration"));
        }
        for (p, cap) in caps.iter().enumerate() {
            if cap.is_some() {
                ledger.set_cap(PoolId(p as u32), *cap, now);
            }
        }
        // The event consumers hear of every pool whose figures moved: a limit or cap
        // change is a `limit_changed` event (and the journal's runtime-limit row follows
        // the new configured limit).
        for (p, was) in st.ledger.pools().iter().enumerate() {
            let id = PoolId(p as u32);
            let is = ledger.pool(id);
            if (is.limit, is.cap) != (was.limit, was.cap) || st.names.config_limits.get(p) != names.config_limits.get(p)
            {
                ledger.set_limit(id, is.limit, now);
            }
        }
        // Ends what can never fit now and grants what fits, like a start after restore.
        ledger.settle(now);
        // From here on the new ledger's ids: the journal and its consumers switch in
        // event order, before the events above are handed over.
        self.journal.rename(names.clone());
        st.ledger = ledger;
        st.spec = spec;
        st.names = names;
        st.caps = caps;
        Ok(Outcome::Done)
    }
}

fn store_error(e: StoreError) -> Error {
    Error::unavailable(e.to_string()).with_source(e)
}

impl LedgerBackend for Embedded {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn execute(&self, cmd: Command) -> Result<Executed, Error> {
        // Read under the lock: commands run at non-decreasing times in the order they
        // commit, however many threads call at once.
        let mut st = self.lock();
        let now = self.clock.now_ms();
        self.writable(&mut st, now)?;
        let outcome = match cmd {
            Command::Reconfigure { spec, names, caps } => self.reconfigure(&mut st, *spec, *names, caps, now),
            cmd => {
                if let Command::SetCap { pool, cap } = &cmd {
                    if let Some(c) = st.caps.get_mut(pool.index()) {
                        *c = *cap;
                    }
                }
                callgate_backend::reference::apply(&mut st.ledger, cmd, now)
            }
        };
        let events: Vec<Event> = st.ledger.drain_events().collect();
        let holds = mean_holds(&st.ledger, &events);
        let (next_id, next_seq) = (st.ledger.next_id(), st.ledger.next_seq());
        let commit = self.journal.submit_with(events.clone(), next_id, next_seq, holds);
        Ok(Executed { outcome: outcome?, events, commit, now })
    }

    fn durable(&self, commit: u64) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.journal.durable(commit).await.map_err(store_error) })
    }

    fn submitted(&self) -> u64 {
        self.journal.submitted()
    }

    fn health(&self) -> Health {
        let h = self.journal.health();
        Health { failed: h.failed, epoch: h.epoch, dead: h.dead }
    }

    fn dead(&self) -> BoxFuture<'_, String> {
        Box::pin(self.journal.dead())
    }

    fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.lock().ledger.lease(id).cloned()
    }

    fn lease_by_key(&self, key: &str) -> Option<Lease> {
        self.lock().ledger.lease_by_key(key).cloned()
    }

    fn ticket(&self, id: TicketId) -> Option<TicketRead> {
        ticket_read(&self.lock().ledger, id)
    }

    fn ticket_by_key(&self, key: &str) -> Option<TicketRead> {
        let st = self.lock();
        let id = st.ledger.ticket_by_key(key)?.id;
        ticket_read(&st.ledger, id)
    }

    fn pools(&self) -> Vec<PoolView> {
        self.lock().ledger.pools()
    }

    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>) {
        let st = self.lock();
        let limit = limit.max(1);
        let mut page: Vec<Lease> = Vec::with_capacity(limit.min(128));
        let (mut last, mut more) = (None, false);
        for (scanned, l) in st.ledger.leases_after(after).enumerate() {
            if page.len() == limit || scanned == max_scan {
                more = true;
                break;
            }
            last = Some(l.id);
            if filter.keeps(l) {
                page.push(l.clone());
            }
        }
        (page, if more { last } else { None })
    }

    fn leases(&self) -> Vec<Lease> {
        self.lock().ledger.leases().cloned().collect()
    }

    fn waiting(&self, limit: usize) -> Vec<Waiting> {
        let st = self.lock();
        let ledger = &st.ledger;
        let mut tickets: Vec<&Ticket> = ledger.tickets().collect();
        tickets.sort_by_key(|t| (std::cmp::Reverse(ledger.class_priority(t.class)), t.seq));
        tickets
            .into_iter()
            .take(limit)
            .map(|t| {
                let (position, eta_ms) = match ledger.ticket_status(t.id) {
                    Some(TicketStatus::Waiting { position, eta_ms, .. }) => (position, eta_ms),
                    _ => (1, 0),
                };
                Waiting { ticket: t.clone(), position, eta_ms }
            })
            .collect()
    }

    fn tickets(&self) -> Vec<Ticket> {
        self.lock().ledger.tickets().cloned().collect()
    }

    fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.ledger.lease_count(), st.ledger.ticket_count())
    }

    fn counters(&self) -> (u64, u64) {
        let st = self.lock();
        (st.ledger.next_id(), st.ledger.next_seq())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Records for Embedded {
    fn record(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if let Some(why) = self.journal.failure() {
                return Err(Error::unavailable(format!("the journal cannot commit: {why}")));
            }
            let seq = self.journal.record(records);
            self.journal.durable(seq).await.map_err(store_error)
        })
    }

    fn callbacks(&self, query: &CallbackQuery) -> Result<Vec<Callback>, Error> {
        self.journal.callbacks(query).map_err(store_error)
    }

    fn calls(&self, limit: usize) -> Result<Vec<CallRecord>, Error> {
        self.journal.calls(limit).map_err(store_error)
    }

    fn call(&self, provider: &str, call_id: &str) -> Result<Option<CallRecord>, Error> {
        self.journal.call(provider, call_id).map_err(store_error)
    }
}

/// The names of `ledger`'s pools, classes and flows, and its pools' limits now (the
/// configured ones for a ledger fresh from its spec).
pub fn names_of(ledger: &Ledger) -> Names {
    Names {
        pools: (0..ledger.pool_count()).map(|i| ledger.pool_name(PoolId(i as u32)).clone()).collect(),
        config_limits: ledger.pools().iter().map(|p| p.limit).collect(),
        classes: (0..ledger.class_count()).map(|i| ledger.class_name(ClassId(i as u16)).clone()).collect(),
        flows: (0..ledger.flow_count()).map(|i| ledger.flow_name(FlowId(i as u32)).clone()).collect(),
    }
}
