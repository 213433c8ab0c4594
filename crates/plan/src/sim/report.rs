// Long file: every figure of a run (flows, pools, campaigns, callbacks, the headline) with its text and side-by-side forms, kept beside each other so that a new figure is added to all three.
//! What a simulation reports, as JSON and as readable tables, alone or side by side.

use crate::text::{count, money, num, pct, pct2, secs, Table};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// The instant the run started (`[sim] start`), UTC.
    pub start: String,
    /// The same, Unix ms (not in the JSON).
    #[serde(skip)]
    pub start_ms: u64,
    /// Length of the measured window: from the warm-up to the end of arrivals (seconds).
    pub simulated_s: f64,
    /// Callers arriving before this were not counted (seconds).
    pub warmup_s: f64,
    /// The service level counts callers answered within this (seconds).
    pub answer_within_s: f64,
    /// Per flow fed by `[[arrivals]]` (and the callback flow).
    pub flows: Vec<FlowReport>,
    /// Per pool.
    pub pools: Vec<PoolReport>,
    /// Per `[[sim.campaigns]]` dialer.
    pub campaigns: Vec<CampaignReport>,
    /// With `[pricing]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
    /// The headline: callers lost, over every flow fed by `[[arrivals]]`.
    pub lost: LostReport,
    /// With `[sim] callback`: how the callbacks went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<CallbackReport>,
    /// Events simulated (arrivals, call ends, ticks, dialer steps).
    pub events: u64,
    /// When the `[[schedules]]` in force changed (the first entry: those in force at the
    /// start); empty without schedules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleChange>,
    /// With adaptive pools, breakers or alerts in the config: what they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<OpsReport>,
    /// Levels over time, for the chart.
    #[serde(skip)]
    pub series: Series,
}

/// Callers lost, in all: the figure a manager asks for first.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LostReport {
    /// Calls by callers: people whose first call arrived in the measured window, each of
    /// their calls (a person who calls again counts again; callbacks are not callers).
    pub callers: u64,
    /// Calls lost, in all.
    pub lost: u64,
    /// `lost / callers`.
    pub share: f64,
    /// People: callers counted once, however often they called.
    pub people: u64,
    /// People lost: their last call was lost (they did not call again, or ran out of
    /// tries).
    pub people_lost: u64,
    /// `people_lost / people`.
    pub people_share: f64,
    /// Calls that were a person calling again (`retrial` of `[[arrivals]]`).
    pub retrials: u64,
    /// Lost calls after which the person called again: `lost - people_lost`.
    pub called_again: u64,
    /// Refused: overflow `busy`, or no overflow at all.
    pub busy: u64,
    /// Hung up while waiting.
    pub hung_up: u64,
    /// Declined the callback offered.
    pub callback_declined: u64,
    /// Accepted a callback that never connected.
    pub callback_never_connected: u64,
    /// Share of callers answered within the service-level threshold, all flows.
    pub service_level: f64,
}

/// How the callback dialer did: connect rates, not service levels (callbacks are not
/// callers).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallbackReport {
    /// The flow callbacks are dialed through.
    pub flow: String,
    /// Callbacks booked (the callers of the measured window and the others).
    pub booked: u64,
    /// Attempts placed.
    pub attempts: u64,
    /// Callbacks that reached their caller.
    pub connected: u64,
    /// Attempts that found the line busy.
    pub busy: u64,
    /// Attempts that reached voicemail.
    pub voicemail: u64,
    /// Attempts not answered.
    pub no_answer: u64,
    /// Callbacks given up: their callers are lost.
    pub lost: u64,
    /// Still pending when the run ended.
    pub pending: u64,
    /// `connected / attempts`.
    pub connect_rate: f64,
    /// Mean time from the booking to the answered attempt (seconds).
    pub mean_time_to_connect_s: f64,
    /// Minutes lines were held by callback attempts.
    pub line_minutes: f64,
}

