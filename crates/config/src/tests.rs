// Long file: the configuration's tests, one field after another.
use super::*;
use callgate_core::{ClassId, FlowId, PoolId, PoolUnits, QueueSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Four classes and one pool with nested reserves; tests append flows or change lines.
const BASE: &str = r#"[[classes]]
name = "vip"
priority = 100
[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "vapi"
limit = 10
reserve = { inbound = 3, vip = 1 }
"#;

const FILE: &str = "callgate.toml";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, Some(Path::new(FILE)))
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The 1-based line holding `needle`, which must occur on exactly one line.
fn line(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).collect();
    assert_eq!(hits.len(), 1, "`{needle}` should be on exactly one line");
    hits[0]
}

/// Asserts that `text` is refused with exactly one problem: `field` on the line holding
/// `at`, with a message containing `message`.
fn refused(text: &str, field: &str, at: &str, message: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one problem, got:\n{}", ConfigErrors { errors: errs.clone() });
    let e = &errs[0];
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.line, Some(line(text, at)), "{e}");
    assert!(e.message.contains(message), "`{}` lacks `{message}`", e.message);
    assert_eq!(e.file.as_deref(), Some(Path::new(FILE)));
}

fn with_flow(flow: &str) -> String {
    format!("{BASE}\n[[flows]]\n{flow}")
}

// ---------------------------------------------------------------------------------------
// The example and the defaults
// ---------------------------------------------------------------------------------------

#[test]
fn the_example_parses_and_validates() {
    let config = Config::from_toml_str(EXAMPLE, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.summary().to_string(), "ok: 4 classes, 2 pools, 5 flows, 2 auth keys, 2 providers");
    let support = config.flow("support").unwrap();
    assert_eq!(support.queue.unwrap().max_wait, Duration::from_secs(60));
    let chain: Vec<OverflowAction> = support.overflow.iter().map(|o| o.action).collect();
    assert_eq!(chain, [OverflowAction::Callback, OverflowAction::Transfer, OverflowAction::Voicemail]);
    assert_eq!(config.flow_for("twilio-main", Some("+15550002222")).map(|f| &f.name[..]), Some("support"));
    assert_eq!(
        config.flow_for("twilio-main", Some("+15559999999")).map(|f| &f.name[..]),
        Some("sales"),
        "the default flow takes every other number"
    );
    assert!(config.flow_for("vapi-main", Some("+15559999999")).is_none());
    assert_eq!(config.menu("sales-busy").unwrap().keys.len(), 3);
    let renewals = config.flow("renewals").unwrap();
    assert_eq!(renewals.pools, [FlowPool::one("vapi-main"), FlowPool::one("renewals-campaign")]);
    assert_eq!(config.pool("vapi-main").unwrap().reserve.len(), 2);
    config.ledger_spec().validate().unwrap();
}

#[test]
fn the_example_documents_every_field() {
    let fields = [
        "listen",
        "data_dir",
        "max_body_bytes",
        "max_meta_bytes",
        "max_meta_depth",
        "max_key_bytes",
        "max_name_bytes",
        "max_pools_per_request",
        "pools_max_len",
        "header_read_timeout",
        "idle_timeout",
        "max_connections",
        "events_backlog",
        "decision_log",
        "record_history",
        "keys",
        "role",
        "token_env",
        "priority",
        "limit",
        "reserve",
        "pools",
        "class",
        "lease_ttl",
        "queue",
        "max_wait",
        "max_len",
        "overflow",
        "action",
        "message",
        "number",
        "sip",
        "menu",
        "busy",
        "voicemail",
        "callback",
        "transfer",
        "ivr",
        "providers",
        "kind",
        "base_url",
        "api_key_env",
        "webhook_secret",
        "account_sid",
        "auth_token_env",
        "public_url",
        "webhook_auth",
        "forward_url",
        "forward_timeout",
        "server_messages",
        "shared_key",
        "squad_id",
        "reconcile_every",
        "adopt",
        "match",
        "assistant_id",
        "connect",
        "stream_url",
        "hold_audio",
        "key",
        "after",
        "max_length",
        "menus",
        "prompt",
        "timeout",
        "keys",
    ];
    for field in fields {
        assert!(EXAMPLE.contains(field), "the example does not mention `{field}`");
    }
}

#[test]
fn the_builtin_default_mirrors_a_vapi_account() {
    let config = Config::builtin_default();
    config.validate().unwrap();
    let names: Vec<(&str, i32)> = config.classes.iter().map(|c| (c.name.as_str(), c.priority)).collect();
    assert_eq!(names, [("inbound", 50), ("callback", 30), ("outbound", 10)]);
    let vapi = config.pool("vapi").unwrap();
    assert_eq!(vapi.limit, 10);
    assert_eq!(vapi.reserve.get("inbound"), Some(&2));
    let inbound = config.flow("inbound").unwrap();
    assert_eq!(inbound.queue, Some(QueueConfig { max_wait: Duration::from_secs(60), max_len: Some(20) }));
    assert_eq!(inbound.lease_ttl, Duration::from_secs(7200));
    assert_eq!(inbound.overflow[0].action, OverflowAction::Voicemail);
    assert!(inbound.overflow[0].message.is_some());
    for name in ["outbound", "callback"] {
        let flow = config.flow(name).unwrap();
        assert_eq!(flow.class, name);
        assert_eq!(flow.queue, None);
        assert_eq!(flow.overflow, [Overflow::new(OverflowAction::Busy)]);
    }
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7700");
    config.ledger_spec().validate().unwrap();
}

#[test]
fn the_builtin_default_round_trips_through_toml() {
    let config = Config::builtin_default();
    let text = toml::to_string(&config).unwrap();
    assert_eq!(load(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), config);
}

#[test]
fn an_empty_file_gets_the_defaults() {
    let config = load("").unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.server.data_dir, PathBuf::from("callgate-data"));
    assert_eq!(config.server.max_body_bytes, 64 * 1024);
    assert_eq!(config.classes, ClassConfig::defaults());
    assert!(config.auth.keys.is_empty() && config.pools.is_empty() && config.flows.is_empty());
}

