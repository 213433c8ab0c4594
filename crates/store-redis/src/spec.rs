//! The ledger's configuration as the Lua script reads it: the spec as JSON, with the
//! tables `callgate_core::Ledger::new` derives (each class's rank in line and the classes
//! that stand ahead of it, each pool's reserves above each class), computed once here
//! instead of in every script call.

use callgate_backend::Error;
use callgate_core::LedgerSpec;
use serde_json::{json, Value};

/// The script keeps times and counts in Lua numbers (doubles): a TTL or a wait above this
/// (about 4,400 years) is refused, so that `now + ttl` stays exact.
pub(crate) const MAX_MS: u64 = 1 << 47;

/// A line's order is `rank * 2^40 + seq` (a sorted-set score, exact below 2^53): at most
/// 2^12 distinct priorities.
const MAX_CLASSES: usize = 1 << 12;

/// Pool units: `[pool, units, pool, units, …]`.
pub(crate) fn flat_pools(pools: &[callgate_core::PoolUnits]) -> Vec<u64> {
    pools.iter().flat_map(|pu| [u64::from(pu.pool.0), u64::from(pu.units)]).collect()
}

/// The spec as the script reads it (`P:s`). Refused when the ledger would refuse it, or
/// when its numbers do not fit the script's arithmetic.
pub(crate) fn spec_json(spec: &LedgerSpec) -> Result<String, Error> {
    spec.validate().map_err(|e| Error::invalid(format!("the ledger's configuration: {e}")))?;
    if spec.classes.len() > MAX_CLASSES {
        return Err(Error::invalid(format!("at most {MAX_CLASSES} classes on Redis")));
    }
    let too_long = |ms: u64, what: &str| -> Result<(), Error> {
        if ms > MAX_MS {
            return Err(Error::invalid(format!("{what} is above {MAX_MS} ms")));
        }
        Ok(())
    };
    too_long(spec.default_lease_ttl_ms, "default_lease_ttl_ms")?;
    too_long(spec.ticket_retention_ms, "ticket_retention_ms")?;
    too_long(spec.default_hold_ms, "default_hold_ms")?;
    let mut priorities: Vec<i32> = spec.classes.iter().map(|c| c.priority).collect();
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    priorities.dedup();
    let classes: Vec<Value> = spec
        .classes
        .iter()
        .map(|c| {
            let rank = priorities.iter().position(|p| *p == c.priority).unwrap_or(0);
            let ahead: Vec<usize> =
                spec.classes.iter().enumerate().filter(|(_, o)| o.priority >= c.priority).map(|(i, _)| i).collect();
            json!({ "name": c.name, "priority": c.priority, "rank": rank, "ahead": ahead })
        })
        .collect();
    let pools: Vec<Value> = spec
        .pools
        .iter()
        .map(|p| {
            let mut reserve = vec![0u64; spec.classes.len()];
            for &(c, u) in &p.reserve {
                reserve[c.index()] += u64::from(u);
            }
            let ra: Vec<u64> = spec
                .classes
                .iter()
                .map(|k| {
                    spec.classes.iter().zip(&reserve).filter(|(c, _)| c.priority > k.priority).map(|(_, u)| *u).sum()
                })
                .collect();
            let res: Vec<u64> =
                reserve.iter().enumerate().filter(|(_, u)| **u > 0).flat_map(|(c, u)| [c as u64, *u]).collect();
            json!({ "name": p.name, "limit": p.limit, "ra": ra, "res": res })
        })
        .collect();
    let mut flows = Vec::with_capacity(spec.flows.len());
    for f in &spec.flows {
        too_long(f.lease_ttl_ms, "a flow's lease_ttl_ms")?;
        let queue = match f.queue {
            Some(q) => {
                too_long(q.max_wait_ms, "a flow's max_wait_ms")?;
                json!({ "max_wait": q.max_wait_ms, "max_len": q.max_len.map_or(-1, i64::from) })
            }
            None => Value::Bool(false),
        };
        flows.push(json!({
            "name": f.name,
            "pools": flat_pools(&f.pools),
            "class": f.class.0,
            "ttl": f.lease_ttl_ms,
            "queue": queue,
        }));
    }
    Ok(json!({
        "classes": classes,
        "pools": pools,
        "flows": flows,
        "default_ttl": spec.default_lease_ttl_ms,
        "retention": spec.ticket_retention_ms,
        "default_hold": spec.default_hold_ms,
        "pools_max_len": spec.pools_max_len.map_or(-1, i64::from),
    })
    .to_string())
}
