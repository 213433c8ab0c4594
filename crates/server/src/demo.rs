//! `callgate demo`: one command that shows the budget shared. It starts a server on a
//! Vapi-like account of 10 lines with 3 held back for inbound, simulated inbound callers
//! arriving at random, and a campaign of a few thousand simulated leads on the built-in
//! simulated provider. Every few seconds it prints who holds the lines: outbound never
//! takes more than 7, inbound callers get through (or wait their turn), the campaign is
//! paced. The HTTP API, `/metrics` and `/v1/events` are live while it runs.

use crate::governor::{AcquireRequest, Answer, Edge, LeaseGuard, Target};
use crate::serve::{ServeOptions, Server};
use callgate_config::Config;
use callgate_providers::sim::Rng;
use clap::Args;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `callgate demo` options.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo server listens.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Keep the demo's data here (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Simulated leads in the campaign.
    #[arg(long, default_value_t = 3000)]
    pub leads: u32,
    /// Simulated inbound callers per minute.
    #[arg(long, default_value_t = 12.0)]
    pub inbound_per_minute: f64,
    /// Random seed (the same seed plays the same demo).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Play the demo this many times faster (0.1 to 100): callers arrive, ring, talk,
    /// wait and are retried sooner, and the campaign dials faster, in the same proportions.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.1..=100.0).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a speed between 0.1 and 100 (1 is real time, 10 ten times faster)")),
    }
}

/// `seconds` of demo time at `speed`, as a config duration.
fn scaled(seconds: f64, speed: f64) -> String {
    format!("{}ms", ((seconds * 1000.0) / speed).round().max(1.0) as u64)
}

/// The demo's configuration: one account, inbound protected, one simulated campaign.
/// Written as the TOML a user would write, so the demo shows a real configuration.
pub fn demo_config(listen: SocketAddr, data_dir: PathBuf, seed: u64) -> Config {
    demo_config_at(listen, data_dir, seed, 1.0)
}

/// [`demo_config`] played `speed` times faster: every duration divided by it, the calls
/// per second multiplied by it.
pub fn demo_config_at(listen: SocketAddr, data_dir: PathBuf, seed: u64, speed: f64) -> Config {
    let t = |secs: f64| scaled(secs, speed);
    let text = format!(
        r#"
[server]
listen = "{listen}"
data_dir = {data_dir:?}

[[pools]]
name = "vapi"
limit = 10                       # a Vapi account's default
reserve = {{ inbound = 3 }}        # outbound never takes the last 3 lines

[[flows]]
name = "inbound"
pools = ["vapi"]
class = "inbound"
lease_ttl = "1h"
queue = {{ max_wait = "{max_wait}", max_len = 10 }}
overflow = {{ action = "voicemail" }}

[[flows]]
name = "outbound"
pools = ["vapi"]
class = "outbound"
lease_ttl = "1h"
overflow = {{ action = "busy" }}

[[campaigns]]
name = "demo"
flow = "outbound"
simulate = {{ answer_rate = 0.55, busy_rate = 0.1, voicemail_rate = 0.1, failure_rate = 0.02, ring_time = "{ring}", talk_min = "{talk_min}", talk_mean = "{talk_mean}", talk_max = "{talk_max}", limit = 10, cost_per_minute = 0.12, seed = {seed} }}
max_concurrency = 8
calls_per_second = {cps}
window = {{ start = "00:00", end = "24:00" }}
default_timezone = "America/New_York"
retry = {{ busy = "{busy}", no_answer = "{no_answer}", voicemail = "{voicemail}", failed = "{failed}", max_attempts = 3 }}
priority = 10
start = true
cooldown = "{cooldown}"
"#,
        data_dir = data_dir.display().to_string(),
        max_wait = t(30.0),
        ring = t(3.0),
        talk_min = t(8.0),
        talk_mean = t(30.0),
        talk_max = t(180.0),
        cps = (2.0 * speed).min(1000.0),
        busy = t(30.0),
        no_answer = t(120.0),
        voicemail = t(300.0),
        failed = t(60.0),
        cooldown = t(10.0),
    );
    Config::from_toml_str(&text, None).unwrap_or_else(|e| panic!("the demo configuration is invalid: {e}"))
}

/// `count` simulated leads: valid US and Canadian numbers spread over several time zones.
pub fn demo_leads(count: u32, seed: u64) -> serde_json::Value {
    const AREAS: [u16; 12] = [212, 305, 312, 404, 415, 503, 602, 617, 713, 206, 416, 604];
    let mut rng = Rng::new(seed ^ 0x1ead);
    let mut seen = std::collections::HashSet::new();
    let mut leads = Vec::new();
    while leads.len() < count as usize {
        let area = AREAS[(rng.next_u64() % AREAS.len() as u64) as usize];
        // Exchanges 201-999 without N11 codes, any line number: numbers that are valid
        // (the simulator calls nobody).
        let exchange = 201 + rng.next_u64() % 799;
        if exchange % 100 == 11 {
            continue;
        }
        let line = rng.next_u64() % 10_000;
        let phone = format!("+1{area}{exchange}{line:04}");
        if !seen.insert(phone.clone()) {
            continue;
        }
        leads.push(json!({
            "phone": phone,
            "name": format!("Lead {}", leads.len() + 1),
            "score": (rng.next_u64() % 100) as f64,
            "vars": { "plan": if rng.unit() < 0.3 { "gold" } else { "basic" } },
        }));
    }
    json!({ "leads": leads })
}

