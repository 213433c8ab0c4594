//! Spill-over and routing by caller across accounts (issue 17), on two fake Vapi accounts
//! and one Twilio number: a caller who finds account A full is admitted in account B's
//! flow first and only then transferred; the transferred call, arriving at B with an id of
//! its own, is answered under that line (B's use rises by one, not two); each end frees
//! its line once; a spill that never arrives is freed after its window (on the manual
//! clock); routing rules and caller matches land callers on the right account.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use support::providers::{fake_twilio, fake_vapi, metric, twilio_signature, El, Fake, Phone};
use support::{eventually, secs, ManualClock, TestServer};

const SECRET_A: &str = "secret-of-account-a";
const SECRET_B: &str = "secret-of-account-b";
const TOKEN: &str = "twilio-auth-token";
const PUBLIC: &str = "https://callgate.example.com";
/// Account A's number, account B's number, the Twilio number (in front of account A).
const NUMBER_A: &str = "+15550001111";
const NUMBER_B: &str = "+15550002222";
const NUMBER_TW: &str = "+15550003333";
/// A second Twilio number, in front of account B.
const NUMBER_TW_B: &str = "+15550004444";
/// 2026-03-02 10:00 UTC, a Monday.
const T0: u64 = 1_772_445_600_000;

struct Accounts {
    s: TestServer,
    clock: Arc<ManualClock>,
    fakes: (Fake, Fake, Fake),
}

/// Two lines on each Vapi account; the Twilio number connects to account A over SIP.
/// Account A's callers and the Twilio number's spill to account B, then hear busy;
/// callers from +44 are routed to account B straight away; the VIP list gets account A's
/// VIP assistant.
async fn start() -> Accounts {
    let (a, b, tw) = (fake_vapi().await, fake_vapi().await, fake_twilio().await);
    let toml = format!(
        r#"
[[pools]]
name = "acct-a"
limit = 2
[[pools]]
name = "acct-b"
limit = 2

[[providers]]
name = "vapi-a"
kind = "vapi"
base_url = "{a}"
api_key = "key-a"
webhook_secret = "{SECRET_A}"
pool = "acct-a"
reconcile_every = "1h"
[[providers]]
name = "vapi-b"
kind = "vapi"
base_url = "{b}"
api_key = "key-b"
webhook_secret = "{SECRET_B}"
pool = "acct-b"
reconcile_every = "1h"
[[providers]]
name = "tw"
kind = "twilio"
base_url = "{tw}"
account_sid = "ACtest"
auth_token = "{TOKEN}"
public_url = "{PUBLIC}"
pool = "acct-a"
reconcile_every = "1h"

[[caller_lists]]
name = "vip"
numbers = ["+15557770000"]

[[flows]]
name = "vip-a"
pools = ["acct-a"]
class = "inbound"
match = {{ provider = "vapi-a", number = "{NUMBER_A}", caller = {{ list = "vip" }} }}
vapi = {{ assistant_id = "asst-vip" }}
overflow = {{ action = "spill", flow = "tw-b" }}

[[flows]]
name = "tw-b"
pools = ["acct-b"]
class = "inbound"
match = {{ provider = "tw", number = "{NUMBER_TW_B}" }}
twilio = {{ connect = {{ sip = "sip:support@b.sip.vapi.ai" }} }}

[[flows]]
name = "support-a"
pools = ["acct-a"]
class = "inbound"
match = {{ provider = "vapi-a", number = "{NUMBER_A}" }}
vapi = {{ assistant_id = "asst-a" }}
route = {{ caller = {{ from = ["+44"] }}, flow = "support-b" }}
overflow = [
  {{ action = "spill", flow = "support-b", within = "20s", message = "Connecting you to a free line." }},
  {{ action = "busy", message = "All lines are busy." }},
]

[[flows]]
name = "support-b"
pools = ["acct-b"]
class = "inbound"
match = {{ provider = "vapi-b", number = "{NUMBER_B}" }}
vapi = {{ assistant_id = "asst-b" }}

[[flows]]
name = "tw-line"
pools = ["acct-a"]
class = "inbound"
match = {{ provider = "tw", number = "{NUMBER_TW}" }}
twilio = {{ connect = {{ sip = "sip:support@a.sip.vapi.ai" }} }}
overflow = [{{ action = "spill", flow = "support-b" }}, {{ action = "busy" }}]
"#,
        a = a.url,
        b = b.url,
        tw = tw.url,
    );
    let clock = ManualClock::at(T0);
    let s = TestServer::start_with_clock(&toml, clock.clone()).await;
    Accounts { s, clock, fakes: (a, b, tw) }
}

