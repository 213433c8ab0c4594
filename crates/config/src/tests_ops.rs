//! Tests of the operating sections: adaptive pools, breakers, flows' dependencies and
//! fallbacks, alerts and telemetry.

use super::*;
use callgate_core::adaptive::{AlgorithmSpec, LimitFn};
use std::path::Path;
use std::time::Duration;

const BASE: &str = r#"[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 10

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
"#;

const FILE: &str = "callgate.toml";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, Some(Path::new(FILE)))
}

fn line(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).collect();
    assert_eq!(hits.len(), 1, "`{needle}` should be on exactly one line");
    hits[0]
}

/// Asserts exactly one problem: `field`, on the line holding `at`, with `message` in it.
fn refused(text: &str, field: &str, at: &str, message: &str) {
    let errs = match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    };
    assert_eq!(errs.len(), 1, "expected one problem, got:\n{}", ConfigErrors { errors: errs.clone() });
    let e = &errs[0];
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.line, Some(line(text, at)), "{e}");
    assert!(e.message.contains(message), "`{}` lacks `{message}`", e.message);
}

fn with(rest: &str) -> String {
    format!("{BASE}\n{rest}")
}

/// BASE with the pool's table extended by `adaptive`.
fn adaptive(table: &str) -> String {
    BASE.replace("limit = 10\n", &format!("limit = 10\nadaptive = {table}\n"))
}

#[test]
fn the_example_has_adaptive_pools_breakers_alerts_and_telemetry() {
    let config = Config::from_toml_str(EXAMPLE, None).unwrap_or_else(|e| panic!("{e}"));
    let pool = config.pool("vapi-main").unwrap();
    let a = pool.adaptive.as_ref().unwrap();
    assert_eq!((a.algorithm, a.min), (AdaptiveAlgorithm::Gradient2, 4));
    let spec = a.spec(pool.limit);
    assert_eq!((spec.min, spec.max), (4, 10));
    spec.validate().unwrap();
    assert_eq!(config.breakers.len(), 1);
    assert_eq!(config.breakers[0].spec().slow_call_ms, Some(2000));
    let sales = config.flow("sales").unwrap();
    assert_eq!(sales.depends_on, ["llm"]);
    assert_eq!(sales.fallback[0].action, OverflowAction::Ivr);
    assert_eq!(config.alerts.len(), 2);
    let saturated = &config.alerts[0];
    assert_eq!(saturated.target(), Some(AlertTarget::Pool("vapi-main".into())));
    assert_eq!(saturated.threshold(), Some((true, 0.9)));
    assert_eq!(saturated.hold, Duration::from_secs(120));
    assert_eq!(saturated.resolve_at(), (0.8, Duration::from_secs(60)));
    assert!(saturated.undo);
    let kinds: Vec<AlertActionKind> = saturated.actions.iter().map(|a| a.action).collect();
    assert_eq!(kinds, [AlertActionKind::Notify, AlertActionKind::PauseCampaigns, AlertActionKind::SetOverflow]);
    assert_eq!(config.telemetry.otlp_endpoint, None, "traces are off unless an endpoint is set");
    for field in [
        "adaptive",
        "algorithm",
        "min_samples",
        "queue_size",
        "rtt_tolerance",
        "drop_backoff",
        "probe_multiplier",
        "backoff_ratio",
        "breakers",
        "error_rate",
        "slow_call_ms",
        "slow_rate",
        "min_calls",
        "open_for",
        "half_open_probes",
        "bucket",
        "depends_on",
        "fallback",
        "alerts",
        "metric",
        "utilization",
        "waiting",
        "p95_wait",
        "p95_latency",
        "rejections_per_minute",
        "above",
        "below",
        "resolve",
        "undo",
        "notify",
        "url_env",
        "pause_campaigns",
        "below_priority",
        "set_overflow",
        "set_limit",
        "campaign",
        "otlp_endpoint",
        "service_name",
    ] {
        assert!(EXAMPLE.contains(field), "the example does not mention `{field}`");
    }
}

