//! One pacer per campaign in cluster mode (`[storage] ledger = "redis://…"` with
//! `[storage] database = "postgres://…"`, where every node reads and writes the same
//! campaigns, leads and attempts).
//!
//! Each campaign has a duty lease of its own in Redis ([`DutyLease`] `campaign:<name>`: a
//! key with a TTL of [`PACE_TTL`] and a fencing token that grows with every new holder).
//! Every node asks for the lease of every campaign it knows each [`PACE_EVERY`]; the node
//! that holds it paces the campaign, the others do not dial it. So a campaign's rate
//! (`calls_per_second`) and cap (`max_concurrency`) are kept by one token bucket and one
//! count of live attempts, on one node, as on a single node; campaigns spread over the
//! nodes as the first to ask takes each. A node paces a campaign only while its lease
//! cannot have run out (80 % of the TTL after the renewal was sent, on its own clock): it
//! looks before it asks for a call's lease, again before it records the attempt, and
//! again just before it places the call (an attempt recorded but not placed then is given
//! back, uncounted). A node that cannot renew (Redis gone, the node stalled) so stops
//! dialing at least a fifth of the TTL before Redis lets the lease go to another node.
//!
//! **Fenced in PostgreSQL**: a new pacer first raises the campaign's fence to its token
//! (`LeadOp::Fence`, under the campaign's row lock), and every attempt is begun in the
//! same transaction as the pacer's own fence write. So a former pacer that stalled past
//! its lease (between its last look at the lease and the attempt's record) and wakes
//! after a takeover is refused (`fenced`) before it calls the provider: it claims no
//! lead, stops pacing the campaign, and takes it back only with a newer token.
//!
//! **Taking a campaign over** (the holder died, or stopped): the new pacer reads the
//! campaign's state and pending leads from PostgreSQL, then resolves the campaign's open
//! attempts that it does not follow itself, as a restart does
//! ([`Campaigns::resolve_open`]): a call the provider still has is followed to its end
//! (its lease, still counted in the ledger, is released then) and counted against the
//! cap meanwhile; one the provider shows ended gets its outcome. An attempt whose call
//! the provider does not know (yet) and that was recorded less than [`PLACE_GRACE`] ago
//! may still be being placed by a node that lost the lease mid-request: it is counted as
//! live and looked at again once any such request must have ended (the providers'
//! request timeout is 15 s), and only then given back (uncounted) if the provider still
//! has no call for it. Dial leases of the campaign that no open attempt holds and that
//! are older than that (a node died between the grant and the record) are released.
//! Calls that a node which lost the lease placed stay its own too: it follows them to
//! their end and releases their leases (the new pacer may end the same attempt first:
//! an attempt ends once, a lease is released once).
//!
//! **Each round** every node reads the campaigns' states from PostgreSQL (a pause or
//! resume made through another node; a campaign another node created through the API,
//! which it takes in, so that any node may pace it), and the pacer of a campaign its due leads (imported
//! through another node, or sent back by the end of a call another node followed); every
//! [`SWEEP_EVERY`] rounds the pacer releases the orphaned dial leases as above.
//!
//! **Redis restarted empty**: the leases are gone with it (and the tokens start again),
//! so another node may take a campaign while its pacer still counts on its lease for up
//! to 80 % of the TTL. No call is dialed meanwhile: every call needs a grant of the
//! ledger, which answers 503 until it is restored from PostgreSQL after a grace of 6 s,
//! longer than that.
//!
//! One node alone (or several without a shared database: each dials its own store's
//! campaigns) paces every campaign: [`Pacing::alone`].

