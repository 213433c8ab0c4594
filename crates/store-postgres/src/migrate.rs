//! The schema, as numbered migrations applied at open.
//!
//! `callgate_migrations` records each version applied. [`Pg::open`](crate::Pg::open)
//! takes a session advisory lock ([`LOCK`]) around reading it and applying what is
//! missing, each migration in a transaction of its own with its row, so two nodes that
//! start at once apply every migration exactly once (the second waits, then finds
//! nothing to do), and a migration that fails leaves nothing half-applied. A database
//! that has versions this build does not know (a newer node migrated it) is used as it
//! is, with a warning: migrations only add.

use crate::conn::Conn;
use crate::unavailable;
use callgate_backend::Error;

/// The advisory lock key held while migrating ("callgate" in ASCII).
pub const LOCK: i64 = 0x6361_6c6c_6761_7465;

/// One step of the schema.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Applied in order; never renumbered, never edited once released.
    pub version: i32,
    /// What it adds.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "lease journal", sql: JOURNAL },
    Migration { version: 2, name: "call records and callbacks", sql: RECORDS },
    Migration { version: 3, name: "campaigns, leads and attempts", sql: LEADS },
    Migration { version: 4, name: "the lease a spilled call holds", sql: CALL_LEASE_KEY },
    Migration { version: 5, name: "suppression lists and their audit trail", sql: DNC },
    Migration { version: 6, name: "the campaigns' pacing fences", sql: PACER_FENCE },
];

/// The fencing token of the latest pacer of each campaign (`LeadOp::Fence`): an attempt
/// is begun only under it, so a former pacer that wakes after a takeover cannot claim.
const PACER_FENCE: &str = "ALTER TABLE campaigns ADD COLUMN pacer_fence bigint NOT NULL DEFAULT 0;";

/// The suppression lists every node honours, and the audit trail of dial decisions (see
/// `dnc.rs`): each change takes the next position from `dnc_state`, which its rows carry,
/// so a node's copy in memory catches up by position.
const DNC: &str = "
CREATE TABLE dnc (
    list text NOT NULL,
    number bigint NOT NULL,         -- the E.164 digits, without the +
    source text NOT NULL,           -- import:FILE | api | call:ID | ...
    added_at bigint NOT NULL,
    seq bigint NOT NULL,            -- the position of the transaction that added it
    PRIMARY KEY (list, number)
);
CREATE INDEX dnc_seq ON dnc (seq, number);
-- The last removal of each number from each list, at its position.
CREATE TABLE dnc_removed (
    list text NOT NULL,
    number bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (list, number)
);
CREATE INDEX dnc_removed_seq ON dnc_removed (seq, number);
CREATE TABLE dnc_lists (
    name text PRIMARY KEY,
    version bigint NOT NULL
);
-- The position of the last change; writers lock this row, so changes commit in order.
CREATE TABLE dnc_state (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);
INSERT INTO dnc_state (id, seq) VALUES (1, 0);
CREATE TABLE dnc_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign text NOT NULL,
    attempt bigint NOT NULL,        -- 0: no attempt (rescheduled)
    lead_id bigint NOT NULL,
    number text NOT NULL,           -- E.164
    at bigint NOT NULL,
    timezone text NOT NULL,
    local_time text NOT NULL,
    region text NOT NULL,
    rules text NOT NULL,
    lists text NOT NULL,            -- list@version; ...
    decision text NOT NULL
);
CREATE INDEX dnc_audit_campaign ON dnc_audit (campaign, at);
CREATE INDEX dnc_audit_at ON dnc_audit (at);
";

/// A call transferred to another account holds the line admitted for it before it
/// arrived (a spill): its record names that lease's key.
const CALL_LEASE_KEY: &str = "ALTER TABLE calls ADD COLUMN lease_key text;";

