//! The forecast drawn as SVG: recent history as a grey line, the forecast as a blue line
//! inside its shaded prediction interval, a dashed line where the forecast begins.

use crate::model::Interval;
use crate::series::Series;
use crate::INTERVAL_MS;
use std::fmt::Write as _;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// `history`'s last `recent` intervals and `forecast`, as an SVG document.
pub(crate) fn draw(title: &str, history: &Series, recent: usize, forecast: &[Interval]) -> String {
    let skip = history.len().saturating_sub(recent);
    let past: Vec<(u64, f64)> = (skip..history.len()).map(|i| (history.start_of(i), history.arrivals[i])).collect();
    let t0 = past.first().map(|p| p.0).or(forecast.first().map(|f| f.start_ms)).unwrap_or(0);
    let t1 =
        forecast.last().map(|f| f.start_ms + INTERVAL_MS).or(past.last().map(|p| p.0 + INTERVAL_MS)).unwrap_or(t0 + 1);
    let top = past.iter().map(|p| p.1).chain(forecast.iter().map(|f| f.high)).fold(1.0f64, f64::max);
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0).max(1) as f64 * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    // Axes: calls per 15 minutes, and a tick per day (UTC midnight).
    let base = HEIGHT - BOTTOM;
    let _ = writeln!(out, r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#444"/>"##, WIDTH - RIGHT);
    let _ = writeln!(out, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#444"/>"##);
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let _ = writeln!(out, r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"#, LEFT - 6.0, y(v) + 4.0);
    }
    let day = 96 * INTERVAL_MS;
    let mut t = t0.div_ceil(day) * day;
    while t < t1 {
        let date = chrono::DateTime::from_timestamp_millis(t as i64)
            .map(|d| d.format("%a %d").to_string())
            .unwrap_or_default();
        let _ =
            writeln!(out, r##"<line x1="{0:.1}" y1="{base}" x2="{0:.1}" y2="{1}" stroke="#444"/>"##, x(t), base + 4.0);
        let _ = writeln!(out, r#"<text x="{:.1}" y="{}" text-anchor="middle">{date}</text>"#, x(t), base + 18.0);
        t += day;
    }
    if !forecast.is_empty() {
        let mut band = String::new();
        for f in forecast {
            let _ = write!(band, "{:.1},{:.1} ", x(f.start_ms), y(f.high));
        }
        for f in forecast.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(f.start_ms), y(f.low));
        }
        let _ = writeln!(out, r##"<polygon points="{band}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>"##);
        let line: String = forecast.iter().map(|f| format!("{:.1},{:.1} ", x(f.start_ms), y(f.arrivals))).collect();
        let _ = writeln!(out, r##"<polyline points="{line}" fill="none" stroke="#08519c" stroke-width="1.5"/>"##);
        let cut = x(forecast[0].start_ms);
        let _ = writeln!(
            out,
            r##"<line x1="{cut:.1}" y1="{TOP}" x2="{cut:.1}" y2="{base}" stroke="#888" stroke-dasharray="4 3"/>"##
        );
    }
    if !past.is_empty() {
        let line: String = past.iter().map(|&(t, v)| format!("{:.1},{:.1} ", x(t), y(v))).collect();
        let _ = writeln!(out, r##"<polyline points="{line}" fill="none" stroke="#666" stroke-width="1"/>"##);
    }
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#444">calls per 15 minutes (UTC): history grey, forecast blue with its interval</text>"##,
        WIDTH - RIGHT,
        TOP - 6.0
    );
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