#[test]
fn omitted_classes_are_the_defaults_so_flows_may_name_them() {
    let text = "[[pools]]\nname = \"p\"\nlimit = 2\nreserve = { inbound = 1 }\n\
                [[flows]]\nname = \"out\"\npools = [\"p\"]\nclass = \"outbound\"\n";
    let config = load(text).unwrap();
    assert_eq!(config.classes, ClassConfig::defaults());
    assert_eq!(config.ledger_spec().flows[0].class, ClassId(2));
}

// ---------------------------------------------------------------------------------------
// Parse errors: file, line and field
// ---------------------------------------------------------------------------------------

#[test]
fn an_unknown_key_is_refused_with_its_line_and_name() {
    let text = "[server]\nlisten = \"127.0.0.1:7700\"\nlisen = \"0.0.0.0:80\"\n";
    refused(text, "server.lisen", "lisen", "unknown field `lisen`");
    let e = &errors(text)[0];
    assert!(e.to_string().starts_with("callgate.toml:3: server.lisen: unknown field `lisen`"), "{e}");
}

#[test]
fn an_unknown_section_and_nested_unknown_keys_are_refused() {
    refused("[servr]\nlisten = \"x\"\n", "servr", "[servr]", "unknown field `servr`");
    let text = with_flow("name = \"f\"\npools = [\"vapi\", { pool = \"vapi\", unitz = 2 }]\nclass = \"vip\"\n");
    refused(&text, "flows[0].pools[1].unitz", "unitz", "unknown field `unitz`");
    let text = with_flow(
        "name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\n[[flows.overflow]]\naction = \"busy\"\nnumbr = \"+1555\"\n",
    );
    refused(&text, "flows[0].overflow[0].numbr", "numbr", "unknown field `numbr`");
}

#[test]
fn a_wrong_type_is_refused_with_its_line_and_field() {
    let text = BASE.replace("limit = 10", "limit = \"ten\"");
    refused(&text, "pools[0].limit", "limit", "invalid type: string \"ten\", expected u32");
    let text = BASE.replace("limit = 10", "limit = -1");
    refused(&text, "pools[0].limit", "limit", "expected u32");
    refused("[server]\nlisten = \"localhost\"\n", "server.listen", "listen", "socket address");
}

#[test]
fn a_bad_duration_names_its_field() {
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\nqueue = { max_wait = \"6o s\" }\n");
    refused(&text, "flows[0].queue.max_wait", "max_wait", "`6o s` is not a duration");
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\nlease_ttl = 7200\n");
    refused(&text, "flows[0].lease_ttl", "lease_ttl", "expected a duration string");
}

#[test]
fn an_unknown_overflow_action_is_refused() {
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\noverflow = { action = \"hangup\" }\n");
    refused(&text, "flows[0].overflow.action", "hangup", "unknown variant `hangup`");
}

#[test]
fn a_missing_field_names_its_table() {
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\n");
    refused(&text, "flows[0]", "[[flows]]", "missing field `class`");
}

#[test]
fn a_syntax_error_names_its_line_and_the_table_around_it() {
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = = \"vip\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(line(&text, "class = =")));
    assert_eq!(errs[0].field, "flows[0].class");
    assert!(!errs[0].message.contains('\n'), "one problem, one line: {:?}", errs[0].message);

    let text = format!("{BASE}[[flows]]\nname = \"a\"\n[[flows]]\nname = \"b\"\n[[flows.overflow]]\naction = busy\n");
    let errs = errors(&text);
    assert_eq!(errs[0].line, Some(line(&text, "action = busy")));
    assert_eq!(errs[0].field, "flows[1].overflow[0].action");
}

// ---------------------------------------------------------------------------------------
// The two forms of `overflow` and of a flow's pools
// ---------------------------------------------------------------------------------------

#[test]
fn overflow_is_one_table_or_a_chain() {
    let one = load(&with_flow(
        "name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\noverflow = { action = \"voicemail\", message = \"Leave a message.\" }\n",
    ))
    .unwrap();
    assert_eq!(one.flows[0].overflow, [Overflow::new(OverflowAction::Voicemail).with_message("Leave a message.")]);

    let inline = load(&with_flow(
        "name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\noverflow = [{ action = \"ivr\", menu = \"main\" }, { action = \"busy\" }]\n",
    ))
    .unwrap();
    let tables = load(&with_flow(
        "name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\n[[flows.overflow]]\naction = \"ivr\"\nmenu = \"main\"\n[[flows.overflow]]\naction = \"busy\"\n",
    ))
    .unwrap();
    let mut ivr = Overflow::new(OverflowAction::Ivr);
    ivr.menu = Some("main".into());
    let chain = vec![ivr, Overflow::new(OverflowAction::Busy)];
    assert_eq!(inline.flows[0].overflow, chain);
    assert_eq!(tables.flows[0].overflow, chain);

    let none = load(&with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = \"vip\"\n")).unwrap();
    assert!(none.flows[0].overflow.is_empty());
}

