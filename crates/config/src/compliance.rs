//! `[compliance]` (where opt-outs come from and which list they go to) and
//! `[[calling_rules]]` (calling windows and caps by the callee's region, on top of each
//! campaign's own).
//!
//! `[compliance] default_calling_rules = true` adds [`default_calling_rules`] (the US
//! federal hours and the stricter states listed there) for every region the file's own
//! `[[calling_rules]]` do not name: a file rule for `US-FL` replaces the default one.
//! Off unless asked for, so that a configuration that worked before keeps dialing as it
//! did.

use crate::campaign::{ClockTime, WindowConfig};
use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};

/// The most calling rules a file may have.
pub const MAX_CALLING_RULES: usize = 512;

/// `[compliance]`: where opt-outs come from. Every source is off unless named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceConfig {
    /// The suppression list opt-outs go to (default `internal`, which every campaign
    /// honours unless it names its `dnc_lists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out_list: Option<String>,
    /// A Vapi tool (function) of this name, called by the assistant during a call, opts
    /// the caller out (e.g. `"opt_out"`). callgate answers the tool call itself when the
    /// provider has no `forward_url`; otherwise it is forwarded as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapi_tool: Option<String>,
    /// A field of the end-of-call report's analysis (`analysis.structuredData.<name>`) or
    /// a structured output of this name (`artifact.structuredOutputs`) that is `true`
    /// opts the caller out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapi_structured_output: Option<String>,
    /// `endedReason` values of a Vapi call that opt the caller out (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vapi_ended_reasons: Vec<String>,
    /// A key (`0`-`9`, `*`, `#`) that, pressed in any Twilio `<Gather>` menu callgate
    /// plays, opts the caller out (the menu's prompt should say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_opt_out_key: Option<String>,
    /// Apply the calling rules callgate ships ([`default_calling_rules`]) for the regions
    /// the file's `[[calling_rules]]` do not name (default false).
    #[serde(default)]
    pub default_calling_rules: bool,
}

impl ComplianceConfig {
    /// The list opt-outs go to.
    pub fn opt_out_list(&self) -> &str {
        self.opt_out_list.as_deref().unwrap_or("internal")
    }
}

/// One `[[calling_rules]]` table: when a callee in `region` may be called, whatever the
/// campaign says. Every rule whose region covers the number applies (`US` covers
/// `US-FL`): the windows are intersected and the smallest cap holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingRule {
    /// An ISO 3166-1 country (`US`, `GB`) or a US state / Canadian province
    /// (`US-FL`, `CA-QC`), as derived from the number (US and Canadian area codes name
    /// their state or province).
    pub region: String,
    /// When calls may start, callee's local time: `"08:00-20:00"` (an end before the
    /// start spans midnight). Default: all day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The days calls may start on, callee's local time (default every day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<crate::campaign::Weekday>>,
    /// The most attempts on one number in any 24 hours (default: no cap of the rule's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
    /// Where the rule comes from (a statute, a policy), shown in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl CallingRule {
    /// The window as a campaign window (`None`: all day), or why it cannot be read.
    pub fn window_config(&self) -> Result<WindowConfig, String> {
        let mut w = WindowConfig::default();
        if let Some(text) = &self.window {
            let (a, b) = text
                .split_once('-')
                .ok_or_else(|| format!("window `{text}` must be `HH:MM-HH:MM`, e.g. \"08:00-20:00\""))?;
            w.start = ClockTime::parse(a.trim()).ok_or_else(|| format!("`{a}` is not a time of day (HH:MM)"))?;
            w.end = ClockTime::parse(b.trim()).ok_or_else(|| format!("`{b}` is not a time of day (HH:MM)"))?;
        } else {
            w.start = ClockTime(0);
            w.end = ClockTime(24 * 60);
        }
        if let Some(days) = &self.days {
            w.days = days.clone();
        }
        Ok(w)
    }

    /// Whether the rule covers a number of `region` (`US-FL`): the same region, or the
    /// country of it.
    pub fn covers(&self, region: &str) -> bool {
        region == self.region || region.split_once('-').is_some_and(|(country, _)| country == self.region)
    }
}

