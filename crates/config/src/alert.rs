//! `[[alerts]]`: a condition on a pool, a flow or a campaign that must hold `for` a while
//! before it fires, the actions it takes when it fires, and how it resolves.
//!
//! The file keeps the units of the API: utilization and error rate are shares in [0, 1],
//! `waiting` is callers, `p95_wait` and `p95_latency` are milliseconds, and
//! `rejections_per_minute` is rejections in the last minute.

use crate::breaker::is_plain_name;
use crate::campaign::Real;
use crate::flow::validate_overflow;
use crate::overflow::{deserialize_chain, Overflow};
use crate::problem::{list, Field, Problems};
use crate::provider::is_http_url;
use crate::Config;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What an alert watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// Used units over the cap, 0 to 1 (a flow: its fullest pool).
    Utilization,
    /// Callers waiting.
    Waiting,
    /// 95th percentile of the wait of the calls granted in the last minute, in ms
    /// (immediate grants count as 0).
    P95Wait,
    /// 95th percentile of the latencies reported in the last minute, in ms.
    P95Latency,
    /// Share of the outcomes reported in the last minute that failed, 0 to 1.
    ErrorRate,
    /// Requests rejected in the last minute.
    RejectionsPerMinute,
    /// Lines the inbound forecast needs, in the intervals that start within the alert's
    /// `lookahead`, beyond the pool's cap (negative: lines to spare). A pool whose reserve
    /// follows the forecast only; fires before the peak with `above = 0`.
    ForecastShortfall,
}

impl AlertMetric {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::Utilization => "utilization",
            AlertMetric::Waiting => "waiting",
            AlertMetric::P95Wait => "p95_wait",
            AlertMetric::P95Latency => "p95_latency",
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::RejectionsPerMinute => "rejections_per_minute",
            AlertMetric::ForecastShortfall => "forecast_shortfall",
        }
    }

    /// Every metric, in documentation order.
    pub const ALL: [AlertMetric; 7] = [
        AlertMetric::Utilization,
        AlertMetric::Waiting,
        AlertMetric::P95Wait,
        AlertMetric::P95Latency,
        AlertMetric::ErrorRate,
        AlertMetric::RejectionsPerMinute,
        AlertMetric::ForecastShortfall,
    ];
}

impl fmt::Display for AlertMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AlertTarget {
    /// A pool, by name.
    Pool(String),
    /// A flow, by name.
    Flow(String),
    /// A campaign, by name.
    Campaign(String),
}

impl AlertTarget {
    /// `pool`, `flow` or `campaign`.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertTarget::Pool(_) => "pool",
            AlertTarget::Flow(_) => "flow",
            AlertTarget::Campaign(_) => "campaign",
        }
    }

    /// The name of the pool, flow or campaign.
    pub fn name(&self) -> &str {
        match self {
            AlertTarget::Pool(n) | AlertTarget::Flow(n) | AlertTarget::Campaign(n) => n,
        }
    }
}

/// One `[[alerts]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The pool watched (exactly one of `pool`, `flow`, `campaign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The flow watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The campaign watched (through its flow: the flow's pools, waits and rejections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// What is watched.
    pub metric: AlertMetric,
    /// Fires when the metric is above this (exactly one of `above`, `below`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Real>,
    /// Fires when the metric is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<Real>,
    /// How long the condition must hold before the alert fires (default "0s": at the
    /// first evaluation that sees it). A spike shorter than this never fires.
    #[serde(rename = "for", default, with = "crate::serde_duration")]
    pub hold: Duration,
    /// With `metric = "forecast_shortfall"`: how far ahead the forecast is looked at
    /// (default "60m", at most "24h").
    #[serde(
        default = "default_lookahead",
        with = "crate::serde_duration",
        skip_serializing_if = "is_default_lookahead"
    )]
    pub lookahead: Duration,
    /// How it resolves (default: once the condition has not held for as long as `for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<ResolveConfig>,
    /// Undo the actions when the alert resolves: `set_overflow` and `set_limit` restore
    /// what was there before, `pause_campaigns` resumes the campaigns it paused
    /// (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub undo: bool,
    /// What to do when it fires (default: nothing but the event, the metric and
    /// `GET /v1/alerts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<AlertAction>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_lookahead() -> Duration {
    Duration::from_secs(3600)
}

fn is_default_lookahead(d: &Duration) -> bool {
    *d == default_lookahead()
}

/// `resolve = { below = 0.8, for = "1m" }`: hysteresis. An alert that fires `above` a
/// threshold resolves once the metric has stayed `below` this value (at most the
/// threshold) for `for`; one that fires `below` resolves `above` a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveConfig {
    /// For a `below` alert: resolve once the metric is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<Real>,
    /// For an `above` alert: resolve once the metric is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<Real>,
    /// How long that must hold (default: the alert's `for`).
    #[serde(rename = "for", default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub hold: Option<Duration>,
}

