//! The node agent (one per node, a kubelet in miniature): registers the Node,
//! renews its Lease in `kube-node-lease`, posts node status, and runs the
//! pods bound to the node through a [`NodeRuntime`], writing their status.
//!
//! Pods come from one watch (`fieldSelector=spec.nodeName=<node>`) into a
//! cache; watch events and runtime events put pod uids on a de-duplicating
//! queue that a fixed pool of workers drains, so at most `workers` status
//! writes are in flight. A status is written only when it differs from the
//! pod's current one (one write per transition).
//!
//! The Node annotation `fake.skiff.dev/heartbeat: stopped` freezes the
//! agent's writes (no Lease renewal, no node or pod status, no pod
//! deletion), like a node cut off from the API server; removing it resumes
//! and re-syncs every pod.

use crate::lock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, ObjectReference, Pod,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use skiff_client::events::{reference, EventType, Recorder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::fake::{now_secs, HEARTBEAT};
use crate::queue::WorkQueue;
use crate::runtime::NodeRuntime;
use crate::status;
use crate::Error;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How an agent behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// `InternalIP` of the node (and `hostIP` of its pods).
    pub internal_ip: String,
    /// Labels besides the well-known ones (hostname, os, arch).
    pub labels: BTreeMap<String, String>,
    /// `leaseDurationSeconds` of the node Lease (40 s, as the kubelet).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (the kubelet: a quarter of the duration).
    pub lease_renew_interval: Duration,
    /// How often the node status is checked and posted if it changed.
    pub status_update_interval: Duration,
    /// The node status is posted at least this often even if unchanged.
    pub status_report_interval: Duration,
    /// Pod syncs (status writes) in flight at most.
    pub workers: usize,
    /// Emit Pulled/Created/Started/Killing events for containers.
    pub container_events: bool,
    /// Events per second the agent may record, and the burst above that
    /// (the kubelet's `eventRecordQPS` 50 and `eventBurst` 100); the rest
    /// are dropped, so a mass start does not turn into thousands of writes.
    pub event_qps: f64,
    pub event_burst: u32,
}

impl AgentConfig {
    /// Kubelet-like defaults for `node_name`.
    pub fn new(node_name: &str, internal_ip: &str) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            internal_ip: internal_ip.into(),
            labels: BTreeMap::new(),
            lease_duration: Duration::from_secs(40),
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(60),
            workers: 32,
            container_events: true,
            event_qps: 50.0,
            event_burst: 100,
        }
    }
}

