use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::{builtin_resources, Strategy};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 1, 0, 0).unwrap()
}

fn strategy(plural: &str) -> std::sync::Arc<dyn Strategy> {
    builtin_resources()
        .into_iter()
        .find(|d| d.plural == plural)
        .unwrap()
        .strategy
}

fn row(plural: &str, obj: Value) -> Vec<Value> {
    let s = strategy(plural);
    let row = s.row(&obj, now());
    assert_eq!(
        row.len(),
        s.columns().len(),
        "{plural}: row width matches columns"
    );
    row
}

#[test]
fn every_kind_renders_a_row_of_the_right_width_even_for_garbage() {
    for d in builtin_resources() {
        for obj in [
            json!({"metadata": {"name": "x"}}),
            json!([1, 2]),
            json!({"spec": "nope"}),
        ] {
            let row = d.strategy.row(&obj, now());
            assert_eq!(row.len(), d.strategy.columns().len(), "{}", d.plural);
        }
    }
}

#[test]
fn pod_rows() {
    let pod = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:57:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:55:00Z"}}}
        ]}
    });
    assert_eq!(
        row("pods", pod),
        vec![
            json!("web"),
            json!("1/2"),
            json!("CrashLoopBackOff"),
            json!("4 (5m ago)"),
            json!("3m"),
            json!("10.0.0.5"),
            json!("n1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    let done = json!({
        "metadata": {"name": "j", "deletionTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "a"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    });
    let r = row("pods", done.clone());
    assert_eq!(r[2], json!("Terminating"));
    assert_eq!(r[4], json!("<unknown>"));
    let mut done = done;
    done["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    assert_eq!(row("pods", done)[2], json!("Completed"));
    let init = json!({
        "metadata": {"name": "i"},
        "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}}]}
    });
    assert_eq!(row("pods", init)[2], json!("Init:1/2"));
}

#[test]
fn deployment_row() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        row("deployments", d),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("60m"),
            json!("nginx"),
            json!("nginx:1.25"),
            json!("app=web")
        ]
    );
}

#[test]
fn service_rows() {
    let svc = json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
    });
    assert_eq!(
        row("services", svc),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("<unknown>"),
            json!("app=web")
        ]
    );
    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "ports": [{"port": 443}]}});
    assert_eq!(row("services", lb)[3], json!("<pending>"));
}

#[test]
fn small_tables() {
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(row("configmaps", cm)[1], json!(3));
    let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "AA=="}});
    assert_eq!(row("secrets", secret)[1..3], [json!("Opaque"), json!(1)]);
    let ns = json!({"metadata": {"name": "n"}, "status": {"phase": "Active"}});
    assert_eq!(row("namespaces", ns)[1], json!("Active"));
    let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0",
          "architecture": "", "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "",
          "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}}});
    assert_eq!(
        row("nodes", node)[1..5],
        [
            json!("Ready,SchedulingDisabled"),
            json!("control-plane"),
            json!("<unknown>"),
            json!("v1.32.0")
        ]
    );
    let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 3, "template": {}},
        "status": {"succeeded": 1, "startTime": "2024-01-01T00:58:00Z"}});
    assert_eq!(
        row("jobs", job)[1..4],
        [json!("Running"), json!("1/3"), json!("2m")]
    );
    let cj =
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {}}});
    assert_eq!(
        row("cronjobs", cj)[1..6],
        [
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(0),
            json!("<none>")
        ]
    );
    let ev = json!({"metadata": {"name": "e.1"}, "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Pulled",
        "type": "Normal", "message": "ok", "count": 3, "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:59:00Z"});
    let r = row("events", ev);
    assert_eq!(
        r[..4],
        [
            json!("60s (x3 over 60m)"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web")
        ]
    );
    assert_eq!(r[9], json!("e.1"));
    let crd = json!({"metadata": {"name": "foos.example.com", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"group": "example.com", "names": {"plural": "foos", "kind": "Foo"}, "scope": "Namespaced", "versions": []}});
    assert_eq!(
        row("customresourcedefinitions", crd)[1],
        json!("2024-01-01T00:00:00Z")
    );
}

#[test]
fn hpa_targets() {
    let hpa = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:57:00Z"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "32Mi"}}}
            ]
        },
        "status": {"currentReplicas": 4, "desiredReplicas": 4, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 200, "averageValue": "200m"}}},
            {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "67108864"}}}
        ]}
    });
    let r = row("horizontalpodautoscalers", hpa);
    assert_eq!(r[1], json!("Deployment/web"));
    assert_eq!(r[2], json!("cpu: 200%/50%, memory: 67108864/32Mi"));
    // Before the first evaluation.
    let fresh = json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "32Mi"}}}]
        }
    });
    assert_eq!(
        row("horizontalpodautoscalers", fresh)[2],
        json!("memory: <unknown>/32Mi")
    );
}
