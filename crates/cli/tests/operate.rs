//! The commands that operate a running server (`status`, `top`, `pools`, `leases`,
//! `completions`, `man`, `dnc`), run as an operator runs them against the real binary.

mod support;

use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADMIN: &str = "admin-token-0123456789";
const CLIENT: &str = "client-token-0123456789";

const CONFIG: &str = r#"
[auth]
keys = [{ name = "ops", token = "admin-token-0123456789", role = "admin" },
        { name = "app", token = "client-token-0123456789", role = "client" }]

[[classes]]
name = "inbound"
priority = 50
[[classes]]
name = "outbound"
priority = 10

[[pools]]
name = "acct"
limit = 3
reserve = { inbound = 1 }

[[flows]]
name = "support"
pools = ["acct"]
class = "inbound"
queue = { max_wait = "10m", max_len = 5 }

[[flows]]
name = "campaign"
pools = ["acct"]
class = "outbound"
"#;

struct Running {
    _dir: tempfile::TempDir,
    _child: Child,
    base: String,
    http: reqwest::Client,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("callgate.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let (child, base) = support::start(&config, &dir.path().join("data")).await;
        Running { _dir: dir, _child: child, base, http: reqwest::Client::new() }
    }

    async fn acquire(&self, flow: &str, key: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}/v1/acquire", self.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "flow": flow, "key": key }))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
    }

    /// `callgate ARGS` against this server (via `CALLGATE_SERVER` and `CALLGATE_TOKEN`).
    fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_callgate"));
        c.args(args).env("CALLGATE_SERVER", &self.base).env("CALLGATE_TOKEN", token).kill_on_drop(true);
        c
    }

    async fn run(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let out = self.command(token, args).output().await.unwrap();
        result(out)
    }
}

