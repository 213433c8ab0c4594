//! What only the Redis backend has: Redis's own clock, scripts reloaded after a flush, a
//! Redis that lost its state or went away, two backends (two nodes) on one budget, and a
//! reload of the configuration.

use callgate_backend::conformance::account_spec;
use callgate_backend::{Command, ErrorKind, LeaseRef, LedgerBackend, Names, Outcome};
use callgate_core::clock::ManualClock;
use callgate_core::{Decision, Event, FlowId, FlowSpec, LedgerSpec, PoolId, PoolSpec, Request};
use callgate_store_redis::{RedisLedger, Tag, Time};
use support::Server;

mod support;

const T0: u64 = 1_800_000_000_000;

fn granted(b: &RedisLedger, cmd: Command) -> callgate_core::LeaseId {
    match b.execute(cmd).expect("execute").outcome {
        Outcome::Decided { decision: Decision::Granted { lease, .. }, .. } => lease,
        other => panic!("expected a grant: {other:?}"),
    }
}

/// Two nodes (backends) on one domain of `server`, on one manual clock at T0.
fn two_nodes(server: &Server, domain: &str) -> (RedisLedger, RedisLedger) {
    let clock = ManualClock::at(T0);
    let a = RedisLedger::open(&server.url, domain, &account_spec(), Time::Clock(clock.clone())).expect("node a");
    let b = RedisLedger::open(&server.url, domain, &account_spec(), Time::Clock(clock)).expect("node b");
    (a, b)
}

fn call(flow: u32, key: &str) -> Command {
    Command::Acquire(Request::flow(FlowId(flow)).with_key(key))
}

#[test]
fn on_server_time_the_script_reads_the_redis_clock() {
    let server = Server::start();
    let b = RedisLedger::open(&server.url, "server-time", &account_spec(), Time::Server).expect("open");
    let done = b.execute(call(0, "a")).expect("acquire");
    let Outcome::Decided { lease: Some(lease), .. } = &done.outcome else { panic!("{done:?}") };
    assert_eq!(lease.granted_at, done.now, "the lease is granted at the script's now");
    assert!(done.now > 1_600_000_000_000, "Redis's clock is a Unix time in ms: {}", done.now);
    assert!(b.now_ms() >= done.now, "the backend's now is Redis's clock, which does not go back");
}

#[test]
fn two_nodes_share_one_budget_and_answer_for_each_other() {
    let server = Server::start();
    let (a, b) = two_nodes(&server, "shared");
    for i in 0..4 {
        granted(&a, call(1, &format!("a-{i}")));
        granted(&b, call(1, &format!("b-{i}")));
    }
    // Eight outbound units of ten are taken across both nodes: two are held for inbound.
    let ninth = b.execute(call(1, "b-late")).expect("acquire").outcome;
    assert!(matches!(ninth, Outcome::Decided { decision: Decision::Rejected { .. }, .. }), "{ninth:?}");
    // Node a answers for node b's lease, and releases it.
    assert!(a.lease_by_key("b-0").is_some());
    let freed = a.execute(Command::Release { lease: LeaseRef::Key("b-0".into()), owner: None }).expect("release");
    assert!(matches!(freed.outcome, Outcome::Released(Some(_))));
    assert_eq!(b.pools()[0].used, 7);
    // Ids come from Redis: never the same twice, whichever node hands them out.
    let mut ids: Vec<u64> = a.leases().iter().map(|l| l.id.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), 7);
}

/// The take-back of a grant whose journal commit was lost (cluster mode with PostgreSQL)
/// releases it, unless an acquire retried by its key on another node found it and marked
/// it first: that node journals it to answer "granted", so it stays held, and counted,
/// until it is released. Each is one atomic call, so one comes first: a mark after the
/// take-back finds nothing (that retry answers 503, and the next one is granted anew).
#[test]
fn a_take_back_leaves_a_lease_that_a_retry_by_its_key_found_and_marked() {
    let server = Server::start();
    let (a, b) = two_nodes(&server, "take-back");
    let lost = granted(&a, call(0, "lost"));
    let done = a.take_back(lost, None).expect("take back");
    assert!(matches!(done.outcome, Outcome::Released(Some(_))), "{done:?}");
    assert!(matches!(done.events.as_slice(), [Event::Released { .. }]), "{:?}", done.events);
    assert!(!b.mark_found(lost).expect("mark"), "taken back first: nothing to mark");
    assert_ne!(granted(&b, call(0, "lost")), lost, "a retry after the take-back is a new grant");

    let found = granted(&a, call(0, "found"));
    assert_eq!(granted(&b, call(0, "found")), found, "the retry through node b finds the lease");
    assert!(b.mark_found(found).expect("mark"), "marked while live");
    let done = a.take_back(found, None).expect("take back");
    assert!(matches!(done.outcome, Outcome::Released(None)) && done.events.is_empty(), "{done:?}");
    assert!(a.lease(found).is_some(), "the lease a retry found stays");
    assert_eq!(a.pools()[0].used, 2, "and is counted");
    let freed = b.execute(Command::Release { lease: LeaseRef::Id(found), owner: None }).expect("release");
    assert!(matches!(freed.outcome, Outcome::Released(Some(_))), "its holder releases it as any other");
}

