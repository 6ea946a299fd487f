//! A pod's shared namespaces without a pause process: its network namespace
//! (and, for pods of more than one container, its IPC and UTS namespaces)
//! is created once by util-linux's `unshare` and kept alive by bind mounts
//! on files in the pod's directory; every container of the pod joins them
//! by path. A pod of one container gets its own IPC and UTS namespaces from
//! the runtime instead (nobody to share them with), which keeps two mounts
//! per pod off the host's mount table: every runtime start copies and scans
//! that table, so its length is paid for by every container start.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// The namespace files of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
    /// Whether the IPC and UTS namespaces are shared (made here) too.
    pub shared_ipc_uts: bool,
}

impl PodNamespaces {
    /// Where the files of the pod whose directory is `dir` are.
    pub fn at(dir: &Path, shared_ipc_uts: bool) -> PodNamespaces {
        PodNamespaces {
            net: dir.join("ns-net"),
            ipc: dir.join("ns-ipc"),
            uts: dir.join("ns-uts"),
            shared_ipc_uts,
        }
    }

    fn made(&self) -> Vec<&Path> {
        let mut all = vec![self.net.as_path()];
        if self.shared_ipc_uts {
            all.extend([self.ipc.as_path(), self.uts.as_path()]);
        }
        all
    }

    /// Whether the namespaces exist (the files are mount points of nsfs).
    pub fn exist(&self) -> bool {
        self.made().iter().all(|p| is_nsfs(p))
    }

    /// Create the namespaces, with the loopback interface up in the network
    /// one and IPv6 off for interfaces added later (the hostname is the
    /// runtime's job: every container's spec sets it). A partly created set
    /// (a crash halfway) is removed first.
    pub async fn create(&self) -> Result<(), std::io::Error> {
        if self.exist() {
            return Ok(());
        }
        self.remove();
        for p in self.made() {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::File::create(p)?;
        }
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.arg(format!("--net={}", self.net.display()));
        if self.shared_ipc_uts {
            cmd.arg(format!("--ipc={}", self.ipc.display()))
                .arg(format!("--uts={}", self.uts.display()));
        }
        // Pods are IPv4: interfaces made later in the namespace (the CNI
        // `eth0`) get no IPv6, so they send no duplicate-address probes,
        // router solicitations or MLD reports, which the bridge floods to
        // every other pod's port (quadratic in the pods on the node).
        // Loopback keeps `::1`. Without IPv6 in the kernel the write fails
        // and there is nothing to switch off.
        let out = cmd
            .args([
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null; exec ip link set lo up",
            ])
            .kill_on_drop(true)
            .output()
            .await?;
        if !out.status.success() {
            self.remove();
            return Err(std::io::Error::other(format!(
                "creating pod namespaces: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Unmount and delete the files (idempotent; all three, whatever the mode).
    pub fn remove(&self) {
        for p in [&self.net, &self.ipc, &self.uts] {
            // Stacked mounts are possible after a crash between mount and
            // record; unmount until none is left.
            for _ in 0..4 {
                if umount2(p, MntFlags::MNT_DETACH).is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether `path` is a namespace file (a bind mount of nsfs).
fn is_nsfs(path: &Path) -> bool {
    // NSFS_MAGIC
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}
