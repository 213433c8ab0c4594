//! Durable data beside the ledger's state: call records and booked callbacks, and the
//! [`Records`] trait of the stores that keep them.

use crate::{BoxFuture, Error};

pub mod telemetry;

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
    /// The assistant that took the call (Vapi's `call.assistantId`).
    pub assistant: Option<String>,
    /// What the platform measured during the call (Vapi's end-of-call report); boxed,
    /// as most updates carry none.
    pub telemetry: Option<Box<CallTelemetry>>,
    /// Unix ms of this update.
    pub at: u64,
}

/// The most turns a call record keeps (the first ones); a call's averages cover all.
pub const MAX_TURNS: usize = 500;
/// The most cost items a call record keeps.
pub const MAX_COSTS: usize = 16;

/// One turn's latencies (ms), as the platform measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TurnLatency {
    /// The model's time to its first token.
    pub model_ms: Option<f64>,
    /// The voice's time to its first audio.
    pub voice_ms: Option<f64>,
    /// The transcriber's latency.
    pub transcriber_ms: Option<f64>,
    /// The endpointing delay (deciding the caller stopped speaking).
    pub endpointing_ms: Option<f64>,
    /// The whole turn: the caller stops speaking to the assistant's first audio.
    pub turn_ms: Option<f64>,
}

/// One line of a call's cost breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct CostItem {
    /// `transport`, `transcriber`, `model`, `voice`, `vapi`, `analysis`,
    /// `knowledge-base`, `voicemail-detection`, or `other`.
    pub component: String,
    /// USD.
    pub usd: f64,
}

/// What the platform measured during a call: per-turn latencies, their averages,
/// interruptions and the cost by component. Every figure is optional: the platform
/// leaves out what it did not measure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallTelemetry {
    /// The turns, in order, at most [`MAX_TURNS`].
    pub turns: Vec<TurnLatency>,
    /// The platform's averages over every turn.
    pub average: TurnLatency,
    /// Average latency from the transport to the platform (ms).
    pub from_transport_ms: Option<f64>,
    /// Average latency from the platform to the transport (ms).
    pub to_transport_ms: Option<f64>,
    /// Times the caller interrupted the assistant.
    pub user_interrupted: Option<u32>,
    /// Times the assistant interrupted the caller.
    pub assistant_interrupted: Option<u32>,
    /// The cost by component, at most [`MAX_COSTS`].
    pub costs: Vec<CostItem>,
    /// The units in use in the flow's first pool when the call ended, itself included
    /// (callgate's own figure): the load the call's latencies were measured under.
    pub concurrency: Option<u32>,
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

/// One part of a turn's latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// The whole turn.
    Turn,
    /// The model.
    Model,
    /// The voice.
    Voice,
    /// The transcriber.
    Transcriber,
    /// Endpointing.
    Endpointing,
}

impl Component {
    /// Every component, in a fixed order.
    pub const ALL: [Component; 5] =
        [Component::Turn, Component::Model, Component::Voice, Component::Transcriber, Component::Endpointing];

    /// The name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Turn => "turn",
            Component::Model => "model",
            Component::Voice => "voice",
            Component::Transcriber => "transcriber",
            Component::Endpointing => "endpointing",
        }
    }
}

impl TurnLatency {
    /// One component's latency (ms).
    pub fn get(&self, c: Component) -> Option<f64> {
        match c {
            Component::Turn => self.turn_ms,
            Component::Model => self.model_ms,
            Component::Voice => self.voice_ms,
            Component::Transcriber => self.transcriber_ms,
            Component::Endpointing => self.endpointing_ms,
        }
    }
}

impl CallTelemetry {
    /// The measured latencies (ms) of one component, turn by turn; the call's average
    /// alone when the platform gave no turns.
    pub fn latencies(&self, c: Component) -> Vec<f64> {
        let turns: Vec<f64> = self.turns.iter().filter_map(|t| t.get(c)).collect();
        if turns.is_empty() {
            self.average.get(c).into_iter().collect()
        } else {
            turns
        }
    }

    /// The `q` quantile (0 to 1) of one component's latencies over the call's turns.
    pub fn quantile(&self, c: Component, q: f64) -> Option<f64> {
        quantile(&mut self.latencies(c), q)
    }

    /// The call's total cost over its items (USD), if it has any.
    pub fn cost(&self) -> Option<f64> {
        (!self.costs.is_empty()).then(|| self.costs.iter().map(|c| c.usd).sum())
    }
}

/// The nearest-rank `q` quantile (0 to 1) of `values` (sorted in place); `None` when
/// empty. Values that are not finite are ignored.
pub fn quantile(values: &mut Vec<f64>, q: f64) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let q = if q.is_finite() { q.clamp(0.0, 1.0) } else { 1.0 };
    let rank = (q * values.len() as f64).ceil() as usize;
    values.get(rank.saturating_sub(1)).copied()
}
