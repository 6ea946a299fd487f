//! Which pods to delete first when scaling down (upstream's ActivePods
//! ordering): unassigned before assigned, pending before unknown before
//! running, not ready before ready, ready for less time before longer, more
//! container restarts before fewer, newer before older.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use skiff_client::objects;

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn assigned(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// Upstream's "less valuable first" comparison.
fn compare(a: &Pod, b: &Pod) -> Ordering {
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(objects::pod_ready(a).cmp(&objects::pod_ready(b)))
        // Ready for a shorter time (later transition) goes first.
        .then_with(
            || match (objects::pod_ready_since(a), objects::pod_ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            },
        )
        .then(restarts(b).cmp(&restarts(a)))
        // Newer (later creation) goes first.
        .then_with(|| {
            let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            cb.cmp(&ca)
        })
        .then_with(|| b.metadata.name.cmp(&a.metadata.name))
}

/// The `n` pods to delete.
pub(crate) fn pick_victims(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut sorted: Vec<Arc<Pod>> = pods.to_vec();
    sorted.sort_by(|a, b| compare(a, b));
    sorted.truncate(n);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn deletes_least_valuable_first() {
        let pods = vec![
            pod("running-ready", Some("n"), "Running", true),
            pod("unassigned", None, "Pending", false),
            pod("running-unready", Some("n"), "Running", false),
            pod("pending-assigned", Some("n"), "Pending", false),
        ];
        let names: Vec<_> = pick_victims(&pods, 4)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "unassigned",
                "pending-assigned",
                "running-unready",
                "running-ready"
            ]
        );
        assert_eq!(pick_victims(&pods, 1).len(), 1);
    }
}
