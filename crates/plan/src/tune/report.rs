//! What `callgate tune` prints: the best policy as a diff of the scenario file, the
//! trade-off frontier as a table, and the candidates as a chart.

use super::{describe, Candidate, Space};
use crate::text::{num, pct, pct2, Table};
use serde::Serialize;
use std::fmt::Write as _;

/// The outcome of a search.
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its file.
    pub file: String,
    /// What was searched.
    #[serde(serialize_with = "space_json")]
    pub space: Space,
    /// Every candidate, in search order (the first knob slowest).
    pub candidates: Vec<Candidate>,
    /// The best candidate that meets the constraints (position in `candidates`).
    pub best: Option<usize>,
    /// The best candidate as a diff of the scenario file.
    pub diff: Option<String>,
    /// The instant the runs start (`[sim] start`, Unix ms), to read finishes on the clock.
    #[serde(skip)]
    pub start_ms: u64,
}

fn space_json<S: serde::Serializer>(space: &Space, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Out<'a> {
        minimize: &'static str,
        seeds: u32,
        max_people_lost_share: Option<f64>,
        max_lost_share: Option<f64>,
        max_cost: Option<f64>,
        campaigns_done_by: Option<String>,
        knobs: Vec<&'a str>,
    }
    Out {
        minimize: space.objective.as_str(),
        seeds: space.seeds,
        max_people_lost_share: space.max_people_lost_share,
        max_lost_share: space.max_lost_share,
        max_cost: space.max_cost,
        campaigns_done_by: space.campaigns_done_by.map(callgate_config::format_instant),
        knobs: space.knobs.iter().map(|k| k.path.as_str()).collect(),
    }
    .serialize(s)
}

fn hours(s: Option<f64>) -> String {
    s.map_or_else(|| "not finished".to_owned(), |s| format!("{}h", num(s / 3600.0, 2)))
}

impl TuneReport {
    /// Whether the scenario dials campaigns (and so has a finish to trade).
    fn has_campaigns(&self) -> bool {
        self.candidates.iter().any(|c| c.campaign_finish_s.is_some() || !c.campaigns_finished)
    }

