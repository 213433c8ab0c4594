//! Spill-over and routing between flows (usually between accounts): a caller is admitted
//! in another flow first and only then transferred there, and the transferred call,
//! which arrives at the other account as a new call with an id of its own, is answered
//! under the line admitted for it, so it counts once.
//!
//! - **The spill.** A `spill` step (or a `route` rule) acquires a line in the target
//!   flow like any call (its pools, reserves and priorities, through the governor, never
//!   waiting), with the key `spill:<provider>:<call id>` (a repeated webhook gets the
//!   same line) and a TTL of the step's `within`: the line is *pending* until the
//!   transferred call arrives. Only when it is granted is the caller transferred (to the
//!   target's `transfer_to`, or its only matched number); when it is not, the chain goes
//!   on. A caller whose number is unknown or withheld is not spilled: the arriving call
//!   could not be recognised, and would count twice.
//! - **The arrival.** A call that arrives at a flow is first matched to a pending spill
//!   of that flow by the caller's number (the transfer keeps the caller's number as its
//!   caller id: Vapi's default for a `number` destination, Twilio's for `<Dial>`), the
//!   oldest first. The match extends the line to the flow's `lease_ttl` (so it is no
//!   longer pending) and records the new call with `lease_key` = the spill's key, then the
//!   call is answered like a granted one. Neither Vapi's `assistant-request` nor
//!   Twilio's voice webhook carries a header of the transfer to a phone number, so the
//!   number and the window are the match; a caller spilled twice to one flow within the
//!   window takes the lines in order.
//! - **The ends.** The new call's end (`ended`, end-of-call report, Twilio's terminal
//!   status) finds no lease of its own id, looks up its `lease_key` (kept here, and in
//!   the call record across a restart) and releases the spill's line, once. The original
//!   call held nothing in its own flow (it was refused there), so its end frees nothing.
//! - **No arrival.** The pending line expires with its TTL like any lease (the ledger's
//!   expiry, durable, also across a restart); this node counts it as `expired` when it
//!   sees it gone without an arrival. A Twilio `<Dial>` that did not connect ends it at
//!   once.
//!
//! Durable: the line is a ledger lease (on disk before the caller is transferred), the
//! arrival is a renewal plus a call record; the in-memory maps here only save lookups
//! and count expiries.

use super::{record_call, Call, Effects};
use callgate_config::{FlowConfig, Overflow, TransferTo};
use callgate_events::views::LeaseView;
use callgate_governor::{AcquireRequest, Answer, CallEnd, Edge, Error, Target};
use rustc_hash::FxHashMap;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The prefix of a spill's lease key.
pub const SPILL_KEY_PREFIX: &str = "spill:";

/// The lease key of a spill of `provider`'s call `call_id`.
pub fn spill_key(provider: &str, call_id: &str) -> String {
    format!("{SPILL_KEY_PREFIX}{provider}:{call_id}")
}

/// A pending spill this node made, kept to count it when it expires.
#[derive(Clone, Debug)]
struct Pending {
    from: String,
    to: String,
    expires_at: u64,
}

