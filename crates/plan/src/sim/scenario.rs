// Long file: the scenario file format and its validation, field by field.
//! Scenario files: a callgate config plus the traffic to run through it.
//!
//! A scenario is one TOML file. Everything but three sections is a callgate config
//! (`[[classes]]`, `[[pools]]`, `[[flows]]`, …), read by `callgate-config` exactly as
//! `callgate serve` reads it (the same checks, the same messages). Three sections describe
//! the traffic and are read here (the simulated campaigns live under `[sim]`, since a
//! config's own top-level `[[campaigns]]` configure the real dialer):
//!
//! ```toml
//! [sim]
//! duration = "24h"          # or calls = 100000 (either, or both: whichever comes first)
//! seed = 42                 # same seed, same result (default 1)
//! answer_within = "20s"     # the service-level threshold (default 20s)
//! warmup = "1h"             # calls arriving before this are not counted (default 0s)
//! callback = { flow = "callbacks", after = "10m" }  # book callbacks on overflow (below)
//! start = "2026-03-02T00:00:00-05:00"  # the instant the run starts, for [[schedules]]
//!                           # (default 2024-01-01T00:00:00Z, a Monday)
//!
//! [[arrivals]]              # one Poisson stream of callers into a flow
//! flow = "support"
//! rate = "720/h"            # or hourly rates for a daily profile: [20, 15, …] (calls/h)
//! bursts = [{ at = "10h", for = "15m", rate = "600/h" }]   # extra arrivals
//! hold = { dist = "exp", mean = "4m" }            # exp | lognormal (mean, sd) | fixed (value)
//! patience = { dist = "exp", mean = "90s" }       # left out: callers wait until served
//! retrial = { share = 0.5, after = { dist = "exp", mean = "10m" }, max = 3 }
//!                           # callers who hear busy or hang up call again (below)
//!
//! [[sim.campaigns]]         # an outbound dialer paced by free capacity
//! campaign = "spring-promo" # a [[campaigns]] entry: its flow, cap, rate, priority, window
//!                           # (days, time zone), batches and retry table; or `flow = …`
//!                           # and those fields here (below)
//! leads = 2000
//! answer = 0.35             # also busy, voicemail, failed (default: the campaign's
//!                           # `simulate` rates); the rest ring out
//! talk = { dist = "lognormal", mean = "3m", sd = "2m" }
//! ring = { dist = "fixed", value = "25s" }        # an unanswered attempt (default 30s)
//! ```
//!
//! A `[[sim.campaigns]]` table with `flow` instead of `campaign` gives its own pacing:
//! `retry = { … }` (a `[[campaigns]]` retry table; or `retries = 2` and `retry_after =
//! "1h"`: one delay, no backoff), `calls_per_second` (or `cps`), `window = "09:00-17:00"`
//! (on the simulated clock), `max_concurrency` and `priority`. With `campaign`, those come
//! from the `[[campaigns]]` entry, read and checked by `callgate-config`, and giving them
//! again is an error. `campaign` may also be a `[[campaigns]]` table written in place
//! (`campaign = { name = "promo", flow = "outbound", window = { … }, … }`), read as the
//! config crate reads one and checked by `Config::campaign_problems`.
//!
//! `[pricing]` is `callgate_plan::cost::Pricing`.
//!
//! Callbacks are returned the way the real dialer returns them: a caller offered one
//! accepts with probability `accept` (default 1: the booking is automatic), and from
//! `after` on the callback is dialed through `flow` without waiting for a line (a refusal
//! puts it back until a line frees), at most `calls_per_second` (default 1, a campaign's
//! default) and `max_concurrency` at once, before any campaign lead. Each attempt is
//! answered (`answer`, default 0.6), busy (`busy`, 0.1), voicemail (`voicemail`, 0.1) or
//! not answered (the rest), as the built-in simulated provider draws them; an answered
//! one holds its line for the caller's call, the others for `ring` (default 30 s). After
//! a miss it is tried again after `retry`'s delay for the outcome (the `retry` table of
//! `[[campaigns]]`: busy 10m, no_answer 1h, voicemail 4h, backoff 2, max_attempts 3),
//! unless that passes `deadline` (default 24h after the booking). A caller who declined,
//! or whose callback never connected, is lost:
//!
//! ```toml
//! callback = { flow = "callbacks", after = "10m", accept = 0.8, answer = 0.5, deadline = "4h",
//!              retry = { no_answer = "30m", max_attempts = 4 } }
//! ```
//!
//! A `[[sim.campaigns]]` table that runs a `[[campaigns]]` entry is dialed by the real
//! dialer's code (see `sim::leads`), with `lead_mix = [{ share, timezone, region }, …]`
//! saying where its leads are; when that entry has `callbacks = true`, it returns the
//! callbacks (warm leads, its pacing and retry table; `[sim] callback` then gives only
//! `after`, `accept` and the outcomes). `[[sim.dependencies]]` and `[[sim.pools]]` model
//! what the config's breakers and adaptive caps see (see `scenario::ops`).
//!
//! Retrial: a caller who is refused (overflow `busy`, or none) calls again with
//! probability `busy` (default `share`), one who hangs up while waiting with probability
//! `hung_up` (default `share`), after a delay drawn from `after`, at most `max` times
//! (default 3) — the same person, wanting the same call, through the same flow. Reports
//! count calls (every try) and people (the first try) apart: a person is lost when their
//! last call is.
//!
//! The config's `[[schedules]]` apply during the run as they would in the server: the
//! simulated clock starts at `[sim] start`, and every minute the run asks
//! `Config::active_schedules` which are active and `Config::scheduled` what the pools and
//! flows become (a simulated campaign is changed by its name, as `[[campaigns]]` are).
//!
//! The config sections go to `Config::from_toml_str` with the traffic sections' lines
//! blanked (so the line numbers in its errors stay right); the traffic sections are read
//! with their spans, so every problem names the file, the line and the field.

mod ops;

pub use ops::{DependencyModel, OpsModel, Outage, PoolModel};

use super::dist::{Burst, Dist, RateProfile};
use super::line_at;
use crate::campaign::parse_window;
use crate::cost::Pricing;
use crate::PlanError;
use callgate_config::{Config, OverflowAction, RetryConfig};
use callgate_core::duration::parse_duration;
use callgate_core::{Ledger, LedgerSpec};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The longest simulated stretch accepted.
const MAX_DURATION_MS: u64 = 366 * 86_400_000;

/// The most calls one run may simulate.
pub const MAX_CALLS: u64 = 1_000_000_000;

/// 2024-01-01T00:00:00Z, a Monday: where a run starts when `[sim] start` does not say.
const DEFAULT_START_MS: u64 = 1_704_067_200_000;

/// The sections this module reads (everything else is the config's).
/// (`[tune]` is `callgate tune`'s: a run ignores it.)
const TRAFFIC_SECTIONS: [&str; 4] = ["sim", "arrivals", "pricing", "tune"];
/// The sections that make a file a scenario: `[pricing]` alone does not (a callgate.toml
/// may price its lines for the forecast).
const SCENARIO_SECTIONS: [&str; 3] = ["sim", "arrivals", "tune"];

