// Long file: campaign leads, attempts and their rules in one SQLite schema and its queries.
//! Campaigns, leads and call attempts: durable in `campaigns.db` beside the journal in the
//! data directory.
//!
//! The SQLite [`Leads`] store: it keeps rows and runs queries; what each write does to a
//! lead is decided by `callgate_backend::leads::rules`, read from and written back to the
//! rows in the writer's transaction.
//!
//! A file of its own, with a writer thread of its own, so that importing 100,000 leads
//! never stands in the way of the ledger's group commits (SQLite has one writer per file).
//! The writer works like the journal's: it takes every job waiting, applies them all in
//! one transaction, commits once (`synchronous = FULL`, so fsynced) and only then answers
//! each job. A dialer that awaits [`Leads::write`] for a claimed attempt therefore
//! knows the attempt is on disk before it places the call.
//!
//! Reads go through a second connection (WAL lets it read beside the writer).

use crate::StoreError;
use callgate_backend::leads::rules::{self, Dialed, Standing};
use callgate_backend::leads::{
    AttemptEnd, AttemptEnded, AttemptRow, CampaignCounts, LeadOp, LeadOut, LeadRow, Leads, NewLead, PendingLead,
    StoredCampaign,
};
use callgate_backend::{BoxFuture, Error};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,            -- the campaign's settings as JSON
    state TEXT NOT NULL,           -- paused | running | stopped
    source TEXT NOT NULL,          -- config | api
    created_at INTEGER NOT NULL,   -- Unix ms
    updated_at INTEGER NOT NULL,
    paused_reason TEXT             -- why callgate paused it (an account error); NULL: not by callgate
);
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    phone TEXT NOT NULL,           -- E.164
    name TEXT,
    timezone TEXT NOT NULL,        -- IANA zone
    score REAL NOT NULL DEFAULT 0,
    vars TEXT,                     -- JSON object handed to the assistant
    warm INTEGER NOT NULL DEFAULT 0,   -- 1: a callback or a hot lead, dialed first
    class TEXT,                    -- the class to dial it in (NULL: the campaign's)
    callback_id INTEGER,           -- the booked callback it returns
    state TEXT NOT NULL,           -- pending | dialing | in_call | done | failed | exhausted | suppressed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL DEFAULT 0,    -- Unix ms: not before
    last_outcome TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (campaign, phone)
);
CREATE INDEX IF NOT EXISTS leads_state ON leads (campaign, state);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL,
    campaign TEXT NOT NULL,
    number INTEGER NOT NULL,       -- 1 for the lead's first attempt; refusals do not count
    class TEXT NOT NULL,
    provider TEXT NOT NULL,
    lease TEXT,                    -- the ledger lease the call holds
    call_id TEXT,                  -- the provider's id, once placed
    state TEXT NOT NULL,           -- dialing | live | ended
    outcome TEXT,                  -- completed | busy | no_answer | voicemail | failed | refused | interrupted …
    reason TEXT,                   -- the provider's words
    placed_at INTEGER NOT NULL,    -- Unix ms: claimed, before the call is placed
    answered_at INTEGER,
    ended_at INTEGER,
    talk_ms INTEGER,
    cost REAL,
    callback_id INTEGER            -- the booked callback this attempt dials (NULL: a campaign attempt)
);
CREATE INDEX IF NOT EXISTS attempts_lead ON attempts (lead_id, placed_at);
CREATE INDEX IF NOT EXISTS attempts_campaign ON attempts (campaign, placed_at);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts (state) WHERE state != 'ended';
-- Callbacks taken from the journal's book: each becomes (or warms) one lead, once, and is
-- settled (done_at, outcome) in the same commit as the attempt end that settles it.
CREATE TABLE IF NOT EXISTS taken_callbacks (
    callback_id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    lead_id INTEGER NOT NULL,
    taken_at INTEGER NOT NULL,
    booked_at INTEGER,             -- Unix ms: when the caller asked (NULL in older files: taken_at)
    outcome TEXT,                  -- once settled: the outcome the callback is done with
    done_at INTEGER                -- Unix ms: settled (NULL: still to be dialed or being dialed)
);
";

/// Columns added after the first release, per table: a file written before them gets them
/// when it is opened (see [`migrate`]).
const COLUMNS_ADDED: [(&str, &str, &str); 5] = [
    ("campaigns", "paused_reason", "TEXT"),
    ("attempts", "callback_id", "INTEGER"),
    ("taken_callbacks", "booked_at", "INTEGER"),
    ("taken_callbacks", "outcome", "TEXT"),
    ("taken_callbacks", "done_at", "INTEGER"),
];

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    Ok(names.collect::<Result<_, _>>()?)
}

