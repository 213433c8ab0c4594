// Long file: the discrete-event simulation loop; its event handlers share one state and read best in one place.
//! The event loop: callers, dialers and the real ledger on a virtual clock.

use super::dist::{round_ms, Dist};
use super::leads::{RealLeads, Take};
use super::ops::{Effect, Pause, SimOps};
use super::report::{
    CallbackReport, CampaignReport, CostReport, FlowReport, LostReport, OverflowReasons, PoolReport, Report,
    ScheduleChange, Series, SeriesLine,
};
use super::rng::{splitmix64, Rng};
use super::scenario::MAX_CALLS;
use super::scenario::{CallingWindow, CampaignSource, Scenario};
use super::stats::{Gauge, WaitHistogram, Window};
use crate::PlanError;
use callgate_config::OverflowAction;
use callgate_core::{
    ClassId, Decision, Event, FlowId, LeaseId, Ledger, PoolId, RejectReason, Request, Target, TicketId, TicketOutcome,
};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// The simulator's leases never expire: the simulated platform reports every call's end
/// (ghost calls are the ledger's tests' business, not a planning question). A TTL this
/// long puts the expiry at `Millis::MAX`, which the ledger does not schedule, so a run
/// pays nothing for expiries that never come.
const NEVER_EXPIRES: u64 = u64::MAX;

/// How often the real dialer looks again for capacity that others freed (its pacing
/// loop's idle wait, `IDLE` in the server's `campaign/run.rs`): a simulated dialer that
/// found no line sees a line freed by someone else at its next look, not in the same
/// millisecond. The end of one of its own calls wakes it at once, as it does the real one.
const POLL_MS: u64 = 50;

/// The next look of a dialer idle since `since`, at `now` or later.
fn next_poll(since: u64, now: u64) -> u64 {
    since + now.saturating_sub(since).div_ceil(POLL_MS) * POLL_MS
}

/// Without a duration, campaigns stop after this long.
const MAX_RUN_MS: u64 = 366 * 86_400_000;

/// The chart's counts per interval: refused, hung up, overflowed otherwise, callback
/// attempts.
const TALLIES: usize = 4;
const TALLY_BUSY: usize = 0;
const TALLY_HUNG_UP: usize = 1;
const TALLY_OVERFLOW: usize = 2;
const TALLY_CALLBACK: usize = 3;
const TALLY_NAMES: [&str; TALLIES] = ["refused (busy)", "hung up waiting", "other overflow", "callback attempts"];

/// The chart aims at about this many points.
const CHART_POINTS: u64 = 144;

/// How often (in loop turns, a power of two) progress is reported.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Overrides of a scenario's `[sim]` for one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunOptions {
    /// Use this seed instead of the scenario's.
    pub seed: Option<u64>,
    /// Stop arrivals after this many callers (replaces the scenario's duration and calls).
    pub calls: Option<u64>,
    /// Stop arrivals after this long in ms (replaces the scenario's duration and calls).
    pub duration_ms: Option<u64>,
}

/// What happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// The next caller of arrival stream `source`. Never in the event heap: one per
    /// stream, it waits in its `Source` (see `Sim::pop_event`).
    Arrival { source: u32 },
    /// An answered call ends.
    CallEnd { lease: u64 },
    /// A waiting caller's patience runs out.
    Abandon { ticket: u64 },
    /// A dialer looks for a lead to call.
    DialerWake { campaign: u32 },
    /// A campaign attempt ends.
    AttemptEnd { campaign: u32, lease: u64, lead: u32, attempt: u16, outcome: Outcome },
    /// The callback dialer looks for a callback that is due.
    CallbackWake,
    /// A callback attempt ends.
    CallbackEnd { lease: u64, id: u64, outcome: Outcome },
    /// `duration` is reached: arrivals and the measured window end.
    WindowEnd,
    /// A minute starts on the wall clock: the `[[schedules]]` are looked at.
    Schedule,
    /// A caller who was refused or hung up calls again.
    Retrial { id: u64 },
    /// A simulated second: breakers and alerts look at the clock.
    OpsTick,
}

/// An event in the heap: its time and its sequence number (the order of scheduling) in
/// one key, the time in the high half, so that ordering two is one comparison. The heap
/// is a max-heap: the earliest key compares greatest.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    key: u128,
    ev: Ev,
}

impl Scheduled {
    fn at_seq(&self) -> (u64, u64) {
        ((self.key >> 64) as u64, self.key as u64)
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// How a callback or campaign attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Answered,
    Busy,
    Voicemail,
    NoAnswer,
    /// A carrier or platform error (campaign attempts only).
    Failed,
}

/// A booked callback, until it connects or is given up.
struct Booked {
    /// The flow the caller first called.
    origin: u32,
    hold_ms: u64,
    booked_at: u64,
    attempts: u32,
    counted: bool,
}

/// The callback dialer: booked callbacks, dialed as the real dialer dials warm leads.
struct Callbacks {
    flow: FlowId,
    /// `(due, id)`, soonest first.
    due: BinaryHeap<Reverse<(u64, u64)>>,
    booked: FxHashMap<u64, Booked>,
    next_id: u64,
    in_flight: u32,
    next_allowed: u64,
    spacing_ms: u64,
    blocked: bool,
    /// When it last found no line.
    idle_since: u64,
    wake_at: Option<u64>,
    stats: CallbackStats,
}

#[derive(Default)]
struct CallbackStats {
    attempts: u64,
    connected: u64,
    busy: u64,
    voicemail: u64,
    no_answer: u64,
    lost: u64,
    connect_wait_sum_ms: f64,
    line_ms: f64,
}

/// One call of a person: who they are (the arrival stream and their number in it), which
/// of their calls this is, what they want. Kept while they wait, and for a call again.
#[derive(Clone, Copy)]
struct Caller {
    flow: u32,
    source: u32,
    person: u64,
    /// 1 for the first call, 2 for the first call again, …
    attempt: u16,
    hold_ms: u64,
    /// The person's first call arrived in the measured window.
    counted: bool,
}

#[derive(Default)]
struct FlowStats {
    offered: u64,
    at_once: u64,
    queued: u64,
    answered: u64,
    answered_in_time: u64,
    abandoned: u64,
    overflow: BTreeMap<&'static str, u64>,
    reasons: OverflowReasons,
    callbacks_booked: u64,
    callbacks_declined: u64,
    callbacks_connected: u64,
    callbacks_lost: u64,
    /// Calls that were a person calling again.
    retrials: u64,
    /// Lost calls after which the person called again (so the person is not lost yet).
    called_again: u64,
    wait_sum_ms: f64,
    waits: WaitHistogram,
    hold_sum_ms: f64,
    waiting_sum_ms: f64,
}

struct Source {
    flow_index: u32,
    /// Interarrival times.
    arrivals: Rng,
    /// People arrived so far (their numbers, for the random numbers of their calls again).
    people: u64,
    /// Hold and patience, one pair per caller in arrival order whatever happens to the
    /// caller, so that two policies see exactly the same callers.
    callers: Rng,
    /// The last arrival time, unrounded (ms).
    t: f64,
    /// The next caller's `(time, sequence number)`, when one is to come: an event like
    /// those in the heap, in the same order, without a heap push and pop per caller.
    next: Option<(u64, u64)>,
}

struct Dialer {
    spec: CampaignSource,
    flow: FlowId,
    stream: u64,
    next_fresh: u64,
    /// `(due, lead, attempt)`, soonest first (delays differ by outcome).
    retries: BinaryHeap<Reverse<(u64, u32, u16)>>,
    in_flight: u32,
    next_allowed: u64,
    blocked: bool,
    /// When it last found no line (its polls are counted from then).
    idle_since: u64,
    wake_at: Option<u64>,
    spacing_ms: u64,
    /// The cap on live attempts in force (the scenario's, or a schedule's).
    cap: Option<u32>,
    attempts: u64,
    connected: u64,
    busy: u64,
    voicemail: u64,
    no_answer: u64,
    failed: u64,
    unreached: u64,
    talk_ms: f64,
    line_ms: f64,
    finished_at: Option<u64>,
    first_attempt: Option<u64>,
    /// Why it does not dial now (a breaker of its flow opened, an alert paused it).
    paused: Vec<Pause>,
    /// The pause after a provider's refusal (the real campaign's `cooldown`).
    cooldown_ms: u64,
    /// With a `[[campaigns]]` entry: its leads, scheduled by the real dialer's code (then
    /// `next_fresh` and `retries` are unused).
    real: Option<RealLeads>,
    /// The class callbacks are dialed in (the campaign's `callback_class`, else the
    /// class `callback`, else the flow's), with the flow's pools.
    callback_target: Option<Target>,
}

struct Sim<'a> {
    sc: &'a Scenario,
    ledger: Ledger,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    /// The earliest of the sources' next callers: `(time, sequence number, source)`.
    arrival_next: Option<(u64, u64, u32)>,
    events: Vec<Event>,
    sources: Vec<Source>,
    dialers: Vec<Dialer>,
    /// The dialers by `priority`, highest first (file order among equals): the order in
    /// which they look at a freed line.
    dial_order: Vec<usize>,
    waiting: FxHashMap<u64, Caller>,
    /// Callers who will call again (by the id of their `Ev::Retrial`), with their patience.
    retrials: FxHashMap<u64, (Caller, Option<u64>)>,
    next_retrial: u64,
    flows: Vec<FlowStats>,
    pools_used: Vec<Gauge>,
    flows_waiting: Vec<Gauge>,
    /// Calls in progress per class, for the chart; empty when the traffic has one class
    /// (then the pools' lines say it all, and the run does no extra work).
    classes_live: Vec<Gauge>,
    /// Per chart bucket, over the whole run: callers refused (busy, or no overflow), hung
    /// up, sent to another overflow action, and callback attempts placed.
    tally: [Vec<f64>; TALLIES],
    window: Window,
    window_open: bool,
    arrivals_left: u64,
    arrivals_end: u64,
    campaigns_stop: u64,
    answer_within: u64,
    seed: u64,
    lease_ms: f64,
    waiting_ms: f64,
    now: u64,
    last_activity: u64,
    turns: u64,
    calls_total: Option<u64>,
    /// The schedules in force (positions in the config's `schedules`).
    active: Vec<usize>,
    /// The reserves that follow the forecast, as in force: (pool, class, units).
    forecast: Vec<(String, String, u32)>,
    /// Each flow's overflow in force (a schedule may change the chain): its spill steps
    /// up to the first other action, and that action.
    overflow: Vec<Chain>,
    /// When the schedules in force changed.
    schedule_log: Vec<ScheduleChange>,
    /// With `[sim] callback`.
    callbacks: Option<Callbacks>,
    /// Offers of callbacks, accepted or not (one draw per offer, in offer order).
    offers: Rng,
    /// The config's adaptive caps, breakers and alerts, when it has any.
    ops: Option<SimOps>,
    /// Clock events in the heap (the schedules' minute, the policies' second): they go on
    /// only while something else is still to happen, never keeping each other alive.
    clocks: usize,
}

