//! `[[flows]]`: entry points, the pools their calls hold, their waiting room and their
//! overflow chain.

use crate::caller::{validate_selector, CallerSelector};
use crate::menu::is_dtmf_key;
use crate::overflow::{deserialize_chain, one_or_many, Overflow, OverflowAction};
use crate::problem::{list, Field, Problems};
use crate::provider::{is_http_url, ProviderKind};
use crate::Config;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::time::Duration;

/// One `[[flows]]` table: an entry point (a phone number, an assistant, a campaign).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Unique, non-empty name (e.g. `support`), passed as `"flow"` by clients.
    pub name: String,
    /// The pools a call of this flow holds, each at most once. In the file, an entry is
    /// a pool name (`"vapi-main"`, 1 unit) or a table (`{ pool = "vapi-main", units = 2 }`).
    pub pools: Vec<FlowPool>,
    /// The class the flow's requests run in.
    pub class: String,
    /// How long a lease lives unless renewed or released (default 2 hours: longer than
    /// nearly every voice call, short enough that a lost release frees its slot the same
    /// day). Written as a duration string, e.g. `"2h"`.
    #[serde(default = "default_lease_ttl", with = "crate::serde_duration")]
    pub lease_ttl: Duration,
    /// The waiting room; `None` (left out) rejects at once a call that does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueConfig>,
    /// What to do with a rejected call: a chain tried in order, the first step first
    /// (default: none, the call is simply refused). In the file, one table or an array.
    #[serde(default, deserialize_with = "deserialize_chain")]
    pub overflow: Vec<Overflow>,
    /// Which provider's calls, to which called number, this flow serves. In the file,
    /// `match = { provider = "…", number = "+1…" }` or an array of such tables. A match
    /// without `number` makes the flow the provider's default for numbers no other flow
    /// names. Default: none (the flow serves the HTTP API only).
    #[serde(
        rename = "match",
        default,
        deserialize_with = "deserialize_matches",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub matches: Vec<FlowMatch>,
    /// How a granted Vapi call is answered; required when the flow matches a Vapi provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vapi: Option<VapiFlow>,
    /// How a granted Twilio call is connected, and what a waiting caller hears; required
    /// when the flow matches a Twilio provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioFlow>,
    /// The `[[breakers]]` (by name) this flow's calls need; while one of them is open,
    /// callers get the `fallback` (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// What callers get while a dependency is down: one overflow table or a chain
    /// (default: none, the flow's `overflow` applies).
    #[serde(default, deserialize_with = "deserialize_chain", skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<Overflow>,
    /// Where callers that another flow spills or routes here are transferred to: an E.164
    /// number or a SIP URI that reaches this flow's provider (default: the number of this
    /// flow's `match` when it names exactly one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
    /// Rules tried before this flow admits a caller: the first whose `caller` selector
    /// takes the caller admits them in its `flow` and, when that grants, transfers them
    /// there (as a `spill` step would); when it does not, the call goes on here as if no
    /// rule applied. In the file, one table or an array (default: none).
    #[serde(default, deserialize_with = "crate::spill::deserialize_routes", skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<crate::spill::RouteRule>,
}

/// Which calls a flow serves: a provider, and the number that was called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowMatch {
    /// The `name` of one of the `[[providers]]`.
    pub provider: String,
    /// The called number in E.164 (`+15550001111`) or a SIP URI, exactly as the platform
    /// reports it (Vapi: `phoneNumber.number`, or `phoneNumber.sipUri` for a Vapi SIP number;
    /// Twilio: `To`). Left out: every number of
    /// the provider that no other flow names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Only callers this selector takes (by number prefix, country, list or hours). Matches
    /// with a selector are tried before those without, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<CallerSelector>,
}

fn deserialize_matches<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FlowMatch>, D::Error> {
    one_or_many(d, "a table such as { provider = \"vapi-main\", number = \"+15550001111\" } or an array of them")
}