#[test]
fn the_functions_are_loaded_again_after_a_flush() {
    let server = Server::start();
    let b = RedisLedger::open(&server.url, "flush", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    granted(&b, call(0, "before"));
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut conn).expect("FUNCTION FLUSH");
    granted(&b, call(0, "after"));
    assert_eq!(b.counts(), (2, 0));
}

#[test]
fn a_redis_that_lost_its_state_is_unavailable_not_empty() {
    let server = Server::start();
    let b = RedisLedger::open(&server.url, "lost", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    granted(&b, call(0, "held"));
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
    let e = b.execute(call(0, "next")).expect_err("no admission against an empty ledger");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.retryable);
    assert!(b.health().failed.is_some(), "the lost state shows in health");
}

#[test]
fn a_redis_that_went_away_shows_in_health() {
    let mut server = Server::start();
    let b = RedisLedger::open(&server.url, "gone", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    granted(&b, call(0, "held"));
    assert_eq!(b.health().failed, None);
    server.stop();
    let e = b.execute(call(0, "next")).expect_err("Redis is gone");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    let health = b.health();
    assert!(health.failed.is_some(), "{health:?}");
    assert_eq!(health.epoch, 1);
}

/// The account of the scenarios with a third flow, `web`, which a reload removes.
fn with_web(limit: u32) -> LedgerSpec {
    let mut spec = account_spec();
    spec.pools = vec![PoolSpec { name: "vapi".into(), limit, reserve: vec![(callgate_core::ClassId(0), 2)] }];
    let mut web: FlowSpec = spec.flows[0].clone();
    web.name = "web".into();
    spec.flows.push(web);
    spec
}

fn names(spec: &LedgerSpec) -> Names {
    Names {
        pools: spec.pools.iter().map(|p| p.name.as_str().into()).collect(),
        config_limits: spec.pools.iter().map(|p| p.limit).collect(),
        classes: spec.classes.iter().map(|c| c.name.as_str().into()).collect(),
        flows: spec.flows.iter().map(|f| f.name.as_str().into()).collect(),
    }
}

fn reconfigure(spec: &LedgerSpec, caps: Vec<Option<u32>>) -> Command {
    Command::Reconfigure { spec: Box::new(spec.clone()), names: Box::new(names(spec)), caps }
}

#[test]
fn a_reload_keeps_what_is_held_and_grants_what_now_fits() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let b = RedisLedger::open(&server.url, "reload", &with_web(10), Time::Clock(clock)).expect("open");
    let web = granted(&b, call(2, "web-0"));
    for i in 0..9 {
        granted(&b, call(0, &format!("in-{i}")));
    }
    let waits = b.execute(call(0, "waits")).expect("acquire");
    assert!(matches!(waits.outcome, Outcome::Decided { decision: Decision::Queued { .. }, .. }));

    // Pools and classes may not change.
    let mut renamed = with_web(10);
    renamed.pools[0].name = "other".into();
    let refused = b.execute(reconfigure(&renamed, vec![None])).expect_err("a renamed pool is refused");
    assert_eq!(refused.kind, ErrorKind::Invalid);
    assert_eq!(b.counts(), (10, 1), "a refused reload changes nothing");

    // The new configuration: `web` is gone, the pool has 11 units.
    let new = LedgerSpec { flows: account_spec().flows, ..with_web(11) };
    let done = b.execute(reconfigure(&new, vec![None])).expect("reload");
    assert_eq!(done.outcome, Outcome::Done);
    assert!(
        matches!(done.events.first(), Some(Event::LimitChanged { pool: PoolId(0), limit: 11, cap: 11, .. })),
        "{:?}",
        done.events
    );
    assert!(done.events.iter().any(|e| matches!(e, Event::Granted { from_ticket: Some(_), .. })));
    let kept = b.lease(web).expect("a removed flow's lease lives on");
    assert_eq!(kept.flow, None);
    assert_eq!(b.counts(), (11, 0));
    assert_eq!(b.pools()[0].limit, 11);

    // A runtime limit survives a reload that leaves the configured limit as it was.
    b.execute(Command::SetLimit { pool: PoolId(0), limit: 12 }).expect("set limit");
    let again = b.execute(reconfigure(&new, vec![Some(5)])).expect("reload");
    let pool = &b.pools()[0];
    assert_eq!((pool.limit, pool.cap), (12, 5), "{:?}", again.events);
}

