// Long file: the command line of campaigns and of suppression lists share one HTTP client and the chunked CSV upload.
//! `callgate campaign …`: the command line for campaigns, talking to a running server
//! through the HTTP API (`--server URL` or `$CALLGATE_SERVER`, default
//! `http://127.0.0.1:7700`; `--token` or `$CALLGATE_TOKEN` when the server has keys).
//!
//! The binary wires it as `Command::Campaign { #[command(subcommand)] command:
//! CampaignCommand }` and runs `run_campaign(command).await`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the server is.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The callgate server's base URL.
    #[arg(long, env = "CALLGATE_SERVER", default_value = "http://127.0.0.1:7700")]
    pub server: String,
    /// An API key (default: the CALLGATE_TOKEN environment variable).
    #[arg(long)]
    pub token: Option<String>,
}

/// `callgate campaign …`
#[derive(Subcommand, Debug, Clone)]
pub enum CampaignCommand {
    /// Import leads from a CSV file (a header row with a phone column; name, timezone,
    /// score, country and any other columns, which become the assistant's variables).
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The campaign to add them to.
        #[arg(long)]
        campaign: String,
        /// The country of numbers written without a country code (e.g. US).
        #[arg(long)]
        country: Option<String>,
        /// Rows per request.
        #[arg(long, default_value_t = 5000)]
        chunk: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Show a campaign's progress.
    Status {
        /// The campaign.
        name: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// List the campaigns.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Create the campaigns of a file: TOML with `[[campaigns]]` tables, or JSON (one
    /// campaign or an array).
    Create {
        /// The file.
        file: PathBuf,
        /// Print the answers as JSON.
        #[arg(long)]
        json: bool,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Start dialing (a campaign starts paused unless its config says `start = true`).
    Start {
        /// The campaign.
        name: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Stop placing new calls; calls in progress go on.
    Pause {
        /// The campaign.
        name: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Dial again after a pause.
    Resume {
        /// The campaign.
        name: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// End the campaign for good (calls in progress go on).
    Stop {
        /// The campaign.
        name: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
}

/// `callgate dnc …`: suppression (do-not-call) lists on a running server.
#[derive(Subcommand, Debug, Clone)]
pub enum DncCommand {
    /// Import numbers from a CSV file (a header row with a phone column, or one number a
    /// line) into a list, in chunks, with a progress bar; refused rows are listed with
    /// their row numbers.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The list (`internal`: the one every campaign honours and opt-outs go to).
        #[arg(long, default_value = "internal")]
        list: String,
        /// The country of numbers written without a country code (e.g. US).
        #[arg(long)]
        country: Option<String>,
        /// Rows per request.
        #[arg(long, default_value_t = 100_000)]
        chunk: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Put one number on a list.
    Add {
        /// The number, E.164.
        number: String,
        /// The list.
        #[arg(long, default_value = "internal")]
        list: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Take one number off a list.
    Remove {
        /// The number, E.164.
        number: String,
        /// The list.
        #[arg(long, default_value = "internal")]
        list: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Whether a number is on a list, with the entry's source and time.
    Check {
        /// The number, E.164.
        number: String,
        /// The list.
        #[arg(long, default_value = "internal")]
        list: String,
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
    /// Every list with its size.
    Lists {
        /// Where the server is.
        #[command(flatten)]
        conn: ServerArgs,
    },
}

/// Runs a `callgate dnc` command; prints results to stdout and problems to stderr.
pub async fn run_dnc(cmd: DncCommand) -> ExitCode {
    exit_code(dnc(cmd).await)
}

async fn dnc(cmd: DncCommand) -> Result<(), String> {
    let entry = |v: &Value| {
        format!(
            "{} on `{}`: {}{}",
            v["number"].as_str().unwrap_or(""),
            v["list"].as_str().unwrap_or(""),
            if v["listed"] == true { "listed" } else { "not listed" },
            v["source"].as_str().map(|s| format!(" (source {s}, at {} ms)", v["added_at_ms"])).unwrap_or_default()
        )
    };
    match cmd {
        DncCommand::Import { file, list, country, chunk, json, conn } => {
            dnc_import(&Client::new(&conn), &file, &list, country.as_deref(), chunk.max(1), json).await
        }
        DncCommand::Add { number, list, conn } => {
            let v = Client::new(&conn).post(&format!("/v1/dnc/{}/{}", encode(&list), encode(&number)), None).await?;
            println!("{}", entry(&v));
            Ok(())
        }
        DncCommand::Remove { number, list, conn } => {
            let client = Client::new(&conn);
            let url = format!("{}/v1/dnc/{}/{}", client.base, encode(&list), encode(&number));
            let v = client.send(client.http.delete(url)).await?;
            println!("{}", entry(&v));
            Ok(())
        }
        DncCommand::Check { number, list, conn } => {
            let v = Client::new(&conn).get(&format!("/v1/dnc/{}?number={}", encode(&list), encode(&number))).await?;
            println!("{}", entry(&v));
            Ok(())
        }
        DncCommand::Lists { conn } => {
            let v = Client::new(&conn).get("/v1/dnc").await?;
            for l in v.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:>10} numbers  version {}",
                    l["list"].as_str().unwrap_or(""),
                    l["numbers"],
                    l["version"]
                );
            }
            Ok(())
        }
    }
}

/// The progress bar of an import of `total` rows (hidden when the output is JSON).
fn progress_bar(total: u64, hidden: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} rows {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if hidden {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// One chunk of a CSV upload: the file's header row (if any, ending in a newline), then
/// the chunk's rows as they stand in the file.
fn chunk_body(header: &[u8], rows: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(header.len() + rows.len() + 1);
    body.extend_from_slice(header);
    if !header.is_empty() && !header.ends_with(b"\n") {
        body.push(b'\n');
    }
    body.extend_from_slice(rows);
    body
}

/// Sends a list's CSV file in chunks of `chunk` rows (each with the header row, when the
/// file has one, and the row offset that keeps row numbers those of the file).
async fn dnc_import(
    client: &Client,
    file: &std::path::Path,
    list: &str,
    country: Option<&str>,
    chunk: usize,
    json_out: bool,
) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if let Some(row) = callgate_dialer::import::unclosed_quote(&bytes) {
        return Err(format!("{}: {}", file.display(), callgate_dialer::import::unclosed_quote_message(row)));
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(&bytes[..]);
    let lines = callgate_dialer::import::LineIndex::new(&bytes);
    let mut starts: Vec<(usize, u64)> = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut header_end: Option<usize> = None;
    loop {
        let pos = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let p = record.position().unwrap_or(&pos);
                // A first row without a digit is the header row (a number has digits).
                if starts.is_empty() && header_end.is_none() && !record.iter().flatten().any(u8::is_ascii_digit) {
                    header_end = Some(reader.position().byte() as usize);
                    continue;
                }
                starts.push((lines.record_start(p.byte()) as usize, lines.line(p.byte())));
            }
            Ok(false) => break,
            Err(_) => continue,
        }
    }
    let total = starts.len() as u64;
    if starts.is_empty() {
        return Err(format!("{}: no numbers in it", file.display()));
    }
    let header = &bytes[..header_end.unwrap_or(0)];
    let header_lines =
        if header_end.is_some() { lines.line(header_end.unwrap_or(0) as u64).saturating_sub(1) } else { 0 };
    let bar = progress_bar(total, json_out);
    let mut report = json!({ "added": 0, "duplicates": 0, "rejected": 0, "rejected_rows": [], "numbers": 0 });
    for (k, group) in starts.chunks(chunk).enumerate() {
        let start = group[0].0;
        let end = starts.get((k + 1) * chunk).map_or(bytes.len(), |s| s.0);
        let body = chunk_body(header, &bytes[start..end]);
        let offset = group[0].1.saturating_sub(header_lines + 1);
        let mut url = format!("/v1/dnc/{}?row_offset={offset}&source={}", encode(list), encode(&source_of(file)));
        if let Some(c) = country {
            url.push_str(&format!("&country={}", encode(c)));
        }
        let req = client.http.post(format!("{}{url}", client.base)).header("content-type", "text/csv").body(body);
        let part = client.send(req).await.inspect_err(|_| bar.abandon())?;
        for k in ["added", "duplicates", "rejected"] {
            report[k] = json!(report[k].as_u64().unwrap_or(0) + part[k].as_u64().unwrap_or(0));
        }
        report["numbers"] = part["numbers"].clone();
        if let (Some(all), Some(more)) = (report["rejected_rows"].as_array_mut(), part["rejected_rows"].as_array()) {
            all.extend(more.iter().take(1000usize.saturating_sub(all.len())).cloned());
        }
        bar.inc(group.len() as u64);
        bar.set_message(format!("{} added", report["added"]));
    }
    // The bar's own clock (it is not the server's: this is the operator's wait).
    let took = bar.elapsed();
    bar.finish_and_clear();
    if json_out {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{list}: {} added, {} already listed, {} rejected ({} numbers on the list; {:.1}s)",
        report["added"],
        report["duplicates"],
        report["rejected"],
        report["numbers"],
        took.as_secs_f64()
    );
    let rejected = report["rejected_rows"].as_array().cloned().unwrap_or_default();
    for r in rejected.iter().take(20) {
        println!("  row {}: {}", r["row"], r["reason"].as_str().unwrap_or(""));
    }
    if rejected.len() > 20 {
        println!("  … and {} more rejected rows (--json lists them)", rejected.len() - 20);
    }
    Ok(())
}

/// The source recorded with each imported entry: `import:` and the file's name.
fn source_of(file: &std::path::Path) -> String {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("import:{}", name.chars().take(150).collect::<String>())
}

struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(conn: &ServerArgs) -> Client {
        Client {
            base: conn.server.trim_end_matches('/').to_string(),
            token: conn.token.clone().or_else(|| std::env::var("CALLGATE_TOKEN").ok()).filter(|t| !t.is_empty()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap_or_default(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            Err(format!("{status}: {msg}"))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = self.http.post(format!("{}{path}", self.base));
        self.send(match body {
            Some(b) => req.json(&b),
            None => req,
        })
        .await
    }
}

/// Runs a `callgate campaign` command; prints results to stdout and problems to stderr.
pub async fn run_campaign(cmd: CampaignCommand) -> ExitCode {
    exit_code(run(cmd).await)
}

/// Success, or the problem on stderr and a failure exit.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: CampaignCommand) -> Result<(), String> {
    match cmd {
        CampaignCommand::Import { file, campaign, country, chunk, json, conn } => {
            import(&Client::new(&conn), &file, &campaign, country.as_deref(), chunk.max(1), json).await
        }
        CampaignCommand::Status { name, json, conn } => {
            let v = Client::new(&conn).get(&format!("/v1/campaigns/{}", encode(&name))).await?;
            if json {
                println!("{v}");
            } else {
                print!("{}", status_text(&v));
            }
            Ok(())
        }
        CampaignCommand::List { json, conn } => {
            let v = Client::new(&conn).get("/v1/campaigns").await?;
            if json {
                println!("{v}");
            } else {
                for c in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<8} priority {:<4} live {:<4} scheduled {}{}",
                        c["name"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or(""),
                        c["priority"],
                        c["live"],
                        c["scheduled"],
                        c["paused_reason"].as_str().map(|r| format!("  ({r})")).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        CampaignCommand::Create { file, json, conn } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let list = campaigns_of(&text, &file)?;
            let client = Client::new(&conn);
            for c in list {
                let v = client.post("/v1/campaigns", Some(c)).await?;
                if json {
                    println!("{v}");
                } else {
                    println!("campaign `{}`: {}", v["name"].as_str().unwrap_or(""), v["state"].as_str().unwrap_or(""));
                }
            }
            Ok(())
        }
        CampaignCommand::Start { name, conn } => act(&Client::new(&conn), &name, "start").await,
        CampaignCommand::Pause { name, conn } => act(&Client::new(&conn), &name, "pause").await,
        CampaignCommand::Resume { name, conn } => act(&Client::new(&conn), &name, "resume").await,
        CampaignCommand::Stop { name, conn } => act(&Client::new(&conn), &name, "stop").await,
    }
}

async fn act(client: &Client, name: &str, action: &str) -> Result<(), String> {
    let v = client.post(&format!("/v1/campaigns/{}/{action}", encode(name)), None).await?;
    println!("campaign `{name}`: {}", v["state"].as_str().unwrap_or("?"));
    Ok(())
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The campaigns of a TOML (`[[campaigns]]`) or JSON file, as API bodies.
fn campaigns_of(text: &str, file: &std::path::Path) -> Result<Vec<Value>, String> {
    // JSON by its extension or its first character; but `[[campaigns]]` starts with `[`
    // too, so a `.toml` file (or one that is not JSON) is read as TOML.
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let looks_json = text.trim_start().starts_with('{')
        || (text.trim_start().starts_with('[') && serde_json::from_str::<Value>(text).is_ok());
    if ext == "json" || (ext != "toml" && looks_json) {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{}: {e}", file.display()))?;
        return Ok(match v {
            Value::Array(list) => list,
            one => vec![one],
        });
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        campaigns: Vec<callgate_config::CampaignConfig>,
    }
    let f: File = toml::from_str(text).map_err(|e| format!("{}: {e}", file.display()))?;
    if f.campaigns.is_empty() {
        return Err(format!("{}: no [[campaigns]] table", file.display()));
    }
    Ok(f.campaigns.iter().map(super::view::config_json).collect())
}

/// Sends a CSV file in chunks of `chunk` rows, each with the header row and the row offset
/// that keeps row numbers those of the file; shows a progress bar on a terminal.
async fn import(
    client: &Client,
    file: &std::path::Path,
    campaign: &str,
    country: Option<&str>,
    chunk: usize,
    json_out: bool,
) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    // Refused before any chunk is sent: the chunks before the open quote would be imported.
    if let Some(row) = callgate_dialer::import::unclosed_quote(&bytes) {
        return Err(format!("{}: {}", file.display(), callgate_dialer::import::unclosed_quote_message(row)));
    }
    // Where each record starts (byte and line), so chunks are slices of the file itself.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(&bytes[..]);
    reader.headers().map_err(|e| format!("{}: cannot read the header row: {e}", file.display()))?;
    let lines = callgate_dialer::import::LineIndex::new(&bytes);
    let mut starts: Vec<(usize, u64)> = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let pos = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                let p = record.position().unwrap_or(&pos);
                starts.push((lines.record_start(p.byte()) as usize, lines.line(p.byte())));
            }
            Ok(false) => break,
            // The server reports the broken row; keep the bytes in the chunk.
            Err(_) => continue,
        }
    }
    let total = starts.len() as u64;
    let Some(&(first_byte, first_line)) = starts.first() else {
        return Err(format!("{}: no rows after the header", file.display()));
    };
    let header = &bytes[..first_byte];
    let header_lines = first_line - 1;
    let bar = progress_bar(total, json_out);
    let mut report =
        json!({ "added": 0, "skipped": 0, "rejected": 0, "skipped_rows": [], "rejected_rows": [], "truncated": false });
    for (k, group) in starts.chunks(chunk).enumerate() {
        let start = group[0].0;
        let end = starts.get((k + 1) * chunk).map_or(bytes.len(), |s| s.0);
        let body = chunk_body(header, &bytes[start..end]);
        // The chunk's first row sits right under the header; the offset moves it back to
        // its line in the file.
        let offset = group[0].1.saturating_sub(header_lines + 1);
        let mut url = format!("/v1/campaigns/{}/leads?row_offset={offset}", encode(campaign));
        if let Some(c) = country {
            url.push_str(&format!("&country={}", encode(c)));
        }
        let req = client.http.post(format!("{}{url}", client.base)).header("content-type", "text/csv").body(body);
        let part = client.send(req).await.inspect_err(|_| bar.abandon())?;
        for k in ["added", "skipped", "rejected"] {
            report[k] = json!(report[k].as_u64().unwrap_or(0) + part[k].as_u64().unwrap_or(0));
        }
        for k in ["skipped_rows", "rejected_rows"] {
            if let (Some(all), Some(more)) = (report[k].as_array_mut(), part[k].as_array()) {
                all.extend(more.iter().cloned());
            }
        }
        if part["truncated"] == true {
            report["truncated"] = json!(true);
        }
        bar.inc(group.len() as u64);
        bar.set_message(format!("{} added", report["added"]));
    }
    bar.finish_and_clear();
    if json_out {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{}: {} added, {} skipped as duplicates, {} rejected",
        campaign, report["added"], report["skipped"], report["rejected"]
    );
    let rejected = report["rejected_rows"].as_array().cloned().unwrap_or_default();
    for r in rejected.iter().take(20) {
        println!("  row {}: {}", r["row"], r["reason"].as_str().unwrap_or(""));
    }
    if rejected.len() > 20 {
        println!("  … and {} more rejected rows (--json lists them)", rejected.len() - 20);
    }
    Ok(())
}

/// The text of `callgate campaign status`.
pub fn status_text(v: &Value) -> String {
    let n = |k: &str| v["leads"][k].as_u64().unwrap_or(0);
    let by = |k: &str| -> String {
        v["leads"][k]
            .as_object()
            .map(|m| m.iter().map(|(o, c)| format!("{o} {c}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let done: u64 = v["leads"]["done"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let mut out = String::new();
    out.push_str(&format!(
        "{}  {}  (flow {}, class {}, priority {})\n",
        v["name"].as_str().unwrap_or(""),
        v["state"].as_str().unwrap_or(""),
        v["flow"].as_str().unwrap_or(""),
        v["class"].as_str().unwrap_or(""),
        v["priority"]
    ));
    if let Some(why) = v["unavailable"].as_str() {
        out.push_str(&format!("cannot dial: {why}\n"));
    }
    if let Some(why) = v["paused_reason"].as_str() {
        out.push_str(&format!("paused by callgate: {why}\n(fix the account, then `callgate campaign resume`)\n"));
    }
    out.push_str(&format!(
        "leads    {} total: {} pending, {} dialing, {} in call, {} done ({}), {} failed, {} exhausted, {} suppressed\n",
        n("total"),
        n("pending"),
        n("dialing"),
        n("in_call"),
        done,
        by("done"),
        n("failed"),
        n("exhausted"),
        n("suppressed")
    ));
    out.push_str(&format!(
        "calls    {} attempts, {} refused by the provider, connect rate {:.0}%, average talk {}, {} per hour, {} live\n",
        v["attempts"],
        v["refusals"],
        v["connect_rate"].as_f64().unwrap_or(0.0) * 100.0,
        human(v["avg_talk_ms"].as_u64().unwrap_or(0)),
        v["calls_per_hour"],
        v["live"]
    ));
    let eta = match v["eta_ms"].as_u64() {
        Some(ms) => format!("in about {}", human(ms)),
        None if v["finished"] == true => "finished".into(),
        None => "unknown yet".into(),
    };
    out.push_str(&format!("finish   {eta}; cost so far ${:.2}\n", v["cost_usd"].as_f64().unwrap_or(0.0)));
    out
}

fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
