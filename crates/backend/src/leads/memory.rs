//! A [`Leads`] store in memory: plain maps and the [`rules`], nothing else. It is the
//! reference the conformance suite compares a real store with (the simplest store that
//! can be right), and a store for tests that need no disk. Nothing survives the process.

use super::rules::{self, Dialed, Standing};
use super::{AttemptEnded, AttemptRow, CampaignCounts, LeadOp, LeadOut, LeadRow, Leads, PendingLead, StoredCampaign};
use crate::{BoxFuture, Error};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug)]
struct Lead {
    row: LeadRow,
    updated_at: u64,
}

#[derive(Clone, Debug)]
struct Attempt {
    row: AttemptRow,
    talk_ms: Option<u64>,
    cost: Option<f64>,
}

#[derive(Clone, Debug)]
struct Taken {
    lead_id: u64,
    booked_at: u64,
    settled: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct State {
    campaigns: BTreeMap<String, StoredCampaign>,
    leads: BTreeMap<u64, Lead>,
    /// (campaign, phone) → lead id.
    phones: BTreeMap<(String, String), u64>,
    attempts: BTreeMap<u64, Attempt>,
    /// callback id → how it was taken.
    taken: BTreeMap<u64, Taken>,
    closed: bool,
}

/// Campaigns, leads and attempts in memory. See the module docs.
#[derive(Debug)]
pub struct MemoryLeads {
    state: Mutex<State>,
    /// The next attempt id handed out (ids start at 1, as a store's row ids do).
    next_attempt: AtomicU64,
}

impl Default for MemoryLeads {
    fn default() -> MemoryLeads {
        MemoryLeads::new()
    }
}

impl MemoryLeads {
    /// An empty store.
    pub fn new() -> MemoryLeads {
        MemoryLeads { state: Mutex::default(), next_attempt: AtomicU64::new(1) }
    }

    /// The highest lead id handed out (0: none yet).
    pub(crate) fn lead_count(&self) -> u64 {
        self.lock().leads.keys().next_back().copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `ops` to a copy of the state and keeps the copy only if every op applied:
    /// a write is all or nothing.
    fn apply_all(&self, ops: Vec<LeadOp>) -> Result<Vec<LeadOut>, Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::unavailable("the lead store is closed"));
        }
        let mut next = state.clone();
        let outs = ops.iter().map(|op| apply(&mut next, op)).collect::<Result<Vec<_>, _>>()?;
        *state = next;
        Ok(outs)
    }
}

fn standing(row: &LeadRow) -> Standing {
    Standing {
        state: row.state.clone(),
        warm: row.warm,
        class: row.class.clone(),
        callback_id: row.callback_id,
        attempts: row.attempts,
        next_at: row.next_at,
    }
}

fn set(lead: &mut Lead, s: Standing) {
    let row = &mut lead.row;
    (row.state, row.warm, row.class, row.callback_id, row.attempts, row.next_at) =
        (s.state, s.warm, s.class, s.callback_id, s.attempts, s.next_at);
}