/// Runs `scenario` with `options`, calling `progress` now and then with the share done
/// (0 to 1). Same scenario, same options: same report, to the last digit.
pub fn run(scenario: &Scenario, options: &RunOptions, progress: &mut dyn FnMut(f64)) -> Result<Report, PlanError> {
    let mut sim = Sim::new(scenario, options)?;
    sim.start();
    sim.run(progress);
    Ok(sim.report())
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, options: &RunOptions) -> Result<Sim<'a>, PlanError> {
        let seed = options.seed.unwrap_or(sc.sim.seed);
        let (duration, calls) = if options.calls.is_some() || options.duration_ms.is_some() {
            (options.duration_ms, options.calls)
        } else {
            (sc.sim.duration_ms, sc.sim.calls)
        };
        let ledger = Ledger::new(&sc.spec).map_err(|e| PlanError::scenario(format!("{}: {e}", sc.name)))?;
        if let Some(c) = calls {
            if c == 0 || c > MAX_CALLS {
                return Err(PlanError::input(format!("calls must be between 1 and {MAX_CALLS}")));
            }
        }
        // A run is bounded: refuse one that would simulate more than MAX_CALLS callers
        // or campaign attempts (a rate typed in the wrong unit, say).
        let expected = match (duration, calls) {
            (Some(d), c) => {
                let by_time: f64 = sc.arrivals.iter().map(|a| a.rate.expected_arrivals(d as f64)).sum();
                c.map_or(by_time, |c| by_time.min(c as f64))
            }
            (None, Some(c)) => c as f64,
            (None, None) => 0.0,
        };
        // Callers who call again at most `max` more times each.
        let expected = expected
            * sc.arrivals.iter().map(|a| a.retrial.as_ref().map_or(1.0, |r| f64::from(r.max + 1))).fold(1.0, f64::max);
        let attempts: f64 = sc.campaigns.iter().map(|c| c.leads as f64 * f64::from(c.retry.max_attempts)).sum();
        if expected + attempts > MAX_CALLS as f64 {
            return Err(PlanError::input(format!(
                "{}: this run would simulate about {:.0} calls; at most {MAX_CALLS} (check the rates' units)",
                sc.name,
                expected + attempts
            )));
        }
        let sources = sc
            .arrivals
            .iter()
            .enumerate()
            .map(|(i, a)| Source {
                flow_index: a.flow as u32,
                arrivals: Rng::stream(seed, 2 * i as u64),
                people: 0,
                callers: Rng::stream(seed, 2 * i as u64 + 1),
                t: 0.0,
                next: None,
            })
            .collect();
        let rules = sc.config.calling_rules();
        let dialers = sc
            .campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| Dialer {
                flow: FlowId(c.flow as u32),
                stream: 1_000_000 + i as u64,
                next_fresh: 0,
                retries: BinaryHeap::new(),
                in_flight: 0,
                next_allowed: 0,
                blocked: false,
                idle_since: 0,
                wake_at: None,
                spacing_ms: spacing(c.cps),
                cap: c.max_concurrency,
                attempts: 0,
                connected: 0,
                busy: 0,
                voicemail: 0,
                no_answer: 0,
                failed: 0,
                unreached: 0,
                talk_ms: 0.0,
                line_ms: 0.0,
                finished_at: None,
                first_attempt: None,
                paused: Vec::new(),
                cooldown_ms: c
                    .real
                    .as_ref()
                    .map_or(30_000, |real| u64::try_from(real.cooldown.as_millis()).unwrap_or(u64::MAX)),
                real: c
                    .real
                    .as_ref()
                    .map(|real| RealLeads::new(c, real, &rules, seed, 1_000_000 + i as u64, sc.sim.start_ms)),
                callback_target: c.real.as_ref().filter(|r| r.callbacks).and_then(|real| {
                    let class = real
                        .callback_class
                        .clone()
                        .or_else(|| sc.config.class("callback").map(|k| k.name.clone()))
                        .unwrap_or_else(|| sc.config.flows[c.flow].class.clone());
                    let class = ledger.class_id(&class)?;
                    let pools = ledger.flow_pools(FlowId(c.flow as u32)).clone();
                    Some(Target::Pools { pools, class })
                }),
                spec: c.clone(),
            })
            .collect();
        let mut dial_order: Vec<usize> = (0..sc.campaigns.len()).collect();
        dial_order.sort_by_key(|&c| Reverse(sc.campaigns[c].priority));
        let bucket_ms = match duration {
            Some(d) => (d / CHART_POINTS).max(1000),
            None => {
                let per_day: f64 = sc.arrivals.iter().map(|a| a.rate.expected_arrivals(86_400_000.0)).sum();
                let guess = match calls {
                    Some(c) if per_day > 0.0 => c as f64 / per_day * 86_400_000.0,
                    _ => 86_400_000.0,
                };
                ((guess / CHART_POINTS as f64) as u64).max(1000)
            }
        };
        let warmup = sc.sim.warmup_ms;
        let nflows = sc.config.flows.len();
        // The classes the traffic uses: arrivals, campaigns and callbacks, by their flows.
        let mut classes: Vec<u16> = sc
            .arrivals
            .iter()
            .map(|a| a.flow)
            .chain(sc.campaigns.iter().map(|c| c.flow))
            .chain(sc.sim.callback.iter().map(|c| c.flow))
            .filter_map(|f| sc.spec.flows.get(f).map(|f| f.class.0))
            .collect();
        classes.sort_unstable();
        classes.dedup();
        Ok(Sim {
            sc,
            ledger,
            heap: BinaryHeap::new(),
            seq: 0,
            arrival_next: None,
            events: Vec::new(),
            sources,
            dialers,
            dial_order,
            waiting: FxHashMap::default(),
            retrials: FxHashMap::default(),
            next_retrial: 0,
            flows: (0..nflows).map(|_| FlowStats::default()).collect(),
            pools_used: vec![Gauge::default(); sc.spec.pools.len()],
            flows_waiting: vec![Gauge::default(); nflows],
            classes_live: if classes.len() > 1 { vec![Gauge::default(); sc.spec.classes.len()] } else { Vec::new() },
            tally: Default::default(),
            window: Window { start: warmup, end: duration.unwrap_or(u64::MAX), bucket_ms },
            window_open: true,
            arrivals_left: calls.unwrap_or(u64::MAX),
            arrivals_end: duration.unwrap_or(u64::MAX),
            campaigns_stop: duration.unwrap_or(MAX_RUN_MS),
            answer_within: sc.sim.answer_within_ms,
            seed,
            lease_ms: 0.0,
            waiting_ms: 0.0,
            now: 0,
            last_activity: 0,
            turns: 0,
            calls_total: calls,
            active: Vec::new(),
            forecast: Vec::new(),
            overflow: sc.config.flows.iter().map(|f| chain_of(&sc.config, &f.overflow)).collect(),
            schedule_log: Vec::new(),
            callbacks: sc.sim.callback.as_ref().map(|cb| Callbacks {
                flow: FlowId(cb.flow as u32),
                due: BinaryHeap::new(),
                booked: FxHashMap::default(),
                next_id: 0,
                in_flight: 0,
                next_allowed: 0,
                spacing_ms: spacing(Some(cb.cps)),
                blocked: false,
                idle_since: 0,
                wake_at: None,
                stats: CallbackStats::default(),
            }),
            offers: Rng::stream(seed, 2_000_000),
            ops: SimOps::new(sc, seed),
            clocks: 0,
        })
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Scheduled { key: (u128::from(at) << 64) | u128::from(self.seq), ev });
    }

    fn start(&mut self) {
        for i in 0..self.sources.len() {
            self.next_arrival(i);
        }
        if self.arrivals_end != u64::MAX {
            self.schedule(self.arrivals_end, Ev::WindowEnd);
        }
        let forecast = self.sc.config.pools.iter().any(|p| p.forecast_class().is_some());
        if !self.sc.config.schedules.is_empty() || forecast {
            self.apply_schedules();
            self.clocks += 1;
            self.schedule(self.next_minute(), Ev::Schedule);
        }
        for i in 0..self.dial_order.len() {
            let c = self.dial_order[i];
            self.schedule(0, Ev::DialerWake { campaign: c as u32 });
        }
        if self.ops.as_ref().is_some_and(SimOps::ticks) {
            self.clocks += 1;
            self.schedule(super::ops::TICK_MS, Ev::OpsTick);
        }
    }

    /// The next start of a minute on the wall clock, in simulated ms.
    fn next_minute(&self) -> u64 {
        let wall = self.sc.sim.start_ms.saturating_add(self.now);
        (wall / 60_000 + 1) * 60_000 - self.sc.sim.start_ms
    }

    /// Puts in force what the schedules active now ask for, through the same functions the
    /// server uses (`Config::active_schedules`, `Config::scheduled`): pool limits and
    /// reserves in the ledger, flows' overflow, campaigns' caps and rates.
    fn apply_schedules(&mut self) {
        let sc = self.sc;
        let active = sc.config.active_schedules(sc.sim.start_ms.saturating_add(self.now));
        let forecast = super::forecast::reserves(sc, self.now);
        let schedules_changed =
            active != self.active || (self.schedule_log.is_empty() && !sc.config.schedules.is_empty());
        if !schedules_changed && forecast == self.forecast {
            return;
        }
        let now = self.now;
        let mut effective = sc.config.scheduled(&active);
        for (pool, class, units) in &forecast {
            if let Some(p) = effective.pools.iter_mut().find(|p| &p.name == pool) {
                p.reserve.insert(class.clone(), *units);
            }
        }
        self.forecast = forecast;
        let spec = effective.ledger_spec();
        let mut refused = Vec::new();
        for (p, want) in spec.pools.iter().enumerate() {
            let id = PoolId(p as u32);
            let mut reserve = vec![0u32; self.ledger.class_count()];
            for &(c, u) in &want.reserve {
                if let Some(slot) = reserve.get_mut(c.index()) {
                    *slot += u;
                }
            }
            let reserve_changed = self.ledger.reserve(id) != reserve.as_slice();
            let limit_changed = self.ledger.pool(id).limit != want.limit;
            let pairs: Vec<(ClassId, u32)> = reserve.iter().enumerate().map(|(c, &u)| (ClassId(c as u16), u)).collect();
            // Raise the limit before the reserves grow into it; lower it after they shrink.
            if limit_changed && want.limit > self.ledger.pool(id).limit {
                self.ledger.set_limit(id, want.limit, now);
            }
            if reserve_changed && !self.ledger.set_reserve(id, &pairs, now) {
                // Overlapping schedules whose reserves together pass the limit: the server
                // refuses the same combination (`schedule_failed`); say so here too.
                refused.push(format!("pool `{}`: the reserves add up to more than the limit", want.name));
            }
            if limit_changed && want.limit < self.ledger.pool(id).limit {
                self.ledger.set_limit(id, want.limit, now);
            }
            if limit_changed {
                if let Some(ops) = &mut self.ops {
                    ops.limit_changed(&mut self.ledger, p, want.limit, now);
                }
            }
        }
        self.overflow = effective.flows.iter().map(|f| chain_of(&effective, &f.overflow)).collect();
        for d in &mut self.dialers {
            let change = sc.config.campaign_change(&active, &d.spec.name);
            d.cap = change.max_concurrency.or(d.spec.max_concurrency);
            d.spacing_ms = spacing(change.calls_per_second.map(|r| r.0).or(d.spec.cps));
        }
        if !schedules_changed {
            // A forecast reserve moved at an interval boundary; the schedules did not.
            self.wake_dialers();
            return;
        }
        self.schedule_log.push(ScheduleChange {
            at_s: now as f64 / 1000.0,
            at: callgate_config::format_instant(sc.sim.start_ms.saturating_add(now)),
            active: sc.config.schedule_names(&active),
            refused,
        });
        self.active = active;
        self.wake_dialers();
    }

    /// A cap or a reserve that went down may have room for the dialers now (in dial order).
    fn wake_dialers(&mut self) {
        for i in 0..self.dial_order.len() {
            let c = self.dial_order[i];
            if self.dialers[c].blocked {
                self.dial(c);
            }
        }
    }

    /// Draws source `i`'s next caller (its current one has come or there was none).
    fn next_arrival(&mut self, i: usize) {
        self.sources[i].next = None;
        if self.arrivals_left > 0 {
            let rate = &self.sc.arrivals[i].rate;
            let src = &mut self.sources[i];
            let e = src.arrivals.exp1();
            if let Some(t) = rate.next_after(src.t, e) {
                src.t = t;
                let at = round_ms(t);
                if at < self.arrivals_end {
                    self.seq += 1;
                    src.next = Some((at, self.seq));
                }
            }
        }
        self.update_arrival_next();
    }

    /// The next event: the heap's first or the next caller, whichever was scheduled for
    /// the earlier time (or, at the same time, first).
    fn pop_event(&mut self) -> Option<(u64, Ev)> {
        let top = self.heap.peek().map(Scheduled::at_seq);
        match (top, self.arrival_next) {
            (Some(e), Some((at, seq, source))) if (at, seq) < e => Some((at, self.take_arrival(source))),
            (None, Some((at, _, source))) => Some((at, self.take_arrival(source))),
            _ => self.heap.pop().map(|s| (s.at_seq().0, s.ev)),
        }
    }

    /// Takes source `source`'s next caller out of the schedule, as a pop from the heap.
    fn take_arrival(&mut self, source: u32) -> Ev {
        self.sources[source as usize].next = None;
        self.update_arrival_next();
        Ev::Arrival { source }
    }

    fn update_arrival_next(&mut self) {
        self.arrival_next =
            self.sources.iter().enumerate().filter_map(|(i, s)| s.next.map(|(at, seq)| (at, seq, i as u32))).min();
    }

    /// The time of the next event.
    fn next_event_at(&self) -> Option<u64> {
        let top = self.heap.peek().map(|s| s.at_seq().0);
        match (top, self.arrival_next) {
            (Some(e), Some((a, _, _))) => Some(e.min(a)),
            (e, a) => e.or(a.map(|(at, _, _)| at)),
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(f64)) {
        loop {
            let next_event = self.next_event_at();
            let next_deadline = self.ledger.next_deadline();
            // Calls that end at the same millisecond as a deadline go first, in the
            // waiting caller's favour (the ledger does the same for expiries).
            match (next_event, next_deadline) {
                (None, None) => break,
                (e, Some(d)) if e.is_none_or(|e| d < e) => {
                    self.now = self.now.max(d);
                    self.ledger.tick(d);
                    self.drain();
                }
                _ => {
                    let Some((at, ev)) = self.pop_event() else { break };
                    self.now = at;
                    self.handle(ev);
                    self.drain();
                }
            }
            self.turns += 1;
            if self.turns & (PROGRESS_EVERY - 1) == 0 {
                progress(self.progress());
            }
        }
        if self.window_open {
            self.close_window(self.now);
        }
        progress(1.0);
    }

    fn progress(&self) -> f64 {
        match (self.arrivals_end, self.calls_total) {
            (end, _) if end != u64::MAX && self.calls_total.is_none() => (self.now as f64 / end as f64).min(1.0),
            (_, Some(total)) => 1.0 - self.arrivals_left as f64 / total as f64,
            _ => (self.now as f64 / self.campaigns_stop as f64).min(1.0),
        }
    }

    fn close_window(&mut self, t: u64) {
        for g in self.pools_used.iter_mut().chain(self.flows_waiting.iter_mut()) {
            g.advance(t, &self.window);
        }
        self.window.end = self.window.end.min(t);
        self.window_open = false;
    }

    fn counted(&self, t: u64) -> bool {
        self.window_open && t >= self.window.start
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { source } => {
                if self.arrivals_left > 0 && self.now < self.arrivals_end {
                    self.arrival(source as usize);
                }
            }
            Ev::CallEnd { lease } => {
                self.ledger.release(LeaseId(lease), self.now);
            }
            Ev::Abandon { ticket } => {
                self.ledger.cancel(TicketId(ticket), self.now);
            }
            Ev::DialerWake { campaign } => {
                let d = &mut self.dialers[campaign as usize];
                if d.wake_at == Some(self.now) {
                    d.wake_at = None;
                }
                self.dial(campaign as usize);
            }
            Ev::AttemptEnd { campaign, lease, lead, attempt, outcome } => {
                self.attempt_end(campaign as usize, lease, lead, attempt, outcome);
            }
            Ev::CallbackWake => {
                if let Some(cb) = &mut self.callbacks {
                    if cb.wake_at == Some(self.now) {
                        cb.wake_at = None;
                    }
                }
                self.dial_callbacks();
            }
            Ev::CallbackEnd { lease, id, outcome } => self.callback_end(lease, id, outcome),
            Ev::WindowEnd => {
                if self.window_open {
                    self.close_window(self.now);
                }
            }
            Ev::Retrial { id } => {
                if let Some((caller, patience)) = self.retrials.remove(&id) {
                    self.call(caller, patience);
                }
            }
            Ev::OpsTick => {
                self.clocks -= 1;
                self.ops_tick();
            }
            Ev::Schedule => {
                self.clocks -= 1;
                self.apply_schedules();
                // Only while something else is still to happen: the schedules alone
                // never keep a run going.
                if self.work_left() {
                    self.clocks += 1;
                    self.schedule(self.next_minute(), Ev::Schedule);
                }
            }
        }
    }

    fn arrival(&mut self, i: usize) {
        let src = &mut self.sources[i];
        let flow = src.flow_index;
        let spec = &self.sc.arrivals[i];
        let hold_ms = spec.hold.sample(&mut src.callers);
        let patience = spec.patience.as_ref().map(|p: &Dist| p.sample(&mut src.callers));
        let person = src.people;
        src.people += 1;
        if self.arrivals_left != u64::MAX {
            self.arrivals_left -= 1;
        }
        let counted = self.counted(self.now);
        let caller = Caller { flow, source: i as u32, person, attempt: 1, hold_ms, counted };
        self.call(caller, patience);
        if self.arrivals_left == 0 {
            self.arrivals_end = self.now + 1;
            if self.window_open {
                self.close_window(self.now + 1);
            }
        } else {
            self.next_arrival(i);
        }
    }

    /// A caller asks for a line through their flow.
    fn call(&mut self, caller: Caller, patience: Option<u64>) {
        let now = self.now;
        let Caller { flow, hold_ms, counted, .. } = caller;
        if counted {
            let st = &mut self.flows[flow as usize];
            st.offered += 1;
            if caller.attempt > 1 {
                st.retrials += 1;
            }
        }
        if !self.ops_gate(flow as usize) {
            self.overflow(caller, Why::DependencyDown);
            return;
        }
        let req = Request {
            target: Target::Flow(FlowId(flow)),
            key: None,
            ttl_ms: Some(NEVER_EXPIRES),
            max_wait_ms: None,
            meta: None,
            owner: None,
        };
        match self.ledger.acquire(req, now) {
            Ok(Decision::Granted { lease, .. }) => {
                self.ops_granted(flow as usize, false);
                if counted {
                    let st = &mut self.flows[flow as usize];
                    st.at_once += 1;
                    st.answered += 1;
                    st.answered_in_time += 1;
                    st.waits.record(0);
                    st.hold_sum_ms += hold_ms as f64;
                    self.lease_ms += hold_ms as f64;
                }
                self.schedule(now + hold_ms, Ev::CallEnd { lease: lease.0 });
            }
            Ok(Decision::Queued { ticket, deadline, .. }) => {
                if counted {
                    self.flows[flow as usize].queued += 1;
                }
                self.waiting.insert(ticket.0, caller);
                if let Some(p) = patience {
                    if now + p < deadline {
                        self.schedule(now + p, Ev::Abandon { ticket: ticket.0 });
                    }
                }
            }
            Ok(Decision::Rejected { reason, .. }) => {
                let why = match reason {
                    RejectReason::Capacity => Why::Capacity,
                    RejectReason::QueueFull => Why::QueueFull,
                    RejectReason::NeverFits => Why::NeverFits,
                };
                self.overflow(caller, why);
            }
            // Flow ids come from the checked scenario; refuse quietly rather than stop.
            Err(_) => self.overflow(caller, Why::Capacity),
        }
    }

    /// A call that was lost (refused, or hung up while waiting): the person may call
    /// again, as the stream's `retrial` says. Whether and when depend only on (seed,
    /// stream, person, call): every policy meets the same people calling again.
    fn lost_call(&mut self, caller: Caller, refused: bool) {
        let Some(r) = self.sc.arrivals.get(caller.source as usize).and_then(|a| a.retrial.as_ref()) else { return };
        if u32::from(caller.attempt) > r.max {
            return;
        }
        let mut key = self.seed ^ 0xA24B_AED4_963E_E407 ^ u64::from(caller.source).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        key ^= caller.person.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ u64::from(caller.attempt);
        let mut rng = Rng::stream(splitmix64(&mut key), 4_000_000);
        let share = if refused { r.busy } else { r.hung_up };
        if rng.uniform() >= share {
            return;
        }
        let delay = r.after.sample(&mut rng).max(1);
        let patience = self.sc.arrivals[caller.source as usize].patience.as_ref().map(|p| p.sample(&mut rng));
        if caller.counted {
            self.flows[caller.flow as usize].called_again += 1;
        }
        let id = self.next_retrial;
        self.next_retrial += 1;
        self.retrials.insert(id, (Caller { attempt: caller.attempt + 1, ..caller }, patience));
        self.schedule(self.now + delay, Ev::Retrial { id });
    }

    fn overflow(&mut self, caller: Caller, why: Why) {
        let Caller { flow, hold_ms, counted, .. } = caller;
        let replaced = self.ops.as_ref().and_then(|ops| {
            let chain = ops.chain(flow as usize, self.now, why == Why::DependencyDown)?;
            Some(chain_of(&self.sc.config, chain))
        });
        let chain = match replaced {
            Some(chain) => chain,
            None => self.overflow.get(flow as usize).cloned().unwrap_or_default(),
        };
        // Spill steps first: an admission in the other flow's pools at this instant; the
        // caller is served there when it grants, else the chain goes on.
        let spilled = chain.spills.iter().any(|&target| self.spill(target, hold_ms));
        let action = chain.then;
        if counted {
            let st = &mut self.flows[flow as usize];
            let label = if spilled { "spill" } else { action.map_or("refused", OverflowAction::as_str) };
            *st.overflow.entry(label).or_default() += 1;
            match why {
                Why::Capacity => st.reasons.capacity += 1,
                Why::QueueFull => st.reasons.queue_full += 1,
                Why::TimedOut => st.reasons.timed_out += 1,
                Why::NeverFits => st.reasons.never_fits += 1,
                Why::DependencyDown => st.reasons.dependency_down += 1,
            }
        }
        if spilled {
            return;
        }
        if matches!(action, None | Some(OverflowAction::Busy)) {
            self.count(TALLY_BUSY);
            self.lost_call(caller, true);
        } else {
            self.count(TALLY_OVERFLOW);
        }
        if action == Some(OverflowAction::Callback) {
            if let Some(policy) = &self.sc.sim.callback {
                let accepted = self.offers.uniform() < policy.accept;
                let due = self.now + policy.after_ms;
                let st = &mut self.flows[flow as usize];
                if !accepted {
                    if counted {
                        st.callbacks_declined += 1;
                    }
                } else if let Some(cb) = &mut self.callbacks {
                    if counted {
                        st.callbacks_booked += 1;
                    }
                    let id = cb.next_id;
                    cb.next_id += 1;
                    let booked = Booked { origin: flow, hold_ms, booked_at: self.now, attempts: 0, counted };
                    match policy.campaign {
                        Some(c) => {
                            // A warm lead of the campaign that returns callbacks, numbered
                            // after its leads.
                            let id = self.dialers[c].spec.leads + id;
                            cb.booked.insert(id, booked);
                            let start = self.sc.sim.start_ms;
                            if let Some(real) = self.dialers[c].real.as_mut() {
                                real.insert_callback(id, start.saturating_add(due), start.saturating_add(self.now));
                            }
                            self.wake_dialer(c, due);
                        }
                        None => {
                            cb.booked.insert(id, booked);
                            cb.due.push(Reverse((due, id)));
                            self.wake_callbacks(due);
                        }
                    }
                }
            }
        }
    }

    /// A spilled caller asks for a line in flow `target` without waiting; true when
    /// granted (the call then runs there for `hold_ms`).
    fn spill(&mut self, target: u32, hold_ms: u64) -> bool {
        let req = Request {
            target: Target::Flow(FlowId(target)),
            key: None,
            ttl_ms: Some(NEVER_EXPIRES),
            max_wait_ms: Some(0),
            meta: None,
            owner: None,
        };
        match self.ledger.acquire(req, self.now) {
            Ok(Decision::Granted { lease, .. }) => {
                self.lease_ms += hold_ms as f64;
                self.schedule(self.now + hold_ms, Ev::CallEnd { lease: lease.0 });
                true
            }
            _ => false,
        }
    }

    /// Applies the ledger's events: lines in use, waiting callers, grants from the
    /// waiting room, abandonments and time-outs. Dialers blocked for capacity look again
    /// after anything is freed.
    fn drain(&mut self) {
        loop {
            self.ledger.take_events(&mut self.events);
            if self.events.is_empty() {
                return;
            }
            if let Some(ops) = self.ops.as_mut().filter(|o| o.observes()) {
                ops.observe(&self.events);
            }
            if self.events.iter().any(|e| !matches!(e, Event::LimitChanged { .. })) {
                self.last_activity = self.now;
            }
            let mut freed = false;
            // By reference: an event is a few hundred bytes, and moving each out of the
            // buffer costs more than reading the fields it needs.
            let mut events = std::mem::take(&mut self.events);
            for ev in &events {
                match *ev {
                    Event::Granted { ref lease, from_ticket } => {
                        self.lines(&lease.pools, lease.granted_at, 1);
                        if let Some(g) = self.classes_live.get_mut(lease.class.index()) {
                            g.add(lease.granted_at, 1, &self.window);
                        }
                        if let Some((ticket, waited)) = from_ticket {
                            if let Some(f) = lease.flow {
                                self.flows_waiting[f.index()].add(lease.granted_at, -1, &self.window);
                            }
                            self.granted_from_queue(ticket, lease.id, waited, lease.granted_at);
                        }
                    }
                    Event::Queued { ref ticket, .. } => {
                        if let Some(f) = ticket.flow {
                            self.flows_waiting[f.index()].add(ticket.enqueued_at, 1, &self.window);
                        }
                    }
                    Event::Released { ref lease, at } | Event::Expired { ref lease, at } => {
                        self.lines(&lease.pools, at, -1);
                        if let Some(g) = self.classes_live.get_mut(lease.class.index()) {
                            g.add(at, -1, &self.window);
                        }
                        freed = true;
                    }
                    Event::TicketEnded { ref ticket, outcome, at } => {
                        freed = true;
                        if let Some(f) = ticket.flow {
                            self.flows_waiting[f.index()].add(at, -1, &self.window);
                        }
                        let waited = at.saturating_sub(ticket.enqueued_at);
                        if let Some(w) = self.waiting.remove(&ticket.id.0) {
                            if w.counted {
                                self.flows[w.flow as usize].waiting_sum_ms += waited as f64;
                                self.waiting_ms += waited as f64;
                            }
                            match outcome {
                                TicketOutcome::Cancelled => {
                                    if w.counted {
                                        self.flows[w.flow as usize].abandoned += 1;
                                    }
                                    self.count(TALLY_HUNG_UP);
                                    self.lost_call(w, false);
                                }
                                TicketOutcome::TimedOut => self.overflow(w, Why::TimedOut),
                                TicketOutcome::NeverFits => self.overflow(w, Why::NeverFits),
                                TicketOutcome::Granted(_) => {}
                            }
                        }
                    }
                    Event::Rejected { .. } | Event::Renewed { .. } | Event::LimitChanged { .. } => {}
                }
            }
            events.clear();
            self.events = events;
            if freed {
                // A dialer that found no line looks again at its next poll. Callbacks
                // go before campaign leads there, as in the real dialer (the callback
                // dialer's wakes are ordered first in the same millisecond).
                if let Some(cb) = self.callbacks.as_ref().filter(|cb| cb.blocked) {
                    let at = next_poll(cb.idle_since, self.now);
                    self.wake_callbacks(at);
                }
                for i in 0..self.dial_order.len() {
                    let c = self.dial_order[i];
                    let d = &self.dialers[c];
                    if d.blocked {
                        let at = next_poll(d.idle_since, self.now);
                        self.wake_dialer(c, at);
                    }
                }
            }
        }
    }

    /// One more of `what` in the chart's interval of now.
    fn count(&mut self, what: usize) {
        let b = (self.now / self.window.bucket_ms) as usize;
        let t = &mut self.tally[what];
        if t.len() <= b {
            t.resize(b + 1, 0.0);
        }
        t[b] += 1.0;
    }

    fn lines(&mut self, pools: &Arc<[callgate_core::PoolUnits]>, at: u64, sign: i64) {
        for pu in pools.iter() {
            self.pools_used[pu.pool.index()].add(at, sign * i64::from(pu.units), &self.window);
        }
    }

    fn granted_from_queue(&mut self, ticket: TicketId, lease: LeaseId, waited: u64, at: u64) {
        let Some(w) = self.waiting.remove(&ticket.0) else { return };
        self.ops_granted(w.flow as usize, false);
        if w.counted {
            let st = &mut self.flows[w.flow as usize];
            st.answered += 1;
            if waited <= self.answer_within {
                st.answered_in_time += 1;
            }
            st.waits.record(waited);
            st.wait_sum_ms += waited as f64;
            st.hold_sum_ms += w.hold_ms as f64;
            st.waiting_sum_ms += waited as f64;
            self.waiting_ms += waited as f64;
            self.lease_ms += w.hold_ms as f64;
        }
        self.schedule(at + w.hold_ms, Ev::CallEnd { lease: lease.0 });
    }

    // ----- operating policies --------------------------------------------------------

    /// Whether anything but the clock events is still to happen.
    fn work_left(&self) -> bool {
        self.heap.len() > self.clocks || self.arrival_next.is_some() || self.ledger.next_deadline().is_some()
    }

    /// A simulated second passed: breakers and alerts look at the clock.
    #[inline(never)]
    fn ops_tick(&mut self) {
        if let Some(ops) = &mut self.ops {
            ops.tick(&mut self.ledger, self.now);
        }
        self.ops_effects();
        // Caps and limits may have risen: the dialers look again.
        self.wake_dialers();
        if self.work_left() {
            self.clocks += 1;
            self.schedule(self.now + super::ops::TICK_MS, Ev::OpsTick);
        }
    }

    /// Does a caller of flow `f` pass its breakers now? (Always, without policies.)
    #[inline(always)]
    fn ops_gate(&mut self, f: usize) -> bool {
        self.ops.is_none() || self.ops_gate_slow(f)
    }

    #[inline(never)]
    fn ops_gate_slow(&mut self, f: usize) -> bool {
        let Some(ops) = &mut self.ops else { return true };
        let passed = ops.gate(&self.ledger, f, self.now);
        self.ops_effects();
        passed
    }

    /// A call of flow `f` was granted just now: the policies take its latency sample and
    /// dependency outcomes. True when the provider refused it (outbound only).
    #[inline(always)]
    fn ops_granted(&mut self, f: usize, outbound: bool) -> bool {
        self.ops.is_some() && self.ops_granted_slow(f, outbound)
    }

    #[inline(never)]
    fn ops_granted_slow(&mut self, f: usize, outbound: bool) -> bool {
        let Some(ops) = &mut self.ops else { return false };
        let (refused, _failed) = ops.granted(&mut self.ledger, f, self.now, outbound);
        self.ops_effects();
        refused
    }

    /// Pauses and resumes the dialers as the policies asked.
    fn ops_effects(&mut self) {
        let Some(ops) = &mut self.ops else { return };
        if ops.effects.is_empty() {
            return;
        }
        let effects = std::mem::take(&mut ops.effects);
        for e in effects {
            match e {
                Effect::PauseForBreaker(b) => {
                    for d in &mut self.dialers {
                        let depends = self.ops.as_ref().is_some_and(|o| o.depends(d.flow.index()).contains(&b));
                        if depends && d.finished_at.is_none() && !d.paused.contains(&Pause::Breaker(b)) {
                            d.paused.push(Pause::Breaker(b));
                        }
                    }
                }
                Effect::PauseBelow(i, below) => {
                    for d in &mut self.dialers {
                        if d.spec.priority < below && d.finished_at.is_none() && !d.paused.contains(&Pause::Alert(i)) {
                            d.paused.push(Pause::Alert(i));
                        }
                    }
                }
                Effect::Resume(pause) => {
                    for c in 0..self.dialers.len() {
                        let d = &mut self.dialers[c];
                        let before = d.paused.len();
                        d.paused.retain(|p| *p != pause);
                        if before != d.paused.len() && d.paused.is_empty() {
                            self.wake_dialer(c, self.now);
                        }
                    }
                }
            }
        }
    }

    // ----- campaigns ---------------------------------------------------------------

    fn wake_dialer(&mut self, c: usize, at: u64) {
        if at >= self.campaigns_stop {
            return;
        }
        let d = &mut self.dialers[c];
        if d.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        d.wake_at = Some(at);
        self.schedule(at, Ev::DialerWake { campaign: c as u32 });
    }

    /// One attempt of dialer `c` (flow `flow`) asks for a line as the server's dialer does:
    /// its flow's breaker first (refused: looked at again when the policies next see time
    /// pass), then the ledger (no line: blocked until something is freed), then the
    /// provider (refused for concurrency: the line goes back and the campaign waits out its
    /// cooldown). Only a line is an attempt; the caller gives a lead back otherwise.
    fn place(&mut self, c: usize, flow: FlowId, target: Target) -> Placed {
        let now = self.now;
        if !self.ops_gate(flow.index()) {
            self.wake_dialer(c, now + super::ops::TICK_MS);
            return Placed::Refused;
        }
        let req =
            Request { target, key: None, ttl_ms: Some(NEVER_EXPIRES), max_wait_ms: Some(0), meta: None, owner: None };
        match self.ledger.acquire(req, now) {
            Ok(Decision::Granted { lease, .. }) => {
                if self.ops_granted(flow.index(), true) {
                    self.ledger.release(lease, now);
                    let d = &mut self.dialers[c];
                    d.next_allowed = now + d.cooldown_ms.max(d.spacing_ms);
                    let at = d.next_allowed;
                    self.wake_dialer(c, at);
                    return Placed::Refused;
                }
                Placed::Line(lease)
            }
            _ => {
                // No free line for this flow (after reserves and waiting callers): look
                // again when something is freed.
                let d = &mut self.dialers[c];
                d.blocked = true;
                d.idle_since = now;
                Placed::NoLine
            }
        }
    }

    /// Whether dialer `c` must wait before its next attempt: at its own cap (it looks again
    /// when one of its calls ends) or before the time its pacing allows (woken then).
    fn held_back(&mut self, c: usize) -> bool {
        let now = self.now;
        let d = &mut self.dialers[c];
        if d.cap.is_some_and(|m| d.in_flight >= m) {
            d.blocked = true;
            d.idle_since = now;
            return true;
        }
        if now < d.next_allowed {
            let at = d.next_allowed;
            self.wake_dialer(c, at);
            return true;
        }
        false
    }

    /// Places attempts while a lead is ready, the carrier allows and a line is free.
    fn dial(&mut self, c: usize) {
        if self.dialers[c].real.is_some() {
            self.dial_real(c);
            return;
        }
        let now = self.now;
        loop {
            let d = &mut self.dialers[c];
            d.blocked = false;
            if now >= self.campaigns_stop || !d.paused.is_empty() {
                // Paused: dialed again when the pause lifts (`ops_effects`).
                return;
            }
            match next_open(d.spec.window.as_ref(), self.sc.sim.start_ms, now) {
                Some(open) if open > now => {
                    self.wake_dialer(c, open);
                    return;
                }
                Some(_) => {}
                None => {
                    // Every batch is over: the campaign will not dial again.
                    return;
                }
            }
            let due = d.retries.peek().map(|r| r.0).filter(|r| r.0 <= now);
            let (lead, attempt) = match due {
                Some((_, lead, attempt)) => (lead, attempt),
                None if d.next_fresh < d.spec.leads => (d.next_fresh as u32, 1),
                None => {
                    if let Some(&Reverse((at, _, _))) = d.retries.peek() {
                        self.wake_dialer(c, at);
                    }
                    return;
                }
            };
            if self.held_back(c) {
                return;
            }
            let d = &self.dialers[c];
            let (outcome, hold) = draw(d, self.seed, lead, attempt);
            let flow = d.flow;
            let Placed::Line(lease) = self.place(c, flow, Target::Flow(flow)) else { return };
            let d = &mut self.dialers[c];
            if due.is_some() {
                d.retries.pop();
            } else {
                d.next_fresh += 1;
            }
            d.in_flight += 1;
            d.attempts += 1;
            d.first_attempt.get_or_insert(now);
            d.next_allowed = now + d.spacing_ms;
            self.schedule(now + hold, Ev::AttemptEnd { campaign: c as u32, lease: lease.0, lead, attempt, outcome });
        }
    }

    /// [`Sim::dial`] for a dialer that runs a `[[campaigns]]` entry: the lead comes from
    /// the real dialer's scheduler, after its calendar, caps and calling rules.
    fn dial_real(&mut self, c: usize) {
        let now = self.now;
        let start = self.sc.sim.start_ms;
        let wall = start.saturating_add(now);
        loop {
            let d = &mut self.dialers[c];
            d.blocked = false;
            if now >= self.campaigns_stop || !d.paused.is_empty() {
                return;
            }
            if self.held_back(c) {
                return;
            }
            let Some(real) = self.dialers[c].real.as_mut() else { return };
            let lead = match real.take(wall) {
                Take::Lead(lead) => lead,
                Take::Until(at) => {
                    self.wake_dialer(c, at.saturating_sub(start).max(now + 1));
                    return;
                }
                Take::Done => return,
            };
            // Lead numbers are below `leads` (at most 100,000,000) plus the callbacks
            // booked, and attempts below `max_attempts` (at most 100).
            let (number, attempt) = (lead.id as u32, (lead.attempts + 1) as u16);
            let callback = lead.warm.then(|| self.callbacks.as_ref()?.booked.get(&lead.id)).flatten();
            let d = &self.dialers[c];
            let (outcome, hold) = match (callback, self.sc.sim.callback.as_ref()) {
                (Some(b), Some(policy)) => draw_callback(policy, self.seed, lead.id, b.attempts + 1, b.hold_ms),
                _ => draw(d, self.seed, number, attempt),
            };
            let flow = d.flow;
            let target = match (&d.callback_target, lead.warm) {
                (Some(t), true) => t.clone(),
                _ => Target::Flow(flow),
            };
            let Placed::Line(lease) = self.place(c, flow, target) else {
                if let Some(real) = self.dialers[c].real.as_mut() {
                    real.give_back(lead, wall);
                }
                return;
            };
            let d = &mut self.dialers[c];
            if let Some(real) = d.real.as_mut() {
                real.started(lead.id, wall);
            }
            d.in_flight += 1;
            if lead.warm {
                self.callback_placed(lead.id, outcome);
            } else {
                d.attempts += 1;
                d.first_attempt.get_or_insert(now);
            }
            let d = &mut self.dialers[c];
            d.next_allowed = now + d.spacing_ms;
            self.schedule(
                now + hold,
                Ev::AttemptEnd { campaign: c as u32, lease: lease.0, lead: number, attempt, outcome },
            );
        }
    }

    /// A callback returned by a campaign was placed: its counts, as the callback dialer's.
    fn callback_placed(&mut self, id: u64, outcome: Outcome) {
        let now = self.now;
        let Some(cb) = &mut self.callbacks else { return };
        if let Some(b) = cb.booked.get_mut(&id) {
            b.attempts += 1;
            if outcome == Outcome::Answered {
                cb.stats.connect_wait_sum_ms += now.saturating_sub(b.booked_at) as f64;
            }
        }
        cb.stats.attempts += 1;
        self.count(TALLY_CALLBACK);
    }

    /// A callback returned by campaign `c` ended: connected, or retried by the campaign's
    /// retry table, or given up (its caller is lost).
    /// A callback's line ends: its time counts for the lines and for the callbacks, and
    /// the line is freed.
    fn end_callback_line(&mut self, lease: u64) {
        let now = self.now;
        if let Some(l) = self.ledger.lease(LeaseId(lease)) {
            let held = now.saturating_sub(l.granted_at) as f64;
            self.lease_ms += held;
            if let Some(cb) = &mut self.callbacks {
                cb.stats.line_ms += held;
            }
        }
        self.ledger.release(LeaseId(lease), now);
    }

    fn campaign_callback_end(&mut self, c: usize, lease: u64, id: u64, outcome: Outcome) {
        let now = self.now;
        self.end_callback_line(lease);
        let d = &mut self.dialers[c];
        d.in_flight -= 1;
        if d.blocked {
            self.wake_dialer(c, now);
        }
        let Some(cb) = &mut self.callbacks else { return };
        let as_dialed = match outcome {
            Outcome::Answered => {
                callback_connected(cb, &mut self.flows, id);
                return;
            }
            Outcome::Busy => {
                cb.stats.busy += 1;
                callgate_dialer::dial::Outcome::Busy
            }
            Outcome::Voicemail => {
                cb.stats.voicemail += 1;
                callgate_dialer::dial::Outcome::Voicemail
            }
            Outcome::NoAnswer => {
                cb.stats.no_answer += 1;
                callgate_dialer::dial::Outcome::NoAnswer
            }
            Outcome::Failed => callgate_dialer::dial::Outcome::Failed,
        };
        let attempts = cb.booked.get(&id).map_or(1, |b| b.attempts);
        let start = self.sc.sim.start_ms;
        let Some(real) = self.dialers[c].real.as_mut() else { return };
        match real.ended(id, attempts, as_dialed, start.saturating_add(now)) {
            Some(at) => self.wake_dialer(c, at.saturating_sub(start)),
            None => self.lose_callback(id),
        }
    }

    fn attempt_end(&mut self, c: usize, lease: u64, lead: u32, attempt: u16, outcome: Outcome) {
        if u64::from(lead) >= self.dialers[c].spec.leads {
            self.campaign_callback_end(c, lease, u64::from(lead), outcome);
            return;
        }
        let connected = outcome == Outcome::Answered;
        let now = self.now;
        if let Some(l) = self.ledger.lease(LeaseId(lease)) {
            let held = now.saturating_sub(l.granted_at) as f64;
            let d = &mut self.dialers[c];
            d.line_ms += held;
            if connected {
                d.talk_ms += held;
            }
            self.lease_ms += held;
        }
        self.ledger.release(LeaseId(lease), now);
        let d = &mut self.dialers[c];
        d.in_flight -= 1;
        let retry = &d.spec.retry;
        // The real dialer's delays: per outcome, with backoff (`RetryConfig::delay`).
        let base = match outcome {
            Outcome::Answered => {
                d.connected += 1;
                None
            }
            Outcome::Busy => {
                d.busy += 1;
                Some(retry.busy)
            }
            Outcome::Voicemail => {
                d.voicemail += 1;
                Some(retry.voicemail)
            }
            Outcome::NoAnswer => {
                d.no_answer += 1;
                Some(retry.no_answer)
            }
            Outcome::Failed => {
                d.failed += 1;
                Some(retry.failed)
            }
        };
        let mut retry_at = None;
        if let Some(real) = d.real.as_mut() {
            let start = self.sc.sim.start_ms;
            let as_dialed = match outcome {
                Outcome::Answered => callgate_dialer::dial::Outcome::Completed,
                Outcome::Busy => callgate_dialer::dial::Outcome::Busy,
                Outcome::Voicemail => callgate_dialer::dial::Outcome::Voicemail,
                Outcome::NoAnswer => callgate_dialer::dial::Outcome::NoAnswer,
                Outcome::Failed => callgate_dialer::dial::Outcome::Failed,
            };
            match real.ended(u64::from(lead), u32::from(attempt), as_dialed, start.saturating_add(now)) {
                Some(at) => retry_at = Some(at.saturating_sub(start)),
                None if base.is_some() => d.unreached += 1,
                None => {}
            }
            if real.is_empty() && d.in_flight == 0 {
                d.finished_at = Some(now);
            }
        } else if let Some(base) = base {
            if u32::from(attempt) < retry.max_attempts {
                let at = now.saturating_add(retry.delay(base, u32::from(attempt)).as_millis() as u64);
                d.retries.push(Reverse((at, lead, attempt + 1)));
                retry_at = Some(at);
            } else {
                d.unreached += 1;
            }
        }
        if d.real.is_none() && d.next_fresh >= d.spec.leads && d.retries.is_empty() && d.in_flight == 0 {
            d.finished_at = Some(now);
        }
        let blocked = d.blocked;
        // One of its own calls ended: the dialer looks again at once.
        if blocked {
            self.wake_dialer(c, now);
        }
        if let Some(at) = retry_at {
            self.wake_dialer(c, at);
        }
    }

    // ----- callbacks -----------------------------------------------------------------

    fn wake_callbacks(&mut self, at: u64) {
        let Some(cb) = &mut self.callbacks else { return };
        if cb.wake_at.is_some_and(|w| w <= at && w >= self.now) {
            return;
        }
        cb.wake_at = Some(at);
        self.schedule(at, Ev::CallbackWake);
    }

    /// A callback given up (declined retries, deadline): its caller is lost.
    fn lose_callback(&mut self, id: u64) {
        let Some(cb) = &mut self.callbacks else { return };
        if let Some(b) = cb.booked.remove(&id) {
            cb.stats.lost += 1;
            if b.counted {
                self.flows[b.origin as usize].callbacks_lost += 1;
            }
        }
    }

    /// Places the callbacks that are due while the pacing allows and a line is free: the
    /// real dialer's rules for a warm lead (never waits for a line, calls per second, its
    /// own cap).
    fn dial_callbacks(&mut self) {
        let Some(policy) = self.sc.sim.callback.as_ref() else { return };
        let now = self.now;
        loop {
            let Some(cb) = &mut self.callbacks else { return };
            cb.blocked = false;
            let Some(&Reverse((due, id))) = cb.due.peek() else { return };
            if due > now {
                self.wake_callbacks(due);
                return;
            }
            let Some(b) = cb.booked.get(&id) else {
                cb.due.pop();
                continue;
            };
            if now >= b.booked_at.saturating_add(policy.deadline_ms) {
                cb.due.pop();
                self.lose_callback(id);
                continue;
            }
            if policy.max_concurrency.is_some_and(|m| cb.in_flight >= m) {
                cb.blocked = true;
                cb.idle_since = now;
                return;
            }
            if now < cb.next_allowed {
                let at = cb.next_allowed;
                self.wake_callbacks(at);
                return;
            }
            // The answer depends only on (seed, callback, attempt): every policy meets the
            // same people.
            let (outcome, hold) = draw_callback(policy, self.seed, id, b.attempts + 1, b.hold_ms);
            let req = Request {
                target: Target::Flow(cb.flow),
                key: None,
                ttl_ms: Some(NEVER_EXPIRES),
                max_wait_ms: Some(0),
                meta: None,
                owner: None,
            };
            match self.ledger.acquire(req, now) {
                Ok(Decision::Granted { lease, .. }) => {
                    let Some(cb) = &mut self.callbacks else { return };
                    cb.due.pop();
                    if let Some(b) = cb.booked.get_mut(&id) {
                        b.attempts += 1;
                        if outcome == Outcome::Answered {
                            cb.stats.connect_wait_sum_ms += now.saturating_sub(b.booked_at) as f64;
                        }
                    }
                    cb.in_flight += 1;
                    cb.stats.attempts += 1;
                    cb.next_allowed = now + cb.spacing_ms;
                    self.count(TALLY_CALLBACK);
                    self.schedule(now + hold, Ev::CallbackEnd { lease: lease.0, id, outcome });
                }
                _ => {
                    // No free line (after reserves and waiting callers): look again
                    // when something is freed.
                    if let Some(cb) = &mut self.callbacks {
                        cb.blocked = true;
                        cb.idle_since = now;
                    }
                    return;
                }
            }
        }
    }

    fn callback_end(&mut self, lease: u64, id: u64, outcome: Outcome) {
        let Some(policy) = self.sc.sim.callback.as_ref() else { return };
        let now = self.now;
        self.end_callback_line(lease);
        let Some(cb) = &mut self.callbacks else { return };
        cb.in_flight -= 1;
        if cb.blocked {
            // One of its own calls ended: it looks again at once.
            self.wake_callbacks(now);
        }
        let Some(cb) = &mut self.callbacks else { return };
        let retry = &policy.retry;
        let base = match outcome {
            Outcome::Answered => {
                callback_connected(cb, &mut self.flows, id);
                return;
            }
            Outcome::Busy => {
                cb.stats.busy += 1;
                retry.busy
            }
            Outcome::Voicemail => {
                cb.stats.voicemail += 1;
                retry.voicemail
            }
            Outcome::NoAnswer => {
                cb.stats.no_answer += 1;
                retry.no_answer
            }
            // Callbacks are drawn answered, busy, voicemail or not answered only.
            Outcome::Failed => retry.failed,
        };
        let Some(b) = cb.booked.get(&id) else { return };
        let next = now.saturating_add(retry.delay(base, b.attempts).as_millis() as u64);
        if b.attempts >= retry.max_attempts || next >= b.booked_at.saturating_add(policy.deadline_ms) {
            self.lose_callback(id);
        } else {
            cb.due.push(Reverse((next, id)));
            self.wake_callbacks(next);
        }
    }

    // ----- the report ----------------------------------------------------------------

    fn report(mut self) -> Report {
        // The run ends with the last change of the ledger (or the end of the window):
        // later loop turns only pop stale timers.
        let end = self.last_activity.max(self.window.end.min(self.now));
        for g in self.pools_used.iter_mut().chain(self.flows_waiting.iter_mut()).chain(self.classes_live.iter_mut()) {
            g.advance(end, &self.window);
        }
        let sc = self.sc;
        let window_ms = self.window.end.saturating_sub(self.window.start).max(1) as f64;
        let flows: Vec<FlowReport> = self
            .flows
            .iter()
            .enumerate()
            .filter(|(i, st)| st.offered > 0 || sc.arrivals.iter().any(|a| a.flow == *i))
            .map(|(i, st)| flow_report(sc, i, st, &self.flows_waiting[i], window_ms))
            .collect();
        let pools: Vec<PoolReport> = sc
            .spec
            .pools
            .iter()
            .zip(&self.pools_used)
            .map(|(p, g)| {
                let mean = g.area / window_ms;
                let limit = f64::from(p.limit.max(1));
                PoolReport {
                    pool: p.name.clone(),
                    limit: p.limit,
                    mean_used: mean,
                    utilization: mean / limit,
                    peak_used: g.peak.max(0) as u64,
                    peak_utilization: g.peak.max(0) as f64 / limit,
                    time_by_used: g
                        .time_at
                        .iter()
                        .enumerate()
                        .filter(|&(_, &ms)| ms > 0.0)
                        .map(|(u, &ms)| (u as u64, ms / 1000.0))
                        .collect(),
                }
            })
            .collect();
        let campaigns: Vec<CampaignReport> = self
            .dialers
            .iter()
            .map(|d| {
                let remaining = d.spec.leads - d.connected - d.unreached;
                // Attempts per hour of open calling window, from the first attempt on.
                let until = d.finished_at.unwrap_or_else(|| self.campaigns_stop.min(end));
                let span_h = d
                    .first_attempt
                    .map_or(0.0, |a| open_ms(d.spec.window.as_ref(), sc.sim.start_ms, a, until) as f64 / 3.6e6);
                CampaignReport {
                    campaign: d.spec.name.clone(),
                    flow: sc.flow_name(d.spec.flow).to_owned(),
                    leads: d.spec.leads,
                    attempts: d.attempts,
                    connected: d.connected,
                    busy: d.busy,
                    voicemail: d.voicemail,
                    no_answer: d.no_answer,
                    failed: d.failed,
                    unreached: d.unreached,
                    remaining,
                    finished_at_s: d.finished_at.map(|t| t as f64 / 1000.0),
                    attempts_per_hour: if span_h > 0.0 { d.attempts as f64 / span_h } else { 0.0 },
                    talk_minutes: d.talk_ms / 60_000.0,
                    line_minutes: d.line_ms / 60_000.0,
                }
            })
            .collect();
        let cost = sc.pricing.as_ref().map(|pr| {
            let minutes = self.lease_ms / 60_000.0;
            let waiting_minutes = self.waiting_ms / 60_000.0;
            let paid_lines: u32 = sc
                .spec
                .pools
                .iter()
                .filter(|p| pr.line_pools.as_ref().is_none_or(|l| l.contains(&p.name)))
                .map(|p| p.limit)
                .sum();
            let month_ms = pr.days_per_month * 86_400_000.0;
            let period = window_ms / month_ms;
            let minutes_cost = minutes * pr.per_minute_total();
            let waiting_cost = waiting_minutes * pr.waiting_per_min;
            let lines_month = f64::from(paid_lines) * pr.per_line_month;
            let total = minutes_cost + waiting_cost + lines_month * period;
            let answered: u64 =
                flows.iter().map(|f| f.answered).sum::<u64>() + campaigns.iter().map(|c| c.connected).sum::<u64>();
            CostReport {
                currency: pr.currency.clone(),
                minutes,
                minutes_cost,
                waiting_minutes,
                waiting_cost,
                lines: paid_lines,
                lines_cost: lines_month * period,
                total,
                per_answered_call: if answered > 0 { total / answered as f64 } else { 0.0 },
                per_month: (minutes_cost + waiting_cost) / period + lines_month,
            }
        });
        let series = self.series(end);
        let lost = lost_report(&self.flows, sc);
        let callbacks = self.callbacks.as_ref().map(|cb| {
            let s = &cb.stats;
            CallbackReport {
                flow: sc.flow_name(cb.flow.index()).to_owned(),
                booked: cb.next_id,
                attempts: s.attempts,
                connected: s.connected,
                busy: s.busy,
                voicemail: s.voicemail,
                no_answer: s.no_answer,
                lost: s.lost,
                pending: cb.booked.len() as u64,
                connect_rate: s.connected as f64 / s.attempts.max(1) as f64,
                mean_time_to_connect_s: s.connect_wait_sum_ms / s.connected.max(1) as f64 / 1000.0,
                line_minutes: s.line_ms / 60_000.0,
            }
        });
        Report {
            scenario: sc.name.clone(),
            seed: self.seed,
            start: callgate_config::format_instant(sc.sim.start_ms),
            start_ms: sc.sim.start_ms,
            simulated_s: window_ms / 1000.0,
            warmup_s: self.window.start as f64 / 1000.0,
            answer_within_s: self.answer_within as f64 / 1000.0,
            flows,
            pools,
            campaigns,
            cost,
            lost,
            callbacks,
            events: self.turns,
            schedules: std::mem::take(&mut self.schedule_log),
            ops: self.ops.take().map(|o| o.report(&self.ledger)),
            series,
        }
    }

    fn series(&self, end: u64) -> Series {
        let mut bucket = self.window.bucket_ms;
        let n = (end / bucket + 1) as usize;
        let take = |g: &Gauge| -> (Vec<f64>, Vec<f64>) {
            let mut area = g.series_area.clone();
            let mut peak: Vec<f64> = g.series_peak.iter().map(|&p| p as f64).collect();
            area.resize(n, 0.0);
            peak.resize(n, 0.0);
            (area, peak)
        };
        let mut pools: Vec<(Vec<f64>, Vec<f64>)> = self.pools_used.iter().map(take).collect();
        let mut flows: Vec<(Vec<f64>, Vec<f64>)> = self.flows_waiting.iter().map(take).collect();
        let mut classes: Vec<(Vec<f64>, Vec<f64>)> = self.classes_live.iter().map(take).collect();
        // Counts add like areas; they have no peaks.
        let mut tallies: Vec<(Vec<f64>, Vec<f64>)> = self
            .tally
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.resize(n, 0.0);
                (t, Vec::new())
            })
            .collect();
        // At most 2 × CHART_POINTS points: merge neighbours (areas add, peaks max).
        let mut len = n;
        while len > 2 * CHART_POINTS as usize {
            for (area, peak) in
                pools.iter_mut().chain(flows.iter_mut()).chain(classes.iter_mut()).chain(tallies.iter_mut())
            {
                let a: Vec<f64> = area.chunks(2).map(|c| c.iter().sum()).collect();
                let p: Vec<f64> = peak.chunks(2).map(|c| c.iter().copied().fold(0.0, f64::max)).collect();
                *area = a;
                *peak = p;
            }
            len = len.div_ceil(2);
            bucket *= 2;
        }
        let line = |name: &str, limit: Option<u32>, (area, peak): (Vec<f64>, Vec<f64>)| SeriesLine {
            name: name.to_owned(),
            limit,
            mean: area.iter().map(|a| a / bucket as f64).collect(),
            peak,
        };
        Series {
            bucket_s: bucket as f64 / 1000.0,
            window_start_s: self.window.start as f64 / 1000.0,
            window_end_s: self.window.end.min(end) as f64 / 1000.0,
            pools: self.sc.spec.pools.iter().zip(pools).map(|(p, s)| line(&p.name, Some(p.limit), s)).collect(),
            waiting: self
                .sc
                .config
                .flows
                .iter()
                .zip(flows)
                .filter(|(_, s)| s.1.iter().any(|&p| p > 0.0))
                .map(|(f, s)| line(&f.name, None, s))
                .collect(),
            classes: self.sc.spec.classes.iter().zip(classes).map(|(c, s)| line(&c.name, None, s)).collect(),
            // Per hour of each interval.
            outcomes: TALLY_NAMES
                .iter()
                .zip(tallies)
                .filter(|(_, (t, _))| t.iter().any(|&c| c > 0.0))
                .map(|(name, (t, _))| SeriesLine {
                    name: (*name).to_owned(),
                    limit: None,
                    mean: t.iter().map(|c| c * 3_600_000.0 / bucket as f64).collect(),
                    peak: Vec::new(),
                })
                .collect(),
        }
    }
}

