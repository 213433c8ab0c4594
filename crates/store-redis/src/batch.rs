//! The request paths' commands, gathered into batches: while a batch is in Redis, the
//! commands that arrive wait in a queue, and the next `FCALL` carries all of them (the
//! script's `batch` command runs them one after another, atomically, each with its own
//! answer and events, as if they had been sent back to back). What every call of the
//! script pays once (reading the clock and the configuration, loading and saving a pool,
//! the stream entry, the reply) is then paid once per batch, and the node sends and reads
//! one command where it sent many. Under light load a batch is one command and nothing
//! waits: a command is sent at once whenever fewer than [`IN_FLIGHT`] batches are in Redis.
//!
//! A batch runs on a task of its own, so a caller that goes away (a client that hung up)
//! cannot strand the others' answers; its command still runs, as one already sent would.
//!
//! A batch that carries an acquire without a key is tagged for its kept answer (`~<tag>`,
//! see `ledger.lua`): that acquire's grant would be stranded, holding its units until
//! its TTL, if its reply were lost (a keyed acquire's retry finds its lease; a release's,
//! renewal's or cancel's retry finds it done). The tasks run in [`IN_FLIGHT`] slots, each
//! an origin of its own (`<origin>b<slot>`) whose calls run one at a time, numbered. When
//! a tagged batch's reply is lost (the connection broke, or the reply timed out, after
//! the call was sent), the task asks Redis on a new connection for the answer it kept: a
//! batch Redis ran is answered as if its reply had come, one it never saw is given up
//! (refused should it still come) and answers unavailable. Other batches cost Redis
//! nothing more (keeping an answer is a `SET` of it and a `GET` per call: about 5 % of
//! the script's work in a batch of 8).

use crate::call::{fcall_of, kept_reply, multiplexed_config, now_arg, query_loaded_async};
use crate::msgpack::{unpack_all, Item};
use crate::wire;
use crate::{Tag, Time};
use callgate_backend::{Command, Error, Executed, Outcome};
use callgate_core::Event;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Whether `cmd` goes in a batch: the request paths' commands (acquire, release, renew,
/// cancel, a call's end), each of which touches only what its request names (the
/// script's `batch` refuses others).
pub fn batched(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Acquire(_)
            | Command::Release { .. }
            | Command::Renew { .. }
            | Command::Cancel(_)
            | Command::EndCall(_)
    )
}

/// The most commands one batch carries (a batch of requests runs in well under a
/// millisecond of Redis; others wait for the next).
pub const MAX_BATCH: usize = 64;

/// How many batches may be in Redis at once: one being run while the next is sent.
pub(crate) const IN_FLIGHT: usize = 2;

/// What a caller gets back: the script's answer to its command, or why Redis did not run
/// the batch (shared by every command in it).
pub(crate) type Reply = Result<Part, Arc<redis::RedisError>>;

/// A command's part of a batch's answer.
#[derive(Debug)]
pub(crate) enum Part {
    /// The command ran (`okd`): its outcome and events, read straight from the batch's
    /// MessagePack, and Redis's time; or why they could not be read.
    Ran(Result<Box<Ran>, Error>),
    /// Any other answer, in the shape of a single call's answer: the command's error
    /// (`["err", code, message, now]`), or the whole batch's answer when it was refused.
    Answer(Value),
}

/// What a command that ran answered.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) outcome: Outcome,
    pub(crate) events: Vec<Event>,
    pub(crate) now: u64,
}

struct Job {
    /// See [`strands`].
    strands: bool,
    name: &'static str,
    args: Vec<String>,
    reply: oneshot::Sender<Reply>,
}

/// Whether what `cmd` does would be stranded if its reply were lost: an acquire without a
/// key (no retry can find its grant).
pub(crate) fn strands(cmd: &Command) -> bool {
    matches!(cmd, Command::Acquire(r) if r.key.is_none())
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// The slots a task runs in now.
    busy: [bool; IN_FLIGHT],
    /// Each slot's last call number (its tags').
    calls: [u64; IN_FLIGHT],
}