/// Brings an older `campaigns.db` up to this schema, in one transaction. What the new
/// columns would have said is filled in as the old code behaved: an open attempt of a warm
/// lead dials its callback; a taken callback whose lead is no longer warm was settled, with
/// the lead's last outcome, when that lead was through.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let mut added = Vec::new();
    for (table, column, kind) in COLUMNS_ADDED {
        if !columns(&tx, table)?.iter().any(|c| c == column) {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
            added.push(column);
        }
    }
    if added.contains(&"callback_id") {
        tx.execute_batch(
            "UPDATE attempts SET callback_id =
                (SELECT callback_id FROM leads WHERE leads.id = attempts.lead_id AND leads.warm = 1)
             WHERE state != 'ended'",
        )?;
    }
    if added.contains(&"done_at") {
        tx.execute_batch(
            "UPDATE taken_callbacks SET done_at = taken_at,
                outcome = (SELECT last_outcome FROM leads WHERE leads.id = taken_callbacks.lead_id)
             WHERE NOT EXISTS (SELECT 1 FROM leads WHERE leads.id = taken_callbacks.lead_id AND leads.warm = 1)",
        )?;
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS taken_callbacks_open ON taken_callbacks (lead_id) WHERE done_at IS NULL",
    )?;
    tx.commit()?;
    Ok(())
}

struct Job {
    ops: Vec<LeadOp>,
    done: oneshot::Sender<Result<Vec<LeadOut>, Error>>,
}

/// Why an op was not applied: the database failed (a retry may help), or a rule refused
/// the op (nothing changed; the same op would be refused again).
enum Failed {
    Db(rusqlite::Error),
    Refused(Error),
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Failed::Db(e)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Refused(e)
    }
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::Db(e) => unavailable(e),
            Failed::Refused(e) => e,
        }
    }
}

/// The database cannot be read or written now.
fn unavailable(e: rusqlite::Error) -> Error {
    Error::unavailable(format!("lead store: {e}")).with_source(e)
}

fn closed() -> Error {
    Error::unavailable("the lead store is closed")
}

fn stopped() -> Error {
    Error::unavailable("the lead writer stopped")
}

/// The handle to `campaigns.db`.
pub struct LeadStore {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    reader: Mutex<Connection>,
    next_attempt: std::sync::atomic::AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LeadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadStore").finish_non_exhaustive()
    }
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a claimed attempt survives a power cut, so a restart never dials it again.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl LeadStore {
    /// Opens (or creates) `dir/campaigns.db` and starts its writer.
    pub fn open(dir: &Path) -> Result<LeadStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("campaigns.db");
        let mut conn = open_conn(&path)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let reader = open_conn(&path)?;
        let max: Option<i64> = conn.query_row("SELECT MAX(id) FROM attempts", [], |r| r.get(0))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("callgate-leads".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < 1024 {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    commit(&mut conn, jobs);
                }
            })
            .map_err(|e| StoreError(format!("cannot start the lead writer: {e}")))?;
        Ok(LeadStore {
            tx: Mutex::new(Some(tx)),
            reader: Mutex::new(reader),
            next_attempt: std::sync::atomic::AtomicU64::new(max.map_or(0, |m| m.max(0) as u64) + 1),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands `ops` to the writer now (so writes apply in the order of the calls); the
    /// answer arrives on the returned channel once they are committed.
    fn submit(&self, ops: Vec<LeadOp>) -> Result<oneshot::Receiver<Result<Vec<LeadOut>, Error>>, Error> {
        let (done, rx) = oneshot::channel();
        match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(Job { ops, done }).map_err(|_| closed())?,
            None => return Err(closed()),
        }
        Ok(rx)
    }

    /// [`Leads::write`] for callers outside an async runtime (tools, benches).
    pub fn write_blocking(&self, ops: Vec<LeadOp>) -> Result<Vec<LeadOut>, Error> {
        self.submit(ops)?.blocking_recv().map_err(|_| stopped())?
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, Error> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(unavailable)
    }

    /// Which of these phone numbers the campaign has already (for an import's report).
    pub fn known_phones(&self, campaign: &str, phones: &[String]) -> Result<Vec<bool>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached("SELECT 1 FROM leads WHERE campaign = ?1 AND phone = ?2")?;
        Ok(phones.iter().map(|p| stmt.exists(params![campaign, p])).collect::<rusqlite::Result<_>>()?)
    }
}

