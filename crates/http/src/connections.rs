//! Accepting HTTP connections: a cap on how many are open, a deadline for a request's
//! headers and for an idle connection, backoff on accept errors, and a raised file
//! descriptor limit.
//!
//! `axum::serve` has no knob for any of these, so the accept loop is ours; each
//! connection is served by hyper's HTTP/1 connection with a timer, so slowloris clients
//! (headers a byte at a time, or nothing after a kept-alive request) are closed.

use axum::extract::DefaultBodyLimit;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower_layer::Layer;

/// What the accept loop enforces (`[server]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most open client connections.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a kept-alive connection waits
    /// for its next request.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed.
    pub idle_timeout: Duration,
    /// The largest request body a handler reads (413 beyond it), where its route sets no
    /// limit of its own.
    pub max_body_bytes: usize,
}

/// Connections beyond the cap that are told so (a 503) rather than just closed; beyond
/// these too, a new connection is closed at once. Each holds a socket for at most
/// [`REFUSAL_TIME`].
const MAX_REFUSING: usize = 64;
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// After shutdown, how long open connections get to finish their requests. Event
/// streams never finish on their own, so the wait is bounded.
const DRAIN_TIME: Duration = Duration::from_secs(10);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
retry-after: 1\r\ncontent-length: 94\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has too many open connections\"}}";

/// Runs the accept loop until `shutdown` fires, then waits (a bounded time) for the open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                // Answers are small and each waits for a durable commit: send them at
                // once rather than holding them back for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or memory: accepting again at
                // once would fail again at once. Wait, longer each time, for connections
                // to close.
                let wait = backoff.next();
                tracing::error!(error = %e, wait_ms = wait.as_millis() as u64, "Cannot accept a connection");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, &refusing);
            continue;
        };
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(stream, router, limits, &mut stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIME, slots.acquire_many(all)).await;
}

/// Tells a connection over the cap so, if few others are being told, and closes it.
fn refuse(mut stream: TcpStream, refusing: &Arc<Semaphore>) {
    tracing::warn!("Refusing a connection: at the connection limit");
    let Ok(permit) = refusing.clone().try_acquire_owned() else { return };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.write_all(REFUSAL).await?;
            stream.shutdown().await?;
            // Read what the client sent, so closing does not reset the connection
            // before it has read the answer.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

async fn serve_one(stream: TcpStream, router: Router, limits: ConnectionLimits, stop: &mut watch::Receiver<bool>) {
    let watched = Watched::new(stream);
    let last = watched.last.clone();
    let epoch = watched.epoch;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    // The body limit wraps the router once, here: as a layer of the router it wrapped
    // every route in one more boxed service, and each request paid for it (BENCHMARKS.md).
    let service = DefaultBodyLimit::max(limits.max_body_bytes).layer(router);
    let conn = http.serve_connection(TokioIo::new(watched), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let idle = idle(last, epoch, limits.idle_timeout);
    tokio::pin!(idle);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = &mut idle => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    // Shutting down: the request in flight (if any) finishes, unless the connection
    // goes idle first.
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = &mut idle => {}
    }
}

/// Resolves once nothing was read or written for `timeout`.
async fn idle(last: Arc<AtomicU64>, epoch: Instant, timeout: Duration) {
    loop {
        let at = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + timeout;
        if Instant::now() >= at {
            return;
        }
        tokio::time::sleep_until(at).await;
    }
}

/// A socket that notes when bytes last moved either way.
struct Watched {
    inner: TcpStream,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last read or write.
    last: Arc<AtomicU64>,
}

impl Watched {
    fn new(inner: TcpStream) -> Self {
        Watched { inner, epoch: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(out, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        out
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        out
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        out
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Errors of one connection (it went away before we took it): accept the next at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// The waits after consecutive accept errors: 10 ms, doubling, at most a second.
#[derive(Debug, Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = Duration::from_millis(10u64 << self.0.min(7)).min(Duration::from_secs(1));
        self.0 = self.0.saturating_add(1);
        wait
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection cap (not the
/// operating system's default of often 1024) decides how many clients are served.
/// Returns the soft limit in force afterwards, if known.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let now = getrlimit(Resource::Nofile);
        if now.current != now.maximum {
            let raised = rustix::process::Rlimit { current: now.maximum, maximum: now.maximum };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %e, soft = ?now.current, hard = ?now.maximum, "Cannot raise the open files limit");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_up_to_a_second() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
    }

    #[test]
    fn the_refusal_is_a_complete_json_answer() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(body.len(), len);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_fd_limit_is_raised_to_the_hard_limit() {
        let after = raise_fd_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(after, now.current);
        assert_eq!(now.current, now.maximum);
    }
}