/// A flow's Vapi settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VapiFlow {
    /// The assistant that takes a granted call (`{ "assistantId": … }` in the reply to
    /// `assistant-request`); exactly one of `assistant_id`, `squad_id` and `workflow_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<String>,
    /// The squad that takes a granted call (`{ "squadId": … }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squad_id: Option<String>,
    /// The workflow that takes a granted call (`{ "workflowId": … }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// This flow's own upstream server URL, instead of the provider's `forward_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_url: Option<String>,
    /// The environment variable holding the secret sent to this flow's `forward_url`
    /// (default: the provider's `forward_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_secret_env: Option<String>,
    /// The header that carries it (default: the provider's `forward_header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_header: Option<String>,
}

/// What takes a granted Vapi call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VapiTarget<'a> {
    /// `assistantId`.
    Assistant(&'a str),
    /// `squadId`.
    Squad(&'a str),
    /// `workflowId`.
    Workflow(&'a str),
}

impl VapiFlow {
    /// The assistant, squad or workflow (validation makes sure there is exactly one; the
    /// assistant wins if a config skipped validation).
    pub fn target(&self) -> Option<VapiTarget<'_>> {
        (self.assistant_id.as_deref().map(VapiTarget::Assistant))
            .or(self.squad_id.as_deref().map(VapiTarget::Squad))
            .or(self.workflow_id.as_deref().map(VapiTarget::Workflow))
    }
}

/// A flow's Twilio settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioFlow {
    /// Where a granted call goes.
    pub connect: TwilioConnect,
    /// A short audio clip (URL) played to waiting callers between announcements, instead
    /// of silence. Keep it short (about 10 s): a caller is connected when the clip ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_audio: Option<String>,
}

/// Where a granted Twilio call is connected: exactly one of the three.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConnect {
    /// A SIP URI (`<Dial><Sip>`), e.g. a Vapi or LiveKit SIP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<String>,
    /// A phone number in E.164 (`<Dial><Number>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// A bidirectional media stream (`<Connect><Stream url>`), `wss://…`, e.g. a Pipecat
    /// or LiveKit worker. The stream gets the lease id as the custom parameter `lease`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
}

/// The longest `lease_ttl`, 30 days: the most `POST /v1/acquire` accepts as `ttl_ms`, so
/// that a flow never gives a lease the API would refuse.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `queue.max_wait`, 24 hours: the most `POST /v1/acquire` accepts as
/// `max_wait_ms`.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The default lease TTL, 2 hours.
pub(crate) fn default_lease_ttl() -> Duration {
    Duration::from_secs(2 * 3600)
}

/// A pool a flow needs, and how many of its units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowPool {
    /// The pool's name.
    pub pool: String,
    /// Units of that pool per call (at least 1; default 1).
    pub units: u32,
}

impl FlowPool {
    /// One unit of `pool`.
    pub fn one(pool: &str) -> Self {
        FlowPool { pool: pool.to_owned(), units: 1 }
    }
}

/// The table form of a flow's pool entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowPoolTable {
    pool: String,
    #[serde(default = "one_unit")]
    units: u32,
}

fn one_unit() -> u32 {
    1
}

impl<'de> Deserialize<'de> for FlowPool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = FlowPool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pool name or a table such as { pool = \"vapi-main\", units = 1 }")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FlowPool, E> {
                Ok(FlowPool::one(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FlowPool, A::Error> {
                let t = FlowPoolTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(FlowPool { pool: t.pool, units: t.units })
            }
        }
        d.deserialize_any(Entry)
    }
}

/// A flow's waiting room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// How long a caller may wait for a line before the overflow applies (at least 1 ms;
    /// a request may ask for less). Written as a duration string, e.g. `"60s"`.
    #[serde(with = "crate::serde_duration")]
    pub max_wait: Duration,
    /// At most this many of the flow's callers wait at once (at least 1; left out:
    /// no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u32>,
}

