//! The script's answers, read back into owned ledger values. The script answers with
//! nested arrays of integers, strings and nils (see `ledger.lua`: `lease_out`,
//! `ticket_out`, the event and outcome tags); anything else is a broken invariant.

use callgate_backend::{CallEnd, Error, Outcome, Repaired, TicketRead, Waiting};
use callgate_core::{
    ClassId, Decision, Event, FlowId, Lease, LeaseId, PoolId, PoolUnits, PoolView, RejectReason, Ticket, TicketId,
    TicketOutcome, TicketStatus,
};
use redis::Value;
use std::sync::Arc;

fn bad(what: &str, v: &Value) -> Error {
    Error::internal(format!("the ledger script answered {v:?} where {what} was expected"))
}

pub(crate) fn list<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], Error> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(bad(what, other)),
    }
}

/// The `n` items of an array, or an error.
fn items<'a, const N: usize>(v: &'a Value, what: &str) -> Result<&'a [Value; N], Error> {
    list(v, what)?.try_into().map_err(|_| bad(what, v))
}

pub(crate) fn int(v: &Value) -> Result<u64, Error> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(bad("a count", other)),
    }
}

fn signed(v: &Value) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(bad("a number", other)),
    }
}

fn small<T: TryFrom<u64>>(v: &Value) -> Result<T, Error> {
    T::try_from(int(v)?).map_err(|_| bad("a small number", v))
}

fn flag(v: &Value) -> Result<bool, Error> {
    match v {
        Value::Nil => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(bad("a flag", other)),
    }
}

pub(crate) fn text(v: &Value) -> Result<String, Error> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad("UTF-8 text", v)),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(bad("text", other)),
    }
}

fn opt_text(v: &Value) -> Result<Option<Arc<str>>, Error> {
    match v {
        Value::Nil => Ok(None),
        other => text(other).map(|s| Some(Arc::from(s))),
    }
}

fn opt_flow(v: &Value) -> Result<Option<FlowId>, Error> {
    match v {
        Value::Nil => Ok(None),
        other => Ok(Some(FlowId(small(other)?))),
    }
}

fn pools(v: &Value) -> Result<Arc<[PoolUnits]>, Error> {
    let flat = list(v, "pools")?;
    flat.chunks(2)
        .map(|pair| match pair {
            [p, u] => Ok(PoolUnits { pool: PoolId(small(p)?), units: small(u)? }),
            _ => Err(bad("pool and units", v)),
        })
        .collect()
}

