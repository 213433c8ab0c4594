// Long file: campaign leads, attempts and their rules in one SQLite schema and its queries.
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
    /// Unix ms: when the caller asked for it (an attempt that reaches the lead from then
    /// on settles it).
    pub booked_at: u64,
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
    /// The booked callback the dialer read on the lead (the lead was warm with it), `None`
    /// for a campaign attempt. The attempt begins only if the lead is still pending and
    /// still returns exactly this callback ([`LeadOut::Stale`] otherwise).
    pub callback_id: Option<u64>,
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
        /// Why callgate paused it (an account error the provider reported); `None` clears
        /// a reason stored before (a manual pause, a resume).
        reason: Option<String>,
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
    /// made warm and due instead: at the earlier of the two promised times when it returns
    /// another callback already). A lead being dialed keeps its state and its attempt;
    /// [`LeadOp::EndAttempt`] decides what the callback needs when that attempt ends. A
    /// callback already taken changes nothing ([`LeadOut::Done`]).
    AddCallback {
        /// Campaign.
        campaign: String,
        /// The callback.
        lead: CallbackLead,
        /// Unix ms.
        at: u64,
    },
    /// Claim a lead: the attempt is recorded and the lead is `dialing` — only if the lead
    /// is still pending with the callback the dialer read ([`NewAttempt::callback_id`]);
    /// otherwise nothing is written and the answer is [`LeadOut::Stale`].
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
    /// The attempt ended; its lead moves on as `lead_state` says, and the callbacks it
    /// returns are settled or kept for their own dial ([`LeadOut::Ended`]):
    ///
    /// - an attempt that dialed the lead's callback settles it (with every other callback
    ///   taken for the lead) once the lead is through: done, failed or exhausted;
    /// - when a callback was taken while this attempt was out (a campaign attempt, or one
    ///   that dialed an earlier callback), the attempt settles it only if it reached the
    ///   lead after the callback was booked: `completed`, and answered (or, without an
    ///   answer time, started talking: the end minus the talk time) at or after the
    ///   booking. An `invalid` outcome settles it too (the number cannot be called).
    ///   Otherwise the lead is pending again, warm, due at the callback's promised time,
    ///   with a fresh count of attempts: the callback is dialed in its own right.
    EndAttempt(AttemptEnd),
    /// The provider refused the call for concurrency: the attempt does not count and the
    /// lead is pending again, due at `next_at` (a callback taken while the attempt was out:
    /// at its promised time, with attempts of its own).
    Refused {
        /// Attempt id.
        id: u64,
        /// Unix ms.
        at: u64,
        /// When it may be dialed again.
        next_at: u64,
    },
    /// Move a pending lead's due time (the weekly cap, a window), only if it still returns
    /// `callback_id` (or none, for `None`): [`LeadOut::Stale`] otherwise.
    Reschedule {
        /// Lead id.
        lead_id: u64,
        /// Unix ms.
        next_at: u64,
        /// The callback the dialer read on the lead (as in [`NewAttempt::callback_id`]).
        callback_id: Option<u64>,
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
    /// [`LeadOp::BeginAttempt`] or [`LeadOp::Reschedule`] wrote nothing: the lead is no
    /// longer pending, or returns another callback than the dialer read.
    Stale,
    /// What [`LeadOp::EndAttempt`] did.
    Ended(AttemptEnded),
}

/// What ending an attempt did to its lead and the lead's callbacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptEnded {
    /// False when the attempt had ended already: nothing changed (the fields below are
    /// empty).
    pub applied: bool,
    /// The lead's state now (`pending`, `done`, `failed`, `exhausted`).
    pub lead_state: String,
    /// Attempts counted for the lead now.
    pub attempts: u32,
    /// The lead is warm: a callback is still to be dialed.
    pub warm: bool,
    /// When a pending lead may be dialed (Unix ms).
    pub next_at: u64,
    /// The booked callbacks this end settled, each with the outcome it is done with.
    pub callbacks_done: Vec<(u64, String)>,
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
    /// Why callgate paused it (see [`LeadOp::SetState`]).
    pub paused_reason: Option<String>,
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
    /// The booked callback it dialed (`None`: a campaign attempt).
    pub callback_id: Option<u64>,
}

