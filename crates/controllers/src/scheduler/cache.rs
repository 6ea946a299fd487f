//! The scheduler's view of the cluster: nodes (what scheduling reads of
//! them), what the pods assigned to each node use, RuntimeClasses and
//! namespace labels. Pods the scheduler has bound but not yet seen bound
//! through its watch are "assumed": they count on their node from the moment
//! the decision is made, so that decisions in flight never overcommit.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass;

use super::affinity::{Labels, PodAffinity};
use super::resources::{self, Resources};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// What scheduling reads of a Node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// `spec.taints`, plus the not-ready/unreachable taint the node lifecycle
    /// controller would add when the Ready condition is not True and the node
    /// does not carry it yet.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// A digest of the fields above: an update that leaves it unchanged
    /// (a heartbeat) cannot make a pending pod schedulable.
    pub fingerprint: u64,
}

impl NodeInfo {
    pub fn new(node: &Node) -> NodeInfo {
        let name = node.metadata.name.clone().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implied {
            if !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
            {
                taints.push(Taint {
                    key: key.into(),
                    value: None,
                    effect: "NoSchedule".into(),
                    time_added: None,
                });
            }
        }
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let allocatable = resources::node_allocatable(node);
        let mut h = DefaultHasher::new();
        labels.hash(&mut h);
        for t in &taints {
            (&t.key, &t.value, &t.effect).hash(&mut h);
        }
        unschedulable.hash(&mut h);
        (
            allocatable.milli_cpu,
            allocatable.memory,
            allocatable.ephemeral_storage,
            allocatable.pods,
            &allocatable.scalar,
        )
            .hash(&mut h);
        NodeInfo {
            name,
            labels,
            taints,
            unschedulable,
            allocatable,
            fingerprint: h.finish(),
        }
    }
}

/// A host port a pod claims: protocol, host IP (`0.0.0.0` for all), port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// What one node's pods use.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: i64,
    pub ports: Vec<HostPort>,
}

/// A pod that is assigned (or assumed) to a node.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub labels: Labels,
    pub node: String,
    pub requests: Resources,
    pub non_zero: (i64, i64),
    pub ports: Vec<HostPort>,
    pub affinity: Option<Arc<PodAffinity>>,
    /// Bound by this scheduler, not yet seen bound through the watch.
    pub assumed: bool,
}

/// A RuntimeClass's scheduling constraints and overhead.
#[derive(Debug, Clone, Default)]
pub struct RuntimeClassInfo {
    pub node_selector: Labels,
    pub tolerations: Vec<Toleration>,
    pub overhead: Option<Resources>,
}

impl RuntimeClassInfo {
    pub fn new(rc: &RuntimeClass) -> RuntimeClassInfo {
        let scheduling = rc.scheduling.as_ref();
        RuntimeClassInfo {
            node_selector: scheduling
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            tolerations: scheduling
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default(),
            overhead: rc
                .overhead
                .as_ref()
                .and_then(|o| o.pod_fixed.as_ref())
                .map(|f| Resources::from_list(Some(f))),
        }
    }
}

/// `namespace/name`.
pub type PodKey = String;

/// Everything the filters and scores read.
#[derive(Debug, Default)]
pub struct Cache {
    /// Sorted by name so that iteration (and tests) are deterministic.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Per node name; kept for pods whose node is not (yet) known.
    pub usage: HashMap<String, Usage>,
    pub pods: HashMap<PodKey, PodInfo>,
    /// Assigned pods with any pod (anti-)affinity term: the only ones whose
    /// terms must be checked against an incoming pod.
    pub with_affinity: HashSet<PodKey>,
    pub runtime_classes: HashMap<String, RuntimeClassInfo>,
    pub namespaces: HashMap<String, Labels>,
}

impl Cache {
    /// Add or replace an assigned pod (accounting moves with it).
    pub fn add_pod(&mut self, key: &str, info: PodInfo) {
        self.remove_pod(key);
        let u = self.usage.entry(info.node.clone()).or_default();
        u.requested.add(&info.requests);
        u.non_zero_cpu = u.non_zero_cpu.saturating_add(info.non_zero.0);
        u.non_zero_memory = u.non_zero_memory.saturating_add(info.non_zero.1);
        u.pods += 1;
        u.ports.extend(info.ports.iter().cloned());
        if info.affinity.is_some() {
            self.with_affinity.insert(key.to_string());
        }
        self.pods.insert(key.to_string(), info);
    }