/// The kinds of automatic response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertActionKind {
    /// POST a JSON message (Slack-compatible: `{ "text": … }`) to `url`, when the alert
    /// fires and when it resolves.
    Notify,
    /// Pause the running campaigns whose priority is below `below_priority`.
    PauseCampaigns,
    /// Switch `flow`'s overflow to `overflow` (e.g. callbacks).
    SetOverflow,
    /// Set `pool`'s limit to `limit`.
    SetLimit,
}

impl AlertActionKind {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertActionKind::Notify => "notify",
            AlertActionKind::PauseCampaigns => "pause_campaigns",
            AlertActionKind::SetOverflow => "set_overflow",
            AlertActionKind::SetLimit => "set_limit",
        }
    }
}

impl fmt::Display for AlertActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One automatic response. Each kind takes its own fields; a field of another kind is
/// refused by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertAction {
    /// What to do.
    pub action: AlertActionKind,
    /// notify: the webhook URL (http or https), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// notify: the environment variable holding it (Slack webhook URLs are secrets),
    /// read when the server starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// pause_campaigns: campaigns whose priority is below this are paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_priority: Option<i32>,
    /// set_overflow: the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// set_overflow: its overflow while the alert fires (one table or a chain).
    #[serde(default, deserialize_with = "deserialize_chain", skip_serializing_if = "Vec::is_empty")]
    pub overflow: Vec<Overflow>,
    /// set_limit: the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// set_limit: its new limit, in units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl AlertAction {
    /// An action of `kind` with no field set.
    pub fn new(kind: AlertActionKind) -> Self {
        AlertAction {
            action: kind,
            url: None,
            url_env: None,
            below_priority: None,
            flow: None,
            overflow: Vec::new(),
            pool: None,
            limit: None,
        }
    }
}

/// The most a `set_limit` may set, as `PUT /v1/pools/{name}` allows.
const MAX_LIMIT: u32 = 1_000_000;

impl AlertConfig {
    /// The target, when exactly one is given.
    pub fn target(&self) -> Option<AlertTarget> {
        match (&self.pool, &self.flow, &self.campaign) {
            (Some(p), None, None) => Some(AlertTarget::Pool(p.clone())),
            (None, Some(f), None) => Some(AlertTarget::Flow(f.clone())),
            (None, None, Some(c)) => Some(AlertTarget::Campaign(c.clone())),
            _ => None,
        }
    }

    /// `(fires above?, threshold)`, when exactly one of `above`, `below` is given.
    pub fn threshold(&self) -> Option<(bool, f64)> {
        match (self.above, self.below) {
            (Some(a), None) => Some((true, a.0)),
            (None, Some(b)) => Some((false, b.0)),
            _ => None,
        }
    }

    /// The value at which a firing alert counts as recovered, and for how long it must
    /// (the resolve table's, else the threshold and `for`).
    pub fn resolve_at(&self) -> (f64, Duration) {
        let (above, threshold) = self.threshold().unwrap_or((true, 0.0));
        let r = self.resolve.unwrap_or(ResolveConfig { above: None, below: None, hold: None });
        let at = if above { r.below } else { r.above };
        (at.map_or(threshold, |v| v.0), r.hold.unwrap_or(self.hold))
    }
}

/// Checks `[[alerts]]`: names, one known target, one threshold, the resolve table and
/// each action's fields.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let alerts = Field::top("alerts");
    out.names("alert", config.alerts.iter().map(|a| a.name.as_str()), |i| alerts.index(i).key("name"));
    for (i, alert) in config.alerts.iter().enumerate() {
        let field = alerts.index(i);
        if !alert.name.trim().is_empty() && !is_plain_name(&alert.name) {
            out.push(
                field.key("name"),
                format!("alert name `{}` may hold only letters, digits, `-`, `_` and `.` (64 at most)", alert.name),
            );
        }
        validate_target(config, alert, &field, out);
        let threshold = match alert.threshold() {
            Some(t) => Some(t),
            None => {
                out.push(field.clone(), format!("alert `{}` needs exactly one of `above` or `below`", alert.name));
                None
            }
        };
        for (key, v) in [("above", alert.above), ("below", alert.below)] {
            if let Some(Real(v)) = v {
                if !v.is_finite() || v < 0.0 {
                    out.push(field.key(key), format!("{key} must be a number of at least 0, got {v}"));
                }
            }
        }
        if let (Some(r), Some((above, threshold))) = (&alert.resolve, threshold) {
            validate_resolve(r, above, threshold, &field.key("resolve"), out);
        }
        for (j, action) in alert.actions.iter().enumerate() {
            validate_action(config, action, &field.key("actions").index(j), out);
        }
    }
}