/// What the config's operating policies did during the run (`callgate_policy`, the code
/// the server runs, on simulated time).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OpsReport {
    /// Per adaptive pool.
    pub adaptive: Vec<AdaptiveReport>,
    /// Per `[[breakers]]` entry.
    pub breakers: Vec<BreakerReport>,
    /// Per `[[alerts]]` entry.
    pub alerts: Vec<AlertReport>,
    /// What changed, in order (at most 1,000 lines).
    pub log: Vec<OpsLine>,
}

/// One adaptive pool's cap over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdaptiveReport {
    /// The pool.
    pub pool: String,
    /// `gradient2`, `vegas` or `aimd`.
    pub algorithm: String,
    /// The cap's bounds at the end.
    pub min: u32,
    /// The same.
    pub max: u32,
    /// The lowest cap it took.
    pub lowest_cap: u32,
    /// The cap at the end.
    pub final_cap: u32,
    /// How often it moved.
    pub cap_changes: u64,
    /// Samples it saw (from `[[sim.pools]]`).
    pub samples: u64,
    /// Of which the provider's refusals (beyond `provider_limit`).
    pub refusals: u64,
}

/// One breaker over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerReport {
    /// The dependency.
    pub name: String,
    /// Calls it saw the outcome of (from `[[sim.dependencies]]`).
    pub calls: u64,
    /// Of which failed.
    pub failed: u64,
    /// How often it opened from closed (a failed probe round reopening it is not counted).
    pub opened: u32,
    /// Callers turned away to the fallback by it.
    pub fallbacks: u64,
}

/// One alert over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertReport {
    /// The alert.
    pub name: String,
    /// How often it fired.
    pub fired: u32,
    /// How often it resolved.
    pub resolved: u32,
    /// Notifications it would have posted.
    pub notifications: u32,
    /// What its actions did (the first 16).
    pub actions: Vec<String>,
}

/// A line of the policies' log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpsLine {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// The same on the wall clock, UTC.
    pub at: String,
    /// What happened.
    pub what: String,
}

/// The schedules in force from a moment of the run on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleChange {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// The same instant on the wall clock (`[sim] start` plus `at_s`), UTC.
    pub at: String,
    /// The schedules active from then (none: the configuration as written).
    pub active: Vec<String>,
    /// What of them could not be put in force (reserves of overlapping schedules that
    /// add up to more than a pool's limit: the pool keeps its reserves from before).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// What happened to one flow's callers (those arriving inside the measured window).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowReport {
    /// The flow.
    pub flow: String,
    /// Its class.
    pub class: String,
    /// Callers who asked for a line.
    pub offered: u64,
    /// Answered at once.
    pub granted_at_once: u64,
    /// Put in the waiting room.
    pub queued: u64,
    /// Answered, at once or after waiting.
    pub answered: u64,
    /// Hung up while waiting.
    pub abandoned: u64,
    /// Sent to the flow's overflow (refused at once, waiting room full, or waited too long).
    pub overflowed: u64,
    /// Overflowed callers by the action they met (`refused` when the flow has none).
    pub overflow_by_action: BTreeMap<String, u64>,
    /// Overflowed callers by why.
    pub overflow_by_reason: OverflowReasons,
    /// Callbacks booked: offered (overflow `callback`) and accepted.
    pub callbacks_booked: u64,
    /// Callbacks offered and declined (`[sim] callback` `accept`): the caller is lost.
    pub callbacks_declined: u64,
    /// Booked callbacks that reached the caller.
    pub callbacks_connected: u64,
    /// Booked callbacks given up (out of attempts, or past the deadline): the caller is
    /// lost. Callbacks still pending when the run ends count in neither.
    pub callbacks_lost: u64,
    /// Callers lost: hung up while waiting, refused (overflow `busy`, or none), declined
    /// a callback, or a callback never connected. Voicemail, transfer and IVR count as
    /// handled. Calls: a person who calls again counts again.
    pub lost: u64,
    /// Calls that were a person calling again.
    pub retrials: u64,
    /// People: `offered - retrials`.
    pub people: u64,
    /// People lost: lost calls after which the person did not call again.
    pub people_lost: u64,
    /// Share of callers who waited.
    pub p_wait: f64,
    /// Mean wait of answered callers, those answered at once counting 0 (seconds): the
    /// same figure as `asa_s` of `callgate plan lines`.
    pub asa_s: f64,
    /// Mean time in the waiting room over all callers, answered or not (seconds): the
    /// same figure as `mean_wait_s` of `callgate plan lines`.
    pub mean_wait_s: f64,
    /// 95th percentile of the wait of answered callers (seconds).
    pub p95_wait_s: f64,
    /// Share of all callers answered within the threshold.
    pub service_level: f64,
    /// Share of callers who hung up while waiting.
    pub abandon_rate: f64,
    /// Share of callers overflowed.
    pub overflow_rate: f64,
    /// Mean call length of answered calls (seconds).
    pub mean_hold_s: f64,
    /// Callers waiting on average over the window.
    pub mean_waiting: f64,
    /// Most callers waiting at once in the window.
    pub peak_waiting: u64,
}

