//! Cluster mode: several nodes over one ledger in Redis (`[storage] ledger = "redis://…"`).
//!
//! Every node runs a [`Governor`] over the same [`RedisLedger`] (one budget domain), so
//! every grant is decided by one Lua call in Redis and any node answers for any lease or
//! ticket. Each node keeps its own data directory for what is still local (the call
//! history; without `[storage] database` also call records, callbacks, campaigns and the
//! suppression lists).
//!
//! **One path for the bus.** A node learns of committed events in two ways: its own
//! commands answer with their events, and the domain's event stream carries every node's
//! events in commit order. The bus (metrics, the operating layer's figures, the live
//! stream, the decision log) is fed from the stream only, by one follower thread per node
//! ([`follow`]), so its own events are counted once and everybody's in the same order on
//! every node. Waiters are woken from both: a node's own answer wakes its waiter at once,
//! and the stream wakes a waiter whose ticket another node's release granted (the ledger
//! granted it inside the release's script); a waiter is woken once, whichever comes first.
//! The follower starts from a snapshot (pools and the stream's last id, read in one
//! transaction), so the gauges match the ledger from the first event. A stream that
//! started again (a Redis that restarted empty numbers its entries by its own clock,
//! which may be behind the ids read before) is noticed at the first read that brings
//! nothing (within [`FOLLOW_BLOCK`]): its last entry is then before the follower's, and
//! the follower reads the new stream from its start. With `[storage] database`, the bus
//! shows another node's entry only once that node marked it durable, and reads wait for
//! the bus ([`Following`], `durable`).
//!
//! **Singleton duties.** The lease-expiry sweep (`Command::Tick`), each provider's
//! reconciliation and the evaluation of alerts (and their actions) run on the node that
//! holds the domain's duty lease ([`DutyLease`]: a key in Redis with a TTL and a fencing
//! token), renewed every second for five; when its holder dies the lease runs out and the
//! next node to ask takes it, within about six seconds. A holder that cannot renew stops
//! its duties once its lease may have run out, before anyone else can take it. The
//! ledger enforces it too: the sweep, a reconciliation's repair and an alert's limit
//! change carry the lease's fencing token ([`Duties::fence`], `Command::Fenced`), and the
//! Redis script runs them only while the lease is held with that token, so a former holder
//! that was paused past its lease changes nothing once another node took over. Each
//! campaign's pacing is a duty of its own, with a lease per campaign (with `[storage]
//! database`, where every node shares the campaigns: `crate::campaign::Pacing`).
//!
//! **Cap sources.** Each node's governor keeps its own cap sources (adaptive, cooldown,
//! alerts' caps) and hands its cap of a pool to the ledger as *its* cap: Redis keeps every
//! node's beside the others' and enforces the least, so no node overwrites another's.
//! A node's cap lapses after 30 s unless said again, which every node does every 10 s, so
//! a node that died stops holding a pool down.
//!
//! **Redis unreachable or emptied.** Every command fails as `unavailable` (HTTP 503 with
//! `Retry-After`), nothing is granted, `/healthz` answers 503 with the reason, the
//! `callgate_journal_up` gauge is 0 and the failure is logged. Pools with
//! `on_redis_unavailable = "local_fallback"` admit on the node's own share instead while
//! Redis is unreachable (not emptied): see [`fallback`]. A node that gets no
//! requests notices too: the duty loop reads the ledger every second ([`RedisLedger::check`]),
//! which also clears the failure once Redis answers again. A Redis that restarted empty
//! holds no ledger for the domain: commands keep failing (the script finds no spec)
//! rather than admit against an empty ledger. With `[storage] database` every node
//! re-asserts the acknowledged live leases and waiting tickets from PostgreSQL (the first
//! one's call restores the domain; see `restore`), and admission resumes. Without it
//! nothing can rebuild the ledger: a node restarted then opens a new, empty one.
//!
//! **PostgreSQL** (`[storage] database`): see [`durable`].

