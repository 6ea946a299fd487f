//! Node lifecycle (upstream pkg/controller/nodelifecycle plus the taint
//! eviction controller), for nodes that heartbeat through Leases in
//! `kube-node-lease`:
//!
//! - A node whose Lease (or Ready heartbeat) has not changed for
//!   `settings.node_monitor_grace`, as seen on this controller's own clock,
//!   gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions
//!   set to Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
//!   status."), a `NodeNotReady` event, and its pods' Ready condition False.
//! - Taints follow the Ready condition: Unknown → `node.kubernetes.io/unreachable`,
//!   False → `node.kubernetes.io/not-ready`, both NoSchedule and NoExecute
//!   (the NoExecute one with `timeAdded`); Ready True removes them.
//! - Pods on a node with NoExecute taints are deleted (graceful delete,
//!   `TaintManagerEviction` event) unless they tolerate every such taint; a
//!   toleration with `tolerationSeconds` delays the deletion to that long
//!   after the taint's `timeAdded`. Finished pods are left alone.
//!
//! Pods that were deleted on a dead node stay Terminating until its agent
//! comes back (as upstream: nothing force-deletes them); workload controllers
//! replace them as soon as they carry a deletionTimestamp.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use skiff_client::events::{EventType, Recorder};
use skiff_client::objects;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Context, Error};
use crate::scheduler::affinity;

/// Node Leases live here.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint key of nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key of nodes whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";

const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What this controller remembers about a node.
struct Health {
    /// When (on our clock) the node last showed a sign of life.
    probe: Instant,
    renew: Option<MicroTime>,
    heartbeat: Option<Time>,
    /// Its pods were marked not ready after it stopped being Ready.
    pods_marked: bool,
}

struct Controller {
    client: Client,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    health: HashMap<String, Health>,
    /// Pods already deleted by us (uid), until they show a deletionTimestamp.
    evicted: HashSet<String>,
    node_events: Recorder,
    eviction_events: Recorder,
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let node_stream = reflector::reflector(
        node_writer,
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    let lease_stream = reflector::reflector(
        lease_writer,
        watcher::watcher(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let stop = shutdown.clone();
    let feeder = tokio::spawn(async move {
        let mut both = std::pin::pin!(futures::stream::select(
            node_stream.map(|r| r.err().map(|e| e.to_string())),
            lease_stream.map(|r| r.err().map(|e| e.to_string())),
        ));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                item = both.next() => match item {
                    None => return,
                    Some(Some(e)) => tracing::debug!(error = %e, "node lifecycle watch error"),
                    Some(None) => {}
                },
            }
        }
    });
    tokio::select! {
        _ = shutdown.cancelled() => { let _ = feeder.await; return; }
        r = async { nodes.wait_until_ready().await.and(leases.wait_until_ready().await) } => {
            if r.is_err() {
                return;
            }
        }
    }
    let grace = ctx.settings.node_monitor_grace;
    let mut c = Controller {
        client: client.clone(),
        grace,
        nodes,
        leases,
        health: HashMap::new(),
        evicted: HashSet::new(),
        node_events: ctx.recorder("node-controller"),
        eviction_events: ctx.recorder("taint-eviction-controller"),
    };
    // Upstream checks every 5 s against a 40 s grace; keep the same ratio
    // for short test graces, at most once a second.
    let period = (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        c.monitor().await;
    }
    let _ = feeder.await;
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The NoSchedule and NoExecute taints a node with this Ready status carries.
pub fn readiness_taint_key(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    }
}

/// `taints` with the readiness taints replaced by those for `key` (keeping
/// an existing one, and its `timeAdded`, if it is already there).
pub fn with_readiness_taints(taints: &[Taint], key: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| {
            let ours = t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
            let ours = ours && (t.effect == "NoSchedule" || t.effect == "NoExecute");
            !ours || Some(t.key.as_str()) == key
        })
        .cloned()
        .collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    out
}