/// Runs the demo until Ctrl-C (or `--seconds`).
pub async fn run_demo(args: DemoArgs) -> ExitCode {
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("callgate-demo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&temp);
            temp.clone()
        }
    };
    let config = demo_config_at(args.listen, data_dir.clone(), args.seed, args.speed);
    let server = match Server::start(ServeOptions {
        config,
        config_path: None,
        listen: Some(args.listen),
        data_dir: Some(data_dir.clone()),
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = server.app.clone();
    let campaigns = app.campaigns.clone();
    let leads = demo_leads(args.leads, args.seed);
    let body = axum::body::Bytes::from(leads.to_string());
    match campaigns.import("demo", body, crate::campaign::ImportOptions::default()).await {
        Ok(r) => eprintln!("Imported {} simulated leads into campaign `demo`", r.added),
        Err(e) => eprintln!("error: cannot import the demo leads: {}", e.message),
    }
    let base = format!("http://{}", server.addr);
    eprintln!("callgate demo on {base}: one account of 10 lines, 3 held back for inbound callers");
    if args.speed != 1.0 {
        eprintln!("  played {}x faster than real time", args.speed);
    }
    eprintln!("  live page: open {base}/ in a browser");
    eprintln!("  terminal:  callgate top --server {base}");
    eprintln!("  progress:  curl -s {base}/v1/campaigns/demo");
    eprintln!("  lines:     curl -s {base}/v1/pools/vapi");
    eprintln!("  metrics:   curl -s {base}/metrics | grep callgate_");
    eprintln!("  events:    curl -sN {base}/v1/events");
    eprintln!("Ctrl-C stops it.\n");
    let stats = Arc::new(InboundStats::default());
    let callers = tokio::spawn(inbound_callers(
        app.governor.clone(),
        args.inbound_per_minute * args.speed,
        args.seed,
        args.speed,
        stats.clone(),
    ));
    let report = {
        let (app, stats, campaigns) = (app.clone(), stats.clone(), campaigns.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                println!("{}", status_line(&app, &stats, &campaigns));
            }
        })
    };
    let stop = async {
        match args.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    stop.await;
    callers.abort();
    report.abort();
    println!("{}", status_line(&app, &stats, &campaigns));
    server.stop().await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    ExitCode::SUCCESS
}

#[derive(Default)]
struct InboundStats {
    arrived: AtomicU64,
    answered: AtomicU64,
    waited: AtomicU64,
    overflowed: AtomicU64,
}

fn status_line(app: &crate::edges::api::App, s: &InboundStats, campaigns: &crate::campaign::Campaigns) -> String {
    let leases = app.governor.leases(Some("vapi")).unwrap_or_default();
    let by = |class: &str| leases.iter().filter(|l| &*l.class == class).count();
    let waiting = app.governor.pool("vapi").map(|p| p.waiting).unwrap_or(0);
    let v = campaigns.view("demo").ok().and_then(|v| serde_json::to_value(v).ok()).unwrap_or_default();
    let done: u64 = v["leads"]["done"].as_object().map_or(0, |m| m.values().filter_map(|x| x.as_u64()).sum());
    format!(
        "lines {:>2}/10: inbound {} outbound {} | waiting {} | callers {} answered {} waited {} overflowed {} | \
         campaign: {} pending, {} live, {} done, {} exhausted, {} attempts, connect {:.0}%, ${:.2}",
        leases.len(),
        by("inbound"),
        by("outbound") + by("callback"),
        waiting,
        s.arrived.load(Ordering::Relaxed),
        s.answered.load(Ordering::Relaxed),
        s.waited.load(Ordering::Relaxed),
        s.overflowed.load(Ordering::Relaxed),
        v["leads"]["pending"],
        v["live"],
        done,
        v["leads"]["exhausted"],
        v["attempts"],
        v["connect_rate"].as_f64().unwrap_or(0.0) * 100.0,
        v["cost_usd"].as_f64().unwrap_or(0.0),
    )
}

/// Callers arriving at random (Poisson), each talking for an exponential time (mean 40 s).
/// The callers are this task's own: aborting it hangs up on every one of them, and their
/// lines go back.
async fn inbound_callers(
    governor: Arc<crate::governor::Governor>,
    per_minute: f64,
    seed: u64,
    speed: f64,
    stats: Arc<InboundStats>,
) {
    let mut rng = Rng::new(seed ^ 0xca11);
    let mean_gap = 60.0 / per_minute.max(0.01);
    let mut calls = tokio::task::JoinSet::new();
    for n in 0u64.. {
        while calls.try_join_next().is_some() {}
        let gap = -mean_gap * (1.0 - rng.unit()).ln();
        tokio::time::sleep(Duration::from_secs_f64(gap.min(3600.0))).await;
        let talk = Duration::from_secs_f64((-40.0 * (1.0 - rng.unit()).ln()).clamp(5.0, 600.0) / speed);
        let (governor, stats) = (governor.clone(), stats.clone());
        calls.spawn(async move {
            stats.arrived.fetch_add(1, Ordering::Relaxed);
            let arrived_at = governor.now_ms();
            let req = AcquireRequest {
                target: Target::Flow("inbound".into()),
                key: Some(format!("demo-caller-{n}")),
                ttl_ms: None,
                max_wait_ms: None,
                wait_ms: (30_000.0 / speed) as u64,
                meta: None,
                edge: Edge::Demo,
            };
            let first = governor.acquire(req).await;
            match first {
                Ok(Answer::Granted(lease)) => {
                    if lease.granted_at_ms > arrived_at + 500 {
                        stats.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                    // The caller's line, held by a guard: a call cut short (the demo
                    // stopping, the task aborted) gives it back too.
                    let line = LeaseGuard::new(governor.clone(), lease.id);
                    tokio::time::sleep(talk).await;
                    let _ = line.release().await;
                }
                _ => {
                    stats.overflowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}