use super::{Campaigns, State};
use callgate_core::LeaseId;
use callgate_dialer::schedule::{Lead, Scheduler};
use callgate_store_redis::{DutyLease, RedisLedger};
use chrono_tz::Tz;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a campaign's pacing lease lasts without renewal: the campaign moves to
/// another node within about this (plus a round) after its pacer dies.
const PACE_TTL: Duration = Duration::from_secs(5);
/// How often every node takes or renews the leases of the campaigns it knows.
const PACE_EVERY: Duration = Duration::from_secs(1);
/// How long after an attempt was recorded a call for it may still reach the provider:
/// longer than the providers' request timeout (15 s), with a margin.
const PLACE_GRACE: Duration = Duration::from_secs(20);
/// A campaign another node created through the API is taken in once it is this old (ms).
const TAKE_IN_AFTER_MS: u64 = 5_000;
/// Every this many rounds the pacer releases its campaign's orphaned dial leases.
const SWEEP_EVERY: u64 = 5;
/// At most this many due leads are read per campaign and round (the first in dial order:
/// once the pacer dials those, the next come up).
const REFRESH_MAX: usize = 1000;

/// Which node paces a campaign (`GET /v1/campaigns/{name}`, cluster mode).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Pacer {
    /// The node that holds the campaign's pacing lease (`host/listen address/pid`), as
    /// this node last read it; `null` while nobody does (its pacer died a moment ago).
    pub node: Option<String>,
    /// The lease's fencing token (grows with every new holder).
    pub token: Option<u64>,
    /// Whether the node that answers is the pacer.
    pub here: bool,
}

/// One campaign's lease as this node sees it.
struct Paced {
    lease: Arc<DutyLease>,
    /// Holder and token as last read.
    holder: Option<(String, u64)>,
    /// Whether this node paced it after the last round.
    here: bool,
    /// Whether its takeover is done (state, leads and open attempts read): it dials only
    /// then, so that the calls its earlier pacer left live count against the cap.
    ready: bool,
}

struct Cluster {
    ledger: Arc<RedisLedger>,
    node: String,
    campaigns: Mutex<FxHashMap<String, Paced>>,
}

/// Which campaigns this node paces. See the module docs.
pub struct Pacing {
    cluster: Option<Cluster>,
}

impl std::fmt::Debug for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing").field("clustered", &self.cluster.is_some()).finish()
    }
}

impl Pacing {
    /// This node paces every campaign it has.
    pub fn alone() -> Pacing {
        Pacing { cluster: None }
    }

    /// Each campaign is paced by the node of `ledger`'s domain that holds its lease;
    /// this node is `node`.
    pub fn cluster(ledger: Arc<RedisLedger>, node: String) -> Pacing {
        Pacing { cluster: Some(Cluster { ledger, node, campaigns: Mutex::new(FxHashMap::default()) }) }
    }

    /// Whether campaigns are paced through leases (else this node paces them all).
    pub fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Whether this node may dial `campaign` at `now_ms`: alone always; in a cluster while
    /// its lease is held and cannot have run out.
    pub(super) fn paces(&self, campaign: &str, now_ms: u64) -> bool {
        let Some(c) = &self.cluster else { return true };
        let map = c.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        map.get(campaign).is_some_and(|p| p.ready && p.lease.held(now_ms).is_some())
    }

    /// The token this node paces `campaign` under at `now_ms` (cluster mode, while
    /// [`Pacing::paces`]); `None` alone or when it does not pace it. An attempt is begun
    /// in PostgreSQL only under the campaign's latest token (`LeadOp::Fence`).
    pub(super) fn token(&self, campaign: &str, now_ms: u64) -> Option<u64> {
        let c = self.cluster.as_ref()?;
        let map = c.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        map.get(campaign).filter(|p| p.ready).and_then(|p| p.lease.held(now_ms))
    }

    /// PostgreSQL refused this node's token for `campaign`: a newer pacer took it (this
    /// node stalled past its lease). It dials the campaign no more; the next round sees
    /// whether its lease still holds, and a takeover then needs the fence again.
    pub(super) fn fenced(&self, campaign: &str) {
        let Some(c) = &self.cluster else { return };
        if let Some(p) = c.campaigns.lock().unwrap_or_else(|p| p.into_inner()).get_mut(campaign) {
            p.here = false;
            p.ready = false;
        }
    }