/// Why callers overflowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverflowReasons {
    /// No line and no waiting room.
    pub capacity: u64,
    /// The waiting room was full.
    pub queue_full: u64,
    /// Waited until the waiting room's `max_wait`.
    pub timed_out: u64,
    /// Asked a pool for more than its limit can ever give the flow's class (refused at
    /// once, or ended when a limit dropped).
    pub never_fits: u64,
    /// A dependency's breaker was open (the flow's `fallback`, else its overflow).
    #[serde(skip_serializing_if = "is_zero")]
    pub dependency_down: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How busy one pool was over the measured window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolReport {
    /// The pool.
    pub pool: String,
    /// Its limit.
    pub limit: u32,
    /// Units in use on average.
    pub mean_used: f64,
    /// `mean_used / limit`.
    pub utilization: f64,
    /// Most units in use at once.
    pub peak_used: u64,
    /// `peak_used / limit`.
    pub peak_utilization: f64,
    /// Seconds of the measured window spent at each number of units in use (above zero),
    /// lowest first. Not in the JSON: `simulate --latency-summary` reads it.
    #[serde(skip)]
    pub time_by_used: Vec<(u64, f64)>,
}

/// How one dialer did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignReport {
    /// Its name.
    pub campaign: String,
    /// Its flow.
    pub flow: String,
    /// Leads to reach.
    pub leads: u64,
    /// Attempts placed.
    pub attempts: u64,
    /// Leads who answered.
    pub connected: u64,
    /// Attempts that found the line busy.
    pub busy: u64,
    /// Attempts that reached voicemail.
    pub voicemail: u64,
    /// Attempts not answered.
    pub no_answer: u64,
    /// Attempts that failed (carrier or platform error).
    pub failed: u64,
    /// Leads nobody answered after every attempt.
    pub unreached: u64,
    /// Leads not finished when the run ended.
    pub remaining: u64,
    /// When the last lead finished (seconds from the start), if all did.
    pub finished_at_s: Option<f64>,
    /// Attempts per hour of open calling window, from the first attempt to the last.
    pub attempts_per_hour: f64,
    /// Minutes of answered calls.
    pub talk_minutes: f64,
    /// Minutes lines were held, answered or not.
    pub line_minutes: f64,
}

/// What the window cost, with `[pricing]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostReport {
    /// Currency symbol.
    pub currency: String,
    /// Minutes lines were held by calls (every flow and campaign).
    pub minutes: f64,
    /// `minutes × per-minute price`.
    pub minutes_cost: f64,
    /// Minutes callers spent waiting.
    pub waiting_minutes: f64,
    /// `waiting_minutes × waiting_per_min`.
    pub waiting_cost: f64,
    /// Lines paid per month (the limits of the priced pools).
    pub lines: u32,
    /// Their monthly price for the length of the window.
    pub lines_cost: f64,
    /// Everything for the window.
    pub total: f64,
    /// `total / answered calls`.
    pub per_answered_call: f64,
    /// A month at this rate: minutes scaled from the window, plus the lines.
    pub per_month: f64,
}

