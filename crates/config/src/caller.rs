//! Routing by caller: which callers a flow's `match` or `route` rule applies to, by the
//! caller's number (prefixes, country, a named `[[caller_lists]]` list) and the time of day.
//!
//! Decisions worth knowing:
//! - every condition a selector gives must hold (`from` and `country` each match when any
//!   of their entries does); an empty selector is refused, it would be a typo;
//! - a caller without a number (withheld) matches only a selector that names no number
//!   condition (`hours` alone);
//! - the country comes from the E.164 calling code, by the small table in
//!   [`country_of`] (the common calling codes, not every country): `+1` is Canada by its
//!   area codes and the United States otherwise (the Caribbean members of the North
//!   American plan count as `US`: name their area codes in `from` to tell them apart).

use crate::campaign::{ClockTime, Weekday};
use crate::problem::{list, Field, Problems};
use crate::Config;
use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The most numbers one `[[caller_lists]]` list holds: it is searched on every inbound
/// call; a larger list belongs in a CRM that picks the number the caller dials.
pub const MAX_LIST_NUMBERS: usize = 10_000;
/// The most `[[caller_lists]]` a configuration has (with [`MAX_LIST_NUMBERS`] each).
pub(crate) const MAX_LISTS: usize = 64;
/// The most prefixes or countries one selector names.
pub(crate) const MAX_SELECTOR_ENTRIES: usize = 256;

/// One `[[caller_lists]]` table: a named list of callers (`match` and `route` rules
/// select callers on it with `caller = { list = "vip" }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerListConfig {
    /// Unique, non-empty name.
    pub name: String,
    /// The callers' numbers in E.164 (`+15551230000`), at most 10 000.
    pub numbers: Vec<String>,
}

/// Which callers a rule applies to: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerSelector {
    /// The caller's number starts with one of these (`"+44"`, `"+1555"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// The caller's number is in one of these countries (ISO 3166 codes, `"GB"`), read
    /// from its calling code by callgate's table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// The caller's number is on this `[[caller_lists]]` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// The call arrives within these hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Hours>,
}

/// Hours of the week in a time zone: from `start` to `end` (an end before the start
/// spans midnight and runs on into the next day), on `days`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// Local time, `"HH:MM"`.
    pub start: ClockTime,
    /// Local time, `"HH:MM"` (`"24:00"` for midnight).
    pub end: ClockTime,
    /// The days the hours start on (default every day).
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
    /// The IANA time zone (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
}

fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

fn utc() -> String {
    "UTC".into()
}

impl Hours {
    /// Whether `now_ms` (Unix ms) falls within the hours. An unknown time zone (a
    /// configuration that skipped validation) matches nothing.
    pub fn contains(&self, now_ms: u64) -> bool {
        let Ok(tz) = self.timezone.parse::<Tz>() else { return false };
        let Some(utc) = chrono::DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX)) else {
            return false;
        };
        let local = tz.from_utc_datetime(&utc.naive_utc());
        let minute = local.hour() * 60 + local.minute();
        let (start, end) = (self.start.minutes(), self.end.minutes());
        let today = local.weekday();
        let on = |d: chrono::Weekday| self.days.iter().any(|w| w.chrono() == d);
        if start <= end {
            on(today) && (start..end).contains(&minute)
        } else {
            (on(today) && minute >= start) || (on(today.pred()) && minute < end)
        }
    }
}

impl CallerSelector {
    /// Whether a caller with number `caller` (as the platform gave it) calling at `now_ms`
    /// is selected; `lists` are the configured caller lists.
    pub fn selects(&self, caller: Option<&str>, now_ms: u64, lists: &[CallerListConfig]) -> bool {
        if let Some(hours) = &self.hours {
            if !hours.contains(now_ms) {
                return false;
            }
        }
        let needs_number = !self.from.is_empty() || !self.country.is_empty() || self.list.is_some();
        if !needs_number {
            return true;
        }
        let Some(number) = caller.map(str::trim).filter(|n| n.starts_with('+')) else { return false };
        if !self.from.is_empty() && !self.from.iter().any(|p| number.starts_with(p.as_str())) {
            return false;
        }
        if !self.country.is_empty() {
            let Some(country) = country_of(number) else { return false };
            if !self.country.iter().any(|c| c.eq_ignore_ascii_case(country)) {
                return false;
            }
        }
        if let Some(name) = &self.list {
            let on = lists.iter().find(|l| &l.name == name).is_some_and(|l| l.numbers.iter().any(|n| n == number));
            if !on {
                return false;
            }
        }
        true
    }

    fn is_empty(&self) -> bool {
        self.from.is_empty() && self.country.is_empty() && self.list.is_none() && self.hours.is_none()
    }
}