/// A flow's overflow as the simulator carries it out.
#[derive(Clone, Debug, Default)]
struct Chain {
    /// The flows its leading `spill` steps try, in order.
    spills: Vec<u32>,
    /// The first other action (what a caller no spill took gets), if any.
    then: Option<OverflowAction>,
}

/// The part of `steps` the simulator carries out: the spill steps, then the first
/// other action (the simulator counts one action per caller; later steps are the edges'
/// business).
fn chain_of(config: &callgate_config::Config, steps: &[callgate_config::Overflow]) -> Chain {
    let mut chain = Chain::default();
    for step in steps {
        if step.action != OverflowAction::Spill {
            chain.then = Some(step.action);
            break;
        }
        let target = step.flow.as_deref().and_then(|f| config.flows.iter().position(|c| c.name == f));
        if let Some(i) = target.and_then(|i| u32::try_from(i).ok()) {
            chain.spills.push(i);
        }
    }
    chain
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Capacity,
    QueueFull,
    TimedOut,
    NeverFits,
    /// A breaker of the flow's dependencies turned the caller away.
    DependencyDown,
}

/// The headline over the flows fed by `[[arrivals]]`.
fn lost_report(flows: &[FlowStats], sc: &Scenario) -> LostReport {
    let mut out = LostReport::default();
    let mut in_time = 0;
    for (i, st) in flows.iter().enumerate() {
        if !sc.arrivals.iter().any(|a| a.flow == i) {
            continue;
        }
        out.callers += st.offered;
        out.hung_up += st.abandoned;
        out.busy += st.overflow.get("busy").copied().unwrap_or(0) + st.overflow.get("refused").copied().unwrap_or(0);
        out.callback_declined += st.callbacks_declined;
        out.callback_never_connected += st.callbacks_lost;
        out.retrials += st.retrials;
        out.called_again += st.called_again;
        in_time += st.answered_in_time;
    }
    out.lost = out.hung_up + out.busy + out.callback_declined + out.callback_never_connected;
    out.share = out.lost as f64 / out.callers.max(1) as f64;
    out.people = out.callers - out.retrials;
    // A lost call after which the person called again has not lost the person (yet).
    out.people_lost = out.lost - out.called_again;
    out.people_share = out.people_lost as f64 / out.people.max(1) as f64;
    out.service_level = in_time as f64 / out.callers.max(1) as f64;
    out
}

