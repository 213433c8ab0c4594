//! Operations by provider call id: provider webhooks know a call by its id (the key of
//! its lease or ticket), never by a lease or ticket id. Also the durable call records and
//! callbacks, which go through the same journal.

use super::Error;
use super::Governor;
use callgate_backend::records::{CallRecord, Callback, CallbackQuery, Record};
use callgate_backend::{Command, LeaseRef, Outcome};
use callgate_core::{LeaseId, TicketId};
use callgate_events::views::{LeaseView, TicketView};
use std::sync::Arc;
use std::time::Duration;

/// What callgate holds for a call.
#[derive(Clone, Debug)]
pub enum Hold {
    /// A live lease.
    Lease(LeaseView),
    /// A waiting ticket.
    Waiting(TicketView),
}

pub use callgate_backend::CallEnd;

/// A lease or ticket that a provider's edge took (its metadata names the provider).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderHold {
    /// The call id (the key).
    pub key: String,
    /// When it was granted or started waiting (Unix ms).
    pub since: u64,
    /// The lease, with its expiry, or `None` for a waiting ticket.
    pub lease: Option<(LeaseId, u64)>,
}

/// What a reconciliation pass changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// `(call id, lease)` released because the call is over.
    pub released: Vec<(String, LeaseId)>,
    /// `(call id, ticket)` cancelled because the caller is gone.
    pub cancelled: Vec<(String, TicketId)>,
    /// Leases renewed because their call is still live.
    pub renewed: usize,
}

/// Reads the `provider` field of a lease's or ticket's metadata without parsing the rest.
fn meta_provider(meta: Option<&str>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        provider: Option<String>,
    }
    meta.and_then(|m| serde_json::from_str::<Meta>(m).ok()).and_then(|m| m.provider)
}

impl Governor {
    /// The lease or waiting ticket of the call with this id.
    pub fn hold(&self, key: &str) -> Option<Hold> {
        if let Some(l) = self.backend.lease_by_key(key) {
            return Some(Hold::Lease(LeaseView::new(&l, &self.names())));
        }
        let read = self.backend.ticket_by_key(key)?;
        let t = read.ticket?;
        let (position, eta_ms, deadline) = match read.status {
            callgate_core::TicketStatus::Waiting { position, eta_ms, deadline } => (position, eta_ms, deadline),
            _ => (1, 0, t.deadline),
        };
        Some(Hold::Waiting(TicketView { id: t.id, key: t.key, position, eta_ms, deadline_ms: deadline }))
    }

    /// Ends what callgate holds for a call: releases its lease or cancels its ticket,
    /// durably. Idempotent: a second end frees nothing.
    pub async fn end_call(&self, key: &str) -> Result<CallEnd, Error> {
        let done = self.run(Command::EndCall(Arc::from(key))).await?;
        self.durable(done.commit).await?;
        Ok(match done.outcome {
            Outcome::CallEnded(end) => end,
            _ => CallEnd::Nothing,
        })
    }

    /// Extends the live lease of a call by its own TTL (a sign of life from the
    /// platform). False when the call holds no lease.
    pub async fn renew_call(&self, key: &str) -> Result<bool, Error> {
        let done = self.run(Command::Renew { lease: LeaseRef::Key(Arc::from(key)), ttl_ms: None, owner: None }).await?;
        self.durable(done.commit).await?;
        Ok(matches!(done.outcome, Outcome::Renewed(Some(_))))
    }

    /// Waits up to `max` for a waiting ticket to end (granted, timed out or cancelled),
    /// and until that end is durable. Returns at once when it is not waiting.
    pub async fn await_ticket(&self, id: TicketId, max: Duration) {
        let rx = {
            let mut st = self.lock();
            if self.backend.ticket(id).and_then(|t| t.ticket).is_none() {
                return;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            st.waiters.entry(id.0).or_default().push(tx);
            rx
        };
        if let Ok(Ok((seq, _))) = tokio::time::timeout(max, rx).await {
            let _ = self.durable(seq).await;
        }
    }

    /// Every lease and waiting ticket that `provider`'s edge (or its reconciler) took.
    pub fn provider_holds(&self, provider: &str) -> Vec<ProviderHold> {
        let mine = |meta: Option<&Arc<str>>| meta_provider(meta.map(|m| &**m)).as_deref() == Some(provider);
        let mut out: Vec<ProviderHold> = self
            .backend
            .leases()
            .into_iter()
            .filter(|l| mine(l.meta.as_ref()))
            .filter_map(|l| {
                Some(ProviderHold {
                    key: l.key.as_deref()?.to_owned(),
                    since: l.granted_at,
                    lease: Some((l.id, l.expires_at)),
                })
            })
            .collect();
        out.extend(self.backend.tickets().into_iter().filter(|t| mine(t.meta.as_ref())).filter_map(|t| {
            Some(ProviderHold { key: t.key.as_deref()?.to_owned(), since: t.enqueued_at, lease: None })
        }));
        out
    }

    /// Applies a reconciliation in one command: ends the calls in `ended` (releasing
    /// their leases, cancelling their tickets) and renews the leases of `renew`. Each is
    /// checked again in the command, so a webhook that got there first is not undone.
    pub async fn repair(&self, ended: &[String], renew: &[String]) -> Result<Repaired, Error> {
        let cmd = self.duty_command(Command::Repair {
            ended: ended.iter().map(|k| Arc::from(k.as_str())).collect(),
            renew: renew.iter().map(|k| Arc::from(k.as_str())).collect(),
        })?;
        let done = self.exec_one(cmd)?;
        self.durable(done.commit).await?;
        let Outcome::Repaired(r) = done.outcome else { return Ok(Repaired::default()) };
        Ok(Repaired {
            released: r.released.into_iter().map(|(k, l)| (k.to_string(), l)).collect(),
            cancelled: r.cancelled.into_iter().map(|(k, t)| (k.to_string(), t)).collect(),
            renewed: r.renewed,
        })
    }

    /// Writes call records and callbacks durably; returns once they are on disk.
    pub async fn record(&self, records: Vec<Record>) -> Result<(), Error> {
        self.check_healthy()?;
        self.records.record(records).await.map_err(super::durably)
    }

    /// Booked callbacks, soonest due first.
    pub fn callbacks(&self, query: &CallbackQuery) -> Result<Vec<Callback>, Error> {
        self.records.callbacks(query).map_err(super::durably)
    }

    /// The most recently updated call records.
    pub fn calls(&self, limit: usize) -> Result<Vec<CallRecord>, Error> {
        self.records.calls(limit).map_err(super::durably)
    }

    /// One call record.
    pub fn call_record(&self, provider: &str, call_id: &str) -> Result<Option<CallRecord>, Error> {
        self.records.call(provider, call_id).map_err(super::durably)
    }
}
