//! How fast dialer nodes get through a campaign on one PostgreSQL: `nodes` threads, each
//! with a lead store (and connections) of its own, claim `batch` due leads at a time and end
//! each attempt, until `leads` leads are done; once with `claim_due` (`FOR UPDATE SKIP
//! LOCKED`, one transaction per batch), once as the dialer does today (`due`, then one
//! `BeginAttempt` write per lead, stale when another node took it first).
//!
//! ```sh
//! createdb -h 127.0.0.1 -U postgres cg_claims
//! cargo run -p callgate-store-postgres --example claim_rate -- \
//!     postgres://postgres@127.0.0.1:5432/cg_claims 3 2000 4
//! dropdb -h 127.0.0.1 -U postgres cg_claims
//! ```

use callgate_backend::leads::{AttemptEnd, LeadOp, LeadOut, Leads, NewAttempt, NewLead};
use callgate_store_postgres::{ClaimSlot, Pg, PgLeads, Settings};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn store(url: &str) -> PgLeads {
    PgLeads::open(&Pg::open(url, Settings::default()).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn done(id: u64) -> LeadOp {
    LeadOp::EndAttempt(AttemptEnd {
        id,
        outcome: "completed".into(),
        reason: None,
        ended_at: 2,
        talk_ms: Some(1),
        cost: None,
        lead_state: "done".into(),
        next_at: 0,
    })
}

/// One node's loop; the claims that came back stale.
fn dial(url: &str, campaign: &str, skip_locked: bool, batch: usize) -> u64 {
    let s = store(url);
    let mut stale = 0;
    loop {
        let claimed: Vec<u64> = if skip_locked {
            let slots = (0..batch)
                .map(|_| {
                    let id = s.next_attempt_id();
                    ClaimSlot {
                        attempt_id: id,
                        class: "outbound".into(),
                        provider: "sim".into(),
                        lease: format!("L{id}"),
                    }
                })
                .collect();
            s.claim_due_blocking(campaign, 1, slots)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|c| c.attempt_id)
                .collect()
        } else {
            let mut out = Vec::new();
            for lead in s.due(campaign, 1, batch).unwrap_or_else(|e| panic!("{e}")) {
                let id = s.next_attempt_id();
                let begin = LeadOp::BeginAttempt(NewAttempt {
                    id,
                    lead_id: lead.id,
                    campaign: campaign.into(),
                    number: 1,
                    class: "outbound".into(),
                    provider: "sim".into(),
                    lease: format!("L{id}"),
                    callback_id: None,
                    at: 1,
                });
                match s.write_blocking(vec![begin]).unwrap_or_else(|e| panic!("{e}")).remove(0) {
                    LeadOut::Done => out.push(id),
                    _ => stale += 1,
                }
            }
            out
        };
        if claimed.is_empty() && s.due(campaign, 1, 1).unwrap_or_else(|e| panic!("{e}")).is_empty() {
            return stale;
        }
        for id in claimed {
            s.write_blocking(vec![done(id)]).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/cg_claims".into());
    let nodes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let leads: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let batch: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(4);
    let setup = store(&url);
    for (n, skip_locked) in [true, false].into_iter().enumerate() {
        #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let campaign = format!("bench-{run}-{n}");
        let new = (0..leads)
            .map(|i| NewLead {
                phone: format!("+1555{i:07}"),
                name: None,
                timezone: "UTC".into(),
                score: 0.0,
                vars: None,
            })
            .collect();
        setup
            .write_blocking(vec![LeadOp::AddLeads { campaign: campaign.clone(), leads: new, at: 0 }])
            .unwrap_or_else(|e| panic!("{e}"));
        let stale = Arc::new(AtomicU64::new(0));
        #[allow(clippy::disallowed_methods)] // a benchmark measures the wall clock
        let start = std::time::Instant::now();
        let threads: Vec<_> = (0..nodes)
            .map(|_| {
                let (url, campaign, stale) = (url.clone(), campaign.clone(), stale.clone());
                std::thread::spawn(move || {
                    stale.fetch_add(dial(&url, &campaign, skip_locked, batch), Ordering::Relaxed)
                })
            })
            .collect();
        for t in threads {
            t.join().expect("node");
        }
        let secs = start.elapsed().as_secs_f64();
        let counts = setup.counts(&campaign, 0).unwrap_or_else(|e| panic!("{e}"));
        let attempts = counts.attempts;
        assert_eq!(attempts, leads, "every lead dialed once");
        println!(
            "{}: {nodes} nodes, {leads} leads, batch {batch}: {:.1} s, {:.0} leads/s, {} stale claims",
            if skip_locked { "claim_due (SKIP LOCKED)" } else { "due + BeginAttempt" },
            secs,
            leads as f64 / secs,
            stale.load(Ordering::Relaxed)
        );
    }
}
