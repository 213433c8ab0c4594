//! `callgate config check` and `callgate config example`, as a user runs them.

use std::process::Command;

fn callgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate")).args(args).output().expect("run callgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_printed_example_passes_the_check() {
    let (code, example, _) = callgate(&["config", "example"]);
    assert_eq!(code, 0);
    assert!(example.lines().filter(|l| l.trim_start().starts_with('#')).count() > 20, "the example explains itself");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, example).unwrap();
    let (code, out, err) = callgate(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn a_bad_file_is_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[pools]]\nname = \"acct\"\nlimit = 3\nreserve = { inbound = 5 }\n\n[[flows]]\nname = \"f\"\npools = [\"nope\"]\nclass = \"inbound\"\n",
    )
    .unwrap();
    let (code, out, err) = callgate(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let file = path.display().to_string();
    assert!(err.lines().any(|l| l.starts_with(&format!("{file}:4:")) && l.contains("reserve")), "{err}");
    assert!(err.lines().any(|l| l.starts_with(&format!("{file}:8:")) && l.contains("flows[0].pools")), "{err}");

    let (code, out, _) = callgate(&["config", "check", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["errors"].as_array().unwrap().iter().any(|e| e["line"] == 4));
}

#[test]
fn flows_that_can_never_fit_and_bounds_the_api_refuses_are_named_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.toml");
    std::fs::write(
        &path,
        "[[pools]]\nname = \"acct\"\nlimit = 10\nreserve = { inbound = 3 }\n\n\
         [[flows]]\nname = \"conference\"\nclass = \"outbound\"\npools = [{ pool = \"acct\", units = 8 }]\n\
         lease_ttl = \"800h\"\nqueue = { max_wait = \"2d\" }\n",
    )
    .unwrap();
    let (code, out, err) = callgate(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let file = path.display().to_string();
    let line = |n: u32, needle: &str| err.lines().any(|l| l.starts_with(&format!("{file}:{n}:")) && l.contains(needle));
    assert!(line(9, "flow `conference` needs 8 units of pool `acct`"), "{err}");
    assert!(line(10, "lease_ttl must be at most 720h"), "{err}");
    assert!(line(11, "max_wait must be at most 24h"), "{err}");

    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[server]\nlisten = \"127.0.0.1:7700\"\n# S\xe3o Paulo\n").unwrap();
    let (code, out, err) = callgate(&["config", "check", latin1.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("{}:3:", latin1.display())) && err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn an_unknown_key_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:7700\"\nlisen = \"x\"\n").unwrap();
    let (code, _, err) = callgate(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(":3:") && err.contains("lisen"), "{err}");
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = callgate(&["serve", "--listen", "0.0.0.0:0", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("without auth keys"), "{err}");
}

#[test]
fn plan_answers_with_the_erlang_c_figures() {
    let (code, out, err) = callgate(&[
        "plan",
        "lines",
        "--erlangs",
        "10",
        "--lines",
        "14",
        "--aht",
        "180s",
        "--answer-within",
        "20s",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // 10 erlangs on 14 lines: P(wait) 0.174, 88.8 % answered within 20 s (the Call Centre Helper example).
    assert!((v["p_wait"].as_f64().unwrap() - 0.174).abs() < 0.001, "{v}");
    assert!((v["service_level"].as_f64().unwrap() - 0.888).abs() < 0.001, "{v}");
}

#[test]
fn plan_latency_reads_a_saved_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    let summary = serde_json::json!({ "calls_read": 30, "assistants": [], "latency_by_concurrency": [
        { "concurrency": 5, "calls": 10, "turn_p50_ms": 700, "turn_p95_ms": 900 },
        { "concurrency": 6, "calls": 10, "turn_p50_ms": 900, "turn_p95_ms": 1400 },
        { "concurrency": 7, "calls": 10, "turn_p50_ms": 1800, "turn_p95_ms": 2600 },
    ]});
    std::fs::write(&path, summary.to_string()).unwrap();
    let (code, out, err) = callgate(&["plan", "latency", "--summary", path.to_str().unwrap(), "--p95-under", "1.5s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Up to 6 concurrent calls kept p95 turn latency under 1500 ms (at 7: 2,600 ms)."), "{out}");
    std::fs::write(&path, "{}").unwrap();
    let (code, _, err) = callgate(&["plan", "latency", "--summary", path.to_str().unwrap(), "--p95-under", "1.5s"]);
    assert_ne!(code, 0);
    assert!(err.contains("latency_by_concurrency"), "{err}");
}

#[test]
fn simulate_places_a_run_on_a_saved_latency_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    // p95 = 20 ms per concurrent call, measured from 1 to 50: 900 ms holds up to 44.
    let levels: Vec<_> =
        (1..=50u32).map(|c| serde_json::json!({ "concurrency": c, "calls": 10, "turn_p95_ms": 20 * c })).collect();
    std::fs::write(&path, serde_json::json!({ "latency_by_concurrency": levels }).to_string()).unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mm55-benchmark.toml");
    let summary = path.to_str().unwrap();
    let run =
        ["simulate", scenario, "--calls", "2000", "--quiet", "--latency-summary", summary, "--p95-under", "900ms"];
    let (code, out, err) = callgate(&run);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Up to 44 concurrent calls kept p95 turn latency under 900 ms (at 45: 900 ms)."), "{out}");
    assert!(out.contains("Pool agents: simulated peak "), "{out}");
    let (code, out, err) = callgate(&[&run[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["latency"]["keeps_under"], 44, "{out}");
    assert_eq!(v["latency"]["pools"][0]["peak_concurrency"], v["pools"][0]["peak_used"]);
    let (code, _, err) = callgate(&run[..7]);
    assert_ne!(code, 0);
    assert!(err.contains("--latency-summary needs --p95-under"), "{err}");
    std::fs::write(&path, "{}").unwrap();
    let (code, _, err) = callgate(&run);
    assert_ne!(code, 0);
    assert!(err.contains("--latency-summary") && err.contains("latency_by_concurrency"), "{err}");
}

#[test]
fn config_check_and_simulate_check_accept_a_scenario() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/callbacks-on-overflow.toml");
    let (code, out, err) = callgate(&["config", "check", examples]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: scenario") && out.contains("callbacks returned"), "{out}");
    let (code, out, err) = callgate(&["simulate", "--check", examples]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: scenario"), "{out}");
    // A scenario's mistake is reported with its line, by both.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-scenario.toml");
    let text = std::fs::read_to_string(examples).unwrap().replace("after = \"15m\"", "after = \"soon\"");
    std::fs::write(&path, text).unwrap();
    for args in [vec!["config", "check"], vec!["simulate", "--check"]] {
        let mut args = args.clone();
        args.push(path.to_str().unwrap());
        let (code, out, err) = callgate(&args);
        assert_ne!(code, 0, "{out}{err}");
        assert!(err.contains("sim.callback.after"), "{args:?}: {err}");
    }
}

#[test]
fn tune_runs_from_the_binary_and_config_check_reads_its_section() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/business-day.toml");
    let (code, out, err) = callgate(&["config", "check", example]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("a [tune] search of 27 candidates"), "{out}");
    // A small search end to end: the best policy as a diff, the frontier, the chart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.toml");
    std::fs::write(
        &path,
        "[[classes]]\nname = \"inbound\"\npriority = 50\n[[pools]]\nname = \"lines\"\nlimit = 3\n[[flows]]\n\
         name = \"support\"\npools = [\"lines\"]\nclass = \"inbound\"\n[sim]\ncalls = 1000\n[[arrivals]]\n\
         flow = \"support\"\nrate = \"60/h\"\nhold = { dist = \"exp\", mean = \"3m\" }\n[tune]\nseeds = 1\n\
         minimize = \"lost\"\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [3, 5]\n",
    )
    .unwrap();
    let svg = dir.path().join("frontier.svg");
    let (code, out, err) = callgate(&["tune", path.to_str().unwrap(), "--quiet", "--svg", svg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Best: pools.lines.limit = 5") && out.contains("+limit = 5"), "{out}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // A knob the file cannot take: an error naming it, exit code non-zero.
    let text = std::fs::read_to_string(&path).unwrap().replace("pools.lines.limit", "pools.trunks.limit");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = callgate(&["tune", path.to_str().unwrap(), "--quiet"]);
    assert_ne!(code, 0);
    assert!(err.contains("no [[pools]] entry is named `trunks`"), "{err}");
}