/// Levels over time per chart bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Width of a bucket (seconds).
    pub bucket_s: f64,
    /// Where the measured window starts (seconds).
    pub window_start_s: f64,
    /// Where it ends (seconds).
    pub window_end_s: f64,
    /// Units in use per pool.
    pub pools: Vec<SeriesLine>,
    /// Callers waiting per flow (flows that ever had any).
    pub waiting: Vec<SeriesLine>,
    /// Calls in progress per class (every class of the config), when the traffic uses
    /// more than one class; empty otherwise.
    pub classes: Vec<SeriesLine>,
    /// Events per hour over each interval of the whole run (refused, hung up, other
    /// overflow, callback attempts; those that happened at all): `mean` only.
    pub outcomes: Vec<SeriesLine>,
}

/// One line of the chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesLine {
    /// Pool or flow.
    pub name: String,
    /// The pool's limit.
    pub limit: Option<u32>,
    /// Mean level per bucket.
    pub mean: Vec<f64>,
    /// Highest level per bucket.
    pub peak: Vec<f64>,
}

/// A row of a comparison: how to show a measure of one scenario.
type Cell<T> = fn(&T) -> String;
type FlowCell = fn(&FlowReport, &Report) -> String;

fn overflow_text(f: &FlowReport) -> String {
    if f.overflowed == 0 {
        return "0".into();
    }
    f.overflow_by_action.iter().map(|(k, v)| format!("{k} {}", count(*v))).collect::<Vec<_>>().join(", ")
}

fn clock(s: f64) -> String {
    let total = s.round() as u64;
    format!("day {} {:02}:{:02}", total / 86_400 + 1, (total % 86_400) / 3600, (total % 3600) / 60)
}

