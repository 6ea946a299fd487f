//! Kubernetes resource rules for one pod: the QoS class, the kubelet's cgroup
//! formulas (CPU shares and CFS quota from millicores), the OOM score
//! adjustment per QoS class and the pod-level totals (init containers and
//! sidecars included) the pod cgroup is sized from.

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};

use super::BundleError;
use crate::quantity;

/// The CFS period the kubelet uses, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CPU shares value (`cpu.shares` of a BestEffort container).
pub const MIN_SHARES: u64 = 2;
/// The largest CPU shares value the kernel accepts.
pub const MAX_SHARES: u64 = 262_144;
/// The smallest CFS quota the kubelet sets, in microseconds.
pub const MIN_QUOTA_US: i64 = 1_000;

/// The OOM score adjustment of Guaranteed containers.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// The OOM score adjustment of BestEffort containers.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;

/// `cpu.shares` for a CPU request in millicores (the kubelet's
/// `MilliCPUToShares`): `millis * 1024 / 1000`, clamped to [2, 262144];
/// no request gives 2.
pub fn cpu_shares(request_millis: Option<u64>) -> u64 {
    match request_millis {
        None | Some(0) => MIN_SHARES,
        Some(m) => (m.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES),
    }
}

/// The CFS quota in microseconds for a CPU limit in millicores (the
/// kubelet's `MilliCPUToQuota` with a 100 ms period): `millis * 100`, at
/// least 1000; `None` for no limit.
pub fn cpu_quota(limit_millis: Option<u64>) -> Option<i64> {
    let m = limit_millis.filter(|m| *m > 0)?;
    let quota = m.saturating_mul(CPU_PERIOD_US) / 1000;
    Some(i64::try_from(quota).unwrap_or(i64::MAX).max(MIN_QUOTA_US))
}

/// A pod's Quality of Service class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The name `status.qosClass` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The pod's QoS class name (`Guaranteed`, `Burstable` or `BestEffort`).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    pod_qos(spec).as_str()
}

/// A quantity of a QoS resource (`cpu` in millicores, `memory` in bytes)
/// taken from a requests/limits map; zero and unparsable values count as
/// unset, as they do for the kubelet's QoS rules (validation rejects the
/// unparsable ones before a pod gets here).
fn amount(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    name: &str,
) -> Option<u64> {
    let q = map?.get(name)?;
    let v = if name == "cpu" {
        quantity::cpu_millis(&q.0)
    } else {
        quantity::bytes(&q.0)
    };
    v.filter(|v| *v > 0)
}

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// The pod's QoS class, by the kubelet's rules over every container and
/// init container: no cpu/memory request or limit anywhere is BestEffort;
/// every container limiting both cpu and memory, with the summed requests
/// equal to the summed limits, is Guaranteed; anything else is Burstable.
pub fn pod_qos(spec: &PodSpec) -> QosClass {
    let mut requests = [None::<u64>; 2];
    let mut limits = [None::<u64>; 2];
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        let res = c.resources.as_ref();
        let mut limited = 0;
        for (i, name) in QOS_RESOURCES.iter().enumerate() {
            if let Some(r) = amount(res.and_then(|r| r.requests.as_ref()), name) {
                requests[i] = Some(requests[i].unwrap_or(0).saturating_add(r));
            }
            if let Some(l) = amount(res.and_then(|r| r.limits.as_ref()), name) {
                limits[i] = Some(limits[i].unwrap_or(0).saturating_add(l));
                limited += 1;
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.iter().all(Option::is_none) && limits.iter().all(Option::is_none) {
        return QosClass::BestEffort;
    }
    if guaranteed && limits.iter().all(Option::is_some) {
        let requests_match = requests
            .iter()
            .zip(limits.iter())
            .all(|(r, l)| r.is_none() || r == l);
        if requests_match {
            return QosClass::Guaranteed;
        }
    }
    QosClass::Burstable
}

/// The OOM score adjustment of a container (the kubelet's
/// `GetContainerOOMScoreAdjust`): Guaranteed -997, BestEffort 1000,
/// Burstable `1000 - 1000 * memory request / node memory`, kept within
/// [3, 999] so a Burstable container is always killed after BestEffort ones
/// and before Guaranteed ones.
pub fn oom_score_adj(qos: QosClass, container: &Container, node_memory_bytes: u64) -> i32 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let request = amount(
                container
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref()),
                "memory",
            )
            .unwrap_or(0);
            let capacity = node_memory_bytes.max(1);
            let share = u128::from(request) * 1000 / u128::from(capacity);
            let adj = 1000_i64 - i64::try_from(share).unwrap_or(1000);
            let low = i64::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
            let adj = if adj < low {
                low
            } else if adj >= i64::from(BEST_EFFORT_OOM_SCORE_ADJ) {
                i64::from(BEST_EFFORT_OOM_SCORE_ADJ) - 1
            } else {
                adj
            };
            i32::try_from(adj).unwrap_or(BEST_EFFORT_OOM_SCORE_ADJ - 1)
        }
    }
}

