//! A lease held by a value, for holders inside the process (the dialer, the demo): the
//! slot is freed whenever the holder is done with it, on every path, as tower's permit is
//! freed with its future.

use super::Error;
use super::Governor;
use callgate_core::LeaseId;
use std::sync::Arc;

/// A granted lease that is released when the guard is dropped, unless it was handed off
/// ([`LeaseGuard::disarm`]) or released explicitly ([`LeaseGuard::release`]).
///
/// A drop spawns the release on the current tokio runtime (a drop cannot wait for the
/// journal); outside a runtime the lease is left to its TTL, and that is logged. Paths that
/// must know the release is durable before they go on (a lead put back for the next dial)
/// call [`LeaseGuard::release`]; the drop covers the rest: an early return, an error, a
/// panic, a cancelled task.
#[must_use = "dropping the guard releases the lease"]
pub struct LeaseGuard {
    governor: Arc<Governor>,
    lease: LeaseId,
    /// Whether the drop releases it: true until it is handed off or released.
    armed: bool,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard").field("lease", &self.lease).finish_non_exhaustive()
    }
}

impl LeaseGuard {
    /// Guards `lease`, granted by `governor`.
    pub fn new(governor: Arc<Governor>, lease: LeaseId) -> LeaseGuard {
        LeaseGuard { governor, lease, armed: true }
    }

    /// The lease.
    pub fn id(&self) -> LeaseId {
        self.lease
    }

    /// Hands the lease on to a holder that releases it itself (an attempt recorded with its
    /// lease); the guard no longer does.
    pub fn disarm(mut self) -> LeaseId {
        self.armed = false;
        self.lease
    }

    /// Releases the lease now and waits until the release is durable; true when it was
    /// still live.
    pub async fn release(mut self) -> Result<bool, Error> {
        // Disarmed only once the release has run: a future dropped before that leaves the
        // drop to release (a second release of a released lease changes nothing).
        let released = self.governor.release(self.lease).await;
        self.armed = false;
        released
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let id = self.lease;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let governor = self.governor.clone();
                runtime.spawn(async move {
                    if let Err(e) = governor.release(id).await {
                        tracing::warn!(lease = %id, error = %e.message, "Cannot release a dropped lease; it ends with its TTL");
                    }
                });
            }
            Err(_) => tracing::warn!(lease = %id, "A lease was dropped outside the runtime; it ends with its TTL"),
        }
    }
}
