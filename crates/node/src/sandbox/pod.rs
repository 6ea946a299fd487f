//! One pod's worker: its sandbox, its containers' lifecycle, its state file.

use crate::lock;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::crilog;
use super::namespaces::PodNamespaces;
use super::probes::{self, CheckTarget, ProbeKind, Timing};
use super::supervisor::{ContainerRecord, StartSpec, SupervisorError};
use super::Node;
use crate::cni::Target;
use crate::fake::RestartPolicy;
use crate::runtime::{
    ByteStream, ContainerState, ContainerStatus, LogOptions, PodRuntimeStatus, RuntimeError,
    Termination,
};

/// The kubelet's crash-loop back-off: 10 s doubling up to 5 min, reset
/// after a run of 10 minutes.
const BACKOFF_INITIAL: u64 = 10;
const BACKOFF_MAX: u64 = 300;
const BACKOFF_RESET: i64 = 600;

/// Length of a pod uid (`metadata.uid` is a UUID).
const UID_LEN: usize = 36;

/// The pod uid in a container id (`<uid>-<container>-<run>`).
pub(crate) fn uid_of(id: &str) -> Option<&str> {
    id.get(..UID_LEN)
        .filter(|_| id.as_bytes().get(UID_LEN) == Some(&b'-'))
}

/// An event the worker wants recorded on its pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub container: Option<String>,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

pub(crate) enum Cmd {
    Update(Arc<Pod>),
    /// A probe of a container run changed its verdict.
    Probe {
        id: String,
        kind: ProbeKind,
        ok: bool,
    },
    Exit(ContainerRecord),
    /// The supervisor connection was (re)made: check that every container
    /// thought running is still known to it.
    Resync,
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

/// One container as the worker tracks it (persisted).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CState {
    status: ContainerStatus,
    /// Runs started so far (numbers container ids and log files).
    runs: u32,
    /// The OCI runtime id of the current run, while it exists.
    current: Option<String>,
    /// May not start before this (crash-loop back-off).
    not_before: Option<Timestamp>,
    /// The last back-off, in seconds.
    backoff: u64,
    /// An init container that succeeded, or a container that will not run again.
    done: bool,
}

impl CState {
    fn new(c: &Container) -> CState {
        CState {
            status: ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: None,
                state: ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                },
                last_state: None,
                restart_count: 0,
                ready: false,
                started: false,
            },
            runs: 0,
            current: None,
            not_before: None,
            backoff: 0,
            done: false,
        }
    }

    fn running(&self) -> bool {
        matches!(self.status.state, ContainerState::Running { .. })
    }
}

/// Everything the worker knows about its pod (persisted in [`STATE_FILES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PodState {
    uid: String,
    namespace: String,
    name: String,
    pod_ips: Vec<IpAddr>,
    start_time: Timestamp,
    sandbox: bool,
    /// The RuntimeClass handler running the pod's containers.
    #[serde(default)]
    handler: String,
    /// Whether the containers share IPC and UTS namespaces made with the
    /// network one (pods of more than one container; state written before
    /// this field existed always did).
    #[serde(default = "shared_by_default")]
    shared_ipc_uts: bool,
    /// Bumped by every write (which of the two state files is newer).
    #[serde(default)]
    seq: u64,
    /// The CNI container id the network was attached with: a warm
    /// sandbox's, or (absent) the pod UID.
    #[serde(default)]
    cni_id: Option<String>,
    init: Vec<CState>,
    containers: Vec<CState>,
}

impl PodState {
    /// The (init) container called `name`.
    fn container(&self, name: &str) -> Result<&CState, RuntimeError> {
        self.init
            .iter()
            .chain(self.containers.iter())
            .find(|c| c.status.name == name)
            .ok_or_else(|| RuntimeError::ContainerNotFound {
                pod: format!("{}/{}", self.namespace, self.name),
                container: name.into(),
            })
    }
}

pub(crate) struct PodWorker {
    uid: String,
    dir: PathBuf,
    state: Mutex<PodState>,
    pod: Mutex<Option<Arc<Pod>>>,
    tx: mpsc::UnboundedSender<Cmd>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>,
    /// Bumped on every state change (log followers watch it).
    changed: watch::Sender<u64>,
    /// A round of sandbox/container starts is under way.
    settling: std::sync::atomic::AtomicBool,
    /// The status was read during the round (and perhaps not written).
    asked_while_settling: std::sync::atomic::AtomicBool,
}

fn shared_by_default() -> bool {
    true
}

/// The two files the pod state alternates between. Each write goes to the
/// one not holding the newest state (by `seq`), so a write cut short (the
/// agent killed mid-write) leaves the newest complete state readable, and
/// no file is created or deleted per write: a rename per update churned
/// inodes, which ext4 allocates slower the more were freed recently.
const STATE_FILES: [&str; 2] = ["state-a.json", "state-b.json"];

fn write_state(dir: &Path, state: &mut PodState) {
    state.seq += 1;
    let Some(name) = STATE_FILES.get((state.seq % 2) as usize) else {
        return;
    };
    let result = serde_json::to_vec(&*state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(dir.join(name), bytes));
    if let Err(e) = result {
        tracing::warn!(pod = %state.uid, error = %e, "writing pod state failed");
    }
}

/// The newest complete state in `dir` (also the single `state.json` that
/// agents before the alternating files wrote).
fn read_state(dir: &Path) -> Option<PodState> {
    STATE_FILES
        .iter()
        .chain(["state.json"].iter())
        .filter_map(|f| std::fs::read(dir.join(f)).ok())
        .filter_map(|b| serde_json::from_slice::<PodState>(&b).ok())
        .max_by_key(|s| s.seq)
}

/// Whether `dir` holds a pod state.
fn has_state(dir: &Path) -> bool {
    STATE_FILES
        .iter()
        .chain(["state.json"].iter())
        .any(|f| dir.join(f).exists())
}

/// Which list a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Main,
}

