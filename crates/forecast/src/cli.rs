//! `callgate history import|exclude|include` and `callgate forecast`: both work on the
//! data directory's `history.sqlite` directly (beside a running server too), so history
//! can be imported and forecasts checked before callgate serves a single call.

use crate::backtest::{backtest, Backtest};
use crate::capacity::ServiceTarget;
use crate::history::{parse_file, Format, History, MAX_ERRORS};
use crate::report::{ForecastAnswer, Query, Report};
use crate::shortfall::{option_text, Campaign, Setting, Shortfall};
use crate::DAY;
use callgate_core::clock::{Clock, SystemClock};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where the history lives.
#[derive(Args, Debug, Clone)]
pub struct DataDir {
    /// The server's data directory (`[server] data_dir`); the history is its
    /// `history.sqlite`.
    #[arg(long, default_value = "callgate-data")]
    pub data_dir: PathBuf,
}

/// `callgate history …`
#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Import calls of the past: a CSV with a header (`started_at` in RFC 3339, optionally
    /// `ended_at`, `flow`, `number`, `outcome`, `id`), a Vapi `GET /call` export (JSON
    /// array) or a Twilio `Calls.json` page. All rows or none: a bad row is reported with
    /// its line and nothing is imported. Importing a file again adds nothing twice.
    Import {
        /// The file.
        file: PathBuf,
        /// The flow of calls whose row names none.
        #[arg(long)]
        flow: Option<String>,
        /// The file's shape (default: `.json` by its content, anything else CSV).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The data directory.
        #[command(flatten)]
        dir: DataDir,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark a day (UTC date, e.g. 2026-12-25) as one forecasts ignore: a holiday, an
    /// outage, a one-off campaign. Its intervals take the values of the week before.
    Exclude {
        /// The day.
        day: chrono::NaiveDate,
        /// Why (shown nowhere else; for the next person).
        #[arg(long)]
        reason: Option<String>,
        /// The data directory.
        #[command(flatten)]
        dir: DataDir,
    },
    /// Unmark a day marked with `exclude`.
    Include {
        /// The day.
        day: chrono::NaiveDate,
        /// The data directory.
        #[command(flatten)]
        dir: DataDir,
    },
}

/// `callgate forecast …`
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// The flow (default: every call of the account).
    #[arg(long)]
    pub flow: Option<String>,
    /// Days ahead, 1 to 14.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Weeks of history to learn from, 1 to 26.
    #[arg(long, default_value_t = 8)]
    pub weeks: u32,
    /// Forecast from this time (RFC 3339; default: now).
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The prediction interval's level, between 0 and 1.
    #[arg(long, default_value_t = crate::model::DEFAULT_LEVEL)]
    pub level: f64,
    /// Target: this share of callers answered within `--within` (for the `lines` column).
    #[arg(long, default_value_t = 0.8)]
    pub service_level: f64,
    /// Target answer time in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub within: f64,
    /// The callers' mean patience in seconds (Erlang A); 0: they wait as long as it takes
    /// (Erlang C).
    #[arg(long, default_value_t = 60.0)]
    pub patience: f64,
    /// The lines the account (or pool) has: intervals that need more are flagged, and
    /// the shortfall is summed up (when, how many lines, how many callers lost).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Lines a campaign holds while it dials, out of the --limit (its max_concurrency):
    /// the shortfall then also weighs shifting its calls out of the short intervals.
    #[arg(long, requires = "limit", value_name = "LINES", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub campaign_lines: Option<u32>,
    /// When the campaign dials, UTC, `HH:MM-HH:MM` (an end before the start spans
    /// midnight; default: around the clock).
    #[arg(long, requires = "campaign_lines", value_name = "HH:MM-HH:MM")]
    pub campaign_window: Option<String>,
    /// Mean length of the campaign's calls in seconds (to count the calls moved).
    #[arg(long, requires = "campaign_lines", default_value_t = crate::report::ASSUMED_AHT_S)]
    pub campaign_aht: f64,
    /// Prices from the [pricing] section of this TOML file (a callgate.toml, a scenario
    /// or a file of prices): `lost_caller`, `per_line_month` and `campaign_call` price
    /// the shortfall's choices.
    #[arg(long, requires = "limit", value_name = "FILE")]
    pub pricing: Option<PathBuf>,
    /// One JSON object per interval (a JSON array).
    #[arg(long, conflicts_with_all = ["svg", "backtest"])]
    pub json: bool,
    /// Draw the forecast and its interval over the last week of history into this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Score the model on the last weeks held out (WAPE per day ahead) next to a
    /// seasonal-naive baseline, instead of forecasting.
    #[arg(long)]
    pub backtest: bool,
    /// Weeks held out by `--backtest` (one cut per week).
    #[arg(long, default_value_t = 2)]
    pub folds: u32,
    /// The data directory.
    #[command(flatten)]
    pub dir: DataDir,
}

