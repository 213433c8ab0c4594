//! `callgate plan latency`: how many concurrent calls keep p95 turn latency under a
//! target, from what Vapi measured (`latency_by_concurrency` of a saved
//! `GET /v1/calls/summary`): each ended call's turn latencies, by the concurrency its
//! pool had when it ended.
//!
//! The answer is read off the measurements, not modelled: the highest concurrency up to
//! which every level with enough calls stayed under the target. Levels never reached are
//! not guessed at; the report says when the target held at every measured level.

use super::parse_duration_ms;
use crate::sim::PoolReport;
use crate::text::{count, num, pct, Table};
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

/// How one simulated pool sits on the measured curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolLatency {
    /// The pool.
    pub pool: String,
    /// Most calls in the pool at once in the simulation.
    pub peak_concurrency: u64,
    /// Share of the simulated call time (calls × seconds) spent at a concurrency whose
    /// measured p95 turn latency was at or over the target.
    pub over_share: f64,
    /// Share of the simulated call time at a concurrency that was not measured (or with
    /// too few calls to count): nothing is said about those.
    pub not_measured_share: f64,
    /// The concurrencies the simulation reached that were not measured, lowest first.
    pub not_measured: Vec<u64>,
}

/// What `callgate simulate --latency-summary FILE --p95-under D` adds to a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimLatency {
    /// The target (ms).
    pub p95_under_ms: u64,
    /// The highest concurrency that kept measured p95 under the target (as `plan latency`).
    pub keeps_under: Option<u32>,
    /// The first measured level over the target.
    pub first_over: Option<u32>,
    /// What the measurements say, in a sentence (the first line of `plan latency`).
    pub measured: String,
    /// Each simulated pool.
    pub pools: Vec<PoolLatency>,
}

/// Places the simulated pools on the measured curve: each concurrency the simulation
/// reached counts as over the target, under it, or not measured, by the trusted level of
/// exactly that concurrency. Nothing between or beyond measured levels is guessed.
pub fn simulated_latency(curve: &LatencyReport, pools: &[PoolReport]) -> SimLatency {
    let target = curve.p95_under_ms as f64;
    let pools = pools
        .iter()
        .map(|p| {
            let (mut total, mut over, mut unknown, mut not_measured) = (0.0, 0.0, 0.0, Vec::new());
            for &(used, secs) in &p.time_by_used {
                let call_time = used as f64 * secs;
                total += call_time;
                let level = curve.levels.iter().find(|l| u64::from(l.concurrency) == used && l.trusted);
                match level.and_then(|l| l.turn_p95_ms) {
                    Some(p95) if p95 < target => {}
                    Some(_) => over += call_time,
                    None => {
                        unknown += call_time;
                        not_measured.push(used);
                    }
                }
            }
            let share = |x: f64| if total > 0.0 { x / total } else { 0.0 };
            PoolLatency {
                pool: p.pool.clone(),
                peak_concurrency: p.peak_used,
                over_share: share(over),
                not_measured_share: share(unknown),
                not_measured,
            }
        })
        .collect();
    let measured = curve.to_text().lines().next().unwrap_or_default().to_owned();
    SimLatency {
        p95_under_ms: curve.p95_under_ms,
        keeps_under: curve.keeps_under,
        first_over: curve.first_over,
        measured,
        pools,
    }
}

/// `5`, `5–9` or `3, 5–9, 12`: consecutive values joined.
fn ranges(values: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { values[i].to_string() } else { format!("{}–{}", values[i], values[j]) });
        i = j + 1;
    }
    parts.join(", ")
}

impl SimLatency {
    /// The text view, added under a simulation report.
    pub fn to_text(&self) -> String {
        let mut out = format!("\nTurn latency (measured p95 under {} ms)\n  {}\n", self.p95_under_ms, self.measured);
        for p in &self.pools {
            let _ = write!(
                out,
                "  Pool {}: simulated peak {} concurrent calls; {} of call time at a concurrency over the target",
                p.pool,
                count(p.peak_concurrency),
                pct(p.over_share)
            );
            if p.not_measured.is_empty() {
                out.push_str(".\n");
            } else {
                let _ =
                    writeln!(out, ", {} at one not measured ({}).", pct(p.not_measured_share), ranges(&p.not_measured));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(levels: Value, target: u64) -> Result<LatencyReport, PlanError> {
        // One file per call: tests run in parallel in one process, and two with the same
        // target would otherwise write and remove each other's file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("callgate-plan-latency-{}-{target}-{n}", std::process::id()));
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

    #[test]
    fn simulated_call_time_is_placed_on_the_measured_levels_and_unmeasured_ones_are_said() {
        let levels = serde_json::json!([
            { "concurrency": 1, "calls": 9, "turn_p50_ms": 600, "turn_p95_ms": 800 },
            { "concurrency": 2, "calls": 9, "turn_p50_ms": 900, "turn_p95_ms": 1200 },
            { "concurrency": 3, "calls": 9, "turn_p50_ms": 1500, "turn_p95_ms": 2000 },
            { "concurrency": 4, "calls": 1, "turn_p50_ms": 900, "turn_p95_ms": 900 },
        ]);
        let curve = report(levels, 1500).unwrap();
        // 10 s at 1, 10 s at 2, 10 s at 3, 5 s at 4, 5 s at 6: 10 + 20 + 30 + 20 + 30 = 110 call-seconds.
        let pool = PoolReport {
            pool: "agents".into(),
            limit: 6,
            mean_used: 0.0,
            utilization: 0.0,
            peak_used: 6,
            peak_utilization: 1.0,
            time_by_used: vec![(1, 10.0), (2, 10.0), (3, 10.0), (4, 5.0), (6, 5.0)],
        };
        let l = simulated_latency(&curve, std::slice::from_ref(&pool));
        assert_eq!((l.keeps_under, l.first_over), (Some(2), Some(3)));
        let p = &l.pools[0];
        assert_eq!(p.peak_concurrency, 6);
        assert!((p.over_share - 30.0 / 110.0).abs() < 1e-9, "{}", p.over_share);
        assert!((p.not_measured_share - 50.0 / 110.0).abs() < 1e-9, "level 4 has too few calls, 6 none");
        assert_eq!(p.not_measured, vec![4, 6]);
        let text = l.to_text();
        assert!(
            text.contains("Up to 2 concurrent calls kept p95 turn latency under 1500 ms (at 3: 2,000 ms)."),
            "{text}"
        );
        assert!(
            text.contains("Pool agents: simulated peak 6 concurrent calls; 27.3% of call time at a concurrency over the target, 45.5% at one not measured (4, 6)."),
            "{text}"
        );
        let idle = PoolReport { time_by_used: Vec::new(), peak_used: 0, ..pool };
        let l = simulated_latency(&curve, &[idle]);
        assert_eq!((l.pools[0].over_share, l.pools[0].not_measured_share), (0.0, 0.0));
        assert!(l.to_text().contains("0.0% of call time at a concurrency over the target."));
    }

    #[test]
    fn consecutive_levels_are_written_as_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[3, 5, 6, 7, 9]), "3, 5–7, 9");
    }
}
