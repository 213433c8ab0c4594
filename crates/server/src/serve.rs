//! Starting the server: configuration → ledger → restore from the journal → HTTP.
//!
//! Components are built once, in dependency order, each handed the narrow handles it
//! needs: the bus first (everything publishes on it or subscribes to it), the consumers
//! of committed events, the journal and the governor, the dialer (with the governor and
//! the bus's dialer inbox), then the HTTP edge, the tickers and the reconcilers. Nothing
//! is bound late.

use crate::bus::{Bus, DecisionLog, LedgerBus};
use crate::clock::{Clock, SystemClock};
use crate::edges::api::{self, App, Keys, Limits};
use crate::edges::twilio::WaitingRoom;
use crate::governor::Governor;
use crate::governor::OpsSubscriber;
use crate::inbound::Inbound;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::providers::{ProviderSet, Providers};
use crate::reconcile::Reconcilers;
use callgate_backend::records::Records;
use callgate_backend::LedgerBackend;
use callgate_config::{Config, Env, LedgerStore, ProcessEnv, RedisUnavailable};
use callgate_store::{DirLock, Restoring};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the server looks for leases to expire and tickets to time out. A deadline
/// is kept to within this (DESIGN.md allows one tick); a tick with nothing due costs a
/// lock and two heap peeks.
const TICK: Duration = Duration::from_millis(20);

