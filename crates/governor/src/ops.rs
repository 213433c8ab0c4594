//! What the operating layer asks of the governor: the breaker gate before an acquire,
//! samples that move adaptive caps (the adaptive source of the pool's cap, see `caps`:
//! under the lock and journaled like any change), releases that carry a sample, the
//! overflow chain in force, the waiting line, and the evaluation of alerts.

use super::Error;
use super::{AcquireRequest, Answer, Governor, OpsSlot, State, Target};
use callgate_backend::records::{CallTelemetry, Component};
use callgate_backend::{Command, Executed, LeaseRef as BackendLease, Outcome};
use callgate_config::{AdaptiveSource, Overflow, VapiMetric};
use callgate_core::adaptive::{CapChange, Sample};
use callgate_core::{FlowId, LeaseId, RejectReason, TicketId};
use callgate_events::views::{pools_view, PoolUnitsView};
use callgate_ops::{ChainKind, Gauges, Ops};
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
    /// Who measured it: a customer (`samples`, the default) or Vapi's end-of-call report
    /// (`vapi`). An adaptive cap takes latencies only from its configured source; a
    /// customer's refusal without a latency counts for every adaptive pool.
    pub source: AdaptiveSource,
}

impl Report {
    fn says_anything(&self) -> bool {
        self.latency_ms.is_some() || self.ok.is_some() || self.dropped
    }
}

/// What Vapi measured about one ended call (see [`Governor::measured`]).
#[derive(Clone, Copy, Debug)]
pub struct Measured<'a> {
    /// The flow that served the call.
    pub flow: &'a str,
    /// The call's latencies, when the report carried them.
    pub telemetry: Option<&'a CallTelemetry>,
    /// The platform failed the call (a `…fault…` or pipeline error ending).
    pub failed: bool,
    /// The platform refused the call for concurrency.
    pub refused: bool,
}

