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
//! Each change is a `schedule_changed` event (`active`, `started`, `ended`) on
//! `/v1/events` and the live page, `GET /v1/schedules` lists the schedules and which are
//! active, and `/metrics` has `callgate_schedule_active{schedule}` and
//! `callgate_schedule_changes_total{result}`. A configuration reload puts the new file's
//! schedules in force at once.

use crate::campaign::Campaigns;
use crate::governor::{Governor, NewLedger};
use crate::live::Live;
use callgate_config::Config;
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
        Schedules {
            handles,
            base: Mutex::new(config),
            applied: Mutex::default(),
            active: Mutex::default(),
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
            let scheduled = !config.schedules.is_empty() || !base.schedules.is_empty();
            *base = config;
            scheduled
        };
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
        let before = lock(&self.applied).clone();
        if !force && before.as_ref() == Some(&active) {
            return Ok(false);
        }
        if before.is_none() && active.is_empty() && !force {
            // Nothing active at the first look: the configuration as written is in force.
            *lock(&self.applied) = Some(active);
            return Ok(false);
        }
        *lock(&self.applied) = Some(active.clone());
        let names = base.schedule_names(&active);
        match put_in_force(app, &base, &active).await {
            Ok(()) => {
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
    }
}

/// The ledger, the overflow chains and the campaigns as `base` under the schedules at
/// `active` makes them.
async fn put_in_force(app: &Handles, base: &Config, active: &[usize]) -> Result<(), String> {
    let effective = base.scheduled(active);
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
pub(crate) fn spawn_ticker(schedules: Arc<Schedules>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
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
