//! skiff's `RuntimeDefault` seccomp profile.
//!
//! Docker's and containerd's default profiles are allow-lists of ~350
//! syscalls. Ours is the other way round: everything is allowed except a
//! deny list (EPERM) of the syscalls those profiles withhold from a
//! container, so a syscall newer than the list works instead of failing
//! with a confusing error, and the list stays short enough to review. Like
//! the allow-lists, a syscall that a granted capability is meant to unlock
//! (mount with `CAP_SYS_ADMIN`, ptrace with `CAP_SYS_PTRACE`, …) is not
//! denied when the container has that capability.
//!
//! Denied always: loading kernels and modules is unlocked only by
//! `SYS_MODULE`/`SYS_BOOT`; keyrings (`keyctl`, `add_key`, `request_key`, not
//! namespaced), `userfaultfd`, `uselib`, `nfsservctl`, `vm86`, and the
//! obsolete `sysfs`/`ustat`/`_sysctl` stay denied. With `SYS_ADMIN` gated:
//! mounts (old and new API), `pivot_root`, namespaces (`unshare`, `setns`,
//! `clone` with a `CLONE_NEW*` flag), `bpf`, `perf_event_open`,
//! `fanotify_init`, `open_by_handle_at` (the "shocker" escape),
//! `name_to_handle_at`, `quotactl`, `lookup_dcookie`, swap, and
//! `sethostname`/`setdomainname` (the UTS namespace is the pod's, shared by
//! its containers). `clone3` fails with ENOSYS, because its flags sit in
//! memory a filter cannot read; libc then falls back to `clone`. io_uring is
//! denied as in current Docker (its operations bypass this filter).
//! Architectures: the native one and its 32-bit compat ABIs, so the
//! filter cannot be sidestepped with `int 0x80`.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use oci_spec::OciSpecError;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// `CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET`,
/// one at a time (seccomp can only test a masked value for equality).
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// Syscalls denied unless the container holds the capability (`None`:
/// denied always).
const DENIED: &[(Option<Capability>, &[&str])] = &[
    (
        None,
        &[
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "uselib",
            "nfsservctl",
            "vm86",
            "vm86old",
            "sysfs",
            "ustat",
            "_sysctl",
            "get_kernel_syms",
            "query_module",
            "create_module",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ],
    ),
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "fanotify_init",
            "open_by_handle_at",
            "name_to_handle_at",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "swapon",
            "swapoff",
            "sethostname",
            "setdomainname",
        ],
    ),
    (
        Some(Capability::SysModule),
        &["init_module", "finit_module", "delete_module"],
    ),
    (
        Some(Capability::SysBoot),
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (
        Some(Capability::SysPtrace),
        &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    ),
    (
        Some(Capability::SysTime),
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
    (Some(Capability::Syslog), &["syslog"]),
];

fn architectures() -> Option<Vec<Arch>> {
    match std::env::consts::ARCH {
        "x86_64" => Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ]),
        "x86" => Some(vec![Arch::ScmpArchX86]),
        "aarch64" => Some(vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]),
        "arm" => Some(vec![Arch::ScmpArchArm]),
        "riscv64" => Some(vec![Arch::ScmpArchRiscv64]),
        // Elsewhere libseccomp filters the native architecture only.
        _ => None,
    }
}

fn rule(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(LinuxSeccompAction::ScmpActErrno);
    s.set_errno_ret(Some(errno));
    s.set_args(args);
    s
}

/// The `RuntimeDefault` profile for a container holding `caps`.
///
/// # Errors
/// Never in practice: only if oci-spec's builder refused a complete value.
pub fn runtime_default(caps: &[Capability]) -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = Vec::new();
    let mut denied: Vec<String> = Vec::new();
    for (cap, names) in DENIED {
        if cap.is_none_or(|c| !caps.contains(&c)) {
            denied.extend(names.iter().map(|n| (*n).to_string()));
        }
    }
    syscalls.push(rule(denied, EPERM, None));
    if !caps.contains(&Capability::SysAdmin) {
        // clone's flags are its first argument on every architecture we
        // list (s390 swaps the first two; it filters natively only).
        for flag in CLONE_NAMESPACE_FLAGS {
            // For SCMP_CMP_MASKED_EQ, `value` is the mask and `valueTwo`
            // the expected result.
            let arg = LinuxSeccompArgBuilder::default()
                .index(0_usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?;
            syscalls.push(rule(vec!["clone".into()], EPERM, Some(vec![arg])));
        }
        syscalls.push(rule(vec!["clone3".into()], ENOSYS, None));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(architectures());
    profile.set_syscalls(Some(syscalls));
    Ok(profile)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn denied(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let plain = runtime_default(&[Capability::Chown]).unwrap();
        let d = denied(&plain);
        for name in [
            "mount",
            "unshare",
            "ptrace",
            "kexec_load",
            "keyctl",
            "bpf",
            "clone3",
        ] {
            assert!(d.iter().any(|x| x == name), "{name} should be denied");
        }
        let clone_rules = plain
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names() == &vec!["clone".to_string()])
            .count();
        assert_eq!(clone_rules, 7);

        let admin = runtime_default(&[Capability::SysAdmin, Capability::SysPtrace]).unwrap();
        let d = denied(&admin);
        assert!(!d
            .iter()
            .any(|x| x == "mount" || x == "ptrace" || x == "clone3"));
        assert!(d.iter().any(|x| x == "keyctl"));
        assert!(d.iter().any(|x| x == "kexec_load"));
        assert_eq!(admin.default_action(), LinuxSeccompAction::ScmpActAllow);
    }
}
