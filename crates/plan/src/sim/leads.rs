//! The leads of a simulated campaign that runs a real `[[campaigns]]` entry, scheduled by
//! the real dialer's sans-IO code (`callgate_dialer`): its [`Scheduler`] (warm leads,
//! then fewer attempts, then the older lead: fresh leads before retries), its
//! [`Calendar`] (the window and batches in each lead's own time zone), its retry rules
//! (`retry::next`), and its caps (`caps::hold`: `max_per_week`, the windows and
//! `max_per_day` of the `[[calling_rules]]` covering the lead's region).
//!
//! Lead `i`'s time zone and region come from the campaign's `lead_mix`, drawn from
//! (seed, campaign, `i`) alone. Within a group every fresh lead is alike but for its
//! number, so only the next fresh lead of each group sits in the scheduler; it is
//! replaced by the group's next when it is taken. That keeps the real order (by lead
//! number among equals) at a memory cost of the retries in flight, not of the list.
//!
//! A campaign with `callbacks = true` also returns the callbacks inbound overflow booked:
//! each is a warm lead numbered from `leads` on, in the campaign's `default_timezone` and
//! no region, due at its promised time.

use super::rng::{splitmix64, Rng};
use super::scenario::{CampaignSource, LeadGroup};
use callgate_config::{CallingRule, CampaignConfig, RetryConfig};
use callgate_dialer::caps::{self, Hold};
use callgate_dialer::dial::Outcome;
use callgate_dialer::retry::{self, Next};
use callgate_dialer::schedule::{Lead, Scheduler};
use callgate_dialer::window::Calendar;
use chrono_tz::Tz;
use rustc_hash::FxHashMap;

/// One group of leads, resolved.
struct Group {
    tz: Tz,
    /// The `[[calling_rules]]` covering its region.
    rules: Vec<CallingRule>,
    /// Upper bound of its share in the cumulative draw.
    upto: f64,
}

/// What to do next.
pub(super) enum Take {
    /// Dial this lead.
    Lead(Lead),
    /// Nothing is callable before this instant (Unix ms).
    Until(u64),
    /// No lead is left.
    Done,
}

/// See the module docs.
pub(super) struct RealLeads {
    calendar: Calendar,
    scheduler: Scheduler,
    groups: Vec<Group>,
    /// [group] → the number of its fresh lead in the scheduler, if any.
    head: Vec<Option<u64>>,
    leads: u64,
    key: u64,
    retry: RetryConfig,
    /// Start times of each lead's attempts (Unix ms), kept only when a cap can bind.
    history: FxHashMap<u64, Vec<u64>>,
    track: bool,
    /// Times a lead was held back by a cap or a calling rule.
    pub(super) held: u64,
    /// The campaign's `default_timezone`: the time zone of the callbacks it returns.
    default_tz: Tz,
}

