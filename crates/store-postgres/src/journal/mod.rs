//! The lease journal of one budget domain on PostgreSQL, group-committed.
//!
//! The node hands every event of an executed command to [`Journal::append`] (in ledger
//! order, as the command answered) and waits for [`Journal::durable`] of the number it got
//! before it shows anything of the command. One writer task owns a connection: it takes
//! every append that is waiting, writes them all in one transaction (its statements
//! pipelined: one round trip, not one per row) and commits once, so under load one commit
//! (one fsync on the server) covers many requests. The rows are the live state, as the
//! embedded journal keeps it: leases (granted, renewed; deleted when released or
//! expired), waiting tickets, how tickets ended, runtime limit changes and id counters.
//!
//! Several nodes write the same domain's rows, each through its own journal: a lease is
//! granted on one node and released on another. A release keeps a tombstone
//! (`journal_gone`) for a while, so a grant whose commit lands after its release (the
//! call ended through another node while the grant was still committing) is not brought
//! back to life; a ticket that ended likewise stays ended. A renewal whose commit lands
//! before its grant's leaves a row the grant fills in, keeping the later expiry (a lease
//! renewed elsewhere is never re-asserted with an expiry it no longer has). Counters are kept per node
//! (`journal_counters`: domain and node) so that nodes never wait on each other's row
//! locks; [`Journal::restore`] takes the highest.
//!
//! When a commit fails (PostgreSQL unreachable, the connection broke, a timeout), every
//! append in it is *lost*: [`Journal::durable`] answers `unavailable` for it, and the
//! journal reports the failure in [`Journal::health`] until a commit succeeds again. A
//! commit whose answer never came (the connection broke during `COMMIT`) counts as lost
//! too, though PostgreSQL may have committed it: the caller then takes its grant back, and
//! the row it may have left is harmless (it only keeps a lease counted until its expiry
//! after a Redis restart; never the other way round). Later appends are tried again on a
//! new connection: each append's answer is its own commit's.
//!
//! **A bound on every durable answer.** An append committed later than the commit timeout
//! after it *started* (for a command on Redis: before the command was sent, see
//! [`Journal::append_started`]) counts as lost in the same way, though its commit
//! succeeded: an append waits for the commit under way before its own, so without this its
//! answer could come up to two timeouts late. With it, whatever is acknowledged was
//! committed within one commit timeout of its command reaching Redis, which is what the
//! restore of an emptied Redis relies on: it reads the journal longer than that after Redis
//! lost its state, so it sees every grant that a caller was told of, with no clock shared
//! between the nodes.

mod read;
mod rows;

pub use rows::{Restored, StoredEnded, StoredLease, StoredTicket};

use crate::conn::{Conn, Link, Pg, Worker};
use crate::{big, unavailable};
use callgate_backend::{CommitTimes, Error, Names};
use callgate_core::Event;
use rows::{row_ops, Stmts};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;

/// The journal's health, for `/healthz` and admission.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalHealth {
    /// Why commits fail, while they do.
    pub failed: Option<String>,
    /// How many times commits started failing (a new failure is a new epoch).
    pub epoch: u64,
    /// Group commits that succeeded.
    pub commits: u64,
    /// Appends those commits carried.
    pub appends: u64,
}

/// At most this many lost ranges are kept; past it the two oldest are merged (answering
/// `unavailable` for the appends between them too: never durable for one that was not).
const MAX_LOST: usize = 64;
/// Appends one transaction takes at most: a bound on a single commit's size.
const MAX_GROUP: usize = 8192;
/// Tombstones and ended tickets are pruned at most this often (ms of event time).
const PRUNE_EVERY_MS: u64 = 60_000;
/// How long a released lease's tombstone is kept (ms): far longer than any commit takes.
const GONE_FOR_MS: u64 = 3_600_000;

#[derive(Clone, Debug, Default)]
struct Durable {
    /// The last append the writer has processed (committed, or lost).
    seq: u64,
    failed: Option<String>,
    epoch: u64,
    /// Inclusive ranges of appends lost in failed commits.
    lost: Vec<(u64, u64)>,
    /// The writer is gone (the journal was closed).
    closed: bool,
}