pub mod durable;
pub mod fallback;
mod restore;

use crate::clock::Clock;
use callgate_backend::{BoxFuture, Error};
use callgate_core::LedgerSpec;
use callgate_events::bus::LedgerBus;
use callgate_governor::{Governor, SettledViews};
use callgate_store::Names;
use callgate_store_redis::{Committed, DutyLease, RedisLedger, Tag, Time};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The name of the one duty lease that covers every singleton duty of a domain.
const DUTIES: &str = "duties";

/// How long a taken or renewed duty lease lasts without renewal. Five seconds: the duties
/// move within about that after a node dies, and a holder renews five times per TTL.
const DUTY_TTL: Duration = Duration::from_secs(5);

/// How often a node renews (or tries to take) the duty lease and checks Redis.
const DUTY_EVERY: Duration = Duration::from_secs(1);

/// How long the follower blocks on the stream before it looks whether it should stop.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);

/// How long a node's cap of a shared pool holds unless the node says it again (every
/// [`CAPS_EVERY`] rounds of the duty loop): a node that died stops holding a pool down
/// after this.
const CAP_HOLD: Duration = Duration::from_secs(30);

/// Every this many rounds of the duty loop (seconds), a node says its caps again.
const CAPS_EVERY: u32 = 10;

/// After a failed read of the stream, the follower waits this long before the next.
const FOLLOW_RETRY: Duration = Duration::from_millis(250);

/// The longest the follower holds another node's entry back from the bus while that node
/// has not marked it settled: longer than the commit timeout (5 s), within which an
/// append is committed or counts as lost (`Journal::append_started`). A node that died,
/// or cannot reach Redis to mark, holds the others' buses this long at most.
const HOLD_MAX: Duration = Duration::from_secs(6);

/// The most entries the follower holds back at once; beyond, the oldest is published
/// (memory stays bounded whatever a stalled node does).
const MAX_HELD: usize = 50_000;

/// The most origins whose settle marks the follower remembers (each start of a node is a
/// new one); beyond, it forgets them all, and their entries wait for their next mark.
const MAX_ORIGINS: usize = 1_024;

/// The longest a read waits for the follower to show every entry the stream held when
/// it was read (see [`Following`]): an entry is held at most [`HOLD_MAX`], and the
/// follower reads at least every [`FOLLOW_BLOCK`].
const VIEW_WAIT: Duration = Duration::from_secs(8);

/// What a node's follower of the event stream shares with the rest of the node: how many
/// entries it holds back, and how far it has shown the stream. Reads wait on the latter
/// ([`SettledViews`]): a read of the shared ledger (pools, lease lists, a ticket) may see
/// another node's change whose commit is under way; it answers once the follower has
/// shown every entry the stream held after the read, and the follower shows another
/// node's entry only once that node marked it settled.
pub struct Following {
    ledger: Arc<RedisLedger>,
    /// Entries read and held back from the bus until their node marks them settled.
    held: AtomicUsize,
    /// The stream position up to which every entry is shown (or a settle mark).
    shown: tokio::sync::watch::Sender<(u64, u64)>,
}

impl std::fmt::Debug for Following {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Following").field("held", &self.held()).field("shown", &*self.shown.borrow()).finish()
    }
}

impl Following {
    /// For the follower of `ledger`'s stream.
    pub fn new(ledger: Arc<RedisLedger>) -> Following {
        Following { ledger, held: AtomicUsize::new(0), shown: tokio::sync::watch::Sender::new((0, 0)) }
    }

    /// How many entries of other nodes the follower holds back now (the
    /// `callgate_cluster_events_held` gauge).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// After [`publish`], which showed up to entry `shown`: with nothing held, everything
    /// read (up to `last`) is shown.
    fn shown_up_to(&self, shown: Option<String>, held: &VecDeque<(Committed, Instant)>, last: &str) {
        self.held.store(held.len(), Ordering::Relaxed);
        match (held.is_empty(), shown) {
            (true, _) => self.show(last),
            (false, Some(id)) => self.show(&id),
            (false, None) => {}
        }
    }