    /// Forget an assigned pod; returns it if it was known.
    pub fn remove_pod(&mut self, key: &str) -> Option<PodInfo> {
        let info = self.pods.remove(key)?;
        self.with_affinity.remove(key);
        if let Some(u) = self.usage.get_mut(&info.node) {
            u.requested.sub(&info.requests);
            u.non_zero_cpu = u.non_zero_cpu.saturating_sub(info.non_zero.0);
            u.non_zero_memory = u.non_zero_memory.saturating_sub(info.non_zero.1);
            u.pods -= 1;
            for p in &info.ports {
                if let Some(i) = u.ports.iter().position(|x| x == p) {
                    u.ports.swap_remove(i);
                }
            }
            if u.pods <= 0 {
                self.usage.remove(&info.node);
            }
        }
        Some(info)
    }

    pub fn usage_of(&self, node: &str) -> Option<&Usage> {
        self.usage.get(node)
    }

    pub fn ns_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace)
    }
}

/// The assigned-pod record for `pod` on `node`.
pub fn pod_info(pod: &Pod, node: &str, overhead: Option<&Resources>, assumed: bool) -> PodInfo {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let (requests, non_zero, affinity) = match pod.spec.as_ref() {
        Some(spec) => (
            resources::pod_requests(spec, overhead),
            resources::non_zero_requests(spec),
            PodAffinity::of(spec, &namespace, &labels).map(Arc::new),
        ),
        None => (Resources::default(), (0, 0), None),
    };
    PodInfo {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace,
        labels,
        node: node.to_string(),
        requests,
        non_zero,
        ports: host_ports(pod),
        affinity,
        assumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(ready: Option<&str>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn readiness_implies_taints() {
        assert!(NodeInfo::new(&node(Some("True"))).taints.is_empty());
        let keys = |n: Node| -> Vec<String> {
            NodeInfo::new(&n)
                .taints
                .into_iter()
                .map(|t| t.key)
                .collect()
        };
        assert_eq!(keys(node(Some("False"))), [TAINT_NOT_READY]);
        assert_eq!(keys(node(Some("Unknown"))), [TAINT_UNREACHABLE]);
        assert_eq!(keys(node(None)), [TAINT_NOT_READY]);
        // Already tainted by the lifecycle controller: not doubled.
        let mut n = node(Some("False"));
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: TAINT_NOT_READY.into(),
                value: None,
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            ..Default::default()
        });
        assert_eq!(keys(n), [TAINT_NOT_READY]);
    }

    #[test]
    fn usage_follows_pods() {
        let mut c = Cache::default();
        let info = |node: &str, cpu: i64| PodInfo {
            uid: "u".into(),
            namespace: "ns".into(),
            labels: Labels::new(),
            node: node.into(),
            requests: Resources {
                milli_cpu: cpu,
                ..Default::default()
            },
            non_zero: (cpu, 0),
            ports: vec![HostPort {
                protocol: "TCP".into(),
                ip: "0.0.0.0".into(),
                port: 80,
            }],
            affinity: None,
            assumed: true,
        };
        c.add_pod("ns/a", info("n1", 100));
        c.add_pod("ns/b", info("n1", 200));
        assert_eq!(c.usage_of("n1").map(|u| u.requested.milli_cpu), Some(300));
        assert_eq!(c.usage_of("n1").map(|u| u.ports.len()), Some(2));
        // Re-adding moves the accounting.
        c.add_pod("ns/a", info("n2", 100));
        assert_eq!(c.usage_of("n1").map(|u| u.requested.milli_cpu), Some(200));
        assert_eq!(c.usage_of("n2").map(|u| u.pods), Some(1));
        c.remove_pod("ns/b");
        assert!(c.usage_of("n1").is_none());
        assert!(c.remove_pod("ns/b").is_none());
    }
}
