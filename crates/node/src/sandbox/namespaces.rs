//! A pod's shared namespaces without a pause process: its network namespace
//! (and, for pods of more than one container, its IPC and UTS namespaces)
//! is created once, in-process on a thread of its own (no helper processes
//! on the way of every pod start), and kept alive by bind mounts
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
        let (made, shared) = (self.clone(), self.shared_ipc_uts);
        let made_here = tokio::task::spawn_blocking(move || {
            // A thread of its own: unsharing changes the namespaces of the
            // calling thread for good, so no pool thread may do it.
            std::thread::Builder::new()
                .name("skiff-pod-ns".into())
                .spawn(move || make_on_this_thread(&made, shared))
                .map_err(|e| std::io::Error::other(format!("spawning a thread: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
        });
        // Bounded: a pod never waits forever for its namespaces.
        let result = match tokio::time::timeout(std::time::Duration::from_secs(30), made_here).await
        {
            Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
            Err(_) => Err(std::io::Error::other("timed out")),
        };
        if let Err(e) = result {
            self.remove();
            return Err(std::io::Error::other(format!(
                "creating pod namespaces: {e}"
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

/// Unshare this thread into new namespaces, set them up and bind them to
/// the files of `ns` (which exist). Pods are IPv4: interfaces made later in
/// the network namespace (the CNI `eth0`) get no IPv6, so they send no
/// duplicate-address probes, router solicitations or MLD reports, which
/// the bridge would flood to every other pod's port (quadratic in the pods
/// of the node); loopback, up, keeps `::1`.
fn make_on_this_thread(ns: &PodNamespaces, shared: bool) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::CLONE_NEWNET;
    if shared {
        flags |= CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    }
    nix::sched::unshare(flags)?;
    // Without IPv6 in the kernel there is nothing to switch off.
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    loopback_up()?;
    let mut binds = vec![("net", &ns.net)];
    if shared {
        binds.extend([("ipc", &ns.ipc), ("uts", &ns.uts)]);
    }
    for (kind, file) in binds {
        let source = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
        mount(
            Some(&source),
            file.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| std::io::Error::other(format!("binding {kind} to {}: {e}", file.display())))?;
    }
    Ok(())
}

/// Bring up `lo` (index 1 in a new network namespace) over rtnetlink, in
/// the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
    };
    use netlink_packet_route::link::{LinkFlags, LinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;

    let mut link = LinkMessage::default();
    link.header.index = 1;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    let mut req = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);

    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| std::io::Error::other(format!("a bad rtnetlink reply: {e}")))?;
    match msg.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
        },
        other => Err(std::io::Error::other(format!(
            "unexpected rtnetlink reply to setting lo up: {other:?}"
        ))),
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