#[test]
fn a_node_opened_with_a_changed_configuration_takes_it_as_a_reload_would() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let b = RedisLedger::open(&server.url, "restart", &with_web(10), Time::Clock(clock.clone())).expect("open");
    let web = granted(&b, call(2, "web-0"));
    drop(b);
    let new = LedgerSpec { flows: account_spec().flows, ..with_web(11) };
    let b = RedisLedger::open(&server.url, "restart", &new, Time::Clock(clock.clone())).expect("reopen");
    assert_eq!(b.lease(web).map(|l| l.flow), Some(None));
    assert_eq!(b.pools()[0].limit, 11);
    let mut other = new.clone();
    other.classes[1].name = "campaign".into();
    let e = RedisLedger::open(&server.url, "restart", &other, Time::Clock(clock)).expect_err("a renamed class");
    assert_eq!(e.kind, ErrorKind::Invalid);
}

#[test]
fn every_node_reads_the_committed_events_in_order() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let a = RedisLedger::open(&server.url, "stream", &account_spec(), Time::Clock(clock.clone())).expect("node a");
    let b = RedisLedger::open(&server.url, "stream", &account_spec(), Time::Clock(clock)).expect("node b");
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(a.execute(call(0, &format!("in-{i}"))).expect("acquire").events);
    }
    assert!(a.execute(Command::Tick).expect("tick").events.is_empty(), "a command without events adds no entry");
    sent.push(a.execute(Command::EndCall("in-1".into())).expect("end call").events);
    let read = b.events_after(None, 100).expect("read the stream");
    assert_eq!(read.iter().map(|c| c.events.clone()).collect::<Vec<_>>(), sent);
    assert!(read.iter().all(|c| c.now == T0));
    // Read on from the last entry: nothing new, then exactly what came after.
    let last = read.last().map(|c| c.id.clone()).expect("entries");
    assert!(b.events_after(Some(&last), 100).expect("read").is_empty());
    let more = a.execute(Command::Release { lease: LeaseRef::Key("in-0".into()), owner: None }).expect("release");
    let next = b.events_after(Some(&last), 100).expect("read");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].events, more.events);
    assert_eq!(b.events_after(Some("not an id"), 1).expect_err("a bad id").kind, ErrorKind::Invalid);
}

/// A node that journals its commands tags their stream entries and, once they are durable,
/// adds a settle mark: the other nodes read both, and whose entries are whose.
#[tokio::test]
async fn tagged_entries_and_settle_marks_reach_every_node() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let a = RedisLedger::open(&server.url, "tags", &account_spec(), Time::Clock(clock.clone())).expect("node a");
    let b = RedisLedger::open(&server.url, "tags", &account_spec(), Time::Clock(clock)).expect("node b");
    let tag = |k| Tag { origin: "a0".into(), k };
    a.execute_tagged(call(0, "one"), Some(&tag(1))).expect("acquire");
    let answers = a.execute_batch(vec![call(0, "two"), call(0, "three")], Some(&tag(2)));
    assert!(answers.iter().all(|r| r.is_ok()), "{answers:?}");
    a.take_back(callgate_core::LeaseId(1), Some(&tag(3))).expect("take back");
    a.execute(call(0, "untagged")).expect("acquire");
    a.mark_settled(&tag(3)).await.expect("mark");
    let read = b.events_after(None, 100).expect("read");
    let tags: Vec<_> = read.iter().map(|c| (c.tag.clone(), c.settles.clone(), c.events.len())).collect();
    assert_eq!(
        tags,
        vec![
            (Some(tag(1)), None, 1),
            (Some(tag(2)), None, 2),
            (Some(tag(3)), None, 1),
            (None, None, 1),
            (None, Some(tag(3)), 0),
        ]
    );
    assert_eq!(read[0].now, T0, "a tag leaves the command's clock as it was");
    // A node of the version before marks reads a mark as a command's entry without events.
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let last: Vec<Entry> = redis::cmd("XREVRANGE")
        .arg(format!("{}:events", a.key_prefix()))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut conn)
        .expect("XREVRANGE");
    let fields = &last[0].1;
    assert_eq!(fields[..2], [("e".to_owned(), vec![0x90]), ("n".to_owned(), b"0".to_vec())], "{fields:?}");
}

