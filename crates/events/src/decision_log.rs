//! The decision log: one line per grant, queue, reject, release, expiry and ended ticket,
//! under the log target [`TARGET`], written by the journal's consumer, so a line
//! is only ever written for a decision that is durable (and in ledger order). On with
//! `[server] decision_log = true` or `callgate serve --decision-log`; the command line
//! writes these lines as JSON (one object per line) whatever the other logs look like.
//!
//! Fields: `decision` (`granted`, `queued`, `rejected`, `released`, `expired`,
//! `cancelled`, `timed_out`, `never_fits`), `at_ms`, `flow` (when it came through one),
//! `class`, `pools` (`pool:units` joined by commas), `key`, `lease` / `ticket`,
//! `wait_ms` (grants from the line and ended tickets), `held_ms` (releases, expiries),
//! `position` (queued), `reason` (rejections). Rejections by an open breaker
//! (`dependency_down`) do not reach the ledger and are not in this log; they are counted
//! in `callgate_fallbacks_total`.

use callgate_backend::Names;
use callgate_core::{Event, PoolUnits, TicketOutcome};

/// The log target of decision lines.
pub const TARGET: &str = "callgate::decision";

fn pools(names: &Names, pools: &[PoolUnits]) -> String {
    let mut out = String::new();
    for (i, p) in pools.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&names.pools[p.pool.index()]);
        out.push(':');
        out.push_str(&p.units.to_string());
    }
    out
}

/// Writes the decision lines of committed `events`.
pub fn log(events: &[Event], names: &Names) {
    let flow = |f: Option<callgate_core::FlowId>| f.map(|f| names.flows[f.index()].clone());
    for e in events {
        match e {
            Event::Granted { lease, from_ticket } => tracing::info!(
                target: TARGET,
                decision = "granted",
                at_ms = lease.granted_at,
                flow = flow(lease.flow).as_deref(),
                class = &*names.classes[lease.class.index()],
                pools = pools(names, &lease.pools),
                key = lease.key.as_deref(),
                lease = %lease.id,
                ticket = from_ticket.map(|(t, _)| t.to_string()),
                wait_ms = from_ticket.map_or(0, |(_, w)| w),
                "Decision"
            ),
            Event::Queued { ticket, position } => tracing::info!(
                target: TARGET,
                decision = "queued",
                at_ms = ticket.enqueued_at,
                flow = flow(ticket.flow).as_deref(),
                class = &*names.classes[ticket.class.index()],
                pools = pools(names, &ticket.pools),
                key = ticket.key.as_deref(),
                ticket = %ticket.id,
                position,
                "Decision"
            ),
            Event::Rejected { class, pools: asked, flow: f, key, reason, at } => tracing::info!(
                target: TARGET,
                decision = "rejected",
                at_ms = at,
                flow = flow(*f).as_deref(),
                class = &*names.classes[class.index()],
                pools = pools(names, asked),
                key = key.as_deref(),
                reason = reason.as_str(),
                "Decision"
            ),
            Event::Released { lease, at } | Event::Expired { lease, at } => tracing::info!(
                target: TARGET,
                decision = if matches!(e, Event::Expired { .. }) { "expired" } else { "released" },
                at_ms = at,
                flow = flow(lease.flow).as_deref(),
                class = &*names.classes[lease.class.index()],
                pools = pools(names, &lease.pools),
                key = lease.key.as_deref(),
                lease = %lease.id,
                held_ms = at.saturating_sub(lease.granted_at),
                "Decision"
            ),
            Event::TicketEnded { ticket, outcome, at } => tracing::info!(
                target: TARGET,
                decision = match outcome {
                    TicketOutcome::Cancelled => "cancelled",
                    TicketOutcome::NeverFits => "never_fits",
                    TicketOutcome::TimedOut | TicketOutcome::Granted(_) => "timed_out",
                },
                at_ms = at,
                flow = flow(ticket.flow).as_deref(),
                class = &*names.classes[ticket.class.index()],
                pools = pools(names, &ticket.pools),
                key = ticket.key.as_deref(),
                ticket = %ticket.id,
                wait_ms = at.saturating_sub(ticket.enqueued_at),
                "Decision"
            ),
            Event::Renewed { .. } | Event::LimitChanged { .. } => {}
        }
    }
}
