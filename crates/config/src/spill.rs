//! Spill-over between flows: the targets of `spill` steps and `route` rules, checked
//! across the whole configuration.
//!
//! A target must be another flow that answers calls itself (it has a `match`, so the
//! transferred call arrives as one of its calls and is recognised there) and that says
//! where callers reach it (`transfer_to`, or its only matched number). Spills must not go
//! round in a circle (`a` spills to `b`, `b` to `a`): a transferred caller is answered
//! under the line admitted for them and never walks the target's chain, but a circle is a
//! configuration nobody means, and the simulator would have to cut it somewhere.

use crate::caller::{validate_selector, CallerSelector};
use crate::flow::{is_e164, is_sip_uri, FlowConfig};
use crate::overflow::one_or_many;
use crate::problem::{list, Field, Problems};
use crate::{Config, Overflow, OverflowAction};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// The most `route` rules one flow has: every rule is tried on every call of the flow.
pub(crate) const MAX_ROUTES: usize = 64;

/// A routing rule: callers the selector takes go to another flow, admitted there first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Which callers.
    pub caller: CallerSelector,
    /// The flow they are admitted in and transferred to.
    pub flow: String,
    /// How long the admitted line waits for the transferred call (default `"30s"`, between
    /// `"1s"` and `"10m"`). Written as a duration string.
    #[serde(default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

impl RouteRule {
    /// The rule as a `spill` step (what the edges carry out).
    pub fn as_spill(&self) -> Overflow {
        let mut step = Overflow::spill(&self.flow);
        step.within = self.within;
        step
    }
}

pub(crate) fn deserialize_routes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RouteRule>, D::Error> {
    one_or_many(d, "a table such as { caller = { from = [\"+44\"] }, flow = \"support-uk\" } or an array of them")
}

/// Where a spilled or routed caller is transferred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferTo {
    /// An E.164 number.
    Number(String),
    /// A SIP URI.
    Sip(String),
}

impl FlowConfig {
    /// Where callers spilled or routed to this flow are transferred: `transfer_to`, else
    /// the number of its only match that names one.
    pub fn transfer_target(&self) -> Option<TransferTo> {
        let to = match &self.transfer_to {
            Some(t) => t.as_str(),
            None => {
                let mut numbers = self.matches.iter().filter_map(|m| m.number.as_deref());
                let first = numbers.next()?;
                if numbers.any(|n| n != first) {
                    return None;
                }
                first
            }
        };
        if is_sip_uri(to) {
            Some(TransferTo::Sip(to.to_owned()))
        } else if is_e164(to) {
            Some(TransferTo::Number(to.to_owned()))
        } else {
            None
        }
    }
}

/// A spill's `within`: long enough for a transfer to ring through, short enough that a
/// line is not held long for a caller who is gone.
pub(crate) fn validate_within(within: Duration, field: &Field, out: &mut Problems) {
    if within < Duration::from_secs(1) || within > Duration::from_secs(600) {
        out.push(field.clone(), "within must be between 1s and 10m");
    }
}

/// A flow's own spill settings: its `transfer_to` and its `route` rules.
pub(crate) fn validate_flow(config: &Config, flow: &FlowConfig, field: &Field, out: &mut Problems) {
    if flow.route.len() > MAX_ROUTES {
        out.push(field.key("route"), format!("at most {MAX_ROUTES} route rules (they are tried on every call)"));
    }
    if let Some(to) = &flow.transfer_to {
        if !is_e164(to) && !is_sip_uri(to) {
            out.push(
                field.key("transfer_to"),
                format!("`{to}` is neither an E.164 number (e.g. \"+15550001111\") nor a SIP URI"),
            );
        }
    }
    let routes = |k: usize| if flow.route.len() == 1 { field.key("route") } else { field.key("route").index(k) };
    for (k, rule) in flow.route.iter().enumerate() {
        validate_selector(config, &rule.caller, &routes(k).key("caller"), out);
        if let Some(w) = rule.within {
            validate_within(w, &routes(k).key("within"), out);
        }
    }
}

