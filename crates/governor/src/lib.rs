// Long file: the governor's core operations; calls, caps, ops and reload are in governor/.
//! The governor: the only owner of admission in a running server.
//!
//! It resolves names to ids, runs the breaker gate, keeps the waiters and the cap
//! sources of this node, and hands every change of the ledger to its
//! [`LedgerBackend`] as one [`Command`]. The request paths (acquire, release, renew,
//! cancel, a call's end) have the backend execute their command without the governor's
//! lock, so that on a backend that waits on a network (Redis) many are in flight at once
//! (the backend orders them; each is atomic); then, under the lock, they wake the waiters
//! of the tickets it ended, and wait until the backend says the command is durable. Only
//! then does the edge answer. Operations that change this node's own state with the
//! ledger (caps, limits, the sweep, a reload) execute under the lock. A request that
//! waits in the room (`wait_ms`) registers its waiter under the lock after its acquire
//! ran; an end of its ticket that another command's wake saw in between is kept for it
//! (the last [`UNCLAIMED_KEPT`] ends nobody waited for), so the grant that ends a ticket
//! never slips by unnoticed. A reload excludes the acquires that resolve names, so no
//! acquire runs with ids of the configuration before it.
//!
//! Nothing is shown before it is durable: reads that a client sees go through
//! [`Governor::durable_view`], which answers once everything the read saw is committed
//! (in cluster mode, by whichever node made it: [`SettledViews`]).
//! When a commit fails, the backend puts its state back to the last durable one and
//! every operation fails with [`ErrorKind::Unavailable`] until it commits again; what was
//! applied after the last commit is gone, and so are the answers it would have given
//! (they were failures too).
//!
//! The governor answers in its own terms: typed answers ([`Answer`], [`TicketState`]),
//! typed ids ([`LeaseId`], [`TicketId`]), typed overflow steps and one [`Error`] (kind,
//! retryable, code, message, source). The edges choose HTTP statuses, Vapi replies and
//! TwiML from them; nothing here knows HTTP.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod calls;
mod caps;
mod guard;
mod ops;
mod reload;
mod subscriber;

/// The governor's error: its kind, whether a retry may help, its code and message (the
/// HTTP edges map it to a status).
pub use callgate_backend::{Error, ErrorKind};
/// The edge a request came through (a label of the decision latency histogram).
pub use callgate_events::Edge;
pub use calls::{CallEnd, Hold, ProviderHold, Repaired};
pub use caps::CapSourcesView;
pub use guard::LeaseGuard;
pub use ops::{vapi_latency, LeaseRef, Measured, Report, WaitingView, MAX_WAITING_LISTED};
pub use reload::{NewLedger, OpsSlot, ReloadError};
pub use subscriber::OpsSubscriber;

use callgate_backend::records::Records;
use callgate_backend::Names;
use callgate_backend::{Command, Executed, LeaseFilter, LeaseRef as BackendLease, LedgerBackend, Outcome};
use callgate_config::Overflow;
use callgate_core::clock::Clock;
use callgate_core::{
    Decision, Event, Lease, LeaseId, PoolId, RejectReason, Request, TicketId, TicketOutcome, TicketStatus,
};
use callgate_events::views::{LeaseView, PoolInfo, TicketView};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// How a waited-for ticket ended, as its waiter learns it.
#[derive(Clone, Debug)]
pub enum TicketEnd {
    /// Granted: the lease as granted.
    Granted(LeaseView),
    /// Cancelled.
    Cancelled,
    /// Timed out: the flow's overflow.
    TimedOut(Option<Overflow>),
    /// Ended because a pool's limit dropped below what it asks for: the flow's overflow.
    NeverFits(Option<Overflow>),
}

/// The answer to an acquire.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Granted: the lease.
    Granted(LeaseView),
    /// Queued: the ticket.
    Queued(TicketView),
    /// Rejected: why, and what the flow says to do instead.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// The flow's first overflow action (its fallback when `dependency` is set).
        overflow: Option<Overflow>,
        /// Hint (ms).
        retry_after_ms: u64,
        /// Set when the flow's dependency is down (its breaker is open): the reason is
        /// then `dependency_down`, not `reason`, and `overflow` is the flow's fallback.
        dependency: Option<Arc<str>>,
    },
}

impl Answer {
    /// `granted`, `queued` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Granted(_) => "granted",
            Answer::Queued(_) => "queued",
            Answer::Rejected { .. } => "rejected",
        }
    }
}

/// A ticket's state for `GET /v1/tickets/{id}`.
#[derive(Clone, Debug)]
pub enum TicketState {
    /// Waiting.
    Waiting(TicketView),
    /// Granted; the lease while it is live, else only its id.
    Granted(Option<LeaseView>, LeaseId),
    /// Timed out, with the flow's overflow.
    TimedOut(Option<Overflow>),
    /// Ended because it can never fit (a pool's limit was lowered), with the flow's
    /// overflow.
    NeverFits(Option<Overflow>),
    /// Cancelled.
    Cancelled,
}