/// Checks `[[flows]]`: names, known class and pools, units, the waiting room and the
/// overflow chain.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let flows = Field::top("flows");
    out.names("flow", config.flows.iter().map(|f| f.name.as_str()), |i| flows.index(i).key("name"));
    for (i, flow) in config.flows.iter().enumerate() {
        let field = flows.index(i);
        if config.class(&flow.class).is_none() {
            out.push(
                field.key("class"),
                format!(
                    "flow `{}` names unknown class `{}` (classes: {})",
                    flow.name,
                    flow.class,
                    list(config.classes.iter().map(|c| c.name.as_str()))
                ),
            );
        }
        validate_pools(config, flow, &field, out);
        if flow.lease_ttl.as_millis() == 0 {
            out.push(field.key("lease_ttl"), "lease_ttl must be at least 1ms");
        } else if flow.lease_ttl > MAX_LEASE_TTL {
            out.push(
                field.key("lease_ttl"),
                format!(
                    "lease_ttl must be at most 720h (30 days), the longest lease the API grants;                      a call that long should renew its lease (got {}s)",
                    flow.lease_ttl.as_secs()
                ),
            );
        }
        if let Some(queue) = &flow.queue {
            let q = field.key("queue");
            if queue.max_wait.as_millis() == 0 {
                out.push(q.key("max_wait"), "max_wait must be at least 1ms (leave out `queue` for no waiting room)");
            } else if queue.max_wait > MAX_QUEUE_WAIT {
                out.push(
                    q.key("max_wait"),
                    format!(
                        "max_wait must be at most 24h, the longest wait the API accepts (got {}s)",
                        queue.max_wait.as_secs()
                    ),
                );
            }
            if queue.max_len == Some(0) {
                out.push(
                    q.key("max_len"),
                    "max_len must be at least 1 (leave out `queue` for no waiting room, or \
                     `max_len` for no bound)",
                );
            }
        }
        for (k, step) in flow.overflow.iter().enumerate() {
            validate_overflow(step, &field.key("overflow").index(k), out);
        }
        validate_matches(config, flow, &field, out);
        crate::spill::validate_flow(config, flow, &field, out);
    }
    validate_match_overlaps(config, out);
    crate::spill::validate(config, out);
}

/// Each match names a known provider and a well-formed number; the flow has the
/// settings that provider's kind needs.
fn validate_matches(config: &Config, flow: &FlowConfig, field: &Field, out: &mut Problems) {
    let at = |j: usize| {
        if flow.matches.len() == 1 {
            field.key("match")
        } else {
            field.key("match").index(j)
        }
    };
    for (j, m) in flow.matches.iter().enumerate() {
        let Some(provider) = config.providers.iter().find(|p| p.name == m.provider) else {
            out.push(
                at(j).key("provider"),
                format!(
                    "flow `{}` matches unknown provider `{}` (providers: {})",
                    flow.name,
                    m.provider,
                    list(config.providers.iter().map(|p| p.name.as_str()))
                ),
            );
            continue;
        };
        if let Some(sel) = &m.caller {
            validate_selector(config, sel, &at(j).key("caller"), out);
        }
        if let Some(number) = &m.number {
            if !is_e164(number) && !is_sip_uri(number) {
                out.push(
                    at(j).key("number"),
                    format!("`{number}` is neither an E.164 number (e.g. \"+15550001111\") nor a SIP URI"),
                );
            }
        }
        match provider.kind {
            ProviderKind::Vapi if flow.vapi.is_none() => out.push(
                field.clone(),
                format!(
                    "flow `{}` answers Vapi calls (provider `{}`) and needs vapi = {{ assistant_id = \"…\" }} \
                     (or squad_id, or workflow_id)",
                    flow.name, provider.name
                ),
            ),
            ProviderKind::Twilio if flow.twilio.is_none() => out.push(
                field.clone(),
                format!(
                    "flow `{}` answers Twilio calls (provider `{}`) and needs twilio = {{ connect = {{ sip = \"sip:…\" }} }} \
                     (or number, or stream_url)",
                    flow.name, provider.name
                ),
            ),
            _ => {}
        }
    }
    if let Some(vapi) = &flow.vapi {
        let at = field.key("vapi");
        let ids =
            [("assistant_id", &vapi.assistant_id), ("squad_id", &vapi.squad_id), ("workflow_id", &vapi.workflow_id)];
        if ids.iter().filter(|(_, v)| v.is_some()).count() != 1 {
            out.push(at.clone(), "vapi takes exactly one of `assistant_id`, `squad_id` or `workflow_id`");
        }
        for (name, value) in ids {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                out.push(at.key(name), format!("{name} must not be empty"));
            }
        }
        if let Some(url) = &vapi.forward_url {
            if !is_http_url(url) {
                out.push(at.key("forward_url"), format!("`{url}` is not an http:// or https:// URL"));
            }
        }
        if vapi.forward_secret_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
            out.push(at.key("forward_secret_env"), "`forward_secret_env` must name an environment variable");
        }
        if let Some(h) = &vapi.forward_header {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                out.push(at.key("forward_header"), format!("`{h}` is not an HTTP header name"));
            }
        }
    }
    if let Some(twilio) = &flow.twilio {
        let connect = &twilio.connect;
        let at = field.key("twilio").key("connect");
        let given = [&connect.sip, &connect.number, &connect.stream_url].iter().filter(|o| o.is_some()).count();
        if given != 1 {
            out.push(
                at.clone(),
                "connect takes exactly one of `sip` (\"sip:…\"), `number` (E.164) or `stream_url` (\"wss://…\")",
            );
        }
        if let Some(sip) = &connect.sip {
            if !is_sip_uri(sip) {
                out.push(
                    at.key("sip"),
                    format!("`{sip}` is not a SIP URI (write e.g. \"sip:agent@example.sip.vapi.ai\")"),
                );
            }
        }
        if let Some(number) = &connect.number {
            if !is_e164(number) {
                out.push(at.key("number"), format!("`{number}` is not an E.164 number (write e.g. \"+14155550123\")"));
            }
        }
        if let Some(url) = &connect.stream_url {
            if !(url.starts_with("wss://") || url.starts_with("ws://")) || url.len() < 7 {
                out.push(at.key("stream_url"), format!("`{url}` is not a wss:// URL"));
            }
        }
        if let Some(url) = &twilio.hold_audio {
            if !is_http_url(url) {
                out.push(field.key("twilio").key("hold_audio"), format!("`{url}` is not an http:// or https:// URL"));
            }
        }
    }
}

