//! `callgate demo`: it says where to watch, and plays faster with `--speed`.

use std::process::Command;

#[test]
fn the_demo_says_where_the_live_page_is_and_plays_faster() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["demo", "--listen", "127.0.0.1:0", "--seconds", "1", "--leads", "50", "--speed", "20", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let page = err.lines().find(|l| l.contains("live page:")).unwrap_or_else(|| panic!("no live page line in:\n{err}"));
    assert!(page.contains("http://127.0.0.1:") && page.contains("/ in a browser"), "{page}");
    assert!(err.contains("20x faster"), "{err}");
    // The last status line is printed on the way out.
    assert!(String::from_utf8_lossy(&out.stdout).contains("lines "), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_speed_out_of_range_is_refused_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate")).args(["demo", "--speed", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0.1 and 100"));
}
