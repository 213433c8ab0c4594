//! A rough rate of acquire + release pairs through one `RedisLedger` (one node) on Redis's
//! own clock, from many threads, to compare with `redis-benchmark -c 64 EVAL "return 1" 0`
//! against the same Redis:
//!
//! ```text
//! cargo run -p callgate-store-redis --example rate -- redis://127.0.0.1:6379/ 64 100000
//! ```
//!
//! Arguments: the Redis URL, the number of threads, the number of pairs in all.

use callgate_backend::{Command, LeaseRef, LedgerBackend, Outcome};
use callgate_core::{ClassId, ClassSpec, Decision, FlowId, FlowSpec, LedgerSpec, PoolId, PoolSpec, PoolUnits, Request};
use callgate_store_redis::{RedisLedger, Time};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("redis://127.0.0.1:6379/", String::as_str);
    let threads: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let pairs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let spec = LedgerSpec {
        classes: vec![ClassSpec { name: "calls".into(), priority: 0 }],
        pools: vec![PoolSpec { name: "account".into(), limit: 1_000_000, reserve: vec![] }],
        flows: vec![FlowSpec {
            name: "calls".into(),
            pools: vec![PoolUnits { pool: PoolId(0), units: 1 }],
            class: ClassId(0),
            lease_ttl_ms: 60_000,
            queue: None,
        }],
        ..LedgerSpec::default()
    };
    #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
    let domain =
        format!("rate-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let ledger = Arc::new(RedisLedger::open(url, &domain, &spec, Time::Server).expect("open the ledger"));
    let next = Arc::new(AtomicU64::new(0));
    #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
    let start = std::time::Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (ledger, next) = (ledger.clone(), next.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < pairs {
                    let got = ledger.execute(Command::Acquire(Request::flow(FlowId(0)))).expect("acquire");
                    let Outcome::Decided { decision: Decision::Granted { lease, .. }, .. } = got.outcome else {
                        panic!("not granted: {got:?}");
                    };
                    ledger.execute(Command::Release { lease: LeaseRef::Id(lease), owner: None }).expect("release");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{pairs} acquire+release pairs from {threads} threads in {secs:.2} s: {:.0} pairs/s ({:.0} scripts/s)",
        pairs as f64 / secs,
        2.0 * pairs as f64 / secs
    );
    assert_eq!(ledger.counts(), (0, 0));
}
