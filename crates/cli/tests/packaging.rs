//! The configuration the container image and the systemd unit ship
//! (deploy/docker/callgate.toml): its tokens come from the environment, and the
//! container's health check (`callgate health`) tells a healthy server from none.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker/callgate.toml")
}

fn callgate(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(args)
        .env_remove("CALLGATE_TOKEN")
        .env_remove("CALLGATE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_shipped_config_refuses_to_start_without_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = callgate(
        &[
            "serve",
            "--config",
            shipped().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CALLGATE_ADMIN_TOKEN") && err.contains("not set"), "{err}");
}

#[tokio::test]
async fn the_shipped_config_takes_its_tokens_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CALLGATE_ADMIN_TOKEN", "admin-from-env-0123456789"),
        ("CALLGATE_CLIENT_TOKEN", "client-from-env-0123456789"),
    ];
    let (_server, base) = support::start_with_env(&shipped(), &dir.path().join("data"), &env).await;

    let (code, out, err) = callgate(&["health", "--server", &base], &[]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
    let (code, _, err) = callgate(&["status", "--server", &base], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, out, err) =
        callgate(&["status", "--json", "--server", &base], &[("CALLGATE_TOKEN", "admin-from-env-0123456789")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\":\"vapi\""), "{out}");

    // Nothing listening: the health check fails.
    drop(_server);
    let (code, _, err) = callgate(&["health", "--server", "http://127.0.0.1:9"], &[]);
    assert_eq!(code, 1, "{err}");
}
