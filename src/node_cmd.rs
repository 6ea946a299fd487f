//! The virtual node inside `skiff server` (and the hidden `skiff supervise`
//! entry point of its container supervisor).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Settings of the node that runs pods on this machine.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Run pods on this machine: `auto` (when running as root with the OCI
    /// runtime installed), `on` (fail if impossible) or `none`.
    #[arg(long = "node", env = "SKIFF_NODE", default_value = "auto")]
    pub mode: String,
    /// The Node's name.
    #[arg(long, env = "SKIFF_NODE_NAME", default_value = "skiff-node")]
    pub node_name: String,
    /// The pod address range of the node.
    #[arg(long, env = "SKIFF_POD_CIDR", default_value = "10.244.0.0/16")]
    pub pod_cidr: String,
    /// The Linux bridge pods attach to.
    #[arg(long, env = "SKIFF_NODE_BRIDGE", default_value = "skiff0")]
    pub node_bridge: String,
    /// The cgroup under which pods' cgroups are made.
    #[arg(long, env = "SKIFF_CGROUP_PARENT", default_value = "skiff")]
    pub cgroup_parent: String,
    /// The OCI runtime CLI.
    #[arg(long, env = "SKIFF_OCI_RUNTIME", default_value = "runc")]
    pub oci_runtime: String,
    /// Where the CNI plugins are (repeatable).
    #[arg(long = "cni-plugin-dir", env = "SKIFF_CNI_PLUGIN_DIRS", value_delimiter = ',',
          default_values = ["/usr/lib/cni", "/opt/cni/bin"])]
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// How many sandboxes and containers the node sets up at once (network
    /// namespace, CNI, `runc run`); 0: twice the CPUs. More pods than this
    /// arriving together wait their turn instead of thrashing the kernel's
    /// network and mount locks.
    #[arg(long, env = "SKIFF_NODE_PARALLEL_STARTS", default_value_t = 0)]
    pub node_parallel_starts: usize,
    /// Network sandboxes (namespace, address, CNI wiring) the node keeps
    /// ready ahead of pods, so a pod's start does not wait for them.
    #[arg(long, env = "SKIFF_NODE_WARM_SANDBOXES", default_value_t = 4)]
    pub node_warm_sandboxes: usize,
}

/// `skiff supervise` (started by the node, not by people).
#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub runtime: PathBuf,
    #[arg(long)]
    pub runtime_root: PathBuf,
}

pub fn supervise(args: SuperviseArgs) -> anyhow::Result<()> {
    skiff_node::sandbox::supervisor::run(skiff_node::sandbox::supervisor::SupervisorConfig {
        root: args.root,
        runtime: args.runtime,
        runtime_root: args.runtime_root,
        log_max_bytes: 10 << 20,
        log_max_files: 5,
    })
    .context("container supervisor")
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.exists())
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

/// Whether the node should run, by `--node` and what this machine has.
pub fn wanted(args: &NodeArgs) -> anyhow::Result<Option<PathBuf>> {
    let runtime = find_in_path(&args.oci_runtime);
    let root = nix::unistd::geteuid().is_root();
    match args.mode.as_str() {
        "none" => Ok(None),
        "on" => {
            anyhow::ensure!(root, "--node on needs root (namespaces, cgroups, mounts)");
            let rt =
                runtime.with_context(|| format!("OCI runtime {:?} not found", args.oci_runtime))?;
            Ok(Some(rt))
        }
        "auto" => {
            if root && runtime.is_some() {
                Ok(runtime)
            } else {
                tracing::warn!(
                    root,
                    runtime = %args.oci_runtime,
                    "not running a node on this machine (needs root and the OCI runtime); pods stay Pending"
                );
                Ok(None)
            }
        }
        other => anyhow::bail!("--node {other:?}: use auto, on or none"),
    }
}

