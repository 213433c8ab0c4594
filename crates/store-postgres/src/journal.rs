// Long file: the journal's writer task (group commit, lost ranges, failures), its event-to-row mapping and its reads must be read together to check durability.
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
//! back to life; a ticket that ended likewise stays ended. Counters are kept per node
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

use crate::conn::{Conn, Link, Pg, Worker};
use crate::{big, unavailable, unbig};
use callgate_backend::{Error, Names};
use callgate_core::{Event, Lease, PoolUnits, Ticket, TicketOutcome};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// A lease as journaled (names instead of ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLease {
    /// Lease id.
    pub id: u64,
    /// Idempotency key.
    pub key: Option<String>,
    /// Class name.
    pub class: String,
    /// Flow name.
    pub flow: Option<String>,
    /// `(pool name, units)`.
    pub pools: Vec<(String, u32)>,
    /// Unix ms.
    pub granted_at: u64,
    /// Unix ms.
    pub expires_at: u64,
    /// Renewal TTL (ms).
    pub ttl_ms: u64,
    /// Metadata (JSON text).
    pub meta: Option<String>,
    /// The name of the API key that acquired it.
    pub owner: Option<String>,
}

/// A waiting ticket as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTicket {
    /// Ticket id.
    pub id: u64,
    /// Idempotency key.
    pub key: Option<String>,
    /// Class name.
    pub class: String,
    /// Flow name.
    pub flow: Option<String>,
    /// `(pool name, units)`.
    pub pools: Vec<(String, u32)>,
    /// Arrival order.
    pub seq: u64,
    /// Unix ms.
    pub enqueued_at: u64,
    /// Unix ms.
    pub deadline: u64,
    /// TTL of the lease it becomes (ms).
    pub ttl_ms: u64,
    /// Metadata (JSON text).
    pub meta: Option<String>,
    /// The name of the API key that acquired it.
    pub owner: Option<String>,
}

/// How a ticket ended, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnded {
    /// Ticket id.
    pub id: u64,
    /// `granted`, `cancelled`, `timed_out` or `never_fits`.
    pub outcome: String,
    /// The lease it became, when granted.
    pub lease: Option<u64>,
    /// Flow name.
    pub flow: Option<String>,
    /// Unix ms.
    pub at: u64,
}

