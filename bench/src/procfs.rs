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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_our_own_status() {
        let m = Memory::of_pid(std::process::id()).expect("own status");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
