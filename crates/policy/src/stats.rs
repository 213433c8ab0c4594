//! Figures of the last minute per pool and per flow (p95 wait, p95 latency, error rate,
//! rejections, decisions per second), kept from committed events and reported samples.
//!
//! A consumer like the metrics: it never reads the ledger. The alerts and the live page
//! read it. Each series keeps the points of the last [`WINDOW_MS`], at most
//! [`MAX_POINTS`] of them (beyond that the oldest go first, so a percentile is over the
//! latest points), which bounds memory whatever the traffic.

use callgate_core::{Event, PoolUnits};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;

/// The window of every figure: one minute.
pub const WINDOW_MS: u64 = 60_000;
/// Decisions per second are counted over the last 10 s: short enough to follow a burst on
/// the live page, long enough not to flicker between 0 and 1.
const RATE_MS: u64 = 10_000;
/// Points kept per series.
const MAX_POINTS: usize = 8_192;

/// Timestamped values, oldest first.
#[derive(Debug, Default, Clone)]
struct Series {
    points: VecDeque<(u64, f64)>,
}

impl Series {
    fn push(&mut self, at: u64, v: f64) {
        if self.points.len() == MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back((at, v));
    }

    fn prune(&mut self, now: u64) {
        let from = now.saturating_sub(WINDOW_MS);
        while self.points.front().is_some_and(|(at, _)| *at < from) {
            self.points.pop_front();
        }
    }

    fn since(&self, from: u64) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().filter(move |(at, _)| *at >= from).map(|(_, v)| *v)
    }

    fn count(&self, now: u64, window: u64) -> usize {
        self.since(now.saturating_sub(window)).count()
    }

    /// The 95th percentile (nearest rank) of the last minute; `None` without points.
    fn p95(&self, now: u64) -> Option<f64> {
        let mut v: Vec<f64> = self.since(now.saturating_sub(WINDOW_MS)).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = (v.len() as f64 * 0.95).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }

    fn mean(&self, now: u64) -> Option<f64> {
        let v: Vec<f64> = self.since(now.saturating_sub(WINDOW_MS)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// What is kept for one pool or flow.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// Waits of grants, ms (0 for immediate grants).
    waits: Series,
    /// Reported latencies, ms.
    latencies: Series,
    /// Reported outcomes: 1.0 failed, 0.0 ok.
    outcomes: Series,
    /// Rejections (value unused).
    rejections: Series,
    /// Decisions on arrival: granted, queued, rejected (value unused).
    decisions: Series,
}

impl Figures {
    fn prune(&mut self, now: u64) {
        for s in [&mut self.waits, &mut self.latencies, &mut self.outcomes, &mut self.rejections, &mut self.decisions] {
            s.prune(now);
        }
    }

    fn view(&self, name: &Arc<str>, now: u64) -> FiguresView {
        FiguresView {
            name: name.clone(),
            decisions_per_second: self.decisions.count(now, RATE_MS) as f64 / (RATE_MS as f64 / 1000.0),
            p95_wait_ms: self.waits.p95(now),
            p95_latency_ms: self.latencies.p95(now),
            error_rate: self.outcomes.mean(now),
            rejections_per_minute: self.rejections.count(now, WINDOW_MS) as u64,
            grants_per_minute: self.waits.count(now, WINDOW_MS) as u64,
        }
    }
}

/// One pool's or flow's figures, as `GET /v1/stats` shows them.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FiguresView {
    /// The pool or flow.
    pub name: Arc<str>,
    /// Decisions on arrival (granted, queued, rejected) per second, over the last 10 s.
    pub decisions_per_second: f64,
    /// 95th percentile of the waits of the last minute's grants, ms (`null`: none).
    pub p95_wait_ms: Option<f64>,
    /// 95th percentile of the latencies reported in the last minute, ms.
    pub p95_latency_ms: Option<f64>,
    /// Share of the outcomes reported in the last minute that failed.
    pub error_rate: Option<f64>,
    /// Rejections in the last minute (capacity, full waiting room, dependency down).
    pub rejections_per_minute: u64,
    /// Grants in the last minute.
    pub grants_per_minute: u64,
}

/// Which figure: the alert metrics that stats answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// 95th percentile of the waits of the last minute's grants, ms.
    P95Wait,
    /// 95th percentile of the latencies reported in the last minute, ms.
    P95Latency,
    /// Share of the outcomes reported in the last minute that failed.
    ErrorRate,
    /// Rejections in the last minute.
    RejectionsPerMinute,
}

/// Figures of every pool and flow, by index.
#[derive(Debug, Default)]
pub struct Stats {
    pools: Vec<Figures>,
    flows: Vec<Figures>,
}

impl Stats {
    /// Empty figures for `pools` pools and `flows` flows.
    pub fn new(pools: usize, flows: usize) -> Self {
        Stats { pools: vec![Figures::default(); pools], flows: vec![Figures::default(); flows] }
    }

