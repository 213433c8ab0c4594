//! Formatting for the readable reports: aligned tables, counts, shares, times, money.

use std::fmt::Write as _;

/// A plain-text table: a header row and right-aligned cells (the first column left).
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    left: Vec<usize>,
}

impl Table {
    pub(crate) fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table { headers: headers.iter().map(|h| h.as_ref().to_owned()).collect(), rows: Vec::new(), left: vec![0] }
    }

    /// Aligns column `i` to the left (the first column always is).
    pub(crate) fn left(mut self, i: usize) -> Table {
        self.left.push(i);
        self
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table with each line indented by `indent` spaces, ending in a newline.
    pub(crate) fn render(&self, indent: usize) -> String {
        let cols = self.headers.len();
        let mut width = vec![0usize; cols];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, w) in width.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                if self.left.contains(&i) {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// `12345` as `12,345`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits.as_bytes().rchunks(3).rev().map(|g| std::str::from_utf8(g).unwrap_or("")).collect();
    groups.join(",")
}

/// A share as a percentage with one decimal (`0.8123` as `81.2%`), `-` for NaN.
pub(crate) fn pct(share: f64) -> String {
    if share.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * share)
    }
}

/// A share as a percentage with two decimals, for small figures (blocking, abandonment).
pub(crate) fn pct2(share: f64) -> String {
    if share.is_nan() {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * share)
    }
}

/// Seconds for a person: `0.4s`, `12.3s`, `4m05s`, `2h10m`, `3d4h`.
pub(crate) fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "∞".into();
    }
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s.round() as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if whole < 172_800 {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    } else {
        format!("{}d{}h", whole / 86_400, (whole % 86_400) / 3600)
    }
}

/// An amount of money with its currency symbol and thousands separators.
pub(crate) fn money(currency: &str, amount: f64) -> String {
    if !amount.is_finite() {
        return "-".into();
    }
    let cents = (amount.abs() * 100.0).round() as u64;
    let sign = if amount < 0.0 && cents > 0 { "-" } else { "" };
    format!("{sign}{currency}{}.{:02}", count(cents / 100), cents % 100)
}

/// A number with `decimals` decimals and thousands separators in the whole part.
pub(crate) fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (whole, frac) = s.split_once('.').map_or((s.as_str(), ""), |(w, f)| (w, f));
    let whole = count(whole.parse().unwrap_or(0));
    let sign = if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_way_people_write_them() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(pct(0.8123), "81.2%");
        assert_eq!(secs(12.34), "12.3s");
        assert_eq!(secs(245.0), "4m05s");
        assert_eq!(secs(7_830.0), "2h10m");
        assert_eq!(secs(86_400.0), "24h00m");
        assert_eq!(secs(3.0 * 86_400.0 + 7_200.0), "3d2h");
        assert_eq!(money("$", 1234.5), "$1,234.50");
        assert_eq!(num(12345.678, 1), "12,345.7");
        assert_eq!(num(-3.5, 1), "-3.5");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut t = Table::new(&["flow", "calls"]);
        t.row(vec!["support".into(), "12".into()]);
        t.row(vec!["sales".into(), "1,024".into()]);
        assert_eq!(t.render(2), "  flow     calls\n  support     12\n  sales    1,024\n");
    }
}
