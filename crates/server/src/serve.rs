//! Starting the server: configuration → ledger → restore from the journal → HTTP.

use crate::clock::{Clock, SystemClock};
use crate::edges::api::{self, App, Keys};
use crate::edges::twilio::WaitingRoom;
use crate::governor::Governor;
use crate::inbound::Inbound;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::providers::reconcile::Reconciler;
use crate::providers::Providers;
use callgate_config::{Config, Env, ProcessEnv};
use callgate_core::{Lease, LeaseId, Ledger, PoolUnits, TicketId};
use callgate_store::{Journal, Names, Opened, StoredLease, StoredTicket};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    task: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
    /// Breakers' clock and alert evaluation (`ops::spawn_ticker`).
    ops_ticker: JoinHandle<()>,
    reconcilers: Vec<JoinHandle<()>>,
    /// The campaign dialer (stopped with the server).
    pub campaigns: Arc<crate::campaign::Campaigns>,
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

fn names_of(ledger: &Ledger) -> Names {
    Names {
        pools: (0..ledger.pool_count()).map(|i| ledger.pool_name(callgate_core::PoolId(i as u32)).clone()).collect(),
        config_limits: ledger.pools().iter().map(|p| p.limit).collect(),
        classes: (0..ledger.class_count())
            .map(|i| ledger.class_name(callgate_core::ClassId(i as u16)).clone())
            .collect(),
        flows: (0..ledger.flow_count()).map(|i| ledger.flow_name(callgate_core::FlowId(i as u32)).clone()).collect(),
    }
}

fn resolve_pools(ledger: &Ledger, pools: &[(String, u32)]) -> Option<Vec<PoolUnits>> {
    pools.iter().map(|(name, units)| Some(PoolUnits { pool: ledger.pool_id(name)?, units: *units })).collect()
}

fn restore_lease(ledger: &mut Ledger, l: &StoredLease) -> bool {
    let (Some(class), Some(pools)) = (ledger.class_id(&l.class), resolve_pools(ledger, &l.pools)) else {
        return false;
    };
    let lease = Lease {
        id: LeaseId(l.id),
        key: l.key.as_deref().map(Arc::from),
        class,
        flow: l.flow.as_deref().and_then(|f| ledger.flow_id(f)),
        pools: pools.into(),
        granted_at: l.granted_at,
        expires_at: l.expires_at,
        ttl_ms: l.ttl_ms,
        meta: l.meta.as_deref().map(Arc::from),
    };
    ledger.restore_lease(lease).is_ok()
}

fn restore_ticket(ledger: &mut Ledger, t: &StoredTicket) -> bool {
    let (Some(class), Some(pools)) = (ledger.class_id(&t.class), resolve_pools(ledger, &t.pools)) else {
        return false;
    };
    let ticket = callgate_core::Ticket {
        id: TicketId(t.id),
        key: t.key.as_deref().map(Arc::from),
        class,
        flow: t.flow.as_deref().and_then(|f| ledger.flow_id(f)),
        pools: pools.into(),
        seq: t.seq,
        enqueued_at: t.enqueued_at,
        deadline: t.deadline,
        ttl_ms: t.ttl_ms,
        meta: t.meta.as_deref().map(Arc::from),
    };
    ledger.restore_ticket(ticket).is_ok()
}

