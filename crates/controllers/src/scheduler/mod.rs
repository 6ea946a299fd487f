//! The scheduler (`default-scheduler`): binds pending pods to nodes.
//!
//! One task owns the state: a [`cache::Cache`] of nodes, RuntimeClasses,
//! namespace labels and what every assigned pod uses, and a
//! [`queue::Queue`] of pending pods, both fed by watches. It takes pods off
//! the queue in batches, filters and scores every node from memory
//! ([`predicates`], [`scoring`]; no API call in the loop), counts the pod on
//! the chosen node at once ("assumed") and hands the binding to a task, with
//! at most [`MAX_BINDS_IN_FLIGHT`] bindings outstanding. A pod no node can
//! take gets `PodScheduled=False` (reason `Unschedulable`, upstream's message)
//! and a `FailedScheduling` event, and is tried again when nodes or pods
//! change, or after [`queue::UNSCHEDULABLE_MAX`].

pub mod affinity;
pub mod cache;
pub mod predicates;
pub mod queue;
pub mod resources;
pub mod scoring;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use skiff_client::events::{EventType, Recorder};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::runtime::Context;
use cache::{Cache, NodeInfo, PodKey, RuntimeClassInfo};
use predicates::FitError;
use queue::Queue;
use resources::Resources;
use scoring::Rng;

/// The name pods ask for in `spec.schedulerName` (or leave empty).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings outstanding at once.
pub const MAX_BINDS_IN_FLIGHT: usize = 64;
/// Pods scheduled before the loop looks at its inputs again.
const BATCH: usize = 256;
/// Status writes for unschedulable pods outstanding at once.
const MAX_STATUS_IN_FLIGHT: usize = 8;
/// How often backoffs are checked.
const TICK: Duration = Duration::from_millis(500);

/// A watch event of one of the kinds the scheduler reads (boxed: they are
/// large and travel through a channel).
enum Input {
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    RuntimeClass(Box<Event<RuntimeClass>>),
    Namespace(Box<Event<Namespace>>),
}

enum BindOutcome {
    Bound,
    /// 409: already assigned (by someone else) or kept changing.
    Conflict,
    /// 404: the pod is gone.
    Gone,
    Failed(String),
}

struct BindResult {
    key: PodKey,
    uid: String,
    pod: Arc<Pod>,
    node: String,
    outcome: BindOutcome,
}

