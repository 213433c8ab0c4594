//! Fuzz targets: one function per parser that reads outside input, each checking that
//! parser's invariant and panicking when it does not hold.
//!
//! The same functions run in two places: coverage-guided and for as long as one likes
//! under `cargo fuzz` (`fuzz/`, `scripts/fuzz`), and on stable in the ordinary test run,
//! which replays each target's committed corpus (`fuzz/corpus/<target>/`) plus a bounded
//! number of cheap mutations of it (`crates/server/tests/fuzz_corpus.rs`). The invariant of
//! every target: no panic, and the input either parses into a value that keeps the limits
//! the rest of the server relies on, or is refused with a typed error. A panic here is a
//! finding: keep the input that caused it in the corpus once it is fixed.
//!
//! The TOML configuration's target lives with the config (`callgate_config::fuzz`).

use crate::edges::api::acquire::{answer_response, AcquireBody};
use crate::governor::Answer;
use crate::inbound::MAX_CALL_ID;
use crate::views::{LeaseView, PoolUnitsView};
use callgate_dialer::import::{self, ImportContext, Parsed};
use callgate_providers::twilio::{form::Params, signature};
use callgate_providers::vapi::message::{self, VapiMessage};
use serde_json::value::RawValue;
use serde_json::Value;

/// `POST /v1/acquire`'s body: JSON into a request, and a granted request's lease (its
/// `meta` included) rendered as the answer, which is where a `meta` the parser let in
/// would first break.
pub fn acquire_body(data: &[u8]) {
    if data.iter().all(u8::is_ascii_whitespace) {
        return; // The extractor answers "a JSON body is required" before parsing.
    }
    let Ok(body) = serde_json::from_slice::<AcquireBody>(data) else { return };
    let Ok(req) = body.into_request(&crate::edges::api::Limits::default()) else { return };
    if let Some(key) = &req.key {
        assert!(!key.is_empty() && key.len() <= 256, "an accepted key is 1 to 256 bytes: {}", key.len());
    }
    let meta = req.meta.map(|m| {
        let raw = RawValue::from_string(m).expect("an accepted `meta` is JSON");
        assert!(raw.get().trim_start().starts_with('{'), "an accepted `meta` is an object");
        raw
    });
    let lease = LeaseView {
        id: callgate_core::LeaseId(1),
        key: req.key.map(Into::into),
        class: "inbound".into(),
        flow: None,
        pools: vec![PoolUnitsView { pool: "p".into(), units: 1 }],
        granted_at_ms: 0,
        expires_at_ms: 1,
        meta,
    };
    // The answer the client gets, and the event the journal and the live page get.
    let _ = answer_response(Answer::Granted(lease.clone()));
    serde_json::to_value(&lease).expect("a granted lease renders as JSON");
}

/// A Vapi server-URL message.
pub fn vapi_message(data: &[u8]) {
    match message::parse(data) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(VapiMessage::AssistantRequest(call))
        | Ok(VapiMessage::StatusUpdate { call, .. })
        | Ok(VapiMessage::EndOfCallReport { call, .. }) => {
            assert!(!call.id.is_empty() && call.id.len() <= MAX_CALL_ID, "a call id is 1 to {MAX_CALL_ID} bytes");
            for n in [&call.customer, &call.number].into_iter().flatten() {
                assert!(!n.is_empty() && n.trim() == n, "a number is trimmed and not empty");
            }
        }
        Ok(VapiMessage::Other { kind, .. }) => {
            assert!(kind.chars().count() <= 64, "an unknown type is cut to 64 chars")
        }
    }
    if let Ok(VapiMessage::EndOfCallReport { cost: Some(c), .. }) = message::parse(data) {
        assert!(c.is_finite() && c >= 0.0, "a cost is finite and not negative: {c}");
    }
}

