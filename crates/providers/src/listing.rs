//! What a platform's list of calls says, and why asking a platform failed.

use std::fmt;
use std::time::Duration;

/// Why a provider API call failed; it changes nothing in callgate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderError {
    /// No answer (connection, timeout).
    Unreachable(String),
    /// An HTTP status other than success (401: wrong credentials; 429: rate limited).
    Status(u16),
    /// An answer that is not what the documentation describes.
    BadResponse(String),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ProviderError::Status(code) => write!(f, "HTTP {code}"),
            ProviderError::BadResponse(why) => write!(f, "unexpected response: {why}"),
        }
    }
}

impl std::error::Error for ProviderError {}

impl From<reqwest::Error> for ProviderError {
    fn from(e: reqwest::Error) -> Self {
        match e.status() {
            Some(s) => ProviderError::Status(s.as_u16()),
            None if e.is_decode() => ProviderError::BadResponse(e.to_string()),
            None => ProviderError::Unreachable(e.to_string()),
        }
    }
}

/// How a call stands on the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformState {
    /// Holding a line (ringing, in progress, forwarding…).
    Live,
    /// Over.
    Ended,
    /// Neither yet (e.g. a Vapi call that is only scheduled).
    Pending,
}

/// One call as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformCall {
    /// The platform's call id (the key callgate's lease has).
    pub id: String,
    /// Its state.
    pub state: PlatformState,
    /// Another id the same call is known by (Vapi: the telephony provider's call id, e.g.
    /// the Twilio `CallSid` of a forwarded call), so it is not counted twice.
    pub alias: Option<String>,
    /// Whether callgate may adopt it if it does not know it (Twilio: an inbound parent
    /// call to a number a flow serves).
    pub adoptable: bool,
    /// Placed by callgate's campaign dialer (Vapi: the call carries
    /// `assistantOverrides.metadata.callgate_attempt` or `…callgate_lease`): its lease is the
    /// dialer's (`dial:` key), so it is counted already and never adopted.
    pub dialed: bool,
}

/// What a listing found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The calls seen.
    pub calls: Vec<PlatformCall>,
    /// True when the listing holds every call that could be live, so that a call missing
    /// from it has ended. False when it was cut short (too many pages): then only calls
    /// the listing shows as ended are released.
    pub complete: bool,
}

/// An HTTP client with the timeouts every provider call uses: a listing that takes longer
/// than 10 s is abandoned (the next period tries again).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
