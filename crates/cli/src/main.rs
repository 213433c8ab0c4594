//! The callgate command line: serve, config, plan, simulate.
#![forbid(unsafe_code)]

use callgate_config::Config;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
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

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, data_dir, log_json } => {
            init_logs(log_json);
            let config = match &config {
                Some(path) => match Config::from_path(path) {
                    Ok(c) => c,
                    Err(errors) => {
                        eprintln!("{errors}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::builtin_default(),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = callgate_server::ServeOptions { config, listen, data_dir };
            match runtime.block_on(callgate_server::serve(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
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
        Command::Plan(cmd) => report(callgate_plan::cli::run_plan(cmd)),
        Command::Simulate(args) => report(callgate_plan::cli::run_simulate(args)),
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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