/// Everything the journal holds for a domain: what a ledger rebuilt after a Redis restart
/// starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Live leases (not expired at the `now` asked for), by id.
    pub leases: Vec<StoredLease>,
    /// Waiting tickets, in arrival order.
    pub tickets: Vec<StoredTicket>,
    /// Above every id journaled by any node.
    pub next_id: u64,
    /// Above every arrival number journaled by any node.
    pub next_seq: u64,
    /// Runtime limit changes: `(pool, limit, the configured limit when it was made)`.
    pub limits: Vec<(String, u32, u32)>,
    /// Ended tickets within the retention time, oldest end first.
    pub ended: Vec<StoredEnded>,
}

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
    Append { seq: u64, events: Vec<Event> },
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
            timeout: pg.settings().job_timeout,
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
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.0 += 1;
        let seq = tx.0;
        let sent = tx.1.as_ref().is_some_and(|s| s.send(Msg::Append { seq, events }).is_ok());
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
        self.reader.call(move |c| async move { read_leases(&c, &domain, now).await }).await
    }

    /// Everything the journal holds for the domain at `now`: live leases, waiting
    /// tickets, how recent tickets ended, runtime limits and the id counters.
    pub async fn restore(&self, now: u64) -> Result<Restored, Error> {
        let domain = self.domain.clone();
        self.reader.call(move |c| async move { read_all(&c, &domain, now).await }).await
    }

    /// Stops taking appends and waits until every append handed over is committed or
    /// lost.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).1.take();
        if let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = done.recv_timeout(self.pg.settings().job_timeout * 2);
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
                    Msg::Append { seq, events } => group.push(Append { seq, events }),
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
        let result = match tokio::time::timeout(self.timeout, self.commit(group)).await {
            Ok(r) => r,
            Err(_) => {
                self.link.reset();
                Err(Error::unavailable(format!("postgres: a journal commit took longer than {:?}", self.timeout)))
            }
        };
        match result {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats.appends.fetch_add(group.len() as u64, Ordering::Relaxed);
                durable.send_modify(|d| {
                    if d.failed.take().is_some() {
                        tracing::warn!(domain = %self.domain, "Journal commits succeed again");
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
            let mut writes = Vec::with_capacity(rows.len() + 3);
            for r in &rows {
                writes.push(r.execute(client, &st, domain));
            }
            if next_id > 0 || next_seq > 0 {
                writes.push(Box::pin(client.execute(&st.counters, &counter_params)));
            }
            if prune {
                writes.push(Box::pin(client.execute(&st.prune_ended, &ended_params)));
                writes.push(Box::pin(client.execute(&st.prune_gone, &gone_params)));
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

/// The prepared statements of the journal's writer.
struct Stmts {
    put_lease: Statement,
    renew: Statement,
    drop_lease: Statement,
    gone: Statement,
    put_ticket: Statement,
    drop_ticket: Statement,
    ended: Statement,
    set_limit: Statement,
    clear_limit: Statement,
    counters: Statement,
    prune_ended: Statement,
    prune_gone: Statement,
}

impl Stmts {
    async fn prepare(c: &Client) -> Result<Stmts, tokio_postgres::Error> {
        Ok(Stmts {
            put_lease: c
                .prepare(
                    "INSERT INTO journal_leases (domain, id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner)
                     SELECT $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::bigint,
                            $9::bigint, $10::text, $11::text
                     WHERE NOT EXISTS (SELECT 1 FROM journal_gone WHERE domain = $1 AND id = $2)
                     ON CONFLICT (domain, id) DO UPDATE SET key = excluded.key, class = excluded.class,
                        flow = excluded.flow, pools = excluded.pools, granted_at = excluded.granted_at,
                        expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms, meta = excluded.meta,
                        owner = excluded.owner",
                )
                .await?,
            renew: c
                .prepare("UPDATE journal_leases SET expires_at = $3, ttl_ms = $4 WHERE domain = $1 AND id = $2")
                .await?,
            drop_lease: c.prepare("DELETE FROM journal_leases WHERE domain = $1 AND id = $2").await?,
            gone: c
                .prepare(
                    "INSERT INTO journal_gone (domain, id, at) VALUES ($1, $2, $3) ON CONFLICT (domain, id) DO NOTHING",
                )
                .await?,
            put_ticket: c
                .prepare(
                    "INSERT INTO journal_tickets (domain, id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms,
                        meta, owner)
                     SELECT $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::bigint,
                            $9::bigint, $10::bigint, $11::text, $12::text
                     WHERE NOT EXISTS (SELECT 1 FROM journal_ended_tickets WHERE domain = $1 AND id = $2)
                     ON CONFLICT (domain, id) DO NOTHING",
                )
                .await?,
            drop_ticket: c.prepare("DELETE FROM journal_tickets WHERE domain = $1 AND id = $2").await?,
            ended: c
                .prepare(
                    "INSERT INTO journal_ended_tickets (domain, id, outcome, lease, flow, at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (domain, id) DO UPDATE SET outcome = excluded.outcome, lease = excluded.lease,
                        flow = excluded.flow, at = excluded.at",
                )
                .await?,
            set_limit: c
                .prepare(
                    "INSERT INTO journal_pool_limits (domain, pool, limit_units, config_limit) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (domain, pool) DO UPDATE SET limit_units = excluded.limit_units,
                        config_limit = excluded.config_limit",
                )
                .await?,
            clear_limit: c.prepare("DELETE FROM journal_pool_limits WHERE domain = $1 AND pool = $2").await?,
            counters: c
                .prepare(
                    "INSERT INTO journal_counters (domain, node, next_id, next_seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (domain, node) DO UPDATE SET
                        next_id = GREATEST(journal_counters.next_id, excluded.next_id),
                        next_seq = GREATEST(journal_counters.next_seq, excluded.next_seq)",
                )
                .await?,
            prune_ended: c.prepare("DELETE FROM journal_ended_tickets WHERE domain = $1 AND at < $2").await?,
            prune_gone: c.prepare("DELETE FROM journal_gone WHERE domain = $1 AND at < $2").await?,
        })
    }
}

/// One row write, with owned values (the pipelined statements borrow them).
enum RowOp {
    PutLease(StoredLease),
    Renew { id: i64, expires_at: i64, ttl_ms: i64 },
    Gone { id: i64, at: i64 },
    PutTicket(StoredTicket),
    Ended(StoredEnded),
    Limit { pool: String, limit: i64, config_limit: i64 },
    ClearLimit { pool: String },
}

type Write<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// A row as its statements' parameters.
struct LeaseParams {
    id: i64,
    pools: String,
    granted_at: i64,
    expires_at: i64,
    ttl_ms: i64,
}

impl RowOp {
    fn execute<'a>(&'a self, c: &'a Client, st: &'a Stmts, domain: &'a str) -> Write<'a> {
        match self {
            RowOp::PutLease(l) => Box::pin(async move {
                let p = LeaseParams {
                    id: big(l.id),
                    pools: pools_json(&l.pools),
                    granted_at: big(l.granted_at),
                    expires_at: big(l.expires_at),
                    ttl_ms: big(l.ttl_ms),
                };
                c.execute(
                    &st.put_lease,
                    &[
                        &domain,
                        &p.id,
                        &l.key,
                        &l.class,
                        &l.flow,
                        &p.pools,
                        &p.granted_at,
                        &p.expires_at,
                        &p.ttl_ms,
                        &l.meta,
                        &l.owner,
                    ],
                )
                .await
            }),
            RowOp::Renew { id, expires_at, ttl_ms } => {
                Box::pin(async move { c.execute(&st.renew, &[&domain, id, expires_at, ttl_ms]).await })
            }
            RowOp::Gone { id, at } => Box::pin(async move {
                // Both sent before either answer is awaited: still one round trip.
                let (a, b) = futures_util::future::join(
                    c.execute(&st.drop_lease, &[&domain, id]),
                    c.execute(&st.gone, &[&domain, id, at]),
                )
                .await;
                Ok(a? + b?)
            }),
            RowOp::PutTicket(t) => Box::pin(async move {
                let (id, pools, seq, enq, deadline, ttl) =
                    (big(t.id), pools_json(&t.pools), big(t.seq), big(t.enqueued_at), big(t.deadline), big(t.ttl_ms));
                c.execute(
                    &st.put_ticket,
                    &[&domain, &id, &t.key, &t.class, &t.flow, &pools, &seq, &enq, &deadline, &ttl, &t.meta, &t.owner],
                )
                .await
            }),
            RowOp::Ended(e) => Box::pin(async move {
                let (id, lease, at) = (big(e.id), e.lease.map(big), big(e.at));
                let (a, b) = futures_util::future::join(
                    c.execute(&st.drop_ticket, &[&domain, &id]),
                    c.execute(&st.ended, &[&domain, &id, &e.outcome, &lease, &e.flow, &at]),
                )
                .await;
                Ok(a? + b?)
            }),
            RowOp::Limit { pool, limit, config_limit } => {
                Box::pin(async move { c.execute(&st.set_limit, &[&domain, pool, limit, config_limit]).await })
            }
            RowOp::ClearLimit { pool } => Box::pin(async move { c.execute(&st.clear_limit, &[&domain, pool]).await }),
        }
    }
}

fn pools_json(pools: &[(String, u32)]) -> String {
    serde_json::to_string(pools).unwrap_or_else(|_| "[]".into())
}

fn parse_pools(text: &str) -> Result<Vec<(String, u32)>, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal(format!("postgres: a journal row has bad pools `{text}`: {e}")))
}

fn name<'n>(list: &'n [Arc<str>], index: usize, what: &str) -> Result<&'n str, Error> {
    list.get(index).map(|n| &**n).ok_or_else(|| {
        Error::internal(format!("journal: an event names {what} {index}, which the ledger's names lack"))
    })
}

