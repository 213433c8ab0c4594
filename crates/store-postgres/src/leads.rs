// Long file: campaign leads, attempts and the rules' reads and writes on PostgreSQL, with the multi-node claim; one schema and its queries.
//! Campaigns, leads and attempts on PostgreSQL: the [`Leads`] trait for several dialer
//! nodes over one database.
//!
//! What each write does to a lead is decided by `callgate_backend::leads::rules`, read
//! from and written back to the rows inside the write's transaction, as the SQLite store
//! does. Each [`Leads::write`] is one transaction on the store's writer connection, in
//! the order of the calls.
//!
//! **Several nodes.** Every write that reads a lead to decide reads it `FOR UPDATE`: a
//! second node claiming the same lead waits for the first to commit, then reads it
//! `dialing` and gets [`LeadOut::Stale`]. A lead is never handed out twice, and the unique
//! index `attempts_one_open` makes the database itself refuse a second open attempt for a
//! lead. [`PgLeads::claim_due`] claims a batch of due leads in one transaction with
//! `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different leads instead of
//! queueing on the same rows. A node that dies after its claim committed leaves an open
//! attempt ([`Leads::open_attempts`]) that a surviving node resolves; a node that dies
//! before has claimed nothing (PostgreSQL rolls its transaction back). Lead ids are
//! `MAX(id) + 1` under a transaction advisory lock (imports from several nodes take turns;
//! ids stay dense and in import order, as in the SQLite store); attempt ids come from the
//! `attempt_ids` sequence in blocks of 64 per node.

use crate::conn::Conn;
use crate::conn::{Pg, Worker};
use crate::{big, unavailable, unbig};
use callgate_backend::leads::rules::{self, Dialed, Standing};
use callgate_backend::leads::{
    AttemptEnd, AttemptEnded, AttemptRow, CampaignCounts, LeadOp, LeadOut, LeadRow, Leads, NewAttempt, NewLead,
    PendingLead, StoredCampaign,
};
use callgate_backend::{BoxFuture, Error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_postgres::Row;

/// The transaction advisory lock new lead ids are taken under.
const LEAD_IDS: i64 = crate::migrate::LOCK + 1;
/// Attempt ids one `nextval` reserves: the sequence's increment.
const ID_BLOCK: u64 = 64;
/// What [`Leads::next_attempt_id`] answers when no id could be reserved (PostgreSQL
/// unreachable): a write that begins an attempt with it fails as unavailable.
pub const NO_ATTEMPT_ID: u64 = u64::MAX;

/// Campaigns, leads and attempts in PostgreSQL. See the module docs.
pub struct PgLeads {
    writer: Worker,
    reader: Worker,
    /// `[next, end)`: the attempt ids reserved and not yet handed out.
    ids: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for PgLeads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeads").finish_non_exhaustive()
    }
}

/// One attempt [`PgLeads::claim_due`] may begin: the dialer has its ledger lease already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimSlot {
    /// From [`Leads::next_attempt_id`].
    pub attempt_id: u64,
    /// The class to dial in when the lead names none.
    pub class: String,
    /// The provider it goes to.
    pub provider: String,
    /// The ledger lease (`L42`).
    pub lease: String,
}

/// A lead [`PgLeads::claim_due`] claimed, with the attempt begun for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The lead as claimed (now `dialing`).
    pub lead: LeadRow,
    /// The attempt's id (the slot's).
    pub attempt_id: u64,
    /// The slot's lease.
    pub lease: String,
}

/// Why a write was not applied: the database failed (a retry may help), or a rule refused
/// an op (nothing changed; the same write would be refused again).
enum Failed {
    Db(tokio_postgres::Error),
    Refused(Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Db(e)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Refused(e)
    }
}

