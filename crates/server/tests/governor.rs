//! The governor's request paths run their ledger commands without the governor's lock
//! (`LedgerBackend::execute_async`: on Redis many are in flight at once). These tests drive
//! a governor over the embedded backend directly:
//! - a waiting caller whose ticket is granted *between* its acquire's command and the
//!   registration of its waiter (another command's wake finds nobody waiting) is answered
//!   at once, not when its wait runs out;
//! - many callers at once on a multi-threaded runtime, waiting in line and releasing,
//!   never hold more than the pool: an oracle counts a lease from the grant's receipt to
//!   the release's send, which can only undercount what the ledger holds.

use callgate_backend::conformance::account_spec;
use callgate_backend::{
    BoxFuture, Command, Error, Executed, Health, LeaseFilter, LedgerBackend, Outcome, TicketRead, Waiting,
};
use callgate_core::clock::{Clock, ManualClock};
use callgate_core::{Decision, Lease, LeaseId, PoolView, Ticket, TicketId};
use callgate_governor::{AcquireRequest, Answer, Edge, Governor, Target};
use callgate_store::{Embedded, Restoring};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const T0: u64 = 1_800_000_000_000;

/// The embedded backend, with one hook: when armed, the next acquire that is queued has,
/// before its answer goes back to the governor, the lease `release` released through the
/// governor (which grants the ticket just queued, while nobody waits for it yet).
struct Racing {
    inner: Arc<Embedded>,
    governor: OnceLock<Arc<Governor>>,
    armed: AtomicBool,
    release: OnceLock<LeaseId>,
}