fn named_pools(names: &Names, pools: &[PoolUnits]) -> Result<Vec<(String, u32)>, Error> {
    pools.iter().map(|p| Ok((name(&names.pools, p.pool.index(), "pool")?.to_owned(), p.units))).collect()
}

fn flow_name(names: &Names, flow: Option<callgate_core::FlowId>) -> Option<String> {
    flow.and_then(|f| names.flows.get(f.index())).map(|f| f.to_string())
}

fn stored_lease(names: &Names, l: &Lease) -> Result<StoredLease, Error> {
    Ok(StoredLease {
        id: l.id.0,
        key: l.key.as_deref().map(str::to_owned),
        class: name(&names.classes, l.class.index(), "class")?.to_owned(),
        flow: flow_name(names, l.flow),
        pools: named_pools(names, &l.pools)?,
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl_ms: l.ttl_ms,
        meta: l.meta.as_deref().map(str::to_owned),
        owner: l.owner.as_deref().map(str::to_owned),
    })
}

fn stored_ticket(names: &Names, t: &Ticket) -> Result<StoredTicket, Error> {
    Ok(StoredTicket {
        id: t.id.0,
        key: t.key.as_deref().map(str::to_owned),
        class: name(&names.classes, t.class.index(), "class")?.to_owned(),
        flow: flow_name(names, t.flow),
        pools: named_pools(names, &t.pools)?,
        seq: t.seq,
        enqueued_at: t.enqueued_at,
        deadline: t.deadline,
        ttl_ms: t.ttl_ms,
        meta: t.meta.as_deref().map(str::to_owned),
        owner: t.owner.as_deref().map(str::to_owned),
    })
}

