//! Vapi: the server-URL messages it sends and how they are authenticated, the API client
//! that lists calls, and the dialer that places campaign calls.

pub mod auth;
pub mod client;
pub mod dial;
pub mod message;
pub mod telemetry;

#[cfg(test)]
mod tests;

pub use client::VapiClient;
pub use dial::VapiDialer;
