//! The sandbox runtime: every pod a set of real Linux containers. A pod gets
//! network/IPC/UTS namespaces held by bind mounts ([`namespaces`]), an
//! address from the CNI bridge plugin ([`crate::cni`]), and each container
//! is an OCI bundle (overlayfs root from the image store) started by the
//! OCI runtime CLI (runc) under the node's one [`supervisor`] process, which
//! keeps container output in CRI log files ([`crilog`]) and reports exits.
//!
//! Each pod has a worker task ([`pod`]) that runs its lifecycle: init
//! containers in order, then the containers, restarts by `restartPolicy`
//! with the kubelet's back-off, termination with a grace period. Its state
//! is written to `<root>/pods/<uid>/state.json` on every change, so a
//! restarted agent re-adopts running containers (same processes) from the
//! state file and the supervisor.

mod attach;
pub mod crilog;
mod env;
mod exec;
pub mod images;
pub mod namespaces;
mod pod;
pub mod probes;
pub mod stats;
pub mod supervisor;
mod volumes;
mod warm;

use crate::lock;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use crate::cni::{Cni, NetworkConfig};
use crate::runtime::{
    ByteStream, Duplex, ExecRequest, LogOptions, NodeFacts, NodeRuntime, PodEvent,
    PodRuntimeStatus, PodStats, RuntimeError,
};
use pod::{Cmd, PodWorker};
use supervisor::{ContainerRecord, SupervisorError};

pub use pod::Recorded;

/// A container's root filesystem, ready for its bundle.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// The bundle's root path: complete, or where the runtime mounts
    /// `overlay` inside the container.
    pub rootfs: PathBuf,
    /// Overlay options for the runtime (`skiff_image::mount::Rootfs`).
    pub overlay: Option<Vec<String>>,
    /// The image's layer directories, top first, to read image files from.
    pub layers: Vec<PathBuf>,
    /// `imageID` for the container status (`sha256:…` or `repo@sha256:…`).
    pub image_id: String,
    /// The image's configuration (entrypoint, env, user, working dir).
    pub config: Option<oci_spec::image::ImageConfiguration>,
}

/// Why an image could not be prepared: `reason` is the container's waiting
/// reason (`ErrImagePull`, `ErrImageNeverPull`, `InvalidImageName`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    pub reason: String,
    pub message: String,
}

/// An event about a container's image (`warning`, `reason`, `message`),
/// recorded on the pod by the worker: `Pulling`, `Pulled`, `Failed`, ...
pub type ImageEvents<'a> = &'a (dyn Fn(bool, &str, &str) + Send + Sync);

/// What a container needs from the [`ImageSource`].
pub struct ImageRequest<'a> {
    /// The container's `image`.
    pub image: &'a str,
    /// Its `imagePullPolicy` (empty: the Kubernetes default for the image).
    pub pull_policy: &'a str,
    /// The pod, for its `imagePullSecrets`.
    pub pod: Option<&'a Pod>,
    /// The API, to read those secrets.
    pub client: Option<&'a kube::Client>,
    /// The container's directory (the root filesystem goes in it).
    pub dir: &'a Path,
    /// Where to report pulls.
    pub events: ImageEvents<'a>,
}

/// Where container root filesystems come from (the node's image store).
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync + 'static {
    /// Make the image available (pulling it if the policy says so) and
    /// mount its root filesystem in the container's directory.
    async fn prepare(&self, request: ImageRequest<'_>) -> Result<PreparedImage, ImageError>;

    /// Unmount what [`ImageSource::prepare`] mounted in `dir` (idempotent).
    async fn release(&self, dir: &Path);
}

