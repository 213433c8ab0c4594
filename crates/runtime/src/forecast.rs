//! Forecasts in a running server: the reserve that follows the inbound forecast, the
//! recommended capacity and the forecast need for alerts and autoscalers.
//!
//! For every pool whose reserve is `"forecast"`, a plan is worked out from the call history
//! (`history.sqlite` in the data directory, see `callgate-forecast`): the arrivals of the
//! class's flows per 15-minute interval for the next two days, and the lines each interval
//! needs for the configured service level (Erlang A). The plan is refit every
//! [`REFRESH_MS`] (and at a reload) off the async threads; looking up the interval in force
//! is a lookup. The schedule ticker (`schedule.rs`) asks [`Forecasts::reserves`] every
//! second and puts a changed value in force through the governor's reload, as it does a
//! schedule's, so the change happens at the interval boundary (within the ticker's second)
//! and is journaled, published (`reserve_changed`) and counted like any limit change.
//!
//! Without a plan (too little history, a failed fit) the reserve stays at its floor, and
//! the reason is shown in `/v1/pools` (`forecast_reserve.note`).

use callgate_config::Config;
use callgate_forecast::capacity::ServiceTarget;
use callgate_forecast::history::History;
use callgate_forecast::report::{Query, Report};
use callgate_forecast::series::Series;
use callgate_forecast::INTERVAL_MS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod setting;
mod today;

pub use today::{TodayRow, TodayView};

/// A day in Unix ms.
const DAY_MS: u64 = callgate_forecast::DAY as u64 * INTERVAL_MS;

/// How often plans are refit: hourly, so the latest calls count, while a fit (a second or
/// two of CPU) stays rare.
pub const REFRESH_MS: u64 = 3600 * 1000;
/// Days ahead a plan covers: past a day, so a failed refit leaves the next hours planned.
pub const PLAN_DAYS: u32 = 2;

/// One interval of a plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Unix ms of the interval's start.
    pub start_ms: u64,
    /// Expected arrivals of the class's flows.
    pub arrivals: f64,
    /// Expected concurrent calls (offered load, erlangs).
    pub sessions: f64,
    /// Lines the forecast needs for the service level.
    pub lines: u32,
}

/// A pool's plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The class whose reserve follows it.
    pub class: String,
    /// The fewest units held back.
    pub floor: u32,
    /// The most.
    pub ceiling: u32,
    /// The intervals ahead, in order.
    pub steps: Vec<Step>,
    /// Why there is no forecast, when `steps` is empty.
    pub note: Option<String>,
    /// Unix ms of the fit.
    pub computed_at_ms: u64,
    /// Unix ms of the start of the day (UTC) [`Plan::today`] forecasts.
    pub today_start_ms: u64,
    /// Today's forecast as made at its start (from the history before 00:00 UTC), one
    /// interval per 15 minutes, for the live page's forecast against actual arrivals;
    /// empty when it could not be made (see `today_note`).
    pub today: Vec<callgate_forecast::model::Interval>,
    /// Why there is no forecast of today.
    pub today_note: Option<String>,
    /// What the fit learnt from and for (class, flows, target, weeks): a reload that
    /// changes none of it keeps the plan ([`Forecasts::rebase`]).
    pub fit_key: String,
}

impl Plan {
    /// The step in force at `now_ms`.
    pub fn step(&self, now_ms: u64) -> Option<&Step> {
        let i = self.steps.partition_point(|s| s.start_ms + INTERVAL_MS <= now_ms);
        self.steps.get(i).filter(|s| s.start_ms <= now_ms)
    }

    /// The units held back at `now_ms`, and whether the forecast decided them
    /// (`forecast`) or there was none (`floor`).
    ///
    /// A reserve holds back *free* units, while the inbound calls in progress hold their
    /// own: so it is the lines the interval needs less the calls its forecast keeps busy
    /// on average (rounded down, so never less than the need over the mean), between the
    /// floor and the ceiling. Outbound then gets what inbound will not need.
    pub fn units(&self, now_ms: u64) -> (u32, &'static str) {
        match self.step(now_ms) {
            Some(s) => (reserve_units(s.lines, s.sessions).clamp(self.floor, self.ceiling.max(self.floor)), "forecast"),
            None => (self.floor, "floor"),
        }
    }

    /// The most lines any interval that starts before `now_ms + within_ms` needs (the
    /// interval in force included).
    pub fn need_within(&self, now_ms: u64, within_ms: u64) -> Option<u32> {
        let end = now_ms.saturating_add(within_ms);
        self.steps
            .iter()
            .filter(|s| s.start_ms + INTERVAL_MS > now_ms && s.start_ms < end.max(now_ms + 1))
            .map(|s| s.lines)
            .max()
    }
}