/// The queue of commands waiting for a batch, shared with the batches' tasks.
pub(crate) struct Batches {
    queue: Mutex<Queue>,
    /// This ledger's origin in its batches' tags (see the module's docs).
    origin: String,
}

impl Default for Batches {
    fn default() -> Batches {
        Batches { queue: Mutex::default(), origin: Tag::new_origin() }
    }
}

/// What a batch's task needs to run batches (owned: it outlives any one caller).
pub(crate) struct Runner {
    pub(crate) batches: Arc<Batches>,
    /// The slot the task runs in (see [`Batches::submit`]).
    pub(crate) slot: usize,
    pub(crate) conn: MultiplexedConnection,
    /// The ledger's shared connection, dropped when it broke.
    pub(crate) aio: Arc<Mutex<Option<MultiplexedConnection>>>,
    /// For a connection of its own to ask for a kept answer.
    pub(crate) client: redis::Client,
    pub(crate) function: String,
    pub(crate) meta: String,
    pub(crate) time: Time,
}

impl Batches {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues command `name` with `args`; answers the slot of the batch task the caller
    /// must start (when fewer than [`IN_FLIGHT`] are running), and the receiver of its
    /// reply.
    pub(crate) fn submit(
        &self,
        strands: bool,
        name: &'static str,
        args: Vec<String>,
    ) -> (Option<usize>, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let mut q = self.queue();
        q.jobs.push(Job { strands, name, args, reply });
        let slot = q.busy.iter().position(|busy| !busy);
        if let Some(s) = slot {
            q.busy[s] = true;
        }
        (slot, rx)
    }

    /// The task of `slot` stops: every command still queued hears `e` (none was sent).
    pub(crate) fn fail_all(&self, slot: usize, e: redis::RedisError) {
        let jobs = {
            let mut q = self.queue();
            q.busy[slot] = false;
            std::mem::take(&mut q.jobs)
        };
        let e = Arc::new(e);
        for job in jobs {
            let _ = job.reply.send(Err(e.clone()));
        }
    }

    /// The next batch of the task in `slot`, with its tag when it carries a command that
    /// [`strands`]; or `None` (and the slot is free) when nothing waits.
    fn next(&self, slot: usize) -> Option<(Vec<Job>, Option<Tag>)> {
        let mut q = self.queue();
        if q.jobs.is_empty() {
            q.busy[slot] = false;
            return None;
        }
        let n = q.jobs.len().min(MAX_BATCH);
        let jobs: Vec<Job> = q.jobs.drain(..n).collect();
        let tag = jobs.iter().any(|j| j.strands).then(|| {
            q.calls[slot] += 1;
            Tag { origin: format!("{}b{slot}", self.origin), k: q.calls[slot] }
        });
        Some((jobs, tag))
    }
}

impl Runner {
    /// Runs batches until the queue is empty.
    pub(crate) async fn run(mut self) {
        while let Some((jobs, tag)) = self.batches.next(self.slot) {
            let now = now_arg(&self.time, tag.as_ref(), false);
            let fcall = fcall(&self.function, &self.meta, now, jobs.iter().map(|j| (j.name, &j.args[..])));
            let mut answer = query_loaded_async(&mut self.conn, &self.function, &fcall).await;
            let broke = answer.as_ref().is_err_and(crate::call::broken);
            if let (true, Some(tag)) = (broke, &tag) {
                answer = self.or_kept(answer, tag).await;
            }
            deliver(jobs, answer);
            if broke {
                // The connection is gone: the next command opens a new one, and the commands
                // still queued (none was sent) hear unavailable, as on a broken connection.
                *self.aio.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let e = redis::RedisError::from((redis::ErrorKind::IoError, "the connection broke"));
                self.batches.fail_all(self.slot, e);
                return;
            }
        }
    }

