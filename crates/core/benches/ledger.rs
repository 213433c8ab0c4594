//! How many acquire + release pairs the ledger decides per second, on one core.
//!
//! Each iteration is one call's whole life in the ledger: a request that is granted,
//! then released, with the events of both drained as the governor would, and a tick
//! every 1,024 pairs (the server ticks on a timer; the tick also sweeps the expiry
//! entries that releases leave behind). The pair is granted and released within the
//! same millisecond, so every hold observed is 0 ms (the hardest case for the ledger's
//! hold-time mean, which once decayed into slow subnormal floats here). The shapes:
//!
//! - `single-pool`: an inbound flow on one account pool (limit 10, reserve
//!   `{ inbound = 3 }`) whose outbound share is in use by 7 live outbound leases.
//! - `three-pools`: the same call also needs its assistant and its phone number.
//! - `…/0-waiting` and `…/10000-waiting`: with 10,000 outbound tickets waiting in the
//!   account pool. They are realistic campaign leads parked behind the inbound reserve:
//!   outbound needs 1 + 3 reserved units and only 3 are free, so they keep waiting while
//!   inbound calls come and go, and every release runs the dispatch over their line
//!   (which must stop at the first ticket that does not fit instead of walking 10,000).
//! - `single-pool-keyed`: as `single-pool`, with a 36-character call id as the
//!   idempotency key (keys are made ahead, so the bench measures the ledger's hashing
//!   and bookkeeping, not string formatting).
//!
//! Run: `cargo bench -p callgate-core --bench ledger`.

use callgate_core::{
    ClassId, ClassSpec, FlowId, FlowSpec, Ledger, LedgerSpec, Millis, PoolId, PoolSpec, PoolUnits, QueueSpec, Request,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;

const INBOUND: ClassId = ClassId(0);
const OUTBOUND: ClassId = ClassId(1);
/// Long enough that nothing waiting times out and no lease expires during a run.
const DAY_MS: u64 = 24 * 3600 * 1000;

struct Setup {
    ledger: Ledger,
    inbound: FlowId,
}

/// An account (limit 10, 3 held for inbound) with 7 outbound calls in progress, and
/// `waiting` outbound tickets parked behind the reserve. With `pools == 3` inbound calls
/// also need an assistant and a phone number slot.
fn setup(pools: usize, waiting: usize) -> Setup {
    let pool = |name: &str, limit: u32, reserve: Vec<(ClassId, u32)>| PoolSpec { name: name.into(), limit, reserve };
    let mut pool_specs = vec![pool("account", 10, vec![(INBOUND, 3)])];
    if pools == 3 {
        pool_specs.push(pool("assistant", 10, vec![]));
        pool_specs.push(pool("number", 10, vec![]));
    }
    let units = |ids: &[u32]| ids.iter().map(|&p| PoolUnits { pool: PoolId(p), units: 1 }).collect::<Vec<_>>();
    let inbound_pools: Vec<u32> = (0..pools as u32).collect();
    let spec = LedgerSpec {
        classes: vec![
            ClassSpec { name: "inbound".into(), priority: 50 },
            ClassSpec { name: "outbound".into(), priority: 10 },
        ],
        pools: pool_specs,
        flows: vec![
            FlowSpec {
                name: "support".into(),
                pools: units(&inbound_pools),
                class: INBOUND,
                lease_ttl_ms: DAY_MS,
                queue: Some(QueueSpec { max_wait_ms: 60_000, max_len: None }),
            },
            FlowSpec {
                name: "campaign".into(),
                pools: units(&[0]),
                class: OUTBOUND,
                lease_ttl_ms: DAY_MS,
                queue: Some(QueueSpec { max_wait_ms: DAY_MS, max_len: None }),
            },
        ],
        ..LedgerSpec::default()
    };
    let mut ledger = Ledger::new(&spec).expect("valid spec");
    let inbound = ledger.flow_id("support").unwrap();
    let campaign = ledger.flow_id("campaign").unwrap();
    for _ in 0..7 {
        let d = ledger.acquire(Request::flow(campaign), 0).unwrap();
        assert!(matches!(d, callgate_core::Decision::Granted { .. }));
    }
    for _ in 0..waiting {
        let d = ledger.acquire(Request::flow(campaign), 0).unwrap();
        assert!(matches!(d, callgate_core::Decision::Queued { .. }));
    }
    ledger.drain_events().for_each(drop);
    Setup { ledger, inbound }
}

/// Runs one acquire + release pair per iteration.
fn pairs(c: &mut Criterion, group: &str, pools: usize, keys: Option<&[Arc<str>]>) {
    let mut g = c.benchmark_group("acquire_release");
    g.throughput(Throughput::Elements(1));
    for waiting in [0usize, 10_000] {
        let Setup { mut ledger, inbound } = setup(pools, waiting);
        let mut events = Vec::with_capacity(1024);
        let mut now: Millis = 1;
        let mut n: usize = 0;
        g.bench_function(BenchmarkId::new(group, format!("{waiting}-waiting")), |b| {
            b.iter(|| {
                let mut req = Request::flow(inbound);
                if let Some(keys) = keys {
                    req.key = Some(keys[n % keys.len()].clone());
                }
                let lease = match ledger.acquire(req, now) {
                    Ok(callgate_core::Decision::Granted { lease, .. }) => lease,
                    other => panic!("the inbound call was not granted: {other:?}"),
                };
                black_box(ledger.release(lease, now));
                ledger.take_events(&mut events);
                events.clear();
                n += 1;
                if n.is_multiple_of(1024) {
                    now += 1;
                    ledger.tick(now);
                }
            })
        });
        assert_eq!(ledger.ticket_count(), waiting, "the parked tickets stay parked");
    }
    g.finish();
}

fn single_pool(c: &mut Criterion) {
    pairs(c, "single-pool", 1, None);
}

fn three_pools(c: &mut Criterion) {
    pairs(c, "three-pools", 3, None);
}

fn single_pool_keyed(c: &mut Criterion) {
    // Shaped like provider call ids (36 characters).
    let keys: Vec<Arc<str>> =
        (0..4096u64).map(|i| Arc::from(format!("{:08x}-5c1d-4e2f-9a3b-{:012x}", i * 2_654_435_761, i))).collect();
    assert_eq!(keys[0].len(), 36);
    pairs(c, "single-pool-keyed", 1, Some(&keys));
}

criterion_group!(benches, single_pool, three_pools, single_pool_keyed);
criterion_main!(benches);