/// The rules `[compliance] default_calling_rules = true` adds.
///
/// NOT LEGAL ADVICE. Written on 2026-12-05 from the callgate team's knowledge of the
/// statutes cited in each rule's `source`, without re-reading them that day (the machine
/// they were written on could not reach the texts); laws change and their scope (telephone
/// solicitation, consent, exemptions, holidays) is more than a window and a cap can say.
/// Check them with counsel for your calls and override them in your file
/// (`[[calling_rules]]`). Known and left out: Texas (Sunday hours differ from weekdays),
/// state holiday bans, and every country but the US.
pub fn default_calling_rules() -> Vec<CallingRule> {
    let rule = |region: &str, window: &str, max_per_day: Option<u32>, source: &str| CallingRule {
        region: region.into(),
        window: Some(window.into()),
        days: None,
        max_per_day,
        source: Some(source.into()),
    };
    vec![
        // TCPA: no telephone solicitation before 8 am or after 9 pm at the called party's location.
        rule("US", "08:00-21:00", None, "47 CFR 64.1200(c)(1)"),
        // Florida Telephone Solicitation Act (2021): 8 am to 8 pm, 3 calls in 24 hours on the same subject.
        rule("US-FL", "08:00-20:00", Some(3), "Fla. Stat. 501.616(6)"),
        // Oklahoma Telephone Solicitation Act (2022): 8 am to 8 pm, 3 calls in 24 hours.
        rule("US-OK", "08:00-20:00", Some(3), "Okla. Stat. tit. 15, 775C.4"),
        // Maryland Stop the Spam Calls Act (2023): 8 am to 8 pm, 3 calls in 24 hours.
        rule("US-MD", "08:00-20:00", Some(3), "Md. Code, Com. Law 14-4503"),
        // Washington: 8 am to 8 pm.
        rule("US-WA", "08:00-20:00", None, "RCW 80.36.390"),
    ]
}

fn is_region(r: &str) -> bool {
    let (country, sub) = match r.split_once('-') {
        Some((c, s)) => (c, Some(s)),
        None => (r, None),
    };
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && sub.is_none_or(|s| {
            (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
}

/// Checks `[compliance]` and `[[calling_rules]]`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let c = &config.compliance;
    let at = Field::top("compliance");
    if let Some(l) = &c.opt_out_list {
        if l.is_empty() || l.len() > 64 || !l.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            out.push(at.key("opt_out_list"), "a list name is 1 to 64 letters, digits, `-`, `_` or `.`");
        }
    }
    for (k, v) in [("vapi_tool", &c.vapi_tool), ("vapi_structured_output", &c.vapi_structured_output)] {
        if v.as_ref().is_some_and(|v| v.trim().is_empty() || v.len() > 128) {
            out.push(at.key(k), "a name of 1 to 128 bytes");
        }
    }
    if c.vapi_ended_reasons.len() > 32 || c.vapi_ended_reasons.iter().any(|r| r.is_empty() || r.len() > 128) {
        out.push(at.key("vapi_ended_reasons"), "at most 32 reasons, each 1 to 128 bytes");
    }
    if let Some(k) = &c.twilio_opt_out_key {
        if !crate::menu::is_dtmf_key(k) {
            out.push(at.key("twilio_opt_out_key"), format!("`{k}` is not a phone key (0-9, * or #)"));
        }
    }
    let rules = &config.calling_rules;
    if rules.len() > MAX_CALLING_RULES {
        out.push(Field::top("calling_rules"), format!("at most {MAX_CALLING_RULES} rules, not {}", rules.len()));
    }
    for (i, r) in rules.iter().enumerate() {
        let at = Field::top("calling_rules").index(i);
        if !is_region(&r.region) {
            out.push(
                at.key("region"),
                format!("`{}` is not a region: a country (`US`) or a state or province (`US-FL`)", r.region),
            );
        }
        if let Err(e) = r.window_config() {
            out.push(at.key("window"), e);
        }
        if r.days.as_ref().is_some_and(Vec::is_empty) {
            out.push(at.key("days"), "a rule with no days forbids every call; leave `days` out for every day");
        }
        if r.max_per_day == Some(0) {
            out.push(at.key("max_per_day"), "0 would forbid every call; leave it out for no cap");
        }
        if r.source.as_ref().is_some_and(|s| s.len() > 200) {
            out.push(at.key("source"), "at most 200 bytes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_their_region_and_its_states() {
        let fl = &default_calling_rules()[1];
        assert!(fl.covers("US-FL") && !fl.covers("US-NY") && !fl.covers("US"));
        let us = &default_calling_rules()[0];
        assert!(us.covers("US-FL") && us.covers("US") && !us.covers("CA-QC"));
        let w = fl.window_config().unwrap();
        assert_eq!((w.start.minutes(), w.end.minutes()), (8 * 60, 20 * 60));
        assert!(is_region("US-FL") && is_region("GB") && !is_region("us") && !is_region("USA"));
    }

    #[test]
    fn bad_rules_are_named_by_field() {
        let toml = "[[calling_rules]]\nregion = \"Florida\"\nwindow = \"8-20\"\nmax_per_day = 0\n\n[compliance]\ntwilio_opt_out_key = \"99\"\n";
        let e = Config::from_toml_str(toml, None).unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "calling_rules[0].region",
                "calling_rules[0].window",
                "calling_rules[0].max_per_day",
                "compliance.twilio_opt_out_key"
            ],
            "{e}"
        );
        assert_eq!(e.errors[0].line, Some(2));
    }
}
