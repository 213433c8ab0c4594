//! The traffic assumptions the operating policies need: how a dependency behind a
//! `[[breakers]]` entry answers (`[[sim.dependencies]]`), and how a pool's provider slows
//! down and refuses under load (`[[sim.pools]]`), for its `adaptive` cap and latency
//! alerts.
//!
//! ```toml
//! [[sim.dependencies]]      # a [[breakers]] entry's dependency
//! name = "llm"
//! error_rate = 0.01         # share of calls it fails (default 0)
//! latency = { dist = "lognormal", mean = "700ms", sd = "200ms" }   # optional
//! outages = [{ at = "2h", for = "20m", error_rate = 1.0 }]         # stretches of the run
//!
//! [[sim.pools]]             # a pool's provider under load
//! pool = "vapi-main"
//! latency = { dist = "fixed", value = "800ms" }   # at light load
//! latency_per_call = "60ms" # added for every unit in use above `knee`
//! knee = 8                  # default 0
//! provider_limit = 20       # the provider refuses an outbound call beyond this many in use
//! ```

use super::{Reader, Spanned};
use crate::sim::dist::Dist;
use serde::Deserialize;

/// The most entries of each kind, and outages per dependency.
const MAX_ENTRIES: usize = 64;

/// What the operating policies see of the world in a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpsModel {
    /// `[[sim.dependencies]]`.
    pub dependencies: Vec<DependencyModel>,
    /// `[[sim.pools]]`.
    pub pools: Vec<PoolModel>,
}

/// How a dependency answers the calls of the flows that depend on it.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyModel {
    /// The `[[breakers]]` entry (index in the config's breakers).
    pub breaker: usize,
    /// Share of calls that fail.
    pub error_rate: f64,
    /// How long it takes to answer (`None`: no latency reported).
    pub latency: Option<Dist>,
    /// Stretches of the run with another error rate or latency.
    pub outages: Vec<Outage>,
}

/// A stretch of the run in which a dependency fails more, or answers slower.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    /// From (run ms).
    pub at_ms: u64,
    /// Until (run ms, exclusive).
    pub until_ms: u64,
    /// The error rate then (default: the dependency's).
    pub error_rate: Option<f64>,
    /// The latency then (default: the dependency's).
    pub latency: Option<Dist>,
}

impl DependencyModel {
    /// The error rate and latency in force at `now`.
    pub fn at(&self, now: u64) -> (f64, Option<&Dist>) {
        match self.outages.iter().find(|o| o.at_ms <= now && now < o.until_ms) {
            Some(o) => (o.error_rate.unwrap_or(self.error_rate), o.latency.as_ref().or(self.latency.as_ref())),
            None => (self.error_rate, self.latency.as_ref()),
        }
    }
}

