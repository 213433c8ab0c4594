//! The chart: lines in use, calls in progress by class, callers waiting, what happened to
//! callers who did not get a line (refused, hung up, other overflow) and callback attempts,
//! and utilization over time, one section per scenario, as a self-contained SVG (no
//! script, no external font). The warm-up, not counted in the report, is shaded and has a
//! legend entry.

use super::report::{Report, SeriesLine};
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 170.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 215.0;
const TOP_GAP: f64 = 34.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `ticks` intervals over `span`.
fn nice_step(span: f64, ticks: f64) -> f64 {
    if span.is_nan() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / ticks;
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    mag * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A time step for the x axis, in seconds, and how to label it.
fn time_step(span_s: f64) -> f64 {
    for step in [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0] {
        if span_s / step <= 12.0 {
            return step;
        }
    }
    86_400.0 * (span_s / 86_400.0 / 12.0).ceil()
}

fn time_label(s: f64) -> String {
    let s = s.round() as u64;
    let (h, m) = (s / 3600, (s % 3600) / 60);
    if m == 0 {
        format!("{h}h")
    } else {
        format!("{h}h{m:02}")
    }
}

struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    lines: Vec<(&'a SeriesLine, Vec<f64>, Vec<f64>)>,
    limits: bool,
}

/// The chart of one or more reports.
pub fn chart(reports: &[Report]) -> String {
    let sections: Vec<f64> = reports.iter().map(|r| TOP_GAP + panels(r).len() as f64 * (PANEL_H + 40.0)).collect();
    let height: f64 = sections.iter().sum::<f64>() + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // One time axis for every scenario, so that side-by-side runs line up.
    let span_s = reports
        .iter()
        .map(|r| {
            let s = &r.series;
            let n = s.pools.first().map_or(0, |l| l.mean.len()).max(s.waiting.first().map_or(0, |l| l.mean.len()));
            n as f64 * s.bucket_s
        })
        .fold(1.0, f64::max);
    let mut y = 0.0;
    for (r, h) in reports.iter().zip(&sections) {
        section(&mut out, r, y, span_s);
        y += h;
    }
    out.push_str("</svg>\n");
    out
}

fn section(out: &mut String, r: &Report, y0: f64, span_s: f64) {
    let s = &r.series;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="15" font-weight="bold">{} — seed {}</text>"#,
        y0 + 22.0,
        esc(&r.scenario),
        r.seed
    );
    let mut y = y0 + TOP_GAP;
    for p in &panels(r) {
        panel(out, p, y, span_s, s.bucket_s, (s.window_start_s, s.window_end_s));
        y += PANEL_H + 40.0;
    }
}

/// The panels of one report: those with something to show.
fn panels(r: &Report) -> Vec<Panel<'_>> {
    let s = &r.series;
    let classes: Vec<_> = s
        .classes
        .iter()
        .filter(|l| l.mean.iter().any(|&v| v > 0.0))
        .map(|l| (l, l.mean.clone(), l.peak.clone()))
        .collect();
    let mut panels = vec![Panel {
        title: "Lines in use (mean per interval; light: peak)",
        unit: "lines",
        lines: s.pools.iter().map(|l| (l, l.mean.clone(), l.peak.clone())).collect(),
        limits: true,
    }];
    if !classes.is_empty() {
        panels.push(Panel {
            title: "Calls in progress by class (mean per interval; light: peak)",
            unit: "calls",
            lines: classes,
            limits: false,
        });
    }
    panels.extend([
        Panel {
            title: "Callers waiting (mean per interval; light: peak)",
            unit: "callers",
            lines: s.waiting.iter().map(|l| (l, l.mean.clone(), l.peak.clone())).collect(),
            limits: false,
        },
        Panel {
            title: "Utilization (mean lines in use / limit)",
            unit: "%",
            lines: s
                .pools
                .iter()
                .map(|l| {
                    let lim = f64::from(l.limit.unwrap_or(1).max(1));
                    (l, l.mean.iter().map(|v| 100.0 * v / lim).collect(), Vec::new())
                })
                .collect(),
            limits: false,
        },
    ]);
    if !s.outcomes.is_empty() {
        panels.insert(
            panels.len() - 1,
            Panel {
                title: "Callers not answered, and callback attempts (per hour, each interval)",
                unit: "per hour",
                lines: s.outcomes.iter().map(|l| (l, l.mean.clone(), Vec::new())).collect(),
                limits: false,
            },
        );
    }
    panels
}

