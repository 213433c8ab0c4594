//! The PostgreSQL thread and its connections: [`Pg`] (the thread, its runtime and the
//! connection settings), `Link` (one connection, made again after it breaks) and
//! `Worker` (a task that owns a link and runs jobs on it one at a time, in order).
//!
//! All PostgreSQL I/O runs on one thread with a current-thread tokio runtime of its own,
//! so the stores answer from any thread: async callers await a oneshot, and the
//! synchronous reads of the `Leads` and `Records` traits block on a channel (a local
//! round trip, as the SQLite stores' reads block on the disk).

use crate::{describe, unavailable};
use callgate_backend::{BoxFuture, Error};
use std::future::Future;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// How the stores talk to PostgreSQL.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a connection attempt may take before it counts as failed.
    pub connect_timeout: Duration,
    /// How long one job (a read, a write transaction, a group commit) may take; past it
    /// the job fails as unavailable and its connection is dropped (PostgreSQL rolls back
    /// whatever it had not committed). Generous: a commit on a loaded disk takes tens of
    /// milliseconds, a large import a few seconds.
    pub job_timeout: Duration,
    /// How long a group commit of the journal or of the records may take before its
    /// writes fail as unavailable: an answer that waits on it (a grant, a booked callback)
    /// should fail within a caller's patience, not hang on a dead network path.
    pub commit_timeout: Duration,
    /// After a failed connection attempt, jobs fail at once with the same error for this
    /// long instead of each trying again (a stopped server is not asked 10,000 times a
    /// second).
    pub retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            connect_timeout: Duration::from_secs(3),
            job_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(5),
            retry_after: Duration::from_millis(200),
        }
    }
}

/// A PostgreSQL database: where it is, how to talk to it, and the thread that does.
/// Cheap to clone; the thread stops when the last clone (and every store made from it)
/// is gone.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::runtime::Handle,
    config: Config,
    settings: Settings,
    /// `host:port/dbname`, for messages (never the password).
    target: String,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("target", &self.inner.target).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default)"))
}