impl Report {
    /// The figures a manager asks for first: callers lost (and why), service level,
    /// campaigns' completion, cost. Lines, each starting with two spaces.
    pub fn headline(&self) -> String {
        let l = &self.lost;
        let mut out = String::new();
        if l.callers > 0 {
            let _ = writeln!(
                out,
                "  Lost: {} of {} {} ({}): {} busy, {} hung up, {} callbacks never connected, {} declined · \
                 service level {}",
                count(l.lost),
                count(l.callers),
                if l.retrials + l.called_again > 0 { "calls" } else { "callers" },
                pct2(l.share),
                count(l.busy),
                count(l.hung_up),
                count(l.callback_never_connected),
                count(l.callback_declined),
                pct(l.service_level)
            );
            if l.retrials + l.called_again > 0 {
                let _ = writeln!(
                    out,
                    "  People lost: {} of {} ({}) · {} of the calls were people calling again",
                    count(l.people_lost),
                    count(l.people),
                    pct2(l.people_share),
                    count(l.retrials)
                );
            }
        }
        for c in &self.campaigns {
            let done = c.leads.saturating_sub(c.remaining);
            let _ = writeln!(
                out,
                "  Campaign {}: {} of {} leads done ({}){}",
                c.campaign,
                count(done),
                count(c.leads),
                pct(done as f64 / c.leads.max(1) as f64),
                c.finished_at_s.map_or_else(
                    || ", not finished".to_owned(),
                    |s| {
                        let wall = self.start_ms.saturating_add((s * 1000.0) as u64);
                        format!(", finished {} of the run ({})", clock(s), callgate_config::format_instant(wall))
                    }
                )
            );
        }
        if let Some(c) = &self.cost {
            let _ = writeln!(out, "  Cost: {} for this {}", money(&c.currency, c.total), secs(self.simulated_s));
        }
        out
    }

    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let offered: u64 = self.flows.iter().map(|f| f.offered).sum();
        let _ = writeln!(
            out,
            "{} · seed {} · {} simulated{} · {} callers · service level = answered within {}",
            self.scenario,
            self.seed,
            secs(self.simulated_s),
            if self.warmup_s > 0.0 { format!(" after {} warm-up", secs(self.warmup_s)) } else { String::new() },
            count(offered),
            secs(self.answer_within_s),
        );
        out.push_str(&self.headline());
        if !self.flows.is_empty() {
            let within = secs(self.answer_within_s);
            let mut t = Table::new(&[
                "flow".to_owned(),
                "callers".into(),
                "at once".into(),
                "waited".into(),
                "answered".into(),
                "hung up".into(),
                "overflow".into(),
                "P(wait)".into(),
                "ASA".into(),
                "p95 wait".into(),
                format!("SL {within}"),
            ]);
            for f in &self.flows {
                t.row(vec![
                    f.flow.clone(),
                    count(f.offered),
                    count(f.granted_at_once),
                    count(f.queued),
                    count(f.answered),
                    count(f.abandoned),
                    overflow_text(f),
                    pct(f.p_wait),
                    secs(f.asa_s),
                    secs(f.p95_wait_s),
                    pct(f.service_level),
                ]);
            }
            out.push_str("\nFlows\n");
            out.push_str(&t.render(2));
            for f in self.flows.iter().filter(|f| f.callbacks_booked + f.callbacks_declined > 0) {
                let _ = writeln!(
                    out,
                    "  {}: {} callbacks booked, {} declined; {} connected, {} never connected",
                    f.flow,
                    count(f.callbacks_booked),
                    count(f.callbacks_declined),
                    count(f.callbacks_connected),
                    count(f.callbacks_lost)
                );
            }
        }
        if let Some(c) = &self.callbacks {
            let _ = writeln!(out, "\nCallbacks (dialed through {}; connect rates, not service levels)", c.flow);
            let _ = writeln!(
                out,
                "  {} booked · {} attempts · {} connected ({} of attempts) · {} busy · {} voicemail · {} not \
                 answered",
                count(c.booked),
                count(c.attempts),
                count(c.connected),
                pct(c.connect_rate),
                count(c.busy),
                count(c.voicemail),
                count(c.no_answer)
            );
            let _ = writeln!(
                out,
                "  {} never connected (callers lost) · {} still pending at the end · {} from booking to answer on \
                 average",
                count(c.lost),
                count(c.pending),
                secs(c.mean_time_to_connect_s)
            );
        }
        let mut t = Table::new(&["pool", "limit", "mean in use", "utilization", "peak"]);
        for p in &self.pools {
            t.row(vec![
                p.pool.clone(),
                count(u64::from(p.limit)),
                num(p.mean_used, 1),
                pct(p.utilization),
                format!("{} ({})", count(p.peak_used), pct(p.peak_utilization)),
            ]);
        }
        out.push_str("\nPools\n");
        out.push_str(&t.render(2));
        if !self.campaigns.is_empty() {
            let mut t = Table::new(&[
                "campaign",
                "leads",
                "attempts",
                "answered",
                "unreached",
                "left",
                "attempts/h",
                "finished",
            ]);
            for c in &self.campaigns {
                t.row(vec![
                    c.campaign.clone(),
                    count(c.leads),
                    count(c.attempts),
                    count(c.connected),
                    count(c.unreached),
                    count(c.remaining),
                    num(c.attempts_per_hour, 1),
                    c.finished_at_s.map_or_else(|| "not yet".to_owned(), clock),
                ]);
            }
            out.push_str("\nCampaigns\n");
            out.push_str(&t.render(2));
        }
        if !self.schedules.is_empty() {
            out.push_str("\nSchedules\n");
            for c in &self.schedules {
                let active = if c.active.is_empty() { "none (as configured)".to_owned() } else { c.active.join(", ") };
                let _ = writeln!(out, "  from {} ({} of the run): {active}", c.at, clock(c.at_s));
                for why in &c.refused {
                    let _ = writeln!(out, "    not applied: {why}");
                }
            }
        }
        if let Some(ops) = &self.ops {
            ops.text(&mut out);
        }
        if let Some(c) = &self.cost {
            let m = |v: f64| money(&c.currency, v);
            out.push_str("\nCost\n");
            let _ = writeln!(
                out,
                "  {} call minutes {} · {} waiting minutes {} · {} lines {} for this {} · total {}",
                num(c.minutes, 0),
                m(c.minutes_cost),
                num(c.waiting_minutes, 0),
                m(c.waiting_cost),
                count(u64::from(c.lines)),
                m(c.lines_cost),
                secs(self.simulated_s),
                m(c.total),
            );
            let _ = writeln!(
                out,
                "  {} per answered call · about {} a month at this rate",
                m(c.per_answered_call),
                m(c.per_month)
            );
        }
        out
    }
}

