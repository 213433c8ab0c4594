//! Suppression (do-not-call) lists, durable in `dnc.db` beside the journal: one row per
//! number and list, with where the entry came from (`import:FILE`, `api`, `call:ID`) and
//! when (Unix ms).
//!
//! A file of its own, so that importing a million numbers never stands in the way of the
//! ledger's or the dialer's commits. Writes are rare (an import, an opt-out) and each is
//! one transaction; a batch of numbers goes in with one prepared statement, so a million
//! rows take seconds. The server loads every list into memory at start
//! (`callgate_dialer::dnc::Lists`) and checks there; this file is what survives a restart.

use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dnc (
    list TEXT NOT NULL,
    number INTEGER NOT NULL,       -- the E.164 digits, without the +
    source TEXT NOT NULL,          -- import:FILE | api | call:ID | …
    added_at INTEGER NOT NULL,     -- Unix ms
    PRIMARY KEY (list, number)
) WITHOUT ROWID;
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

/// The most audit rows waiting for the writer; beyond it rows are dropped (and logged),
/// so a stuck disk cannot grow memory without bound.
const AUDIT_BACKLOG: usize = 100_000;

/// How long the audit trail keeps a dial decision: five years (US claims under the TCPA
/// can be brought for four), so that the trail is bounded and still answers for every
/// call a complaint could be about. Older rows are deleted by the audit writer, at most
/// once an hour of audited time.
pub(crate) const AUDIT_RETENTION_MS: u64 = 5 * 366 * 24 * 3_600_000;

/// How often (in audited time) the writer deletes rows past [`AUDIT_RETENTION_MS`].
const AUDIT_PRUNE_EVERY_MS: u64 = 3_600_000;

/// One entry of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DncEntry {
    /// The list.
    pub list: String,
    /// The E.164 digits, without the `+`.
    pub number: u64,
    /// Where it came from.
    pub source: String,
    /// Unix ms.
    pub added_at: u64,
}

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

    /// Every number of every list, handed to `each` as `(list, number)` (list by list):
    /// what the server loads at start.
    pub fn load(&self, mut each: impl FnMut(&str, u64)) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT list, number FROM dnc ORDER BY list, number")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let list: String = r.get(0)?;
            let number: i64 = r.get(1)?;
            each(&list, number as u64);
        }
        Ok(())
    }

    /// Adds `numbers` to `list` in one transaction, each with `source` and `at`; a number
    /// the list has already keeps its first entry. Answers how many were new.
    pub fn add(&self, list: &str, numbers: &[u64], source: &str, at: u64) -> Result<usize, StoreError> {
        // In key order: each insert lands next to the previous one in the B-tree, instead
        // of a random page of a large table (about twice as fast for a registry upload).
        let mut numbers = numbers.to_vec();
        numbers.sort_unstable();
        numbers.dedup();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO dnc (list, number, source, added_at) VALUES (?1, ?2, ?3, ?4)")?;
            for n in &numbers {
                added += stmt.execute(params![list, *n as i64, source, at as i64])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Takes `number` off `list`; answers whether it was on it.
    pub fn remove(&self, list: &str, number: u64) -> Result<bool, StoreError> {
        let n = self.conn().execute("DELETE FROM dnc WHERE list = ?1 AND number = ?2", params![list, number as i64])?;
        Ok(n > 0)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let s = DncStore::open(dir.path()).unwrap();
        assert_eq!(s.add("internal", &[15551230001, 15551230002], "api", 7).unwrap(), 2);
        assert_eq!(s.add("internal", &[15551230001], "call:x", 9).unwrap(), 0, "the first entry stays");
        assert!(s.remove("internal", 15551230002).unwrap());
        drop(s);
        let s = DncStore::open(dir.path()).unwrap();
        let mut all = Vec::new();
        s.load(|l, n| all.push((l.to_string(), n))).unwrap();
        assert_eq!(all, vec![("internal".to_string(), 15551230001)]);
        let e = s.get("internal", 15551230001).unwrap().unwrap();
        assert_eq!((e.source.as_str(), e.added_at), ("api", 7));
        assert_eq!(s.get("internal", 1).unwrap(), None);
    }

    #[test]
    fn the_audit_trail_is_read_back_in_order_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = DncStore::open(dir.path()).unwrap();
        let row = |at: u64, campaign: &str| AuditRow {
            campaign: campaign.into(),
            attempt: at,
            lead_id: 1,
            number: "+13055550123".into(),
            at,
            timezone: "America/New_York".into(),
            local_time: "2026-01-15 20:30:00 EST".into(),
            region: "US-FL".into(),
            rules: "US-FL 08:00-20:00".into(),
            lists: "internal@1".into(),
            decision: "dialed".into(),
        };
        for at in [5, 6, 7] {
            s.audit(row(at, "a"));
        }
        s.audit(row(8, "b"));
        let rows = s.audit_rows("a", 6, 10).unwrap();
        assert_eq!(rows.iter().map(|r| r.at).collect::<Vec<_>>(), [6, 7]);
        assert_eq!(rows[0], row(6, "a"));
        assert_eq!(s.audit_rows("a", 0, 1).unwrap().len(), 1, "bounded");
    }

    #[test]
    fn the_audit_trail_forgets_decisions_past_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let s = DncStore::open(dir.path()).unwrap();
        let row = |at: u64| AuditRow {
            campaign: "a".into(),
            attempt: 1,
            lead_id: 1,
            number: "+13055550123".into(),
            at,
            timezone: "America/New_York".into(),
            local_time: "-".into(),
            region: "US".into(),
            rules: "-".into(),
            lists: "-".into(),
            decision: "dialed".into(),
        };
        let hour = 3_600_000;
        s.audit(row(10 * hour));
        s.audit(row(11 * hour));
        let at = |s: &DncStore| s.audit_rows("a", 0, 10).unwrap().iter().map(|r| r.at).collect::<Vec<_>>();
        assert_eq!(at(&s), [10 * hour, 11 * hour]);
        // Five years and half an hour after the first: it goes, the second stays.
        let later = 10 * hour + AUDIT_RETENTION_MS + hour / 2;
        s.audit(row(later));
        assert_eq!(at(&s), [11 * hour, later]);
    }
}
