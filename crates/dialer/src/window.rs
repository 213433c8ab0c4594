//! When a lead may be called: the calling window in the lead's own time zone, on the
//! allowed days, inside the campaign's scheduled batches.
//!
//! A window `start..end` lets a call *start* at `start` and up to (not at) `end`, local
//! time. An end before the start spans midnight (22:00–02:00), and then the day named is
//! the day the window opens. Local times that a daylight-saving change skips open at the
//! first instant that exists after them.

use callgate_config::{CampaignConfig, WindowConfig};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// A campaign's calendar: its window and batches, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    start_min: u32,
    end_min: u32,
    /// Allowed days, Monday = 0.
    days: [bool; 7],
    /// `(start, end)` Unix ms, sorted; empty: no restriction.
    batches: Vec<(u64, u64)>,
}

impl Calendar {
    /// From a validated campaign (a batch that does not resolve is left out).
    pub fn new(c: &CampaignConfig) -> Calendar {
        let tz = c.timezone();
        let mut batches: Vec<(u64, u64)> = c.batches.iter().filter_map(|b| b.resolve(tz).ok()).collect();
        batches.sort_unstable();
        Calendar::from_window(&c.window, batches)
    }

    /// From a window and batches (Unix ms).
    pub fn from_window(w: &WindowConfig, batches: Vec<(u64, u64)>) -> Calendar {
        let mut days = [false; 7];
        for d in &w.days {
            days[d.chrono().num_days_from_monday() as usize] = true;
        }
        Calendar { start_min: w.start.minutes(), end_min: w.end.minutes(), days, batches }
    }

    /// The first instant at or after `t` (Unix ms) at which a lead in `tz` may be called,
    /// or `None` when there is none (every batch is over).
    pub fn eligible_at(&self, tz: Tz, t: u64) -> Option<u64> {
        let mut t = t;
        // Each step moves `t` to the next batch or window opening; a window and a batch
        // that keep missing each other still meet within a few steps, or never.
        for _ in 0..64 {
            let b = self.batch_open(t)?;
            let w = self.window_open(tz, b)?;
            if w == b {
                return Some(w);
            }
            t = w;
        }
        None
    }

    /// Whether a lead in `tz` may be called at `t`.
    pub fn is_open(&self, tz: Tz, t: u64) -> bool {
        self.eligible_at(tz, t) == Some(t)
    }

    fn batch_open(&self, t: u64) -> Option<u64> {
        if self.batches.is_empty() {
            return Some(t);
        }
        self.batches.iter().filter(|&&(_, end)| end > t).map(|&(start, _)| start.max(t)).min()
    }

    fn window_open(&self, tz: Tz, t: u64) -> Option<u64> {
        let now = DateTime::from_timestamp_millis(i64::try_from(t).ok()?)?.with_timezone(&tz);
        let today = now.date_naive();
        // Yesterday's window may still be open (one that spans midnight); a week and a day
        // ahead always finds an allowed day.
        for offset in -1..=8i64 {
            let day = today.checked_add_signed(ChronoDuration::days(offset))?;
            if !self.days[day.weekday().num_days_from_monday() as usize] {
                continue;
            }
            let close_day = if self.end_min <= self.start_min { day.succ_opt()? } else { day };
            // Days before 1970 have no Unix ms: they hold no window to be in.
            let (Some(open), Some(close)) = (local_ms(tz, day, self.start_min), local_ms(tz, close_day, self.end_min))
            else {
                continue;
            };
            if t < close && open < close {
                return Some(open.max(t));
            }
        }
        None
    }
}

