//! The fake runtime: pods "run" without processes, kwok-style. Every pod gets
//! an address from the node's /16 and goes Running at once; what happens next
//! is steered by pod annotations (see `docs/fake-nodes.md`):
//!
//! | annotation | effect |
//! |---|---|
//! | `fake.skiff.dev/exit-code: "N"` | containers exit with N (default 0) |
//! | `fake.skiff.dev/run-seconds: "S"` | containers exit after S seconds (default: never under restartPolicy Always, 1 s otherwise) |
//! | `fake.skiff.dev/ready: "false"` | containers run but are not ready |
//! | `fake.skiff.dev/ready-after-seconds: "S"` | readiness comes S seconds after each start |
//! | `fake.skiff.dev/cpu-usage: "250m"` | the pod's reported CPU usage |
//! | `fake.skiff.dev/memory-usage: "64Mi"` | the pod's reported memory usage |
//!
//! All of them are followed live: the agent calls [`NodeRuntime::run_pod`]
//! again when the pod changes. A container that exits restarts (after a 1 s
//! back-off) under restartPolicy Always, or OnFailure with a non-zero code.
//!
//! No task per pod: one timer task per runtime wakes up for the next exit,
//! restart or readiness deadline.

use crate::lock;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use skiff_client::metrics::PodUsage;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::ipam::Ipam;
use crate::quantity;
use crate::runtime::{
    ByteStream, ContainerState, ContainerStatus, Duplex, ExecRequest, LogOptions, NodeFacts,
    NodeRuntime, PodEvent, PodRuntimeStatus, PodStats, RuntimeError, Termination, Usage,
};

/// Containers exit with this code.
pub const EXIT_CODE: &str = "fake.skiff.dev/exit-code";
/// Containers run this many seconds, then exit.
pub const RUN_SECONDS: &str = "fake.skiff.dev/run-seconds";
/// `"false"`: containers are running but not ready.
pub const READY: &str = "fake.skiff.dev/ready";
/// Readiness comes this many seconds after each container start.
pub const READY_AFTER_SECONDS: &str = "fake.skiff.dev/ready-after-seconds";
/// The pod's CPU usage (a quantity, `250m`).
pub const CPU_USAGE: &str = "fake.skiff.dev/cpu-usage";
/// The pod's memory usage (a quantity, `64Mi`).
pub const MEMORY_USAGE: &str = "fake.skiff.dev/memory-usage";
/// On a Node: `"stopped"` makes its agent stop heartbeating.
pub const HEARTBEAT: &str = "fake.skiff.dev/heartbeat";

/// How long a container that exited waits before it restarts.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// How long containers run by default when the pod does not restart them.
pub const DEFAULT_RUN_ONCE: Duration = Duration::from_secs(1);

/// The pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// What the annotations of a pod ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub exit_code: i32,
    /// `None`: run until stopped.
    pub run_for: Option<Duration>,
    pub ready: bool,
    pub ready_after: Duration,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

fn seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.trim().parse().ok()?;
    Duration::try_from_secs_f64(v).ok()
}

impl Behaviour {
    /// Read the annotations of `pod` (invalid values fall back to the defaults).
    pub fn of(pod: &Pod) -> Behaviour {
        let ann = pod.metadata.annotations.as_ref();
        let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        let policy = RestartPolicy::of(pod);
        let run_for = match get(RUN_SECONDS).and_then(seconds) {
            Some(d) => Some(d),
            None if policy == RestartPolicy::Always => None,
            None => Some(DEFAULT_RUN_ONCE),
        };
        Behaviour {
            exit_code: get(EXIT_CODE)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            run_for,
            ready: get(READY).is_none_or(|v| !v.trim().eq_ignore_ascii_case("false")),
            ready_after: get(READY_AFTER_SECONDS)
                .and_then(seconds)
                .unwrap_or_default(),
            cpu_millis: get(CPU_USAGE).and_then(quantity::cpu_millis).unwrap_or(0),
            memory_bytes: get(MEMORY_USAGE).and_then(quantity::bytes).unwrap_or(0),
        }
    }
}

/// Sizes of a fake node.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeNodeConfig {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

impl Default for FakeNodeConfig {
    /// Large enough for 10,000 pods on two nodes: 1000 CPUs, 4 TiB, 5000 pods.
    fn default() -> Self {
        FakeNodeConfig {
            cpu_millis: 1_000_000,
            memory_bytes: 4 << 40,
            pods: 5000,
        }
    }
}

