//! The layout of a domain's keys in Redis changed (each idempotency key a string of its
//! own instead of a field of one hash, leases stored in the shape of their answers): a
//! domain written by the layout before is migrated in place by the next node of this
//! version that opens it, and until then every other command of this version refuses it
//! rather than misread it. `fixtures/ledger_layout1.lua` is the script of the layout
//! before, as it was released; it writes the old state here.

use callgate_backend::{Command, ErrorKind, LeaseRef, LedgerBackend};
use callgate_core::clock::{Clock as _, ManualClock};
use callgate_core::{FlowId, LedgerSpec, Request};
use callgate_store_redis::{RedisLedger, Time};
use support::Server;

mod support;

const OLD_SCRIPT: &str = include_str!("fixtures/ledger_layout1.lua");
const OLD_FUNCTION: &str = "callgate_layout1_test";

fn spec() -> LedgerSpec {
    support::one_pool_spec(2, 60_000, 30_000)
}

/// One call of the layout before's function on `domain`.
fn old_call(conn: &mut redis::Connection, domain: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut fcall = redis::cmd("FCALL");
    fcall.arg(OLD_FUNCTION).arg(1).arg(format!("{{cg:{domain}}}:m"));
    for a in args {
        fcall.arg(*a);
    }
    fcall.query(conn)
}

/// The three acquires both domains get: two grants (one with an owner) and a waiting ticket.
fn requests() -> [Request; 3] {
    [
        Request::flow(FlowId(0)).with_key("a").with_owner("team"),
        Request::flow(FlowId(0)).with_key("b"),
        Request::flow(FlowId(0)).with_key("c"),
    ]
}

#[test]
fn a_domain_of_the_layout_before_is_migrated_by_open_and_refused_until_then() {
    let server = Server::start();
    let clock = ManualClock::at(1_800_000_000_000);
    let time = || Time::Clock(clock.clone());
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_connection().unwrap();
    let source = format!("#!lua name={OLD_FUNCTION}\n{}", OLD_SCRIPT.replace("__CALLGATE_FUNCTION__", OLD_FUNCTION));
    redis::cmd("FUNCTION").arg("LOAD").arg(source).query::<String>(&mut conn).expect("load the old library");

    // The reference: the same commands on a domain of this layout.
    let reference = RedisLedger::open(&server.url, "ref", &spec(), time()).expect("open");
    for req in requests() {
        reference.execute(Command::Acquire(req)).expect("acquire");
    }
    let stored: String = redis::cmd("GET").arg("{cg:ref}:s").query(&mut conn).unwrap();
    let json = stored.strip_prefix("layout2:").expect("the spec is stored with its layout's head");

    // The same state written by the layout before.
    let now = clock.now_ms().to_string();
    old_call(&mut conn, "mig", &["open", &now, json]).expect("old open");
    old_call(&mut conn, "mig", &["acquire", &now, "f", "0", "=a", "", "", "", "=team"]).expect("old acquire");
    old_call(&mut conn, "mig", &["acquire", &now, "f", "0", "=b", "", "", "", ""]).expect("old acquire");
    old_call(&mut conn, "mig", &["acquire", &now, "f", "0", "=c", "", "", "", ""]).expect("old acquire");
    let old_keys: usize = redis::cmd("HLEN").arg("{cg:mig}:K").query(&mut conn).unwrap();
    assert_eq!(old_keys, 3, "the layout before keeps its keys in one hash");

    // This version's commands refuse the old layout, and say what to do.
    // (A domain of this layout whose spec is put back as the layout before stored it.)
    let early = RedisLedger::open(&server.url, "early", &spec(), time()).expect("open");
    redis::cmd("SET").arg("{cg:early}:s").arg(json).query::<()>(&mut conn).unwrap();
    let refused = early.execute(Command::Acquire(Request::flow(FlowId(0)))).expect_err("an old layout is not read");
    assert_eq!(refused.kind, ErrorKind::Unavailable);
    assert!(refused.to_string().contains("older callgate"), "{refused}");

    // Opening migrates: the same leases, tickets, pools and counters as the reference.
    let migrated = RedisLedger::open(&server.url, "mig", &spec(), time()).expect("open migrates");
    let exists: usize = redis::cmd("EXISTS").arg("{cg:mig}:K").query(&mut conn).unwrap();
    assert_eq!(exists, 0, "the old hash of keys is gone");
    assert_eq!(migrated.leases(), reference.leases());
    assert_eq!(migrated.tickets(), reference.tickets());
    assert_eq!(migrated.pools(), reference.pools());
    assert_eq!(migrated.counters(), reference.counters());
    assert_eq!(migrated.lease_by_key("a"), reference.lease_by_key("a"));
    assert_eq!(migrated.ticket_by_key("c"), reference.ticket_by_key("c"));

    // And it goes on as the reference does: a retried key, a release by key that grants the
    // waiting ticket, a release by the wrong owner.
    clock.advance(5_000);
    let next = [
        Command::Acquire(Request::flow(FlowId(0)).with_key("b")),
        Command::Release { lease: LeaseRef::Key("a".into()), owner: Some("other".into()) },
        Command::Release { lease: LeaseRef::Key("a".into()), owner: Some("team".into()) },
        Command::EndCall("c".into()),
        Command::Release { lease: LeaseRef::Key("b".into()), owner: None },
    ];
    for cmd in next {
        let want = reference.execute(cmd.clone()).expect("reference");
        let got = migrated.execute(cmd.clone()).expect("migrated");
        assert_eq!((got.outcome, got.events), (want.outcome, want.events), "{cmd:?}");
    }
    assert_eq!(migrated.pools(), reference.pools());

    // A node of the layout before fails on the migrated domain rather than misread it.
    assert!(old_call(&mut conn, "mig", &["r_counts", &now]).is_err(), "the old script cannot read the new layout");
}

