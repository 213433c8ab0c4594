//! The event side of callgate: the bus every committed decision is fanned out on, and the
//! consumers that only read it (the live stream, the metrics registry, the decision log)
//! with the JSON views they share.
//!
//! Nothing here decides or stores: the governor decides, the backend makes it durable and
//! hands each committed batch to the [`bus::LedgerBus`]; everything here is downstream.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod bus;
pub mod decision_log;
pub mod live;
pub mod metrics;
pub mod views;

/// The edge a request came through: a fixed list, so the labels of
/// `callgate_decision_seconds` are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// `POST /v1/acquire`.
    Api,
    /// A Vapi webhook.
    Vapi,
    /// A Twilio webhook.
    Twilio,
    /// The campaign dialer.
    Campaign,
    /// Reconciliation adopting a live platform call callgate did not know.
    Reconcile,
    /// `callgate demo`'s simulated callers.
    Demo,
}

impl Edge {
    /// Every edge, in label order.
    pub const ALL: [Edge; 6] = [Edge::Api, Edge::Vapi, Edge::Twilio, Edge::Campaign, Edge::Reconcile, Edge::Demo];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Api => "api",
            Edge::Vapi => "vapi",
            Edge::Twilio => "twilio",
            Edge::Campaign => "campaign",
            Edge::Reconcile => "reconcile",
            Edge::Demo => "demo",
        }
    }
}
