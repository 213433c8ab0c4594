//! Suppression lists and their audit trail on PostgreSQL: the [`DncLists`] trait, shared by
//! every node of a cluster, with the same rows and rules as the SQLite store (`dnc.db`).
//!
//! **Positions.** Every transaction that changes a list first locks the one row of
//! `dnc_state` (`SELECT … FOR UPDATE`) and takes the next position from it, so writers of
//! every node commit one after another, in position order: whatever position a reader
//! sees, every change up to it is committed and visible. A node's copy in memory that has
//! applied the changes up to the position it read is exact as of that read. Writes are
//! rare (an import, an opt-out), so one writer at a time costs nothing that matters.
//!
//! **Audit trail.** Rows are handed to a writer task on the PostgreSQL thread (never
//! waited for by a dial), written in batches, and pruned past the five-year retention as
//! the SQLite trail is; at most [`AUDIT_BACKLOG`] wait, beyond it rows are dropped and
//! logged. A batch that cannot be written (PostgreSQL unreachable) is logged and lost,
//! as a failed SQLite write is.

use crate::conn::{Conn, Link, Pg, Worker};
use crate::{big, unavailable, unbig};
use callgate_backend::dnc::{
    AuditRow, DncChange, DncEntry, DncLists, AUDIT_BACKLOG, AUDIT_PRUNE_EVERY_MS, AUDIT_RETENTION_MS, MAX_LISTS,
};
use callgate_backend::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use tokio::sync::mpsc;

/// Numbers inserted per statement of a large import (each an array parameter).
const CHUNK: usize = 50_000;

/// Audit rows written per transaction at most.
const AUDIT_BATCH: usize = 4096;

/// The suppression lists in PostgreSQL.
pub struct PgDnc {
    /// Adds and removals, one transaction at a time, on a connection of their own.
    writer: Worker,
    /// Positions, changes, lookups, versions, the audit trail.
    reader: Worker,
    audit: Mutex<Option<mpsc::UnboundedSender<AuditJob>>>,
    /// Rows handed to the audit writer and not yet written.
    backlog: Arc<AtomicUsize>,
    pg: Pg,
}

enum AuditJob {
    Row(Box<AuditRow>),
    /// Answered once every row handed over before it is written (or given up).
    Flush(std_mpsc::SyncSender<()>),
}

impl std::fmt::Debug for PgDnc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDnc").finish_non_exhaustive()
    }
}

impl PgDnc {
    /// The suppression lists of the database `pg` opened (its migrations applied).
    pub fn open(pg: &Pg) -> PgDnc {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        pg.spawn(audit_writer(rx, pg.link(), backlog.clone()));
        PgDnc {
            writer: pg.worker("suppression-list writer"),
            reader: pg.worker("suppression-list reader"),
            audit: Mutex::new(Some(tx)),
            backlog,
            pg: pg.clone(),
        }
    }
}

