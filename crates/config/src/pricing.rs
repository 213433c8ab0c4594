//! `[pricing]`: what lines, minutes and lost callers cost. Read by the planner
//! (`callgate plan --pricing`), the simulator (a scenario's `[pricing]`) and the forecast's
//! cost of a shortfall (`callgate forecast --pricing`, `GET /v1/forecast?pool=`, from the
//! server's own `[pricing]`).
//!
//! A voice-AI call is billed per minute by several parties (the platform, the language
//! model, the voice, the transcription, the telephony carrier); extra concurrent lines
//! are billed per month. Minutes are counted while a call holds a line (talking), not
//! while a caller waits in the waiting room: the waiting room is callgate's, and on most
//! stacks waiting costs only telephony, which [`Pricing::waiting_per_min`] can carry.

use crate::problem::{Field, Problems};
use crate::Config;
use serde::{Deserialize, Serialize};

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
    /// What one inbound caller who hangs up unanswered costs the business (the sale, the
    /// goodwill or the call back lost), net of the minutes not paid for. The forecast's
    /// shortfall is priced with it; 0 (the default) leaves it unpriced.
    #[serde(default)]
    pub lost_caller: f64,
    /// What one campaign call costs when it cannot be made within the forecast's days
    /// (shifting the campaign out of the short intervals found no spare line for it).
    #[serde(default)]
    pub campaign_call: f64,
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

/// Prices are compared by value; NaN is refused by validation (as [`crate::Real`]).
impl Eq for Pricing {}

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
            lost_caller: 0.0,
            campaign_call: 0.0,
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
    /// month between 1 and 31 days, the currency short.
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
            ("lost_caller", self.lost_caller),
            ("campaign_call", self.campaign_call),
        ] {
            if !v.is_finite() || v < 0.0 {
                out.push((field, format!("a price must be 0 or more, not {v}")));
            }
        }
        if !(1.0..=31.0).contains(&self.days_per_month) {
            out.push(("days_per_month", "days_per_month must be between 1 and 31".to_owned()));
        }
        if self.currency.chars().count() > 8 {
            out.push(("currency", "the currency is at most 8 characters (`$`, `EUR `)".to_owned()));
        }
        out
    }
}

/// Checks the server's `[pricing]`.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let Some(p) = &config.pricing else { return };
    let top = Field::top("pricing");
    for (field, message) in p.problems() {
        out.push(top.key(field), message);
    }
    if p.line_pools.is_some() {
        out.push(top.key("line_pools"), "line_pools is read by simulation scenarios only");
    }
}
