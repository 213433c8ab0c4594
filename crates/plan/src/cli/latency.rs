//! `callgate plan latency`: how many concurrent calls keep p95 turn latency under a
//! target, from what Vapi measured (`latency_by_concurrency` of a saved
//! `GET /v1/calls/summary`): each ended call's turn latencies, by the concurrency its
//! pool had when it ended.
//!
//! The answer is read off the measurements, not modelled: the highest concurrency up to
//! which every level with enough calls stayed under the target. Levels never reached are
//! not guessed at; the report says when the target held at every measured level.

use super::parse_duration_ms;
use crate::text::{count, num, Table};
use crate::PlanError;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The largest summary file read.
const MAX_FILE: u64 = 16 * 1024 * 1024;
/// The most concurrency levels read.
const MAX_LEVELS: usize = 10_000;

/// Options of `callgate plan latency`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct LatencyArgs {
    /// A saved `GET /v1/calls/summary` answer (curl -H "Authorization: Bearer …"
    /// http://callgate:7700/v1/calls/summary?limit=10000 > summary.json).
    #[arg(long, value_name = "FILE")]
    pub summary: PathBuf,
    /// The target: p95 turn latency under this, e.g. 1500ms or 1.5s.
    #[arg(long, value_parser = parse_duration_ms)]
    pub p95_under: u64,
    /// Levels with fewer measured calls than this are shown but not trusted.
    #[arg(long, default_value_t = 5)]
    pub min_calls: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One concurrency level as measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyLevel {
    /// Calls in the pool when the calls ended.
    pub concurrency: u32,
    /// Measured calls.
    pub calls: u64,
    /// Median turn latency (ms).
    pub turn_p50_ms: Option<f64>,
    /// 95th percentile turn latency (ms).
    pub turn_p95_ms: Option<f64>,
    /// Enough calls to count (`--min-calls`).
    pub trusted: bool,
}

/// What `plan latency` prints (`--json` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyReport {
    /// The target (ms).
    pub p95_under_ms: u64,
    /// The highest concurrency up to which every trusted level stayed under the target.
    pub keeps_under: Option<u32>,
    /// The first trusted level over the target, if one was measured.
    pub first_over: Option<u32>,
    /// The levels, lowest first.
    pub levels: Vec<LatencyLevel>,
}

fn level(v: &Value, min_calls: u64) -> Option<LatencyLevel> {
    let ms = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite() && *x >= 0.0);
    let calls = v.get("calls")?.as_u64()?;
    Some(LatencyLevel {
        concurrency: u32::try_from(v.get("concurrency")?.as_u64()?).ok()?,
        calls,
        turn_p50_ms: ms("turn_p50_ms"),
        turn_p95_ms: ms("turn_p95_ms"),
        trusted: calls >= min_calls && ms("turn_p95_ms").is_some(),
    })
}

