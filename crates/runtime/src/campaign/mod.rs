// Long file: the campaign dialer's state and its public handle; the pacing loop is in run.rs.
//! Outbound campaigns: a dialer that paces leads to the concurrency budget.
//!
//! # How a call is placed
//! One pacing loop serves every campaign, the higher `priority` first (in turn among
//! equals). A campaign may dial when it is running, below its own `max_concurrency`, has a
//! token in its calls-per-second bucket, has a provider that is not cooling down after a
//! refusal, and a lead whose calling window is open (see [`callgate_dialer::schedule`]). Then:
//!
//! 1. the lead is taken from the scheduler, and a lease is asked of the governor for the
//!    flow's pools (with the chosen provider's pool) in the campaign's class, never
//!    waiting: a `rejected` puts the lead back. So inbound reserves, other campaigns'
//!    priorities and every other client of the pools hold automatically;
//! 2. the attempt is written to `campaigns.db` (lead `dialing`, attempt `dialing`, with
//!    its lease) and the write is awaited: it is on disk *before* the call is placed;
//! 3. the call is placed with the provider; its call id is recorded;
//! 4. the outcome (pushed by the simulator, handed over by a provider webhook, or found by
//!    polling the call) ends the attempt durably, releases the lease, and sends the lead
//!    to `done`, `failed`, `exhausted`, or back to the scheduler after its retry delay.
//!
//! # The campaign's own cap
//! `max_concurrency` is counted by the dialer (its live attempts), not by a ledger pool:
//! the dialer never queues, so a campaign at its cap claims nothing in the shared pools and
//! never blocks another campaign (the claimed-pools rule is met trivially), and campaigns
//! created at runtime need no new pool. A configured flow may still name a pool of its own
//! (`pools = ["vapi-main", "renewals-campaign"]`) when the cap must also hold for other
//! clients.
//!
//! # Refusals
//! A provider's concurrency refusal is not a failed lead: the lease is released, the
//! attempt is recorded as `refused` (it does not count), the lead goes back, that
//! provider cools down for the campaign's `cooldown`, and the refusal is reported to the
//! governor ([`callgate_governor::Governor::provider_refused`]), which owns the pool's cap:
//! an adaptive pool takes it as a drop; a fixed pool is capped at what callgate counts in
//! use until the cooldown ends or reconciliation finds room on the platform. The dialer
//! never sets a cap itself. Other providers of a sharded campaign go on.
//!
//! # Crash safety
//! Because of step 2, after a SIGKILL every attempt that may have been placed is on disk.
//! At start, each open attempt is resolved: a call the provider still has is followed to
//! its end; one it shows ended gets its outcome; one it never placed is given back (the
//! attempt does not count); one nobody can say anything about is `interrupted` (counts, and
//! is retried after the `failed` delay). An attempt is placed at most once, by
//! construction: no code path places an attempt that is already on disk. Leases of the
//! dialer (`dial:` keys) that no open attempt holds are released.
//!
//! # Callbacks
//! A campaign with `callbacks = true` takes the callbacks that inbound overflow booked on
//! its providers (`booked` → `dialing` in the journal) and makes each a warm lead of its
//! number (a new lead, or the campaign's lead of that number made warm): due at the
//! promised time, dialed before every cold lead, in `callback_class`. A taken callback
//! always ends `done`, with an outcome. It is settled in `campaigns.db` in the same commit
//! as the attempt end that settles it, then marked in the journal; a mark that a crash or
//! a journal error lost is made at the next start.
//!
//! - Dialed as itself: done once its lead is through (done, failed or exhausted), with the
//!   last attempt's outcome; in between, retries follow the campaign's policy.
//! - Taken while its lead was being dialed (a campaign attempt, or one for an earlier
//!   callback, was out): the end of that attempt decides. If the attempt reached the
//!   person *after they asked* (`completed`, and answered at or after the booking; when
//!   callgate never heard the answer, the end minus the talk time stands for it), they
//!   have been called back: the callback is done with `completed` and they are not called
//!   again. Otherwise (no answer, busy, voicemail, failed, interrupted, refused, or a
//!   conversation that began before the booking: someone else on a shared line, say) the
//!   callback is still owed: the lead is pending again, warm, due at the promised time,
//!   with attempts of its own, and is dialed as the callback. An `invalid` outcome settles
//!   it as `invalid` (the number cannot be called).
//! - Taken after the dialer read the lead but before the attempt was recorded: the lead
//!   store begins an attempt only for the lead as it was read (still pending, returning
//!   the same callback or none), so the attempt is not begun, its lease is released, and
//!   the lead is dialed as the callback.
//! - A second callback for a lead that returns one already: the lead keeps the earlier
//!   promised time, and the dial that settles one settles both.

pub mod cli;
mod pacing;
mod run;
pub mod suppress;
mod view;

pub use callgate_events::bus::ProviderUpdate;
pub use pacing::{Pacer, Pacing};
pub use suppress::Suppressions;
pub use view::{
    config_from_json, config_json, CampaignBrief, CampaignProvider, CampaignView, ImportReport, LeadCounts,
};