    /// `answer` to the batch tagged `tag`, whose reply was lost: the answer Redis kept for
    /// it, asked on a connection of its own, if Redis ran it (see the module's docs).
    async fn or_kept(&self, answer: redis::RedisResult<Value>, tag: &Tag) -> redis::RedisResult<Value> {
        let Err(e) = &answer else { return answer };
        let ask = fcall_of(&self.function, &self.meta, "kept", self.time.arg(), &[tag.to_string()]);
        let Ok(mut conn) = self.client.get_multiplexed_async_connection_with_config(&multiplexed_config()).await else {
            return answer;
        };
        match ask.query_async::<Value>(&mut conn).await {
            Ok(reply) => kept_reply(&reply, e, tag).map_or(answer, Ok),
            Err(_) => answer,
        }
    }
}

/// `FCALL … batch now` and, per command, how many strings follow (its name and its
/// arguments), its name and its arguments.
pub(crate) fn fcall<'a>(
    function: &str,
    meta: &str,
    now: String,
    commands: impl Iterator<Item = (&'a str, &'a [String])>,
) -> redis::Cmd {
    let mut fcall = fcall_of(function, meta, "batch", now, &[]);
    for (name, args) in commands {
        fcall.arg(args.len() + 1).arg(name).arg(args);
    }
    fcall
}

/// Hands each command its part of the batch's answer (see [`split`]).
fn deliver(jobs: Vec<Job>, answer: redis::RedisResult<Value>) {
    let n = jobs.len();
    for (job, reply) in jobs.into_iter().zip(split(answer, n)) {
        let _ = job.reply.send(reply);
    }
}

/// Each of `n` commands' part of a batch's answer: `["okB", now, packed]`, where `packed` is
/// one MessagePack array of a `[tag, a, b]` per command: `okd` with the command's outcome
/// and events, read here without building Redis values first, or `err` with code and message,
/// which becomes `[tag, a, b, now]`, the shape of a single call's answer. Any other answer
/// (the whole batch refused, as when Redis lost the domain's state) is every command's.
pub(crate) fn split(answer: redis::RedisResult<Value>, n: usize) -> Vec<Reply> {
    match answer {
        Ok(Value::Array(parts)) if is_batch(&parts) => match packed(&parts, n) {
            Some(each) => each.into_iter().map(Ok).collect(),
            // Not what the script writes: each command hears the whole answer, which it
            // reports as an internal error.
            None => (0..n).map(|_| Ok(Part::Answer(Value::Array(parts.clone())))).collect(),
        },
        Ok(other) => (0..n).map(|_| Ok(Part::Answer(other.clone()))).collect(),
        Err(e) => {
            let e = Arc::new(e);
            (0..n).map(|_| Err(e.clone())).collect()
        }
    }
}

fn is_batch(parts: &[Value]) -> bool {
    matches!(parts.first(), Some(Value::BulkString(tag)) if tag == b"okB") && parts.len() == 3
}

/// The `n` commands' parts of a batch's packed answer, or `None` when it is not `n`
/// answers of three parts under a time.
fn packed(parts: &[Value], n: usize) -> Option<Vec<Part>> {
    let (Value::BulkString(bytes), Ok(now)) = (&parts[2], wire::int(&parts[1])) else { return None };
    let arena = bumpalo::Bump::new();
    let Ok(Item::List(items)) = unpack_all(bytes, &arena) else { return None };
    if items.len() != n {
        return None;
    }
    items
        .iter()
        .map(|item| match item {
            Item::List(answer) if answer.len() == 3 => Some(match answer {
                [Item::Str(b"okd"), outcome, events] => Part::Ran(ran(outcome, events, now)),
                _ => {
                    let mut answer: Vec<Value> = answer.iter().copied().map(Item::to_value).collect();
                    answer.push(parts[1].clone());
                    Part::Answer(Value::Array(answer))
                }
            }),
            _ => None,
        })
        .collect()
}

fn ran(outcome: &Item<'_>, events: &Item<'_>, now: u64) -> Result<Box<Ran>, Error> {
    Ok(Box::new(Ran { outcome: wire::outcome(outcome)?, events: wire::events(events)?, now }))
}