/// No two flows serve the same provider and number, and each provider has at most one
/// default flow (a match without `number`).
fn validate_match_overlaps(config: &Config, out: &mut Problems) {
    let mut seen: std::collections::HashMap<(&str, Option<&str>), &str> = std::collections::HashMap::new();
    for (i, flow) in config.flows.iter().enumerate() {
        for (j, m) in flow.matches.iter().enumerate() {
            if m.caller.is_some() {
                // Tried first, in file order: several flows may select callers of one number.
                continue;
            }
            let key = (m.provider.as_str(), m.number.as_deref());
            match seen.get(&key) {
                Some(first) if *first != flow.name => {
                    let what = match &m.number {
                        Some(n) => format!("number `{n}` of provider `{}`", m.provider),
                        None => format!("the default of provider `{}` (a match without `number`)", m.provider),
                    };
                    let field = Field::top("flows").index(i).key("match");
                    let field = if flow.matches.len() == 1 { field } else { field.index(j) };
                    out.push(field, format!("flows `{first}` and `{}` both serve {what}", flow.name));
                }
                _ => {
                    seen.insert(key, &flow.name);
                }
            }
        }
    }
}

fn validate_pools(config: &Config, flow: &FlowConfig, field: &Field, out: &mut Problems) {
    let pools = field.key("pools");
    if flow.pools.is_empty() {
        out.push(pools.clone(), format!("flow `{}` needs at least one pool", flow.name));
    }
    for (j, entry) in flow.pools.iter().enumerate() {
        if config.pool(&entry.pool).is_none() {
            out.push(
                pools.index(j),
                format!(
                    "flow `{}` names unknown pool `{}` (pools: {})",
                    flow.name,
                    entry.pool,
                    list(config.pools.iter().map(|p| p.name.as_str()))
                ),
            );
        } else if flow.pools[..j].iter().any(|o| o.pool == entry.pool) {
            out.push(
                pools.index(j),
                format!(
                    "pool `{}` is listed twice in flow `{}`; list it once with the total units",
                    entry.pool, flow.name
                ),
            );
        }
        if entry.units == 0 {
            out.push(pools.index(j).key("units"), "units must be at least 1");
        }
        if let (Some(pool), Some(class)) = (config.pool(&entry.pool), config.class(&flow.class)) {
            // DESIGN.md "Never fits": a call may hold at most the limit minus what is
            // reserved for the classes above its own. Asking more, it would be refused at
            // every attempt.
            // A reserve that follows the forecast counts at its ceiling: at the peak.
            let above: u64 = pool
                .reserve_at_most()
                .iter()
                .filter(|(c, _)| config.class(c).is_some_and(|c| c.priority > class.priority))
                .map(|(_, &u)| u64::from(u))
                .sum();
            let most = u64::from(pool.limit).saturating_sub(above);
            if u64::from(entry.units) > most {
                out.push(
                    pools.index(j),
                    format!(
                        "flow `{}` needs {} units of pool `{}`, which can never give class `{}` more than {most} \
                         (limit {} minus {above} reserved for higher classes): its calls would all be refused",
                        flow.name, entry.units, entry.pool, flow.class, pool.limit
                    ),
                );
            }
        }
    }
}

