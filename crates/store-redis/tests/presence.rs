//! The nodes' presence, on the ledger's side ([`RedisLedger::presence`]): the shares a
//! silent node declared are held back from admission (grants and the waiting line's) until
//! it says it again or its hold-back ends, and a node that leaves cleanly holds nothing.

use callgate_backend::{Command, LedgerBackend, Outcome};
use callgate_core::clock::ManualClock;
use callgate_core::{Decision, FlowId, LedgerSpec, Request, TicketId};
use callgate_store_redis::reassert::Reassert;
use callgate_store_redis::{RedisLedger, Time};
use support::Server;

mod support;

const NOW: u64 = 1_800_000_000_000;
const LAPSE: u64 = 3_000;
const KEEP: u64 = 10_000;

fn spec() -> LedgerSpec {
    support::one_pool_spec(10, 600_000, 600_000)
}

/// An acquire that waits up to `wait` ms when it does not fit.
fn acquire(b: &RedisLedger, wait: u64) -> Decision {
    let mut req = Request::flow(FlowId(0));
    req.max_wait_ms = Some(wait);
    match b.execute(Command::Acquire(req)).expect("acquire").outcome {
        Outcome::Decided { decision, .. } => decision,
        other => panic!("{other:?}"),
    }
}

/// A presence of `node` (one of 2) asking `most`: what is held back for silent nodes.
fn say(b: &RedisLedger, node: &str, most: &[u32]) -> Vec<u64> {
    b.presence(node, LAPSE, KEEP, most, 2).expect("presence").held
}

fn granted_ticket(b: &RedisLedger, id: TicketId) -> bool {
    matches!(b.ticket(id), Some(t) if format!("{t:?}").contains("Granted"))
}

#[test]
fn a_silent_nodes_share_is_held_back_until_it_says_it_again_or_its_hold_back_ends() {
    let server = Server::start();
    let clock = ManualClock::at(NOW);
    let b = RedisLedger::open(&server.url, "presence", &spec(), Time::Clock(clock.clone())).expect("open");
    assert_eq!(say(&b, "a", &[3]), vec![0], "a present node holds nothing back");
    assert_eq!(say(&b, "b", &[2]), vec![0]);
    for _ in 0..7 {
        assert!(matches!(acquire(&b, 0), Decision::Granted { .. }));
    }
    // `a` goes silent (b keeps saying it): its 3 units are held back from the 3 free, and
    // b's share is of what is left.
    clock.advance(LAPSE);
    let b_says = b.presence("b", LAPSE, KEEP, &[2], 2).unwrap();
    assert_eq!((b_says.held, b_says.shares), (vec![3], vec![0]), "(10 - 7 - 3) / 2 = 0 for b");
    assert!(matches!(acquire(&b, 0), Decision::Rejected { .. }), "7 used + 3 held back = the limit");
    let Decision::Queued { ticket, .. } = acquire(&b, 600_000) else { panic!("queued") };
    assert_eq!(b.pools()[0].used, 7, "the pool's own view is unchanged");

    // `a` is back: what was held back is free and the line moves. It asks for 3 again
    // and declares what is its share now: (10 - 8) / 2.
    let a_says = b.presence("a", LAPSE, KEEP, &[3], 2).unwrap();
    assert_eq!((a_says.held, a_says.shares), (vec![0], vec![1]));
    assert!(granted_ticket(&b, ticket), "the waiting ticket is granted when the hold-back ends");

    // Silent again, and never back: held back until its last presence + lapse + keep,
    // then forgotten by the sweep, and the line moves.
    clock.advance(LAPSE);
    assert_eq!(say(&b, "b", &[0]), vec![1], "a's declared share");
    assert!(matches!(acquire(&b, 0), Decision::Granted { .. }), "8 used + 1 held back leave one");
    let Decision::Queued { ticket, .. } = acquire(&b, 600_000) else { panic!("queued behind the hold-back") };
    clock.advance(KEEP - 1);
    b.execute(Command::Tick).unwrap();
    assert!(!granted_ticket(&b, ticket), "still held back just before the hold-back ends");
    clock.advance(1);
    b.execute(Command::Tick).unwrap();
    assert!(granted_ticket(&b, ticket), "granted once the hold-back ended");
    assert_eq!(say(&b, "b", &[0]), vec![0]);
}

#[test]
fn a_node_that_leaves_cleanly_holds_nothing_back() {
    let server = Server::start();
    let clock = ManualClock::at(NOW);
    let b = RedisLedger::open(&server.url, "leave", &spec(), Time::Clock(clock.clone())).expect("open");
    say(&b, "a", &[4]);
    b.leave("a").unwrap();
    clock.advance(LAPSE);
    assert_eq!(say(&b, "b", &[4]), vec![0]);
    for _ in 0..10 {
        assert!(matches!(acquire(&b, 0), Decision::Granted { .. }));
    }
    assert!(b.presence("", LAPSE, KEEP, &[1], 2).is_err(), "a node has a name");
    assert!(b.presence("a", LAPSE, KEEP, &[], 2).is_err(), "and a share of each pool");
}

/// Redis restarted empty while node `a` is cut off (it may be admitting on its declared
/// share): the node that restores the ledger puts the nodes' presence back as its own last
/// presence read it, so `a`'s share stays held back until its hold-back ends, where the
/// ledger restored from the journal alone would have admitted on it.
#[test]
fn an_emptied_redis_gets_the_nodes_presence_back_with_the_ledger() {
    let server = Server::start();
    let clock = ManualClock::at(NOW);
    let b = RedisLedger::open(&server.url, "emptied", &spec(), Time::Clock(clock.clone())).expect("open");
    assert!(b.presences().is_empty(), "nothing read before the first presence");
    say(&b, "a", &[3]);
    for _ in 0..4 {
        assert!(matches!(acquire(&b, 0), Decision::Granted { .. }));
    }
    // b's last presence before Redis is lost reads a's: a declared 3 and goes silent.
    assert_eq!(say(&b, "b", &[2]), vec![0]);
    let a_seen = b.presences().into_iter().find(|n| n.node == "a").expect("b read a's presence");
    assert_eq!((a_seen.shares.clone(), a_seen.silent_at), (vec![3], NOW + LAPSE));
    let (leases, counters) = (b.leases(), b.counters());

    let mut conn = redis::Client::open(server.url.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();
    redis::cmd("FUNCTION").arg("FLUSH").query::<()>(&mut conn).unwrap();
    clock.advance(LAPSE);
    let state = Reassert { leases, next_id: counters.0, next_seq: counters.1, ..Reassert::default() };
    assert!(b.reassert(&spec(), &state).expect("reassert"));

    // 4 leases + a's 3 held back: 3 left, of which b's own presence declares its share.
    let (nodes, _) = b.nodes().expect("nodes");
    assert_eq!(
        nodes.iter().map(|n| (n.node.as_str(), n.shares.clone())).collect::<Vec<_>>(),
        vec![("a", vec![3]), ("b", vec![2])]
    );
    assert_eq!(say(&b, "b", &[2]), vec![3], "a's share is held back again");
    for _ in 0..3 {
        assert!(matches!(acquire(&b, 0), Decision::Granted { .. }));
    }
    assert!(matches!(acquire(&b, 0), Decision::Rejected { .. }), "4 + 3 granted + a's 3 = the limit");
    // Until its hold-back ends (its last presence + lapse + keep), as before the loss.
    clock.advance(KEEP);
    b.execute(Command::Tick).unwrap();
    assert!(matches!(acquire(&b, 0), Decision::Granted { .. }), "a's hold-back ended");
}
