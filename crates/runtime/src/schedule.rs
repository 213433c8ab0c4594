//! `[[schedules]]` in a running server: policy that changes by the hour.
//!
//! A ticker looks every second at which schedules are active at the governor's clock
//! ([`Config::active_schedules`], the same function the simulator calls). When the set
//! changes, the configuration as those schedules make it ([`Config::scheduled`]) is put in
//! force through the governor, as a reload would put it:
//! - pool limits and reserves: the ledger is rebuilt from the scheduled configuration by
//!   the governor's reload (`Command::Reconfigure`: journaled, what fits is granted, what
//!   can never fit ends, a moved limit is a `limit_changed` event). The operating layer is
//!   kept (adaptive limiters, breakers and alerts go on as they were);
//! - overflow chains: the operating layer's scheduled chain of each flow (a breaker's
//!   fallback and an alert's `set_overflow` still come first);
//! - campaigns' `max_concurrency` and `calls_per_second`: the dialer's scheduled pacing.
//!
//! A reserve that follows the forecast (`reserve = { inbound = "forecast" }`) is put in
//! force the same way: the ticker asks [`Forecasts::reserves`] for each such pool's units
//! at the governor's clock, and a changed value (at a 15-minute boundary, or when a refit
//! moves it) rebuilds the ledger with it on top of the active schedules, and is a
//! `reserve_changed` event (`pool`, `class`, `units`, `source`). The ticker also starts
//! the hourly refit of the plans (`forecast.rs`).
//!
//! Each change is a `schedule_changed` event (`active`, `started`, `ended`) on
//! `/v1/events` and the live page, `GET /v1/schedules` lists the schedules and which are
//! active, and `/metrics` has `callgate_schedule_active{schedule}` and
//! `callgate_schedule_changes_total{result}`. A configuration reload puts the new file's
//! schedules in force at once.

use crate::campaign::Campaigns;
use crate::forecast::Forecasts;
use callgate_config::Config;
use callgate_events::live::Live;
use callgate_governor::{Governor, NewLedger};
use callgate_store::Names;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the ticker looks: schedules start and end on the minute, so a change is
/// applied within a second of its time.
const TICK: Duration = Duration::from_secs(1);

/// What putting schedules in force touches: narrow handles, not the whole server.
#[derive(Clone, Debug)]
pub struct Handles {
    /// Rebuilds the ledger as the schedules make it.
    pub governor: Arc<Governor>,
    /// Where changes are published.
    pub live: Live,
    /// Takes the campaigns' scheduled pacing.
    pub campaigns: Arc<Campaigns>,
    /// The reserves that follow the forecast.
    pub forecasts: Arc<Forecasts>,
}

/// The schedules in force, as last applied.
#[derive(Debug)]
pub struct Schedules {
    handles: Handles,
    /// The configuration the schedules apply to (the one in force: a reload replaces it).
    base: Mutex<Arc<Config>>,
    /// The positions active as last put in force (or last tried, when that failed);
    /// `None` before the first look.
    applied: Mutex<Option<Vec<usize>>>,
    /// The names in force and since when (Unix ms).
    active: Mutex<(Vec<String>, u64)>,
    /// The forecast reserves as last put in force: (pool, class, units).
    reserves: Mutex<Vec<(String, String, u32)>>,
    /// A refit of the forecast plans is running.
    refitting: std::sync::atomic::AtomicBool,
    /// The `[[prewarm]]` hooks, looked at by the same ticker.
    prewarm: crate::prewarm::Prewarm,
    /// One application at a time (the ticker's and a reload's).
    running: tokio::sync::Mutex<()>,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// One schedule, as `GET /v1/schedules` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// The days it starts on (`mon` … `sun`).
    pub days: Vec<String>,
    /// Start, local time (`HH:MM`).
    pub start: String,
    /// End, local time (`HH:MM`).
    pub end: String,
    /// The IANA time zone.
    pub timezone: String,
    /// Whether it is in force now.
    pub active: bool,
    /// Since when it is in force (Unix ms), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
}

