//! The JSON shapes of leases, tickets, pools and events (API.md), built from the
//! ledger's values and the names of its pools, classes and flows.

use callgate_backend::Names;
use callgate_core::{Event, Lease, LeaseId, PoolUnits, PoolView, Ticket, TicketId, TicketOutcome};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `{ "pool", "units" }`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PoolUnitsView {
    /// Pool name.
    pub pool: Arc<str>,
    /// Units.
    pub units: u32,
}

/// Serializes an id as its text (`L42`, `T7`): the one way ids appear in JSON.
pub fn as_text<T: std::fmt::Display, S: serde::Serializer>(id: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A lease as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    /// `L<n>`.
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub id: LeaseId,
    /// Idempotency key.
    pub key: Option<Arc<str>>,
    /// Class name.
    pub class: Arc<str>,
    /// Flow name, when it came through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Arc<str>>,
    /// Pools and units.
    pub pools: Vec<PoolUnitsView>,
    /// Unix ms.
    pub granted_at_ms: u64,
    /// Unix ms.
    pub expires_at_ms: u64,
    /// The metadata given at acquire.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Box<RawValue>>,
}

/// A ticket as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    /// `T<n>`.
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub id: TicketId,
    /// Idempotency key.
    pub key: Option<Arc<str>>,
    /// 1 for the first in line.
    pub position: u32,
    /// Estimated wait (ms).
    pub eta_ms: u64,
    /// Unix ms at which it times out.
    pub deadline_ms: u64,
}

/// A pool as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PoolInfo {
    /// Name.
    pub name: Arc<str>,
    /// Configured limit.
    pub limit: u32,
    /// Effective cap.
    pub cap: u32,
    /// Units in use.
    pub used: u64,
    /// Units in use by class: only the classes holding units (sums to `used`).
    pub used_by_class: BTreeMap<Arc<str>, u64>,
    /// Units reserved per class.
    #[schema(value_type = BTreeMap<String, u32>)]
    pub reserve: BTreeMap<Arc<str>, u32>,
    /// Waiting tickets.
    pub waiting: u32,
    /// Mean hold time observed (ms).
    pub mean_hold_ms: u64,
}

/// The per-pool units of a lease or ticket, by pool name.
pub fn pools_view(names: &Names, pools: &[PoolUnits]) -> Vec<PoolUnitsView> {
    pools.iter().map(|p| PoolUnitsView { pool: names.pools[p.pool.index()].clone(), units: p.units }).collect()
}

impl LeaseView {
    /// The view of `lease`.
    pub fn new(lease: &Lease, names: &Names) -> Self {
        LeaseView {
            id: lease.id,
            key: lease.key.clone(),
            class: names.classes[lease.class.index()].clone(),
            flow: lease.flow.map(|f| names.flows[f.index()].clone()),
            pools: pools_view(names, &lease.pools),
            granted_at_ms: lease.granted_at,
            expires_at_ms: lease.expires_at,
            meta: lease.meta.as_ref().and_then(|m| RawValue::from_string(m.to_string()).ok()),
        }
    }
}

impl LeaseView {
    /// Appends the view's JSON to `out`: the same bytes as `serde_json::to_writer(out,
    /// self)`, written without serde's one-call-per-token writes. The acquire answer is the
    /// JSON the server writes most; serde spent about 3,500 instructions on it (BENCHMARKS.md,
    /// "Where the embedded store's time went"). A test keeps the two equal.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"L");
        write_u64(out, self.id.0);
        out.extend_from_slice(b"\",\"key\":");
        match &self.key {
            Some(k) => write_str(out, k),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"class\":");
        write_str(out, &self.class);
        if let Some(flow) = &self.flow {
            out.extend_from_slice(b",\"flow\":");
            write_str(out, flow);
        }
        out.extend_from_slice(b",\"pools\":[");
        for (i, p) in self.pools.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"pool\":");
            write_str(out, &p.pool);
            out.extend_from_slice(b",\"units\":");
            write_u64(out, u64::from(p.units));
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"granted_at_ms\":");
        write_u64(out, self.granted_at_ms);
        out.extend_from_slice(b",\"expires_at_ms\":");
        write_u64(out, self.expires_at_ms);
        if let Some(meta) = &self.meta {
            // Raw JSON text, written as it was received (as serde writes a `RawValue`).
            out.extend_from_slice(b",\"meta\":");
            out.extend_from_slice(meta.get().as_bytes());
        }
        out.push(b'}');
    }
}

/// A JSON string: as it is when nothing in it needs an escape, else as serde_json
/// escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a `Vec` cannot fail, and a `str` always serializes.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A decimal number, as serde_json writes it.
fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

