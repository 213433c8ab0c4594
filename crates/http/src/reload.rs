//! Reloading the configuration without a restart: `SIGHUP` and `POST /v1/config/reload`.
//!
//! A reload re-reads the file the server was started with, validates it exactly as
//! `callgate config check` does, and applies the difference at once or not at all:
//! pool limits and reserves, class priorities, flows (new, changed, removed: a removed
//! flow admits nothing new, while its live leases and waiting tickets stay until they
//! end), overflow chains, menus, breakers, adaptive settings, alerts, API keys,
//! campaigns, providers and schedules (the new file's schedules active at the moment of
//! the reload are in force when it answers: see [`callgate_runtime::schedule`]).
//!
//! Providers: the new set is resolved (every secret read) before anything changes, then
//! put in force as a whole ([`callgate_runtime::providers::ProviderSet`], which the webhooks, the
//! reconcilers and the dialer read per use): from the moment the reload answers, webhooks
//! are checked against the new secrets (the old ones are refused), Vapi messages go to
//! the new upstreams, a removed provider's webhook route answers as an unknown one does,
//! reconcilers are stopped, started or restarted as their providers went, came or
//! changed, and the campaigns that dial through a changed provider get new dialers. The
//! leases of a removed provider live on and end as any lease does (release, TTL).
//!
//! The ledger part is the governor's (`callgate_governor`'s `reload.rs`): the ledger is rebuilt from
//! the new configuration and what the old one holds, by the restore a restart runs, so a
//! reload gives what a restart with the new file would. The operating layer (breakers,
//! adaptive limiters, alerts) is rebuilt, like at a start, only when its inputs changed.
//!
//! What cannot change in a running server is refused, with the list of it, and then
//! nothing changes: `[server]` (listen address, data directory, connection and request
//! limits), `[telemetry]`, and the set and order of pools and of classes (ids in the
//! ledger and label sets of the metrics follow them).

use crate::app::App;
use callgate_config::{Config, ConfigErrors, Env};
use callgate_governor::NewLedger;
use callgate_runtime::providers::{Provider, Providers};
use callgate_store::Names;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The configuration in force and where it came from.
#[derive(Debug)]
pub struct Reload {
    /// The file the server was started with (`None`: the built-in default).
    path: Option<PathBuf>,
    /// Whether the server listens on a loopback address only (without keys it must).
    loopback: bool,
    current: Mutex<Arc<Config>>,
    /// One reload at a time: two would each diff against the same old configuration.
    running: tokio::sync::Mutex<()>,
    ok: AtomicU64,
    invalid: AtomicU64,
    /// Unix seconds of the last reload applied (0: none yet).
    last_success: AtomicU64,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum ReloadFailure {
    /// The server was started without `--config`.
    NoFile,
    /// The file does not validate: every problem, with its line and field.
    Invalid(ConfigErrors),
    /// The file validates but cannot be used (a secret's variable is not set, …).
    Unusable(String),
    /// Sections that only a restart can change.
    NeedsRestart(Vec<String>),
    /// The governor refused or could not apply it (journal failing, …).
    Refused(callgate_governor::Error),
}

impl std::fmt::Display for ReloadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadFailure::NoFile => f.write_str(NO_FILE),
            ReloadFailure::Invalid(e) => write!(f, "the configuration is invalid; nothing changed:\n{e}"),
            ReloadFailure::Unusable(why) => write!(f, "the configuration cannot be used; nothing changed: {why}"),
            ReloadFailure::NeedsRestart(list) => {
                write!(f, "these changes need a restart; nothing changed: {}", list.join("; "))
            }
            ReloadFailure::Refused(e) => write!(f, "nothing changed: {}", e.message),
        }
    }
}

const NO_FILE: &str = "the server was started without --config (the built-in default): there is no file to reload";

impl Reload {
    /// For a server started from `path` (or the built-in default) with `config`.
    pub fn new(path: Option<PathBuf>, config: Arc<Config>, loopback: bool) -> Self {
        Reload {
            path,
            loopback,
            current: Mutex::new(config),
            running: tokio::sync::Mutex::new(()),
            ok: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `callgate_config_reloads_total` and `callgate_config_last_reload_success_timestamp_seconds`.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP callgate_config_reloads_total Configuration reloads, by result (invalid: nothing changed).\n",
        );
        out.push_str("# TYPE callgate_config_reloads_total counter\n");
        let _ = writeln!(out, "callgate_config_reloads_total{{result=\"ok\"}} {}", self.ok.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "callgate_config_reloads_total{{result=\"invalid\"}} {}",
            self.invalid.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP callgate_config_last_reload_success_timestamp_seconds When the last reload was applied (0: never).\n",
        );
        out.push_str("# TYPE callgate_config_last_reload_success_timestamp_seconds gauge\n");
        let _ = writeln!(
            out,
            "callgate_config_last_reload_success_timestamp_seconds {}",
            self.last_success.load(Ordering::Relaxed)
        );
    }

