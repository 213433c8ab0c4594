// Long file: the Leads conformance suite, its scripted scenarios and its random histories, which share one vocabulary of helpers.
//! The conformance suite of [`Leads`] stores, run against each store by its own crate's
//! tests (`crates/store/tests/leads_conformance.rs` for SQLite).
//!
//! Two parts:
//! - **scenarios** ([`scenarios`]): scripted stories of a campaign, each step with the
//!   answer a person would predict: campaigns created and updated, imports deduplicated
//!   by phone, due leads in dial order, a lead handed out for dialing once, attempts that
//!   move their lead, retries and due times, terminal states, callbacks taken and
//!   settled, counts, restarts;
//! - **differential** ([`differential`]): random write sequences (with stale reads,
//!   repeated and refused writes, restarts) run against the store and against
//!   [`MemoryLeads`], the rules over plain maps, side by side: every answer and, after
//!   each step, every read must agree.
//!
//! A store's test provides a [`Harness`]: how to open it, how to restart it, and how to
//! wait for a future.

use super::memory::MemoryLeads;
use super::rules::{self, DIALING, DONE, EXHAUSTED, FAILED, IN_CALL, PENDING};
use super::{
    AttemptEnd, AttemptEnded, CallbackLead, LeadOp, LeadOut, LeadRow, Leads, NewAttempt, NewLead, PendingLead,
    StoredCampaign,
};
use crate::conformance::Rng;
use crate::{Error, ErrorKind};
use std::future::Future;

/// How the suite drives one kind of store.
pub trait Harness {
    /// The store under test.
    type Store: Leads;

    /// A store with nothing in it.
    fn open(&mut self) -> Self::Store;

    /// Stops `store` and opens it again on the same data (a restart): what was written
    /// must be back.
    fn restart(&mut self, store: Self::Store) -> Self::Store;

    /// Runs a future to completion.
    fn block_on<F: Future>(&mut self, f: F) -> F::Output;
}

const T0: u64 = 1_800_000_000_000;
const C: &str = "renewals";