/// A scenario, checked and ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// A short name: the file's stem, or `scenario`.
    pub name: String,
    /// The callgate config it contains.
    pub config: Config,
    /// The ledger spec of that config.
    pub spec: LedgerSpec,
    /// `[sim]`.
    pub sim: SimSettings,
    /// `[[arrivals]]`.
    pub arrivals: Vec<ArrivalSource>,
    /// `[[sim.campaigns]]`.
    pub campaigns: Vec<CampaignSource>,
    /// `[pricing]`, if present.
    pub pricing: Option<Pricing>,
    /// `[[sim.dependencies]]` and `[[sim.pools]]`: what the breakers, adaptive caps and
    /// alerts of the config see during the run.
    pub ops: OpsModel,
}

/// `[sim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSettings {
    /// Arrivals stop after this long (ms).
    pub duration_ms: Option<u64>,
    /// Arrivals stop after this many callers (all arrival streams together).
    pub calls: Option<u64>,
    /// The seed of every random stream.
    pub seed: u64,
    /// The service level counts callers answered within this (ms).
    pub answer_within_ms: u64,
    /// Callers arriving before this are simulated but not counted (ms).
    pub warmup_ms: u64,
    /// What an overflow to `callback` does, if modelled.
    pub callback: Option<CallbackPolicy>,
    /// The instant the run starts (Unix ms), which `[[schedules]]` are read against.
    pub start_ms: u64,
}

/// Callbacks on overflow: a caller whose flow overflows to `callback` and accepts is
/// called back through `flow` from `after_ms` on, as the real dialer returns callbacks
/// (see the module docs), for a call as long as the one they wanted.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackPolicy {
    /// The flow callbacks go through (index in the config's flows).
    pub flow: usize,
    /// Delay before the callback is due (ms).
    pub after_ms: u64,
    /// Share of callers offered a callback who accept it.
    pub accept: f64,
    /// Share of attempts answered by the caller.
    pub answer: f64,
    /// Share of attempts that find the line busy.
    pub busy: f64,
    /// Share of attempts that reach voicemail (the rest are not answered).
    pub voicemail: f64,
    /// How long an attempt that is not answered holds its line.
    pub ring: Dist,
    /// Retries per outcome, backoff and `max_attempts`, as a campaign's.
    pub retry: RetryConfig,
    /// A callback not connected this long after its booking is given up (ms).
    pub deadline_ms: u64,
    /// Attempts per second at most.
    pub cps: f64,
    /// The most attempts live at once (`None`: only the pools limit them).
    pub max_concurrency: Option<u32>,
    /// The `[[sim.campaigns]]` dialer (index) whose `[[campaigns]]` entry has
    /// `callbacks = true`: it returns the callbacks, as the real dialer does (warm leads
    /// of its scheduler, before every cold lead, in its `callback_class`, under its pacing,
    /// calendar and retry table; then `flow`, `cps`, `max_concurrency`, `retry` and
    /// `deadline` here are unused). `None`: the callbacks are dialed on their own.
    pub campaign: Option<usize>,
    /// The pacing fields the file gave, with their spans (to refuse them when a campaign
    /// returns the callbacks).
    given: Vec<(&'static str, Range<usize>)>,
    span: Range<usize>,
}

/// One `[[arrivals]]` stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrivalSource {
    /// The flow its calls go through (index in the config's flows).
    pub flow: usize,
    /// The arrival rate over time.
    pub rate: RateProfile,
    /// Call length once answered.
    pub hold: Dist,
    /// How long a caller waits before hanging up; `None`: until answered or overflowed.
    pub patience: Option<Dist>,
    /// Callers who are refused or hang up and call again; `None`: nobody does.
    pub retrial: Option<Retrial>,
}

/// Callers who call again (`retrial` of an `[[arrivals]]` stream).
#[derive(Clone, Debug, PartialEq)]
pub struct Retrial {
    /// Share of refused callers (overflow `busy`, or none) who call again.
    pub busy: f64,
    /// Share of callers who hung up while waiting and call again.
    pub hung_up: f64,
    /// The delay before they call again.
    pub after: Dist,
    /// The most calls again per person (after the first call).
    pub max: u32,
}

/// One `[[sim.campaigns]]` dialer: the pacing of a `[[campaigns]]` entry (its own, or
/// the one it names with `campaign`) and the traffic assumptions (leads, outcomes, call
/// lengths).
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignSource {
    /// Its name in reports and in `[[schedules]]` (default: the `[[campaigns]]` entry's
    /// name, else its flow's).
    pub name: String,
    /// The flow its calls go through (index in the config's flows).
    pub flow: usize,
    /// Leads to reach.
    pub leads: u64,
    /// Share of attempts answered.
    pub answer: f64,
    /// Share of attempts that find the line busy.
    pub busy: f64,
    /// Share of attempts that reach voicemail.
    pub voicemail: f64,
    /// Share of attempts that fail (carrier or platform error); the rest ring out.
    pub failed: f64,
    /// Length of an answered call.
    pub talk: Dist,
    /// How long an unanswered attempt holds its line.
    pub ring: Dist,
    /// Delays per outcome, backoff and `max_attempts`: a `[[campaigns]]` `retry` table
    /// (the legacy `retries`/`retry_after` become one with the same delay for every
    /// outcome and no backoff).
    pub retry: RetryConfig,
    /// Attempts per second allowed (`None`: no limit).
    pub cps: Option<f64>,
    /// When calls may start (`None`: always).
    pub window: Option<CallingWindow>,
    /// The most attempts live at once (`None`: only the pools limit them).
    pub max_concurrency: Option<u32>,
    /// Among dialers that could take a freed line at the same moment, the higher
    /// priority goes first (as `[[campaigns]]` `priority`).
    pub priority: i32,
    /// The `[[campaigns]]` entry it runs, if any (given by name or written in place): its
    /// leads are then scheduled by the real dialer's code (`callgate_dialer`: the
    /// scheduler, the calendar in each lead's time zone, the retry rules, the weekly cap
    /// and the `[[calling_rules]]`).
    pub real: Option<Box<callgate_config::CampaignConfig>>,
    /// Where the leads are (`lead_mix`): shares of time zones and regions. Empty: every
    /// lead in the campaign's `default_timezone`, in no region.
    pub lead_mix: Vec<LeadGroup>,
}

/// A share of a campaign's leads in one time zone (and region, for `[[calling_rules]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct LeadGroup {
    /// Share of the leads, in (0, 1]; the shares add up to 1.
    pub share: f64,
    /// The leads' time zone.
    pub timezone: chrono_tz::Tz,
    /// Their region (`US-FL`, `GB`), as the dialer derives it from the number.
    pub region: Option<String>,
}