    /// Who paces `campaign`, as this node last read it (`None` alone).
    pub(super) fn pacer(&self, campaign: &str, now_ms: u64) -> Option<Pacer> {
        let c = self.cluster.as_ref()?;
        let map = c.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = map.get(campaign) else { return Some(Pacer { node: None, token: None, here: false }) };
        let here = p.ready && p.lease.held(now_ms).is_some();
        let (node, token) = p.holder.clone().map_or((None, None), |(n, t)| (Some(n), Some(t)));
        Some(Pacer { node, token, here })
    }

    fn lease(&self, c: &Cluster, campaign: &str) -> Result<Arc<DutyLease>, String> {
        let mut map = c.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get(campaign) {
            return Ok(p.lease.clone());
        }
        let lease = Arc::new(
            DutyLease::new(&c.ledger, &format!("campaign:{campaign}"), &c.node, PACE_TTL)
                .map_err(|e| format!("the pacing lease of campaign `{campaign}`: {e}"))?,
        );
        map.insert(campaign.to_string(), Paced { lease: lease.clone(), holder: None, here: false, ready: false });
        Ok(lease)
    }

    /// Notes who holds `campaign`'s lease now; answers whether this node did before.
    fn note(&self, campaign: &str, here: bool, holder: Option<(String, u64)>) -> bool {
        let Some(c) = &self.cluster else { return true };
        let mut map = c.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(campaign) {
            Some(p) => {
                p.holder = holder;
                p.ready &= here;
                std::mem::replace(&mut p.here, here)
            }
            None => false,
        }
    }

    /// `campaign`'s takeover is done: this node dials it while its lease holds.
    fn ready(&self, campaign: &str) {
        let Some(c) = &self.cluster else { return };
        if let Some(p) = c.campaigns.lock().unwrap_or_else(|p| p.into_inner()).get_mut(campaign) {
            p.ready = p.here;
        }
    }

    /// Lets every lease this node holds go (a clean stop hands the campaigns over at once).
    pub(super) fn release_all(&self) {
        let Some(c) = &self.cluster else { return };
        let leases: Vec<Arc<DutyLease>> =
            c.campaigns.lock().unwrap_or_else(|p| p.into_inner()).values().map(|p| p.lease.clone()).collect();
        for l in leases {
            l.release();
        }
    }
}

/// The leads of `name` this node has in hand outside its schedule: active attempts, and
/// leads picked whose dial has not finished. Reading the store's leads into the schedule
/// leaves them out, or they would be dialed a second time (found `Stale`, at best).
fn in_hand(inner: &super::Inner, name: &str) -> FxHashSet<u64> {
    inner
        .active
        .values()
        .filter(|a| a.campaign == name)
        .map(|a| a.lead.id)
        .chain(inner.picked.keys().copied())
        .collect()
}

impl Campaigns {
    /// Whether this node may dial `campaign` now (see [`Pacing::paces`]).
    pub(super) fn paces(&self, campaign: &str) -> bool {
        self.pacing.paces(campaign, self.now())
    }