/// Counts for a campaign's progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CampaignCounts {
    /// `(state, last_outcome, leads)`.
    pub leads: Vec<(String, Option<String>, u64)>,
    /// Attempts that count (refusals excluded).
    pub attempts: u64,
    /// Ended attempts the lead answered (the connect rate's numerator: calls still in
    /// progress count in neither side of the rate).
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
                    COALESCE(SUM(answered_at IS NOT NULL AND state = 'ended' AND outcome NOT IN ('refused', 'interrupted')), 0),
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

    /// The outcome of each of these callbacks that an attempt end settled (callbacks not
    /// taken, or not settled yet, are left out).
    pub fn settled_callbacks(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, StoreError> {
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
        LeadOp::SetState { name, state, reason, at } => {
            tx.prepare_cached("UPDATE campaigns SET state = ?2, paused_reason = ?4, updated_at = ?3 WHERE name = ?1")?
                .execute(params![name, state, *at as i64, reason])?;
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
                    // A lead that is being dialed right now keeps its state and its
                    // attempt; it becomes warm and due, and the end of that attempt decides
                    // whether the callback is still to be dialed (see `EndAttempt`). A
                    // pending lead that returns a callback already keeps the earlier
                    // promised time.
                    tx.prepare_cached(
                        "UPDATE leads SET class = ?2, callback_id = ?3, updated_at = ?5,
                         next_at = CASE WHEN state = 'pending' AND warm = 1 THEN MIN(next_at, ?4) ELSE ?4 END,
                         warm = 1,
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
            return Ok(out);
        }
        LeadOp::BeginAttempt(a) => {
            // Only the lead the dialer read: still pending, still returning the same
            // callback (or none). A callback taken in between is dialed as itself.
            let n = tx
                .prepare_cached(
                    "UPDATE leads SET state = 'dialing', attempts = ?2, updated_at = ?3
                     WHERE id = ?1 AND state = 'pending' AND (CASE WHEN warm = 1 THEN callback_id END) IS ?4",
                )?
                .execute(params![a.lead_id as i64, a.number, a.at as i64, a.callback_id.map(|c| c as i64)])?;
            if n == 0 {
                return Ok(LeadOut::Stale);
            }
            tx.prepare_cached(
                "INSERT INTO attempts (id, lead_id, campaign, number, class, provider, lease, state, placed_at,
                 callback_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'dialing', ?8, ?9)",
            )?
            .execute(params![
                a.id as i64,
                a.lead_id as i64,
                a.campaign,
                a.number,
                a.class,
                a.provider,
                a.lease,
                a.at as i64,
                a.callback_id.map(|c| c as i64)
            ])?;
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
        LeadOp::EndAttempt(e) => return end_attempt(tx, e).map(LeadOut::Ended),
        LeadOp::Refused { id, at, next_at } => {
            let n = tx
                .prepare_cached(
                    "UPDATE attempts SET state = 'ended', outcome = 'refused', ended_at = ?2 WHERE id = ?1 AND state != 'ended'",
                )?
                .execute(params![*id as i64, *at as i64])?;
            if n == 1 {
                // A callback taken while this attempt was out is dialed as itself: at its
                // promised time, with attempts of its own.
                tx.prepare_cached(
                    "UPDATE leads SET state = 'pending', updated_at = ?3,
                     attempts = CASE WHEN r.raced THEN 0 ELSE MAX(attempts - 1, 0) END,
                     next_at = CASE WHEN r.raced THEN next_at ELSE ?2 END
                     FROM (SELECT a.lead_id AS lead, (l.warm = 1 AND l.callback_id IS NOT a.callback_id) AS raced
                           FROM attempts a JOIN leads l ON l.id = a.lead_id WHERE a.id = ?1) AS r
                     WHERE leads.id = r.lead",
                )?
                .execute(params![*id as i64, *next_at as i64, *at as i64])?;
            }
        }
        LeadOp::Reschedule { lead_id, next_at, callback_id } => {
            let n = tx
                .prepare_cached(
                    "UPDATE leads SET next_at = ?2 WHERE id = ?1 AND state = 'pending'
                     AND (CASE WHEN warm = 1 THEN callback_id END) IS ?3",
                )?
                .execute(params![*lead_id as i64, *next_at as i64, callback_id.map(|c| c as i64)])?;
            if n == 0 {
                return Ok(LeadOut::Stale);
            }
        }
    }
    Ok(LeadOut::Done)
}

/// [`LeadOp::EndAttempt`]: see its docs for what becomes of the lead's callbacks.
fn end_attempt(tx: &Connection, e: &AttemptEnd) -> Result<AttemptEnded, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE attempts SET state = 'ended', outcome = ?2, reason = ?3, ended_at = ?4, talk_ms = ?5,
             cost = ?6 WHERE id = ?1 AND state != 'ended'",
        )?
        .execute(params![e.id as i64, e.outcome, e.reason, e.ended_at as i64, e.talk_ms.map(|t| t as i64), e.cost])?;
    // An outcome that arrives twice (webhook and poll) moves the lead once.
    if n == 0 {
        return Ok(AttemptEnded::default());
    }
    let (lead_id, dialed, answered_at): (i64, Option<i64>, Option<i64>) = tx
        .prepare_cached("SELECT lead_id, callback_id, answered_at FROM attempts WHERE id = ?1")?
        .query_row(params![e.id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let Some((warm, held, due, attempts)) = tx
        .prepare_cached("SELECT warm, callback_id, next_at, attempts FROM leads WHERE id = ?1")?
        .query_row(params![lead_id], |r| {
            Ok((r.get::<_, i64>(0)? != 0, r.get::<_, Option<i64>>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })
        .optional()?
    else {
        return Ok(AttemptEnded { applied: true, lead_state: e.lead_state.clone(), ..AttemptEnded::default() });
    };
    // The callback the lead returns now, and whether it was taken while this attempt was
    // out (the attempt did not dial it).
    let held = held.filter(|_| warm);
    let raced = held.is_some() && held != dialed;
    let pending = e.lead_state == "pending";
    // (state, next_at, warm, attempts, the outcome the lead's callbacks are done with)
    let (state, next_at, warm, attempts, settle) = if raced {
        let booked: i64 = tx
            .prepare_cached("SELECT COALESCE(booked_at, taken_at) FROM taken_callbacks WHERE callback_id = ?1")?
            .query_row(params![held], |r| r.get(0))
            .optional()?
            .unwrap_or(i64::MAX);
        // When the lead was reached: answered, or started talking (end minus talk time),
        // whichever is known and earlier.
        let talked_from = e.talk_ms.map(|t| e.ended_at.saturating_sub(t) as i64);
        let reached_at = match (answered_at, talked_from) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
        .filter(|_| e.outcome == "completed");
        if reached_at.is_some_and(|r| r >= booked) {
            ("done", 0, false, attempts, Some(e.outcome.as_str()))
        } else if e.outcome == "invalid" {
            ("failed", 0, false, attempts, Some(e.outcome.as_str()))
        } else {
            // Not reached since the caller asked: the callback is dialed in its own
            // right, at its promised time, with attempts of its own.
            ("pending", due, true, 0, None)
        }
    } else {
        (e.lead_state.as_str(), e.next_at as i64, warm && pending, attempts, (!pending).then_some(e.outcome.as_str()))
    };
    tx.prepare_cached(
        "UPDATE leads SET state = ?2, next_at = ?3, last_outcome = ?4, updated_at = ?5, warm = ?6, attempts = ?7
         WHERE id = ?1",
    )?
    .execute(params![lead_id, state, next_at, e.outcome, e.ended_at as i64, i64::from(warm), attempts])?;
    let mut callbacks_done = Vec::new();
    if let Some(outcome) = settle {
        let mut open =
            tx.prepare_cached("SELECT callback_id FROM taken_callbacks WHERE lead_id = ?1 AND done_at IS NULL")?;
        for id in open.query_map(params![lead_id], |r| r.get::<_, i64>(0))? {
            callbacks_done.push((id? as u64, outcome.to_string()));
        }
        tx.prepare_cached(
            "UPDATE taken_callbacks SET done_at = ?2, outcome = ?3 WHERE lead_id = ?1 AND done_at IS NULL",
        )?
        .execute(params![lead_id, e.ended_at as i64, outcome])?;
    }
    Ok(AttemptEnded {
        applied: true,
        lead_state: state.to_string(),
        attempts: u32::try_from(attempts).unwrap_or(0),
        warm,
        next_at: u64::try_from(next_at).unwrap_or(0),
        callbacks_done,
    })
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