fn flow_report(sc: &Scenario, i: usize, st: &FlowStats, waiting: &Gauge, window_ms: f64) -> FlowReport {
    let offered = st.offered.max(1) as f64;
    let answered = st.answered.max(1) as f64;
    let flow = &sc.config.flows[i];
    let overflowed: u64 = st.overflow.values().sum();
    let lost = st.abandoned
        + st.overflow.get("busy").copied().unwrap_or(0)
        + st.overflow.get("refused").copied().unwrap_or(0)
        + st.callbacks_declined
        + st.callbacks_lost;
    FlowReport {
        flow: flow.name.clone(),
        class: flow.class.clone(),
        offered: st.offered,
        granted_at_once: st.at_once,
        queued: st.queued,
        answered: st.answered,
        abandoned: st.abandoned,
        overflowed,
        overflow_by_action: st.overflow.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        overflow_by_reason: st.reasons,
        callbacks_booked: st.callbacks_booked,
        callbacks_declined: st.callbacks_declined,
        callbacks_connected: st.callbacks_connected,
        callbacks_lost: st.callbacks_lost,
        lost,
        retrials: st.retrials,
        people: st.offered - st.retrials,
        people_lost: lost - st.called_again,
        p_wait: st.queued as f64 / offered,
        asa_s: st.wait_sum_ms / answered / 1000.0,
        mean_wait_s: st.waiting_sum_ms / offered / 1000.0,
        p95_wait_s: st.waits.quantile(0.95) as f64 / 1000.0,
        service_level: st.answered_in_time as f64 / offered,
        abandon_rate: st.abandoned as f64 / offered,
        overflow_rate: overflowed as f64 / offered,
        mean_hold_s: st.hold_sum_ms / answered / 1000.0,
        mean_waiting: waiting.area / window_ms,
        peak_waiting: waiting.peak.max(0) as u64,
    }
}

