//! The ledger on Redis: a [`LedgerBackend`] whose state lives in Redis, so that several
//! callgate nodes share one budget exactly.
//!
//! Every [`Command`] is one call of one Lua function (`ledger.lua`, a port of
//! `callgate_core::Ledger`: reserves, priorities, the claimed-pools rule, idempotency keys,
//! TTLs, deadlines, never-fits, ticket outcomes and their retention). Redis runs it
//! atomically, so nothing another node does can come between a command's reads and its
//! writes; it answers with the outcome and the events in ledger order. Reads are calls of
//! the same function, so each sees one consistent state.
//!
//! The code is loaded as a Redis *function library* (`FUNCTION LOAD`, called with
//! `FCALL`; loaded again when Redis answers that the function is not found, as after a
//! restart or `FUNCTION FLUSH`) rather than as a script run with `EVALSHA`: a script
//! rebuilds its ~70 helper closures and decodes the configuration on every call, which
//! cost about as much as an uncontended acquire itself; a library builds them once and
//! keeps the decoded configuration while the stored one is unchanged. The library's name
//! carries a hash of its source, so nodes of different versions each call their own.
//!
//! Every command that changed something also appends its events to the domain's stream
//! `{cg:<domain>}:events` (trimmed to about 10,000 entries) in the same atomic call, so
//! any node can follow what every node committed, in order ([`RedisLedger::events_after`]):
//! the basis of waking a waiter on one node when another frees capacity.
//!
//! All keys of one budget domain share the hash tag `{cg:<domain>}`, so the scripts run
//! unchanged on Redis Cluster (one domain lives in one slot). Lease and ticket ids come
//! from `INCR` in Redis: unique across nodes, never reused.
//!
//! **Time.** In production ([`Time::Server`]) the script reads Redis's own clock (`TIME`),
//! so nodes with skewed clocks still agree on every expiry and deadline. Tests run it on a
//! given clock ([`Time::Clock`]) whose "now" is passed to the script.
//!
//! **Durability.** A command is durable here once its script has run
//! ([`LedgerBackend::durable`] answers at once); the server journals it in PostgreSQL
//! when configured to. Every command answers `unavailable` while Redis holds no state for
//! the domain (the script finds no spec), rather than admit against an empty ledger.
//!
//! **Memory.** Redis must not evict keys (`maxmemory-policy noeviction`, its default): an
//! evicted lease would free its units without a release. [`RedisLedger::open`] refuses a
//! Redis that says it evicts; a full Redis then refuses writes, and commands answer
//! `unavailable`.
//!
//! **Layout.** The stored spec names the layout of the domain's keys (`ledger.lua`,
//! `LAYOUT_HEAD`). Opening a domain of the layout before (idempotency keys in one hash)
//! migrates it in place, in the one atomic call of `open`; any other command refuses it
//! (`unavailable`), and a function of the layout before fails on the migrated spec rather
//! than misread the keys. The nodes of a domain are upgraded across the change together.
//!
//! **Restart.** A backend opened over keys that hold a ledger takes it as it is (the
//! harness's "restart" is exactly that), keeping mean hold times to the millisecond as the
//! embedded journal does; opened with a changed configuration, it rebuilds as a reload
//! would ([`Command::Reconfigure`]), without events. Caps live in Redis with the rest of
//! the state and so survive a node's restart (they are the cluster's, not one node's).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod adopt;
mod batch;
mod call;

pub use batch::{batched, MAX_BATCH};
mod duty;
mod msgpack;
pub mod reassert;
mod spec;
mod stream;
mod wire;

use call::{connect, load_library, unavailable, TIMEOUT};
pub use duty::DutyLease;
pub use stream::{stream_position, stream_reset, Committed, Tag, MAX_EVENTS_READ, MAX_EVENTS_WAIT};

/// About how many entries the domain's event stream keeps (`MAXLEN ~`; the script's
/// `STREAM_LEN`).
pub(crate) const STREAM_LEN: &str = "10000";