/// How the sandbox runtime is set up on this node.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The node's state directory (pods, supervisor, OCI runtime state).
    pub root: PathBuf,
    /// The OCI runtime CLI (`runc`).
    pub runtime: PathBuf,
    /// How to start the supervisor process: program and arguments (our own
    /// binary with `supervise ...`).
    pub supervisor_command: Vec<OsString>,
    /// The pod address range of this node.
    pub pod_cidr: String,
    /// The Linux bridge pods attach to.
    pub bridge: String,
    /// The CNI network name (also names host-local's allocation dir).
    pub network_name: String,
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// The cgroup under which pod cgroups live (`/skiff` …).
    pub cgroup_parent: String,
    /// Capacity advertised on the Node.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub max_pods: u32,
    /// OCI runtime handlers besides the default (`runc`), by RuntimeClass
    /// `handler` name: e.g. `crun`, `youki` where installed.
    pub extra_handlers: Vec<(String, PathBuf)>,
    /// The cluster DNS pods use (their `/etc/resolv.conf`); `None` gives
    /// them the node's own resolver configuration.
    pub cluster_dns: Option<crate::network::ClusterDns>,
    /// Sandbox and container set-ups (namespaces and CNI; bundle and
    /// `runc run`) running at once, at least 1.
    pub parallel_starts: usize,
    /// Network sandboxes kept ready ahead of pods (see `warm`); 0: none.
    pub warm_sandboxes: usize,
}

impl SandboxConfig {
    /// Where the supervisor keeps its socket.
    pub fn supervisor_dir(&self) -> PathBuf {
        self.root.join("supervisor")
    }

    /// The OCI runtime's `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }
}

/// Shared by the runtime and its pod workers.
pub(crate) struct Node {
    pub(crate) config: SandboxConfig,
    pub(crate) images: Arc<dyn ImageSource>,
    pub(crate) supervisor: supervisor::Client,
    pub(crate) cni: Cni,
    pub(crate) network: NetworkConfig,
    pub(crate) recorder: Option<skiff_client::events::Recorder>,
    /// The node's own `/etc/resolv.conf` text (for `dnsPolicy: Default`).
    pub(crate) host_resolv_conf: String,
    /// The API (ConfigMaps, Secrets, service account tokens for volumes and env).
    #[allow(dead_code)] // read by env and volume resolution, next
    pub(crate) client: Option<kube::Client>,
    /// Pod and container cgroups (`None` where none can be made).
    pub(crate) cgroups: Option<crate::cgroups::Cgroups>,
    /// What shapes every container's spec.
    pub(crate) settings: crate::bundle::NodeSettings,
    /// Permits for set-ups ([`SandboxConfig::parallel_starts`]).
    pub(crate) starts: tokio::sync::Semaphore,
    /// Warm sandboxes ready to be taken, and the filler's wake-up.
    pub(crate) warm: Mutex<Vec<warm::WarmSandbox>>,
    pub(crate) warm_wanted: Arc<tokio::sync::Notify>,
    /// Every Service, watched (service links without an API call per
    /// container start); `None` without an API client.
    pub(crate) services: Option<skiff_client::cache::Cache<k8s_openapi::api::core::v1::Service>>,
    /// Ends the node's own watches when it goes.
    watches: tokio_util::sync::CancellationToken,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<PodEvent>>>,
    pods: Mutex<HashMap<String, Arc<PodWorker>>>,
}

/// Unmount (detached) every mount at or under `root` (canonical) in this
/// mount namespace, deepest first and each stacked one in turn; returns the
/// ones that failed.
pub fn unmount_under(root: &Path) -> Vec<(PathBuf, nix::Error)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
        .into_iter()
        .filter_map(|p| {
            nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH)
                .err()
                .map(|e| (p, e))
        })
        .collect()
}

impl Drop for Node {
    fn drop(&mut self) {
        self.watches.cancel();
    }
}

impl Node {
    /// Tell subscribers that a pod changed.
    pub(crate) fn notify(&self, uid: &str) {
        lock(&self.subscribers).retain(|tx| {
            tx.send(PodEvent {
                uid: uid.to_string(),
            })
            .is_ok()
        });
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.pods_dir().join(uid)
    }