impl PodWorker {
    /// Write the container's OCI bundle (`config.json`) into `dir`; errors
    /// come with the container's waiting reason.
    fn write_bundle(
        &self,
        node: &Node,
        container: &Container,
        id: &str,
        dir: &Path,
        prepared: &super::PreparedImage,
        config: &super::env::ContainerConfig,
    ) -> Result<(), (&'static str, String)> {
        let pod = lock(&self.pod)
            .clone()
            .ok_or(("CreateContainerConfigError", "the pod is gone".to_string()))?;
        let ns = self.namespaces();
        let cgroups_path = match node.cgroups.as_ref() {
            Some(cg) => cg
                .container_path(&self.uid, id)
                .map_err(|e| ("CreateContainerError", e.to_string()))?,
            None => String::new(),
        };
        let files = self
            .container_files(node, container, id)
            .map_err(|e| ("CreateContainerError", e.to_string()))?;
        let env = config.env.clone();
        let image = prepared.config.clone().unwrap_or_default();
        let input = crate::bundle::Prepared {
            id: id.to_string(),
            rootfs: prepared.rootfs.clone(),
            rootfs_overlay: prepared.overlay.clone(),
            image_layers: prepared.layers.clone(),
            namespaces: crate::bundle::PodNamespaces {
                network: crate::bundle::NamespaceMode::Join(ns.net.clone()),
                ipc: if ns.shared_ipc_uts {
                    crate::bundle::NamespaceMode::Join(ns.ipc.clone())
                } else {
                    crate::bundle::NamespaceMode::New
                },
                uts: if ns.shared_ipc_uts {
                    crate::bundle::NamespaceMode::Join(ns.uts.clone())
                } else {
                    crate::bundle::NamespaceMode::New
                },
                pid: crate::bundle::NamespaceMode::New,
            },
            cgroups_path,
            mounts: config.mounts.clone(),
            files,
        };
        let plan = crate::bundle::resolve(&pod, container, &image, &env, input, &node.settings)
            .map_err(|e| (e.reason(), e.to_string()))?;
        let spec = crate::bundle::spec(&plan).map_err(|e| (e.reason(), e.to_string()))?;
        crate::bundle::write_bundle(dir, &spec).map_err(|e| (e.reason(), e.to_string()))?;
        Ok(())
    }

