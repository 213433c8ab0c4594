use super::form::Params;
use super::signature::{signature, verify};
use super::twiml::{esc, Dialed, Twiml, Verb};
use proptest::prelude::*;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Twilio's worked example of the signature, published in its security documentation and
/// checked by its helper libraries' own tests (e.g. twilio/twilio-php,
/// `RequestValidatorTest`): auth token `12345`, this URL and these parameters.
const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const DOC_TOKEN: &str = "12345";
const DOC_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

fn doc_params() -> Vec<(String, String)> {
    // Deliberately not in alphabetical order: the signature sorts them.
    pairs(&[
        ("To", "+18005551212"),
        ("CallSid", "CA1234567890ABCDE"),
        ("From", "+14158675309"),
        ("Digits", "1234"),
        ("Caller", "+14158675309"),
    ])
}

#[test]
fn the_signature_matches_twilios_documented_example() {
    assert_eq!(signature(DOC_TOKEN, DOC_URL, &doc_params()), DOC_SIGNATURE);
    assert!(verify(DOC_TOKEN, DOC_URL, &doc_params(), Some(DOC_SIGNATURE.as_bytes())));
}

#[test]
fn a_repeated_parameter_is_signed_once_per_distinct_value_in_order() {
    // The same library test: `Digits` sent three times, twice with the same value.
    let params =
        pairs(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]);
    assert_eq!(signature(DOC_TOKEN, DOC_URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
}

#[test]
fn the_default_port_may_or_may_not_be_part_of_the_signed_url() {
    // Twilio's libraries: a URL with a port validates a signature made without it, and
    // one without a port validates a signature made with the scheme's default port.
    let with_port = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert!(verify(DOC_TOKEN, with_port, &doc_params(), Some(DOC_SIGNATURE.as_bytes())));
    let signed_with_443 = signature(DOC_TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &doc_params());
    assert!(verify(DOC_TOKEN, DOC_URL, &doc_params(), Some(signed_with_443.as_bytes())));
}

#[test]
fn any_change_breaks_the_signature() {
    let good = Some(DOC_SIGNATURE.as_bytes());
    assert!(!verify("54321", DOC_URL, &doc_params(), good), "another token");
    assert!(!verify(DOC_TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", &doc_params(), good), "another URL");
    let mut tampered = doc_params();
    tampered[3].1 = "9999".into();
    assert!(!verify(DOC_TOKEN, DOC_URL, &tampered, good), "another value");
    let mut more = doc_params();
    more.push(("Extra".into(), "1".into()));
    assert!(!verify(DOC_TOKEN, DOC_URL, &more, good), "an added parameter");
    assert!(!verify(DOC_TOKEN, DOC_URL, &doc_params(), None), "no signature");
    assert!(!verify(DOC_TOKEN, DOC_URL, &doc_params(), Some(b"")), "an empty signature");
}

#[test]
fn form_bodies_decode_like_twilio_encodes_them() {
    let p = Params::parse(b"CallSid=CA1&From=%2B15551230000&To=+15550001111&Empty=&Caller=a%20b");
    assert_eq!(p.get("From"), Some("+15551230000"));
    assert_eq!(p.get("To"), Some(" 15550001111"), "a literal + is a space in form encoding");
    assert_eq!(p.value("Empty"), None);
    assert_eq!(p.get("Caller"), Some("a b"));
}

fn parse_ok(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not well-formed ({e}):\n{xml}"))
}

#[test]
fn every_verb_renders_as_well_formed_twiml() {
    let nasty = "Tom & Jerry's <\"quoted\"> \u{1} line\u{FFFF}";
    let twiml = Twiml::of(Verb::Say(nasty.into()))
        .push(Verb::Play("https://a.example/x.mp3?a=1&b=2".into()))
        .push(Verb::Pause(2))
        .push(Verb::Enqueue {
            name: nasty.into(),
            wait_url: "https://x/w?a=1&b=2".into(),
            action: "https://x/q?t=T1".into(),
        })
        .push(Verb::Gather {
            action: "https://x/g?step=0&menu=m".into(),
            timeout: 5,
            prompt: vec![Verb::Say(nasty.into())],
        })
        .push(Verb::Redirect("https://x/o?step=1&flow=a+b".into()))
        .push(Verb::Dial { to: Dialed::Number("+15550001111".into()), action: Some("https://x/d?a&b".into()) })
        .push(Verb::Dial { to: Dialed::Sip("sip:a@b.example;transport=tls".into()), action: None })
        .push(Verb::Stream { url: "wss://w.example/s?x=1&y=2".into(), parameters: vec![("lease".into(), "L1".into())] })
        .push(Verb::Record { action: "https://x/v?flow=a".into(), max_length: 120 })
        .push(Verb::Leave)
        .push(Verb::Reject { busy: true })
        .push(Verb::Hangup);
    let xml = twiml.render();
    let doc = parse_ok(&xml);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Response");
    let names: Vec<&str> = root.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
    assert_eq!(
        names,
        [
            "Say", "Play", "Pause", "Enqueue", "Gather", "Redirect", "Dial", "Dial", "Connect", "Record", "Leave",
            "Reject", "Hangup"
        ]
    );
    let say = root.children().find(|n| n.has_tag_name("Say")).unwrap();
    assert_eq!(say.text(), Some("Tom & Jerry's <\"quoted\">  line"), "escaped, control characters dropped");
    let enqueue = root.children().find(|n| n.has_tag_name("Enqueue")).unwrap();
    assert_eq!(enqueue.attribute("waitUrl"), Some("https://x/w?a=1&b=2"));
    assert_eq!(twiml.verbs().len(), 13);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(4000)))]

    /// Any text at all, from the configuration or a caller, makes well-formed XML.
    #[test]
    fn any_text_makes_well_formed_twiml(text in "\\PC*", raw in proptest::collection::vec(any::<char>(), 0..40)) {
        let raw: String = raw.into_iter().collect();
        let twiml = Twiml::of(Verb::Say(text.clone())).push(Verb::Play(raw.clone())).push(Verb::Redirect(raw.clone()));
        let xml = twiml.render();
        let doc = roxmltree::Document::parse(&xml);
        prop_assert!(doc.is_ok(), "{:?}\n{}", doc.err(), xml);
        prop_assert!(!esc(&raw).contains('<'));
    }

    /// The form parser takes any bytes without panicking, and the signature check says
    /// no to a made-up signature.
    #[test]
    fn any_form_body_parses_and_fails_a_made_up_signature(body in proptest::collection::vec(any::<u8>(), 0..300), sig in "[A-Za-z0-9+/=]{0,40}") {
        let p = Params::parse(&body);
        let _ = p.value("CallSid");
        let genuine = signature("token", "https://cg.example/webhooks/twilio/t/voice", p.pairs());
        prop_assume!(sig != genuine);
        prop_assert!(!verify("token", "https://cg.example/webhooks/twilio/t/voice", p.pairs(), Some(sig.as_bytes())));
    }

    /// Odd URLs (IPv6 hosts, credentials, no path) never panic the port handling.
    #[test]
    fn any_url_verifies_without_panicking(url in "(https?://)?[\\[\\]a-z0-9:@./?&=-]{0,40}") {
        let s = signature("t", &url, &[]);
        prop_assert!(verify("t", &url, &[], Some(s.as_bytes())));
    }
}