    /// The readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let sp = &self.space;
        let mut rules = Vec::new();
        if let Some(by) = sp.campaigns_done_by {
            rules.push(format!("campaigns done by {}", callgate_config::format_instant(by)));
        }
        if let Some(m) = sp.max_cost {
            rules.push(format!("cost at most {}", num(m, 2)));
        }
        if let Some(m) = sp.max_people_lost_share {
            rules.push(format!("people lost at most {}", pct2(m)));
        }
        if let Some(m) = sp.max_lost_share {
            rules.push(format!("calls lost at most {}", pct2(m)));
        }
        let _ = writeln!(
            out,
            "{} · {} candidates × {} seeds (the same seeds for each: common random numbers) · minimise {}{}",
            self.scenario,
            self.candidates.len(),
            sp.seeds,
            sp.objective.as_str(),
            if rules.is_empty() { String::new() } else { format!(" subject to {}", rules.join(", ")) }
        );
        match self.best {
            Some(b) => {
                let c = &self.candidates[b];
                let campaigns = if self.has_campaigns() {
                    let wall = c.campaign_finish_s.map_or_else(String::new, |s| {
                        format!(" ({})", callgate_config::format_instant(self.start_ms + (s * 1000.0) as u64))
                    });
                    format!(" · campaigns finished {}{wall}", hours(c.campaign_finish_s))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "\nBest: {}\n  people lost {} of {} ({}) · calls lost {} ({}) · service level {}{campaigns}{}",
                    describe(sp, &c.values),
                    num(c.people_lost, 1),
                    num(c.people, 0),
                    pct2(c.people_lost_share),
                    num(c.lost, 1),
                    pct2(c.lost_share),
                    pct(c.service_level),
                    c.cost.map_or_else(String::new, |v| format!(" · cost {}", num(v, 2)))
                );
                if let Some(d) = &self.diff {
                    out.push_str("\nAs a change of the scenario (the same lines go into the configuration):\n");
                    out.push_str(d);
                }
            }
            None => {
                let _ =
                    writeln!(out, "\nNo candidate meets the constraints; the frontier below shows what is possible.");
            }
        }
        // The knobs by their last two keys (the diff above gives the whole paths).
        let mut header: Vec<String> = sp
            .knobs
            .iter()
            .map(|k| {
                let segs: Vec<&str> = k.path.rsplitn(3, '.').collect();
                if segs.len() < 3 {
                    k.path.clone()
                } else {
                    format!("{}.{}", segs[1], segs[0])
                }
            })
            .collect();
        let campaigns = self.has_campaigns();
        header.extend(["people lost".into(), "calls lost".into()]);
        if campaigns {
            header.push("campaigns done".into());
        }
        header.extend(["cost".into(), "ok".into()]);
        let mut t = Table::new(&header);
        let mut frontier: Vec<(usize, &Candidate)> =
            self.candidates.iter().enumerate().filter(|(_, c)| c.frontier).collect();
        frontier.sort_by(|a, b| a.1.people_lost.total_cmp(&b.1.people_lost));
        for (i, c) in &frontier {
            let mut row = c.values.clone();
            row.extend([
                format!("{} ({})", num(c.people_lost, 1), pct2(c.people_lost_share)),
                format!("{} ({})", num(c.lost, 1), pct2(c.lost_share)),
            ]);
            if campaigns {
                row.push(hours(c.campaign_finish_s));
            }
            row.extend([
                c.cost.map_or_else(|| "-".to_owned(), |v| num(v, 2)),
                if Some(*i) == self.best {
                    "best".to_owned()
                } else if c.feasible {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
            ]);
            t.row(row);
        }
        let _ = writeln!(
            out,
            "\nTrade-off frontier ({} of {} candidates: none beats them on people lost, campaign finish and cost \
             at once; means over the seeds)",
            frontier.len(),
            self.candidates.len()
        );
        out.push_str(&t.render(2));
        out
    }
}

/// The lines that differ between `before` and `after`, as a unified diff with line numbers
/// (`@@ -a,n +b,m @@`), three lines of context.
pub(crate) fn diff(before: &str, after: &str, file: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    // Longest common subsequence of lines (scenario files are short; a file of more than
    // 4,000 lines gets the changed lines without alignment).
    let ops: Vec<(char, usize, usize)> = if a.len() * b.len() <= 16_000_000 {
        let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
            }
        }
        let (mut i, mut j, mut ops) = (0, 0, Vec::new());
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push((' ', i, j));
                i += 1;
                j += 1;
            } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
                ops.push(('-', i, j));
                i += 1;
            } else {
                ops.push(('+', i, j));
                j += 1;
            }
        }
        ops
    } else {
        let mut ops = Vec::new();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if x == y {
                ops.push((' ', i, i));
            } else {
                ops.push(('-', i, i));
                ops.push(('+', i, i));
            }
        }
        ops
    };
    let mut out = format!("--- {file}\n+++ {file} (tuned)\n");
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.0 != ' ').map(|(k, _)| k).collect();
    let mut k = 0;
    while k < changed.len() {
        // One hunk: changes less than 7 lines apart, with 3 lines of context around.
        let start = changed[k].saturating_sub(3);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 7 {
            k += 1;
            end = changed[k];
        }
        let end = (end + 4).min(ops.len());
        let hunk = &ops[start..end];
        let (a0, b0) = (hunk[0].1 + 1, hunk[0].2 + 1);
        let an = hunk.iter().filter(|o| o.0 != '+').count();
        let bn = hunk.iter().filter(|o| o.0 != '-').count();
        let _ = writeln!(out, "@@ -{a0},{an} +{b0},{bn} @@");
        for &(op, i, j) in hunk {
            let line = if op == '+' { b[j] } else { a[i] };
            let _ = writeln!(out, "{op}{line}");
        }
        k += 1;
    }
    out
}

