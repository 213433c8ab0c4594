//! The campaign dialer against fakes of Vapi's `POST /call` and Twilio's `Calls.json` that
//! are as strict as the real APIs (their allowed properties come from the official SDKs,
//! `tests/fixtures/provider-schemas.json`): bodies the real APIs accept, correlation data
//! where Vapi echoes it back, account errors that pause the campaign instead of burning
//! leads, and Twilio's answering machine detection.

mod support;
#[path = "support/vapi_dialer.rs"]
mod vapi_dialer;

use callgate_providers::vapi::dial::call_state;
use callgate_server::campaign::ProviderUpdate;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::providers::{fake_twilio, metric, Events, Fake, Phone};
use support::{holds_within, secs, strict, TestServer};
use vapi_dialer::{vapi_account, FakeVapi};

/// The account `vapi-main` on `fake` (polled every 200 ms), an outbound flow, and the
/// running campaign `spring` (assistant `asst-1`, caller id `pn-1`) with `extra` lines.
fn vapi_config(fake: &str, extra: &str) -> String {
    format!(
        r#"{account}
[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"

[[campaigns]]
name = "spring"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "asst-1", phone_number_id = "pn-1" }}
calls_per_second = 100
window = {{ start = "00:00", end = "24:00" }}
start = true
{extra}
"#,
        account = vapi_account(fake, "200ms")
    )
}

/// Publishes the fake's call ends on the bus as call events, the way the Vapi webhook does.
fn wire(cg: &TestServer, fake: &FakeVapi) {
    let bus = cg.server().app.bus.clone();
    fake.set_hook(Arc::new(move |call_id: String, attempt: Option<u64>, call: Value| {
        let bus = bus.clone();
        tokio::spawn(async move {
            let update = ProviderUpdate { provider: "vapi-main".into(), call_id, attempt, state: call_state(&call) };
            bus.call(update).await;
        });
    }));
}