/// Reads the summary and answers.
pub fn latency_report(args: &LatencyArgs) -> Result<LatencyReport, PlanError> {
    let path = args.summary.display();
    let size = std::fs::metadata(&args.summary).map_err(|e| PlanError::io(format!("{path}: {e}")))?.len();
    if size > MAX_FILE {
        return Err(PlanError::input(format!("{path}: larger than {} MiB", MAX_FILE >> 20)));
    }
    let text = std::fs::read_to_string(&args.summary).map_err(|e| PlanError::io(format!("{path}: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| PlanError::input(format!("{path}: not JSON: {e}")))?;
    let Some(list) = v.get("latency_by_concurrency").and_then(Value::as_array) else {
        return Err(PlanError::input(format!(
            "{path}: no `latency_by_concurrency` list; save the answer of GET /v1/calls/summary"
        )));
    };
    let mut levels = Vec::new();
    for (i, item) in list.iter().take(MAX_LEVELS).enumerate() {
        levels.push(level(item, args.min_calls).ok_or_else(|| {
            PlanError::input(format!("{path}: latency_by_concurrency[{i}] needs `concurrency` and `calls`"))
        })?);
    }
    levels.sort_by_key(|l| l.concurrency);
    let target = args.p95_under as f64;
    let (mut keeps_under, mut first_over) = (None, None);
    for l in levels.iter().filter(|l| l.trusted) {
        if l.turn_p95_ms.is_some_and(|p| p < target) {
            keeps_under = Some(l.concurrency);
        } else {
            first_over = Some(l.concurrency);
            break;
        }
    }
    Ok(LatencyReport { p95_under_ms: args.p95_under, keeps_under, first_over, levels })
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |m| format!("{} ms", num(m, 0)))
}

impl LatencyReport {
    /// The text view.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let target = format!("{} ms", self.p95_under_ms);
        let over = |c: u32| {
            let p = self.levels.iter().find(|l| l.concurrency == c).and_then(|l| l.turn_p95_ms);
            format!(" (at {c}: {})", ms(p))
        };
        let _ = match (self.keeps_under, self.first_over) {
            (Some(n), Some(c)) => {
                writeln!(out, "Up to {n} concurrent calls kept p95 turn latency under {target}{}.", over(c))
            }
            (Some(n), None) => writeln!(
                out,
                "p95 turn latency stayed under {target} at every measured level, up to {n} concurrent calls; higher was not measured."
            ),
            (None, Some(c)) => {
                writeln!(out, "Even the lowest measured level was over {target}{}.", over(c))
            }
            (None, None) => writeln!(out, "No level has enough measured calls to say; gather more or lower --min-calls."),
        };
        let mut table = Table::new(&["concurrency", "calls", "turn p50", "turn p95", ""]).left(4);
        for l in &self.levels {
            let mark = match (l.trusted, l.turn_p95_ms) {
                (false, _) => "too few calls",
                (true, Some(p)) if p < self.p95_under_ms as f64 => "under",
                (true, _) => "over",
            };
            table.row(vec![
                count(u64::from(l.concurrency)),
                count(l.calls),
                ms(l.turn_p50_ms),
                ms(l.turn_p95_ms),
                mark.to_owned(),
            ]);
        }
        let _ = write!(out, "\n{}", table.render(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(levels: Value, target: u64) -> Result<LatencyReport, PlanError> {
        let dir = std::env::temp_dir().join(format!("callgate-plan-latency-{}-{target}", std::process::id()));
        std::fs::write(&dir, json_text(levels)).unwrap();
        let args = LatencyArgs { summary: dir.clone(), p95_under: target, min_calls: 3, json: false };
        let r = latency_report(&args);
        let _ = std::fs::remove_file(&dir);
        r
    }

    fn json_text(levels: Value) -> String {
        serde_json::json!({ "calls_read": 40, "assistants": [], "latency_by_concurrency": levels }).to_string()
    }

    #[test]
    fn the_highest_concurrency_under_the_target_is_read_off_the_measurements() {
        let levels = serde_json::json!([
            { "concurrency": 7, "calls": 9, "turn_p50_ms": 1500, "turn_p95_ms": 2400 },
            { "concurrency": 4, "calls": 12, "turn_p50_ms": 700, "turn_p95_ms": 900 },
            { "concurrency": 6, "calls": 10, "turn_p50_ms": 800, "turn_p95_ms": 1100 },
            { "concurrency": 5, "calls": 1, "turn_p50_ms": 3000, "turn_p95_ms": 3000 },
        ]);
        let r = report(levels.clone(), 1500).unwrap();
        assert_eq!((r.keeps_under, r.first_over), (Some(6), Some(7)), "5 has too few calls to count");
        let text = r.to_text();
        assert!(
            text.starts_with("Up to 6 concurrent calls kept p95 turn latency under 1500 ms (at 7: 2,400 ms)."),
            "{text}"
        );
        assert!(text.contains("too few calls"), "{text}");
        let r = report(levels.clone(), 5000).unwrap();
        assert_eq!((r.keeps_under, r.first_over), (Some(7), None));
        assert!(r.to_text().contains("higher was not measured"));
        let r = report(levels, 800).unwrap();
        assert_eq!((r.keeps_under, r.first_over), (None, Some(4)));
    }

    #[test]
    fn a_file_that_is_not_a_summary_is_a_clear_error() {
        let e = report(serde_json::json!("nope"), 1000).unwrap_err();
        assert!(e.message.contains("no `latency_by_concurrency` list"), "{}", e.message);
        let e = report(serde_json::json!([{ "calls": 3 }]), 1001).unwrap_err();
        assert!(e.message.contains("latency_by_concurrency[0] needs `concurrency`"), "{}", e.message);
    }
}
