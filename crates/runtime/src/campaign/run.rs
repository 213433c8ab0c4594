// Long file: the pacing loop and what each attempt outcome does, which must be read together to check that a lease is never leaked.
//! The pacing loop, the life of one attempt, outcomes, polling and the restart's recovery.

use super::{Action, Active, CallbackState, Campaigns, Inner, State};
use callgate_core::LeaseId;
use callgate_dialer::dial::{CallEvent, CallState, DialError, Ended, Outcome, PlaceCall};
use callgate_dialer::retry::{self, Next};
use callgate_dialer::schedule::Lead;
use callgate_events::bus::{CampaignCommand, CampaignInfo, ProviderUpdate, ToDialer};
use callgate_events::views::PoolInfo;
use callgate_governor::{AcquireRequest, Answer, Edge, LeaseGuard, Target};
use callgate_store::{AttemptEnd, CallbackLead, LeadOp, LeadOut, NewAttempt};
use rustc_hash::FxHashMap;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long the loop sleeps when nothing can be dialed, at most. Whatever frees capacity
/// for a campaign (a call of its own ending, an import, a state change) wakes it sooner;
/// this bounds the wait for capacity that others free.
const IDLE: Duration = Duration::from_millis(50);
/// How often booked callbacks are looked for.
const CALLBACK_EVERY: Duration = Duration::from_secs(1);

/// One lead taken for dialing, with everything the dial needs.
struct Claim {
    campaign: String,
    lead: Lead,
    /// The route's provider (a reload may rebuild the routes meanwhile: found by name).
    provider: String,
    dialer: Arc<dyn callgate_dialer::dial::Dialer>,
    /// The campaign's flow: its gates (breakers) apply to the call.
    flow: String,
    pools: Vec<(String, u32)>,
    class: String,
    callback_class: String,
    ttl_ms: u64,
    retry: callgate_config::RetryConfig,
    caller_index: usize,
    cooldown_ms: u64,
    /// The suppression lists the campaign honours (`None`: every list).
    dnc_lists: Option<Vec<String>>,
}

/// `lead` as its stored row says now (warm, attempts, due time).
fn as_stored(lead: Lead, row: &callgate_store::LeadRow) -> Lead {
    Lead { warm: row.warm, attempts: row.attempts, not_before: row.next_at, ..lead }
}

/// The end of an attempt stopped by a suppression list.
fn suppressed_end(hit: &callgate_dialer::dnc::Hit) -> Ended {
    Ended {
        outcome: Outcome::Suppressed,
        reason: Some(format!("on the suppression list `{}` (version {})", hit.list, hit.version)),
        talk_ms: None,
        cost: None,
    }
}

fn by_call_key(provider: &str, call_id: &str) -> String {
    format!("{provider}\0{call_id}")
}

/// The units a request of `class` may still take in `pool`: what is free after the
/// reserves of the classes above it and the claims in flight.
fn headroom(pool: &PoolInfo, class_priority: i32, priorities: &FxHashMap<&str, i32>, pending: u32) -> i64 {
    let reserved_above: i64 = pool
        .reserve
        .iter()
        .filter(|(c, _)| priorities.get(&***c).is_some_and(|&p| p > class_priority))
        .map(|(_, &u)| i64::from(u))
        .sum();
    i64::from(pool.cap) - pool.used as i64 - reserved_above - i64::from(pending)
}

/// A lead from its pick until its dial is done, however that ends (also when the task is
/// cancelled or panics): by then it is an active attempt, back in its schedule, or ended.
struct Picked {
    campaigns: Arc<Campaigns>,
    lead: u64,
}

impl Drop for Picked {
    fn drop(&mut self) {
        let mut inner = self.campaigns.lock();
        if let Some(n) = inner.picked.get_mut(&self.lead) {
            *n -= 1;
            if *n == 0 {
                inner.picked.remove(&self.lead);
            }
        }
    }
}

