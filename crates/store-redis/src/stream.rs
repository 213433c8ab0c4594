//! The domain's event stream (`{cg:<domain>}:events`): every command's events as
//! committed, in order, readable by every node.

use crate::{unavailable, wire, RedisLedger, TIMEOUT};
use callgate_backend::Error;
use redis::Value;
use std::time::Duration;

/// One command's events as committed to the domain's event stream (`{cg:<domain>}:events`),
/// which every node can read: the basis of waking the waiters of one node when another
/// frees capacity. Or a node's settle mark (`settles`, no events).
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The stream entry's id (`<ms>-<n>`): read on after it.
    pub id: String,
    /// The "now" the command ran at (Unix ms; 0 for a settle mark).
    pub now: u64,
    /// Its events, in ledger order.
    pub events: Vec<callgate_core::Event>,
    /// The tag the calling node gave the command ([`RedisLedger::execute_tagged`]), if any.
    pub tag: Option<Tag>,
    /// A settle mark ([`RedisLedger::mark_settled`]): every entry of that node tagged up to
    /// this one's `k` is settled (durable, or lost and being taken back).
    pub settles: Option<Tag>,
}

/// A node's tag for a command's stream entry: which process (`origin`, unique per start
/// of a node) and its how-manieth tagged call (`k`, growing). A node that journals its
/// commands (PostgreSQL) tags them, and once their appends are settled it adds a settle
/// mark to the stream, so the other nodes can hold its entries until then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The node process's origin: letters and digits, at most 32.
    pub origin: String,
    /// The call's number among the origin's tagged calls.
    pub k: u64,
}

impl Tag {
    /// A new origin: 64 random bits (the standard library's randomly seeded hasher over the
    /// process id), in hex. A node process takes one at its start.
    pub fn new_origin() -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    }

    /// A tag as the script stores it (`<origin>.<k>`), read; `None` if it does not parse.
    pub fn parse(text: &str) -> Option<Tag> {
        let (origin, k) = text.rsplit_once('.')?;
        let ok = !origin.is_empty() && origin.len() <= 32 && origin.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then_some(())?;
        Some(Tag { origin: origin.to_owned(), k: k.parse().ok()? })
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.origin, self.k)
    }
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

/// Whether a follower that read up to `read` (a stream id) reads a stream that started
/// again, whose last entry is `last`: `last` comes before `read`. Ids are compared as
/// numbers (`<ms>-<n>`); an id that does not parse says nothing.
pub fn stream_reset(read: &str, last: &str) -> bool {
    matches!((stream_position(read), stream_position(last)), (Some(r), Some(l)) if l < r)
}

/// A stream id (`<ms>-<n>`) as numbers, in the stream's order; `None` if it does not parse.
pub fn stream_position(id: &str) -> Option<(u64, u64)> {
    let (ms, n) = stream_id(id).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, n.parse().ok()?))
}

impl RedisLedger {
    /// Redis could not be reached: recorded in the health (a node that only follows the
    /// stream still says so), answered as unavailable.
    fn unreachable(&self, e: redis::RedisError) -> Error {
        self.failed(&format!("Redis: {e}"));
        unavailable(e)
    }

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
                let c = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.unreachable(e))?;
                c.set_read_timeout(Some(MAX_EVENTS_WAIT + TIMEOUT)).map_err(|e| self.unreachable(e))?;
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
            .map_err(|e| self.unreachable(e))?;
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

/// The id of the one entry `XREVRANGE … COUNT 1` answered (`None`: none).
fn newest_id(entries: &Value) -> Result<Option<String>, Error> {
    match wire::list(entries, "stream entries")?.first() {
        Some(entry) => match wire::list(entry, "a stream entry")? {
            [id, _] => Ok(Some(wire::text(id)?)),
            _ => Err(Error::internal(format!("XREVRANGE answered {entries:?}"))),
        },
        None => Ok(None),
    }
}

impl RedisLedger {
    /// Runs a pipeline on a connection of the pool, as [`RedisLedger::with_conn`].
    fn with_pipe<T>(&self, pipe: &redis::Pipeline) -> Result<T, redis::RedisError>
    where
        T: redis::FromRedisValue,
    {
        self.on_conn(|conn| pipe.query(conn))
    }

    /// The pools and the id of the last entry of the event stream (`None`: the stream is
    /// empty), read in one transaction: a node that counts the events after that id on
    /// top of these pools sees every change exactly once.
    pub fn snapshot(&self) -> Result<(Vec<callgate_core::PoolView>, Option<String>), Error> {
        self.with_library().map_err(unavailable)?;
        let now = self.time.arg();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XREVRANGE")
            .arg(format!("{}:events", self.key_prefix()))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("FCALL")
            .arg(&self.function)
            .arg(1)
            .arg(&self.meta)
            .arg("r_pools")
            .arg(now);
        let (last, pools): (Value, Value) = self.with_pipe(&pipe).map_err(|e| {
            self.failed(&e.to_string());
            unavailable(e)
        })?;
        let last = newest_id(&last)?;
        let parts = wire::list(&pools, "the pools' answer")?;
        match parts {
            [ok, pools, ..] if wire::text(ok)? == "ok" => {
                let pools = wire::list(pools, "pools")?.iter().map(wire::pool_view).collect::<Result<Vec<_>, _>>()?;
                Ok((pools, last))
            }
            [err, _code, message] if wire::text(err)? == "err" => {
                let message = wire::text(message)?;
                self.failed(&message);
                Err(Error::unavailable(message))
            }
            _ => Err(Error::internal(format!("the ledger script answered {pools:?}"))),
        }
    }

