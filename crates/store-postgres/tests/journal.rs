//! The lease journal on the machine's PostgreSQL: what is acknowledged is read back as
//! live after a restart, what was released or expired is not (also when the release came
//! through another node first), appends are group-committed, and migrations are applied
//! once when two nodes open the database at the same moment.

mod support;

use callgate_backend::{ErrorKind, Names};
use callgate_core::{ClassId, Event, FlowId, Lease, LeaseId, PoolId, PoolUnits, Ticket, TicketId, TicketOutcome};
use callgate_store_postgres::{Journal, Pg, Settings, StoredLease};
use std::sync::Arc;
use support::TestDb;

const T0: u64 = 1_800_000_000_000;

fn names() -> Names {
    Names {
        pools: vec!["vapi".into(), "line".into()],
        config_limits: vec![10, 2],
        classes: vec!["inbound".into(), "outbound".into()],
        flows: vec!["in".into()],
    }
}

fn lease(id: u64, key: &str, expires_at: u64) -> Lease {
    Lease {
        id: LeaseId(id),
        key: Some(key.into()),
        class: ClassId(0),
        flow: Some(FlowId(0)),
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }, PoolUnits { pool: PoolId(1), units: 1 }]),
        granted_at: T0,
        expires_at,
        ttl_ms: expires_at - T0,
        meta: Some("{\"a\":1}".into()),
        owner: Some("ops".into()),
    }
}

fn stored(l: &Lease) -> StoredLease {
    StoredLease {
        id: l.id.0,
        key: l.key.as_deref().map(str::to_owned),
        class: "inbound".into(),
        flow: Some("in".into()),
        pools: vec![("vapi".into(), 1), ("line".into(), 1)],
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl_ms: l.ttl_ms,
        meta: l.meta.as_deref().map(str::to_owned),
        owner: l.owner.as_deref().map(str::to_owned),
    }
}

fn granted(l: &Lease) -> Event {
    Event::Granted { lease: l.clone(), from_ticket: None }
}

fn open(db: &TestDb, node: &str) -> Journal {
    let pg = Pg::open(&db.url, Settings::default()).expect("open");
    Journal::open(&pg, "acme", node, names(), 600_000)
}

async fn commit(j: &Journal, events: Vec<Event>) {
    let seq = j.append(events);
    j.durable(seq).await.expect("durable");
}

#[tokio::test]
async fn acknowledged_leases_are_read_back_after_a_restart_and_ended_ones_are_not() {
    let db = TestDb::new("journal");
    let (a, b, c, d) = (
        lease(1, "call-1", T0 + 60_000),
        lease(2, "call-2", T0 + 60_000),
        lease(3, "call-3", T0 + 5_000),
        lease(4, "call-4", T0 + 60_000),
    );
    {
        let j = open(&db, "n1");
        commit(&j, vec![granted(&a), granted(&b)]).await;
        commit(&j, vec![granted(&c), granted(&d)]).await;
        // b released, d expired, a renewed; c is past its expiry at the time asked.
        commit(&j, vec![Event::Released { lease: b.clone(), at: T0 + 1_000 }]).await;
        commit(&j, vec![Event::Expired { lease: d.clone(), at: T0 + 2_000 }]).await;
        commit(&j, vec![Event::Renewed { lease: a.id, expires_at: T0 + 120_000, ttl_ms: 90_000, at: T0 + 3_000 }])
            .await;
        let health = j.health();
        assert_eq!((health.failed, health.appends), (None, 5));
    }
    // A new process on the same database (the journal was dropped: everything handed over
    // was committed first).
    let j = open(&db, "n1");
    let live = j.live_leases(T0 + 10_000).await.expect("read");
    let renewed = StoredLease { expires_at: T0 + 120_000, ttl_ms: 90_000, ..stored(&a) };
    assert_eq!(live, vec![renewed.clone()], "only the renewed lease is live at T0+10s");
    let live = j.live_leases(T0 + 4_000).await.expect("read");
    assert_eq!(live, vec![renewed, stored(&c)], "c is live until its expiry");
    let restored = j.restore(T0 + 10_000).await.expect("read");
    assert_eq!(restored.next_id, 5, "ids go on above every id journaled");
}