fn validate_target(config: &Config, alert: &AlertConfig, field: &Field, out: &mut Problems) {
    let Some(target) = alert.target() else {
        out.push(field.clone(), format!("alert `{}` needs exactly one of `pool`, `flow` or `campaign`", alert.name));
        return;
    };
    let name = target.name();
    let (known, names): (bool, Vec<&str>) = match &target {
        AlertTarget::Pool(_) => (config.pool(name).is_some(), config.pools.iter().map(|p| p.name.as_str()).collect()),
        AlertTarget::Flow(_) => (config.flow(name).is_some(), config.flows.iter().map(|f| f.name.as_str()).collect()),
        AlertTarget::Campaign(_) => (
            config.campaigns.iter().any(|c| c.name == name),
            config.campaigns.iter().map(|c| c.name.as_str()).collect(),
        ),
    };
    if !known {
        let kind = target.kind();
        out.push(
            field.key(kind),
            format!("alert `{}` watches unknown {kind} `{name}` ({kind}s: {})", alert.name, list(names.into_iter())),
        );
    }
    if alert.metric == AlertMetric::ForecastShortfall {
        let forecast =
            matches!(&target, AlertTarget::Pool(p) if config.pool(p).is_some_and(|p| p.forecast_class().is_some()));
        if known && !forecast {
            out.push(
                field.key("metric"),
                format!(
                    "alert `{}`: forecast_shortfall watches a pool whose reserve follows the forecast \
                     (reserve = {{ inbound = \"forecast\" }})",
                    alert.name
                ),
            );
        }
        if alert.lookahead > Duration::from_secs(24 * 3600) || alert.lookahead.is_zero() {
            out.push(field.key("lookahead"), "the lookahead is more than 0s and at most 24h");
        }
    } else if alert.lookahead != default_lookahead() {
        out.push(field.key("lookahead"), "`lookahead` is for metric = \"forecast_shortfall\" only");
    }
}

fn validate_resolve(r: &ResolveConfig, above: bool, threshold: f64, field: &Field, out: &mut Problems) {
    let (right, wrong) = if above { ("below", r.above) } else { ("above", r.below) };
    if wrong.is_some() {
        let other = if above { "above" } else { "below" };
        out.push(
            field.key(other),
            format!("an alert that fires {other} a threshold resolves {right} one: write resolve = {{ {right} = … }}"),
        );
    }
    let at = if above { r.below } else { r.above };
    if let Some(Real(v)) = at {
        let ok = if above { v <= threshold } else { v >= threshold };
        if !v.is_finite() || !ok {
            let side = if above { "at most" } else { "at least" };
            out.push(field.key(right), format!("resolve {right} must be {side} the threshold ({threshold}), got {v}"));
        }
    }
}

fn validate_action(config: &Config, a: &AlertAction, field: &Field, out: &mut Problems) {
    use AlertActionKind::*;
    let kind = a.action;
    let only = |out: &mut Problems, present: bool, name: &str, owner: AlertActionKind| {
        if present && kind != owner {
            out.push(field.key(name), format!("`{name}` applies only to action = \"{owner}\", not \"{kind}\""));
        }
    };
    only(out, a.url.is_some(), "url", Notify);
    only(out, a.url_env.is_some(), "url_env", Notify);
    only(out, a.below_priority.is_some(), "below_priority", PauseCampaigns);
    only(out, a.flow.is_some(), "flow", SetOverflow);
    only(out, !a.overflow.is_empty(), "overflow", SetOverflow);
    only(out, a.pool.is_some(), "pool", SetLimit);
    only(out, a.limit.is_some(), "limit", SetLimit);
    match kind {
        Notify => match (&a.url, &a.url_env) {
            (None, None) => out.push(field.clone(), "notify needs a `url` (or `url_env`, a variable holding it)"),
            (Some(_), Some(_)) => out.push(field.clone(), "notify takes either `url` or `url_env`, not both"),
            (Some(url), None) if !is_http_url(url) => {
                out.push(field.key("url"), format!("`{url}` is not an http:// or https:// URL"))
            }
            (None, Some(var)) if var.trim().is_empty() => {
                out.push(field.key("url_env"), "url_env must name a variable")
            }
            _ => {}
        },
        PauseCampaigns => {
            if a.below_priority.is_none() {
                out.push(field.clone(), "pause_campaigns needs `below_priority` (campaigns below it are paused)");
            }
        }
        SetOverflow => {
            match &a.flow {
                None => out.push(field.clone(), "set_overflow needs a `flow`"),
                Some(f) if config.flow(f).is_none() => out.push(
                    field.key("flow"),
                    format!(
                        "set_overflow names unknown flow `{f}` (flows: {})",
                        list(config.flows.iter().map(|f| f.name.as_str()))
                    ),
                ),
                Some(_) => {}
            }
            if a.overflow.is_empty() {
                out.push(field.clone(), "set_overflow needs an `overflow`, e.g. overflow = { action = \"callback\" }");
            }
            for (k, step) in a.overflow.iter().enumerate() {
                validate_overflow(step, &field.key("overflow").index(k), out);
            }
        }
        SetLimit => {
            match &a.pool {
                None => out.push(field.clone(), "set_limit needs a `pool`"),
                Some(p) if config.pool(p).is_none() => out.push(
                    field.key("pool"),
                    format!(
                        "set_limit names unknown pool `{p}` (pools: {})",
                        list(config.pools.iter().map(|p| p.name.as_str()))
                    ),
                ),
                Some(_) => {}
            }
            match a.limit {
                None => out.push(field.clone(), "set_limit needs a `limit`"),
                Some(l) if l > MAX_LIMIT => {
                    out.push(field.key("limit"), format!("limit must be at most {MAX_LIMIT}, got {l}"))
                }
                Some(_) => {}
            }
        }
    }
}
