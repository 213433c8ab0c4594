//! Placing calls: the narrow trait the pacing loop dials through, and what providers say
//! about a call, mapped to the outcomes that drive retries.
//!
//! Implementations live in `callgate-providers`: `vapi::VapiDialer` (`POST /call`),
//! `twilio::TwilioDialer` (`Calls.json`) and `sim::SimDialer`, the built-in simulated
//! provider. Outcomes reach the campaign by three roads, all idempotent: events the dialer
//! pushes (the simulator), provider webhooks published on the server's event bus as call
//! events (the dialer subscribes), and a poll of each live call every
//! [`Dialer::poll_every`] (so a lost webhook loses no outcome).

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future (the trait is used as `dyn Dialer`).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call to place.
#[derive(Clone, Debug)]
pub struct PlaceCall {
    /// The attempt (travels with the call as metadata, so webhooks and a restart find it).
    pub attempt: u64,
    /// The campaign.
    pub campaign: String,
    /// The lead.
    pub lead_id: u64,
    /// E.164.
    pub phone: String,
    /// The lead's name.
    pub name: Option<String>,
    /// Custom variables for the assistant.
    pub vars: Option<serde_json::Value>,
    /// The ledger lease the call holds (`L42`).
    pub lease: String,
    /// Which caller-id number to use (taken modulo the campaign's list).
    pub caller_index: usize,
}

/// A call the provider took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The provider's call id.
    pub call_id: String,
}

/// Why a call was not placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialError {
    /// The account is at its concurrency limit: not the lead's fault. The lead goes back,
    /// the campaign cools down, and the governor hears of it (a drop for an adaptive pool,
    /// a cooldown cap for a fixed one).
    Refused(String),
    /// The provider refuses this lead (an invalid number): the lead fails for good.
    Invalid(String),
    /// The call could not be placed (network, provider error): a failed attempt, retried
    /// by the campaign's policy.
    Failed(String),
    /// The provider refuses the account or its configuration, not the lead (a revoked
    /// key, no credit, an unknown assistant or caller id): no call of the campaign can
    /// succeed until someone fixes it. The campaign pauses with this reason, the lead
    /// goes back uncounted.
    Account(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Refused(m) => write!(f, "refused for concurrency: {m}"),
            DialError::Invalid(m) => write!(f, "invalid: {m}"),
            DialError::Failed(m) => write!(f, "failed: {m}"),
            DialError::Account(m) => write!(f, "account: {m}"),
        }
    }
}

/// How an attempt ended, as retries see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The lead answered and the conversation ended.
    Completed,
    /// The line was busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// Voicemail picked up.
    Voicemail,
    /// The call failed (carrier, platform).
    Failed,
    /// The provider refused it for concurrency (does not count as an attempt).
    Refused,
    /// Cut short by a restart of callgate before its end was known.
    Interrupted,
    /// The provider refused the number itself.
    Invalid,
    /// Not placed: the number is on a suppression list the campaign honours (checked just
    /// before the call). Does not count as an attempt; the lead ends `suppressed`.
    Suppressed,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Voicemail => "voicemail",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
            Outcome::Invalid => "invalid",
            Outcome::Suppressed => "suppressed",
        }
    }

    /// Every outcome, for metrics.
    pub const ALL: [Outcome; 9] = [
        Outcome::Completed,
        Outcome::Busy,
        Outcome::NoAnswer,
        Outcome::Voicemail,
        Outcome::Failed,
        Outcome::Refused,
        Outcome::Interrupted,
        Outcome::Invalid,
        Outcome::Suppressed,
    ];
}

/// What is known of a call's end.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    /// Its outcome.
    pub outcome: Outcome,
    /// The provider's words (`customer-busy`, `no-answer`, …).
    pub reason: Option<String>,
    /// Talk time (ms), when answered.
    pub talk_ms: Option<u64>,
    /// USD.
    pub cost: Option<f64>,
}

/// A call's state as the provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum CallState {
    /// Queued or ringing.
    Ringing,
    /// Answered, in progress.
    Live,
    /// Answered, and answering machine detection says by whom (Twilio's asynchronous
    /// AMD callback): remembered until the call ends `completed`.
    Answered(Answerer),
    /// Over.
    Ended(Ended),
    /// The provider does not know it.
    Unknown,
}

/// An event a dialer pushes (the simulator does; real providers report by webhook).
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// The lead answered.
    Answered {
        /// Attempt id.
        attempt: u64,
    },
    /// The call is over.
    Ended {
        /// Attempt id.
        attempt: u64,
        /// How.
        ended: Ended,
    },
}