#[test]
fn overflow_serializes_to_the_api_shape() {
    let mut transfer = Overflow::new(OverflowAction::Transfer).with_message("Connecting you.");
    transfer.number = Some("+14155550123".into());
    assert_eq!(
        serde_json::to_value(&transfer).unwrap(),
        serde_json::json!({ "action": "transfer", "message": "Connecting you.", "number": "+14155550123" })
    );
    assert_eq!(serde_json::to_string(&Overflow::new(OverflowAction::Voicemail)).unwrap(), r#"{"action":"voicemail"}"#);
}

#[test]
fn flow_pools_are_names_or_tables() {
    let text = format!(
        "{BASE}[[pools]]\nname = \"campaign\"\nlimit = 4\n[[pools]]\nname = \"gpu\"\nlimit = 8\n\
         [[flows]]\nname = \"f\"\npools = [\"vapi\", {{ pool = \"campaign\" }}, {{ pool = \"gpu\", units = 2 }}]\nclass = \"outbound\"\n"
    );
    let config = load(&text).unwrap();
    assert_eq!(
        config.flows[0].pools,
        [FlowPool::one("vapi"), FlowPool::one("campaign"), FlowPool { pool: "gpu".into(), units: 2 }]
    );
    refused(
        &with_flow("name = \"f\"\npools = [3]\nclass = \"vip\"\n"),
        "flows[0].pools[0]",
        "pools = [3]",
        "expected a pool name or a table",
    );
}

// ---------------------------------------------------------------------------------------
// Validation: every rule, with its line
// ---------------------------------------------------------------------------------------

#[test]
fn at_least_one_class_is_needed() {
    refused("classes = []\n", "classes", "classes = []", "at least one class");
}

#[test]
fn a_duplicate_class_names_the_second_one() {
    let text = BASE.replace("name = \"outbound\"", "name = \"vip\" # again");
    refused(&text, "classes[2].name", "# again", "class `vip` is defined twice");
}

#[test]
fn pool_and_flow_names_must_be_unique_and_present() {
    let text = format!("{BASE}[[pools]]\nname = \"vapi\" # twice\nlimit = 1\n");
    refused(&text, "pools[1].name", "# twice", "pool `vapi` is defined twice");
    let text = format!("{BASE}[[pools]]\nname = \"\"\nlimit = 1\n");
    refused(&text, "pools[1].name", "name = \"\"", "a pool needs a non-empty name");
    let flow = "pools = [\"vapi\"]\nclass = \"vip\"\n";
    let text = format!("{}[[flows]]\nname = \"f\" # twice\n{flow}", with_flow(&format!("name = \"f\"\n{flow}")));
    refused(&text, "flows[1].name", "# twice", "flow `f` is defined twice");
    let text = BASE.replace("name = \"inbound\"", "name = \" \"");
    let errs = errors(&text);
    // The blank class also leaves the reserve for `inbound` without its class.
    assert!(errs.iter().any(|e| e.field == "classes[1].name"
        && e.line == Some(line(&text, "name = \" \""))
        && e.message.contains("a class needs a non-empty name")));
}

#[test]
fn auth_tokens_may_come_from_the_environment() {
    let config = load("[auth]\nkeys = [{ name = \"ops\", token_env = \"OPS_TOKEN\", role = \"admin\" }]\n").unwrap();
    let key = &config.auth.keys[0];
    let env: std::collections::HashMap<String, String> = [("OPS_TOKEN".to_string(), "s3cret".to_string())].into();
    assert_eq!(key.resolve_token(&env).unwrap(), "s3cret");
    let unset = key.resolve_token(&std::collections::HashMap::new()).unwrap_err();
    assert!(unset.contains("`ops`") && unset.contains("OPS_TOKEN"), "{unset}");
    assert!(!format!("{key:?}").contains("s3cret"));
    let text = "[auth]\nkeys = [{ name = \"ops\", token = \"t\", token_env = \"T\", role = \"admin\" }]\n";
    refused(text, "auth.keys[0].token", "keys", "both `token` and `token_env`");
    // Neither is the empty token it always was.
    refused("[auth]\nkeys = [{ name = \"ops\", role = \"admin\" }]\n", "auth.keys[0].token", "keys", "empty token");
}

#[test]
fn auth_keys_need_unique_names_and_tokens() {
    let text = "[auth]\nkeys = [\n  { name = \"ops\", token = \"t1\", role = \"admin\" },\n  { name = \"ops\", token = \"t2\", role = \"client\" },\n]\n";
    refused(text, "auth.keys[1].name", "t2", "key `ops` is defined twice");
    let text = "[auth]\nkeys = [\n  { name = \"ops\", token = \"same\", role = \"admin\" },\n  { name = \"app\", token = \"same\", role = \"client\" },\n]\n";
    refused(text, "auth.keys[1].token", "app", "key `app` has the same token as key `ops`");
    assert!(!errors(text)[0].message.contains("same\""), "the token is not repeated");
    let text = "[auth]\nkeys = [{ name = \"ops\", token = \"\", role = \"admin\" }]\n";
    refused(text, "auth.keys[0].token", "keys", "key `ops` has an empty token");
    let text = "[[auth.keys]]\nname = \"ops\"\ntoken = \"t\"\nrole = \"root\"\n";
    refused(text, "auth.keys[0].role", "root", "unknown variant `root`");
}

#[test]
fn a_reserve_must_name_a_known_class() {
    let text = BASE.replace("vip = 1", "vipp = 1");
    refused(&text, "pools[0].reserve.vipp", "reserve", "reserves units for unknown class `vipp`");
    // Written as a table of its own, the reserve is found on its own line.
    let text = "[[pools]]\nname = \"p\"\nlimit = 5\n[pools.reserve]\ninbound = 1\nvipp = 1\n";
    refused(text, "pools[0].reserve.vipp", "vipp", "unknown class `vipp`");
}

#[test]
fn a_reserve_larger_than_the_limit_is_refused() {
    let text = BASE.replace("limit = 10", "limit = 3");
    refused(
        &text,
        "pools[0].reserve",
        "reserve",
        "a reserve larger than the limit: pool `vapi` reserves 4 units but its limit is 3",
    );
}

#[test]
fn a_flow_must_name_a_known_class() {
    let text = with_flow("name = \"f\"\npools = [\"vapi\"]\nclass = \"vipp\"\n");
    refused(
        &text,
        "flows[0].class",
        "vipp",
        "flow `f` names unknown class `vipp` (classes: `vip`, `inbound`, `outbound`)",
    );
}

#[test]
fn a_flow_must_name_known_pools() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\n  \"vapi\",\n  \"vapy\",\n]\n");
    refused(&text, "flows[0].pools[1]", "\"vapy\"", "flow `f` names unknown pool `vapy` (pools: `vapi`)");
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = []\n");
    refused(&text, "flows[0].pools", "pools = []", "needs at least one pool");
}

