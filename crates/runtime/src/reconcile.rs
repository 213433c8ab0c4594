//! Ghost calls: every `reconcile_every`, list the platform's calls and make callgate's
//! count match.
//!
//! - A lease (or waiting ticket) of this provider whose call the platform shows as ended
//!   is released ("reconciled"); so is one whose call is missing from a complete listing
//!   of live calls, once it is older than one period (a call admitted a moment ago may not
//!   be listed yet). A listing that was cut short releases only affirmatively ended calls.
//! - A lease whose call is live and that would expire within three periods is renewed:
//!   the platform's word is the call's heartbeat.
//! - A live call callgate holds nothing for is "adopted" (takes a lease in the provider's
//!   pool, in the highest class, so it counts) once it has been seen unknown in two
//!   listings in a row, so a call whose webhook is on its way is not counted twice. When
//!   the pool is full the call is logged and counted next time.
//! - Calls the campaign dialer placed are its own: their leases have `dial:` keys, not the
//!   call id, so they would look unknown. They are never adopted, whichever node placed
//!   them (in cluster mode another node's pacer may have): Vapi's are recognised by their
//!   metadata (`assistantOverrides.metadata.callgate_attempt` / `…callgate_lease`), and
//!   Twilio's listing offers only inbound calls for adoption (a call placed through the
//!   API is `outbound-api`; the legs a `<Dial>` opens have a parent). The dialer is also
//!   asked which call ids it follows.
//! - A complete listing with fewer live calls than the pool's limit tells the governor
//!   the platform has room: a provider refusal's cooldown cap of the pool ends then.
//!
//! Only leases and tickets whose metadata names this provider are considered: other
//! clients' leases in the same pool are none of the platform's business.

use crate::campaign::Campaigns;
use crate::inbound::Inbound;
use crate::providers::{Credentials, Provider, Providers};
use callgate_events::live::Live;
use callgate_events::metrics::Metrics;
use callgate_governor::{AcquireRequest, Answer, Edge, Governor, Target};
use callgate_providers::twilio::TwilioClient;
use callgate_providers::vapi::VapiClient;
use callgate_providers::{PlatformCall, PlatformState};
use callgate_store::{CallUpdate, Record};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How far back a Vapi listing looks when no lease is older: calls longer than an hour
/// that callgate never saw are rare (Vapi's default maximum call is ten minutes).
const VAPI_WINDOW_MS: u64 = 3600 * 1000;
/// Clock skew allowed between callgate and the platform.
const SKEW_MS: u64 = 5 * 60 * 1000;
/// A live call's lease is renewed when it would expire within this many periods.
const RENEW_WITHIN_PERIODS: u64 = 3;

enum Source {
    Vapi(VapiClient),
    Twilio(TwilioClient),
}

/// One provider's reconciliation.
pub struct Reconciler {
    governor: Arc<Governor>,
    /// Where released and adopted calls are announced.
    live: Live,
    metrics: Arc<Metrics>,
    /// Which flow a number serves (Twilio listings) and the class adopted calls take.
    inbound: Arc<Inbound>,
    /// The campaign dialer, asked whether it follows a call (its calls are never adopted).
    dialer: Arc<Campaigns>,
    provider: Arc<Provider>,
    source: Source,
    /// Live calls seen unknown in the last listing (adopted if seen again).
    unknown: HashSet<String>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").field("provider", &self.provider.name).finish_non_exhaustive()
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Leases released.
    pub released: usize,
    /// Tickets cancelled.
    pub cancelled: usize,
    /// Leases renewed.
    pub renewed: usize,
    /// Calls adopted.
    pub adopted: usize,
}

/// What reconciliation works with: the governor, the live events, the metrics, the flows
/// and the dialer (narrow handles, not the whole server).
#[derive(Clone, Debug)]
pub struct Handles {
    /// Releases, renews and adopts through it.
    pub governor: Arc<Governor>,
    /// Where reconciliations are published.
    pub live: Live,
    /// Counts passes and repairs.
    pub metrics: Arc<Metrics>,
    /// Which flow a number serves, the class adopted calls take.
    pub inbound: Arc<Inbound>,
    /// Asked whether it follows a call (its calls are never adopted).
    pub dialer: Arc<Campaigns>,
}