impl Leads for LeadStore {
    fn next_attempt_id(&self) -> u64 {
        self.next_attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&self, ops: Vec<LeadOp>) -> BoxFuture<'_, Result<Vec<LeadOut>, Error>> {
        // Submitted before the future is returned: a caller that drops it has still
        // written, in order (see the trait).
        let submitted = self.submit(ops);
        Box::pin(async move { submitted?.await.map_err(|_| stopped())? })
    }

    fn campaigns(&self) -> Result<Vec<StoredCampaign>, Error> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT name, spec, state, source, created_at, paused_reason FROM campaigns ORDER BY created_at, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredCampaign {
                    name: r.get(0)?,
                    spec: r.get(1)?,
                    state: r.get(2)?,
                    source: r.get(3)?,
                    created_at: r.get::<_, i64>(4)? as u64,
                    paused_reason: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn pending(&self, campaign: &str) -> Result<Vec<PendingLead>, Error> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, timezone, score, attempts, warm, next_at FROM leads WHERE campaign = ?1 AND state = ?2
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![campaign, rules::PENDING], |r| {
                Ok(PendingLead {
                    id: r.get::<_, i64>(0)? as u64,
                    timezone: r.get(1)?,
                    score: r.get(2)?,
                    attempts: r.get::<_, i64>(3)? as u32,
                    warm: r.get::<_, i64>(4)? != 0,
                    next_at: r.get::<_, i64>(5)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn due(&self, campaign: &str, now: u64, limit: usize) -> Result<Vec<PendingLead>, Error> {
        Ok(rules::due(self.pending(campaign)?, now, limit))
    }

    fn lead(&self, id: u64) -> Result<Option<LeadRow>, Error> {
        self.read(|c| {
            c.query_row(
                "SELECT id, campaign, phone, name, timezone, score, vars, warm, class, callback_id, state, attempts,
                        next_at, last_outcome FROM leads WHERE id = ?1",
                params![id as i64],
                |r| {
                    Ok(LeadRow {
                        id: r.get::<_, i64>(0)? as u64,
                        campaign: r.get(1)?,
                        phone: r.get(2)?,
                        name: r.get(3)?,
                        timezone: r.get(4)?,
                        score: r.get(5)?,
                        vars: r.get(6)?,
                        warm: r.get::<_, i64>(7)? != 0,
                        class: r.get(8)?,
                        callback_id: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
                        state: r.get(10)?,
                        attempts: r.get::<_, i64>(11)? as u32,
                        next_at: r.get::<_, i64>(12)? as u64,
                        last_outcome: r.get(13)?,
                    })
                },
            )
            .optional()
        })
    }

    fn attempts_since(&self, lead_id: u64, since: u64) -> Result<Vec<u64>, Error> {
        let rows = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT placed_at, outcome FROM attempts WHERE lead_id = ?1 AND placed_at >= ?2 ORDER BY placed_at",
            )?;
            let rows = stmt.query_map(params![lead_id as i64, since as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<String>>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows.into_iter().filter(|(_, outcome)| rules::counts(outcome.as_deref())).map(|(at, _)| at).collect())
    }

    fn open_attempts(&self) -> Result<Vec<AttemptRow>, Error> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{ATTEMPT_SELECT} WHERE state != ?1 ORDER BY id"))?;
            let rows = stmt.query_map(params![rules::ATTEMPT_ENDED], attempt_row)?;
            rows.collect()
        })
    }

    fn attempts_of(&self, lead_id: u64) -> Result<Vec<AttemptRow>, Error> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{ATTEMPT_SELECT} WHERE lead_id = ?1 ORDER BY id"))?;
            let rows = stmt.query_map(params![lead_id as i64], attempt_row)?;
            rows.collect()
        })
    }

    fn counts(&self, campaign: &str, since: u64) -> Result<CampaignCounts, Error> {
        // SQL only groups alike rows (a few dozen groups for any number of leads); what
        // each group counts for is the rules' to say.
        let (leads, attempts) = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT state, last_outcome, updated_at >= ?2, COUNT(*) FROM leads WHERE campaign = ?1
                 GROUP BY 1, 2, 3",
            )?;
            let leads = stmt
                .query_map(params![campaign, since as i64], |r| {
                    Ok(rules::LeadGroup {
                        state: r.get(0)?,
                        last_outcome: r.get(1)?,
                        recent: r.get::<_, i64>(2)? != 0,
                        leads: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT state, outcome, answered_at IS NOT NULL, placed_at >= ?2, COUNT(*),
                        COALESCE(SUM(talk_ms), 0), COALESCE(SUM(cost), 0.0)
                 FROM attempts WHERE campaign = ?1 GROUP BY 1, 2, 3, 4",
            )?;
            let attempts = stmt
                .query_map(params![campaign, since as i64], |r| {
                    Ok(rules::AttemptGroup {
                        state: r.get(0)?,
                        outcome: r.get(1)?,
                        answered: r.get::<_, i64>(2)? != 0,
                        recent: r.get::<_, i64>(3)? != 0,
                        attempts: r.get::<_, i64>(4)? as u64,
                        talk_ms: r.get::<_, i64>(5)?.max(0) as u64,
                        cost: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((leads, attempts))
        })?;
        Ok(rules::tally(leads, attempts))
    }

    fn settled_callbacks(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, Error> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT outcome FROM taken_callbacks WHERE callback_id = ?1 AND done_at IS NOT NULL
                 AND outcome IS NOT NULL",
            )?;
            let mut out = Vec::new();
            for &id in ids {
                if let Some(o) = stmt.query_row(params![id as i64], |r| r.get::<_, String>(0)).optional()? {
                    out.push((id, o));
                }
            }
            Ok(out)
        })
    }

    fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeadStore {
    fn drop(&mut self) {
        self.close();
    }
}

const ATTEMPT_SELECT: &str = "SELECT id, lead_id, campaign, number, class, provider, lease, call_id, state, outcome,
    placed_at, answered_at, callback_id FROM attempts";

fn attempt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        id: r.get::<_, i64>(0)? as u64,
        lead_id: r.get::<_, i64>(1)? as u64,
        campaign: r.get(2)?,
        number: r.get::<_, i64>(3)? as u32,
        class: r.get(4)?,
        provider: r.get(5)?,
        lease: r.get(6)?,
        call_id: r.get(7)?,
        state: r.get(8)?,
        outcome: r.get(9)?,
        placed_at: r.get::<_, i64>(10)? as u64,
        answered_at: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        callback_id: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
    })
}