/// What the spills of this node are doing (see the module docs). Every map is bounded by
/// the live leases: an entry goes when its lease goes ([`Spills::sweep`]).
#[derive(Debug, Default)]
pub struct Spills {
    /// Spill key → the pending spill.
    pending: Mutex<FxHashMap<String, Pending>>,
    /// Spill keys an arriving call is claiming right now (two calls never take one line).
    claiming: Mutex<HashSet<String>>,
    /// (provider, arrived call id) → the spill key whose lease it holds.
    arrived: Mutex<FxHashMap<(Arc<str>, String), String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a granted spill transfers the caller to.
#[derive(Clone, Debug)]
pub struct Spilled {
    /// Where to.
    pub to: TransferTo,
    /// The target flow.
    pub flow: String,
    /// The line held for the transferred call.
    pub lease: LeaseView,
}

/// The spill's metadata on its lease: no `provider` field, so that no provider's
/// reconciliation takes its key for a call id.
fn meta(call: &Call, from: &str, to: &str, caller: &str, within_ms: u64) -> String {
    json!({ "spill": {
        "provider": &*call.provider, "call_id": call.id, "from_flow": from, "to_flow": to,
        "caller": caller, "within_ms": within_ms,
    }})
    .to_string()
}

#[derive(serde::Deserialize)]
struct SpillMeta {
    spill: SpillFields,
}

#[derive(serde::Deserialize)]
struct SpillFields {
    from_flow: String,
    caller: String,
    to_flow: String,
    within_ms: u64,
}

fn spill_meta(lease: &LeaseView) -> Option<SpillFields> {
    let raw = lease.meta.as_ref()?;
    serde_json::from_str::<SpillMeta>(raw.get()).ok().map(|m| m.spill)
}

impl Spills {
    /// Tries `step` (a `spill` step, or a route rule as one) for `call` of flow `from`:
    /// admits the caller in the target flow `target` and, when granted, says where to
    /// transfer them. `None`: the chain goes on (no line there, or the caller cannot be
    /// recognised on arrival).
    pub async fn spill(
        &self,
        app: Effects<'_>,
        edge: Edge,
        call: &Call,
        from: &FlowConfig,
        step: &Overflow,
        target: &FlowConfig,
    ) -> Result<Option<Spilled>, Error> {
        let Some(to) = target.transfer_target() else {
            tracing::warn!(from = %from.name, to = %target.name, "A spill target has nowhere to transfer to; skipped");
            return Ok(None);
        };
        let Some(caller) = call.callable() else {
            app.metrics.edges.spill(&from.name, &target.name, "no_caller");
            tracing::info!(call = %call.id, from = %from.name, to = %target.name,
                "Not spilled: the caller's number is unknown, so the transferred call could not be recognised");
            return Ok(None);
        };
        let within = step.spill_within();
        let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        let key = spill_key(&call.provider, &call.id);
        let answer = app
            .governor
            .acquire(AcquireRequest {
                target: Target::Flow(target.name.clone()),
                key: Some(key.clone()),
                ttl_ms: Some(within_ms),
                // The caller is on the line: a line now, or the next step.
                max_wait_ms: Some(0),
                wait_ms: 0,
                meta: Some(meta(call, &from.name, &target.name, caller, within_ms)),
                edge,
            })
            .await?;
        let now = app.governor.now_ms();
        let Answer::Granted(lease) = answer else {
            app.metrics.edges.spill(&from.name, &target.name, "rejected");
            app.live.publish_json(&json!({
                "type": "spill", "outcome": "rejected", "at_ms": now, "provider": &*call.provider,
                "call_id": call.id, "from": from.name, "to": target.name,
            }));
            return Ok(None);
        };
        // (A repeated webhook after the arrival gets the arrived line back: not pending.)
        if lease.expires_at_ms <= lease.granted_at_ms.saturating_add(within_ms) {
            lock(&self.pending).insert(
                key.clone(),
                Pending { from: from.name.clone(), to: target.name.clone(), expires_at: lease.expires_at_ms },
            );
        }
        let mut update = call.update(now);
        update.flow = Some(from.name.clone());
        update.outcome = Some(format!("spilled:{}", target.name));
        record_call(app.governor, update).await?;
        app.metrics.edges.spill(&from.name, &target.name, "granted");
        app.live.publish_json(&json!({
            "type": "spill", "outcome": "granted", "at_ms": now, "provider": &*call.provider, "call_id": call.id,
            "from": from.name, "to": target.name, "lease": lease.id.to_string(), "expires_at_ms": lease.expires_at_ms,
        }));
        tracing::info!(call = %call.id, from = %from.name, to = %target.name, lease = %lease.id,
            "Spilled a caller: a line is held for the transferred call");
        Ok(Some(Spilled { to, flow: target.name.clone(), lease }))
    }

