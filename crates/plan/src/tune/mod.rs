//! `callgate tune`: searches a scenario's policy space with the simulator.
//!
//! The scenario's `[tune]` section says what to vary (any value of the file, by a dotted
//! path: a pool's reserve or limit, a schedule's reserve for its period, a waiting room's
//! `max_wait` or `max_len`, a flow's overflow chain, a campaign's cap or rate), what to
//! minimise and what must hold. Every combination of the values is written into the
//! scenario's text (formatting kept), read back by [`Scenario::from_toml_str`] with every
//! check a scenario gets, and run once per seed. Every candidate is run with the same
//! seeds, and the simulator gives each caller and lead its own random numbers whatever
//! the policy (common random numbers), so the differences between candidates are the
//! policies', not luck's.
//!
//! The answer: the best candidate that meets the constraints (ties: lower cost, then the
//! campaigns' earlier finish, then fewer people lost, then the first in the search order), as a ready diff of the
//! scenario file, and the trade-off frontier — the candidates no other beats on people
//! lost, campaign finish and cost at once — as a table and a chart.
//!
//! ```toml
//! [tune]
//! minimize = "people_lost"       # people_lost (default) | lost | cost | campaign_finish
//! search = "every"               # every combination (default), or "descent" (coordinate
//!                                # descent, for spaces too large to try whole)
//! seeds = 3                      # runs per candidate: [sim] seed, +1, … (default 3)
//! campaigns_done_by = "20:00"    # every campaign, every seed: the first 20:00 after
//! timezone = "America/New_York"  # [sim] start in `timezone` (default UTC), or an instant
//! max_cost = 400                 # mean cost of the run at most (needs [pricing])
//! max_people_lost_share = 0.05   # also max_lost_share (calls)
//!
//! [[tune.knobs]]
//! set = "schedules.weekday-peak.pools.vapi-main.reserve.inbound"
//! values = [4, 6, 8, 10]
//! ```
//!
//! A path is keys separated by dots; an array of tables (`[[pools]]`, `[[flows]]`,
//! `[[schedules]]`, `[[campaigns]]`, `[[sim.campaigns]]`) is entered by the `name` of an
//! entry (for `[[sim.campaigns]]`, also its `campaign` or `flow`). A table missing on the
//! way is added; a value missing at the end is added.

mod report;
mod space;

pub use report::{frontier_chart, TuneReport};
pub use space::{set, Knob, Objective, Search, Space, MAX_CANDIDATES, MAX_SEEDS};

use crate::sim::{run, Report, RunOptions, Scenario};
use crate::PlanError;
use serde::Serialize;
use std::path::Path;

/// One candidate: its values and how it did, as means over the seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// The value of each knob, as TOML, in the knobs' order.
    pub values: Vec<String>,
    /// People (callers counted once) per run.
    pub people: f64,
    /// People lost per run.
    pub people_lost: f64,
    /// `people_lost / people`.
    pub people_lost_share: f64,
    /// Calls per run.
    pub calls: f64,
    /// Calls lost per run.
    pub lost: f64,
    /// `lost / calls`.
    pub lost_share: f64,
    /// Service level over every flow fed by arrivals.
    pub service_level: f64,
    /// The run's cost, with `[pricing]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// When the last campaign finished (seconds from the start; mean over the seeds);
    /// `None`: without campaigns, or some seed did not finish.
    pub campaign_finish_s: Option<f64>,
    /// Every campaign finished in every seed.
    pub campaigns_finished: bool,
    /// It meets every constraint.
    pub feasible: bool,
    /// How far it misses the constraints: the sum of each missed one's relative excess
    /// (a campaign not done in time counts 1); 0 when feasible.
    pub violation: f64,
    /// No other candidate is as good on people lost, campaign finish and cost and better
    /// on one.
    pub frontier: bool,
}

/// Reads a scenario file with a `[tune]` section and searches it; `progress` is told the
/// share done now and then.
pub fn tune_file(path: &Path, progress: &mut dyn FnMut(f64)) -> Result<TuneReport, PlanError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::io(format!("{}: cannot read the file: {e}", path.display())))?;
    tune(&text, Some(path), progress)
}