fn write<H: Harness>(h: &mut H, s: &H::Store, ops: Vec<LeadOp>) -> Vec<LeadOut> {
    let what = format!("{ops:?}");
    h.block_on(s.write(ops)).unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn one<H: Harness>(h: &mut H, s: &H::Store, op: LeadOp) -> LeadOut {
    write(h, s, vec![op]).remove(0)
}

fn new_lead(phone: &str, score: f64) -> NewLead {
    NewLead { phone: phone.into(), name: None, timezone: "UTC".into(), score, vars: None }
}

fn phone(n: u64) -> String {
    format!("+1555000{n:04}")
}

fn campaign(name: &str, spec: &str, state: &str, at: u64) -> LeadOp {
    LeadOp::PutCampaign { name: name.into(), spec: spec.into(), state: state.into(), source: "api".into(), at }
}

/// Imports `n` leads (scores 0, 1, 2, …) into [`C`]; their ids.
fn import<H: Harness>(h: &mut H, s: &H::Store, n: u64, at: u64) -> Vec<u64> {
    let leads = (0..n).map(|i| new_lead(&phone(i), i as f64)).collect();
    match one(h, s, LeadOp::AddLeads { campaign: C.into(), leads, at }) {
        LeadOut::Added(ids) => ids.into_iter().map(|id| id.expect("a new number is added")).collect(),
        other => panic!("an import answers with ids: {other:?}"),
    }
}

fn attempt(id: u64, lead_id: u64, number: u32, callback_id: Option<u64>, at: u64) -> LeadOp {
    LeadOp::BeginAttempt(NewAttempt {
        id,
        lead_id,
        campaign: C.into(),
        number,
        class: "outbound".into(),
        provider: "sim".into(),
        lease: format!("L{id}"),
        callback_id,
        at,
    })
}

/// Claims `lead` as the dialer read it; the attempt id, or `None` when stale.
fn begin<H: Harness>(h: &mut H, s: &H::Store, lead: u64, callback_id: Option<u64>, at: u64) -> Option<u64> {
    let number = s.lead(lead).expect("read").map_or(1, |l| l.attempts + 1);
    let id = s.next_attempt_id();
    match one(h, s, attempt(id, lead, number, callback_id, at)) {
        LeadOut::Done => Some(id),
        LeadOut::Stale => None,
        other => panic!("a claim answers done or stale: {other:?}"),
    }
}

fn end_op(id: u64, outcome: &str, lead_state: &str, at: u64, talk_ms: Option<u64>, next_at: u64) -> LeadOp {
    LeadOp::EndAttempt(AttemptEnd {
        id,
        outcome: outcome.into(),
        reason: None,
        ended_at: at,
        talk_ms,
        cost: talk_ms.map(|t| t as f64 / 4_000.0),
        lead_state: lead_state.into(),
        next_at,
    })
}

fn end<H: Harness>(h: &mut H, s: &H::Store, id: u64, outcome: &str, lead_state: &str, at: u64) -> AttemptEnded {
    end_with(h, s, end_op(id, outcome, lead_state, at, None, 0))
}

fn end_with<H: Harness>(h: &mut H, s: &H::Store, op: LeadOp) -> AttemptEnded {
    match one(h, s, op) {
        LeadOut::Ended(e) => e,
        other => panic!("an end answers what it did: {other:?}"),
    }
}

fn take<H: Harness>(h: &mut H, s: &H::Store, callback_id: u64, number: &str, booked_at: u64, due_at: u64) -> LeadOut {
    let lead = CallbackLead {
        callback_id,
        phone: number.into(),
        timezone: "UTC".into(),
        class: "callback".into(),
        booked_at,
        due_at,
    };
    one(h, s, LeadOp::AddCallback { campaign: C.into(), lead, at: booked_at + 1 })
}

fn row<H: Harness>(s: &H::Store, id: u64) -> LeadRow {
    s.lead(id).expect("read").unwrap_or_else(|| panic!("lead {id} exists"))
}

fn ids(leads: Vec<PendingLead>) -> Vec<u64> {
    leads.into_iter().map(|l| l.id).collect()
}

/// A named scenario.
pub type Scenario<H> = (&'static str, fn(&mut H));

/// Every scenario, by name.
pub fn scenarios<H: Harness>() -> Vec<Scenario<H>> {
    vec![
        ("campaigns_are_created_and_updated", campaigns_are_created_and_updated::<H>),
        ("an_import_adds_each_number_once", an_import_adds_each_number_once::<H>),
        ("due_leads_come_in_dial_order", due_leads_come_in_dial_order::<H>),
        ("a_lead_is_handed_out_for_dialing_once", a_lead_is_handed_out_for_dialing_once::<H>),
        ("an_attempt_moves_its_lead_once", an_attempt_moves_its_lead_once::<H>),
        ("retries_refusals_and_due_times", retries_refusals_and_due_times::<H>),
        ("finished_leads_stay_finished", finished_leads_stay_finished::<H>),
        ("callbacks_are_dialed_and_settled", callbacks_are_dialed_and_settled::<H>),
        ("counts_follow_the_rules", counts_follow_the_rules::<H>),
        ("a_write_is_all_or_nothing", a_write_is_all_or_nothing::<H>),
        ("a_restart_keeps_everything_written", a_restart_keeps_everything_written::<H>),
    ]
}

/// Runs every scenario on a fresh store each.
pub fn run_scenarios<H: Harness>(h: &mut H) {
    for (name, scenario) in scenarios::<H>() {
        eprintln!("leads conformance scenario: {name}");
        scenario(h);
    }
}

fn campaigns_are_created_and_updated<H: Harness>(h: &mut H) {
    let s = h.open();
    write(h, &s, vec![campaign("b", "{\"v\":1}", "running", T0), campaign("a", "{}", "paused", T0 + 5)]);
    let names = |s: &H::Store| s.campaigns().expect("read").into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(&s), ["b", "a"], "oldest first");
    // New settings: the state, the pause reason and the creation time are kept.
    let why = Some("provider `v` refused the account".to_string());
    one(h, &s, LeadOp::SetState { name: "b".into(), state: "paused".into(), reason: why.clone(), at: T0 + 6 });
    one(h, &s, campaign("b", "{\"v\":2}", "running", T0 + 7));
    let b = s.campaigns().expect("read").remove(0);
    assert_eq!(
        b,
        StoredCampaign {
            name: "b".into(),
            spec: "{\"v\":2}".into(),
            state: "paused".into(),
            source: "api".into(),
            created_at: T0,
            paused_reason: why,
        }
    );
    one(h, &s, LeadOp::SetState { name: "b".into(), state: "running".into(), reason: None, at: T0 + 8 });
    assert_eq!(s.campaigns().expect("read")[0].paused_reason, None, "a resume clears the reason");
    // Nothing to change for an unknown campaign: nothing changes.
    one(h, &s, LeadOp::SetState { name: "nobody".into(), state: "running".into(), reason: None, at: T0 + 9 });
    assert_eq!(names(&s), ["b", "a"]);
}

fn an_import_adds_each_number_once<H: Harness>(h: &mut H) {
    let s = h.open();
    let leads = vec![new_lead(&phone(1), 0.0), new_lead(&phone(2), 0.0), new_lead(&phone(1), 9.0)];
    let LeadOut::Added(first) = one(h, &s, LeadOp::AddLeads { campaign: C.into(), leads, at: T0 }) else {
        panic!("an import answers with ids")
    };
    assert!(first[0].is_some() && first[1].is_some() && first[2].is_none(), "{first:?}");
    assert_ne!(first[0], first[1]);
    let again = vec![new_lead(&phone(2), 0.0), new_lead(&phone(3), 0.0)];
    let LeadOut::Added(second) = one(h, &s, LeadOp::AddLeads { campaign: C.into(), leads: again, at: T0 + 1 }) else {
        panic!("an import answers with ids")
    };
    assert_eq!(second[0], None, "a number the campaign has is skipped");
    assert!(second[1] > first[1], "ids come from the store, new ones above the old");
    // Another campaign may have the same number.
    let other = vec![new_lead(&phone(1), 0.0)];
    let LeadOut::Added(third) = one(h, &s, LeadOp::AddLeads { campaign: "other".into(), leads: other, at: T0 + 2 })
    else {
        panic!("an import answers with ids")
    };
    assert!(third[0].is_some());
    let pending = s.pending(C).expect("read");
    assert_eq!(ids(pending.clone()), [first[0].unwrap(), first[1].unwrap(), second[1].unwrap()], "by id");
    assert!(pending.iter().all(|l| l.attempts == 0 && !l.warm && l.next_at == 0));
    let lead = row::<H>(&s, first[0].unwrap());
    assert_eq!((lead.phone.as_str(), lead.score, lead.state.as_str()), (phone(1).as_str(), 0.0, PENDING));
}

fn due_leads_come_in_dial_order<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 4, T0); // scores 0, 1, 2, 3
                                   // Lead 3 (the best score) waits until T0 + 60 s; lead 0 is a callback due at T0 + 10 s.
    one(h, &s, LeadOp::Reschedule { lead_id: id[3], next_at: T0 + 60_000, callback_id: None });
    take(h, &s, 1, &phone(0), T0, T0 + 10_000);
    assert_eq!(ids(s.due(C, T0, 10).expect("read")), [id[2], id[1]], "higher score first; the rest not due yet");
    assert_eq!(ids(s.due(C, T0 + 10_000, 10).expect("read")), [id[0], id[2], id[1]], "a due callback first");
    assert_eq!(ids(s.due(C, T0 + 60_000, 2).expect("read")), [id[0], id[3]], "at most the limit");
    assert!(s.due("other", T0 + 60_000, 10).expect("read").is_empty());
}

