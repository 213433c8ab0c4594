// Long file: one integration test binary for the Twilio edge sharing its fake; each binary costs a link on 2 cores.
//! The Twilio edge against a real server and journal: signed webhooks, TwiML read with an
//! XML parser, and a fake Twilio REST API for reconciliation (shapes from
//! shared/providers/twilio.md).

mod support;

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::providers::{fake_twilio, metric, twilio_signature, El, Fake, Phone};
use support::{holds_within, secs, TestServer};

const TOKEN: &str = "twilio-auth-token";
const PUBLIC: &str = "https://callgate.example.com";
const SUPPORT: &str = "+15550001111";
const SALES: &str = "+15550002222";
const MENU_LINE: &str = "+15550003333";
const HOLD_LINE: &str = "+15550004444";
const VOICE: &str = "/webhooks/twilio/tw/voice";
const STATUS: &str = "/webhooks/twilio/tw/status";

/// The start of a configuration: the pool `agents` of `limit` lines and the Twilio
/// provider `tw` on `fake`, with `public_url`, listing its calls every `reconcile_every`.
fn twilio_account(fake: &Fake, limit: u32, public_url: &str, reconcile_every: &str) -> String {
    format!(
        r#"
[[pools]]
name = "agents"
limit = {limit}

[[providers]]
name = "tw"
kind = "twilio"
base_url = "{url}"
account_sid = "ACtest"
auth_token = "{TOKEN}"
public_url = "{public_url}"
pool = "agents"
reconcile_every = "{reconcile_every}"
"#,
        url = fake.url
    )
}

/// Ten slots shared by three numbers: `support` has a waiting room and then offers a
/// callback (press 1), then voicemail; `sales` has no waiting room and is busy; the menu
/// line plays a DTMF menu.
fn config(fake: &Fake, reconcile_every: &str, max_wait: &str) -> String {
    let account = twilio_account(fake, 10, &format!("{PUBLIC}/"), reconcile_every);
    format!(
        r#"{account}

[[flows]]
name = "support"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{SUPPORT}" }}
twilio = {{ connect = {{ sip = "sip:support@example.sip.vapi.ai" }} }}
queue = {{ max_wait = "{max_wait}", max_len = 5 }}
overflow = [
  {{ action = "callback", key = "1", message = "Press 1 and we will call you back." }},
  {{ action = "voicemail", message = "Please leave a message.", max_length = "90s" }},
]

[[flows]]
name = "sales"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{SALES}" }}
twilio = {{ connect = {{ number = "+15557770000" }} }}
overflow = {{ action = "busy" }}

[[flows]]
name = "menu-line"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{MENU_LINE}" }}
twilio = {{ connect = {{ stream_url = "wss://agents.example.com/stream" }} }}
overflow = [{{ action = "ivr", menu = "busy-menu", message = "Our agents are busy." }}, {{ action = "busy", message = "Goodbye." }}]

[[flows]]
name = "hold-line"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{HOLD_LINE}" }}
twilio = {{ connect = {{ sip = "sip:hold@example.sip.vapi.ai" }}, hold_audio = "https://audio.example.com/hold.mp3?v=1&x=2" }}
queue = {{ max_wait = "90s" }}

[[menus]]
name = "busy-menu"
prompt = "Press 1 for a callback, 2 to leave a message, 0 for a person."
keys = {{ "1" = {{ action = "callback" }}, "2" = {{ action = "voicemail" }}, "0" = {{ action = "transfer", number = "+15559990000" }} }}
"#
    )
}

async fn start_with(reconcile_every: &str, max_wait: &str) -> (TestServer, Fake) {
    let fake = fake_twilio().await;
    (TestServer::start(&config(&fake, reconcile_every, max_wait)).await, fake)
}

/// Reconciliation an hour away, a 90-second waiting room.
async fn start() -> (TestServer, Fake) {
    start_with("1h", "90s").await
}

fn phone(s: &TestServer) -> Phone<'_> {
    Phone { server: s, public_url: PUBLIC, token: TOKEN }
}

