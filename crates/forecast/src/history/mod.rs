//! The calls of the past, in `history.sqlite` in the data directory: one row per call
//! (its start, its end when known, its flow and number, its outcome), and the days that
//! forecasts ignore (holidays, one-off events).
//!
//! The file is separate from the server's journal: an import never waits for the journal's
//! writer, and the server's lock on the data directory (its journal) does not stop a
//! `callgate history import` beside a running server (SQLite's own locking orders the
//! writers). Every call has a key (the provider's call id, or for a CSV row without an `id`
//! its fields), so importing the same file twice counts nothing twice.

mod import;

pub use import::{parse_file, Format, Parsed, RowError, MAX_ERRORS, MAX_FILE_BYTES, MAX_ROWS};

use crate::ForecastError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// The history database's file name inside the data directory.
pub const FILE: &str = "history.sqlite";
/// The most days that may be marked to be ignored.
pub const MAX_EXCLUDED: usize = 1000;
/// The longest flow name, number, outcome or key kept (bytes).
pub const MAX_FIELD: usize = 200;

const SCHEMA: &str = "
-- One row per call of the past; `key` makes an import idempotent.
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    flow TEXT,                    -- NULL: counts for the whole account only
    number TEXT,
    started_at INTEGER NOT NULL,  -- Unix ms
    ended_at INTEGER,             -- Unix ms, when known
    outcome TEXT,
    source TEXT NOT NULL          -- csv | vapi | twilio | live
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
-- Days (UTC dates, YYYY-MM-DD) whose calls the forecasts ignore.
CREATE TABLE IF NOT EXISTS excluded_days (
    day TEXT PRIMARY KEY,
    reason TEXT
);
";

/// One call of the past.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Idempotency: the provider's call id (`vapi:…`, `twilio:…`), a CSV `id`, or the
    /// row's own fields.
    pub key: String,
    /// The flow that took it; `None`: it counts for the whole account only.
    pub flow: Option<String>,
    /// The number called (or calling), as given.
    pub number: Option<String>,
    /// Unix ms.
    pub started_at_ms: u64,
    /// Unix ms, when known (no handling time is learnt from a call without it).
    pub ended_at_ms: Option<u64>,
    /// What happened (free text from the export, e.g. `completed`, `busy`).
    pub outcome: Option<String>,
}

/// What a running server records about its own calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveCall {
    /// A request of a flow arrived (granted, queued or refused).
    Arrival {
        /// Unique per arrival (`live:l…` for a lease, `live:t…` for a ticket, `live:r…`).
        key: String,
        /// The flow.
        flow: String,
        /// Unix ms.
        at_ms: u64,
        /// `granted`, `queued` or `rejected`.
        outcome: &'static str,
    },
    /// The call of an arrival ended: `ended_at_ms` is its arrival plus the time it held
    /// its lease, so the end less the start is its handling time (without the wait).
    End {
        /// The arrival's key.
        key: String,
        /// Unix ms.
        ended_at_ms: u64,
    },
}

/// The history database of one data directory.
#[derive(Debug)]
pub struct History {
    conn: Connection,
    path: PathBuf,
    /// Whether [`History::record_live`] has set the connection up for live recording.
    live: bool,
}

/// What an import changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Calls added.
    pub added: u64,
    /// Calls that were there already (same key).
    pub already_present: u64,
}