fn a_lead_is_handed_out_for_dialing_once<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 2, T0);
    // Two claims of one lead in one write, and a third later: only the first holds.
    let (a, b) = (s.next_attempt_id(), s.next_attempt_id());
    assert_ne!(a, b, "attempt ids are handed out once");
    let outs = write(h, &s, vec![attempt(a, id[0], 1, None, T0 + 1), attempt(b, id[0], 1, None, T0 + 1)]);
    assert_eq!(outs, [LeadOut::Done, LeadOut::Stale]);
    assert_eq!(begin(h, &s, id[0], None, T0 + 2), None, "a lead being dialed is not claimed again");
    assert_eq!(row::<H>(&s, id[0]).state, DIALING);
    assert_eq!(ids(s.pending(C).expect("read")), [id[1]]);
    assert_eq!(ids(s.due(C, T0 + 2, 10).expect("read")), [id[1]]);
    let open = s.open_attempts().expect("read");
    assert_eq!(open.iter().map(|a| (a.id, a.lead_id)).collect::<Vec<_>>(), [(a, id[0])]);
    assert_eq!(open[0].lease.as_deref(), Some(format!("L{a}").as_str()));
    // An attempt id written twice is refused, and the write changes nothing.
    let err = h.block_on(s.write(vec![attempt(a, id[1], 1, None, T0 + 3)])).expect_err("an id is written once");
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    assert_eq!(row::<H>(&s, id[1]).state, PENDING);
    // A lead that does not exist is not claimed.
    assert_eq!(begin(h, &s, 9_999, None, T0 + 4), None);
}

fn an_attempt_moves_its_lead_once<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 1, T0)[0];
    let a = begin(h, &s, id, None, T0 + 1).expect("claimed");
    one(h, &s, LeadOp::Placed { id: a, call_id: "call-1".into() });
    one(h, &s, LeadOp::Answered { id: a, at: T0 + 2 });
    one(h, &s, LeadOp::Answered { id: a, at: T0 + 3 });
    assert_eq!(row::<H>(&s, id).state, IN_CALL);
    let attempts = s.attempts_of(id).expect("read");
    assert_eq!((attempts[0].call_id.as_deref(), attempts[0].state.as_str()), (Some("call-1"), rules::ATTEMPT_LIVE));
    assert_eq!(attempts[0].answered_at, Some(T0 + 2), "the first answer time is kept");
    let e = end_with(h, &s, end_op(a, rules::COMPLETED, DONE, T0 + 60_000, Some(58_000), 0));
    assert_eq!(
        e,
        AttemptEnded {
            applied: true,
            lead_state: DONE.into(),
            attempts: 1,
            warm: false,
            next_at: 0,
            callbacks_done: vec![]
        }
    );
    let lead = row::<H>(&s, id);
    assert_eq!((lead.state.as_str(), lead.last_outcome.as_deref()), (DONE, Some(rules::COMPLETED)));
    // The same outcome again (a webhook and a poll): nothing moves.
    assert!(!end(h, &s, a, "busy", PENDING, T0 + 70_000).applied);
    assert_eq!(row::<H>(&s, id).state, DONE);
    assert!(s.open_attempts().expect("read").is_empty());
    // Ends, answers and refusals of attempts that do not exist change nothing.
    assert!(!end(h, &s, 9_999, "busy", PENDING, T0).applied);
    one(h, &s, LeadOp::Answered { id: 9_999, at: T0 });
    one(h, &s, LeadOp::Refused { id: 9_999, at: T0, next_at: T0 });
}

