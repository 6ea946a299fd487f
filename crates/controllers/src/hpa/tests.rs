//! The controller's pure pieces: pods to algorithm inputs, metric statuses,
//! conditions.

use super::*;
use k8s_openapi::api::autoscaling::v2::{MetricIdentifier, MetricTarget, PodsMetricSource};
use serde_json::json;

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("pod")
}

fn usage(cpu: u64, memory: u64) -> skiff_client::metrics::PodUsage {
    skiff_client::metrics::PodUsage {
        cpu_millis: cpu,
        memory_bytes: memory,
        timestamp: Timestamp::from_second(1_700_000_000).expect("ts"),
    }
}

fn running(name: &str, cpu_request: Option<&str>) -> Pod {
    let resources = match cpu_request {
        Some(r) => json!({"requests": {"cpu": r, "memory": "64Mi"}}),
        None => json!({}),
    };
    pod(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [{"name": "main", "resources": resources}]},
        "status": {
            "phase": "Running",
            "startTime": "2023-11-14T20:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2023-11-14T20:00:05Z"}]
        }
    }))
}

#[test]
fn requests_sum_containers_and_sidecars() {
    let p = pod(json!({
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "init", "resources": {}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.25"}}}
            ]
        }
    }));
    assert_eq!(pod_request(&p, "cpu"), Ok(400));
    assert_eq!(
        pod_request(&p, "memory"),
        Err("missing request for memory in container a of Pod p".into())
    );
}

#[test]
fn pod_info_reads_phase_readiness_and_start() {
    let p = running("p", Some("100m"));
    let info = pod_info(&p, "cpu");
    assert_eq!(info.phase, Phase::Running);
    assert!(!info.deleting);
    assert_eq!(info.request, Ok(100));
    let ready = info.ready.expect("ready condition");
    assert!(!ready.is_false);
    assert_eq!(ready.last_transition.as_second(), 1_699_992_005);
    assert_eq!(info.start_time.map(|t| t.as_second()), Some(1_699_992_000));
    let bare = pod_info(&pod(json!({"metadata": {"name": "q"}})), "cpu");
    assert_eq!(bare.phase, Phase::Other);
    assert!(bare.ready.is_none() && bare.start_time.is_none());
    assert!(bare.request.is_err());
}

#[test]
fn conditions_move_their_transition_time_only_on_a_status_change() {
    let t0 = Timestamp::from_second(1_700_000_000).expect("ts");
    let t1 = Timestamp::from_second(1_700_000_100).expect("ts");
    let mut d = Draft {
        status: HorizontalPodAutoscalerStatus::default(),
        now: t0,
    };
    d.set("AbleToScale", true, "SucceededGetScale", "m1");
    d.set("ScalingActive", false, "FailedGetResourceMetric", "m2");
    d.now = t1;
    d.set("AbleToScale", true, "ReadyForNewScale", "m3");
    d.set("ScalingActive", true, "ValidMetricFound", "m4");
    let c = d.status.conditions.expect("conditions");
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].type_, "AbleToScale");
    assert_eq!(c[0].reason.as_deref(), Some("ReadyForNewScale"));
    assert_eq!(c[0].last_transition_time, Some(Time(t0)));
    assert_eq!(c[1].status, "True");
    assert_eq!(c[1].last_transition_time, Some(Time(t1)));
}

fn cpu_metric(target: MetricTarget) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target,
        }),
        ..Default::default()
    }
}

#[test]
fn resource_metric_outcome_and_status() {
    let pods = vec![running("a", Some("100m")), running("b", Some("100m"))];
    let usage: BTreeMap<_, _> = [
        ("a".to_string(), usage(200, 0)),
        ("b".to_string(), usage(100, 0)),
    ]
    .into();
    let now = Timestamp::from_second(1_700_000_000).expect("ts");
    let spec = cpu_metric(MetricTarget {
        type_: "Utilization".into(),
        average_utilization: Some(50),
        ..Default::default()
    });
    let (outcome, status) = metric_outcome(&spec, 2, &pods, &usage, Tolerances::default(), now);
    // 300m of 200m = 150 %, 3 × 2 pods = 6.
    assert_eq!(
        outcome,
        MetricOutcome::Proposal {
            replicas: 6,
            name: "cpu resource utilization (percentage of request)".into()
        }
    );
    let current = status.resource.expect("resource status").current;
    assert_eq!(current.average_utilization, Some(150));
    assert_eq!(current.average_value, Some(Quantity("150m".into())));

    let spec = cpu_metric(MetricTarget {
        type_: "AverageValue".into(),
        average_value: Some(Quantity("50m".into())),
        ..Default::default()
    });
    let (outcome, status) = metric_outcome(&spec, 2, &pods, &usage, Tolerances::default(), now);
    assert_eq!(
        outcome,
        MetricOutcome::Proposal {
            replicas: 6,
            name: "cpu resource".into()
        }
    );
    assert_eq!(
        status
            .resource
            .expect("resource status")
            .current
            .average_value,
        Some(Quantity("150m".into()))
    );
}

#[test]
fn failed_metrics_keep_their_slot() {
    let pods = vec![running("a", None)];
    let usage: BTreeMap<_, _> = [("a".to_string(), usage(200, 0))].into();
    let now = Timestamp::from_second(1_700_000_000).expect("ts");
    let spec = cpu_metric(MetricTarget {
        type_: "Utilization".into(),
        average_utilization: Some(50),
        ..Default::default()
    });
    let (outcome, status) = metric_outcome(&spec, 1, &pods, &usage, Tolerances::default(), now);
    assert_eq!(
        outcome,
        MetricOutcome::Invalid {
            reason: "FailedGetResourceMetric".into(),
            message: "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container main of Pod a".into(),
            error: "failed to get cpu resource metric value: failed to get cpu utilization: missing request for cpu in container main of Pod a".into(),
        }
    );
    assert_eq!(status.type_, "Resource");
    assert_eq!(status.resource.map(|r| r.name), Some("cpu".into()));

    let spec = MetricSpec {
        type_: "Pods".into(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier {
                name: "qps".into(),
                selector: None,
            },
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity("10".into())),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let (outcome, status) = metric_outcome(&spec, 1, &pods, &usage, Tolerances::default(), now);
    assert!(
        matches!(&outcome, MetricOutcome::Invalid { reason, .. } if reason == "FailedGetPodsMetric"),
        "{outcome:?}"
    );
    assert_eq!(status.pods.map(|p| p.metric.name), Some("qps".into()));

    // Memory samples are bytes; a resource nodes do not report has none.
    let spec = MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "ephemeral-storage".into(),
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity("1Gi".into())),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    let (outcome, _) = metric_outcome(&spec, 1, &pods, &usage, Tolerances::default(), now);
    assert!(
        matches!(&outcome, MetricOutcome::Invalid { message, .. } if message.ends_with("unable to get metrics for resource ephemeral-storage: no metrics returned from resource metrics API")),
        "{outcome:?}"
    );
}
