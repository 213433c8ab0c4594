//! `LeadOp::Fence` on PostgreSQL: a campaign's attempts are begun only under its latest
//! pacer's token. A write carrying an older token fails whole (`fenced`) and writes
//! nothing, so a pacer that stalled past a takeover claims no lead.

mod support;

use callgate_backend::leads::{LeadOp, LeadOut, Leads, NewAttempt, NewLead};
use callgate_backend::ErrorKind;
use callgate_store_postgres::{Pg, PgLeads, Settings};
use support::TestDb;

const C: &str = "c";

fn fence(token: u64) -> LeadOp {
    LeadOp::Fence { campaign: C.into(), token }
}

fn begin(s: &PgLeads, lead_id: u64) -> LeadOp {
    LeadOp::BeginAttempt(NewAttempt {
        id: s.next_attempt_id(),
        lead_id,
        campaign: C.into(),
        number: 1,
        class: "outbound".into(),
        provider: "sim".into(),
        lease: "L1".into(),
        callback_id: None,
        at: 2,
    })
}

#[test]
fn an_attempt_under_a_stale_pacing_token_is_refused_and_writes_nothing() {
    let db = TestDb::new("fence");
    let pg = Pg::open(&db.url, Settings::default()).expect("open");
    let s = PgLeads::open(&pg).expect("lead store");
    let put =
        LeadOp::PutCampaign { name: C.into(), spec: "{}".into(), state: "running".into(), source: "api".into(), at: 1 };
    let lead = NewLead { phone: "+15550000001".into(), name: None, timezone: "UTC".into(), score: 0.0, vars: None };
    let outs = s.write_blocking(vec![put, LeadOp::AddLeads { campaign: C.into(), leads: vec![lead], at: 1 }]).unwrap();
    let LeadOut::Added(ids) = &outs[1] else { panic!("{outs:?}") };
    let lead_id = ids[0].expect("added");

    // The first pacer (token 10), then a takeover (token 11) raises the fence.
    assert_eq!(s.write_blocking(vec![fence(10)]).unwrap(), [LeadOut::Done]);
    assert_eq!(s.write_blocking(vec![fence(11)]).unwrap(), [LeadOut::Done]);
    assert_eq!(db.query("SELECT pacer_fence FROM campaigns"), "11");

    // The former pacer wakes: its claim is refused, nothing of the write is kept.
    let e = s.write_blocking(vec![fence(10), begin(&s, lead_id)]).expect_err("a stale token is refused");
    assert_eq!((e.kind, e.code), (ErrorKind::Conflict, "fenced"), "{e}");
    assert!(e.message.contains("token 11") && e.message.contains("token 10"), "{e}");
    assert_eq!(db.query("SELECT count(*) FROM attempts"), "0");
    assert_eq!(s.lead(lead_id).unwrap().unwrap().state, "pending");
    assert_eq!(db.query("SELECT pacer_fence FROM campaigns"), "11", "a refused fence lowers nothing");

    // The current pacer claims it; its token again is fine (the fence holds, not grows).
    assert_eq!(s.write_blocking(vec![fence(11), begin(&s, lead_id)]).unwrap(), [LeadOut::Done, LeadOut::Done]);
    assert_eq!(s.lead(lead_id).unwrap().unwrap().state, "dialing");
    // A campaign without a row has no fence yet.
    assert_eq!(s.write_blocking(vec![LeadOp::Fence { campaign: "other".into(), token: 1 }]).unwrap(), [LeadOut::Done]);
}
