//! The server's own calls, into the call history that forecasts learn from
//! (`history.sqlite`, see `callgate-forecast`): every request of a flow is an arrival
//! (granted at once, queued, or refused), and a lease's release or expiry its end.
//!
//! A [`LedgerSubscriber`] sees the committed events on the journal's writer thread, where
//! nothing may block: it turns them into [`LiveCall`]s and hands them to a thread of its own
//! through a bounded channel; when that is full (the disk cannot keep up), records are
//! dropped and counted rather than slowing admission down. The history is for forecasts,
//! not an audit: a dropped arrival makes a forecast a little low, it admits nobody.
//!
//! A call's end is recorded as its arrival plus the time it held its lease, so the
//! handling time a forecast learns excludes the wait. Leases restored at a start have no
//! arrival here (it was recorded by the process before), and their end is not recorded.

use callgate_core::{Event, LeaseId};
use callgate_events::bus::LedgerSubscriber;
use callgate_forecast::history::{History, LiveCall};
use callgate_store::Names;
use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Records waiting for the writer thread: a few seconds of a busy server.
const BACKLOG: usize = 65_536;
/// The most records one transaction writes.
const BATCH: usize = 4096;

/// The subscriber: arrivals and ends, out to the writer thread.
pub struct Recorder {
    out: SyncSender<LiveCall>,
    /// Live lease → (its arrival's key, its arrival, when it was granted).
    leases: FxHashMap<LeaseId, (String, u64, u64)>,
    /// Waiting ticket → (its arrival's key, its arrival).
    tickets: FxHashMap<callgate_core::TicketId, (String, u64)>,
    refused: u64,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dropped", &self.dropped.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing to `data_dir/history.sqlite` from a thread of its own (which ends
    /// when the recorder is dropped). `dropped` counts records lost to a full backlog or a
    /// failed write.
    pub fn start(data_dir: PathBuf, dropped: Arc<AtomicU64>) -> Recorder {
        let (out, rx) = sync_channel(BACKLOG);
        let lost = dropped.clone();
        let spawned =
            std::thread::Builder::new().name("callgate-history".into()).spawn(move || write(data_dir, rx, lost));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "The call history writer did not start: forecasts learn only from imported history");
        }
        Recorder { out, leases: FxHashMap::default(), tickets: FxHashMap::default(), refused: 0, dropped }
    }

    fn send(&self, call: LiveCall) {
        match self.out.try_send(call) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn end(&mut self, lease: LeaseId, at: u64) {
        if let Some((key, arrived, granted)) = self.leases.remove(&lease) {
            self.send(LiveCall::End { key, ended_at_ms: arrived + at.saturating_sub(granted) });
        }
    }
}

impl LedgerSubscriber for Recorder {
    fn committed(&mut self, events: &[Event], names: &Names) {
        let flow = |f: Option<callgate_core::FlowId>| f.and_then(|f| names.flows.get(f.index())).map(|n| n.to_string());
        for e in events {
            match e {
                Event::Granted { lease, from_ticket: None } => {
                    let Some(name) = flow(lease.flow) else { continue };
                    let key = format!("live:l{}", lease.id.0);
                    self.send(LiveCall::Arrival {
                        key: key.clone(),
                        flow: name,
                        at_ms: lease.granted_at,
                        outcome: "granted",
                    });
                    self.leases.insert(lease.id, (key, lease.granted_at, lease.granted_at));
                }
                Event::Granted { lease, from_ticket: Some((ticket, _)) } => {
                    if let Some((key, arrived)) = self.tickets.remove(ticket) {
                        self.leases.insert(lease.id, (key, arrived, lease.granted_at));
                    }
                }
                Event::Queued { ticket, .. } => {
                    let Some(name) = flow(ticket.flow) else { continue };
                    let key = format!("live:t{}", ticket.id.0);
                    self.send(LiveCall::Arrival {
                        key: key.clone(),
                        flow: name,
                        at_ms: ticket.enqueued_at,
                        outcome: "queued",
                    });
                    self.tickets.insert(ticket.id, (key, ticket.enqueued_at));
                }
                Event::TicketEnded { ticket, .. } => {
                    self.tickets.remove(&ticket.id);
                }
                Event::Rejected { flow: f, at, .. } => {
                    let Some(name) = flow(*f) else { continue };
                    self.refused += 1;
                    let key = format!("live:r{at}:{}", self.refused);
                    self.send(LiveCall::Arrival { key, flow: name, at_ms: *at, outcome: "rejected" });
                }
                Event::Released { lease, at } | Event::Expired { lease, at } => self.end(lease.id, *at),
                _ => {}
            }
        }
    }
}

/// The writer thread: batches of what arrived, one transaction each.
fn write(data_dir: PathBuf, rx: Receiver<LiveCall>, dropped: Arc<AtomicU64>) {
    let mut history = match History::open(&data_dir) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "The call history cannot be opened: forecasts learn only from imported history");
            return;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if let Err(e) = history.record_live(&batch) {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, records = batch.len(), "Call history records lost");
        }
    }
}
