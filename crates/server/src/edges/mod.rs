//! Where the outside world meets the governor. Today: the HTTP API (v1). Provider
//! webhooks (Vapi, Twilio) come beside it.

pub mod api;
