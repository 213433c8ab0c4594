//! A progress bar on stderr for long simulations, drawn by hand (no terminal crate):
//! only when stderr is a terminal, redrawn only when the whole percent changes, and
//! erased at the end so that it never mixes with the report.

use std::io::Write as _;

const WIDTH: usize = 30;

/// The bar of one run.
pub(crate) struct ProgressBar {
    label: String,
    enabled: bool,
    shown: Option<u32>,
}

impl ProgressBar {
    /// A bar that draws only when `enabled`.
    pub(crate) fn new(label: &str, enabled: bool) -> ProgressBar {
        ProgressBar { label: label.to_owned(), enabled, shown: None }
    }

    /// Shows `done` (0 to 1).
    pub(crate) fn update(&mut self, done: f64) {
        if !self.enabled {
            return;
        }
        let percent = (done.clamp(0.0, 1.0) * 100.0).floor() as u32;
        if self.shown == Some(percent) {
            return;
        }
        self.shown = Some(percent);
        let filled = percent as usize * WIDTH / 100;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {percent:>3}% simulating {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.label
        );
        let _ = err.flush();
    }

    /// Erases the bar.
    pub(crate) fn finish(&mut self) {
        if self.enabled && self.shown.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(WIDTH + 20 + self.label.chars().count()));
            let _ = err.flush();
        }
    }
}
