//! Writing results to stdout so that a reader who stops early (`callgate status --json |
//! head -c1`) ends the command quietly instead of a panic ("failed printing to stdout").

use std::io::Write;

/// Why a command stopped without finishing.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nobody reads stdout any more: stop quietly, exit 0.
    Closed,
    /// A problem to show on stderr (exit 1).
    Message(String),
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Message(m)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::Closed
        } else {
            Failure::Message(format!("cannot write the output: {e}"))
        }
    }
}

/// Writes `text` to stdout and flushes it.
pub(crate) fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `line` and a newline to stdout.
pub(crate) fn line(line: impl std::fmt::Display) -> Result<(), Failure> {
    print(&format!("{line}\n"))
}

/// For output written with `println!` by commands that predate this module (campaign,
/// plan, simulate): a closed stdout ends the process quietly (exit 0) instead of printing
/// a panic. Any other panic is reported as before.
pub(crate) fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