impl crate::RedisLedger {
    /// Runs the request paths' `cmds` (see [`batched`]; others are run one by one, and
    /// refused in a tagged batch) in one script call, in order, on a connection of this
    /// thread's own (blocking): each command's answer, as [`callgate_backend::LedgerBackend::execute`] would
    /// give it. For a wrapper that must do something in Redis's order after each command
    /// (the PostgreSQL journal), and can hold its order across one call for many commands.
    /// Its stream entry carries `tag`, and a lost reply is read back as for
    /// [`crate::RedisLedger::execute_tagged`].
    pub fn execute_batch(&self, cmds: Vec<Command>, tag: Option<&Tag>) -> Vec<Result<Executed, Error>> {
        let mut out: Vec<Option<Result<Executed, Error>>> = cmds.iter().map(|_| None).collect();
        let mut in_batch = Vec::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            if !batched(&cmd) {
                // A tag is one call's: a command run on its own would need one of its own.
                out[i] = Some(match tag {
                    None => callgate_backend::LedgerBackend::execute(self, cmd),
                    Some(_) => Err(Error::internal("a tagged batch carries only the request paths' commands")),
                });
                continue;
            }
            match self.command_args(&cmd) {
                Ok((name, args)) => in_batch.push((i, name, args)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !in_batch.is_empty() {
            let fcall = fcall(
                &self.function,
                &self.meta,
                now_arg(&self.time, tag, true),
                in_batch.iter().map(|(_, name, args)| (*name, &args[..])),
            );
            let answer = self.or_kept(self.query_loaded(&fcall), tag);
            for ((i, _, _), reply) in in_batch.iter().zip(split(answer, in_batch.len())) {
                out[*i] = Some(self.ran(reply));
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::internal("a batched command had no answer")))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(packed: Vec<u8>) -> redis::RedisResult<Value> {
        Ok(Value::Array(vec![Value::BulkString(b"okB".to_vec()), Value::Int(1_000), Value::BulkString(packed)]))
    }

    /// Two commands: a release that found nothing (`["okd", ["R", nil], []]`) and one the
    /// script refused (`["err", "invalid", "no"]`).
    fn two() -> Vec<u8> {
        let mut out = vec![0x92, 0x93, 0xa3];
        out.extend(b"okd");
        out.extend([0x92, 0xa1, b'R', 0xc0, 0x90, 0x93, 0xa3]);
        out.extend(b"err");
        out.push(0xa7);
        out.extend(b"invalid");
        out.push(0xa2);
        out.extend(b"no");
        out
    }

    #[test]
    fn each_command_gets_its_own_part_of_the_batch() {
        let parts = split(batch(two()), 2);
        let [Ok(Part::Ran(Ok(ran))), Ok(Part::Answer(err))] = &parts[..] else { panic!("{parts:?}") };
        assert!(matches!(ran.outcome, Outcome::Released(None)), "{ran:?}");
        assert!(ran.events.is_empty());
        assert_eq!(ran.now, 1_000);
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(err, &Value::Array(vec![text("err"), text("invalid"), text("no"), Value::Int(1_000)]));
    }

    #[test]
    fn an_answer_that_is_not_the_batch_is_every_commands() {
        // The wrong number of answers.
        for part in split(batch(two()), 3) {
            assert!(matches!(part, Ok(Part::Answer(Value::Array(ref a))) if a.len() == 3), "{part:?}");
        }
        // The domain's state is gone: the script's error is each command's.
        let missing = Value::Array(vec![Value::BulkString(b"err".to_vec()), Value::BulkString(b"missing".to_vec())]);
        for part in split(Ok(missing.clone()), 2) {
            assert!(matches!(part, Ok(Part::Answer(ref v)) if *v == missing), "{part:?}");
        }
        // A command's outcome the node cannot read is that command's internal error.
        let mut bad = two();
        bad[8] = b'?';
        let parts = split(batch(bad), 2);
        assert!(matches!(&parts[0], Ok(Part::Ran(Err(e))) if e.to_string().contains("an outcome")), "{parts:?}");
        assert!(matches!(&parts[1], Ok(Part::Answer(_))), "{parts:?}");
    }
}