/// Where calls are placed. One per provider account (or simulator) per campaign.
pub trait Dialer: Send + Sync + 'static {
    /// The provider's name (the `[[providers]]` entry, or `simulated`).
    fn provider(&self) -> &str;

    /// Places a call. Called only once the attempt is on disk and its lease is held.
    fn place<'a>(&'a self, call: &'a PlaceCall) -> Fut<'a, Result<Placed, DialError>>;

    /// The state of a placed call.
    fn status<'a>(&'a self, call_id: &'a str) -> Fut<'a, Result<CallState, DialError>>;

    /// After a restart: the call placed for `call.attempt` (claimed at `since_ms`), if the
    /// provider has one. `Ok(None)`: it was never placed.
    fn find<'a>(&'a self, call: &'a PlaceCall, since_ms: u64) -> Fut<'a, Result<Option<String>, DialError>>;

    /// How often live calls are polled for their state (`None`: the dialer pushes events).
    fn poll_every(&self) -> Option<Duration>;

    /// Stops whatever the dialer runs in the background.
    fn shutdown(&self) {}
}

/// Vapi's `endedReason` as an outcome; `answered` tells a hang-up after talking from one
/// before it.
pub fn vapi_outcome(reason: &str, answered: bool) -> Outcome {
    let r = reason.to_ascii_lowercase();
    if r.contains("concurrency") {
        Outcome::Refused
    } else if r == "customer-busy" || r.contains("busy") {
        Outcome::Busy
    } else if r.contains("did-not-answer") || r.contains("no-answer") || r == "customer-did-not-answer" {
        Outcome::NoAnswer
    } else if r.contains("voicemail") {
        Outcome::Voicemail
    } else if r.contains("error") || r.contains("failed") || r.contains("fault") {
        Outcome::Failed
    } else if answered {
        Outcome::Completed
    } else {
        Outcome::NoAnswer
    }
}

/// Who answered, as Twilio's answering machine detection says (`AnsweredBy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answerer {
    /// `human`, or `unknown` (AMD could not tell: taken as the lead, who may be talking).
    Human,
    /// `machine_start`, `machine_end_beep`, `machine_end_silence`, `machine_end_other`.
    Machine,
    /// `fax`.
    Fax,
}

impl Answerer {
    /// Reads `AnsweredBy`; `None` for an empty or unknown word.
    pub fn parse(answered_by: &str) -> Option<Answerer> {
        match answered_by {
            "human" | "unknown" => Some(Answerer::Human),
            "fax" => Some(Answerer::Fax),
            a if a.starts_with("machine_") => Some(Answerer::Machine),
            _ => None,
        }
    }

    /// What a call that ended `completed` was, once this is known of its answer: a
    /// machine is voicemail, a fax line a failure (nobody to talk to).
    pub fn outcome(self) -> Outcome {
        match self {
            Answerer::Human => Outcome::Completed,
            Answerer::Machine => Outcome::Voicemail,
            Answerer::Fax => Outcome::Failed,
        }
    }
}

/// A Twilio `CallStatus` (with `AnsweredBy`) as an outcome; `None` while the call goes on.
pub fn twilio_outcome(status: &str, answered_by: Option<&str>) -> Option<Outcome> {
    Some(match status {
        "completed" => answered_by.and_then(Answerer::parse).map_or(Outcome::Completed, Answerer::outcome),
        "busy" => Outcome::Busy,
        "no-answer" => Outcome::NoAnswer,
        "failed" | "canceled" => Outcome::Failed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_words_map_to_outcomes() {
        assert_eq!(vapi_outcome("customer-busy", false), Outcome::Busy);
        assert_eq!(vapi_outcome("customer-did-not-answer", false), Outcome::NoAnswer);
        assert_eq!(vapi_outcome("voicemail", true), Outcome::Voicemail);
        assert_eq!(vapi_outcome("customer-ended-call", true), Outcome::Completed);
        assert_eq!(vapi_outcome("twilio-failed-to-connect-call", false), Outcome::Failed);
        assert_eq!(vapi_outcome("call.start.error-subscription-concurrency-limit-reached", false), Outcome::Refused);
        assert_eq!(twilio_outcome("completed", Some("machine_start")), Some(Outcome::Voicemail));
        for machine in ["machine_end_beep", "machine_end_silence", "machine_end_other"] {
            assert_eq!(twilio_outcome("completed", Some(machine)), Some(Outcome::Voicemail), "{machine}");
        }
        assert_eq!(twilio_outcome("completed", Some("fax")), Some(Outcome::Failed));
        assert_eq!(twilio_outcome("completed", Some("human")), Some(Outcome::Completed));
        assert_eq!(twilio_outcome("completed", Some("unknown")), Some(Outcome::Completed));
        assert_eq!(twilio_outcome("completed", Some("")), Some(Outcome::Completed));
        assert_eq!(twilio_outcome("no-answer", None), Some(Outcome::NoAnswer));
        assert_eq!(twilio_outcome("ringing", None), None);
    }
}
