//! Breakers: one core [`Breaker`] per `[[breakers]]` entry, and which flows depend on
//! which. The server's operating layer and the simulator both gate a flow's callers here.
//!
//! A flow's caller passes the gate when every breaker the flow depends on allows a call
//! (closed, or half-open with a probe left). The gate runs before the ledger is asked, so
//! a half-open probe can be spent on a call that then finds no capacity; an unreported
//! probe is written off by the core after `open_for`, so that costs at most one round.

use callgate_config::BreakerConfig;
use callgate_core::breaker::{Breaker, BreakerState, Cause, Transition, WindowCounts};
use std::sync::Arc;

/// A breaker and its name.
#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    breaker: Breaker,
    /// When it last changed state (Unix ms; 0: never).
    since: u64,
}

/// A breaker's state and window, for a view (`GET /v1/breakers`) or a report.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerStatus {
    /// The dependency's name.
    pub name: Arc<str>,
    /// Its state at the time asked.
    pub state: BreakerState,
    /// When it last changed state (ms; `None`: never).
    pub since: Option<u64>,
    /// Calls, failed and slow calls in the window (closed only: the window restarts on
    /// every change).
    pub counts: WindowCounts,
    /// The flows that answer with their fallback while it is open.
    pub flows: Vec<Arc<str>>,
}

/// Why a flow's caller did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    /// The first breaker that refused.
    pub breaker: usize,
    /// When it may let calls through again (Unix ms), if known.
    pub until: Option<u64>,
}

/// Every breaker, by index in the configuration.
#[derive(Debug, Default)]
pub struct Breakers {
    slots: Vec<Slot>,
    /// [flow] → the breakers it depends on.
    depends: Vec<Vec<usize>>,
    /// [breaker] → the flows that depend on it.
    dependents: Vec<Vec<Arc<str>>>,
    /// Why configured breakers were left out (invalid settings).
    problems: Vec<String>,
}

/// What a breaker's change does to the campaigns whose flow depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignsDo {
    /// Pause the running ones (the breaker opened: from closed, or again after a failed
    /// probe round).
    Pause,
    /// Resume those it paused: it turned half-open (a campaign's call passes its flow's
    /// gate as one of the probes, so a flow that only a campaign dials still finds out
    /// whether the dependency is back; if the probes fail it opens and pauses them again)
    /// or closed.
    Resume,
    /// Nothing.
    Nothing,
}

/// The campaigns' part of breaker transition `t`: the same rule in the server and in the
/// simulator.
pub fn campaigns_do(t: &Transition) -> CampaignsDo {
    match (t.from, t.to) {
        (BreakerState::Open { .. }, BreakerState::Open { .. }) => CampaignsDo::Nothing,
        (_, BreakerState::Open { .. }) => CampaignsDo::Pause,
        (_, BreakerState::HalfOpen | BreakerState::Closed) => CampaignsDo::Resume,
    }
}

/// The wire name of a cause, for events and logs.
pub fn cause_text(c: &Cause) -> String {
    match c {
        Cause::ErrorRate { failed, calls } => format!("error_rate {failed}/{calls}"),
        Cause::SlowRate { slow, calls } => format!("slow_rate {slow}/{calls}"),
        Cause::OpenElapsed => "open_for elapsed".into(),
        Cause::ProbeFailed => "probe failed".into(),
        Cause::SlowProbes { slow } => format!("{slow} slow probes"),
        Cause::ProbesSucceeded => "probes succeeded".into(),
    }
}