impl Schedules {
    /// The schedules of `config`, put in force with `handles`.
    pub fn new(handles: Handles, config: Arc<Config>) -> Schedules {
        let prewarm = crate::prewarm::Prewarm::new(handles.forecasts.clone(), handles.live.clone());
        Schedules {
            prewarm,
            handles,
            base: Mutex::new(config),
            applied: Mutex::default(),
            active: Mutex::default(),
            reserves: Mutex::default(),
            refitting: std::sync::atomic::AtomicBool::new(false),
            running: tokio::sync::Mutex::new(()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// A reload's new configuration: its schedules are put in force at once when it or
    /// the one before has any.
    pub async fn reconfigure(&self, config: Arc<Config>) -> Result<bool, String> {
        let scheduled = {
            let mut base = lock(&self.base);
            let forecast = |c: &Config| c.pools.iter().any(|p| p.forecast_class().is_some());
            let scheduled =
                !config.schedules.is_empty() || !base.schedules.is_empty() || forecast(&config) || forecast(&base);
            *base = config.clone();
            scheduled
        };
        // The new file's bounds at once; a plan whose inputs changed is dropped and refit
        // by the ticker within its second, in the background (a fit is seconds of CPU: the
        // reload does not wait for it), its pool holding its floor until the fit lands.
        if self.handles.forecasts.rebase(&config) {
            tracing::info!("The forecast is refit for the new configuration");
        }
        if scheduled {
            self.apply(true).await
        } else {
            Ok(false)
        }
    }

    /// Puts in force the schedules active now, when they are not those in force already
    /// (or always, with `force`: the base configuration changed). True when something was
    /// applied. A failure (the journal failing) is logged, counted and published, and
    /// tried again when the active set next changes or at the next reload.
    pub async fn apply(&self, force: bool) -> Result<bool, String> {
        let _one = self.running.lock().await;
        let base = lock(&self.base).clone();
        let app = &self.handles;
        let now = app.governor.now_ms();
        let active = base.active_schedules(now);
        let reserves = app.forecasts.reserves(&base, now);
        let before = lock(&self.applied).clone();
        let reserves_before = lock(&self.reserves).clone();
        // A forecast reserve starts at its floor: the configuration as written.
        let as_written = |r: &[(String, String, u32)]| {
            r.iter().all(|(p, c, u)| base.pool(p).and_then(|p| p.reserve.get(c)) == Some(u))
        };
        let reserves_changed = if before.is_none() { !as_written(&reserves) } else { reserves != reserves_before };
        if !force && before.as_ref() == Some(&active) && !reserves_changed {
            return Ok(false);
        }
        if before.is_none() && active.is_empty() && !reserves_changed && !force {
            // Nothing active at the first look: the configuration as written is in force.
            *lock(&self.applied) = Some(active);
            *lock(&self.reserves) = reserves;
            return Ok(false);
        }
        *lock(&self.applied) = Some(active.clone());
        *lock(&self.reserves) = reserves.clone();
        let names = base.schedule_names(&active);
        // A reload re-announces the schedules when the file has any; a forecast reserve
        // alone moving is a `reserve_changed`, not a change of schedules.
        let schedules_changed = before.as_ref() != Some(&active) || (force && !base.schedules.is_empty());
        match put_in_force(app, &base, &active, &reserves).await {
            Ok(()) if !schedules_changed => {
                self.publish_reserves(&base, &reserves_before, &reserves, now);
                Ok(true)
            }
            Ok(()) => {
                self.publish_reserves(&base, &reserves_before, &reserves, now);
                self.ok.fetch_add(1, Ordering::Relaxed);
                let was = std::mem::replace(&mut *lock(&self.active), (names.clone(), now)).0;
                let started: Vec<&String> = names.iter().filter(|n| !was.contains(n)).collect();
                let ended: Vec<&String> = was.iter().filter(|n| !names.contains(n)).collect();
                tracing::info!(active = ?names, started = ?started, ended = ?ended, "Schedules changed");
                app.live.publish_json(&serde_json::json!({
                    "type": "schedule_changed", "active": names, "started": started, "ended": ended,
                }));
                Ok(true)
            }
            Err(why) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(active = ?names, reason = %why, "The schedules could not be put in force");
                app.live.publish_json(&serde_json::json!({
                    "type": "schedule_failed", "active": names, "reason": why,
                }));
                Err(why)
            }
        }
    }

    /// A `reserve_changed` event for each forecast reserve that moved.
    fn publish_reserves(&self, base: &Config, was: &[(String, String, u32)], now: &[(String, String, u32)], at: u64) {
        for (pool, class, units) in now {
            let old = was
                .iter()
                .find(|(p, c, _)| p == pool && c == class)
                .map(|r| r.2)
                .or_else(|| base.pool(pool).and_then(|p| p.reserve.get(class).copied()));
            if old == Some(*units) {
                continue;
            }
            let view = self.handles.forecasts.view(base, pool, at);
            let source = view.as_ref().map_or("floor", |v| v.source);
            tracing::info!(pool, class, units, was = ?old, source, "Forecast reserve changed");
            self.handles.live.publish_json(&serde_json::json!({
                "type": "reserve_changed", "pool": pool, "class": class, "units": units, "was": old,
                "source": source, "needed": view.as_ref().and_then(|v| v.needed),
                "interval_start_ms": view.as_ref().and_then(|v| v.interval_start_ms),
            }));
        }
    }

    /// Calls the `[[prewarm]]` hooks whose time came.
    fn look_at_prewarm(&self) {
        let base = lock(&self.base).clone();
        self.prewarm.look(&base, self.handles.governor.now_ms());
    }

    /// Starts a refit of the forecast plans when they are stale (and none is running).
    fn refit_if_stale(self: &Arc<Self>) {
        let base = lock(&self.base).clone();
        let now = self.handles.governor.now_ms();
        if !self.handles.forecasts.stale(&base, now) || self.refitting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.handles.forecasts.refresh(base, now).await;
            this.refitting.store(false, Ordering::Release);
        });
    }

