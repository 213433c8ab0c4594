//! What happens to a call that is rejected: the flow's overflow chain.

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::time::Duration;

/// One overflow step. Serializes to JSON in the same shape as in the file (absent fields
/// left out), which is what the HTTP API returns as `"overflow"` in a 429 body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overflow {
    /// What to do.
    pub action: OverflowAction,
    /// What the caller hears first (a spoken or played message), for any action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `transfer` only: the phone number to transfer to, in E.164 (`+14155550123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// `transfer` only: a SIP URI to transfer to (`sip:desk@pbx.example.com`), instead of
    /// `number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<String>,
    /// `ivr` only: the menu to send the caller to: the `name` of one of the `[[menus]]`
    /// (it must be defined there when the flow answers Twilio calls; in a flow used only
    /// through the HTTP API it is passed on as the client's own IVR id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu: Option<String>,
    /// `callback` only: the key (`0`-`9`, `*` or `#`) the caller presses to accept the
    /// offer. Left out, the callback is booked without asking (the caller's number is
    /// known from the call). Where no key can be pressed (Vapi), the booking is automatic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `callback` only: how long after the call the callback is due (default `"0s"`: as
    /// soon as a line is free). Written as a duration string, e.g. `"15m"`.
    #[serde(default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub after: Option<Duration>,
    /// `voicemail` only: the longest message taken (default `"2m"`, at most `"1h"`, at
    /// least `"1s"`). Written as a duration string.
    #[serde(default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub max_length: Option<Duration>,
    /// `spill` only: the flow (another account's, usually) that the caller is admitted in
    /// and then transferred to. It must answer calls itself (have a `match`) and say where
    /// callers reach it (its `transfer_to`, or its only matched number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// `spill` only: how long the line admitted in `flow` is held for the transferred
    /// call to arrive there (default `"30s"`, between `"1s"` and `"10m"`); a call that does
    /// not arrive in time frees it. Written as a duration string.
    #[serde(default, with = "crate::serde_duration::option", skip_serializing_if = "Option::is_none")]
    pub within: Option<Duration>,
}

/// How long a spilled caller's line waits for the transferred call by default: a transfer
/// to another number rings through within seconds; thirty leave room for a slow carrier
/// without holding a line long for a caller who hung up.
pub const DEFAULT_SPILL_WITHIN: Duration = Duration::from_secs(30);

impl Overflow {
    /// A step with `action` and no other field.
    pub fn new(action: OverflowAction) -> Self {
        Overflow {
            action,
            message: None,
            number: None,
            sip: None,
            menu: None,
            key: None,
            after: None,
            max_length: None,
            flow: None,
            within: None,
        }
    }

    /// A `spill` step to `flow`.
    pub fn spill(flow: &str) -> Self {
        let mut o = Overflow::new(OverflowAction::Spill);
        o.flow = Some(flow.to_owned());
        o
    }

    /// `spill` only: how long the admitted line waits for the transferred call.
    pub fn spill_within(&self) -> Duration {
        self.within.unwrap_or(DEFAULT_SPILL_WITHIN)
    }

    /// The same step with a `message`.
    pub fn with_message(mut self, message: &str) -> Self {
        self.message = Some(message.to_owned());
        self
    }
}

/// The overflow actions, written in lowercase in the file and in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverflowAction {
    /// Refuse the call (a busy signal, or a refused outbound call to retry later).
    Busy,
    /// Take a message.
    Voicemail,
    /// Offer to call the caller back when a line is free.
    Callback,
    /// Hand the call to humans: `number` or `sip`.
    Transfer,
    /// Send the caller to an IVR `menu`.
    Ivr,
    /// Admit the caller in another `flow` (another account's pool) and, only if that
    /// grants, transfer them there; otherwise the chain goes on.
    Spill,
}

impl OverflowAction {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowAction::Busy => "busy",
            OverflowAction::Voicemail => "voicemail",
            OverflowAction::Callback => "callback",
            OverflowAction::Transfer => "transfer",
            OverflowAction::Ivr => "ivr",
            OverflowAction::Spill => "spill",
        }
    }
}

impl fmt::Display for OverflowAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads `overflow` as either one table (`{ action = "voicemail" }`) or an array of them
/// (a chain). Written by hand rather than as an untagged enum so that a mistake inside
/// a table keeps its own message and position.
pub(crate) fn deserialize_chain<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Overflow>, D::Error> {
    one_or_many(d, "a table such as { action = \"voicemail\" } or an array of them")
}

/// Reads one table as a list of one, or an array of tables, keeping the position of a
/// mistake inside a table.
pub(crate) fn one_or_many<'de, D, T>(d: D, expecting: &'static str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(|o| vec![o])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::<T>::deserialize(SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(List(expecting, std::marker::PhantomData))
}
