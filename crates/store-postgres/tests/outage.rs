//! PostgreSQL stops mid-run (a private server on a free port, stopped as a crash stops
//! it, then started again): the journal never calls an append durable that was not
//! committed, lead and record writes answer `unavailable` and change nothing, reads fail
//! cleanly, and everything works again once the server is back, with nothing that was
//! acknowledged before lost and nothing lost during the outage brought back.

mod support;

use callgate_backend::leads::{LeadOp, LeadOut, Leads, NewAttempt, NewLead};
use callgate_backend::records::{CallUpdate, CallbackQuery, NewCallback, Record, Records};
use callgate_backend::{Error, ErrorKind, Names};
use callgate_core::{ClassId, Event, Lease, LeaseId, PoolId, PoolUnits};
use callgate_store_postgres::{Journal, Pg, PgLeads, PgRecords, Settings, NO_ATTEMPT_ID};
use std::sync::Arc;
use std::time::Duration;
use support::PrivatePg;

const T0: u64 = 1_800_000_000_000;

fn names() -> Names {
    Names { pools: vec!["vapi".into()], config_limits: vec![10], classes: vec!["inbound".into()], flows: vec![] }
}

fn granted(id: u64) -> Event {
    Event::Granted {
        lease: Lease {
            id: LeaseId(id),
            key: Some(format!("call-{id}").into()),
            class: ClassId(0),
            flow: None,
            pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
            granted_at: T0,
            expires_at: T0 + 600_000,
            ttl_ms: 600_000,
            meta: None,
            owner: None,
        },
        from_ticket: None,
    }
}

fn unavailable(r: Result<impl std::fmt::Debug, Error>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Unavailable, "{what}: {e}");
            assert!(e.retryable, "{what}: a retry may succeed");
        }
        Ok(v) => panic!("{what} succeeded while PostgreSQL was down: {v:?}"),
    }
}

fn attempt(id: u64, lead_id: u64) -> LeadOp {
    LeadOp::BeginAttempt(NewAttempt {
        id,
        lead_id,
        campaign: "c".into(),
        number: 1,
        class: "outbound".into(),
        provider: "sim".into(),
        lease: format!("L{id}"),
        callback_id: None,
        at: T0,
    })
}

#[tokio::test]
async fn postgres_stopping_mid_run_fails_writes_closed_and_loses_nothing_acknowledged() {
    let mut server = PrivatePg::start();
    // Short timeouts so the outage is noticed quickly; the server is local.
    let settings = Settings {
        connect_timeout: Duration::from_secs(2),
        job_timeout: Duration::from_secs(10),
        commit_timeout: Duration::from_secs(5),
        retry_after: Duration::from_millis(50),
    };
    let pg = Pg::open(&server.url, settings).expect("open");
    let journal = Journal::open(&pg, "acme", "n1", names(), 600_000);
    let leads = PgLeads::open(&pg).expect("leads");
    let records = PgRecords::open(&pg);

    let before = journal.append(vec![granted(1)]);
    journal.durable(before).await.expect("durable while up");
    let added = leads
        .write(vec![LeadOp::AddLeads {
            campaign: "c".into(),
            leads: vec![NewLead {
                phone: "+15550000001".into(),
                name: None,
                timezone: "UTC".into(),
                score: 0.0,
                vars: None,
            }],
            at: T0,
        }])
        .await
        .expect("import while up");
    assert_eq!(added, [LeadOut::Added(vec![Some(1)])]);
    let callback = NewCallback {
        provider: "vapi".into(),
        call_id: "c1".into(),
        number: "+1555".into(),
        flow: "in".into(),
        booked_at: T0,
        due_at: T0,
    };
    records.record(vec![Record::Callback(callback)]).await.expect("record while up");

    server.stop();

    // Nothing is called durable that was not committed.
    let during = journal.append(vec![granted(2)]);
    unavailable(journal.durable(during).await, "a journal append");
    let health = journal.health();
    assert!(health.failed.is_some() && health.epoch == 1, "{health:?}");
    // The dialer's claim fails: the lead is not handed out.
    let id = leads.next_attempt_id();
    unavailable(leads.write(vec![attempt(id, 1)]).await, "a claim");
    // Reads fail cleanly, and so does everything else.
    unavailable(leads.lead(1), "a lead read");
    unavailable(leads.due("c", T0, 10), "a due read");
    unavailable(journal.live_leases(T0).await, "the journal read");
    unavailable(
        records
            .record(vec![Record::Call(CallUpdate {
                provider: "vapi".into(),
                call_id: "c2".into(),
                at: T0,
                ..CallUpdate::default()
            })])
            .await,
        "a call record",
    );
    unavailable(records.callbacks(&CallbackQuery { state: None, flow: None, limit: 10 }), "a callbacks read");
    // Attempt ids run out while the server is away: the id handed out cannot be used.
    let spare = (0..64).map(|_| leads.next_attempt_id()).find(|id| *id == NO_ATTEMPT_ID);
    assert_eq!(spare, Some(NO_ATTEMPT_ID), "no id is invented while none can be reserved");
    unavailable(leads.write(vec![attempt(NO_ATTEMPT_ID, 1)]).await, "a claim with no id");

    server.resume();

    // Each store connects again on its next use (within the retry pause).
    let mut after = 0;
    for _ in 0..200 {
        after = journal.append(vec![granted(3)]);
        if journal.durable(after).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    journal.durable(after).await.expect("durable again once PostgreSQL is back");
    assert_eq!(journal.health().failed, None);
    unavailable(journal.durable(during).await, "the append lost in the outage, asked again");
    let live: Vec<u64> = journal.live_leases(T0).await.expect("read").iter().map(|l| l.id).collect();
    assert_eq!(live, [1, 3], "what was acknowledged is there; what failed is not");

    // The lead was never handed out: still pending, and claimable now.
    assert_eq!(leads.lead(1).expect("read").expect("lead").state, "pending");
    let id = leads.next_attempt_id();
    assert_ne!(id, NO_ATTEMPT_ID);
    assert_eq!(leads.write(vec![attempt(id, 1)]).await.expect("claim"), [LeadOut::Done]);
    assert_eq!(leads.open_attempts().expect("read").len(), 1);
    let booked = records.callbacks(&CallbackQuery { state: None, flow: None, limit: 10 }).expect("read");
    assert_eq!(booked.len(), 1);
    assert_eq!(records.call("vapi", "c2").expect("read"), None, "the record that failed was not written");
}
