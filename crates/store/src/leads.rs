//! Campaigns, leads and call attempts: durable in `campaigns.db` beside the journal in the
//! data directory.
//!
//! A file of its own, with a writer thread of its own, so that importing 100,000 leads
//! never stands in the way of the ledger's group commits (SQLite has one writer per file).
//! The writer works like the journal's: it takes every job waiting, applies them all in
//! one transaction, commits once (`synchronous = FULL`, so fsynced) and only then answers
//! each job. A dialer that awaits [`LeadStore::write`] for a claimed attempt therefore
//! knows the attempt is on disk before it places the call.
//!
//! Reads go through a second connection (WAL lets it read beside the writer).

use crate::StoreError;
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
    updated_at INTEGER NOT NULL
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
    state TEXT NOT NULL,           -- pending | dialing | in_call | done | failed | exhausted
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
    cost REAL
);
CREATE INDEX IF NOT EXISTS attempts_lead ON attempts (lead_id, placed_at);
CREATE INDEX IF NOT EXISTS attempts_campaign ON attempts (campaign, placed_at);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts (state) WHERE state != 'ended';
-- Callbacks taken from the journal's book: each becomes (or warms) one lead, once.
CREATE TABLE IF NOT EXISTS taken_callbacks (
    callback_id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    lead_id INTEGER NOT NULL,
    taken_at INTEGER NOT NULL
);
";

/// A lead to add.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLead {
    /// E.164.
    pub phone: String,
    /// The lead's name.
    pub name: Option<String>,
    /// IANA zone.
    pub timezone: String,
    /// Higher is dialed first.
    pub score: f64,
    /// JSON object text.
    pub vars: Option<String>,
}

/// A callback to dial as a warm lead.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackLead {
    /// The booked callback's id.
    pub callback_id: u64,
    /// E.164.
    pub phone: String,
    /// IANA zone.
    pub timezone: String,
    /// The class to dial it in.
    pub class: String,
    /// Unix ms: the promised time.
    pub due_at: u64,
}

/// An attempt about to be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAttempt {
    /// Attempt id (from [`LeadStore::next_attempt_id`]).
    pub id: u64,
    /// The lead.
    pub lead_id: u64,
    /// The campaign.
    pub campaign: String,
    /// The lead's attempt number (1 for the first).
    pub number: u32,
    /// The class it is dialed in.
    pub class: String,
    /// The provider it goes to.
    pub provider: String,
    /// The ledger lease (`L42`).
    pub lease: String,
    /// Unix ms.
    pub at: u64,
}

/// How an attempt ended, and what becomes of its lead.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptEnd {
    /// Attempt id.
    pub id: u64,
    /// `completed`, `busy`, `no_answer`, `voicemail`, `failed`, `interrupted`, …
    pub outcome: String,
    /// The provider's words.
    pub reason: Option<String>,
    /// Unix ms.
    pub ended_at: u64,
    /// Talk time (ms) when answered.
    pub talk_ms: Option<u64>,
    /// USD.
    pub cost: Option<f64>,
    /// The lead's new state (`pending`, `done`, `failed`, `exhausted`).
    pub lead_state: String,
    /// When a pending lead may be dialed again (Unix ms).
    pub next_at: u64,
}

/// One durable change.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadOp {
    /// Create or replace a campaign's settings (its state is kept when it exists).
    PutCampaign {
        /// Name.
        name: String,
        /// Settings as JSON.
        spec: String,
        /// State when it is new.
        state: String,
        /// `config` or `api`.
        source: String,
        /// Unix ms.
        at: u64,
    },
    /// Change a campaign's state.
    SetState {
        /// Name.
        name: String,
        /// `paused`, `running`, `stopped`.
        state: String,
        /// Unix ms.
        at: u64,
    },
    /// Add leads; a phone number the campaign has already is skipped.
    AddLeads {
        /// Campaign.
        campaign: String,
        /// The leads.
        leads: Vec<NewLead>,
        /// Unix ms.
        at: u64,
    },
    /// Add a callback as a warm lead due at its time (an existing lead of that number is
    /// made warm and due instead). A callback already taken changes nothing
    /// ([`LeadOut::Done`]).
    AddCallback {
        /// Campaign.
        campaign: String,
        /// The callback.
        lead: CallbackLead,
        /// Unix ms.
        at: u64,
    },
    /// Claim a lead: the attempt is recorded and the lead is `dialing`.
    BeginAttempt(NewAttempt),
    /// The provider took the call.
    Placed {
        /// Attempt id.
        id: u64,
        /// The provider's call id.
        call_id: String,
    },
    /// The lead answered.
    Answered {
        /// Attempt id.
        id: u64,
        /// Unix ms.
        at: u64,
    },
    /// The attempt ended; its lead moves on.
    EndAttempt(AttemptEnd),
    /// The provider refused the call for concurrency: the attempt does not count and the
    /// lead is pending again, due at `next_at`.
    Refused {
        /// Attempt id.
        id: u64,
        /// Unix ms.
        at: u64,
        /// When it may be dialed again.
        next_at: u64,
    },
    /// Move a pending lead's due time (the weekly cap, a window).
    Reschedule {
        /// Lead id.
        lead_id: u64,
        /// Unix ms.
        next_at: u64,
    },
}