impl Campaigns {
    pub(super) fn spawn_tasks(self: &Arc<Self>) {
        let mut tasks = Vec::new();
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.pace().await }));
        if self.pacing.clustered() {
            let me = self.clone();
            tasks.push(tokio::spawn(async move { me.pace_duties().await }));
        }
        if let Some(mut rx) = self.events_rx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((_campaign, event)) = rx.recv().await {
                    match event {
                        CallEvent::Answered { attempt } => me.answered(attempt).await,
                        CallEvent::Ended { attempt, ended } => me.finish(attempt, ended).await,
                    }
                }
            }));
        }
        if let Some(mut inbox) = self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                // Each message in its own task, as each webhook was served in its own: a
                // slow store write for one call does not hold up the others. Each
                // publisher awaits its answer, so its own events stay in order.
                while let Some(msg) = inbox.recv().await {
                    let me = me.clone();
                    tokio::spawn(async move { me.on_bus(msg).await });
                }
            }));
        }
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(CALLBACK_EVERY).await;
                me.take_callbacks().await;
                // A provider's cooldown may have ended: look again.
                me.wake.notify_one();
            }
        }));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).extend(tasks);
        for name in self.names() {
            self.spawn_pollers(&name);
        }
    }

    /// One poller per real provider route of the campaign (one that is not running
    /// already): reads the state of its live calls, so an outcome is never lost with a
    /// webhook. Each round it polls with the route's dialer in force (a reload may have
    /// rebuilt it with new provider settings); once the route is gone, with the last one
    /// it had, until the calls it placed are over.
    pub(super) fn spawn_pollers(self: &Arc<Self>, campaign: &str) {
        let routes: Vec<(String, Arc<dyn callgate_dialer::dial::Dialer>)> = {
            let mut inner = self.lock();
            let Some(rt) = inner.list.iter().find(|r| r.name == campaign) else { return };
            let routes: Vec<_> = rt
                .routes
                .iter()
                .filter(|r| r.dialer.poll_every().is_some())
                .map(|r| (r.provider.clone(), r.dialer.clone()))
                .collect();
            routes.into_iter().filter(|(p, _)| inner.pollers.insert((campaign.to_string(), p.clone()))).collect()
        };
        for (provider, first) in routes {
            let (me, campaign) = (self.clone(), campaign.to_string());
            let task = tokio::spawn(async move {
                let mut dialer = first;
                loop {
                    let Some(every) = dialer.poll_every() else {
                        me.lock().pollers.remove(&(campaign.clone(), provider.clone()));
                        break;
                    };
                    tokio::time::sleep(every).await;
                    let calls: Vec<(u64, String)> = {
                        let mut inner = me.lock();
                        let route = inner
                            .list
                            .iter()
                            .find(|r| r.name == campaign)
                            .and_then(|rt| rt.routes.iter().find(|r| r.provider == provider));
                        let gone = route.is_none();
                        if let Some(r) = route {
                            dialer = r.dialer.clone();
                        }
                        let calls: Vec<(u64, String)> = inner
                            .active
                            .iter()
                            .filter(|(_, a)| a.campaign == campaign && a.provider == provider)
                            .filter_map(|(id, a)| a.call_id.clone().map(|c| (*id, c)))
                            .collect();
                        if gone && calls.is_empty() {
                            inner.pollers.remove(&(campaign.clone(), provider.clone()));
                            break;
                        }
                        calls
                    };
                    for (attempt, call_id) in calls {
                        match dialer.status(&call_id).await {
                            Ok(CallState::Ended(e)) => me.finish(attempt, e).await,
                            Ok(CallState::Live) => me.answered(attempt).await,
                            Ok(_) => {}
                            Err(e) => tracing::debug!(%provider, %call_id, error = %e, "Cannot read a call's state"),
                        }
                    }
                }
            });
            self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        }
    }

    /// The pacing loop.
    async fn pace(self: Arc<Self>) {
        loop {
            let pools = self.governor.pools();
            let now = self.now();
            match self.claim(now, &pools) {
                Some(claim) => {
                    let me = self.clone();
                    let picked = Picked { campaigns: self.clone(), lead: claim.lead.id };
                    tokio::spawn(async move {
                        let _picked = picked;
                        me.dial(claim).await
                    });
                }
                None => {
                    self.idle_rounds.send_modify(|n| *n = n.saturating_add(1));
                    let _ = tokio::time::timeout(IDLE, self.wake.notified()).await;
                    for rt in &mut self.lock().list {
                        rt.blocked = false;
                    }
                }
            }
        }
    }

    /// Takes the next lead of the first campaign (by priority, in turn among equals) that
    /// may dial now.
    fn claim(&self, now: u64, pools: &[PoolInfo]) -> Option<Claim> {
        let config = self.config();
        let priorities: FxHashMap<&str, i32> = config.classes.iter().map(|c| (c.name.as_str(), c.priority)).collect();
        let mut guard = self.lock();
        let inner: &mut Inner = &mut guard;
        let n = inner.list.len();
        if n == 0 {
            return None;
        }
        inner.rr = inner.rr.wrapping_add(1);
        // Dialing order: priority first; among equal priorities, start at a rotating place.
        let mut order: Vec<usize> = (0..n).collect();
        let rot = inner.rr;
        order.sort_by_key(|&i| (std::cmp::Reverse(inner.list[i].cfg.priority), (i + n - rot % n) % n));
        for i in order {
            let rt = &mut inner.list[i];
            if rt.state != State::Running || rt.blocked || rt.unavailable.is_some() {
                continue;
            }
            // In a cluster, another node may pace it (see `pacing`).
            if !self.pacing.paces(&rt.name, now) {
                continue;
            }
            if Self::cap_of(&inner.scheduled, rt).is_some_and(|m| rt.live >= m) {
                continue;
            }
            if !rt.bucket.ready(now) || !rt.sched.has_ready(now) {
                continue;
            }
            // A callback waiting goes in the callback class; the class decides the reserves.
            let Some(lead) = rt.sched.pop(&rt.calendar, now) else { continue };
            let class = if lead.warm { rt.callback_class.clone() } else { rt.class.clone() };
            let class_priority = priorities.get(class.as_str()).copied().unwrap_or(0);
            // The route with the most room for this class, among those not cooling down.
            let provider_pools: Vec<String> = rt.routes.iter().filter_map(|r| r.pool.clone()).collect();
            // (room left, route, pools of the request)
            type Choice = (i64, usize, Vec<(String, u32)>);
            let mut best: Option<Choice> = None;
            for (ri, route) in rt.routes.iter().enumerate() {
                if route.cooldown_until > now {
                    continue;
                }
                let mut req: Vec<(String, u32)> = rt
                    .flow_pools
                    .iter()
                    .filter(|(p, _)| !provider_pools.contains(p) || route.pool.as_ref() == Some(p))
                    .cloned()
                    .collect();
                if let Some(p) = &route.pool {
                    if !req.iter().any(|(q, _)| q == p) {
                        req.push((p.clone(), 1));
                    }
                }
                let room = req
                    .iter()
                    .map(|(p, units)| match pools.iter().find(|i| &*i.name == p) {
                        Some(info) => {
                            headroom(info, class_priority, &priorities, inner.pending.get(p).copied().unwrap_or(0))
                                - i64::from(*units)
                        }
                        None => -1,
                    })
                    .min()
                    .unwrap_or(-1);
                if room >= 0 && best.as_ref().is_none_or(|(r, _, _)| room > *r) {
                    best = Some((room, ri, req));
                }
            }
            let Some((_, route, req)) = best else {
                // No room anywhere for now: the lead goes back, the campaign waits.
                rt.sched.insert(lead, &rt.calendar, now);
                rt.blocked = true;
                continue;
            };
            rt.bucket.take();
            rt.live += 1;
            *inner.picked.entry(lead.id).or_default() += 1;
            rt.caller_rr = rt.caller_rr.wrapping_add(1);
            for (p, units) in &req {
                *inner.pending.entry(p.clone()).or_default() += units;
            }
            let rt = &inner.list[i];
            let r = &rt.routes[route];
            return Some(Claim {
                campaign: rt.name.clone(),
                lead,
                provider: r.provider.clone(),
                dialer: r.dialer.clone(),
                flow: rt.cfg.flow.clone(),
                pools: req,
                class,
                callback_class: rt.callback_class.clone(),
                ttl_ms: rt.ttl_ms,
                retry: rt.cfg.retry.clone(),
                caller_index: rt.caller_rr,
                cooldown_ms: rt.cfg.cooldown.as_millis() as u64,
                dnc_lists: rt.cfg.dnc_lists.clone(),
            });
        }
        None
    }

    /// Gives a claimed lead back to its scheduler (not dialed after all).
    fn give_back(&self, campaign: &str, lead: Lead, blocked: bool) {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(rt) = inner.list.iter_mut().find(|r| r.name == campaign) {
            rt.live = rt.live.saturating_sub(1);
            rt.blocked |= blocked;
            rt.sched.insert(lead, &rt.calendar, now);
        }
    }

    /// A claimed lead that changed after the dialer read it (a callback was taken for it):
    /// not dialed now; back to its scheduler as its stored row says, if still pending.
    fn requeue_as_stored(&self, campaign: &str, lead: Lead, now: u64) {
        let row = self.store.lead(lead.id).ok().flatten().filter(|r| r.state == "pending");
        let mut inner = self.lock();
        if let Some(rt) = inner.list.iter_mut().find(|r| r.name == campaign) {
            rt.live = rt.live.saturating_sub(1);
            if let Some(row) = row {
                rt.sched.insert(as_stored(lead, &row), &rt.calendar, now);
            }
        }
    }

    fn unclaim_pools(&self, pools: &[(String, u32)]) {
        let mut inner = self.lock();
        for (p, units) in pools {
            if let Some(v) = inner.pending.get_mut(p) {
                *v = v.saturating_sub(*units);
            }
        }
    }

    /// The life of one attempt up to the placed call.
    async fn dial(self: Arc<Self>, mut c: Claim) {
        let now = self.now();
        let row = match self.store.lead(c.lead.id) {
            Ok(Some(row)) if row.state == "pending" && row.warm && (!c.lead.warm || row.next_at > now) => {
                // A callback was taken for this lead since it was scheduled: it is dialed
                // as that callback, at its promised time, in its class.
                self.unclaim_pools(&c.pools);
                self.give_back(&c.campaign, as_stored(c.lead, &row), false);
                return;
            }
            Ok(Some(row)) if row.state == "pending" => row,
            Ok(_) => {
                // Gone or no longer pending (another path moved it): nothing to dial.
                self.unclaim_pools(&c.pools);
                let mut inner = self.lock();
                if let Some(rt) = inner.list.iter_mut().find(|r| r.name == c.campaign) {
                    rt.live = rt.live.saturating_sub(1);
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot read a lead");
                self.unclaim_pools(&c.pools);
                self.give_back(&c.campaign, c.lead, true);
                return;
            }
        };
        // The callback the lead returns as read: every write below applies only to the lead
        // as it was read (a callback taken since is dialed as itself). Its count of
        // attempts is the row's (a second callback may have reset it).
        let read_callback = row.callback_id.filter(|_| row.warm);
        c.lead.attempts = row.attempts;
        // On a list already: no lease is asked for; the lead ends `suppressed`.
        if let Some(hit) = self.suppressions.check(c.dnc_lists.as_deref(), &row.phone) {
            self.unclaim_pools(&c.pools);
            self.suppress_unplaced(&c, &row, read_callback, hit, now).await;
            return;
        }
        let hook = self.pick_hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(row.phone.clone()).await;
        }
        // The weekly cap (only a lead with that many attempts in all can hit it), then the
        // calling rules of the callee's region: a lead that may not be called now is
        // rescheduled to when it may.
        let not_before = match self.not_before(&c, &row, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read a lead's attempts");
                self.unclaim_pools(&c.pools);
                self.give_back(&c.campaign, c.lead, true);
                return;
            }
        };
        if let Some(next_at) = not_before {
            // Audited once the store took the new time: a lead whose row moved since it was
            // read (`Stale`: another pacer's attempt, a callback taken) leaves no row.
            let audit = self.audit_row(&c, &row, 0, now, format!("rescheduled to {next_at}"));
            let lead = Lead { not_before: next_at, ..c.lead };
            let op = LeadOp::Reschedule { lead_id: lead.id, next_at, callback_id: read_callback };
            self.unclaim_pools(&c.pools);
            match self.store.write(vec![op]).await.as_deref() {
                Ok([LeadOut::Stale]) => self.requeue_as_stored(&c.campaign, c.lead, now),
                written => {
                    if written.is_ok() {
                        self.suppressions.audit(audit);
                    }
                    self.give_back(&c.campaign, lead, false)
                }
            }
            return;
        }
        // This node still paces the campaign (its lease may have run out meanwhile).
        if !self.paces(&c.campaign) {
            self.unclaim_pools(&c.pools);
            self.give_back(&c.campaign, c.lead, false);
            return;
        }
        let class = row.class.clone().filter(|_| row.warm).unwrap_or(c.class.clone());
        let attempt = self.store.next_attempt_id();
        let key = format!("dial:{}:{attempt}", c.campaign);
        let meta = json!({ "campaign": c.campaign, "lead": c.lead.id, "attempt": attempt }).to_string();
        let answer = self
            .governor
            .acquire(AcquireRequest {
                // For the campaign's flow: its breakers gate the call (and count it as a
                // probe when half-open), whatever pools and class it holds.
                target: Target::FlowPools { flow: c.flow.clone(), pools: c.pools.clone(), class: class.clone() },
                key: Some(key),
                ttl_ms: Some(c.ttl_ms),
                max_wait_ms: Some(0),
                wait_ms: 0,
                meta: Some(meta),
                edge: Edge::Campaign,
            })
            .await;
        self.unclaim_pools(&c.pools);
        let lease = match answer {
            Ok(Answer::Granted(l)) => l,
            Ok(_) => {
                self.give_back(&c.campaign, c.lead, true);
                return;
            }
            Err(e) => {
                tracing::warn!(campaign = %c.campaign, error = %e.message, "Acquire failed");
                self.give_back(&c.campaign, c.lead, true);
                return;
            }
        };
        // Held by a guard until the attempt that holds it is recorded: whatever way this
        // task ends before that, the lease goes back.
        let guard: Option<LeaseGuard> = Some(LeaseGuard::new(self.governor.clone(), lease.id));
        let number = c.lead.attempts + 1;
        // The token this node paces the campaign under (cluster mode), read with the look.
        let fence = self.pacing.token(&c.campaign, self.now());
        if !self.paces(&c.campaign) || (self.pacing.clustered() && fence.is_none()) {
            if let Some(guard) = guard {
                let _ = guard.release().await;
            }
            self.give_back(&c.campaign, c.lead, false);
            return;
        }
        // The attempt is on disk before the call is placed, and only if the lead is still
        // what was read: a callback taken since is dialed as itself. In a cluster, only
        // under the campaign's latest pacing token (in the same transaction): a pacer that
        // stalled past its lease and wakes after a takeover claims nothing.
        let mut ops: Vec<LeadOp> =
            fence.map(|token| LeadOp::Fence { campaign: c.campaign.clone(), token }).into_iter().collect();
        ops.push(LeadOp::BeginAttempt(NewAttempt {
            id: attempt,
            lead_id: c.lead.id,
            campaign: c.campaign.clone(),
            number,
            class: class.clone(),
            provider: c.provider.clone(),
            lease: lease.id.to_string(),
            callback_id: read_callback,
            at: now,
        }));
        let begin = self.store.write(ops).await;
        match begin.as_deref().map(|outs| outs.last()) {
            Ok(Some(LeadOut::Stale)) => {
                // The lead changed after it was read (a callback was taken for it): back to
                // the scheduler as it is now.
                if let Some(guard) = guard {
                    let _ = guard.release().await;
                }
                self.requeue_as_stored(&c.campaign, c.lead, now);
                return;
            }
            Ok(_) => {}
            Err(e) if e.code == "fenced" => {
                tracing::warn!(campaign = %c.campaign, error = %e.message,
                    "Another node paces the campaign now: the attempt is not begun, the call not placed");
                if let Some(guard) = guard {
                    let _ = guard.release().await;
                }
                self.give_back(&c.campaign, c.lead, false);
                self.pacing.fenced(&c.campaign);
                self.give_up(&c.campaign);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot record an attempt; the call is not placed");
                if let Some(guard) = guard {
                    let _ = guard.release().await;
                }
                self.give_back(&c.campaign, c.lead, true);
                return;
            }
        }
        self.lock().active.insert(
            attempt,
            Active {
                campaign: c.campaign.clone(),
                lead: c.lead,
                number,
                provider: c.provider.clone(),
                // Handed to the attempt: its end releases it.
                lease: guard.map(LeaseGuard::disarm),
                call_id: None,
                answered: false,
                answerer: None,
            },
        );
        let call = PlaceCall {
            attempt,
            campaign: c.campaign.clone(),
            lead_id: c.lead.id,
            phone: row.phone.clone(),
            name: row.name.clone(),
            vars: row.vars.as_deref().and_then(|v| serde_json::from_str(v).ok()),
            lease: lease.id.to_string(),
            caller_index: c.caller_index,
        };
        // The last checks, with nothing awaited between them and placing the call but the
        // catch-up with the lists' store: a number added to a list at any moment before
        // (also between the pick and now, also through another node) is never dialed. The
        // attempt ends `suppressed` (it does not count) and its lease goes back; when the
        // lists cannot be read, the call is not placed and the attempt ends `failed`.
        if let Err(e) = self.suppressions.catch_up().await {
            tracing::error!(error = %e.message, "Cannot read the suppression lists; the call is not placed");
            let reason = Some(format!("the suppression lists cannot be read: {}", e.message));
            self.finish(attempt, Ended { outcome: Outcome::Failed, reason, talk_ms: None, cost: None }).await;
            return;
        }
        // The last look at the pacing lease, with nothing awaited between it and placing
        // the call: a node that lost the campaign (its lease may have run out) gives the
        // attempt back uncounted instead; the new pacer dials the lead.
        if !self.paces(&c.campaign) {
            self.unplaced(attempt, &c).await;
            return;
        }
        let hit = self.suppressions.check(c.dnc_lists.as_deref(), &row.phone);
        let decision = hit.as_ref().map_or_else(|| "dialed".to_string(), |h| format!("suppressed by {}", h.list));
        self.audit(&c, &row, attempt, now, decision);
        if let Some(hit) = hit {
            self.finish(attempt, suppressed_end(&hit)).await;
            return;
        }
        match c.dialer.place(&call).await {
            Ok(placed) => {
                // Not awaited: the writer applies jobs in order, so the end of this attempt
                // (or anything after it) is never written before its call id, and after a
                // crash an attempt without one is looked up at the provider.
                drop(self.store.write(vec![LeadOp::Placed { id: attempt, call_id: placed.call_id.clone() }]));
                let mut inner = self.lock();
                if let Some(a) = inner.active.get_mut(&attempt) {
                    a.call_id = Some(placed.call_id.clone());
                    inner.by_call.insert(by_call_key(&c.provider, &placed.call_id), attempt);
                }
                tracing::debug!(campaign = %c.campaign, attempt, call = %placed.call_id, "Call placed");
            }
            Err(DialError::Refused(why)) => self.refused(attempt, &c, &why).await,
            Err(DialError::Account(why)) => self.account_error(attempt, &c, &why).await,
            Err(DialError::Invalid(why)) => {
                self.finish(attempt, Ended { outcome: Outcome::Invalid, reason: Some(why), talk_ms: None, cost: None })
                    .await
            }
            Err(DialError::Failed(why)) => {
                self.finish(attempt, Ended { outcome: Outcome::Failed, reason: Some(why), talk_ms: None, cost: None })
                    .await
            }
        }
        let _ = c.callback_class;
    }

    /// Records in the audit trail what was checked for a dial of `row` and what came of it:
    /// the campaign's window, the calling rules covering the callee's region, the lists the
    /// campaign honours with their versions, and the callee's local time.
    fn audit(&self, c: &Claim, row: &callgate_store::LeadRow, attempt: u64, now: u64, decision: String) {
        self.suppressions.audit(self.audit_row(c, row, attempt, now, decision));
    }

    /// The audit row of a decision on `row`, with the rules and list versions it was made
    /// under, to be written once the decision took effect.
    fn audit_row(
        &self,
        c: &Claim,
        row: &callgate_store::LeadRow,
        attempt: u64,
        now: u64,
        decision: String,
    ) -> callgate_store::AuditRow {
        use callgate_dialer::regions;
        let region = callgate_dialer::phone::normalize(&row.phone, None).ok().and_then(|n| regions::region_of(&n));
        let all = self.config().calling_rules();
        let mut rules: Vec<String> = Vec::new();
        if let Some(w) = self.lock().list.iter().find(|r| r.name == c.campaign).map(|r| r.cfg.window.clone()) {
            rules.push(format!("campaign {}-{}", w.start, w.end));
        }
        for r in regions::covering(&all, region.as_deref()) {
            let mut text = format!("{} {}", r.region, r.window.as_deref().unwrap_or("all day"));
            if let Some(m) = r.max_per_day {
                text.push_str(&format!(" max {m}/24h"));
            }
            if let Some(s) = &r.source {
                text.push_str(&format!(" ({s})"));
            }
            rules.push(text);
        }
        let lists = self.suppressions.versions(c.dnc_lists.as_deref());
        let local = regions::local_time(c.lead.tz, now);
        callgate_store::AuditRow {
            campaign: c.campaign.clone(),
            attempt,
            lead_id: c.lead.id,
            number: row.phone.clone(),
            at: now,
            timezone: c.lead.tz.name().to_string(),
            local_time: local,
            region: region.unwrap_or_default(),
            rules: rules.join("; "),
            lists: lists.iter().map(|(l, v)| format!("{l}@{v}")).collect::<Vec<_>>().join("; "),
            decision,
        }
    }

    /// When a lead that may not be called at `now` may be (`None`: it may be now): after
    /// the campaign's weekly cap, and the windows and 24-hour caps of the
    /// `[[calling_rules]]` that cover the callee's region, in the lead's time zone.
    fn not_before(&self, c: &Claim, row: &callgate_store::LeadRow, now: u64) -> Result<Option<u64>, String> {
        use callgate_dialer::caps::{hold, Hold, WEEK_MS};
        use callgate_dialer::regions;
        let rules = self.config().calling_rules();
        let region = callgate_dialer::phone::normalize(&row.phone, None).ok().and_then(|n| regions::region_of(&n));
        let covering = regions::covering(&rules, region.as_deref());
        let since = |t: u64| self.store.attempts_since(c.lead.id, t).map_err(|e| e.to_string());
        Ok(match hold(c.retry.max_per_week, c.lead.attempts, &covering, c.lead.tz, now, since)? {
            Hold::Now => None,
            Hold::Until(t) => Some(t),
            Hold::Never => {
                // Rules whose windows never meet: nothing may be called; looked at again
                // in a week (a reload may fix the rules).
                tracing::warn!(campaign = %c.campaign, region = ?region, "The calling rules of a region never allow a call");
                Some(now + WEEK_MS)
            }
        })
    }

    /// A lead found on a suppression list before a lease was asked for: an attempt is
    /// recorded (so the audit shows why the lead was never called) and ended `suppressed`
    /// at once; callbacks it returns are settled with it.
    async fn suppress_unplaced(
        &self,
        c: &Claim,
        row: &callgate_store::LeadRow,
        read_callback: Option<u64>,
        hit: callgate_dialer::dnc::Hit,
        now: u64,
    ) {
        let attempt = self.store.next_attempt_id();
        // Written once the attempt is: a lead whose row moved since it was read (`Stale`:
        // another pacer's attempt, a callback taken) must leave no audit row of an attempt
        // that does not exist.
        let audit = self.audit_row(c, row, attempt, now, format!("suppressed by {}", hit.list));
        let begin = self
            .store
            .write(vec![LeadOp::BeginAttempt(NewAttempt {
                id: attempt,
                lead_id: c.lead.id,
                campaign: c.campaign.clone(),
                number: row.attempts + 1,
                class: c.class.clone(),
                provider: c.provider.clone(),
                lease: String::new(),
                callback_id: read_callback,
                at: now,
            })])
            .await;
        match begin.as_deref() {
            Ok([LeadOut::Stale]) => self.requeue_as_stored(&c.campaign, c.lead, now),
            Ok(_) => {
                self.suppressions.audit(audit);
                self.lock().active.insert(
                    attempt,
                    Active {
                        campaign: c.campaign.clone(),
                        lead: c.lead,
                        number: row.attempts + 1,
                        provider: c.provider.clone(),
                        lease: None,
                        call_id: None,
                        answered: false,
                        answerer: None,
                    },
                );
                self.finish(attempt, suppressed_end(&hit)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot record a suppressed lead");
                self.give_back(&c.campaign, c.lead, true);
            }
        }
    }

    /// An attempt recorded but not placed (this node no longer paces its campaign): it
    /// ends uncounted, as a refusal does, its lease goes back, and the lead is pending
    /// again for the campaign's pacer.
    async fn unplaced(&self, attempt: u64, c: &Claim) {
        let now = self.now();
        let Some(active) = self.lock().active.remove(&attempt) else { return };
        if let Err(e) = self.store.write(vec![LeadOp::Refused { id: attempt, at: now, next_at: now }]).await {
            tracing::error!(error = %e, attempt, "Cannot give back an attempt not placed");
        }
        if let Some(id) = active.lease {
            let _ = self.governor.release(id).await;
        }
        let mut inner = self.lock();
        if let Some(rt) = inner.list.iter_mut().find(|r| r.name == c.campaign) {
            rt.live = rt.live.saturating_sub(1);
        }
    }

    /// A concurrency refusal: the lead goes back uncounted, the provider cools down for
    /// this campaign, and the governor hears of it (its one entry point for refusals:
    /// a drop for an adaptive pool, a cooldown cap for a fixed one; the governor owns the
    /// pool's cap and ends the cooldown itself).
    async fn refused(&self, attempt: u64, c: &Claim, why: &str) {
        let now = self.now();
        let Some(active) = self.lock().active.remove(&attempt) else { return };
        if let Err(e) = self.store.write(vec![LeadOp::Refused { id: attempt, at: now, next_at: now }]).await {
            tracing::error!(error = %e, "Cannot record a refusal");
        }
        self.count(&c.campaign, Outcome::Refused, None);
        let pool = {
            let mut inner = self.lock();
            let mut pool = None;
            if let Some(rt) = inner.list.iter_mut().find(|r| r.name == c.campaign) {
                rt.live = rt.live.saturating_sub(1);
                if let Some(route) = rt.routes.iter_mut().find(|r| r.provider == c.provider) {
                    route.cooldown_until = now + c.cooldown_ms;
                    pool = route.pool.clone();
                }
                rt.sched.insert(Lead { not_before: now, ..active.lead }, &rt.calendar, now);
            }
            pool
        };
        tracing::warn!(campaign = %c.campaign, provider = %c.provider, reason = %why, "The provider refused a call for concurrency; cooling down");
        if let Some(id) = active.lease {
            let _ = self.governor.release(id).await;
        }
        if let Some(pool) = pool {
            if let Err(e) = self.governor.provider_refused(&pool, c.cooldown_ms).await {
                tracing::warn!(%pool, error = %e.message, "Cannot report a provider refusal");
            }
        }
    }

    /// An error of the provider account (a revoked key, no credit, an unknown assistant or
    /// caller id): not the lead's fault, and every other lead would meet it too. The lead
    /// goes back uncounted (the attempt is recorded as refused), the lease is released,
    /// and the campaign pauses, durably, with the reason, until someone resumes it.
    async fn account_error(&self, attempt: u64, c: &Claim, why: &str) {
        let now = self.now();
        let reason = format!("provider `{}` refused the account: {why}", c.provider);
        // One lock for the lead's return, the pause and the order of their writes, so that
        // the pause is in force before this attempt stops counting as live: a resume made
        // once nothing is live is never undone by an error that came before it.
        let (active, written, paused) = {
            let mut inner = self.lock();
            let Some(active) = inner.active.remove(&attempt) else { return };
            let mut ops = vec![LeadOp::Refused { id: attempt, at: now, next_at: now }];
            let mut paused = false;
            if let Some(rt) = inner.list.iter_mut().find(|r| r.name == c.campaign) {
                if rt.state == State::Running {
                    rt.state = State::Paused;
                    rt.paused_reason = Some(reason.clone());
                    paused = true;
                    ops.push(LeadOp::SetState {
                        name: c.campaign.clone(),
                        state: State::Paused.as_str().into(),
                        reason: Some(reason.clone()),
                        at: now,
                    });
                }
                rt.live = rt.live.saturating_sub(1);
                rt.sched.insert(Lead { not_before: now, ..active.lead }, &rt.calendar, now);
            }
            (active, self.store.write(ops), paused)
        };
        if let Err(e) = written.await {
            tracing::error!(campaign = %c.campaign, error = %e, "Cannot record an account error's pause");
        }
        if let Some(id) = active.lease {
            let _ = self.governor.release(id).await;
        }
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()).account_errors.entry(c.campaign.clone()).or_default() +=
            1;
        if paused {
            tracing::error!(campaign = %c.campaign, provider = %c.provider, reason = %why, "The provider refused the account; the campaign is paused until it is resumed");
            self.live.publish_json(&json!({
                "type": "campaign_paused",
                "at_ms": now,
                "campaign": c.campaign,
                "provider": c.provider,
                "reason": reason,
            }));
        }
        self.wake.notify_one();
    }

    async fn answered(&self, attempt: u64) {
        let first = {
            let mut inner = self.lock();
            match inner.active.get_mut(&attempt) {
                Some(a) if !a.answered => {
                    a.answered = true;
                    true
                }
                _ => false,
            }
        };
        if first {
            // Progress only (the end comes with its own durable write): not awaited.
            drop(self.store.write(vec![LeadOp::Answered { id: attempt, at: self.now() }]));
        }
    }

    /// Ends an attempt (once, whichever road its outcome took): durably, then frees its
    /// lease, then moves its lead on.
    pub(super) async fn finish(&self, attempt: u64, ended: Ended) {
        let now = self.now();
        let Some(a) = self.lock().active.remove(&attempt) else { return };
        if let Some(call) = &a.call_id {
            self.lock().by_call.remove(&by_call_key(&a.provider, call));
        }
        // A call answered by a machine (or a fax) that ended `completed` reached no one.
        let mut ended = ended;
        if let (Outcome::Completed, Some(by)) = (ended.outcome, a.answerer) {
            ended.outcome = by.outcome();
            if ended.outcome != Outcome::Completed {
                ended.talk_ms = None;
            }
        }
        let retry_cfg = {
            let inner = self.lock();
            inner.list.iter().find(|r| r.name == a.campaign).map(|r| r.cfg.retry.clone())
        }
        .unwrap_or_default();
        let next = retry::next(&retry_cfg, ended.outcome, a.number, now);
        let next_at = match next {
            Next::RetryAt(t) => t,
            _ => 0,
        };
        let end = AttemptEnd {
            id: attempt,
            outcome: ended.outcome.as_str().into(),
            reason: ended.reason.clone(),
            ended_at: now,
            talk_ms: ended.talk_ms,
            cost: ended.cost,
            lead_state: next.state().into(),
            next_at,
        };
        // The end is written and the lease released side by side (two commits, two
        // files). A crash between them leaves either an open attempt whose call the
        // restart finds ended, or a dial lease no open attempt holds, which the restart
        // releases.
        let written = self.store.write(vec![LeadOp::EndAttempt(end)]);
        if let Some(id) = a.lease {
            let _ = self.governor.release(id).await;
        }
        // What the lead store made of the end: it may differ from `next` when a callback
        // was taken for the lead while this attempt was out (see the module docs).
        let (again, callbacks_done) = match written.await {
            Ok(out) => match out.into_iter().next() {
                Some(LeadOut::Ended(e)) if e.applied => {
                    let again = (e.lead_state == "pending").then_some(Lead {
                        attempts: e.attempts,
                        warm: e.warm,
                        not_before: e.next_at,
                        ..a.lead
                    });
                    (again, e.callbacks_done)
                }
                // Ended already (by another road, before a restart): nothing moves.
                _ => (None, Vec::new()),
            },
            Err(e) => {
                tracing::error!(error = %e, attempt, "Cannot record an attempt's end");
                let again = match next {
                    Next::RetryAt(t) => Some(Lead { attempts: a.number, not_before: t, ..a.lead }),
                    _ => None,
                };
                (again, Vec::new())
            }
        };
        self.callbacks_done(callbacks_done).await;
        if ended.outcome == Outcome::Refused {
            self.refused_after_placing(&a, now).await;
        }
        self.count(&a.campaign, ended.outcome, ended.cost);
        {
            let mut inner = self.lock();
            if let Some(rt) = inner.list.iter_mut().find(|r| r.name == a.campaign) {
                rt.live = rt.live.saturating_sub(1);
                if let Some(lead) = again {
                    rt.sched.insert(lead, &rt.calendar, now);
                }
            }
        }
        tracing::debug!(campaign = %a.campaign, attempt, outcome = ended.outcome.as_str(), "Attempt ended");
        self.wake.notify_one();
    }

    /// A placed call that the provider ended for concurrency (Vapi's
    /// `…-concurrency-limit-reached` reported afterwards): a refusal like one at placing,
    /// for the provider's cooldown and the governor; the attempt itself counts.
    async fn refused_after_placing(&self, a: &Active, now: u64) {
        let pool = {
            let mut inner = self.lock();
            let rt = inner.list.iter_mut().find(|r| r.name == a.campaign);
            rt.and_then(|rt| {
                let cooldown_ms = u64::try_from(rt.cfg.cooldown.as_millis()).unwrap_or(u64::MAX);
                let route = rt.routes.iter_mut().find(|r| r.provider == a.provider)?;
                route.cooldown_until = now.saturating_add(cooldown_ms);
                Some((route.pool.clone()?, cooldown_ms))
            })
        };
        let Some((pool, cooldown_ms)) = pool else { return };
        if let Err(e) = self.governor.provider_refused(&pool, cooldown_ms).await {
            tracing::warn!(%pool, error = %e.message, "Cannot report a provider refusal");
        }
    }

    /// Marks `done` in the book the callbacks that the lead store settled.
    pub(super) async fn callbacks_done(&self, settled: Vec<(u64, String)>) {
        if settled.is_empty() {
            return;
        }
        let book = self.callbacks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(book) = book {
            for (id, outcome) in settled {
                book.mark(id, CallbackState::Done, Some(outcome)).await;
            }
        }
    }

    fn count(&self, campaign: &str, outcome: Outcome, cost: Option<f64>) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *s.outcomes.entry((campaign.to_string(), outcome.as_str())).or_default() += 1;
        if let Some(c) = cost {
            *s.cost.entry(campaign.to_string()).or_default() += c;
        }
    }

    /// Whether `call_id` on `provider` is a call the dialer placed and still follows
    /// (reconciliation must not adopt it: its lease is the dialer's).
    pub fn owns_call(&self, provider: &str, call_id: &str) -> bool {
        self.lock().by_call.contains_key(&by_call_key(provider, call_id))
    }

    /// A provider's news about a call (a call event from the bus). True when the call is
    /// one of the dialer's.
    async fn provider_update(&self, u: ProviderUpdate) -> bool {
        let attempt = {
            let inner = self.lock();
            inner
                .by_call
                .get(&by_call_key(&u.provider, &u.call_id))
                .copied()
                .or(u.attempt.filter(|a| inner.active.get(a).is_some_and(|x| x.provider == u.provider)))
        };
        let Some(attempt) = attempt else { return false };
        match u.state {
            CallState::Ended(e) => self.finish(attempt, e).await,
            CallState::Live => self.answered(attempt).await,
            CallState::Answered(by) => {
                if let Some(a) = self.lock().active.get_mut(&attempt) {
                    a.answerer = Some(by);
                }
                self.answered(attempt).await
            }
            CallState::Ringing | CallState::Unknown => {}
        }
        true
    }

    /// Turns booked callbacks into warm leads of the campaigns that return them.
    pub(super) async fn take_callbacks(&self) {
        if !self.lock().list.iter().any(|r| r.cfg.callbacks && r.state != State::Stopped) {
            return;
        }
        let Some(book) = self.callbacks.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let booked = book.booked();
        if booked.is_empty() {
            return;
        }
        let now = self.now();
        for cb in booked {
            if self.lock().seen_callbacks.contains(&cb.id) {
                continue;
            }
            let target = {
                let inner = self.lock();
                inner
                    .list
                    .iter()
                    .filter(|r| r.cfg.callbacks && r.state != State::Stopped && self.pacing.paces(&r.name, now))
                    .find(|r| r.routes.iter().any(|route| route.provider == cb.provider || route.pool.is_none()))
                    .map(|r| (r.name.clone(), r.callback_class.clone(), r.tz))
            };
            let Some((campaign, class, tz)) = target else { continue };
            let number = match callgate_dialer::phone::normalize(&cb.number, None) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(callback = cb.id, error = %e, "A booked callback has a number that cannot be dialed");
                    book.mark(cb.id, CallbackState::Done, Some(Outcome::Invalid.as_str().to_owned())).await;
                    self.lock().seen_callbacks.insert(cb.id);
                    continue;
                }
            };
            let lead_tz = callgate_dialer::phone::zone_of(&number).unwrap_or(tz);
            let op = LeadOp::AddCallback {
                campaign: campaign.clone(),
                lead: CallbackLead {
                    callback_id: cb.id,
                    phone: number.e164.clone(),
                    timezone: lead_tz.name().to_string(),
                    class,
                    booked_at: cb.booked_at,
                    due_at: cb.due_at,
                },
                at: now,
            };
            let out = self.store.write(vec![op]).await.map(|o| o.into_iter().next());
            if out.is_ok() {
                // Taken (now, or in a run before a crash): no longer `booked`. Durable
                // before the lead can be dialed.
                book.mark(cb.id, CallbackState::Dialing, None).await;
                if matches!(out, Ok(Some(LeadOut::Done))) {
                    // Taken before, and perhaps settled too, in a run whose marks were lost.
                    self.callbacks_done(self.store.settled_callbacks(&[cb.id]).unwrap_or_default()).await;
                }
                self.lock().seen_callbacks.insert(cb.id);
            }
            match out {
                Ok(Some(LeadOut::Callback { lead_id, .. })) => {
                    let Ok(Some(row)) = self.store.lead(lead_id) else { continue };
                    if row.state != "pending" {
                        continue;
                    }
                    // (A lead being dialed is not: the end of its attempt decides.)
                    let mut inner = self.lock();
                    if let Some(rt) = inner.list.iter_mut().find(|r| r.name == campaign) {
                        let lead = Lead {
                            id: lead_id,
                            tz: row.timezone.parse().unwrap_or(lead_tz),
                            score: row.score,
                            attempts: row.attempts,
                            warm: row.warm,
                            not_before: row.next_at,
                        };
                        rt.sched.insert(lead, &rt.calendar, now);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "Cannot take a booked callback"),
            }
        }
        self.wake.notify_one();
    }

    /// Resolves the attempts a previous run left open, and frees dial leases that no open
    /// attempt holds. Runs before the loop starts (on one node alone; in cluster mode each
    /// campaign's new pacer resolves its campaign's, see `pacing`).
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), String> {
        let open = self.store.open_attempts().map_err(|e| e.to_string())?;
        let live: FxHashMap<String, LeaseId> = self.dial_leases().into_iter().map(|(k, id, _)| (k, id)).collect();
        let mut kept: std::collections::HashSet<LeaseId> = std::collections::HashSet::new();
        let mut resolved = (0usize, 0usize, 0usize);
        for a in open {
            let lease = live.get(&format!("dial:{}:{}", a.campaign, a.id)).copied();
            match self.resolve_open(a, lease, None).await {
                Resolved::Following => {
                    if let Some(l) = lease {
                        kept.insert(l);
                    }
                    resolved.0 += 1;
                }
                Resolved::Ended => resolved.1 += 1,
                Resolved::NeverPlaced => resolved.2 += 1,
                Resolved::Deferred | Resolved::Unknown => {}
            }
        }
        // Dial leases that no attempt holds (a crash between the grant and the record).
        let mut orphans = 0;
        for (key, id) in &live {
            if key.starts_with("dial:") && !kept.contains(id) {
                let still_active = self.lock().active.values().any(|a| a.lease == Some(*id));
                if !still_active && self.governor.release(*id).await.unwrap_or(false) {
                    orphans += 1;
                }
            }
        }
        // Callbacks the lead store settled whose `done` mark a crash (or a journal error)
        // lost: marked now.
        let book = self.callbacks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(book) = book {
            let dialing = book.dialing();
            if !dialing.is_empty() {
                match self.store.settled_callbacks(&dialing) {
                    Ok(settled) => self.callbacks_done(settled).await,
                    Err(e) => tracing::warn!(error = %e, "Cannot read the settled callbacks"),
                }
            }
        }
        if resolved != (0, 0, 0) || orphans > 0 {
            tracing::info!(
                following = resolved.0,
                ended = resolved.1,
                never_placed = resolved.2,
                orphan_leases = orphans,
                "Resolved the attempts open at the last stop"
            );
        }
        Ok(())
    }
}

