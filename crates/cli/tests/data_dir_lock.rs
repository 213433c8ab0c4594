//! One server per data directory: a second `callgate serve` on the same data refuses
//! to start and names the process that holds it (two servers would over-admit).

mod support;

use std::time::Duration;

const CONFIG: &str = r#"
[[pools]]
name = "acct"
limit = 2

[[flows]]
name = "calls"
pools = ["acct"]
class = "inbound"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let (mut first, base) = support::start(&config, &data).await;
    let pid = first.id().expect("running");

    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), second).await.expect("refused at once").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server must not start: {stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "names the holder: {stderr}");

    // The first one serves on.
    let client = reqwest::Client::new();
    let resp = client.post(format!("{base}/v1/acquire")).body(r#"{"flow":"calls"}"#).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A killed holder leaves no stale lock behind: the kernel drops it with the process.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let (mut again, _) = support::start(&config, &data).await;
    again.start_kill().unwrap();
}
