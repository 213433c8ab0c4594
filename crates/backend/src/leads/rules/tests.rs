use super::*;
use crate::leads::{AttemptEnd, CallbackLead, NewLead, PendingLead};
use crate::ErrorKind;

fn lead(phone: &str) -> NewLead {
    NewLead { phone: phone.into(), name: None, timezone: "UTC".into(), score: 0.0, vars: None }
}

fn callback(id: u64, booked_at: u64, due_at: u64) -> CallbackLead {
    CallbackLead {
        callback_id: id,
        phone: "+15550000001".into(),
        timezone: "UTC".into(),
        class: "callback".into(),
        booked_at,
        due_at,
    }
}

fn pending(attempts: u32, next_at: u64) -> Standing {
    Standing { attempts, next_at, ..Standing::imported() }
}

fn in_state(state: &str) -> Standing {
    Standing { state: state.into(), attempts: 1, ..Standing::imported() }
}

fn end_of(outcome: &str, lead_state: &str, ended_at: u64, talk_ms: Option<u64>) -> AttemptEnd {
    AttemptEnd {
        id: 1,
        outcome: outcome.into(),
        reason: None,
        ended_at,
        talk_ms,
        cost: None,
        lead_state: lead_state.into(),
        next_at: 5_000,
    }
}

#[test]
fn an_import_skips_numbers_the_campaign_has_and_repeats_within_the_batch() {
    let leads = [lead("+1"), lead("+2"), lead("+1"), lead("+3")];
    let added = dedupe(&leads, |p| Ok::<_, ()>(p == "+3")).unwrap();
    assert_eq!(added, [true, true, false, false]);
    let failed = dedupe(&leads, |_| Err("disk"));
    assert_eq!(failed, Err("disk"), "a failed look-up fails the import, it does not add blindly");
}

#[test]
fn only_the_lead_as_read_is_claimed_and_a_claimed_lead_is_not_claimed_again() {
    let cold = pending(0, 0);
    assert!(as_read(&cold, None));
    assert!(!as_read(&cold, Some(7)), "the dialer read a callback the lead does not return");
    let claimed = begin(&cold, 1);
    assert_eq!((claimed.state.as_str(), claimed.attempts), (DIALING, 1));
    assert!(!as_read(&claimed, None), "a lead handed out for dialing is not handed out twice");
    let warm = take_callback(Some(&cold), &callback(7, 100, 200));
    assert!(as_read(&warm, Some(7)));
    assert!(!as_read(&warm, None), "a callback taken since the read: stale");
    assert!(!as_read(&Standing { warm: false, ..warm.clone() }, Some(7)), "a cold lead returns no callback");
}

#[test]
fn a_callback_makes_a_lead_warm_and_due_at_the_promised_time() {
    let new = take_callback(None, &callback(7, 100, 200));
    assert_eq!(
        new,
        Standing {
            state: PENDING.into(),
            warm: true,
            class: Some("callback".into()),
            callback_id: Some(7),
            attempts: 0,
            next_at: 200
        }
    );
    // A finished lead is owed a call again, with a fresh count.
    let done = take_callback(Some(&in_state(DONE)), &callback(8, 100, 300));
    assert_eq!((done.state.as_str(), done.attempts, done.next_at, done.warm), (PENDING, 0, 300, true));
    // A second callback for a pending warm lead keeps the earlier promise.
    assert_eq!(take_callback(Some(&new), &callback(9, 150, 500)).next_at, 200);
    assert_eq!(take_callback(Some(&new), &callback(9, 150, 150)).next_at, 150);
    // A cold pending lead takes the promised time even if it was due sooner.
    assert_eq!(take_callback(Some(&pending(2, 10)), &callback(9, 150, 500)).next_at, 500);
    // A lead with an attempt out keeps its state and count: the attempt's end decides.
    for state in [DIALING, IN_CALL] {
        let out = take_callback(Some(&in_state(state)), &callback(10, 100, 400));
        assert_eq!((out.state.as_str(), out.attempts, out.warm, out.returns()), (state, 1, true, Some(10)));
    }
}