#[test]
fn a_flow_whose_units_can_never_fit_its_class_is_refused_with_flow_pool_and_line() {
    // vapi: limit 10, 1 held for vip and 3 for inbound. Outbound may hold at most 6.
    let text = with_flow(
        "name = \"dialer\"\nclass = \"outbound\"\npools = [\n  { pool = \"vapi\", units = 7 },\n]\nqueue = { max_wait = \"60s\" }\n",
    );
    refused(
        &text,
        "flows[0].pools[0]",
        "units = 7",
        "flow `dialer` needs 7 units of pool `vapi`, which can never give class `outbound` more than 6 \
         (limit 10 minus 4 reserved for higher classes)",
    );
    assert!(
        load(&with_flow("name = \"dialer\"\nclass = \"outbound\"\npools = [{ pool = \"vapi\", units = 6 }]\n")).is_ok()
    );
    // Inbound may borrow the outbound share but not the vip unit; vip may take all ten.
    let text = with_flow("name = \"conf\"\nclass = \"inbound\"\npools = [{ pool = \"vapi\", units = 10 }]\n");
    refused(&text, "flows[0].pools[0]", "units = 10", "more than 9 (limit 10 minus 1 reserved");
    assert!(load(&with_flow("name = \"conf\"\nclass = \"vip\"\npools = [{ pool = \"vapi\", units = 10 }]\n")).is_ok());
}

#[test]
fn lease_ttl_and_max_wait_above_what_the_api_accepts_are_refused() {
    let flow = |ttl: &str, wait: &str| {
        with_flow(&format!(
            "name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\nlease_ttl = \"{ttl}\"\nqueue = {{ max_wait = \"{wait}\" }}\n"
        ))
    };
    assert!(load(&flow("720h", "24h")).is_ok(), "the API's own maximums are fine");
    refused(&flow("721h", "60s"), "flows[0].lease_ttl", "lease_ttl", "lease_ttl must be at most 720h (30 days)");
    refused(&flow("2h", "25h"), "flows[0].queue.max_wait", "max_wait", "max_wait must be at most 24h");
}

#[test]
fn a_file_that_is_not_utf8_is_refused_with_its_line() {
    let dir = std::env::temp_dir().join(format!("callgate-config-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    // "Bogotá" written in Latin-1 on line 3, as an editor with the wrong encoding would.
    let mut bytes = b"[[pools]]\nname = \"p\"\n# Bogot".to_vec();
    bytes.extend_from_slice(&[0xe1, b'\n']);
    bytes.extend_from_slice(b"limit = 1\n");
    std::fs::write(&path, &bytes).unwrap();
    let e = check_file(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(e.errors.len(), 1);
    let e = &e.errors[0];
    assert_eq!((e.file.as_deref(), e.line), (Some(path.as_path()), Some(3)), "{e}");
    assert!(e.message.contains("not valid UTF-8 (byte 0xe1 at column 8)"), "{e}");
}

#[test]
fn a_pool_listed_twice_in_a_flow_is_refused() {
    let text =
        with_flow("name = \"f\"\nclass = \"vip\"\npools = [\n  \"vapi\",\n  { pool = \"vapi\", units = 2 },\n]\n");
    refused(&text, "flows[0].pools[1]", "units = 2", "pool `vapi` is listed twice in flow `f`");
}

#[test]
fn units_of_zero_are_refused() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\n  { pool = \"vapi\", units = 0 },\n]\n");
    refused(&text, "flows[0].pools[0].units", "units = 0", "units must be at least 1");
}

#[test]
fn a_waiting_room_needs_a_wait_and_room() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\n[flows.queue]\nmax_wait = \"0s\"\n");
    refused(&text, "flows[0].queue.max_wait", "max_wait", "max_wait must be at least 1ms");
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\nqueue = { max_wait = \"0.4ms\" }\n");
    refused(&text, "flows[0].queue.max_wait", "queue", "max_wait must be at least 1ms");
    let text =
        with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\nqueue = { max_wait = \"1m\", max_len = 0 }\n");
    refused(&text, "flows[0].queue.max_len", "queue", "max_len must be at least 1");
}

#[test]
fn a_lease_ttl_of_zero_is_refused() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\nlease_ttl = \"0ms\"\n");
    refused(&text, "flows[0].lease_ttl", "lease_ttl", "lease_ttl must be at least 1ms");
}

#[test]
fn a_transfer_needs_a_number_or_a_sip_uri() {
    let flow = "name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\n";
    let text = with_flow(&format!("{flow}overflow = {{ action = \"transfer\" }}\n"));
    refused(&text, "flows[0].overflow[0]", "overflow", "a transfer needs a `number`");
    let text = with_flow(&format!(
        "{flow}[[flows.overflow]]\naction = \"voicemail\"\n[[flows.overflow]] # the transfer\naction = \"transfer\"\nmessage = \"hold on\"\n"
    ));
    refused(&text, "flows[0].overflow[1]", "# the transfer", "a transfer needs a `number`");
    let text = with_flow(&format!(
        "{flow}overflow = {{ action = \"transfer\", number = \"+14155550123\", sip = \"sip:a@b\" }}\n"
    ));
    refused(&text, "flows[0].overflow[0]", "overflow", "either `number` or `sip`, not both");
    let text = with_flow(&format!("{flow}[flows.overflow]\naction = \"transfer\"\nnumber = \"0415 555 0123\"\n"));
    refused(&text, "flows[0].overflow[0].number", "number", "not an E.164 number");
    let text = with_flow(&format!("{flow}[flows.overflow]\naction = \"transfer\"\nsip = \"desk@pbx\"\n"));
    refused(&text, "flows[0].overflow[0].sip", "sip =", "not a SIP URI");
    let ok = with_flow(&format!("{flow}overflow = {{ action = \"transfer\", sip = \"sip:desk@pbx.example.com\" }}\n"));
    load(&ok).unwrap();
}

