//! The suppression-list conformance suite (`callgate_backend::dnc::conformance`) against
//! the PostgreSQL store: the same scenarios as the SQLite store passes, and random
//! histories through two nodes (two `Pg`s, each with its connections) on one database,
//! with a copy that catches up from its position. Each scenario and seed gets a database
//! of its own.

mod support;

use callgate_backend::dnc::conformance::{self, Harness};
use callgate_store_postgres::{Pg, PgDnc, Settings};
use support::TestDb;

#[derive(Default)]
struct Postgres {
    dbs: Vec<TestDb>,
}

impl Postgres {
    fn start(&self) -> PgDnc {
        let db = self.dbs.last().expect("a database");
        let pg = Pg::open(&db.url, Settings::default()).expect("open");
        PgDnc::open(&pg)
    }
}

impl Harness for Postgres {
    type Store = PgDnc;

    fn open(&mut self) -> PgDnc {
        self.dbs.push(TestDb::new("dnc"));
        self.start()
    }

    fn another(&mut self, _store: &PgDnc) -> PgDnc {
        self.start()
    }

    fn restart(&mut self, store: PgDnc) -> PgDnc {
        drop(store);
        self.start()
    }
}

#[test]
fn the_postgres_suppression_store_passes_every_scenario() {
    conformance::run_scenarios(&mut Postgres::default());
}

#[test]
fn the_postgres_suppression_store_keeps_a_catching_up_copy_exact_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = callgate_backend::conformance::seeds(3);
    let mut h = Postgres::default();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 200);
        h.dbs.clear();
    }
}