impl Breakers {
    /// From the configured breakers and, for each flow (by index), its `depends_on`.
    pub fn new<'a>(configs: &[BreakerConfig], flows: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let mut problems = Vec::new();
        let slots: Vec<Slot> = configs
            .iter()
            .filter_map(|c| match Breaker::new(c.spec()) {
                Ok(breaker) => Some(Slot { name: Arc::from(c.name.as_str()), breaker, since: 0 }),
                Err(e) => {
                    problems.push(format!("breaker `{}`: {}", c.name, e.0));
                    None
                }
            })
            .collect();
        let mut dependents = vec![Vec::new(); slots.len()];
        let depends = flows
            .into_iter()
            .map(|(flow, deps)| {
                deps.iter()
                    .filter_map(|d| slots.iter().position(|s| &*s.name == d))
                    .inspect(|&b| dependents[b].push(Arc::from(flow)))
                    .collect()
            })
            .collect();
        Breakers { slots, depends, dependents, problems }
    }

    /// Why configured breakers were left out (for the caller's log).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// How many breakers there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The index of the breaker named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| &*s.name == name)
    }

    /// The name of breaker `b`.
    pub fn name(&self, b: usize) -> &Arc<str> {
        &self.slots[b].name
    }

    /// The names of every breaker, in order.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.to_string()).collect()
    }

    /// The breakers flow `f` depends on.
    pub fn depends(&self, f: usize) -> &[usize] {
        self.depends.get(f).map_or(&[], Vec::as_slice)
    }

    fn note(&mut self, b: usize, t: &Option<Transition>) {
        if let Some(t) = t {
            self.slots[b].since = t.at;
        }
    }

    /// Does flow `f`'s caller pass? Every dependency is asked in turn; the first that
    /// refuses stops the walk (so no probe of a later one is spent). Returns the
    /// transitions that happened on the way (open → half-open) with the answer.
    pub fn pass(&mut self, f: usize, now: u64) -> (Result<(), Down>, Vec<(usize, Transition)>) {
        let mut transitions = Vec::new();
        let deps = self.depends.get(f).cloned().unwrap_or_default();
        for b in deps {
            let admission = self.slots[b].breaker.allow(now);
            self.note(b, &admission.transition);
            if let Some(t) = admission.transition {
                transitions.push((b, t));
            }
            if !admission.allowed {
                let until = match self.slots[b].breaker.state(now) {
                    BreakerState::Open { until } => Some(until),
                    _ => None,
                };
                return (Err(Down { breaker: b, until }), transitions);
            }
        }
        (Ok(()), transitions)
    }

    /// Records an outcome of dependency `b`.
    pub fn record(&mut self, b: usize, now: u64, ok: bool, latency_ms: Option<u64>) -> Option<Transition> {
        let t = self.slots[b].breaker.record(now, ok, latency_ms);
        self.note(b, &t);
        t
    }

    /// What time alone changes (open → half-open), for every breaker.
    pub fn advance(&mut self, now: u64) -> Vec<(usize, Transition)> {
        let mut out = Vec::new();
        for b in 0..self.slots.len() {
            let t = self.slots[b].breaker.advance(now);
            self.note(b, &t);
            if let Some(t) = t {
                out.push((b, t));
            }
        }
        out
    }

    /// Whether breaker `b` is open at `now`.
    pub fn is_open(&self, b: usize, now: u64) -> bool {
        matches!(self.slots[b].breaker.state(now), BreakerState::Open { .. })
    }

    /// Every breaker's state and window at `now`.
    pub fn statuses(&self, now: u64) -> Vec<BreakerStatus> {
        self.slots
            .iter()
            .enumerate()
            .map(|(b, s)| BreakerStatus {
                name: s.name.clone(),
                state: s.breaker.state(now),
                since: (s.since > 0).then_some(s.since),
                counts: s.breaker.counts(now),
                flows: self.dependents[b].clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Breakers {
        let mut llm = BreakerConfig::new("llm");
        llm.min_calls = 2;
        llm.open_for = std::time::Duration::from_secs(10);
        llm.half_open_probes = 1;
        let deps = [String::from("llm")];
        Breakers::new(&[llm], [("support", &deps[..]), ("sales", &[][..])])
    }

    #[test]
    fn a_flow_passes_while_its_dependency_is_closed_and_is_refused_while_it_is_open() {
        let mut b = breakers();
        assert_eq!(b.pass(0, 1_000).0, Ok(()));
        assert_eq!(b.record(0, 1_000, false, None), None, "one failure is below min_calls");
        let t = b.record(0, 1_100, false, None).expect("two of two failed");
        assert_eq!(t.to, BreakerState::Open { until: 11_100 });
        assert_eq!(b.pass(0, 2_000).0, Err(Down { breaker: 0, until: Some(11_100) }));
        assert_eq!(b.pass(1, 2_000).0, Ok(()), "a flow without dependencies always passes");
        let views = b.statuses(2_000);
        assert_eq!(views[0].state, BreakerState::Open { until: 11_100 });
        assert_eq!(views[0].flows, [Arc::from("support")]);

        let (answer, transitions) = b.pass(0, 11_100);
        assert_eq!(answer, Ok(()), "the first call after open_for is a probe");
        assert_eq!(transitions[0].1.to, BreakerState::HalfOpen);
        assert!(b.pass(0, 11_200).0.is_err(), "one probe at a time");
        let t = b.record(0, 11_300, true, Some(200)).expect("the probe closes it");
        assert_eq!(t.to, BreakerState::Closed);
        assert_eq!(b.statuses(11_300)[0].since, Some(11_300));
    }
}
