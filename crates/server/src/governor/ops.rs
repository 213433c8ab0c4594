//! What the operating layer asks of the governor: the breaker gate before an acquire,
//! samples that move adaptive caps (the adaptive source of the pool's cap, see `caps`:
//! under the lock and journaled like any change), releases that carry a sample, the
//! overflow chain in force, the waiting line, and the evaluation of alerts.

use super::unknown_flow;
use super::{AcquireRequest, Answer, Governor, State, Target};
use crate::error::ApiError;
use crate::ops::{ChainKind, Gauges, Ops};
use crate::views::{pools_view, PoolUnitsView};
use callgate_config::Overflow;
use callgate_core::adaptive::{CapChange, Sample};
use callgate_core::{FlowId, LeaseId, PoolId, RejectReason};
use serde::Serialize;
use std::sync::Arc;

/// A latency and/or an outcome, reported through `POST /v1/samples` or with a release.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The pool the call held (its adaptive cap and figures).
    pub pool: Option<String>,
    /// The flow the call came through (its pools, and the flow's figures).
    pub flow: Option<String>,
    /// The dependency (breaker) the outcome is of.
    pub dependency: Option<String>,
    /// The latency, ms (e.g. the assistant's response latency or time to first audio).
    pub latency_ms: Option<f64>,
    /// Whether the call (or the dependency) succeeded.
    pub ok: Option<bool>,
    /// The call was dropped: refused by the provider for concurrency, or timed out.
    pub dropped: bool,
}

impl Report {
    fn says_anything(&self) -> bool {
        self.latency_ms.is_some() || self.ok.is_some() || self.dropped
    }
}

/// A report's pools, flow and dependency, as indices.
type Resolved = (Vec<usize>, Option<usize>, Option<usize>);

/// Which lease a release names.
#[derive(Clone, Copy, Debug)]
pub enum LeaseRef<'a> {
    /// By id.
    Id(LeaseId),
    /// By idempotency key.
    Key(&'a str),
}

/// A waiting caller, for the live page's line.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingView {
    /// `T<n>`.
    pub id: String,
    /// Idempotency key.
    pub key: Option<Arc<str>>,
    /// Class name.
    pub class: Arc<str>,
    /// Flow name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Arc<str>>,
    /// Pools and units it waits for.
    pub pools: Vec<PoolUnitsView>,
    /// 1 for the first in line (in the pool where it stands furthest back).
    pub position: u32,
    /// Estimated wait (ms).
    pub eta_ms: u64,
    /// Unix ms.
    pub enqueued_at_ms: u64,
    /// Unix ms.
    pub deadline_ms: u64,
}

/// The most waiting callers `GET /v1/tickets` lists (the first in line): a page cannot
/// show more, and each position costs a walk of its pool's line.
pub const MAX_WAITING_LISTED: usize = 500;

/// The `decision` span of an acquire (exported over OTLP when configured).
pub(super) fn decision_span(req: &AcquireRequest) -> tracing::Span {
    let (flow, class) = match &req.target {
        Target::Flow(f) => (Some(f.as_str()), None),
        Target::Pools { class, .. } => (None, Some(class.as_str())),
        Target::FlowPools { flow, class, .. } => (Some(flow.as_str()), Some(class.as_str())),
    };
    tracing::info_span!(
        "decision",
        flow = flow,
        class = class,
        key = req.key.as_deref(),
        outcome = tracing::field::Empty,
        reason = tracing::field::Empty,
        lease = tracing::field::Empty,
        ticket = tracing::field::Empty,
    )
}

/// Records how the decision ended on its span.
pub(super) fn record_decision(span: &tracing::Span, answer: &Result<Answer, ApiError>) {
    match answer {
        Ok(Answer::Granted(l)) => {
            span.record("outcome", "granted");
            span.record("lease", l.id.as_str());
        }
        Ok(Answer::Queued(t)) => {
            span.record("outcome", "queued");
            span.record("ticket", t.id.as_str());
        }
        Ok(Answer::Rejected { reason, dependency, .. }) => {
            span.record("outcome", "rejected");
            span.record("reason", if dependency.is_some() { "dependency_down" } else { reason.as_str() });
        }
        Err(e) => {
            span.record("outcome", "error");
            span.record("reason", e.code);
        }
    }
}