async fn import(cg: &TestServer, campaign: &str, body: Value) {
    let (s, v) = cg.post(&format!("/v1/campaigns/{campaign}/leads"), body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn campaign(cg: &TestServer, name: &str) -> Value {
    let (s, v) = cg.get(&format!("/v1/campaigns/{name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn finished(cg: &TestServer, name: &str) -> Value {
    assert!(
        holds_within(secs(30), || async { campaign(cg, name).await["finished"] == true }).await,
        "{}",
        campaign(cg, name).await
    );
    campaign(cg, name).await
}

/// With `CALLGATE_SDK_CHECK=1`, checks captured requests with the official SDKs
/// themselves (`scripts/provider-schemas --check`: their pydantic models and
/// `CallList.create`'s signature), in the venv `scripts/provider-schemas` installs. Off by
/// default: importing the Vapi SDK takes tens of seconds, and the fakes have already
/// enforced the schemas extracted from the same SDKs (the committed fixture).
fn check_with_the_sdks(requests: Vec<Value>) {
    if std::env::var("CALLGATE_SDK_CHECK").as_deref() != Ok("1") {
        eprintln!("skipped the SDK check (CALLGATE_SDK_CHECK=1 runs it)");
        return;
    }
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf();
    let python = target.join("provider-schemas-venv/bin/python");
    assert!(python.exists(), "no {}: run scripts/provider-schemas first", python.display());
    let file = std::env::temp_dir().join(format!("callgate-sdk-check-{}-{}.json", std::process::id(), requests.len()));
    std::fs::write(&file, Value::Array(requests).to_string()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(python)
        .arg("scripts/provider_schemas.py")
        .arg("--check")
        .arg(&file)
        .current_dir(root)
        .output()
        .expect("the SDK check runs");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "the SDKs refuse what callgate sent:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A Twilio form as the SDK check reads it: every name with its values.
fn form_json(form: &[(String, String)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        m.entry(k.clone()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(json!(v));
    }
    json!({ "twilio": m })
}

const LONG_NAME: &str = "Maximiliane Alexandra Konstantinopoulou-Wittelsbach";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vapi_calls_are_bodies_vapi_accepts_with_the_attempt_in_assistant_overrides() {
    let fake = FakeVapi::start(10, |_, _| (None, Duration::from_millis(5))).await;
    let cg = TestServer::start(&vapi_config(&fake.url, "")).await;
    wire(&cg, &fake);
    let emoji_name = "Zoë 👩\u{200d}💻 ".repeat(10);
    let leads = json!({ "leads": [
        { "phone": "+12125550100", "name": LONG_NAME, "vars": { "plan": "gold" } },
        { "phone": "+12125550101", "name": emoji_name },
        { "phone": "+12125550102" },
    ] });
    import(&cg, "spring", leads).await;
    let v = finished(&cg, "spring").await;
    assert_eq!(v["leads"]["done"]["completed"], 3, "every lead reached, none failed: {v}");
    assert_eq!(v["leads"]["failed"], 0, "{v}");

    let c = fake.counts();
    assert!(c.malformed.is_empty(), "Vapi refused a body: {:?}", c.malformed);
    assert_eq!(c.bodies.len(), 3);
    let store = cg.server().campaigns.store().clone();
    for body in &c.bodies {
        assert!(strict::vapi_create_call(body).is_empty(), "{body}");
        assert!(body.get("metadata").is_none(), "CreateCallDTO has no top-level metadata: {body}");
        assert_eq!((body["assistantId"].as_str(), body["phoneNumberId"].as_str()), (Some("asst-1"), Some("pn-1")));
        let phone = body["customer"]["number"].as_str().unwrap();
        let lead = (1..=3).find(|id| store.lead(*id).unwrap().unwrap().phone == phone).unwrap();
        let attempt = store.attempts_of(lead).unwrap()[0].id;
        let meta = &body["assistantOverrides"]["metadata"];
        assert_eq!(meta["callgate_attempt"], attempt, "{body}");
        assert_eq!((meta["callgate_campaign"].as_str(), meta["callgate_lead"].as_u64()), (Some("spring"), Some(lead)));
        match phone {
            "+12125550100" => {
                let name = body["customer"]["name"].as_str().unwrap();
                assert!(name.chars().count() <= 40 && LONG_NAME.starts_with(name), "{name:?}");
                assert_eq!(body["assistantOverrides"]["variableValues"], json!({ "plan": "gold" }));
            }
            "+12125550101" => {
                let name = body["customer"]["name"].as_str().unwrap();
                assert!(name.chars().count() <= 40 && emoji_name.starts_with(name), "{name:?}");
            }
            _ => assert!(body["customer"].get("name").is_none(), "no name, no property: {body}"),
        }
    }
    let requests = c.bodies.iter().map(|b| json!({ "vapi": b })).collect();
    drop(c);
    check_with_the_sdks(requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finds_the_call_an_attempt_placed_by_the_metadata_vapi_echoes() {
    // The call is taken, but callgate stops before it hears the call id: the restart must
    // find the call in `GET /call` by `assistantOverrides.metadata`, not dial again.
    let fake = FakeVapi::start(10, |_, _| (None, Duration::from_millis(400))).await;
    fake.counts().hold = Some(Duration::from_secs(5));
    let cg = TestServer::start(&vapi_config(&fake.url, "")).await;
    import(&cg, "spring", json!({ "leads": [{ "phone": "+12125550100" }] })).await;
    assert!(holds_within(secs(10), || async { fake.counts().placed.len() == 1 }).await);
    let cg = cg.restart().await;
    fake.counts().hold = None;
    let v = finished(&cg, "spring").await;
    assert_eq!(v["leads"]["done"]["completed"], 1, "{v}");
    assert_eq!(fake.counts().placed.len(), 1, "the lead was not dialed twice");
    let attempts = cg.server().campaigns.store().attempts_of(1).unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].call_id.as_deref(), Some(fake.counts().placed[0].call_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vapi_account_errors_pause_the_campaign_and_burn_no_lead() {
    let errors = [
        (
            401,
            json!({ "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.", "error": "Unauthorized", "statusCode": 401 }),
        ),
        (
            402,
            json!({ "message": "Wallet Balance Too Low. Please purchase more credits.", "error": "Payment Required", "statusCode": 402 }),
        ),
        (
            404,
            json!({ "message": "Couldn't Get Assistant. Assistant Not Found.", "error": "Not Found", "statusCode": 404 }),
        ),
    ];
    for (status, error) in errors {
        let fake = FakeVapi::start(10, |_, _| (None, Duration::from_millis(5))).await;
        fake.counts().account_error = Some((status, error.clone()));
        let cg = TestServer::start(&vapi_config(&fake.url, "retry = { max_attempts = 1 }")).await;
        wire(&cg, &fake);
        let mut events = Events::subscribe(&cg).await;
        let leads: Vec<Value> = (0..5).map(|i| json!({ "phone": format!("+1212555010{i}") })).collect();
        import(&cg, "spring", json!({ "leads": leads })).await;

        let paused = events.next_of("campaign_paused").await;
        assert_eq!(paused["campaign"], "spring");
        assert!(paused["reason"].as_str().unwrap().contains(&status.to_string()), "{paused}");
        let v = campaign(&cg, "spring").await;
        assert_eq!(v["state"], "paused", "{v}");
        let reason = v["paused_reason"].as_str().unwrap_or_else(|| panic!("a reason: {v}")).to_owned();
        assert!(reason.contains("vapi-main") && reason.contains(&status.to_string()), "{reason}");
        let (_, list) = cg.get("/v1/campaigns").await;
        assert_eq!(list[0]["paused_reason"], reason.as_str(), "{list}");
        let text = callgate_server::campaign::cli::status_text(&v);
        assert!(text.contains("paused by callgate") && text.contains(&reason), "{text}");
        assert_eq!(metric(&cg, "callgate_campaign_account_paused{campaign=\"spring\"}").await, 1.0);
        assert!(metric(&cg, "callgate_campaign_account_errors_total{campaign=\"spring\"}").await >= 1.0);
        // No lead is burnt: all pending (once the attempts out at the time are back), no
        // attempt counted, no line held.
        let all_back = || async {
            let v = campaign(&cg, "spring").await;
            v["live"] == 0 && v["leads"]["pending"] == 5
        };
        assert!(holds_within(secs(5), all_back).await, "{}", campaign(&cg, "spring").await);
        let v = campaign(&cg, "spring").await;
        assert_eq!((v["leads"]["pending"].as_u64(), v["leads"]["failed"].as_u64()), (Some(5), Some(0)), "{v}");
        assert_eq!(v["attempts"], 0, "{v}");
        assert_eq!(cg.used("vapi").await, 0);
        let tried = fake.counts().bodies.len();
        assert!(tried <= 5, "the pause stops the dialing: {tried} tries");

        // Fixed, and resumed: the reason is gone and every lead is reached on its first
        // counted attempt.
        fake.counts().account_error = None;
        let (s, v) = cg.post("/v1/campaigns/spring/resume", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["state"].as_str(), &v["paused_reason"]), (Some("running"), &Value::Null), "{v}");
        let resumed = events.next_of("campaign_resumed").await;
        assert_eq!(resumed["campaign"], "spring");
        let v = finished(&cg, "spring").await;
        assert_eq!(v["leads"]["done"]["completed"], 5, "{v}");
        assert_eq!(v["attempts"], 5, "{v}");
        assert_eq!(metric(&cg, "callgate_campaign_account_paused{campaign=\"spring\"}").await, 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_for_an_account_error_outlives_a_restart_until_resumed() {
    let fake = FakeVapi::start(10, |_, _| (None, Duration::from_millis(5))).await;
    fake.counts().account_error =
        Some((401, json!({ "message": "Invalid Key.", "error": "Unauthorized", "statusCode": 401 })));
    let cg = TestServer::start(&vapi_config(&fake.url, "")).await;
    import(&cg, "spring", json!({ "leads": [{ "phone": "+12125550100" }] })).await;
    assert!(holds_within(secs(10), || async { campaign(&cg, "spring").await["state"] == "paused" }).await);
    let cg = cg.restart().await;
    let v = campaign(&cg, "spring").await;
    assert_eq!(v["state"], "paused", "{v}");
    assert!(v["paused_reason"].as_str().is_some_and(|r| r.contains("401")), "{v}");
    let (_, v) = cg.post("/v1/campaigns/spring/resume", json!({})).await;
    assert_eq!(v["paused_reason"], Value::Null, "{v}");
}

// ----- Twilio --------------------------------------------------------------------------

const TOKEN: &str = "twilio-auth-token";
const PUBLIC: &str = "https://callgate.example.com";
const FROM: &str = "+15550009000";

/// The Twilio account `tw` on `fake` (with `token`), and the running campaign `renewals`
/// calling from [`FROM`], with `twilio_extra` in its `twilio` table and `extra` lines.
fn twilio_config(fake: &Fake, token: &str, twilio_extra: &str, extra: &str) -> String {
    format!(
        r#"
[[pools]]
name = "agents"
limit = 10

[[providers]]
name = "tw"
kind = "twilio"
base_url = "{url}"
account_sid = "ACtest"
auth_token = "{token}"
public_url = "{PUBLIC}"
pool = "agents"
reconcile_every = "1h"

[[flows]]
name = "outbound"
pools = ["agents"]
class = "outbound"

[[campaigns]]
name = "renewals"
provider = "tw"
flow = "outbound"
twilio = {{ from = ["{FROM}"], url = "https://agents.example.com/twiml"{twilio_extra} }}
calls_per_second = 100
start = true
window = {{ start = "00:00", end = "24:00" }}
{extra}
"#,
        url = fake.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_account_errors_pause_the_campaign_and_burn_no_lead() {
    // A wrong auth token (401, code 20003), then a caller id the account does not own (21210).
    for (token, owned) in [("revoked-token", None), (TOKEN, Some(vec!["+15550001111".to_string()]))] {
        let fake = fake_twilio().await;
        *fake.state.owned_numbers.lock().unwrap() = owned.clone();
        let cg = TestServer::start(&twilio_config(&fake, token, "", "retry = { max_attempts = 1 }")).await;
        let leads: Vec<Value> = (0..3).map(|i| json!({ "phone": format!("+1212555010{i}") })).collect();
        import(&cg, "renewals", json!({ "leads": leads })).await;
        assert!(holds_within(secs(10), || async { campaign(&cg, "renewals").await["state"] == "paused" }).await);
        let all_back = || async {
            let v = campaign(&cg, "renewals").await;
            v["live"] == 0 && v["leads"]["pending"] == 3
        };
        assert!(holds_within(secs(5), all_back).await, "{}", campaign(&cg, "renewals").await);
        let v = campaign(&cg, "renewals").await;
        let code = if owned.is_some() { "21210" } else { "20003" };
        assert!(v["paused_reason"].as_str().is_some_and(|r| r.contains(code)), "{v}");
        assert_eq!((v["leads"]["pending"].as_u64(), v["attempts"].as_u64()), (Some(3), Some(0)), "{v}");
        assert!(fake.placed().is_empty());
        assert_eq!(cg.used("agents").await, 0);
    }
}

/// The one call the campaign placed: its sid, its form and its status callback URL.
async fn placed_call(fake: &Fake) -> (String, Vec<(String, String)>, String) {
    assert!(holds_within(secs(10), || async { fake.placed().len() == 1 }).await, "a call is placed");
    let form = fake.state.forms.lock().unwrap().last().cloned().unwrap();
    let status = form.iter().find(|(k, _)| k == "StatusCallback").map(|(_, v)| v.clone()).unwrap();
    ("CA-OUT-1".to_string(), form, status)
}

fn values<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

async fn attempt_outcome(cg: &TestServer) -> String {
    let store = cg.server().campaigns.store().clone();
    let ended = || async { store.attempts_of(1).unwrap().first().is_some_and(|a| a.outcome.is_some()) };
    assert!(holds_within(secs(10), ended).await, "the attempt ends");
    store.attempts_of(1).unwrap()[0].outcome.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_machine_detection_tells_voicemail_from_a_conversation() {
    // (twilio settings, retry, what the form asks for, the callbacks, the outcome)
    type Case =
        (&'static str, &'static str, Option<&'static str>, bool, Vec<Vec<(&'static str, &'static str)>>, &'static str);
    let completed = |by: Option<&'static str>| {
        let mut p = vec![("CallStatus", "completed"), ("CallDuration", "30")];
        p.extend(by.map(|b| ("AnsweredBy", b)));
        p
    };
    let cases: Vec<Case> = vec![
        // Retries after voicemail: detection is on by default, synchronous.
        (
            "",
            "retry = { max_attempts = 2, voicemail = \"1h\" }",
            Some("Enable"),
            false,
            vec![completed(Some("machine_end_beep"))],
            "voicemail",
        ),
        ("", "retry = { max_attempts = 2 }", Some("Enable"), false, vec![completed(Some("human"))], "completed"),
        ("", "retry = { max_attempts = 2 }", Some("Enable"), false, vec![completed(Some("fax"))], "failed"),
        ("", "retry = { max_attempts = 2 }", Some("Enable"), false, vec![completed(Some("unknown"))], "completed"),
        // One attempt only: nothing to tell apart, no detection (and no charge for it).
        ("", "retry = { max_attempts = 1 }", None, false, vec![completed(None)], "completed"),
        (
            ", machine_detection = \"off\"",
            "retry = { max_attempts = 3 }",
            None,
            false,
            vec![completed(None)],
            "completed",
        ),
        // Asynchronous: the verdict comes alone, the end later without it.
        (
            ", machine_detection = \"DetectMessageEnd\", async_amd = true",
            "retry = { max_attempts = 1 }",
            Some("DetectMessageEnd"),
            true,
            vec![vec![("AnsweredBy", "machine_end_silence"), ("MachineDetectionDuration", "4100")], completed(None)],
            "voicemail",
        ),
    ];
    let mut sent = Vec::new();
    for (twilio_extra, retry, asks, asynchronous, callbacks, outcome) in cases {
        let fake = fake_twilio().await;
        let cg = TestServer::start(&twilio_config(&fake, TOKEN, twilio_extra, retry)).await;
        import(&cg, "renewals", json!({ "leads": [{ "phone": "+12125550100" }] })).await;
        let (sid, form, status_url) = placed_call(&fake).await;
        let pairs: Vec<(String, String)> = form.clone();
        assert!(strict::twilio_create_call(&pairs).is_empty(), "{form:?}");
        sent.push(form_json(&form));
        assert_eq!(values(&form, "MachineDetection"), asks.into_iter().collect::<Vec<_>>(), "{twilio_extra} {retry}");
        if asynchronous {
            assert_eq!(values(&form, "AsyncAmd"), ["true"]);
            assert_eq!(values(&form, "AsyncAmdStatusCallback"), [status_url.as_str()]);
        } else {
            assert!(values(&form, "AsyncAmd").is_empty() && values(&form, "AsyncAmdStatusCallback").is_empty());
        }
        let phone = Phone { server: &cg, public_url: PUBLIC, token: TOKEN };
        for params in callbacks {
            let mut all = vec![("AccountSid", "ACtest"), ("CallSid", sid.as_str())];
            all.extend(params);
            let r = phone.post(&status_url, &all).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        assert_eq!(attempt_outcome(&cg).await, outcome, "{twilio_extra} {retry}");
    }
    check_with_the_sdks(sent);
}

#[tokio::test]
async fn the_strict_fakes_refuse_what_the_real_apis_refuse() {
    // Vapi: a wrong key, a body that is not JSON, a top-level `metadata`, a long name.
    let vapi = FakeVapi::start(10, |_, _| (None, Duration::from_millis(5))).await;
    let client = reqwest::Client::new();
    let post = |key: &str, content_type: &str, body: String| {
        client
            .post(format!("{}/call", vapi.url))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ok_body = json!({ "assistantId": "a", "phoneNumberId": "p", "customer": { "number": "+12125550100" } });
    let r = post("wrong-key", "application/json", ok_body.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = post("test-key", "text/plain", ok_body.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post("test-key", "application/json", "{not json".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut with_metadata = ok_body.clone();
    with_metadata["metadata"] = json!({ "callgate_attempt": 1 });
    let r = post("test-key", "application/json", with_metadata.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({ "message": ["property metadata should not exist"], "error": "Bad Request", "statusCode": 400 })
    );
    let mut long = ok_body.clone();
    long["customer"]["name"] = json!("x".repeat(41));
    long["assistantOverrides"] = json!({ "metadata": { "a": 1 }, "colour": "red" });
    let v: Value = post("test-key", "application/json", long.to_string()).await.unwrap().json().await.unwrap();
    let messages: Vec<&str> = v["message"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(messages.contains(&"customer.name must be shorter than or equal to 40 characters"), "{v}");
    assert!(messages.contains(&"property assistantOverrides.colour should not exist"), "{v}");
    let r = post("test-key", "application/json", ok_body.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "a valid body is taken");

    // Twilio: a wrong token, an unknown parameter, a MachineDetection Twilio does not know.
    let twilio = fake_twilio().await;
    let url = format!("{}/2010-04-01/Accounts/ACtest/Calls.json", twilio.url);
    let form = |extra: &[(&str, &str)]| {
        let mut f = vec![("To", "+12125550100"), ("From", FROM), ("Url", "https://agents.example.com/twiml")];
        f.extend_from_slice(extra);
        form_urlencoded::Serializer::new(String::new()).extend_pairs(f).finish()
    };
    let send = |token: &str, body: String| {
        client
            .post(&url)
            .basic_auth("ACtest", Some(token))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = send("wrong", form(&[])).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 20003);
    for bad in [[("Metadata", "x")], [("MachineDetection", "enable")], [("AsyncAmd", "yes")], [("Timeout", "soon")]] {
        let r = send(TOKEN, form(&bad)).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let r = send(TOKEN, form(&[("MachineDetection", "DetectMessageEnd"), ("AsyncAmd", "true")])).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(twilio.placed().len() == 1);
}

#[test]
fn machine_detection_takes_only_twilios_values() {
    let config = |md: &str| {
        format!(
            r#"
[[pools]]
name = "agents"
limit = 10
[[providers]]
name = "tw"
kind = "twilio"
account_sid = "ACtest"
auth_token = "t"
public_url = "{PUBLIC}"
pool = "agents"
[[flows]]
name = "outbound"
pools = ["agents"]
class = "outbound"
[[campaigns]]
name = "renewals"
provider = "tw"
flow = "outbound"
twilio = {{ from = ["{FROM}"], url = "https://agents.example.com/twiml", {md} }}
"#
        )
    };
    for good in ["machine_detection = \"Enable\"", "machine_detection = \"DetectMessageEnd\", async_amd = true"] {
        assert!(callgate_config::Config::from_toml_str(&config(good), None).is_ok(), "{good}");
    }
    for (bad, field) in [
        ("machine_detection = \"enable\"", "machine_detection"),
        ("machine_detection = \"off\", async_amd = true", "async_amd"),
    ] {
        let e = callgate_config::Config::from_toml_str(&config(bad), None).unwrap_err().to_string();
        assert!(e.contains(field), "{bad}: {e}");
    }
}