/// Canada's area codes in the North American numbering plan (`+1 NXX`).
const CANADA: [&str; 44] = [
    "204", "226", "236", "249", "250", "263", "289", "306", "343", "354", "365", "367", "368", "382", "403", "416",
    "418", "428", "431", "437", "438", "450", "468", "474", "506", "514", "519", "548", "579", "581", "584", "587",
    "604", "613", "639", "647", "672", "705", "709", "742", "778", "780", "782", "807",
];
/// More of Canada's area codes (kept apart to keep the lines short).
const CANADA_MORE: [&str; 10] = ["819", "825", "867", "873", "879", "902", "905", "942", "753", "683"];

/// Calling code → ISO 3166 country, for the common calling codes (longest code first
/// when read: `+353` before `+35`). Countries sharing a code are not told apart here
/// except Canada within `+1`.
const CALLING_CODES: [(&str, &str); 80] = [
    ("7", "RU"),
    ("20", "EG"),
    ("27", "ZA"),
    ("30", "GR"),
    ("31", "NL"),
    ("32", "BE"),
    ("33", "FR"),
    ("34", "ES"),
    ("36", "HU"),
    ("39", "IT"),
    ("40", "RO"),
    ("41", "CH"),
    ("43", "AT"),
    ("44", "GB"),
    ("45", "DK"),
    ("46", "SE"),
    ("47", "NO"),
    ("48", "PL"),
    ("49", "DE"),
    ("51", "PE"),
    ("52", "MX"),
    ("53", "CU"),
    ("54", "AR"),
    ("55", "BR"),
    ("56", "CL"),
    ("57", "CO"),
    ("58", "VE"),
    ("60", "MY"),
    ("61", "AU"),
    ("62", "ID"),
    ("63", "PH"),
    ("64", "NZ"),
    ("65", "SG"),
    ("66", "TH"),
    ("81", "JP"),
    ("82", "KR"),
    ("84", "VN"),
    ("86", "CN"),
    ("90", "TR"),
    ("91", "IN"),
    ("92", "PK"),
    ("93", "AF"),
    ("94", "LK"),
    ("95", "MM"),
    ("98", "IR"),
    ("212", "MA"),
    ("213", "DZ"),
    ("216", "TN"),
    ("233", "GH"),
    ("234", "NG"),
    ("254", "KE"),
    ("255", "TZ"),
    ("256", "UG"),
    ("351", "PT"),
    ("352", "LU"),
    ("353", "IE"),
    ("354", "IS"),
    ("356", "MT"),
    ("357", "CY"),
    ("358", "FI"),
    ("359", "BG"),
    ("370", "LT"),
    ("371", "LV"),
    ("372", "EE"),
    ("380", "UA"),
    ("381", "RS"),
    ("385", "HR"),
    ("386", "SI"),
    ("420", "CZ"),
    ("421", "SK"),
    ("852", "HK"),
    ("880", "BD"),
    ("886", "TW"),
    ("961", "LB"),
    ("962", "JO"),
    ("965", "KW"),
    ("966", "SA"),
    ("971", "AE"),
    ("972", "IL"),
    ("974", "QA"),
];

/// The country of an E.164 number by its calling code (see the module docs for what
/// the table covers), `None` when the code is not in the table.
pub fn country_of(number: &str) -> Option<&'static str> {
    let digits = number.strip_prefix('+')?;
    if let Some(nanp) = digits.strip_prefix('1') {
        let area = nanp.get(..3)?;
        return Some(if CANADA.contains(&area) || CANADA_MORE.contains(&area) { "CA" } else { "US" });
    }
    (1..=3).rev().find_map(|len| {
        let code = digits.get(..len)?;
        CALLING_CODES.iter().find(|(c, _)| *c == code).map(|(_, iso)| *iso)
    })
}

/// Whether `code` is a country [`country_of`] can answer.
fn known_country(code: &str) -> bool {
    code == "US" || code == "CA" || CALLING_CODES.iter().any(|(_, iso)| *iso == code)
}