/// When a pod on a node with `taints` must be evicted: `None` if it
/// tolerates every NoExecute taint for ever, `Some(t)` otherwise (`t` may
/// be in the past: at once).
pub fn eviction_time(
    taints: &[Taint],
    tolerations: &[Toleration],
    now: Timestamp,
) -> Option<Timestamp> {
    let mut when: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations
            .iter()
            .filter(|tol| affinity::tolerates(tol, taint))
            .collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest tolerationSeconds among those that match; none means for ever.
        let secs = matching.iter().filter_map(|t| t.toleration_seconds).min();
        let Some(secs) = secs else {
            continue;
        };
        let since = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let at = since
            .saturating_add(SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(since);
        when = Some(when.map_or(at, |w| w.min(at)));
    }
    when
}

impl Controller {
    async fn monitor(&mut self) {
        let now = Instant::now();
        let nodes = self.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.health.retain(|n, _| names.contains(n));
        for node in nodes {
            let name = node.name_any();
            let renew = self
                .leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
                .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()));
            let heartbeat = condition(&node, "Ready").and_then(|c| c.last_heartbeat_time.clone());
            let h = self.health.entry(name.clone()).or_insert_with(|| Health {
                probe: now,
                renew: renew.clone(),
                heartbeat: heartbeat.clone(),
                pods_marked: false,
            });
            if h.renew != renew || h.heartbeat != heartbeat {
                h.renew = renew;
                h.heartbeat = heartbeat;
                h.probe = now;
            }
            let silent = now.saturating_duration_since(h.probe) > self.grace;
            if let Err(e) = self.sync_node(&node, silent).await {
                tracing::debug!(node = %name, error = %e, "node lifecycle sync failed");
            }
        }
    }

    async fn sync_node(&mut self, node: &Node, silent: bool) -> Result<(), Error> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut ready = condition(node, "Ready").map(|c| c.status.clone());
        if silent
            && CONDITIONS
                .iter()
                .any(|t| condition(node, t).is_none_or(|c| c.status != "Unknown"))
        {
            self.mark_unknown(&api, node).await?;
            if ready.as_deref() == Some("True") {
                self.node_events.publish(
                    node,
                    EventType::Normal,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                );
            }
            ready = Some("Unknown".into());
        }
        let is_ready = ready.as_deref() == Some("True");
        if is_ready {
            if let Some(h) = self.health.get_mut(&name) {
                h.pods_marked = false;
            }
        } else if !self.health.get(&name).is_some_and(|h| h.pods_marked)
            && self.mark_pods_not_ready(&name).await?
        {
            if let Some(h) = self.health.get_mut(&name) {
                h.pods_marked = true;
            }
        }

        if ready.is_none() {
            return Ok(()); // not reported yet and still within the grace period
        }
        let key = readiness_taint_key(ready.as_deref());
        let now = Timestamp::now();
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let desired = with_readiness_taints(&current, key, now);
        let taints = if desired != current {
            let mut updated = node.clone();
            updated.spec.get_or_insert_with(Default::default).taints =
                (!desired.is_empty()).then(|| desired.clone());
            // The cached resourceVersion makes a concurrent change a 409: retried next pass.
            api.replace(&name, &PostParams::default(), &updated).await?;
            desired
        } else {
            current
        };
        if taints.iter().any(|t| t.effect == "NoExecute") {
            self.evict(&name, &taints).await?;
        }
        Ok(())
    }

    /// Set the node's conditions to Unknown (heartbeat times kept).
    async fn mark_unknown(&self, api: &Api<Node>, node: &Node) -> Result<(), Error> {
        let now = Time(Timestamp::now());
        let conds: Vec<serde_json::Value> = CONDITIONS
            .iter()
            .map(|t| {
                let old = condition(node, t);
                let (reason, message) = match old {
                    Some(_) => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
                    None => (
                        "NodeStatusNeverUpdated",
                        "Kubelet never posted node status.",
                    ),
                };
                let ltt = match old {
                    Some(c) if c.status == "Unknown" => {
                        c.last_transition_time.clone().unwrap_or(now.clone())
                    }
                    _ => now.clone(),
                };
                let hb = old
                    .and_then(|c| c.last_heartbeat_time.clone())
                    .unwrap_or(now.clone());
                serde_json::json!({
                    "type": t,
                    "status": "Unknown",
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": hb,
                    "lastTransitionTime": ltt,
                })
            })
            .collect();
        let patch = serde_json::json!({"status": {"conditions": conds}});
        api.patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
        Ok(())
    }

    async fn list_pods(&self, node: &str) -> Result<Vec<Pod>, Error> {
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        Ok(Api::<Pod>::all(self.client.clone()).list(&lp).await?.items)
    }

    /// Ready=False on every running pod of the node. Returns whether all were done.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<bool, Error> {
        let now = Time(Timestamp::now());
        let mut all = true;
        for pod in self.list_pods(node).await? {
            if objects::pod_terminal(&pod) {
                continue;
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.as_str());
            if ready == Some("False") {
                continue;
            }
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": now,
            }]}});
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => self.node_events.publish(
                    &pod,
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready",
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::debug!(error = %e, "marking a pod not ready failed");
                    all = false;
                }
            }
        }
        Ok(all)
    }

    /// Delete the pods whose tolerations of the node's NoExecute taints ran out.
    async fn evict(&mut self, node: &str, taints: &[Taint]) -> Result<(), Error> {
        let now = Timestamp::now();
        let pods = self.list_pods(node).await?;
        let present: HashSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.uid())
            .collect();
        self.evicted.retain(|u| present.contains(u));
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() || objects::pod_terminal(&pod) {
                continue;
            }
            let Some(uid) = pod.uid() else { continue };
            if self.evicted.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            match eviction_time(taints, &tolerations, now) {
                Some(at) if at <= now => {}
                _ => continue,
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&pod.name_any(), &params).await {
                Ok(_) => {
                    self.evicted.insert(uid);
                    self.eviction_events.publish(
                        &pod,
                        EventType::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
                    );
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| Time(Timestamp::from_second(s).unwrap())),
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn readiness_taints_follow_the_ready_condition() {
        let now = Timestamp::from_second(1_000).unwrap();
        let other = taint("dedicated", "NoSchedule", None);
        let t = with_readiness_taints(
            std::slice::from_ref(&other),
            readiness_taint_key(Some("Unknown")),
            now,
        );
        assert_eq!(t.len(), 3);
        assert!(t.iter().any(|t| t.key == TAINT_UNREACHABLE
            && t.effect == "NoExecute"
            && t.time_added.is_some()));
        assert!(t
            .iter()
            .any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoSchedule"));
        // Stable: a second pass keeps timeAdded.
        let later = Timestamp::from_second(2_000).unwrap();
        assert_eq!(with_readiness_taints(&t, Some(TAINT_UNREACHABLE), later), t);
        // Not ready instead of unreachable.
        let nr = with_readiness_taints(&t, readiness_taint_key(Some("False")), later);
        assert!(nr.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert_eq!(nr.iter().filter(|t| t.key == TAINT_NOT_READY).count(), 2);
        // Ready again: only the other taint stays.
        assert_eq!(
            with_readiness_taints(&nr, readiness_taint_key(Some("True")), later),
            vec![other]
        );
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let now = Timestamp::from_second(1_010).unwrap();
        let taints = [
            taint(TAINT_UNREACHABLE, "NoExecute", Some(1_000)),
            taint(TAINT_UNREACHABLE, "NoSchedule", None),
        ];
        assert_eq!(eviction_time(&taints, &[], now), Some(now));
        assert_eq!(
            eviction_time(&taints, &[toleration(TAINT_UNREACHABLE, None)], now),
            None
        );
        assert_eq!(
            eviction_time(
                &taints,
                &[
                    toleration(TAINT_UNREACHABLE, Some(300)),
                    toleration("", Some(2))
                ],
                now
            ),
            Some(Timestamp::from_second(1_002).unwrap())
        );
        // A toleration for another key does not help.
        assert_eq!(
            eviction_time(&taints, &[toleration(TAINT_NOT_READY, Some(300))], now),
            Some(now)
        );
    }
}
