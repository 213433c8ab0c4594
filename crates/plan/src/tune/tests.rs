//! The search finds known answers; paths, problems and diffs read right.

use super::*;

/// 5 erlangs (100 calls an hour of 3 minutes) on `lines` with no waiting room: Erlang B.
const LOSS: &str = r#"
[[classes]]
name = "inbound"
priority = 50
[[pools]]
name = "lines"
limit = 10
[[flows]]
name = "support"
pools = ["lines"]
class = "inbound"
[sim]
calls = 20000
seed = 5
[[arrivals]]
flow = "support"
rate = "100/h"
hold = { dist = "exp", mean = "3m" }
[pricing]
per_line_month = 30
TUNE
"#;

fn search(tune_section: &str) -> TuneReport {
    tune(&LOSS.replace("TUNE", tune_section), None, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"))
}

fn problem(tune_section: &str) -> String {
    match tune(&LOSS.replace("TUNE", tune_section), Some(Path::new("s.toml")), &mut |_| {}) {
        Ok(_) => panic!("accepted: {tune_section}"),
        Err(e) => e.message,
    }
}

#[test]
fn tune_finds_the_fewest_lines_erlang_b_gives_for_a_blocking_target() {
    // The target sits between B(10, 5) = 1.84% and B(11, 5) = 0.83% (near their geometric
    // mean), so that the noise of three runs of 20,000 calls cannot move the answer.
    let r = search(
        "[tune]\nminimize = \"cost\"\nmax_lost_share = 0.0125\nseeds = 3\n[[tune.knobs]]\nset = \
         \"pools.lines.limit\"\nvalues = [8, 9, 10, 11, 12, 13, 14]",
    );
    // The known answer: the fewest lines whose blocking is at most 1.25%.
    let want = (1..100).find(|&n| crate::erlang::erlang_b(n, 5.0) <= 0.0125).unwrap();
    assert_eq!(want, 11);
    let best = r.best.expect("a candidate meets the constraint");
    assert_eq!(r.candidates[best].values, [want.to_string()], "{}", r.to_text());
    // Every candidate met the same callers (common random numbers): the same people.
    assert!(r.candidates.iter().all(|c| c.people == r.candidates[0].people));
    // More lines, fewer lost: the frontier holds every candidate (cost against loss).
    assert!(r.candidates.windows(2).all(|w| w[1].lost <= w[0].lost));
    assert!(r.candidates.iter().all(|c| c.frontier));
    let text = r.to_text();
    assert!(text.contains("Best: pools.lines.limit = 11"), "{text}");
    assert!(text.contains("-limit = 10\n+limit = 11\n"), "{text}");
    assert!(text.contains("Trade-off frontier (7 of 7 candidates"), "{text}");
    let svg = frontier_chart(&r);
    assert!(svg.starts_with("<svg") && svg.contains("best: 11"), "{svg}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["best"], best);
    assert_eq!(json["space"]["knobs"][0], "pools.lines.limit");
}

#[test]
fn without_a_feasible_candidate_there_is_no_best_but_a_frontier() {
    let r = search(
        "[tune]\nmax_lost_share = 0.0001\nseeds = 1\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [4, 5]",
    );
    assert_eq!(r.best, None);
    assert!(r.diff.is_none());
    assert!(r.to_text().contains("No candidate meets the constraints"));
}

#[test]
fn two_knobs_make_every_combination_and_a_waiting_room_can_be_varied() {
    let r = search(
        "[tune]\nseeds = 1\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9, 10]\n[[tune.knobs]]\n\
         set = \"flows.support.queue\"\nvalues = [{ max_wait = \"1s\" }, { max_wait = \"60s\", max_len = 5 }]",
    );
    let values: Vec<Vec<String>> = r.candidates.iter().map(|c| c.values.clone()).collect();
    assert_eq!(values.len(), 4);
    assert_eq!(values[0][0], "9");
    assert!(values[1][1].contains("60s"));
    // A waiting room loses fewer callers than none on the same lines.
    assert!(r.candidates[1].lost < r.candidates[0].lost);
    assert_eq!(r.best, Some(3), "{}", r.to_text());
}

#[test]
fn a_path_enters_arrays_of_tables_by_name_and_adds_what_is_missing() {
    let text = r#"[[pools]]
name = "a"
limit = 3
[[flows]]
name = "f"
overflow = { action = "busy" }
[[schedules]]
name = "peak"
pools = { a = { reserve = { inbound = 1 } } }
[[sim.campaigns]]
campaign = "promo"
leads = 5
"#;
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let v = |s: &str| s.parse::<toml_edit::Value>().unwrap();
    assert_eq!(set(&mut doc, "pools.a.limit", &v("4")).unwrap().as_deref(), Some("3"));
    assert_eq!(set(&mut doc, "pools.a.reserve.inbound", &v("2")).unwrap(), None);
    assert_eq!(set(&mut doc, "schedules.peak.pools.a.reserve.inbound", &v("6")).unwrap().as_deref(), Some("1"));
    set(&mut doc, "flows.f.overflow", &v("[{ action = \"callback\" }, { action = \"voicemail\" }]")).unwrap();
    set(&mut doc, "sim.campaigns.promo.leads", &v("7")).unwrap();
    let out = doc.to_string();
    assert!(out.contains("limit = 4"), "{out}");
    assert!(out.contains("reserve = { inbound = 2 }"), "{out}");
    assert!(out.contains("pools = { a = { reserve = { inbound = 6 } } }"), "{out}");
    assert!(out.contains("overflow = [{ action = \"callback\" }, { action = \"voicemail\" }]"), "{out}");
    assert!(out.contains("leads = 7"), "{out}");
    assert!(set(&mut doc, "pools.nobody.limit", &v("1")).unwrap_err().contains("no [[pools]] entry is named `nobody`"));
    assert!(set(&mut doc, "pools.a", &v("1")).is_err());
    assert!(set(&mut doc, "pools.a.limit.x", &v("1")).unwrap_err().contains("not a table"));
}

#[test]
fn tune_problems_name_the_line_and_the_field() {
    let e = problem("[tune]\nminimize = \"happiness\"\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]");
    assert!(e.contains("s.toml:") && e.contains("tune.minimize: `happiness` is not an objective"), "{e}");
    let e = problem("[tune]\nseeds = 0\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]");
    assert!(e.contains("tune.seeds: must be between 1 and 100"), "{e}");
    let e = problem("[tune]\nseeds = 1");
    assert!(e.contains("tune.knobs: say what to vary"), "{e}");
    let e = problem("[tune]\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = []");
    assert!(e.contains("tune.knobs[0].values: give 1 to 1,000 values"), "{e}");
    let e = problem("[tune]\ncolour = 1\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]");
    assert!(e.contains("colour"), "{e}");
    // A value the configuration refuses is refused with the configuration's own message.
    let e = problem("[tune]\nseeds = 1\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [-1]");
    assert!(e.contains("pools.lines.limit = -1"), "{e}");
    let e = problem("[tune]\nseeds = 1\n[[tune.knobs]]\nset = \"pools.nope.limit\"\nvalues = [3]");
    assert!(e.contains("no [[pools]] entry is named `nope`"), "{e}");
    let many: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    let e = problem(&format!(
        "[tune]\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [{0}]\n[[tune.knobs]]\nset = \
         \"pools.lines.limit\"\nvalues = [{0}]",
        many.join(", ")
    ));
    assert!(e.contains("10201 combinations; at most 10000") && e.contains("search = \"descent\""), "{e}");
    let e = problem("[tune]\nsearch = \"random\"\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]");
    assert!(e.contains("tune.search: `random` is not a search (every or descent)"), "{e}");
    // A cost objective needs prices.
    let no_price = LOSS
        .replace("[pricing]\nper_line_month = 30\n", "")
        .replace("TUNE", "[tune]\nminimize = \"cost\"\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]");
    let e = tune(&no_price, None, &mut |_| {}).unwrap_err().message;
    assert!(e.contains("needs a [pricing] section"), "{e}");
}

#[test]
fn a_diff_shows_the_changed_lines_with_their_numbers() {
    let d = report::diff("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\n", "x.toml");
    assert_eq!(d, "--- x.toml\n+++ x.toml (tuned)\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n");
}

#[test]
fn a_check_reads_the_tune_section_and_tries_every_value() {
    let dir = std::env::temp_dir().join(format!("callgate-tune-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    let write = |tune_section: &str| std::fs::write(&file, LOSS.replace("TUNE", tune_section)).unwrap();
    write("[tune]\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9, 10]\n[[tune.knobs]]\nset = \"pools.lines.reserve.inbound\"\nvalues = [0, 1, 2]");
    let ok = check_file(&file).unwrap();
    assert!(ok.ends_with(", a [tune] search of 6 candidates"), "{ok}");
    write("[tune]\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9, 0]");
    let e = check_file(&file).unwrap_err().message;
    assert!(e.contains("with pools.lines.limit = 0"), "{e}");
    write("[tune]\n[[tune.knobs]]\nset = \"flows.nobody.queue.max_wait\"\nvalues = [\"1m\"]");
    let e = check_file(&file).unwrap_err().message;
    assert!(e.contains("no [[flows]] entry is named `nobody`"), "{e}");
    write("");
    assert!(!check_file(&file).unwrap().contains("tune"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn descent_finds_what_every_combination_finds_with_fewer_runs() {
    let space = "seeds = 2\nminimize = \"cost\"\nmax_lost_share = 0.0125\n[[tune.knobs]]\nset = \"pools.lines.limit\"\n\
                 values = [8, 9, 10, 11, 12, 13, 14]\n[[tune.knobs]]\nset = \"flows.support.queue\"\n\
                 values = [{ max_wait = \"1s\" }, { max_wait = \"20s\", max_len = 3 }, { max_wait = \"60s\", max_len = 10 }]";
    let every = search(&format!("[tune]\n{space}"));
    let descent = search(&format!("[tune]\nsearch = \"descent\"\n{space}"));
    let (e, d) = (every.best.unwrap(), descent.best.unwrap());
    assert_eq!(every.candidates[e].values, descent.candidates[d].values, "{}\n{}", every.to_text(), descent.to_text());
    // A waiting room lets fewer lines meet the target than none.
    assert_ne!(every.candidates[e].values[0], "11");
    assert!(descent.candidates.len() < every.candidates.len(), "{} runs", descent.candidates.len());
    // Nothing meets an impossible target: descent walks toward the least violation.
    let none = search(&format!("[tune]\nsearch = \"descent\"\n{}", space.replace("0.0125", "0.000001")));
    assert_eq!(none.best, None);
    assert!(none.candidates.iter().all(|c| c.violation > 0.0));
}

#[test]
fn campaigns_done_by_reads_a_time_of_day_after_the_start() {
    let sec = |s: &str| {
        Space::from_toml_str(
            &format!("[tune]\n{s}\n[[tune.knobs]]\nset = \"pools.lines.limit\"\nvalues = [9]"),
            "s.toml",
            callgate_config::parse_instant("2026-03-02T13:00:00Z").unwrap(), // 08:00 in New York
        )
    };
    let at = |s: &str| callgate_config::format_instant(sec(s).unwrap().campaigns_done_by.unwrap());
    assert_eq!(at("campaigns_done_by = \"20:00\"\ntimezone = \"America/New_York\""), "2026-03-03T01:00:00Z");
    assert_eq!(at("campaigns_done_by = \"20:00\""), "2026-03-02T20:00:00Z");
    // Before the start today: tomorrow's.
    assert_eq!(at("campaigns_done_by = \"07:00\"\ntimezone = \"America/New_York\""), "2026-03-03T12:00:00Z");
    assert_eq!(at("campaigns_done_by = \"2026-03-02T18:00:00-05:00\""), "2026-03-02T23:00:00Z");
    let e = sec("campaigns_done_by = \"20:00\"\ntimezone = \"Mars/Olympus\"").unwrap_err().message;
    assert!(e.contains("tune.timezone: `Mars/Olympus` is not an IANA time zone"), "{e}");
    let e = sec("campaigns_done_by = \"soon\"").unwrap_err().message;
    assert!(e.contains("tune.campaigns_done_by") && e.contains("a time of day"), "{e}");
}
