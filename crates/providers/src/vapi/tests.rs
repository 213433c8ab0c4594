use super::message::{parse, CallInfo, MessageError, VapiMessage};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn an_assistant_request_names_the_call_the_caller_and_the_number() {
    let body = json!({ "message": {
        "type": "assistant-request",
        "call": { "id": "call-1", "customer": { "number": "+15551230000" } },
        "phoneNumber": { "id": "pn", "number": "+15550001111" },
        "customer": { "number": "+15551230000" },
        "unknownField": [1, 2, 3],
    }});
    assert_eq!(
        parse(body.to_string().as_bytes()),
        Ok(VapiMessage::AssistantRequest(CallInfo {
            id: "call-1".into(),
            customer: Some("+15551230000".into()),
            number: Some("+15550001111".into()),
        }))
    );
}

#[test]
fn an_end_of_call_report_carries_its_facts_and_odd_fields_read_as_absent() {
    let body = json!({ "message": {
        "type": "end-of-call-report",
        "call": { "id": "call-1" },
        "endedReason": "customer-ended-call",
        "cost": 0.25,
        "startedAt": "2026-11-28T10:00:00.000Z",
        "endedAt": "2026-11-28T10:02:30.500Z",
    }});
    let VapiMessage::EndOfCallReport { ended_reason, cost, started_at, ended_at, .. } =
        parse(body.to_string().as_bytes()).unwrap()
    else {
        panic!("not a report")
    };
    assert_eq!(ended_reason.as_deref(), Some("customer-ended-call"));
    assert_eq!(cost, Some(0.25));
    assert_eq!(ended_at.unwrap() - started_at.unwrap(), 150_500);
    let odd =
        json!({ "message": { "type": "end-of-call-report", "call": { "id": "c" }, "cost": "free", "startedAt": 7 } });
    let VapiMessage::EndOfCallReport { cost, started_at, .. } = parse(odd.to_string().as_bytes()).unwrap() else {
        panic!("not a report")
    };
    assert_eq!((cost, started_at), (None, None));
}

#[test]
fn malformed_bodies_say_what_is_missing() {
    assert!(matches!(parse(b"{"), Err(MessageError::NotJson(_))));
    assert_eq!(parse(b"[]"), Err(MessageError::NoMessage));
    assert_eq!(parse(br#"{"message": "hi"}"#), Err(MessageError::NoMessage));
    assert_eq!(parse(br#"{"message": {"type": 3}}"#), Err(MessageError::NoType));
    assert_eq!(
        parse(br#"{"message": {"type": "status-update", "status": "ended"}}"#),
        Err(MessageError::NoCallId("status-update"))
    );
    let long = "x".repeat(300);
    let body = json!({ "message": { "type": "assistant-request", "call": { "id": long } } });
    assert_eq!(parse(body.to_string().as_bytes()), Err(MessageError::NoCallId("assistant-request")));
    assert_eq!(
        parse(br#"{"message": {"type": "transcript"}}"#),
        Ok(VapiMessage::Other { kind: "transcript".into(), number: None })
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("assistant-request"),
            Just("status-update"),
            Just("end-of-call-report"),
            Just("ended"),
            Just("2026-11-28T10:00:00Z")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("message".to_owned()),
                    Just("type".to_owned()),
                    Just("call".to_owned()),
                    Just("id".to_owned()),
                    Just("status".to_owned()),
                    Just("cost".to_owned()),
                    Just("startedAt".to_owned()),
                    Just("phoneNumber".to_owned()),
                    Just("number".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(4000)))]

    /// Any bytes: a message or a reason why not, never a panic.
    #[test]
    fn any_bytes_parse_or_are_refused(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&body);
    }

    /// JSON shaped like Vapi's, with every field in every wrong place and type.
    #[test]
    fn any_json_parses_or_is_refused(v in json_value()) {
        let _ = parse(v.to_string().as_bytes());
        let wrapped = json!({ "message": v });
        let _ = parse(wrapped.to_string().as_bytes());
    }
}

#[test]
fn opt_outs_are_read_from_tool_calls_analysis_structured_outputs_and_ended_reasons() {
    use super::message::{opt_out, OptOutNames};
    let reasons = vec!["customer-opted-out".to_string()];
    let names = OptOutNames { tool: Some("opt_out"), structured: Some("opt_out"), ended_reasons: &reasons };
    let body = |m: serde_json::Value| serde_json::to_vec(&serde_json::json!({ "message": m })).unwrap();
    let tool = body(serde_json::json!({
        "type": "tool-calls",
        "call": { "id": "call-1", "customer": { "number": "+13125550177" } },
        "toolCallList": [
            { "id": "tc-1", "type": "function", "function": { "name": "lookup", "arguments": "{}" } },
            { "id": "tc-2", "type": "function", "function": { "name": "opt_out", "arguments": "{}" } }
        ]
    }));
    let o = opt_out(&tool, names).unwrap();
    assert_eq!((o.call_id.as_deref(), o.number.as_deref()), (Some("call-1"), Some("+13125550177")));
    let tc2 = super::message::ToolCallRef { id: "tc-2".into(), name: "opt_out".into() };
    assert_eq!(o.tool_calls, [tc2]);
    let nested = body(serde_json::json!({
        "type": "tool-calls",
        "call": { "id": "call-1" },
        "toolWithToolCallList": [{ "type": "function", "function": { "name": "opt_out" },
            "toolCall": { "id": "tc-9", "type": "function", "function": { "name": "opt_out", "arguments": "{}" } } }]
    }));
    let ids: Vec<String> = opt_out(&nested, names).unwrap().tool_calls.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["tc-9"]);
    let report = |extra: serde_json::Value| {
        let mut m = serde_json::json!({ "type": "end-of-call-report", "endedReason": "customer-ended-call",
            "call": { "id": "call-2" }, "customer": { "number": "+13125550178" } });
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body(m)
    };
    assert!(opt_out(&report(serde_json::json!({})), names).is_none());
    let analysed = report(serde_json::json!({ "analysis": { "structuredData": { "opt_out": true } } }));
    assert_eq!(opt_out(&analysed, names).unwrap().why, "structured:opt_out");
    let not = report(serde_json::json!({ "analysis": { "structuredData": { "opt_out": "yes" } } }));
    assert!(opt_out(&not, names).is_none(), "only `true` opts out");
    let outputs = report(serde_json::json!({ "artifact": { "structuredOutputs": {
        "5f0c": { "name": "opt_out", "result": true } } } }));
    assert_eq!(opt_out(&outputs, names).unwrap().number.as_deref(), Some("+13125550178"));
    let ended = report(serde_json::json!({ "endedReason": "customer-opted-out" }));
    assert_eq!(opt_out(&ended, names).unwrap().why, "endedReason:customer-opted-out");
    assert!(opt_out(&tool, OptOutNames::default()).is_none(), "nothing is an opt-out unless named");
}
