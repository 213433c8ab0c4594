//! The governor: the only owner of the ledger in a running server.
//!
//! Every operation takes the lock, asks the ledger, hands the events it produced to the
//! journal (in ledger order, still under the lock), releases the lock and then waits
//! until the journal says the events are durable. Only then does the edge answer. A
//! request that waits in the room (`wait_ms`) registers a waiter under the same lock, so
//! the grant that ends its ticket can never slip by unnoticed.
//!
//! Nothing is shown before it is durable: reads that a client sees go through
//! [`Governor::durable_view`], which answers once everything the read saw is committed.
//! When a commit fails, the next operation under the lock rebuilds the ledger from the
//! journal (the last durable state) and every operation answers 503 until a probe commit
//! succeeds (see `recover`); what was applied in memory after the last commit is gone,
//! and so are the answers it would have given (they were 503 too).

mod calls;
mod caps;
mod ops;
mod restore;

pub use calls::{CallEnd, Hold, ProviderHold, Repaired};
pub use caps::CapSourcesView;
pub use ops::{LeaseRef, Report, WaitingView, MAX_WAITING_LISTED};
pub(crate) use restore::restore;

use crate::clock::Clock;
use crate::error::{ApiError, ErrorKind};
use crate::views::{LeaseView, PoolInfo, TicketView};
use callgate_core::{
    Decision, Event, LeaseId, Ledger, PoolId, RejectReason, Request, RequestError, TicketId, TicketOutcome,
    TicketStatus,
};
use callgate_store::{Journal, Names};
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
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
    TimedOut(Option<serde_json::Value>),
    /// Ended because a pool's limit dropped below what it asks for: the flow's overflow.
    NeverFits(Option<serde_json::Value>),
}

/// The answer to an acquire.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200.
    Granted(LeaseView),
    /// 202.
    Queued(TicketView),
    /// 429 (409 for `never_fits`).
    Rejected {
        /// Why.
        reason: RejectReason,
        /// The flow's first overflow action (its fallback when `dependency` is set).
        overflow: Option<serde_json::Value>,
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
    TimedOut(Option<serde_json::Value>),
    /// Ended because it can never fit (a pool's limit was lowered), with the flow's
    /// overflow.
    NeverFits(Option<serde_json::Value>),
    /// Cancelled.
    Cancelled,
}

struct State {
    ledger: Ledger,
    waiters: FxHashMap<u64, Vec<oneshot::Sender<(u64, TicketEnd)>>>,
    /// [pool] → what lowers its cap (see `caps`); the only input of `Ledger::set_cap`.
    caps: Vec<caps::CapSources>,
    /// The earliest end of a refusal's cooldown, if any runs.
    cooldown_due: Option<u64>,
    /// The journal failure epoch the ledger was last rebuilt from disk for (0: none).
    rebuilt_epoch: u64,
    /// When to probe the journal again while commits fail (governor clock, Unix ms).
    next_probe_at: u64,
}

/// While commits fail, how often the journal is probed with a fresh commit: often
/// enough that admission resumes within a second or so of the disk having room, rarely
/// enough that a broken disk is not hammered.
const PROBE_EVERY_MS: u64 = 1_000;

/// Owns the ledger and the journal.
pub struct Governor {
    state: Mutex<State>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    names: Names,
    /// The first overflow action of each flow, by flow index, as JSON.
    overflow: Vec<Option<serde_json::Value>>,
    /// Adaptive caps, breakers, alerts (see [`Governor::with_ops`]).
    ops: Arc<crate::ops::Ops>,
    /// What the ledger is built from, to rebuild it from the journal after a failed
    /// commit (see [`Governor::with_spec`]).
    spec: Option<callgate_core::LedgerSpec>,
    /// Set when a background component died: admission stays stopped until a restart.
    stopped: std::sync::OnceLock<String>,
    /// A test's request that the next tick panic (see [`Governor::inject_tick_panic`]).
    panic_next_tick: std::sync::atomic::AtomicBool,
    /// Where the decision latency is counted (see [`Governor::with_metrics`]).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

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

/// The edge a request came through: a fixed list, so the labels of
/// `callgate_decision_seconds` are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// `POST /v1/acquire`.
    Api,
    /// A Vapi webhook.
    Vapi,
    /// A Twilio webhook.
    Twilio,
    /// The campaign dialer.
    Campaign,
    /// Reconciliation adopting a live platform call callgate did not know.
    Reconcile,
    /// `callgate demo`'s simulated callers.
    Demo,
}