impl Reconciler {
    /// A reconciler of `provider` working with `handles`, or `None` when the provider
    /// has no API credentials (a Vapi provider without `api_key`).
    pub fn new(handles: &Handles, provider: Arc<Provider>) -> Option<Reconciler> {
        let source = match &provider.credentials {
            Credentials::Vapi { api_key: Some(key), .. } => {
                Source::Vapi(VapiClient::new(&provider.base_url, key.expose()))
            }
            Credentials::Vapi { api_key: None, .. } => return None,
            Credentials::Twilio { account_sid, auth_token, .. } => {
                Source::Twilio(TwilioClient::new(&provider.base_url, account_sid, auth_token.expose()))
            }
        };
        Some(Reconciler {
            governor: handles.governor.clone(),
            live: handles.live.clone(),
            metrics: handles.metrics.clone(),
            inbound: handles.inbound.clone(),
            dialer: handles.dialer.clone(),
            provider,
            source,
            unknown: HashSet::new(),
        })
    }

    /// Runs a pass every `reconcile_every`, the first one period after the start, until
    /// `stop` fires or is dropped; a pass under way then finishes (a repair is never cut
    /// in the middle).
    pub fn spawn(mut self, mut stop: oneshot::Receiver<()>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(self.provider.reconcile_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = &mut stop => return,
                }
                self.pass().await;
            }
        })
    }

    /// One comparison with the platform. A failed listing changes nothing.
    pub async fn pass(&mut self) -> Pass {
        let provider = &self.provider;
        let governor = &self.governor;
        let started = governor.now_ms();
        let clock = tokio::time::Instant::now();
        let holds = governor.provider_holds(&provider.name);
        let listing = match &self.source {
            Source::Vapi(client) => {
                let oldest = holds.iter().map(|h| h.since).min().unwrap_or(started);
                let since = oldest.min(started.saturating_sub(VAPI_WINDOW_MS)).saturating_sub(SKEW_MS);
                client.calls_since(since).await
            }
            Source::Twilio(client) => {
                let inbound = &self.inbound;
                let name = &provider.name;
                client.live_calls(|to| inbound.serves(name, to)).await
            }
        };
        let live_count =
            listing.as_ref().ok().map(|l| l.calls.iter().filter(|c| c.state == PlatformState::Live).count());
        self.metrics.edges.provider_request(
            &provider.name,
            listing.is_ok(),
            clock.elapsed().as_secs_f64(),
            live_count.map(|n| n as u64),
        );
        let listing = match listing {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(provider = %provider.name, error = %e, "Cannot list the platform's calls; nothing reconciled");
                return Pass::default();
            }
        };
        let period = u64::try_from(provider.reconcile_every.as_millis()).unwrap_or(u64::MAX);
        let by_id: HashMap<&str, PlatformState> = listing.calls.iter().map(|c| (c.id.as_str(), c.state)).collect();
        let (mut ended, mut renew) = (Vec::new(), Vec::new());
        for h in &holds {
            match by_id.get(h.key.as_str()) {
                Some(PlatformState::Ended) => ended.push(h.key.clone()),
                Some(PlatformState::Live)
                    if h.lease.is_some_and(|(_, expires)| {
                        expires <= started.saturating_add(RENEW_WITHIN_PERIODS.saturating_mul(period))
                    }) =>
                {
                    renew.push(h.key.clone());
                }
                Some(PlatformState::Live | PlatformState::Pending) => {}
                None if listing.complete && h.since.saturating_add(period) <= started => ended.push(h.key.clone()),
                None => {}
            }
        }
        // A transferred call answered under a spill's line: its end frees that line (and
        // is recorded under the call's id, not the line's key).
        let mut spilled: HashMap<String, &str> = HashMap::new();
        for c in &listing.calls {
            if let Some(key) = self.inbound.spills.arrived_key(&provider.name, &c.id) {
                spilled.insert(key.clone(), &c.id);
                match c.state {
                    PlatformState::Ended => ended.push(key),
                    PlatformState::Live => renew.push(key),
                    PlatformState::Pending => {}
                }
            }
        }
        let call_of = |key: &str| spilled.get(key).copied().unwrap_or(key).to_owned();
        let mut pass = Pass::default();
        if !ended.is_empty() || !renew.is_empty() {
            match governor.repair(&ended, &renew).await {
                Ok(repaired) => {
                    pass.released = repaired.released.len();
                    pass.cancelled = repaired.cancelled.len();
                    pass.renewed = repaired.renewed;
                    self.metrics.edges.reconciled(&provider.name, pass.released as u64, pass.cancelled as u64);
                    let calls: Vec<String> = repaired.released.iter().map(|(k, _)| call_of(k)).collect();
                    let leases: Vec<(&str, String)> =
                        calls.iter().zip(&repaired.released).map(|(c, (_, l))| (c.as_str(), l.to_string())).collect();
                    let tickets: Vec<(&str, String)> =
                        repaired.cancelled.iter().map(|(k, t)| (k.as_str(), t.to_string())).collect();
                    self.reconciled(&leases, "lease").await;
                    self.reconciled(&tickets, "ticket").await;
                }
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e.message, "Cannot apply a reconciliation")
                }
            }
        }
        if provider.adopt {
            pass.adopted = self.adopt(&listing.calls).await;
        }
        if let (true, Some(live)) = (listing.complete, live_count) {
            if let Err(e) = self.governor.platform_room(&self.provider.pool, live).await {
                tracing::warn!(provider = %self.provider.name, error = %e.message, "Cannot tell the governor about the platform's room");
            }
        }
        if pass != Pass::default() {
            tracing::info!(provider = %self.provider.name, released = pass.released, cancelled = pass.cancelled,
                renewed = pass.renewed, adopted = pass.adopted, "Reconciled with the platform");
        }
        pass
    }

    /// Records and announces calls found over.
    async fn reconciled(&self, ended: &[(&str, String)], what: &str) {
        if ended.is_empty() {
            return;
        }
        let now = self.governor.now_ms();
        let records = ended
            .iter()
            .map(|(call, _)| {
                Record::Call(CallUpdate {
                    provider: self.provider.name.to_string(),
                    call_id: (*call).to_owned(),
                    ended_at: Some(now),
                    ended_reason: Some("callgate-reconciled".into()),
                    at: now,
                    ..CallUpdate::default()
                })
            })
            .collect();
        if let Err(e) = self.governor.record(records).await {
            tracing::warn!(provider = %self.provider.name, error = %e.message, "Cannot record reconciled calls");
        }
        for (call, id) in ended {
            tracing::info!(provider = %self.provider.name, call, what, id = %id, "Released a ghost call: the platform says it is over");
            self.live.publish_json(&json!({
                "type": "reconciled", "at_ms": now, "provider": &*self.provider.name, "call_id": call, what: id,
            }));
        }
    }

    /// Counts live calls callgate did not know (seen unknown twice in a row).
    async fn adopt(&mut self, calls: &[PlatformCall]) -> usize {
        let governor = &self.governor;
        let dialer = &self.dialer;
        let name = &*self.provider.name;
        let spills = &self.inbound.spills;
        // A transferred call answered under a spill's line counts already.
        let known =
            |id: &str| governor.hold(id).is_some() || dialer.owns_call(name, id) || spills.covers(governor, name, id);
        let unknown: HashSet<String> = calls
            .iter()
            .filter(|c| c.state == PlatformState::Live && c.adoptable && !c.dialed)
            .filter(|c| !known(&c.id) && !c.alias.as_deref().is_some_and(known))
            .map(|c| c.id.clone())
            .collect();
        let mut adopted = 0;
        let mut still_unknown = HashSet::new();
        for id in unknown {
            if !self.unknown.contains(&id) {
                still_unknown.insert(id);
                continue;
            }
            let meta = json!({ "provider": &*self.provider.name, "call_id": id, "adopted": true }).to_string();
            let answer = governor
                .acquire(AcquireRequest {
                    target: Target::Pools {
                        pools: vec![(self.provider.pool.to_string(), 1)],
                        class: self.inbound.top_class().to_owned(),
                    },
                    key: Some(id.clone()),
                    ttl_ms: None,
                    max_wait_ms: Some(0),
                    wait_ms: 0,
                    meta: Some(meta),
                    edge: Edge::Reconcile,
                })
                .await;
            match answer {
                Ok(Answer::Granted(lease)) => {
                    adopted += 1;
                    let now = governor.now_ms();
                    let record = Record::Call(CallUpdate {
                        provider: self.provider.name.to_string(),
                        call_id: id.clone(),
                        outcome: Some("adopted".into()),
                        started_at: Some(now),
                        at: now,
                        ..CallUpdate::default()
                    });
                    if let Err(e) = governor.record(vec![record]).await {
                        tracing::warn!(error = %e.message, "Cannot record an adopted call");
                    }
                    tracing::info!(provider = %self.provider.name, call = %id, lease = %lease.id, "Adopted a live call callgate did not know");
                    self.live.publish_json(&json!({
                        "type": "adopted", "at_ms": now, "provider": &*self.provider.name, "call_id": id, "lease": lease.id.to_string(),
                    }));
                }
                Ok(_) => {
                    tracing::warn!(provider = %self.provider.name, call = %id, pool = %self.provider.pool,
                        "A live call callgate did not know cannot be counted: the pool is full");
                    still_unknown.insert(id);
                }
                Err(e) => {
                    tracing::warn!(provider = %self.provider.name, call = %id, error = %e.message, "Cannot adopt a call");
                    still_unknown.insert(id);
                }
            }
        }
        self.unknown = still_unknown;
        if adopted > 0 {
            self.metrics.edges.adopted(&self.provider.name, adopted as u64);
        }
        adopted
    }
}