    /// Every entry up to stream entry `id` is shown.
    fn show(&self, id: &str) {
        if let Some(at) = callgate_store_redis::stream_position(id) {
            self.shown.send_if_modified(|shown| {
                let later = at > *shown;
                if later {
                    *shown = at;
                }
                later
            });
        }
    }
}

impl SettledViews for Following {
    /// The stream's newest entry after the read, then until the follower showed it. Redis
    /// unreachable (or known to be): nothing is waited for (the read came from this
    /// node's local fallback, or failed itself). A stream that started again below what
    /// was shown (a Redis restarted empty) counts as shown.
    fn settled(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            // Known unreachable: not asked again (each ask could wait for its timeout).
            if callgate_backend::LedgerBackend::health(&*self.ledger).failed.is_some() {
                return Ok(());
            }
            let newest = match self.ledger.last_event_id_async().await {
                Ok(Some(id)) => callgate_store_redis::stream_position(&id),
                Ok(None) | Err(_) => None,
            };
            let Some(newest) = newest else { return Ok(()) };
            let mut shown = self.shown.subscribe();
            let caught_up =
                tokio::time::timeout(VIEW_WAIT, shown.wait_for(|s| *s >= newest)).await.is_ok_and(|r| r.is_ok());
            if caught_up {
                return Ok(());
            }
            Err(Error::unavailable(
                "another node's changes that this read may show are not durable yet (or this node's follower \
                     of the cluster's events lags); ask again",
            ))
        })
    }
}

/// Which nodes marked which of their entries settled (see [`Tag`]).
#[derive(Default)]
struct Marks {
    /// Origin -> the highest `k` it marked.
    settled: std::collections::HashMap<String, u64>,
}

impl Marks {
    fn mark(&mut self, tag: &Tag) {
        if self.settled.len() >= MAX_ORIGINS && !self.settled.contains_key(&tag.origin) {
            self.settled.clear();
        }
        let k = self.settled.entry(tag.origin.clone()).or_default();
        *k = (*k).max(tag.k);
    }

    /// Whether an entry tagged `tag` may be shown: untagged (its node does not journal),
    /// this node's own (`own`: the gate waited for it), or marked settled by its node.
    fn settled(&self, tag: Option<&Tag>, own: Option<&str>) -> bool {
        match tag {
            None => true,
            Some(t) => own == Some(t.origin.as_str()) || self.settled.get(&t.origin).is_some_and(|&k| k >= t.k),
        }
    }
}

/// Whether this node runs the singleton duties now.
pub struct Duties {
    /// `None`: one node alone (the embedded store), which runs every duty.
    lease: Option<Arc<DutyLease>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Duties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duties").field("clustered", &self.lease.is_some()).finish()
    }
}

impl Duties {
    /// One node alone: it runs every duty.
    pub fn alone(clock: Arc<dyn Clock>) -> Duties {
        Duties { lease: None, clock }
    }

    /// Whether this node runs the singleton duties now.
    pub fn held(&self) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => lease.held(self.clock.now_ms()).is_some(),
        }
    }

    /// The duty lease's fencing token while this node holds it (cluster mode): the
    /// governor sends the duties' commands with it, and the ledger refuses a stale one
    /// (see `Command::Fenced`). `None` alone, or while another node holds the lease.
    pub fn fence(&self) -> Option<callgate_backend::Fence> {
        let token = self.lease.as_ref()?.held(self.clock.now_ms())?;
        Some(callgate_backend::Fence { duty: Arc::from(DUTIES), token })
    }

    /// `Some(held)` in cluster mode (for `/metrics`), `None` alone.
    pub fn clustered(&self) -> Option<bool> {
        self.lease.as_ref().map(|_| self.held())
    }
}