fn outcome_name(o: TicketOutcome) -> (&'static str, Option<u64>) {
    match o {
        TicketOutcome::Granted(l) => ("granted", Some(l.0)),
        TicketOutcome::Cancelled => ("cancelled", None),
        TicketOutcome::TimedOut => ("timed_out", None),
        TicketOutcome::NeverFits => ("never_fits", None),
    }
}

/// The row writes of one event, in order; the id and arrival counters it moves.
fn row_ops(names: &Names, e: &Event, out: &mut Vec<RowOp>, next_id: &mut u64, next_seq: &mut u64) -> Result<(), Error> {
    match e {
        Event::Granted { lease, from_ticket } => {
            if let Some((t, _)) = from_ticket {
                let (outcome, lease_id) = outcome_name(TicketOutcome::Granted(lease.id));
                out.push(RowOp::Ended(StoredEnded {
                    id: t.0,
                    outcome: outcome.into(),
                    lease: lease_id,
                    flow: flow_name(names, lease.flow),
                    at: lease.granted_at,
                }));
                *next_id = (*next_id).max(t.0 + 1);
            }
            *next_id = (*next_id).max(lease.id.0 + 1);
            out.push(RowOp::PutLease(stored_lease(names, lease)?));
        }
        Event::Queued { ticket, .. } => {
            *next_id = (*next_id).max(ticket.id.0 + 1);
            *next_seq = (*next_seq).max(ticket.seq + 1);
            out.push(RowOp::PutTicket(stored_ticket(names, ticket)?));
        }
        Event::Renewed { lease, expires_at, ttl_ms, .. } => {
            out.push(RowOp::Renew { id: big(lease.0), expires_at: big(*expires_at), ttl_ms: big(*ttl_ms) })
        }
        Event::Released { lease, at } | Event::Expired { lease, at } => {
            out.push(RowOp::Gone { id: big(lease.id.0), at: big(*at) })
        }
        Event::TicketEnded { ticket, outcome, at } => {
            let (outcome, lease) = outcome_name(*outcome);
            out.push(RowOp::Ended(StoredEnded {
                id: ticket.id.0,
                outcome: outcome.into(),
                lease,
                flow: flow_name(names, ticket.flow),
                at: *at,
            }));
        }
        Event::LimitChanged { pool, limit, .. } => {
            let name = name(&names.pools, pool.index(), "pool")?.to_owned();
            let config_limit = names.config_limits.get(pool.index()).copied().unwrap_or(*limit);
            if *limit == config_limit {
                out.push(RowOp::ClearLimit { pool: name });
            } else {
                out.push(RowOp::Limit { pool: name, limit: i64::from(*limit), config_limit: i64::from(config_limit) });
            }
        }
        Event::Rejected { .. } => {}
    }
    Ok(())
}