    /// The per-pod and per-container files mounted into a container.
    fn container_files(
        &self,
        node: &Node,
        container: &Container,
        id: &str,
    ) -> std::io::Result<crate::bundle::ContainerFiles> {
        let (name, ips) = {
            let st = lock(&self.state);
            (st.name.clone(), st.pod_ips.clone())
        };
        let hostname = lock(&self.pod)
            .as_ref()
            .map(|p| crate::bundle::pod_hostname(p))
            .unwrap_or(name);
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc)?;
        let hostname_file = etc.join("hostname");
        std::fs::write(&hostname_file, format!("{hostname}\n"))?;
        let hosts = etc.join("hosts");
        let resolv = etc.join("resolv.conf");
        let pod = lock(&self.pod).clone();
        match (pod, ips.first(), node.config.cluster_dns.as_ref()) {
            (Some(pod), Some(ip), Some(dns)) => {
                let files = crate::network::pod_files(&pod, *ip, dns, &node.host_resolv_conf);
                std::fs::write(&resolv, files.resolv_conf)?;
                if let Some(h) = files.hosts {
                    std::fs::write(&hosts, h)?;
                }
            }
            _ => {
                std::fs::write(&resolv, &node.host_resolv_conf)?;
                let mut text = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
                if let Some(ip) = ips.first() {
                    text.push_str(&format!("{ip}\t{hostname}\n"));
                }
                std::fs::write(&hosts, text)?;
            }
        }
        let term_dir = self.dir.join("termination");
        std::fs::create_dir_all(&term_dir)?;
        let term = term_dir.join(id);
        std::fs::write(&term, b"")?;
        let term_path = container
            .termination_message_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/dev/termination-log".into());
        Ok(crate::bundle::ContainerFiles {
            hosts: Some(hosts),
            resolv_conf: Some(resolv),
            hostname: Some(hostname_file),
            termination_log: Some((term, term_path)),
            shm: None,
        })
    }

    fn with_state(node: &Node, state: PodState, pod: Option<Arc<Pod>>) -> Arc<PodWorker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let dir = node.pod_dir(&state.uid);
        Arc::new(PodWorker {
            uid: state.uid.clone(),
            dir,
            state: Mutex::new(state),
            pod: Mutex::new(pod),
            tx,
            rx: Mutex::new(Some(rx)),
            changed: watch::channel(0).0,
            settling: std::sync::atomic::AtomicBool::new(false),
            asked_while_settling: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A worker for `pod`: fresh, or re-adopting the state a previous agent left.
    pub(crate) fn new(node: &Node, pod: Arc<Pod>) -> Result<Arc<PodWorker>, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = node.pod_dir(&uid);
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| RuntimeError::Failed("pod has no spec".into()))?;
        let state = match read_state(&dir) {
            Some(s) => s,
            None => {
                std::fs::create_dir_all(&dir)?;
                PodState {
                    uid: uid.clone(),
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    pod_ips: Vec::new(),
                    start_time: Timestamp::now(),
                    sandbox: false,
                    handler: String::new(),
                    cni_id: None,
                    seq: 0,
                    shared_ipc_uts: spec.containers.len()
                        + spec.init_containers.as_ref().map_or(0, Vec::len)
                        > 1,
                    init: spec
                        .init_containers
                        .iter()
                        .flatten()
                        .map(CState::new)
                        .collect(),
                    containers: spec
                        .containers
                        .iter()
                        .map(|c| {
                            let mut st = CState::new(c);
                            if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
                                st.status.state = ContainerState::Waiting {
                                    reason: "PodInitializing".into(),
                                    message: None,
                                };
                            }
                            st
                        })
                        .collect(),
                }
            }
        };
        let mut state = state;
        write_state(&dir, &mut state);
        Ok(Self::with_state(node, state, Some(pod)))
    }

    /// A worker for state left on disk by a pod that no longer exists, only
    /// to stop and clean it.
    pub(crate) fn adopt_orphan(
        node: &Node,
        uid: &str,
    ) -> Result<Option<Arc<PodWorker>>, RuntimeError> {
        let dir = node.pod_dir(uid);
        match read_state(&dir) {
            Some(state) => Ok(Some(Self::with_state(node, state, None))),
            None => {
                // Not even a state file: nothing was started from it.
                let _ = std::fs::remove_dir_all(&dir);
                Ok(None)
            }
        }
    }

    pub(crate) fn send(&self, cmd: Cmd) {
        let _ = self.tx.send(cmd);
    }

    pub(crate) fn status(&self) -> PodRuntimeStatus {
        let st = lock(&self.state);
        let settling = self.settling.load(std::sync::atomic::Ordering::SeqCst);
        if settling {
            // Whoever asked may skip writing it: tell them again at the end.
            self.asked_while_settling
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        PodRuntimeStatus {
            settling,
            pod_ips: st.pod_ips.clone(),
            start_time: st.start_time,
            init_containers: st.init.iter().map(|c| c.status.clone()).collect(),
            containers: st.containers.iter().map(|c| c.status.clone()).collect(),
        }
    }

    fn namespaces(&self) -> PodNamespaces {
        PodNamespaces::at(&self.dir, lock(&self.state).shared_ipc_uts)
    }

    /// Apply a change to the state: persist it and tell everyone.
    fn update<R>(&self, node: &Node, f: impl FnOnce(&mut PodState) -> R) -> R {
        let r = {
            let mut st = lock(&self.state);
            let r = f(&mut st);
            write_state(&self.dir, &mut st);
            r
        };
        self.changed.send_modify(|v| *v += 1);
        node.notify(&self.uid);
        r
    }

    fn record(&self, node: &Node, ev: Recorded) {
        let Some(recorder) = node.recorder.as_ref() else {
            return;
        };
        let Some(pod) = lock(&self.pod).clone() else {
            return;
        };
        let mut r = skiff_client::events::reference(&*pod);
        if let Some(c) = &ev.container {
            r.field_path = Some(format!("spec.containers{{{c}}}"));
        }
        let kind = if ev.warning {
            skiff_client::events::EventType::Warning
        } else {
            skiff_client::events::EventType::Normal
        };
        recorder.record(r, kind, &ev.reason, &ev.message);
    }

    fn event(&self, node: &Node, container: Option<&str>, warning: bool, reason: &str, msg: &str) {
        self.record(
            node,
            Recorded {
                container: container.map(str::to_string),
                warning,
                reason: reason.into(),
                message: msg.into(),
            },
        );
    }

    /// The worker's task: sandbox, then containers, until stopped.
    pub(crate) async fn run(self: Arc<Self>, node: Arc<Node>) {
        let Some(mut rx) = lock(&self.rx).take() else {
            return;
        };
        // Re-adopt what a previous agent left running.
        self.adopt(&node).await;
        // Mounted ConfigMaps, Secrets and downward API files follow the API.
        let me = Arc::downgrade(&self);
        tokio::spawn(super::volumes::resync(
            node.clone(),
            self.dir.clone(),
            move || {
                let w = me.upgrade()?;
                let (live, ips) = {
                    let st = lock(&w.state);
                    let live = st.sandbox && st.init.iter().chain(&st.containers).any(|c| !c.done);
                    (live, st.pod_ips.clone())
                };
                let pod = lock(&w.pod).clone();
                Some(pod.filter(|_| live).map(|p| (p, ips)))
            },
        ));
        let mut sandbox_delay = Duration::from_millis(500);
        loop {
            let orphan = lock(&self.pod).is_none();
            // Sandbox and container starts of this round report once, at
            // the end (see `PodRuntimeStatus::settling`).
            self.settling
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let version = *self.changed.borrow();
            if !orphan && !lock(&self.state).sandbox {
                match self.create_sandbox(&node).await {
                    Ok(()) => {}
                    Err(e) => {
                        self.event(
                            &node,
                            None,
                            true,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {e}"),
                        );
                        sandbox_delay = (sandbox_delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
            if !orphan && lock(&self.state).sandbox {
                self.step(&node).await;
            }
            self.settling
                .store(false, std::sync::atomic::Ordering::SeqCst);
            let asked = self
                .asked_while_settling
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            if asked || *self.changed.borrow() != version {
                node.notify(&self.uid);
            }
            let wake = self.next_wake();
            let sleep = match (lock(&self.state).sandbox, wake) {
                (false, _) => sandbox_delay,
                (true, Some(t)) => Duration::from_millis(
                    u64::try_from(t.as_millisecond() - Timestamp::now().as_millisecond())
                        .unwrap_or(0),
                ),
                (true, None) => Duration::from_secs(3600),
            };
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = tokio::time::sleep(sleep) => continue,
            };
            match cmd {
                None => return,
                Some(Cmd::Update(pod)) => *lock(&self.pod) = Some(pod),
                Some(Cmd::Probe { id, kind, ok }) => self.probed(&node, &id, kind, ok).await,
                Some(Cmd::Exit(rec)) => self.exited(&node, rec).await,
                Some(Cmd::Resync) => self.adopt(&node).await,
                Some(Cmd::Stop { grace, done }) => {
                    self.shutdown(&node, grace, &mut rx).await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// The earliest back-off deadline.
    fn next_wake(&self) -> Option<Timestamp> {
        let st = lock(&self.state);
        st.init
            .iter()
            .chain(st.containers.iter())
            .filter(|c| !c.done && c.current.is_none())
            .filter_map(|c| c.not_before)
            .min()
    }

    async fn adopt(&self, node: &Node) {
        let running: Vec<String> = {
            let st = lock(&self.state);
            st.init
                .iter()
                .chain(st.containers.iter())
                .filter_map(|c| c.current.clone())
                .collect()
        };
        if running.is_empty() {
            return;
        }
        let Ok(list) = node.supervisor.list().await else {
            // Not reachable now: judge nothing (the next resync will).
            return;
        };
        for id in running {
            match list.iter().find(|r| r.id == id) {
                Some(rec) if rec.exit.is_none() => {} // still running: keep it
                Some(rec) => self.exited(node, rec.clone()).await,
                None => {
                    // Its process is gone and nobody saw it end.
                    let _ = node.runc(&["delete", "--force", &id]).await;
                    self.exited(node, vanished(&id, None)).await;
                }
            }
        }
    }

    /// The handler of the pod's RuntimeClass (empty without one), checked
    /// against what this node has installed.
    async fn runtime_handler(&self, node: &Node) -> Result<String, RuntimeError> {
        let class = lock(&self.pod)
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.runtime_class_name.clone())
            .filter(|c| !c.is_empty());
        let Some(class) = class else {
            return Ok(String::new());
        };
        let client = node
            .client
            .clone()
            .ok_or_else(|| RuntimeError::Failed("no API client to read RuntimeClasses".into()))?;
        let api: kube::Api<k8s_openapi::api::node::v1::RuntimeClass> = kube::Api::all(client);
        let rc = api
            .get_opt(&class)
            .await
            .map_err(|e| RuntimeError::Failed(format!("reading RuntimeClass {class:?}: {e}")))?
            .ok_or_else(|| RuntimeError::Failed(format!("RuntimeClass {class:?} not found")))?;
        if node.handler(&rc.handler).is_none() {
            return Err(RuntimeError::Failed(format!(
                "no runtime for {:?} is configured",
                rc.handler
            )));
        }
        Ok(rc.handler)
    }

    async fn create_sandbox(&self, node: &Arc<Node>) -> Result<(), RuntimeError> {
        let t0 = std::time::Instant::now();
        let r = self.create_sandbox_inner(node).await;
        tracing::debug!(pod = %self.uid, ms = t0.elapsed().as_secs_f64() * 1e3, "sandbox ready");
        r
    }

    async fn create_sandbox_inner(&self, node: &Arc<Node>) -> Result<(), RuntimeError> {
        let handler = self.runtime_handler(node).await?;
        self.update(node, |st| st.handler = handler.clone());
        let ns = self.namespaces();
        // A pod of one container takes a warm sandbox when there is one.
        let warm = if ns.shared_ipc_uts {
            None
        } else {
            super::warm::take(node)
        };
        let mut warm_ips = None;
        if let Some(w) = warm {
            match w.hand_over(&ns.net) {
                Ok(()) => warm_ips = Some((w.id.clone(), w.ips.clone())),
                Err(e) => {
                    tracing::warn!(pod = %self.uid, error = %e, "taking a warm sandbox failed");
                    ns.remove();
                    super::warm::discard(node, w).await;
                }
            }
        }
        // Never closed: the node owns it.
        let _permit = match warm_ips {
            Some(_) => None,
            None => Some(node.starts.acquire().await),
        };
        if warm_ips.is_none() {
            ns.create().await?;
        }
        if let (Some(cg), Some(pod)) = (node.cgroups.as_ref(), lock(&self.pod).clone()) {
            let spec = pod.spec.clone().unwrap_or_default();
            let limits = crate::bundle::pod_resources(&spec, node.settings.pids_limit)
                .map_err(|e| RuntimeError::Failed(e.to_string()))?;
            cg.create_pod(&self.uid, &limits)
                .map_err(|e| RuntimeError::Failed(format!("creating the pod cgroup: {e}")))?;
        }
        if let Some((id, ips)) = warm_ips {
            self.update(node, |st| {
                st.pod_ips = ips;
                st.cni_id = Some(id);
                st.sandbox = true;
            });
            return Ok(());
        }
        let target = Target {
            container_id: &self.uid,
            netns: &ns.net,
            ifname: "eth0",
        };
        let attachment = node
            .cni
            .add(&node.network, target)
            .await
            .map_err(|e| RuntimeError::Failed(format!("setting up the pod network: {e}")))?;
        self.update(node, |st| {
            st.pod_ips = attachment.ips.clone();
            st.sandbox = true;
        });
        Ok(())
    }

    /// Start whatever should run now.
    async fn step(self: &Arc<Self>, node: &Arc<Node>) {
        let policy = self.policy();
        // Init containers, one at a time in order.
        let next_init = {
            let st = lock(&self.state);
            st.init.iter().position(|c| !c.done)
        };
        if let Some(i) = next_init {
            let (running, failed_for_good) = {
                let st = lock(&self.state);
                let c = &st.init[i];
                let failed = matches!(&c.status.state, ContainerState::Terminated(t) if t.exit_code != 0)
                    && policy == RestartPolicy::Never;
                (c.running() || c.current.is_some(), failed)
            };
            if !running && !failed_for_good && self.due(Kind::Init, i) {
                self.start(node, Kind::Init, i).await;
            }
            return;
        }
        let n = lock(&self.state).containers.len();
        for i in 0..n {
            let should = {
                let st = lock(&self.state);
                let c = &st.containers[i];
                !c.done && c.current.is_none()
            };
            if should && self.due(Kind::Main, i) {
                self.start(node, Kind::Main, i).await;
            }
        }
    }

    fn due(&self, kind: Kind, i: usize) -> bool {
        let st = lock(&self.state);
        let list = match kind {
            Kind::Init => &st.init,
            Kind::Main => &st.containers,
        };
        list.get(i)
            .and_then(|c| c.not_before)
            .is_none_or(|t| t <= Timestamp::now())
    }

    fn policy(&self) -> RestartPolicy {
        lock(&self.pod)
            .as_ref()
            .map_or(RestartPolicy::Never, |p| RestartPolicy::of(p))
    }

    fn container_spec(&self, kind: Kind, i: usize) -> Option<Container> {
        let pod = lock(&self.pod).clone()?;
        let spec = pod.spec.as_ref()?;
        match kind {
            Kind::Init => spec.init_containers.as_ref()?.get(i).cloned(),
            Kind::Main => spec.containers.get(i).cloned(),
        }
    }

    fn with_container<R>(
        &self,
        node: &Node,
        kind: Kind,
        i: usize,
        f: impl FnOnce(&mut CState) -> R,
    ) -> Option<R> {
        self.update(node, |st| {
            let list = match kind {
                Kind::Init => &mut st.init,
                Kind::Main => &mut st.containers,
            };
            list.get_mut(i).map(f)
        })
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    fn log_path(&self, name: &str, run: u32) -> PathBuf {
        self.dir.join("logs").join(name).join(format!("{run}.log"))
    }

    async fn start(self: &Arc<Self>, node: &Arc<Node>, kind: Kind, i: usize) {
        let Some(spec) = self.container_spec(kind, i) else {
            return;
        };
        let name = spec.name.clone();
        let run = {
            let st = lock(&self.state);
            let list = match kind {
                Kind::Init => &st.init,
                Kind::Main => &st.containers,
            };
            list.get(i).map_or(0, |c| c.runs)
        };
        let t_start = std::time::Instant::now();
        let id = format!("{}-{}-{}", self.uid, name, run);
        let dir = self.container_dir(&id);
        let image = spec.image.clone().unwrap_or_default();
        let pull_policy = spec.image_pull_policy.clone().unwrap_or_default();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.start_failed(node, kind, i, "CreateContainerError", &e.to_string());
            return;
        }
        let pod = lock(&self.pod).clone();
        let events = |warning: bool, reason: &str, message: &str| {
            self.event(node, Some(&name), warning, reason, message);
        };
        let ips = lock(&self.state).pod_ips.clone();
        let config = match pod.as_deref() {
            Some(p) => super::env::prepare(node, p, &spec, &self.dir, &ips).await,
            None => Err(super::env::Failure::Config("the pod is gone".into())),
        };
        let config = match config {
            Ok(c) => c,
            Err(super::env::Failure::Mount(message)) => {
                // As the kubelet's volume manager: wait in ContainerCreating, retry.
                let _ = std::fs::remove_dir_all(&dir);
                self.event(node, None, true, "FailedMount", &message);
                self.with_container(node, kind, i, |c| {
                    c.not_before = Some(after(2));
                    c.status.state = ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                    };
                });
                return;
            }
            Err(super::env::Failure::Config(message)) => {
                let _ = std::fs::remove_dir_all(&dir);
                self.start_failed(node, kind, i, "CreateContainerConfigError", &message);
                return;
            }
        };
        for w in &config.warnings {
            self.event(node, None, true, "InvalidEnvironmentVariableNames", w);
        }
        let request = super::ImageRequest {
            image: &image,
            pull_policy: &pull_policy,
            pod: pod.as_deref(),
            client: node.client.as_ref(),
            dir: &dir,
            events: &events,
        };
        let prepared = match node.images.prepare(request).await {
            Ok(p) => {
                // Pull back-off is not crash-loop back-off: it ends here.
                let pulls_backed_off = {
                    let st = lock(&self.state);
                    let list = match kind {
                        Kind::Init => &st.init,
                        Kind::Main => &st.containers,
                    };
                    list.get(i).is_some_and(|c| {
                        matches!(&c.status.state, ContainerState::Waiting { reason, .. }
                            if reason == "ErrImagePull" || reason == "ImagePullBackOff")
                    })
                };
                if pulls_backed_off {
                    self.with_container(node, kind, i, |c| c.backoff = 0);
                }
                p
            }
            Err(e) => {
                // The image source recorded the details (Failed, ErrImageNeverPull, ...).
                self.event(
                    node,
                    Some(&name),
                    true,
                    "Failed",
                    &format!("Error: {}", e.reason),
                );
                let until = self
                    .with_container(node, kind, i, |c| {
                        c.backoff = next_backoff(c.backoff);
                        c.not_before = Some(after(c.backoff));
                        c.status.state = ContainerState::Waiting {
                            reason: e.reason.clone(),
                            message: Some(e.message.clone()),
                        };
                        c.not_before
                    })
                    .flatten();
                let _ = std::fs::remove_dir_all(&dir);
                if e.reason == "ErrImagePull" {
                    // As at the kubelet's next sync: while the pull backs
                    // off, the container shows ImagePullBackOff.
                    let (worker, node) = (self.clone(), node.clone());
                    let (name, image) = (name.clone(), image.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if !has_state(&worker.dir) {
                            return; // the pod is gone meanwhile
                        }
                        let backing_off = worker.with_container(&node, kind, i, |c| {
                            let still = c.current.is_none()
                                && c.not_before == until
                                && matches!(&c.status.state, ContainerState::Waiting { reason, .. } if reason == "ErrImagePull");
                            if still {
                                c.status.state = ContainerState::Waiting {
                                    reason: "ImagePullBackOff".into(),
                                    message: Some(format!(
                                        "Back-off pulling image {image:?}: ErrImagePull: {}",
                                        e.message
                                    )),
                                };
                            }
                            still
                        });
                        if backing_off == Some(true) {
                            let msg = format!("Back-off pulling image {image:?}");
                            worker.event(&node, Some(&name), false, "BackOff", &msg);
                            worker.event(
                                &node,
                                Some(&name),
                                true,
                                "Failed",
                                "Error: ImagePullBackOff",
                            );
                        }
                    });
                }
                return;
            }
        };
        let log_path = self.log_path(&name, run);
        let t_bundle = std::time::Instant::now();
        let permit = node.starts.acquire().await;
        if let Err((reason, message)) =
            self.write_bundle(node, &spec, &id, &dir, &prepared, &config)
        {
            node.images.release(&dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            self.start_failed(node, kind, i, reason, &message);
            return;
        }
        let bundle_ms = t_bundle.elapsed().as_secs_f64() * 1e3;
        self.with_container(node, kind, i, |c| {
            c.runs = run + 1;
            c.current = Some(id.clone());
            c.status.image_id = prepared.image_id.clone();
        });
        let started = node
            .supervisor
            .start(StartSpec {
                id: id.clone(),
                bundle: dir.clone(),
                log_path,
                stdin: spec.stdin.unwrap_or(false),
                stdin_once: spec.stdin_once.unwrap_or(false),
                runtime: {
                    let oci = node.oci_for(&id);
                    Some((oci.path, oci.root))
                },
            })
            .await;
        drop(permit);
        tracing::debug!(pod = %self.uid, container = %name,
            prepare_ms = t_bundle.duration_since(t_start).as_secs_f64() * 1e3,
            bundle_ms,
            bundle_and_run_ms = t_bundle.elapsed().as_secs_f64() * 1e3,
            "container started");
        match started {
            Ok(rec) => {
                let startup = spec.startup_probe.is_some();
                let readiness = spec.readiness_probe.is_some();
                self.with_container(node, kind, i, |c| {
                    c.status.container_id = Some(format!("runc://{id}"));
                    c.status.state = ContainerState::Running {
                        started_at: rec.started_at,
                    };
                    c.status.started = !startup;
                    c.status.ready = !startup && !readiness;
                    c.not_before = None;
                });
                self.event(
                    node,
                    Some(&name),
                    false,
                    "Created",
                    &format!("Created container: {name}"),
                );
                self.event(
                    node,
                    Some(&name),
                    false,
                    "Started",
                    &format!("Started container {name}"),
                );
                let hooks = spec
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.post_start.as_ref())
                    .is_some();
                if startup || readiness || spec.liveness_probe.is_some() || hooks {
                    let target = self.check_target(node, &id);
                    tokio::spawn(probe_loop(
                        Arc::downgrade(self),
                        node.clone(),
                        id.clone(),
                        spec.clone(),
                        target,
                    ));
                }
            }
            Err(e) => {
                let message = match e {
                    SupervisorError::Failed(m) => m,
                    other => other.to_string(),
                };
                let _ = node.runc(&["delete", "--force", &id]).await;
                node.images.release(&dir).await;
                let _ = std::fs::remove_dir_all(&dir);
                self.event(
                    node,
                    Some(&name),
                    true,
                    "Failed",
                    &format!("Error: {message}"),
                );
                let now = Timestamp::now();
                self.finished(
                    node,
                    kind,
                    i,
                    Termination {
                        exit_code: 128,
                        reason: "StartError".into(),
                        message: Some(message),
                        started_at: now,
                        finished_at: now,
                    },
                );
            }
        }
    }

    fn check_target(&self, node: &Node, id: &str) -> CheckTarget {
        let oci = node.oci_for(id);
        CheckTarget {
            runtime: oci.path,
            runtime_root: oci.root,
            container_id: id.to_string(),
            pod_ip: lock(&self.state).pod_ips.first().copied(),
        }
    }

    /// Whether `id` is the current run of some container; its name if so.
    fn current_name(&self, id: &str) -> Option<String> {
        let st = lock(&self.state);
        st.init
            .iter()
            .chain(st.containers.iter())
            .find(|c| c.current.as_deref() == Some(id))
            .map(|c| c.status.name.clone())
    }

    /// A probe verdict for the container run `id`.
    async fn probed(&self, node: &Arc<Node>, id: &str, kind: ProbeKind, ok: bool) {
        let Some(name) = self.current_name(id) else {
            return; // an old run
        };
        let readiness = self
            .container_spec_by_name(&name)
            .is_some_and(|c| c.readiness_probe.is_some());
        match (kind, ok) {
            (ProbeKind::Startup, true) => {
                self.set_flags(node, id, |c| {
                    c.status.started = true;
                    c.status.ready = !readiness;
                });
            }
            (ProbeKind::Readiness, ok) => {
                self.set_flags(node, id, |c| c.status.ready = ok && c.status.started);
            }
            (ProbeKind::Liveness, true) => {}
            (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                self.event(
                    node,
                    Some(&name),
                    false,
                    "Killing",
                    &format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.label().to_lowercase()
                    ),
                );
                self.set_flags(node, id, |c| c.status.ready = false);
                let grace = self.grace();
                let node = node.clone();
                let id = id.to_string();
                tokio::spawn(async move { kill_gracefully(&node, &id, grace).await });
            }
        }
    }

    fn set_flags(&self, node: &Node, id: &str, f: impl FnOnce(&mut CState)) {
        self.update(node, |st| {
            if let Some(c) = st
                .init
                .iter_mut()
                .chain(st.containers.iter_mut())
                .find(|c| c.current.as_deref() == Some(id))
            {
                f(c);
            }
        });
    }

    fn container_spec_by_name(&self, name: &str) -> Option<Container> {
        let pod = lock(&self.pod).clone()?;
        let spec = pod.spec.as_ref()?;
        spec.init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .find(|c| c.name == name)
            .cloned()
    }

    /// The pod's termination grace period.
    fn grace(&self) -> Duration {
        let secs = lock(&self.pod)
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(30);
        Duration::from_secs(secs)
    }

    /// The container could not even be created: wait and retry.
    fn start_failed(&self, node: &Node, kind: Kind, i: usize, reason: &str, message: &str) {
        let name = self
            .container_spec(kind, i)
            .map(|c| c.name)
            .unwrap_or_default();
        self.event(
            node,
            Some(&name),
            true,
            "Failed",
            &format!("Error: {message}"),
        );
        self.with_container(node, kind, i, |c| {
            c.backoff = next_backoff(c.backoff);
            c.not_before = Some(after(c.backoff));
            c.status.state = ContainerState::Waiting {
                reason: reason.into(),
                message: Some(message.into()),
            };
        });
    }

    /// A run ended: record it and decide whether (and when) it runs again.
    fn finished(&self, node: &Node, kind: Kind, i: usize, t: Termination) {
        let policy = self.policy();
        let pod_name = {
            let st = lock(&self.state);
            format!("{}_{}({})", st.name, st.namespace, st.uid)
        };
        let ran = t.finished_at.as_second() - t.started_at.as_second();
        let restart = match kind {
            // An init container that succeeded is done; one that failed
            // runs again unless the pod never restarts.
            Kind::Init => t.exit_code != 0 && policy != RestartPolicy::Never,
            Kind::Main => policy.restarts(t.exit_code),
        };
        let back_off = self.with_container(node, kind, i, |c| {
            c.current = None;
            c.status.ready = false;
            c.status.started = false;
            if kind == Kind::Init && t.exit_code == 0 {
                c.done = true;
                c.status.state = ContainerState::Terminated(t.clone());
                return None;
            }
            if !restart {
                if kind == Kind::Main {
                    c.done = true;
                }
                c.status.state = ContainerState::Terminated(t.clone());
                return None;
            }
            // Restarting: the first restart is immediate, then back off.
            if ran >= BACKOFF_RESET {
                c.backoff = 0;
            }
            let delay = c.backoff;
            c.backoff = next_backoff(c.backoff);
            c.not_before = Some(after(delay));
            c.status.last_state = Some(t.clone());
            c.status.restart_count += 1;
            if delay == 0 {
                c.status.state = ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                };
                None
            } else {
                let msg = format!(
                    "back-off {} restarting failed container={} pod={pod_name}",
                    human(delay),
                    c.status.name
                );
                c.status.state = ContainerState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(msg.clone()),
                };
                Some((c.status.name.clone(), msg))
            }
        });
        if let Some(Some((name, msg))) = back_off {
            self.event(
                node,
                Some(&name),
                true,
                "BackOff",
                &format!("Back-off restarting failed container {name} in pod {pod_name}: {msg}"),
            );
        }
    }

    /// The supervisor says a container ended.
    async fn exited(&self, node: &Node, rec: ContainerRecord) {
        let Some(exit) = rec.exit.clone() else {
            return;
        };
        let found = {
            let st = lock(&self.state);
            st.init
                .iter()
                .position(|c| c.current.as_deref() == Some(rec.id.as_str()))
                .map(|i| (Kind::Init, i))
                .or_else(|| {
                    st.containers
                        .iter()
                        .position(|c| c.current.as_deref() == Some(rec.id.as_str()))
                        .map(|i| (Kind::Main, i))
                })
        };
        let dir = self.container_dir(&rec.id);
        // Read the OOM counter before runc removes the container's cgroup.
        let oom_killed = node
            .cgroups
            .as_ref()
            .and_then(|cg| cg.oom_kills(&self.uid, &rec.id).ok())
            .is_some_and(|n| n > 0);
        let _ = node.runc(&["delete", "--force", &rec.id]).await;
        node.images.release(&dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = node.supervisor.forget(&rec.id).await;
        let Some((kind, i)) = found else {
            return;
        };
        let started_at = {
            let st = lock(&self.state);
            let list = match kind {
                Kind::Init => &st.init,
                Kind::Main => &st.containers,
            };
            match list.get(i).map(|c| &c.status.state) {
                Some(ContainerState::Running { started_at }) => *started_at,
                _ => rec.started_at,
            }
        };
        let reason = if oom_killed && exit.code != 0 {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let message = self.termination_message(kind, i, &rec, exit.code);
        self.finished(
            node,
            kind,
            i,
            Termination {
                exit_code: exit.code,
                reason: reason.into(),
                message,
                started_at,
                finished_at: exit.finished_at,
            },
        );
    }

    /// What the container left in its termination log (at most 4 KiB), or
    /// with `FallbackToLogsOnError` and a failure, the end of its output.
    fn termination_message(
        &self,
        kind: Kind,
        i: usize,
        rec: &ContainerRecord,
        code: i32,
    ) -> Option<String> {
        let path = self.dir.join("termination").join(&rec.id);
        let text = std::fs::read(&path).ok().map(|mut b| {
            b.truncate(4096);
            String::from_utf8_lossy(&b).into_owned()
        });
        let _ = std::fs::remove_file(&path);
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            return Some(t);
        }
        let fallback = self
            .container_spec(kind, i)
            .and_then(|c| c.termination_message_policy)
            .is_some_and(|p| p == "FallbackToLogsOnError");
        if !fallback || code == 0 || rec.log_path.as_os_str().is_empty() {
            return None;
        }
        let opts = crilog::ReadOptions {
            tail_lines: Some(80),
            ..Default::default()
        };
        let (mut bytes, _) = crilog::read_all(&rec.log_path, &opts).ok()?;
        if bytes.len() > 2048 {
            bytes.drain(..bytes.len() - 2048);
        }
        Some(String::from_utf8_lossy(&bytes).into_owned()).filter(|t| !t.is_empty())
    }

    /// Stop every container (TERM, KILL after `grace`), then the sandbox.
    async fn shutdown(&self, node: &Node, grace: Duration, rx: &mut mpsc::UnboundedReceiver<Cmd>) {
        let running = || -> Vec<String> {
            let st = lock(&self.state);
            st.init
                .iter()
                .chain(st.containers.iter())
                .filter_map(|c| c.current.clone())
                .collect()
        };
        // Nothing may start again.
        self.update(node, |st| {
            for c in st.init.iter_mut().chain(st.containers.iter_mut()) {
                c.done = true;
            }
        });
        let deadline = tokio::time::Instant::now() + grace;
        // preStop hooks (all at once, within the grace period), then TERM.
        let mut hooks = Vec::new();
        for id in running() {
            let Some(name) = self.current_name(&id) else {
                continue;
            };
            self.event(
                node,
                Some(&name),
                false,
                "Killing",
                &format!("Stopping container {name}"),
            );
            let Some(spec) = self.container_spec_by_name(&name) else {
                continue;
            };
            let Some(handler) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                continue;
            };
            let target = self.check_target(node, &id);
            hooks.push(async move {
                let r = match probes::hook_action(&handler) {
                    probes::Action::Unsupported("sleep") => {
                        let secs = handler.sleep.as_ref().map_or(0, |s| s.seconds);
                        tokio::time::sleep(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
                            .await;
                        Ok(())
                    }
                    action => probes::check(&action, &spec, &target, grace).await,
                };
                (name, r)
            });
        }
        if !hooks.is_empty() {
            let results = tokio::time::timeout_at(deadline, futures::future::join_all(hooks)).await;
            for (name, r) in results.unwrap_or_default() {
                if let Err(e) = r {
                    self.event(
                        node,
                        Some(&name),
                        true,
                        "FailedPreStopHook",
                        &format!("PreStopHook failed: {e}"),
                    );
                }
            }
        }
        for id in running() {
            let _ = node.runc(&["kill", &id, "TERM"]).await;
        }
        let mut killed = false;
        loop {
            if running().is_empty() {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline && !killed {
                for id in running() {
                    let _ = node.runc(&["kill", &id, "KILL"]).await;
                }
                killed = true;
            }
            let wait = if killed {
                Duration::from_secs(10)
            } else {
                deadline - now
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(Cmd::Exit(rec))) => self.exited(node, rec).await,
                Ok(Some(Cmd::Stop { done, .. })) => {
                    let _ = done.send(());
                }
                Ok(Some(Cmd::Update(_) | Cmd::Probe { .. } | Cmd::Resync)) => {}
                Ok(None) => break,
                Err(_) if killed => {
                    // Exits never came: the supervisor lost them. Clean up anyway.
                    for id in running() {
                        self.exited(node, vanished(&id, Some(9))).await;
                    }
                    break;
                }
                Err(_) => {}
            }
        }
        let ns = self.namespaces();
        if ns.net.exists() {
            let cni_id = lock(&self.state)
                .cni_id
                .clone()
                .unwrap_or_else(|| self.uid.clone());
            let target = Target {
                container_id: &cni_id,
                netns: &ns.net,
                ifname: "eth0",
            };
            if let Err(e) = node.cni.del(&node.network, target).await {
                tracing::warn!(pod = %self.uid, error = %e, "releasing the pod network failed");
            }
        }
        ns.remove();
        if let Some(cg) = node.cgroups.as_ref() {
            if let Err(e) = cg.remove_pod(&self.uid, Duration::from_secs(5)).await {
                tracing::warn!(pod = %self.uid, error = %e, "removing the pod cgroup failed");
            }
        }
        super::volumes::teardown(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        node.notify(&self.uid);
    }

    /// The pod's RuntimeClass handler (empty: the default).
    pub(crate) fn handler_name(&self) -> String {
        lock(&self.state).handler.clone()
    }

    /// `namespace/name` of the pod.
    pub(crate) fn pod_name(&self) -> String {
        let st = lock(&self.state);
        format!("{}/{}", st.namespace, st.name)
    }

    /// The runtime id of the running container `name`.
    pub(crate) fn running_id(&self, name: &str) -> Result<String, RuntimeError> {
        let st = lock(&self.state);
        let c = st.container(name)?;
        match (&c.current, &c.status.state) {
            (Some(id), ContainerState::Running { .. }) => Ok(id.clone()),
            _ => Err(RuntimeError::Failed(format!(
                "container {name} is not running in pod {}/{}",
                st.namespace, st.name
            ))),
        }
    }

    /// A container's output, as `kubectl logs` asks.
    pub(crate) fn logs(
        self: &Arc<Self>,
        container: &str,
        options: LogOptions,
    ) -> Result<ByteStream, RuntimeError> {
        let (run, current) = {
            let st = lock(&self.state);
            let c = st.container(container)?;
            (c.runs, c.current.clone())
        };
        // Runs are numbered from 0; `-p` is the run before the latest (the
        // latest may be running, or be the one that just failed).
        let which = if options.previous {
            run.checked_sub(2)
        } else {
            run.checked_sub(1)
        };
        let Some(which) = which else {
            let name = lock(&self.state).name.clone();
            return Err(RuntimeError::Failed(if options.previous {
                format!("previous terminated container {container:?} in pod {name:?} not found")
            } else {
                format!("container {container:?} in pod {name:?} is waiting to start: ContainerCreating")
            }));
        };
        let path = self.log_path(container, which);
        let read = crilog::ReadOptions {
            tail_lines: options.tail_lines,
            since: options.since,
            timestamps: options.timestamps,
        };
        let (first, pos) = crilog::read_all(&path, &read)?;
        let limit = options.limit_bytes;
        let follow = options.follow && !options.previous && current.is_some();
        if !follow {
            let mut first = first;
            if let Some(l) = limit {
                first.truncate(usize::try_from(l).unwrap_or(usize::MAX));
            }
            return Ok(futures::stream::once(async move { Ok(first) }).boxed());
        }
        let me = self.clone();
        let id = current.unwrap_or_default();
        let timestamps = options.timestamps;
        let stream = async_stream(move |tx| async move {
            let mut sent = 0u64;
            let mut send = |bytes: Vec<u8>| -> bool {
                if bytes.is_empty() {
                    return true;
                }
                let mut bytes = bytes;
                if let Some(l) = limit {
                    let room = l.saturating_sub(sent);
                    bytes.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                }
                sent += bytes.len() as u64;
                tx.send(Ok(bytes)).is_ok() && limit.is_none_or(|l| sent < l)
            };
            if !send(first) {
                return;
            }
            let mut pos = pos;
            let mut changed = me.changed.subscribe();
            loop {
                let still = {
                    let st = lock(&me.state);
                    st.init
                        .iter()
                        .chain(st.containers.iter())
                        .any(|c| c.current.as_deref() == Some(id.as_str()))
                };
                match crilog::read_from(&path, pos, timestamps) {
                    Ok((bytes, p)) => {
                        pos = p;
                        if !send(bytes) {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(RuntimeError::Io(e)));
                        return;
                    }
                }
                if !still {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    r = changed.changed() => if r.is_err() { return },
                }
            }
        });
        Ok(stream)
    }
}

/// The exit of a container whose end nobody saw (its supervisor is gone,
/// or it never reported): 137, as if killed.
fn vanished(id: &str, signal: Option<i32>) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        pid: 0,
        started_at: Timestamp::now(),
        log_path: PathBuf::new(),
        exit: Some(super::supervisor::ExitInfo {
            code: 137,
            signal,
            finished_at: Timestamp::now(),
        }),
    }
}

/// TERM, then KILL after `grace` if it still runs.
async fn kill_gracefully(node: &Node, id: &str, grace: Duration) {
    let _ = node.runc(&["kill", id, "TERM"]).await;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let alive = node
            .supervisor
            .list()
            .await
            .map(|l| l.iter().any(|r| r.id == id && r.exit.is_none()))
            .unwrap_or(false);
        if !alive {
            return;
        }
    }
    let _ = node.runc(&["kill", id, "KILL"]).await;
}

