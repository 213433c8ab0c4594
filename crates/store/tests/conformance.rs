//! The conformance suite (`callgate_backend::conformance`) against the embedded backend:
//! the scripted scenarios, and random command sequences compared step by step with the
//! pure ledger, with restarts from the SQLite journal in between.

use callgate_backend::conformance::{self, Harness};
use callgate_core::clock::ManualClock;
use callgate_core::LedgerSpec;
use callgate_store::{Embedded, Restoring};
use std::future::Future;
use std::sync::Arc;

struct Sqlite {
    rt: tokio::runtime::Runtime,
    dirs: Vec<tempfile::TempDir>,
}

impl Sqlite {
    fn new() -> Sqlite {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Sqlite { rt, dirs: Vec::new() }
    }

    fn start(&self, spec: &LedgerSpec, clock: Arc<ManualClock>) -> Embedded {
        let dir = self.dirs.last().expect("a directory").path();
        let now = callgate_core::clock::Clock::now_ms(&*clock);
        let restoring = Restoring::open(dir, spec, now).expect("open the journal");
        let names = restoring.names();
        restoring.start(names, spec.ticket_retention_ms, clock, |_: &[callgate_core::Event]| {})
    }
}

impl Harness for Sqlite {
    type Backend = Embedded;

    fn open(&mut self, spec: &LedgerSpec, clock: Arc<ManualClock>) -> Embedded {
        self.dirs.push(tempfile::tempdir().expect("temp dir"));
        self.start(spec, clock)
    }

    fn restart(&mut self, backend: Embedded, spec: &LedgerSpec, clock: Arc<ManualClock>) -> Embedded {
        drop(backend); // stops the writer after it has committed what it was handed
        self.start(spec, clock)
    }

    fn block_on<F: Future>(&mut self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

#[test]
fn the_embedded_backend_passes_every_scenario() {
    conformance::run_scenarios(&mut Sqlite::new());
}

#[test]
fn the_embedded_backend_agrees_with_the_reference_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = conformance::seeds(10);
    let mut h = Sqlite::new();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 300);
        h.dirs.clear();
    }
}
