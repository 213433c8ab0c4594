//! What the journal reads back: the live leases of a domain, and everything it holds.

use super::rows::parse_pools;
use super::{Restored, StoredEnded, StoredLease, StoredTicket};
use crate::conn::Conn;
use crate::{big, unavailable, unbig};
use callgate_backend::Error;

const LEASE_COLUMNS: &str = "id, key, class, flow, pools, granted_at, expires_at, ttl_ms, meta, owner";

fn lease_row(r: &tokio_postgres::Row) -> Result<StoredLease, Error> {
    Ok(StoredLease {
        id: unbig(r.get(0)),
        key: r.get(1),
        class: r.get(2),
        flow: r.get(3),
        pools: parse_pools(r.get(4))?,
        granted_at: unbig(r.get(5)),
        expires_at: unbig(r.get(6)),
        ttl_ms: unbig(r.get(7)),
        meta: r.get(8),
        owner: r.get(9),
    })
}

pub(super) async fn leases(c: &Conn, domain: &str, now: u64) -> Result<Vec<StoredLease>, Error> {
    let rows = c
        .query(
            &format!("SELECT {LEASE_COLUMNS} FROM journal_leases WHERE domain = $1 AND granted AND expires_at > $2 ORDER BY id"),
            &[&domain, &big(now)],
        )
        .await
        .map_err(|e| unavailable("reading the journal's leases", e))?;
    rows.iter().map(lease_row).collect()
}

pub(super) async fn all(c: &Conn, domain: &str, now: u64) -> Result<Restored, Error> {
    let read = |e| unavailable("reading the journal", e);
    // One snapshot for every table: a release committed between two reads cannot show
    // a lease gone from one and its ticket still waiting in another.
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(read)?;
    let result = async {
        let leases = leases(c, domain, now).await?;
        let tickets = c
            .query(
                "SELECT id, key, class, flow, pools, seq, enqueued_at, deadline, ttl_ms, meta, owner FROM journal_tickets
                 WHERE domain = $1 ORDER BY seq",
                &[&domain],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| {
                Ok(StoredTicket {
                    id: unbig(r.get(0)),
                    key: r.get(1),
                    class: r.get(2),
                    flow: r.get(3),
                    pools: parse_pools(r.get(4))?,
                    seq: unbig(r.get(5)),
                    enqueued_at: unbig(r.get(6)),
                    deadline: unbig(r.get(7)),
                    ttl_ms: unbig(r.get(8)),
                    meta: r.get(9),
                    owner: r.get(10),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let limits = c
            .query("SELECT pool, limit_units, config_limit FROM journal_pool_limits WHERE domain = $1 ORDER BY pool", &[&domain])
            .await
            .map_err(read)?
            .iter()
            .map(|r| (r.get::<_, String>(0), clamp_u32(r.get(1)), clamp_u32(r.get(2))))
            .collect();
        let ended = c
            .query(
                "SELECT id, outcome, lease, flow, at FROM journal_ended_tickets WHERE domain = $1 ORDER BY at, id",
                &[&domain],
            )
            .await
            .map_err(read)?
            .iter()
            .map(|r| StoredEnded {
                id: unbig(r.get(0)),
                outcome: r.get(1),
                lease: r.get::<_, Option<i64>>(2).map(unbig),
                flow: r.get(3),
                at: unbig(r.get(4)),
            })
            .collect::<Vec<_>>();
        // Ids above every id of any row too: a tombstone (a release or expiry journaled
        // for a lease whose grant never was: its command's reply was lost) or a renewal
        // row moves no counter, and a new lease with its id would be refused its row.
        let counters = c
            .query_one(
                "SELECT COALESCE(MAX(next_id), 1), COALESCE(MAX(next_seq), 1),
                    (SELECT COALESCE(MAX(id) + 1, 1) FROM journal_gone WHERE domain = $1),
                    (SELECT COALESCE(MAX(id) + 1, 1) FROM journal_leases WHERE domain = $1)
                 FROM journal_counters WHERE domain = $1",
                &[&domain],
            )
            .await
            .map_err(read)?;
        let mut out = Restored {
            leases,
            tickets,
            next_id: unbig(counters.get(0)).max(unbig(counters.get(2))).max(unbig(counters.get(3))).max(1),
            next_seq: unbig(counters.get(1)).max(1),
            limits,
            ended,
        };
        // Above every id and arrival number in the rows too, whatever the counters say.
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
    .await;
    let _ = c.batch_execute("COMMIT").await;
    result
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