#[test]
fn an_answer_puts_a_dialed_lead_on_the_phone_and_nothing_else() {
    assert_eq!(answered(DIALING), IN_CALL);
    for state in [PENDING, IN_CALL, DONE, FAILED, EXHAUSTED] {
        assert_eq!(answered(state), state);
    }
}

#[test]
fn a_refusal_does_not_count_and_a_callback_taken_meanwhile_keeps_its_time() {
    let out = refused(&begin(&pending(2, 0), 3), None, 900);
    assert_eq!((out.state.as_str(), out.attempts, out.next_at), (PENDING, 2, 900));
    let raced = take_callback(Some(&begin(&pending(2, 0), 3)), &callback(7, 100, 700));
    let out = refused(&raced, None, 900);
    assert_eq!((out.state.as_str(), out.attempts, out.next_at, out.warm), (PENDING, 0, 700, true));
    // The callback's own attempt refused: uncounted, due again at `next_at`.
    let own = begin(&take_callback(None, &callback(7, 100, 700)), 1);
    let out = refused(&own, Some(7), 900);
    assert_eq!((out.attempts, out.next_at, out.returns()), (0, 900, Some(7)));
}

#[test]
fn an_end_moves_the_lead_as_asked_and_settles_its_callbacks_once_through() {
    let cold = begin(&pending(0, 0), 1);
    let e = end(&cold, Dialed::default(), &end_of("busy", PENDING, 1_000, None), None);
    assert_eq!((e.standing.state.as_str(), e.standing.next_at, e.settle), (PENDING, 5_000, None));
    let own = begin(&take_callback(None, &callback(7, 100, 200)), 1);
    let dialed = Dialed { callback_id: Some(7), answered_at: None };
    let again = end(&own, dialed, &end_of("no_answer", PENDING, 1_000, None), Some(100));
    assert!(again.standing.warm && again.settle.is_none(), "retried as the callback: {again:?}");
    let through = end(&own, dialed, &end_of("no_answer", EXHAUSTED, 1_000, None), Some(100));
    assert_eq!(through.settle.as_deref(), Some("no_answer"));
    assert!(!through.standing.warm, "a finished lead is cold");
    let answer = ended(&through.standing, vec![(7, "no_answer".into())]);
    assert!(answer.applied && answer.lead_state == EXHAUSTED && answer.callbacks_done.len() == 1);
}

#[test]
fn a_callback_taken_while_an_attempt_was_out_is_settled_only_by_reaching_the_lead_after_the_booking() {
    let raced = take_callback(Some(&begin(&pending(0, 0), 1)), &callback(7, 500, 800));
    let campaign = Dialed::default();
    // Talk began at 550 ≥ 500: called back.
    let e = end(&raced, campaign, &end_of(COMPLETED, DONE, 600, Some(50)), Some(500));
    assert_eq!((e.standing.state.as_str(), e.settle.as_deref(), e.standing.warm), (DONE, Some(COMPLETED), false));
    // Answered at 490, before the caller asked (someone else on the line): still owed.
    let early = Dialed { callback_id: None, answered_at: Some(490) };
    let e = end(&raced, early, &end_of(COMPLETED, DONE, 700, Some(150)), Some(500));
    assert_eq!((e.standing.state.as_str(), e.standing.next_at, e.standing.attempts), (PENDING, 800, 0));
    assert!(e.standing.warm && e.settle.is_none());
    // Not reached: owed, whatever the campaign's retry policy said.
    let e = end(&raced, campaign, &end_of("busy", EXHAUSTED, 700, None), Some(500));
    assert_eq!((e.standing.state.as_str(), e.settle), (PENDING, None));
    // An invalid number settles it: it cannot be called.
    let e = end(&raced, campaign, &end_of(INVALID, FAILED, 700, None), Some(500));
    assert_eq!((e.standing.state.as_str(), e.settle.as_deref()), (FAILED, Some(INVALID)));
    // An unknown booking time is never "after": owed.
    let e = end(&raced, campaign, &end_of(COMPLETED, DONE, 700, Some(50)), None);
    assert_eq!(e.standing.state, PENDING);
}

