//! Spill steps, routing rules and caller selectors: what is accepted, and every refusal
//! names its field and line.
use super::*;
use std::path::Path;

const TWO_ACCOUNTS: &str = r#"[[pools]]
name = "acct-a"
limit = 2
[[pools]]
name = "acct-b"
limit = 2

[[providers]]
name = "vapi-a"
kind = "vapi"
webhook_secret = "a"
pool = "acct-a"
[[providers]]
name = "vapi-b"
kind = "vapi"
webhook_secret = "b"
pool = "acct-b"

[[caller_lists]]
name = "vip"
numbers = ["+15557770000"]

[[flows]]
name = "support-a"
pools = ["acct-a"]
class = "inbound"
match = { provider = "vapi-a", number = "+15550001111" }
vapi = { assistant_id = "asst-a" }
overflow = [{ action = "spill", flow = "support-b", within = "20s" }, { action = "busy" }]

[[flows]]
name = "support-b"
pools = ["acct-b"]
class = "inbound"
match = { provider = "vapi-b", number = "+15550002222" }
vapi = { assistant_id = "asst-b" }
"#;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, Some(Path::new("callgate.toml")))
}

fn refused(text: &str, field: &str, at: &str, message: &str) {
    let errs = match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    };
    assert_eq!(errs.len(), 1, "expected one problem, got:\n{}", ConfigErrors { errors: errs.clone() });
    let e = &errs[0];
    assert_eq!(e.field, field, "{e}");
    let line = text.lines().position(|l| l.contains(at)).map(|i| i + 1);
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains(message), "`{}` lacks `{message}`", e.message);
}

#[test]
fn a_spill_to_another_accounts_flow_is_accepted() {
    let config = load(TWO_ACCOUNTS).unwrap_or_else(|e| panic!("{e}"));
    let a = config.flow("support-a").unwrap();
    assert_eq!(a.overflow[0].action, OverflowAction::Spill);
    assert_eq!(a.overflow[0].flow.as_deref(), Some("support-b"));
    assert_eq!(a.overflow[0].spill_within(), std::time::Duration::from_secs(20));
    let b = config.flow("support-b").unwrap();
    assert_eq!(b.transfer_target(), Some(TransferTo::Number("+15550002222".into())), "derived from its match");
}

#[test]
fn spill_targets_are_checked() {
    let text = TWO_ACCOUNTS.replace("flow = \"support-b\", within", "flow = \"support-c\", within");
    refused(&text, "flows[0].overflow[0].flow", "support-c", "unknown flow `support-c`");
    let text = TWO_ACCOUNTS.replace("flow = \"support-b\", within", "flow = \"support-a\", within");
    refused(&text, "flows[0].overflow[0].flow", "action = \"spill\"", "cannot spill to itself");
    let text = TWO_ACCOUNTS
        .replace("{ action = \"spill\", flow = \"support-b\", within = \"20s\" }", "{ action = \"spill\" }");
    refused(&text, "flows[0].overflow[0]", "action = \"spill\"", "a spill needs the `flow`");
    let text = TWO_ACCOUNTS.replace("within = \"20s\"", "within = \"20m\"");
    refused(&text, "flows[0].overflow[0].within", "within", "between 1s and 10m");
    let text = TWO_ACCOUNTS.replace("{ action = \"busy\" }", "{ action = \"busy\", flow = \"support-b\" }");
    refused(&text, "flows[0].overflow[1].flow", "action = \"busy\"", "applies only to action = \"spill\"");
}

#[test]
fn a_target_must_answer_calls_and_say_where_it_is_reached() {
    let text = TWO_ACCOUNTS
        .replace("match = { provider = \"vapi-b\", number = \"+15550002222\" }", "match = { provider = \"vapi-b\" }");
    refused(&text, "flows[0].overflow[0].flow", "action = \"spill\"", "give it transfer_to");
    let fixed = format!("{text}transfer_to = \"sip:support@b.sip.vapi.ai\"\n");
    let config = load(&fixed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.flow("support-b").unwrap().transfer_target(),
        Some(TransferTo::Sip("sip:support@b.sip.vapi.ai".into()))
    );
    let bad = format!("{TWO_ACCOUNTS}transfer_to = \"5550002222\"\n");
    refused(&bad, "flows[1].transfer_to", "transfer_to", "neither an E.164 number");
}

