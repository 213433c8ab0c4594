//! One event bus: what the ledger committed, what a provider said about a call, and what
//! the operating layer asks of the campaigns, each handed to the components that subscribe.
//!
//! Components are wired once, in dependency order, at start-up (`serve.rs`): the bus exists
//! before anything that publishes on it or subscribes to it, so nothing is bound late.
//!
//! - **Ledger events.** The journal hands every committed batch, in commit order, to the
//!   [`LedgerBus`] on its writer thread, after the commit and *before* the durable sequence
//!   number is published: a client that has its answer finds its decision in the metrics
//!   and the event stream. Each [`LedgerSubscriber`] (metrics, the operating layer's figures,
//!   the live page, the decision log) is called once per batch, synchronously, with a
//!   borrowed slice; nothing is allocated per event.
//! - **Call events.** A provider edge (the Vapi and Twilio webhooks) publishes its word on
//!   a call as a [`ProviderUpdate`]; the dialer subscribes ([`DialerInbox`]) and the
//!   publisher awaits its answer ("was this one of the dialer's calls?"), so a webhook is
//!   answered once the dialer has acted on it, as before.
//! - **Campaign commands.** The operating layer (alerts, breakers) lists, pauses and
//!   resumes campaigns with [`CampaignCommand`]s; the dialer acts on them durably.
//!
//! A bus whose dialer is gone (stopped, or never started: a governor built without a
//! configuration in tests) answers call events with `false` and commands with nothing.

use crate::decision_log;
use crate::live::Live;
use crate::metrics::Metrics;
use callgate_backend::{Consumer, Names};
use callgate_core::Event;
use callgate_dialer::dial::CallState;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Messages to the dialer that may wait at once. Each publisher awaits its answer, so what
/// waits here is bounded by the requests in flight; a full inbox makes the next publisher
/// wait (backpressure), never drops an event.
const DIALER_INBOX: usize = 1024;

/// A component that consumes committed ledger events.
///
/// Runs on the journal's writer thread before answers are released: keep it quick, never
/// block, never reach back into the ledger.
pub trait LedgerSubscriber: Send + 'static {
    /// Every committed event, in ledger order, with the names in force when they were
    /// submitted.
    fn committed(&mut self, events: &[Event], names: &Names);

    /// The ledger's names changed (a configuration reload): called after every event
    /// submitted before the change and before any submitted after it.
    fn renamed(&mut self, names: &Names) {
        let _ = names;
    }
}

/// The ledger side of the bus: the journal's one consumer, fanning committed batches out
/// to its subscribers in the order they subscribed.
pub struct LedgerBus {
    names: Names,
    subscribers: Vec<Box<dyn LedgerSubscriber>>,
}

impl std::fmt::Debug for LedgerBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerBus").field("subscribers", &self.subscribers.len()).finish_non_exhaustive()
    }
}

impl LedgerBus {
    /// A bus with no subscriber yet, for a ledger with these names.
    pub fn new(names: Names) -> LedgerBus {
        LedgerBus { names, subscribers: Vec::new() }
    }

    /// Adds a subscriber (before the bus is handed to the journal).
    pub fn subscribe(mut self, subscriber: impl LedgerSubscriber) -> LedgerBus {
        self.subscribers.push(Box::new(subscriber));
        self
    }
}

impl Consumer for LedgerBus {
    fn committed(&mut self, events: &[Event]) {
        for s in &mut self.subscribers {
            s.committed(events, &self.names);
        }
    }

    fn renamed(&mut self, names: &Names) {
        self.names = names.clone();
        for s in &mut self.subscribers {
            s.renamed(names);
        }
    }
}

impl LedgerSubscriber for Arc<Metrics> {
    fn committed(&mut self, events: &[Event], _names: &Names) {
        self.observe(events);
    }

    fn renamed(&mut self, names: &Names) {
        self.rename(names.clone());
    }
}

impl LedgerSubscriber for Live {
    fn committed(&mut self, events: &[Event], names: &Names) {
        self.publish(events, names);
    }

    fn renamed(&mut self, names: &Names) {
        self.rename(names);
    }
}

/// `[server] decision_log`: one JSON line per decision, once it is durable.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecisionLog;