/// Run the scheduler until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (tx, rx) = mpsc::channel::<Input>(1024);
    let watches = vec![
        tokio::spawn(forward(
            Api::<Pod>::all(client.clone()),
            Input::Pod,
            tx.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(forward(
            Api::<Node>::all(client.clone()),
            Input::Node,
            tx.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(forward(
            Api::<RuntimeClass>::all(client.clone()),
            Input::RuntimeClass,
            tx.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(forward(
            Api::<Namespace>::all(client.clone()),
            Input::Namespace,
            tx,
            shutdown.clone(),
        )),
    ];
    let scheduler = Scheduler::new(client, ctx.recorder(SCHEDULER_NAME));
    scheduler.run(rx, shutdown).await;
    for w in watches {
        let _ = w.await; // each ends on the token
    }
}

/// Watch `api` (list, then watch; relist on expiry, backoff on errors) and
/// forward every event.
async fn forward<K>(
    api: Api<K>,
    wrap: fn(Box<Event<K>>) -> Input,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        match next {
            Some(Ok(ev)) => {
                if tx.send(wrap(Box::new(ev))).await.is_err() {
                    return;
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "scheduler watch error (retrying)"),
            None => return,
        }
    }
}

fn key_of(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether this scheduler should place `pod` (pending, ours, not gated, not
/// being deleted).
fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
    let gated = spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty());
    ours && !gated && !terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// The RuntimeClass overhead that applies to `pod` (only when the pod
/// carries none of its own).
fn class_overhead(pod: &Pod, cache: &Cache) -> Option<Resources> {
    let spec = pod.spec.as_ref()?;
    if spec.overhead.is_some() {
        return None;
    }
    let name = spec.runtime_class_name.as_deref()?;
    cache.runtime_classes.get(name)?.overhead.clone()
}

/// Relist bookkeeping: the keys seen since `Init`.
#[derive(Default)]
struct Relist {
    pods: Option<HashSet<String>>,
    nodes: Option<HashSet<String>>,
    classes: Option<HashSet<String>>,
    namespaces: Option<HashSet<String>>,
}

struct Scheduler {
    client: Client,
    recorder: Recorder,
    cache: Cache,
    queue: Queue,
    rng: Rng,
    binds_in_flight: usize,
    status_writes: Arc<Semaphore>,
    results_tx: mpsc::UnboundedSender<BindResult>,
    results_rx: mpsc::UnboundedReceiver<BindResult>,
    relist: Relist,
    synced_pods: bool,
    synced_nodes: bool,
    synced_classes: bool,
    synced_namespaces: bool,
    stats: Stats,
}

/// Counters for the periodic debug line.
#[derive(Default)]
struct Stats {
    since: Option<Instant>,
    bound: u64,
    unschedulable: u64,
    failed: u64,
}

impl Scheduler {
    fn new(client: Client, recorder: Recorder) -> Scheduler {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        Scheduler {
            client,
            recorder,
            cache: Cache::default(),
            queue: Queue::default(),
            rng: Rng::from_time(),
            binds_in_flight: 0,
            status_writes: Arc::new(Semaphore::new(MAX_STATUS_IN_FLIGHT)),
            results_tx,
            results_rx,
            relist: Relist::default(),
            synced_pods: false,
            synced_nodes: false,
            synced_classes: false,
            synced_namespaces: false,
            stats: Stats::default(),
        }
    }

    /// Every few seconds of activity, one debug line with the rates.
    fn log_stats(&mut self, now: Instant) {
        let since = *self.stats.since.get_or_insert(now);
        let elapsed = now.duration_since(since);
        if elapsed < Duration::from_secs(2) {
            return;
        }
        let s = std::mem::take(&mut self.stats);
        if s.bound + s.unschedulable + s.failed > 0 {
            tracing::debug!(
                bound = s.bound,
                per_second = (s.bound as f64 / elapsed.as_secs_f64()) as u64,
                unschedulable = s.unschedulable,
                failed = s.failed,
                pending = self.queue.len(),
                in_flight = self.binds_in_flight,
                assigned = self.cache.pods.len(),
                "scheduler progress"
            );
        }
        self.stats.since = Some(now);
    }

    fn synced(&self) -> bool {
        self.synced_pods && self.synced_nodes && self.synced_classes && self.synced_namespaces
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Take in everything that is already waiting, then schedule a batch.
            let mut drained = 0;
            while drained < 4 * BATCH {
                match inputs.try_recv() {
                    Ok(i) => self.on_input(i),
                    Err(_) => break,
                }
                drained += 1;
            }
            while let Ok(r) = self.results_rx.try_recv() {
                self.on_bind_result(r);
            }
            let scheduled = if self.synced() {
                self.schedule_batch()
            } else {
                0
            };
            if scheduled > 0 || drained > 0 {
                self.log_stats(Instant::now());
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                i = inputs.recv() => match i {
                    Some(i) => self.on_input(i),
                    None => return,
                },
                Some(r) = self.results_rx.recv() => self.on_bind_result(r),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.queue.tick(now);
                    self.log_stats(now);
                }
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Pod(ev) => match *ev {
                Event::Init => self.relist.pods = Some(HashSet::new()),
                Event::InitApply(p) => {
                    if let Some(seen) = self.relist.pods.as_mut() {
                        seen.insert(key_of(&p));
                    }
                    self.on_pod(p, now);
                }
                Event::InitDone => {
                    if let Some(seen) = self.relist.pods.take() {
                        let gone: Vec<PodKey> = self
                            .cache
                            .pods
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            self.cache.remove_pod(&k);
                        }
                        // Pending pods that vanished during the relist.
                        let stale: Vec<PodKey> = self
                            .queue
                            .keys()
                            .into_iter()
                            .filter(|k| !seen.contains(k))
                            .collect();
                        for k in stale {
                            self.queue.remove(&k);
                        }
                    }
                    self.synced_pods = true;
                    self.queue.cluster_changed(now);
                }
                Event::Apply(p) => self.on_pod(p, now),
                Event::Delete(p) => {
                    let key = key_of(&p);
                    self.queue.remove(&key);
                    let same = self
                        .cache
                        .pods
                        .get(&key)
                        .is_some_and(|i| Some(&i.uid) == p.metadata.uid.as_ref());
                    if same && self.cache.remove_pod(&key).is_some() {
                        self.queue.cluster_changed(now);
                    }
                }
            },
            Input::Node(ev) => match *ev {
                Event::Init => self.relist.nodes = Some(HashSet::new()),
                Event::InitApply(n) => {
                    if let Some(seen) = self.relist.nodes.as_mut() {
                        seen.insert(n.name_any());
                    }
                    self.on_node(&n, now);
                }
                Event::InitDone => {
                    if let Some(seen) = self.relist.nodes.take() {
                        self.cache.nodes.retain(|k, _| seen.contains(k));
                    }
                    self.synced_nodes = true;
                }
                Event::Apply(n) => self.on_node(&n, now),
                Event::Delete(n) => {
                    self.cache.nodes.remove(&n.name_any());
                }
            },
            Input::RuntimeClass(ev) => match *ev {
                Event::Init => self.relist.classes = Some(HashSet::new()),
                Event::InitApply(rc) | Event::Apply(rc) => {
                    if let Some(seen) = self.relist.classes.as_mut() {
                        seen.insert(rc.name_any());
                    }
                    self.cache
                        .runtime_classes
                        .insert(rc.name_any(), RuntimeClassInfo::new(&rc));
                    self.queue.cluster_changed(now);
                }
                Event::InitDone => {
                    if let Some(seen) = self.relist.classes.take() {
                        self.cache.runtime_classes.retain(|k, _| seen.contains(k));
                    }
                    self.synced_classes = true;
                }
                Event::Delete(rc) => {
                    self.cache.runtime_classes.remove(&rc.name_any());
                }
            },
            Input::Namespace(ev) => match *ev {
                Event::Init => self.relist.namespaces = Some(HashSet::new()),
                Event::InitApply(ns) | Event::Apply(ns) => {
                    let name = ns.name_any();
                    if let Some(seen) = self.relist.namespaces.as_mut() {
                        seen.insert(name.clone());
                    }
                    let labels = ns.metadata.labels.unwrap_or_default();
                    if self.cache.namespaces.get(&name) != Some(&labels) {
                        self.cache.namespaces.insert(name, labels);
                        if !self.cache.with_affinity.is_empty() {
                            self.queue.cluster_changed(now);
                        }
                    }
                }
                Event::InitDone => {
                    if let Some(seen) = self.relist.namespaces.take() {
                        self.cache.namespaces.retain(|k, _| seen.contains(k));
                    }
                    self.synced_namespaces = true;
                }
                Event::Delete(ns) => {
                    self.cache.namespaces.remove(&ns.name_any());
                }
            },
        }
    }

    fn on_node(&mut self, node: &Node, now: Instant) {
        let info = NodeInfo::new(node);
        let changed = self
            .cache
            .nodes
            .get(&info.name)
            .is_none_or(|old| old.fingerprint != info.fingerprint);
        self.cache.nodes.insert(info.name.clone(), info);
        if changed {
            self.queue.cluster_changed(now);
        }
    }

    fn on_pod(&mut self, pod: Pod, now: Instant) {
        let key = key_of(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(node) = node_name(&pod) {
            self.queue.remove(&key);
            if terminal(&pod) {
                // Finished pods free their node (upstream's scheduler does not
                // count them either).
                if self.cache.remove_pod(&key).is_some() {
                    self.queue.cluster_changed(now);
                }
                return;
            }
            let previous = self
                .cache
                .pods
                .get(&key)
                .map(|p| (p.uid.clone(), p.node.clone(), p.assumed));
            let overhead = class_overhead(&pod, &self.cache);
            let info = cache::pod_info(&pod, node, overhead.as_ref(), false);
            self.cache.add_pod(&key, info);
            match previous {
                // Our own binding showing up.
                Some((u, n, true)) if u == uid && n == node => {}
                Some((u, n, _)) if u == uid && n == node => {}
                Some(_) => {
                    // Replaced (another pod of that name, or bound elsewhere):
                    // the old placement freed room.
                    self.queue.cluster_changed(now);
                    self.queue.pod_assigned(now);
                }
                None => self.queue.pod_assigned(now),
            }
            return;
        }
        // Not assigned. An older event of a pod this scheduler already
        // placed (nodeName is never unset) must not queue it again.
        if let Some(p) = self.cache.pods.get(&key) {
            if p.uid == uid {
                return;
            }
            self.cache.remove_pod(&key);
            self.queue.cluster_changed(now);
        }
        if wants_scheduling(&pod) {
            self.queue.upsert(&key, Arc::new(pod));
        } else {
            self.queue.remove(&key);
        }
    }

    /// Schedule up to a batch of pods; returns how many were tried.
    fn schedule_batch(&mut self) -> usize {
        let mut tried = 0;
        while tried < BATCH && self.binds_in_flight < MAX_BINDS_IN_FLIGHT {
            let Some((key, pod)) = self.queue.pop() else {
                break;
            };
            tried += 1;
            self.schedule(key, pod);
        }
        tried
    }

    fn schedule(&mut self, key: PodKey, pod: Arc<Pod>) {
        let now = Instant::now();
        match scoring::schedule_one(&pod, &self.cache, &mut self.rng) {
            Ok(node) => {
                let overhead = class_overhead(&pod, &self.cache);
                let info = cache::pod_info(&pod, &node, overhead.as_ref(), true);
                let uid = info.uid.clone();
                self.cache.add_pod(&key, info);
                self.queue.pod_assigned(now);
                self.binds_in_flight += 1;
                let client = self.client.clone();
                let tx = self.results_tx.clone();
                tokio::spawn(async move {
                    let outcome = bind(client, &pod, &uid, &node).await;
                    let _ = tx.send(BindResult {
                        key,
                        uid,
                        pod,
                        node,
                        outcome,
                    });
                });
            }
            Err(fit) => {
                self.stats.unschedulable += 1;
                self.queue.unschedulable(&key, now);
                self.report_unschedulable(&pod, &fit);
            }
        }
    }

    fn on_bind_result(&mut self, r: BindResult) {
        self.binds_in_flight = self.binds_in_flight.saturating_sub(1);
        let now = Instant::now();
        let still_assumed = self
            .cache
            .pods
            .get(&r.key)
            .is_some_and(|p| p.assumed && p.uid == r.uid);
        match r.outcome {
            BindOutcome::Bound => {
                self.stats.bound += 1;
                self.queue.remove(&r.key);
                let message = format!("Successfully assigned {} to {}", r.key, r.node);
                self.recorder
                    .publish(r.pod.as_ref(), EventType::Normal, "Scheduled", &message);
            }
            BindOutcome::Gone => {
                if still_assumed {
                    self.cache.remove_pod(&r.key);
                    self.queue.cluster_changed(now);
                }
                self.queue.remove(&r.key);
            }
            BindOutcome::Conflict => {
                // Bound by someone else, or the pod kept changing: the watch
                // shows which; until then the pod waits out a backoff.
                if still_assumed {
                    self.cache.remove_pod(&r.key);
                    self.queue.cluster_changed(now);
                }
                self.queue.retry_later(&r.key, now);
            }
            BindOutcome::Failed(e) => {
                self.stats.failed += 1;
                tracing::debug!(pod = %r.key, node = %r.node, error = %e, "binding failed");
                if still_assumed {
                    self.cache.remove_pod(&r.key);
                    self.queue.cluster_changed(now);
                }
                self.queue.retry_later(&r.key, now);
                self.recorder.publish(
                    r.pod.as_ref(),
                    EventType::Warning,
                    "FailedScheduling",
                    &format!("Binding rejected: {e}"),
                );
            }
        }
    }

    /// A FailedScheduling event, and `PodScheduled=False` unless the pod
    /// already says exactly that.
    fn report_unschedulable(&self, pod: &Arc<Pod>, fit: &FitError) {
        let message = fit.to_string();
        tracing::debug!(pod = %key_of(pod), %message, "unschedulable");
        self.recorder.publish(
            pod.as_ref(),
            EventType::Warning,
            "FailedScheduling",
            &message,
        );
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let already = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        });
        if already {
            return;
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(|| Time(Timestamp::now()));
        let patch = serde_json::json!({
            "status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]}
        });
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.name_any();
        let permits = self.status_writes.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "writing PodScheduled=False failed");
            }
        });
    }
}

/// POST the pod's binding to `node`, with the pod's uid as precondition.
async fn bind(client: Client, pod: &Pod, uid: &str, node: &str) -> BindOutcome {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(s)) if s.code == 409 => BindOutcome::Conflict,
        Err(kube::Error::Api(s)) if s.code == 404 => BindOutcome::Gone,
        Err(e) => BindOutcome::Failed(e.to_string()),
    }
}
