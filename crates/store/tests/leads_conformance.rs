//! The Leads conformance suite (`callgate_backend::leads::conformance`) against the SQLite
//! lead store: the scripted scenarios, and random write histories compared step by step
//! with the in-memory store of the rules, with restarts from `campaigns.db` in between.

use callgate_backend::leads::conformance::{self, Harness};
use callgate_store::LeadStore;
use std::future::Future;

struct Sqlite {
    rt: tokio::runtime::Runtime,
    dirs: Vec<tempfile::TempDir>,
}

impl Sqlite {
    fn new() -> Sqlite {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Sqlite { rt, dirs: Vec::new() }
    }

    fn start(&self) -> LeadStore {
        LeadStore::open(self.dirs.last().expect("a directory").path()).expect("open campaigns.db")
    }
}

impl Harness for Sqlite {
    type Store = LeadStore;

    fn open(&mut self) -> LeadStore {
        self.dirs.push(tempfile::tempdir().expect("temp dir"));
        self.start()
    }

    fn restart(&mut self, store: LeadStore) -> LeadStore {
        drop(store); // stops the writer after it has committed what it was handed
        self.start()
    }

    fn block_on<F: Future>(&mut self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

#[test]
fn the_sqlite_lead_store_passes_every_scenario() {
    conformance::run_scenarios(&mut Sqlite::new());
}

#[test]
fn the_sqlite_lead_store_agrees_with_the_rules_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = callgate_backend::conformance::seeds(6);
    let mut h = Sqlite::new();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 250);
        h.dirs.clear();
    }
}