impl LedgerSubscriber for DecisionLog {
    fn committed(&mut self, events: &[Event], names: &Names) {
        decision_log::log(events, names);
    }
}

/// What a provider edge learned about a call (a call event on the bus).
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderUpdate {
    /// The `[[providers]]` name.
    pub provider: String,
    /// The provider's call id.
    pub call_id: String,
    /// The attempt, when the call carries it (Vapi `assistantOverrides.metadata.
    /// callgate_attempt`, Twilio's status callback query `callgate_attempt`).
    pub attempt: Option<u64>,
    /// What happened.
    pub state: CallState,
}

/// A campaign as the operating layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignInfo {
    /// Its name.
    pub name: String,
    /// Its priority (`pause_campaigns` pauses those below a value).
    pub priority: i32,
    /// The flow its calls acquire through (breakers pause campaigns by flow).
    pub flow: String,
    /// Whether it is dialing now (not paused, not finished).
    pub running: bool,
}

/// What the operating layer asks of the campaigns, with where the answer goes.
#[derive(Debug)]
pub enum CampaignCommand {
    /// Every campaign.
    List(oneshot::Sender<Vec<CampaignInfo>>),
    /// Pause a running campaign (durably, as `POST /v1/campaigns/{name}/pause`); the answer
    /// is true when it was running and is now paused.
    Pause {
        /// The campaign.
        name: String,
        /// Why (logged, so an automatic pause can be told from a manual one).
        reason: String,
        /// The answer.
        done: oneshot::Sender<bool>,
    },
    /// Resume a campaign paused by [`CampaignCommand::Pause`]; true when it runs again.
    Resume {
        /// The campaign.
        name: String,
        /// Why.
        reason: String,
        /// The answer.
        done: oneshot::Sender<bool>,
    },
}

/// A message on the dialer's side of the bus.
#[derive(Debug)]
pub enum ToDialer {
    /// A call event, and where to say whether the call was one of the dialer's.
    Call(ProviderUpdate, oneshot::Sender<bool>),
    /// A campaign command.
    Command(CampaignCommand),
}

/// What the dialer receives from the bus: handed to it when it is built.
#[derive(Debug)]
pub struct DialerInbox(mpsc::Receiver<ToDialer>);

impl DialerInbox {
    /// The next message; `None` once every publisher is gone.
    pub async fn recv(&mut self) -> Option<ToDialer> {
        self.0.recv().await
    }
}

/// The publishing side of the bus for call events and campaign commands. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    dialer: mpsc::Sender<ToDialer>,
}

impl Bus {
    /// A bus and the dialer's inbox on it.
    pub fn new() -> (Bus, DialerInbox) {
        let (tx, rx) = mpsc::channel(DIALER_INBOX);
        (Bus { dialer: tx }, DialerInbox(rx))
    }

    /// A bus that no dialer listens to (a governor built without a configuration).
    pub fn without_dialer() -> Bus {
        Bus::new().0
    }

    /// Publishes a call event; true when the call is one of the dialer's (which has acted
    /// on it by then).
    pub async fn call(&self, update: ProviderUpdate) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.dialer.send(ToDialer::Call(update, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Every campaign; `None` when no dialer listens.
    pub async fn campaigns(&self) -> Option<Vec<CampaignInfo>> {
        let (tx, rx) = oneshot::channel();
        self.dialer.send(ToDialer::Command(CampaignCommand::List(tx))).await.ok()?;
        rx.await.ok()
    }

    /// Pauses a running campaign; true when it was running and is now paused.
    pub async fn pause_campaign(&self, name: &str, reason: &str) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = CampaignCommand::Pause { name: name.to_owned(), reason: reason.to_owned(), done };
        self.command(cmd, rx).await
    }

    /// Resumes a paused campaign; true when it runs again.
    pub async fn resume_campaign(&self, name: &str, reason: &str) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = CampaignCommand::Resume { name: name.to_owned(), reason: reason.to_owned(), done };
        self.command(cmd, rx).await
    }

    async fn command(&self, cmd: CampaignCommand, answer: oneshot::Receiver<bool>) -> bool {
        if self.dialer.send(ToDialer::Command(cmd)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