/// How attempt `attempt` on lead `lead` of dialer `d` goes, and how long it holds its
/// line: from (seed, campaign, lead, attempt) alone, so every policy meets the same people.
fn draw(d: &Dialer, seed: u64, lead: u32, attempt: u16) -> (Outcome, u64) {
    let mut key = seed ^ d.stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    key ^= u64::from(lead).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ u64::from(attempt);
    let mut rng = Rng::stream(splitmix64(&mut key), d.stream);
    let u = rng.uniform();
    let sp = &d.spec;
    let outcome = if u < sp.answer {
        Outcome::Answered
    } else if u < sp.answer + sp.busy {
        Outcome::Busy
    } else if u < sp.answer + sp.busy + sp.voicemail {
        Outcome::Voicemail
    } else if u < sp.answer + sp.busy + sp.voicemail + sp.failed {
        Outcome::Failed
    } else {
        Outcome::NoAnswer
    };
    let hold = if outcome == Outcome::Answered { sp.talk.sample(&mut rng) } else { sp.ring.sample(&mut rng) };
    (outcome, hold)
}

/// How attempt `attempt` of callback `id` goes: from (seed, callback, attempt) alone, as
/// the callback dialer draws it; an answered one holds its line for the caller's call.
fn draw_callback(
    policy: &super::scenario::CallbackPolicy,
    seed: u64,
    id: u64,
    attempt: u32,
    hold_ms: u64,
) -> (Outcome, u64) {
    let mut key = seed ^ 0x5851_F42D_4C95_7F2D ^ id.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    key ^= u64::from(attempt);
    let mut rng = Rng::stream(splitmix64(&mut key), 3_000_000);
    let u = rng.uniform();
    let outcome = if u < policy.answer {
        Outcome::Answered
    } else if u < policy.answer + policy.busy {
        Outcome::Busy
    } else if u < policy.answer + policy.busy + policy.voicemail {
        Outcome::Voicemail
    } else {
        Outcome::NoAnswer
    };
    let hold = if outcome == Outcome::Answered { hold_ms } else { policy.ring.sample(&mut rng) };
    (outcome, hold)
}