/// A reply lost after Redis ran the call (the connection broke on its way back): a tagged
/// call is answered as Redis ran it (Redis kept its answer), so its grant is neither lost
/// to its caller nor held unanswered until its TTL; a request lost before Redis saw it is
/// unavailable and granted nothing. An untagged call's lost reply stays lost.
#[test]
fn a_redis_that_evicts_keys_is_refused() {
    let server = Server::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let e = RedisLedger::open(&server.url, "evicts", &account_spec(), Time::Clock(ManualClock::at(T0)))
        .expect_err("an evicted lease would free its units");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("noeviction"), "{e}");
}

#[test]
fn a_node_waiting_on_the_stream_hears_what_another_commits() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let a = RedisLedger::open(&server.url, "wake", &account_spec(), Time::Clock(clock.clone())).expect("node a");
    let b = std::sync::Arc::new(
        RedisLedger::open(&server.url, "wake", &account_spec(), Time::Clock(clock)).expect("node b"),
    );
    let first = a.execute(call(0, "held")).expect("acquire");
    let seen = b.events_after(None, 10).expect("read");
    let last = seen.last().map(|c| c.id.clone()).expect("an entry");
    let nothing = b.wait_events(Some(&last), std::time::Duration::from_millis(5), 10).expect("wait");
    assert!(nothing.is_empty(), "nothing new: {nothing:?}");
    // Node b waits (for as long as a test may take) while node a releases.
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || b.wait_events(Some(&last), std::time::Duration::from_secs(10), 10))
    };
    let released = a.execute(Command::Release { lease: LeaseRef::Key("held".into()), owner: None }).expect("release");
    let heard = waiter.join().expect("the waiting thread").expect("wait");
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0].events, released.events);
    assert_ne!(first.events, released.events);
}

#[test]
fn the_nodes_caps_are_merged_not_overwritten_and_a_silent_nodes_cap_lapses() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let node = |name: &str| {
        RedisLedger::open(&server.url, "caps", &account_spec(), Time::Clock(clock.clone()))
            .and_then(|l| l.with_cap_source(name, std::time::Duration::from_secs(30)))
            .expect("open")
    };
    let (a, b) = (node("a"), node("b"));
    let set = |l: &RedisLedger, cap: Option<u32>| {
        l.execute(Command::SetCap { pool: PoolId(0), cap }).expect("set cap");
        l.pools()[0].cap
    };
    assert_eq!(set(&a, Some(5)), 5);
    assert_eq!(set(&b, Some(8)), 5, "b's higher cap does not lift a's");
    assert_eq!(set(&b, None), 5, "b's cap ending does not end a's");
    assert_eq!(set(&b, Some(7)), 5);
    assert_eq!(set(&a, None), 7, "a's cap ends: b's stands");
    // b says nothing more (it died): its cap lapses at the sweep after 30 s.
    clock.advance(29_000);
    a.execute(Command::Tick).expect("tick");
    assert_eq!(a.pools()[0].cap, 7);
    clock.advance(2_000);
    let swept = a.execute(Command::Tick).expect("tick");
    assert_eq!(a.pools()[0].cap, 10, "the limit again");
    assert!(swept.events.iter().any(|e| matches!(e, Event::LimitChanged { .. })), "{:?}", swept.events);
    // A node without a source sets the cap as on one node (the conformance suite's way).
    let single = RedisLedger::open(&server.url, "caps", &account_spec(), Time::Clock(clock.clone())).expect("open");
    assert_eq!(set(&single, Some(4)), 4);
}

