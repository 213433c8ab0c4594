//! PostgreSQL for the tests: a uniquely named database on the machine's server
//! (127.0.0.1:5432, user `postgres`, trust auth), dropped when the guard is dropped (also
//! when the test fails), and a private server in a temp directory that a test may stop
//! and start again. The server's cluster tests include this file too
//! (`crates/server/tests/support/private.rs`), so it depends on nothing but std.

#![allow(dead_code)] // not every test binary uses every helper

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (PostgreSQL's client tools are needed)"))
}

/// A database of its own on the machine's PostgreSQL, dropped with the guard.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates `cg_<tag>_<pid>_<n>`. Panics, saying why, when PostgreSQL is not there.
    pub fn new(tag: &str) -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("cg_{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let out = run(Command::new("createdb").args(["-h", HOST, "-p", &PORT.to_string(), "-U", "postgres", &name]));
        assert!(
            out.status.success(),
            "cannot create database {name} on {HOST}:{PORT} as postgres (these tests need PostgreSQL running there with \
             trust auth; scripts/test checks it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!("postgres://postgres@{HOST}:{PORT}/{name}");
        TestDb { name, url }
    }

    /// One value (`psql -At`) of `sql` in this database.
    pub fn query(&self, sql: &str) -> String {
        psql(HOST, PORT, &self.name, sql)
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
            HOST,
            "-p",
            &PORT.to_string(),
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

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`): the newest under
/// /usr/lib/postgresql.
fn bindir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql (apt install postgresql)")
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

/// Runs a server program as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root).
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
        let mut pg = PrivatePg { dir, bin, port: 0, url: String::new(), running: false };
        // A port found free can be taken before the server binds it (by another test's
        // server): the server then fails to start, and another port is tried.
        let mut why = String::new();
        for _ in 0..5 {
            pg.port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            pg.url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
            match pg.try_resume() {
                Ok(()) => return pg,
                Err(e) => why = e,
            }
        }
        panic!("pg_ctl start: {why}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server again on the same port and data (waits until it answers).
    pub fn resume(&mut self) {
        if let Err(why) = self.try_resume() {
            panic!("pg_ctl start: {why}");
        }
    }

    fn try_resume(&mut self) -> Result<(), String> {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let out = run(server_cmd(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "start"]));
        if !out.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            ));
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (`immediate`: no checkpoint, connections cut, as a crash).
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
        psql(HOST, self.port, "postgres", sql)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}