    /// The rounds of the pacing leases, for as long as the dialer runs (cluster mode).
    pub(super) async fn pace_duties(self: Arc<Self>) {
        let mut every = tokio::time::interval(PACE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: u64 = 0;
        loop {
            every.tick().await;
            round = round.wrapping_add(1);
            self.pace_round(round).await;
        }
    }

    /// Takes or renews the lease of every campaign; takes over, gives up or refreshes
    /// each as its lease says.
    async fn pace_round(self: &Arc<Self>, round: u64) {
        let Some(cluster) = &self.pacing.cluster else { return };
        // Every node's view follows a pause or resume made through another node.
        self.refresh_state().await;
        for name in self.names() {
            let lease = match self.pacing.lease(cluster, &name) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(campaign = %name, error = %e, "This node cannot pace the campaign");
                    continue;
                }
            };
            let sent = self.now();
            let l = lease.clone();
            let taken = tokio::task::spawn_blocking(move || {
                let taken = l.take_or_renew(sent);
                let holder = match &taken {
                    Ok(Some(_)) => None,
                    _ => l.holder().ok().flatten(),
                };
                (taken, holder)
            })
            .await;
            let Ok((taken, holder)) = taken else { continue };
            if let Err(e) = &taken {
                tracing::warn!(campaign = %name, error = %e, "Cannot renew the campaign's pacing lease");
            }
            let token = lease.held(self.now());
            let holder = match token {
                Some(t) => Some((cluster.node.clone(), t)),
                None => holder,
            };
            let was = self.pacing.note(&name, token.is_some(), holder.clone());
            match (was, token) {
                (false, Some(token)) => {
                    tracing::info!(campaign = %name, token, "This node paces the campaign now");
                    if self.take_over(&name, token).await {
                        self.pacing.ready(&name);
                        self.wake.notify_one();
                    } else {
                        // Not dialed until a takeover has read everything: again next round.
                        self.pacing.note(&name, false, holder);
                    }
                }
                (true, None) => {
                    let by = holder.map(|(n, _)| n).unwrap_or_default();
                    tracing::warn!(campaign = %name, pacer = %by, "This node no longer paces the campaign");
                    self.give_up(&name);
                }
                (true, Some(_)) => self.refresh(&name, round).await,
                (false, None) => {}
            }
        }
    }

    /// This node paces `name` from now on: its fence raised to `token` in PostgreSQL (so
    /// that an earlier pacer begins no attempt from then on), then its state and leads as
    /// PostgreSQL has them, the open attempts of its earlier pacers resolved, orphaned
    /// dial leases released. `false` when PostgreSQL could not be read or holds a newer
    /// pacer's fence (the campaign is not dialed yet).
    async fn take_over(self: &Arc<Self>, name: &str, token: u64) -> bool {
        let fence = callgate_store::LeadOp::Fence { campaign: name.to_string(), token };
        if let Err(e) = self.store.write(vec![fence]).await {
            tracing::warn!(campaign = %name, token, error = %e, "Cannot take the campaign over");
            return false;
        }
        let store = self.store.clone();
        let campaign = name.to_string();
        let pending = tokio::task::spawn_blocking(move || store.pending(&campaign)).await;
        match pending {
            Ok(Ok(pending)) => {
                let now = self.now();
                let mut inner = self.lock();
                let following = in_hand(&inner, name);
                if let Some(rt) = inner.list.iter_mut().find(|r| r.name == name) {
                    let mut sched = Scheduler::new();
                    let mut zones: FxHashMap<String, Tz> = FxHashMap::default();
                    for p in pending.into_iter().filter(|p| !following.contains(&p.id)) {
                        let tz =
                            *zones.entry(p.timezone.clone()).or_insert_with(|| p.timezone.parse().unwrap_or(rt.tz));
                        let lead = Lead {
                            id: p.id,
                            tz,
                            score: p.score,
                            attempts: p.attempts,
                            warm: p.warm,
                            not_before: p.next_at,
                        };
                        sched.insert(lead, &rt.calendar, now);
                    }
                    rt.sched = sched;
                }
            }
            Ok(Err(e)) => {
                tracing::error!(campaign = %name, error = %e, "Cannot read the campaign's leads");
                return false;
            }
            Err(_) => return false,
        }
        if !self.adopt_open(name).await {
            return false;
        }
        self.sweep_orphans(name).await;
        true
    }

    /// Another node paces `name` now: this one forgets its pending leads (the next pacer
    /// reads them from PostgreSQL); its live calls go on, followed to their end here.
    pub(super) fn give_up(&self, name: &str) {
        let mut inner = self.lock();
        if let Some(rt) = inner.list.iter_mut().find(|r| r.name == name) {
            rt.sched = Scheduler::new();
        }
    }

    /// What another node may have changed of a campaign this node paces: its state and
    /// its due leads; now and then the orphaned dial leases.
    async fn refresh(self: &Arc<Self>, name: &str, round: u64) {
        let store = self.store.clone();
        let campaign = name.to_string();
        let now = self.now();
        if let Ok(Ok(due)) = tokio::task::spawn_blocking(move || store.due(&campaign, now, REFRESH_MAX)).await {
            let mut inner = self.lock();
            let following = in_hand(&inner, name);
            let mut added = false;
            if let Some(rt) = inner.list.iter_mut().find(|r| r.name == name) {
                for p in due {
                    if rt.sched.contains(p.id) || following.contains(&p.id) {
                        continue;
                    }
                    let tz = p.timezone.parse().unwrap_or(rt.tz);
                    let lead = Lead {
                        id: p.id,
                        tz,
                        score: p.score,
                        attempts: p.attempts,
                        warm: p.warm,
                        not_before: p.next_at,
                    };
                    rt.sched.insert(lead, &rt.calendar, now);
                    added = true;
                }
            }
            drop(inner);
            if added {
                self.wake.notify_one();
            }
        }
        if round.is_multiple_of(SWEEP_EVERY) {
            self.sweep_orphans(name).await;
        }
    }

    /// The campaigns' states as PostgreSQL has them (a pause, resume or stop made
    /// through another node), and the campaigns another node created through the API
    /// since this one started (so that any node can pace them).
    async fn refresh_state(self: &Arc<Self>) {
        let store = self.store.clone();
        let Ok(Ok(stored)) = tokio::task::spawn_blocking(move || store.campaigns()).await else { return };
        let mut changed = false;
        let mut new = Vec::new();
        let now = self.now();
        {
            let mut inner = self.lock();
            for s in stored {
                let state = State::parse(&s.state);
                match inner.list.iter_mut().find(|r| r.name == s.name) {
                    Some(rt) if rt.state != state => {
                        tracing::info!(campaign = %s.name, state = state.as_str(), "The campaign's state changed on another node");
                        rt.state = state;
                        rt.paused_reason = s.paused_reason.filter(|_| state == State::Paused);
                        changed = true;
                    }
                    Some(_) => {}
                    // (Not one being created right now through this node: that puts it
                    // in place itself, just after it is stored.)
                    None if s.source == "api" && s.created_at.saturating_add(TAKE_IN_AFTER_MS) < now => new.push(s),
                    // A campaign of another node's configuration file: this node's file
                    // decides what it dials (reload every node with the same file).
                    None => {}
                }
            }
        }
        let config = self.config();
        for s in new {
            let cfg = match serde_json::from_str::<callgate_config::CampaignConfig>(&s.spec) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(campaign = %s.name, error = %e, "Cannot read a campaign another node created");
                    continue;
                }
            };
            if let Some(problem) = config.campaign_problems(&cfg).first() {
                tracing::error!(campaign = %s.name, problem = %problem, "A campaign another node created does not fit this node's configuration");
                continue;
            }
            match self.runtime(cfg, &s, now) {
                Ok(rt) => {
                    tracing::info!(campaign = %s.name, "Took in a campaign another node created");
                    self.put_in_place(rt);
                    self.sort();
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(campaign = %s.name, error = %e, "Cannot take in a campaign another node created")
                }
            }
        }
        if changed {
            self.wake.notify_one();
        }
    }

    /// Resolves the open attempts of `name` that this node does not follow (see the
    /// module docs): an attempt recorded less than [`PLACE_GRACE`] ago and unknown to the
    /// provider waits until then.
    /// `false` when they could not be read.
    async fn adopt_open(self: &Arc<Self>, name: &str) -> bool {
        let store = self.store.clone();
        let open = match tokio::task::spawn_blocking(move || store.open_attempts()).await {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                tracing::error!(campaign = %name, error = %e, "Cannot read the campaign's open attempts");
                return false;
            }
            Err(_) => return false,
        };
        let leases: FxHashMap<String, LeaseId> = self.dial_leases().into_iter().map(|(key, id, _)| (key, id)).collect();
        let grace = PLACE_GRACE.as_millis() as u64;
        let mut n = (0usize, 0usize);
        for a in open.into_iter().filter(|a| a.campaign == name) {
            if self.lock().active.contains_key(&a.id) {
                continue;
            }
            let lease = leases.get(&format!("dial:{name}:{}", a.id)).copied();
            let young_until = a.placed_at.saturating_add(grace);
            match self.resolve_open(a, lease, Some(young_until)).await {
                super::run::Resolved::Deferred => n.1 += 1,
                _ => n.0 += 1,
            }
        }
        if n != (0, 0) {
            tracing::info!(campaign = %name, resolved = n.0, waiting = n.1, "Took over the campaign's open attempts");
        }
        true
    }

    /// An open attempt too young to give back (see [`Campaigns::adopt_open`]): counted as
    /// live until `until`, then resolved if it is still open and this node still paces
    /// its campaign.
    pub(super) fn defer_open(self: &Arc<Self>, a: callgate_store::AttemptRow, until: u64) {
        let campaign = a.campaign.clone();
        self.count_live(&campaign, true);
        let me = self.clone();
        let wait = Duration::from_millis(until.saturating_sub(self.now()));
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.count_live(&campaign, false);
            if !me.paces(&campaign) || me.lock().active.contains_key(&a.id) {
                return;
            }
            let store = me.store.clone();
            let lead_id = a.lead_id;
            let Ok(Ok(attempts)) = tokio::task::spawn_blocking(move || store.attempts_of(lead_id)).await else {
                return;
            };
            let Some(now) = attempts.into_iter().find(|x| x.id == a.id && x.state != "ended") else { return };
            let lease = me.dial_leases().into_iter().find(|(k, _, _)| *k == format!("dial:{campaign}:{}", a.id));
            let resolved = me.resolve_open(now, lease.map(|(_, id, _)| id), None).await;
            tracing::info!(campaign = %campaign, attempt = a.id, ?resolved, "Resolved an attempt of an earlier pacer");
            me.wake.notify_one();
        });
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    fn count_live(&self, campaign: &str, up: bool) {
        let mut inner = self.lock();
        if let Some(rt) = inner.list.iter_mut().find(|r| r.name == campaign) {
            rt.live = if up { rt.live + 1 } else { rt.live.saturating_sub(1) };
        }
    }

    /// Releases `name`'s dial leases that no open attempt holds and that were granted
    /// more than [`PLACE_GRACE`] ago (a node died between the grant and the record).
    async fn sweep_orphans(&self, name: &str) {
        let prefix = format!("dial:{name}:");
        let old = self.now().saturating_sub(PLACE_GRACE.as_millis() as u64);
        let candidates: Vec<(String, LeaseId)> = self
            .dial_leases()
            .into_iter()
            .filter(|(k, _, granted)| k.starts_with(&prefix) && *granted < old)
            .map(|(k, id, _)| (k, id))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let store = self.store.clone();
        let Ok(Ok(open)) = tokio::task::spawn_blocking(move || store.open_attempts()).await else { return };
        let open: FxHashSet<u64> = open.into_iter().map(|a| a.id).collect();
        let mut released = 0;
        for (key, id) in candidates {
            let attempt = key[prefix.len()..].parse::<u64>().ok();
            let held =
                attempt.is_some_and(|a| open.contains(&a)) || self.lock().active.values().any(|a| a.lease == Some(id));
            if !held && self.governor.release(id).await.unwrap_or(false) {
                released += 1;
            }
        }
        if released > 0 {
            tracing::info!(campaign = %name, released, "Released dial leases no attempt holds");
        }
    }
}