/// How long a pod being set up may go without a status from the node.
const FIRST_STATUS_GRACE: Duration = Duration::from_millis(100);

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A token bucket (client-go's flowcontrol rate limiter, without waiting).
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

struct Shared {
    client: Client,
    events: Mutex<TokenBucket>,
    config: AgentConfig,
    runtime: Arc<dyn NodeRuntime>,
    recorder: Recorder,
    pods: Mutex<HashMap<String, Arc<Pod>>>,
    queue: WorkQueue,
    /// Heartbeat stopped (Node annotation): no writes.
    frozen: AtomicBool,
    /// The Node as last seen.
    node: Mutex<Option<Node>>,
    /// Wakes the heartbeat loop (resume, node changed).
    kick: Notify,
}

/// One node's agent.
pub struct Agent {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.shared.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(client: Client, config: AgentConfig, runtime: Arc<dyn NodeRuntime>) -> Self {
        let recorder = Recorder::new(client.clone(), "kubelet", Some(config.node_name.clone()));
        Agent {
            shared: Arc::new(Shared {
                client,
                events: Mutex::new(TokenBucket {
                    tokens: f64::from(config.event_burst),
                    last: Instant::now(),
                }),
                config,
                runtime,
                recorder,
                pods: Mutex::new(HashMap::new()),
                queue: WorkQueue::default(),
                frozen: AtomicBool::new(false),
                node: Mutex::new(None),
                kick: Notify::new(),
            }),
        }
    }

    /// Register the node and run until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let s = self.shared;
        let mut delay = Duration::from_millis(100);
        loop {
            match s.register().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(node = %s.config.node_name, error = %e, "registering the node failed");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        tracing::info!(node = %s.config.node_name, "node registered");
        let mut tasks = vec![
            tokio::spawn(s.clone().heartbeat_loop(shutdown.clone())),
            tokio::spawn(s.clone().node_watch(shutdown.clone())),
            tokio::spawn(s.clone().pod_watch(shutdown.clone())),
            tokio::spawn(s.clone().runtime_events(shutdown.clone())),
        ];
        for _ in 0..s.config.workers.max(1) {
            tasks.push(tokio::spawn(s.clone().worker(shutdown.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Shared {
    /// Record an event if the rate limit allows it.
    fn event(&self, object: ObjectReference, kind: EventType, reason: &str, message: &str) {
        {
            let mut b = lock(&self.events);
            let now = Instant::now();
            let burst = f64::from(self.config.event_burst);
            let refill = now.duration_since(b.last).as_secs_f64() * self.config.event_qps;
            b.tokens = (b.tokens + refill).min(burst);
            b.last = now;
            if b.tokens < 1.0 {
                return;
            }
            b.tokens -= 1.0;
        }
        self.recorder.record(object, kind, reason, message);
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), LEASE_NAMESPACE)
    }

    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let facts = self.runtime.facts();
        let mut labels = self.config.labels.clone();
        let name = &self.config.node_name;
        labels.insert("kubernetes.io/hostname".into(), name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), facts.architecture.clone());
        labels.insert("beta.kubernetes.io/os".into(), "linux".into());
        labels.insert("beta.kubernetes.io/arch".into(), facts.architecture);
        labels
    }

    /// Create the Node (or bring an existing one's labels up to date), then
    /// its Lease and status.
    async fn register(&self) -> Result<(), Error> {
        let facts = self.runtime.facts();
        let name = self.config.node_name.clone();
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(self.labels()),
                annotations: Some(BTreeMap::from([(
                    "node.alpha.kubernetes.io/ttl".to_string(),
                    "0".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: facts.pod_cidr.clone(),
                pod_cidrs: facts.pod_cidr.clone().map(|c| vec![c]),
                ..Default::default()
            }),
            status: None,
        };
        let created = match self.nodes().create(&PostParams::default(), &node).await {
            Ok(n) => n,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = serde_json::json!({"metadata": {"labels": self.labels()}});
                self.nodes()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        *lock(&self.node) = Some(created.clone());
        if !self.frozen() {
            self.renew_lease(Some(&created)).await?;
            self.post_node_status(true).await?;
        }
        Ok(())
    }

    async fn renew_lease(&self, node: Option<&Node>) -> Result<(), Error> {
        let name = &self.config.node_name;
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(40);
        let patch = serde_json::json!({"spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": secs,
            "renewTime": now,
        }});
        match self
            .leases()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let owner = node
            .cloned()
            .or_else(|| lock(&self.node).clone())
            .and_then(|n| n.metadata.uid)
            .map(|uid| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid,
                ..Default::default()
            });
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(secs),
                renew_time: Some(now),
                ..Default::default()
            }),
        };
        match self.leases().create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()), // raced with ourselves
            Err(e) => Err(e.into()),
        }
    }

    /// The node status the agent reports, with heartbeat `now`, keeping
    /// transition times of conditions whose status did not change.
    fn node_status(&self, current: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
        let facts = self.runtime.facts();
        let resources = BTreeMap::from([
            (
                "cpu".to_string(),
                Quantity(format!("{}m", facts.cpu_millis)),
            ),
            (
                "memory".to_string(),
                Quantity(facts.memory_bytes.to_string()),
            ),
            ("pods".to_string(), Quantity(facts.pods.to_string())),
            (
                "ephemeral-storage".to_string(),
                Quantity(facts.ephemeral_storage_bytes.to_string()),
            ),
        ]);
        let old = current.and_then(|s| s.conditions.as_ref());
        let cond = |type_: &str, status: &str, reason: &str, message: &str| {
            let ltt = old
                .and_then(|c| c.iter().find(|c| c.type_ == type_))
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(ltt),
            }
        };
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                cond(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                ),
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.config.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.config.node_name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: facts.architecture,
                boot_id: String::new(),
                container_runtime_version: facts.container_runtime_version,
                kernel_version: facts.kernel_version,
                kube_proxy_version: String::new(),
                kubelet_version: format!("v1.33.0-skiff.{}", env!("CARGO_PKG_VERSION")),
                machine_id: String::new(),
                operating_system: "linux".into(),
                os_image: facts.os_image,
                system_uuid: String::new(),
                swap: None,
            }),
            ..current.cloned().unwrap_or_default()
        }
    }

    /// Post the node status if it changed or its heartbeat is older than the
    /// report interval (or always, with `force`).
    async fn post_node_status(&self, force: bool) -> Result<(), Error> {
        let now = now_secs();
        let current = lock(&self.node).clone();
        let current_status = current.as_ref().and_then(|n| n.status.as_ref());
        let desired = self.node_status(current_status, now);
        if !force && !self.status_needs_post(current_status, &desired, now) {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": desired });
        let node = self
            .nodes()
            .patch_status(
                &self.config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let mut cached = lock(&self.node);
        if cached
            .as_ref()
            .is_none_or(|c| rv(&c.metadata) <= rv(&node.metadata))
        {
            *cached = Some(node);
        }
        Ok(())
    }

    fn status_needs_post(
        &self,
        current: Option<&NodeStatus>,
        desired: &NodeStatus,
        now: Timestamp,
    ) -> bool {
        let Some(current) = current else {
            return true;
        };
        let key = |s: &NodeStatus| -> Vec<(String, String, Option<String>)> {
            s.conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                .collect()
        };
        if key(current) != key(desired)
            || current.capacity != desired.capacity
            || current.allocatable != desired.allocatable
            || current.addresses != desired.addresses
            || current.node_info != desired.node_info
        {
            return true;
        }
        let heartbeat = current
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let report = i64::try_from(self.config.status_report_interval.as_secs()).unwrap_or(60);
        heartbeat.is_none_or(|h| now.as_second() - h.as_second() >= report)
    }

    async fn heartbeat_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_status_check = Instant::now();
        let mut kicked = false;
        loop {
            if !self.frozen() {
                if let Err(e) = self.renew_lease(None).await {
                    tracing::debug!(node = %self.config.node_name, error = %e, "renewing the node lease failed");
                }
                if kicked || last_status_check.elapsed() >= self.config.status_update_interval {
                    last_status_check = Instant::now();
                    if let Err(e) = self.post_node_status(false).await {
                        tracing::debug!(node = %self.config.node_name, error = %e, "posting node status failed");
                    }
                }
            }
            kicked = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.lease_renew_interval) => false,
                _ = self.kick.notified() => true,
            };
        }
    }

    /// Follow our Node: the heartbeat annotation, and changes that need a
    /// status post (e.g. the node lifecycle controller marked it Unknown).
    async fn node_watch(self: Arc<Self>, shutdown: CancellationToken) {
        let cfg =
            watcher::Config::default().fields(&format!("metadata.name={}", self.config.node_name));
        let stream = watcher::watcher(self.nodes(), cfg).default_backoff();
        tokio::pin!(stream);
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = stream.next() => ev,
            };
            let node = match ev {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "node watch error");
                    continue;
                }
                Some(Ok(Event::Apply(n) | Event::InitApply(n))) => n,
                Some(Ok(Event::Delete(_))) => {
                    // Deleted under us: register again (as the kubelet does).
                    *lock(&self.node) = None;
                    if !self.frozen() {
                        if let Err(e) = self.register().await {
                            tracing::warn!(error = %e, "re-registering the node failed");
                        }
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let stopped = node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HEARTBEAT))
                .is_some_and(|v| v == "stopped");
            {
                let mut cached = lock(&self.node);
                if cached
                    .as_ref()
                    .is_none_or(|c| rv(&c.metadata) <= rv(&node.metadata))
                {
                    *cached = Some(node);
                }
            }
            let was = self.frozen.swap(stopped, Ordering::SeqCst);
            if was && !stopped {
                tracing::info!(node = %self.config.node_name, "heartbeat resumed");
                let uids: Vec<String> = lock(&self.pods).keys().cloned().collect();
                for uid in uids {
                    self.queue.add(&uid);
                }
            } else if !was && stopped {
                tracing::info!(node = %self.config.node_name, "heartbeat stopped (fake.skiff.dev/heartbeat)");
            }
            if !stopped {
                self.kick.notify_one();
            }
        }
    }

    async fn pod_watch(self: Arc<Self>, shutdown: CancellationToken) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.config.node_name));
        let stream = watcher::watcher(api, cfg).default_backoff();
        tokio::pin!(stream);
        let mut relisted: Option<HashSet<String>> = None;
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = stream.next() => ev,
            };
            match ev {
                None => return,
                Some(Err(e)) => tracing::debug!(error = %e, "pod watch error"),
                Some(Ok(Event::Init)) => relisted = Some(HashSet::new()),
                Some(Ok(Event::InitApply(p))) => {
                    if let (Some(seen), Some(uid)) = (relisted.as_mut(), p.metadata.uid.as_ref()) {
                        seen.insert(uid.clone());
                    }
                    self.observe(p);
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = relisted.take() {
                        let gone: Vec<String> = {
                            let mut pods = lock(&self.pods);
                            let gone: Vec<String> = pods
                                .keys()
                                .filter(|u| !seen.contains(*u))
                                .cloned()
                                .collect();
                            for u in &gone {
                                pods.remove(u);
                            }
                            gone
                        };
                        for uid in gone {
                            self.queue.add(&uid);
                        }
                        // Pods the runtime has that the API does not (deleted
                        // while this agent was away): stopped by their sync.
                        for uid in self.runtime.pod_uids() {
                            if !seen.contains(&uid) {
                                self.queue.add(&uid);
                            }
                        }
                    }
                }
                Some(Ok(Event::Apply(p))) => self.observe(p),
                Some(Ok(Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid {
                        lock(&self.pods).remove(&uid);
                        self.queue.add(&uid);
                    }
                }
            }
        }
    }

    /// A newer version of a pod: cache it and queue a sync.
    fn observe(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        {
            let mut pods = lock(&self.pods);
            if let Some(old) = pods.get(&uid) {
                if rv(&old.metadata) > rv(&pod.metadata) {
                    return;
                }
            }
            pods.insert(uid.clone(), Arc::new(pod));
        }
        self.queue.add(&uid);
    }

    async fn runtime_events(self: Arc<Self>, shutdown: CancellationToken) {
        let mut rx = self.runtime.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Some(ev) => self.queue.add(&ev.uid),
                    None => return,
                },
            }
        }
    }

    async fn worker(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let uid = tokio::select! {
                _ = shutdown.cancelled() => return,
                uid = self.queue.get() => uid,
            };
            let result = self.sync(&uid).await;
            self.queue.done(&uid);
            if let Ok(Some(after)) = result {
                let me = self.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(after) => me.queue.add(&uid),
                    }
                });
            } else if let Err(e) = result {
                tracing::debug!(node = %self.config.node_name, pod = %uid, error = %e, "pod sync failed; retrying");
                let me = self.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => me.queue.add(&uid),
                    }
                });
            }
        }
    }

    fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
        let mut r = reference(pod);
        r.field_path = Some(format!("spec.containers{{{container}}}"));
        r
    }

    /// Bring the pod's runtime and API status in line; `Some(d)`: sync again
    /// after `d` (a status held back for a moment).
    async fn sync(&self, uid: &str) -> Result<Option<Duration>, Error> {
        let pod = lock(&self.pods).get(uid).cloned();
        let Some(pod) = pod else {
            // Gone from the API: stop whatever still runs.
            self.runtime.stop_pod(uid, Duration::ZERO).await?;
            return Ok(None);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            if self.frozen() {
                return Ok(None);
            }
            return self.terminate(&pod, uid).await.map(|()| None);
        }
        let known = self.runtime.pod_status(uid).await.is_some();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if status::is_terminal(phase) && !known {
            return Ok(None); // finished before we (re)started: nothing runs
        }
        let started = match self.runtime.run_pod(&pod).await {
            Ok(started) => started,
            Err(e) => {
                self.event(
                    reference(&*pod),
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                return Err(e.into());
            }
        };
        if started && self.config.container_events {
            self.container_events(&pod);
        }
        if self.frozen() {
            return Ok(None);
        }
        let Some(rt) = self.runtime.pod_status(uid).await else {
            return Ok(None);
        };
        let desired = status::desired(&pod, &rt, &self.config.internal_ip, now_secs());
        if pod.status.as_ref() == Some(&desired) {
            return Ok(None);
        }
        // Mid set-up, once the pod shows it is being created: the runtime
        // reports again when the round is over (fewer writes, each of which
        // every pod watcher decodes).
        let reported = pod
            .status
            .as_ref()
            .is_some_and(|s| s.container_statuses.as_ref().is_some_and(|c| !c.is_empty()));
        if rt.settling && reported {
            return Ok(None);
        }
        // A pod that starts quickly shows `Running` as its first status, with
        // no `ContainerCreating` write competing with its start for the CPU;
        // one that takes longer shows `ContainerCreating` after a moment.
        let age = Duration::from_millis(
            u64::try_from(Timestamp::now().as_millisecond() - rt.start_time.as_millisecond())
                .unwrap_or(0),
        );
        if rt.settling && !reported && age < FIRST_STATUS_GRACE {
            return Ok(Some(FIRST_STATUS_GRACE - age));
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({
            "metadata": {"uid": uid},
            "status": desired,
        });
        let t0 = std::time::Instant::now();
        let written = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        tracing::debug!(pod = %uid, ms = t0.elapsed().as_secs_f64() * 1e3, "pod status written");
        match written {
            Ok(written) => {
                // Keep what we wrote so a sync before the watch event does not write again.
                let mut pods = lock(&self.pods);
                if let Some(cached) = pods.get(uid) {
                    if rv(&cached.metadata) < rv(&written.metadata) {
                        pods.insert(uid.to_string(), Arc::new(written));
                    }
                }
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None), // gone or replaced
            Err(e) => Err(e.into()),
        }
    }

    fn container_events(&self, pod: &Pod) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter());
        for c in all {
            let r = Self::container_ref(pod, &c.name);
            let image = c.image.clone().unwrap_or_default();
            self.event(
                r.clone(),
                EventType::Normal,
                "Pulled",
                &format!("Container image {image:?} already present on machine"),
            );
            self.event(
                r.clone(),
                EventType::Normal,
                "Created",
                &format!("Created container: {}", c.name),
            );
            self.event(
                r,
                EventType::Normal,
                "Started",
                &format!("Started container {}", c.name),
            );
        }
    }

    /// A pod being deleted: stop it, then remove it for good.
    async fn terminate(&self, pod: &Pod, uid: &str) -> Result<(), Error> {
        if self.runtime.pod_status(uid).await.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .and_then(|g| u64::try_from(g).ok())
                .unwrap_or(30);
            if self.config.container_events {
                for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                    self.event(
                        Self::container_ref(pod, &c.name),
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {}", c.name),
                    );
                }
            }
            self.runtime
                .stop_pod(uid, Duration::from_secs(grace))
                .await?;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