#[test]
fn one_node_holds_a_duty_and_a_holder_that_lost_it_cannot_renew() {
    use callgate_store_redis::DutyLease;
    let server = Server::start();
    let ledger =
        RedisLedger::open(&server.url, "duty", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    let ttl = std::time::Duration::from_secs(5);
    let a = DutyLease::new(&ledger, "duties", "node-a", ttl).expect("a");
    let b = DutyLease::new(&ledger, "duties", "node-b", ttl).expect("b");
    let first = a.take_or_renew(0).expect("redis").expect("a takes the free lease");
    assert_eq!(b.take_or_renew(0).expect("redis"), None, "b waits while a holds it");
    assert_eq!(a.take_or_renew(1_000).expect("redis"), Some(first), "a renews with its token");
    assert_eq!(a.held(4_000), Some(first));
    assert_eq!(a.held(5_000), None, "a stops on its own before the lease can have run out in Redis");
    assert_eq!(b.held(0), None);
    assert_eq!(a.holder().expect("redis"), Some(("node-a".to_string(), first)));
    // The lease runs out while a is paused (as its TTL would end it); b takes it, with a
    // larger fencing token, and a, back, cannot renew it.
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let _: () = redis::cmd("DEL").arg(format!("{}:duty:duties", ledger.key_prefix())).query(&mut conn).expect("DEL");
    let second = b.take_or_renew(10_000).expect("redis").expect("b takes the lapsed lease");
    assert!(second > first, "fencing tokens only grow: {first} then {second}");
    assert_eq!(a.take_or_renew(10_000).expect("redis"), None, "a's old token renews nothing");
    assert_eq!(a.held(10_000), None);
    // b lets it go at a clean stop: a takes it at once, with a larger token again.
    b.release();
    assert!(a.take_or_renew(11_000).expect("redis").expect("a takes it") > second);
    assert!(DutyLease::new(&ledger, "duties", "bad|name", ttl).is_err(), "a node name cannot fake a token");
}

#[test]
fn an_old_holders_sweep_after_a_takeover_changes_nothing_and_says_why() {
    use callgate_backend::Fence;
    use callgate_store_redis::DutyLease;
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let ledger = RedisLedger::open(&server.url, "fence", &account_spec(), Time::Clock(clock.clone())).expect("open");
    granted(&ledger, Command::Acquire(Request::flow(FlowId(0)).with_key("due").with_ttl(1_000)));
    clock.advance(2_000);
    let ttl = std::time::Duration::from_secs(5);
    let a = DutyLease::new(&ledger, "duties", "node-a", ttl).expect("a");
    let b = DutyLease::new(&ledger, "duties", "node-b", ttl).expect("b");
    let old = a.take_or_renew(0).expect("redis").expect("a takes the lease");
    let fenced = |token: u64, cmd: Command| Command::Fenced {
        fence: Fence { duty: "duties".into(), token },
        cmd: Box::new(cmd),
    };
    // a is paused past its lease; b takes over with a larger token.
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let _: () = redis::cmd("DEL").arg(format!("{}:duty:duties", ledger.key_prefix())).query(&mut conn).expect("DEL");
    let new = b.take_or_renew(0).expect("redis").expect("b takes the lapsed lease");
    // a comes back and sweeps (or repairs) with the token it had: refused in the script,
    // and nothing changed: the lease that fell due is still there, no event was streamed.
    let before = ledger.events_after(None, 100).expect("events").len();
    for cmd in [
        Command::Tick,
        Command::Repair { ended: vec!["due".into()], renew: Vec::new() },
        Command::SetLimit { pool: PoolId(0), limit: 1 },
    ] {
        let e = ledger.execute(fenced(old, cmd)).expect_err("a stale token is refused");
        assert_eq!((e.kind, e.code), (ErrorKind::Conflict, "fenced"), "{e}");
        assert!(e.message.contains(&format!("token {old}")) && e.message.contains(&format!("token {new}")), "{e}");
    }
    assert!(ledger.lease_by_key("due").is_some(), "the old holder's sweep expired nothing");
    assert_eq!(ledger.pools()[0].limit, 10, "nor changed a limit");
    assert_eq!(ledger.events_after(None, 100).expect("events").len(), before, "nothing was committed");
    // Only fenced duties: an acquire cannot ride on a token.
    let e = ledger.execute(fenced(new, call(0, "x"))).expect_err("not a duty");
    assert_eq!(e.kind, ErrorKind::Invalid);
    // The holder's sweep runs, in the same call as the check.
    let swept = ledger.execute(fenced(new, Command::Tick)).expect("the holder sweeps");
    assert!(swept.events.iter().any(|e| matches!(e, Event::Expired { .. })), "{:?}", swept.events);
    assert!(ledger.lease_by_key("due").is_none());
    ledger.execute(fenced(new, Command::SetLimit { pool: PoolId(0), limit: 9 })).expect("the holder's alert acts");
    assert_eq!(ledger.pools()[0].limit, 9);
    // Once nobody holds the lease, nobody's token sweeps.
    b.release();
    let e = ledger.execute(fenced(new, Command::Tick)).expect_err("a lease that ran out");
    assert!(e.message.contains("nobody holds it"), "{e}");
}

#[test]
fn fencing_tokens_keep_growing_when_redis_restarts_empty() {
    use callgate_store_redis::DutyLease;
    let server = Server::start();
    let ledger =
        RedisLedger::open(&server.url, "tokens", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    let ttl = std::time::Duration::from_secs(5);
    let a = DutyLease::new(&ledger, "duties", "node-a", ttl).expect("a");
    let b = DutyLease::new(&ledger, "duties", "node-b", ttl).expect("b");
    let before = a.take_or_renew(0).expect("redis").expect("a takes it");
    // Redis loses everything, the token counter with it: the next holder's token is still
    // larger, so a holder from before can never pass for it.
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
    // A real restart takes longer than a millisecond; this one does not, so wait until
    // Redis's clock has passed the millisecond the first counter started at.
    let redis_ms = |conn: &mut redis::Connection| {
        let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).expect("TIME");
        s * 1000 + us / 1000
    };
    while redis_ms(&mut conn) < before {}
    let after = b.take_or_renew(0).expect("redis").expect("b takes it");
    assert!(after > before, "{before} then {after}");
    assert_eq!(b.holder().expect("redis"), Some(("node-b".to_string(), after)));
}

/// A command that fails midway (here: the domain's deadlines key made a string by hand, so
/// queueing a ticket fails after it wrote part of it). Redis does not roll back: before,
/// the whole batch failed and the pools were not saved, so the grant before it in the
/// batch stayed stored but uncounted, and the next acquire was granted past the limit.
#[test]
fn a_command_that_fails_midway_leaves_the_pools_counting_exactly_what_is_held() {
    let server = Server::start();
    let b = RedisLedger::open(&server.url, "midway", &account_spec(), Time::Clock(ManualClock::at(T0))).expect("open");
    for i in 0..9 {
        granted(&b, call(0, &format!("held-{i}")));
    }
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let deadlines = format!("{}:d", b.key_prefix());
    let _: () = redis::cmd("SET").arg(&deadlines).arg("not a sorted set").query(&mut conn).expect("SET");

    let answers = b.execute_batch(vec![call(0, "last"), call(0, "waits")], None);
    let first = answers[0].as_ref().expect("the grant before the failure keeps its answer");
    assert!(matches!(first.outcome, Outcome::Decided { decision: Decision::Granted { .. }, .. }), "{first:?}");
    let e = answers[1].as_ref().expect_err("queueing failed midway");
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert_eq!(b.pools()[0].used, 10, "the pool counts the ten leases held");
    assert_eq!(b.leases().len(), 10);

    let _: () = redis::cmd("DEL").arg(&deadlines).query(&mut conn).expect("DEL");
    let next = b.execute(call(1, "outbound")).expect("acquire").outcome;
    assert!(matches!(next, Outcome::Decided { decision: Decision::Rejected { .. }, .. }), "no eleventh: {next:?}");
    // The key the failed command left behind is no key: asked again, it queues.
    let again = b.execute(call(0, "waits")).expect("acquire").outcome;
    assert!(matches!(again, Outcome::Decided { decision: Decision::Queued { .. }, .. }), "{again:?}");
    assert_eq!((b.pools()[0].used, b.counts()), (10, (10, 1)));
}

/// An expiry whose lease is gone (left by a command that failed midway) is dropped by the
/// sweep, which otherwise would fail on it every time.
#[test]
fn the_sweep_drops_an_expiry_without_its_lease() {
    let server = Server::start();
    let clock = ManualClock::at(T0);
    let b = RedisLedger::open(&server.url, "orphan", &account_spec(), Time::Clock(clock.clone())).expect("open");
    granted(&b, call(0, "held"));
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let expiries = format!("{}:x", b.key_prefix());
    let _: () =
        redis::cmd("ZADD").arg(&expiries).arg(T0 + 10).arg(format!("{:016}", 999)).query(&mut conn).expect("ZADD");
    clock.advance(20);
    b.execute(Command::Tick).expect("the sweep runs");
    let left: Vec<String> = redis::cmd("ZRANGE").arg(&expiries).arg(0).arg(-1).query(&mut conn).expect("ZRANGE");
    assert_eq!(left.len(), 1, "only the held lease's expiry is left: {left:?}");
    assert_eq!(b.pools()[0].used, 1);
}