/// What a write answers, one per op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeadOut {
    /// Nothing to say.
    Done,
    /// Per lead of [`LeadOp::AddLeads`]: its new id, or `None` for a duplicate.
    Added(Vec<Option<u64>>),
    /// The lead of [`LeadOp::AddCallback`] and whether it is new.
    Callback {
        /// Lead id.
        lead_id: u64,
        /// False when an existing lead was made warm.
        new: bool,
    },
}

/// A campaign as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCampaign {
    /// Name.
    pub name: String,
    /// Settings as JSON.
    pub spec: String,
    /// `paused`, `running`, `stopped`.
    pub state: String,
    /// `config` or `api`.
    pub source: String,
    /// Unix ms.
    pub created_at: u64,
}

/// What the scheduler keeps of a pending lead.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingLead {
    /// Lead id.
    pub id: u64,
    /// IANA zone.
    pub timezone: String,
    /// Score.
    pub score: f64,
    /// Attempts so far.
    pub attempts: u32,
    /// Dialed first.
    pub warm: bool,
    /// Unix ms: not before.
    pub next_at: u64,
}

/// Everything about one lead.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadRow {
    /// Lead id.
    pub id: u64,
    /// Campaign.
    pub campaign: String,
    /// E.164.
    pub phone: String,
    /// Name.
    pub name: Option<String>,
    /// IANA zone.
    pub timezone: String,
    /// Score.
    pub score: f64,
    /// JSON object text.
    pub vars: Option<String>,
    /// Dialed first.
    pub warm: bool,
    /// Class override.
    pub class: Option<String>,
    /// The callback it returns.
    pub callback_id: Option<u64>,
    /// State.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix ms.
    pub next_at: u64,
    /// The last attempt's outcome.
    pub last_outcome: Option<String>,
}

/// An attempt as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    /// Attempt id.
    pub id: u64,
    /// Lead id.
    pub lead_id: u64,
    /// Campaign.
    pub campaign: String,
    /// Attempt number.
    pub number: u32,
    /// Class.
    pub class: String,
    /// Provider.
    pub provider: String,
    /// Lease id.
    pub lease: Option<String>,
    /// Provider call id.
    pub call_id: Option<String>,
    /// `dialing`, `live`, `ended`.
    pub state: String,
    /// Outcome once ended.
    pub outcome: Option<String>,
    /// Unix ms.
    pub placed_at: u64,
    /// Unix ms.
    pub answered_at: Option<u64>,
}

/// Counts for a campaign's progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CampaignCounts {
    /// `(state, last_outcome, leads)`.
    pub leads: Vec<(String, Option<String>, u64)>,
    /// Attempts that count (refusals excluded).
    pub attempts: u64,
    /// Attempts the lead answered.
    pub answered: u64,
    /// Attempts that ended (with any outcome but refused/interrupted).
    pub ended: u64,
    /// Sum of talk time (ms).
    pub talk_ms: u64,
    /// Sum of cost (USD).
    pub cost: f64,
    /// Refusals by the provider.
    pub refused: u64,
    /// Attempts claimed since the `since` given.
    pub recent: u64,
    /// Leads finished (done, failed, exhausted) since `since`.
    pub finished_recent: u64,
}

