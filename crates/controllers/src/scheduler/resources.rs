//! Resource quantities as the scheduler counts them: CPU in millicores, every
//! other resource in whole units (bytes for memory), what a pod requests
//! (containers summed, init containers by the max rule, sidecars added, pod
//! overhead on top) and what a node can hold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// What a container that requests nothing counts as, for scoring only (upstream's
/// non-zero defaults), so that request-less pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod slots (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended and hugepages resources by name, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Add `name = q`.
    fn add_quantity(&mut self, name: &str, q: &Quantity) {
        let Some(nanos) = parse_nanos(&q.0) else {
            return;
        };
        match name {
            CPU => self.milli_cpu = self.milli_cpu.saturating_add(ceil_div(nanos, 1_000_000)),
            MEMORY => self.memory = self.memory.saturating_add(ceil_div(nanos, 1_000_000_000)),
            EPHEMERAL_STORAGE => {
                self.ephemeral_storage = self
                    .ephemeral_storage
                    .saturating_add(ceil_div(nanos, 1_000_000_000))
            }
            PODS => self.pods = self.pods.saturating_add(ceil_div(nanos, 1_000_000_000)),
            other if is_scalar(other) => {
                let v = self.scalar.entry(other.to_string()).or_insert(0);
                *v = v.saturating_add(ceil_div(nanos, 1_000_000_000));
            }
            _ => {}
        }
    }

    /// Build from a resource list.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (k, v) in list.into_iter().flatten() {
            r.add_quantity(k, v);
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        self.pods = self.pods.saturating_add(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(o.ephemeral_storage);
        self.pods = self.pods.saturating_sub(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
        self.scalar.retain(|_, v| *v != 0);
    }

    /// Per-resource maximum.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended (`example.com/gpu`) and prefixed native resources, hugepages and
/// attachable volumes are checked like cpu and memory; others are not.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || name.contains('/')
}

fn ceil_div(n: i128, d: i128) -> i64 {
    let q = n / d;
    let q = if n % d > 0 { q + 1 } else { q };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// A Kubernetes quantity (`100m`, `1.5Gi`, `2e3`, `128974848`) in
/// nano-units, rounded up; `None` if it does not parse or overflows.
pub fn parse_nanos(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') || int_part.len() + frac_part.len() > 30 {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        let d = i128::from(c.to_digit(10)?);
        mantissa = mantissa.checked_mul(10)?.checked_add(d)?;
    }
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    // value = mantissa * 10^-frac_digits * multiplier; nanos = value * 10^9.
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with('e') || e.starts_with('E') => {
            let exp: i32 = e.get(1..)?.parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            (exp, 0)
        }
        _ => return None,
    };
    let mut v = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    let exp = pow10 + 9 - frac_digits;
    if exp >= 0 {
        v = v.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?;
    } else {
        let d = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        v = v / d + i128::from(v % d != 0);
    }
    Some(if negative { -v } else { v })
}

fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    let mut r = Resources::from_list(res.and_then(|r| r.requests.as_ref()));
    // Limits without requests default the requests (the API server does this
    // too; repeated here for objects written before defaulting).
    let limits = Resources::from_list(res.and_then(|r| r.limits.as_ref()));
    if r.milli_cpu == 0 {
        r.milli_cpu = limits.milli_cpu;
    }
    if r.memory == 0 {
        r.memory = limits.memory;
    }
    if r.ephemeral_storage == 0 {
        r.ephemeral_storage = limits.ephemeral_storage;
    }
    for (k, v) in limits.scalar {
        r.scalar.entry(k).or_insert(v);
    }
    r
}

/// What a pod asks of a node, as upstream's PodRequests computes it: the sum
/// of its containers plus its sidecars (restartable init containers), at
/// least the largest need of any init container (with the sidecars started
/// before it), plus the pod overhead. `overhead` overrides `spec.overhead`
/// (RuntimeClass overhead for a pod admitted before the class existed).
pub fn pod_requests(spec: &PodSpec, overhead: Option<&Resources>) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut with_sidecars = r;
            with_sidecars.add(&sidecars);
            init_max.max_with(&with_sidecars);
        }
    }
    total.add(&sidecars);
    total.max_with(&init_max);
    match overhead {
        Some(o) => total.add(o),
        None => total.add(&Resources::from_list(spec.overhead.as_ref())),
    }
    total.pods = 0;
    total
}

/// CPU and memory for scoring: requests with upstream's defaults for
/// containers that request nothing.
pub fn non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let mut cpu = 0i64;
    let mut mem = 0i64;
    for c in &spec.containers {
        let r = container_requests(c);
        cpu = cpu.saturating_add(if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU
        } else {
            r.milli_cpu
        });
        mem = mem.saturating_add(if r.memory == 0 {
            DEFAULT_MEMORY
        } else {
            r.memory
        });
    }
    (cpu, mem)
}

/// A node's `status.allocatable` (falling back to `capacity`).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    Resources::from_list(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn container(name: &str, cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert(CPU.to_string(), q(cpu));
        }
        if !mem.is_empty() {
            req.insert(MEMORY.to_string(), q(mem));
        }
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_nanos("100m"), Some(100_000_000));
        assert_eq!(parse_nanos("1"), Some(1_000_000_000));
        assert_eq!(parse_nanos("1.5"), Some(1_500_000_000));
        assert_eq!(parse_nanos("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(parse_nanos("2e3"), Some(2_000 * 1_000_000_000));
        assert_eq!(parse_nanos("1n"), Some(1));
        assert_eq!(parse_nanos("0.1n"), Some(1)); // rounded up
        assert_eq!(parse_nanos("-1"), Some(-1_000_000_000));
        assert_eq!(parse_nanos("abc"), None);
        assert_eq!(parse_nanos("1Qi"), None);
        assert_eq!(parse_nanos(""), None);
        let r = Resources::from_list(Some(&BTreeMap::from([
            (CPU.to_string(), q("1.5")),
            (MEMORY.to_string(), q("1Gi")),
            (PODS.to_string(), q("110")),
            ("example.com/gpu".to_string(), q("2")),
            ("hugepages-2Mi".to_string(), q("4Mi")),
        ])));
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.pods, 110);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&2));
        assert_eq!(r.scalar.get("hugepages-2Mi"), Some(&(4 << 20)));
    }

    #[test]
    fn init_containers_use_the_max_rule_and_sidecars_add() {
        let spec = PodSpec {
            containers: vec![container("a", "100m", "100Mi"), container("b", "200m", "")],
            init_containers: Some(vec![container("i1", "500m", "50Mi")]),
            overhead: Some(BTreeMap::from([(CPU.to_string(), q("10m"))])),
            ..Default::default()
        };
        let r = pod_requests(&spec, None);
        assert_eq!(r.milli_cpu, 510); // max(300, 500) + 10
        assert_eq!(r.memory, 100 << 20);

        let mut sidecar = container("s", "100m", "");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("a", "100m", "")],
            init_containers: Some(vec![sidecar, container("i", "250m", "")]),
            ..Default::default()
        };
        // containers + sidecar = 200m; init "i" runs next to the sidecar: 350m.
        assert_eq!(pod_requests(&spec, None).milli_cpu, 350);
    }

    #[test]
    fn limits_default_requests_and_non_zero_defaults() {
        let c = Container {
            name: "a".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(CPU.to_string(), q("1"))])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = PodSpec {
            containers: vec![c, container("b", "", "")],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec, None).milli_cpu, 1000);
        assert_eq!(
            non_zero_requests(&spec),
            (1000 + DEFAULT_MILLI_CPU, 2 * DEFAULT_MEMORY)
        );
    }
}
