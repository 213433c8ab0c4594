//! `[[schedules]]`: policy that changes by the hour. From a time of day, on some days of
//! the week, in a time zone, a pool's limit or reserves, a campaign's cap or rate, or a
//! flow's overflow chain take other values, until the schedule's end.
//!
//! What is active is a pure function of an instant ([`Config::active_schedules`]), and
//! what the configuration becomes under the active schedules is another
//! ([`Config::scheduled`]); the server and the simulator both call these two, so a policy
//! is the same in either. When schedules that overlap set the same value, the one later
//! in the file wins; a reserve is set per class (classes a schedule does not name keep
//! their reserve).

use crate::campaign::{ClockTime, Real, Weekday};
use crate::overflow::{deserialize_chain, Overflow};
use crate::problem::{list, Field, Problems};
use crate::Config;
use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most `[[schedules]]` a configuration may have: every one is evaluated on every
/// check, and a day with more periods than this is not a policy anyone can read.
pub const MAX_SCHEDULES: usize = 256;

/// One `[[schedules]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique, non-empty name (e.g. `weekday-peak`), shown in events, metrics and the
    /// live page.
    pub name: String,
    /// The days the schedule starts on, local time (default every day). A schedule that
    /// spans midnight runs on into the next day.
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
    /// When it starts, local time (`"HH:MM"`).
    pub start: ClockTime,
    /// When it ends, local time (`"HH:MM"`, `"24:00"` for midnight). An end before the
    /// start spans midnight.
    pub end: ClockTime,
    /// The IANA time zone of `start`, `end` and `days` (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// Pool name → what changes in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, PoolChange>,
    /// Campaign name → what changes in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub campaigns: BTreeMap<String, CampaignChange>,
    /// Flow name → what changes in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flows: BTreeMap<String, FlowChange>,
}

fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

fn utc() -> String {
    "UTC".into()
}

/// What a schedule changes in a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    /// The pool's limit while the schedule is active (units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Class name → units reserved while the schedule is active; classes left out keep
    /// their configured reserve.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserve: BTreeMap<String, u32>,
}

/// What a schedule changes in a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignChange {
    /// The campaign's own cap on live calls while the schedule is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Calls placed per second at most while the schedule is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<Real>,
}

/// What a schedule changes in a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowChange {
    /// The overflow chain while the schedule is active: one table or an array of them.
    #[serde(default, deserialize_with = "deserialize_chain", skip_serializing_if = "Vec::is_empty")]
    pub overflow: Vec<Overflow>,
}

impl ScheduleConfig {
    /// The time zone (UTC when it does not parse; validation refuses that).
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }

    /// Whether the schedule is active at `unix_ms`: on one of its days from `start`, until
    /// `end` (the next day's, when it spans midnight), in its time zone.
    pub fn active_at(&self, unix_ms: u64) -> bool {
        let Some(local) = i64::try_from(unix_ms).ok().and_then(|ms| self.tz().timestamp_millis_opt(ms).single()) else {
            return false;
        };
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday();
        let on = |d: chrono::Weekday| self.days.iter().any(|w| w.chrono() == d);
        let (start, end) = (self.start.minutes(), self.end.minutes());
        if start < end {
            on(today) && start <= minute && minute < end
        } else {
            (on(today) && minute >= start) || (on(today.pred()) && minute < end)
        }
    }
}

impl Config {
    /// The positions in `schedules` of the schedules active at `unix_ms`, in file order.
    pub fn active_schedules(&self, unix_ms: u64) -> Vec<usize> {
        self.schedules.iter().enumerate().filter(|(_, s)| s.active_at(unix_ms)).map(|(i, _)| i).collect()
    }