fn unknown_dependency(name: &str) -> ApiError {
    ApiError::not_found("unknown_dependency", format!("no breaker named `{name}`"))
}

pub(super) fn used(st: &State, p: usize) -> u32 {
    u32::try_from(st.ledger.pool(PoolId(p as u32)).used).unwrap_or(u32::MAX)
}

impl Governor {
    /// Puts the operating layer in place (adaptive caps, breakers, alerts). A pool whose
    /// adaptive cap starts below its limit gets that cap at once.
    pub fn with_ops(mut self, ops: Arc<Ops>) -> Self {
        self.ops = ops;
        let _ = self.apply(|st, now| {
            for (p, view) in st.ledger.pools().iter().enumerate() {
                if let Some(cap) = self.ops.initial_cap(p, view.limit) {
                    self.set_adaptive_cap(st, p, cap, now);
                }
            }
        });
        self
    }

    /// The operating layer.
    pub fn ops(&self) -> &Arc<Ops> {
        &self.ops
    }

    /// The breaker gate of an acquire through `flow` (or for it, as a campaign's call),
    /// under the lock: `Some` rejection when a dependency is down. A call that passes a
    /// half-open breaker is one of its probes. A key that already holds a lease or a
    /// ticket passes, so a repeated acquire still returns what it holds. `caller`: a
    /// caller of the flow, who is then answered with its fallback (a campaign's call is
    /// simply not placed).
    pub(super) fn breaker_gate(
        &self,
        st: &State,
        flow: Option<FlowId>,
        key: Option<&str>,
        caller: bool,
        now: u64,
    ) -> Option<Answer> {
        let f = flow?;
        if key.is_some_and(|k| st.ledger.lease_by_key(k).is_some() || st.ledger.ticket_by_key(k).is_some()) {
            return None;
        }
        let blocked = self.ops.gate(f.index(), now).err()?;
        if caller {
            self.ops.fallback_answered(f.index(), &blocked.dependency, now);
        }
        Some(Answer::Rejected {
            reason: RejectReason::Capacity,
            overflow: blocked.overflow,
            retry_after_ms: blocked.retry_after_ms,
            dependency: Some(blocked.dependency),
        })
    }

    /// Feeds a sample to pool `p`'s adaptive cap and applies the change; under the lock.
    pub(super) fn feed(&self, st: &mut State, p: usize, inflight: u32, report: &Report, now: u64) -> Option<CapChange> {
        let sample = match (report.latency_ms, report.dropped) {
            (Some(ms), false) => Sample::latency(ms, inflight),
            (Some(ms), true) => Sample::dropped_after(ms, inflight),
            (None, true) => Sample::refusal(inflight),
            (None, false) => return None,
        };
        let change = self.ops.adaptive_sample(p, now, sample)?;
        self.set_adaptive_cap(st, p, change.to, now);
        Some(change)
    }

    /// The pools and flow a report names, resolved; 404 for unknown names.
    fn resolve_report(&self, st: &State, r: &Report) -> Result<Resolved, ApiError> {
        let mut pools = Vec::new();
        if let Some(name) = &r.pool {
            let id = st.ledger.pool_id(name).ok_or_else(|| super::unknown_pool(name))?;
            pools.push(id.index());
        }
        let flow = match &r.flow {
            Some(name) => Some(st.ledger.flow_id(name).ok_or_else(|| unknown_flow(name))?.index()),
            None => None,
        };
        for (p, _) in flow.map(|f| self.ops.flow_pools(f)).unwrap_or_default() {
            if !pools.contains(&p) {
                pools.push(p);
            }
        }
        let dependency = match &r.dependency {
            Some(name) => Some(self.ops.dependency(name).ok_or_else(|| unknown_dependency(name))?),
            None => None,
        };
        Ok((pools, flow, dependency))
    }