/// A Twilio webhook: the request URL (the input up to the first newline) and the form
/// body (the rest). The form always parses; the signature of what was parsed verifies,
/// a different one does not, and re-encoding the parameters reads back the same.
pub fn twilio_form(data: &[u8]) {
    let (url, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::from("https://example.com/webhooks/twilio/t/voice"), data),
    };
    let params = Params::parse(body);
    let _ = (params.get("CallSid"), params.value("From"));
    let pairs = params.pairs();
    let token = "auth-token";
    for algorithm in [signature::Algorithm::Sha1, signature::Algorithm::Sha256] {
        let sig = signature::signature_with(algorithm, token, &url, pairs);
        let verify = |key: &str, given: Option<&[u8]>| signature::verify_with(algorithm, key, &url, pairs, given);
        assert!(verify(token, Some(sig.as_bytes())), "our own signature verifies");
        assert!(!verify("other-token", Some(sig.as_bytes())), "another token's does not");
        assert!(!verify(token, None), "no signature never verifies");
    }
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        encoded.append_pair(k, v);
    }
    assert_eq!(Params::parse(encoded.finish().as_bytes()).pairs(), pairs, "parameters survive re-encoding");
}

fn context() -> ImportContext {
    ImportContext { default_tz: chrono_tz::UTC, default_region: Some("US".into()), row_offset: 0 }
}

/// What every imported lead keeps, CSV or JSON.
fn check_leads(parsed: &Parsed) {
    for r in &parsed.rows {
        let l = &r.lead;
        let digits = l.phone.strip_prefix('+').expect("a phone is E.164");
        assert!((1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "E.164: {}", l.phone);
        assert!(l.timezone.parse::<chrono_tz::Tz>().is_ok(), "a zone is an IANA name: {}", l.timezone);
        assert!(l.score.is_finite(), "a score is finite");
        assert!(l.name.as_ref().is_none_or(|n| !n.is_empty() && n.len() <= 200), "a name is 1 to 200 bytes");
        if let Some(vars) = &l.vars {
            assert!(vars.len() <= 8 * 1024, "vars are at most 8 KiB");
            let v: Value = serde_json::from_str(vars).expect("vars read back (the dialer parses them)");
            assert!(v.is_object(), "vars are an object");
        }
    }
}

/// True when the CSV text ends inside a quoted field: a quote opened at the start of a
/// field (as the `csv` crate reads it) and never closed.
fn ends_inside_quotes(data: &[u8]) -> bool {
    let (mut quoted, mut at_field_start, mut i) = (false, true, 0);
    while i < data.len() {
        let b = data[i];
        if quoted {
            if b == b'"' {
                if data.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else if b == b'"' && at_field_start {
            quoted = true;
        }
        at_field_start = !quoted && matches!(b, b',' | b'\n' | b'\r');
        i += 1;
    }
    quoted
}

/// A CSV lead upload: [`lead_csv_reads`], and a file that ends inside a quoted field
/// (its rows from that quote on were swallowed) must be reported: a rejected row, or a
/// refusal as a whole.
pub fn lead_csv(data: &[u8]) {
    if let Some(parsed) = lead_csv_reads(data) {
        assert!(
            !ends_inside_quotes(data) || !parsed.rejected.is_empty(),
            "a quote that is never closed swallows the rows after it without a word"
        );
    }
}

/// A CSV lead upload, every invariant but the unclosed-quote rule of [`lead_csv`]:
/// good leads keep their limits and every row number is a line of the file. Returns
/// what was read.
pub fn lead_csv_reads(data: &[u8]) -> Option<Parsed> {
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    match import::parse_csv(data, &context()) {
        Err(e) => {
            assert!(!e.is_empty(), "a refusal says why");
            None
        }
        Ok(parsed) => {
            check_leads(&parsed);
            let rows = parsed.rows.iter().map(|r| r.row).chain(parsed.rejected.iter().map(|r| r.row));
            for row in rows {
                assert!((1..=lines).contains(&row), "row {row} is a line of the file ({lines} lines)");
            }
            Some(parsed)
        }
    }
}

/// A JSON lead upload: every lead of `leads` is a row or a rejected row.
pub fn lead_json(data: &[u8]) {
    match import::parse_json(data, &context()) {
        Err(e) => assert!(!e.is_empty(), "a refusal says why"),
        Ok(parsed) => {
            check_leads(&parsed);
            let leads = serde_json::from_slice::<Value>(data).ok().and_then(|v| v["leads"].as_array().map(Vec::len));
            let n = parsed.rows.len() + parsed.rejected.len();
            assert_eq!(Some(n), leads, "every lead is read or refused, once");
        }
    }
}