/// Searches the `[tune]` space of a scenario's text.
pub fn tune(text: &str, path: Option<&Path>, progress: &mut dyn FnMut(f64)) -> Result<TuneReport, PlanError> {
    let file = path.map_or_else(|| "<scenario>".to_owned(), |p| p.display().to_string());
    let base = Scenario::from_toml_str(text, path)?;
    let space = Space::from_toml_str(text, &file, base.sim.start_ms)?;
    if (space.max_cost.is_some() || space.objective == Objective::Cost) && base.pricing.is_none() {
        return Err(PlanError::scenario(format!(
            "{file}: tune: a cost objective or max_cost needs a [pricing] section"
        )));
    }
    let doc: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| PlanError::scenario(format!("{file}: {}", e.message())))?;
    let runs_expected = match space.search {
        Search::Every => space.knobs.iter().map(|k| k.values.len()).product::<usize>(),
        // A guess for the progress bar: three rounds.
        Search::Descent => 3 * space.knobs.iter().map(|k| k.values.len()).sum::<usize>(),
    } * space.seeds as usize;
    let mut runner = Runner {
        space: &space,
        doc,
        path,
        file: &file,
        candidates: Vec::new(),
        texts: Vec::new(),
        tried: std::collections::HashMap::new(),
        done: 0,
        runs_expected,
    };
    match space.search {
        Search::Every => {
            for combo in space.candidates() {
                runner.evaluate(&combo, progress)?;
            }
        }
        Search::Descent => {
            let mut current = vec![0usize; space.knobs.len()];
            let mut at = runner.evaluate(&current, progress)?;
            // A round that changes something moves to a candidate of strictly better rank,
            // of finitely many: the search ends; the bound is a guard.
            for _ in 0..100 {
                let mut changed = false;
                for k in 0..space.knobs.len() {
                    for v in 0..space.knobs[k].values.len() {
                        let mut c = current.clone();
                        c[k] = v;
                        let i = runner.evaluate(&c, progress)?;
                        if rank(&space, &runner.candidates[i]) < rank(&space, &runner.candidates[at]) {
                            current = c;
                            at = i;
                            changed = true;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
        }
    }
    let Runner { mut candidates, texts, .. } = runner;
    mark_frontier(&mut candidates);
    let best = best(&space, &candidates);
    let diff = best.map(|b| report::diff(text, &texts[b], &file));
    Ok(TuneReport { scenario: base.name.clone(), file, space, candidates, best, diff, start_ms: base.sim.start_ms })
}

/// Checks a scenario file, and its `[tune]` section when it has one (each knob's path is
/// found and each of its values, set alone, gives a valid scenario), without running it:
/// `callgate config check` and `simulate --check`. Returns the scenario's summary.
pub fn check_file(path: &Path) -> Result<String, PlanError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::io(format!("{}: cannot read the file: {e}", path.display())))?;
    let sc = Scenario::from_toml_str(&text, Some(path))?;
    let mut summary = sc.summary();
    if text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("tune")) {
        let file = path.display().to_string();
        let space = Space::from_toml_str(&text, &file, sc.sim.start_ms)?;
        let doc: toml_edit::DocumentMut =
            text.parse().map_err(|e: toml_edit::TomlError| PlanError::scenario(format!("{file}: {}", e.message())))?;
        for k in &space.knobs {
            for value in &k.values {
                let mut d = doc.clone();
                set(&mut d, &k.path, value)
                    .map_err(|e| PlanError::scenario(format!("{file}: tune.knobs `{}` = {value}: {e}", k.path)))?;
                Scenario::from_toml_str(&d.to_string(), Some(path)).map_err(|e| {
                    PlanError::scenario(format!("with {} = {}:\n{}", k.path, value.to_string().trim(), e.message))
                })?;
            }
        }
        summary.push_str(&format!(", a [tune] search of {} candidates", space.candidates().len()));
    }
    Ok(summary)
}

/// Runs candidates, each once.
struct Runner<'a> {
    space: &'a Space,
    doc: toml_edit::DocumentMut,
    path: Option<&'a Path>,
    file: &'a str,
    candidates: Vec<Candidate>,
    /// Each candidate's scenario text.
    texts: Vec<String>,
    /// Combination → position in `candidates`.
    tried: std::collections::HashMap<Vec<usize>, usize>,
    done: usize,
    runs_expected: usize,
}

impl Runner<'_> {
    /// Runs the candidate of `combo` (once: a second ask returns the first answer).
    fn evaluate(&mut self, combo: &[usize], progress: &mut dyn FnMut(f64)) -> Result<usize, PlanError> {
        if let Some(&i) = self.tried.get(combo) {
            return Ok(i);
        }
        let (space, file) = (self.space, self.file);
        let mut d = self.doc.clone();
        let mut values = Vec::with_capacity(combo.len());
        for (k, &v) in space.knobs.iter().zip(combo) {
            let value = &k.values[v];
            set(&mut d, &k.path, value)
                .map_err(|e| PlanError::scenario(format!("{file}: tune.knobs `{}` = {value}: {e}", k.path)))?;
            values.push(value.to_string().trim().to_owned());
        }
        let candidate_text = d.to_string();
        let sc = Scenario::from_toml_str(&candidate_text, self.path)
            .map_err(|e| PlanError::scenario(format!("with {}:\n{}", describe(space, &values), e.message)))?;
        let mut reports = Vec::with_capacity(space.seeds as usize);
        for s in 0..u64::from(space.seeds) {
            let options = RunOptions { seed: Some(sc.sim.seed.wrapping_add(s)), ..RunOptions::default() };
            reports.push(run(&sc, &options, &mut |_| {})?);
            self.done += 1;
            progress((self.done as f64 / self.runs_expected.max(1) as f64).min(1.0));
        }
        self.candidates.push(measure(space, &sc, values, &reports));
        self.texts.push(candidate_text);
        self.tried.insert(combo.to_vec(), self.candidates.len() - 1);
        Ok(self.candidates.len() - 1)
    }
}

