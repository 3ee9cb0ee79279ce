//! The standard `process_*` metrics, read from `/proc` at scrape time (Linux; where
//! `/proc` cannot be read, each is left out).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux
/// architecture the gateway builds for (the kernel's ABI, whatever its own `HZ`).
const TICKS_PER_S: f64 = 100.0;

/// Reads the process's figures on each scrape.
#[derive(Debug)]
pub(super) struct Process;

/// What one scrape read.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    virtual_bytes: Option<f64>,
    resident_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Figures {
    fn read() -> Self {
        let read = |path| std::fs::read_to_string(path).ok();
        let mut f = read("/proc/self/stat")
            .zip(read("/proc/stat"))
            .map(|(stat, system)| from_stat(&stat, boot_time(&system)))
            .unwrap_or_default();
        f.resident_bytes = read("/proc/self/status").and_then(|s| resident(&s));
        f.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        f.max_fds = read("/proc/self/limits").and_then(|s| max_open_files(&s));
        f
    }
}

/// CPU time, start time and virtual size from `/proc/self/stat` (fields 14, 15, 22, 23
/// of `man 5 proc`), the start relative to `boot` (Unix seconds).
fn from_stat(stat: &str, boot: Option<f64>) -> Figures {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Figures::default();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (the state).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    Figures {
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) / TICKS_PER_S),
        start_time_seconds: field(22).zip(boot).map(|(t, b)| b + t / TICKS_PER_S),
        virtual_bytes: field(23),
        ..Figures::default()
    }
}

/// `btime` of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time(system: &str) -> Option<f64> {
    system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident(status: &str) -> Option<f64> {
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: f64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits` (none when unlimited).
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let f = Figures::read();
        if let Some(v) = f.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                f.start_time_seconds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                f.virtual_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                f.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                f.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                f.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_command_names_end() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 9 0 12000 104857600 2560 18446744073709551615";
        let f = from_stat(stat, Some(1_700_000_000.0));
        assert_eq!(f.cpu_seconds, Some(3.0));
        assert_eq!(f.start_time_seconds, Some(1_700_000_120.0));
        assert_eq!(f.virtual_bytes, Some(104_857_600.0));
    }

    #[test]
    fn limits_status_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(20_000.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            resident("Name:\tx\nVmRSS:\t   2048 kB\n"),
            Some(2_097_152.0)
        );
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[test]
    fn this_process_is_read() {
        let f = Figures::read();
        if cfg!(target_os = "linux") {
            assert!(f.open_fds.is_some_and(|n| n >= 3.0), "{f:?}");
            assert!(f.resident_bytes.is_some_and(|b| b > 0.0), "{f:?}");
            assert!(f.cpu_seconds.is_some(), "{f:?}");
            assert!(f.start_time_seconds.is_some_and(|t| t > 1.5e9), "{f:?}");
        }
    }
}
