//! Suppression (do-not-call) lists, durable in `dnc.db` beside the journal: one row per
//! number and list, with where the entry came from (`import:FILE`, `api`, `call:ID`) and
//! when (Unix ms); the [`DncLists`] of one node (a cluster keeps them in PostgreSQL).
//!
//! A file of its own, so that importing a million numbers never stands in the way of the
//! ledger's or the dialer's commits. Writes are rare (an import, an opt-out) and each is
//! one transaction (`BEGIN IMMEDIATE`, so a second handle on the file waits its turn); a
//! batch of numbers goes in with one prepared statement, so a million rows take seconds.
//! Each transaction that changes a list takes the next position (`dnc_state`), which its
//! rows carry (`seq`; a removal leaves a row in `dnc_removed`), so a copy in memory
//! catches up with [`DncLists::changes`]. The server loads every list into memory at
//! start (`callgate_dialer::dnc::Lists`) and checks there; this file is what survives a
//! restart. A `dnc.db` of an older version (without positions) gets them at open.

use crate::StoreError;
use callgate_backend::dnc::{DncChange, DncLists, AUDIT_BACKLOG, AUDIT_PRUNE_EVERY_MS, AUDIT_RETENTION_MS, MAX_LISTS};
use callgate_backend::Error;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

pub use callgate_backend::dnc::{AuditRow, DncEntry};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dnc (
    list TEXT NOT NULL,
    number INTEGER NOT NULL,       -- the E.164 digits, without the +
    source TEXT NOT NULL,          -- import:FILE | api | call:ID | …
    added_at INTEGER NOT NULL,     -- Unix ms
    seq INTEGER NOT NULL DEFAULT 1, -- the position of the transaction that added it
    PRIMARY KEY (list, number)
) WITHOUT ROWID;
-- The last removal of each number from each list, at its position.
CREATE TABLE IF NOT EXISTS dnc_removed (
    list TEXT NOT NULL,
    number INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (list, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dnc_lists (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
-- The position of the last change.
CREATE TABLE IF NOT EXISTS dnc_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    attempt INTEGER NOT NULL,      -- 0: no attempt (rescheduled)
    lead_id INTEGER NOT NULL,
    number TEXT NOT NULL,          -- E.164
    at INTEGER NOT NULL,           -- Unix ms
    timezone TEXT NOT NULL,        -- the callee's IANA zone
    local_time TEXT NOT NULL,      -- at the callee
    region TEXT NOT NULL,          -- US-FL, GB, or empty
    rules TEXT NOT NULL,           -- the windows and caps checked
    lists TEXT NOT NULL,           -- list@version; …
    decision TEXT NOT NULL         -- dialed | suppressed by LIST | rescheduled to MS
);
CREATE INDEX IF NOT EXISTS audit_campaign ON audit (campaign, at);
";

/// The handle to `dnc.db`.
pub struct DncStore {
    conn: Mutex<Connection>,
    /// Audit rows waiting for the writer thread, and how many.
    audit: Mutex<Option<std::sync::mpsc::SyncSender<AuditJob>>>,
}

enum AuditJob {
    Row(Box<AuditRow>),
    /// Answered once every row sent before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

fn write_audit(conn: &mut Connection, rows: &[AuditRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (campaign, attempt, lead_id, number, at, timezone, local_time, region, rules, lists, decision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.campaign,
                r.attempt as i64,
                r.lead_id as i64,
                r.number,
                r.at as i64,
                r.timezone,
                r.local_time,
                r.region,
                r.rules,
                r.lists,
                r.decision
            ])?;
        }
    }
    tx.commit()
}

/// Deletes the audit rows older than [`AUDIT_RETENTION_MS`] before `newest` (the latest
/// audited time); how many.
fn prune_audit(conn: &Connection, newest: u64) -> rusqlite::Result<usize> {
    let before = newest.saturating_sub(AUDIT_RETENTION_MS);
    conn.prepare_cached("DELETE FROM audit WHERE at < ?1")?.execute(params![before.min(i64::MAX as u64) as i64])
}

impl std::fmt::Debug for DncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DncStore").finish_non_exhaustive()
    }
}

