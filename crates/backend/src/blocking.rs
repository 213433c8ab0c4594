//! Waiting on a thread that may be one of tokio's few workers.

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

#[cfg(test)]
mod tests {
    use super::blocking;

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
}