/// What became of an attempt left open.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// Its call is still live: followed to its end.
    Following,
    /// Ended (as the provider says, or `interrupted` when nobody can say).
    Ended,
    /// The provider has no call for it: given back, uncounted.
    NeverPlaced,
    /// Too young to say (its node may still be placing it): counted as live and looked at
    /// again once any placing must have finished.
    Deferred,
    /// Its lead or campaign is unknown here: left alone.
    Unknown,
}

impl Campaigns {
    /// The live dial leases (`dial:` keys): key, id and when granted.
    pub(super) fn dial_leases(&self) -> Vec<(String, LeaseId, u64)> {
        self.governor
            .leases(None)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                let key = l.key.as_deref()?;
                key.starts_with("dial:").then(|| (key.to_string(), l.id, l.granted_at_ms))
            })
            .collect()
    }

    /// Resolves one attempt a stopped run (or a dead node) left open, holding `lease`: asks
    /// the provider what became of its call. With `young_until`, an attempt the provider
    /// has no call for (or cannot say about) is not given back before that time: it is
    /// counted as live meanwhile and resolved then (see `pacing`).
    pub(super) async fn resolve_open(
        self: &Arc<Self>,
        a: callgate_store::AttemptRow,
        lease: Option<LeaseId>,
        young_until: Option<u64>,
    ) -> Resolved {
        let now = self.now();
        let (dialer, lead) = {
            let inner = self.lock();
            let rt = inner.list.iter().find(|r| r.name == a.campaign);
            let dialer =
                rt.and_then(|rt| rt.routes.iter().find(|r| r.provider == a.provider)).map(|r| r.dialer.clone());
            (dialer, rt.map(|rt| rt.tz))
        };
        let row = self.store.lead(a.lead_id).ok().flatten();
        let (Some(row), Some(default_tz)) = (row, lead) else { return Resolved::Unknown };
        let tz = row.timezone.parse().unwrap_or(default_tz);
        let lead_key = Lead {
            id: row.id,
            tz,
            score: row.score,
            attempts: a.number.saturating_sub(1),
            warm: row.warm,
            not_before: 0,
        };
        let call = PlaceCall {
            attempt: a.id,
            campaign: a.campaign.clone(),
            lead_id: row.id,
            phone: row.phone.clone(),
            name: row.name.clone(),
            vars: None,
            lease: a.lease.clone().unwrap_or_default(),
            caller_index: 0,
        };
        // What the provider knows of this attempt's call.
        let mut asked = false;
        let call_id = match (&a.call_id, &dialer) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(d)) => match d.find(&call, a.placed_at).await {
                Ok(found) => {
                    asked = true;
                    if let Some(id) = &found {
                        // Found by the metadata the call echoes: recorded, so a later
                        // restart need not ask again (written before any end of it).
                        drop(self.store.write(vec![LeadOp::Placed { id: a.id, call_id: id.clone() }]));
                    }
                    found
                }
                Err(e) => {
                    tracing::warn!(attempt = a.id, error = %e, "Cannot ask the provider about an open attempt");
                    None
                }
            },
            (None, None) => None,
        };
        let state = match (&call_id, &dialer) {
            (Some(id), Some(d)) => d.status(id).await.unwrap_or(CallState::Unknown),
            _ => CallState::Unknown,
        };
        if call_id.is_none() {
            if let Some(until) = young_until.filter(|&t| now < t) {
                self.defer_open(a, until);
                return Resolved::Deferred;
            }
        }
        let active = Active {
            campaign: a.campaign.clone(),
            lead: lead_key,
            number: a.number,
            provider: a.provider.clone(),
            lease,
            call_id: call_id.clone(),
            answered: a.answered_at.is_some(),
            answerer: None,
        };
        let inner_insert = |active: Active| {
            let mut inner = self.lock();
            if let Some(c) = &active.call_id {
                inner.by_call.insert(by_call_key(&active.provider, c), a.id);
            }
            if let Some(rt) = inner.list.iter_mut().find(|r| r.name == active.campaign) {
                rt.live += 1;
            }
            inner.active.insert(a.id, active);
        };
        match (call_id.is_some(), state) {
            (true, CallState::Ringing | CallState::Live | CallState::Answered(_)) => {
                // Still live on the platform: follow it to its end.
                inner_insert(active);
                Resolved::Following
            }
            (true, CallState::Ended(e)) => {
                inner_insert(active);
                self.finish(a.id, e).await;
                Resolved::Ended
            }
            (false, _) if asked && dialer.as_ref().is_some_and(|d| d.poll_every().is_some()) => {
                // The provider answered and has no call for it: never placed. The
                // attempt does not count; the lead is dialed again.
                if let Some(l) = lease {
                    let _ = self.governor.release(l).await;
                }
                let _ = self.store.write(vec![LeadOp::Refused { id: a.id, at: now, next_at: now }]).await;
                let mut inner = self.lock();
                if let Some(rt) = inner.list.iter_mut().find(|r| r.name == a.campaign) {
                    rt.sched.insert(lead_key, &rt.calendar, now);
                }
                Resolved::NeverPlaced
            }
            _ => {
                // Nobody can say (the simulator's calls died with the process, or the
                // provider could not be asked): interrupted, counted, retried later.
                inner_insert(active);
                self.finish(
                    a.id,
                    Ended {
                        outcome: Outcome::Interrupted,
                        reason: Some("callgate restarted".into()),
                        talk_ms: None,
                        cost: None,
                    },
                )
                .await;
                Resolved::Ended
            }
        }
    }
}

