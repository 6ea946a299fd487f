//! Process and machine facts from Linux `/proc`.

use std::io;

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident set size now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set size so far, in KiB.
    pub hwm_kib: u64,
}

impl Memory {
    /// Read the memory of process `pid`.
    ///
    /// # Errors
    /// The status file cannot be read (no such process) or lacks the fields.
    pub fn of_pid(pid: u32) -> io::Result<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Memory::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status has no VmRSS/VmHWM"),
            )
        })
    }

    /// Parse the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Option<Memory> {
        Some(Memory {
            rss_kib: kib_field(status, "VmRSS:")?,
            hwm_kib: kib_field(status, "VmHWM:")?,
        })
    }
}

/// The value of a `Name:   123 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Total memory of the machine in KiB (`MemTotal` of `/proc/meminfo`).
pub fn mem_total_kib() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// The running kernel's release, e.g. `6.8.0-45-generic`.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`, fixed at 100 by
/// the kernel ABI on every architecture skiff targets.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads) process `pid` has used, in seconds,
/// with a resolution of 10 ms.
///
/// # Errors
/// The stat file cannot be read (no such process) or is malformed.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_seconds(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat is malformed"),
        )
    })
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name
/// may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU time (user, nice, system, irq, softirq) the whole machine has spent
/// since boot, all CPUs, in seconds (from `/proc/stat`, 10 ms resolution).
///
/// # Errors
/// `/proc/stat` cannot be read or has no `cpu` line.
pub fn machine_busy_seconds() -> io::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_machine_busy(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no cpu line"))
}

fn parse_machine_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq ...
    let busy = [0usize, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_adds_user_nice_system_irq_softirq() {
        let stat = "cpu  100 5 50 9000 7 3 2 0 0 0\ncpu0 1 1 1 1 1 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(1.6));
        assert_eq!(parse_machine_busy("intr 1\n"), None);
    }

    #[test]
    fn parses_rss_and_hwm() {
        let status = "Name:\tskiff\nVmPeak:\t  900 kB\nVmHWM:\t   30720 kB\nVmRSS:\t   20480 kB\nThreads:\t5\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                rss_kib: 20480,
                hwm_kib: 30720
            })
        );
        assert_eq!(Memory::parse("Name:\tx\n"), None);
    }

    #[test]
    fn parses_cpu_times_after_the_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("42 (x) S 1"), None);
    }

    #[test]
    fn reads_our_own_status() {
        let m = Memory::of_pid(std::process::id()).expect("own status");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