    fn failed(&self, f: ReloadFailure) -> ReloadFailure {
        if !matches!(f, ReloadFailure::NoFile) {
            self.invalid.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(reason = %f, "Configuration not reloaded");
        f
    }
}

/// Re-reads the configuration file and applies it (see the module docs); the changes
/// as lines such as `pool vapi: limit 10 -> 12`. `env` resolves `*_env` secrets.
pub async fn reload(app: &App, env: &dyn Env) -> Result<Vec<String>, ReloadFailure> {
    let r = &app.reload;
    let _one_at_a_time = r.running.lock().await;
    let Some(path) = &r.path else { return Err(r.failed(ReloadFailure::NoFile)) };
    let new = match Config::from_path(path) {
        Ok(c) => c,
        Err(e) => return Err(r.failed(ReloadFailure::Invalid(e))),
    };
    let old = r.current();
    let restart = needs_restart(&old, &new);
    if !restart.is_empty() {
        return Err(r.failed(ReloadFailure::NeedsRestart(restart)));
    }
    let keys = crate::auth::auth_keys(&new, env).map_err(|e| r.failed(ReloadFailure::Unusable(e)))?;
    // Every provider's secrets, read before anything changes.
    let old_providers = app.inbound.providers.current();
    let providers =
        Providers::reloaded(&new, env, &old_providers).map_err(|e| r.failed(ReloadFailure::Unusable(e.to_string())))?;
    let providers_changed = !providers.changed_from(&old_providers, Provider::same_settings).is_empty();
    // The providers whose calls a dialer would place otherwise now.
    let redial = providers.changed_from(&old_providers, Provider::dials_alike);
    if !r.loopback && keys.is_empty() {
        return Err(r.failed(ReloadFailure::Unusable(
            "the server listens beyond loopback: a configuration without [auth] keys would let anyone take or free \
             capacity"
                .into(),
        )));
    }
    let changes = changes(&old, &new);
    let ops = if ops_inputs_changed(&old, &new) {
        // The operating layer starts from the limits the new ledger will have: a runtime
        // limit stays unless the configured one changed.
        let now: Vec<u32> = app.governor.pools().iter().map(|p| p.limit).collect();
        let limits: Vec<u32> = new
            .pools
            .iter()
            .zip(&old.pools)
            .zip(&now)
            .map(|((n, o), cur)| if n.limit != o.limit { n.limit } else { *cur })
            .collect();
        let ops = callgate_ops::Ops::new(&new, &limits, app.live.clone(), app.bus.clone(), env)
            .map_err(|e| r.failed(ReloadFailure::Unusable(e)))?;
        Some(Arc::new(ops))
    } else {
        None
    };
    let names = Names {
        pools: new.pools.iter().map(|p| Arc::from(p.name.as_str())).collect(),
        config_limits: new.pools.iter().map(|p| p.limit).collect(),
        classes: new.classes.iter().map(|c| Arc::from(c.name.as_str())).collect(),
        flows: new.flows.iter().map(|f| Arc::from(f.name.as_str())).collect(),
    };
    // The ledger as the new file's schedules active now make it (see `callgate_runtime::schedule`),
    // so that a reload never drops a schedule's reserves for a moment.
    let scheduled = new.scheduled(&new.active_schedules(app.governor.now_ms()));
    let names = Names { config_limits: scheduled.pools.iter().map(|p| p.limit).collect(), ..names };
    let overflow = scheduled.flows.iter().map(|f| f.overflow.first().cloned()).collect();
    let ledger = NewLedger { spec: scheduled.ledger_spec(), names, overflow, ops };
    app.governor.reload(ledger).await.map_err(|e| r.failed(ReloadFailure::Refused(e)))?;
    let new = Arc::new(new);
    app.keys.replace(keys);
    // One swap for every holder of the set: the webhooks, the reconcilers, the dialer.
    app.inbound.providers.replace(providers);
    app.inbound.replace(new.clone());
    app.campaigns.replace_config(new.clone());
    if providers_changed {
        app.reconcilers.apply(&app.reconcile_handles(), &app.inbound.providers.current());
    }
    // The campaigns follow the file: new ones start, changed ones take their settings,
    // removed ones stop dialing; those whose providers changed get new dialers.
    let mut changes = changes;
    match app.campaigns.reload(&redial).await {
        Ok(more) => changes.extend(more),
        Err(e) => {
            tracing::error!(error = %e, "The campaigns could not follow the reloaded file");
            changes.push(format!("campaigns: not applied: {e}"));
        }
    }
    *r.current.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
    // The new file's schedules: their overflow chains and campaign pacing (a new
    // operating layer and new dialers start without them).
    if let Err(e) = app.schedules.reconfigure(new).await {
        changes.push(format!("schedules: not applied: {e}"));
    }
    r.ok.fetch_add(1, Ordering::Relaxed);
    r.last_success.store(app.governor.now_ms() / 1000, Ordering::Relaxed);
    tracing::info!(changes = ?changes, file = %path.display(), "Configuration reloaded");
    app.live.publish_json(&serde_json::json!({ "type": "config_reloaded", "changes": changes }));
    Ok(changes)
}

/// Whether what the operating layer is built from changed.
fn ops_inputs_changed(old: &Config, new: &Config) -> bool {
    (&old.pools, &old.flows, &old.classes, &old.breakers, &old.alerts, &old.campaigns)
        != (&new.pools, &new.flows, &new.classes, &new.breakers, &new.alerts, &new.campaigns)
}

/// The changes only a restart can make, one line each.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.server != new.server {
        out.push("[server] (listen address, data directory, connection and request limits)".to_string());
    }
    if old.telemetry != new.telemetry {
        out.push("[telemetry]".to_string());
    }
    if old.storage != new.storage {
        out.push("[storage] (where the ledger lives)".to_string());
    }
    let pools = |c: &Config| c.pools.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    if pools(old) != pools(new) {
        out.push(format!("the set of pools ({} -> {})", pools(old).join(", "), pools(new).join(", ")));
    }
    let classes = |c: &Config| c.classes.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
    if classes(old) != classes(new) {
        out.push(format!("the set of classes ({} -> {})", classes(old).join(", "), classes(new).join(", ")));
    }
    out
}

