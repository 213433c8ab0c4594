//! Several dialer nodes over one database: each claimer is a thread with a lead store (and
//! so connections) of its own. They claim due leads at once, half through
//! `PgLeads::claim_due` (`FOR UPDATE SKIP LOCKED`), half as the dialer does today (read
//! `due`, then `BeginAttempt` per lead); some attempts fail and are retried, and one
//! claimer dies with attempts out, which a survivor resolves as a restarted dialer does.
//! No lead ever has two open attempts, no claim fails, and every lead is reached exactly
//! once: none is lost, none is dialed after it was done.

mod support;

use callgate_backend::leads::{AttemptEnd, LeadOp, LeadOut, Leads, NewAttempt, NewLead};
use callgate_store_postgres::{ClaimSlot, Pg, PgLeads, Settings};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use support::TestDb;

const CAMPAIGN: &str = "renewals";
const LEADS: u64 = 240;
const T0: u64 = 1_800_000_000_000;

fn store(url: &str) -> PgLeads {
    PgLeads::open(&Pg::open(url, Settings::default()).expect("open")).expect("lead store")
}

fn end(id: u64, outcome: &str, lead_state: &str, at: u64) -> LeadOp {
    LeadOp::EndAttempt(AttemptEnd {
        id,
        outcome: outcome.into(),
        reason: None,
        ended_at: at,
        talk_ms: (outcome == "completed").then_some(1_000),
        cost: None,
        lead_state: lead_state.into(),
        next_at: at,
    })
}

/// Claims up to `n` leads; `(attempt id, lead id)` of each claimed.
fn claim(s: &PgLeads, skip_locked: bool, n: usize, now: u64) -> Vec<(u64, u64)> {
    if skip_locked {
        let slots = (0..n)
            .map(|_| {
                let id = s.next_attempt_id();
                ClaimSlot { attempt_id: id, class: "outbound".into(), provider: "sim".into(), lease: format!("L{id}") }
            })
            .collect();
        let claimed = s.claim_due_blocking(CAMPAIGN, now, slots).expect("a claim never fails");
        claimed.into_iter().map(|c| (c.attempt_id, c.lead.id)).collect()
    } else {
        let mut out = Vec::new();
        for lead in s.due(CAMPAIGN, now, n).expect("due") {
            let id = s.next_attempt_id();
            let begin = LeadOp::BeginAttempt(NewAttempt {
                id,
                lead_id: lead.id,
                campaign: CAMPAIGN.into(),
                number: lead.attempts + 1,
                class: "outbound".into(),
                provider: "sim".into(),
                lease: format!("L{id}"),
                callback_id: None,
                at: now,
            });
            match s.write_blocking(vec![begin]).expect("a claim never fails").remove(0) {
                LeadOut::Done => out.push((id, lead.id)),
                LeadOut::Stale => {} // another node took it first
                other => panic!("a claim answers done or stale: {other:?}"),
            }
        }
        out
    }
}

/// Raises the flag when its thread unwinds from a panic.
struct Raise(Arc<AtomicBool>);

impl Drop for Raise {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn concurrent_claimers_never_dial_a_lead_twice_and_lose_none_when_one_dies() {
    let db = TestDb::new("claim");
    let setup = store(&db.url);
    let leads = (0..LEADS)
        .map(|i| NewLead {
            phone: format!("+1555{i:07}"),
            name: None,
            timezone: "UTC".into(),
            score: (i % 5) as f64,
            vars: None,
        })
        .collect();
    setup.write_blocking(vec![LeadOp::AddLeads { campaign: CAMPAIGN.into(), leads, at: T0 }]).expect("import");

