//! A configuration reload, as the governor applies it: the backend rebuilds the ledger
//! from the new configuration and from what the old ledger holds ([`Command::Reconfigure`];
//! the embedded backend runs the same `restore` a restart runs on the journal). What a reload gives is therefore what a restart with the new file
//! would give: the same limits (a runtime limit survives unless the configured limit
//! changed), the same reserves and priorities, the same leases and waiting tickets (a
//! removed flow's lease or ticket lives on without its flow), and then the same
//! `settle`: tickets that can never fit end (`never_fits`), and what now fits is granted.
//! Every event of that goes through the journal like any other operation, so nothing
//! is shown before it is durable and a waiter of a granted ticket is told.

use super::Error;
use super::{read, write, Governor, Naming};
use callgate_backend::Command;
use callgate_backend::Names;
use callgate_core::LedgerSpec;
use callgate_ops::Ops;
use std::sync::{Arc, RwLock};

/// Where the operating layer (adaptive caps, breakers, alerts) sits: the governor reads
/// it, the journal's consumer feeds it committed events, a reload replaces it.
#[derive(Clone)]
pub struct OpsSlot(Arc<RwLock<Arc<Ops>>>);

impl std::fmt::Debug for OpsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsSlot").finish_non_exhaustive()
    }
}

impl OpsSlot {
    /// A slot holding `ops`.
    pub fn new(ops: Arc<Ops>) -> Self {
        OpsSlot(Arc::new(RwLock::new(ops)))
    }

    /// The operating layer in place now.
    pub fn get(&self) -> Arc<Ops> {
        read(&self.0).clone()
    }

    pub(super) fn set(&self, ops: Arc<Ops>) {
        *write(&self.0) = ops;
    }
}

/// Why a reload was not applied (nothing changed).
#[derive(Debug)]
pub struct ReloadError(pub String);

/// What the governor is handed by a reload.
#[derive(Debug)]
pub struct NewLedger {
    /// Built from the new configuration.
    pub spec: LedgerSpec,
    /// Its names (pools and classes as before, in the same order).
    pub names: Names,
    /// The first overflow action of each flow.
    pub overflow: Vec<Option<callgate_config::Overflow>>,
    /// A new operating layer, when what it is built from changed.
    pub ops: Option<Arc<Ops>>,
}

impl Governor {
    /// Has the backend rebuild the ledger from `new` and what it holds now (see the module
    /// docs), atomically under the governor's lock; journaled like any operation. On an
    /// error nothing changed.
    pub async fn reload(&self, new: NewLedger) -> Result<(), Error> {
        self.check_healthy()?;
        let commit = {
            // No acquire between resolving its names and running its command (see the
            // governor's docs) while the names change.
            let _epoch = self.reconfig.write().await;
            let mut st = self.lock();
            let old = self.names();
            if old.pools != new.names.pools || old.classes != new.names.classes {
                return Err(refused("the pools and classes must stay the same, in the same order"));
            }
            // The cap sources: cooldowns stand (they say what the platform refused); an
            // adaptive source follows the operating layer in force, which starts a new one
            // at its `initial` cap, as at a start.
            let ops = new.ops.clone().unwrap_or_else(|| self.ops());
            let limits: Vec<u32> = new.spec.pools.iter().map(|p| p.limit).collect();
            let pools = self.backend.pools();
            let mut caps = st.caps.clone();
            let mut applied = Vec::with_capacity(caps.len());
            for (p, sources) in caps.iter_mut().enumerate() {
                if new.ops.is_some() {
                    // The limit in force after the reload: a runtime limit stays unless
                    // the configured one changed.
                    let limit = match (old.config_limits.get(p), limits.get(p), pools.get(p)) {
                        (Some(was), Some(is), Some(view)) if was == is => view.limit,
                        (_, Some(is), _) => *is,
                        _ => 0,
                    };
                    sources.reset_adaptive(ops.initial_cap(p, limit));
                }
                applied.push(sources.refresh());
            }
            let cmd =
                Command::Reconfigure { spec: Box::new(new.spec), names: Box::new(new.names.clone()), caps: applied };
            // The new names and operating layer are in place before the events of the
            // rebuild reach anyone (the journal switches its consumer in event order).
            let previous = self.ops();
            if let Some(ops) = new.ops.clone() {
                self.ops.set(ops);
            }
            let done = match self.backend.execute(cmd) {
                Ok(done) => done,
                Err(e) => {
                    self.ops.set(previous);
                    return Err(match e.kind {
                        super::ErrorKind::Invalid => refused(&e.message),
                        _ => e,
                    });
                }
            };
            st.caps = caps;
            *write(&self.naming) = Arc::new(Naming::new(new.names, new.overflow));
            self.wake(&mut st, &done);
            done.commit
        };
        self.durable(commit).await
    }
}

fn refused(why: &str) -> Error {
    Error::conflict("reload_refused", why)
}