/// A call arriving at the voice URL, as Twilio sends it.
async fn ring(s: &TestServer, sid: &str, from: &str, to: &str) -> El {
    let params = [
        ("AccountSid", "ACtest"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", from),
        ("Direction", "inbound"),
        ("From", from),
        ("To", to),
    ];
    phone(s).post(VOICE, &params).await.twiml()
}

async fn status(s: &TestServer, sid: &str, status: &str) -> El {
    let params = [("AccountSid", "ACtest"), ("CallSid", sid), ("CallStatus", status), ("CallDuration", "42")];
    phone(s).post(STATUS, &params).await.twiml()
}

/// Fills the ten lines with support calls `busy-0` … `busy-9`.
async fn fill(s: &TestServer) {
    for i in 0..10 {
        let t = ring(s, &format!("busy-{i}"), "+15551230000", SUPPORT).await;
        assert_eq!(t.verbs(), ["Dial"], "call {i}");
    }
    assert_eq!(s.used("agents").await, 10);
}

async fn callbacks(s: &TestServer) -> Vec<Value> {
    s.get("/v1/callbacks").await.1.as_array().unwrap().clone()
}

async fn call_record(s: &TestServer, id: &str) -> Value {
    let (_, calls) = s.get("/v1/calls").await;
    calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no record of {id}"))
}

#[tokio::test]
async fn a_twilio_call_is_connected_released_and_recorded() {
    let (s, _fake) = start().await;
    let t = ring(&s, "CA-1", "+15551230001", SUPPORT).await;
    assert_eq!(t.verbs(), ["Dial"]);
    assert_eq!(t.find("Sip").unwrap().text, "sip:support@example.sip.vapi.ai");
    assert_eq!(s.used("agents").await, 1);
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "CA-1", "the CallSid is the lease's key");

    // Twilio retrying the voice webhook gets the same line.
    assert_eq!(ring(&s, "CA-1", "+15551230001", SUPPORT).await.verbs(), ["Dial"]);
    assert_eq!(s.used("agents").await, 1);

    assert!(status(&s, "CA-1", "in-progress").await.verbs().is_empty());
    assert_eq!(s.used("agents").await, 1);
    assert!(status(&s, "CA-1", "completed").await.verbs().is_empty());
    assert_eq!(s.used("agents").await, 0, "a terminal status frees the line");
    status(&s, "CA-1", "completed").await;
    let record = call_record(&s, "CA-1").await;
    assert_eq!(record["flow"], "support");
    assert_eq!(record["outcome"], "granted");
    assert_eq!(record["duration_ms"], 42_000);
    assert_eq!(record["ended_reason"], "completed");

    // A number, and a media stream that learns its lease.
    let t = ring(&s, "CA-2", "+15551230002", SALES).await;
    assert_eq!(t.find("Number").unwrap().text, "+15557770000");
    let t = ring(&s, "CA-3", "+15551230003", MENU_LINE).await;
    assert_eq!(t.verbs(), ["Connect"]);
    let stream = t.find("Stream").unwrap();
    assert_eq!(stream.attr("url"), "wss://agents.example.com/stream");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    let lease = leases.as_array().unwrap().iter().find(|l| l["key"] == "CA-3").unwrap()["id"].clone();
    let param = stream.children.iter().find(|p| p.attr("name") == "lease").unwrap();
    assert_eq!(param.attr("value"), lease.as_str().unwrap());

    // A number no flow serves is rejected without being answered.
    let t = ring(&s, "CA-4", "+15551230004", "+15550009999").await;
    assert_eq!(t.verbs(), ["Reject"]);
    assert_eq!(t.find("Reject").unwrap().attr("reason"), "rejected");
}

#[tokio::test]
async fn the_eleventh_caller_waits_hears_position_one_and_is_connected_when_a_call_ends() {
    let (s, _fake) = start().await;
    fill(&s).await;

    let t = ring(&s, "CA-11", "+15551230011", SUPPORT).await;
    assert_eq!(t.verbs(), ["Enqueue"], "the eleventh caller waits");
    let enqueue = t.find("Enqueue").unwrap();
    let wait_url = enqueue.attr("waitUrl").to_owned();
    let action_url = enqueue.attr("action").to_owned();
    assert!(wait_url.starts_with(&format!("{PUBLIC}/webhooks/twilio/tw/wait?")), "{wait_url}");
    assert_eq!(s.pool("agents").await["waiting"], 1);

    let waiting = [("CallSid", "CA-11"), ("QueuePosition", "1"), ("QueueTime", "0"), ("AvgQueueTime", "0")];
    let t = phone(&s).post(&wait_url, &waiting).await.twiml();
    assert!(t.spoken().contains("You are number 1 in line"), "{t:?}");
    assert!(t.spoken().contains("expected wait"), "{t:?}");
    assert_eq!(t.verbs(), ["Say", "Pause"]);

    let t12 = ring(&s, "CA-12", "+15551230012", SUPPORT).await;
    let wait12 = t12.find("Enqueue").unwrap().attr("waitUrl").to_owned();
    let t = phone(&s).post(&wait12, &[("CallSid", "CA-12")]).await.twiml();
    assert!(t.spoken().contains("You are number 2 in line"), "{t:?}");

    // A call ends: the first in line gets its line, and the wait URL lets the caller go.
    status(&s, "busy-3", "completed").await;
    let t = phone(&s).post(&wait_url, &waiting).await.twiml();
    assert_eq!(t.verbs(), ["Leave"]);
    let t = phone(&s)
        .post(&action_url, &[("CallSid", "CA-11"), ("QueueResult", "leave"), ("QueueTime", "12")])
        .await
        .twiml();
    assert_eq!(t.verbs(), ["Dial"], "connected as the flow says");
    assert_eq!(t.find("Sip").unwrap().text, "sip:support@example.sip.vapi.ai");
    assert_eq!(s.used("agents").await, 10);
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert!(leases.as_array().unwrap().iter().any(|l| l["key"] == "CA-11"));

    // The next caller moved up, and hears so.
    let t = phone(&s).post(&wait12, &[("CallSid", "CA-12")]).await.twiml();
    assert!(t.spoken().contains("You are number 1 in line"), "{t:?}");
    assert_eq!(call_record(&s, "CA-11").await["outcome"], "granted");

    // With nothing new to say, the wait URL holds on until a line frees, and lets the
    // caller go the moment one does.
    let p = phone(&s);
    let (t, _) = tokio::join!(p.post(&wait12, &[("CallSid", "CA-12")]), async {
        // Nothing outside the governor shows that the wait URL holds on yet, so the line
        // frees a moment later: an ordering hint, not a bound (the answer is `Leave`
        // whichever comes first, and no assertion depends on how long this takes).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        status(&s, "busy-4", "completed").await
    });
    assert_eq!(t.twiml().verbs(), ["Leave"]);
}