    let reached = Arc::new(AtomicU64::new(0));
    let dead_claimed = Arc::new(AtomicU64::new(0));
    // Set when the claimers are through, or when anyone fails (so a failure ends the test
    // at once instead of leaving the others running).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_failure = Raise(stop.clone());
    let claimers: Vec<_> = (0..4u64)
        .map(|n| {
            let (url, reached, dead_claimed, stop) =
                (db.url.clone(), reached.clone(), dead_claimed.clone(), stop.clone());
            std::thread::spawn(move || {
                let _stop_on_failure = Raise(stop.clone());
                let s = store(&url);
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    assert!(round < 100_000, "node {n} is still claiming after {round} rounds");
                    let now = T0 + round;
                    let claimed = claim(&s, n % 2 == 0, 4, now);
                    if n == 2 && round >= 5 && !claimed.is_empty() {
                        // This node dies with its claims out: its attempts stay open. (It
                        // claims with SKIP LOCKED, so it has claims long before the leads
                        // run out: 4 nodes x 4 leads x 5 rounds is a third of them.)
                        dead_claimed.fetch_add(claimed.len() as u64, Ordering::Relaxed);
                        return;
                    }
                    if claimed.is_empty() && s.due(CAMPAIGN, u64::MAX, 1).expect("due").is_empty() {
                        return;
                    }
                    for (i, (attempt, lead)) in claimed.into_iter().enumerate() {
                        // Every third call is not answered and retried at once; the rest reach the lead.
                        let (outcome, state) = if (lead + round + i as u64).is_multiple_of(3) {
                            ("no_answer", "pending")
                        } else {
                            ("completed", "done")
                        };
                        match s.write_blocking(vec![end(attempt, outcome, state, now)]).expect("end").remove(0) {
                            LeadOut::Ended(e) => assert!(e.applied, "attempt {attempt} of lead {lead} ended once"),
                            other => panic!("{other:?}"),
                        }
                        if state == "done" {
                            reached.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // Meanwhile: never two open attempts for one lead (read from the database itself).
    let watcher = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let _stop_on_failure = Raise(stop.clone());
            let s = store(&url);
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) || checks == 0 {
                let open = s.open_attempts().expect("read");
                let mut leads: Vec<u64> = open.iter().map(|a| a.lead_id).collect();
                leads.sort_unstable();
                let before = leads.len();
                leads.dedup();
                assert_eq!(before, leads.len(), "a lead with two open attempts: {open:?}");
                checks += 1;
            }
        })
    };
    let claimed: Vec<_> = claimers.into_iter().map(|c| c.join()).collect();
    stop.store(true, Ordering::Relaxed);
    let watched = watcher.join();
    assert!(claimed.iter().all(Result::is_ok), "a claimer failed (see its panic above)");
    watched.expect("the watcher saw a lead claimed twice");

    // A restarted dialer resolves what the dead node left open, then the leads are dialed.
    let dead = dead_claimed.load(Ordering::Relaxed);
    assert!(dead > 0, "the dying node had claims out");
    let open = setup.open_attempts().expect("read");
    assert_eq!(open.len() as u64, dead, "exactly the dead node's claims are still out");
    let at = T0 + 1_000_000;
    for a in &open {
        setup.write_blocking(vec![end(a.id, "interrupted", "pending", at)]).expect("resolve");
    }
    for round in 0.. {
        assert!(round < 1_000, "the leads left are still being claimed after {round} rounds");
        let claimed = claim(&setup, true, 16, at);
        if claimed.is_empty() {
            break;
        }
        for (attempt, _) in claimed {
            setup.write_blocking(vec![end(attempt, "completed", "done", at)]).expect("end");
            reached.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Every lead reached exactly once: done, with one completed attempt each.
    assert_eq!(reached.load(Ordering::Relaxed), LEADS, "every lead reached, none twice");
    let counts = setup.counts(CAMPAIGN, 0).expect("counts");
    assert_eq!(counts.leads, vec![("done".to_string(), Some("completed".to_string()), LEADS)], "{counts:?}");
    for id in 1..=LEADS {
        let completed =
            setup.attempts_of(id).expect("read").iter().filter(|a| a.outcome.as_deref() == Some("completed")).count();
        assert_eq!(completed, 1, "lead {id} was reached {completed} times");
    }
    assert!(setup.open_attempts().expect("read").is_empty());
}

#[tokio::test]
async fn a_claim_among_given_leads_takes_only_those_in_dial_order_and_skips_claimed_ones() {
    let db = TestDb::new("claim");
    let s = store(&db.url);
    let leads = (0..6)
        .map(|i| NewLead {
            phone: format!("+1555000{i:04}"),
            name: None,
            timezone: "UTC".into(),
            score: i as f64,
            vars: None,
        })
        .collect();
    s.write(vec![LeadOp::AddLeads { campaign: CAMPAIGN.into(), leads, at: T0 }]).await.expect("import");
    let slots = |n: usize| {
        (0..n)
            .map(|_| {
                let id = s.next_attempt_id();
                ClaimSlot { attempt_id: id, class: "outbound".into(), provider: "sim".into(), lease: format!("L{id}") }
            })
            .collect::<Vec<_>>()
    };
    // Leads 2, 4 and 5 are callable now (their windows open); the best score first.
    let got = s.claim_among(CAMPAIGN, T0, &[2, 4, 5], slots(2)).await.expect("claim");
    assert_eq!(
        got.iter().map(|c| (c.lead.id, c.lead.state.as_str(), c.lead.attempts)).collect::<Vec<_>>(),
        [(5, "dialing", 1), (4, "dialing", 1)]
    );
    // Asked again with more slots than leads left: only lead 2; 4 and 5 are out already.
    let got = s.claim_among(CAMPAIGN, T0, &[2, 4, 5], slots(3)).await.expect("claim");
    assert_eq!(got.iter().map(|c| c.lead.id).collect::<Vec<_>>(), [2]);
    assert_eq!(s.open_attempts().expect("read").iter().map(|a| a.lead_id).collect::<Vec<_>>(), [5, 4, 2]);
    assert!(s.claim_among(CAMPAIGN, T0, &[], slots(1)).await.expect("claim").is_empty());
}
