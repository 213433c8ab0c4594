//! The `[tune]` section: what to vary, what to minimise, what must hold; and how one
//! choice of values is written into the scenario's text.

use crate::sim::line_at;
use crate::PlanError;
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;
use toml_edit::{DocumentMut, Item, TableLike, Value};

/// Most candidates one search may run (each is run once per seed).
pub const MAX_CANDIDATES: usize = 10_000;

/// Most seeds per candidate.
pub const MAX_SEEDS: u32 = 100;

/// What the search minimises (means over the seeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// People lost (callers whose last call was lost).
    PeopleLost,
    /// Calls lost.
    Lost,
    /// The cost of the run (`[pricing]`).
    Cost,
    /// When the last campaign finishes.
    CampaignFinish,
}

impl Objective {
    /// As written in `minimize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::PeopleLost => "people_lost",
            Objective::Lost => "lost",
            Objective::Cost => "cost",
            Objective::CampaignFinish => "campaign_finish",
        }
    }
}

/// How the space is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Every combination (at most [`MAX_CANDIDATES`]).
    Every,
    /// Coordinate descent: from the first value of each knob, try every value of one knob
    /// with the others fixed, keep the best, go on to the next knob; again until a round
    /// changes nothing. For spaces too large to try whole; it may stop at a local best.
    Descent,
}

/// One thing to vary: a path into the scenario and the values it may take.
#[derive(Clone, Debug)]
pub struct Knob {
    /// `pools.vapi-main.reserve.inbound`: keys, and the `name` of an entry of an array
    /// of tables (`[[pools]]`, `[[flows]]`, `[[schedules]]`, `[[campaigns]]`,
    /// `[[sim.campaigns]]`).
    pub path: String,
    /// The values, as TOML.
    pub values: Vec<Value>,
}

/// The `[tune]` section, checked.
#[derive(Clone, Debug)]
pub struct Space {
    /// What to minimise.
    pub objective: Objective,
    /// How to search.
    pub search: Search,
    /// Runs per candidate: seeds `[sim] seed`, +1, … (the same for every candidate).
    pub seeds: u32,
    /// People lost at most this share of people (mean over the seeds).
    pub max_people_lost_share: Option<f64>,
    /// Calls lost at most this share of calls (mean over the seeds).
    pub max_lost_share: Option<f64>,
    /// The run's cost at most this (mean over the seeds; needs `[pricing]`).
    pub max_cost: Option<f64>,
    /// Every campaign finished by this instant (Unix ms), in every seed.
    pub campaigns_done_by: Option<u64>,
    /// What to vary.
    pub knobs: Vec<Knob>,
}

