//! A pod's shared namespaces without a pause process: its network, IPC and
//! UTS namespaces are created once by util-linux's `unshare` and kept alive
//! by bind mounts on files in the pod's directory; every container of the
//! pod joins them by path.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// The namespace files of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl PodNamespaces {
    /// Where the files of the pod whose directory is `dir` are.
    pub fn at(dir: &Path) -> PodNamespaces {
        PodNamespaces {
            net: dir.join("ns-net"),
            ipc: dir.join("ns-ipc"),
            uts: dir.join("ns-uts"),
        }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.net, &self.ipc, &self.uts]
    }

    /// Whether the namespaces exist (the files are mount points of nsfs).
    pub fn exist(&self) -> bool {
        self.all().iter().all(|p| is_nsfs(p))
    }

    /// Create the namespaces, with `hostname` set in the UTS one. A partly
    /// created set (a crash halfway) is removed first.
    pub async fn create(&self, hostname: &str) -> Result<(), std::io::Error> {
        if self.exist() {
            return Ok(());
        }
        self.remove();
        for p in self.all() {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::File::create(p)?;
        }
        let out = tokio::process::Command::new("unshare")
            .arg(format!("--net={}", self.net.display()))
            .arg(format!("--ipc={}", self.ipc.display()))
            .arg(format!("--uts={}", self.uts.display()))
            .arg("hostname")
            .arg(hostname)
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

    /// Unmount and delete the files (idempotent).
    pub fn remove(&self) {
        for p in self.all() {
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