struct State {
    waiters: FxHashMap<u64, Vec<oneshot::Sender<(u64, TicketEnd)>>>,
    /// The last [`UNCLAIMED_KEPT`] ticket ends that no waiter was there for: an acquire
    /// that registers its waiter after its command ran finds here an end that came in
    /// between.
    unclaimed: std::collections::VecDeque<Unclaimed>,
    /// [pool] → what lowers its cap (see `caps`); the only source of [`Command::SetCap`].
    caps: Vec<caps::CapSources>,
    /// The earliest end of a refusal's cooldown, if any runs.
    cooldown_due: Option<u64>,
}

/// A ticket's end that no waiter was there for (see `State::unclaimed`).
struct Unclaimed {
    ticket: u64,
    /// The commit to wait for before telling it.
    commit: u64,
    end: TicketEnd,
    /// A grant read from the cluster's stream, with an instant before it was read: it is
    /// journaled here when a waiter claims it ([`LedgerBackend::vouch`]).
    vouch: Option<(Lease, std::time::Instant)>,
}

/// The names of pools, classes and flows, their index, and each flow's first overflow
/// action (by flow index).
struct Naming {
    names: Arc<Names>,
    index: [FxHashMap<Arc<str>, u32>; 3],
    overflow: Vec<Option<Overflow>>,
}

impl Naming {
    fn new(names: Names, overflow: Vec<Option<Overflow>>) -> Naming {
        let index_of = |names: &[Arc<str>]| names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        let index = [index_of(&names.pools), index_of(&names.classes), index_of(&names.flows)];
        Naming { names: Arc::new(names), index, overflow }
    }
}

/// Owns admission: the backend that keeps the ledger, and what this node adds to it.
pub struct Governor {
    state: Mutex<State>,
    backend: Arc<dyn LedgerBackend>,
    records: Arc<dyn Records>,
    clock: Arc<dyn Clock>,
    /// The names of the ledger's pools, classes and flows, and what depends on them.
    /// Replaced, under the governor's lock, only by a configuration reload (see
    /// `reload`), together with the backend's ledger.
    naming: RwLock<Arc<Naming>>,
    /// Adaptive caps, breakers, alerts (see [`Governor::with_ops`]); shared with the
    /// journal's consumer, which moves to a reloaded one in event order.
    ops: OpsSlot,
    /// Set when a background component died: admission stays stopped until a restart.
    stopped: std::sync::OnceLock<String>,
    /// A test's request that the next tick panic (see [`Governor::inject_tick_panic`]).
    panic_next_tick: std::sync::atomic::AtomicBool,
    /// Where the decision latency is counted (see [`Governor::with_metrics`]).
    metrics: Option<Arc<callgate_events::metrics::Metrics>>,
    /// Cluster mode: the duty lease's token while this node holds it (see
    /// [`Governor::fence_duties`]).
    duty_fence: std::sync::OnceLock<DutyFence>,
    /// Cluster mode: what a read waits for besides this node's own commits (see
    /// [`Governor::with_settled_views`]).
    settled_views: Option<Arc<dyn SettledViews>>,
    /// How many ticket ends found no waiter, ever (`State::unclaimed` keeps the last).
    unclaimed_total: AtomicU64,
    /// Held (shared) by an acquire from resolving its names until its command ran, and
    /// (exclusive) by a reload: no acquire runs with the ids of a replaced configuration.
    reconfig: tokio::sync::RwLock<()>,
}

/// Cluster mode: the other nodes' side of "nothing is shown before it is durable". A
/// shared ledger may hold another node's change whose commit (in that node's journal) is
/// still under way; a read here waits until such changes are settled.
pub trait SettledViews: Send + Sync {
    /// Resolves once every change any node made to the shared ledger before this call is
    /// durable (or lost, and being taken back by its node); unavailable if that cannot be
    /// known in time.
    fn settled(&self) -> callgate_backend::BoxFuture<'_, Result<(), Error>>;
}

/// How many ticket ends that found no waiter are kept for a waiter about to register (an
/// acquire whose ticket ended between its command and its registration, a few
/// microseconds). Should more go by in that time, the waiter learns of the end when its
/// wait runs out and it reads the ticket.
pub const UNCLAIMED_KEPT: usize = 1024;

/// The fencing token of this node's duty lease, while it holds it.
type DutyFence = Box<dyn Fn() -> Option<callgate_backend::Fence> + Send + Sync>;

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor").finish_non_exhaustive()
    }
}

/// What an acquire names, before the ledger resolves it.
#[derive(Clone, Debug)]
pub enum Target {
    /// A configured flow.
    Flow(String),
    /// Explicit pools and a class.
    Pools {
        /// `(pool, units)`.
        pools: Vec<(String, u32)>,
        /// Class name.
        class: String,
    },
    /// Explicit pools and a class on behalf of a flow: a campaign's call, which holds its
    /// provider's pool in place of the flow's or runs in the callback class. Every gate
    /// of the flow applies (its breakers count the call as a probe when half-open).
    FlowPools {
        /// The flow whose gates apply.
        flow: String,
        /// `(pool, units)`.
        pools: Vec<(String, u32)>,
        /// Class name.
        class: String,
    },
}