impl PgLeads {
    /// The lead store of the database `pg` opened; reserves a first block of attempt ids
    /// (so it fails here, cleanly, when PostgreSQL cannot be reached).
    pub fn open(pg: &Pg) -> Result<PgLeads, Error> {
        let store =
            PgLeads { writer: pg.worker("lead writer"), reader: pg.worker("lead reader"), ids: Mutex::new((0, 0)) };
        let first = store.reserve()?;
        *store.ids.lock().unwrap_or_else(|p| p.into_inner()) = (first, first + ID_BLOCK);
        Ok(store)
    }

    fn reserve(&self) -> Result<u64, Error> {
        self.reader.block(|c| async move {
            let row = c
                .query_one("SELECT nextval('attempt_ids')", &[])
                .await
                .map_err(|e| unavailable("reserving attempt ids", e))?;
            Ok(unbig(row.get(0)))
        })
    }

    /// [`Leads::write`] for callers outside an async runtime (tools, tests).
    pub fn write_blocking(&self, ops: Vec<LeadOp>) -> Result<Vec<LeadOut>, Error> {
        self.writer.block(move |c| write(c, ops))
    }

    /// Claims up to `slots.len()` of the campaign's leads due at `now`, in dial order
    /// ([`rules::dial_order`]; calling windows aside, as [`Leads::due`]), and begins an
    /// attempt for each with a slot of its own, in one transaction: leads another node is
    /// claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`), not waited for.
    /// A warm lead is dialed as its callback, in its own class. Slots left over are not
    /// used (their leases are the caller's to release).
    pub fn claim_due(
        &self,
        campaign: &str,
        now: u64,
        slots: Vec<ClaimSlot>,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, Error>> {
        let campaign = campaign.to_owned();
        self.writer.call(move |c| claim(c, campaign, now, slots, None))
    }

    /// [`PgLeads::claim_due`], blocking.
    pub fn claim_due_blocking(&self, campaign: &str, now: u64, slots: Vec<ClaimSlot>) -> Result<Vec<Claimed>, Error> {
        let campaign = campaign.to_owned();
        self.writer.block(move |c| claim(c, campaign, now, slots, None))
    }

    /// [`PgLeads::claim_due`] among `leads` only: the ones the dialer's scheduler found
    /// callable now (their calling window open in their own time zone). Those another node
    /// claimed meanwhile, or is claiming, are skipped.
    pub fn claim_among(
        &self,
        campaign: &str,
        now: u64,
        leads: &[u64],
        slots: Vec<ClaimSlot>,
    ) -> BoxFuture<'_, Result<Vec<Claimed>, Error>> {
        let campaign = campaign.to_owned();
        let among = leads.iter().map(|id| big(*id)).collect();
        self.writer.call(move |c| claim(c, campaign, now, slots, Some(among)))
    }

    fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        self.reader.block(move |c| async move { f(c).await.map_err(|e| unavailable("reading leads", e)) })
    }
}

async fn in_transaction<T>(c: &Conn, body: impl std::future::Future<Output = Result<T, Failed>>) -> Result<T, Error> {
    if let Err(e) = c.batch_execute("BEGIN").await {
        return Err(unavailable("lead write", e));
    }
    match body.await {
        Ok(v) => match c.batch_execute("COMMIT").await {
            Ok(()) => Ok(v),
            Err(e) => Err(unavailable("lead write commit", e)),
        },
        Err(f) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(match f {
                Failed::Db(e) => unavailable("lead write", e),
                Failed::Refused(e) => e,
            })
        }
    }
}

async fn write(c: Arc<Conn>, ops: Vec<LeadOp>) -> Result<Vec<LeadOut>, Error> {
    in_transaction(&c, async {
        let mut outs = Vec::with_capacity(ops.len());
        for op in &ops {
            outs.push(apply(&c, op).await?);
        }
        Ok(outs)
    })
    .await
}

const LEAD_COLUMNS: &str =
    "id, campaign, phone, name, timezone, score, vars, warm, class, callback_id, state, attempts, next_at, last_outcome";

