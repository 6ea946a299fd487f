//! The security defaults of a Kubernetes container, as containerd's CRI
//! plugin sets them for runc: the default capability set and its add/drop
//! rules, and the `/proc` and `/sys` paths masked or made read-only.

use std::str::FromStr;

use oci_spec::runtime::Capability;

use super::BundleError;

/// The capabilities a container gets by default (Docker's and containerd's
/// set).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux defines (through `CAP_CHECKPOINT_RESTORE`, 5.9),
/// in bit order (entry `i` is bit `i` of a `/proc/<pid>/status` mask).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths under `/proc` and `/sys` hidden from unprivileged containers
/// (containerd's list).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths under `/proc` mounted read-only in unprivileged containers.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The sysctls the kubelet allows by default (its "safe" set, namespaced
/// and harmless to neighbours). Pods asking for others are refused by the
/// kubelet (`SysctlForbidden`) unless the node allows them explicitly.
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The sysctls of `spec` outside [`SAFE_SYSCTLS`] (also spelled with `/`
/// separators), in order: the runtime rejects the pod with
/// `SysctlForbidden` when this is not empty.
pub fn forbidden_sysctls(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    spec.security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| sysctl_name(&s.name))
        .filter(|n| !SAFE_SYSCTLS.contains(&n.as_str()))
        .collect()
}

/// A sysctl name in dotted form. Kubernetes also accepts `/` as the
/// separator; then dots are part of a component (`net/ipv4/conf/eth0.1/…`)
/// and the two characters swap, as the kubelet does.
pub fn sysctl_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes().get(i) == Some(&b'/') => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// Parse a Kubernetes capability name (`NET_ADMIN`, `CAP_NET_ADMIN`,
/// `net_admin`).
pub fn parse_capability(name: &str) -> Result<Capability, BundleError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if !ALL_CAPABILITIES.contains(&bare) {
        return Err(BundleError::UnknownCapability {
            name: name.to_string(),
        });
    }
    Capability::from_str(bare).map_err(|_| BundleError::UnknownCapability {
        name: name.to_string(),
    })
}

/// The capabilities set in a `/proc/<pid>/status` mask (`CapEff:` …).
pub fn capabilities_from_mask(mask: u64) -> Vec<Capability> {
    let names: Vec<&str> = ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, n)| *n)
        .collect();
    parse_all(&names)
}

/// The effective capabilities of this process: what `privileged` and
/// `add: [ALL]` grant (containerd's "all current capabilities"), since runc
/// cannot hand a container more than the agent holds.
///
/// # Errors
/// Reading `/proc/self/status`.
pub fn current_capabilities() -> std::io::Result<Vec<Capability>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "CapEff"))?;
    Ok(capabilities_from_mask(mask))
}

fn parse_all(names: &[&str]) -> Vec<Capability> {
    // The lists above are spelled the way oci-spec parses them (a unit test
    // checks every entry), so nothing is dropped here.
    names
        .iter()
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

/// The capability set of a container: privileged gets `all`; otherwise the
/// default set, then `add: [ALL]` (gives `all`), `drop: [ALL]`, the other
/// adds and the other drops, in containerd's order (so `drop: [ALL], add:
/// [X]` is just X). `all` is every capability the node can grant (see
/// [`current_capabilities`]). Unknown names are an error. The result is
/// sorted by name.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    all: &[Capability],
) -> Result<Vec<Capability>, BundleError> {
    let is_all = |n: &String| n.trim().eq_ignore_ascii_case("ALL");
    let adds = add
        .iter()
        .filter(|n| !is_all(n))
        .map(|n| parse_capability(n))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = drop
        .iter()
        .filter(|n| !is_all(n))
        .map(|n| parse_capability(n))
        .collect::<Result<Vec<_>, _>>()?;
    if privileged {
        return Ok(sorted(all.to_vec()));
    }
    let mut set = parse_all(&DEFAULT_CAPABILITIES);
    if add.iter().any(is_all) {
        set = all.to_vec();
    }
    if drop.iter().any(is_all) {
        set.clear();
    }
    for c in adds {
        if !set.contains(&c) {
            set.push(c);
        }
    }
    set.retain(|c| !drops.contains(c));
    Ok(sorted(set))
}

fn sorted(mut caps: Vec<Capability>) -> Vec<Capability> {
    caps.sort_by_key(|c| c.to_string());
    caps.dedup();
    caps
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(caps: &[Capability]) -> Vec<String> {
        caps.iter().map(ToString::to_string).collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn every_listed_name_parses() {
        for n in ALL_CAPABILITIES {
            assert!(Capability::from_str(n).is_ok(), "{n}");
        }
        assert_eq!(parse_all(&ALL_CAPABILITIES).len(), 41);
    }

    #[test]
    fn only_safe_sysctls_pass() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "securityContext": {"sysctls": [
                {"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"},
                {"name": "net/ipv4/tcp_syncookies", "value": "1"},
                {"name": "kernel.msgmax", "value": "1"},
                {"name": "net.core.somaxconn", "value": "1024"},
            ]},
        }))
        .unwrap();
        assert_eq!(
            forbidden_sysctls(&spec),
            ["kernel.msgmax", "net.core.somaxconn"]
        );
        assert_eq!(
            sysctl_name("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            sysctl_name("net.ipv4.tcp_syncookies"),
            "net.ipv4.tcp_syncookies"
        );
    }

    #[test]
    fn masks_are_in_bit_order() {
        // Docker's default set, as /proc/<pid>/status shows it.
        let docker = capabilities_from_mask(0xa804_25fb);
        assert_eq!(sorted(docker), sorted(parse_all(&DEFAULT_CAPABILITIES)));
        assert_eq!(
            capabilities_from_mask(1 << 24),
            vec![Capability::SysResource]
        );
        assert_eq!(capabilities_from_mask(u64::MAX).len(), 41);
    }

    #[test]
    fn add_and_drop() {
        let every = parse_all(&ALL_CAPABILITIES);
        let capabilities = |p, a: &[String], d: &[String]| capabilities(p, a, d, &every);
        let default = capabilities(false, &[], &[]).unwrap();
        assert_eq!(default.len(), 14);
        let caps = capabilities(false, &s(&["NET_ADMIN", "cap_sys_time"]), &s(&["KILL"])).unwrap();
        let n = names(&caps);
        assert!(n.contains(&"NET_ADMIN".into()) && n.contains(&"SYS_TIME".into()));
        assert!(!n.contains(&"KILL".into()));
        assert_eq!(caps.len(), 15);
        let only = capabilities(false, &s(&["NET_BIND_SERVICE"]), &s(&["ALL"])).unwrap();
        assert_eq!(names(&only), vec!["NET_BIND_SERVICE"]);
        let all = capabilities(false, &s(&["ALL"]), &s(&["SYS_ADMIN"])).unwrap();
        assert_eq!(all.len(), 40);
        assert_eq!(capabilities(true, &[], &s(&["ALL"])).unwrap().len(), 41);
    }

    #[test]
    fn unknown_names_are_rejected() {
        let err = capabilities(false, &s(&["NET_FLY"]), &[], &[]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"NET_FLY\"");
        assert!(capabilities(false, &[], &s(&["CAP_"]), &[]).is_err());
        // Privileged is what the node holds.
        let held = capabilities(true, &[], &[], &[Capability::Kill]).unwrap();
        assert_eq!(held, vec![Capability::Kill]);
    }
}
