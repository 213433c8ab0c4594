// Long file: one integration test binary for campaigns sharing the fake providers; each binary costs a link on 2 cores.
//! Outbound campaigns against a real server, a real journal and lead store, and a fake
//! Vapi account: the budget holds (inbound's reserve, the account's limit), calls happen
//! only at lawful hours in the lead's zone, retries follow the policy, a refusal loses no
//! lead, sharded accounts carry on, callbacks go first, imports report their rows.

mod support;
#[path = "support/vapi_dialer.rs"]
mod vapi_dialer;

use callgate_providers::vapi::dial::call_state;
use callgate_server::campaign::{BookedCallback, CallbackBook, ProviderUpdate};
use callgate_server::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, holds_within, secs, ManualClock, TestServer};
use vapi_dialer::{vapi_account, FakeVapi};

impl TestServer {
    async fn post_csv(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.send(
            self.client.post(format!("{}{path}", self.base)).header("content-type", "text/csv").body(body.to_string()),
        )
        .await
    }

    async fn campaign(&self, name: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/campaigns/{name}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Waits (up to about `secs`) until the campaign has no lead left to dial or in a
    /// call; its view then.
    async fn finished(&self, name: &str, secs: u64) -> Value {
        let last = Mutex::new(Value::Null);
        let finished = || async {
            let v = self.campaign(name).await;
            let done = v["finished"] == true;
            *last.lock().unwrap() = v;
            done
        };
        if !holds_within(Duration::from_secs(secs), finished).await {
            panic!("campaign `{name}` did not finish: {}", last.lock().unwrap());
        }
        last.into_inner().unwrap()
    }

    /// Waits until the dialer's pacing loop has looked at every campaign at the clock's
    /// time and found nothing to dial (see `Campaigns::settle`).
    async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.server().campaigns.settle())
            .await
            .expect("the pacing loop settles");
    }

    /// Publishes the fake's call ends on the bus as call events, as the Vapi webhook does.
    fn wire_webhook(&self, fake: &FakeVapi, provider: &'static str) {
        let bus = self.server().app.bus.clone();
        fake.set_hook(Arc::new(move |call_id: String, attempt: Option<u64>, call: Value| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.call(ProviderUpdate { provider: provider.into(), call_id, attempt, state: call_state(&call) })
                    .await;
            });
        }));
    }
}

impl TestServer {
    /// Sends the fake's call ends to callgate's Vapi webhook as end-of-call reports, the
    /// way Vapi does.
    fn wire_vapi_webhook(&self, fake: &FakeVapi, provider: &'static str) {
        let (url, client) = (format!("{}/webhooks/vapi/{provider}", self.base), self.client.clone());
        fake.set_hook(Arc::new(move |call_id: String, _attempt: Option<u64>, call: Value| {
            let (url, client) = (url.clone(), client.clone());
            tokio::spawn(async move {
                let body = json!({ "message": {
                    "type": "end-of-call-report",
                    "call": { "id": call_id },
                    "endedReason": call["endedReason"],
                    "startedAt": call["startedAt"],
                    "endedAt": call["endedAt"],
                    "cost": call["cost"],
                } });
                let resp = client.post(url).header("x-vapi-secret", "test-secret").json(&body).send().await.unwrap();
                assert!(resp.status().is_success(), "the webhook took the report: {}", resp.status());
            });
        }));
    }
}

/// One account of 10 lines with 3 held back for inbound, a Vapi provider on the fake,
/// inbound and outbound flows, and `campaign` (a `[[campaigns]]` body).
fn account(fake: &str, campaign: &str) -> String {
    let account = vapi_account(fake, "1s");
    format!(
        r#"{account}
[[flows]]
name = "inbound"
pools = ["vapi"]
class = "inbound"
queue = {{ max_wait = "5s", max_len = 50 }}

[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"

[[campaigns]]
{campaign}
"#
    )
}

const ALL_DAY: &str = r#"window = { start = "00:00", end = "24:00" }"#;

/// A `[[campaigns]]` body: `name` dials through `vapi-main` for `outbound` (assistant
/// `a`, number `p`) at 100 calls a second all day, with `extra` lines.
fn vapi_campaign(name: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "a", phone_number_id = "p" }}
calls_per_second = 100
{ALL_DAY}
{extra}
"#
    )
}

/// A fake Vapi account of `limit` lines on which every call is answered and talks 5 ms.
async fn answering_fake(limit: u32) -> FakeVapi {
    FakeVapi::start(limit, |_, _| (None, Duration::from_millis(5))).await
}

/// A server on `toml` whose `vapi-main` call ends come from `fake` (see
/// [`TestServer::wire_webhook`]).
async fn start_wired(fake: &FakeVapi, toml: &str) -> TestServer {
    let cg = TestServer::start(toml).await;
    cg.wire_webhook(fake, "vapi-main");
    cg
}

fn leads(n: usize, area: u32) -> Value {
    let leads: Vec<Value> = (0..n)
        .map(|i| json!({ "phone": format!("+1{area}{:03}{:04}", 200 + i / 10_000, i % 10_000), "score": (i % 7) as f64 }))
        .collect();
    json!({ "leads": leads })
}