use crate::clock::Clock;
use crate::providers::{Credentials, ProviderSet};
use callgate_backend::leads::Leads;
use callgate_config::{CampaignConfig, Config};
use callgate_dialer::dial::{self, CallEvent, Dialer};
use callgate_dialer::schedule::{Lead, Scheduler};
use callgate_dialer::window::Calendar;
use callgate_dialer::{import, zones};
use callgate_events::bus::DialerInbox;
use callgate_events::live::Live;
use callgate_governor::{Error, Governor};
pub use callgate_store::CallbackState;
use callgate_store::{LeadOp, StoredCampaign};
use chrono_tz::Tz;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// A campaign's state. `stopped` is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not dialing; live calls go on.
    Paused,
    /// Dialing.
    Running,
    /// Ended for good: no more dials; live calls go on.
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Paused => "paused",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "stopped" => State::Stopped,
            _ => State::Paused,
        }
    }
}

/// What `POST /v1/campaigns/{name}/{action}` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Paused → running (the first time).
    Start,
    /// Running → paused.
    Pause,
    /// Paused → running.
    Resume,
    /// → stopped, for good.
    Stop,
}

/// Callbacks that inbound overflow booked, as the dialer reads and marks them.
pub trait CallbackBook: Send + Sync + 'static {
    /// Booked callbacks not yet returned (at most a few hundred, soonest due first).
    fn booked(&self) -> Vec<BookedCallback>;

    /// Notes, durably before it returns, how far the dialer got with callback `id`:
    /// `Dialing` once a campaign took it (it is no longer `booked`), `Done` with the
    /// outcome it is settled with (see "Callbacks" in the module docs). A book that keeps
    /// no state (a test's list) ignores it.
    fn mark(&self, id: u64, state: CallbackState, outcome: Option<String>) -> dial::Fut<'_, ()> {
        let _ = (id, state, outcome);
        Box::pin(async {})
    }

    /// Ids of the callbacks the book shows `dialing` (the start looks for ones the lead
    /// store settled but whose `Done` mark a crash lost). A book that keeps no state has
    /// none.
    fn dialing(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// One booked callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookedCallback {
    /// Its id (one lead per callback, ever).
    pub id: u64,
    /// The provider the caller came through.
    pub provider: String,
    /// The number to call back.
    pub number: String,
    /// Unix ms: when the caller asked (a campaign call that reaches the number from then
    /// on settles the callback).
    pub booked_at: u64,
    /// Unix ms: not before.
    pub due_at: u64,
}

/// The callbacks that inbound overflow booked in the journal (`GET /v1/callbacks`), read
/// through the governor: those still `booked`, soonest due first.
#[derive(Debug)]
pub struct JournalBook {
    governor: Arc<Governor>,
}

impl JournalBook {
    /// The book kept by `governor`'s records.
    pub fn new(governor: Arc<Governor>) -> JournalBook {
        JournalBook { governor }
    }
}

impl CallbackBook for JournalBook {
    fn mark(&self, id: u64, state: CallbackState, outcome: Option<String>) -> dial::Fut<'_, ()> {
        Box::pin(async move {
            let at = self.governor.now_ms();
            let update = callgate_store::CallbackUpdate { id, state, outcome, at };
            if let Err(e) = self.governor.record(vec![callgate_store::Record::CallbackState(update)]).await {
                tracing::warn!(callback = id, state = state.as_str(), error = %e.message, "Cannot mark a booked callback");
            }
        })
    }

    fn booked(&self) -> Vec<BookedCallback> {
        let query = callgate_store::CallbackQuery { state: Some("booked".into()), flow: None, limit: 500 };
        match self.governor.callbacks(&query) {
            Ok(list) => list
                .into_iter()
                .map(|c| BookedCallback {
                    id: c.id,
                    provider: c.provider,
                    number: c.number,
                    booked_at: c.booked_at,
                    due_at: c.due_at,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "Cannot read the booked callbacks");
                Vec::new()
            }
        }
    }

    fn dialing(&self) -> Vec<u64> {
        let query = callgate_store::CallbackQuery { state: Some("dialing".into()), flow: None, limit: usize::MAX };
        match self.governor.callbacks(&query) {
            Ok(list) => list.into_iter().map(|c| c.id).collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "Cannot read the callbacks being dialed");
                Vec::new()
            }
        }
    }
}

/// A token bucket for calls per second, on the governor's clock.
#[derive(Clone, Debug)]
struct Bucket {
    rate_per_ms: f64,
    capacity: f64,
    tokens: f64,
    at: u64,
}

impl Bucket {
    fn new(per_second: f64, now: u64) -> Bucket {
        // A tenth of a second's worth of calls may go at once (at least one), so a fast
        // campaign is not held to the loop's rhythm while a slow one stays evenly spaced.
        let capacity = (per_second / 10.0).max(1.0);
        Bucket { rate_per_ms: per_second / 1000.0, capacity, tokens: capacity, at: now }
    }

    fn refill(&mut self, now: u64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) as f64 * self.rate_per_ms).min(self.capacity);
            self.at = now;
        }
    }

    /// A new rate from now on (a schedule's), keeping the tokens earned so far.
    fn set_rate(&mut self, per_second: f64, now: u64) {
        self.refill(now);
        let capacity = (per_second / 10.0).max(1.0);
        *self = Bucket { rate_per_ms: per_second / 1000.0, capacity, tokens: self.tokens.min(capacity), at: self.at };
    }

    fn ready(&mut self, now: u64) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// Where a campaign's calls go: one provider account (or the simulator).
struct Route {
    provider: String,
    /// The account's pool (`None`: the simulator, which uses the flow's pools as they are).
    pool: Option<String>,
    dialer: Arc<dyn Dialer>,
    cooldown_until: u64,
}

