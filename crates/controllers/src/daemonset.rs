//! The DaemonSet controller (after upstream pkg/controller/daemon).
//!
//! One pod per node the pod could run on: the template's `nodeName` (if
//! any), `nodeSelector` and required node affinity must match the node, and
//! every NoSchedule/NoExecute taint of the node must be tolerated. Daemon pods
//! get upstream's automatic tolerations (not-ready and unreachable NoExecute;
//! disk-, memory- and pid-pressure and unschedulable NoSchedule;
//! network-unavailable for host-network pods), so cordoned and NotReady nodes
//! keep theirs. Each pod is pinned to its node by a required node affinity
//! term `matchFields metadata.name In [<node>]` and bound by the scheduler.
//! A node whose new NoExecute taint is not tolerated loses its pod; one with
//! only an untolerated NoSchedule taint keeps an existing pod.
//!
//! On skiff's single virtual node this means one pod per DaemonSet (with
//! `--fake-nodes N`, one per fake node).
//!
//! Orphaned pods the selector selects are adopted; owned pods whose labels stop
//! matching are released.
//!
//! Updates: `RollingUpdate` with `maxUnavailable` (old pods deleted, then
//! replaced) or `maxSurge` (new pod started beside the old one, which goes once
//! the new one is available); `OnDelete` replaces a pod only when someone
//! deletes it. Pods carry `controller-revision-hash` and
//! `pod-template-generation`; revisions are ControllerRevisions
//! ([`crate::history`]) so `kubectl rollout history|undo ds/x` work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use skiff_client::cache::Cache;
use skiff_client::events::{EventType, Recorder};
use skiff_client::expectations::Expectations;
use skiff_client::objects::{self, PodName};
use tokio_util::sync::CancellationToken;

use crate::history::{self, HASH_LABEL};
use crate::runtime::{Backoff, Context, Error};
use crate::scheduler::affinity;
use crate::statefulset::{claim_pods, scaled};

/// Deprecated label upstream still sets on daemon pods.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Look again at least this often (level-triggered safety net).
const RESYNC: Duration = Duration::from_secs(300);

struct State {
    ctx: Arc<Context>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (pods, pod_changes) = ctx.informers.all::<Pod>();
    let (nodes, node_changes) = ctx.informers.all::<Node>();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = async { pods.wait_ready().await; nodes.wait_ready().await } => {}
    }
    let state = Arc::new(State {
        recorder: ctx.recorder("daemonset-controller"),
        ctx,
        pods,
        nodes,
        expectations: Expectations::new(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default());
    let sets = controller.store();
    controller
        .owns_stream(pod_changes)
        // Any node change (added, removed, relabelled, tainted) may change
        // where every DaemonSet should run.
        .watches_stream(node_changes, move |_node: Node| {
            sets.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, st: Arc<State>) -> Action {
    let key = objects::key(ds.as_ref());
    tracing::debug!(%key, error = %err, "daemonset sync failed");
    st.backoff.requeue(&key)
}

/// The tolerations upstream adds to every daemon pod.
fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            tolerations.retain(|t| {
                !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect))
            });
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
}

fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        effects.contains(&t.effect.as_str())
            && !tolerations.iter().any(|tol| affinity::tolerates(tol, t))
    })
}

/// Whether a pod with `spec` may run on `node` and whether an existing one
/// may stay (upstream's NodeShouldRunDaemonPod): (should_run, should_continue).
pub fn node_should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != node.name_any() {
            return (false, false);
        }
    }
    let labels = node.labels();
    if let Some(sel) = spec.node_selector.as_ref() {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return (false, false);
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required {
        if !req
            .node_selector_terms
            .iter()
            .any(|t| affinity::term_matches(t, &node.name_any(), labels))
        {
            return (false, false);
        }
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]).is_some() {
        let keep = untolerated(taints, tolerations, &["NoExecute"]).is_none();
        return (false, keep);
    }
    (true, true)
}

/// The node a daemon pod is for: its binding, else its pinning affinity.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            let values = f.values.as_deref()?;
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The template with the daemon tolerations (what predicates are checked on).
fn daemon_template(spec: &DaemonSetSpec) -> PodTemplateSpec {
    let mut t = spec.template.clone();
    add_daemon_tolerations(t.spec.get_or_insert_with(Default::default));
    t
}

/// The pod for `node`.
fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, node: &str, hash: &str) -> Pod {
    let mut pod = objects::pod_from_template(
        template,
        &ds.namespace().unwrap_or_default(),
        PodName::Generate(format!("{}-", ds.name_any())),
        objects::controller_ref(ds),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    });
    pod
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn created(pod: &Pod) -> Timestamp {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::MIN)
}

/// Oldest first; among equals, by name.
fn by_age(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(HASH_LABEL).map(String::as_str) == Some(hash)
}