#[test]
fn an_ivr_needs_a_menu() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\noverflow = [\n  { action = \"busy\" },\n  { action = \"ivr\" },\n]\n");
    refused(&text, "flows[0].overflow[1]", "\"ivr\"", "an ivr overflow needs a `menu`");
}

#[test]
fn fields_of_another_action_are_refused() {
    let text = with_flow("name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\n[[flows.overflow]]\naction = \"voicemail\"\nnumber = \"+14155550123\"\n");
    refused(
        &text,
        "flows[0].overflow[0].number",
        "number",
        "`number` applies only to action = \"transfer\", not \"voicemail\"",
    );
    let text = with_flow(
        "name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\n[[flows.overflow]]\naction = \"busy\"\nmenu = \"main\"\n",
    );
    refused(&text, "flows[0].overflow[0].menu", "menu", "`menu` applies only to action = \"ivr\"");
}

#[test]
fn an_open_port_without_auth_keys_is_refused() {
    let text = "[server]\nlisten = \"0.0.0.0:7700\"\n";
    refused(
        text,
        "server.listen",
        "listen",
        "binding a non-loopback address (0.0.0.0:7700) without auth keys is refused; add [auth] keys or listen on 127.0.0.1",
    );
    load("[server]\nlisten = \"0.0.0.0:7700\"\n[auth]\nkeys = [{ name = \"ops\", token = \"t\", role = \"admin\" }]\n")
        .unwrap();
    load("[server]\nlisten = \"[::1]:7700\"\n").unwrap();
}

#[test]
fn server_limits_must_be_positive() {
    refused("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes", "max_body_bytes", "at least 1");
    refused("[server]\nmax_meta_depth = 200\n", "server.max_meta_depth", "max_meta_depth", "between 1 and 64");
    refused("[server]\nmax_meta_bytes = 100000\n", "server.max_meta_bytes", "max_meta_bytes", "between 2 and 65536");
    refused("[server]\nmax_connections = 0\n", "server.max_connections", "max_connections", "between 1 and");
    refused("[server]\nheader_read_timeout = \"2h\"\n", "server.header_read_timeout", "header_read_timeout", "between");
    refused("[server]\nevents_backlog = 2000000\n", "server.events_backlog", "events_backlog", "at most");
    refused("[server]\ndata_dir = \"\"\n", "server.data_dir", "data_dir", "must not be empty");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "[server]\nlisten = \"0.0.0.0:80\"\n\
                [[pools]]\nname = \"p\"\nlimit = 1\nreserve = { inbound = 2 }\n\
                [[flows]]\nname = \"f\"\npools = [\"q\"]\nclass = \"x\"\n";
    let errs = errors(text);
    let found: Vec<(usize, &str)> = errs.iter().map(|e| (e.line.unwrap(), e.field.as_str())).collect();
    assert_eq!(
        found,
        [(2, "server.listen"), (6, "pools[0].reserve"), (9, "flows[0].pools[0]"), (10, "flows[0].class")]
    );
    let shown = ConfigErrors { errors: errs }.to_string();
    assert_eq!(shown.lines().count(), 4);
    assert!(shown.lines().all(|l| l.starts_with("callgate.toml:")), "{shown}");
}

// ---------------------------------------------------------------------------------------
// Errors without a file or a line, files, the summary
// ---------------------------------------------------------------------------------------

#[test]
fn errors_display_without_file_or_line() {
    let e = Config::from_toml_str("[auth]\nkeys = 1\n", None).unwrap_err();
    assert_eq!(e.to_string(), "<config>:2: auth.keys: invalid type: integer `1`, expected a sequence");

    let mut config = Config::builtin_default();
    config.flows[0].class = "nobody".into();
    let e = config.validate().unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e.errors[0].line, None);
    assert!(e.to_string().starts_with("<config>: flows[0].class: flow `inbound` names unknown class"), "{e}");
}