/// The ledger of a domain in Redis, opened, with what the node's bus starts from.
#[doc(hidden)]
pub struct Opened {
    pub ledger: Arc<RedisLedger>,
    pub names: Names,
    pub pools: Vec<callgate_core::PoolView>,
    /// The event stream's last entry when the pools were read (`None`: it was empty).
    pub last: Option<String>,
}

/// The names a configuration's ledger has (the pools' configured limits among them).
fn names_of(spec: &LedgerSpec) -> Result<Names, String> {
    let ledger = callgate_core::Ledger::new(spec).map_err(|e| format!("configuration: {e}"))?;
    Ok(callgate_store::names_of(&ledger))
}

/// Opens the ledger of `domain` at `url` for `spec` (blocking work, off the async threads).
#[doc(hidden)]
pub async fn open(url: String, domain: String, spec: LedgerSpec, node: String) -> Result<Opened, String> {
    let names = names_of(&spec)?;
    let opened = tokio::task::spawn_blocking(move || {
        let ledger = RedisLedger::open(&url, &domain, &spec, Time::Server)?.with_cap_source(&node, CAP_HOLD)?;
        let (pools, last) = ledger.snapshot()?;
        Ok::<_, Error>((ledger, pools, last))
    })
    .await
    .map_err(|e| format!("opening the Redis ledger: {e}"))?;
    let (ledger, pools, last) = opened.map_err(|e| format!("the Redis ledger: {e}"))?;
    tracing::info!(leases = ledger_counts(&ledger).0, "Opened the ledger in Redis");
    Ok(Opened { ledger: Arc::new(ledger), names, pools, last })
}

fn ledger_counts(ledger: &RedisLedger) -> (usize, usize) {
    callgate_backend::LedgerBackend::counts(ledger)
}

/// Feeds the domain's committed events, every node's, in order, to this node's bus and
/// its governor's waiters, from the stream entry after `from`, until `stop` is set. A
/// thread of its own: the stream is read with blocking calls. `gate` runs before each
/// batch read is published (with a database: until this node's own events are durable);
/// `own` is this node's origin in the tags of its entries (with a database).
///
/// Waiters (and the local fallback) hear of an entry as soon as it is read: a waiter is
/// answered only once this node journaled its grant ([`LedgerBackend::vouch`]). The bus
/// (metrics, the live page, `/v1/events`) gets an entry of another node that journals in
/// PostgreSQL only once that node marked it settled ([`Tag`]: its commit is done, or lost
/// and being taken back), or after [`HOLD_MAX`]; entries stay in stream order, so one
/// held entry holds back those after it.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn follow(
    ledger: Arc<RedisLedger>,
    from: Option<String>,
    mut bus: LedgerBus,
    governor: Arc<Governor>,
    stop: Arc<AtomicBool>,
    gate: impl Fn() + Send + 'static,
    own: Option<String>,
    following: Arc<Following>,
    fallback: Option<Arc<fallback::Fallback>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("callgate-follower".into()).spawn(move || {
        // An empty stream at the snapshot: everything from its first entry on is new.
        let mut last = from.unwrap_or_else(|| "0-0".to_owned());
        let mut names = governor.names();
        let mut failing = false;
        let mut marks = Marks::default();
        let mut held: VecDeque<(Committed, Instant)> = VecDeque::new();
        following.show(&last);
        while !stop.load(Ordering::Relaxed) {
            // Before the read: a grant in it that wakes a waiter here is journaled here
            // within the commit timeout of this, or not answered (`LedgerBackend::vouch`).
            let read = Instant::now();
            // While entries are held, read again no later than when the oldest is due.
            let block = held.front().map_or(FOLLOW_BLOCK, |(_, at)| {
                FOLLOW_BLOCK.min(HOLD_MAX.saturating_sub(at.elapsed())).max(Duration::from_millis(1))
            });
            match ledger.wait_events(Some(&last), block, callgate_store_redis::MAX_EVENTS_READ) {
                Ok(batch) => {
                    if failing {
                        tracing::info!("Following the cluster's events again");
                        failing = false;
                    }
                    if batch.is_empty() {
                        let shown = publish(&mut held, &marks, own.as_deref(), &mut bus, &governor, &mut names);
                        following.shown_up_to(shown, &held, &last);
                        // Nothing new for a while: has the stream started again below the
                        // id this node read up to? (A Redis restarted empty numbers its
                        // entries by its own clock, which may be behind the ids before.)
                        // Then the new stream is read from its start.
                        if let Ok(Some(newest)) = ledger.last_event_id() {
                            if callgate_store_redis::stream_reset(&last, &newest) {
                                tracing::warn!(read = %last, newest = %newest,
                                    "The cluster's event stream started again (Redis lost its data); following it from its start");
                                last = "0-0".to_owned();
                            }
                        }
                        continue;
                    }
                    // Held from here: after its node's command reached Redis (the
                    // commit timeout runs from before that).
                    let got = Instant::now();
                    gate();
                    for committed in batch {
                        last = committed.id.clone();
                        if let Some(tag) = &committed.settles {
                            marks.mark(tag);
                            continue;
                        }
                        governor.committed_elsewhere(&committed.events, read.into_std());
                        if let Some(f) = &fallback {
                            f.observe(&committed.events);
                        }
                        held.push_back((committed, got));
                    }
                    let shown = publish(&mut held, &marks, own.as_deref(), &mut bus, &governor, &mut names);
                    following.shown_up_to(shown, &held, &last);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "Cannot follow the cluster's events; retrying");
                        failing = true;
                    }
                    std::thread::sleep(FOLLOW_RETRY);
                }
            }
        }
    })
}