fn lead_row(r: &Row) -> LeadRow {
    LeadRow {
        id: unbig(r.get(0)),
        campaign: r.get(1),
        phone: r.get(2),
        name: r.get(3),
        timezone: r.get(4),
        score: r.get(5),
        vars: r.get(6),
        warm: r.get(7),
        class: r.get(8),
        callback_id: r.get::<_, Option<i64>>(9).map(unbig),
        state: r.get(10),
        attempts: count(r.get(11)),
        next_at: unbig(r.get(12)),
        last_outcome: r.get(13),
    }
}

fn count(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

async fn claim(
    c: Arc<Conn>,
    campaign: String,
    now: u64,
    slots: Vec<ClaimSlot>,
    among: Option<Vec<i64>>,
) -> Result<Vec<Claimed>, Error> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    in_transaction(&c, async {
        let rows = c
            .query(
                &format!(
                    "SELECT {LEAD_COLUMNS} FROM leads WHERE campaign = $1 AND state = 'pending' AND next_at <= $2
                        AND ($4::bigint[] IS NULL OR id = ANY($4))
                     ORDER BY warm DESC, score DESC, attempts, id LIMIT $3 FOR UPDATE SKIP LOCKED"
                ),
                &[&campaign, &big(now), &big(slots.len() as u64), &among],
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (row, slot) in rows.iter().map(lead_row).zip(slots) {
            let a = NewAttempt {
                id: slot.attempt_id,
                lead_id: row.id,
                campaign: campaign.clone(),
                number: row.attempts + 1,
                class: row.class.clone().filter(|_| row.warm).unwrap_or(slot.class),
                provider: slot.provider,
                lease: slot.lease.clone(),
                callback_id: row.callback_id.filter(|_| row.warm),
                at: now,
            };
            match apply(&c, &LeadOp::BeginAttempt(a)).await? {
                LeadOut::Done => {}
                other => {
                    return Err(Failed::Refused(Error::internal(format!(
                        "a locked due lead was not claimed: {other:?}"
                    ))))
                }
            }
            let lead = LeadRow { state: rules::DIALING.into(), attempts: row.attempts + 1, ..row };
            claimed.push(Claimed { lead, attempt_id: slot.attempt_id, lease: slot.lease });
        }
        Ok(claimed)
    })
    .await
}

/// The lead's standing, its row locked until the transaction ends.
async fn standing(c: &Conn, id: u64) -> Result<Option<Standing>, Failed> {
    let row = c
        .query_opt(
            "SELECT state, warm, class, callback_id, attempts, next_at FROM leads WHERE id = $1 FOR UPDATE",
            &[&big(id)],
        )
        .await?;
    Ok(row.map(|r| Standing {
        state: r.get(0),
        warm: r.get(1),
        class: r.get(2),
        callback_id: r.get::<_, Option<i64>>(3).map(unbig),
        attempts: count(r.get(4)),
        next_at: unbig(r.get(5)),
    }))
}

async fn put_standing(c: &Conn, id: u64, s: &Standing, at: u64) -> Result<(), Failed> {
    c.execute(
        "UPDATE leads SET state = $2, warm = $3, class = $4, callback_id = $5, attempts = $6, next_at = $7,
         updated_at = $8 WHERE id = $1",
        &[&big(id), &s.state, &s.warm, &s.class, &s.callback_id.map(big), &int(s.attempts), &big(s.next_at), &big(at)],
    )
    .await?;
    Ok(())
}

/// The next lead id, under the lead id lock (taken here for the rest of the transaction).
async fn next_lead_id(c: &Conn) -> Result<u64, Failed> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&LEAD_IDS]).await?;
    let row = c.query_one("SELECT COALESCE(MAX(id), 0) FROM leads", &[]).await?;
    Ok(unbig(row.get(0)) + 1)
}