async fn reconcile(ds: Arc<DaemonSet>, st: Arc<State>) -> Result<Action, Error> {
    let key = objects::key(ds.as_ref());
    if ds.metadata.deletion_timestamp.is_some() {
        st.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let result = sync(&ds, &st, &key).await;
    if result.is_ok() {
        st.backoff.reset(&key);
    }
    result
}

struct NodeView {
    name: String,
    should_run: bool,
    should_continue: bool,
    pods: Vec<Arc<Pod>>,
}

async fn sync(ds: &DaemonSet, st: &State, key: &str) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let client = &st.ctx.client;
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);

    let revisions = history::list(client, ds, &spec.selector).await?;
    let status = ds.status.clone().unwrap_or_default();
    let hist = history::ensure(
        client,
        ds,
        &spec.template,
        revisions,
        status.collision_count.unwrap_or(0),
    )
    .await?;
    let hash = history::revision_hash(&hist.update)
        .map(str::to_string)
        .unwrap_or_else(|| hist.update.name_any());

    // Pods by node.
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    let mut stray: Vec<Arc<Pod>> = Vec::new();
    let owned = claim_pods(client, &st.pods, ds, &spec.selector, |_| true).await?;
    for pod in &owned {
        match target_node(pod) {
            Some(n) => by_node.entry(n).or_default().push(pod.clone()),
            None => stray.push(pod.clone()),
        }
    }
    let template = daemon_template(&spec);
    let pod_spec = template.spec.clone().unwrap_or_default();
    let mut nodes: Vec<NodeView> = st
        .nodes
        .all()
        .into_iter()
        .map(|node| {
            let (should_run, should_continue) = node_should_run(&pod_spec, &node);
            let name = node.name_any();
            let mut pods = by_node.remove(&name).unwrap_or_default();
            by_age(&mut pods);
            NodeView {
                name,
                should_run,
                should_continue,
                pods,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    // Pods for nodes that no longer exist (or pinned nowhere) go.
    stray.extend(by_node.into_values().flatten());

    let satisfied = st.expectations.satisfied(key, |n| {
        st.pods.get(Some(&ns), n).is_some_and(|p| !terminating(&p))
    });
    let mut failure: Option<Error> = None;
    if satisfied {
        let plan = Plan {
            st,
            ds,
            key,
            ns: &ns,
            spec: &spec,
            template: &template,
            hash: &hash,
            min_ready,
            now,
        };
        if let Err(e) = plan.apply(&nodes, &stray).await {
            failure = Some(e);
        }
    }

    let requeue = update_status(st, ds, &nodes, &hash, hist.collision_count).await?;

    let live: HashSet<String> = owned
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
        .collect();
    history::truncate(
        client,
        &ns,
        &hist.revisions,
        |r| {
            r.name_any() == hist.update.name_any()
                || history::revision_hash(r).is_some_and(|h| live.contains(h))
        },
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Action::requeue(requeue.unwrap_or(RESYNC)))
}

struct Plan<'a> {
    st: &'a State,
    ds: &'a DaemonSet,
    key: &'a str,
    ns: &'a str,
    spec: &'a DaemonSetSpec,
    template: &'a PodTemplateSpec,
    hash: &'a str,
    min_ready: i32,
    now: Timestamp,
}

impl Plan<'_> {
    fn available(&self, pod: &Pod) -> bool {
        objects::pod_available(pod, self.min_ready, self.now)
    }

    /// Create and delete so every eligible node has one pod, then roll.
    async fn apply(&self, nodes: &[NodeView], stray: &[Arc<Pod>]) -> Result<(), Error> {
        let surge = self.max_surge(nodes) > 0;
        let mut create_on: Vec<&str> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = stray.iter().filter(|p| !terminating(p)).cloned().collect();
        for node in nodes {
            if node.should_run && node.pods.is_empty() {
                create_on.push(&node.name);
                continue;
            }
            if !node.should_continue {
                delete.extend(node.pods.iter().filter(|p| !terminating(p)).cloned());
                continue;
            }
            let mut running: Vec<Arc<Pod>> = Vec::new();
            for pod in &node.pods {
                if terminating(pod) {
                    continue;
                }
                if matches!(phase(pod), "Failed" | "Succeeded") {
                    delete.push(pod.clone());
                } else {
                    running.push(pod.clone());
                }
            }
            if !surge {
                // One pod per node: keep the oldest.
                delete.extend(running.iter().skip(1).cloned());
                continue;
            }
            if running.is_empty() {
                if node.should_run && node.pods.iter().all(|p| terminating(p)) {
                    create_on.push(&node.name);
                }
                continue;
            }
            // Surging: at most the oldest new pod and, while that one is not
            // available yet, the oldest ready old pod.
            let mut oldest_new: Option<&Arc<Pod>> = None;
            let mut oldest_old: Option<&Arc<Pod>> = None;
            for pod in &running {
                let slot = if is_updated(pod, self.hash) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    delete.push(pod.clone());
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                if !objects::pod_ready(old) || self.available(new) {
                    delete.push(old.clone());
                }
            }
        }
        let changed = !create_on.is_empty() || !delete.is_empty();
        self.create_pods(&create_on).await?;
        self.delete_pods(&delete).await?;
        if changed {
            return Ok(()); // roll on the next pass, with the cache caught up
        }
        self.rolling_update(nodes).await
    }

    fn desired(nodes: &[NodeView]) -> i32 {
        i32::try_from(nodes.iter().filter(|n| n.should_run).count()).unwrap_or(i32::MAX)
    }

    fn rolling_update_params(
        &self,
    ) -> Option<(Option<IntOrStringRef<'_>>, Option<IntOrStringRef<'_>>)> {
        let strategy = self.spec.update_strategy.as_ref();
        if strategy
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            != "RollingUpdate"
        {
            return None;
        }
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        Some((
            ru.and_then(|r| r.max_unavailable.as_ref()),
            ru.and_then(|r| r.max_surge.as_ref()),
        ))
    }

    fn max_surge(&self, nodes: &[NodeView]) -> i32 {
        match self.rolling_update_params() {
            Some((_, surge)) => scaled(surge, Self::desired(nodes), 0).max(0),
            None => 0,
        }
    }

    /// Replace old pods within the budget (upstream's rollingUpdate).
    async fn rolling_update(&self, nodes: &[NodeView]) -> Result<(), Error> {
        let Some((unavail, _)) = self.rolling_update_params() else {
            return Ok(()); // OnDelete
        };
        let desired = Self::desired(nodes);
        let max_surge = self.max_surge(nodes);
        let mut max_unavailable = scaled(unavail, desired, 1).max(0);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        let mut to_delete: Vec<Arc<Pod>> = Vec::new();
        let mut to_create: Vec<&str> = Vec::new();
        if max_surge == 0 {
            let mut unavailable = 0i32;
            let mut replace_now: Vec<Arc<Pod>> = Vec::new();
            let mut candidates: Vec<Arc<Pod>> = Vec::new();
            for node in nodes.iter().filter(|n| n.should_run) {
                let live: Vec<&Arc<Pod>> = node.pods.iter().filter(|p| !terminating(p)).collect();
                let new = live.iter().find(|p| is_updated(p, self.hash));
                let old = live.iter().find(|p| !is_updated(p, self.hash));
                match (old, new) {
                    (None, None) | (Some(_), Some(_)) => unavailable += 1,
                    (None, Some(new)) => {
                        if !self.available(new) {
                            unavailable += 1;
                        }
                    }
                    (Some(old), None) => {
                        if !self.available(old) {
                            replace_now.push((*old).clone());
                        } else {
                            candidates.push((*old).clone());
                        }
                    }
                }
            }
            let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            to_delete.extend(replace_now);
            to_delete.extend(candidates.into_iter().take(room));
        } else {
            let mut surging = 0i32;
            let mut surge_now: Vec<&str> = Vec::new();
            let mut candidates: Vec<&str> = Vec::new();
            for node in nodes.iter().filter(|n| n.should_run) {
                let live: Vec<&Arc<Pod>> = node.pods.iter().filter(|p| !terminating(p)).collect();
                let new = live.iter().find(|p| is_updated(p, self.hash));
                let old = live.iter().find(|p| !is_updated(p, self.hash));
                match (old, new) {
                    (Some(old), None) => {
                        if !self.available(old) {
                            surge_now.push(&node.name);
                        } else {
                            candidates.push(&node.name);
                        }
                    }
                    (Some(old), Some(new)) => {
                        if self.available(new) {
                            to_delete.push((*old).clone());
                        } else {
                            surging += 1;
                        }
                    }
                    _ => {}
                }
            }
            let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
            to_create.extend(surge_now);
            to_create.extend(candidates.into_iter().take(room));
        }
        self.create_pods(&to_create).await?;
        self.delete_pods(&to_delete).await
    }

    async fn create_pods(&self, nodes: &[&str]) -> Result<(), Error> {
        if nodes.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.st.ctx.client.clone(), self.ns);
        let pp = PostParams::default();
        let results = futures::future::join_all(nodes.iter().map(|node| {
            let pod = new_pod(self.ds, self.template, node, self.hash);
            let api = &api;
            let pp = &pp;
            async move { (node, api.create(pp, &pod).await) }
        }))
        .await;
        let mut first_err = None;
        for (node, r) in results {
            match r {
                Ok(created) => {
                    self.st
                        .expectations
                        .expect_create(self.key, &created.name_any());
                    self.st.recorder.publish(
                        self.ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", created.name_any()),
                    );
                }
                Err(e) => {
                    self.st.recorder.publish(
                        self.ds,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating pod for node {node}: {e}"),
                    );
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn delete_pods(&self, pods: &[Arc<Pod>]) -> Result<(), Error> {
        if pods.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.st.ctx.client.clone(), self.ns);
        let results = futures::future::join_all(pods.iter().map(|p| {
            let api = &api;
            async move {
                let dp = DeleteParams {
                    preconditions: p.uid().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                (p, api.delete(&p.name_any(), &dp).await)
            }
        }))
        .await;
        let mut first_err = None;
        for (p, r) in results {
            match r {
                Ok(_) => {
                    self.st.expectations.expect_delete(self.key, &p.name_any());
                    self.st.recorder.publish(
                        self.ds,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", p.name_any()),
                    );
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

type IntOrStringRef<'a> = &'a k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Write status if it changed; returns when to look again for pods that
/// become available after `minReadySeconds`.
async fn update_status(
    st: &State,
    ds: &DaemonSet,
    nodes: &[NodeView],
    hash: &str,
    collision_count: i32,
) -> Result<Option<Duration>, Error> {
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);
    let now = Timestamp::now();
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0i32, 0i32, 0i32, 0i32, 0i32, 0i32);
    let mut next: Option<Duration> = None;
    for node in nodes {
        if node.should_run {
            desired += 1;
            // The oldest pod stands for the node.
            if let Some(pod) = node.pods.first() {
                current += 1;
                if let Some(since) = objects::pod_ready_since(pod) {
                    ready += 1;
                    if objects::pod_available(pod, min_ready, now) {
                        available += 1;
                    } else {
                        let at = since
                            .saturating_add(SignedDuration::from_secs(i64::from(min_ready)))
                            .unwrap_or(now);
                        let wait = Duration::try_from(at.duration_since(now))
                            .unwrap_or(Duration::ZERO)
                            + Duration::from_millis(100);
                        next = Some(next.map_or(wait, |n| n.min(wait)));
                    }
                }
                if is_updated(pod, hash) {
                    updated += 1;
                }
            }
        } else if !node.pods.is_empty() {
            misscheduled += 1;
        }
    }
    let status = json!({
        "observedGeneration": ds.metadata.generation,
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "updatedNumberScheduled": updated,
        "collisionCount": collision_count,
    });
    let old = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let changed = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old.get(k).unwrap_or(&serde_json::Value::Null) != v);
    if changed {
        let api: Api<DaemonSet> =
            Api::namespaced(st.ctx.client.clone(), &ds.namespace().unwrap_or_default());
        match api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .expect("node")
    }

    fn pod_spec(v: serde_json::Value) -> PodSpec {
        let mut spec: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut spec);
        spec
    }

    #[test]
    fn selectors_affinity_and_taints_decide_placement() {
        let plain = pod_spec(json!({"containers": []}));
        let n = node("a", json!({"disk": "ssd"}), json!([]));
        assert_eq!(node_should_run(&plain, &n), (true, true));

        let sel = pod_spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(node_should_run(&sel, &n), (false, false));

        let aff = pod_spec(json!({"containers": [], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
        ]}}}}));
        assert_eq!(node_should_run(&aff, &n), (true, true));
        let other = node("b", json!({}), json!([]));
        assert_eq!(node_should_run(&aff, &other), (false, false));

        // NoSchedule untolerated: do not start, but keep a running pod.
        let tainted = node(
            "c",
            json!({}),
            json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
        );
        assert_eq!(node_should_run(&plain, &tainted), (false, true));
        // NoExecute untolerated: leave.
        let evicting = node("d", json!({}), json!([{"key": "k", "effect": "NoExecute"}]));
        assert_eq!(node_should_run(&plain, &evicting), (false, false));
        // Tolerated by the automatic tolerations.
        let cordoned = node(
            "e",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(node_should_run(&plain, &cordoned), (true, true));
        // An explicit Equal toleration.
        let tol = pod_spec(json!({"containers": [], "tolerations": [
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]}));
        assert_eq!(node_should_run(&tol, &tainted), (true, true));
    }

    #[test]
    fn pods_are_pinned_to_their_node() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"containers": [{"name": "c", "image": "x"}],
                                      "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}}}
            }
        }))
        .expect("ds");
        let spec = ds.spec.clone().expect("spec");
        let pod = new_pod(&ds, &daemon_template(&spec), "node-1", "h1");
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let labels = pod.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("h1"));
        assert_eq!(
            labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("3")
        );
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .expect("tol");
        assert_eq!(tolerations.len(), 6);
    }
}
