//! Capacity planning (Erlang B, C, A; staffing; cost; campaigns) and the policy simulator.
//!
//! - [`erlang`]: the queueing formulas and the inverse questions (fewest lines for a
//!   target), exact up to a million lines and a million erlangs.
//! - [`cost`] and [`campaign`]: what lines and minutes cost, and how long a campaign takes.
//! - [`sim`]: a discrete-event simulation that drives the real ledger
//!   (`callgate_core::Ledger`) on a virtual clock, from a scenario file.
//! - [`tune`]: a search of a scenario's policy space with the simulator (`callgate tune`).
//! - [`cli`]: `callgate plan …`, `callgate simulate …` and `callgate tune …`, wired by the
//!   `callgate` binary.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod campaign;
pub mod cli;
pub mod cost;
pub mod erlang;
pub mod sim;
mod text;
pub mod tune;

use std::fmt;

/// Whose fault an error is, as data (the CLI prints every kind the same way, tests and
/// other callers can tell them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad option or value given on the command line or through the API.
    Input,
    /// A scenario (or pricing) file that cannot be used; the message names the file, the
    /// line and the field.
    Scenario,
    /// A file that cannot be read or written.
    Io,
}

/// The error type of this crate: its kind and a message meant for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// Whose fault it is.
    pub kind: ErrorKind,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl PlanError {
    /// A bad input value.
    pub fn input(message: impl Into<String>) -> Self {
        PlanError { kind: ErrorKind::Input, message: message.into() }
    }

    /// A problem in a scenario file.
    pub fn scenario(message: impl Into<String>) -> Self {
        PlanError { kind: ErrorKind::Scenario, message: message.into() }
    }

    /// A file that cannot be read or written.
    pub fn io(message: impl Into<String>) -> Self {
        PlanError { kind: ErrorKind::Io, message: message.into() }
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanError {}
