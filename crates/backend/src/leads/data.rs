//! The plain values of campaigns, leads and attempts: what is written ([`LeadOp`]), what a
//! write answers ([`LeadOut`]) and what is read back (rows, counts).

/// A lead to add.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLead {
    /// E.164.
    pub phone: String,
    /// The lead's name.
    pub name: Option<String>,
    /// IANA zone.
    pub timezone: String,
    /// Higher is dialed first.
    pub score: f64,
    /// JSON object text.
    pub vars: Option<String>,
}

/// A callback to dial as a warm lead.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackLead {
    /// The booked callback's id.
    pub callback_id: u64,
    /// E.164.
    pub phone: String,
    /// IANA zone.
    pub timezone: String,
    /// The class to dial it in.
    pub class: String,
    /// Unix ms: when the caller asked for it (an attempt that reaches the lead from then
    /// on settles it).
    pub booked_at: u64,
    /// Unix ms: the promised time.
    pub due_at: u64,
}

/// An attempt about to be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAttempt {
    /// Attempt id (from [`Leads::next_attempt_id`](super::Leads::next_attempt_id)).
    pub id: u64,
    /// The lead.
    pub lead_id: u64,
    /// The campaign.
    pub campaign: String,
    /// The lead's attempt number (1 for the first).
    pub number: u32,
    /// The class it is dialed in.
    pub class: String,
    /// The provider it goes to.
    pub provider: String,
    /// The ledger lease (`L42`).
    pub lease: String,
    /// The booked callback the dialer read on the lead (the lead was warm with it), `None`
    /// for a campaign attempt. The attempt begins only if the lead is still pending and
    /// still returns exactly this callback ([`LeadOut::Stale`] otherwise).
    pub callback_id: Option<u64>,
    /// Unix ms.
    pub at: u64,
}

/// How an attempt ended, and what becomes of its lead.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptEnd {
    /// Attempt id.
    pub id: u64,
    /// `completed`, `busy`, `no_answer`, `voicemail`, `failed`, `interrupted`, …
    pub outcome: String,
    /// The provider's words.
    pub reason: Option<String>,
    /// Unix ms.
    pub ended_at: u64,
    /// Talk time (ms) when answered.
    pub talk_ms: Option<u64>,
    /// USD.
    pub cost: Option<f64>,
    /// The lead's new state (`pending`, `done`, `failed`, `exhausted`).
    pub lead_state: String,
    /// When a pending lead may be dialed again (Unix ms).
    pub next_at: u64,
}

/// One durable change.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadOp {
    /// Create or replace a campaign's settings (its state is kept when it exists).
    PutCampaign {
        /// Name.
        name: String,
        /// Settings as JSON.
        spec: String,
        /// State when it is new.
        state: String,
        /// `config` or `api`.
        source: String,
        /// Unix ms.
        at: u64,
    },
    /// Change a campaign's state.
    SetState {
        /// Name.
        name: String,
        /// `paused`, `running`, `stopped`.
        state: String,
        /// Why callgate paused it (an account error the provider reported); `None` clears
        /// a reason stored before (a manual pause, a resume).
        reason: Option<String>,
        /// Unix ms.
        at: u64,
    },
    /// Add leads; a phone number the campaign has already is skipped.
    AddLeads {
        /// Campaign.
        campaign: String,
        /// The leads.
        leads: Vec<NewLead>,
        /// Unix ms.
        at: u64,
    },
    /// Add a callback as a warm lead due at its time (an existing lead of that number is
    /// made warm and due instead: at the earlier of the two promised times when it returns
    /// another callback already). A lead being dialed keeps its state and its attempt;
    /// [`LeadOp::EndAttempt`] decides what the callback needs when that attempt ends. A
    /// callback already taken changes nothing ([`LeadOut::Done`]).
    AddCallback {
        /// Campaign.
        campaign: String,
        /// The callback.
        lead: CallbackLead,
        /// Unix ms.
        at: u64,
    },
    /// Claim a lead: the attempt is recorded and the lead is `dialing` — only if the lead
    /// is still pending with the callback the dialer read ([`NewAttempt::callback_id`]);
    /// otherwise nothing is written and the answer is [`LeadOut::Stale`].
    BeginAttempt(NewAttempt),
    /// The provider took the call.
    Placed {
        /// Attempt id.
        id: u64,
        /// The provider's call id.
        call_id: String,
    },
    /// The lead answered.
    Answered {
        /// Attempt id.
        id: u64,
        /// Unix ms.
        at: u64,
    },
    /// The attempt ended; its lead moves on as `lead_state` says, and the callbacks it
    /// returns are settled or kept for their own dial ([`LeadOut::Ended`]):
    ///
    /// - an attempt that dialed the lead's callback settles it (with every other callback
    ///   taken for the lead) once the lead is through: done, failed or exhausted;
    /// - when a callback was taken while this attempt was out (a campaign attempt, or one
    ///   that dialed an earlier callback), the attempt settles it only if it reached the
    ///   lead after the callback was booked: `completed`, and answered (or, without an
    ///   answer time, started talking: the end minus the talk time) at or after the
    ///   booking. An `invalid` outcome settles it too (the number cannot be called).
    ///   Otherwise the lead is pending again, warm, due at the callback's promised time,
    ///   with a fresh count of attempts: the callback is dialed in its own right.
    EndAttempt(AttemptEnd),
    /// The provider refused the call for concurrency: the attempt does not count and the
    /// lead is pending again, due at `next_at` (a callback taken while the attempt was out:
    /// at its promised time, with attempts of its own).
    Refused {
        /// Attempt id.
        id: u64,
        /// Unix ms.
        at: u64,
        /// When it may be dialed again.
        next_at: u64,
    },
    /// The campaign is paced under `token` (cluster mode: the fencing token of the
    /// campaign's pacing lease). Its fence is raised to `token`; a fence already above it
    /// (a newer pacer took the campaign) fails the whole write with code `fenced`, so
    /// nothing of it is written. A new pacer writes it before it reads the campaign's
    /// leads and open attempts, and a pacer writes it with each attempt it begins: a
    /// former pacer that wakes after a takeover cannot claim a lead. Only a store that
    /// several nodes share keeps fences (PostgreSQL); one that a single node writes has one
    /// pacer and answers [`LeadOut::Done`].
    Fence {
        /// Campaign.
        campaign: String,
        /// The pacer's token.
        token: u64,
    },
    /// Move a pending lead's due time (the weekly cap, a window), only if it still returns
    /// `callback_id` (or none, for `None`): [`LeadOut::Stale`] otherwise.
    Reschedule {
        /// Lead id.
        lead_id: u64,
        /// Unix ms.
        next_at: u64,
        /// The callback the dialer read on the lead (as in [`NewAttempt::callback_id`]).
        callback_id: Option<u64>,
    },
}

