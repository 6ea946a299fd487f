//! From what the runtime reports to `pod.status`, as the kubelet's
//! `generateAPIPodStatus` does: phase, conditions, addresses and container
//! statuses. Pure functions, so the rules are unit-tested without a server.

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::fake::RestartPolicy;
use crate::runtime::{ContainerState, ContainerStatus, PodRuntimeStatus, Termination};

/// Whether a phase is final (a pod never leaves it).
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// The pod phase implied by its containers (upstream `getPhase`).
pub fn phase(rt: &PodRuntimeStatus, policy: RestartPolicy) -> &'static str {
    // An init container that failed for good (it is not restarted) fails
    // the pod.
    let init_failed = rt
        .init_containers
        .iter()
        .any(|c| matches!(&c.state, ContainerState::Terminated(t) if t.exit_code != 0));
    if init_failed && policy == RestartPolicy::Never {
        return "Failed";
    }
    let init_pending = rt.init_containers.iter().any(|c| match &c.state {
        ContainerState::Terminated(t) => t.exit_code != 0,
        ContainerState::Running { .. } => !c.started, // a sidecar must have started
        ContainerState::Waiting { .. } => true,
    });
    if init_pending {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &rt.containers {
        match &c.state {
            ContainerState::Running { .. } => running += 1,
            ContainerState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            ContainerState::Waiting { .. } if c.last_state.is_some() => stopped += 1,
            ContainerState::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match policy {
        RestartPolicy::Always => "Running",
        _ if stopped == succeeded => "Succeeded",
        RestartPolicy::OnFailure => "Running",
        RestartPolicy::Never => "Failed",
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn termination(t: &Termination) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: Some(time(t.started_at)),
        finished_at: Some(time(t.finished_at)),
        container_id: None,
        signal: None,
    }
}

fn api_state(s: &ContainerState) -> ApiState {
    match s {
        ContainerState::Waiting { reason, message } => ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        ContainerState::Running { started_at } => ApiState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Terminated(t) => ApiState {
            terminated: Some(termination(t)),
            ..Default::default()
        },
    }
}

fn api_container(c: &ContainerStatus) -> ApiContainerStatus {
    ApiContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        state: Some(api_state(&c.state)),
        last_state: c.last_state.as_ref().map(|t| ApiState {
            terminated: Some(termination(t)),
            ..Default::default()
        }),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        ..Default::default()
    }
}

/// Set condition `type_` in `conds`, keeping its lastTransitionTime when the
/// status does not change.
fn set_condition(
    conds: &mut Vec<PodCondition>,
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let old = conds.iter().position(|c| c.type_ == type_);
    let ltt = match old.map(|i| &conds[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(time(now)),
    };
    let cond = PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: ltt,
        last_probe_time: None,
        observed_generation: None,
    };
    match old {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

/// The pod's conditions' order, as the kubelet writes them.
const ORDER: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// The status the pod should have given what the runtime reports: the
/// current status with the fields the node owns replaced. Equal to the
/// current status when there is nothing to write.
pub fn desired(pod: &Pod, rt: &PodRuntimeStatus, host_ip: &str, now: Timestamp) -> PodStatus {
    let current = pod.status.clone().unwrap_or_default();
    let mut s = current.clone();
    let policy = RestartPolicy::of(pod);
    let mut phase = phase(rt, policy).to_string();
    if is_terminal(current.phase.as_deref()) {
        // A pod never leaves a final phase.
        phase = current.phase.clone().unwrap_or(phase);
    }
    let terminal = is_terminal(Some(&phase));
    s.phase = Some(phase.clone());
    s.host_ip = Some(host_ip.to_string());
    s.host_ips = Some(vec![HostIP {
        ip: host_ip.to_string(),
    }]);
    let ips: Vec<String> = rt.pod_ips.iter().map(|ip| ip.to_string()).collect();
    s.pod_ip = ips.first().cloned();
    s.pod_ips = (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect());
    if s.start_time.is_none() {
        s.start_time = Some(time(rt.start_time));
    }
    let mut containers: Vec<ApiContainerStatus> = rt.containers.iter().map(api_container).collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    s.container_statuses = Some(containers);
    s.init_container_statuses = (!rt.init_containers.is_empty())
        .then(|| rt.init_containers.iter().map(api_container).collect());

    let mut conds = current.conditions.clone().unwrap_or_default();
    let init_done = rt.init_containers.iter().all(|c| match &c.state {
        ContainerState::Terminated(t) => t.exit_code == 0,
        ContainerState::Running { .. } => c.started,
        ContainerState::Waiting { .. } => false,
    });
    set_condition(
        &mut conds,
        "PodReadyToStartContainers",
        !terminal,
        None,
        None,
        now,
    );
    if init_done {
        set_condition(&mut conds, "Initialized", true, None, None, now);
    } else {
        let names: Vec<&str> = rt.init_containers.iter().map(|c| c.name.as_str()).collect();
        set_condition(
            &mut conds,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                names.join(" ")
            )),
            now,
        );
    }
    let unready: Vec<&str> = rt
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (containers_ready, reason, message) = if phase == "Succeeded" {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    set_condition(
        &mut conds,
        "ContainersReady",
        containers_ready,
        reason,
        message.clone(),
        now,
    );
    // Readiness gates: every named condition must be True as well.
    let gates: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .map(|g| g.iter().map(|g| g.condition_type.clone()).collect())
        .unwrap_or_default();
    let failing_gate = gates
        .iter()
        .find(|g| !conds.iter().any(|c| &c.type_ == *g && c.status == "True"));
    match (containers_ready, failing_gate) {
        (true, None) => set_condition(&mut conds, "Ready", true, None, None, now),
        (true, Some(g)) => set_condition(
            &mut conds,
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "the status of pod readiness gate {g:?} is not \"True\""
            )),
            now,
        ),
        (false, _) => set_condition(&mut conds, "Ready", false, reason, message, now),
    }
    if !conds.iter().any(|c| c.type_ == "PodScheduled") {
        set_condition(&mut conds, "PodScheduled", true, None, None, now);
    }
    // Ours first in the kubelet's order, then any others as they were.
    conds.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(ORDER.len())
    });
    s.conditions = Some(conds);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn container(name: &str, state: ContainerState, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: "busybox".into(),
            image_id: "fake://busybox".into(),
            container_id: Some(format!("fake://x-{name}-0")),
            started: matches!(state, ContainerState::Running { .. }),
            state,
            last_state: None,
            restart_count: 0,
            ready,
        }
    }

    fn rt(containers: Vec<ContainerStatus>) -> PodRuntimeStatus {
        PodRuntimeStatus {
            pod_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 128, 0, 1))],
            start_time: ts(0),
            init_containers: vec![],
            containers,
            settling: false,
        }
    }

    fn terminated(code: i32) -> ContainerState {
        ContainerState::Terminated(Termination {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: ts(0),
            finished_at: ts(1),
        })
    }

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "b"}, {"name": "a"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-01-01T00:00:00Z"}
            ]}
        }))
        .unwrap()
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn phases_follow_restart_policy() {
        let running = ContainerState::Running { started_at: ts(0) };
        assert_eq!(
            phase(
                &rt(vec![container("a", running.clone(), true)]),
                RestartPolicy::Never
            ),
            "Running"
        );
        let done0 = rt(vec![container("a", terminated(0), false)]);
        let done3 = rt(vec![
            container("a", terminated(0), false),
            container("b", terminated(3), false),
        ]);
        assert_eq!(phase(&done0, RestartPolicy::Never), "Succeeded");
        assert_eq!(phase(&done0, RestartPolicy::OnFailure), "Succeeded");
        assert_eq!(phase(&done0, RestartPolicy::Always), "Running");
        assert_eq!(phase(&done3, RestartPolicy::Never), "Failed");
        assert_eq!(phase(&done3, RestartPolicy::OnFailure), "Running");
        let mut backoff = container(
            "a",
            ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            false,
        );
        assert_eq!(
            phase(&rt(vec![backoff.clone()]), RestartPolicy::Always),
            "Pending"
        );
        backoff.last_state = Some(Termination {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started_at: ts(0),
            finished_at: ts(1),
        });
        assert_eq!(phase(&rt(vec![backoff]), RestartPolicy::Always), "Running");
    }

    #[test]
    fn running_and_ready_in_one_status() {
        let p = pod("Always");
        let running = ContainerState::Running { started_at: ts(0) };
        let r = rt(vec![
            container("b", running.clone(), true),
            container("a", running, true),
        ]);
        let s = desired(&p, &r, "172.30.0.2", ts(5));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.128.0.1"));
        assert_eq!(s.host_ip.as_deref(), Some("172.30.0.2"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        // The scheduler's condition is kept as it was.
        assert_eq!(
            cond(&s, "PodScheduled")
                .last_transition_time
                .as_ref()
                .unwrap()
                .0
                .to_string(),
            "2023-01-01T00:00:00Z"
        );
        let names: Vec<&str> = s
            .container_statuses
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ORDER);

        // Written and read back: nothing more to write, even later.
        let mut written = p.clone();
        written.status = Some(s.clone());
        assert_eq!(desired(&written, &r, "172.30.0.2", ts(50)), s);
    }

    #[test]
    fn unready_containers_and_gates() {
        let running = ContainerState::Running { started_at: ts(0) };
        let r = rt(vec![
            container("a", running.clone(), true),
            container("b", running.clone(), false),
        ]);
        let s = desired(&pod("Always"), &r, "h", ts(5));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let mut gated = pod("Always");
        gated.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }]);
        let r = rt(vec![container("a", running, true)]);
        let s = desired(&gated, &r, "h", ts(5));
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ReadinessGatesNotReady")
        );
    }

    #[test]
    fn terminal_phase_is_kept() {
        let mut p = pod("Never");
        let r = rt(vec![container("a", terminated(3), false)]);
        let s = desired(&p, &r, "h", ts(5));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        p.status = Some(s);
        let again = rt(vec![container(
            "a",
            ContainerState::Running { started_at: ts(9) },
            true,
        )]);
        assert_eq!(
            desired(&p, &again, "h", ts(9)).phase.as_deref(),
            Some("Failed")
        );
    }
}
