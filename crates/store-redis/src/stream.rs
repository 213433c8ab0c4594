//! The domain's event stream (`{cg:<domain>}:events`): every command's events as
//! committed, in order, readable by every node.

use crate::{unavailable, wire, RedisLedger, TIMEOUT};
use callgate_backend::Error;
use redis::Value;
use std::time::Duration;

/// One command's events as committed to the domain's event stream (`{cg:<domain>}:events`),
/// which every node can read: the basis of waking the waiters of one node when another
/// frees capacity.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The stream entry's id (`<ms>-<n>`): read on after it.
    pub id: String,
    /// The "now" the command ran at (Unix ms).
    pub now: u64,
    /// Its events, in ledger order.
    pub events: Vec<callgate_core::Event>,
}

/// The most entries one read of the event stream returns.
pub const MAX_EVENTS_READ: usize = 1_000;

/// The longest [`RedisLedger::wait_events`] blocks.
pub const MAX_EVENTS_WAIT: Duration = Duration::from_secs(10);

/// A stream id as the caller gave it, checked (`<ms>-<n>`).
fn stream_id(id: &str) -> Result<&str, Error> {
    let ok = id.split_once('-').is_some_and(|(ms, n)| {
        [ms, n].iter().all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok {
        Ok(id)
    } else {
        Err(Error::invalid(format!("bad event stream id {id:?}: <ms>-<n> expected")))
    }
}

impl RedisLedger {
    /// The committed events after stream entry `after` (`None`: from the oldest the stream
    /// still keeps; it holds about the last 10,000 commands), at most `limit` entries
    /// (bounded by [`MAX_EVENTS_READ`]), oldest first.
    pub fn events_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Committed>, Error> {
        let after = after.map(stream_id).transpose()?.unwrap_or_default().to_owned();
        let limit = limit.clamp(1, MAX_EVENTS_READ);
        let parts = self.call("r_events", &[after, limit.to_string()])?;
        let entries = parts.first().ok_or_else(|| Error::internal("no event entries"))?;
        wire::list(entries, "stream entries")?.iter().map(wire::committed).collect()
    }

    /// The committed events after stream entry `after` (`None`: only those committed from
    /// now on), waiting up to `block` (at most [`MAX_EVENTS_WAIT`]) for the first when there
    /// are none yet (`XREAD BLOCK`); empty when none came. At most `limit` entries (bounded
    /// by [`MAX_EVENTS_READ`]). One caller at a time: a node follows the stream from one
    /// task.
    pub fn wait_events(&self, after: Option<&str>, block: Duration, limit: usize) -> Result<Vec<Committed>, Error> {
        let after = after.map(stream_id).transpose()?.unwrap_or("$");
        let block = block.clamp(Duration::from_millis(1), MAX_EVENTS_WAIT);
        let limit = limit.clamp(1, MAX_EVENTS_READ);
        let mut waiter = self.waiter.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = match waiter.take() {
            Some(c) => c,
            None => {
                let c = self.client.get_connection_with_timeout(TIMEOUT).map_err(unavailable)?;
                c.set_read_timeout(Some(MAX_EVENTS_WAIT + TIMEOUT)).map_err(unavailable)?;
                c
            }
        };
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(limit)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(format!("{}:events", self.key_prefix()))
            .arg(after)
            .query(&mut conn)
            .map_err(unavailable)?;
        *waiter = Some(conn);
        let streams = match &reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams,
            other => return Err(Error::internal(format!("XREAD answered {other:?}"))),
        };
        let mut out = Vec::new();
        for stream in streams {
            match wire::list(stream, "a stream")? {
                [_, entries] => {
                    for e in wire::list(entries, "stream entries")? {
                        out.push(wire::committed(e)?);
                    }
                }
                _ => return Err(Error::internal(format!("XREAD answered {reply:?}"))),
            }
        }
        Ok(out)
    }
}
