//! The filters (upstream's Filter plugins, in their default order): a node
//! is feasible for a pod only if every one passes. Each failure names its
//! reason in upstream's words, which the FailedScheduling message counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PreferredSchedulingTerm, Toleration};

use super::affinity::{self, Labels, PodAffinity};
use super::cache::{self, Cache, HostPort, NodeInfo, Usage};
use super::resources::{self, Resources};

/// Why one node cannot take the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Unschedulable,
    Taint { key: String, value: String },
    NodeAffinity,
    Ports,
    Insufficient(String),
    TooManyPods,
    ExistingAntiAffinity,
    PodAffinity,
    PodAntiAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
        }
    }
}

impl Reason {
    /// Whether evicting pods could make room (upstream: Unschedulable rather
    /// than UnschedulableAndUnresolvable).
    fn preemption_may_help(&self) -> bool {
        matches!(
            self,
            Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::Ports
                | Reason::ExistingAntiAffinity
                | Reason::PodAntiAffinity
        )
    }
}

/// Why a pod fits no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitError {
    /// The pod's RuntimeClass does not exist.
    RuntimeClassNotFound(String),
    /// Every node failed a filter: the histogram of reasons.
    NoFit {
        total_nodes: usize,
        reasons: BTreeMap<String, usize>,
        preemption: BTreeMap<String, usize>,
    },
}

/// `N reason` entries, sorted as strings (upstream's sortReasonsHistogram).
fn histogram(h: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = h.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::RuntimeClassNotFound(name) => {
                write!(f, "pod's RuntimeClass \"{name}\" not found")
            }
            FitError::NoFit { total_nodes: 0, .. } => f.write_str("no nodes available to schedule pods"),
            FitError::NoFit {
                total_nodes,
                reasons,
                preemption,
            } => write!(
                f,
                "0/{total_nodes} nodes are available: {}. preemption: 0/{total_nodes} nodes are available: {}.",
                histogram(reasons),
                histogram(preemption)
            ),
        }
    }
}

impl FitError {
    pub fn from_reasons(total_nodes: usize, per_node: &[Vec<Reason>]) -> FitError {
        let mut reasons = BTreeMap::new();
        let mut preemption = BTreeMap::new();
        for rs in per_node {
            for r in rs {
                *reasons.entry(r.to_string()).or_insert(0) += 1;
            }
            let why = if rs.iter().any(Reason::preemption_may_help) {
                "No preemption victims found for incoming pod"
            } else {
                "Preemption is not helpful for scheduling"
            };
            *preemption.entry(why.to_string()).or_insert(0) += 1;
        }
        FitError::NoFit {
            total_nodes,
            reasons,
            preemption,
        }
    }
}

/// The pod being scheduled, with everything the filters read computed once.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub namespace: String,
    pub labels: Labels,
    pub node_selector: Labels,
    /// From the RuntimeClass's `scheduling.nodeSelector`.
    pub class_selector: Labels,
    pub required_terms: Option<&'a [NodeSelectorTerm]>,
    pub preferred_terms: &'a [PreferredSchedulingTerm],
    pub tolerations: Vec<Toleration>,
    pub requests: Resources,
    pub non_zero: (i64, i64),
    pub ports: Vec<HostPort>,
    pub affinity: Option<PodAffinity>,
    /// The RuntimeClass overhead applied when the pod has none of its own.
    pub overhead: Option<Resources>,
}

impl<'a> Incoming<'a> {
    pub fn new(pod: &'a Pod, cache: &Cache) -> Result<Incoming<'a>, FitError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let class = match spec
            .and_then(|s| s.runtime_class_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Some(name) => Some(
                cache
                    .runtime_classes
                    .get(name)
                    .ok_or_else(|| FitError::RuntimeClassNotFound(name.to_string()))?,
            ),
            None => None,
        };
        let mut tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
        if let Some(c) = class {
            tolerations.extend(c.tolerations.iter().cloned());
        }
        let node_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref());
        let overhead = class
            .and_then(|c| c.overhead.clone())
            .filter(|_| spec.is_some_and(|s| s.overhead.is_none()));
        let (requests, non_zero) = match spec {
            Some(s) => (
                resources::pod_requests(s, overhead.as_ref()),
                resources::non_zero_requests(s),
            ),
            None => (Resources::default(), (0, 0)),
        };
        let affinity = spec.and_then(|s| PodAffinity::of(s, &namespace, &labels));
        Ok(Incoming {
            node_selector: spec
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            class_selector: class.map(|c| c.node_selector.clone()).unwrap_or_default(),
            required_terms: node_affinity
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|ns| ns.node_selector_terms.as_slice()),
            preferred_terms: node_affinity
                .and_then(|na| {
                    na.preferred_during_scheduling_ignored_during_execution
                        .as_deref()
                })
                .unwrap_or_default(),
            tolerations,
            requests,
            non_zero,
            ports: cache::host_ports(pod),
            affinity,
            overhead,
            namespace,
            labels,
        })
    }
}

