//! Live events: every committed event as one JSON line for `/v1/events` subscribers.

use crate::views::event_json;
use callgate_core::Event;
use callgate_store::Names;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Subscribers that fall this many events behind lose the oldest and are told so.
const BACKLOG: usize = 4096;

/// The fan-out of committed events to live subscribers.
#[derive(Clone, Debug)]
pub struct Live {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Live { tx: broadcast::channel(BACKLOG).0 }
    }
}

impl Live {
    /// Publishes events (serialised only when somebody listens).
    pub fn publish(&self, events: &[Event], names: &Names) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for e in events {
            let _ = self.tx.send(event_json(e, names).to_string().into());
        }
    }

    /// Publishes one event that is not a ledger event (a reconciliation, a booked
    /// callback), once what it reports is durable.
    pub fn publish_json(&self, event: &serde_json::Value) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event.to_string().into());
        }
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}