/// The latency (ms) `metric` picks from a call's measurements, if it was measured.
pub fn vapi_latency(t: &CallTelemetry, metric: VapiMetric) -> Option<f64> {
    let mean = |c: Component| {
        let v = t.latencies(c);
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    match metric {
        VapiMetric::TurnP95 => t.quantile(Component::Turn, 0.95),
        VapiMetric::TurnP50 => t.quantile(Component::Turn, 0.5),
        VapiMetric::TurnAvg => t.average.turn_ms.or_else(|| mean(Component::Turn)),
        VapiMetric::ModelP95 => t.quantile(Component::Model, 0.95),
        VapiMetric::ModelAvg => t.average.model_ms.or_else(|| mean(Component::Model)),
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
    #[serde(serialize_with = "callgate_events::views::as_text")]
    #[schema(value_type = String)]
    pub id: TicketId,
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
pub(super) fn record_decision(span: &tracing::Span, answer: &Result<Answer, Error>) {
    match answer {
        Ok(Answer::Granted(l)) => {
            span.record("outcome", "granted");
            span.record("lease", tracing::field::display(l.id));
        }
        Ok(Answer::Queued(t)) => {
            span.record("outcome", "queued");
            span.record("ticket", tracing::field::display(t.id));
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

fn unknown_dependency(name: &str) -> Error {
    Error::not_found("unknown_dependency", format!("no breaker named `{name}`"))
}

impl Governor {
    /// The units in use in pool `p`.
    pub(super) fn used(&self, p: usize) -> u32 {
        self.backend.pools().get(p).map_or(0, |v| u32::try_from(v.used).unwrap_or(u32::MAX))
    }

    /// Puts the operating layer in place (adaptive caps, breakers, alerts). A pool whose
    /// adaptive cap starts below its limit gets that cap at once.
    pub fn with_ops(self, ops: Arc<Ops>) -> Self {
        self.with_ops_in(OpsSlot::new(ops))
    }

    /// [`Governor::with_ops`] in a slot that the journal's consumer shares, so that a
    /// reload's new operating layer reaches both.
    pub fn with_ops_in(mut self, slot: OpsSlot) -> Self {
        self.ops = slot;
        {
            let mut st = self.lock();
            for (p, view) in self.backend.pools().iter().enumerate() {
                if let Some(cap) = self.ops().initial_cap(p, view.limit) {
                    let _ = self.set_adaptive_cap(&mut st, p, cap);
                }
            }
        }
        self
    }

    /// The operating layer.
    pub fn ops(&self) -> Arc<Ops> {
        self.ops.get()
    }

    /// The slot the operating layer sits in, for the journal's consumer (see
    /// [`OpsSlot`]).
    pub fn ops_slot(&self) -> OpsSlot {
        self.ops.clone()
    }

    /// The breaker gate of an acquire through `flow` (or for it, as a campaign's call),
    /// under the lock: `Some` rejection when a dependency is down. A call that passes a
    /// half-open breaker is one of its probes. A key that already holds a lease or a
    /// ticket passes, so a repeated acquire still returns what it holds. `caller`: a
    /// caller of the flow, who is then answered with its fallback (a campaign's call is
    /// simply not placed).
    pub(super) fn breaker_gate(
        &self,
        flow: Option<FlowId>,
        key: Option<&str>,
        caller: bool,
        now: u64,
    ) -> Option<Answer> {
        let f = flow?;
        // A flow behind no breaker passes without a look at its key (two reads of the
        // ledger, round trips on Redis).
        if !self.ops().guarded(f.index()) {
            return None;
        }
        if key.is_some_and(|k| self.backend.lease_by_key(k).is_some() || self.backend.ticket_by_key(k).is_some()) {
            return None;
        }
        let blocked = self.ops().gate(f.index(), now).err()?;
        if caller {
            self.ops().fallback_answered(f.index(), &blocked.dependency, now);
        }
        Some(Answer::Rejected {
            reason: RejectReason::Capacity,
            overflow: blocked.overflow.map(|o| *o),
            retry_after_ms: blocked.retry_after_ms,
            dependency: Some(blocked.dependency),
        })
    }

    /// Feeds a sample to pool `p`'s adaptive cap and applies the change; under the lock.
    /// The change, and the command that applied it (wait for its commit).
    pub(super) fn feed(
        &self,
        st: &mut State,
        p: usize,
        inflight: u32,
        report: &Report,
        now: u64,
    ) -> Result<(Option<CapChange>, Option<Executed>), Error> {
        let source = self.ops().adaptive_source(p).map(|(s, _)| s);
        let takes = match report.source {
            AdaptiveSource::Vapi => source == Some(AdaptiveSource::Vapi),
            AdaptiveSource::Samples => source != Some(AdaptiveSource::Vapi) || report.latency_ms.is_none(),
        };
        if !takes {
            return Ok((None, None));
        }
        let sample = match (report.latency_ms, report.dropped) {
            (Some(ms), false) => Sample::latency(ms, inflight),
            (Some(ms), true) => Sample::dropped_after(ms, inflight),
            (None, true) => Sample::refusal(inflight),
            (None, false) => return Ok((None, None)),
        };
        let Some(change) = self.ops().adaptive_sample(p, now, sample) else { return Ok((None, None)) };
        let done = self.set_adaptive_cap(st, p, change.to)?;
        Ok((Some(change), done))
    }

    /// The pools and flow a report names, resolved; not found for unknown names.
    fn resolve_report(&self, r: &Report) -> Result<Resolved, Error> {
        let mut pools = Vec::new();
        if let Some(name) = &r.pool {
            pools.push(self.pool_id(name)?.index());
        }
        let flow = match &r.flow {
            Some(name) => Some(self.flow_id(name)?.index()),
            None => None,
        };
        for (p, _) in flow.map(|f| self.ops().flow_pools(f)).unwrap_or_default() {
            if !pools.contains(&p) {
                pools.push(p);
            }
        }
        let dependency = match &r.dependency {
            Some(name) => Some(self.ops().dependency(name).ok_or_else(|| unknown_dependency(name))?),
            None => None,
        };
        Ok((pools, flow, dependency))
    }

    /// Takes a reported latency and/or outcome: the adaptive caps of the pools it names
    /// (a pool, or a flow's pools) move, the dependency's breaker counts it, the figures
    /// keep it. Returns `(pool, cap)` for each cap that moved.
    pub async fn report(&self, r: Report) -> Result<Vec<(Arc<str>, u32)>, Error> {
        if !r.says_anything() {
            return Err(Error::invalid("a sample needs `latency_ms`, `ok` or `dropped`"));
        }
        let (pools, flow, dependency) = self.resolve_report(&r)?;
        let (moved, now, commit) = {
            let mut st = self.lock();
            let now = self.now_ms();
            let (mut moved, mut commit) = (Vec::new(), None);
            for &p in &pools {
                let inflight = self.used(p);
                let (change, done) = self.feed(&mut st, p, inflight, &r, now)?;
                if let Some(c) = change {
                    moved.push((self.names().pools[p].clone(), c.to));
                }
                commit = done.map(|d| d.commit).or(commit);
            }
            (moved, now, commit)
        };
        if let Some(c) = commit {
            self.durable(c).await?;
        }
        self.ops().sampled(&pools, flow, now, r.latency_ms, r.ok);
        if let Some(b) = dependency {
            self.ops().dependency_outcome(b, now, r.ok.unwrap_or(!r.dropped), r.latency_ms);
        }
        Ok(moved)
    }

    /// Takes what Vapi measured about one ended call of `flow` (its end-of-call report),
    /// before the call's lease is released so the sample is of the load the call saw:
    /// each of the flow's pools with `adaptive = { source = "vapi" }` takes the call's
    /// latency as its `metric` says (a concurrency refusal as a drop); the flow's figures
    /// take its p95 turn latency; every breaker the flow depends on counts the call, a
    /// failure when the platform failed it and slow when its p95 turn latency is. An
    /// unknown flow, or a call with nothing measured, changes nothing. Returns `(pool,
    /// cap)` for each cap that moved, and the units in use in the flow's first pool (the
    /// load the call was measured under).
    pub async fn measured(&self, m: Measured<'_>) -> Result<(Vec<(Arc<str>, u32)>, Option<u32>), Error> {
        let Some(f) = self.flow_index(m.flow) else { return Ok((Vec::new(), None)) };
        let pools: Vec<usize> = self.ops().flow_pools(f).into_iter().map(|(p, _)| p).collect();
        let turn_p95 = m.telemetry.and_then(|t| vapi_latency(t, VapiMetric::TurnP95));
        let (moved, now, commit, concurrency) = {
            let mut st = self.lock();
            let now = self.now_ms();
            let concurrency = pools.first().map(|&p| self.used(p));
            let (mut moved, mut commit) = (Vec::new(), None);
            for &p in &pools {
                let Some((AdaptiveSource::Vapi, metric)) = self.ops().adaptive_source(p) else { continue };
                let latency_ms = m.telemetry.and_then(|t| vapi_latency(t, metric));
                let r = Report { latency_ms, dropped: m.refused, source: AdaptiveSource::Vapi, ..Report::default() };
                let (change, done) = self.feed(&mut st, p, self.used(p), &r, now)?;
                if let Some(c) = change {
                    moved.push((self.names().pools[p].clone(), c.to));
                }
                commit = done.map(|d| d.commit).or(commit);
            }
            (moved, now, commit, concurrency)
        };
        if let Some(c) = commit {
            self.durable(c).await?;
        }
        if m.refused {
            return Ok((moved, concurrency));
        }
        if turn_p95.is_some() || m.failed {
            self.ops().sampled(&pools, Some(f), now, turn_p95, Some(!m.failed));
            for b in self.ops().depends(f) {
                self.ops().dependency_outcome(b, now, !m.failed, turn_p95);
            }
        }
        Ok((moved, concurrency))
    }

    /// Releases a lease and takes the sample its release carries: the latency and
    /// outcome count for the lease's pools and flow, and for `dependency` (left out: the
    /// flow's dependency when it has exactly one). True the first time, as a plain
    /// release. Unknown names are refused (not found), and a lease another API key than
    /// `who` acquired (forbidden), before anything is released.
    pub async fn release_reporting(&self, lease: LeaseRef<'_>, r: Report, who: Option<&str>) -> Result<bool, Error> {
        let dependency = match &r.dependency {
            Some(name) => Some(self.ops().dependency(name).ok_or_else(|| unknown_dependency(name))?),
            None => None,
        };
        let lease = match lease {
            LeaseRef::Id(id) => BackendLease::Id(id),
            LeaseRef::Key(k) => BackendLease::Key(Arc::from(k)),
        };
        let (out, commit) = {
            let mut st = self.lock();
            // The units in use before the release: the sample is of the load the call saw.
            let held = match &lease {
                BackendLease::Id(id) => self.backend.lease(*id),
                BackendLease::Key(k) => self.backend.lease_by_key(k),
            };
            let inflight: Vec<(usize, u32)> =
                held.iter().flat_map(|l| l.pools.iter().map(|pu| pu.pool.index())).map(|p| (p, self.used(p))).collect();
            let done = self.exec(&mut st, Command::Release { lease, owner: who.map(Arc::from) })?;
            let mut commit = done.commit;
            let l = match done.outcome {
                Outcome::NotOwner(id) => {
                    return Err(super::not_owner("lease", id, who.unwrap_or_default()));
                }
                Outcome::Released(Some(l)) => l,
                _ => return Ok(false),
            };
            let flow = l.flow.map(FlowId::index);
            let pools: Vec<usize> = l.pools.iter().map(|pu| pu.pool.index()).collect();
            for &p in &pools {
                let n = inflight.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n);
                if let (_, Some(capped)) = self.feed(&mut st, p, n, &r, done.now)? {
                    commit = capped.commit;
                }
            }
            let dependency = dependency.or_else(|| match flow.map(|f| self.ops().depends(f)) {
                Some(d) if d.len() == 1 => Some(d[0]),
                _ => None,
            });
            (Some((pools, flow, dependency, done.now)), commit)
        };
        self.durable(commit).await?;
        let Some((pools, flow, dependency, now)) = out else { return Ok(false) };
        if r.says_anything() {
            self.ops().sampled(&pools, flow, now, r.latency_ms, r.ok);
            if let (Some(b), true) = (dependency, r.ok.is_some() || r.latency_ms.is_some()) {
                self.ops().dependency_outcome(b, now, r.ok.unwrap_or(!r.dropped), r.latency_ms);
            }
        }
        Ok(true)
    }

    /// The overflow chain that applies now to a rejected caller of `flow`: the fallback
    /// while one of its dependencies is down, an alert's `set_overflow` while it fires,
    /// else the configured chain. `None` for an unknown flow.
    pub fn overflow_chain(&self, flow: &str) -> Option<Vec<Overflow>> {
        let f = self.flow_index(flow)?;
        Some(self.ops().overflow_chain(f, self.now_ms()))
    }

    /// [`Governor::overflow_chain`] with the chain's kind; `blocked` when the caller was
    /// just turned away by a breaker (the answer's `dependency`), so the fallback applies.
    pub fn overflow_chain_now(&self, flow: &str, blocked: bool) -> Option<(ChainKind, Vec<Overflow>)> {
        let f = self.flow_index(flow)?;
        Some(self.ops().chain_now(f, self.now_ms(), blocked))
    }

    /// Flow `flow`'s chain of `kind` as it stands now (see [`Ops::chain_of_kind`]).
    pub fn overflow_chain_of_kind(&self, flow: &str, kind: ChainKind) -> Option<Vec<Overflow>> {
        let f = self.flow_index(flow)?;
        Some(self.ops().chain_of_kind(f, kind))
    }

    /// Whether a dependency of `flow` is down (its breaker open) now.
    pub fn dependency_down(&self, flow: &str) -> bool {
        self.flow_index(flow).is_some_and(|f| self.ops().dependency_down(f, self.now_ms()))
    }

    fn flow_index(&self, flow: &str) -> Option<usize> {
        self.flow_id(flow).ok().map(FlowId::index)
    }

    /// The waiting callers, first in line first (class priority, then arrival), at most
    /// [`MAX_WAITING_LISTED`].
    pub fn waiting(&self) -> Vec<WaitingView> {
        let names = self.names();
        self.backend
            .waiting(MAX_WAITING_LISTED)
            .into_iter()
            .map(|w| {
                let (t, position, eta_ms) = (w.ticket, w.position, w.eta_ms);
                WaitingView {
                    id: t.id,
                    key: t.key.clone(),
                    class: names.classes[t.class.index()].clone(),
                    flow: t.flow.map(|f| names.flows[f.index()].clone()),
                    pools: pools_view(&names, &t.pools),
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
        self.backend.counts()
    }

    fn gauges(&self) -> Gauges {
        let pools = self.backend.pools().iter().map(|p| (p.used, p.cap, p.waiting)).collect();
        let mut flow_waiting = vec![0u32; self.names().flows.len()];
        for t in self.backend.tickets() {
            if let Some(w) = t.flow.and_then(|f| flow_waiting.get_mut(f.index())) {
                *w += 1;
            }
        }
        Gauges { pools, flow_waiting }
    }

    /// Evaluates every alert now and carries out what fired or resolved.
    pub async fn evaluate_alerts(&self) {
        // One operating layer for the whole evaluation, even if a reload replaces it.
        let ops = self.ops();
        if !ops.has_alerts() {
            return;
        }
        let _one_at_a_time = ops.evaluation().await;
        let now = self.now_ms();
        let gauges = self.gauges();
        for (i, change, value) in ops.step_alerts(now, &gauges) {
            ops.act(self, i, change, value, now).await;
        }
    }

    /// What time alone changes in the operating layer (breakers turning half-open, old
    /// figures dropping out).
    pub fn ops_tick(&self) {
        self.ops().advance(self.now_ms());
    }
}

impl callgate_ops::PoolLimits for Governor {
    fn limit(&self, pool: &str) -> Result<u32, String> {
        self.pool(pool).map(|p| p.limit).map_err(|e| e.message)
    }

    fn set_limit<'a>(&'a self, pool: &'a str, limit: u32) -> callgate_backend::BoxFuture<'a, Result<(), String>> {
        // Only alerts' actions change limits through here: a duty, fenced in cluster mode.
        Box::pin(async move { self.change_limit(pool, limit, true).await.map(drop).map_err(|e| e.message) })
    }
}

impl callgate_ops::Ticked for Governor {
    fn ops_tick(&self) {
        Governor::ops_tick(self);
    }

    fn evaluate_alerts(&self) -> callgate_backend::BoxFuture<'_, ()> {
        Box::pin(Governor::evaluate_alerts(self))
    }
}
