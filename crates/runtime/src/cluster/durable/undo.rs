//! Taking back, in Redis, what an acquire made whose journal append was lost (see the
//! parent's docs, "PostgreSQL down").

use super::Inner;
use callgate_backend::{Command, Error, Executed, Outcome};
use callgate_core::{Event, LeaseId, TicketId};
use std::time::Duration;
use tokio::time::Instant;

/// How often taking back a lost grant is tried (Redis may be down too) before it is left
/// to its TTL.
const UNDO_TRIES: u32 = 10;
/// Between two tries.
const UNDO_RETRY: Duration = Duration::from_secs(1);

/// What an acquire whose append was lost must take back in Redis.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Undo {
    pub(super) leases: Vec<LeaseId>,
    pub(super) tickets: Vec<TicketId>,
}

impl Undo {
    /// What an acquire, executed as `done`, granted or queued for its own caller.
    pub(super) fn of(is_acquire: bool, done: &Executed) -> Undo {
        let mut undo = Undo::default();
        if !is_acquire {
            return undo;
        }
        // Only what this command made: an idempotent retry that found its lease or ticket
        // has no event for it, and what an earlier command made is that command's.
        for e in &done.events {
            match e {
                Event::Granted { lease, from_ticket: None } => undo.leases.push(lease.id),
                Event::Queued { ticket, .. } => undo.tickets.push(ticket.id),
                _ => {}
            }
        }
        undo
    }

    pub(super) fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.tickets.is_empty()
    }
}

impl Inner {
    /// Takes back in Redis what a lost acquire granted or queued (blocking). A lease that an
    /// acquire retried by its key found meanwhile stays: the retry's node journaled it and
    /// may have answered "granted" ([`callgate_store_redis::RedisLedger::take_back`]). Answers the leases that
    /// stayed (or had ended already).
    fn undo(&self, undo: &Undo) -> Result<Vec<LeaseId>, Error> {
        let mut stayed = Vec::new();
        for &id in &undo.leases {
            let _order = self.order();
            let started = Instant::now();
            let tag = self.marks.next_tag();
            let done = self.append(self.redis.take_back(id, Some(&tag))?, started);
            self.marks.to_settle(&tag, [&done]);
            if matches!(done.outcome, Outcome::Released(None)) {
                stayed.push(id);
            }
        }
        for &t in &undo.tickets {
            self.run(Command::Cancel(t))?;
        }
        Ok(stayed)
    }
}

/// Tries [`Inner::undo`] until it works or [`UNDO_TRIES`] tries failed (blocking).
pub(super) fn take_back(inner: &Inner, undo: &Undo) {
    for attempt in 1..=UNDO_TRIES {
        match inner.undo(undo) {
            Ok(stayed) => {
                tracing::warn!(leases = ?undo.leases, tickets = ?undo.tickets, stayed = ?stayed,
                    "A grant PostgreSQL did not commit was taken back (its caller heard 503); those that \
                     stayed had ended, or a retry by their key found them and its node journaled them");
                return;
            }
            Err(e) if attempt == UNDO_TRIES => {
                tracing::error!(error = %e, leases = ?undo.leases, tickets = ?undo.tickets,
                    "Cannot take back a grant PostgreSQL did not commit; it ends at its TTL");
            }
            Err(_) => std::thread::sleep(UNDO_RETRY),
        }
    }
}