/// A (topology key, value) pair: one topology domain.
pub type Domain = (String, String);

/// Inter-pod affinity, pre-computed for one incoming pod against every
/// assigned pod (upstream's InterPodAffinity PreFilter/PreScore). Pods
/// without any affinity cost nothing here: only the pods that carry terms
/// are visited, and all pods only when the incoming pod has terms.
#[derive(Debug, Default)]
pub struct AffinityState {
    /// Domains where an existing pod's required anti-affinity selects the pod.
    existing_anti: HashSet<Domain>,
    /// Domains holding a pod that matches all the incoming required affinity terms.
    affinity_domains: HashSet<Domain>,
    /// Whether any such pod exists at all.
    affinity_matched_any: bool,
    /// Whether the incoming pod matches all of its own affinity terms.
    matches_own_terms: bool,
    /// Domains holding a pod the incoming required anti-affinity selects.
    anti_domains: HashSet<Domain>,
    /// Preferred (anti-)affinity weights per domain, both directions.
    pub preferred: HashMap<Domain, i64>,
}

fn domain_of(node: Option<&NodeInfo>, key: &str) -> Option<Domain> {
    let v = node?.labels.get(key)?;
    Some((key.to_string(), v.clone()))
}

impl AffinityState {
    pub fn new(inc: &Incoming<'_>, cache: &Cache) -> AffinityState {
        let mut st = AffinityState::default();
        let ns_labels = |n: &str| cache.ns_labels(n);
        // Existing pods' terms that select the incoming pod.
        for key in &cache.with_affinity {
            let Some(p) = cache.pods.get(key) else {
                continue;
            };
            let Some(aff) = &p.affinity else {
                continue;
            };
            let node = cache.nodes.get(&p.node);
            for t in &aff.required_anti {
                if t.matches(&inc.namespace, &inc.labels, ns_labels) {
                    if let Some(d) = domain_of(node, &t.topology_key) {
                        st.existing_anti.insert(d);
                    }
                }
            }
            let weighted = aff
                .preferred_affinity
                .iter()
                .map(|t| (t, t.weight))
                .chain(aff.preferred_anti.iter().map(|t| (t, -t.weight)))
                // Existing pods' hard affinity counts with weight 1 (upstream's
                // hardPodAffinityWeight default).
                .chain(aff.required_affinity.iter().map(|t| (t, 1)));
            for (t, w) in weighted {
                if t.matches(&inc.namespace, &inc.labels, ns_labels) {
                    if let Some(d) = domain_of(node, &t.topology_key) {
                        *st.preferred.entry(d).or_insert(0) += w;
                    }
                }
            }
        }
        // The incoming pod's own terms against every assigned pod.
        let Some(aff) = &inc.affinity else {
            return st;
        };
        st.matches_own_terms = aff
            .required_affinity
            .iter()
            .all(|t| t.matches(&inc.namespace, &inc.labels, ns_labels));
        for p in cache.pods.values() {
            let node = cache.nodes.get(&p.node);
            if !aff.required_affinity.is_empty()
                && aff
                    .required_affinity
                    .iter()
                    .all(|t| t.matches(&p.namespace, &p.labels, ns_labels))
            {
                st.affinity_matched_any = true;
                for t in &aff.required_affinity {
                    if let Some(d) = domain_of(node, &t.topology_key) {
                        st.affinity_domains.insert(d);
                    }
                }
            }
            for t in &aff.required_anti {
                if t.matches(&p.namespace, &p.labels, ns_labels) {
                    if let Some(d) = domain_of(node, &t.topology_key) {
                        st.anti_domains.insert(d);
                    }
                }
            }
            let weighted = aff
                .preferred_affinity
                .iter()
                .map(|t| (t, t.weight))
                .chain(aff.preferred_anti.iter().map(|t| (t, -t.weight)));
            for (t, w) in weighted {
                if t.matches(&p.namespace, &p.labels, ns_labels) {
                    if let Some(d) = domain_of(node, &t.topology_key) {
                        *st.preferred.entry(d).or_insert(0) += w;
                    }
                }
            }
        }
        st
    }

    fn has_domain(set: &HashSet<Domain>, node: &NodeInfo) -> bool {
        !set.is_empty()
            && node
                .labels
                .iter()
                .any(|(k, v)| set.contains(&(k.clone(), v.clone())))
    }