/// When a simulated campaign may place calls.
#[derive(Clone, Debug, PartialEq)]
pub enum CallingWindow {
    /// `window = "09:00-17:00"`: minutes of the simulated day `[start, end)`, counted from
    /// the start of the run.
    Simulated(u32, u32),
    /// A `[[campaigns]]` entry's window (days, start, end) in its `default_timezone`, on
    /// the wall clock (`[sim] start` plus the run's time), within its batches if it has
    /// any (Unix ms, sorted). Read by `ScheduleConfig::active_at`, the schedules' own
    /// reading of days and times.
    Local {
        /// The window as a schedule (days, start, end, time zone; no changes).
        window: Box<callgate_config::ScheduleConfig>,
        /// `(start, end)` Unix ms of the batches; empty: no restriction.
        batches: Vec<(u64, u64)>,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, PlanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PlanError::io(format!("{}: cannot read the file: {e}", path.display())))?;
        Scenario::from_toml_str(&text, Some(path))
    }

    /// Reads and checks a scenario from text; `path` only names the file in errors and
    /// gives the scenario its name.
    pub fn from_toml_str(text: &str, path: Option<&Path>) -> Result<Scenario, PlanError> {
        let file = path.map_or_else(|| "<scenario>".to_owned(), |p| p.display().to_string());
        let name = path
            .and_then(|p| p.file_stem())
            .map_or_else(|| "scenario".to_owned(), |s| s.to_string_lossy().into_owned());
        let syntax = |message: String, span: Option<Range<usize>>| {
            let line = span.map(|s| format!(":{}", line_at(text, s.start))).unwrap_or_default();
            PlanError::scenario(format!("{file}{line}: {message}"))
        };
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| syntax(one_line(e.message()), e.span()))?;
        let traffic: TrafficToml = toml::from_str(text).map_err(|e| syntax(one_line(e.message()), e.span()))?;
        // `[[schedules]]` may change the simulated campaigns, by name.
        let sim_campaigns: Vec<String> = traffic.sim.as_ref().map_or_else(Vec::new, |s| {
            s.campaigns
                .iter()
                .filter_map(|c| {
                    let c = c.get_ref();
                    c.name
                        .clone()
                        .or_else(|| c.campaign.as_ref().and_then(|v| campaign_name(v.get_ref())))
                        .or_else(|| c.flow.as_ref().map(|f| f.get_ref().clone()))
                })
                .collect()
        });
        let names: Vec<&str> = sim_campaigns.iter().map(String::as_str).collect();
        let config = Config::from_toml_str_with(&config_text(text, &doc), path, &names).map_err(|errors| {
            PlanError::scenario(errors.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })?;
        let mut reader = Reader { text, file: &file, config: &config, problems: Vec::new() };
        let sim = reader.sim(traffic.sim.as_ref());
        let arrivals: Vec<ArrivalSource> =
            traffic.arrivals.iter().enumerate().filter_map(|(i, a)| reader.arrival(i, a)).collect();
        let campaign_tables = traffic.sim.as_ref().map_or(&[][..], |s| s.campaigns.as_slice());
        let campaigns: Vec<CampaignSource> =
            campaign_tables.iter().enumerate().filter_map(|(i, c)| reader.campaign(i, c)).collect();
        let mut sim = sim;
        if let Some(cb) = sim.as_mut().and_then(|s| s.callback.as_mut()) {
            reader.callback_campaign(cb, &campaigns);
        }
        let pricing = traffic.pricing.as_ref().map(|p| reader.pricing(p));
        let ops = match &traffic.sim {
            Some(s) => reader.ops(&s.dependencies, &s.pools),
            None => OpsModel::default(),
        };
        if traffic.arrivals.is_empty() && campaign_tables.is_empty() {
            reader.problems.push(format!(
                "{file}: a scenario needs traffic: at least one [[arrivals]] or [[sim.campaigns]] section"
            ));
        }
        if let Some(sim) = &sim {
            if sim.duration_ms.is_none() && sim.calls.is_none() && !traffic.arrivals.is_empty() {
                let at = doc
                    .as_table()
                    .get("sim")
                    .and_then(toml_edit::Item::span)
                    .map(|s| format!(":{}", line_at(text, s.start)));
                reader.problems.push(format!(
                    "{file}{}: sim: say how long to run: `duration = \"24h\"` or `calls = 100000`",
                    at.unwrap_or_default()
                ));
            }
        }
        // A callback the run cannot return would count its caller as neither served nor
        // lost: say how callbacks are returned.
        if sim.as_ref().is_some_and(|s| s.callback.is_none()) {
            let starts_with_callback = |chain: &[callgate_config::Overflow]| {
                chain
                    .iter()
                    .find(|o| o.action != OverflowAction::Spill)
                    .is_some_and(|o| o.action == OverflowAction::Callback)
            };
            for a in &arrivals {
                let flow = &config.flows[a.flow];
                let scheduled = config
                    .schedules
                    .iter()
                    .any(|s| s.flows.get(&flow.name).is_some_and(|c| starts_with_callback(&c.overflow)));
                if starts_with_callback(&flow.overflow) || scheduled {
                    reader.problems.push(format!(
                        "{file}: flow `{}` overflows to `callback`: say how callbacks are returned with [sim] \
                         callback = {{ flow = \"…\", after = \"10m\" }}",
                        flow.name
                    ));
                    break;
                }
            }
        }
        if !reader.problems.is_empty() {
            return Err(PlanError::scenario(reader.problems.join("\n")));
        }
        let spec = config.ledger_spec();
        Ledger::new(&spec).map_err(|e| PlanError::scenario(format!("{file}: {e}")))?;
        Ok(Scenario {
            name,
            spec,
            sim: sim.unwrap_or_else(SimSettings::defaults),
            arrivals,
            campaigns,
            pricing,
            ops,
            config,
        })
    }

    /// Whether `text` is a scenario rather than a plain configuration: it has one of the
    /// traffic sections (`[sim]`, `[[arrivals]]`, `[tune]`; `[pricing]` alone may be a
    /// configuration's). Text that is not TOML is not.
    pub fn is_scenario_text(text: &str) -> bool {
        text.parse::<toml::Table>().is_ok_and(|t| SCENARIO_SECTIONS.iter().any(|s| t.contains_key(*s)))
    }

    /// What a valid scenario holds, for `callgate config check` and `simulate --check`:
    /// `ok: scenario, 2 flows, 1 arrival stream, 1 campaign, 2 schedules`.
    pub fn summary(&self) -> String {
        fn count(n: usize, one: &str, many: &str) -> String {
            format!("{n} {}", if n == 1 { one } else { many })
        }
        let mut out = format!(
            "ok: scenario, {}, {}, {}",
            count(self.config.pools.len(), "pool", "pools"),
            count(self.config.flows.len(), "flow", "flows"),
            count(self.arrivals.len(), "arrival stream", "arrival streams")
        );
        if !self.campaigns.is_empty() {
            out.push_str(&format!(", {}", count(self.campaigns.len(), "campaign", "campaigns")));
        }
        if !self.config.schedules.is_empty() {
            out.push_str(&format!(", {}", count(self.config.schedules.len(), "schedule", "schedules")));
        }
        if self.sim.callback.is_some() {
            out.push_str(", callbacks returned");
        }
        out
    }

    /// The name of flow `i`.
    pub fn flow_name(&self, i: usize) -> &str {
        self.config.flows.get(i).map_or("?", |f| f.name.as_str())
    }

    /// The first overflow action of flow `i` other than a spill (`None`: the call is
    /// simply refused).
    pub fn overflow_of(&self, i: usize) -> Option<OverflowAction> {
        let chain = &self.config.flows.get(i)?.overflow;
        chain.iter().find(|o| o.action != OverflowAction::Spill).map(|o| o.action)
    }

    /// The offered load of the arrival streams, in calls, over the run's arrival window
    /// (the `calls` limit when set, else the expected count over `duration`).
    pub fn expected_calls(&self) -> f64 {
        let by_time =
            self.sim.duration_ms.map(|d| self.arrivals.iter().map(|a| a.rate.expected_arrivals(d as f64)).sum::<f64>());
        match (self.sim.calls, by_time) {
            (Some(c), Some(t)) => t.min(c as f64),
            (Some(c), None) => c as f64,
            (None, Some(t)) => t,
            (None, None) => 0.0,
        }
    }
}