#[tokio::test]
async fn hold_audio_plays_between_announcements() {
    let (s, _fake) = start().await;
    fill(&s).await;
    let t = ring(&s, "CA-H", "+15551230040", HOLD_LINE).await;
    let wait = t.find("Enqueue").unwrap().attr("waitUrl").to_owned();
    let t = phone(&s).post(&wait, &[("CallSid", "CA-H")]).await.twiml();
    assert_eq!(t.verbs(), ["Say", "Play"]);
    assert_eq!(t.find("Play").unwrap().text, "https://audio.example.com/hold.mp3?v=1&x=2");
    let t = phone(&s).post(&wait, &[("CallSid", "CA-H")]).await.twiml();
    assert_eq!(t.verbs(), ["Play"], "the position is said again only when it changes");
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_waiting_gives_up_the_place() {
    let (s, _fake) = start().await;
    fill(&s).await;
    let t = ring(&s, "CA-11", "+15551230011", SUPPORT).await;
    let action = t.find("Enqueue").unwrap().attr("action").to_owned();
    ring(&s, "CA-12", "+15551230012", SUPPORT).await;
    assert_eq!(s.pool("agents").await["waiting"], 2);

    let t = phone(&s).post(&action, &[("CallSid", "CA-11"), ("QueueResult", "hangup")]).await.twiml();
    assert!(t.verbs().is_empty());
    assert_eq!(s.pool("agents").await["waiting"], 1);
    // The status callback of a waiting caller who hangs up does the same.
    status(&s, "CA-12", "canceled").await;
    assert_eq!(s.pool("agents").await["waiting"], 0);
    let ended = "callgate_tickets_ended_total{pool=\"agents\",class=\"inbound\",outcome=\"cancelled\"}";
    assert_eq!(metric(&s, ended).await, 2.0);
    // A line that frees now goes to nobody who left.
    status(&s, "busy-0", "completed").await;
    assert_eq!(s.used("agents").await, 9);
}

#[tokio::test]
async fn a_waiting_caller_whose_call_can_no_longer_fit_leaves_for_the_overflow_at_once() {
    let (s, _fake) = start().await;
    fill(&s).await;
    let t = ring(&s, "CA-11", "+15551230011", SUPPORT).await;
    let enqueue = t.find("Enqueue").unwrap();
    let (wait_url, action) = (enqueue.attr("waitUrl").to_owned(), enqueue.attr("action").to_owned());
    // The account is shut down to no lines: the caller can never be connected.
    let (st, v) = s.put("/v1/pools/agents", json!({ "limit": 0 })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.pool("agents").await["waiting"], 0);
    assert_eq!(phone(&s).post(&wait_url, &[("CallSid", "CA-11")]).await.twiml().verbs(), ["Leave"]);
    let t = phone(&s)
        .post(&action, &[("CallSid", "CA-11"), ("From", "+15551230011"), ("QueueResult", "leave")])
        .await
        .twiml();
    assert_eq!(t.verbs(), ["Gather", "Redirect"], "the flow's first overflow step: {t:?}");
    assert_eq!(t.spoken(), "Press 1 and we will call you back.");
}

#[tokio::test]
async fn a_timed_out_caller_gets_the_next_overflow_action() {
    let (s, _fake) = start_with("1h", "200ms").await;
    fill(&s).await;
    let t = ring(&s, "CA-11", "+15551230011", SUPPORT).await;
    let enqueue = t.find("Enqueue").unwrap();
    let (wait_url, action) = (enqueue.attr("waitUrl").to_owned(), enqueue.attr("action").to_owned());
    assert!(holds_within(secs(5), || async { s.pool("agents").await["waiting"] == 0 }).await, "the ticket times out");
    assert_eq!(phone(&s).post(&wait_url, &[("CallSid", "CA-11")]).await.twiml().verbs(), ["Leave"]);

    // The first overflow step: a callback offer, then (no key) the next step.
    let t = phone(&s)
        .post(&action, &[("CallSid", "CA-11"), ("From", "+15551230011"), ("QueueResult", "leave")])
        .await
        .twiml();
    assert_eq!(t.verbs(), ["Gather", "Redirect"]);
    let gather = t.find("Gather").unwrap();
    assert_eq!(gather.attr("numDigits"), "1");
    assert_eq!(t.spoken(), "Press 1 and we will call you back.");
    let gather_url = gather.attr("action").to_owned();
    let next_url = t.find("Redirect").unwrap().text.clone();

    // Pressing 1 books the callback before the caller hears so.
    let t =
        phone(&s).post(&gather_url, &[("CallSid", "CA-11"), ("From", "+15551230011"), ("Digits", "1")]).await.twiml();
    assert_eq!(t.verbs(), ["Say", "Hangup"]);
    assert!(t.spoken().contains("call you back"), "{t:?}");
    let cbs = callbacks(&s).await;
    assert_eq!(cbs.len(), 1);
    assert_eq!((cbs[0]["number"].as_str(), cbs[0]["flow"].as_str()), (Some("+15551230011"), Some("support")));
    assert_eq!(cbs[0]["call_id"], "CA-11");

    // No key: the redirect goes on to voicemail.
    let t = phone(&s).post(&next_url, &[("CallSid", "CA-11"), ("From", "+15551230011")]).await.twiml();
    assert_eq!(t.verbs(), ["Say", "Record", "Say", "Hangup"]);
    assert_eq!(t.find("Say").unwrap().text, "Please leave a message.");
    let record = t.find("Record").unwrap();
    assert_eq!(record.attr("maxLength"), "90");
    let t = phone(&s)
        .post(
            record.attr("action"),
            &[("CallSid", "CA-11"), ("RecordingUrl", "https://api.twilio.com/rec/RE1"), ("RecordingDuration", "12")],
        )
        .await
        .twiml();
    assert_eq!(t.verbs(), ["Say", "Hangup"]);
    assert_eq!(call_record(&s, "CA-11").await["recording_url"], "https://api.twilio.com/rec/RE1");

    // A wrong key is a no as well.
    let t =
        phone(&s).post(&gather_url, &[("CallSid", "CA-11"), ("From", "+15551230011"), ("Digits", "7")]).await.twiml();
    assert_eq!(t.verbs(), ["Say", "Record", "Say", "Hangup"]);
    assert_eq!(callbacks(&s).await.len(), 1);
    let timed_out = "callgate_tickets_ended_total{pool=\"agents\",class=\"inbound\",outcome=\"timed_out\"}";
    assert_eq!(metric(&s, timed_out).await, 1.0);
    assert_eq!(s.used("agents").await, 10);
}

#[tokio::test]
async fn a_flow_without_a_waiting_room_rejects_as_busy_before_answering() {
    let (s, _fake) = start().await;
    fill(&s).await;
    let t = ring(&s, "CA-S", "+15551230020", SALES).await;
    assert_eq!(t.verbs(), ["Reject"], "Reject must be the only, first verb");
    assert_eq!(t.find("Reject").unwrap().attr("reason"), "busy");
    // A caller whose number cannot be called back skips the offer.
    let (s2, _f) = start_with("1h", "100ms").await;
    fill(&s2).await;
    let t = ring(&s2, "CA-A", "+266696687", SUPPORT).await;
    let action = t.find("Enqueue").unwrap().attr("action").to_owned();
    assert!(holds_within(secs(5), || async { s2.pool("agents").await["waiting"] == 0 }).await);
    let t = phone(&s2)
        .post(&action, &[("CallSid", "CA-A"), ("From", "+266696687"), ("QueueResult", "leave")])
        .await
        .twiml();
    assert_eq!(t.verbs(), ["Say", "Record", "Say", "Hangup"], "anonymous: straight to voicemail");
}

#[tokio::test]
async fn the_ivr_menu_leads_to_callbacks_voicemail_and_people() {
    let (s, _fake) = start().await;
    fill(&s).await;
    let t = ring(&s, "CA-M", "+15551230030", MENU_LINE).await;
    assert_eq!(t.verbs(), ["Gather", "Redirect"]);
    assert_eq!(t.spoken(), "Our agents are busy. Press 1 for a callback, 2 to leave a message, 0 for a person.");
    let gather = t.find("Gather").unwrap().attr("action").to_owned();
    let press = |digits: &'static str| {
        let (s, gather) = (&s, gather.clone());
        async move {
            phone(s).post(&gather, &[("CallSid", "CA-M"), ("From", "+15551230030"), ("Digits", digits)]).await.twiml()
        }
    };
    let t = press("1").await;
    assert_eq!(t.verbs(), ["Say", "Hangup"]);
    assert_eq!(callbacks(&s).await[0]["flow"], "menu-line");
    assert_eq!(press("2").await.verbs(), ["Say", "Record", "Say", "Hangup"]);
    let t = press("0").await;
    assert_eq!(t.verbs(), ["Dial"]);
    assert_eq!(t.find("Number").unwrap().text, "+15559990000");
    let dialed = t.find("Dial").unwrap().attr("action").to_owned();
    let t = phone(&s).post(&dialed, &[("CallSid", "CA-M"), ("DialCallStatus", "no-answer")]).await.twiml();
    assert_eq!((t.verbs(), t.spoken()), (vec!["Say", "Hangup"], "Goodbye.".to_owned()), "nobody answered: next step");
    let t = phone(&s).post(&dialed, &[("CallSid", "CA-M"), ("DialCallStatus", "completed")]).await.twiml();
    assert_eq!(t.verbs(), ["Hangup"], "after a real conversation, nothing more");

    let t = press("9").await;
    assert!(t.spoken().starts_with("Sorry, that is not an option."), "{t:?}");
    let again = t.find("Gather").unwrap().attr("action").to_owned();
    let t = phone(&s).post(&again, &[("CallSid", "CA-M"), ("Digits", "9")]).await.twiml();
    assert_eq!(t.spoken(), "Goodbye.", "a second wrong key goes on with the chain");
    assert_eq!(metric(&s, "callgate_overflow_total{flow=\"menu-line\",action=\"ivr\"}").await, 1.0);
}

