//! `callgate top`: a live terminal view of a running server, redrawn as `/v1/events`
//! reports changes (at most once per `--interval`). It follows the stream across
//! disconnects with `Last-Event-ID`, so nothing is missed; when the server no longer has
//! what was missed it simply reads the state again.

use super::{status, Client, Conn};
use crate::out::{self, Failure};
use clap::Args;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::time::Duration;
use tokio::time::Instant;

/// Recent events shown under the state.
const RECENT: usize = 10;
/// One server-sent event larger than this is not callgate's: drop the connection.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// `callgate top`
#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    /// Redraw at most this often (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// Draw once and exit.
    #[arg(long, conflicts_with = "iterations")]
    once: bool,
    /// Exit after drawing this many frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: Option<u64>,
    /// One JSON object per frame, a line each, instead of the screen.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    callgate_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// What the view keeps between frames.
struct View {
    frames: u64,
    recent: VecDeque<Value>,
    counts: BTreeMap<String, u64>,
    screen: bool,
    json: bool,
}

impl View {
    async fn draw(&mut self, client: &Client) -> Result<(), Failure> {
        let state = status::gather(client).await?;
        self.frames += 1;
        if self.json {
            return out::line(json!({
                "frame": self.frames,
                "status": state,
                "recent_events": self.recent,
                "event_counts": self.counts,
            }));
        }
        let mut text = String::new();
        if self.screen {
            // Home and clear: the frame replaces the last one.
            text.push_str("\x1b[H\x1b[2J");
        } else if self.frames > 1 {
            text.push('\n');
        }
        text.push_str(&format!("callgate top · frame {} · Ctrl-C quits\n\n", self.frames));
        text.push_str(&status::text(&state));
        text.push_str("\n# Recent events\n");
        if self.recent.is_empty() {
            text.push_str("none yet\n");
        }
        for e in &self.recent {
            text.push_str(&event_line(e));
            text.push('\n');
        }
        if !self.counts.is_empty() {
            let counts: Vec<String> = self.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            text.push_str(&format!("since start: {}\n", counts.join(", ")));
        }
        out::print(&text)
    }

    fn seen(&mut self, event: Value) {
        let kind = event["type"].as_str().unwrap_or("event").to_string();
        *self.counts.entry(kind).or_default() += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }
}

/// `granted  inbound  key call-7  lease L7  vapi`
fn event_line(e: &Value) -> String {
    let mut parts = vec![format!("{:<16}", e["type"].as_str().unwrap_or("?"))];
    let holder = if e["lease"].is_object() { &e["lease"] } else { &e["ticket"] };
    let class = e["class"].as_str().or_else(|| holder["class"].as_str());
    if let Some(c) = class {
        parts.push(c.to_string());
    }
    if let Some(k) = e["key"].as_str().or_else(|| holder["key"].as_str()) {
        parts.push(format!("key {k}"));
    }
    if let Some(id) = holder["id"].as_str() {
        parts.push(id.to_string());
    }
    for k in ["pool", "reason", "breaker", "alert", "state"] {
        if let Some(v) = e[k].as_str() {
            parts.push(format!("{k} {v}"));
        }
    }
    parts.join("  ")
}

/// One parsed message of the stream: its id, its `event:` name and its data.
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Takes the complete messages off the front of `buf`.
fn messages(buf: &mut String) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut m = Message { id: None, event: None, data: String::new() };
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => m.id = Some(value.to_string()),
                "event" => m.event = Some(value.to_string()),
                "data" => m.data.push_str(value),
                _ => {}
            }
        }
        if m.id.is_some() || m.event.is_some() || !m.data.is_empty() {
            out.push(m);
        }
    }
    out
}

pub(crate) async fn run(args: TopArgs) -> Result<(), Failure> {
    let client = Client::new(&args.conn)?;
    let limit = if args.once { Some(1) } else { args.iterations };
    let mut view = View {
        frames: 0,
        recent: VecDeque::new(),
        counts: BTreeMap::new(),
        screen: !args.json && std::io::stdout().is_terminal(),
        json: args.json,
    };
    // Follow first, then read the state: a change between the two is redrawn, never lost.
    let mut stream = if limit == Some(1) { None } else { Some(client.events(None).await?) };
    view.draw(&client).await?;
    if limit.is_some_and(|l| view.frames >= l) {
        return Ok(());
    }
    let mut last_id: Option<String> = None;
    let mut last_draw = Instant::now();
    let mut dirty = false;
    loop {
        let resp = match stream.take() {
            Some(r) => r,
            None => match client.events(last_id.as_deref()).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("callgate top: {}; trying again", message(&e));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let mut resp = resp;
        let mut buf = String::new();
        loop {
            let redraw_at = last_draw + args.interval;
            let chunk = tokio::select! {
                c = resp.chunk() => c,
                _ = tokio::time::sleep_until(redraw_at), if dirty => {
                    dirty = false;
                    view.draw(&client).await?;
                    last_draw = Instant::now();
                    if limit.is_some_and(|l| view.frames >= l) {
                        return Ok(());
                    }
                    continue;
                }
            };
            let Ok(Some(chunk)) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            if buf.len() > MAX_EVENT_BYTES {
                break;
            }
            for m in messages(&mut buf) {
                if m.id.is_some() {
                    last_id = m.id.clone();
                }
                match m.event.as_deref() {
                    // The server could not replay what was missed: the next frame reads it.
                    Some("missed") | Some("lagged") => dirty = true,
                    _ => {
                        if let Ok(v) = serde_json::from_str::<Value>(&m.data) {
                            view.seen(v);
                            dirty = true;
                        }
                    }
                }
            }
        }
        // The stream ended (server restart, network): come back where it left off.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn message(f: &Failure) -> String {
    match f {
        Failure::Message(m) => m.clone(),
        Failure::Closed => "stdout closed".into(),
    }
}