/// Vectors computed with the official `twilio` package's RequestValidator
/// (crates/server/tests/fixtures/twilio_signatures.py): classic and SharedKey signatures, URLs signed
/// with and without the default port, repeated parameters.
#[test]
fn signatures_match_twilios_own_request_validator() {
    use super::signature::{verify_with, Algorithm};
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../../../server/tests/fixtures/twilio_signatures.json")).unwrap();
    let vectors = fixture["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 9);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let url = v["url"].as_str().unwrap();
        let params: Vec<(String, String)> = v["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
            .collect();
        let sig = v["signature"].as_str().unwrap().as_bytes();
        let algorithm = Algorithm::from_settings(v["settings"].as_str().map(str::as_bytes)).unwrap();
        assert!(verify_with(algorithm, token, url, &params, Some(sig)), "{name}");
        let other = if algorithm == Algorithm::Sha1 { Algorithm::Sha256 } else { Algorithm::Sha1 };
        assert!(!verify_with(other, token, url, &params, Some(sig)), "{name}: the other scheme");
        assert!(!verify_with(algorithm, &format!("{token}x"), url, &params, Some(sig)), "{name}: another key");
    }
}

#[test]
fn the_settings_header_names_the_algorithm() {
    use super::signature::Algorithm;
    assert_eq!(Algorithm::from_settings(None), Some(Algorithm::Sha1));
    assert_eq!(Algorithm::from_settings(Some(b"key=k1,algorithm=HMAC_SHA256")), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::from_settings(Some(b" algorithm = hmac_sha256 , key=k")), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::from_settings(Some(b"key=k1")), Some(Algorithm::Sha1));
    assert_eq!(Algorithm::from_settings(Some(b"algorithm=HMAC_SHA512")), None, "unknown: refused");
    assert_eq!(Algorithm::from_settings(Some(b"\xff")), None);
}