/// The candidates as a chart: people lost against the campaigns' finish (or against cost,
/// without campaigns); the frontier joined, the infeasible grey, the best circled.
pub fn frontier_chart(report: &TuneReport) -> String {
    const W: f64 = 760.0;
    const H: f64 = 460.0;
    const L: f64 = 80.0;
    const R: f64 = 30.0;
    const T: f64 = 50.0;
    const B: f64 = 60.0;
    let by_finish = report.candidates.iter().any(|c| c.campaign_finish_s.is_some());
    let x_of = |c: &Candidate| {
        if by_finish {
            c.campaign_finish_s.map(|s| s / 3600.0)
        } else {
            c.cost
        }
    };
    let pts: Vec<(usize, f64, f64)> =
        report.candidates.iter().enumerate().filter_map(|(i, c)| x_of(c).map(|x| (i, x, c.people_lost))).collect();
    let (mut x0, mut x1) =
        pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let y1 = pts.iter().map(|p| p.2).fold(0.0f64, f64::max).max(1.0) * 1.1;
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = (x1 - x0) * 0.05;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let sx = |x: f64| L + (W - L - R) * (x - x0) / (x1 - x0);
    let sy = |y: f64| H - B - (H - T - B) * y / y1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{L}" y="24" font-size="15" font-weight="bold">{} — {} candidates, people lost against {}</text>"#,
        esc(&report.scenario),
        report.candidates.len(),
        if by_finish { "when the campaigns finish" } else { "cost" }
    );
    let _ = writeln!(out, r##"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##, H - B, W - R, H - B);
    let _ = writeln!(out, r##"<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="#333"/>"##, H - B);
    for k in 0..=4 {
        let x = x0 + (x1 - x0) * f64::from(k) / 4.0;
        let y = y1 * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            sx(x),
            H - B + 18.0,
            num(x, 1)
        );
        let _ =
            writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, L - 6.0, sy(y) + 4.0, num(y, 1));
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 18.0,
        if by_finish { "last campaign finished (hours from the start)" } else { "cost of the run" }
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{0:.1}" transform="rotate(-90 18 {0:.1})" text-anchor="middle">people lost (mean per run)</text>"#,
        (T + H - B) / 2.0
    );
    // The line joins the frontier of the two axes drawn (earlier and fewer lost); the dots'
    // colour tells the frontier of all three (cost too).
    let mut sorted: Vec<&(usize, f64, f64)> = pts.iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
    let mut front: Vec<&(usize, f64, f64)> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|q| p.2 < q.2) {
            front.push(p);
        }
    }
    if front.len() > 1 {
        let d: Vec<String> = front.iter().map(|p| format!("{:.1},{:.1}", sx(p.1), sy(p.2))).collect();
        let _ =
            writeln!(out, r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>"##, d.join(" "));
    }
    for &(i, x, y) in &pts {
        let c = &report.candidates[i];
        let fill = if !c.feasible {
            "#bbbbbb"
        } else if c.frontier {
            "#1f77b4"
        } else {
            "#9ecae1"
        };
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}"><title>{}</title></circle>"#,
            sx(x),
            sy(y),
            esc(&describe(&report.space, &c.values))
        );
        if Some(i) == report.best {
            let _ = writeln!(
                out,
                r##"<circle cx="{:.1}" cy="{:.1}" r="9" fill="none" stroke="#d62728" stroke-width="2"/>"##,
                sx(x),
                sy(y)
            );
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" fill="#d62728">best: {}</text>"##,
                (sx(x) + 12.0).min(W - 300.0),
                sy(y) - 12.0,
                esc(&c.values.join(", "))
            );
        }
    }
    let legend = [
        ("#1f77b4", "on the frontier, meets the constraints"),
        ("#9ecae1", "meets the constraints"),
        ("#bbbbbb", "does not"),
    ];
    for (k, (color, label)) in legend.iter().enumerate() {
        let y = T + 14.0 * k as f64;
        let _ = writeln!(out, r#"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="{color}"/>"#, W - 250.0);
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}">{label}</text>"#, W - 240.0, y + 4.0);
    }
    out.push_str("</svg>\n");
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
