//! Waiting on a thread that may be one of tokio's few workers.

use std::sync::{LockResult, TryLockError, TryLockResult};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may wait long on this thread (a synchronous call to Redis, a lock held
/// across one). On a worker of tokio's multi-threaded runtime the worker's other tasks are
/// handed to another thread first ([`tokio::task::block_in_place`]), so a Redis that
/// stalls holds up the requests that wait for it, not every task queued behind them on
/// the runtime's few workers (two on a two-core machine). Elsewhere (a blocking thread, a
/// current-thread runtime, no runtime) `f` just runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A lock taken: `tried` (a `try_lock`, `try_read` or `try_write`), or when it is held,
/// `wait` (the blocking `lock`, `read` or `write`) through [`blocking`]. For a lock that
/// may be held across a call to Redis, which a stalled Redis stretches to seconds.
pub fn contended<G>(tried: TryLockResult<G>, wait: impl FnOnce() -> LockResult<G>) -> LockResult<G> {
    match tried {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(p)) => Err(p),
        Err(TryLockError::WouldBlock) => blocking(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::{blocking, contended};

    #[test]
    fn it_runs_outside_a_runtime_on_a_current_thread_one_and_on_a_worker() {
        assert_eq!(blocking(|| 1), 1);
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(current.block_on(async { blocking(|| 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        assert_eq!(multi.block_on(async { tokio::spawn(async { blocking(|| 3) }).await.unwrap() }), 3);
        let from_blocking = multi.block_on(async { tokio::task::spawn_blocking(|| blocking(|| 4)).await.unwrap() });
        assert_eq!(from_blocking, 4);
    }

    #[test]
    fn a_held_lock_is_waited_for_and_a_free_one_taken() {
        let lock = std::sync::Mutex::new(1);
        assert_eq!(*contended(lock.try_lock(), || lock.lock()).unwrap(), 1);
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let lock = std::sync::Arc::new(std::sync::Mutex::new(0));
        let held = lock.lock().unwrap();
        let waiter = {
            let lock = lock.clone();
            multi.spawn(async move { *contended(lock.try_lock(), || lock.lock()).unwrap() })
        };
        // The waiter waits off the runtime's one worker: another task still runs.
        assert_eq!(multi.block_on(async { tokio::spawn(async { 7 }).await.unwrap() }), 7);
        drop(held);
        assert_eq!(multi.block_on(waiter).unwrap(), 0);
    }
}