/// What `/v1/pools` shows of a reserve that follows the forecast.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ForecastReserveView {
    /// The class whose reserve it is.
    pub class: String,
    /// Units held back now.
    pub units: u32,
    /// `forecast` (the forecast decided) or `floor` (no forecast: see `note`).
    pub source: &'static str,
    /// The lines the forecast says the interval in force needs (before floor and ceiling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<u32>,
    /// Start of the interval in force (Unix ms), with a forecast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_start_ms: Option<u64>,
    /// The floor.
    pub floor: u32,
    /// The ceiling.
    pub ceiling: u32,
    /// Why there is no forecast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The next hours' reserve: the [`NEXT`] intervals after the one in force.
    pub next: Vec<ReserveStepView>,
}

/// How many intervals ahead `/v1/pools` and the live page show: two hours.
pub const NEXT: usize = 8;

/// One interval ahead of a forecast reserve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReserveStepView {
    /// The interval's start (Unix ms).
    pub start_ms: u64,
    /// Units it will hold back.
    pub units: u32,
    /// Lines the forecast says it needs.
    pub needed: u32,
}

/// The plans of the server's pools.
#[derive(Debug)]
pub struct Forecasts {
    /// Where `history.sqlite` lives.
    data_dir: PathBuf,
    /// Where each fit's need goes (`forecast_shortfall` alerts).
    governor: Arc<callgate_governor::Governor>,
    /// Records of this server's calls lost before they reached the history.
    history_dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Pool name → its plan.
    plans: Mutex<BTreeMap<String, Arc<Plan>>>,
    /// One fit at a time.
    fitting: tokio::sync::Mutex<()>,
    /// Bumped by each [`Forecasts::rebase`]: a fit begun before it is of a configuration
    /// no longer in force, and its plans are thrown away.
    generation: std::sync::atomic::AtomicU64,
    /// One `GET /v1/forecast` fit at a time (a fit is seconds of CPU: many readers at once
    /// wait in line instead of taking every core).
    serving: tokio::sync::Semaphore,
}

impl Forecasts {
    /// No plans yet; history from `data_dir/history.sqlite`.
    pub fn new(
        data_dir: PathBuf,
        governor: Arc<callgate_governor::Governor>,
        history_dropped: Arc<std::sync::atomic::AtomicU64>,
    ) -> Forecasts {
        Forecasts {
            data_dir,
            governor,
            history_dropped,
            plans: Mutex::default(),
            fitting: tokio::sync::Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
            serving: tokio::sync::Semaphore::new(1),
        }
    }

    /// The plan of `pool`.
    pub fn plan(&self, pool: &str) -> Option<Arc<Plan>> {
        lock(&self.plans).get(pool).cloned()
    }

    /// Puts `plan` in place for `pool` (a fit's result; tests give their own).
    pub fn set_plan(&self, pool: &str, plan: Plan) {
        self.governor.ops().set_forecast_need(pool, plan.steps.iter().map(|s| (s.start_ms, s.lines)).collect());
        lock(&self.plans).insert(pool.to_owned(), Arc::new(plan));
    }

    /// True when some plan of `config` is missing, older than [`REFRESH_MS`], of a day
    /// before (today's forecast is made at the first fit of the day) or fitted for other
    /// inputs.
    pub fn stale(&self, config: &Config, now_ms: u64) -> bool {
        let plans = lock(&self.plans);
        config.pools.iter().filter(|p| p.forecast_class().is_some()).any(|p| {
            plans.get(&p.name).is_none_or(|plan| {
                now_ms.saturating_sub(plan.computed_at_ms) >= REFRESH_MS
                    || plan.computed_at_ms / DAY_MS != now_ms / DAY_MS
                    || (!plan.fit_key.is_empty() && plan.fit_key != fit_key(config, p))
            })
        })
    }