#[tokio::test]
async fn wrong_signatures_are_refused_before_anything_changes() {
    let (s, _fake) = start().await;
    ring(&s, "CA-LIVE", "+15551230001", SUPPORT).await;
    let pool = s.pool("agents").await;
    let events = metric(&s, "callgate_events_total").await;
    let new_call = [("CallSid", "CA-NEW"), ("From", "+15551230002"), ("To", SUPPORT)];
    let hang_up = [("CallSid", "CA-LIVE"), ("CallStatus", "completed")];
    let p = phone(&s);
    for (path, params) in [(VOICE, &new_call[..]), (STATUS, &hang_up[..])] {
        let url = format!("{PUBLIC}{path}");
        let good = twilio_signature(TOKEN, &url, params);
        let cases: Vec<(&str, Option<String>)> = vec![
            ("no signature", None),
            ("empty", Some(String::new())),
            ("garbage", Some("not-a-signature".into())),
            ("other token", Some(twilio_signature("other-token", &url, params))),
            ("other URL", Some(twilio_signature(TOKEN, "https://evil.example.com/webhooks/twilio/tw/voice", params))),
            (
                "one char off",
                Some({
                    let mut c: Vec<char> = good.chars().collect();
                    c[0] = if c[0] == 'A' { 'B' } else { 'A' };
                    c.into_iter().collect()
                }),
            ),
        ];
        for (what, sig) in cases {
            if sig.as_deref() == Some(good.as_str()) {
                continue;
            }
            let r = p.post_signed(&url, params, sig.as_deref()).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"]["code"], "bad_signature");
        }
        // A parameter changed after signing.
        let mut tampered = params.to_vec();
        tampered[0] = ("CallSid", "CA-OTHER");
        let r = p.post_signed(&url, &tampered, Some(&good)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "tampered");
    }
    assert_eq!(s.pool("agents").await, pool, "nothing changed");
    assert_eq!(metric(&s, "callgate_events_total").await, events, "no event was recorded");
    assert_eq!(
        metric(&s, "callgate_webhooks_total{provider=\"tw\",endpoint=\"voice\",outcome=\"forbidden\"}").await,
        7.0
    );
    // Signed right, the same requests work.
    assert_eq!(p.post(STATUS, &hang_up).await.status, StatusCode::OK);
    assert_eq!(s.used("agents").await, 0);
    // Unknown providers and endpoints are 404s.
    assert_eq!(p.post("/webhooks/twilio/other/voice", &new_call).await.status, StatusCode::NOT_FOUND);
    assert_eq!(p.post("/webhooks/twilio/tw/nope", &new_call).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_lost_status_callback_is_repaired_by_reconciliation() {
    let fake = fake_twilio().await;
    let live = |sid: &str, to: &str| json!({ "sid": sid, "status": "in-progress", "direction": "inbound", "to": to, "from": "+15551230000", "parent_call_sid": null });
    fake.set_calls(vec![live("CA-GHOST", SUPPORT), live("CA-ALIVE", SUPPORT)]);
    let s = TestServer::start(&config(&fake, "100ms", "90s")).await;
    ring(&s, "CA-GHOST", "+15551230001", SUPPORT).await;
    ring(&s, "CA-ALIVE", "+15551230002", SUPPORT).await;
    let n = fake.requests();
    assert!(holds_within(secs(5), || async { fake.requests() >= n + 4 }).await, "two listings, two statuses each");
    assert_eq!(s.used("agents").await, 2);

    // The call ends on Twilio and its status callback is lost.
    fake.set_calls(vec![live("CA-ALIVE", SUPPORT)]);
    assert!(holds_within(secs(5), || async { s.used("agents").await == 1 }).await, "the ghost call is released");
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases[0]["key"], "CA-ALIVE");
    let reconciled = "callgate_reconciled_total{provider=\"tw\",what=\"lease\"}";
    assert!(holds_within(secs(5), || async { metric(&s, reconciled).await == 1.0 }).await);
    let recorded = || async { call_record(&s, "CA-GHOST").await["ended_reason"] == "callgate-reconciled" };
    assert!(holds_within(secs(5), recorded).await, "the call record says why it ended");
    let (path, query, auth) = fake.last_request().unwrap();
    assert_eq!(path, "/2010-04-01/Accounts/ACtest/Calls.json");
    assert!(["in-progress", "ringing"].contains(&query["Status"].as_str()));
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("ACtest:{TOKEN}"));
    assert_eq!(auth, Some(format!("Basic {basic}")));
}