fn retries_refusals_and_due_times<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 1, T0)[0];
    let a1 = begin(h, &s, id, None, T0).expect("claimed");
    let retry_at = T0 + 3_600_000;
    let e = end_with(h, &s, end_op(a1, "no_answer", PENDING, T0 + 30_000, None, retry_at));
    assert_eq!((e.lead_state.as_str(), e.attempts, e.next_at), (PENDING, 1, retry_at));
    assert!(s.due(C, retry_at - 1, 10).expect("read").is_empty(), "not due before its retry time");
    assert_eq!(ids(s.due(C, retry_at, 10).expect("read")), [id]);
    // A refusal does not count: the count goes back, the lead is due when asked.
    let a2 = begin(h, &s, id, None, retry_at).expect("claimed");
    assert_eq!(row::<H>(&s, id).attempts, 2);
    one(h, &s, LeadOp::Refused { id: a2, at: retry_at + 1, next_at: retry_at + 5_000 });
    let lead = row::<H>(&s, id);
    assert_eq!((lead.state.as_str(), lead.attempts, lead.next_at), (PENDING, 1, retry_at + 5_000));
    assert_eq!(s.attempts_since(id, 0).expect("read"), [T0], "a refusal is not an attempt");
    assert_eq!(s.attempts_of(id).expect("read")[1].outcome.as_deref(), Some(rules::REFUSED));
    // A refusal after the attempt ended changes nothing.
    one(h, &s, LeadOp::Refused { id: a1, at: retry_at + 2, next_at: T0 });
    assert_eq!(row::<H>(&s, id).next_at, retry_at + 5_000);
    // Rescheduled (the weekly cap) only as read.
    assert_eq!(one(h, &s, LeadOp::Reschedule { lead_id: id, next_at: T0 + 1, callback_id: Some(4) }), LeadOut::Stale);
    assert_eq!(one(h, &s, LeadOp::Reschedule { lead_id: id, next_at: T0 + 9, callback_id: None }), LeadOut::Done);
    assert_eq!(row::<H>(&s, id).next_at, T0 + 9);
    let a3 = begin(h, &s, id, None, retry_at + 10).expect("claimed");
    assert_eq!(s.attempts_of(id).expect("read")[2].number, 2, "numbered after the counted attempts");
    assert_eq!(s.attempts_since(id, T0 + 1).expect("read"), [retry_at + 10]);
    assert_eq!(one(h, &s, LeadOp::Reschedule { lead_id: id, next_at: T0, callback_id: None }), LeadOut::Stale);
    end(h, &s, a3, "busy", EXHAUSTED, retry_at + 20);
    assert!(s.pending(C).expect("read").is_empty(), "out of attempts: exhausted");
}

fn finished_leads_stay_finished<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 3, T0);
    for (lead, (outcome, state)) in id.iter().zip([("completed", DONE), ("invalid", FAILED), ("busy", EXHAUSTED)]) {
        let a = begin(h, &s, *lead, None, T0 + 1).expect("claimed");
        let e = end(h, &s, a, outcome, state, T0 + 2);
        assert_eq!(e.lead_state, state);
        assert_eq!(begin(h, &s, *lead, None, T0 + 3), None, "a {state} lead is not dialed again");
        let op = LeadOp::Reschedule { lead_id: *lead, next_at: T0, callback_id: None };
        assert_eq!(one(h, &s, op), LeadOut::Stale);
    }
    assert!(s.pending(C).expect("read").is_empty() && s.due(C, u64::MAX, 10).expect("read").is_empty());
    // An end may not leave a lead dialing or on the phone: refused, nothing written.
    let lead = one_more(h, &s);
    let a = begin(h, &s, lead, None, T0 + 4).expect("claimed");
    for bad in [DIALING, IN_CALL, "nonsense"] {
        let err = h.block_on(s.write(vec![end_op(a, "busy", bad, T0 + 5, None, 0)])).expect_err("refused");
        assert_eq!(err.kind, ErrorKind::Invalid, "{bad}: {err}");
    }
    assert_eq!(s.open_attempts().expect("read").len(), 1, "the attempt is still open");
}