/// A campaign as the dialer runs it.
struct Runtime {
    name: String,
    cfg: CampaignConfig,
    source: String,
    state: State,
    class: String,
    callback_class: String,
    ttl_ms: u64,
    flow_pools: Vec<(String, u32)>,
    routes: Vec<Route>,
    calendar: Calendar,
    tz: Tz,
    sched: Scheduler,
    /// Attempts between claim and end (dialing or in a call).
    live: u32,
    bucket: Bucket,
    /// The last acquire was rejected: skip until the loop next wakes.
    blocked: bool,
    /// Why it cannot dial at all (a provider without API credentials).
    unavailable: Option<String>,
    /// Why callgate paused it (an account error), until it is resumed.
    paused_reason: Option<String>,
    caller_rr: usize,
}

/// An attempt between claim and end.
#[derive(Clone, Debug)]
struct Active {
    campaign: String,
    lead: Lead,
    number: u32,
    provider: String,
    lease: Option<callgate_core::LeaseId>,
    call_id: Option<String>,
    answered: bool,
    /// Who answered, when answering machine detection said so before the end.
    answerer: Option<dial::Answerer>,
}

#[derive(Default)]
struct Inner {
    list: Vec<Runtime>,
    active: FxHashMap<u64, Active>,
    /// `provider \0 call id` → attempt.
    by_call: FxHashMap<String, u64>,
    /// Units claimed but not yet granted, by pool (so one loop pass does not over-claim).
    pending: FxHashMap<String, u32>,
    /// Leads taken from a schedule whose dial has not finished (`run::Picked`): neither in
    /// the schedule nor an active attempt yet, and so left alone by the pacer's refresh
    /// and a takeover, which would schedule them a second time. Counted: a lead given back
    /// during its dial may be picked again before that dial's end is counted.
    picked: FxHashMap<u64, u32>,
    rr: usize,
    /// Booked callbacks already taken (or found taken) in this run.
    seen_callbacks: rustc_hash::FxHashSet<u64>,
    /// (campaign, provider) of the pollers running.
    pollers: rustc_hash::FxHashSet<(String, String)>,
    /// campaign → what the `[[schedules]]` in force change in it (cap, rate).
    scheduled: FxHashMap<String, callgate_config::CampaignChange>,
}

/// Counters for `/metrics` (since the process started).
#[derive(Default)]
struct Stats {
    /// (campaign, outcome) → attempts ended.
    outcomes: std::collections::BTreeMap<(String, &'static str), u64>,
    /// campaign → USD.
    cost: std::collections::BTreeMap<String, f64>,
    /// campaign → calls the provider refused for the account (each pauses the campaign).
    account_errors: std::collections::BTreeMap<String, u64>,
}

/// Every campaign, the pacing loop and the outcomes. See the module docs.
pub struct Campaigns {
    /// Admission: every lease of a call is asked of it and given back to it.
    governor: Arc<Governor>,
    /// Where the dialer announces what it did on its own (paused for an account error,
    /// resumed by hand).
    live: Live,
    /// Call events and campaign commands from the bus, taken by the task that serves them.
    inbox: Mutex<Option<DialerInbox>>,
    /// Replaced by a configuration reload (flows, classes, campaigns).
    config: std::sync::RwLock<Arc<Config>>,
    /// The providers in force, which a campaign's dialers are built from (a reload swaps
    /// them and rebuilds the dialers of the campaigns whose providers changed).
    providers: ProviderSet,
    /// Campaigns, leads and attempts (durable; ids come from it).
    store: Arc<dyn Leads>,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Pacing rounds that found nothing to dial, counted ([`Campaigns::settle`] waits on it).
    idle_rounds: tokio::sync::watch::Sender<u64>,
    events: mpsc::UnboundedSender<(String, CallEvent)>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, CallEvent)>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stats: Mutex<Stats>,
    callbacks: Mutex<Option<Arc<dyn CallbackBook>>>,
    /// The suppression lists, checked at import and just before each dial.
    suppressions: Arc<Suppressions>,
    /// A seam for tests: awaited after a lead is picked and first checked, before its
    /// lease is asked for (see [`Campaigns::set_pick_hook`]).
    pick_hook: Mutex<Option<PickHook>>,
    /// Which campaigns this node paces (all of them, but in a cluster with a database).
    pacing: Arc<Pacing>,
}

/// What [`Campaigns::set_pick_hook`] runs, with the picked lead's number.
#[doc(hidden)]
pub type PickHook = Arc<dyn Fn(String) -> dial::Fut<'static, ()> + Send + Sync>;

impl std::fmt::Debug for Campaigns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaigns").finish_non_exhaustive()
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::conflict(code, message)
}

/// The lead store could not write (or read); a refusal of the store's rules keeps its kind.
pub(super) fn not_stored(e: Error) -> Error {
    match e.kind {
        callgate_governor::ErrorKind::Unavailable => {
            Error::unavailable(format!("cannot record the decision durably: {e}")).with_source(e)
        }
        _ => e,
    }
}

/// What a campaign whose settings change keeps: its state and why callgate paused it.
type Kept = (State, Option<String>);

/// Why a campaign the configuration file no longer names is paused (at a start or a reload).
const REMOVED_FROM_FILE: &str = "removed from the configuration file";

fn unknown_campaign(name: &str) -> Error {
    Error::not_found("unknown_campaign", format!("no campaign named `{name}`"))
}

