//! Running the real `callgate` binary in tests: start it on a free port and learn the
//! address it listens on, so a test can SIGKILL it and start it again on the same data.

#![allow(dead_code)] // each test file uses some of these

pub mod oracle;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `callgate serve` with `config` and `data`; returns the child and its base URL.
pub async fn start(config: &Path, data: &Path) -> (Child, String) {
    start_with_env(config, data, &[]).await
}

/// [`start`] with more environment variables (e.g. the `*_env` secrets of a config).
pub async fn start_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start callgate");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("callgate listening on ") {
                return url.to_string();
            }
        }
        panic!("callgate exited before listening");
    })
    .await
    .expect("callgate starts");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
