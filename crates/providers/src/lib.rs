//! What Vapi and Twilio send and accept: their wire formats, webhook signatures and credentials, API clients and dialers, one folder per provider (and the built-in simulator).
//!
//! Nothing here knows the governor, the ledger or the HTTP server: an edge reads a
//! request with these parsers and checks, decides with the governor, and answers with
//! these formats; the campaign dialer places calls through the [`callgate_dialer::dial::Dialer`]
//! implementations.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod listing;
pub mod sim;
pub mod time;
pub mod twilio;
pub mod vapi;

pub use listing::{http_client, Listing, PlatformCall, PlatformState, ProviderError};

/// Provider call ids are short (Vapi: a UUID, Twilio: `CA` + 32 hex digits); 256 bytes
/// is the ledger's limit for keys.
pub const MAX_CALL_ID: usize = 256;

/// Cases per property test of the webhook parsers: `default`, or `PROPTEST_CASES` for a
/// longer fuzzing session (`PROPTEST_CASES=200000 cargo test -p callgate-providers --lib`).
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