fn apply(st: &mut State, op: &LeadOp) -> Result<LeadOut, Error> {
    match op {
        LeadOp::PutCampaign { name, spec, state, source, at } => match st.campaigns.get_mut(name) {
            Some(c) => {
                c.spec.clone_from(spec);
                c.source.clone_from(source);
            }
            None => {
                let row = StoredCampaign {
                    name: name.clone(),
                    spec: spec.clone(),
                    state: state.clone(),
                    source: source.clone(),
                    created_at: *at,
                    paused_reason: None,
                };
                st.campaigns.insert(name.clone(), row);
            }
        },
        LeadOp::SetState { name, state, reason, .. } => {
            if let Some(c) = st.campaigns.get_mut(name) {
                c.state.clone_from(state);
                c.paused_reason.clone_from(reason);
            }
        }
        LeadOp::AddLeads { campaign, leads, at } => {
            let phones = &st.phones;
            let add =
                rules::dedupe(leads, |p| Ok::<_, Error>(phones.contains_key(&(campaign.clone(), p.to_string()))))?;
            let mut ids = Vec::with_capacity(leads.len());
            for (l, add) in leads.iter().zip(add) {
                if !add {
                    ids.push(None);
                    continue;
                }
                let id = next_lead_id(st);
                let s = Standing::imported();
                let row = LeadRow {
                    id,
                    campaign: campaign.clone(),
                    phone: l.phone.clone(),
                    name: l.name.clone(),
                    timezone: l.timezone.clone(),
                    score: l.score,
                    vars: l.vars.clone(),
                    warm: s.warm,
                    class: s.class,
                    callback_id: s.callback_id,
                    state: s.state,
                    attempts: s.attempts,
                    next_at: s.next_at,
                    last_outcome: None,
                };
                st.phones.insert((campaign.clone(), l.phone.clone()), id);
                st.leads.insert(id, Lead { row, updated_at: *at });
                ids.push(Some(id));
            }
            return Ok(LeadOut::Added(ids));
        }
        LeadOp::AddCallback { campaign, lead, at } => {
            if st.taken.contains_key(&lead.callback_id) {
                return Ok(LeadOut::Done);
            }
            let existing = st.phones.get(&(campaign.clone(), lead.phone.clone())).copied();
            let (lead_id, new) = match existing.and_then(|id| st.leads.get_mut(&id)) {
                Some(l) => {
                    let s = rules::take_callback(Some(&standing(&l.row)), lead);
                    set(l, s);
                    l.updated_at = *at;
                    (l.row.id, false)
                }
                None => {
                    let id = next_lead_id(st);
                    let s = rules::take_callback(None, lead);
                    let row = LeadRow {
                        id,
                        campaign: campaign.clone(),
                        phone: lead.phone.clone(),
                        name: None,
                        timezone: lead.timezone.clone(),
                        score: 0.0,
                        vars: None,
                        warm: s.warm,
                        class: s.class,
                        callback_id: s.callback_id,
                        state: s.state,
                        attempts: s.attempts,
                        next_at: s.next_at,
                        last_outcome: None,
                    };
                    st.phones.insert((campaign.clone(), lead.phone.clone()), id);
                    st.leads.insert(id, Lead { row, updated_at: *at });
                    (id, true)
                }
            };
            st.taken.insert(lead.callback_id, Taken { lead_id, booked_at: lead.booked_at, settled: None });
            return Ok(LeadOut::Callback { lead_id, new });
        }
        LeadOp::BeginAttempt(a) => {
            if st.attempts.contains_key(&a.id) {
                return Err(rules::duplicate_attempt(a.id));
            }
            let Some(l) = st.leads.get_mut(&a.lead_id).filter(|l| rules::as_read(&standing(&l.row), a.callback_id))
            else {
                return Ok(LeadOut::Stale);
            };
            let s = rules::begin(&standing(&l.row), a.number);
            set(l, s);
            l.updated_at = a.at;
            let row = AttemptRow {
                id: a.id,
                lead_id: a.lead_id,
                campaign: a.campaign.clone(),
                number: a.number,
                class: a.class.clone(),
                provider: a.provider.clone(),
                lease: Some(a.lease.clone()),
                call_id: None,
                state: rules::ATTEMPT_DIALING.into(),
                outcome: None,
                placed_at: a.at,
                answered_at: None,
                callback_id: a.callback_id,
            };
            st.attempts.insert(a.id, Attempt { row, talk_ms: None, cost: None });
        }
        LeadOp::Placed { id, call_id } => {
            if let Some(a) = st.attempts.get_mut(id) {
                a.row.call_id = Some(call_id.clone());
            }
        }
        LeadOp::Answered { id, at } => {
            let Some(a) = st.attempts.get_mut(id) else { return Ok(LeadOut::Done) };
            if rules::is_open(&a.row.state) {
                a.row.state = rules::ATTEMPT_LIVE.into();
                a.row.answered_at = a.row.answered_at.or(Some(*at));
            }
            let lead_id = a.row.lead_id;
            if let Some(l) = st.leads.get_mut(&lead_id) {
                let state = rules::answered(&l.row.state);
                if state != l.row.state {
                    l.row.state = state.to_string();
                    l.updated_at = *at;
                }
            }
        }
        LeadOp::EndAttempt(e) => {
            rules::check_end(e)?;
            let Some(a) = st.attempts.get_mut(&e.id).filter(|a| rules::is_open(&a.row.state)) else {
                return Ok(LeadOut::Ended(AttemptEnded::default()));
            };
            a.row.state = rules::ATTEMPT_ENDED.into();
            a.row.outcome = Some(e.outcome.clone());
            (a.talk_ms, a.cost) = (e.talk_ms, e.cost);
            let (lead_id, dialed) =
                (a.row.lead_id, Dialed { callback_id: a.row.callback_id, answered_at: a.row.answered_at });
            let Some(s) = st.leads.get(&lead_id).map(|l| standing(&l.row)) else {
                return Ok(LeadOut::Ended(AttemptEnded {
                    applied: true,
                    lead_state: e.lead_state.clone(),
                    ..AttemptEnded::default()
                }));
            };
            let booked = s.returns().and_then(|cb| st.taken.get(&cb)).map(|t| t.booked_at);
            let ending = rules::end(&s, dialed, e, booked);
            if let Some(l) = st.leads.get_mut(&lead_id) {
                set(l, ending.standing.clone());
                l.row.last_outcome = Some(e.outcome.clone());
                l.updated_at = e.ended_at;
            }
            let mut done = Vec::new();
            if let Some(outcome) = &ending.settle {
                for (id, t) in st.taken.iter_mut().filter(|(_, t)| t.lead_id == lead_id && t.settled.is_none()) {
                    t.settled = Some(outcome.clone());
                    done.push((*id, outcome.clone()));
                }
            }
            return Ok(LeadOut::Ended(rules::ended(&ending.standing, done)));
        }
        LeadOp::Refused { id, at, next_at } => {
            let Some(a) = st.attempts.get_mut(id).filter(|a| rules::is_open(&a.row.state)) else {
                return Ok(LeadOut::Done);
            };
            a.row.state = rules::ATTEMPT_ENDED.into();
            a.row.outcome = Some(rules::REFUSED.into());
            let (lead_id, dialed) = (a.row.lead_id, a.row.callback_id);
            if let Some(l) = st.leads.get_mut(&lead_id) {
                let s = rules::refused(&standing(&l.row), dialed, *next_at);
                set(l, s);
                l.updated_at = *at;
            }
        }
        LeadOp::Reschedule { lead_id, next_at, callback_id } => {
            let Some(l) = st.leads.get_mut(lead_id).filter(|l| rules::as_read(&standing(&l.row), *callback_id)) else {
                return Ok(LeadOut::Stale);
            };
            l.row.next_at = *next_at;
        }
        // One node writes this store: a campaign has one pacer, no fence to keep.
        LeadOp::Fence { .. } => {}
    }
    Ok(LeadOut::Done)
}

