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
";

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
        Ok(DncStore { conn: Mutex::new(conn) })
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO dnc (list, number, source, added_at) VALUES (?1, ?2, ?3, ?4)")?;
            for n in numbers {
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
}