#[test]
fn spills_may_not_go_round_in_a_circle() {
    let text = format!("{TWO_ACCOUNTS}overflow = {{ action = \"spill\", flow = \"support-a\" }}\n");
    refused(&text, "flows[0].name", "name = \"support-a\"", "support-a → support-b → support-a");
}

#[test]
fn routing_rules_and_caller_selectors_are_checked() {
    let route = "route = [{ caller = { country = [\"GB\"] }, flow = \"support-b\" }, { caller = { list = \"vip\" }, flow = \"support-b\" }]\n";
    let text =
        TWO_ACCOUNTS.replace("overflow = [{ action = \"spill\"", &format!("{route}overflow = [{{ action = \"spill\""));
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.flow("support-a").unwrap().route.len(), 2);
    let bad = text.replace("country = [\"GB\"]", "country = [\"XX\"]");
    refused(&bad, "flows[0].route[0].caller.country[0]", "XX", "not a country");
    let bad = text.replace("list = \"vip\"", "list = \"gold\"");
    refused(&bad, "flows[0].route[1].caller.list", "gold", "unknown caller list `gold`");
    let bad = text.replace("caller = { country = [\"GB\"] }", "caller = {}");
    refused(&bad, "flows[0].route[0].caller", "caller = {}", "needs at least one of");
    let bad = TWO_ACCOUNTS.replace("numbers = [\"+15557770000\"]", "numbers = [\"5557770000\"]");
    refused(&bad, "caller_lists[0].numbers[0]", "5557770000", "not an E.164 number");
    let bad = TWO_ACCOUNTS.replace(
        "match = { provider = \"vapi-b\", number = \"+15550002222\" }",
        "match = { provider = \"vapi-b\", number = \"+15550002222\", caller = { from = [\"44\"] } }",
    );
    refused(&bad, "flows[1].match.caller.from[0]", "from = [\"44\"]", "not a number prefix");
}

#[test]
fn a_match_on_the_caller_wins_over_one_without() {
    // Both flows serve account A's number; callers from +44 (and, in office hours, the
    // VIP list) get the second.
    let text = TWO_ACCOUNTS.replace(
        "match = { provider = \"vapi-b\", number = \"+15550002222\" }",
        "match = [{ provider = \"vapi-b\", number = \"+15550002222\" }, { provider = \"vapi-a\", number = \"+15550001111\", caller = { from = [\"+44\"] } }]\ntransfer_to = \"+15550002222\"",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let now = Some(1_772_494_200_000);
    let flow = |caller: Option<&str>| {
        config.flow_for_caller("vapi-a", Some("+15550001111"), caller, now).map(|f| f.name.clone())
    };
    assert_eq!(flow(Some("+447700900123")).as_deref(), Some("support-b"));
    assert_eq!(flow(Some("+12125550000")).as_deref(), Some("support-a"));
    assert_eq!(flow(None).as_deref(), Some("support-a"), "a withheld number matches no prefix");
    assert_eq!(config.flow_for("vapi-a", Some("+15550001111")).map(|f| &f.name[..]), Some("support-a"));
}

#[test]
fn a_match_by_hours_applies_only_within_them() {
    // Account B takes A's number at night (22:00 to 06:00 in New York).
    let text = TWO_ACCOUNTS.replace(
        "match = { provider = \"vapi-b\", number = \"+15550002222\" }",
        "match = [{ provider = \"vapi-b\", number = \"+15550002222\" }, { provider = \"vapi-a\", number = \"+15550001111\", caller = { hours = { start = \"22:00\", end = \"06:00\", timezone = \"America/New_York\" } } }]\ntransfer_to = \"+15550002222\"",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let at = |now: u64| config.flow_for_caller("vapi-a", Some("+15550001111"), None, Some(now)).map(|f| f.name.clone());
    // 2026-03-02 23:30 UTC is 18:30 in New York; 05:00 UTC the next day is 00:00 there.
    let evening = 1_772_494_200_000;
    assert_eq!(at(evening).as_deref(), Some("support-a"));
    assert_eq!(at(evening + 330 * 60_000).as_deref(), Some("support-b"), "a withheld number matches hours alone");
    let bad = text.replace("America/New_York", "America/Nowhere");
    refused(&bad, "flows[1].match[1].caller.hours.timezone", "America/Nowhere", "not an IANA time zone");
}
