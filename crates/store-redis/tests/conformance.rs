//! The conformance suite (`callgate_backend::conformance`) against the Redis backend: the
//! scripted scenarios, and random command sequences compared step by step with the pure
//! ledger, with restarts (a new backend over the same keys) in between; and the model's
//! invariants read back from Redis's own keys after a random history.
//!
//! Each test starts a private `redis-server` on a free port (no persistence) and stops it
//! at the end; without `redis-server` on the PATH the tests fail and say so.

use callgate_backend::conformance::{self, Harness};
use callgate_backend::{Command, LeaseRef, LedgerBackend};
use callgate_core::clock::ManualClock;
use callgate_core::{ClassId, FlowId, LedgerSpec, PoolId, PoolUnits, Request};
use callgate_store_redis::{RedisLedger, Time};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use support::Server;

mod support;

/// Opens each backend under a domain of its own; a restart opens a new backend over the
/// same domain. Futures run on a runtime of the harness's own (`execute_async` talks to
/// Redis over a tokio connection).
struct Redis {
    server: Server,
    domains: u64,
    domain: String,
    rt: tokio::runtime::Runtime,
}

impl Redis {
    fn new() -> Redis {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Redis { server: Server::start(), domains: 0, domain: String::new(), rt }
    }

    fn start(&self, spec: &LedgerSpec, clock: Arc<ManualClock>) -> RedisLedger {
        RedisLedger::open(&self.server.url, &self.domain, spec, Time::Clock(clock)).expect("open the Redis ledger")
    }
}

impl Harness for Redis {
    type Backend = RedisLedger;

    fn open(&mut self, spec: &LedgerSpec, clock: Arc<ManualClock>) -> RedisLedger {
        self.domains += 1;
        self.domain = format!("test-{}-{}", std::process::id(), self.domains);
        self.start(spec, clock)
    }

    fn restart(&mut self, backend: RedisLedger, spec: &LedgerSpec, clock: Arc<ManualClock>) -> RedisLedger {
        drop(backend);
        self.start(spec, clock)
    }

    fn block_on<F: Future>(&mut self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

#[test]
fn the_redis_backend_passes_every_scenario() {
    conformance::run_scenarios(&mut Redis::new());
}

#[test]
fn the_redis_backend_agrees_with_the_reference_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = conformance::seeds(10);
    let mut h = Redis::new();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 300);
    }
}

#[test]
fn commands_submitted_at_once_agree_with_the_reference_one_by_one() {
    // A busy node submits many commands at once; the backend runs them in batches.
    let mut h = Redis::new();
    for seed in 0..conformance::seeds(4) {
        conformance::differential_at_once(&mut h, seed, 60);
    }
}

/// Reads one pool's hash (`{cg:…}:p<i>`) as Redis holds it.
fn pool_fields(conn: &mut redis::Connection, prefix: &str, pool: usize) -> HashMap<String, i64> {
    let raw: HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("{prefix}:p{pool}")).query(conn).expect("HGETALL");
    raw.into_iter().filter_map(|(k, v)| v.parse::<i64>().ok().map(|v| (k, v))).collect()
}

#[test]
fn the_invariants_hold_in_redis_after_a_random_history() {
    let server = Server::start();
    let spec = conformance::account_spec();
    let clock = ManualClock::at(1_800_000_000_000);
    let b = RedisLedger::open(&server.url, "invariants", &spec, Time::Clock(clock.clone())).expect("open");
    let mut conn = redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).expect("connect");
    let prefix = b.key_prefix().to_owned();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let (inbound, outbound) = (0u16, 1u16);
    for step in 0..2_000 {
        let cmd = match next(10) {
            0..=4 => {
                let flow = FlowId(next(2) as u32);
                let mut req = if next(4) == 0 {
                    Request::pools([PoolUnits { pool: PoolId(0), units: 1 + next(2) as u32 }], ClassId(next(2) as u16))
                } else {
                    Request::flow(flow)
                };
                if next(3) == 0 {
                    req = req.with_ttl(1_000 + next(5_000));
                }
                Command::Acquire(req.with_key(format!("k{}", next(40))))
            }
            5..=6 => Command::Release { lease: LeaseRef::Key(format!("k{}", next(40)).into()), owner: None },
            7 => Command::Cancel(callgate_core::TicketId(next(200))),
            8 => Command::Tick,
            _ => {
                clock.advance(next(2_000));
                Command::Tick
            }
        };
        b.execute(cmd).unwrap_or_else(|e| panic!("step {step}: {e}"));
        let fields = pool_fields(&mut conn, &prefix, 0);
        let limit = fields["limit"];
        let used = fields["used"];
        let by_class = |k: u16| fields.get(&format!("u{k}")).copied().unwrap_or(0);
        // No pool over its limit (the limit never moves here); the units by class add up.
        assert!(used <= limit, "step {step}: {used} used of {limit}");
        assert_eq!(used, by_class(inbound) + by_class(outbound), "step {step}");
        // The two units reserved for inbound: outbound never holds more than limit - 2.
        assert!(by_class(outbound) <= limit - 2, "step {step}: outbound holds {}", by_class(outbound));
        // What the pool counts is what the live leases hold.
        let leases = b.leases();
        let held: u64 = leases.iter().flat_map(|l| l.pools.iter()).map(|pu| u64::from(pu.units)).sum();
        assert_eq!(used as u64, held, "step {step}");
        let expiries: usize = redis::cmd("ZCARD").arg(format!("{prefix}:x")).query(&mut conn).expect("ZCARD");
        assert_eq!(expiries, leases.len(), "step {step}: one expiry per live lease");
        let line: i64 = redis::cmd("ZCARD").arg(format!("{prefix}:q0")).query(&mut conn).expect("ZCARD");
        assert_eq!(fields.get("w").copied().unwrap_or(0), line, "step {step}: the pool counts its line");
        assert_eq!(b.counts().1 as i64, line, "step {step}: every waiting ticket stands in the one line");
        // Nobody waits while a request of its class would fit: the line is claimed only
        // when the first ticket in it does not fit.
        let waiting = b.waiting(1);
        if let Some(first) = waiting.first() {
            let free = fields["cap"] - used;
            let reserve_above = if first.ticket.class == ClassId(outbound) { 2 } else { 0 };
            let units = i64::from(first.ticket.pools[0].units);
            assert!(free < units + reserve_above, "step {step}: {first:?} waits with {free} free");
        }
    }
}