impl Durable {
    fn verdict(&self, seq: u64) -> Option<Result<(), Error>> {
        let why = || self.failed.clone().unwrap_or_else(|| "a journal commit failed".into());
        if self.lost.iter().any(|&(a, b)| a <= seq && seq <= b) {
            return Some(Err(Error::unavailable(format!("postgres: journal: {}", why()))));
        }
        if self.seq >= seq {
            return Some(Ok(()));
        }
        if self.closed {
            return Some(Err(Error::unavailable("postgres: the journal is closed")));
        }
        None
    }

    fn lose(&mut self, first: u64, last: u64) {
        match self.lost.last_mut() {
            Some((_, b)) if *b + 1 >= first => *b = (*b).max(last),
            _ => self.lost.push((first, last)),
        }
        if self.lost.len() > MAX_LOST {
            let (a, _) = self.lost.remove(0);
            self.lost[0].0 = a;
        }
    }
}

enum Msg {
    Append { seq: u64, events: Vec<Event>, started: Instant },
    Rename(Names),
}

/// The lease journal of one budget domain. See the module docs.
pub struct Journal {
    domain: Arc<str>,
    /// Numbers appends and hands them to the writer under one lock, so the writer sees
    /// them in number order.
    tx: Mutex<(u64, Option<mpsc::UnboundedSender<Msg>>)>,
    durable: watch::Receiver<Durable>,
    stats: Arc<Stats>,
    reader: Worker,
    done: Mutex<Option<std_mpsc::Receiver<()>>>,
    pg: Pg,
}

#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    appends: AtomicU64,
    /// How long the commits took (successful or not), in the embedded journal's buckets,
    /// for `callgate_journal_commit_seconds`.
    times: CommitTimes,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl Journal {
    /// The journal of budget domain `domain`, written by node `node` (a name unique among
    /// the nodes, e.g. the host name: it keys this node's counters), naming pools, classes
    /// and flows by `names`. Ended tickets are kept for `retention_ms`.
    pub fn open(pg: &Pg, domain: &str, node: &str, names: Names, retention_ms: u64) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        let (durable_tx, durable) = watch::channel(Durable::default());
        let (done_tx, done_rx) = std_mpsc::sync_channel(1);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            link: pg.link(),
            stmts: None,
            domain: domain.into(),
            node: node.into(),
            names,
            retention_ms,
            pruned_at: 0,
            timeout: pg.settings().commit_timeout,
            stats: stats.clone(),
        };
        pg.spawn(async move {
            writer.run(rx, &durable_tx).await;
            durable_tx.send_modify(|d| d.closed = true);
            let _ = done_tx.send(());
        });
        Journal {
            domain: domain.into(),
            tx: Mutex::new((0, Some(tx))),
            durable,
            stats,
            reader: pg.worker("journal reader"),
            done: Mutex::new(Some(done_rx)),
            pg: pg.clone(),
        }
    }

    /// The budget domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Hands `events` (one command's, in ledger order) to the writer; the number to wait
    /// for with [`Journal::durable`]. Never blocks. After [`Journal::close`] the number is
    /// one `durable` answers `unavailable` for.
    pub fn append(&self, events: Vec<Event>) -> u64 {
        self.append_started(events, Instant::now())
    }

    /// [`Journal::append`] of a command that started at `started` (before it was sent to
    /// Redis): unless committed within the commit timeout of that instant, the append
    /// counts as lost (see the module docs).
    pub fn append_started(&self, events: Vec<Event>, started: Instant) -> u64 {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.0 += 1;
        let seq = tx.0;
        let sent = tx.1.as_ref().is_some_and(|s| s.send(Msg::Append { seq, events, started }).is_ok());
        if !sent {
            tracing::debug!(seq, "An append after the journal closed");
        }
        seq
    }

    /// The names events use from the next append on (a configuration reload): appends
    /// before it are written with the old names.
    pub fn rename(&self, names: Names) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &tx.1 {
            let _ = s.send(Msg::Rename(names));
        }
    }

    /// The last number [`Journal::append`] handed out.
    pub fn submitted(&self) -> u64 {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Resolves once append `seq` is committed, or with `unavailable` if its commit
    /// failed (or the journal closed before it was written): nothing is ever called
    /// durable that PostgreSQL did not commit.
    pub async fn durable(&self, seq: u64) -> Result<(), Error> {
        let mut rx = self.durable.clone();
        loop {
            if let Some(v) = rx.borrow_and_update().verdict(seq) {
                return v;
            }
            if rx.changed().await.is_err() {
                return rx
                    .borrow()
                    .verdict(seq)
                    .unwrap_or_else(|| Err(Error::unavailable("postgres: the journal is closed")));
            }
        }
    }

    /// How long the group commits took (successful or not).
    pub fn commit_times(&self) -> &CommitTimes {
        &self.stats.times
    }

    /// Whether commits succeed, and how many there were.
    pub fn health(&self) -> JournalHealth {
        let d = self.durable.borrow();
        JournalHealth {
            failed: d.failed.clone(),
            epoch: d.epoch,
            commits: self.stats.commits.load(Ordering::Relaxed),
            appends: self.stats.appends.load(Ordering::Relaxed),
        }
    }

    /// Every lease of the domain that was acknowledged and is neither released nor
    /// expired at `now` (Unix ms), by id: what must be re-asserted into an empty Redis.
    pub async fn live_leases(&self, now: u64) -> Result<Vec<StoredLease>, Error> {
        let domain = self.domain.clone();
        self.reader.call(move |c| async move { read::leases(&c, &domain, now).await }).await
    }

    /// Everything the journal holds for the domain at `now`: live leases, waiting
    /// tickets, how recent tickets ended, runtime limits and the id counters.
    pub async fn restore(&self, now: u64) -> Result<Restored, Error> {
        let domain = self.domain.clone();
        self.reader.call(move |c| async move { read::all(&c, &domain, now).await }).await
    }

    /// Stops taking appends and waits until every append handed over is committed or
    /// lost.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).1.take();
        if let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = done.recv_timeout(self.pg.settings().commit_timeout * 2);
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    link: Link,
    /// The statements, prepared on the connection they belong to.
    stmts: Option<(Arc<Conn>, Arc<Stmts>)>,
    domain: Arc<str>,
    node: Arc<str>,
    names: Names,
    retention_ms: u64,
    /// Event time of the last prune.
    pruned_at: u64,
    timeout: std::time::Duration,
    stats: Arc<Stats>,
}

