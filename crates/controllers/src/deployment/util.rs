//! The arithmetic of rollouts, kept pure so it can be tested exactly:
//! template hashing, maxSurge/maxUnavailable resolution, how far the new
//! ReplicaSet may grow and the old ones shrink, proportional scaling.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub(crate) const HASH_LABEL: &str = "pod-template-hash";
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment never copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// FNV-1a (32 bit).
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Letters and digits that cannot spell words, as label-safe hash digits.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template (with the collision count mixed in).
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|b| char::from(SAFE[usize::from(b) % SAFE.len()]))
        .collect()
}

/// Drop empty objects and arrays (recursively): like upstream's semantic
/// equality, an empty and an absent map, list or struct are the same.
fn prune(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        _ => false,
    }
}

/// Whether two templates are semantically equal once the hash label is ignored.
pub(crate) fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
        let mut v = serde_json::to_value(t).unwrap_or_default();
        prune(&mut v);
        v
    }
    strip(a) == strip(b)
}

/// Resolve an int-or-percent against `total`, rounding up or down.
pub(crate) fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let num = i64::from(total) * pct;
            let r = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            i32::try_from(r).unwrap_or(0)
        }
    }
}

pub(crate) fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub(crate) fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub(crate) fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t != "Recreate")
}

/// (maxSurge, maxUnavailable) resolved as upstream: surge rounds up,
/// unavailable rounds down, and both zero means unavailable 1.
pub(crate) fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let total = replicas(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct25 = IntOrString::String("25%".into());
    let surge = resolve(
        Some(ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct25)),
        total,
        true,
    );
    let unavailable = resolve(
        Some(
            ru.and_then(|r| r.max_unavailable.as_ref())
                .unwrap_or(&pct25),
        ),
        total,
        false,
    );
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable.min(total))
}

/// The revision annotation of a ReplicaSet (0 if absent or unparsable).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The annotations a Deployment's ReplicaSet carries: the Deployment's own
/// (minus bookkeeping ones), then revision and replica bookkeeping.
pub(crate) fn rs_annotations(
    d: &Deployment,
    existing: Option<&BTreeMap<String, String>>,
    revision: i64,
    max_surge: i32,
) -> BTreeMap<String, String> {
    let mut out = existing.cloned().unwrap_or_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert(REVISION.into(), revision.to_string());
    out.insert(DESIRED.into(), replicas(d).to_string());
    out.insert(MAX_REPLICAS.into(), (replicas(d) + max_surge).to_string());
    out
}

/// How big the new ReplicaSet may be now (upstream's NewRSNewReplicas for
/// RollingUpdate): grow into the surge room, never beyond `replicas`.
pub(crate) fn new_rs_target_rolling(
    desired: i32,
    max_surge: i32,
    all_spec_replicas: i32,
    new_spec_replicas: i32,
) -> i32 {
    let max_total = desired + max_surge;
    if all_spec_replicas >= max_total {
        return new_spec_replicas;
    }
    let room = max_total - all_spec_replicas;
    let up = room.min((desired - new_spec_replicas).max(0));
    new_spec_replicas + up
}

/// How many old pods may go now in a rolling update (upstream's maxScaledDown).
pub(crate) fn max_scaled_down(
    desired: i32,
    max_unavailable: i32,
    all_spec_replicas: i32,
    new_spec_replicas: i32,
    new_available: i32,
) -> i32 {
    let min_available = desired - max_unavailable;
    let new_unavailable = (new_spec_replicas - new_available).max(0);
    all_spec_replicas - min_available - new_unavailable
}

/// Proportional scaling: the change for one active ReplicaSet of size
/// `rs_replicas` whose max-replicas annotation says `annotated` (the
/// deployment's size + surge when it was last scaled), given the deployment's
/// new size + surge `target`.
pub(crate) fn proportion(
    rs_replicas: i32,
    annotated: i32,
    target: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if rs_replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if target == 0 || annotated == 0 {
        -rs_replicas
    } else {
        let new_size = (f64::from(rs_replicas) * f64::from(target) / f64::from(annotated)).round();
        // Sizes are small integers; the cast cannot overflow in practice.
        #[allow(clippy::cast_possible_truncation)]
        let n = new_size as i32;
        n - rs_replicas
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn surge_rounds_up_unavailable_down() {
        let d = deploy(
            10,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        assert_eq!(surge_and_unavailable(&d), (3, 2));
        let d = deploy(
            1,
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        assert_eq!(surge_and_unavailable(&d), (1, 0));
        let d = deploy(5, IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(surge_and_unavailable(&d), (0, 1));
        let d = deploy(4, IntOrString::Int(2), IntOrString::Int(9));
        assert_eq!(surge_and_unavailable(&d), (2, 4));
    }

    #[test]
    fn new_rs_grows_into_surge_room_only() {
        // 10 desired, surge 3: 10 old + 0 new -> new may have 3.
        assert_eq!(new_rs_target_rolling(10, 3, 10, 0), 3);
        // Room used up.
        assert_eq!(new_rs_target_rolling(10, 3, 13, 3), 3);
        // Never above desired.
        assert_eq!(new_rs_target_rolling(10, 3, 9, 9), 10);
    }

    #[test]
    fn old_rs_shrink_keeps_min_available() {
        // 10 desired, maxUnavailable 2; 10 old + 3 new (0 available):
        // 13 pods - 8 that must stay available - 3 new ones not available yet.
        assert_eq!(max_scaled_down(10, 2, 13, 3, 0), 2);
        // The 3 new became available.
        assert_eq!(max_scaled_down(10, 2, 13, 3, 3), 5);
    }

    #[test]
    fn proportions() {
        // Deployment of 10 (+3 surge = 13 annotated) scaled to 20 (+5 = 25): an RS of 6 grows to 12.
        assert_eq!(proportion(6, 13, 25, 12, 0), 6);
        // Capped by what remains to add.
        assert_eq!(proportion(6, 13, 25, 4, 0), 4);
        // Scaled to zero: everything goes.
        assert_eq!(proportion(6, 13, 0, -13, 0), -6);
    }

    #[test]
    fn empty_and_absent_are_equal() {
        let a: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "x", HASH_LABEL: "abc"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}
        }))
        .expect("template");
        let b: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .expect("template");
        assert!(equal_ignoring_hash(&a, &b));
        let c: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "j"}]}
        }))
        .expect("template");
        assert!(!equal_ignoring_hash(&a, &c));
    }

    #[test]
    fn hash_is_stable_and_label_safe() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.bytes().all(|b| SAFE.contains(&b)));
    }
}
