//! The lead rules, as pure functions: what each write does to a lead, which leads are due
//! and in what order, which attempts count. Every [`Leads`](super::Leads) backend stores
//! and queries rows and asks these functions what to write, so two backends cannot
//! disagree about a lead.

use super::{AttemptEnd, AttemptEnded, CallbackLead, CampaignCounts, NewLead, PendingLead};
use crate::Error;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

#[cfg(test)]
mod tests;

/// A lead waiting to be dialed (at its `next_at`).
pub const PENDING: &str = "pending";
/// A lead whose attempt is being placed or rings.
pub const DIALING: &str = "dialing";
/// A lead on the phone.
pub const IN_CALL: &str = "in_call";
/// A lead reached: finished.
pub const DONE: &str = "done";
/// A lead that cannot be reached (an invalid number): finished.
pub const FAILED: &str = "failed";
/// A lead out of attempts: finished.
pub const EXHAUSTED: &str = "exhausted";
/// A lead whose number is on a suppression list the campaign honours: finished, never
/// dialed again.
pub const SUPPRESSED: &str = "suppressed";

/// An attempt that has ended (its other states, `dialing` and `live`, are open).
pub const ATTEMPT_ENDED: &str = "ended";
/// An attempt the lead answered (or the provider reports live).
pub const ATTEMPT_LIVE: &str = "live";
/// An attempt claimed, before or while its call is placed.
pub const ATTEMPT_DIALING: &str = "dialing";
/// The outcome of an attempt the provider refused for concurrency: it does not count.
pub const REFUSED: &str = "refused";
/// The outcome of an attempt a restart could not follow.
pub const INTERRUPTED: &str = "interrupted";
/// The outcome of a call that reached the person.
pub const COMPLETED: &str = "completed";
/// The outcome of a number that cannot be called.
pub const INVALID: &str = "invalid";
/// The outcome of an attempt stopped before its call was placed because the number is on
/// a suppression list: no call was made, so it does not count.
pub const SUPPRESSED_OUTCOME: &str = "suppressed";

/// Whether a lead in `state` is through: done, failed, exhausted or suppressed.
pub fn is_finished(state: &str) -> bool {
    matches!(state, DONE | FAILED | EXHAUSTED | SUPPRESSED)
}

/// Whether a lead in `state` has an attempt out (being placed, or on the phone).
pub fn is_out(state: &str) -> bool {
    matches!(state, DIALING | IN_CALL)
}

/// Whether an attempt in `state` is still open (not ended).
pub fn is_open(attempt_state: &str) -> bool {
    attempt_state != ATTEMPT_ENDED
}

/// Whether an attempt with `outcome` (`None`: still open) counts against the lead's
/// attempts: every attempt but a refusal and a suppression (neither placed a call).
pub fn counts(outcome: Option<&str>) -> bool {
    outcome != Some(REFUSED) && outcome != Some(SUPPRESSED_OUTCOME)
}

/// Whether an attempt in `state` with `outcome` ended in a way the connect rate counts
/// (refusals, suppressions and interruptions say nothing about the lead).
pub fn ended_for_rate(state: &str, outcome: Option<&str>) -> bool {
    state == ATTEMPT_ENDED && outcome.is_some_and(|o| o != REFUSED && o != INTERRUPTED && o != SUPPRESSED_OUTCOME)
}

/// What the rules read and decide of a lead: its state and its dial bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    /// `pending`, `dialing`, `in_call`, `done`, `failed`, `exhausted`.
    pub state: String,
    /// A callback (or hot lead), dialed first.
    pub warm: bool,
    /// The class to dial it in (`None`: the campaign's).
    pub class: Option<String>,
    /// The booked callback it returns (meaningful while `warm`).
    pub callback_id: Option<u64>,
    /// Attempts counted.
    pub attempts: u32,
    /// Unix ms: not before.
    pub next_at: u64,
}

impl Standing {
    /// A lead just imported: pending, cold, due at once.
    pub fn imported() -> Standing {
        Standing { state: PENDING.into(), warm: false, class: None, callback_id: None, attempts: 0, next_at: 0 }
    }

    /// The callback the lead returns now (`None`: a cold lead).
    pub fn returns(&self) -> Option<u64> {
        self.callback_id.filter(|_| self.warm)
    }
}

/// Which of `leads` an import adds: a phone number the campaign has already (`known`), or
/// one an earlier lead of the same batch has, is skipped.
pub fn dedupe<E>(leads: &[NewLead], mut known: impl FnMut(&str) -> Result<bool, E>) -> Result<Vec<bool>, E> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(leads.len());
    let mut out = Vec::with_capacity(leads.len());
    for l in leads {
        let new = seen.insert(l.phone.as_str()) && !known(&l.phone)?;
        out.push(new);
    }
    Ok(out)
}