use callgate_backend::{
    BoxFuture, Command, Error, Executed, Health, LeaseFilter, LeaseRef, LedgerBackend, Outcome, TicketRead, Waiting,
};
use callgate_core::clock::Clock;
use callgate_core::{Event, Lease, LeaseId, LedgerSpec, PoolView, Request, Target, Ticket, TicketId};
use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The script: one source for every command and read, loaded as a Redis function library.
const SCRIPT: &str = include_str!("ledger.lua");

/// The library's (and its one function's) name: `callgate_` and a hash of the source, so
/// that nodes running different versions each call their own code.
fn function_name() -> String {
    // FNV-1a, 64 bits: stable across builds and platforms (std's hashers are not).
    let hash = SCRIPT.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("callgate_{hash:016x}")
}

/// Refuses a Redis that evicts keys under memory pressure: an evicted lease would free its
/// units without a release, and the nodes would admit past the limit. (A Redis that does
/// not let clients read its configuration, as some managed ones, is taken as it is.)
fn refuse_eviction(conn: &mut redis::Connection) -> Result<(), Error> {
    let policy: Result<Vec<String>, _> = redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query(conn);
    match policy.as_deref() {
        Ok([_, policy]) if policy != "noeviction" => Err(Error::invalid(format!(
            "Redis evicts keys (maxmemory-policy {policy}): the ledger needs maxmemory-policy noeviction"
        ))),
        _ => Ok(()),
    }
}

/// Whether `found` marked the lease (its answer's second item is 1).
fn found(parts: &[Value]) -> Result<bool, Error> {
    let marked = parts.first().map(|o| wire::list(o, "found").and_then(|o| o.get(1).map_or(Ok(0), wire::int)));
    Ok(marked.transpose()?.unwrap_or(0) == 1)
}

/// Leases read per script call while paging (bounds the work of one read in Redis).
const PAGE_CHUNK: usize = 256;

/// Where "now" comes from.
#[derive(Clone)]
pub enum Time {
    /// Redis's own clock (`TIME`), read inside each script: production.
    Server,
    /// A clock of this process, passed to each script (tests, simulations).
    Clock(Arc<dyn Clock>),
}

impl Time {
    /// "now" as the script takes it (ARGV[2]): empty for Redis's own clock.
    pub(crate) fn arg(&self) -> String {
        match self {
            Time::Server => String::new(),
            Time::Clock(c) => c.now_ms().to_string(),
        }
    }
}

impl std::fmt::Debug for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Time::Server => "Server",
            Time::Clock(_) => "Clock",
        })
    }
}

/// The ledger of one budget domain, in Redis.
pub struct RedisLedger {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    /// The function's name (see [`function_name`]).
    function: String,
    /// `{cg:<domain>}:m`, the script's one declared key (the others share its hash tag).
    meta: String,
    time: Time,
    /// The last commit number handed out.
    commits: AtomicU64,
    /// The last "now" a command ran at, for [`LedgerBackend::now_ms`] when Redis cannot
    /// be asked.
    last_now: AtomicU64,
    failure: Mutex<Failure>,
    /// The connection [`RedisLedger::wait_events`] blocks on (kept: a node follows the
    /// stream all the time).
    waiter: Mutex<Option<redis::Connection>>,
    /// The connection the governor's commands share (see [`RedisLedger::call_async`]); a
    /// batch's task drops it when it broke.
    aio: Arc<Mutex<Option<redis::aio::MultiplexedConnection>>>,
    /// The request paths' commands waiting for the next batch (see [`batch`]).
    batches: Arc<batch::Batches>,
    /// `(node, ms)`: caps are this node's, merged with the other nodes' (see
    /// [`RedisLedger::with_cap_source`]).
    cap_source: Option<(String, u64)>,
    /// The nodes' presence as this node's last [`RedisLedger::presence`] read it: put back
    /// by [`RedisLedger::reassert`] (a Redis restarted empty lost it, and a node cut off
    /// may be admitting on its declared share).
    presences: Mutex<Vec<adopt::NodePresence>>,
}

