//! The pod table: the most-read table of all, so it follows `printPod` closely.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{col, name_cell, since, text, NONE};
use crate::{Column, Row};

pub(crate) fn columns() -> Vec<Column> {
    vec![
        Column::name(),
        col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        col("Status", "The aggregate status of the containers in this pod."),
        col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        Column::age(),
        col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
        col("Node", "NodeName is a request to schedule this pod onto a specific node.").wide(),
        col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.").wide(),
        col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
    ]
}

/// Latest `lastState.terminated.finishedAt` among statuses, for "(5m ago)".
fn last_restart(statuses: &[ContainerStatus]) -> Option<DateTime<Utc>> {
    statuses
        .iter()
        .filter(|s| s.restart_count > 0)
        .filter_map(|s| {
            super::chrono_of(
                &s.last_state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()?
                    .0,
            )
        })
        .max()
}

fn terminated_reason(
    reason: Option<&str>,
    signal: Option<i32>,
    exit_code: i32,
    prefix: &str,
) -> String {
    match (reason.filter(|r| !r.is_empty()), signal.filter(|s| *s != 0)) {
        (Some(r), _) => format!("{prefix}{r}"),
        (None, Some(sig)) => format!("{prefix}Signal:{sig}"),
        (None, None) => format!("{prefix}ExitCode:{exit_code}"),
    }
}

pub(crate) fn row(pod: &Pod, now: DateTime<Utc>) -> Row {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status.phase.clone().unwrap_or_default();
    if let Some(r) = status.reason.as_ref().filter(|r| !r.is_empty()) {
        reason = r.clone();
    }
    let mut restarts: i64 = 0;
    let mut ready = 0usize;
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    let statuses = status.container_statuses.clone().unwrap_or_default();
    let mut last = last_restart(&init_statuses);

    let mut initializing = false;
    for (i, s) in init_statuses.iter().enumerate() {
        restarts += i64::from(s.restart_count);
        let state = s.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = terminated_reason(t.reason.as_deref(), t.signal, t.exit_code, "Init:");
        } else if let Some(w) = state.waiting.as_ref().filter(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| !r.is_empty() && r != "PodInitializing")
        }) {
            reason = format!("Init:{}", w.reason.clone().unwrap_or_default());
        } else {
            reason = format!(
                "Init:{}/{}",
                i,
                spec.init_containers.as_ref().map_or(0, Vec::len)
            );
        }
        initializing = true;
        break;
    }

    if !initializing {
        restarts = 0;
        last = last_restart(&statuses);
        let mut has_running = false;
        for s in statuses.iter().rev() {
            restarts += i64::from(s.restart_count);
            let state = s.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = terminated_reason(t.reason.as_deref(), t.signal, t.exit_code, "");
            } else if state.running.is_some() && s.ready {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        reason = if status.reason.as_deref() == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }

    let restarts_cell = match last {
        Some(t) if restarts > 0 => text(format!(
            "{restarts} ({} ago)",
            super::human_duration(now.signed_duration_since(t))
        )),
        _ => text(restarts.to_string()),
    };

    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first().map(|i| i.ip.clone()))
        .or(status.pod_ip.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| NONE.into());
    let node = spec
        .node_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| NONE.into());
    let nominated = status
        .nominated_node_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| NONE.into());
    let gates = match spec.readiness_gates.as_ref().filter(|g| !g.is_empty()) {
        None => NONE.to_string(),
        Some(gates) => {
            let true_count = gates
                .iter()
                .filter(|g| {
                    status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
                .count();
            format!("{true_count}/{}", gates.len())
        }
    };

    vec![
        name_cell(&pod.metadata),
        text(format!("{ready}/{}", spec.containers.len())),
        text(reason),
        restarts_cell,
        text(since(pod.metadata.creation_timestamp.as_ref(), now)),
        text(ip),
        text(node),
        text(nominated),
        text(gates),
    ]
}
