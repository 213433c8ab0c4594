//! What the API shows of campaigns: progress, import reports, settings as JSON, metrics.

use super::{Campaigns, State};
use callgate_config::CampaignConfig;
use callgate_dialer::import::{Rejected, Skipped};
use callgate_governor::Error;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// At most this many skipped and rejected rows are listed (each); the counts stay exact.
const LIST_MAX: usize = 1000;

/// The answer to an import.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ImportReport {
    /// Leads added.
    pub added: u64,
    /// Rows skipped as duplicates (already in the campaign, or twice in the upload).
    pub skipped: u64,
    /// Rows refused.
    pub rejected: u64,
    /// The skipped rows, with row numbers (the first 1000).
    pub skipped_rows: Vec<Skipped>,
    /// The refused rows, with row numbers and reasons (the first 1000).
    pub rejected_rows: Vec<Rejected>,
    /// Rows left out because their number is on a suppression list the campaign honours
    /// (imported anyway, to end `suppressed` at their dial, with `suppressed=include`).
    pub suppressed: u64,
    /// The suppressed rows, with row numbers and the list (the first 1000).
    pub suppressed_rows: Vec<Skipped>,
    /// True when a list was cut at 1000.
    pub truncated: bool,
}

impl ImportReport {
    pub(super) fn reject(&mut self, r: Rejected) {
        self.rejected += 1;
        if self.rejected_rows.len() < LIST_MAX {
            self.rejected_rows.push(r);
        } else {
            self.truncated = true;
        }
    }

    pub(super) fn suppress(&mut self, s: Skipped) {
        self.suppressed += 1;
        if self.suppressed_rows.len() < LIST_MAX {
            self.suppressed_rows.push(s);
        } else {
            self.truncated = true;
        }
    }

    pub(super) fn skip(&mut self, s: Skipped) {
        self.skipped += 1;
        if self.skipped_rows.len() < LIST_MAX {
            self.skipped_rows.push(s);
        } else {
            self.truncated = true;
        }
    }
}

/// A campaign as `GET /v1/campaigns/{name}` shows it: settings and progress.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    /// Its name.
    pub name: String,
    /// `running`, `paused` or `stopped`.
    pub state: &'static str,
    /// `config` (from the configuration file) or `api`.
    pub source: String,
    /// The flow its calls go through.
    pub flow: String,
    /// The class its calls hold.
    pub class: String,
    /// The provider accounts it dials through.
    pub providers: Vec<CampaignProvider>,
    /// Higher goes first among campaigns.
    pub priority: i32,
    /// Most calls at once, if set.
    pub max_concurrency: Option<u32>,
    /// Dial rate.
    pub calls_per_second: f64,
    /// Why it cannot dial at all (no usable provider), if so.
    pub unavailable: Option<String>,
    /// Why callgate paused it (account refused, breaker open), if it did.
    pub paused_reason: Option<String>,
    /// Its leads by state.
    pub leads: LeadCounts,
    /// Calls being dialed or in progress.
    pub live: u32,
    /// Attempts made.
    pub attempts: u64,
    /// Acquires refused (no capacity).
    pub refusals: u64,
    /// Answered over ended attempts, 0 to 1.
    pub connect_rate: f64,
    /// Mean talk time of answered calls, ms.
    pub avg_talk_ms: u64,
    /// Attempts per hour lately.
    pub calls_per_hour: u64,
    /// Estimated time to finish, ms (`null`: no estimate yet).
    pub eta_ms: Option<u64>,
    /// What its calls cost, USD.
    pub cost_usd: f64,
    /// True when it has leads and none is left to dial.
    pub finished: bool,
    /// Which node paces it, in cluster mode with a shared database (`null` on a single
    /// node, which paces every campaign). `live` counts the calls this node follows:
    /// the pacer's is the campaign's.
    pub pacer: Option<super::Pacer>,
    /// Its settings: the fields of `[[campaigns]]`, durations as `<name>_ms` integers.
    #[schema(value_type = Object)]
    pub config: Value,
}

/// A provider account of a campaign.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignProvider {
    /// The provider's name.
    pub name: String,
    /// The account's pool (`null`: the simulator).
    pub pool: Option<String>,
    /// Cooling down after a refusal until (Unix ms), if it is.
    pub cooling_down_until_ms: Option<u64>,
}