impl DncStore {
    /// Opens (or creates) `dir/dnc.db`.
    pub fn open(dir: &Path) -> Result<DncStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("dnc.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: an opt-out that was acknowledged survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        // The audit trail is written by a thread of its own, in batches, so a dial never
        // waits for it.
        let mut writer = Connection::open(dir.join("dnc.db"))?;
        writer.busy_timeout(std::time::Duration::from_secs(10))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<AuditJob>(AUDIT_BACKLOG);
        std::thread::Builder::new()
            .name("callgate-audit".into())
            .spawn(move || {
                // The audited time of the last prune (rows carry their own time, so the
                // writer needs no clock).
                let mut pruned_at: Option<u64> = None;
                while let Ok(first) = rx.recv() {
                    let mut rows = Vec::new();
                    let mut flushes = Vec::new();
                    let mut job = Some(first);
                    while let Some(j) = job.take() {
                        match j {
                            AuditJob::Row(r) => rows.push(*r),
                            AuditJob::Flush(done) => flushes.push(done),
                        }
                        if rows.len() < 4096 {
                            job = rx.try_recv().ok();
                        }
                    }
                    if let Err(e) = write_audit(&mut writer, &rows) {
                        tracing::error!(error = %e, rows = rows.len(), "Cannot write the audit trail");
                    }
                    let newest = rows.iter().map(|r| r.at).max();
                    if let Some(newest) = newest.filter(|n| pruned_at.is_none_or(|p| *n >= p + AUDIT_PRUNE_EVERY_MS)) {
                        match prune_audit(&writer, newest) {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(rows = n, "Audit rows past their retention deleted"),
                            Err(e) => tracing::error!(error = %e, "Cannot prune the audit trail"),
                        }
                        pruned_at = Some(newest);
                    }
                    for f in flushes {
                        let _ = f.send(());
                    }
                }
            })
            .map_err(|e| StoreError(format!("cannot start the audit writer: {e}")))?;
        Ok(DncStore { conn: Mutex::new(conn), audit: Mutex::new(Some(tx)) })
    }

    /// Hands `row` to the audit writer (never waits; a full backlog drops it, logged).
    pub fn audit(&self, row: AuditRow) {
        if let Some(tx) = &*self.audit.lock().unwrap_or_else(|p| p.into_inner()) {
            if tx.try_send(AuditJob::Row(Box::new(row))).is_err() {
                tracing::error!("The audit trail's backlog is full; a dial decision is not recorded");
            }
        }
    }