/// The running reconcilers, one per provider with API credentials. Started with the
/// server; a reload brings them in line with the providers in force ([`Reconcilers::apply`]).
#[derive(Default)]
pub struct Reconcilers {
    tasks: Mutex<Tasks>,
    /// Cluster mode, while another node holds the singleton duties: no reconciler runs
    /// here (see [`Reconcilers::set_standby`]).
    standby: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Tasks {
    /// One per provider that has API credentials.
    active: Vec<Running>,
    /// Told to stop, finishing their last pass (forgotten once finished).
    retiring: Vec<(Arc<str>, JoinHandle<()>)>,
}

/// One provider's reconciler.
struct Running {
    /// What it was started with.
    provider: Arc<Provider>,
    /// Fired to stop it after its pass under way.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Reconcilers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconcilers").field("running", &self.running()).finish()
    }
}

/// Whether a reconciler started for `a` does what one for `b` would.
fn reconciles_alike(a: &Provider, b: &Provider) -> bool {
    (&a.pool, &a.base_url, a.reconcile_every, a.adopt) == (&b.pool, &b.base_url, b.reconcile_every, b.adopt)
        && a.credentials == b.credentials
}

impl Reconcilers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the reconcilers in line with `providers` (those in force now):
    /// a provider's reconciler is stopped when the provider is gone or can no longer list
    /// calls, started for a new one (or one that has API credentials now), and restarted
    /// with the new settings when those it works with changed. One that is stopped
    /// finishes the pass it is in: a repair is never cut in the middle.
    pub fn apply(&self, handles: &Handles, providers: &Providers) {
        let standby = self.standby.load(std::sync::atomic::Ordering::SeqCst);
        let mut tasks = self.lock();
        tasks.retiring.retain(|(_, task)| !task.is_finished());
        let before = std::mem::take(&mut tasks.active);
        for r in before {
            match providers.iter().find(|p| !standby && p.name == r.provider.name) {
                Some(p) if reconciles_alike(p, &r.provider) && !r.task.is_finished() => tasks.active.push(r),
                still_there => {
                    let why = if still_there.is_some() { "its settings changed" } else { "it is no longer configured" };
                    tracing::info!(provider = %r.provider.name, reason = why, "Stopping the provider's reconciliation");
                    let _ = r.stop.send(());
                    tasks.retiring.push((r.provider.name.clone(), r.task));
                }
            }
        }
        for provider in providers.iter().filter(|_| !standby) {
            if tasks.active.iter().any(|r| r.provider.name == provider.name) {
                continue;
            }
            match Reconciler::new(handles, provider.clone()) {
                Some(r) => {
                    let (stop, stopped) = oneshot::channel();
                    tasks.active.push(Running { provider: provider.clone(), stop, task: r.spawn(stopped) });
                }
                None => {
                    tracing::info!(provider = %provider.name, "No API key: calls are not reconciled with the platform")
                }
            }
        }
    }

    /// Cluster mode: `standby` while another node holds the singleton duties (each
    /// provider is reconciled by one node at a time), then [`Reconcilers::apply`]: the
    /// reconcilers stop after their pass under way, or start.
    pub fn set_standby(&self, standby: bool, handles: &Handles, providers: &Providers) {
        self.standby.store(standby, std::sync::atomic::Ordering::SeqCst);
        self.apply(handles, providers);
    }

    /// The providers with a reconciler task alive (one told to stop is until its last
    /// pass ends), each once, by name.
    pub fn running(&self) -> Vec<String> {
        let tasks = self.lock();
        let active = tasks.active.iter().map(|r| (&r.provider.name, &r.task));
        let mut out: Vec<String> = Vec::new();
        for (name, task) in active.chain(tasks.retiring.iter().map(|(n, t)| (n, t))) {
            if !task.is_finished() && !out.iter().any(|o| **o == **name) {
                out.push(name.to_string());
            }
        }
        out.sort();
        out
    }

    /// Stops every reconciler at once, mid-pass if need be (the server is stopping).
    pub fn stop_all(&self) {
        let tasks = std::mem::take(&mut *self.lock());
        for r in tasks.active {
            r.task.abort();
        }
        for (_, task) in tasks.retiring {
            task.abort();
        }
    }
}