/// Now, at the one-second precision the API keeps (so that what the runtime
/// reports equals what a read of the pod returns).
pub fn now_secs() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[derive(Debug, Clone)]
enum Run {
    Running { started: Timestamp, since: Instant },
    BackOff { until: Instant },
    Done(Termination),
}

#[derive(Debug)]
struct InitContainer {
    name: String,
    image: String,
    sidecar: bool,
}

#[derive(Debug)]
struct FakePod {
    namespace: String,
    name: String,
    uid: String,
    policy: RestartPolicy,
    behaviour: Behaviour,
    ip: Option<Ipv4Addr>,
    start_time: Timestamp,
    init: Vec<InitContainer>,
    /// (name, image)
    containers: Vec<(String, String)>,
    run: Run,
    restart_count: i32,
    last_state: Option<Termination>,
    /// Timers of older epochs are stale.
    epoch: u64,
    log: Vec<(Timestamp, String)>,
    previous_log: Vec<(Timestamp, String)>,
}

impl FakePod {
    fn is_ready(&self, now: Instant) -> bool {
        match &self.run {
            Run::Running { since, .. } => {
                self.behaviour.ready
                    && now.saturating_duration_since(*since) >= self.behaviour.ready_after
            }
            _ => false,
        }
    }

    fn container_id(&self, name: &str) -> String {
        format!("fake://{}-{}-{}", self.uid, name, self.restart_count)
    }

    fn log_line(&mut self, line: String) {
        const KEEP: usize = 1000;
        if self.log.len() >= KEEP {
            self.log.remove(0);
        }
        self.log.push((now_secs(), line));
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Ready,
    Exit,
    Restart,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    uid: String,
    epoch: u64,
    kind: TimerKind,
}

#[derive(Debug)]
struct State {
    pods: HashMap<String, FakePod>,
    /// `namespace/name` → uid.
    by_name: HashMap<String, String>,
    ipam: Ipam,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    timers: Mutex<BinaryHeap<Reverse<Timer>>>,
    wake: Notify,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<PodEvent>>>,
}

impl Shared {
    fn notify(&self, uid: &str) {
        let mut subs = lock(&self.subscribers);
        subs.retain(|tx| {
            tx.send(PodEvent {
                uid: uid.to_string(),
            })
            .is_ok()
        });
    }

    /// New timers for `pod`'s current run (older ones become stale).
    fn schedule(&self, pod: &mut FakePod) {
        pod.epoch += 1;
        let mut new = Vec::new();
        match &pod.run {
            Run::Running { since, .. } => {
                if pod.behaviour.ready && !pod.behaviour.ready_after.is_zero() {
                    new.push((*since + pod.behaviour.ready_after, TimerKind::Ready));
                }
                if let Some(d) = pod.behaviour.run_for {
                    new.push((*since + d, TimerKind::Exit));
                }
            }
            Run::BackOff { until } => new.push((*until, TimerKind::Restart)),
            Run::Done(_) => {}
        }
        if new.is_empty() {
            return;
        }
        let mut timers = lock(&self.timers);
        for (at, kind) in new {
            timers.push(Reverse(Timer {
                at,
                uid: pod.uid.clone(),
                epoch: pod.epoch,
                kind,
            }));
        }
        drop(timers);
        self.wake.notify_one();
    }

    fn fire(&self, timer: Timer) {
        let mut state = lock(&self.state);
        let Some(pod) = state.pods.get_mut(&timer.uid) else {
            return;
        };
        if pod.epoch != timer.epoch {
            return;
        }
        let now = Instant::now();
        match timer.kind {
            TimerKind::Ready => {}
            TimerKind::Exit => {
                let Run::Running { started, .. } = pod.run.clone() else {
                    return;
                };
                let code = pod.behaviour.exit_code;
                let term = Termination {
                    exit_code: code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                    message: None,
                    started_at: started,
                    finished_at: now_secs(),
                };
                pod.log_line(format!("fake container exited with code {code}"));
                if pod.policy.restarts(code) {
                    pod.last_state = Some(term);
                    pod.run = Run::BackOff {
                        until: now + RESTART_BACKOFF,
                    };
                } else {
                    pod.run = Run::Done(term);
                }
                self.schedule(pod);
            }
            TimerKind::Restart => {
                if !matches!(pod.run, Run::BackOff { .. }) {
                    return;
                }
                pod.restart_count = pod.restart_count.saturating_add(1);
                pod.previous_log = std::mem::take(&mut pod.log);
                pod.run = Run::Running {
                    started: now_secs(),
                    since: now,
                };
                let n = pod.restart_count;
                pod.log_line(format!("fake container started (restart {n})"));
                self.schedule(pod);
            }
        }
        drop(state);
        self.notify(&timer.uid);
    }