    /// The audit rows of `campaign` from `since` (Unix ms), oldest first, at most `limit`,
    /// once every row handed over before the call is written.
    pub fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let flushed = {
            let tx = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            tx.as_ref().and_then(|tx| {
                let (done, wait) = std::sync::mpsc::channel();
                tx.send(AuditJob::Flush(done)).ok().map(|_| wait)
            })
        };
        if let Some(wait) = flushed {
            let _ = wait.recv();
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT campaign, attempt, lead_id, number, at, timezone, local_time, region, rules, lists, decision
             FROM audit WHERE campaign = ?1 AND at >= ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![campaign, since as i64, limit.min(i64::MAX as usize) as i64], |r| {
            Ok(AuditRow {
                campaign: r.get(0)?,
                attempt: r.get::<_, i64>(1)? as u64,
                lead_id: r.get::<_, i64>(2)? as u64,
                number: r.get(3)?,
                at: r.get::<_, i64>(4)? as u64,
                timezone: r.get(5)?,
                local_time: r.get(6)?,
                region: r.get(7)?,
                rules: r.get(8)?,
                lists: r.get(9)?,
                decision: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `numbers` to `list` in one transaction, each with `source` and `at`; a number
    /// the list has already keeps its first entry. Answers how many were new; refused when
    /// `list` would be one list more than [`MAX_LISTS`].
    pub fn add(&self, list: &str, numbers: &[u64], source: &str, at: u64) -> Result<usize, Error> {
        // In key order: each insert lands next to the previous one in the B-tree, instead
        // of a random page of a large table (about twice as fast for a registry upload).
        let mut numbers = numbers.to_vec();
        numbers.sort_unstable();
        numbers.dedup();
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<Result<usize, Error>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let known: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM dnc_lists WHERE name = ?1)", [list], |r| r.get(0))?;
            if !known {
                let lists: i64 = tx.query_row("SELECT count(*) FROM dnc_lists", [], |r| r.get(0))?;
                if lists >= MAX_LISTS as i64 {
                    return Ok(Err(Error::invalid(format!("at most {MAX_LISTS} suppression lists"))));
                }
            }
            let seq = position(&tx)? + 1;
            let mut added = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO dnc (list, number, source, added_at, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for n in &numbers {
                    added += stmt.execute(params![list, *n as i64, source, at as i64, seq as i64])?;
                }
            }
            if added == 0 {
                // Nothing changed: no position is taken (the transaction rolls back).
                return Ok(Ok(0));
            }
            changed(&tx, list, seq)?;
            tx.commit()?;
            Ok(Ok(added))
        };
        run(&mut conn).map_err(|e| unavailable(e.into()))?
    }

    /// Takes `number` off `list`; answers whether it was on it.
    pub fn remove(&self, list: &str, number: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM dnc WHERE list = ?1 AND number = ?2", params![list, number as i64])?;
        if n == 0 {
            return Ok(false);
        }
        let seq = position(&tx)? + 1;
        tx.execute(
            "INSERT INTO dnc_removed (list, number, seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (list, number) DO UPDATE SET seq = excluded.seq",
            params![list, number as i64, seq as i64],
        )?;
        changed(&tx, list, seq)?;
        tx.commit()?;
        Ok(true)
    }

    /// The entry of `number` on `list`, if any.
    pub fn get(&self, list: &str, number: u64) -> Result<Option<DncEntry>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT source, added_at FROM dnc WHERE list = ?1 AND number = ?2",
                params![list, number as i64],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        Ok(row.map(|(source, at)| DncEntry { list: list.to_string(), number, source, added_at: at as u64 }))
    }

    fn changes(&self, after: (u64, u64), limit: usize) -> Result<Vec<DncChange>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, list, number, 1 FROM dnc WHERE (seq, number) > (?1, ?2)
             UNION ALL
             SELECT seq, list, number, 0 FROM dnc_removed WHERE (seq, number) > (?1, ?2)
             ORDER BY 1, 3 LIMIT ?3",
        )?;
        let (seq, number) = (after.0.min(i64::MAX as u64) as i64, after.1.min(i64::MAX as u64) as i64);
        let rows = stmt.query_map(params![seq, number, limit.min(i64::MAX as usize) as i64], |r| {
            Ok(DncChange {
                seq: r.get::<_, i64>(0)? as u64,
                list: r.get(1)?,
                number: r.get::<_, i64>(2)? as u64,
                listed: r.get::<_, i64>(3)? == 1,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn versions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name, version FROM dnc_lists ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// The position of the last change.
fn position(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn.query_row("SELECT seq FROM dnc_state WHERE id = 1", [], |r| r.get(0)).optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Records a change of `list` at position `seq`: the list's version goes up by one.
fn changed(conn: &Connection, list: &str, seq: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO dnc_state (id, seq) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
        [seq as i64],
    )?;
    conn.execute(
        "INSERT INTO dnc_lists (name, version) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET version = version + 1",
        [list],
    )?;
    Ok(())
}

/// Gives a `dnc.db` written before positions existed its positions: every entry it has
/// came with position 1, each list at version 1. Then the indexes of the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_seq: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM pragma_table_info('dnc') WHERE name = 'seq')", [], |r| r.get(0))?;
    if !has_seq {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE dnc ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;
             INSERT OR IGNORE INTO dnc_lists (name, version) SELECT DISTINCT list, 1 FROM dnc;
             INSERT OR IGNORE INTO dnc_state (id, seq) SELECT 1, 1 WHERE EXISTS (SELECT 1 FROM dnc);
             COMMIT;",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS dnc_seq ON dnc (seq, number);
         CREATE INDEX IF NOT EXISTS dnc_removed_seq ON dnc_removed (seq, number);",
    )
}

fn unavailable(e: StoreError) -> Error {
    Error::unavailable(format!("cannot use the suppression lists: {e}")).with_source(e)
}

impl DncLists for DncStore {
    fn add(&self, list: &str, numbers: &[u64], source: &str, at: u64) -> Result<usize, Error> {
        DncStore::add(self, list, numbers, source, at)
    }

    fn remove(&self, list: &str, number: u64) -> Result<bool, Error> {
        DncStore::remove(self, list, number).map_err(unavailable)
    }

    fn get(&self, list: &str, number: u64) -> Result<Option<DncEntry>, Error> {
        DncStore::get(self, list, number).map_err(unavailable)
    }

    fn position(&self) -> Result<u64, Error> {
        position(&self.conn()).map_err(|e| unavailable(e.into()))
    }

    fn changes(&self, after: (u64, u64), limit: usize) -> Result<Vec<DncChange>, Error> {
        DncStore::changes(self, after, limit).map_err(unavailable)
    }

    fn versions(&self) -> Result<Vec<(String, u64)>, Error> {
        DncStore::versions(self).map_err(unavailable)
    }

    fn audit(&self, row: AuditRow) {
        DncStore::audit(self, row);
    }

    fn audit_rows(&self, campaign: &str, since: u64, limit: usize) -> Result<Vec<AuditRow>, Error> {
        DncStore::audit_rows(self, campaign, since, limit).map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dnc_db_without_positions_gets_them_and_keeps_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("dnc.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE dnc (list TEXT NOT NULL, number INTEGER NOT NULL, source TEXT NOT NULL,
                     added_at INTEGER NOT NULL, PRIMARY KEY (list, number)) WITHOUT ROWID;
                 INSERT INTO dnc VALUES ('internal', 15551230001, 'api', 7), ('national', 15551230002, 'import', 8);",
            )
            .unwrap();
        }
        let s = DncStore::open(dir.path()).unwrap();
        assert_eq!(DncLists::position(&s).unwrap(), 1);
        let all = DncStore::changes(&s, (0, 0), 10).unwrap();
        assert_eq!(
            all.iter().map(|c| (c.list.as_str(), c.number, c.listed)).collect::<Vec<_>>(),
            [("internal", 15551230001, true), ("national", 15551230002, true)]
        );
        assert_eq!(DncStore::versions(&s).unwrap(), [("internal".to_string(), 1), ("national".to_string(), 1)]);
        assert_eq!(s.add("internal", &[15551230003], "api", 9).unwrap(), 1);
        assert_eq!(DncLists::position(&s).unwrap(), 2, "the next change takes the next position");
        drop(s);
        assert_eq!(DncLists::position(&DncStore::open(dir.path()).unwrap()).unwrap(), 2, "migrated once");
    }
}
