// Long file: the fallback's modes (shared, local, rejoining) and the backend that switches between them; the local ledger, the presence and the status are submodules.
//! `on_redis_unavailable = "local_fallback"`: while Redis cannot be reached, a node admits
//! on its own, against its share of each such pool, and hands what it granted to the shared
//! ledger when Redis answers again.
//!
//! [`Fallback`] is the node's [`LedgerBackend`] when any pool has the policy: it wraps the
//! cluster's backend (the Redis ledger, or with `[storage] database` the Redis ledger
//! journaled in PostgreSQL) and passes everything through while Redis answers (the request
//! paths' commands in its batches, see `flight`).
//!
//! **Presence.** Every second ([`spawn_poll`]) the node tells Redis it is there, with the
//! share of each pool it would take if it went local now ([`presence`],
//! [`RedisLedger::presence`]); Redis declares for it the least of that and its share of
//! what Redis has free at that moment. Redis stamps it with its own time; a node whose presence is
//! older than [`presence::LAPSE`] is *silent*, and the shared ledger counts its declared
//! shares as used for admission (no grant, no ticket's, uses them) until its hold-back
//! ends. So in a partition (this node cannot reach Redis, others can) the others admit
//! in Redis on what is left, and this node on its share, and the two never meet.
//!
//! **Going local.** When a command finds Redis unreachable (not emptied: that is the
//! restore's case), or the check each second does, the node builds a local ledger
//! ([`local::Local`]), but only once Redis must already be holding its share back:
//! [`presence::LAPSE`] and [`presence::MARGIN`] after its last presence Redis answered
//! (Redis stamped it before the answer came). Until then its acquires answer 503, as a
//! pool that fails closed would, and are not sent to Redis (an answer lost on the way
//! would count against the share). The local ledger is the configuration's, with each pool
//! capped at the least of the share the node declared last and its share now,
//! `(cap - in use - held back) / nodes` rounded down ([`local::share`]). `nodes` is
//! `[storage] nodes`, the most nodes that share the domain. *In use* is what the shared
//! ledger held as this node last saw it: the pools of the domain's event stream
//! (every node's grants, releases and expiries, and so also the leases of nodes that
//! died), plus this node's own grants the stream had not brought yet, plus the units of
//! its acquires whose answer was lost on the way (Redis may have granted them); *held back*
//! is what Redis held back for silent nodes at this node's last presence. So the leases
//! Redis held and every node's share add up to at most the cap: a pool that was full has
//! no share. A pool that fails closed has none either: its acquires answer 503.
//! Nobody waits in fallback (a waiting line across nodes needs Redis): a request that does
//! not fit is rejected. Ids come from a block this node took from the ledger's counter
//! ([`RedisLedger::reserve_ids`]), so they are unique across nodes and the ledger never
//! hands them out. With PostgreSQL the local events are journaled before the answer, as
//! every other command's. Releases, renewals and call ends of leases the local ledger does
//! not hold (Redis's) are kept and answered 503 (`unavailable`, "kept"): they are made in
//! Redis when it is back; a retry then finds them done.
//!
//! **Bounded.** A node admits on its own for at most `[storage] fallback_max` from its
//! last presence: no local lease is granted or renewed past that (its TTL is cut), and
//! then every pool fails closed until Redis answers. Redis holds a silent node's share
//! back until [`presence::SLACK`] after that, then forgets the node (and walks the
//! waiting lines). So a node killed in fallback, or never coming back, holds capacity for
//! a bounded time, and its local leases cannot outlive the hold-back. A clean stop takes
//! the presence out of Redis (`Fallback::leave`) unless the node is local.
//!
//! **Coming back.** When that check finds Redis answering again: the kept changes are
//! made in Redis, then the leases granted here (live, and ended here) are adopted into
//! the shared ledger in one atomic call, each at most once however often it is retried
//! ([`RedisLedger::adopt`]); a live one keeps its id, key and expiry. Only then is the
//! node's presence said again, which ends the hold-back of its share: the adopted leases
//! replace it without a gap. Then, for
//! [`REJOIN`], acquires answer 503 while everything else runs on Redis: every node in
//! fallback notices Redis within a second of the others and adopts its leases within that
//! pause, so nobody admits against the shared ledger before every node's local leases are
//! in it. If the adopted leases put a pool over its cap (the nodes' shares were of what
//! each had seen), the node logs it and `callgate_redis_fallback_over` says by how many
//! units; no lease is revoked, and the ledger admits nothing there until the pool is back
//! under its cap.
//!
//! **Not covered** (README, "Running several nodes"): grants Redis made between this
//! node's last presence and its lapse may use its share (the pool can be over its cap by
//! at most that share until they end); the local leases of a node killed while in
//! fallback are lost (Redis holds its share back for the bound above instead); and a
//! Redis that comes back empty while a node is cut off gets the hold-back back only as
//! the restoring node last read the nodes' presence (`RedisLedger::reassert`; a node goes
//! local on the least of its last two declared shares, so a list one presence round old
//! holds it back). A node Redis never stamped, or stamped only once, fails closed. A
//! local grant whose PostgreSQL commit was lost (its caller heard 503) is taken back at
//! the next check, before any hand-over.

