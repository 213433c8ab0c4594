//! Real stores for the cluster tests: a private `redis-server` on a free port (no
//! persistence, so a restart is empty), a uniquely named database on the machine's
//! PostgreSQL (127.0.0.1:5432, trust auth; dropped with its guard) and a private
//! PostgreSQL in a temp directory that a test can stop as a crash would and start again
//! (as crates/store-postgres/tests/support does).

#![allow(dead_code)] // not every test binary uses every helper

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A private Redis on a free port, without persistence, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_on(free_port()).await
    }

    /// A Redis on `port` (again, after [`Redis::kill`]: empty).
    pub async fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): this test needs Redis 7"));
        let redis = Redis { child, port, url: format!("redis://127.0.0.1:{port}/") };
        for _ in 0..1000 {
            if ping(port).await {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server on port {port} did not answer");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").await.is_ok() && s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database of its own on the machine's PostgreSQL, dropped with the guard.
pub struct TestDb {
    pub name: String,
    pub url: String,
    host: String,
    port: u16,
}

impl TestDb {
    /// Creates `cg_<tag>_<pid>_<n>` on 127.0.0.1:5432.
    pub fn new(tag: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("cg_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let out = run(Command::new("createdb").args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", &name]));
        assert!(
            out.status.success(),
            "cannot create database {name} on 127.0.0.1:5432 (this test needs PostgreSQL there with trust auth): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        TestDb { name, url, host: "127.0.0.1".into(), port: 5432 }
    }

    /// One value (`psql -At`) of `sql` in this database.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.host, self.port, &self.name, sql)
    }
}

/// `psql -At -c sql`'s output, trimmed; panics when psql fails.
pub fn psql(host: &str, port: u16, db: &str, sql: &str) -> String {
    let out =
        run(Command::new("psql").args(["-h", host, "-p", &port.to_string(), "-U", "postgres", "-d", db, "-Atc", sql]));
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let out = run(Command::new("dropdb").args([
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "--if-exists",
            "--force",
            &self.name,
        ]));
        if !out.status.success() {
            eprintln!("could not drop test database {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The newest PostgreSQL server programs under /usr/lib/postgresql.
fn bindir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql")
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with pg_ctl under /usr/lib/postgresql").1
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout.starts_with(b"0\n")
}

/// A server program, as the `postgres` user when this process is root.
fn server_cmd(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A private PostgreSQL on a free port, its data in a temp directory; stopped (as a crash
/// would stop it) when dropped.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
    running: bool,
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = bindir();
        let dir = tempfile::Builder::new().prefix("callgate-pg-").tempdir().expect("temp dir");
        if is_root() {
            let out = run(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()));
            assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        let data = dir.path().join("data");
        let out = run(server_cmd(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data));
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut pg = PrivatePg { dir, bin, port, url, running: false };
        pg.resume();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server again on the same port and data (waits until it answers).
    pub fn resume(&mut self) {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let out = run(server_cmd(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "start"]));
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stdout));
        self.running = true;
    }

    /// Stops the server at once (`immediate`: connections cut, as a crash).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let out = run(server_cmd(&self.bin.join("pg_ctl")).args(["-w", "-D"]).arg(self.data()).args([
            "-m",
            "immediate",
            "stop",
        ]));
        if !out.status.success() {
            eprintln!("pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
        }
        self.running = false;
    }

    /// One value of `sql` in the `postgres` database.
    pub fn query(&self, sql: &str) -> String {
        psql("127.0.0.1", self.port, "postgres", sql)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}