    /// This configuration as the schedules at positions `active` make it (in file order,
    /// so a later schedule wins where two set the same value); the result has no
    /// schedules left to apply. Unknown positions and names are skipped (validation
    /// refuses names that do not exist).
    pub fn scheduled(&self, active: &[usize]) -> Config {
        let mut out = self.clone();
        for s in active.iter().filter_map(|&i| self.schedules.get(i)) {
            for (name, change) in &s.pools {
                let Some(pool) = out.pools.iter_mut().find(|p| &p.name == name) else { continue };
                if let Some(limit) = change.limit {
                    pool.limit = limit;
                }
                for (class, &units) in &change.reserve {
                    pool.reserve.insert(class.clone(), units);
                }
            }
            for (name, change) in &s.flows {
                let Some(f) = out.flows.iter_mut().find(|f| &f.name == name) else { continue };
                if !change.overflow.is_empty() {
                    f.overflow = change.overflow.clone();
                }
            }
        }
        for c in &mut out.campaigns {
            let change = self.campaign_change(active, &c.name);
            if change.max_concurrency.is_some() {
                c.max_concurrency = change.max_concurrency;
            }
            if let Some(cps) = change.calls_per_second {
                c.calls_per_second = cps;
            }
        }
        out.schedules.clear();
        out
    }

    /// What the schedules at positions `active` change in campaign `name`, merged in file
    /// order (the simulator's campaigns are not `[[campaigns]]`, so it asks by name).
    pub fn campaign_change(&self, active: &[usize], name: &str) -> CampaignChange {
        let mut out = CampaignChange::default();
        for change in active.iter().filter_map(|&i| self.schedules.get(i)?.campaigns.get(name)) {
            if change.max_concurrency.is_some() {
                out.max_concurrency = change.max_concurrency;
            }
            if change.calls_per_second.is_some() {
                out.calls_per_second = change.calls_per_second;
            }
        }
        out
    }

    /// The names of the schedules at positions `active`.
    pub fn schedule_names(&self, active: &[usize]) -> Vec<String> {
        active.iter().filter_map(|&i| self.schedules.get(i)).map(|s| s.name.clone()).collect()
    }
}

/// Schedules that overlap may together reserve more of a pool than its limit, though each
/// alone fits. An overlap always contains the start of one of its schedules, so the check
/// looks at every start of every schedule that changes a pool, in a winter and a summer
/// week (daylight saving moves starts in zones apart), and at what is active then.
fn validate_overlaps(config: &Config, out: &mut Problems) {
    let touching: Vec<usize> =
        config.schedules.iter().enumerate().filter(|(_, s)| !s.pools.is_empty()).map(|(i, _)| i).collect();
    if touching.len() < 2 || config.schedules.iter().any(|s| s.timezone.parse::<Tz>().is_err()) {
        return;
    }
    let mut reported: Vec<(String, Vec<usize>)> = Vec::new();
    // Mondays: 2024-01-01 and 2024-07-01.
    let weeks = [chrono::NaiveDate::from_ymd_opt(2024, 1, 1), chrono::NaiveDate::from_ymd_opt(2024, 7, 1)];
    for &i in &touching {
        let s = &config.schedules[i];
        let tz = s.tz();
        for monday in weeks.iter().flatten() {
            for day in monday.iter_days().take(7) {
                if !s.days.iter().any(|d| d.chrono() == day.weekday()) {
                    continue;
                }
                let minutes = s.start.minutes();
                let Some(local) = day.and_hms_opt(0, 0, 0).map(|m| m + chrono::Duration::minutes(i64::from(minutes)))
                else {
                    continue;
                };
                let Some(ms) = tz.from_local_datetime(&local).earliest().map(|t| t.timestamp_millis()) else {
                    continue;
                };
                let Ok(ms) = u64::try_from(ms) else { continue };
                let active: Vec<usize> =
                    touching.iter().copied().filter(|&k| config.schedules[k].active_at(ms)).collect();
                if active.len() < 2 {
                    continue;
                }
                let effective = config.scheduled(&active);
                for pool in &effective.pools {
                    let by: Vec<usize> = active
                        .iter()
                        .copied()
                        .filter(|&k| config.schedules[k].pools.contains_key(&pool.name))
                        .collect();
                    let total: u64 = pool.reserve.values().map(|&u| u64::from(u)).sum();
                    if by.len() < 2 || total <= u64::from(pool.limit) {
                        continue;
                    }
                    if reported.iter().any(|(p, a)| *p == pool.name && *a == by) {
                        continue;
                    }
                    reported.push((pool.name.clone(), by.clone()));
                    let last = by[by.len() - 1];
                    let names = config.schedule_names(&by).iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
                    out.push(
                        Field::top("schedules").index(last).key("pools").key(&pool.name),
                        format!(
                            "while {} are active together (e.g. {} {}), pool `{}` would reserve {total} units of {}",
                            names.join(" and "),
                            day.weekday(),
                            s.start,
                            pool.name,
                            pool.limit
                        ),
                    );
                }
            }
        }
    }
}