    async fn timer_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = {
                let timers = lock(&self.timers);
                timers.peek().map(|t| t.0.at)
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = sleep => {}
            }
            let now = Instant::now();
            let due: Vec<Timer> = {
                let mut timers = lock(&self.timers);
                let mut due = Vec::new();
                while timers.peek().is_some_and(|t| t.0.at <= now) {
                    if let Some(Reverse(t)) = timers.pop() {
                        due.push(t);
                    }
                }
                due
            };
            for t in due {
                self.fire(t);
            }
        }
    }
}

/// The fake runtime of one node.
#[derive(Debug)]
pub struct FakeRuntime {
    shared: Arc<Shared>,
    facts: NodeFacts,
    stop: CancellationToken,
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string()
}

impl FakeRuntime {
    /// A runtime handing out pod addresses from `a.b.0.0/16`. Must be called
    /// inside a Tokio runtime (it starts the timer task).
    pub fn new(config: &FakeNodeConfig, pod_range: (u8, u8)) -> Self {
        let ipam = Ipam::new(pod_range.0, pod_range.1);
        let facts = NodeFacts {
            cpu_millis: config.cpu_millis,
            memory_bytes: config.memory_bytes,
            pods: config.pods,
            ephemeral_storage_bytes: 1 << 40,
            architecture: arch(),
            container_runtime_version: format!("fake://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: "fake".into(),
            os_image: "skiff fake node".into(),
            pod_cidr: Some(ipam.cidr()),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pods: HashMap::new(),
                by_name: HashMap::new(),
                ipam,
            }),
            timers: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
            subscribers: Mutex::new(Vec::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(shared.clone().timer_loop(stop.clone()));
        FakeRuntime {
            shared,
            facts,
            stop,
        }
    }

    /// The usage reported for pod `namespace/name`, if it runs here.
    pub fn usage_of(&self, namespace: &str, name: &str) -> Option<PodUsage> {
        let state = lock(&self.shared.state);
        let uid = state.by_name.get(&format!("{namespace}/{name}"))?;
        let pod = state.pods.get(uid)?;
        if matches!(pod.run, Run::Done(_)) {
            return None;
        }
        Some(PodUsage {
            cpu_millis: pod.behaviour.cpu_millis,
            memory_bytes: pod.behaviour.memory_bytes,
            timestamp: Timestamp::now(),
        })
    }

    /// How many pods this runtime holds.
    pub fn pod_count(&self) -> usize {
        lock(&self.shared.state).pods.len()
    }

    fn adopt(
        pod: &Pod,
        ipam: &mut Ipam,
    ) -> (Option<Ipv4Addr>, Option<Timestamp>, i32, Option<Timestamp>) {
        let status = pod.status.as_ref();
        let ip = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| ipam.reserve(*ip));
        let start_time = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let statuses = status.and_then(|s| s.container_statuses.as_ref());
        let restarts = statuses
            .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
            .unwrap_or(0);
        let started = statuses
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| t.0);
        (ip, start_time, restarts, started)
    }
}