#[test]
fn check_file_reports_a_summary_or_the_problems() {
    let dir = std::env::temp_dir().join(format!("callgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[pools]]\nname = \"p\"\nlimit = 1\n[[flows]]\nname = \"f\"\npools = [\"p\"]\nclass = \"inbound\"\n",
    )
    .unwrap();
    assert_eq!(check_file(&good).unwrap().to_string(), "ok: 3 classes, 1 pool, 1 flow");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[pools]]\nname = \"p\"\nlimit = 1\nreserve = { nobody = 1 }\n").unwrap();
    let e = check_file(&bad).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:4: pools[0].reserve.nobody: pool `p` reserves units for unknown class `nobody` (classes: `inbound`, `callback`, `outbound`)", bad.display()));
    let missing = dir.join("missing.toml");
    let e = check_file(&missing).unwrap_err();
    assert_eq!(e.errors[0].file.as_deref(), Some(missing.as_path()));
    assert!(e.errors[0].message.starts_with("cannot read the file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_api_key_does_not_show_its_token_in_debug_output() {
    let config = load("[auth]\nkeys = [{ name = \"ops\", token = \"hunter2\", role = \"admin\" }]\n").unwrap();
    assert_eq!(config.auth.keys[0].role, Role::Admin);
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2") && debug.contains("ops"), "{debug}");
}

// ---------------------------------------------------------------------------------------
// To the ledger
// ---------------------------------------------------------------------------------------

#[test]
fn the_ledger_spec_resolves_names_to_ids() {
    let text = format!(
        "{BASE}[[pools]]\nname = \"campaign\"\nlimit = 4\nreserve = {{ outbound = 1 }}\n\
         [[flows]]\nname = \"support\"\npools = [\"vapi\"]\nclass = \"inbound\"\nqueue = {{ max_wait = \"1m30s\", max_len = 5 }}\n\
         [[flows]]\nname = \"dial\"\npools = [{{ pool = \"campaign\", units = 1 }}, {{ pool = \"vapi\", units = 2 }}]\nclass = \"outbound\"\nlease_ttl = \"250ms\"\n"
    );
    let config = load(&text).unwrap();
    let spec = config.ledger_spec();
    spec.validate().unwrap();
    let classes: Vec<(&str, i32)> = spec.classes.iter().map(|c| (c.name.as_str(), c.priority)).collect();
    assert_eq!(classes, [("vip", 100), ("inbound", 50), ("outbound", 10)]);
    // Reserves sit on their classes, in class order (vip before inbound), whatever the
    // order in the file.
    assert_eq!(spec.pools[0].name, "vapi");
    assert_eq!(spec.pools[0].limit, 10);
    assert_eq!(spec.pools[0].reserve, [(ClassId(0), 1), (ClassId(1), 3)]);
    assert_eq!(spec.pools[1].reserve, [(ClassId(2), 1)]);

    let support = &spec.flows[0];
    assert_eq!(support.name, "support");
    assert_eq!(support.class, ClassId(1));
    assert_eq!(support.pools, [PoolUnits { pool: PoolId(0), units: 1 }]);
    assert_eq!(support.lease_ttl_ms, 7_200_000);
    assert_eq!(support.queue, Some(QueueSpec { max_wait_ms: 90_000, max_len: Some(5) }));

    let dial = &spec.flows[1];
    assert_eq!(dial.class, ClassId(2));
    assert_eq!(dial.pools, [PoolUnits { pool: PoolId(1), units: 1 }, PoolUnits { pool: PoolId(0), units: 2 }]);
    assert_eq!(dial.lease_ttl_ms, 250);
    assert_eq!(dial.queue, None);

    assert_eq!(config.flow_by_id(FlowId(1)).map(|f| f.name.as_str()), Some("dial"));
    assert_eq!(config.flow("dial").unwrap().pools.len(), 2);
    assert!(config.flow("nobody").is_none());
}

#[test]
fn an_unvalidated_config_gives_a_spec_the_ledger_refuses_without_panicking() {
    let mut config = Config::builtin_default();
    config.flows[0].class = "nobody".into();
    config.flows[1].pools[0].pool = "nowhere".into();
    assert!(config.ledger_spec().validate().is_err());
}

// ---------------------------------------------------------------------------------------
// Providers, matches, per-provider flow settings, menus
// ---------------------------------------------------------------------------------------

/// BASE with a Vapi and a Twilio provider; tests append flows.
fn with_providers(rest: &str) -> String {
    format!(
        r#"{BASE}
[[providers]]
name = "v"
kind = "vapi"
pool = "vapi"
webhook_secret = "s3cret"

[[providers]]
name = "t"
kind = "twilio"
pool = "vapi"
account_sid = "AC123"
auth_token = "tw-secret-xyz"
public_url = "https://cg.example.com/"
{rest}"#
    )
}

#[test]
fn providers_parse_with_their_defaults() {
    let config = load(&with_providers("")).unwrap_or_else(|e| panic!("{e}"));
    let v = config.provider("v").unwrap();
    assert_eq!(v.kind, ProviderKind::Vapi);
    assert_eq!(v.base_url(), "https://api.vapi.ai");
    assert_eq!(v.reconcile_every, Duration::from_secs(60));
    assert!(v.adopt);
    let t = config.provider("t").unwrap();
    assert_eq!(t.base_url(), "https://api.twilio.com");
    assert_eq!(t.public_url(), Some("https://cg.example.com"), "the trailing slash goes");
    assert!(!format!("{t:?}").contains("tw-secret-xyz"), "Debug output hides secrets");
    assert_eq!(config.summary().providers, 2);
}

#[test]
fn each_kind_needs_its_credentials() {
    let text = format!("{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"vapi\"\n");
    refused(&text, "providers[0]", "[[providers]]", "needs `webhook_secret`");
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"t\"\nkind = \"twilio\"\npool = \"vapi\"\naccount_sid = \"AC1\"\npublic_url = \"https://x.example\"\n"
    );
    refused(&text, "providers[0]", "[[providers]]", "needs `auth_token`");
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"t\"\nkind = \"twilio\"\npool = \"vapi\"\naccount_sid = \"AC1\"\nauth_token = \"x\"\n"
    );
    refused(&text, "providers[0]", "[[providers]]", "needs `public_url`");
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"t\"\nkind = \"twilio\"\npool = \"vapi\"\naccount_sid = \"XX1\"\nauth_token = \"x\"\npublic_url = \"https://x.example\"\n"
    );
    refused(&text, "providers[0].account_sid", "XX1", "not a Twilio account SID");
}

#[test]
fn a_field_of_the_other_kind_is_refused_by_name() {
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"vapi\"\nwebhook_secret = \"s\"\naccount_sid = \"AC1\"\n"
    );
    refused(
        &text,
        "providers[0].account_sid",
        "account_sid",
        "`account_sid` applies only to kind = \"twilio\", not \"vapi\"",
    );
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"vapi\"\nwebhook_secret = \"s\"\nwebhook_secret_env = \"S\"\n"
    );
    refused(
        &text,
        "providers[0].webhook_secret",
        "webhook_secret =",
        "either `webhook_secret` or `webhook_secret_env`",
    );
}

#[test]
fn a_provider_names_a_known_pool_and_a_url_safe_name() {
    let text =
        format!("{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"nope\"\nwebhook_secret = \"s\"\n");
    refused(&text, "providers[0].pool", "nope", "unknown pool `nope`");
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"my vapi\"\nkind = \"vapi\"\npool = \"vapi\"\nwebhook_secret = \"s\"\n"
    );
    refused(&text, "providers[0].name", "my vapi", "part of the webhook URLs");
}

