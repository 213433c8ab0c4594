//! The tables and what is read back from them at start.

use crate::StoreError;
pub use callgate_backend::journaled::{StoredEnded, StoredLease, StoredTicket};
use rusqlite::{params, Connection};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    key TEXT,
    class TEXT NOT NULL,
    flow TEXT,
    pools TEXT NOT NULL,          -- JSON [[pool, units], ...]
    granted_at INTEGER NOT NULL,  -- Unix ms
    expires_at INTEGER NOT NULL,  -- Unix ms
    ttl_ms INTEGER NOT NULL,
    meta TEXT,
    owner TEXT                    -- name of the API key that acquired it
);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    key TEXT,
    class TEXT NOT NULL,
    flow TEXT,
    pools TEXT NOT NULL,
    seq INTEGER NOT NULL,         -- arrival order, fixes the place in line
    enqueued_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    ttl_ms INTEGER NOT NULL,
    meta TEXT,
    owner TEXT
);
-- How tickets ended, kept for the ticket retention time so that a waiter who asks again
-- after a restart learns the real outcome (not 404). Pruned as commits go by.
CREATE TABLE IF NOT EXISTS ended_tickets (
    id INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL,        -- granted | cancelled | timed_out
    lease INTEGER,                -- the lease it became, when granted
    flow TEXT,
    at INTEGER NOT NULL           -- Unix ms
);
CREATE INDEX IF NOT EXISTS ended_tickets_at ON ended_tickets (at);
-- Each pool's mean hold time (ms), behind `eta_ms` and `Retry-After`.
CREATE TABLE IF NOT EXISTS pool_holds (pool TEXT PRIMARY KEY, mean_hold_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- A runtime limit change, with the limit the configuration had when it was made: it
-- applies after a restart only while the configuration still says the same.
CREATE TABLE IF NOT EXISTS pool_limits (
    pool TEXT PRIMARY KEY,
    limit_units INTEGER NOT NULL,
    config_limit INTEGER NOT NULL
);
";

/// Everything the journal held at start.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Live leases.
    pub leases: Vec<StoredLease>,
    /// Waiting tickets, in arrival order.
    pub tickets: Vec<StoredTicket>,
    /// The next id to hand out.
    pub next_id: u64,
    /// The next arrival sequence number.
    pub next_seq: u64,
    /// Runtime limit changes: `(pool, limit, the configured limit when it was made)`.
    pub limits: Vec<(String, u32, u32)>,
    /// Ended tickets, oldest end first.
    pub ended: Vec<StoredEnded>,
    /// `(pool, mean hold time in ms)`.
    pub holds: Vec<(String, u64)>,
    /// The id high-water mark reserved on disk (already folded into `next_id`).
    pub id_reserved: u64,
}

fn parse_pools(text: &str) -> Result<Vec<(String, u32)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError(format!("bad pools column `{text}`: {e}")))
}

/// Adds the columns that later versions added to a journal created before them.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for table in ["leases", "tickets"] {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let has_owner = stmt.query_map([], |r| r.get::<_, String>(1))?.any(|n| n.is_ok_and(|n| n == "owner"));
        if !has_owner {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN owner TEXT"))?;
        }
    }
    Ok(())
}

pub(crate) fn load(conn: &Connection) -> Result<Restored, StoreError> {
    let mut out = Restored { next_id: 1, next_seq: 1, ..Restored::default() };
    let mut stmt = conn.prepare("SELECT name, value FROM counters")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (name, value) = row?;
        match name.as_str() {
            "next_id" => out.next_id = value as u64,
            "next_seq" => out.next_seq = value as u64,
            "id_reserved" => out.id_reserved = value as u64,
            _ => {}
        }
    }
    let mut stmt = conn.prepare(
        "SELECT id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner FROM leases ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.leases.push(StoredLease {
            id: r.get::<_, i64>(0)? as u64,
            key: r.get(1)?,
            class: r.get(2)?,
            flow: r.get(3)?,
            pools: parse_pools(&r.get::<_, String>(4)?)?,
            granted_at: r.get::<_, i64>(5)? as u64,
            expires_at: r.get::<_, i64>(6)? as u64,
            ttl_ms: r.get::<_, i64>(7)? as u64,
            meta: r.get(8)?,
            owner: r.get(9)?,
        });
    }
    let mut stmt = conn.prepare(
        "SELECT id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms, meta, owner FROM tickets ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.tickets.push(StoredTicket {
            id: r.get::<_, i64>(0)? as u64,
            key: r.get(1)?,
            class: r.get(2)?,
            flow: r.get(3)?,
            pools: parse_pools(&r.get::<_, String>(4)?)?,
            seq: r.get::<_, i64>(5)? as u64,
            enqueued_at: r.get::<_, i64>(6)? as u64,
            deadline: r.get::<_, i64>(7)? as u64,
            ttl_ms: r.get::<_, i64>(8)? as u64,
            meta: r.get(9)?,
            owner: r.get(10)?,
        });
    }
    let mut stmt = conn.prepare("SELECT pool, limit_units, config_limit FROM pool_limits")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u32, r.get::<_, i64>(2)? as u32)))?;
    for row in rows {
        out.limits.push(row?);
    }
    let mut stmt = conn.prepare("SELECT id, outcome, lease, flow, at FROM ended_tickets ORDER BY at, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredEnded {
            id: r.get::<_, i64>(0)? as u64,
            outcome: r.get(1)?,
            lease: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            flow: r.get(3)?,
            at: r.get::<_, i64>(4)? as u64,
        })
    })?;
    for row in rows {
        out.ended.push(row?);
    }
    let mut stmt = conn.prepare("SELECT pool, mean_hold_ms FROM pool_holds")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
    for row in rows {
        out.holds.push(row?);
    }
    // Ids handed out before a crash may never have reached the disk; the reserved
    // high-water mark is ahead of every id in use (see `writer`), so a restart starts
    // there and never hands out an id twice.
    out.next_id = out.next_id.max(out.id_reserved);
    // `next_seq` is a reservation too (see `writer`). Ids and arrival numbers in rows are
    // below the reservations in a healthy journal; take the maximum anyway so that ids
    // are never reused.
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

/// Removes rows the server could not restore (they name a pool or class that is gone).
pub(crate) fn forget(conn: &Connection, leases: &[u64], tickets: &[u64]) -> Result<(), StoreError> {
    for id in leases {
        conn.execute("DELETE FROM leases WHERE id = ?1", params![*id as i64])?;
    }
    for id in tickets {
        conn.execute("DELETE FROM tickets WHERE id = ?1", params![*id as i64])?;
    }
    Ok(())
}