mod flight;
pub(crate) mod local;
pub mod presence;
mod seen;
mod status;

use crate::clock::Clock;
use callgate_backend::{
    BoxFuture, Command, Error, ErrorKind, Executed, Health, LeaseFilter, LeaseRef, LedgerBackend, Outcome, TicketRead,
    Waiting,
};
use callgate_config::RedisUnavailable;
use callgate_core::{Decision, Event, Lease, LeaseId, LedgerSpec, PoolView, Target, Ticket, TicketId};
use callgate_store_redis::RedisLedger;
use local::Local;
use presence::Presence;
use seen::Seen;
#[doc(hidden)]
pub use status::{PoolStatus, Status};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Fallbacks made in this process (each one's presence has a name of its own).
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many ids a node takes from the ledger's counter for a fallback.
const ID_BLOCK: u64 = 1 << 20;

/// After its leases are adopted, how long a node answers acquires 503 before it admits
/// on the shared ledger again: longer than the check's period (1 s) and an adoption,
/// so every other node in fallback has adopted its leases by then.
pub(crate) const REJOIN: Duration = Duration::from_secs(3);

enum Mode {
    /// Redis answers: everything runs there.
    Shared,
    /// Redis is unreachable: admission runs on this node's share.
    Local(Box<Local>),
    /// The local leases are in Redis; acquires answer 503 until this time (node clock).
    Rejoining(u64),
}

/// The cluster's backend with `local_fallback`. See the module docs.
pub struct Fallback {
    inner: Arc<dyn LedgerBackend>,
    redis: Arc<RedisLedger>,
    /// The PostgreSQL journal's side, when there is one (local events are journaled there).
    journaled: Option<Arc<super::durable::Journaled>>,
    clock: Arc<dyn Clock>,
    /// This node's name (its presence in Redis).
    node: String,
    nodes: u32,
    /// The longest this node admits on its own after its last presence (`[storage]
    /// fallback_max`); Redis holds its share back as long, plus [`presence::SLACK`].
    max: Duration,
    policy: Vec<RedisUnavailable>,
    spec: RwLock<LedgerSpec>,
    seen: Mutex<Seen>,
    mode: RwLock<Mode>,
    /// The block of ids for the next fallback.
    block: Mutex<Option<(u64, u64)>>,
    /// Units by which each pool was over its cap after the last adoption.
    over: Mutex<Vec<u64>>,
    /// This node's presence in Redis (when it may admit on its own).
    presence: Mutex<Presence>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback").field("nodes", &self.nodes).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fallback {
    /// `inner` (over `redis`; `journaled` when it is the PostgreSQL-journaled one) with
    /// fallback for the pools whose `policy` is `local_fallback`, on node `node` of `nodes`
    /// sharing the domain, for at most `max` after its last presence; `pools` is what the
    /// shared ledger held when the event stream was read from.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub fn new(
        inner: Arc<dyn LedgerBackend>,
        redis: Arc<RedisLedger>,
        journaled: Option<Arc<super::durable::Journaled>>,
        clock: Arc<dyn Clock>,
        node: String,
        spec: LedgerSpec,
        policy: Vec<RedisUnavailable>,
        nodes: u32,
        max: Duration,
        pools: &[PoolView],
    ) -> Fallback {
        let seen = Seen {
            used: pools.iter().map(|p| p.used).collect(),
            cap: pools.iter().map(|p| p.cap).collect(),
            doubt: vec![0; pools.len()],
            in_flight: vec![0; pools.len()],
            ..Seen::default()
        };
        let fallback = Fallback {
            inner,
            redis,
            journaled,
            clock,
            // Unique even for two servers of one process (tests): a name is host, address
            // and process.
            node: format!("{node}/{}", INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            nodes: nodes.max(1),
            max,
            over: Mutex::new(vec![0; policy.len()]),
            presence: Mutex::new(Presence::default()),
            policy,
            spec: RwLock::new(spec),
            seen: Mutex::new(seen),
            mode: RwLock::new(Mode::Shared),
            block: Mutex::new(None),
        };
        fallback.keep_block();
        fallback
    }

    /// The domain's committed events, as the follower reads them from the stream.
    pub(crate) fn observe(&self, events: &[Event]) {
        lock(&self.seen).apply(events, false, self.clock.now_ms());
    }

    /// While the node admits on its own or rejoins: what `/healthz` and `/metrics` say.
    #[doc(hidden)]
    pub fn status(&self) -> Status {
        let over = lock(&self.over).clone();
        let held = self.held_for_silent();
        let mode = self.mode_read();
        let (reason, caps) = match &*mode {
            Mode::Shared => (None, None),
            Mode::Local(l) => (
                Some(format!(
                    "Redis is unreachable: pools with local_fallback admit on this node's share ({} nodes)",
                    self.nodes
                )),
                Some(l.caps().to_vec()),
            ),
            Mode::Rejoining(_) => (Some("Redis answers again: rejoining the shared ledger".to_owned()), None),
        };
        let pools = (0..self.policy.len())
            .map(|i| {
                let cap = caps.as_ref().and_then(|c| c.get(i).copied());
                let local = cap.is_some() && self.policy[i] == RedisUnavailable::LocalFallback;
                let at = |v: &[u64]| v.get(i).copied().unwrap_or(0);
                PoolStatus { local, cap: cap.unwrap_or(0), over: at(&over), held: at(&held) }
            })
            .collect();
        Status { reason, pools }
    }

    fn unreachable(&self) -> bool {
        self.redis.health().failed.is_some() && !self.redis.lost_state()
    }

    /// Takes a block of ids when this node has none, or when the ledger's counter went
    /// back below it (a restore into an emptied Redis): the ledger may hand those out.
    fn keep_block(&self) {
        let block = *lock(&self.block);
        let fresh = match (block, self.redis.last_id()) {
            (Some((_, last)), Ok(counter)) => counter < last,
            (None, _) => true,
            (Some(_), Err(_)) => false,
        };
        if fresh {
            match self.redis.reserve_ids(ID_BLOCK) {
                Ok(b) => *lock(&self.block) = Some(b),
                Err(e) => tracing::warn!(error = %e, "Cannot take a block of ids for local fallback yet"),
            }
        }
    }

    /// Builds the local ledger (Redis just became unreachable).
    fn go_local(&self, mode: &mut RwLockWriteGuard<'_, Mode>) -> Result<(), Error> {
        if matches!(**mode, Mode::Local(_)) {
            return Ok(());
        }
        // Only once the shared ledger must be holding this node's share back, and on no
        // more than that.
        let now = tokio::time::Instant::now();
        let (caps, until) = {
            let presence = lock(&self.presence);
            let (declared, until) = presence.local_terms(now, self.max).map_err(Error::unavailable)?;
            let caps: Vec<u32> = self
                .shares_now(&presence.held)
                .iter()
                .enumerate()
                .map(|(i, s)| (*s).min(declared.get(i).copied().unwrap_or(0)))
                .collect();
            (caps, until)
        };
        let Some(block) = lock(&self.block).take() else {
            return Err(Error::unavailable("Redis is unreachable and this node holds no ids for local fallback"));
        };
        let node_now = self.clock.now_ms();
        let until = node_now.saturating_add(until.saturating_duration_since(now).as_millis() as u64);
        let spec = self.spec.read().unwrap_or_else(|p| p.into_inner()).clone();
        let local = Local::new(&spec, self.policy.clone(), caps.clone(), block, node_now, until)?;
        tracing::error!(
            why = self.redis.health().failed.unwrap_or_default(),
            local_caps = ?caps,
            nodes = self.nodes,
            "Redis is unreachable: pools with local_fallback admit on this node's share, the others answer 503"
        );
        **mode = Mode::Local(Box::new(local));
        Ok(())
    }

    /// The units an acquire asks for (none for other commands).
    fn acquire_units(&self, cmd: &Command) -> Vec<callgate_core::PoolUnits> {
        let Command::Acquire(req) = cmd else { return Vec::new() };
        match &req.target {
            Target::Pools { pools, .. } => pools.to_vec(),
            Target::Flow(f) => {
                let spec = self.spec.read().unwrap_or_else(|p| p.into_inner());
                spec.flows.get(f.index()).map(|f| f.pools.clone()).unwrap_or_default()
            }
        }
    }

    /// An acquire whose answer was lost: Redis may have granted it, so its units count as
    /// in use for the shares.
    fn doubt(&self, cmd: &Command) {
        flight::count(&mut lock(&self.seen).doubt, &self.acquire_units(cmd), true);
    }

    fn run_local(&self, local: &mut Local, cmd: Command) -> Result<Executed, Error> {
        let now = self.clock.now_ms();
        let (outcome, events) = local.execute(cmd, now)?;
        let commit = match &self.journaled {
            Some(j) if !events.is_empty() => j.journal().append(events.clone()),
            Some(j) => j.journal().submitted(),
            None => self.inner.submitted(),
        };
        if self.journaled.is_some() {
            // A grant is taken back if its commit is lost ([`Fallback::settle`]); a retry
            // that finds it meanwhile must not be told it holds it.
            if let Outcome::Decided { decision: Decision::Granted { lease, existing }, .. } = &outcome {
                if !existing && local.unsettled.len() < local::MAX_KEPT {
                    local.unsettled.push((commit, *lease));
                } else if local.unsettled.iter().any(|(_, l)| l == lease) {
                    return Err(Error::unavailable("the first request with this key is not settled yet; retry"));
                }
            }
        }
        Ok(Executed { outcome, events, commit, now })
    }

    /// With PostgreSQL: waits for the commits of the local grants not known durable yet,
    /// and takes back those whose commit was lost (their callers heard 503). Blocking.
    fn settle(&self) {
        let Some(j) = &self.journaled else { return };
        let unsettled = match &mut *self.mode_write() {
            Mode::Local(l) => std::mem::take(&mut l.unsettled),
            _ => return,
        };
        if unsettled.is_empty() {
            return;
        }
        let lost = lost(j, &unsettled);
        if let Mode::Local(l) = &mut *self.mode_write() {
            let now = self.clock.now_ms();
            for id in &lost {
                l.take_back(*id, now);
            }
        }
        if !lost.is_empty() {
            tracing::warn!(leases = ?lost, "Local grants PostgreSQL did not commit were taken back (their callers heard 503)");
        }
    }

    /// Every second ([`spawn_poll`]), with a check of Redis: goes local when Redis
    /// is unreachable, and when it answers again hands the local leases to it and rejoins.
    /// Blocking.
    pub(crate) fn poll(&self, check: &Result<(), Error>) {
        self.settle();
        let now = self.clock.now_ms();
        let state = match &*self.mode_read() {
            Mode::Shared => 0,
            Mode::Local(_) => 1,
            Mode::Rejoining(until) => 2 + u8::from(now >= *until),
        };
        match (state, check) {
            (0, Err(_)) if self.unreachable() => {
                let mut mode = self.mode_write();
                if let Err(e) = self.go_local(&mut mode) {
                    tracing::warn!(error = %e, "Cannot admit on this node's share yet");
                }
            }
            (0, Ok(())) => self.keep_block(),
            (1, Ok(())) => {
                let mut mode = self.mode_write();
                let Mode::Local(local) = &mut *mode else { return };
                match self.hand_over(local) {
                    Ok(()) => {
                        *mode = Mode::Rejoining(now + REJOIN.as_millis() as u64);
                        drop(mode);
                        // What was in doubt is on the stream now, which the follower reads on.
                        lock(&self.seen).doubt.iter_mut().for_each(|d| *d = 0);
                        self.keep_block();
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot hand the local leases to Redis yet; retrying"),
                }
            }
            (3, _) => {
                *self.mode_write() = Mode::Shared;
                tracing::info!("Admission runs on the shared ledger again");
            }
            _ => {}
        }
        // After a hand-over, the presence that ends the hold-back of this node's share
        // comes after the adoption: the adopted leases replace it without a gap.
        let local = matches!(*self.mode_read(), Mode::Local(_));
        if check.is_ok() && !local {
            self.say_present();
        }
    }

    /// Makes the kept changes in Redis and adopts the local leases (each at most once).
    fn hand_over(&self, local: &mut Local) -> Result<(), Error> {
        // What was granted since the last settling: only what PostgreSQL committed goes.
        if let Some(j) = &self.journaled {
            let now = self.clock.now_ms();
            for id in lost(j, &std::mem::take(&mut local.unsettled)) {
                local.take_back(id, now);
            }
        }
        while let Some(change) = local.pending.first() {
            match self.inner.execute(change.command()) {
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::Unavailable => return Err(e),
                // Refused for good (another key's lease): nothing to make.
                Err(e) => tracing::warn!(error = %e, change = ?change, "A change kept in fallback was refused"),
            }
            local.pending.remove(0);
        }
        // The local leases' times are on this node's clock: moved to Redis's.
        let (redis_now, node_now) = (self.redis.now_ms(), self.clock.now_ms());
        let shift = |t: u64| t.saturating_add(redis_now).saturating_sub(node_now);
        let list: Vec<_> = local
            .to_adopt()
            .into_iter()
            .map(|mut a| {
                a.lease.granted_at = shift(a.lease.granted_at);
                a.lease.expires_at = shift(a.lease.expires_at);
                a.ended = a.ended.map(shift);
                a
            })
            .collect();
        let adoption = self.redis.adopt(&list)?;
        if adoption.clashes > 0 {
            tracing::error!(clashes = adoption.clashes, "Local leases whose ids the shared ledger gave another lease");
        }
        let pools = self.redis.pools();
        let over: Vec<u64> = pools.iter().map(|p| p.used.saturating_sub(u64::from(p.cap))).collect();
        for (p, units) in pools.iter().zip(&over).filter(|(_, u)| **u > 0) {
            tracing::warn!(pool = %p.name, over = units, used = p.used, cap = p.cap,
                "After the local fallback the pool is over its cap: nothing is revoked, and it admits nothing until it is under it");
        }
        *lock(&self.over) = over;
        tracing::info!(
            leases = list.len(),
            new = adoption.adopted,
            since = local.since,
            "Redis answers again: the leases granted in fallback are in the shared ledger"
        );
        Ok(())
    }

    /// The mode, to read. Its writers may hold it across calls to Redis (a hand-over, and
    /// the commands that run under a read lock keep a writer waiting, which readers then
    /// queue behind), so a reader that must wait waits off tokio's workers
    /// ([`callgate_backend::blocking`]): a Redis that stalls then holds up the requests
    /// that need the mode, not `/healthz` and every task that shares their worker.
    fn mode_read(&self) -> RwLockReadGuard<'_, Mode> {
        callgate_backend::contended(self.mode.try_read(), || self.mode.read()).unwrap_or_else(|p| p.into_inner())
    }

    /// The mode, to change; waits as [`Fallback::mode_read`] does.
    fn mode_write(&self) -> RwLockWriteGuard<'_, Mode> {
        callgate_backend::contended(self.mode.try_write(), || self.mode.write()).unwrap_or_else(|p| p.into_inner())
    }

    /// A read of the local ledger while the node admits on its share, else of Redis. The
    /// mode's lock is not held while Redis is read: a read that waits for a stalled Redis
    /// would hold up the switch to local admission, and behind that (a waiting writer
    /// goes first) every reader of the mode, `/healthz` among them. A switch meanwhile
    /// leaves the read what it was, Redis's view when it was read.
    fn read_local<T>(&self, local: impl FnOnce(&Local) -> T, shared: impl FnOnce() -> T) -> T {
        if let Mode::Local(l) = &*self.mode_read() {
            return local(l);
        }
        shared()
    }
}

