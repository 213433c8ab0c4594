//! `callgate history import` and `callgate forecast`, as a user runs them: a CSV of six
//! weeks of calls (a daily peak, quiet nights and weekends), refused rows named by line,
//! the table, the JSON rows, the SVG and the backtest.

use std::fmt::Write as _;
use std::process::Command;

fn callgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate")).args(args).output().expect("run callgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Six weeks from Monday 5 October 2026: on weekdays 12 calls per 15 minutes from 09:00 to
/// 12:00 UTC and 2 from 12:00 to 17:00, on weekends and at night one call an hour; each
/// call four minutes.
fn csv() -> String {
    let mut out = String::from("started_at,ended_at,flow,outcome\n");
    let start = chrono::NaiveDate::from_ymd_opt(2026, 10, 5).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    for i in 0..42 * 96 {
        let t = start + chrono::Duration::minutes(15 * i);
        let (day, hour) = (i / 96 % 7, i % 96 / 4);
        let n = match (day < 5, hour) {
            (true, 9..=11) => 12,
            (true, 12..=16) => 2,
            _ => i64::from(i % 4 == 0),
        };
        for k in 0..n {
            let s = t + chrono::Duration::seconds(60 * k);
            let e = s + chrono::Duration::minutes(4);
            let _ = writeln!(
                out,
                "{},{},support,completed",
                s.format("%Y-%m-%dT%H:%M:%SZ"),
                e.format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
    }
    out
}

#[test]
fn import_then_forecast_table_json_svg_and_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("calls.csv");
    std::fs::write(&file, csv()).unwrap();
    let file = file.to_str().unwrap();

    let (code, out, err) = callgate(&["history", "import", file, "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("added, 0 already present"), "{out}");
    let (code, out, _) = callgate(&["history", "import", file, "--data-dir", data, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"], 0, "a second import adds nothing twice: {v}");

    // A bad row: nothing imported, the line named, exit 1.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "started_at,flow\n2026-11-16T09:00:00Z,support\nlast tuesday,support\n").unwrap();
    let (code, _, err) = callgate(&["history", "import", bad.to_str().unwrap(), "--data-dir", data]);
    assert_eq!(code, 1);
    assert!(err.contains("line 3: `started_at` \"last tuesday\" is not an RFC 3339 time"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");

    let from = ["--flow", "support", "--from", "2026-11-16T00:00:00Z", "--data-dir", data];
    let args = |more: &[&str]| -> Vec<String> { from.iter().chain(more).map(|s| s.to_string()).collect() };
    let forecast = |more: &[&str]| {
        let mut all = vec!["forecast".to_string()];
        all.extend(args(more));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        callgate(&refs)
    };
    let (code, out, err) = forecast(&["--days", "1", "--limit", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("start (UTC)") && out.contains("2026-11-16T10:00:00Z"), "{out}");
    assert!(out.contains("need more than the 4 lines"), "{out}");
    assert!(out.contains("first at 2026-11-16T09:"), "the peak is short, from its start: {out}");

    // The account is a line short at the morning peak with a 2-line campaign dialing
    // 08:00-20:00: shifting its calls to the afternoon costs nothing.
    let prices = dir.path().join("prices.toml");
    std::fs::write(&prices, "[pricing]\nper_line_month = 40\nlost_caller = 3\ncampaign_call = 0.5\n").unwrap();
    let prices = prices.to_str().unwrap();
    let priced = ["--days", "1", "--limit", "6", "--campaign-lines", "2", "--campaign-window", "08:00-20:00"];
    let (code, out, err) = forecast(&[&priced[..], &["--pricing", prices]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(with the campaign's 2 lines)"), "{out}");
    assert!(out.contains("short 2026-11-16T09:00:00Z to 12:00"), "{out}");
    assert!(out.contains("cheapest: shift campaign ($0.00)"), "{out}");
    let (code, out, _) = forecast(&[&priced[..], &["--pricing", prices, "--json"]].concat());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["shortfall"]["cheapest"], "shift_campaign", "{v}");
    assert_eq!(v["shortfall"]["limit"], 6);
    let (code, _, err) =
        forecast(&["--days", "1", "--limit", "6", "--campaign-lines", "2", "--campaign-window", "8-20"]);
    assert_eq!(code, 1);
    assert!(err.contains("--campaign-window must be HH:MM-HH:MM"), "{err}");
    // No lines at all and the most campaign lines: every interval short, nothing overflows.
    let (code, out, err) = forecast(&["--days", "1", "--limit", "0", "--campaign-lines", "1000000"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("short 2026-11-16T00:00:00Z to 2026-11-17T00:00:00Z: 96 intervals"),
        "a run to midnight ends with its date: {out}"
    );
    let (code, _, err) = forecast(&["--days", "1", "--limit", "0", "--campaign-lines", "1000001"]);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = forecast(&["--days", "2", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from"], "2026-11-16T00:00:00Z");
    assert!(v.get("shortfall").is_none(), "no limit, no shortfall: {v}");
    let rows = v["intervals"].as_array().unwrap();
    assert_eq!(rows.len(), 192);
    let at = |s: &str| rows.iter().find(|r| r["start"] == s).unwrap().clone();
    let (peak, night) = (at("2026-11-16T10:00:00Z"), at("2026-11-16T03:00:00Z"));
    assert!((peak["arrivals"].as_f64().unwrap() - 12.0).abs() < 1.5, "{peak}");
    assert!(night["arrivals"].as_f64().unwrap() < 1.5, "{night}");
    assert_eq!(peak["aht_s"], 240);

    let svg = dir.path().join("f.svg");
    let (code, out, _) = forecast(&["--svg", svg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("<polygon") && text.contains("<polyline"));

    let (code, out, err) = forecast(&["--backtest"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("seasonal naive") && out.contains(" all "), "{out}");

    let (code, _, err) = callgate(&["forecast", "--days", "15", "--data-dir", data]);
    assert_eq!(code, 1);
    assert!(err.contains("days must be 1 to 14"), "{err}");
}