/// A keyed lease's string outlives its lease when a command fails midway between the two
/// (Redis does not roll back; the pools are counted again from the leases stored). Such a
/// key is no key: an acquire with it is granted anew, and a release or a call's end by it
/// releases nothing, so the pools keep counting exactly what is held. (Here the lease is
/// taken out of the leases' sorted set by hand, and a reopen counts the pools again.)
#[test]
fn a_key_whose_lease_is_gone_is_no_key() {
    let server = Server::start();
    let clock = ManualClock::at(1_800_000_000_000);
    let open = || RedisLedger::open(&server.url, "dangling", &spec(), Time::Clock(clock.clone())).expect("open");
    let b = open();
    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_connection().unwrap();
    let granted = |b: &RedisLedger, key: &str| match b.execute(Command::Acquire(Request::flow(FlowId(0)).with_key(key)))
    {
        Ok(e) => match e.outcome {
            callgate_backend::Outcome::Decided {
                decision: callgate_core::Decision::Granted { lease, existing },
                ..
            } => (lease, existing),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e}"),
    };
    let (a, _) = granted(&b, "a");
    let (c, _) = granted(&b, "c");
    for id in [a, c] {
        let _: usize =
            redis::cmd("ZREMRANGEBYSCORE").arg("{cg:dangling}:L").arg(id.0).arg(id.0).query(&mut conn).unwrap();
    }
    let b = open();
    assert_eq!(b.pools()[0].used, 0, "the reopen counts what is stored");

    let released = b.execute(Command::Release { lease: LeaseRef::Key("a".into()), owner: None }).expect("release");
    assert_eq!(released.outcome, callgate_backend::Outcome::Released(None));
    assert!(released.events.is_empty());
    let ended = b.execute(Command::EndCall("c".into())).expect("end call");
    assert!(ended.events.is_empty(), "{ended:?}");
    assert_eq!(b.pools()[0].used, 0);

    let (again, existing) = granted(&b, "c");
    assert!(!existing && again != c, "granted anew: {again:?}");
    assert_eq!(b.lease_by_key("c").map(|l| l.id), Some(again));
    assert_eq!(b.pools()[0].used, 1);
}