#[derive(Deserialize)]
struct Outer {
    tune: Option<Spanned<TuneToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TuneToml {
    minimize: Option<Spanned<String>>,
    search: Option<Spanned<String>>,
    seeds: Option<Spanned<i64>>,
    max_people_lost_share: Option<Spanned<f64>>,
    max_lost_share: Option<Spanned<f64>>,
    max_cost: Option<Spanned<f64>>,
    campaigns_done_by: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    knobs: Vec<Spanned<KnobToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobToml {
    set: Spanned<String>,
    values: Spanned<Vec<toml::Value>>,
}

impl Space {
    /// Reads `[tune]` from a scenario's text (`file` names it in errors; the runs start at
    /// `start_ms`, Unix ms); every problem names the file, the line and the field.
    pub fn from_toml_str(text: &str, file: &str, start_ms: u64) -> Result<Space, PlanError> {
        let outer: Outer = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| format!(":{}", line_at(text, s.start))).unwrap_or_default();
            PlanError::scenario(format!("{file}{line}: {}", e.message().trim()))
        })?;
        let Some(tune) = outer.tune else {
            return Err(PlanError::scenario(format!(
                "{file}: no [tune] section: say what to vary, e.g.\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues \
                 = [8, 10, 12]"
            )));
        };
        let mut problems = Vec::new();
        let mut problem = |span: Range<usize>, field: &str, message: String| {
            problems.push(format!("{file}:{}: tune.{field}: {message}", line_at(text, span.start)));
        };
        let t = tune.get_ref();
        let objective = match t.minimize.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("people_lost", _)) => Objective::PeopleLost,
            Some(("lost", _)) => Objective::Lost,
            Some(("cost", _)) => Objective::Cost,
            Some(("campaign_finish", _)) => Objective::CampaignFinish,
            Some((other, span)) => {
                problem(
                    span,
                    "minimize",
                    format!("`{other}` is not an objective (people_lost, lost, cost or campaign_finish)"),
                );
                Objective::PeopleLost
            }
        };
        let search = match t.search.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("every", _)) => Search::Every,
            Some(("descent", _)) => Search::Descent,
            Some((other, span)) => {
                problem(span, "search", format!("`{other}` is not a search (every or descent)"));
                Search::Every
            }
        };
        let seeds = match &t.seeds {
            Some(s) if (1..=i64::from(MAX_SEEDS)).contains(s.get_ref()) => *s.get_ref() as u32,
            Some(s) => {
                problem(s.span(), "seeds", format!("must be between 1 and {MAX_SEEDS}"));
                1
            }
            None => 3,
        };
        let mut share = |v: &Option<Spanned<f64>>, key: &str| match v {
            Some(x) if (0.0..=1.0).contains(x.get_ref()) => Some(*x.get_ref()),
            Some(x) => {
                problem(x.span(), key, "must be between 0 and 1".into());
                None
            }
            None => None,
        };
        let max_people_lost_share = share(&t.max_people_lost_share, "max_people_lost_share");
        let max_lost_share = share(&t.max_lost_share, "max_lost_share");
        let max_cost = match &t.max_cost {
            Some(c) if c.get_ref().is_finite() && *c.get_ref() >= 0.0 => Some(*c.get_ref()),
            Some(c) => {
                problem(c.span(), "max_cost", "must be 0 or more".into());
                None
            }
            None => None,
        };
        let timezone = t.timezone.as_ref().map_or("UTC", |z| z.get_ref().as_str());
        if let Some(z) = &t.timezone {
            if !is_timezone(z.get_ref()) {
                problem(
                    z.span(),
                    "timezone",
                    format!("`{}` is not an IANA time zone (e.g. America/New_York)", z.get_ref()),
                );
            }
        }
        let campaigns_done_by = match &t.campaigns_done_by {
            Some(d) => match clock_time_after(d.get_ref(), timezone, start_ms) {
                Some(ms) => Some(ms),
                None => match callgate_config::parse_instant(d.get_ref()) {
                    Ok(ms) => Some(ms),
                    Err(e) => {
                        problem(
                            d.span(),
                            "campaigns_done_by",
                            format!("{e}; or a time of day, \"20:00\" (the first after [sim] start, in `timezone`)"),
                        );
                        None
                    }
                },
            },
            None => None,
        };
        if t.knobs.is_empty() {
            problem(tune.span(), "knobs", "say what to vary: [[tune.knobs]] set = \"…\", values = […]".into());
        }
        let mut knobs = Vec::new();
        let mut candidates: usize = 1;
        for (i, k) in t.knobs.iter().enumerate() {
            let k = k.get_ref();
            let path = k.set.get_ref().trim().to_owned();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                problem(k.set.span(), &format!("knobs[{i}].set"), "write a dotted path, e.g. pools.lines.limit".into());
                continue;
            }
            if k.values.get_ref().is_empty() || k.values.get_ref().len() > 1000 {
                problem(k.values.span(), &format!("knobs[{i}].values"), "give 1 to 1,000 values".into());
                continue;
            }
            candidates = candidates.saturating_mul(k.values.get_ref().len());
            let values = k.values.get_ref().iter().map(to_edit_value).collect();
            knobs.push(Knob { path, values });
        }
        if candidates > MAX_CANDIDATES && search == Search::Every {
            problem(
                tune.span(),
                "knobs",
                format!(
                    "{candidates} combinations; at most {MAX_CANDIDATES} (give fewer values, or search = \"descent\")"
                ),
            );
        }
        if t.knobs.len() > 20 {
            problem(tune.span(), "knobs", "at most 20 knobs".into());
        }
        if !problems.is_empty() {
            return Err(PlanError::scenario(problems.join("\n")));
        }
        Ok(Space {
            objective,
            search,
            seeds,
            max_people_lost_share,
            max_lost_share,
            max_cost,
            campaigns_done_by,
            knobs,
        })
    }

    /// Every combination of the knobs' values, the first knob slowest (as indices).
    pub fn candidates(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = vec![Vec::new()];
        for k in &self.knobs {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    (0..k.values.len()).map(move |v| {
                        let mut c = prefix.clone();
                        c.push(v);
                        c
                    })
                })
                .collect();
        }
        out
    }
}