async fn import(cg: &TestServer, campaign: &str, body: Value) -> Value {
    let (s, v) = cg.post(&format!("/v1/campaigns/{campaign}/leads"), body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_leads_never_take_the_inbound_reserve_nor_exceed_the_account() {
    // Most calls are answered and short; some find busy lines, voicemail or failures and
    // are retried once.
    let fake = FakeVapi::start(10, |phone, n| {
        let d = phone.as_bytes()[phone.len() - 1] - b'0';
        let talk = Duration::from_millis(3 + u64::from(d));
        match (d, n) {
            (6, 1) => (Some("customer-busy"), Duration::from_millis(2)),
            (8, _) => (Some("voicemail"), Duration::from_millis(2)),
            (9, 1) => (Some("twilio-failed-to-connect-call"), Duration::from_millis(1)),
            _ => (None, talk),
        }
    })
    .await;
    let campaign = format!(
        r#"name = "big"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "asst_sales", phone_number_ids = ["pn_1", "pn_2"] }}
calls_per_second = 1000
{ALL_DAY}
retry = {{ busy = "20ms", no_answer = "20ms", voicemail = "20ms", failed = "20ms", max_attempts = 2 }}
"#
    );
    let cg = start_wired(&fake, &account(&fake.url, &campaign)).await;
    let report = import(&cg, "big", leads(2000, 212)).await;
    assert_eq!(report["added"], 2000, "{report}");

    // The governor's view, sampled continuously: outbound never holds more than 7 lines,
    // nobody more than 10.
    let done = Arc::new(AtomicBool::new(false));
    let app = cg.server().app.clone();
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut max_out, mut max_all, mut samples) = (0usize, 0usize, 0u64);
            while !done.load(Ordering::Relaxed) {
                let leases = app.governor.leases(Some("vapi")).unwrap();
                max_out = max_out.max(leases.iter().filter(|l| &*l.class == "outbound").count());
                max_all = max_all.max(leases.len());
                samples += 1;
                // The sampling pace, not a wait for anything.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (max_out, max_all, samples)
        })
    };
    // Simulated inbound callers: three lines of callers, each waiting for a line, talking
    // briefly on the account, hanging up.
    let inbound_calls = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for c in 0..3 {
        let (base, client, fake, done, count) =
            (cg.base.clone(), cg.client.clone(), fake.clone(), done.clone(), inbound_calls.clone());
        callers.push(tokio::spawn(async move {
            for n in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let resp = client
                    .post(format!("{base}/v1/acquire"))
                    .json(&json!({ "flow": "inbound", "key": format!("in-{c}-{n}"), "wait_ms": 5000 }))
                    .send()
                    .await
                    .unwrap();
                if resp.status() != StatusCode::OK {
                    continue;
                }
                let v: Value = resp.json().await.unwrap();
                assert!(fake.inbound_start(), "an inbound call found the account full");
                count.fetch_add(1, Ordering::Relaxed);
                // The simulated caller talks, hangs up, and calls again a moment later.
                tokio::time::sleep(Duration::from_millis(20)).await;
                fake.inbound_end();
                let id = v["lease"]["id"].as_str().unwrap();
                client.delete(format!("{base}/v1/leases/{id}")).send().await.unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    let (s, _) = cg.post("/v1/campaigns/big/start", json!(null)).await;
    assert_eq!(s, StatusCode::OK);
    let v = cg.finished("big", 120).await;
    done.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    let (gov_max_out, gov_max_all, samples) = sampler.await.unwrap();
    let counts = fake.counts();
    eprintln!(
        "placed {} calls, {} inbound calls; provider saw at most {} outbound and {} in all; governor at most {} and {} ({samples} samples)",
        counts.placed.len(),
        inbound_calls.load(Ordering::Relaxed),
        counts.max_out,
        counts.max_total,
        gov_max_out,
        gov_max_all
    );
    assert!(counts.max_out <= 7, "the provider saw {} outbound calls at once", counts.max_out);
    assert!(counts.max_total <= 10, "the provider saw {} calls at once", counts.max_total);
    assert!(gov_max_out <= 7 && gov_max_all <= 10, "governor: {gov_max_out} outbound, {gov_max_all} in all");
    assert!(counts.max_out >= 5, "the campaign used the outbound share: {}", counts.max_out);
    assert!(inbound_calls.load(Ordering::Relaxed) > 20, "inbound callers got through while the campaign ran");
    assert_eq!(counts.refusals, 0, "callgate never asked the account for a line it did not have");
    // No lead lost; every attempt placed once.
    let leads = &v["leads"];
    let done_n: u64 = leads["done"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(leads["total"], 2000);
    assert_eq!(done_n + leads["exhausted"].as_u64().unwrap() + leads["failed"].as_u64().unwrap(), 2000, "{v}");
    let mut attempts: Vec<u64> = counts.placed.iter().map(|p| p.attempt.unwrap()).collect();
    attempts.sort_unstable();
    let n = attempts.len();
    attempts.dedup();
    assert_eq!(attempts.len(), n, "an attempt was placed twice");
    // Voicemail numbers (last digit 8) were tried twice and gave up; busy ones got through.
    assert_eq!(leads["exhausted_by_outcome"]["voicemail"], 200, "{v}");
    assert_eq!(v["attempts"].as_u64().unwrap() as usize, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_is_placed_where_it_is_night() {
    let fake = answering_fake(10).await;
    // 08:00 UTC on a Thursday: 03:00 in New York, 08:00 in London.
    let now = callgate_config::parse_datetime("2026-01-15T08:00:00Z", chrono_tz::UTC).unwrap();
    let campaign = r#"name = "night"
provider = "vapi-main"
flow = "outbound"
vapi = { assistant_id = "a", phone_number_id = "p" }
window = { start = "08:00", end = "21:00" }
calls_per_second = 50
start = true
"#;
    // The clock stands still at 08:00 UTC.
    let cg = TestServer::start_with_clock(&account(&fake.url, campaign), ManualClock::at(now)).await;
    let mut body = leads(5, 212); // New York numbers
    body["leads"].as_array_mut().unwrap().push(json!({ "phone": "+44 20 7946 0958" })); // London
    body["leads"].as_array_mut().unwrap().push(json!({ "phone": "+12125550199", "timezone": "Asia/Tokyo" })); // 17:00 there
    let report = import(&cg, "night", body).await;
    assert_eq!(report["added"], 7, "{report}");
    // The leads in daytime are dialed; once the pacing loop has looked again and found
    // nothing to dial, no other lead has been taken (none is dialing, all five wait in the
    // scheduler), nor will be while the clock says 08:00.
    eventually("two leads are dialed", secs(10), || async { fake.counts().placed.len() >= 2 }).await;
    cg.settle().await;
    assert_eq!(cg.campaign("night").await["leads"]["scheduled"], 5, "no night lead was taken");
    let placed: Vec<String> = fake.counts().placed.iter().map(|p| p.phone.clone()).collect();
    let mut placed_sorted = placed.clone();
    placed_sorted.sort();
    assert_eq!(placed_sorted, ["+12125550199", "+442079460958"], "only leads whose local time is day are called");
    let v = cg.campaign("night").await;
    assert_eq!(v["leads"]["pending"], 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy() {
    // +1212 200 0000: busy every time. …0001: no answer, then answered. …0002: answered.
    let fake = FakeVapi::start(10, |phone, n| match (phone, n) {
        ("+12122000000", _) => (Some("customer-busy"), Duration::from_millis(1)),
        ("+12122000001", 1) => (Some("customer-did-not-answer"), Duration::from_millis(1)),
        _ => (None, Duration::from_millis(5)),
    })
    .await;
    let campaign = vapi_campaign(
        "retry",
        r#"start = true
retry = { busy = "150ms", no_answer = "100ms", backoff = 2, max_attempts = 3 }"#,
    );
    let cg = TestServer::start(&account(&fake.url, &campaign)).await;
    // Outcomes arrive through Vapi's end-of-call reports at the webhook.
    cg.wire_vapi_webhook(&fake, "vapi-main");
    import(&cg, "retry", leads(3, 212)).await;
    let v = cg.finished("retry", 30).await;
    assert_eq!(v["leads"]["exhausted_by_outcome"]["customer-busy"], Value::Null);
    assert_eq!(v["leads"]["exhausted_by_outcome"]["busy"], 1, "{v}");
    assert_eq!(v["leads"]["done"]["completed"], 2, "{v}");
    assert_eq!(v["attempts"], 3 + 2 + 1, "{v}");
    let store = cg.server().campaigns.store().clone();
    let busy_lead = (1..=3).find(|id| store.lead(*id).unwrap().unwrap().phone == "+12122000000").unwrap();
    let attempts = store.attempts_of(busy_lead).unwrap();
    assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(attempts.iter().all(|a| a.outcome.as_deref() == Some("busy")));
    // The delays: 150 ms after the first busy, 300 ms (backed off) after the second.
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1].placed_at - w[0].placed_at).collect();
    assert!(gaps[0] >= 150 && gaps[1] >= 300, "gaps {gaps:?}");
    let lead = store.lead(busy_lead).unwrap().unwrap();
    assert_eq!((lead.state.as_str(), lead.attempts), ("exhausted", 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_refusal_loses_no_lead() {
    for blocked_style in [false, true] {
        let fake = answering_fake(10).await;
        fake.counts().refuse_next = 3;
        fake.counts().refuse_blocked_style = blocked_style;
        let campaign = vapi_campaign(
            "refused",
            r#"start = true
cooldown = "100ms"
retry = { max_attempts = 1 }"#,
        );
        let cg = start_wired(&fake, &account(&fake.url, &campaign)).await;
        import(&cg, "refused", leads(20, 415)).await;
        let v = cg.finished("refused", 30).await;
        assert_eq!(v["leads"]["done"]["completed"], 20, "every lead was reached after the refusals: {v}");
        assert_eq!(v["refusals"], 3, "{v}");
        assert_eq!(v["attempts"], 20, "refusals do not count as attempts: {v}");
        assert_eq!(fake.counts().refusals, 3);
        // The cap that the refusal lowered comes back after the cooldown.
        let restored = || async { cg.get("/v1/pools/vapi").await.1["cap"] == 10 };
        eventually("the pool's cap is restored", secs(5), restored).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_campaign_carries_on_when_one_account_refuses() {
    let down = answering_fake(5).await;
    down.counts().refuse_all = true;
    let up = answering_fake(5).await;
    let toml = format!(
        r#"
[[pools]]
name = "acct-a"
limit = 5
[[pools]]
name = "acct-b"
limit = 5

[[providers]]
name = "vapi-a"
kind = "vapi"
base_url = "{}"
api_key = "test-key"
webhook_secret = "s"
pool = "acct-a"
reconcile_every = "100ms"

[[providers]]
name = "vapi-b"
kind = "vapi"
base_url = "{}"
api_key = "test-key"
webhook_secret = "s"
pool = "acct-b"
reconcile_every = "100ms"

[[flows]]
name = "outbound"
pools = ["acct-a"]
class = "outbound"

[[campaigns]]
name = "sharded"
providers = ["vapi-a", "vapi-b"]
flow = "outbound"
vapi = {{ assistant_id = "a", phone_number_id = "p" }}
calls_per_second = 200
cooldown = "10s"
start = true
{ALL_DAY}
"#,
        down.url, up.url
    );
    let cg = TestServer::start(&toml).await;
    cg.wire_webhook(&up, "vapi-b");
    import(&cg, "sharded", leads(40, 303)).await;
    let v = cg.finished("sharded", 30).await;
    assert_eq!(v["leads"]["done"]["completed"], 40, "{v}");
    assert!(down.counts().refusals >= 1, "the first account was tried");
    assert_eq!(up.counts().placed.len(), 40, "every lead reached through the second account");
    assert!(up.counts().max_out <= 5);
    let a = v["providers"].as_array().unwrap().iter().find(|p| p["name"] == "vapi-a").unwrap().clone();
    assert!(a["cooling_down_until_ms"].is_u64(), "the refusing account cools down: {a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_are_imported_with_row_numbers_and_duplicates_are_skipped() {
    let mut cg = TestServer::start(&sim_config("calls_per_second = 500")).await;
    cg.token = Some("admin-token".into());
    let csv = "phone,name,timezone,score,plan\n\
               +1 212 555 0123,Ada,,5,gold\n\
               not-a-phone,Bob,,1,\n\
               +1 415 555 0123,Grace,Mars/Base,2,\n\
               (312) 555-0123,Linus,,3,\n\
               +1 212 555 0123,Ada again,,1,\n\
               +44 20 7946 0958,Tim,,x,\n";
    let (s, r) = cg.post_csv("/v1/campaigns/sim/leads?country=US", csv).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].as_u64(), r["skipped"].as_u64(), r["rejected"].as_u64()),
        (Some(2), Some(1), Some(3)),
        "{r}"
    );
    let rejected: Vec<u64> =
        r["rejected_rows"].as_array().unwrap().iter().map(|x| x["row"].as_u64().unwrap()).collect();
    assert_eq!(rejected, [3, 4, 7]);
    assert_eq!(r["skipped_rows"][0]["row"], 6);
    assert!(r["skipped_rows"][0]["reason"].as_str().unwrap().contains("row 2"));
    // Importing again adds nothing: idempotent by phone number.
    let (_, r) = cg.post_csv("/v1/campaigns/sim/leads?country=US", csv).await;
    assert_eq!((r["added"].as_u64(), r["skipped"].as_u64()), (Some(0), Some(3)), "{r}");
    // JSON, with a chunk's row offset.
    let (s, r) = cg
        .post(
            "/v1/campaigns/sim/leads?row_offset=100",
            json!({ "leads": [ { "phone": "+12125550124", "vars": { "plan": "gold" } }, { "phone": "" }, { "phone": "+12125550123" } ] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["added"], 1);
    assert_eq!(r["rejected_rows"][0]["row"], 102);
    assert_eq!(r["skipped_rows"][0]["row"], 103);
    // A CSV without a phone column is refused whole; an unknown campaign is a 404.
    let (s, v) = cg.post_csv("/v1/campaigns/sim/leads", "name\nAda\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = cg.post_csv("/v1/campaigns/nope/leads", csv).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Row 3 opens a quote that never closes: refused whole, naming the row, instead of
    // reading rows 4 and 5 into row 3's name.
    let unbalanced = "phone,name\n\
                      +1 646 555 0101,Ann\n\
                      +1 646 555 0102,\"Ben\n\
                      +1 646 555 0103,Cat\n\
                      +1 646 555 0104,Dan\n";
    let (s, v) = cg.post_csv("/v1/campaigns/sim/leads?country=US", unbalanced).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("row 3 opens a quoted field"), "{v}");
    let v = cg.campaign("sim").await;
    assert_eq!(v["leads"]["total"], 3, "nothing of the broken upload was imported");
}

/// A configuration with a simulated campaign `sim` (paused) and `extra` appended (which
/// should set `calls_per_second`).
fn sim_config(extra: &str) -> String {
    format!(
        r#"
[auth]
keys = [ {{ name = "ops", token = "admin-token", role = "admin" }}, {{ name = "app", token = "client-token", role = "client" }} ]

[[pools]]
name = "vapi"
limit = 10
reserve = {{ inbound = 3 }}

[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"

[[flows]]
name = "inbound"
pools = ["vapi"]
class = "inbound"

[[campaigns]]
name = "sim"
flow = "outbound"
simulate = {{ ring_time = "2ms", talk_min = "5ms", talk_mean = "10ms", talk_max = "40ms", failure_rate = 0, seed = 3 }}
{ALL_DAY}
retry = {{ busy = "10ms", no_answer = "10ms", voicemail = "10ms", failed = "10ms", max_attempts = 2 }}
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_created_and_driven_through_the_api() {
    let mut cg = TestServer::start(&sim_config("calls_per_second = 500")).await;
    cg.token = Some("admin-token".into());
    let body = json!({
        "name": "api-made", "flow": "outbound", "simulate": { "ring_time_ms": 2, "talk_min_ms": 5, "talk_mean_ms": 10, "talk_max_ms": 20 },
        "calls_per_second": 200, "window": { "start": "00:00", "end": "24:00" }, "max_concurrency": 2,
        "retry": { "busy_ms": 10, "no_answer_ms": 10, "voicemail_ms": 10, "failed_ms": 10, "max_attempts": 1 }
    });
    let (s, v) = cg.post("/v1/campaigns", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "paused", "a campaign starts paused");
    assert_eq!(v["config"]["retry"]["busy_ms"], 10);
    let (s, _) = cg.post("/v1/campaigns", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "the same campaign again is no conflict");
    let mut other = body.clone();
    other["max_concurrency"] = json!(3);
    let (s, v) = cg.post("/v1/campaigns", other).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("campaign_exists")));
    let (s, v) = cg.post("/v1/campaigns", json!({ "name": "bad", "flow": "nope", "simulate": {} })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown flow"), "{v}");
    let (s, _) =
        cg.post("/v1/campaigns", json!({ "name": "bad", "flow": "outbound", "simulate": {}, "colour": 1 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A client key may read, not change.
    cg.token = Some("client-token".into());
    let (s, _) = cg.post("/v1/campaigns/api-made/start", json!(null)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = cg.get("/v1/campaigns/api-made").await;
    assert_eq!(s, StatusCode::OK);
    cg.token = Some("admin-token".into());
    import(&cg, "api-made", leads(30, 617)).await;
    cg.settle().await;
    assert_eq!(cg.campaign("api-made").await["attempts"], 0, "paused: nothing dialed");
    let (_, v) = cg.post("/v1/campaigns/api-made/start", json!(null)).await;
    assert_eq!(v["state"], "running");
    // Pause while it runs: no new attempts after the pause, live calls end by themselves.
    let five = || async { cg.campaign("api-made").await["attempts"].as_u64().unwrap() >= 5 };
    eventually("five attempts are made", secs(30), five).await;
    let (_, v) = cg.post("/v1/campaigns/api-made/pause", json!(null)).await;
    assert_eq!(v["state"], "paused");
    assert!(v["live"].as_u64().unwrap() <= 2, "max_concurrency holds: {v}");
    let ended = || async { cg.campaign("api-made").await["live"] == 0 };
    eventually("live calls end on their own", secs(10), ended).await;
    let paused = cg.campaign("api-made").await;
    // Nothing live, nothing being dialed: once the pacing loop has looked again, a dial
    // would show.
    cg.settle().await;
    assert_eq!(cg.campaign("api-made").await["attempts"], paused["attempts"], "no dial while paused");
    let (_, v) = cg.post("/v1/campaigns/api-made/resume", json!(null)).await;
    assert_eq!(v["state"], "running");
    let v = cg.finished("api-made", 30).await;
    assert_eq!(v["leads"]["total"], 30);
    let (_, v) = cg.post("/v1/campaigns/api-made/stop", json!(null)).await;
    assert_eq!(v["state"], "stopped");
    let (s, v) = cg.post("/v1/campaigns/api-made/resume", json!(null)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("campaign_stopped")));
    let (s, _) = cg.get("/v1/campaigns/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The campaign and its state survive a restart.
    let token = cg.token.clone();
    let mut cg = cg.restart().await;
    cg.token = token;
    let v = cg.campaign("api-made").await;
    assert_eq!((v["state"].as_str(), v["source"].as_str()), (Some("stopped"), Some("api")));
    assert_eq!(v["leads"]["total"], 30);
    let (_, list) = cg.get("/v1/campaigns").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, metrics) = cg.send(cg.client.get(format!("{}/metrics", cg.base))).await;
    assert!(metrics.as_str().unwrap().contains("callgate_campaign_live{campaign=\"api-made\"} 0"), "{metrics}");
}

/// Callbacks booked by inbound overflow, as a test hands them over.
struct Book(Mutex<Vec<BookedCallback>>);
impl CallbackBook for Book {
    fn booked(&self) -> Vec<BookedCallback> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booked_callbacks_are_dialed_first_in_the_callback_class() {
    let mut cg = TestServer::start(&sim_config("callbacks = true\nmax_concurrency = 1\ncalls_per_second = 20")).await;
    cg.token = Some("admin-token".into());
    import(&cg, "sim", leads(30, 212)).await;
    let book = Arc::new(Book(Mutex::new(vec![BookedCallback {
        id: 1,
        provider: "simulated".into(),
        number: "+13125550100".into(),
        booked_at: 0,
        due_at: 0,
    }])));
    cg.server().campaigns.set_callback_book(book.clone());
    // Once the dialer has read the book (the callback is a lead waiting to be dialed),
    // start: the callback goes first.
    let taken = || async {
        let leads = cg.campaign("sim").await["leads"].clone();
        leads["total"] == 31 && leads["scheduled"] == 31
    };
    eventually("the dialer takes the booked callback", secs(10), taken).await;
    cg.post("/v1/campaigns/sim/start", json!(null)).await;
    cg.finished("sim", 60).await;
    let store = cg.server().campaigns.store().clone();
    let first = store.attempts_of(31).unwrap();
    assert!(!first.is_empty(), "the callback became lead 31 and was dialed");
    assert_eq!(first[0].class, "callback");
    assert_eq!(first[0].id, 1, "it was the first attempt of the campaign");
    // A callback is taken once, however often the book lists it.
    assert_eq!(cg.campaign("sim").await["leads"]["total"], 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_campaign_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = callgate_server::demo::demo_config("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf(), 7);
    let server =
        Server::start(ServeOptions { config: cfg, config_path: None, listen: None, data_dir: None }).await.unwrap();
    let campaigns = server.campaigns.clone();
    let leads = callgate_server::demo::demo_leads(500, 7);
    let body = axum::body::Bytes::from(leads.to_string());
    let report = campaigns.import("demo", body, Default::default()).await.unwrap();
    assert_eq!(report.added, 500, "every simulated lead is a valid number: {report:?}");
    // It dials at once (start = true), within the outbound share: the leases, sampled
    // until it has made three attempts.
    let max_out = AtomicUsize::new(0);
    let three = || async {
        let leases = server.app.governor.leases(Some("vapi")).unwrap();
        max_out.fetch_max(leases.iter().filter(|l| &*l.class == "outbound").count(), Ordering::Relaxed);
        campaigns.view("demo").unwrap().attempts >= 3
    };
    eventually("the demo makes three attempts", secs(30), three).await;
    let max_out = max_out.into_inner();
    assert!((1..=7).contains(&max_out), "{max_out}");
    server.stop().await;
}

impl TestServer {
    async fn cap(&self, pool: &str) -> Value {
        self.get(&format!("/v1/pools/{pool}")).await.1["cap"].clone()
    }
}

/// Reads `/v1/events` until `done` holds for what was read (at most 5 s); returns it.
async fn read_events(resp: reqwest::Response, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut stream = resp.bytes_stream();
    let (mut buf, mut seen) = (String::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done(&seen) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("the events did not come: {seen:?}"))
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        seen.push(v);
                    }
                }
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_an_adaptive_pool_is_a_drop_and_no_cooldown_raises_the_cap_later() {
    let fake = answering_fake(10).await;
    fake.counts().refuse_next = 1;
    let campaign = vapi_campaign(
        "adaptive",
        r#"cooldown = "100ms"
retry = { max_attempts = 1 }"#,
    );
    // The account's pool adapts: AIMD, each drop × 0.9. Reconciliation lists the account
    // every 100 ms.
    let toml = account(&fake.url, &campaign)
        .replace(
            "reserve = { inbound = 3 }",
            "reserve = { inbound = 3 }\nadaptive = { algorithm = \"aimd\", min = 2, window = { min = \"1ms\", max = \"1ms\", min_samples = 1 } }",
        )
        .replace(r#"reconcile_every = "1s""#, r#"reconcile_every = "100ms""#);
    let cg = start_wired(&fake, &toml).await;
    // The limiter has moved the cap once already: 10 → 9.
    let (s, v) = cg.post("/v1/samples", json!({ "pool": "vapi", "dropped": true })).await;
    assert_eq!((s, &v["caps"]["vapi"]), (StatusCode::OK, &json!(9)), "{v}");
    // The refusal must fall in the limiter's next window (1 ms long).
    let sampled = cg.now_ms();
    eventually("the limiter's window passes", secs(5), || async { cg.now_ms() >= sampled + 5 }).await;
    import(&cg, "adaptive", leads(10, 415)).await;
    cg.post("/v1/campaigns/adaptive/start", json!(null)).await;
    let v = cg.finished("adaptive", 30).await;
    assert_eq!((v["refusals"].as_u64(), v["leads"]["done"]["completed"].as_u64()), (Some(1), Some(10)), "{v}");

    // The refusal was a drop for the limiter (9 → 8), and the pool's cap is the limiter's.
    let adaptive_cap = || async { cg.get("/v1/stats").await.1["adaptive"][0]["cap"].clone() };
    assert_eq!(adaptive_cap().await, 8, "the refusal reached the limiter");
    assert_eq!(cg.cap("vapi").await, 8);
    // Past the campaign's cooldown and two reconciliations after it (which end a fixed
    // pool's refusal cap), nothing has raised the cap above the limiter's.
    let cooled = || async { cg.campaign("adaptive").await["providers"][0]["cooling_down_until_ms"].is_null() };
    eventually("the campaign's cooldown ends", secs(10), cooled).await;
    let lists = fake.counts().lists;
    eventually("reconciliation lists twice more", secs(10), || async { fake.counts().lists >= lists + 2 }).await;
    assert_eq!((cg.cap("vapi").await, adaptive_cap().await), (json!(8), json!(8)));
    let sources = cg.server().app.governor.cap_sources("vapi").unwrap();
    assert_eq!((sources.adaptive, sources.cooldown), (Some(8), None), "no cooldown source on an adaptive pool");
    assert!(cg.metrics().await.contains("callgate_provider_refusals_total{pool=\"vapi\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusals_cooldown_cap_on_a_fixed_pool_ends_when_reconciliation_finds_room() {
    let fake = answering_fake(10).await;
    fake.counts().refuse_next = 1;
    // The campaign's cooldown is an hour: only reconciliation can end it in this test.
    let campaign = vapi_campaign(
        "cool",
        r#"cooldown = "1h"
start = true"#,
    );
    let toml = account(&fake.url, &campaign).replace(r#"reconcile_every = "1s""#, r#"reconcile_every = "100ms""#);
    let cg = TestServer::start(&toml).await;
    let events = cg.client.get(format!("{}/v1/events", cg.base)).send().await.unwrap();
    import(&cg, "cool", leads(3, 212)).await;
    let caps = |seen: &[Value]| -> Vec<u64> {
        seen.iter()
            .filter(|e| e["type"] == "limit_changed" && e["pool"] == "vapi")
            .map(|e| e["cap"].as_u64().unwrap())
            .collect()
    };
    let seen = read_events(events, |seen| caps(seen).len() >= 2).await;
    // The cap went down to what was in use when the account refused (the calls dialed
    // beside the refused one, at most two), then back to the limit once a listing showed
    // the account with room.
    let caps = caps(&seen);
    assert!(caps[0] <= 2 && caps[1] == 10, "{caps:?}: {seen:?}");
    assert_eq!(cg.cap("vapi").await, 10);
    assert_eq!(cg.server().app.governor.cap_sources("vapi").unwrap().cooldown, None);
    let v = cg.campaign("cool").await;
    assert!(v["providers"][0]["cooling_down_until_ms"].is_u64(), "the campaign itself still cools down: {v}");
    assert_eq!(fake.counts().refusals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_never_adopts_the_dialers_own_calls() {
    // Calls that last long enough for many listings: an unknown call is adopted after two.
    let fake = FakeVapi::start(10, |_, _| (None, Duration::from_millis(1500))).await;
    let campaign = vapi_campaign("own", r#"start = true"#);
    // adopt = true (the default), and a listing every 50 ms.
    let toml = account(&fake.url, &campaign).replace(r#"reconcile_every = "1s""#, r#"reconcile_every = "50ms""#);
    assert!(!toml.contains("adopt"));
    let cg = start_wired(&fake, &toml).await;
    import(&cg, "own", leads(3, 212)).await;
    assert!(holds_within(secs(10), || async { fake.counts().live_out == 3 }).await, "the three calls are live");
    let listed = fake.counts().lists;
    assert!(
        holds_within(secs(10), || async { fake.counts().lists >= listed + 4 }).await,
        "reconciliation listed them again and again"
    );
    assert_eq!(fake.counts().live_out, 3, "still live");
    let used = cg.get("/v1/pools/vapi").await.1["used"].clone();
    assert_eq!(used, 3, "callgate counts each of its calls once");
    let leases = cg.get("/v1/leases?pool=vapi").await.1["leases"].clone();
    assert!(leases.as_array().unwrap().iter().all(|l| l["key"].as_str().unwrap().starts_with("dial:")), "{leases}");
    assert!(cg.metrics().await.contains("callgate_adopted_total{provider=\"vapi-main\"} 0"));
    let v = cg.finished("own", 30).await;
    assert_eq!(v["leads"]["done"]["completed"], 3, "{v}");
    assert!(holds_within(secs(5), || async { cg.get("/v1/pools/vapi").await.1["used"] == 0 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_callback_leaves_the_booked_state_once_the_dialer_takes_it() {
    // One line; the support number books a callback when it is busy; a simulated
    // campaign returns booked callbacks.
    let toml = format!(
        r#"
[[pools]]
name = "acct"
limit = 1

[[providers]]
name = "vapi-main"
kind = "vapi"
webhook_secret = "test-secret"
pool = "acct"

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
match = {{ provider = "vapi-main", number = "+15550001111" }}
vapi = {{ assistant_id = "asst_support" }}
overflow = {{ action = "callback" }}

[[flows]]
name = "outbound"
pools = ["acct"]
class = "outbound"

[[campaigns]]
name = "returns"
flow = "outbound"
simulate = {{ answer_rate = 1, busy_rate = 0, voicemail_rate = 0, failure_rate = 0, ring_time = "2ms", talk_min = "5ms", talk_mean = "5ms", talk_max = "5ms", seed = 1 }}
callbacks = true
calls_per_second = 100
start = true
{ALL_DAY}
"#
    );
    let cg = TestServer::start(&toml).await;
    let (s, holder) = cg.post("/v1/acquire", json!({ "flow": "support", "key": "holder" })).await;
    assert_eq!(s, StatusCode::OK, "{holder}");
    let reply = cg.assistant_request("call-2", "+13125550100", "pn-1").await;
    assert!(reply["error"].as_str().unwrap().contains("call you back"), "{reply}");
    let (_, booked) = cg.get("/v1/callbacks?state=booked").await;
    assert_eq!(booked.as_array().unwrap().len(), 1, "{booked}");
    let id = booked[0]["id"].clone();
    // A line frees: the dialer takes the callback and dials it.
    cg.client
        .delete(format!("{}/v1/leases/{}", cg.base, holder["lease"]["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let done = || async {
        let (_, all) = cg.get("/v1/callbacks").await;
        all[0]["state"] == "done"
    };
    assert!(holds_within(secs(10), done).await, "{}", cg.get("/v1/callbacks").await.1);
    let (_, booked) = cg.get("/v1/callbacks?state=booked").await;
    assert_eq!(booked, json!([]), "a dialed callback is no longer booked");
    let (_, all) = cg.get("/v1/callbacks?state=done").await;
    assert_eq!((&all[0]["id"], &all[0]["outcome"]), (&id, &json!("completed")), "{all}");
    assert!(all[0]["updated_at_ms"].is_u64(), "{all}");
    let store = cg.server().campaigns.store().clone();
    let lead = store.lead(1).unwrap().unwrap();
    assert_eq!((lead.phone.as_str(), lead.state.as_str(), lead.callback_id), ("+13125550100", "done", id.as_u64()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_the_provider_ends_for_concurrency_is_reported_as_a_refusal() {
    // The first call to each number is accepted, then ended by the platform for
    // concurrency (as Vapi reports a call it could not start); the second is answered.
    let fake = FakeVapi::start(10, |_, n| match n {
        1 => (Some("call.start.error-subscription-concurrency-limit-reached"), Duration::from_millis(1)),
        _ => (None, Duration::from_millis(5)),
    })
    .await;
    let campaign = vapi_campaign(
        "late",
        r#"cooldown = "50ms"
start = true
retry = { failed = "10ms", max_attempts = 3 }"#,
    );
    let cg = start_wired(&fake, &account(&fake.url, &campaign)).await;
    import(&cg, "late", leads(1, 212)).await;
    let v = cg.finished("late", 30).await;
    assert_eq!(v["leads"]["done"]["completed"], 1, "{v}");
    assert_eq!(v["refusals"], 1, "{v}");
    assert!(
        cg.metrics().await.contains("callgate_provider_refusals_total{pool=\"vapi\"} 1"),
        "the governor heard of it"
    );
    assert!(holds_within(secs(5), || async { cg.cap("vapi").await == 10 }).await, "and its cooldown ended");
}

/// Ends a call the fake holds open (its script had it ring for minutes) the way the
/// platform would: the fake shows it ended, and its end-of-call report goes to the hook.
/// `talk_ms`: answered, and talked that long before hanging up; `None`: never answered.
fn hang_up(fake: &FakeVapi, call_id: &str, talk_ms: Option<u64>) {
    let (attempt, call) = {
        let mut c = fake.counts();
        c.live_out = c.live_out.saturating_sub(1);
        let call = c.calls.get_mut(call_id).expect("a call the fake placed");
        call["status"] = json!("ended");
        match talk_ms {
            Some(ms) => {
                call["endedReason"] = json!("customer-ended-call");
                call["startedAt"] = json!("2026-01-15T12:00:00.000Z");
                call["endedAt"] = json!(format!("2026-01-15T12:00:{:02}.{:03}Z", ms / 1000, ms % 1000));
            }
            None => call["endedReason"] = json!("customer-did-not-answer"),
        }
        (call["assistantOverrides"]["metadata"]["callgate_attempt"].as_u64(), call.clone())
    };
    let hook = fake.account.hook.lock().unwrap().clone().expect("a wired webhook");
    hook(call_id.to_string(), attempt, call);
}

impl TestServer {
    /// An inbound call from `from` to the support line, through the Vapi webhook, while
    /// every line is taken: the overflow books a callback. Its id.
    async fn book_callback(&self, call_id: &str, from: &str) -> u64 {
        let reply = self.assistant_request(call_id, from, "pn-support").await;
        assert!(reply["error"].as_str().unwrap_or("").contains("call you back"), "{reply}");
        let (_, all) = self.get("/v1/callbacks").await;
        let cb = all.as_array().unwrap().iter().find(|c| c["call_id"] == call_id).expect("booked").clone();
        cb["id"].as_u64().unwrap()
    }

    /// An inbound call `call_id` from `from` to the support line (+15550001111, Vapi's
    /// number `number_id`), as Vapi's assistant-request to the `vapi-main` webhook: the
    /// reply.
    async fn assistant_request(&self, call_id: &str, from: &str, number_id: &str) -> Value {
        let request = json!({ "message": {
            "type": "assistant-request",
            "call": { "id": call_id, "type": "inboundPhoneCall", "customer": { "number": from } },
            "customer": { "number": from },
            "phoneNumber": { "id": number_id, "number": "+15550001111" },
        } });
        let resp = self
            .client
            .post(format!("{}/webhooks/vapi/vapi-main", self.base))
            .header("x-vapi-secret", "test-secret")
            .json(&request)
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    /// The callback `id` as `GET /v1/callbacks` shows it.
    async fn callback(&self, id: u64) -> Value {
        let (_, all) = self.get("/v1/callbacks").await;
        all.as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_booked_while_its_lead_is_dialed_is_dialed_unless_that_call_reaches_the_caller() {
    // One line on the account, so an inbound call overflows while the campaign's call
    // holds it; the overflow books a callback due 2 s later (on the manual clock, which
    // the test moves). The campaign returns
    // callbacks and dials each lead once. Every number's first call rings until the test
    // ends it (deterministically: after the dialer took the callback for the lead being
    // dialed); later calls are answered and short.
    const MISSED: &str = "+13125550100"; // its campaign call goes unanswered
    const REACHED: &str = "+13125550101"; // its campaign call reaches the caller after the booking
    let fake = FakeVapi::start(10, |_, n| match n {
        1 => (Some("customer-did-not-answer"), Duration::from_secs(600)),
        _ => (None, Duration::from_millis(5)),
    })
    .await;
    let toml = format!(
        r#"
[[pools]]
name = "acct"
limit = 1

[[providers]]
name = "vapi-main"
kind = "vapi"
base_url = "{url}"
api_key = "test-key"
webhook_secret = "test-secret"
pool = "acct"
reconcile_every = "100ms"

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
match = {{ provider = "vapi-main", number = "+15550001111" }}
vapi = {{ assistant_id = "asst_support" }}
overflow = {{ action = "callback", after = "2s" }}

[[flows]]
name = "outbound"
pools = ["acct"]
class = "outbound"

[[campaigns]]
name = "renewals"
provider = "vapi-main"
flow = "outbound"
vapi = {{ assistant_id = "asst_sales", phone_number_id = "pn_1" }}
callbacks = true
calls_per_second = 100
start = true
{ALL_DAY}
retry = {{ max_attempts = 1 }}
"#,
        url = fake.url
    );
    let clock = ManualClock::at(1_800_000_000_000);
    let cg = TestServer::start_with_clock(&toml, clock.clone()).await;
    cg.wire_vapi_webhook(&fake, "vapi-main");
    let store = cg.server().campaigns.store().clone();
    import(&cg, "renewals", json!({ "leads": [ { "phone": MISSED } ] })).await;
    let placed_to = |phone: &'static str| {
        let fake = fake.clone();
        move || {
            let fake = fake.clone();
            async move { fake.counts().placed.iter().filter(|p| p.phone == phone).count() }
        }
    };
    let call_to = |phone: &str| fake.counts().placed.iter().find(|p| p.phone == phone).unwrap().call_id.clone();

    // 1. The campaign calls MISSED; meanwhile MISSED calls in, overflows and is promised a
    //    callback, which the dialer takes for the lead it is dialing.
    let missed_calls = placed_to(MISSED);
    assert!(holds_within(secs(10), || async { missed_calls().await == 1 }).await, "the campaign called MISSED");
    let cb_missed = cg.book_callback("in-1", MISSED).await;
    let missed = cg.callback(cb_missed).await;
    assert!(holds_within(secs(5), || async { cg.callback(cb_missed).await["state"] == "dialing" }).await, "{missed}");
    let lead_missed = store.lead(1).unwrap().unwrap();
    assert_eq!((lead_missed.phone.as_str(), lead_missed.state.as_str()), (MISSED, "dialing"), "the race is on");
    // The campaign's call goes unanswered: the callback is still owed. It is dialed at
    // its promised time, in the callback class, and done with that call's outcome.
    hang_up(&fake, &call_to(MISSED), None);
    let owed = || async { store.lead(1).unwrap().unwrap().state == "pending" };
    eventually("the lead waits for its callback", secs(10), owed).await;
    cg.settle().await;
    assert_eq!(cg.callback(cb_missed).await["state"], "dialing", "not dialed before the promised time");
    assert_eq!(placed_to(MISSED)().await, 1, "not dialed before the promised time");
    clock.set(missed["due_at_ms"].as_u64().unwrap());
    let done = || async { cg.callback(cb_missed).await["state"] == "done" };
    assert!(holds_within(secs(10), done).await, "the callback was never dialed: {}", cg.callback(cb_missed).await);
    let cb = cg.callback(cb_missed).await;
    assert_eq!(cb["outcome"], "completed", "{cb}");
    let attempts = store.attempts_of(1).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!((attempts[0].outcome.as_deref(), attempts[0].callback_id), (Some("no_answer"), None));
    assert_eq!((attempts[1].class.as_str(), attempts[1].callback_id), ("callback", Some(cb_missed)));
    assert!(attempts[1].placed_at >= missed["due_at_ms"].as_u64().unwrap(), "not before the promised time");
    assert_eq!(store.lead(1).unwrap().unwrap().state, "done");

    // 2. The campaign calls REACHED (imported now); REACHED calls in, overflows, is promised a callback
    //    that the dialer takes; then the campaign's call is answered and talks: the caller
    //    has been called back. The callback is done with that outcome; no second call.
    import(&cg, "renewals", json!({ "leads": [ { "phone": REACHED } ] })).await;
    let reached_calls = placed_to(REACHED);
    assert!(holds_within(secs(10), || async { reached_calls().await == 1 }).await, "the campaign called REACHED");
    let cb_reached = cg.book_callback("in-2", REACHED).await;
    assert!(holds_within(secs(5), || async { cg.callback(cb_reached).await["state"] == "dialing" }).await);
    assert_eq!(store.lead(2).unwrap().unwrap().state, "dialing", "the race is on");
    // The caller picks up after asking (the talk, 20 ms, begins after the booking).
    clock.advance(100);
    hang_up(&fake, &call_to(REACHED), Some(20));
    let done = || async { cg.callback(cb_reached).await["state"] == "done" };
    assert!(holds_within(secs(10), done).await, "the callback stayed: {}", cg.callback(cb_reached).await);
    assert_eq!(cg.callback(cb_reached).await["outcome"], "completed");
    cg.finished("renewals", 10).await;
    // Past its promised time, once the pacing loop has looked and found nothing to dial:
    // nothing is being dialed (a call placed since would show in the fake).
    clock.advance(2_500);
    cg.settle().await;
    assert_eq!(cg.campaign("renewals").await["live"], 0, "nothing is being dialed");
    assert_eq!(reached_calls().await, 1, "a caller reached after asking is not called again");
    let lead = store.lead(2).unwrap().unwrap();
    assert_eq!((lead.state.as_str(), lead.warm, lead.callback_id), ("done", false, Some(cb_reached)));
    let (_, dialing) = cg.get("/v1/callbacks?state=dialing").await;
    assert_eq!(dialing, json!([]), "no callback is left in `dialing`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_caps_a_campaign_while_it_is_active() {
    // The campaign may have 5 calls live; the schedule, active all day, allows 1.
    let schedule = "start = true\nmax_concurrency = 5\ncalls_per_second = 500\n\
                    [[schedules]]\nname = \"all-day\"\nstart = \"00:00\"\nend = \"24:00\"\n\
                    campaigns = { sim = { max_concurrency = 1 } }\n";
    let mut cg = TestServer::start(&sim_config(schedule)).await;
    cg.token = Some("admin-token".into());
    let (_, list) = cg.get("/v1/schedules").await;
    assert_eq!(list[0]["active"], true, "in force from the start: {list}");
    import(&cg, "sim", leads(20, 617)).await;
    // However often it is looked at while it dials, never more than one call is live.
    let over = holds_within(secs(5), || async { cg.campaign("sim").await["live"].as_u64().unwrap() > 1 }).await;
    assert!(!over, "the schedule's cap of 1 holds");
    let v = cg.finished("sim", 20).await;
    assert_eq!(v["leads"]["total"], 20);
}