struct Append {
    seq: u64,
    events: Vec<Event>,
    started: Instant,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, durable: &watch::Sender<Durable>) {
        let mut msgs = Vec::new();
        let mut group: Vec<Append> = Vec::new();
        while let Some(first) = rx.recv().await {
            msgs.push(first);
            // Everything that arrived while the last commit was under way rides in this one.
            while msgs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            for m in msgs.drain(..) {
                match m {
                    Msg::Append { seq, events, started } => group.push(Append { seq, events, started }),
                    Msg::Rename(names) => {
                        // Appends before the change name things by the old ids.
                        self.commit_group(&mut group, durable).await;
                        self.names = names;
                    }
                }
            }
            self.commit_group(&mut group, durable).await;
        }
    }

    async fn commit_group(&mut self, group: &mut Vec<Append>, durable: &watch::Sender<Durable>) {
        let (Some(first), Some(last)) = (group.first().map(|a| a.seq), group.last().map(|a| a.seq)) else {
            return;
        };
        // Measured for the commit-time histogram only; nothing decides on it.
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.commit(group)).await {
            Ok(r) => r,
            Err(_) => {
                self.link.reset();
                Err(Error::unavailable(format!("postgres: a journal commit took longer than {:?}", self.timeout)))
            }
        };
        self.stats.times.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats.appends.fetch_add(group.len() as u64, Ordering::Relaxed);
                let now = Instant::now();
                let late: Vec<u64> =
                    group.iter().filter(|a| now.duration_since(a.started) > self.timeout).map(|a| a.seq).collect();
                durable.send_modify(|d| {
                    if d.failed.take().is_some() {
                        tracing::warn!(domain = %self.domain, "Journal commits succeed again");
                    }
                    if !late.is_empty() {
                        tracing::warn!(domain = %self.domain, appends = late.len(), timeout = ?self.timeout,
                            "Journal appends committed later than the commit timeout after they started count as lost");
                    }
                    for &seq in &late {
                        d.lose(seq, seq);
                    }
                    d.seq = last;
                });
            }
            Err(e) => {
                // A broken statement may have left the session in a failed transaction.
                self.link.reset();
                durable.send_modify(|d| {
                    if d.failed.is_none() {
                        tracing::error!(domain = %self.domain, error = %e, "Journal commit failed; its appends are not durable");
                        d.epoch += 1;
                    }
                    d.failed = Some(e.message.clone());
                    d.lose(first, last);
                    d.seq = last;
                });
            }
        }
        group.clear();
    }

    async fn statements(&mut self) -> Result<(Arc<Conn>, Arc<Stmts>), Error> {
        let client = self.link.client().await?;
        if let Some((c, s)) = &self.stmts {
            if Arc::ptr_eq(c, &client) {
                return Ok((client, s.clone()));
            }
        }
        let stmts = Arc::new(Stmts::prepare(client.raw()).await.map_err(|e| unavailable("preparing the journal", e))?);
        self.stmts = Some((client.clone(), stmts.clone()));
        Ok((client, stmts))
    }

    async fn commit(&mut self, group: &[Append]) -> Result<(), Error> {
        let mut rows = Vec::new();
        let (mut next_id, mut next_seq, mut latest) = (0u64, 0u64, 0u64);
        for a in group {
            for e in &a.events {
                latest = latest.max(e.at());
                row_ops(&self.names, e, &mut rows, &mut next_id, &mut next_seq)?;
            }
        }
        let prune = latest >= self.pruned_at.saturating_add(PRUNE_EVERY_MS);
        if rows.is_empty() && next_id == 0 && next_seq == 0 && !prune {
            // Nothing to keep (rejections only): durable as it is, without a round trip.
            return Ok(());
        }
        let (conn, st) = self.statements().await?;
        let client = conn.raw();
        let domain: &str = &self.domain;
        let node: &str = &self.node;
        let run = async {
            client.batch_execute("BEGIN").await?;
            let (nid, nseq) = (big(next_id), big(next_seq));
            let ended_before = big(latest.saturating_sub(self.retention_ms));
            let gone_before = big(latest.saturating_sub(GONE_FOR_MS));
            let counter_params: [&(dyn ToSql + Sync); 4] = [&domain, &node, &nid, &nseq];
            let ended_params: [&(dyn ToSql + Sync); 2] = [&domain, &ended_before];
            let gone_params: [&(dyn ToSql + Sync); 2] = [&domain, &gone_before];
            // Sent in order on one connection, answered in order: one round trip.
            let mut writes = Vec::with_capacity(rows.len() + 4);
            for r in &rows {
                writes.push(r.execute(client, &st, domain));
            }
            if next_id > 0 || next_seq > 0 {
                writes.push(Box::pin(client.execute(&st.counters, &counter_params)));
            }
            if prune {
                writes.push(Box::pin(client.execute(&st.prune_ended, &ended_params)));
                writes.push(Box::pin(client.execute(&st.prune_gone, &gone_params)));
                writes.push(Box::pin(client.execute(&st.prune_ungranted, &gone_params)));
            }
            futures_util::future::try_join_all(writes).await?;
            client.batch_execute("COMMIT").await
        };
        run.await.map_err(|e| unavailable("journal commit", e))?;
        if prune {
            self.pruned_at = latest;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_append_is_never_called_durable_however_many_failures_follow() {
        let mut d = Durable::default();
        // 100 separate failures (every even append lost, every odd one committed).
        for i in 1..=100u64 {
            d.lose(2 * i, 2 * i);
            d.seq = 2 * i + 1;
        }
        assert!(d.lost.len() <= MAX_LOST, "the lost ranges stay bounded: {}", d.lost.len());
        for i in 1..=100u64 {
            assert!(matches!(d.verdict(2 * i), Some(Err(_))), "append {} was lost", 2 * i);
        }
        // Merging the oldest ranges costs only old committed appends their answer; the
        // recent ones still read as durable.
        assert!(matches!(d.verdict(201), Some(Ok(()))));
        assert!(d.verdict(202).is_none(), "not processed yet: wait");
        d.closed = true;
        assert!(matches!(d.verdict(202), Some(Err(_))), "closed: never durable");
    }
}