#[tokio::test]
async fn a_release_through_another_node_is_not_undone_by_the_grant_committing_later() {
    let db = TestDb::new("journal");
    let (node_a, node_b) = (open(&db, "a"), open(&db, "b"));
    let l = lease(7, "call-7", T0 + 60_000);
    // The call ended through node B while node A's grant was still on its way.
    commit(&node_b, vec![Event::Released { lease: l.clone(), at: T0 + 10 }]).await;
    commit(&node_a, vec![granted(&l)]).await;
    assert!(node_a.live_leases(T0 + 20).await.expect("read").is_empty(), "a released lease stays released");
    // Both nodes' counters count.
    let other = lease(9, "call-9", T0 + 60_000);
    commit(&node_b, vec![granted(&other)]).await;
    assert_eq!(node_a.restore(T0 + 20).await.expect("read").next_id, 10);
    // A lease whose grant no node journaled (its command's reply never came) expires, and
    // another is renewed: the ids go on above both, so no new lease meets their rows.
    commit(&node_a, vec![Event::Expired { lease: lease(20, "lost-reply", T0 + 50), at: T0 + 60 }]).await;
    assert_eq!(node_a.restore(T0 + 20).await.expect("read").next_id, 21, "above the tombstone");
    commit(&node_b, vec![Event::Renewed { lease: LeaseId(30), expires_at: T0 + 90_000, ttl_ms: 60_000, at: T0 }]).await;
    assert_eq!(node_a.restore(T0 + 20).await.expect("read").next_id, 31, "above the renewal's row");
}

#[tokio::test]
async fn a_renewal_through_another_node_that_commits_before_the_grant_is_kept() {
    let db = TestDb::new("journal");
    let (node_a, node_b) = (open(&db, "a"), open(&db, "b"));
    let l = lease(5, "call-5", T0 + 60_000);
    let renew = |expires_at, ttl_ms| Event::Renewed { lease: l.id, expires_at, ttl_ms, at: T0 + 10 };
    // The reconciliation on node B renewed the call while node A's grant was committing.
    commit(&node_b, vec![renew(T0 + 300_000, 290_000)]).await;
    assert!(node_a.live_leases(T0).await.expect("read").is_empty(), "a renewal alone is no lease");
    commit(&node_a, vec![granted(&l)]).await;
    let live = node_a.live_leases(T0 + 100_000).await.expect("read");
    assert_eq!(
        live,
        vec![StoredLease { expires_at: T0 + 300_000, ttl_ms: 290_000, ..stored(&l) }],
        "the later expiry is kept"
    );
    // Later renewals apply as they come.
    commit(&node_b, vec![renew(T0 + 400_000, 100_000)]).await;
    assert_eq!(node_a.live_leases(T0).await.expect("read")[0].expires_at, T0 + 400_000);
    // The grant written again by a node that showed it (`LedgerBackend::vouch`), as it read
    // it before that renewal: the later expiry is kept.
    commit(&node_b, vec![granted(&l)]).await;
    let live = node_a.live_leases(T0).await.expect("read");
    assert_eq!(
        (live[0].expires_at, live[0].ttl_ms),
        (T0 + 400_000, 100_000),
        "a grant written twice keeps the renewal"
    );
    // A renewal of a released lease brings nothing back.
    commit(&node_a, vec![Event::Released { lease: l.clone(), at: T0 + 20 }]).await;
    commit(&node_b, vec![renew(T0 + 500_000, 100_000)]).await;
    assert!(node_a.live_leases(T0).await.expect("read").is_empty());
}

#[tokio::test]
async fn waiting_tickets_limits_and_ticket_outcomes_are_journaled() {
    let db = TestDb::new("journal");
    let j = open(&db, "n1");
    let ticket = |id: u64, seq: u64| Ticket {
        id: TicketId(id),
        key: Some(format!("wait-{id}").into()),
        class: ClassId(1),
        flow: None,
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
        seq,
        enqueued_at: T0,
        deadline: T0 + 60_000,
        ttl_ms: 30_000,
        meta: None,
        owner: None,
    };
    let (t1, t2, t3) = (ticket(11, 1), ticket(12, 2), ticket(13, 3));
    commit(
        &j,
        vec![Event::Queued { ticket: t1.clone(), position: 1 }, Event::Queued { ticket: t2.clone(), position: 2 }],
    )
    .await;
    commit(&j, vec![Event::Queued { ticket: t3.clone(), position: 3 }]).await;
    commit(&j, vec![Event::TicketEnded { ticket: t1.clone(), outcome: TicketOutcome::Cancelled, at: T0 + 5 }]).await;
    let from_ticket = Lease { id: LeaseId(14), ..lease(14, "wait-12", T0 + 60_000) };
    commit(&j, vec![Event::Granted { lease: from_ticket, from_ticket: Some((t2.id, 100)) }]).await;
    commit(&j, vec![Event::LimitChanged { pool: PoolId(0), limit: 8, cap: 8, at: T0 + 6 }]).await;
    commit(&j, vec![Event::LimitChanged { pool: PoolId(1), limit: 3, cap: 3, at: T0 + 7 }]).await;
    commit(&j, vec![Event::LimitChanged { pool: PoolId(1), limit: 2, cap: 2, at: T0 + 8 }]).await;
    let r = j.restore(T0 + 10).await.expect("read");
    assert_eq!(r.tickets.iter().map(|t| (t.id, t.seq, t.class.as_str())).collect::<Vec<_>>(), [(13, 3, "outbound")]);
    let ended: Vec<_> = r.ended.iter().map(|e| (e.id, e.outcome.as_str(), e.lease)).collect();
    // Oldest end first: the grant (at its lease's grant time, T0) before the cancel (T0 + 5).
    assert_eq!(ended, [(12, "granted", Some(14)), (11, "cancelled", None)]);
    assert_eq!(r.limits, [("vapi".to_string(), 8, 10)], "a limit back at the configured one is no change");
    assert_eq!((r.next_id, r.next_seq), (15, 4));
    // A ticket that ended stays ended when its queueing commits late (another node).
    commit(&open(&db, "n2"), vec![Event::Queued { ticket: t1, position: 1 }]).await;
    assert_eq!(j.restore(T0 + 10).await.expect("read").tickets.len(), 1);
}

