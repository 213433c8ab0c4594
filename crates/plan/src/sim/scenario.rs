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
//!
//! [[sim.campaigns]]         # an outbound dialer paced by free capacity
//! flow = "outbound"
//! leads = 2000
//! connect_rate = 0.35
//! talk = { dist = "lognormal", mean = "3m", sd = "2m" }
//! ring = { dist = "fixed", value = "25s" }        # an unanswered attempt (default 30s)
//! retries = 2
//! retry_after = "1h"
//! cps = 1                   # attempts per second (default: no limit)
//! window = "09:00-17:00"    # calling window on the simulated clock (default: always)
//! max_concurrency = 5       # its own cap on live attempts (default: none)
//!
//! [pricing]                 # see `callgate_plan::cost::Pricing`
//! ```
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
//! The config's `[[schedules]]` apply during the run as they would in the server: the
//! simulated clock starts at `[sim] start`, and every minute the run asks
//! `Config::active_schedules` which are active and `Config::scheduled` what the pools and
//! flows become (a simulated campaign is changed by its name, as `[[campaigns]]` are).
//!
//! The config sections go to `Config::from_toml_str` with the traffic sections' lines
//! blanked (so the line numbers in its errors stay right); the traffic sections are read
//! with their spans, so every problem names the file, the line and the field.

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
const TRAFFIC_SECTIONS: [&str; 3] = ["sim", "arrivals", "pricing"];

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
}

/// One `[[sim.campaigns]]` dialer.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignSource {
    /// Its name in reports (default: its flow's).
    pub name: String,
    /// The flow its calls go through (index in the config's flows).
    pub flow: usize,
    /// Leads to reach.
    pub leads: u64,
    /// Share of attempts answered.
    pub connect_rate: f64,
    /// Length of an answered call.
    pub talk: Dist,
    /// How long an unanswered attempt holds its line.
    pub ring: Dist,
    /// Further attempts for an unanswered lead.
    pub retries: u32,
    /// Wait before a lead is tried again (ms).
    pub retry_after_ms: u64,
    /// Attempts per second allowed (`None`: no limit).
    pub cps: Option<f64>,
    /// Calling window, minutes of the simulated day `[start, end)`.
    pub window: Option<(u32, u32)>,
    /// The most attempts live at once (`None`: only the pools limit them).
    pub max_concurrency: Option<u32>,
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
                .map(|c| c.get_ref().name.clone().unwrap_or_else(|| c.get_ref().flow.get_ref().clone()))
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
        let pricing = traffic.pricing.as_ref().map(|p| reader.pricing(p));
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
            config,
        })
    }

    /// Whether `text` is a scenario rather than a plain configuration: it has one of the
    /// traffic sections (`[sim]`, `[[arrivals]]`, `[pricing]`). Text that is not TOML is
    /// not.
    pub fn is_scenario_text(text: &str) -> bool {
        text.parse::<toml::Table>().is_ok_and(|t| TRAFFIC_SECTIONS.iter().any(|s| t.contains_key(*s)))
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackToml {
    flow: Spanned<String>,
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
    flow: Spanned<String>,
    leads: Spanned<i64>,
    connect_rate: Spanned<f64>,
    talk: Spanned<DistToml>,
    ring: Option<Spanned<DistToml>>,
    #[serde(default)]
    retries: Option<Spanned<i64>>,
    retry_after: Option<Spanned<String>>,
    cps: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<i64>>,
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
            let cb = cb.get_ref();
            let flow = self.flow(&cb.flow, "sim.callback.flow");
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
                self.problem(cb.flow.span(), "sim.callback", "answer + busy + voicemail must be at most 1");
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
        Some(ArrivalSource { flow: flow?, rate: RateProfile { hourly: hourly?, bursts }, hold: hold?, patience })
    }

    fn campaign(&mut self, i: usize, c: &Spanned<CampaignToml>) -> Option<CampaignSource> {
        let at = format!("sim.campaigns[{i}]");
        let c = c.get_ref();
        let flow = self.flow(&c.flow, &format!("{at}.flow"));
        let before = self.problems.len();
        let leads = *c.leads.get_ref();
        if !(1..=100_000_000).contains(&leads) {
            self.problem(c.leads.span(), &format!("{at}.leads"), "must be between 1 and 100,000,000");
        }
        let rate = *c.connect_rate.get_ref();
        if !(rate > 0.0 && rate <= 1.0) {
            self.problem(c.connect_rate.span(), &format!("{at}.connect_rate"), "must be more than 0 and at most 1");
        }
        let talk = self.dist(&c.talk, &format!("{at}.talk"));
        let ring = match &c.ring {
            Some(r) => self.dist(r, &format!("{at}.ring")),
            None => Some(Dist::Fixed { ms: 30_000.0 }),
        };
        let retries = c.retries.as_ref().map_or(0, |r| *r.get_ref());
        if let Some(r) = &c.retries {
            if !(0..=100).contains(r.get_ref()) {
                self.problem(r.span(), &format!("{at}.retries"), "must be between 0 and 100");
            }
        }
        let retry_after_ms = match &c.retry_after {
            Some(d) => self.duration(d, &format!("{at}.retry_after")).unwrap_or(0),
            None => 3_600_000,
        };
        if let Some(cps) = &c.cps {
            if !(*cps.get_ref() > 0.0 && cps.get_ref().is_finite()) {
                self.problem(cps.span(), &format!("{at}.cps"), "must be more than 0");
            }
        }
        let window = c.window.as_ref().and_then(|w| match parse_window(w.get_ref()) {
            Ok(win) => Some(win),
            Err(e) => {
                self.problem(w.span(), &format!("{at}.window"), e.message);
                None
            }
        });
        if let Some(m) = &c.max_concurrency {
            if !(1..=1_000_000).contains(m.get_ref()) {
                self.problem(m.span(), &format!("{at}.max_concurrency"), "must be between 1 and 1,000,000");
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let flow = flow?;
        Some(CampaignSource {
            max_concurrency: c.max_concurrency.as_ref().map(|m| *m.get_ref() as u32),
            name: c.name.clone().unwrap_or_else(|| self.config.flows[flow].name.clone()),
            flow,
            leads: leads as u64,
            connect_rate: rate,
            talk: talk?,
            ring: ring?,
            retries: retries as u32,
            retry_after_ms,
            cps: c.cps.as_ref().map(|c| *c.get_ref()),
            window,
        })
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