impl Edge {
    /// Every edge, in label order.
    pub const ALL: [Edge; 6] = [Edge::Api, Edge::Vapi, Edge::Twilio, Edge::Campaign, Edge::Reconcile, Edge::Demo];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Api => "api",
            Edge::Vapi => "vapi",
            Edge::Twilio => "twilio",
            Edge::Campaign => "campaign",
            Edge::Reconcile => "reconcile",
            Edge::Demo => "demo",
        }
    }
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
    /// A governor over a restored ledger and a started journal.
    pub fn new(
        ledger: Ledger,
        journal: Journal,
        clock: Arc<dyn Clock>,
        names: Names,
        overflow: Vec<Option<serde_json::Value>>,
    ) -> Self {
        let ops = Arc::new(crate::ops::Ops::empty(names.pools.clone(), names.flows.clone()));
        let caps = State::caps_for(ledger.pool_count());
        Governor {
            state: Mutex::new(State {
                ledger,
                waiters: FxHashMap::default(),
                caps,
                cooldown_due: None,
                rebuilt_epoch: 0,
                next_probe_at: 0,
            }),
            journal,
            clock,
            names,
            overflow,
            ops,
            spec: None,
            stopped: std::sync::OnceLock::new(),
            panic_next_tick: std::sync::atomic::AtomicBool::new(false),
            metrics: None,
        }
    }

    /// Counts the time of each decision (arrival to durable answer) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The specification the ledger was built from: after a failed commit the governor
    /// rebuilds the ledger from it and the journal (the last durable state). Without it
    /// a failed commit stops admission until a restart.
    pub fn with_spec(mut self, spec: callgate_core::LedgerSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// The names of pools, classes and flows.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The current time on the governor's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Why admission cannot be durable now, if it cannot: the journal's commits fail,
    /// or a background component died.
    pub fn journal_failure(&self) -> Option<String> {
        self.stopped.get().cloned().or_else(|| self.journal.failure())
    }

    /// Whether the journal commits (for the `callgate_journal_up` gauge).
    pub fn journal_up(&self) -> bool {
        self.journal_failure().is_none()
    }

    /// How long the journal's commits took (for `callgate_journal_commit_seconds`).
    pub fn commit_times(&self) -> &callgate_store::CommitTimes {
        self.journal.commit_times()
    }

    /// Resolves once the journal writer thread has died.
    pub async fn journal_dead(&self) -> String {
        self.journal.dead().await
    }

    /// Stops admission for good (a background component died): every operation answers
    /// 503 and `/healthz` fails until the process is restarted.
    pub fn stop_admission(&self, why: String) {
        let _ = self.stopped.set(why);
    }

    /// Injects a fault into the journal writer (tests only).
    #[doc(hidden)]
    pub fn inject_journal_fault(&self, fault: callgate_store::Fault) {
        self.journal.inject_fault(fault);
    }

    /// Makes the next tick panic, before it takes the lock (tests only: the server must
    /// notice a dead ticker).
    #[doc(hidden)]
    pub fn inject_tick_panic(&self) {
        self.panic_next_tick.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `read` (which may take the lock) and answers only once everything it can
    /// have seen is on disk: nothing a client reads shows a grant, release or id that a
    /// crash could still take back. 503 while commits fail, or when a commit failed
    /// meanwhile (what was read may have been undone).
    pub async fn durable_view<T>(&self, read: impl FnOnce(&Self) -> T) -> Result<T, ApiError> {
        let before = self.journal.health();
        self.check_healthy()?;
        let out = read(self);
        // Every change `read` saw was submitted under the lock before it was seen, so
        // it is at or below the number handed out by now.
        let seq = self.journal.submitted();
        self.journal.durable(seq).await?;
        if self.journal.health().epoch != before.epoch {
            return Err(ApiError::unavailable("the journal failed while this was read; ask again"));
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would leave a half-applied operation: reads
        // still see the ledger, but `apply` stops admission for good.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the ledger under the lock, hands its events to the journal and wakes
    /// the waiters of tickets that ended. Returns the op's result and the journal
    /// sequence number to wait for.
    ///
    /// While the journal cannot commit, nothing runs: the ledger is put back to what is
    /// on disk (once per failure), the journal is probed now and then, and the answer is
    /// 503 until a probe commits.
    fn apply<R>(&self, op: impl FnOnce(&mut State, u64) -> R) -> Result<(R, u64), ApiError> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if self.state.is_poisoned() {
            // A panic while the ledger was being changed may have left it half-changed:
            // nothing more is decided on it (the watchdog reports the dead component).
            self.stop_admission("a panic while the ledger was being changed".into());
        }
        self.writable(&mut st, now)?;
        let out = op(&mut st, now);
        let events: Vec<Event> = st.ledger.drain_events().collect();
        let holds = mean_holds(&st.ledger, &events);
        let mut ended: Vec<(u64, TicketEnd)> = Vec::new();
        if !st.waiters.is_empty() {
            for e in &events {
                match e {
                    Event::Granted { lease, from_ticket: Some((t, _)) } => {
                        ended.push((t.0, TicketEnd::Granted(LeaseView::new(lease, &self.names))))
                    }
                    Event::TicketEnded { ticket, outcome, .. } => ended.push((
                        ticket.id.0,
                        match outcome {
                            TicketOutcome::TimedOut => TicketEnd::TimedOut(self.flow_overflow(ticket.flow)),
                            TicketOutcome::NeverFits => TicketEnd::NeverFits(self.flow_overflow(ticket.flow)),
                            _ => TicketEnd::Cancelled,
                        },
                    )),
                    _ => {}
                }
            }
        }
        let (next_id, next_seq) = (st.ledger.next_id(), st.ledger.next_seq());
        let seq = self.journal.submit_with(events, next_id, next_seq, holds);
        for (t, end) in ended {
            if let Some(ws) = st.waiters.remove(&t) {
                for w in ws {
                    let _ = w.send((seq, end.clone()));
                }
            }
        }
        Ok((out, seq))
    }

    /// `Ok` when the journal commits; otherwise recovers what it can and says why not.
    /// Under the lock.
    fn writable(&self, st: &mut State, now: u64) -> Result<(), ApiError> {
        if let Some(why) = self.stopped.get() {
            return Err(ApiError::unavailable(format!("admission stopped: {why}")));
        }
        let health = self.journal.health();
        let Some(why) = &health.failed else { return Ok(()) };
        self.recover(st, &health, now);
        Err(ApiError::unavailable(format!("the journal cannot commit: {why}")))
    }

    /// After a failed commit: puts the ledger back to the last durable state (every
    /// change after it was answered 503 and is forgotten: no phantom lease keeps a unit),
    /// then probes the journal until a commit succeeds again. Under the lock.
    fn recover(&self, st: &mut State, health: &callgate_store::Health, now: u64) {
        if health.dead {
            return; // nothing will commit again; the server exits (see `serve`)
        }
        if st.rebuilt_epoch != health.epoch {
            match self.rebuild(st, now) {
                Ok(()) => {
                    st.rebuilt_epoch = health.epoch;
                    st.next_probe_at = now;
                    tracing::warn!(
                        leases = st.ledger.lease_count(),
                        tickets = st.ledger.ticket_count(),
                        "The ledger is back to its last durable state"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "Cannot rebuild the ledger from the journal; admission stays stopped");
                    return;
                }
            }
        }
        if now >= st.next_probe_at {
            st.next_probe_at = now.saturating_add(PROBE_EVERY_MS);
            self.journal.probe(health.epoch, st.ledger.next_id(), st.ledger.next_seq());
        }
    }

    fn rebuild(&self, st: &mut State, now: u64) -> Result<(), String> {
        let spec = self.spec.as_ref().ok_or("the governor has no ledger spec to rebuild from")?;
        let restored = self.journal.reload().map_err(|e| e.to_string())?;
        let mut ledger = Ledger::new(spec).map_err(|e| format!("configuration: {e}"))?;
        restore(&mut ledger, &restored, now);
        // Ids handed out in memory were never shown (nothing is before it is durable),
        // but they are not handed out again either.
        ledger.restore_counters(st.ledger.next_id(), st.ledger.next_seq());
        for (p, sources) in st.caps.iter().enumerate() {
            if sources.applied().is_some() {
                ledger.set_cap(PoolId(p as u32), sources.applied(), now);
            }
        }
        ledger.drain_events().for_each(drop);
        st.ledger = ledger;
        // The ends they wait for were lost; they answer 503 from the journal's failure.
        st.waiters.clear();
        Ok(())
    }

    fn flow_overflow(&self, flow: Option<callgate_core::FlowId>) -> Option<serde_json::Value> {
        // An alert's `set_overflow` stands in for the configured overflow while it fires.
        flow.and_then(|f| self.ops.overflow_json(f.index()).or_else(|| self.overflow.get(f.index()).cloned().flatten()))
    }

    fn check_healthy(&self) -> Result<(), ApiError> {
        match self.journal_failure() {
            Some(why) => Err(ApiError::unavailable(format!("the journal cannot commit: {why}"))),
            None => Ok(()),
        }
    }

    /// Grant, queue or reject; with `wait_ms`, wait for a queued ticket's grant. Traced
    /// as one `decision` span.
    pub async fn acquire(&self, req: AcquireRequest) -> Result<Answer, ApiError> {
        self.acquire_as(req, None).await
    }

    /// [`Governor::acquire`] on behalf of the API key named `owner`, which alone (with
    /// admins) may then release, renew or cancel what it gets.
    pub async fn acquire_as(&self, req: AcquireRequest, owner: Option<Arc<str>>) -> Result<Answer, ApiError> {
        let span = ops::decision_span(&req);
        let answer = tracing::Instrument::instrument(self.acquire_inner(req, owner), span.clone()).await;
        ops::record_decision(&span, &answer);
        answer
    }

    async fn acquire_inner(&self, req: AcquireRequest, owner: Option<Arc<str>>) -> Result<Answer, ApiError> {
        // Measured on tokio's clock (paused in tests), never read by a decision.
        let arrived = tokio::time::Instant::now();
        self.check_healthy()?;
        let (wait_ms, edge) = (req.wait_ms, req.edge);
        let (result, seq) = self.apply(|st, now| {
            let mut ledger_req = self.resolve(&st.ledger, &req)?;
            ledger_req.owner = owner;
            let flow = match &ledger_req.target {
                callgate_core::Target::Flow(f) => Some(*f),
                _ => None,
            };
            // The flow whose gates apply: the one named, or the one a campaign dials for.
            let gated = match &req.target {
                Target::FlowPools { flow: name, .. } => {
                    Some(st.ledger.flow_id(name).ok_or_else(|| unknown_flow(name))?)
                }
                _ => flow,
            };
            if let Some(blocked) = self.breaker_gate(st, gated, req.key.as_deref(), flow.is_some(), now) {
                return Ok((blocked, None));
            }
            let decision = st.ledger.acquire(ledger_req, now).map_err(request_error)?;
            let mut queued = None;
            let answer = match decision {
                Decision::Granted { lease, .. } => match st.ledger.lease(lease) {
                    Some(l) => Answer::Granted(LeaseView::new(l, &self.names)),
                    // The ledger hands out only live leases; should that ever break, the
                    // caller hears of an internal error rather than the process dying.
                    None => return Err(ApiError::new(ErrorKind::Internal, "internal", "a granted lease is not live")),
                },
                Decision::Queued { ticket, position, eta_ms, deadline, .. } => {
                    let key = st.ledger.ticket(ticket).and_then(|t| t.key.clone());
                    queued = Some(ticket);
                    Answer::Queued(TicketView { id: ticket.to_string(), key, position, eta_ms, deadline_ms: deadline })
                }
                Decision::Rejected { reason, retry_after_ms } => {
                    Answer::Rejected { reason, overflow: self.flow_overflow(flow), retry_after_ms, dependency: None }
                }
            };
            let waiter = match queued {
                Some(id) if wait_ms > 0 => {
                    let (tx, rx) = oneshot::channel();
                    st.waiters.entry(id.0).or_default().push(tx);
                    Some((id, rx))
                }
                _ => None,
            };
            Ok::<_, ApiError>((answer, waiter))
        })?;
        let (answer, waiter) = result?;
        self.journal.durable(seq).await?;
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
                self.journal.durable(seq).await?;
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
            // Answered only once what it reads is on disk (503 if that fails).
            _ => match self.durable_view(|g| g.ticket(ticket)).await? {
                Some(TicketState::Waiting(view)) => Ok(Answer::Queued(view)),
                Some(TicketState::Granted(Some(lease), _)) => Ok(Answer::Granted(lease)),
                _ => Ok(answer),
            },
        }
    }

    fn resolve(&self, ledger: &Ledger, req: &AcquireRequest) -> Result<Request, ApiError> {
        let target = match &req.target {
            Target::Flow(name) => callgate_core::Target::Flow(ledger.flow_id(name).ok_or_else(|| unknown_flow(name))?),
            Target::Pools { pools, class } | Target::FlowPools { pools, class, .. } => {
                let class = ledger.class_id(class).ok_or_else(|| unknown_class(class))?;
                let mut units = Vec::with_capacity(pools.len());
                for (name, u) in pools {
                    let pool = ledger
                        .pool_id(name)
                        .ok_or_else(|| ApiError::not_found("unknown_pool", format!("no pool named `{name}`")))?;
                    units.push(callgate_core::PoolUnits { pool, units: *u });
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

    /// 403 unless the API key named `who` acquired the lease (`who` is `None` for an
    /// admin, who may act on any). A lease that is not live passes: the operation then
    /// finds nothing to do. Owners never change and ids are never reused, so checking an
    /// id before the operation (not under the same lock) decides the same. A key can be
    /// taken again by another client in between: release by key checks under the lock
    /// that releases ([`Governor::release_key`]).
    pub fn check_lease_owner(&self, id: LeaseId, who: Option<&str>) -> Result<(), ApiError> {
        match self.lock().ledger.lease(id) {
            Some(l) => owned_by(l, who),
            None => Ok(()),
        }
    }

    /// [`Governor::check_lease_owner`] for a waiting ticket.
    pub fn check_ticket_owner(&self, ticket: TicketId, who: Option<&str>) -> Result<(), ApiError> {
        let Some(who) = who else { return Ok(()) };
        let st = self.lock();
        match st.ledger.ticket(ticket) {
            Some(t) if t.owner.as_deref() != Some(who) => Err(not_owner("ticket", ticket.to_string(), who)),
            _ => Ok(()),
        }
    }

    /// Releases a lease by id; true the first time.
    pub async fn release(&self, id: LeaseId) -> Result<bool, ApiError> {
        let (released, seq) = self.apply(|st, now| st.ledger.release(id, now))?;
        self.journal.durable(seq).await?;
        Ok(released)
    }

    /// Releases the live lease with this key; true the first time. 403 when the key's
    /// lease was acquired by another API key than `who` (see [`Governor::check_lease_owner`]),
    /// decided under the same lock as the release.
    pub async fn release_key(&self, key: &str, who: Option<&str>) -> Result<bool, ApiError> {
        let (released, seq) = self.apply(|st, now| {
            if let Some(l) = st.ledger.lease_by_key(key) {
                owned_by(l, who)?;
            }
            Ok::<_, ApiError>(st.ledger.release_key(key, now).is_some())
        })?;
        let released = released?;
        self.journal.durable(seq).await?;
        Ok(released)
    }

    /// Renews a live lease.
    pub async fn renew(&self, id: LeaseId, ttl_ms: Option<u64>) -> Result<Option<LeaseView>, ApiError> {
        self.check_healthy()?;
        let (view, seq) =
            self.apply(|st, now| st.ledger.renew(id, ttl_ms, now).map(|l| LeaseView::new(l, &self.names)))?;
        self.journal.durable(seq).await?;
        Ok(view)
    }

    /// Cancels a waiting ticket. `None` when the ticket is unknown; `Some(false)` when
    /// it has already ended.
    pub async fn cancel(&self, id: TicketId) -> Result<Option<bool>, ApiError> {
        let (out, seq) = self.apply(|st, now| {
            if st.ledger.cancel(id, now) {
                Some(true)
            } else {
                st.ledger.ticket_status(id).map(|_| false)
            }
        })?;
        self.journal.durable(seq).await?;
        Ok(out)
    }

    /// A ticket's state, or `None` when unknown (or forgotten after the retention time).
    pub fn ticket(&self, id: TicketId) -> Option<TicketState> {
        let st = self.lock();
        let status = st.ledger.ticket_status(id)?;
        Some(match status {
            TicketStatus::Waiting { position, eta_ms, deadline } => TicketState::Waiting(TicketView {
                id: id.to_string(),
                key: st.ledger.ticket(id).and_then(|t| t.key.clone()),
                position,
                eta_ms,
                deadline_ms: deadline,
            }),
            TicketStatus::Ended { outcome: TicketOutcome::Granted(lease), .. } => {
                TicketState::Granted(st.ledger.lease(lease).map(|l| LeaseView::new(l, &self.names)), lease)
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
    pub fn leases(&self, pool: Option<&str>) -> Result<Vec<LeaseView>, ApiError> {
        let st = self.lock();
        let pool = match pool {
            Some(name) => Some(st.ledger.pool_id(name).ok_or_else(|| unknown_pool(name))?),
            None => None,
        };
        let mut live: Vec<&callgate_core::Lease> =
            st.ledger.leases().filter(|l| pool.is_none_or(|p| l.pools.iter().any(|pu| pu.pool == p))).collect();
        live.sort_by_key(|l| (l.granted_at, l.id));
        Ok(live.into_iter().map(|l| LeaseView::new(l, &self.names)).collect())
    }

    /// One page of the live leases (`GET /v1/leases`), by id from `q.after`. Under the
    /// lock it only clones at most [`PAGE_SCAN`] leases' handles (`Arc`s), so the lock is
    /// held for a bounded time however many leases are live; the JSON views are built
    /// after it is released.
    pub fn leases_page(&self, q: &LeaseQuery) -> Result<LeasePage, ApiError> {
        let (page, next) = {
            let st = self.lock();
            let ledger = &st.ledger;
            let pool = q.pool.as_deref().map(|n| ledger.pool_id(n).ok_or_else(|| unknown_pool(n))).transpose()?;
            let flow = q.flow.as_deref().map(|n| ledger.flow_id(n).ok_or_else(|| unknown_flow(n))).transpose()?;
            let class = q.class.as_deref().map(|n| ledger.class_id(n).ok_or_else(|| unknown_class(n))).transpose()?;
            let limit = q.limit.max(1);
            let mut page: Vec<callgate_core::Lease> = Vec::with_capacity(limit.min(128));
            let (mut last, mut more) = (None, false);
            for (scanned, l) in ledger.leases_after(q.after).enumerate() {
                if page.len() == limit || scanned == PAGE_SCAN {
                    more = true;
                    break;
                }
                last = Some(l.id);
                let fits = pool.is_none_or(|p| l.pools.iter().any(|pu| pu.pool == p))
                    && flow.is_none_or(|f| l.flow == Some(f))
                    && class.is_none_or(|c| l.class == c)
                    && q.key_prefix.as_deref().is_none_or(|k| l.key.as_deref().is_some_and(|lk| lk.starts_with(k)));
                if fits {
                    page.push(l.clone());
                }
            }
            (page, if more { last } else { None })
        };
        Ok(LeasePage { leases: page.iter().map(|l| LeaseView::new(l, &self.names)).collect(), next })
    }

    /// Every pool.
    pub fn pools(&self) -> Vec<PoolInfo> {
        let st = self.lock();
        st.ledger.pools().iter().map(|p| PoolInfo::new(p, &self.names)).collect()
    }

    /// One pool.
    pub fn pool(&self, name: &str) -> Result<PoolInfo, ApiError> {
        let st = self.lock();
        let id = st.ledger.pool_id(name).ok_or_else(|| unknown_pool(name))?;
        Ok(PoolInfo::new(&st.ledger.pool(id), &self.names))
    }

    /// Changes a pool's limit at runtime (durably). Lowering it ends the waiting tickets
    /// that can no longer fit (`never_fits`; their waiters learn it like a time-out).
    pub async fn set_limit(&self, name: &str, limit: u32) -> Result<PoolInfo, ApiError> {
        self.check_healthy()?;
        let (out, seq) = self.apply(|st, now| {
            let id: PoolId = st.ledger.pool_id(name).ok_or_else(|| unknown_pool(name))?;
            st.ledger.set_limit(id, limit, now);
            // An adaptive cap keeps within the new limit.
            if let Some(change) = self.ops.limit_changed(id.index(), limit, now) {
                self.set_adaptive_cap(st, id.index(), change.to, now);
            }
            Ok::<_, ApiError>(PoolInfo::new(&st.ledger.pool(id), &self.names))
        })?;
        let out = out?;
        self.journal.durable(seq).await?;
        Ok(out)
    }

    /// Expires leases and times out tickets that are due. The server calls this on a
    /// short interval, so deadlines hold even when no request arrives.
    pub fn tick(&self) {
        if self.panic_next_tick.swap(false, std::sync::atomic::Ordering::Relaxed) {
            panic!("injected fault: the ticker panicked");
        }
        // Cheap when nothing is due: two heap peeks, forgetting old ticket outcomes, and
        // one comparison for the refusals' cooldowns.
        let _ = self.apply(|st, now| {
            st.ledger.tick(now);
            self.expire_cooldowns(st, now);
        });
    }
}

/// 403 unless `who` (`None`: an admin, or no keys configured) acquired the lease.
fn owned_by(lease: &callgate_core::Lease, who: Option<&str>) -> Result<(), ApiError> {
    match who {
        Some(who) if lease.owner.as_deref() != Some(who) => Err(not_owner("lease", lease.id.to_string(), who)),
        _ => Ok(()),
    }
}

fn not_owner(what: &str, id: String, who: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        "not_owner",
        format!("{what} {id} was not acquired with key `{who}`; only its own key or an admin may act on it"),
    )
}

/// `(pool index, mean hold ms)` of the pools whose mean hold time `events` moved.
fn mean_holds(ledger: &Ledger, events: &[Event]) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = Vec::new();
    for e in events {
        if let Event::Released { lease, .. } | Event::Expired { lease, .. } = e {
            for pu in lease.pools.iter() {
                if !out.iter().any(|(p, _)| *p == pu.pool.index()) {
                    out.push((pu.pool.index(), ledger.mean_hold_ms(pu.pool)));
                }
            }
        }
    }
    out
}

pub(crate) fn unknown_flow(name: &str) -> ApiError {
    ApiError::not_found("unknown_flow", format!("no flow named `{name}`"))
}

fn unknown_class(name: &str) -> ApiError {
    ApiError::not_found("unknown_class", format!("no class named `{name}`"))
}

fn unknown_pool(name: &str) -> ApiError {
    ApiError::not_found("unknown_pool", format!("no pool named `{name}`"))
}

fn request_error(e: RequestError) -> ApiError {
    match e {
        RequestError::UnknownFlow => ApiError::not_found("unknown_flow", "unknown flow"),
        RequestError::UnknownClass => ApiError::not_found("unknown_class", "unknown class"),
        RequestError::BadPools(why) => ApiError::bad_request(format!("bad pools: {why}")),
        RequestError::Duplicate => ApiError::bad_request("an id or key that is already live"),
    }
}

impl Governor {
    /// After a restore: expires what fell due while the server was down and grants what
    /// now fits.
    pub fn settle(&self) {
        let _ = self.apply(|st, now| st.ledger.settle(now));
    }
}