/// Imports one more lead (a new number); its id.
fn one_more<H: Harness>(h: &mut H, s: &H::Store) -> u64 {
    let leads = vec![new_lead("+15559999999", 0.0)];
    match one(h, s, LeadOp::AddLeads { campaign: C.into(), leads, at: T0 }) {
        LeadOut::Added(ids) => ids[0].expect("a new number"),
        other => panic!("{other:?}"),
    }
}

fn callbacks_are_dialed_and_settled<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 4, T0 - 100);
    // A callback for a new number: a new warm lead, due at the promised time, in its class.
    let LeadOut::Callback { lead_id: fresh, new: true } = take(h, &s, 20, "+15550009999", T0, T0 + 500) else {
        panic!("a new lead")
    };
    let lead = row::<H>(&s, fresh);
    assert_eq!((lead.warm, lead.callback_id, lead.next_at), (true, Some(20), T0 + 500));
    assert_eq!(lead.class.as_deref(), Some("callback"));
    assert_eq!(take(h, &s, 20, "+15550009999", T0, T0 + 500), LeadOut::Done, "a callback is taken once");
    // Dialed as itself and through: settled with the outcome.
    assert_eq!(begin(h, &s, fresh, None, T0 + 500), None, "read cold: stale");
    let a = begin(h, &s, fresh, Some(20), T0 + 500).expect("claimed as the callback");
    assert_eq!(s.attempts_of(fresh).expect("read")[0].callback_id, Some(20));
    let e = end(h, &s, a, "no_answer", PENDING, T0 + 600);
    assert!(e.warm && e.callbacks_done.is_empty(), "retried as the callback: {e:?}");
    let a = begin(h, &s, fresh, Some(20), T0 + 700).expect("claimed");
    let e = end(h, &s, a, "busy", EXHAUSTED, T0 + 800);
    assert_eq!(e.callbacks_done, [(20, "busy".to_string())]);
    assert_eq!(s.settled_callbacks(&[20, 21]).expect("read"), [(20, "busy".to_string())]);

    // Taken while a campaign attempt was out, not answered after: owed, at its time.
    let a1 = begin(h, &s, id[0], None, T0 + 10).expect("claimed");
    assert_eq!(take(h, &s, 7, &phone(0), T0 + 100, T0 + 150), LeadOut::Callback { lead_id: id[0], new: false });
    assert_eq!(row::<H>(&s, id[0]).state, DIALING, "the attempt goes on");
    let e = end(h, &s, a1, "no_answer", EXHAUSTED, T0 + 200);
    assert_eq!((e.lead_state.as_str(), e.warm, e.attempts, e.next_at), (PENDING, true, 0, T0 + 150), "{e:?}");
    assert!(s.settled_callbacks(&[7]).expect("read").is_empty());
    let a2 = begin(h, &s, id[0], Some(7), T0 + 210).expect("claimed as the callback");
    let e = end_with(h, &s, end_op(a2, rules::COMPLETED, DONE, T0 + 300, Some(50), 0));
    assert_eq!(e.callbacks_done, [(7, rules::COMPLETED.to_string())]);
    assert!(!row::<H>(&s, id[0]).warm);

    // Answered before the caller asked: owed. Reached after: settled.
    let b1 = begin(h, &s, id[1], None, T0 + 10).expect("claimed");
    one(h, &s, LeadOp::Answered { id: b1, at: T0 + 290 });
    take(h, &s, 8, &phone(1), T0 + 300, T0 + 300);
    let e = end_with(h, &s, end_op(b1, rules::COMPLETED, DONE, T0 + 400, Some(110), 0));
    assert_eq!((e.lead_state.as_str(), e.warm, e.callbacks_done.len()), (PENDING, true, 0), "{e:?}");
    let c1 = begin(h, &s, id[2], None, T0 + 10).expect("claimed");
    take(h, &s, 9, &phone(2), T0 + 500, T0 + 500);
    let e = end_with(h, &s, end_op(c1, rules::COMPLETED, DONE, T0 + 600, Some(50), 0));
    assert_eq!((e.lead_state.as_str(), e.callbacks_done), (DONE, vec![(9, rules::COMPLETED.to_string())]));

    // Refused while a callback was taken: due at its time; a second callback keeps the
    // earlier promise, and the one dial that settles one settles both.
    let d1 = begin(h, &s, id[3], None, T0 + 10).expect("claimed");
    take(h, &s, 10, &phone(3), T0 + 600, T0 + 700);
    one(h, &s, LeadOp::Refused { id: d1, at: T0 + 650, next_at: T0 + 650 });
    let lead = row::<H>(&s, id[3]);
    assert_eq!((lead.state.as_str(), lead.warm, lead.attempts, lead.next_at), (PENDING, true, 0, T0 + 700));
    take(h, &s, 11, &phone(3), T0 + 650, T0 + 900);
    assert_eq!(row::<H>(&s, id[3]).next_at, T0 + 700);
    assert_eq!(begin(h, &s, id[3], Some(10), T0 + 710), None, "read with the first callback: stale");
    let d2 = begin(h, &s, id[3], Some(11), T0 + 710).expect("claimed");
    let e = end(h, &s, d2, "busy", EXHAUSTED, T0 + 720);
    assert_eq!(e.callbacks_done, [(10, "busy".to_string()), (11, "busy".to_string())]);
    assert!(!end(h, &s, d2, "busy", EXHAUSTED, T0 + 730).applied);
    let mut settled = s.settled_callbacks(&[7, 8, 9, 10, 11]).expect("read");
    settled.sort();
    assert_eq!(settled.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [7, 9, 10, 11], "8 is still owed");
}

