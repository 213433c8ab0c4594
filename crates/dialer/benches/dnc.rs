//! Suppression lists: how fast an upload of numbers is read and validated, how fast a
//! list takes a million numbers, and that a check costs the same on a list of ten
//! thousand numbers as on one of a million (a hash set: O(1)).
//!
//! `cargo bench -p callgate-dialer --bench dnc`

use callgate_dialer::dnc::Lists;
use callgate_dialer::import::parse_numbers_csv;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// `n` distinct valid US numbers (area codes of ten states), as the list file has them.
fn numbers(n: u64) -> Vec<u64> {
    const AREAS: [u64; 10] = [212, 305, 312, 415, 512, 617, 713, 202, 404, 503];
    (0..n).map(|i| 10_000_000_000 + AREAS[(i % 10) as usize] * 10_000_000 + 2_000_000 + (i / 10) % 8_000_000).collect()
}

fn csv(n: u64) -> Vec<u8> {
    let mut out = b"phone\n".to_vec();
    for k in numbers(n) {
        out.extend_from_slice(format!("+{k}\n").as_bytes());
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dnc");
    g.sample_size(10);
    let upload = csv(100_000);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("parse and validate 100,000 rows", |b| {
        b.iter(|| black_box(parse_numbers_csv(&upload, None, 0).unwrap().numbers.len()))
    });
    let million = numbers(1_000_000);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("add 1,000,000 numbers to a list", |b| {
        b.iter(|| {
            let mut l = Lists::new();
            black_box(l.add("national", million.iter().copied()).unwrap())
        })
    });
    g.throughput(Throughput::Elements(1));
    for size in [10_000u64, 1_000_000] {
        let mut l = Lists::new();
        l.add("national", numbers(size)).unwrap();
        l.add("internal", numbers(100)).unwrap();
        let probe = numbers(size);
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("check one number, list of", size), &size, |b, _| {
            b.iter(|| {
                i = (i + 7919) % probe.len();
                black_box(l.check(None, probe[i] + 1))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