    fn each(&mut self, pools: &[PoolUnits], flow: Option<usize>, mut f: impl FnMut(&mut Figures)) {
        for pu in pools {
            if let Some(p) = self.pools.get_mut(pu.pool.index()) {
                f(p);
            }
        }
        if let Some(fl) = flow.and_then(|i| self.flows.get_mut(i)) {
            f(fl);
        }
    }

    /// Counts committed ledger events.
    pub fn observe(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::Granted { lease, from_ticket } => {
                    let at = lease.granted_at;
                    let waited = from_ticket.map_or(0, |(_, w)| w) as f64;
                    self.each(&lease.pools, lease.flow.map(|f| f.index()), |x| {
                        x.waits.push(at, waited);
                        if from_ticket.is_none() {
                            x.decisions.push(at, 1.0);
                        }
                    });
                }
                Event::Queued { ticket, .. } => {
                    let at = ticket.enqueued_at;
                    self.each(&ticket.pools, ticket.flow.map(|f| f.index()), |x| x.decisions.push(at, 1.0));
                }
                Event::Rejected { pools, flow, at, .. } => {
                    self.each(pools, flow.map(|f| f.index()), |x| {
                        x.decisions.push(*at, 1.0);
                        x.rejections.push(*at, 1.0);
                    });
                }
                _ => {}
            }
        }
    }

    /// A caller of flow `f` (holding `pools`) was answered with the fallback.
    pub fn fallback(&mut self, f: usize, pools: &[PoolUnits], at: u64) {
        self.each(pools, Some(f), |x| {
            x.decisions.push(at, 1.0);
            x.rejections.push(at, 1.0);
        });
    }

    /// A reported latency and/or outcome, for these pools and this flow.
    pub fn sample(&mut self, pools: &[usize], flow: Option<usize>, at: u64, latency_ms: Option<f64>, ok: Option<bool>) {
        let apply = |x: &mut Figures| {
            if let Some(ms) = latency_ms {
                x.latencies.push(at, ms);
            }
            if let Some(ok) = ok {
                x.outcomes.push(at, if ok { 0.0 } else { 1.0 });
            }
        };
        for &p in pools {
            if let Some(x) = self.pools.get_mut(p) {
                apply(x);
            }
        }
        if let Some(x) = flow.and_then(|f| self.flows.get_mut(f)) {
            apply(x);
        }
    }

    /// Drops what fell out of the window.
    pub fn prune(&mut self, now: u64) {
        for x in self.pools.iter_mut().chain(self.flows.iter_mut()) {
            x.prune(now);
        }
    }

    fn figures(&self, pool: bool, i: usize) -> Option<&Figures> {
        if pool {
            self.pools.get(i)
        } else {
            self.flows.get(i)
        }
    }

    /// One figure of pool `i` (or flow `i` when `pool` is false) at `now`.
    pub fn figure(&self, pool: bool, i: usize, figure: Figure, now: u64) -> Option<f64> {
        let x = self.figures(pool, i)?;
        match figure {
            Figure::P95Wait => x.waits.p95(now),
            Figure::P95Latency => x.latencies.p95(now),
            Figure::ErrorRate => x.outcomes.mean(now),
            Figure::RejectionsPerMinute => Some(x.rejections.count(now, WINDOW_MS) as f64),
        }
    }

    /// Every pool's and flow's figures.
    pub fn views(&self, pools: &[Arc<str>], flows: &[Arc<str>], now: u64) -> (Vec<FiguresView>, Vec<FiguresView>) {
        let pv = self.pools.iter().zip(pools).map(|(x, n)| x.view(n, now)).collect();
        let fv = self.flows.iter().zip(flows).map(|(x, n)| x.view(n, now)).collect();
        (pv, fv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank_of_the_last_minute() {
        let mut s = Series::default();
        for i in 1..=100 {
            s.push(1_000 + i, i as f64);
        }
        assert_eq!(s.p95(2_000), Some(95.0));
        assert_eq!(s.p95(1_000 + 100 + WINDOW_MS + 1), None, "a minute later nothing is left");
        let mut one = Series::default();
        one.push(5, 7.0);
        assert_eq!(one.p95(10), Some(7.0));
    }

    #[test]
    fn samples_count_for_their_pools_and_flow() {
        let mut stats = Stats::new(2, 1);
        stats.sample(&[0], Some(0), 1_000, Some(800.0), Some(false));
        stats.sample(&[0], Some(0), 1_500, Some(1200.0), Some(true));
        assert_eq!(stats.figure(true, 0, Figure::P95Latency, 2_000), Some(1200.0));
        assert_eq!(stats.figure(true, 0, Figure::ErrorRate, 2_000), Some(0.5));
        assert_eq!(stats.figure(false, 0, Figure::ErrorRate, 2_000), Some(0.5));
        assert_eq!(stats.figure(true, 1, Figure::P95Latency, 2_000), None);
        assert_eq!(stats.figure(true, 1, Figure::RejectionsPerMinute, 2_000), Some(0.0));
    }
}