/// Runs `body` in a transaction on `c`: committed when it answers `Ok(true)`, rolled back
/// otherwise (and on an error, whose session then ends with the link's reset).
async fn transaction<T>(
    c: &Conn,
    body: impl std::future::Future<Output = Result<(T, bool), tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    c.batch_execute("BEGIN").await?;
    match body.await {
        Ok((out, true)) => {
            c.batch_execute("COMMIT").await?;
            Ok(out)
        }
        Ok((out, false)) => {
            c.batch_execute("ROLLBACK").await?;
            Ok(out)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Locks the position row (every writer of every node waits here for the one before it
/// to commit) and answers the next position.
async fn next_position(c: &Conn) -> Result<i64, tokio_postgres::Error> {
    let row = c.query_one("SELECT seq FROM dnc_state WHERE id = 1 FOR UPDATE", &[]).await?;
    Ok(row.get::<_, i64>(0) + 1)
}

/// Records a change of `list` at position `seq`: the list's version goes up by one.
async fn changed(c: &Conn, list: &str, seq: i64) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE dnc_state SET seq = $1 WHERE id = 1", &[&seq]).await?;
    c.execute(
        "INSERT INTO dnc_lists (name, version) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET version = dnc_lists.version + 1",
        &[&list],
    )
    .await?;
    Ok(())
}

impl DncLists for PgDnc {
    fn add(&self, list: &str, numbers: &[u64], source: &str, at: u64) -> Result<usize, Error> {
        let mut numbers: Vec<i64> = numbers.iter().map(|n| big(*n)).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let (list, source, at) = (list.to_owned(), source.to_owned(), big(at));
        self.writer.block(move |c| async move {
            let body = async {
                let seq = next_position(&c).await?;
                let row = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM dnc_lists WHERE name = $1), (SELECT count(*) FROM dnc_lists)",
                        &[&list],
                    )
                    .await?;
                let (known, lists): (bool, i64) = (row.get(0), row.get(1));
                if !known && lists >= MAX_LISTS as i64 {
                    return Ok((None, false));
                }
                let mut added = 0;
                for chunk in numbers.chunks(CHUNK) {
                    added += c
                        .execute(
                            "INSERT INTO dnc (list, number, source, added_at, seq)
                             SELECT $1, n, $3, $4, $5 FROM unnest($2::bigint[]) AS n
                             ON CONFLICT (list, number) DO NOTHING",
                            &[&list, &chunk, &source, &at, &seq],
                        )
                        .await?;
                }
                if added == 0 {
                    // Nothing changed: no position is taken.
                    return Ok((Some(0), false));
                }
                changed(&c, &list, seq).await?;
                Ok((Some(added as usize), true))
            };
            match transaction(&c, body).await.map_err(|e| unavailable("adding to a suppression list", e))? {
                Some(added) => Ok(added),
                None => Err(Error::invalid(format!("at most {MAX_LISTS} suppression lists"))),
            }
        })
    }

    fn remove(&self, list: &str, number: u64) -> Result<bool, Error> {
        let (list, number) = (list.to_owned(), big(number));
        self.writer.block(move |c| async move {
            let body = async {
                let seq = next_position(&c).await?;
                let gone = c.execute("DELETE FROM dnc WHERE list = $1 AND number = $2", &[&list, &number]).await?;
                if gone == 0 {
                    return Ok((false, false));
                }
                c.execute(
                    "INSERT INTO dnc_removed (list, number, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (list, number) DO UPDATE SET seq = excluded.seq",
                    &[&list, &number, &seq],
                )
                .await?;
                changed(&c, &list, seq).await?;
                Ok((true, true))
            };
            transaction(&c, body).await.map_err(|e| unavailable("taking a number off a suppression list", e))
        })
    }

    fn get(&self, list: &str, number: u64) -> Result<Option<DncEntry>, Error> {
        let (list, key) = (list.to_owned(), big(number));
        self.reader.block(move |c| async move {
            let row = c
                .query_opt("SELECT source, added_at FROM dnc WHERE list = $1 AND number = $2", &[&list, &key])
                .await
                .map_err(|e| unavailable("reading a suppression entry", e))?;
            Ok(row.map(|r| DncEntry { list, number, source: r.get(0), added_at: unbig(r.get(1)) }))
        })
    }

    fn position(&self) -> Result<u64, Error> {
        self.reader.block(move |c| async move {
            let row = c
                .query_one("SELECT seq FROM dnc_state WHERE id = 1", &[])
                .await
                .map_err(|e| unavailable("reading the suppression lists' position", e))?;
            Ok(unbig(row.get(0)))
        })
    }

    fn changes(&self, after: (u64, u64), limit: usize) -> Result<Vec<DncChange>, Error> {
        let (seq, number, limit) = (big(after.0), big(after.1), big(limit as u64));
        self.reader.block(move |c| async move {
            let rows = c
                .query(
                    "SELECT seq, list, number, true FROM dnc WHERE (seq, number) > ($1, $2)
                     UNION ALL
                     SELECT seq, list, number, false FROM dnc_removed WHERE (seq, number) > ($1, $2)
                     ORDER BY 1, 3 LIMIT $3",
                    &[&seq, &number, &limit],
                )
                .await
                .map_err(|e| unavailable("reading the suppression lists' changes", e))?;
            Ok(rows
                .iter()
                .map(|r| DncChange { seq: unbig(r.get(0)), list: r.get(1), number: unbig(r.get(2)), listed: r.get(3) })
                .collect())
        })
    }

    fn versions(&self) -> Result<Vec<(String, u64)>, Error> {
        self.reader.block(move |c| async move {
            let rows = c
                .query("SELECT name, version FROM dnc_lists ORDER BY name", &[])
                .await
                .map_err(|e| unavailable("reading the suppression lists", e))?;
            Ok(rows.iter().map(|r| (r.get(0), unbig(r.get(1)))).collect())
        })
    }

    fn audit(&self, row: AuditRow) {
        if self.backlog.fetch_add(1, Ordering::Relaxed) >= AUDIT_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("The audit trail's backlog is full; a dial decision is not recorded");
            return;
        }
        let sent = match &*self.audit.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(AuditJob::Row(Box::new(row))).is_ok(),
            None => false,
        };
        if !sent {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, Error> {
        let (done, wait) = std_mpsc::sync_channel(1);
        let flushing = match &*self.audit.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(AuditJob::Flush(done)).is_ok(),
            None => false,
        };
        if flushing {
            let _ = callgate_backend::blocking(|| wait.recv_timeout(self.pg.settings().commit_timeout * 2));
        }
        let (campaign, since, limit) = (campaign.to_owned(), big(since), big(limit as u64));
        self.reader.block(move |c| async move {
            let rows = c
                .query(
                    "SELECT campaign, attempt, lead_id, number, at, timezone, local_time, region, rules, lists, decision
                     FROM dnc_audit WHERE campaign = $1 AND at >= $2 ORDER BY id LIMIT $3",
                    &[&campaign, &since, &limit],
                )
                .await
                .map_err(|e| unavailable("reading the audit trail", e))?;
            Ok(rows
                .iter()
                .map(|r| AuditRow {
                    campaign: r.get(0),
                    attempt: unbig(r.get(1)),
                    lead_id: unbig(r.get(2)),
                    number: r.get(3),
                    at: unbig(r.get(4)),
                    timezone: r.get(5),
                    local_time: r.get(6),
                    region: r.get(7),
                    rules: r.get(8),
                    lists: r.get(9),
                    decision: r.get(10),
                })
                .collect())
        })
    }
}