/// Checks every spill step and route rule: the target exists, is not the flow itself,
/// answers calls, has a transfer destination; and the spills have no circle.
pub(crate) fn validate(config: &Config, out: &mut Problems) {
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    let mut check = |from: Option<&str>, target: Option<&str>, field: Field, out: &mut Problems| {
        let Some(target) = target else { return };
        if check_target(config, from, target, &field, out) {
            if let Some(from) = from {
                edges.entry(from.to_owned()).or_default().push(target.to_owned());
            }
        }
    };
    for (i, flow) in config.flows.iter().enumerate() {
        let at = Field::top("flows").index(i);
        for (k, target) in spills(&flow.overflow) {
            check(Some(&flow.name), target, at.key("overflow").index(k).key("flow"), out);
        }
        for (k, target) in spills(&flow.fallback) {
            check(Some(&flow.name), target, at.key("fallback").index(k).key("flow"), out);
        }
        for (k, rule) in flow.route.iter().enumerate() {
            let field = if flow.route.len() == 1 { at.key("route") } else { at.key("route").index(k) };
            check(Some(&flow.name), Some(&rule.flow), field.key("flow"), out);
        }
    }
    for (i, s) in config.schedules.iter().enumerate() {
        for (name, change) in &s.flows {
            let from = config.flow(name).map(|f| f.name.as_str());
            for (k, target) in spills(&change.overflow) {
                let field = Field::top("schedules").index(i).key("flows").key(name).key("overflow").index(k);
                check(from, target, field.key("flow"), out);
            }
        }
    }
    for (i, alert) in config.alerts.iter().enumerate() {
        for (j, action) in alert.actions.iter().enumerate() {
            let from = action.flow.as_deref().and_then(|f| config.flow(f)).map(|f| f.name.as_str());
            for (k, target) in spills(&action.overflow) {
                let field = Field::top("alerts").index(i).key("actions").index(j).key("overflow").index(k);
                check(from, target, field.key("flow"), out);
            }
        }
    }
    for (i, menu) in config.menus.iter().enumerate() {
        for (key, step) in &menu.keys {
            if step.action == OverflowAction::Spill {
                let field = Field::top("menus").index(i).key("keys").key(key).key("flow");
                // A menu is reached from any flow's chain: only the target is checked.
                check(None, step.flow.as_deref(), field, out);
            }
        }
    }
    if let Some(circle) = find_circle(config, &edges) {
        let first = circle[0];
        let i = config.flows.iter().position(|f| f.name == first).unwrap_or(0);
        out.push(
            Field::top("flows").index(i).key("name"),
            format!("spills and routes go round in a circle: {}", circle.join(" → ")),
        );
    }
}

/// The spill steps of a chain: position and target.
fn spills(chain: &[Overflow]) -> Vec<(usize, Option<&str>)> {
    chain
        .iter()
        .enumerate()
        .filter(|(_, s)| s.action == OverflowAction::Spill)
        .map(|(k, s)| (k, s.flow.as_deref()))
        .collect()
}

/// Checks one target; true when it is a flow other than `from`.
fn check_target(config: &Config, from: Option<&str>, target: &str, field: &Field, out: &mut Problems) -> bool {
    let Some(flow) = config.flow(target) else {
        if !target.trim().is_empty() {
            out.push(
                field.clone(),
                format!("unknown flow `{target}` (flows: {})", list(config.flows.iter().map(|f| f.name.as_str()))),
            );
        }
        return false;
    };
    if from == Some(target) {
        out.push(field.clone(), format!("flow `{target}` cannot spill to itself"));
        return false;
    }
    if flow.matches.is_empty() {
        out.push(
            field.clone(),
            format!(
                "flow `{target}` answers no calls (it has no `match`): a caller transferred there would not be \
                 recognised; give it match = {{ provider = \"…\", number = \"+1…\" }}"
            ),
        );
    } else if flow.transfer_to.is_none() && flow.transfer_target().is_none() {
        out.push(
            field.clone(),
            format!(
                "flow `{target}` does not say where callers reach it: give it transfer_to = \"+1…\" (or \"sip:…\"), \
                 or a match with exactly one number"
            ),
        );
    }
    true
}

/// A circle in the spill graph, as the flows along it (the first again at the end).
fn find_circle<'a>(config: &'a Config, edges: &'a HashMap<String, Vec<String>>) -> Option<Vec<&'a str>> {
    // 0 unvisited, 1 on the path, 2 done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        at: &'a str,
        edges: &'a HashMap<String, Vec<String>>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        state.insert(at, 1);
        path.push(at);
        for next in edges.get(at).map(Vec::as_slice).unwrap_or(&[]) {
            let next = next.as_str();
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| *p == next).unwrap_or(0);
                    let mut circle = path[start..].to_vec();
                    circle.push(next);
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(at, 2);
        None
    }
    for flow in &config.flows {
        if state.get(flow.name.as_str()).copied().unwrap_or(0) == 0 {
            let mut path = Vec::new();
            if let Some(c) = visit(flow.name.as_str(), edges, &mut state, &mut path) {
                return Some(c);
            }
        }
    }
    None
}