impl History {
    /// Opens (creating when missing) `data_dir/history.sqlite`.
    pub fn open(data_dir: &Path) -> Result<History, ForecastError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ForecastError::io(format!("cannot create {}: {e}", data_dir.display())))?;
        History::open_file(&data_dir.join(FILE))
    }

    /// Opens (creating when missing) the history database at `path`.
    pub fn open_file(path: &Path) -> Result<History, ForecastError> {
        let conn = Connection::open(path).map_err(|e| ForecastError::io(format!("{}: {e}", path.display())))?;
        // WAL: a server reading while an import writes; busy_timeout: two writers queue.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(History { conn, path: path.to_owned(), live: false })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `calls` in one transaction (all or nothing), from `source`.
    pub fn add(&mut self, source: &str, calls: &[Call]) -> Result<Imported, ForecastError> {
        let tx = self.conn.transaction()?;
        let mut out = Imported::default();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (key, flow, number, started_at, ended_at, outcome, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for c in calls {
                let n = insert.execute(params![
                    c.key,
                    c.flow,
                    c.number,
                    to_sql(c.started_at_ms),
                    c.ended_at_ms.map(to_sql),
                    c.outcome,
                    source
                ])?;
                if n == 1 {
                    out.added += 1;
                } else {
                    out.already_present += 1;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Writes what a running server saw (one transaction): arrivals as calls of source
    /// `live` (a key seen before is left as it is), and the ends of those calls.
    pub fn record_live(&mut self, batch: &[LiveCall]) -> Result<(), ForecastError> {
        if !self.live {
            // What a running server records is for forecasts, not an audit: WAL with
            // `synchronous = NORMAL` keeps the file consistent and leaves the fsync to
            // checkpoints, instead of one per batch on admission's two cores.
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
            self.live = true;
        }
        let tx = self.conn.transaction()?;
        {
            let mut arrive = tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (key, flow, number, started_at, ended_at, outcome, source)
                 VALUES (?1, ?2, NULL, ?3, NULL, ?4, 'live')",
            )?;
            let mut end = tx.prepare_cached("UPDATE calls SET ended_at = ?2 WHERE key = ?1 AND ended_at IS NULL")?;
            for c in batch {
                match c {
                    LiveCall::Arrival { key, flow, at_ms, outcome } => {
                        arrive.execute(params![key, flow, to_sql(*at_ms), outcome])?;
                    }
                    LiveCall::End { key, ended_at_ms } => {
                        end.execute(params![key, to_sql(*ended_at_ms)])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Calls `each(started_at_ms, ended_at_ms)` for every call of `flow` (every call, for
    /// `None`) that started in `[from_ms, to_ms)`, in no particular order.
    pub fn scan(
        &self,
        flow: Option<&str>,
        from_ms: u64,
        to_ms: u64,
        mut each: impl FnMut(u64, Option<u64>),
    ) -> Result<(), ForecastError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT started_at, ended_at FROM calls
             WHERE started_at >= ?1 AND started_at < ?2 AND (?3 IS NULL OR flow = ?3)",
        )?;
        let mut rows = stmt.query(params![to_sql(from_ms), to_sql(to_ms), flow])?;
        while let Some(row) = rows.next()? {
            let start: i64 = row.get(0)?;
            let end: Option<i64> = row.get(1)?;
            each(start.max(0) as u64, end.map(|e| e.max(0) as u64));
        }
        Ok(())
    }

    /// The start of the latest call (of `flow`, or of any), Unix ms.
    pub fn last_start(&self, flow: Option<&str>) -> Result<Option<u64>, ForecastError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(started_at) FROM calls WHERE (?1 IS NULL OR flow = ?1)", params![flow], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(v.map(|v| v.max(0) as u64))
    }

    /// The number of calls kept (of `flow`, or of any).
    pub fn count(&self, flow: Option<&str>) -> Result<u64, ForecastError> {
        let n: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM calls WHERE (?1 IS NULL OR flow = ?1)", params![flow], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The flows that have calls, by name.
    pub fn flows(&self) -> Result<Vec<String>, ForecastError> {
        let mut stmt =
            self.conn.prepare("SELECT DISTINCT flow FROM calls WHERE flow IS NOT NULL ORDER BY flow LIMIT 1000")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks `day` (a UTC date) to be ignored by forecasts.
    pub fn exclude(&mut self, day: chrono::NaiveDate, reason: Option<&str>) -> Result<(), ForecastError> {
        if reason.is_some_and(|r| r.len() > MAX_FIELD) {
            return Err(ForecastError::input(format!("the reason is longer than {MAX_FIELD} bytes")));
        }
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM excluded_days", [], |r| r.get(0))?;
        if n as usize >= MAX_EXCLUDED {
            return Err(ForecastError::input(format!("at most {MAX_EXCLUDED} days can be excluded")));
        }
        self.conn.execute(
            "INSERT INTO excluded_days (day, reason) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET reason = excluded.reason",
            params![day.to_string(), reason],
        )?;
        Ok(())
    }

    /// Unmarks `day`; true when it was marked.
    pub fn include(&mut self, day: chrono::NaiveDate) -> Result<bool, ForecastError> {
        Ok(self.conn.execute("DELETE FROM excluded_days WHERE day = ?1", params![day.to_string()])? == 1)
    }

    /// The days marked to be ignored, in order.
    pub fn excluded(&self) -> Result<Vec<chrono::NaiveDate>, ForecastError> {
        let mut stmt = self.conn.prepare("SELECT day FROM excluded_days ORDER BY day")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for day in rows {
            let day = day?;
            if let Ok(d) = day.parse() {
                out.push(d);
            }
        }
        Ok(out)
    }
}

fn to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
