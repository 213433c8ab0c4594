//! The callgate command line: serve, config, plan, simulate, history, forecast, campaign,
//! demo, and the commands that operate a running server (status, top, pools, leases).
#![forbid(unsafe_code)]

mod out;
mod remote;

use callgate_config::Config;
use clap::{CommandFactory, Parser, Subcommand};
use out::Failure;
use std::net::SocketAddr;
use std::path::PathBuf;

/// mimalloc rather than the system allocator: the server allocates per request and per
/// event on several threads, where glibc's malloc spent about a tenth of its CPU
/// (BENCHMARKS.md, "HTTP with durability on").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// callgate: a concurrency control plane for AI voice agents.
#[derive(Parser, Debug)]
#[command(name = "callgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (no --config: the built-in default, a Vapi-like account of 10 slots).
    Serve {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen here instead of `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep the journal here instead of `server.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Log as JSON lines: every line on stderr is one JSON object.
        #[arg(long)]
        log_json: bool,
        /// Write one JSON line per decision (grant, queue, reject, release, expiry) under
        /// the log target `callgate::decision`, once durable (as `[server] decision_log`).
        #[arg(long)]
        decision_log: bool,
    },
    /// Check or print configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Capacity planning: lines for a service level, campaign duration, cost.
    #[command(subcommand)]
    Plan(callgate_plan::cli::PlanCommand),
    /// Run a scenario (a config plus traffic) through the real ledger on a virtual clock.
    Simulate(callgate_plan::cli::SimulateArgs),
    /// Search a scenario's policy space (its [tune] section) with the simulator: the best
    /// policy as a diff, and the trade-off frontier.
    Tune(callgate_plan::cli::TuneArgs),
    /// Call history for forecasts: import calls of the past, mark days to ignore.
    History {
        #[command(subcommand)]
        command: callgate_forecast::cli::HistoryCommand,
    },
    /// Forecast arrivals, handling time and lines per 15 minutes from the call history
    /// (`--json`, `--svg FILE`, or `--backtest` for its accuracy).
    Forecast(callgate_forecast::cli::ForecastArgs),
    /// Outbound campaigns on a running server: import leads, status, start, pause, resume, stop.
    Campaign {
        #[command(subcommand)]
        command: callgate_server::campaign::cli::CampaignCommand,
    },
    /// Suppression (do-not-call) lists on a running server: import, add, remove, check.
    Dnc {
        #[command(subcommand)]
        command: callgate_server::campaign::cli::DncCommand,
    },
    /// Watch callgate share one account between simulated inbound callers and a campaign.
    Demo(callgate_server::demo::DemoArgs),
    /// Everything a running server knows, on one page: health, pools (used/cap/limit, use
    /// by class), the waiting line, campaigns, breakers, alerts.
    Status(remote::StatusArgs),
    /// Exit 0 when a running server is healthy (`GET /healthz`), 1 when not: for
    /// container health checks and scripts.
    Health(remote::status::HealthArgs),
    /// A live view of a running server, redrawn as its events arrive.
    Top(remote::TopArgs),
    /// A running server's pools: list them, change a limit.
    Pools {
        #[command(subcommand)]
        command: remote::PoolsCommand,
    },
    /// A running server's live leases: list them, release one.
    Leases {
        #[command(subcommand)]
        command: remote::LeasesCommand,
    },
    /// Print a shell completion script (e.g. `callgate completions bash > /etc/bash_completion.d/callgate`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `callgate man | man -l -`.
    Man,
    /// Print the API's OpenAPI 3.1 document (what a server serves at `/openapi.json`).
    Openapi,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Exit 0 when FILE is valid; otherwise print each problem with its line and exit 1.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the commented example configuration.
    Example,
}

/// A line of the command itself (not of `tracing`) on stderr: text, or with `--log-json`
/// a JSON object shaped like the log's own lines, so that every line parses.
/// Whether `file` is a simulation scenario (a configuration with `[sim]`, `[[arrivals]]`
/// or `[pricing]`), which `config check` checks as `callgate simulate --check` does. A file
/// that cannot be read is not: the configuration check reports why.
fn is_scenario(file: &std::path::Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| callgate_plan::sim::Scenario::is_scenario_text(&t))
}

fn say(json: bool, level: &str, message: &str) {
    if json {
        let line = serde_json::json!({ "level": level, "fields": { "message": message }, "target": "callgate" });
        eprintln!("{line}");
    } else if level == "ERROR" {
        eprintln!("error: {message}");
    } else if level == "WARN" {
        eprintln!("warning: {message}");
    } else {
        eprintln!("{message}");
    }
}

/// Logs to stderr (RUST_LOG, else `default_level`), the decision log (as JSON lines,
/// whatever RUST_LOG says) when `decisions`, and, with `[telemetry] otlp_endpoint`,
/// callgate's spans over OTLP. Keep the returned guard until exit: dropping it sends the
/// last spans.
fn init_logs(
    json: bool,
    decisions: bool,
    default_level: &str,
    telemetry: &callgate_config::TelemetryConfig,
) -> Option<callgate_server::telemetry::OtlpGuard> {
    use callgate_server::decision_log::TARGET as DECISIONS;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Decision lines go through their own layer only.
    let filter = match format!("{DECISIONS}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let decision_log = decisions.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(Targets::new().with_target(DECISIONS, LevelFilter::INFO))
    });
    let (otlp, guard) = match &telemetry.otlp_endpoint {
        Some(endpoint) => match callgate_server::telemetry::otlp(endpoint, telemetry.service()) {
            // The spans of decisions and webhooks, whatever RUST_LOG says about logs.
            Ok((layer, guard)) => (Some(layer.with_filter(callgate_server::telemetry::span_targets())), Some(guard)),
            Err(e) => {
                say(json, "WARN", &format!("cannot start the OTLP exporter ({e}); no traces are exported"));
                (None, None)
            }
        },
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(decision_log).with(otlp).init();
    guard
}

