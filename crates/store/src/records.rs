//! Call records and booked callbacks: durable data beside the ledger's state, in the same
//! database file, written by the same writer thread in the same group commit as the
//! events. A callback is on disk before the caller hears "we will call you back".

use crate::StoreError;
use crate::{CallRecord, Callback, CallbackQuery, Record};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use callgate_backend::records::telemetry;

pub(crate) const SCHEMA: &str = "
-- Callbacks booked by overflow steps; the campaign dialer works them off. One per
-- provider call: a repeated webhook books nothing twice.
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    call_id TEXT NOT NULL,
    number TEXT NOT NULL,         -- the caller's number, as the platform gave it
    flow TEXT NOT NULL,
    booked_at INTEGER NOT NULL,   -- Unix ms
    due_at INTEGER NOT NULL,      -- Unix ms: not before
    state TEXT NOT NULL DEFAULT 'booked',   -- booked | dialing | done
    outcome TEXT,                 -- once done: the last attempt's outcome (completed, busy, …)
    updated_at INTEGER,           -- Unix ms of the last change of state
    UNIQUE (provider, call_id)
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (state, due_at);
-- What callgate learned about each provider call, merged from every webhook about it.
CREATE TABLE IF NOT EXISTS calls (
    provider TEXT NOT NULL,
    call_id TEXT NOT NULL,
    flow TEXT,
    from_number TEXT,
    to_number TEXT,
    outcome TEXT,                 -- granted | queued | overflow:<action> | adopted
    started_at INTEGER,           -- Unix ms
    ended_at INTEGER,             -- Unix ms
    duration_ms INTEGER,
    ended_reason TEXT,
    cost REAL,                    -- USD, as the platform reports it
    recording_url TEXT,
    updated_at INTEGER NOT NULL,
    assistant TEXT,               -- the assistant that took it (Vapi's call.assistantId)
    telemetry TEXT,               -- JSON: what the platform measured (latencies, costs)
    PRIMARY KEY (provider, call_id)
);
CREATE INDEX IF NOT EXISTS calls_updated ON calls (updated_at);
";

/// Columns added to `callbacks` after its first release: a journal written before them
/// gets them when it is opened (SQLite adds a nullable column in place).
const CALLBACK_COLUMNS_ADDED: [(&str, &str); 2] = [("outcome", "TEXT"), ("updated_at", "INTEGER")];
/// Columns added to `calls` after its first release, the same way.
const CALL_COLUMNS_ADDED: [(&str, &str); 2] = [("assistant", "TEXT"), ("telemetry", "TEXT")];

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut have = Vec::new();
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        have.push(n?);
    }
    Ok(have)
}

/// Brings an older journal's tables up to this schema.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for (table, added) in [("callbacks", CALLBACK_COLUMNS_ADDED), ("calls", CALL_COLUMNS_ADDED)] {
        let have = columns(conn, table)?;
        for (column, kind) in added {
            if !have.iter().any(|h| h == column) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
            }
        }
    }
    Ok(())
}