#[tokio::test]
async fn live_calls_callgate_did_not_know_are_adopted() {
    let fake = fake_twilio().await;
    let s = TestServer::start(&config(&fake, "100ms", "90s")).await;
    fake.set_calls(vec![
        json!({ "sid": "CA-STRANGER", "status": "in-progress", "direction": "inbound", "to": SUPPORT, "parent_call_sid": null }),
        // The leg a <Dial> opened belongs to its parent call: not a call of its own.
        json!({ "sid": "CA-CHILD", "status": "in-progress", "direction": "outbound-dial", "to": "sip:x@y", "parent_call_sid": "CA-STRANGER" }),
        // A number callgate does not answer is none of its business.
        json!({ "sid": "CA-ELSEWHERE", "status": "in-progress", "direction": "inbound", "to": "+15550009999", "parent_call_sid": null }),
        // A call placed through the API (as another node's campaign pacer places one, which
        // this node's dialer does not follow) is counted by its dial lease, not adopted.
        json!({ "sid": "CA-OUT-OTHER-NODE", "status": "in-progress", "direction": "outbound-api", "to": "+15550008888", "from": SUPPORT, "parent_call_sid": null }),
    ]);
    assert!(holds_within(secs(5), || async { s.used("agents").await == 1 }).await);
    let leases = s.get("/v1/leases").await.1["leases"].clone();
    assert_eq!(leases.as_array().unwrap().len(), 1);
    assert_eq!(leases[0]["key"], "CA-STRANGER");
    assert_eq!(leases[0]["meta"]["adopted"], true);
    assert!(
        holds_within(secs(5), || async { metric(&s, "callgate_adopted_total{provider=\"tw\"}").await == 1.0 }).await
    );
    fake.set_calls(vec![]);
    assert!(holds_within(secs(5), || async { s.used("agents").await == 0 }).await, "released once it is gone");
}

