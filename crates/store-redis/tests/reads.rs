//! Reads agree with the pure ledger: every lease and ticket by id and by key (with a
//! waiting ticket's place in line), the waiting line, and pages of leases with filters,
//! after every step of random histories. (The conformance suite compares the full lists;
//! this compares each way of looking something up.)

use callgate_backend::{reference, Command, LeaseFilter, LeaseRef, LedgerBackend, TicketRead, Waiting};
use callgate_core::clock::{Clock, ManualClock};
use callgate_core::{
    ClassId, ClassSpec, FlowId, FlowSpec, LeaseId, Ledger, LedgerSpec, PoolId, PoolSpec, PoolUnits, QueueSpec, Request,
    TicketId,
};
use callgate_store_redis::{RedisLedger, Time};
use support::Server;

mod support;

/// Two pools, three classes (two of one priority), flows that wait.
fn spec() -> LedgerSpec {
    let units = |p: u32, u: u32| PoolUnits { pool: PoolId(p), units: u };
    LedgerSpec {
        classes: vec![
            ClassSpec { name: "vip".into(), priority: 10 },
            ClassSpec { name: "inbound".into(), priority: 5 },
            ClassSpec { name: "web".into(), priority: 5 },
        ],
        pools: vec![
            PoolSpec { name: "account".into(), limit: 5, reserve: vec![(ClassId(0), 1)] },
            PoolSpec { name: "line".into(), limit: 3, reserve: vec![] },
        ],
        flows: vec![
            FlowSpec {
                name: "vip".into(),
                pools: vec![units(0, 1)],
                class: ClassId(0),
                lease_ttl_ms: 4_000,
                queue: Some(QueueSpec { max_wait_ms: 3_000, max_len: None }),
            },
            FlowSpec {
                name: "inbound".into(),
                pools: vec![units(0, 1), units(1, 1)],
                class: ClassId(1),
                lease_ttl_ms: 3_000,
                queue: Some(QueueSpec { max_wait_ms: 4_000, max_len: Some(4) }),
            },
            FlowSpec {
                name: "web".into(),
                pools: vec![units(1, 2)],
                class: ClassId(2),
                lease_ttl_ms: 2_000,
                queue: Some(QueueSpec { max_wait_ms: 2_000, max_len: Some(2) }),
            },
        ],
        ticket_retention_ms: 2_000,
        pools_max_len: Some(2),
        ..LedgerSpec::default()
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn step(rng: &mut Rng, clock: &ManualClock) -> Command {
    let key = |rng: &mut Rng| format!("k{}", rng.below(12));
    match rng.below(10) {
        0..=3 => {
            let req = if rng.below(5) == 0 {
                Request::pools(
                    [PoolUnits { pool: PoolId(rng.below(2) as u32), units: 1 }],
                    ClassId(rng.below(3) as u16),
                )
                .with_max_wait(rng.below(3_000))
            } else {
                Request::flow(FlowId(rng.below(3) as u32))
            };
            Command::Acquire(req.with_key(key(rng)))
        }
        4..=5 => Command::Release { lease: LeaseRef::Key(key(rng).into()), owner: None },
        6 => Command::Cancel(TicketId(rng.below(60))),
        7 => Command::SetLimit { pool: PoolId(rng.below(2) as u32), limit: 2 + rng.below(5) as u32 },
        _ => {
            clock.advance(rng.below(1_500));
            Command::Tick
        }
    }
}

/// The embedded backend's `waiting`, on the pure ledger.
fn waiting(r: &Ledger, limit: usize) -> Vec<Waiting> {
    let mut tickets: Vec<&callgate_core::Ticket> = r.tickets().collect();
    tickets.sort_by_key(|t| (std::cmp::Reverse(r.class_priority(t.class)), t.seq));
    tickets
        .into_iter()
        .take(limit)
        .map(|t| {
            let (position, eta_ms) = match r.ticket_status(t.id) {
                Some(callgate_core::TicketStatus::Waiting { position, eta_ms, .. }) => (position, eta_ms),
                _ => (1, 0),
            };
            Waiting { ticket: t.clone(), position, eta_ms }
        })
        .collect()
}

/// The embedded backend's `leases_page`, on the pure ledger.
fn page(
    r: &Ledger,
    after: LeaseId,
    filter: &LeaseFilter,
    limit: usize,
    max_scan: usize,
) -> (Vec<callgate_core::Lease>, Option<LeaseId>) {
    let limit = limit.max(1);
    let mut out = Vec::new();
    let (mut last, mut more) = (None, false);
    for (scanned, l) in r.leases_after(after).enumerate() {
        if out.len() == limit || scanned == max_scan {
            more = true;
            break;
        }
        last = Some(l.id);
        if filter.keeps(l) {
            out.push(l.clone());
        }
    }
    (out, if more { last } else { None })
}

fn ticket_read(r: &Ledger, id: TicketId) -> Option<TicketRead> {
    let status = r.ticket_status(id)?;
    Some(TicketRead { ticket: r.ticket(id).cloned(), status })
}

#[test]
fn every_read_agrees_with_the_pure_ledger() {
    let server = Server::start();
    let filters = [
        LeaseFilter::default(),
        LeaseFilter { pool: Some(PoolId(1)), ..LeaseFilter::default() },
        LeaseFilter { flow: Some(FlowId(1)), ..LeaseFilter::default() },
        LeaseFilter { class: Some(ClassId(0)), key_prefix: Some("k1".into()), ..LeaseFilter::default() },
    ];
    // The histories must reach what the reads show: lines, outcomes kept, pages.
    let (mut lines, mut outcomes, mut pages) = (0, 0, 0);
    // CALLGATE_CONFORMANCE_SEEDS explores more histories.
    let seeds = callgate_backend::conformance::seeds(4);
    for seed in 1..=seeds {
        let clock = ManualClock::at(1_800_000_000_000);
        let b = RedisLedger::open(&server.url, &format!("reads-{seed}"), &spec(), Time::Clock(clock.clone()))
            .expect("open");
        let mut r = Ledger::new(&spec()).expect("spec");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for n in 0..250 {
            let cmd = step(&mut rng, &clock);
            let at = |what: &str| format!("seed {seed}, step {n}: {what} after {cmd:?}");
            let want = reference::apply(&mut r, cmd.clone(), clock.now_ms());
            r.drain_events().for_each(drop);
            let got = b.execute(cmd.clone());
            assert_eq!(got.map(|e| e.outcome).ok(), want.ok(), "{}", at("outcome"));
            for id in 0..r.next_id() + 1 {
                assert_eq!(b.lease(LeaseId(id)), r.lease(LeaseId(id)).cloned(), "{}", at(&format!("lease {id}")));
                assert_eq!(b.ticket(TicketId(id)), ticket_read(&r, TicketId(id)), "{}", at(&format!("ticket {id}")));
            }
            for k in 0..12 {
                let key = format!("k{k}");
                assert_eq!(b.lease_by_key(&key), r.lease_by_key(&key).cloned(), "{}", at(&key));
                let want = r.ticket_by_key(&key).and_then(|t| ticket_read(&r, t.id));
                assert_eq!(b.ticket_by_key(&key), want, "{}", at(&key));
            }
            lines += usize::from(r.ticket_count() >= 2);
            outcomes += (0..r.next_id())
                .filter(|id| r.ticket(TicketId(*id)).is_none() && r.ticket_status(TicketId(*id)).is_some())
                .count();
            pages += usize::from(r.lease_count() >= 3);
            for limit in [1, 3, 100] {
                assert_eq!(b.waiting(limit), waiting(&r, limit), "{}", at("waiting"));
            }
            for filter in &filters {
                for (after, limit, max_scan) in [(0, 2, 100), (0, 100, 3), (3, 1, 1), (0, 5, 0), (7, 100, 100)] {
                    let got = b.leases_page(LeaseId(after), filter, limit, max_scan);
                    assert_eq!(got, page(&r, LeaseId(after), filter, limit, max_scan), "{}", at("page"));
                }
            }
        }
    }
    assert!(lines > 50 && outcomes > 50 && pages > 50, "{lines} {outcomes} {pages}");
}