/// Applies every job in one transaction. A job whose op fails is answered with the error
/// and rolled back alone (a savepoint each), so one bad job never sinks the others.
fn commit(conn: &mut Connection, jobs: Vec<Job>) {
    type Answered = Vec<(Job, Result<Vec<LeadOut>, Error>)>;
    let result = (|| -> rusqlite::Result<Answered> {
        let mut tx = conn.transaction()?;
        let mut answered = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = tx.savepoint()?;
            let mut outs = Vec::with_capacity(job.ops.len());
            let mut failed = None;
            for op in &job.ops {
                match apply(&sp, op) {
                    Ok(o) => outs.push(o),
                    Err(e) => {
                        failed = Some(e.into_error());
                        break;
                    }
                }
            }
            match failed {
                None => {
                    sp.commit()?;
                    answered.push((job, Ok(outs)));
                }
                Some(e) => {
                    drop(sp); // rolls back this job only
                    answered.push((job, Err(e)));
                }
            }
        }
        tx.commit()?;
        Ok(answered)
    })();
    match result {
        Ok(answered) => {
            for (job, r) in answered {
                let _ = job.done.send(r);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "Lead store commit failed");
            // The jobs were moved into the closure; their senders are dropped, so their
            // writers hear "the lead writer stopped".
        }
    }
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

/// What the rules read of a lead (`None`: no such lead).
fn standing(tx: &Connection, id: u64) -> rusqlite::Result<Option<Standing>> {
    tx.prepare_cached("SELECT state, warm, class, callback_id, attempts, next_at FROM leads WHERE id = ?1")?
        .query_row(params![id as i64], |r| {
            Ok(Standing {
                state: r.get(0)?,
                warm: r.get::<_, i64>(1)? != 0,
                class: r.get(2)?,
                callback_id: opt_u64(r.get(3)?),
                attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                next_at: r.get::<_, i64>(5)?.max(0) as u64,
            })
        })
        .optional()
}

/// Writes what the rules decided of a lead, changed at `at`.
fn put_standing(tx: &Connection, id: u64, s: &Standing, at: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE leads SET state = ?2, warm = ?3, class = ?4, callback_id = ?5, attempts = ?6, next_at = ?7,
         updated_at = ?8 WHERE id = ?1",
    )?
    .execute(params![
        id as i64,
        s.state,
        i64::from(s.warm),
        s.class,
        s.callback_id.map(|c| c as i64),
        s.attempts,
        s.next_at as i64,
        at as i64
    ])?;
    Ok(())
}

/// Adds a lead as the rules made it; its id.
fn insert_lead(tx: &Connection, campaign: &str, lead: &NewLead, s: &Standing, at: u64) -> rusqlite::Result<u64> {
    tx.prepare_cached(
        "INSERT INTO leads (campaign, phone, name, timezone, score, vars, warm, class, callback_id, state, attempts,
         next_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
    )?
    .execute(params![
        campaign,
        lead.phone,
        lead.name,
        lead.timezone,
        lead.score,
        lead.vars,
        i64::from(s.warm),
        s.class,
        s.callback_id.map(|c| c as i64),
        s.state,
        s.attempts,
        s.next_at as i64,
        at as i64
    ])?;
    Ok(tx.last_insert_rowid() as u64)
}

/// An attempt's lead, the callback it dialed, when it was answered and its state.
type AttemptFacts = (u64, Option<u64>, Option<u64>, String);

fn attempt_facts(tx: &Connection, id: u64) -> rusqlite::Result<Option<AttemptFacts>> {
    tx.prepare_cached("SELECT lead_id, callback_id, answered_at, state FROM attempts WHERE id = ?1")?
        .query_row(params![id as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, opt_u64(r.get(1)?), opt_u64(r.get(2)?), r.get(3)?))
        })
        .optional()
}

