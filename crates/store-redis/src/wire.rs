//! The script's answers, read back into owned ledger values. The script answers with
//! nested arrays of integers, strings and nils (see `ledger.lua`: `lease_out`,
//! `ticket_out`, the event and outcome tags); anything else is a broken invariant.
//!
//! Plain answers arrive as Redis values; a change's outcome and events, a batch's answers
//! and the event stream's entries arrive as MessagePack, which is read into items
//! ([`crate::msgpack::Item`]) that borrow its strings and keep their lists in one arena per
//! answer. The readers below take either ([`Node`]), so the request paths never build Redis
//! values (one allocation per string and per array) only to drop them.

use crate::msgpack::unpack_all;
use bumpalo::Bump;
use callgate_backend::{CallEnd, Error, Outcome, Repaired, TicketRead, Waiting};
use callgate_core::{
    ClassId, Decision, Event, FlowId, Lease, LeaseId, PoolId, PoolUnits, PoolView, RejectReason, Ticket, TicketId,
    TicketOutcome, TicketStatus,
};
use redis::Value;
use std::sync::Arc;

/// What the readers read: a Redis value, or an item of the script's MessagePack
/// ([`crate::msgpack::Item`]).
pub(crate) trait Node: std::fmt::Debug + Sized {
    fn as_int(&self) -> Option<i64>;
    fn is_nil(&self) -> bool;
    fn as_bytes(&self) -> Option<&[u8]>;
    fn as_items(&self) -> Option<&[Self]>;
}

impl Node for Value {
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    fn as_items(&self) -> Option<&[Self]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

fn bad(what: &str, v: &impl Node) -> Error {
    Error::internal(format!("the ledger script answered {v:?} where {what} was expected"))
}

pub(crate) fn list<'a, N: Node>(v: &'a N, what: &str) -> Result<&'a [N], Error> {
    v.as_items().ok_or_else(|| bad(what, v))
}

/// The `n` items of an array, or an error.
fn items<'a, V: Node, const N: usize>(v: &'a V, what: &str) -> Result<&'a [V; N], Error> {
    list(v, what)?.try_into().map_err(|_| bad(what, v))
}

pub(crate) fn int(v: &impl Node) -> Result<u64, Error> {
    match v.as_int() {
        Some(i) if i >= 0 => Ok(i as u64),
        _ => Err(bad("a count", v)),
    }
}

fn signed(v: &impl Node) -> Result<i64, Error> {
    v.as_int().ok_or_else(|| bad("a number", v))
}

fn small<T: TryFrom<u64>>(v: &impl Node) -> Result<T, Error> {
    T::try_from(int(v)?).map_err(|_| bad("a small number", v))
}

fn flag(v: &impl Node) -> Result<bool, Error> {
    match v.as_int() {
        _ if v.is_nil() => Ok(false),
        Some(1) => Ok(true),
        _ => Err(bad("a flag", v)),
    }
}

/// Text, borrowed.
pub(crate) fn as_str(v: &impl Node) -> Result<&str, Error> {
    let bytes = v.as_bytes().ok_or_else(|| bad("text", v))?;
    std::str::from_utf8(bytes).map_err(|_| bad("UTF-8 text", v))
}

pub(crate) fn text(v: &impl Node) -> Result<String, Error> {
    as_str(v).map(str::to_owned)
}

fn opt_text(v: &impl Node) -> Result<Option<Arc<str>>, Error> {
    if v.is_nil() {
        return Ok(None);
    }
    as_str(v).map(|s| Some(Arc::from(s)))
}

fn opt_flow(v: &impl Node) -> Result<Option<FlowId>, Error> {
    if v.is_nil() {
        return Ok(None);
    }
    Ok(Some(FlowId(small(v)?)))
}

fn pools(v: &impl Node) -> Result<Arc<[PoolUnits]>, Error> {
    let flat = list(v, "pools")?;
    flat.chunks(2)
        .map(|pair| match pair {
            [p, u] => Ok(PoolUnits { pool: PoolId(small(p)?), units: small(u)? }),
            _ => Err(bad("pool and units", v)),
        })
        .collect()
}

