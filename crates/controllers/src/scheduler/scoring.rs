//! Scoring the feasible nodes and picking one (upstream's default Score
//! plugins and weights: NodeResourcesFit least-allocated 1,
//! NodeResourcesBalancedAllocation 1, NodeAffinity 2, TaintToleration 3,
//! InterPodAffinity 2; every plugin's score normalized to 0..=100), ties
//! broken at random.

use k8s_openapi::api::core::v1::Pod;

use super::affinity;
use super::cache::{Cache, NodeInfo, Usage};
use super::predicates::{filter, AffinityState, FitError, Incoming};

pub const MAX_SCORE: i64 = 100;

const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_TAINT: i64 = 3;
const WEIGHT_POD_AFFINITY: i64 = 2;

/// A small splitmix64 generator for tie-breaks (no cryptographic need).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn from_time() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Rng::new((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Fraction of `alloc` left after `used`, scaled to 0..=100.
fn least_allocated(used: i64, alloc: i64) -> i64 {
    if alloc <= 0 || used > alloc {
        return 0;
    }
    (alloc - used) * MAX_SCORE / alloc
}

/// Least-allocated and balanced-allocation scores over cpu and memory, with
/// the pod placed (non-zero requests, as upstream scores).
fn resource_scores(inc: &Incoming<'_>, node: &NodeInfo, usage: Option<&Usage>) -> (i64, i64) {
    let (used_cpu, used_mem) = usage.map_or((0, 0), |u| (u.non_zero_cpu, u.non_zero_memory));
    let cpu = used_cpu.saturating_add(inc.non_zero.0);
    let mem = used_mem.saturating_add(inc.non_zero.1);
    let alloc = &node.allocatable;
    let least = (least_allocated(cpu, alloc.milli_cpu) + least_allocated(mem, alloc.memory)) / 2;
    let fraction = |used: i64, have: i64| -> f64 {
        if have <= 0 {
            1.0
        } else {
            (used as f64 / have as f64).min(1.0)
        }
    };
    let std_dev = (fraction(cpu, alloc.milli_cpu) - fraction(mem, alloc.memory)).abs() / 2.0;
    let balanced = ((1.0 - std_dev) * MAX_SCORE as f64) as i64;
    (least, balanced)
}

/// Raw node-affinity preference: the weights of the preferred terms the node matches.
fn node_affinity_raw(inc: &Incoming<'_>, node: &NodeInfo) -> i64 {
    inc.preferred_terms
        .iter()
        .filter(|t| affinity::term_matches(&t.preference, &node.name, &node.labels))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Scale `raw` so the largest is 100 (all 0 if none is positive); with
/// `reverse`, fewer is better.
fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            raw.iter_mut().for_each(|r| *r = MAX_SCORE);
        }
        return;
    }
    for r in raw.iter_mut() {
        let s = *r * MAX_SCORE / max;
        *r = if reverse { MAX_SCORE - s } else { s };
    }
}

/// Min-max scaling to 0..=100 (inter-pod affinity scores may be negative).
fn normalize_min_max(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    let span = max - min;
    for r in raw.iter_mut() {
        *r = if span == 0 {
            0
        } else {
            (*r - min) * MAX_SCORE / span
        };
    }
}

/// The total score of each candidate node (same order as `nodes`).
pub fn score(
    inc: &Incoming<'_>,
    aff: &AffinityState,
    nodes: &[(&NodeInfo, Option<&Usage>)],
) -> Vec<i64> {
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|(n, u)| {
            let (least, balanced) = resource_scores(inc, n, *u);
            least * WEIGHT_LEAST_ALLOCATED + balanced * WEIGHT_BALANCED
        })
        .collect();
    if !inc.preferred_terms.is_empty() {
        let mut raw: Vec<i64> = nodes
            .iter()
            .map(|(n, _)| node_affinity_raw(inc, n))
            .collect();
        normalize(&mut raw, false);
        total
            .iter_mut()
            .zip(&raw)
            .for_each(|(t, r)| *t += r * WEIGHT_NODE_AFFINITY);
    }
    let mut raw: Vec<i64> = nodes
        .iter()
        .map(|(n, _)| affinity::intolerable_prefer_no_schedule(&n.taints, &inc.tolerations))
        .collect();
    normalize(&mut raw, true);
    total
        .iter_mut()
        .zip(&raw)
        .for_each(|(t, r)| *t += r * WEIGHT_TAINT);
    if !aff.preferred.is_empty() {
        let mut raw: Vec<i64> = nodes.iter().map(|(n, _)| aff.score(n)).collect();
        normalize_min_max(&mut raw);
        total
            .iter_mut()
            .zip(&raw)
            .for_each(|(t, r)| *t += r * WEIGHT_POD_AFFINITY);
    }
    total
}