/// Whether a write made for the lead as the dialer read it (returning `read`, or no
/// callback) still applies: the lead is pending and returns that same callback. A lead
/// handed out for dialing is no longer pending, so it is never handed out twice.
pub fn as_read(s: &Standing, read: Option<u64>) -> bool {
    s.state == PENDING && s.returns() == read
}

/// The lead once an attempt numbered `number` is claimed for it.
pub fn begin(s: &Standing, number: u32) -> Standing {
    Standing { state: DIALING.into(), attempts: number, ..s.clone() }
}

/// The lead's state once its call is answered: on the phone if it was being dialed.
pub fn answered(state: &str) -> &str {
    if state == DIALING {
        IN_CALL
    } else {
        state
    }
}

/// The lead (`None`: a new one) once callback `cb` is taken for it. A new lead is warm and
/// due at the promised time. An existing lead becomes warm, returns `cb` and is due at
/// the promised time (the earlier of the two when it is pending and returns another
/// callback already), pending with a fresh count of attempts; a lead with an attempt out
/// keeps its state and its count, and the end of that attempt decides ([`end`]).
pub fn take_callback(existing: Option<&Standing>, cb: &CallbackLead) -> Standing {
    let Some(s) = existing else {
        return Standing {
            state: PENDING.into(),
            warm: true,
            class: Some(cb.class.clone()),
            callback_id: Some(cb.callback_id),
            attempts: 0,
            next_at: cb.due_at,
        };
    };
    let out = is_out(&s.state);
    Standing {
        state: if out { s.state.clone() } else { PENDING.into() },
        warm: true,
        class: Some(cb.class.clone()),
        callback_id: Some(cb.callback_id),
        attempts: if out { s.attempts } else { 0 },
        next_at: if s.state == PENDING && s.warm { s.next_at.min(cb.due_at) } else { cb.due_at },
    }
}

/// Whether a callback was taken for the lead while an attempt that dialed `dialed` (`None`:
/// a campaign attempt) was out.
pub fn raced(s: &Standing, dialed: Option<u64>) -> bool {
    s.warm && s.callback_id != dialed
}

/// The lead once its attempt that dialed `dialed` is refused for concurrency: pending
/// again, due at `next_at`, the attempt uncounted; a callback taken while the attempt was
/// out keeps its promised time and a count of its own.
pub fn refused(s: &Standing, dialed: Option<u64>, next_at: u64) -> Standing {
    if raced(s, dialed) {
        Standing { state: PENDING.into(), attempts: 0, ..s.clone() }
    } else {
        Standing { state: PENDING.into(), attempts: s.attempts.saturating_sub(1), next_at, ..s.clone() }
    }
}

/// A lead's new state an attempt end may ask for.
pub fn check_end(e: &AttemptEnd) -> Result<(), Error> {
    if e.lead_state == PENDING || is_finished(&e.lead_state) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "attempt {}: a lead cannot move to `{}` when its attempt ends (pending, done, failed, exhausted or suppressed)",
            e.id, e.lead_state
        )))
    }
}

/// An attempt id written a second time: ids are the store's to hand out
/// ([`Leads::next_attempt_id`](super::Leads::next_attempt_id)), never reused.
pub fn duplicate_attempt(id: u64) -> Error {
    Error::invalid(format!("attempt {id} exists already (attempt ids come from next_attempt_id)"))
}

/// What an attempt knew when it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dialed {
    /// The callback it dialed (`None`: a campaign attempt).
    pub callback_id: Option<u64>,
    /// Unix ms: when the lead answered, if callgate heard it.
    pub answered_at: Option<u64>,
}

/// What an attempt end does to its lead.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    /// The lead after it.
    pub standing: Standing,
    /// The outcome the lead's open callbacks are settled with (`None`: none is settled).
    pub settle: Option<String>,
}

/// The lead once attempt `e` (which knew `dialed`) ends, where `booked_at` is when the
/// callback the lead returns now was booked (`None`: unknown). See
/// [`LeadOp::EndAttempt`](super::LeadOp::EndAttempt):
///
/// - an attempt that dialed the callback the lead returns (or a cold lead's attempt)
///   moves the lead as `e.lead_state` says, and settles its callbacks once it is through;
/// - for a callback taken while the attempt was out, the attempt settles it only if it
///   reached the lead after the booking (`completed`, answered, or started talking, at or
///   after it), or if the number is `invalid`; otherwise the lead is pending, warm, due at
///   the callback's promised time, with a fresh count of attempts.
pub fn end(s: &Standing, dialed: Dialed, e: &AttemptEnd, booked_at: Option<u64>) -> Ending {
    if raced(s, dialed.callback_id) {
        // When the lead was reached: answered, or started talking (end minus talk time),
        // whichever is known and earlier.
        let talked_from = e.talk_ms.map(|t| e.ended_at.saturating_sub(t));
        let reached_at = match (dialed.answered_at, talked_from) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
        .filter(|_| e.outcome == COMPLETED);
        let through = |state: &str| Ending {
            standing: Standing { state: state.into(), next_at: 0, warm: false, ..s.clone() },
            settle: Some(e.outcome.clone()),
        };
        if reached_at.zip(booked_at).is_some_and(|(r, b)| r >= b) {
            through(DONE)
        } else if e.outcome == INVALID {
            through(FAILED)
        } else {
            // Not reached since the caller asked: the callback is dialed in its own right,
            // at its promised time, with attempts of its own.
            Ending { standing: Standing { state: PENDING.into(), warm: true, attempts: 0, ..s.clone() }, settle: None }
        }
    } else {
        let pending = e.lead_state == PENDING;
        Ending {
            standing: Standing {
                state: e.lead_state.clone(),
                next_at: e.next_at,
                warm: s.warm && pending,
                ..s.clone()
            },
            settle: (!pending).then(|| e.outcome.clone()),
        }
    }
}