/// Fuzzes the form parser through the whole server: garbage bodies, correctly signed so
/// that they reach the parser, are a 400 and change nothing; unsigned they are a 403.
/// 600 cases.
#[test]
fn garbage_twilio_forms_get_a_4xx_and_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, _fake) = rt.block_on(start());
    rt.block_on(ring(&s, "CA-LIVE", "+15551230001", SUPPORT));
    let pool = rt.block_on(s.pool("agents"));
    let events = rt.block_on(metric(&s, "callgate_events_total"));
    let p = phone(&s);
    let endpoints = prop_oneof![
        Just("voice"),
        Just("status"),
        Just("wait?flow=support&ticket=T1"),
        Just("queue?flow=support&ticket=x"),
        Just("gather?flow=support&step=9")
    ];
    let params = proptest::collection::vec(
        (
            prop_oneof![Just("To".to_owned()), Just("From".to_owned()), Just("CallStatus".to_owned()), "\\PC{0,8}"],
            "\\PC{0,12}",
        ),
        0..6,
    );
    let raw = proptest::collection::vec(any::<u8>(), 0..200);
    // 600 cases; PROPTEST_CASES=N runs a longer session.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&(endpoints, params, raw), |(endpoint, params, raw)| {
            let path = format!("/webhooks/twilio/tw/{endpoint}");
            let url = format!("{PUBLIC}{path}");
            // Well-formed pairs without a CallSid, signed.
            let pairs: Vec<(&str, &str)> =
                params.iter().filter(|(k, _)| k != "CallSid").map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let sig = twilio_signature(TOKEN, &url, &pairs);
            let r = rt.block_on(p.post_signed(&url, &pairs, Some(&sig)));
            prop_assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?} {}", pairs, r.body);
            // Raw bytes, unsigned.
            let r = rt.block_on(p.raw(&path, raw.clone(), None));
            prop_assert_eq!(r.status, StatusCode::FORBIDDEN);
            // Raw bytes, signed over what the parser makes of them: the parser never
            // panics, and without a CallSid it is a 400.
            let decoded: Vec<(String, String)> =
                form_urlencoded::parse(&raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let decoded_ref: Vec<(&str, &str)> = decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let has_sid = decoded.iter().any(|(k, v)| k == "CallSid" && !v.trim().is_empty());
            let sig = twilio_signature(TOKEN, &url, &decoded_ref);
            let r = rt.block_on(p.raw(&path, raw.clone(), Some(&sig)));
            prop_assert!(r.status.is_client_error() || has_sid, "{} {}", r.status, r.body);
            Ok(())
        })
        .unwrap();
    assert_eq!(rt.block_on(s.pool("agents")), pool);
    assert_eq!(rt.block_on(metric(&s, "callgate_events_total")), events);
}