/// A campaign's leads by state.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LeadCounts {
    /// Every lead.
    pub total: u64,
    /// Not yet dialed to the end.
    pub pending: u64,
    /// Pending leads in the dialer's schedule.
    pub scheduled: usize,
    /// Pending leads held back outside the loaded batches.
    pub outside_batches: usize,
    /// Being dialed.
    pub dialing: u64,
    /// In a call.
    pub in_call: u64,
    /// Done, by outcome.
    pub done: BTreeMap<String, u64>,
    /// Refused for good.
    pub failed: u64,
    /// Out of attempts.
    pub exhausted: u64,
    /// Out of attempts, by last outcome.
    pub exhausted_by_outcome: BTreeMap<String, u64>,
    /// Never to be dialed: the number is on a suppression list the campaign honours.
    pub suppressed: u64,
}

/// A campaign as `GET /v1/campaigns` lists it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignBrief {
    /// Its name.
    pub name: String,
    /// `running`, `paused` or `stopped`.
    pub state: &'static str,
    /// Why callgate paused it, if it did.
    pub paused_reason: Option<String>,
    /// `config` or `api`.
    pub source: String,
    /// Higher goes first among campaigns.
    pub priority: i32,
    /// Calls being dialed or in progress.
    pub live: u32,
    /// Pending leads in the dialer's schedule.
    pub scheduled: usize,
}

/// Duration fields of a campaign, by path: JSON carries them as `<name>_ms` integers
/// (API.md), TOML as strings.
const DURATIONS: &[&[&str]] = &[
    &["cooldown"],
    &["retry", "busy"],
    &["retry", "no_answer"],
    &["retry", "voicemail"],
    &["retry", "failed"],
    &["retry", "max_delay"],
    &["simulate", "ring_time"],
    &["simulate", "talk_min"],
    &["simulate", "talk_mean"],
    &["simulate", "talk_max"],
];

fn table_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for k in path {
        cur = cur.as_object_mut()?.get_mut(*k)?;
    }
    cur.as_object_mut()
}

/// A campaign's settings as the API shows them (durations as `_ms` integers).
pub fn config_json(c: &CampaignConfig) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    for path in DURATIONS {
        let (last, parent) = path.split_last().expect("non-empty path");
        let Some(t) = table_at(&mut v, parent) else { continue };
        if let Some(Value::String(s)) = t.remove(*last) {
            if let Ok(d) = callgate_core::duration::parse_duration(&s) {
                t.insert(format!("{last}_ms"), json!(d.as_millis() as u64));
            }
        }
    }
    v
}

/// Reads a campaign from the API's JSON: the fields of `[[campaigns]]`, with durations as
/// strings (`"10m"`) or as `<name>_ms` integers.
pub fn config_from_json(mut v: Value) -> Result<CampaignConfig, String> {
    for path in DURATIONS {
        let (last, parent) = path.split_last().expect("non-empty path");
        let Some(t) = table_at(&mut v, parent) else { continue };
        let key = format!("{last}_ms");
        if let Some(ms) = t.remove(&key) {
            let ms = ms
                .as_u64()
                .ok_or_else(|| format!("`{}` must be a whole number of milliseconds", path_name(parent, &key)))?;
            if t.contains_key(*last) {
                return Err(format!("give either `{}` or `{}`", path_name(parent, last), path_name(parent, &key)));
            }
            t.insert(last.to_string(), json!(format!("{ms}ms")));
        }
    }
    serde_json::from_value(v).map_err(|e| format!("invalid campaign: {e}"))
}

fn path_name(parent: &[&str], last: &str) -> String {
    parent.iter().copied().chain([last]).collect::<Vec<_>>().join(".")
}