/// One op: read the rows it touches, ask the rules, write what they say.
fn apply(tx: &Connection, op: &LeadOp) -> Result<LeadOut, Failed> {
    match op {
        LeadOp::PutCampaign { name, spec, state, source, at } => {
            tx.prepare_cached(
                "INSERT INTO campaigns (name, spec, state, source, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source,
                 updated_at = excluded.updated_at",
            )?
            .execute(params![name, spec, state, source, *at as i64])?;
        }
        LeadOp::SetState { name, state, reason, at } => {
            tx.prepare_cached("UPDATE campaigns SET state = ?2, paused_reason = ?4, updated_at = ?3 WHERE name = ?1")?
                .execute(params![name, state, *at as i64, reason])?;
        }
        LeadOp::AddLeads { campaign, leads, at } => {
            let mut known = tx.prepare_cached("SELECT 1 FROM leads WHERE campaign = ?1 AND phone = ?2")?;
            let add = rules::dedupe(leads, |phone| known.exists(params![campaign, phone]))?;
            let s = Standing::imported();
            let mut ids = Vec::with_capacity(leads.len());
            for (l, add) in leads.iter().zip(add) {
                ids.push(if add { Some(insert_lead(tx, campaign, l, &s, *at)?) } else { None });
            }
            return Ok(LeadOut::Added(ids));
        }
        LeadOp::AddCallback { campaign, lead, at } => {
            let taken = tx
                .prepare_cached("SELECT 1 FROM taken_callbacks WHERE callback_id = ?1")?
                .exists(params![lead.callback_id as i64])?;
            if taken {
                return Ok(LeadOut::Done);
            }
            let existing: Option<i64> = tx
                .prepare_cached("SELECT id FROM leads WHERE campaign = ?1 AND phone = ?2")?
                .query_row(params![campaign, lead.phone], |r| r.get(0))
                .optional()?;
            let existing = match existing {
                Some(id) => standing(tx, id as u64)?.map(|s| (id as u64, s)),
                None => None,
            };
            let (lead_id, new) = match existing {
                Some((id, s)) => {
                    put_standing(tx, id, &rules::take_callback(Some(&s), lead), *at)?;
                    (id, false)
                }
                None => {
                    let new = NewLead {
                        phone: lead.phone.clone(),
                        name: None,
                        timezone: lead.timezone.clone(),
                        score: 0.0,
                        vars: None,
                    };
                    (insert_lead(tx, campaign, &new, &rules::take_callback(None, lead), *at)?, true)
                }
            };
            tx.prepare_cached(
                "INSERT INTO taken_callbacks (callback_id, campaign, lead_id, taken_at, booked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                lead.callback_id as i64,
                campaign,
                lead_id as i64,
                *at as i64,
                lead.booked_at as i64
            ])?;
            return Ok(LeadOut::Callback { lead_id, new });
        }
        LeadOp::BeginAttempt(a) => {
            if tx.prepare_cached("SELECT 1 FROM attempts WHERE id = ?1")?.exists(params![a.id as i64])? {
                return Err(rules::duplicate_attempt(a.id).into());
            }
            // Only the lead the dialer read: still pending, still returning the same
            // callback (or none). A callback taken in between is dialed as itself.
            let Some(s) = standing(tx, a.lead_id)?.filter(|s| rules::as_read(s, a.callback_id)) else {
                return Ok(LeadOut::Stale);
            };
            put_standing(tx, a.lead_id, &rules::begin(&s, a.number), a.at)?;
            tx.prepare_cached(
                "INSERT INTO attempts (id, lead_id, campaign, number, class, provider, lease, state, placed_at,
                 callback_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                a.id as i64,
                a.lead_id as i64,
                a.campaign,
                a.number,
                a.class,
                a.provider,
                a.lease,
                rules::ATTEMPT_DIALING,
                a.at as i64,
                a.callback_id.map(|c| c as i64)
            ])?;
        }
        LeadOp::Placed { id, call_id } => {
            tx.prepare_cached("UPDATE attempts SET call_id = ?2 WHERE id = ?1")?
                .execute(params![*id as i64, call_id])?;
        }
        LeadOp::Answered { id, at } => {
            let Some((lead_id, _, answered_at, state)) = attempt_facts(tx, *id)? else { return Ok(LeadOut::Done) };
            if rules::is_open(&state) {
                tx.prepare_cached("UPDATE attempts SET state = ?2, answered_at = ?3 WHERE id = ?1")?
                    .execute(params![*id as i64, rules::ATTEMPT_LIVE, answered_at.unwrap_or(*at) as i64])?;
            }
            if let Some(s) = standing(tx, lead_id)? {
                let state = rules::answered(&s.state);
                if state != s.state {
                    tx.prepare_cached("UPDATE leads SET state = ?2, updated_at = ?3 WHERE id = ?1")?
                        .execute(params![lead_id as i64, state, *at as i64])?;
                }
            }
        }
        LeadOp::EndAttempt(e) => return end_attempt(tx, e).map(LeadOut::Ended),
        LeadOp::Refused { id, at, next_at } => {
            let Some((lead_id, dialed, _, state)) = attempt_facts(tx, *id)? else { return Ok(LeadOut::Done) };
            if !rules::is_open(&state) {
                return Ok(LeadOut::Done);
            }
            tx.prepare_cached("UPDATE attempts SET state = ?2, outcome = ?3, ended_at = ?4 WHERE id = ?1")?
                .execute(params![*id as i64, rules::ATTEMPT_ENDED, rules::REFUSED, *at as i64])?;
            if let Some(s) = standing(tx, lead_id)? {
                put_standing(tx, lead_id, &rules::refused(&s, dialed, *next_at), *at)?;
            }
        }
        LeadOp::Reschedule { lead_id, next_at, callback_id } => {
            if !standing(tx, *lead_id)?.is_some_and(|s| rules::as_read(&s, *callback_id)) {
                return Ok(LeadOut::Stale);
            }
            tx.prepare_cached("UPDATE leads SET next_at = ?2 WHERE id = ?1")?
                .execute(params![*lead_id as i64, *next_at as i64])?;
        }
        // One node writes this store: a campaign has one pacer, no fence to keep.
        LeadOp::Fence { .. } => {}
    }
    Ok(LeadOut::Done)
}