/// What `callgate serve` is given.
#[derive(Debug)]
pub struct ServeOptions {
    /// The validated configuration.
    pub config: Config,
    /// The file it was read from: what a reload (`SIGHUP`, `POST /v1/config/reload`)
    /// reads again. `None` (the built-in default): a reload says there is no file.
    pub config_path: Option<PathBuf>,
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `server.data_dir`.
    pub data_dir: Option<PathBuf>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on (the real port when the configuration said 0).
    pub addr: SocketAddr,
    /// Shared state (for in-process tests).
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Owns the ticker and the operations ticker (breakers' clock and alert evaluation,
    /// `ops::spawn_ticker`) and reports when one of them or the journal writer dies.
    watchdog: JoinHandle<()>,
    /// Why a background component died, once one has.
    died: tokio::sync::watch::Receiver<Option<String>>,
    /// The data directory, ours until the server stops.
    lock: Option<DirLock>,
    /// The campaign dialer (stopped with the server).
    pub campaigns: Arc<crate::campaign::Campaigns>,
    /// Puts the `[[schedules]]` in force on time (`crate::schedule`).
    schedule_ticker: JoinHandle<()>,
    /// Cluster mode: stops the event follower and the duty loop.
    stop_cluster: Arc<AtomicBool>,
    /// Cluster mode: renews the duty lease and checks Redis (`crate::cluster`).
    duty_loop: Option<JoinHandle<()>>,
    /// Cluster mode with `local_fallback`: checks Redis and says the node's presence
    /// (`crate::cluster::fallback`).
    fallback_poll: Option<JoinHandle<()>>,
}

/// Why the server could not start.
#[derive(Debug)]
pub struct ServeError(pub String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

impl Server {
    /// Builds everything and starts listening.
    pub async fn start(opts: ServeOptions) -> Result<Server, ServeError> {
        Self::start_with_clock(opts, Arc::new(SystemClock)).await
    }

    /// [`Server::start`] with another clock (tests).
    pub async fn start_with_clock(opts: ServeOptions, clock: Arc<dyn Clock>) -> Result<Server, ServeError> {
        Self::start_with(opts, clock, &ProcessEnv).await
    }

    /// [`Server::start`] with another clock and another environment (where `*_env`
    /// secrets are looked up).
    pub async fn start_with(opts: ServeOptions, clock: Arc<dyn Clock>, env: &dyn Env) -> Result<Server, ServeError> {
        let cfg = opts.config;
        let providers = ProviderSet::new(Providers::from_config(&cfg, env).map_err(|e| ServeError(e.to_string()))?);
        let keys = api::auth_keys(&cfg, env).map_err(ServeError)?;
        let listen = opts.listen.unwrap_or(cfg.server.listen);
        if !listen.ip().is_loopback() && cfg.auth.keys.is_empty() {
            return Err(ServeError(format!(
                "refusing to listen on {listen} without auth keys: anyone who can reach it could take or free \
                 capacity. Add [auth] keys to the configuration, or listen on 127.0.0.1"
            )));
        }
        let data_dir = opts.data_dir.unwrap_or_else(|| cfg.server.data_dir.clone());
        let fds = crate::connections::raise_fd_limit();
        tracing::debug!(open_files = ?fds, "Open files limit");
        let spec = cfg.ledger_spec();
        let store = cfg.storage.ledger_store(env).map_err(ServeError)?;
        let database = cfg.storage.database_url(env).map_err(ServeError)?;
        // One server per data directory, for the process's life: two would each admit
        // against their own ledger and over-admit. In cluster mode each node still has
        // its own (the call history; without `[storage] database` also call records,
        // callbacks, campaigns and suppression lists live there).
        let lock = DirLock::acquire(&data_dir).map_err(|e| ServeError(e.0))?;
        let restoring = Restoring::open(&data_dir, &spec, clock.now_ms()).map_err(|e| ServeError(e.to_string()))?;
        let node = crate::cluster::node_name(listen);
        let cluster = match store {
            LedgerStore::Embedded => None,
            LedgerStore::Redis(url) => Some(
                crate::cluster::open(url, cfg.storage.domain.clone(), spec.clone(), node.clone())
                    .await
                    .map_err(ServeError)?,
            ),
        };
        // `[storage] database`: journal, records and campaigns in PostgreSQL (`cluster::durable`).
        let postgres = match (&cluster, database) {
            (Some(c), Some(url)) => Some(
                crate::cluster::durable::open(
                    url,
                    c.ledger.clone(),
                    cfg.storage.domain.clone(),
                    node.clone(),
                    spec.clone(),
                    c.names.clone(),
                )
                .await
                .map_err(ServeError)?,
            ),
            _ => None,
        };
        let (names, pools) = match &cluster {
            None => (restoring.names(), restoring.pools()),
            Some(c) => (c.names.clone(), c.pools.clone()),
        };
        // The bus, and the dialer's inbox on it (handed to the dialer when it is built).
        let (bus, dialer_inbox) = Bus::new();
        let metrics =
            Arc::new(Metrics::with_providers(names.clone(), &pools, cfg.providers.iter().map(|p| p.name.as_str())));
        let live = Live::new(Live::first_id(clock.now_ms()), cfg.server.events_backlog);
        let limits: Vec<u32> = pools.iter().map(|p| p.limit).collect();
        let ops = Arc::new(crate::ops::Ops::new(&cfg, &limits, live.clone(), bus.clone(), env).map_err(ServeError)?);
        let ops_slot = crate::governor::OpsSlot::new(ops);
        // The calls of this server (in cluster mode, of the whole cluster, as the bus
        // follows the domain), into the history forecasts learn from.
        let history_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // The ledger side of the bus: what consumes committed events, in commit order.
        let mut ledger_bus = LedgerBus::new(names.clone())
            .subscribe(metrics.clone())
            .subscribe(OpsSubscriber::new(ops_slot.clone()))
            .subscribe(live.clone());
        if cfg.records_history() {
            ledger_bus =
                ledger_bus.subscribe(crate::history::Recorder::start(data_dir.clone(), history_dropped.clone()));
        }
        if cfg.server.decision_log {
            ledger_bus = ledger_bus.subscribe(DecisionLog);
        }
        let retention = spec.ticket_retention_ms;
        let (backend, records, follower_bus): (Arc<dyn LedgerBackend>, Arc<dyn Records>, _) = match &cluster {
            None => {
                let embedded = Arc::new(restoring.start(names.clone(), retention, clock.clone(), ledger_bus));
                (embedded.clone(), embedded, None)
            }
            // The shared ledger in Redis; the bus follows the domain's event stream
            // (`crate::cluster`). The local store keeps only this node's records.
            Some(c) => {
                let local = restoring.start(names.clone(), retention, clock.clone(), |_: &[callgate_core::Event]| {});
                match &postgres {
                    Some(p) => (p.backend.clone(), p.records.clone(), Some(ledger_bus)),
                    None => (c.ledger.clone(), Arc::new(local), Some(ledger_bus)),
                }
            }
        };
        // `local_fallback` (`cluster::fallback`): the cluster's backend, wrapped.
        let fallback = match &cluster {
            Some(c) if cfg.redis_unavailable().contains(&RedisUnavailable::LocalFallback) => {
                let (inner, redis, spec, clock) = (backend.clone(), c.ledger.clone(), spec.clone(), clock.clone());
                let node = node.clone();
                let journaled = postgres.as_ref().map(|p| p.backend.clone());
                let (policy, nodes, pools) = (cfg.redis_unavailable(), cfg.storage.nodes.unwrap_or(1), c.pools.clone());
                let max = cfg.storage.fallback_max;
                let f = tokio::task::spawn_blocking(move || {
                    crate::cluster::fallback::Fallback::new(
                        inner, redis, journaled, clock, node, spec, policy, nodes, max, &pools,
                    )
                })
                .await
                .map_err(|e| ServeError(format!("local fallback: {e}")))?;
                Some(Arc::new(f))
            }
            _ => None,
        };
        let backend: Arc<dyn LedgerBackend> = match &fallback {
            Some(f) => f.clone(),
            None => backend,
        };
        let overflow = cfg.flows.iter().map(|f| f.overflow.first().cloned()).collect();
        // Cluster mode: the follower of the domain's stream; with a database, reads wait
        // until it has shown what they saw (the other nodes' commits: `cluster::Following`).
        // Without one, every node's change is durable once Redis ran it.
        let following = cluster.as_ref().map(|c| Arc::new(crate::cluster::Following::new(c.ledger.clone())));
        let mut governor = Governor::new(backend, records, clock.clone(), names, overflow)
            .with_ops_in(ops_slot)
            .with_metrics(metrics.clone());
        if let (Some(f), Some(_)) = (&following, &postgres) {
            governor = governor.with_settled_views(f.clone());
        }
        let governor = Arc::new(governor);
        let stop_cluster = Arc::new(AtomicBool::new(false));
        let (duties, duty_lease) = match (&cluster, follower_bus, &following) {
            (Some(c), Some(bus), Some(following)) => {
                let gate: Box<dyn Fn() + Send> = match &postgres {
                    Some(p) => Box::new(p.gate()),
                    None => Box::new(|| {}),
                };
                crate::cluster::follow(
                    c.ledger.clone(),
                    c.last.clone(),
                    bus,
                    governor.clone(),
                    stop_cluster.clone(),
                    gate,
                    postgres.as_ref().map(|p| p.backend.origin().to_owned()),
                    following.clone(),
                    fallback.clone(),
                )
                .map_err(|e| ServeError(format!("cannot start the cluster's event follower: {e}")))?;
                let (duties, lease) = crate::cluster::duties(&c.ledger, &node, clock.clone()).map_err(ServeError)?;
                let fence = duties.clone();
                governor.fence_duties(move || fence.fence());
                tracing::info!(node = %node, domain = %cfg.storage.domain, "Cluster mode: the ledger is in Redis");
                (duties, Some(lease))
            }
            _ => (Arc::new(crate::cluster::Duties::alone(clock.clone())), None),
        };
        governor.settle();
        let keys = Keys::new(keys);
        let max_body_bytes = cfg.server.max_body_bytes;
        let cfg = Arc::new(cfg);
        let reload =
            crate::edges::reload::Reload::new(opts.config_path.clone(), cfg.clone(), listen.ip().is_loopback());
        let inbound = Arc::new(Inbound::new(cfg.clone(), providers.clone()));
        // The campaign dialer: its own store beside the journal (`campaigns.db`), recovery
        // of what a crash left open, then the pacing loop and its side of the bus.
        let leads: Arc<dyn callgate_backend::leads::Leads> = match &postgres {
            Some(p) => p.leads.clone(),
            None => {
                Arc::new(callgate_store::LeadStore::open(&data_dir).map_err(|e| ServeError(format!("campaigns: {e}")))?)
            }
        };
        // The suppression lists (`dnc.db`, or PostgreSQL shared by every node), loaded
        // before the first dial.
        let dnc: Arc<dyn callgate_backend::dnc::DncLists> = match &postgres {
            Some(p) => p.dnc.clone(),
            None => Arc::new(
                callgate_store::DncStore::open(&data_dir).map_err(|e| ServeError(format!("suppression lists: {e}")))?,
            ),
        };
        let suppressions = {
            let clock = clock.clone();
            tokio::task::spawn_blocking(move || crate::campaign::Suppressions::open(dnc, clock))
                .await
                .map_err(|e| ServeError(format!("suppression lists: {e}")))?
                .map(Arc::new)
                .map_err(|e| ServeError(format!("suppression lists: {e}")))?
        };
        let clock_for_duties = clock.clone();
        let campaigns = crate::campaign::Campaigns::start(
            governor.clone(),
            live.clone(),
            dialer_inbox,
            cfg.clone(),
            providers,
            leads,
            clock,
            suppressions,
            // With a shared database every node knows every campaign: each is paced by
            // one node at a time (`campaign::pacing`). Without one, each node dials its own.
            match (&cluster, &postgres) {
                (Some(c), Some(_)) => crate::campaign::Pacing::cluster(c.ledger.clone(), node.clone()),
                _ => crate::campaign::Pacing::alone(),
            },
        )
        .await
        .map_err(|e| ServeError(format!("campaigns: {e}")))?;
        // The reserves that follow the forecast, from the call history beside the journal.
        let forecasts = Arc::new(crate::forecast::Forecasts::new(data_dir.clone(), governor.clone(), history_dropped));
        let schedules = Arc::new(crate::schedule::Schedules::new(
            crate::schedule::Handles {
                governor: governor.clone(),
                live: live.clone(),
                campaigns: campaigns.clone(),
                forecasts: forecasts.clone(),
            },
            cfg.clone(),
        ));
        let app = Arc::new(App {
            governor: governor.clone(),
            metrics,
            live,
            keys,
            limits: Limits::from_config(&cfg.server),
            inbound,
            waiting_room: WaitingRoom::default(),
            overflow_chains: Default::default(),
            bus,
            campaigns: campaigns.clone(),
            reload,
            schedules: schedules.clone(),
            forecasts,
            reconcilers: Reconcilers::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            duties: duties.clone(),
            following,
        });
        let router = crate::edges::router::router(app.clone()).merge(api::campaigns::router(app.clone()));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServeError(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| ServeError(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let conn_limits = crate::connections::ConnectionLimits {
            max_connections: cfg.server.max_connections,
            header_read_timeout: cfg.server.header_read_timeout,
            idle_timeout: cfg.server.idle_timeout,
            max_body_bytes,
        };
        let task = tokio::spawn(crate::connections::serve(listener, router, conn_limits, async {
            let _ = rx.await;
        }));
        let ticker = {
            let (governor, duties) = (governor.clone(), duties.clone());
            let app = app.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    // The sweep of the shared ledger is a singleton duty in cluster mode.
                    if duties.held() {
                        governor.tick();
                    } else {
                        governor.tick_local();
                    }
                    // Spilled calls that never arrived: their lines expired just now. Told
                    // once durable, on a task of its own so the ticker never waits on disk.
                    // (Each node keeps its own spills, so each sweeps them.)
                    if app.inbound.spills.due(governor.now_ms()) {
                        let app = app.clone();
                        tokio::spawn(async move { app.inbound.spills.sweep(app.effects()).await });
                    }
                }
            })
        };
        let ops_ticker = match &cluster {
            None => crate::ops::spawn_ticker(governor.clone()),
            Some(_) => crate::ops::spawn_ticker(Arc::new(crate::cluster::Gated {
                governor: governor.clone(),
                duties: duties.clone(),
            })),
        };
        // The schedules active at the start are in force before the first request; a
        // failure is logged and published, and the ticker tries again at the next change.
        let _ = app.schedules.apply(false).await;
        let schedule_ticker = crate::schedule::spawn_ticker(app.schedules.clone());
        let (died_tx, died) = tokio::sync::watch::channel(None);
        let watchdog = spawn_watchdog(governor, ticker, ops_ticker, died_tx);
        // In cluster mode the reconcilers wait for the duties (the duty loop starts them).
        app.reconcilers.set_standby(!duties.held(), &app.reconcile_handles(), &app.inbound.providers.current());
        let duty_loop = match (&cluster, duty_lease) {
            (Some(c), Some(lease)) => {
                // Each provider is reconciled by the duty holder only.
                let governor = app.governor.clone();
                let app = app.clone();
                let changed = move |held: bool| {
                    app.reconcilers.set_standby(!held, &app.reconcile_handles(), &app.inbound.providers.current());
                };
                Some(crate::cluster::spawn_duty_loop(
                    governor,
                    c.ledger.clone(),
                    lease,
                    duties,
                    changed,
                    clock_for_duties,
                    stop_cluster.clone(),
                ))
            }
            _ => None,
        };
        let fallback_poll = match (&cluster, fallback) {
            (Some(c), Some(f)) => Some(crate::cluster::fallback::spawn_poll(f, c.ledger.clone(), stop_cluster.clone())),
            _ => None,
        };
        tracing::info!(%addr, data_dir = %data_dir.display(), "Listening");
        Ok(Server {
            addr,
            app,
            shutdown: Some(tx),
            task,
            watchdog,
            died,
            campaigns,
            lock: Some(lock),
            schedule_ticker,
            stop_cluster,
            duty_loop,
            fallback_poll,
        })
    }

    /// Injects a fault into the embedded backend's journal writer (tests only; nothing on
    /// another backend).
    #[doc(hidden)]
    pub fn inject_journal_fault(&self, fault: callgate_store::Fault) {
        if let Some(embedded) = self.app.governor.backend().as_any().downcast_ref::<callgate_store::Embedded>() {
            embedded.inject_fault(fault);
        }
    }

    /// Stops accepting, finishes the requests in flight (event streams end at once), and
    /// flushes the journal.
    pub async fn stop(mut self) {
        self.app.stopping.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.app.reconcilers.stop_all();
        self.schedule_ticker.abort();
        // The follower ends within a second; the duty loop lets the lease go, so that
        // another node takes the duties at once.
        self.stop_cluster.store(true, Ordering::SeqCst);
        if let Some(duty_loop) = self.duty_loop.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), duty_loop).await;
        }
        // The fallback's check ends within a second and takes the node's presence out of
        // Redis, so that nothing is held back for it.
        if let Some(poll) = self.fallback_poll.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), poll).await;
        }
        let _ = (&mut self.task).await;
        self.campaigns.shutdown().await;
        // Aborting the watchdog drops (and so aborts) the tickers it watches.
        self.watchdog.abort();
        let _ = (&mut self.watchdog).await;
        self.lock.take();
    }

    /// Resolves when a background component died (the journal writer, the ticker): the
    /// server has stopped admission and says why. `callgate serve` then exits non-zero so
    /// that a supervisor restarts it and the journal restores the state.
    pub async fn died(&self) -> String {
        let mut rx = self.died.clone();
        let why = match rx.wait_for(|d| d.is_some()).await {
            Ok(d) => d.clone().unwrap_or_default(),
            Err(_) => "the server's watchdog stopped".into(),
        };
        why
    }
}