    /// The OCI runtime binary and `--root` of a RuntimeClass handler.
    pub(crate) fn handler(&self, name: &str) -> Option<Oci> {
        if name.is_empty() || name == DEFAULT_HANDLER {
            return Some(Oci {
                path: self.config.runtime.clone(),
                root: self.config.runtime_root(),
            });
        }
        self.config
            .extra_handlers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, p)| Oci {
                path: p.clone(),
                root: self.config.root.join(format!("oci-{n}")),
            })
    }

    /// The OCI runtime of container `id` (its pod's handler).
    pub(crate) fn oci_for(&self, id: &str) -> Oci {
        let handler = pod::uid_of(id)
            .and_then(|uid| lock(&self.pods).get(uid).cloned())
            .map(|w| w.handler_name())
            .unwrap_or_default();
        self.handler(&handler).unwrap_or_else(|| Oci {
            path: self.config.runtime.clone(),
            root: self.config.runtime_root(),
        })
    }

    /// Run the OCI runtime CLI of the container named in `args` (every
    /// command names one) with its `--root`.
    pub(crate) async fn runc(&self, args: &[&str]) -> Result<(), RuntimeError> {
        let id = args
            .iter()
            .find(|a| pod::uid_of(a).is_some())
            .copied()
            .unwrap_or_default();
        let oci = self.oci_for(id);
        let out = tokio::process::Command::new(&oci.path)
            .arg("--root")
            .arg(&oci.root)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Failed(format!(
                "{} {}: {}",
                oci.path.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// The RuntimeClass handler of pods that name none.
pub const DEFAULT_HANDLER: &str = "runc";

/// An OCI runtime CLI and its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Oci {
    pub(crate) path: PathBuf,
    pub(crate) root: PathBuf,
}

/// The runtime of a real node.
pub struct SandboxRuntime {
    node: Arc<Node>,
    /// The last CPU sample of each container, for [`NodeRuntime::stats`].
    samples: stats::CpuSamples,
    /// What the Node object says about this machine (read once).
    facts: NodeFacts,
}

impl std::fmt::Debug for SandboxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRuntime")
            .field("root", &self.node.config.root)
            .finish_non_exhaustive()
    }
}

impl SandboxRuntime {
    /// Set up the node: directories, the supervisor (started if none runs),
    /// the routing of container exits to pod workers.
    pub async fn start(
        config: SandboxConfig,
        images: Arc<dyn ImageSource>,
        recorder: Option<skiff_client::events::Recorder>,
        client: Option<kube::Client>,
    ) -> Result<SandboxRuntime, RuntimeError> {
        std::fs::create_dir_all(config.pods_dir())?;
        std::fs::create_dir_all(config.supervisor_dir())?;
        std::fs::create_dir_all(config.runtime_root())?;
        let network = NetworkConfig::bridge(
            &config.network_name,
            &config.bridge,
            &config.pod_cidr,
            &config.root.join("ipam"),
        );
        let supervisor = supervisor::Client::new(&config.supervisor_dir());
        ensure_supervisor(&config, &supervisor).await?;
        let cni = Cni {
            plugin_dirs: config.cni_plugin_dirs.clone(),
        };
        let cgroups =
            match crate::cgroups::Cgroups::detect(config.cgroup_parent.trim_start_matches('/')) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "no cgroups for pods: limits and stats are off");
                    None
                }
            };
        let mut settings = crate::bundle::NodeSettings::new(config.memory_bytes);
        if let Ok(floor) = crate::bundle::oom_score_adj_floor() {
            settings.min_oom_score_adj = floor;
        }
        if let Ok(caps) = crate::bundle::current_capabilities() {
            settings.all_capabilities = caps;
        }
        settings.swap_accounting = cgroups.as_ref().is_some_and(|c| c.swap_accounting());
        let watches = tokio_util::sync::CancellationToken::new();
        let node = Arc::new(Node {
            starts: tokio::sync::Semaphore::new(config.parallel_starts.max(1)),
            warm: Mutex::new(Vec::new()),
            warm_wanted: Arc::new(tokio::sync::Notify::new()),
            services: client.as_ref().map(|c| {
                skiff_client::cache::Cache::spawn(
                    kube::Api::all(c.clone()),
                    kube::runtime::watcher::Config::default(),
                    watches.clone(),
                )
                .0
            }),
            watches,
            config,
            images,
            supervisor,
            cni,
            network,
            recorder,
            host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            client,
            cgroups,
            settings,
            subscribers: Mutex::new(Vec::new()),
            pods: Mutex::new(HashMap::new()),
        });
        tokio::spawn(route_exits(Arc::downgrade(&node)));
        tokio::spawn(warm::fill(Arc::downgrade(&node)));
        Ok(SandboxRuntime {
            facts: node_facts(&node.config),
            node,
            samples: stats::CpuSamples::default(),
        })
    }

    /// Pods this node has state for (running or not yet cleaned up).
    pub fn known_pods(&self) -> Vec<String> {
        let mut uids: Vec<String> = lock(&self.node.pods).keys().cloned().collect();
        if let Ok(rd) = std::fs::read_dir(self.node.config.pods_dir()) {
            for e in rd.flatten() {
                if let Some(name) = e.file_name().to_str() {
                    if !uids.iter().any(|u| u == name) {
                        uids.push(name.to_string());
                    }
                }
            }
        }
        uids
    }

    fn worker(&self, uid: &str) -> Option<Arc<PodWorker>> {
        lock(&self.node.pods).get(uid).cloned()
    }
}