impl Pg {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`,
    /// or libpq's `key=value` form), applies the migrations that it lacks and starts the
    /// PostgreSQL thread. Connections are plain TCP (no TLS): run PostgreSQL on a private
    /// network, or put a TLS proxy beside each node.
    pub fn open(url: &str, settings: Settings) -> Result<Pg, Error> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::invalid(format!("the PostgreSQL URL is not valid: {e}")).with_source(e)
        })?;
        config.connect_timeout(settings.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("callgate");
        }
        let pg = Pg::start(config, settings)?;
        let applied = pg.block_on({
            let mut link = pg.link();
            async move {
                let client = link.client().await?;
                crate::migrate::run(&client).await
            }
        })??;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, target = %pg.inner.target, "Applied PostgreSQL migrations");
        }
        Ok(pg)
    }

    fn start(config: Config, settings: Settings) -> Result<Pg, Error> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std_mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("callgate-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Runs every task spawned on the handle until the last `Pg` is dropped.
                let _ = rt.block_on(stop_rx);
            })
            .map_err(|e| Error::internal(format!("cannot start the PostgreSQL thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| Error::internal("the PostgreSQL thread stopped at start"))?
            .map_err(|e| Error::internal(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let target = target(&config);
        Ok(Pg {
            inner: Arc::new(Inner {
                handle,
                config,
                settings,
                target,
                stop: Mutex::new(Some(stop_tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// `host:port/dbname` (never the password).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn link(&self) -> Link {
        Link {
            config: self.inner.config.clone(),
            settings: self.inner.settings.clone(),
            target: self.inner.target.clone(),
            client: None,
            failed: None,
        }
    }

    pub(crate) fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.inner.handle.spawn(f);
    }

    /// Runs `f` on the PostgreSQL thread and waits for it (blocking this thread, off
    /// tokio's workers as [`Worker::block`]; never call it on the PostgreSQL thread itself).
    pub(crate) fn block_on<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Result<T, Error> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        callgate_backend::blocking(|| rx.recv())
            .map_err(|_| Error::unavailable("postgres: the PostgreSQL thread stopped"))
    }

    /// A worker: a task with a connection of its own that runs jobs in order.
    pub(crate) fn worker(&self, name: &'static str) -> Worker {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let (done_tx, done_rx) = std_mpsc::sync_channel::<()>(1);
        let mut link = self.link();
        let timeout = self.inner.settings.job_timeout;
        self.spawn(async move {
            while let Some(job) = rx.recv().await {
                let client = link.client().await;
                if tokio::time::timeout(timeout, job(client)).await.is_err() {
                    tracing::warn!(worker = name, "A PostgreSQL job took too long; its connection is dropped");
                    link.reset();
                }
            }
            let _ = done_tx.send(());
        });
        Worker { pg: self.clone(), tx: Mutex::new(Some(tx)), done: Mutex::new(Some(done_rx)), name }
    }
}

/// One connection, made on first use and again after it breaks.
pub(crate) struct Link {
    config: Config,
    settings: Settings,
    target: String,
    client: Option<Arc<Conn>>,
    /// The last failed attempt: when, and why (answered without trying again until
    /// `retry_after` has passed).
    failed: Option<(tokio::time::Instant, Error)>,
}

impl Link {
    /// The connection, made now if there is none (or it broke).
    pub(crate) async fn client(&mut self) -> Result<Arc<Conn>, Error> {
        if let Some(c) = &self.client {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            self.client = None;
        }
        if let Some((at, e)) = &self.failed {
            if at.elapsed() < self.settings.retry_after {
                return Err(e.clone());
            }
        }
        let attempt = tokio::time::timeout(self.settings.connect_timeout, self.config.connect(NoTls)).await;
        let result = match attempt {
            Ok(Ok((client, connection))) => {
                let target = self.target.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(target = %target, error = %describe(&e), "A PostgreSQL connection broke");
                    }
                });
                Ok(Arc::new(Conn { client, cache: Mutex::default() }))
            }
            Ok(Err(e)) => Err(unavailable(&format!("cannot connect to {}", self.target), e)),
            Err(_) => Err(Error::unavailable(format!(
                "postgres: cannot connect to {}: no answer within {:?}",
                self.target, self.settings.connect_timeout
            ))),
        };
        match result {
            Ok(c) => {
                if self.failed.take().is_some() {
                    tracing::info!(target = %self.target, "Connected to PostgreSQL again");
                }
                self.client = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                if self.failed.is_none() {
                    tracing::error!(error = %e, "Cannot reach PostgreSQL");
                }
                self.failed = Some((tokio::time::Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Drops the connection (its server session ends, rolling back what it had not
    /// committed); the next use connects again.
    pub(crate) fn reset(&mut self) {
        self.client = None;
    }
}

type Job = Box<dyn FnOnce(Result<Arc<Conn>, Error>) -> BoxFuture<'static, ()> + Send>;

/// A task with one connection that runs jobs one at a time, in the order they were
/// handed over.
pub(crate) struct Worker {
    pg: Pg,
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    done: Mutex<Option<std_mpsc::Receiver<()>>>,
    name: &'static str,
}

fn stopped(name: &str) -> Error {
    Error::unavailable(format!("postgres: the {name} is closed"))
}

fn lost(name: &str) -> Error {
    Error::unavailable(format!("postgres: the {name} gave no answer (timed out, or the connection broke)"))
}

impl Worker {
    /// Hands `f` over now; `reply` gets its result (or why it never ran).
    fn submit<T, F, Fut>(&self, f: F, reply: impl FnOnce(Result<T, Error>) + Send + 'static) -> Result<(), Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let r = match client {
                    Ok(c) => f(c).await,
                    Err(e) => Err(e),
                };
                reply(r);
            })
        });
        match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(job).map_err(|_| stopped(self.name)),
            None => Err(stopped(self.name)),
        }
    }

    /// Hands `f` over now (so jobs run in the order of the calls); the future waits for
    /// its result.
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> BoxFuture<'static, Result<T, Error>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        let name = self.name;
        Box::pin(async move {
            submitted?;
            rx.await.map_err(|_| lost(name))?
        })
    }

    /// Runs `f` and blocks this thread until it is done (off tokio's workers, see
    /// [`callgate_backend::blocking`]: a PostgreSQL that stalls keeps a read up to the job
    /// timeout).
    pub(crate) fn block<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        callgate_backend::blocking(|| rx.recv()).map_err(|_| lost(self.name))?
    }

    /// Stops taking jobs and waits (up to the job timeout) for the ones handed over.
    pub(crate) fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = done.recv_timeout(self.pg.inner.settings.job_timeout);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close();
    }
}

/// The most statements a connection keeps prepared; past it the cache starts again (the
/// stores use a few dozen fixed statements, so this is only a bound).
const MAX_PREPARED: usize = 256;

/// A connection and the statements prepared on it: the stores' queries are parsed and
/// planned once per connection instead of once per call (one round trip instead of two).
pub(crate) struct Conn {
    client: Client,
    cache: Mutex<std::collections::HashMap<String, Statement>>,
}

impl Conn {
    /// The client itself (for statements prepared by hand, transactions by `batch_execute`).
    pub(crate) fn raw(&self) -> &Client {
        &self.client
    }

    /// Whether the connection broke.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// `sql`, prepared on this connection (once).
    pub(crate) async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_PREPARED {
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared once), answering the rows changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.client.execute(&st, params).await
    }

    /// Runs `sql` (prepared once), answering its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.client.query(&st, params).await
    }

    /// Runs `sql` (prepared once), answering its one row or none.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.client.query_opt(&st, params).await
    }

    /// Runs `sql` (prepared once), answering its one row.
    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.client.query_one(&st, params).await
    }

    /// Runs statements without parameters (`BEGIN`, `COMMIT`, DDL).
    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }
}