async fn insert_lead(c: &Conn, id: u64, campaign: &str, l: &NewLead, s: &Standing, at: u64) -> Result<(), Failed> {
    c.execute(
        "INSERT INTO leads (id, campaign, phone, name, timezone, score, vars, warm, class, callback_id, state, attempts,
         next_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        &[
            &big(id),
            &campaign,
            &l.phone,
            &l.name,
            &l.timezone,
            &l.score,
            &l.vars,
            &s.warm,
            &s.class,
            &s.callback_id.map(big),
            &s.state,
            &int(s.attempts),
            &big(s.next_at),
            &big(at),
        ],
    )
    .await?;
    Ok(())
}

/// Adds `leads` (a number the campaign has, or one earlier in the batch, is skipped):
/// one query for the numbers known and one insert for the rest, however many there are.
async fn add_leads(c: &Conn, campaign: &str, leads: &[NewLead], at: u64) -> Result<LeadOut, Failed> {
    let first = next_lead_id(c).await?;
    let phones: Vec<&str> = leads.iter().map(|l| l.phone.as_str()).collect();
    let known: std::collections::HashSet<String> = c
        .query("SELECT phone FROM leads WHERE campaign = $1 AND phone = ANY($2)", &[&campaign, &phones])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let add = rules::dedupe(leads, |p| Ok::<_, Error>(known.contains(p)))?;
    let s = Standing::imported();
    let mut ids = Vec::with_capacity(leads.len());
    let (mut id_col, mut phone, mut name, mut tz, mut score, mut vars) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut next = first;
    for (l, add) in leads.iter().zip(add) {
        if !add {
            ids.push(None);
            continue;
        }
        ids.push(Some(next));
        id_col.push(big(next));
        phone.push(l.phone.as_str());
        name.push(l.name.as_deref());
        tz.push(l.timezone.as_str());
        score.push(l.score);
        vars.push(l.vars.as_deref());
        next += 1;
    }
    if !id_col.is_empty() {
        c.execute(
            "INSERT INTO leads (id, campaign, phone, name, timezone, score, vars, warm, class, callback_id, state,
                attempts, next_at, created_at, updated_at)
             SELECT u.id, $1::text, u.phone, u.name, u.tz, u.score, u.vars, $8::boolean, NULL, NULL, $9::text,
                $10::integer, $11::bigint, $12::bigint, $12::bigint
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[])
                AS u(id, phone, name, tz, score, vars)
             ORDER BY u.id",
            &[
                &campaign,
                &id_col,
                &phone,
                &name,
                &tz,
                &score,
                &vars,
                &s.warm,
                &s.state,
                &int(s.attempts),
                &big(s.next_at),
                &big(at),
            ],
        )
        .await?;
    }
    Ok(LeadOut::Added(ids))
}

type AttemptFacts = (u64, Option<u64>, Option<u64>, String);

/// The attempt's lead, the callback it dials, its answer time and its state, its row
/// locked until the transaction ends.
async fn attempt_facts(c: &Conn, id: u64) -> Result<Option<AttemptFacts>, Failed> {
    let row = c
        .query_opt(
            "SELECT lead_id, callback_id, answered_at, state FROM attempts WHERE id = $1 FOR UPDATE",
            &[&big(id)],
        )
        .await?;
    Ok(row.map(|r| {
        (unbig(r.get(0)), r.get::<_, Option<i64>>(1).map(unbig), r.get::<_, Option<i64>>(2).map(unbig), r.get(3))
    }))
}