impl RealLeads {
    /// The leads of `spec`, which runs `real`; `rules` are the config's calling rules.
    pub(super) fn new(
        spec: &CampaignSource,
        real: &CampaignConfig,
        rules: &[CallingRule],
        seed: u64,
        stream: u64,
        wall: u64,
    ) -> RealLeads {
        let default = [LeadGroup { share: 1.0, timezone: real.timezone(), region: None }];
        let mix = if spec.lead_mix.is_empty() { &default[..] } else { &spec.lead_mix[..] };
        let mut upto = 0.0;
        let groups: Vec<Group> = mix
            .iter()
            .map(|g| {
                upto += g.share;
                let covering = callgate_dialer::regions::covering(rules, g.region.as_deref());
                Group { tz: g.timezone, rules: covering.into_iter().cloned().collect(), upto }
            })
            .collect();
        let daily = groups
            .iter()
            .filter_map(|g| callgate_dialer::regions::max_per_day(&g.rules.iter().collect::<Vec<_>>()))
            .min();
        let retry = spec.retry.clone();
        let track = retry.max_per_week < retry.max_attempts || daily.is_some_and(|d| d < retry.max_attempts);
        let mut leads = RealLeads {
            calendar: Calendar::new(real),
            scheduler: Scheduler::new(),
            head: vec![None; groups.len()],
            groups,
            leads: spec.leads,
            key: seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93),
            retry,
            history: FxHashMap::default(),
            track,
            held: 0,
            default_tz: real.timezone(),
        };
        for g in 0..leads.groups.len() {
            leads.refill(g, 0, wall);
        }
        leads
    }

    /// The group of lead `i`: from (seed, campaign, `i`) alone.
    fn group_of(&self, i: u64) -> usize {
        if self.groups.len() == 1 {
            return 0;
        }
        let mut k = self.key ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let u = Rng::stream(splitmix64(&mut k), 6_000_000).uniform();
        self.groups.iter().position(|g| u < g.upto).unwrap_or(self.groups.len() - 1)
    }

    /// The time zone of lead `i` (a callback's, from `leads` on: the campaign's default).
    pub(super) fn tz(&self, i: u64) -> Tz {
        if i >= self.leads {
            return self.default_tz;
        }
        self.groups[self.group_of(i)].tz
    }

    /// A callback booked by inbound overflow, as a warm lead of number `id` (at least
    /// `leads`) due at `due` (Unix ms): dialed before every cold lead from then on.
    pub(super) fn insert_callback(&mut self, id: u64, due: u64, wall: u64) {
        let lead = Lead { id, tz: self.default_tz, score: 0.0, attempts: 0, warm: true, not_before: due };
        self.scheduler.insert(lead, &self.calendar, wall);
    }

    /// Puts group `g`'s first fresh lead from number `from` on into the scheduler.
    fn refill(&mut self, g: usize, from: u64, wall: u64) {
        // Expected 1/share steps; a group no lead falls in is looked through once.
        let next = (from..self.leads).find(|&i| self.group_of(i) == g);
        self.head[g] = next;
        if let Some(id) = next {
            let lead = Lead { id, tz: self.groups[g].tz, score: 0.0, attempts: 0, warm: false, not_before: 0 };
            self.scheduler.insert(lead, &self.calendar, wall);
        }
    }

    /// The next lead to dial at `wall` (Unix ms), after the caps and calling rules.
    pub(super) fn take(&mut self, wall: u64) -> Take {
        while let Some(mut lead) = self.scheduler.pop(&self.calendar, wall) {
            // A callback (from `leads` on) is in no group: no region, so no calling rule.
            let g = (lead.id < self.leads).then(|| self.group_of(lead.id));
            let head = g.filter(|&g| self.head[g] == Some(lead.id));
            let history = &self.history;
            let times = |since: u64| {
                Ok::<_, ()>(
                    history
                        .get(&lead.id)
                        .map_or_else(Vec::new, |t| t.iter().copied().filter(|&x| x >= since).collect()),
                )
            };
            let rules: Vec<&CallingRule> = g.map_or_else(Vec::new, |g| self.groups[g].rules.iter().collect());
            let hold =
                caps::hold(self.retry.max_per_week, lead.attempts, &rules, lead.tz, wall, times).unwrap_or(Hold::Now);
            match hold {
                Hold::Now => {
                    // Taken: the group's next fresh lead takes its place. (A head held back
                    // stays the head: the fresh leads behind it, in the same zone and
                    // region with no attempts, would be held back alike.)
                    if let Some(g) = head {
                        self.refill(g, lead.id + 1, wall);
                    }
                    return Take::Lead(lead);
                }
                Hold::Until(t) => lead.not_before = t,
                Hold::Never => lead.not_before = wall + caps::WEEK_MS,
            }
            self.held += 1;
            self.scheduler.insert(lead, &self.calendar, wall);
        }
        match self.scheduler.next_due() {
            Some(at) => Take::Until(at),
            None => Take::Done,
        }
    }

    /// A lead taken but not dialed (no line): back in line, callable at once.
    pub(super) fn give_back(&mut self, lead: Lead, wall: u64) {
        self.scheduler.insert(Lead { not_before: wall, ..lead }, &self.calendar, wall);
    }

    /// An attempt on lead `id` started at `wall`.
    pub(super) fn started(&mut self, id: u64, wall: u64) {
        if self.track {
            let h = self.history.entry(id).or_default();
            h.retain(|&t| t + caps::WEEK_MS > wall);
            h.push(wall);
        }
    }

    /// Attempt number `attempts` of lead `id` ended at `wall` with `outcome`: when it is to
    /// be dialed again (Unix ms), or `None` when it is done or out of attempts.
    pub(super) fn ended(&mut self, id: u64, attempts: u32, outcome: Outcome, wall: u64) -> Option<u64> {
        match retry::next(&self.retry, outcome, attempts, wall) {
            Next::RetryAt(at) => {
                let tz = self.tz(id);
                let warm = id >= self.leads;
                let lead = Lead { id, tz, score: 0.0, attempts, warm, not_before: at };
                self.scheduler.insert(lead, &self.calendar, wall);
                Some(at)
            }
            _ => {
                self.history.remove(&id);
                None
            }
        }
    }

    /// Whether no lead is left (in line, waiting, or fresh).
    pub(super) fn is_empty(&self) -> bool {
        self.scheduler.is_empty()
    }
}