    /// Refits the plan of every pool of `config` whose reserve follows the forecast (off
    /// the async threads), and drops the plans of the others.
    pub async fn refresh(self: &Arc<Self>, config: Arc<Config>, now_ms: u64) {
        let _one = self.fitting.lock().await;
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let this = self.clone();
        let fitted = tokio::task::spawn_blocking(move || this.fit_all(&config, now_ms)).await;
        match fitted {
            Ok(plans) => {
                // Checked under the lock a rebase holds while it bumps the generation.
                let mut current = lock(&self.plans);
                if self.generation.load(std::sync::atomic::Ordering::Acquire) != generation {
                    tracing::info!("A forecast fit of a configuration reloaded since is dropped");
                    return;
                }
                let ops = self.governor.ops();
                for (pool, plan) in &plans {
                    ops.set_forecast_need(pool, plan.steps.iter().map(|s| (s.start_ms, s.lines)).collect());
                }
                *current = plans;
            }
            Err(e) => tracing::error!(error = %e, "The forecast fit did not finish"),
        }
    }

    fn fit_all(&self, config: &Config, now_ms: u64) -> BTreeMap<String, Arc<Plan>> {
        let mut out = BTreeMap::new();
        let history = History::open(&self.data_dir);
        for pool in &config.pools {
            let (Some(class), Some(f)) = (pool.forecast_class(), pool.forecast.as_ref()) else { continue };
            let mut plan = Plan {
                fit_key: fit_key(config, pool),
                class: class.to_owned(),
                floor: f.floor,
                ceiling: pool.forecast_ceiling(),
                computed_at_ms: now_ms,
                ..Plan::default()
            };
            let flows = inbound_flows(config, pool);
            let flows: Vec<&str> = flows.iter().map(String::as_str).collect();
            let target = ServiceTarget {
                service_level: f.service_level.0,
                within_s: f.within.as_secs_f64(),
                patience_s: (!f.patience.is_zero()).then_some(f.patience.as_secs_f64()),
            };
            let fitted = match &history {
                Err(e) => Err(e.message.clone()),
                Ok(h) => fit(h, &flows, f.weeks, target, now_ms),
            };
            // Today's forecast is made once a day, from the history before it.
            let day_start = now_ms - now_ms % DAY_MS;
            let before = self.plan(&pool.name).filter(|p| p.class == class && p.today_start_ms == day_start);
            match before {
                Some(p) if !p.today.is_empty() => plan.today = p.today.clone(),
                _ => match &history {
                    Err(e) => plan.today_note = Some(e.message.clone()),
                    Ok(h) => match fit_day(h, &flows, f.weeks, target, day_start) {
                        Ok(points) => plan.today = points,
                        Err(why) => plan.today_note = Some(why),
                    },
                },
            }
            plan.today_start_ms = day_start;
            match fitted {
                Ok(steps) => {
                    tracing::info!(pool = %pool.name, class, intervals = steps.len(), "Forecast reserve planned");
                    plan.steps = steps;
                }
                Err(why) => {
                    tracing::warn!(pool = %pool.name, class, reason = %why, "No forecast: the reserve stays at its floor");
                    plan.note = Some(why);
                }
            }
            out.insert(pool.name.clone(), Arc::new(plan));
        }
        out
    }

    /// After a reload to `config`, at once and without a fit: a plan whose fit would be the
    /// same (same class, flows, target and weeks) takes the new floor and ceiling; the
    /// others are dropped, so their pools hold their floor ("being fitted") until a fit of
    /// the new configuration lands whole, never a plan of the old inputs under the new
    /// bounds. True when some pool of `config` needs that fit.
    pub fn rebase(&self, config: &Config) -> bool {
        let ops = self.governor.ops();
        let mut plans = lock(&self.plans);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut old = std::mem::take(&mut *plans);
        let mut needs_fit = false;
        for pool in &config.pools {
            let (Some(_), Some(f)) = (pool.forecast_class(), pool.forecast.as_ref()) else { continue };
            match old.remove(&pool.name) {
                Some(plan) if plan.fit_key == fit_key(config, pool) => {
                    let plan = Plan { floor: f.floor, ceiling: pool.forecast_ceiling(), ..(*plan).clone() };
                    plans.insert(pool.name.clone(), Arc::new(plan));
                }
                _ => needs_fit = true,
            }
        }
        // Pools whose plan went: no forecast need for their alerts until the fit.
        for pool in old.keys() {
            ops.set_forecast_need(pool, Vec::new());
        }
        needs_fit
    }

    /// `(pool, class, units)` of every pool of `config` whose reserve follows the
    /// forecast, at `now_ms` (the floor while a pool has no plan).
    pub fn reserves(&self, config: &Config, now_ms: u64) -> Vec<(String, String, u32)> {
        let plans = lock(&self.plans);
        config
            .pools
            .iter()
            .filter_map(|p| {
                let class = p.forecast_class()?;
                let units = match plans.get(&p.name) {
                    Some(plan) if plan.class == class => plan.units(now_ms).0,
                    _ => p.forecast.as_ref().map_or(0, |f| f.floor),
                };
                Some((p.name.clone(), class.to_owned(), units))
            })
            .collect()
    }