/// Filter every node, score the feasible ones and pick the best (a random
/// one among equals). Reads the cache only.
pub fn schedule_one(pod: &Pod, cache: &Cache, rng: &mut Rng) -> Result<String, FitError> {
    let inc = Incoming::new(pod, cache)?;
    let aff = AffinityState::new(&inc, cache);
    let mut feasible: Vec<(&NodeInfo, Option<&Usage>)> = Vec::new();
    let mut failed = Vec::new();
    for node in cache.nodes.values() {
        let usage = cache.usage_of(&node.name);
        match filter(&inc, &aff, node, usage) {
            None => feasible.push((node, usage)),
            Some(reasons) => failed.push(reasons),
        }
    }
    match feasible.len() {
        0 => return Err(FitError::from_reasons(cache.nodes.len(), &failed)),
        1 => return Ok(feasible[0].0.name.clone()),
        _ => {}
    }
    let scores = score(&inc, &aff, &feasible);
    let mut best = i64::MIN;
    let mut chosen = 0usize;
    let mut ties = 0u64;
    for (i, s) in scores.iter().enumerate() {
        if *s > best {
            best = *s;
            chosen = i;
            ties = 1;
        } else if *s == best {
            ties += 1;
            if rng.below(ties) == 0 {
                chosen = i;
            }
        }
    }
    Ok(feasible
        .get(chosen)
        .map(|(n, _)| n.name.clone())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::{pod_info, RuntimeClassInfo};
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    fn node(name: &str, labels: Value, cpu: &str, pods: &str, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": pods},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap()
    }

    fn pod(name: &str, labels: Value, spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "x"}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
            "spec": spec,
        }))
        .unwrap()
    }

    fn cpu_pod(name: &str, cpu: &str) -> Pod {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn cache(nodes: Vec<Node>) -> Cache {
        let mut c = Cache::default();
        for n in &nodes {
            let info = NodeInfo::new(n);
            c.nodes.insert(info.name.clone(), info);
        }
        c
    }

    fn place(c: &mut Cache, p: &Pod, node: &str) {
        let key = format!("ns/{}", p.metadata.name.as_deref().unwrap_or_default());
        c.add_pod(&key, pod_info(p, node, None, false));
    }

    fn plain(name: &str) -> Node {
        node(
            name,
            json!({"kubernetes.io/hostname": name}),
            "4",
            "110",
            json!([]),
        )
    }

    fn go(p: &Pod, c: &Cache) -> Result<String, String> {
        schedule_one(p, c, &mut Rng::new(7)).map_err(|e| e.to_string())
    }

    #[test]
    fn fit_error_message_is_upstreams() {
        use crate::scheduler::predicates::Reason;
        let e = FitError::from_reasons(
            3,
            &[
                vec![Reason::NodeAffinity],
                vec![Reason::Insufficient("cpu".into())],
                vec![Reason::Insufficient("cpu".into())],
            ],
        );
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod."
        );
        assert_eq!(
            FitError::from_reasons(0, &[]).to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let c = cache(vec![
            plain("a"),
            node(
                "b",
                json!({"disk": "ssd", "zone": "z1"}),
                "4",
                "110",
                json!([]),
            ),
        ]);
        let p = pod("p", json!({}), json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(go(&p, &c), Ok("b".into()));
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]
            }}}}),
        );
        assert_eq!(go(&p, &c), Ok("b".into()));
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]
            }}}}),
        );
        assert_eq!(go(&p, &c), Ok("a".into()));
        let p = pod("p", json!({}), json!({"nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            go(&p, &c).unwrap_err(),
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preferred_node_affinity_wins() {
        let c = cache(vec![
            node("a", json!({"tier": "gold"}), "4", "110", json!([])),
            node("b", json!({"tier": "silver"}), "4", "110", json!([])),
        ]);
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}]}},
                {"weight": 1, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}}
            ]}}}),
        );
        for seed in 0..20 {
            assert_eq!(
                schedule_one(&p, &c, &mut Rng::new(seed)).ok().as_deref(),
                Some("b")
            );
        }
    }

    #[test]
    fn taints_tolerations_and_unschedulable_nodes() {
        let tainted = node(
            "t",
            json!({}),
            "4",
            "110",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let mut cordoned = plain("u");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let c = cache(vec![tainted, cordoned]);
        let p = pod("p", json!({}), json!({}));
        assert_eq!(
            go(&p, &c).unwrap_err(),
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        let p = pod(
            "p",
            json!({}),
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert_eq!(go(&p, &c), Ok("t".into()));
        // A NotReady node carries the implied not-ready taint.
        let mut not_ready = plain("n");
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let c = cache(vec![not_ready]);
        assert!(go(&pod("p", json!({}), json!({})), &c)
            .unwrap_err()
            .contains("1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }"));
    }

    #[test]
    fn prefer_no_schedule_is_avoided_but_allowed() {
        let soft = node(
            "soft",
            json!({}),
            "4",
            "110",
            json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
        );
        let c = cache(vec![soft.clone(), plain("clean")]);
        for seed in 0..20 {
            let got = schedule_one(&pod("p", json!({}), json!({})), &c, &mut Rng::new(seed));
            assert_eq!(got.ok().as_deref(), Some("clean"));
        }
        let c = cache(vec![soft]);
        assert_eq!(go(&pod("p", json!({}), json!({})), &c), Ok("soft".into()));
    }

    #[test]
    fn resources_count_bound_and_assumed_pods() {
        let mut c = cache(vec![plain("a"), plain("b")]);
        place(&mut c, &cpu_pod("big", "3500m"), "a");
        // Only b has room for 1 cpu.
        assert_eq!(go(&cpu_pod("p", "1"), &c), Ok("b".into()));
        place(&mut c, &cpu_pod("big2", "3500m"), "b");
        assert_eq!(
            go(&cpu_pod("p", "1"), &c).unwrap_err(),
            "0/2 nodes are available: 2 Insufficient cpu. \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
        // Pod slots.
        let mut c = cache(vec![node("a", json!({}), "4", "1", json!([]))]);
        place(&mut c, &pod("x", json!({}), json!({})), "a");
        assert!(go(&pod("p", json!({}), json!({})), &c)
            .unwrap_err()
            .contains("1 Too many pods"));
        // Least allocated: the emptier node wins.
        let mut c = cache(vec![plain("a"), plain("b")]);
        place(&mut c, &cpu_pod("half", "2"), "a");
        for seed in 0..20 {
            let got = schedule_one(&cpu_pod("p", "100m"), &c, &mut Rng::new(seed));
            assert_eq!(got.ok().as_deref(), Some("b"));
        }
    }

    #[test]
    fn extended_resources_and_host_ports() {
        let mut gpu = plain("g");
        gpu.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "example.com/gpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut c = cache(vec![gpu, plain("plain")]);
        let wants_gpu = pod(
            "p",
            json!({}),
            json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"example.com/gpu": "1"}}}]}),
        );
        assert_eq!(go(&wants_gpu, &c), Ok("g".into()));
        place(&mut c, &wants_gpu, "g");
        assert!(go(
            &pod(
                "q",
                json!({}),
                wants_gpu
                    .spec
                    .clone()
                    .map(|s| serde_json::to_value(s).unwrap())
                    .unwrap()
            ),
            &c
        )
        .unwrap_err()
        .contains("2 Insufficient example.com/gpu"));
        let port_pod = |n: &str| {
            pod(
                n,
                json!({}),
                json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            )
        };
        let mut c = cache(vec![plain("a"), plain("b")]);
        place(&mut c, &port_pod("one"), "a");
        assert_eq!(go(&port_pod("two"), &c), Ok("b".into()));
    }

    #[test]
    fn pod_anti_affinity_spreads_and_existing_anti_affinity_repels() {
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}}});
        let mut c = cache(vec![plain("a"), plain("b")]);
        let first = pod("w1", json!({"app": "web"}), anti.clone());
        place(&mut c, &first, "a");
        let second = pod("w2", json!({"app": "web"}), anti.clone());
        assert_eq!(go(&second, &c), Ok("b".into()));
        place(&mut c, &second, "b");
        let third = pod("w3", json!({"app": "web"}), anti.clone());
        assert!(go(&third, &c)
            .unwrap_err()
            .contains("2 node(s) didn't match pod anti-affinity rules"));
        // A pod without terms is repelled by the existing pods' terms.
        let plain_web = pod("w4", json!({"app": "web"}), json!({}));
        assert!(go(&plain_web, &c)
            .unwrap_err()
            .contains("2 node(s) didn't satisfy existing pods anti-affinity rules"));
        // Other labels are not affected.
        assert!(go(&pod("db", json!({"app": "db"}), json!({})), &c).is_ok());
    }

    #[test]
    fn pod_affinity_colocates_and_lets_the_first_pod_in() {
        let aff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}
        ]}}});
        let mut c = cache(vec![
            node("a", json!({"zone": "z1"}), "4", "110", json!([])),
            node("b", json!({"zone": "z2"}), "4", "110", json!([])),
            node("c", json!({"zone": "z2"}), "4", "110", json!([])),
        ]);
        // No matching pod anywhere and the pod does not match itself: nowhere.
        let p = pod("p", json!({"app": "web"}), aff.clone());
        assert!(go(&p, &c)
            .unwrap_err()
            .contains("3 node(s) didn't match pod affinity rules"));
        // The first of a self-selecting group may go anywhere.
        let selfish = pod("s", json!({"app": "cache"}), aff.clone());
        assert!(go(&selfish, &c).is_ok());
        place(
            &mut c,
            &pod("cache", json!({"app": "cache"}), json!({})),
            "b",
        );
        for seed in 0..20 {
            let got = schedule_one(&p, &c, &mut Rng::new(seed)).unwrap();
            assert!(got == "b" || got == "c", "{got}");
        }
    }

    #[test]
    fn preferred_pod_anti_affinity_spreads() {
        let soft = json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}
        ]}}});
        let mut c = cache(vec![plain("a"), plain("b")]);
        place(&mut c, &pod("w1", json!({"app": "web"}), json!({})), "a");
        for seed in 0..20 {
            let got = schedule_one(
                &pod("w2", json!({"app": "web"}), soft.clone()),
                &c,
                &mut Rng::new(seed),
            );
            assert_eq!(got.ok().as_deref(), Some("b"));
        }
    }

    #[test]
    fn runtime_class_must_exist_and_constrains_nodes() {
        let mut c = cache(vec![
            plain("a"),
            node(
                "sandbox",
                json!({"sandbox": "yes"}),
                "4",
                "110",
                json!([{"key": "sandbox", "value": "", "effect": "NoSchedule"}]),
            ),
        ]);
        let p = pod("p", json!({}), json!({"runtimeClassName": "gvisor"}));
        assert_eq!(
            go(&p, &c).unwrap_err(),
            "pod's RuntimeClass \"gvisor\" not found"
        );
        c.runtime_classes.insert(
            "gvisor".into(),
            RuntimeClassInfo {
                node_selector: [("sandbox".to_string(), "yes".to_string())].into(),
                tolerations: vec![serde_json::from_value(
                    json!({"key": "sandbox", "operator": "Exists"}),
                )
                .unwrap()],
                overhead: None,
            },
        );
        assert_eq!(go(&p, &c), Ok("sandbox".into()));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let c = cache(vec![plain("a"), plain("b"), plain("c")]);
        let p = pod("p", json!({}), json!({}));
        let picked: std::collections::HashSet<String> = (0..50)
            .filter_map(|seed| schedule_one(&p, &c, &mut Rng::new(seed)).ok())
            .collect();
        assert_eq!(picked.len(), 3);
    }
}
