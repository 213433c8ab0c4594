//! What lines and minutes cost: the `[pricing]` section and the monthly arithmetic.
//!
//! A voice-AI call is billed per minute by several parties (the platform, the language
//! model, the voice, the transcription, the telephony carrier); extra concurrent lines
//! are billed per month. Minutes are counted while a call holds a line (talking), not
//! while a caller waits in the waiting room: the waiting room is callgate's, and on most
//! stacks waiting costs only telephony, which [`Pricing::waiting_per_min`] can carry.

use crate::PlanError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Prices, as written in a `[pricing]` section. Every price defaults to 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Per minute of call: the voice platform's fee.
    #[serde(default)]
    pub platform_per_min: f64,
    /// Per minute of call: the language model.
    #[serde(default)]
    pub model_per_min: f64,
    /// Per minute of call: text-to-speech.
    #[serde(default)]
    pub voice_per_min: f64,
    /// Per minute of call: speech-to-text.
    #[serde(default)]
    pub transcription_per_min: f64,
    /// Per minute of call: the carrier.
    #[serde(default)]
    pub telephony_per_min: f64,
    /// Per minute of call: anything else, or the all-in price when it is not split.
    #[serde(default)]
    pub per_minute: f64,
    /// Per minute a caller spends in the waiting room (usually telephony only).
    #[serde(default)]
    pub waiting_per_min: f64,
    /// Per line (one concurrent call) per month.
    #[serde(default)]
    pub per_line_month: f64,
    /// Shown in front of amounts (default `$`).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Days in a billing month, for monthly figures (default 30).
    #[serde(default = "default_days_per_month")]
    pub days_per_month: f64,
    /// Simulator only: the pools whose limit is paid per line (default: every pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_pools: Option<Vec<String>>,
}

fn default_currency() -> String {
    "$".into()
}

fn default_days_per_month() -> f64 {
    30.0
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            platform_per_min: 0.0,
            model_per_min: 0.0,
            voice_per_min: 0.0,
            transcription_per_min: 0.0,
            telephony_per_min: 0.0,
            per_minute: 0.0,
            waiting_per_min: 0.0,
            per_line_month: 0.0,
            currency: default_currency(),
            days_per_month: default_days_per_month(),
            line_pools: None,
        }
    }
}

impl Pricing {
    /// The price of one minute of call, all parties together.
    pub fn per_minute_total(&self) -> f64 {
        self.platform_per_min
            + self.model_per_min
            + self.voice_per_min
            + self.transcription_per_min
            + self.telephony_per_min
            + self.per_minute
    }

    /// Every problem as `(field, message)`: prices must be finite and not negative, a
    /// month between 1 and 31 days.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [
            ("platform_per_min", self.platform_per_min),
            ("model_per_min", self.model_per_min),
            ("voice_per_min", self.voice_per_min),
            ("transcription_per_min", self.transcription_per_min),
            ("telephony_per_min", self.telephony_per_min),
            ("per_minute", self.per_minute),
            ("waiting_per_min", self.waiting_per_min),
            ("per_line_month", self.per_line_month),
        ] {
            if !v.is_finite() || v < 0.0 {
                out.push((field, format!("a price must be 0 or more, not {v}")));
            }
        }
        if !(1.0..=31.0).contains(&self.days_per_month) {
            out.push(("days_per_month", "days_per_month must be between 1 and 31".to_owned()));
        }
        out
    }

    /// Reads the `[pricing]` section of any TOML file (a scenario, or a file holding only
    /// prices). A file without one gives the defaults (everything free).
    pub fn from_file(path: &Path) -> Result<Pricing, PlanError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PlanError::io(format!("{}: cannot read the file: {e}", path.display())))?;
        Pricing::from_toml_str(&text, path)
    }

    /// Like [`Pricing::from_file`], from text already read.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Pricing, PlanError> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            pricing: Option<Pricing>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| crate::sim::line_at(text, s.start));
            PlanError::scenario(format!(
                "{}{}: {}",
                path.display(),
                line.map(|l| format!(":{l}")).unwrap_or_default(),
                e.message().trim()
            ))
        })?;
        let pricing = doc.pricing.unwrap_or_default();
        if let Some((field, message)) = pricing.problems().into_iter().next() {
            return Err(PlanError::scenario(format!("{}: pricing.{field}: {message}", path.display())));
        }
        Ok(pricing)
    }
}

/// The monthly cost of a number of lines and the minutes they carry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MonthlyCost {
    /// Lines paid for.
    pub lines: u32,
    /// `lines × per_line_month`.
    pub lines_cost: f64,
    /// Minutes of call carried in a month.
    pub minutes: f64,
    /// `minutes × per-minute price`.
    pub minutes_cost: f64,
    /// Minutes callers spend waiting in a month.
    pub waiting_minutes: f64,
    /// `waiting_minutes × waiting_per_min`.
    pub waiting_cost: f64,
    /// Everything together.
    pub total: f64,
}

impl MonthlyCost {
    /// `lines` lines carrying `carried_erlangs` (answered calls on average in progress)
    /// with `waiting_erlangs` callers waiting on average, for `hours_per_day` hours a
    /// day, every day of the month.
    pub fn new(
        pricing: &Pricing,
        lines: u32,
        carried_erlangs: f64,
        waiting_erlangs: f64,
        hours_per_day: f64,
    ) -> MonthlyCost {
        let minutes_per_erlang = 60.0 * hours_per_day * pricing.days_per_month;
        let minutes = carried_erlangs * minutes_per_erlang;
        let waiting_minutes = waiting_erlangs * minutes_per_erlang;
        let lines_cost = f64::from(lines) * pricing.per_line_month;
        let minutes_cost = minutes * pricing.per_minute_total();
        let waiting_cost = waiting_minutes * pricing.waiting_per_min;
        MonthlyCost {
            lines,
            lines_cost,
            minutes,
            minutes_cost,
            waiting_minutes,
            waiting_cost,
            total: lines_cost + minutes_cost + waiting_cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_of_ten_busy_lines_costs_lines_plus_minutes() {
        let pricing = Pricing { per_minute: 0.10, per_line_month: 10.0, ..Pricing::default() };
        // 8 erlangs carried for 8 hours a day, 30 days: 8 × 60 × 8 × 30 = 115,200 minutes.
        let c = MonthlyCost::new(&pricing, 10, 8.0, 0.0, 8.0);
        assert_eq!(c.minutes, 115_200.0);
        assert!((c.total - (100.0 + 11_520.0)).abs() < 1e-9);
    }

    #[test]
    fn a_pricing_section_is_read_from_any_toml_file() {
        let text = "[[pools]]\nname = \"p\"\nlimit = 3\n\n[pricing]\nplatform_per_min = 0.05\n\
                    model_per_min = 0.02\nper_line_month = 10\n";
        let p = Pricing::from_toml_str(text, Path::new("s.toml")).unwrap();
        assert!((p.per_minute_total() - 0.07).abs() < 1e-12);
        let bad = "[pricing]\nper_minute = -1\n";
        let e = Pricing::from_toml_str(bad, Path::new("s.toml")).unwrap_err();
        assert!(e.message.contains("pricing.per_minute"), "{e}");
        let unknown = "[pricing]\nper_minit = 1\n";
        let e = Pricing::from_toml_str(unknown, Path::new("s.toml")).unwrap_err();
        assert!(e.message.starts_with("s.toml:2:"), "{e}");
    }
}