#[test]
fn secrets_come_from_the_file_or_the_environment() {
    let text = format!(
        "{BASE}\n[[providers]]\nname = \"t\"\nkind = \"twilio\"\npool = \"vapi\"\naccount_sid = \"AC1\"\nauth_token_env = \"TW_TOKEN\"\npublic_url = \"https://x.example\"\n"
    );
    let config = load(&text).unwrap();
    let p = config.provider("t").unwrap();
    let mut env: std::collections::HashMap<String, String> = Default::default();
    let err = p.auth_token(&env).unwrap_err();
    assert!(err.message.contains("`TW_TOKEN` is not set"), "{err}");
    env.insert("TW_TOKEN".into(), "from-env".into());
    assert_eq!(p.auth_token(&env).unwrap().as_deref(), Some("from-env"));
    assert_eq!(p.api_key(&env).unwrap(), None);
}

#[test]
fn a_flow_matches_known_providers_and_has_their_settings() {
    let flow = "[[flows]]\nname = \"f\"\nclass = \"inbound\"\npools = [\"vapi\"]\n";
    let text = with_providers(&format!("{flow}match = {{ provider = \"nope\" }}\nvapi = {{ assistant_id = \"a\" }}\n"));
    refused(&text, "flows[0].match.provider", "nope", "unknown provider `nope`");
    let text = with_providers(&format!("{flow}match = {{ provider = \"v\", number = \"+15550001111\" }}\n"));
    refused(&text, "flows[0]", "[[flows]]", "needs vapi = { assistant_id");
    let text = with_providers(&format!("{flow}match = [{{ provider = \"t\" }}]\n"));
    refused(&text, "flows[0]", "[[flows]]", "needs twilio = { connect");
    let text = with_providers(&format!(
        "{flow}match = {{ provider = \"t\" }}\ntwilio = {{ connect = {{ sip = \"sip:a@b\", number = \"+15550001111\" }} }}\n"
    ));
    refused(&text, "flows[0].twilio.connect", "twilio =", "exactly one of `sip`");
    let text = with_providers(&format!(
        "{flow}match = {{ provider = \"v\", number = \"555-1111\" }}\nvapi = {{ assistant_id = \"a\" }}\n"
    ));
    refused(&text, "flows[0].match.number", "555-1111", "neither an E.164 number");
    let ok = with_providers(&format!(
        "{flow}match = [{{ provider = \"v\", number = \"+15550001111\" }}, {{ provider = \"t\" }}]\nvapi = {{ assistant_id = \"a\" }}\ntwilio = {{ connect = {{ stream_url = \"wss://w.example/s\" }}, hold_audio = \"https://a.example/hold.mp3\" }}\n"
    ));
    let config = load(&ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.flows[0].matches.len(), 2);
    assert_eq!(config.flow_for("t", Some("+1999")).map(|f| &f.name[..]), Some("f"));
    assert_eq!(config.flow_for("v", Some("+15550001111")).map(|f| &f.name[..]), Some("f"));
    assert!(config.flow_for("v", Some("+15550002222")).is_none());
    let text = toml::to_string(&config).unwrap();
    assert_eq!(load(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), config, "round trip");
}

#[test]
fn two_flows_cannot_serve_the_same_number() {
    let flow = |name: &str| {
        format!("[[flows]]\nname = \"{name}\"\nclass = \"inbound\"\npools = [\"vapi\"]\nvapi = {{ assistant_id = \"a\" }}\nmatch = {{ provider = \"v\", number = \"+15550001111\" }} # {name}\n")
    };
    let text = with_providers(&format!("{}{}", flow("a"), flow("b")));
    refused(&text, "flows[1].match", "# b", "flows `a` and `b` both serve number `+15550001111`");
}

#[test]
fn callback_and_voicemail_fields_belong_to_their_actions() {
    let flow = "name = \"f\"\nclass = \"vip\"\npools = [\"vapi\"]\n";
    let text = with_flow(&format!("{flow}overflow = {{ action = \"callback\", key = \"11\" }}\n"));
    refused(&text, "flows[0].overflow[0].key", "overflow", "not a phone key");
    let text = with_flow(&format!("{flow}overflow = {{ action = \"busy\", after = \"5m\" }}\n"));
    refused(&text, "flows[0].overflow[0].after", "overflow", "`after` applies only to action = \"callback\"");
    let text = with_flow(&format!("{flow}overflow = {{ action = \"voicemail\", max_length = \"2h\" }}\n"));
    refused(&text, "flows[0].overflow[0].max_length", "overflow", "between 1s and 1h");
    let ok = with_flow(&format!(
        "{flow}overflow = [{{ action = \"callback\", key = \"#\", after = \"15m\" }}, {{ action = \"voicemail\", max_length = \"90s\" }}]\n"
    ));
    let config = load(&ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.flows[0].overflow[0].after, Some(Duration::from_secs(900)));
    assert_eq!(
        serde_json::to_value(&config.flows[0].overflow[0]).unwrap(),
        serde_json::json!({ "action": "callback", "key": "#", "after": "15m" })
    );
}

#[test]
fn menus_have_a_prompt_and_phone_keys_and_twilio_flows_name_defined_menus() {
    let twilio_flow = "[[flows]]\nname = \"f\"\nclass = \"inbound\"\npools = [\"vapi\"]\nmatch = { provider = \"t\" }\ntwilio = { connect = { number = \"+15550001111\" } }\n";
    let text = with_providers(&format!("{twilio_flow}overflow = {{ action = \"ivr\", menu = \"nope\" }}\n"));
    refused(&text, "flows[0].overflow[0].menu", "overflow", "not defined in [[menus]]");
    let menu = "[[menus]]\nname = \"m\"\nprompt = \"Press 1\"\n";
    let text = with_providers(&format!("{menu}keys = {{ \"x\" = {{ action = \"busy\" }} }}\n"));
    refused(&text, "menus[0].keys.x", "keys", "not a phone key");
    let text = with_providers(&format!("{menu}keys = {{ \"1\" = {{ action = \"callback\", key = \"1\" }} }}\n"));
    refused(&text, "menus[0].keys.1.key", "keys", "leave out `key`");
    let text = with_providers(&format!("{menu}keys = {{ \"1\" = {{ action = \"ivr\", menu = \"other\" }} }}\n"));
    refused(&text, "menus[0].keys.1.menu", "keys", "unknown menu `other`");
    let text = with_providers(&format!("{menu}keys = {{}}\n"));
    refused(&text, "menus[0].keys", "keys", "at least one key");
    let ok = with_providers(&format!(
        "{twilio_flow}overflow = {{ action = \"ivr\", menu = \"m\" }}\n{menu}timeout = \"8s\"\n[menus.keys]\n\"1\" = {{ action = \"callback\" }}\n\"0\" = {{ action = \"transfer\", number = \"+15559990000\" }}\n"
    ));
    let config = load(&ok).unwrap_or_else(|e| panic!("{e}"));
    let m = config.menu("m").unwrap();
    assert_eq!(m.timeout, Duration::from_secs(8));
    assert_eq!(m.keys["0"].action, OverflowAction::Transfer);
}