pub(crate) fn lease(v: &Value) -> Result<Lease, Error> {
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

pub(crate) fn opt_lease(v: &Value) -> Result<Option<Lease>, Error> {
    match v {
        Value::Nil => Ok(None),
        other => lease(other).map(Some),
    }
}

pub(crate) fn ticket(v: &Value) -> Result<Ticket, Error> {
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

fn ticket_outcome(v: &Value) -> Result<TicketOutcome, Error> {
    let [tag, lease] = items(v, "a ticket outcome")?;
    let tag = text(tag)?;
    let tag = tag.as_str();
    Ok(match tag {
        "g" => TicketOutcome::Granted(LeaseId(int(lease)?)),
        "c" => TicketOutcome::Cancelled,
        "t" => TicketOutcome::TimedOut,
        "n" => TicketOutcome::NeverFits,
        _ => return Err(bad("a ticket outcome", v)),
    })
}

fn tag_outcome(tag: &Value) -> Result<TicketOutcome, Error> {
    match text(tag)?.as_str() {
        "c" => Ok(TicketOutcome::Cancelled),
        "t" => Ok(TicketOutcome::TimedOut),
        "n" => Ok(TicketOutcome::NeverFits),
        _ => Err(bad("how a ticket ended", tag)),
    }
}

fn reason(v: &Value) -> Result<RejectReason, Error> {
    match text(v)?.as_str() {
        "c" => Ok(RejectReason::Capacity),
        "q" => Ok(RejectReason::QueueFull),
        "n" => Ok(RejectReason::NeverFits),
        _ => Err(bad("a reject reason", v)),
    }
}

pub(crate) fn pool_view(v: &Value) -> Result<PoolView, Error> {
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
        name: Arc::from(text(name)?),
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

pub(crate) fn ticket_read(v: &Value) -> Result<Option<TicketRead>, Error> {
    if matches!(v, Value::Nil) {
        return Ok(None);
    }
    let [t, status] = items(v, "a ticket read")?;
    let ticket = match t {
        Value::Nil => None,
        other => Some(ticket(other)?),
    };
    let st = list(status, "a ticket status")?;
    let status = match st {
        [tag, position, eta, deadline] if text(tag)? == "w" => {
            TicketStatus::Waiting { position: small(position)?, eta_ms: int(eta)?, deadline: int(deadline)? }
        }
        [tag, outcome, at, flow] if text(tag)? == "e" => {
            TicketStatus::Ended { outcome: ticket_outcome(outcome)?, at: int(at)?, flow: opt_flow(flow)? }
        }
        _ => return Err(bad("a ticket status", status)),
    };
    Ok(Some(TicketRead { ticket, status }))
}

pub(crate) fn waiting(v: &Value) -> Result<Waiting, Error> {
    let [t, position, eta] = items(v, "a waiting ticket")?;
    Ok(Waiting { ticket: ticket(t)?, position: small(position)?, eta_ms: int(eta)? })
}

/// One event.
pub(crate) fn event(v: &Value) -> Result<Event, Error> {
    let e = list(v, "an event")?;
    let Some((tag, rest)) = e.split_first() else { return Err(bad("an event", v)) };
    Ok(match (text(tag)?.as_str(), rest) {
        ("G", [l, from]) => Event::Granted {
            lease: lease(l)?,
            from_ticket: match from {
                Value::Nil => None,
                other => {
                    let [t, waited] = items(other, "a ticket and its wait")?;
                    Some((TicketId(int(t)?), int(waited)?))
                }
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
pub(crate) fn outcome(v: &Value) -> Result<Outcome, Error> {
    let o = list(v, "an outcome")?;
    let Some((tag, rest)) = o.split_first() else { return Err(bad("an outcome", v)) };
    Ok(match (text(tag)?.as_str(), rest) {
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
            let pairs = |v: &Value| -> Result<Vec<(Arc<str>, u64)>, Error> {
                list(v, "keys and ids")?
                    .iter()
                    .map(|pair| {
                        let [k, id] = items(pair, "a key and an id")?;
                        Ok((Arc::from(text(k)?), int(id)?))
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

fn call_end(v: &Value) -> Result<CallEnd, Error> {
    let [tag, id] = items(v, "how a call ended")?;
    Ok(match text(tag)?.as_str() {
        "r" => CallEnd::Released(LeaseId(int(id)?)),
        "c" => CallEnd::Cancelled(TicketId(int(id)?)),
        "n" => CallEnd::Nothing,
        _ => return Err(bad("how a call ended", v)),
    })
}

/// Nested arrays may go this deep in an event (an event holds a lease, which holds its
/// pools): deeper is not something the script wrote.
const MAX_DEPTH: usize = 8;

/// Decodes the MessagePack the script's `cmsgpack.pack` writes (for a command's outcome and
/// events, and for the event stream: arrays, strings, integers, nil and booleans; no maps)
/// into the shape its plain answers have, so that one reader reads both. A number that is
/// not whole reads as Redis would have returned it from Lua: truncated to an integer.
fn unpack(bytes: &[u8], at: &mut usize, depth: usize) -> Result<Value, Error> {
    let broken = || Error::internal("the ledger script's MessagePack holds something it does not write");
    let mut take = |n: usize| -> Result<&[u8], Error> {
        let end = at.checked_add(n).filter(|e| *e <= bytes.len()).ok_or_else(broken)?;
        let out = &bytes[*at..end];
        *at = end;
        Ok(out)
    };
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let tag = take(1)?[0];
    let (len, kind) = match tag {
        0x00..=0x7f => return Ok(Value::Int(i64::from(tag))),
        0xe0..=0xff => return Ok(Value::Int(i64::from(tag as i8))),
        0xc0 | 0xc2 => return Ok(Value::Nil),
        0xc3 => return Ok(Value::Int(1)),
        0xcc..=0xcf => {
            let n = be(take(1 << (tag - 0xcc))?);
            return i64::try_from(n).map(Value::Int).map_err(|_| broken());
        }
        0xca => {
            let raw = take(4)?;
            let f = f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            return Ok(Value::Int(f as i64));
        }
        0xcb => {
            let f = f64::from_bits(be(take(8)?));
            return Ok(Value::Int(f as i64));
        }
        0xd0..=0xd3 => {
            let width = 1usize << (tag - 0xd0);
            let raw = be(take(width)?);
            let shift = 64 - 8 * width as u32;
            return Ok(Value::Int(((raw << shift) as i64) >> shift));
        }
        0x90..=0x9f => (usize::from(tag & 0x0f), 'a'),
        0xdc => (be(take(2)?) as usize, 'a'),
        0xdd => (be(take(4)?) as usize, 'a'),
        0xa0..=0xbf => (usize::from(tag & 0x1f), 's'),
        0xd9 | 0xc4 => (be(take(1)?) as usize, 's'),
        0xda | 0xc5 => (be(take(2)?) as usize, 's'),
        0xdb | 0xc6 => (be(take(4)?) as usize, 's'),
        _ => return Err(broken()),
    };
    if kind == 's' {
        return Ok(Value::BulkString(take(len)?.to_vec()));
    }
    if depth >= MAX_DEPTH || len > bytes.len() {
        return Err(broken());
    }
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        items.push(unpack(bytes, at, depth + 1)?);
    }
    Ok(Value::Array(items))
}

/// A value the script packed with `cmsgpack.pack` (a bulk string), read into the shape of its
/// plain answers.
pub(crate) fn unpacked(v: &Value) -> Result<Value, Error> {
    let Value::BulkString(bytes) = v else { return Err(bad("packed MessagePack", v)) };
    let mut at = 0;
    let out = unpack(bytes, &mut at, 0)?;
    if at != bytes.len() {
        return Err(bad("one packed value", v));
    }
    Ok(out)
}

/// One entry of the event stream: `[id, [field, value, …]]` with fields `e` and `n`.
pub(crate) fn committed(v: &Value) -> Result<crate::Committed, Error> {
    let [id, fields] = items(v, "a stream entry")?;
    let (mut events, mut now) = (None, None);
    for pair in list(fields, "stream fields")?.chunks(2) {
        if let [name, value] = pair {
            match (text(name)?.as_str(), value) {
                ("e", Value::BulkString(b)) => events = Some(b.as_slice()),
                ("n", value) => now = Some(text(value)?),
                _ => {}
            }
        }
    }
    let (Some(events), Some(now)) = (events, now) else { return Err(bad("a stream entry with e and n", v)) };
    let mut at = 0;
    let events = unpack(events, &mut at, 0)?;
    let events = list(&events, "events")?.iter().map(event).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::Committed {
        id: text(id)?,
        now: now.parse().map_err(|_| Error::internal(format!("the event stream's now: {now}")))?,
        events,
    })
}