impl SimSettings {
    fn defaults() -> SimSettings {
        SimSettings {
            duration_ms: None,
            calls: None,
            seed: 1,
            answer_within_ms: 20_000,
            warmup_ms: 0,
            callback: None,
            start_ms: DEFAULT_START_MS,
        }
    }
}

/// A parser message on one line (`"invalid array\nexpected `]`"` → `"invalid array; …"`).
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The text with every line of the traffic sections made empty, so that the config
/// reader sees only its own sections and its line numbers stay those of the file.
fn config_text(text: &str, doc: &toml_edit::ImDocument<&str>) -> String {
    fn mark(spans: &mut Vec<Range<usize>>, span: Option<Range<usize>>) {
        if let Some(s) = span {
            spans.push(s);
        }
    }
    fn table(spans: &mut Vec<Range<usize>>, t: &toml_edit::Table) {
        mark(spans, t.span());
        for (k, v) in t.iter() {
            if let Some(key) = t.key(k) {
                mark(spans, key.span());
            }
            item(spans, v);
        }
    }
    fn item(spans: &mut Vec<Range<usize>>, v: &toml_edit::Item) {
        match v {
            toml_edit::Item::Table(t) => table(spans, t),
            toml_edit::Item::ArrayOfTables(a) => a.iter().for_each(|t| table(spans, t)),
            toml_edit::Item::Value(val) => mark(spans, val.span()),
            toml_edit::Item::None => {}
        }
    }
    let mut spans = Vec::new();
    let root = doc.as_table();
    for name in TRAFFIC_SECTIONS {
        if let Some(v) = root.get(name) {
            if let Some(key) = root.key(name) {
                mark(&mut spans, key.span());
            }
            item(&mut spans, v);
        }
    }
    let mut blank = vec![false; line_at(text, text.len()) + 1];
    for s in spans {
        let (first, last) = (line_at(text, s.start), line_at(text, s.end.saturating_sub(1).max(s.start)));
        blank[first..=last].iter_mut().for_each(|b| *b = true);
    }
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, line)| {
            if blank[i + 1] {
                if line.ends_with('\n') {
                    "\n"
                } else {
                    ""
                }
            } else {
                line
            }
        })
        .collect()
}

// ----- the traffic sections as written -----------------------------------------------