/// An acquire as the edge hands it over.
#[derive(Clone, Debug)]
pub struct AcquireRequest {
    /// Flow or pools.
    pub target: Target,
    /// Idempotency key.
    pub key: Option<String>,
    /// Lease TTL (ms).
    pub ttl_ms: Option<u64>,
    /// How long the ticket may wait (ms).
    pub max_wait_ms: Option<u64>,
    /// How long this call may block waiting for a grant (ms).
    pub wait_ms: u64,
    /// JSON text.
    pub meta: Option<String>,
    /// The edge it came through (a label of the decision latency histogram).
    pub edge: Edge,
}

/// How many leases one page of `GET /v1/leases` looks at, matching its filters or not:
/// at ~100 ns a step, a page holds the ledger's lock for about a millisecond at most.
pub const PAGE_SCAN: usize = 10_000;

/// What `GET /v1/leases` asks for.
#[derive(Clone, Debug)]
pub struct LeaseQuery {
    /// Only leases holding units of this pool.
    pub pool: Option<String>,
    /// Only leases of this flow.
    pub flow: Option<String>,
    /// Only leases of this class.
    pub class: Option<String>,
    /// Only leases whose key starts with this.
    pub key_prefix: Option<String>,
    /// Only leases with a larger id (the cursor; `LeaseId(0)` for the first page).
    pub after: LeaseId,
    /// At most this many leases (at least 1).
    pub limit: usize,
}

/// One page of leases.
#[derive(Clone, Debug)]
pub struct LeasePage {
    /// The leases, by id.
    pub leases: Vec<LeaseView>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<LeaseId>,
}

impl Governor {
    /// A governor over a backend (restored and started) and the store of its records.
    pub fn new(
        backend: Arc<dyn LedgerBackend>,
        records: Arc<dyn Records>,
        clock: Arc<dyn Clock>,
        names: Names,
        overflow: Vec<Option<Overflow>>,
    ) -> Self {
        let ops = Arc::new(callgate_ops::Ops::empty(names.pools.clone(), names.flows.clone()));
        let caps = State::caps_for(names.pools.len());
        Governor {
            state: Mutex::new(State {
                waiters: FxHashMap::default(),
                unclaimed: std::collections::VecDeque::with_capacity(UNCLAIMED_KEPT),
                caps,
                cooldown_due: None,
            }),
            unclaimed_total: AtomicU64::new(0),
            reconfig: tokio::sync::RwLock::new(()),
            backend,
            records,
            clock,
            naming: RwLock::new(Arc::new(Naming::new(names, overflow))),
            ops: OpsSlot::new(ops),
            stopped: std::sync::OnceLock::new(),
            panic_next_tick: std::sync::atomic::AtomicBool::new(false),
            metrics: None,
            duty_fence: std::sync::OnceLock::new(),
            settled_views: None,
        }
    }

    /// Cluster mode: reads ([`Governor::durable_view`]) also wait until `views` says that
    /// what the other nodes changed before the read is durable where they journal it.
    pub fn with_settled_views(mut self, views: Arc<dyn SettledViews>) -> Self {
        self.settled_views = Some(views);
        self
    }

    /// The names of pools, classes and flows (a reload may replace them: hold the
    /// answer for one use, not for good).
    pub fn names(&self) -> Arc<Names> {
        self.naming().names.clone()
    }