/// Run a container's postStart hook and its probes for as long as this run
/// of it lasts, sending verdict changes to the pod's worker.
async fn probe_loop(
    worker: std::sync::Weak<PodWorker>,
    node: Arc<Node>,
    id: String,
    container: Container,
    target: CheckTarget,
) {
    let alive = |w: &std::sync::Weak<PodWorker>| -> Option<Arc<PodWorker>> {
        w.upgrade().filter(|w| w.current_name(&id).is_some())
    };
    let name = container.name.clone();
    if let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
    {
        let action = probes::hook_action(handler);
        if let Err(e) = probes::check(&action, &container, &target, Duration::from_secs(30)).await {
            let Some(w) = alive(&worker) else { return };
            w.event(
                &node,
                Some(&name),
                true,
                "FailedPostStartHook",
                &format!("PostStartHook failed: {e}"),
            );
            kill_gracefully(&node, &id, w.grace()).await;
            return;
        }
    }
    let unhealthy = |w: &PodWorker, kind: ProbeKind, e: &str| {
        w.event(
            &node,
            Some(&name),
            true,
            "Unhealthy",
            &format!("{} probe failed: {e}", kind.label()),
        );
    };
    if let Some(p) = container.startup_probe.as_ref() {
        let t = Timing::of(p);
        let action = probes::probe_action(p);
        tokio::time::sleep(t.initial_delay).await;
        let mut failures = 0;
        loop {
            let r = probes::check(&action, &container, &target, t.timeout).await;
            let Some(w) = alive(&worker) else { return };
            match r {
                Ok(()) => {
                    w.send(Cmd::Probe {
                        id: id.clone(),
                        kind: ProbeKind::Startup,
                        ok: true,
                    });
                    break;
                }
                Err(e) => {
                    failures += 1;
                    unhealthy(&w, ProbeKind::Startup, &e);
                    if failures >= t.failure_threshold {
                        w.send(Cmd::Probe {
                            id: id.clone(),
                            kind: ProbeKind::Startup,
                            ok: false,
                        });
                        return;
                    }
                }
            }
            drop(w);
            tokio::time::sleep(t.period).await;
        }
    }
    struct Runner<'a> {
        kind: ProbeKind,
        timing: Timing,
        action: probes::Action<'a>,
        next: tokio::time::Instant,
        successes: u32,
        failures: u32,
        verdict: Option<bool>,
    }
    let now = tokio::time::Instant::now();
    let mut runners: Vec<Runner<'_>> = [
        (ProbeKind::Readiness, container.readiness_probe.as_ref()),
        (ProbeKind::Liveness, container.liveness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(kind, p)| {
        p.map(|p| {
            let timing = Timing::of(p);
            Runner {
                kind,
                timing,
                action: probes::probe_action(p),
                next: now + timing.initial_delay,
                successes: 0,
                failures: 0,
                verdict: None,
            }
        })
    })
    .collect();
    if runners.is_empty() {
        return;
    }
    loop {
        let Some(next) = runners.iter().map(|r| r.next).min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        for r in runners
            .iter_mut()
            .filter(|r| r.next <= tokio::time::Instant::now())
        {
            let result = probes::check(&r.action, &container, &target, r.timing.timeout).await;
            let Some(w) = alive(&worker) else { return };
            r.next = tokio::time::Instant::now() + r.timing.period;
            match result {
                Ok(()) => {
                    r.failures = 0;
                    r.successes += 1;
                    if r.successes >= r.timing.success_threshold && r.verdict != Some(true) {
                        r.verdict = Some(true);
                        w.send(Cmd::Probe {
                            id: id.clone(),
                            kind: r.kind,
                            ok: true,
                        });
                    }
                }
                Err(e) => {
                    r.successes = 0;
                    r.failures += 1;
                    unhealthy(&w, r.kind, &e);
                    if r.failures >= r.timing.failure_threshold && r.verdict != Some(false) {
                        r.verdict = Some(false);
                        w.send(Cmd::Probe {
                            id: id.clone(),
                            kind: r.kind,
                            ok: false,
                        });
                        if r.kind == ProbeKind::Liveness {
                            return; // the container is being restarted
                        }
                    }
                }
            }
        }
    }
}

