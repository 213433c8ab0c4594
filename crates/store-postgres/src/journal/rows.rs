//! What the journal writes: the rows of each event (by name, not by index) and the
//! prepared statements that write them, pipelined in one transaction.

use crate::big;
pub use callgate_backend::journaled::{StoredEnded, StoredLease, StoredTicket};
use callgate_backend::{Error, Names};
use callgate_core::{Event, Lease, PoolUnits, Ticket, TicketOutcome};
use std::sync::Arc;
use tokio_postgres::{Client, Statement};

/// Everything the journal holds for a domain: what a ledger rebuilt after a Redis restart
/// starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Live leases (not expired at the `now` asked for), by id.
    pub leases: Vec<StoredLease>,
    /// Waiting tickets, in arrival order.
    pub tickets: Vec<StoredTicket>,
    /// Above every id journaled by any node.
    pub next_id: u64,
    /// Above every arrival number journaled by any node.
    pub next_seq: u64,
    /// Runtime limit changes: `(pool, limit, the configured limit when it was made)`.
    pub limits: Vec<(String, u32, u32)>,
    /// Ended tickets within the retention time, oldest end first.
    pub ended: Vec<StoredEnded>,
}

/// The prepared statements of the journal's writer.
pub(super) struct Stmts {
    pub(super) put_lease: Statement,
    pub(super) renew: Statement,
    pub(super) drop_lease: Statement,
    pub(super) gone: Statement,
    pub(super) put_ticket: Statement,
    pub(super) drop_ticket: Statement,
    pub(super) ended: Statement,
    pub(super) set_limit: Statement,
    pub(super) clear_limit: Statement,
    pub(super) counters: Statement,
    pub(super) prune_ended: Statement,
    pub(super) prune_gone: Statement,
    pub(super) prune_ungranted: Statement,
}

impl Stmts {
    pub(super) async fn prepare(c: &Client) -> Result<Stmts, tokio_postgres::Error> {
        Ok(Stmts {
            // A grant is written by the node that made it, and by any node that showed it
            // before that node's commit (`LedgerBackend::vouch`), in either order: the
            // expiry only ever moves forward (a renewal read by one of them is kept).
            put_lease: c
                .prepare(
                    "INSERT INTO journal_leases (domain, id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner)
                     SELECT $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::bigint,
                            $9::bigint, $10::text, $11::text
                     WHERE NOT EXISTS (SELECT 1 FROM journal_gone WHERE domain = $1 AND id = $2)
                     ON CONFLICT (domain, id) DO UPDATE SET key = excluded.key, class = excluded.class,
                        flow = excluded.flow, pools = excluded.pools, granted_at = excluded.granted_at,
                        meta = excluded.meta, owner = excluded.owner, granted = true,
                        expires_at = GREATEST(journal_leases.expires_at, excluded.expires_at),
                        ttl_ms = CASE WHEN journal_leases.expires_at < excluded.expires_at
                            OR (journal_leases.granted AND journal_leases.expires_at = excluded.expires_at)
                            THEN excluded.ttl_ms ELSE journal_leases.ttl_ms END",
                )
                .await?,
            // A renewal whose grant has not landed yet (another node's commit) leaves a row
            // the grant fills in; both insert the same key, so the later one always sees the
            // earlier, committed or not.
            renew: c
                .prepare(
                    "INSERT INTO journal_leases (domain, id, class, pools, granted_at, expires_at, ttl_ms, granted)
                     SELECT $1::text, $2::bigint, '', '[]', 0, $3::bigint, $4::bigint, false
                     WHERE NOT EXISTS (SELECT 1 FROM journal_gone WHERE domain = $1 AND id = $2)
                     ON CONFLICT (domain, id) DO UPDATE SET expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms",
                )
                .await?,
            drop_lease: c.prepare("DELETE FROM journal_leases WHERE domain = $1 AND id = $2").await?,
            gone: c
                .prepare(
                    "INSERT INTO journal_gone (domain, id, at) VALUES ($1, $2, $3) ON CONFLICT (domain, id) DO NOTHING",
                )
                .await?,
            put_ticket: c
                .prepare(
                    "INSERT INTO journal_tickets (domain, id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms,
                        meta, owner)
                     SELECT $1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::bigint,
                            $9::bigint, $10::bigint, $11::text, $12::text
                     WHERE NOT EXISTS (SELECT 1 FROM journal_ended_tickets WHERE domain = $1 AND id = $2)
                     ON CONFLICT (domain, id) DO NOTHING",
                )
                .await?,
            drop_ticket: c.prepare("DELETE FROM journal_tickets WHERE domain = $1 AND id = $2").await?,
            ended: c
                .prepare(
                    "INSERT INTO journal_ended_tickets (domain, id, outcome, lease, flow, at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (domain, id) DO UPDATE SET outcome = excluded.outcome, lease = excluded.lease,
                        flow = excluded.flow, at = excluded.at",
                )
                .await?,
            set_limit: c
                .prepare(
                    "INSERT INTO journal_pool_limits (domain, pool, limit_units, config_limit) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (domain, pool) DO UPDATE SET limit_units = excluded.limit_units,
                        config_limit = excluded.config_limit",
                )
                .await?,
            clear_limit: c.prepare("DELETE FROM journal_pool_limits WHERE domain = $1 AND pool = $2").await?,
            counters: c
                .prepare(
                    "INSERT INTO journal_counters (domain, node, next_id, next_seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (domain, node) DO UPDATE SET
                        next_id = GREATEST(journal_counters.next_id, excluded.next_id),
                        next_seq = GREATEST(journal_counters.next_seq, excluded.next_seq)",
                )
                .await?,
            prune_ended: c.prepare("DELETE FROM journal_ended_tickets WHERE domain = $1 AND at < $2").await?,
            prune_gone: c.prepare("DELETE FROM journal_gone WHERE domain = $1 AND at < $2").await?,
            prune_ungranted: c
                .prepare("DELETE FROM journal_leases WHERE domain = $1 AND NOT granted AND expires_at < $2")
                .await?,
        })
    }
}