/// Checks one selector at `field`.
pub(crate) fn validate_selector(config: &Config, sel: &CallerSelector, field: &Field, out: &mut Problems) {
    if sel.is_empty() {
        out.push(field.clone(), "a caller selector needs at least one of `from`, `country`, `list` or `hours`");
    }
    if sel.from.len() > MAX_SELECTOR_ENTRIES {
        out.push(field.key("from"), format!("at most {MAX_SELECTOR_ENTRIES} prefixes"));
    }
    for (i, p) in sel.from.iter().enumerate() {
        let digits = p.strip_prefix('+');
        if !digits.is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())) {
            out.push(
                field.key("from").index(i),
                format!("`{p}` is not a number prefix (write `+` and 1 to 15 digits, e.g. \"+44\")"),
            );
        }
    }
    if sel.country.len() > MAX_SELECTOR_ENTRIES {
        out.push(field.key("country"), format!("at most {MAX_SELECTOR_ENTRIES} countries"));
    }
    for (i, c) in sel.country.iter().enumerate() {
        if !known_country(c) {
            out.push(
                field.key("country").index(i),
                format!(
                    "`{c}` is not a country callgate can tell from a number (ISO 3166 codes in upper case, \
                     e.g. \"GB\"; the table covers the common calling codes: use `from` prefixes for others)"
                ),
            );
        }
    }
    if let Some(name) = &sel.list {
        if !config.caller_lists.iter().any(|l| &l.name == name) {
            out.push(
                field.key("list"),
                format!(
                    "unknown caller list `{name}` (caller_lists: {})",
                    list(config.caller_lists.iter().map(|l| l.name.as_str()))
                ),
            );
        }
    }
    if let Some(h) = &sel.hours {
        if h.timezone.parse::<Tz>().is_err() {
            out.push(
                field.key("hours").key("timezone"),
                format!("`{}` is not an IANA time zone (e.g. \"Europe/London\")", h.timezone),
            );
        }
        if h.start == h.end {
            out.push(field.key("hours"), "hours need an end different from their start");
        }
        if h.days.is_empty() {
            out.push(field.key("hours").key("days"), "days must name at least one day");
        }
    }
}

/// Checks `[[caller_lists]]`: names, sizes, numbers.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let top = Field::top("caller_lists");
    if config.caller_lists.len() > MAX_LISTS {
        out.push(top.clone(), format!("at most {MAX_LISTS} caller lists"));
    }
    out.names("caller list", config.caller_lists.iter().map(|l| l.name.as_str()), |i| top.index(i).key("name"));
    for (i, l) in config.caller_lists.iter().enumerate() {
        let field = top.index(i).key("numbers");
        if l.numbers.len() > MAX_LIST_NUMBERS {
            out.push(field.clone(), format!("at most {MAX_LIST_NUMBERS} numbers (got {})", l.numbers.len()));
            continue;
        }
        for (j, n) in l.numbers.iter().enumerate() {
            if !crate::flow::is_e164(n) {
                out.push(field.index(j), format!("`{n}` is not an E.164 number (write e.g. \"+14155550123\")"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_come_from_the_calling_code() {
        assert_eq!(country_of("+442071234567"), Some("GB"));
        assert_eq!(country_of("+353151234567"), Some("IE"));
        assert_eq!(country_of("+14165550000"), Some("CA"));
        assert_eq!(country_of("+12125550000"), Some("US"));
        assert_eq!(country_of("+4930123456"), Some("DE"));
        assert_eq!(country_of("+999123"), None);
        assert_eq!(country_of("0044123"), None);
    }

    #[test]
    fn every_condition_must_hold() {
        let lists = vec![CallerListConfig { name: "vip".into(), numbers: vec!["+442071234567".into()] }];
        let sel = CallerSelector { from: vec!["+44".into()], list: Some("vip".into()), ..Default::default() };
        assert!(sel.selects(Some("+442071234567"), 0, &lists));
        assert!(!sel.selects(Some("+442071234568"), 0, &lists), "on the prefix but not on the list");
        assert!(!sel.selects(None, 0, &lists), "a withheld number has no prefix");
        let uk = CallerSelector { country: vec!["GB".into()], ..Default::default() };
        assert!(uk.selects(Some("+447700900123"), 0, &[]));
        assert!(!uk.selects(Some("+15550001111"), 0, &[]));
    }

    #[test]
    fn hours_span_midnight_into_the_next_day() {
        // 2026-03-02 is a Monday; 23:30 UTC and 01:00 UTC on the Tuesday.
        let monday_2330 = 1_772_494_200_000;
        let tuesday_0100 = monday_2330 + 90 * 60_000;
        let nights = Hours {
            start: ClockTime::parse("22:00").unwrap(),
            end: ClockTime::parse("06:00").unwrap(),
            days: vec![Weekday::Mon],
            timezone: "UTC".into(),
        };
        assert!(nights.contains(monday_2330));
        assert!(nights.contains(tuesday_0100), "Monday night runs on into Tuesday");
        assert!(!nights.contains(tuesday_0100 + 22 * 3600 * 1000), "Tuesday night is not Monday's");
        let day = Hours { start: ClockTime(8 * 60), end: ClockTime(18 * 60), ..nights };
        assert!(!day.contains(monday_2330));
    }
}