    /// A call arrived at `flow`: if it is a spilled caller's transferred call, it takes the
    /// line held for it (extended to the flow's `lease_ttl`, recorded with the call) and
    /// that lease is returned; `None` when no pending spill of this caller waits there.
    pub async fn arrive(
        &self,
        app: Effects<'_>,
        inbound: &super::Inbound,
        call: &Call,
        flow: &FlowConfig,
    ) -> Result<Option<LeaseView>, Error> {
        let Some(caller) = call.callable() else { return Ok(None) };
        if !inbound.spilled_into(&flow.name) {
            return Ok(None);
        }
        // A repeated webhook of a call that arrived already: the same line.
        if let Some(key) = self.arrived_key(&call.provider, &call.id) {
            if let Some(callgate_governor::Hold::Lease(lease)) = app.governor.hold(&key) {
                return Ok(Some(lease));
            }
        }
        let Some(first_pool) = flow.pools.first() else { return Ok(None) };
        let leases = app.governor.leases(Some(&first_pool.pool))?;
        let claimed = {
            let mut claiming = lock(&self.claiming);
            let found = leases.into_iter().find(|l| {
                let Some(key) = l.key.as_deref() else { return false };
                if !key.starts_with(SPILL_KEY_PREFIX) || claiming.contains(key) {
                    return false;
                }
                spill_meta(l).is_some_and(|m| {
                    m.to_flow == flow.name
                        && m.caller == caller
                        // Pending: it has only its window to live (an arrival extends it).
                        && l.expires_at_ms <= l.granted_at_ms.saturating_add(m.within_ms)
                })
            });
            if let Some(l) = &found {
                claiming.insert(l.key.as_deref().unwrap_or_default().to_owned());
            }
            found
        };
        let Some(lease) = claimed else { return Ok(None) };
        let key = lease.key.as_deref().unwrap_or_default().to_owned();
        // Let go of the claim however this ends, also when the webhook is dropped midway.
        struct Claim<'a>(&'a Mutex<HashSet<String>>, &'a str);
        impl Drop for Claim<'_> {
            fn drop(&mut self) {
                lock(self.0).remove(self.1);
            }
        }
        let _claim = Claim(&self.claiming, &key);
        self.take(app, call, flow, &lease, &key).await
    }

    async fn take(
        &self,
        app: Effects<'_>,
        call: &Call,
        flow: &FlowConfig,
        lease: &LeaseView,
        key: &str,
    ) -> Result<Option<LeaseView>, Error> {
        let meta = spill_meta(lease);
        let within_ms = meta.as_ref().map_or(0, |m| m.within_ms);
        // At least a second beyond the window, so an arrived line never looks pending.
        let ttl = u64::try_from(flow.lease_ttl.as_millis()).unwrap_or(u64::MAX).max(within_ms.saturating_add(1000));
        let Some(renewed) = app.governor.renew(lease.id, Some(ttl), None).await? else {
            // It expired a moment ago: the call is admitted as any other.
            return Ok(None);
        };
        let now = app.governor.now_ms();
        let mut update = call.update(now);
        update.flow = Some(flow.name.clone());
        update.outcome = Some("granted:spill".into());
        update.started_at = Some(now);
        update.lease_key = Some(key.to_owned());
        record_call(app.governor, update).await?;
        lock(&self.pending).remove(key);
        {
            // Arrived calls whose line went without an end (expired, reconciled) are dropped
            // here: the map never holds more than the live lines and this one.
            let mut arrived = lock(&self.arrived);
            arrived.retain(|_, k| matches!(app.governor.hold(k), Some(callgate_governor::Hold::Lease(_))));
            arrived.insert((call.provider.clone(), call.id.clone()), key.to_owned());
        }
        let from = meta.map_or_else(|| "unknown".to_owned(), |m| m.from_flow);
        app.metrics.edges.spill(&from, &flow.name, "arrived");
        app.live.publish_json(&json!({
            "type": "spill", "outcome": "arrived", "at_ms": now, "provider": &*call.provider, "call_id": call.id,
            "to": flow.name, "lease": renewed.id.to_string(),
        }));
        tracing::info!(call = %call.id, flow = %flow.name, lease = %renewed.id, "A spilled caller arrived; answered under the line held for them");
        Ok(Some(renewed))
    }

    /// The spill key whose lease `call` holds, if it arrived by a spill: from memory, else
    /// from its call record (after a restart).
    async fn lease_key_of(&self, app: Effects<'_>, call: &Call) -> Result<Option<String>, Error> {
        if let Some(k) = lock(&self.arrived).get(&(call.provider.clone(), call.id.clone())) {
            return Ok(Some(k.clone()));
        }
        // One read by primary key, only for an end that found no lease of the call's own.
        let record = app.governor.call_record(&call.provider, &call.id)?;
        Ok(record.and_then(|r| r.lease_key))
    }