    /// Counts the time of each decision (arrival to durable answer) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<callgate_events::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn naming(&self) -> Arc<Naming> {
        read(&self.naming).clone()
    }

    /// The current time on the governor's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Why admission cannot be durable now, if it cannot: the backend's commits fail,
    /// or a background component died.
    pub fn journal_failure(&self) -> Option<String> {
        self.stopped.get().cloned().or_else(|| self.backend.health().failed)
    }

    /// Whether the journal commits (for the `callgate_journal_up` gauge).
    pub fn journal_up(&self) -> bool {
        self.journal_failure().is_none()
    }

    /// The ledger backend, for what only one kind of backend has (the embedded journal's
    /// commit times and its test faults, which the server reaches by downcasting).
    pub fn backend(&self) -> &Arc<dyn LedgerBackend> {
        &self.backend
    }

    /// Resolves once the backend is dead for good (the journal writer thread died).
    pub async fn journal_dead(&self) -> String {
        self.backend.dead().await
    }

    /// Stops admission for good (a background component died): every operation answers
    /// [`ErrorKind::Unavailable`] and `/healthz` fails until the process is restarted.
    pub fn stop_admission(&self, why: String) {
        let _ = self.stopped.set(why);
    }

    /// Makes the next tick panic, before it takes the lock (tests only: the server must
    /// notice a dead ticker).
    #[doc(hidden)]
    pub fn inject_tick_panic(&self) {
        self.panic_next_tick.store(true, Ordering::Relaxed);
    }

    /// Runs `read` (which may take the lock) and answers only once everything it can
    /// have seen is durable: nothing a client reads shows a grant, release or id that a
    /// crash could still take back. Unavailable while commits fail, or when a commit failed
    /// meanwhile (what was read may have been undone).
    pub async fn durable_view<T>(&self, read: impl FnOnce(&Self) -> T) -> Result<T, Error> {
        let before = self.backend.health();
        self.check_healthy()?;
        let out = read(self);
        // Every change `read` saw was executed before it was seen, so its commit is at or
        // below the number handed out by now.
        let seq = self.backend.submitted();
        self.durable(seq).await?;
        if let Some(views) = &self.settled_views {
            views.settled().await?;
        }
        if self.backend.health().epoch != before.epoch {
            return Err(Error::unavailable("the journal failed while this was read; ask again"));
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Held, perhaps across a call to Redis (a sweep, a limit's change), which a stalled
        // Redis keeps for seconds: waited for off tokio's workers, so that the tasks behind
        // this one on its worker go on meanwhile.
        let locked = if self.backend.waits_on_network() {
            callgate_backend::contended(self.state.try_lock(), || self.state.lock())
        } else {
            self.state.lock()
        };
        locked.unwrap_or_else(|p| {
            // A panic while the lock was held may have left an operation half done:
            // nothing more is decided (the watchdog reports the dead component).
            self.stop_admission("a panic while the ledger was being changed".into());
            p.into_inner()
        })
    }

    /// Has the backend execute `cmd`, under the governor's lock `st`, and wakes the
    /// waiters of the tickets it ended (they wait for its commit before they answer).
    /// While the backend cannot commit, nothing runs and the answer is unavailable; the waiters
    /// are let go then (what they waited for may have been taken back).
    fn exec(&self, st: &mut State, cmd: Command) -> Result<Executed, Error> {
        if let Some(why) = self.stopped.get() {
            return Err(Error::unavailable(format!("admission stopped: {why}")));
        }
        let done = match self.backend.execute(cmd) {
            Ok(done) => done,
            Err(e) => {
                if e.kind == ErrorKind::Unavailable {
                    st.waiters.clear();
                }
                return Err(e);
            }
        };
        self.wake(st, &done);
        Ok(done)
    }

    /// Has the backend execute `cmd` *without* the governor's lock (on Redis, many
    /// commands are in flight at once), then wakes the waiters of the tickets it ended.
    /// For the request paths, whose command changes nothing of this node's own state.
    async fn run(&self, cmd: Command) -> Result<Executed, Error> {
        if let Some(why) = self.stopped.get() {
            return Err(Error::unavailable(format!("admission stopped: {why}")));
        }
        match self.backend.execute_async(cmd).await {
            Ok(done) => {
                if done.events.iter().any(ends_ticket) {
                    let mut st = self.lock();
                    self.wake(&mut st, &done);
                }
                Ok(done)
            }
            Err(e) => {
                if e.kind == ErrorKind::Unavailable {
                    self.lock().waiters.clear();
                }
                Err(e)
            }
        }
    }

    /// Tells the waiters of the tickets `done` ended how they ended (they wait for its
    /// commit before they answer).
    fn wake(&self, st: &mut State, done: &Executed) {
        self.wake_events(st, &done.events, done.commit, None);
    }

    /// Events that another node committed to the shared ledger (cluster mode: the node's
    /// follower of the domain's event stream hands over every committed batch, its own
    /// included, in order): the waiters here of the tickets they ended learn how. A
    /// release on one node grants a ticket that waits on another inside the ledger; this
    /// is how the other node's waiter hears of it. A waiter already woken by its own
    /// node's answer is gone, so nothing is told twice. The other node may not have
    /// committed the grant yet (or may never): a waiter here is told only once this node
    /// journaled it too ([`LedgerBackend::vouch`]). `read`: an instant before the events
    /// were read from the stream.
    pub fn committed_elsewhere(&self, events: &[Event], read: std::time::Instant) {
        let mut st = self.lock();
        let commit = self.backend.submitted();
        self.wake_events(&mut st, events, commit, Some(read));
    }

    /// `read`: the events come from the cluster's stream (read after that instant), not
    /// from this node's command (whose commit is `commit`): a grant is vouched for before
    /// its waiter is told.
    fn wake_events(&self, st: &mut State, events: &[Event], commit: u64, read: Option<std::time::Instant>) {
        for e in events {
            let (t, end, grant) = match e {
                Event::Granted { lease, from_ticket: Some((t, _)) } => {
                    (t.0, TicketEnd::Granted(LeaseView::new(lease, &self.names())), read.map(|r| (lease, r)))
                }
                Event::TicketEnded { ticket, outcome, .. } => (
                    ticket.id.0,
                    match outcome {
                        TicketOutcome::TimedOut => TicketEnd::TimedOut(self.flow_overflow(ticket.flow)),
                        TicketOutcome::NeverFits => TicketEnd::NeverFits(self.flow_overflow(ticket.flow)),
                        _ => TicketEnd::Cancelled,
                    },
                    None,
                ),
                _ => continue,
            };
            match st.waiters.remove(&t) {
                Some(ws) => {
                    let commit = grant.map_or(commit, |(l, r)| self.backend.vouch(l, Some(TicketId(t)), r));
                    for w in ws {
                        let _ = w.send((commit, end.clone()));
                    }
                }
                None => {
                    if st.unclaimed.len() == UNCLAIMED_KEPT {
                        st.unclaimed.pop_front();
                    }
                    let vouch = grant.map(|(l, r)| (l.clone(), r));
                    st.unclaimed.push_back(Unclaimed { ticket: t, commit, end, vouch });
                    self.unclaimed_total.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Registers a waiter for ticket `id`, whose acquire ran after `unclaimed_total` was
    /// `seen`: when its end came in between (a wake found no waiter), the waiter hears of
    /// it at once.
    fn register_waiter(&self, id: TicketId, seen: u64) -> oneshot::Receiver<(u64, TicketEnd)> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if self.unclaimed_total.load(Ordering::SeqCst) != seen {
            if let Some(i) = st.unclaimed.iter().rposition(|u| u.ticket == id.0) {
                if let Some(Unclaimed { commit, end, vouch, .. }) = st.unclaimed.remove(i) {
                    let commit = vouch.map_or(commit, |(l, r)| self.backend.vouch(&l, Some(id), r));
                    let _ = tx.send((commit, end));
                    return rx;
                }
            }
        }
        st.waiters.entry(id.0).or_default().push(tx);
        rx
    }

    /// [`Governor::exec`] under a lock of its own.
    fn exec_one(&self, cmd: Command) -> Result<Executed, Error> {
        let mut st = self.lock();
        self.exec(&mut st, cmd)
    }

    /// Waits until commit `commit` is durable.
    async fn durable(&self, commit: u64) -> Result<(), Error> {
        self.backend.durable(commit).await.map_err(durably)
    }

    /// The pool named `name`.
    fn pool_id(&self, name: &str) -> Result<PoolId, Error> {
        self.naming().index[0].get(name).map(|&p| PoolId(p)).ok_or_else(|| unknown_pool(name))
    }

    /// The flow named `name`.
    fn flow_id(&self, name: &str) -> Result<callgate_core::FlowId, Error> {
        self.naming().index[2].get(name).map(|&f| callgate_core::FlowId(f)).ok_or_else(|| unknown_flow(name))
    }

    /// The class named `name`.
    fn class_id(&self, name: &str) -> Result<callgate_core::ClassId, Error> {
        self.naming().index[1].get(name).map(|&c| callgate_core::ClassId(c as u16)).ok_or_else(|| unknown_class(name))
    }

    fn flow_overflow(&self, flow: Option<callgate_core::FlowId>) -> Option<Overflow> {
        // An alert's `set_overflow` stands in for the configured overflow while it fires.
        flow.and_then(|f| {
            self.ops().overflow_override(f.index()).or_else(|| self.naming().overflow.get(f.index()).cloned().flatten())
        })
    }

    fn check_healthy(&self) -> Result<(), Error> {
        match self.journal_failure() {
            Some(why) => Err(Error::unavailable(format!("the journal cannot commit: {why}"))),
            None => Ok(()),
        }
    }

    /// Grant, queue or reject; with `wait_ms`, wait for a queued ticket's grant. Traced
    /// as one `decision` span.
    pub async fn acquire(&self, req: AcquireRequest) -> Result<Answer, Error> {
        self.acquire_as(req, None).await
    }

    /// [`Governor::acquire`] on behalf of the API key named `owner`, which alone (with
    /// admins) may then release, renew or cancel what it gets.
    pub async fn acquire_as(&self, req: AcquireRequest, owner: Option<Arc<str>>) -> Result<Answer, Error> {
        let span = ops::decision_span(&req);
        let answer = tracing::Instrument::instrument(self.acquire_inner(req, owner), span.clone()).await;
        ops::record_decision(&span, &answer);
        answer
    }

    async fn acquire_inner(&self, req: AcquireRequest, owner: Option<Arc<str>>) -> Result<Answer, Error> {
        // Measured on tokio's clock (paused in tests), never read by a decision.
        let arrived = tokio::time::Instant::now();
        self.check_healthy()?;
        let (wait_ms, edge) = (req.wait_ms, req.edge);
        let (answer, waiter, commit) = {
            let epoch = self.reconfig.read().await;
            let mut ledger_req = self.resolve(&req)?;
            ledger_req.owner = owner;
            let flow = match &ledger_req.target {
                callgate_core::Target::Flow(f) => Some(*f),
                _ => None,
            };
            // The flow whose gates apply: the one named, or the one a campaign dials for.
            let gated = match &req.target {
                Target::FlowPools { flow: name, .. } => Some(self.flow_id(name)?),
                _ => flow,
            };
            if let Some(blocked) = self.breaker_gate(gated, req.key.as_deref(), flow.is_some(), self.now_ms()) {
                return Ok(blocked);
            }
            let seen = self.unclaimed_total.load(Ordering::SeqCst);
            let done = self.run(Command::Acquire(ledger_req)).await?;
            let Outcome::Decided { decision, lease, ticket } = done.outcome else {
                return Err(internal("an acquire was not answered with a decision"));
            };
            let mut queued = None;
            let answer = match decision {
                Decision::Granted { .. } => match lease {
                    Some(l) => Answer::Granted(LeaseView::new(&l, &self.names())),
                    // The ledger hands out only live leases; should that ever break, the
                    // caller hears of an internal error rather than the process dying.
                    None => return Err(internal("a granted lease is not live")),
                },
                Decision::Queued { ticket: id, position, eta_ms, deadline, .. } => {
                    queued = Some(id);
                    let key = ticket.and_then(|t| t.key);
                    Answer::Queued(TicketView { id, key, position, eta_ms, deadline_ms: deadline })
                }
                Decision::Rejected { reason, retry_after_ms } => {
                    Answer::Rejected { reason, overflow: self.flow_overflow(flow), retry_after_ms, dependency: None }
                }
            };
            drop(epoch);
            let waiter = match queued {
                Some(id) if wait_ms > 0 => Some((id, self.register_waiter(id, seen))),
                _ => None,
            };
            (answer, waiter, done.commit)
        };
        self.durable(commit).await?;
        if let Some(m) = &self.metrics {
            // The first durable answer: a caller who then waits (`wait_ms`) waits for
            // capacity, not for the decision.
            m.decision_latency(edge, answer.kind(), arrived.elapsed().as_secs_f64());
        }
        match &answer {
            Answer::Granted(l) => tracing::debug!(lease = %l.id, key = ?l.key, class = %l.class, "Granted"),
            Answer::Queued(t) => tracing::debug!(ticket = %t.id, key = ?t.key, position = t.position, "Queued"),
            Answer::Rejected { reason, .. } => tracing::debug!(reason = reason.as_str(), "Rejected"),
        }
        let Some((ticket, rx)) = waiter else { return Ok(answer) };
        match tokio::time::timeout(Duration::from_millis(wait_ms), rx).await {
            Ok(Ok((seq, end))) => {
                self.durable(seq).await?;
                Ok(match end {
                    TicketEnd::Granted(lease) => Answer::Granted(lease),
                    TicketEnd::TimedOut(overflow) => Answer::Rejected {
                        reason: RejectReason::Capacity,
                        overflow,
                        retry_after_ms: 1000,
                        dependency: None,
                    },
                    TicketEnd::NeverFits(overflow) => Answer::Rejected {
                        reason: RejectReason::NeverFits,
                        overflow,
                        retry_after_ms: 0,
                        dependency: None,
                    },
                    TicketEnd::Cancelled => answer,
                })
            }
            // Timed out waiting (or the waiter was dropped): say where it stands now.
            // Answered only once what it reads is on disk (unavailable if that fails).
            _ => match self.durable_view(|g| g.ticket(ticket)).await? {
                Some(TicketState::Waiting(view)) => Ok(Answer::Queued(view)),
                Some(TicketState::Granted(Some(lease), _)) => Ok(Answer::Granted(lease)),
                _ => Ok(answer),
            },
        }
    }

    fn resolve(&self, req: &AcquireRequest) -> Result<Request, Error> {
        let target = match &req.target {
            Target::Flow(name) => callgate_core::Target::Flow(self.flow_id(name)?),
            Target::Pools { pools, class } | Target::FlowPools { pools, class, .. } => {
                let class = self.class_id(class)?;
                let mut units = Vec::with_capacity(pools.len());
                for (name, u) in pools {
                    units.push(callgate_core::PoolUnits { pool: self.pool_id(name)?, units: *u });
                }
                callgate_core::Target::Pools { pools: units.into(), class }
            }
        };
        Ok(Request {
            target,
            key: req.key.as_deref().map(Arc::from),
            ttl_ms: req.ttl_ms,
            max_wait_ms: req.max_wait_ms,
            meta: req.meta.as_deref().map(Arc::from),
            owner: None,
        })
    }

    /// Forbidden (`not_owner`) unless the API key named `who` queued the ticket (`who` is
    /// `None` for an admin, who may act on any). A ticket that is not waiting passes: the
    /// cancel then finds nothing to do. Owners never change and ids are never reused, so
    /// checking an id before the cancel (not under the same lock) decides the same. (A
    /// lease's owner is checked by the command that releases or renews it.)
    pub fn check_ticket_owner(&self, ticket: TicketId, who: Option<&str>) -> Result<(), Error> {
        let Some(who) = who else { return Ok(()) };
        match self.backend.ticket(ticket).and_then(|t| t.ticket) {
            Some(t) if t.owner.as_deref() != Some(who) => Err(not_owner("ticket", ticket, who)),
            _ => Ok(()),
        }
    }

    /// Releases a lease by id; true the first time.
    pub async fn release(&self, id: LeaseId) -> Result<bool, Error> {
        self.release_as(BackendLease::Id(id), None).await
    }

    /// Releases the live lease with this key; true the first time. Forbidden when the key's
    /// lease was acquired by another API key than `who` (`None`: an admin, who may release
    /// any), decided in the same command as the release.
    pub async fn release_key(&self, key: &str, who: Option<&str>) -> Result<bool, Error> {
        self.release_as(BackendLease::Key(Arc::from(key)), who).await
    }

    /// Releases a lease by id for `who`, as [`Governor::release_key`] does by key: the owner
    /// is checked by the command that releases, with no read of the lease before it (a
    /// round trip to Redis in cluster mode).
    pub async fn release_owned(&self, id: LeaseId, who: Option<&str>) -> Result<bool, Error> {
        self.release_as(BackendLease::Id(id), who).await
    }

    async fn release_as(&self, lease: BackendLease, who: Option<&str>) -> Result<bool, Error> {
        let done = self.run(Command::Release { lease, owner: who.map(Arc::from) }).await?;
        self.durable(done.commit).await?;
        match done.outcome {
            Outcome::NotOwner(id) => Err(not_owner("lease", id, who.unwrap_or_default())),
            outcome => Ok(matches!(outcome, Outcome::Released(Some(_)))),
        }
    }

    /// Renews a live lease. Forbidden (`not_owner`) when another API key than `who`
    /// acquired it (`None`: an admin, who may renew any), decided in the command that
    /// renews.
    pub async fn renew(&self, id: LeaseId, ttl_ms: Option<u64>, who: Option<&str>) -> Result<Option<LeaseView>, Error> {
        self.check_healthy()?;
        let done = self.run(Command::Renew { lease: BackendLease::Id(id), ttl_ms, owner: who.map(Arc::from) }).await?;
        self.durable(done.commit).await?;
        match done.outcome {
            Outcome::NotOwner(id) => Err(not_owner("lease", id, who.unwrap_or_default())),
            Outcome::Renewed(l) => Ok(l.map(|l| LeaseView::new(&l, &self.names()))),
            _ => Ok(None),
        }
    }

    /// Cancels a waiting ticket. `None` when the ticket is unknown; `Some(false)` when
    /// it has already ended.
    pub async fn cancel(&self, id: TicketId) -> Result<Option<bool>, Error> {
        let done = self.run(Command::Cancel(id)).await?;
        self.durable(done.commit).await?;
        Ok(match done.outcome {
            Outcome::Cancelled(out) => out,
            _ => None,
        })
    }

    /// A ticket's state, or `None` when unknown (or forgotten after the retention time).
    /// A live lease it was granted is journaled here first ([`LedgerBackend::vouch`]: in
    /// cluster mode another node's release may have granted it): read it through
    /// [`Governor::durable_view`], which waits for that commit.
    pub fn ticket(&self, id: TicketId) -> Option<TicketState> {
        let seen = tokio::time::Instant::now().into_std();
        let read = self.backend.ticket(id)?;
        Some(match read.status {
            TicketStatus::Waiting { position, eta_ms, deadline } => TicketState::Waiting(TicketView {
                id,
                key: read.ticket.and_then(|t| t.key),
                position,
                eta_ms,
                deadline_ms: deadline,
            }),
            TicketStatus::Ended { outcome: TicketOutcome::Granted(lease), .. } => {
                let live = self.backend.lease(lease);
                if let Some(l) = &live {
                    self.backend.vouch(l, Some(id), seen);
                }
                TicketState::Granted(live.map(|l| LeaseView::new(&l, &self.names())), lease)
            }
            TicketStatus::Ended { outcome: TicketOutcome::Cancelled, .. } => TicketState::Cancelled,
            TicketStatus::Ended { outcome: TicketOutcome::TimedOut, flow, .. } => {
                TicketState::TimedOut(self.flow_overflow(flow))
            }
            TicketStatus::Ended { outcome: TicketOutcome::NeverFits, flow, .. } => {
                TicketState::NeverFits(self.flow_overflow(flow))
            }
        })
    }

    /// Live leases, optionally of one pool.
    pub fn leases(&self, pool: Option<&str>) -> Result<Vec<LeaseView>, Error> {
        let pool = pool.map(|name| self.pool_id(name)).transpose()?;
        let mut live: Vec<Lease> = self.backend.leases();
        live.retain(|l| pool.is_none_or(|p| l.pools.iter().any(|pu| pu.pool == p)));
        live.sort_by_key(|l| (l.granted_at, l.id));
        Ok(live.iter().map(|l| LeaseView::new(l, &self.names())).collect())
    }

    /// One page of the live leases (`GET /v1/leases`), by id from `q.after`. The backend
    /// looks at no more than [`PAGE_SCAN`] leases for it, so a page costs a bounded time
    /// however many leases are live; the JSON views are built afterwards.
    pub fn leases_page(&self, q: &LeaseQuery) -> Result<LeasePage, Error> {
        let filter = LeaseFilter {
            pool: q.pool.as_deref().map(|n| self.pool_id(n)).transpose()?,
            flow: q.flow.as_deref().map(|n| self.flow_id(n)).transpose()?,
            class: q.class.as_deref().map(|n| self.class_id(n)).transpose()?,
            key_prefix: q.key_prefix.clone(),
        };
        let (page, next) = self.backend.leases_page(q.after, &filter, q.limit.max(1), PAGE_SCAN);
        Ok(LeasePage { leases: page.iter().map(|l| LeaseView::new(l, &self.names())).collect(), next })
    }

    /// Every pool.
    pub fn pools(&self) -> Vec<PoolInfo> {
        self.backend.pools().iter().map(|p| PoolInfo::new(p, &self.names())).collect()
    }

    /// One pool.
    pub fn pool(&self, name: &str) -> Result<PoolInfo, Error> {
        let id = self.pool_id(name)?;
        let pools = self.backend.pools();
        let p = pools.get(id.index()).ok_or_else(|| unknown_pool(name))?;
        Ok(PoolInfo::new(p, &self.names()))
    }

    /// Changes a pool's limit at runtime (durably). Lowering it ends the waiting tickets
    /// that can no longer fit (`never_fits`; their waiters learn it like a time-out).
    pub async fn set_limit(&self, name: &str, limit: u32) -> Result<PoolInfo, Error> {
        self.change_limit(name, limit, false).await
    }

    /// [`Governor::set_limit`], as a duty's command (an alert's action) when `duty`: then
    /// fenced with the duty lease's token in cluster mode (see [`Governor::fence_duties`]).
    pub(crate) async fn change_limit(&self, name: &str, limit: u32, duty: bool) -> Result<PoolInfo, Error> {
        self.check_healthy()?;
        let id = self.pool_id(name)?;
        let cmd = Command::SetLimit { pool: id, limit };
        let cmd = if duty { self.duty_command(cmd)? } else { cmd };
        let commit = {
            let mut st = self.lock();
            let mut done = self.exec(&mut st, cmd)?;
            // An adaptive cap keeps within the new limit.
            if let Some(change) = self.ops().limit_changed(id.index(), limit, done.now) {
                if let Some(capped) = self.set_adaptive_cap(&mut st, id.index(), change.to)? {
                    done = capped;
                }
            }
            done.commit
        };
        self.durable(commit).await?;
        self.pool(name)
    }

    /// Cluster mode: the singleton duties' commands that change the shared ledger (the
    /// sweep of [`Governor::tick`], a reconciliation's [`Governor::repair`], an alert's
    /// limit change) are sent as
    /// [`Command::Fenced`] with the token `fence` answers, and not at all while it answers
    /// `None` (this node does not hold the duty lease). Set once, before the duties start.
    pub fn fence_duties(&self, fence: impl Fn() -> Option<callgate_backend::Fence> + Send + Sync + 'static) {
        let _ = self.duty_fence.set(Box::new(fence));
    }

    /// `cmd` as a duty's command: fenced with this node's duty token in cluster mode;
    /// refused when this node does not hold the duty lease.
    pub(crate) fn duty_command(&self, cmd: Command) -> Result<Command, Error> {
        match self.duty_fence.get() {
            None => Ok(cmd),
            Some(fence) => match fence() {
                Some(fence) => Ok(Command::Fenced { fence, cmd: Box::new(cmd) }),
                None => Err(Error::conflict("fenced", "this node does not hold the duty lease")),
            },
        }
    }

    /// Expires leases and times out tickets that are due. The server calls this on a
    /// short interval, so deadlines hold even when no request arrives.
    pub fn tick(&self) {
        if self.panic_next_tick.swap(false, Ordering::Relaxed) {
            panic!("injected fault: the ticker panicked");
        }
        let cmd = match self.duty_command(Command::Tick) {
            Ok(cmd) => cmd,
            Err(_) => return self.tick_local(),
        };
        // Cheap when nothing is due: two heap peeks, forgetting old ticket outcomes, and
        // one comparison for the refusals' cooldowns.
        let mut st = self.lock();
        match self.exec(&mut st, cmd) {
            Ok(done) => {
                let _ = self.expire_cooldowns(&mut st, done.now);
            }
            Err(e) if e.code == "fenced" => {
                tracing::warn!(error = %e.message, "The sweep was refused: another node runs the duties now");
                let now = self.now_ms();
                let _ = self.expire_cooldowns(&mut st, now);
            }
            Err(_) => {}
        }
    }

    /// What a node that does not sweep the shared ledger still ticks (cluster mode: one
    /// node at a time runs [`Governor::tick`], the others this): the end of this node's
    /// cooldowns, which are its own cap sources.
    pub fn tick_local(&self) {
        let mut st = self.lock();
        let now = self.now_ms();
        let _ = self.expire_cooldowns(&mut st, now);
    }
}

/// Whether `e` ends a waiting ticket (its waiter, if any, is to be told).
fn ends_ticket(e: &Event) -> bool {
    matches!(e, Event::Granted { from_ticket: Some(_), .. } | Event::TicketEnded { .. })
}

fn not_owner(what: &str, id: impl std::fmt::Display, who: &str) -> Error {
    Error::forbidden(
        "not_owner",
        format!("{what} {id} was not acquired with key `{who}`; only its own key or an admin may act on it"),
    )
}

pub(crate) fn unknown_flow(name: &str) -> Error {
    Error::not_found("unknown_flow", format!("no flow named `{name}`"))
}

fn unknown_class(name: &str) -> Error {
    Error::not_found("unknown_class", format!("no class named `{name}`"))
}

fn unknown_pool(name: &str) -> Error {
    Error::not_found("unknown_pool", format!("no pool named `{name}`"))
}

impl Governor {
    /// After a restore: expires what fell due while the server was down and grants what
    /// now fits.
    pub fn settle(&self) {
        let _ = self.exec_one(Command::Settle);
    }
}

/// A failure to make something durable, as the caller hears of it.
fn durably(e: Error) -> Error {
    match e.kind {
        ErrorKind::Unavailable => e.context("cannot record the decision durably"),
        _ => e,
    }
}

fn internal(message: &str) -> Error {
    Error::internal(message)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
