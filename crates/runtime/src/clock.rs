//! The one clock ([`callgate_core::clock`]), where the server's modules have always found it.

pub use callgate_core::clock::{Clock, ManualClock, SystemClock};