/// The gap between attempts at `cps` attempts per second (0: no limit).
fn spacing(cps: Option<f64>) -> u64 {
    cps.map_or(0, |cps| (1000.0 / cps).round() as u64)
}

/// Milliseconds of open calling window in `[from, to)` (run ms; `start_ms` is the run's
/// start on the wall clock).
fn open_ms(window: Option<&CallingWindow>, start_ms: u64, from: u64, to: u64) -> u64 {
    match window {
        None => to.saturating_sub(from),
        Some(&CallingWindow::Simulated(s, e)) => {
            let day = 86_400_000u64;
            let (s, e) = (u64::from(s) * 60_000, u64::from(e) * 60_000);
            let mut total = 0;
            let mut d = from / day;
            while d * day < to {
                let base = d * day;
                let spans = if s < e { vec![(s, e)] } else { vec![(0, e), (s, day)] };
                for (a, b) in spans {
                    let (lo, hi) = ((base + a).max(from), (base + b).min(to));
                    total += hi.saturating_sub(lo);
                }
                d += 1;
            }
            total
        }
        Some(w @ CallingWindow::Local { .. }) => {
            // Whole minutes on the wall clock (windows and batches start on minutes; a
            // report's rate needs no finer).
            let mut total = 0;
            let mut t = from;
            while t < to {
                let next = ((start_ms + t) / 60_000 + 1) * 60_000 - start_ms;
                if local_open(w, start_ms + t) {
                    total += next.min(to) - t;
                }
                t = next;
            }
            total
        }
    }
}

