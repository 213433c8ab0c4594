//! Inbound calls from provider webhooks, the part both edges share: which flow serves a
//! call, what a caller's number is good for, booking callbacks and recording calls.
//!
//! The edges differ in what they can do with an overflow step (Vapi answers once, in
//! JSON, and has no keypad; Twilio can play, record and gather keys), so each edge walks
//! the flow's chain itself and skips the steps it cannot carry out; everything that
//! touches state goes through here and the governor.

use crate::providers::ProviderSet;
use callgate_config::{Config, FlowConfig, MenuConfig, Overflow};
use callgate_events::live::Live;
use callgate_events::metrics::Metrics;
use callgate_governor::{Error, Governor};
use callgate_store::{CallUpdate, NewCallback, Record};
use serde_json::json;
use std::sync::Arc;

mod spill;
pub use spill::{spill_key, Spilled, Spills, SPILL_KEY_PREFIX};

/// What a caller hears when no overflow step could be carried out.
pub const DEFAULT_BUSY: &str = "All our lines are busy right now. Please call again later.";
/// What a caller hears when a callback is booked without a message of its own.
pub const DEFAULT_CALLBACK: &str =
    "All our lines are busy right now. We will call you back at this number as soon as a line is free.";
/// What a caller hears when this number serves no flow.
pub const NOT_IN_SERVICE: &str = "Sorry, this number cannot take calls right now.";

/// The configuration the edges need, with providers resolved.
#[derive(Debug)]
pub struct Inbound {
    /// Replaced as a whole by a configuration reload; each lookup reads one version.
    config: std::sync::RwLock<Arc<Config>>,
    /// Providers with their secrets: the set in force, read per webhook (a reload swaps it).
    pub providers: ProviderSet,
    /// Spills and routed callers under way.
    pub spills: Spills,
}

impl Inbound {
    /// From a validated configuration and the providers in force.
    pub fn new(config: Arc<Config>, providers: ProviderSet) -> Self {
        Inbound { config: std::sync::RwLock::new(config), providers, spills: Spills::default() }
    }

    fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `config`'s flows and menus from now on (a configuration reload; the
    /// reload puts its providers in force through the shared [`ProviderSet`]).
    #[doc(hidden)]
    pub fn replace(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The flow serving calls of `provider` to `number`.
    pub fn flow_for(&self, provider: &str, number: Option<&str>) -> Option<FlowConfig> {
        self.config().flow_for(provider, number).cloned()
    }

    /// The flow serving `call` when it arrives at `now_ms`: a match on the caller first
    /// (prefix, country, list, hours), then on the number called.
    pub fn flow_for_call(&self, call: &Call, now_ms: u64) -> Option<FlowConfig> {
        self.config().flow_for_caller(&call.provider, call.to.as_deref(), call.from.as_deref(), Some(now_ms)).cloned()
    }

    /// Whether some flow answers calls of `provider` to `number`.
    pub fn serves(&self, provider: &str, number: &str) -> bool {
        self.config().serves(provider, number)
    }

    /// The first of `flow`'s `route` rules that takes `call` at `now_ms`, with its
    /// target flow.
    pub fn route_for(&self, flow: &FlowConfig, call: &Call, now_ms: u64) -> Option<(Overflow, FlowConfig)> {
        let config = self.config();
        let rule = flow.route.iter().find(|r| r.caller.selects(call.from.as_deref(), now_ms, &config.caller_lists))?;
        Some((rule.as_spill(), config.flow(&rule.flow)?.clone()))
    }

    /// Whether some spill step or route rule of the configuration names `flow` (only then
    /// may a call arriving there be a transferred one).
    pub fn spilled_into(&self, flow: &str) -> bool {
        let config = self.config();
        let names = |chain: &[Overflow]| {
            chain.iter().any(|o| o.action == callgate_config::OverflowAction::Spill && o.flow.as_deref() == Some(flow))
        };
        config.flows.iter().any(|f| names(&f.overflow) || names(&f.fallback) || f.route.iter().any(|r| r.flow == flow))
            || config.schedules.iter().any(|s| s.flows.values().any(|c| names(&c.overflow)))
            || config.alerts.iter().any(|a| a.actions.iter().any(|x| names(&x.overflow)))
            || config.menus.iter().any(|m| m.keys.values().any(|k| names(std::slice::from_ref(k))))
    }

    /// `[compliance]` in force: where opt-outs come from and which list they go to.
    pub fn compliance(&self) -> callgate_config::ComplianceConfig {
        self.config().compliance.clone()
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<FlowConfig> {
        self.config().flow(name).cloned()
    }

    /// The menu named `name`.
    pub fn menu(&self, name: &str) -> Option<MenuConfig> {
        self.config().menu(name).cloned()
    }

    /// The class with the highest priority (adopted calls run in it): nothing should
    /// stand ahead of calls that are already on the line.
    pub fn top_class(&self) -> String {
        self.config().classes.iter().max_by_key(|c| c.priority).map(|c| c.name.clone()).unwrap_or_default()
    }
}

/// A provider call as a webhook describes it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The provider it came through.
    pub provider: Arc<str>,
    /// The provider's call id: the key of its lease or ticket.
    pub id: String,
    /// The caller's number, if the platform gave one.
    pub from: Option<String>,
    /// The number called.
    pub to: Option<String>,
}

pub use callgate_providers::MAX_CALL_ID;

/// Twilio's stand-ins for a withheld caller id (anonymous, restricted, unavailable,
/// unknown): numbers that look real but reach nobody.
const WITHHELD: [&str; 4] = ["+266696687", "+7378742833", "+2562533", "+86282452253"];

impl Call {
    /// The JSON kept with the call's lease or ticket: whose call it is, so that
    /// reconciliation finds it after a restart.
    pub fn meta(&self) -> String {
        json!({ "provider": &*self.provider, "call_id": self.id, "from": self.from, "to": self.to }).to_string()
    }