async fn apply(c: &Conn, op: &LeadOp) -> Result<LeadOut, Failed> {
    match op {
        LeadOp::PutCampaign { name, spec, state, source, at } => {
            c.execute(
                "INSERT INTO campaigns (name, spec, state, source, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source,
                 updated_at = excluded.updated_at",
                &[name, spec, state, source, &big(*at)],
            )
            .await?;
        }
        LeadOp::SetState { name, state, reason, at } => {
            c.execute(
                "UPDATE campaigns SET state = $2, paused_reason = $4, updated_at = $3 WHERE name = $1",
                &[name, state, &big(*at), reason],
            )
            .await?;
        }
        LeadOp::AddLeads { campaign, leads, at } => return add_leads(c, campaign, leads, *at).await,
        LeadOp::AddCallback { campaign, lead, at } => {
            // Under the lead id lock: two nodes taking callbacks for one number take turns.
            let new_id = next_lead_id(c).await?;
            let taken =
                c.query_opt("SELECT 1 FROM taken_callbacks WHERE callback_id = $1", &[&big(lead.callback_id)]).await?;
            if taken.is_some() {
                return Ok(LeadOut::Done);
            }
            let existing = c
                .query_opt("SELECT id FROM leads WHERE campaign = $1 AND phone = $2", &[campaign, &lead.phone])
                .await?;
            let existing = match existing {
                Some(r) => {
                    let id = unbig(r.get(0));
                    standing(c, id).await?.map(|s| (id, s))
                }
                None => None,
            };
            let (lead_id, new) = match existing {
                Some((id, s)) => {
                    put_standing(c, id, &rules::take_callback(Some(&s), lead), *at).await?;
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
                    insert_lead(c, new_id, campaign, &new, &rules::take_callback(None, lead), *at).await?;
                    (new_id, true)
                }
            };
            c.execute(
                "INSERT INTO taken_callbacks (callback_id, campaign, lead_id, taken_at, booked_at) VALUES ($1, $2, $3, $4, $5)",
                &[&big(lead.callback_id), campaign, &big(lead_id), &big(*at), &big(lead.booked_at)],
            )
            .await?;
            return Ok(LeadOut::Callback { lead_id, new });
        }
        LeadOp::BeginAttempt(a) => {
            if a.id == NO_ATTEMPT_ID {
                return Err(Error::unavailable(
                    "postgres: no attempt id could be reserved (PostgreSQL was unreachable)",
                )
                .into());
            }
            if c.query_opt("SELECT 1 FROM attempts WHERE id = $1", &[&big(a.id)]).await?.is_some() {
                return Err(rules::duplicate_attempt(a.id).into());
            }
            // Only the lead the dialer read: still pending, still returning the same
            // callback (or none). Its row stays locked until the claim commits, so a
            // second node's claim waits and then finds it dialing.
            let Some(s) = standing(c, a.lead_id).await?.filter(|s| rules::as_read(s, a.callback_id)) else {
                return Ok(LeadOut::Stale);
            };
            put_standing(c, a.lead_id, &rules::begin(&s, a.number), a.at).await?;
            c.execute(
                "INSERT INTO attempts (id, lead_id, campaign, number, class, provider, lease, state, placed_at, callback_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &big(a.id),
                    &big(a.lead_id),
                    &a.campaign,
                    &int(a.number),
                    &a.class,
                    &a.provider,
                    &a.lease,
                    &rules::ATTEMPT_DIALING,
                    &big(a.at),
                    &a.callback_id.map(big),
                ],
            )
            .await?;
        }
        LeadOp::Placed { id, call_id } => {
            c.execute("UPDATE attempts SET call_id = $2 WHERE id = $1", &[&big(*id), call_id]).await?;
        }
        LeadOp::Answered { id, at } => {
            let Some((lead_id, _, answered_at, state)) = attempt_facts(c, *id).await? else { return Ok(LeadOut::Done) };
            if rules::is_open(&state) {
                c.execute(
                    "UPDATE attempts SET state = $2, answered_at = $3 WHERE id = $1",
                    &[&big(*id), &rules::ATTEMPT_LIVE, &big(answered_at.unwrap_or(*at))],
                )
                .await?;
            }
            if let Some(s) = standing(c, lead_id).await? {
                let state = rules::answered(&s.state);
                if state != s.state {
                    c.execute(
                        "UPDATE leads SET state = $2, updated_at = $3 WHERE id = $1",
                        &[&big(lead_id), &state, &big(*at)],
                    )
                    .await?;
                }
            }
        }
        LeadOp::EndAttempt(e) => return end_attempt(c, e).await.map(LeadOut::Ended),
        LeadOp::Refused { id, at, next_at } => {
            let Some((lead_id, dialed, _, state)) = attempt_facts(c, *id).await? else { return Ok(LeadOut::Done) };
            if !rules::is_open(&state) {
                return Ok(LeadOut::Done);
            }
            c.execute(
                "UPDATE attempts SET state = $2, outcome = $3, ended_at = $4 WHERE id = $1",
                &[&big(*id), &rules::ATTEMPT_ENDED, &rules::REFUSED, &big(*at)],
            )
            .await?;
            if let Some(s) = standing(c, lead_id).await? {
                put_standing(c, lead_id, &rules::refused(&s, dialed, *next_at), *at).await?;
            }
        }
        LeadOp::Reschedule { lead_id, next_at, callback_id } => {
            if !standing(c, *lead_id).await?.is_some_and(|s| rules::as_read(&s, *callback_id)) {
                return Ok(LeadOut::Stale);
            }
            c.execute("UPDATE leads SET next_at = $2 WHERE id = $1", &[&big(*lead_id), &big(*next_at)]).await?;
        }
        LeadOp::Fence { campaign, token } => fence(c, campaign, *token).await?,
    }
    Ok(LeadOut::Done)
}