impl PoolInfo {
    /// The view of a pool.
    pub fn new(p: &PoolView, names: &Names) -> Self {
        PoolInfo {
            name: p.name.clone(),
            limit: p.limit,
            cap: p.cap,
            used: p.used,
            used_by_class: p
                .used_by_class
                .iter()
                .enumerate()
                .filter(|(_, &u)| u > 0)
                .map(|(c, &u)| (names.classes[c].clone(), u))
                .collect(),
            reserve: p.reserve.iter().map(|(c, u)| (names.classes[c.index()].clone(), *u)).collect(),
            waiting: p.waiting,
            mean_hold_ms: p.mean_hold_ms,
        }
    }
}

#[derive(Serialize)]
struct TicketEventView {
    id: String,
    key: Option<Arc<str>>,
    class: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<Arc<str>>,
    pools: Vec<PoolUnitsView>,
    enqueued_at_ms: u64,
    deadline_ms: u64,
}

impl TicketEventView {
    fn new(t: &Ticket, names: &Names) -> Self {
        TicketEventView {
            id: t.id.to_string(),
            key: t.key.clone(),
            class: names.classes[t.class.index()].clone(),
            flow: t.flow.map(|f| names.flows[f.index()].clone()),
            pools: pools_view(names, &t.pools),
            enqueued_at_ms: t.enqueued_at,
            deadline_ms: t.deadline,
        }
    }
}

/// One event as JSON (the payload of `/v1/events`).
pub fn event_json(e: &Event, names: &Names) -> serde_json::Value {
    use serde_json::json;
    match e {
        Event::Granted { lease, from_ticket } => json!({
            "type": "granted",
            "at_ms": lease.granted_at,
            "lease": LeaseView::new(lease, names),
            "ticket": from_ticket.map(|(t, _)| t.to_string()),
            "waited_ms": from_ticket.map_or(0, |(_, w)| w),
        }),
        Event::Queued { ticket, position } => json!({
            "type": "queued",
            "at_ms": ticket.enqueued_at,
            "ticket": TicketEventView::new(ticket, names),
            "position": position,
        }),
        Event::Rejected { class, pools, flow, key, reason, at } => json!({
            "type": "rejected",
            "at_ms": at,
            "key": key,
            "class": names.classes[class.index()],
            "flow": flow.map(|f| names.flows[f.index()].clone()),
            "pools": pools_view(names, pools),
            "reason": reason.as_str(),
        }),
        Event::Renewed { lease, expires_at, at, .. } => json!({
            "type": "renewed",
            "at_ms": at,
            "lease": lease.to_string(),
            "expires_at_ms": expires_at,
        }),
        Event::Released { lease, at } | Event::Expired { lease, at } => json!({
            "type": if matches!(e, Event::Released { .. }) { "released" } else { "expired" },
            "at_ms": at,
            "lease": LeaseView::new(lease, names),
            "held_ms": at.saturating_sub(lease.granted_at),
        }),
        Event::TicketEnded { ticket, outcome, at } => json!({
            "type": match outcome {
                TicketOutcome::Cancelled => "ticket_cancelled",
                TicketOutcome::TimedOut => "ticket_timed_out",
                TicketOutcome::NeverFits => "ticket_never_fits",
                TicketOutcome::Granted(_) => "ticket_granted",
            },
            "at_ms": at,
            "ticket": TicketEventView::new(ticket, names),
            "waited_ms": at.saturating_sub(ticket.enqueued_at),
        }),
        Event::LimitChanged { pool, limit, cap, at } => json!({
            "type": "limit_changed",
            "at_ms": at,
            "pool": names.pools[pool.index()],
            "limit": limit,
            "cap": cap,
        }),
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    fn view(
        key: Option<&str>,
        class: &str,
        flow: Option<&str>,
        pools: &[(&str, u32)],
        meta: Option<&str>,
    ) -> LeaseView {
        LeaseView {
            id: LeaseId(u64::MAX),
            key: key.map(Arc::from),
            class: Arc::from(class),
            flow: flow.map(Arc::from),
            pools: pools.iter().map(|(p, u)| PoolUnitsView { pool: Arc::from(*p), units: *u }).collect(),
            granted_at_ms: 1_700_000_000_123,
            expires_at_ms: 0,
            meta: meta.map(|m| RawValue::from_string(m.to_string()).unwrap()),
        }
    }

    #[test]
    fn a_lease_is_written_as_serde_writes_it() {
        let views = [
            view(Some("k0-1"), "inbound", Some("calls"), &[("bench", 1)], None),
            view(None, "vip", None, &[("a", 1_000_000), ("b", 0), ("c", u32::MAX)], Some(r#"{"x": [1, "y"]}"#)),
            view(Some("a \"quoted\" \\ key\n\u{1}"), "cl\u{e9}ss", Some("fl\tow"), &[], Some("{}")),
            view(Some(""), "", Some(""), &[("p\"", 7)], None),
        ];
        for v in views {
            let mut fast = Vec::new();
            v.write_json(&mut fast);
            assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&v).unwrap());
        }
    }
}