    /// The caller's number if a callback can reach it: E.164, and not withheld.
    pub fn callable(&self) -> Option<&str> {
        let n = self.from.as_deref()?;
        let digits = n.strip_prefix('+')?;
        let e164 = (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        (e164 && !WITHHELD.contains(&n)).then_some(n)
    }

    /// A call record update carrying what the webhook said about the call.
    pub fn update(&self, now: u64) -> CallUpdate {
        CallUpdate {
            provider: self.provider.to_string(),
            call_id: self.id.clone(),
            from_number: self.from.clone(),
            to_number: self.to.clone(),
            at: now,
            ..CallUpdate::default()
        }
    }
}

/// What booking a callback touches: the governor (durably), then the metrics and the
/// live events.
#[derive(Clone, Copy, Debug)]
pub struct Effects<'a> {
    /// Records the callback and the call.
    pub governor: &'a Governor,
    /// Counts the booking.
    pub metrics: &'a Metrics,
    /// Publishes it.
    pub live: &'a Live,
}

/// Books a callback for `call` as `step` of `flow` says, durably, before the caller is
/// told. `false` (and nothing booked) when the caller's number cannot be called back.
pub async fn book_callback(app: Effects<'_>, call: &Call, flow: &FlowConfig, step: &Overflow) -> Result<bool, Error> {
    let Some(number) = call.callable() else { return Ok(false) };
    let now = app.governor.now_ms();
    let after = step.after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let due = now.saturating_add(after);
    let mut update = call.update(now);
    update.flow = Some(flow.name.clone());
    update.outcome = Some("overflow:callback".into());
    app.governor
        .record(vec![
            Record::Callback(NewCallback {
                provider: call.provider.to_string(),
                call_id: call.id.clone(),
                number: number.to_owned(),
                flow: flow.name.clone(),
                booked_at: now,
                due_at: due,
            }),
            Record::Call(update),
        ])
        .await?;
    app.metrics.edges.callback_booked(&flow.name);
    app.live.publish_json(&json!({
        "type": "callback_booked",
        "at_ms": now,
        "provider": &*call.provider,
        "call_id": call.id,
        "flow": flow.name,
        "due_at_ms": due,
    }));
    tracing::info!(provider = %call.provider, call = %call.id, flow = %flow.name, due_at_ms = due, "Booked a callback");
    Ok(true)
}

/// Records what a webhook taught about a call, durably.
pub async fn record_call(governor: &Governor, update: CallUpdate) -> Result<(), Error> {
    governor.record(vec![Record::Call(update)]).await
}

/// Puts the caller's `number` on the opt-out `list` with `source` (`call:ID`), for every
/// campaign and callback (see [`crate::campaign::Campaigns::opt_out`]); `why` says what
/// the call said. A number that cannot be read is logged, not listed; a list that cannot
/// be written is logged (the number stays suppressed in memory until a restart).
pub async fn opt_out(
    campaigns: &crate::campaign::Campaigns,
    number: Option<&str>,
    list: &str,
    source: &str,
    why: &str,
) {
    let key = number
        .and_then(|n| callgate_dialer::phone::normalize(n, None).ok())
        .and_then(|n| callgate_dialer::dnc::key(&n.e164));
    let Some(key) = key else {
        tracing::warn!(source, why, number = ?number, "A call opted out, but its number cannot be read; nothing is listed");
        return;
    };
    match campaigns.opt_out(list, key, source).await {
        Ok(_) => tracing::info!(source, why, list, "A caller opted out; the number will not be called again"),
        Err(e) => tracing::error!(source, why, list, error = %e.message, "Cannot record an opt-out durably"),
    }
}