fn panel(out: &mut String, p: &Panel<'_>, y0: f64, span_s: f64, bucket_s: f64, window: (f64, f64)) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (top, bottom) = (y0 + 18.0, y0 + PANEL_H);
    let mut ymax: f64 = 1.0;
    for (line, mean, peak) in &p.lines {
        ymax = ymax.max(mean.iter().chain(peak).copied().fold(0.0, f64::max));
        if p.limits {
            ymax = ymax.max(f64::from(line.limit.unwrap_or(0)));
        }
    }
    if p.unit == "%" {
        ymax = ymax.max(100.0);
    }
    let ystep = nice_step(ymax, 4.0);
    let ytop = (ymax / ystep).ceil() * ystep;
    let sx = |t: f64| x0 + (x1 - x0) * (t / span_s).clamp(0.0, 1.0);
    let sy = |v: f64| bottom - (bottom - top) * (v / ytop).clamp(0.0, 1.0);
    let _ = writeln!(out, r#"<text x="{x0}" y="{:.1}" font-weight="bold">{}</text>"#, y0 + 10.0, esc(p.title));
    // The warm-up, not counted in the report, is shaded.
    if window.0 > 0.0 {
        let _ = writeln!(
            out,
            r##"<rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="#f0f0f0"/>"##,
            sx(window.0) - x0,
            bottom - top
        );
    }
    let mut v = 0.0;
    while v <= ytop + 1e-9 {
        let yy = sy(v);
        let _ = writeln!(out, r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="#e4e4e4"/>"##);
        let label = if ystep < 1.0 { format!("{v:.1}") } else { format!("{v:.0}") };
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#, x0 - 6.0, yy + 4.0);
        v += ystep;
    }
    let tstep = time_step(span_s);
    let mut t = 0.0;
    while t <= span_s + 1e-9 {
        let xx = sx(t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{bottom}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/>"##,
            bottom + 4.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            time_label(t)
        );
        t += tstep;
    }
    let _ = writeln!(out, r##"<line x1="{x0}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="#333"/>"##);
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        esc(p.unit)
    );
    if p.lines.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#777">nobody waited</text>"##,
            (x0 + x1) / 2.0,
            (top + bottom) / 2.0
        );
    }
    for (k, (line, mean, peak)) in p.lines.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let path = |vals: &[f64]| {
            let mut d = String::new();
            for (i, v) in vals.iter().enumerate() {
                let tx = (i as f64 + 0.5) * bucket_s;
                let _ = write!(d, "{}{:.1},{:.1} ", if i == 0 { "M" } else { "L" }, sx(tx), sy(*v));
            }
            d
        };
        if !peak.is_empty() {
            let _ = writeln!(
                out,
                r#"<path d="{}" fill="none" stroke="{color}" stroke-opacity="0.3" stroke-width="1"/>"#,
                path(peak)
            );
        }
        let _ = writeln!(out, r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.8"/>"#, path(mean));
        if p.limits {
            if let Some(limit) = line.limit {
                let yy = sy(f64::from(limit));
                let _ = writeln!(
                    out,
                    r#"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="{color}" stroke-dasharray="5,4"/>"#
                );
            }
        }
        let ly = top + 14.0 * k as f64 + 8.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
            x1 + 12.0,
            x1 + 30.0
        );
        let label = match (p.limits, line.limit) {
            (true, Some(limit)) => format!("{} (limit {limit}, dashed)", line.name),
            _ => line.name.clone(),
        };
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x1 + 36.0, ly + 4.0, esc(&label));
    }
    if window.0 > 0.0 {
        let ly = top + 14.0 * p.lines.len() as f64 + 8.0;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="18" height="10" fill="#f0f0f0" stroke="#ccc"/>"##,
            x1 + 12.0,
            ly - 5.0
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}">warm-up (not counted)</text>"#, x1 + 36.0, ly + 4.0);
    }
}