impl Drop for PgDnc {
    fn drop(&mut self) {
        // The writer task ends once it has written what it was handed.
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

const AUDIT_INSERT: &str = "INSERT INTO dnc_audit
    (campaign, attempt, lead_id, number, at, timezone, local_time, region, rules, lists, decision)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

async fn write_audit(c: &Conn, rows: &[AuditRow]) -> Result<(), tokio_postgres::Error> {
    // Prepared before the transaction, so the inserts go out on one round trip.
    c.prepared(AUDIT_INSERT).await?;
    let body = async {
        let inserts = rows.iter().map(|r| async move {
            let (attempt, lead, at) = (big(r.attempt), big(r.lead_id), big(r.at));
            c.execute(
                AUDIT_INSERT,
                &[
                    &r.campaign,
                    &attempt,
                    &lead,
                    &r.number,
                    &at,
                    &r.timezone,
                    &r.local_time,
                    &r.region,
                    &r.rules,
                    &r.lists,
                    &r.decision,
                ],
            )
            .await
        });
        futures_util::future::try_join_all(inserts).await?;
        Ok(((), true))
    };
    transaction(c, body).await
}

/// The audit writer: takes every row waiting (up to a batch), writes them in one
/// transaction, prunes past the retention once an hour of audited time, answers flushes.
async fn audit_writer(mut rx: mpsc::UnboundedReceiver<AuditJob>, mut link: Link, backlog: Arc<AtomicUsize>) {
    // The audited time of the last prune (rows carry their own time: no clock needed).
    let mut pruned_at: Option<u64> = None;
    while let Some(first) = rx.recv().await {
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        let mut job = Some(first);
        while let Some(j) = job.take() {
            match j {
                AuditJob::Row(r) => rows.push(*r),
                AuditJob::Flush(done) => flushes.push(done),
            }
            if rows.len() < AUDIT_BATCH {
                job = rx.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            let written = match link.client().await {
                Ok(c) => write_audit(&c, &rows).await.map_err(|e| unavailable("writing the audit trail", e)),
                Err(e) => Err(e),
            };
            backlog.fetch_sub(rows.len(), Ordering::Relaxed);
            match written {
                Ok(()) => {
                    let newest = rows.iter().map(|r| r.at).max().unwrap_or(0);
                    if pruned_at.is_none_or(|p| newest >= p + AUDIT_PRUNE_EVERY_MS) {
                        prune(&mut link, newest).await;
                        pruned_at = Some(newest);
                    }
                }
                Err(e) => {
                    link.reset();
                    tracing::error!(error = %e, rows = rows.len(), "Cannot write the audit trail");
                }
            }
        }
        for f in flushes {
            let _ = f.try_send(());
        }
    }
}

async fn prune(link: &mut Link, newest: u64) {
    let before = big(newest.saturating_sub(AUDIT_RETENTION_MS));
    let pruned = match link.client().await {
        Ok(c) => c
            .execute("DELETE FROM dnc_audit WHERE at < $1", &[&before])
            .await
            .map_err(|e| unavailable("pruning the audit trail", e)),
        Err(e) => Err(e),
    };
    match pruned {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "Audit rows past their retention deleted"),
        Err(e) => tracing::error!(error = %e, "Cannot prune the audit trail"),
    }
}