    /// What `/v1/pools` shows for `pool` at `now_ms`.
    pub fn view(&self, config: &Config, pool: &str, now_ms: u64) -> Option<ForecastReserveView> {
        let p = config.pool(pool)?;
        let class = p.forecast_class()?;
        let plan = self.plan(pool).filter(|plan| plan.class == class);
        let floor = p.forecast.as_ref().map_or(0, |f| f.floor);
        let Some(plan) = plan else {
            return Some(ForecastReserveView {
                class: class.to_owned(),
                units: floor,
                source: "floor",
                needed: None,
                interval_start_ms: None,
                floor,
                ceiling: p.forecast_ceiling(),
                note: Some("the forecast is being fitted".to_owned()),
                next: Vec::new(),
            });
        };
        let (units, source) = plan.units(now_ms);
        let step = plan.step(now_ms);
        let next = plan
            .steps
            .iter()
            .filter(|s| s.start_ms > now_ms)
            .take(NEXT)
            .map(|s| ReserveStepView { start_ms: s.start_ms, units: plan.units(s.start_ms).0, needed: s.lines })
            .collect();
        Some(ForecastReserveView {
            class: class.to_owned(),
            units,
            source,
            needed: step.map(|s| s.lines),
            interval_start_ms: step.map(|s| s.start_ms),
            floor: plan.floor,
            ceiling: plan.ceiling,
            note: if step.is_none() {
                plan.note.clone().or(Some("the forecast does not cover this interval".to_owned()))
            } else {
                None
            },
            next,
        })
    }

    /// `callgate_forecast_reserve_units{pool,class,source}`, `callgate_recommended_capacity{pool}`
    /// (the lines the forecast inbound demand needs now) and
    /// `callgate_forecast_sessions{pool}` (the expected concurrent calls now).
    pub fn render_metrics(&self, config: &Config, now_ms: u64, out: &mut String) {
        out.push_str("# HELP callgate_history_records_dropped_total Records of this server's calls that did not reach the call history (backlog full or write failed).\n");
        out.push_str("# TYPE callgate_history_records_dropped_total counter\n");
        let dropped = self.history_dropped.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "callgate_history_records_dropped_total {dropped}");
        let plans = lock(&self.plans).clone();
        let pools: Vec<_> = config.pools.iter().filter(|p| p.forecast_class().is_some()).collect();
        if pools.is_empty() {
            return;
        }
        out.push_str("# HELP callgate_forecast_reserve_units Units a forecast reserve holds back now, by source (forecast, or floor without one).\n");
        out.push_str("# TYPE callgate_forecast_reserve_units gauge\n");
        for p in &pools {
            let (units, source) = match plans.get(&p.name) {
                Some(plan) => plan.units(now_ms),
                None => (p.forecast.as_ref().map_or(0, |f| f.floor), "floor"),
            };
            let class = p.forecast_class().unwrap_or_default();
            let _ = writeln!(
                out,
                "callgate_forecast_reserve_units{{pool=\"{}\",class=\"{}\",source=\"{source}\"}} {units}",
                escape(&p.name),
                escape(class)
            );
        }
        out.push_str("# HELP callgate_recommended_capacity Lines the forecast inbound demand needs in the interval in force (for autoscalers).\n");
        out.push_str("# TYPE callgate_recommended_capacity gauge\n");
        for p in &pools {
            if let Some(s) = plans.get(&p.name).and_then(|plan| plan.step(now_ms).copied()) {
                let _ = writeln!(out, "callgate_recommended_capacity{{pool=\"{}\"}} {}", escape(&p.name), s.lines);
            }
        }
        out.push_str("# HELP callgate_forecast_sessions Concurrent inbound calls the forecast expects in the interval in force.\n");
        out.push_str("# TYPE callgate_forecast_sessions gauge\n");
        for p in &pools {
            if let Some(s) = plans.get(&p.name).and_then(|plan| plan.step(now_ms).copied()) {
                let _ = writeln!(out, "callgate_forecast_sessions{{pool=\"{}\"}} {:.3}", escape(&p.name), s.sessions);
            }
        }
    }

    /// Waits for the turn to serve a `GET /v1/forecast` fit.
    pub async fn turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.serving.acquire().await.ok()
    }

    /// Serves `GET /v1/forecast` (blocking: call off the async threads, in [`Forecasts::turn`]).
    pub fn report(
        &self,
        query: &Query,
        flows: &[Option<&str>],
    ) -> Result<(Series, Report), callgate_forecast::ForecastError> {
        query.check()?;
        let history = History::open(&self.data_dir)?;
        let end = callgate_forecast::interval_start(query.now_ms);
        let excluded = history.excluded()?;
        let series = Series::from_history_flows(&history, flows, end, query.weeks, &excluded)?;
        let report = Report::from_series(query, &series)?;
        Ok((series, report))
    }
}