/// Publishes to the bus, in order, the held entries from the oldest on that may be shown
/// (see [`follow`]); answers the id of the last one published.
fn publish(
    held: &mut VecDeque<(Committed, Instant)>,
    marks: &Marks,
    own: Option<&str>,
    bus: &mut LedgerBus,
    governor: &Governor,
    names: &mut Arc<Names>,
) -> Option<String> {
    let (mut late, mut shown) = (None, None);
    while let Some((committed, at)) = held.front() {
        let settled = marks.settled(committed.tag.as_ref(), own);
        if !settled && at.elapsed() < HOLD_MAX && held.len() <= MAX_HELD {
            break;
        }
        if !settled {
            late = committed.tag.clone();
        }
        let Some((committed, _)) = held.pop_front() else { break };
        // A reload replaced the names: the bus moves to them in event order.
        let now = governor.names();
        if !Arc::ptr_eq(&now, names) {
            callgate_store::Consumer::renamed(bus, &now);
            *names = now;
        }
        callgate_store::Consumer::committed(bus, &committed.events);
        shown = Some(committed.id);
    }
    if let Some(tag) = late {
        tracing::warn!(node = %tag.origin, "Showing another node's events that it did not mark durable in time \
            (it may have stopped, or lost Redis or PostgreSQL)");
    }
    shown
}

/// This node's name in the duty lease: host, listen address and process id, so that two
/// nodes never take each other for the holder.
#[doc(hidden)]
pub fn node_name(listen: std::net::SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().replace('|', "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}/{listen}/{}", std::process::id())
}

/// The duties of a node in cluster mode, and the lease they hang on.
#[doc(hidden)]
pub fn duties(
    ledger: &RedisLedger,
    node: &str,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<Duties>, Arc<DutyLease>), String> {
    let lease = Arc::new(DutyLease::new(ledger, DUTIES, node, DUTY_TTL).map_err(|e| format!("the duty lease: {e}"))?);
    Ok((Arc::new(Duties { lease: Some(lease.clone()), clock }), lease))
}