/// Puts back what the journal held. Rows naming a pool or class that the configuration
/// no longer has are dropped (with a warning): they cannot be admitted against anything.
fn restore(ledger: &mut Ledger, opened: &mut Opened, now: u64) -> Result<(), ServeError> {
    let r = &opened.restored;
    let mut lost_leases = Vec::new();
    let mut lost_tickets = Vec::new();
    for l in &r.leases {
        if !restore_lease(ledger, l) {
            tracing::warn!(lease = l.id, class = %l.class, pools = ?l.pools, "Dropping a stored lease: its class or pool is no longer configured");
            lost_leases.push(l.id);
        }
    }
    for t in &r.tickets {
        if !restore_ticket(ledger, t) {
            tracing::warn!(ticket = t.id, class = %t.class, pools = ?t.pools, "Dropping a stored ticket: its class or pool is no longer configured");
            lost_tickets.push(t.id);
        }
    }
    ledger.restore_counters(r.next_id, r.next_seq);
    for (pool, limit, config_limit) in &r.limits {
        match ledger.pool_id(pool) {
            Some(id) if ledger.pool(id).limit == *config_limit => ledger.set_limit(id, *limit, now),
            _ => tracing::info!(pool = %pool, "Not restoring a runtime limit change: the configuration changed since"),
        }
    }
    // These limit events restate what the journal already holds.
    ledger.drain_events().for_each(drop);
    tracing::info!(
        leases = ledger.lease_count(),
        tickets = ledger.ticket_count(),
        dropped_leases = lost_leases.len(),
        dropped_tickets = lost_tickets.len(),
        "Restored the journal"
    );
    opened.forget(&lost_leases, &lost_tickets).map_err(|e| ServeError(e.to_string()))
}

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
        let providers = Providers::from_config(&cfg, env).map_err(|e| ServeError(e.to_string()))?;
        let keys = auth_keys(&cfg, env)?;
        let listen = opts.listen.unwrap_or(cfg.server.listen);
        if !listen.ip().is_loopback() && cfg.auth.keys.is_empty() {
            return Err(ServeError(format!(
                "refusing to listen on {listen} without auth keys: anyone who can reach it could take or free \
                 capacity. Add [auth] keys to the configuration, or listen on 127.0.0.1"
            )));
        }
        let data_dir = opts.data_dir.unwrap_or_else(|| cfg.server.data_dir.clone());
        let mut ledger = Ledger::new(&cfg.ledger_spec()).map_err(|e| ServeError(format!("configuration: {e}")))?;
        let mut opened = Journal::open(&data_dir).map_err(|e| ServeError(e.to_string()))?;
        restore(&mut ledger, &mut opened, clock.now_ms())?;
        let names = names_of(&ledger);
        let metrics = Arc::new(Metrics::with_providers(
            names.clone(),
            &ledger.pools(),
            cfg.providers.iter().map(|p| p.name.as_str()),
        ));
        let live = Live::new(Live::first_id(clock.now_ms()), cfg.server.events_backlog);
        let limits: Vec<u32> = ledger.pools().iter().map(|p| p.limit).collect();
        let ops = Arc::new(crate::ops::Ops::new(&cfg, &limits, live.clone(), env).map_err(ServeError)?);
        let journal = {
            let (metrics, live, names, ops) = (metrics.clone(), live.clone(), names.clone(), ops.clone());
            opened.start(names.clone(), move |events: &[callgate_core::Event]| {
                metrics.observe(events);
                ops.observe(events);
                live.publish(events, &names);
            })
        };
        let overflow =
            cfg.flows.iter().map(|f| f.overflow.first().and_then(|o| serde_json::to_value(o).ok())).collect();
        let governor = Governor::new(ledger, journal, clock.clone(), names, overflow).with_ops(ops);
        governor.settle();
        let keys = Keys::new(keys);
        let max_body_bytes = cfg.server.max_body_bytes;
        let cfg = Arc::new(cfg);
        let inbound = Inbound::new(cfg.clone(), providers.clone());
        let app = Arc::new(App {
            governor,
            metrics,
            live,
            keys,
            inbound,
            waiting_room: WaitingRoom::default(),
            overflow_chains: Default::default(),
            campaigns: Default::default(),
        });
        // The campaign dialer: its own store beside the journal, recovery of what a crash
        // left open, then the pacing loop.
        let campaigns = crate::campaign::Campaigns::start(&app, cfg.clone(), providers, &data_dir, clock)
            .await
            .map_err(|e| ServeError(format!("campaigns: {e}")))?;
        let _ = app.campaigns.set(campaigns.clone());
        app.governor.ops().set_campaigns(campaigns.clone());
        let router =
            api::router(app.clone(), max_body_bytes).merge(crate::campaign::http::router(app.clone(), max_body_bytes));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServeError(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| ServeError(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        let ticker = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    app.governor.tick();
                }
            })
        };
        let ops_ticker = crate::ops::spawn_ticker(app.clone());
        let mut reconcilers = Vec::new();
        for provider in app.inbound.providers.iter() {
            match Reconciler::new(app.clone(), provider.clone()) {
                Some(r) => reconcilers.push(r.spawn()),
                None => {
                    tracing::info!(provider = %provider.name, "No API key: calls are not reconciled with the platform")
                }
            }
        }
        tracing::info!(%addr, data_dir = %data_dir.display(), "Listening");
        Ok(Server { addr, app, shutdown: Some(tx), task, ticker, ops_ticker, reconcilers, campaigns })
    }

    /// Stops accepting, finishes the requests in flight, and flushes the journal.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for r in &self.reconcilers {
            r.abort();
        }
        let _ = (&mut self.task).await;
        self.campaigns.shutdown().await;
        self.ticker.abort();
        self.ops_ticker.abort();
    }
}

/// The API keys with their tokens (`token`, or the variable `token_env` names), each
/// token once.
fn auth_keys(cfg: &Config, env: &dyn Env) -> Result<Vec<(String, String, callgate_config::Role)>, ServeError> {
    let mut keys: Vec<(String, String, callgate_config::Role)> = Vec::with_capacity(cfg.auth.keys.len());
    for k in &cfg.auth.keys {
        let token = k.resolve_token(env).map_err(ServeError)?;
        if let Some((other, _, _)) = keys.iter().find(|(_, t, _)| *t == token) {
            return Err(ServeError(format!("auth keys `{other}` and `{}` have the same token", k.name)));
        }
        keys.push((k.name.clone(), token, k.role));
    }
    Ok(keys)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let server = Server::start(opts).await?;
    eprintln!("callgate listening on http://{}", server.addr);
    shutdown_signal().await;
    tracing::info!("Shutting down");
    server.stop().await;
    Ok(())
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