/// Runs `callgate history …`.
pub fn run_history(command: HistoryCommand) -> Result<(), String> {
    match command {
        HistoryCommand::Import { file, flow, format, dir, json } => {
            import(&file, flow.as_deref(), format, &dir.data_dir, json)
        }
        HistoryCommand::Exclude { day, reason, dir } => {
            let mut h = History::open(&dir.data_dir).map_err(|e| e.message)?;
            h.exclude(day, reason.as_deref()).map_err(|e| e.message)?;
            out(&format!(
                "{day} is ignored by forecasts ({} days marked)\n",
                h.excluded().map_err(|e| e.message)?.len()
            ))
        }
        HistoryCommand::Include { day, dir } => {
            let mut h = History::open(&dir.data_dir).map_err(|e| e.message)?;
            let was = h.include(day).map_err(|e| e.message)?;
            out(&if was { format!("{day} counts again\n") } else { format!("{day} was not marked\n") })
        }
    }
}

fn import(file: &Path, flow: Option<&str>, format: Option<Format>, dir: &Path, json: bool) -> Result<(), String> {
    // Rows to come, for the bar: a CSV's lines (less the header); a JSON export shows a
    // spinner with the count.
    let total = match format {
        Some(Format::Vapi | Format::Twilio) => None,
        _ if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) => None,
        _ => std::fs::read(file).ok().map(|b| bytecount(&b).saturating_sub(1)),
    };
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} rows {per_sec} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut n = 0u64;
    let parsed = parse_file(file, format, flow, || {
        n += 1;
        if n & 1023 == 0 {
            bar.set_position(n);
        }
    });
    bar.set_position(n);
    let (format, parsed) = parsed.inspect_err(|_| bar.abandon()).map_err(|e| e.message)?;
    if parsed.refused > 0 {
        bar.abandon();
        let mut msg =
            format!("{}: {} of {} rows refused, nothing imported:\n", file.display(), parsed.refused, parsed.rows);
        for e in &parsed.errors {
            let _ = writeln!(msg, "  line {}: {}", e.row, e.message);
        }
        if parsed.refused as usize > MAX_ERRORS {
            let _ = writeln!(msg, "  … and {} more", parsed.refused as usize - MAX_ERRORS);
        }
        if json {
            let _ = out(&format!(
                "{}\n",
                serde_json::json!({ "imported": false, "refused": parsed.refused, "errors": parsed.errors })
            ));
        }
        return Err(msg.trim_end().to_owned());
    }
    bar.set_message("writing");
    let mut history = History::open(dir).map_err(|e| e.message)?;
    let done = history.add(format.as_str(), &parsed.calls).map_err(|e| e.message)?;
    let took = bar.elapsed();
    bar.finish_and_clear();
    if json {
        return out(&format!(
            "{}\n",
            serde_json::json!({ "imported": true, "format": format, "rows": parsed.rows, "added": done.added,
                "already_present": done.already_present, "skipped_outbound": parsed.skipped,
                "history": history.path() })
        ));
    }
    out(&format!(
        "{}: {} calls read as {} in {:.1}s: {} added, {} already present{}; history in {}\n",
        file.display(),
        parsed.calls.len(),
        format.as_str(),
        took.as_secs_f64(),
        done.added,
        done.already_present,
        if parsed.skipped > 0 { format!(", {} outbound skipped", parsed.skipped) } else { String::new() },
        history.path().display()
    ))
}

fn bytecount(b: &[u8]) -> u64 {
    let lines = b.iter().filter(|&&c| c == b'\n').count() as u64;
    lines + u64::from(!b.is_empty() && !b.ends_with(b"\n"))
}