/// Checks one overflow step: the fields its action needs, and no field of another action.
pub(crate) fn validate_overflow(step: &Overflow, field: &Field, out: &mut Problems) {
    let action = step.action;
    match action {
        OverflowAction::Transfer => match (&step.number, &step.sip) {
            (None, None) => {
                out.push(field.clone(), "a transfer needs a `number` (E.164, e.g. \"+14155550123\") or a `sip` URI")
            }
            (Some(_), Some(_)) => out.push(field.clone(), "a transfer takes either `number` or `sip`, not both"),
            _ => {}
        },
        OverflowAction::Ivr if !matches!(step.menu.as_deref(), Some(m) if !m.trim().is_empty()) => {
            out.push(field.clone(), "an ivr overflow needs a `menu`")
        }
        _ => {}
    }
    if let Some(number) = &step.number {
        if action != OverflowAction::Transfer {
            out.push(field.key("number"), format!("`number` applies only to action = \"transfer\", not \"{action}\""));
        } else if !is_e164(number) {
            out.push(field.key("number"), format!("`{number}` is not an E.164 number (write e.g. \"+14155550123\")"));
        }
    }
    if let Some(sip) = &step.sip {
        if action != OverflowAction::Transfer {
            out.push(field.key("sip"), format!("`sip` applies only to action = \"transfer\", not \"{action}\""));
        } else if !(sip.starts_with("sip:") || sip.starts_with("sips:")) || sip.len() < 5 {
            out.push(field.key("sip"), format!("`{sip}` is not a SIP URI (write e.g. \"sip:desk@pbx.example.com\")"));
        }
    }
    if step.menu.is_some() && action != OverflowAction::Ivr {
        out.push(field.key("menu"), format!("`menu` applies only to action = \"ivr\", not \"{action}\""));
    }
    let only = |out: &mut Problems, present: bool, name: &str, owner: OverflowAction| {
        if present && action != owner {
            out.push(field.key(name), format!("`{name}` applies only to action = \"{owner}\", not \"{action}\""));
        }
    };
    only(out, step.key.is_some(), "key", OverflowAction::Callback);
    only(out, step.after.is_some(), "after", OverflowAction::Callback);
    only(out, step.max_length.is_some(), "max_length", OverflowAction::Voicemail);
    only(out, step.flow.is_some(), "flow", OverflowAction::Spill);
    only(out, step.within.is_some(), "within", OverflowAction::Spill);
    if action == OverflowAction::Spill {
        if step.flow.as_deref().is_none_or(|f| f.trim().is_empty()) {
            out.push(field.clone(), "a spill needs the `flow` to admit the caller in (e.g. flow = \"support-b\")");
        }
        if let Some(w) = step.within {
            crate::spill::validate_within(w, &field.key("within"), out);
        }
    }
    if let Some(key) = &step.key {
        if action == OverflowAction::Callback && !is_dtmf_key(key) {
            out.push(field.key("key"), format!("`{key}` is not a phone key (0-9, * or #)"));
        }
    }
    if let Some(after) = step.after {
        if action == OverflowAction::Callback && after > Duration::from_secs(30 * 24 * 3600) {
            out.push(field.key("after"), "after must be at most 30 days");
        }
    }
    if let Some(len) = step.max_length {
        if action == OverflowAction::Voicemail && !(1..=3600).contains(&len.as_secs()) {
            out.push(field.key("max_length"), "max_length must be between 1s and 1h");
        }
    }
}

/// A SIP URI: `sip:` or `sips:` and something after it.
pub(crate) fn is_sip_uri(uri: &str) -> bool {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
}

/// `+`, then 2 to 15 digits, the first not 0 (ITU-T E.164).
pub(crate) fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}