struct Job {
    ops: Vec<LeadOp>,
    done: oneshot::Sender<Result<Vec<LeadOut>, StoreError>>,
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
            next_attempt: std::sync::atomic::AtomicU64::new(max.unwrap_or(0) as u64 + 1),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A fresh attempt id (never one that is on disk).
    pub fn next_attempt_id(&self) -> u64 {
        self.next_attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies `ops` in one transaction; resolves once they are committed (fsynced).
    pub fn write(&self, ops: Vec<LeadOp>) -> impl std::future::Future<Output = Result<Vec<LeadOut>, StoreError>> {
        let (done, rx) = oneshot::channel();
        let sent = match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(Job { ops, done }).is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(StoreError("the lead store is closed".into()));
            }
            rx.await.map_err(|_| StoreError("the lead writer stopped".into()))?
        }
    }

    /// [`LeadStore::write`] for callers outside an async runtime (tools, benches).
    pub fn write_blocking(&self, ops: Vec<LeadOp>) -> Result<Vec<LeadOut>, StoreError> {
        let (done, rx) = oneshot::channel();
        match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(Job { ops, done }).map_err(|_| StoreError("the lead store is closed".into()))?,
            None => return Err(StoreError("the lead store is closed".into())),
        }
        rx.blocking_recv().map_err(|_| StoreError("the lead writer stopped".into()))?
    }

    /// Flushes what was written and stops the writer.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// Every campaign, oldest first.
    pub fn campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, spec, state, source, created_at FROM campaigns ORDER BY created_at, name")?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredCampaign {
                    name: r.get(0)?,
                    spec: r.get(1)?,
                    state: r.get(2)?,
                    source: r.get(3)?,
                    created_at: r.get::<_, i64>(4)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// The campaign's pending leads (what the scheduler loads at start).
    pub fn pending(&self, campaign: &str) -> Result<Vec<PendingLead>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id, timezone, score, attempts, warm, next_at FROM leads WHERE campaign = ?1 AND state = 'pending'",
            )?;
            let rows = stmt.query_map(params![campaign], |r| {
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

    /// One lead.
    pub fn lead(&self, id: u64) -> Result<Option<LeadRow>, StoreError> {
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

    /// Counted attempts of a lead claimed at or after `since` (Unix ms), oldest first.
    pub fn attempts_since(&self, lead_id: u64, since: u64) -> Result<Vec<u64>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT placed_at FROM attempts WHERE lead_id = ?1 AND placed_at >= ?2
                 AND (outcome IS NULL OR outcome != 'refused') ORDER BY placed_at",
            )?;
            let rows = stmt.query_map(params![lead_id as i64, since as i64], |r| Ok(r.get::<_, i64>(0)? as u64))?;
            rows.collect()
        })
    }

    /// Attempts not yet ended (what a restart must resolve).
    pub fn open_attempts(&self) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{ATTEMPT_SELECT} WHERE state != 'ended' ORDER BY id"))?;
            let rows = stmt.query_map([], attempt_row)?;
            rows.collect()
        })
    }

    /// Every attempt of a lead, oldest first.
    pub fn attempts_of(&self, lead_id: u64) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("{ATTEMPT_SELECT} WHERE lead_id = ?1 ORDER BY id"))?;
            let rows = stmt.query_map(params![lead_id as i64], attempt_row)?;
            rows.collect()
        })
    }

    /// Counts for the progress of `campaign`; `recent` counts from `since` (Unix ms).
    pub fn counts(&self, campaign: &str, since: u64) -> Result<CampaignCounts, StoreError> {
        self.read(|c| {
            let mut out = CampaignCounts::default();
            let mut stmt = c.prepare_cached(
                "SELECT state, CASE WHEN state IN ('done', 'exhausted', 'failed') THEN last_outcome END AS o, COUNT(*)
                 FROM leads WHERE campaign = ?1 GROUP BY state, o",
            )?;
            let rows = stmt.query_map(params![campaign], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            out.leads = rows.collect::<rusqlite::Result<_>>()?;
            c.prepare_cached(
                "SELECT
                    COALESCE(SUM(outcome IS NULL OR outcome != 'refused'), 0),
                    COALESCE(SUM(answered_at IS NOT NULL), 0),
                    COALESCE(SUM(state = 'ended' AND outcome NOT IN ('refused', 'interrupted')), 0),
                    COALESCE(SUM(talk_ms), 0),
                    COALESCE(SUM(cost), 0.0),
                    COALESCE(SUM(outcome = 'refused'), 0),
                    COALESCE(SUM(placed_at >= ?2 AND (outcome IS NULL OR outcome != 'refused')), 0)
                 FROM attempts WHERE campaign = ?1",
            )?
            .query_row(params![campaign, since as i64], |r| {
                out.attempts = r.get::<_, i64>(0)? as u64;
                out.answered = r.get::<_, i64>(1)? as u64;
                out.ended = r.get::<_, i64>(2)? as u64;
                out.talk_ms = r.get::<_, i64>(3)? as u64;
                out.cost = r.get(4)?;
                out.refused = r.get::<_, i64>(5)? as u64;
                out.recent = r.get::<_, i64>(6)? as u64;
                Ok(())
            })?;
            out.finished_recent =
                c.prepare_cached(
                    "SELECT COUNT(*) FROM leads WHERE campaign = ?1 AND state IN ('done', 'exhausted', 'failed')
                     AND updated_at >= ?2",
                )?
                .query_row(params![campaign, since as i64], |r| r.get::<_, i64>(0))? as u64;
            Ok(out)
        })
    }

    /// Which of these phone numbers the campaign has already (for an import's report).
    pub fn known_phones(&self, campaign: &str, phones: &[String]) -> Result<Vec<bool>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM leads WHERE campaign = ?1 AND phone = ?2")?;
            phones.iter().map(|p| stmt.exists(params![campaign, p])).collect()
        })
    }
}

