//! `[[menus]]`: small DTMF menus, the light fallback when the AI lines are full. An
//! overflow step `{ action = "ivr", menu = "NAME" }` plays the menu's prompt; each key
//! leads to another overflow action (a callback, a voicemail, a transfer, busy, or
//! another menu).

use crate::flow::validate_overflow;
use crate::overflow::{Overflow, OverflowAction};
use crate::problem::{list, Field, Problems};
use crate::provider::ProviderKind;
use crate::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One `[[menus]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuConfig {
    /// Unique, non-empty name, referenced by `{ action = "ivr", menu = "…" }`.
    pub name: String,
    /// What the caller hears, e.g. "Press 1 to be called back, 2 to leave a message."
    pub prompt: String,
    /// How long to wait for a key after the prompt before going on with the flow's next
    /// overflow step (default `"5s"`, between `"1s"` and `"60s"`).
    #[serde(default = "default_menu_timeout", with = "crate::serde_duration")]
    pub timeout: Duration,
    /// Key (`0`-`9`, `*`, `#`) → what it does. At least one. A `callback` here is booked
    /// by the key press itself, so it takes no `key` of its own.
    pub keys: BTreeMap<String, Overflow>,
}

/// Five seconds: long enough to find a key on the phone after the prompt ends.
pub(crate) fn default_menu_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A DTMF key: one of `0`-`9`, `*`, `#`.
pub(crate) fn is_dtmf_key(key: &str) -> bool {
    key.len() == 1 && key.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// Checks `[[menus]]`, and that every `ivr` step (in flows and in menus) names a menu.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let menus = Field::top("menus");
    out.names("menu", config.menus.iter().map(|m| m.name.as_str()), |i| menus.index(i).key("name"));
    let known = |name: &str| config.menus.iter().any(|m| m.name == name);
    let names = || list(config.menus.iter().map(|m| m.name.as_str()));
    for (i, menu) in config.menus.iter().enumerate() {
        let field = menus.index(i);
        if menu.prompt.trim().is_empty() {
            out.push(field.key("prompt"), "a menu needs a `prompt` the caller hears");
        }
        if !(1..=60).contains(&menu.timeout.as_secs()) {
            out.push(field.key("timeout"), "timeout must be between 1s and 60s");
        }
        if menu.keys.is_empty() {
            out.push(
                field.key("keys"),
                "a menu needs at least one key, e.g. keys = { \"1\" = { action = \"callback\" } }",
            );
        }
        for (key, step) in &menu.keys {
            let at = field.key("keys").key(key);
            if !is_dtmf_key(key) {
                out.push(at.clone(), format!("`{key}` is not a phone key (0-9, * or #)"));
            }
            validate_overflow(step, &at, out);
            if step.action == OverflowAction::Callback && step.key.is_some() {
                out.push(at.key("key"), "a callback in a menu is booked by the menu's own key; leave out `key`");
            }
            if let Some(m) = step.menu.as_deref().filter(|_| step.action == OverflowAction::Ivr) {
                if !known(m) {
                    out.push(at.key("menu"), format!("unknown menu `{m}` (menus: {})", names()));
                }
            }
        }
    }
    // In a flow that only the HTTP API uses, `menu` is the client's own IVR id and
    // callgate passes it on. A flow that answers Twilio calls plays the menu itself, so
    // there the menu must be defined here.
    for (i, flow) in config.flows.iter().enumerate() {
        let answers_twilio =
            flow.matches.iter().any(|m| config.provider(&m.provider).is_some_and(|p| p.kind == ProviderKind::Twilio));
        if !answers_twilio {
            continue;
        }
        for (k, step) in flow.overflow.iter().enumerate() {
            let Some(m) = step.menu.as_deref().filter(|_| step.action == OverflowAction::Ivr) else {
                continue;
            };
            if !known(m) {
                out.push(
                    Field::top("flows").index(i).key("overflow").index(k).key("menu"),
                    format!(
                        "flow `{}` answers Twilio calls and sends them to menu `{m}`, which is \
                         not defined in [[menus]] (menus: {})",
                        flow.name,
                        names()
                    ),
                );
            }
        }
    }
}