fn main() -> ExitCode {
    out::quiet_on_closed_stdout();
    let cli = Cli::parse();
    match cli.command {
        Command::Status(args) => remote_command(remote::status::run(args)),
        Command::Health(args) => remote_command(remote::status::run_health(args)),
        Command::Top(args) => remote_command(remote::top::run(args)),
        Command::Pools { command } => remote_command(remote::pools::run(command)),
        Command::Leases { command } => remote_command(remote::leases::run(command)),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "callgate", &mut text);
            finish(out::print(&String::from_utf8_lossy(&text)))
        }
        Command::Man => {
            let mut text = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut text) {
                Ok(()) => finish(out::print(&String::from_utf8_lossy(&text))),
                Err(e) => finish(Err(Failure::Message(format!("cannot render the man page: {e}")))),
            }
        }
        Command::Openapi => finish(out::print(&callgate_server::edges::api::openapi::document())),
        Command::Serve { config, listen, data_dir, log_json, decision_log } => {
            let config_path = config.clone();
            let mut config = match &config {
                Some(path) => match Config::from_path(path) {
                    Ok(c) => c,
                    Err(errors) if log_json => {
                        say(true, "ERROR", &errors.to_string());
                        return ExitCode::from(2);
                    }
                    Err(errors) => {
                        eprintln!("{errors}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::builtin_default(),
            };
            config.server.decision_log |= decision_log;
            let _traces = init_logs(log_json, config.server.decision_log, "info", &config.telemetry);
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let config_path = config_path.map(|p| std::path::absolute(&p).unwrap_or(p));
            let opts = callgate_server::ServeOptions { config, config_path, listen, data_dir };
            // Tools read the address from this line (`callgate listening on http://…`),
            // as text or as the `message` of a JSON line.
            let announce = |addr| say(log_json, "INFO", &format!("callgate listening on http://{addr}"));
            match runtime.block_on(callgate_server::serve_announced(opts, announce)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say(log_json, "ERROR", &e.to_string());
                    ExitCode::from(2)
                }
            }
        }
        Command::Config { command: ConfigCommand::Check { file, json } } if is_scenario(&file) => {
            // A simulation scenario: a configuration plus its traffic (and its [tune]
            // search), checked whole.
            match callgate_plan::tune::check_file(&file) {
                Ok(summary) => {
                    if json {
                        println!("{}", serde_json::json!({ "ok": true, "file": file, "summary": summary }));
                    } else {
                        println!("{}: {summary}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    if json {
                        let list: Vec<_> = e.message.lines().map(|m| serde_json::json!({ "message": m })).collect();
                        println!("{}", serde_json::json!({ "ok": false, "file": file, "errors": list }));
                    } else {
                        eprintln!("{}", e.message);
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config { command: ConfigCommand::Check { file, json } } => match callgate_config::check_file(&file) {
            Ok(summary) => {
                if json {
                    println!("{}", serde_json::json!({ "ok": true, "file": file, "summary": summary.to_string() }));
                } else {
                    println!("{}: {summary}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                if json {
                    let list: Vec<_> = errors
                        .iter()
                        .map(|e| serde_json::json!({ "line": e.line, "field": e.field, "message": e.message }))
                        .collect();
                    println!("{}", serde_json::json!({ "ok": false, "file": file, "errors": list }));
                } else {
                    eprintln!("{errors}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Campaign { command } => match runtime() {
            Ok(rt) => rt.block_on(callgate_server::campaign::cli::run_campaign(command)),
            Err(code) => code,
        },
        Command::Dnc { command } => match runtime() {
            Ok(rt) => rt.block_on(callgate_server::campaign::cli::run_dnc(command)),
            Err(code) => code,
        },
        Command::Demo(args) => {
            // The demo prints who holds the lines; logs below warnings would drown it.
            let _traces = init_logs(false, false, "warn", &Default::default());
            match runtime() {
                Ok(rt) => rt.block_on(callgate_server::demo::run_demo(args)),
                Err(code) => code,
            }
        }
        Command::Plan(cmd) => report(callgate_plan::cli::run_plan(cmd)),
        Command::Simulate(args) => report(callgate_plan::cli::run_simulate(args)),
        Command::Tune(args) => report(callgate_plan::cli::run_tune(args)),
        Command::History { command } => report(callgate_forecast::cli::run_history(command)),
        Command::Forecast(args) => report(callgate_forecast::cli::run_forecast(args)),
        Command::Config { command: ConfigCommand::Example } => {
            print!("{}", callgate_config::EXAMPLE);
            ExitCode::SUCCESS
        }
    }
}

/// Prints a command's error and turns it into the exit code.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // plan and simulate write only to stdout: its reader stopped reading.
        Err(e) if e.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operating command on a small runtime.
fn remote_command(f: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => finish(rt.block_on(f)),
        Err(e) => finish(Err(Failure::Message(format!("cannot start the runtime: {e}")))),
    }
}

/// The exit of a command: 0, quietly 0 when stdout was closed, or the problem and 1.
fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Message(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}