    /// Adds `tag`'s settle mark to the domain's stream: every entry of `tag.origin` tagged
    /// up to `tag.k` is settled. On the shared multiplexed connection. The mark also has
    /// the fields of a command's entry, with no events: a node of an earlier version (during
    /// a rolling upgrade) reads it as one that changed nothing.
    pub async fn mark_settled(&self, tag: &Tag) -> Result<(), Error> {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(format!("{}:events", self.key_prefix()))
            .arg("MAXLEN")
            .arg("~")
            .arg(crate::STREAM_LEN)
            .arg("*")
            .arg("e")
            .arg(&[0x90u8][..])
            .arg("n")
            .arg("0")
            .arg("s")
            .arg(tag.to_string());
        let mut conn = self.multiplexed().await.map_err(unavailable)?;
        xadd.query_async::<Value>(&mut conn).await.map(|_| ()).map_err(|e| {
            self.forget_if_broken(&e);
            unavailable(e)
        })
    }

    /// The id of the event stream's last entry (`None`: there is no entry, or no stream).
    /// A follower whose last id is above it reads a stream that started again: a Redis
    /// that restarted empty numbers its entries by its own clock from then on, which may
    /// be behind the ids read before (see [`stream_reset`]).
    pub fn last_event_id(&self) -> Result<Option<String>, Error> {
        let reply: Value =
            self.with_pipe(redis::pipe().add_command(self.last_entry_cmd())).map_err(|e| self.unreachable(e))?;
        match &reply {
            Value::Array(r) => match r.first() {
                Some(entries) => newest_id(entries),
                None => Err(Error::internal(format!("XREVRANGE answered {reply:?}"))),
            },
            other => Err(Error::internal(format!("XREVRANGE answered {other:?}"))),
        }
    }

    /// [`RedisLedger::last_event_id`] on the shared multiplexed connection. A failure is
    /// only answered, not recorded in the health (whose every new failure makes whatever
    /// was read meanwhile count as undone: this asks on behalf of a read).
    pub async fn last_event_id_async(&self) -> Result<Option<String>, Error> {
        let mut conn = self.multiplexed().await.map_err(unavailable)?;
        let reply: Value = self.last_entry_cmd().query_async(&mut conn).await.map_err(|e| {
            self.forget_if_broken(&e);
            unavailable(e)
        })?;
        newest_id(&reply)
    }

    fn last_entry_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(format!("{}:events", self.key_prefix())).arg("+").arg("-").arg("COUNT").arg(1);
        cmd
    }

    /// Asks Redis whether the domain's ledger is there (a read through the script): the
    /// answer is recorded in [`callgate_backend::LedgerBackend::health`] (a node that
    /// receives no requests still notices that Redis went away or lost its state).
    pub fn check(&self) -> Result<(), Error> {
        self.call("r_counts", &[]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::{stream_reset, Tag};

    #[test]
    fn each_start_of_a_node_is_an_origin_of_its_own_that_a_tag_can_carry() {
        let (a, b) = (Tag::new_origin(), Tag::new_origin());
        assert_ne!(a, b, "two starts, two origins");
        let tag = Tag { origin: a, k: 1 };
        assert_eq!(Tag::parse(&tag.to_string()), Some(tag));
    }

    #[test]
    fn a_tag_reads_as_the_script_stores_it_and_nothing_else_reads_as_one() {
        let tag = Tag { origin: "a1b2".into(), k: 42 };
        assert_eq!(Tag::parse(&tag.to_string()), Some(tag));
        for bad in ["", "a1b2", ".5", "a1b2.", "a1b2.x", "a-b.1", &format!("{}.1", "a".repeat(33))] {
            assert_eq!(Tag::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_settle_marks_trim_the_stream_as_the_script_does() {
        assert!(crate::SCRIPT.contains(&format!("local STREAM_LEN = '{}'", crate::STREAM_LEN)));
    }

    #[test]
    fn a_stream_started_again_is_one_whose_last_entry_is_before_the_id_read() {
        assert!(stream_reset("1700000000000-5", "1600000000000-0"));
        assert!(stream_reset("1700000000000-5", "1700000000000-4"));
        // Numbers, not text: "999-0" is before "1000-0".
        assert!(!stream_reset("999-0", "1000-0"));
        assert!(stream_reset("1000-0", "999-0"));
        assert!(!stream_reset("1700000000000-5", "1700000000000-5"), "nothing new is no restart");
        assert!(!stream_reset("0-0", "1-0"));
        assert!(
            !stream_reset("garbage", "1-0") && !stream_reset("5-0", "x-1"),
            "an id that does not parse says nothing"
        );
    }
}