/// [`LeadOp::Fence`]: raises the campaign's fence to `token` under its row lock (held
/// until the write commits, so an attempt a former pacer begins either commits before a
/// new pacer's fence, and that pacer reads it, or finds the new fence); a fence above
/// `token` fails the write. A campaign without a row has no fence yet.
async fn fence(c: &Conn, campaign: &str, token: u64) -> Result<(), Failed> {
    let raised = c
        .execute(
            "UPDATE campaigns SET pacer_fence = $2 WHERE name = $1 AND pacer_fence <= $2",
            &[&campaign, &big(token)],
        )
        .await?;
    if raised == 1 {
        return Ok(());
    }
    match c.query_opt("SELECT pacer_fence FROM campaigns WHERE name = $1", &[&campaign]).await? {
        Some(row) => Err(Failed::Refused(Error::conflict(
            "fenced",
            format!(
                "campaign `{campaign}` is paced under token {} now; token {token} is stale (another node took the campaign)",
                unbig(row.get(0))
            ),
        ))),
        None => Ok(()),
    }
}

async fn end_attempt(c: &Conn, e: &AttemptEnd) -> Result<AttemptEnded, Failed> {
    rules::check_end(e)?;
    // An outcome that arrives twice (webhook and poll, or two nodes) moves the lead once:
    // the attempt's row is locked, and the second finds it ended.
    let Some((lead_id, dialed, answered_at, state)) = attempt_facts(c, e.id).await? else {
        return Ok(AttemptEnded::default());
    };
    if !rules::is_open(&state) {
        return Ok(AttemptEnded::default());
    }
    c.execute(
        "UPDATE attempts SET state = $2, outcome = $3, reason = $4, ended_at = $5, talk_ms = $6, cost = $7 WHERE id = $1",
        &[&big(e.id), &rules::ATTEMPT_ENDED, &e.outcome, &e.reason, &big(e.ended_at), &e.talk_ms.map(big), &e.cost],
    )
    .await?;
    let Some(s) = standing(c, lead_id).await? else {
        return Ok(AttemptEnded { applied: true, lead_state: e.lead_state.clone(), ..AttemptEnded::default() });
    };
    let booked = match s.returns() {
        Some(cb) => c
            .query_opt("SELECT booked_at, taken_at FROM taken_callbacks WHERE callback_id = $1", &[&big(cb)])
            .await?
            .and_then(|r| r.get::<_, Option<i64>>(0).or(Some(r.get::<_, i64>(1))).map(unbig)),
        None => None,
    };
    let ending = rules::end(&s, Dialed { callback_id: dialed, answered_at }, e, booked);
    put_standing(c, lead_id, &ending.standing, e.ended_at).await?;
    c.execute("UPDATE leads SET last_outcome = $2 WHERE id = $1", &[&big(lead_id), &e.outcome]).await?;
    let mut callbacks_done = Vec::new();
    if let Some(outcome) = &ending.settle {
        let open = c
            .query(
                "UPDATE taken_callbacks SET done_at = $2, outcome = $3 WHERE lead_id = $1 AND done_at IS NULL
                 RETURNING callback_id",
                &[&big(lead_id), &big(e.ended_at), outcome],
            )
            .await?;
        let mut ids: Vec<u64> = open.iter().map(|r| unbig(r.get(0))).collect();
        ids.sort_unstable();
        callbacks_done = ids.into_iter().map(|id| (id, outcome.clone())).collect();
    }
    Ok(rules::ended(&ending.standing, callbacks_done))
}