/// A stream fed by a task (the task stops when the receiver is dropped).
fn async_stream<F, Fut>(f: F) -> ByteStream
where
    F: FnOnce(mpsc::UnboundedSender<Result<Vec<u8>, RuntimeError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from(mut rx: mpsc::UnboundedReceiver<Result<Vec<u8>, RuntimeError>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn next_backoff(prev: u64) -> u64 {
    if prev == 0 {
        BACKOFF_INITIAL
    } else {
        (prev * 2).min(BACKOFF_MAX)
    }
}

fn after(secs: u64) -> Timestamp {
    let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
    Timestamp::from_millisecond(Timestamp::now().as_millisecond().saturating_add(ms))
        .unwrap_or_else(|_| Timestamp::now())
}

/// `10s`, `1m20s`, `5m0s`, as Go prints durations.
fn human(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(name: &str) -> PodState {
        PodState {
            uid: "u".into(),
            namespace: "ns".into(),
            name: name.into(),
            pod_ips: Vec::new(),
            start_time: Timestamp::UNIX_EPOCH,
            sandbox: false,
            handler: String::new(),
            shared_ipc_uts: false,
            seq: 0,
            cni_id: None,
            init: Vec::new(),
            containers: Vec::new(),
        }
    }

    #[test]
    fn state_alternates_files_and_survives_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_state(dir.path()).is_none());
        // What an older agent left: read, then superseded.
        std::fs::write(
            dir.path().join("state.json"),
            serde_json::to_vec(&state("legacy")).unwrap(),
        )
        .unwrap();
        assert_eq!(read_state(dir.path()).unwrap().name, "legacy");
        let mut st = state("one");
        write_state(dir.path(), &mut st);
        st.name = "two".into();
        write_state(dir.path(), &mut st);
        let back = read_state(dir.path()).unwrap();
        assert_eq!((back.name.as_str(), back.seq), ("two", 2));
        // The next write goes to the file holding "one"; cut short, "two" stays.
        let older = STATE_FILES[((st.seq + 1) % 2) as usize];
        std::fs::write(dir.path().join(older), b"{\"uid\": \"u\", \"na").unwrap();
        assert_eq!(read_state(dir.path()).unwrap().name, "two");
        assert!(has_state(dir.path()));
    }
}
