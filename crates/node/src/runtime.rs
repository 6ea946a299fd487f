//! The node interface: what an [`crate::agent::Agent`] asks of the thing that
//! actually runs pods. The fake runtime ([`crate::fake::FakeRuntime`]) implements
//! it without processes; the sandbox runtime (runc + CNI) plugs into the same trait.
//!
//! The agent owns everything that talks to the API server (Node, Lease, pod
//! status, events); a runtime only runs pods and reports what they do. It
//! tells the agent that something changed through [`NodeRuntime::subscribe`]
//! (like the kubelet's pod lifecycle event generator), and the agent then asks
//! [`NodeRuntime::pod_status`] and writes the pod's status.

use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Errors a runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime does not know this pod (never started, or stopped).
    #[error("pod {0} is not running on this node")]
    PodNotFound(String),
    /// The pod has no container of that name.
    #[error("container {container:?} not found in pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    /// The operation cannot be done by this runtime (the fake has no processes).
    #[error("{0}")]
    Unsupported(String),
    /// The pod cannot be started (bad spec, no addresses left, ...).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the node offers, for its Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// Capacity (and allocatable): `cpu` in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Maximum number of pods.
    pub pods: u32,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage_bytes: u64,
    /// `GOARCH`-style architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// `nodeInfo.containerRuntimeVersion`, e.g. `fake://0.1.0`.
    pub container_runtime_version: String,
    /// `nodeInfo.kernelVersion`.
    pub kernel_version: String,
    /// `nodeInfo.osImage`.
    pub os_image: String,
    /// The pod address range (`spec.podCIDR`).
    pub pod_cidr: Option<String>,
}

/// A container's state, as `containerStatuses[].state` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    /// Not running: being created, or waiting to restart (`reason`: `ContainerCreating`,
    /// `CrashLoopBackOff`, `PodInitializing`, ...).
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Termination),
}

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Termination {
    pub exit_code: i32,
    /// `Completed` (exit code 0), `Error`, `OOMKilled`, ...
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// One container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// `<runtime>://<id>`.
    pub container_id: Option<String>,
    pub state: ContainerState,
    /// The previous run, if the container restarted.
    pub last_state: Option<Termination>,
    pub restart_count: i32,
    /// Whether the container's readiness check passes (the runtime runs
    /// readiness probes; the fake follows annotations).
    pub ready: bool,
    /// Whether the startup check passed (true once running, without a startup probe).
    pub started: bool,
}

/// A pod as the runtime sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRuntimeStatus {
    /// The sandbox's addresses (primary first).
    pub pod_ips: Vec<IpAddr>,
    /// When the runtime accepted the pod.
    pub start_time: Timestamp,
    pub init_containers: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    /// The runtime is in the middle of setting the pod up (sandbox, image,
    /// container start) and will report again when it is done: the agent
    /// need not write the intermediate states (an address without running
    /// containers, an image ID) once the pod shows it is being created.
    pub settling: bool,
}

/// Options of [`NodeRuntime::logs`], as `kubectl logs` sends them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep the stream open and send new output as it comes.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// The previous (terminated) run of the container.
    pub previous: bool,
    /// Prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only output newer than this.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// Log bytes as they come.
pub type ByteStream = BoxStream<'static, Result<Vec<u8>, RuntimeError>>;

/// A terminal size change during `exec -t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Input of a process.
pub type Input = Pin<Box<dyn AsyncRead + Send>>;
/// Output of a process.
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// A command to run in a container, with its streams.
pub struct ExecRequest {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    /// Absent with a TTY (stderr goes to stdout).
    pub stderr: Option<Output>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecRequest")
            .field("command", &self.command)
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

/// A bidirectional byte stream (one port-forward connection).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Resource usage of a container or pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// Usage of a pod, per container.
#[derive(Debug, Clone, PartialEq)]
pub struct PodStats {
    pub timestamp: Timestamp,
    pub containers: Vec<(String, Usage)>,
}

impl PodStats {
    /// The sum over containers.
    pub fn total(&self) -> Usage {
        self.containers.iter().fold(
            Usage {
                cpu_millis: 0,
                memory_bytes: 0,
            },
            |acc, (_, u)| Usage {
                cpu_millis: acc.cpu_millis.saturating_add(u.cpu_millis),
                memory_bytes: acc.memory_bytes.saturating_add(u.memory_bytes),
            },
        )
    }
}

/// Something changed in a pod (a container started, exited, became ready):
/// the agent re-reads [`NodeRuntime::pod_status`] for this uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub uid: String,
}

/// What a node agent needs from whatever runs its pods. Pods are identified by
/// `metadata.uid`.
#[async_trait::async_trait]
pub trait NodeRuntime: Send + Sync + 'static {
    /// Capacity and facts for the Node object.
    fn facts(&self) -> NodeFacts;

    /// Events about pods whose state changed. Every subscriber gets every event.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<PodEvent>;

    /// Make the pod run as its object says. Idempotent: the agent calls it
    /// again whenever the pod object changes (annotations, resize), and the
    /// runtime applies what may change on a running pod. A pod the runtime
    /// does not know yet is started (sandbox, address, init containers, then
    /// containers); its previous status (after an agent restart) lets it adopt
    /// what still runs. Returns whether the pod was started by this call.
    async fn run_pod(&self, pod: &Pod) -> Result<bool, RuntimeError>;

    /// Stop every container of the pod (TERM, then KILL after `grace`) and
    /// release its sandbox. Unknown pods are not an error.
    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// The pod's current state, or `None` if the runtime does not know it.
    async fn pod_status(&self, uid: &str) -> Option<PodRuntimeStatus>;

    /// A container's output.
    async fn logs(
        &self,
        uid: &str,
        container: &str,
        options: LogOptions,
    ) -> Result<ByteStream, RuntimeError>;

    /// Run a command in a container; returns its exit code once it ends.
    async fn exec(
        &self,
        uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<i32, RuntimeError>;

    /// Attach to a running container's main process: its stdout/stderr go to
    /// the request's outputs, the request's stdin (and terminal size, with a
    /// TTY) to the process. `request.command` is empty. Returns when the
    /// client's streams close or the container exits.
    async fn attach(
        &self,
        uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<(), RuntimeError> {
        let _ = (uid, container, request);
        Err(RuntimeError::Unsupported(
            "this runtime cannot attach to containers".into(),
        ))
    }

    /// Connect `stream` to `port` inside the pod's network namespace, until
    /// either side closes.
    async fn port_forward(
        &self,
        uid: &str,
        port: u16,
        stream: Box<dyn Duplex>,
    ) -> Result<(), RuntimeError>;

    /// Current usage of the pod's containers.
    async fn stats(&self, uid: &str) -> Option<PodStats>;

    /// Every pod the runtime still has something of (running or left on
    /// disk), so that after a restart the agent stops those the API no
    /// longer knows.
    fn pod_uids(&self) -> Vec<String> {
        Vec::new()
    }
}