pub(crate) fn lease(v: &impl Node) -> Result<Lease, Error> {
    let [id, key, class, flow, ps, granted, expires, ttl, meta, owner] = items(v, "a lease")?;
    Ok(Lease {
        id: LeaseId(int(id)?),
        key: opt_text(key)?,
        class: ClassId(small(class)?),
        flow: opt_flow(flow)?,
        pools: pools(ps)?,
        granted_at: int(granted)?,
        expires_at: int(expires)?,
        ttl_ms: int(ttl)?,
        meta: opt_text(meta)?,
        owner: opt_text(owner)?,
    })
}

pub(crate) fn opt_lease(v: &impl Node) -> Result<Option<Lease>, Error> {
    if v.is_nil() {
        return Ok(None);
    }
    lease(v).map(Some)
}

pub(crate) fn ticket(v: &impl Node) -> Result<Ticket, Error> {
    let [id, key, class, flow, ps, seq, enqueued, deadline, ttl, meta, owner] = items(v, "a ticket")?;
    Ok(Ticket {
        id: TicketId(int(id)?),
        key: opt_text(key)?,
        class: ClassId(small(class)?),
        flow: opt_flow(flow)?,
        pools: pools(ps)?,
        seq: int(seq)?,
        enqueued_at: int(enqueued)?,
        deadline: int(deadline)?,
        ttl_ms: int(ttl)?,
        meta: opt_text(meta)?,
        owner: opt_text(owner)?,
    })
}

fn ticket_outcome(v: &impl Node) -> Result<TicketOutcome, Error> {
    let [tag, lease] = items(v, "a ticket outcome")?;
    Ok(match as_str(tag)? {
        "g" => TicketOutcome::Granted(LeaseId(int(lease)?)),
        "c" => TicketOutcome::Cancelled,
        "t" => TicketOutcome::TimedOut,
        "n" => TicketOutcome::NeverFits,
        _ => return Err(bad("a ticket outcome", v)),
    })
}

fn tag_outcome(tag: &impl Node) -> Result<TicketOutcome, Error> {
    match as_str(tag)? {
        "c" => Ok(TicketOutcome::Cancelled),
        "t" => Ok(TicketOutcome::TimedOut),
        "n" => Ok(TicketOutcome::NeverFits),
        _ => Err(bad("how a ticket ended", tag)),
    }
}

fn reason(v: &impl Node) -> Result<RejectReason, Error> {
    match as_str(v)? {
        "c" => Ok(RejectReason::Capacity),
        "q" => Ok(RejectReason::QueueFull),
        "n" => Ok(RejectReason::NeverFits),
        _ => Err(bad("a reject reason", v)),
    }
}

