//! How fast the dialer picks the next lead, as the list of pending leads grows.
//!
//! Each iteration is what the pacing loop does per call placed and per outcome: take the
//! best lead that may be called now (checking its calling window in its own time zone),
//! then put it back with one more attempt. Leads are spread over nine time zones, at an
//! instant when most of them are inside the 08:00–21:00 window; the rest wait in the
//! second heap for their morning. The time per iteration should not grow with the list.
//!
//! `cargo bench -p callgate-dialer --bench schedule`

use callgate_config::WindowConfig;
use callgate_dialer::schedule::{Lead, Scheduler};
use callgate_dialer::window::Calendar;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ZONES: [chrono_tz::Tz; 9] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Phoenix,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Anchorage,
    chrono_tz::Pacific::Honolulu,
    chrono_tz::Europe::London,
    chrono_tz::Asia::Tokyo,
];

fn filled(n: u64, cal: &Calendar, now: u64) -> Scheduler {
    let mut s = Scheduler::new();
    for id in 0..n {
        let lead = Lead {
            id,
            tz: ZONES[(id % ZONES.len() as u64) as usize],
            score: (id.wrapping_mul(2654435761) % 1000) as f64,
            attempts: (id % 3) as u32,
            warm: id % 97 == 0,
            not_before: 0,
        };
        s.insert(lead, cal, now);
    }
    s
}

fn pick_next(c: &mut Criterion) {
    let cal = Calendar::from_window(&WindowConfig::default(), Vec::new());
    // Thursday 2026-01-15 17:00 UTC: noon in New York, 09:00 in Los Angeles, night in Tokyo.
    let now = callgate_config::parse_datetime("2026-01-15T17:00:00Z", chrono_tz::UTC).unwrap();
    let mut group = c.benchmark_group("pick_next_lead");
    group.throughput(Throughput::Elements(1));
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let mut s = filled(n, &cal, now);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let lead = s.pop(&cal, now).expect("a callable lead");
                s.insert(Lead { attempts: lead.attempts + 1, ..lead }, &cal, now);
                black_box(lead.id)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pick_next);
criterion_main!(benches);
