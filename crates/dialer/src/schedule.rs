//! Which lead to dial next: the scheduler of one campaign's pending leads.
//!
//! Two heaps. `ready` holds the leads that may be called now, best first: warm leads
//! (callbacks) first, then the higher score, then the fewer attempts, then the older
//! lead. `later` holds the others by the instant they become callable (their retry time,
//! moved to the next opening of the calling window in their own time zone and of the
//! campaign's batches). Taking the next lead moves what has come due from `later` to
//! `ready` and pops the best: O(log n) per lead, whatever the number of pending leads.
//!
//! A lead can sit in `ready` while its window closes (a long list, a slow campaign): the
//! pop checks the window again and sends such a lead back to `later`, to its next opening.
//! Removed or re-inserted leads leave stale heap entries behind, recognised by a stamp and
//! skipped (lazy deletion); the heaps are rebuilt when stale entries outnumber live ones.

use crate::window::Calendar;
use chrono_tz::Tz;
use rustc_hash::FxHashMap;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A pending lead as the scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lead {
    /// Lead id.
    pub id: u64,
    /// Its time zone.
    pub tz: Tz,
    /// Higher is dialed first.
    pub score: f64,
    /// Attempts so far.
    pub attempts: u32,
    /// A callback or hot lead: dialed before every other.
    pub warm: bool,
    /// Not before (Unix ms): its retry time, or its callback's promised time.
    pub not_before: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    lead: Lead,
    /// Stamp of its live heap entry.
    stamp: u64,
    /// `Some(at)`: waiting in `later` until `at`; `None`: in `ready` (or parked).
    at: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Ready {
    warm: bool,
    score: f64,
    attempts: u32,
    id: u64,
    stamp: u64,
}

impl PartialEq for Ready {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ready {
    /// Greater is dialed first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.warm
            .cmp(&other.warm)
            .then(self.score.total_cmp(&other.score))
            .then(other.attempts.cmp(&self.attempts))
            .then(other.id.cmp(&self.id))
            .then(self.stamp.cmp(&other.stamp))
    }
}

/// One campaign's pending leads. See the module docs.
#[derive(Debug, Default)]
pub struct Scheduler {
    leads: FxHashMap<u64, Entry>,
    ready: BinaryHeap<Ready>,
    later: BinaryHeap<Reverse<(u64, u64, u64)>>,
    /// Leads that no batch will ever let through (kept: they are still pending).
    parked: usize,
    next_stamp: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Pending leads held (ready, waiting and parked).
    pub fn len(&self) -> usize {
        self.leads.len()
    }

    /// Whether no lead is held.
    pub fn is_empty(&self) -> bool {
        self.leads.is_empty()
    }

    /// Leads that no scheduled batch will let through any more.
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Whether the lead is held.
    pub fn contains(&self, id: u64) -> bool {
        self.leads.contains_key(&id)
    }

    /// Adds a lead (or moves one that is held) to its place, as of `now`.
    pub fn insert(&mut self, lead: Lead, cal: &Calendar, now: u64) {
        self.remove(lead.id);
        self.place(lead, cal, now);
    }

    fn place(&mut self, lead: Lead, cal: &Calendar, now: u64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let at = match cal.eligible_at(lead.tz, lead.not_before.max(now)) {
            Some(at) if at <= now => {
                self.ready.push(Ready {
                    warm: lead.warm,
                    score: lead.score,
                    attempts: lead.attempts,
                    id: lead.id,
                    stamp,
                });
                None
            }
            Some(at) => {
                self.later.push(Reverse((at, lead.id, stamp)));
                Some(at)
            }
            None => {
                self.parked += 1;
                Some(u64::MAX)
            }
        };
        self.leads.insert(lead.id, Entry { lead, stamp, at });
    }

    /// Takes a lead out (it is being dialed elsewhere, or is gone).
    pub fn remove(&mut self, id: u64) -> Option<Lead> {
        let e = self.leads.remove(&id)?;
        if e.at == Some(u64::MAX) {
            self.parked -= 1;
        }
        self.compact_if_needed();
        Some(e.lead)
    }

    /// The best lead that may be called at `now`, taken out of the scheduler.
    pub fn pop(&mut self, cal: &Calendar, now: u64) -> Option<Lead> {
        self.promote(now);
        while let Some(top) = self.ready.pop() {
            let Some(e) = self.leads.get(&top.id) else { continue };
            if e.stamp != top.stamp {
                continue;
            }
            let lead = e.lead;
            if !cal.is_open(lead.tz, now) {
                // Its window closed while it waited in line: back to its next opening.
                self.leads.remove(&lead.id);
                self.place(lead, cal, now);
                continue;
            }
            self.leads.remove(&lead.id);
            return Some(lead);
        }
        None
    }

    /// The earliest instant at which a waiting lead becomes callable (`None`: no lead
    /// waits, or only parked ones).
    pub fn next_due(&mut self) -> Option<u64> {
        while let Some(Reverse((at, id, stamp))) = self.later.peek().copied() {
            if self.leads.get(&id).is_some_and(|e| e.stamp == stamp) {
                return Some(at);
            }
            self.later.pop();
        }
        None
    }

    /// Whether a lead may be called at `now` (without taking it).
    pub fn has_ready(&mut self, now: u64) -> bool {
        self.promote(now);
        while let Some(top) = self.ready.peek() {
            if self.leads.get(&top.id).is_some_and(|e| e.stamp == top.stamp) {
                return true;
            }
            self.ready.pop();
        }
        false
    }

    /// Every lead again from scratch (after the calendar changed).
    pub fn replan(&mut self, cal: &Calendar, now: u64) {
        let leads: Vec<Lead> = self.leads.values().map(|e| e.lead).collect();
        *self = Scheduler { next_stamp: self.next_stamp, ..Scheduler::default() };
        for l in leads {
            self.place(l, cal, now);
        }
    }

    fn promote(&mut self, now: u64) {
        while let Some(Reverse((at, id, stamp))) = self.later.peek().copied() {
            if at > now {
                break;
            }
            self.later.pop();
            let Some(e) = self.leads.get_mut(&id) else { continue };
            if e.stamp != stamp {
                continue;
            }
            e.at = None;
            self.ready.push(Ready { warm: e.lead.warm, score: e.lead.score, attempts: e.lead.attempts, id, stamp });
        }
    }

    fn compact_if_needed(&mut self) {
        let live = self.leads.len();
        if self.ready.len() + self.later.len() > 2 * live + 1024 {
            let leads = &self.leads;
            let valid = |id: u64, stamp: u64| leads.get(&id).is_some_and(|e| e.stamp == stamp);
            self.ready = std::mem::take(&mut self.ready).into_iter().filter(|r| valid(r.id, r.stamp)).collect();
            self.later =
                std::mem::take(&mut self.later).into_iter().filter(|Reverse((_, id, s))| valid(*id, *s)).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_config::{ClockTime, Weekday, WindowConfig};

    fn all_day() -> Calendar {
        Calendar::from_window(
            &WindowConfig { start: ClockTime(0), end: ClockTime(24 * 60), days: Weekday::ALL.to_vec() },
            vec![],
        )
    }

    fn lead(id: u64, score: f64, attempts: u32, warm: bool, not_before: u64) -> Lead {
        Lead { id, tz: chrono_tz::UTC, score, attempts, warm, not_before }
    }

    #[test]
    fn warm_first_then_score_then_fewest_attempts() {
        let cal = all_day();
        let mut s = Scheduler::new();
        s.insert(lead(1, 5.0, 0, false, 0), &cal, 100);
        s.insert(lead(2, 9.0, 2, false, 0), &cal, 100);
        s.insert(lead(3, 9.0, 1, false, 0), &cal, 100);
        s.insert(lead(4, 0.0, 0, true, 0), &cal, 100);
        s.insert(lead(5, 100.0, 0, false, 500), &cal, 100); // not due yet
        let order: Vec<u64> = std::iter::from_fn(|| s.pop(&cal, 100).map(|l| l.id)).collect();
        assert_eq!(order, [4, 3, 2, 1]);
        assert_eq!(s.next_due(), Some(500));
        assert_eq!(s.pop(&cal, 499), None);
        assert_eq!(s.pop(&cal, 500).map(|l| l.id), Some(5));
        assert!(s.is_empty());
    }

    #[test]
    fn a_reinserted_lead_takes_its_new_place_once() {
        let cal = all_day();
        let mut s = Scheduler::new();
        s.insert(lead(1, 1.0, 0, false, 0), &cal, 0);
        s.insert(lead(1, 1.0, 1, false, 50), &cal, 0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.pop(&cal, 10), None);
        assert_eq!(s.pop(&cal, 50).map(|l| l.attempts), Some(1));
        assert_eq!(s.pop(&cal, 50), None);
    }

    #[test]
    fn a_lead_whose_window_closed_while_waiting_goes_back() {
        let ny = chrono_tz::America::New_York;
        let t = |s: &str| callgate_config::parse_datetime(s, ny).unwrap();
        let cal = Calendar::from_window(&WindowConfig::default(), vec![]);
        let mut s = Scheduler::new();
        s.insert(
            Lead { id: 7, tz: ny, score: 0.0, attempts: 0, warm: false, not_before: 0 },
            &cal,
            t("2026-01-15 20:00"),
        );
        assert_eq!(s.pop(&cal, t("2026-01-15 21:30")), None, "the window closed at 21:00");
        assert_eq!(s.next_due(), Some(t("2026-01-16 08:00")));
        assert_eq!(s.pop(&cal, t("2026-01-16 08:00")).map(|l| l.id), Some(7));
    }
}