    /// Takes a reported latency and/or outcome: the adaptive caps of the pools it names
    /// (a pool, or a flow's pools) move, the dependency's breaker counts it, the figures
    /// keep it. Returns `(pool, cap)` for each cap that moved.
    pub async fn report(&self, r: Report) -> Result<Vec<(Arc<str>, u32)>, ApiError> {
        if !r.says_anything() {
            return Err(ApiError::bad_request("a sample needs `latency_ms`, `ok` or `dropped`"));
        }
        let (out, seq) = self.apply(|st, now| {
            let (pools, flow, dependency) = self.resolve_report(st, &r)?;
            let mut moved = Vec::new();
            for &p in &pools {
                let inflight = used(st, p);
                if let Some(c) = self.feed(st, p, inflight, &r, now) {
                    moved.push((self.names.pools[p].clone(), c.to));
                }
            }
            Ok::<_, ApiError>((pools, flow, dependency, moved, now))
        })?;
        let (pools, flow, dependency, moved, now) = out?;
        self.journal.durable(seq).await?;
        self.ops.sampled(&pools, flow, now, r.latency_ms, r.ok);
        if let Some(b) = dependency {
            self.ops.dependency_outcome(b, now, r.ok.unwrap_or(!r.dropped), r.latency_ms);
        }
        Ok(moved)
    }

    /// Releases a lease and takes the sample its release carries: the latency and
    /// outcome count for the lease's pools and flow, and for `dependency` (left out: the
    /// flow's dependency when it has exactly one). True the first time, as a plain
    /// release. Unknown names are refused (404), and a lease another API key than `who`
    /// acquired (403), before anything is released.
    pub async fn release_reporting(&self, lease: LeaseRef<'_>, r: Report, who: Option<&str>) -> Result<bool, ApiError> {
        let (out, seq) = self.apply(|st, now| {
            let dependency = match &r.dependency {
                Some(name) => Some(self.ops.dependency(name).ok_or_else(|| unknown_dependency(name))?),
                None => None,
            };
            let id = match lease {
                LeaseRef::Id(id) => Some(id),
                LeaseRef::Key(k) => st.ledger.lease_by_key(k).map(|l| l.id),
            };
            let Some(l) = id.and_then(|id| st.ledger.lease(id)) else {
                return Ok::<_, ApiError>(None);
            };
            super::owned_by(l, who)?;
            let (id, flow) = (l.id, l.flow.map(FlowId::index));
            let pools: Vec<usize> = l.pools.iter().map(|pu| pu.pool.index()).collect();
            let inflight: Vec<u32> = pools.iter().map(|&p| used(st, p)).collect();
            if !st.ledger.release(id, now) {
                return Ok(None);
            }
            for (&p, &n) in pools.iter().zip(&inflight) {
                self.feed(st, p, n, &r, now);
            }
            let dependency = dependency.or_else(|| match flow.map(|f| self.ops.depends(f)) {
                Some(d) if d.len() == 1 => Some(d[0]),
                _ => None,
            });
            Ok(Some((pools, flow, dependency, now)))
        })?;
        let out = out?;
        self.journal.durable(seq).await?;
        let Some((pools, flow, dependency, now)) = out else { return Ok(false) };
        if r.says_anything() {
            self.ops.sampled(&pools, flow, now, r.latency_ms, r.ok);
            if let (Some(b), true) = (dependency, r.ok.is_some() || r.latency_ms.is_some()) {
                self.ops.dependency_outcome(b, now, r.ok.unwrap_or(!r.dropped), r.latency_ms);
            }
        }
        Ok(true)
    }

