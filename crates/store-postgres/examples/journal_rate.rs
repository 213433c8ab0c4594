//! The journal's group-commit rate on a real PostgreSQL: `clients` tasks each append a
//! grant, wait until it is durable, append its release, wait again, for `seconds`; prints
//! appends and commits per second, appends per commit and the wait for durability.
//!
//! ```sh
//! createdb -h 127.0.0.1 -U postgres cg_bench
//! cargo run --release -p callgate-store-postgres --example journal_rate -- \
//!     postgres://postgres@127.0.0.1:5432/cg_bench 64 10
//! dropdb -h 127.0.0.1 -U postgres cg_bench
//! ```
//!
//! Side by side, the same server's rate for one single-row transaction per client at a
//! time (no group commit of ours; PostgreSQL still shares WAL flushes between sessions):
//! `pgbench -n -c 64 -j 2 -T 10 -f crates/store-postgres/examples/one_row.sql` on the same
//! database.

use callgate_backend::Names;
use callgate_core::{ClassId, Event, Lease, LeaseId, PoolId, PoolUnits};
use callgate_store_postgres::{Journal, Pg, Settings};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn lease(id: u64, now: u64) -> Lease {
    Lease {
        id: LeaseId(id),
        key: Some(format!("bench-call-{id}").into()),
        class: ClassId(0),
        flow: None,
        pools: Arc::from(vec![PoolUnits { pool: PoolId(0), units: 1 }]),
        granted_at: now,
        expires_at: now + 600_000,
        ttl_ms: 600_000,
        meta: None,
        owner: None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/cg_bench".into());
    let clients: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let pg = Pg::open(&url, Settings::default()).unwrap_or_else(|e| panic!("{e}"));
    let names =
        Names { pools: vec!["vapi".into()], config_limits: vec![1_000_000], classes: vec!["c".into()], flows: vec![] };
    // A domain of its own per run: rows of earlier runs do not count.
    #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let journal = Arc::new(Journal::open(&pg, &format!("bench-{run}"), "bench", names, 600_000));
    let next = Arc::new(AtomicU64::new(1));
    let waits = Arc::new(Mutex::new(Vec::<u32>::new()));
    #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
    let start = std::time::Instant::now();
    let until = start + std::time::Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (journal, next, waits) = (journal.clone(), next.clone(), waits.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
                while std::time::Instant::now() < until {
                    let l = lease(next.fetch_add(1, Ordering::Relaxed), run);
                    for e in [
                        Event::Granted { lease: l.clone(), from_ticket: None },
                        Event::Released { lease: l, at: run + 1 },
                    ] {
                        #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
                        let t = std::time::Instant::now();
                        let seq = journal.append(vec![e]);
                        journal.durable(seq).await.unwrap_or_else(|e| panic!("{e}"));
                        mine.push(t.elapsed().as_micros() as u32);
                    }
                }
                waits.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = journal.health();
    let mut waits = std::mem::take(&mut *waits.lock().unwrap_or_else(|p| p.into_inner()));
    waits.sort_unstable();
    let q = |p: f64| {
        waits.get(((waits.len() as f64 * p) as usize).min(waits.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    println!(
        "clients {clients}, {elapsed:.1} s: {:.0} appends/s, {:.0} commits/s, {:.1} appends per commit, durable wait p50 {:.2} ms, p99 {:.2} ms",
        h.appends as f64 / elapsed,
        h.commits as f64 / elapsed,
        h.appends as f64 / h.commits.max(1) as f64,
        f64::from(q(0.5)) / 1000.0,
        f64::from(q(0.99)) / 1000.0,
    );
}