fn result(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Two calls in a three-slot account (one inbound, one outbound), a third inbound call
/// holding the last slot, and a fourth waiting.
async fn busy_account() -> Running {
    let s = Running::start().await;
    assert_eq!(s.acquire("support", "in-1").await["decision"], "granted");
    assert_eq!(s.acquire("campaign", "out-1").await["decision"], "granted");
    assert_eq!(s.acquire("support", "in-2").await["decision"], "granted");
    assert_eq!(s.acquire("support", "in-3").await["decision"], "queued");
    s
}

#[tokio::test]
async fn status_shows_use_by_class_and_the_waiting_line() {
    let s = busy_account().await;
    let (code, out, err) = s.run(CLIENT, &["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["health"]["status"], "ok");
    let acct = &v["pools"][0];
    assert_eq!(
        (acct["name"].as_str(), acct["used"].as_u64(), acct["limit"].as_u64()),
        (Some("acct"), Some(3), Some(3))
    );
    assert_eq!(acct["used_by_class"], json!({ "inbound": 2, "outbound": 1 }));
    assert_eq!(v["waiting"].as_array().unwrap().len(), 1);
    assert_eq!(v["waiting"][0]["key"], "in-3");

    let (code, text, err) = s.run(CLIENT, &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("3/3/3"), "{text}");
    assert!(text.contains("inbound=2 outbound=1"), "{text}");
    assert!(text.lines().any(|l| l.contains("T") && l.contains("key in-3")), "{text}");

    // Without a token the server's own refusal is what the operator reads.
    let (code, _, err) = s.run("", &["status"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401") && err.contains("unauthorized"), "{err}");
}

#[tokio::test]
async fn pools_set_changes_a_limit_and_shows_the_servers_refusals() {
    let s = busy_account().await;
    let (code, out, err) = s.run(ADMIN, &["pools", "set", "acct", "--limit", "4"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("limit 4"), "{out}");
    assert_eq!(s.get("/v1/pools/acct").await["limit"], 4);
    // The waiting caller got the new slot.
    assert_eq!(s.get("/v1/pools/acct").await["used"], 4);

    let (code, out, err) = s.run(CLIENT, &["pools", "set", "acct", "--limit", "9"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("HTTP 403"), "{err}");
    assert_eq!(s.get("/v1/pools/acct").await["limit"], 4, "a refused change changes nothing");

    let (code, _, err) = s.run(ADMIN, &["pools", "set", "nope", "--limit", "2"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no pool named `nope`") && err.contains("unknown_pool"), "{err}");

    let (code, out, _) = s.run(ADMIN, &["pools", "list", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()[0]["limit"], 4);
}

#[tokio::test]
async fn leases_are_listed_and_released_by_id_or_key() {
    let s = busy_account().await;
    let (code, out, err) = s.run(ADMIN, &["leases", "list", "--pool", "acct", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = list.as_array().unwrap().iter().filter_map(|l| l["key"].as_str()).collect();
    assert_eq!(keys.len(), 3, "{list}");
    assert!(keys.contains(&"out-1"));
    let id = list.as_array().unwrap().iter().find(|l| l["key"] == "out-1").unwrap()["id"].as_str().unwrap().to_string();

    let (code, out, _) = s.run(ADMIN, &["leases", "release", &id]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("released"), "{out}");
    let (code, out, _) = s.run(ADMIN, &["leases", "release", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("not live"), "released twice frees once: {out}");
    let (code, out, _) = s.run(ADMIN, &["leases", "release", "--key", "in-1", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({ "released": true }));

    let (code, text, _) = s.run(ADMIN, &["leases", "list"]).await;
    assert_eq!(code, 0);
    assert!(!text.contains("out-1") && !text.contains("key in-1 "), "{text}");
    assert!(text.contains("key in-3"), "the waiting caller got a freed slot: {text}");
    // Neither or both of id and key is a usage error, before anything is sent.
    let (code, _, err) = s.run(ADMIN, &["leases", "release"]).await;
    assert_eq!(code, 2, "{err}");
}

/// The next line the command prints (within 30 s).
async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a line")
}

#[tokio::test]
async fn top_redraws_when_events_arrive() {
    let s = busy_account().await;
    let mut child = s
        .command(ADMIN, &["top", "--json", "--iterations", "2", "--interval", "0s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(first["frame"], 1);
    assert_eq!(first["status"]["pools"][0]["used"], 3);
    // A call ends: its slot goes to the caller in line, and top shows it.
    let r = s.http.delete(format!("{}/v1/leases?key=out-1", s.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert!(r.status().is_success());
    let second: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(second["frame"], 2);
    assert!(
        second["recent_events"].as_array().unwrap().iter().any(|e| e["type"] == "released"),
        "{}",
        second["recent_events"]
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "top ends after --iterations");

    let (code, text, err) = s.run(ADMIN, &["top", "--once"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("frame 1") && text.contains("# Pools") && !text.contains('\x1b'),
        "no screen codes in a pipe: {text}"
    );
}

#[tokio::test]
async fn output_to_a_closed_pipe_ends_quietly() {
    let s = busy_account().await;
    let commands: [&[&str]; 8] = [
        &["status", "--json"],
        &["status"],
        &["leases", "list", "--json"],
        &["pools", "list"],
        &["top", "--once"],
        &["completions", "bash"],
        // Printed with print! (the older commands: a closed stdout must not panic there either).
        &["config", "example"],
        &["plan", "lines", "--erlangs", "10", "--lines", "14", "--aht", "180s", "--answer-within", "20s"],
    ];
    for args in commands {
        let mut child = s.command(ADMIN, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // The reader is gone before the command writes anything (like `| head -c0`).
        drop(child.stdout.take());
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
        let (code, _, err) = result(out);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("failed printing"), "{args:?}: {err}");
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    let run =
        |args: &[&str]| result(std::process::Command::new(env!("CARGO_BIN_EXE_callgate")).args(args).output().unwrap());
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("status") && out.contains("leases") && out.contains("limit"), "{shell}: {out}");
    }
    let (code, man, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH callgate 1") && man.contains("status") && man.contains("top"), "{man}");
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callgate")).arg("openapi").output().unwrap();
    let (code, text, err) = result(out);
    assert_eq!(code, 0, "{err}");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"))
        .expect("docs/openapi.json");
    assert!(text == committed, "`callgate openapi` is not docs/openapi.json");
}

#[tokio::test]
async fn dnc_import_uploads_in_chunks_and_reports_bad_rows_by_their_line() {
    let s = Running::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("national.csv");
    // Row 1 is the header; row 4 is no number; row 6 is blank; row 8 repeats row 2.
    let csv = "phone,name\n+12125550101,A\n(305) 555-0102,B\nnot a number,C\n+13125550103,D\n\n+442079460958,E\n+12125550101,F\n";
    std::fs::write(&file, csv).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) =
        s.run(ADMIN, &["dnc", "import", path, "--list", "national", "--country", "US", "--chunk", "2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("national: 4 added, 1 already listed, 1 rejected (4 numbers on the list"), "{out}");
    assert!(out.contains("  row 4: "), "the file's own line: {out}");
    let (code, out, _) = s.run(CLIENT, &["dnc", "check", "+13055550102", "--list", "national"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("listed (source import:national.csv"), "{out}");
    let (code, _, err) = s.run(CLIENT, &["dnc", "add", "+13055550109"]).await;
    assert_eq!(code, 1, "a client key cannot write a list: {err}");
    assert!(err.contains("403"), "{err}");
    let (code, out, _) = s.run(ADMIN, &["dnc", "lists"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("national") && out.contains("4 numbers"), "{out}");
}