/// What a write answers, one per op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeadOut {
    /// Nothing to say.
    Done,
    /// Per lead of [`LeadOp::AddLeads`]: its new id, or `None` for a duplicate.
    Added(Vec<Option<u64>>),
    /// The lead of [`LeadOp::AddCallback`] and whether it is new.
    Callback {
        /// Lead id.
        lead_id: u64,
        /// False when an existing lead was made warm.
        new: bool,
    },
    /// [`LeadOp::BeginAttempt`] or [`LeadOp::Reschedule`] wrote nothing: the lead is no
    /// longer pending, or returns another callback than the dialer read.
    Stale,
    /// What [`LeadOp::EndAttempt`] did.
    Ended(AttemptEnded),
}

/// What ending an attempt did to its lead and the lead's callbacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptEnded {
    /// False when the attempt had ended already: nothing changed (the fields below are
    /// empty).
    pub applied: bool,
    /// The lead's state now (`pending`, `done`, `failed`, `exhausted`).
    pub lead_state: String,
    /// Attempts counted for the lead now.
    pub attempts: u32,
    /// The lead is warm: a callback is still to be dialed.
    pub warm: bool,
    /// When a pending lead may be dialed (Unix ms).
    pub next_at: u64,
    /// The booked callbacks this end settled, each with the outcome it is done with.
    pub callbacks_done: Vec<(u64, String)>,
}

/// A campaign as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCampaign {
    /// Name.
    pub name: String,
    /// Settings as JSON.
    pub spec: String,
    /// `paused`, `running`, `stopped`.
    pub state: String,
    /// `config` or `api`.
    pub source: String,
    /// Unix ms.
    pub created_at: u64,
    /// Why callgate paused it (see [`LeadOp::SetState`]).
    pub paused_reason: Option<String>,
}

/// What the scheduler keeps of a pending lead.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingLead {
    /// Lead id.
    pub id: u64,
    /// IANA zone.
    pub timezone: String,
    /// Score.
    pub score: f64,
    /// Attempts so far.
    pub attempts: u32,
    /// Dialed first.
    pub warm: bool,
    /// Unix ms: not before.
    pub next_at: u64,
}

/// Everything about one lead.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadRow {
    /// Lead id.
    pub id: u64,
    /// Campaign.
    pub campaign: String,
    /// E.164.
    pub phone: String,
    /// Name.
    pub name: Option<String>,
    /// IANA zone.
    pub timezone: String,
    /// Score.
    pub score: f64,
    /// JSON object text.
    pub vars: Option<String>,
    /// Dialed first.
    pub warm: bool,
    /// Class override.
    pub class: Option<String>,
    /// The callback it returns.
    pub callback_id: Option<u64>,
    /// State.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix ms.
    pub next_at: u64,
    /// The last attempt's outcome.
    pub last_outcome: Option<String>,
}

/// An attempt as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    /// Attempt id.
    pub id: u64,
    /// Lead id.
    pub lead_id: u64,
    /// Campaign.
    pub campaign: String,
    /// Attempt number.
    pub number: u32,
    /// Class.
    pub class: String,
    /// Provider.
    pub provider: String,
    /// Lease id.
    pub lease: Option<String>,
    /// Provider call id.
    pub call_id: Option<String>,
    /// `dialing`, `live`, `ended`.
    pub state: String,
    /// Outcome once ended.
    pub outcome: Option<String>,
    /// Unix ms.
    pub placed_at: u64,
    /// Unix ms.
    pub answered_at: Option<u64>,
    /// The booked callback it dialed (`None`: a campaign attempt).
    pub callback_id: Option<u64>,
}

/// Counts for a campaign's progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CampaignCounts {
    /// `(state, last_outcome, leads)`.
    pub leads: Vec<(String, Option<String>, u64)>,
    /// Attempts that count (refusals excluded).
    pub attempts: u64,
    /// Ended attempts the lead answered (the connect rate's numerator: calls still in
    /// progress count in neither side of the rate).
    pub answered: u64,
    /// Attempts that ended (with any outcome but refused/interrupted).
    pub ended: u64,
    /// Sum of talk time (ms).
    pub talk_ms: u64,
    /// Sum of cost (USD).
    pub cost: f64,
    /// Refusals by the provider.
    pub refused: u64,
    /// Attempts claimed since the `since` given.
    pub recent: u64,
    /// Leads finished (done, failed, exhausted) since `since`.
    pub finished_recent: u64,
}