impl Campaigns {
    /// Takes in the configured campaigns (kept in `leads`), resolves what a crash left
    /// open, and starts the pacing loop and the task that serves the bus's call events and
    /// campaign commands (`inbox`). Every dial is checked against `suppressions`.
    #[allow(clippy::too_many_arguments)] // each is a narrow handle wired once at start-up
    pub async fn start(
        governor: Arc<Governor>,
        live: Live,
        inbox: DialerInbox,
        config: Arc<Config>,
        providers: ProviderSet,
        store: Arc<dyn Leads>,
        clock: Arc<dyn Clock>,
        suppressions: Arc<Suppressions>,
        pacing: Pacing,
    ) -> Result<Arc<Campaigns>, String> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let campaigns = Arc::new(Campaigns {
            governor: governor.clone(),
            live,
            inbox: Mutex::new(Some(inbox)),
            config: std::sync::RwLock::new(config.clone()),
            providers,
            store,
            clock,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            idle_rounds: tokio::sync::watch::Sender::new(0),
            events,
            events_rx: Mutex::new(Some(events_rx)),
            tasks: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            callbacks: Mutex::new(None),
            suppressions,
            pick_hook: Mutex::new(None),
            pacing: Arc::new(pacing),
        });
        let now = campaigns.now();
        // The file's campaigns: their settings follow the file; their state (paused,
        // running, stopped) is kept across restarts once they exist.
        let stored = campaigns.store.campaigns().map_err(|e| e.to_string())?;
        let mut ops = Vec::new();
        for c in &config.campaigns {
            if let Some(s) = stored.iter().find(|s| s.name == c.name && s.source == "api") {
                tracing::warn!(campaign = %s.name, "A campaign created through the API has the name of a configured one; the file's settings win");
            }
            ops.push(LeadOp::PutCampaign {
                name: c.name.clone(),
                spec: serde_json::to_string(c).map_err(|e| e.to_string())?,
                state: if c.start { "running" } else { "paused" }.into(),
                source: "config".into(),
                at: now,
            });
        }
        campaigns.store.write(ops).await.map_err(|e| e.to_string())?;
        let mut removed = Vec::new();
        for s in campaigns.store.campaigns().map_err(|e| e.to_string())? {
            let cfg = match config.campaign(&s.name) {
                Some(c) => c.clone(),
                None => match serde_json::from_str::<CampaignConfig>(&s.spec) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(campaign = %s.name, error = %e, "Cannot read a stored campaign; it is left out");
                        continue;
                    }
                },
            };
            let problems = config.campaign_problems(&cfg);
            if !problems.is_empty() {
                tracing::error!(campaign = %s.name, problem = %problems[0], "A stored campaign no longer fits the configuration; it is left out");
                continue;
            }
            let mut rt = campaigns.runtime(cfg, &s, now)?;
            // A campaign the file no longer names stops dialing, as a reload does.
            if s.source == "config" && config.campaign(&s.name).is_none() && rt.state == State::Running {
                rt.state = State::Paused;
                rt.paused_reason = Some(REMOVED_FROM_FILE.into());
                removed.push(LeadOp::SetState {
                    name: s.name.clone(),
                    state: State::Paused.as_str().into(),
                    reason: Some(REMOVED_FROM_FILE.into()),
                    at: now,
                });
                tracing::warn!(campaign = %s.name, "A campaign the configuration file no longer names is paused");
            }
            campaigns.lock().list.push(rt);
        }
        if !removed.is_empty() {
            campaigns.store.write(removed).await.map_err(|e| e.to_string())?;
        }
        campaigns.sort();
        campaigns.set_callback_book(Arc::new(JournalBook::new(governor)));
        // In a cluster each campaign's pacer resolves what its earlier pacers left open
        // (`pacing`): other nodes may be placing calls right now.
        if !campaigns.pacing.clustered() {
            campaigns.recover().await?;
        }
        campaigns.spawn_tasks();
        Ok(campaigns)
    }

    /// Runs `hook` in every dial between the pick (and the first check of the lists) and
    /// the lease, the attempt record and the last check: what a test needs to put a
    /// number on a list at exactly that moment. Not for production use.
    #[doc(hidden)]
    pub fn set_pick_hook(&self, hook: PickHook) {
        *self.pick_hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// The suppression lists (the API and the provider edges add opt-outs to them).
    pub fn suppressions(&self) -> &Arc<Suppressions> {
        &self.suppressions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Waits until the pacing loop has gone through every campaign, at the clock's time of
    /// now or later, and found nothing to dial: what it would dial now, it has claimed.
    /// A deterministic step for tests on a manual clock ("no lead is dialed outside its
    /// window") that would otherwise wait a while and hope. Returns at once if the loop has
    /// stopped (the server is shutting down).
    pub async fn settle(&self) {
        let mut rounds = self.idle_rounds.subscribe();
        let seen = *rounds.borrow_and_update();
        self.wake.notify_one();
        // A round under way may have looked before the caller's last change; the round
        // after it began after this call.
        let _ = rounds.wait_for(|n| *n >= seen.saturating_add(2)).await;
    }

    /// The lead store (tests and tools read it).
    pub fn store(&self) -> &Arc<dyn Leads> {
        &self.store
    }

    /// Books for the callbacks the dialer returns (set once the journal's callbacks are
    /// readable; without one, `callbacks = true` campaigns dial only their leads).
    pub fn set_callback_book(&self, book: Arc<dyn CallbackBook>) {
        *self.callbacks.lock().unwrap_or_else(|p| p.into_inner()) = Some(book);
        self.wake.notify_one();
    }

    fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts in force what the `[[schedules]]` active now change in campaigns: campaign
    /// name → change (a campaign left out dials by its own settings). The cap holds from
    /// the next call placed (calls live above a lowered cap go on); the rate from now.
    pub(crate) fn set_schedule(&self, changes: FxHashMap<String, callgate_config::CampaignChange>) {
        let now = self.now();
        let mut inner = self.lock();
        for rt in &mut inner.list {
            let cps = changes.get(&rt.name).and_then(|c| c.calls_per_second).unwrap_or(rt.cfg.calls_per_second).0;
            if (rt.bucket.rate_per_ms - cps / 1000.0).abs() > f64::EPSILON {
                rt.bucket.set_rate(cps, now);
            }
        }
        inner.scheduled = changes;
        drop(inner);
        self.wake.notify_one();
    }

    /// The cap on live calls of `rt` in force: a schedule's, else its own.
    fn cap_of(scheduled: &FxHashMap<String, callgate_config::CampaignChange>, rt: &Runtime) -> Option<u32> {
        scheduled.get(&rt.name).and_then(|c| c.max_concurrency).or(rt.cfg.max_concurrency)
    }

    /// Dials by `config`'s flows and classes from now on (a configuration reload).
    #[doc(hidden)]
    pub fn replace_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        self.wake.notify_one();
    }

    /// Builds a campaign's runtime: its routes (dialers), calendar and pending leads.
    fn runtime(&self, cfg: CampaignConfig, stored: &StoredCampaign, now: u64) -> Result<Runtime, String> {
        let config = self.config();
        let flow = config.flow(&cfg.flow).ok_or_else(|| format!("campaign `{}`: unknown flow", cfg.name))?;
        let callback_class = cfg
            .callback_class
            .clone()
            .or_else(|| config.class("callback").map(|c| c.name.clone()))
            .unwrap_or_else(|| flow.class.clone());
        let providers = self.providers.current();
        let mut routes = Vec::new();
        let mut unavailable = None;
        if let Some(sim) = &cfg.simulate {
            routes.push(Route {
                provider: "simulated".into(),
                pool: None,
                dialer: Arc::new(callgate_providers::sim::SimDialer::new(&cfg.name, sim.clone(), self.events.clone())),
                cooldown_until: 0,
            });
        }
        for name in cfg.provider_names() {
            let Some(p) = providers.named(name) else {
                unavailable = Some(format!("provider `{name}` is not configured"));
                continue;
            };
            let dialer: Arc<dyn Dialer> = match &p.credentials {
                Credentials::Vapi { api_key: Some(key), .. } => {
                    let v = cfg.vapi.clone().ok_or("a vapi campaign without `vapi`")?;
                    Arc::new(
                        callgate_providers::vapi::VapiDialer::new(
                            name,
                            &p.base_url,
                            key.expose().to_string(),
                            &v.assistant_id,
                            v.numbers(),
                            p.reconcile_every,
                        )
                        .with_overrides(p.vapi_overrides()),
                    )
                }
                Credentials::Vapi { api_key: None, .. } => {
                    unavailable = Some(format!("provider `{name}` has no api_key: calls cannot be placed"));
                    continue;
                }
                Credentials::Twilio { account_sid, auth_token, public_url } => {
                    let t = cfg.twilio.clone().ok_or("a twilio campaign without `twilio`")?;
                    Arc::new(callgate_providers::twilio::TwilioDialer::new(
                        callgate_providers::twilio::TwilioAccount {
                            provider: name.to_string(),
                            base_url: p.base_url.clone(),
                            account_sid: account_sid.clone(),
                            auth_token: auth_token.expose().to_string(),
                            public_url: Some(public_url.clone()),
                        },
                        t.from.clone(),
                        t.url.clone(),
                        t.twiml.clone(),
                        cfg.machine_detection()
                            .map(|mode| callgate_providers::twilio::Amd { mode, asynchronous: t.async_amd }),
                        p.reconcile_every,
                    ))
                }
            };
            routes.push(Route {
                provider: name.to_string(),
                pool: Some(p.pool.to_string()),
                dialer,
                cooldown_until: 0,
            });
        }
        if let Some(why) = &unavailable {
            tracing::error!(campaign = %cfg.name, reason = %why, "The campaign cannot dial");
        }
        let tz = cfg.timezone();
        let calendar = Calendar::new(&cfg);
        let mut sched = Scheduler::new();
        let mut zones: FxHashMap<String, Tz> = FxHashMap::default();
        for p in self.store.pending(&cfg.name).map_err(|e| e.to_string())? {
            let lead_tz = *zones.entry(p.timezone.clone()).or_insert_with(|| p.timezone.parse().unwrap_or(tz));
            let lead = Lead {
                id: p.id,
                tz: lead_tz,
                score: p.score,
                attempts: p.attempts,
                warm: p.warm,
                not_before: p.next_at,
            };
            sched.insert(lead, &calendar, now);
        }
        Ok(Runtime {
            name: cfg.name.clone(),
            source: stored.source.clone(),
            state: State::parse(&stored.state),
            class: flow.class.clone(),
            callback_class,
            ttl_ms: u64::try_from(flow.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            flow_pools: flow.pools.iter().map(|p| (p.pool.clone(), p.units)).collect(),
            routes,
            calendar,
            tz,
            sched,
            live: 0,
            bucket: Bucket::new(cfg.calls_per_second.0, now),
            blocked: false,
            unavailable,
            paused_reason: stored.paused_reason.clone().filter(|_| State::parse(&stored.state) == State::Paused),
            caller_rr: 0,
            cfg,
        })
    }

    /// Keeps the list in dialing order: priority first, then name.
    fn sort(&self) {
        self.lock().list.sort_by(|a, b| b.cfg.priority.cmp(&a.cfg.priority).then(a.name.cmp(&b.name)));
    }

    /// Creates a campaign (`POST /v1/campaigns`). `Ok(false, …)` when one with exactly
    /// these settings exists already (a retried request).
    pub async fn create(self: &Arc<Self>, cfg: CampaignConfig) -> Result<(bool, CampaignView), Error> {
        let problems = self.config().campaign_problems(&cfg);
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .iter()
                .map(|p| if p.field.is_empty() { p.message.clone() } else { format!("{}: {}", p.field, p.message) })
                .collect();
            return Err(Error::invalid(text.join("; ")));
        }
        {
            let inner = self.lock();
            if let Some(rt) = inner.list.iter().find(|r| r.name == cfg.name) {
                if rt.cfg == cfg {
                    drop(inner);
                    return Ok((false, self.view(&cfg.name)?));
                }
                return Err(conflict(
                    "campaign_exists",
                    format!("a campaign named `{}` exists with other settings", cfg.name),
                ));
            }
        }
        let now = self.now();
        let state = if cfg.start { State::Running } else { State::Paused };
        let spec = serde_json::to_string(&cfg).map_err(|e| Error::invalid(e.to_string()))?;
        self.store
            .write(vec![LeadOp::PutCampaign {
                name: cfg.name.clone(),
                spec,
                state: state.as_str().into(),
                source: "api".into(),
                at: now,
            }])
            .await
            .map_err(not_stored)?;
        let stored = StoredCampaign {
            name: cfg.name.clone(),
            spec: String::new(),
            state: state.as_str().into(),
            source: "api".into(),
            created_at: now,
            paused_reason: None,
        };
        let name = cfg.name.clone();
        let rt = self.runtime(cfg, &stored, now).map_err(Error::invalid)?;
        {
            let mut inner = self.lock();
            if inner.list.iter().any(|r| r.name == name) {
                return Err(conflict("campaign_exists", format!("a campaign named `{name}` exists")));
            }
            inner.list.push(rt);
        }
        self.sort();
        self.spawn_pollers(&name);
        self.wake.notify_one();
        tracing::info!(campaign = %name, "Campaign created");
        Ok((true, self.view(&name)?))
    }

    /// A configuration reload's `[[campaigns]]` and `[[providers]]` (after
    /// [`Campaigns::replace_config`], with the providers in force swapped): a campaign new
    /// in the file is created as at a start; one whose settings changed takes them (its
    /// dialers, calendar and pacing are rebuilt and its pending leads rescheduled under the
    /// new windows), keeping its state and the attempts it has in flight; one the file no
    /// longer names stops dialing (paused, with the reason); any campaign (from the file
    /// or the API) that dials through one of `changed_providers` (added, changed or
    /// removed) has its dialers rebuilt from the providers in force, keeping the rest.
    /// Durable before it returns; what changed, one line each.
    pub async fn reload(self: &Arc<Self>, changed_providers: &[String]) -> Result<Vec<String>, Error> {
        let config = self.config();
        let now = self.now();
        let mut changes = Vec::new();
        // The file's campaigns that are new, or whose settings changed (with the state they
        // keep): decided once, written durably first, then put in place.
        let outdated: Vec<(&CampaignConfig, Option<Kept>)> = {
            let inner = self.lock();
            config
                .campaigns
                .iter()
                .filter_map(|c| match inner.list.iter().find(|r| r.name == c.name) {
                    Some(r) if r.cfg == *c && r.source == "config" => None,
                    Some(r) => Some((c, Some((r.state, r.paused_reason.clone())))),
                    None => Some((c, None)),
                })
                .collect()
        };
        // The other campaigns that dial through a provider that changed: same settings,
        // new dialers.
        let rerouted: Vec<(CampaignConfig, StoredCampaign)> = {
            let inner = self.lock();
            inner
                .list
                .iter()
                .filter(|r| !outdated.iter().any(|(c, _)| c.name == r.name))
                .filter(|r| r.cfg.provider_names().iter().any(|p| changed_providers.iter().any(|c| c == p)))
                .map(|r| {
                    let stored = StoredCampaign {
                        name: r.name.clone(),
                        spec: String::new(),
                        state: r.state.as_str().into(),
                        source: r.source.clone(),
                        created_at: now,
                        paused_reason: r.paused_reason.clone(),
                    };
                    (r.cfg.clone(), stored)
                })
                .collect()
        };
        let mut ops = Vec::new();
        for (c, _) in &outdated {
            let spec = serde_json::to_string(c).map_err(|e| Error::invalid(e.to_string()))?;
            let state = if c.start { State::Running } else { State::Paused };
            ops.push(LeadOp::PutCampaign {
                name: c.name.clone(),
                spec,
                state: state.as_str().into(),
                source: "config".into(),
                at: now,
            });
        }
        let reason = REMOVED_FROM_FILE;
        // Still dialing, or paused for another reason, though the file no longer names it.
        let removed: Vec<String> = self
            .lock()
            .list
            .iter()
            .filter(|r| r.source == "config" && config.campaign(&r.name).is_none())
            .filter(|r| {
                r.state == State::Running || (r.state == State::Paused && r.paused_reason.as_deref() != Some(reason))
            })
            .map(|r| r.name.clone())
            .collect();
        for name in &removed {
            ops.push(LeadOp::SetState {
                name: name.clone(),
                state: State::Paused.as_str().into(),
                reason: Some(reason.into()),
                at: now,
            });
        }
        if !ops.is_empty() {
            self.store.write(ops).await.map_err(not_stored)?;
        }
        for (c, existing) in outdated {
            let (state, paused_reason) =
                existing.unwrap_or((if c.start { State::Running } else { State::Paused }, None));
            let stored = StoredCampaign {
                name: c.name.clone(),
                spec: String::new(),
                state: state.as_str().into(),
                source: "config".into(),
                created_at: now,
                paused_reason,
            };
            let rt = self.runtime(c.clone(), &stored, now).map_err(Error::invalid)?;
            if self.put_in_place(rt) {
                changes.push(format!("campaign {}: added", c.name));
            } else {
                changes.push(format!("campaign {}: changed", c.name));
            }
        }
        for (cfg, stored) in rerouted {
            let name = cfg.name.clone();
            let rt = self.runtime(cfg, &stored, now).map_err(Error::invalid)?;
            self.put_in_place(rt);
            changes.push(format!("campaign {name}: dialers rebuilt for the providers in force"));
        }
        for name in removed {
            if let Some(rt) = self.lock().list.iter_mut().find(|r| r.name == name) {
                rt.state = State::Paused;
                rt.paused_reason = Some(reason.into());
            }
            changes.push(format!("campaign {name}: removed from the file, paused"));
        }
        self.sort();
        self.wake.notify_one();
        Ok(changes)
    }

    /// Puts a rebuilt (or new) campaign's runtime in place and starts the pollers its
    /// routes need. A campaign that exists keeps what belongs to it, not to its settings:
    /// its state, why callgate paused it, its attempts in flight and its providers'
    /// cooldowns. `true` when it is new.
    fn put_in_place(self: &Arc<Self>, mut rt: Runtime) -> bool {
        let name = rt.name.clone();
        let added = {
            let mut inner = self.lock();
            match inner.list.iter_mut().find(|r| r.name == rt.name) {
                Some(old) => {
                    rt.live = old.live;
                    rt.state = old.state;
                    rt.paused_reason = old.paused_reason.take();
                    for route in &mut rt.routes {
                        if let Some(o) = old.routes.iter().find(|o| o.provider == route.provider) {
                            route.cooldown_until = o.cooldown_until;
                        }
                    }
                    *old = rt;
                    false
                }
                None => {
                    inner.list.push(rt);
                    true
                }
            }
        };
        self.spawn_pollers(&name);
        added
    }

    /// Starts, pauses, resumes or stops a campaign, durably.
    pub async fn act(&self, name: &str, action: Action) -> Result<CampaignView, Error> {
        let target = {
            let inner = self.lock();
            let rt = inner.list.iter().find(|r| r.name == name).ok_or_else(|| unknown_campaign(name))?;
            match (rt.state, action) {
                (State::Stopped, Action::Stop) => None,
                (State::Stopped, _) => {
                    return Err(conflict("campaign_stopped", format!("campaign `{name}` is stopped for good")))
                }
                (State::Running, Action::Start | Action::Resume) | (State::Paused, Action::Pause) => None,
                (_, Action::Start | Action::Resume) => Some(State::Running),
                (_, Action::Pause) => Some(State::Paused),
                (_, Action::Stop) => Some(State::Stopped),
            }
        };
        if let Some(state) = target {
            // Any change by hand clears the reason callgate paused it for.
            let op =
                LeadOp::SetState { name: name.to_string(), state: state.as_str().into(), reason: None, at: self.now() };
            self.store.write(vec![op]).await.map_err(not_stored)?;
            let cleared = self.lock().list.iter_mut().find(|r| r.name == name).and_then(|rt| {
                rt.state = state;
                rt.paused_reason.take()
            });
            tracing::info!(campaign = %name, state = state.as_str(), "Campaign state changed");
            if let Some(reason) = cleared {
                self.live.publish_json(&serde_json::json!({
                    "type": "campaign_resumed",
                    "at_ms": self.now(),
                    "campaign": name,
                    "state": state.as_str(),
                    "cleared": reason,
                }));
            }
            self.wake.notify_one();
        }
        self.view(name)
    }

    /// Adds leads from a CSV or JSON upload.
    pub async fn import(&self, name: &str, body: bytes_like::Body, opts: ImportOptions) -> Result<ImportReport, Error> {
        let (tz, default_region, honoured) = {
            let inner = self.lock();
            let rt = inner.list.iter().find(|r| r.name == name).ok_or_else(|| unknown_campaign(name))?;
            (rt.tz, zones::zone_country(rt.tz.name()).map(str::to_string), rt.cfg.dnc_lists.clone())
        };
        let ctx = import::ImportContext {
            default_tz: tz,
            default_region: opts.country.clone().or(default_region),
            row_offset: opts.row_offset,
        };
        let csv = opts.csv;
        // Parsing 100,000 rows takes a while: off the async workers.
        let parsed = tokio::task::spawn_blocking(move || {
            if csv {
                import::parse_csv(&body, &ctx)
            } else {
                import::parse_json(&body, &ctx)
            }
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(Error::invalid)?;
        let mut report = ImportReport::default();
        for r in parsed.rejected {
            report.reject(r);
        }
        // Suppressed numbers are left out as the lists stand now, every node's changes in
        // (the check before each dial is the one that counts: on failure, import with the
        // copy as it is).
        if let Err(e) = self.suppressions.catch_up().await {
            tracing::warn!(error = %e.message, "Cannot catch up with the suppression lists before an import");
        }
        // The same number twice in one upload: the first row wins.
        let mut first: FxHashMap<String, u64> = FxHashMap::default();
        let mut rows = Vec::with_capacity(parsed.rows.len());
        for r in parsed.rows {
            if let Some(&row) = first.get(&r.lead.phone) {
                report.skip(import::Skipped {
                    row: r.row,
                    phone: r.lead.phone,
                    reason: format!("the same number as row {row}"),
                });
                continue;
            }
            first.insert(r.lead.phone.clone(), r.row);
            if let Some(hit) = self.suppressions.check(honoured.as_deref(), &r.lead.phone) {
                report.suppress(import::Skipped {
                    row: r.row,
                    phone: r.lead.phone.clone(),
                    reason: format!("on the suppression list `{}`", hit.list),
                });
                if !opts.include_suppressed {
                    continue;
                }
            }
            rows.push(r);
        }
        let leads: Vec<callgate_store::NewLead> = rows.iter().map(|r| r.lead.clone()).collect();
        let now = self.now();
        let out = self
            .store
            .write(vec![LeadOp::AddLeads { campaign: name.to_string(), leads, at: now }])
            .await
            .map_err(not_stored)?;
        let ids = match out.into_iter().next() {
            Some(callgate_store::LeadOut::Added(ids)) => ids,
            _ => return Err(Error::internal("the lead store answered oddly")),
        };
        let mut inner = self.lock();
        let Some(rt) = inner.list.iter_mut().find(|r| r.name == name) else { return Err(unknown_campaign(name)) };
        let mut zones: FxHashMap<String, Tz> = FxHashMap::default();
        for (r, id) in rows.into_iter().zip(ids) {
            match id {
                Some(id) => {
                    report.added += 1;
                    let lead_tz =
                        *zones.entry(r.lead.timezone.clone()).or_insert_with(|| r.lead.timezone.parse().unwrap_or(tz));
                    let lead = Lead { id, tz: lead_tz, score: r.lead.score, attempts: 0, warm: false, not_before: 0 };
                    rt.sched.insert(lead, &rt.calendar, now);
                }
                None => report.skip(import::Skipped {
                    row: r.row,
                    phone: r.lead.phone,
                    reason: "already in the campaign".into(),
                }),
            }
        }
        drop(inner);
        self.wake.notify_one();
        tracing::info!(campaign = %name, added = report.added, skipped = report.skipped, rejected = report.rejected, suppressed = report.suppressed, "Leads imported");
        Ok(report)
    }

    /// Adds `number` to suppression list `list` with `source` (`api`, `call:ID`): no
    /// campaign that honours the list dials it from now on (the check just before each
    /// dial sees it at once), and callbacks booked for it and not yet taken are settled
    /// `suppressed`. A callback already taken ends `suppressed` at its dial. Answers 1 when
    /// the number is new to the list.
    pub async fn opt_out(&self, list: &str, number: u64, source: &str) -> Result<usize, Error> {
        self.opt_out_many(list, vec![number], source).await
    }

    /// [`Campaigns::opt_out`] for many numbers at once (an import): one durable write.
    pub async fn opt_out_many(&self, list: &str, numbers: Vec<u64>, source: &str) -> Result<usize, Error> {
        let added = self.suppressions.add(list, numbers, source).await?;
        self.cancel_suppressed_callbacks().await;
        Ok(added)
    }

    /// Settles `suppressed` the booked callbacks (not yet taken by a campaign) whose
    /// number is on any suppression list.
    async fn cancel_suppressed_callbacks(&self) {
        let book = self.callbacks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(book) = book else { return };
        for cb in book.booked() {
            let Ok(n) = callgate_dialer::phone::normalize(&cb.number, None) else { continue };
            if let Some(hit) = self.suppressions.check(None, &n.e164) {
                tracing::info!(callback = cb.id, list = %hit.list, "A booked callback's number is suppressed; it is not returned");
                book.mark(cb.id, CallbackState::Done, Some(dial::Outcome::Suppressed.as_str().to_owned())).await;
                self.lock().seen_callbacks.insert(cb.id);
            }
        }
    }

    /// Names of every campaign, in dialing order.
    pub fn names(&self) -> Vec<String> {
        self.lock().list.iter().map(|r| r.name.clone()).collect()
    }

    /// Stops the loop, the pollers and the simulators; flushes the lead store. Live calls
    /// on real providers go on (their attempts are resolved at the next start).
    pub async fn shutdown(&self) {
        // Nothing will be dialed any more: `settle` need not wait.
        self.idle_rounds.send_replace(u64::MAX);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        for rt in &self.lock().list {
            for r in &rt.routes {
                r.dialer.shutdown();
            }
        }
        // Its campaigns go to other nodes at once rather than after the leases' TTL.
        let pacing = self.pacing.clone();
        let _ = tokio::task::spawn_blocking(move || pacing.release_all()).await;
        self.store.close();
    }
}

/// How an upload is read.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// CSV (else JSON).
    pub csv: bool,
    /// Added to every row number (a chunk of a larger file).
    pub row_offset: u64,
    /// The country of numbers written without a country code.
    pub country: Option<String>,
    /// Import leads on a suppression list too (they end `suppressed` when their turn
    /// comes, so the campaign's progress shows them); by default they are reported and
    /// left out.
    pub include_suppressed: bool,
}

/// The upload body, shared without copying.
pub mod bytes_like {
    /// Bytes of an upload.
    pub type Body = axum::body::Bytes;
}