#[tokio::test]
async fn appends_waiting_while_a_commit_is_under_way_share_one_commit() {
    let db = TestDb::new("journal");
    let j = open(&db, "n1");
    commit(&j, vec![granted(&lease(1, "first", T0 + 60_000))]).await;
    let before = j.health().commits;
    // Hold this node's counters row from another session: no commit of a grant can finish
    // until it is let go, so every append made meanwhile waits for the same next commits.
    let (blocker, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    blocker.batch_execute("BEGIN; SELECT * FROM journal_counters WHERE node = 'n1' FOR UPDATE").await.expect("lock");
    let seqs: Vec<u64> =
        (0..200).map(|i| j.append(vec![granted(&lease(10 + i, &format!("k{i}"), T0 + 60_000))])).collect();
    blocker.batch_execute("COMMIT").await.expect("unlock");
    for s in &seqs {
        j.durable(*s).await.expect("durable");
    }
    let commits = j.health().commits - before;
    // The writer may have taken the first append alone before the others arrived; the
    // rest waited together.
    assert!(commits <= 2, "200 appends made during one commit took {commits} commits");
    let times = j.commit_times().snapshot();
    assert_eq!(times.count, j.health().commits, "every commit is timed");
    assert!(times.counts.windows(2).all(|w| w[0] <= w[1]), "cumulative buckets: {times:?}");
    assert_eq!(j.live_leases(T0).await.expect("read").len(), 201);
}

#[tokio::test]
async fn an_append_after_close_is_never_durable() {
    let db = TestDb::new("journal");
    let j = open(&db, "n1");
    j.close();
    let seq = j.append(vec![granted(&lease(1, "late", T0 + 60_000))]);
    let err = j.durable(seq).await.expect_err("not durable");
    assert_eq!(err.kind, ErrorKind::Unavailable);
}

#[test]
fn two_nodes_opening_a_new_database_at_once_apply_each_migration_once() {
    let db = TestDb::new("migrate");
    let url = db.url.clone();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn({
                let url = url.clone();
                move || Pg::open(&url, Settings::default()).map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.join().expect("thread").expect("open");
    }
    let pg = Pg::open(&url, Settings::default()).expect("open again");
    drop(pg);
    let out = std::process::Command::new("psql")
        .args(["-h", support::HOST, "-U", "postgres", "-At", "-d", &db.name, "-c"])
        .arg("SELECT string_agg(version::text, ',' ORDER BY version) FROM callgate_migrations")
        .output()
        .expect("psql");
    let versions = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let want: Vec<String> =
        callgate_store_postgres::migrate::MIGRATIONS.iter().map(|m| m.version.to_string()).collect();
    assert_eq!(versions, want.join(","));
}

#[test]
fn a_bad_url_is_refused_with_a_clear_error() {
    let err = Pg::open("postgres://127.0.0.1:notaport/x", Settings::default()).expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    assert!(err.message.contains("PostgreSQL URL"), "{err}");
    // Nobody listens: unavailable, and the message names where it tried.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let err = Pg::open(&format!("postgres://postgres@127.0.0.1:{port}/x"), Settings::default()).expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// An append committed later than the commit timeout after its command started counts as
/// lost, though PostgreSQL committed it: every durable answer comes within one timeout of
/// the command reaching Redis, which the restore of an emptied Redis relies on. Later
/// appends are answered as before.
#[tokio::test]
async fn an_append_committed_later_than_the_commit_timeout_after_it_started_counts_as_lost() {
    let db = TestDb::new("journal");
    let timeout = std::time::Duration::from_secs(2);
    let pg = Pg::open(&db.url, Settings { commit_timeout: timeout, ..Settings::default() }).expect("open");
    let j = Journal::open(&pg, "acme", "n1", names(), 600_000);
    let long_ago = tokio::time::Instant::now().checked_sub(3 * timeout).expect("the machine has run a while");
    let late = j.append_started(vec![granted(&lease(1, "call-1", T0 + 60_000))], long_ago);
    let on_time = j.append(vec![granted(&lease(2, "call-2", T0 + 60_000))]);
    let e = j.durable(late).await.expect_err("too late to be called durable");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    j.durable(on_time).await.expect("durable");
    // PostgreSQL has both rows: a lost append's row only keeps a lease counted longer.
    assert_eq!(j.live_leases(T0).await.expect("read").len(), 2);
}
