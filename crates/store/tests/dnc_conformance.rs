//! The suppression-list conformance suite (`callgate_backend::dnc::conformance`) against
//! the SQLite store (`dnc.db`): the scripted scenarios, and random histories through two
//! handles on one file with a copy that catches up from its position.

use callgate_backend::dnc::conformance::{self, Harness};
use callgate_store::DncStore;

#[derive(Default)]
struct Sqlite {
    dirs: Vec<tempfile::TempDir>,
}

impl Sqlite {
    fn start(&self) -> DncStore {
        DncStore::open(self.dirs.last().expect("a directory").path()).expect("open dnc.db")
    }
}

impl Harness for Sqlite {
    type Store = DncStore;

    fn open(&mut self) -> DncStore {
        self.dirs.push(tempfile::tempdir().expect("temp dir"));
        self.start()
    }

    fn another(&mut self, _store: &DncStore) -> DncStore {
        self.start()
    }

    fn restart(&mut self, store: DncStore) -> DncStore {
        drop(store);
        self.start()
    }
}

#[test]
fn the_sqlite_suppression_store_passes_every_scenario() {
    conformance::run_scenarios(&mut Sqlite::default());
}

#[test]
fn the_sqlite_suppression_store_keeps_a_catching_up_copy_exact_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = callgate_backend::conformance::seeds(6);
    let mut h = Sqlite::default();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 300);
        h.dirs.clear();
    }
}