/// One row write, with owned values (the pipelined statements borrow them).
pub(super) enum RowOp {
    PutLease(StoredLease),
    Renew { id: i64, expires_at: i64, ttl_ms: i64 },
    Gone { id: i64, at: i64 },
    PutTicket(StoredTicket),
    Ended(StoredEnded),
    Limit { pool: String, limit: i64, config_limit: i64 },
    ClearLimit { pool: String },
}

pub(super) type Write<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// A row as its statements' parameters.
struct LeaseParams {
    id: i64,
    pools: String,
    granted_at: i64,
    expires_at: i64,
    ttl_ms: i64,
}

impl RowOp {
    pub(super) fn execute<'a>(&'a self, c: &'a Client, st: &'a Stmts, domain: &'a str) -> Write<'a> {
        match self {
            RowOp::PutLease(l) => Box::pin(async move {
                let p = LeaseParams {
                    id: big(l.id),
                    pools: pools_json(&l.pools),
                    granted_at: big(l.granted_at),
                    expires_at: big(l.expires_at),
                    ttl_ms: big(l.ttl_ms),
                };
                c.execute(
                    &st.put_lease,
                    &[
                        &domain,
                        &p.id,
                        &l.key,
                        &l.class,
                        &l.flow,
                        &p.pools,
                        &p.granted_at,
                        &p.expires_at,
                        &p.ttl_ms,
                        &l.meta,
                        &l.owner,
                    ],
                )
                .await
            }),
            RowOp::Renew { id, expires_at, ttl_ms } => {
                Box::pin(async move { c.execute(&st.renew, &[&domain, id, expires_at, ttl_ms]).await })
            }
            RowOp::Gone { id, at } => Box::pin(async move {
                // Both sent before either answer is awaited: still one round trip.
                let (a, b) = futures_util::future::join(
                    c.execute(&st.drop_lease, &[&domain, id]),
                    c.execute(&st.gone, &[&domain, id, at]),
                )
                .await;
                Ok(a? + b?)
            }),
            RowOp::PutTicket(t) => Box::pin(async move {
                let (id, pools, seq, enq, deadline, ttl) =
                    (big(t.id), pools_json(&t.pools), big(t.seq), big(t.enqueued_at), big(t.deadline), big(t.ttl_ms));
                c.execute(
                    &st.put_ticket,
                    &[&domain, &id, &t.key, &t.class, &t.flow, &pools, &seq, &enq, &deadline, &ttl, &t.meta, &t.owner],
                )
                .await
            }),
            RowOp::Ended(e) => Box::pin(async move {
                let (id, lease, at) = (big(e.id), e.lease.map(big), big(e.at));
                let (a, b) = futures_util::future::join(
                    c.execute(&st.drop_ticket, &[&domain, &id]),
                    c.execute(&st.ended, &[&domain, &id, &e.outcome, &lease, &e.flow, &at]),
                )
                .await;
                Ok(a? + b?)
            }),
            RowOp::Limit { pool, limit, config_limit } => {
                Box::pin(async move { c.execute(&st.set_limit, &[&domain, pool, limit, config_limit]).await })
            }
            RowOp::ClearLimit { pool } => Box::pin(async move { c.execute(&st.clear_limit, &[&domain, pool]).await }),
        }
    }
}

fn pools_json(pools: &[(String, u32)]) -> String {
    serde_json::to_string(pools).unwrap_or_else(|_| "[]".into())
}

