//! Twilio: its form-encoded webhooks and their signatures, the TwiML callgate answers
//! with, the REST client that lists calls, and the dialer that places campaign calls.

pub mod client;
pub mod dial;
pub mod form;
pub mod signature;
pub mod twiml;

#[cfg(test)]
mod tests;

pub use client::TwilioClient;
pub use dial::{Amd, TwilioAccount, TwilioDialer};