/// The grants of `unsettled` whose commit was lost (blocks until each is known).
fn lost(j: &super::durable::Journaled, unsettled: &[(u64, LeaseId)]) -> Vec<LeaseId> {
    let handle = tokio::runtime::Handle::current();
    unsettled.iter().filter(|(commit, _)| handle.block_on(j.durable(*commit)).is_err()).map(|(_, l)| *l).collect()
}

/// How often the node checks Redis for its fallback (goes local, hands over, rejoins).
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Checks Redis every second and hands the check to [`Fallback::poll`], until `stop`;
/// then takes the node's presence out of Redis ([`Fallback::leave`]).
#[doc(hidden)]
pub fn spawn_poll(
    fallback: Arc<Fallback>,
    ledger: Arc<RedisLedger>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            every.tick().await;
            let (f, l) = (fallback.clone(), ledger.clone());
            let _ = tokio::task::spawn_blocking(move || f.poll(&l.check())).await;
        }
        let _ = tokio::task::spawn_blocking(move || fallback.leave()).await;
    })
}

impl LedgerBackend for Fallback {
    fn now_ms(&self) -> u64 {
        self.read_local(|_| self.clock.now_ms(), || self.inner.now_ms())
    }

    fn waits_on_network(&self) -> bool {
        self.inner.waits_on_network()
    }