/// Unix ms of `minutes` after local midnight of `day` in `tz`. 24:00 is the next midnight;
/// a time skipped by a DST change moves to the first minute that exists after it.
fn local_ms(tz: Tz, day: NaiveDate, minutes: u32) -> Option<u64> {
    let (day, minutes) = if minutes >= 24 * 60 { (day.succ_opt()?, minutes - 24 * 60) } else { (day, minutes) };
    let mut naive = day.and_time(NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0)?);
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&naive).earliest() {
            return u64::try_from(dt.timestamp_millis()).ok();
        }
        naive += ChronoDuration::minutes(30);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::{ClockTime, Weekday};

    fn ms(tz: Tz, s: &str) -> u64 {
        callgate_config::parse_datetime(s, tz).unwrap()
    }

    fn window(start: &str, end: &str, days: &[Weekday]) -> WindowConfig {
        WindowConfig {
            start: ClockTime::parse(start).unwrap(),
            end: ClockTime::parse(end).unwrap(),
            days: days.to_vec(),
        }
    }

    #[test]
    fn a_lead_at_night_waits_for_the_morning_in_its_own_zone() {
        let ny = chrono_tz::America::New_York;
        let la = chrono_tz::America::Los_Angeles;
        let cal = Calendar::from_window(&window("08:00", "21:00", &Weekday::ALL), vec![]);
        // 2026-01-15 03:00 in New York: closed until 08:00 New York.
        let t = ms(ny, "2026-01-15 03:00");
        assert!(!cal.is_open(ny, t));
        assert_eq!(cal.eligible_at(ny, t), Some(ms(ny, "2026-01-15 08:00")));
        // 2026-01-15 12:00 New York is 09:00 in Los Angeles: open for both.
        let noon = ms(ny, "2026-01-15 12:00");
        assert!(cal.is_open(ny, noon) && cal.is_open(la, noon));
        // 22:30 New York is 19:30 in Los Angeles: closed there, open here.
        let late = ms(ny, "2026-01-15 22:30");
        assert!(!cal.is_open(ny, late) && cal.is_open(la, late));
        // The end is exclusive.
        assert!(!cal.is_open(ny, ms(ny, "2026-01-15 21:00")));
    }

    #[test]
    fn days_of_week_and_midnight_spans() {
        let ny = chrono_tz::America::New_York;
        let weekdays = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri];
        let cal = Calendar::from_window(&window("09:00", "17:00", &weekdays), vec![]);
        // Saturday 2026-01-17 10:00 → Monday 09:00.
        assert_eq!(cal.eligible_at(ny, ms(ny, "2026-01-17 10:00")), Some(ms(ny, "2026-01-19 09:00")));
        let night = Calendar::from_window(&window("22:00", "02:00", &[Weekday::Fri]), vec![]);
        // Saturday 01:00 is still Friday's window.
        let t = ms(ny, "2026-01-17 01:00");
        assert!(night.is_open(ny, t));
        assert_eq!(night.eligible_at(ny, ms(ny, "2026-01-17 03:00")), Some(ms(ny, "2026-01-23 22:00")));
    }

    #[test]
    fn batches_restrict_the_window() {
        let ny = chrono_tz::America::New_York;
        let batch = (ms(ny, "2026-03-02 12:00"), ms(ny, "2026-03-02 13:00"));
        let cal = Calendar::from_window(&window("08:00", "21:00", &Weekday::ALL), vec![batch]);
        assert_eq!(cal.eligible_at(ny, ms(ny, "2026-03-01 09:00")), Some(batch.0));
        assert_eq!(cal.eligible_at(ny, ms(ny, "2026-03-02 12:30")), Some(ms(ny, "2026-03-02 12:30")));
        assert_eq!(cal.eligible_at(ny, ms(ny, "2026-03-02 13:00")), None, "the last batch is over");
        // A lead whose morning falls after the batch never gets a call in it.
        let tokyo = chrono_tz::Asia::Tokyo; // 12:00 New York is 02:00 in Tokyo
        assert_eq!(cal.eligible_at(tokyo, ms(ny, "2026-03-01 09:00")), None);
    }

    #[test]
    fn a_window_opening_in_a_skipped_hour_opens_after_it() {
        let ny = chrono_tz::America::New_York;
        let cal = Calendar::from_window(&window("02:30", "05:00", &Weekday::ALL), vec![]);
        // 2026-03-08: clocks jump from 02:00 to 03:00.
        assert_eq!(cal.eligible_at(ny, ms(ny, "2026-03-08 01:00")), Some(ms(ny, "2026-03-08 03:00")));
    }
}