fn next_lead_id(st: &State) -> u64 {
    st.leads.keys().next_back().map_or(1, |id| id + 1)
}

impl Leads for MemoryLeads {
    fn next_attempt_id(&self) -> u64 {
        self.next_attempt.fetch_add(1, Ordering::Relaxed)
    }

    fn write(&self, ops: Vec<LeadOp>) -> BoxFuture<'_, Result<Vec<LeadOut>, Error>> {
        // Applied now, in call order, as the trait asks; the future only hands it over.
        let done = self.apply_all(ops);
        Box::pin(std::future::ready(done))
    }

    fn campaigns(&self) -> Result<Vec<StoredCampaign>, Error> {
        let mut list: Vec<StoredCampaign> = self.lock().campaigns.values().cloned().collect();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)));
        Ok(list)
    }

    fn pending(&self, campaign: &str) -> Result<Vec<PendingLead>, Error> {
        let st = self.lock();
        Ok(st
            .leads
            .values()
            .filter(|l| l.row.campaign == campaign && l.row.state == rules::PENDING)
            .map(|l| PendingLead {
                id: l.row.id,
                timezone: l.row.timezone.clone(),
                score: l.row.score,
                attempts: l.row.attempts,
                warm: l.row.warm,
                next_at: l.row.next_at,
            })
            .collect())
    }

    fn due(&self, campaign: &str, now: u64, limit: usize) -> Result<Vec<PendingLead>, Error> {
        Ok(rules::due(self.pending(campaign)?, now, limit))
    }

    fn lead(&self, id: u64) -> Result<Option<LeadRow>, Error> {
        Ok(self.lock().leads.get(&id).map(|l| l.row.clone()))
    }

    fn attempts_since(&self, lead_id: u64, since: u64) -> Result<Vec<u64>, Error> {
        let st = self.lock();
        let mut times: Vec<u64> = st
            .attempts
            .values()
            .filter(|a| a.row.lead_id == lead_id && a.row.placed_at >= since && rules::counts(a.row.outcome.as_deref()))
            .map(|a| a.row.placed_at)
            .collect();
        times.sort_unstable();
        Ok(times)
    }

    fn open_attempts(&self) -> Result<Vec<AttemptRow>, Error> {
        Ok(self.lock().attempts.values().filter(|a| rules::is_open(&a.row.state)).map(|a| a.row.clone()).collect())
    }

    fn attempts_of(&self, lead_id: u64) -> Result<Vec<AttemptRow>, Error> {
        Ok(self.lock().attempts.values().filter(|a| a.row.lead_id == lead_id).map(|a| a.row.clone()).collect())
    }

    fn counts(&self, campaign: &str, since: u64) -> Result<CampaignCounts, Error> {
        let st = self.lock();
        let leads = st.leads.values().filter(|l| l.row.campaign == campaign).map(|l| rules::LeadGroup {
            state: l.row.state.clone(),
            last_outcome: l.row.last_outcome.clone(),
            recent: l.updated_at >= since,
            leads: 1,
        });
        let attempts = st.attempts.values().filter(|a| a.row.campaign == campaign).map(|a| rules::AttemptGroup {
            state: a.row.state.clone(),
            outcome: a.row.outcome.clone(),
            answered: a.row.answered_at.is_some(),
            recent: a.row.placed_at >= since,
            attempts: 1,
            talk_ms: a.talk_ms.unwrap_or(0),
            cost: a.cost.unwrap_or(0.0),
        });
        Ok(rules::tally(leads, attempts))
    }

    fn settled_callbacks(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, Error> {
        let st = self.lock();
        Ok(ids.iter().filter_map(|id| Some((*id, st.taken.get(id)?.settled.clone()?))).collect())
    }

    fn close(&self) {
        self.lock().closed = true;
    }
}