fn counts_follow_the_rules<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 5, T0);
    let since = T0 + 1_000;
    // Lead 0: completed before `since`; lead 1: no answer, retried; lead 2: refused;
    // lead 3: on the phone now; lead 4: exhausted after `since`.
    let a = begin(h, &s, id[0], None, T0 + 1).expect("claimed");
    one(h, &s, LeadOp::Answered { id: a, at: T0 + 2 });
    end_with(h, &s, end_op(a, rules::COMPLETED, DONE, T0 + 100, Some(98), 0));
    let b = begin(h, &s, id[1], None, since).expect("claimed");
    end_with(h, &s, end_op(b, "no_answer", PENDING, since + 10, None, since + 100));
    let c = begin(h, &s, id[2], None, since).expect("claimed");
    one(h, &s, LeadOp::Refused { id: c, at: since + 1, next_at: since + 1 });
    let d = begin(h, &s, id[3], None, since + 2).expect("claimed");
    one(h, &s, LeadOp::Answered { id: d, at: since + 3 });
    let e = begin(h, &s, id[4], None, since + 4).expect("claimed");
    end_with(h, &s, end_op(e, "interrupted", EXHAUSTED, since + 5, None, 0));
    let counts = s.counts(C, since).expect("read");
    let leads = |v: &[(&str, Option<&str>, u64)]| {
        v.iter().map(|(s, o, n)| (s.to_string(), o.map(str::to_string), *n)).collect::<Vec<_>>()
    };
    assert_eq!(
        counts.leads,
        leads(&[
            (DONE, Some("completed"), 1),
            (EXHAUSTED, Some("interrupted"), 1),
            (IN_CALL, None, 1),
            (PENDING, None, 2)
        ]),
        "by state, finished leads by last outcome (a pending lead shows none)"
    );
    assert_eq!((counts.attempts, counts.refused, counts.recent), (4, 1, 3));
    assert_eq!((counts.ended, counts.answered), (2, 1), "a call in progress and an interruption are not in the rate");
    assert_eq!((counts.talk_ms, counts.cost), (98, 98.0 / 4_000.0));
    assert_eq!(counts.finished_recent, 1);
    assert_eq!(s.counts("other", 0).expect("read"), Default::default());
}

fn a_write_is_all_or_nothing<H: Harness>(h: &mut H) {
    let s = h.open();
    let id = import(h, &s, 1, T0)[0];
    let a = begin(h, &s, id, None, T0).expect("claimed");
    let ops = vec![
        LeadOp::AddLeads { campaign: C.into(), leads: vec![new_lead(&phone(50), 0.0)], at: T0 },
        campaign("x", "{}", "running", T0),
        end_op(a, "busy", "nonsense", T0 + 1, None, 0),
    ];
    let err = h.block_on(s.write(ops)).expect_err("the last op is refused");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(s.pending(C).expect("read").len(), 0, "the import went back with it");
    assert!(s.campaigns().expect("read").is_empty());
    assert_eq!(s.open_attempts().expect("read").len(), 1);
    // The next write is not affected.
    assert!(end(h, &s, a, "busy", EXHAUSTED, T0 + 2).applied);
}

fn a_restart_keeps_everything_written<H: Harness>(h: &mut H) {
    let s = h.open();
    one(h, &s, campaign(C, "{}", "running", T0));
    let id = import(h, &s, 3, T0);
    let a = begin(h, &s, id[0], None, T0 + 1).expect("claimed");
    one(h, &s, LeadOp::Placed { id: a, call_id: "call-1".into() });
    let b = begin(h, &s, id[1], None, T0 + 2).expect("claimed");
    end(h, &s, b, "busy", DONE, T0 + 3);
    take(h, &s, 5, &phone(2), T0 + 4, T0 + 10);
    let before = (
        s.campaigns().expect("read"),
        s.pending(C).expect("read"),
        id.iter().map(|i| s.lead(*i).expect("read")).collect::<Vec<_>>(),
        s.open_attempts().expect("read"),
        s.counts(C, T0).expect("read"),
        s.settled_callbacks(&[5]).expect("read"),
    );
    let s = h.restart(s);
    let after = (
        s.campaigns().expect("read"),
        s.pending(C).expect("read"),
        id.iter().map(|i| s.lead(*i).expect("read")).collect::<Vec<_>>(),
        s.open_attempts().expect("read"),
        s.counts(C, T0).expect("read"),
        s.settled_callbacks(&[5]).expect("read"),
    );
    assert_eq!(before, after);
    assert!(s.next_attempt_id() > b, "an attempt id on disk is never handed out again");
    // The open attempt is followed to its end after the restart.
    assert!(end(h, &s, a, rules::COMPLETED, DONE, T0 + 20).applied);
    // A closed store takes no writes.
    s.close();
    assert!(h.block_on(s.write(vec![campaign("late", "{}", "paused", T0)])).is_err());
}