/// CPU (millicores) and memory (bytes) of one container's requests or limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuMemory {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// Parse the cpu and memory entries of a requests or limits map; an entry
/// that does not parse is an error naming it.
fn parse_cpu_memory(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Result<CpuMemory, BundleError> {
    let mut out = CpuMemory::default();
    let Some(map) = map else { return Ok(out) };
    if let Some(q) = map.get("cpu") {
        out.cpu_millis =
            Some(
                quantity::cpu_millis(&q.0).ok_or_else(|| BundleError::InvalidQuantity {
                    resource: "cpu".into(),
                    value: q.0.clone(),
                })?,
            );
    }
    if let Some(q) = map.get("memory") {
        out.memory_bytes =
            Some(
                quantity::bytes(&q.0).ok_or_else(|| BundleError::InvalidQuantity {
                    resource: "memory".into(),
                    value: q.0.clone(),
                })?,
            );
    }
    Ok(out)
}

/// A container's cpu/memory requests and limits. As the API server
/// defaults them, a request left out while its limit is set equals the
/// limit.
pub fn container_resources(
    res: Option<&ResourceRequirements>,
) -> Result<(CpuMemory, CpuMemory), BundleError> {
    let mut requests = parse_cpu_memory(res.and_then(|r| r.requests.as_ref()))?;
    let limits = parse_cpu_memory(res.and_then(|r| r.limits.as_ref()))?;
    requests.cpu_millis = requests.cpu_millis.or(limits.cpu_millis);
    requests.memory_bytes = requests.memory_bytes.or(limits.memory_bytes);
    Ok((requests, limits))
}

/// The cgroup settings of a pod (the kubelet's `ResourceConfigForPod`):
/// shares from the effective CPU request; a CPU quota only when every
/// container limits CPU; a memory limit only when every container limits
/// memory; BestEffort pods get the minimum shares and nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: u64,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: u64,
    pub memory_limit_bytes: Option<u64>,
    pub pids_limit: Option<i64>,
}

/// Effective pod totals, the way the scheduler and the kubelet add them up:
/// regular containers plus restartable init containers (sidecars) run
/// together; each plain init container runs alone next to the sidecars
/// started before it; the pod needs the larger of the two.
fn pod_total(
    spec: &PodSpec,
    pick: impl Fn(&(CpuMemory, CpuMemory)) -> Option<u64>,
) -> Result<(u64, bool), BundleError> {
    let mut all_set = true;
    let mut sidecars: u64 = 0;
    let mut init_peak: u64 = 0;
    for c in spec.init_containers.iter().flatten() {
        let r = container_resources(c.resources.as_ref())?;
        let v = pick(&r);
        if c.restart_policy.as_deref() == Some("Always") {
            all_set &= v.is_some();
            sidecars = sidecars.saturating_add(v.unwrap_or(0));
        } else {
            init_peak = init_peak.max(sidecars.saturating_add(v.unwrap_or(0)));
        }
    }
    let mut regular: u64 = 0;
    for c in &spec.containers {
        let r = container_resources(c.resources.as_ref())?;
        let v = pick(&r);
        all_set &= v.is_some();
        regular = regular.saturating_add(v.unwrap_or(0));
    }
    Ok((regular.saturating_add(sidecars).max(init_peak), all_set))
}

