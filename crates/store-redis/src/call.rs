//! How the ledger talks to Redis: connections (a small pool of synchronous ones, and one
//! multiplexed tokio connection that pipelines the governor's commands), loading the
//! function library, and reading a script's answer into the backend's health and errors.

use crate::batch::Runner;
use crate::{wire, RedisLedger, Tag, Time, SCRIPT};
use callgate_backend::{Command, Error, Executed};
use redis::Value;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// A connection whose every reply must come within [`REPLY_TIMEOUT`].
pub(crate) fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(TIMEOUT)?;
    c.set_read_timeout(Some(REPLY_TIMEOUT))?;
    c.set_write_timeout(Some(REPLY_TIMEOUT))?;
    Ok(c)
}

/// `FUNCTION LOAD` of the library named `name`.
pub(crate) fn library_load(name: &str) -> redis::Cmd {
    let source = format!("#!lua name={name}\n{}", SCRIPT.replace("__CALLGATE_FUNCTION__", name));
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD").arg(source);
    load
}

/// Loads the library unless Redis has it already.
pub(crate) fn load_library(conn: &mut redis::Connection, name: &str) -> redis::RedisResult<()> {
    match library_load(name).query::<String>(conn) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Redis does not have the library (it restarted empty, or its functions were flushed).
pub(crate) fn function_missing(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// The connection cannot be used again.
pub(crate) fn broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// How long a connection attempt may take before Redis counts as unreachable.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// How long one reply may take. A command runs in tens of microseconds, but a settle or a
/// reload walks everything waiting; Redis itself answers `BUSY` to others after 5 s of one
/// script. A command whose reply timed out may still have run (as one whose connection
/// broke after it was sent): a tagged one is answered as Redis ran it, if it did
/// ([`RedisLedger::or_kept`]); otherwise its answer is `unavailable`, and a retry with the
/// same idempotency key finds what it did.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many idle connections are kept for the next commands: as many as the
/// governor's threads may run commands at once (more are opened when needed, and closed
/// after).
pub(crate) const IDLE_CONNECTIONS: usize = 64;

pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::unavailable(format!("Redis: {e}")).with_source(e)
}

impl RedisLedger {
    pub(crate) fn idle(&self) -> MutexGuard<'_, Vec<redis::Connection>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn with_library(&self) -> redis::RedisResult<()> {
        let mut conn = match self.idle().pop() {
            Some(c) => c,
            None => connect(&self.client)?,
        };
        load_library(&mut conn, &self.function)?;
        self.idle().push(conn);
        Ok(())
    }

    /// Runs `cmd` on a connection of the pool (a new one when none is idle); a connection
    /// that failed is dropped, not put back. Off tokio's workers ([`callgate_backend::blocking`]).
    pub(crate) fn with_conn<T>(&self, cmd: &redis::Cmd) -> Result<T, redis::RedisError>
    where
        T: redis::FromRedisValue,
    {
        self.on_conn(|conn| cmd.query(conn))
    }

    /// Runs `query` on a connection of the pool, as [`RedisLedger::with_conn`].
    pub(crate) fn on_conn<T>(
        &self,
        query: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        callgate_backend::blocking(|| {
            let taken = self.idle().pop();
            let mut conn = match taken {
                Some(c) => c,
                None => connect(&self.client)?,
            };
            let out = query(&mut conn);
            if !out.as_ref().is_err_and(broken) {
                let mut idle = self.idle();
                if idle.len() < IDLE_CONNECTIONS {
                    idle.push(conn);
                }
            }
            out
        })
    }

    /// Runs the script with command `name` at "now" and `args`; the answer is `["ok",
    /// outcome, events, now]` (a change's outcome and events arrive packed, `"okp"`, and are
    /// read into the same shape) or `["err", code, message]`.
    pub(crate) fn call(&self, name: &str, args: &[String]) -> Result<Vec<Value>, Error> {
        self.call_tagged(name, args, None)
    }

    /// [`RedisLedger::call`] whose stream entry, if it makes one, carries `tag`, and whose
    /// lost reply is read back ([`RedisLedger::or_kept`]).
    pub(crate) fn call_tagged(&self, name: &str, args: &[String], tag: Option<&Tag>) -> Result<Vec<Value>, Error> {
        self.answer(self.or_kept(self.query_loaded(&self.fcall_tagged(name, args, tag)), tag))
    }

    /// Runs the function call `fcall` on a connection of the pool; when Redis has lost the
    /// library (it restarted empty, or its functions were flushed), loads it and tries
    /// once more.
    pub(crate) fn query_loaded(&self, fcall: &redis::Cmd) -> redis::RedisResult<Value> {
        let answer = self.with_conn(fcall);
        if answer.as_ref().is_err_and(function_missing) {
            return self.with_library().and_then(|_| self.with_conn(fcall));
        }
        answer
    }

    /// `answer` to a call tagged `tag`; if its connection broke or timed out after the call
    /// was sent (Redis may have run it), the answer Redis kept for it (`P:o:<origin>`, see
    /// `ledger.lua`, `kept`), asked on another connection. When Redis has not run it (it
    /// kept an older answer: a node's tagged calls run one at a time), Redis gives it up in
    /// the same step (should it still come, it is refused), and `answer` stays as it was; as
    /// it does when Redis cannot be asked.
    pub(crate) fn or_kept(&self, answer: redis::RedisResult<Value>, tag: Option<&Tag>) -> redis::RedisResult<Value> {
        let (Err(e), Some(tag)) = (&answer, tag) else { return answer };
        if !broken(e) {
            return answer;
        }
        let ask = self.fcall("kept", &[tag.to_string()]);
        // Twice: the first try may take a pooled connection that broke with the call's.
        for _ in 0..2 {
            match self.with_conn::<Value>(&ask) {
                Ok(reply) => return kept_reply(&reply, e, tag).map_or(answer, Ok),
                Err(_) => continue,
            }
        }
        answer
    }

    /// [`RedisLedger::call`] on the shared multiplexed connection: the caller's thread is
    /// not held while Redis works, and every caller's command is pipelined on one socket
    /// (as many in flight as callers wait), where [`RedisLedger::call`] takes a connection
    /// of its own for the round trip.
    pub(crate) async fn call_async(&self, name: &str, args: &[String]) -> Result<Vec<Value>, Error> {
        let fcall = self.fcall(name, args);
        let answer = match self.multiplexed().await {
            Ok(mut conn) => query_loaded_async(&mut conn, &self.function, &fcall).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &answer {
            self.forget_if_broken(e);
        }
        self.answer(answer)
    }

    /// [`RedisLedger::call_async`] gathered into batches (see [`crate::batch`]): the
    /// request paths' commands.
    pub(crate) async fn call_batched(
        &self,
        cmd: &Command,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<Executed, Error> {
        let (slot, reply) = self.batches.submit(crate::batch::strands(cmd), name, args);
        if let Some(slot) = slot {
            match self.multiplexed().await {
                Ok(conn) => {
                    let runner = Runner {
                        batches: self.batches.clone(),
                        slot,
                        conn,
                        aio: self.aio.clone(),
                        client: self.client.clone(),
                        function: self.function.clone(),
                        meta: self.meta.clone(),
                        time: self.time.clone(),
                    };
                    tokio::spawn(runner.run());
                }
                Err(e) => self.batches.fail_all(slot, e),
            }
        }
        let answer = reply.await.map_err(|_| Error::internal("a batch of ledger commands was dropped"))?;
        if let Err(e) = &answer {
            self.forget_if_broken(e);
        }
        self.ran(answer)
    }

    /// The `FCALL` of command `name` at "now" with `args`.
    pub(crate) fn fcall(&self, name: &str, args: &[String]) -> redis::Cmd {
        self.fcall_tagged(name, args, None)
    }

    /// [`RedisLedger::fcall`] whose stream entry, if it makes one, carries `tag`.
    pub(crate) fn fcall_tagged(&self, name: &str, args: &[String], tag: Option<&Tag>) -> redis::Cmd {
        fcall_of(&self.function, &self.meta, name, now_arg(&self.time, tag, true), args)
    }

    /// The multiplexed connection, opened on first use (and again after it broke).
    pub(crate) async fn multiplexed(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        if let Some(c) = self.aio.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let c = self.client.get_multiplexed_async_connection_with_config(&multiplexed_config()).await?;
        *self.aio.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// A command on the multiplexed connection failed with `e`: a connection that broke
    /// is dropped, so the next command opens another.
    pub(crate) fn forget_if_broken(&self, e: &redis::RedisError) {
        if broken(e) {
            *self.aio.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// What the script answered (`["ok", outcome, events, now]` or `["err", code,
    /// message]`), or why Redis did not run it; the backend's health follows.
    pub(crate) fn answer(&self, answer: Result<Value, redis::RedisError>) -> Result<Vec<Value>, Error> {
        self.answer_shared(answer.map_err(Arc::new))
    }

    /// [`RedisLedger::answer`], when Redis's error is shared by a batch's commands.
    pub(crate) fn answer_shared(&self, answer: Result<Value, Arc<redis::RedisError>>) -> Result<Vec<Value>, Error> {
        let answer = match answer {
            Ok(v) => v,
            // Redis ran the script and it failed: a bug, not an outage.
            Err(e) if e.to_string().contains("user_function") => {
                return Err(Error::internal(format!("the ledger script failed: {e}")).with_source(e));
            }
            // Unreachable, loading, read-only, a cluster moving slots: commands fail until
            // it passes.
            Err(e) => {
                self.failed(&e.to_string());
                return Err(unavailable(e));
            }
        };
        let Value::Array(mut parts) = answer else {
            return Err(Error::internal(format!("the ledger script answered {answer:?}")));
        };
        match parts.first().map(wire::text).transpose()?.as_deref() {
            Some("ok") => {
                self.succeeded();
                Ok(parts.split_off(1))
            }
            // A command's outcome and events packed (MessagePack): Redis converts one
            // string where it would walk every nested table of the answer.
            Some("okp") if parts.len() == 4 => {
                let (outcome, events) = (wire::unpacked(&parts[1])?, wire::unpacked(&parts[2])?);
                self.succeeded();
                Ok(vec![outcome, events, parts.swap_remove(3)])
            }
            Some("err") => {
                let code = parts.get(1).map(wire::text).transpose()?.unwrap_or_default();
                let message = parts.get(2).map(wire::text).transpose()?.unwrap_or_default();
                if code == "missing" {
                    // Redis lost the domain's state: nothing commits until it is restored.
                    self.failed(&message);
                } else {
                    self.succeeded();
                }
                Err(script_error(&code, message))
            }
            _ => Err(Error::internal(format!("the ledger script answered {parts:?}"))),
        }
    }
}

/// The answer of the call tagged `tag` in the script's reply to `kept`, when Redis ran it
/// (`e`: why its own reply never came, for the log).
pub(crate) fn kept_reply(reply: &Value, e: &redis::RedisError, tag: &Tag) -> Option<Value> {
    let Value::Array(parts) = reply else { return None };
    let reply = match parts.as_slice() {
        [Value::BulkString(k), _] if k != b"kept" => return None,
        // A batch's, as the script answered it.
        [_, Value::Array(batch)] => Value::Array(batch.clone()),
        // Any other, packed.
        [_, Value::BulkString(packed)] => {
            let arena = bumpalo::Bump::new();
            crate::msgpack::unpack_all(packed, &arena).ok()?.to_value()
        }
        _ => return None,
    };
    tracing::warn!(error = %e, tag = %tag, "A reply from Redis was lost; Redis ran the call, and its answer was read back");
    Some(reply)
}

/// The script's ARGV[2]: "now" at `time` (empty: Redis's clock), then the call's tag if it
/// has one: `|<tag>` for its stream entry and its kept answer (`in_stream`), or `|~<tag>`
/// for its kept answer only (see `ledger.lua`).
pub(crate) fn now_arg(time: &Time, tag: Option<&Tag>, in_stream: bool) -> String {
    let now = time.arg();
    match tag {
        None => now,
        Some(tag) if in_stream => format!("{now}|{tag}"),
        Some(tag) => format!("{now}|~{tag}"),
    }
}

/// `FCALL` of the script's command `name` with "now" (and tag) `now` and `args`.
pub(crate) fn fcall_of(function: &str, meta: &str, name: &str, now: String, args: &[String]) -> redis::Cmd {
    let mut fcall = redis::cmd("FCALL");
    fcall.arg(function).arg(1).arg(meta).arg(name).arg(now).arg(args);
    fcall
}

/// The settings of a multiplexed connection: a connection attempt within [`TIMEOUT`], each
/// reply within [`REPLY_TIMEOUT`].
pub(crate) fn multiplexed_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_connection_timeout(TIMEOUT).set_response_timeout(REPLY_TIMEOUT)
}

/// [`RedisLedger::query_loaded`] on a multiplexed connection: runs `fcall`, and when Redis
/// has lost the library `function`, loads it and tries once more.
pub(crate) async fn query_loaded_async(
    conn: &mut redis::aio::MultiplexedConnection,
    function: &str,
    fcall: &redis::Cmd,
) -> redis::RedisResult<Value> {
    let answer = fcall.query_async(conn).await;
    if !answer.as_ref().is_err_and(function_missing) {
        return answer;
    }
    match library_load(function).query_async::<String>(conn).await {
        Ok(_) => fcall.query_async(conn).await,
        Err(e) if e.to_string().contains("already exists") => fcall.query_async(conn).await,
        Err(e) => Err(e),
    }
}

pub(crate) fn script_error(code: &str, message: String) -> Error {
    use callgate_core::RequestError;
    match code {
        "unknown_flow" => Error::request(RequestError::UnknownFlow),
        "unknown_class" => Error::request(RequestError::UnknownClass),
        "bad_pools" => Error::request(RequestError::BadPools(message)),
        "invalid" => Error::invalid(message),
        "missing" => Error::unavailable(message),
        // A call its node gave up after its reply was lost (ledger.lua, `kept`).
        "unavailable" => Error::unavailable(message),
        // The domain's keys are of a layout this script does not read (see ledger.lua, LAYOUT_HEAD).
        "layout" => Error::unavailable(message),
        "fenced" => Error::conflict("fenced", message),
        _ => Error::internal(format!("{code}: {message}")),
    }
}