#[test]
fn adaptive_defaults_follow_the_published_ones_and_the_pool_limit() {
    let config = load(&adaptive(r#"{ algorithm = "vegas" }"#)).unwrap();
    let spec = config.pools[0].adaptive.as_ref().unwrap().spec(10);
    assert_eq!((spec.min, spec.max, spec.initial), (1, 10, None));
    let AlgorithmSpec::Vegas(p) = spec.algorithm else { panic!("vegas") };
    assert_eq!(p, callgate_core::adaptive::VegasParams::default());

    let config = load(&adaptive(
        r#"{ algorithm = "gradient2", min = 2, max = 8, queue_size = 2, drop_backoff = 1.0, window = { min_samples = 3 } }"#,
    ))
    .unwrap();
    let spec = config.pools[0].adaptive.as_ref().unwrap().spec(10);
    assert_eq!((spec.min, spec.max), (2, 8));
    assert_eq!(spec.window.unwrap().min_samples, 3);
    let AlgorithmSpec::Gradient2(p) = spec.algorithm else { panic!("gradient2") };
    assert_eq!(p.queue_size, LimitFn::Fixed(2));
    assert_eq!(p.drop_backoff, None, "1.0 ignores drops, as Netflix's code does");

    let config = load(&adaptive(r#"{ algorithm = "aimd", timeout = "2s", backoff_ratio = 0.75 }"#)).unwrap();
    let AlgorithmSpec::Aimd(p) = config.pools[0].adaptive.as_ref().unwrap().spec(10).algorithm else { panic!("aimd") };
    assert_eq!((p.timeout_ms, p.backoff_ratio), (2000.0, 0.75));
}

#[test]
fn adaptive_refuses_parameters_of_another_algorithm_and_bounds_outside_the_limit() {
    let text = adaptive(r#"{ algorithm = "aimd", alpha = 3 }"#);
    refused(&text, "pools[0].adaptive.alpha", "adaptive =", "`alpha` is a parameter of vegas, not of aimd");
    let text = adaptive(r#"{ algorithm = "gradient2", max = 12 }"#);
    refused(&text, "pools[0].adaptive.max", "adaptive =", "above the pool's limit (10)");
    let text = adaptive(r#"{ algorithm = "gradient2", min = 0 }"#);
    refused(&text, "pools[0].adaptive.min", "adaptive =", "at least 1");
    let text = adaptive(r#"{ algorithm = "vegas", min = 4, initial = 2 }"#);
    refused(&text, "pools[0].adaptive.initial", "adaptive =", "between min (4) and 10");
    let text = adaptive(r#"{ algorithm = "gradient2", smoothing = 1.5 }"#);
    refused(&text, "pools[0].adaptive.smoothing", "adaptive =", "(0, 1]");
    let text = adaptive(r#"{ algorithm = "aimd", backoff_ratio = 0.2 }"#);
    refused(&text, "pools[0].adaptive.backoff_ratio", "adaptive =", "[0.5, 1.0)");
    let text = adaptive(r#"{ algorithm = "newton" }"#);
    let errs = load(&text).unwrap_err().errors;
    assert_eq!(errs[0].line, Some(line(&text, "adaptive =")), "{}", errs[0]);
    assert!(errs[0].message.contains("gradient2"), "{}", errs[0]);
}

#[test]
fn breakers_parse_with_their_defaults_and_check_their_ranges() {
    let config = load(&with("[[breakers]]\nname = \"llm\"\n")).unwrap();
    let spec = config.breakers[0].spec();
    assert_eq!(spec, callgate_core::breaker::BreakerSpec::default());

    let text = with("[[breakers]]\nname = \"llm\"\nerror_rate = 0\n");
    refused(&text, "breakers[0].error_rate", "error_rate = 0", "(0, 1]");
    let text = with("[[breakers]]\nname = \"llm\"\nmin_calls = 0\n");
    refused(&text, "breakers[0].min_calls", "min_calls = 0", "at least 1");
    let text = with("[[breakers]]\nname = \"llm\"\nslow_rate = 0.3\n");
    refused(&text, "breakers[0].slow_rate", "slow_rate = 0.3", "needs slow_call_ms");
    let text = with("[[breakers]]\nname = \"llm\"\n[[breakers]]\nname = \"llm\" # again\n");
    refused(&text, "breakers[1].name", "# again", "defined twice");
    let text = with("[[breakers]]\nname = \"my llm\"\n");
    refused(&text, "breakers[0].name", "my llm", "letters, digits");
}

#[test]
fn a_flow_depends_on_known_breakers_and_its_fallback_is_checked_like_overflow() {
    let ok = BASE.replace(
        "class = \"inbound\"\n",
        "class = \"inbound\"\ndepends_on = [\"llm\"]\nfallback = { action = \"transfer\", number = \"+14155550123\" }\n",
    ) + "[[breakers]]\nname = \"llm\"\n";
    let config = load(&ok).unwrap();
    assert_eq!(config.flows[0].fallback[0].action, OverflowAction::Transfer);
    let text = ok.replace("depends_on = [\"llm\"]", "depends_on = [\"tts\"]");
    refused(&text, "flows[0].depends_on[0]", "depends_on =", "unknown breaker `tts` (breakers: `llm`)");
    let text = ok.replace("number = \"+14155550123\"", "number = \"555\"");
    refused(&text, "flows[0].fallback[0].number", "fallback =", "not an E.164 number");
    let text = ok.replace("depends_on = [\"llm\"]\n", "");
    refused(&text, "flows[0].fallback", "fallback =", "no depends_on");
}

const ALERT: &str = r#"[[alerts]]
name = "full"
pool = "acct"
metric = "utilization"
above = 0.9
for = "2m"
"#;

#[test]
fn an_alert_has_one_target_one_threshold_and_a_default_resolve() {
    let config = load(&with(ALERT)).unwrap();
    let a = &config.alerts[0];
    assert_eq!(a.metric, AlertMetric::Utilization);
    assert_eq!(a.resolve_at(), (0.9, Duration::from_secs(120)), "default: not above the threshold, for `for`");
    assert!(!a.undo && a.actions.is_empty());

    let text = with(&ALERT.replace("pool = \"acct\"", "flow = \"support\"\npool = \"acct\""));
    refused(&text, "alerts[0]", "[[alerts]]", "exactly one of `pool`, `flow` or `campaign`");
    let text = with(&ALERT.replace("pool = \"acct\"", "pool = \"nope\""));
    refused(&text, "alerts[0].pool", "pool = \"nope\"", "unknown pool `nope` (pools: `acct`)");
    let text = with(&ALERT.replace("flow = \"x\"", "").replace("pool = \"acct\"", "campaign = \"spring\""));
    refused(&text, "alerts[0].campaign", "campaign = \"spring\"", "unknown campaign `spring`");
    let text = with(&ALERT.replace("above = 0.9", "above = 0.9\nbelow = 0.1"));
    refused(&text, "alerts[0]", "[[alerts]]", "exactly one of `above` or `below`");
    let text = with(&ALERT.replace("metric = \"utilization\"", "metric = \"cpu\""));
    let errs = load(&text).unwrap_err().errors;
    assert_eq!(errs[0].line, Some(line(&text, "metric = \"cpu\"")), "{}", errs[0]);
    assert!(errs[0].message.contains("rejections_per_minute"), "{}", errs[0]);
}

#[test]
fn resolve_is_on_the_other_side_of_the_threshold() {
    let text = with(&format!("{ALERT}resolve = {{ below = 0.8, for = \"30s\" }}\n"));
    assert_eq!(load(&text).unwrap().alerts[0].resolve_at(), (0.8, Duration::from_secs(30)));
    let text = with(&format!("{ALERT}resolve = {{ below = 0.95 }}\n"));
    refused(&text, "alerts[0].resolve.below", "resolve =", "at most the threshold (0.9)");
    let text = with(&format!("{ALERT}resolve = {{ above = 0.5 }}\n"));
    refused(&text, "alerts[0].resolve.above", "resolve =", "resolves below one");
}

#[test]
fn each_action_takes_its_own_fields() {
    let ok = with(&format!(
        "{ALERT}actions = [\n  {{ action = \"notify\", url = \"https://hooks.example.com/x\" }},\n  \
         {{ action = \"pause_campaigns\", below_priority = 20 }},\n  \
         {{ action = \"set_overflow\", flow = \"support\", overflow = {{ action = \"callback\" }} }},\n  \
         {{ action = \"set_limit\", pool = \"acct\", limit = 8 }},\n]\n"
    ));
    let config = load(&ok).unwrap();
    assert_eq!(config.alerts[0].actions[2].overflow[0].action, OverflowAction::Callback);
    assert_eq!(config.alerts[0].actions[3].limit, Some(8));

    let text = ok.replace("url = \"https://hooks.example.com/x\"", "url = \"hooks.example.com\"");
    refused(&text, "alerts[0].actions[0].url", "action = \"notify\"", "not an http:// or https:// URL");
    let text = ok.replace("below_priority = 20", "below_priority = 20, limit = 3");
    refused(&text, "alerts[0].actions[1].limit", "pause_campaigns", "applies only to action = \"set_limit\"");
    let text = ok.replace("flow = \"support\"", "flow = \"sales\"");
    refused(&text, "alerts[0].actions[2].flow", "set_overflow", "unknown flow `sales`");
    let text = ok.replace("overflow = { action = \"callback\" }", "overflow = { action = \"ivr\" }");
    refused(&text, "alerts[0].actions[2].overflow[0]", "set_overflow", "needs a `menu`");
    let text = ok.replace(", limit = 8", "");
    refused(&text, "alerts[0].actions[3]", "set_limit", "needs a `limit`");
    let text = ok.replace(", below_priority = 20", "");
    refused(&text, "alerts[0].actions[1]", "pause_campaigns", "needs `below_priority`");
}

#[test]
fn telemetry_is_off_by_default_and_takes_an_http_endpoint() {
    let config = load(BASE).unwrap();
    assert_eq!(config.telemetry, TelemetryConfig::default());
    assert_eq!(config.telemetry.service(), "callgate");
    let config = load(&with("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n")).unwrap();
    assert_eq!(config.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    let text = with("[telemetry]\notlp_endpoint = \"127.0.0.1:4318\"\n");
    refused(&text, "telemetry.otlp_endpoint", "otlp_endpoint", "not an http:// or https:// URL");
}

#[test]
fn the_operating_sections_round_trip_through_toml() {
    let text = with(&format!(
        "{ALERT}resolve = {{ below = 0.8 }}\nundo = true\nactions = [{{ action = \"set_limit\", pool = \"acct\", limit = 8 }}]\n\
         [[breakers]]\nname = \"llm\"\nslow_call_ms = 1500\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n"
    ))
    .replace("limit = 10\n", "limit = 10\nadaptive = { algorithm = \"aimd\", min = 2, timeout = \"3s\" }\n");
    let config = load(&text).unwrap();
    let written = toml::to_string(&config).unwrap();
    assert_eq!(load(&written).unwrap_or_else(|e| panic!("{e}\n{written}")), config);
}

#[test]
fn an_adaptive_pool_can_take_its_latency_from_vapi() {
    let vapi = "[[providers]]\nname = \"vapi\"\nkind = \"vapi\"\npool = \"acct\"\nwebhook_secret = \"a-long-enough-webhook-secret-123\"\n";
    let text = format!("{}\n{vapi}", adaptive(r#"{ algorithm = "gradient2", source = "vapi", metric = "model_p95" }"#));
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let a = config.pool("acct").unwrap().adaptive.clone().unwrap();
    assert_eq!((a.source, a.metric), (AdaptiveSource::Vapi, Some(VapiMetric::ModelP95)));
    let text = adaptive(r#"{ algorithm = "gradient2", metric = "turn_p95" }"#);
    refused(&text, "pools[0].adaptive.metric", "adaptive =", "needs `source = \"vapi\"`");
    let text = adaptive(r#"{ algorithm = "gradient2", source = "vapi" }"#);
    refused(&text, "pools[0].adaptive.source", "adaptive =", "needs a `[[providers]]` entry");
    let text = format!("{}\n{vapi}", adaptive(r#"{ algorithm = "gradient2", source = "vapi", metric = "p99" }"#));
    let errs = load(&text).unwrap_err().errors;
    assert!(errs[0].message.contains("turn_p95") && errs[0].line == Some(line(&text, "adaptive =")), "{errs:?}");
}

#[test]
fn pricing_prices_the_forecasts_shortfall_and_names_its_bad_fields() {
    let c = load(&with("[pricing]\nper_line_month = 40\nlost_caller = 3\ncampaign_call = 0.5\n")).unwrap();
    let p = c.pricing.expect("priced");
    assert_eq!((p.per_line_month, p.lost_caller, p.campaign_call, p.currency.as_str()), (40.0, 3.0, 0.5, "$"));
    assert!(load(BASE).unwrap().pricing.is_none(), "no section, no prices");
    refused(&with("[pricing]\nlost_caller = -2\n"), "pricing.lost_caller", "lost_caller", "0 or more");
    refused(&with("[pricing]\ndays_per_month = 40\n"), "pricing.days_per_month", "days_per_month", "between 1 and 31");
    refused(&with("[pricing]\nline_pools = [\"acct\"]\n"), "pricing.line_pools", "line_pools", "simulation");
    let unknown = with("[pricing]\nlost_calls = 2\n");
    let e = load(&unknown).unwrap_err();
    assert!(e.to_string().contains("lost_calls"), "{e}");
}