/// The pod cgroup's limits for `spec`, with the node's per-pod pids limit.
pub fn pod_resources(spec: &PodSpec, pids_limit: Option<i64>) -> Result<PodResources, BundleError> {
    let qos = pod_qos(spec);
    let (cpu_request, _) = pod_total(spec, |(req, _)| req.cpu_millis)?;
    let (cpu_limit, cpu_limited) = pod_total(spec, |(_, lim)| lim.cpu_millis)?;
    let (mem_limit, mem_limited) = pod_total(spec, |(_, lim)| lim.memory_bytes)?;
    let mut out = PodResources {
        cpu_shares: MIN_SHARES,
        cpu_quota_us: None,
        cpu_period_us: CPU_PERIOD_US,
        memory_limit_bytes: None,
        pids_limit,
    };
    if qos == QosClass::BestEffort {
        return Ok(out);
    }
    out.cpu_shares = cpu_shares(Some(cpu_request));
    if cpu_limited {
        out.cpu_quota_us = cpu_quota(Some(cpu_limit));
    }
    if mem_limited && mem_limit > 0 {
        out.memory_limit_bytes = Some(mem_limit);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn res(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Option<ResourceRequirements> {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| ((*k).to_string(), Quantity((*v).to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Some(ResourceRequirements {
            requests: map(req),
            limits: map(lim),
            ..Default::default()
        })
    }

    fn container(name: &str, r: Option<ResourceRequirements>) -> Container {
        Container {
            name: name.into(),
            resources: r,
            ..Default::default()
        }
    }

    #[test]
    fn shares_and_quota_follow_the_kubelet() {
        assert_eq!(cpu_shares(None), 2);
        assert_eq!(cpu_shares(Some(1)), 2);
        assert_eq!(cpu_shares(Some(250)), 256);
        assert_eq!(cpu_shares(Some(1000)), 1024);
        assert_eq!(cpu_shares(Some(10_000_000)), MAX_SHARES);
        assert_eq!(cpu_quota(None), None);
        assert_eq!(cpu_quota(Some(500)), Some(50_000));
        assert_eq!(cpu_quota(Some(2000)), Some(200_000));
        assert_eq!(cpu_quota(Some(5)), Some(1_000));
    }

    #[test]
    fn qos_classes() {
        let mut spec = PodSpec {
            containers: vec![container("a", None)],
            ..Default::default()
        };
        assert_eq!(qos_class(&spec), "BestEffort");
        spec.containers[0].resources = res(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(qos_class(&spec), "Guaranteed");
        spec.containers[0].resources = res(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(qos_class(&spec), "Guaranteed");
        spec.containers[0].resources = res(
            &[("cpu", "500m"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(qos_class(&spec), "Burstable");
        spec.containers[0].resources = res(&[("memory", "10Mi")], &[]);
        assert_eq!(qos_class(&spec), "Burstable");
        // A second container without limits breaks Guaranteed.
        spec.containers[0].resources = res(&[], &[("cpu", "1"), ("memory", "1Gi")]);
        spec.containers.push(container("b", None));
        assert_eq!(qos_class(&spec), "Burstable");
        // Init containers count too.
        spec.containers.pop();
        spec.init_containers = Some(vec![container("init", res(&[("cpu", "100m")], &[]))]);
        assert_eq!(qos_class(&spec), "Burstable");
        // Zero quantities are as good as unset.
        let zero = PodSpec {
            containers: vec![container("z", res(&[("cpu", "0")], &[]))],
            ..Default::default()
        };
        assert_eq!(qos_class(&zero), "BestEffort");
    }

    #[test]
    fn oom_score_adjust_by_class() {
        let c = container("a", res(&[("memory", "1Gi")], &[]));
        let node = 4u64 << 30;
        assert_eq!(oom_score_adj(QosClass::Guaranteed, &c, node), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, &c, node), 1000);
        assert_eq!(oom_score_adj(QosClass::Burstable, &c, node), 750);
        let tiny = container("t", res(&[("memory", "1")], &[]));
        assert_eq!(oom_score_adj(QosClass::Burstable, &tiny, node), 999);
        let huge = container("h", res(&[("memory", "8Gi")], &[]));
        assert_eq!(oom_score_adj(QosClass::Burstable, &huge, node), 3);
    }

    #[test]
    fn pod_level_limits() {
        let spec = PodSpec {
            containers: vec![
                container("a", res(&[], &[("cpu", "500m"), ("memory", "64Mi")])),
                container(
                    "b",
                    res(&[("cpu", "250m")], &[("cpu", "1"), ("memory", "32Mi")]),
                ),
            ],
            init_containers: Some(vec![container(
                "init",
                res(&[], &[("cpu", "2"), ("memory", "16Mi")]),
            )]),
            ..Default::default()
        };
        let r = pod_resources(&spec, Some(1024)).unwrap();
        // Requests: max(500 + 250, 2000) = 2000m.
        assert_eq!(r.cpu_shares, 2048);
        assert_eq!(r.cpu_quota_us, Some(200_000));
        assert_eq!(r.memory_limit_bytes, Some(96 << 20));
        assert_eq!(r.pids_limit, Some(1024));

        // One container without a memory limit: no pod memory limit.
        let spec = PodSpec {
            containers: vec![
                container("a", res(&[], &[("cpu", "500m"), ("memory", "64Mi")])),
                container("b", res(&[("cpu", "100m")], &[("cpu", "1")])),
            ],
            ..Default::default()
        };
        let r = pod_resources(&spec, None).unwrap();
        assert_eq!(r.cpu_quota_us, Some(150_000));
        assert_eq!(r.memory_limit_bytes, None);
        assert_eq!(r.cpu_shares, 614);

        let best = PodSpec {
            containers: vec![container("a", None)],
            ..Default::default()
        };
        assert_eq!(pod_resources(&best, None).unwrap().cpu_shares, 2);

        let bad = PodSpec {
            containers: vec![container("a", res(&[("cpu", "lots")], &[]))],
            ..Default::default()
        };
        assert_eq!(
            pod_resources(&bad, None).unwrap_err().to_string(),
            "invalid cpu quantity \"lots\""
        );
    }
}