/// Start the node: its runtime (and supervisor) and its agent.
pub async fn start(
    args: &NodeArgs,
    runtime: PathBuf,
    data_dir: &Path,
    client: kube::Client,
    images: Arc<dyn skiff_node::sandbox::ImageSource>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<skiff_node::sandbox::SandboxRuntime>> {
    let root = data_dir.join("node");
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let supervisor_dir = root.join("supervisor");
    let runtime_root = root.join("runc");
    let supervisor_command: Vec<OsString> = vec![
        exe.into_os_string(),
        "supervise".into(),
        "--root".into(),
        supervisor_dir.into_os_string(),
        "--runtime".into(),
        runtime.clone().into_os_string(),
        "--runtime-root".into(),
        runtime_root.into_os_string(),
    ];
    // The service data plane and cluster DNS first: pods are isolated
    // from their first packet.
    let pod_cidr: ipnet::Ipv4Net = args
        .pod_cidr
        .parse()
        .with_context(|| format!("--pod-cidr {:?}", args.pod_cidr))?;
    let gateway = pod_cidr
        .hosts()
        .next()
        .context("--pod-cidr has no host addresses")?;
    let net_cfg = skiff_node::network::NetworkConfig {
        pod_cidr,
        bridge: args.node_bridge.clone(),
        gateway_ip: gateway,
        dns_listen: std::net::SocketAddr::new(gateway.into(), 53),
        table: nft_table(&args.node_bridge),
        ..Default::default()
    };
    let cluster_dns = net_cfg.cluster_dns();
    let network =
        skiff_node::network::NodeNetwork::start(client.clone(), net_cfg, shutdown.clone())
            .await
            .context("starting the node network (nftables, DNS)")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let config = skiff_node::sandbox::SandboxConfig {
        root,
        runtime,
        supervisor_command,
        pod_cidr: args.pod_cidr.clone(),
        bridge: args.node_bridge.clone(),
        network_name: format!("skiff-{}", args.node_bridge),
        cni_plugin_dirs: args.cni_plugin_dirs.clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        cpu_millis: cpus * 1000,
        memory_bytes: host_memory(),
        max_pods: 1000,
        // RuntimeClass handlers besides runc, where installed (crun refuses
        // hybrid cgroup hosts; its pods then fail to start, saying why).
        extra_handlers: ["crun", "youki"]
            .into_iter()
            .filter_map(|h| find_in_path(h).map(|p| (h.to_string(), p)))
            .collect(),
        cluster_dns: Some(cluster_dns),
        warm_sandboxes: args.node_warm_sandboxes,
        parallel_starts: match args.node_parallel_starts {
            0 => 2 * cpus as usize,
            n => n,
        },
    };
    let recorder = skiff_client::events::Recorder::new(
        client.clone(),
        "kubelet",
        Some(args.node_name.clone()),
    );
    let rt = Arc::new(
        skiff_node::sandbox::SandboxRuntime::start(
            config,
            images,
            Some(recorder),
            Some(client.clone()),
        )
        .await
        .context("starting the node runtime")?,
    );
    // The node's address as pods see it: the bridge gateway.
    let mut cfg = skiff_node::AgentConfig::new(&args.node_name, &gateway.to_string());
    cfg.container_events = false; // the runtime records them as they happen
    let agent = skiff_node::Agent::new(client, cfg, rt.clone());
    tokio::spawn(agent.run(shutdown));
    // Lives as long as the process: its tasks stop on `shutdown`, and the
    // rules stay for the pods that outlive us.
    std::mem::forget(network);
    Ok(rt)
}

/// The nftables table of the node on `bridge` (letters, digits, `_`).
fn nft_table(bridge: &str) -> String {
    let clean: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("skiff_{clean}")
}

/// `skiff node ...`: operate on this machine's node.
#[derive(clap::Args, Debug)]
pub struct NodeCmd {
    #[command(subcommand)]
    pub command: NodeSub,
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeSub {
    /// Stop every pod of the node at once (SIGKILL) and remove everything it
    /// made on this machine: containers, mounts, namespaces, cgroups, the
    /// bridge, the supervisor, its state. For after `skiff server` is gone.
    Reset {
        /// The server's data dir (default: ~/.skiff).
        #[arg(long, env = "SKIFF_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub fn node_command(cmd: NodeCmd, default_data_dir: PathBuf) -> anyhow::Result<()> {
    match cmd.command {
        NodeSub::Reset { data_dir, node } => {
            let data_dir = data_dir.unwrap_or(default_data_dir);
            let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
            reset(&data_dir, &node)
        }
    }
}

fn run_quiet(program: &Path, args: &[&std::ffi::OsStr]) -> Option<String> {
    std::process::Command::new(program)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn reset(data_dir: &Path, args: &NodeArgs) -> anyhow::Result<()> {
    let root = data_dir.join("node");
    let runc_root = root.join("runc");
    let runtime = find_in_path(&args.oci_runtime).unwrap_or_else(|| PathBuf::from("runc"));
    let rr = runc_root.as_os_str();
    // 1. Containers.
    if let Some(list) = run_quiet(
        &runtime,
        &["--root".as_ref(), rr, "list".as_ref(), "-q".as_ref()],
    ) {
        for id in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let id = std::ffi::OsStr::new(id);
            let _ = run_quiet(
                &runtime,
                &["--root".as_ref(), rr, "kill".as_ref(), id, "KILL".as_ref()],
            );
            let _ = run_quiet(
                &runtime,
                &[
                    "--root".as_ref(),
                    rr,
                    "delete".as_ref(),
                    "--force".as_ref(),
                    id,
                ],
            );
        }
    }
    // 2. The supervisor (it exits on TERM once no container is left).
    let pid_file = root.join("supervisor").join("supervisor.pid");
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let pid = nix::unistd::Pid::from_raw(pid);
        let is_ours = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("supervise"));
        if is_ours {
            // No container is left, so nothing is lost by not waiting for
            // TERM to be handled.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    // 3. Mounts under the node dir (root filesystems, namespace files), deepest first.
    if let Ok(canon) = root.canonicalize() {
        // Best effort: whatever stays mounted makes step 6 fail, saying so.
        let _ = skiff_node::sandbox::unmount_under(&canon);
    }
    // 4. The node's nftables table and service route, the bridge (pod
    // veths went with their namespaces).
    let _ = std::process::Command::new("nft")
        .args(["delete", "table", "inet", &nft_table(&args.node_bridge)])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &args.node_bridge])
        .stderr(std::process::Stdio::null())
        .status();
    // 5. Cgroups, children first, in every hierarchy.
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let mut hierarchies = vec![PathBuf::from(base)];
        if base == "/sys/fs/cgroup" {
            if let Ok(rd) = std::fs::read_dir(base) {
                hierarchies.extend(rd.flatten().map(|e| e.path()));
            }
        }
        for h in hierarchies {
            remove_cgroup_tree(&h.join(args.cgroup_parent.trim_start_matches('/')));
        }
    }
    // 6. State.
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(())
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