/// Checks `[[schedules]]`, with `campaigns` the campaign names schedules may change (a
/// configuration's `[[campaigns]]`; a scenario adds its simulated ones).
pub(crate) fn validate_with(config: &Config, campaigns: &[&str], out: &mut Problems) {
    let top = Field::top("schedules");
    if config.schedules.len() > MAX_SCHEDULES {
        out.push(top.clone(), format!("at most {MAX_SCHEDULES} schedules"));
        return;
    }
    out.names("schedule", config.schedules.iter().map(|s| s.name.as_str()), |i| top.index(i).key("name"));
    for (i, s) in config.schedules.iter().enumerate() {
        let at = top.index(i);
        if s.start == s.end {
            out.push(at.key("end"), "the schedule is empty: end equals start");
        }
        if s.days.is_empty() {
            out.push(at.key("days"), "name at least one day (mon, tue, wed, thu, fri, sat, sun)");
        }
        for (k, d) in s.days.iter().enumerate() {
            if s.days[..k].contains(d) {
                out.push(at.key("days").index(k), "a day is named twice");
            }
        }
        if s.timezone.parse::<Tz>().is_err() {
            out.push(
                at.key("timezone"),
                format!("`{}` is not an IANA time zone (e.g. \"America/New_York\")", s.timezone),
            );
        }
        if s.pools.is_empty() && s.campaigns.is_empty() && s.flows.is_empty() {
            out.push(
                at.clone(),
                format!("schedule `{}` changes nothing: give `pools`, `campaigns` or `flows`", s.name),
            );
        }
        for (name, change) in &s.pools {
            let pf = at.key("pools").key(name);
            let Some(pool) = config.pool(name) else {
                out.push(
                    pf,
                    format!("unknown pool `{name}` (pools: {})", list(config.pools.iter().map(|p| p.name.as_str()))),
                );
                continue;
            };
            if change.limit.is_none() && change.reserve.is_empty() {
                out.push(pf.clone(), "give `limit` or `reserve`");
            }
            for class in change.reserve.keys() {
                if pool.forecast_class() == Some(class.as_str()) {
                    out.push(
                        pf.key("reserve").key(class),
                        format!("pool `{name}`'s reserve for `{class}` follows the forecast; a schedule cannot set it"),
                    );
                }
                if config.class(class).is_none() {
                    out.push(
                        pf.key("reserve").key(class),
                        format!(
                            "unknown class `{class}` (classes: {})",
                            list(config.classes.iter().map(|c| c.name.as_str()))
                        ),
                    );
                }
            }
            // The pool as this schedule alone makes it: its reserves must fit its limit.
            let limit = change.limit.unwrap_or(pool.limit);
            let mut reserve = pool.reserve.clone();
            reserve.extend(change.reserve.iter().map(|(k, v)| (k.clone(), *v)));
            let total: u64 = reserve.values().map(|&u| u64::from(u)).sum();
            if total > u64::from(limit) {
                out.push(
                    pf,
                    format!(
                        "a reserve larger than the limit while `{}` is active: pool `{name}` would reserve {total} \
                         units of {limit}",
                        s.name
                    ),
                );
            }
        }
        for (name, change) in &s.campaigns {
            let cf = at.key("campaigns").key(name);
            if !campaigns.contains(&name.as_str()) {
                out.push(
                    cf.clone(),
                    format!("unknown campaign `{name}` (campaigns: {})", list(campaigns.iter().copied())),
                );
            }
            if change.max_concurrency.is_none() && change.calls_per_second.is_none() {
                out.push(cf.clone(), "give `max_concurrency` or `calls_per_second`");
            }
            if change.max_concurrency == Some(0) {
                out.push(cf.key("max_concurrency"), "max_concurrency must be at least 1");
            }
            if let Some(cps) = change.calls_per_second {
                if !(cps.0.is_finite() && cps.0 > 0.0 && cps.0 <= 1000.0) {
                    out.push(cf.key("calls_per_second"), "calls_per_second must be above 0 and at most 1000");
                }
            }
        }
        for (name, change) in &s.flows {
            let ff = at.key("flows").key(name);
            if config.flow(name).is_none() {
                out.push(
                    ff.clone(),
                    format!("unknown flow `{name}` (flows: {})", list(config.flows.iter().map(|f| f.name.as_str()))),
                );
            }
            if change.overflow.is_empty() {
                out.push(ff.clone(), "give `overflow` (one table or a chain)");
            }
            for (k, step) in change.overflow.iter().enumerate() {
                crate::flow::validate_overflow(step, &ff.key("overflow").index(k), out);
            }
        }
    }
    validate_overlaps(config, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const BASE: &str = r#"
[[pools]]
name = "vapi-main"
limit = 10
reserve = { inbound = 2 }
[[flows]]
name = "support"
pools = ["vapi-main"]
class = "inbound"
overflow = { action = "busy" }
"#;

    fn config(schedules: &str) -> Result<Config, Vec<(String, Option<usize>, String)>> {
        Config::from_toml_str(&format!("{BASE}{schedules}"), None)
            .map_err(|e| e.errors.into_iter().map(|e| (e.field, e.line, e.message)).collect())
    }

    fn ny(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        let tz: Tz = "America/New_York".parse().unwrap();
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().timestamp_millis() as u64
    }

    const PEAK: &str = r#"
[[schedules]]
name = "weekday-peak"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "10:00"
end = "14:00"
timezone = "America/New_York"
pools = { vapi-main = { reserve = { inbound = 4 } } }
flows = { support = { overflow = [{ action = "callback" }, { action = "busy" }] } }
"#;

    #[test]
    fn a_schedule_is_active_on_its_days_between_its_times_in_its_zone() {
        let c = config(PEAK).unwrap();
        // 2026-03-02 is a Monday.
        assert!(c.active_schedules(ny(2026, 3, 2, 9, 59)).is_empty());
        assert_eq!(c.active_schedules(ny(2026, 3, 2, 10, 0)), [0]);
        assert_eq!(c.active_schedules(ny(2026, 3, 2, 13, 59)), [0]);
        assert!(c.active_schedules(ny(2026, 3, 2, 14, 0)).is_empty(), "the end is not included");
        assert!(c.active_schedules(ny(2026, 3, 7, 11, 0)).is_empty(), "not on Saturday");
        let on = c.scheduled(&c.active_schedules(ny(2026, 3, 2, 11, 0)));
        assert_eq!(on.pool("vapi-main").unwrap().reserve["inbound"], 4);
        assert_eq!(on.flow("support").unwrap().overflow.len(), 2);
        assert!(on.schedules.is_empty());
        let off = c.scheduled(&[]);
        assert_eq!(off.pool("vapi-main").unwrap().reserve["inbound"], 2);
    }

    #[test]
    fn a_schedule_over_midnight_runs_into_the_next_day() {
        let c = config(
            "[[schedules]]\nname = \"night\"\ndays = [\"fri\"]\nstart = \"22:00\"\nend = \"06:00\"\n\
             pools = { vapi-main = { limit = 4 } }\n",
        )
        .unwrap();
        let utc = |d: u32, h: u32| chrono::Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap().timestamp_millis() as u64;
        assert!(c.active_schedules(utc(6, 21)).is_empty(), "Friday 21:00");
        assert_eq!(c.active_schedules(utc(6, 23)), [0], "Friday 23:00");
        assert_eq!(c.active_schedules(utc(7, 5)), [0], "Saturday 05:00, from Friday");
        assert!(c.active_schedules(utc(7, 23)).is_empty(), "Saturday 23:00");
        assert_eq!(c.scheduled(&[0]).pool("vapi-main").unwrap().limit, 4);
    }

    #[test]
    fn later_schedules_win_where_they_overlap() {
        let c = config(
            "[[schedules]]\nname = \"a\"\nstart = \"00:00\"\nend = \"24:00\"\npools = { vapi-main = { limit = 6 } }\n\
             [[schedules]]\nname = \"b\"\nstart = \"00:00\"\nend = \"24:00\"\npools = { vapi-main = { limit = 8 } }\n",
        )
        .unwrap();
        assert_eq!(c.active_schedules(0), [0, 1]);
        assert_eq!(c.scheduled(&[0, 1]).pool("vapi-main").unwrap().limit, 8);
    }

    #[test]
    fn overlapping_schedules_must_fit_the_limit_together() {
        let two = |b_start: &str| {
            format!(
                "[[schedules]]\nname = \"a\"\nstart = \"10:00\"\nend = \"12:00\"\ntimezone = \"America/New_York\"\n\
                 pools = {{ vapi-main = {{ reserve = {{ inbound = 6 }} }} }}\n\
                 [[schedules]]\nname = \"b\"\ndays = [\"mon\"]\nstart = \"{b_start}\"\nend = \"20:00\"\n\
                 pools = {{ vapi-main = {{ reserve = {{ callback = 5 }} }} }}\n"
            )
        };
        // b starts at 16:00 UTC = 11:00 in New York in winter: both hold 6 + 5 of 10.
        let e = config(&two("16:00")).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "schedules[1].pools.vapi-main");
        assert!(e[0].2.contains("`a` and `b` are active together") && e[0].2.contains("11 units of 10"), "{e:?}");
        // From 17:00 UTC (12:00 in New York in winter, 13:00 in summer) they never meet.
        assert!(config(&two("17:00")).is_ok());
    }

    #[test]
    fn schedule_problems_name_their_field_and_line() {
        let e = config(
            "[[schedules]]\nname = \"bad\"\nstart = \"10:00\"\nend = \"10:00\"\ntimezone = \"Mars/Base\"\n\
             pools = { nope = { limit = 1 }, vapi-main = { reserve = { inbound = 11 } } }\n\
             campaigns = { gone = { max_concurrency = 0 } }\nflows = { support = { overflow = { action = \"ivr\" } } }\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _, _)| f.as_str()).collect();
        for want in [
            "schedules[0].end",
            "schedules[0].timezone",
            "schedules[0].pools.nope",
            "schedules[0].pools.vapi-main",
            "schedules[0].campaigns.gone",
            "schedules[0].campaigns.gone.max_concurrency",
            "schedules[0].flows.support.overflow[0]",
        ] {
            assert!(fields.contains(&want), "{want} in {e:?}");
        }
        assert!(e.iter().all(|(_, line, _)| line.is_some_and(|l| l > 11)), "{e:?}");
        let e = config("[[schedules]]\nname = \"x\"\nstart = \"25:00\"\nend = \"10:00\"\n").unwrap_err();
        assert_eq!(e[0].0, "schedules[0].start", "{e:?}");
        let e = config("[[schedules]]\nname = \"x\"\nstart = \"09:00\"\nend = \"10:00\"\n").unwrap_err();
        assert!(e[0].2.contains("changes nothing"), "{e:?}");
    }
}