/// Runs `callgate forecast …`.
pub fn run_forecast(args: ForecastArgs) -> Result<(), String> {
    let now = match args.from {
        Some(t) => u64::try_from(t.timestamp_millis()).map_err(|_| "--from is before 1970".to_owned())?,
        None => SystemClock.now_ms(),
    };
    let history = History::open(&args.dir.data_dir).map_err(|e| e.message)?;
    let target = ServiceTarget {
        service_level: args.service_level,
        within_s: args.within,
        patience_s: (args.patience > 0.0).then_some(args.patience),
    };
    let query =
        Query { flow: args.flow.clone(), days: args.days, weeks: args.weeks, level: args.level, target, now_ms: now };
    let series = query.series(&history).map_err(|e| e.message)?;
    if args.backtest {
        let b = backtest(&series, args.days, args.folds).map_err(|e| e.message)?;
        return out(&backtest_text(&query, &b));
    }
    let report = Report::from_series(&query, &series).map_err(|e| e.message)?;
    let setting = args.limit.map(|limit| setting(&args, limit, &report)).transpose()?;
    let shortfall = match &setting {
        Some(set) => Some(report.shortfall(&query, set).map_err(|e| e.message)?),
        None => None,
    };
    if args.json {
        let answer = ForecastAnswer { shortfall, ..ForecastAnswer::new(&query, &series, report) };
        let text = serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?;
        return out(&format!("{text}\n"));
    }
    if let Some(path) = &args.svg {
        let title = format!("{}: forecast for {} days from {}", flow_name(&query), args.days, report.from);
        let svg = crate::svg::draw(&title, &series, crate::WEEK, &report.points);
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return out(&format!("wrote {} ({} intervals forecast)\n", path.display(), report.points.len()));
    }
    let mut text = table(&query, &report, setting.as_ref());
    if let Some(s) = &shortfall {
        text.push_str(&shortfall_text(s));
    }
    out(&text)
}

/// The pool, campaign and prices of the command line.
fn setting(args: &ForecastArgs, limit: u32, report: &Report) -> Result<Setting, String> {
    let pricing = match &args.pricing {
        Some(path) => Some(callgate_plan::cost::pricing_from_file(path).map_err(|e| e.message)?),
        None => None,
    };
    let mut campaigns = Vec::new();
    if let Some(lines) = args.campaign_lines {
        if !(args.campaign_aht.is_finite() && args.campaign_aht > 0.0) {
            return Err("--campaign-aht must be more than 0 seconds".to_owned());
        }
        let dialing = match &args.campaign_window {
            None => Vec::new(),
            Some(w) => {
                let (start, end) = window(w)?;
                report
                    .points
                    .iter()
                    .map(|p| {
                        let minute = (p.start_ms / 60_000 % (24 * 60)) as u32;
                        if start <= end {
                            (start..end).contains(&minute)
                        } else {
                            minute >= start || minute < end
                        }
                    })
                    .collect()
            }
        };
        campaigns.push(Campaign { name: "campaign".to_owned(), lines, aht_s: args.campaign_aht, dialing });
    }
    Ok(Setting { limit, campaigns, pricing })
}

/// `HH:MM-HH:MM` as minutes after midnight.
fn window(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--campaign-window must be HH:MM-HH:MM (e.g. 09:00-17:00), not {text:?}");
    let minutes = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && m.to_string().len() <= 2 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
    if a == b {
        return Err(format!("--campaign-window {text:?} is empty"));
    }
    Ok((a, b))
}

fn lines(n: u32, what: &str) -> String {
    format!("{n} line{} {what}", if n == 1 { "" } else { "s" })
}

fn plural(n: f64, what: &str) -> String {
    format!("{n:.0} {what}{}", if (n - 1.0).abs() < 1e-9 { "" } else { "s" })
}