#[derive(Default)]
struct Failure {
    why: Option<String>,
    epoch: u64,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger").field("meta", &self.meta).field("time", &self.time).finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// Connects to `url` (`redis://host:port/db`) and opens the ledger of budget domain
    /// `domain` for `spec`: a new one when Redis holds none, otherwise the one it holds
    /// (see the crate docs for a changed configuration). `domain` names the keys
    /// (`{cg:<domain>}:…`): letters, digits, `-`, `_`, `.` and `:`, at most 64.
    pub fn open(url: &str, domain: &str, spec: &LedgerSpec, time: Time) -> Result<RedisLedger, Error> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if domain.is_empty() || domain.len() > 64 || !domain.chars().all(ok) {
            return Err(Error::invalid(format!("bad budget domain {domain:?}: letters, digits, - _ . : (1 to 64)")));
        }
        let client = redis::Client::open(url).map_err(|e| Error::invalid(format!("Redis URL: {e}")))?;
        let mut conn = connect(&client).map_err(unavailable)?;
        refuse_eviction(&mut conn)?;
        let function = function_name();
        load_library(&mut conn, &function).map_err(unavailable)?;
        let ledger = RedisLedger {
            client,
            idle: Mutex::new(vec![conn]),
            function,
            meta: format!("{{cg:{domain}}}:m"),
            time,
            commits: AtomicU64::new(0),
            last_now: AtomicU64::new(0),
            failure: Mutex::new(Failure::default()),
            waiter: Mutex::new(None),
            aio: Arc::default(),
            batches: Arc::default(),
            cap_source: None,
            presences: Mutex::new(Vec::new()),
        };
        let json = spec::spec_json(spec)?;
        ledger.call("open", &[json])?;
        Ok(ledger)
    }

    /// Cluster mode: every [`Command::SetCap`] of this backend is node `node`'s cap of the
    /// pool, kept beside the other nodes' (the pool's cap is the least of them), and it
    /// lapses after `hold` unless the node says it again (a node that died stops holding
    /// the pool down; the living re-assert theirs well within `hold`). Without it, a
    /// `SetCap` sets the pool's cap as on one node.
    pub fn with_cap_source(mut self, node: &str, hold: Duration) -> Result<RedisLedger, Error> {
        if node.is_empty() || node.len() > 128 {
            return Err(Error::invalid(format!("bad node name {node:?}: 1 to 128 characters")));
        }
        self.cap_source = Some((node.to_owned(), (hold.as_millis() as u64).clamp(1, spec::MAX_MS)));
        Ok(self)
    }

    /// The hash tag every key of this domain carries, `{cg:<domain>}` (tests read the
    /// state back through it).
    pub fn key_prefix(&self) -> &str {
        &self.meta[..self.meta.len() - 2]
    }

    fn failed(&self, why: &str) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.why.is_none() {
            f.epoch += 1;
        }
        f.why = Some(why.to_owned());
    }

    fn succeeded(&self) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.why = None;
    }

    /// A command's arguments (a cap is this node's, in cluster mode).
    fn command_args(&self, cmd: &Command) -> Result<(&'static str, Vec<String>), Error> {
        let (name, mut args) = encode(cmd)?;
        if let (Command::SetCap { .. }, Some((node, hold))) = (cmd, &self.cap_source) {
            args.push(node.clone());
            args.push(hold.to_string());
        }
        Ok((name, args))
    }

    /// Takes back lease `id`, granted by an acquire whose journal commit was lost, unless an
    /// acquire retried by its key on another node found it since ([`RedisLedger::mark_found`]):
    /// that node journals the lease and may answer "granted", so it stays (until it is
    /// released or expires), where a release would free a unit a caller holds. As
    /// [`LedgerBackend::execute`] of its release; nothing released when it stays.
    /// Its stream entry, if it makes one, carries `tag`.
    pub fn take_back(&self, id: LeaseId, tag: Option<&Tag>) -> Result<Executed, Error> {
        let mut args = lease_ref(&LeaseRef::Id(id)).to_vec();
        args.extend([opt_str(None), "unless_found".to_owned()]);
        let parts = self.call_tagged("release", &args, tag)?;
        self.executed(parts)
    }

    /// [`LedgerBackend::execute`] whose stream entry, if it makes one, carries `tag`: for a
    /// node that journals its commands and marks them settled ([`RedisLedger::mark_settled`]).
    /// A tagged call whose reply was lost after it was sent is answered as Redis ran it, if
    /// it did (Redis keeps a tagged call's answer: see `ledger.lua`, `P:o:<origin>`); tagged
    /// calls must run one at a time per origin.
    pub fn execute_tagged(&self, cmd: Command, tag: Option<&Tag>) -> Result<Executed, Error> {
        let (name, args) = self.command_args(&cmd)?;
        self.executed(self.call_tagged(name, &args, tag)?)
    }

    /// Marks lease `id`, which an acquire retried by its key found, before that retry is
    /// answered "granted": a take-back ([`RedisLedger::take_back`]) by the node whose commit
    /// of it was lost then leaves it. `false` when the lease is no longer live (taken back
    /// first): the retry must not be answered with it. One atomic call, so one of the two
    /// comes first.
    pub fn mark_found(&self, id: LeaseId) -> Result<bool, Error> {
        found(&self.call("found", &[id.0.to_string()])?)
    }

    /// [`RedisLedger::mark_found`] on the shared multiplexed connection (no thread is held
    /// while Redis works).
    pub async fn mark_found_async(&self, id: LeaseId) -> Result<bool, Error> {
        found(&self.call_async("found", &[id.0.to_string()]).await?)
    }

    /// A command's answer, read.
    fn executed(&self, parts: Vec<Value>) -> Result<Executed, Error> {
        let [outcome, events, now] = parts.as_slice() else {
            return Err(Error::internal(format!("the ledger script answered {parts:?}")));
        };
        Ok(self.committed(wire::outcome(outcome)?, wire::events(events)?, wire::int(now)?))
    }

    /// A command's part of a batch's answer, read; the backend's health follows, as for a
    /// single call's answer ([`RedisLedger::answer_shared`]).
    pub(crate) fn ran(&self, reply: batch::Reply) -> Result<Executed, Error> {
        let answer = match reply {
            Ok(batch::Part::Ran(ran)) => {
                self.succeeded();
                let batch::Ran { outcome, events, now } = *ran?;
                return Ok(self.committed(outcome, events, now));
            }
            Ok(batch::Part::Answer(v)) => Ok(v),
            Err(e) => Err(e),
        };
        self.answer_shared(answer).and_then(|parts| self.executed(parts))
    }

    /// A command that ran at Redis's `now`, numbered.
    fn committed(&self, outcome: Outcome, events: Vec<Event>, now: u64) -> Executed {
        self.last_now.fetch_max(now, Ordering::Relaxed);
        let commit = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        Executed { outcome, events, commit, now }
    }

    /// Runs a read; an error is logged in the health and reads as nothing.
    fn read<T>(&self, name: &str, args: &[String], parse: impl FnOnce(&Value) -> Result<T, Error>) -> Option<T> {
        let parts = self.call(name, args).ok()?;
        parts.first().and_then(|v| parse(v).ok())
    }

    fn read_leases(&self, after: u64, n: usize) -> Vec<Lease> {
        self.read("r_leases", &[after.to_string(), n.to_string()], |v| {
            wire::list(v, "leases")?.iter().map(wire::lease).collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default()
    }
}

fn opt_str(s: Option<&str>) -> String {
    s.map_or_else(String::new, |s| format!("={s}"))
}

fn opt_num(n: Option<u64>) -> Result<String, Error> {
    match n {
        Some(ms) if ms > spec::MAX_MS => Err(Error::invalid(format!("a time above {} ms", spec::MAX_MS))),
        Some(ms) => Ok(ms.to_string()),
        None => Ok(String::new()),
    }
}

fn lease_ref(lease: &LeaseRef) -> [String; 2] {
    match lease {
        LeaseRef::Id(id) => ["i".into(), id.0.to_string()],
        LeaseRef::Key(k) => ["k".into(), k.to_string()],
    }
}

/// The script's command name and arguments for `cmd`.
fn encode(cmd: &Command) -> Result<(&'static str, Vec<String>), Error> {
    Ok(match cmd {
        Command::Acquire(req) => ("acquire", acquire_args(req)?),
        Command::Release { lease, owner } => {
            let mut args = lease_ref(lease).to_vec();
            args.push(opt_str(owner.as_deref()));
            ("release", args)
        }
        Command::Renew { lease, ttl_ms, owner } => {
            let mut args = lease_ref(lease).to_vec();
            args.push(opt_num(*ttl_ms)?);
            args.push(opt_str(owner.as_deref()));
            ("renew", args)
        }
        Command::Cancel(id) => ("cancel", vec![id.0.to_string()]),
        Command::EndCall(key) => ("end_call", vec![key.to_string()]),
        Command::Repair { ended, renew } => {
            let mut args = vec![ended.len().to_string()];
            args.extend(ended.iter().map(|k| k.to_string()));
            args.push(renew.len().to_string());
            args.extend(renew.iter().map(|k| k.to_string()));
            ("repair", args)
        }
        Command::SetLimit { pool, limit } => ("set_limit", vec![pool.0.to_string(), limit.to_string()]),
        Command::SetCap { pool, cap } => {
            ("set_cap", vec![pool.0.to_string(), cap.map_or_else(String::new, |c| c.to_string())])
        }
        Command::Tick => ("tick", Vec::new()),
        Command::Settle => ("settle", Vec::new()),
        Command::Fenced { fence, cmd } => ("fenced", duty::fenced_args(fence, cmd)?),
        Command::Reconfigure { spec, names, caps } => {
            if names.pools.len() != spec.pools.len() || names.classes.len() != spec.classes.len() {
                return Err(Error::invalid("the names do not match the configuration"));
            }
            let mut args = vec![spec::spec_json(spec)?];
            args.extend(
                (0..spec.pools.len())
                    .map(|i| caps.get(i).copied().flatten().map_or_else(String::new, |c| c.to_string())),
            );
            ("reconfigure", args)
        }
    })
}

fn acquire_args(req: &Request) -> Result<Vec<String>, Error> {
    let mut args = Vec::with_capacity(8);
    match &req.target {
        Target::Flow(f) => {
            args.push("f".into());
            args.push(f.0.to_string());
        }
        Target::Pools { pools, class } => {
            args.push("p".into());
            args.push(class.0.to_string());
            args.push(pools.len().to_string());
            args.extend(spec::flat_pools(pools).iter().map(u64::to_string));
        }
    }
    args.push(opt_str(req.key.as_deref()));
    args.push(opt_num(req.ttl_ms)?);
    args.push(opt_num(req.max_wait_ms)?);
    args.push(opt_str(req.meta.as_deref()));
    args.push(opt_str(req.owner.as_deref()));
    Ok(args)
}

impl LedgerBackend for RedisLedger {
    fn now_ms(&self) -> u64 {
        match &self.time {
            Time::Clock(c) => c.now_ms(),
            Time::Server => {
                let time: Result<(u64, u64), _> = self.with_conn(&redis::cmd("TIME"));
                match time {
                    Ok((secs, micros)) => secs * 1000 + micros / 1000,
                    Err(_) => self.last_now.load(Ordering::Relaxed),
                }
            }
        }
    }

    fn execute(&self, cmd: Command) -> Result<Executed, Error> {
        let (name, args) = self.command_args(&cmd)?;
        self.executed(self.call(name, &args)?)
    }

    fn waits_on_network(&self) -> bool {
        true
    }

    fn execute_async(&self, cmd: Command) -> BoxFuture<'_, Result<Executed, Error>> {
        Box::pin(async move {
            let (name, args) = self.command_args(&cmd)?;
            if batched(&cmd) {
                self.call_batched(&cmd, name, args).await
            } else {
                self.executed(self.call_async(name, &args).await?)
            }
        })
    }

    fn durable(&self, _commit: u64) -> BoxFuture<'_, Result<(), Error>> {
        // Durable once the script ran (see the crate docs).
        Box::pin(std::future::ready(Ok(())))
    }

    fn submitted(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn health(&self) -> Health {
        let f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        Health { failed: f.why.clone(), epoch: f.epoch, dead: false }
    }

    fn dead(&self) -> BoxFuture<'_, String> {
        // Redis may come back: this backend never gives up for good.
        Box::pin(std::future::pending())
    }

    fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.read("r_lease", &["i".into(), id.0.to_string()], wire::opt_lease).flatten()
    }

    fn lease_by_key(&self, key: &str) -> Option<Lease> {
        self.read("r_lease", &["k".into(), key.to_owned()], wire::opt_lease).flatten()
    }

    fn ticket(&self, id: TicketId) -> Option<TicketRead> {
        self.read("r_ticket", &[id.0.to_string()], wire::ticket_read).flatten()
    }

    fn ticket_by_key(&self, key: &str) -> Option<TicketRead> {
        self.read("r_ticket", &["k".into(), key.to_owned()], wire::ticket_read).flatten()
    }

    fn pools(&self) -> Vec<PoolView> {
        self.read("r_pools", &[], |v| {
            wire::list(v, "pools")?.iter().map(wire::pool_view).collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default()
    }

    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>) {
        // The embedded backend's walk, over chunks of leases read in id order.
        let limit = limit.max(1);
        let mut page: Vec<Lease> = Vec::with_capacity(limit.min(128));
        let (mut last, mut more, mut scanned, mut cursor) = (None, false, 0usize, after.0);
        'chunks: loop {
            let chunk = self.read_leases(cursor, PAGE_CHUNK);
            let full = chunk.len() == PAGE_CHUNK;
            for l in chunk {
                if page.len() == limit || scanned == max_scan {
                    more = true;
                    break 'chunks;
                }
                scanned += 1;
                last = Some(l.id);
                cursor = l.id.0;
                if filter.keeps(&l) {
                    page.push(l);
                }
            }
            if !full {
                break;
            }
        }
        (page, if more { last } else { None })
    }

    fn leases(&self) -> Vec<Lease> {
        let mut all = self.read_leases(0, 0);
        all.sort_by_key(|l| l.id);
        all
    }

    fn waiting(&self, limit: usize) -> Vec<Waiting> {
        // Bounded here too: the script sorts every waiting ticket, then answers `limit`.
        let limit = limit.min(100_000);
        self.read("r_waiting", &[limit.to_string()], |v| {
            wire::list(v, "waiting tickets")?.iter().map(wire::waiting).collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default()
    }

    fn tickets(&self) -> Vec<Ticket> {
        self.read("r_tickets", &[], |v| {
            wire::list(v, "tickets")?.iter().map(wire::ticket).collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default()
    }

    fn counts(&self) -> (usize, usize) {
        self.read("r_counts", &[], |v| {
            let c = wire::list(v, "counts")?;
            match c {
                [l, t] => Ok((wire::int(l)? as usize, wire::int(t)? as usize)),
                _ => Err(Error::internal("counts")),
            }
        })
        .unwrap_or_default()
    }

    fn counters(&self) -> (u64, u64) {
        self.read("r_counters", &[], |v| match wire::list(v, "counters")? {
            [id, seq] => Ok((wire::int(id)?, wire::int(seq)?)),
            _ => Err(Error::internal("counters")),
        })
        .unwrap_or((1, 1))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
