//! Bytes of heap per live lease, measured with a counting global allocator.
//!
//! Grants 1,000,000 leases that stay live (a long TTL, nothing released) and reports
//! how much the heap grew, divided by the number of leases, for three shapes of call:
//! through a flow without a key, through a flow with a 36-character call id as key (the
//! realistic case: every provider call carries one), and for explicit pools with a key
//! (each request then brings its own pool list). Events are drained as the governor
//! would, so they do not count. The target is at most 512 bytes per live lease.
//!
//! Run: `cargo run --release -p callgate-core --example lease_memory`.
// A counting allocator is the one unsafe code in the workspace: it only forwards to the
// system allocator and counts.
#![allow(unsafe_code)]

use callgate_core::{ClassId, ClassSpec, Decision, FlowSpec, Ledger, LedgerSpec, PoolId, PoolSpec, PoolUnits, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The system allocator, keeping a running total of the bytes handed out.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const LEASES: usize = 1_000_000;
const INBOUND: ClassId = ClassId(0);

/// How a call asks.
#[derive(Clone, Copy)]
enum Shape {
    FlowKeyless,
    FlowKeyed,
    PoolsKeyed,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::FlowKeyless => "flow, no key",
            Shape::FlowKeyed => "flow, 36-char call id key",
            Shape::PoolsKeyed => "explicit pools, 36-char call id key",
        }
    }
}

/// A provider-style call id: 36 characters, unique per `i`.
fn call_id(i: usize) -> String {
    format!("{:08x}-7d2c-4a1b-9e3f-{:012x}", (i as u64).wrapping_mul(2_654_435_761) as u32, i)
}

fn spec() -> LedgerSpec {
    LedgerSpec {
        classes: vec![ClassSpec { name: "inbound".into(), priority: 50 }],
        pools: vec![PoolSpec { name: "account".into(), limit: 2 * LEASES as u32, reserve: vec![] }],
        flows: vec![FlowSpec {
            name: "support".into(),
            pools: vec![PoolUnits { pool: PoolId(0), units: 1 }],
            class: INBOUND,
            lease_ttl_ms: 2 * 3600 * 1000,
            queue: None,
        }],
        ..LedgerSpec::default()
    }
}

/// Heap bytes per live lease for one shape.
fn measure(shape: Shape) -> f64 {
    let mut ledger = Ledger::new(&spec()).expect("valid spec");
    let flow = ledger.flow_id("support").unwrap();
    let mut events = Vec::with_capacity(1024);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..LEASES {
        let req = match shape {
            Shape::FlowKeyless => Request::flow(flow),
            Shape::FlowKeyed => Request::flow(flow).with_key(call_id(i)),
            Shape::PoolsKeyed => {
                let pools: Arc<[PoolUnits]> = Arc::from([PoolUnits { pool: PoolId(0), units: 1 }]);
                Request::pools(pools, INBOUND).with_key(call_id(i))
            }
        };
        let d = ledger.acquire(req, i as u64 / 1000).expect("valid request");
        assert!(matches!(d, Decision::Granted { existing: false, .. }));
        if i.is_multiple_of(1024) {
            ledger.take_events(&mut events);
            events.clear();
        }
    }
    ledger.take_events(&mut events);
    events.clear();
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    assert_eq!(ledger.lease_count(), LEASES);
    let per_lease = (after - before) as f64 / LEASES as f64;
    drop(ledger);
    per_lease
}

fn main() {
    println!("live leases: {LEASES}");
    for shape in [Shape::FlowKeyless, Shape::FlowKeyed, Shape::PoolsKeyed] {
        let bytes = measure(shape);
        let verdict = if bytes <= 512.0 { "within" } else { "OVER" };
        println!("{:<38} {bytes:>7.1} bytes per live lease ({verdict} the 512-byte target)", shape.label());
    }
}