/// `path = value, …` of one candidate.
pub(crate) fn describe(space: &Space, values: &[String]) -> String {
    space.knobs.iter().zip(values).map(|(k, v)| format!("{} = {v}", k.path)).collect::<Vec<_>>().join(", ")
}

fn measure(space: &Space, sc: &Scenario, values: Vec<String>, reports: &[Report]) -> Candidate {
    let n = reports.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).sum::<f64>() / n;
    let people = mean(&|r| r.lost.people as f64);
    let people_lost = mean(&|r| r.lost.people_lost as f64);
    let calls = mean(&|r| r.lost.callers as f64);
    let lost = mean(&|r| r.lost.lost as f64);
    let cost = sc.pricing.as_ref().map(|_| mean(&|r| r.cost.as_ref().map_or(0.0, |c| c.total)));
    // The last campaign's end in each seed; `None` when one did not finish.
    let finishes: Vec<Option<f64>> = reports
        .iter()
        .map(|r| r.campaigns.iter().try_fold(0.0f64, |latest, c| c.finished_at_s.map(|f| latest.max(f))))
        .collect();
    let campaigns_finished = finishes.iter().all(Option::is_some);
    let has_campaigns = reports.iter().any(|r| !r.campaigns.is_empty());
    let campaign_finish_s = (has_campaigns && campaigns_finished).then(|| finishes.iter().flatten().sum::<f64>() / n);
    let done_in_time = match space.campaigns_done_by {
        None => true,
        Some(by) => {
            campaigns_finished && finishes.iter().flatten().all(|&f| sc.sim.start_ms as f64 + f * 1000.0 <= by as f64)
        }
    };
    let people_lost_share = people_lost / people.max(1.0);
    let lost_share = lost / calls.max(1.0);
    let over = |value: f64, max: Option<f64>| max.map_or(0.0, |m| ((value - m) / m.max(1e-9)).max(0.0));
    let violation = if done_in_time { 0.0 } else { 1.0 }
        + over(people_lost_share, space.max_people_lost_share)
        + over(lost_share, space.max_lost_share)
        + over(cost.unwrap_or(f64::INFINITY), space.max_cost);
    let feasible = violation == 0.0;
    Candidate {
        values,
        people,
        people_lost,
        people_lost_share,
        calls,
        lost,
        lost_share,
        service_level: mean(&|r| r.lost.service_level),
        cost,
        campaign_finish_s,
        campaigns_finished,
        feasible,
        violation,
        frontier: false,
    }
}

/// The three things traded off, smaller better (an unfinished campaign: infinitely late).
fn trade(c: &Candidate) -> [f64; 3] {
    [c.people_lost, c.campaign_finish_s.unwrap_or(f64::INFINITY), c.cost.unwrap_or(0.0)]
}

fn mark_frontier(candidates: &mut [Candidate]) {
    let points: Vec<[f64; 3]> = candidates.iter().map(trade).collect();
    for (i, c) in candidates.iter_mut().enumerate() {
        let p = points[i];
        c.frontier = !points
            .iter()
            .enumerate()
            .any(|(j, q)| j != i && q.iter().zip(&p).all(|(a, b)| a <= b) && q.iter().zip(&p).any(|(a, b)| a < b));
    }
}

fn score(objective: Objective, c: &Candidate) -> f64 {
    match objective {
        Objective::PeopleLost => c.people_lost,
        Objective::Lost => c.lost,
        Objective::Cost => c.cost.unwrap_or(0.0),
        Objective::CampaignFinish => c.campaign_finish_s.unwrap_or(f64::INFINITY),
    }
}

/// How a candidate ranks (smaller better): those that meet the constraints first, by the
/// objective, then cost, then the campaigns' finish; the others by how far they miss.
fn rank(space: &Space, c: &Candidate) -> (u8, [f64; 4]) {
    if c.feasible {
        (0, key(space, c))
    } else {
        (1, [c.violation, score(space.objective, c), 0.0, c.people_lost])
    }
}

/// The order among candidates that meet the constraints: the objective, then cost, then
/// the campaigns' finish, then people lost (so that a plateau of the objective still
/// leans toward fewer people lost).
fn key(space: &Space, c: &Candidate) -> [f64; 4] {
    [score(space.objective, c), c.cost.unwrap_or(0.0), c.campaign_finish_s.unwrap_or(f64::INFINITY), c.people_lost]
}

fn best(space: &Space, candidates: &[Candidate]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate().filter(|(_, c)| c.feasible) {
        let better = match best {
            None => true,
            Some(b) => {
                let (k, kb) = (key(space, c), key(space, &candidates[b]));
                // Lexicographic, strictly better only (the first in search order wins ties).
                k.iter().zip(&kb).find(|(x, y)| (*x - *y).abs() > 1e-9).is_some_and(|(x, y)| x < y)
            }
        };
        if better {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests;