impl LedgerBackend for Racing {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn execute(&self, cmd: Command) -> Result<Executed, Error> {
        self.inner.execute(cmd)
    }
    fn execute_async(&self, cmd: Command) -> BoxFuture<'_, Result<Executed, Error>> {
        Box::pin(async move {
            let done = self.inner.execute(cmd)?;
            let queued = matches!(&done.outcome, Outcome::Decided { decision: Decision::Queued { .. }, .. });
            if queued && self.armed.swap(false, Ordering::SeqCst) {
                let (g, lease) = (self.governor.get().expect("the governor"), self.release.get().expect("a lease"));
                assert!(g.release(*lease).await.expect("the racing release"), "the racing release freed the slot");
            }
            Ok(done)
        })
    }
    fn durable(&self, commit: u64) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.durable(commit)
    }
    fn submitted(&self) -> u64 {
        self.inner.submitted()
    }
    fn health(&self) -> Health {
        self.inner.health()
    }
    fn dead(&self) -> BoxFuture<'_, String> {
        self.inner.dead()
    }
    fn lease(&self, id: LeaseId) -> Option<Lease> {
        self.inner.lease(id)
    }
    fn lease_by_key(&self, key: &str) -> Option<Lease> {
        self.inner.lease_by_key(key)
    }
    fn ticket(&self, id: TicketId) -> Option<TicketRead> {
        self.inner.ticket(id)
    }
    fn ticket_by_key(&self, key: &str) -> Option<TicketRead> {
        self.inner.ticket_by_key(key)
    }
    fn pools(&self) -> Vec<PoolView> {
        self.inner.pools()
    }
    fn leases_page(
        &self,
        after: LeaseId,
        filter: &LeaseFilter,
        limit: usize,
        max_scan: usize,
    ) -> (Vec<Lease>, Option<LeaseId>) {
        self.inner.leases_page(after, filter, limit, max_scan)
    }
    fn leases(&self) -> Vec<Lease> {
        self.inner.leases()
    }
    fn waiting(&self, limit: usize) -> Vec<Waiting> {
        self.inner.waiting(limit)
    }
    fn tickets(&self) -> Vec<Ticket> {
        self.inner.tickets()
    }
    fn counts(&self) -> (usize, usize) {
        self.inner.counts()
    }
    fn counters(&self) -> (u64, u64) {
        self.inner.counters()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The embedded backend over a fresh directory, on a clock standing at `T0` (a 10-slot
/// account, 2 held back for inbound; inbound callers wait up to 60 s).
fn embedded(dir: &std::path::Path) -> (Arc<Embedded>, callgate_backend::Names, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = ManualClock::at(T0);
    let restoring = Restoring::open(dir, &account_spec(), T0).expect("open the journal");
    let names = restoring.names();
    let backend = restoring.start(names.clone(), 60_000, clock.clone(), |_: &[callgate_core::Event]| {});
    (Arc::new(backend), names, clock)
}

fn inbound(key: String, wait_ms: u64) -> AcquireRequest {
    AcquireRequest {
        target: Target::Flow("inbound".into()),
        key: Some(key),
        ttl_ms: None,
        max_wait_ms: None,
        wait_ms,
        meta: None,
        edge: Edge::Api,
    }
}

#[tokio::test(start_paused = true)]
async fn a_grant_between_the_acquire_and_its_waiter_is_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, names, clock) = embedded(dir.path());
    let racing = Arc::new(Racing {
        inner: inner.clone(),
        governor: OnceLock::new(),
        armed: AtomicBool::new(false),
        release: OnceLock::new(),
    });
    let governor = Arc::new(Governor::new(racing.clone(), inner, clock, names, vec![None, None]));
    assert!(racing.governor.set(governor.clone()).is_ok(), "set once");
    let mut first = None;
    for i in 0..10 {
        match governor.acquire(inbound(format!("held-{i}"), 0)).await.expect("acquire") {
            Answer::Granted(l) => {
                first.get_or_insert(l.id);
            }
            other => panic!("the account has 10 slots: {other:?}"),
        }
    }
    racing.release.set(first.expect("a lease")).expect("set once");
    racing.armed.store(true, Ordering::SeqCst);

    // The eleventh caller waits up to 30 s; its ticket is granted by the racing release
    // before its waiter is registered.
    let started = tokio::time::Instant::now();
    let answer = governor.acquire(inbound("eleventh".into(), 30_000)).await.expect("acquire");
    let waited = started.elapsed();
    assert!(!racing.armed.load(Ordering::SeqCst), "the race was run");
    match answer {
        Answer::Granted(l) => assert_eq!(l.key.as_deref(), Some("eleventh")),
        other => panic!("the freed slot went to the caller in line: {other:?}"),
    }
    // On tokio's paused clock: a missed wake would have answered only when the 30 s ran out.
    assert!(waited < Duration::from_secs(30), "answered at once, not after the wait ({waited:?} of virtual time)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_at_once_never_hold_more_than_the_pool() {
    const CALLERS: usize = 40;
    const ROUNDS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let (inner, names, clock) = embedded(dir.path());
    let governor = Arc::new(Governor::new(inner.clone(), inner, clock, names, vec![None, None]));
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let (governor, held, most) = (governor.clone(), held.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            for r in 0..ROUNDS {
                let key = format!("c{c}-r{r}");
                let lease = match governor.acquire(inbound(key.clone(), 20_000)).await.expect("acquire") {
                    Answer::Granted(l) => l.id,
                    Answer::Queued(t) => {
                        // Not granted within the wait (a very slow machine): leave the line.
                        governor.cancel(t.id).await.expect("cancel");
                        continue;
                    }
                    Answer::Rejected { .. } => continue,
                };
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                held.fetch_sub(1, Ordering::SeqCst);
                assert!(governor.release(lease).await.expect("release"), "{key} released once");
                granted += 1;
            }
            granted
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += t.await.expect("a caller");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 10, "at most the pool's 10 slots were held at once, the oracle saw {most}");
    assert!(granted > CALLERS, "the callers were served ({granted} grants)");
    let pools = governor.pools();
    assert_eq!(pools[0].used, 0, "every lease was released: {pools:?}");
}