#[async_trait::async_trait]
impl NodeRuntime for FakeRuntime {
    fn facts(&self) -> NodeFacts {
        self.facts.clone()
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<PodEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    async fn run_pod(&self, pod: &Pod) -> Result<bool, RuntimeError> {
        let uid = pod
            .metadata
            .uid
            .clone()
            .ok_or_else(|| RuntimeError::Failed("the pod has no uid".into()))?;
        let behaviour = Behaviour::of(pod);
        let mut state = lock(&self.shared.state);
        if let Some(existing) = state.pods.get_mut(&uid) {
            if existing.behaviour != behaviour {
                existing.behaviour = behaviour;
                self.shared.schedule(existing);
            }
            return Ok(false);
        }
        let (adopted_ip, start_time, restart_count, started) = Self::adopt(pod, &mut state.ipam);
        let ip = match adopted_ip {
            Some(ip) => ip,
            None => state
                .ipam
                .allocate()
                .ok_or_else(|| RuntimeError::Failed("no pod addresses left on this node".into()))?,
        };
        let now = Instant::now();
        let (started, since) = match started {
            Some(t) => {
                let ago = Timestamp::now().duration_since(t).unsigned_abs();
                (t, now.checked_sub(ago).unwrap_or(now))
            }
            None => (now_secs(), now),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut fake = FakePod {
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
            policy: RestartPolicy::of(pod),
            behaviour,
            ip: Some(ip),
            start_time: start_time.unwrap_or_else(now_secs),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| InitContainer {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    sidecar: c.restart_policy.as_deref() == Some("Always"),
                })
                .collect(),
            containers: spec
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect(),
            run: Run::Running { started, since },
            restart_count,
            last_state: None,
            epoch: 0,
            log: Vec::new(),
            previous_log: Vec::new(),
        };
        fake.log_line("fake container started".into());
        self.shared.schedule(&mut fake);
        state
            .by_name
            .insert(format!("{namespace}/{name}"), uid.clone());
        state.pods.insert(uid, fake);
        Ok(true)
    }

    async fn stop_pod(&self, uid: &str, _grace: Duration) -> Result<(), RuntimeError> {
        // No processes: stopping is immediate whatever the grace period.
        let mut state = lock(&self.shared.state);
        if let Some(pod) = state.pods.remove(uid) {
            if let Some(ip) = pod.ip {
                state.ipam.release(ip);
            }
            let key = format!("{}/{}", pod.namespace, pod.name);
            if state.by_name.get(&key).map(String::as_str) == Some(uid) {
                state.by_name.remove(&key);
            }
        }
        Ok(())
    }

    async fn pod_status(&self, uid: &str) -> Option<PodRuntimeStatus> {
        let state = lock(&self.shared.state);
        let pod = state.pods.get(uid)?;
        let now = Instant::now();
        let ready = pod.is_ready(now);
        let init_containers = pod
            .init
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: format!("fake://{}", c.image),
                container_id: Some(format!("fake://{}-{}-0", pod.uid, c.name)),
                state: if c.sidecar {
                    ContainerState::Running {
                        started_at: pod.start_time,
                    }
                } else {
                    ContainerState::Terminated(Termination {
                        exit_code: 0,
                        reason: "Completed".into(),
                        message: None,
                        started_at: pod.start_time,
                        finished_at: pod.start_time,
                    })
                },
                last_state: None,
                restart_count: 0,
                ready: true,
                started: c.sidecar,
            })
            .collect();
        let containers = pod
            .containers
            .iter()
            .map(|(name, image)| {
                let (state, container_id) = match &pod.run {
                    Run::Running { started, .. } => (
                        ContainerState::Running {
                            started_at: *started,
                        },
                        Some(pod.container_id(name)),
                    ),
                    Run::BackOff { .. } => (
                        ContainerState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {}s restarting failed container={name} pod={}_{}({})",
                                RESTART_BACKOFF.as_secs(),
                                pod.name,
                                pod.namespace,
                                pod.uid
                            )),
                        },
                        None,
                    ),
                    Run::Done(t) => (
                        ContainerState::Terminated(t.clone()),
                        Some(pod.container_id(name)),
                    ),
                };
                ContainerStatus {
                    name: name.clone(),
                    image: image.clone(),
                    image_id: format!("fake://{image}"),
                    container_id,
                    state,
                    last_state: pod.last_state.clone(),
                    restart_count: pod.restart_count,
                    ready,
                    started: matches!(pod.run, Run::Running { .. }),
                }
            })
            .collect();
        Some(PodRuntimeStatus {
            pod_ips: pod.ip.map(IpAddr::V4).into_iter().collect(),
            start_time: pod.start_time,
            init_containers,
            containers,
            settling: false,
        })
    }

    async fn logs(
        &self,
        uid: &str,
        container: &str,
        options: LogOptions,
    ) -> Result<ByteStream, RuntimeError> {
        let state = lock(&self.shared.state);
        let pod = state
            .pods
            .get(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_string()))?;
        if !pod.containers.iter().any(|(n, _)| n == container)
            && !pod.init.iter().any(|c| c.name == container)
        {
            return Err(RuntimeError::ContainerNotFound {
                pod: format!("{}/{}", pod.namespace, pod.name),
                container: container.to_string(),
            });
        }
        let lines = if options.previous {
            if pod.previous_log.is_empty() {
                return Err(RuntimeError::Failed(format!(
                    "previous terminated container {container:?} in pod {:?} not found",
                    pod.name
                )));
            }
            &pod.previous_log
        } else {
            &pod.log
        };
        let mut selected: Vec<&(Timestamp, String)> = lines
            .iter()
            .filter(|(t, _)| options.since.is_none_or(|s| *t >= s))
            .collect();
        if let Some(n) = options.tail_lines {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let skip = selected.len().saturating_sub(n);
            selected.drain(..skip);
        }
        let mut out = Vec::new();
        for (t, line) in selected {
            if options.timestamps {
                out.extend_from_slice(t.to_string().as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        if let Some(limit) = options.limit_bytes {
            out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        // No processes write more later: `follow` ends with what there is.
        Ok(futures::stream::iter([Ok(out)]).boxed())
    }

    async fn exec(
        &self,
        uid: &str,
        _container: &str,
        _request: ExecRequest,
    ) -> Result<i32, RuntimeError> {
        if !lock(&self.shared.state).pods.contains_key(uid) {
            return Err(RuntimeError::PodNotFound(uid.to_string()));
        }
        Err(RuntimeError::Unsupported(
            "fake nodes run no processes: exec is not available".into(),
        ))
    }

    async fn port_forward(
        &self,
        uid: &str,
        _port: u16,
        _stream: Box<dyn Duplex>,
    ) -> Result<(), RuntimeError> {
        if !lock(&self.shared.state).pods.contains_key(uid) {
            return Err(RuntimeError::PodNotFound(uid.to_string()));
        }
        Err(RuntimeError::Unsupported(
            "fake nodes run no processes: port-forward is not available".into(),
        ))
    }

    async fn stats(&self, uid: &str) -> Option<PodStats> {
        let state = lock(&self.shared.state);
        let pod = state.pods.get(uid)?;
        if matches!(pod.run, Run::Done(_)) {
            return None;
        }
        let n = u64::try_from(pod.containers.len().max(1)).unwrap_or(1);
        let split = |total: u64, i: usize| total / n + if i == 0 { total % n } else { 0 };
        Some(PodStats {
            timestamp: Timestamp::now(),
            containers: pod
                .containers
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    (
                        name.clone(),
                        Usage {
                            cpu_millis: split(pod.behaviour.cpu_millis, i),
                            memory_bytes: split(pod.behaviour.memory_bytes, i),
                        },
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status;
    use std::collections::HashSet;

    fn pod(uid: &str, policy: &str, annotations: &[(&str, &str)]) -> Pod {
        let ann: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("p-{uid}"), "namespace": "ns", "uid": uid, "annotations": ann},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]},
        }))
        .unwrap()
    }

    async fn next_event(rx: &mut mpsc::UnboundedReceiver<PodEvent>) -> PodEvent {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event in time")
            .expect("channel open")
    }

    fn runtime() -> FakeRuntime {
        FakeRuntime::new(&FakeNodeConfig::default(), (10, 128))
    }

    #[tokio::test]
    async fn always_pods_run_ready_with_an_address_and_usage() {
        let rt = runtime();
        let p = pod(
            "u1",
            "Always",
            &[(CPU_USAGE, "250m"), (MEMORY_USAGE, "64Mi")],
        );
        assert!(rt.run_pod(&p).await.unwrap());
        assert!(!rt.run_pod(&p).await.unwrap(), "idempotent");
        let s = rt.pod_status("u1").await.unwrap();
        assert_eq!(s.pod_ips, vec![IpAddr::V4(Ipv4Addr::new(10, 128, 0, 1))]);
        assert!(s.containers.iter().all(|c| c.ready && c.started));
        assert_eq!(status::phase(&s, RestartPolicy::Always), "Running");
        let stats = rt.stats("u1").await.unwrap();
        assert_eq!(stats.total().cpu_millis, 250);
        assert_eq!(stats.total().memory_bytes, 64 << 20);
        let usage = rt.usage_of("ns", "p-u1").unwrap();
        assert_eq!(usage.cpu_millis, 250);
        // Usage follows the annotation.
        let p = pod("u1", "Always", &[(CPU_USAGE, "1")]);
        rt.run_pod(&p).await.unwrap();
        assert_eq!(rt.usage_of("ns", "p-u1").unwrap().cpu_millis, 1000);
        rt.stop_pod("u1", Duration::from_secs(30)).await.unwrap();
        assert!(rt.pod_status("u1").await.is_none());
        assert!(rt.usage_of("ns", "p-u1").is_none());
        assert_eq!(rt.pod_count(), 0);
    }

    #[tokio::test]
    async fn never_pods_finish_with_their_exit_code() {
        let rt = runtime();
        let mut rx = rt.subscribe();
        rt.run_pod(&pod("ok", "Never", &[(RUN_SECONDS, "0.05")]))
            .await
            .unwrap();
        rt.run_pod(&pod(
            "bad",
            "Never",
            &[(RUN_SECONDS, "0.05"), (EXIT_CODE, "3")],
        ))
        .await
        .unwrap();
        let mut seen = HashSet::new();
        while seen.len() < 2 {
            seen.insert(next_event(&mut rx).await.uid);
        }
        let ok = rt.pod_status("ok").await.unwrap();
        assert_eq!(status::phase(&ok, RestartPolicy::Never), "Succeeded");
        let bad = rt.pod_status("bad").await.unwrap();
        assert_eq!(status::phase(&bad, RestartPolicy::Never), "Failed");
        let ContainerState::Terminated(t) = &bad.containers[0].state else {
            panic!("not terminated: {:?}", bad.containers[0].state);
        };
        assert_eq!((t.exit_code, t.reason.as_str()), (3, "Error"));
    }

    #[tokio::test]
    async fn restarting_pods_back_off_then_run_again() {
        let rt = runtime();
        let mut rx = rt.subscribe();
        let p = pod("r", "OnFailure", &[(RUN_SECONDS, "0.05"), (EXIT_CODE, "1")]);
        rt.run_pod(&p).await.unwrap();
        next_event(&mut rx).await; // exited
        let s = rt.pod_status("r").await.unwrap();
        assert!(matches!(
            s.containers[0].state,
            ContainerState::Waiting { .. }
        ));
        assert_eq!(
            s.containers[0].last_state.as_ref().map(|t| t.exit_code),
            Some(1)
        );
        assert_eq!(status::phase(&s, RestartPolicy::OnFailure), "Running");
        next_event(&mut rx).await; // restarted
        let s = rt.pod_status("r").await.unwrap();
        assert!(matches!(
            s.containers[0].state,
            ContainerState::Running { .. }
        ));
        assert_eq!(s.containers[0].restart_count, 1);
        let logs = rt
            .logs(
                "r",
                "a",
                LogOptions {
                    previous: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let bytes: Vec<u8> = logs.map(|c| c.unwrap()).concat().await;
        assert!(String::from_utf8_lossy(&bytes).contains("exited with code 1"));
    }

    #[tokio::test]
    async fn readiness_follows_annotations() {
        let rt = runtime();
        let mut rx = rt.subscribe();
        rt.run_pod(&pod("n", "Always", &[(READY, "false")]))
            .await
            .unwrap();
        assert!(!rt.pod_status("n").await.unwrap().containers[0].ready);
        rt.run_pod(&pod("n", "Always", &[])).await.unwrap();
        assert!(rt.pod_status("n").await.unwrap().containers[0].ready);

        rt.run_pod(&pod("d", "Always", &[(READY_AFTER_SECONDS, "0.1")]))
            .await
            .unwrap();
        assert!(!rt.pod_status("d").await.unwrap().containers[0].ready);
        assert_eq!(next_event(&mut rx).await.uid, "d");
        assert!(rt.pod_status("d").await.unwrap().containers[0].ready);
    }

    #[tokio::test]
    async fn exec_and_port_forward_say_there_are_no_processes() {
        let rt = runtime();
        rt.run_pod(&pod("x", "Always", &[])).await.unwrap();
        let req = ExecRequest {
            command: vec!["ls".into()],
            tty: false,
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        assert!(matches!(
            rt.exec("x", "a", req).await,
            Err(RuntimeError::Unsupported(_))
        ));
        let (a, _b) = tokio::io::duplex(64);
        assert!(matches!(
            rt.port_forward("x", 80, Box::new(a)).await,
            Err(RuntimeError::Unsupported(_))
        ));
    }
}
