//! `[[prewarm]]`: a URL called a lead time before the inbound forecast of a pool rises,
//! with the sessions expected, so inference workers and connection pools are warm when
//! the calls come.

use crate::breaker::is_plain_name;
use crate::campaign::Real;
use crate::problem::{list, Field, Problems};
use crate::provider::is_http_url;
use crate::Config;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most `[[prewarm]]` hooks.
pub const MAX_PREWARM: usize = 32;

/// One `[[prewarm]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrewarmConfig {
    /// Unique name (letters, digits, `-`, `_`, `.`), in the body and the metrics.
    pub name: String,
    /// The pool whose forecast is watched (its reserve must follow the forecast).
    pub pool: String,
    /// Where the POST goes (`http://` or `https://`).
    pub url: String,
    /// How long before the rise the URL is called (default "10m", at most "6h").
    #[serde(default = "default_lead", with = "crate::serde_duration")]
    pub lead: Duration,
    /// The least rise of expected concurrent calls from one 15-minute interval to the next
    /// that calls the URL (default 1).
    #[serde(default = "default_min_rise")]
    pub min_rise: Real,
}

fn default_lead() -> Duration {
    Duration::from_secs(600)
}

fn default_min_rise() -> Real {
    Real(1.0)
}

/// Checks `[[prewarm]]`: names, pools that follow the forecast, URLs, lead and rise.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let top = Field::top("prewarm");
    if config.prewarm.len() > MAX_PREWARM {
        out.push(top.clone(), format!("at most {MAX_PREWARM} prewarm hooks, not {}", config.prewarm.len()));
    }
    out.names("prewarm hook", config.prewarm.iter().map(|p| p.name.as_str()), |i| top.index(i).key("name"));
    for (i, hook) in config.prewarm.iter().enumerate() {
        let at = top.index(i);
        if !hook.name.trim().is_empty() && !is_plain_name(&hook.name) {
            out.push(at.key("name"), "a prewarm hook's name is 1 to 64 letters, digits, `-`, `_` or `.`");
        }
        match config.pool(&hook.pool) {
            None => out.push(
                at.key("pool"),
                format!("unknown pool `{}` (pools: {})", hook.pool, list(config.pools.iter().map(|p| p.name.as_str()))),
            ),
            Some(p) if p.forecast_class().is_none() => out.push(
                at.key("pool"),
                format!(
                    "pool `{}` has no reserve that follows the forecast (reserve = {{ inbound = \"forecast\" }})",
                    p.name
                ),
            ),
            Some(_) => {}
        }
        if !is_http_url(&hook.url) || hook.url.len() > 2048 {
            out.push(at.key("url"), format!("`{}` is not an http:// or https:// URL", hook.url));
        }
        if hook.lead.is_zero() || hook.lead > Duration::from_secs(6 * 3600) {
            out.push(at.key("lead"), "the lead is more than 0s and at most 6h");
        }
        let rise = hook.min_rise.0;
        if !(rise.is_finite() && rise > 0.0) {
            out.push(at.key("min_rise"), format!("the rise is a number of sessions above 0, not {rise}"));
        }
    }
}