const JOURNAL: &str = "
-- The live state of each budget domain's ledger, as acknowledged: what an empty Redis is
-- given back. Times are Unix ms; pools are JSON [[pool, units], ...] by name.
CREATE TABLE journal_leases (
    domain text NOT NULL,
    id bigint NOT NULL,
    key text,
    class text NOT NULL,
    flow text,
    pools text NOT NULL,
    granted_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    ttl_ms bigint NOT NULL,
    meta text,
    owner text,
    -- false: only a renewal is known so far (its commit landed before the grant's, which
    -- came through another node); the grant fills the row in, keeping the later expiry.
    granted boolean NOT NULL DEFAULT true,
    PRIMARY KEY (domain, id)
);
CREATE INDEX journal_leases_expiry ON journal_leases (domain, expires_at);
-- Leases released or expired, for a while: a grant whose commit lands after its own
-- release (the release came through another node) is not brought back to life.
CREATE TABLE journal_gone (
    domain text NOT NULL,
    id bigint NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (domain, id)
);
CREATE INDEX journal_gone_at ON journal_gone (at);
CREATE TABLE journal_tickets (
    domain text NOT NULL,
    id bigint NOT NULL,
    key text,
    class text NOT NULL,
    flow text,
    pools text NOT NULL,
    seq bigint NOT NULL,
    enqueued_at bigint NOT NULL,
    deadline bigint NOT NULL,
    ttl_ms bigint NOT NULL,
    meta text,
    owner text,
    PRIMARY KEY (domain, id)
);
-- How tickets ended, kept for the retention time (a waiter who asks again learns it).
CREATE TABLE journal_ended_tickets (
    domain text NOT NULL,
    id bigint NOT NULL,
    outcome text NOT NULL,
    lease bigint,
    flow text,
    at bigint NOT NULL,
    PRIMARY KEY (domain, id)
);
CREATE INDEX journal_ended_tickets_at ON journal_ended_tickets (domain, at);
-- A runtime limit change, with the limit the configuration had when it was made.
CREATE TABLE journal_pool_limits (
    domain text NOT NULL,
    pool text NOT NULL,
    limit_units bigint NOT NULL,
    config_limit bigint NOT NULL,
    PRIMARY KEY (domain, pool)
);
CREATE TABLE journal_pool_holds (
    domain text NOT NULL,
    pool text NOT NULL,
    mean_hold_ms bigint NOT NULL,
    PRIMARY KEY (domain, pool)
);
-- Ids and arrival numbers above everything journaled, per node (nodes never wait on each
-- other's row): a ledger rebuilt from the journal takes the highest and never hands one
-- out twice.
CREATE TABLE journal_counters (
    domain text NOT NULL,
    node text NOT NULL,
    next_id bigint NOT NULL,
    next_seq bigint NOT NULL,
    PRIMARY KEY (domain, node)
);
";

const RECORDS: &str = "
-- Callbacks booked by overflow steps; one per provider call.
CREATE TABLE callbacks (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    provider text NOT NULL,
    call_id text NOT NULL,
    number text NOT NULL,
    flow text NOT NULL,
    booked_at bigint NOT NULL,
    due_at bigint NOT NULL,
    state text NOT NULL DEFAULT 'booked',
    outcome text,
    updated_at bigint,
    UNIQUE (provider, call_id)
);
CREATE INDEX callbacks_due ON callbacks (state, due_at);
-- What callgate learned about each provider call, merged from every webhook about it.
CREATE TABLE calls (
    provider text NOT NULL,
    call_id text NOT NULL,
    flow text,
    from_number text,
    to_number text,
    outcome text,
    started_at bigint,
    ended_at bigint,
    duration_ms bigint,
    ended_reason text,
    cost double precision,
    recording_url text,
    updated_at bigint NOT NULL,
    assistant text,
    telemetry text,
    PRIMARY KEY (provider, call_id)
);
CREATE INDEX calls_updated ON calls (updated_at);
";

const LEADS: &str = "
CREATE TABLE campaigns (
    name text PRIMARY KEY,
    spec text NOT NULL,
    state text NOT NULL,
    source text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    paused_reason text
);
CREATE TABLE leads (
    id bigint PRIMARY KEY,
    campaign text NOT NULL,
    phone text NOT NULL,
    name text,
    timezone text NOT NULL,
    score double precision NOT NULL DEFAULT 0,
    vars text,
    warm boolean NOT NULL DEFAULT false,
    class text,
    callback_id bigint,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_at bigint NOT NULL DEFAULT 0,
    last_outcome text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    UNIQUE (campaign, phone)
);
CREATE INDEX leads_state ON leads (campaign, state);
-- The dialer's claim: due pending leads in dial order.
CREATE INDEX leads_due ON leads (campaign, warm DESC, score DESC, attempts, id) WHERE state = 'pending';
CREATE TABLE attempts (
    id bigint PRIMARY KEY CHECK (id > 0),
    lead_id bigint NOT NULL,
    campaign text NOT NULL,
    number integer NOT NULL,
    class text NOT NULL,
    provider text NOT NULL,
    lease text,
    call_id text,
    state text NOT NULL,
    outcome text,
    reason text,
    placed_at bigint NOT NULL,
    answered_at bigint,
    ended_at bigint,
    talk_ms bigint,
    cost double precision,
    callback_id bigint
);
CREATE INDEX attempts_lead ON attempts (lead_id, placed_at);
CREATE INDEX attempts_campaign ON attempts (campaign, placed_at);
-- No lead ever has two attempts out, whichever node claimed them: the database refuses.
CREATE UNIQUE INDEX attempts_one_open ON attempts (lead_id) WHERE state <> 'ended';
-- Attempt ids for every node, handed out in blocks (ids of an unused block are skipped).
CREATE SEQUENCE attempt_ids INCREMENT BY 64;
CREATE TABLE taken_callbacks (
    callback_id bigint PRIMARY KEY,
    campaign text NOT NULL,
    lead_id bigint NOT NULL,
    taken_at bigint NOT NULL,
    booked_at bigint,
    outcome text,
    done_at bigint
);
CREATE INDEX taken_callbacks_open ON taken_callbacks (lead_id) WHERE done_at IS NULL;
";

/// Applies the migrations `client`'s database lacks, under [`LOCK`]; the versions it
/// applied.
pub(crate) async fn run(client: &Conn) -> Result<Vec<i32>, Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await.map_err(|e| unavailable("migration lock", e))?;
    let result = apply(client).await;
    // Released with the session too; an error here leaves the lock to the session's end.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await;
    result
}

async fn apply(client: &Conn) -> Result<Vec<i32>, Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS callgate_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| unavailable("creating callgate_migrations", e))?;
    let rows = client
        .query("SELECT version FROM callgate_migrations ORDER BY version", &[])
        .await
        .map_err(|e| unavailable("reading callgate_migrations", e))?;
    let have: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newer) = have.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(
            version = newer,
            known,
            "The database has a migration this build does not know (a newer callgate migrated it); using it as it is"
        );
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !have.contains(&m.version)) {
        let what = format!("migration {} ({})", m.version, m.name);
        let step = async {
            client.batch_execute("BEGIN").await?;
            client.batch_execute(m.sql).await?;
            client
                .execute("INSERT INTO callgate_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name])
                .await?;
            client.batch_execute("COMMIT").await
        };
        if let Err(e) = step.await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(unavailable(&what, e));
        }
        applied.push(m.version);
    }
    Ok(applied)
}