const ATTEMPT_SELECT: &str = "SELECT id, lead_id, campaign, number, class, provider, lease, call_id, state, outcome,
    placed_at, answered_at, callback_id FROM attempts";

fn attempt_row(r: &Row) -> AttemptRow {
    AttemptRow {
        id: unbig(r.get(0)),
        lead_id: unbig(r.get(1)),
        campaign: r.get(2),
        number: count(r.get(3)),
        class: r.get(4),
        provider: r.get(5),
        lease: r.get(6),
        call_id: r.get(7),
        state: r.get(8),
        outcome: r.get(9),
        placed_at: unbig(r.get(10)),
        answered_at: r.get::<_, Option<i64>>(11).map(unbig),
        callback_id: r.get::<_, Option<i64>>(12).map(unbig),
    }
}

impl Leads for PgLeads {
    fn next_attempt_id(&self) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            match self.reserve() {
                Ok(first) => *ids = (first, first + ID_BLOCK),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot reserve attempt ids");
                    return NO_ATTEMPT_ID;
                }
            }
        }
        ids.0 += 1;
        ids.0 - 1
    }

    fn write(&self, ops: Vec<LeadOp>) -> BoxFuture<'_, Result<Vec<LeadOut>, Error>> {
        // Handed to the writer before the future is returned: in the order of the calls.
        self.writer.call(move |c| write(c, ops))
    }

    fn campaigns(&self) -> Result<Vec<StoredCampaign>, Error> {
        self.read(|c| async move {
            let rows = c
                .query(
                    "SELECT name, spec, state, source, created_at, paused_reason FROM campaigns
                     ORDER BY created_at, name COLLATE \"C\"",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| StoredCampaign {
                    name: r.get(0),
                    spec: r.get(1),
                    state: r.get(2),
                    source: r.get(3),
                    created_at: unbig(r.get(4)),
                    paused_reason: r.get(5),
                })
                .collect())
        })
    }

    fn pending(&self, campaign: &str) -> Result<Vec<PendingLead>, Error> {
        let campaign = campaign.to_owned();
        self.read(|c| async move {
            let rows = c
                .query(
                    "SELECT id, timezone, score, attempts, warm, next_at FROM leads WHERE campaign = $1 AND state = $2
                     ORDER BY id",
                    &[&campaign, &rules::PENDING],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| PendingLead {
                    id: unbig(r.get(0)),
                    timezone: r.get(1),
                    score: r.get(2),
                    attempts: count(r.get(3)),
                    warm: r.get(4),
                    next_at: unbig(r.get(5)),
                })
                .collect())
        })
    }

    fn due(&self, campaign: &str, now: u64, limit: usize) -> Result<Vec<PendingLead>, Error> {
        Ok(rules::due(self.pending(campaign)?, now, limit))
    }

    fn lead(&self, id: u64) -> Result<Option<LeadRow>, Error> {
        self.read(move |c| async move {
            let row = c.query_opt(&format!("SELECT {LEAD_COLUMNS} FROM leads WHERE id = $1"), &[&big(id)]).await?;
            Ok(row.as_ref().map(lead_row))
        })
    }

    fn attempts_since(&self, lead_id: u64, since: u64) -> Result<Vec<u64>, Error> {
        let rows = self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT placed_at, outcome FROM attempts WHERE lead_id = $1 AND placed_at >= $2 ORDER BY placed_at",
                    &[&big(lead_id), &big(since)],
                )
                .await?;
            Ok(rows.iter().map(|r| (unbig(r.get(0)), r.get::<_, Option<String>>(1))).collect::<Vec<_>>())
        })?;
        Ok(rows.into_iter().filter(|(_, outcome)| rules::counts(outcome.as_deref())).map(|(at, _)| at).collect())
    }

    fn open_attempts(&self) -> Result<Vec<AttemptRow>, Error> {
        self.read(|c| async move {
            let rows =
                c.query(&format!("{ATTEMPT_SELECT} WHERE state <> $1 ORDER BY id"), &[&rules::ATTEMPT_ENDED]).await?;
            Ok(rows.iter().map(attempt_row).collect())
        })
    }

    fn attempts_of(&self, lead_id: u64) -> Result<Vec<AttemptRow>, Error> {
        self.read(move |c| async move {
            let rows = c.query(&format!("{ATTEMPT_SELECT} WHERE lead_id = $1 ORDER BY id"), &[&big(lead_id)]).await?;
            Ok(rows.iter().map(attempt_row).collect())
        })
    }

    fn counts(&self, campaign: &str, since: u64) -> Result<CampaignCounts, Error> {
        // SQL only groups alike rows; what each group counts for is the rules' to say.
        let campaign = campaign.to_owned();
        let (leads, attempts) = self.read(move |c| async move {
            let since = big(since);
            let leads = c
                .query(
                    "SELECT state, last_outcome, updated_at >= $2, COUNT(*) FROM leads WHERE campaign = $1
                     GROUP BY 1, 2, 3",
                    &[&campaign, &since],
                )
                .await?
                .iter()
                .map(|r| rules::LeadGroup {
                    state: r.get(0),
                    last_outcome: r.get(1),
                    recent: r.get(2),
                    leads: unbig(r.get(3)),
                })
                .collect::<Vec<_>>();
            let attempts = c
                .query(
                    "SELECT state, outcome, answered_at IS NOT NULL, placed_at >= $2, COUNT(*),
                            COALESCE(SUM(talk_ms), 0)::bigint, COALESCE(SUM(cost), 0.0)::float8
                     FROM attempts WHERE campaign = $1 GROUP BY 1, 2, 3, 4",
                    &[&campaign, &since],
                )
                .await?
                .iter()
                .map(|r| rules::AttemptGroup {
                    state: r.get(0),
                    outcome: r.get(1),
                    answered: r.get(2),
                    recent: r.get(3),
                    attempts: unbig(r.get(4)),
                    talk_ms: unbig(r.get(5)),
                    cost: r.get(6),
                })
                .collect::<Vec<_>>();
            Ok((leads, attempts))
        })?;
        Ok(rules::tally(leads, attempts))
    }

    fn settled_callbacks(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, Error> {
        let ids = ids.to_vec();
        let wanted: Vec<i64> = ids.iter().map(|id| big(*id)).collect();
        let settled: HashMap<u64, String> = self.read(move |c| async move {
            let rows = c
                .query(
                    "SELECT callback_id, outcome FROM taken_callbacks WHERE callback_id = ANY($1)
                     AND done_at IS NOT NULL AND outcome IS NOT NULL",
                    &[&wanted],
                )
                .await?;
            Ok(rows.iter().map(|r| (unbig(r.get(0)), r.get(1))).collect())
        })?;
        Ok(ids.iter().filter_map(|id| Some((*id, settled.get(id)?.clone()))).collect())
    }

    fn close(&self) {
        // Waits for the writes handed over; reads go on (the reader closes on drop).
        self.writer.close();
    }
}