    /// The request paths' commands go in the wrapped backend's batches while Redis answers
    /// (`flight.rs`); the rest, and everything while Redis is unreachable, runs `execute`.
    fn execute_async(&self, cmd: Command) -> BoxFuture<'_, Result<Executed, Error>> {
        if !self.batches(&cmd) {
            return Box::pin(std::future::ready(self.execute(cmd)));
        }
        Box::pin(self.execute_batched(cmd))
    }

    fn execute(&self, cmd: Command) -> Result<Executed, Error> {
        {
            let mode = self.mode_read();
            match &*mode {
                Mode::Local(_) => {}
                Mode::Rejoining(_) if matches!(cmd, Command::Acquire(_)) => {
                    return Err(Error::unavailable("rejoining the shared ledger after a fallback; retry"));
                }
                // Redis is known unreachable and the node waits until it may go local: an
                // acquire is not sent (its answer could be lost, and count against the
                // share), it is answered here ([`Fallback::go_local`] says why).
                Mode::Shared if matches!(cmd, Command::Acquire(_)) && self.unreachable() => {}
                _ => {
                    let is_reconfigure = match &cmd {
                        Command::Reconfigure { spec, .. } => Some((**spec).clone()),
                        _ => None,
                    };
                    match self.inner.execute(cmd.clone()) {
                        Ok(done) => {
                            lock(&self.seen).apply(&done.events, true, self.clock.now_ms());
                            if let Some(spec) = is_reconfigure {
                                *self.spec.write().unwrap_or_else(|p| p.into_inner()) = spec;
                            }
                            return Ok(done);
                        }
                        Err(e) if e.kind == ErrorKind::Unavailable && self.unreachable() => {
                            if matches!(*mode, Mode::Rejoining(_)) {
                                return Err(e);
                            }
                            self.doubt(&cmd);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let mut mode = self.mode_write();
        self.go_local(&mut mode)?;
        let Mode::Local(local) = &mut *mode else {
            return Err(Error::internal("the local fallback is not in force"));
        };
        self.run_local(local, cmd)
    }

    fn durable(&self, commit: u64) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.durable(commit)
    }

    fn submitted(&self) -> u64 {
        self.inner.submitted()
    }

    fn vouch(&self, lease: &Lease, from_ticket: Option<TicketId>, seen: std::time::Instant) -> u64 {
        self.inner.vouch(lease, from_ticket, seen)
    }

    fn health(&self) -> Health {
        let inner = self.inner.health();
        self.read_local(
            |_| {
                // Redis's failure is the fallback's reason to be; a journal's is not.
                let journal = self.journaled.as_ref().and_then(|j| j.journal_failure());
                Health { failed: journal, ..inner.clone() }
            },
            || inner.clone(),
        )
    }

    fn dead(&self) -> BoxFuture<'_, String> {
        self.inner.dead()
    }

    fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.read_local(|l| l.lease(&LeaseRef::Id(id)), || self.inner.lease(id))
    }

    fn lease_by_key(&self, key: &str) -> Option<Lease> {
        self.read_local(|l| l.lease(&LeaseRef::Key(Arc::from(key))), || self.inner.lease_by_key(key))
    }

    fn ticket(&self, id: TicketId) -> Option<TicketRead> {
        self.read_local(|_| None, || self.inner.ticket(id))
    }

    fn ticket_by_key(&self, key: &str) -> Option<TicketRead> {
        self.read_local(|_| None, || self.inner.ticket_by_key(key))
    }

    fn pools(&self) -> Vec<PoolView> {
        self.read_local(|l| l.pools(), || self.inner.pools())
    }

    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>) {
        self.read_local(
            |l| {
                let mut page = Vec::new();
                let mut next = None;
                for lease in l.ledger().leases_after(after).take(max_scan) {
                    if page.len() == limit.max(1) {
                        next = page.last().map(|l: &Lease| l.id);
                        break;
                    }
                    if filter.keeps(lease) {
                        page.push(lease.clone());
                    }
                }
                (page, next)
            },
            || self.inner.leases_page(after, filter, limit, max_scan),
        )
    }

    fn leases(&self) -> Vec<Lease> {
        self.read_local(|l| l.ledger().leases().cloned().collect(), || self.inner.leases())
    }

    fn waiting(&self, limit: usize) -> Vec<Waiting> {
        self.read_local(|_| Vec::new(), || self.inner.waiting(limit))
    }

    fn tickets(&self) -> Vec<Ticket> {
        self.read_local(|_| Vec::new(), || self.inner.tickets())
    }

    fn counts(&self) -> (usize, usize) {
        self.read_local(|l| (l.ledger().lease_count(), 0), || self.inner.counts())
    }

    fn counters(&self) -> (u64, u64) {
        self.inner.counters()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Fallback {
    /// The backend it wraps (for what only that one has: the journal's commit times).
    #[doc(hidden)]
    pub fn inner(&self) -> &Arc<dyn LedgerBackend> {
        &self.inner
    }
}