async fn vapi(s: &TestServer, account: &str, secret: &str, message: Value) -> (StatusCode, Value) {
    support::providers::vapi_webhook(s, account, secret, message).await
}

/// `assistant-request` of call `id` from `from` to `to` on account A or B.
async fn ring(s: &TestServer, account: char, id: &str, from: &str, to: &str) -> Value {
    let (name, secret) = if account == 'a' { ("vapi-a", SECRET_A) } else { ("vapi-b", SECRET_B) };
    let msg = json!({
        "type": "assistant-request",
        "call": { "id": id, "type": "inboundPhoneCall", "customer": { "number": from } },
        "customer": { "number": from },
        "phoneNumber": { "id": "pn", "number": to },
    });
    let (status, body) = vapi(s, name, secret, msg).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn report(s: &TestServer, account: char, id: &str) {
    let (name, secret) = if account == 'a' { ("vapi-a", SECRET_A) } else { ("vapi-b", SECRET_B) };
    let msg = json!({
        "type": "end-of-call-report", "call": { "id": id }, "endedReason": "customer-ended-call",
        "startedAt": "2026-03-02T10:00:00.000Z", "endedAt": "2026-03-02T10:01:00.000Z",
    });
    let (status, body) = vapi(s, name, secret, msg).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn record(s: &TestServer, id: &str) -> Value {
    let (_, calls) = s.get("/v1/calls").await;
    calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no record of {id}"))
}

async fn spills(s: &TestServer, from: &str, to: &str, outcome: &str) -> f64 {
    metric(s, &format!("callgate_spills_total{{from=\"{from}\",to=\"{to}\",outcome=\"{outcome}\"}}")).await
}

/// Fills account A's two lines.
async fn fill_a(s: &TestServer) {
    for i in 1..=2 {
        assert_eq!(
            ring(s, 'a', &format!("a-{i}"), &format!("+1555123000{i}"), NUMBER_A).await["assistantId"],
            "asst-a"
        );
    }
    assert_eq!(s.used("acct-a").await, 2);
}

#[tokio::test]
async fn a_full_account_spills_and_the_transferred_call_counts_once() {
    let Accounts { s, .. } = start().await;
    fill_a(&s).await;
    let caller = "+15551239999";

    // A is full: the caller is admitted on B first, then transferred to B's number.
    let reply = ring(&s, 'a', "a-3", caller, NUMBER_A).await;
    assert_eq!(
        reply,
        json!({ "destination": { "type": "number", "number": NUMBER_B, "message": "Connecting you to a free line." } })
    );
    assert_eq!(s.used("acct-a").await, 2, "the spilled caller holds nothing on A");
    assert_eq!(s.used("acct-b").await, 1, "a line on B is held for the transferred call");
    assert_eq!(record(&s, "a-3").await["outcome"], "spilled:support-b");
    assert_eq!(spills(&s, "support-a", "support-b", "granted").await, 1.0);
    let leases = s.get("/v1/leases?pool=acct-b").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "spill:vapi-a:a-3");

    // Vapi retrying the assistant-request gets the same line.
    assert_eq!(ring(&s, 'a', "a-3", caller, NUMBER_A).await["destination"]["number"], NUMBER_B);
    assert_eq!(s.used("acct-b").await, 1);

    // The transferred call arrives at B as a new call with its own id: it is answered
    // under the held line, and B's use stays at one.
    let reply = ring(&s, 'b', "b-9", caller, NUMBER_B).await;
    assert_eq!(reply["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 1, "B's use rose by one, not two");
    let arrived = record(&s, "b-9").await;
    assert_eq!(arrived["outcome"], "granted:spill");
    assert_eq!(arrived["lease_key"], "spill:vapi-a:a-3");
    assert_eq!(arrived["flow"], "support-b");
    assert_eq!(spills(&s, "support-a", "support-b", "arrived").await, 1.0);
    // A repeated assistant-request of the arrived call: still one line.
    assert_eq!(ring(&s, 'b', "b-9", caller, NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 1);

    // B's second line goes to a caller of its own; now a spill from A finds no line on B
    // and the chain goes on to busy.
    assert_eq!(ring(&s, 'b', "b-10", "+15551230010", NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 2);
    assert_eq!(ring(&s, 'a', "a-4", "+15551230004", NUMBER_A).await, json!({ "error": "All lines are busy." }));
    assert_eq!(spills(&s, "support-a", "support-b", "rejected").await, 1.0);
    assert_eq!((s.used("acct-a").await, s.used("acct-b").await), (2, 2));

    // Ends release once on each side: the transferred call's end frees B's held line,
    // a repeated report frees nothing more; the original call's end frees nothing on A.
    report(&s, 'b', "b-9").await;
    assert_eq!(s.used("acct-b").await, 1);
    report(&s, 'b', "b-9").await;
    assert_eq!(s.used("acct-b").await, 1, "a repeated report releases nothing");
    report(&s, 'a', "a-3").await;
    assert_eq!(s.used("acct-a").await, 2, "the spilled caller's original call held nothing on A");
    report(&s, 'a', "a-1").await;
    report(&s, 'a', "a-1").await;
    assert_eq!(s.used("acct-a").await, 1);
    report(&s, 'b', "b-10").await;
    assert_eq!(s.used("acct-b").await, 0);
}

#[tokio::test]
async fn a_spill_that_never_arrives_is_freed_after_its_window() {
    let Accounts { s, clock, .. } = start().await;
    fill_a(&s).await;
    let caller = "+15551239999";
    assert_eq!(ring(&s, 'a', "a-3", caller, NUMBER_A).await["destination"]["number"], NUMBER_B);
    assert_eq!(s.used("acct-b").await, 1);
    clock.advance(19_000);
    assert_eq!(s.used("acct-b").await, 1, "held within the window");
    clock.advance(1_001);
    eventually("the unarrived spill's line is freed", secs(10), || async { s.used("acct-b").await == 0 }).await;
    eventually("counted as expired", secs(10), || async {
        spills(&s, "support-a", "support-b", "expired").await == 1.0
    })
    .await;
    // A call that comes later is an ordinary call of B's.
    assert_eq!(ring(&s, 'b', "b-late", caller, NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(record(&s, "b-late").await["outcome"], "granted");
    assert_eq!(s.used("acct-b").await, 1);
}

#[tokio::test]
async fn callers_are_routed_by_prefix_and_list() {
    let Accounts { s, .. } = start().await;
    // +44 callers of A's number are admitted on B and transferred there.
    let reply = ring(&s, 'a', "uk-1", "+447700900123", NUMBER_A).await;
    assert_eq!(reply, json!({ "destination": { "type": "number", "number": NUMBER_B } }));
    assert_eq!((s.used("acct-a").await, s.used("acct-b").await), (0, 1));
    assert_eq!(record(&s, "uk-1").await["outcome"], "spilled:support-b");
    assert_eq!(ring(&s, 'b', "uk-1-b", "+447700900123", NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 1, "the routed caller arrived under its line");
    // Others stay on A; the VIP list gets A's VIP assistant.
    assert_eq!(ring(&s, 'a', "us-1", "+12125550000", NUMBER_A).await["assistantId"], "asst-a");
    assert_eq!(ring(&s, 'a', "vip-1", "+15557770000", NUMBER_A).await["assistantId"], "asst-vip");
    assert_eq!(record(&s, "vip-1").await["flow"], "vip-a");
    assert_eq!((s.used("acct-a").await, s.used("acct-b").await), (2, 1));
    // B full: a +44 caller is routed nowhere and goes on in A's flow (A is full too: spill
    // to B fails as well, so busy).
    assert_eq!(ring(&s, 'b', "b-2", "+15551230002", NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(ring(&s, 'a', "uk-2", "+447700900124", NUMBER_A).await, json!({ "error": "All lines are busy." }));
    assert_eq!(spills(&s, "support-a", "support-b", "rejected").await, 2.0, "the route and the spill step");
}

fn phone(s: &TestServer) -> Phone<'_> {
    Phone { server: s, public_url: PUBLIC, token: TOKEN }
}

async fn twilio_ring(s: &TestServer, sid: &str, from: &str) -> El {
    let params =
        [("AccountSid", "ACtest"), ("CallSid", sid), ("CallStatus", "ringing"), ("From", from), ("To", NUMBER_TW)];
    phone(s).post("/webhooks/twilio/tw/voice", &params).await.twiml()
}

#[tokio::test]
async fn the_twilio_number_spills_with_a_dial_and_an_unconnected_dial_frees_the_line() {
    let Accounts { s, .. } = start().await;
    fill_a(&s).await;
    let caller = "+15551238888";
    let t = twilio_ring(&s, "CA-1", caller).await;
    assert_eq!(t.verbs(), ["Dial"]);
    let dial = t.find("Dial").unwrap();
    assert_eq!(t.find("Number").unwrap().text, NUMBER_B);
    assert_eq!(s.used("acct-b").await, 1);
    let action = dial.attr("action").to_owned();
    assert!(action.starts_with(&format!("{PUBLIC}/webhooks/twilio/tw/dialed?")), "{action}");

    // The <Dial> action with a forged signature changes nothing.
    let params = [("AccountSid", "ACtest"), ("CallSid", "CA-1"), ("DialCallStatus", "no-answer")];
    let forged = twilio_signature("not-the-token", &action, &params);
    let reply = phone(&s).post_signed(&action, &params, Some(&forged)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(s.used("acct-b").await, 1);

    // The transfer did not connect: the held line is freed at once, and the chain goes on.
    let t = phone(&s).post(&action, &params).await.twiml();
    assert_eq!(s.used("acct-b").await, 0);
    assert_eq!(t.verbs(), ["Say", "Hangup"], "busy, on an answered call");
    assert_eq!(spills(&s, "tw-line", "support-b", "expired").await, 1.0);

    // A second caller: the transfer connects and the call arrives at B under the line.
    let t = twilio_ring(&s, "CA-2", "+15551237777").await;
    assert_eq!(t.find("Number").unwrap().text, NUMBER_B);
    assert_eq!(ring(&s, 'b', "b-from-tw", "+15551237777", NUMBER_B).await["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 1);
    assert_eq!(record(&s, "b-from-tw").await["lease_key"], "spill:tw:CA-2");
    // Twilio's status for its own call frees nothing on B; B's report does.
    let params = [("AccountSid", "ACtest"), ("CallSid", "CA-2"), ("CallStatus", "completed")];
    phone(&s).post("/webhooks/twilio/tw/status", &params).await;
    assert_eq!(s.used("acct-b").await, 1);
    report(&s, 'b', "b-from-tw").await;
    assert_eq!(s.used("acct-b").await, 0);
}

#[tokio::test]
async fn an_unauthenticated_arrival_touches_nothing() {
    let Accounts { s, .. } = start().await;
    fill_a(&s).await;
    let caller = "+15551239999";
    ring(&s, 'a', "a-3", caller, NUMBER_A).await;
    assert_eq!(s.used("acct-b").await, 1);
    let msg = json!({
        "type": "assistant-request",
        "call": { "id": "b-9", "customer": { "number": caller } },
        "customer": { "number": caller },
        "phoneNumber": { "number": NUMBER_B },
    });
    // Account A's secret is not account B's.
    let (status, _) = vapi(&s, "vapi-b", SECRET_A, msg.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(spills(&s, "support-a", "support-b", "arrived").await, 0.0);
    let (_, calls) = s.get("/v1/calls").await;
    assert!(calls.as_array().unwrap().iter().all(|c| c["call_id"] != "b-9"), "nothing recorded");
    // The real arrival still finds its line.
    let (status, reply) = vapi(&s, "vapi-b", SECRET_B, msg).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["assistantId"], "asst-b");
    assert_eq!(s.used("acct-b").await, 1);
}

#[tokio::test]
async fn reconciliation_never_adopts_a_transferred_call_and_ends_its_line() {
    use callgate_config::ProviderKind;
    use callgate_server::reconcile::Reconciler;
    let Accounts { s, fakes, .. } = start().await;
    fill_a(&s).await;
    ring(&s, 'a', "a-3", "+15551239999", NUMBER_A).await;
    ring(&s, 'b', "b-9", "+15551239999", NUMBER_B).await;
    assert_eq!(s.used("acct-b").await, 1);
    let app = s.server().app.clone();
    let provider = app.inbound.providers.current().get("vapi-b", ProviderKind::Vapi).cloned().unwrap();
    let mut reconciler = Reconciler::new(&app.reconcile_handles(), provider).unwrap();
    // B lists the transferred call as live, twice: it counts already, nothing is adopted.
    fakes.1.set_calls(vec![json!({ "id": "b-9", "status": "in-progress" })]);
    for _ in 0..2 {
        let pass = reconciler.pass().await;
        assert_eq!(pass.adopted, 0, "{pass:?}");
        assert_eq!(s.used("acct-b").await, 1);
    }
    // B says it ended (its end-of-call report was lost): the held line is freed.
    fakes.1.set_calls(vec![json!({ "id": "b-9", "status": "ended" })]);
    let pass = reconciler.pass().await;
    assert_eq!(pass.released, 1, "{pass:?}");
    assert_eq!(s.used("acct-b").await, 0);
    assert_eq!(record(&s, "b-9").await["ended_reason"], "callgate-reconciled", "recorded under the call's id");
    let (_, calls) = s.get("/v1/calls").await;
    assert!(calls.as_array().unwrap().iter().all(|c| !c["call_id"].as_str().unwrap().starts_with("spill:")));
}

#[tokio::test]
async fn the_held_line_and_its_call_survive_a_restart() {
    let Accounts { s, fakes, .. } = start().await;
    fill_a(&s).await;
    ring(&s, 'a', "a-3", "+15551239999", NUMBER_A).await;
    ring(&s, 'b', "b-9", "+15551239999", NUMBER_B).await;
    assert_eq!(s.used("acct-b").await, 1);
    let s = s.restart().await;
    assert_eq!(s.used("acct-b").await, 1, "the acknowledged line is back");
    // The transferred call's end, after the restart, still finds the line it holds.
    report(&s, 'b', "b-9").await;
    assert_eq!(s.used("acct-b").await, 0);
    report(&s, 'b', "b-9").await;
    assert_eq!(s.used("acct-b").await, 0);
    drop(fakes);
}

#[tokio::test]
async fn a_spill_to_a_twilio_number_is_connected_under_the_held_line() {
    let Accounts { s, .. } = start().await;
    fill_a(&s).await;
    let vip = "+15557770000";
    // The VIP flow on A is full too: the VIP caller is admitted on B's Twilio line.
    let reply = ring(&s, 'a', "vip-1", vip, NUMBER_A).await;
    assert_eq!(reply["destination"]["number"], NUMBER_TW_B, "{reply}");
    assert_eq!(s.used("acct-b").await, 1);
    let params =
        [("AccountSid", "ACtest"), ("CallSid", "CA-B1"), ("CallStatus", "ringing"), ("From", vip), ("To", NUMBER_TW_B)];
    let t = phone(&s).post("/webhooks/twilio/tw/voice", &params).await.twiml();
    assert_eq!(t.find("Sip").unwrap().text, "sip:support@b.sip.vapi.ai");
    assert_eq!(s.used("acct-b").await, 1, "connected under the held line");
    assert_eq!(record(&s, "CA-B1").await["lease_key"], "spill:vapi-a:vip-1");
    assert_eq!(spills(&s, "vip-a", "tw-b", "arrived").await, 1.0);
    let params = [("AccountSid", "ACtest"), ("CallSid", "CA-B1"), ("CallStatus", "completed")];
    phone(&s).post("/webhooks/twilio/tw/status", &params).await;
    assert_eq!(s.used("acct-b").await, 0, "Twilio's terminal status frees it once");
    phone(&s).post("/webhooks/twilio/tw/status", &params).await;
    assert_eq!(s.used("acct-b").await, 0);
}