/// The shortfall, for people.
pub fn shortfall_text(s: &Shortfall) -> String {
    let mut out = String::new();
    let campaign =
        if s.campaign_lines > 0 { format!(" (with the campaign's {} lines)", s.campaign_lines) } else { String::new() };
    let _ =
        writeln!(out, "{} intervals need more than the {} lines the account has{campaign}", s.short_intervals, s.limit);
    if s.short_intervals == 0 {
        return out;
    }
    if let Some(first) = s.periods.first() {
        let worst = s.periods.iter().map(|p| p.lines_short).max().unwrap_or(0);
        let _ = writeln!(out, "first at {}, at most {}", first.start, lines(worst, "short"));
    }
    for p in &s.periods {
        let lost = p.lost_callers.map_or(String::new(), |n| format!(", about {n:.0} callers lost"));
        let alone =
            if p.inbound_short > 0 { format!(" (inbound alone {} short)", p.inbound_short) } else { String::new() };
        let _ = writeln!(
            out,
            "  short {} to {}: {} interval{}, {}{alone}{lost}",
            p.start,
            // The end's time, or all of it on another day.
            if p.end.get(..10) == p.start.get(..10) { p.end.get(11..16).unwrap_or_default() } else { &p.end },
            p.intervals,
            if p.intervals == 1 { "" } else { "s" },
            lines(p.lines_short, "short")
        );
    }
    if s.periods_left_off > 0 {
        let _ = writeln!(out, "  … and {} more", s.periods_left_off);
    }
    let money = |v: Option<f64>| match (v, &s.currency) {
        (Some(v), Some(c)) => format!("{c}{v:.2}"),
        _ => "-".to_owned(),
    };
    let _ = writeln!(out, "the choices over the forecast's {}:", plural(s.days, "day"));
    let _ = writeln!(
        out,
        "  {:<16} {:>6} {:>8} {:>8} {:>8} {:>10}",
        "choice", "+lines", "lost", "moved", "unplaced", "cost"
    );
    for c in &s.choices {
        let lost = c.lost_callers.map_or("-".to_owned(), |n| format!("{n:.1}"));
        let _ = writeln!(
            out,
            "  {:<16} {:>6} {:>8} {:>8.1} {:>8.1} {:>10}",
            option_text(c.option),
            c.extra_lines,
            lost,
            c.moved_calls,
            c.unplaced_calls,
            money(c.total)
        );
    }
    if let (Some(best), Some(per_line), Some(month)) = (s.cheapest, s.per_line_month, s.days_per_month) {
        let c = s.choices.iter().find(|c| c.option == best);
        let _ = writeln!(out, "cheapest: {} ({})", option_text(best), money(c.and_then(|c| c.total)));
        if s.choices.iter().any(|c| c.extra_lines > 0) {
            let _ = writeln!(
                out,
                "(lines prorated: {} of {month} a month; bought for these days alone, a line costs a whole month: {})",
                plural(s.days, "day"),
                money(Some(per_line))
            );
        }
    }
    if let Some(note) = &s.note {
        let _ = writeln!(out, "{note}");
    }
    out
}

fn flow_name(q: &Query) -> String {
    q.flow.as_ref().map_or("the account".to_owned(), |f| format!("flow {f}"))
}

fn table(q: &Query, r: &Report, setting: Option<&Setting>) -> String {
    let mut s = format!(
        "{}: {} days from {} ({} of history, interval {:.0}%, lines for {:.0}% within {}s)\n",
        flow_name(q),
        q.days,
        r.from,
        days(r.history_intervals),
        q.level * 100.0,
        q.target.service_level * 100.0,
        q.target.within_s
    );
    let _ =
        writeln!(s, "{:<21} {:>8} {:>8} {:>8} {:>6} {:>6}", "start (UTC)", "arrivals", "low", "high", "aht_s", "lines");
    for (i, row) in r.intervals.iter().enumerate() {
        let flag = match setting {
            Some(set) if row.lines.saturating_add(set.campaign_lines_at(i)) > set.limit => {
                format!("  needs {} more", row.lines.saturating_add(set.campaign_lines_at(i)) - set.limit)
            }
            _ => String::new(),
        };
        let aht = row.aht_s.map_or("-".to_owned(), |a| a.to_string());
        let _ = writeln!(
            s,
            "{:<21} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>6}{flag}",
            row.start, row.arrivals, row.low, row.high, aht, row.lines
        );
    }
    s
}

fn days(intervals: usize) -> String {
    format!("{:.1} days", intervals as f64 / DAY as f64)
}

fn backtest_text(q: &Query, b: &Backtest) -> String {
    let mut s = format!(
        "{}: backtest over the last {} weeks held out, {} days ahead (WAPE, lower is better)\n",
        flow_name(q),
        b.folds,
        b.days
    );
    let _ = writeln!(s, "{:>4} {:>10} {:>15}", "day", "forecast", "seasonal naive");
    for d in &b.by_day {
        let _ = writeln!(s, "{:>4} {:>9.1}% {:>14.1}%", d.day, d.wape * 100.0, d.naive_wape * 100.0);
    }
    let _ = writeln!(s, " all {:>9.1}% {:>14.1}%", b.wape * 100.0, b.naive_wape * 100.0);
    s
}

fn out(text: &str) -> Result<(), String> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes()).and_then(|()| o.flush()).map_err(|e| format!("cannot write: {e}"))
}
