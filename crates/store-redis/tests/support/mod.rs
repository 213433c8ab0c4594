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

/// A TCP forwarder to a Redis that can lose what passes through it, once: the next reply
/// (the request reaches Redis, which runs it, but the client's connection is closed before
/// the reply reaches it), or the next request (closed before Redis sees it), or hold the
/// next request back (the client's connection is closed at once, the request reaches Redis
/// when the test says: as one that waited in Redis's input while its client gave up).
#[allow(dead_code)] // (not every test file that shares this module uses it)
pub(crate) struct Forwarder {
    pub(crate) url: String,
    lose: std::sync::Arc<std::sync::atomic::AtomicU8>,
    deliver: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    /// How many replies were not passed on (Redis answered a request whose client was cut).
    swallowed: std::sync::Arc<(std::sync::Mutex<u32>, std::sync::Condvar)>,
}

#[allow(dead_code)]
impl Forwarder {
    const PASS: u8 = 0;
    const REPLY: u8 = 1;
    const REQUEST: u8 = 2;
    const HOLD: u8 = 3;

    /// Forwards a port of its own to the Redis at `url` (`redis://127.0.0.1:<port>/`), until
    /// the test ends.
    pub(crate) fn start(url: &str) -> Forwarder {
        use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
        use std::sync::Arc;
        let target: String = url.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the forwarder's port");
        let url = format!("redis://{}/", listener.local_addr().expect("its address"));
        let lose = Arc::new(AtomicU8::new(Self::PASS));
        let deliver = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let swallowed = Arc::new((std::sync::Mutex::new(0u32), std::sync::Condvar::new()));
        let (mode, delivered, swallow) = (lose.clone(), deliver.clone(), swallowed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = std::net::TcpStream::connect(&target) else { continue };
                let cut = Arc::new(AtomicBool::new(false));
                let (mode, cut2, delivered, swallow) = (mode.clone(), cut.clone(), delivered.clone(), swallow.clone());
                let (mut from_client, mut to_upstream) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (mut from_upstream, mut to_client) = (upstream, client);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf) {
                        match mode.swap(Self::PASS, Ordering::SeqCst) {
                            Self::REQUEST => break,
                            Self::REPLY => cut2.store(true, Ordering::SeqCst),
                            Self::HOLD => {
                                cut2.store(true, Ordering::SeqCst);
                                let _ = from_client.shutdown(std::net::Shutdown::Both);
                                let (lock, ready) = &*delivered;
                                let mut go = lock.lock().unwrap();
                                while !*go {
                                    go = ready.wait(go).unwrap();
                                }
                                let _ = to_upstream.write_all(&buf[..n]);
                                // The other side closes both once Redis answered.
                                return;
                            }
                            _ => {}
                        }
                        if to_upstream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = from_client.shutdown(std::net::Shutdown::Both);
                    let _ = to_upstream.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_upstream.read(&mut buf) {
                        // Redis answered (so it ran the request): the answer is not passed on.
                        if cut.load(Ordering::SeqCst) {
                            let (count, changed) = &*swallow;
                            *count.lock().unwrap() += 1;
                            changed.notify_all();
                            break;
                        }
                        if to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                    let _ = from_upstream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Forwarder { url, lose, deliver, swallowed }
    }

    /// The next request goes to Redis; its reply never reaches the client.
    pub(crate) fn lose_next_reply(&self) {
        self.lose.store(Self::REPLY, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next request never reaches Redis.
    pub(crate) fn lose_next_request(&self) {
        self.lose.store(Self::REQUEST, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next request is held back (its client's connection closed at once) until
    /// [`Forwarder::deliver_held`].
    pub(crate) fn hold_next_request(&self) {
        self.lose.store(Self::HOLD, std::sync::atomic::Ordering::SeqCst);
    }

    /// The request held back reaches Redis now; returns once Redis answered it.
    pub(crate) fn deliver_held(&self) {
        let (count, changed) = &*self.swallowed;
        let before = *count.lock().unwrap();
        let (lock, ready) = &*self.deliver;
        *lock.lock().unwrap() = true;
        ready.notify_all();
        let (after, _) = changed
            .wait_timeout_while(count.lock().unwrap(), std::time::Duration::from_secs(10), |n| *n == before)
            .unwrap();
        assert!(*after > before, "Redis never answered the request held back");
    }
}
