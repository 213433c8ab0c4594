//! Durable data beside the ledger's state: call records and booked callbacks, and the
//! [`Records`] trait of the stores that keep them.

use crate::{BoxFuture, Error};

/// A callback to book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCallback {
    /// The provider the call came through.
    pub provider: String,
    /// The provider's call id (one booking per call).
    pub call_id: String,
    /// The number to call back.
    pub number: String,
    /// The flow the caller called.
    pub flow: String,
    /// Unix ms.
    pub booked_at: u64,
    /// Unix ms: the callback is due from then on.
    pub due_at: u64,
}

/// A booked callback as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// Row id, never reused.
    pub id: u64,
    /// The provider the call came through.
    pub provider: String,
    /// The provider's call id.
    pub call_id: String,
    /// The number to call back.
    pub number: String,
    /// The flow the caller called.
    pub flow: String,
    /// Unix ms.
    pub booked_at: u64,
    /// Unix ms.
    pub due_at: u64,
    /// `booked` until the dialer takes it, `dialing` while it works on it, `done` once
    /// the dialer is through with it (see `outcome`).
    pub state: String,
    /// Once `done`: the outcome of the last attempt (`completed`, `busy`, `no_answer`, …).
    pub outcome: Option<String>,
    /// Unix ms of the last change of state (`None` while booked).
    pub updated_at: Option<u64>,
}

/// How far the dialer got with a booked callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackState {
    /// Taken by a campaign: a warm lead will be (or is being) dialed.
    Dialing,
    /// The dialer is through with it: the lead is done, failed or exhausted.
    Done,
}

impl CallbackState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Dialing => "dialing",
            CallbackState::Done => "done",
        }
    }
}

/// A booked callback moves on. A callback only moves forward: `dialing` applies to a
/// booked callback only (a repeated take after a restart does not undo `done`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackUpdate {
    /// The callback's id.
    pub id: u64,
    /// Its new state.
    pub state: CallbackState,
    /// With `Done`: the last attempt's outcome.
    pub outcome: Option<String>,
    /// Unix ms.
    pub at: u64,
}

/// What one webhook taught about a call. `None` leaves what is stored as it is, so
/// updates may arrive in any order (an `ended` before the end-of-call report, or after).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallUpdate {
    /// The provider.
    pub provider: String,
    /// The provider's call id.
    pub call_id: String,
    /// The flow that served it.
    pub flow: Option<String>,
    /// The caller's number.
    pub from_number: Option<String>,
    /// The number called.
    pub to_number: Option<String>,
    /// What callgate decided: `granted`, `queued`, `overflow:<action>`, `adopted`.
    pub outcome: Option<String>,
    /// Unix ms.
    pub started_at: Option<u64>,
    /// Unix ms.
    pub ended_at: Option<u64>,
    /// Milliseconds.
    pub duration_ms: Option<u64>,
    /// The platform's reason (`customer-ended-call`, `completed`, …), or
    /// `callgate-reconciled` when reconciliation found the call over.
    pub ended_reason: Option<String>,
    /// USD.
    pub cost: Option<f64>,
    /// A voicemail recording.
    pub recording_url: Option<String>,
    /// Unix ms of this update.
    pub at: u64,
}

/// A call as stored: the merge of every [`CallUpdate`] about it, read back in the same
/// shape (`at` is then the time of the last update).
pub type CallRecord = CallUpdate;

/// One durable write that is not a ledger event.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Book a callback (nothing happens when this call already has one).
    Callback(NewCallback),
    /// Merge what is known about a call.
    Call(CallUpdate),
    /// Mark a booked callback `dialing` or `done` (nothing happens for an unknown id).
    CallbackState(CallbackUpdate),
}

/// Which callbacks to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackQuery {
    /// Only this state (e.g. `booked`).
    pub state: Option<String>,
    /// Only this flow.
    pub flow: Option<String>,
    /// At most this many, soonest due first.
    pub limit: usize,
}

/// Where call records and callbacks are kept. A write resolves once it is durable: a
/// callback is on disk before the caller hears "we will call you back".
pub trait Records: Send + Sync + 'static {
    /// Writes `records` durably.
    fn record(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), Error>>;

    /// Booked callbacks, soonest due first.
    fn callbacks(&self, query: &CallbackQuery) -> Result<Vec<Callback>, Error>;

    /// The most recently updated call records, at most `limit`.
    fn calls(&self, limit: usize) -> Result<Vec<CallRecord>, Error>;

    /// One call record.
    fn call(&self, provider: &str, call_id: &str) -> Result<Option<CallRecord>, Error>;
}
