//! Demand forecasts from call history: what inbound callers will offer per 15-minute
//! interval, and the lines that takes.
//!
//! - [`history`]: the calls of the past (imported from a CSV file or a Vapi or Twilio
//!   export, or recorded by a running server) in `history.sqlite` in the data directory,
//!   and the days marked to be ignored.
//! - [`series`]: those calls counted per 15-minute interval, per flow or for the account.
//! - [`model`]: arrivals and mean handling time for the next 1–14 days, with prediction
//!   intervals, by Grafana's `augurs` (MSTL with daily and weekly seasons, AutoETS for the
//!   trend); and the seasonal-naive baseline it must beat.
//! - [`backtest`]: the model's accuracy (WAPE per day ahead) on the last weeks held out,
//!   next to the baseline's.
//! - [`capacity`]: the lines each interval needs for a service level, by Erlang A (the
//!   formulas of `callgate-plan`).
//! - [`shortfall`]: where the forecast needs more lines than the pool has, what that
//!   loses, and whether buying lines or shifting the campaign is cheaper.
//! - [`cli`]: `callgate history …` and `callgate forecast …`, wired by the binary.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod backtest;
pub mod capacity;
pub mod cli;
pub mod history;
pub mod model;
pub mod report;
pub mod series;
pub mod shortfall;
mod svg;

use std::fmt;

/// The length of one forecast interval: 15 minutes, the contact-centre convention.
pub const INTERVAL_MS: u64 = 15 * 60 * 1000;
/// Intervals in a day.
pub const DAY: usize = 96;
/// Intervals in a week.
pub const WEEK: usize = 7 * DAY;
/// The longest forecast, in days.
pub const MAX_DAYS: u32 = 14;

/// Whose fault an error is, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad option, value or file given by the user (the message says which row).
    Input,
    /// Too little history to forecast from (import more, or wait).
    NotEnoughHistory,
    /// A file or the history database cannot be read or written.
    Io,
    /// The forecasting library failed on this series.
    Model,
}

/// The error type of this crate: its kind and a message meant for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForecastError {
    /// Whose fault it is.
    pub kind: ErrorKind,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl ForecastError {
    /// A bad input.
    pub fn input(message: impl Into<String>) -> Self {
        ForecastError { kind: ErrorKind::Input, message: message.into() }
    }

    /// Too little history.
    pub fn not_enough(message: impl Into<String>) -> Self {
        ForecastError { kind: ErrorKind::NotEnoughHistory, message: message.into() }
    }

    /// A file or database problem.
    pub fn io(message: impl Into<String>) -> Self {
        ForecastError { kind: ErrorKind::Io, message: message.into() }
    }

    /// The model failed.
    pub fn model(message: impl Into<String>) -> Self {
        ForecastError { kind: ErrorKind::Model, message: message.into() }
    }
}

impl fmt::Display for ForecastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ForecastError {}

impl From<rusqlite::Error> for ForecastError {
    fn from(e: rusqlite::Error) -> Self {
        ForecastError::io(format!("history database: {e}"))
    }
}

/// The start of the interval that holds `ms` (Unix ms).
pub fn interval_start(ms: u64) -> u64 {
    ms - ms % INTERVAL_MS
}