/// [`LeadOp::EndAttempt`]: see its docs (and [`rules::end`]) for what becomes of the lead
/// and its callbacks.
fn end_attempt(tx: &Connection, e: &AttemptEnd) -> Result<AttemptEnded, Failed> {
    rules::check_end(e)?;
    // An outcome that arrives twice (webhook and poll) moves the lead once.
    let Some((lead_id, dialed, answered_at, state)) = attempt_facts(tx, e.id)? else {
        return Ok(AttemptEnded::default());
    };
    if !rules::is_open(&state) {
        return Ok(AttemptEnded::default());
    }
    tx.prepare_cached(
        "UPDATE attempts SET state = ?2, outcome = ?3, reason = ?4, ended_at = ?5, talk_ms = ?6, cost = ?7
         WHERE id = ?1",
    )?
    .execute(params![
        e.id as i64,
        rules::ATTEMPT_ENDED,
        e.outcome,
        e.reason,
        e.ended_at as i64,
        e.talk_ms.map(|t| t as i64),
        e.cost
    ])?;
    let Some(s) = standing(tx, lead_id)? else {
        return Ok(AttemptEnded { applied: true, lead_state: e.lead_state.clone(), ..AttemptEnded::default() });
    };
    // When the callback the lead returns now was booked (older files kept only when it
    // was taken).
    let booked = match s.returns() {
        Some(cb) => tx
            .prepare_cached("SELECT booked_at, taken_at FROM taken_callbacks WHERE callback_id = ?1")?
            .query_row(params![cb as i64], |r| Ok(opt_u64(r.get(0)?).or(opt_u64(r.get(1)?))))
            .optional()?
            .flatten(),
        None => None,
    };
    let ending = rules::end(&s, Dialed { callback_id: dialed, answered_at }, e, booked);
    put_standing(tx, lead_id, &ending.standing, e.ended_at)?;
    tx.prepare_cached("UPDATE leads SET last_outcome = ?2 WHERE id = ?1")?
        .execute(params![lead_id as i64, e.outcome])?;
    let mut callbacks_done = Vec::new();
    if let Some(outcome) = &ending.settle {
        let open: Vec<u64> = tx
            .prepare_cached(
                "SELECT callback_id FROM taken_callbacks WHERE lead_id = ?1 AND done_at IS NULL ORDER BY callback_id",
            )?
            .query_map(params![lead_id as i64], |r| Ok(r.get::<_, i64>(0)? as u64))?
            .collect::<rusqlite::Result<_>>()?;
        let mut settle =
            tx.prepare_cached("UPDATE taken_callbacks SET done_at = ?2, outcome = ?3 WHERE callback_id = ?1")?;
        for id in open {
            settle.execute(params![id as i64, e.ended_at as i64, outcome])?;
            callbacks_done.push((id, outcome.clone()));
        }
    }
    Ok(rules::ended(&ending.standing, callbacks_done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_backend::leads::{CallbackLead, NewAttempt};

    fn lead(phone: &str) -> NewLead {
        NewLead { phone: phone.into(), name: None, timezone: "UTC".into(), score: 0.0, vars: None }
    }

    #[test]
    fn leads_are_added_once_per_phone_and_attempts_move_them() {
        let dir = tempfile_dir();
        let store = LeadStore::open(&dir).unwrap();
        let out = store
            .write_blocking(vec![LeadOp::AddLeads {
                campaign: "c".into(),
                leads: vec![lead("+15550000001"), lead("+15550000002"), lead("+15550000001")],
                at: 1,
            }])
            .unwrap();
        let LeadOut::Added(ids) = &out[0] else { panic!("{out:?}") };
        assert!(ids[0].is_some() && ids[1].is_some() && ids[2].is_none());
        let id = ids[0].unwrap();
        assert_eq!(store.pending("c").unwrap().len(), 2);
        let aid = store.next_attempt_id();
        store
            .write_blocking(vec![LeadOp::BeginAttempt(NewAttempt {
                id: aid,
                lead_id: id,
                campaign: "c".into(),
                number: 1,
                class: "outbound".into(),
                provider: "sim".into(),
                lease: "L1".into(),
                callback_id: None,
                at: 10,
            })])
            .unwrap();
        assert_eq!(store.pending("c").unwrap().len(), 1);
        assert_eq!(store.open_attempts().unwrap().len(), 1);
        // Refused: the attempt does not count, the lead is pending again.
        store.write_blocking(vec![LeadOp::Refused { id: aid, at: 11, next_at: 20 }]).unwrap();
        let row = store.lead(id).unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts, row.next_at), ("pending", 0, 20));
        assert!(store.attempts_since(id, 0).unwrap().is_empty());
        drop(store);
        // Reopened: ids go on after the highest on disk.
        let store = LeadStore::open(&dir).unwrap();
        assert!(store.next_attempt_id() > aid);
        let counts = store.counts("c", 0).unwrap();
        assert_eq!(counts.refused, 1);
        assert_eq!(counts.attempts, 0);

        // A call in progress counts on neither side of the connect rate; once it ends, on both.
        let (live, _) = begin(&store, id, None, 30);
        store.write_blocking(vec![LeadOp::Answered { id: live, at: 31 }]).unwrap();
        let counts = store.counts("c", 0).unwrap();
        assert_eq!(
            (counts.answered, counts.ended),
            (0, 0),
            "an answered call still talking is not yet connected-and-ended"
        );
        store
            .write_blocking(vec![LeadOp::EndAttempt(AttemptEnd {
                id: live,
                outcome: "completed".into(),
                reason: None,
                ended_at: 90,
                talk_ms: Some(59),
                cost: None,
                lead_state: "done".into(),
                next_at: 0,
            })])
            .unwrap();
        let counts = store.counts("c", 0).unwrap();
        assert_eq!((counts.answered, counts.ended, counts.talk_ms), (1, 1, 59));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn begin(store: &LeadStore, lead_id: u64, callback_id: Option<u64>, at: u64) -> (u64, LeadOut) {
        let id = store.next_attempt_id();
        let attempt = NewAttempt {
            id,
            lead_id,
            campaign: "c".into(),
            number: 1,
            class: "outbound".into(),
            provider: "sim".into(),
            lease: "L1".into(),
            callback_id,
            at,
        };
        (id, store.write_blocking(vec![LeadOp::BeginAttempt(attempt)]).unwrap().remove(0))
    }

    fn take(store: &LeadStore, callback_id: u64, phone: &str, booked_at: u64, due_at: u64) -> LeadOut {
        let lead = CallbackLead {
            callback_id,
            phone: phone.into(),
            timezone: "UTC".into(),
            class: "callback".into(),
            booked_at,
            due_at,
        };
        store
            .write_blocking(vec![LeadOp::AddCallback { campaign: "c".into(), lead, at: booked_at + 1 }])
            .unwrap()
            .remove(0)
    }

    fn end(store: &LeadStore, id: u64, outcome: &str, lead_state: &str, at: u64, talk_ms: Option<u64>) -> AttemptEnded {
        let e = AttemptEnd {
            id,
            outcome: outcome.into(),
            reason: None,
            ended_at: at,
            talk_ms,
            cost: None,
            lead_state: lead_state.into(),
            next_at: 0,
        };
        match store.write_blocking(vec![LeadOp::EndAttempt(e)]).unwrap().remove(0) {
            LeadOut::Ended(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_callback_taken_while_its_lead_is_dialed_is_settled_or_dialed_in_its_own_right() {
        let dir = tempfile_dir();
        let store = LeadStore::open(&dir).unwrap();
        let phones = ["+15550000001", "+15550000002", "+15550000003", "+15550000004"];
        store
            .write_blocking(vec![LeadOp::AddLeads {
                campaign: "c".into(),
                leads: phones.iter().map(|p| lead(p)).collect(),
                at: 1,
            }])
            .unwrap();

        // Lead 1: its campaign attempt is not answered after the callback was taken.
        let (a1, _) = begin(&store, 1, None, 10);
        assert_eq!(take(&store, 7, phones[0], 100, 150), LeadOut::Callback { lead_id: 1, new: false });
        assert_eq!(store.lead(1).unwrap().unwrap().state, "dialing", "the attempt goes on");
        let e = end(&store, a1, "no_answer", "exhausted", 200, None);
        assert_eq!((e.lead_state.as_str(), e.warm, e.attempts, e.next_at), ("pending", true, 0, 150), "{e:?}");
        assert!(e.callbacks_done.is_empty());
        // The dialer read the lead cold: stale. As the callback: begun, and it settles it.
        assert_eq!(begin(&store, 1, None, 210).1, LeadOut::Stale);
        let (a2, out) = begin(&store, 1, Some(7), 210);
        assert_eq!(out, LeadOut::Done);
        assert_eq!(store.attempts_of(1).unwrap().last().unwrap().callback_id, Some(7));
        let e = end(&store, a2, "completed", "done", 300, Some(50));
        assert_eq!((e.lead_state.as_str(), e.callbacks_done), ("done", vec![(7, "completed".to_string())]));
        assert_eq!(store.settled_callbacks(&[7, 99]).unwrap(), [(7, "completed".to_string())]);
        assert!(store.lead(1).unwrap().unwrap().state == "done" && !store.lead(1).unwrap().unwrap().warm);

        // Lead 2: answered before the caller asked: not a callback; dialed in its own right.
        let (b1, _) = begin(&store, 2, None, 10);
        store.write_blocking(vec![LeadOp::Answered { id: b1, at: 290 }]).unwrap();
        take(&store, 8, phones[1], 300, 300);
        let e = end(&store, b1, "completed", "done", 400, Some(110));
        assert_eq!((e.lead_state.as_str(), e.warm, e.callbacks_done.len()), ("pending", true, 0), "{e:?}");

        // Lead 3: reached after the caller asked (talk began at 550 ≥ 500): done with it.
        let (c1, _) = begin(&store, 3, None, 10);
        take(&store, 9, phones[2], 500, 500);
        let e = end(&store, c1, "completed", "done", 600, Some(50));
        assert_eq!((e.lead_state.as_str(), e.callbacks_done), ("done", vec![(9, "completed".to_string())]));
        assert!(!store.lead(3).unwrap().unwrap().warm);

        // Lead 4: refused for concurrency while a callback was taken: due at its time.
        let (d1, _) = begin(&store, 4, None, 10);
        take(&store, 10, phones[3], 600, 700);
        store.write_blocking(vec![LeadOp::Refused { id: d1, at: 650, next_at: 650 }]).unwrap();
        let row = store.lead(4).unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.warm, row.attempts, row.next_at), ("pending", true, 0, 700));
        // A second callback for a pending lead keeps the earlier promise; both are settled
        // by the one dial.
        take(&store, 11, phones[3], 650, 900);
        assert_eq!(store.lead(4).unwrap().unwrap().next_at, 700);
        let (d2, _) = begin(&store, 4, Some(11), 710);
        let e = end(&store, d2, "busy", "exhausted", 720, None);
        let mut done = e.callbacks_done.clone();
        done.sort();
        assert_eq!(done, [(10, "busy".to_string()), (11, "busy".to_string())]);
        // An outcome that arrives twice changes nothing the second time.
        assert!(!end(&store, d2, "busy", "exhausted", 730, None).applied);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_file_gets_the_new_columns_filled_in_as_the_old_code_behaved() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(&dir).unwrap();
        {
            let conn = Connection::open(dir.join("campaigns.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE leads (id INTEGER PRIMARY KEY, campaign TEXT NOT NULL, phone TEXT NOT NULL, name TEXT,
                    timezone TEXT NOT NULL, score REAL NOT NULL DEFAULT 0, vars TEXT, warm INTEGER NOT NULL DEFAULT 0,
                    class TEXT, callback_id INTEGER, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    next_at INTEGER NOT NULL DEFAULT 0, last_outcome TEXT, created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL, UNIQUE (campaign, phone));
                 CREATE TABLE attempts (id INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL, campaign TEXT NOT NULL,
                    number INTEGER NOT NULL, class TEXT NOT NULL, provider TEXT NOT NULL, lease TEXT, call_id TEXT,
                    state TEXT NOT NULL, outcome TEXT, reason TEXT, placed_at INTEGER NOT NULL, answered_at INTEGER,
                    ended_at INTEGER, talk_ms INTEGER, cost REAL);
                 CREATE TABLE taken_callbacks (callback_id INTEGER PRIMARY KEY, campaign TEXT NOT NULL,
                    lead_id INTEGER NOT NULL, taken_at INTEGER NOT NULL);
                 CREATE TABLE campaigns (name TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,
                    source TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
                 INSERT INTO campaigns VALUES ('c', '{}', 'running', 'config', 1, 1);
                 INSERT INTO leads VALUES (1, 'c', '+15550000001', NULL, 'UTC', 0, NULL, 1, 'callback', 5, 'dialing',
                    1, 0, NULL, 1, 1);
                 INSERT INTO leads VALUES (2, 'c', '+15550000002', NULL, 'UTC', 0, NULL, 0, 'callback', 6, 'done',
                    1, 0, 'completed', 1, 1);
                 INSERT INTO attempts (id, lead_id, campaign, number, class, provider, state, placed_at)
                    VALUES (1, 1, 'c', 1, 'callback', 'sim', 'dialing', 10);
                 INSERT INTO taken_callbacks VALUES (5, 'c', 1, 5), (6, 'c', 2, 5);",
            )
            .unwrap();
        }
        let store = LeadStore::open(&dir).unwrap();
        assert_eq!(store.open_attempts().unwrap()[0].callback_id, Some(5), "the open attempt dials its callback");
        assert_eq!(store.settled_callbacks(&[5, 6]).unwrap(), [(6, "completed".to_string())]);
        let e = end(&store, 1, "completed", "done", 20, None);
        assert_eq!(e.callbacks_done, [(5, "completed".to_string())]);
        // A campaign of the older file has no pause reason until callgate pauses it.
        assert_eq!(store.campaigns().unwrap()[0].paused_reason, None);
        let why = Some("provider `v` refused the account: vapi 401".to_string());
        let pause = LeadOp::SetState { name: "c".into(), state: "paused".into(), reason: why.clone(), at: 30 };
        store.write_blocking(vec![pause]).unwrap();
        assert_eq!(store.campaigns().unwrap()[0].paused_reason, why);
        let resume = LeadOp::SetState { name: "c".into(), state: "running".into(), reason: None, at: 31 };
        store.write_blocking(vec![resume]).unwrap();
        assert_eq!(store.campaigns().unwrap()[0].paused_reason, None, "a resume clears it");
        drop(store);
        // Opened again: nothing to migrate.
        drop(LeadStore::open(&dir).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("callgate-leads-test-{}-{n}", std::process::id()))
    }
}
