//! The standard `process_*` metrics that Prometheus client libraries export, read from
//! `/proc/self` on Linux at each scrape. Elsewhere (no `/proc`) they are left out rather
//! than shown as zeros: an absent series says "unknown", a zero says "none".

use super::header;
use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc/self/stat`: `USER_HZ`, which the Linux
/// ABI fixes at 100 on every architecture (sysconf would need `unsafe` or a libc crate
/// for a constant).
const USER_HZ: f64 = 100.0;

/// What one scrape read; `None` for what could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Process {
    /// User plus system CPU time (seconds).
    pub cpu_seconds: Option<f64>,
    /// Resident memory (bytes).
    pub resident_bytes: Option<u64>,
    /// Virtual memory (bytes).
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time (Unix seconds).
    pub start_time_seconds: Option<f64>,
}

impl Process {
    /// Reads `/proc/self` (and `/proc/stat` for the boot time).
    pub fn read() -> Process {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
        // Fields after the command name, numbered as in proc(5) from 3 (state).
        let field = |n: usize| fields.get(n.wrapping_sub(3)).and_then(|f| f.parse::<u64>().ok());
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok()));
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let kb = |key: &str| {
            status.as_deref().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .map(|k| k * 1024)
            })
        };
        Process {
            cpu_seconds: field(14).zip(field(15)).map(|(u, s)| (u + s) as f64 / USER_HZ),
            resident_bytes: kb("VmRSS:"),
            virtual_bytes: kb("VmSize:"),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(max_open_files),
            start_time_seconds: boot.zip(field(22)).map(|(b, t)| b as f64 + t as f64 / USER_HZ),
        }
    }

    /// Appends the Prometheus text of what was read.
    pub fn render(&self, out: &mut String) {
        let metrics: [(&str, &str, &str, Option<f64>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.map(|b| b as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes.map(|b| b as f64),
            ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds.map(|n| n as f64)),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds.map(|n| n as f64)),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in metrics {
            if let Some(v) = value {
                header(out, name, kind, help);
                let _ = writeln!(out, "{name} {v}");
            }
        }
    }
}

/// The fields of `/proc/self/stat` after the command name (which is in parentheses and
/// may itself hold spaces and parentheses, so it ends at the last `)`).
fn stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Appends the process metrics of this process.
pub fn render(out: &mut String) {
    Process::read().render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "4242 (call gate (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000 200";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[14 - 3], "250", "utime");
        assert_eq!(f[15 - 3], "50", "stime");
        assert_eq!(f[22 - 3], "12345", "starttime");
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            65536                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(65536));
        assert_eq!(max_open_files("Max open files unlimited unlimited files"), None);
    }

    #[test]
    fn what_cannot_be_read_is_left_out_not_zero() {
        let mut out = String::new();
        Process { open_fds: Some(12), ..Process::default() }.render(&mut out);
        assert!(out.contains("process_open_fds 12\n"), "{out}");
        assert!(!out.contains("process_resident_memory_bytes"), "{out}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn on_linux_every_figure_is_read() {
        let p = Process::read();
        assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(p.max_fds.is_some_and(|n| n >= p.open_fds.unwrap_or(0)), "{p:?}");
        assert!(p.cpu_seconds.is_some(), "{p:?}");
        assert!(p.start_time_seconds.is_some_and(|t| t > 1.0e9), "{p:?}");
    }
}