/// Several reports side by side: one column per scenario, one row per measure.
pub fn compare_text(reports: &[Report]) -> String {
    let mut out = String::new();
    let names: Vec<String> = reports.iter().map(|r| r.scenario.clone()).collect();
    let seeds: Vec<u64> = reports.iter().map(|r| r.seed).collect();
    let same_seed = seeds.windows(2).all(|w| w[0] == w[1]);
    let _ = writeln!(
        out,
        "{} scenarios side by side{}",
        reports.len(),
        if same_seed {
            format!(" · seed {} (the same callers in each)", seeds.first().copied().unwrap_or(0))
        } else {
            " · different seeds".to_owned()
        }
    );
    let header = |first: &str| {
        let mut h = vec![first.to_owned()];
        h.extend(names.iter().cloned());
        h
    };
    let mut flows: Vec<String> = Vec::new();
    for r in reports {
        for f in &r.flows {
            if !flows.contains(&f.flow) {
                flows.push(f.flow.clone());
            }
        }
    }
    for flow in &flows {
        let get = |r: &Report| r.flows.iter().find(|f| &f.flow == flow).cloned();
        let mut t = Table::new(&header(&format!("flow {flow}")));
        let rows: [(&str, FlowCell); 12] = [
            ("callers", |f, _| count(f.offered)),
            ("lost", |f, _| format!("{} ({})", count(f.lost), pct2(f.lost as f64 / f.offered.max(1) as f64))),
            ("people lost", |f, _| {
                format!(
                    "{} of {} ({})",
                    count(f.people_lost),
                    count(f.people),
                    pct2(f.people_lost as f64 / f.people.max(1) as f64)
                )
            }),
            ("answered at once", |f, _| pct(f.granted_at_once as f64 / f.offered.max(1) as f64)),
            ("P(wait)", |f, _| pct(f.p_wait)),
            ("ASA (answered)", |f, _| secs(f.asa_s)),
            ("mean wait (all)", |f, _| secs(f.mean_wait_s)),
            ("p95 wait", |f, _| secs(f.p95_wait_s)),
            ("service level", |f, r| format!("{} in {}", pct(f.service_level), secs(r.answer_within_s))),
            ("hung up", |f, _| pct2(f.abandon_rate)),
            ("overflowed", |f, _| pct2(f.overflow_rate)),
            ("overflow actions", |f, _| overflow_text(f)),
        ];
        for (label, cell) in rows {
            let mut row = vec![format!("  {label}")];
            row.extend(reports.iter().map(|r| get(r).map_or_else(|| "-".to_owned(), |f| cell(&f, r))));
            t.row(row);
        }
        out.push('\n');
        out.push_str(&t.render(0));
    }
    let mut pools: Vec<String> = Vec::new();
    for r in reports {
        for p in &r.pools {
            if !pools.contains(&p.pool) {
                pools.push(p.pool.clone());
            }
        }
    }
    for pool in &pools {
        let mut t = Table::new(&header(&format!("pool {pool}")));
        let get = |r: &Report| r.pools.iter().find(|p| &p.pool == pool).cloned();
        let rows: [(&str, Cell<PoolReport>); 3] = [
            ("limit", |p| count(u64::from(p.limit))),
            ("utilization", |p| pct(p.utilization)),
            ("peak in use", |p| count(p.peak_used)),
        ];
        for (label, cell) in rows {
            let mut row = vec![format!("  {label}")];
            row.extend(reports.iter().map(|r| get(r).map_or_else(|| "-".to_owned(), |p| cell(&p))));
            t.row(row);
        }
        out.push('\n');
        out.push_str(&t.render(0));
    }
    let mut campaigns: Vec<String> = Vec::new();
    for r in reports {
        for c in &r.campaigns {
            if !campaigns.contains(&c.campaign) {
                campaigns.push(c.campaign.clone());
            }
        }
    }
    for campaign in &campaigns {
        let mut t = Table::new(&header(&format!("campaign {campaign}")));
        let get = |r: &Report| r.campaigns.iter().find(|c| &c.campaign == campaign).cloned();
        let rows: [(&str, Cell<CampaignReport>); 4] = [
            ("answered", |c| count(c.connected)),
            ("attempts/h", |c| num(c.attempts_per_hour, 1)),
            ("leads left", |c| count(c.remaining)),
            ("finished", |c| c.finished_at_s.map_or_else(|| "not yet".to_owned(), clock)),
        ];
        for (label, cell) in rows {
            let mut row = vec![format!("  {label}")];
            row.extend(reports.iter().map(|r| get(r).map_or_else(|| "-".to_owned(), |c| cell(&c))));
            t.row(row);
        }
        out.push('\n');
        out.push_str(&t.render(0));
    }
    if reports.iter().any(|r| r.cost.is_some()) {
        let mut t = Table::new(&header("cost"));
        let rows: [(&str, Cell<CostReport>); 3] = [
            ("total", |c| money(&c.currency, c.total)),
            ("per answered call", |c| money(&c.currency, c.per_answered_call)),
            ("a month at this rate", |c| money(&c.currency, c.per_month)),
        ];
        for (label, cell) in rows {
            let mut row = vec![format!("  {label}")];
            row.extend(reports.iter().map(|r| r.cost.as_ref().map_or_else(|| "-".to_owned(), cell)));
            t.row(row);
        }
        out.push('\n');
        out.push_str(&t.render(0));
    }
    out
}