/// What [`LeadOp::EndAttempt`](super::LeadOp::EndAttempt) answers for an end that moved
/// its lead to `standing` and settled `callbacks_done`.
pub fn ended(standing: &Standing, callbacks_done: Vec<(u64, String)>) -> AttemptEnded {
    AttemptEnded {
        applied: true,
        lead_state: standing.state.clone(),
        attempts: standing.attempts,
        warm: standing.warm,
        next_at: standing.next_at,
        callbacks_done,
    }
}

/// Whether a pending lead may be dialed at `now` (calling windows aside: the dialer's
/// scheduler adds them).
pub fn is_due(lead: &PendingLead, now: u64) -> bool {
    lead.next_at <= now
}

/// The order due leads are dialed in: warm leads (callbacks) first, then the higher
/// score, then the fewer attempts, then the older lead. The dialer's scheduler keeps the
/// same order among the leads whose window is open.
pub fn dial_order(a: &PendingLead, b: &PendingLead) -> Ordering {
    b.warm.cmp(&a.warm).then(b.score.total_cmp(&a.score)).then(a.attempts.cmp(&b.attempts)).then(a.id.cmp(&b.id))
}

/// The first `limit` of `pending` that are due at `now`, in [`dial_order`].
pub fn due(pending: impl IntoIterator<Item = PendingLead>, now: u64, limit: usize) -> Vec<PendingLead> {
    let mut due: Vec<PendingLead> = pending.into_iter().filter(|l| is_due(l, now)).collect();
    due.sort_by(dial_order);
    due.truncate(limit);
    due
}

/// Leads of a campaign alike for [`tally`]: how many share a state, a last outcome and
/// whether they changed since the counts' `since`.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadGroup {
    /// Their state.
    pub state: String,
    /// Their last attempt's outcome.
    pub last_outcome: Option<String>,
    /// Changed at or after `since`.
    pub recent: bool,
    /// How many.
    pub leads: u64,
}

/// Attempts of a campaign alike for [`tally`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptGroup {
    /// Their state (`dialing`, `live`, `ended`).
    pub state: String,
    /// Their outcome.
    pub outcome: Option<String>,
    /// Answered (an answer time is known).
    pub answered: bool,
    /// Claimed at or after `since`.
    pub recent: bool,
    /// How many.
    pub attempts: u64,
    /// Their talk time (ms).
    pub talk_ms: u64,
    /// Their cost (USD).
    pub cost: f64,
}

/// A campaign's progress from its leads and attempts, grouped (see [`CampaignCounts`]):
/// finished leads show their last outcome; refusals do not count as attempts; the connect
/// rate counts ended attempts only, refusals and interruptions on neither side.
pub fn tally(
    leads: impl IntoIterator<Item = LeadGroup>,
    attempts: impl IntoIterator<Item = AttemptGroup>,
) -> CampaignCounts {
    let mut out = CampaignCounts::default();
    let mut by_state: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
    for g in leads {
        let finished = is_finished(&g.state);
        if finished && g.recent {
            out.finished_recent += g.leads;
        }
        let outcome = g.last_outcome.filter(|_| finished);
        *by_state.entry((g.state, outcome)).or_default() += g.leads;
    }
    out.leads = by_state.into_iter().map(|((state, outcome), n)| (state, outcome, n)).collect();
    for g in attempts {
        let outcome = g.outcome.as_deref();
        if counts(outcome) {
            out.attempts += g.attempts;
            if g.recent {
                out.recent += g.attempts;
            }
        } else {
            out.refused += g.attempts;
        }
        if ended_for_rate(&g.state, outcome) {
            out.ended += g.attempts;
            if g.answered {
                out.answered += g.attempts;
            }
        }
        out.talk_ms += g.talk_ms;
        out.cost += g.cost;
    }
    out
}
