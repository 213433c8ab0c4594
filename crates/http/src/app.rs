//! The edge's state: what every route of the API, the webhooks and the live page share,
//! built once at start-up (`callgate-server`) and changed in place by a reload.

use crate::auth::{HasKeys, Keys};
use crate::bounds::Limits;
use crate::callers::{OverflowChains, WaitingRoom};
use callgate_events::live::Live;
use callgate_events::metrics::Metrics;
use callgate_governor::Governor;
use callgate_runtime::inbound::Inbound;
use std::sync::Arc;

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The governor.
    pub governor: Arc<Governor>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Live events.
    pub live: Live,
    /// API keys.
    pub keys: Keys,
    /// Bounds on what clients send.
    pub limits: Limits,
    /// Flows, menus and providers, for the provider webhooks.
    pub inbound: Arc<Inbound>,
    /// What each caller in a Twilio waiting room was last told.
    pub waiting_room: WaitingRoom,
    /// The overflow chain each Twilio caller walks, frozen when their overflow started.
    pub overflow_chains: OverflowChains,
    /// Where the provider webhooks publish call events (the dialer subscribes).
    pub bus: callgate_events::bus::Bus,
    /// The campaign dialer (the campaign API, its metrics, a reload's new flows).
    pub campaigns: Arc<callgate_runtime::campaign::Campaigns>,
    /// The configuration in force, and reloading it.
    pub reload: crate::reload::Reload,
    /// The `[[schedules]]` in force (the schedule ticker and a reload put them in force).
    pub schedules: Arc<callgate_runtime::schedule::Schedules>,
    /// The forecast plans (`GET /v1/forecast`, the forecast reserves in `/v1/pools`).
    pub forecasts: Arc<callgate_runtime::forecast::Forecasts>,
    /// The providers' reconcilers (a reload restarts them as the providers change).
    pub reconcilers: callgate_runtime::reconcile::Reconcilers,
    /// Set when the server stops: event streams end then (they never end on their own,
    /// and a client that sees the end knows the server went away and reconnects).
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Whether this node runs the singleton duties (always, on the embedded store).
    pub duties: Arc<callgate_runtime::cluster::Duties>,
    /// What the follower of the cluster's event stream reports (cluster mode only).
    pub following: Option<Arc<callgate_runtime::cluster::Following>>,
}

impl App {
    /// What booking a callback touches.
    pub fn effects(&self) -> callgate_runtime::inbound::Effects<'_> {
        callgate_runtime::inbound::Effects { governor: &self.governor, metrics: &self.metrics, live: &self.live }
    }

    /// The ledger backend as `local_fallback`'s wrapper, when a pool of this node has the
    /// policy (cluster mode): its presence, status and metrics.
    pub fn fallback(&self) -> Option<&callgate_runtime::cluster::fallback::Fallback> {
        self.governor.backend().as_any().downcast_ref()
    }

    /// What reconciliation works with.
    pub fn reconcile_handles(&self) -> callgate_runtime::reconcile::Handles {
        callgate_runtime::reconcile::Handles {
            governor: self.governor.clone(),
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            inbound: self.inbound.clone(),
            dialer: self.campaigns.clone(),
        }
    }
}

impl HasKeys for App {
    fn keys(&self) -> &Keys {
        &self.keys
    }
}