/// Every second: checks Redis (so `/healthz` says when it is gone, and when it is back),
/// takes or renews the duty lease, and tells `changed` when the duties come (`true`) or go
/// (the server starts or stops its reconcilers); every ten, says this node's caps again.
/// Ends with `stop`, letting the lease go.
#[doc(hidden)]
pub fn spawn_duty_loop(
    governor: Arc<Governor>,
    ledger: Arc<RedisLedger>,
    lease: Arc<DutyLease>,
    duties: Arc<Duties>,
    changed: impl Fn(bool) + Send + 'static,
    clock: Arc<dyn Clock>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DUTY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut had = false;
        let mut healthy = true;
        let mut round: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            every.tick().await;
            round = round.wrapping_add(1);
            if round.is_multiple_of(CAPS_EVERY) {
                let governor = governor.clone();
                let _ = tokio::task::spawn_blocking(move || governor.reassert_caps()).await;
            }
            let (l, d) = (ledger.clone(), lease.clone());
            let sent = clock.now_ms();
            let Ok((check, taken)) = tokio::task::spawn_blocking(move || (l.check(), d.take_or_renew(sent))).await
            else {
                continue;
            };
            match (&check, healthy) {
                (Err(e), true) => {
                    tracing::error!(error = %e, "The shared ledger is unavailable; admission answers 503")
                }
                (Ok(()), false) => tracing::info!("The shared ledger answers again; admission resumes"),
                _ => {}
            }
            healthy = check.is_ok();
            if let Err(e) = &taken {
                tracing::warn!(error = %e, "Cannot renew the duty lease");
            }
            let has = duties.held();
            if has != had {
                match taken {
                    Ok(Some(token)) if has => tracing::info!(token, "This node runs the singleton duties now"),
                    _ => tracing::info!("Another node runs the singleton duties now"),
                }
                changed(has);
                had = has;
            }
        }
        tokio::task::spawn_blocking(move || lease.release()).await.ok();
    })
}

/// The operating layer's clock for a node of a cluster: breakers' time on every node
/// (they guard this node's calls), alerts on the duty holder only.
#[doc(hidden)]
pub struct Gated {
    pub governor: Arc<Governor>,
    pub duties: Arc<Duties>,
}

impl callgate_ops::Ticked for Gated {
    fn ops_tick(&self) {
        self.governor.ops_tick();
    }

    fn evaluate_alerts(&self) -> BoxFuture<'_, ()> {
        if self.duties.held() {
            Box::pin(self.governor.evaluate_alerts())
        } else {
            Box::pin(std::future::ready(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Marks, Tag, MAX_ORIGINS};

    fn tag(origin: &str, k: u64) -> Tag {
        Tag { origin: origin.into(), k }
    }

    #[test]
    fn an_entry_shows_once_its_node_marked_it_or_a_later_one_settled() {
        let mut marks = Marks::default();
        assert!(marks.settled(None, None), "an untagged entry: its node does not journal");
        assert!(marks.settled(Some(&tag("me", 9)), Some("me")), "this node's own: the gate waited for it");
        assert!(!marks.settled(Some(&tag("a", 3)), Some("me")));
        marks.mark(&tag("a", 5));
        assert!(marks.settled(Some(&tag("a", 3)), None) && marks.settled(Some(&tag("a", 5)), None));
        assert!(!marks.settled(Some(&tag("a", 6)), None), "marked up to 5 only");
        assert!(!marks.settled(Some(&tag("b", 1)), None), "another node's marks say nothing of b");
        marks.mark(&tag("a", 2));
        assert!(marks.settled(Some(&tag("a", 5)), None), "a late, lower mark takes nothing back");
    }

    #[test]
    fn marks_of_at_most_so_many_origins_are_kept() {
        let mut marks = Marks::default();
        for i in 0..MAX_ORIGINS {
            marks.mark(&tag(&format!("n{i}"), 1));
        }
        assert!(marks.settled(Some(&tag("n0", 1)), None));
        marks.mark(&tag("new", 1));
        assert_eq!(marks.settled.len(), 1, "forgotten, all at once");
        assert!(!marks.settled(Some(&tag("n0", 1)), None), "its entries wait for its next mark");
        assert!(marks.settled(Some(&tag("new", 1)), None));
    }
}
