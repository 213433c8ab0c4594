//! The policy simulator: callers and dialers from a scenario, run through the real
//! ledger (`callgate_core::Ledger`, the code the server runs) on a virtual clock.
//!
//! # How a run goes
//! - Each `[[arrivals]]` stream is a Poisson process (constant, hourly profile, bursts).
//!   A caller asks the ledger for a line through its flow: granted, queued, or rejected
//!   (then the flow's first overflow action is counted). A queued caller either gets a
//!   line, hangs up when its patience runs out (the simulator cancels the ticket), or
//!   reaches the waiting room's `max_wait` (the ledger times it out in `tick`: overflow).
//! - A caller refused or tired of waiting may call again later (`retrial`): the same
//!   person, counted once among the people, once per call among the calls.
//! - Each `[[sim.campaigns]]` dialer places an attempt whenever a lead is ready, the carrier
//!   allows (`cps`), the calling window is open and the ledger grants a line without
//!   waiting; otherwise it waits for the next release. So it only ever uses capacity that
//!   no waiting caller claims and that its class may take after the reserves.
//! - Events at the same millisecond run in the order they were scheduled; calls that end
//!   at a waiting caller's deadline end first (in that caller's favour).
//! - Arrivals stop at `duration` (or after `calls` callers); the run then goes on until
//!   every call has ended, so every counted caller has an outcome.
//!
//! # What is measured
//! Callers who arrive inside the window `[warmup, end of arrivals)` are counted, whenever
//! their outcome comes. Pool utilization and waiting callers are time averages over the
//! same window. See [`FlowReport`] for the definitions (they match [`crate::erlang`]'s, so
//! the two can be compared).
//!
//! # Determinism
//! Every random number comes from streams seeded by `[sim] seed`: one stream for each
//! arrival stream's timing, one for its callers' call lengths and patience (drawn for
//! every caller, whatever happens to them), one per (campaign, lead, attempt), and one per
//! (stream, person, call) for whether and when a person calls again. Same
//! seed, same result; and two policies run with the same seed meet exactly the same
//! callers and leads, which makes `--compare` differences due to the policy alone.

mod dist;
mod engine;
mod forecast;
mod leads;
mod ops;
mod report;
mod rng;
mod scenario;
mod stats;
mod svg;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_campaigns;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_parity;

pub use dist::{Burst, Dist, RateProfile};
pub use engine::{run, RunOptions};
pub use report::{
    compare_text, AdaptiveReport, AlertReport, BreakerReport, CallbackReport, CampaignReport, CostReport, FlowReport,
    LostReport, OpsLine, OpsReport, OverflowReasons, PoolReport, Report, ScheduleChange, Series, SeriesLine,
};
pub use scenario::{
    parse_rate, ArrivalSource, CallbackPolicy, CallingWindow, CampaignSource, DependencyModel, LeadGroup, OpsModel,
    Outage, PoolModel, Retrial, Scenario, SimSettings, MAX_CALLS,
};
pub use svg::chart;

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}
