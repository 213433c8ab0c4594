//! When a lead that may not be called now may be: after the campaign's weekly cap
//! (`retry.max_per_week`), and inside the windows and under the 24-hour caps of the
//! `[[calling_rules]]` that cover the callee's region, in the lead's time zone.
//!
//! Pure: the attempts already made are read through a closure, only when a cap could
//! bind (a lead with fewer attempts in all than the cap cannot have reached it), so a
//! store is asked only then. The simulator runs this for every lead it dials.

use crate::regions;
use callgate_config::CallingRule;
use chrono_tz::Tz;

/// Seven days, the window of `max_per_week`.
pub const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
/// A day, the window of a calling rule's `max_per_day`.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// Whether a lead may be called now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// It may.
    Now,
    /// Not before this instant (Unix ms).
    Until(u64),
    /// The rules covering its region never allow a call (windows on days that exclude
    /// each other): look again in a week (a reload may fix the rules).
    Never,
}

/// Whether a lead in `tz` with `attempts` so far may be called at `now`, under the weekly
/// cap `week` and the `covering` rules. `attempts_since(t)` gives the start times (Unix
/// ms, oldest first) of its attempts since `t`.
pub fn hold<E>(
    week: u32,
    attempts: u32,
    covering: &[&CallingRule],
    tz: Tz,
    now: u64,
    mut attempts_since: impl FnMut(u64) -> Result<Vec<u64>, E>,
) -> Result<Hold, E> {
    if attempts >= week {
        let times = attempts_since(now.saturating_sub(WEEK_MS))?;
        if times.len() as u32 >= week {
            return Ok(Hold::Until(times[times.len() - week as usize] + WEEK_MS));
        }
    }
    if covering.is_empty() {
        return Ok(Hold::Now);
    }
    let mut t = now;
    if let Some(cap) = regions::max_per_day(covering) {
        if attempts >= cap {
            let times = attempts_since(now.saturating_sub(DAY_MS))?;
            if times.len() as u32 >= cap {
                t = times[times.len() - cap as usize] + DAY_MS;
            }
        }
    }
    Ok(match regions::open_at(covering, tz, t) {
        Some(open) if open == now => Hold::Now,
        Some(open) => Hold::Until(open),
        None => Hold::Never,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, tz: Tz) -> u64 {
        callgate_config::parse_datetime(text, tz).unwrap()
    }

    #[test]
    fn the_weekly_cap_then_the_rules_window_and_daily_cap() {
        let ny = chrono_tz::America::New_York;
        let none: Vec<&CallingRule> = Vec::new();
        let monday = at("2026-01-12 10:00", ny);
        let times =
            |n: usize, step: u64| move |_| Ok::<_, ()>((0..n as u64).map(|i| monday - (n as u64 - i) * step).collect());
        // Two a week, two made in the last hours: not before a week after the first.
        let h = hold(2, 2, &none, ny, monday, times(2, 3_600_000)).unwrap();
        assert_eq!(h, Hold::Until(monday - 2 * 3_600_000 + WEEK_MS));
        assert_eq!(hold(2, 1, &none, ny, monday, times(0, 1)).unwrap(), Hold::Now, "below the cap");
        let fl = callgate_config::default_calling_rules().into_iter().find(|r| r.region == "US-FL").unwrap();
        let rules = [&fl];
        // 08:00-20:00, three a day: the fourth waits for the first to be a day old.
        let h = hold(7, 3, &rules, ny, monday, times(3, 600_000)).unwrap();
        assert_eq!(h, Hold::Until(monday - 3 * 600_000 + DAY_MS));
        let night = at("2026-01-12 21:00", ny);
        assert_eq!(hold(7, 0, &rules, ny, night, times(0, 1)).unwrap(), Hold::Until(at("2026-01-13 08:00", ny)));
    }
}