impl Drop for LeadStore {
    fn drop(&mut self) {
        self.close();
    }
}

const ATTEMPT_SELECT: &str = "SELECT id, lead_id, campaign, number, class, provider, lease, call_id, state, outcome,
    placed_at, answered_at FROM attempts";

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
    })
}

/// Applies every job in one transaction. A job whose op fails is answered with the error
/// and rolled back alone (a savepoint each), so one bad job never sinks the others.
fn commit(conn: &mut Connection, jobs: Vec<Job>) {
    type Answered = Vec<(Job, Result<Vec<LeadOut>, StoreError>)>;
    let result = (|| -> Result<Answered, StoreError> {
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
                        failed = Some(e);
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

fn apply(tx: &Connection, op: &LeadOp) -> Result<LeadOut, StoreError> {
    match op {
        LeadOp::PutCampaign { name, spec, state, source, at } => {
            tx.prepare_cached(
                "INSERT INTO campaigns (name, spec, state, source, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source,
                 updated_at = excluded.updated_at",
            )?
            .execute(params![name, spec, state, source, *at as i64])?;
        }
        LeadOp::SetState { name, state, at } => {
            tx.prepare_cached("UPDATE campaigns SET state = ?2, updated_at = ?3 WHERE name = ?1")?
                .execute(params![name, state, *at as i64])?;
        }
        LeadOp::AddLeads { campaign, leads, at } => {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO leads (campaign, phone, name, timezone, score, vars, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
            )?;
            let mut ids = Vec::with_capacity(leads.len());
            for l in leads {
                let n = stmt.execute(params![campaign, l.phone, l.name, l.timezone, l.score, l.vars, *at as i64])?;
                ids.push((n == 1).then(|| tx.last_insert_rowid() as u64));
            }
            return Ok(LeadOut::Added(ids));
        }
        LeadOp::AddCallback { campaign, lead, at } => {
            let taken: Option<i64> = tx
                .prepare_cached("SELECT lead_id FROM taken_callbacks WHERE callback_id = ?1")?
                .query_row(params![lead.callback_id as i64], |r| r.get(0))
                .optional()?;
            if taken.is_some() {
                return Ok(LeadOut::Done);
            }
            let existing: Option<i64> = tx
                .prepare_cached("SELECT id FROM leads WHERE campaign = ?1 AND phone = ?2")?
                .query_row(params![campaign, lead.phone], |r| r.get(0))
                .optional()?;
            let out = match existing {
                Some(id) => {
                    // A lead that is being dialed right now keeps its state; it becomes
                    // warm and due for when that attempt ends.
                    tx.prepare_cached(
                        "UPDATE leads SET warm = 1, class = ?2, callback_id = ?3, next_at = ?4, updated_at = ?5,
                         state = CASE WHEN state IN ('dialing', 'in_call') THEN state ELSE 'pending' END,
                         attempts = CASE WHEN state IN ('dialing', 'in_call') THEN attempts ELSE 0 END
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        lead.class,
                        lead.callback_id as i64,
                        lead.due_at as i64,
                        *at as i64
                    ])?;
                    LeadOut::Callback { lead_id: id as u64, new: false }
                }
                None => {
                    tx.prepare_cached(
                        "INSERT INTO leads (campaign, phone, timezone, warm, class, callback_id, state, next_at,
                         created_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?5, 'pending', ?6, ?7, ?7)",
                    )?
                    .execute(params![
                        campaign,
                        lead.phone,
                        lead.timezone,
                        lead.class,
                        lead.callback_id as i64,
                        lead.due_at as i64,
                        *at as i64
                    ])?;
                    LeadOut::Callback { lead_id: tx.last_insert_rowid() as u64, new: true }
                }
            };
            let lead_id = match out {
                LeadOut::Callback { lead_id, .. } => lead_id,
                _ => 0,
            };
            tx.prepare_cached(
                "INSERT INTO taken_callbacks (callback_id, campaign, lead_id, taken_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![lead.callback_id as i64, campaign, lead_id as i64, *at as i64])?;
            return Ok(out);
        }
        LeadOp::BeginAttempt(a) => {
            tx.prepare_cached(
                "INSERT INTO attempts (id, lead_id, campaign, number, class, provider, lease, state, placed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'dialing', ?8)",
            )?
            .execute(params![
                a.id as i64,
                a.lead_id as i64,
                a.campaign,
                a.number,
                a.class,
                a.provider,
                a.lease,
                a.at as i64
            ])?;
            tx.prepare_cached("UPDATE leads SET state = 'dialing', attempts = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![a.lead_id as i64, a.number, a.at as i64])?;
        }
        LeadOp::Placed { id, call_id } => {
            tx.prepare_cached("UPDATE attempts SET call_id = ?2 WHERE id = ?1")?
                .execute(params![*id as i64, call_id])?;
        }
        LeadOp::Answered { id, at } => {
            tx.prepare_cached(
                "UPDATE attempts SET state = 'live', answered_at = COALESCE(answered_at, ?2) WHERE id = ?1 AND state != 'ended'",
            )?
            .execute(params![*id as i64, *at as i64])?;
            tx.prepare_cached(
                "UPDATE leads SET state = 'in_call', updated_at = ?2
                 WHERE id = (SELECT lead_id FROM attempts WHERE id = ?1) AND state = 'dialing'",
            )?
            .execute(params![*id as i64, *at as i64])?;
        }
        LeadOp::EndAttempt(e) => {
            let n = tx
                .prepare_cached(
                    "UPDATE attempts SET state = 'ended', outcome = ?2, reason = ?3, ended_at = ?4, talk_ms = ?5,
                     cost = ?6 WHERE id = ?1 AND state != 'ended'",
                )?
                .execute(params![
                    e.id as i64,
                    e.outcome,
                    e.reason,
                    e.ended_at as i64,
                    e.talk_ms.map(|t| t as i64),
                    e.cost
                ])?;
            // An outcome that arrives twice (webhook and poll) moves the lead once.
            if n == 1 {
                tx.prepare_cached(
                    "UPDATE leads SET state = ?2, next_at = ?3, last_outcome = ?4, updated_at = ?5,
                     warm = CASE WHEN ?2 = 'pending' THEN warm ELSE 0 END
                     WHERE id = (SELECT lead_id FROM attempts WHERE id = ?1)",
                )?
                .execute(params![
                    e.id as i64,
                    e.lead_state,
                    e.next_at as i64,
                    e.outcome,
                    e.ended_at as i64
                ])?;
            }
        }
        LeadOp::Refused { id, at, next_at } => {
            let n = tx
                .prepare_cached(
                    "UPDATE attempts SET state = 'ended', outcome = 'refused', ended_at = ?2 WHERE id = ?1 AND state != 'ended'",
                )?
                .execute(params![*id as i64, *at as i64])?;
            if n == 1 {
                tx.prepare_cached(
                    "UPDATE leads SET state = 'pending', attempts = MAX(attempts - 1, 0), next_at = ?2, updated_at = ?3
                     WHERE id = (SELECT lead_id FROM attempts WHERE id = ?1)",
                )?
                .execute(params![*id as i64, *next_at as i64, *at as i64])?;
            }
        }
        LeadOp::Reschedule { lead_id, next_at } => {
            tx.prepare_cached("UPDATE leads SET next_at = ?2 WHERE id = ?1 AND state = 'pending'")?
                .execute(params![*lead_id as i64, *next_at as i64])?;
        }
    }
    Ok(LeadOut::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("callgate-leads-test-{}-{n}", std::process::id()))
    }
}