impl Campaigns {
    /// Serves one message of the bus: a call event (answered with whether the call is
    /// one of the dialer's) or a campaign command of the operating layer.
    async fn on_bus(&self, msg: ToDialer) {
        match msg {
            ToDialer::Call(update, answer) => {
                let _ = answer.send(self.provider_update(update).await);
            }
            ToDialer::Command(CampaignCommand::List(answer)) => {
                let _ = answer.send(self.infos());
            }
            ToDialer::Command(CampaignCommand::Pause { name, reason, done }) => {
                let _ = done.send(self.act_for(&name, Action::Pause, &reason).await);
            }
            ToDialer::Command(CampaignCommand::Resume { name, reason, done }) => {
                let _ = done.send(self.act_for(&name, Action::Resume, &reason).await);
            }
        }
    }

    /// Every campaign as the operating layer sees it.
    fn infos(&self) -> Vec<CampaignInfo> {
        self.list()
            .into_iter()
            .filter_map(|c| {
                let flow = self.view(&c.name).ok()?.flow;
                Some(CampaignInfo { priority: c.priority, running: c.state == "running", flow, name: c.name })
            })
            .collect()
    }

    /// Pauses or resumes a campaign for the operating layer (durably, as
    /// `POST /v1/campaigns/{name}/pause|resume` does); true when it is in the asked state.
    async fn act_for(&self, name: &str, action: Action, reason: &str) -> bool {
        let want = if action == Action::Pause { "paused" } else { "running" };
        match self.act(name, action).await {
            Ok(v) => v.state == want,
            Err(e) => {
                tracing::warn!(campaign = %name, reason, action = want, error = %e.message, "Cannot change the campaign's state");
                false
            }
        }
    }
}
