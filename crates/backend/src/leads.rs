//! Campaigns, leads and call attempts: the [`Leads`] trait of the stores that keep them,
//! the values they take and give ([`LeadOp`], [`LeadOut`], rows), the lead [`rules`] every
//! store follows, an in-memory store that is nothing but those rules ([`memory`]), and the
//! [`conformance`] suite every store must pass.
//!
//! The campaign dialer is the only caller. It holds an `Arc<dyn Leads>`; writes are
//! durable before they resolve (an attempt is on disk before its call is placed), reads
//! answer with owned values, and ids (leads, attempts) are handed out by the store.

pub mod conformance;
mod data;
pub mod memory;
pub mod rules;

pub use data::{
    AttemptEnd, AttemptEnded, AttemptRow, CallbackLead, CampaignCounts, LeadOp, LeadOut, LeadRow, NewAttempt, NewLead,
    PendingLead, StoredCampaign,
};

use crate::{BoxFuture, Error};

/// Where campaigns, leads and attempts are kept.
///
/// Each [`Leads::write`] applies its ops in order, atomically (all of them or, on an
/// error, none), and what each op does to a lead is what [`rules`] says. Writes are
/// submitted when `write` is called, in the order of the calls: the future only waits for
/// durability, and dropping it takes nothing back (the dialer writes progress such as a
/// call id without waiting, and relies on a later write never overtaking it).
pub trait Leads: Send + Sync + 'static {
    /// A fresh attempt id: never one that is written, also across restarts (an id handed
    /// out but never written may come again after a restart).
    fn next_attempt_id(&self) -> u64;

    /// Applies `ops` in one transaction, in order; resolves with one answer per op once
    /// they are durable.
    fn write(&self, ops: Vec<LeadOp>) -> BoxFuture<'_, Result<Vec<LeadOut>, Error>>;

    /// Every campaign, oldest first.
    fn campaigns(&self) -> Result<Vec<StoredCampaign>, Error>;

    /// The campaign's pending leads, by id (what the dialer's scheduler loads at start; as
    /// many as the campaign has).
    fn pending(&self, campaign: &str) -> Result<Vec<PendingLead>, Error>;

    /// The campaign's leads due at `now`, in the order they are dialed
    /// ([`rules::dial_order`]; calling windows aside), at most `limit`.
    fn due(&self, campaign: &str, now: u64, limit: usize) -> Result<Vec<PendingLead>, Error>;

    /// One lead.
    fn lead(&self, id: u64) -> Result<Option<LeadRow>, Error>;

    /// Claim times (Unix ms) of the lead's counted attempts ([`rules::counts`]) claimed at
    /// or after `since`, oldest first.
    fn attempts_since(&self, lead_id: u64, since: u64) -> Result<Vec<u64>, Error>;

    /// Attempts not yet ended (what a restart must resolve), by id.
    fn open_attempts(&self) -> Result<Vec<AttemptRow>, Error>;

    /// Every attempt of a lead, oldest first.
    fn attempts_of(&self, lead_id: u64) -> Result<Vec<AttemptRow>, Error>;

    /// Counts for the progress of `campaign` ([`rules::tally`]); `recent` counts from
    /// `since` (Unix ms).
    fn counts(&self, campaign: &str, since: u64) -> Result<CampaignCounts, Error>;

    /// The outcome of each of these callbacks that an attempt end settled (callbacks not
    /// taken, or not settled yet, are left out).
    fn settled_callbacks(&self, ids: &[u64]) -> Result<Vec<(u64, String)>, Error>;

    /// Makes what was written durable and stops taking writes (later writes fail).
    fn close(&self);
}