/// What a reload changes, one line each, in file order.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (o, n) in old.classes.iter().zip(&new.classes) {
        if o.priority != n.priority {
            out.push(format!("class {}: priority {} -> {}", n.name, o.priority, n.priority));
        }
    }
    for (o, n) in old.pools.iter().zip(&new.pools) {
        if o.limit != n.limit {
            out.push(format!("pool {}: limit {} -> {}", n.name, o.limit, n.limit));
        }
        if o.reserve != n.reserve {
            out.push(format!("pool {}: reserve {:?} -> {:?}", n.name, o.reserve, n.reserve));
        }
        if o.adaptive != n.adaptive {
            out.push(format!("pool {}: adaptive settings changed", n.name));
        }
        if o != n && o.limit == n.limit && o.reserve == n.reserve && o.adaptive == n.adaptive {
            out.push(format!("pool {}: changed", n.name));
        }
    }
    named_changes(&mut out, "flow", &old.flows, &new.flows, |f| &f.name);
    named_changes(&mut out, "menu", &old.menus, &new.menus, |m| &m.name);
    named_changes(&mut out, "breaker", &old.breakers, &new.breakers, |b| &b.name);
    named_changes(&mut out, "alert", &old.alerts, &new.alerts, |a| &a.name);
    named_changes(&mut out, "provider", &old.providers, &new.providers, |p| &p.name);
    named_changes(&mut out, "schedule", &old.schedules, &new.schedules, |s| &s.name);
    if old.auth != new.auth {
        let names = |c: &Config| c.auth.keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        out.push(format!("auth: keys {} -> {}", names(old).join(", "), names(new).join(", ")));
    }
    out
}

fn named_changes<T: PartialEq>(out: &mut Vec<String>, what: &str, old: &[T], new: &[T], name: impl Fn(&T) -> &String) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("{what} {}: added", name(n))),
            Some(o) if o != n => out.push(format!("{what} {}: changed", name(n))),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| name(n) == name(o)) {
            out.push(format!("{what} {}: removed", name(o)));
        }
    }
}
