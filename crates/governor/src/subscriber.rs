//! The operating layer as a subscriber of the ledger bus.

use crate::OpsSlot;
use callgate_backend::Names;
use callgate_core::Event;
use callgate_events::bus::LedgerSubscriber;
use callgate_ops::Ops;
use std::sync::Arc;

/// The operating layer's figures (stats, alerts' inputs). A reload puts its new operating
/// layer in the slot before it hands the journal the new names, so the subscriber moves to
/// it in event order.
#[derive(Debug)]
pub struct OpsSubscriber {
    ops: Arc<Ops>,
    slot: OpsSlot,
}

impl OpsSubscriber {
    /// Follows the operating layer in `slot`.
    pub fn new(slot: OpsSlot) -> OpsSubscriber {
        OpsSubscriber { ops: slot.get(), slot }
    }
}

impl LedgerSubscriber for OpsSubscriber {
    fn committed(&mut self, events: &[Event], _names: &Names) {
        self.ops.observe(events);
    }

    fn renamed(&mut self, _names: &Names) {
        self.ops = self.slot.get();
    }
}