#[test]
fn an_end_may_only_move_a_lead_to_pending_or_through() {
    for state in [PENDING, DONE, FAILED, EXHAUSTED] {
        assert!(check_end(&end_of("busy", state, 1, None)).is_ok());
    }
    for state in [DIALING, IN_CALL, "", "nonsense"] {
        let err = check_end(&end_of("busy", state, 1, None)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid, "{state}: {err}");
    }
}

#[test]
fn due_leads_come_warm_first_then_by_score_attempts_and_age() {
    let p =
        |id, warm, score, attempts, next_at| PendingLead { id, timezone: "UTC".into(), score, attempts, warm, next_at };
    let leads = vec![
        p(1, false, 1.0, 0, 0),
        p(2, false, 5.0, 0, 0),
        p(3, true, 0.0, 2, 100),
        p(4, false, 5.0, 1, 0),
        p(5, false, 5.0, 0, 0),
        p(6, true, 9.0, 0, 2_000),
    ];
    let ids = |v: Vec<PendingLead>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(due(leads.clone(), 1_000, 10)), [3, 2, 5, 4, 1], "lead 6 is not due before 2000");
    assert_eq!(ids(due(leads.clone(), 2_000, 2)), [6, 3]);
    assert!(due(leads, 1_000, 0).is_empty());
}

#[test]
fn counts_show_finished_outcomes_and_leave_refusals_and_calls_in_progress_out_of_the_rate() {
    let g = |state: &str, outcome: Option<&str>, recent, leads| LeadGroup {
        state: state.into(),
        last_outcome: outcome.map(Into::into),
        recent,
        leads,
    };
    let a = |state: &str, outcome: Option<&str>, answered, recent, attempts, talk_ms| AttemptGroup {
        state: state.into(),
        outcome: outcome.map(Into::into),
        answered,
        recent,
        attempts,
        talk_ms,
        cost: 0.5 * attempts as f64,
    };
    let counts = tally(
        [
            g(PENDING, Some("busy"), true, 3),
            g(PENDING, None, false, 2),
            g(DONE, Some(COMPLETED), true, 4),
            g(DONE, Some(COMPLETED), false, 1),
            g(EXHAUSTED, Some("no_answer"), false, 2),
        ],
        [
            a(ATTEMPT_ENDED, Some(COMPLETED), true, true, 5, 500),
            a(ATTEMPT_ENDED, Some("busy"), false, false, 2, 0),
            a(ATTEMPT_ENDED, Some(REFUSED), false, true, 3, 0),
            a(ATTEMPT_ENDED, Some(INTERRUPTED), true, false, 1, 0),
            a(ATTEMPT_LIVE, None, true, true, 1, 0),
        ],
    );
    assert_eq!(
        counts.leads,
        [
            (DONE.to_string(), Some(COMPLETED.to_string()), 5),
            (EXHAUSTED.to_string(), Some("no_answer".to_string()), 2),
            (PENDING.to_string(), None, 5),
        ],
        "a pending lead shows no outcome; groups of the same state and outcome add up"
    );
    assert_eq!(counts.finished_recent, 4);
    assert_eq!((counts.attempts, counts.recent, counts.refused), (9, 6, 3));
    assert_eq!((counts.ended, counts.answered), (7, 5), "interrupted, refused and live calls are out of the rate");
    assert_eq!(counts.talk_ms, 500);
    assert!((counts.cost - 6.0).abs() < 1e-9);
}