    /// Every schedule of `config`, with which are in force.
    pub fn views(&self, config: &Config) -> Vec<ScheduleView> {
        let (active, since) = lock(&self.active).clone();
        config
            .schedules
            .iter()
            .map(|s| {
                let on = active.contains(&s.name);
                ScheduleView {
                    name: s.name.clone(),
                    days: s.days.iter().map(|d| format!("{d:?}").to_lowercase()).collect(),
                    start: s.start.to_string(),
                    end: s.end.to_string(),
                    timezone: s.timezone.clone(),
                    active: on,
                    since_ms: on.then_some(since),
                }
            })
            .collect()
    }

    /// `callgate_schedule_active{schedule}` (one per configured schedule, at most
    /// `MAX_SCHEDULES`) and `callgate_schedule_changes_total{result}`.
    pub fn render_metrics(&self, config: &Config, out: &mut String) {
        let active = lock(&self.active).0.clone();
        out.push_str("# HELP callgate_schedule_active Whether a [[schedules]] entry is in force (1) or not (0).\n");
        out.push_str("# TYPE callgate_schedule_active gauge\n");
        for s in &config.schedules {
            let on = u8::from(active.contains(&s.name));
            let _ = writeln!(out, "callgate_schedule_active{{schedule=\"{}\"}} {on}", escape(&s.name));
        }
        out.push_str(
            "# HELP callgate_schedule_changes_total Changes of the schedules in force, by result (failed: not applied).\n",
        );
        out.push_str("# TYPE callgate_schedule_changes_total counter\n");
        let _ = writeln!(out, "callgate_schedule_changes_total{{result=\"ok\"}} {}", self.ok.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "callgate_schedule_changes_total{{result=\"failed\"}} {}",
            self.failed.load(Ordering::Relaxed)
        );
        self.prewarm.render_metrics(config, out);
    }
}

/// The ledger, the overflow chains and the campaigns as `base` under the schedules at
/// `active` makes them.
async fn put_in_force(
    app: &Handles,
    base: &Config,
    active: &[usize],
    reserves: &[(String, String, u32)],
) -> Result<(), String> {
    let mut effective = base.scheduled(active);
    for (pool, class, units) in reserves {
        if let Some(p) = effective.pools.iter_mut().find(|p| &p.name == pool) {
            p.reserve.insert(class.clone(), *units);
        }
    }
    let names = Names {
        pools: effective.pools.iter().map(|p| Arc::from(p.name.as_str())).collect(),
        config_limits: effective.pools.iter().map(|p| p.limit).collect(),
        classes: effective.classes.iter().map(|c| Arc::from(c.name.as_str())).collect(),
        flows: effective.flows.iter().map(|f| Arc::from(f.name.as_str())).collect(),
    };
    let overflow = effective.flows.iter().map(|f| f.overflow.first().cloned()).collect();
    let ledger = NewLedger { spec: effective.ledger_spec(), names, overflow, ops: None };
    app.governor.reload(ledger).await.map_err(|e| e.message)?;
    let chains = base
        .flows
        .iter()
        .zip(&effective.flows)
        .map(|(b, e)| (b.overflow != e.overflow).then(|| e.overflow.clone()))
        .collect();
    app.governor.ops().set_scheduled_overflow(chains);
    let mut campaigns = rustc_hash::FxHashMap::default();
    for s in active.iter().filter_map(|&i| base.schedules.get(i)) {
        for name in s.campaigns.keys() {
            campaigns.insert(name.clone(), base.campaign_change(active, name));
        }
    }
    app.campaigns.set_schedule(campaigns);
    Ok(())
}

/// Looks at the schedules every [`TICK`] until the server stops (the task is aborted with
/// it).
#[doc(hidden)]
pub fn spawn_ticker(schedules: Arc<Schedules>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            schedules.refit_if_stale();
            schedules.look_at_prewarm();
            // A failure is logged, counted and published by `apply`.
            let _ = schedules.apply(false).await;
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
