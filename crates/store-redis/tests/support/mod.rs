//! A private `redis-server` for the tests: a free port, no persistence, stopped when
//! dropped. Without `redis-server` on the PATH the test fails and says so.

use std::process::{Child, Command as Process, Stdio};

/// A private Redis, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start() -> Server {
        Server::start_with(&[])
    }

    /// A private Redis with these extra arguments. A port found free can be taken before
    /// redis-server binds it (by another test's server): that redis-server then exits, and
    /// another port is tried.
    pub(crate) fn start_with(extra: &[&str]) -> Server {
        let mut why = String::new();
        for _ in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let child = Process::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server ({e}): these tests need Redis 7 installed (apt install redis-server)")
                });
            let mut server = Server { child, url: format!("redis://127.0.0.1:{port}/") };
            match server.ready() {
                Ok(()) => return server,
                Err(e) => why = e,
            }
        }
        panic!("{why}");
    }

    /// Polls until this process's Redis answers (it starts in milliseconds): PING, then
    /// its process id, so that a server another test started on the same port is not
    /// taken for it. An error when it exits first, or after ~10 s.
    fn ready(&mut self) -> Result<(), String> {
        let client = redis::Client::open(self.url.as_str()).expect("url");
        for _ in 0..1000 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server on {} exited ({status}): is the port taken?", self.url));
            }
            if let Ok(mut c) = client.get_connection() {
                let info = redis::cmd("PING")
                    .query::<String>(&mut c)
                    .and_then(|_| redis::cmd("INFO").arg("server").query::<String>(&mut c));
                if let Ok(info) = info {
                    let pid =
                        info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|p| p.trim().parse().ok());
                    if pid == Some(self.child.id()) {
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(format!("redis-server on {} did not answer", self.url))
    }
}

impl Server {
    /// Stops Redis (as a crash would: its state is gone).
    #[allow(dead_code)] // not every test binary stops its server early
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A ledger of one class, one pool of `limit` and one flow `in` taking a unit of it, whose
/// leases live `ttl_ms` and whose requests may wait `wait_ms`.
#[allow(dead_code)] // (not every test file that shares this module uses it)
pub(crate) fn one_pool_spec(limit: u32, ttl_ms: u64, wait_ms: u64) -> callgate_core::LedgerSpec {
    use callgate_core::{ClassId, ClassSpec, FlowSpec, LedgerSpec, PoolId, PoolSpec, PoolUnits, QueueSpec};
    LedgerSpec {
        classes: vec![ClassSpec { name: "inbound".into(), priority: 5 }],
        pools: vec![PoolSpec { name: "acct".into(), limit, reserve: vec![] }],
        flows: vec![FlowSpec {
            name: "in".into(),
            pools: vec![PoolUnits { pool: PoolId(0), units: 1 }],
            class: ClassId(0),
            lease_ttl_ms: ttl_ms,
            queue: Some(QueueSpec { max_wait_ms: wait_ms, max_len: None }),
        }],
        ..LedgerSpec::default()
    }
}