/// Watches the components that run in the background: when the journal writer or a
/// ticker dies, admission stops at once (503, `/healthz` failing) and [`Server::died`]
/// resolves. A dead component is never silent.
fn spawn_watchdog(
    governor: Arc<Governor>,
    mut ticker: JoinHandle<()>,
    mut ops_ticker: JoinHandle<()>,
    died: tokio::sync::watch::Sender<Option<String>>,
) -> JoinHandle<()> {
    struct AbortOnDrop([tokio::task::AbortHandle; 2]);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
    tokio::spawn(async move {
        let _abort = AbortOnDrop([ticker.abort_handle(), ops_ticker.abort_handle()]);
        let why = tokio::select! {
            why = governor.journal_dead() => why,
            end = &mut ticker => format!("the ticker stopped: {}", panic_text(end)),
            end = &mut ops_ticker => format!("the operations ticker stopped: {}", panic_text(end)),
        };
        tracing::error!(reason = %why, "A background component died; admission stops");
        governor.stop_admission(why.clone());
        let _ = died.send(Some(why));
    })
}

fn panic_text(end: Result<(), tokio::task::JoinError>) -> String {
    match end {
        Ok(()) => "it returned".into(),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into())
        }
        Err(e) => e.to_string(),
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    serve_announced(opts, |addr| eprintln!("callgate listening on http://{addr}")).await
}

/// [`serve`], telling `announce` the address once it listens (`callgate serve` prints it
/// as text, or as a JSON line with `--log-json`).
pub async fn serve_announced(opts: ServeOptions, announce: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let server = Server::start(opts).await?;
    announce(server.addr);
    let reloads = {
        let app = server.app.clone();
        tokio::spawn(async move { reload_on_hangup(app).await })
    };
    let died = tokio::select! {
        _ = shutdown_signal() => None,
        why = server.died() => Some(why),
    };
    reloads.abort();
    match died {
        None => {
            tracing::info!("Shutting down");
            server.stop().await;
            Ok(())
        }
        // Exit non-zero without waiting for anything that may hang on the dead part:
        // the journal holds every acknowledged change, and the restart restores it.
        Some(why) => Err(ServeError(format!("{why}; exiting so that a supervisor restarts callgate"))),
    }
}

/// `SIGHUP` reloads the configuration (see [`crate::reload`]), as daemons do; what it
/// changed, or why it changed nothing, is logged.
async fn reload_on_hangup(app: Arc<App>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP: reload with POST /v1/config/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // The outcome is logged by the reload itself.
            let _ = crate::edges::reload::reload(&app, &ProcessEnv).await;
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