/// Connect to `127.0.0.1:port` inside the network namespace at `netns`
/// (as the kubelet's port-forward does): a fresh thread enters the
/// namespace, connects, and ends; the socket stays in that namespace.
async fn connect_in_netns(netns: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(result);
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// Start the supervisor unless one answers; wait until it does.
async fn ensure_supervisor(
    config: &SandboxConfig,
    client: &supervisor::Client,
) -> Result<(), RuntimeError> {
    if client.ping().await.is_ok() {
        return Ok(());
    }
    let Some((program, args)) = config.supervisor_command.split_first() else {
        return Err(RuntimeError::Failed(
            "no supervisor command configured".into(),
        ));
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.supervisor_dir().join("supervisor.log"))?;
    // Not waited for: it outlives us by design (it calls setsid itself).
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?;
    // Reap it in the background if it ends while we live.
    tokio::task::spawn_blocking(move || {
        let mut child = child;
        let _ = child.wait();
    });
    for _ in 0..200 {
        if client.ping().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(RuntimeError::Failed(
        "the container supervisor did not start (see supervisor.log)".into(),
    ))
}

/// Deliver container exits to their pods' workers; after a lost connection
/// re-list, so no exit is missed.
async fn route_exits(node: std::sync::Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let client = n.supervisor.clone();
        let config = n.config.clone();
        drop(n);
        let mut rx = match client.subscribe().await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "supervisor unreachable; restarting it");
                let _ = ensure_supervisor(&config, &client).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Exits from before this subscription.
        if let Ok(list) = client.list().await {
            for rec in list.into_iter().filter(|r| r.exit.is_some()) {
                let Some(n) = node.upgrade() else { return };
                deliver(&n, rec);
            }
        }
        // A new supervisor (the old one died) knows none of the containers
        // started before: workers treat those as gone.
        if let Some(n) = node.upgrade() {
            let workers: Vec<Arc<PodWorker>> = lock(&n.pods).values().cloned().collect();
            for w in workers {
                w.send(Cmd::Resync);
            }
        }
        while let Some(rec) = rx.recv().await {
            let Some(n) = node.upgrade() else { return };
            deliver(&n, rec);
        }
    }
}

fn deliver(node: &Node, rec: ContainerRecord) {
    let uid = pod::uid_of(&rec.id);
    let worker = uid.and_then(|u| lock(&node.pods).get(u).cloned());
    match worker {
        Some(w) => w.send(Cmd::Exit(rec)),
        None => {
            // Nobody owns it (a pod removed while we were away): forget it.
            let client = node.supervisor.clone();
            tokio::spawn(async move {
                let _ = client.forget(&rec.id).await;
            });
        }
    }
}

impl From<SupervisorError> for RuntimeError {
    fn from(e: SupervisorError) -> Self {
        RuntimeError::Failed(e.to_string())
    }
}