    /// The overflow chain that applies now to a rejected caller of `flow`: the fallback
    /// while one of its dependencies is down, an alert's `set_overflow` while it fires,
    /// else the configured chain. `None` for an unknown flow.
    pub fn overflow_chain(&self, flow: &str) -> Option<Vec<Overflow>> {
        let f = self.flow_index(flow)?;
        Some(self.ops.overflow_chain(f, self.now_ms()))
    }

    /// [`Governor::overflow_chain`] with the chain's kind; `blocked` when the caller was
    /// just turned away by a breaker (the answer's `dependency`), so the fallback applies.
    pub fn overflow_chain_now(&self, flow: &str, blocked: bool) -> Option<(ChainKind, Vec<Overflow>)> {
        let f = self.flow_index(flow)?;
        Some(self.ops.chain_now(f, self.now_ms(), blocked))
    }

    /// Flow `flow`'s chain of `kind` as it stands now (see [`Ops::chain_of_kind`]).
    pub fn overflow_chain_of_kind(&self, flow: &str, kind: ChainKind) -> Option<Vec<Overflow>> {
        let f = self.flow_index(flow)?;
        Some(self.ops.chain_of_kind(f, kind))
    }

    /// Whether a dependency of `flow` is down (its breaker open) now.
    pub fn dependency_down(&self, flow: &str) -> bool {
        self.flow_index(flow).is_some_and(|f| self.ops.dependency_down(f, self.now_ms()))
    }

    fn flow_index(&self, flow: &str) -> Option<usize> {
        self.names.flows.iter().position(|n| &**n == flow)
    }

    /// The waiting callers, first in line first (class priority, then arrival), at most
    /// [`MAX_WAITING_LISTED`].
    pub fn waiting(&self) -> Vec<WaitingView> {
        let st = self.lock();
        let mut tickets: Vec<&callgate_core::Ticket> = st.ledger.tickets().collect();
        tickets.sort_by_key(|t| (std::cmp::Reverse(st.ledger.class_priority(t.class)), t.seq));
        tickets
            .into_iter()
            .take(MAX_WAITING_LISTED)
            .map(|t| {
                let (position, eta_ms) = match st.ledger.ticket_status(t.id) {
                    Some(callgate_core::TicketStatus::Waiting { position, eta_ms, .. }) => (position, eta_ms),
                    _ => (1, 0),
                };
                WaitingView {
                    id: t.id.to_string(),
                    key: t.key.clone(),
                    class: self.names.classes[t.class.index()].clone(),
                    flow: t.flow.map(|f| self.names.flows[f.index()].clone()),
                    pools: pools_view(&self.names, &t.pools),
                    position,
                    eta_ms,
                    enqueued_at_ms: t.enqueued_at,
                    deadline_ms: t.deadline,
                }
            })
            .collect()
    }

    /// Live leases and waiting tickets, in all pools.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.ledger.lease_count(), st.ledger.ticket_count())
    }

    fn gauges(&self) -> Gauges {
        let st = self.lock();
        let pools = st.ledger.pools().iter().map(|p| (p.used, p.cap, p.waiting)).collect();
        let mut flow_waiting = vec![0u32; st.ledger.flow_count()];
        for t in st.ledger.tickets() {
            if let Some(w) = t.flow.and_then(|f| flow_waiting.get_mut(f.index())) {
                *w += 1;
            }
        }
        Gauges { pools, flow_waiting }
    }

    /// Evaluates every alert now and carries out what fired or resolved.
    pub async fn evaluate_alerts(&self) {
        if !self.ops.has_alerts() {
            return;
        }
        let _one_at_a_time = self.ops.evaluation().await;
        let now = self.now_ms();
        let gauges = self.gauges();
        for (i, change, value) in self.ops.step_alerts(now, &gauges) {
            self.ops.act(self, i, change, value, now).await;
        }
    }

    /// What time alone changes in the operating layer (breakers turning half-open, old
    /// figures dropping out).
    pub fn ops_tick(&self) {
        self.ops.advance(self.now_ms());
    }
}