/// Whether a `Local` window is open at Unix ms `wall`.
fn local_open(window: &CallingWindow, wall: u64) -> bool {
    match window {
        CallingWindow::Local { window, batches } => {
            window.active_at(wall) && (batches.is_empty() || batches.iter().any(|&(s, e)| s <= wall && wall < e))
        }
        CallingWindow::Simulated(..) => true,
    }
}

/// When the calling window is next open at or after `now` (run ms): `now` without a
/// window, `None` when it never opens again (every batch is over, or no day allowed).
fn next_open(window: Option<&CallingWindow>, start_ms: u64, now: u64) -> Option<u64> {
    let Some(window) = window else { return Some(now) };
    match *window {
        CallingWindow::Simulated(s, e) => {
            let day = 86_400_000u64;
            let minute = ((now % day) / 60_000) as u32;
            let open = if s < e { (s..e).contains(&minute) } else { minute >= s || minute < e };
            if open {
                return Some(now);
            }
            let today = now - now % day;
            let start = today + u64::from(s) * 60_000;
            Some(if start > now { start } else { start + day })
        }
        CallingWindow::Local { ref batches, .. } => {
            if local_open(window, start_ms + now) {
                return Some(now);
            }
            // Windows and batches open on whole minutes: look minute by minute, a week and
            // a day at most, jumping over the gaps before a batch.
            let mut wall = ((start_ms + now) / 60_000 + 1) * 60_000;
            let last_batch = batches.iter().map(|b| b.1).max();
            for _ in 0..(8 * 1440) {
                if let Some(b) = batches.iter().filter(|b| b.1 > wall).map(|b| b.0).min() {
                    wall = wall.max(b);
                } else if last_batch.is_some() {
                    return None;
                }
                if local_open(window, wall) {
                    return Some(wall - start_ms);
                }
                wall += 60_000;
            }
            None
        }
    }
}

/// What one attempt found ([`Sim::place`]).
enum Placed {
    /// A line: the attempt goes ahead.
    Line(LeaseId),
    /// Its flow's breaker or the provider refused it; the dialer looks again later.
    Refused,
    /// No free line; the dialer looks again when one is freed.
    NoLine,
}

/// Callback `id` connected: counted once, and for the flow whose caller booked it.
fn callback_connected(cb: &mut Callbacks, flows: &mut [FlowStats], id: u64) {
    cb.stats.connected += 1;
    if let Some(b) = cb.booked.remove(&id) {
        if b.counted {
            flows[b.origin as usize].callbacks_connected += 1;
        }
    }
}