    /// Ends what `call` holds: its own lease or ticket, else (a transferred call) the
    /// spill's line it arrived under. Idempotent.
    pub async fn end_call(&self, app: Effects<'_>, call: &Call) -> Result<CallEnd, Error> {
        let end = app.governor.end_call(&call.id).await?;
        if end != CallEnd::Nothing {
            return Ok(end);
        }
        let Some(key) = self.lease_key_of(app, call).await? else { return Ok(end) };
        let end = app.governor.end_call(&key).await?;
        lock(&self.arrived).remove(&(call.provider.clone(), call.id.clone()));
        Ok(end)
    }

    /// Renews what `call` holds (a sign of life): its own lease, else the spill's line.
    pub async fn renew_call(&self, app: Effects<'_>, call: &Call) -> Result<bool, Error> {
        if app.governor.renew_call(&call.id).await? {
            return Ok(true);
        }
        let key = self.arrived_key(&call.provider, &call.id);
        match key {
            Some(key) => app.governor.renew_call(&key).await,
            None => Ok(false),
        }
    }

    /// Ends a spill whose transfer did not connect (Twilio's `<Dial>` ended unanswered):
    /// the line is freed at once, not at the end of its window.
    pub async fn abandon(&self, app: Effects<'_>, provider: &str, call_id: &str) -> Result<(), Error> {
        let key = spill_key(provider, call_id);
        let Some(p) = lock(&self.pending).remove(&key) else { return Ok(()) };
        if let CallEnd::Released(lease) = app.governor.end_call(&key).await? {
            app.metrics.edges.spill(&p.from, &p.to, "expired");
            tracing::info!(call = call_id, to = %p.to, %lease, "A spill's transfer did not connect; its line is free");
        }
        Ok(())
    }

    /// Whether `call_id` of `provider` is a transferred call answered under a spill's
    /// line (reconciliation must not adopt it: it counts already): known here, or (after
    /// a restart) by its call record.
    pub fn covers(&self, governor: &callgate_governor::Governor, provider: &str, call_id: &str) -> bool {
        if lock(&self.arrived).contains_key(&(Arc::from(provider), call_id.to_owned())) {
            return true;
        }
        governor.call_record(provider, call_id).ok().flatten().is_some_and(|r| r.lease_key.is_some())
    }

    /// The spill key of an arrived call of `provider`, if this node knows it.
    pub fn arrived_key(&self, provider: &str, call_id: &str) -> Option<String> {
        lock(&self.arrived).get(&(Arc::from(provider), call_id.to_owned())).cloned()
    }

    /// Whether a pending spill's window has passed (then [`Spills::sweep`] has work).
    pub fn due(&self, now: u64) -> bool {
        lock(&self.pending).values().any(|p| p.expires_at <= now)
    }

    /// Counts pending spills whose line is gone without an arrival (`expired`), once
    /// that is durable, and drops what no longer holds a lease. Run after the ticker's
    /// expiry.
    pub async fn sweep(&self, app: Effects<'_>) {
        let now = app.governor.now_ms();
        let due: Vec<String> =
            lock(&self.pending).iter().filter(|(_, p)| p.expires_at <= now).map(|(k, _)| k.clone()).collect();
        let held =
            |g: &callgate_governor::Governor, key: &str| matches!(g.hold(key), Some(callgate_governor::Hold::Lease(_)));
        // Nothing is told before the expiry it reports is on disk.
        let Ok(gone) = app.governor.durable_view(|g| due.into_iter().filter(|k| !held(g, k)).collect::<Vec<_>>()).await
        else {
            return;
        };
        for key in gone {
            if lock(&self.claiming).contains(&key) {
                continue;
            }
            let Some(p) = lock(&self.pending).remove(&key) else { continue };
            app.metrics.edges.spill(&p.from, &p.to, "expired");
            app.live.publish_json(&json!({
                "type": "spill", "outcome": "expired", "at_ms": now, "from": p.from, "to": p.to, "key": key,
            }));
            tracing::info!(%key, from = %p.from, to = %p.to, "A spilled call never arrived; its line was freed");
        }
        lock(&self.arrived).retain(|_, key| held(app.governor, key));
    }
}