// ----- differential -------------------------------------------------------------------------

/// One of `xs`, chosen by `rng`.
fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

const CAMPAIGNS: [&str; 2] = ["c0", "c1"];
const OUTCOMES: [&str; 8] =
    ["completed", "busy", "no_answer", "voicemail", "failed", "invalid", "interrupted", "refused"];
const LEAD_STATES: [&str; 4] = [PENDING, DONE, FAILED, EXHAUSTED];

/// Everything a store answers to reads, for comparison.
#[derive(Debug, PartialEq)]
struct Seen {
    campaigns: Vec<StoredCampaign>,
    pending: Vec<Vec<PendingLead>>,
    due: Vec<Vec<PendingLead>>,
    leads: Vec<Option<LeadRow>>,
    attempts: Vec<Vec<super::AttemptRow>>,
    since: Vec<Vec<u64>>,
    open: Vec<super::AttemptRow>,
    counts: Vec<super::CampaignCounts>,
    settled: Vec<(u64, String)>,
}

fn seen(s: &impl Leads, now: u64, leads: u64) -> Result<Seen, Error> {
    let ids = 1..=leads + 1;
    Ok(Seen {
        campaigns: s.campaigns()?,
        pending: CAMPAIGNS.iter().map(|c| s.pending(c)).collect::<Result<_, _>>()?,
        due: CAMPAIGNS.iter().map(|c| s.due(c, now, 5)).collect::<Result<_, _>>()?,
        leads: ids.clone().map(|i| s.lead(i)).collect::<Result<_, _>>()?,
        attempts: ids.clone().map(|i| s.attempts_of(i)).collect::<Result<_, _>>()?,
        since: ids.map(|i| s.attempts_since(i, now.saturating_sub(5_000))).collect::<Result<_, _>>()?,
        open: s.open_attempts()?,
        counts: CAMPAIGNS.iter().map(|c| s.counts(c, now.saturating_sub(5_000))).collect::<Result<_, _>>()?,
        settled: s.settled_callbacks(&(1..=8).collect::<Vec<_>>())?,
    })
}

/// One random op, made from what the reference holds now (as the dialer reads before it
/// writes; reads are sometimes stale on purpose).
fn random_op(rng: &mut Rng, reference: &MemoryLeads, store: &impl Leads, now: u64, leads: u64) -> LeadOp {
    let campaign = pick(rng, &CAMPAIGNS).to_string();
    let lead_id = rng.below(leads + 2);
    let open: Vec<u64> = reference.open_attempts().unwrap_or_default().into_iter().map(|a| a.id).collect();
    let attempt_id = |rng: &mut Rng| match open.get(rng.below(open.len() as u64 + 1) as usize) {
        Some(id) if !rng.chance(10) => *id,
        _ => rng.below(20),
    };
    match rng.below(100) {
        0..=4 => LeadOp::PutCampaign {
            name: campaign,
            spec: format!("{{\"v\":{}}}", rng.below(3)),
            state: pick(rng, &["running", "paused"]).into(),
            source: "api".into(),
            at: now,
        },
        5..=7 => LeadOp::SetState {
            name: campaign,
            state: pick(rng, &["running", "paused", "stopped"]).into(),
            reason: rng.chance(50).then(|| "why".to_string()),
            at: now,
        },
        8..=19 => {
            let n = 1 + rng.below(4);
            let leads = (0..n).map(|_| new_lead(&phone(rng.below(12)), rng.below(4) as f64)).collect();
            LeadOp::AddLeads { campaign, leads, at: now }
        }
        20..=29 => LeadOp::AddCallback {
            campaign,
            lead: CallbackLead {
                callback_id: 1 + rng.below(8),
                phone: phone(rng.below(12)),
                timezone: "UTC".into(),
                class: "callback".into(),
                booked_at: now.saturating_sub(rng.below(3_000)),
                due_at: now + rng.below(10_000),
            },
            at: now,
        },
        30..=49 => {
            let row = reference.lead(lead_id).ok().flatten();
            let read = row.as_ref().and_then(|r| r.callback_id.filter(|_| r.warm));
            let callback_id = if rng.chance(85) { read } else { Some(1 + rng.below(8)).filter(|_| rng.chance(50)) };
            let number = row.map_or(1, |r| r.attempts + 1);
            let id = if rng.chance(3) { rng.below(20) } else { store.next_attempt_id() };
            LeadOp::BeginAttempt(NewAttempt {
                id,
                lead_id,
                campaign: row_campaign(reference, lead_id).unwrap_or(campaign),
                number,
                class: "outbound".into(),
                provider: "sim".into(),
                lease: format!("L{id}"),
                callback_id,
                at: now,
            })
        }
        50..=54 => LeadOp::Placed { id: attempt_id(rng), call_id: format!("call-{}", rng.below(1_000)) },
        55..=64 => LeadOp::Answered { id: attempt_id(rng), at: now },
        65..=84 => {
            let talk_ms = rng.chance(50).then(|| rng.below(6_000));
            let lead_state = if rng.chance(3) { IN_CALL } else { pick(rng, &LEAD_STATES) };
            LeadOp::EndAttempt(AttemptEnd {
                id: attempt_id(rng),
                outcome: pick(rng, &OUTCOMES).into(),
                reason: None,
                ended_at: now,
                talk_ms,
                // Quarters add up exactly in binary, whatever the order of the sum.
                cost: talk_ms.map(|t| (t / 1_000) as f64 * 0.25),
                lead_state: lead_state.into(),
                next_at: now + rng.below(5_000),
            })
        }
        85..=92 => LeadOp::Refused { id: attempt_id(rng), at: now, next_at: now + rng.below(5_000) },
        _ => {
            let read = reference.lead(lead_id).ok().flatten().and_then(|r| r.callback_id.filter(|_| r.warm));
            let callback_id = if rng.chance(80) { read } else { None };
            LeadOp::Reschedule { lead_id, next_at: now + rng.below(10_000), callback_id }
        }
    }
}

