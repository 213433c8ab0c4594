//! A reserve that follows the forecast (`reserve = { inbound = "forecast" }`) in a
//! simulation: the forecast is the scenario's own arrival profile (what a perfect
//! forecast would say), so a run shows what the policy does when the forecast is right.
//! Each 15-minute interval holds back the lines the class's expected arrivals need for
//! the pool's `forecast` target (Erlang A with its patience) less the calls they keep busy
//! on average (a reserve holds back free units), between floor and ceiling: the server's
//! rule (`crates/runtime/src/forecast.rs`, `Plan::units`).

use super::scenario::Scenario;
use crate::erlang::{fewest_lines, Target, Traffic};

/// The length of one interval (ms).
pub(crate) const INTERVAL_MS: u64 = 15 * 60 * 1000;

/// `(pool, class, units)` for every pool whose reserve follows the forecast, for the
/// interval that holds `now` (simulated ms).
pub(crate) fn reserves(sc: &Scenario, now: u64) -> Vec<(String, String, u32)> {
    let start = (now - now % INTERVAL_MS) as f64;
    let end = start + INTERVAL_MS as f64;
    let mut out = Vec::new();
    for pool in &sc.config.pools {
        let (Some(class), Some(f)) = (pool.forecast_class(), pool.forecast.as_ref()) else { continue };
        // The class's flows through this pool (or those the pool names).
        let takes = |flow: usize| {
            sc.config.flows.get(flow).is_some_and(|fl| {
                if f.flows.is_empty() {
                    fl.class == class && fl.pools.iter().any(|p| p.pool == pool.name)
                } else {
                    f.flows.contains(&fl.name)
                }
            })
        };
        let (mut arrivals, mut busy_ms) = (0.0, 0.0);
        for a in sc.arrivals.iter().filter(|a| takes(a.flow)) {
            let n = a.rate.expected_arrivals(end) - a.rate.expected_arrivals(start);
            arrivals += n;
            busy_ms += n * a.hold.mean_ms();
        }
        let erlangs = busy_ms / INTERVAL_MS as f64;
        let lines = if arrivals > 0.0 {
            let aht_s = busy_ms / arrivals / 1000.0;
            let patience = (!f.patience.is_zero()).then_some(f.patience.as_secs_f64());
            let target = Target::ServiceLevel { level: f.service_level.0, within_s: f.within.as_secs_f64() };
            Traffic::new(erlangs, aht_s.max(0.001), patience).and_then(|t| fewest_lines(&t, target)).unwrap_or(f.floor)
        } else {
            0
        };
        // Free units held back: the lines needed less the calls in progress on average.
        let free = lines.saturating_sub(erlangs.floor() as u32);
        let units = free.clamp(f.floor, pool.forecast_ceiling().max(f.floor));
        out.push((pool.name.clone(), class.to_owned(), units));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_reserve_follows_the_arrival_profile_between_floor_and_ceiling() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reserve-forecast.toml");
        let sc = Scenario::from_file(&path).unwrap();
        let hour = 3_600_000;
        let units = |h: u64| reserves(&sc, h * hour)[0].2;
        // 03:00, one call an hour: the floor. 12:00, 70 calls an hour of 3 minutes: 3.5
        // erlangs busy, the lines for 80% within 15 s less those, at most the ceiling 6.
        assert_eq!(reserves(&sc, 3 * hour), [("vapi-main".to_owned(), "inbound".to_owned(), 1)]);
        assert!((2..=6).contains(&units(12)), "{}", units(12));
        assert!(units(12) > units(3));
        // Constant within an interval: it changes only at 15-minute boundaries.
        assert_eq!(units(12), reserves(&sc, 12 * hour + INTERVAL_MS - 1)[0].2);
    }
}
