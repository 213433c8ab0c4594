//! Real stores for the cluster tests: a private `redis-server` on a free port (no
//! persistence, so a restart is empty; or with an append-only file, so it keeps its
//! data), a uniquely named database on the machine's PostgreSQL (127.0.0.1:5432, trust
//! auth; dropped with its guard) and a private PostgreSQL in a temp directory that a
//! test can stop as a crash would and start again (both from
//! crates/store-postgres/tests/support, included here).

#![allow(dead_code, unused_imports)] // not every test binary uses every helper

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

const NO_PERSISTENCE: &[&str] = &["--save", "", "--appendonly", "no"];

/// A private Redis on a free port, without persistence, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Redis {
    pub async fn start() -> Redis {
        // A port found free can be taken before redis-server binds it (by another test's
        // server): that redis-server then exits, and another port is tried.
        let mut why = String::new();
        for _ in 0..5 {
            match Redis::try_spawn(free_port(), NO_PERSISTENCE).await {
                Ok(redis) => return redis,
                Err(e) => why = e,
            }
        }
        panic!("{why}");
    }

    /// A Redis on `port` (again, after [`Redis::kill`]: empty).
    pub async fn start_on(port: u16) -> Redis {
        Redis::spawn(port, NO_PERSISTENCE).await
    }

    /// A Redis on `port` that writes every change to an append-only file in `dir` before
    /// it answers, so that started again on the same `dir` after [`Redis::kill`] it holds
    /// what it held: a Redis that was unreachable for a while, not one that lost its data.
    pub async fn start_keeping(port: u16, dir: &std::path::Path) -> Redis {
        let dir = dir.to_str().expect("a UTF-8 temp dir");
        Redis::spawn(port, &["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir]).await
    }

    async fn spawn(port: u16, persistence: &[&str]) -> Redis {
        Redis::try_spawn(port, persistence).await.unwrap_or_else(|why| panic!("{why}"))
    }

    /// A redis-server on `port`, once it answers; an error when it exits first (the port
    /// was taken). It must be this process's server that answers, not one that another
    /// test started on the same port: its process id is checked.
    async fn try_spawn(port: u16, persistence: &[&str]) -> Result<Redis, String> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): this test needs Redis 7"));
        let mut redis = Redis { child, port, url: format!("redis://127.0.0.1:{port}/") };
        for _ in 0..1000 {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(format!("redis-server on port {port} exited ({status}): is the port taken?"));
            }
            // PING first: it answers only once the data is loaded (INFO answers before).
            if ping(port).await && pid_on(port).await == Some(redis.child.id()) {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("redis-server on port {port} did not answer"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process (SIGSTOP): connections are still accepted by the kernel and
    /// requests are taken in, but nothing is answered until [`Redis::resume`]. A Redis
    /// stalled (swapping, a long script, a host paused), not one that refuses.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets the process run again after [`Redis::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(sig).arg(self.child.id().to_string()).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} redis-server");
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").await.is_ok() && s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
}

/// The process id of the Redis answering on `port` (`INFO server`), if one answers.
async fn pid_on(port: u16) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"INFO server\r\n").await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(rest) = text.split("process_id:").nth(1) {
            if let Some((pid, _)) = rest.split_once("\r\n") {
                return pid.trim().parse().ok();
            }
        }
    }
    None
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[path = "../../../store-postgres/tests/support/mod.rs"]
mod pg;
#[allow(unused_imports)] // not every test binary uses both
pub use pg::{PrivatePg, TestDb};
