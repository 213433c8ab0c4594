//! What lines and minutes cost: reading a `[pricing]` section from any TOML file, and the
//! monthly arithmetic. The section itself is `callgate_config::Pricing` (the server's
//! configuration has one too, for the forecast's cost of a shortfall).

use crate::PlanError;
pub use callgate_config::Pricing;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Reads the `[pricing]` section of any TOML file (a scenario, a callgate.toml, or a file
/// holding only prices). A file without one gives the defaults (everything free).
pub fn pricing_from_file(path: &Path) -> Result<Pricing, PlanError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::io(format!("{}: cannot read the file: {e}", path.display())))?;
    pricing_from_toml_str(&text, path)
}

/// Like [`pricing_from_file`], from text already read.
pub fn pricing_from_toml_str(text: &str, path: &Path) -> Result<Pricing, PlanError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        pricing: Option<Pricing>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| crate::sim::line_at(text, s.start));
        PlanError::scenario(format!(
            "{}{}: {}",
            path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default(),
            e.message().trim()
        ))
    })?;
    let pricing = doc.pricing.unwrap_or_default();
    if let Some((field, message)) = pricing.problems().into_iter().next() {
        return Err(PlanError::scenario(format!("{}: pricing.{field}: {message}", path.display())));
    }
    Ok(pricing)
}

/// The monthly cost of a number of lines and the minutes they carry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MonthlyCost {
    /// Lines paid for.
    pub lines: u32,
    /// `lines × per_line_month`.
    pub lines_cost: f64,
    /// Minutes of call carried in a month.
    pub minutes: f64,
    /// `minutes × per-minute price`.
    pub minutes_cost: f64,
    /// Minutes callers spend waiting in a month.
    pub waiting_minutes: f64,
    /// `waiting_minutes × waiting_per_min`.
    pub waiting_cost: f64,
    /// Everything together.
    pub total: f64,
}

impl MonthlyCost {
    /// `lines` lines carrying `carried_erlangs` (answered calls on average in progress)
    /// with `waiting_erlangs` callers waiting on average, for `hours_per_day` hours a
    /// day, every day of the month.
    pub fn new(
        pricing: &Pricing,
        lines: u32,
        carried_erlangs: f64,
        waiting_erlangs: f64,
        hours_per_day: f64,
    ) -> MonthlyCost {
        let minutes_per_erlang = 60.0 * hours_per_day * pricing.days_per_month;
        let minutes = carried_erlangs * minutes_per_erlang;
        let waiting_minutes = waiting_erlangs * minutes_per_erlang;
        let lines_cost = f64::from(lines) * pricing.per_line_month;
        let minutes_cost = minutes * pricing.per_minute_total();
        let waiting_cost = waiting_minutes * pricing.waiting_per_min;
        MonthlyCost {
            lines,
            lines_cost,
            minutes,
            minutes_cost,
            waiting_minutes,
            waiting_cost,
            total: lines_cost + minutes_cost + waiting_cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_of_ten_busy_lines_costs_lines_plus_minutes() {
        let pricing = Pricing { per_minute: 0.10, per_line_month: 10.0, ..Pricing::default() };
        // 8 erlangs carried for 8 hours a day, 30 days: 8 × 60 × 8 × 30 = 115,200 minutes.
        let c = MonthlyCost::new(&pricing, 10, 8.0, 0.0, 8.0);
        assert_eq!(c.minutes, 115_200.0);
        assert!((c.total - (100.0 + 11_520.0)).abs() < 1e-9);
    }

    #[test]
    fn a_pricing_section_is_read_from_any_toml_file() {
        let text = "[[pools]]\nname = \"p\"\nlimit = 3\n\n[pricing]\nplatform_per_min = 0.05\n\
                    model_per_min = 0.02\nper_line_month = 10\n";
        let p = pricing_from_toml_str(text, Path::new("s.toml")).unwrap();
        assert!((p.per_minute_total() - 0.07).abs() < 1e-12);
        let bad = "[pricing]\nper_minute = -1\n";
        let e = pricing_from_toml_str(bad, Path::new("s.toml")).unwrap_err();
        assert!(e.message.contains("pricing.per_minute"), "{e}");
        let unknown = "[pricing]\nper_minit = 1\n";
        let e = pricing_from_toml_str(unknown, Path::new("s.toml")).unwrap_err();
        assert!(e.message.starts_with("s.toml:2:"), "{e}");
    }
}