impl Campaigns {
    /// `GET /v1/campaigns/{name}`: settings and progress.
    pub fn view(&self, name: &str) -> Result<CampaignView, Error> {
        let now = self.now();
        let (cfg, state, source, live, scheduled, parked, providers, unavailable, class, paused_reason) = {
            let inner = self.lock();
            let rt = inner.list.iter().find(|r| r.name == name).ok_or_else(|| super::unknown_campaign(name))?;
            let providers: Vec<CampaignProvider> = rt
                .routes
                .iter()
                .map(|r| CampaignProvider {
                    name: r.provider.clone(),
                    pool: r.pool.clone(),
                    cooling_down_until_ms: (r.cooldown_until > now).then_some(r.cooldown_until),
                })
                .collect();
            (
                rt.cfg.clone(),
                rt.state,
                rt.source.clone(),
                rt.live,
                rt.sched.len(),
                rt.sched.parked(),
                providers,
                rt.unavailable.clone(),
                rt.class.clone(),
                rt.paused_reason.clone(),
            )
        };
        let hour = 3600 * 1000;
        let counts = self.store.counts(name, now.saturating_sub(hour)).map_err(super::not_stored)?;
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        let mut done: BTreeMap<String, u64> = BTreeMap::new();
        let mut exhausted: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for (state, outcome, n) in &counts.leads {
            total += n;
            *by_state.entry(state.as_str()).or_default() += n;
            let o = outcome.clone().unwrap_or_else(|| "unknown".into());
            match state.as_str() {
                "done" => *done.entry(o).or_default() += n,
                "exhausted" => *exhausted.entry(o).or_default() += n,
                _ => {}
            }
        }
        let get = |s: &str| by_state.get(s).copied().unwrap_or(0);
        let remaining = get("pending") + get("dialing") + get("in_call");
        // The live rate: leads finished over the last hour (or since the campaign began,
        // if that is shorter); nothing finished yet, no estimate.
        let created =
            self.store.campaigns().ok().and_then(|l| l.into_iter().find(|c| c.name == name)).map(|c| c.created_at);
        let span = created.map_or(hour, |c| now.saturating_sub(c).clamp(60_000, hour));
        let eta_ms = (counts.finished_recent > 0 && remaining > 0)
            .then(|| (remaining as f64 * span as f64 / counts.finished_recent as f64) as u64);
        let ended = counts.ended.max(1);
        Ok(CampaignView {
            name: name.to_string(),
            state: state.as_str(),
            source,
            flow: cfg.flow.clone(),
            class,
            providers,
            priority: cfg.priority,
            max_concurrency: cfg.max_concurrency,
            calls_per_second: cfg.calls_per_second.0,
            unavailable,
            paused_reason,
            leads: LeadCounts {
                total,
                pending: get("pending"),
                scheduled,
                outside_batches: parked,
                dialing: get("dialing"),
                in_call: get("in_call"),
                done,
                failed: get("failed"),
                exhausted: get("exhausted"),
                exhausted_by_outcome: exhausted,
                suppressed: get("suppressed"),
            },
            live,
            attempts: counts.attempts,
            refusals: counts.refused,
            connect_rate: if counts.ended == 0 { 0.0 } else { counts.answered as f64 / ended as f64 },
            avg_talk_ms: counts.talk_ms.checked_div(counts.answered).unwrap_or(0),
            calls_per_hour: (counts.recent as f64 * hour as f64 / span as f64).round() as u64,
            eta_ms,
            cost_usd: (counts.cost * 10_000.0).round() / 10_000.0,
            finished: remaining == 0 && total > 0,
            pacer: self.pacing.pacer(name, now),
            config: config_json(&cfg),
        })
    }

    /// `GET /v1/campaigns`: every campaign, briefly.
    pub fn list(&self) -> Vec<CampaignBrief> {
        let inner = self.lock();
        inner
            .list
            .iter()
            .map(|rt| CampaignBrief {
                name: rt.name.clone(),
                state: rt.state.as_str(),
                paused_reason: rt.paused_reason.clone(),
                source: rt.source.clone(),
                priority: rt.cfg.priority,
                live: rt.live,
                scheduled: rt.sched.len(),
            })
            .collect()
    }