    /// Upstream's InterPodAffinity Filter: the pod's affinity, its
    /// anti-affinity, then the existing pods' anti-affinity.
    fn filter(&self, inc: &Incoming<'_>, node: &NodeInfo) -> Option<Reason> {
        let Some(aff) = &inc.affinity else {
            return Self::has_domain(&self.existing_anti, node)
                .then_some(Reason::ExistingAntiAffinity);
        };
        if !aff.required_affinity.is_empty() {
            let all_present = aff.required_affinity.iter().all(|t| {
                node.labels.get(&t.topology_key).is_some_and(|v| {
                    self.affinity_domains
                        .contains(&(t.topology_key.clone(), v.clone()))
                })
            });
            // The first pod of a group that selects itself may go anywhere
            // the topology keys exist.
            let first_of_group = !self.affinity_matched_any
                && self.matches_own_terms
                && aff
                    .required_affinity
                    .iter()
                    .all(|t| node.labels.contains_key(&t.topology_key));
            if !all_present && !first_of_group {
                return Some(Reason::PodAffinity);
            }
        }
        if !aff.required_anti.is_empty() {
            let hit = aff.required_anti.iter().any(|t| {
                node.labels.get(&t.topology_key).is_some_and(|v| {
                    self.anti_domains
                        .contains(&(t.topology_key.clone(), v.clone()))
                })
            });
            if hit {
                return Some(Reason::PodAntiAffinity);
            }
        }
        Self::has_domain(&self.existing_anti, node).then_some(Reason::ExistingAntiAffinity)
    }

    /// The raw inter-pod affinity score of a node.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        if self.preferred.is_empty() {
            return 0;
        }
        node.labels
            .iter()
            .filter_map(|(k, v)| self.preferred.get(&(k.clone(), v.clone())))
            .sum()
    }
}

/// Node resources fit (upstream's NodeResourcesFit Filter): every reason, not
/// just the first.
fn fit_resources(
    inc: &Incoming<'_>,
    node: &NodeInfo,
    usage: Option<&Usage>,
    out: &mut Vec<Reason>,
) {
    let empty = Usage::default();
    let u = usage.unwrap_or(&empty);
    let alloc = &node.allocatable;
    if u.pods + 1 > alloc.pods {
        out.push(Reason::TooManyPods);
    }
    let req = &inc.requests;
    if req.is_zero() {
        return;
    }
    let short = |want: i64, used: i64, have: i64| want > 0 && have < used.saturating_add(want);
    if short(req.milli_cpu, u.requested.milli_cpu, alloc.milli_cpu) {
        out.push(Reason::Insufficient(resources::CPU.into()));
    }
    if short(req.memory, u.requested.memory, alloc.memory) {
        out.push(Reason::Insufficient(resources::MEMORY.into()));
    }
    if short(
        req.ephemeral_storage,
        u.requested.ephemeral_storage,
        alloc.ephemeral_storage,
    ) {
        out.push(Reason::Insufficient(resources::EPHEMERAL_STORAGE.into()));
    }
    for (name, want) in &req.scalar {
        let used = u.requested.scalar.get(name).copied().unwrap_or(0);
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        if short(*want, used, have) {
            out.push(Reason::Insufficient(name.clone()));
        }
    }
}

/// Run the filters on one node; `None` if it is feasible, else its reasons.
pub fn filter(
    inc: &Incoming<'_>,
    aff: &AffinityState,
    node: &NodeInfo,
    usage: Option<&Usage>,
) -> Option<Vec<Reason>> {
    // NodeUnschedulable (tolerable, as upstream).
    if node.unschedulable {
        let taint = k8s_openapi::api::core::v1::Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        };
        if !inc
            .tolerations
            .iter()
            .any(|t| affinity::tolerates(t, &taint))
        {
            return Some(vec![Reason::Unschedulable]);
        }
    }
    // TaintToleration.
    if let Some(t) = affinity::untolerated(&node.taints, &inc.tolerations) {
        return Some(vec![Reason::Taint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }]);
    }
    // NodeAffinity (nodeSelector, RuntimeClass nodeSelector, required terms).
    let selected = affinity::selector_matches(&inc.node_selector, &node.labels)
        && affinity::selector_matches(&inc.class_selector, &node.labels)
        && inc
            .required_terms
            .is_none_or(|terms| affinity::terms_match(terms, &node.name, &node.labels));
    if !selected {
        return Some(vec![Reason::NodeAffinity]);
    }
    // NodePorts.
    if let Some(u) = usage {
        if inc
            .ports
            .iter()
            .any(|p| u.ports.iter().any(|q| p.conflicts(q)))
        {
            return Some(vec![Reason::Ports]);
        }
    }
    // NodeResourcesFit.
    let mut reasons = Vec::new();
    fit_resources(inc, node, usage, &mut reasons);
    if !reasons.is_empty() {
        return Some(reasons);
    }
    // InterPodAffinity.
    aff.filter(inc, node).map(|r| vec![r])
}
