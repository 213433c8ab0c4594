//! The Leads conformance suite (`callgate_backend::leads::conformance`) against the
//! PostgreSQL lead store: the scripted scenarios, and random write histories compared step
//! by step with the in-memory store of the rules, with restarts (a new process on the same
//! database) in between. Each scenario and seed gets a database of its own.

mod support;

use callgate_backend::leads::conformance::{self, Harness};
use callgate_store_postgres::{Pg, PgLeads, Settings};
use std::future::Future;
use support::TestDb;

struct Postgres {
    rt: tokio::runtime::Runtime,
    dbs: Vec<TestDb>,
}

impl Postgres {
    fn new() -> Postgres {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Postgres { rt, dbs: Vec::new() }
    }

    fn start(&self) -> PgLeads {
        let db = self.dbs.last().expect("a database");
        let pg = Pg::open(&db.url, Settings::default()).expect("open");
        PgLeads::open(&pg).expect("lead store")
    }
}

impl Harness for Postgres {
    type Store = PgLeads;

    fn open(&mut self) -> PgLeads {
        self.dbs.push(TestDb::new("leads"));
        self.start()
    }

    fn restart(&mut self, store: PgLeads) -> PgLeads {
        drop(store); // waits for what it was handed, then its connections close
        self.start()
    }

    fn block_on<F: Future>(&mut self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

#[test]
fn the_postgres_lead_store_passes_every_scenario() {
    conformance::run_scenarios(&mut Postgres::new());
}

#[test]
fn the_postgres_lead_store_agrees_with_the_rules_over_random_histories() {
    // Seeds are fixed so a run is deterministic; CALLGATE_CONFORMANCE_SEEDS explores more.
    let seeds = callgate_backend::conformance::seeds(3);
    let mut h = Postgres::new();
    for seed in 0..seeds {
        conformance::differential(&mut h, seed, 250);
        h.dbs.clear();
    }
}