fn read_first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// The Node facts of this machine under `c`.
fn node_facts(c: &SandboxConfig) -> NodeFacts {
    NodeFacts {
        cpu_millis: c.cpu_millis,
        memory_bytes: c.memory_bytes,
        pods: c.max_pods,
        ephemeral_storage_bytes: 100 << 30,
        architecture: match std::env::consts::ARCH {
            "x86_64" => "amd64".into(),
            "aarch64" => "arm64".into(),
            other => other.into(),
        },
        container_runtime_version: format!("runc://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: read_first_line("/proc/sys/kernel/osrelease"),
        os_image: os_image(),
        pod_cidr: Some(c.pod_cidr.clone()),
    }
}

#[async_trait::async_trait]
impl NodeRuntime for SandboxRuntime {
    fn facts(&self) -> NodeFacts {
        self.facts.clone()
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<PodEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.node.subscribers).push(tx);
        rx
    }

    async fn run_pod(&self, pod: &Pod) -> Result<bool, RuntimeError> {
        let Some(uid) = pod.metadata.uid.clone() else {
            return Err(RuntimeError::Failed("pod has no uid".into()));
        };
        let pod = Arc::new(pod.clone());
        let (worker, created) = {
            let mut pods = lock(&self.node.pods);
            match pods.get(&uid) {
                Some(w) => (w.clone(), false),
                None => {
                    let w = PodWorker::new(&self.node, pod.clone())?;
                    pods.insert(uid.clone(), w.clone());
                    (w, true)
                }
            }
        };
        if created {
            tokio::spawn(worker.clone().run(self.node.clone()));
        } else {
            worker.send(Cmd::Update(pod));
        }
        Ok(created)
    }

    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        let worker = match self.worker(uid) {
            Some(w) => w,
            None => {
                if !self.node.pod_dir(uid).exists() {
                    return Ok(());
                }
                // State left from before a restart, with no pod object any more.
                let Some(w) = PodWorker::adopt_orphan(&self.node, uid)? else {
                    return Ok(());
                };
                lock(&self.node.pods).insert(uid.to_string(), w.clone());
                tokio::spawn(w.clone().run(self.node.clone()));
                w
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        worker.send(Cmd::Stop { grace, done: tx });
        let _ = rx.await;
        lock(&self.node.pods).remove(uid);
        Ok(())
    }

    fn pod_uids(&self) -> Vec<String> {
        self.known_pods()
    }

    async fn pod_status(&self, uid: &str) -> Option<PodRuntimeStatus> {
        self.worker(uid).map(|w| w.status())
    }

    async fn logs(
        &self,
        uid: &str,
        container: &str,
        options: LogOptions,
    ) -> Result<ByteStream, RuntimeError> {
        let worker = self
            .worker(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_string()))?;
        worker.logs(container, options)
    }

    async fn exec(
        &self,
        uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<i32, RuntimeError> {
        let worker = self
            .worker(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_string()))?;
        let id = worker.running_id(container)?;
        let oci = self.node.oci_for(&id);
        exec::exec(&oci.path, &oci.root, &id, request).await
    }

    async fn attach(
        &self,
        uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<(), RuntimeError> {
        let worker = self
            .worker(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_string()))?;
        let id = worker.running_id(container)?;
        attach::attach(&self.node.supervisor, &id, request).await
    }

    async fn port_forward(
        &self,
        uid: &str,
        port: u16,
        stream: Box<dyn Duplex>,
    ) -> Result<(), RuntimeError> {
        let worker = self
            .worker(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_string()))?;
        let netns = namespaces::PodNamespaces::at(&self.node.pod_dir(uid), false).net;
        let mut target = connect_in_netns(netns, port).await.map_err(|e| {
            RuntimeError::Failed(format!(
                "failed to connect to localhost:{port} inside namespace of pod {}: {e}",
                worker.pod_name()
            ))
        })?;
        let mut stream = stream;
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut target).await;
        Ok(())
    }

    async fn stats(&self, uid: &str) -> Option<PodStats> {
        let worker = self.worker(uid)?;
        let cgroups = self.node.cgroups.as_ref()?;
        let running: Vec<(String, String)> = worker
            .status()
            .containers
            .into_iter()
            .filter(|c| matches!(c.state, crate::runtime::ContainerState::Running { .. }))
            .filter_map(|c| {
                let id = c.container_id?.split_once("://")?.1.to_string();
                Some((c.name, id))
            })
            .collect();
        let ids: Vec<String> = running.iter().map(|(_, id)| id.clone()).collect();
        self.samples.retain_pod(uid, &ids);
        // Containers of pods no longer here.
        self.samples
            .retain(|id| pod::uid_of(id).is_some_and(|u| self.worker(u).is_some()));
        let containers = stats::sample_containers(&self.samples, &running, |id| {
            cgroups.container_stats(uid, id).ok()
        })
        .await;
        Some(PodStats {
            timestamp: k8s_openapi::jiff::Timestamp::now(),
            containers,
        })
    }
}
