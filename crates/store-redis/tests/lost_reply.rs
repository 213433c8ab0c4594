//! A reply from Redis that never reaches its node (the connection broke, or the reply
//! timed out, after the call was sent): the node reads back the answer Redis kept for a
//! tagged call, and Redis refuses a call its node gave up. Through a TCP forwarder
//! (`support::Forwarder`) that loses a reply, a request, or holds a request back.

use callgate_backend::conformance::account_spec;
use callgate_backend::{Command, ErrorKind, LedgerBackend, Outcome};
use callgate_core::clock::ManualClock;
use callgate_core::{Decision, FlowId, Request};
use callgate_store_redis::{RedisLedger, Tag, Time};
use support::Server;

mod support;

const T0: u64 = 1_800_000_000_000;

fn call(flow: u32, key: &str) -> Command {
    Command::Acquire(Request::flow(FlowId(flow)).with_key(key))
}

#[test]
fn a_tagged_call_whose_reply_was_lost_is_answered_as_redis_ran_it() {
    let server = Server::start();
    let link = support::Forwarder::start(&server.url);
    let a = RedisLedger::open(&link.url, "lost", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    let tag = |k| Tag { origin: "n1".into(), k };
    let key_of = |r: &Result<callgate_backend::Executed, callgate_backend::Error>| match &r
        .as_ref()
        .expect("answered")
        .outcome
    {
        Outcome::Decided { decision: Decision::Granted { .. }, lease: Some(l), .. } => l.key.clone(),
        other => panic!("expected a grant: {other:?}"),
    };

    link.lose_next_reply();
    let answers = a.execute_batch(vec![call(0, "ran-1"), call(0, "ran-2")], Some(&tag(1)));
    assert_eq!(answers.iter().map(key_of).collect::<Vec<_>>(), [Some("ran-1".into()), Some("ran-2".into())]);
    link.lose_next_reply();
    assert_eq!(key_of(&a.execute_tagged(call(0, "single"), Some(&tag(2)))), Some("single".into()));
    assert_eq!(a.leases().len(), 3, "each granted once");

    link.lose_next_request();
    let answers = a.execute_batch(vec![call(0, "never")], Some(&tag(3)));
    let e = answers[0].as_ref().expect_err("Redis never saw it");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(a.lease_by_key("never").is_none(), "and granted nothing");

    // Sent, but still on its way to Redis when the node asks: given up, and refused when it
    // comes.
    link.hold_next_request();
    let answers = a.execute_batch(vec![call(0, "late")], Some(&tag(4)));
    assert_eq!(answers[0].as_ref().expect_err("not run yet").kind, ErrorKind::Unavailable);
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let given_up = format!("{}:oc:n1", a.key_prefix());
    assert_eq!(redis::cmd("GET").arg(&given_up).query::<String>(&mut conn).expect("GET"), "n1.4");
    link.deliver_held();
    assert!(a.lease_by_key("late").is_none(), "refused when it came");
    assert_eq!(a.leases().len(), 3);

    link.lose_next_reply();
    let e = a.execute(call(0, "untagged")).expect_err("its reply is lost");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(a.lease_by_key("untagged").is_some(), "granted all the same: held until a retry by its key, or its TTL");
}

/// A node without a journal sends the request paths' commands in batches on its shared
/// connection: a batch whose reply was lost is answered as Redis ran it, read back from the
/// answer Redis kept (so a grant without a key is not stranded until its TTL); one Redis
/// never saw answers unavailable and grants nothing, also when it comes late. Its stream
/// entries carry no tag (no settle mark follows for another node to wait for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_reply_was_lost_is_answered_as_redis_ran_it() {
    let server = Server::start();
    let link = support::Forwarder::start(&server.url);
    let a =
        RedisLedger::open(&link.url, "lost-batch", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    let keyless = || Command::Acquire(Request::flow(FlowId(0)));
    let granted = |r: Result<callgate_backend::Executed, callgate_backend::Error>| match r.expect("answered").outcome {
        Outcome::Decided { decision: Decision::Granted { .. }, lease: Some(l), .. } => l.id,
        other => panic!("expected a grant: {other:?}"),
    };
    granted(a.execute_async(keyless()).await); // the shared connection is open

    link.lose_next_reply();
    let id = granted(a.execute_async(keyless()).await);
    assert_eq!(a.leases().iter().map(|l| l.id).filter(|l| *l == id).count(), 1, "granted once, and answered");
    assert_eq!(a.leases().len(), 2);
    granted(a.execute_async(keyless()).await); // and the next batch goes on a new connection

    link.lose_next_request();
    let e = a.execute_async(keyless()).await.expect_err("Redis never saw it");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert_eq!(a.leases().len(), 3, "and it granted nothing");

    link.hold_next_request();
    let e = a.execute_async(keyless()).await.expect_err("not run yet");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    link.deliver_held();
    assert_eq!(a.leases().len(), 3, "refused when it came");

    let entries = a.events_after(None, 100).expect("the stream");
    assert!(entries.iter().all(|c| c.tag.is_none()), "no entry waits for a settle mark: {entries:?}");

    // Only a batch with an acquire without a key keeps its answer: a keyed one's retry
    // finds its lease.
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let mut kept = || -> Vec<(String, Option<Vec<u8>>)> {
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:o:*", a.key_prefix())).query(&mut conn).expect("KEYS");
        keys.into_iter().map(|k| (k.clone(), redis::cmd("GET").arg(&k).query(&mut conn).expect("GET"))).collect()
    };
    let before = kept();
    assert!(!before.is_empty(), "the keyless acquires' answers were kept");
    granted(a.execute_async(call(0, "keyed")).await);
    assert_eq!(kept(), before);
}
