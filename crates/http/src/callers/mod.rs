//! What the edge remembers of each Twilio caller between the requests of one call: the
//! position last announced in the waiting room, and the overflow chain the caller walks.
//! Held by the edge's state (`App`), used by the Twilio webhook.

mod chains;
mod waiting;

pub(crate) use chains::Chain;
pub use chains::OverflowChains;
pub use waiting::WaitingRoom;