const LEASE_COLUMNS: &str = "id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner";

fn lease_row(r: &tokio_postgres::Row) -> Result<StoredLease, Error> {
    Ok(StoredLease {
        id: unbig(r.get(0)),
        key: r.get(1),
        class: r.get(2),
        flow: r.get(3),
        pools: parse_pools(r.get(4))?,
        granted_at: unbig(r.get(5)),
        expires_at: unbig(r.get(6)),
        ttl_ms: unbig(r.get(7)),
        meta: r.get(8),
        owner: r.get(9),
    })
}

async fn read_leases(c: &Conn, domain: &str, now: u64) -> Result<Vec<StoredLease>, Error> {
    let rows = c
        .query(
            &format!("SELECT {LEASE_COLUMNS} FROM journal_leases WHERE domain = $1 AND expires_at > $2 ORDER BY id"),
            &[&domain, &big(now)],
        )
        .await
        .map_err(|e| unavailable("reading the journal's leases", e))?;
    rows.iter().map(lease_row).collect()
}

async fn read_all(c: &Conn, domain: &str, now: u64) -> Result<Restored, Error> {
    let read = |e| unavailable("reading the journal", e);
    // One snapshot for every table: a release committed between two reads cannot show
    // a lease gone from one and its ticket still waiting in another.
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(read)?;
    let result = async {
        let leases = read_leases(c, domain, now).await?;
        let tickets = c
            .query(
                "SELECT id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms, meta, owner FROM journal_tickets
                 WHERE domain = $1 ORDER BY seq",
                &[&domain],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| {
                Ok(StoredTicket {
                    id: unbig(r.get(0)),
                    key: r.get(1),
                    class: r.get(2),
                    flow: r.get(3),
                    pools: parse_pools(r.get(4))?,
                    seq: unbig(r.get(5)),
                    enqueued_at: unbig(r.get(6)),
                    deadline: unbig(r.get(7)),
                    ttl_ms: unbig(r.get(8)),
                    meta: r.get(9),
                    owner: r.get(10),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let limits = c
            .query("SELECT pool, limit_units, config_limit FROM journal_pool_limits WHERE domain = $1 ORDER BY pool", &[&domain])
            .await
            .map_err(read)?
            .iter()
            .map(|r| (r.get::<_, String>(0), clamp_u32(r.get(1)), clamp_u32(r.get(2))))
            .collect();
        let ended = c
            .query(
                "SELECT id, outcome, lease, flow, at FROM journal_ended_tickets WHERE domain = $1 ORDER BY at, id",
                &[&domain],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| StoredEnded {
                id: unbig(r.get(0)),
                outcome: r.get(1),
                lease: r.get::<_, Option<i64>>(2).map(unbig),
                flow: r.get(3),
                at: unbig(r.get(4)),
            })
            .collect::<Vec<_>>();
        let counters = c
            .query_one(
                "SELECT COALESCE(MAX(next_id), 1), COALESCE(MAX(next_seq), 1) FROM journal_counters WHERE domain = $1",
                &[&domain],
            )
            .await
            .map_err(read)?;
        let mut out = Restored {
            leases,
            tickets,
            next_id: unbig(counters.get(0)).max(1),
            next_seq: unbig(counters.get(1)).max(1),
            limits,
            ended,
        };
        // Above every id and arrival number in the rows too, whatever the counters say.
        for l in &out.leases {
            out.next_id = out.next_id.max(l.id + 1);
        }
        for t in &out.tickets {
            out.next_id = out.next_id.max(t.id + 1);
            out.next_seq = out.next_seq.max(t.seq + 1);
        }
        for e in &out.ended {
            out.next_id = out.next_id.max(e.id + 1).max(e.lease.map_or(0, |l| l + 1));
        }
        Ok(out)
    }
    .await;
    let _ = c.batch_execute("COMMIT").await;
    result
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
