//! Warm sandboxes: network namespaces already wired by CNI (address, veth,
//! loopback), made ahead while the node is idle, so a new pod's start does
//! not wait for the namespace and the CNI plugins (about as long as `runc
//! run` itself). A pod of one container takes one: the namespace's bind
//! mount moves into the pod's directory and the CNI attachment keeps the
//! warm sandbox's id, recorded in the pod's state for the `DEL` when the
//! pod goes. The pool refills in the background, under the node's set-up
//! permits, so a burst of pods is not slowed by it.
//!
//! Warm sandboxes left by a previous agent are released at start (CNI
//! `DEL`, unmount) and made afresh.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::namespaces::PodNamespaces;
use super::Node;
use crate::cni::Target;
use crate::lock;

/// One warm sandbox: its directory (holding `ns-net`), CNI id, addresses.
#[derive(Debug)]
pub(crate) struct WarmSandbox {
    pub(crate) id: String,
    dir: PathBuf,
    pub(crate) ips: Vec<IpAddr>,
}

impl WarmSandbox {
    fn netns(&self) -> PathBuf {
        self.dir.join("ns-net")
    }

    /// Move the namespace to `target` (a path in the pod's directory):
    /// bound there, unbound here, the directory gone.
    pub(crate) fn hand_over(&self, target: &Path) -> std::io::Result<()> {
        std::fs::File::create(target)?;
        mount(
            Some(&self.netns()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        let _ = umount2(&self.netns(), MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Where warm sandboxes live.
pub(crate) fn pool_dir(node: &Node) -> PathBuf {
    node.config.root.join("warm")
}

/// Release a warm sandbox (CNI `DEL`, namespace, directory).
pub(crate) async fn discard(node: &Node, w: WarmSandbox) {
    let netns = w.netns();
    let target = Target {
        container_id: &w.id,
        netns: &netns,
        ifname: "eth0",
    };
    if let Err(e) = node.cni.del(&node.network, target).await {
        tracing::warn!(sandbox = %w.id, error = %e, "releasing a warm sandbox's network failed");
    }
    PodNamespaces::at(&w.dir, false).remove();
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// Make one warm sandbox.
async fn make(node: &Node) -> Result<WarmSandbox, String> {
    let id = format!("warm-{}", uuid::Uuid::new_v4().simple());
    let dir = pool_dir(node).join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ns = PodNamespaces::at(&dir, false);
    if let Err(e) = ns.create().await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.to_string());
    }
    let target = Target {
        container_id: &id,
        netns: &ns.net,
        ifname: "eth0",
    };
    match node.cni.add(&node.network, target).await {
        Ok(a) => Ok(WarmSandbox {
            id,
            dir,
            ips: a.ips,
        }),
        Err(e) => {
            let w = WarmSandbox {
                id,
                dir,
                ips: Vec::new(),
            };
            discard(node, w).await; // what the plugins did half
            Err(e.to_string())
        }
    }
}

/// Release what a previous agent left, then keep the pool at the
/// configured size for as long as the node exists.
pub(crate) async fn fill(node: Weak<Node>) {
    if let Some(n) = node.upgrade() {
        release_leftovers(&n).await;
    }
    let mut delay = Duration::from_secs(1);
    loop {
        let Some(n) = node.upgrade() else { return };
        let want = n.config.warm_sandboxes;
        if lock(&n.warm).len() >= want {
            let wanted = n.warm_wanted.clone();
            drop(n);
            // Re-checked now and then: the node may be gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), wanted.notified()).await;
            continue;
        }
        // Pods waiting for set-ups go first.
        let made = {
            let _permit = n.starts.acquire().await;
            make(&n).await
        };
        match made {
            Ok(w) => {
                lock(&n.warm).push(w);
                delay = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "making a warm sandbox failed");
                drop(n);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Warm sandboxes on disk from an earlier run: their namespaces may be
/// gone; released, never reused.
async fn release_leftovers(node: &Node) {
    let Ok(entries) = std::fs::read_dir(pool_dir(node)) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let id = entry.file_name().to_string_lossy().into_owned();
        discard(
            node,
            WarmSandbox {
                id,
                dir,
                ips: Vec::new(),
            },
        )
        .await;
    }
}

/// Take a warm sandbox if there is one (and ask for a new one).
pub(crate) fn take(node: &Arc<Node>) -> Option<WarmSandbox> {
    let w = lock(&node.warm).pop();
    node.warm_wanted.notify_one();
    w
}