pub(super) fn parse_pools(text: &str) -> Result<Vec<(String, u32)>, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal(format!("postgres: a journal row has bad pools `{text}`: {e}")))
}

fn name<'n>(list: &'n [Arc<str>], index: usize, what: &str) -> Result<&'n str, Error> {
    list.get(index).map(|n| &**n).ok_or_else(|| {
        Error::internal(format!("journal: an event names {what} {index}, which the ledger's names lack"))
    })
}

fn named_pools(names: &Names, pools: &[PoolUnits]) -> Result<Vec<(String, u32)>, Error> {
    pools.iter().map(|p| Ok((name(&names.pools, p.pool.index(), "pool")?.to_owned(), p.units))).collect()
}

fn flow_name(names: &Names, flow: Option<callgate_core::FlowId>) -> Option<String> {
    flow.and_then(|f| names.flows.get(f.index())).map(|f| f.to_string())
}

fn stored_lease(names: &Names, l: &Lease) -> Result<StoredLease, Error> {
    Ok(StoredLease {
        id: l.id.0,
        key: l.key.as_deref().map(str::to_owned),
        class: name(&names.classes, l.class.index(), "class")?.to_owned(),
        flow: flow_name(names, l.flow),
        pools: named_pools(names, &l.pools)?,
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl_ms: l.ttl_ms,
        meta: l.meta.as_deref().map(str::to_owned),
        owner: l.owner.as_deref().map(str::to_owned),
    })
}

fn stored_ticket(names: &Names, t: &Ticket) -> Result<StoredTicket, Error> {
    Ok(StoredTicket {
        id: t.id.0,
        key: t.key.as_deref().map(str::to_owned),
        class: name(&names.classes, t.class.index(), "class")?.to_owned(),
        flow: flow_name(names, t.flow),
        pools: named_pools(names, &t.pools)?,
        seq: t.seq,
        enqueued_at: t.enqueued_at,
        deadline: t.deadline,
        ttl_ms: t.ttl_ms,
        meta: t.meta.as_deref().map(str::to_owned),
        owner: t.owner.as_deref().map(str::to_owned),
    })
}

fn outcome_name(o: TicketOutcome) -> (&'static str, Option<u64>) {
    let (name, lease) = o.parts();
    (name, lease.map(|l| l.0))
}

/// The row writes of one event, in order; the id and arrival counters it moves.
pub(super) fn row_ops(
    names: &Names,
    e: &Event,
    out: &mut Vec<RowOp>,
    next_id: &mut u64,
    next_seq: &mut u64,
) -> Result<(), Error> {
    match e {
        Event::Granted { lease, from_ticket } => {
            if let Some((t, _)) = from_ticket {
                let (outcome, lease_id) = outcome_name(TicketOutcome::Granted(lease.id));
                out.push(RowOp::Ended(StoredEnded {
                    id: t.0,
                    outcome: outcome.into(),
                    lease: lease_id,
                    flow: flow_name(names, lease.flow),
                    at: lease.granted_at,
                }));
                *next_id = (*next_id).max(t.0 + 1);
            }
            *next_id = (*next_id).max(lease.id.0 + 1);
            out.push(RowOp::PutLease(stored_lease(names, lease)?));
        }
        Event::Queued { ticket, .. } => {
            *next_id = (*next_id).max(ticket.id.0 + 1);
            *next_seq = (*next_seq).max(ticket.seq + 1);
            out.push(RowOp::PutTicket(stored_ticket(names, ticket)?));
        }
        Event::Renewed { lease, expires_at, ttl_ms, .. } => {
            out.push(RowOp::Renew { id: big(lease.0), expires_at: big(*expires_at), ttl_ms: big(*ttl_ms) })
        }
        Event::Released { lease, at } | Event::Expired { lease, at } => {
            out.push(RowOp::Gone { id: big(lease.id.0), at: big(*at) })
        }
        Event::TicketEnded { ticket, outcome, at } => {
            let (outcome, lease) = outcome_name(*outcome);
            out.push(RowOp::Ended(StoredEnded {
                id: ticket.id.0,
                outcome: outcome.into(),
                lease,
                flow: flow_name(names, ticket.flow),
                at: *at,
            }));
        }
        Event::LimitChanged { pool, limit, .. } => {
            let name = name(&names.pools, pool.index(), "pool")?.to_owned();
            let config_limit = names.config_limits.get(pool.index()).copied().unwrap_or(*limit);
            if *limit == config_limit {
                out.push(RowOp::ClearLimit { pool: name });
            } else {
                out.push(RowOp::Limit { pool: name, limit: i64::from(*limit), config_limit: i64::from(config_limit) });
            }
        }
        Event::Rejected { .. } => {}
    }
    Ok(())
}