fn row_campaign(reference: &MemoryLeads, lead_id: u64) -> Option<String> {
    reference.lead(lead_id).ok().flatten().map(|r| r.campaign)
}

/// Runs `steps` random writes from `seed` against a fresh store and against
/// [`MemoryLeads`]. Panics at the first disagreement, naming the seed and the step.
pub fn differential<H: Harness>(h: &mut H, seed: u64, steps: usize) {
    let mut s = h.open();
    let reference = MemoryLeads::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut now = T0;
    for step in 0..steps {
        let at = |what: &str| format!("seed {seed}, step {step}: {what}");
        now += rng.below(2_000);
        if rng.chance(4) {
            s = h.restart(s);
        } else {
            let leads = reference.lead_count();
            let n = if rng.chance(15) { 2 + rng.below(2) } else { 1 };
            let ops: Vec<LeadOp> = (0..n).map(|_| random_op(&mut rng, &reference, &s, now, leads)).collect();
            let got = h.block_on(s.write(ops.clone()));
            let want = h.block_on(reference.write(ops.clone()));
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{}", at(&format!("answers to {ops:?}"))),
                (Err(g), Err(w)) => assert_eq!(g.kind, w.kind, "{}", at(&format!("errors of {ops:?}: {g} / {w}"))),
                _ => panic!("{}", at(&format!("{ops:?}: the store says {got:?}, the reference {want:?}"))),
            }
        }
        let leads = reference.lead_count();
        let got = seen(&s, now, leads).unwrap_or_else(|e| panic!("{}", at(&format!("read failed: {e}"))));
        let want = seen(&reference, now, leads).expect("the reference reads");
        assert_eq!(got, want, "{}", at("reads"));
    }
    // Every lead handed out for dialing was handed out once: one open attempt per lead
    // being dialed, none for any other.
    let open = s.open_attempts().expect("read");
    let mut dialed: Vec<u64> = open.iter().map(|a| a.lead_id).collect();
    dialed.sort_unstable();
    let before = dialed.len();
    dialed.dedup();
    assert_eq!(before, dialed.len(), "seed {seed}: a lead with two open attempts: {open:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// The in-memory store against itself: the suite's own stories hold for the rules.
    struct Memory;

    impl Harness for Memory {
        type Store = MemoryLeads;

        fn open(&mut self) -> MemoryLeads {
            MemoryLeads::new()
        }

        fn restart(&mut self, store: MemoryLeads) -> MemoryLeads {
            store // nothing is lost: everything is in memory, and the process lives on
        }

        fn block_on<F: Future>(&mut self, f: F) -> F::Output {
            let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
            let mut cx = Context::from_waker(&waker);
            let mut f = std::pin::pin!(f);
            loop {
                if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                    return out;
                }
                std::thread::park();
            }
        }
    }

    #[test]
    fn the_memory_store_passes_every_scenario() {
        run_scenarios(&mut Memory);
    }

    #[test]
    fn the_memory_store_agrees_with_itself_over_random_histories() {
        for seed in 0..3 {
            differential(&mut Memory, seed, 200);
        }
    }
}