impl OpsReport {
    fn text(&self, out: &mut String) {
        out.push_str("\nOperating policies\n");
        for a in &self.adaptive {
            let _ = writeln!(
                out,
                "  pool `{}` adaptive ({}, {}-{}): cap {} at the end, lowest {}, {} changes, {} samples, {} refusals",
                a.pool, a.algorithm, a.min, a.max, a.final_cap, a.lowest_cap, a.cap_changes, a.samples, a.refusals
            );
        }
        for b in &self.breakers {
            let _ = writeln!(
                out,
                "  breaker `{}`: {} calls, {} failed, opened from closed {} times, {} callers sent to the fallback",
                b.name, b.calls, b.failed, b.opened, b.fallbacks
            );
        }
        for a in &self.alerts {
            let _ = writeln!(out, "  alert `{}`: fired {} times, resolved {}", a.name, a.fired, a.resolved);
        }
        // Breakers and alerts, in order; the adaptive caps' moves are summed up above (every
        // one is in --json).
        let lines: Vec<&OpsLine> = self.log.iter().filter(|l| !l.what.contains(" adaptive cap ")).collect();
        for l in lines.iter().take(40) {
            let _ = writeln!(out, "    {} {}", l.at, l.what);
        }
        if lines.len() > 40 {
            let _ = writeln!(out, "    … {} more in --json", lines.len() - 40);
        }
    }
}