/// A Twilio account whose calls the campaign dialer places: the fake takes `POST
/// Calls.json`; outcomes come only through the status callbacks (the dialer's poll of
/// live calls runs every `reconcile_every`, an hour here).
fn dialer_config(fake: &Fake) -> String {
    let account = twilio_account(fake, 10, PUBLIC, "1h");
    format!(
        r#"{account}

[[flows]]
name = "outbound"
pools = ["agents"]
class = "outbound"

[[campaigns]]
name = "renewals"
provider = "tw"
flow = "outbound"
twilio = {{ from = ["+15550009000"], url = "https://agents.example.com/twiml" }}
calls_per_second = 100
start = true
window = {{ start = "00:00", end = "24:00" }}
retry = {{ busy = "10ms", max_attempts = 1 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_callbacks_end_the_dialers_attempts() {
    let fake = fake_twilio().await;
    let s = TestServer::start(&dialer_config(&fake)).await;
    let leads = json!({ "leads": [{ "phone": "+12125550100" }, { "phone": "+12125550101" }] });
    let (st, v) = s.post("/v1/campaigns/renewals/leads", leads).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(holds_within(secs(10), || async { fake.placed().len() == 2 }).await, "both calls are placed");
    assert_eq!(s.used("agents").await, 2);
    let placed = fake.placed();
    let call = |phone: &str| {
        let (i, form) = placed.iter().enumerate().find(|(_, f)| f["To"] == phone).unwrap();
        (format!("CA-OUT-{}", i + 1), form["StatusCallback"].clone())
    };
    let (answered_sid, answered_url) = call("+12125550100");
    let (busy_sid, busy_url) = call("+12125550101");
    assert!(
        answered_url.starts_with(&format!("{PUBLIC}/webhooks/twilio/tw/status?callgate_attempt=")),
        "{answered_url}"
    );

    // Twilio signs the status callback URL with its query; a signature over the URL
    // without it is refused.
    let p = phone(&s);
    let completed = [
        ("AccountSid", "ACtest"),
        ("CallSid", answered_sid.as_str()),
        ("CallStatus", "completed"),
        ("CallDuration", "42"),
        ("AnsweredBy", "human"),
        ("Direction", "outbound-api"),
        ("To", "+12125550100"),
    ];
    let bare = format!("{PUBLIC}{STATUS}");
    let wrong = twilio_signature(TOKEN, &bare, &completed);
    assert_eq!(p.post_signed(&answered_url, &completed, Some(&wrong)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.used("agents").await, 2, "nothing changed");

    let in_progress = [("AccountSid", "ACtest"), ("CallSid", answered_sid.as_str()), ("CallStatus", "in-progress")];
    assert!(p.post(&answered_url, &in_progress).await.twiml().verbs().is_empty());
    assert!(p.post(&answered_url, &completed).await.twiml().verbs().is_empty());
    let busy =
        [("AccountSid", "ACtest"), ("CallSid", busy_sid.as_str()), ("CallStatus", "busy"), ("CallDuration", "0")];
    assert!(p.post(&busy_url, &busy).await.twiml().verbs().is_empty());

    let finished = || async { s.get("/v1/campaigns/renewals").await.1["finished"] == true };
    assert!(holds_within(secs(10), finished).await, "{}", s.get("/v1/campaigns/renewals").await.1);
    let (_, v) = s.get("/v1/campaigns/renewals").await;
    assert_eq!(v["leads"]["done"]["completed"], 1, "{v}");
    assert_eq!(v["leads"]["exhausted_by_outcome"]["busy"], 1, "{v}");
    assert_eq!(v["avg_talk_ms"], 42_000, "CallDuration is the talk time: {v}");
    assert_eq!(s.used("agents").await, 0, "both dial leases are released");
    let store = s.server().campaigns.store().clone();
    let attempts: Vec<_> = (1..=2).flat_map(|lead| store.attempts_of(lead).unwrap()).collect();
    assert!(attempts.iter().all(|a| a.answered_at.is_some() == (a.outcome.as_deref() == Some("completed"))));
    // A repeated callback changes nothing.
    assert!(p.post(&answered_url, &completed).await.twiml().verbs().is_empty());
    assert_eq!(s.get("/v1/campaigns/renewals").await.1["attempts"], 2);
}

/// The chains of a flow that depends on the `llm` breaker: a callback offer, then
/// voicemail; while the breaker is open, a transfer to people, then goodbye.
const LLM_CHAINS: &str = r#"depends_on = ["llm"]
overflow = [
  { action = "callback", key = "1", message = "Press 1 and we will call you back." },
  { action = "voicemail", message = "Please leave a message." },
]
fallback = [
  { action = "transfer", number = "+15559990000", message = "Our assistant is down." },
  { action = "busy", message = "Sorry, nobody can take your call." },
]"#;

/// One line. `support` (with a waiting room) and `sales` (without) depend on the `llm`
/// breaker: while it is open they transfer to people, then say goodbye; otherwise they
/// offer a callback, then voicemail.
fn breaker_config(fake: &Fake) -> String {
    let account = twilio_account(fake, 1, PUBLIC, "1h");
    format!(
        r#"{account}

[[breakers]]
name = "llm"
min_calls = 2
error_rate = 0.5
open_for = "30s"
half_open_probes = 1

[[flows]]
name = "support"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{SUPPORT}" }}
twilio = {{ connect = {{ sip = "sip:ai@example.sip.vapi.ai" }} }}
queue = {{ max_wait = "90s", max_len = 5 }}
{LLM_CHAINS}

[[flows]]
name = "sales"
pools = ["agents"]
class = "inbound"
match = {{ provider = "tw", number = "{SALES}" }}
twilio = {{ connect = {{ sip = "sip:ai@example.sip.vapi.ai" }} }}
{LLM_CHAINS}
"#
    )
}

async fn open_breaker(s: &TestServer) {
    let (st, v) = s
        .post("/v1/samples", json!([{ "dependency": "llm", "ok": false }, { "dependency": "llm", "ok": false }]))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.get("/v1/breakers").await.1[0]["state"], "open");
}

/// The fallback's first step: "Our assistant is down." and a transfer to people.
fn assert_fallback(t: &El) {
    assert_eq!(t.verbs(), ["Say", "Dial"], "{t:?}");
    assert_eq!(t.spoken(), "Our assistant is down.");
    assert_eq!(t.find("Number").unwrap().text, "+15559990000");
}

#[tokio::test]
async fn while_the_assistant_is_down_twilio_callers_get_the_fallback_and_nobody_waits_for_it() {
    let (fake, clock) = (fake_twilio().await, support::ManualClock::at(1_800_000_000_000));
    let s = TestServer::start_with_clock(&breaker_config(&fake), clock).await;
    assert_eq!(ring(&s, "CA-1", "+15551230001", SUPPORT).await.verbs(), ["Dial"], "the only line");
    let t2 = ring(&s, "CA-2", "+15551230002", SUPPORT).await;
    let t4 = ring(&s, "CA-4", "+15551230004", SUPPORT).await;
    assert_eq!((t2.verbs(), t4.verbs()), (vec!["Enqueue"], vec!["Enqueue"]));
    open_breaker(&s).await;

    // A new caller is not queued for the assistant: the fallback at once.
    let t = ring(&s, "CA-3", "+15551230003", SUPPORT).await;
    assert_fallback(&t);
    assert_eq!(s.pool("agents").await["waiting"], 2, "CA-3 did not join the line");
    // Its transfer's leg finds nobody: the fallback's next step, not the overflow's.
    let dialed = t.find("Dial").unwrap().attr("action").to_owned();
    assert!(dialed.contains("chain=fallback"), "{dialed}");
    let t = phone(&s).post(&dialed, &[("CallSid", "CA-3"), ("DialCallStatus", "no-answer")]).await.twiml();
    assert_eq!((t.verbs(), t.spoken()), (vec!["Say", "Hangup"], "Sorry, nobody can take your call.".to_owned()));

    // A caller already waiting leaves the line at the next wait request, gives up the
    // place, and hears the fallback.
    let enqueue = t2.find("Enqueue").unwrap();
    let t = phone(&s).post(enqueue.attr("waitUrl"), &[("CallSid", "CA-2")]).await.twiml();
    assert_eq!(t.verbs(), ["Leave"]);
    let t = phone(&s).post(enqueue.attr("action"), &[("CallSid", "CA-2"), ("QueueResult", "leave")]).await.twiml();
    assert_fallback(&t);
    assert_eq!(s.pool("agents").await["waiting"], 1);

    // A caller whose line comes free while the assistant is down gives it back.
    status(&s, "CA-1", "completed").await;
    assert_eq!(s.used("agents").await, 1, "CA-4's ticket was granted");
    let enqueue = t4.find("Enqueue").unwrap();
    assert_eq!(phone(&s).post(enqueue.attr("waitUrl"), &[("CallSid", "CA-4")]).await.twiml().verbs(), ["Leave"]);
    let t = phone(&s).post(enqueue.attr("action"), &[("CallSid", "CA-4"), ("QueueResult", "leave")]).await.twiml();
    assert_fallback(&t);
    assert_eq!((s.used("agents").await, s.pool("agents").await["waiting"].as_u64()), (0, Some(0)));
    let fallbacks = "callgate_fallbacks_total{flow=\"support\",breaker=\"llm\"}";
    assert_eq!(metric(&s, fallbacks).await, 1.0, "CA-3 was turned away by the breaker");
}

#[tokio::test]
async fn a_twilio_caller_keeps_the_chain_it_started_on() {
    let (fake, clock) = (fake_twilio().await, support::ManualClock::at(1_800_000_000_000));
    let s = TestServer::start_with_clock(&breaker_config(&fake), clock.clone()).await;
    assert_eq!(ring(&s, "CA-1", "+15551230001", SALES).await.verbs(), ["Dial"], "the only line");

    // Started on the configured chain; the breaker opens meanwhile: still that chain.
    let t = ring(&s, "CA-A", "+15551230010", SALES).await;
    assert_eq!(t.verbs(), ["Gather", "Redirect"], "the callback offer");
    let next = t.find("Redirect").unwrap().text.clone();
    assert!(next.contains("chain=overflow"), "{next}");
    open_breaker(&s).await;
    let t = phone(&s).post(&next, &[("CallSid", "CA-A"), ("From", "+15551230010")]).await.twiml();
    assert_eq!(t.verbs(), ["Say", "Record", "Say", "Hangup"], "voicemail, the configured next step: {t:?}");

    // Started on the fallback; the breaker closes meanwhile: still the fallback.
    let t = ring(&s, "CA-B", "+15551230011", SALES).await;
    assert_fallback(&t);
    let dialed_b = t.find("Dial").unwrap().attr("action").to_owned();
    let t = ring(&s, "CA-C", "+15551230012", SALES).await;
    let dialed_c = t.find("Dial").unwrap().attr("action").to_owned();
    clock.advance(31_000);
    let (st, _) = s.acquire(json!({ "flow": "sales", "key": "probe" })).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the probe passes the breaker and finds the line taken");
    s.post("/v1/samples", json!({ "dependency": "llm", "ok": true })).await;
    assert_eq!(s.get("/v1/breakers").await.1[0]["state"], "closed");
    let t = phone(&s).post(&dialed_b, &[("CallSid", "CA-B"), ("DialCallStatus", "busy")]).await.twiml();
    assert_eq!(t.spoken(), "Sorry, nobody can take your call.", "the fallback's next step: {t:?}");

    // A restart forgets the frozen chains; the URL's chain kind carries the caller on.
    let s = s.restart().await;
    let t = phone(&s).post(&dialed_c, &[("CallSid", "CA-C"), ("DialCallStatus", "no-answer")]).await.twiml();
    assert_eq!(t.spoken(), "Sorry, nobody can take your call.", "{t:?}");
    // A new caller now hears the configured chain again.
    assert_eq!(ring(&s, "CA-D", "+15551230013", SALES).await.verbs(), ["Gather", "Redirect"]);
}

/// A SharedKey account: webhooks signed with HMAC-SHA256 and announced by
/// `X-Twilio-Webhooks-Signature-Settings`. The request and its signature are one of the
/// vectors computed with the official `twilio` package (tests/fixtures).
#[tokio::test]
async fn sharedkey_signatures_are_accepted_and_checked() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/twilio_signatures.json")).unwrap();
    let v = fixture["vectors"].as_array().unwrap().iter().find(|v| v["name"] == "sharedkey").unwrap().clone();
    let fake = fake_twilio().await;
    let account = twilio_account(&fake, 10, "https://cg.example.com", "1h").replace(
        "pool = \"agents\"\n",
        &format!("pool = \"agents\"\nshared_key = \"{}\"\n", v["token"].as_str().unwrap()),
    );
    let text = format!(
        "{account}\n[[flows]]\nname = \"all\"\npools = [\"agents\"]\nclass = \"inbound\"\n\
         match = {{ provider = \"tw\" }}\ntwilio = {{ connect = {{ sip = \"sip:a@example.sip.vapi.ai\" }} }}\n"
    );
    let s = TestServer::start(&text).await;
    let params: Vec<(String, String)> = v["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
        .collect();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let send = |settings: Option<&'static str>, sig: String| {
        let mut req = s
            .client
            .post(format!("{}{VOICE}", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", sig)
            .body(body.clone());
        if let Some(h) = settings {
            req = req.header("X-Twilio-Webhooks-Signature-Settings", h);
        }
        req.send()
    };
    let sig = v["signature"].as_str().unwrap().to_owned();
    let settings = "key=webhooks_sharedkey_ABC123,algorithm=HMAC_SHA256";
    // Without the header it would be a classic signature: it is not one.
    assert_eq!(send(None, sig.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(send(Some("key=k,algorithm=HMAC_SHA512"), sig.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(s.used("agents").await, 0, "nothing changed");
    let resp = send(Some(settings), sig).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(s.used("agents").await, 1, "the caller got a line");
    // The classic scheme still works on the same account, keyed with the auth token.
    let pairs: Vec<(&str, &str)> = vec![("CallSid", "CA-CLASSIC"), ("From", "+15551230009"), ("To", SUPPORT)];
    let classic = Phone { server: &s, public_url: "https://cg.example.com", token: TOKEN };
    let r = classic.post(VOICE, &pairs).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.used("agents").await, 2);
}
