//! The sans-IO side of outbound campaigns: calling windows, time zones, phone numbers, retry rules, lead scheduling, lead import, and the `Dialer` trait providers implement.
//!
//! Nothing here does I/O or reads a clock: every function takes `now` (Unix ms) or the
//! bytes it parses, so the server's pacing loop and the tests drive it the same way.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod caps;
pub mod dial;
pub mod dnc;
pub mod import;
pub mod phone;
pub mod regions;
pub mod retry;
pub mod schedule;
pub mod window;
pub mod zones;