/// How a pool's provider answers under load.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolModel {
    /// The pool (index in the config's pools).
    pub pool: usize,
    /// The latency at light load.
    pub latency: Dist,
    /// Added per unit in use above `knee`, ms.
    pub per_call_ms: f64,
    /// Units in use up to which the latency does not grow.
    pub knee: u32,
    /// Beyond this many units in use the provider refuses an outbound call.
    pub provider_limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DependencyToml {
    name: Spanned<String>,
    error_rate: Option<Spanned<f64>>,
    latency: Option<Spanned<super::DistToml>>,
    #[serde(default)]
    outages: Vec<Spanned<OutageToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageToml {
    at: Spanned<String>,
    #[serde(rename = "for")]
    lasting: Spanned<String>,
    error_rate: Option<Spanned<f64>>,
    latency: Option<Spanned<super::DistToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolToml {
    pool: Spanned<String>,
    latency: Spanned<super::DistToml>,
    latency_per_call: Option<Spanned<String>>,
    knee: Option<Spanned<i64>>,
    provider_limit: Option<Spanned<i64>>,
}

impl Reader<'_> {
    fn rate_share(&mut self, v: &Option<Spanned<f64>>, field: &str) -> Option<f64> {
        let v = v.as_ref()?;
        if !(0.0..=1.0).contains(v.get_ref()) {
            self.problem(v.span(), field, "must be between 0 and 1");
            return None;
        }
        Some(*v.get_ref())
    }

    /// `[[sim.dependencies]]` and `[[sim.pools]]`.
    pub(super) fn ops(&mut self, deps: &[Spanned<DependencyToml>], pools: &[Spanned<PoolToml>]) -> OpsModel {
        let mut out = OpsModel::default();
        for (what, n, span) in [
            ("sim.dependencies", deps.len(), deps.get(MAX_ENTRIES).map(Spanned::span)),
            ("sim.pools", pools.len(), pools.get(MAX_ENTRIES).map(Spanned::span)),
        ] {
            if let Some(span) = span {
                self.problem(span, what, format!("at most {MAX_ENTRIES} entries, not {n}"));
                return out;
            }
        }
        for (i, d) in deps.iter().enumerate() {
            let at = format!("sim.dependencies[{i}]");
            let d = d.get_ref();
            let name = d.name.get_ref();
            let Some(breaker) = self.config.breakers.iter().position(|b| &b.name == name) else {
                let known: Vec<&str> = self.config.breakers.iter().map(|b| b.name.as_str()).collect();
                self.problem(
                    d.name.span(),
                    &format!("{at}.name"),
                    format!("no [[breakers]] entry is named `{name}` (breakers: {})", super::list(&known)),
                );
                continue;
            };
            if out.dependencies.iter().any(|x| x.breaker == breaker) {
                self.problem(d.name.span(), &format!("{at}.name"), format!("`{name}` is described twice"));
            }
            let error_rate = self.rate_share(&d.error_rate, &format!("{at}.error_rate")).unwrap_or(0.0);
            let latency = d.latency.as_ref().and_then(|l| self.dist(l, &format!("{at}.latency")));
            if d.outages.len() > MAX_ENTRIES {
                self.problem(d.name.span(), &format!("{at}.outages"), format!("at most {MAX_ENTRIES} outages"));
                continue;
            }
            let mut outages = Vec::new();
            for (k, o) in d.outages.iter().enumerate() {
                let field = format!("{at}.outages[{k}]");
                let o = o.get_ref();
                let start = self.duration(&o.at, &format!("{field}.at"));
                let lasting = self.duration(&o.lasting, &format!("{field}.for"));
                let error_rate = self.rate_share(&o.error_rate, &format!("{field}.error_rate"));
                let latency = o.latency.as_ref().and_then(|l| self.dist(l, &format!("{field}.latency")));
                if let (Some(at_ms), Some(lasting)) = (start, lasting) {
                    outages.push(Outage { at_ms, until_ms: at_ms.saturating_add(lasting), error_rate, latency });
                }
            }
            out.dependencies.push(DependencyModel { breaker, error_rate, latency, outages });
        }
        for (i, p) in pools.iter().enumerate() {
            let at = format!("sim.pools[{i}]");
            let p = p.get_ref();
            let name = p.pool.get_ref();
            let Some(pool) = self.config.pools.iter().position(|x| &x.name == name) else {
                let known: Vec<&str> = self.config.pools.iter().map(|x| x.name.as_str()).collect();
                self.problem(
                    p.pool.span(),
                    &format!("{at}.pool"),
                    format!("no pool is named `{name}` (pools: {})", super::list(&known)),
                );
                continue;
            };
            if out.pools.iter().any(|x| x.pool == pool) {
                self.problem(p.pool.span(), &format!("{at}.pool"), format!("`{name}` is described twice"));
            }
            let latency = self.dist(&p.latency, &format!("{at}.latency"));
            let per_call_ms = match &p.latency_per_call {
                Some(d) => self.duration(d, &format!("{at}.latency_per_call")).unwrap_or(0) as f64,
                None => 0.0,
            };
            let mut units = |v: &Option<Spanned<i64>>, key: &str, min: i64| -> Option<u32> {
                let v = v.as_ref()?;
                if !(min..=1_000_000).contains(v.get_ref()) {
                    self.problem(v.span(), &format!("{at}.{key}"), format!("must be between {min} and 1,000,000"));
                    return None;
                }
                Some(*v.get_ref() as u32)
            };
            let knee = units(&p.knee, "knee", 0).unwrap_or(0);
            let provider_limit = units(&p.provider_limit, "provider_limit", 1);
            if let Some(latency) = latency {
                out.pools.push(PoolModel { pool, latency, per_call_ms, knee, provider_limit });
            }
        }
        out
    }
}