/// What a plan of `pool` is fitted from and for, as one comparable text.
fn fit_key(config: &Config, pool: &callgate_config::PoolConfig) -> String {
    let Some(f) = pool.forecast.as_ref() else { return String::new() };
    format!(
        "{:?}|{:?}|{}|{:?}|{:?}|{}",
        pool.forecast_class(),
        inbound_flows(config, pool),
        f.service_level.0,
        f.within,
        f.patience,
        f.weeks
    )
}

/// The inbound flows of `pool`: those its forecast reserve follows (its `flows`, else the
/// flows of its class that use it); without a forecast reserve, every flow that uses it
/// and that no campaign dials through.
pub fn inbound_flows(config: &Config, pool: &callgate_config::PoolConfig) -> Vec<String> {
    let uses = |fl: &&callgate_config::FlowConfig| fl.pools.iter().any(|p| p.pool == pool.name);
    match (pool.forecast_class(), pool.forecast.as_ref()) {
        (Some(_), Some(f)) if !f.flows.is_empty() => f.flows.clone(),
        (Some(class), _) => {
            config.flows.iter().filter(uses).filter(|fl| fl.class == class).map(|fl| fl.name.clone()).collect()
        }
        _ => config
            .flows
            .iter()
            .filter(uses)
            .filter(|fl| !config.campaigns.iter().any(|c| c.flow == fl.name))
            .map(|fl| fl.name.clone())
            .collect(),
    }
}

/// The forecast of the day that starts at `day_start_ms`, from the history before it.
fn fit_day(
    history: &History,
    flows: &[&str],
    weeks: u32,
    target: ServiceTarget,
    day_start_ms: u64,
) -> Result<Vec<callgate_forecast::model::Interval>, String> {
    if flows.is_empty() {
        return Err("no flow of the class uses this pool".to_owned());
    }
    let query = Query {
        flow: None,
        days: 1,
        weeks,
        level: callgate_forecast::model::DEFAULT_LEVEL,
        target,
        now_ms: day_start_ms,
    };
    let excluded = history.excluded().map_err(|e| e.message)?;
    let flows: Vec<Option<&str>> = flows.iter().map(|f| Some(*f)).collect();
    let series = Series::from_history_flows(history, &flows, day_start_ms, weeks, &excluded).map_err(|e| e.message)?;
    Ok(Report::from_series(&query, &series).map_err(|e| e.message)?.points)
}

/// The steps of the flows' forecast from `now_ms` on.
fn fit(history: &History, flows: &[&str], weeks: u32, target: ServiceTarget, now_ms: u64) -> Result<Vec<Step>, String> {
    if flows.is_empty() {
        return Err("no flow of the class uses this pool".to_owned());
    }
    let query =
        Query { flow: None, days: PLAN_DAYS, weeks, level: callgate_forecast::model::DEFAULT_LEVEL, target, now_ms };
    let end = now_ms - now_ms % INTERVAL_MS;
    let excluded = history.excluded().map_err(|e| e.message)?;
    let flows: Vec<Option<&str>> = flows.iter().map(|f| Some(*f)).collect();
    let series = Series::from_history_flows(history, &flows, end, weeks, &excluded).map_err(|e| e.message)?;
    let report = Report::from_series(&query, &series).map_err(|e| e.message)?;
    let aht = series.mean_aht().unwrap_or(callgate_forecast::report::ASSUMED_AHT_S);
    Ok(report
        .points
        .iter()
        .zip(&report.intervals)
        .map(|(p, row)| Step {
            start_ms: p.start_ms,
            arrivals: p.arrivals,
            sessions: callgate_forecast::capacity::sessions(p, aht),
            lines: row.lines,
        })
        .collect())
}

/// The free units `lines` need held back while `sessions` calls are busy on average.
pub fn reserve_units(lines: u32, sessions: f64) -> u32 {
    let busy = if sessions.is_finite() { sessions.max(0.0).floor() as u32 } else { 0 };
    lines.saturating_sub(busy)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