fn ms(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn from_ms(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

pub(crate) fn apply(tx: &Transaction<'_>, record: &Record) -> Result<(), StoreError> {
    match record {
        Record::Callback(c) => {
            tx.prepare_cached(
                "INSERT INTO callbacks (provider, call_id, number, flow, booked_at, due_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (provider, call_id) DO NOTHING",
            )?
            .execute(params![
                c.provider,
                c.call_id,
                c.number,
                c.flow,
                ms(Some(c.booked_at)),
                ms(Some(c.due_at))
            ])?;
        }
        Record::CallbackState(u) => {
            tx.prepare_cached(
                "UPDATE callbacks SET state = ?2, outcome = COALESCE(?3, outcome), updated_at = ?4
                 WHERE id = ?1 AND (state = 'booked' OR ?2 = 'done')",
            )?
            .execute(params![
                i64::try_from(u.id).unwrap_or(i64::MAX),
                u.state.as_str(),
                u.outcome,
                ms(Some(u.at))
            ])?;
        }
        Record::Call(u) => {
            tx.prepare_cached(
                "INSERT INTO calls (provider, call_id, flow, from_number, to_number, outcome, started_at,
                                    ended_at, duration_ms, ended_reason, cost, recording_url, updated_at,
                                    assistant, telemetry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (provider, call_id) DO UPDATE SET
                    flow = COALESCE(excluded.flow, flow),
                    from_number = COALESCE(excluded.from_number, from_number),
                    to_number = COALESCE(excluded.to_number, to_number),
                    outcome = COALESCE(excluded.outcome, outcome),
                    started_at = COALESCE(excluded.started_at, started_at),
                    ended_at = COALESCE(excluded.ended_at, ended_at),
                    duration_ms = COALESCE(excluded.duration_ms, duration_ms),
                    ended_reason = COALESCE(excluded.ended_reason, ended_reason),
                    cost = COALESCE(excluded.cost, cost),
                    recording_url = COALESCE(excluded.recording_url, recording_url),
                    assistant = COALESCE(excluded.assistant, assistant),
                    telemetry = COALESCE(excluded.telemetry, telemetry),
                    updated_at = excluded.updated_at",
            )?
            .execute(params![
                u.provider,
                u.call_id,
                u.flow,
                u.from_number,
                u.to_number,
                u.outcome,
                ms(u.started_at),
                ms(u.ended_at),
                ms(u.duration_ms),
                u.ended_reason,
                u.cost.filter(|c| c.is_finite()),
                u.recording_url,
                ms(Some(u.at)),
                u.assistant,
                u.telemetry.as_ref().map(|t| telemetry::to_json(t).to_string()),
            ])?;
        }
    }
    Ok(())
}

fn callback_row(r: &Row<'_>) -> rusqlite::Result<Callback> {
    Ok(Callback {
        id: r.get::<_, i64>(0)? as u64,
        provider: r.get(1)?,
        call_id: r.get(2)?,
        number: r.get(3)?,
        flow: r.get(4)?,
        booked_at: r.get::<_, i64>(5)? as u64,
        due_at: r.get::<_, i64>(6)? as u64,
        state: r.get(7)?,
        outcome: r.get(8)?,
        updated_at: from_ms(r.get(9)?),
    })
}

pub(crate) fn callbacks(conn: &Connection, q: &CallbackQuery) -> Result<Vec<Callback>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, provider, call_id, number, flow, booked_at, due_at, state, outcome, updated_at FROM callbacks
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR flow = ?2)
         ORDER BY due_at, id LIMIT ?3",
    )?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![q.state, q.flow, limit], callback_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const CALL_COLUMNS: &str = "provider, call_id, flow, from_number, to_number, outcome, started_at, ended_at,
     duration_ms, ended_reason, cost, recording_url, updated_at, assistant, telemetry";

fn call_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        provider: r.get(0)?,
        call_id: r.get(1)?,
        flow: r.get(2)?,
        from_number: r.get(3)?,
        to_number: r.get(4)?,
        outcome: r.get(5)?,
        started_at: from_ms(r.get(6)?),
        ended_at: from_ms(r.get(7)?),
        duration_ms: from_ms(r.get(8)?),
        ended_reason: r.get(9)?,
        cost: r.get(10)?,
        recording_url: r.get(11)?,
        at: r.get::<_, i64>(12)? as u64,
        assistant: r.get(13)?,
        telemetry: r.get::<_, Option<String>>(14)?.as_deref().and_then(telemetry::from_json).map(Box::new),
    })
}

pub(crate) fn calls(conn: &Connection, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls ORDER BY updated_at DESC, call_id LIMIT ?1"))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![limit], call_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn call(conn: &Connection, provider: &str, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE provider = ?1 AND call_id = ?2"))?
        .query_row(params![provider, call_id], call_row)
        .optional()?)
}