/// Whether `zone` is a time zone the configuration accepts: asked of the config crate's
/// own check of a schedule's `timezone`, so that both accept the same names.
fn is_timezone(zone: &str) -> bool {
    let probe = format!(
        "[[schedules]]\nname = \"probe\"\nstart = \"00:00\"\nend = \"01:00\"\ntimezone = {}\n",
        toml::Value::String(zone.to_owned())
    );
    match callgate_config::Config::from_toml_str(&probe, None) {
        Ok(_) => true,
        // The probe may miss what a whole configuration needs; only the zone matters.
        Err(errors) => !errors.errors.iter().any(|e| e.field.ends_with("timezone")),
    }
}

/// `"20:00"` as the first instant at or after `start_ms` when the clock in `timezone` reads
/// it (`None`: not a time of day). Found minute by minute with the schedules' own reading of
/// local time (`ScheduleConfig::active_at`), two days at most.
fn clock_time_after(text: &str, timezone: &str, start_ms: u64) -> Option<u64> {
    let at = callgate_config::ClockTime::parse(text)?;
    let minute_after = callgate_config::ClockTime((at.0 + 1) % 1440);
    let probe = callgate_config::ScheduleConfig {
        name: "campaigns_done_by".into(),
        days: callgate_config::Weekday::ALL.to_vec(),
        start: at,
        end: minute_after,
        timezone: timezone.to_owned(),
        pools: Default::default(),
        campaigns: Default::default(),
        flows: Default::default(),
    };
    let first = start_ms.div_ceil(60_000) * 60_000;
    (0..2 * 1440 + 120).map(|m| first + m * 60_000).find(|&t| probe.active_at(t))
}

/// A value of the `[tune]` section as a `toml_edit` value (written as TOML prints it).
fn to_edit_value(v: &toml::Value) -> Value {
    let text = match v {
        toml::Value::String(s) => toml::Value::String(s.clone()).to_string(),
        other => other.to_string(),
    };
    text.parse::<Value>().unwrap_or_else(|_| Value::from(text))
}

/// Writes `value` at `path` in `doc`; returns what was there (`None`: nothing, now added).
pub fn set(doc: &mut DocumentMut, path: &str, value: &Value) -> Result<Option<String>, String> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    let mut i = 0;
    while i + 1 < segs.len() {
        let seg = segs[i];
        if table.get(seg).is_none() {
            // A missing table on the way (a pool without `reserve`): add it, inline.
            table.insert(seg, Item::Value(Value::InlineTable(Default::default())));
        }
        let Some(item) = table.get_mut(seg) else { return Err(format!("`{seg}` cannot be added")) };
        table = match item {
            Item::ArrayOfTables(array) => {
                let name = segs[i + 1];
                i += 1;
                let found = array.iter_mut().find(|t| named(&**t, name));
                match found {
                    Some(t) => t,
                    None => return Err(format!("no [[{seg}]] entry is named `{name}`")),
                }
            }
            other => match other.as_table_like_mut() {
                Some(t) => t,
                None => return Err(format!("`{seg}` is not a table")),
            },
        };
        i += 1;
    }
    let Some(&last) = segs.get(i) else { return Err("the path names an entry, not a field: add the field".into()) };
    let old = table.get(last).map(|item| item.to_string().trim().to_owned());
    if let Some(Item::ArrayOfTables(_) | Item::Table(_)) = table.get(last) {
        return Err(format!("`{last}` is a section: name one of its fields"));
    }
    let mut value = value.clone();
    value.decor_mut().set_prefix(" ");
    table.insert(last, Item::Value(value));
    Ok(old)
}

/// Whether a `[[…]]` entry is called `name` (its `name`, or for `[[sim.campaigns]]` the
/// `campaign` or `flow` it is named after by default).
fn named(t: &dyn TableLike, name: &str) -> bool {
    ["name", "campaign", "flow"].iter().find_map(|k| t.get(k).and_then(Item::as_str)).is_some_and(|n| n == name)
}
