//! Call records and callbacks on PostgreSQL behave as the SQLite store's: one callback
//! per provider call, a callback only moves forward, a call record merges what each
//! webhook taught in any order, telemetry reads back as written, lists are bounded.

mod support;

use callgate_backend::records::{
    CallTelemetry, CallUpdate, CallbackQuery, CallbackState, CallbackUpdate, CostItem, NewCallback, Record, Records,
    TurnLatency,
};
use callgate_store_postgres::{Pg, PgRecords, Settings};
use support::TestDb;

fn callback(call_id: &str, flow: &str, due_at: u64) -> Record {
    Record::Callback(NewCallback {
        provider: "vapi".into(),
        call_id: call_id.into(),
        number: "+15550000001".into(),
        flow: flow.into(),
        booked_at: 1,
        due_at,
    })
}

fn query(state: Option<&str>, flow: Option<&str>, limit: usize) -> CallbackQuery {
    CallbackQuery { state: state.map(Into::into), flow: flow.map(Into::into), limit }
}

#[tokio::test]
async fn callbacks_are_booked_once_per_call_and_only_move_forward() {
    let db = TestDb::new("records");
    let s = PgRecords::open(&Pg::open(&db.url, Settings::default()).expect("open"));
    s.record(vec![callback("c1", "in", 300), callback("c2", "sales", 100), callback("c1", "in", 50)])
        .await
        .expect("write");
    let all = s.callbacks(&query(None, None, 10)).expect("read");
    assert_eq!(
        all.iter().map(|c| (c.call_id.as_str(), c.due_at)).collect::<Vec<_>>(),
        [("c2", 100), ("c1", 300)],
        "soonest first, booked once"
    );
    assert_eq!(s.callbacks(&query(None, Some("in"), 10)).expect("read").len(), 1);
    assert_eq!(s.callbacks(&query(None, None, 1)).expect("read").len(), 1);
    let c1 = all[1].id;
    let state = |state, outcome: Option<&str>, at| {
        Record::CallbackState(CallbackUpdate { id: c1, state, outcome: outcome.map(Into::into), at })
    };
    s.record(vec![state(CallbackState::Done, Some("completed"), 10)]).await.expect("write");
    // A late "dialing" (a repeated take after a restart) does not undo "done".
    s.record(vec![state(CallbackState::Dialing, None, 11)]).await.expect("write");
    let done = s.callbacks(&query(Some("done"), None, 10)).expect("read");
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].outcome.as_deref(), done[0].updated_at), (Some("completed"), Some(10)));
    assert_eq!(s.callbacks(&query(Some("booked"), None, 10)).expect("read").len(), 1);
}

#[tokio::test]
async fn a_call_record_merges_every_update_and_keeps_its_telemetry() {
    let db = TestDb::new("records");
    let s = PgRecords::open(&Pg::open(&db.url, Settings::default()).expect("open"));
    let telemetry = CallTelemetry {
        turns: vec![TurnLatency { model_ms: Some(400.0), turn_ms: Some(900.5), ..TurnLatency::default() }],
        average: TurnLatency { model_ms: Some(400.0), ..TurnLatency::default() },
        user_interrupted: Some(2),
        costs: vec![CostItem { component: "model".into(), usd: 0.0123 }],
        concurrency: Some(7),
        ..CallTelemetry::default()
    };
    // The end-of-call report before the status update that says how it started.
    let report = CallUpdate {
        provider: "vapi".into(),
        call_id: "c1".into(),
        ended_at: Some(90),
        ended_reason: Some("customer-ended-call".into()),
        cost: Some(0.25),
        telemetry: Some(Box::new(telemetry.clone())),
        at: 100,
        ..CallUpdate::default()
    };
    let started = CallUpdate {
        provider: "vapi".into(),
        call_id: "c1".into(),
        flow: Some("in".into()),
        outcome: Some("granted".into()),
        started_at: Some(10),
        cost: Some(f64::NAN),
        at: 120,
        ..CallUpdate::default()
    };
    s.record(vec![Record::Call(report)]).await.expect("write");
    s.record(vec![Record::Call(started)]).await.expect("write");
    s.record(vec![Record::Call(CallUpdate {
        provider: "vapi".into(),
        call_id: "c0".into(),
        at: 50,
        ..CallUpdate::default()
    })])
    .await
    .expect("write");
    let call = s.call("vapi", "c1").expect("read").expect("stored");
    assert_eq!(
        (call.flow.as_deref(), call.outcome.as_deref(), call.started_at, call.ended_at, call.cost, call.at),
        (Some("in"), Some("granted"), Some(10), Some(90), Some(0.25), 120),
        "every update merged; a cost that is not a number is ignored"
    );
    assert_eq!(call.telemetry.as_deref(), Some(&telemetry));
    assert_eq!(
        s.calls(10).expect("read").iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        ["c1", "c0"],
        "latest first"
    );
    assert_eq!(s.calls(1).expect("read").len(), 1);
    assert_eq!(s.call("vapi", "nope").expect("read"), None);
}

#[tokio::test]
async fn writes_handed_over_together_commit_together_in_the_order_of_the_calls() {
    let db = TestDb::new("records");
    let s = PgRecords::open(&Pg::open(&db.url, Settings::default()).expect("open"));
    // None awaited before the next is made: they ride in the same commits, in call order.
    let book = s.record(vec![callback("c1", "in", 10)]);
    let done = s.record(vec![Record::CallbackState(CallbackUpdate {
        id: 1, // the first callback of a new database
        state: CallbackState::Done,
        outcome: Some("completed".into()),
        at: 20,
    })]);
    let update = |outcome: &str, at| {
        Record::Call(CallUpdate {
            provider: "vapi".into(),
            call_id: "c1".into(),
            outcome: Some(outcome.into()),
            at,
            ..CallUpdate::default()
        })
    };
    let calls: Vec<_> =
        (0..100).map(|i| s.record(vec![update(if i < 99 { "queued" } else { "granted" }, 100 + i)])).collect();
    book.await.expect("booked");
    done.await.expect("moved");
    for c in calls {
        c.await.expect("merged");
    }
    let cb = s.callbacks(&query(None, None, 10)).expect("read");
    assert_eq!((cb.len(), cb[0].state.as_str()), (1, "done"), "the state change came after the booking");
    let call = s.call("vapi", "c1").expect("read").expect("stored");
    assert_eq!((call.outcome.as_deref(), call.at), (Some("granted"), 199), "the last update is the last applied");
}
