//! `revgate_build_info` and the standard `process_*` metrics of the Prometheus client
//! libraries (resident and virtual memory, CPU seconds, open and maximum file
//! descriptors, start time), read from `/proc/self` at each scrape. Off Linux (no
//! `/proc`) the `process_*` series are left out; `revgate_build_info` is always there.

use std::fmt::Write as _;

/// The commit the binary was built from: `git rev-parse` at build time (`build.rs`), or
/// `unknown` when the source was not a git checkout.
pub const BUILD_COMMIT: &str = env!("REVGATE_BUILD_COMMIT");

/// Clock ticks per second of the CPU times in `/proc/self/stat` (`USER_HZ`): the kernel
/// reports them in this unit on every architecture Linux runs revgate on (reading it
/// through `sysconf(_SC_CLK_TCK)` would need `unsafe` FFI, which this crate forbids).
pub const USER_HZ: f64 = 100.0;

/// What `/proc` says about this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_bytes: u64,
    /// Virtual memory size in bytes (`VmSize`).
    pub virtual_bytes: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Start of the process, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
}

/// Reads [`ProcessStats`] of this process; `None` without a readable `/proc`.
pub fn read_self() -> Option<ProcessStats> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let (cpu_ticks, start_ticks) = parse_stat(&stat)?;
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some(ProcessStats {
        resident_bytes: status_kib(&status, "VmRSS:")? * 1024,
        virtual_bytes: status_kib(&status, "VmSize:")? * 1024,
        cpu_seconds: cpu_ticks as f64 / USER_HZ,
        start_time_seconds: btime as f64 + start_ticks as f64 / USER_HZ,
        // The listing itself holds one descriptor while it runs.
        open_fds: open_fds.saturating_sub(1),
        max_fds: max_open_files(&limits),
    })
}

/// `name  N kB` of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `(utime + stime, starttime)` in clock ticks from `/proc/self/stat`. The command name
/// (field 2) is in parentheses and may hold spaces or parentheses itself, so fields are
/// counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((field(14)? + field(15)?, field(22)?))
}

/// The soft `Max open files` limit of `/proc/self/limits` (`None`: unlimited or unknown).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
}

/// Appends `revgate_build_info` and, when `/proc` is readable, the `process_*` series.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP revgate_build_info The running build: crate version and git commit (always 1)."
    );
    let _ = writeln!(out, "# TYPE revgate_build_info gauge");
    let _ = writeln!(
        out,
        "revgate_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        super::escape_label(BUILD_COMMIT)
    );
    let Some(p) = read_self() else { return };
    let mut series = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    series(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.to_string(),
    );
    series(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.to_string(),
    );
    series(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes.to_string(),
    );
    series(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.to_string(),
    );
    if let Some(max) = p.max_fds {
        series(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max.to_string(),
        );
    }
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // comm with a space and a parenthesis, as a thread may name itself.
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 2405 0 0 0 \
                    150 37 0 0 20 0 9 0 12345 1067343872 4521 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((187, 12345)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_and_limits_are_parsed() {
        let status = "Name:\trevgate\nVmSize:\t  104232 kB\nVmRSS:\t   18084 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(18084));
        assert_eq!(status_kib(status, "VmSize:"), Some(104232));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            65536                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(65536));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn this_process_is_read_from_proc() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            eprintln!("skipped: no /proc");
            return;
        }
        let p = read_self().expect("readable /proc/self");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds >= 3, "stdin, stdout, stderr at least: {p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started before now, and not before this test binary could have been built.
        assert!(p.start_time_seconds <= now + 1.0, "{p:?}");
        assert!(p.start_time_seconds > now - 24.0 * 3600.0, "{p:?}");
        // Burn a little CPU: the counter moves.
        let before = p.cpu_seconds;
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(120) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = read_self().unwrap().cpu_seconds;
        assert!(after > before, "cpu seconds {before} -> {after}");
    }
}