/// A Vapi provider `v` with extra lines, and one flow that answers its calls.
fn vapi_with(provider_lines: &str, flow_vapi: &str) -> String {
    format!(
        "{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"vapi\"\nwebhook_secret = \"s3cret\"\n{provider_lines}\n\
         [[flows]]\nname = \"f\"\npools = [\"vapi\"]\nclass = \"inbound\"\nmatch = {{ provider = \"v\" }}\nvapi = {flow_vapi}\n"
    )
}

#[test]
fn vapi_credential_plans_and_the_proxy_parse() {
    let text = vapi_with(
        "public_url = \"https://cg.example.com/\"\nforward_url = \"https://agents.example.com/vapi\"\n\
         forward_secret_env = \"UP\"\nforward_timeout = \"5s\"\nserver_messages = [\"tool-calls\"]\n\
         webhook_auth = { type = \"hmac\", algorithm = \"sha512\", signature_prefix = \"sha512=\", payload_format = \"{timestamp}:{body}\" }",
        "{ squad_id = \"sq_1\", forward_url = \"https://sales.example.com/vapi\" }",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let v = config.provider("v").unwrap();
    assert_eq!(v.public_url(), Some("https://cg.example.com"));
    assert_eq!(v.forward_timeout, Duration::from_secs(5));
    let Some(WebhookAuth::Hmac(h)) = &v.webhook_auth else { panic!("{:?}", v.webhook_auth) };
    assert_eq!((h.algorithm, h.signature_encoding), (HmacAlgorithm::Sha512, SignatureEncoding::Hex));
    assert_eq!((h.signature_header.as_str(), h.timestamp_header.as_str()), ("x-signature", "x-timestamp"));
    assert_eq!(h.max_skew, Duration::from_secs(300));
    let flow = config.flow("f").unwrap().vapi.as_ref().unwrap();
    assert_eq!(flow.target(), Some(VapiTarget::Squad("sq_1")));
    let bearer = vapi_with(
        "webhook_auth = { type = \"bearer\", header = \"X-Token\", prefix = false }",
        "{ workflow_id = \"wf\" }",
    );
    let config = load(&bearer).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.provider("v").unwrap().webhook_auth,
        Some(WebhookAuth::Bearer { header: Some("X-Token".into()), prefix: Some(false) })
    );
}

#[test]
fn vapi_flows_name_exactly_one_assistant_squad_or_workflow() {
    let text = vapi_with("", "{ assistant_id = \"a\", squad_id = \"s\" }");
    refused(&text, "flows[0].vapi", "squad_id", "exactly one of `assistant_id`, `squad_id` or `workflow_id`");
    let text = vapi_with("", "{ forward_url = \"https://x.example\" }");
    refused(&text, "flows[0].vapi", "forward_url", "exactly one of");
}

#[test]
fn bad_proxy_and_credential_settings_are_refused_by_name() {
    refused(
        &vapi_with("forward_timeout = \"20s\"", "{ assistant_id = \"a\" }"),
        "providers[0].forward_timeout",
        "forward_timeout",
        "between 1ms and 19s",
    );
    refused(
        &vapi_with("forward_url = \"ftp://x\"", "{ assistant_id = \"a\" }"),
        "providers[0].forward_url",
        "ftp://x",
        "not an http",
    );
    refused(
        &vapi_with("webhook_auth = { type = \"hmac\", payload_format = \"{timestamp}\" }", "{ assistant_id = \"a\" }"),
        "providers[0].webhook_auth.payload_format",
        "payload_format",
        "must contain `{body}`",
    );
    refused(
        &vapi_with("webhook_auth = { type = \"hmac\", payload_format = \"{url}{body}\" }", "{ assistant_id = \"a\" }"),
        "providers[0].webhook_auth.payload_format",
        "payload_format",
        "needs the provider's `public_url`",
    );
    let errs = errors(&vapi_with("webhook_auth = { type = \"digest\" }", "{ assistant_id = \"a\" }"));
    assert!(errs[0].to_string().contains("digest"), "{}", errs[0]);
    let errs = errors(&vapi_with("webhook_auth = { type = \"bearer\", secret = \"x\" }", "{ assistant_id = \"a\" }"));
    assert!(errs[0].to_string().contains("secret"), "{}", errs[0]);
    let twilio_only = format!(
        "{BASE}\n[[providers]]\nname = \"v\"\nkind = \"vapi\"\npool = \"vapi\"\nwebhook_secret = \"s\"\nshared_key = \"k\"\n"
    );
    refused(&twilio_only, "providers[0].shared_key", "shared_key", "applies only to kind = \"twilio\"");
    let vapi_only = with_providers("").replace(
        "public_url = \"https://cg.example.com/\"",
        "public_url = \"https://cg.example.com/\"\nforward_url = \"https://x.example\"",
    );
    refused(&vapi_only, "providers[1].forward_url", "forward_url", "applies only to kind = \"vapi\"");
}