#[derive(Deserialize)]
struct TrafficToml {
    // Not `Spanned`: `[[sim.campaigns]]` alone makes `sim` an implicit table, which has
    // no span to give.
    #[serde(default)]
    sim: Option<SimToml>,
    #[serde(default)]
    arrivals: Vec<Spanned<ArrivalToml>>,
    #[serde(default)]
    pricing: Option<Spanned<Pricing>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimToml {
    duration: Option<Spanned<String>>,
    calls: Option<Spanned<i64>>,
    seed: Option<Spanned<i64>>,
    answer_within: Option<Spanned<String>>,
    warmup: Option<Spanned<String>>,
    callback: Option<Spanned<CallbackToml>>,
    start: Option<Spanned<String>>,
    #[serde(default)]
    campaigns: Vec<Spanned<CampaignToml>>,
    #[serde(default)]
    dependencies: Vec<Spanned<ops::DependencyToml>>,
    #[serde(default)]
    pools: Vec<Spanned<ops::PoolToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackToml {
    flow: Option<Spanned<String>>,
    after: Spanned<String>,
    accept: Option<Spanned<f64>>,
    answer: Option<Spanned<f64>>,
    busy: Option<Spanned<f64>>,
    voicemail: Option<Spanned<f64>>,
    ring: Option<Spanned<DistToml>>,
    retry: Option<Spanned<RetryConfig>>,
    deadline: Option<Spanned<String>>,
    calls_per_second: Option<Spanned<f64>>,
    max_concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrivalToml {
    flow: Spanned<String>,
    rate: Spanned<toml::Value>,
    #[serde(default)]
    bursts: Vec<Spanned<BurstToml>>,
    hold: Spanned<DistToml>,
    patience: Option<Spanned<DistToml>>,
    retrial: Option<Spanned<RetrialToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrialToml {
    share: Option<Spanned<f64>>,
    busy: Option<Spanned<f64>>,
    hung_up: Option<Spanned<f64>>,
    after: Spanned<DistToml>,
    max: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BurstToml {
    at: Spanned<String>,
    #[serde(rename = "for")]
    lasting: Spanned<String>,
    rate: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistToml {
    dist: Spanned<String>,
    mean: Option<Spanned<String>>,
    sd: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignToml {
    name: Option<String>,
    /// A `[[campaigns]]` entry whose pacing this dialer uses (its name), or a table that
    /// is one (read as `[[campaigns]]` are).
    campaign: Option<Spanned<toml::Value>>,
    flow: Option<Spanned<String>>,
    leads: Spanned<i64>,
    connect_rate: Option<Spanned<f64>>,
    answer: Option<Spanned<f64>>,
    busy: Option<Spanned<f64>>,
    voicemail: Option<Spanned<f64>>,
    failed: Option<Spanned<f64>>,
    talk: Spanned<DistToml>,
    ring: Option<Spanned<DistToml>>,
    #[serde(default)]
    retries: Option<Spanned<i64>>,
    retry_after: Option<Spanned<String>>,
    retry: Option<Spanned<RetryConfig>>,
    cps: Option<Spanned<f64>>,
    calls_per_second: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    lead_mix: Option<Spanned<Vec<LeadGroupToml>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadGroupToml {
    share: f64,
    timezone: String,
    region: Option<String>,
}

/// Reads the traffic sections, collecting every problem with its line and field.
struct Reader<'a> {
    text: &'a str,
    file: &'a str,
    config: &'a Config,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn problem(&mut self, span: Range<usize>, field: &str, message: impl std::fmt::Display) {
        let line = line_at(self.text, span.start);
        self.problems.push(format!("{}:{line}: {field}: {message}", self.file));
    }

    fn duration(&mut self, v: &Spanned<String>, field: &str) -> Option<u64> {
        match parse_duration(v.get_ref()) {
            Ok(d) if d.as_millis() <= u128::from(MAX_DURATION_MS) => Some(d.as_millis() as u64),
            Ok(_) => {
                self.problem(v.span(), field, "at most 366 days");
                None
            }
            Err(e) => {
                self.problem(v.span(), field, e);
                None
            }
        }
    }

    fn flow(&mut self, v: &Spanned<String>, field: &str) -> Option<usize> {
        let found = self.config.flows.iter().position(|f| &f.name == v.get_ref());
        if found.is_none() {
            let known: Vec<&str> = self.config.flows.iter().map(|f| f.name.as_str()).collect();
            self.problem(v.span(), field, format!("no flow is named `{}` (flows: {})", v.get_ref(), list(&known)));
        }
        found
    }

    fn sim(&mut self, sim: Option<&SimToml>) -> Option<SimSettings> {
        let mut out = SimSettings::defaults();
        let Some(sim) = sim else { return Some(out) };
        let before = self.problems.len();
        if let Some(d) = &sim.duration {
            out.duration_ms = self.duration(d, "sim.duration");
            if out.duration_ms == Some(0) {
                self.problem(d.span(), "sim.duration", "must be more than 0s");
            }
        }
        if let Some(c) = &sim.calls {
            let n = *c.get_ref();
            if n < 1 || n as u64 > MAX_CALLS {
                self.problem(c.span(), "sim.calls", format!("must be between 1 and {MAX_CALLS}"));
            } else {
                out.calls = Some(n as u64);
            }
        }
        if let Some(s) = &sim.seed {
            if *s.get_ref() < 0 {
                self.problem(s.span(), "sim.seed", "must be 0 or more");
            } else {
                out.seed = *s.get_ref() as u64;
            }
        }
        if let Some(a) = &sim.answer_within {
            out.answer_within_ms = self.duration(a, "sim.answer_within").unwrap_or(0);
        }
        if let Some(w) = &sim.warmup {
            out.warmup_ms = self.duration(w, "sim.warmup").unwrap_or(0);
            if let Some(d) = out.duration_ms {
                if out.warmup_ms >= d {
                    self.problem(w.span(), "sim.warmup", "must be shorter than sim.duration");
                }
            }
        }
        if let Some(start) = &sim.start {
            match callgate_config::parse_instant(start.get_ref()) {
                Ok(ms) => out.start_ms = ms,
                Err(e) => self.problem(start.span(), "sim.start", e),
            }
        }
        if let Some(cb) = &sim.callback {
            let span = cb.span();
            let cb = cb.get_ref();
            // Without `flow`, a campaign with `callbacks = true` returns them (checked
            // once the campaigns are read).
            let flow = match &cb.flow {
                Some(f) => self.flow(f, "sim.callback.flow"),
                None => Some(usize::MAX),
            };
            let after = self.duration(&cb.after, "sim.callback.after");
            let mut share = |v: &Option<Spanned<f64>>, key: &str, default: f64| match v {
                Some(x) if (0.0..=1.0).contains(x.get_ref()) => *x.get_ref(),
                Some(x) => {
                    self.problem(x.span(), &format!("sim.callback.{key}"), "must be between 0 and 1");
                    default
                }
                None => default,
            };
            let accept = share(&cb.accept, "accept", 1.0);
            let answer = share(&cb.answer, "answer", 0.6);
            let busy = share(&cb.busy, "busy", 0.1);
            let voicemail = share(&cb.voicemail, "voicemail", 0.1);
            if answer + busy + voicemail > 1.0 + 1e-9 {
                self.problem(span.clone(), "sim.callback", "answer + busy + voicemail must be at most 1");
            }
            let ring = match &cb.ring {
                Some(r) => self.dist(r, "sim.callback.ring"),
                None => Some(Dist::Fixed { ms: 30_000.0 }),
            };
            let retry = cb.retry.as_ref().map_or_else(RetryConfig::default, |r| {
                let retry = r.get_ref().clone();
                if !(retry.backoff.0.is_finite() && (1.0..=100.0).contains(&retry.backoff.0)) {
                    self.problem(r.span(), "sim.callback.retry.backoff", "backoff must be between 1 and 100");
                }
                if !(1..=100).contains(&retry.max_attempts) {
                    self.problem(r.span(), "sim.callback.retry.max_attempts", "must be between 1 and 100");
                }
                retry
            });
            let deadline_ms = match &cb.deadline {
                Some(d) => self.duration(d, "sim.callback.deadline").unwrap_or(0),
                None => 86_400_000,
            };
            if deadline_ms == 0 {
                if let Some(d) = &cb.deadline {
                    self.problem(d.span(), "sim.callback.deadline", "must be more than 0s");
                }
            }
            let cps = match &cb.calls_per_second {
                Some(c) if c.get_ref().is_finite() && *c.get_ref() > 0.0 && *c.get_ref() <= 1000.0 => *c.get_ref(),
                Some(c) => {
                    self.problem(c.span(), "sim.callback.calls_per_second", "must be above 0 and at most 1000");
                    1.0
                }
                None => 1.0,
            };
            let max_concurrency = match &cb.max_concurrency {
                Some(m) if (1..=1_000_000).contains(m.get_ref()) => Some(*m.get_ref() as u32),
                Some(m) => {
                    self.problem(m.span(), "sim.callback.max_concurrency", "must be between 1 and 1,000,000");
                    None
                }
                None => None,
            };
            if let (Some(flow), Some(after_ms), Some(ring)) = (flow, after, ring) {
                out.callback = Some(CallbackPolicy {
                    flow,
                    after_ms,
                    accept,
                    answer,
                    busy,
                    voicemail,
                    ring,
                    retry,
                    deadline_ms,
                    cps,
                    max_concurrency,
                    campaign: None,
                    given: [
                        ("flow", cb.flow.as_ref().map(Spanned::span)),
                        ("retry", cb.retry.as_ref().map(Spanned::span)),
                        ("deadline", cb.deadline.as_ref().map(Spanned::span)),
                        ("calls_per_second", cb.calls_per_second.as_ref().map(Spanned::span)),
                        ("max_concurrency", cb.max_concurrency.as_ref().map(Spanned::span)),
                    ]
                    .into_iter()
                    .filter_map(|(k, s)| Some((k, s?)))
                    .collect(),
                    span,
                });
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    fn rate_value(&mut self, text: &str, span: Range<usize>, field: &str) -> Option<f64> {
        match parse_rate(text) {
            Some(r) => Some(r),
            None => {
                self.problem(
                    span,
                    field,
                    format!("`{text}` is not a rate (write e.g. \"720/h\", \"12/m\", \"0.5/s\")"),
                );
                None
            }
        }
    }

    fn rate(&mut self, v: &Spanned<toml::Value>, field: &str) -> Option<Vec<f64>> {
        let hint = "a rate is \"720/h\" (also /s, /m, /d), or a list of hourly rates: [20, 15, …] \
                    calls per hour, repeating after the last hour";
        match v.get_ref() {
            toml::Value::String(s) => self.rate_value(s, v.span(), field).map(|r| vec![r]),
            toml::Value::Array(items) if !items.is_empty() && items.len() <= 24 * 7 => {
                let mut out = Vec::with_capacity(items.len());
                for (k, item) in items.iter().enumerate() {
                    let per_hour = match item {
                        toml::Value::Integer(n) => Some(*n as f64),
                        toml::Value::Float(x) => Some(*x),
                        toml::Value::String(s) => parse_rate(s).map(|r| r * 3_600_000.0),
                        _ => None,
                    };
                    match per_hour {
                        Some(h) if h.is_finite() && h >= 0.0 => out.push(h / 3_600_000.0),
                        _ => {
                            self.problem(v.span(), &format!("{field}[{k}]"), hint);
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.problem(v.span(), field, hint);
                None
            }
        }
    }

    fn dist(&mut self, v: &Spanned<DistToml>, field: &str) -> Option<Dist> {
        let d = v.get_ref();
        let kind = d.dist.get_ref().as_str();
        let need = |r: &mut Self, x: &Option<Spanned<String>>, key: &str| -> Option<f64> {
            match x {
                Some(s) => r.duration(s, &format!("{field}.{key}")).map(|ms| ms as f64),
                None => {
                    r.problem(v.span(), field, format!("a `{kind}` distribution needs `{key}`"));
                    None
                }
            }
        };
        let refuse = |r: &mut Self, x: &Option<Spanned<String>>, key: &str| {
            if let Some(s) = x {
                r.problem(s.span(), &format!("{field}.{key}"), format!("a `{kind}` distribution has no `{key}`"));
            }
        };
        match kind {
            "exp" | "exponential" => {
                refuse(self, &d.sd, "sd");
                refuse(self, &d.value, "value");
                let mean = need(self, &d.mean, "mean")?;
                if mean <= 0.0 {
                    self.problem(v.span(), &format!("{field}.mean"), "must be more than 0s");
                    return None;
                }
                Some(Dist::Exp { mean_ms: mean })
            }
            "lognormal" | "log-normal" => {
                refuse(self, &d.value, "value");
                let mean = need(self, &d.mean, "mean")?;
                let sd = need(self, &d.sd, "sd")?;
                if mean <= 0.0 {
                    self.problem(v.span(), &format!("{field}.mean"), "must be more than 0s");
                    return None;
                }
                Some(Dist::LogNormal { mean_ms: mean, sd_ms: sd })
            }
            "fixed" => {
                refuse(self, &d.sd, "sd");
                let value = match (&d.value, &d.mean) {
                    (Some(_), _) => need(self, &d.value, "value")?,
                    (None, Some(_)) => need(self, &d.mean, "mean")?,
                    (None, None) => need(self, &d.value, "value")?,
                };
                Some(Dist::Fixed { ms: value })
            }
            other => {
                self.problem(
                    d.dist.span(),
                    &format!("{field}.dist"),
                    format!("`{other}` is not a distribution (exp, lognormal or fixed)"),
                );
                None
            }
        }
    }

    fn arrival(&mut self, i: usize, a: &Spanned<ArrivalToml>) -> Option<ArrivalSource> {
        let at = format!("arrivals[{i}]");
        let a = a.get_ref();
        let flow = self.flow(&a.flow, &format!("{at}.flow"));
        let hourly = self.rate(&a.rate, &format!("{at}.rate"));
        let mut bursts = Vec::new();
        for (k, b) in a.bursts.iter().enumerate() {
            let field = format!("{at}.bursts[{k}]");
            let b = b.get_ref();
            let start = self.duration(&b.at, &format!("{field}.at"));
            let length = self.duration(&b.lasting, &format!("{field}.for"));
            let rate = self.rate_value(b.rate.get_ref(), b.rate.span(), &format!("{field}.rate"));
            if let (Some(s), Some(l), Some(r)) = (start, length, rate) {
                bursts.push(Burst { start_ms: s as f64, end_ms: (s + l) as f64, per_ms: r });
            }
        }
        let hold = self.dist(&a.hold, &format!("{at}.hold"));
        let patience = match &a.patience {
            Some(p) => Some(self.dist(p, &format!("{at}.patience"))?),
            None => None,
        };
        let retrial = match &a.retrial {
            Some(r) => Some(self.retrial(r, &format!("{at}.retrial"))?),
            None => None,
        };
        Some(ArrivalSource {
            flow: flow?,
            rate: RateProfile { hourly: hourly?, bursts },
            hold: hold?,
            patience,
            retrial,
        })
    }

    fn retrial(&mut self, r: &Spanned<RetrialToml>, field: &str) -> Option<Retrial> {
        let before = self.problems.len();
        let t = r.get_ref();
        let mut share = |v: &Option<Spanned<f64>>, key: &str, default: Option<f64>| match v {
            Some(x) if (0.0..=1.0).contains(x.get_ref()) => Some(*x.get_ref()),
            Some(x) => {
                self.problem(x.span(), &format!("{field}.{key}"), "must be between 0 and 1");
                None
            }
            None => default,
        };
        let all = share(&t.share, "share", None);
        let busy = share(&t.busy, "busy", all);
        let hung_up = share(&t.hung_up, "hung_up", all);
        if t.share.is_none() && (t.busy.is_none() || t.hung_up.is_none()) && self.problems.len() == before {
            self.problem(
                r.span(),
                field,
                "needs `share` (the share of refused and hung-up callers who call again), or both `busy` and `hung_up`",
            );
        }
        let after = self.dist(&t.after, &format!("{field}.after"));
        let max = match &t.max {
            Some(m) if (1..=20).contains(m.get_ref()) => *m.get_ref() as u32,
            Some(m) => {
                self.problem(m.span(), &format!("{field}.max"), "must be between 1 and 20");
                0
            }
            None => 3,
        };
        if self.problems.len() != before {
            return None;
        }
        Some(Retrial { busy: busy?, hung_up: hung_up?, after: after?, max })
    }

    fn campaign(&mut self, i: usize, c: &Spanned<CampaignToml>) -> Option<CampaignSource> {
        let at = format!("sim.campaigns[{i}]");
        let span = c.span();
        let c = c.get_ref();
        let before = self.problems.len();
        let config = self.config;
        let inline = match (&c.campaign, &c.flow) {
            (Some(v), None) if v.get_ref().is_table() => Some(self.inline_campaign(v, &at)?),
            _ => None,
        };
        let real = match (&c.campaign, &c.flow) {
            (Some(_), None) if inline.is_some() => inline.as_ref(),
            (Some(v), None) => {
                let Some(name) = v.get_ref().as_str() else {
                    self.problem(
                        v.span(),
                        &format!("{at}.campaign"),
                        "the name of a [[campaigns]] entry, or a table like one",
                    );
                    return None;
                };
                match config.campaign(name) {
                    Some(real) => Some(real),
                    None => {
                        let known: Vec<&str> = config.campaigns.iter().map(|c| c.name.as_str()).collect();
                        self.problem(
                            v.span(),
                            &format!("{at}.campaign"),
                            format!("no [[campaigns]] entry is named `{name}` (campaigns: {})", list(&known)),
                        );
                        return None;
                    }
                }
            }
            (None, Some(_)) => None,
            (Some(v), Some(_)) => {
                self.problem(
                    v.span(),
                    &format!("{at}.flow"),
                    format!(
                        "comes from the campaign `{}`: give `campaign` or `flow`, not both",
                        campaign_name(v.get_ref()).unwrap_or_default()
                    ),
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    span,
                    &at,
                    "say which calls to dial: `campaign = \"…\"` (a [[campaigns]] entry) or `flow = \"…\"`",
                );
                return None;
            }
        };
        if let Some(real) = real {
            // The pacing is the real campaign's: change it there, where the server reads it.
            let pacing: [(&str, Option<Range<usize>>); 8] = [
                ("retries", c.retries.as_ref().map(Spanned::span)),
                ("retry_after", c.retry_after.as_ref().map(Spanned::span)),
                ("retry", c.retry.as_ref().map(Spanned::span)),
                ("cps", c.cps.as_ref().map(Spanned::span)),
                ("calls_per_second", c.calls_per_second.as_ref().map(Spanned::span)),
                ("window", c.window.as_ref().map(Spanned::span)),
                ("max_concurrency", c.max_concurrency.as_ref().map(Spanned::span)),
                ("priority", c.priority.as_ref().map(Spanned::span)),
            ];
            for (key, s) in pacing {
                if let Some(s) = s {
                    self.problem(
                        s,
                        &format!("{at}.{key}"),
                        format!("comes from the campaign `{}`: change it there", real.name),
                    );
                }
            }
        }
        let flow = match (&c.flow, real) {
            (Some(f), _) => self.flow(f, &format!("{at}.flow")),
            (None, Some(real)) => self.config.flows.iter().position(|f| f.name == real.flow),
            (None, None) => None,
        };
        let leads = *c.leads.get_ref();
        if !(1..=100_000_000).contains(&leads) {
            self.problem(c.leads.span(), &format!("{at}.leads"), "must be between 1 and 100,000,000");
        }
        // Outcomes: given here, else the real campaign's simulated provider's rates.
        let simulated = real.and_then(|r| r.simulate.as_ref());
        let answer = match (&c.connect_rate, &c.answer) {
            (Some(x), None) | (None, Some(x)) => {
                let key = if c.answer.is_some() { "answer" } else { "connect_rate" };
                if !(*x.get_ref() > 0.0 && *x.get_ref() <= 1.0) {
                    self.problem(x.span(), &format!("{at}.{key}"), "must be more than 0 and at most 1");
                }
                *x.get_ref()
            }
            (Some(x), Some(_)) => {
                self.problem(x.span(), &format!("{at}.connect_rate"), "is another name of `answer`: give one");
                0.0
            }
            (None, None) => match simulated {
                Some(s) => s.answer_rate.0,
                None => {
                    self.problem(span.clone(), &at, "say how often a lead answers: `answer = 0.35`");
                    0.0
                }
            },
        };
        let mut share = |v: &Option<Spanned<f64>>, key: &str, default: f64| match v {
            Some(x) if (0.0..=1.0).contains(x.get_ref()) => *x.get_ref(),
            Some(x) => {
                self.problem(x.span(), &format!("{at}.{key}"), "must be between 0 and 1");
                default
            }
            None => default,
        };
        let busy = share(&c.busy, "busy", simulated.map_or(0.0, |s| s.busy_rate.0));
        let voicemail = share(&c.voicemail, "voicemail", simulated.map_or(0.0, |s| s.voicemail_rate.0));
        let failed = share(&c.failed, "failed", simulated.map_or(0.0, |s| s.failure_rate.0));
        if answer + busy + voicemail + failed > 1.0 + 1e-9 {
            self.problem(span.clone(), &at, "answer + busy + voicemail + failed must be at most 1");
        }
        let talk = self.dist(&c.talk, &format!("{at}.talk"));
        let ring = match (&c.ring, simulated) {
            (Some(r), _) => self.dist(r, &format!("{at}.ring")),
            (None, Some(s)) => Some(Dist::Fixed { ms: s.ring_time.as_millis() as f64 }),
            (None, None) => Some(Dist::Fixed { ms: 30_000.0 }),
        };
        let retry = match real {
            Some(real) => real.retry.clone(),
            None => self.legacy_retry(c, &at),
        };
        let cps = match (&c.cps, &c.calls_per_second, real) {
            (_, _, Some(real)) => Some(real.calls_per_second.0),
            (Some(x), None, None) | (None, Some(x), None) => {
                if !(*x.get_ref() > 0.0 && x.get_ref().is_finite()) {
                    let key = if c.cps.is_some() { "cps" } else { "calls_per_second" };
                    self.problem(x.span(), &format!("{at}.{key}"), "must be more than 0");
                }
                Some(*x.get_ref())
            }
            (Some(x), Some(_), None) => {
                self.problem(x.span(), &format!("{at}.cps"), "is another name of `calls_per_second`: give one");
                None
            }
            (None, None, None) => None,
        };
        let window = match real {
            Some(real) => Some(local_window(real)),
            None => c.window.as_ref().and_then(|w| match parse_window(w.get_ref()) {
                Ok((s, e)) => Some(CallingWindow::Simulated(s, e)),
                Err(e) => {
                    self.problem(w.span(), &format!("{at}.window"), e.message);
                    None
                }
            }),
        };
        let max_concurrency = match (&c.max_concurrency, real) {
            (_, Some(real)) => real.max_concurrency,
            (Some(m), None) => {
                if !(1..=1_000_000).contains(m.get_ref()) {
                    self.problem(m.span(), &format!("{at}.max_concurrency"), "must be between 1 and 1,000,000");
                }
                Some(*m.get_ref() as u32)
            }
            (None, None) => None,
        };
        let priority = match (&c.priority, real) {
            (_, Some(real)) => real.priority,
            (Some(p), None) => {
                if !(-1_000_000..=1_000_000).contains(p.get_ref()) {
                    self.problem(p.span(), &format!("{at}.priority"), "must be between -1,000,000 and 1,000,000");
                }
                *p.get_ref() as i32
            }
            (None, None) => 0,
        };
        let lead_mix = match &c.lead_mix {
            Some(mix) if real.is_none() => {
                self.problem(
                    mix.span(),
                    &format!("{at}.lead_mix"),
                    "time zones are those of a [[campaigns]] window: give `campaign = …`",
                );
                Vec::new()
            }
            Some(mix) => self.lead_mix(mix, &format!("{at}.lead_mix")),
            None => Vec::new(),
        };
        if self.problems.len() != before {
            return None;
        }
        let flow = flow?;
        let name = c.name.clone().or_else(|| real.map(|r| r.name.clone()));
        Some(CampaignSource {
            name: name.unwrap_or_else(|| self.config.flows[flow].name.clone()),
            flow,
            leads: leads as u64,
            answer,
            busy,
            voicemail,
            failed,
            talk: talk?,
            ring: ring?,
            retry,
            cps,
            window,
            max_concurrency,
            priority,
            real: real.map(|r| Box::new(r.clone())),
            lead_mix,
        })
    }

    /// Which dialer returns the callbacks: the first `[[sim.campaigns]]` whose
    /// `[[campaigns]]` entry has `callbacks = true` (then the pacing is the campaign's, and
    /// giving it in `[sim] callback` is an error), else the callback's own `flow`.
    fn callback_campaign(&mut self, cb: &mut CallbackPolicy, campaigns: &[CampaignSource]) {
        let returning = campaigns.iter().position(|c| c.real.as_ref().is_some_and(|r| r.callbacks));
        match returning {
            Some(i) => {
                let name = &campaigns[i].name;
                for (key, span) in std::mem::take(&mut cb.given) {
                    self.problem(
                        span,
                        &format!("sim.callback.{key}"),
                        format!("comes from the campaign `{name}` (callbacks = true): change it there"),
                    );
                }
                cb.campaign = Some(i);
                cb.flow = campaigns[i].flow;
                cb.retry = campaigns[i].retry.clone();
            }
            None if cb.flow == usize::MAX => self.problem(
                cb.span.clone(),
                "sim.callback.flow",
                "say which flow returns the callbacks, or run a [[campaigns]] entry with `callbacks = true`",
            ),
            None => {}
        }
    }

    /// `lead_mix = [{ share = 0.6, timezone = "America/New_York", region = "US-NY" }, …]`.
    fn lead_mix(&mut self, mix: &Spanned<Vec<LeadGroupToml>>, field: &str) -> Vec<LeadGroup> {
        let span = mix.span();
        let groups = mix.get_ref();
        if groups.is_empty() || groups.len() > 64 {
            self.problem(span, field, "between 1 and 64 groups");
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, g) in groups.iter().enumerate() {
            if !(g.share > 0.0 && g.share <= 1.0) {
                self.problem(span.clone(), &format!("{field}[{k}].share"), "must be more than 0 and at most 1");
            }
            let Ok(timezone) = g.timezone.parse::<chrono_tz::Tz>() else {
                self.problem(
                    span.clone(),
                    &format!("{field}[{k}].timezone"),
                    format!("`{}` is not an IANA time zone (e.g. America/New_York)", g.timezone),
                );
                continue;
            };
            if let Some(r) = &g.region {
                if r.is_empty() || r.len() > 8 {
                    self.problem(span.clone(), &format!("{field}[{k}].region"), "a region like `US-FL` or `GB`");
                }
            }
            out.push(LeadGroup { share: g.share, timezone, region: g.region.clone() });
        }
        let total: f64 = groups.iter().map(|g| g.share).sum();
        if (total - 1.0).abs() > 1e-6 {
            self.problem(span, field, format!("the shares add up to {total}, not 1"));
        }
        out
    }

    /// `campaign = { name = …, flow = …, … }`: a `[[campaigns]]` table written here, read and
    /// checked by `callgate-config` as the server reads one (without a provider it is the
    /// built-in simulated one: `simulate = {}`).
    fn inline_campaign(&mut self, v: &Spanned<toml::Value>, at: &str) -> Option<callgate_config::CampaignConfig> {
        let mut table = v.get_ref().as_table()?.clone();
        if !["provider", "providers", "simulate"].iter().any(|k| table.contains_key(*k)) {
            table.insert("simulate".into(), toml::Value::Table(toml::Table::new()));
        }
        let campaign: callgate_config::CampaignConfig = match toml::Value::Table(table).try_into() {
            Ok(c) => c,
            Err(e) => {
                self.problem(v.span(), &format!("{at}.campaign"), one_line(&e.to_string()));
                return None;
            }
        };
        let problems = self.config.campaign_problems(&campaign);
        for p in &problems {
            self.problem(v.span(), &format!("{at}.campaign.{}", p.field), &p.message);
        }
        problems.is_empty().then_some(campaign)
    }

    /// `retry = { … }` (a `[[campaigns]]` retry table), or the older `retries` and
    /// `retry_after` (the same delay after every outcome, no backoff).
    fn legacy_retry(&mut self, c: &CampaignToml, at: &str) -> RetryConfig {
        if let Some(r) = &c.retry {
            for (key, given) in [("retries", c.retries.is_some()), ("retry_after", c.retry_after.is_some())] {
                if given {
                    self.problem(
                        r.span(),
                        &format!("{at}.{key}"),
                        "give `retry = { … }` or `retries`/`retry_after`, not both",
                    );
                }
            }
            let retry = r.get_ref().clone();
            if !(retry.backoff.0.is_finite() && (1.0..=100.0).contains(&retry.backoff.0)) {
                self.problem(r.span(), &format!("{at}.retry.backoff"), "must be between 1 and 100");
            }
            if !(1..=100).contains(&retry.max_attempts) {
                self.problem(r.span(), &format!("{at}.retry.max_attempts"), "must be between 1 and 100");
            }
            return retry;
        }
        let retries = c.retries.as_ref().map_or(0, |r| *r.get_ref());
        if let Some(r) = &c.retries {
            if !(0..=100).contains(r.get_ref()) {
                self.problem(r.span(), &format!("{at}.retries"), "must be between 0 and 100");
            }
        }
        let after = match &c.retry_after {
            Some(d) => std::time::Duration::from_millis(self.duration(d, &format!("{at}.retry_after")).unwrap_or(0)),
            None => std::time::Duration::from_secs(3600),
        };
        RetryConfig {
            busy: after,
            no_answer: after,
            voicemail: after,
            failed: after,
            backoff: callgate_config::Real(1.0),
            max_delay: after.max(std::time::Duration::from_secs(86_400)),
            max_attempts: retries.clamp(0, 100) as u32 + 1,
            ..RetryConfig::default()
        }
    }

    fn pricing(&mut self, p: &Spanned<Pricing>) -> Pricing {
        let pricing = p.get_ref().clone();
        for (field, message) in pricing.problems() {
            self.problem(p.span(), &format!("pricing.{field}"), message);
        }
        if let Some(pools) = &pricing.line_pools {
            for name in pools {
                if self.config.pool(name).is_none() {
                    self.problem(p.span(), "pricing.line_pools", format!("no pool is named `{name}`"));
                }
            }
        }
        pricing
    }
}

/// The name a `campaign = …` gives: the name itself, or the table's `name`.
fn campaign_name(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Table(t) => t.get("name").and_then(toml::Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A `[[campaigns]]` entry's window and batches, for the wall clock.
fn local_window(real: &callgate_config::CampaignConfig) -> CallingWindow {
    let tz = real.timezone();
    let mut batches: Vec<(u64, u64)> = real.batches.iter().filter_map(|b| b.resolve(tz).ok()).collect();
    batches.sort_unstable();
    let window = callgate_config::ScheduleConfig {
        name: real.name.clone(),
        days: real.window.days.clone(),
        start: real.window.start,
        end: real.window.end,
        timezone: real.default_timezone.clone(),
        pools: Default::default(),
        campaigns: Default::default(),
        flows: Default::default(),
    };
    CallingWindow::Local { window: Box::new(window), batches }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none defined".to_owned()
    } else {
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}

/// `"720/h"` as calls per millisecond (units `/s`, `/sec`, `/m`, `/min`, `/h`, `/d`).
pub fn parse_rate(text: &str) -> Option<f64> {
    let (n, unit) = text.trim().split_once('/')?;
    let n: f64 = n.trim().parse().ok()?;
    let per_ms = match unit.trim() {
        "s" | "sec" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" | "hour" => 3_600_000.0,
        "d" | "day" => 86_400_000.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then(|| n / per_ms)
}