pub(crate) fn pool_view(v: &impl Node) -> Result<PoolView, Error> {
    let [id, name, limit, cap, used, by_class, reserve, waiting, hold] = items(v, "a pool")?;
    let reserve = list(reserve, "reserves")?
        .chunks(2)
        .map(|pair| match pair {
            [c, u] => Ok((ClassId(small(c)?), small(u)?)),
            _ => Err(bad("class and units", reserve)),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(PoolView {
        id: PoolId(small(id)?),
        name: Arc::from(as_str(name)?),
        limit: small(limit)?,
        // The cap may sit below what is used, never below zero.
        cap: small(cap)?,
        used: int(used)?,
        used_by_class: list(by_class, "units by class")?.iter().map(int).collect::<Result<_, _>>()?,
        reserve,
        waiting: small(waiting)?,
        mean_hold_ms: int(hold)?,
    })
}

pub(crate) fn ticket_read(v: &impl Node) -> Result<Option<TicketRead>, Error> {
    if v.is_nil() {
        return Ok(None);
    }
    let [t, status] = items(v, "a ticket read")?;
    let ticket = if t.is_nil() { None } else { Some(ticket(t)?) };
    let st = list(status, "a ticket status")?;
    let status = match st {
        [tag, position, eta, deadline] if as_str(tag)? == "w" => {
            TicketStatus::Waiting { position: small(position)?, eta_ms: int(eta)?, deadline: int(deadline)? }
        }
        [tag, outcome, at, flow] if as_str(tag)? == "e" => {
            TicketStatus::Ended { outcome: ticket_outcome(outcome)?, at: int(at)?, flow: opt_flow(flow)? }
        }
        _ => return Err(bad("a ticket status", status)),
    };
    Ok(Some(TicketRead { ticket, status }))
}

pub(crate) fn waiting(v: &impl Node) -> Result<Waiting, Error> {
    let [t, position, eta] = items(v, "a waiting ticket")?;
    Ok(Waiting { ticket: ticket(t)?, position: small(position)?, eta_ms: int(eta)? })
}

/// One event.
pub(crate) fn event(v: &impl Node) -> Result<Event, Error> {
    let e = list(v, "an event")?;
    let Some((tag, rest)) = e.split_first() else { return Err(bad("an event", v)) };
    Ok(match (as_str(tag)?, rest) {
        ("G", [l, from]) => Event::Granted {
            lease: lease(l)?,
            from_ticket: if from.is_nil() {
                None
            } else {
                let [t, waited] = items(from, "a ticket and its wait")?;
                Some((TicketId(int(t)?), int(waited)?))
            },
        },
        ("Q", [t, position]) => Event::Queued { ticket: ticket(t)?, position: small(position)? },
        ("J", [class, ps, flow, key, why, at]) => Event::Rejected {
            class: ClassId(small(class)?),
            pools: pools(ps)?,
            flow: opt_flow(flow)?,
            key: opt_text(key)?,
            reason: reason(why)?,
            at: int(at)?,
        },
        ("N", [id, expires, ttl, at]) => {
            Event::Renewed { lease: LeaseId(int(id)?), expires_at: int(expires)?, ttl_ms: int(ttl)?, at: int(at)? }
        }
        ("R", [l, at]) => Event::Released { lease: lease(l)?, at: int(at)? },
        ("X", [l, at]) => Event::Expired { lease: lease(l)?, at: int(at)? },
        ("E", [t, outcome, at]) => {
            Event::TicketEnded { ticket: ticket(t)?, outcome: tag_outcome(outcome)?, at: int(at)? }
        }
        ("C", [pool, limit, cap, at]) => {
            Event::LimitChanged { pool: PoolId(small(pool)?), limit: small(limit)?, cap: small(cap)?, at: int(at)? }
        }
        _ => return Err(bad("an event", v)),
    })
}

/// A command's answer.
pub(crate) fn outcome<N: Node>(v: &N) -> Result<Outcome, Error> {
    let o = list(v, "an outcome")?;
    let Some((tag, rest)) = o.split_first() else { return Err(bad("an outcome", v)) };
    Ok(match (as_str(tag)?, rest) {
        ("G", [id, existing, l]) => Outcome::Decided {
            decision: Decision::Granted { lease: LeaseId(int(id)?), existing: flag(existing)? },
            lease: Some(lease(l)?),
            ticket: None,
        },
        ("Q", [id, position, eta, deadline, existing, t]) => Outcome::Decided {
            decision: Decision::Queued {
                ticket: TicketId(int(id)?),
                position: small(position)?,
                eta_ms: int(eta)?,
                deadline: int(deadline)?,
                existing: flag(existing)?,
            },
            lease: None,
            ticket: Some(ticket(t)?),
        },
        ("J", [why, retry]) => Outcome::Decided {
            decision: Decision::Rejected { reason: reason(why)?, retry_after_ms: int(retry)? },
            lease: None,
            ticket: None,
        },
        ("R", [l]) => Outcome::Released(opt_lease(l)?),
        ("O", [id]) => Outcome::NotOwner(LeaseId(int(id)?)),
        ("N", [l]) => Outcome::Renewed(opt_lease(l)?),
        ("K", [found]) => Outcome::Cancelled(match signed(found)? {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        }),
        ("Z", [end]) => Outcome::CallEnded(call_end(end)?),
        ("P", [released, cancelled, renewed]) => {
            let pairs = |v: &N| -> Result<Vec<(Arc<str>, u64)>, Error> {
                list(v, "keys and ids")?
                    .iter()
                    .map(|pair| {
                        let [k, id] = items(pair, "a key and an id")?;
                        Ok((Arc::from(as_str(k)?), int(id)?))
                    })
                    .collect()
            };
            Outcome::Repaired(Repaired {
                released: pairs(released)?.into_iter().map(|(k, id)| (k, LeaseId(id))).collect(),
                cancelled: pairs(cancelled)?.into_iter().map(|(k, id)| (k, TicketId(id))).collect(),
                renewed: small(renewed)?,
            })
        }
        ("V", [p]) => Outcome::Pool(pool_view(p)?),
        ("D", []) => Outcome::Done,
        _ => return Err(bad("an outcome", v)),
    })
}

fn call_end(v: &impl Node) -> Result<CallEnd, Error> {
    let [tag, id] = items(v, "how a call ended")?;
    Ok(match as_str(tag)? {
        "r" => CallEnd::Released(LeaseId(int(id)?)),
        "c" => CallEnd::Cancelled(TicketId(int(id)?)),
        "n" => CallEnd::Nothing,
        _ => return Err(bad("how a call ended", v)),
    })
}

/// A value the script packed with `cmsgpack.pack` (a bulk string), read into the shape of its
/// plain answers.
pub(crate) fn unpacked(v: &Value) -> Result<Value, Error> {
    let Value::BulkString(bytes) = v else { return Err(bad("packed MessagePack", v)) };
    unpack_all(bytes, &Bump::new()).map(|item| item.to_value())
}

/// A command's events (a list of events).
pub(crate) fn events(v: &impl Node) -> Result<Vec<Event>, Error> {
    list(v, "events")?.iter().map(event).collect()
}

/// One entry of the event stream: `[id, [field, value, …]]` with fields `e` and `n` (and
/// `o`, a tag), or a settle mark with field `s`.
pub(crate) fn committed(v: &Value) -> Result<crate::Committed, Error> {
    let [id, fields] = items(v, "a stream entry")?;
    let (mut packed, mut now, mut tag, mut settles) = (None, None, None, None);
    for pair in list(fields, "stream fields")?.chunks(2) {
        if let [name, value] = pair {
            match (as_str(name)?, value) {
                ("e", Value::BulkString(b)) => packed = Some(b.as_slice()),
                ("n", value) => now = Some(as_str(value)?),
                ("o", value) => tag = crate::Tag::parse(as_str(value)?),
                ("s", value) => settles = crate::Tag::parse(as_str(value)?),
                _ => {}
            }
        }
    }
    let id = text(id)?;
    if let Some(settles) = settles {
        return Ok(crate::Committed { id, now: 0, events: Vec::new(), tag: None, settles: Some(settles) });
    }
    let (Some(packed), Some(now)) = (packed, now) else { return Err(bad("a stream entry with e and n", v)) };
    Ok(crate::Committed {
        id,
        now: now.parse().map_err(|_| Error::internal(format!("the event stream's now: {now}")))?,
        events: events(&unpack_all(packed, &Bump::new())?)?,
        tag,
        settles: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::tests::released;

    #[test]
    fn an_item_reads_as_its_redis_value_does() {
        let (bytes, arena) = (released(), Bump::new());
        let item = unpack_all(&bytes, &arena).unwrap();
        let from_item = event(&item).unwrap();
        assert_eq!(from_item, event(&item.to_value()).unwrap());
        let Event::Released { lease, at } = from_item else { panic!("{from_item:?}") };
        assert_eq!(
            (lease.id, lease.key.as_deref(), lease.owner.as_deref(), at),
            (LeaseId(256), Some("k1"), Some("node-a"), 200)
        );
        assert_eq!((lease.granted_at, lease.expires_at, lease.ttl_ms), (65_536, 70_000, 10_000));
        assert_eq!(&lease.pools[..], &[PoolUnits { pool: PoolId(0), units: 1 }]);
    }

    #[test]
    fn a_value_of_another_shape_is_an_error_that_says_what_it_found() {
        let e = event(&unpack_all(&[0x92, 0xa1, b'Z', 0x01], &Bump::new()).unwrap()).unwrap_err();
        assert!(e.to_string().contains(r#"["Z", 1]"#), "{e}");
    }
}