    /// Campaign metrics in Prometheus text: live calls and scheduled leads (gauges),
    /// attempts by outcome and cost (counters since the process started).
    pub fn render_metrics(&self, out: &mut String) {
        type Gauges = Vec<(String, u32, usize)>;
        type States = Vec<(String, State, bool)>;
        let (gauges, states): (Gauges, States) = {
            let inner = self.lock();
            (
                inner.list.iter().map(|r| (r.name.clone(), r.live, r.sched.len())).collect(),
                inner.list.iter().map(|r| (r.name.clone(), r.state, r.paused_reason.is_some())).collect(),
            )
        };
        // With no campaign the families are still declared (with no samples), so alert
        // rules and dashboards that name them find them on every server.
        let _ = writeln!(out, "# HELP callgate_campaign_live Calls of the campaign being dialed or in progress.");
        let _ = writeln!(out, "# TYPE callgate_campaign_live gauge");
        for (n, live, _) in &gauges {
            let _ = writeln!(out, "callgate_campaign_live{{campaign=\"{n}\"}} {live}");
        }
        let _ = writeln!(out, "# HELP callgate_campaign_scheduled Pending leads waiting to be dialed.");
        let _ = writeln!(out, "# TYPE callgate_campaign_scheduled gauge");
        for (n, _, s) in &gauges {
            let _ = writeln!(out, "callgate_campaign_scheduled{{campaign=\"{n}\"}} {s}");
        }
        let _ = writeln!(out, "# HELP callgate_campaign_running 1 while the campaign dials.");
        let _ = writeln!(out, "# TYPE callgate_campaign_running gauge");
        for (n, s, _) in &states {
            let _ = writeln!(out, "callgate_campaign_running{{campaign=\"{n}\"}} {}", u8::from(*s == State::Running));
        }
        let _ = writeln!(
            out,
            "# HELP callgate_campaign_account_paused 1 while the campaign is paused because its provider refused the account."
        );
        let _ = writeln!(out, "# TYPE callgate_campaign_account_paused gauge");
        for (n, _, by_account) in &states {
            let _ = writeln!(out, "callgate_campaign_account_paused{{campaign=\"{n}\"}} {}", u8::from(*by_account));
        }
        if self.pacing.clustered() {
            let now = self.now();
            let pacers: Vec<(String, super::Pacer)> =
                gauges.iter().filter_map(|(n, _, _)| Some((n.clone(), self.pacing.pacer(n, now)?))).collect();
            let _ = writeln!(
                out,
                "# HELP callgate_campaign_paced_here 1 while this node paces the campaign (cluster mode)."
            );
            let _ = writeln!(out, "# TYPE callgate_campaign_paced_here gauge");
            for (n, p) in &pacers {
                let _ = writeln!(out, "callgate_campaign_paced_here{{campaign=\"{n}\"}} {}", u8::from(p.here));
            }
            let _ = writeln!(
                out,
                "# HELP callgate_campaign_pacer The fencing token of the node that paces the campaign, as this node last read it (cluster mode)."
            );
            let _ = writeln!(out, "# TYPE callgate_campaign_pacer gauge");
            for (n, p) in &pacers {
                if let (Some(node), Some(token)) = (&p.node, p.token) {
                    let node = node.replace('\\', "\\\\").replace('"', "\\\"");
                    let _ = writeln!(out, "callgate_campaign_pacer{{campaign=\"{n}\",node=\"{node}\"}} {token}");
                }
            }
        }
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP callgate_campaign_account_errors_total Calls the provider refused for the account (key, credit, ids), not the lead."
        );
        let _ = writeln!(out, "# TYPE callgate_campaign_account_errors_total counter");
        for (n, _, _) in &gauges {
            let v = stats.account_errors.get(n).copied().unwrap_or(0);
            let _ = writeln!(out, "callgate_campaign_account_errors_total{{campaign=\"{n}\"}} {v}");
        }
        let _ = writeln!(out, "# HELP callgate_campaign_attempts_total Attempts ended, by outcome.");
        let _ = writeln!(out, "# TYPE callgate_campaign_attempts_total counter");
        for (n, _, _) in &gauges {
            for o in callgate_dialer::dial::Outcome::ALL {
                let v = stats.outcomes.get(&(n.clone(), o.as_str())).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "callgate_campaign_attempts_total{{campaign=\"{n}\",outcome=\"{}\"}} {v}",
                    o.as_str()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP callgate_campaign_cost_usd_total What the campaign's calls cost, as providers report it."
        );
        let _ = writeln!(out, "# TYPE callgate_campaign_cost_usd_total counter");
        for (n, _, _) in &gauges {
            let v = stats.cost.get(n).copied().unwrap_or(0.0);
            let _ = writeln!(out, "callgate_campaign_cost_usd_total{{campaign=\"{n}\"}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_travel_as_ms_in_json_and_strings_in_toml() {
        let c: CampaignConfig = config_from_json(json!({
            "name": "c", "flow": "f", "simulate": {}, "retry": { "busy_ms": 60000, "no_answer": "2h" }, "cooldown_ms": 5000
        }))
        .unwrap();
        assert_eq!(c.retry.busy, std::time::Duration::from_secs(60));
        assert_eq!(c.retry.no_answer, std::time::Duration::from_secs(7200));
        assert_eq!(c.cooldown, std::time::Duration::from_secs(5));
        let v = config_json(&c);
        assert_eq!(v["retry"]["busy_ms"], 60000);
        assert_eq!(v["cooldown_ms"], 5000);
        assert!(v["retry"].get("busy").is_none());
        assert_eq!(config_from_json(v).unwrap(), c, "round trip");
        assert!(config_from_json(json!({ "name": "c", "flow": "f", "cooldown": "1s", "cooldown_ms": 5 })).is_err());
        assert!(config_from_json(json!({ "name": "c", "flow": "f", "colour": "red" })).is_err());
    }
}
